//! `cargo xtask bench`: nmivisor's costs as ratios to native, measured side
//! by side in one run.
//!
//! It builds the normal hypervisor image and guest-test, then boots
//! guest-test in bench mode (boot argument `guest-test.bench`) twice on
//! the same QEMU machine size, both with `-icount shift=0,sleep=off`:
//!
//! - **native**: guest-test alone at EL1 (`-machine virt,gic-version=3`,
//!   256 MiB, `-kernel guest-test.bin -append "guest-test.bench ..."`);
//! - **nmivisor**: the hypervisor with a bundle holding one VM
//!   `guest-test` on every CPU, 256 MiB, command line
//!   `guest-test.bench ...` (QEMU `-m 1G`).
//!
//! guest-test prints `bench NAME ITERATIONS TICKS` per benchmark (see
//! `guest-test/src/bench.rs`); this module parses those lines and prints
//! ticks per operation for both runs, their ratio and instructions per
//! operation (one virtual counter tick = 16 instructions under
//! `-icount shift=0`). See `docs/benchmarks.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use clap::Args;

use crate::build::{self, Flavor};
use crate::bundle::{self, VmConfig};
use crate::harness::{self, contains, Scenario};
use crate::provision::{self, ToolchainChoice};
use crate::say;
use crate::util::{self, display_path};

/// The benchmarks guest-test runs, in its order.
pub const BENCHMARKS: &[&str] = &[
    "mmio-gicd-read",
    "sgi-self",
    "timer-irq",
    "hvc-psci-version",
    "sgi-pingpong",
];

/// Benchmarks that need this many CPUs (guest-test skips them with fewer).
const NEEDS_CPUS: &[(&str, u32)] = &[("sgi-pingpong", 2)];

/// QEMU's deterministic mode: CNTVCT follows the instruction count.
pub const ICOUNT: &str = "shift=0,sleep=off";

/// Instructions per virtual counter tick with `-icount shift=0` (1 ns per
/// instruction, 62.5 MHz counter).
pub const INSTRUCTIONS_PER_TICK: f64 = 16.0;

/// The guest's memory in both runs (`-m` natively, `memory` in the VM).
const GUEST_MEM: &str = "256M";
/// The machine's memory under nmivisor.
const HOST_MEM: &str = "1G";
/// The VM's name.
const VM_NAME: &str = build::GUEST;

/// `cargo xtask bench` options.
#[derive(Args, Clone, Debug)]
pub struct BenchOptions {
    /// Number of CPUs (QEMU -smp) of both runs; sgi-pingpong needs 2.
    #[arg(long, default_value_t = 2, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=16))]
    pub smp: u32,

    /// Timed operations per benchmark (after 16 untimed warm-up ones).
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=40000))]
    pub iterations: u32,

    /// Boot each configuration this many times and fail unless every run
    /// gives the same counts (a determinism check).
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10))]
    pub runs: u32,

    /// Print the results as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Give up on a QEMU run (as a hang) after this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,

    /// The cross toolchain (the global --toolchain; set by the caller).
    #[arg(skip = ToolchainChoice::Auto)]
    pub toolchain: ToolchainChoice,

    /// The QEMU (the global --qemu; set by the caller).
    #[arg(skip)]
    pub qemu: Option<std::path::PathBuf>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            smp: 2,
            iterations: 1000,
            runs: 1,
            json: false,
            timeout: 300,
            toolchain: ToolchainChoice::Auto,
            qemu: None,
        }
    }
}

/// What one run measured: benchmark name to (iterations, ticks).
pub type Counts = BTreeMap<String, (u64, u64)>;

/// One configuration's results.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunResult {
    pub counts: Counts,
    /// Benchmarks guest-test skipped, with its reason.
    pub skipped: BTreeMap<String, String>,
    /// Per benchmark, the ticks of each batch of its timed run
    /// (`bench-batches` lines).
    pub batches: BTreeMap<String, Vec<u64>>,
    /// The guest's RAM as it printed it (`0x40000000-0x50000000`).
    pub guest_ram: Option<String>,
    /// How long QEMU ran (host time).
    pub elapsed: Duration,
}

