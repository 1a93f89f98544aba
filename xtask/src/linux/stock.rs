//! Debian's stock arm64 kernel, the kernel a user would boot: the
//! `linux-image-<ABI>-arm64-unsigned` package for arm64, fetched with
//! `apt-get download` and unpacked into the cache ([`crate::deb`]), never
//! installed. Its `boot/vmlinuz-<ABI>-arm64` is a plain arm64 Image (the
//! signed package holds the same kernel as an EFI binary; the unsigned one
//! is what a bootloader like QEMU's `-kernel` takes as it is).
//!
//! Which one: the metapackage [`META`] depends on the current
//! `linux-image-<ABI>-arm64`; its `-unsigned` twin at apt's candidate
//! version is the kernel. If the metapackage is gone, the newest
//! `linux-image-6.12.*-arm64-unsigned` apt knows is taken instead.
//!
//! It has no `CONFIG_ARM64_PSEUDO_NMI`, and has SVE, SME, PAuth, BTI and
//! KASLR on: a test of what nmivisor shows a guest's CPU, not of NMIs. It
//! is also the host kernel of the KVM peer of `cargo xtask bench --kvm`
//! (`CONFIG_KVM=y`).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{ensure, Context, Result};

use crate::deb::{self, Pkg, View};
use crate::say;
use crate::util::output_of;

/// The metapackage that follows Debian 12's current 6.12 arm64 kernel.
pub const META: &str = "linux-image-6.12-arm64";

/// The stock kernel, unpacked.
#[derive(Clone, Debug)]
pub struct StockKernel {
    /// The package, e.g. `linux-image-6.12.117+deb12-arm64-unsigned`.
    pub package: String,
    /// Its Debian version, e.g. `6.12.117-1~deb12u1`.
    pub version: String,
    /// `boot/vmlinuz-<release>`: the arm64 Image.
    pub image: PathBuf,
    /// The kernel's symbols in System.map format, if they could be had
    /// (see [`system_map`]).
    pub system_map: Option<PathBuf>,
}

/// The unsigned image package behind the signed one the metapackage's
/// dependency names (`linux-image-6.12.117+deb12-arm64:arm64` gives
/// `linux-image-6.12.117+deb12-arm64-unsigned`).
pub fn unsigned_of(dependency: &str) -> Option<String> {
    let name = dependency.split(':').next()?;
    let abi = name.strip_prefix("linux-image-")?;
    (abi.ends_with("-arm64") && abi.starts_with(|c: char| c.is_ascii_digit()))
        .then(|| format!("{name}-unsigned"))
}

/// The newest of `linux-image-6.12.N+debXX-arm64-unsigned` among `names`
/// (by N, then name).
pub fn newest_unsigned<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let re =
        regex::Regex::new(r"^linux-image-6\.12\.(\d+)\+deb\d+-arm64-unsigned$").expect("valid");
    names
        .into_iter()
        .filter_map(|n| {
            let sub: u32 = re.captures(n)?[1].parse().ok()?;
            Some((sub, n.to_string()))
        })
        .max()
        .map(|(_, n)| n)
}

/// Which package is the stock kernel (see the module documentation).
fn choose_package() -> Result<String> {
    match deb::depends(View::System, &Pkg::arch(META, "arm64"), false) {
        Ok(deps) => {
            if let Some(p) = deps.iter().find_map(|d| unsigned_of(d)) {
                return Ok(p);
            }
            say!(
                "linux: {META} names no linux-image-<ABI>-arm64 ({deps:?}); looking for the newest"
            );
        }
        Err(e) => say!("linux: {e:#}; looking for the newest 6.12 arm64 kernel"),
    }
    let names = output_of(Command::new("apt-cache").args(["pkgnames", "linux-image-6.12."]))
        .context("`apt-cache pkgnames` failed")?;
    newest_unsigned(names.lines()).context(
        "apt knows no linux-image-6.12.*-arm64-unsigned package (run `dpkg --add-architecture \
         arm64 && apt-get update` as root)",
    )
}

