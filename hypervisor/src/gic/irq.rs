//! Taking physical interrupts at EL2.
//!
//! With EOImode=1 the handler first acknowledges (IAR1), and only after the
//! work is done drops the priority (EOIR1) and deactivates (DIR).
//!
//! - The NMI SGI runs with PSTATE.I still set: nothing preempts it.
//! - Every other interrupt runs with PSTATE.I clear. Its running priority
//!   (0xa0) keeps other normal interrupts out, but an NMI (0x20) can preempt
//!   a long handler such as a console-triggered dump.

use super::driver::{uart_intid, EL2_TIMER_INTID};
use crate::arch::gicv3;
use crate::arch::vectors::TrapFrame;
use crate::ipi::message::Sgi;
use crate::vgic::hw::{forwarded_interrupt, FORWARDED, MAINTENANCE_INTID};

/// INTIDs 1020..1023 are special: nothing to handle (GICv3 spec 2.2.1).
const SPURIOUS_START: u32 = 1020;

/// Handles one physical interrupt taken while `frame` was interrupted.
///
/// `guest_exited` is the work a guest exit needs before thread-context
/// code may look at the vGIC (folding the list registers, which takes the
/// VM's vGIC lock). It runs only after the NMI SGI has been handled: the
/// NMI path takes no lock that thread context can hold, so a CPU parked by
/// STOP or CRASH_STOP while it holds a vGIC lock cannot keep the other
/// CPUs of its VM from answering the NMI.
pub fn handle_irq(frame: &TrapFrame, guest_exited: Option<fn()>) {
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
        crate::ipi::hw::handle_sgi(Sgi::Nmi, frame);
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
        i if Sgi::from_intid(i) == Some(Sgi::Kick) => crate::ipi::hw::handle_sgi(Sgi::Kick, frame),
        EL2_TIMER_INTID => crate::debug::watchdog_hw::tick(frame),
        // Taking the guest exit was the point: the list registers are
        // refilled before the guest resumes.
        MAINTENANCE_INTID => {}
        i if Some(i) == uart_intid() => crate::debug::monitor_hw::uart_interrupt(),
        other => crate::debug::ratelimit::log_unexpected_irq(other),
    }
    gicv3::local_irq_mask();
    gicv3::end_of_interrupt(intid);
    gicv3::deactivate(intid);
}
