//! The vGIC (hypervisor/src/vgic/): one Vgic driven by a random sequence of
//! distributor and redistributor reads and writes, SGIs, interrupt lines,
//! "virtual NMI" injections, and guest entries and exits with the LR
//! fold/flush in between, the way the glue (vgic/hw.rs) calls it. After
//! every operation the invariants below are checked.
//!
//! Input: a 4-byte header, then 16-byte operations.
//! - header: [vcpus, spis, priority_bits, lrs]: 1 + vcpus % 8 vCPUs whose
//!   MPIDR layout is (vcpus >> 4) % 4 (0: Aff0 = i; 1: Aff1 = i; 2: Aff3 =
//!   1, Aff0 = i; 3: Aff0 = 5 i), spis * 4 SPIs (the vGIC rounds and caps
//!   them), priority_bits as given (the vGIC clamps them), 1 + lrs % 16 LRs.
//! - operation: [op, a, b, c, d: u32, value: u64] with op % 13 selecting
//!   (see `Op`), a the acting vCPU, b/c small arguments, d an offset or
//!   INTID, value a register value. At most `MAX_OPS` operations are used
//!   (longer inputs only slow the search down).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nmivisor_fuzz::Reader;
use nmivisor_pure::vgic::irq::{priority_mask, MAX_SPIS, NO_TARGET};
use nmivisor_pure::vgic::lr::{HCR_EN, HCR_LRENPIE, HCR_NPIE};
use nmivisor_pure::vgic::regs::gicr;
use nmivisor_pure::vgic::{
    Access, Lr, LrState, SgiGroup, SgiRequest, TargetSet, Vgic, WriteResult,
};

/// Operations per input.
const MAX_OPS: usize = 300;

/// One vCPU as the glue and the hardware see it.
struct Cpu {
    /// The guest runs: the LRs were flushed and not folded yet.
    running: bool,
    /// ICH_LR<n>_EL2 as the hardware holds them (the guest changes them).
    hw: Vec<u64>,
    /// The LRs as the last flush wrote them.
    flushed: Vec<u64>,
    /// EOIs of interrupts in no LR since entry (ICH_HCR_EL2.EOIcount).
    eoi_count: u32,
    /// Per LR: 1 acknowledged, 2 deactivated (last guest action), 0 none.
    did: Vec<u8>,
    /// State changed by something other than this guest since entry (a
    /// register write, an SGI, a line): then the guest's actions alone do
    /// not decide the active state the fold ends with.
    disturbed: bool,
}

struct World {
    vgic: Vgic,
    cpus: Vec<Cpu>,
    mask: u8,
    nr_spis: u32,
}

fn mpidr(layout: u8, i: usize) -> u64 {
    let i = i as u64;
    match layout % 4 {
        0 => i,
        1 => i << 8,
        2 => 1 << 32 | i,
        _ => i * 5,
    }
}

/// ICH_LR<n>_EL2 fields decoded here, independently of vgic/lr.rs (IHI
/// 0069 §12.4.6): Priority [55:48], Group [60], HW [61], pINTID [44:32].
fn lr_priority(lr: Lr) -> u8 {
    (lr.0 >> 48) as u8
}
fn lr_group1(lr: Lr) -> bool {
    lr.0 & 1 << 60 != 0
}
fn lr_hw(lr: Lr) -> bool {
    lr.0 & 1 << 61 != 0
}
fn lr_pintid(lr: Lr) -> u32 {
    ((lr.0 >> 32) & 0x1fff) as u32
}
/// The LR with State [63:62] replaced.
fn lr_with(lr: Lr, state: LrState) -> u64 {
    let bits = u64::from(state.pending()) | u64::from(state.active()) << 1;
    lr.0 & !(3 << 62) | bits << 62
}

fn size_of(b: u8) -> u8 {
    1 << (b & 3)
}

