//! Provisioning: makes sure the tools nmivisor needs are present, installing
//! them with apt-get where that is possible (CI runs on a fresh Debian 12
//! machine as root), and stopping with a precise instruction where not.
//!
//! The cross toolchain for `aarch64-unknown-none-softfloat` (the hypervisor)
//! and `aarch64-unknown-none` (guest-test) is found, in this order:
//!
//! 1. the active rustup toolchain already has the target;
//! 2. `rustup target add` of both targets succeeds;
//! 3. Debian's `rustc-web cargo-web rust-web-src` packages, used with
//!    `RUSTC_BOOTSTRAP=1 -Zbuild-std`. Debian's rustc ships no `rust-lld`, so the
//!    linker is the rustup toolchain's `rust-lld` if there is one, else
//!    Debian's `ld.lld` (package `lld`).
//!
//! The resolved toolchain is cached in `target/nmivisor/` and revalidated with
//! cheap file checks only.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;

use crate::qemu::Qemu;
use crate::say;
use crate::util::{self, is_executable, output_of, which, workspace_root};

/// The bare-metal target of the hypervisor: no FP/SIMD code at all, so
/// that a guest's FP/SIMD, SVE and SME state stays untouched across traps
/// (docs/cpu-features.md).
pub const HYPERVISOR_TARGET: &str = "aarch64-unknown-none-softfloat";

/// The bare-metal target of the test guest (an EL1 program that uses
/// FP/SIMD on purpose).
pub const GUEST_TARGET: &str = "aarch64-unknown-none";

/// Every target xtask builds for.
pub const TARGETS: &[&str] = &[HYPERVISOR_TARGET, GUEST_TARGET];

/// Debian packages that make up the fallback toolchain.
const DEBIAN_RUST_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src"];

/// Bump when the cache format or its meaning changes.
const CACHE_VERSION: &str = "2";

/// Which cross toolchain to use (`--toolchain`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ToolchainChoice {
    /// rustup if it has or can add the target, else Debian's packages.
    Auto,
    /// Only the rustup toolchain (adds the target if needed).
    Rustup,
    /// Only Debian's rustc-web/cargo-web with -Zbuild-std (installs them).
    Debian,
}

impl fmt::Display for ToolchainChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Rustup => "rustup",
            Self::Debian => "debian",
        })
    }
}

/// Where the cross toolchain came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolchainKind {
    /// A rustup toolchain with both bare-metal targets installed.
    Rustup,
    /// Debian's rustc-web/cargo-web, building `core`/`alloc` from source.
    Debian,
}

/// A resolved toolchain able to build for every one of [`TARGETS`].
#[derive(Clone, Debug)]
pub struct CrossToolchain {
    /// Where it came from.
    pub kind: ToolchainKind,
    /// The cargo to run.
    pub cargo: PathBuf,
    /// The rustc cargo must use (Debian only).
    pub rustc: Option<PathBuf>,
    /// The linker for the target (Debian only: `rust-lld` or `ld.lld`).
    pub linker: Option<PathBuf>,
    /// The sysroot whose target libraries are used (for cache validation).
    pub sysroot: PathBuf,
}

impl CrossToolchain {
    /// A `cargo` command set up for this toolchain. Callers add the
    /// subcommand first and then [`CrossToolchain::target_args`].
    ///
    /// `RUSTFLAGS` is never set: it would replace the per-target rustflags in
    /// `.cargo/config.toml`, which force frame pointers for the stack dumps.
    pub fn cargo(&self) -> Command {
        let mut cmd = Command::new(&self.cargo);
        cmd.current_dir(workspace_root());
        if self.kind == ToolchainKind::Debian {
            cmd.env("RUSTC_BOOTSTRAP", "1");
            if let Some(rustc) = &self.rustc {
                cmd.env("RUSTC", rustc);
            }
            if let Some(rustdoc) = self.rustc.as_ref().map(|r| r.with_file_name("rustdoc")) {
                if is_executable(&rustdoc) {
                    cmd.env("RUSTDOC", rustdoc);
                }
            }
            if let Some(linker) = &self.linker {
                for target in TARGETS {
                    let var = format!(
                        "CARGO_TARGET_{}_LINKER",
                        target.to_uppercase().replace('-', "_")
                    );
                    cmd.env(var, linker);
                }
            }
        }
        cmd
    }

