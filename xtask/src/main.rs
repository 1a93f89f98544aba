//! nmivisor's host tool: provisioning, building the bootable image, running
//! it under QEMU, the test suite (host unit tests plus QEMU scenarios) and
//! log symbolization. Invoked as `cargo xtask ...`.

mod build;
mod harness;
mod hosttest;
mod image;
mod provision;
mod qemu;
mod scenarios;
mod symbolize;
mod util;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::build::{Flavor, Images};
use crate::provision::ToolchainChoice;
use crate::qemu::QemuConfig;
use crate::util::display_path;

/// nmivisor's build, run and test tool.
///
/// Every command provisions what it needs first (the aarch64-unknown-none
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
        NMIVISOR_QEMU         QEMU binary to use instead of qemu-system-aarch64\n  \
        NMIVISOR_NO_RUST_LLD  with the Debian toolchain, ignore rustup's rust-lld and use ld.lld\n\n\
        Outputs go to target/nmivisor/ (images, toolchain cache)."
)]
struct Cli {
    /// Which toolchain builds the bare-metal target: `auto` tries the rustup
    /// toolchain (adding the target if needed) and falls back to Debian's
    /// rustc-web/cargo-web with -Zbuild-std; `rustup` and `debian` force one.
    #[arg(long, global = true, value_enum, env = "NMIVISOR_TOOLCHAIN", default_value_t = ToolchainChoice::Auto)]
    toolchain: ToolchainChoice,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install or find the tools: the aarch64-unknown-none toolchain and QEMU.
    Provision,

    /// Build the hypervisor and the test guest, then the bootable image
    /// (target/nmivisor/hypervisor.{elf,bin}).
    Build(BuildArgs),

    /// Build, then boot the hypervisor in QEMU (exits with QEMU's exit code;
    /// quit QEMU with Ctrl-A x).
    Run(RunArgs),

    /// Run the host unit tests and the QEMU scenarios; prints
    /// `N passed, M failed` and fails if anything failed.
    Test(TestArgs),

    /// Annotate hex addresses in a log with the hypervisor function and
    /// source line (`[function+0xoff at file:line]`).
    Symbolize(SymbolizeArgs),
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

    /// Memory size (QEMU -m), e.g. 512M or 2G.
    #[arg(long, default_value = "1G", value_name = "SIZE")]
    mem: String,

    /// CPU model (QEMU -cpu).
    #[arg(long, default_value = "max", value_name = "MODEL")]
    cpu: String,

    /// The hypervisor's command line (QEMU -append), e.g. "nmivisor.test=fault".
    #[arg(long, value_name = "CMDLINE")]
    append: Option<String>,

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
struct TestArgs {
    /// Run only the scenarios whose name contains SUBSTR.
    #[arg(long, value_name = "SUBSTR")]
    filter: Option<String>,

    /// Skip the host unit tests (`cargo test --workspace`).
    #[arg(long)]
    no_host: bool,

    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

#[derive(Args)]
struct SymbolizeArgs {
    /// The log to annotate; standard input if absent or `-`.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,

    /// The hypervisor ELF with debug info [default: target/nmivisor/hypervisor.elf].
    #[arg(long, value_name = "PATH")]
    elf: Option<PathBuf>,
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
    match cli.command {
        Cmd::Provision => {
            provision::cross_toolchain(cli.toolchain)?;
            let qemu = provision::qemu()?;
            say!("QEMU: {}", qemu.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Build(args) => {
            let tc = provision::cross_toolchain(cli.toolchain)?;
            build::build(&tc, args.flavor())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run(args) => run(cli.toolchain, args),
        Cmd::Test(args) => test(cli.toolchain, args),
        Cmd::Symbolize(args) => {
            let elf = args
                .elf
                .unwrap_or_else(|| Images::paths(Flavor::Normal).elf);
            symbolize::run(args.file, elf)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run(choice: ToolchainChoice, args: RunArgs) -> Result<ExitCode> {
    let tc = provision::cross_toolchain(choice)?;
    let qemu = provision::qemu()?;
    let images = build::build(&tc, args.build.flavor())?;
    let mut cfg = QemuConfig::new(display_path(&images.bin));
    cfg.smp = args.smp;
    cfg.mem = args.mem;
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
    }
    let mut cmd = cfg.command(&qemu);
    cmd.current_dir(util::workspace_root());
    say!("running {}", util::command_line(&cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", qemu.display()))?;
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

fn test(choice: ToolchainChoice, args: TestArgs) -> Result<ExitCode> {
    let scenarios: Vec<harness::Scenario> = scenarios::all()
        .into_iter()
        .filter(|s| args.filter.as_deref().is_none_or(|f| s.name.contains(f)))
        .collect();
    if args.list {
        for s in &scenarios {
            let append = s
                .append
                .as_deref()
                .map(|a| format!(" -append {a:?}"))
                .unwrap_or_default();
            println!(
                "{:<24} {} image, -smp {}{append}, timeout {}s",
                s.name,
                s.flavor.stem(),
                s.smp,
                s.timeout.as_secs()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }

    let (mut passed, mut failed) = (0usize, 0usize);

    if !args.no_host {
        let host = hosttest::run()?;
        let s = host.summary;
        println!(
            "host unit tests: {} passed, {} failed ({} test binaries)",
            s.passed, s.failed, s.suites
        );
        passed += s.passed;
        failed += s.failed;
        if !host.success && s.failed == 0 {
            println!("host unit tests: cargo test failed before running every test (build error?)");
            failed += 1;
        }
    }

    if !scenarios.is_empty() {
        let (p, f) = run_scenarios(choice, &scenarios)?;
        passed += p;
        failed += f;
    } else if args.filter.is_some() {
        say!("no scenario matches the filter");
    }

    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Builds the images the scenarios need, then runs each scenario.
fn run_scenarios(
    choice: ToolchainChoice,
    scenarios: &[harness::Scenario],
) -> Result<(usize, usize)> {
    let tc = provision::cross_toolchain(choice)?;
    let qemu = provision::qemu()?;
    let mut images = BTreeMap::new();
    let (mut passed, mut failed) = (0, 0);
    for flavor in scenarios.iter().map(|s| s.flavor) {
        if let std::collections::btree_map::Entry::Vacant(e) = images.entry(flavor) {
            match build::build(&tc, flavor) {
                Ok(img) => {
                    e.insert(Some(img));
                }
                Err(err) => {
                    say!(
                        "error: building the {} image failed: {err:#}",
                        flavor.stem()
                    );
                    e.insert(None);
                }
            }
        }
    }
    for s in scenarios {
        let Some(img) = &images[&s.flavor] else {
            println!(
                "scenario {} ... FAILED: the {} image did not build",
                s.name,
                s.flavor.stem()
            );
            failed += 1;
            continue;
        };
        let mut cmd = s.qemu_config(&img.bin).command(&qemu);
        cmd.current_dir(util::workspace_root());
        let outcome = harness::run(s, cmd);
        if outcome.passed() {
            println!(
                "scenario {} ... ok ({:.1}s)",
                s.name,
                outcome.elapsed.as_secs_f32()
            );
            passed += 1;
        } else {
            println!(
                "scenario {} ... FAILED: {}",
                s.name,
                outcome.failures.join("; ")
            );
            println!(
                "    console log of {} ({} lines):",
                s.name,
                outcome.log.len()
            );
            for line in &outcome.log {
                println!("    | {line}");
            }
            failed += 1;
        }
    }
    Ok((passed, failed))
}
