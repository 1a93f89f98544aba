//! The guest's initramfs: a gzip-compressed newc cpio archive holding static
//! busybox, symlinks for the applets `/init` uses, `/dev/console` and the
//! `/init` script from the repo (`linux/init.sh`).
//!
//! `/dev/console` must be in the archive: the kernel opens it for init's
//! standard streams before `/init` runs, and devtmpfs is only mounted by
//! `/init` itself. `/init` also runs `busybox --install -s`, so the
//! interactive shell has every applet; the symlinks here are those the test
//! flows rely on, so they do not depend on that step.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use flate2::{write::GzEncoder, Compression};

use super::cache::{self, Key};
use super::{counter, init_path, BUSYBOX_PACKAGE};
use crate::util::{self, which};
use crate::{deb, say};

/// Applets `/init` and its test flows use, linked in `/bin` (plus `sh`).
pub const APPLETS: &[&str] = &[
    "sh", "mount", "cat", "echo", "grep", "sleep", "taskset", "cttyhack", "setsid", "poweroff",
    "dmesg", "nproc", "uname", "kill", "true", "ls", "ps", "usleep",
];

/// Directories created empty (mount points and the like).
const DIRS: &[&str] = &[
    "bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "root", "etc",
];

/// What one archive entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory (mode 0755).
    Dir,
    /// A regular file with this permission mode and contents.
    File { perm: u32, data: Vec<u8> },
    /// A symbolic link to this target.
    Symlink(String),
    /// A character device (major, minor), mode 0600.
    CharDev(u32, u32),
}

/// One archive entry (the path has no leading `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive, e.g. `bin/busybox`.
    pub path: String,
    /// What it is.
    pub kind: Kind,
}

/// The entries of the initramfs, in archive order (every directory before
/// what it holds).
pub fn layout(busybox: &[u8], init: &[u8]) -> Vec<Entry> {
    let mut out: Vec<Entry> = DIRS
        .iter()
        .map(|d| Entry {
            path: (*d).into(),
            kind: Kind::Dir,
        })
        .collect();
    out.push(Entry {
        path: "dev/console".into(),
        kind: Kind::CharDev(5, 1),
    });
    out.push(Entry {
        path: "bin/busybox".into(),
        kind: Kind::File {
            perm: 0o755,
            data: busybox.to_vec(),
        },
    });
    for applet in APPLETS {
        out.push(Entry {
            path: format!("bin/{applet}"),
            kind: Kind::Symlink("busybox".into()),
        });
    }
    out.push(Entry {
        path: "bin/nmv-counter".into(),
        kind: Kind::File {
            perm: 0o755,
            data: super::counter::elf(),
        },
    });
    out.push(Entry {
        path: "init".into(),
        kind: Kind::File {
            perm: 0o755,
            data: init.to_vec(),
        },
    });
    out
}

/// Checks that `data` is a 64-bit little-endian Arm ELF executable (so a
/// wrong busybox fails here, not as a kernel panic at boot).
pub fn check_aarch64_elf(data: &[u8]) -> Result<()> {
    ensure!(
        data.len() > 20 && &data[..4] == b"\x7fELF",
        "not an ELF file"
    );
    ensure!(
        data[4] == 2 && data[5] == 1,
        "not a 64-bit little-endian ELF"
    );
    let machine = u16::from_le_bytes([data[18], data[19]]);
    ensure!(machine == 183, "ELF machine {machine}, not aarch64 (183)");
    Ok(())
}

/// Checks the `/init` script: it must start with a `#!` line naming a
/// shell the archive holds.
pub fn check_init(init: &[u8]) -> Result<()> {
    let first = init.split(|&b| b == b'\n').next().unwrap_or_default();
    ensure!(
        first == b"#!/bin/sh",
        "the init script must start with `#!/bin/sh` (found {:?})",
        String::from_utf8_lossy(first)
    );
    Ok(())
}

