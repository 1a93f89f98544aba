//! The QEMU command line shared by `cargo xtask run` and the test scenarios.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

use crate::deb;
use crate::say;
use crate::util::output_of;

/// The machine nmivisor targets: EL2 available, GICv3.
pub const MACHINE: &str = "virt,virtualization=on,gic-version=3";

/// The same machine without EL2, for booting a guest natively at EL1 (the
/// reference run of guest-test; QEMU then provides PSCI itself).
pub const NATIVE_MACHINE: &str = "virt,gic-version=3";

/// The device part of every command line: nothing by default, one serial
/// console on stdio (see [`QemuConfig::args`]).
pub const DEVICE_ARGS: &[&str] = &[
    "-nodefaults",
    "-display",
    "none",
    "-monitor",
    "none",
    "-chardev",
    "stdio,id=console,mux=on,signal=off",
    "-serial",
    "chardev:console",
];

/// Everything that varies between QEMU runs.
#[derive(Clone, Debug)]
pub struct QemuConfig {
    /// `-machine`: [`MACHINE`] or [`NATIVE_MACHINE`].
    pub machine: String,
    /// The flat image given to `-kernel`.
    pub kernel: PathBuf,
    /// The file given to `-initrd` (the VM bundle), if any.
    pub initrd: Option<PathBuf>,
    /// Number of CPUs (`-smp`).
    pub smp: u32,
    /// Memory size (`-m`), e.g. `1G`.
    pub mem: String,
    /// CPU model (`-cpu`).
    pub cpu: String,
    /// Kernel command line (`-append`), if any.
    pub append: Option<String>,
    /// Wait for gdb on :1234 (`-s -S`).
    pub gdb: bool,
    /// Extra arguments appended verbatim.
    pub extra: Vec<String>,
}

impl QemuConfig {
    /// The defaults of `cargo xtask run`: [`MACHINE`], 4 CPUs, 1 GiB,
    /// `-cpu max`, no initrd.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        QemuConfig {
            machine: MACHINE.into(),
            kernel: kernel.into(),
            initrd: None,
            smp: 4,
            mem: "1G".into(),
            cpu: "max".into(),
            append: None,
            gdb: false,
            extra: Vec::new(),
        }
    }

    /// The arguments after the program name.
    ///
    /// Every device is explicit: `-nodefaults` drops QEMU's default NIC
    /// (whose option ROM comes from `ipxe-qemu`, only a Recommends of
    /// Debian's QEMU), display, monitor, parallel port and CD-ROM. What
    /// remains is the `virt` board's own devices plus the one serial port
    /// nmivisor uses, on a stdio chardev with QEMU's usual multiplexer: Ctrl-A
    /// x still quits and Ctrl-A Ctrl-A sends a Ctrl-A, but there is no
    /// monitor behind it (`-monitor none`), and Ctrl-C reaches the guest
    /// (`signal=off`, as `-nographic` did).
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = DEVICE_ARGS
            .iter()
            .chain(&[
                "-machine",
                &self.machine,
                "-cpu",
                &self.cpu,
                "-smp",
                &self.smp.to_string(),
                "-m",
                &self.mem,
                "-kernel",
            ])
            .map(|s| s.to_string())
            .collect();
        args.push(self.kernel.display().to_string());
        if let Some(initrd) = &self.initrd {
            args.push("-initrd".into());
            args.push(initrd.display().to_string());
        }
        if let Some(append) = &self.append {
            args.push("-append".into());
            args.push(append.clone());
        }
        if self.gdb {
            args.push("-s".into());
            args.push("-S".into());
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// A ready-to-spawn command for the QEMU installation `qemu`: its
    /// binary and environment, [`QemuConfig::args`], then the
    /// installation's own arguments (`-L DIR`).
    pub fn command(&self, qemu: &Qemu) -> Command {
        let mut cmd = Command::new(&qemu.binary);
        cmd.envs(qemu.env.iter().map(|(k, v)| (k, v)));
        cmd.args(self.args());
        cmd.args(&qemu.args);
        cmd
    }
}

/// One QEMU installation: the binary plus what it needs to find its own
/// files. The system's QEMU needs nothing; one unpacked into the cache
/// needs its module directory (`QEMU_MODULE_DIR`, or it would load the
/// system QEMU's modules) and its data directory (`-L`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qemu {
    /// A short name, used as the scenario name suffix (`@qemu10`) and in
    /// messages; `system` for the default one.
    pub label: String,
    /// `qemu-system-aarch64`.
    pub binary: PathBuf,
    /// Environment variables set for it.
    pub env: Vec<(String, String)>,
    /// Arguments appended to every command line.
    pub args: Vec<String>,
}

/// The label of the default QEMU (no scenario suffix).
pub const SYSTEM_LABEL: &str = "system";

