//! Virtual machines: the VM and vCPU model, trap handling and the guest
//! services (PSCI, hypercalls, exception injection, the guest device tree).
//!
//! The modules here so far are pure and host-tested: they decide, and the
//! callers that own vCPU state and system registers act.

pub mod guest_dt;
pub mod guest_symbols;
pub mod hypercall;
pub mod inject;
pub mod psci;
pub mod sysreg;

pub mod console;
pub mod devices_dt;
pub mod layout;
pub mod memmap;

#[cfg(target_os = "none")]
pub mod create;
#[cfg(target_os = "none")]
pub mod guest;
#[cfg(target_os = "none")]
pub mod run;
#[cfg(target_os = "none")]
pub mod services;
#[cfg(target_os = "none")]
pub mod trap;
#[cfg(target_os = "none")]
pub mod uart;
#[cfg(target_os = "none")]
pub mod vgic;
