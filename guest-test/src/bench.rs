//! Bench mode: with the word `guest-test.bench` in /chosen/bootargs the
//! boot CPU runs micro-benchmarks instead of the test cases, prints one
//! machine-readable line per benchmark and powers off.
//!
//! ```text
//! bench NAME ITERATIONS TICKS
//! ```
//!
//! TICKS is the virtual counter (CNTVCT_EL0) difference across all
//! ITERATIONS operations, after [`WARMUP`] untimed ones. A benchmark that
//! cannot run prints `bench NAME skipped: why` (not enough CPUs) or
//! `bench NAME FAILED: why`; the run ends with
//! `bench end: N ok, M skipped, K failed`.
//!
//! After each `bench` line, `bench-batches NAME B T1 ... TB` gives the
//! ticks of each of the B batches the timed run was split into (see
//! [`BATCHES`]): a rare slow operation shows as one slow batch.
//!
//! `guest-test.bench-iterations=N` sets ITERATIONS (default
//! [`DEFAULT_ITERATIONS`], at most [`MAX_ITERATIONS`]).
//!
//! | benchmark | one operation |
//! |---|---|
//! | `mmio-gicd-read` | a 32-bit read of GICD_TYPER |
//! | `mmio-uart-read` | a 32-bit read of the PL011's UARTFR |
//! | `sgi-self` | SGI 0 to this CPU through ICC_SGI1R_EL1, taken (IAR, handler, EOI) |
//! | `timer-irq` | the virtual timer armed with CVAL = 0 (fires at once), PPI 27 taken, the handler disarms it |
//! | `hvc-psci-version` | PSCI_VERSION through the PSCI conduit |
//! | `sgi-pingpong` | SGI 1 from CPU 0 to CPU 1, whose handler sends SGI 2 back; CPU 0 waits for it (needs 2 CPUs) |
//! | `nmi-self` | SGI 3 at NMI priority to this CPU while its PMR masks normal interrupts, taken |
//! | `nmi-cross` | SGI 3 at NMI priority from CPU 0 to CPU 1, which spins (with YIELD) with its PMR masking normal interrupts; CPU 0 waits until CPU 1's handler counted it (needs 2 CPUs) |
//!
//! The interrupts go through the usual driver ([`crate::gic`]) and
//! handler ([`crate::irq::handle`], with [`hook`]), so they cost what an
//! interrupt costs in the cases. The single-CPU benchmarks run first,
//! while the other CPUs are still off; `sgi-pingpong` then starts CPU 1
//! with PSCI CPU_ON. CPU 1 waits for its pings in WFI (with PSTATE.I set
//! across the check and the WFI, so no wake-up is lost); CPU 0 spins with
//! YIELD, which under QEMU's single-threaded TCG hands the host thread to
//! CPU 1.
//!
//! Every wait is bounded by the virtual counter: a benchmark gets
//! [`BUDGET_BASE_MS`] plus [`BUDGET_PER_OP_MS`] per operation.
//!
//! Under QEMU `-icount shift=0,sleep=off` the counter is a function of the
//! instructions executed (one tick per 16, at 62.5 MHz) by *every* CPU of
//! the machine: the figures include whatever the other (physical) CPUs
//! run meanwhile, which is nothing while they sleep in WFI or are off.
// As in `cases`: no heap, so a failure reason is a line returned by value.
#![allow(clippy::result_large_err)]

use crate::cases::{irq_setup, Reason};
use crate::gic::{self, PMR_OFF, PMR_ON, PRIO_IRQ, PRIO_NMI};
use crate::secondary::{self, Job, Outcome as JobOutcome};
use crate::topology::MAX_CPUS;
use crate::{cpu, dt, irq, line, println, psci, timer};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// The boot argument that selects bench mode.
pub const BENCH_ARG: &str = "guest-test.bench";
/// The boot argument that sets the iterations: `PREFIX` + a decimal count.
pub const ITERATIONS_PREFIX: &str = "guest-test.bench-iterations=";
/// The boot argument that restricts the run to some benchmarks:
/// `PREFIX` + comma-separated names (`cargo xtask bench --profile`).
pub const ONLY_PREFIX: &str = "guest-test.bench-only=";
/// Iterations when the boot arguments do not say.
pub const DEFAULT_ITERATIONS: u32 = 1000;
/// Most iterations: [`irq::handle`] disables an interrupt after 100 000
/// log events (two per interrupt) since the log was last reset.
pub const MAX_ITERATIONS: u32 = 40_000;
/// Untimed operations before each timed run.
pub const WARMUP: u32 = 16;

