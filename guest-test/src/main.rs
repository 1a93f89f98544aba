//! guest-test: a tiny EL1 guest that checks the interfaces a VM sees.
//!
//! It runs the same way natively on QEMU's `virt` machine (no EL2: QEMU
//! emulates PSCI over HVC itself) and as a VM under nmivisor. The boot CPU
//! runs a fixed list of named cases ([`runner`]) and prints exactly one line
//! per case, `test NAME ... ok` or `test NAME ... FAILED: reason`, then
//! `N passed, M failed`, and powers the system off with PSCI SYSTEM_OFF.
//!
//! | case | checks |
//! |---|---|
//! | `psci-version` | PSCI_VERSION >= 1.0 |
//! | `psci-features` | 0 for the functions the guest uses, -1 for an unused ID |
//! | `psci-migrate-info-type` | 2 (no migration needed) |
//! | `psci-cpu-on-invalid` | CPU_ON of an MPIDR not in the DT: -2 |
//! | `psci-cpu-on-already-on` | CPU_ON of the caller: -4 |
//! | `psci-cpu-on` | every secondary starts, runs Rust, checks in; AFFINITY_INFO = ON |
//! | `psci-affinity-info` | level 1 and an unknown MPIDR: -2 |
//! | `psci-cpu-off-on` | CPU_OFF, AFFINITY_INFO reaches OFF, CPU_ON again |
//! | `psci-cpu-suspend` | standby returns 0, woken by the virtual timer |
//! | `mmio-abort` | a read of unassigned MMIO is a synchronous external abort |
//! | `outside-ram` | RAM's last word works; the next page aborts |
//! | `fp-simd` | v0-v31 survive 1000 hypercalls, on every CPU |
//! | `counter-monotonic` | CNTVCT_EL0 never goes back and advances, on every CPU |
//! | `gic-registers` | enable, pending, active and priority (byte) registers of an SGI, a PPI and an SPI; GICD_TYPER, GICR_TYPER, PIDR2 |
//! | `nmi-while-masked` | with PMR "off" (0xc0) an NMI SGI (0x80) is taken, a normal SGI only after PMR "on" (0xe0) |
//! | `nmi-preempts-irq` | an NMI SGI nests in a normal SGI's handler; a same-priority SGI waits |
//! | `priority-order` | 7 SGIs pending at once are taken by priority, then INTID |
//! | `lr-overflow` | 12 SGIs and PPIs plus an NMI SGI pending at once: each taken once, NMI first, then by priority |
//! | `roundup` | one IRM=1 NMI SGI reaches every other CPU spinning with PMR "off" within 1 s |
//! | `sgi-storm` | 1000 SGIs from each CPU to each other CPU, none lost or doubled |
//! | `timer` | the virtual timer's PPI 27 is taken once on every CPU, at or after CVAL (within 1 s), with ISTATUS set |
//! | `virtual-nmi` | under nmivisor: PPI 23 injected by its test hypercall at 0x80 is taken by a CPU with PMR "off", RPR 0x80; vCPU 99 is -2 (natively `ok (native: ...)`) |
//!
//! The interrupt cases program the GIC like Linux with
//! `irqchip.gicv3_pseudo_nmi=1` ([`gic`] has the priorities); they need
//! the device tree's `arm,gic-v3` node.
//!
//! Any unexpected exception or panic prints a line starting
//! `guest-test: unexpected exception` (or `guest-test: panic`), fails the
//! running case and powers off: every wait is bounded by the virtual
//! counter, so the outcome is never a hang.
//!
//! The console is the device tree's PL011 if it has one, else nmivisor's
//! console hypercall ([`console`]). Boot argument
//! `guest-test.qemu-affinity-level` (in /chosen/bootargs, QEMU `-append`)
//! lets `psci-affinity-info` accept QEMU's built-in PSCI, which answers
//! AFFINITY_INFO for affinity level 1 with ON instead of
//! INVALID_PARAMETERS; the case's line then says so.
//!
//! Boot argument `guest-test.bench` selects bench mode instead ([`bench`]):
//! micro-benchmarks that print `bench NAME ITERATIONS TICKS` lines, for
//! `cargo xtask bench` (see `docs/benchmarks.md`);
//! `guest-test.bench-iterations=N` sets the iterations.
//!
//! Boot argument `guest-test.hostile` selects hostile mode instead
//! ([`hostile`]): `seed=N ops=N` random operations on every vCPU, each of
//! which must get a defined answer ([`hostile_rules`]).
//!
//! Boot arguments `guest-test.system-reset` (reset once through PSCI
//! SYSTEM_RESET, then run the cases) and `guest-test.hyp-dump` (after the
//! cases, NMV_DUMP while every CPU is busy) add modes ([`modes`]);
//! `guest-test.unwind-chain` spins CPU 1 in a known call chain for the
//! hypervisor's guest backtraces ([`unwind_chain`]).
//!
//! The crate builds two ways:
//! - for `aarch64-unknown-none` it is the guest image;
//! - for the host only the pure helpers ([`esr`], [`hostile_rules`],
//!   [`line`], [`mmu`], [`topology`]) are compiled, for their unit tests.
#![cfg_attr(target_os = "none", no_std, no_main)]

// Pure logic: the guest's, and on the host only for the unit tests.
#[cfg(any(test, target_os = "none"))]
mod esr;
#[cfg(any(test, target_os = "none"))]
mod hostile_rules;
#[cfg(any(test, target_os = "none"))]
mod line;
#[cfg(any(test, target_os = "none"))]
mod mmu;
#[cfg(any(test, target_os = "none"))]
mod topology;

// The guest proper: asm, system registers, MMIO and hypercalls.
#[cfg(target_os = "none")]
mod bench;
#[cfg(target_os = "none")]
mod cases;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod cpu;
#[cfg(target_os = "none")]
mod dt;
#[cfg(target_os = "none")]
mod entry;
#[cfg(target_os = "none")]
mod fault;
#[cfg(target_os = "none")]
mod gic;
#[cfg(target_os = "none")]
mod hostile;
#[cfg(target_os = "none")]
mod hyp;
#[cfg(target_os = "none")]
mod irq;
#[cfg(target_os = "none")]
mod modes;
#[cfg(target_os = "none")]
mod psci;
#[cfg(target_os = "none")]
mod runner;
#[cfg(target_os = "none")]
mod secondary;
#[cfg(target_os = "none")]
mod timer;
#[cfg(target_os = "none")]
mod unwind_chain;
#[cfg(target_os = "none")]
mod vectors;

/// Reports a Rust panic like an unexpected exception: the running case
/// fails and the system powers off.
#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let me = cpu::index();
    match info.location() {
        Some(at) => println!("guest-test: panic on cpu {me} at {at}: {}", info.message()),
        None => println!("guest-test: panic on cpu {me}: {}", info.message()),
    }
    runner::abort(me, "panic")
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("guest-test runs only as an aarch64-unknown-none guest");
}
