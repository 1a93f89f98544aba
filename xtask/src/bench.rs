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
//! operation (under `-icount shift=0` one instruction is 1 ns of virtual
//! time, so a tick is 10^9 / CNTFRQ instructions: 16 at QEMU 7.2's
//! 62.5 MHz, 1 at QEMU 10's 1 GHz). See `docs/benchmarks.md`.

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
    "mmio-uart-read",
    "sgi-self",
    "timer-irq",
    "hvc-psci-version",
    "nmi-self",
    "sgi-pingpong",
    "nmi-cross",
];

/// Benchmarks that need this many CPUs (guest-test skips them with fewer).
const NEEDS_CPUS: &[(&str, u32)] = &[("sgi-pingpong", 2), ("nmi-cross", 2)];

/// QEMU's deterministic mode: CNTVCT follows the instruction count.
pub const ICOUNT: &str = "shift=0,sleep=off";

/// Instructions per counter tick at `hz` with `-icount shift=0`: one
/// instruction takes 1 ns of virtual time. The frequency is what the run
/// itself printed (guest-test's banner, the hypervisor's hyp-dump line):
/// QEMU 7.2's `virt` counts at 62.5 MHz (16 instructions per tick), newer
/// machine types at 1 GHz (1 per tick).
pub fn instructions_per_tick(hz: u64) -> f64 {
    1e9 / hz as f64
}

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

    /// Add a KVM column: the same guest-test under Linux KVM nested in the
    /// same QEMU machine (Debian's arm64 kernel as the host, Debian's arm64
    /// QEMU as the VMM; fetched into the cache, see docs/benchmarks.md).
    #[arg(long)]
    pub kvm: bool,

    /// Also measure the suite's Linux guest's time to userspace (as its
    /// /init reads the counter), natively, under nmivisor and (with
    /// --kvm) under KVM.
    #[arg(long)]
    pub linux: bool,

    /// Give up on the nested KVM run after this many seconds (it boots a
    /// whole Debian kernel under -icount first).
    #[arg(long, default_value_t = 2400, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub kvm_timeout: u64,

    /// Instead of the table: where the instructions of one operation of
    /// benchmark ROW go under nmivisor, per function and exception level
    /// (QEMU's execution log, see `xtask/src/profile.rs`).
    #[arg(long, value_name = "ROW")]
    pub profile: Option<String>,

    /// Operations of a `--profile` run (it boots twice, with N and 2N).
    #[arg(long, default_value_t = 100, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub profile_ops: u32,
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
            kvm: false,
            linux: false,
            kvm_timeout: 2400,
            profile: None,
            profile_ops: 100,
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
    /// The counter frequency guest-test printed (`counter N Hz`).
    pub counter_hz: Option<u64>,
    /// How long QEMU ran (host time).
    pub elapsed: Duration,
}

impl RunResult {
    /// Instructions per tick of this run's counter ([`check_complete`]
    /// makes sure guest-test printed its frequency).
    pub fn instructions_per_tick(&self) -> f64 {
        self.counter_hz
            .filter(|&hz| hz > 0)
            .map_or(f64::NAN, instructions_per_tick)
    }
}

