//! The EL1 virtual timer (CNTV_*), used as a wake-up event for CPU_SUSPEND.
//! Its interrupt is PPI 27 (INTID 27) on QEMU `virt` and under nmivisor.

use core::arch::asm;

/// INTID of the virtual timer's interrupt.
pub const VTIMER_INTID: u32 = 27;

/// The virtual timer's GIC priority (a normal interrupt that passes
/// [`crate::gic::PMR_ON`]).
pub const PRIORITY: u8 = 0xa0;

/// CNTV_CTL_EL0 bits.
const ENABLE: u64 = 1 << 0;
const ISTATUS: u64 = 1 << 2;

/// Fires the virtual timer `ticks` counter ticks from now, its interrupt
/// unmasked at the timer (it stays masked in PSTATE).
pub fn arm_in(ticks: u64) {
    arm_at(crate::cpu::counter() + ticks);
}

/// Fires the virtual timer when CNTVCT_EL0 reaches `cval`.
pub fn arm_at(cval: u64) {
    // SAFETY: programs this CPU's virtual timer, which nothing else uses.
    unsafe {
        asm!(
            "msr cntv_cval_el0, {cval}",
            "msr cntv_ctl_el0, {ctl}",
            "isb",
            cval = in(reg) cval,
            ctl = in(reg) ENABLE,
            options(nomem, nostack, preserves_flags)
        );
    }
}

/// Whether the timer condition is met (CNTV_CTL_EL0.ISTATUS).
pub fn fired() -> bool {
    let ctl: u64;
    // SAFETY: reads a system register.
    unsafe { asm!("mrs {}, cntv_ctl_el0", out(reg) ctl, options(nomem, nostack, preserves_flags)) };
    ctl & ISTATUS != 0
}

/// Turns the timer off, which also drops its interrupt line.
pub fn disarm() {
    // SAFETY: disables this CPU's virtual timer.
    unsafe {
        asm!(
            "msr cntv_ctl_el0, xzr",
            "isb",
            options(nomem, nostack, preserves_flags)
        )
    };
}
