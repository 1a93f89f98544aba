//! Each VM's PL011: MMIO from the guest, transmitted bytes to the console,
//! console input to the VM that has the focus, and the UART's interrupt
//! line into the vGIC.
//!
//! The UART lock is taken with normal interrupts masked (console input
//! arrives in an interrupt handler), and never from the NMI path. The vGIC
//! lock nests inside it (a changed interrupt level is driven with the UART
//! locked); nothing takes them in the other order.

use super::guest::{self, Vm};
use super::memmap;
use crate::arch::esr::MmioAccess;
use crate::gic::mask::IrqGuard;
use crate::println;
use crate::vgic::sgi::TargetSet;
use core::sync::atomic::{AtomicUsize, Ordering};

/// The VM console input goes to (an index into the VM table).
static FOCUS: AtomicUsize = AtomicUsize::new(0);

/// A guest access to its PL011. Returns the value for a read.
pub fn mmio(vm: &Vm, access: &MmioAccess, offset: u64, value: u64) -> Option<u64> {
    let (read, effect, kick) = {
        let _masked = IrqGuard::new();
        let mut uart = vm.uart.lock();
        let (read, effect) = if access.write {
            (None, uart.write(offset, access.size, value))
        } else {
            let (v, e) = uart.read(offset, access.size);
            (Some(v), e)
        };
        let kick = drive_irq(vm, uart.irq_level());
        (read, effect, kick)
    };
    if let Some(byte) = effect.tx {
        vm.console_write(&[byte]);
    }
    if effect.unhandled {
        super::trap::log_guest(vm, "PL011 register not emulated, RAZ/WI", offset);
    }
    send_kick(vm, kick);
    read
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
    crate::vgic::hw::lock(vm).vgic.set_level(0, memmap::UART_INTID, level)
}

/// Kicks the vCPU the UART's SPI went to (after `vm.uart` is unlocked).
fn send_kick(vm: &Vm, target: Option<usize>) {
    if let Some(t) = target {
        let mut set = TargetSet::default();
        set.insert(t);
        crate::vgic::hw::kick(vm, set);
    }
}

/// Console input for the VM that has the focus. Bytes that do not fit its
/// receive FIFO are dropped and counted by the model, like a real UART's
/// overrun.
pub fn console_input(bytes: &[u8]) {
    let vms = guest::vms();
    let Some(vm) = vms.get(FOCUS.load(Ordering::Relaxed)) else { return };
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
