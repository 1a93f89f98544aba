//! The guest kernel: Debian's `linux-source-6.12` (or a tree given with
//! `--kernel-src`), configured from the repo's fragment, built with the
//! cross compiler and cached by its inputs.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::apt::provision_kernel;
use super::cache::{self, Key};
use super::{
    fragment_path, kconfig, Kernel, Options, ARCH, CROSS_COMPILE, SOURCE_PACKAGE, SOURCE_TARBALL,
    SOURCE_TOP,
};
use crate::say;
use crate::util::{self, command_line, elapsed, output_of};

/// Where the kernel source comes from.
struct Source {
    /// The tree (extracted on demand for Debian's tarball).
    dir: PathBuf,
    /// What identifies this source in the cache key.
    identity: String,
    /// The name of its reusable build directory.
    build_name: String,
    /// Debian's tarball, when the tree must be extracted from it.
    tarball: Option<PathBuf>,
}

fn debian_source() -> Result<Source> {
    let version =
        output_of(Command::new("dpkg-query").args(["-W", "-f=${Version}", SOURCE_PACKAGE]))
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "unknown".into());
    let tarball = PathBuf::from(SOURCE_TARBALL);
    let meta = tarball
        .metadata()
        .with_context(|| format!("{SOURCE_TARBALL} is missing (package {SOURCE_PACKAGE})"))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let name = cache::path_component(&format!("{SOURCE_PACKAGE}_{}", version.trim()));
    Ok(Source {
        dir: cache::root().join("src").join(&name).join(SOURCE_TOP),
        identity: format!(
            "{SOURCE_PACKAGE} {} ({SOURCE_TARBALL}, {} bytes, mtime {mtime})",
            version.trim(),
            meta.len()
        ),
        build_name: name,
        tarball: Some(tarball),
    })
}

/// A tree given with `--kernel-src`: identified by its path, its version
/// and the newest modification time and count of its files (a cheap walk
/// that notices edits without hashing the tree).
fn tree_source(dir: &Path) -> Result<Source> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("--kernel-src {}: no such directory", dir.display()))?;
    let makefile = std::fs::read_to_string(dir.join("Makefile")).with_context(|| {
        format!(
            "--kernel-src {}: no Makefile, not a kernel tree",
            dir.display()
        )
    })?;
    if !dir.join("arch/arm64/Kconfig").exists() {
        bail!(
            "--kernel-src {}: no arch/arm64, not a kernel tree",
            dir.display()
        );
    }
    if dir.join(".config").exists() || dir.join("include/config").exists() {
        bail!(
            "--kernel-src {}: the tree has been configured in place; xtask builds with O= \
             outside it, which kbuild refuses for such a tree (run `make mrproper` there)",
            dir.display()
        );
    }
    let version = kernel_version(&makefile);
    let (newest, files) = newest_mtime(&dir);
    let hash = Sha256::digest(dir.display().to_string().as_bytes());
    let short: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
    Ok(Source {
        identity: format!(
            "tree {} (version {version}, {files} files, newest mtime {newest})",
            dir.display()
        ),
        build_name: format!("tree-{short}"),
        dir,
        tarball: None,
    })
}

/// `VERSION.PATCHLEVEL.SUBLEVEL EXTRAVERSION` from a kernel Makefile.
fn kernel_version(makefile: &str) -> String {
    let get = |key: &str| {
        makefile
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    format!(
        "{}.{}.{}{}",
        get("VERSION"),
        get("PATCHLEVEL"),
        get("SUBLEVEL"),
        get("EXTRAVERSION")
    )
}

/// The newest modification time (ns since the epoch) and the number of
/// files under `dir`, skipping `.git`.
fn newest_mtime(dir: &Path) -> (u128, usize) {
    let mut newest = 0u128;
    let mut files = 0usize;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ty) = e.file_type() else { continue };
            if ty.is_dir() {
                if e.file_name() != ".git" {
                    stack.push(e.path());
                }
                continue;
            }
            files += 1;
            if let Some(t) = e
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            {
                newest = newest.max(t.as_nanos());
            }
        }
    }
    (newest, files)
}

/// The first line of `PROGRAM --version`.
fn tool_version(program: &str) -> String {
    output_of(Command::new(program).arg("--version"))
        .and_then(|o| o.lines().next().map(str::to_owned))
        .unwrap_or_else(|| format!("{program}: unknown version"))
}

