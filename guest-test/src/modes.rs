//! Modes that boot arguments add around the normal cases.
//!
//! - `guest-test.system-reset`: the first boot sets a marker in RAM
//!   ([`marker_address`]), prints `guest-test: SYSTEM_RESET` and calls PSCI
//!   SYSTEM_RESET. Neither QEMU nor nmivisor clears RAM on a reset (both
//!   only load the image and the DTB again), so the next boot finds the
//!   marker, clears it, prints `guest-test: running again after
//!   SYSTEM_RESET` and runs the cases: the system comes back exactly once.
//! - `guest-test.hyp-dump` (under nmivisor): after the cases every
//!   secondary spins in [`hyp_dump_spin`] at EL1 with interrupts on, and
//!   the boot CPU calls NMV_DUMP, which makes the hypervisor print every
//!   CPU's state (`guest state: vm NAME vCPU N ...`); then the secondaries
//!   stop. Natively it only says `guest-test: hyp-dump needs nmivisor`.
//! - `guest-test.vgic-lock-holder` (test images of nmivisor): after the
//!   cases every secondary takes SGI [`HOLD_SGI`] and stays in its handler
//!   (the SGI active in its list register, so its next exit must fold the
//!   list registers under the vGIC lock); then the boot CPU asks the
//!   hypervisor to keep its VM's vGIC lock for good
//!   (NMV_TEST_HOLD_VGIC_LOCK). The `vgic-lock-held` scenario then dumps
//!   every CPU.
//! - `guest-test.console-flood`: before the cases, prints an escape probe
//!   (a line with terminal control sequences and 8-bit bytes) and then
//!   [`FLOOD_LINES`] numbered lines as fast as the UART takes them, and
//!   says how often it found the transmit FIFO full. The scenarios check
//!   that every line arrives whole and the probe arrives escaped.
// A failure reason is a line returned by value, as in the cases.
#![allow(clippy::result_large_err)]

use crate::cases::{irq_setup, Reason};
use crate::secondary::{self, Job, Outcome as JobOutcome};
use crate::topology::MAX_CPUS;
use crate::{cpu, dt, fail, gic, hyp, irq, println, psci};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub const SYSTEM_RESET_ARG: &str = "guest-test.system-reset";
pub const HYP_DUMP_ARG: &str = "guest-test.hyp-dump";
pub const CONSOLE_FLOOD_ARG: &str = "guest-test.console-flood";
pub const VGIC_LOCK_HOLDER_ARG: &str = "guest-test.vgic-lock-holder";

/// The SGI the secondaries take and stay in, in vgic-lock-holder mode.
const HOLD_SGI: u32 = 9;
/// Secondaries inside the handler of [`HOLD_SGI`].
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Set by the boot CPU just before it makes the hypervisor take the lock.
static LOCK_TAKEN: AtomicBool = AtomicBool::new(false);

/// The IRQ hook of vgic-lock-holder mode: never leaves [`HOLD_SGI`]'s
/// handler (PSTATE.I set). Once the lock is held (and a little later, so
/// the boot CPU has surely taken it), it ends the SGI: its list register
/// changes from active to invalid without a trap, so the next exit of this
/// vCPU (a tick, the dump's NMI) must fold the list registers under the
/// vGIC lock that is never released.
fn stay_in_handler(intid: u32) {
    if intid == HOLD_SGI {
        IN_HANDLER.fetch_add(1, Ordering::Release);
        while !LOCK_TAKEN.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
        cpu::wait_ms(20, || false);
        gic::end_of_interrupt(HOLD_SGI);
        loop {
            core::hint::spin_loop();
        }
    }
}

/// A secondary's part: take interrupts, [`HOLD_SGI`] included.
pub fn hold_in_handler_job() -> JobOutcome {
    let g = match irq_setup() {
        Ok(g) => g,
        Err(why) => return crate::cases::setup_failed(why),
    };
    let sgi = g.irq(HOLD_SGI);
    sgi.set_priority(0xa0);
    sgi.enable();
    gic::set_pmr(gic::PMR_ON);
    irq::enable();
    SPINNING.fetch_add(1, Ordering::Release);
    let deadline = cpu::Deadline::after_ms(SPIN_MS);
    while !deadline.expired() {
        core::hint::spin_loop();
    }
    irq::disable();
    JobOutcome::OK
}

