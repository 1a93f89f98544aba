//! Small CPU helpers: identification, the generic timer counter, halting.

use core::arch::asm;

/// MPIDR_EL1 affinity fields (Aff3..Aff0), the value PSCI and the GIC use.
pub fn mpidr() -> u64 {
    let v: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v & 0xff_00ff_ffff
}

/// CurrentEL as a number (0..3).
pub fn current_el() -> u64 {
    let v: u64;
    // SAFETY: reading CurrentEL has no side effects.
    unsafe { asm!("mrs {}, CurrentEL", out(reg) v, options(nomem, nostack, preserves_flags)) };
    (v >> 2) & 3
}

/// The physical counter (CNTPCT_EL0), ordered after earlier instructions.
pub fn counter() -> u64 {
    let v: u64;
    // SAFETY: reading the counter has no side effects; the ISB orders it.
    unsafe { asm!("isb", "mrs {}, cntpct_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Counter frequency in Hz (CNTFRQ_EL0).
pub fn counter_freq() -> u64 {
    let v: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// A deadline `us` microseconds from now, in counter ticks.
pub fn deadline_after_us(us: u64) -> u64 {
    counter().saturating_add(counter_freq().saturating_mul(us) / 1_000_000)
}

/// The current frame pointer (x29).
#[inline(always)]
pub fn frame_pointer() -> u64 {
    let v: u64;
    // SAFETY: copying x29 has no side effects.
    unsafe { asm!("mov {}, x29", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Current DAIF bits.
pub fn daif() -> u64 {
    let v: u64;
    // SAFETY: reading DAIF has no side effects.
    unsafe { asm!("mrs {}, daif", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Mask every asynchronous exception (PSTATE.DAIF).
pub fn mask_all() {
    // SAFETY: masking exceptions cannot break memory safety.
    unsafe { asm!("msr daifset, #0xf", options(nomem, nostack, preserves_flags)) };
}

pub fn wfi() {
    // SAFETY: WFI only waits.
    unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
}

/// Stop this CPU for good: every exception masked, waiting forever.
pub fn halt() -> ! {
    mask_all();
    loop {
        wfi();
    }
}
