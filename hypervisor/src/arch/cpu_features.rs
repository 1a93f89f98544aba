//! The guest CPU feature policy: what a guest's CPU claims to have.
//!
//! Every ID register a guest can read (the feature ID space, op0 = 3,
//! op1 = 0, CRn = 0, CRm = 1..7, which HCR_EL2.TID3 traps; Arm ARM D23.3.1
//! and the HCR_EL2.TID3 description) is computed here once from the real
//! CPU's values and one table. For each 4-bit field the table says either
//! "works for the guest" (the host value, at most a capped version) or
//! "hidden" (a fixed value meaning absent). A field that the table does
//! not know is hidden: nmivisor cannot promise that a feature it has never
//! heard of works, because many need an EL2 enable (HCRX_EL2, CPTR_EL2,
//! HCR_EL2) before the guest can use them.
//!
//! [`GuestFeatures`] then names the shown features that need such an
//! enable, so that `arch::features` programs exactly those and a feature
//! shown is a feature that works. `docs/cpu-features.md` has the table with
//! the reasons.
//!
//! Pure: the boot CPU reads the ID space, the trap path answers from
//! [`IdView`], and the host tests check the policy.

/// The readable encodings of the feature ID space: CRm 1..=7, op2 0..=7.
pub const ID_SPACE_LEN: usize = 7 * 8;

/// The index of ID register (op0 3, op1 0, CRn 0, `crm`, `op2`) in an
/// [`IdSpace`], if it lies in the space TID3 traps.
pub fn id_index(crm: u8, op2: u8) -> Option<usize> {
    (1..=7)
        .contains(&crm)
        .then(|| usize::from(crm - 1) * 8 + usize::from(op2 & 7))
}

/// Raw values of the whole feature ID space (unallocated encodings read as
/// zero, Arm ARM D23.3.1).
pub type IdSpace = [u64; ID_SPACE_LEN];

/// What a shown feature does with a host field's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// The host value: the feature works without EL2's help, or EL2
    /// enables it ([`GuestFeatures`]).
    Pass,
    /// The host value, but at most this (for fields where a higher value
    /// adds something nmivisor does not support).
    Cap(u8),
    /// Always this value (e.g. "EL1 is AArch64 only", or a signed field's
    /// "not implemented").
    Fixed(u8),
}

/// One 4-bit field of an ID register. Fields not listed read as 0.
struct Field {
    lsb: u8,
    rule: Rule,
}

const fn pass(lsb: u8) -> Field {
    Field {
        lsb,
        rule: Rule::Pass,
    }
}
const fn cap(lsb: u8, max: u8) -> Field {
    Field {
        lsb,
        rule: Rule::Cap(max),
    }
}
const fn fixed(lsb: u8, v: u8) -> Field {
    Field {
        lsb,
        rule: Rule::Fixed(v),
    }
}

/// The policy of one register, by encoding.
struct RegPolicy {
    crm: u8,
    op2: u8,
    fields: &'static [Field],
}

/// Largest PARange (ID_AA64MMFR0_EL1 [3:0]) a guest sees: 1, 36 bits, the
/// largest encoding within stage 2's 39-bit IPA space (`mm::stage2`).
pub const GUEST_PARANGE_MAX: u8 = 1;

