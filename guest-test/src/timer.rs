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

/// INTID of the EL1 physical timer's interrupt (PPI 14).
pub const PTIMER_INTID: u32 = 30;

/// CNTx_CTL_EL0.IMASK.
pub const IMASK: u64 = 1 << 1;

/// One of the two EL1 timers a guest owns: the virtual timer (CNTV_*,
/// counting CNTVCT_EL0) or the physical timer (CNTP_*, counting
/// CNTPCT_EL0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Virtual,
    Physical,
}

impl Which {
    /// The timer's PPI.
    pub fn intid(self) -> u32 {
        match self {
            Which::Virtual => VTIMER_INTID,
            Which::Physical => PTIMER_INTID,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Which::Virtual => "virtual",
            Which::Physical => "physical",
        }
    }

    /// The counter this timer compares against.
    pub fn now(self) -> u64 {
        let v: u64;
        // SAFETY: reads a counter.
        unsafe {
            match self {
                Which::Virtual => {
                    asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack, preserves_flags))
                }
                Which::Physical => {
                    asm!("isb", "mrs {}, cntpct_el0", out(reg) v, options(nomem, nostack, preserves_flags))
                }
            }
        }
        v
    }

    /// CNTx_CTL_EL0.
    pub fn ctl(self) -> u64 {
        let v: u64;
        // SAFETY: reads a system register.
        unsafe {
            match self {
                Which::Virtual => {
                    asm!("mrs {}, cntv_ctl_el0", out(reg) v, options(nomem, nostack, preserves_flags))
                }
                Which::Physical => {
                    asm!("mrs {}, cntp_ctl_el0", out(reg) v, options(nomem, nostack, preserves_flags))
                }
            }
        }
        v
    }

    /// Writes CNTx_CTL_EL0 (ENABLE, IMASK).
    pub fn set_ctl(self, ctl: u64) {
        // SAFETY: programs this CPU's timer, which only the running case uses.
        unsafe {
            match self {
                Which::Virtual => {
                    asm!("msr cntv_ctl_el0, {}", "isb", in(reg) ctl, options(nomem, nostack, preserves_flags))
                }
                Which::Physical => {
                    asm!("msr cntp_ctl_el0, {}", "isb", in(reg) ctl, options(nomem, nostack, preserves_flags))
                }
            }
        }
    }

    /// Fires when this timer's counter reaches `cval`, unmasked.
    pub fn arm_at(self, cval: u64) {
        // SAFETY: as in `set_ctl`.
        unsafe {
            match self {
                Which::Virtual => {
                    asm!("msr cntv_cval_el0, {}", in(reg) cval, options(nomem, nostack, preserves_flags))
                }
                Which::Physical => {
                    asm!("msr cntp_cval_el0, {}", in(reg) cval, options(nomem, nostack, preserves_flags))
                }
            }
        }
        self.set_ctl(ENABLE);
    }

    /// Fires `ticks` from now (0: at once).
    pub fn arm_in(self, ticks: u64) {
        self.arm_at(self.now() + ticks);
    }

    /// ISTATUS: the condition is met.
    pub fn fired(self) -> bool {
        self.ctl() & ISTATUS != 0
    }

    /// ENABLE = 0: the timer's output drops.
    pub fn off(self) {
        self.set_ctl(0);
    }
}
