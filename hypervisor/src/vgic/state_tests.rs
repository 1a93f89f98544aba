//! Unit tests of injection, SGIs and the LR scheduler.

use super::cpuif::VirtualCpuIf;
use super::irq::NO_TARGET;
use super::lr::{hcr_eoi_count, Lr, LrState, HCR_EN, HCR_LRENPIE, HCR_NPIE, HCR_UIE};
use super::sgi::{SgiGroup, SgiRequest};
use super::state::{default_mpidr, is_nmi_priority, Vgic, NMI_PRIORITY_THRESHOLD};

/// Group 1 enabled, everything Group 1 and enabled at priority 0xa0.
fn vgic(nr_vcpus: usize) -> Vgic {
    let mut v = Vgic::new(nr_vcpus, 64, 5);
    v.dist_write(0, 0, 4, 2);
    for c in 0..nr_vcpus {
        v.redist_write(c, c, 0x10080, 4, 0xffff_ffff);
        v.redist_write(c, c, 0x10100, 4, 0xffff_ffff);
        for w in 0..8 {
            v.redist_write(c, c, 0x10400 + 4 * w, 4, 0xa0a0_a0a0);
        }
    }
    for n in 1..3 {
        v.dist_write(0, 0x80 + 4 * n, 4, 0xffff_ffff);
        v.dist_write(0, 0x100 + 4 * n, 4, 0xffff_ffff);
    }
    for w in 8..24 {
        v.dist_write(0, 0x400 + 4 * w, 4, 0xa0a0_a0a0);
    }
    v
}

fn set_prio(v: &mut Vgic, vcpu: usize, intid: u32, p: u8) {
    if intid < 32 {
        v.redist_write(vcpu, vcpu, 0x10400 + intid as u64, 1, p.into());
    } else {
        v.dist_write(vcpu, 0x400 + intid as u64, 1, p.into());
    }
}

fn flush(v: &mut Vgic, vcpu: usize) -> ([u64; 4], u64) {
    let mut lrs = [0u64; 4];
    let hcr = v.flush_lrs(vcpu, &mut lrs);
    (lrs, hcr)
}

fn listed(lrs: &[u64]) -> Vec<(u32, LrState)> {
    lrs.iter()
        .map(|&x| Lr(x))
        .filter(|l| l.is_valid())
        .map(|l| (l.vintid(), l.state()))
        .collect()
}

/// The guest acknowledges the LR holding `intid`.
fn ack(lrs: &mut [u64], intid: u32) {
    let i = lrs
        .iter()
        .position(|&x| Lr(x).vintid() == intid && Lr(x).is_valid())
        .expect("listed");
    let lr = Lr(lrs[i]);
    assert_eq!(lr.state(), LrState::Pending);
    lrs[i] = lr.with_state(LrState::Active).0;
}

/// The guest EOIs (EOImode=0) the LR holding `intid`.
fn eoi(lrs: &mut [u64], intid: u32) {
    let i = lrs
        .iter()
        .position(|&x| Lr(x).vintid() == intid && Lr(x).is_valid())
        .expect("listed");
    let lr = Lr(lrs[i]);
    let next = if lr.state().pending() {
        LrState::Pending
    } else {
        LrState::Invalid
    };
    lrs[i] = lr.with_state(next).0;
}

#[test]
fn injection_out_of_range_is_none() {
    let mut v = vgic(2);
    assert_eq!(v.set_pending(2, 5), None);
    assert_eq!(v.set_pending(0, 96), None);
    assert_eq!(v.set_pending(0, u32::MAX), None);
    assert_eq!(v.set_level(5, 27, true), None);
    assert_eq!(v.inject_at_priority(0, 1020, 0x80), None);
    v.set_hw(9, 27, Some(27));
    assert!(!v.has_deliverable(7));
    assert_eq!(v.highest_pending_priority(7), None);
    let mut lrs = [1u64; 4];
    assert_eq!(v.flush_lrs(9, &mut lrs), HCR_EN);
    assert_eq!(lrs, [0; 4]);
    v.fold_lrs(9, &lrs);
    assert!(v.eoi_count(9, 5).is_empty());
}

