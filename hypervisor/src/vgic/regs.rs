//! Shared pieces of the distributor and redistributor emulation: access
//! results, register offsets, and the per-interrupt register banks both
//! frames have (IGROUPR, IS/ICENABLER, IS/ICPENDR, IS/ICACTIVER, IPRIORITYR,
//! ICFGR).
//!
//! Offsets come from arm-gic's register layouts (`Gicd`, `Gicr`, `Sgi`)
//! through `offset_of!`, so there is no second hand-written offset table.
//! arm-gic builds for the host too, which keeps this testable with
//! `cargo test`.

use core::mem::offset_of;

use arm_gic::gicv3::registers::{Gicd, Gicr, GicrSgi, Sgi};

use super::irq::{IrqState, SPI_BASE};
use super::sgi::TargetSet;
use super::state::Vgic;

/// The answer to a guest read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The register's value (right-aligned for the access size).
    Value(u64),
    /// Not a register this vGIC implements at this offset and width: the
    /// glue logs it (rate-limited) and returns 0 (RAZ).
    Unhandled,
}

/// The outcome of a guest write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteResult {
    /// vCPUs whose LRs must be refreshed (kick them).
    pub kicks: TargetSet,
    /// The write hit no implemented register at this offset and width; it
    /// was ignored (WI) and the glue logs it.
    pub unhandled: bool,
}

impl WriteResult {
    /// A handled write with these kicks.
    pub const fn kicks(kicks: TargetSet) -> Self {
        Self {
            kicks,
            unhandled: false,
        }
    }

    /// A handled write with nothing to kick.
    pub const HANDLED: Self = Self {
        kicks: TargetSet::EMPTY,
        unhandled: false,
    };

    /// An ignored, unimplemented access.
    pub const UNHANDLED: Self = Self {
        kicks: TargetSet::EMPTY,
        unhandled: true,
    };
}

/// GICD register offsets (IHI 0069 §12.9).
pub mod gicd {
    use super::*;

    /// GICD_CTLR.
    pub const CTLR: u64 = offset_of!(Gicd, ctlr) as u64;
    /// GICD_TYPER.
    pub const TYPER: u64 = offset_of!(Gicd, typer) as u64;
    /// GICD_IIDR.
    pub const IIDR: u64 = offset_of!(Gicd, iidr) as u64;
    /// GICD_TYPER2.
    pub const TYPER2: u64 = offset_of!(Gicd, typer2) as u64;
    /// GICD_STATUSR.
    pub const STATUSR: u64 = offset_of!(Gicd, statusr) as u64;
    /// GICD_IGROUPR<n>.
    pub const IGROUPR: u64 = offset_of!(Gicd, igroupr) as u64;
    /// GICD_ISENABLER<n>.
    pub const ISENABLER: u64 = offset_of!(Gicd, isenabler) as u64;
    /// GICD_ICENABLER<n>.
    pub const ICENABLER: u64 = offset_of!(Gicd, icenabler) as u64;
    /// GICD_ISPENDR<n>.
    pub const ISPENDR: u64 = offset_of!(Gicd, ispendr) as u64;
    /// GICD_ICPENDR<n>.
    pub const ICPENDR: u64 = offset_of!(Gicd, icpendr) as u64;
    /// GICD_ISACTIVER<n>.
    pub const ISACTIVER: u64 = offset_of!(Gicd, isactiver) as u64;
    /// GICD_ICACTIVER<n>.
    pub const ICACTIVER: u64 = offset_of!(Gicd, icactiver) as u64;
    /// GICD_IPRIORITYR<n>.
    pub const IPRIORITYR: u64 = offset_of!(Gicd, ipriorityr) as u64;
    /// GICD_ITARGETSR<n>.
    pub const ITARGETSR: u64 = offset_of!(Gicd, itargetsr) as u64;
    /// GICD_ICFGR<n>.
    pub const ICFGR: u64 = offset_of!(Gicd, icfgr) as u64;
    /// GICD_IGRPMODR<n>.
    pub const IGRPMODR: u64 = offset_of!(Gicd, igrpmodr) as u64;
    /// GICD_NSACR<n>.
    pub const NSACR: u64 = offset_of!(Gicd, nsacr) as u64;
    /// GICD_IROUTER<32> (arm-gic's array starts at the first SPI; n < 32 is
    /// reserved).
    pub const IROUTER_SPI: u64 = offset_of!(Gicd, irouter) as u64;
    /// GICD_PIDR2.
    pub const PIDR2: u64 = offset_of!(Gicd, pidr2) as u64;
    /// First of the ID registers (PIDR4..CIDR3, 0xffd0-0xfffc).
    pub const ID_FIRST: u64 = offset_of!(Gicd, id_registers0) as u64;
    /// Size of the distributor frame.
    pub const SIZE: u64 = core::mem::size_of::<Gicd>() as u64;
}

