//! Both EL1 timers (virtual, PPI 27; physical, PPI 30) and the PMU
//! overflow interrupt (PPI 23) as a GIC shows level-sensitive PPIs:
//!
//! - `timer-pending-{virtual,physical}`: GICR_ISPENDR0/ICPENDR0 show the
//!   timer's output (ENABLE, ISTATUS, not IMASK) even while the PPI is
//!   disabled; IMASK or ENABLE = 0 clears it; ICPENDR cannot clear a level
//!   still asserted; once enabled it is taken exactly once.
//! - `timer-disable-while-pending-{virtual,physical}`: PPI disabled, the
//!   timer fires, the timer is turned off, the PPI enabled again: nothing is
//!   taken and the pending bit is clear.
//! - `timer-wfi-masked-{virtual,physical}`: with PSTATE.I set, a WFI still
//!   ends when the timer fires; the interrupt is taken once unmasked.
//! - `timer-cpu-off-on-{virtual,physical}`: CPU 1 calls CPU_OFF from inside
//!   the timer's handler (the interrupt active, never ended, the timer still
//!   firing); after CPU_ON its timer interrupt works again.
//! - `pmu-overflow-irq`: a software-increment counter overflows and PPI 23
//!   becomes pending and is taken; clearing the overflow clears it.