/// The label of the QEMU fetched from bookworm-backports.
pub const QEMU10_LABEL: &str = "qemu10";

/// Debian's packages that make up QEMU for arm64 guests.
pub const QEMU_PACKAGES: &[&str] = &["qemu-system-arm", "qemu-system-common", "qemu-system-data"];

impl Qemu {
    /// A QEMU binary that needs nothing else (the system's, or one given
    /// with `--qemu`/`NMIVISOR_QEMU`).
    pub fn binary(label: &str, binary: impl Into<PathBuf>) -> Qemu {
        Qemu {
            label: label.into(),
            binary: binary.into(),
            env: Vec::new(),
            args: Vec::new(),
        }
    }

    /// A QEMU unpacked from Debian's packages under `root` (the host is
    /// x86-64, so its modules are in `usr/lib/x86_64-linux-gnu/qemu`).
    pub fn unpacked(label: &str, root: &Path) -> Qemu {
        Qemu {
            label: label.into(),
            binary: root.join("usr/bin/qemu-system-aarch64"),
            env: vec![(
                "QEMU_MODULE_DIR".into(),
                root.join("usr/lib/x86_64-linux-gnu/qemu")
                    .display()
                    .to_string(),
            )],
            args: vec![
                "-L".into(),
                root.join("usr/share/qemu").display().to_string(),
            ],
        }
    }

    /// The first line of `qemu-system-aarch64 --version`.
    pub fn version(&self) -> Option<String> {
        let mut cmd = Command::new(&self.binary);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--version");
        output_of(&mut cmd).and_then(|o| o.lines().next().map(str::to_owned))
    }
}

/// QEMU 10 (Debian 13's, as built for Debian 12 in bookworm-backports),
/// unpacked into the cache next to the system's QEMU without replacing
/// it: the candidate version of [`QEMU_PACKAGES`] in a private view of
/// bookworm-backports (see [`deb::PrivateSource`]). All three packages
/// come from the same source package, so they are unpacked into one tree
/// (`qemu10/<version>/`, hard links to the per-package trees).
pub fn qemu10() -> Result<Qemu> {
    let source = deb::PrivateSource::bookworm_backports();
    let view = deb::View::Private(&source);
    let pkgs: Vec<deb::Pkg> = QEMU_PACKAGES.iter().map(|p| deb::Pkg::host(p)).collect();
    let policies = deb::candidates(view, &pkgs)?;
    let version = policies[0].candidate.clone().context("no candidate")?;
    for (p, pol) in pkgs.iter().zip(&policies) {
        ensure!(
            pol.candidate.as_deref() == Some(version.as_str()),
            "bookworm-backports offers {} {:?} but qemu-system-arm {version}: the packages must match",
            p.name,
            pol.candidate
        );
    }
    ensure!(
        upstream_major(&version).is_some_and(|m| m >= 10),
        "bookworm-backports' qemu-system-arm is {version}, not QEMU 10 or newer"
    );
    let root = deb::cache_base()
        .join("qemu10")
        .join(crate::linux::cache::path_component(&version));
    let qemu = Qemu::unpacked(QEMU10_LABEL, &root);
    if !root.join(deb::COMPLETE).exists() {
        let wanted: Vec<(deb::Pkg, String)> =
            pkgs.iter().map(|p| (p.clone(), version.clone())).collect();
        let fetched = deb::fetch(view, &wanted)?;
        let staging = root.with_file_name(format!(
            "{}.partial",
            crate::linux::cache::path_component(&version)
        ));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)?;
        for f in &fetched {
            crate::util::run(
                Command::new("cp")
                    .args(["-al"])
                    .arg(f.dir.join("usr"))
                    .arg(&staging),
            )
            .with_context(|| {
                format!(
                    "cannot merge {} into {}",
                    f.dir.display(),
                    staging.display()
                )
            })?;
        }
        let total: u64 = fetched.iter().map(|f| f.deb_bytes).sum();
        std::fs::write(
            staging.join(deb::COMPLETE),
            format!("version={version}\ndeb_bytes={total}\n"),
        )?;
        let _ = std::fs::remove_dir_all(&root);
        std::fs::rename(&staging, &root)?;
    }
    ensure!(
        crate::util::is_executable(&qemu.binary),
        "{} is missing from the unpacked qemu-system-arm {version}",
        qemu.binary.display()
    );
    let reported = qemu.version().with_context(|| {
        format!(
            "{} --version fails (QEMU 10 runs with the system's libraries: a library may be \
             missing or too old)",
            qemu.binary.display()
        )
    })?;
    say!(
        "QEMU 10: {} ({reported}, qemu-system-arm {version})",
        qemu.binary.display()
    );
    Ok(qemu)
}

