//! Test-only behaviour chosen by `nmivisor.test=` on the command line.
//! Compiled only with the `test-hooks` feature, which only the images that
//! `cargo xtask test` boots enable. Each hook sets up a situation and lets
//! the real code paths (vectors, roundup, watchdog, panic) report on it.

use crate::arch::percpu::cpu_id;
use crate::arch::{cpu, MAX_CPUS};
use crate::boot::dt::bootarg;
use crate::boot::start::idle_loop;
use crate::debug::{roundup, watchdog_hw};
use crate::gic::mask::IrqGuard;
use crate::platform::topology::nr_cpus;
use crate::{ipi, println};
use core::sync::atomic::{AtomicU64, Ordering};

/// CPUs that have entered a test spinner.
static SPINNING: AtomicU64 = AtomicU64::new(0);

/// Runs the hook the command line names, if any. Hooks that return let the
/// boot CPU go on to the normal shutdown.
pub fn run(bootargs: &str) {
    let Some(hook) = bootarg(bootargs, "nmivisor.test") else {
        return;
    };
    println!("nmivisor: running test hook \"{hook}\"");
    match hook {
        "fault" => fault(),
        "dump-masked" => {
            if start_spinner(2, spin_with_irqs_masked_by_pmr) {
                roundup::dump_all_cpus("test hook");
            }
        }
        "bench-dump" => {
            if start_spinner(2, spin_with_irqs_masked_by_pmr) {
                // `cargo xtask bench`'s hyp-dump rows: the counter from the
                // trigger to the dump's last line (under -icount it counts
                // the instructions of every CPU).
                let start = cpu::counter();
                roundup::dump_all_cpus("bench");
                let ticks = cpu::counter() - start;
                println!(
                    "nmivisor: bench hyp-dump {} CPUs: {ticks} ticks at {} Hz",
                    nr_cpus(),
                    cpu::counter_freq()
                );
            }
        }
        "dump-hardmasked" => {
            if start_spinner(3, spin_with_pstate_i_set) {
                roundup::dump_all_cpus("test hook");
            }
        }
        "panic" => {
            if ipi::hw::run_on(1, panic_on_purpose) {
                idle_loop();
            }
            println!("nmivisor: test hook \"panic\" needs at least 2 CPUs");
        }
        "watchdog" => {
            if start_spinner(2, spin_with_irqs_masked_by_pmr) {
                wait_for_watchdog();
            }
        }
        "monitor" => idle_loop(),
        "panic-during-dump" => panic_during_dump(),
        "el2-map" => el2_map(),
        // Lets the VMs of the bundle use the test call that holds a vGIC
        // lock for good (vm::trap::hold_vgic_lock); boot goes on.
        "vgic-lock-hold" => {
            crate::vm::trap::LOCK_HOLD_ALLOWED.store(true, Ordering::Relaxed);
        }
        other => println!("nmivisor: unknown test hook \"{other}\""),
    }
}

/// Starts `f` on `cpu` through the kick SGI and waits until it spins.
fn start_spinner(cpu: usize, f: fn()) -> bool {
    if cpu >= nr_cpus() || cpu >= MAX_CPUS {
        println!("nmivisor: test hook needs at least {} CPUs", cpu + 1);
        return false;
    }
    if !ipi::hw::run_on(cpu, f) {
        println!("nmivisor: cpu {cpu} is busy");
        return false;
    }
    let deadline = cpu::deadline_after_us(1_000_000);
    while SPINNING.load(Ordering::Acquire) & (1 << cpu) == 0 {
        if cpu::counter() > deadline {
            println!("nmivisor: cpu {cpu} did not start its spinner");
            return false;
        }
        crate::arch::relax();
    }
    println!("nmivisor: cpu {cpu} is spinning");
    true
}

fn announce_spinning() {
    SPINNING.fetch_or(1 << cpu_id(), Ordering::AcqRel);
}

/// Spins "with interrupts off" the way nmivisor masks them: by priority.
/// Only the NMI SGI can still reach this CPU.
#[inline(never)]
fn spin_with_irqs_masked_by_pmr() {
    let _masked = IrqGuard::new();
    announce_spinning();
    loop {
        crate::arch::relax();
    }
}

/// Spins with PSTATE.I set: not even the NMI SGI gets through.
#[inline(never)]
fn spin_with_pstate_i_set() {
    crate::arch::gicv3::local_irq_mask();
    announce_spinning();
    loop {
        crate::arch::relax();
    }
}

