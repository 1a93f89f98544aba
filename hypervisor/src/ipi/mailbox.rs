//! Per-CPU mailboxes: one atomic word per SGI, one bit per message.
//!
//! A sender sets the message's bit and then sends the SGI; the receiver swaps
//! the word to 0 and handles every bit it got. Each SGI has its own word, so the
//! NMI handler never consumes kick messages (which it could not handle at NMI
//! time) and the kick handler never consumes NMI messages.
//!
//! Posting the same message twice before the receiver takes it delivers it
//! once: messages are "something to do" flags, and any payload lives elsewhere,
//! written before [`Mailbox::post`] (its Release pairs with the Acquire in
//! [`Mailbox::take`]).

use core::ops::Deref;
use core::sync::atomic::{AtomicU32, Ordering};

use super::message::{Message, MessageSet, Sgi};

/// One CPU's pending messages.
#[derive(Debug, Default)]
pub struct Mailbox {
    words: [AtomicU32; Sgi::ALL.len()],
}

impl Mailbox {
    /// An empty mailbox, usable in statics and array initialisers.
    #[allow(clippy::declare_interior_mutable_const)]
    pub const EMPTY: Mailbox = Mailbox::new();

    /// An empty mailbox.
    pub const fn new() -> Self {
        Mailbox {
            words: [AtomicU32::new(0), AtomicU32::new(0)],
        }
    }

    /// Marks `msg` pending and returns the SGI the caller must now send to this
    /// mailbox's CPU (after a barrier that orders the store before the SGI
    /// register write).
    pub fn post(&self, msg: Message) -> Sgi {
        let sgi = msg.sgi();
        self.words[sgi.index()].fetch_or(msg.bit(), Ordering::Release);
        sgi
    }

    /// Takes every message pending on `sgi`, leaving its word empty.
    pub fn take(&self, sgi: Sgi) -> MessageSet {
        MessageSet::from_bits(self.words[sgi.index()].swap(0, Ordering::Acquire))
    }

    /// The messages pending on `sgi`, without taking them.
    #[cfg(test)]
    pub fn peek(&self, sgi: Sgi) -> MessageSet {
        MessageSet::from_bits(self.words[sgi.index()].load(Ordering::Relaxed))
    }
}

/// The mailboxes of up to `N` CPUs, indexed by CPU number.
#[derive(Debug)]
pub struct Mailboxes<const N: usize>([Mailbox; N]);

impl<const N: usize> Mailboxes<N> {
    /// `N` empty mailboxes, usable in a static.
    pub const fn new() -> Self {
        Mailboxes([Mailbox::EMPTY; N])
    }

    /// Posts `msg` to `cpu` and returns the SGI to send, or `None` if there is
    /// no such CPU.
    pub fn post(&self, cpu: usize, msg: Message) -> Option<Sgi> {
        Some(self.0.get(cpu)?.post(msg))
    }
}

impl<const N: usize> Default for Mailboxes<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Gives the slice helpers: `mailboxes.get(cpu)`, `mailboxes.len()`, iteration.
impl<const N: usize> Deref for Mailboxes<N> {
    type Target = [Mailbox];

    fn deref(&self) -> &[Mailbox] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::Arc;
    use std::thread;
    use std::time::{Duration, Instant};

    #[test]
    fn sgis_do_not_consume_each_other() {
        let mb = Mailbox::new();
        assert_eq!(mb.post(Message::Backtrace), Sgi::Nmi);
        assert_eq!(mb.post(Message::VcpuKick), Sgi::Kick);
        assert_eq!(mb.post(Message::Stop), Sgi::Nmi);

        let nmi: Vec<_> = mb.take(Sgi::Nmi).collect();
        assert_eq!(nmi, [Message::Backtrace, Message::Stop]);
        assert!(mb.take(Sgi::Nmi).is_empty(), "take empties the word");
        assert!(mb.peek(Sgi::Kick).contains(Message::VcpuKick));
        let kick: Vec<_> = mb.take(Sgi::Kick).collect();
        assert_eq!(kick, [Message::VcpuKick]);
    }

