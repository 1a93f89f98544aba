//! Small CPU helpers: identification, the generic timer counter, halting.

use aarch64_cpu::registers::{CurrentEL, Readable, CNTFRQ_EL0, DAIF, MPIDR_EL1};
use core::arch::asm;

/// MPIDR_EL1 affinity fields (Aff3..Aff0), the value PSCI and the GIC use.
pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & 0xff_00ff_ffff
}

/// CurrentEL as a number (0..3).
pub fn current_el() -> u64 {
    (CurrentEL.get() >> 2) & 3
}

/// The physical counter (CNTPCT_EL0), ordered after earlier instructions.
pub fn counter() -> u64 {
    let v: u64;
    // aarch64-cpu reads CNTPCT_EL0 but has no read ordered by an ISB in one
    // asm block (its barrier is also a compiler barrier, which costs the
    // dump's spin-waits instructions).
    // SAFETY: reading the counter has no side effects; the ISB orders it.
    unsafe {
        asm!("isb", "mrs {}, cntpct_el0", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Counter frequency in Hz (CNTFRQ_EL0).
pub fn counter_freq() -> u64 {
    CNTFRQ_EL0.get()
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
    DAIF.get()
}

/// Mask every asynchronous exception (PSTATE.DAIF).
pub fn mask_all() {
    // DAIFSet with an immediate: aarch64-cpu's DAIF is only the register
    // (a write would be a read-modify-write).
    // SAFETY: masking exceptions cannot break memory safety.
    unsafe {
        asm!(
            "msr daifset, #0xf",
            options(nomem, nostack, preserves_flags)
        )
    };
}

/// Waits for an interrupt (WFI): the idle loop's sleep.
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

/// The smallest data cache line, from CTR_EL0.DminLine [19:16] (log2 of
/// words; Arm ARM D23.2.36).
#[inline]
fn dcache_line() -> u64 {
    // aarch64-cpu lacks CTR_EL0; arm-sysregs types it.
    4 << arm_sysregs::el0::accessors::read_ctr_el0().dminline()
}

/// Cleans and invalidates `len` bytes at `va` to the Point of Coherency
/// (DC CIVAC per line, then DSB), so that a guest that starts with its MMU
/// and caches off reads what EL2 wrote through its cacheable mapping.
pub fn clean_to_poc(va: u64, len: u64) {
    let line = dcache_line();
    let mut a = va & !(line - 1);
    while a < va.saturating_add(len) {
        // SAFETY: cache maintenance by VA on memory the EL2 map covers
        // (the caller's own range); it does not change memory contents.
        unsafe { asm!("dc civac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    // SAFETY: a barrier.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Invalidates all instruction caches to the Point of Unification, inner
/// shareable (IC IALLUIS), after new code was written for a guest.
pub fn invalidate_icache() {
    // SAFETY: instruction cache maintenance has no effect on memory.
    unsafe {
        asm!(
            "ic ialluis",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

/// Zeroes `len` bytes at `va` (DC ZVA where permitted, Arm ARM C5.3.28)
/// and cleans them to the Point of Coherency.
///
/// # Safety
/// `va..va + len` must be memory the EL2 map covers as normal memory that
/// nothing else uses meanwhile.
pub unsafe fn zero_and_clean(va: u64, len: u64) {
    let dczid: u64;
    // Neither aarch64-cpu nor arm-sysregs has DCZID_EL0.
    // SAFETY: reading DCZID_EL0 has no side effects.
    unsafe { asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack, preserves_flags)) };
    let block = 4u64 << (dczid & 0xf);
    let prohibited = dczid & (1 << 4) != 0;
    if prohibited || !va.is_multiple_of(block) || !len.is_multiple_of(block) {
        // SAFETY: the caller's contract.
        unsafe { core::ptr::write_bytes(va as *mut u8, 0, len as usize) };
    } else {
        let mut a = va;
        while a < va + len {
            // SAFETY: the caller's contract; DC ZVA zeroes one aligned block.
            unsafe { asm!("dc zva, {}", in(reg) a, options(nostack, preserves_flags)) };
            a += block;
        }
    }
    clean_to_poc(va, len);
}

/// The CPU's physical address range, ID_AA64MMFR0_EL1.PARange (stage 2's
/// VTCR_EL2.PS must not exceed it).
pub fn pa_range() -> u64 {
    use aarch64_cpu::registers::{Readable, ID_AA64MMFR0_EL1};
    ID_AA64MMFR0_EL1.get() & 0xf
}

/// HPFAR_EL2: the faulting IPA's page of a stage-2 abort (its FIPA field,
/// IPA bits [51:12] at [43:4]).
pub fn hpfar() -> u64 {
    use aarch64_cpu::registers::{Readable, HPFAR_EL2};
    HPFAR_EL2.get()
}

/// Orders earlier stores before what follows, such as an SGI write that
/// must find a mailbox filled (DSB ISHST).
pub fn store_barrier() {
    use aarch64_cpu::asm::barrier;
    barrier::dsb(barrier::ISHST);
}

/// Invalidates every stage-1 and stage-2 TLB entry of the VMID currently
/// in VTTBR_EL2, on every CPU (TLBI VMALLS12E1IS).
pub fn flush_guest_tlb() {
    // SAFETY: TLB maintenance has no memory-safety effects.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi vmalls12e1is",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}
