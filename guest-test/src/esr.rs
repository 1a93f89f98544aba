//! Decoding of ESR_EL1 (Arm ARM D19.2.40) and of the vector an exception
//! came through, for the fault checks and the register dump.

/// Exception class ESR_ELx.EC, bits [31:26].
pub fn ec(esr: u64) -> u8 {
    ((esr >> 26) & 0x3f) as u8
}

/// Instruction-specific syndrome, bits [24:0].
pub fn iss(esr: u64) -> u32 {
    (esr & 0x1ff_ffff) as u32
}

/// EC of a data abort taken without a change in exception level.
pub const EC_DATA_ABORT_SAME_EL: u8 = 0x25;

/// Data/instruction fault status code for a synchronous external abort
/// that is not on a translation table walk.
pub const FSC_SYNC_EXTERNAL_ABORT: u8 = 0x10;

/// DFSC, the data fault status code ISS[5:0] of a data abort.
pub fn dfsc(esr: u64) -> u8 {
    (iss(esr) & 0x3f) as u8
}

/// ISS.WnR (bit 6) of a data abort: the access was a write.
pub fn is_write(esr: u64) -> bool {
    iss(esr) & (1 << 6) != 0
}

/// Whether `esr` is the synchronous external abort on a data access at the
/// same EL that an access to an address without memory or device behind it
/// produces (natively on QEMU, and injected by nmivisor).
pub fn is_sync_external_data_abort(esr: u64) -> bool {
    ec(esr) == EC_DATA_ABORT_SAME_EL && dfsc(esr) == FSC_SYNC_EXTERNAL_ABORT
}

/// A short name for an exception class.
pub fn ec_name(ec: u8) -> &'static str {
    match ec {
        0x00 => "unknown",
        0x01 => "wfi/wfe",
        0x07 => "fp/simd access",
        0x0e => "illegal execution state",
        0x15 => "svc",
        0x16 => "hvc",
        0x17 => "smc",
        0x18 => "msr/mrs",
        0x20 => "instruction abort (lower EL)",
        0x21 => "instruction abort",
        0x22 => "pc alignment",
        0x24 => "data abort (lower EL)",
        0x25 => "data abort",
        0x26 => "sp alignment",
        0x2f => "serror",
        0x3c => "brk",
        _ => "other",
    }
}

/// The vector an exception came through: an index 0-15 into the vector
/// table, four groups (current EL with SP_EL0, current EL with SP_ELx,
/// lower EL AArch64, lower EL AArch32) of four kinds.
pub fn vector_name(index: u64) -> &'static str {
    const NAMES: [&str; 16] = [
        "sync (EL1t)",
        "irq (EL1t)",
        "fiq (EL1t)",
        "serror (EL1t)",
        "sync (EL1h)",
        "irq (EL1h)",
        "fiq (EL1h)",
        "serror (EL1h)",
        "sync (EL0, 64-bit)",
        "irq (EL0, 64-bit)",
        "fiq (EL0, 64-bit)",
        "serror (EL0, 64-bit)",
        "sync (EL0, 32-bit)",
        "irq (EL0, 32-bit)",
        "fiq (EL0, 32-bit)",
        "serror (EL0, 32-bit)",
    ];
    NAMES.get(index as usize).copied().unwrap_or("bad vector")
}

/// The synchronous exception from the current EL using SP_ELx.
pub const VECTOR_SYNC_EL1H: u64 = 4;

/// Vector index of an IRQ taken from EL1 with SP_EL1.
#[cfg(target_os = "none")]
pub const VECTOR_IRQ_EL1H: u64 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_sync_external_abort_on_a_read() {
        // EC 0x25, IL, ISV clear, DFSC 0x10.
        let esr = 0x9600_0010;
        assert_eq!(ec(esr), 0x25);
        assert_eq!(dfsc(esr), 0x10);
        assert!(!is_write(esr));
        assert!(is_sync_external_data_abort(esr));
    }

    #[test]
    fn a_translation_fault_or_a_lower_el_abort_is_not_one() {
        assert!(!is_sync_external_data_abort(0x9600_0005)); // level 1 translation fault
        assert!(!is_sync_external_data_abort(0x9200_0010)); // EC 0x24
        assert!(is_write(0x9600_0050));
    }

    #[test]
    fn names_vectors_and_classes() {
        assert_eq!(vector_name(VECTOR_SYNC_EL1H), "sync (EL1h)");
        assert_eq!(vector_name(16), "bad vector");
        assert_eq!(ec_name(0x25), "data abort");
    }
}