/// Set by the boot CPU just before it starts the dump that
/// `panic-during-dump` panics into.
static DUMP_STARTED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// CPU 3 spins with PSTATE.I set, so the boot CPU's backtrace request to
/// it (the watchdog's roundup) waits the whole arrival timeout; CPU 2 spins
/// masked by priority; CPU 1 panics while that roundup is in flight. The
/// panic must still stop every CPU but CPU 3, the waiting boot CPU too.
fn panic_during_dump() {
    if !(start_spinner(3, spin_with_pstate_i_set) && start_spinner(2, spin_with_irqs_masked_by_pmr))
    {
        return;
    }
    if !start_spinner(1, panic_once_the_dump_runs) {
        return;
    }
    println!("nmivisor: asking cpu 3 for its backtrace");
    DUMP_STARTED.store(true, Ordering::Release);
    let result = roundup::backtrace_cpu(3);
    println!(
        "nmivisor: the roundup ended ({result:?}) although a panic should have stopped this CPU"
    );
}

#[inline(never)]
fn panic_once_the_dump_runs() {
    announce_spinning();
    while !DUMP_STARTED.load(Ordering::Acquire) {
        crate::arch::relax();
    }
    // Well inside the roundup's 1 s wait for CPU 3.
    let deadline = cpu::deadline_after_us(200_000);
    while cpu::counter() < deadline {
        crate::arch::relax();
    }
    panic_on_purpose();
}

#[inline(never)]
fn panic_on_purpose() {
    panic!("test hook: deliberate panic on cpu {}", cpu_id());
}

/// Waits (with interrupts on) until the watchdog has reported a lockup.
fn wait_for_watchdog() {
    let deadline = cpu::deadline_after_us(20_000_000);
    while watchdog_hw::reports() == 0 && cpu::counter() < deadline {
        cpu::wfi();
    }
    if watchdog_hw::reports() == 0 {
        println!("nmivisor: the watchdog reported nothing within 20 s");
    }
}

/// Reads an address the EL2 map leaves unmapped: a synchronous data abort
/// from EL2 that the vectors report as unexpected.
#[inline(never)]
fn fault() {
    // SAFETY: deliberately faulting; 0xdead0000 is outside RAM (QEMU virt
    // with up to 2 GiB) and outside every MMIO mapping, so the read traps.
    let v = unsafe { core::ptr::read_volatile(0xdead_0000 as *const u64) };
    println!("nmivisor: read {v:#x} from an unmapped address?");
}

/// Shows which RAM the EL2 map covers: the hypervisor image, not the free
/// RAM guests get, and a guest-RAM window only while it is mapped.
fn el2_map() {
    use crate::arch::el2map::translate_read;
    use crate::mm::window::BLOCK;
    use crate::mm::window_hw;
    extern "C" {
        static __image_end: u8;
    }
    let show = |t: Option<u64>| match t {
        Some(pa) => alloc::format!("{pa:#x}"),
        None => "not mapped".into(),
    };
    let image = el2_map as *const () as u64;
    let t = translate_read(image);
    let identity = if t == Some(image) { " (identity)" } else { "" };
    println!(
        "nmivisor: el2-map: hypervisor text {image:#x} -> {}{identity}",
        show(t)
    );
    // Free RAM (where guests' RAM comes from): 16 MiB past the image.
    let free = ((core::ptr::addr_of!(__image_end) as u64 + BLOCK - 1) & !(BLOCK - 1)) + 8 * BLOCK;
    println!(
        "nmivisor: el2-map: free RAM {free:#x} -> {}",
        show(translate_read(free))
    );
    let seen = window_hw::with_window(free, |va| (va, translate_read(va + 0x1234)));
    match seen {
        Some((va, t)) => println!("nmivisor: el2-map: window {va:#x}+0x1234 -> {}", show(t)),
        None => println!("nmivisor: el2-map: no window"),
    }
    if let Some((va, _)) = seen {
        println!(
            "nmivisor: el2-map: window {va:#x} after use -> {}",
            show(translate_read(va))
        );
    }
    let mut back = [0u8; 8];
    let copied = window_hw::write(free + BLOCK - 4, b"nmivisor", false)
        && window_hw::read(free + BLOCK - 4, &mut back);
    println!(
        "nmivisor: el2-map: copy across a block boundary {}",
        if copied && &back == b"nmivisor" {
            "ok"
        } else {
            "FAILED"
        }
    );
}