#[test]
fn set_pending_returns_the_target_only_when_deliverable() {
    let mut v = Vgic::new(2, 32, 5);
    assert_eq!(v.set_pending(1, 3), None, "disabled");
    v.redist_write(1, 1, 0x10100, 4, 1 << 3);
    assert_eq!(v.set_pending(1, 3), None, "Group 0 disabled");
    v.dist_write(0, 0, 4, 1);
    assert_eq!(v.set_pending(1, 3), Some(1));
    assert!(v.has_deliverable(1));
    assert!(!v.has_deliverable(0));
    // SPIs go to their IROUTER target.
    v.dist_write(0, 0x104, 4, 1);
    v.dist_write(0, 0x6100, 8, 1);
    assert_eq!(v.set_pending(0, 32), Some(1));
    // Routed nowhere.
    v.dist_write(0, 0x6100, 8, 0x0500);
    assert_eq!(v.irq(0, 32).unwrap().target, NO_TARGET);
    assert_eq!(v.set_pending(1, 32), None);
}

#[test]
fn inject_at_priority_enables_and_masks() {
    let mut v = vgic(2);
    v.redist_write(1, 1, 0x10180, 4, 1 << 6);
    assert_eq!(v.inject_at_priority(1, 6, 0x87), Some(1));
    let irq = v.irq(1, 6).unwrap();
    assert!(irq.enabled && irq.is_pending());
    assert_eq!(irq.priority, 0x80);
    assert_eq!(v.highest_pending_priority(1), Some(0x80));
    assert!(v.highest_pending_priority(1).is_some_and(is_nmi_priority));
    assert!(is_nmi_priority(NMI_PRIORITY_THRESHOLD));
    assert!(!is_nmi_priority(0xa0));
    assert!(is_nmi_priority(0x20));
}

#[test]
fn sgi_delivery_respects_targets_and_groups() {
    let mut v = vgic(3);
    // vCPU 2's SGI 5 is Group 0: SGI1R does not reach it, SGI0R does.
    v.redist_write(2, 2, 0x10080, 4, !(1u64 << 5) & 0xffff_ffff);
    v.dist_write(0, 0, 4, 3);
    let req = SgiRequest::decode(5 << 24 | 0b110, SgiGroup::G1);
    let kicks = v.send_sgi(0, &req);
    assert_eq!(kicks.0, 0b010);
    assert!(!v.irq(2, 5).unwrap().is_pending());
    let req = SgiRequest::decode(5 << 24 | 0b110, SgiGroup::G0);
    assert_eq!(v.send_sgi(0, &req).0, 0b100);
    let req = SgiRequest::decode(5 << 24 | 0b110, SgiGroup::AltG1);
    assert_eq!(v.send_sgi(0, &req).0, 0b100);
    // IRM: all but self; Aff0 8 is outside the VM.
    let req = SgiRequest::decode(1 << 40 | 7 << 24, SgiGroup::G1);
    assert_eq!(v.send_sgi(1, &req).0, 0b101);
    let req = SgiRequest::decode(7 << 24 | 1 << 8, SgiGroup::G1);
    assert!(v.send_sgi(1, &req).is_empty());
    assert_eq!(v.mpidr(2), Some(default_mpidr(2)));
    assert_eq!(default_mpidr(17), 0x101);
}

#[test]
fn priority_order_and_tie_break() {
    let mut v = vgic(1);
    set_prio(&mut v, 0, 40, 0x80);
    set_prio(&mut v, 0, 3, 0xc0);
    for i in [3, 40, 35, 33] {
        v.set_pending(0, i);
    }
    let (lrs, hcr) = flush(&mut v, 0);
    // 40 (0x80) first, then 0xa0 by INTID (33, 35), then 3 (0xc0).
    assert_eq!(
        listed(&lrs).iter().map(|x| x.0).collect::<Vec<_>>(),
        [40, 33, 35, 3]
    );
    assert_eq!(Lr(lrs[0]).priority(), 0x80, "the guest's priority, not 0");
    assert_eq!(Lr(lrs[1]).priority(), 0xa0);
    assert!(Lr(lrs[0]).group1());
    assert_eq!(hcr, HCR_EN, "all fit: no maintenance");
    assert_eq!(hcr & HCR_UIE, 0);
}

#[test]
fn eviction_of_lower_priority_pending_and_npie() {
    let mut v = vgic(1);
    for i in 32..38 {
        v.set_pending(0, i);
    }
    let (lrs, hcr) = flush(&mut v, 0);
    assert_eq!(
        listed(&lrs).iter().map(|x| x.0).collect::<Vec<_>>(),
        [32, 33, 34, 35]
    );
    assert_eq!(hcr, HCR_EN | HCR_NPIE);
    v.fold_lrs(0, &lrs);
    // A more urgent interrupt arrives: it displaces the lowest one listed.
    set_prio(&mut v, 0, 50, 0x80);
    assert_eq!(v.set_pending(0, 50), Some(0));
    let (lrs, hcr) = flush(&mut v, 0);
    assert_eq!(
        listed(&lrs).iter().map(|x| x.0).collect::<Vec<_>>(),
        [50, 32, 33, 34]
    );
    assert_eq!(hcr, HCR_EN | HCR_NPIE);
    assert!(v.irq(0, 35).unwrap().is_pending(), "evicted, still pending");
}

