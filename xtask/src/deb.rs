//! Fetching Debian packages without installing them: `apt-get download`
//! into a scratch directory, a check of what arrived, and `dpkg-deb -x` into
//! a directory of the xtask cache named after the package, its
//! architecture and its version, so that a rerun finds it at once.
//!
//! Cache layout, under `${XDG_CACHE_HOME:-~/.cache}/nmivisor/debs/`:
//!
//! | path | |
//! |---|---|
//! | `<package>_<arch>_<version>/` | the unpacked package (`.complete` marks a finished one) |
//! | `sources/<name>.list` | a private apt source list (e.g. `bookworm-backports`) |
//! | `.lock` | held while a fetch runs, so two xtask runs do not unpack into the same place |
//!
//! Two kinds of package are fetched this way: foreign-architecture ones
//! (the arm64 busybox, kernel and QEMU of the Linux guests and the KVM
//! peer) and packages of a suite the machine does not use (QEMU 10 from
//! `bookworm-backports`). The latter come through a [`PrivateSource`]: its
//! source line lives in a file of the cache, and every `apt-get` and
//! `apt-cache` call that must see it gets [`PrivateSource::apt_options`]
//! (`Dir::Etc::sourcelist=FILE`, no `sourceparts`, no list cleanup), so
//! the user's `/etc/apt` is never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

use crate::provision;
use crate::say;
use crate::util::{self, output_of};

/// Bump when the layout of an unpacked package's directory changes.
const LAYOUT_VERSION: &str = "1";

/// The marker of a finished unpack; it records what was unpacked.
pub const COMPLETE: &str = ".complete";

/// The root of xtask's cache: `NMIVISOR_CACHE_DIR`, else
/// `${XDG_CACHE_HOME:-$HOME/.cache}/nmivisor`.
pub fn cache_base() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("NMIVISOR_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("nmivisor")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/nmivisor")))
        .unwrap_or_else(|| std::env::temp_dir().join("nmivisor-cache"))
}

/// Where unpacked packages live.
pub fn debs_dir() -> PathBuf {
    cache_base().join("debs")
}

/// A package of one architecture (`None`: the host's).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pkg {
    /// The package name, e.g. `busybox-static`.
    pub name: String,
    /// A foreign architecture, e.g. `arm64`.
    pub arch: Option<String>,
}

impl Pkg {
    /// A package of the host's architecture.
    pub fn host(name: &str) -> Pkg {
        Pkg {
            name: name.into(),
            arch: None,
        }
    }

    /// A package of architecture `arch`.
    pub fn arch(name: &str, arch: &str) -> Pkg {
        Pkg {
            name: name.into(),
            arch: Some(arch.into()),
        }
    }

    /// How apt names it: `name` or `name:arch`.
    pub fn spec(&self) -> String {
        match &self.arch {
            Some(a) => format!("{}:{a}", self.name),
            None => self.name.clone(),
        }
    }

    /// `name:arch=version`, the form `apt-get download` takes.
    pub fn spec_version(&self, version: &str) -> String {
        format!("{}={version}", self.spec())
    }

    /// The architecture as it appears in the cache and in the .deb.
    fn arch_label(&self) -> &str {
        self.arch.as_deref().unwrap_or(HOST_ARCH)
    }
}

/// The host's dpkg architecture (xtask runs on x86-64 Debian).
#[cfg(target_arch = "x86_64")]
const HOST_ARCH: &str = "amd64";
#[cfg(target_arch = "aarch64")]
const HOST_ARCH: &str = "arm64";
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const HOST_ARCH: &str = "host";

/// An apt source that only xtask's own apt calls see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivateSource {
    /// The file name stem in `debs/sources/`.
    pub name: String,
    /// The one-line-style source, e.g.
    /// `deb http://deb.debian.org/debian bookworm-backports main`.
    pub line: String,
}

