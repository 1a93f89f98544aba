//! Guest SGIs: decoding ICC_SGI0R_EL1 / ICC_SGI1R_EL1 / ICC_ASGI1R_EL1
//! writes (IHI 0069 §12.2, all three share one layout) and resolving their
//! targets against the VM's vCPU MPIDRs.
//!
//! Guest SGIs are purely virtual: the write traps (HCR_EL2.IMO/FMO), the vGIC
//! makes the SGI pending in the targets' private banks, and the returned
//! [`TargetSet`] says which vCPUs to kick.

/// Which register the guest wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgiGroup {
    /// ICC_SGI0R_EL1: Group 0 SGIs.
    G0,
    /// ICC_SGI1R_EL1: Group 1 SGIs (of the current Security state).
    G1,
    /// ICC_ASGI1R_EL1: Group 1 of the *other* Security state. With a single
    /// Security state (GICD_CTLR.DS=1) there is no other state; like KVM we
    /// treat it as Group 0.
    AltG1,
}

impl SgiGroup {
    /// The SGI generation register an MSR encoding (Op0, Op1, CRn, CRm,
    /// Op2) names (GICv3 spec 12.2: ICC_SGI1R_EL1 is S3_0_C12_C11_5,
    /// ICC_ASGI1R_EL1 S3_0_C12_C11_6, ICC_SGI0R_EL1 S3_0_C12_C11_7; Op1 is
    /// 0 for all three. The AArch32 forms differ in opc1 instead.)
    pub const fn from_encoding(enc: (u8, u8, u8, u8, u8)) -> Option<Self> {
        match enc {
            (3, 0, 12, 11, 5) => Some(Self::G1),
            (3, 0, 12, 11, 6) => Some(Self::AltG1),
            (3, 0, 12, 11, 7) => Some(Self::G0),
            _ => None,
        }
    }

    /// Whether an SGI configured in Group 1 (`group1`) at the target may be
    /// made pending by this register. ICC_SGI1R_EL1 reaches Group 1 SGIs
    /// only; ICC_SGI0R_EL1 and ICC_ASGI1R_EL1 reach Group 0 SGIs only.
    /// (KVM additionally lets SGI1R reach Group 0 SGIs; the GIC's forwarding
    /// tables for one Security state match the stricter rule used here.)
    pub const fn reaches(self, group1: bool) -> bool {
        match self {
            Self::G1 => group1,
            Self::G0 | Self::AltG1 => !group1,
        }
    }
}

/// The targets of an SGI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Targets {
    /// IRM=1: every PE but the sender.
    AllButSelf,
    /// IRM=0: the PEs with affinity Aff3.Aff2.Aff1.(RS*16 + n) for each bit n
    /// set in `list`.
    List {
        /// Aff3 [55:48].
        aff3: u8,
        /// Aff2 [39:32].
        aff2: u8,
        /// Aff1 [23:16].
        aff1: u8,
        /// RS [47:44]: Aff0 range selector (Aff0 = RS * 16 + bit).
        rs: u8,
        /// TargetList [15:0].
        list: u16,
    },
}

/// A decoded SGI generation request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgiRequest {
    /// INTID [27:24]: SGI 0-15.
    pub intid: u32,
    /// The register written.
    pub group: SgiGroup,
    /// Whom it goes to.
    pub targets: Targets,
}

impl SgiRequest {
    /// Decodes the 64-bit value the guest wrote to ICC_SGI{0,1}R_EL1 or
    /// ICC_ASGI1R_EL1 (IHI 0069 §12.2; the same layout for all three).
    pub const fn decode(value: u64, group: SgiGroup) -> Self {
        let intid = ((value >> 24) & 0xf) as u32;
        let targets = if value & (1 << 40) != 0 {
            Targets::AllButSelf
        } else {
            Targets::List {
                aff3: (value >> 48) as u8,
                aff2: (value >> 32) as u8,
                aff1: (value >> 16) as u8,
                rs: ((value >> 44) & 0xf) as u8,
                list: value as u16,
            }
        };
        Self {
            intid,
            group,
            targets,
        }
    }

