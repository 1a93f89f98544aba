//! The devices behind the PPIs nmivisor forwards to guests: the EL1 virtual
//! timer (CNTV_*, PPI 27), the EL1 physical timer (CNTP_*, PPI 30) and the
//! PMU overflow interrupt (PPI 23). With static partitioning the guest owns
//! all three on its physical CPU; the hypervisor only reads their output
//! levels (to re-sample the virtual interrupts) and, when no vCPU owns the
//! CPU, masks them.
//!
//! With HCR_EL2.E2H = 0, CNTV_*_EL0 and CNTP_*_EL0 accessed at EL2 are the
//! EL1 timers (Arm ARM, chapter "The Generic Timer in AArch64 state"); the
//! hypervisor's own timer is CNTHP (PPI 26), which nothing here touches.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    ReadWriteable, Readable, Writeable, CNTP_CTL_EL0, CNTP_CVAL_EL0, CNTV_CTL_EL0, ID_AA64DFR0_EL1,
};
use arm_sysregs::el0::accessors::{read_pmcr_el0, write_pmcr_el0};
use arm_sysregs::el0::registers::PmcrEl0;
use core::arch::asm;
use core::sync::atomic::{AtomicU8, Ordering};

/// The virtual timer's INTID (PPI 11).
pub const VTIMER_INTID: u32 = 27;
/// The EL1 physical timer's INTID (PPI 14).
pub const PTIMER_INTID: u32 = 30;
/// The PMU overflow interrupt's INTID (PPI 7 on QEMU `virt`).
pub const PMU_INTID: u32 = 23;

/// CNTx_CTL_EL0 bits (Arm ARM, CNTV_CTL_EL0 / CNTP_CTL_EL0: the same layout).
const CTL_ENABLE: u64 = CNTV_CTL_EL0::ENABLE::SET.value;
const CTL_IMASK: u64 = CNTV_CTL_EL0::IMASK::SET.value;
const CTL_ISTATUS: u64 = CNTV_CTL_EL0::ISTATUS::SET.value;

/// A timer's interrupt output: asserted while the timer is enabled, its
/// condition is met and it is not masked (Arm ARM, Generic Timer, "Operation of
/// the CompareValue views of the timers": ISTATUS, IMASK and ENABLE).
pub const fn timer_output(ctl: u64) -> bool {
    ctl & (CTL_ENABLE | CTL_IMASK | CTL_ISTATUS) == CTL_ENABLE | CTL_ISTATUS
}

fn cntv_ctl() -> u64 {
    CNTV_CTL_EL0.get()
}

fn cntp_ctl() -> u64 {
    CNTP_CTL_EL0.get()
}

/// Whether this CPU has a PMUv3 (ID_AA64DFR0_EL1.PMUVer neither 0 nor
/// 0xf, IMPLEMENTATION DEFINED): without one, PMU registers are UNDEFINED.
/// Read once (every CPU of the machine is alike), since every entry asks.
pub fn has_pmu() -> bool {
    const UNKNOWN: u8 = 2;
    static HAS_PMU: AtomicU8 = AtomicU8::new(UNKNOWN);
    match HAS_PMU.load(Ordering::Relaxed) {
        UNKNOWN => {
            let dfr0 = ID_AA64DFR0_EL1.get();
            let has = !matches!((dfr0 >> 8) & 0xf, 0 | 0xf);
            HAS_PMU.store(u8::from(has), Ordering::Relaxed);
            has
        }
        v => v == 1,
    }
}