/// The upstream major version of a Debian QEMU version
/// (`1:10.0.2+ds-2+deb13u1~bpo12+1` is 10).
pub fn upstream_major(version: &str) -> Option<u32> {
    let v = version.split_once(':').map_or(version, |(_, v)| v);
    v.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU options that add a device (or a default one) behind the
    /// caller's back, and so must never appear.
    const IMPLICIT_DEVICES: &[&str] = &[
        "-nographic",
        "-net",
        "-nic",
        "-vga",
        "-parallel",
        "-cdrom",
        "-sd",
        "-usb",
    ];

    #[test]
    fn no_default_devices_whatever_the_config() {
        let mut cfg = QemuConfig::new("x.bin");
        for (machine, initrd, gdb, append) in [
            (MACHINE, None, false, None),
            (NATIVE_MACHINE, Some("i.cpio"), true, Some("a=b")),
        ] {
            cfg.machine = machine.into();
            cfg.initrd = initrd.map(PathBuf::from);
            cfg.gdb = gdb;
            cfg.append = append.map(String::from);
            let args = cfg.args();
            assert_eq!(args[0], "-nodefaults", "{args:?}");
            let serials: Vec<_> = args.windows(2).filter(|w| w[0] == "-serial").collect();
            assert_eq!(serials.len(), 1, "exactly one serial port: {args:?}");
            assert!(
                args.windows(2).any(|w| w == ["-monitor", "none"]),
                "{args:?}"
            );
            assert!(
                args.windows(2).any(|w| w == ["-display", "none"]),
                "{args:?}"
            );
            for bad in IMPLICIT_DEVICES {
                assert!(!args.iter().any(|a| a == bad), "{bad} in {args:?}");
            }
            assert!(!args.iter().any(|a| a.starts_with("-device")), "{args:?}");
        }
    }

    #[test]
    fn default_command_line() {
        let mut cfg = QemuConfig::new("target/nmivisor/hypervisor.bin");
        assert_eq!(
            cfg.args().join(" "),
            "-nodefaults -display none -monitor none \
             -chardev stdio,id=console,mux=on,signal=off -serial chardev:console \
             -machine virt,virtualization=on,gic-version=3 -cpu max -smp 4 -m 1G \
             -kernel target/nmivisor/hypervisor.bin"
        );
        cfg.append = Some("nmivisor.test=fault".into());
        cfg.gdb = true;
        cfg.extra = vec!["-d".into(), "int".into()];
        assert!(cfg
            .args()
            .join(" ")
            .ends_with("-append nmivisor.test=fault -s -S -d int"));
    }

    #[test]
    fn installations() {
        let cfg = QemuConfig::new("hv.bin");
        let sys = Qemu::binary(SYSTEM_LABEL, "/usr/bin/qemu-system-aarch64");
        let cmd = cfg.command(&sys);
        assert_eq!(cmd.get_program(), "/usr/bin/qemu-system-aarch64");
        assert_eq!(cmd.get_envs().count(), 0);

        let q = Qemu::unpacked(QEMU10_LABEL, Path::new("/c/qemu10/v"));
        assert_eq!(
            q.binary,
            Path::new("/c/qemu10/v/usr/bin/qemu-system-aarch64")
        );
        let cmd = cfg.command(&q);
        let envs: Vec<_> = cmd.get_envs().collect();
        assert_eq!(
            envs,
            [(
                std::ffi::OsStr::new("QEMU_MODULE_DIR"),
                Some(std::ffi::OsStr::new(
                    "/c/qemu10/v/usr/lib/x86_64-linux-gnu/qemu"
                ))
            )]
        );
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        // The device arguments still come first, and -L names its data.
        assert_eq!(args[0], "-nodefaults");
        assert!(
            args.ends_with(&["-L".into(), "/c/qemu10/v/usr/share/qemu".into()]),
            "{args:?}"
        );
    }

    #[test]
    fn qemu_versions() {
        assert_eq!(upstream_major("1:10.0.2+ds-2+deb13u1~bpo12+1"), Some(10));
        assert_eq!(upstream_major("1:7.2+dfsg-7+deb12u18+b3"), Some(7));
        assert_eq!(upstream_major("9.1.0"), Some(9));
        assert_eq!(upstream_major("garbage"), None);
    }

    #[test]
    fn native_machine_with_initrd() {
        let mut cfg = QemuConfig::new("guest-test.bin");
        cfg.machine = NATIVE_MACHINE.into();
        cfg.mem = "256M".into();
        cfg.smp = 2;
        cfg.initrd = Some("bundle.cpio".into());
        assert_eq!(
            cfg.args().join(" "),
            "-nodefaults -display none -monitor none \
             -chardev stdio,id=console,mux=on,signal=off -serial chardev:console \
             -machine virt,gic-version=3 -cpu max -smp 2 -m 256M \
             -kernel guest-test.bin -initrd bundle.cpio"
        );
    }
}