impl PrivateSource {
    /// Debian 12's backports (QEMU 10 comes from there).
    pub fn bookworm_backports() -> PrivateSource {
        PrivateSource {
            name: "bookworm-backports".into(),
            line: "deb http://deb.debian.org/debian bookworm-backports main".into(),
        }
    }

    /// Where its source list is written.
    pub fn list_file(&self) -> PathBuf {
        debs_dir()
            .join("sources")
            .join(format!("{}.list", self.name))
    }

    /// The options that make apt read only this source list. They go on
    /// `apt-get update`, `apt-get download` and `apt-cache` alike:
    /// without them on the download, apt does not see the version the
    /// update fetched. `List-Cleanup=0` keeps the update from deleting the
    /// lists of the system's own sources.
    pub fn apt_options(list_file: &Path) -> Vec<String> {
        vec![
            "-o".into(),
            format!("Dir::Etc::sourcelist={}", list_file.display()),
            "-o".into(),
            "Dir::Etc::sourceparts=-".into(),
            "-o".into(),
            "APT::Get::List-Cleanup=0".into(),
        ]
    }

    /// Writes the list file if it is missing or differs; returns whether it
    /// changed (the sources changed then).
    fn write(&self) -> Result<bool> {
        let file = self.list_file();
        let text = format!("{}\n", self.line);
        if std::fs::read_to_string(&file).ok().as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        let dir = file.parent().context("no parent")?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
        Ok(true)
    }
}

/// Which sources an apt call sees: the system's, or one private source.
#[derive(Clone, Copy, Debug)]
pub enum View<'a> {
    /// `/etc/apt` as configured.
    System,
    /// Only this private source.
    Private(&'a PrivateSource),
}

impl View<'_> {
    fn options(&self) -> Vec<String> {
        match self {
            View::System => Vec::new(),
            View::Private(s) => PrivateSource::apt_options(&s.list_file()),
        }
    }

    fn describe(&self) -> String {
        match self {
            View::System => "the system's apt sources".into(),
            View::Private(s) => format!(
                "the private source `{}` ({})",
                s.line,
                s.list_file().display()
            ),
        }
    }
}

/// Private sources whose lists this process fetched (the system's are
/// tracked by [`provision::apt_update`]).
static UPDATED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Fetches the lists of `view` (at most once per process for a private
/// source, as long as its file does not change).
fn update(view: View<'_>) -> Result<()> {
    if !util::is_root() {
        bail!(
            "apt's lists lack a package and xtask is not root, so it cannot run `apt-get update` \
             for {}: run xtask as root, or `sudo apt-get update`",
            view.describe()
        );
    }
    match view {
        View::System => {
            provision::apt_sources_changed();
            provision::apt_update()
        }
        View::Private(source) => {
            let key = source.list_file().display().to_string();
            let mut done = UPDATED
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if done.contains(&key) {
                return Ok(());
            }
            // Another apt (of another xtask, or the user's) may hold the
            // lists' lock for a while: wait and try again, never break it.
            let mut attempt = 1;
            loop {
                let r = util::run(
                    Command::new("apt-get")
                        .args(view.options())
                        .arg("update")
                        .env("DEBIAN_FRONTEND", "noninteractive"),
                );
                match r {
                    Ok(()) => break,
                    Err(e) if attempt < 4 => {
                        say!("deb: {e:#}; trying again in 15 s (apt may be busy)");
                        std::thread::sleep(std::time::Duration::from_secs(15));
                        attempt += 1;
                    }
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("apt-get update for {} failed", view.describe())
                        });
                    }
                }
            }
            done.insert(key);
            Ok(())
        }
    }
}

/// Makes `view` usable: its list file written, and dpkg told about the
/// foreign architectures of `pkgs`.
fn prepare(view: View<'_>, pkgs: &[Pkg]) -> Result<()> {
    let archs: BTreeSet<&str> = pkgs.iter().filter_map(|p| p.arch.as_deref()).collect();
    for arch in archs {
        if arch != HOST_ARCH {
            provision::ensure_dpkg_architecture(arch)?;
        }
    }
    if let View::Private(source) = view {
        if source.write()? {
            say!(
                "deb: wrote the private apt source {}",
                source.list_file().display()
            );
            // A new source: this process has no lists for it yet (and the
            // rule of `provision` is that a change of sources makes the
            // next update run).
            provision::apt_sources_changed();
            UPDATED
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&source.list_file().display().to_string());
        }
    }
    Ok(())
}

