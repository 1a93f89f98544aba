//! The physical GICv3: nmivisor owns it.
//!
//! `priority` (pure) defines the priority scheme; `driver` brings the GIC up
//! with arm-gic; interrupts taken at EL2 are routed by `dispatch`.

pub mod priority;

#[cfg(target_os = "none")]
pub mod driver;
#[cfg(target_os = "none")]
pub mod mask;
