//! Several interrupts pending at once on the boot CPU, made pending while
//! PSTATE.I is set, then unmasked: they must be taken one at a time in
//! priority order, lower INTID first among equal priorities (what QEMU's
//! GIC does; the architecture leaves ties to the implementation, but a
//! vGIC should not reorder what the hardware would not).
//!
//! - `priority-order`: 7 SGIs (6 priorities, one tie) sent to self through
//!   ICC_SGI1R_EL1 in scrambled order.
//! - `lr-overflow`: 12 interrupts, more than a GIC has list registers (4 on
//!   QEMU): 8 SGIs sent to self and 4 PPIs made pending through
//!   GICR_ISPENDR0, mixed priorities with ties, then one SGI at NMI
//!   priority last. A vGIC must still deliver each exactly once, the NMI
//!   first.

use super::{irq_setup, Outcome};
use crate::gic::{self, Gic, PMR_ON, PRIO_IRQ, PRIO_NMI};
use crate::irq::{self, Kind};
use crate::{cpu, fail};

/// How long the boot CPU waits for everything to be pending, then taken.
const WAIT_MS: u64 = 1000;

/// How an interrupt is made pending.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pend {
    /// An SGI sent to this CPU through ICC_SGI1R_EL1.
    SgiToSelf,
    /// A write to GICR_ISPENDR0.
    Ispendr,
}

/// (INTID, priority, how), in the order they are made pending.
type Spec = (u32, u8, Pend);

const PRIORITY_ORDER: [Spec; 7] = [
    (13, 0xb0, Pend::SgiToSelf),
    (10, 0xc8, Pend::SgiToSelf),
    (8, 0xb0, Pend::SgiToSelf),
    (14, 0xa8, Pend::SgiToSelf),
    (12, 0x88, Pend::SgiToSelf),
    (11, 0xa0, Pend::SgiToSelf),
    (9, 0x90, Pend::SgiToSelf),
];

/// The NMI comes last: it must overtake everything already pending.
const LR_OVERFLOW: [Spec; 13] = [
    (5, 0xd8, Pend::SgiToSelf),
    (17, 0x88, Pend::Ispendr),
    (0, 0xd0, Pend::SgiToSelf),
    (7, 0xc0, Pend::SgiToSelf),
    (2, 0xc0, Pend::SgiToSelf),
    (19, 0x98, Pend::Ispendr),
    (4, 0xa0, Pend::SgiToSelf),
    (1, 0x98, Pend::SgiToSelf),
    (16, 0xa8, Pend::Ispendr),
    (3, 0xb8, Pend::SgiToSelf),
    (18, 0xb0, Pend::Ispendr),
    (6, 0x90, Pend::SgiToSelf),
    (15, PRIO_NMI, Pend::SgiToSelf),
];

pub fn priority_order() -> Outcome {
    take_in_order(&PRIORITY_ORDER)
}

pub fn lr_overflow() -> Outcome {
    take_in_order(&LR_OVERFLOW)
}

/// Makes `specs` pending with PSTATE.I set, unmasks, and checks that each
/// is taken once, by priority then INTID, with RPR = its priority.
fn take_in_order(specs: &[Spec]) -> Outcome {
    let g = match irq_setup() {
        Ok(g) => g,
        Err(why) => fail!("GIC setup failed: {why}"),
    };
    let result = run(&g, specs);
    irq::disable();
    for &(intid, _, _) in specs {
        let i = g.irq(intid);
        i.disable();
        i.clear_pending();
        i.set_priority(PRIO_IRQ);
    }
    gic::set_pmr(PMR_ON);
    result
}

fn run(g: &Gic, specs: &[Spec]) -> Outcome {
    let me = cpu::index();
    let mpidr = cpu::mpidr();
    for &(intid, prio, _) in specs {
        let i = g.irq(intid);
        i.set_priority(prio);
        i.enable();
    }
    for &(intid, _, how) in specs {
        match how {
            Pend::SgiToSelf => gic::send_sgi(intid, mpidr),
            Pend::Ispendr => g.irq(intid).set_pending(),
        }
    }
    let all_pending = || specs.iter().all(|&(intid, _, _)| g.irq(intid).pending().0);
    if !cpu::wait_ms(WAIT_MS, all_pending) {
        let missing = specs
            .iter()
            .find(|&&(intid, _, _)| !g.irq(intid).pending().0);
        fail!(
            "INTID {} is not pending {WAIT_MS} ms after it was made pending",
            missing.map_or(0, |s| s.0)
        );
    }
    irq::reset_log(me);
    irq::enable();
    cpu::wait_ms(WAIT_MS, || irq::entries(me).count() >= specs.len());
    // Give doubles a chance to show.
    cpu::wait_ms(1, || false);
    irq::disable();

    let mut want = [(0u32, 0u8); 16];
    let want = &mut want[..specs.len()];
    for (w, &(intid, prio, _)) in want.iter_mut().zip(specs) {
        *w = (intid, prio);
    }
    want.sort_unstable_by_key(|&(intid, prio)| (prio, intid));
    let got = irq::entries(me).count();
    for (n, &(intid, prio)) in want.iter().enumerate() {
        let Some(e) = irq::entries(me).nth(n) else {
            fail!(
                "took {got} of {} interrupts; the next should have been INTID {intid} (priority {prio:#x})",
                specs.len()
            );
        };
        if e.intid != intid {
            fail!(
                "interrupt {} taken was INTID {} (RPR {:#x}), want INTID {intid} (priority {prio:#x}); order so far: {}",
                n + 1,
                e.intid,
                e.rpr,
                order(me, n + 1).as_str()
            );
        }
        if e.rpr != prio {
            fail!(
                "RPR {:#x} in the handler of INTID {intid}, want its priority {prio:#x}",
                e.rpr
            );
        }
    }
    if got != specs.len() {
        fail!(
            "took {got} interrupts, want {} (each once): {}(spurious: {})",
            specs.len(),
            order(me, got).as_str(),
            irq::spurious(me)
        );
    }
    // No nesting: each handler ends before the next starts.
    let mut depth = 0i32;
    for e in irq::events(me) {
        depth += if e.kind == Kind::Enter { 1 } else { -1 };
        if !(0..=1).contains(&depth) {
            fail!(
                "handlers nested with PSTATE.I set: {}",
                order(me, got).as_str()
            );
        }
    }
    Ok(None)
}

/// The first `n` INTIDs taken, for a failure message.
fn order(cpu: usize, n: usize) -> crate::line::Line<96> {
    use core::fmt::Write;
    let mut l = crate::line::Line::new();
    for e in irq::entries(cpu).take(n) {
        let _ = write!(l, "{} ", e.intid);
    }
    l
}
