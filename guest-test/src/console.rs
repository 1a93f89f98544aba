//! The console: whole lines, written either straight to a PL011 (when the
//! device tree has one) or through nmivisor's console hypercall.
//!
//! Every line is formatted into a buffer first ([`crate::line`]) and
//! written under a lock that all CPUs share, so lines never interleave.
//! The lock belongs to a CPU: the owner may take it again (an exception
//! report while that CPU was printing), and a CPU that waits longer than
//! [`LOCK_TIMEOUT_MS`] takes it anyway, so a CPU that died holding it
//! cannot silence the others.
//!
//! **Hypercall** `NMV_CONSOLE_WRITE`: an SMCCC fast call (SMC64, vendor
//! specific hypervisor service range) through the device tree's PSCI
//! conduit, x0 = 0xC600_0001, x1 = guest physical address of the bytes,
//! x2 = length (at most [`HYPERCALL_MAX`]). It returns x0 = bytes written,
//! or a negative error. A line goes out in one call when it fits, with
//! its "\n"; longer lines take several calls.

use crate::line::Line;
use crate::psci;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Function ID of nmivisor's console write hypercall.
pub const NMV_CONSOLE_WRITE: u32 = 0xC600_0001;

/// Most bytes one console hypercall takes.
pub const HYPERCALL_MAX: usize = 256;

/// Longest console line (longer ones end in "...").
pub const LINE_MAX: usize = 1024;

/// How long a CPU waits for the console lock before taking it anyway.
const LOCK_TIMEOUT_MS: u64 = 1000;

/// PL011 registers: data, flags; FR.TXFF (transmit FIFO full).
const UARTDR: u64 = 0x000;
pub const UARTFR: u64 = 0x018;
const FR_TXFF: u32 = 1 << 5;

/// Base of the PL011 in use; 0 = none, use the hypercall.
static PL011: AtomicU64 = AtomicU64::new(0);

/// The console lock's owner, [`FREE`] when free.
static OWNER: AtomicUsize = AtomicUsize::new(FREE);
const FREE: usize = usize::MAX;

/// Which way lines go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Pl011(u64),
    Hypercall,
}

/// Selects the output (called once by the boot CPU after parsing the DT;
/// until then output goes through the hypercall).
pub fn init(backend: Backend) {
    let base = match backend {
        Backend::Pl011(base) => base,
        Backend::Hypercall => 0,
    };
    PL011.store(base, Ordering::Release);
}

pub fn backend() -> Backend {
    match PL011.load(Ordering::Acquire) {
        0 => Backend::Hypercall,
        base => Backend::Pl011(base),
    }
}

/// Prints a formatted line.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::print_line(format_args!($($arg)*))
    };
}

/// Formats and writes one line.
pub fn print_line(args: core::fmt::Arguments) {
    let line: Line<LINE_MAX> = crate::line::format(args);
    write_line(line.as_bytes());
}

/// Writes `text` and a newline as one line.
pub fn write_line(text: &[u8]) {
    let _guard = lock();
    match backend() {
        Backend::Pl011(base) => {
            for &b in text {
                pl011_put(base, b);
            }
            pl011_put(base, b'\r');
            pl011_put(base, b'\n');
        }
        Backend::Hypercall => {
            // One call per line when it fits: the hypervisor sees whole lines.
            let mut buf = [0u8; HYPERCALL_MAX];
            if text.len() < HYPERCALL_MAX {
                buf[..text.len()].copy_from_slice(text);
                buf[text.len()] = b'\n';
                hypercall_write(&buf[..=text.len()]);
            } else {
                hypercall_write(text);
                hypercall_write(b"\n");
            }
        }
    }
}

/// How many times a write found the transmit FIFO full (console-flood
/// mode reports it).
static TXFF_SEEN: AtomicU64 = AtomicU64::new(0);

pub fn txff_seen() -> u64 {
    TXFF_SEEN.load(Ordering::Relaxed)
}

fn pl011_put(base: u64, byte: u8) {
    // Bounded: a stuck UART loses characters rather than hanging the guest.
    for spin in 0..1_000_000 {
        // SAFETY: `base` is the PL011 from the device tree, identity mapped
        // as Device memory; FR is a read-only status register.
        let fr = unsafe { core::ptr::read_volatile((base + UARTFR) as *const u32) };
        if fr & FR_TXFF == 0 {
            break;
        }
        if spin == 0 {
            TXFF_SEEN.fetch_add(1, Ordering::Relaxed);
        }
        crate::cpu::relax();
    }
    // SAFETY: as above; writing DR queues one character.
    unsafe { core::ptr::write_volatile((base + UARTDR) as *mut u32, byte as u32) };
}

/// Writes `bytes` with as many NMV_CONSOLE_WRITE calls as needed. Gives up
/// on an error, or when the hypervisor makes no progress several times.
fn hypercall_write(bytes: &[u8]) {
    crate::line::write_all(bytes, HYPERCALL_MAX, 8, |chunk| {
        psci::call(
            NMV_CONSOLE_WRITE,
            chunk.as_ptr() as u64,
            chunk.len() as u64,
            0,
        ) as i64
    });
}

/// Holds the console lock (or nothing, for a nested or forced entry).
pub struct Guard {
    release: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.release {
            OWNER.store(FREE, Ordering::Release);
        }
    }
}

fn lock() -> Guard {
    let me = crate::cpu::index();
    if OWNER.load(Ordering::Relaxed) == me {
        return Guard { release: false };
    }
    let got = crate::cpu::wait_ms(LOCK_TIMEOUT_MS, || {
        OWNER
            .compare_exchange(FREE, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    });
    if !got {
        // The owner is stuck: print anyway.
        OWNER.store(me, Ordering::Release);
    }
    Guard { release: true }
}