/// Builds, boots both configurations, prints the table (or JSON).
pub fn run(opts: &BenchOptions) -> Result<()> {
    let tc = provision::cross_toolchain(opts.toolchain)?;
    let qemu = provision::qemu(opts.qemu.as_deref())?;
    let built = build::build(&tc, Flavor::Normal)?;
    let guest = built.guest()?.bin.clone();
    let hypervisor = built.hypervisor.bin.clone();

    let cmdline = guest_cmdline(opts.iterations);
    let vm = VmConfig {
        name: VM_NAME.into(),
        image: guest.clone(),
        initrd: None,
        cmdline: cmdline.clone(),
        cpus: bundle::all_cpus(opts.smp),
        memory: GUEST_MEM.into(),
    };
    let bundle_file = bundle::bundle_path("bench");
    bundle::build_bundle(std::slice::from_ref(&vm), &bundle_file)?;

    let native = scenario("bench-native", opts)
        .native_guest()
        .mem(GUEST_MEM)
        .append(&cmdline);
    let hosted = scenario("bench-nmivisor", opts).mem(HOST_MEM);
    let configs = [
        ("native", native.clone(), native.qemu_config(&guest, None)),
        (
            "nmivisor",
            hosted.clone(),
            hosted.qemu_config(&hypervisor, Some(&bundle_file)),
        ),
    ];

    let mut results: Vec<RunResult> = Vec::new();
    for (label, s, cfg) in &configs {
        let mut first: Option<RunResult> = None;
        for i in 1..=opts.runs {
            let mut cmd = cfg.command(&qemu);
            cmd.current_dir(util::workspace_root());
            say!(
                "bench: {label} run {i}/{}: {}",
                opts.runs,
                util::command_line(&cmd)
            );
            let r = boot(s, cmd, opts).with_context(|| format!("the {label} run failed"))?;
            say!(
                "bench: {label} run {i}: {} benchmarks in {:.1}s",
                r.counts.len(),
                r.elapsed.as_secs_f32()
            );
            match &first {
                None => first = Some(r),
                Some(f) => {
                    if let Some(diff) = differences(&f.counts, &r.counts) {
                        bail!("{label} run {i} differs from run 1: {diff}");
                    }
                }
            }
        }
        if opts.runs > 1 {
            say!("bench: {label}: {} runs gave identical counts", opts.runs);
        }
        results.push(first.expect("at least one run"));
    }
    let (native, hosted) = (&results[0], &results[1]);
    let rows = rows(native, hosted)?;
    let info = ImageInfo::read(&hypervisor)?;
    if opts.json {
        println!("{}", json(opts, &rows, native, hosted, &info));
    } else {
        print!("{}", table(opts, &rows, native, hosted, &info));
    }
    Ok(())
}

/// The guest's command line in both runs.
pub fn guest_cmdline(iterations: u32) -> String {
    format!("guest-test.bench guest-test.bench-iterations={iterations}")
}

/// A run of `opts.smp` CPUs under `-icount` that ends at guest-test's
/// last line, `bench end: ...` (QEMU is then stopped: under `-icount` the
/// hypervisor's power-off takes half a minute of host time, see
/// `docs/benchmarks.md`), or fails as a hang after `opts.timeout`.
fn scenario(name: &str, opts: &BenchOptions) -> Scenario {
    Scenario::new(name)
        .smp(opts.smp)
        .qemu_arg("-icount")
        .qemu_arg(ICOUNT)
        .timeout_secs(opts.timeout)
        .until(contains("bench end: "))
        .forbid(contains("guest-test: panic"))
}

/// Boots one configuration and parses its `bench` lines.
fn boot(s: &Scenario, cmd: std::process::Command, opts: &BenchOptions) -> Result<RunResult> {
    let outcome = harness::run(s, cmd);
    if !outcome.passed() {
        let tail: Vec<&String> = outcome.log.iter().rev().take(30).collect();
        let mut msg = outcome.failures.join("; ");
        msg.push_str("\nlast console lines:");
        for l in tail.into_iter().rev() {
            let _ = write!(msg, "\n    | {l}");
        }
        bail!("{msg}");
    }
    let mut r = parse(&outcome.console)?;
    r.elapsed = outcome.elapsed;
    check_complete(&r, opts.smp, u64::from(opts.iterations))?;
    Ok(r)
}