    /// `--target` plus, for Debian's toolchain, the `-Zbuild-std` flags and
    /// a target directory of its own (so that switching between the two
    /// toolchains does not rebuild everything each time).
    pub fn target_args(&self, target: &str) -> Vec<String> {
        let mut args = vec!["--target".to_string(), target.to_string()];
        if self.kind == ToolchainKind::Debian {
            args.push("-Zbuild-std=core,alloc,compiler_builtins".into());
            args.push("-Zbuild-std-features=compiler-builtins-mem".into());
            args.push("--target-dir".into());
            args.push(
                util::target_dir()
                    .join("debian-toolchain")
                    .display()
                    .to_string(),
            );
        }
        args
    }

    fn describe(&self) -> String {
        match self.kind {
            ToolchainKind::Rustup => format!("rustup toolchain ({})", self.sysroot.display()),
            ToolchainKind::Debian => format!(
                "Debian's rustc-web with -Zbuild-std (cargo {}, rustc {}, linker {})",
                self.cargo.display(),
                self.rustc.as_deref().unwrap_or(Path::new("?")).display(),
                self.linker.as_deref().unwrap_or(Path::new("?")).display(),
            ),
        }
    }
}

/// Finds (and if need be installs) a toolchain for [`TARGETS`].
pub fn cross_toolchain(choice: ToolchainChoice) -> Result<CrossToolchain> {
    if std::env::var_os("RUSTFLAGS").is_some() {
        say!(
            "warning: RUSTFLAGS is set and replaces .cargo/config.toml's \
             `-C force-frame-pointers=yes`; stack dumps may be incomplete"
        );
    }
    if let Some(tc) = load_cache(choice) {
        return Ok(tc);
    }
    say!(
        "provisioning the toolchain for {} (--toolchain {choice})",
        TARGETS.join(" and ")
    );
    let tc = match choice {
        ToolchainChoice::Rustup => rustup_toolchain()?
            .context("the rustup toolchain cannot provide the target; try --toolchain debian")?,
        ToolchainChoice::Debian => debian_toolchain()?,
        ToolchainChoice::Auto => match rustup_toolchain() {
            Ok(Some(tc)) => tc,
            Ok(None) => debian_toolchain()?,
            Err(e) => {
                say!("rustup path failed: {e:#}");
                debian_toolchain()?
            }
        },
    };
    say!("using {}", tc.describe());
    store_cache(choice, &tc);
    Ok(tc)
}

/// Steps (a) and (b): the rustup toolchain, adding the target if allowed.
fn rustup_toolchain() -> Result<Option<CrossToolchain>> {
    let Some(rustup) = which("rustup") else {
        say!("rustup is not installed: skipping the rustup toolchain");
        return Ok(None);
    };
    let missing = |rustup: &Path| -> Vec<&'static str> {
        let installed = output_of(
            Command::new(rustup)
                .args(["target", "list", "--installed"])
                .current_dir(workspace_root()),
        )
        .unwrap_or_default();
        TARGETS
            .iter()
            .copied()
            .filter(|t| !installed.lines().any(|l| l.trim() == *t))
            .collect()
    };
    let wanted = missing(&rustup);
    if wanted.is_empty() {
        say!(
            "(a) the active rustup toolchain already has {}",
            TARGETS.join(" and ")
        );
    } else {
        let list = wanted.join(" ");
        say!("(b) running `rustup target add {list}`");
        let ok = Command::new(&rustup)
            .args(["target", "add"])
            .args(&wanted)
            .current_dir(workspace_root())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let still = missing(&rustup);
        if !ok || !still.is_empty() {
            say!(
                "(b) `rustup target add {list}` did not work; still missing: {}",
                still.join(" ")
            );
            return Ok(None);
        }
        say!("(b) added {list} to the rustup toolchain");
    }
    let sysroot = output_of(
        Command::new("rustc")
            .args(["--print", "sysroot"])
            .current_dir(workspace_root()),
    )
    .context("`rustc --print sysroot` failed")?;
    Ok(Some(CrossToolchain {
        kind: ToolchainKind::Rustup,
        cargo: which("cargo").unwrap_or_else(|| "cargo".into()),
        rustc: None,
        linker: None,
        sysroot: PathBuf::from(sysroot.trim()),
    }))
}

