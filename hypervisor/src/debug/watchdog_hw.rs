//! The EL2 tick and the lockup watchdog's hardware side: each CPU's EL2
//! physical timer (CNTHP, PPI 26, at normal priority) ticks every 100 ms.
//! The tick moves guests' queued console output that no trap moved (the
//! console was busy when they wrote) and beats the watchdog's heartbeat. A
//! CPU stuck with interrupts masked by priority stops beating; its buddy
//! notices, reports a hard lockup and fetches its backtrace over the NMI SGI.

use super::watchdog::Watchdog;
use crate::arch::{cpu, percpu::cpu_id, MAX_CPUS};
use crate::gic::driver::arm_timer_us;
use crate::println;
use core::sync::atomic::{AtomicU64, Ordering};

/// Heartbeat period.
const TICK_US: u64 = 100_000;
/// Default lockup threshold; `nmivisor.watchdog=SECONDS` changes it, 0 turns
/// the watchdog off.
pub const DEFAULT_THRESHOLD_S: u64 = 5;

static WATCHDOG: Watchdog<MAX_CPUS> = Watchdog::new();
/// Threshold in counter ticks; 0 = off.
static THRESHOLD: AtomicU64 = AtomicU64::new(0);
/// Lockups reported since boot.
static REPORTS: AtomicU64 = AtomicU64::new(0);

/// How many lockups the watchdog has reported (the watchdog test hook
/// waits for one).
#[cfg(feature = "test-hooks")]
pub fn reports() -> u64 {
    REPORTS.load(Ordering::Acquire)
}

/// Sets the threshold (boot CPU, before any CPU starts ticking).
pub fn configure(seconds: u64) {
    THRESHOLD.store(
        seconds.saturating_mul(cpu::counter_freq()),
        Ordering::Release,
    );
    if seconds == 0 {
        println!("nmivisor: lockup watchdog off");
    } else {
        println!("nmivisor: lockup watchdog on, threshold {seconds} s");
    }
}

/// Starts this CPU's tick, and its heartbeat when the watchdog is on.
pub fn cpu_online(cpu: usize) {
    if THRESHOLD.load(Ordering::Acquire) != 0 {
        WATCHDOG.set_online(cpu, cpu::counter());
    }
    arm_timer_us(TICK_US);
}

/// Takes a CPU out of the ring (it stopped on purpose).
pub fn cpu_offline(cpu: usize) {
    WATCHDOG.set_offline(cpu);
}

/// The EL2 timer interrupt (`frame`: what it interrupted): re-arm, move
/// queued guest output, sample this CPU's guest for the guest lockup
/// detector, then beat and check the buddy when the watchdog is on.
pub fn tick(frame: &crate::arch::vectors::TrapFrame) {
    arm_timer_us(TICK_US);
    crate::vm::uart::drain();
    super::guest_dump::lockup_tick(frame);
    let threshold = THRESHOLD.load(Ordering::Acquire);
    if threshold == 0 {
        return;
    }
    let me = cpu_id();
    let now = cpu::counter();
    WATCHDOG.beat(me, now);
    if let Some(stuck) = WATCHDOG.check(me, now, threshold) {
        let ms = threshold * 1000 / cpu::counter_freq().max(1);
        println!("watchdog: hard LOCKUP on cpu {stuck} (no heartbeat for over {ms} ms), detected by cpu {me}");
        match super::roundup::backtrace_cpu(stuck) {
            super::roundup::BacktraceResult::Printed => {}
            super::roundup::BacktraceResult::NoAnswer => {
                println!("watchdog: cpu {stuck} did not answer the NMI either")
            }
            super::roundup::BacktraceResult::Busy => {
                println!("watchdog: another dump is in progress, so cpu {stuck}'s backtrace was not fetched")
            }
        }
        REPORTS.fetch_add(1, Ordering::AcqRel);
    }
}

/// Console monitor key `w` (test images): the last CPU, which a scenario
/// leaves to no VM, spins with interrupts masked by priority until the
/// watchdog has reported it (at most 20 s), then goes back to its run
/// loop. Returns at once; the CPU takes the work from its idle loop.
#[cfg(feature = "test-hooks")]
pub fn watchdog_blip() {
    let cpu = crate::platform::topology::nr_cpus().saturating_sub(1);
    if cpu == 0 || !crate::ipi::hw::run_on(cpu, spin_until_watchdog) {
        println!("nmivisor: watchdog test: cpu {cpu} cannot take the spinner");
    }
}

#[cfg(feature = "test-hooks")]
#[inline(never)]
fn spin_until_watchdog() {
    let before = reports();
    println!(
        "nmivisor: watchdog test: cpu {} spins with interrupts masked",
        crate::arch::percpu::cpu_id()
    );
    let deadline = cpu::deadline_after_us(20_000_000);
    {
        let _masked = crate::gic::mask::IrqGuard::new();
        while reports() == before && cpu::counter() < deadline {
            crate::arch::relax();
        }
    }
    if reports() == before {
        println!("nmivisor: watchdog test: the watchdog reported nothing within 20 s");
    } else {
        println!(
            "nmivisor: watchdog test: cpu {} was reported; back to its run loop",
            crate::arch::percpu::cpu_id()
        );
    }
}
