//! Console output: `print!`/`println!` for every CPU and every context.
//!
//! Every `println!` holds the console lock for its whole line, so lines from
//! different CPUs never interleave. The lock is owner-CPU re-entrant
//! ([`super::lock`]): an NMI that lands while its own CPU is printing can
//! still print, and a crash path that cannot get the lock in time takes it
//! anyway ("busts" it) rather than staying silent.

#[cfg(target_os = "none")]
use core::fmt::{self, Write};

/// How long a normal print waits for another CPU's output before busting.
#[cfg(target_os = "none")]
const PRINT_TIMEOUT_US: u64 = 1_000_000;
/// How long a crash or NMI dump waits before busting.
#[cfg(target_os = "none")]
const CRASH_TIMEOUT_US: u64 = 100_000;

#[cfg(target_os = "none")]
mod hw {
    use super::super::lock::{CpuLock, CpuLockGuard};
    use crate::arch::{cpu, percpu};
    use arm_pl011_uart::{Interrupts, PL011Registers, Uart};
    use core::fmt;
    use core::ptr::NonNull;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use safe_mmio::UniqueMmioPointer;

    static LOCK: CpuLock = CpuLock::new();
    /// Physical (= virtual, identity-mapped) base of the PL011, 0 before init.
    static UART_BASE: AtomicUsize = AtomicUsize::new(0);

    /// Records the PL011's base.
    pub fn init(base: u64) {
        UART_BASE.store(base as usize, Ordering::Release);
    }

    /// Takes the console lock for this CPU, busting it after `timeout_us`.
    pub fn lock(timeout_us: u64) -> CpuLockGuard<'static> {
        let cpu = percpu::cpu_id();
        let deadline = cpu::deadline_after_us(timeout_us);
        LOCK.lock(cpu, || cpu::counter() >= deadline)
    }

    /// Takes the console lock only if it is free (no waiting, no nesting).
    pub fn try_lock() -> Option<CpuLockGuard<'static>> {
        LOCK.try_lock(percpu::cpu_id())
    }

    /// The PL011 as an arm-pl011-uart driver, if the console is set up.
    fn uart() -> Option<Uart<'static>> {
        let base = NonNull::new(UART_BASE.load(Ordering::Acquire) as *mut PL011Registers)?;
        // SAFETY: `base` is the PL011 from the device tree, mapped as device
        // memory. Output goes through the console lock; input is read only
        // by the CPU its interrupt is routed to. After a bust on a crash path
        // two CPUs may interleave bytes, but every access is still a plain
        // MMIO register access.
        Some(Uart::new(unsafe { UniqueMmioPointer::new(base) }))
    }

    /// The next received byte; bytes with framing or parity errors are dropped.
    pub fn read_byte() -> Option<u8> {
        let mut uart = uart()?;
        loop {
            match uart.read_word() {
                Ok(byte) => return byte,
                Err(_) => continue,
            }
        }
    }

    /// Raises the UART interrupt when bytes arrive (RX and RX timeout).
    pub fn enable_rx_interrupt() {
        if let Some(mut uart) = uart() {
            uart.set_interrupt_masks(Interrupts::RXI | Interrupts::RTI);
        }
    }

    /// Writes bytes to the PL011 as they are.
    pub fn write_raw(bytes: &[u8]) {
        let Some(mut uart) = uart() else { return };
        for &b in bytes {
            while uart.is_tx_fifo_full() {}
            uart.write_word(b);
        }
    }

    /// Writes bytes to the PL011, turning "\n" into "\r\n".
    pub struct Port;

    impl fmt::Write for Port {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let Some(mut uart) = uart() else {
                return Ok(());
            };
            for b in s.bytes() {
                if b == b'\n' {
                    while uart.is_tx_fifo_full() {}
                    uart.write_word(b'\r');
                }
                while uart.is_tx_fifo_full() {}
                uart.write_word(b);
            }
            Ok(())
        }
    }
}

/// Sets the PL011 the console writes to. Output before this is dropped.
#[cfg(target_os = "none")]
pub fn init(base: u64) {
    hw::init(base);
}

#[cfg(target_os = "none")]
pub use hw::{enable_rx_interrupt, read_byte};

/// Holds the console for a block of lines (a dump) and releases it when
/// dropped. Prints inside it re-enter the lock.
#[cfg(target_os = "none")]
pub struct ConsoleGuard {
    lock: super::lock::CpuLockGuard<'static>,
}

#[cfg(target_os = "none")]
impl ConsoleGuard {
    /// The lock was taken by force after its owner did not let go in time,
    /// so this output may interleave with the old owner's.
    pub fn busted(&self) -> bool {
        self.lock.acquired() == super::lock::Acquired::Busted
    }
}

/// Takes the console for a block of normal output.
#[cfg(target_os = "none")]
pub fn lock() -> ConsoleGuard {
    ConsoleGuard {
        lock: hw::lock(PRINT_TIMEOUT_US),
    }
}

/// Takes the console for a crash or NMI dump: waits at most 100 ms.
#[cfg(target_os = "none")]
pub fn lock_for_crash() -> ConsoleGuard {
    ConsoleGuard {
        lock: hw::lock(CRASH_TIMEOUT_US),
    }
}

/// Takes the console if no CPU (this one included) holds it; None at once
/// otherwise. Queued guest output is moved this way, so it never waits
/// behind, or splits, anyone else's line.
#[cfg(target_os = "none")]
pub fn try_lock() -> Option<ConsoleGuard> {
    hw::try_lock().map(|lock| ConsoleGuard { lock })
}

/// Set while a guest's raw output has left the terminal in the middle of a
/// line; only changed under the console lock.
#[cfg(target_os = "none")]
static GUEST_MIDLINE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Writes bytes to the console unchanged (a guest's terminal output), under
/// the console lock.
#[cfg(target_os = "none")]
pub fn write_raw(bytes: &[u8]) {
    let _guard = lock();
    hw::write_raw(bytes);
    if let Some(&last) = bytes.last() {
        GUEST_MIDLINE.store(last != b'\n', core::sync::atomic::Ordering::Relaxed);
    }
}

/// What `print!`/`println!` expand to: one formatted write under the console lock.
#[doc(hidden)]
#[cfg(target_os = "none")]
pub fn _print(args: fmt::Arguments) {
    let _guard = lock();
    // The hypervisor's lines start on a line of their own, even when a
    // guest's output stopped mid-line (a prompt, a half-written line).
    if GUEST_MIDLINE.swap(false, core::sync::atomic::Ordering::Relaxed) {
        hw::write_raw(b"\r\n");
    }
    let _ = hw::Port.write_fmt(args);
}

/// Prints to the hypervisor console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints a whole line to the hypervisor console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// A fixed-size buffer for assembling one line without the heap (usable
/// from exception and NMI context). Overflow is marked with "...", never
/// dropped silently (the `line-buf` crate, shared with guest-test).
#[cfg(target_os = "none")]
pub type LineBuf = line_buf::Line<160>;