/// The AArch64 registers. A field named in a comment as hidden is simply
/// absent from its list, so it reads as 0 ("not implemented").
static AARCH64: &[RegPolicy] = &[
    // ID_AA64PFR0_EL1 (D23.2.79)
    RegPolicy {
        crm: 4,
        op2: 0,
        fields: &[
            pass(0),     // EL0: AArch64, and AArch32 if the CPU has it
            fixed(4, 1), // EL1: AArch64 only (HCR_EL2.RW = 1)
            // EL2 [11:8], EL3 [15:12]: hidden, a guest has neither
            pass(16),     // FP
            pass(20),     // AdvSIMD
            fixed(24, 1), // GIC: the vGIC's GICv3 system registers
            cap(28, 1),   // RAS: FEAT_RAS; its error records are RAZ/WI (TERR)
            pass(32),     // SVE: CPTR_EL2.TZ clear, ZCR_EL2 at the maximum
            // SEL2 [39:36], MPAM [43:40], AMU [47:44] (CPTR_EL2.TAM): hidden
            pass(48), // DIT
            // RME [55:52]: hidden
            pass(56), // CSV2
            pass(60), // CSV3
        ],
    },
    // ID_AA64PFR1_EL1 (D23.2.80)
    RegPolicy {
        crm: 4,
        op2: 1,
        fields: &[
            pass(0), // BT
            pass(4), // SSBS
            // MTE [11:8]: hidden (no tag memory, HCR_EL2.ATA clear)
            // RAS_frac [15:12], MPAM_frac [19:16]: hidden with their parents
            // SME [27:24]: hidden (CPTR_EL2.TSM set), see docs/cpu-features.md
            // RNDR_trap [31:28]: hidden
            pass(32), // CSV2_frac
                      // NMI [39:36]: hidden, guests get GIC pseudo-NMIs (ICV_PMR)
                      // MTE_frac, GCS, THE, MTEX, DF2, PFAR: hidden
        ],
    },
    // ID_AA64PFR2_EL1: MTE extensions, FPMR: all hidden.
    RegPolicy {
        crm: 4,
        op2: 2,
        fields: &[],
    },
    // ID_AA64ZFR0_EL1 (D23.2.82): SVE instruction subsets. Zeroed below
    // when SVE itself is hidden.
    RegPolicy {
        crm: 4,
        op2: 4,
        fields: &[
            pass(0),  // SVEver
            pass(4),  // AES
            pass(16), // BitPerm
            pass(20), // BF16
            pass(24), // B16B16
            pass(32), // SHA3
            pass(40), // SM4
            pass(44), // I8MM
            pass(52), // F32MM
            pass(56), // F64MM
        ],
    },
    // ID_AA64SMFR0_EL1: SME is hidden.
    RegPolicy {
        crm: 4,
        op2: 5,
        fields: &[],
    },
    // ID_AA64FPFR0_EL1: FP8 needs FPMR, hidden.
    RegPolicy {
        crm: 4,
        op2: 7,
        fields: &[],
    },
    // ID_AA64DFR0_EL1 (D23.2.59)
    RegPolicy {
        crm: 5,
        op2: 0,
        fields: &[
            pass(0), // DebugVer
            // TraceVer [7:4]: hidden (CPTR_EL2.TTA)
            pass(8),  // PMUVer: the guest owns the PMU (MDCR_EL2.HPMN = N)
            pass(12), // BRPs
            pass(16), // PMSS
            pass(20), // WRPs
            pass(28), // CTX_CMPs
            // PMSVer [35:32] (SPE): hidden
            pass(36), // DoubleLock
            // TraceFilt, TraceBuffer: hidden
            pass(48), // MTPMU
            // BRBE, ExtTrcBuff: hidden
            pass(60), // HPMN0
        ],
    },
    // ID_AA64DFR1_EL1, AFR0, AFR1: hidden.
    RegPolicy {
        crm: 5,
        op2: 1,
        fields: &[],
    },
    RegPolicy {
        crm: 5,
        op2: 4,
        fields: &[],
    },
    RegPolicy {
        crm: 5,
        op2: 5,
        fields: &[],
    },
    // ID_AA64ISAR0_EL1 (D23.2.62): instructions that need nothing from EL2.
    RegPolicy {
        crm: 6,
        op2: 0,
        fields: &[
            pass(4),  // AES
            pass(8),  // SHA1
            pass(12), // SHA2
            pass(16), // CRC32
            pass(20), // Atomic
            // TME [27:24]: hidden
            pass(28), // RDM
            pass(32), // SHA3
            pass(36), // SM3
            pass(40), // SM4
            pass(44), // DP
            pass(48), // FHM
            pass(52), // TS
            pass(56), // TLB
            pass(60), // RNDR
        ],
    },
    // ID_AA64ISAR1_EL1 (D23.2.63)
    RegPolicy {
        crm: 6,
        op2: 1,
        fields: &[
            pass(0),  // DPB
            pass(4),  // APA: PAuth, HCR_EL2.API/APK set
            pass(8),  // API
            pass(12), // JSCVT
            pass(16), // FCMA
            pass(20), // LRCPC
            pass(24), // GPA
            pass(28), // GPI
            pass(32), // FRINTTS
            pass(36), // SB
            pass(40), // SPECRES
            pass(44), // BF16
            pass(48), // DGH
            pass(52), // I8MM
            pass(56), // XS
                      // LS64 [63:60]: hidden (HCRX_EL2.EnALS/EnAS0/EnASR clear)
        ],
    },
    // ID_AA64ISAR2_EL1 (D23.2.64)
    RegPolicy {
        crm: 6,
        op2: 2,
        fields: &[
            // WFxT [3:0]: hidden, WFIT/WFET trap as WFI/WFE (TWI) without
            // their timeout
            pass(4),  // RPRES
            pass(8),  // GPA3
            pass(12), // APA3
            pass(16), // MOPS: HCRX_EL2.MSCEn set
            pass(20), // BC
            pass(24), // PAC_frac
            pass(28), // CLRBHB
            // SYSREG_128, SYSINSTR_128: hidden
            pass(40), // PRFMSLC
            pass(48), // RPRFM
            pass(52), // CSSC
            pass(56), // LUT
                      // ATS1A [63:60]: hidden
        ],
    },
    // ID_AA64ISAR3_EL1: hidden.
    RegPolicy {
        crm: 6,
        op2: 3,
        fields: &[],
    },
    // ID_AA64MMFR0_EL1 (D23.2.71)
    RegPolicy {
        crm: 7,
        op2: 0,
        fields: &[
            cap(0, GUEST_PARANGE_MAX), // PARange: within stage 2's IPA space
            pass(4),                   // ASIDBits
            pass(8),                   // BigEnd
            pass(12),                  // SNSMem
            pass(16),                  // BigEndEL0
            pass(20),                  // TGran16
            pass(24),                  // TGran64
            pass(28),                  // TGran4
            // TGran*_2 [43:32]: 0, "as the stage 1 field"; a guest has no
            // stage 2 of its own
            pass(44), // ExS
            // FGT [59:56]: hidden, no EL2 in the guest
            cap(60, 1), // ECV: the EL0/EL1 part only
        ],
    },
    // ID_AA64MMFR1_EL1 (D23.2.72)
    RegPolicy {
        crm: 7,
        op2: 1,
        fields: &[
            pass(0), // HAFDBS
            // VMIDBits, VH: hidden, no EL2 in the guest
            pass(12), // HPDS
            // LO [19:16]: hidden (HCR_EL2.TLOR)
            pass(20), // PAN
            pass(24), // SpecSEI
            // XNX, TWED: hidden (stage 2 and EL2 controls)
            pass(36), // ETS
            // HCX [43:40]: hidden, no EL2 in the guest
            pass(44), // AFP
            pass(48), // nTLBPA
            pass(52), // TIDCP1
            pass(56), // CMOW
            pass(60), // ECBHB
        ],
    },
    // ID_AA64MMFR2_EL1 (D23.2.73)
    RegPolicy {
        crm: 7,
        op2: 2,
        fields: &[
            pass(0),  // CnP
            pass(4),  // UAO
            pass(8),  // LSM
            pass(12), // IESB
            pass(16), // VARange
            pass(20), // CCIDX
            // NV [27:24]: hidden
            pass(28), // ST
            pass(32), // AT
            pass(36), // IDS
            // FWB [43:40]: hidden (stage 2)
            pass(48), // TTL
            pass(52), // BBM
            // EVT [59:56]: hidden (EL2 traps)
            pass(60), // E0PD
        ],
    },
    // ID_AA64MMFR3_EL1: hidden. TCR2_EL1 and SCTLR2_EL1 (TCRX, SCTLRX)
    // would need HCRX_EL2.TCR2En/SCTLR2En, and S1PIE/S1POE build on TCR2;
    // no QEMU the suite runs implements them, so nothing could show that
    // they work under nmivisor. Shown once a guest-test case covers them.
    RegPolicy {
        crm: 7,
        op2: 3,
        fields: &[],
    },
    // ID_AA64MMFR4_EL1: EL2 features, hidden.
    RegPolicy {
        crm: 7,
        op2: 4,
        fields: &[],
    },
];