#[test]
fn active_stays_listed_and_ack_clears_the_latch() {
    let mut v = vgic(1);
    for i in 32..36 {
        v.set_pending(0, i);
    }
    let (mut lrs, _) = flush(&mut v, 0);
    ack(&mut lrs, 33);
    v.fold_lrs(0, &lrs);
    let irq = v.irq(0, 33).unwrap();
    assert!(irq.active && !irq.is_pending());
    // More pending work than LRs: the active one keeps its LR.
    for i in 36..40 {
        set_prio(&mut v, 0, i, 0x80);
        v.set_pending(0, i);
    }
    let (lrs, hcr) = flush(&mut v, 0);
    let l = listed(&lrs);
    assert_eq!(l[0], (33, LrState::Active));
    assert_eq!(l[1..].iter().map(|x| x.0).collect::<Vec<_>>(), [36, 37, 38]);
    assert_eq!(hcr, HCR_EN | HCR_NPIE);
}

#[test]
fn eoi_invalidates_and_deactivates() {
    let mut v = vgic(1);
    v.set_pending(0, 40);
    let (mut lrs, _) = flush(&mut v, 0);
    ack(&mut lrs, 40);
    eoi(&mut lrs, 40);
    v.fold_lrs(0, &lrs);
    let irq = v.irq(0, 40).unwrap();
    assert!(!irq.active && !irq.is_pending());
    assert_eq!(irq.owner, None);
    let (lrs, hcr) = flush(&mut v, 0);
    assert!(listed(&lrs).is_empty());
    assert_eq!(hcr, HCR_EN);
    // Folding twice changes nothing.
    v.fold_lrs(0, &lrs);
    v.fold_lrs(0, &lrs);
}

#[test]
fn edge_repend_while_active_becomes_pending_active() {
    let mut v = vgic(1);
    v.set_pending(0, 7);
    let (mut lrs, _) = flush(&mut v, 0);
    ack(&mut lrs, 7);
    // A new SGI arrives while the guest runs its handler.
    assert_eq!(v.set_pending(0, 7), Some(0));
    v.fold_lrs(0, &lrs);
    let irq = v.irq(0, 7).unwrap();
    assert!(irq.active && irq.is_pending());
    let (mut lrs, _) = flush(&mut v, 0);
    assert_eq!(listed(&lrs), [(7, LrState::PendingActive)]);
    eoi(&mut lrs, 7);
    assert_eq!(listed(&lrs), [(7, LrState::Pending)]);
    v.fold_lrs(0, &lrs);
    let irq = v.irq(0, 7).unwrap();
    assert!(!irq.active && irq.is_pending());
}

#[test]
fn edge_repend_before_exit_is_not_lost_when_not_acked() {
    let mut v = vgic(1);
    v.set_pending(0, 7);
    let (lrs, _) = flush(&mut v, 0);
    v.set_pending(0, 7); // coalesces with the listed, unacknowledged one
    v.fold_lrs(0, &lrs);
    assert!(v.irq(0, 7).unwrap().is_pending());
    let (mut lrs, _) = flush(&mut v, 0);
    ack(&mut lrs, 7);
    v.fold_lrs(0, &lrs);
    assert!(
        !v.irq(0, 7).unwrap().is_pending(),
        "one edge, one acknowledge"
    );
}

#[test]
fn level_semantics() {
    let mut v = vgic(1);
    // SPI 40 level-sensitive (reset), line high.
    assert_eq!(v.set_level(0, 40, true), Some(0));
    let (mut lrs, _) = flush(&mut v, 0);
    assert!(
        Lr(lrs[0]).eoi_maintenance(),
        "EOI bit: re-sample on deactivation"
    );
    ack(&mut lrs, 40);
    v.fold_lrs(0, &lrs);
    let irq = v.irq(0, 40).unwrap();
    assert!(irq.active && irq.is_pending(), "line still high");
    let (mut lrs, _) = flush(&mut v, 0);
    assert_eq!(listed(&lrs), [(40, LrState::PendingActive)]);
    // The device drops the line (a trapped MMIO write), then the guest EOIs.
    v.fold_lrs(0, &lrs);
    assert_eq!(v.set_level(0, 40, false), None);
    let (mut lrs2, _) = flush(&mut v, 0);
    assert_eq!(listed(&lrs2), [(40, LrState::Active)]);
    assert!(!Lr(lrs2[0]).eoi_maintenance());
    eoi(&mut lrs2, 40);
    v.fold_lrs(0, &lrs2);
    let irq = v.irq(0, 40).unwrap();
    assert!(!irq.active && !irq.is_pending());
    let _ = &mut lrs;
    // set_level(true) twice is one level, not two edges.
    v.set_level(0, 40, true);
    v.set_level(0, 40, true);
    let (mut lrs, _) = flush(&mut v, 0);
    ack(&mut lrs, 40);
    v.set_level(0, 40, false);
    v.fold_lrs(0, &lrs);
    assert!(!v.irq(0, 40).unwrap().is_pending());
}

