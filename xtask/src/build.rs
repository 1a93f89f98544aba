//! `cargo xtask build`: cross-builds the hypervisor (and the test guest) and
//! turns the hypervisor ELF into the bootable image (see [`crate::image`]).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::provision::{CrossToolchain, ToolchainKind};
use crate::util::{self, command_line, display_path};
use crate::{image, say};

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

/// The files `cargo xtask build` produces for one flavor.
#[derive(Clone, Debug)]
pub struct Images {
    /// The ELF with the embedded symbol table (for gdb and symbolize).
    pub elf: PathBuf,
    /// The flat arm64 Image that QEMU's `-kernel` loads.
    pub bin: PathBuf,
}

impl Images {
    /// Where the images of `flavor` are written.
    pub fn paths(flavor: Flavor) -> Images {
        let dir = util::out_dir();
        Images {
            elf: dir.join(format!("{}.elf", flavor.stem())),
            bin: dir.join(format!("{}.bin", flavor.stem())),
        }
    }
}

/// Builds the hypervisor of `flavor` and the test guest, then writes the
/// patched ELF and the flat image.
pub fn build(tc: &CrossToolchain, flavor: Flavor) -> Result<Images> {
    let elf_path = cargo_build(tc, flavor)?;
    let elf =
        std::fs::read(&elf_path).with_context(|| format!("cannot read {}", elf_path.display()))?;
    let built = image::build_image(&elf)
        .with_context(|| format!("cannot make an image from {}", display_path(&elf_path)))?;

    let out = Images::paths(flavor);
    std::fs::create_dir_all(util::out_dir())?;
    std::fs::write(&out.elf, &built.elf)
        .with_context(|| format!("cannot write {}", out.elf.display()))?;
    std::fs::write(&out.bin, &built.bin)
        .with_context(|| format!("cannot write {}", out.bin.display()))?;
    say!(
        "symbol table: {} functions, {} of {} bytes reserved in {}",
        built.symbols,
        built.symtab_len,
        built.symtab_capacity,
        image::SYMTAB_SECTION
    );
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
    Ok(out)
}

/// Runs cargo for the hypervisor and guest-test and returns the path of the
/// hypervisor executable it reports.
fn cargo_build(tc: &CrossToolchain, flavor: Flavor) -> Result<PathBuf> {
    let mut cmd = tc.cargo();
    cmd.args(["build", "--release", "-p", "hypervisor", "-p", "guest-test"]);
    if flavor == Flavor::TestHooks {
        cmd.args(["--features", "hypervisor/test-hooks"]);
    }
    cmd.args(tc.target_args());
    cmd.arg("--message-format=json-render-diagnostics");
    cmd.stdout(Stdio::piped());
    let how = match tc.kind {
        ToolchainKind::Rustup => "rustup toolchain",
        ToolchainKind::Debian => "Debian toolchain, -Zbuild-std",
    };
    say!(
        "building the {} image ({how}): {}",
        flavor.stem(),
        command_line(&cmd)
    );

    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", tc.cargo.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut executable = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(path) = hypervisor_executable(&line) {
            executable = Some(path);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    executable.context("cargo did not report the hypervisor executable")
}

/// Picks the hypervisor binary out of one line of cargo's JSON messages.
fn hypervisor_executable(line: &str) -> Option<PathBuf> {
    let msg: serde_json::Value = serde_json::from_str(line).ok()?;
    if msg["reason"] != "compiler-artifact" || msg["target"]["name"] != "hypervisor" {
        return None;
    }
    msg["executable"].as_str().map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_hypervisor_artifact() {
        let line = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/hypervisor#0.1.0","target":{"kind":["bin"],"name":"hypervisor"},"executable":"/w/target/aarch64-unknown-none/release/hypervisor","fresh":true}"#;
        assert_eq!(
            hypervisor_executable(line),
            Some(PathBuf::from(
                "/w/target/aarch64-unknown-none/release/hypervisor"
            ))
        );
        let lib = r#"{"reason":"compiler-artifact","target":{"name":"symtab"},"executable":null}"#;
        assert_eq!(hypervisor_executable(lib), None);
        assert_eq!(hypervisor_executable("not json"), None);
    }
}