use super::{irq_setup, Outcome, Reason};
use crate::gic::{self, Irq, PMR_ON};
use crate::secondary::{self, Job, Outcome as JobOutcome};
use crate::timer::{self, Which, IMASK};
use crate::topology::MAX_CPUS;
use crate::{cpu, fail, irq, psci};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Bound on how long a level change may take to show in the GIC (under
/// nmivisor: until the physical interrupt reached the hypervisor).
const SETTLE_MS: u64 = 200;
/// How long to wait for an interrupt at all.
const WAIT_MS: u64 = 3000;
/// How long a stale interrupt gets to show up after it was re-enabled.
const STALE_MS: u64 = 20;
/// How long CPU 1 gets to turn off / come back.
const CPU_TIMEOUT_MS: u64 = 3000;

/// The PMU overflow interrupt (PPI 7).
pub const PMU_INTID: u32 = 23;

/// The timer the running case uses (0: virtual, 1: physical).
static WHICH: AtomicU32 = AtomicU32::new(0);
/// CPU 1 turns itself off from the timer's handler.
static OFF_IN_HANDLER: AtomicBool = AtomicBool::new(false);
/// Per CPU: timer (or PMU) interrupts taken by the hook.
static TAKEN: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

fn which() -> Which {
    if WHICH.load(Ordering::Relaxed) == 0 {
        Which::Virtual
    } else {
        Which::Physical
    }
}

fn hook(intid: u32) {
    let me = cpu::index();
    if intid == PMU_INTID {
        // Clearing the overflow drops the PMU's interrupt request.
        pmu::clear_overflow();
        TAKEN[me].fetch_add(1, Ordering::Relaxed);
        return;
    }
    let w = which();
    if intid != w.intid() {
        return;
    }
    TAKEN[me].fetch_add(1, Ordering::Relaxed);
    if me != 0 && OFF_IN_HANDLER.load(Ordering::Acquire) {
        // The timer interrupt stays active and unhandled, the timer keeps
        // firing: the CPU goes away with it in flight.
        let _ = psci::cpu_off();
    }
    w.off();
}

/// Sets up this CPU's GIC, the hook and `w`'s PPI (disabled, priority
/// [`timer::PRIORITY`]), with the timer off.
fn setup(w: Which) -> Result<Irq, Reason> {
    let g = match irq_setup() {
        Ok(g) => g,
        Err(why) => fail!("GIC setup failed: {why}"),
    };
    WHICH.store(matches!(w, Which::Physical) as u32, Ordering::Relaxed);
    TAKEN[cpu::index()].store(0, Ordering::Relaxed);
    w.off();
    let t = g.irq(w.intid());
    t.disable();
    t.clear_pending();
    t.set_priority(timer::PRIORITY);
    gic::set_pmr(PMR_ON);
    irq::set_hook(Some(hook));
    Ok(t)
}

fn teardown(w: Which, t: &Irq) {
    irq::disable();
    w.off();
    t.disable();
    t.clear_pending();
    irq::set_hook(None);
}

fn pending(t: &Irq) -> bool {
    t.pending().0
}

fn taken() -> u32 {
    TAKEN[cpu::index()].load(Ordering::Relaxed)
}

fn pending_and_enable(w: Which) -> Outcome {
    let t = setup(w)?;
    let r = pending_and_enable_steps(w, &t);
    teardown(w, &t);
    r
}

fn pending_and_enable_steps(w: Which, t: &Irq) -> Outcome {
    let id = w.intid();
    if pending(t) {
        fail!("PPI {id} pending with the {} timer off", w.name());
    }
    w.arm_in(0);
    if !cpu::wait_ms(SETTLE_MS, || pending(t)) {
        fail!(
            "PPI {id} (disabled) not pending in GICR_ISPENDR0 with the {} timer firing (CTL {:#x})",
            w.name(),
            w.ctl()
        );
    }
    if !t.pending().1 {
        fail!("PPI {id} pending in GICR_ISPENDR0 but not in GICR_ICPENDR0");
    }
    w.set_ctl(1 | IMASK);
    if !cpu::wait_ms(SETTLE_MS, || !pending(t)) {
        fail!(
            "PPI {id} still pending with CNT{}_CTL.IMASK set",
            if w == Which::Virtual { "V" } else { "P" }
        );
    }
    w.set_ctl(1);
    if !cpu::wait_ms(SETTLE_MS, || pending(t)) {
        fail!("PPI {id} not pending again after IMASK was cleared");
    }
    t.clear_pending();
    if !pending(t) {
        fail!("GICR_ICPENDR0 cleared PPI {id} while the timer still asserts it");
    }
    w.off();
    if !cpu::wait_ms(SETTLE_MS, || !pending(t)) {
        fail!(
            "PPI {id} still pending with the {} timer disabled (ENABLE = 0)",
            w.name()
        );
    }
    // Enabled with the timer firing: taken once, the hook turns it off.
    w.arm_in(0);
    t.enable();
    irq::enable();
    cpu::wait_ms(WAIT_MS, || taken() != 0);
    cpu::wait_ms(1, || false);
    irq::disable();
    match taken() {
        1 => {}
        0 => fail!(
            "PPI {id} enabled with the {} timer firing, not taken within {WAIT_MS} ms",
            w.name()
        ),
        n => fail!("PPI {id} taken {n} times, want once (the handler turned the timer off)"),
    }
    if pending(t) {
        fail!("PPI {id} pending after its handler turned the timer off");
    }
    Ok(None)
}

fn disable_while_pending(w: Which) -> Outcome {
    let t = setup(w)?;
    let r = disable_while_pending_steps(w, &t);
    teardown(w, &t);
    r
}

fn disable_while_pending_steps(w: Which, t: &Irq) -> Outcome {
    let id = w.intid();
    irq::enable();
    w.arm_in(cpu::ticks_from_ms(1));
    if !cpu::wait_ms(WAIT_MS, || w.fired()) {
        fail!("the {} timer did not fire within {WAIT_MS} ms", w.name());
    }
    if !cpu::wait_ms(SETTLE_MS, || pending(t)) {
        fail!(
            "PPI {id} (disabled) not pending after the {} timer fired",
            w.name()
        );
    }
    // Let the level reach every layer that could latch it.
    cpu::wait_ms(STALE_MS, || false);
    w.off();
    t.enable();
    cpu::wait_ms(STALE_MS, || taken() != 0);
    irq::disable();
    if taken() != 0 {
        fail!(
            "PPI {id} taken after the {} timer was turned off (a stale level)",
            w.name()
        );
    }
    if pending(t) {
        fail!(
            "PPI {id} still pending in GICR_ISPENDR0 after the {} timer was turned off",
            w.name()
        );
    }
    Ok(None)
}

fn wfi_masked(w: Which) -> Outcome {
    let t = setup(w)?;
    let r = wfi_masked_steps(w, &t);
    teardown(w, &t);
    r
}

fn wfi_masked_steps(w: Which, t: &Irq) -> Outcome {
    let id = w.intid();
    t.enable();
    // PSTATE.I is set (setup leaves it so).
    w.arm_in(cpu::ticks_from_ms(2));
    // A WFI may also end early (any wake-up event): wait again until the
    // timer fired. If the timer's interrupt did not end a WFI, this hangs
    // and the run's timeout reports it.
    while !w.fired() {
        cpu::wait_for_interrupt();
    }
    if !cpu::wait_ms(SETTLE_MS, || pending(t)) {
        fail!("PPI {id} not pending after the WFI ended");
    }
    if taken() != 0 {
        fail!("PPI {id} taken with PSTATE.I set");
    }
    irq::enable();
    cpu::wait_ms(WAIT_MS, || taken() != 0);
    irq::disable();
    match taken() {
        1 => Ok(None),
        0 => fail!("PPI {id} not taken within {WAIT_MS} ms of unmasking"),
        n => fail!("PPI {id} taken {n} times, want once"),
    }
}

/// Job codes of the CPU 1 halves.
const JOB_SETUP: u64 = 1;
const JOB_NOT_TAKEN: u64 = 2;
const JOB_OFF_FAILED: u64 = 3;

/// On a CPU 1 half: sets up the timer [`which`] names, arms it 1 ms out,
/// waits with interrupts on until its PPI is taken (or [`WAIT_MS`]) and
/// tears it down; returns how many times the PPI was taken.
fn fire_once() -> Result<u32, JobOutcome> {
    let w = which();
    let Ok(t) = setup(w) else {
        return Err(JobOutcome {
            code: JOB_SETUP,
            detail: 0,
        });
    };
    t.enable();
    w.arm_in(cpu::ticks_from_ms(1));
    irq::enable();
    cpu::wait_ms(WAIT_MS, || taken() != 0);
    irq::disable();
    let n = taken();
    teardown(w, &t);
    Ok(n)
}

/// CPU 1, first life: the timer fires and its handler calls CPU_OFF.
pub fn off_in_handler_job() -> JobOutcome {
    let code = match fire_once() {
        Err(setup_failed) => return setup_failed,
        Ok(0) => JOB_NOT_TAKEN,
        Ok(_) => JOB_OFF_FAILED,
    };
    JobOutcome { code, detail: 0 }
}

/// CPU 1, second life: the same timer's interrupt is taken again.
pub fn after_on_job() -> JobOutcome {
    match fire_once() {
        Err(setup_failed) => setup_failed,
        Ok(1) => JobOutcome::OK,
        Ok(n) => JobOutcome {
            code: JOB_NOT_TAKEN,
            detail: u64::from(n),
        },
    }
}

fn cpu_off_on(w: Which) -> Outcome {
    let cpus = crate::dt::platform().cpus;
    if cpus.count() < 2 {
        return Ok(Some("1 CPU"));
    }
    let cpu = 1;
    let mpidr = cpus.mpidr(cpu);
    if secondary::checkins(cpu) == 0 {
        fail!("cpu {cpu} is not running (psci-cpu-on failed?)");
    }
    WHICH.store(matches!(w, Which::Physical) as u32, Ordering::Relaxed);
    OFF_IN_HANDLER.store(true, Ordering::Release);
    irq::set_hook(Some(hook));
    let ticket = secondary::post(cpu, Job::TimerOffInHandler);
    let off = cpu::wait_ms(CPU_TIMEOUT_MS, || {
        psci::affinity_info(mpidr, 0) == 1 || ticket.is_done()
    });
    OFF_IN_HANDLER.store(false, Ordering::Release);
    if let Some(out) = ticket.wait(0) {
        irq::set_hook(None);
        match out.code {
            JOB_SETUP => fail!("cpu {cpu}: GIC setup failed"),
            JOB_NOT_TAKEN => fail!("cpu {cpu}: PPI {} not taken within {WAIT_MS} ms", w.intid()),
            _ => fail!(
                "cpu {cpu}: CPU_OFF from the PPI {} handler returned",
                w.intid()
            ),
        }
    }
    if !off {
        ticket.cancel();
        irq::set_hook(None);
        fail!("cpu {cpu} not OFF {CPU_TIMEOUT_MS} ms after CPU_OFF in its timer handler");
    }
    ticket.cancel();
    super::psci::start(cpu)?;
    let again = secondary::post(cpu, Job::TimerAfterOn);
    let r = again.wait(CPU_TIMEOUT_MS + WAIT_MS);
    irq::set_hook(None);
    match r {
        Some(JobOutcome::OK) => Ok(None),
        Some(JobOutcome { code: JOB_SETUP, .. }) => fail!("cpu {cpu}: GIC setup failed after CPU_ON"),
        Some(out) => fail!(
            "cpu {cpu}: after CPU_OFF with PPI {} in flight and CPU_ON, the {} timer's interrupt was taken {} times, want once",
            w.intid(),
            w.name(),
            out.detail
        ),
        None => {
            again.cancel();
            fail!("cpu {cpu}: timer check after CPU_ON did not finish")
        }
    }
}

pub fn pending_virtual() -> Outcome {
    pending_and_enable(Which::Virtual)
}
pub fn pending_physical() -> Outcome {
    pending_and_enable(Which::Physical)
}
pub fn disable_while_pending_virtual() -> Outcome {
    disable_while_pending(Which::Virtual)
}
pub fn disable_while_pending_physical() -> Outcome {
    disable_while_pending(Which::Physical)
}
pub fn wfi_masked_virtual() -> Outcome {
    wfi_masked(Which::Virtual)
}
pub fn wfi_masked_physical() -> Outcome {
    wfi_masked(Which::Physical)
}
pub fn cpu_off_on_virtual() -> Outcome {
    cpu_off_on(Which::Virtual)
}
pub fn cpu_off_on_physical() -> Outcome {
    cpu_off_on(Which::Physical)
}

/// The PMUv3 registers the PMU case uses.
mod pmu {
    use core::arch::asm;

    /// Whether ID_AA64DFR0_EL1.PMUVer says there is a PMUv3.
    pub fn present() -> bool {
        let v: u64;
        // SAFETY: reads an ID register.
        unsafe {
            asm!("mrs {}, id_aa64dfr0_el1", out(reg) v, options(nomem, nostack, preserves_flags))
        };
        !matches!((v >> 8) & 0xf, 0 | 0xf)
    }

    /// Event counter 0 counts software increments (event 0x00, counted at
    /// EL1 and EL0) from 0xffff_ffff, with its overflow interrupt enabled
    /// and the PMU on.
    pub fn arm_counter0_at_overflow() {
        // SAFETY: this CPU's PMU, which only this case uses.
        unsafe {
            asm!(
                "msr pmcr_el0, xzr",
                "msr pmcntenclr_el0, {all}",
                "msr pmintenclr_el1, {all}",
                "msr pmovsclr_el0, {all}",
                "msr pmevtyper0_el0, xzr",
                "msr pmevcntr0_el0, {start}",
                "msr pmcntenset_el0, {one}",
                "msr pmintenset_el1, {one}",
                "msr pmcr_el0, {one}",
                "isb",
                all = in(reg) 0xffff_ffffu64,
                start = in(reg) 0xffff_ffffu64,
                one = in(reg) 1u64,
                options(nomem, nostack, preserves_flags)
            )
        };
    }

    /// One software increment of counter 0 (PMSWINC_EL0).
    pub fn increment() {
        // SAFETY: as above.
        unsafe {
            asm!("msr pmswinc_el0, {}", "isb", in(reg) 1u64, options(nomem, nostack, preserves_flags))
        };
    }

    /// PMOVSSET_EL0.
    pub fn overflow() -> u64 {
        let v: u64;
        // SAFETY: reads a PMU register.
        unsafe {
            asm!("mrs {}, pmovsset_el0", out(reg) v, options(nomem, nostack, preserves_flags))
        };
        v
    }

    pub fn clear_overflow() {
        // SAFETY: as above.
        unsafe {
            asm!("msr pmovsclr_el0, {}", "isb", in(reg) 0xffff_ffffu64, options(nomem, nostack, preserves_flags))
        };
    }

    /// Everything off.
    pub fn stop() {
        // SAFETY: as above.
        unsafe {
            asm!(
                "msr pmcr_el0, xzr",
                "msr pmcntenclr_el0, {all}",
                "msr pmintenclr_el1, {all}",
                "msr pmovsclr_el0, {all}",
                "isb",
                all = in(reg) 0xffff_ffffu64,
                options(nomem, nostack, preserves_flags)
            )
        };
    }
}

pub fn pmu_overflow_irq() -> Outcome {
    if !pmu::present() {
        return Ok(Some("no PMU"));
    }
    let g = match irq_setup() {
        Ok(g) => g,
        Err(why) => fail!("GIC setup failed: {why}"),
    };
    TAKEN[0].store(0, Ordering::Relaxed);
    let p = g.irq(PMU_INTID);
    p.disable();
    p.set_priority(timer::PRIORITY);
    gic::set_pmr(PMR_ON);
    irq::set_hook(Some(hook));
    let r = pmu_steps(&p);
    irq::disable();
    pmu::stop();
    p.disable();
    p.clear_pending();
    irq::set_hook(None);
    r
}

fn pmu_steps(p: &Irq) -> Outcome {
    pmu::arm_counter0_at_overflow();
    if pending(p) {
        fail!("PPI {PMU_INTID} pending before any overflow");
    }
    pmu::increment();
    if pmu::overflow() & 1 == 0 {
        fail!(
            "PMSWINC_EL0 did not overflow counter 0 (PMOVSSET_EL0 = {:#x})",
            pmu::overflow()
        );
    }
    if !cpu::wait_ms(SETTLE_MS, || pending(p)) {
        fail!("PPI {PMU_INTID} (disabled) not pending after counter 0 overflowed");
    }
    p.enable();
    irq::enable();
    cpu::wait_ms(WAIT_MS, || taken() != 0);
    cpu::wait_ms(1, || false);
    irq::disable();
    match taken() {
        1 => {}
        0 => fail!("PPI {PMU_INTID} not taken within {WAIT_MS} ms of enabling it"),
        n => fail!("PPI {PMU_INTID} taken {n} times, want once (the handler cleared the overflow)"),
    }
    if pending(p) {
        fail!("PPI {PMU_INTID} still pending after the overflow was cleared");
    }
    Ok(None)
}
