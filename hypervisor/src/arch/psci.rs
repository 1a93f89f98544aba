//! PSCI calls to the firmware (EL3), over the conduit the DTB names.
//!
//! From EL2 only SMC reaches the firmware: an HVC would trap to ourselves,
//! so a DTB that asks for "hvc" is rejected at boot (see `boot::dt`).

pub use smccc::psci::{AffinityState, Error, LowestAffinityLevel};
use smccc::Smc;

/// Start `mpidr` at `entry` (a physical address) with `context` in x0.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> Result<(), Error> {
    smccc::psci::cpu_on::<Smc>(mpidr, entry, context)
}

/// Power this CPU off. Only returns on failure.
pub fn cpu_off() -> Error {
    match smccc::psci::cpu_off::<Smc>() {
        Ok(()) => Error::Denied,
        Err(e) => e,
    }
}

/// Whether `mpidr` is on, off or pending.
pub fn affinity_info(mpidr: u64) -> Result<AffinityState, Error> {
    smccc::psci::affinity_info::<Smc>(mpidr, LowestAffinityLevel::All)
}

/// Power the machine off. Only returns on failure.
pub fn system_off() -> Error {
    match smccc::psci::system_off::<Smc>() {
        Ok(()) => Error::Denied,
        Err(e) => e,
    }
}