/// The time a benchmark may take: this...
const BUDGET_BASE_MS: u64 = 100;
/// ... plus this per operation (warm-up included). An operation costs well
/// under 1/100 of it (about 100 000 instructions at most).
const BUDGET_PER_OP_MS: u64 = 1;

/// SGI of `sgi-self`.
const SELF_SGI: u32 = 0;
/// SGI of `sgi-pingpong` from CPU 0 to CPU 1 ...
const PING_SGI: u32 = 1;
/// ... and back.
const PONG_SGI: u32 = 2;
/// SGI of `nmi-self` and `nmi-cross`, at [`PRIO_NMI`].
const NMI_SGI: u32 = 3;
/// The CPU that answers the pings.
const PONG_CPU: usize = 1;
/// How long CPU 1 may take to start, to get ready, and to finish its job.
const CPU_WAIT_MS: u64 = 2000;

/// TAKEN[cpu][intid]: private interrupts taken since the benchmark began.
static TAKEN: [[AtomicU32; gic::PRIVATE as usize]; MAX_CPUS] =
    [const { [const { AtomicU32::new(0) }; gic::PRIVATE as usize] }; MAX_CPUS];
/// CPU 1 is set up and waits for pings.
static PONG_READY: AtomicBool = AtomicBool::new(false);
/// CPU 1 stops waiting for pings.
static PONG_STOP: AtomicBool = AtomicBool::new(false);

