//! Memory: the EL2 stage-1 page tables and the hypervisor heap.

pub mod el2;
pub mod heap;
