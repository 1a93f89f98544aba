//! The KVM peer of `cargo xtask bench --kvm`: Linux KVM nested in the same
//! QEMU machine nmivisor runs on.
//!
//! - **Host kernel.** Debian's stock arm64 kernel ([`crate::linux::stock`],
//!   `CONFIG_KVM=y`, PL011 console built in), booted at EL2 by the outer
//!   QEMU (`virt,virtualization=on,gic-version=3`, `-cpu max`).
//! - **VMM.** Debian's arm64 `qemu-system-arm` package (there is no kvmtool
//!   in Debian 12) and the arm64 `lib*` packages of its dependency closure
//!   (`apt-cache depends --recurse`), each fetched and unpacked by
//!   [`crate::deb`]. Of those, only the shared objects the binary needs
//!   (its `DT_NEEDED` closure) go into the host's initramfs, with
//!   `ld-linux-aarch64.so.1`.
//! - **Host initramfs.** Built here: busybox, the VMM and its libraries in
//!   `/lib`, the guest's files, and an `/init` that runs the inner QEMU
//!   (`-enable-kvm -cpu host`, `-nodefaults` and one serial console like
//!   every QEMU xtask starts, see [`crate::qemu`]) on the console and then
//!   powers off. It is an uncompressed cpio: decompressing it inside the
//!   emulated machine would only add minutes under `-icount`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use object::read::elf::{Dyn as _, FileHeader as _, SectionHeader as _};

use crate::deb::{self, Pkg, View};
use crate::linux::initramfs::{self, Entry, Kind};
use crate::qemu::QemuConfig;
use crate::say;

/// The inner VMM's package (arm64).
pub const VMM_PACKAGE: &str = "qemu-system-arm";
/// The inner VMM's binary inside the package and in the initramfs.
pub const VMM_BINARY: &str = "usr/bin/qemu-system-aarch64";
/// The arm64 dynamic loader every binary of the closure names.
pub const LOADER: &str = "ld-linux-aarch64.so.1";
/// The inner machine: no EL2 for the guest, GICv3 (KVM's vGIC).
pub const INNER_MACHINE: &str = "virt,gic-version=3";
/// The host kernel's command line: its console, and quiet, so that its
/// messages do not cut into the guest's lines on the shared console.
pub const HOST_CMDLINE: &str = "console=ttyAMA0 loglevel=1";

/// The unpacked VMM: the binary and the shared objects it needs.
#[derive(Clone, Debug)]
pub struct Vmm {
    /// `qemu-system-aarch64` (arm64).
    pub binary: PathBuf,
    /// The package version.
    pub version: String,
    /// Soname to file, for every library of the `DT_NEEDED` closure and
    /// [`LOADER`].
    pub libraries: BTreeMap<String, PathBuf>,
    /// How many packages were fetched, and their .deb bytes.
    pub packages: usize,
    pub deb_bytes: u64,
}

/// Which packages of an `apt-cache depends --recurse` listing hold arm64
/// libraries: `*lib*:arm64`, i.e. `lib*` and `zlib1g` (names without
/// `:arm64` are amd64 or `all`).
pub fn library_packages(depends: &[String]) -> Vec<Pkg> {
    let mut out: Vec<Pkg> = depends
        .iter()
        .filter_map(|d| d.strip_suffix(":arm64"))
        .filter(|n| n.contains("lib"))
        .map(|n| Pkg::arch(n, "arm64"))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Fetches the VMM and its libraries.
pub fn vmm() -> Result<Vmm> {
    let vmm = Pkg::arch(VMM_PACKAGE, "arm64");
    let deps = deb::depends(View::System, &vmm, true)?;
    let mut pkgs = vec![vmm.clone()];
    pkgs.extend(library_packages(&deps));
    ensure!(
        pkgs.iter().any(|p| p.name == "libc6"),
        "apt-cache depends --recurse {} names no libc6:arm64 ({} dependencies): are arm64 lists there?",
        vmm.spec(),
        deps.len()
    );
    let fetched = deb::fetch_candidates(View::System, &pkgs)?;
    let binary = fetched[0].dir.join(VMM_BINARY);
    ensure!(
        binary.exists(),
        "{} {} has no {VMM_BINARY}",
        vmm.spec(),
        fetched[0].version
    );
    let index = library_index(fetched.iter().map(|f| f.dir.as_path()))?;
    let mut libraries = needed_closure(&binary, &index)?;
    let loader = index
        .get(LOADER)
        .with_context(|| format!("no {LOADER} in the fetched libc6:arm64"))?;
    libraries.insert(LOADER.into(), loader.clone());
    Ok(Vmm {
        binary,
        version: fetched[0].version.clone(),
        libraries,
        packages: fetched.len(),
        deb_bytes: fetched.iter().map(|f| f.deb_bytes).sum(),
    })
}

/// Every file named like a shared object (`*.so*`) in the library
/// directories of the unpacked packages, by file name, with symlinks
/// resolved inside their package.
fn library_index<'a>(roots: impl Iterator<Item = &'a Path>) -> Result<BTreeMap<String, PathBuf>> {
    let mut index = BTreeMap::new();
    for root in roots {
        for dir in [
            "lib",
            "lib/aarch64-linux-gnu",
            "usr/lib",
            "usr/lib/aarch64-linux-gnu",
        ] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.contains(".so") {
                    continue;
                }
                if let Some(real) = resolve(root, &e.path()) {
                    index.entry(name).or_insert(real);
                }
            }
        }
    }
    Ok(index)
}