/// The kernel's cache key.
fn kernel_key(source: &Source, fragment: &str) -> Key {
    Key::new("kernel")
        .add("source", &source.identity)
        .add("fragment", fragment)
        .add("cc", tool_version(&format!("{CROSS_COMPILE}gcc")))
        .add("ld", tool_version(&format!("{CROSS_COMPILE}ld")))
        .add(
            "make-vars",
            format!("ARCH={ARCH} CROSS_COMPILE={CROSS_COMPILE}"),
        )
}

fn kernel_outputs(dir: &Path) -> Kernel {
    Kernel {
        image: dir.join("Image"),
        system_map: dir.join("System.map"),
        vmlinux: dir.join("vmlinux"),
        config: dir.join("config"),
    }
}

const COMPLETE: &str = ".complete";

/// Builds the kernel, or finds it in the cache.
pub fn kernel(opts: &Options) -> Result<Kernel> {
    provision_kernel(opts.kernel_src.is_none())?;
    let source = match &opts.kernel_src {
        Some(dir) => tree_source(dir)?,
        None => debian_source()?,
    };
    let fragment_file = fragment_path();
    let fragment = std::fs::read_to_string(&fragment_file)
        .with_context(|| format!("cannot read {}", fragment_file.display()))?;
    let wanted = kconfig::parse_fragment(&fragment)
        .with_context(|| format!("{}", fragment_file.display()))?;
    let key = kernel_key(&source, &fragment);
    let out_dir = cache::root().join(format!("kernel-{}", key.hex()));
    let out = kernel_outputs(&out_dir);
    if out_dir.join(COMPLETE).exists()
        && [&out.image, &out.system_map, &out.vmlinux, &out.config]
            .iter()
            .all(|p| p.exists())
    {
        say!("linux: kernel up to date (cached, key {})", key.hex());
        return Ok(out);
    }

    say!("linux: building the kernel from {}", source.identity);
    if let Some(tarball) = &source.tarball {
        extract(tarball, &source.dir)?;
    }
    let build_dir = cache::root().join("build").join(&source.build_name);
    std::fs::create_dir_all(&build_dir)?;
    let log = build_dir.join("xtask-build.log");
    let _ = std::fs::remove_file(&log);
    let jobs = opts.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let make = |args: &[&str]| {
        let mut cmd = Command::new("make");
        cmd.arg("-C")
            .arg(&source.dir)
            .arg(format!("O={}", build_dir.display()))
            .arg(format!("ARCH={ARCH}"))
            .arg(format!("CROSS_COMPILE={CROSS_COMPILE}"))
            .args(args);
        for var in [
            "MAKEFLAGS",
            "MFLAGS",
            "MAKELEVEL",
            "KBUILD_OUTPUT",
            "ARCH",
            "CROSS_COMPILE",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("KBUILD_BUILD_USER", "nmivisor")
            .env("KBUILD_BUILD_HOST", "xtask")
            .env("LC_ALL", "C");
        cmd
    };

    let allconfig = format!("KCONFIG_ALLCONFIG={}", fragment_file.display());
    run_logged(
        &mut make(&[&allconfig, "allnoconfig"]),
        &log,
        "allnoconfig + fragment",
    )?;
    run_logged(&mut make(&["olddefconfig"]), &log, "olddefconfig")?;
    let config_text = std::fs::read_to_string(build_dir.join(".config"))
        .context("make olddefconfig wrote no .config")?;
    let missing = kconfig::check(&wanted, &config_text);
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|m| format!("  {m}")).collect();
        bail!(
            "the final .config lacks {} option(s) of {}:\n{}\n(allnoconfig drops an option \
             whose dependencies are unmet: add them to the fragment; see {})",
            missing.len(),
            fragment_file.display(),
            list.join("\n"),
            build_dir.join(".config").display()
        );
    }
    say!(
        "linux: .config holds all {} options of the fragment",
        wanted.len()
    );
    let jobs_arg = format!("-j{jobs}");
    run_logged(
        &mut make(&[&jobs_arg, "Image"]),
        &log,
        &format!("Image ({jobs} jobs)"),
    )?;

    // Publish the outputs under the key; `.complete` last.
    let tmp = out_dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for (from, to) in [
        ("arch/arm64/boot/Image", "Image"),
        ("System.map", "System.map"),
        ("vmlinux", "vmlinux"),
        (".config", "config"),
    ] {
        std::fs::copy(build_dir.join(from), tmp.join(to))
            .with_context(|| format!("cannot copy {from} out of {}", build_dir.display()))?;
    }
    let manifest: Vec<String> = [
        format!("source: {}", source.identity),
        format!("fragment: {}", fragment_file.display()),
        format!("cc: {}", tool_version(&format!("{CROSS_COMPILE}gcc"))),
        format!("build directory: {}", build_dir.display()),
    ]
    .into();
    std::fs::write(tmp.join(COMPLETE), manifest.join("\n") + "\n")?;
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::rename(&tmp, &out_dir)
        .with_context(|| format!("cannot move {} into place", out_dir.display()))?;
    say!("linux: kernel built (key {})", key.hex());
    Ok(out)
}