/// Step (c): Debian's rustc-web/cargo-web/rust-web-src with -Zbuild-std.
fn debian_toolchain() -> Result<CrossToolchain> {
    say!(
        "(c) using Debian's {} with -Zbuild-std",
        DEBIAN_RUST_PACKAGES.join(" ")
    );
    let missing = not_installed(DEBIAN_RUST_PACKAGES);
    if !missing.is_empty() {
        apt_install(
            &missing,
            "Debian's Rust toolchain (fallback for the bare-metal target)",
        )?;
    }
    let cargo = dpkg_binary("cargo-web", "cargo")?;
    let rustc = dpkg_binary("rustc-web", "rustc")?;
    let sysroot = output_of(Command::new(&rustc).args(["--print", "sysroot"]))
        .map(|s| PathBuf::from(s.trim()))
        .with_context(|| format!("`{} --print sysroot` failed", rustc.display()))?;
    let src = sysroot.join("lib/rustlib/src/rust/library");
    if !src.is_dir() {
        bail!(
            "Debian's rustc has no library source at {} (package rust-web-src): \
             run `apt-get install -y rust-web-src`",
            src.display()
        );
    }
    let linker = match rustup_rust_lld() {
        Some(lld) => {
            say!(
                "(c) linker: the rustup toolchain's rust-lld {}",
                lld.display()
            );
            lld
        }
        None => {
            let lld = debian_ld_lld()?;
            say!("(c) linker: Debian's ld.lld {}", lld.display());
            lld
        }
    };
    Ok(CrossToolchain {
        kind: ToolchainKind::Debian,
        cargo,
        rustc: Some(rustc),
        linker: Some(linker),
        sysroot,
    })
}

/// The rustup toolchain's `rust-lld`, if there is one. Setting
/// `NMIVISOR_NO_RUST_LLD=1` ignores it (to test the `ld.lld` fallback).
fn rustup_rust_lld() -> Option<PathBuf> {
    if std::env::var_os("NMIVISOR_NO_RUST_LLD").is_some_and(|v| v != "0") {
        say!("NMIVISOR_NO_RUST_LLD is set: not looking for rustup's rust-lld");
        return None;
    }
    // Only a rustup-managed rustc has rust-lld; Debian's /usr/bin/rustc has not.
    which("rustup")?;
    let rustc = which("rustc")?;
    let run = |args: &[&str]| {
        output_of(
            Command::new(&rustc)
                .args(args)
                .current_dir(workspace_root()),
        )
    };
    let sysroot = run(&["--print", "sysroot"])?;
    let host = run(&["-vV"])?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))?;
    let lld = Path::new(sysroot.trim()).join(format!("lib/rustlib/{}/bin/rust-lld", host.trim()));
    is_executable(&lld).then_some(lld)
}

/// Debian's `ld.lld`, installing the `lld` package if needed.
fn debian_ld_lld() -> Result<PathBuf> {
    if let Some(lld) = which("ld.lld") {
        return Ok(lld);
    }
    apt_install(&["lld"], "a linker for the bare-metal target (ld.lld)")?;
    which("ld.lld")
        .or_else(|| {
            dpkg_files("lld")
                .into_iter()
                .find(|p| p.ends_with("bin/ld.lld"))
        })
        .context("package lld is installed but ld.lld was not found on PATH")
}

/// The QEMU to use: `choice` (from `--qemu` or `NMIVISOR_QEMU`) is a
/// binary, or `qemu10` for QEMU 10 fetched into the cache
/// ([`crate::qemu::qemu10`]); without a choice, the system's
/// `qemu-system-aarch64`, installing Debian's `qemu-system-arm` if needed.
pub fn qemu(choice: Option<&Path>) -> Result<Qemu> {
    match choice {
        Some(p) if p == Path::new(crate::qemu::QEMU10_LABEL) => crate::qemu::qemu10(),
        Some(p) => Ok(Qemu::binary("given", p)),
        None => Ok(Qemu::binary(crate::qemu::SYSTEM_LABEL, system_qemu()?)),
    }
}

