//! The hardware side of the guest CPU feature policy
//! ([`super::cpu_features`]): reads the real CPU's feature ID space
//! once, and programs the EL2 controls that make each shown feature work
//! and keep each hidden one trapped.
//!
//! The whole ID space is read through its generic encodings
//! (`S3_0_C0_C<m>_<n>`): the register crates name only some of these
//! registers (not ID_AA64ZFR0/FPFR0/AFR*, nor the AArch32 ones), and the
//! policy needs all 56.

use super::cpu_features::{GuestFeatures, IdSpace, IdView, ID_SPACE_LEN};
use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{Writeable, CPTR_EL2, HCR_EL2};
use core::arch::asm;
use spin::Once;

static VIEW: Once<IdView> = Once::new();

macro_rules! read_id_space {
    ($($crm:literal: $($op2:literal)*;)*) => {{
        let mut s: IdSpace = [0; ID_SPACE_LEN];
        $($(
            let v: u64;
            // SAFETY: reading an ID register at EL2 has no side effects;
            // unallocated encodings of the ID space read as zero (Arm ARM
            // D23.3.1).
            unsafe {
                asm!(
                    concat!("mrs {}, S3_0_C0_C", stringify!($crm), "_", stringify!($op2)),
                    out(reg) v,
                    options(nomem, nostack, preserves_flags)
                )
            };
            s[($crm - 1) * 8 + $op2] = v;
        )*)*
        s
    }};
}

/// Reads this CPU's feature ID space.
fn read_id_space() -> IdSpace {
    read_id_space! {
        1: 0 1 2 3 4 5 6 7;
        2: 0 1 2 3 4 5 6 7;
        3: 0 1 2 3 4 5 6 7;
        4: 0 1 2 3 4 5 6 7;
        5: 0 1 2 3 4 5 6 7;
        6: 0 1 2 3 4 5 6 7;
        7: 0 1 2 3 4 5 6 7;
    }
}

/// Builds the guests' view from the boot CPU's ID registers. nmivisor
/// assumes identical CPUs, as QEMU's `virt` machine has.
pub fn init() -> &'static IdView {
    VIEW.call_once(|| IdView::new(&read_id_space()))
}

/// The guests' view of the ID registers.
pub fn view() -> &'static IdView {
    init()
}

/// The feature-dependent part of HCR_EL2 for guests: PAuth keys and
/// instructions untrapped when shown, RAS error records and LORegions
/// trapped where the CPU has them (both are emulated or hidden).
pub fn hcr_bits(f: &GuestFeatures) -> u64 {
    let mut v = 0;
    if f.pauth {
        // Set means "do not trap" for these two.
        v |= HCR_EL2::API::DisableTrapPointerAuthInstToEl2.value
            | HCR_EL2::APK::DisableTrapPointerAuthKeyRegsToEl2.value;
    }
    if f.ras {
        v |= HCR_EL2::TERR::SET.value;
    }
    if f.lor {
        v |= HCR_EL2::TLOR::SET.value;
    }
    v
}

/// CPTR_EL2 (E2H = 0) for guests, Arm ARM D23.2.34: RES1 bits [7:0], 9,
/// 13; TZ [8] only when SVE is hidden; TFP [10] clear (FP/SIMD belongs to
/// the guest: the hypervisor is built without FP/SIMD and never touches
/// it); TSM [12] set, SME stays hidden; TTA [20] set, no trace unit is
/// shown; TAM [30] set where the CPU has activity monitors.
fn cptr(f: &GuestFeatures) -> u64 {
    // aarch64-cpu names only TAM; arm-sysregs has the E2H = 1 layout (no TTA
    // at bit 20), so the others are written out.
    const RES1: u64 = 0xff | 1 << 9 | 1 << 13;
    const TZ: u64 = 1 << 8;
    const TSM: u64 = 1 << 12;
    const TTA: u64 = 1 << 20;
    let mut v = RES1 | TSM | TTA;
    if !f.sve {
        v |= TZ;
    }
    if f.host_amu {
        v |= CPTR_EL2::TAM::SET.value;
    }
    v
}

/// Programs this CPU's EL2 feature controls for the guest about to run:
/// CPTR_EL2, ZCR_EL2 (SVE vector length: the largest the CPU has) and
/// HCRX_EL2 (FEAT_HCX). HCR_EL2 takes [`hcr_bits`] from the caller.
pub fn load_guest_controls() {
    let f = &view().features;
    // These controls only shape what EL1/EL0 may execute. ZCR_EL2 is
    // written after CPTR_EL2.TZ is cleared (an access with TZ set would trap
    // to EL2 itself), and only when SVE exists; HCRX_EL2 only with FEAT_HCX.
    // The hypervisor never executes SVE or FP/SIMD instructions.
    CPTR_EL2.set(cptr(f));
    barrier::isb(barrier::SY);
    if f.sve {
        // ZCR_EL2: LEN [3:0] = 0xf, the maximum; the effective length is
        // the largest the CPU implements (Arm ARM D23.2.202). Neither
        // aarch64-cpu nor arm-sysregs has ZCR_EL2.
        // SAFETY: as above; SVE exists and CPTR_EL2.TZ is clear.
        unsafe {
            asm!("msr S3_4_C1_C2_0, {}", "isb", in(reg) 0xfu64, options(nomem, nostack, preserves_flags))
        };
    }
    if f.hcx {
        use arm_sysregs::el2::{accessors::write_hcrx_el2, registers::HcrxEl2};
        // aarch64-cpu lacks HCRX_EL2; arm-sysregs types it.
        // SAFETY: FEAT_HCX is implemented; HCRX_EL2 only shapes EL1/EL0.
        unsafe { write_hcrx_el2(HcrxEl2::from_bits_retain(f.hcrx())) };
    }
}
