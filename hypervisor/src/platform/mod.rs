//! Facts about the machine that the layers above `arch` share: which CPUs
//! there are ([`topology`]), what the device tree says the machine is
//! ([`machine`]), and the physical SGIs nmivisor assigns itself
//! ([`interrupts`]).

pub mod interrupts;
pub mod machine;
#[cfg(target_os = "none")]
pub mod topology;