/// GICR register offsets within the 128 KiB RD + SGI frame pair
/// (IHI 0069 §12.10, §12.11).
pub mod gicr {
    use super::*;

    /// GICR_CTLR.
    pub const CTLR: u64 = offset_of!(Gicr, ctlr) as u64;
    /// GICR_IIDR.
    pub const IIDR: u64 = offset_of!(Gicr, iidr) as u64;
    /// GICR_TYPER (64-bit).
    pub const TYPER: u64 = offset_of!(Gicr, typer) as u64;
    /// GICR_STATUSR.
    pub const STATUSR: u64 = offset_of!(Gicr, statusr) as u64;
    /// GICR_WAKER.
    pub const WAKER: u64 = offset_of!(Gicr, waker) as u64;
    /// GICR_PIDR2.
    pub const PIDR2: u64 = offset_of!(Gicr, pidr2) as u64;
    /// First of the ID registers.
    pub const ID_FIRST: u64 = offset_of!(Gicr, id_registers0) as u64;

    /// Start of the SGI frame.
    pub const SGI_BASE: u64 = offset_of!(GicrSgi, sgi) as u64;
    /// GICR_IGROUPR0.
    pub const IGROUPR0: u64 = SGI_BASE + offset_of!(Sgi, igroupr) as u64;
    /// GICR_ISENABLER0.
    pub const ISENABLER0: u64 = SGI_BASE + offset_of!(Sgi, isenabler) as u64;
    /// GICR_ICENABLER0.
    pub const ICENABLER0: u64 = SGI_BASE + offset_of!(Sgi, icenabler) as u64;
    /// GICR_ISPENDR0.
    pub const ISPENDR0: u64 = SGI_BASE + offset_of!(Sgi, ispendr) as u64;
    /// GICR_ICPENDR0.
    pub const ICPENDR0: u64 = SGI_BASE + offset_of!(Sgi, icpendr) as u64;
    /// GICR_ISACTIVER0.
    pub const ISACTIVER0: u64 = SGI_BASE + offset_of!(Sgi, isactiver) as u64;
    /// GICR_ICACTIVER0.
    pub const ICACTIVER0: u64 = SGI_BASE + offset_of!(Sgi, icactiver) as u64;
    /// GICR_IPRIORITYR0 (0-7 cover INTIDs 0-31).
    pub const IPRIORITYR0: u64 = SGI_BASE + offset_of!(Sgi, ipriorityr) as u64;
    /// GICR_ICFGR0 (SGIs) and ICFGR1 (PPIs) at +4.
    pub const ICFGR0: u64 = SGI_BASE + offset_of!(Sgi, icfgr) as u64;
    /// GICR_IGRPMODR0.
    pub const IGRPMODR0: u64 = SGI_BASE + offset_of!(Sgi, igrpmodr) as u64;
    /// GICR_NSACR.
    pub const NSACR: u64 = SGI_BASE + offset_of!(Sgi, nsacr) as u64;
    /// Size of one RD + SGI frame pair.
    pub const SIZE: u64 = core::mem::size_of::<GicrSgi>() as u64;
}

