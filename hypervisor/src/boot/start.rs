//! The boot CPU's path from `_start` to every CPU online, the secondaries'
//! path, and the orderly shutdown.

use crate::arch::percpu::{percpu, this_cpu};
use crate::arch::{cpu, psci, MAX_CPUS};
use crate::boot::dt::{self, PlatformInfo, PsciConduit};
use crate::debug::{roundup, watchdog_hw};
use crate::mm::ram::FreeRam;
use crate::platform::topology::{self, mpidr_of, nr_cpus};
use crate::{console, gic, mm, println, vm};
use alloc::string::String;
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Once;

/// How long the boot CPU waits for a secondary to report online.
const CPU_ON_TIMEOUT_US: u64 = 2_000_000;
/// QEMU virt's PL011, used only to report a device tree that names none.
const FALLBACK_UART: u64 = 0x0900_0000;

/// The command line (/chosen bootargs), copied out of the DTB.
static BOOTARGS: Once<String> = Once::new();
/// `nmivisor.panic=poweroff`: power off after a panic's dump instead of
/// halting every CPU (halting keeps the state for a debugger).
static PANIC_POWEROFF: AtomicBool = AtomicBool::new(false);

extern "C" {
    fn secondary_entry();
}

/// The hypervisor's command line.
pub fn bootargs() -> &'static str {
    BOOTARGS.get().map_or("", String::as_str)
}

/// Whether a panic ends with PSCI SYSTEM_OFF.
pub fn panic_powers_off() -> bool {
    PANIC_POWEROFF.load(Ordering::Relaxed)
}

/// Stops the boot with a message: nothing sensible can run.
fn boot_failed(what: core::fmt::Arguments) -> ! {
    println!("nmivisor: boot stopped: {what}");
    cpu::halt()
}

/// The device tree QEMU (or a loader) passed in x0.
fn device_tree(dtb: u64) -> &'static [u8] {
    if dtb == 0 || !dtb.is_multiple_of(8) {
        return &[];
    }
    // SAFETY: the boot protocol puts a DTB at `dtb`, inside RAM that the
    // early map covers. Only the 8-byte header is read before its own
    // `totalsize` (bounded to 2 MiB, the protocol's maximum) is trusted.
    unsafe {
        let header = core::slice::from_raw_parts(dtb as *const u8, 8);
        let size = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        core::slice::from_raw_parts(dtb as *const u8, size.clamp(8, 2 << 20))
    }
}

#[no_mangle]
extern "C" fn boot_main(dtb: u64) -> ! {
    let info = match dt::parse(device_tree(dtb)) {
        Ok(info) => info,
        Err(e) => {
            console::init(FALLBACK_UART);
            boot_failed(format_args!("device tree at {dtb:#x}: {e}"));
        }
    };
    console::init(info.uart.start);
    println!(
        "nmivisor v{} starting on cpu 0 (MPIDR {:#x}) at EL{}",
        env!("CARGO_PKG_VERSION"),
        cpu::mpidr(),
        cpu::current_el()
    );
    if cfg!(feature = "test-hooks") {
        println!("nmivisor: test hooks enabled (not a release image)");
    }
    if info.psci.ne(&PsciConduit::Smc) {
        boot_failed(format_args!(
            "PSCI method \"hvc\" cannot reach the firmware from EL2"
        ));
    }
    if info.cpus_ignored > 0 {
        println!(
            "nmivisor: {} CPUs beyond {MAX_CPUS} left off",
            info.cpus_ignored
        );
    }

    mm::heap::init();
    let dtb_range = dtb..dtb + device_tree(dtb).len() as u64;
    if let Err(e) = mm::el2::init(&info, dtb_range) {
        boot_failed(format_args!("EL2 page tables: mapping {}: {:?}", e.0, e.1));
    }
    BOOTARGS.call_once(|| String::from(info.bootargs));
    PANIC_POWEROFF.store(
        dt::bootarg(bootargs(), "nmivisor.panic") == Some("poweroff"),
        Ordering::Relaxed,
    );

    let nr = assign_logical_cpus(&info);
    let mpidrs: alloc::vec::Vec<u64> = (0..nr).map(mpidr_of).collect();
    if let Err(e) = gic::driver::init(&info, &mpidrs, info.uart_intid) {
        boot_failed(format_args!("GICv3: {e}"));
    }
    console::enable_rx_interrupt();
    watchdog_hw::configure(watchdog_seconds());
    if let Some(v) = dt::bootarg(bootargs(), "nmivisor.nmi_timeout_ms") {
        match v.parse() {
            Ok(ms) => roundup::set_arrival_timeout_ms(ms),
            Err(_) => println!("nmivisor: ignoring nmivisor.nmi_timeout_ms={v}: not a number"),
        }
    }
    cpu_online();
    for logical in 1..nr {
        start_secondary(logical);
    }
    let online = (0..nr)
        .filter(|&c| percpu(c).is_some_and(|p| p.online.load(Ordering::Acquire)))
        .count();
    if online == nr {
        println!("all {nr} CPUs online");
    } else {
        println!("{online} of {nr} CPUs online");
    }

    #[cfg(feature = "test-hooks")]
    super::test_hooks::run(bootargs());

    if let Some(bundle) = info.initrd.clone() {
        vm::services::install(vm::services::Services {
            power_off: power_off_after_vms,
            snapshot_vm: roundup::snapshot_vm,
        });
        let mut ram = free_ram(&info, dtb);
        // SAFETY: the bundle lies in RAM (the loader put it there), the EL2
        // map covers it, it is reserved from guest RAM above, and nothing
        // writes it, so it stays valid for the hypervisor's lifetime.
        let bytes = unsafe {
            core::slice::from_raw_parts(
                bundle.start as *const u8,
                (bundle.end - bundle.start) as usize,
            )
        };
        if vm::create::start_vms(bytes, nr, &mut ram) == 0 {
            println!("nmivisor: no VM to run, powering off");
            shutdown(nr);
        }
        idle_loop();
    }
    if dt::bootarg(bootargs(), "nmivisor.idle").is_some() {
        println!("nmivisor: idle; the console monitor is Ctrl-] three times, then h");
        idle_loop();
    }
    shutdown(nr)
}

