//! `cargo xtask fuzz`: coverage-guided fuzzing of the hypervisor's pure
//! decoders with cargo-fuzz / libFuzzer (see docs/fuzzing.md), and the short
//! fuzz runs `cargo xtask test` counts as tests.
//!
//! - The targets live in `fuzz/` (their own cargo workspace) and reach the
//!   hypervisor's code through the library `nmivisor_pure` (fuzz/pure/), a
//!   second crate root over hypervisor/src/'s files.
//! - They are built with `cargo fuzz build --sanitizer none`: libFuzzer's
//!   coverage instrumentation (`-Cpasses=sancov-module`, `-Cllvm-args=...`)
//!   works on the stable toolchain; only a sanitizer (`-Zsanitizer=...`)
//!   would need nightly features. The code under test has no `unsafe`, so
//!   what the fuzzers look for is panics: failed invariants, out-of-range
//!   indexing, arithmetic overflow (`--debug-assertions` turns overflow
//!   checks on).
//! - Seeds (small, meaningful inputs) are in the repository, in
//!   `fuzz/corpus/TARGET/`, written by [`write_seeds`]. What the fuzzers
//!   find while running goes to `target/fuzz/corpus/TARGET/` and crash
//!   inputs to `target/fuzz/artifacts/TARGET/`, so runs leave `git status`
//!   clean.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::say;
use crate::util::{self, command_line, display_path, workspace_root};

/// The fuzz targets: name (a binary of fuzz/Cargo.toml) and what it covers.
pub const TARGETS: &[(&str, &str)] = &[
    (
        "esr",
        "ESR/ISS decode, MMIO access decode and load extension (arch/esr.rs)",
    ),
    (
        "sgi",
        "guest SGI register decode and target resolution (vgic/sgi.rs)",
    ),
    (
        "vgic",
        "vGIC: GICD/GICR reads and writes, SGIs, lines, LR flush/fold, with invariants (vgic/)",
    ),
    ("dt", "the hypervisor's device-tree reader (boot/dt.rs)"),
    ("cpio", "the newc cpio reader (vm-bundle/src/cpio.rs)"),
    (
        "bundle",
        "the VM bundle parser and CPU/memory admission (vm-bundle/src/lib.rs)",
    ),
    (
        "guest_dt",
        "the guest DT builder, re-parsed with the fdt crate and boot/dt.rs (vm/guest_dt.rs)",
    ),
    (
        "guest_unwind",
        "the guest stage-1 walk and frame-record unwinder over guest-made tables and stacks, System.map lookup and KASLR (debug/guest_walk.rs, debug/guest_symbols.rs)",
    ),
];

/// Seconds each target runs in `cargo xtask test`.
pub const TEST_SECONDS: u64 = 10;

/// The prefix of the fuzz entries' names in `cargo xtask test`.
const TEST_PREFIX: &str = "fuzz-";

/// `cargo xtask fuzz` arguments.
#[derive(Args, Debug)]
pub struct FuzzArgs {
    /// Run only this target (see --list); all of them, one after the
    /// other, if absent.
    #[arg(value_name = "TARGET")]
    target: Option<String>,

    /// How long each target runs.
    #[arg(long, value_name = "N", default_value_t = 60)]
    seconds: u64,

    /// List the targets and exit.
    #[arg(long)]
    list: bool,

    /// (Re)write the seed corpora in fuzz/corpus/ and exit.
    #[arg(long, conflicts_with_all = ["list", "target"])]
    write_seeds: bool,
}

/// `cargo xtask fuzz`.
pub fn run(args: &FuzzArgs) -> Result<bool> {
    if args.list {
        for (name, what) in TARGETS {
            println!("{name:<10} {what}");
        }
        return Ok(true);
    }
    if args.write_seeds {
        write_seeds(&seed_root())?;
        return Ok(true);
    }
    let targets: Vec<&str> = match &args.target {
        Some(t) => {
            if !TARGETS.iter().any(|(n, _)| n == t) {
                bail!("no fuzz target {t:?} (cargo xtask fuzz --list)");
            }
            vec![t.as_str()]
        }
        None => TARGETS.iter().map(|(n, _)| *n).collect(),
    };
    let bins = build()?;
    let mut failed = 0;
    for t in &targets {
        let r = run_target(&bins, t, args.seconds)?;
        println!("fuzz {t}: {}", r.describe());
        failed += usize::from(!r.passed());
    }
    println!("{} passed, {failed} failed", targets.len() - failed);
    Ok(failed == 0)
}

/// The entries `cargo xtask test` runs: `fuzz-TARGET` for each target
/// whose entry name contains `filter`.
pub fn test_entries(filter: Option<&str>) -> Vec<String> {
    TARGETS
        .iter()
        .map(|(n, _)| format!("{TEST_PREFIX}{n}"))
        .filter(|e| filter.is_none_or(|f| e.contains(f)))
        .collect()
}

/// For `cargo xtask test --list`.
pub fn list_test_entries(entries: &[String]) {
    for e in entries {
        println!("{e:<26} libFuzzer, {TEST_SECONDS}s (cargo xtask fuzz)");
    }
}

