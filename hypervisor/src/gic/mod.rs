//! The physical GICv3: nmivisor owns it.
//!
//! `priority` (pure) defines the priority scheme; `driver` brings the GIC up
//! with arm-gic, and `irq` takes interrupts at EL2.

pub mod priority;

#[cfg(target_os = "none")]
pub mod driver;
#[cfg(target_os = "none")]
pub mod irq;
#[cfg(target_os = "none")]
pub mod mask;
