//! The QEMU scenario harness: boots an image, watches the console line by
//! line, types into it when asked, stops at the end condition or the
//! timeout, and checks the console log against the scenario's expectations.
//!
//! Scenarios are plain data built with the [`Scenario`] builder; see
//! [`crate::scenarios`] for the list.

use std::fmt;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::build::Flavor;
use crate::bundle::BundleSpec;
use crate::qemu::{QemuConfig, NATIVE_MACHINE};

/// How long a scenario may run unless it says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// After a forbidden line appears, keep reading this long (for the rest of
/// the panic message or dump), then stop.
const GRACE_AFTER_FORBIDDEN: Duration = Duration::from_secs(2);

/// Lines every scenario forbids unless it calls [`Scenario::allow`].
pub const DEFAULT_FORBIDDEN: &[&str] = &["panicked", "unexpected exception"];

/// What a console line is matched against.
#[derive(Clone, Debug)]
pub enum Pattern {
    /// The line contains this text.
    Contains(String),
    /// The line matches this regular expression (`regex` crate syntax).
    Regex(Regex),
}

/// A pattern matching lines that contain `text`.
pub fn contains(text: impl Into<String>) -> Pattern {
    Pattern::Contains(text.into())
}

/// A pattern matching lines that match the regular expression `re`.
///
/// # Panics
/// If `re` is not a valid regular expression (scenarios are fixed data, and
/// a unit test builds them all).
pub fn regex(re: &str) -> Pattern {
    Pattern::Regex(Regex::new(re).unwrap_or_else(|e| panic!("bad scenario regex {re:?}: {e}")))
}

impl Pattern {
    /// Whether `line` matches.
    pub fn matches(&self, line: &str) -> bool {
        match self {
            Pattern::Contains(text) => line.contains(text.as_str()),
            Pattern::Regex(re) => re.is_match(line),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Contains(text) => write!(f, "{text:?}"),
            Pattern::Regex(re) => write!(f, "/{}/", re.as_str()),
        }
    }
}

/// One expectation on the console log, checked after the run.
#[derive(Clone, Debug)]
pub enum Expect {
    /// At least one line matches.
    Line(Pattern),
    /// Exactly this many lines match.
    Count(Pattern, usize),
    /// At least this many lines match.
    AtLeast(Pattern, usize),
    /// No line matches.
    Forbid(Pattern),
    /// Lines matching these patterns appear in this order (each one after
    /// the line that matched the previous pattern).
    InOrder(Vec<Pattern>),
    /// No line matches the first pattern before the first line that
    /// matches the second (in the whole log if none does).
    ForbidBefore(Pattern, Pattern),
    /// Heartbeat lines, `MARKER N CNTVCT CNTFRQ` (N decimal, the guest's
    /// virtual counter and its frequency in hex, as `/init`'s heartbeat
    /// flow prints them): at least `min_beats` of them, numbered without
    /// a hole, and no two consecutive ones further apart than
    /// `max_gap_ms` of guest time (from the counter values, not wall time).
    Heartbeat {
        marker: String,
        min_beats: usize,
        max_gap_ms: u64,
    },
}

/// Heartbeats seen and the largest gap between consecutive ones in guest
/// milliseconds; or why the lines do not form a heartbeat.
///
/// A heartbeat line that another writer's line cut short (the hypervisor
/// prints its own lines between a guest's bytes) still counts if its
/// number is whole: the gap is then measured from the previous readable
/// counter to the next one, which can only be larger.
pub fn heartbeat_stats(marker: &str, lines: &[String]) -> Result<(usize, u64), String> {
    let mut last_n: Option<u64> = None;
    let mut last_cnt: Option<u64> = None;
    let (mut beats, mut max_gap) = (0usize, 0u64);
    for l in lines {
        let Some(at) = l.find(marker) else { continue };
        let rest = &l[at + marker.len()..];
        let words: Vec<&str> = rest.split_whitespace().collect();
        let n = match words.first().map(|w| w.parse::<u64>()) {
            Some(Ok(n)) if rest.starts_with(words[0]) => n,
            _ => return Err(format!("unreadable heartbeat line {l:?}")),
        };
        if let Some(prev) = last_n {
            if n != prev + 1 {
                return Err(format!("heartbeat {n} follows {prev}"));
            }
        }
        last_n = Some(n);
        beats += 1;
        let counter = match words.as_slice() {
            [_, cnt, frq] if cnt.len() == 16 && frq.len() == 16 => u64::from_str_radix(cnt, 16)
                .ok()
                .zip(u64::from_str_radix(frq, 16).ok().filter(|&f| f > 0)),
            _ => None,
        };
        let Some((cnt, frq)) = counter else { continue }; // torn line
        if let Some(prev) = last_cnt {
            if cnt < prev {
                return Err(format!("heartbeat {n}: the counter went back"));
            }
            max_gap = max_gap.max((cnt - prev) * 1000 / frq);
        }
        last_cnt = Some(cnt);
    }
    Ok((beats, max_gap))
}