/// Builds, boots both configurations, prints the table (or JSON).
pub fn run(opts: &BenchOptions) -> Result<()> {
    if let Some(row) = &opts.profile {
        return crate::profile::run(opts, row, opts.profile_ops);
    }
    let tc = provision::cross_toolchain(opts.toolchain)?;
    let qemu = provision::qemu(opts.qemu.as_deref())?;
    let built = build::build(&tc, Flavor::Normal)?;
    let guest = built.guest()?.bin.clone();
    let hypervisor = built.hypervisor.bin.clone();

    let cmdline = guest_cmdline(opts.iterations);
    let vm = VmConfig {
        symbols: None,
        lockup: None,
        dump: false,
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

    // The Linux boots and the KVM peer, if asked for.
    let linux = if opts.linux {
        Some(crate::linux::build(&crate::linux::Options::default())?)
    } else {
        None
    };
    let mut linux_configs = Vec::new();
    if let Some(l) = &linux {
        linux_configs = linux_boot_configs(opts, l, &hypervisor)?;
    }
    let kvm_config = if opts.kvm {
        Some(kvm_peer(opts, &guest, &cmdline, linux.as_ref())?)
    } else {
        None
    };

    let mut results: Vec<RunResult> = Vec::new();
    for (label, s, cfg) in &configs {
        results.push(measure(label, true, s, cfg, &qemu, opts, |o| {
            // No host time in the result: runs are compared.
            let r = parse(&o.console)?;
            check_complete(&r, opts.smp, u64::from(opts.iterations))?;
            say!(
                "bench: {label}: {} benchmarks in {:.1}s",
                r.counts.len(),
                o.elapsed.as_secs_f32()
            );
            Ok(r)
        })?);
    }
    let mut boots: Vec<(&str, f64)> = Vec::new();
    for (label, s, cfg) in &linux_configs {
        let secs = measure(label, true, s, cfg, &qemu, opts, |o| {
            linux_seconds(&o.console)
        })?;
        say!("bench: {label}: userspace after {secs:.4} s of guest time");
        boots.push((label, secs));
    }
    let mut kvm_result = None;
    if let Some((s, cfg)) = &kvm_config {
        let (r, secs) = measure("kvm", false, s, cfg, &qemu, opts, |o| {
            let r = parse(&o.console)?;
            check_complete(&r, opts.smp, u64::from(opts.iterations))?;
            say!(
                "bench: kvm: whole nested run {:.1}s",
                o.elapsed.as_secs_f32()
            );
            let secs = if opts.linux {
                Some(linux_seconds(&o.console)?)
            } else {
                None
            };
            Ok((r, secs))
        })?;
        if let Some(secs) = secs {
            boots.push(("linux-kvm", secs));
        }
        kvm_result = Some(r);
    }
    let dumps = hyp_dumps(opts, &tc, &qemu)?;
    let (native, hosted) = (&results[0], &results[1]);
    let mut rows = rows(native, hosted)?;
    if let Some(k) = &kvm_result {
        add_kvm(&mut rows, k)?;
    }
    let info = ImageInfo::read(&hypervisor)?;
    let boot = LinuxBoot::from_pairs(&boots);
    if opts.json {
        let mut j = json(opts, &rows, native, hosted, &info);
        if let Some(b) = j["benchmarks"].as_array_mut() {
            b.extend(dumps.iter().map(|d| d.json(opts.kvm)));
        }
        j["linux_boot"] = boot.json();
        j["kvm"] = serde_json::json!(opts.kvm);
        println!("{j}");
    } else {
        let t = table(opts, &rows, native, hosted, &info);
        // The hyp-dump rows go right after the guest benchmarks' rows.
        let mut lines: Vec<&str> = t.lines().collect();
        let at = 3 + rows.len();
        let dump_lines: Vec<String> = dumps.iter().map(|d| d.table_line(opts.kvm)).collect();
        for (i, l) in dump_lines.iter().enumerate() {
            lines.insert((at + i).min(lines.len()), l);
        }
        for l in lines {
            println!("{l}");
        }
        print!("{}", boot.table());
    }
    Ok(())
}

/// CPUs of the `hyp-dump-N` rows.
pub const HYP_DUMP_CPUS: [u32; 2] = [4, 8];

/// One `hyp-dump-N` row: a hypervisor-wide dump (the test-hooks image's
/// `nmivisor.test=bench-dump`: CPU 2 spins with interrupts masked by PMR,
/// CPU 0 dumps every CPU) from its trigger to its last line, on N CPUs,
/// as the hypervisor's counter says. No guest runs; there is no native or
/// KVM equivalent.
pub struct DumpRow {
    pub cpus: u32,
    pub ticks: u64,
    /// The hypervisor's counter frequency.
    pub counter_hz: u64,
}

impl DumpRow {
    pub fn name(&self) -> String {
        format!("hyp-dump-{}", self.cpus)
    }

    fn table_line(&self, kvm: bool) -> String {
        let kvm_cols = if kvm {
            format!(" {:>12} {:>9}", "n/a", "n/a")
        } else {
            String::new()
        };
        format!(
            "{:<18} {:>12} {:>12} {:>9} {:>12} {:>12.0}{kvm_cols}",
            self.name(),
            "n/a",
            self.ticks,
            "n/a",
            "n/a",
            self.instructions(),
        )
    }

    fn instructions(&self) -> f64 {
        self.ticks as f64 * instructions_per_tick(self.counter_hz.max(1))
    }

    fn json(&self, kvm: bool) -> serde_json::Value {
        let _ = kvm;
        serde_json::json!({
            "name": self.name(),
            "iterations": 1,
            "cpus": self.cpus,
            "native_ticks": null,
            "nmivisor_ticks": self.ticks,
            "native_ticks_per_op": null,
            "nmivisor_ticks_per_op": self.ticks as f64,
            "ratio": null,
            "native_instructions_per_op": null,
            "nmivisor_instructions_per_op": self.instructions(),
            "counter_hz": self.counter_hz,
            "kvm_ticks": null,
            "kvm_ticks_per_op": null,
            "kvm_instructions_per_op": null,
            "nmivisor_over_kvm": null,
        })
    }
}

/// Parses `nmivisor: bench hyp-dump N CPUs: T ticks at F Hz` into
/// (T, F).
pub fn parse_dump(lines: &[String], cpus: u32) -> Result<(u64, u64)> {
    let prefix = format!("nmivisor: bench hyp-dump {cpus} CPUs: ");
    lines
        .iter()
        .find_map(|l| {
            let rest = l.trim().strip_prefix(&prefix)?.strip_suffix(" Hz")?;
            let (ticks, hz) = rest.split_once(" ticks at ")?;
            let hz: u64 = hz.parse().ok().filter(|&hz| hz > 0)?;
            Some((ticks.parse().ok()?, hz))
        })
        .with_context(|| format!("no `{prefix}T ticks at F Hz` line"))
}

/// Boots the test-hooks image alone on each of [`HYP_DUMP_CPUS`] and
/// measures its `bench-dump` hook.
fn hyp_dumps(
    opts: &BenchOptions,
    tc: &provision::CrossToolchain,
    qemu: &crate::qemu::Qemu,
) -> Result<Vec<DumpRow>> {
    let built = build::build(tc, Flavor::TestHooks)?;
    let mut out = Vec::new();
    for cpus in HYP_DUMP_CPUS {
        let label = format!("hyp-dump-{cpus}");
        let s = Scenario::new(format!("bench-{label}"))
            .test_hooks()
            .smp(cpus)
            .mem(HOST_MEM)
            .append("nmivisor.test=bench-dump")
            .qemu_arg("-icount")
            .qemu_arg(ICOUNT)
            .timeout_secs(opts.timeout)
            .until(contains("nmivisor: bench hyp-dump "))
            .forbid(contains("not responding to the NMI"));
        let cfg = s.qemu_config(&built.hypervisor.bin, None);
        let mut o = opts.clone();
        o.smp = cpus;
        let (ticks, counter_hz) = measure(&label, true, &s, &cfg, qemu, &o, |out| {
            parse_dump(&out.console, cpus)
        })?;
        say!("bench: {label}: {ticks} ticks at {counter_hz} Hz");
        out.push(DumpRow {
            cpus,
            ticks,
            counter_hz,
        });
    }
    Ok(out)
}

/// The guest's command line in both runs.
pub fn guest_cmdline(iterations: u32) -> String {
    format!("guest-test.bench guest-test.bench-iterations={iterations}")
}

/// A run of `opts.smp` CPUs under `-icount` that ends at guest-test's
/// last line, `bench end: ...` (QEMU is then stopped: under `-icount` the
/// hypervisor's power-off takes half a minute of host time, see
/// `docs/benchmarks.md`), or fails as a hang after `opts.timeout`.
pub(crate) fn scenario(name: &str, opts: &BenchOptions) -> Scenario {
    Scenario::new(name)
        .smp(opts.smp)
        .qemu_arg("-icount")
        .qemu_arg(ICOUNT)
        .timeout_secs(opts.timeout)
        .until(contains("bench end: "))
        .forbid(contains("guest-test: panic"))
}

/// Boots one configuration `opts.runs` times, each to a passing
/// outcome, and extracts its result with `extract`. With `strict`, fails
/// unless every run gives the same result (under -icount they must);
/// otherwise (the nested KVM run) notes the difference and keeps run 1.
fn measure<T: PartialEq + std::fmt::Debug + 'static>(
    label: &str,
    strict: bool,
    s: &Scenario,
    cfg: &crate::qemu::QemuConfig,
    qemu: &crate::qemu::Qemu,
    opts: &BenchOptions,
    extract: impl Fn(&harness::Outcome) -> Result<T>,
) -> Result<T> {
    let mut first: Option<T> = None;
    let mut differed = false;
    for i in 1..=opts.runs {
        let mut cmd = cfg.command(qemu);
        cmd.current_dir(util::workspace_root());
        say!(
            "bench: {label} run {i}/{}: {}",
            opts.runs,
            util::command_line(&cmd)
        );
        let outcome = harness::run(s, cmd);
        if !outcome.passed() {
            let tail: Vec<&String> = outcome.log.iter().rev().take(40).collect();
            let mut msg = outcome.failures.join("; ");
            msg.push_str("\nlast console lines:");
            for l in tail.into_iter().rev() {
                let _ = write!(msg, "\n    | {l}");
            }
            bail!("the {label} run failed: {msg}");
        }
        let r = extract(&outcome).with_context(|| format!("the {label} run"))?;
        match &first {
            None => first = Some(r),
            Some(f) if *f == r => {}
            Some(f) if !strict => {
                differed = true;
                say!(
                    "bench: note: {label} run {i} differs from run 1 (the nested KVM run is not \
                     deterministic, see docs/benchmarks.md; run 1 is reported): {}",
                    describe_difference(f, &r)
                );
            }
            Some(f) => bail!(
                "{label} run {i} differs from run 1: {}",
                describe_difference(f, &r)
            ),
        }
    }
    if opts.runs > 1 && !differed {
        say!("bench: {label}: {} runs gave identical results", opts.runs);
    }
    Ok(first.expect("at least one run"))
}