fn check_read(a: Access, size: u8, what: &str) {
    if let Access::Value(v) = a {
        if size < 8 {
            assert!(
                v >> (u32::from(size) * 8) == 0,
                "{what}: {v:#x} does not fit {size} bytes"
            );
        }
    }
}

fn check_kicks(kicks: TargetSet, n: usize, what: &str) {
    for k in kicks.iter() {
        assert!(k < n, "{what}: kick of vCPU {k}, only {n}");
    }
}

impl World {
    fn n(&self) -> usize {
        self.cpus.len()
    }

    /// Invariants of every interrupt's state.
    fn check_state(&self) {
        let n = self.n();
        for v in 0..n {
            for intid in 0..32 {
                let irq = self
                    .vgic
                    .irq(v, intid)
                    .expect("every vCPU has 32 private interrupts");
                assert_eq!(
                    irq.priority & !self.mask,
                    0,
                    "unimplemented priority bits kept"
                );
                // SGIs are edge-triggered, PPIs level-sensitive, read-only.
                assert_eq!(irq.edge, intid < 16, "INTID {intid} trigger changed");
                if let Some(p) = irq.hw_pintid {
                    assert!((16..1020).contains(&p));
                }
            }
        }
        for intid in 32..32 + self.nr_spis {
            let irq = self.vgic.irq(0, intid).expect("SPI in range");
            assert_eq!(irq.priority & !self.mask, 0);
            assert!(
                irq.target < n || irq.target == NO_TARGET,
                "SPI {intid} targets {}",
                irq.target
            );
        }
        assert!(self.vgic.irq(0, 32 + self.nr_spis).is_none());
        assert!(self.vgic.irq(n, 0).is_none());

        // No SPI sits in the LRs of two running vCPUs: both could present it.
        let mut seen = std::collections::BTreeMap::new();
        for (v, c) in self.cpus.iter().enumerate().filter(|(_, c)| c.running) {
            for &raw in &c.flushed {
                let lr = Lr(raw);
                if lr.is_valid() && lr.vintid() >= 32 {
                    if let Some(other) = seen.insert(lr.vintid(), v) {
                        panic!("SPI {} in the LRs of vCPUs {other} and {v}", lr.vintid());
                    }
                }
            }
        }
    }

    fn enter(&mut self, v: usize) {
        let deliverable = self.vgic.has_deliverable(v);
        let c = &mut self.cpus[v];
        let hcr = self.vgic.flush_lrs(v, &mut c.hw);
        c.flushed = c.hw.clone();
        c.running = true;
        c.eoi_count = 0;
        c.did.iter_mut().for_each(|d| *d = 0);
        c.disturbed = false;
        assert!(hcr & HCR_EN != 0);
        assert_eq!(
            hcr & !(HCR_EN | HCR_NPIE | HCR_LRENPIE),
            0,
            "ICH_HCR_EL2 {hcr:#x}"
        );

        let mut intids = Vec::new();
        let mut best_pending: Option<u8> = None;
        for &raw in &c.flushed {
            let lr = Lr(raw);
            if !lr.is_valid() {
                continue;
            }
            let intid = lr.vintid();
            assert!(!intids.contains(&intid), "INTID {intid} in two LRs");
            intids.push(intid);
            let irq = self
                .vgic
                .irq(v, intid)
                .expect("an LR names an existing interrupt");
            assert_eq!(
                lr_priority(lr),
                irq.priority,
                "the LR carries the guest's priority"
            );
            assert_eq!(lr_group1(lr), irq.group1);
            let state = lr.state();
            assert_eq!(state.active(), irq.active, "INTID {intid}: LR active bit");
            if state.pending() {
                assert!(
                    irq.is_pending() && irq.enabled,
                    "INTID {intid} listed pending"
                );
            }
            match irq.hw_pintid {
                Some(p) => {
                    assert!(lr_hw(lr) && lr_pintid(lr) == p);
                    assert!(state != LrState::PendingActive, "HW LR pending+active");
                }
                None => assert!(!lr_hw(lr)),
            }
            if state == LrState::Pending {
                best_pending =
                    Some(best_pending.map_or(lr_priority(lr), |b| b.min(lr_priority(lr))));
            }
        }
        if hcr & HCR_NPIE != 0 {
            assert!(
                best_pending.is_some(),
                "NPIE with no pending LR fires at once"
            );
        }
        // The most urgent deliverable interrupt is always presented.
        assert_eq!(
            deliverable,
            best_pending.is_some(),
            "deliverable interrupt left out"
        );
        assert_eq!(self.vgic.highest_pending_priority(v), best_pending);
    }

