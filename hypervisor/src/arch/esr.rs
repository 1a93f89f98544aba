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

    /// The exception class, EC [31:26] (Arm ARM D24.2.40, ESR_EL2).
    /// Inlined: every trap decodes it, and the caller's match then folds
    /// into one jump on the raw EC.
    #[inline(always)]
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

    /// The trapped instruction's length in bytes, from IL: 2 for a 16-bit
    /// T32 instruction (AArch32 EL0), else 4. A trap that completes the
    /// instruction advances the PC by this much.
    pub fn instruction_len(self) -> u64 {
        if self.il() {
            4
        } else {
            2
        }
    }

    /// The instruction-specific syndrome, bits [24:0].
    pub fn iss(self) -> u32 {
        (self.0 & 0x1ff_ffff) as u32
    }

    /// For aborts: the fault status code (DFSC/IFSC, ISS[5:0]).
    pub fn fault_status(self) -> u8 {
        (self.0 & 0x3f) as u8
    }

    /// The load or store behind a data abort, when the syndrome describes
    /// it (ISS encoding for an exception from a Data Abort, Arm ARM
    /// D24.2.41): ISV [24], SAS [23:22], SSE [21], SRT [20:16], SF [15],
    /// CM [8], S1PTW [7], WnR [6].
    ///
    /// `None` unless this is a data abort with ISV = 1, and also for cache
    /// maintenance (CM) and stage-1 table walk (S1PTW) faults: those are
    /// not register loads or stores, so there is nothing to emulate.
    pub fn mmio_access(self) -> Option<MmioAccess> {
        let iss = self.iss();
        let is_data_abort = matches!(
            self.class(),
            ExceptionClass::DataAbortLower | ExceptionClass::DataAbortSame
        );
        let bit = |n: u32| iss & (1 << n) != 0;
        if !is_data_abort || !bit(24) || bit(8) || bit(7) {
            return None;
        }
        Some(MmioAccess {
            write: bit(6),
            size: 1 << ((iss >> 22) & 3),
            reg: ((iss >> 16) & 0x1f) as u8,
            sign_extend: bit(21),
            sixty_four: bit(15),
        })
    }

    /// The ESR_EL1 for injecting an Undefined Instruction exception
    /// (EC 0x00, "unknown reason"); `il` is the trapped instruction's
    /// length (true: 32 bits), ISS zero.
    pub fn undefined(il: bool) -> Self {
        Self((il as u64) << IL_SHIFT)
    }

    /// What a data abort's syndrome says about the access even without a
    /// valid instruction syndrome: (WnR [6], CM [8]). WnR and CM are valid
    /// whatever ISV says (Arm ARM D24.2.41), so an LDP/STP or a DC by VA
    /// that faults still says which it was.
    pub fn abort_direction(self) -> (bool, bool) {
        let iss = self.iss();
        (iss & (1 << 6) != 0, iss & (1 << 8) != 0)
    }

    /// The ESR_EL1 for injecting a synchronous external data abort
    /// (DFSC 0x10) without a valid instruction syndrome (ISV = 0): EC 0x25
    /// if the guest was at EL1 (`same_el`), 0x24 if at EL0; IL = 1; WnR as
    /// given; for a cache maintenance instruction (`cm`) CM = 1 and WnR = 1,
    /// as the architecture reports one (Arm ARM D24.2.41, CM and WnR).
    /// FAR_EL1 is valid (FnV = 0): the injector sets it.
    pub fn sync_external_data_abort(same_el: bool, write: bool, cm: bool) -> Self {
        let ec: u64 = if same_el { 0x25 } else { 0x24 };
        let wnr = write || cm;
        Self(ec << EC_SHIFT | 1 << IL_SHIFT | (cm as u64) << 8 | (wnr as u64) << 6 | 0x10)
    }
}

/// A trapped MSR/MRS (EC 0x18), from its ISS (Arm ARM D24.2.41, "ISS
/// encoding for an exception from MSR, MRS, or System instruction
/// execution in AArch64 state"): Op0 [21:20], Op2 [19:17], Op1 [16:14],
/// CRn [13:10], Rt [9:5], CRm [4:1], Direction [0] (1 = read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegAccess {
    pub op0: u8,
    pub op1: u8,
    pub crn: u8,
    pub crm: u8,
    pub op2: u8,
    /// The transfer register; 31 is XZR.
    pub rt: u8,
    pub read: bool,
}

impl SysRegAccess {
    /// Decodes the ISS of a trapped MSR/MRS (EC 0x18).
    pub fn decode(iss: u32) -> Self {
        let f = |shift: u32, bits: u32| ((iss >> shift) & ((1 << bits) - 1)) as u8;
        SysRegAccess {
            op0: f(20, 2),
            op2: f(17, 3),
            op1: f(14, 3),
            crn: f(10, 4),
            rt: f(5, 5),
            crm: f(1, 4),
            read: iss & 1 != 0,
        }
    }

