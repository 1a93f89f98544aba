//! Each VM's PL011: MMIO from the guest, its transmit queue to the
//! console, console input to the VM that has the focus, and the UART's
//! interrupt line into the vGIC.
//!
//! Transmitted bytes wait in the VM's own queue (the model's TX FIFO,
//! [`TX_QUEUE`](crate::devices::pl011::TX_QUEUE) bytes) and [`drain`] moves
//! them to the real console, a bounded turn per VM in round robin, only
//! when the console is free. So a VM that floods its UART fills its own
//! queue and then waits on TXFF like on a slow UART; the other VMs and the
//! hypervisor's own lines wait for at most one turn.
//!
//! The UART lock is taken with normal interrupts masked (console input
//! arrives in an interrupt handler), and never from the NMI path. The vGIC
//! lock nests inside it (a changed interrupt level is driven with the UART
//! locked); nothing takes them in the other order.

use super::console::{escape_into, Discipline, MAX_LINE};
use super::guest::{self, Vm};
use super::memmap;
use crate::arch::esr::MmioAccess;
use crate::gic::mask::IrqGuard;
use crate::println;
use crate::vgic::sgi::TargetSet;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The VM console input goes to (an index into the VM table).
static FOCUS: AtomicUsize = AtomicUsize::new(0);

/// A guest access to its PL011. Returns the value for a read.
pub fn mmio(vm: &Vm, access: &MmioAccess, offset: u64, value: u64) -> Option<u64> {
    let (read, effect, kick, queued) = {
        let _masked = IrqGuard::new();
        let mut uart = vm.uart.lock();
        let (read, effect) = if access.write {
            (None, uart.write(offset, access.size, value))
        } else {
            let (v, e) = uart.read(offset, access.size);
            (Some(v), e)
        };
        let kick = drive_irq(vm, uart.irq_level());
        (read, effect, kick, uart.tx_pending() > 0)
    };
    if effect.unhandled {
        super::trap::log_guest(vm, "PL011 register not emulated, RAZ/WI", offset);
    }
    send_kick(vm, kick);
    // A write queued a byte, or a guest polls UARTFR while its queue is not
    // empty: move what the console can take now.
    if queued {
        drain();
    }
    read
}

/// Queues hypercall console output (NMV_CONSOLE_WRITE) behind the VM's
/// UART output; returns how many bytes fit.
pub fn queue(vm: &Vm, bytes: &[u8]) -> usize {
    let (n, kick) = {
        let _masked = IrqGuard::new();
        let mut uart = vm.uart.lock();
        let n = uart.queue_tx(bytes);
        (n, drive_irq(vm, uart.irq_level()))
    };
    send_kick(vm, kick);
    drain();
    n
}

/// Bytes one VM may put on the console per turn before the next VM's turn
/// (and before a waiting hypervisor line gets the console).
const TURN_BYTES: usize = 64;
/// Bytes one [`drain`] moves at most, so a trap or a tick is never held
/// long; what is left waits for the next drain.
const DRAIN_BYTES: usize = 1024;
/// Set while a CPU drains: one drainer at a time keeps each VM's bytes in
/// order and its line buffer to one writer.
static DRAINING: AtomicBool = AtomicBool::new(false);

/// Moves queued guest output to the console: one turn of at most
/// [`TURN_BYTES`] per VM in round robin, each turn under the console lock,
/// until the queues are empty or [`DRAIN_BYTES`] have moved. Never waits:
/// if another CPU drains or holds the console (this CPU included, when it
/// was interrupted mid-line), the bytes stay queued for the next drain,
/// which the writer's next access or the EL2 tick (every CPU, 100 ms)
/// brings. Runs in thread or normal interrupt context, never from the NMI
/// path.
pub fn drain() {
    if DRAINING.swap(true, Ordering::Acquire) {
        return;
    }
    let vms = guest::vms();
    let several = vms.len() > 1;
    let mut moved = 0;
    'rounds: while moved < DRAIN_BYTES {
        let mut any = false;
        for vm in vms {
            let Some(console) = crate::console::try_lock() else {
                break 'rounds;
            };
            let mut chunk = [0u8; TURN_BYTES];
            let n = {
                // The lock guard is a named local so that it is released
                // before the mask: a temporary in a block's tail would
                // outlive `_masked` (edition 2021), and a console interrupt
                // taken in between would spin on the lock this CPU holds.
                let _masked = IrqGuard::new();
                let mut uart = vm.uart.lock();
                uart.take_tx(&mut chunk)
            };
            match (n, several) {
                // Most drains (the EL2 tick's) find nothing queued.
                (0, _) => {}
                (_, true) => print_lines(vm, &chunk[..n]),
                (_, false) => print_raw(&chunk[..n]),
            }
            drop(console);
            // Draining below half raises the TX interrupt the guest's
            // driver waits for. Driven after the console is released: the
            // console lock is never held while the vGIC lock is awaited.
            if n > 0 {
                let kick = {
                    let _masked = IrqGuard::new();
                    let uart = vm.uart.lock();
                    drive_irq(vm, uart.irq_level())
                };
                send_kick(vm, kick);
            }
            moved += n;
            any |= n > 0;
        }
        if !any {
            break;
        }
    }
    DRAINING.store(false, Ordering::Release);
}

