//! The QEMU command line shared by `cargo xtask run` and the test scenarios.

use std::path::{Path, PathBuf};
use std::process::Command;

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

    /// A ready-to-spawn command for the QEMU binary `qemu`.
    pub fn command(&self, qemu: &Path) -> Command {
        let mut cmd = Command::new(qemu);
        cmd.args(self.args());
        cmd
    }
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
