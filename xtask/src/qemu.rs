//! The QEMU command line shared by `cargo xtask run` and the test scenarios.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The machine nmivisor targets: EL2 available, GICv3.
pub const MACHINE: &str = "virt,virtualization=on,gic-version=3";

/// The same machine without EL2, for booting a guest natively at EL1 (the
/// reference run of guest-test; QEMU then provides PSCI itself).
pub const NATIVE_MACHINE: &str = "virt,gic-version=3";

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
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "-machine",
            &self.machine,
            "-cpu",
            &self.cpu,
            "-smp",
            &self.smp.to_string(),
            "-m",
            &self.mem,
            "-nographic",
            "-kernel",
        ]
        .iter()
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

    #[test]
    fn default_command_line() {
        let mut cfg = QemuConfig::new("target/nmivisor/hypervisor.bin");
        assert_eq!(
            cfg.args().join(" "),
            "-machine virt,virtualization=on,gic-version=3 -cpu max -smp 4 -m 1G -nographic \
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
            "-machine virt,gic-version=3 -cpu max -smp 2 -m 256M -nographic \
             -kernel guest-test.bin -initrd bundle.cpio"
        );
    }
}
