//! The list-register encoding (IHI 0069 §12.5, ICH_LR<n>_EL2) and the
//! ICH_HCR_EL2 bits the LR scheduler asks for.
//!
//! The hardware glue moves these `u64`s to and from the real registers; the
//! vGIC only builds and decodes them.

/// Most list registers an implementation can have (ICH_VTR_EL2.ListRegs is
/// 4 bits: up to 16). QEMU has 4.
pub const MAX_LRS: usize = 16;

/// ICH_HCR_EL2.En: enables the virtual CPU interface.
pub const HCR_EN: u64 = 1 << 0;
/// ICH_HCR_EL2.UIE: maintenance interrupt while at most one LR is valid.
/// The scheduler never asks for it; the tests check that.
#[cfg(test)]
pub const HCR_UIE: u64 = 1 << 1;
/// ICH_HCR_EL2.LRENPIE: maintenance interrupt while EOIcount is non-zero.
pub const HCR_LRENPIE: u64 = 1 << 2;
/// ICH_HCR_EL2.NPIE: maintenance interrupt while no LR is pending.
pub const HCR_NPIE: u64 = 1 << 3;
/// ICH_HCR_EL2.EOIcount [31:27]: EOIs (EOImode=0) or DIRs that found no
/// matching LR.
pub const HCR_EOICOUNT_SHIFT: u32 = 27;
/// Mask of ICH_HCR_EL2.EOIcount once shifted down.
pub const HCR_EOICOUNT_MASK: u64 = 0x1f;

/// ICH_HCR_EL2.EOIcount of an ICH_HCR_EL2 value.
pub const fn hcr_eoi_count(hcr: u64) -> u32 {
    ((hcr >> HCR_EOICOUNT_SHIFT) & HCR_EOICOUNT_MASK) as u32
}

/// The State field of a list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrState {
    /// 0b00: the LR holds nothing.
    Invalid,
    /// 0b01: pending.
    Pending,
    /// 0b10: active.
    Active,
    /// 0b11: active, and pending again.
    PendingActive,
}

impl LrState {
    /// From the pending and active bits.
    pub const fn from_bits(pending: bool, active: bool) -> Self {
        match (pending, active) {
            (false, false) => Self::Invalid,
            (true, false) => Self::Pending,
            (false, true) => Self::Active,
            (true, true) => Self::PendingActive,
        }
    }

    /// The pending bit (State[0]).
    pub const fn pending(self) -> bool {
        matches!(self, Self::Pending | Self::PendingActive)
    }

    /// The active bit (State[1]).
    pub const fn active(self) -> bool {
        matches!(self, Self::Active | Self::PendingActive)
    }
}

/// One ICH_LR<n>_EL2 value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Lr(pub u64);

impl Lr {
    const VINTID_MASK: u64 = 0xffff_ffff;
    const PINTID_SHIFT: u32 = 32;
    /// pINTID is 13 bits wide, [44:32].
    const PINTID_MASK: u64 = 0x1fff;
    /// With HW=0, bit 41 is EOI: maintenance interrupt on deactivation.
    const EOI: u64 = 1 << 41;
    const PRIORITY_SHIFT: u32 = 48;
    const GROUP: u64 = 1 << 60;
    const HW: u64 = 1 << 61;
    const STATE_SHIFT: u32 = 62;

    /// An invalid (empty) list register.
    pub const INVALID: Lr = Lr(0);

    /// A software interrupt: vINTID, priority, group and state; HW=0.
    /// `eoi_maintenance` sets the EOI bit (maintenance interrupt when the
    /// guest deactivates it).
    pub const fn new(
        vintid: u32,
        priority: u8,
        group1: bool,
        state: LrState,
        eoi_maintenance: bool,
    ) -> Self {
        let mut v = vintid as u64
            | (priority as u64) << Self::PRIORITY_SHIFT
            | (Self::state_bits(state) << Self::STATE_SHIFT);
        if group1 {
            v |= Self::GROUP;
        }
        if eoi_maintenance {
            v |= Self::EOI;
        }
        Lr(v)
    }