/// The `apt-cache policy` command for `pkgs` under `options`.
pub fn policy_args(options: &[String], pkgs: &[Pkg]) -> Vec<String> {
    let mut args = options.to_vec();
    args.push("policy".into());
    args.extend(pkgs.iter().map(Pkg::spec));
    args
}

/// The `apt-get download` command for `(pkg, version)` pairs.
pub fn download_args(options: &[String], pkgs: &[(Pkg, String)]) -> Vec<String> {
    let mut args = options.to_vec();
    args.push("download".into());
    args.extend(pkgs.iter().map(|(p, v)| p.spec_version(v)));
    args
}

/// The `apt-cache depends [--recurse]` command for `pkg`: hard
/// dependencies only (Depends and Pre-Depends).
pub fn depends_args(options: &[String], pkg: &Pkg, recurse: bool) -> Vec<String> {
    let mut args = options.to_vec();
    args.push("depends".into());
    if recurse {
        args.push("--recurse".into());
    }
    args.extend(
        [
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
        ]
        .map(String::from),
    );
    args.push(pkg.spec());
    args
}

/// What `apt-cache policy` says about one package.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `Installed:` (`None` for `(none)`).
    pub installed: Option<String>,
    /// `Candidate:` (`None` for `(none)`).
    pub candidate: Option<String>,
}

impl Policy {
    /// Whether apt offers a version. Through a private source, a candidate
    /// that is just the installed version comes from dpkg's status, not
    /// from the source: its lists are missing (a system `apt-get update`
    /// cleans up the lists of sources it does not know).
    pub fn offered(&self, private: bool) -> bool {
        match &self.candidate {
            None => false,
            Some(c) => !(private && self.installed.as_ref() == Some(c)),
        }
    }
}

/// Parses `apt-cache policy A B ...`: one section per package, headed by
/// `NAME:` (or `NAME:ARCH:`) at the start of a line. Packages apt does not
/// know at all have no section.
pub fn parse_policy(text: &str) -> BTreeMap<String, Policy> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            let name = line.trim_end_matches(':').to_string();
            out.insert(name.clone(), Policy::default());
            current = Some(name);
            continue;
        }
        let Some(name) = &current else { continue };
        let value = |v: &str| {
            let v = v.trim();
            (!v.is_empty() && v != "(none)").then(|| v.to_string())
        };
        let entry = out.get_mut(name).expect("inserted above");
        if let Some(v) = line.trim().strip_prefix("Installed:") {
            entry.installed = value(v);
        } else if let Some(v) = line.trim().strip_prefix("Candidate:") {
            entry.candidate = value(v);
        }
    }
    out
}

/// Parses `apt-cache depends [--recurse] PKG`: the packages it names as
/// `Depends:` or `PreDepends:` (real ones; `<virtual>` names are skipped),
/// each once, in the order they first appear.
pub fn parse_depends(text: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        let Some(dep) = t
            .strip_prefix("Depends:")
            .or_else(|| t.strip_prefix("PreDepends:"))
            .or_else(|| t.strip_prefix("|Depends:"))
            .or_else(|| t.strip_prefix("|PreDepends:"))
        else {
            continue;
        };
        let dep = dep.trim();
        if dep.starts_with('<') || dep.is_empty() {
            continue;
        }
        if seen.insert(dep.to_string()) {
            out.push(dep.to_string());
        }
    }
    out
}

/// The cache directory of `pkg` at `version`.
pub fn package_dir(pkg: &Pkg, version: &str) -> PathBuf {
    debs_dir().join(cache_name(pkg, version))
}