#[test]
fn edge_spi_pends_on_rising_edges_only() {
    let mut v = vgic(1);
    v.dist_write(0, 0xc08, 4, 0xaaaa_aaaa); // SPIs 32-47 edge
    v.set_level(0, 33, true);
    v.set_level(0, 33, false);
    assert!(v.irq(0, 33).unwrap().is_pending(), "latched");
    let (mut lrs, _) = flush(&mut v, 0);
    ack(&mut lrs, 33);
    v.fold_lrs(0, &lrs);
    assert!(!v.irq(0, 33).unwrap().is_pending());
}

#[test]
fn hw_linked_timer() {
    let mut v = vgic(1);
    v.set_hw(0, 27, Some(27));
    assert_eq!(v.set_level(0, 27, true), Some(0));
    let (mut lrs, hcr) = flush(&mut v, 0);
    let lr = Lr(lrs[0]);
    assert!(lr.is_hw());
    assert_eq!(lr.pintid(), Some(27));
    assert_eq!(lr.vintid(), 27);
    assert!(!lr.eoi_maintenance(), "no EOI maintenance for HW LRs");
    assert_eq!(lr.state(), LrState::Pending);
    assert_eq!(hcr, HCR_EN);
    ack(&mut lrs, 27);
    v.fold_lrs(0, &lrs);
    // Active: the LR is active only, never pending+active for HW.
    let (mut lrs, _) = flush(&mut v, 0);
    assert_eq!(listed(&lrs), [(27, LrState::Active)]);
    // The guest deactivates: the physical interrupt goes with it, and the
    // virtual one is idle until the physical one fires again.
    eoi(&mut lrs, 27);
    v.fold_lrs(0, &lrs);
    let irq = v.irq(0, 27).unwrap();
    assert!(!irq.active && !irq.is_pending());
    assert!(!v.has_deliverable(0));
    // A new physical firing after the deactivation, before the fold, is kept.
    v.set_level(0, 27, true);
    let (mut lrs, _) = flush(&mut v, 0);
    ack(&mut lrs, 27);
    eoi(&mut lrs, 27);
    v.set_level(0, 27, false);
    v.set_level(0, 27, true);
    v.fold_lrs(0, &lrs);
    assert!(v.irq(0, 27).unwrap().is_pending());
    v.set_hw(0, 27, Some(5)); // SGIs cannot be pINTIDs
    assert_eq!(v.irq(0, 27).unwrap().hw_pintid, None);
}

#[test]
fn actives_beyond_lrs_use_lrenpie_and_eoicount() {
    let mut v = vgic(1);
    // Five nested actives (priorities 0xe0 > ... > 0x60 urgency order) and
    // one pending NMI.
    let prios = [(32, 0xe0u8), (33, 0xc0), (34, 0xa0), (35, 0x90), (36, 0x88)];
    for (i, p) in prios {
        set_prio(&mut v, 0, i, p);
        v.set_pending(0, i);
        v.dist_write(0, 0x304, 4, 1 << (i - 32));
        v.dist_write(0, 0x284, 4, 1 << (i - 32));
    }
    set_prio(&mut v, 0, 40, 0x80);
    v.set_pending(0, 40);
    let (mut lrs, hcr) = flush(&mut v, 0);
    let l = listed(&lrs);
    // The three most urgent actives, and one LR kept for the NMI.
    assert_eq!(
        l,
        [
            (36, LrState::Active),
            (35, LrState::Active),
            (34, LrState::Active),
            (40, LrState::Pending)
        ]
    );
    assert_eq!(hcr, HCR_EN | HCR_LRENPIE);
    // The guest takes the NMI, EOIs it and the three listed actives, then
    // 33 (not listed): EOIcount = 1.
    ack(&mut lrs, 40);
    for i in [40, 36, 35, 34] {
        eoi(&mut lrs, i);
    }
    v.fold_lrs(0, &lrs);
    assert!(v.eoi_count(0, 1).is_empty());
    assert!(!v.irq(0, 33).unwrap().active);
    assert!(v.irq(0, 32).unwrap().active);
    let (lrs, hcr) = flush(&mut v, 0);
    assert_eq!(listed(&lrs), [(32, LrState::Active)]);
    assert_eq!(hcr, HCR_EN);
    assert_eq!(hcr_eoi_count(hcr), 0);
}

