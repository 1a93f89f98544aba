//! CPU_SUSPEND with a standby power state.
//!
//! The guest runs with interrupts masked, and a standby (QEMU implements
//! it as WFI) only ends when the GIC signals an interrupt. So before the
//! call the case arms the virtual timer 1 ms ahead, with its interrupt
//! unmasked at the timer and enabled at the GIC (PPI 27, Group 1) but
//! masked in PSTATE: it wakes the CPU without being taken. Afterwards the
//! case acknowledges and ends the interrupt through ICC_IAR1/EOIR1 so no
//! pending or active state is left behind.

use super::Outcome;
use crate::entry::{secondary_entry_address, RESUME_CONTEXT};
use crate::{fail, gic, psci, timer};

/// Original power_state format: standby (StateType 0), power level 0,
/// StateID 0.
const STANDBY: u64 = 0;

pub fn cpu_suspend() -> Outcome {
    let g = match gic::get() {
        Ok(g) => g,
        Err(why) => fail!("cannot route the wake-up timer: {why}"),
    };
    if let Err(why) = g.init_distributor().and_then(|_| g.init_this_cpu()) {
        fail!("cannot set up the GIC for the wake-up interrupt: {why}");
    }
    let vtimer = g.irq(timer::VTIMER_INTID);
    vtimer.set_priority(timer::PRIORITY);
    vtimer.enable();
    timer::arm_in(crate::cpu::ticks_from_ms(1));
    let r = psci::cpu_suspend(STANDBY, secondary_entry_address(), RESUME_CONTEXT);
    let fired = timer::fired();
    // Leave the GIC clean, as an OS taking the interrupt would: acknowledge
    // (the timer still asserts it), silence the timer, then end it.
    let intid = gic::acknowledge();
    timer::disarm();
    if !gic::is_special(intid) {
        gic::end_of_interrupt(intid);
    }
    vtimer.disable();
    if r != psci::SUCCESS {
        fail!("CPU_SUSPEND(standby) = {r}, want 0 (timer condition met: {fired})");
    }
    Ok(None)
}