/// Parses guest-test's bench output: `bench NAME N TICKS`,
/// `bench NAME skipped: why`, `bench NAME FAILED: why` (an error), and the
/// RAM of its first line.
pub fn parse(lines: &[String]) -> Result<RunResult> {
    let mut r = RunResult::default();
    let mut failed = Vec::new();
    for line in lines {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("guest-test: ") {
            for part in rest.split(", ") {
                if let (None, Some(ram)) = (&r.guest_ram, part.strip_prefix("RAM ")) {
                    r.guest_ram = Some(ram.to_string());
                }
                let hz = part
                    .strip_prefix("counter ")
                    .and_then(|p| p.strip_suffix(" Hz"));
                if let (None, Some(hz)) = (r.counter_hz, hz) {
                    let hz = hz
                        .parse()
                        .with_context(|| format!("malformed line {line:?}"))?;
                    r.counter_hz = Some(hz);
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
    ensure!(
        r.counter_hz.is_some_and(|hz| hz > 0),
        "guest-test printed no counter frequency (`counter N Hz`)"
    );
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

/// How two results differ, for the determinism check.
fn describe_difference<T: std::fmt::Debug + 'static>(a: &T, b: &T) -> String {
    let any_a: &dyn std::any::Any = a;
    let any_b: &dyn std::any::Any = b;
    let counts = |x: &dyn std::any::Any| {
        x.downcast_ref::<RunResult>()
            .or_else(|| x.downcast_ref::<(RunResult, Option<f64>)>().map(|p| &p.0))
            .map(|r| r.counts.clone())
    };
    match (counts(any_a), counts(any_b)) {
        (Some(a), Some(b)) if a != b => differences(&a, &b).unwrap_or_default(),
        _ => format!("{b:?} vs {a:?}"),
    }
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
    /// Under KVM (`--kvm`).
    pub kvm_ticks: Option<u64>,
    /// Instructions per tick of each run's counter ([`instructions_per_tick`]).
    pub native_ipt: f64,
    pub nmivisor_ipt: f64,
    pub kvm_ipt: Option<f64>,
}

impl Row {
    pub fn native_per_op(&self) -> f64 {
        self.native_ticks as f64 / self.iterations as f64
    }

    pub fn nmivisor_per_op(&self) -> f64 {
        self.nmivisor_ticks as f64 / self.iterations as f64
    }

    pub fn kvm_per_op(&self) -> Option<f64> {
        self.kvm_ticks.map(|k| k as f64 / self.iterations as f64)
    }

    pub fn native_instructions_per_op(&self) -> f64 {
        self.native_per_op() * self.native_ipt
    }

    pub fn nmivisor_instructions_per_op(&self) -> f64 {
        self.nmivisor_per_op() * self.nmivisor_ipt
    }

    pub fn kvm_instructions_per_op(&self) -> Option<f64> {
        Some(self.kvm_per_op()? * self.kvm_ipt?)
    }

    /// nmivisor / KVM in instructions; `None` without KVM or if KVM took
    /// no tick.
    pub fn kvm_ratio(&self) -> Option<f64> {
        let k = self.kvm_instructions_per_op().filter(|&k| k > 0.0)?;
        Some(self.nmivisor_instructions_per_op() / k)
    }

    /// nmivisor / native in instructions; `None` if native took no tick
    /// at all.
    pub fn ratio(&self) -> Option<f64> {
        (self.native_ticks > 0)
            .then(|| self.nmivisor_instructions_per_op() / self.native_instructions_per_op())
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
                    kvm_ticks: None,
                    native_ipt: native.instructions_per_tick(),
                    nmivisor_ipt: hosted.instructions_per_tick(),
                    kvm_ipt: None,
                });
            }
            (None, None) => {}
            _ => bail!("{name} ran in one configuration only"),
        }
    }
    Ok(rows)
}