/// ID_PFR1_EL1 fields hidden even when AArch32 EL0 is shown: Security
/// [7:4], Virtualization [15:12], Sec_frac [19:16], Virt_frac [23:20].
const ID_PFR1_HIDDEN: u64 = 0x00ff_f0f0;

/// Field `lsb` of `v`.
fn field(v: u64, lsb: u8) -> u8 {
    ((v >> lsb) & 0xf) as u8
}

/// Features the guest view shows that need EL2 to enable them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestFeatures {
    /// SVE: CPTR_EL2.TZ clear, ZCR_EL2.LEN at the maximum.
    pub sve: bool,
    /// Pointer authentication: HCR_EL2.API and APK set.
    pub pauth: bool,
    /// FEAT_MOPS: HCRX_EL2.MSCEn set.
    pub mops: bool,
    /// The real CPU has HCRX_EL2 (FEAT_HCX).
    pub hcx: bool,
    /// The real CPU has FEAT_RAS (HCR_EL2.TERR exists).
    pub ras: bool,
    /// The real CPU has FEAT_LOR (HCR_EL2.TLOR exists).
    pub lor: bool,
    /// The real CPU has SME (CPTR_EL2.TSM keeps it trapped, SMCR_EL2 exists).
    pub host_sme: bool,
    /// The real CPU has AMU (CPTR_EL2.TAM traps it).
    pub host_amu: bool,
    /// The real CPU's PMU is PMUv3p1 or later (MDCR_EL2.HPMD exists).
    pub host_pmuv3p1: bool,
    /// The real CPU has SPE (MDCR_EL2.TPMS exists).
    pub host_spe: bool,
    /// The real CPU has FEAT_TRF (MDCR_EL2.TTRF exists).
    pub host_trf: bool,
}

