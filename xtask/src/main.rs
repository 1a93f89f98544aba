//! nmivisor's host tool: provisioning, building the bootable image, running
//! it under QEMU, the test suite (host unit tests plus QEMU scenarios) and
//! log symbolization. Invoked as `cargo xtask ...`.

mod bench;
mod build;
mod bundle;
mod deb;
mod fuzz;
mod harness;
mod hosttest;
mod image;
mod kvm;
mod lint;
mod linux;
mod profile;
mod provision;
mod qemu;
mod runner;
mod scenarios;
mod symbolize;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::build::{Flavor, Images};
use crate::bundle::VmConfig;
use crate::provision::ToolchainChoice;
use crate::qemu::QemuConfig;
use crate::util::display_path;

/// nmivisor's build, run and test tool.
///
/// Every command provisions what it needs first (the aarch64 bare-metal
/// toolchain, QEMU), installing Debian packages with apt-get when running as
/// root, and printing each step as an `xtask:` line.
#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    propagate_version = true,
    after_help = "Environment:\n  \
        NMIVISOR_TOOLCHAIN    same as --toolchain\n  \
        NMIVISOR_QEMU         same as --qemu\n  \
        NMIVISOR_NO_RUST_LLD  with the Debian toolchain, ignore rustup's rust-lld and use ld.lld\n\n\
        Outputs go to target/nmivisor/ (images, toolchain cache)."
)]
struct Cli {
    /// Which toolchain builds the bare-metal target: `auto` tries the rustup
    /// toolchain (adding the target if needed) and falls back to Debian's
    /// rustc-web/cargo-web with -Zbuild-std; `rustup` and `debian` force one.
    #[arg(long, global = true, value_enum, env = "NMIVISOR_TOOLCHAIN", default_value_t = ToolchainChoice::Auto)]
    toolchain: ToolchainChoice,

    /// The QEMU for every run: a qemu-system-aarch64 binary, or `qemu10`
    /// for QEMU 10 from bookworm-backports, fetched into the cache. Without
    /// it, the system's QEMU runs everything, and `cargo xtask test` also
    /// runs the guest-test and Linux scenarios on QEMU 10 (`NAME@qemu10`).
    /// NMIVISOR_QEMU does the same (an empty value counts as unset).
    #[arg(long, global = true, value_name = "PATH|qemu10")]
    qemu: Option<PathBuf>,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install or find the tools: the aarch64 bare-metal toolchain and QEMU.
    Provision,

    /// Build the hypervisor and the test guest, then their bootable images
    /// (target/nmivisor/hypervisor.{elf,bin} and guest-test.{elf,bin}).
    Build(BuildArgs),

    /// Build, then boot the hypervisor in QEMU with guest-test as its one VM
    /// (exits with QEMU's exit code; quit QEMU with Ctrl-A x).
    ///
    /// The VM reaches the hypervisor in a bundle (target/nmivisor/bundle.cpio,
    /// QEMU -initrd): VM `guest-test` on every CPU with --guest-mem of memory.
    /// --guest-image boots another arm64 Image instead (VM `guest`);
    /// --no-guest boots the hypervisor alone.
    Run(RunArgs),

    /// Run the host unit tests and the QEMU scenarios; prints
    /// `N passed, M failed` and fails if anything failed.
    Test(TestArgs),

    /// Measure nmivisor's costs as ratios to native, side by side in one
    /// run under QEMU's deterministic -icount (see docs/benchmarks.md).
    Bench(bench::BenchOptions),

    /// Annotate hex addresses in a log with the hypervisor function and
    /// source line (`[function+0xoff at file:line]`), and guest kernel
    /// addresses with --system-map or --vmlinux.
    Symbolize(SymbolizeArgs),

    /// Build the Linux guest: a 6.12 kernel with ARM64_PSEUDO_NMI (Debian's
    /// linux-source-6.12, allnoconfig + linux/nmivisor.config) and a busybox
    /// initramfs running linux/init.sh.
    ///
    /// Outputs are cached in ${XDG_CACHE_HOME:-~/.cache}/nmivisor/linux/,
    /// keyed by their inputs; a second run only prints the paths (stdout:
    /// `NAME PATH` lines for Image, System.map, vmlinux, config, initramfs).
    Linux(LinuxCmdArgs),