/// Runs `entries` (from [`test_entries`]) for [`TEST_SECONDS`] each;
/// returns (passed, failed). A build failure fails every entry.
pub fn run_tests(entries: &[String]) -> (usize, usize) {
    if entries.is_empty() {
        return (0, 0);
    }
    let bins = match build() {
        Ok(b) => b,
        Err(e) => {
            for entry in entries {
                println!("fuzz {entry} ... FAILED: the fuzz targets did not build: {e:#}");
            }
            return (0, entries.len());
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for entry in entries {
        let target = entry.strip_prefix(TEST_PREFIX).unwrap_or(entry);
        match run_target(&bins, target, TEST_SECONDS) {
            Ok(r) if r.passed() => {
                println!("fuzz {entry} ... ok ({})", r.describe());
                passed += 1;
            }
            Ok(r) => {
                println!("fuzz {entry} ... FAILED: {}", r.describe());
                failed += 1;
            }
            Err(e) => {
                println!("fuzz {entry} ... FAILED: {e:#}");
                failed += 1;
            }
        }
    }
    (passed, failed)
}

fn fuzz_dir() -> PathBuf {
    workspace_root().join("fuzz")
}

fn seed_root() -> PathBuf {
    fuzz_dir().join("corpus")
}

/// The fuzz builds' own target directory (instrumented code must not mix
/// with the workspace's builds).
fn fuzz_target_dir() -> PathBuf {
    util::target_dir().join("fuzz")
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Finds cargo-fuzz, installing it from crates.io when it is missing, and
/// the C++ compiler libfuzzer-sys builds libFuzzer with.
fn provision() -> Result<()> {
    let have = |cmd: &mut Command| util::output_of(cmd).is_some();
    if !have(cargo().args(["fuzz", "--version"])) {
        say!("cargo-fuzz not found: installing it (cargo install cargo-fuzz --locked)");
        let mut install = cargo();
        install.args(["install", "cargo-fuzz", "--locked"]);
        util::run(&mut install).context(
            "could not install cargo-fuzz; install it yourself with \
             `cargo install cargo-fuzz --locked` (it needs crates.io)",
        )?;
        if !have(cargo().args(["fuzz", "--version"])) {
            bail!(
                "cargo-fuzz was installed but `cargo fuzz` does not run: is ~/.cargo/bin on PATH?"
            );
        }
    }
    if util::which("c++").is_none() {
        say!("no C++ compiler (c++) to build libFuzzer with");
        crate::provision::apt_install(&["g++"], "a C++ compiler (g++) for libFuzzer")?;
    }
    Ok(())
}

/// The host triple, where cargo fuzz puts the binaries.
fn host_triple() -> Result<String> {
    let out = util::output_of(Command::new("rustc").arg("-vV")).context("cannot run rustc -vV")?;
    out.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV names no host")
}

/// Builds every target (one cargo invocation) and returns the directory
/// holding the binaries.
fn build() -> Result<PathBuf> {
    provision()?;
    let mut cmd = cargo();
    cmd.current_dir(workspace_root())
        .args(["fuzz", "build", "--fuzz-dir"])
        .arg(fuzz_dir())
        // No sanitizer: stable Rust suffices (see the module docs).
        .args(["--sanitizer", "none", "--release", "--debug-assertions"])
        .env("CARGO_TARGET_DIR", fuzz_target_dir());
    say!(
        "building the fuzz targets (instrumented, in {})",
        display_path(&fuzz_target_dir())
    );
    util::run(&mut cmd).context("cargo fuzz build failed")?;
    Ok(fuzz_target_dir().join(host_triple()?).join("release"))
}

/// What one libFuzzer run did.
pub struct FuzzRun {
    /// The process exit status was success.
    pub ok: bool,
    /// libFuzzer's final line (`#N DONE cov: ...`), or the crash reason.
    pub summary: String,
    /// The crash input, if libFuzzer wrote one.
    pub artifact: Option<PathBuf>,
    pub seconds: f32,
    /// The run's full log.
    pub log: PathBuf,
}

impl FuzzRun {
    fn passed(&self) -> bool {
        self.ok && self.artifact.is_none()
    }

    fn describe(&self) -> String {
        let mut s = format!("{:.0}s, {}", self.seconds, self.summary);
        if let Some(a) = &self.artifact {
            s += &format!("; input {}", display_path(a));
        }
        if !self.passed() {
            s += &format!("; log {}", display_path(&self.log));
        }
        s
    }
}

/// Runs target `name` for `seconds`: new inputs go to the working corpus
/// in target/fuzz/corpus/NAME (the first corpus directory, the only one
/// libFuzzer writes), the seeds of fuzz/corpus/NAME are read too.
fn run_target(bins: &Path, name: &str, seconds: u64) -> Result<FuzzRun> {
    let bin = bins.join(name);
    if !bin.exists() {
        bail!("{} was not built", display_path(&bin));
    }
    let work = fuzz_target_dir().join("corpus").join(name);
    let artifacts = fuzz_target_dir().join("artifacts").join(name);
    let logs = fuzz_target_dir().join("logs");
    for d in [&work, &artifacts, &logs] {
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let before: Vec<PathBuf> = list_files(&artifacts);
    let log = logs.join(format!("{name}.log"));
    let mut cmd = Command::new(&bin);
    cmd.arg(&work);
    let seeds = seed_root().join(name);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.arg(format!("-max_total_time={seconds}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // A slow input is a defect too (a guest must not stall EL2), but
        // the box is shared: allow 10 s per input before calling it a hang.
        .arg("-timeout=10")
        .arg("-print_final_stats=1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log)?);
    say!(
        "fuzz {name}: {} (log {})",
        command_line(&cmd),
        display_path(&log)
    );
    let start = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let seconds = start.elapsed().as_secs_f32();
    let text = fs::read_to_string(&log).unwrap_or_default();
    let artifact = list_files(&artifacts)
        .into_iter()
        .find(|a| !before.contains(a));
    let summary = summarize(&text, status.success());
    if !status.success() || artifact.is_some() {
        say!("fuzz {name} failed; the end of its log:");
        let lines: Vec<&str> = text.lines().collect();
        for l in &lines[lines.len().saturating_sub(40)..] {
            eprintln!("    | {l}");
        }
        if let Some(a) = &artifact {
            say!("reproduce: {} {}", display_path(&bin), display_path(a));
        }
    }
    Ok(FuzzRun {
        ok: status.success(),
        summary,
        artifact,
        seconds,
        log,
    })
}

fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The numbers of libFuzzer's last status line (`#123 DONE cov: 45 ft: 67
/// corp: 8/90b ...`) as `123 runs, cov 45, ft 67, corpus 8`, or the crash
/// reason.
fn summarize(log: &str, ok: bool) -> String {
    if !ok {
        if let Some(l) = log.lines().find(|l| {
            l.contains("panicked at") || l.contains("ERROR: libFuzzer") || l.contains("==ERROR")
        }) {
            return l.trim().trim_end_matches(':').to_string();
        }
    }
    let status = log
        .lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains("cov:"));
    let Some(line) = status else {
        return if ok {
            "no status line".into()
        } else {
            "failed before fuzzing".into()
        };
    };
    let mut words = line.split_whitespace();
    let runs = words
        .next()
        .unwrap_or("#?")
        .trim_start_matches('#')
        .to_string();
    let field = |key: &str| {
        let mut it = line.split_whitespace();
        it.position(|w| w == key)
            .and_then(|_| it.next())
            .unwrap_or("?")
            .to_string()
    };
    let corp = field("corp:");
    let corp = corp.split('/').next().unwrap_or("?");
    format!(
        "{runs} runs, cov {}, ft {}, corpus {corp}",
        field("cov:"),
        field("ft:")
    )
}

// ----- Seeds ------------------------------------------------------------------

/// Writes every target's seeds into `root/TARGET/NAME` (replacing what is
/// there). The formats are the targets' input layouts (fuzz/fuzz_targets/).
pub fn write_seeds(root: &Path) -> Result<()> {
    for (target, seeds) in all_seeds()? {
        let dir = root.join(target);
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        for (name, bytes) in &seeds {
            fs::write(dir.join(name), bytes)?;
        }
        say!("seeds: {} ({} files)", display_path(&dir), seeds.len());
    }
    Ok(())
}

type Seeds = Vec<(String, Vec<u8>)>;

/// Every target's seeds, by target name.
pub fn all_seeds() -> Result<Vec<(&'static str, Seeds)>> {
    Ok(vec![
        ("esr", esr_seeds()),
        ("sgi", sgi_seeds()),
        ("vgic", vgic_seeds()),
        ("dt", dt_seeds()?),
        ("cpio", cpio_seeds()?),
        ("bundle", bundle_seeds()?),
        ("guest_dt", guest_dt_seeds()),
        ("guest_unwind", guest_unwind_seeds()),
    ])
}

fn le(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// ESR values the trap path sees: [esr, hpfar, far, loaded value].
fn esr_seeds() -> Seeds {
    // EC << 26 | IL << 25 | ISS.
    let da = |iss: u64| 0x24 << 26 | 1 << 25 | iss;
    let isv = 1 << 24;
    [
        // STR W1, [X0] to the GIC: ISV, SAS=2, SRT=1, WnR, DFSC=translation L3.
        (
            "str-w1-word",
            da(isv | 2 << 22 | 1 << 16 | 1 << 6 | 0x07),
            0x8000 << 4,
            0x0800_0000,
            0,
        ),
        // LDRSB X2: SAS=0, SSE, SRT=2, SF.
        (
            "ldrsb-x2",
            da(isv | 1 << 21 | 2 << 16 | 1 << 15 | 0x07),
            0x9000 << 4,
            0x0900_0018,
            0x80,
        ),
        // LDR X3 (64-bit) from GICR_TYPER.
        (
            "ldr-x3-dword",
            da(isv | 3 << 22 | 3 << 16 | 1 << 15 | 0x07),
            0x80a0 << 4,
            0x080a_0008,
            u64::MAX,
        ),
        // LDRH W4 from the PL011.
        (
            "ldrh-w4",
            da(isv | 1 << 22 | 4 << 16 | 0x06),
            0x9000 << 4,
            0x0900_0000,
            0xffff_8001,
        ),
        // STR XZR: SRT=31.
        (
            "str-xzr",
            da(isv | 3 << 22 | 31 << 16 | 1 << 15 | 1 << 6 | 0x07),
            0,
            0x1000,
            0,
        ),
        // LDP (ISV=0), DC CIVAC on MMIO (CM), an S1PTW fault.
        ("ldp-no-isv", da(0x07), 0x8000 << 4, 0, 0),
        (
            "dc-civac",
            da(isv | 1 << 8 | 1 << 6 | 0x07),
            0x8000 << 4,
            0,
            0,
        ),
        ("s1ptw", da(isv | 1 << 7 | 0x07), 0, 0, 0),
        // EL2's own data abort (as in the dumps), HVC #0, SMC #0, MSR to a
        // trapped sysreg (ICC_SGI1R_EL1, Rt=1), WFI, BRK, an SError, EC 0x3f.
        ("el2-abort", 0x9600_0006, 0, 0xdead_0000, 0),
        ("hvc", 0x5a00_0000, 0, 0, 0),
        ("smc", 0x5e00_0000, 0, 0, 0),
        (
            "msr-icc-sgi1r",
            0x18 << 26 | 1 << 25 | 0x3_3c_b2 << 1 | 1 << 5,
            0,
            0,
            0,
        ),
        ("wfi", 0x0600_0000, 0, 0, 0),
        ("brk", 0xf200_0000, 0, 0, 0),
        ("serror", 0xbe00_0000, 0, 0, 0),
        ("all-ones", u64::MAX, u64::MAX, u64::MAX, u64::MAX),
    ]
    .into_iter()
    .map(|(n, esr, hpfar, far, v)| (n.to_string(), le(&[esr, hpfar, far, v])))
    .collect()
}

/// [value, group, sender, MPIDRs...]: ICC_SGI1R_EL1 writes a Linux guest
/// makes, on 4 vCPUs (Aff0 0-3) or 2 clusters.
fn sgi_seeds() -> Seeds {
    let four: Vec<u64> = (0..4).collect();
    let clusters: Vec<u64> = (0..4).map(|i| (i / 2) << 8 | (i % 2)).collect();
    let wide: Vec<u64> = (0..20).map(|i| i * 5).collect();
    let seed = |value: u64, group: u8, sender: u8, mpidrs: &[u64]| {
        let mut v = value.to_le_bytes().to_vec();
        v.extend([group, sender]);
        v.extend(le(mpidrs));
        v
    };
    vec![
        // SGI 1 (reschedule) to vCPU 1: TargetList bit 1.
        ("sgi1-to-cpu1".into(), seed(1 << 24 | 0b10, 1, 0, &four)),
        // IRM=1: SGI 2 to all but self.
        ("irm-broadcast".into(), seed(1 << 40 | 2 << 24, 1, 0, &four)),
        // Group 0 (ICC_SGI0R_EL1) and ICC_ASGI1R_EL1.
        ("sgi0r".into(), seed(3 << 24 | 0b1111, 0, 2, &four)),
        ("asgi1r".into(), seed(4 << 24 | 0b1, 2, 1, &four)),
        // Aff1 = 1: the second cluster.
        (
            "aff1-cluster".into(),
            seed(1 << 16 | 5 << 24 | 0b11, 1, 0, &clusters),
        ),
        // RS = 1: Aff0 16-31 (vCPUs with Aff0 = 20, 25, 30).
        ("rs1".into(), seed(1 << 44 | 6 << 24 | 0xffff, 1, 0, &wide)),
        // Aff3 = 1, Aff2 = 2: nobody.
        (
            "aff3-nobody".into(),
            seed(1 << 48 | 2 << 32 | 0xffff, 1, 0, &four),
        ),
    ]
}

/// One vGIC operation: [op, a, b, c, d, value] (see fuzz_targets/vgic.rs).
fn vop(op: u8, a: u8, b: u8, c: u8, d: u32, value: u64) -> Vec<u8> {
    let mut v = vec![op, a, b, c];
    v.extend(d.to_le_bytes());
    v.extend(value.to_le_bytes());
    v
}

mod vg {
    //! vGIC seed operations by name.
    pub const DIST_READ: u8 = 0;
    pub const DIST_WRITE: u8 = 1;
    pub const REDIST_READ: u8 = 2;
    pub const REDIST_WRITE: u8 = 3;
    pub const SGI: u8 = 4;
    pub const LEVEL: u8 = 5;
    pub const INJECT: u8 = 6;
    pub const SET_HW: u8 = 7;
    pub const ENTER: u8 = 8;
    pub const GUEST: u8 = 9;
    pub const EXIT: u8 = 10;
    pub const RESET: u8 = 11;
    pub const REENTER: u8 = 12;
    /// Access sizes (the `b` byte): 1 << (b & 3) bytes.
    pub const B1: u8 = 0;
    pub const B4: u8 = 2;
    pub const B8: u8 = 3;
    /// Guest LR actions (the `c` byte of GUEST).
    pub const ACK: u8 = 0;
    pub const DEACTIVATE: u8 = 1;
    pub const EOI_UNLISTED: u8 = 2;
}

/// What Linux's GICv3 driver does at boot on vCPU `cpu` (gic_dist_init,
/// gic_cpu_init with pseudo-NMIs), then a few interrupts taken and
/// completed: the timer PPI 27, an SGI at NMI priority, the UART SPI 33.
fn linux_boot_ops(nr_spis: u32, cpus: u8) -> Vec<u8> {
    use vg::*;
    let mut ops = Vec::new();
    let mut op = |o: u8, a: u8, b: u8, c: u8, d: u32, v: u64| ops.extend(vop(o, a, b, c, d, v));
    // Distributor, from vCPU 0.
    op(DIST_WRITE, 0, B4, 0, 0x0, 0); // GICD_CTLR = 0
    op(DIST_READ, 0, B4, 0, 0x0, 0); // RWP poll
    op(DIST_READ, 0, B4, 0, 0x4, 0); // TYPER
    op(DIST_READ, 0, B4, 0, 0xffe8, 0); // PIDR2
    for i in 1..=nr_spis / 32 {
        op(DIST_WRITE, 0, B4, 0, 0x80 + 4 * i, 0xffff_ffff); // IGROUPR: Group 1
        op(DIST_WRITE, 0, B4, 0, 0x180 + 4 * i, 0xffff_ffff); // ICENABLER
        op(DIST_WRITE, 0, B4, 0, 0x380 + 4 * i, 0xffff_ffff); // ICACTIVER
        op(DIST_WRITE, 0, B4, 0, 0x280 + 4 * i, 0xffff_ffff); // ICPENDR
    }
    for i in 8..8 + nr_spis / 4 {
        op(DIST_WRITE, 0, B4, 0, 0x400 + 4 * i, 0xa0a0_a0a0); // IPRIORITYR
    }
    for i in 2..2 + nr_spis / 16 {
        op(DIST_WRITE, 0, B4, 0, 0xc00 + 4 * i, 0); // ICFGR: level
    }
    for spi in 0..nr_spis.min(4) {
        op(DIST_WRITE, 0, B8, 0, 0x6100 + 8 * spi, 0); // IROUTER -> 0.0.0.0
    }
    op(DIST_WRITE, 0, B4, 0, 0x0, 0x12); // ARE | EnableGrp1
                                         // Each redistributor, from its own vCPU.
    for cpu in 0..cpus {
        op(REDIST_READ, cpu, B8, cpu, 0x8, 0); // GICR_TYPER
        op(REDIST_READ, cpu, B4, cpu, 0x14, 0); // WAKER
        op(REDIST_WRITE, cpu, B4, cpu, 0x14, 0); // ProcessorSleep = 0
        op(REDIST_READ, cpu, B4, cpu, 0x14, 0); // ChildrenAsleep poll
        op(REDIST_WRITE, cpu, B4, cpu, 0x1_0080, 0xffff_ffff); // IGROUPR0
        op(REDIST_WRITE, cpu, B4, cpu, 0x1_0380, 0xffff_ffff); // ICACTIVER0
        op(REDIST_WRITE, cpu, B4, cpu, 0x1_0180, 0xffff_0000); // ICENABLER0 (PPIs)
        op(REDIST_WRITE, cpu, B4, cpu, 0x1_0100, 0x0000_ffff); // ISENABLER0 (SGIs)
        for i in 0..8 {
            op(REDIST_WRITE, cpu, B4, cpu, 0x1_0400 + 4 * i, 0xa0a0_a0a0); // IPRIORITYR
        }
        // Pseudo-NMI: SGI 2 (backtrace) and 3 at priority 0x80, byte writes.
        op(REDIST_WRITE, cpu, B1, cpu, 0x1_0402, 0x80);
        op(REDIST_WRITE, cpu, B1, cpu, 0x1_0403, 0x80);
        op(REDIST_READ, cpu, B4, cpu, 0x1_0c04, 0); // ICFGR1
        op(REDIST_WRITE, cpu, B4, cpu, 0x1_0100, 1 << 27); // enable the vtimer PPI
    }
    // The virtual timer fires on vCPU 0 (HW-linked to PPI 27).
    op(SET_HW, 0, 1, 0, 27, 27);
    op(LEVEL, 0, 1, 0, 27, 0);
    op(ENTER, 0, 0, 0, 0, 0);
    op(GUEST, 0, 0, ACK, 0, 0);
    op(LEVEL, 0, 0, 0, 27, 0);
    op(GUEST, 0, 0, DEACTIVATE, 0, 0);
    op(EXIT, 0, 0, 0, 0, 0);
    // vCPU 0 sends SGI 2 at NMI priority to vCPU 1, and a reschedule IPI
    // (SGI 0) to all others; vCPU 1 takes both.
    op(SGI, 0, 1, 0, 0, 2 << 24 | 0b10);
    op(SGI, 0, 1, 0, 0, 1 << 40);
    op(ENTER, 1, 0, 0, 0, 0);
    op(GUEST, 1, 0, ACK, 0, 0);
    op(GUEST, 1, 1, ACK, 0, 0);
    op(GUEST, 1, 0, DEACTIVATE, 0, 0);
    op(REENTER, 1, 0, 0, 0, 0);
    op(GUEST, 1, 0, DEACTIVATE, 0, 0);
    op(EXIT, 1, 0, 0, 0, 0);
    // The UART SPI 33: enabled, raised, taken, lowered, completed.
    op(DIST_WRITE, 0, B4, 0, 0x104, 1 << 1);
    op(LEVEL, 0, 1, 0, 33, 0);
    op(ENTER, 0, 0, 0, 0, 0);
    op(GUEST, 0, 0, ACK, 0, 0);
    op(LEVEL, 0, 0, 0, 33, 0);
    op(GUEST, 0, 0, DEACTIVATE, 0, 0);
    op(EXIT, 0, 0, 0, 0, 0);
    // The hypervisor's virtual NMI into vCPU 0, and a CPU_ON reset of vCPU 1.
    op(INJECT, 0, 0x80, 0, 7, 0);
    op(REENTER, 0, 0, 0, 0, 0);
    op(RESET, 1, 0, 0, 0, 0);
    op(ENTER, 1, 0, 0, 0, 0);
    ops
}

/// [vcpus | layout << 4, spis / 4, priority bits, LRs - 1] + operations.
fn vgic_seeds() -> Seeds {
    use vg::*;
    let mut seeds = Vec::new();
    let mut boot = vec![3, 32 / 4, 5, 3];
    boot.extend(linux_boot_ops(32, 4));
    seeds.push(("linux-boot-4cpu".into(), boot));

    // One LR and many pending SPIs and SGIs: eviction, NPIE, LRENPIE and
    // EOIcount.
    let mut crowd = vec![1, 64 / 4, 5, 0];
    crowd.extend(vop(DIST_WRITE, 0, B4, 0, 0x0, 0x13));
    crowd.extend(vop(DIST_WRITE, 0, B4, 0, 0x84, 0xffff_ffff));
    crowd.extend(vop(DIST_WRITE, 0, B4, 0, 0x104, 0xffff_ffff));
    crowd.extend(vop(DIST_WRITE, 0, B4, 0, 0x204, 0x0000_00ff));
    crowd.extend(vop(DIST_WRITE, 0, B4, 0, 0x420, 0x8090_a0b0));
    crowd.extend(vop(REDIST_WRITE, 0, B4, 0, 0x1_0100, 0xffff));
    crowd.extend(vop(SGI, 1, 1, 0, 0, 1 << 40 | 5 << 24));
    for _ in 0..3 {
        crowd.extend(vop(ENTER, 0, 0, 0, 0, 0));
        crowd.extend(vop(GUEST, 0, 0, ACK, 0, 0));
        crowd.extend(vop(REENTER, 0, 0, 0, 0, 0));
        crowd.extend(vop(GUEST, 0, 0, ACK, 0, 0));
        crowd.extend(vop(GUEST, 0, 0, EOI_UNLISTED, 0, 0));
        crowd.extend(vop(EXIT, 0, 0, 0, 0, 0));
    }
    seeds.push(("one-lr-crowd".into(), crowd));

    // The registers of both frames read, at several sizes, 2 vCPUs in two
    // clusters, 8 priority bits.
    let mut scan = vec![1 | 1 << 4, 32 / 4, 8, 15];
    let dist = (0..0x100u32)
        .step_by(4)
        .chain([0x400, 0x420, 0x800, 0xc00, 0xc08, 0xd00, 0xe00]);
    for off in dist.chain([0x6100, 0x6108, 0x7fd8, 0xffd0, 0xffe8]) {
        scan.extend(vop(DIST_READ, 0, B4, 0, off, 0));
    }
    for (off, b) in [
        (0x420u32, B1),
        (0x6100, B8),
        (0x6104, B4),
        (0x0, B8),
        (0x2, 1),
    ] {
        scan.extend(vop(DIST_READ, 0, b, 0, off, 0));
    }
    for off in [
        0u32, 4, 8, 0xc, 0x14, 0xffe8, 0x1_0080, 0x1_0100, 0x1_0400, 0x1_0c00, 0x1_0d00,
    ] {
        for b in 0..4 {
            scan.extend(vop(REDIST_READ, 0, b, 1, off, 0));
        }
    }
    seeds.push(("register-scan".into(), scan));
    seeds
}

/// A device tree like QEMU's `virt` machine gives the hypervisor.
struct VirtDt {
    cpus: u64,
    two_cell_cpus: bool,
    memory: Vec<(u64, u64)>,
    psci: &'static str,
    bootargs: Option<&'static str>,
    initrd: Option<(u64, u64)>,
}

impl VirtDt {
    fn build(&self) -> Result<Vec<u8>> {
        use vm_fdt::FdtWriter;
        let mut f = FdtWriter::new()?;
        let root = f.begin_node("")?;
        f.property_u32("#address-cells", 2)?;
        f.property_u32("#size-cells", 2)?;
        f.property_string("compatible", "linux,dummy-virt")?;
        f.property_u32("interrupt-parent", 0x8002)?;
        for &(base, size) in &self.memory {
            let m = f.begin_node(&format!("memory@{base:x}"))?;
            f.property_string("device_type", "memory")?;
            f.property_array_u64("reg", &[base, size])?;
            f.end_node(m)?;
        }
        let cpus = f.begin_node("cpus")?;
        f.property_u32("#address-cells", if self.two_cell_cpus { 2 } else { 1 })?;
        f.property_u32("#size-cells", 0)?;
        for i in 0..self.cpus {
            let mpidr = ((i / 16) << 8) | (i % 16);
            let c = f.begin_node(&format!("cpu@{i}"))?;
            f.property_string("device_type", "cpu")?;
            f.property_string("compatible", "arm,cortex-a57")?;
            if self.two_cell_cpus {
                f.property_u64("reg", mpidr)?;
            } else {
                f.property_u32("reg", mpidr as u32)?;
            }
            f.property_string("enable-method", "psci")?;
            f.end_node(c)?;
        }
        f.end_node(cpus)?;
        let psci = f.begin_node("psci")?;
        f.property_string_list(
            "compatible",
            vec![
                "arm,psci-1.0".into(),
                "arm,psci-0.2".into(),
                "arm,psci".into(),
            ],
        )?;
        f.property_string("method", self.psci)?;
        f.end_node(psci)?;
        let gic = f.begin_node("intc@8000000")?;
        f.property_string("compatible", "arm,gic-v3")?;
        f.property_null("interrupt-controller")?;
        f.property_u32("#interrupt-cells", 3)?;
        f.property_array_u64("reg", &[0x0800_0000, 0x1_0000, 0x080a_0000, 0xf6_0000])?;
        f.property_array_u32("interrupts", &[1, 9, 4])?;
        f.property_u32("phandle", 0x8002)?;
        f.end_node(gic)?;
        let uart = f.begin_node("pl011@9000000")?;
        f.property_string_list(
            "compatible",
            vec!["arm,pl011".into(), "arm,primecell".into()],
        )?;
        f.property_array_u64("reg", &[0x0900_0000, 0x1000])?;
        f.property_array_u32("interrupts", &[0, 1, 4])?;
        f.end_node(uart)?;
        let chosen = f.begin_node("chosen")?;
        if let Some(args) = self.bootargs {
            f.property_string("bootargs", args)?;
        }
        f.property_string("stdout-path", "/pl011@9000000")?;
        if let Some((start, end)) = self.initrd {
            f.property_u64("linux,initrd-start", start)?;
            f.property_u64("linux,initrd-end", end)?;
        }
        f.end_node(chosen)?;
        f.end_node(root)?;
        Ok(f.finish()?)
    }
}

fn dt_seeds() -> Result<Seeds> {
    let base = VirtDt {
        cpus: 4,
        two_cell_cpus: false,
        memory: vec![(0x4000_0000, 0x4000_0000)],
        psci: "smc",
        bootargs: Some("nmivisor.watchdog=5 nmivisor.idle"),
        initrd: Some((0x4800_0000, 0x4810_0000)),
    };
    let many = VirtDt {
        cpus: 20,
        two_cell_cpus: true,
        memory: vec![(0x4000_0000, 0x2000_0000), (0x1_0000_0000, 0x1000_0000)],
        psci: "hvc",
        bootargs: None,
        initrd: None,
    };
    let odd = VirtDt {
        psci: "firmware",
        memory: vec![(0x4000_0000, 0)],
        ..base_like()
    };
    Ok(vec![
        ("qemu-virt-4cpu".into(), base.build()?),
        ("20cpu-2mem-hvc".into(), many.build()?),
        ("bad-psci-empty-mem".into(), odd.build()?),
    ])
}

fn base_like() -> VirtDt {
    VirtDt {
        cpus: 1,
        two_cell_cpus: false,
        memory: vec![],
        psci: "smc",
        bootargs: Some("nmivisor.panic=poweroff"),
        initrd: None,
    }
}

/// A minimal arm64 Image: the 64-byte header with its magic, and a little
/// code.
fn tiny_image() -> Vec<u8> {
    let mut img = vec![0u8; 96];
    img[56..60].copy_from_slice(crate::image::IMAGE_MAGIC);
    img[16..24].copy_from_slice(&0x20_0000u64.to_le_bytes()); // image_size
    img
}

/// Bundles written by xtask's own bundle writer.
fn real_bundles() -> Result<Vec<(String, Vec<u8>)>> {
    use crate::bundle::{build_bundle, VmConfig};
    let dir = util::out_dir().join("fuzz-seeds");
    fs::create_dir_all(&dir)?;
    let image = dir.join("Image");
    fs::write(&image, tiny_image())?;
    let initrd = dir.join("initrd");
    fs::write(&initrd, b"070701 not really an initramfs")?;
    let vm =
        |name: &str, cpus: &str, memory: &str, cmdline: &str, initrd: Option<&Path>| VmConfig {
            symbols: None,
            lockup: None,
            name: name.into(),
            image: image.clone(),
            initrd: initrd.map(Path::to_path_buf),
            cmdline: cmdline.into(),
            cpus: cpus.into(),
            memory: memory.into(),
            dump: false,
        };
    let sets = [
        ("one-vm", vec![vm("guest-test", "0-3", "128M", "", None)]),
        (
            "two-vms",
            vec![
                vm(
                    "linux",
                    "0-1",
                    "512M",
                    "console=ttyAMA0 irqchip.gicv3_pseudo_nmi=1",
                    Some(&initrd),
                ),
                vm("guest_2", "2,3", "64M", "", None),
            ],
        ),
    ];
    let mut out = Vec::new();
    for (name, vms) in sets {
        let path = dir.join(format!("{name}.cpio"));
        build_bundle(&vms, &path)?;
        out.push((name.to_string(), fs::read(&path)?));
    }
    Ok(out)
}

/// A newc archive of `(name, mode, data)` entries, as the cpio crate writes.
fn newc(entries: &[(&str, u32, &[u8])]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for (i, (name, mode, data)) in entries.iter().enumerate() {
        let mut w = cpio::NewcBuilder::new(name)
            .ino(u32::try_from(i + 1)?)
            .mode(*mode)
            .nlink(1)
            .write(out, u32::try_from(data.len())?);
        std::io::Write::write_all(&mut w, data)?;
        out = w.finish()?;
    }
    Ok(cpio::newc::trailer(out)?)
}

fn cpio_seeds() -> Result<Seeds> {
    const DIR: u32 = 0o040755;
    const FILE: u32 = 0o100644;
    let mut seeds = real_bundles()?;
    seeds.push((
        "dirs-and-files".into(),
        newc(&[
            (".", DIR, b""),
            ("a", DIR, b""),
            ("a/b", FILE, b"hello"),
            ("c", FILE, b""),
        ])?,
    ));
    Ok(seeds)
}

fn bundle_seeds() -> Result<Seeds> {
    const DIR: u32 = 0o040755;
    const FILE: u32 = 0o100644;
    // [nr_cpus, memory / 8 MiB] then the archive.
    let with = |cpus: u8, mem: u8, archive: &[u8]| {
        let mut v = vec![cpus, mem];
        v.extend_from_slice(archive);
        v
    };
    let mut seeds: Seeds = real_bundles()?
        .into_iter()
        .map(|(n, a)| (n, with(4, 128, &a)))
        .collect();
    let image = tiny_image();
    let broken = newc(&[
        ("vm1", DIR, b""),
        ("vm1/image", FILE, &image),
        ("vm1/config", FILE, b"cpus = 0-1\nmemory = 3M\n"),
        ("vm2/image", FILE, &image),
        ("vm2/config", FILE, b"cpus = 1,2\nmemory = 64M\n# comment\n"),
        ("vm2/cmdline", FILE, b"quiet\n"),
        ("BAD/image", FILE, b""),
        ("vm3/config", FILE, b"cpus = 9\nmemory = 1G\nextra = 1\n"),
        ("vm3/nested/x", FILE, b""),
    ])?;
    seeds.push(("mixed-errors".into(), with(4, 16, &broken)));
    Ok(seeds)
}

/// [memory start, size, initrd start, end, flags, vCPUs - 1, MPIDRs...,
/// bootargs] (see fuzz_targets/guest_dt.rs).
fn guest_dt_seeds() -> Seeds {
    let seed =
        |mem: (u64, u64), initrd: Option<(u64, u64)>, mpidrs: Option<&[u64]>, n: u8, args: &str| {
            let (is, ie) = initrd.unwrap_or((0, 0));
            let mut v = le(&[mem.0, mem.1, is, ie]);
            v.push(u8::from(initrd.is_some()) | u8::from(mpidrs.is_some()) << 1);
            v.push(n - 1);
            if let Some(m) = mpidrs {
                v.extend(le(m));
            }
            v.extend(args.as_bytes());
            v
        };
    vec![
        (
            "linux-vm".into(),
            seed(
                (0x4000_0000, 512 << 20),
                Some((0x4800_0000, 0x4900_0000)),
                None,
                4,
                "console=ttyAMA0 irqchip.gicv3_pseudo_nmi=1",
            ),
        ),
        (
            "one-vcpu".into(),
            seed((0x4000_0000, 128 << 20), None, None, 1, ""),
        ),
        (
            "aff3-mpidrs".into(),
            seed(
                (0x4000_0000, 64 << 20),
                None,
                Some(&[0, 0x1_0000_0001, 0x100, 0x8000_0000]),
                4,
                "x",
            ),
        ),
        (
            "18-vcpus".into(),
            seed((0x4000_0000, 1 << 30), None, None, 18, "quiet"),
        ),
    ]
}

/// [SCTLR, TCR, TTBR0, TTBR1, x29, VBAR, VA] (u64 each), a u16 length,
/// that much System.map, then guest RAM from IPA 0x40000000 (see
/// fuzz_targets/guest_unwind.rs).
fn guest_unwind_seeds() -> Seeds {
    let seed = |regs: [u64; 7], map: &str, ram: &[(u64, u64)], ram_len: usize| {
        let mut out = le(&regs);
        out.extend_from_slice(&(map.len() as u16).to_le_bytes());
        out.extend_from_slice(map.as_bytes());
        let mut mem = vec![0u8; ram_len];
        for &(off, v) in ram {
            mem[off as usize..off as usize + 8].copy_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&mem);
        out
    };
    let map = "0000000040000000 T _text\n0000000040000800 T vectors\n0000000040001000 T f\n\
               0000000040001040 t g\n0000000040002000 T _etext\n";
    let kmap = "ffff800080000000 T _text\nffff800080010800 T vectors\nffff800080012800 T __bp_harden_el1_vectors\n\
                ffff800080246e60 t lkdtm_HARDLOCKUP\nffff8000802a0000 D _etext\n";
    // TCR: 4K granules, 48-bit VAs on both halves.
    let tcr_4k = 16 | 16 << 16 | 2 << 30;
    vec![
        (
            "mmu-off-chain".into(),
            seed(
                [0, 0, 0, 0, 0x4000_0100, 0x4000_0800, 0x4000_1004],
                map,
                &[
                    (0x100, 0x4000_0140),
                    (0x108, 0x4000_1044),
                    (0x140, 0),
                    (0x148, 0x4000_1008),
                ],
                0x400,
            ),
        ),
        (
            // TTBR1 at RAM: L0[256] -> L1 at +0x1000, L1[1] = a 1 GiB
            // block: VA 0xffff800040000000 is IPA 0x40000000.
            "4k-kernel-block".into(),
            seed(
                [
                    1,
                    tcr_4k,
                    0,
                    0x4000_0000,
                    0xffff_8000_4000_1800,
                    0xffff_8000_8001_0800,
                    0xffff_8000_4000_1800,
                ],
                kmap,
                &[
                    (0x800, 0x4000_1000 | 3),
                    (0x1008, 0x4000_0000 | 1),
                    (0x1800, 0),
                    (0x1808, 0xffff_8000_8024_6e84),
                ],
                0x2000,
            ),
        ),
        (
            "loop".into(),
            seed(
                [0, 0, 0, 0, 0x4000_0010, 0, 0x4000_0010],
                "",
                &[(0x10, 0x4000_0010), (0x18, 0x4000_1000)],
                0x40,
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarizes_libfuzzer_output() {
        let log = "INFO: Seed: 1\n#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb\n\
                   #4096\tpulse  cov: 50 ft: 60 corp: 5/20b lim: 43 exec/s: 2048 rss: 31Mb\n\
                   #70000\tDONE   cov: 55 ft: 66 corp: 7/30b lim: 100 exec/s: 7000 rss: 32Mb\n\
                   Done 70000 runs in 11 second(s)\n";
        assert_eq!(summarize(log, true), "70000 runs, cov 55, ft 66, corpus 7");
        let crash = "#5 NEW cov: 1\nthread '<unnamed>' panicked at fuzz_targets/x.rs:3:5:\nboom\n";
        assert_eq!(
            summarize(crash, false),
            "thread '<unnamed>' panicked at fuzz_targets/x.rs:3:5"
        );
        assert_eq!(summarize("", false), "failed before fuzzing");
    }

    #[test]
    fn test_entries_follow_the_filter() {
        assert_eq!(test_entries(None).len(), TARGETS.len());
        assert_eq!(
            test_entries(Some("fuzz-vgic")),
            vec!["fuzz-vgic".to_string()]
        );
        assert_eq!(test_entries(Some("fuzz")).len(), TARGETS.len());
        assert!(test_entries(Some("smp")).is_empty());
    }

    /// Every target has seeds, and the files in fuzz/corpus/ are what the
    /// generator writes now (run `cargo xtask fuzz --write-seeds` after
    /// changing it or an input layout).
    #[test]
    fn committed_seeds_are_current() {
        let seeds = all_seeds().unwrap();
        assert_eq!(seeds.len(), TARGETS.len());
        for ((target, files), (name, _)) in seeds.iter().zip(TARGETS) {
            assert_eq!(target, name);
            assert!(!files.is_empty());
            let dir = seed_root().join(target);
            let mut on_disk: Vec<String> = list_files(&dir)
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            on_disk.sort();
            let mut want: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
            want.sort();
            assert_eq!(on_disk, want, "{}", dir.display());
            for (n, bytes) in files {
                let have = fs::read(dir.join(n)).unwrap();
                assert!(&have == bytes, "{target}/{n} is stale");
            }
        }
    }
}