/// Fetches (or finds in the cache) the stock kernel.
pub fn fetch() -> Result<StockKernel> {
    let package = choose_package()?;
    let f = deb::fetch_candidates(View::System, &[Pkg::arch(&package, "arm64")])?.remove(0);
    let release = package
        .strip_prefix("linux-image-")
        .and_then(|p| p.strip_suffix("-unsigned"))
        .context("unexpected package name")?
        .to_string();
    let image = f.dir.join(format!("boot/vmlinuz-{release}"));
    let head = std::fs::read(&image)
        .with_context(|| format!("{package} {} has no {}", f.version, image.display()))?;
    ensure!(
        head.len() > 64 && &head[0x38..0x3c] == b"ARM\x64",
        "{} is not an arm64 Image (no ARM\\x64 magic at 0x38)",
        image.display()
    );
    say!(
        "linux: stock kernel {package} {} ({:.1} MB .deb, Image {:.1} MB)",
        f.version,
        f.deb_bytes as f64 / 1e6,
        head.len() as f64 / 1e6
    );
    let system_map = system_map(&f.dir, &release, &image);
    Ok(StockKernel {
        package,
        version: f.version,
        image,
        system_map,
    })
}

/// The stock kernel's symbols as a System.map. Debian's package holds
/// only a one-line placeholder at `boot/System.map-<release>` ("The real
/// System.map is in the linux-image-<version>-dbg package", a 1 GB
/// download); a real map there is used as it is. Otherwise the symbols
/// come from the kernel's own kallsyms tables inside the Image
/// ([`super::kallsyms`]), written once to `System.map-kallsyms` next to
/// it. `None` (with a note) if neither works: the dumps then show bare
/// guest addresses.
pub fn system_map(
    dir: &std::path::Path,
    release: &str,
    image: &std::path::Path,
) -> Option<PathBuf> {
    let shipped = dir.join(format!("boot/System.map-{release}"));
    if let Ok(text) = std::fs::read_to_string(&shipped) {
        if text
            .lines()
            .filter(|l| l.contains(" T ") || l.contains(" t "))
            .take(100)
            .count()
            == 100
        {
            return Some(shipped);
        }
    }
    let out = dir.join("System.map-kallsyms");
    if out.exists() {
        return Some(out);
    }
    let result = std::fs::read(image)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| super::kallsyms::extract(&bytes))
        .and_then(|map| {
            let tmp = out.with_extension("tmp");
            std::fs::write(&tmp, &map)?;
            std::fs::rename(&tmp, &out)?;
            Ok(map.lines().count())
        });
    match result {
        Ok(n) => {
            say!(
                "linux: stock kernel symbols: {n} from the Image's kallsyms, {}",
                out.display()
            );
            Some(out)
        }
        Err(e) => {
            say!("linux: no symbols for the stock kernel ({e:#}); its dumps show bare guest addresses");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_choice() {
        assert_eq!(
            unsigned_of("linux-image-6.12.117+deb12-arm64:arm64").as_deref(),
            Some("linux-image-6.12.117+deb12-arm64-unsigned")
        );
        assert_eq!(unsigned_of("linux-image-6.12.117+deb12-cloud-arm64x"), None);
        assert_eq!(unsigned_of("linux-base"), None);
        assert_eq!(unsigned_of("linux-image-arm64"), None);
        let names = [
            "linux-image-6.12.99+deb12-arm64-unsigned",
            "linux-image-6.12.117+deb12-arm64-unsigned",
            "linux-image-6.12.117+deb12-rt-arm64-unsigned",
            "linux-image-6.12.117+deb12-arm64-16k-unsigned",
            "linux-image-6.12.117+deb12-arm64-dbg",
            "linux-image-6.12.111+deb12-arm64-unsigned",
        ];
        assert_eq!(
            newest_unsigned(names).as_deref(),
            Some("linux-image-6.12.117+deb12-arm64-unsigned")
        );
        assert_eq!(newest_unsigned([]), None);
    }
}
