//! The console monitor's escape sequence, read from the physical UART before
//! guest input is passed on.
//!
//! Ctrl-] pressed three times in a row, then one key, runs a command:
//! see [`HELP`]. A fourth Ctrl-] sends one literal Ctrl-] to the guest, and any
//! other key just leaves the monitor. Bytes that start an escape but do not
//! complete it are handed back, so guest input is delayed but never lost.

use core::ops::Deref;

/// Ctrl-], as telnet and QEMU users know it.
pub const ESCAPE: u8 = 0x1d;
/// How many [`ESCAPE`]s in a row enter the monitor.
const ESCAPES_TO_ENTER: u8 = 3;

/// Printed for the help key.
pub const HELP: &str = "\
nmivisor monitor: press Ctrl-] three times, then
  d      dump every CPU (NMI backtrace of all CPUs)
  c      dump this CPU
  n      send console input to the next VM
  h, ?   show this help
  Ctrl-] send one Ctrl-] to the guest
  any other key returns to the guest
";

/// What the monitor was asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorCommand {
    /// Dump every CPU.
    DumpAll,
    /// Dump the CPU that reads the console.
    DumpThis,
    /// Move console input focus to the next VM.
    NextVm,
    /// Print [`HELP`].
    Help,
    /// `w`, test images only (not in the help): the highest-numbered CPU
    /// spins with interrupts masked until the lockup watchdog reports it,
    /// so a scenario can make the watchdog fire while guests run.
    WatchdogTest,
}

/// What to do with an input byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Pass these bytes on to the guest, in order.
    Forward(Bytes),
    /// Run a monitor command.
    Command(MonitorCommand),
    /// The byte was taken by the monitor; nothing to do yet.
    Nothing,
}

/// Up to [`Bytes::CAPACITY`] bytes to forward, without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes {
    buf: [u8; Self::CAPACITY],
    len: u8,
}

impl Bytes {
    /// The most a single [`Monitor::feed`] can release: the held escapes plus
    /// the byte that broke the sequence.
    pub const CAPACITY: usize = ESCAPES_TO_ENTER as usize;

    fn new(held_escapes: u8, then: Option<u8>) -> Self {
        let mut bytes = Bytes {
            buf: [ESCAPE; Self::CAPACITY],
            len: held_escapes,
        };
        if let Some(b) = then {
            bytes.buf[usize::from(held_escapes)] = b;
            bytes.len += 1;
        }
        bytes
    }

    /// The bytes as a slice.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// The escape-sequence state machine; one per console.
#[derive(Clone, Debug, Default)]
pub struct Monitor {
    /// Escapes seen in a row; [`ESCAPES_TO_ENTER`] means "in the monitor".
    escapes: u8,
}

impl Monitor {
    /// Not in an escape sequence.
    pub const fn new() -> Self {
        Monitor { escapes: 0 }
    }

    /// Whether the next byte is taken as a monitor key.
    #[cfg(test)]
    pub fn is_active(&self) -> bool {
        self.escapes == ESCAPES_TO_ENTER
    }

    /// Processes one input byte.
    pub fn feed(&mut self, byte: u8) -> Action {
        let held = self.escapes;
        if held == ESCAPES_TO_ENTER {
            self.escapes = 0;
            return match byte {
                ESCAPE => Action::Forward(Bytes::new(1, None)),
                b'd' => Action::Command(MonitorCommand::DumpAll),
                b'c' => Action::Command(MonitorCommand::DumpThis),
                b'n' => Action::Command(MonitorCommand::NextVm),
                b'w' => Action::Command(MonitorCommand::WatchdogTest),
                b'h' | b'?' => Action::Command(MonitorCommand::Help),
                _ => Action::Nothing,
            };
        }
        if byte == ESCAPE {
            self.escapes += 1;
            return Action::Nothing;
        }
        self.escapes = 0;
        Action::Forward(Bytes::new(held, Some(byte)))
    }

