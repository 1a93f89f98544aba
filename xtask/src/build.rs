//! `cargo xtask build`: cross-builds the hypervisor and the test guest and
//! turns both ELFs into bootable images (see [`crate::image`]): the
//! hypervisor with its embedded symbol table, the guest without.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::image::{self, Symbols};
use crate::provision::{CrossToolchain, ToolchainKind, GUEST_TARGET, HYPERVISOR_TARGET};
use crate::say;
use crate::util::{self, command_line, display_path};

/// Which hypervisor image to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flavor {
    /// The normal image (`cargo xtask build` / `run`).
    Normal,
    /// Built with `--features test-hooks`, for the QEMU scenarios only.
    TestHooks,
}

impl Flavor {
    /// The stem of the output files in `target/nmivisor/`.
    pub fn stem(self) -> &'static str {
        match self {
            Flavor::Normal => "hypervisor",
            Flavor::TestHooks => "hypervisor-test",
        }
    }
}

/// The files `cargo xtask build` produces for one image.
#[derive(Clone, Debug)]
pub struct Images {
    /// The ELF (for the hypervisor, with the embedded symbol table), for gdb
    /// and symbolize.
    pub elf: PathBuf,
    /// The flat arm64 Image that QEMU's `-kernel` loads.
    pub bin: PathBuf,
}

impl Images {
    /// Where the hypervisor images of `flavor` are written.
    pub fn paths(flavor: Flavor) -> Images {
        Images::named(flavor.stem())
    }

    /// Where the test guest's images are written.
    pub fn guest_paths() -> Images {
        Images::named(GUEST)
    }

    fn named(stem: &str) -> Images {
        let dir = util::out_dir();
        Images {
            elf: dir.join(format!("{stem}.elf")),
            bin: dir.join(format!("{stem}.bin")),
        }
    }
}

/// The test guest's package, binary and image stem.
pub const GUEST: &str = "guest-test";

/// What one build produced.
#[derive(Clone, Debug)]
pub struct Built {
    /// The hypervisor of the requested flavor.
    pub hypervisor: Images,
    /// The test guest, or why its image could not be made. The hypervisor
    /// does not need it, so this does not fail the whole build: whoever
    /// boots the guest reports it.
    pub guest: Result<Images, String>,
}

impl Built {
    /// The guest images, or an error saying why there are none.
    pub fn guest(&self) -> Result<&Images> {
        self.guest
            .as_ref()
            .map_err(|e| anyhow::anyhow!("the {GUEST} image could not be made: {e}"))
    }
}

/// Builds the hypervisor of `flavor` and the test guest, then writes the
/// patched hypervisor ELF and flat image, and the guest's ELF and image.
pub fn build(tc: &CrossToolchain, flavor: Flavor) -> Result<Built> {
    let exes = cargo_build(tc, flavor)?;
    let hypervisor_elf = exes
        .hypervisor
        .context("cargo did not report the hypervisor executable")?;
    let hypervisor = write_image(&hypervisor_elf, &Images::paths(flavor), Symbols::Embed)?;
    let guest = match exes.guest {
        Some(elf) => write_image(&elf, &Images::guest_paths(), Symbols::Omit),
        None => Err(anyhow::anyhow!(
            "cargo did not report the {GUEST} executable"
        )),
    };
    let guest = guest.map_err(|e| {
        say!("warning: no {GUEST} image: {e:#}");
        format!("{e:#}")
    });
    Ok(Built { hypervisor, guest })
}

