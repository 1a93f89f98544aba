//! The Debian packages the kernel build needs (cross compiler, flex,
//! bison, ...), installed with apt-get when missing, and the kernel source
//! package.

use std::path::Path;

use anyhow::{bail, Result};

use super::{SOURCE_PACKAGE, SOURCE_TARBALL};
use crate::provision;
use crate::util::which;

/// A build dependency: found when `probe` exists (a program on PATH, or an
/// absolute file), installed with its Debian package otherwise.
struct Dependency {
    probe: &'static str,
    package: &'static str,
}

const KERNEL_DEPENDENCIES: &[Dependency] = &[
    Dependency {
        probe: "make",
        package: "make",
    },
    Dependency {
        probe: "gcc",
        package: "gcc",
    },
    Dependency {
        probe: "/usr/include/stdio.h",
        package: "libc6-dev",
    },
    Dependency {
        probe: "aarch64-linux-gnu-gcc",
        package: "gcc-aarch64-linux-gnu",
    },
    Dependency {
        probe: "aarch64-linux-gnu-ld",
        package: "binutils-aarch64-linux-gnu",
    },
    Dependency {
        probe: "flex",
        package: "flex",
    },
    Dependency {
        probe: "bison",
        package: "bison",
    },
    Dependency {
        probe: "bc",
        package: "bc",
    },
    Dependency {
        probe: "perl",
        package: "perl",
    },
    Dependency {
        probe: "/usr/include/openssl/ssl.h",
        package: "libssl-dev",
    },
    Dependency {
        probe: "/usr/include/gelf.h",
        package: "libelf-dev",
    },
    Dependency {
        probe: "xz",
        package: "xz-utils",
    },
    Dependency {
        probe: "tar",
        package: "tar",
    },
];

fn present(probe: &str) -> bool {
    if probe.starts_with('/') {
        Path::new(probe).exists()
    } else {
        which(probe).is_some()
    }
}

/// Installs whatever of the kernel's build dependencies is missing (and
/// the source package unless `--kernel-src` gives a tree).
pub fn provision_kernel(need_source: bool) -> Result<()> {
    let mut missing: Vec<&str> = KERNEL_DEPENDENCIES
        .iter()
        .filter(|d| !present(d.probe))
        .map(|d| d.package)
        .collect();
    if need_source && !Path::new(SOURCE_TARBALL).exists() {
        missing.push(SOURCE_PACKAGE);
    }
    if missing.is_empty() {
        return Ok(());
    }
    provision::apt_install(&missing, "the Linux guest's build dependencies")?;
    let still: Vec<&str> = KERNEL_DEPENDENCIES
        .iter()
        .filter(|d| !present(d.probe))
        .map(|d| d.probe)
        .collect();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(", "));
    }
    Ok(())
}