/// Writes `entries` as a newc cpio archive (root-owned, time 0, so the same
/// inputs give the same bytes).
pub fn cpio(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let (mode, data, nlink, rdev): (u32, &[u8], u32, (u32, u32)) = match &e.kind {
            Kind::Dir => (0o040_755, &[], 2, (0, 0)),
            Kind::File { perm, data } => (0o100_000 | perm, data, 1, (0, 0)),
            Kind::Symlink(target) => (0o120_777, target.as_bytes(), 1, (0, 0)),
            Kind::CharDev(major, minor) => (0o020_600, &[], 1, (*major, *minor)),
        };
        let size = u32::try_from(data.len())
            .with_context(|| format!("{} is too large for a cpio archive", e.path))?;
        let mut w = cpio::NewcBuilder::new(&e.path)
            .ino(u32::try_from(i + 1)?)
            .mode(mode)
            .nlink(nlink)
            .rdev_major(rdev.0)
            .rdev_minor(rdev.1)
            .write(out, size);
        w.write_all(data)?;
        out = w.finish()?;
    }
    Ok(cpio::newc::trailer(out)?)
}

/// The gzip-compressed initramfs of `busybox` and `init`.
pub fn build(busybox: &[u8], init: &[u8]) -> Result<Vec<u8>> {
    check_aarch64_elf(busybox).context("bin/busybox")?;
    check_init(init)?;
    let archive = cpio(&layout(busybox, init))?;
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(&archive)?;
    Ok(gz.finish()?)
}

// ---------------------------------------------------------------------------
// Busybox and the initramfs of the Linux guest

/// The busybox binary and its package version: Debian's
/// `busybox-static:arm64` candidate, fetched and unpacked by [`deb`]
/// (reused from the cache when unpacked before). Without apt (offline, or
/// another distribution), any busybox unpacked earlier will do.
fn busybox() -> Result<(PathBuf, String)> {
    let pkg = deb::Pkg::arch("busybox-static", "arm64");
    let fetched = match which("apt-get") {
        Some(_) => deb::fetch_candidates(deb::View::System, std::slice::from_ref(&pkg)),
        None => Err(anyhow::anyhow!("this machine has no apt-get")),
    };
    let fetched = match fetched {
        Ok(mut f) => f.remove(0),
        Err(e) => {
            let cached = deb::cached_versions(&pkg)
                .pop()
                .and_then(|v| deb::cached(&pkg, &v));
            let Some(f) = cached else {
                return Err(e).context(format!(
                    "cannot fetch {BUSYBOX_PACKAGE}: run `dpkg --add-architecture arm64 \
                     && apt-get update` as root (Debian)"
                ));
            };
            say!("linux: {e:#}; using the cached busybox {}", f.version);
            f
        }
    };
    let binary = fetched.dir.join("bin/busybox");
    let bytes = std::fs::read(&binary)
        .with_context(|| format!("{BUSYBOX_PACKAGE} {} has no bin/busybox", fetched.version))?;
    check_aarch64_elf(&bytes).context("the package's bin/busybox")?;
    Ok((binary, fetched.version))
}

/// The arm64 static busybox of the initramfs (fetched if need be).
pub fn busybox_binary() -> Result<PathBuf> {
    Ok(busybox()?.0)
}

/// Builds the initramfs, or finds it in the cache. It does not wait for
/// the cache's lock (held for the minutes of a kernel build): the archive
/// is written to a file of this process and renamed into place, and the
/// package fetch has its own lock.
pub fn initramfs() -> Result<PathBuf> {
    initramfs_locked()
}