/// Makes the image of the ELF at `elf_path` and writes it to `out`.
fn write_image(elf_path: &Path, out: &Images, symbols: Symbols) -> Result<Images> {
    let elf =
        std::fs::read(elf_path).with_context(|| format!("cannot read {}", elf_path.display()))?;
    let built = image::build_image(&elf, symbols)
        .with_context(|| format!("cannot make an image from {}", display_path(elf_path)))?;

    std::fs::create_dir_all(util::out_dir())?;
    std::fs::write(&out.elf, &built.elf)
        .with_context(|| format!("cannot write {}", out.elf.display()))?;
    std::fs::write(&out.bin, &built.bin)
        .with_context(|| format!("cannot write {}", out.bin.display()))?;
    if let Some(t) = built.symtab {
        say!(
            "symbol table: {} functions, {} of {} bytes reserved in {}",
            t.symbols,
            t.len,
            t.capacity,
            image::SYMTAB_SECTION
        );
    }
    say!(
        "ELF:   {} ({} bytes)",
        display_path(&out.elf),
        built.elf.len()
    );
    say!(
        "image: {} ({} bytes, loads at {:#x})",
        display_path(&out.bin),
        built.bin.len(),
        built.load_address
    );
    Ok(out.clone())
}

/// The executables cargo reported.
#[derive(Default)]
struct Executables {
    hypervisor: Option<PathBuf>,
    guest: Option<PathBuf>,
}

/// Runs cargo for the hypervisor and guest-test and returns the paths of
/// the executables it reports. They are built for different targets
/// (`provision::HYPERVISOR_TARGET`, `provision::GUEST_TARGET`), so by two
/// cargo commands.
fn cargo_build(tc: &CrossToolchain, flavor: Flavor) -> Result<Executables> {
    let mut hyp = tc.cargo();
    hyp.args(["build", "--release", "-p", "hypervisor"]);
    if flavor == Flavor::TestHooks {
        hyp.args(["--features", "test-hooks"]);
    }
    hyp.args(tc.target_args(HYPERVISOR_TARGET));
    let mut guest = tc.cargo();
    guest.args(["build", "--release", "-p", GUEST]);
    guest.args(tc.target_args(GUEST_TARGET));
    let how = match tc.kind {
        ToolchainKind::Rustup => "rustup toolchain",
        ToolchainKind::Debian => "Debian toolchain, -Zbuild-std",
    };
    say!("building the {} image and {GUEST} ({how})", flavor.stem());
    Ok(Executables {
        hypervisor: run_cargo(hyp, tc, "hypervisor")?,
        guest: run_cargo(guest, tc, GUEST)?,
    })
}

/// Runs one cargo build and picks the executable of binary `name` out of
/// its JSON messages.
fn run_cargo(mut cmd: Command, tc: &CrossToolchain, name: &str) -> Result<Option<PathBuf>> {
    cmd.arg("--message-format=json-render-diagnostics");
    cmd.stdout(Stdio::piped());
    say!("{}", command_line(&cmd));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", tc.cargo.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut exe = None;
    for line in BufReader::new(stdout).lines() {
        if let Some(path) = executable_of(&line?, name) {
            exe = Some(path);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cargo build of {name} failed ({status})");
    }
    Ok(exe)
}

/// Picks the executable of the binary target `name` out of one line of
/// cargo's JSON messages.
fn executable_of(line: &str, name: &str) -> Option<PathBuf> {
    let msg: serde_json::Value = serde_json::from_str(line).ok()?;
    if msg["reason"] != "compiler-artifact" || msg["target"]["name"] != name {
        return None;
    }
    msg["executable"].as_str().map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_artifacts() {
        let line = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/hypervisor#0.1.0","target":{"kind":["bin"],"name":"hypervisor"},"executable":"/w/target/aarch64-unknown-none/release/hypervisor","fresh":true}"#;
        assert_eq!(
            executable_of(line, "hypervisor"),
            Some(PathBuf::from(
                "/w/target/aarch64-unknown-none/release/hypervisor"
            ))
        );
        assert_eq!(executable_of(line, GUEST), None);
        let guest = r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"guest-test"},"executable":"/w/target/aarch64-unknown-none/release/guest-test"}"#;
        assert_eq!(
            executable_of(guest, GUEST),
            Some(PathBuf::from(
                "/w/target/aarch64-unknown-none/release/guest-test"
            ))
        );
        let lib = r#"{"reason":"compiler-artifact","target":{"name":"symtab"},"executable":null}"#;
        assert_eq!(executable_of(lib, "symtab"), None);
        assert_eq!(executable_of("not json", "hypervisor"), None);
    }
}