/// Adds the KVM run's ticks to `rows` (same iterations, same benchmarks).
pub fn add_kvm(rows: &mut [Row], kvm: &RunResult) -> Result<()> {
    for r in rows {
        let &(n, t) = kvm
            .counts
            .get(&r.name)
            .with_context(|| format!("{} did not run under KVM", r.name))?;
        ensure!(
            n == r.iterations,
            "{}: {n} iterations under KVM, {} elsewhere",
            r.name,
            r.iterations
        );
        r.kvm_ticks = Some(t);
        r.kvm_ipt = Some(kvm.instructions_per_tick());
    }
    Ok(())
}

/// The line `/init` prints with the counter (see `linux/init.sh`).
pub const COUNTER_LINE: &str = "nmv-init: counter at userspace: ";

/// The guest's time to userspace from its `/init`'s counter line.
pub fn linux_seconds(lines: &[String]) -> Result<f64> {
    let found: Vec<&String> = lines.iter().filter(|l| l.contains(COUNTER_LINE)).collect();
    ensure!(
        found.len() == 1,
        "{} lines {COUNTER_LINE:?}, expected one",
        found.len()
    );
    let rest = &found[0][found[0].find(COUNTER_LINE).expect("found") + COUNTER_LINE.len()..];
    crate::linux::counter::seconds(rest).with_context(|| format!("malformed line {:?}", found[0]))
}