#[test]
fn eoicount_of_a_hw_interrupt_returns_its_pintid() {
    let mut v = vgic(1);
    v.set_hw(0, 27, Some(27));
    v.redist_write(
        0,
        0,
        0x10300,
        4,
        1 << 27 | 1 << 20 | 1 << 21 | 1 << 22 | 1 << 23,
    );
    set_prio(&mut v, 0, 27, 0xe0);
    v.set_pending(0, 40);
    let (lrs, hcr) = flush(&mut v, 0);
    assert_eq!(hcr, HCR_EN | HCR_LRENPIE);
    assert!(!listed(&lrs).iter().any(|x| x.0 == 27));
    v.fold_lrs(0, &lrs);
    let mut got = v.eoi_count(0, 31);
    got.sort();
    assert_eq!(got.as_slice(), [27]);
}

#[test]
fn spi_stays_with_the_vcpu_that_holds_it() {
    let mut v = vgic(2);
    v.set_pending(0, 45);
    let (mut lrs0, _) = flush(&mut v, 0);
    assert_eq!(listed(&lrs0), [(45, LrState::Pending)]);
    // The guest re-routes it to vCPU 1 while vCPU 0 holds it.
    v.dist_write(1, 0x6100 + 8 * 13, 8, 1);
    let (lrs1, _) = flush(&mut v, 1);
    assert!(listed(&lrs1).is_empty(), "not presented twice");
    ack(&mut lrs0, 45);
    v.fold_lrs(0, &lrs0);
    assert!(
        v.set_pending(1, 45) == Some(0),
        "pending+active stays on vCPU 0"
    );
    let (mut lrs0, _) = flush(&mut v, 0);
    assert_eq!(listed(&lrs0), [(45, LrState::PendingActive)]);
    eoi(&mut lrs0, 45);
    // Deactivated: the pending part now follows the new route... once
    // vCPU 0 folds (its LR still holds it pending).
    v.fold_lrs(0, &lrs0);
    let (lrs0, _) = flush(&mut v, 0);
    assert!(listed(&lrs0).is_empty());
    v.fold_lrs(0, &lrs0);
    let (lrs1, _) = flush(&mut v, 1);
    assert_eq!(listed(&lrs1), [(45, LrState::Pending)]);
}

#[test]
fn disabled_group_or_interrupt_is_not_listed_but_active_is() {
    let mut v = vgic(1);
    v.set_pending(0, 40);
    v.dist_write(0, 0x184, 4, 1 << 8);
    let (lrs, _) = flush(&mut v, 0);
    assert!(listed(&lrs).is_empty());
    assert!(!v.has_deliverable(0));
    v.dist_write(0, 0x104, 4, 1 << 8);
    v.dist_write(0, 0, 4, 0);
    assert!(!v.has_deliverable(0));
    v.dist_write(0, 0x304, 4, 1 << 8);
    let (lrs, _) = flush(&mut v, 0);
    assert_eq!(
        listed(&lrs),
        [(40, LrState::Active)],
        "active stays listed; pending part held back"
    );
}

#[test]
fn icpendr_while_listed_is_kept_after_fold() {
    let mut v = vgic(2);
    v.set_pending(0, 40);
    let (lrs, _) = flush(&mut v, 0);
    // Another vCPU clears it while vCPU 0 runs: vCPU 0 must be kicked.
    let r = v.dist_write(1, 0x284, 4, 1 << 8);
    assert!(r.kicks.contains(0));
    v.fold_lrs(0, &lrs);
    assert!(!v.irq(0, 40).unwrap().is_pending());
    let (lrs, _) = flush(&mut v, 0);
    assert!(listed(&lrs).is_empty());
}

#[test]
fn reset_vcpu_clears_its_bank_and_lrs() {
    let mut v = vgic(2);
    v.set_pending(1, 3);
    v.set_pending(1, 33);
    v.dist_write(0, 0x6100 + 8, 8, 1);
    let (mut lrs, _) = flush(&mut v, 1);
    ack(&mut lrs, 33);
    v.fold_lrs(1, &lrs);
    v.reset_vcpu(1);
    assert!(!v.irq(1, 3).unwrap().is_pending());
    assert!(!v.irq(1, 3).unwrap().enabled);
    assert!(!v.irq(1, 33).unwrap().active);
    v.reset_vcpu(99);
}