/// How a run ends successfully.
#[derive(Clone, Debug)]
pub enum End {
    /// QEMU exits by itself with this code (0 after PSCI SYSTEM_OFF).
    Exit(i32),
    /// A line matching this pattern appears; QEMU is then killed.
    Line(Pattern),
}

/// Bytes typed into the console once a line (or prompt) matches.
#[derive(Clone, Debug)]
pub struct Input {
    /// Trigger: a console line, or the unfinished last line (a prompt).
    pub after: Pattern,
    /// What to send to the serial port.
    pub bytes: Vec<u8>,
}

/// What a scenario boots.
#[derive(Clone, Debug)]
pub enum Boot {
    /// The hypervisor alone (no `-initrd`).
    Hypervisor,
    /// The hypervisor with a VM bundle (`-initrd`), written when the
    /// scenario runs to `target/nmivisor/<scenario name>.cpio`.
    Bundle(BundleSpec),
    /// guest-test alone, natively at EL1 on a machine without EL2
    /// ([`NATIVE_MACHINE`]): the reference run the hypervisor runs are
    /// compared with.
    NativeGuest,
    /// The Linux guest of `cargo xtask linux` alone, natively at EL1
    /// ([`NATIVE_MACHINE`], `-kernel Image -initrd initramfs`); `append`
    /// is its full command line. The reference for [`Boot::LinuxVm`].
    LinuxNative,
    /// The hypervisor with a bundle holding one VM `linux` (the kernel and
    /// initramfs of `cargo xtask linux`) on every CPU, with this command
    /// line; `append` stays the hypervisor's.
    LinuxVm(String),
    /// The hypervisor with a bundle holding VM `linux` first (so it has the
    /// console input at boot) on `linux_cpus` with command line `cmdline`,
    /// then the guest-test VMs of `guests`.
    LinuxAndGuests {
        cmdline: String,
        linux_cpus: String,
        guests: BundleSpec,
    },
}

/// A QEMU test scenario. Build one with [`Scenario::new`] and the builder
/// methods; add it to [`crate::scenarios::all`].
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Unique name, used by `--filter` and in the report.
    pub name: String,
    /// What to boot.
    pub boot: Boot,
    /// Which hypervisor build: the image booted, or for
    /// [`Boot::NativeGuest`], the build that also makes the guest.
    pub flavor: Flavor,
    /// `-smp`.
    pub smp: u32,
    /// `-m`.
    pub mem: String,
    /// `-append` (the hypervisor's command line, or the native guest's).
    pub append: Option<String>,
    /// Extra QEMU arguments.
    pub qemu_args: Vec<String>,
    /// Checked on the whole console log after the run.
    pub expects: Vec<Expect>,
    /// Sent in order, each once its trigger appears.
    pub inputs: Vec<Input>,
    /// The end condition.
    pub end: End,
    /// The run fails (as a hang) if it has not ended by then.
    pub timeout: Duration,
    /// After the run, at least one guest PC of a hypervisor dump
    /// (`    PC 0x... LR 0x...`) must name a symbol of the Linux guest's
    /// `System.map` (checked by the runner, which knows the map).
    pub guest_pc_symbol: bool,
    /// `cargo xtask test` also runs this scenario on the second QEMU
    /// (QEMU 10), as `NAME@qemu10`, unless `--qemu` picks one QEMU for
    /// everything.
    pub also_on_second_qemu: bool,
    /// This is the copy that runs on the second QEMU.
    pub on_second_qemu: bool,
    /// Which Linux kernel a Linux boot uses.
    pub linux_kernel: LinuxKernel,
    /// The Linux VM's `lockup = ...` (the hypervisor's guest lockup
    /// detector); `None` leaves it off.
    pub guest_lockup: Option<String>,
    /// Console lines matching these are printed after `ok`, so a passing
    /// run still shows its key figures.
    pub reports: Vec<Pattern>,
}

/// The kernel of a Linux scenario.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinuxKernel {
    /// The suite's own 6.12 with pseudo-NMIs (`cargo xtask linux`).
    #[default]
    Suite,
    /// Debian's stock arm64 kernel (`linux-image-*-arm64-unsigned`), as a
    /// user would boot it: no pseudo-NMI, SVE, PAuth, KASLR.
    Stock,
}

