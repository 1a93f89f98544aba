//! The CPUs nmivisor runs on: logical CPU numbers (the boot CPU is 0, the
//! others follow in device-tree order) and their MPIDRs. `boot::start`
//! fills them in before any secondary starts; everything else reads them.

use crate::arch::MAX_CPUS;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Logical CPU number -> MPIDR, boot CPU first. Written before CPU_ON.
static MPIDRS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static NR_CPUS: AtomicUsize = AtomicUsize::new(1);

/// Number of CPUs nmivisor manages.
pub fn nr_cpus() -> usize {
    NR_CPUS.load(Ordering::Acquire)
}

/// MPIDR of logical CPU `cpu`.
pub fn mpidr_of(cpu: usize) -> u64 {
    MPIDRS
        .get(cpu)
        .map_or(u64::MAX, |m| m.load(Ordering::Acquire))
}

/// Records logical CPU `cpu`'s MPIDR (boot CPU, before CPU_ON).
pub fn set_mpidr(cpu: usize, mpidr: u64) {
    if let Some(m) = MPIDRS.get(cpu) {
        m.store(mpidr, Ordering::Relaxed);
    }
}

/// Records how many CPUs nmivisor runs on (boot CPU, before CPU_ON).
pub fn set_nr_cpus(n: usize) {
    NR_CPUS.store(n, Ordering::Release);
}
