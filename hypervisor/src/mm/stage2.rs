//! Stage-2 translation for one VM, with aarch64-paging's Stage2 regime.
//!
//! Guest RAM is one linear range: IPA `ram_ipa` maps to host PA
//! `ram_ipa + offset`, with block mappings wherever alignment allows.
//! Nothing else is mapped, so every other IPA (the hypervisor, other VMs,
//! emulated devices) faults to EL2. Table pages come from the heap, which
//! the EL2 map identity-maps, so aarch64-paging's identity translation is
//! the right one for the tables themselves.

use aarch64_paging::descriptor::PhysicalAddress;
use aarch64_paging::descriptor::Stage2Attributes as S2;
use aarch64_paging::idmap::IdTranslation;
use aarch64_paging::paging::{Constraints, MemoryRegion, Stage2};
use aarch64_paging::{MapError, Mapping};
use core::ops::Range;

/// Root level 1: a 39-bit IPA space (VTCR_EL2.T0SZ = 25, SL0 = 1).
const ROOT_LEVEL: usize = 1;
/// IPA bits the root level covers.
pub const IPA_BITS: u64 = 39;

const RAM: S2 = S2::VALID
    .union(S2::MEMATTR_NORMAL_INNER_WB)
    .union(S2::MEMATTR_NORMAL_OUTER_WB)
    .union(S2::S2AP_ACCESS_RW)
    .union(S2::SH_INNER)
    .union(S2::ACCESS_FLAG);

/// A VM's stage-2 tables.
pub struct Stage2Tables {
    mapping: Mapping<IdTranslation<S2>, Stage2>,
    vmid: u16,
}

// SAFETY: the tables are built on the boot CPU and afterwards only read by
// the hardware; `Mapping` holds raw pointers to heap pages it owns.
unsafe impl Send for Stage2Tables {}
// SAFETY: as above: no method used after construction mutates through `&self`.
unsafe impl Sync for Stage2Tables {}

impl Stage2Tables {
    /// Maps guest RAM `ram_ipa` to host PA `pa`.
    pub fn new(vmid: u16, ram_ipa: Range<u64>, pa: u64) -> Result<Self, MapError> {
        let mut mapping = Mapping::new(IdTranslation::new(), ROOT_LEVEL, Stage2);
        let region = MemoryRegion::new(ram_ipa.start as usize, ram_ipa.end as usize);
        mapping.map_range(
            &region,
            PhysicalAddress(pa as usize),
            RAM,
            Constraints::empty(),
        )?;
        Ok(Stage2Tables { mapping, vmid })
    }

    /// VTTBR_EL2: the root table and the VMID (bits [55:48]).
    pub fn vttbr(&self) -> u64 {
        self.mapping.root_address().0 as u64 | u64::from(self.vmid) << 48
    }
}

/// VTCR_EL2 for a 39-bit IPA space with 4K pages (Arm ARM D19.2.172):
/// T0SZ=25, SL0=1 (start at level 1), inner/outer write-back, inner
/// shareable, PS from the CPU's PARange, RES1 bit 31, 8-bit VMIDs.
pub fn vtcr() -> u64 {
    let ps = crate::arch::cpu::pa_range().min(5);
    (1 << 31) | (ps << 16) | (3 << 12) | (1 << 10) | (1 << 8) | (1 << 6) | (64 - IPA_BITS)
}

/// Invalidates every stage-1 and stage-2 TLB entry of the VMID currently
/// in VTTBR_EL2, on every CPU (TLBI VMALLS12E1IS).
pub fn flush_current_vmid() {
    crate::arch::cpu::flush_guest_tlb();
}