    /// Coverage-guided fuzzing (cargo-fuzz/libFuzzer, stable Rust, no
    /// sanitizer) of the pure decoders: each target runs --seconds; see
    /// docs/fuzzing.md. cargo-fuzz is installed if missing.
    ///
    /// No nightly features and no RUSTC_BOOTSTRAP: the targets are built
    /// with `cargo fuzz build --sanitizer none --release --debug-assertions`
    /// (coverage instrumentation is stable; only sanitizers are not). Seeds
    /// come from fuzz/corpus/TARGET; the growing corpus, crash inputs and
    /// logs go to target/fuzz/{corpus,artifacts,logs}/TARGET.
    Fuzz(fuzz::FuzzArgs),
}

#[derive(Args)]
struct LinuxCmdArgs {
    #[command(flatten)]
    linux: LinuxArgs,

    /// Only (re)build the initramfs and print its path (quick iterations
    /// on linux/init.sh).
    #[arg(long)]
    initramfs_only: bool,
}

#[derive(Args, Clone, Debug, Default)]
struct LinuxArgs {
    /// Build this kernel tree (unconfigured; built with O= in the cache)
    /// instead of Debian's linux-source-6.12.
    #[arg(long, value_name = "DIR")]
    kernel_src: Option<PathBuf>,

    /// Parallel make jobs for the kernel [default: the number of CPUs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
}

impl LinuxArgs {
    fn options(&self) -> linux::Options {
        linux::Options {
            kernel_src: self.kernel_src.clone(),
            jobs: self.jobs.map(usize::from),
        }
    }
}

#[derive(Args)]
struct BuildArgs {
    /// Cargo features for the hypervisor. Only `test-hooks` is supported; it
    /// writes target/nmivisor/hypervisor-test.{elf,bin} instead.
    #[arg(long, value_name = "FEATURES", value_parser = ["test-hooks"])]
    features: Option<String>,
}

impl BuildArgs {
    fn flavor(&self) -> Flavor {
        match self.features.as_deref() {
            Some("test-hooks") => Flavor::TestHooks,
            _ => Flavor::Normal,
        }
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    build: BuildArgs,

    /// Number of CPUs (QEMU -smp).
    #[arg(long, default_value_t = 4, value_name = "N")]
    smp: u32,

    /// Memory size (QEMU -m), e.g. 512M or 2G [default: 1G; 2G with
    /// --linux; the VM's memory with --linux --native].
    #[arg(long, value_name = "SIZE")]
    mem: Option<String>,

    /// CPU model (QEMU -cpu).
    #[arg(long, default_value = "max", value_name = "MODEL")]
    cpu: String,

    /// The hypervisor's command line (QEMU -append), e.g. "nmivisor.test=fault".
    #[arg(long, value_name = "CMDLINE", conflicts_with = "native")]
    append: Option<String>,

    /// Boot the hypervisor alone: no VM bundle, no -initrd.
    #[arg(long)]
    no_guest: bool,

    /// The guest kernel: any arm64 Image (e.g. a Linux arch/arm64/boot/Image)
    /// instead of target/nmivisor/guest-test.bin. Its VM is named `guest`.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["no_guest", "linux"])]
    guest_image: Option<PathBuf>,

    /// Boot the Linux guest of `cargo xtask linux` (built or reused first)
    /// as VM `linux` with its initramfs, command line
    /// "console=ttyAMA0 irqchip.gicv3_pseudo_nmi=1" plus --cmdline: an
    /// interactive busybox shell on the console (`nmv.test=NAME` in
    /// --cmdline runs a test flow instead).
    #[arg(long, conflicts_with = "no_guest")]
    linux: bool,

    /// With --linux: boot Linux natively at EL1, without the hypervisor
    /// (the reference behaviour).
    #[arg(long, requires = "linux")]
    native: bool,

    #[command(flatten)]
    linux_args: LinuxArgs,

    /// The VM's memory (its `memory` config key), e.g. 128M or 1G
    /// [default: 128M; 512M with --linux].
    #[arg(long, value_name = "SIZE", conflicts_with = "no_guest")]
    guest_mem: Option<String>,

    /// The VM's command line (its `cmdline` file), e.g. "console=ttyAMA0";
    /// with --linux, added to the base command line.
    #[arg(long, value_name = "CMDLINE", conflicts_with = "no_guest")]
    cmdline: Option<String>,

    /// An extra argument passed to QEMU verbatim (repeatable), e.g.
    /// --qemu-arg=-d --qemu-arg=int.
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    qemu_args: Vec<String>,

    /// Start QEMU halted with a gdb server on :1234 (-s -S) and print how to
    /// attach gdb-multiarch.
    #[arg(long)]
    gdb: bool,
}

#[derive(Args)]
pub struct TestArgs {
    /// Run only the scenarios whose name contains SUBSTR.
    #[arg(long, value_name = "SUBSTR")]
    filter: Option<String>,