impl Scenario {
    /// A scenario booting the normal image with 1 CPU and 1 GiB, expecting
    /// QEMU to exit with 0, and forbidding [`DEFAULT_FORBIDDEN`].
    pub fn new(name: impl Into<String>) -> Self {
        Scenario {
            name: name.into(),
            boot: Boot::Hypervisor,
            flavor: Flavor::Normal,
            smp: 1,
            mem: "1G".into(),
            append: None,
            qemu_args: Vec::new(),
            expects: DEFAULT_FORBIDDEN
                .iter()
                .map(|t| Expect::Forbid(contains(*t)))
                .collect(),
            inputs: Vec::new(),
            end: End::Exit(0),
            timeout: DEFAULT_TIMEOUT,
            guest_pc_symbol: false,
            also_on_second_qemu: false,
            on_second_qemu: false,
            linux_kernel: LinuxKernel::Suite,
            guest_lockup: None,
            reports: Vec::new(),
        }
    }

    /// Turns the hypervisor's guest lockup detector on for the Linux VM
    /// (`lockup = VALUE` in its bundle config).
    pub fn guest_lockup(mut self, value: &str) -> Self {
        self.guest_lockup = Some(value.into());
        self
    }

    /// Run this scenario on the second QEMU too (see
    /// [`Scenario::also_on_second_qemu`]).
    pub fn also_on_second_qemu(mut self) -> Self {
        self.also_on_second_qemu = true;
        self
    }

    /// The copy of this scenario for the second QEMU, named
    /// `NAME@LABEL`.
    pub fn on_second_qemu(&self, label: &str) -> Self {
        let mut s = self.clone();
        s.name = format!("{}@{label}", self.name);
        s.on_second_qemu = true;
        s.also_on_second_qemu = false;
        s
    }

    /// Boot Debian's stock kernel instead of the suite's (Linux boots only).
    pub fn stock_kernel(mut self) -> Self {
        self.linux_kernel = LinuxKernel::Stock;
        self
    }

    /// Boot the hypervisor with the VM bundle `spec` (`-initrd`).
    pub fn bundle(mut self, spec: BundleSpec) -> Self {
        self.boot = Boot::Bundle(spec);
        self
    }

    /// Boot guest-test natively at EL1 (no hypervisor, no EL2) with 256 MiB,
    /// like the machine a VM gets.
    pub fn native_guest(mut self) -> Self {
        self.boot = Boot::NativeGuest;
        self.mem = "256M".into();
        self
    }

    /// Boot the Linux guest natively with [`crate::linux::CPUS`] CPUs and
    /// the VM's memory; `extra` is added to its base command line.
    pub fn linux_native(mut self, extra: &str) -> Self {
        self.boot = Boot::LinuxNative;
        self.smp = crate::linux::CPUS;
        self.mem = crate::linux::VM_MEMORY.into();
        self.append = Some(crate::linux::cmdline(extra));
        self.linux_forbids()
    }

    /// Boot the hypervisor with the Linux guest as VM `linux` on all
    /// [`crate::linux::CPUS`] CPUs; `extra` is added to the guest's base
    /// command line.
    pub fn linux_vm(mut self, extra: &str) -> Self {
        self.boot = Boot::LinuxVm(crate::linux::cmdline(extra));
        self.smp = crate::linux::CPUS;
        self.mem = crate::linux::HOST_MEMORY.into();
        self.linux_forbids().forbid(contains(format!(
            "vm {}: not started",
            crate::linux::VM_NAME
        )))
    }

    fn linux_forbids(self) -> Self {
        self.forbid(contains("Kernel panic"))
            .forbid(contains("nmv-init: FAILED"))
            .forbid(contains("Unable to handle kernel"))
    }

    /// Whether the scenario boots guest-test (natively or in a bundle).
    #[cfg(test)]
    pub fn needs_guest(&self) -> bool {
        matches!(
            self.boot,
            Boot::Bundle(_) | Boot::NativeGuest | Boot::LinuxAndGuests { .. }
        )
    }

    /// Whether the scenario boots the Linux guest of `cargo xtask linux`.
    pub fn needs_linux(&self) -> bool {
        matches!(
            self.boot,
            Boot::LinuxNative | Boot::LinuxVm(_) | Boot::LinuxAndGuests { .. }
        )
    }

    /// Whether the scenario needs the hypervisor build (every boot but
    /// native Linux: native guest-test comes from the same build).
    pub fn needs_build(&self) -> bool {
        !matches!(self.boot, Boot::LinuxNative)
    }

    /// Prints console lines matching `p` after a passing run.
    pub fn report(mut self, p: Pattern) -> Self {
        self.reports.push(p);
        self
    }

    /// Expects the Linux heartbeat (see [`Expect::Heartbeat`]).
    pub fn expect_heartbeat(mut self, marker: &str, min_beats: usize, max_gap_ms: u64) -> Self {
        self.expects.push(Expect::Heartbeat {
            marker: marker.into(),
            min_beats,
            max_gap_ms,
        });
        self
    }