pub fn initramfs_locked() -> Result<PathBuf> {
    let (busybox, version) = busybox()?;
    let init_file = init_path();
    let init = std::fs::read(&init_file)
        .with_context(|| format!("cannot read {}", init_file.display()))?;
    let key = Key::new("initramfs")
        .add("busybox", &version)
        .add("init", &init)
        .add("applets", APPLETS.join(" "))
        .add("counter", counter::elf());
    let out = cache::root().join(format!("initramfs-{}.cpio.gz", key.hex()));
    if out.exists() {
        say!("linux: initramfs up to date (cached, key {})", key.hex());
        return Ok(out);
    }
    let bytes =
        std::fs::read(&busybox).with_context(|| format!("cannot read {}", busybox.display()))?;
    let gz = build(&bytes, &init)?;
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &gz)?;
    std::fs::rename(&tmp, &out)?;
    say!(
        "linux: initramfs written ({} bytes: busybox {version}, {})",
        gz.len(),
        util::display_path(&init_file)
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn fake_busybox() -> Vec<u8> {
        let mut v = vec![0u8; 64];
        v[..4].copy_from_slice(b"\x7fELF");
        v[4] = 2;
        v[5] = 1;
        v[18..20].copy_from_slice(&183u16.to_le_bytes());
        v
    }

    /// (path, mode, rdev, data) of one entry.
    type ReadEntry = (String, u32, (u32, u32), Vec<u8>);

    fn read_back(mut bytes: &[u8]) -> Vec<ReadEntry> {
        let mut out = Vec::new();
        loop {
            let mut r = cpio::NewcReader::new(bytes).unwrap();
            if r.entry().is_trailer() {
                return out;
            }
            let e = r.entry();
            let (name, mode, rdev) = (
                e.name().to_owned(),
                e.mode(),
                (e.rdev_major(), e.rdev_minor()),
            );
            let mut data = Vec::new();
            r.read_to_end(&mut data).unwrap();
            out.push((name, mode, rdev, data));
            bytes = r.finish().unwrap();
        }
    }

    #[test]
    fn layout_of_the_archive() {
        let bb = fake_busybox();
        let init = b"#!/bin/sh\necho hi\n";
        let gz = build(&bb, init).unwrap();
        assert_eq!(&gz[..2], b"\x1f\x8b", "gzip magic");
        let mut cpio_bytes = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut cpio_bytes)
            .unwrap();
        let entries = read_back(&cpio_bytes);
        let find = |p: &str| {
            entries
                .iter()
                .find(|e| e.0 == p)
                .unwrap_or_else(|| panic!("no {p}"))
        };
        let init_entry = find("init");
        assert_eq!(init_entry.1, 0o100755);
        assert_eq!(init_entry.3, init);
        let busybox = find("bin/busybox");
        assert_eq!(busybox.1, 0o100755);
        assert_eq!(busybox.3, bb);
        let console = find("dev/console");
        assert_eq!((console.1, console.2), (0o020600, (5, 1)));
        for applet in [
            "sh", "taskset", "cttyhack", "setsid", "poweroff", "dmesg", "mount",
        ] {
            let link = find(&format!("bin/{applet}"));
            assert_eq!((link.1, link.3.as_slice()), (0o120777, &b"busybox"[..]));
        }
        for dir in ["proc", "sys", "dev", "tmp"] {
            assert_eq!(find(dir).1, 0o040755);
        }
        // Every parent directory comes before its entries.
        for (i, e) in entries.iter().enumerate() {
            if let Some((parent, _)) = e.0.rsplit_once('/') {
                let at = entries.iter().position(|d| d.0 == parent).unwrap();
                assert!(at < i, "{} before {parent}", e.0);
            }
        }
        // Reproducible.
        assert_eq!(build(&bb, init).unwrap(), gz);
    }

    #[test]
    fn refuses_wrong_inputs() {
        let init = b"#!/bin/sh\n";
        let mut x86 = fake_busybox();
        x86[18..20].copy_from_slice(&62u16.to_le_bytes());
        let e = format!("{:#}", build(&x86, init).unwrap_err());
        assert!(e.contains("not aarch64"), "{e}");
        assert!(build(b"#!/bin/sh", init).is_err());
        let e = format!(
            "{:#}",
            build(&fake_busybox(), b"echo no shebang\n").unwrap_err()
        );
        assert!(e.contains("#!/bin/sh"), "{e}");
    }

    #[test]
    fn the_repo_init_script_is_usable() {
        let init = std::fs::read(super::super::init_path()).unwrap();
        check_init(&init).unwrap();
        let text = String::from_utf8(init).unwrap();
        // The flows the scenarios select, and the marker they wait for.
        for flow in [
            "boot)",
            "nmi-backtrace)",
            "hardlockup)",
            "poweroff)",
            "hyp-dump)",
            "heartbeat)",
        ] {
            assert!(text.contains(flow), "{flow}");
        }
        assert!(text.contains("userspace up"));
        // Every command the script runs through a symlink is in the archive
        // (a rough check on the first word of each command).
        for cmd in [
            "taskset", "setsid", "cttyhack", "poweroff", "dmesg", "nproc", "mount",
        ] {
            assert!(APPLETS.contains(&cmd), "{cmd}");
            assert!(text.contains(cmd), "{cmd}");
        }
    }
}
