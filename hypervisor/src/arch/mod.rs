//! Architecture support: everything that needs `asm!` or system registers.
//!
//! `esr` is pure and host-tested; the rest is compiled for the bare-metal
//! target only.

pub mod cpu_features;
pub mod esr;

#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod el1;
#[cfg(target_os = "none")]
pub mod el2map;
#[cfg(target_os = "none")]
pub mod entry;
#[cfg(target_os = "none")]
pub mod features;
#[cfg(target_os = "none")]
pub mod gicv3;
#[cfg(target_os = "none")]
pub mod ich;
#[cfg(target_os = "none")]
pub mod percpu;
#[cfg(target_os = "none")]
pub mod ppi_source;
#[cfg(target_os = "none")]
pub mod psci;
#[cfg(target_os = "none")]
pub mod vectors;

/// The pause in every spin-wait: YIELD, the architecture's hint that this
/// CPU is waiting on another one (Arm ARM C6.2.400). Emulators honour it:
/// QEMU's single-threaded TCG (`-icount`) switches to another vCPU, where a
/// plain spin would hold the host thread for a whole time slice. On the host
/// (unit tests) it is the standard spin hint.
#[inline(always)]
pub fn relax() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: YIELD is a hint with no architectural effect.
    unsafe {
        core::arch::asm!("yield", options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "aarch64"))]
    core::hint::spin_loop();
}

/// spin's lock relax strategy using [`relax`].
#[cfg(target_os = "none")]
pub struct YieldRelax;

#[cfg(target_os = "none")]
impl spin::RelaxStrategy for YieldRelax {
    #[inline(always)]
    fn relax() {
        self::relax();
    }
}

/// The hypervisor's spin lock: spin's mutex, relaxing with YIELD.
#[cfg(target_os = "none")]
pub type Mutex<T> = spin::mutex::Mutex<T, YieldRelax>;
#[cfg(target_os = "none")]
pub type MutexGuard<'a, T> = spin::mutex::MutexGuard<'a, T>;

/// The most CPUs nmivisor manages; CPUs beyond it in the DTB are left off.
pub const MAX_CPUS: usize = 16;
// The bundle format admits CPU numbers below its own limit.
const _: () = assert!(
    MAX_CPUS == vm_bundle::MAX_CPUS,
    "arch::MAX_CPUS and vm_bundle::MAX_CPUS differ"
);

/// Per-CPU EL2 stack size.
#[cfg(target_os = "none")]
pub const STACK_SIZE: usize = 64 * 1024;
