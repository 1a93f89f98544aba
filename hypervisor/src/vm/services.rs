//! What the layers above `vm` lend it. The layer order (`main.rs`) lets
//! `vm` import nothing from `debug` or `boot`, yet two guest requests need
//! them: the last VM's SYSTEM_OFF powers the machine off (boot stops the
//! other CPUs), and NMV_DUMP rounds up the VM's CPUs (debug's roundup).
//! `boot` installs both here before any VM starts.

use super::guest::GuestSnapshot;
use crate::ipi::roundup::CpuMask;
use alloc::vec::Vec;
use spin::Once;

/// The services, as functions of the layers above.
pub struct Services {
    /// Stops every other CPU and powers the machine off.
    pub power_off: fn() -> !,
    /// Rounds up `cpus`, the CPUs running VM `vm_index`, and returns their
    /// guest registers; None while another roundup is in flight.
    pub snapshot_vm: fn(usize, CpuMask) -> Option<Vec<GuestSnapshot>>,
}

static SERVICES: Once<Services> = Once::new();

/// Installs the services (boot CPU, once, before any VM starts).
pub fn install(services: Services) {
    SERVICES.call_once(|| services);
}

/// Powers the machine off (after the last VM stopped).
pub fn power_off() -> ! {
    match SERVICES.get() {
        Some(s) => (s.power_off)(),
        // Not installed: no VM can have run, but do not leave the machine up.
        None => {
            let _ = crate::arch::psci::system_off();
            crate::arch::cpu::halt()
        }
    }
}

/// The guest registers of VM `vm_index`'s vCPUs on `cpus` (NMV_DUMP).
pub fn snapshot_vm(vm_index: usize, cpus: CpuMask) -> Option<Vec<GuestSnapshot>> {
    (SERVICES.get()?.snapshot_vm)(vm_index, cpus)
}