/// `<package>_<arch>_<version>`, made safe as one path component (Debian
/// versions hold `:` and `~`).
pub fn cache_name(pkg: &Pkg, version: &str) -> String {
    crate::linux::cache::path_component(&format!("{}_{}_{}", pkg.name, pkg.arch_label(), version))
}

/// The contents of the `.complete` marker.
fn marker_text(pkg: &Pkg, version: &str, deb_bytes: u64) -> String {
    format!(
        "layout={LAYOUT_VERSION}\npackage={}\narch={}\nversion={version}\ndeb_bytes={deb_bytes}\n",
        pkg.name,
        pkg.arch_label()
    )
}

/// Reads `deb_bytes` back from a marker, if the marker is of this layout.
fn parse_marker(text: &str) -> Option<u64> {
    let map: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    (map.get("layout") == Some(&LAYOUT_VERSION))
        .then(|| map.get("deb_bytes")?.parse().ok())
        .flatten()
}

/// An unpacked package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// Which package.
    pub pkg: Pkg,
    /// Its version.
    pub version: String,
    /// The root of the unpacked tree (`usr/...`, `boot/...`).
    pub dir: PathBuf,
    /// The size of the .deb that was unpacked.
    pub deb_bytes: u64,
}

/// The finished unpack of `pkg` at `version` in the cache, if there is one.
pub fn cached(pkg: &Pkg, version: &str) -> Option<Fetched> {
    let dir = package_dir(pkg, version);
    let deb_bytes = parse_marker(&std::fs::read_to_string(dir.join(COMPLETE)).ok()?)?;
    Some(Fetched {
        pkg: pkg.clone(),
        version: version.into(),
        dir,
        deb_bytes,
    })
}

/// The versions of `pkg` unpacked in the cache (for working offline).
pub fn cached_versions(pkg: &Pkg) -> Vec<String> {
    let prefix =
        crate::linux::cache::path_component(&format!("{}_{}_", pkg.name, pkg.arch_label()));
    let mut out: Vec<String> = std::fs::read_dir(debs_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path().join(COMPLETE)).ok()?;
            parse_marker(&text)?;
            text.lines()
                .find_map(|l| l.strip_prefix("version="))
                .map(str::to_owned)
        })
        .collect();
    out.sort();
    out
}

/// The candidates of `pkgs` in `view`, fetching the lists once if apt
/// knows none for some of them. Fails naming the packages without one.
pub fn candidates(view: View<'_>, pkgs: &[Pkg]) -> Result<Vec<Policy>> {
    prepare(view, pkgs)?;
    let ask = || -> Result<BTreeMap<String, Policy>> {
        let out = output_of(Command::new("apt-cache").args(policy_args(&view.options(), pkgs)))
            .context("`apt-cache policy` failed: is this a Debian system?")?;
        Ok(parse_policy(&out))
    };
    let private = matches!(view, View::Private(_));
    let missing = |p: &BTreeMap<String, Policy>| -> Vec<String> {
        pkgs.iter()
            .filter(|k| p.get(&k.spec()).is_none_or(|x| !x.offered(private)))
            .map(Pkg::spec)
            .collect()
    };
    let mut policies = ask()?;
    if !missing(&policies).is_empty() {
        say!(
            "deb: apt has no candidate for {} in {}; fetching the lists",
            missing(&policies).join(" "),
            view.describe()
        );
        update(view)?;
        policies = ask()?;
    }
    let still = missing(&policies);
    ensure!(
        still.is_empty(),
        "apt knows no version of {} in {}",
        still.join(" "),
        view.describe()
    );
    Ok(pkgs.iter().map(|p| policies[&p.spec()].clone()).collect())
}