/// Follows symlinks of `path` inside the package tree `root` (absolute
/// targets are taken relative to `root`, as dpkg would install them).
fn resolve(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..16 {
        let meta = std::fs::symlink_metadata(&p).ok()?;
        if !meta.file_type().is_symlink() {
            return meta.is_file().then_some(p);
        }
        let target = std::fs::read_link(&p).ok()?;
        p = if target.is_absolute() {
            root.join(target.strip_prefix("/").ok()?)
        } else {
            p.parent()?.join(target)
        };
    }
    None
}

/// The `DT_NEEDED` entries of an ELF file.
pub fn needed(data: &[u8]) -> Result<Vec<String>> {
    let header = object::elf::FileHeader64::<object::Endianness>::parse(data)
        .context("not a 64-bit ELF file")?;
    let endian = header.endian()?;
    let sections = header.sections(endian, data)?;
    let mut out = Vec::new();
    for section in sections.iter() {
        let Some((dyns, link)) = section.dynamic(endian, data)? else {
            continue;
        };
        let strings = sections.strings(endian, data, link)?;
        for d in dyns {
            if d.tag(endian) == object::elf::DT_NEEDED {
                let off = u32::try_from(d.d_val(endian)).context("bad DT_NEEDED")?;
                let name = strings.get(off).ok().context("bad DT_NEEDED string")?;
                out.push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    Ok(out)
}

/// The libraries `binary` needs, directly and through each other, found in
/// `index`; fails naming every one that is missing.
fn needed_closure(
    binary: &Path,
    index: &BTreeMap<String, PathBuf>,
) -> Result<BTreeMap<String, PathBuf>> {
    let mut found = BTreeMap::new();
    let mut missing = BTreeSet::new();
    let mut todo = vec![binary.to_path_buf()];
    while let Some(file) = todo.pop() {
        let data =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        for name in needed(&data).with_context(|| format!("{}", file.display()))? {
            if found.contains_key(&name) || missing.contains(&name) {
                continue;
            }
            match index.get(&name) {
                Some(p) => {
                    found.insert(name, p.clone());
                    todo.push(p.clone());
                }
                None => {
                    missing.insert(name);
                }
            }
        }
    }
    if !missing.is_empty() {
        bail!(
            "the arm64 packages of {VMM_PACKAGE}'s dependencies lack {}",
            missing.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(found)
}

/// `arg` quoted for the host's `/bin/sh`.
pub fn sh_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,+@%".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The inner QEMU's configuration: `kernel` (a path inside the host's
/// initramfs) on [`INNER_MACHINE`] under KVM with `-cpu host`.
pub fn inner_config(
    kernel: &str,
    initrd: Option<&str>,
    append: &str,
    smp: u32,
    mem: &str,
) -> QemuConfig {
    let mut cfg = QemuConfig::new(kernel);
    cfg.machine = INNER_MACHINE.into();
    cfg.cpu = "host".into();
    cfg.smp = smp;
    cfg.mem = mem.into();
    cfg.initrd = initrd.map(PathBuf::from);
    cfg.append = Some(append.into());
    // A fixed seed for what the inner guest reads as random, like the
    // outer run's (see `bench::SEED`).
    cfg.extra = vec![
        "-enable-kvm".into(),
        "-seed".into(),
        crate::bench::SEED.into(),
    ];
    cfg
}

/// The line the host's `/init` prints when every inner run has ended.
pub const ALL_DONE: &str = "nmv-kvm-host: all inner runs done";

/// The host's `/init`: mount, check `/dev/kvm`, run each inner QEMU in
/// the foreground in turn, power off.
pub fn host_init(inner: &[QemuConfig]) -> String {
    let runs: Vec<String> = inner
        .iter()
        .map(|cfg| {
            let argv: Vec<String> = std::iter::once("/bin/qemu-system-aarch64".to_string())
                .chain(cfg.args())
                .map(|a| sh_quote(&a))
                .collect();
            format!(
                "echo \"nmv-kvm-host: starting the inner QEMU ({})\"\n{}\necho \"nmv-kvm-host: the inner QEMU exited with $?\"",
                cfg.kernel.display(),
                argv.join(" ")
            )
        })
        .collect();
    format!(
        r#"#!/bin/sh
# /init of the KVM host of `cargo xtask bench --kvm` (written by xtask).
export PATH=/bin
export LD_LIBRARY_PATH=/lib
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "nmv-kvm-host: up (kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPUs)"
if [ ! -c /dev/kvm ]; then
    echo "nmv-kvm-host: FAILED: no /dev/kvm"
    dmesg | grep -i kvm
    poweroff -f
fi
{}
echo "{ALL_DONE}"
poweroff -f
"#,
        runs.join("\n")
    )
}

/// Builds the host's initramfs (uncompressed newc cpio): busybox, the VMM
/// with its libraries in `/lib`, `files` (path in the archive, content),
/// and `init`.
pub fn host_initramfs(
    busybox: &[u8],
    vmm: &Vmm,
    files: &[(String, Vec<u8>)],
    init: &str,
) -> Result<Vec<u8>> {
    let mut entries: Vec<Entry> = initramfs::layout(busybox, init.as_bytes());
    entries.push(Entry {
        path: "lib".into(),
        kind: Kind::Dir,
    });
    let binary = std::fs::read(&vmm.binary)?;
    initramfs::check_aarch64_elf(&binary)?;
    entries.push(Entry {
        path: "bin/qemu-system-aarch64".into(),
        kind: Kind::File {
            perm: 0o755,
            data: binary,
        },
    });
    for (soname, path) in &vmm.libraries {
        entries.push(Entry {
            path: format!("lib/{soname}"),
            kind: Kind::File {
                perm: 0o755,
                data: std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            },
        });
    }
    for (path, data) in files {
        entries.push(Entry {
            path: path.clone(),
            kind: Kind::File {
                perm: 0o644,
                data: data.clone(),
            },
        });
    }
    initramfs::cpio(&entries)
}

/// Prints what the KVM peer is made of.
pub fn describe(vmm: &Vmm) {
    say!(
        "kvm: inner VMM {VMM_PACKAGE}:arm64 {} with {} libraries ({} packages, {:.1} MB of .deb)",
        vmm.version,
        vmm.libraries.len(),
        vmm.packages,
        vmm.deb_bytes as f64 / 1e6
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_packages_are_arm64_libs() {
        let deps: Vec<String> = [
            "libaio1:arm64",
            "libc6:arm64",
            "libc6",
            "qemu-system-common:arm64",
            "adduser",
            "libc6:arm64",
            "passwd:arm64",
            "zlib1g:arm64",
        ]
        .map(String::from)
        .to_vec();
        let pkgs = library_packages(&deps);
        assert_eq!(
            pkgs,
            [
                Pkg::arch("libaio1", "arm64"),
                Pkg::arch("libc6", "arm64"),
                Pkg::arch("zlib1g", "arm64")
            ]
        );
    }

    #[test]
    fn host_init_runs_the_inner_qemu_without_default_devices() {
        let inner = inner_config(
            "/guest-test.bin",
            None,
            "guest-test.bench guest-test.bench-iterations=10",
            2,
            "256M",
        );
        let init = host_init(&[inner]);
        assert!(init.starts_with("#!/bin/sh\n"));
        let line = init
            .lines()
            .find(|l| l.starts_with("/bin/qemu-system-aarch64 "))
            .unwrap();
        assert!(
            line.starts_with("/bin/qemu-system-aarch64 -nodefaults "),
            "{line}"
        );
        for want in [
            "-machine virt,gic-version=3",
            "-cpu host",
            "-smp 2",
            "-m 256M",
            "-kernel /guest-test.bin",
            "-append 'guest-test.bench guest-test.bench-iterations=10'",
            "-enable-kvm -seed 1",
            "-serial chardev:console",
        ] {
            assert!(line.contains(want), "{want} in {line}");
        }
        assert!(init.trim_end().ends_with("poweroff -f"));
        assert!(init.contains(ALL_DONE));
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn needed_of_a_real_elf() {
        // The test binary itself is dynamically linked on the host.
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let n = needed(&exe).unwrap();
        assert!(n.iter().any(|l| l.starts_with("libc.so")), "{n:?}");
        assert!(needed(b"not an elf").is_err());
    }
}