/// `guest-test.vgic-lock-holder`, after the cases: returns only if
/// something failed.
pub fn vgic_lock_holder() -> Result<(), Reason> {
    if !dt::platform().nmivisor {
        println!("guest-test: vgic-lock-holder needs nmivisor");
        return Ok(());
    }
    let n = dt::platform().cpus.count();
    SPINNING.store(0, Ordering::Relaxed);
    for c in 1..n {
        // Never collected: the secondaries stay in the handler.
        let _ = secondary::post(c, Job::HoldInHandler);
    }
    if !cpu::wait_ms(2000, || SPINNING.load(Ordering::Acquire) == n - 1) {
        fail!(
            "only {} of {} secondaries ready",
            SPINNING.load(Ordering::Acquire),
            n - 1
        );
    }
    irq::set_hook(Some(stay_in_handler));
    gic::send_sgi_to_others(HOLD_SGI);
    if !cpu::wait_ms(2000, || IN_HANDLER.load(Ordering::Acquire) == n - 1) {
        fail!(
            "only {} of {} secondaries took SGI {HOLD_SGI}",
            IN_HANDLER.load(Ordering::Acquire),
            n - 1
        );
    }
    println!(
        "guest-test: vgic-lock-holder: {} secondaries stay in SGI {HOLD_SGI}'s handler; the hypervisor keeps the vGIC lock from now on",
        n - 1
    );
    LOCK_TAKEN.store(true, Ordering::Release);
    let ret = crate::hyp::test_hold_vgic_lock();
    fail!("NMV_TEST_HOLD_VGIC_LOCK returned {ret}");
}

/// Lines `guest-test.console-flood` prints.
pub const FLOOD_LINES: usize = 2000;

/// The payload of every flood line (60 bytes).
const FLOOD_TEXT: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

/// `guest-test.console-flood`, before the cases.
pub fn console_flood() {
    crate::console::write_line(b"guest-test: escape probe \x1b[2J\x1b]0;forged\x07 \x9b\x08end");
    let before = crate::console::txff_seen();
    for i in 0..FLOOD_LINES {
        println!("guest-test: flood {i:04} {FLOOD_TEXT}");
    }
    println!(
        "guest-test: console flood: {FLOOD_LINES} lines, transmit FIFO full {} times",
        crate::console::txff_seen() - before
    );
}

/// The marker's value: "nmvreset".
const MAGIC: u64 = u64::from_be_bytes(*b"nmvreset");

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// Where the marker lives: 1 MiB and a page below the end of RAM. That is
/// past the image (at RAM base + 2 MiB) and clear of the DTB, which QEMU
/// puts at the start of RAM and nmivisor at the start of the last 2 MiB
/// block (64 KiB at most); both are checked, as is the last word of RAM
/// that `outside-ram` writes.
pub(crate) fn marker_address() -> Result<u64, Reason> {
    let p = dt::platform();
    let at = p.ram.end().saturating_sub(MIB + PAGE);
    let dtb = dt::Range {
        base: p.dtb.base,
        size: p.dtb.size.max(64 * 1024),
    };
    // Linker symbols: only their addresses are used.
    let start = &raw const __image_start as u64;
    let image = dt::Range {
        base: start,
        size: &raw const __image_end as u64 - start,
    };
    if !p.ram.contains(at) || !crate::mmu::is_normal(at) {
        fail!(
            "no room for the reset marker in RAM {:#x}-{:#x}",
            p.ram.base,
            p.ram.end()
        );
    }
    if dtb.contains(at) || image.contains(at) {
        fail!("the reset marker at {at:#x} would be in the DTB or the image");
    }
    Ok(at)
}

/// Writes the marker word and cleans it to the point of coherency, so a
/// reset that drops the caches keeps it.
pub(crate) fn set_marker(at: u64, value: u64) {
    // SAFETY: `at` is an 8-byte-aligned RAM word that nothing else uses
    // ([`marker_address`]), identity mapped as Normal memory.
    unsafe {
        core::ptr::write_volatile(at as *mut u64, value);
        core::arch::asm!("dc civac, {}", "dsb sy", in(reg) at, options(nostack, preserves_flags));
    }
}

/// `guest-test.system-reset`: returns on the boot after the reset (or
/// when the reset failed); the first boot does not return.
pub fn system_reset() -> Result<(), Reason> {
    let at = marker_address()?;
    // SAFETY: as in `set_marker`.
    if unsafe { core::ptr::read_volatile(at as *const u64) } == MAGIC {
        set_marker(at, 0);
        println!("guest-test: running again after SYSTEM_RESET");
        gic_at_reset()?;
        println!("guest-test: GIC distributor at reset after SYSTEM_RESET");
        return Ok(());
    }
    set_marker(at, MAGIC);
    gic_dirty()?;
    println!("guest-test: SYSTEM_RESET");
    let ret = psci::status(psci::call(psci::SYSTEM_RESET, 0, 0, 0));
    set_marker(at, 0);
    fail!("SYSTEM_RESET returned {ret}")
}

/// The SPI that [`gic_dirty`] configures before the reset.
const RESET_SPI: u32 = 40;

