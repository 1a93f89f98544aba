//! Where every exception lands, the top of the layer order (`main.rs`):
//! the vectors call [`handle_exception`], which sends a guest's traps to
//! `vm`, physical interrupts to their owners (the NMI SGI's messages to
//! `debug`'s roundup, the EL2 tick, the console UART, the vGIC's forwarded
//! and maintenance interrupts) and what nothing handles to `debug::dump`.
//! It is the only module that knows every layer's handler.
//!
//! Physical interrupts at EL2: with EOImode=1 the handler first
//! acknowledges (IAR1), and only after the work is done drops the priority
//! (EOIR1) and deactivates (DIR).
//!
//! - The NMI SGI runs with PSTATE.I still set: nothing preempts it.
//! - Every other interrupt runs with PSTATE.I clear. Its running priority
//!   (0xa0) keeps other normal interrupts out, but an NMI (0x20) can preempt
//!   a long handler such as a console-triggered dump.

use crate::arch::gicv3;
use crate::arch::vectors::{TrapFrame, VectorKind};
use crate::gic::driver::{uart_intid, EL2_TIMER_INTID};
use crate::ipi::message::Message;
use crate::platform::interrupts::Sgi;
use crate::vm::vgic::{forwarded_interrupt, FORWARDED, MAINTENANCE_INTID};

/// Vector sources (VectorKind::source) and types (VectorKind::exception_type).
const FROM_EL2_SPX: u64 = 1;
const FROM_LOWER_A64: u64 = 2;
const FROM_LOWER_A32: u64 = 3;
const SYNC: u64 = 0;
const IRQ: u64 = 1;

/// INTIDs 1020..1023 are special: nothing to handle (GICv3 spec 2.2.1).
const SPURIOUS_START: u32 = 1020;

/// Called by every vector with the trap frame it built. Returning resumes
/// the interrupted context through `exception_return`.
#[no_mangle]
extern "C" fn handle_exception(kind: u64, frame: &mut TrapFrame) {
    let kind = VectorKind(kind);
    match (kind.source(), kind.exception_type()) {
        (FROM_EL2_SPX, IRQ) => handle_irq(frame, None),
        (FROM_LOWER_A64 | FROM_LOWER_A32, ty) => {
            // Looked up once per exit: a vCPU stays pinned to its CPU.
            let current = crate::vm::guest::current();
            match ty {
                // The NMI SGI is handled before the guest exit folds the
                // list registers under the vGIC lock (see handle_irq).
                IRQ => handle_irq(frame, Some(crate::vm::run::guest_exited)),
                SYNC => {
                    // A lower-EL trap with no vCPU here cannot happen; say
                    // so and stop this CPU rather than return into an
                    // unknown EL1.
                    let Some(current) = current else {
                        unexpected(kind, frame)
                    };
                    crate::debug::guest_dump::note_trap();
                    crate::vm::run::guest_exited_on(Some(current));
                    crate::vm::trap::handle_sync(frame, current)
                }
                // A guest's SError or FIQ is the guest's problem, never a
                // reason to stop the hypervisor: note it and resume.
                _ => {
                    crate::vm::run::guest_exited_on(current);
                    crate::vm::trap::log_async(kind, frame)
                }
            }
            crate::vm::run::resume_guest(current);
        }
        _ => unexpected(kind, frame),
    }
}

/// An exception nmivisor has no handler for: dump everything and halt this
/// CPU. The other CPUs go on.
fn unexpected(kind: VectorKind, frame: &TrapFrame) -> ! {
    crate::debug::dump::unexpected_exception(kind, frame);
    crate::arch::cpu::halt()
}

/// Handles one physical interrupt taken while `frame` was interrupted.
///
/// `guest_exited` is the work a guest exit needs before thread-context
/// code may look at the vGIC (folding the list registers, which takes the
/// VM's vGIC lock). It runs only after the NMI SGI has been handled: the
/// NMI path takes no lock that thread context can hold, so a CPU parked by
/// STOP or CRASH_STOP while it holds a vGIC lock cannot keep the other
/// CPUs of its VM from answering the NMI.
///
/// Inlined into [`handle_exception`]: a call frame here cost every
/// interrupt exit about 15 instructions.
#[inline(always)]
fn handle_irq(frame: &TrapFrame, guest_exited: Option<fn()>) {
    let exited = || {
        if let Some(f) = guest_exited {
            f();
        }
    };
    let intid = gicv3::acknowledge();
    if intid >= SPURIOUS_START {
        exited();
        return;
    }
    if Sgi::from_intid(intid) == Some(Sgi::Nmi) {
        handle_messages(Sgi::Nmi, frame);
        gicv3::end_of_interrupt(intid);
        gicv3::deactivate(intid);
        exited();
        return;
    }
    exited();

    if FORWARDED.contains(&intid) {
        // A timer or the PMU, handed to the guest through a HW list
        // register: the next entry sets the physical active state from the
        // virtual one, and the guest's deactivation deactivates it.
        let linked = forwarded_interrupt(intid);
        gicv3::end_of_interrupt(intid);
        if !linked {
            gicv3::deactivate(intid);
        }
        return;
    }

    gicv3::local_irq_unmask();
    match intid {
        i if Sgi::from_intid(i) == Some(Sgi::Kick) => handle_messages(Sgi::Kick, frame),
        EL2_TIMER_INTID => crate::debug::watchdog_hw::tick(frame),
        // Taking the guest exit was the point: the list registers are
        // refilled before the guest resumes.
        MAINTENANCE_INTID => {}
        i if Some(i) == uart_intid() => crate::debug::monitor_hw::uart_interrupt(),
        other => crate::console::ratelimit::log_unexpected_irq(other),
    }
    gicv3::local_irq_mask();
    gicv3::end_of_interrupt(intid);
    gicv3::deactivate(intid);
}

/// Handles every message waiting on `sgi` for this CPU.
fn handle_messages(sgi: Sgi, frame: &TrapFrame) {
    for msg in crate::ipi::hw::take_messages(sgi) {
        match msg {
            Message::Backtrace => crate::debug::roundup::on_backtrace(frame),
            Message::CrashStop => crate::debug::roundup::on_crash_stop(frame),
            Message::Stop => crate::debug::roundup::on_stop(),
            Message::Debug => crate::debug::roundup::on_debug(frame),
            // The idle loop runs queued work once this handler returns.
            Message::CallFunction => {}
            // Leaving the guest was the point: the list registers are
            // refilled on the way back in.
            Message::VcpuKick | Message::VcpuNmiKick => {}
        }
    }
}