    fn exit(&mut self, v: usize) {
        let c = &mut self.cpus[v];
        c.running = false;
        let hw = c.hw.clone();
        let flushed = c.flushed.clone();
        let did = c.did.clone();
        let count = c.eoi_count;
        let disturbed = c.disturbed;
        self.vgic.fold_lrs(v, &hw);
        let phys = self.vgic.eoi_count(v, count);
        for p in phys {
            assert!((16..1020).contains(&p));
        }
        // What the guest did to an LR the fold takes: an acknowledged
        // interrupt is active, a deactivated one is not.
        for ((&now, &then), &d) in hw.iter().zip(&flushed).zip(&did) {
            let (now, then) = (Lr(now), Lr(then));
            if disturbed || !then.is_valid() || now.vintid() != then.vintid() {
                continue;
            }
            let irq = self
                .vgic
                .irq(v, then.vintid())
                .expect("listed interrupt exists");
            match d {
                1 => assert!(
                    irq.active,
                    "acknowledged INTID {} not active",
                    then.vintid()
                ),
                2 => assert!(
                    !irq.active,
                    "deactivated INTID {} still active",
                    then.vintid()
                ),
                _ => {}
            }
        }
    }

    fn guest(&mut self, v: usize, lr: usize, action: u8, value: u64) {
        let c = &mut self.cpus[v];
        if !c.running {
            return;
        }
        let Some(slot) = c.hw.get_mut(lr) else { return };
        let cur = Lr(*slot);
        match action % 4 {
            // Acknowledge: pending -> active.
            0 if cur.state() == LrState::Pending => {
                *slot = lr_with(cur, LrState::Active);
                c.did[lr] = 1;
            }
            // Deactivate (EOI with EOImode=0, or DIR): clears active.
            1 if cur.state().active() => {
                let to = if cur.state().pending() {
                    LrState::Pending
                } else {
                    LrState::Invalid
                };
                *slot = lr_with(cur, to);
                c.did[lr] = 2;
            }
            // An EOI that finds no LR: ICH_HCR_EL2.EOIcount counts it.
            2 => c.eoi_count = c.eoi_count.saturating_add(1).min(31),
            // Anything at all (hardware would not do this; the fold must
            // still keep its own state consistent).
            3 => {
                *slot = value;
                c.did[lr] = 0;
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader(data);
    let (vcpus, spis, bits, lrs) = (r.u8(), r.u8(), r.u8(), r.u8());
    let n = 1 + usize::from(vcpus % 8);
    let mpidrs: Vec<u64> = (0..n).map(|i| mpidr(vcpus >> 4, i)).collect();
    let nr_lrs = 1 + usize::from(lrs % 16);
    let vgic = Vgic::with_mpidrs(&mpidrs, usize::from(spis) * 4, bits);
    let nr_spis = (usize::from(spis) * 4).div_ceil(32) * 32;
    let mut w = World {
        vgic,
        cpus: (0..n)
            .map(|_| Cpu {
                running: false,
                hw: vec![0; nr_lrs],
                flushed: vec![0; nr_lrs],
                eoi_count: 0,
                did: vec![0; nr_lrs],
                disturbed: false,
            })
            .collect(),
        mask: priority_mask(bits),
        nr_spis: nr_spis.min(MAX_SPIS) as u32,
    };
    w.check_state();

    for _ in 0..MAX_OPS {
        if r.is_empty() {
            break;
        }
        let (op, a, b, c) = (r.u8(), r.u8(), r.u8(), r.u8());
        let (d, value) = (r.u32(), r.u64());
        let v = usize::from(a) % n;
        let size = size_of(b);
        let op = op % 13;
        if matches!(op, 1 | 3 | 4 | 5 | 6 | 7) {
            w.cpus.iter_mut().for_each(|c| c.disturbed = true);
        }
        match op {
            0 => {
                let off = u64::from(d & 0xffff);
                check_read(w.vgic.dist_read(v, off, size), size, "GICD read");
                if let (0, 4) = (off, size) {
                    let Access::Value(ctlr) = w.vgic.dist_read(v, 0, 4) else {
                        panic!("GICD_CTLR unhandled")
                    };
                    assert_eq!(ctlr & 0x50, 0x50, "ARE and DS read as one");
                }
            }
            1 => {
                let off = u64::from(d & 0xffff);
                let WriteResult { kicks, .. } = w.vgic.dist_write(v, off, size, value);
                check_kicks(kicks, n, "GICD write");
            }
            2 => {
                // Any frame, one past the last included.
                let frame = usize::from(c) % (n + 1);
                let off = u64::from(d) % gicr::SIZE;
                check_read(w.vgic.redist_read(v, frame, off, size), size, "GICR read");
            }
            3 => {
                let frame = usize::from(c) % (n + 1);
                let off = u64::from(d) % gicr::SIZE;
                let WriteResult { kicks, unhandled } =
                    w.vgic.redist_write(v, frame, off, size, value);
                check_kicks(kicks, n, "GICR write");
                if frame >= n {
                    assert!(unhandled && kicks.0 == 0);
                }
            }
            4 => {
                let group = [SgiGroup::G0, SgiGroup::G1, SgiGroup::AltG1][usize::from(b % 3)];
                let req = SgiRequest::decode(value, group);
                let targets = req.resolve(v, &mpidrs);
                let kicks = w.vgic.send_sgi(v, &req);
                check_kicks(kicks, n, "SGI");
                assert_eq!(
                    kicks.0 & !targets.0,
                    0,
                    "an SGI kicked a vCPU it does not target"
                );
                for t in targets.iter() {
                    let irq = w.vgic.irq(t, req.intid).unwrap();
                    if group.reaches(irq.group1) {
                        assert!(
                            irq.pending_latch,
                            "SGI {} not pending at vCPU {t}",
                            req.intid
                        );
                    }
                }
            }
            5 => {
                let intid = d % 1024;
                if let Some(k) = w.vgic.set_level(v, intid, b & 1 != 0) {
                    assert!(k < n);
                }
            }
            6 => {
                let intid = d % 1024;
                let valid = w.vgic.irq(v, intid).is_some();
                if let Some(k) = w.vgic.inject_at_priority(v, intid, b) {
                    assert!(k < n);
                }
                if valid {
                    let irq = w.vgic.irq(v, intid).unwrap();
                    assert!(irq.enabled && irq.is_pending());
                    assert_eq!(irq.priority, b & w.mask);
                }
            }
            7 => {
                let pintid = (b & 1 != 0).then_some(value as u32 % 1100);
                w.vgic.set_hw(v, d % 1024, pintid);
            }
            8 => {
                if !w.cpus[v].running {
                    w.enter(v);
                }
            }
            9 => w.guest(v, usize::from(b), c, value),
            10 => {
                if w.cpus[v].running {
                    w.exit(v);
                }
            }
            11 => {
                // A vCPU reset (PSCI CPU_ON) happens while it is not running.
                if !w.cpus[v].running {
                    w.vgic.reset_vcpu(v);
                }
            }
            _ => {
                // Exit and re-enter at once: the common interrupt-exit path.
                if w.cpus[v].running {
                    w.exit(v);
                }
                w.enter(v);
            }
        }
        w.check_state();
    }
});