/// Leaves distributor state that a reset must undo: Group 1 enabled, and
/// SPI [`RESET_SPI`] enabled, pending and at priority 0x40 (the GIC spec's
/// reset values are all 0, IHI 0069 12.9).
fn gic_dirty() -> Result<(), Reason> {
    let g = match gic::get() {
        Ok(g) => g,
        Err(why) => fail!("no GIC: {why}"),
    };
    if let Err(why) = g.init_distributor() {
        fail!("GIC setup failed: {why}");
    }
    let spi = g.irq(RESET_SPI);
    spi.set_priority(0x40);
    spi.set_pending();
    spi.enable();
    Ok(())
}

/// After the reset, before anything set the GIC up: the distributor is
/// back at its reset values.
fn gic_at_reset() -> Result<(), Reason> {
    let g = match gic::get() {
        Ok(g) => g,
        Err(why) => fail!("no GIC: {why}"),
    };
    let ctlr = gic::rd32(g.gicd + gic::GICD_CTLR);
    if ctlr & gic::CTLR_ENABLE_GRP1 != 0 {
        fail!("GICD_CTLR = {ctlr:#x} after SYSTEM_RESET: EnableGrp1 still set");
    }
    let spi = g.irq(RESET_SPI);
    let (enabled, _) = spi.enabled();
    let (pending, _) = spi.pending();
    let prio = spi.priority();
    if enabled || pending || prio != 0 {
        fail!("SPI {RESET_SPI} after SYSTEM_RESET: enabled {enabled}, pending {pending}, priority {prio:#x}; want all reset (0)");
    }
    Ok(())
}

/// Secondaries spinning in [`hyp_dump_spin`].
static SPINNING: AtomicUsize = AtomicUsize::new(0);
/// Set by the boot CPU to end the spinning.
static STOP: AtomicBool = AtomicBool::new(false);
/// How long a secondary spins at most.
const SPIN_MS: u64 = 30_000;

/// The busy loop of `guest-test.hyp-dump` on a secondary: the dump should
/// show the vCPU at EL1 in here (see `nm` of the guest ELF), not in the
/// hypervisor. Interrupts are on (PMR "on", PSTATE.I clear).
#[no_mangle]
#[inline(never)]
pub fn hyp_dump_spin() -> JobOutcome {
    if let Err(why) = irq_setup() {
        return crate::cases::setup_failed(why);
    }
    gic::set_pmr(gic::PMR_ON);
    irq::enable();
    SPINNING.fetch_add(1, Ordering::Release);
    let deadline = cpu::Deadline::after_ms(SPIN_MS);
    while !STOP.load(Ordering::Acquire) && !deadline.expired() {
        core::hint::spin_loop();
    }
    irq::disable();
    JobOutcome::OK
}

/// `guest-test.hyp-dump`, after the cases.
pub fn hyp_dump() -> Result<(), Reason> {
    if !dt::platform().nmivisor {
        println!("guest-test: hyp-dump needs nmivisor");
        return Ok(());
    }
    let n = dt::platform().cpus.count();
    SPINNING.store(0, Ordering::Relaxed);
    STOP.store(false, Ordering::Relaxed);
    let tickets: [Option<secondary::Ticket>; MAX_CPUS] = core::array::from_fn(|c| {
        (1..n)
            .contains(&c)
            .then(|| secondary::post(c, Job::HypDumpSpin))
    });
    let result = (|| {
        if !cpu::wait_ms(2000, || SPINNING.load(Ordering::Acquire) == n - 1) {
            fail!(
                "only {} of {} secondaries spinning",
                SPINNING.load(Ordering::Acquire),
                n - 1
            );
        }
        println!(
            "guest-test: hyp-dump: {} secondaries spin in hyp_dump_spin at {:#x}; calling NMV_DUMP",
            n - 1,
            hyp_dump_spin as *const () as usize
        );
        match hyp::dump() {
            0 => Ok(true),
            // NOT_SUPPORTED: the VM's config does not allow dumps.
            -1 => Ok(false),
            ret => fail!("NMV_DUMP returned {ret}, want 0 or -1"),
        }
    })();
    STOP.store(true, Ordering::Release);
    for (c, t) in tickets.iter().enumerate() {
        let Some(t) = t else { continue };
        match t.wait(SPIN_MS) {
            Some(JobOutcome::OK) => {}
            Some(out) => fail!("cpu {c}: spin job failed with code {:#x}", out.code),
            None => fail!("cpu {c} did not stop spinning"),
        }
    }
    if result? {
        println!("guest-test: hyp-dump: NMV_DUMP returned 0");
    } else {
        println!("guest-test: hyp-dump: NMV_DUMP refused (-1)");
    }
    Ok(())
}