    /// The register's encoding as (op0, op1, CRn, CRm, op2).
    pub fn encoding(&self) -> (u8, u8, u8, u8, u8) {
        (self.op0, self.op1, self.crn, self.crm, self.op2)
    }
}

const EC_SHIFT: u32 = 26;
const IL_SHIFT: u32 = 25;

/// A single-register load or store described by a data abort's syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    pub write: bool,
    /// Access size in bytes: 1, 2, 4 or 8 (SAS).
    pub size: u8,
    /// The transfer register Xt/Wt (SRT); 31 means XZR/WZR, not SP.
    pub reg: u8,
    /// A load sign-extends to the register width (SSE).
    pub sign_extend: bool,
    /// The register is 64 bits wide (SF); otherwise a load writes Wt and
    /// zeroes the upper half.
    pub sixty_four: bool,
}

impl MmioAccess {
    /// A loaded value as the transfer register receives it: cut to the
    /// access size, sign-extended when the load was signed (SSE), and cut
    /// to 32 bits for a W register (SF = 0; Arm ARM D24.2.41, ISS encoding
    /// for a Data Abort). Pure, so the fuzz target checks it with the rest
    /// of the decode.
    pub fn load_value(&self, v: u64) -> u64 {
        let bits = u32::from(self.size) * 8;
        let mut v = if bits < 64 {
            v & ((1u64 << bits) - 1)
        } else {
            v
        };
        if self.sign_extend && bits < 64 && v & (1 << (bits - 1)) != 0 {
            v |= !((1u64 << bits) - 1);
        }
        if self.sixty_four {
            v
        } else {
            v & 0xffff_ffff
        }
    }
}

/// The faulting IPA of a stage-2 abort: HPFAR_EL2.FIPA (bits [43:4]) holds
/// IPA[51:12]; the page offset comes from FAR_EL2 (Arm ARM, HPFAR_EL2).
pub fn fault_ipa(hpfar: u64, far: u64) -> u64 {
    let fipa = (hpfar >> 4) & ((1 << 40) - 1);
    fipa << 12 | far & 0xfff
}

impl ExceptionClass {
    /// A short name for dumps and log lines.
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
        write!(
            f,
            "{:#010x} (EC {:#04x}: {}",
            self.0,
            self.ec_raw(),
            class.name()
        )?;
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
    fn instruction_length_follows_il() {
        assert_eq!(Esr::undefined(true).instruction_len(), 4);
        assert_eq!(
            Esr::undefined(false).instruction_len(),
            2,
            "16-bit T32 at AArch32 EL0"
        );
    }

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

    /// Builds a lower-EL data abort ESR with the given ISS.
    fn data_abort(iss: u64) -> Esr {
        Esr(0x24 << 26 | 1 << 25 | iss)
    }

    #[test]
    fn decodes_mmio_accesses() {
        // str w1, [x0]: ISV, SAS=2 (word), SRT=1, WnR.
        let str_w1 = data_abort(1 << 24 | 2 << 22 | 1 << 16 | 1 << 6 | 0x07);
        assert_eq!(
            str_w1.mmio_access(),
            Some(MmioAccess {
                write: true,
                size: 4,
                reg: 1,
                sign_extend: false,
                sixty_four: false
            })
        );
        // ldrsh x30, [x2]: SAS=1, SSE, SRT=30, SF.
        let ldrsh = data_abort(1 << 24 | 1 << 22 | 1 << 21 | 30 << 16 | 1 << 15 | 0x07);
        assert_eq!(
            ldrsh.mmio_access(),
            Some(MmioAccess {
                write: false,
                size: 2,
                reg: 30,
                sign_extend: true,
                sixty_four: true
            })
        );
        // strb wzr: SRT 31 is the zero register.
        let strb = data_abort(1 << 24 | 31 << 16 | 1 << 6);
        assert_eq!(strb.mmio_access().map(|a| (a.size, a.reg)), Some((1, 31)));
        // str x3: SAS=3.
        let str_x = Esr(0x25 << 26 | 1 << 25 | 1 << 24 | 3 << 22 | 3 << 16 | 1 << 15 | 1 << 6);
        assert_eq!(
            str_x.mmio_access().map(|a| (a.size, a.sixty_four)),
            Some((8, true))
        );
    }

    #[test]
    fn no_mmio_access_without_a_valid_syndrome() {
        assert_eq!(data_abort(2 << 22 | 1 << 6 | 0x07).mmio_access(), None); // ISV = 0
        assert_eq!(data_abort(1 << 24 | 1 << 8 | 1 << 6).mmio_access(), None); // CM
        assert_eq!(data_abort(1 << 24 | 1 << 7).mmio_access(), None); // S1PTW
                                                                      // An instruction abort or an HVC with the same ISS bits.
        assert_eq!(Esr(0x20 << 26 | 1 << 24).mmio_access(), None);
        assert_eq!(Esr(0x16 << 26 | 1 << 24).mmio_access(), None);
    }

