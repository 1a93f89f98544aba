//! Architecture support: everything that needs `asm!` or system registers.
//!
//! `esr` is pure and host-tested; the rest is compiled for the bare-metal
//! target only.

pub mod esr;

#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod el1;
#[cfg(target_os = "none")]
pub mod entry;
#[cfg(target_os = "none")]
pub mod exception;
#[cfg(target_os = "none")]
pub mod gicv3;
#[cfg(target_os = "none")]
pub mod ich;
#[cfg(target_os = "none")]
pub mod percpu;
#[cfg(target_os = "none")]
pub mod psci;
#[cfg(target_os = "none")]
pub mod vectors;

/// The most CPUs nmivisor manages; CPUs beyond it in the DTB are left off.
pub const MAX_CPUS: usize = 16;

/// Per-CPU EL2 stack size.
pub const STACK_SIZE: usize = 64 * 1024;