    /// The vCPUs this request targets: `mpidrs[i]` is vCPU i's MPIDR (its
    /// Aff3 [39:32] and Aff2..Aff0 [23:0] are compared; other bits are
    /// ignored). Targets with no matching vCPU are ignored, as a GIC ignores
    /// affinities with no PE. The set can hold vCPUs 0..64; vCPUs beyond
    /// that cannot be targeted.
    pub fn resolve(&self, sender: usize, mpidrs: &[u64]) -> TargetSet {
        let mut set = TargetSet::EMPTY;
        match self.targets {
            Targets::AllButSelf => {
                for i in 0..mpidrs.len() {
                    if i != sender {
                        set.insert(i);
                    }
                }
            }
            Targets::List {
                aff3,
                aff2,
                aff1,
                rs,
                list,
            } => {
                for (i, &mpidr) in mpidrs.iter().enumerate() {
                    let m = Affinity::of(mpidr);
                    if m.aff3 != aff3 || m.aff2 != aff2 || m.aff1 != aff1 {
                        continue;
                    }
                    // Aff0 = RS * 16 + bit: only Aff0 values in this RS's range.
                    if m.aff0 >> 4 != rs {
                        continue;
                    }
                    if list & (1 << (m.aff0 & 0xf)) != 0 {
                        set.insert(i);
                    }
                }
            }
        }
        set
    }
}

/// The affinity fields of an MPIDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Affinity {
    /// Aff0 [7:0].
    pub aff0: u8,
    /// Aff1 [15:8].
    pub aff1: u8,
    /// Aff2 [23:16].
    pub aff2: u8,
    /// Aff3 [39:32].
    pub aff3: u8,
}

impl Affinity {
    /// The affinity fields of `mpidr`.
    pub const fn of(mpidr: u64) -> Self {
        Self {
            aff0: mpidr as u8,
            aff1: (mpidr >> 8) as u8,
            aff2: (mpidr >> 16) as u8,
            aff3: (mpidr >> 32) as u8,
        }
    }
}

/// A set of vCPU indices (0..64), e.g. the vCPUs to kick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetSet(pub u64);

impl TargetSet {
    /// No vCPU.
    pub const EMPTY: Self = Self(0);
    /// Largest vCPU count a set can describe.
    pub const CAPACITY: usize = 64;

    /// Adds `vcpu` (ignored beyond [`TargetSet::CAPACITY`]).
    pub fn insert(&mut self, vcpu: usize) {
        if vcpu < Self::CAPACITY {
            self.0 |= 1 << vcpu;
        }
    }