/// The IRQ hook of every benchmark: counts private interrupts per CPU,
/// turns the virtual timer off (its PPI is a level), and on CPU 1 answers
/// a ping with a pong to CPU 0.
fn hook(intid: u32) {
    let me = cpu::index();
    if intid == timer::VTIMER_INTID {
        timer::disarm();
    }
    if me == PONG_CPU && intid == PING_SGI {
        gic::send_sgi(PONG_SGI, dt::platform().cpus.mpidr(0));
    }
    if let Some(count) = TAKEN[me].get(intid as usize) {
        count.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one benchmark measured, or why it did not.
enum Measured {
    /// Virtual counter ticks for all the iterations.
    Ticks(u64),
    Skipped(&'static str),
    Failed(Reason),
}

struct Bench {
    name: &'static str,
    run: fn(u32) -> Measured,
}

static BENCHES: &[Bench] = &[
    Bench {
        name: "mmio-gicd-read",
        run: mmio_gicd_read,
    },
    Bench {
        name: "mmio-uart-read",
        run: mmio_uart_read,
    },
    Bench {
        name: "sgi-self",
        run: sgi_self,
    },
    Bench {
        name: "timer-irq",
        run: timer_irq,
    },
    Bench {
        name: "hvc-psci-version",
        run: hvc_psci_version,
    },
    Bench {
        name: "nmi-self",
        run: nmi_self,
    },
    // Last: it starts CPU 1, which the others want off.
    Bench {
        name: "sgi-pingpong",
        run: sgi_pingpong,
    },
    Bench {
        name: "nmi-cross",
        run: nmi_cross,
    },
];

/// The iterations the boot arguments ask for, within 1..=[`MAX_ITERATIONS`].
fn iterations(p: &dt::Platform) -> u32 {
    let asked = p
        .bootargs
        .unwrap_or("")
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(ITERATIONS_PREFIX))
        .and_then(|n| n.parse::<u32>().ok());
    asked.unwrap_or(DEFAULT_ITERATIONS).clamp(1, MAX_ITERATIONS)
}

/// Whether the boot arguments select benchmark `name` (all of them
/// without [`ONLY_PREFIX`]).
fn selected(p: &dt::Platform, name: &str) -> bool {
    let mut only = p
        .bootargs
        .unwrap_or("")
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix(ONLY_PREFIX))
        .peekable();
    if only.peek().is_none() {
        return true;
    }
    only.any(|list| list.split(',').any(|n| n == name))
}

/// Runs every benchmark, prints the lines and powers off.
pub fn run() -> ! {
    let p = dt::platform();
    let n = iterations(p);
    println!(
        "guest-test: bench mode, {n} iterations (+{WARMUP} warm-up), counter {} Hz, PSCI over {}",
        cpu::frequency(),
        p.conduit.name()
    );
    irq::set_hook(Some(hook));
    let (mut ok, mut skipped, mut failed) = (0, 0, 0);
    for b in BENCHES {
        if !selected(p, b.name) {
            continue;
        }
        match (b.run)(n) {
            Measured::Ticks(t) => {
                ok += 1;
                println!("bench {} {n} {t}", b.name);
                print_batches(b.name);
            }
            Measured::Skipped(why) => {
                skipped += 1;
                println!("bench {} skipped: {why}", b.name);
            }
            Measured::Failed(why) => {
                failed += 1;
                println!("bench {} FAILED: {}", b.name, why.as_str());
            }
        }
        if let Some(c) = crate::runner::secondary_fault() {
            println!("guest-test: cpu {c} took an unexpected exception, stopping");
            break;
        }
    }
    irq::set_hook(None);
    println!("bench end: {ok} ok, {skipped} skipped, {failed} failed");
    psci::system_off()
}

/// The counter value by which `ops` operations must be done.
fn deadline(ops: u32) -> u64 {
    cpu::counter() + cpu::ticks_from_ms(BUDGET_BASE_MS + BUDGET_PER_OP_MS * ops as u64)
}

/// Timed runs are split into this many batches (fewer if there are
/// fewer iterations), each timed on its own: an operation that hit a rare
/// slow path (a stall) shows as one slow batch.
pub const BATCHES: usize = 8;

/// Ticks per batch of the last timed run, and how many batches it had.
struct Batches {
    ticks: [u64; BATCHES],
    len: usize,
}

static LAST_BATCHES: spin::Mutex<Batches> = spin::Mutex::new(Batches {
    ticks: [0; BATCHES],
    len: 0,
});

/// Operations in batch `b` of `n` split into `batches`.
fn batch_len(n: u32, batches: usize, b: usize) -> u32 {
    let (q, r) = (n / batches as u32, n % batches as u32);
    q + u32::from((b as u32) < r)
}

/// Runs `op` [`WARMUP`] times, then `n` times timed, in [`BATCHES`]
/// batches (kept in [`LAST_BATCHES`]). `op(deadline)` returns false when
/// it waited past `deadline`.
fn timed(n: u32, mut op: impl FnMut(u64) -> bool) -> Result<u64, Reason> {
    let limit = deadline(WARMUP);
    for i in 0..WARMUP {
        if !op(limit) {
            return Err(line::format(format_args!(
                "warm-up operation {i} timed out"
            )));
        }
    }
    irq::reset_log(cpu::index());
    let batches = BATCHES.min(n as usize);
    let mut ticks = [0u64; BATCHES];
    let limit = deadline(n);
    let start = cpu::counter();
    let mut last = start;
    let mut i = 0;
    for (b, t) in ticks.iter_mut().enumerate().take(batches) {
        for _ in 0..batch_len(n, batches, b) {
            if !op(limit) {
                return Err(line::format(format_args!(
                    "operation {i} of {n} timed out ({} ms budget)",
                    BUDGET_BASE_MS + BUDGET_PER_OP_MS * n as u64
                )));
            }
            i += 1;
        }
        let now = cpu::counter();
        *t = now - last;
        last = now;
    }
    *LAST_BATCHES.lock() = Batches {
        ticks,
        len: batches,
    };
    Ok(last - start)
}

/// Prints `bench-batches NAME BATCHES T1 ... TB`: the ticks of each batch
/// of the last timed run (batch k has n / B operations, one more for the
/// first n % B batches).
fn print_batches(name: &str) {
    let b = LAST_BATCHES.lock();
    let mut l = crate::line::Line::<{ crate::console::LINE_MAX }>::new();
    let _ = core::fmt::Write::write_fmt(&mut l, format_args!("bench-batches {name} {}", b.len));
    for t in &b.ticks[..b.len] {
        let _ = core::fmt::Write::write_fmt(&mut l, format_args!(" {t}"));
    }
    println!("{}", l.as_str());
}

fn measured(r: Result<u64, Reason>) -> Measured {
    match r {
        Ok(t) => Measured::Ticks(t),
        Err(why) => Measured::Failed(why),
    }
}

/// Spins until `count` differs from `before`, or the counter passes
/// `limit`; `relax` yields the host thread between checks.
fn wait_change(count: &AtomicU32, before: u32, limit: u64, relax: bool) -> bool {
    while count.load(Ordering::Relaxed) == before {
        if cpu::counter() > limit {
            return false;
        }
        if relax {
            cpu::relax();
        }
    }
    true
}

fn mmio_gicd_read(n: u32) -> Measured {
    let g = match gic::get() {
        Ok(g) => g,
        Err(why) => return Measured::Skipped(why),
    };
    let typer = g.gicd + gic::GICD_TYPER;
    let first = gic::rd32(typer);
    let mut same = true;
    let r = timed(n, |_| {
        same &= gic::rd32(typer) == first;
        true
    });
    if !same {
        return Measured::Failed(line::format(format_args!(
            "GICD_TYPER changed between reads (first {first:#x})"
        )));
    }
    measured(r)
}

fn mmio_uart_read(n: u32) -> Measured {
    let crate::console::Backend::Pl011(base) = crate::console::backend() else {
        return Measured::Skipped("no PL011 console");
    };
    let fr = base + crate::console::UARTFR;
    let r = timed(n, |_| {
        // The flags change with the FIFOs; only the access is timed.
        let _ = gic::rd32(fr);
        true
    });
    measured(r)
}

/// The GIC set up on this CPU with `intids` enabled at their priorities
/// (INTID, priority), PMR "on", and this CPU's counts cleared. PSTATE.I
/// stays set.
fn interrupts_on(intids: &[(u32, u8)]) -> Result<gic::Gic, &'static str> {
    let g = irq_setup()?;
    for &(intid, prio) in intids {
        let i = g.irq(intid);
        i.set_priority(prio);
        i.enable();
    }
    for c in &TAKEN[cpu::index()] {
        c.store(0, Ordering::Relaxed);
    }
    gic::set_pmr(PMR_ON);
    Ok(g)
}