/// The hard dependencies of `pkg` in `view` (with `recurse`, also the
/// indirect ones), as apt names them (`name` or `name:arch`).
pub fn depends(view: View<'_>, pkg: &Pkg, recurse: bool) -> Result<Vec<String>> {
    prepare(view, std::slice::from_ref(pkg))?;
    // A package apt does not know makes `apt-cache depends` fail: fetch
    // the lists once then.
    if candidates(view, std::slice::from_ref(pkg)).is_err() {
        update(view)?;
    }
    let out =
        output_of(Command::new("apt-cache").args(depends_args(&view.options(), pkg, recurse)))
            .with_context(|| format!("`apt-cache depends {}` failed", pkg.spec()))?;
    Ok(parse_depends(&out))
}

/// Fetches and unpacks `pkgs` (each at the given version) from `view`,
/// reusing what the cache already holds. One `apt-get download` fetches
/// everything missing; if it fails (stale lists name a version the mirror
/// dropped), the lists are fetched and it is tried once more.
pub fn fetch(view: View<'_>, pkgs: &[(Pkg, String)]) -> Result<Vec<Fetched>> {
    let _lock = lock()?;
    let mut missing: Vec<(Pkg, String)> = pkgs
        .iter()
        .filter(|(p, v)| cached(p, v).is_none())
        .cloned()
        .collect();
    missing.sort();
    missing.dedup();
    if !missing.is_empty() {
        prepare(
            view,
            &missing.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        )?;
        let started = Instant::now();
        let scratch = Scratch::new()?;
        let listed: Vec<String> = missing.iter().map(|(p, v)| p.spec_version(v)).collect();
        say!("deb: downloading {}", listed.join(" "));
        let download = || {
            util::run(
                Command::new("apt-get")
                    .args(download_args(&view.options(), &missing))
                    .current_dir(&scratch.0),
            )
        };
        if let Err(e) = download() {
            say!("deb: {e:#}; fetching the lists and trying once more");
            update(view)?;
            download().with_context(|| {
                format!(
                    "apt-get download {} failed ({})",
                    listed.join(" "),
                    view.describe()
                )
            })?;
        }
        let mut total = 0u64;
        for (pkg, version) in &missing {
            total += unpack(&scratch.0, pkg, version)?;
        }
        say!(
            "deb: fetched and unpacked {} package(s), {:.1} MB of .deb, in {:.1}s",
            missing.len(),
            total as f64 / 1e6,
            started.elapsed().as_secs_f32()
        );
    }
    pkgs.iter()
        .map(|(p, v)| {
            cached(p, v)
                .with_context(|| format!("{} {v} is not in the cache after fetching it", p.spec()))
        })
        .collect()
}

/// Fetches the candidate version of each of `pkgs` (see [`fetch`]).
pub fn fetch_candidates(view: View<'_>, pkgs: &[Pkg]) -> Result<Vec<Fetched>> {
    let policies = candidates(view, pkgs)?;
    let wanted: Vec<(Pkg, String)> = pkgs
        .iter()
        .zip(&policies)
        .map(|(p, pol)| {
            (
                p.clone(),
                pol.candidate.clone().expect("checked by candidates"),
            )
        })
        .collect();
    fetch(view, &wanted)
}

/// A world-writable scratch directory: `apt-get download` run as root
/// hands the file over to the `_apt` user, who must be able to write there.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("nmivisor-deb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The .deb of `pkg` at `version` in `dir`, as `apt-get download` names
/// it: `NAME_VERSION_ARCH.deb` with the epoch's `:` written `%3a`.
pub fn deb_file_name(pkg: &Pkg, version: &str) -> String {
    format!(
        "{}_{}_{}.deb",
        pkg.name,
        version.replace(':', "%3a"),
        pkg.arch_label()
    )
}