#[test]
fn short_and_long_lr_arrays() {
    let mut v = vgic(1);
    for i in 32..40 {
        v.set_pending(0, i);
    }
    let mut one = [0u64; 1];
    let hcr = v.flush_lrs(0, &mut one);
    assert_eq!(Lr(one[0]).vintid(), 32);
    assert_eq!(hcr, HCR_EN | HCR_NPIE);
    v.fold_lrs(0, &[]);
    let mut many = [0u64; 20];
    let hcr = v.flush_lrs(0, &mut many);
    assert_eq!(hcr, HCR_EN);
    assert_eq!(many.iter().filter(|&&x| Lr(x).is_valid()).count(), 8);
    let mut none: [u64; 0] = [];
    assert_eq!(v.flush_lrs(0, &mut none), HCR_EN | HCR_NPIE);
}

#[test]
fn pending_active_is_listed_active_with_eoi_when_others_wait() {
    let mut v = vgic(1);
    v.set_pending(0, 7);
    let (mut lrs, _) = flush(&mut v, 0);
    ack(&mut lrs, 7);
    v.fold_lrs(0, &lrs);
    v.set_pending(0, 7);
    for i in 32..36 {
        v.set_pending(0, i);
    }
    let (mut lrs, hcr) = flush(&mut v, 0);
    assert_eq!(hcr, HCR_EN | HCR_NPIE);
    assert_eq!(listed(&lrs)[0], (7, LrState::Active));
    assert!(Lr(lrs[0]).eoi_maintenance(), "its deactivation must exit");
    eoi(&mut lrs, 7);
    assert_eq!(Lr(lrs[0]).state(), LrState::Invalid);
    v.fold_lrs(0, &lrs);
    let irq = v.irq(0, 7).unwrap();
    assert!(irq.is_pending() && !irq.active);
}

// ----- Ownership changes, forwarded PPIs, WFI wake-up ------------------------

#[test]
fn rerouted_pending_spi_kicks_its_new_target_when_released() {
    let mut v = vgic(2);
    v.set_pending(0, 45);
    let (lrs0, _) = flush(&mut v, 0);
    assert_eq!(listed(&lrs0), [(45, LrState::Pending)]);
    assert!(v.take_handoff_kicks().is_empty());
    // Re-routed to vCPU 1 while vCPU 0 holds it pending, unacknowledged.
    v.dist_write(1, 0x6100 + 8 * 13, 8, 1);
    // vCPU 0 exits: the LR is folded and the SPI released; vCPU 1 must be
    // kicked, or it would only see the SPI at its next unrelated exit.
    v.fold_lrs(0, &lrs0);
    assert!(v.take_handoff_kicks().contains(1));
    let (lrs1, _) = flush(&mut v, 1);
    assert_eq!(listed(&lrs1), [(45, LrState::Pending)]);
}

#[test]
fn deactivated_rerouted_spi_kicks_its_new_target() {
    let mut v = vgic(2);
    v.set_pending(0, 45);
    let (mut lrs0, _) = flush(&mut v, 0);
    ack(&mut lrs0, 45);
    v.fold_lrs(0, &lrs0);
    v.dist_write(1, 0x6100 + 8 * 13, 8, 1);
    v.set_pending(1, 45);
    let (mut lrs0, _) = flush(&mut v, 0);
    let _ = v.take_handoff_kicks();
    eoi(&mut lrs0, 45);
    v.fold_lrs(0, &lrs0);
    // Still pending (the new edge) and now vCPU 1's.
    assert!(v.take_handoff_kicks().contains(1));
}

#[test]
fn spi_staying_home_kicks_nobody() {
    let mut v = vgic(2);
    v.set_pending(0, 45);
    let (lrs0, _) = flush(&mut v, 0);
    v.fold_lrs(0, &lrs0);
    assert!(v.take_handoff_kicks().is_empty());
}

