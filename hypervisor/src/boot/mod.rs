//! Boot: the device tree and (on the target) the boot and secondary-CPU
//! paths that bring nmivisor up. The VM bundle's format is the `vm-bundle`
//! crate.

pub mod dt;
#[cfg(target_os = "none")]
pub mod start;
#[cfg(all(target_os = "none", feature = "test-hooks"))]
pub mod test_hooks;
