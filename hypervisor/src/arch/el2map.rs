//! Live changes to the EL2 stage-1 map: one level-2 block descriptor at a
//! time, for the guest-RAM windows (`mm::window_hw`).
//!
//! Each window's descriptor is written only by the CPU that owns it, in
//! stack order, so a change never races another writer. Break-before-make
//! (Arm ARM D8.16.1) holds because a window goes from invalid to valid when
//! mapped and back to invalid, with its TLB entries invalidated, when
//! unmapped: there is never a valid-to-valid change.

use core::arch::asm;

/// Writes a valid block descriptor into the invalid entry at `entry`.
///
/// # Safety
/// `entry` must be the address of a level-2 entry of the active EL2 map
/// that is currently invalid and that only this CPU changes.
pub unsafe fn install_block(entry: usize, descriptor: u64) {
    // SAFETY: the caller's contract; an aligned 64-bit store is single-copy
    // atomic, so the table walker sees the old or the new entry. The DSB
    // makes the store visible to the walker and the ISB makes the next
    // instructions use the new entry (Arm ARM D8.2.6).
    unsafe {
        core::ptr::write_volatile(entry as *mut u64, descriptor);
        asm!("dsb ishst", "isb", options(nostack, preserves_flags));
    }
}

/// Makes the entry at `entry`, which maps `va`, invalid again and removes
/// it from every CPU's TLB (TLBI VAE2IS: a speculative walk on another CPU
/// may have cached it).
///
/// # Safety
/// As for [`install_block`], and nothing may use the window afterwards.
pub unsafe fn remove_block(entry: usize, va: u64) {
    // SAFETY: the caller's contract; the sequence is the architecture's
    // break half of break-before-make (Arm ARM D8.16.1).
    unsafe {
        core::ptr::write_volatile(entry as *mut u64, 0);
        asm!(
            "dsb ishst",
            "tlbi vae2is, {page}",
            "dsb ish",
            "isb",
            page = in(reg) va >> 12,
            options(nostack, preserves_flags)
        );
    }
}

/// What the EL2 map translates `va` to for a read (AT S1E2R, then
/// PAR_EL1; Arm ARM, "AT S1E2R"), or None if the translation faults. Used by
/// the test hook that checks which RAM the map covers.
#[cfg(feature = "test-hooks")]
pub fn translate_read(va: u64) -> Option<u64> {
    use aarch64_cpu::registers::{Readable, PAR_EL1};
    // aarch64-cpu has no AT instruction, only PAR_EL1.
    // SAFETY: AT only writes PAR_EL1, which nothing else at EL2 keeps live
    // (it is saved and restored with the guest's EL1 state around guest
    // entry, and this runs outside a guest's context switch).
    unsafe { asm!("at s1e2r, {va}", "isb", va = in(reg) va, options(nostack, preserves_flags)) };
    let par = PAR_EL1.extract();
    // PA [51:12]: aarch64-cpu's PA field stops at bit 47, so the mask is
    // written out.
    (!par.is_set(PAR_EL1::F)).then_some((par.get() & 0x000f_ffff_ffff_f000) | (va & 0xfff))
}

/// Invalidates every EL2 TLB entry of this CPU (TLBI ALLE2), after a
/// switch to a new EL2 map.
pub fn flush_el2_tlb() {
    // SAFETY: TLB maintenance has no memory-safety effects.
    unsafe {
        asm!(
            "dsb ish",
            "tlbi alle2",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}