/// The system's `qemu-system-aarch64`, installing Debian's
/// `qemu-system-arm` if needed.
fn system_qemu() -> Result<PathBuf> {
    if let Some(qemu) = which("qemu-system-aarch64") {
        return Ok(qemu);
    }
    say!("qemu-system-aarch64 not found");
    apt_install(&["qemu-system-arm"], "QEMU (qemu-system-aarch64)")?;
    let qemu = which("qemu-system-aarch64")
        .context("qemu-system-arm was installed but qemu-system-aarch64 is not on PATH")?;
    say!("installed {}", qemu.display());
    Ok(qemu)
}

/// `gdb-multiarch`, installing it if possible. It is optional: on failure
/// this only warns and returns `None`.
pub fn gdb() -> Option<PathBuf> {
    if let Some(gdb) = which("gdb-multiarch") {
        return Some(gdb);
    }
    match apt_install(&["gdb-multiarch"], "gdb-multiarch (optional, for --gdb)") {
        Ok(()) => which("gdb-multiarch"),
        Err(e) => {
            say!("warning: {e:#}");
            None
        }
    }
}

/// What this xtask process knows about apt's package lists.
///
/// `apt-get update` is slow, so it runs at most once per process, but only
/// as long as the sources stay the same: a new dpkg architecture (or any
/// other change of sources) needs lists that no earlier update fetched,
/// so it makes the next [`apt_update`] run again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AptLists {
    /// The lists were fetched for the current sources.
    fresh: bool,
}

impl AptLists {
    /// Whether an `apt-get update` is needed before packages can be found.
    pub fn needs_update(self) -> bool {
        !self.fresh
    }

    /// `apt-get update` succeeded.
    pub fn updated(&mut self) {
        self.fresh = true;
    }

    /// The sources changed (e.g. `dpkg --add-architecture`): the lists no
    /// longer describe them.
    pub fn sources_changed(&mut self) {
        self.fresh = false;
    }
}

static APT_LISTS: Mutex<AptLists> = Mutex::new(AptLists { fresh: false });

fn apt_lists() -> std::sync::MutexGuard<'static, AptLists> {
    APT_LISTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Records that apt's sources changed, so that the next [`apt_update`]
/// fetches lists again.
pub fn apt_sources_changed() {
    apt_lists().sources_changed();
}

/// The packages of `packages` that dpkg does not have installed.
pub fn not_installed<'a>(packages: &[&'a str]) -> Vec<&'a str> {
    packages
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect()
}

/// Installs Debian packages with apt-get, or fails with the exact command
/// the user has to run when that is not possible here. Afterwards it
/// checks that dpkg really has each of them, and names any that it has not.
pub fn apt_install(packages: &[&str], what: &str) -> Result<()> {
    let list = packages.join(" ");
    if which("apt-get").is_none() {
        bail!(
            "{what} is missing and this machine has no apt-get: \
             install the equivalent of the Debian package(s) `{list}`"
        );
    }
    if !util::is_root() {
        bail!(
            "{what} is missing and xtask is not running as root, so it cannot \
             install it: run `sudo apt-get update && sudo apt-get install -y {list}`"
        );
    }
    say!("installing {what}: apt-get install -y {list}");
    apt_update()?;
    util::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| format!("could not install {list}"))?;
    let missing = not_installed(packages);
    if !missing.is_empty() {
        bail!(
            "apt-get install finished but dpkg still lacks {} (for {what})",
            missing.join(" ")
        );
    }
    Ok(())
}

/// Runs `apt-get update` (as root) unless the lists were already fetched
/// in this process for the current sources (see [`AptLists`]).
pub fn apt_update() -> Result<()> {
    update_lists(&mut System, &mut apt_lists())
}

/// Makes dpkg accept packages of a foreign architecture (`arm64` for the
/// Linux guest's busybox), then fetches the lists that now include it.
pub fn ensure_dpkg_architecture(arch: &str) -> Result<()> {
    if !util::is_root() && !System.foreign_architectures()?.iter().any(|a| a == arch) {
        bail!(
            "dpkg does not know the {arch} architecture and xtask is not root: run \
             `sudo dpkg --add-architecture {arch} && sudo apt-get update`"
        );
    }
    add_architecture(&mut System, &mut apt_lists(), arch)
}

