//! Trapped system-register accesses that nmivisor answers itself (besides
//! the vGIC's SGI registers): the feature ID space (HCR_EL2.TID3), ACTLR_EL1
//! (TACR), ICC_SRE_EL1 (ICC_SRE_EL2.Enable clear) and the RAS error records
//! (TERR). Everything else trapped is
//! UNDEFINED for the guest: IMPLEMENTATION DEFINED registers (TIDCP), the
//! LORegion registers (TLOR, LOR hidden), SME and AMU registers.
//!
//! Pure: the trap path moves the answer into the guest's register.

use crate::arch::cpu_features::IdView;
use crate::arch::esr::SysRegAccess;

/// What a trapped access does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A read that returns this value.
    Read(u64),
    /// A write that is ignored (WI).
    Ignored,
    /// Not a register answered here.
    NotMine,
}

/// ACTLR_EL1 (3, 0, 1, 0, 1): IMPLEMENTATION DEFINED; RAZ/WI, so a guest
/// can neither see nor change the real CPU's auxiliary controls.
const ACTLR_EL1: (u8, u8, u8, u8, u8) = (3, 0, 1, 0, 1);

/// ICC_SRE_EL1 (3, 0, 12, 12, 5), trapped by ICC_SRE_EL2.Enable = 0: reads
/// SRE, DFB and DIB set (GICv3 spec 12.2.15), the only configuration the
/// vGIC offers; writes are ignored.
const ICC_SRE_EL1: (u8, u8, u8, u8, u8) = (3, 0, 12, 12, 5);
const ICC_SRE_EL1_VALUE: u64 = 0b111;

/// Answers `a`, or [`Answer::NotMine`].
pub fn emulate(a: &SysRegAccess, ids: &IdView) -> Answer {
    let raz_wi = || {
        if a.read {
            Answer::Read(0)
        } else {
            Answer::Ignored
        }
    };
    match a.encoding() {
        // The feature ID space: read-only. A write to it is UNDEFINED at
        // EL1 and never traps here; answer NotMine should one arrive.
        (3, 0, 0, crm, op2) if a.read => ids.read(crm, op2).map_or(Answer::NotMine, Answer::Read),
        ACTLR_EL1 => raz_wi(),
        // MDRAR_EL1 (2,0,1,0,0), trapped by MDCR_EL2.TDRA: no debug ROM.
        (2, 0, 1, 0, 0) => raz_wi(),
        ICC_SRE_EL1 if a.read => Answer::Read(ICC_SRE_EL1_VALUE),
        ICC_SRE_EL1 => Answer::Ignored,
        // RAS error records (Arm ARM, RAS System registers; trapped by
        // HCR_EL2.TERR): ERRIDR_EL1 (3,0,5,3,0) reads 0, "no error records",
        // so ERRSELR_EL1 and every ERX* register (CRn 5, CRm 3..=5) are
        // RAZ/WI.
        (3, 0, 5, 3, 0..=1) | (3, 0, 5, 4, _) | (3, 0, 5, 5, 0..=3) => raz_wi(),
        _ => Answer::NotMine,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::cpu_features::{id_index, ID_SPACE_LEN};

    fn access(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8, read: bool) -> SysRegAccess {
        SysRegAccess {
            op0,
            op1,
            crn,
            crm,
            op2,
            rt: 0,
            read,
        }
    }

    fn ids() -> IdView {
        let mut host = [0u64; ID_SPACE_LEN];
        host[id_index(4, 0).unwrap()] = 0x1111; // EL0..EL3 AArch64
        IdView::new(&host)
    }

    #[test]
    fn id_registers_read_the_view() {
        let v = ids();
        assert_eq!(
            emulate(&access(3, 0, 0, 4, 0, true), &v),
            Answer::Read(v.read(4, 0).unwrap())
        );
        assert_eq!(emulate(&access(3, 0, 0, 7, 7, true), &v), Answer::Read(0));
        // MIDR_EL1 (CRm 0) is not in the trapped space.
        assert_eq!(emulate(&access(3, 0, 0, 0, 0, true), &v), Answer::NotMine);
        assert_eq!(emulate(&access(3, 0, 0, 4, 0, false), &v), Answer::NotMine);
    }

    #[test]
    fn actlr_and_ras_are_raz_wi() {
        let v = ids();
        for (crn, crm, op2) in [(1, 0, 1), (5, 3, 0), (5, 3, 1), (5, 4, 2), (5, 5, 3)] {
            assert_eq!(
                emulate(&access(3, 0, crn, crm, op2, true), &v),
                Answer::Read(0)
            );
            assert_eq!(
                emulate(&access(3, 0, crn, crm, op2, false), &v),
                Answer::Ignored
            );
        }
    }

    #[test]
    fn icc_sre_el1_stays_on() {
        let v = ids();
        assert_eq!(
            emulate(&access(3, 0, 12, 12, 5, true), &v),
            Answer::Read(0b111)
        );
        assert_eq!(
            emulate(&access(3, 0, 12, 12, 5, false), &v),
            Answer::Ignored
        );
    }

    #[test]
    fn others_are_not_answered() {
        let v = ids();
        // IMPLEMENTATION DEFINED (CRn 11 / 15) and LORC_EL1 (3,0,10,4,3).
        for a in [
            access(3, 0, 15, 2, 0, true),
            access(3, 1, 11, 0, 0, false),
            access(3, 0, 10, 4, 3, true),
        ] {
            assert_eq!(emulate(&a, &v), Answer::NotMine);
        }
    }
}