    /// Skip the host half: the host unit tests (`cargo test --workspace`)
    /// and the lint gate.
    #[arg(long)]
    no_host: bool,

    /// Skip the lint gate (rustfmt and clippy with -D warnings, host and
    /// bare-metal targets).
    #[arg(long)]
    no_lint: bool,

    /// Skip the short fuzz runs (`fuzz-TARGET`, 10 s each; --filter
    /// selects them by name too, e.g. `--filter fuzz- --no-host`).
    #[arg(long)]
    no_fuzz: bool,

    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,

    /// For the Linux scenarios (built first when one is selected).
    #[command(flatten)]
    linux: LinuxArgs,
}

#[derive(Args)]
struct SymbolizeArgs {
    /// The log to annotate; standard input if absent or `-`.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,

    /// The hypervisor ELF with debug info [default: target/nmivisor/hypervisor.elf].
    #[arg(long, value_name = "PATH")]
    elf: Option<PathBuf>,

    /// A Linux guest's System.map: also name guest kernel addresses
    /// (0xffff...), e.g. the PCs of a hypervisor dump. See `cargo xtask linux`.
    #[arg(long, value_name = "PATH")]
    system_map: Option<PathBuf>,

    /// A Linux guest's vmlinux, as a symbol source like --system-map.
    #[arg(long, value_name = "PATH")]
    vmlinux: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            say!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    // An empty NMIVISOR_QEMU means "not set".
    let qemu_choice = cli
        .qemu
        .clone()
        .or_else(|| std::env::var_os("NMIVISOR_QEMU").map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty());
    let qemu_choice = qemu_choice.as_deref();
    match cli.command {
        Cmd::Provision => {
            provision::cross_toolchain(cli.toolchain)?;
            let qemu = provision::qemu(qemu_choice)?;
            say!(
                "QEMU: {} ({})",
                qemu.binary.display(),
                qemu.version().unwrap_or_else(|| "--version fails".into())
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Build(args) => {
            let tc = provision::cross_toolchain(cli.toolchain)?;
            build::build(&tc, args.flavor())?.guest()?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run(args) => run(cli.toolchain, qemu_choice, args),
        Cmd::Test(args) => runner::test(cli.toolchain, qemu_choice, args),
        Cmd::Bench(mut opts) => {
            opts.toolchain = cli.toolchain;
            opts.qemu = qemu_choice.map(std::path::Path::to_path_buf);
            bench::run(&opts)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Symbolize(args) => {
            let sources = symbolize::Sources {
                elf: args.elf,
                default_elf: Images::paths(Flavor::Normal).elf,
                system_map: args.system_map,
                vmlinux: args.vmlinux,
            };
            symbolize::run(args.file, sources)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Linux(args) if args.initramfs_only => {
            println!("initramfs  {}", linux::initramfs()?.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Linux(args) => {
            linux::build(&args.linux.options())?.print();
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Fuzz(args) => Ok(if fuzz::run(&args)? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
    }
}

/// The one VM of `cargo xtask run`, booting `image` (guest-test's unless
/// --guest-image says otherwise).
fn run_vm(args: &RunArgs, guest_test: Option<&std::path::Path>) -> Result<VmConfig> {
    let (name, image) = match (&args.guest_image, guest_test) {
        (Some(image), _) => ("guest", image.clone()),
        (None, Some(image)) => (build::GUEST, image.to_path_buf()),
        (None, None) => anyhow::bail!("no guest image (use --guest-image or --no-guest)"),
    };
    Ok(VmConfig {
        symbols: None,
        lockup: None,
        dump: false,
        name: name.into(),
        image,
        initrd: None,
        cmdline: args.cmdline.clone().unwrap_or_default(),
        cpus: bundle::all_cpus(args.smp),
        memory: args.guest_mem.clone().unwrap_or_else(|| "128M".into()),
    })
}

/// The VM `linux` of `cargo xtask run --linux`.
fn linux_vm(args: &RunArgs, linux: &linux::Artifacts) -> VmConfig {
    VmConfig {
        symbols: Some(linux.kernel.system_map.clone()),
        lockup: None,
        dump: false,
        name: linux::VM_NAME.into(),
        image: linux.kernel.image.clone(),
        initrd: Some(linux.initramfs.clone()),
        cmdline: linux::cmdline(args.cmdline.as_deref().unwrap_or_default()),
        cpus: bundle::all_cpus(args.smp),
        memory: args
            .guest_mem
            .clone()
            .unwrap_or_else(|| linux::VM_MEMORY.into()),
    }
}

/// `cargo xtask run --linux --native`: Linux at EL1 on QEMU's own PSCI
/// and GIC, no hypervisor.
fn run_linux_native(args: &RunArgs) -> Result<QemuConfig> {
    let linux = linux::build(&args.linux_args.options())?;
    let mut cfg = QemuConfig::new(&linux.kernel.image);
    cfg.machine = qemu::NATIVE_MACHINE.into();
    cfg.initrd = Some(linux.initramfs.clone());
    cfg.append = Some(linux::cmdline(args.cmdline.as_deref().unwrap_or_default()));
    cfg.mem = args
        .mem
        .clone()
        .or_else(|| args.guest_mem.clone())
        .unwrap_or_else(|| linux::VM_MEMORY.into());
    Ok(cfg)
}

fn run(
    choice: ToolchainChoice,
    qemu_choice: Option<&std::path::Path>,
    args: RunArgs,
) -> Result<ExitCode> {
    if args.native {
        let qemu = provision::qemu(qemu_choice)?;
        let mut cfg = run_linux_native(&args)?;
        cfg.smp = args.smp;
        cfg.cpu = args.cpu.clone();
        cfg.extra = args.qemu_args.clone();
        cfg.gdb = args.gdb;
        return run_qemu(&qemu, &cfg);
    }
    let tc = provision::cross_toolchain(choice)?;
    let qemu = provision::qemu(qemu_choice)?;
    let built = build::build(&tc, args.build.flavor())?;
    let images = &built.hypervisor;
    let mut cfg = QemuConfig::new(display_path(&images.bin));
    let mut linux_built = None;
    if args.linux {
        let linux = linux::build(&args.linux_args.options())?;
        let vm = linux_vm(&args, &linux);
        let out = bundle::bundle_path(linux::VM_NAME);
        bundle::build_bundle(std::slice::from_ref(&vm), &out)?;
        say!("VM {}: cmdline {:?}", vm.name, vm.cmdline);
        cfg.initrd = Some(display_path(&out).into());
        linux_built = Some(linux);
    } else if !args.no_guest {
        let guest_test = match &args.guest_image {
            Some(_) => None,
            None => Some(built.guest()?.bin.as_path()),
        };
        let vm = run_vm(&args, guest_test)?;
        let out = bundle::bundle_path("bundle");
        bundle::build_bundle(std::slice::from_ref(&vm), &out)?;
        cfg.initrd = Some(display_path(&out).into());
    }
    cfg.smp = args.smp;
    cfg.mem = args.mem.clone().unwrap_or_else(|| {
        if args.linux {
            linux::HOST_MEMORY.into()
        } else {
            "1G".into()
        }
    });
    cfg.cpu = args.cpu;
    cfg.append = args.append;
    cfg.extra = args.qemu_args;
    cfg.gdb = args.gdb;
    if args.gdb {
        if provision::gdb().is_none() {
            say!("gdb-multiarch is not available; any gdb for aarch64 will do");
        }
        say!("QEMU waits for gdb on :1234; attach with:");
        say!(
            "    gdb-multiarch {} -ex 'target remote :1234'",
            display_path(&images.elf)
        );
        if let Some(linux) = &linux_built {
            say!(
                "the Linux guest's symbols: (gdb) add-symbol-file {}",
                linux.kernel.vmlinux.display()
            );
        } else if !args.no_guest && args.guest_image.is_none() {
            if let Ok(guest) = built.guest() {
                say!(
                    "guest-test's symbols: (gdb) add-symbol-file {}",
                    display_path(&guest.elf)
                );
            }
        }
    }
    if linux_built.is_some() {
        say!(
            "hypervisor console keys: Ctrl-] three times, then h (help) or d (dump all CPUs); \
             symbolize guest PCs with `cargo xtask symbolize --system-map PATH`"
        );
    }
    run_qemu(&qemu, &cfg)
}

/// Runs QEMU in the foreground with the terminal attached.
fn run_qemu(qemu: &qemu::Qemu, cfg: &QemuConfig) -> Result<ExitCode> {
    let mut cmd = cfg.command(qemu);
    cmd.current_dir(util::workspace_root());
    say!("running {}", util::command_line(&cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", qemu.binary.display()))?;
    match status.code() {
        Some(0) => Ok(ExitCode::SUCCESS),
        Some(code) => {
            say!("QEMU exited with code {code}");
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        None => {
            say!("QEMU was stopped: {status}");
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn run_args(argv: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(["cargo xtask", "run"].iter().chain(argv)).unwrap();
        match cli.command {
            Cmd::Run(args) => args,
            _ => unreachable!(),
        }
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_boots_guest_test_by_default() {
        let args = run_args(&["--smp", "2", "--append", "nmivisor.watchdog=1"]);
        assert!(!args.no_guest);
        let vm = run_vm(&args, Some(std::path::Path::new("g.bin"))).unwrap();
        assert_eq!(
            vm,
            VmConfig {
                symbols: None,
                lockup: None,
                dump: false,
                name: "guest-test".into(),
                image: "g.bin".into(),
                initrd: None,
                cmdline: String::new(),
                cpus: "0-1".into(),
                memory: "128M".into(),
            }
        );
        assert_eq!(args.append.as_deref(), Some("nmivisor.watchdog=1"));
        assert!(run_vm(&args, None).is_err());
    }

    #[test]
    fn run_guest_options() {
        let args = run_args(&[
            "--guest-image",
            "Image",
            "--cmdline",
            "console=ttyAMA0",
            "--guest-mem",
            "512M",
        ]);
        let vm = run_vm(&args, None).unwrap();
        assert_eq!(vm.name, "guest");
        assert_eq!(vm.image, PathBuf::from("Image"));
        assert_eq!(vm.cmdline, "console=ttyAMA0");
        assert_eq!(vm.memory, "512M");
        assert_eq!(vm.cpus, "0-3");
        bundle::validate(&[vm]).unwrap();

        assert!(run_args(&["--no-guest"]).no_guest);
        for clash in [
            &["--no-guest", "--guest-image", "x"][..],
            &["--no-guest", "--cmdline", "x"],
        ] {
            let argv = ["cargo xtask", "run"].iter().chain(clash);
            assert!(Cli::try_parse_from(argv).is_err(), "{clash:?}");
        }
    }

    #[test]
    fn run_linux_options() {
        let args = run_args(&["--linux", "--cmdline", "nmv.test=boot"]);
        assert!(args.linux && !args.native);
        let artifacts = linux::Artifacts {
            kernel: linux::Kernel {
                image: "k/Image".into(),
                system_map: "k/System.map".into(),
                vmlinux: "k/vmlinux".into(),
                config: "k/config".into(),
            },
            initramfs: "i.cpio.gz".into(),
        };
        let vm = linux_vm(&args, &artifacts);
        assert_eq!(
            vm,
            VmConfig {
                // The kernel's System.map goes into the bundle.
                symbols: Some("k/System.map".into()),
                lockup: None,
                dump: false,
                name: "linux".into(),
                image: "k/Image".into(),
                initrd: Some("i.cpio.gz".into()),
                cmdline: "console=ttyAMA0 irqchip.gicv3_pseudo_nmi=1 nmv.test=boot".into(),
                cpus: "0-3".into(),
                memory: "512M".into(),
            }
        );
        assert_eq!(args.mem, None, "2G is chosen in run()");
        let args = run_args(&["--linux", "--guest-mem", "1G", "--smp", "2"]);
        let vm = linux_vm(&args, &artifacts);
        assert_eq!((vm.memory.as_str(), vm.cpus.as_str()), ("1G", "0-1"));
        assert_eq!(vm.cmdline, linux::BASE_CMDLINE);
        assert!(run_args(&["--linux", "--native", "--jobs", "2"]).native);

        for clash in [
            &["--native"][..],
            &["--linux", "--no-guest"],
            &["--linux", "--guest-image", "x"],
            &["--linux", "--native", "--append", "x"],
            &["--linux", "--jobs", "0"],
        ] {
            let argv = ["cargo xtask", "run"].iter().chain(clash);
            assert!(Cli::try_parse_from(argv).is_err(), "{clash:?}");
        }
    }

    #[test]
    fn symbolize_and_linux_arguments() {
        let cli = Cli::try_parse_from(["cargo xtask", "symbolize", "--system-map", "S.map", "log"])
            .unwrap();
        match cli.command {
            Cmd::Symbolize(a) => {
                assert_eq!(a.system_map, Some(PathBuf::from("S.map")));
                assert_eq!(a.vmlinux, None);
            }
            _ => unreachable!(),
        }
        let cli = Cli::try_parse_from([
            "cargo xtask",
            "linux",
            "--kernel-src",
            "/src",
            "--jobs",
            "3",
        ])
        .unwrap();
        match cli.command {
            Cmd::Linux(a) => {
                let o = a.linux.options();
                assert_eq!(o.kernel_src, Some(PathBuf::from("/src")));
                assert_eq!(o.jobs, Some(3));
                assert!(!a.initramfs_only);
            }
            _ => unreachable!(),
        }
    }
}