/// The PMU's overflow interrupt request: PMCR_EL0.E set and some counter
/// both overflowed (PMOVSSET_EL0) and enabled for interrupts
/// (PMINTENSET_EL1) (Arm ARM, PMU chapter, "Generating overflow interrupt
/// requests"). MDCR_EL2.HPMN = PMCR_EL0.N gives every counter to the guest,
/// so PMCR_EL0.E is the only enable that applies.
fn pmu_output() -> bool {
    if !has_pmu() {
        return false;
    }
    // aarch64-cpu lacks PMCR_EL0; arm-sysregs types it.
    if !read_pmcr_el0().contains(PmcrEl0::E) {
        return false;
    }
    let (ovs, inten): (u64, u64);
    // Neither aarch64-cpu nor arm-sysregs has PMOVSSET_EL0 or PMINTENSET_EL1.
    // SAFETY: reading the PMU's overflow and interrupt-enable registers
    // has no side effects.
    unsafe {
        asm!(
            "mrs {ovs}, pmovsset_el0",
            "mrs {inten}, pmintenset_el1",
            ovs = out(reg) ovs, inten = out(reg) inten,
            options(nomem, nostack, preserves_flags)
        )
    };
    ovs & inten & 0xffff_ffff != 0
}

/// The output levels of the forwarded sources, as a mask of INTIDs
/// (bit n = INTID n asserted). Inlined into the interrupt path's
/// re-samples (a call frame was a fifth of its cost).
#[inline(always)]
pub fn levels() -> u32 {
    let mut m = 0;
    if timer_output(cntv_ctl()) {
        m |= 1 << VTIMER_INTID;
    }
    if timer_output(cntp_ctl()) {
        m |= 1 << PTIMER_INTID;
    }
    if pmu_output() {
        m |= 1 << PMU_INTID;
    }
    m
}

/// A forwarded interrupt with no vCPU to take it: silences its source
/// (timer IMASK; the PMU's interrupt enables). The next vCPU reset
/// ([`reset`]) puts the source back to its reset state.
pub fn silence(intid: u32) {
    // These sources belong to the guest of this CPU, which is not running;
    // a vCPU start resets them.
    match intid {
        VTIMER_INTID => {
            CNTV_CTL_EL0.modify(CNTV_CTL_EL0::IMASK::SET);
            barrier::isb(barrier::SY);
        }
        PTIMER_INTID => {
            CNTP_CTL_EL0.modify(CNTP_CTL_EL0::IMASK::SET);
            barrier::isb(barrier::SY);
        }
        // Neither aarch64-cpu nor arm-sysregs has PMINTENCLR_EL1.
        // SAFETY: disables the guest's PMU overflow interrupts, see above.
        PMU_INTID if has_pmu() => unsafe {
            asm!("msr pmintenclr_el1, {m}", "isb", m = in(reg) 0xffff_ffffu64, options(nomem, nostack))
        },
        _ => {}
    }
}

/// A vCPU starts: the EL1 physical timer off and zeroed, and the PMU
/// stopped with no overflow, counter or interrupt enabled (the virtual
/// timer is part of [`super::el1::El1Context`]). Arm ARM: CNTP_CTL_EL0.ENABLE
/// and PMCR_EL0.E reset to 0; the other fields are UNKNOWN, zero here.
pub fn reset() {
    // The EL1 physical timer belongs to the vCPU being started on this
    // CPU, which does not run yet.
    CNTP_CTL_EL0.set(0);
    CNTP_CVAL_EL0.set(0);
    barrier::isb(barrier::SY);
    if has_pmu() {
        // aarch64-cpu lacks PMCR_EL0; arm-sysregs types it.
        write_pmcr_el0(PmcrEl0::empty());
        // Neither aarch64-cpu nor arm-sysregs has PMCNTENCLR_EL0,
        // PMINTENCLR_EL1 or PMOVSCLR_EL0.
        // SAFETY: as above, for this CPU's PMU (every counter is the
        // guest's through MDCR_EL2.HPMN).
        unsafe {
            asm!(
                "msr pmcntenclr_el0, {m}",
                "msr pmintenclr_el1, {m}",
                "msr pmovsclr_el0, {m}",
                "isb",
                m = in(reg) 0xffff_ffffu64,
                options(nomem, nostack, preserves_flags)
            )
        };
    }
}