    #[test]
    fn repeated_posts_coalesce() {
        let mb = Mailbox::new();
        mb.post(Message::CallFunction);
        mb.post(Message::CallFunction);
        assert_eq!(mb.take(Sgi::Kick).count(), 1);
    }

    #[test]
    fn mailboxes_by_cpu() {
        static BOXES: Mailboxes<4> = Mailboxes::new();
        assert_eq!(BOXES.len(), 4);
        assert_eq!(BOXES.post(2, Message::Debug), Some(Sgi::Nmi));
        assert_eq!(BOXES.post(4, Message::Debug), None);
        assert!(BOXES[1].take(Sgi::Nmi).is_empty());
        assert!(BOXES[2].take(Sgi::Nmi).contains(Message::Debug));
    }

    /// One sender thread per message, all posting to one receiver. A sender
    /// posts its message again only after seeing the previous one consumed, so
    /// no post may legitimately coalesce: every post must be taken exactly
    /// once. The payload (the sequence number, written before posting) also
    /// checks that the receiver sees what the sender wrote before the post.
    #[test]
    fn concurrent_senders_lose_and_duplicate_nothing() {
        const ROUNDS: u64 = 20_000;
        const MSGS: usize = Message::ALL.len();

        struct Shared {
            mailbox: Mailbox,
            payload: [AtomicU64; MSGS],
            consumed: [AtomicU64; MSGS],
            stop: AtomicBool,
        }
        let shared = Arc::new(Shared {
            mailbox: Mailbox::new(),
            payload: Default::default(),
            consumed: Default::default(),
            stop: AtomicBool::new(false),
        });
        let deadline = Instant::now() + Duration::from_secs(60);

        let receiver = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                /// Tells the senders to give up if the receiver panics.
                struct StopOnExit<'a>(&'a AtomicBool);
                impl Drop for StopOnExit<'_> {
                    fn drop(&mut self) {
                        self.0.store(true, Ordering::Relaxed);
                    }
                }
                let _stop = StopOnExit(&shared.stop);
                while !shared.stop.load(Ordering::Relaxed) {
                    for sgi in Sgi::ALL {
                        for msg in shared.mailbox.take(sgi) {
                            assert_eq!(msg.sgi(), sgi, "{msg} taken from the wrong word");
                            let i = msg as usize;
                            let seen = shared.consumed[i].load(Ordering::Relaxed);
                            let expected = shared.payload[i].load(Ordering::Relaxed);
                            assert_eq!(expected, seen + 1, "{msg} duplicated or stale");
                            shared.consumed[i].store(seen + 1, Ordering::Release);
                        }
                    }
                    thread::yield_now();
                }
            })
        };

        let senders: Vec<_> = Message::ALL
            .iter()
            .map(|&msg| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || {
                    let i = msg as usize;
                    for seq in 1..=ROUNDS {
                        shared.payload[i].store(seq, Ordering::Relaxed);
                        shared.mailbox.post(msg);
                        while shared.consumed[i].load(Ordering::Acquire) != seq {
                            assert!(Instant::now() < deadline, "{msg} #{seq} was lost");
                            assert!(!shared.stop.load(Ordering::Relaxed), "receiver failed");
                            thread::yield_now();
                        }
                    }
                })
            })
            .collect();

        for sender in senders {
            sender.join().unwrap();
        }
        shared.stop.store(true, Ordering::Relaxed);
        receiver.join().unwrap();

        for &msg in Message::ALL {
            assert_eq!(
                shared.consumed[msg as usize].load(Ordering::Relaxed),
                ROUNDS
            );
        }
        for sgi in Sgi::ALL {
            assert!(shared.mailbox.take(sgi).is_empty(), "nothing left over");
        }
    }
}