/// Checks the downloaded .deb of `pkg` (its control fields name the
/// package, version and architecture asked for), unpacks it into the
/// cache and returns its size.
fn unpack(scratch: &Path, pkg: &Pkg, version: &str) -> Result<u64> {
    // Architecture-independent packages are `..._all.deb`.
    let name = deb_file_name(pkg, version);
    let all = name.replace(&format!("_{}.deb", pkg.arch_label()), "_all.deb");
    let deb = [&name, &all]
        .into_iter()
        .map(|n| scratch.join(n))
        .find(|p| p.exists())
        .with_context(|| format!("apt-get download left neither {name} nor {all}"))?;
    let bytes = deb.metadata()?.len();
    let fields = output_of(Command::new("dpkg-deb").args(["-f"]).arg(&deb).args([
        "Package",
        "Version",
        "Architecture",
    ]))
    .with_context(|| format!("`dpkg-deb -f {}` failed: not a valid .deb", deb.display()))?;
    let got = parse_control(&fields);
    let want = [
        ("Package", pkg.name.as_str()),
        ("Version", version),
        ("Architecture", pkg.arch_label()),
    ];
    for (k, v) in want {
        let found = got.get(k).map(String::as_str);
        // Architecture-independent packages say `all`.
        let ok = found == Some(v) || (k == "Architecture" && found == Some("all"));
        ensure!(ok, "{}: {k} is {found:?}, expected {v:?}", deb.display());
    }
    let dir = package_dir(pkg, version);
    // Not `with_extension`: versions hold dots.
    let staging = debs_dir().join(format!("{}.partial", cache_name(pkg, version)));
    let _ = std::fs::remove_dir_all(&staging);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&staging)?;
    util::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&staging))?;
    std::fs::write(staging.join(COMPLETE), marker_text(pkg, version, bytes))?;
    std::fs::rename(&staging, &dir)
        .with_context(|| format!("cannot move {} to {}", staging.display(), dir.display()))?;
    Ok(bytes)
}

