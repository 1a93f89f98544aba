//! Sending and receiving the two physical SGIs (the mailbox is pure, in
//! `mailbox`; the GIC access is in `gic::driver`).

use super::mailbox::Mailboxes;
use super::message::{Message, Sgi};
use crate::arch::Mutex;
use crate::arch::MAX_CPUS;
use crate::gic::driver::send_sgi;

static MAILBOXES: Mailboxes<MAX_CPUS> = Mailboxes::new();

/// A function queued for a CPU's idle loop by [`run_on`], if any.
type WorkSlot = Mutex<Option<fn()>>;
/// Each CPU's [`WorkSlot`].
static WORK: [WorkSlot; MAX_CPUS] = [const { Mutex::new(None) }; MAX_CPUS];

/// Posts `msg` to `cpu` and sends the SGI the message table assigns to it.
pub fn send(cpu: usize, msg: Message) {
    if let Some(sgi) = MAILBOXES.post(cpu, msg) {
        // The mailbox store must be visible before the SGI can arrive: a
        // system-register write is not ordered after earlier stores without
        // a barrier (GICv3 spec 12.1.6; Linux does the same before SGIs).
        crate::arch::cpu::store_barrier();
        send_sgi(cpu, sgi);
    }
}

/// Queues `f` to run on `cpu` the next time it is in its idle loop, and
/// kicks it (CALL_FUNCTION on the kick SGI). Returns false if `cpu` already
/// has work queued. Only the test hooks queue work.
#[cfg(feature = "test-hooks")]
pub fn run_on(cpu: usize, f: fn()) -> bool {
    let Some(slot) = WORK.get(cpu) else {
        return false;
    };
    {
        let mut slot = slot.lock();
        if slot.is_some() {
            return false;
        }
        *slot = Some(f);
    }
    send(cpu, Message::CallFunction);
    true
}

/// Takes the function queued for `cpu`, if any.
pub fn take_work(cpu: usize) -> Option<fn()> {
    WORK.get(cpu)?.lock().take()
}

/// Takes every message waiting on `sgi` for this CPU (the top layer,
/// `dispatch`, hands each to its handler).
pub fn take_messages(sgi: Sgi) -> impl Iterator<Item = Message> {
    let cpu = crate::arch::percpu::cpu_id();
    MAILBOXES
        .get(cpu)
        .map(|m| m.take(sgi))
        .into_iter()
        .flatten()
}
