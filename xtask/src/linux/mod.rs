//! `cargo xtask linux`: the Linux guest, a 6.12 kernel with
//! `CONFIG_ARM64_PSEUDO_NMI` and a busybox initramfs whose `/init` runs the
//! test flows of the Linux scenarios.
//!
//! The steps live in their own files: [`apt`] installs the build
//! dependencies, [`kernel`] configures and builds the kernel, [`initramfs`]
//! fetches busybox and packs `/init`.
//!
//! Kernel: Debian's `linux-source-6.12` (or a tree given with
//! `--kernel-src`), `make allnoconfig` with the repo's fragment
//! (`linux/nmivisor.config`) as `KCONFIG_ALLCONFIG`, then `make olddefconfig`;
//! every option of the fragment is then checked in the final `.config`
//! ([`kconfig::check`]) before `make Image`.
//!
//! Initramfs: Debian's `busybox-static:arm64` and `linux/init.sh`
//! ([`initramfs`]).
//!
//! Outputs are cached outside the repo, keyed by their inputs ([`cache`]): a
//! second run finds them and only prints their paths.

pub mod apt;
pub mod cache;
pub mod counter;
pub mod initramfs;
pub mod kallsyms;
pub mod kconfig;
pub mod kernel;
pub mod stock;

pub use initramfs::{busybox_binary, initramfs};

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;

use crate::say;
use crate::util::{self, elapsed, workspace_root};

/// `ARCH=` for every make call.
pub const ARCH: &str = "arm64";
/// `CROSS_COMPILE=` for every make call.
pub const CROSS_COMPILE: &str = "aarch64-linux-gnu-";

/// Debian's kernel source package and the tarball it installs.
pub const SOURCE_PACKAGE: &str = "linux-source-6.12";
const SOURCE_TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";
/// The top directory inside the tarball.
const SOURCE_TOP: &str = "linux-source-6.12";

/// Debian's static busybox for arm64 (a foreign-architecture package).
pub const BUSYBOX_PACKAGE: &str = "busybox-static:arm64";

/// The command line every Linux guest gets; `--cmdline` and the scenarios
/// add to it.
pub const BASE_CMDLINE: &str = "console=ttyAMA0 irqchip.gicv3_pseudo_nmi=1";
/// The name of the Linux VM in a bundle.
pub const VM_NAME: &str = "linux";
/// The Linux VM's memory (also `-m` of a native run).
pub const VM_MEMORY: &str = "512M";
/// QEMU's `-m` when the hypervisor runs the Linux VM.
pub const HOST_MEMORY: &str = "2G";
/// CPUs of the Linux runs (`-smp`; the VM gets them all).
pub const CPUS: u32 = 4;

/// The kernel config fragment kept in the repo.
pub fn fragment_path() -> PathBuf {
    workspace_root().join("linux/nmivisor.config")
}

/// The initramfs' `/init`, kept in the repo.
pub fn init_path() -> PathBuf {
    workspace_root().join("linux/init.sh")
}

/// The full guest command line: [`BASE_CMDLINE`] plus `extra`.
pub fn cmdline(extra: &str) -> String {
    let extra = extra.trim();
    if extra.is_empty() {
        BASE_CMDLINE.to_string()
    } else {
        format!("{BASE_CMDLINE} {extra}")
    }
}

/// Options of `cargo xtask linux`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// A kernel tree to build instead of Debian's `linux-source-6.12`.
    pub kernel_src: Option<PathBuf>,
    /// Parallel make jobs (default: the number of CPUs).
    pub jobs: Option<usize>,
}

/// The kernel's outputs.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// `arch/arm64/boot/Image`: what QEMU or the bundle boots.
    pub image: PathBuf,
    /// The kernel's symbol map, for symbolizing guest addresses.
    pub system_map: PathBuf,
    /// The kernel ELF (symbols, no DWARF).
    pub vmlinux: PathBuf,
    /// The final `.config`.
    pub config: PathBuf,
}

/// Everything `cargo xtask linux` produces.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// The kernel.
    pub kernel: Kernel,
    /// The gzip'd cpio initramfs.
    pub initramfs: PathBuf,
}

impl Artifacts {
    /// Prints the paths on stdout, one `NAME PATH` line each.
    pub fn print(&self) {
        for (name, path) in [
            ("Image", &self.kernel.image),
            ("System.map", &self.kernel.system_map),
            ("vmlinux", &self.kernel.vmlinux),
            ("config", &self.kernel.config),
            ("initramfs", &self.initramfs),
        ] {
            println!("{name:<11}{}", path.display());
        }
    }
}

/// Builds (or finds in the cache) the kernel and the initramfs.
pub fn build(opts: &Options) -> Result<Artifacts> {
    let started = Instant::now();
    let _lock = lock_cache()?;
    // The initramfs first: it takes seconds, the kernel minutes.
    let initramfs = initramfs::initramfs_locked()?;
    let kernel = kernel::kernel(opts)?;
    say!(
        "linux: kernel and initramfs ready ({})",
        elapsed(started.elapsed())
    );
    Ok(Artifacts { kernel, initramfs })
}

/// Takes the cache's lock file for the life of the returned handle: two
/// xtask runs (say, `cargo xtask test` in two shells of the same tree) must
/// not run make in the same build directory at once.
fn lock_cache() -> Result<std::fs::File> {
    util::lock_dir(&cache::root(), "building the Linux guest")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        assert_eq!(cmdline(""), BASE_CMDLINE);
        assert_eq!(
            cmdline(" nmv.test=boot "),
            "console=ttyAMA0 irqchip.gicv3_pseudo_nmi=1 nmv.test=boot"
        );
    }
}