/// MDCR_EL2 bits (Arm ARM D23.2.107).
pub mod mdcr {
    pub const TDRA: u64 = 1 << 11;
    pub const TPMS: u64 = 1 << 14;
    pub const HPMD: u64 = 1 << 17;
    pub const TTRF: u64 = 1 << 19;
}

/// HCRX_EL2 bits (Arm ARM D23.2.49).
pub mod hcrx {
    pub const MSCEN: u64 = 1 << 11;
}

impl GuestFeatures {
    /// MDCR_EL2 for guests, apart from HPMN: the guest's PMU counters do
    /// not count at EL2 (HPMD), its view of the debug ROM address is
    /// trapped (TDRA, answered RAZ), and hidden SPE and trace filter
    /// registers trap (TPMS, TTRF) where the CPU has them.
    pub fn mdcr(&self) -> u64 {
        let mut v = mdcr::TDRA;
        if self.host_pmuv3p1 {
            v |= mdcr::HPMD;
        }
        if self.host_spe {
            v |= mdcr::TPMS;
        }
        if self.host_trf {
            v |= mdcr::TTRF;
        }
        v
    }

    /// HCRX_EL2 for guests: enables for the shown features, everything else
    /// 0 (LS64, FPMR, GCS, SME priority mapping... stay trapped or off).
    pub fn hcrx(&self) -> u64 {
        let mut v = 0;
        if self.mops {
            v |= hcrx::MSCEN;
        }
        v
    }
}

/// The guest's view of the feature ID space, and what it implies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdView {
    regs: IdSpace,
    pub features: GuestFeatures,
}

impl IdView {
    /// Applies the policy to the real CPU's ID space.
    pub fn new(host: &IdSpace) -> Self {
        let mut regs = [0u64; ID_SPACE_LEN];
        for p in AARCH64 {
            let Some(i) = id_index(p.crm, p.op2) else {
                continue;
            };
            regs[i] = apply(host[i], p.fields);
        }
        let reg = |regs: &IdSpace, crm, op2| id_index(crm, op2).map_or(0, |i| regs[i]);
        let host_reg = |crm, op2| reg(host, crm, op2);
        let pfr0 = reg(&regs, 4, 0);
        // AArch32 ID registers (CRm 1..=3) describe the AArch32 EL0
        // instruction sets, which need nothing from EL2: shown as they are
        // when AArch32 EL0 is, else zero.
        if field(pfr0, 0) == 2 {
            regs[..3 * 8].copy_from_slice(&host[..3 * 8]);
            if let Some(i) = id_index(1, 1) {
                regs[i] &= !ID_PFR1_HIDDEN;
            }
        }
        let sve = field(pfr0, 32) != 0;
        if !sve {
            if let Some(i) = id_index(4, 4) {
                regs[i] = 0;
            }
        }
        let isar1 = reg(&regs, 6, 1);
        let isar2 = reg(&regs, 6, 2);
        let pauth = [field(isar1, 4), field(isar1, 8), field(isar2, 12)]
            .iter()
            .any(|&f| f != 0);
        let host_mmfr1 = host_reg(7, 1);
        let features = GuestFeatures {
            sve,
            pauth,
            mops: field(isar2, 16) != 0,
            hcx: field(host_mmfr1, 40) != 0,
            ras: field(host_reg(4, 0), 28) != 0,
            lor: field(host_mmfr1, 16) != 0,
            host_sme: field(host_reg(4, 1), 24) != 0,
            host_amu: field(host_reg(4, 0), 44) != 0,
            host_pmuv3p1: matches!(field(host_reg(5, 0), 8), 4..=0xe),
            host_spe: field(host_reg(5, 0), 32) != 0,
            host_trf: field(host_reg(5, 0), 40) != 0,
        };
        let mut view = IdView { regs, features };
        // Features whose EL2 enable lives in HCRX_EL2 cannot work without it.
        if !view.features.hcx {
            view.hide(6, 2, 16);
            view.features.mops = false;
        }
        view
    }

