//! Exception injection into a guest's EL1: where the guest resumes and
//! with which PSTATE, as the PE would do on exception entry to AArch64 EL1
//! (Arm ARM D1.10.2, "Exception entry", and the `AArch64.TakeException`
//! pseudocode).
//!
//! Pure arithmetic on register values: the caller reads SPSR_EL2 and
//! ELR_EL2 of the trapped vCPU, writes the [`Injection`] back to ELR_EL2,
//! SPSR_EL2, ELR_EL1 and SPSR_EL1, and for a synchronous exception also sets
//! ESR_EL1 (and FAR_EL1 for aborts) itself.

use core::fmt;

/// PSTATE / SPSR_ELx bits (AArch64 layout, Arm ARM register description of SPSR_EL1).
mod bits {
    pub const NZCV: u64 = 0xf << 28;
    pub const DIT: u64 = 1 << 24;
    pub const PAN: u64 = 1 << 22;
    pub const SSBS: u64 = 1 << 12;
    pub const DAIF: u64 = 0xf << 6;
    /// M[4]: set when the interrupted state was AArch32.
    pub const NRW: u64 = 1 << 4;
    pub const M: u64 = 0xf;
    pub const M_EL0T: u64 = 0b0000;
    pub const M_EL1T: u64 = 0b0100;
    pub const M_EL1H: u64 = 0b0101;
    /// M[4:0] of AArch32 User mode, the only AArch32 state a guest can be
    /// in (its EL1 is AArch64, HCR_EL2.RW).
    pub const M32_USR: u64 = 0b1_0000;
    /// In an AArch32 SPSR (Arm ARM, SPSR_EL1 when taken from AArch32):
    /// DIT [21], SSBS [23], and the mode field M[4:0].
    pub const DIT32: u64 = 1 << 21;
    pub const M32: u64 = 0x1f;
}

/// SCTLR_EL1.SPAN [23]: when 0, exception entry to EL1 sets PSTATE.PAN.
const SCTLR_SPAN: u64 = 1 << 23;
/// SCTLR_EL1.DSSBS [44]: the PSTATE.SSBS value on exception entry.
const SCTLR_DSSBS: u64 = 1 << 44;

/// The four exception types, each with its own vector slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionKind {
    Sync,
    // The vector table has all four slots and the tests cover them; so far
    // nmivisor only injects synchronous exceptions.
    #[cfg_attr(not(test), allow(dead_code))]
    Irq,
    #[cfg_attr(not(test), allow(dead_code))]
    Fiq,
    #[cfg_attr(not(test), allow(dead_code))]
    SError,
}

/// The guest's registers the entry depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestState {
    /// PSTATE at the trap (SPSR_EL2).
    pub pstate: u64,
    /// The preferred return address (ELR_EL2).
    pub pc: u64,
    pub vbar_el1: u64,
    /// For the PAN and SSBS entry values.
    pub sctlr_el1: u64,
}

/// The result of taking the exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    /// The vector the guest resumes at (to ELR_EL2).
    pub pc: u64,
    /// The guest's PSTATE in the handler (to SPSR_EL2).
    pub pstate: u64,
    /// The interrupted PSTATE (to SPSR_EL1).
    pub spsr_el1: u64,
    /// The interrupted PC (to ELR_EL1).
    pub elr_el1: u64,
}

/// Why an exception could not be injected into the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectError {
    /// SPSR_EL2.M is not EL0t, EL1t, EL1h or AArch32 User: not a state a
    /// guest can trap from, so the saved state is corrupt.
    BadMode(u8),
}

impl fmt::Display for InjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMode(m) => write!(
                f,
                "cannot inject: guest PSTATE.M {m:#07b} is not EL0t/EL1t/EL1h/AArch32 User"
            ),
        }
    }
}

/// Takes exception `kind` to the guest's EL1.
///
/// Vector offset (Arm ARM D1.10.2, table "Vector offsets from vector table
/// base address"): 0x000 from EL1 using SP_EL0, 0x200 from EL1 using
/// SP_EL1, 0x400 from EL0 in AArch64, 0x600 from EL0 in AArch32, plus 0x80
/// per type (sync, IRQ, FIQ, SError). From AArch32, SPSR_EL1 keeps the
/// AArch32 layout and PSTATE.DIT comes from its bit 21.
///
/// New PSTATE: EL1h, D, A, I and F set; N, Z, C, V and DIT kept; PAN set
/// when SCTLR_EL1.SPAN is 0 and otherwise kept; SSBS from SCTLR_EL1.DSSBS;
/// SS, IL, BTYPE and UAO cleared. Not modelled, because nmivisor exposes
/// neither feature to guests: TCO (FEAT_MTE, set on entry) and ALLINT
/// (FEAT_NMI), both left 0.
pub fn inject(guest: &GuestState, kind: ExceptionKind) -> Result<Injection, InjectError> {
    use bits::*;
    let old = guest.pstate;
    let aarch32 = old & NRW != 0;
    let source = match (aarch32, old & if aarch32 { M32 } else { M }) {
        (false, M_EL1T) => 0x000,
        (false, M_EL1H) => 0x200,
        (false, M_EL0T) => 0x400,
        (true, M32_USR) => 0x600,
        (_, _) => return Err(InjectError::BadMode((old & M32) as u8)),
    };
    // PSTATE.DIT is kept; an AArch32 SPSR holds it at bit 21.
    let dit = if aarch32 {
        (old & DIT32 != 0) as u64 * DIT
    } else {
        old & DIT
    };
    let slot = match kind {
        ExceptionKind::Sync => 0x000,
        ExceptionKind::Irq => 0x080,
        ExceptionKind::Fiq => 0x100,
        ExceptionKind::SError => 0x180,
    };
    // VBAR_EL1[10:0] are RES0.
    let vbar = guest.vbar_el1 & !0x7ff;

    let mut new = old & (NZCV | PAN) | dit | DAIF | M_EL1H;
    if guest.sctlr_el1 & SCTLR_SPAN == 0 {
        new |= PAN;
    }
    if guest.sctlr_el1 & SCTLR_DSSBS != 0 {
        new |= SSBS;
    }
    Ok(Injection {
        pc: vbar.wrapping_add(source + slot),
        pstate: new,
        spsr_el1: old,
        elr_el1: guest.pc,
    })
}