    /// Whether `vcpu` is in the set. Used by the tests and the SGI fuzz
    /// target.
    #[allow(dead_code)]
    pub const fn contains(self, vcpu: usize) -> bool {
        vcpu < Self::CAPACITY && self.0 & (1 << vcpu) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The members, lowest first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        // Set bits only, lowest first: a kick to one vCPU should not cost
        // 64 tests.
        let mut bits = self.0;
        core::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(i)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// vCPU i: Aff0 = i % 16, Aff1 = i / 16 (as vm::guest assigns them).
    fn mpidrs(n: usize) -> Vec<u64> {
        (0..n as u64).map(|i| ((i / 16) << 8) | (i % 16)).collect()
    }

    /// Found by guest-test's hostile mode: ICC_ASGI1R_EL1 and
    /// ICC_SGI0R_EL1 were matched with Op1 = 1 and 2 (the AArch32 opc1
    /// values), so a guest's write to either got UNDEFINED.
    #[test]
    fn sgi_register_encodings() {
        assert_eq!(
            SgiGroup::from_encoding((3, 0, 12, 11, 5)),
            Some(SgiGroup::G1)
        );
        assert_eq!(
            SgiGroup::from_encoding((3, 0, 12, 11, 6)),
            Some(SgiGroup::AltG1)
        );
        assert_eq!(
            SgiGroup::from_encoding((3, 0, 12, 11, 7)),
            Some(SgiGroup::G0)
        );
        assert_eq!(SgiGroup::from_encoding((3, 1, 12, 11, 6)), None);
        assert_eq!(SgiGroup::from_encoding((3, 2, 12, 11, 7)), None);
        assert_eq!(SgiGroup::from_encoding((3, 0, 12, 12, 5)), None);
    }

    #[test]
    fn decodes_fields() {
        let v = 0x00a0_0003 | 5 << 24 | 0x12 << 32 | 0x34 << 48 | 0x7 << 44;
        let req = SgiRequest::decode(v, SgiGroup::G1);
        assert_eq!(req.intid, 5);
        assert_eq!(
            req.targets,
            Targets::List {
                aff3: 0x34,
                aff2: 0x12,
                aff1: 0xa0,
                rs: 7,
                list: 3
            }
        );
        let req = SgiRequest::decode(1 << 40 | 0xffff | 15 << 24, SgiGroup::G0);
        assert_eq!(req.targets, Targets::AllButSelf);
        assert_eq!(req.intid, 15);
    }

    #[test]
    fn irm_targets_everyone_but_the_sender() {
        let req = SgiRequest::decode(1 << 40, SgiGroup::G1);
        assert_eq!(req.resolve(1, &mpidrs(4)).0, 0b1101);
        assert_eq!(req.resolve(0, &mpidrs(1)).0, 0);
    }

    #[test]
    fn list_targets_by_affinity() {
        let m = mpidrs(20); // vCPUs 16..20 are Aff1=1
        let req = SgiRequest::decode(0b1010, SgiGroup::G1);
        assert_eq!(req.resolve(0, &m).iter().collect::<Vec<_>>(), [1, 3]);
        let req = SgiRequest::decode(1 << 16 | 0b1_0001, SgiGroup::G1);
        assert_eq!(req.resolve(0, &m).iter().collect::<Vec<_>>(), [16]); // Aff0 4 does not exist at Aff1=1
                                                                         // Sending to oneself is allowed with a list.
        let req = SgiRequest::decode(1, SgiGroup::G1);
        assert!(req.resolve(0, &m).contains(0));
    }

    #[test]
    fn targets_outside_the_vm_are_ignored() {
        let m = mpidrs(4);
        // Aff0 4..15 do not exist.
        assert!(SgiRequest::decode(0xfff0, SgiGroup::G1)
            .resolve(0, &m)
            .is_empty());
        // RS=1 means Aff0 16..31: none here.
        assert!(SgiRequest::decode(1 << 44 | 0xffff, SgiGroup::G1)
            .resolve(0, &m)
            .is_empty());
        // Other Aff1/Aff2/Aff3.
        assert!(SgiRequest::decode(1 << 16 | 1, SgiGroup::G1)
            .resolve(0, &m)
            .is_empty());
        assert!(SgiRequest::decode(1 << 32 | 1, SgiGroup::G1)
            .resolve(0, &m)
            .is_empty());
        assert!(SgiRequest::decode(1 << 48 | 1, SgiGroup::G1)
            .resolve(0, &m)
            .is_empty());
    }

    #[test]
    fn rs_selects_the_aff0_range() {
        let m: Vec<u64> = (0..32u64).collect(); // Aff0 0..31 at Aff1=0
        let req = SgiRequest::decode(1 << 44 | 1 << 2, SgiGroup::G1);
        assert_eq!(req.resolve(0, &m).iter().collect::<Vec<_>>(), [18]);
    }

    #[test]
    fn group_filter() {
        assert!(SgiGroup::G1.reaches(true));
        assert!(!SgiGroup::G1.reaches(false));
        assert!(SgiGroup::G0.reaches(false));
        assert!(!SgiGroup::G0.reaches(true));
        assert!(SgiGroup::AltG1.reaches(false));
        assert!(!SgiGroup::AltG1.reaches(true));
    }

    #[test]
    fn target_set_ignores_out_of_range() {
        let mut s = TargetSet::EMPTY;
        s.insert(64);
        s.insert(usize::MAX);
        assert!(s.is_empty());
        assert!(!s.contains(100));
        s.insert(63);
        assert_eq!(s.iter().collect::<Vec<_>>(), [63]);
    }
}