#[test]
fn vm_reset_returns_every_interrupt_to_reset() {
    let mut v = vgic(2);
    v.set_pending(0, 40);
    v.set_pending(1, 5);
    v.set_hw(0, 27, Some(27));
    v.dist_write(0, 0x6100 + 8 * 8, 8, 1);
    let _ = flush(&mut v, 0);
    v.reset();
    let fresh = Vgic::new(2, 64, 5);
    assert_eq!(v.dist_read(0, 0, 4), fresh.dist_read(0, 0, 4));
    for c in 0..2 {
        for intid in [5, 27, 40, 45] {
            assert_eq!(
                v.irq(c, intid),
                fresh.irq(c, intid),
                "vCPU {c} INTID {intid}"
            );
        }
        assert_eq!(
            v.redist_read(c, c, 0x10100, 4),
            fresh.redist_read(c, c, 0x10100, 4)
        );
    }
    assert_eq!(
        v.dist_read(0, 0x6100 + 8 * 8, 8),
        fresh.dist_read(0, 0x6100 + 8 * 8, 8)
    );
    assert_eq!(v.mpidr(1), fresh.mpidr(1));
    assert!(!v.has_deliverable(0) && !v.has_deliverable(1));
}

/// vCPU 0 with the virtual timer linked, enabled at 0xa0.
fn timer_vgic() -> Vgic {
    let mut v = vgic(1);
    v.set_hw(0, 27, Some(27));
    v.set_hw(0, 30, Some(30));
    v
}

#[test]
fn hw_level_follows_the_sample() {
    let mut v = timer_vgic();
    assert!(v.sample_hw_levels(0, 1 << 27));
    assert!(v.irq(0, 27).unwrap().is_pending());
    assert!(!v.sample_hw_levels(0, 1 << 27), "no change");
    // Non-linked PPIs ignore the sample.
    v.sample_hw_levels(0, 1 << 27 | 1 << 22);
    assert!(!v.irq(0, 22).unwrap().is_pending());
    // The timer disabled or masked at the source: no stale pending state.
    assert!(v.sample_hw_levels(0, 0));
    assert!(!v.irq(0, 27).unwrap().is_pending());
    assert_eq!(
        v.redist_read(0, 0, 0x10200, 4),
        crate::vgic::Access::Value(0)
    );
}

#[test]
fn disabled_then_cleared_timer_leaves_nothing_pending() {
    // The repro: PPI 27 disabled, CVAL passes (the level is
    // sampled high), CNTV_CTL = 0 (sampled low), PPI 27 enabled again.
    let mut v = timer_vgic();
    v.redist_write(0, 0, 0x10180, 4, 1 << 27);
    v.sample_hw_levels(0, 1 << 27);
    assert_eq!(v.hw_active_wanted(0), 1 << 27, "held active while pending");
    v.sample_hw_levels(0, 0);
    v.redist_write(0, 0, 0x10100, 4, 1 << 27);
    let (lrs, _) = flush(&mut v, 0);
    assert!(listed(&lrs).is_empty());
    assert!(!v.wakes_from_wfi(0, &VirtualCpuIf::OPEN));
    assert_eq!(v.hw_active_wanted(0), 0, "physical interrupt released");
}

#[test]
fn physical_active_follows_virtual_active_or_pending() {
    let mut v = timer_vgic();
    assert_eq!(v.hw_active_wanted(0), 0);
    v.sample_hw_levels(0, 1 << 30);
    let (mut lrs, _) = flush(&mut v, 0);
    let lr = Lr(lrs[0]);
    assert_eq!((lr.vintid(), lr.is_hw(), lr.pintid()), (30, true, Some(30)));
    assert_eq!(v.hw_active_wanted(0), 1 << 30);
    // Acknowledged: active.
    ack(&mut lrs, 30);
    v.fold_lrs(0, &lrs);
    assert_eq!(v.hw_active_wanted(0), 1 << 30);
    let (mut lrs, _) = flush(&mut v, 0);
    assert_eq!(listed(&lrs), [(30, LrState::Active)]);
    // The guest turns the timer off and deactivates: HW LR gone.
    v.sample_hw_levels(0, 0);
    lrs[0] = Lr(lrs[0]).with_state(LrState::Invalid).0;
    v.fold_lrs(0, &lrs);
    assert_eq!(v.hw_active_wanted(0), 0);
    // A vCPU reset: nothing active, nothing wanted, links gone until the
    // glue links them again.
    v.sample_hw_levels(0, 1 << 30);
    let _ = flush(&mut v, 0);
    v.reset_vcpu(0);
    assert_eq!(v.hw_active_wanted(0), 0);
}