/// The Linux boot figures, seconds of guest time to userspace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinuxBoot {
    pub native: Option<f64>,
    pub nmivisor: Option<f64>,
    pub kvm: Option<f64>,
}

impl LinuxBoot {
    fn from_pairs(pairs: &[(&str, f64)]) -> LinuxBoot {
        let get = |k: &str| pairs.iter().find(|(l, _)| *l == k).map(|&(_, v)| v);
        LinuxBoot {
            native: get("linux-native"),
            nmivisor: get("linux-nmivisor"),
            kvm: get("linux-kvm"),
        }
    }

    fn ratio(&self, x: Option<f64>) -> Option<f64> {
        Some(x? / self.native.filter(|&n| n > 0.0)?)
    }

    /// The report's section (empty without `--linux`).
    pub fn table(&self) -> String {
        let mut s = String::new();
        if self.native.is_none() {
            return s;
        }
        let _ = writeln!(
            s,
            "linux boot to userspace (guest counter read by /init, -icount {ICOUNT}):"
        );
        for (label, v) in [
            ("native", self.native),
            ("nmivisor", self.nmivisor),
            ("KVM", self.kvm),
        ] {
            if let Some(v) = v {
                let _ = writeln!(
                    s,
                    "  {label:<9} {v:>8.4} s  {:>6} of native",
                    fmt_ratio2(self.ratio(Some(v)))
                );
            }
        }
        s
    }