    /// After the run, a guest PC of the dump must resolve in the Linux
    /// guest's `System.map`.
    pub fn expect_guest_pc_symbol(mut self) -> Self {
        self.guest_pc_symbol = true;
        self
    }

    /// Boot the image built with `--features test-hooks`.
    pub fn test_hooks(mut self) -> Self {
        self.flavor = Flavor::TestHooks;
        self
    }

    /// Number of CPUs.
    pub fn smp(mut self, n: u32) -> Self {
        self.smp = n;
        self
    }

    /// Memory size, e.g. `"2G"`.
    pub fn mem(mut self, size: &str) -> Self {
        self.mem = size.into();
        self
    }

    /// The command line passed with `-append`.
    pub fn append(mut self, cmdline: &str) -> Self {
        self.append = Some(cmdline.into());
        self
    }

    /// An extra QEMU argument.
    pub fn qemu_arg(mut self, arg: &str) -> Self {
        self.qemu_args.push(arg.into());
        self
    }

    /// Some line must match.
    pub fn expect(mut self, p: Pattern) -> Self {
        self.expects.push(Expect::Line(p));
        self
    }

    /// Exactly `n` lines must match.
    pub fn expect_count(mut self, p: Pattern, n: usize) -> Self {
        self.expects.push(Expect::Count(p, n));
        self
    }

    /// At least `n` lines must match.
    pub fn expect_at_least(mut self, p: Pattern, n: usize) -> Self {
        self.expects.push(Expect::AtLeast(p, n));
        self
    }

    /// Lines matching the patterns must appear in this order.
    pub fn expect_in_order(mut self, ps: impl IntoIterator<Item = Pattern>) -> Self {
        self.expects.push(Expect::InOrder(ps.into_iter().collect()));
        self
    }

    /// No line may match.
    pub fn forbid(mut self, p: Pattern) -> Self {
        self.expects.push(Expect::Forbid(p));
        self
    }

    /// No line may match `p` before the first line matching `marker`.
    pub fn forbid_before(mut self, p: Pattern, marker: Pattern) -> Self {
        self.expects.push(Expect::ForbidBefore(p, marker));
        self
    }

    /// Removes a default forbidden text (e.g. `"unexpected exception"` in a
    /// scenario that provokes one).
    pub fn allow(mut self, text: &str) -> Self {
        self.expects
            .retain(|e| !matches!(e, Expect::Forbid(Pattern::Contains(t)) if t == text));
        self
    }

    /// Types `bytes` into the console once a line (or prompt) matches
    /// `after`. A Ctrl-A (the escape key of QEMU's serial multiplexer) is
    /// sent doubled, so it reaches the guest as itself.
    pub fn send_after(mut self, after: Pattern, bytes: &[u8]) -> Self {
        self.inputs.push(Input {
            after,
            bytes: bytes.to_vec(),
        });
        self
    }

    /// Success means QEMU exits by itself with `code`.
    pub fn exit_code(mut self, code: i32) -> Self {
        self.end = End::Exit(code);
        self
    }

    /// Success means a line matches `p`; QEMU is then killed.
    pub fn until(mut self, p: Pattern) -> Self {
        self.end = End::Line(p);
        self
    }

    /// Overrides [`DEFAULT_TIMEOUT`].
    pub fn timeout_secs(mut self, secs: u64) -> Self {
        self.timeout = Duration::from_secs(secs);
        self
    }

    /// The QEMU configuration for `kernel` (the hypervisor, or the guest
    /// for [`Boot::NativeGuest`] and [`Boot::LinuxNative`]) and `initrd`
    /// (the bundle, or the native Linux' initramfs).
    pub fn qemu_config(&self, kernel: &Path, initrd: Option<&Path>) -> QemuConfig {
        let mut cfg = QemuConfig::new(kernel);
        if let Boot::NativeGuest | Boot::LinuxNative = self.boot {
            cfg.machine = NATIVE_MACHINE.into();
        }
        cfg.initrd = initrd.map(Path::to_path_buf);
        cfg.smp = self.smp;
        cfg.mem = self.mem.clone();
        cfg.append = self.append.clone();
        cfg.extra = self.qemu_args.clone();
        cfg
    }
}