/// GICD_IIDR / GICR_IIDR: Implementer 0x43b (Arm's JEP106 code, as KVM
/// uses), ProductID 0x4e ('N', nmivisor), Revision/Variant 0. No Linux
/// erratum quirk matches it.
pub const IIDR_VALUE: u64 = 0x4e00_043b;
/// GICD_PIDR2 / GICR_PIDR2: ArchRev [7:4] = 3, GICv3 (IHI 0069 §12.9,
/// GICD_PIDR2). Linux checks it before trusting the frame.
pub const PIDR2_VALUE: u64 = 0x30;

/// The per-interrupt one-bit registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BitReg {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
}

/// A naturally aligned 32-bit access (most GIC registers allow nothing
/// else: IHI 0069 §12.1.3, "GIC memory-mapped register access").
pub(crate) const fn word(offset: u64, size: u8) -> bool {
    size == 4 && offset.is_multiple_of(4)
}

impl BitReg {
    fn read(self, irq: &IrqState) -> bool {
        match self {
            Self::Group => irq.group1,
            Self::SetEnable | Self::ClearEnable => irq.enabled,
            Self::SetPending | Self::ClearPending => irq.is_pending(),
            Self::SetActive | Self::ClearActive => irq.active,
        }
    }
}

impl Vgic {
    /// Reads one 32-bit bank register covering INTIDs `first..first + 32`
    /// (`vcpu`'s bank for private ones). Missing interrupts read as 0.
    pub(crate) fn read_bits(&self, vcpu: usize, reg: BitReg, first: u32) -> u64 {
        let mut v = 0u64;
        for bit in 0..32 {
            if let Some(irq) = self.irq(vcpu, first + bit) {
                if reg.read(irq) {
                    v |= 1 << bit;
                }
            }
        }
        v
    }

    /// Writes one 32-bit bank register covering INTIDs `first..first + 32`.
    /// Set/clear registers act on the 1 bits; IGROUPR takes every bit.
    /// Returns the vCPUs whose LRs must be refreshed.
    pub(crate) fn write_bits(
        &mut self,
        vcpu: usize,
        reg: BitReg,
        first: u32,
        value: u64,
    ) -> TargetSet {
        let mut kicks = TargetSet::EMPTY;
        for bit in 0..32u32 {
            let set = value & (1 << bit) != 0;
            if !set && reg != BitReg::Group {
                continue;
            }
            let intid = first + bit;
            // Kick whoever holds it before the change too (e.g. disabling an
            // interrupt that sits pending in a running vCPU's LR).
            let before = self.kick_if_busy(vcpu, intid);
            let Some(irq) = self.irq_mut(vcpu, intid) else {
                continue;
            };
            match reg {
                BitReg::Group => irq.group1 = set,
                BitReg::SetEnable => irq.enabled = true,
                BitReg::ClearEnable => irq.enabled = false,
                BitReg::SetPending => irq.pend(),
                // Clears the latch only: a level interrupt whose line is
                // high stays pending (IHI 0069 GICD_ICPENDR).
                BitReg::ClearPending => irq.pending_latch = false,
                BitReg::SetActive => irq.active = true,
                BitReg::ClearActive => irq.active = false,
            }
            if matches!(reg, BitReg::ClearActive | BitReg::ClearPending) {
                self.settle_owner(intid);
            }
            if let Some(k) = before {
                kicks.insert(k);
            }
            if let Some(k) = self.kick_if_busy(vcpu, intid) {
                kicks.insert(k);
            }
        }
        kicks
    }

    /// Reads IPRIORITYR bytes: `size` (1 or 4) priorities from `intid`.
    pub(crate) fn read_priorities(&self, vcpu: usize, intid: u32, size: u8) -> u64 {
        let mut v = 0u64;
        for i in 0..u32::from(size) {
            if let Some(irq) = self.irq(vcpu, intid + i) {
                v |= u64::from(irq.priority) << (8 * i);
            }
        }
        v
    }