fn setup_failed(why: &str) -> Measured {
    Measured::Failed(line::format(format_args!("GIC setup failed: {why}")))
}

fn interrupts_off(g: &gic::Gic, intids: &[(u32, u8)]) {
    irq::disable();
    for &(intid, _) in intids {
        let i = g.irq(intid);
        i.disable();
        i.clear_pending();
    }
}

fn sgi_self(n: u32) -> Measured {
    let used = [(SELF_SGI, PRIO_IRQ)];
    let g = match interrupts_on(&used) {
        Ok(g) => g,
        Err(why) => return setup_failed(why),
    };
    let me = dt::platform().cpus.mpidr(cpu::index());
    let taken = &TAKEN[cpu::index()][SELF_SGI as usize];
    irq::enable();
    let r = timed(n, |limit| {
        let before = taken.load(Ordering::Relaxed);
        gic::send_sgi(SELF_SGI, me);
        wait_change(taken, before, limit, false)
    });
    interrupts_off(&g, &used);
    measured(r)
}

fn nmi_self(n: u32) -> Measured {
    let used = [(NMI_SGI, PRIO_NMI)];
    let g = match interrupts_on(&used) {
        Ok(g) => g,
        Err(why) => return setup_failed(why),
    };
    // Normal interrupts masked the pseudo-NMI way: by priority, with
    // PSTATE.I clear.
    gic::set_pmr(PMR_OFF);
    let me = dt::platform().cpus.mpidr(cpu::index());
    let taken = &TAKEN[cpu::index()][NMI_SGI as usize];
    irq::enable();
    let r = timed(n, |limit| {
        let before = taken.load(Ordering::Relaxed);
        gic::send_sgi(NMI_SGI, me);
        wait_change(taken, before, limit, false)
    });
    interrupts_off(&g, &used);
    gic::set_pmr(PMR_ON);
    measured(r)
}

