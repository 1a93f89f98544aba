//! The console monitor's hardware side: the UART receive interrupt feeds
//! every byte to the escape-sequence state machine in [`super::monitor`].

use super::monitor::{Action, Monitor, MonitorCommand, HELP};
use crate::arch::Mutex;
use crate::println;

/// Only the CPU the UART interrupt is routed to takes this lock, from its
/// interrupt handler; NMI paths never touch it.
static MONITOR: Mutex<Monitor> = Mutex::new(Monitor::new());

/// The UART RX (or RX timeout) interrupt: drain the FIFO through the monitor.
pub fn uart_interrupt() {
    while let Some(byte) = crate::console::read_byte() {
        let action = MONITOR.lock().feed(byte);
        match action {
            Action::Command(MonitorCommand::DumpAll) => {
                super::roundup::dump_all_cpus("console monitor")
            }
            Action::Command(MonitorCommand::DumpThis) => super::roundup::dump_this_cpu(),
            Action::Command(MonitorCommand::Help) => println!("{HELP}"),
            Action::Command(MonitorCommand::NextVm) => crate::vm::uart::next_focus(),
            #[cfg(feature = "test-hooks")]
            Action::Command(MonitorCommand::WatchdogTest) => super::watchdog_hw::watchdog_blip(),
            #[cfg(not(feature = "test-hooks"))]
            Action::Command(MonitorCommand::WatchdogTest) => {}
            Action::Forward(bytes) => crate::vm::uart::console_input(&bytes),
            Action::Nothing => {}
        }
    }
}