    /// The JSON of the section.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "native_s": self.native,
            "nmivisor_s": self.nmivisor,
            "kvm_s": self.kvm,
            "nmivisor_over_native": self.ratio(self.nmivisor),
            "kvm_over_native": self.ratio(self.kvm),
        })
    }
}

fn fmt_ratio2(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{r:.2}x"))
}

/// The Linux boots natively and under nmivisor: the suite's kernel and
/// initramfs with `nmv.test=poweroff`, `opts.smp` CPUs, the VM's memory,
/// until `/init`'s counter line.
fn linux_boot_configs(
    opts: &BenchOptions,
    linux: &crate::linux::Artifacts,
    hypervisor: &Path,
) -> Result<Vec<(&'static str, Scenario, crate::qemu::QemuConfig)>> {
    let cmdline = crate::linux::cmdline("nmv.test=poweroff");
    let native = linux_scenario("bench-linux-native", opts)
        .linux_native("nmv.test=poweroff")
        .smp(opts.smp);
    let mut native_cfg = native.qemu_config(&linux.kernel.image, Some(&linux.initramfs));
    native_cfg.append = Some(cmdline.clone());
    let vm = VmConfig {
        symbols: None,
        lockup: None,
        dump: false,
        name: crate::linux::VM_NAME.into(),
        image: linux.kernel.image.clone(),
        initrd: Some(linux.initramfs.clone()),
        cmdline,
        cpus: bundle::all_cpus(opts.smp),
        memory: crate::linux::VM_MEMORY.into(),
    };
    let bundle_file = bundle::bundle_path("bench-linux");
    bundle::build_bundle(std::slice::from_ref(&vm), &bundle_file)?;
    let hosted = linux_scenario("bench-linux-nmivisor", opts)
        .linux_vm("nmv.test=poweroff")
        .smp(opts.smp)
        .mem(crate::linux::HOST_MEMORY);
    let hosted_cfg = hosted.qemu_config(hypervisor, Some(&bundle_file));
    Ok(vec![
        ("linux-native", native, native_cfg),
        ("linux-nmivisor", hosted, hosted_cfg),
    ])
}

/// QEMU's seed for everything a guest can read as random (RNDR, the
/// device tree's `kaslr-seed` and `rng-seed`): Linux draws on them from
/// its first instructions (KASLR, its entropy pool), and without a fixed
/// seed the same boot would count differently each time.
pub const SEED: &str = "1";

/// A Linux boot under -icount that ends at `/init`'s counter line.
fn linux_scenario(name: &str, opts: &BenchOptions) -> Scenario {
    Scenario::new(name)
        .qemu_arg("-icount")
        .qemu_arg(ICOUNT)
        .qemu_arg("-seed")
        .qemu_arg(SEED)
        .timeout_secs(opts.timeout)
        .until(contains(COUNTER_LINE))
}

/// The host machine's memory in the KVM run: the host kernel and its
/// initramfs next to the guest (256 MiB, or the Linux guest's 512 MiB).
const KVM_HOST_MEM: &str = "2G";