/// Checks the console lines against `expects`; returns one message per
/// unmet expectation.
pub fn check(expects: &[Expect], lines: &[String]) -> Vec<String> {
    let count = |p: &Pattern| lines.iter().filter(|l| p.matches(l)).count();
    let mut failures = Vec::new();
    for e in expects {
        match e {
            Expect::Line(p) => {
                if count(p) == 0 {
                    failures.push(format!("no line matched {p}"));
                }
            }
            Expect::Count(p, n) => {
                let got = count(p);
                if got != *n {
                    failures.push(format!("{got} lines matched {p}, expected exactly {n}"));
                }
            }
            Expect::AtLeast(p, n) => {
                let got = count(p);
                if got < *n {
                    failures.push(format!("{got} lines matched {p}, expected at least {n}"));
                }
            }
            Expect::Forbid(p) => {
                if let Some(l) = lines.iter().find(|l| p.matches(l)) {
                    failures.push(format!("forbidden {p} appeared: {l:?}"));
                }
            }
            Expect::ForbidBefore(p, marker) => {
                let end = lines
                    .iter()
                    .position(|l| marker.matches(l))
                    .unwrap_or(lines.len());
                if let Some(l) = lines[..end].iter().find(|l| p.matches(l)) {
                    failures.push(format!("forbidden {p} appeared before {marker}: {l:?}"));
                }
            }
            Expect::Heartbeat {
                marker,
                min_beats,
                max_gap_ms,
            } => match heartbeat_stats(marker, lines) {
                Err(e) => failures.push(e),
                Ok((beats, gap)) => {
                    if beats < *min_beats {
                        failures.push(format!("{beats} heartbeats, expected at least {min_beats}"));
                    }
                    if gap > *max_gap_ms {
                        failures.push(format!(
                            "a heartbeat gap of {gap} ms of guest time, more than the bound of {max_gap_ms} ms"
                        ));
                    }
                }
            },
            Expect::InOrder(ps) => {
                let mut from = 0;
                for (i, p) in ps.iter().enumerate() {
                    match lines[from..].iter().position(|l| p.matches(l)) {
                        Some(at) => from += at + 1,
                        None => {
                            let after = match i {
                                0 => String::new(),
                                _ => format!(" after the line matching {}", ps[i - 1]),
                            };
                            failures.push(format!("no line matched {p}{after}"));
                            break;
                        }
                    }
                }
            }
        }
    }
    failures
}

/// Splits a byte stream into lines, dropping `\r`.
#[derive(Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Adds bytes; returns the lines they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in bytes {
            match b {
                b'\r' => {}
                b'\n' => {
                    lines.push(String::from_utf8_lossy(&self.partial).into_owned());
                    self.partial.clear();
                }
                _ => self.partial.push(b),
            }
        }
        lines
    }

    /// The unfinished last line (e.g. a prompt).
    pub fn partial(&self) -> String {
        String::from_utf8_lossy(&self.partial).into_owned()
    }

    /// Ends the stream: the unfinished line, if any.
    pub fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| {
            let l = self.partial();
            self.partial.clear();
            l
        })
    }
}

/// The result of one scenario run.
pub struct Outcome {
    /// Empty if the scenario passed.
    pub failures: Vec<String>,
    /// The console (stdout) lines, `\r` stripped.
    pub console: Vec<String>,
    /// Everything QEMU printed, stderr lines marked, for failure reports.
    pub log: Vec<String>,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Outcome {
    /// Whether the scenario passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

enum Event {
    Out(Vec<u8>),
    Err(Vec<u8>),
    OutClosed,
    ErrClosed,
}

fn reader(mut src: impl Read + Send + 'static, tx: Sender<Event>, stdout: bool) {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match src.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = buf[..n].to_vec();
                    let ev = if stdout {
                        Event::Out(chunk)
                    } else {
                        Event::Err(chunk)
                    };
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(if stdout {
            Event::OutClosed
        } else {
            Event::ErrClosed
        });
    });
}

/// Kills the child when dropped, so no QEMU outlives its scenario.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `scenario` by spawning `cmd` (QEMU, or anything that behaves like
/// it) and watching its output.
pub fn run(scenario: &Scenario, mut cmd: Command) -> Outcome {
    let start = Instant::now();
    let mut out = Outcome {
        failures: Vec::new(),
        console: Vec::new(),
        log: Vec::new(),
        elapsed: Duration::ZERO,
    };
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            out.failures.push(format!(
                "cannot start {}: {e}",
                cmd.get_program().to_string_lossy()
            ));
            return out;
        }
    };
    let mut child = ChildGuard(child);
    let (tx, rx) = mpsc::channel();
    reader(child.0.stdout.take().expect("piped"), tx.clone(), true);
    reader(child.0.stderr.take().expect("piped"), tx, false);
    let stdin = child.0.stdin.take();

    let live = watch(scenario, &rx, stdin, start, &mut out);
    // Stop QEMU unless it already exited by itself.
    let status = match live {
        Live::Exited => child.0.wait().ok(),
        _ => {
            let _ = child.0.kill();
            let _ = child.0.wait();
            None
        }
    };
    match (&scenario.end, live, status) {
        (End::Line(_), Live::EndLineSeen, _) => {}
        (End::Line(p), Live::Exited, status) => out.failures.push(format!(
            "QEMU exited ({}) before a line matched {p}",
            describe_status(status)
        )),
        (End::Exit(code), Live::Exited, status) => {
            if status.and_then(|s| s.code()) != Some(*code) {
                out.failures.push(format!(
                    "QEMU exited ({}), expected exit code {code}",
                    describe_status(status)
                ));
            }
        }
        (_, Live::TimedOut, _) => out.failures.push(format!(
            "timed out after {}s (hang?)",
            scenario.timeout.as_secs_f32()
        )),
        (_, Live::Forbidden, _) => {} // reported by `check` below
        (End::Exit(_), Live::EndLineSeen, _) => unreachable!("no end line for End::Exit"),
    }
    out.failures.extend(check(&scenario.expects, &out.console));
    out.elapsed = start.elapsed();
    out
}

