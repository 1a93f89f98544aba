//! The hypervisor's pure modules as a library, for the fuzz targets in
//! `fuzz/` (see docs/fuzzing.md). Host builds only.
//!
//! The image is the binary (`main.rs`); this library is a second crate root
//! over the *same* source files: `mod vgic;` here resolves to
//! `src/vgic/mod.rs` just as it does for `main.rs`, so nothing is copied.
//! Each module keeps its own `#[cfg(target_os = "none")]` gates, so on the
//! host this crate holds exactly what `cargo test` tests: the pure logic
//! (decoders, vGIC state, parsers, device-tree building), no `asm!`, no MMIO.
//!
//! For `aarch64-unknown-none` (cargo builds a package's library alongside
//! its binary) the crate is empty, so `cargo xtask build` compiles nothing
//! twice and the image is unchanged. The library has no tests of its own
//! (`test = false`, `doctest = false` in Cargo.toml): the binary's unit
//! tests already cover these files.
#![cfg_attr(target_os = "none", no_std)]
// Items only the image (or only `cfg(test)`) uses are unused here.
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]

#[cfg(not(target_os = "none"))]
extern crate alloc;

#[cfg(not(target_os = "none"))]
macro_rules! host_modules {
    ($($m:ident)*) => { $(pub mod $m;)* };
}

// The same module list as main.rs, every one public.
#[cfg(not(target_os = "none"))]
host_modules!(arch boot console debug devices gic ipi mm vgic vm);