fn timer_irq(n: u32) -> Measured {
    let used = [(timer::VTIMER_INTID, timer::PRIORITY)];
    let g = match interrupts_on(&used) {
        Ok(g) => g,
        Err(why) => return setup_failed(why),
    };
    let taken = &TAKEN[cpu::index()][timer::VTIMER_INTID as usize];
    irq::enable();
    let r = timed(n, |limit| {
        let before = taken.load(Ordering::Relaxed);
        // CVAL 0 is in the past: the timer condition holds at once.
        timer::arm_at(0);
        wait_change(taken, before, limit, false)
    });
    timer::disarm();
    interrupts_off(&g, &used);
    measured(r)
}

fn hvc_psci_version(n: u32) -> Measured {
    let mut bad = None;
    let r = timed(n, |_| {
        let v = psci::version();
        if v < 0x1_0000 {
            bad = Some(v);
        }
        true
    });
    if let Some(v) = bad {
        return Measured::Failed(line::format(format_args!("PSCI_VERSION returned {v:#x}")));
    }
    measured(r)
}

fn sgi_pingpong(n: u32) -> Measured {
    let cpus = dt::platform().cpus;
    if cpus.count() <= PONG_CPU {
        return Measured::Skipped("needs 2 CPUs");
    }
    if secondary::checkins(PONG_CPU) == 0 {
        if let Err(why) = crate::cases::psci::start(PONG_CPU) {
            return Measured::Failed(why);
        }
    }
    let used = [(PONG_SGI, PRIO_IRQ)];
    let g = match interrupts_on(&used) {
        Ok(g) => g,
        Err(why) => return setup_failed(why),
    };
    PONG_READY.store(false, Ordering::Relaxed);
    PONG_STOP.store(false, Ordering::Relaxed);
    let ticket = secondary::post(PONG_CPU, Job::BenchPong);
    let ready = cpu::wait_ms(CPU_WAIT_MS, || {
        PONG_READY.load(Ordering::Acquire) || ticket.is_done()
    });
    let r = if !ready || !PONG_READY.load(Ordering::Acquire) {
        Err(line::format(format_args!(
            "cpu {PONG_CPU} did not get ready within {CPU_WAIT_MS} ms"
        )))
    } else {
        let to = cpus.mpidr(PONG_CPU);
        let pongs = &TAKEN[cpu::index()][PONG_SGI as usize];
        irq::enable();
        let r = timed(n, |limit| {
            let before = pongs.load(Ordering::Relaxed);
            gic::send_sgi(PING_SGI, to);
            wait_change(pongs, before, limit, true)
        });
        irq::disable();
        r
    };
    // Stop CPU 1: the flag, then one more ping to end its WFI.
    PONG_STOP.store(true, Ordering::Release);
    gic::send_sgi(PING_SGI, cpus.mpidr(PONG_CPU));
    let out = ticket.wait(CPU_WAIT_MS);
    interrupts_off(&g, &used);
    let r = r.and_then(|t| match out {
        Some(JobOutcome::OK) => Ok(t),
        Some(o) if o.code == crate::cases::SETUP_FAILED => {
            Err(crate::cases::explain_setup(PONG_CPU))
        }
        Some(o) => Err(line::format(format_args!(
            "cpu {PONG_CPU}: job failed with code {} ({:#x})",
            o.code, o.detail
        ))),
        None => {
            ticket.cancel();
            Err(line::format(format_args!(
                "cpu {PONG_CPU} did not stop within {CPU_WAIT_MS} ms"
            )))
        }
    });
    measured(r)
}

