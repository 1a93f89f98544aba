//! Exception Syndrome Register decoding (Arm ARM D24.2.41, ESR_ELx).
//!
//! Pure: the trap paths and the register dumps share it, and the host tests
//! cover it.

use core::fmt;

/// An ESR_ELx value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Esr(pub u64);

/// Exception classes nmivisor names (ESR_ELx.EC, bits [31:26]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionClass {
    Unknown,
    WfiWfe,
    FpAccess,
    IllegalState,
    Svc64,
    Hvc64,
    Smc64,
    SysReg,
    InstructionAbortLower,
    InstructionAbortSame,
    PcAlignment,
    DataAbortLower,
    DataAbortSame,
    SpAlignment,
    SError,
    Brk,
    Other(u8),
}

impl Esr {
    /// The raw exception class.
    pub fn ec_raw(self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }

    pub fn class(self) -> ExceptionClass {
        use ExceptionClass::*;
        match self.ec_raw() {
            0x00 => Unknown,
            0x01 => WfiWfe,
            0x07 => FpAccess,
            0x0e => IllegalState,
            0x15 => Svc64,
            0x16 => Hvc64,
            0x17 => Smc64,
            0x18 => SysReg,
            0x20 => InstructionAbortLower,
            0x21 => InstructionAbortSame,
            0x22 => PcAlignment,
            0x24 => DataAbortLower,
            0x25 => DataAbortSame,
            0x26 => SpAlignment,
            0x2f => SError,
            0x3c => Brk,
            ec => Other(ec),
        }
    }

    /// Instruction length: true for a 32-bit instruction.
    pub fn il(self) -> bool {
        self.0 & (1 << 25) != 0
    }

    /// The instruction-specific syndrome, bits [24:0].
    pub fn iss(self) -> u32 {
        (self.0 & 0x1ff_ffff) as u32
    }

    /// For aborts: the fault status code (DFSC/IFSC, ISS[5:0]).
    pub fn fault_status(self) -> u8 {
        (self.0 & 0x3f) as u8
    }
}

impl ExceptionClass {
    pub fn name(self) -> &'static str {
        use ExceptionClass::*;
        match self {
            Unknown => "unknown reason",
            WfiWfe => "WFI/WFE",
            FpAccess => "FP/SIMD access",
            IllegalState => "illegal execution state",
            Svc64 => "SVC",
            Hvc64 => "HVC",
            Smc64 => "SMC",
            SysReg => "system register access",
            InstructionAbortLower => "instruction abort from a lower EL",
            InstructionAbortSame => "instruction abort from EL2",
            PcAlignment => "PC alignment fault",
            DataAbortLower => "data abort from a lower EL",
            DataAbortSame => "data abort from EL2",
            SpAlignment => "SP alignment fault",
            SError => "SError",
            Brk => "BRK instruction",
            Other(_) => "other",
        }
    }
}

/// Names an abort's fault status code (DFSC/IFSC).
pub fn fault_status_name(fsc: u8) -> &'static str {
    match fsc {
        0x00..=0x03 => "address size fault",
        0x04..=0x07 => "translation fault",
        0x09..=0x0b => "access flag fault",
        0x0d..=0x0f => "permission fault",
        0x10 => "synchronous external abort",
        0x21 => "alignment fault",
        _ => "fault",
    }
}

impl fmt::Debug for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// `0x96000006 (EC 0x25: data abort from EL2, translation fault)`.
impl fmt::Display for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = self.class();
        write!(f, "{:#010x} (EC {:#04x}: {}", self.0, self.ec_raw(), class.name())?;
        if matches!(
            class,
            ExceptionClass::DataAbortLower
                | ExceptionClass::DataAbortSame
                | ExceptionClass::InstructionAbortLower
                | ExceptionClass::InstructionAbortSame
        ) {
            write!(f, ", {}", fault_status_name(self.fault_status()))?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_el2_data_abort() {
        let esr = Esr(0x9600_0006);
        assert_eq!(esr.class(), ExceptionClass::DataAbortSame);
        assert!(esr.il());
        assert_eq!(esr.fault_status(), 0x06);
        assert_eq!(
            format!("{esr}"),
            "0x96000006 (EC 0x25: data abort from EL2, translation fault)"
        );
    }

    #[test]
    fn decodes_hvc_and_unknown_classes() {
        assert_eq!(Esr(0x5a00_0000).class(), ExceptionClass::Hvc64);
        assert_eq!(Esr(0x5e00_0000).class(), ExceptionClass::Smc64);
        assert_eq!(Esr(0).class(), ExceptionClass::Unknown);
        assert_eq!(Esr(0x3f << 26).class(), ExceptionClass::Other(0x3f));
        assert_eq!(format!("{}", Esr(0x5a00_0000)), "0x5a000000 (EC 0x16: HVC)");
    }

    #[test]
    fn iss_is_the_low_25_bits() {
        assert_eq!(Esr(0xffff_ffff).iss(), 0x1ff_ffff);
    }
}
