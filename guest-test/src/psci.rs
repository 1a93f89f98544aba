//! PSCI and other SMCCC calls through the conduit the device tree's
//! `/psci` node names (`method = "hvc"` or `"smc"`).
//!
//! Calls return the raw x0 so the cases can check exact return codes;
//! PSCI return values are int32 ([`status`]).

use core::sync::atomic::{AtomicU8, Ordering};
use smccc::{Call, Hvc, Smc};

pub use smccc::psci::{
    PSCI_AFFINITY_INFO_64 as AFFINITY_INFO_64, PSCI_CPU_OFF as CPU_OFF,
    PSCI_CPU_ON_64 as CPU_ON_64, PSCI_CPU_SUSPEND_64 as CPU_SUSPEND_64, PSCI_FEATURES,
    PSCI_MIGRATE_INFO_TYPE as MIGRATE_INFO_TYPE, PSCI_SYSTEM_OFF as SYSTEM_OFF,
    PSCI_SYSTEM_RESET as SYSTEM_RESET, PSCI_VERSION,
};

/// PSCI return codes (DEN0022D 5.2.2).
pub use smccc::psci::error::{ALREADY_ON, INVALID_PARAMETERS, NOT_SUPPORTED};
pub const SUCCESS: i32 = 0;

/// AFFINITY_INFO results.
pub const AFFINITY_ON: i32 = 0;
pub const AFFINITY_OFF: i32 = 1;

/// The instruction that reaches the PSCI implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Hvc,
    Smc,
}

impl Conduit {
    pub fn name(self) -> &'static str {
        match self {
            Conduit::Hvc => "hvc",
            Conduit::Smc => "smc",
        }
    }

    /// The value the FP/SIMD check's assembly takes (0 HVC, 1 SMC).
    pub fn asm_code(self) -> u64 {
        match self {
            Conduit::Hvc => 0,
            Conduit::Smc => 1,
        }
    }
}

static CONDUIT: AtomicU8 = AtomicU8::new(0);

/// Sets the conduit (boot CPU, from the device tree, before any call).
pub fn set_conduit(c: Conduit) {
    CONDUIT.store(c as u8, Ordering::Release);
}

pub fn conduit() -> Conduit {
    if CONDUIT.load(Ordering::Acquire) == Conduit::Smc as u8 {
        Conduit::Smc
    } else {
        Conduit::Hvc
    }
}

/// An SMCCC fast call with up to three arguments; returns x0.
pub fn call(fid: u32, a1: u64, a2: u64, a3: u64) -> u64 {
    let mut args = [0u64; 17];
    args[0] = a1;
    args[1] = a2;
    args[2] = a3;
    let ret = match conduit() {
        Conduit::Hvc => Hvc::call64(fid, args),
        Conduit::Smc => Smc::call64(fid, args),
    };
    ret[0]
}

/// A PSCI return value: the low 32 bits of x0, signed.
pub fn status(x0: u64) -> i32 {
    x0 as u32 as i32
}

pub fn version() -> i32 {
    status(call(PSCI_VERSION, 0, 0, 0))
}

pub fn features(fid: u32) -> i32 {
    status(call(PSCI_FEATURES, fid as u64, 0, 0))
}

pub fn migrate_info_type() -> i32 {
    status(call(MIGRATE_INFO_TYPE, 0, 0, 0))
}

pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> i32 {
    status(call(CPU_ON_64, mpidr, entry, context))
}

pub fn affinity_info(mpidr: u64, lowest_level: u64) -> i32 {
    status(call(AFFINITY_INFO_64, mpidr, lowest_level, 0))
}

/// CPU_OFF: returns only on failure.
pub fn cpu_off() -> i32 {
    status(call(CPU_OFF, 0, 0, 0))
}

pub fn cpu_suspend(power_state: u64, entry: u64, context: u64) -> i32 {
    status(call(CPU_SUSPEND_64, power_state, entry, context))
}

/// SYSTEM_OFF; if that fails, this CPU stops.
pub fn system_off() -> ! {
    call(SYSTEM_OFF, 0, 0, 0);
    crate::cpu::halt()
}
