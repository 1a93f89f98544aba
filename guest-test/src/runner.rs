//! The test runner: the boot CPU runs the cases in a fixed order and
//! prints one line per case, then `N passed, M failed`, then powers off.
//!
//! An unexpected exception or a panic fails the running case and powers
//! off at once ([`abort`]); on a secondary CPU it is flagged to the boot
//! CPU, which fails the running case when it sees the flag (every wait is
//! bounded), and the secondary powers off itself if the boot CPU does not.

use crate::cases::{Case, CASES};
use crate::{console, cpu, dt, modes, println, psci};
use core::sync::atomic::{AtomicUsize, Ordering};

const NONE: usize = usize::MAX;

/// Index in [`CASES`] of the running case.
static CURRENT: AtomicUsize = AtomicUsize::new(NONE);
static PASSED: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);
/// A secondary that took an unexpected exception, or [`NONE`].
static SECONDARY_FAULT: AtomicUsize = AtomicUsize::new(NONE);

/// How long a faulting secondary waits for the boot CPU to power off.
/// The boot CPU's waits for secondaries end early when one faults; this
/// only covers a boot CPU that is stuck itself.
const SECONDARY_ABORT_MS: u64 = 60_000;

/// The secondary that took an unexpected exception, if one did.
pub fn secondary_fault() -> Option<usize> {
    match SECONDARY_FAULT.load(Ordering::Acquire) {
        NONE => None,
        cpu => Some(cpu),
    }
}

/// Rust entry of the boot CPU (from `_start`), x0 = the DTB address.
#[no_mangle]
extern "C" fn boot_main(dtb: u64) -> ! {
    // SAFETY: the loader passes the DTB in x0 and nothing writes to it.
    let platform = match unsafe { dt::parse(dtb, cpu::mpidr()) } {
        Ok(p) => p,
        // No console and no known conduit: nothing to report with.
        Err(_) => psci::system_off(),
    };
    psci::set_conduit(platform.conduit);
    console::init(match platform.pl011 {
        Some(base) => console::Backend::Pl011(base),
        None => console::Backend::Hypercall,
    });
    dt::set(platform);
    let console = match platform.pl011 {
        Some(base) => ConsoleName::Pl011(base),
        None => ConsoleName::Hypercall,
    };
    println!(
        "guest-test: {} CPUs, RAM {:#x}-{:#x}, PSCI over {}, console {}",
        platform.cpus.count(),
        platform.ram.base,
        platform.ram.end(),
        platform.conduit.name(),
        console,
    );
    if let Some(args) = platform.bootargs {
        println!("guest-test: bootargs \"{args}\"");
    }
    if platform.cpus.ignored > 0 {
        println!(
            "guest-test: {} more CPUs in the device tree are not used",
            platform.cpus.ignored
        );
    }
    if platform.has_bootarg(modes::SYSTEM_RESET_ARG) {
        extra(modes::system_reset(), "system-reset");
    }
    if platform.has_bootarg(modes::CONSOLE_FLOOD_ARG) {
        modes::console_flood();
    }
    if platform.has_bootarg(crate::hostile::ARG) {
        crate::hostile::run();
    }
    if platform.has_bootarg(crate::bench::BENCH_ARG) {
        crate::bench::run();
    }
    for (i, case) in CASES.iter().enumerate() {
        CURRENT.store(i, Ordering::Relaxed);
        let outcome = (case.run)();
        if let Some(fault) = secondary_fault() {
            let reason =
                crate::line::format::<160>(format_args!("unexpected exception on cpu {fault}"));
            finish(case, Err(reason));
            stop_early(i + 1);
        }
        finish(case, outcome);
    }
    CURRENT.store(NONE, Ordering::Relaxed);
    if platform.has_bootarg(modes::HYP_DUMP_ARG) {
        extra(modes::hyp_dump(), "hyp-dump");
    }
    if platform.has_bootarg(crate::unwind_chain::UNWIND_CHAIN_ARG) {
        extra(crate::unwind_chain::run(), "unwind-chain");
    }
    if platform.has_bootarg(modes::VGIC_LOCK_HOLDER_ARG) {
        extra(modes::vgic_lock_holder(), "vgic-lock-holder");
    }
    summary_and_off()
}

/// A mode's failure counts like a failed case.
fn extra(outcome: Result<(), crate::cases::Reason>, mode: &str) {
    if let Err(reason) = outcome {
        FAILED.fetch_add(1, Ordering::Relaxed);
        println!("guest-test: {mode} FAILED: {}", reason.as_str());
    }
}

enum ConsoleName {
    Pl011(u64),
    Hypercall,
}

impl core::fmt::Display for ConsoleName {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            ConsoleName::Pl011(base) => write!(f, "pl011@{base:#x}"),
            ConsoleName::Hypercall => write!(f, "hypercall"),
        }
    }
}

fn finish(case: &Case, outcome: crate::cases::Outcome) {
    match outcome {
        Ok(None) => {
            PASSED.fetch_add(1, Ordering::Relaxed);
            println!("test {} ... ok", case.name);
        }
        Ok(Some(note)) => {
            PASSED.fetch_add(1, Ordering::Relaxed);
            println!("test {} ... ok ({note})", case.name);
        }
        Err(reason) => {
            FAILED.fetch_add(1, Ordering::Relaxed);
            println!("test {} ... FAILED: {}", case.name, reason.as_str());
        }
    }
}

/// Reports the cases from `next` on as not run, then the summary.
fn stop_early(next: usize) -> ! {
    let left = CASES.len().saturating_sub(next);
    if left > 0 {
        println!("guest-test: stopping, {left} cases not run");
    }
    summary_and_off()
}

fn summary_and_off() -> ! {
    println!(
        "{} passed, {} failed",
        PASSED.load(Ordering::Relaxed),
        FAILED.load(Ordering::Relaxed)
    );
    psci::system_off()
}

/// An unexpected exception or panic on CPU `me` (already reported).
/// Fails the running case and powers off; never returns.
pub fn abort(me: usize, why: &str) -> ! {
    if me != 0 {
        SECONDARY_FAULT.store(me, Ordering::Release);
        cpu::wait_ms(SECONDARY_ABORT_MS, || false);
        println!("guest-test: cpu {me}: the boot CPU did not stop, powering off");
        psci::system_off();
    }
    match CURRENT.swap(NONE, Ordering::Relaxed) {
        NONE => {
            println!("guest-test: {why} outside any case");
            FAILED.fetch_add(1, Ordering::Relaxed);
            summary_and_off()
        }
        i => {
            let reason = crate::line::format::<160>(format_args!("{why}"));
            finish(&CASES[i], Err(reason));
            stop_early(i + 1)
        }
    }
}