#[test]
fn timer_evicted_from_the_lrs_keeps_its_physical_side_active() {
    // Four more urgent active interrupts fill the LRs: the active timer is
    // left out, but its physical interrupt must stay active until the
    // guest's EOI (EOIcount) ends it; then the wanted state drops.
    let mut v = timer_vgic();
    v.sample_hw_levels(0, 1 << 27);
    let (mut lrs, _) = flush(&mut v, 0);
    ack(&mut lrs, 27);
    v.fold_lrs(0, &lrs);
    for i in 0..4u32 {
        set_prio(&mut v, 0, i, 0x80 - 8 * i as u8);
        v.redist_write(0, 0, 0x10300, 4, 1 << i);
    }
    let (lrs, hcr) = flush(&mut v, 0);
    assert!(listed(&lrs).iter().all(|&(i, _)| i != 27));
    assert_ne!(hcr & HCR_LRENPIE, 0);
    assert_eq!(v.hw_active_wanted(0) & 1 << 27, 1 << 27);
    v.fold_lrs(0, &lrs);
    v.sample_hw_levels(0, 0);
    let phys = v.eoi_count(0, 1);
    assert_eq!(phys.as_slice(), [27]);
    assert_eq!(v.hw_active_wanted(0) & 1 << 27, 0);
}

fn cpuif(pmr: u8, eng0: bool, eng1: bool, ap1r0: u32) -> VirtualCpuIf {
    let vmcr = u64::from(pmr) << 24 | u64::from(eng0) | u64::from(eng1) << 1;
    VirtualCpuIf::from_regs(vmcr, &[0], &[ap1r0], 5)
}

#[test]
fn wfi_stays_asleep_for_an_interrupt_masked_by_pmr() {
    let mut v = vgic(1);
    v.set_pending(0, 40);
    assert!(v.has_deliverable(0));
    // PMR 0xa0 masks the 0xa0 interrupt; 0xa8 lets it through.
    assert!(!v.wakes_from_wfi(0, &cpuif(0xa0, true, true, 0)));
    assert!(v.wakes_from_wfi(0, &cpuif(0xa8, true, true, 0)));
    // A pseudo-NMI at 0x80 gets through PMR 0xa0.
    set_prio(&mut v, 0, 41, 0x80);
    v.set_pending(0, 41);
    assert!(v.wakes_from_wfi(0, &cpuif(0xa0, true, true, 0)));
}

#[test]
fn wfi_honours_group_enables_and_running_priority() {
    let mut v = vgic(1);
    v.set_pending(0, 40);
    assert!(
        !v.wakes_from_wfi(0, &cpuif(0xff, true, false, 0)),
        "Group 1 disabled"
    );
    assert!(v.wakes_from_wfi(0, &cpuif(0xff, false, true, 0)));
    // Something at 0xa0 is active (AP1R0 bit 20): an equal priority waits.
    assert!(!v.wakes_from_wfi(0, &cpuif(0xff, true, true, 1 << 20)));
    // Running at 0xc0 (bit 24): 0xa0 preempts.
    assert!(v.wakes_from_wfi(0, &cpuif(0xff, true, true, 1 << 24)));
}

/// The scans visit only the busy sets' members: an interrupt leaves its set
/// once a flush finds it idle, and comes back with its next event.
#[test]
fn idle_interrupts_leave_the_busy_sets_and_come_back() {
    let mut v = vgic(2);
    // Configuration writes make members; the first scan drops them.
    let (lrs, _) = flush(&mut v, 0);
    v.fold_lrs(0, &lrs);
    assert_eq!(v.busy_members(0), (0, vec![]));
    for round in 0..2 {
        v.set_pending(0, 3);
        v.set_pending(0, 45);
        assert_eq!(v.busy_members(0).0 & 1 << 3, 1 << 3, "round {round}");
        assert_eq!(v.busy_members(0).1, [45], "round {round}");
        let (mut lrs, _) = flush(&mut v, 0);
        assert_eq!(
            listed(&lrs),
            [(3, LrState::Pending), (45, LrState::Pending)],
            "round {round}"
        );
        for intid in [3, 45] {
            ack(&mut lrs, intid);
            eoi(&mut lrs, intid);
        }
        v.fold_lrs(0, &lrs);
        let (lrs, _) = flush(&mut v, 0);
        assert!(listed(&lrs).is_empty(), "round {round}");
        assert_eq!(v.busy_members(0), (0, vec![]), "round {round}: forgotten");
        v.fold_lrs(0, &lrs);
    }
    // A level line held high keeps its interrupt a member.
    v.set_level(0, 50, true);
    let (mut lrs, _) = flush(&mut v, 0);
    ack(&mut lrs, 50);
    eoi(&mut lrs, 50);
    v.fold_lrs(0, &lrs);
    let (lrs, _) = flush(&mut v, 0);
    assert_eq!(listed(&lrs), [(50, LrState::Pending)], "line still high");
    assert_eq!(v.busy_members(0).1, [50]);
}