/// Host RAM that guests may use: everything but the hypervisor image (with
/// BSS, stacks and heap), the device tree and the bundle.
fn free_ram(info: &PlatformInfo, dtb: u64) -> FreeRam {
    extern "C" {
        static __image_start: u8;
        static __image_end: u8;
    }
    let image = core::ptr::addr_of!(__image_start) as u64..core::ptr::addr_of!(__image_end) as u64;
    let mut ram = FreeRam::new(info.memory.iter().cloned());
    ram.reserve(image);
    ram.reserve(dtb..dtb + device_tree(dtb).len() as u64);
    if let Some(bundle) = info.initrd.clone() {
        ram.reserve(bundle);
    }
    ram
}

/// `nmivisor.watchdog=SECONDS` (0 = off), else the default.
fn watchdog_seconds() -> u64 {
    match dt::bootarg(bootargs(), "nmivisor.watchdog") {
        None => watchdog_hw::DEFAULT_THRESHOLD_S,
        Some(v) => v.parse().unwrap_or_else(|_| {
            println!("nmivisor: ignoring nmivisor.watchdog={v}: not a number of seconds");
            watchdog_hw::DEFAULT_THRESHOLD_S
        }),
    }
}

/// Sends this CPU to its run loop (`vm::run::pcpu_loop`) for good: it runs
/// work queued with `ipi::hw::run_on` (test hooks), its vCPU if it has one, and
/// otherwise waits with interrupts on.
pub fn idle_loop() -> ! {
    vm::run::restart_loop()
}

/// Logical CPU 0 is the boot CPU; the others follow in device-tree order.
fn assign_logical_cpus(info: &PlatformInfo) -> usize {
    let me = cpu::mpidr();
    if !info.cpus.contains(&me) {
        println!("nmivisor: warning: boot CPU MPIDR {me:#x} is not in the device tree");
    }
    topology::set_mpidr(0, me);
    let mut n = 1;
    for &mpidr in info.cpus.iter().filter(|&&m| m != me) {
        if n == MAX_CPUS {
            println!("nmivisor: CPU MPIDR {mpidr:#x} left off (more than {MAX_CPUS} CPUs)");
            continue;
        }
        topology::set_mpidr(n, mpidr);
        n += 1;
    }
    topology::set_nr_cpus(n);
    n
}

fn start_secondary(logical: usize) {
    let mpidr = mpidr_of(logical);
    if let Err(e) = psci::cpu_on(mpidr, secondary_entry as *const () as u64, logical as u64) {
        println!("cpu {logical} (MPIDR {mpidr:#x}) failed to start: PSCI CPU_ON: {e}");
        return;
    }
    let deadline = cpu::deadline_after_us(CPU_ON_TIMEOUT_US);
    let Some(pc) = percpu(logical) else { return };
    while !pc.online.load(Ordering::Acquire) {
        if cpu::counter() > deadline {
            println!("cpu {logical} (MPIDR {mpidr:#x}) did not come online");
            return;
        }
        crate::arch::relax();
    }
}

/// Marks this CPU online and announces it.
fn cpu_online() {
    let me = this_cpu();
    if me.cpu != 0 {
        gic::driver::init_secondary(me.cpu);
    }
    watchdog_hw::cpu_online(me.cpu);
    me.mpidr.store(cpu::mpidr(), Ordering::Relaxed);
    println!(
        "cpu {} online (MPIDR {:#x}) at EL{}",
        me.cpu,
        cpu::mpidr(),
        cpu::current_el()
    );
    me.online.store(true, Ordering::Release);
}

#[no_mangle]
extern "C" fn secondary_main(_logical: usize) -> ! {
    cpu_online();
    idle_loop()
}

/// The last VM stopped: power the machine off (vm::services).
fn power_off_after_vms() -> ! {
    shutdown(nr_cpus())
}

/// Stops the other CPUs with the STOP message (each leaves through PSCI
/// CPU_OFF), waits until the firmware reports each one off, then powers the
/// machine off. Any CPU may run it: the last VM to stop may live on any.
pub fn shutdown(nr: usize) -> ! {
    let missing = roundup::stop_others();
    for cpu in missing {
        println!("cpu {cpu} did not take the STOP NMI");
    }
    let me = this_cpu().cpu;
    for logical in (0..nr).filter(|&c| c != me) {
        let mpidr = mpidr_of(logical);
        let deadline = cpu::deadline_after_us(CPU_ON_TIMEOUT_US);
        loop {
            match psci::affinity_info(mpidr) {
                Ok(psci::AffinityState::Off) => break,
                Ok(_) if cpu::counter() < deadline => crate::arch::relax(),
                Ok(state) => {
                    println!("cpu {logical} did not power off (state {state:?})");
                    break;
                }
                Err(e) => {
                    println!("cpu {logical}: PSCI AFFINITY_INFO: {e}");
                    break;
                }
            }
        }
    }
    println!("nmivisor: powering off");
    let err = psci::system_off();
    boot_failed(format_args!("PSCI SYSTEM_OFF failed: {err}"))
}
