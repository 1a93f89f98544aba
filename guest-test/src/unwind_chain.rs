//! `guest-test.unwind-chain` (under nmivisor): after the cases, CPU 1
//! calls a known chain of named functions,
//! [`unwind_chain_outer`] → [`unwind_chain_middle`] → [`unwind_chain_inner`]
//! → [`unwind_chain_spin`], and spins in the last one with PSTATE.I set
//! (no interrupt can reach it inside the guest), until the boot CPU tells
//! it to return. The boot CPU prints `guest-test: unwind-chain: cpu 1
//! spins in unwind_chain_spin` and waits for one byte on the PL011 (the
//! QEMU scenario types it after the hypervisor's dump), or 60 s. The
//! hypervisor's dump must show the four functions in CPU 1's guest
//! backtrace, innermost first.
// A failure reason is a line returned by value, as in the cases.
#![allow(clippy::result_large_err)]

use crate::cases::Reason;
use crate::secondary::{self, Job, Outcome as JobOutcome};
use crate::{cpu, dt, fail, println};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

pub const UNWIND_CHAIN_ARG: &str = "guest-test.unwind-chain";

/// Set by the boot CPU to end the spin.
static RELEASE: AtomicBool = AtomicBool::new(false);
/// Set by CPU 1 once it spins.
static SPINNING: AtomicBool = AtomicBool::new(false);
/// Depth counter, so every level of the chain has work after its call
/// (no tail call can replace a frame).
static DEPTH: AtomicU32 = AtomicU32::new(0);

/// How long the boot CPU waits for the scenario's byte.
const WAIT_MS: u64 = 60_000;

/// Reads `DAIF`, masks IRQ and FIQ, and spins until released.
#[no_mangle]
#[inline(never)]
pub extern "C" fn unwind_chain_spin(level: u32) -> u32 {
    DEPTH.store(level, Ordering::Relaxed);
    // SAFETY: masking this CPU's own interrupts; restored below.
    unsafe { core::arch::asm!("msr daifset, #3", options(nomem, nostack)) };
    SPINNING.store(true, Ordering::Release);
    let deadline = cpu::Deadline::after_ms(WAIT_MS + 10_000);
    while !RELEASE.load(Ordering::Acquire) && !deadline.expired() {
        core::hint::spin_loop();
    }
    // SAFETY: as above.
    unsafe { core::arch::asm!("msr daifclr, #3", options(nomem, nostack)) };
    level + 1
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn unwind_chain_inner(level: u32) -> u32 {
    core::hint::black_box(unwind_chain_spin(core::hint::black_box(level + 1))) + 1
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn unwind_chain_middle(level: u32) -> u32 {
    core::hint::black_box(unwind_chain_inner(core::hint::black_box(level + 1))) + 1
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn unwind_chain_outer(level: u32) -> u32 {
    core::hint::black_box(unwind_chain_middle(core::hint::black_box(level + 1))) + 1
}

/// CPU 1's job: the fifth named frame of the chain.
#[inline(never)]
pub fn chain_job() -> JobOutcome {
    let r = unwind_chain_outer(0);
    if r == 7 && DEPTH.load(Ordering::Relaxed) == 3 {
        JobOutcome::OK
    } else {
        JobOutcome {
            code: 0x7e00 | r as u64,
            detail: 0,
        }
    }
}

/// PL011 data register and flags; FR.RXFE (receive FIFO empty).
const UARTDR: u64 = 0x000;
const UARTFR: u64 = 0x018;
const FR_RXFE: u32 = 1 << 4;

/// Waits for one byte on the PL011 at `base`, at most `ms`.
fn wait_for_byte(base: u64, ms: u64) -> bool {
    cpu::wait_ms(ms, || {
        // SAFETY: the PL011's registers, identity mapped as Device memory.
        let fr = unsafe { core::ptr::read_volatile((base + UARTFR) as *const u32) };
        if fr & FR_RXFE != 0 {
            return false;
        }
        // SAFETY: as above; reading DR takes the byte.
        let _ = unsafe { core::ptr::read_volatile((base + UARTDR) as *const u32) };
        true
    })
}

/// The mode, after the cases.
pub fn run() -> Result<(), Reason> {
    let p = dt::platform();
    if !p.nmivisor {
        println!("guest-test: unwind-chain needs nmivisor");
        return Ok(());
    }
    if p.cpus.count() < 2 {
        fail!("unwind-chain needs 2 CPUs");
    }
    let crate::console::Backend::Pl011(base) = crate::console::backend() else {
        fail!("unwind-chain needs the PL011 for its release byte");
    };
    RELEASE.store(false, Ordering::Relaxed);
    SPINNING.store(false, Ordering::Relaxed);
    let ticket = secondary::post(1, Job::UnwindChain);
    if !cpu::wait_ms(2000, || SPINNING.load(Ordering::Acquire)) {
        RELEASE.store(true, Ordering::Release);
        fail!("cpu 1 did not start spinning");
    }
    println!(
        "guest-test: unwind-chain: cpu 1 spins in unwind_chain_spin at {:#x} (outer {:#x}, middle {:#x}, inner {:#x})",
        unwind_chain_spin as *const () as usize,
        unwind_chain_outer as *const () as usize,
        unwind_chain_middle as *const () as usize,
        unwind_chain_inner as *const () as usize,
    );
    let got = wait_for_byte(base, WAIT_MS);
    RELEASE.store(true, Ordering::Release);
    match ticket.wait(5000) {
        Some(JobOutcome::OK) => {}
        Some(out) => fail!("cpu 1: chain job failed with code {:#x}", out.code),
        None => fail!("cpu 1 did not return from the chain"),
    }
    if got {
        println!("guest-test: unwind-chain: released, the chain returned");
    } else {
        println!("guest-test: unwind-chain: no byte within {WAIT_MS} ms; released anyway");
    }
    Ok(())
}
