//! GICv3 CPU-interface system registers that arm-gic does not expose
//! (ICC_DIR_EL1 for EOImode=1, ICC_RPR_EL1, ICC_CTLR_EL1) and the EL2
//! physical timer registers aarch64-cpu lacks (CNTHP_TVAL_EL2).
//! Written here because neither crate has them; everything else comes from
//! arm-gic and aarch64-cpu.

use core::arch::asm;

/// ICC_CTLR_EL1.EOImode (GICv3 spec 12.2.6): EOIR only drops priority,
/// ICC_DIR_EL1 deactivates.
const ICC_CTLR_EOIMODE: u64 = 1 << 1;

/// Sets EOImode=1 on this CPU (split priority drop and deactivation).
pub fn set_eoi_mode_split() {
    let mut v: u64;
    // SAFETY: read-modify-write of this CPU's ICC_CTLR_EL1; only EOImode changes.
    unsafe {
        asm!("mrs {}, icc_ctlr_el1", out(reg) v, options(nomem, nostack, preserves_flags));
        v |= ICC_CTLR_EOIMODE;
        asm!("msr icc_ctlr_el1, {}", "isb", in(reg) v, options(nostack, preserves_flags));
    }
}

/// ICC_SRE_EL2.Enable [3] (GICv3 spec 12.7.9): when clear, EL1 accesses
/// to ICC_SRE_EL1 trap to EL2.
const ICC_SRE_EL2_ENABLE: u64 = 1 << 3;

/// Keeps ICC_SRE_EL1 away from guests: they may not turn the system
/// register interface off (which would hand them the memory-mapped CPU
/// interface nmivisor does not emulate). Their reads and writes trap and
/// are answered by `vm::sysreg`.
pub fn trap_guest_sre() {
    let mut v: u64;
    // SAFETY: read-modify-write of this CPU's ICC_SRE_EL2 (S3_4_C12_C9_5);
    // only Enable changes, SRE stays set for EL2 itself.
    unsafe {
        asm!("mrs {}, S3_4_C12_C9_5", out(reg) v, options(nomem, nostack, preserves_flags));
        v &= !ICC_SRE_EL2_ENABLE;
        asm!("msr S3_4_C12_C9_5, {}", "isb", in(reg) v, options(nostack, preserves_flags));
    }
}

/// Deactivates `intid` (ICC_DIR_EL1) after its priority was dropped.
pub fn deactivate(intid: u32) {
    // SAFETY: deactivating an interrupt this CPU acknowledged.
    unsafe {
        asm!("msr icc_dir_el1, {}", "isb", in(reg) u64::from(intid), options(nostack, preserves_flags))
    };
}

/// Acknowledges the highest-priority pending Group 1 interrupt (ICC_IAR1_EL1).
pub fn acknowledge() -> u32 {
    let v: u64;
    // SAFETY: acknowledging makes the interrupt active; the caller ends it.
    unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) v, options(nostack, preserves_flags)) };
    (v & 0xff_ffff) as u32
}

/// Drops the running priority of `intid` (ICC_EOIR1_EL1).
pub fn end_of_interrupt(intid: u32) {
    // SAFETY: ends an interrupt this CPU acknowledged.
    unsafe {
        asm!("msr icc_eoir1_el1, {}", "isb", in(reg) u64::from(intid), options(nostack, preserves_flags))
    };
}

/// The current priority mask (ICC_PMR_EL1).
pub fn pmr() -> u8 {
    let v: u64;
    // SAFETY: reading PMR has no side effects.
    unsafe { asm!("mrs {}, icc_pmr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v as u8
}

/// Sets the priority mask (ICC_PMR_EL1).
pub fn set_pmr(pmr: u8) {
    // SAFETY: PMR only changes which interrupts are signalled. The DSB makes
    // the new mask take effect before later memory accesses (GICv3 spec
    // 12.1.6: PMR writes are self-synchronising for the CPU interface but the
    // barrier keeps critical sections from leaking past it).
    unsafe {
        asm!("msr icc_pmr_el1, {}", "dsb sy", in(reg) u64::from(pmr), options(nostack, preserves_flags))
    };
}

/// Arms the EL2 physical timer (CNTHP) to fire in `ticks` counter ticks.
pub fn arm_el2_timer(ticks: u64) {
    // SAFETY: programs this CPU's EL2 physical timer: TVAL, then CTL.ENABLE=1, IMASK=0.
    unsafe {
        asm!(
            "msr cnthp_tval_el2, {t}",
            "msr cnthp_ctl_el2, {on}",
            "isb",
            t = in(reg) ticks,
            on = in(reg) 1u64,
            options(nostack, preserves_flags)
        )
    };
}

/// Unmasks IRQs at PSTATE (DAIF.I): priority masking then decides.
pub fn local_irq_unmask() {
    // SAFETY: clearing PSTATE.I; PMR still masks what must stay masked.
    unsafe { asm!("msr daifclr, #2", options(nomem, nostack, preserves_flags)) };
}

/// Masks IRQs at PSTATE (DAIF.I).
pub fn local_irq_mask() {
    // SAFETY: setting PSTATE.I only delays interrupts.
    unsafe { asm!("msr daifset, #2", options(nomem, nostack, preserves_flags)) };
}