/// Extracts Debian's tarball so that its tree is `dir`, unless done before.
fn extract(tarball: &Path, dir: &Path) -> Result<()> {
    let marker = dir.with_extension("extracted");
    if marker.exists() && dir.join("Makefile").exists() {
        return Ok(());
    }
    let parent = dir.parent().context("source directory has no parent")?;
    let tmp = parent.join("extracting");
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(&tmp)?;
    say!(
        "linux: extracting {} into {} (about half a minute)",
        tarball.display(),
        parent.display()
    );
    util::run(
        Command::new("tar")
            .arg("-xf")
            .arg(tarball)
            .arg("-C")
            .arg(&tmp),
    )?;
    std::fs::rename(tmp.join(SOURCE_TOP), dir)
        .with_context(|| format!("the tarball has no top directory {SOURCE_TOP}/"))?;
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::write(&marker, tarball.display().to_string())?;
    Ok(())
}

/// Whether a kbuild output line reports one build step (`  CC  foo.o`).
pub fn is_build_step(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("  ") else {
        return false;
    };
    let word = rest.split_whitespace().next().unwrap_or("");
    !word.is_empty()
        && word.len() <= 10
        && word
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// How often a long make prints a progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(20);

/// Runs `cmd` with its output appended to `log`, printing a progress line
/// now and then; on failure prints the end of the log.
fn run_logged(cmd: &mut Command, log: &Path, what: &str) -> Result<()> {
    say!("linux: make {what}");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    writeln!(file, "### {}", command_line(cmd))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", command_line(cmd)))?;
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().context("no stdout")?;
    let err = child.stderr.take().context("no stderr")?;
    let readers = [spawn_lines(out, tx.clone()), spawn_lines(err, tx)];
    let start = Instant::now();
    let mut last_report = start;
    let (mut steps, mut last_step) = (0usize, String::new());
    let mut tail: std::collections::VecDeque<String> = Default::default();
    for line in rx {
        writeln!(file, "{line}")?;
        if is_build_step(&line) {
            steps += 1;
            last_step = line.split_whitespace().collect::<Vec<_>>().join(" ");
        }
        if tail.len() == 40 {
            tail.pop_front();
        }
        tail.push_back(line);
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            say!(
                "linux: {what}: {steps} steps, {} so far (last: {last_step})",
                elapsed(start.elapsed())
            );
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait()?;
    if !status.success() {
        for line in &tail {
            say!("linux: | {line}");
        }
        bail!(
            "`{}` failed ({status}); full log: {}",
            command_line(cmd),
            log.display()
        );
    }
    if steps > 0 {
        say!(
            "linux: {what}: done, {steps} steps in {}",
            elapsed(start.elapsed())
        );
    }
    Ok(())
}

fn spawn_lines(
    src: impl std::io::Read + Send + 'static,
    tx: mpsc::Sender<String>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(src).split(b'\n').map_while(Result::ok) {
            if tx
                .send(String::from_utf8_lossy(&line).into_owned())
                .is_err()
            {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kbuild_steps() {
        assert!(is_build_step("  CC      kernel/sched/core.o"));
        assert!(is_build_step("  LD      vmlinux.o"));
        assert!(is_build_step("  OBJCOPY arch/arm64/boot/Image"));
        assert!(is_build_step("  HOSTCC  scripts/kconfig/conf.o"));
        assert!(!is_build_step("make[1]: Entering directory"));
        assert!(!is_build_step("  "));
        assert!(!is_build_step("kernel/x.c:1: error: oops"));
        assert!(!is_build_step("  in function foo"));
    }

    #[test]
    fn versions_from_a_makefile() {
        let mk = "# SPDX\nVERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 117\nEXTRAVERSION =\nNAME = Baby Opossum Posse\n";
        assert_eq!(kernel_version(mk), "6.12.117");
        assert_eq!(
            kernel_version("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\nEXTRAVERSION = -rc2\n"),
            "6.1.0-rc2"
        );
    }
}