    /// Gives back escapes held for a sequence that was never completed, e.g.
    /// after the console has been idle for a while. Does not leave the monitor
    /// once it has been entered.
    #[cfg(test)]
    pub fn flush(&mut self) -> Bytes {
        if self.is_active() {
            return Bytes::new(0, None);
        }
        let held = core::mem::take(&mut self.escapes);
        Bytes::new(held, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// Feeds `input` and returns everything forwarded plus the commands.
    fn run(m: &mut Monitor, input: &[u8]) -> (Vec<u8>, Vec<MonitorCommand>) {
        let (mut out, mut cmds) = (Vec::new(), Vec::new());
        for &b in input {
            match m.feed(b) {
                Action::Forward(bytes) => out.extend_from_slice(&bytes),
                Action::Command(c) => cmds.push(c),
                Action::Nothing => {}
            }
        }
        (out, cmds)
    }

    const E: u8 = ESCAPE;

    #[test]
    fn plain_input_passes_through() {
        let mut m = Monitor::new();
        assert_eq!(m.feed(b'x'), Action::Forward(Bytes::new(0, Some(b'x'))));
        assert_eq!(run(&mut m, b"ls -l\r"), (b"ls -l\r".to_vec(), vec![]));
    }

    #[test]
    fn commands() {
        for (key, cmd) in [
            (b'd', MonitorCommand::DumpAll),
            (b'c', MonitorCommand::DumpThis),
            (b'n', MonitorCommand::NextVm),
            (b'w', MonitorCommand::WatchdogTest),
            (b'h', MonitorCommand::Help),
            (b'?', MonitorCommand::Help),
        ] {
            let mut m = Monitor::new();
            assert_eq!(run(&mut m, &[E, E, E]), (vec![], vec![]));
            assert!(m.is_active());
            assert_eq!(m.feed(key), Action::Command(cmd));
            assert!(!m.is_active(), "one key per escape");
            assert_eq!(run(&mut m, b"d"), (b"d".to_vec(), vec![]));
        }
    }

    #[test]
    fn four_escapes_send_one() {
        let mut m = Monitor::new();
        assert_eq!(run(&mut m, &[E, E, E, E, b'a']), (vec![E, b'a'], vec![]));
        assert_eq!(run(&mut m, &[E; 8]), (vec![E, E], vec![]));
    }

    #[test]
    fn unknown_key_leaves_the_monitor() {
        let mut m = Monitor::new();
        assert_eq!(run(&mut m, &[E, E, E, b'q']), (vec![], vec![]));
        assert!(!m.is_active());
        assert_eq!(run(&mut m, b"q"), (b"q".to_vec(), vec![]));
    }

    #[test]
    fn incomplete_escapes_are_forwarded() {
        let mut m = Monitor::new();
        assert_eq!(m.feed(E), Action::Nothing);
        assert_eq!(m.feed(b'd'), Action::Forward(Bytes::new(1, Some(b'd'))));
        assert_eq!(run(&mut m, &[E, E, b'd']), (vec![E, E, b'd'], vec![]));
        assert_eq!(
            run(&mut m, &[E, E, b'x', E, E, E, b'c']),
            (vec![E, E, b'x'], vec![MonitorCommand::DumpThis])
        );
    }

    #[test]
    fn flush_releases_held_escapes() {
        let mut m = Monitor::new();
        run(&mut m, &[E, E]);
        assert_eq!(m.flush().as_slice(), [E, E]);
        assert_eq!(m.flush().as_slice(), []);
        assert_eq!(m.feed(b'd'), Action::Forward(Bytes::new(0, Some(b'd'))));

        run(&mut m, &[E, E, E]);
        assert!(m.flush().is_empty());
        assert_eq!(m.feed(b'd'), Action::Command(MonitorCommand::DumpAll));
    }

    #[test]
    fn help_lists_every_key() {
        for key in ["d ", "c ", "h, ?", "Ctrl-]"] {
            assert!(HELP.contains(key), "{key}");
        }
    }
}