/// Parses guest-test's bench output: `bench NAME N TICKS`,
/// `bench NAME skipped: why`, `bench NAME FAILED: why` (an error), and the
/// RAM of its first line.
pub fn parse(lines: &[String]) -> Result<RunResult> {
    let mut r = RunResult::default();
    let mut failed = Vec::new();
    for line in lines {
        let line = line.trim();
        if r.guest_ram.is_none() {
            if let Some(rest) = line.strip_prefix("guest-test: ") {
                if let Some(ram) = rest.split(", ").find_map(|p| p.strip_prefix("RAM ")) {
                    r.guest_ram = Some(ram.to_string());
                }
            }
        }
        if let Some(rest) = line.strip_prefix("bench-batches ") {
            let mut words = rest.split_whitespace();
            let name = words.next().unwrap_or_default();
            let nums: Option<Vec<u64>> = words.map(|w| w.parse().ok()).collect();
            let nums = nums.with_context(|| format!("malformed line {line:?}"))?;
            ensure!(
                nums.first().is_some_and(|&b| b as usize == nums.len() - 1),
                "malformed line {line:?}"
            );
            r.batches.insert(name.into(), nums[1..].to_vec());
            continue;
        }
        let Some(rest) = line.strip_prefix("bench ") else {
            continue;
        };
        if rest.starts_with("end:") {
            continue;
        }
        let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        if let Some(why) = tail.strip_prefix("FAILED: ") {
            failed.push(format!("{name}: {why}"));
        } else if let Some(why) = tail.strip_prefix("skipped: ") {
            r.skipped.insert(name.into(), why.into());
        } else {
            let nums: Vec<&str> = tail.split_whitespace().collect();
            let parsed = match nums[..] {
                [n, t] => n.parse::<u64>().ok().zip(t.parse::<u64>().ok()),
                _ => None,
            };
            let (n, t) = parsed.with_context(|| format!("malformed bench line {line:?}"))?;
            ensure!(
                r.counts.insert(name.into(), (n, t)).is_none(),
                "benchmark {name} reported twice"
            );
        }
    }
    ensure!(failed.is_empty(), "guest-test: {}", failed.join("; "));
    Ok(r)
}

/// Every benchmark is there with `iterations`, or skipped for want of
/// CPUs.
fn check_complete(r: &RunResult, smp: u32, iterations: u64) -> Result<()> {
    for &name in BENCHMARKS {
        let needs = NEEDS_CPUS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(1, |&(_, c)| c);
        match r.counts.get(name) {
            Some(&(n, _)) => ensure!(
                n == iterations,
                "{name}: {n} iterations, asked for {iterations}"
            ),
            None if smp < needs && r.skipped.contains_key(name) => {}
            None => bail!("no `bench {name}` line in the output"),
        }
    }
    Ok(())
}

/// Operations in batch `b` of `n` split into `batches` (as guest-test
/// splits them).
fn batch_len(n: u64, batches: usize, b: usize) -> u64 {
    let (q, r) = (n / batches as u64, n % batches as u64);
    q + u64::from((b as u64) < r)
}

/// A batch much slower than the others: some operation in it hit a rare,
/// slow path.
#[derive(Clone, Debug, PartialEq)]
pub struct Stall {
    pub benchmark: String,
    pub config: &'static str,
    /// Batch index and count.
    pub batch: usize,
    pub batches: usize,
    /// Ticks beyond what the batch would take at the median batch's rate.
    pub extra_ticks: u64,
}

/// Median ticks per operation over the batches of `name` in `r`.
pub fn median_per_op(r: &RunResult, name: &str) -> Option<f64> {
    let (n, _) = *r.counts.get(name)?;
    let b = r.batches.get(name).filter(|b| !b.is_empty())?;
    let mut rates: Vec<f64> = b
        .iter()
        .enumerate()
        .map(|(i, &t)| t as f64 / batch_len(n, b.len(), i).max(1) as f64)
        .collect();
    rates.sort_by(f64::total_cmp);
    Some(rates[rates.len() / 2])
}

/// The batches of `r` that took over 1.5 times the median rate (and over
/// 64 ticks more).
pub fn stalls(r: &RunResult, config: &'static str) -> Vec<Stall> {
    let mut out = Vec::new();
    for (name, b) in &r.batches {
        let (Some(&(n, _)), Some(median)) = (r.counts.get(name), median_per_op(r, name)) else {
            continue;
        };
        for (i, &t) in b.iter().enumerate() {
            let expected = median * batch_len(n, b.len(), i) as f64;
            if t as f64 > expected * 1.5 && t as f64 > expected + 64.0 {
                out.push(Stall {
                    benchmark: name.clone(),
                    config,
                    batch: i,
                    batches: b.len(),
                    extra_ticks: (t as f64 - expected) as u64,
                });
            }
        }
    }
    out
}