/// A single VM owns the terminal: its bytes go out escaped but unbuffered,
/// so prompts and line editing work.
fn print_raw(bytes: &[u8]) {
    let mut out = [0u8; TURN_BYTES * 4];
    let (_, n) = escape_into(bytes, Discipline::Terminal, &mut out);
    crate::console::write_raw(&out[..n]);
}

/// Several VMs share the terminal: whole lines, escaped, with the VM's name.
fn print_lines(vm: &Vm, bytes: &[u8]) {
    let mut line = vm.console_lines.lock();
    line.push(bytes, |text, continued| {
        let mut out = [0u8; MAX_LINE * 4];
        let (_, n) = escape_into(text, Discipline::Line, &mut out);
        let text = core::str::from_utf8(&out[..n]).unwrap_or("");
        let cont = if continued { "\\" } else { "" };
        println!("[{}] {text}{cont}", vm.name);
    });
}

/// How long [`flush`] waits for the console.
const FLUSH_TIMEOUT_US: u64 = 1_000_000;

/// Moves everything `vm` has queued to the console before the VM stops, so
/// its last words are not lost; waits at most [`FLUSH_TIMEOUT_US`] for a
/// busy console.
pub fn flush(vm: &Vm) {
    let pending = || {
        let _masked = IrqGuard::new();
        let uart = vm.uart.lock();
        uart.tx_pending()
    };
    let deadline = crate::arch::cpu::deadline_after_us(FLUSH_TIMEOUT_US);
    while pending() > 0 && crate::arch::cpu::counter() < deadline {
        drain();
        crate::arch::relax();
    }
}
/// Drives the UART's SPI to `level` if that is not the level it was last
/// driven to (an unchanged level changes nothing in the vGIC: a level
/// interrupt stays as it is, an edge one needs a rising edge). Call with
/// `vm.uart` locked, so that the changes reach the vGIC in order. Returns
/// the vCPU to kick.
fn drive_irq(vm: &Vm, level: bool) -> Option<usize> {
    if vm.uart_level.load(Ordering::Acquire) == u8::from(level) {
        return None;
    }
    vm.uart_level.store(u8::from(level), Ordering::Release);
    super::vgic::lock(vm)
        .vgic
        .set_level(0, memmap::UART_INTID, level)
}

/// Kicks the vCPU the UART's SPI went to (after `vm.uart` is unlocked).
fn send_kick(vm: &Vm, target: Option<usize>) {
    if let Some(t) = target {
        let mut set = TargetSet::default();
        set.insert(t);
        super::vgic::kick(vm, set);
    }
}

/// Console input for the VM that has the focus. Bytes that do not fit its
/// receive FIFO are dropped and counted by the model, like a real UART's
/// overrun.
pub fn console_input(bytes: &[u8]) {
    let vms = guest::vms();
    let Some(vm) = vms.get(FOCUS.load(Ordering::Relaxed)) else {
        return;
    };
    let kick = {
        let _masked = IrqGuard::new();
        let mut uart = vm.uart.lock();
        for &b in bytes {
            uart.receive(b);
        }
        drive_irq(vm, uart.irq_level())
    };
    send_kick(vm, kick);
}

/// Moves console input to the next VM and says which one has it.
pub fn next_focus() {
    let vms = guest::vms();
    if vms.is_empty() {
        println!("nmivisor: no VM to send console input to");
        return;
    }
    let next = (FOCUS.load(Ordering::Relaxed) + 1) % vms.len();
    FOCUS.store(next, Ordering::Relaxed);
    println!("nmivisor: console input goes to vm {}", vms[next].name);
}

/// Whether `ipa` is the PL011's.
pub fn is_uart(ipa: u64) -> bool {
    memmap::UART.contains(&ipa)
}