fn nmi_cross(n: u32) -> Measured {
    let cpus = dt::platform().cpus;
    if cpus.count() <= PONG_CPU {
        return Measured::Skipped("needs 2 CPUs");
    }
    if secondary::checkins(PONG_CPU) == 0 {
        if let Err(why) = crate::cases::psci::start(PONG_CPU) {
            return Measured::Failed(why);
        }
    }
    PONG_READY.store(false, Ordering::Relaxed);
    PONG_STOP.store(false, Ordering::Relaxed);
    let ticket = secondary::post(PONG_CPU, Job::BenchNmiSpin);
    let ready = cpu::wait_ms(CPU_WAIT_MS, || {
        PONG_READY.load(Ordering::Acquire) || ticket.is_done()
    });
    let to = cpus.mpidr(PONG_CPU);
    let r = if !ready || !PONG_READY.load(Ordering::Acquire) {
        Err(line::format(format_args!(
            "cpu {PONG_CPU} did not get ready within {CPU_WAIT_MS} ms"
        )))
    } else {
        let taken = &TAKEN[PONG_CPU][NMI_SGI as usize];
        timed(n, |limit| {
            let before = taken.load(Ordering::Relaxed);
            gic::send_sgi(NMI_SGI, to);
            wait_change(taken, before, limit, true)
        })
    };
    PONG_STOP.store(true, Ordering::Release);
    let out = ticket.wait(CPU_WAIT_MS);
    let r = r.and_then(|t| match out {
        Some(JobOutcome::OK) => Ok(t),
        Some(o) if o.code == crate::cases::SETUP_FAILED => {
            Err(crate::cases::explain_setup(PONG_CPU))
        }
        Some(o) => Err(line::format(format_args!(
            "cpu {PONG_CPU}: job failed with code {} ({:#x})",
            o.code, o.detail
        ))),
        None => {
            ticket.cancel();
            Err(line::format(format_args!(
                "cpu {PONG_CPU} did not stop within {CPU_WAIT_MS} ms"
            )))
        }
    });
    measured(r)
}

/// CPU 1's part of `nmi-cross` ([`Job::BenchNmiSpin`]): spins with its
/// PMR masking normal interrupts and PSTATE.I clear, yielding the host
/// thread each round, until [`PONG_STOP`]; the NMI-priority SGIs are
/// counted by [`hook`].
pub fn nmi_spin_on_this_cpu() -> JobOutcome {
    let used = [(NMI_SGI, PRIO_NMI)];
    let g = match interrupts_on(&used) {
        Ok(g) => g,
        Err(why) => return crate::cases::setup_failed(why),
    };
    gic::set_pmr(PMR_OFF);
    irq::enable();
    PONG_READY.store(true, Ordering::Release);
    while !PONG_STOP.load(Ordering::Acquire) {
        cpu::relax();
    }
    irq::disable();
    gic::set_pmr(PMR_ON);
    interrupts_off(&g, &used);
    JobOutcome::OK
}

/// CPU 1's part of `sgi-pingpong` ([`Job::BenchPong`]): answers pings
/// (in [`hook`]) until [`PONG_STOP`].
pub fn pong_on_this_cpu() -> JobOutcome {
    let used = [(PING_SGI, PRIO_IRQ)];
    let g = match interrupts_on(&used) {
        Ok(g) => g,
        Err(why) => return crate::cases::setup_failed(why),
    };
    PONG_READY.store(true, Ordering::Release);
    loop {
        // PSTATE.I stays set across the check and the WFI: a ping that
        // arrives in between ends the WFI and is taken right after.
        if PONG_STOP.load(Ordering::Acquire) {
            break;
        }
        cpu::wait_for_interrupt();
        irq::enable();
        irq::disable();
    }
    interrupts_off(&g, &used);
    JobOutcome::OK
}
