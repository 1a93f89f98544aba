//! Memory: host RAM bookkeeping (pure), the EL2 stage-1 page tables and
//! their windows onto guest RAM, the stage-2 tables of each VM, and the
//! hypervisor heap.

pub mod ram;
pub mod window;

#[cfg(target_os = "none")]
pub mod el2;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod stage2;
#[cfg(target_os = "none")]
pub mod window_hw;