/// The KVM peer's run: the stock kernel as the host on the machine
/// nmivisor runs on, whose `/init` runs guest-test's bench under KVM
/// (and with `linux`, then the Linux guest's boot).
fn kvm_peer(
    opts: &BenchOptions,
    guest: &Path,
    cmdline: &str,
    linux: Option<&crate::linux::Artifacts>,
) -> Result<(Scenario, crate::qemu::QemuConfig)> {
    let stock = crate::linux::stock::fetch()?;
    let vmm = crate::kvm::vmm()?;
    crate::kvm::describe(&vmm);
    let busybox = std::fs::read(crate::linux::busybox_binary()?)?;
    let mut files = vec![("guest-test.bin".to_string(), std::fs::read(guest)?)];
    let mut inner = vec![crate::kvm::inner_config(
        "/guest-test.bin",
        None,
        cmdline,
        opts.smp,
        GUEST_MEM,
    )];
    if let Some(l) = linux {
        files.push(("linux-Image".into(), std::fs::read(&l.kernel.image)?));
        files.push((
            "linux-initramfs.cpio.gz".into(),
            std::fs::read(&l.initramfs)?,
        ));
        inner.push(crate::kvm::inner_config(
            "/linux-Image",
            Some("/linux-initramfs.cpio.gz"),
            &crate::linux::cmdline("nmv.test=poweroff"),
            opts.smp,
            crate::linux::VM_MEMORY,
        ));
    }
    let init = crate::kvm::host_init(&inner);
    let cpio = crate::kvm::host_initramfs(&busybox, &vmm, &files, &init)?;
    let path = util::out_dir().join("kvm-host.cpio");
    std::fs::write(&path, &cpio).with_context(|| format!("cannot write {}", path.display()))?;
    say!(
        "kvm: host {} {}, initramfs {} ({:.1} MB)",
        stock.package,
        stock.version,
        display_path(&path),
        cpio.len() as f64 / 1e6
    );
    let s = Scenario::new("bench-kvm")
        .smp(opts.smp)
        .mem(KVM_HOST_MEM)
        .append(crate::kvm::HOST_CMDLINE)
        .qemu_arg("-icount")
        .qemu_arg(ICOUNT)
        .qemu_arg("-seed")
        .qemu_arg(SEED)
        .timeout_secs(opts.kvm_timeout)
        .until(contains(crate::kvm::ALL_DONE))
        .forbid(contains("nmv-kvm-host: FAILED"))
        .forbid(contains("Kernel panic"))
        .forbid(contains("guest-test: panic"));
    let cfg = s.qemu_config(&stock.image, Some(&path));
    Ok((s, cfg))
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
        "nmivisor bench: -smp {}, {} iterations, -icount {ICOUNT} (counter {} Hz: 1 tick = {} instructions)",
        opts.smp,
        opts.iterations,
        native.counter_hz.unwrap_or(0),
        native.instructions_per_tick()
    );
    if hosted.counter_hz != native.counter_hz {
        let _ = writeln!(
            s,
            "note: the counter runs at {} Hz under nmivisor: instructions are converted per run",
            hosted.counter_hz.unwrap_or(0)
        );
    }
    let kvm = rows.iter().any(|r| r.kvm_ticks.is_some());
    let (kvm_h1, kvm_h2) = if kvm {
        (
            format!(" {:>12} {:>9}", "KVM", "ratio"),
            format!(" {:>12} {:>9}", "instr/op", "nmv/KVM"),
        )
    } else {
        (String::new(), String::new())
    };
    let _ = writeln!(
        s,
        "{:<18} {:>12} {:>12} {:>9} {:>12} {:>12}{kvm_h1}",
        "benchmark", "native", "nmivisor", "ratio", "native", "nmivisor"
    );
    let _ = writeln!(
        s,
        "{:<18} {:>12} {:>12} {:>9} {:>12} {:>12}{kvm_h2}",
        "", "ticks/op", "ticks/op", "nmv/nat", "instr/op", "instr/op"
    );
    for r in rows {
        let kvm_cols = match r.kvm_instructions_per_op() {
            Some(k) => format!(
                " {:>12.0} {:>9}",
                k,
                r.kvm_ratio().map_or("n/a".into(), |x| format!("{x:.2}"))
            ),
            None => String::new(),
        };
        let _ = writeln!(
            s,
            "{:<18} {:>12.2} {:>12.2} {:>9} {:>12.0} {:>12.0}{kvm_cols}",
            r.name,
            r.native_per_op(),
            r.nmivisor_per_op(),
            fmt_ratio(r.ratio()),
            r.native_instructions_per_op(),
            r.nmivisor_instructions_per_op(),
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
            st.extra_ticks as f64
                * if st.config == "native" {
                    native.instructions_per_tick()
                } else {
                    hosted.instructions_per_tick()
                }
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
                "native_instructions_per_op": r.native_instructions_per_op(),
                "nmivisor_instructions_per_op": r.nmivisor_instructions_per_op(),
                "kvm_ticks": r.kvm_ticks,
                "kvm_ticks_per_op": r.kvm_per_op(),
                "kvm_instructions_per_op": r.kvm_instructions_per_op(),
                "nmivisor_over_kvm": r.kvm_ratio(),
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
        "instructions_per_tick": native.instructions_per_tick(),
        "counter_hz": {
            "native": native.counter_hz,
            "nmivisor": hosted.counter_hz,
        },
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
bench mmio-uart-read 100 25
bench sgi-self 100 1200
bench-batches sgi-self 8 156 156 156 156 144 144 144 144
bench timer-irq 100 1300
bench hvc-psci-version 100 400
bench nmi-self 100 1200
bench sgi-pingpong 100 5000
bench nmi-cross 100 1300
bench end: 8 ok, 0 skipped, 0 failed";

    #[test]
    fn parses_hyp_dump_lines() {
        let l = lines("=== end of dump: 4 CPUs dumped, 0 not responding ===\nnmivisor: bench hyp-dump 4 CPUs: 49957 ticks at 62500000 Hz\n");
        assert_eq!(parse_dump(&l, 4).unwrap(), (49957, 62_500_000));
        assert!(parse_dump(&l, 8).is_err());
        // The frequency is needed to convert, and must be a number > 0.
        for bad in [
            "nmivisor: bench hyp-dump 4 CPUs: 49957 ticks",
            "nmivisor: bench hyp-dump 4 CPUs: 49957 ticks at 0 Hz",
            "nmivisor: bench hyp-dump 4 CPUs: 49957 ticks at x Hz",
        ] {
            assert!(parse_dump(&lines(bad), 4).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_bench_lines() {
        let r = parse(&lines(NATIVE)).unwrap();
        assert_eq!(r.counts.len(), 8);
        assert_eq!(r.counts["sgi-self"], (100, 1200));
        assert_eq!(r.guest_ram.as_deref(), Some("0x40000000-0x50000000"));
        assert_eq!(r.counter_hz, Some(62_500_000));
        assert_eq!(r.instructions_per_tick(), 16.0);
        check_complete(&r, 2, 100).unwrap();
        let no_counter = NATIVE.replace(", counter 62500000 Hz", "");
        let e = check_complete(&parse(&lines(&no_counter)).unwrap(), 2, 100).unwrap_err();
        assert!(e.to_string().contains("counter"), "{e}");
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

        let text = NATIVE
            .replace(
                "bench sgi-pingpong 100 5000",
                "bench sgi-pingpong skipped: needs 2 CPUs",
            )
            .replace(
                "bench nmi-cross 100 1300",
                "bench nmi-cross skipped: needs 2 CPUs",
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
        assert_eq!(rows.len(), 8);
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
        assert_eq!(j["benchmarks"][2]["name"], "sgi-self");
        assert_eq!(j["benchmarks"][2]["ratio"], 10.0);
        // QEMU 10's 1 GHz counter: 1 tick = 1 instruction, and the
        // ratios compare instructions.
        let mut fast = hosted.clone();
        fast.counter_hz = Some(1_000_000_000);
        fast.counts.insert("sgi-self".into(), (100, 12_000 * 16));
        let fast_rows = super::rows(&native, &fast).unwrap();
        let sgi = fast_rows.iter().find(|r| r.name == "sgi-self").unwrap();
        assert_eq!(sgi.nmivisor_instructions_per_op(), 1920.0);
        assert_eq!(sgi.ratio(), Some(10.0));
        let t = table(&opts, &fast_rows, &native, &fast, &info);
        assert!(t.contains("1000000000 Hz under nmivisor"), "{t}");
        let d = DumpRow {
            cpus: 4,
            ticks: 100,
            counter_hz: 62_500_000,
        };
        assert!(d.table_line(true).starts_with("hyp-dump-4"));
        assert!(d.table_line(true).contains("n/a"));
        assert_eq!(d.json(true)["nmivisor_instructions_per_op"], 1600.0);
        assert!(d.json(true)["native_ticks"].is_null());

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
