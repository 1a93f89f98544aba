//! The QEMU command line shared by `cargo xtask run` and the test scenarios.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The machine nmivisor targets: EL2 available, GICv3.
pub const MACHINE: &str = "virt,virtualization=on,gic-version=3";

/// Everything that varies between QEMU runs.
#[derive(Clone, Debug)]
pub struct QemuConfig {
    /// The flat image given to `-kernel`.
    pub kernel: PathBuf,
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
    /// The defaults of `cargo xtask run`: 4 CPUs, 1 GiB, `-cpu max`.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        QemuConfig {
            kernel: kernel.into(),
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
            MACHINE,
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
}
