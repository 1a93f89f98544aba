//! The GICv3 CPU-interface system registers the hypervisor uses and the
//! EL2 physical timer. arm-gic's `GicCpuInterface` covers ICC_SRE_EL2 and
//! the PMR read; it has no split EOI (ICC_DIR_EL1, ICC_CTLR_EL1.EOImode)
//! and speaks `Option<IntId>` where the dispatcher wants the raw INTID, so
//! those registers come from arm-sysregs, the crate arm-gic builds on.
//! aarch64-cpu has CNTHP_CTL_EL2 but not CNTHP_TVAL_EL2.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{Writeable, CNTHP_CTL_EL2};
use arm_gic::gicv3::GicCpuInterface;
use arm_sysregs::el1::accessors::{
    read_icc_ctlr_el1, read_icc_iar1_el1, write_icc_ctlr_el1, write_icc_dir_el1,
    write_icc_eoir1_el1,
};
use arm_sysregs::el1::registers::{IccCtlrEl1, IccDirEl1, IccEoir1El1};
use core::arch::asm;
use core::sync::atomic::{compiler_fence, Ordering};

/// Sets EOImode=1 on this CPU (split priority drop and deactivation; GICv3
/// spec 12.2.6: EOIR only drops priority, ICC_DIR_EL1 deactivates).
pub fn set_eoi_mode_split() {
    // Read-modify-write of this CPU's ICC_CTLR_EL1; only EOImode changes.
    write_icc_ctlr_el1(read_icc_ctlr_el1() | IccCtlrEl1::EOIMODE);
    barrier::isb(barrier::SY);
}

/// Keeps ICC_SRE_EL1 away from guests: they may not turn the system
/// register interface off (which would hand them the memory-mapped CPU
/// interface nmivisor does not emulate). Their reads and writes trap and
/// are answered by `vm::sysreg`. ICC_SRE_EL2.Enable [3] clear (GICv3 spec
/// 12.7.9) makes EL1 accesses to ICC_SRE_EL1 trap to EL2; SRE stays set
/// for EL2 itself.
pub fn trap_guest_sre() {
    GicCpuInterface::enable_system_register_el2(false);
    barrier::isb(barrier::SY);
}

/// Deactivates `intid` (ICC_DIR_EL1) after its priority was dropped.
#[inline]
pub fn deactivate(intid: u32) {
    // arm-sysregs' accessors are `nomem`: the fence keeps the handler's
    // memory accesses on their side of the register access, as the
    // hand-written `msr` did (no instruction is emitted).
    compiler_fence(Ordering::SeqCst);
    write_icc_dir_el1(IccDirEl1::from_bits_retain(u64::from(intid)));
    barrier::isb(barrier::SY);
}

/// Acknowledges the highest-priority pending Group 1 interrupt (ICC_IAR1_EL1).
/// The caller ends it.
#[inline]
pub fn acknowledge() -> u32 {
    let intid = read_icc_iar1_el1().intid();
    // The handler's reads (an SGI's mailbox) come after the acknowledge;
    // see `deactivate`.
    compiler_fence(Ordering::SeqCst);
    intid
}

/// Drops the running priority of `intid` (ICC_EOIR1_EL1), an interrupt
/// this CPU acknowledged.
#[inline]
pub fn end_of_interrupt(intid: u32) {
    // See `deactivate`.
    compiler_fence(Ordering::SeqCst);
    write_icc_eoir1_el1(IccEoir1El1::from_bits_retain(u64::from(intid)));
    barrier::isb(barrier::SY);
}

/// The current priority mask (ICC_PMR_EL1).
#[inline]
pub fn pmr() -> u8 {
    GicCpuInterface::get_priority_mask()
}

/// Sets the priority mask (ICC_PMR_EL1).
pub fn set_pmr(pmr: u8) {
    // Not arm-gic's `set_priority_mask`: its write is `nomem`, so the
    // compiler could move the memory accesses of a masked section across
    // the mask change; this write is a compiler barrier as well.
    // SAFETY: PMR only changes which interrupts are signalled. The DSB makes
    // the new mask take effect before later memory accesses (GICv3 spec
    // 12.1.6: PMR writes are self-synchronising for the CPU interface but the
    // barrier keeps critical sections from leaking past it).
    unsafe {
        asm!("msr icc_pmr_el1, {}", "dsb sy", in(reg) u64::from(pmr), options(nostack, preserves_flags))
    };
}

/// Arms the EL2 physical timer (CNTHP) to fire in `ticks` counter ticks:
/// TVAL, then CTL.ENABLE=1, IMASK=0.
pub fn arm_el2_timer(ticks: u64) {
    use arm_sysregs::el2::{accessors::write_cnthp_tval_el2, registers::CnthpTvalEl2};
    write_cnthp_tval_el2(CnthpTvalEl2::from_bits_retain(ticks));
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET);
    barrier::isb(barrier::SY);
}

/// Unmasks IRQs at PSTATE (DAIF.I): priority masking then decides.
pub fn local_irq_unmask() {
    // DAIFClr with an immediate: aarch64-cpu's DAIF is only the register.
    // SAFETY: clearing PSTATE.I; PMR still masks what must stay masked.
    unsafe { asm!("msr daifclr, #2", options(nomem, nostack, preserves_flags)) };
}

/// Masks IRQs at PSTATE (DAIF.I).
pub fn local_irq_mask() {
    // DAIFSet with an immediate: aarch64-cpu's DAIF is only the register.
    // SAFETY: setting PSTATE.I only delays interrupts.
    unsafe { asm!("msr daifset, #2", options(nomem, nostack, preserves_flags)) };
}