/// How two runs' counts differ, if they do.
pub fn differences(a: &Counts, b: &Counts) -> Option<String> {
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    let diffs: Vec<String> = names
        .into_iter()
        .filter(|n| a.get(*n) != b.get(*n))
        .map(|n| format!("{n} {:?} vs {:?}", a.get(n), b.get(n)))
        .collect();
    (!diffs.is_empty()).then(|| diffs.join(", "))
}

/// One benchmark in both configurations.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub iterations: u64,
    pub native_ticks: u64,
    pub nmivisor_ticks: u64,
}

impl Row {
    pub fn native_per_op(&self) -> f64 {
        self.native_ticks as f64 / self.iterations as f64
    }

    pub fn nmivisor_per_op(&self) -> f64 {
        self.nmivisor_ticks as f64 / self.iterations as f64
    }

    /// nmivisor / native; `None` if native took no tick at all.
    pub fn ratio(&self) -> Option<f64> {
        (self.native_ticks > 0).then(|| self.nmivisor_ticks as f64 / self.native_ticks as f64)
    }
}

/// The rows of the benchmarks both runs measured, in [`BENCHMARKS`] order.
pub fn rows(native: &RunResult, hosted: &RunResult) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &name in BENCHMARKS {
        match (native.counts.get(name), hosted.counts.get(name)) {
            (Some(&(n, nt)), Some(&(m, ht))) => {
                ensure!(
                    n == m,
                    "{name}: {n} iterations natively, {m} under nmivisor"
                );
                rows.push(Row {
                    name: name.into(),
                    iterations: n,
                    native_ticks: nt,
                    nmivisor_ticks: ht,
                });
            }
            (None, None) => {}
            _ => bail!("{name} ran in one configuration only"),
        }
    }
    Ok(rows)
}

/// The hypervisor image's size on disk and in memory (the arm64 Image
/// header's image_size: text, data, BSS and stacks).
#[derive(Clone, Debug)]
pub struct ImageInfo {
    pub path: String,
    pub file_bytes: u64,
    pub image_size: u64,
}

impl ImageInfo {
    fn read(path: &Path) -> Result<ImageInfo> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        ensure!(bytes.len() >= 24, "{} is too short", path.display());
        let image_size = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
        Ok(ImageInfo {
            path: display_path(path),
            file_bytes: bytes.len() as u64,
            image_size,
        })
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{r:.1}x"))
}

/// The human-readable report.
pub fn table(
    opts: &BenchOptions,
    rows: &[Row],
    native: &RunResult,
    hosted: &RunResult,
    info: &ImageInfo,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "nmivisor bench: -smp {}, {} iterations, -icount {ICOUNT} (1 tick = {} instructions)",
        opts.smp, opts.iterations, INSTRUCTIONS_PER_TICK
    );
    let _ = writeln!(
        s,
        "{:<18} {:>12} {:>12} {:>9} {:>12} {:>12}",
        "benchmark", "native", "nmivisor", "ratio", "native", "nmivisor"
    );
    let _ = writeln!(
        s,
        "{:<18} {:>12} {:>12} {:>9} {:>12} {:>12}",
        "", "ticks/op", "ticks/op", "nmv/nat", "instr/op", "instr/op"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<18} {:>12.2} {:>12.2} {:>9} {:>12.0} {:>12.0}",
            r.name,
            r.native_per_op(),
            r.nmivisor_per_op(),
            fmt_ratio(r.ratio()),
            r.native_per_op() * INSTRUCTIONS_PER_TICK,
            r.nmivisor_per_op() * INSTRUCTIONS_PER_TICK,
        );
    }
    for (name, why) in &native.skipped {
        let _ = writeln!(s, "{name:<18} skipped: {why}");
    }
    let all_stalls: Vec<Stall> = stalls(native, "native")
        .into_iter()
        .chain(stalls(hosted, "nmivisor"))
        .collect();
    for st in &all_stalls {
        let _ = writeln!(
            s,
            "note: {} ({}): batch {} of {} took {} ticks ({:.0} instructions) more than the \
             median batch: a stall, included above (see docs/benchmarks.md)",
            st.benchmark,
            st.config,
            st.batch + 1,
            st.batches,
            st.extra_ticks,
            st.extra_ticks as f64 * INSTRUCTIONS_PER_TICK
        );
    }
    let mut stalled: Vec<&str> = all_stalls.iter().map(|st| st.benchmark.as_str()).collect();
    stalled.dedup();
    for name in stalled {
        if let (Some(n), Some(h)) = (median_per_op(native, name), median_per_op(hosted, name)) {
            let ratio = (n > 0.0).then(|| h / n);
            let _ = writeln!(
                s,
                "note: {name} at the median batch's rate: native {n:.2}, nmivisor {h:.2} ticks/op, ratio {}",
                fmt_ratio(ratio)
            );
        }
    }
    let _ = writeln!(
        s,
        "hypervisor image: {} bytes on disk, {} bytes in memory (image_size)",
        info.file_bytes, info.image_size
    );
    let _ = writeln!(
        s,
        "guest RAM: native {}, in the VM {} (VM memory {GUEST_MEM}; machine -m {GUEST_MEM} native, {HOST_MEM} under nmivisor)",
        native.guest_ram.as_deref().unwrap_or("?"),
        hosted.guest_ram.as_deref().unwrap_or("?"),
    );
    s
}