#[cfg(test)]
mod tests {
    use super::bits::*;
    use super::*;

    const VBAR: u64 = 0xffff_8000_1001_0800;
    const SPAN: u64 = SCTLR_SPAN;

    fn guest(pstate: u64) -> GuestState {
        GuestState {
            pstate,
            pc: 0xffff_8000_1234_5678,
            vbar_el1: VBAR,
            sctlr_el1: SPAN,
        }
    }

    #[test]
    fn vector_offsets_by_source_and_kind() {
        use ExceptionKind::*;
        let cases = [
            (M_EL1T, Sync, 0x000),
            (M_EL1T, SError, 0x180),
            (M_EL1H, Sync, 0x200),
            (M_EL1H, Irq, 0x280),
            (M_EL1H, Fiq, 0x300),
            (M_EL1H, SError, 0x380),
            (M_EL0T, Sync, 0x400),
            (M_EL0T, Irq, 0x480),
            (M_EL0T, Fiq, 0x500),
            (M_EL0T, SError, 0x580),
        ];
        for (mode, kind, offset) in cases {
            let got = inject(&guest(mode), kind).unwrap();
            assert_eq!(got.pc, VBAR + offset, "{mode:#b} {kind:?}");
        }
    }

    #[test]
    fn saves_old_state_and_enters_el1h_masked() {
        // Z and C set, EL0t, interrupts unmasked, SS, IL, BTYPE, UAO set.
        let old = 0x6000_0000 | 1 << 21 | 1 << 20 | 3 << 10 | 1 << 23 | M_EL0T;
        let got = inject(&guest(old), ExceptionKind::Irq).unwrap();
        assert_eq!(got.spsr_el1, old);
        assert_eq!(got.elr_el1, 0xffff_8000_1234_5678);
        assert_eq!(got.pstate, 0x6000_0000 | DAIF | M_EL1H);
    }

    #[test]
    fn pan_ssbs_and_dit() {
        let mut g = guest(M_EL1H | DIT);
        // SPAN = 1: PAN unchanged (clear).
        assert_eq!(
            inject(&g, ExceptionKind::Sync).unwrap().pstate,
            DIT | DAIF | M_EL1H
        );
        g.pstate |= PAN;
        assert_eq!(
            inject(&g, ExceptionKind::Sync).unwrap().pstate,
            DIT | PAN | DAIF | M_EL1H
        );
        // SPAN = 0: PAN set on entry; DSSBS = 1: SSBS set.
        let g = GuestState {
            sctlr_el1: SCTLR_DSSBS,
            ..guest(M_EL0T | SSBS)
        };
        assert_eq!(
            inject(&g, ExceptionKind::Sync).unwrap().pstate,
            PAN | SSBS | DAIF | M_EL1H
        );
        // DSSBS = 0: SSBS cleared even if it was set.
        let g = guest(M_EL0T | SSBS);
        assert_eq!(inject(&g, ExceptionKind::Sync).unwrap().pstate & SSBS, 0);
    }

    #[test]
    fn vbar_low_bits_are_ignored() {
        let g = GuestState {
            vbar_el1: 0x4000_07ff,
            ..guest(M_EL1H)
        };
        assert_eq!(inject(&g, ExceptionKind::Sync).unwrap().pc, 0x4000_0200);
    }

    #[test]
    fn aarch32_user_enters_at_0x600() {
        // AArch32 User, Z set, DIT (bit 21) and Thumb (bit 5) set.
        let old = 0x4000_0000 | DIT32 | 1 << 5 | M32_USR;
        let got = inject(&guest(old), ExceptionKind::Sync).unwrap();
        assert_eq!(got.pc, VBAR + 0x600);
        assert_eq!(got.spsr_el1, old, "SPSR_EL1 keeps the AArch32 layout");
        assert_eq!(got.pstate, 0x4000_0000 | DIT | DAIF | M_EL1H);
        assert_eq!(
            inject(&guest(M32_USR), ExceptionKind::Irq).unwrap().pc,
            VBAR + 0x680
        );
    }

    #[test]
    fn rejects_impossible_modes() {
        // AArch32 SVC (0b10011) and System (0b11111): EL1 is AArch64.
        for m in [0x13, 0x1f] {
            assert_eq!(
                inject(&guest(m), ExceptionKind::Sync),
                Err(InjectError::BadMode(m as u8))
            );
        }
        for m in [0b0001, 0b1000, 0b1001, 0b1100, 0b1101, 0b0110] {
            assert_eq!(
                inject(&guest(m), ExceptionKind::Sync),
                Err(InjectError::BadMode(m as u8))
            );
        }
        assert_eq!(
            InjectError::BadMode(9).to_string(),
            "cannot inject: guest PSTATE.M 0b01001 is not EL0t/EL1t/EL1h/AArch32 User"
        );
    }
}
