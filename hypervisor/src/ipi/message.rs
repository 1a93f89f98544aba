//! The messages the SGI multiplexer carries and the one table that assigns
//! each to a physical SGI, like Linux's `ipi_should_be_nmi`.

use core::fmt;

pub use crate::platform::interrupts::Sgi;

/// Declares [`Message`] from the table below, so that adding a message is one
/// table line: its name and the SGI that carries it.
macro_rules! message_table {
    ($($(#[$doc:meta])* $name:ident => $sgi:ident,)*) => {
        /// A message carried on one of the two SGIs. Its discriminant is its bit
        /// in the mailbox word, and table order is the order a receiver handles
        /// pending messages in.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Message {
            $($(#[$doc])* $name,)*
        }

        impl Message {
            /// Every message, in table (and handling) order.
            pub const ALL: &'static [Message] = &[$(Message::$name),*];

            /// The SGI this message travels on.
            pub const fn sgi(self) -> Sgi {
                match self {
                    $(Message::$name => Sgi::$sgi,)*
                }
            }

            /// Name for logs.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Message::$name => stringify!($name),)*
                }
            }
        }
    };
}

// Messages whose handlers return come before those that may park the CPU, so
// that a backtrace requested together with a stop is still printed.
message_table! {
    /// Print this CPU's backtrace (the hypervisor-wide stack dump).
    Backtrace => Nmi,
    /// Enter the debug roundup.
    Debug => Nmi,
    /// Exit the guest at once: a virtual interrupt at NMI priority is
    /// pending for this CPU's vCPU (it must get through even while this CPU
    /// runs the hypervisor with normal interrupts masked).
    VcpuNmiKick => Nmi,
    /// Save state for a crash dump and park: another CPU is panicking.
    CrashStop => Nmi,
    /// Park this CPU for good (orderly stop).
    Stop => Nmi,
    /// Run the queued cross-CPU function call.
    CallFunction => Kick,
    /// Exit the guest so a vCPU's new pending state is noticed.
    VcpuKick => Kick,
}

const _: () = assert!(
    Message::ALL.len() <= 32,
    "a mailbox word holds at most 32 messages"
);

impl Message {
    /// The message's bit in its SGI's mailbox word.
    pub const fn bit(self) -> u32 {
        1 << self as u32
    }

    /// Whether this message must get through while normal interrupts are masked.
    #[cfg(test)]
    pub const fn is_nmi(self) -> bool {
        matches!(self.sgi(), Sgi::Nmi)
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The messages taken from one mailbox word. Iterating yields them in table
/// order, whatever order they were posted in.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageSet(u32);

impl MessageSet {
    /// The empty set.
    #[cfg(test)]
    pub const EMPTY: MessageSet = MessageSet(0);

    /// Wraps a raw mailbox word; bits that name no message are ignored.
    pub const fn from_bits(bits: u32) -> Self {
        MessageSet(bits)
    }

    /// Whether no message is pending.
    #[cfg(test)]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether `msg` is in the set.
    #[cfg(test)]
    pub const fn contains(self, msg: Message) -> bool {
        self.0 & msg.bit() != 0
    }
}

impl From<Message> for MessageSet {
    fn from(msg: Message) -> Self {
        MessageSet(msg.bit())
    }
}

impl Iterator for MessageSet {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        while self.0 != 0 {
            let bit = self.0.trailing_zeros();
            self.0 &= self.0 - 1;
            if let Some(&msg) = Message::ALL.get(bit as usize) {
                return Some(msg);
            }
        }
        None
    }
}

impl fmt::Debug for MessageSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(*self).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn table_matches_the_design() {
        let nmi: Vec<_> = Message::ALL
            .iter()
            .copied()
            .filter(|m| m.is_nmi())
            .collect();
        assert_eq!(
            nmi,
            [
                Message::Backtrace,
                Message::Debug,
                Message::VcpuNmiKick,
                Message::CrashStop,
                Message::Stop
            ]
        );
        assert_eq!(Message::CallFunction.sgi(), Sgi::Kick);
        assert_eq!(Message::VcpuKick.sgi(), Sgi::Kick);
    }

    #[test]
    fn bits_are_distinct_and_follow_table_order() {
        for (i, msg) in Message::ALL.iter().enumerate() {
            assert_eq!(msg.bit(), 1 << i);
        }
    }

    #[test]
    fn intids() {
        assert_eq!(Sgi::Kick.intid(), 8);
        assert_eq!(Sgi::Nmi.intid(), 9);
        for sgi in Sgi::ALL {
            assert_eq!(Sgi::from_intid(sgi.intid()), Some(sgi));
            assert!(sgi.intid() < 16);
        }
        assert_eq!(Sgi::from_intid(0), None);
    }

    #[test]
    fn set_iterates_in_table_order() {
        let bits = Message::VcpuKick.bit() | Message::Backtrace.bit() | Message::Stop.bit();
        let set = MessageSet::from_bits(bits | 1 << 31);
        assert!(set.contains(Message::Stop) && !set.contains(Message::Debug));
        let got: Vec<_> = set.collect();
        assert_eq!(got, [Message::Backtrace, Message::Stop, Message::VcpuKick]);
        assert_eq!(MessageSet::EMPTY.count(), 0);
        assert!(MessageSet::from(Message::Debug).contains(Message::Debug));
    }
}