    /// A hardware-linked interrupt: HW=1 and the physical INTID the guest's
    /// deactivation also deactivates. There is no EOI maintenance bit in this
    /// encoding (bit 41 is part of pINTID).
    pub const fn new_hw(
        vintid: u32,
        pintid: u32,
        priority: u8,
        group1: bool,
        state: LrState,
    ) -> Self {
        let mut v = vintid as u64
            | ((pintid as u64) & Self::PINTID_MASK) << Self::PINTID_SHIFT
            | (priority as u64) << Self::PRIORITY_SHIFT
            | Self::HW
            | (Self::state_bits(state) << Self::STATE_SHIFT);
        if group1 {
            v |= Self::GROUP;
        }
        Lr(v)
    }

    const fn state_bits(state: LrState) -> u64 {
        match state {
            LrState::Invalid => 0,
            LrState::Pending => 1,
            LrState::Active => 2,
            LrState::PendingActive => 3,
        }
    }

    /// vINTID [31:0].
    pub const fn vintid(self) -> u32 {
        (self.0 & Self::VINTID_MASK) as u32
    }

    /// Whether State is not invalid (the LR holds an interrupt). Used by
    /// the tests and the vGIC fuzz target.
    #[allow(dead_code)]
    pub const fn is_valid(self) -> bool {
        !matches!(self.state(), LrState::Invalid)
    }

    /// pINTID [44:32], meaningful only when [`Lr::hw`] is set.
    #[cfg(test)]
    pub const fn pintid(self) -> Option<u32> {
        if self.is_hw() {
            Some(((self.0 >> Self::PINTID_SHIFT) & Self::PINTID_MASK) as u32)
        } else {
            None
        }
    }

    /// Priority [55:48].
    #[cfg(test)]
    pub const fn priority(self) -> u8 {
        (self.0 >> Self::PRIORITY_SHIFT) as u8
    }

    /// Group [60]: Group 1 if set.
    #[cfg(test)]
    pub const fn group1(self) -> bool {
        self.0 & Self::GROUP != 0
    }

    /// HW [61]: the LR is hardware-linked (whatever its State).
    pub const fn is_hw(self) -> bool {
        self.0 & Self::HW != 0
    }

    /// EOI [41] (only with HW=0).
    #[cfg(test)]
    pub const fn eoi_maintenance(self) -> bool {
        !self.is_hw() && self.0 & Self::EOI != 0
    }

    /// State [63:62].
    pub const fn state(self) -> LrState {
        match self.0 >> Self::STATE_SHIFT {
            0 => LrState::Invalid,
            1 => LrState::Pending,
            2 => LrState::Active,
            _ => LrState::PendingActive,
        }
    }

    /// The same LR with another State.
    #[cfg(test)]
    pub const fn with_state(self, state: LrState) -> Self {
        Lr((self.0 & !(3 << Self::STATE_SHIFT)) | (Self::state_bits(state) << Self::STATE_SHIFT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_fields_at_their_bits() {
        let lr = Lr::new(33, 0x80, true, LrState::Pending, false);
        assert_eq!(lr.0, 33 | 0x80 << 48 | 1 << 60 | 1 << 62);
        assert_eq!(lr.vintid(), 33);
        assert_eq!(lr.priority(), 0x80);
        assert!(lr.group1());
        assert!(!lr.is_hw());
        assert_eq!(lr.pintid(), None);
        assert_eq!(lr.state(), LrState::Pending);
        let lr = Lr::new(40, 0xa0, false, LrState::Active, true);
        assert_eq!(lr.0, 40 | 1 << 41 | 0xa0 << 48 | 2 << 62);
        assert!(lr.eoi_maintenance());
    }

    #[test]
    fn hw_lr_carries_pintid() {
        let lr = Lr::new_hw(27, 27, 0xa0, true, LrState::Pending);
        assert_eq!(
            lr.0,
            27 | 27 << 32 | 0xa0 << 48 | 1 << 60 | 1 << 61 | 1 << 62
        );
        assert_eq!(lr.pintid(), Some(27));
        assert!(!lr.eoi_maintenance());
        assert_eq!(
            lr.with_state(LrState::PendingActive).state(),
            LrState::PendingActive
        );
        assert_eq!(lr.with_state(LrState::Invalid).pintid(), Some(27));
    }

    #[test]
    fn states_round_trip() {
        for (p, a) in [(false, false), (true, false), (false, true), (true, true)] {
            let s = LrState::from_bits(p, a);
            assert_eq!((s.pending(), s.active()), (p, a));
            assert_eq!(Lr::new(1, 0, false, s, false).state(), s);
        }
        assert_eq!(hcr_eoi_count(3 << 27 | HCR_EN), 3);
    }
}