/// The machine-readable report.
pub fn json(
    opts: &BenchOptions,
    rows: &[Row],
    native: &RunResult,
    hosted: &RunResult,
    info: &ImageInfo,
) -> serde_json::Value {
    let benchmarks: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "iterations": r.iterations,
                "native_ticks": r.native_ticks,
                "nmivisor_ticks": r.nmivisor_ticks,
                "native_ticks_per_op": r.native_per_op(),
                "nmivisor_ticks_per_op": r.nmivisor_per_op(),
                "ratio": r.ratio(),
                "native_instructions_per_op": r.native_per_op() * INSTRUCTIONS_PER_TICK,
                "nmivisor_instructions_per_op": r.nmivisor_per_op() * INSTRUCTIONS_PER_TICK,
                "native_batches": native.batches.get(&r.name),
                "nmivisor_batches": hosted.batches.get(&r.name),
                "native_median_batch_ticks_per_op": median_per_op(native, &r.name),
                "nmivisor_median_batch_ticks_per_op": median_per_op(hosted, &r.name),
            })
        })
        .collect();
    serde_json::json!({
        "smp": opts.smp,
        "iterations": opts.iterations,
        "runs": opts.runs,
        "icount": ICOUNT,
        "instructions_per_tick": INSTRUCTIONS_PER_TICK,
        "benchmarks": benchmarks,
        "skipped": native.skipped,
        "stalls": stalls(native, "native")
            .iter()
            .chain(&stalls(hosted, "nmivisor"))
            .map(|st| serde_json::json!({
                "benchmark": st.benchmark,
                "config": st.config,
                "batch": st.batch,
                "batches": st.batches,
                "extra_ticks": st.extra_ticks,
            }))
            .collect::<Vec<_>>(),
        "hypervisor_image": {
            "path": info.path,
            "file_bytes": info.file_bytes,
            "image_size": info.image_size,
        },
        "guest_ram": {
            "native": native.guest_ram,
            "nmivisor": hosted.guest_ram,
            "vm_memory": GUEST_MEM,
            "machine_memory_native": GUEST_MEM,
            "machine_memory_nmivisor": HOST_MEM,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    const NATIVE: &str = "\
guest-test: 2 CPUs, RAM 0x40000000-0x50000000, PSCI over hvc, console pl011@0x9000000
guest-test: bootargs \"guest-test.bench guest-test.bench-iterations=100\"
guest-test: bench mode, 100 iterations (+16 warm-up), counter 62500000 Hz, PSCI over hvc
bench mmio-gicd-read 100 31
bench-batches mmio-gicd-read 8 4 4 4 4 4 4 4 3
bench sgi-self 100 1200
bench-batches sgi-self 8 156 156 156 156 144 144 144 144
bench timer-irq 100 1300
bench hvc-psci-version 100 400
bench sgi-pingpong 100 5000
bench end: 5 ok, 0 skipped, 0 failed";

    #[test]
    fn parses_bench_lines() {
        let r = parse(&lines(NATIVE)).unwrap();
        assert_eq!(r.counts.len(), 5);
        assert_eq!(r.counts["sgi-self"], (100, 1200));
        assert_eq!(r.guest_ram.as_deref(), Some("0x40000000-0x50000000"));
        check_complete(&r, 2, 100).unwrap();
        assert!(check_complete(&r, 2, 1000).is_err());
        assert_eq!(r.batches["sgi-self"].len(), 8);
        assert_eq!(median_per_op(&r, "sgi-self"), Some(12.0));
        assert!(stalls(&r, "native").is_empty());
        assert!(parse(&lines("bench-batches x 3 1 2")).is_err());
    }

    #[test]
    fn finds_stalls() {
        let mut r = parse(&lines(NATIVE)).unwrap();
        // 13 + 13 + 13 + 13 + 12 * 4 = 100 operations.
        assert_eq!((0..8).map(|b| batch_len(100, 8, b)).sum::<u64>(), 100);
        r.batches.insert(
            "sgi-self".into(),
            vec![156, 156, 156, 156, 144, 5144, 144, 144],
        );
        let st = stalls(&r, "nmivisor");
        assert_eq!(st.len(), 1);
        assert_eq!((st[0].batch, st[0].extra_ticks), (5, 5000));
        assert_eq!(st[0].benchmark, "sgi-self");
    }

    #[test]
    fn missing_failed_and_skipped() {
        let text = NATIVE.replace("bench timer-irq 100 1300\n", "");
        let r = parse(&lines(&text)).unwrap();
        let e = check_complete(&r, 2, 100).unwrap_err().to_string();
        assert!(e.contains("timer-irq"), "{e}");

        let text = NATIVE.replace(
            "bench sgi-self 100 1200",
            "bench sgi-self FAILED: operation 3 of 100 timed out",
        );
        let e = parse(&lines(&text)).unwrap_err().to_string();
        assert!(e.contains("sgi-self: operation 3"), "{e}");

        let text = NATIVE.replace(
            "bench sgi-pingpong 100 5000",
            "bench sgi-pingpong skipped: needs 2 CPUs",
        );
        let r = parse(&lines(&text)).unwrap();
        check_complete(&r, 1, 100).unwrap();
        assert!(check_complete(&r, 2, 100).is_err());

        assert!(parse(&lines("bench sgi-self 100")).is_err());
        assert!(parse(&lines("bench sgi-self 1 2\nbench sgi-self 1 2")).is_err());
    }

    #[test]
    fn rows_ratios_and_reports() {
        let native = parse(&lines(NATIVE)).unwrap();
        let mut hosted = native.clone();
        hosted.counts.insert("sgi-self".into(), (100, 12_000));
        let rows = rows(&native, &hosted).unwrap();
        assert_eq!(rows.len(), 5);
        let sgi = rows.iter().find(|r| r.name == "sgi-self").unwrap();
        assert_eq!(sgi.ratio(), Some(10.0));
        assert_eq!(sgi.native_per_op(), 12.0);
        assert_eq!(
            differences(&native.counts, &hosted.counts).unwrap(),
            "sgi-self Some((100, 1200)) vs Some((100, 12000))"
        );
        assert_eq!(differences(&native.counts, &native.counts), None);

        let opts = BenchOptions {
            iterations: 100,
            ..BenchOptions::default()
        };
        let info = ImageInfo {
            path: "hypervisor.bin".into(),
            file_bytes: 10,
            image_size: 20,
        };
        let t = table(&opts, &rows, &native, &hosted, &info);
        assert!(t.contains("sgi-self"), "{t}");
        assert!(t.contains("10.0x"), "{t}");
        assert!(t.contains("192"), "12 ticks/op = 192 instructions: {t}");
        let j = json(&opts, &rows, &native, &hosted, &info);
        assert_eq!(j["benchmarks"][1]["name"], "sgi-self");
        assert_eq!(j["benchmarks"][1]["ratio"], 10.0);

        hosted.counts.remove("timer-irq");
        assert!(super::rows(&native, &hosted).is_err());
    }

    #[test]
    fn options_parse() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchOptions,
        }
        use clap::Parser;
        let c = Cli::try_parse_from(["bench", "--smp", "1", "--json", "--runs", "2"]).unwrap();
        assert_eq!((c.bench.smp, c.bench.runs, c.bench.json), (1, 2, true));
        assert_eq!(c.bench.iterations, 1000);
        assert!(Cli::try_parse_from(["bench", "--iterations", "0"]).is_err());
        assert!(Cli::try_parse_from(["bench", "--iterations", "40001"]).is_err());
    }
}