    #[test]
    fn fault_ipa_combines_hpfar_and_far() {
        // IPA 0x0900_0018: FIPA = 0x9000 in HPFAR[43:4].
        assert_eq!(fault_ipa(0x9000 << 4, 0xffff_0000_dead_b018), 0x0900_0018);
        // The widest IPA (52 bits) and the bits HPFAR must not contribute.
        assert_eq!(fault_ipa(u64::MAX, 0xfff), (1 << 52) - 1);
        assert_eq!(fault_ipa(0xf, 0), 0);
    }

    #[test]
    fn injection_syndromes() {
        assert_eq!(Esr::undefined(true).0, 0x0200_0000);
        assert_eq!(Esr::undefined(false).0, 0);
        assert_eq!(Esr::undefined(true).class(), ExceptionClass::Unknown);
        let read = Esr::sync_external_data_abort(true, false, false);
        assert_eq!(read.0, 0x9600_0010);
        assert_eq!(read.class(), ExceptionClass::DataAbortSame);
        assert_eq!(read.mmio_access(), None);
        assert_eq!(
            format!("{read}"),
            "0x96000010 (EC 0x25: data abort from EL2, synchronous external abort)"
        );
        let write = Esr::sync_external_data_abort(false, true, false);
        assert_eq!(write.0, 0x9200_0050);
        assert_eq!(write.class(), ExceptionClass::DataAbortLower);
        // DC CIVAC: CM = 1 and WnR = 1.
        assert_eq!(
            Esr::sync_external_data_abort(true, false, true).0,
            0x9600_0150
        );
    }

    /// Found by guest-test's hostile mode: an STP to an IPA with nothing
    /// behind it (ISV = 0) was injected back as a read (WnR = 0), and a
    /// DC CIVAC without CM. WnR and CM come from the syndrome even when
    /// ISV is 0.
    #[test]
    fn aborts_without_a_syndrome_keep_their_direction() {
        // Data abort from a lower EL, ISV = 0, WnR = 1 (STP), DFSC 0x04.
        let stp = Esr(0x24 << 26 | 1 << 25 | 1 << 6 | 0x04);
        assert_eq!(stp.mmio_access(), None);
        assert_eq!(stp.abort_direction(), (true, false));
        let (w, cm) = stp.abort_direction();
        assert_eq!(Esr::sync_external_data_abort(true, w, cm).0, 0x9600_0050);
        // DC CIVAC: CM = 1, WnR = 1.
        let dc = Esr(0x24 << 26 | 1 << 25 | 1 << 8 | 1 << 6 | 0x04);
        assert_eq!(dc.abort_direction(), (true, true));
        let ldp = Esr(0x24 << 26 | 1 << 25 | 0x04);
        assert_eq!(ldp.abort_direction(), (false, false));
    }

    #[test]
    // Every ISS field is spelled out, the zero ones too.
    #[allow(clippy::identity_op)]
    fn decodes_system_register_accesses() {
        // MRS x3, ID_AA64PFR0_EL1 (S3_0_C0_C4_0).
        let iss = 3 << 20 | 0 << 17 | 0 << 14 | 0 << 10 | 3 << 5 | 4 << 1 | 1;
        let a = SysRegAccess::decode(iss);
        assert_eq!(a.encoding(), (3, 0, 0, 4, 0));
        assert_eq!((a.rt, a.read), (3, true));
        // MSR ICC_SGI1R_EL1, x30 (S3_0_C12_C11_5).
        let a = SysRegAccess::decode(3 << 20 | 5 << 17 | 12 << 10 | 30 << 5 | 11 << 1);
        assert_eq!(a.encoding(), (3, 0, 12, 11, 5));
        assert_eq!((a.rt, a.read), (30, false));
        // Every field at its maximum.
        let a = SysRegAccess::decode(0x3f_ffff);
        assert_eq!(a.encoding(), (3, 7, 15, 15, 7));
        assert_eq!(a.rt, 31);
    }

    #[test]
    fn loads_are_cut_and_extended_like_the_register_receives_them() {
        let load = |size: u8, sign_extend: bool, sixty_four: bool| MmioAccess {
            write: false,
            size,
            reg: 0,
            sign_extend,
            sixty_four,
        };
        // LDRB W0 / LDRSB X0 / LDRSB W0 of 0x80.
        assert_eq!(load(1, false, false).load_value(0xff80), 0x80);
        assert_eq!(
            load(1, true, true).load_value(0xff80),
            0xffff_ffff_ffff_ff80
        );
        assert_eq!(load(1, true, false).load_value(0x80), 0xffff_ff80);
        // LDRSH with the sign bit clear; LDR W0 drops the upper half.
        assert_eq!(load(2, true, true).load_value(0x1_7fff), 0x7fff);
        assert_eq!(load(4, false, false).load_value(u64::MAX), 0xffff_ffff);
        assert_eq!(load(8, true, true).load_value(u64::MAX), u64::MAX);
    }

    #[test]
    fn iss_is_the_low_25_bits() {
        assert_eq!(Esr(0xffff_ffff).iss(), 0x1ff_ffff);
    }
}