fn describe_status(status: Option<ExitStatus>) -> String {
    match status {
        Some(s) => match s.code() {
            Some(c) => format!("exit code {c}"),
            None => s.to_string(),
        },
        None => "status unknown".into(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Live {
    Exited,
    EndLineSeen,
    TimedOut,
    Forbidden,
}

/// The live part of a run: reads events until the end condition, the
/// timeout, or a forbidden line (plus a grace period).
fn watch(
    scenario: &Scenario,
    rx: &Receiver<Event>,
    mut stdin: Option<ChildStdin>,
    start: Instant,
    out: &mut Outcome,
) -> Live {
    let deadline = start + scenario.timeout;
    let mut stop_at: Option<Instant> = None;
    let mut next_input = 0;
    let (mut out_split, mut err_split) = (LineSplitter::default(), LineSplitter::default());
    let (mut out_open, mut err_open) = (true, true);
    let forbidden: Vec<&Pattern> = scenario
        .expects
        .iter()
        .filter_map(|e| match e {
            Expect::Forbid(p) => Some(p),
            _ => None,
        })
        .collect();

    while out_open || err_open {
        let limit = stop_at.map_or(deadline, |s| s.min(deadline));
        let now = Instant::now();
        if now >= limit {
            return if stop_at.is_some() {
                Live::Forbidden
            } else {
                Live::TimedOut
            };
        }
        let ev = match rx.recv_timeout(limit - now) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let new_lines = match ev {
            Event::Out(bytes) => out_split.push(&bytes),
            Event::Err(bytes) => {
                for l in err_split.push(&bytes) {
                    out.log.push(format!("[qemu stderr] {l}"));
                }
                continue;
            }
            Event::OutClosed => {
                out_open = false;
                out_split.finish().into_iter().collect()
            }
            Event::ErrClosed => {
                err_open = false;
                if let Some(l) = err_split.finish() {
                    out.log.push(format!("[qemu stderr] {l}"));
                }
                continue;
            }
        };
        for line in new_lines {
            out.log.push(line.clone());
            out.console.push(line.clone());
            if stop_at.is_none() && forbidden.iter().any(|p| p.matches(&line)) {
                stop_at = Some(Instant::now() + GRACE_AFTER_FORBIDDEN);
            }
            send_inputs(scenario, &mut next_input, &line, &mut stdin, out);
            if let End::Line(p) = &scenario.end {
                if p.matches(&line) {
                    return Live::EndLineSeen;
                }
            }
        }
        // A prompt without a newline can trigger input too.
        let partial = out_split.partial();
        if !partial.is_empty() {
            send_inputs(scenario, &mut next_input, &partial, &mut stdin, out);
        }
    }
    Live::Exited
}

fn send_inputs(
    scenario: &Scenario,
    next: &mut usize,
    line: &str,
    stdin: &mut Option<ChildStdin>,
    out: &mut Outcome,
) {
    while let Some(input) = scenario.inputs.get(*next) {
        if !input.after.matches(line) {
            return;
        }
        *next += 1;
        let bytes = escape_ctrl_a(&input.bytes);
        out.log.push(format!(
            "[xtask typed {:?}]",
            String::from_utf8_lossy(&input.bytes)
        ));
        if let Some(w) = stdin.as_mut() {
            if w.write_all(&bytes).and_then(|()| w.flush()).is_err() {
                out.failures.push(format!(
                    "cannot type into the console after {}",
                    input.after
                ));
            }
        }
    }
}

/// QEMU's serial multiplexer (`mux=on`, see `qemu::DEVICE_ARGS`) treats
/// Ctrl-A as its escape key; Ctrl-A Ctrl-A sends one Ctrl-A to the guest.
fn escape_ctrl_a(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        out.push(b);
        if b == 0x01 {
            out.push(0x01);
        }
    }
    out
}

#[cfg(test)]
mod heartbeat_tests {
    use super::*;

    fn lines(beats: &[(u64, u64)]) -> Vec<String> {
        beats
            .iter()
            .map(|(n, c)| format!("[linux] nmv-init: heartbeat {n} {c:016x} 0000000003b9aca0"))
            .collect()
    }

    #[test]
    fn measures_gaps_in_guest_time() {
        // 62.5 MHz: 6_250_000 ticks = 100 ms.
        let l = lines(&[(0, 0), (1, 6_250_000), (2, 31_250_000)]);
        assert_eq!(heartbeat_stats("nmv-init: heartbeat ", &l), Ok((3, 400)));
        let e = vec![Expect::Heartbeat {
            marker: "nmv-init: heartbeat ".into(),
            min_beats: 3,
            max_gap_ms: 300,
        }];
        assert_eq!(check(&e, &l).len(), 1);
        let e = vec![Expect::Heartbeat {
            marker: "nmv-init: heartbeat ".into(),
            min_beats: 4,
            max_gap_ms: 500,
        }];
        assert_eq!(check(&e, &l).len(), 1);
    }

    #[test]
    fn holes_and_garbage_fail() {
        let m = "nmv-init: heartbeat ";
        assert!(heartbeat_stats(m, &lines(&[(0, 0), (2, 10)])).is_err());
        assert!(heartbeat_stats(m, &lines(&[(0, 10), (1, 5)])).is_err());
        assert!(heartbeat_stats(m, &["x nmv-init: heartbeat zz 1".to_string()]).is_err());
        assert_eq!(heartbeat_stats(m, &["unrelated".to_string()]), Ok((0, 0)));
    }

    #[test]
    fn a_torn_line_counts_and_widens_the_gap() {
        let m = "nmv-init: heartbeat ";
        let mut l = lines(&[(0, 0), (1, 6_250_000), (2, 12_500_000)]);
        l[1] = "[linux] nmv-init: heartbeat 1 000000nmivisor: console input goes to vm b".into();
        l.insert(2, "001dc03302 0000000003b9aca0".into());
        // 0 -> 2 is 200 ms.
        assert_eq!(heartbeat_stats(m, &l), Ok((3, 200)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn splitter_strips_cr_and_keeps_partial() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"ab\r\ncd"), vec!["ab"]);
        assert_eq!(s.partial(), "cd");
        assert_eq!(s.push(b"e\r\n\r\nf"), vec!["cde", ""]);
        assert_eq!(s.finish().as_deref(), Some("f"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn expectations() {
        let log =
            lines("nmivisor v0.1.0\ncpu 0 online\ncpu 1 online\ncpu 1 online\nall 2 CPUs online");
        let ok = [
            Expect::Line(regex("^nmivisor v")),
            Expect::Count(regex(r"^cpu 0 online$"), 1),
            Expect::AtLeast(contains("online"), 3),
            Expect::Forbid(contains("panicked")),
            Expect::InOrder(vec![
                contains("nmivisor"),
                contains("cpu 1"),
                contains("all 2"),
            ]),
        ];
        assert!(check(&ok, &log).is_empty(), "{:?}", check(&ok, &log));

        let bad = [
            Expect::Line(contains("missing")),
            Expect::Count(regex(r"^cpu 1 online$"), 1),
            Expect::AtLeast(contains("all"), 2),
            Expect::Forbid(contains("cpu 0")),
            Expect::InOrder(vec![contains("all 2"), contains("nmivisor")]),
        ];
        let failures = check(&bad, &log);
        assert_eq!(failures.len(), 5, "{failures:?}");
        assert!(failures[1].contains("2 lines matched"));
        assert!(failures[4].contains("after the line matching \"all 2\""));
    }

    #[test]
    fn allow_removes_a_default_forbid() {
        let s = Scenario::new("x").allow("unexpected exception");
        let forbids: Vec<String> = s
            .expects
            .iter()
            .filter_map(|e| match e {
                Expect::Forbid(p) => Some(p.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(forbids, ["\"panicked\""]);
    }

    #[test]
    fn boot_kinds_pick_the_machine() {
        let hv = Scenario::new("hv").smp(2);
        let args = hv.qemu_config(Path::new("hv.bin"), None).args().join(" ");
        assert!(machine_args(&args).starts_with("-machine virt,virtualization=on,gic-version=3 "));
        assert!(!hv.needs_guest());

        let native = Scenario::new("native").native_guest().smp(4);
        assert!(native.needs_guest());
        assert_eq!(
            machine_args(
                &native
                    .qemu_config(Path::new("g.bin"), None)
                    .args()
                    .join(" ")
            ),
            "-machine virt,gic-version=3 -cpu max -smp 4 -m 256M -kernel g.bin"
        );

        let bundled = Scenario::new("b").bundle(BundleSpec::new().vm("a", "0", "128M"));
        assert!(bundled.needs_guest());
        let args = bundled
            .qemu_config(Path::new("hv.bin"), Some(Path::new("b.cpio")))
            .args()
            .join(" ");
        assert!(
            args.contains("virtualization=on") && args.ends_with("-kernel hv.bin -initrd b.cpio")
        );
    }

    /// A command line without the device arguments every run starts with
    /// (checked on their own in `qemu::tests`).
    fn machine_args(args: &str) -> &str {
        let devices = crate::qemu::DEVICE_ARGS.join(" ");
        args.strip_prefix(devices.as_str())
            .map(str::trim_start)
            .unwrap_or_else(|| panic!("{args:?} does not start with the device arguments"))
    }

    #[test]
    fn linux_boots() {
        let native = Scenario::new("n").linux_native("nmv.test=boot");
        assert!(native.needs_linux() && !native.needs_build() && !native.needs_guest());
        let args = native
            .qemu_config(Path::new("Image"), Some(Path::new("initramfs.cpio.gz")))
            .args()
            .join(" ");
        assert_eq!(
            machine_args(&args),
            "-machine virt,gic-version=3 -cpu max -smp 4 -m 512M -kernel Image \
             -initrd initramfs.cpio.gz -append 'console=ttyAMA0 irqchip.gicv3_pseudo_nmi=1 nmv.test=boot'"
                .replace('\'', "")
        );

        let vm = Scenario::new("v").linux_vm("nmv.test=boot");
        assert!(vm.needs_linux() && vm.needs_build() && !vm.needs_guest());
        match &vm.boot {
            Boot::LinuxVm(cmdline) => assert_eq!(
                cmdline,
                "console=ttyAMA0 irqchip.gicv3_pseudo_nmi=1 nmv.test=boot"
            ),
            other => panic!("{other:?}"),
        }
        let args = vm
            .qemu_config(Path::new("hv.bin"), Some(Path::new("v.cpio")))
            .args()
            .join(" ");
        assert!(args.contains("virtualization=on") && args.contains("-smp 4 -m 2G"));
        assert!(!args.contains("-append"), "{args}");
        let forbidden = vm
            .expects
            .iter()
            .filter(|e| matches!(e, Expect::Forbid(_)))
            .count();
        assert_eq!(forbidden, DEFAULT_FORBIDDEN.len() + 4);
    }

    #[test]
    fn ctrl_a_is_doubled() {
        assert_eq!(escape_ctrl_a(b"a\x01b"), b"a\x01\x01b");
    }

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn run_passes_on_exit_code() {
        let s = Scenario::new("fake").expect(contains("hello"));
        let o = run(&s, sh("printf 'hello\\r\\nworld\\r\\n'; exit 0"));
        assert!(o.passed(), "{:?}", o.failures);
        assert_eq!(o.console, ["hello", "world"]);
    }

    #[test]
    fn run_reports_wrong_exit_code_and_stderr() {
        let s = Scenario::new("fake");
        let o = run(&s, sh("echo oops >&2; exit 3"));
        assert_eq!(
            o.failures,
            ["QEMU exited (exit code 3), expected exit code 0"]
        );
        assert_eq!(o.log, ["[qemu stderr] oops"]);
    }

    #[test]
    fn run_times_out_on_silence() {
        let s = Scenario::new("hang").timeout_secs(1);
        let t = Instant::now();
        let o = run(&s, sh("exec sleep 30"));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(
            o.failures[0].starts_with("timed out after 1s"),
            "{:?}",
            o.failures
        );
    }

    #[test]
    fn run_stops_at_end_line_and_types_input() {
        let s = Scenario::new("io")
            .send_after(contains("prompt>"), b"xyz\n")
            .until(regex("got xyz$"))
            .timeout_secs(5);
        let o = run(
            &s,
            sh("printf 'prompt> '; read v; echo \"got $v\"; exec sleep 30"),
        );
        assert!(o.passed(), "{:?} {:?}", o.failures, o.log);
    }

    #[test]
    fn run_stops_soon_after_forbidden_line() {
        let s = Scenario::new("boom").timeout_secs(20);
        let t = Instant::now();
        let o = run(&s, sh("echo 'panicked at x'; exec sleep 30"));
        assert!(t.elapsed() < Duration::from_secs(10));
        assert!(
            o.failures.iter().any(|f| f.contains("forbidden")),
            "{:?}",
            o.failures
        );
    }
}
