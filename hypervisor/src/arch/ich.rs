//! The GICv3 virtual CPU interface control registers (ICH_*_EL2), through
//! aarch64-cpu.

use aarch64_cpu::registers::{
    Readable, Writeable, ICH_AP0R0_EL2, ICH_AP0R1_EL2, ICH_AP0R2_EL2, ICH_AP0R3_EL2, ICH_AP1R0_EL2,
    ICH_AP1R1_EL2, ICH_AP1R2_EL2, ICH_AP1R3_EL2, ICH_HCR_EL2, ICH_LR0_EL2, ICH_LR10_EL2,
    ICH_LR11_EL2, ICH_LR12_EL2, ICH_LR13_EL2, ICH_LR14_EL2, ICH_LR15_EL2, ICH_LR1_EL2, ICH_LR2_EL2,
    ICH_LR3_EL2, ICH_LR4_EL2, ICH_LR5_EL2, ICH_LR6_EL2, ICH_LR7_EL2, ICH_LR8_EL2, ICH_LR9_EL2,
    ICH_VMCR_EL2, ICH_VTR_EL2,
};

/// Most list registers the architecture allows.
pub const MAX_LRS: usize = 16;

/// Number of list registers this CPU implements (ICH_VTR_EL2.ListRegs + 1).
pub fn nr_lrs() -> usize {
    ((ICH_VTR_EL2.get() & 0x1f) as usize + 1).min(MAX_LRS)
}

/// Priority bits of the virtual CPU interface (ICH_VTR_EL2.PRIbits + 1),
/// which the emulated distributor matches.
pub fn priority_bits() -> u8 {
    (((ICH_VTR_EL2.get() >> 29) & 7) + 1) as u8
}

/// Reads ICH_LR<n>_EL2; LRs beyond 15 read as 0.
pub fn read_lr(n: usize) -> u64 {
    match n {
        0 => ICH_LR0_EL2.get(),
        1 => ICH_LR1_EL2.get(),
        2 => ICH_LR2_EL2.get(),
        3 => ICH_LR3_EL2.get(),
        4 => ICH_LR4_EL2.get(),
        5 => ICH_LR5_EL2.get(),
        6 => ICH_LR6_EL2.get(),
        7 => ICH_LR7_EL2.get(),
        8 => ICH_LR8_EL2.get(),
        9 => ICH_LR9_EL2.get(),
        10 => ICH_LR10_EL2.get(),
        11 => ICH_LR11_EL2.get(),
        12 => ICH_LR12_EL2.get(),
        13 => ICH_LR13_EL2.get(),
        14 => ICH_LR14_EL2.get(),
        15 => ICH_LR15_EL2.get(),
        _ => 0,
    }
}

/// Writes ICH_LR<n>_EL2; LRs beyond 15 are ignored.
pub fn write_lr(n: usize, v: u64) {
    match n {
        0 => ICH_LR0_EL2.set(v),
        1 => ICH_LR1_EL2.set(v),
        2 => ICH_LR2_EL2.set(v),
        3 => ICH_LR3_EL2.set(v),
        4 => ICH_LR4_EL2.set(v),
        5 => ICH_LR5_EL2.set(v),
        6 => ICH_LR6_EL2.set(v),
        7 => ICH_LR7_EL2.set(v),
        8 => ICH_LR8_EL2.set(v),
        9 => ICH_LR9_EL2.set(v),
        10 => ICH_LR10_EL2.set(v),
        11 => ICH_LR11_EL2.set(v),
        12 => ICH_LR12_EL2.set(v),
        13 => ICH_LR13_EL2.set(v),
        14 => ICH_LR14_EL2.set(v),
        15 => ICH_LR15_EL2.set(v),
        _ => {}
    }
}

/// ICH_HCR_EL2: the virtual CPU interface's control (EOIcount, maintenance enables).
pub fn read_hcr() -> u64 {
    ICH_HCR_EL2.get()
}

/// Writes ICH_HCR_EL2 (En, and the maintenance conditions a flush wants).
pub fn write_hcr(v: u64) {
    ICH_HCR_EL2.set(v);
}

/// Number of ICH_AP0R<n>_EL2 / ICH_AP1R<n>_EL2 pairs this CPU implements:
/// one per 32 preemption levels, from ICH_VTR_EL2.PREbits [28:26] (GICv3
/// spec, ICH_AP0R<n>_EL2: n = 0 with 5 preemption bits, 0-1 with 6, 0-3
/// with 7).
pub fn nr_aprs() -> usize {
    match preemption_bits() {
        0..=5 => 1,
        6 => 2,
        _ => 4,
    }
}

/// Preemption bits of the virtual CPU interface (ICH_VTR_EL2.PREbits + 1).
pub fn preemption_bits() -> u8 {
    (((ICH_VTR_EL2.get() >> 26) & 7) + 1) as u8
}

/// Reads ICH_AP0R<n>_EL2 (`group1` false) or ICH_AP1R<n>_EL2; n > 3 reads 0.
pub fn read_apr(group1: bool, n: usize) -> u32 {
    let v = match (group1, n) {
        (false, 0) => ICH_AP0R0_EL2.get(),
        (false, 1) => ICH_AP0R1_EL2.get(),
        (false, 2) => ICH_AP0R2_EL2.get(),
        (false, 3) => ICH_AP0R3_EL2.get(),
        (true, 0) => ICH_AP1R0_EL2.get(),
        (true, 1) => ICH_AP1R1_EL2.get(),
        (true, 2) => ICH_AP1R2_EL2.get(),
        (true, 3) => ICH_AP1R3_EL2.get(),
        _ => 0,
    };
    v as u32
}

fn clear_aprs() {
    // Only the implemented registers: the others are UNDEFINED.
    let n = nr_aprs();
    ICH_AP0R0_EL2.set(0);
    ICH_AP1R0_EL2.set(0);
    if n > 1 {
        ICH_AP0R1_EL2.set(0);
        ICH_AP1R1_EL2.set(0);
    }
    if n > 2 {
        ICH_AP0R2_EL2.set(0);
        ICH_AP1R2_EL2.set(0);
        ICH_AP0R3_EL2.set(0);
        ICH_AP1R3_EL2.set(0);
    }
}

/// ICH_VMCR_EL2: the guest's PMR, binary points and group enables.
pub fn read_vmcr() -> u64 {
    ICH_VMCR_EL2.get()
}

/// Resets the virtual CPU interface for a vCPU starting from reset: no
/// LRs, no active priorities (every implemented ICH_AP0R<n>/AP1R<n>), VMCR
/// (virtual PMR, group enables) zero.
pub fn reset_virtual_interface() {
    for n in 0..nr_lrs() {
        write_lr(n, 0);
    }
    clear_aprs();
    ICH_VMCR_EL2.set(0);
    write_hcr(1);
}

/// ICH_VMCR_EL2.VPMR [31:24]: the guest's priority mask, for dumps.
pub fn virtual_pmr() -> u8 {
    (ICH_VMCR_EL2.get() >> 24) as u8
}