    /// Writes IPRIORITYR bytes, keeping only the implemented priority bits.
    pub(crate) fn write_priorities(
        &mut self,
        vcpu: usize,
        intid: u32,
        size: u8,
        value: u64,
    ) -> TargetSet {
        let mut kicks = TargetSet::EMPTY;
        let mask = self.priority_mask;
        for i in 0..u32::from(size) {
            if let Some(irq) = self.irq_mut(vcpu, intid + i) {
                irq.priority = (value >> (8 * i)) as u8 & mask;
            }
            // A pending interrupt's new priority may change what the LRs
            // should hold.
            if let Some(k) = self.kick_if_busy(vcpu, intid + i) {
                kicks.insert(k);
            }
        }
        kicks
    }

    /// Reads an ICFGR word for INTIDs `first..first + 16`: bit 2n+1 set for
    /// edge-triggered.
    pub(crate) fn read_config(&self, vcpu: usize, first: u32) -> u64 {
        let mut v = 0u64;
        for i in 0..16 {
            if let Some(irq) = self.irq(vcpu, first + i) {
                if irq.edge {
                    v |= 2 << (2 * i);
                }
            }
        }
        v
    }

    /// Writes an ICFGR word for SPIs `first..first + 16` (private
    /// interrupts' configuration is read-only here).
    pub(crate) fn write_config(&mut self, vcpu: usize, first: u32, value: u64) -> TargetSet {
        let mut kicks = TargetSet::EMPTY;
        for i in 0..16 {
            let intid = first + i;
            if intid < SPI_BASE {
                continue;
            }
            if let Some(irq) = self.irq_mut(vcpu, intid) {
                irq.edge = value & (2 << (2 * i)) != 0;
            }
            if let Some(k) = self.kick_if_busy(vcpu, intid) {
                kicks.insert(k);
            }
        }
        kicks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout-derived offsets are the architected ones.
    #[test]
    fn offsets_match_the_spec() {
        assert_eq!(gicd::CTLR, 0x0);
        assert_eq!(gicd::TYPER, 0x4);
        assert_eq!(gicd::IIDR, 0x8);
        assert_eq!(gicd::IGROUPR, 0x80);
        assert_eq!(gicd::ISENABLER, 0x100);
        assert_eq!(gicd::ICENABLER, 0x180);
        assert_eq!(gicd::ISPENDR, 0x200);
        assert_eq!(gicd::ICPENDR, 0x280);
        assert_eq!(gicd::ISACTIVER, 0x300);
        assert_eq!(gicd::ICACTIVER, 0x380);
        assert_eq!(gicd::IPRIORITYR, 0x400);
        assert_eq!(gicd::ITARGETSR, 0x800);
        assert_eq!(gicd::ICFGR, 0xc00);
        assert_eq!(gicd::IGRPMODR, 0xd00);
        assert_eq!(gicd::NSACR, 0xe00);
        assert_eq!(gicd::IROUTER_SPI, 0x6100);
        assert_eq!(gicd::PIDR2, 0xffe8);
        assert_eq!(gicd::SIZE, 0x10000);
        assert_eq!(gicr::WAKER, 0x14);
        assert_eq!(gicr::TYPER, 0x8);
        assert_eq!(gicr::PIDR2, 0xffe8);
        assert_eq!(gicr::SGI_BASE, 0x10000);
        assert_eq!(gicr::IGROUPR0, 0x10080);
        assert_eq!(gicr::ISENABLER0, 0x10100);
        assert_eq!(gicr::IPRIORITYR0, 0x10400);
        assert_eq!(gicr::ICFGR0, 0x10c00);
        assert_eq!(gicr::IGRPMODR0, 0x10d00);
        assert_eq!(gicr::NSACR, 0x10e00);
        assert_eq!(gicr::SIZE, 0x20000);
    }
}
