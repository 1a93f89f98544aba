//! Memory: host RAM bookkeeping (pure), the EL2 stage-1 page tables, the
//! stage-2 tables of each VM, and the hypervisor heap.

pub mod ram;

#[cfg(target_os = "none")]
pub mod el2;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod stage2;