/// Parses `Key: value` lines of `dpkg-deb -f`.
pub fn parse_control(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Holds `debs/.lock` while it lives.
fn lock() -> Result<std::fs::File> {
    crate::util::lock_dir(&debs_dir(), "fetching packages")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_cache_names() {
        let bb = Pkg::arch("busybox-static", "arm64");
        assert_eq!(bb.spec(), "busybox-static:arm64");
        assert_eq!(
            bb.spec_version("1:1.35.0-4+deb12u1+b1"),
            "busybox-static:arm64=1:1.35.0-4+deb12u1+b1"
        );
        assert_eq!(
            cache_name(&bb, "1:1.35.0-4+deb12u1+b1"),
            "busybox-static_arm64_1_1.35.0-4+deb12u1+b1"
        );
        let q = Pkg::host("qemu-system-arm");
        assert_eq!(q.spec(), "qemu-system-arm");
        assert_eq!(
            cache_name(&q, "1:10.0.2+ds-2+deb13u1~bpo12+1"),
            format!("qemu-system-arm_{HOST_ARCH}_1_10.0.2+ds-2+deb13u1_bpo12+1")
        );
        // Version and architecture are part of the key.
        assert_ne!(cache_name(&q, "1:10.0.2"), cache_name(&q, "1:10.0.3"));
        assert_ne!(
            cache_name(&Pkg::arch("libc6", "arm64"), "2.36"),
            cache_name(&Pkg::host("libc6"), "2.36")
        );
        assert_eq!(
            deb_file_name(&q, "1:10.0.2+ds-2+deb13u1~bpo12+1"),
            format!("qemu-system-arm_1%3a10.0.2+ds-2+deb13u1~bpo12+1_{HOST_ARCH}.deb")
        );
    }

    #[test]
    fn private_source_options_go_on_every_call() {
        let opts = PrivateSource::apt_options(Path::new("/c/sources/bookworm-backports.list"));
        assert_eq!(
            opts.join(" "),
            "-o Dir::Etc::sourcelist=/c/sources/bookworm-backports.list \
             -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0"
        );
        let q = [(Pkg::host("qemu-system-arm"), "1:10.0.2".to_string())];
        assert_eq!(
            download_args(&opts, &q)[6..].join(" "),
            "download qemu-system-arm=1:10.0.2"
        );
        assert_eq!(
            policy_args(&opts, &[Pkg::host("a"), Pkg::arch("b", "arm64")])[6..].join(" "),
            "policy a b:arm64"
        );
        let d = depends_args(&[], &Pkg::arch("qemu-system-arm", "arm64"), true);
        assert_eq!(d[0..2], ["depends", "--recurse"]);
        assert!(!depends_args(&[], &Pkg::host("x"), false).contains(&"--recurse".to_string()));
        assert_eq!(d.last().unwrap(), "qemu-system-arm:arm64");
        assert!(d.contains(&"--no-recommends".to_string()));
        assert!(PrivateSource::bookworm_backports()
            .line
            .ends_with(" bookworm-backports main"));
    }

    const POLICY: &str = "\
qemu-system-arm:
  Installed: 1:7.2+dfsg-7+deb12u18+b3
  Candidate: 1:10.0.2+ds-2+deb13u1~bpo12+1
  Version table:
     1:10.0.2+ds-2+deb13u1~bpo12+1 100
        100 http://deb.debian.org/debian bookworm-backports/main amd64 Packages
 *** 1:7.2+dfsg-7+deb12u18+b3 100
        100 /var/lib/dpkg/status
busybox-static:arm64:
  Installed: (none)
  Candidate: 1:1.35.0-4+deb12u1+b1
  Version table:
     1:1.35.0-4+deb12u1+b1 500
        500 http://deb.debian.org/debian bookworm/main arm64 Packages
nothing-here:
  Installed: (none)
  Candidate: (none)
  Version table:
";

    #[test]
    fn policy_output() {
        let p = parse_policy(POLICY);
        assert_eq!(p.len(), 3);
        assert_eq!(
            p["qemu-system-arm"],
            Policy {
                installed: Some("1:7.2+dfsg-7+deb12u18+b3".into()),
                candidate: Some("1:10.0.2+ds-2+deb13u1~bpo12+1".into()),
            }
        );
        assert_eq!(p["busybox-static:arm64"].installed, None);
        assert_eq!(
            p["busybox-static:arm64"].candidate.as_deref(),
            Some("1:1.35.0-4+deb12u1+b1")
        );
        assert_eq!(p["nothing-here"], Policy::default());
        assert!(p["qemu-system-arm"].offered(true));
        assert!(!p["nothing-here"].offered(false));
        // Through a private source, the installed version alone means
        // the source's lists are missing.
        let stale = Policy {
            installed: Some("1:7.2".into()),
            candidate: Some("1:7.2".into()),
        };
        assert!(stale.offered(false) && !stale.offered(true));
        assert!(parse_policy("").is_empty());
    }

    #[test]
    fn depends_output() {
        let text = "\
linux-image-6.12-arm64:arm64
  Depends: linux-image-6.12.117+deb12-arm64:arm64
qemu-system-arm:arm64
  Depends: libaio1:arm64
  PreDepends: libc6:arm64
 |Depends: libgcc-s1:arm64
  Depends: libc6:arm64
  Depends: <qemu-system-data:arm64>
    qemu-system-data
  Recommends: ipxe-qemu
libaio1:arm64
  Depends: libc6:arm64
";
        assert_eq!(
            parse_depends(text),
            [
                "linux-image-6.12.117+deb12-arm64:arm64",
                "libaio1:arm64",
                "libc6:arm64",
                "libgcc-s1:arm64"
            ]
        );
    }

    #[test]
    fn control_fields_and_markers() {
        let c = parse_control(
            "Package: busybox-static\nVersion: 1:1.35.0-4+deb12u1+b1\nArchitecture: arm64\n",
        );
        assert_eq!(c["Version"], "1:1.35.0-4+deb12u1+b1");
        assert_eq!(c["Architecture"], "arm64");
        let pkg = Pkg::arch("busybox-static", "arm64");
        let m = marker_text(&pkg, "1:1.35", 1234);
        assert_eq!(parse_marker(&m), Some(1234));
        assert_eq!(parse_marker(&m.replace("layout=1", "layout=0")), None);
        assert_eq!(parse_marker("garbage"), None);
    }
}
