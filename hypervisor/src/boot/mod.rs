//! Boot: the device tree, the VM bundle, and (on the target) the boot and secondary-CPU
//! paths that bring nmivisor up.

pub mod bundle;
pub mod cpio;
pub mod dt;
#[cfg(target_os = "none")]
pub mod start;
#[cfg(all(target_os = "none", feature = "test-hooks"))]
pub mod test_hooks;
