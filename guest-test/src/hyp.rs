//! nmivisor's own hypercalls besides the console ([`crate::console`]):
//! SMCCC fast calls (SMC64, vendor specific hypervisor service) through
//! the device tree's PSCI conduit. They exist only in a VM under nmivisor
//! ([`crate::dt::Platform::nmivisor`]): natively an unknown HVC is
//! UNDEFINED, so callers check first.
//!
//! | ID | name | arguments | x0 on return |
//! |---|---|---|---|
//! | 0xC6000002 | `NMV_DUMP` | | 0; the hypervisor prints every CPU's state |
//! | 0xC6000100 | `NMV_TEST_INJECT` | x1 = vCPU index, x2 = INTID, x3 = priority | 0, or -2 (INVALID_PARAMETERS) |
//! | 0xC6000101 | `NMV_TEST_HOLD_VGIC_LOCK` | | never returns on test images (the CPU keeps the VM's vGIC lock); -1 elsewhere |

use crate::psci;

/// The hypervisor-wide dump.
pub const NMV_DUMP: u32 = 0xC600_0002;
/// The first test call (NMV_TEST_BASE + 0): makes an INTID pending at a
/// priority on a vCPU of the caller's VM, enabling it, like a virtual
/// NMI would.
pub const NMV_TEST_INJECT: u32 = 0xC600_0100;

/// Test call NMV_TEST_BASE + 1.
pub const NMV_TEST_HOLD_VGIC_LOCK: u32 = 0xC600_0101;

/// NMV_TEST_HOLD_VGIC_LOCK: returns only where it is not supported.
pub fn test_hold_vgic_lock() -> i64 {
    psci::call(NMV_TEST_HOLD_VGIC_LOCK, 0, 0, 0) as i64
}

/// SMCCC INVALID_PARAMETERS.
pub const INVALID_PARAMETERS: i64 = -2;

/// NMV_DUMP; returns x0.
pub fn dump() -> i64 {
    psci::call(NMV_DUMP, 0, 0, 0) as i64
}

/// NMV_TEST_INJECT of `intid` at `priority` on nmivisor's vCPU `vcpu` (its
/// position in the device tree's /cpus, [`crate::dt::cpu_position`]);
/// returns x0.
pub fn test_inject(vcpu: u64, intid: u32, priority: u8) -> i64 {
    psci::call(NMV_TEST_INJECT, vcpu, intid as u64, priority as u64) as i64
}
