//! `timer`: on every CPU the virtual timer fires [`DELAY_MS`] ahead; its
//! PPI 27 (priority [`timer::PRIORITY`]) is taken once, at or after
//! CNTV_CVAL and within [`LATE_MS`] of it, with CNTV_CTL.ISTATUS set in
//! the handler, which turns the timer off.

use super::{irq_setup, Outcome, Reason, SETUP_FAILED};
use crate::gic::{self, PMR_ON};
use crate::irq;
use crate::secondary::{Job, Outcome as JobOutcome};
use crate::topology::MAX_CPUS;
use crate::{cpu, line, timer};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How far ahead the timer is set.
const DELAY_MS: u64 = 5;
/// How late the interrupt may be: generous, for TCG on a busy host (with
/// 16 vCPU threads on 2 host cores QEMU itself delivered it 390 ms late).
/// It still catches an interrupt that only comes with some later event.
const LATE_MS: u64 = 1000;
/// How long a CPU waits for it at all.
const WAIT_MS: u64 = 3000;

/// Per CPU: the counter in the handler (0: not taken), ISTATUS there.
static TAKEN_AT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static ISTATUS: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

const NOT_TAKEN: u64 = 1;
const EARLY: u64 = 2;
const LATE: u64 = 3;
const NO_ISTATUS: u64 = 4;
const TAKEN_TWICE: u64 = 5;
const BAD_RPR: u64 = 6;

fn hook(intid: u32) {
    if intid != timer::VTIMER_INTID {
        return;
    }
    let me = cpu::index();
    let now = cpu::counter();
    ISTATUS[me].store(timer::fired(), Ordering::Relaxed);
    timer::disarm();
    TAKEN_AT[me].store(now, Ordering::Release);
}

/// The check on the calling CPU.
pub fn run_on_this_cpu() -> JobOutcome {
    let me = cpu::index();
    let g = match irq_setup() {
        Ok(g) => g,
        Err(why) => return super::setup_failed(why),
    };
    TAKEN_AT[me].store(0, Ordering::Relaxed);
    ISTATUS[me].store(false, Ordering::Relaxed);
    let vt = g.irq(timer::VTIMER_INTID);
    vt.set_priority(timer::PRIORITY);
    vt.enable();
    gic::set_pmr(PMR_ON);
    let cval = cpu::counter() + cpu::ticks_from_ms(DELAY_MS);
    timer::arm_at(cval);
    irq::enable();
    cpu::wait_ms(WAIT_MS, || TAKEN_AT[me].load(Ordering::Acquire) != 0);
    // A level interrupt taken again after the timer went off would show.
    cpu::wait_ms(1, || false);
    irq::disable();
    timer::disarm();
    vt.disable();
    vt.clear_pending();

    let at = TAKEN_AT[me].load(Ordering::Acquire);
    let fail = |code, detail| JobOutcome { code, detail };
    if at == 0 {
        return fail(NOT_TAKEN, cval);
    }
    if at < cval {
        return fail(EARLY, cval - at);
    }
    if at - cval > cpu::ticks_from_ms(LATE_MS) {
        return fail(LATE, at - cval);
    }
    if !ISTATUS[me].load(Ordering::Relaxed) {
        return fail(NO_ISTATUS, 0);
    }
    if irq::log_len(me) != 2 {
        // Two events (enter, exit) per interrupt taken.
        return fail(TAKEN_TWICE, irq::log_len(me) as u64 / 2);
    }
    match irq::first_entry(me, timer::VTIMER_INTID) {
        Some(e) if e.rpr == timer::PRIORITY => JobOutcome::OK,
        Some(e) => fail(BAD_RPR, e.rpr as u64),
        None => fail(NOT_TAKEN, cval),
    }
}

fn explain(cpu: usize, out: JobOutcome) -> Reason {
    let d = out.detail;
    let id = timer::VTIMER_INTID;
    match out.code {
        NOT_TAKEN => line::format(format_args!(
            "cpu {cpu}: PPI {id} not taken within {WAIT_MS} ms (CVAL {d:#x}, now {:#x})",
            crate::cpu::counter()
        )),
        EARLY => line::format(format_args!(
            "cpu {cpu}: PPI {id} taken {d} ticks before CVAL"
        )),
        LATE => line::format(format_args!(
            "cpu {cpu}: PPI {id} taken {d} ticks after CVAL (over {LATE_MS} ms)"
        )),
        NO_ISTATUS => line::format(format_args!(
            "cpu {cpu}: CNTV_CTL_EL0.ISTATUS was 0 in the handler of PPI {id}"
        )),
        TAKEN_TWICE => line::format(format_args!(
            "cpu {cpu}: {d} interrupts taken, want PPI {id} once"
        )),
        BAD_RPR => line::format(format_args!(
            "cpu {cpu}: RPR {d:#x} in the handler of PPI {id}, want {:#x}",
            timer::PRIORITY
        )),
        SETUP_FAILED => super::explain_setup(cpu),
        c => line::format(format_args!("cpu {cpu}: job failed with code {c} ({d:#x})")),
    }
}

pub fn timer() -> Outcome {
    irq::set_hook(Some(hook));
    let result = super::on_every_cpu(Job::Timer, run_on_this_cpu, explain);
    irq::set_hook(None);
    result?;
    Ok(None)
}