    fn hide(&mut self, crm: u8, op2: u8, lsb: u8) {
        if let Some(i) = id_index(crm, op2) {
            self.regs[i] &= !(0xf << lsb);
        }
    }

    /// The value a guest reads from ID register (3, 0, 0, `crm`, `op2`),
    /// or `None` outside the trapped ID space.
    pub fn read(&self, crm: u8, op2: u8) -> Option<u64> {
        id_index(crm, op2).map(|i| self.regs[i])
    }
}

/// Builds a register from the host value and its field rules.
fn apply(host: u64, fields: &[Field]) -> u64 {
    fields.iter().fold(0, |v, f| {
        let h = field(host, f.lsb);
        let g = match f.rule {
            Rule::Pass => h,
            Rule::Cap(max) => h.min(max),
            Rule::Fixed(x) => x,
        };
        v | u64::from(g) << f.lsb
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ID registers of QEMU 7.2's `-cpu max` (read at EL2 by nmivisor),
    /// with SME (ID_AA64PFR1 [27:24] = 1) added as on QEMU 10.
    fn qemu_max() -> IdSpace {
        let mut s = [0u64; ID_SPACE_LEN];
        let mut set = |crm, op2, v| s[id_index(crm, op2).unwrap()] = v;
        set(1, 0, 0x0000_0131); // ID_PFR0
        set(1, 1, 0x1001_1011); // ID_PFR1
        set(3, 0, 0x1011_1111); // MVFR0
        set(4, 0, 0x1201_1111_1111_2222); // ID_AA64PFR0: EL0..3 AArch32, SVE=1, RAS=1, GIC=1
        set(4, 1, 0x0000_0001_0100_0121); // BT=1, SSBS=2, MTE=1, SME=1, CSV2_frac=1
        set(4, 4, 0x0100_1001_0010_0021); // ZFR0
        set(4, 5, 0x8000_0000_0000_0000); // SMFR0.FA64
        set(5, 0, 0x1000_0000_f010_f509); // DFR0
        set(6, 0, 0x0221_1110_1021_2120); // ISAR0
        set(6, 1, 0x0011_1112_1121_1051); // ISAR1 (APA=5: QARMA5)
        set(6, 2, 0x0000_0000_0001_0001); // ISAR2 (WFxT, MOPS)
        set(7, 0, 0x0000_1000_0010_1125); // MMFR0 (PARange 5, 48 bits)
        set(7, 1, 0x0000_1111_1112_1122); // MMFR1 (HCX=1, LO=1)
        set(7, 2, 0x1001_0011_0011_0011); // MMFR2
        set(7, 3, 0x0000_0000_0000_1011); // MMFR3: TCRX, SCTLRX, S1POE
        s
    }

    #[test]
    fn hidden_and_shown_fields() {
        let v = IdView::new(&qemu_max());
        let pfr0 = v.read(4, 0).unwrap();
        assert_eq!(field(pfr0, 0), 2, "AArch32 EL0 shown");
        assert_eq!(field(pfr0, 4), 1, "EL1 AArch64 only");
        assert_eq!(field(pfr0, 8), 0, "no EL2");
        assert_eq!(field(pfr0, 12), 0, "no EL3");
        assert_eq!(field(pfr0, 32), 1, "SVE shown");
        let pfr1 = v.read(4, 1).unwrap();
        assert_eq!(field(pfr1, 8), 0, "MTE hidden");
        assert_eq!(field(pfr1, 24), 0, "SME hidden");
        assert_eq!(field(pfr1, 0), 1, "BTI shown");
        assert_eq!(v.read(4, 5), Some(0), "SMFR0 hidden with SME");
        assert_eq!(
            v.read(4, 4),
            qemu_max().get(id_index(4, 4).unwrap()).copied()
        );
        assert_eq!(field(v.read(6, 2).unwrap(), 0), 0, "WFxT hidden");
        assert_eq!(field(v.read(6, 2).unwrap(), 16), 1, "MOPS shown");
        assert_eq!(field(v.read(7, 1).unwrap(), 16), 0, "LOR hidden");
        assert_eq!(field(v.read(7, 1).unwrap(), 40), 0, "HCX hidden");
        assert_eq!(field(v.read(7, 0).unwrap(), 0), GUEST_PARANGE_MAX);
    }

    #[test]
    fn unknown_fields_and_registers_read_zero() {
        let host = [u64::MAX; ID_SPACE_LEN];
        let v = IdView::new(&host);
        // An unallocated encoding and a register the table does not name.
        assert_eq!(v.read(7, 7), Some(0));
        assert_eq!(v.read(5, 2), Some(0));
        // Every AArch64 field set in the view is one the table lists.
        for p in AARCH64 {
            let allowed = p.fields.iter().fold(0u64, |m, f| m | 0xf << f.lsb);
            let got = v.read(p.crm, p.op2).unwrap();
            assert_eq!(got & !allowed, 0, "crm {} op2 {}: {got:#x}", p.crm, p.op2);
        }
    }

    #[test]
    fn outside_the_id_space() {
        let v = IdView::new(&qemu_max());
        assert_eq!(v.read(0, 0), None);
        assert_eq!(v.read(8, 0), None);
    }

    #[test]
    fn enables_follow_the_view() {
        let f = IdView::new(&qemu_max()).features;
        assert!(f.sve && f.pauth && f.mops && f.hcx);
        assert!(f.host_sme && f.ras && f.lor);
        // DFR0.PMUVer = 5 (PMUv3p4) in the QEMU values: HPMD exists.
        assert_eq!(f.mdcr(), mdcr::TDRA | mdcr::HPMD);
        assert_eq!(f.hcrx(), hcrx::MSCEN);
    }

    #[test]
    fn no_hcrx_hides_what_needs_it() {
        let mut host = qemu_max();
        host[id_index(7, 1).unwrap()] &= !(0xf << 40);
        let v = IdView::new(&host);
        assert_eq!(field(v.read(6, 2).unwrap(), 16), 0, "MOPS hidden");
        assert_eq!(v.read(7, 3), Some(0), "MMFR3 is hidden in any case");
        assert_eq!(v.features.hcrx(), 0);
    }

    #[test]
    fn sve_hidden_hides_its_subsets() {
        let mut host = qemu_max();
        host[id_index(4, 0).unwrap()] &= !(0xf << 32);
        let v = IdView::new(&host);
        assert_eq!(v.read(4, 4), Some(0));
        assert!(!v.features.sve);
    }

    #[test]
    fn aarch32_registers_follow_el0() {
        let v = IdView::new(&qemu_max());
        assert_eq!(v.read(3, 0), Some(0x1011_1111), "MVFR0 shown");
        assert_eq!(v.read(1, 1), Some(0x1001_1011 & !ID_PFR1_HIDDEN));
        let mut host = qemu_max();
        host[id_index(4, 0).unwrap()] = (host[id_index(4, 0).unwrap()] & !0xf) | 1;
        let v = IdView::new(&host);
        assert_eq!(v.read(3, 0), Some(0), "no AArch32 EL0: AArch32 IDs hidden");
    }

    #[test]
    fn a_cpu_without_a_feature_never_gains_it() {
        let none = IdView::new(&[0; ID_SPACE_LEN]);
        assert_eq!(none.features, GuestFeatures::default());
        let pfr0 = none.read(4, 0).unwrap();
        // Only the fixed fields (EL1 = AArch64, GIC = 1) are set.
        assert_eq!(pfr0, 1 << 4 | 1 << 24);
    }
}
