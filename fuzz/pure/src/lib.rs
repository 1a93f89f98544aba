//! The hypervisor's pure modules as a library, for the fuzz targets
//! (docs/fuzzing.md). Host only: this package belongs to the fuzz
//! workspace, never to the image's build.
//!
//! The hypervisor is a binary crate (`hypervisor/src/main.rs`). This crate
//! is a second crate root over the *same* source files: each `#[path]`
//! below names a module's `mod.rs` in hypervisor/src/, and that module's
//! own submodules resolve next to it, so nothing is copied. Each module
//! keeps its `#[cfg(target_os = "none")]` gates, so on the host this crate
//! holds exactly what `cargo test` tests: the pure logic (decoders, vGIC
//! state, parsers, device-tree building), no `asm!`, no MMIO. It has no
//! tests of its own (`test = false`, `doctest = false`): the binary's unit
//! tests cover these files.
//!
//! Keeping it out of the hypervisor package (rather than a `[lib]` there)
//! leaves that package's targets, and so the image, exactly as they were:
//! a library in the same package changes the binary's crate metadata and
//! with it LLVM's code partitioning, hence inlining.

// Items only the image (or only `cfg(test)`) uses are unused here.
#![allow(dead_code, unused_imports)]

extern crate alloc;

// The same module list as hypervisor/src/main.rs, every one public.
#[path = "../../../hypervisor/src/arch/mod.rs"]
pub mod arch;
#[path = "../../../hypervisor/src/boot/mod.rs"]
pub mod boot;
#[path = "../../../hypervisor/src/console/mod.rs"]
pub mod console;
#[path = "../../../hypervisor/src/debug/mod.rs"]
pub mod debug;
#[path = "../../../hypervisor/src/devices/mod.rs"]
pub mod devices;
#[path = "../../../hypervisor/src/gic/mod.rs"]
pub mod gic;
#[path = "../../../hypervisor/src/ipi/mod.rs"]
pub mod ipi;
#[path = "../../../hypervisor/src/mm/mod.rs"]
pub mod mm;
#[path = "../../../hypervisor/src/platform/mod.rs"]
pub mod platform;
#[path = "../../../hypervisor/src/vgic/mod.rs"]
pub mod vgic;
#[path = "../../../hypervisor/src/vm/mod.rs"]
pub mod vm;
