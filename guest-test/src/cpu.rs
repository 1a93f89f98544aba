//! Per-CPU identity and the generic timer's virtual counter, which every
//! wait in the guest is bounded by.

use core::arch::asm;

/// This CPU's logical index (set in TPIDR_EL1 by the entry code).
pub fn index() -> usize {
    let v: u64;
    // SAFETY: reads a system register.
    unsafe { asm!("mrs {}, tpidr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v as usize
}

/// MPIDR_EL1.
pub fn mpidr() -> u64 {
    let v: u64;
    // SAFETY: reads a system register.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// CNTVCT_EL0 after an ISB, so the read is not hoisted before earlier
/// instructions.
pub fn counter() -> u64 {
    let v: u64;
    // SAFETY: reads a system register.
    unsafe {
        asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// CNTFRQ_EL0 in Hz (never 0: a broken value counts as 1 GHz).
pub fn frequency() -> u64 {
    let v: u64;
    // SAFETY: reads a system register.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    if v == 0 {
        1_000_000_000
    } else {
        v
    }
}

/// Counter ticks in `ms` milliseconds.
pub fn ticks_from_ms(ms: u64) -> u64 {
    frequency() / 1000 * ms
}

/// A point in time on the virtual counter.
#[derive(Clone, Copy)]
pub struct Deadline(u64);

impl Deadline {
    pub fn after_ms(ms: u64) -> Deadline {
        Deadline(counter().saturating_add(ticks_from_ms(ms)))
    }

    pub fn expired(&self) -> bool {
        counter() >= self.0
    }
}

/// Polls `done` until it returns true (true) or `ms` milliseconds pass
/// (false).
pub fn wait_ms(ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Deadline::after_ms(ms);
    loop {
        if done() {
            return true;
        }
        if deadline.expired() {
            return done();
        }
        relax();
    }
}

/// A polling loop's pause: the YIELD hint. Besides telling an SMT core or
/// a hypervisor that this CPU spins, it makes QEMU's single-threaded TCG
/// (`-icount`) switch to the next vCPU; without it a spinning vCPU keeps
/// the others from running for a whole time slice.
pub fn relax() {
    // SAFETY: a hint instruction without effects.
    unsafe { asm!("yield", options(nomem, nostack, preserves_flags)) };
}

/// Wakes CPUs waiting in [`wait_for_event`].
pub fn send_event() {
    // SAFETY: DSB then SEV, no memory or register effects beyond ordering.
    unsafe { asm!("dsb ish", "sev", options(nostack, preserves_flags)) };
}

/// WFE: sleeps until an event (or returns at once if one is latched).
pub fn wait_for_event() {
    // SAFETY: WFE has no effects beyond a possible wait.
    unsafe { asm!("wfe", options(nomem, nostack, preserves_flags)) };
}

/// WFI: sleeps until an interrupt is pending (taken or not: PSTATE.I may
/// be set) or returns at once if one is.
pub fn wait_for_interrupt() {
    // SAFETY: WFI has no effects beyond a possible wait.
    unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
}

/// Stops this CPU for good (interrupts are masked).
pub fn halt() -> ! {
    loop {
        // SAFETY: WFI has no effects beyond a possible wait.
        unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }
}
