//! Per-CPU data, reached through TPIDR_EL2.
//!
//! The entry code points TPIDR_EL2 at `PERCPU[n]` before any Rust runs, so
//! [`this_cpu`] works everywhere, exception handlers included.

use super::MAX_CPUS;
use aarch64_cpu::registers::{Readable, TPIDR_EL2};
use core::sync::atomic::{AtomicBool, AtomicU64};

/// What one CPU keeps about itself.
#[repr(C)]
pub struct PerCpu {
    /// Logical CPU number (0 is the boot CPU).
    pub cpu: usize,
    /// MPIDR affinity, recorded when the CPU comes online.
    pub mpidr: AtomicU64,
    /// Set by the CPU itself once it runs Rust code with its MMU on.
    pub online: AtomicBool,
}

impl PerCpu {
    const fn new(cpu: usize) -> Self {
        Self {
            cpu,
            mpidr: AtomicU64::new(0),
            online: AtomicBool::new(false),
        }
    }
}

/// The per-CPU array; entry.rs indexes it by logical CPU number.
#[no_mangle]
pub static PERCPU: [PerCpu; MAX_CPUS] = {
    let mut all = [const { PerCpu::new(0) }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        all[i] = PerCpu::new(i);
        i += 1;
    }
    all
};

/// This CPU's data.
#[inline]
pub fn this_cpu() -> &'static PerCpu {
    let ptr = TPIDR_EL2.get();
    // SAFETY: entry.rs sets TPIDR_EL2 to an element of the static PERCPU
    // array before any Rust code runs, and nothing else writes it.
    unsafe { &*(ptr as *const PerCpu) }
}

/// This CPU's logical number.
pub fn cpu_id() -> usize {
    this_cpu().cpu
}

/// Another CPU's data, if `cpu` is in range.
pub fn percpu(cpu: usize) -> Option<&'static PerCpu> {
    PERCPU.get(cpu)
}

extern "C" {
    static __stacks_start: u8;
}

/// The EL2 stack of logical CPU `cpu` (the linker script lays them out one
/// after another, [`super::STACK_SIZE`] each).
pub fn stack_of(cpu: usize) -> core::ops::Range<u64> {
    // Only the address of the linker-provided symbol is taken.
    let base = core::ptr::addr_of!(__stacks_start) as u64;
    let start = base + (cpu.min(MAX_CPUS - 1) * super::STACK_SIZE) as u64;
    start..start + super::STACK_SIZE as u64
}