/// The commands provisioning runs on the host; tests use a fake.
trait Host {
    /// Runs a command (program and arguments), failing unless it succeeds.
    fn run(&mut self, argv: &[&str]) -> Result<()>;
    /// `dpkg --print-foreign-architectures`.
    fn foreign_architectures(&self) -> Result<Vec<String>>;
}

/// The real host.
struct System;

impl Host for System {
    fn run(&mut self, argv: &[&str]) -> Result<()> {
        let (program, args) = argv.split_first().context("empty command")?;
        util::run(
            Command::new(program)
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    }

    fn foreign_architectures(&self) -> Result<Vec<String>> {
        let out = output_of(Command::new("dpkg").arg("--print-foreign-architectures"))
            .context("`dpkg --print-foreign-architectures` failed: is this a Debian system?")?;
        Ok(out.split_whitespace().map(str::to_owned).collect())
    }
}

fn update_lists(host: &mut impl Host, lists: &mut AptLists) -> Result<()> {
    if !lists.needs_update() {
        return Ok(());
    }
    host.run(&["apt-get", "update"])
        .context("apt-get update failed")?;
    lists.updated();
    Ok(())
}

/// The rule that a fresh machine broke once: adding an architecture is
/// followed by an `apt-get update` that really runs, even when this process
/// updated the lists before.
fn add_architecture(host: &mut impl Host, lists: &mut AptLists, arch: &str) -> Result<()> {
    if host.foreign_architectures()?.iter().any(|a| a == arch) {
        return Ok(());
    }
    say!("adding the {arch} architecture to dpkg");
    host.run(&["dpkg", "--add-architecture", arch])?;
    if !host.foreign_architectures()?.iter().any(|a| a == arch) {
        bail!("`dpkg --add-architecture {arch}` ran, but dpkg still does not list {arch}");
    }
    lists.sources_changed();
    update_lists(host, lists)
}

fn dpkg_installed(package: &str) -> bool {
    output_of(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|s| s.contains("install ok installed"))
}

fn dpkg_files(package: &str) -> Vec<PathBuf> {
    output_of(Command::new("dpkg").args(["-L", package]))
        .map(|s| s.lines().map(PathBuf::from).collect())
        .unwrap_or_default()
}

/// The executable `name` that `package` installs, preferring `/usr/bin`.
fn dpkg_binary(package: &str, name: &str) -> Result<PathBuf> {
    let files = dpkg_files(package);
    let wanted = Path::new("/usr/bin").join(name);
    files
        .iter()
        .find(|p| **p == wanted)
        .or_else(|| {
            files
                .iter()
                .find(|p| p.ends_with(Path::new("bin").join(name)))
        })
        .filter(|p| is_executable(p))
        .cloned()
        .with_context(|| {
            format!(
                "package {package} is installed but has no executable {name} (dpkg -L {package})"
            )
        })
}

/// The toolchain override rustup was given, part of the cache key.
fn rustup_toolchain_env() -> String {
    std::env::var("RUSTUP_TOOLCHAIN").unwrap_or_default()
}

fn cache_path(choice: ToolchainChoice) -> PathBuf {
    util::out_dir().join(format!("toolchain-{choice}.cache"))
}

/// Loads a cached toolchain if every path in it still exists.
fn load_cache(choice: ToolchainChoice) -> Option<CrossToolchain> {
    let text = std::fs::read_to_string(cache_path(choice)).ok()?;
    let map: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    if map.get("version") != Some(&CACHE_VERSION)
        || map.get("rustup_toolchain").copied() != Some(rustup_toolchain_env().as_str())
    {
        return None;
    }
    let path = |key: &str| map.get(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    let kind = match *map.get("kind")? {
        "rustup" => ToolchainKind::Rustup,
        "debian" => ToolchainKind::Debian,
        _ => return None,
    };
    let tc = CrossToolchain {
        kind,
        cargo: path("cargo")?,
        rustc: path("rustc"),
        linker: path("linker"),
        sysroot: path("sysroot")?,
    };
    // Cheap revalidation: the binaries and the target libraries still exist.
    let target_ok = match kind {
        ToolchainKind::Rustup => TARGETS
            .iter()
            .all(|t| tc.sysroot.join("lib/rustlib").join(t).is_dir()),
        ToolchainKind::Debian => tc.sysroot.join("lib/rustlib/src/rust/library").is_dir(),
    };
    let bins_ok = [&tc.rustc, &tc.linker]
        .into_iter()
        .flatten()
        .all(|p| is_executable(p))
        && (tc.kind == ToolchainKind::Rustup || is_executable(&tc.cargo));
    if !(target_ok && bins_ok) {
        return None;
    }
    let how = match kind {
        ToolchainKind::Rustup => "rustup",
        ToolchainKind::Debian => "Debian's rustc-web with -Zbuild-std",
    };
    say!("toolchain for {}: {how} (cached)", TARGETS.join(" and "));
    Some(tc)
}

fn store_cache(choice: ToolchainChoice, tc: &CrossToolchain) {
    let opt = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let text = format!(
        "version={CACHE_VERSION}\nrustup_toolchain={}\nkind={}\ncargo={}\nrustc={}\nlinker={}\nsysroot={}\n",
        rustup_toolchain_env(),
        match tc.kind {
            ToolchainKind::Rustup => "rustup",
            ToolchainKind::Debian => "debian",
        },
        tc.cargo.display(),
        opt(&tc.rustc),
        opt(&tc.linker),
        tc.sysroot.display(),
    );
    let path = cache_path(choice);
    if let Err(e) =
        std::fs::create_dir_all(util::out_dir()).and_then(|()| std::fs::write(&path, text))
    {
        say!("warning: cannot write {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records commands; knows the foreign architectures dpkg would list.
    #[derive(Default)]
    struct FakeHost {
        ran: Vec<String>,
        foreign: Vec<String>,
        /// `dpkg --add-architecture` "succeeds" without effect.
        broken_dpkg: bool,
    }

    impl Host for FakeHost {
        fn run(&mut self, argv: &[&str]) -> Result<()> {
            self.ran.push(argv.join(" "));
            if let ["dpkg", "--add-architecture", arch] = argv {
                if !self.broken_dpkg {
                    self.foreign.push(arch.to_string());
                }
            }
            Ok(())
        }

        fn foreign_architectures(&self) -> Result<Vec<String>> {
            Ok(self.foreign.clone())
        }
    }

    #[test]
    fn adding_an_architecture_updates_again() {
        let (mut host, mut lists) = (FakeHost::default(), AptLists::default());
        // QEMU's install fetched the lists first...
        update_lists(&mut host, &mut lists).unwrap();
        update_lists(&mut host, &mut lists).unwrap();
        // ...then the Linux guest needs arm64 packages.
        add_architecture(&mut host, &mut lists, "arm64").unwrap();
        assert_eq!(
            host.ran,
            [
                "apt-get update",
                "dpkg --add-architecture arm64",
                "apt-get update"
            ]
        );
        // Known now: nothing more to do.
        add_architecture(&mut host, &mut lists, "arm64").unwrap();
        update_lists(&mut host, &mut lists).unwrap();
        assert_eq!(host.ran.len(), 3);
    }

    #[test]
    fn a_known_architecture_needs_no_update() {
        let mut host = FakeHost {
            foreign: vec!["arm64".into()],
            ..Default::default()
        };
        let mut lists = AptLists::default();
        lists.updated();
        add_architecture(&mut host, &mut lists, "arm64").unwrap();
        assert!(host.ran.is_empty());
    }

    #[test]
    fn an_architecture_dpkg_did_not_take_is_an_error() {
        let mut host = FakeHost {
            broken_dpkg: true,
            ..Default::default()
        };
        let err = add_architecture(&mut host, &mut AptLists::default(), "arm64").unwrap_err();
        assert!(
            err.to_string().contains("still does not list arm64"),
            "{err}"
        );
    }

    #[test]
    fn apt_lists_start_stale() {
        assert!(AptLists::default().needs_update());
    }

    #[test]
    fn one_update_serves_until_the_sources_change() {
        let mut lists = AptLists::default();
        lists.updated();
        assert!(!lists.needs_update(), "a second install reuses the lists");
        // `dpkg --add-architecture arm64`: the lists have no arm64 packages.
        lists.sources_changed();
        assert!(
            lists.needs_update(),
            "a new architecture needs a real update"
        );
        lists.updated();
        assert!(!lists.needs_update());
    }
}
