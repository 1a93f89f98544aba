//! Bookkeeping for a roundup: one CPU asks others (through an NMI message) to
//! dump or stop, then waits a bounded time for them to answer, and reports the
//! ones that did not, in the manner of Linux's `nmi_backtrace`.
//!
//! Only one roundup may be in flight per [`Roundup`]; a stop roundup that must
//! not wait for a backtrace roundup uses its own instance.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The most CPUs a [`CpuMask`] (and so a roundup) can describe.
pub const MAX_CPUS: usize = 64;

/// A set of CPU numbers below [`MAX_CPUS`].
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CpuMask(u64);

impl CpuMask {
    /// No CPU.
    pub const EMPTY: CpuMask = CpuMask(0);

    /// The set with bit `n` standing for CPU `n`.
    pub const fn from_bits(bits: u64) -> Self {
        CpuMask(bits)
    }

    /// CPUs `0..n`.
    #[cfg(test)]
    pub const fn first(n: usize) -> Self {
        if n >= MAX_CPUS {
            CpuMask(u64::MAX)
        } else {
            CpuMask((1 << n) - 1)
        }
    }

    /// Just `cpu` (empty if it is out of range).
    pub const fn single(cpu: usize) -> Self {
        CpuMask(bit(cpu))
    }

    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of CPUs in the set.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether `cpu` is in the set.
    pub const fn contains(self, cpu: usize) -> bool {
        self.0 & bit(cpu) != 0
    }

    /// The set with `cpu` added.
    pub const fn with(self, cpu: usize) -> Self {
        CpuMask(self.0 | bit(cpu))
    }

    /// The set with `cpu` removed.
    pub const fn without(self, cpu: usize) -> Self {
        CpuMask(self.0 & !bit(cpu))
    }

    /// The first CPU after `cpu` in the set, wrapping around; never `cpu`
    /// itself. This is how a CPU finds its watchdog buddy.
    pub fn next_after(self, cpu: usize) -> Option<usize> {
        let others = self.without(cpu).0;
        if others == 0 {
            return None;
        }
        let above = match cpu.checked_add(1) {
            Some(n) if n < MAX_CPUS => others & !((1u64 << n) - 1),
            _ => 0,
        };
        let pick = if above != 0 { above } else { others };
        Some(pick.trailing_zeros() as usize)
    }
}

/// The bit for `cpu`, or 0 for a CPU number a mask cannot hold.
const fn bit(cpu: usize) -> u64 {
    if cpu < MAX_CPUS {
        1 << cpu
    } else {
        0
    }
}

impl Iterator for CpuMask {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let cpu = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(cpu)
    }
}

impl fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(*self).finish()
    }
}

/// Prints the CPU numbers separated by spaces, for "CPUs 1 3 did not respond".
impl fmt::Display for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, cpu) in self.enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{cpu}")?;
        }
        Ok(())
    }
}

/// Another roundup on the same [`Roundup`] is still in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy;

/// The state of one kind of roundup, shared by all CPUs (put it in a static).
#[derive(Debug, Default)]
pub struct Roundup {
    in_flight: AtomicBool,
    pending: AtomicU64,
}

impl Roundup {
    /// No roundup in flight.
    pub const fn new() -> Self {
        Roundup {
            in_flight: AtomicBool::new(false),
            pending: AtomicU64::new(0),
        }
    }

    /// Starts a roundup of `cpus`. Call this before posting the messages, so a
    /// fast responder finds itself pending. The roundup ends when the returned
    /// handle is dropped.
    pub fn begin(&self, cpus: CpuMask) -> Result<Initiator<'_>, Busy> {
        self.in_flight
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .map_err(|_| Busy)?;
        self.pending.store(cpus.bits(), Ordering::Release);
        Ok(Initiator { roundup: self })
    }

    /// Marks `cpu` as having responded (call it after the work, e.g. after the
    /// dump is printed). Returns whether `cpu` was being waited for.
    pub fn respond(&self, cpu: usize) -> bool {
        let b = bit(cpu);
        self.pending.fetch_and(!b, Ordering::Release) & b != 0
    }

    /// Whether `cpu` is asked and has not responded yet; a responder can use it
    /// to tell a roundup from a stray message.
    #[cfg(test)]
    pub fn is_pending(&self, cpu: usize) -> bool {
        self.pending().contains(cpu)
    }

    /// The CPUs that have not responded yet.
    pub fn pending(&self) -> CpuMask {
        CpuMask(self.pending.load(Ordering::Acquire))
    }
}

/// The initiator's handle on a roundup in flight.
#[derive(Debug)]
pub struct Initiator<'a> {
    roundup: &'a Roundup,
}

impl Initiator<'_> {
    /// Spins until every asked CPU has responded, or until `now()` has moved
    /// `timeout` ticks past the start. Returns the CPUs that did not respond
    /// (empty on success).
    pub fn wait(&self, mut now: impl FnMut() -> u64, timeout: u64) -> CpuMask {
        let start = now();
        loop {
            let pending = self.roundup.pending();
            if pending.is_empty() || now().wrapping_sub(start) >= timeout {
                return pending;
            }
            crate::arch::relax();
        }
    }

    /// The CPUs that have not responded yet.
    #[cfg(test)]
    pub fn pending(&self) -> CpuMask {
        self.roundup.pending()
    }
}

/// Ends the roundup: late responders no longer count, and a new one may begin.
impl Drop for Initiator<'_> {
    fn drop(&mut self) {
        self.roundup.pending.store(0, Ordering::Relaxed);
        self.roundup.in_flight.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec::Vec;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn mask_basics() {
        let m = CpuMask::EMPTY.with(1).with(3).with(64);
        assert_eq!(m.bits(), 0b1010);
        assert_eq!(m.len(), 2);
        assert!(m.contains(3) && !m.contains(2) && !m.contains(64));
        assert_eq!(m.collect::<Vec<_>>(), [1, 3]);
        assert_eq!(format!("{m}"), "1 3");
        assert_eq!(CpuMask::first(3).bits(), 0b111);
        assert_eq!(CpuMask::first(64).len(), 64);
        assert_eq!(CpuMask::single(5).without(5), CpuMask::EMPTY);
    }

    #[test]
    fn next_after_wraps_and_skips_self() {
        let m = CpuMask::from_bits(0b1011_0001); // 0 4 5 7
        assert_eq!(m.next_after(0), Some(4));
        assert_eq!(m.next_after(5), Some(7));
        assert_eq!(m.next_after(7), Some(0));
        assert_eq!(m.next_after(2), Some(4));
        assert_eq!(m.next_after(63), Some(0));
        assert_eq!(CpuMask::single(3).next_after(3), None);
        assert_eq!(CpuMask::single(63).next_after(0), Some(63));
    }

    #[test]
    fn all_respond() {
        let roundup = Arc::new(Roundup::new());
        let asked = CpuMask::from_bits(0b1110);
        let initiator = roundup.begin(asked).unwrap();
        let responders: Vec<_> = asked
            .map(|cpu| {
                let roundup = Arc::clone(&roundup);
                thread::spawn(move || assert!(roundup.respond(cpu)))
            })
            .collect();
        let missing = initiator.wait(|| 0, 1);
        assert!(missing.is_empty(), "missing {missing}");
        for r in responders {
            r.join().unwrap();
        }
    }

    #[test]
    fn silent_cpus_are_reported_after_timeout() {
        let roundup = Roundup::new();
        let initiator = roundup.begin(CpuMask::from_bits(0b1111)).unwrap();
        assert!(roundup.is_pending(2));
        assert!(roundup.respond(0));
        assert!(roundup.respond(2));
        assert!(!roundup.respond(2), "second answer does not count");
        assert!(!roundup.respond(9), "not asked");

        let mut clock = 100u64;
        let missing = initiator.wait(
            || {
                clock += 10;
                clock
            },
            1000,
        );
        assert_eq!(missing, CpuMask::from_bits(0b1010));
        assert!(clock >= 1110, "gave up before the timeout");
        assert!(clock <= 1130, "waited well past the timeout");
    }

    #[test]
    fn zero_timeout_returns_at_once() {
        let roundup = Roundup::new();
        let initiator = roundup.begin(CpuMask::single(1)).unwrap();
        assert_eq!(initiator.wait(|| 7, 0), CpuMask::single(1));
        assert_eq!(initiator.pending(), CpuMask::single(1));
    }

    #[test]
    fn one_roundup_at_a_time() {
        let roundup = Roundup::new();
        let first = roundup.begin(CpuMask::single(1)).unwrap();
        assert_eq!(roundup.begin(CpuMask::single(2)).unwrap_err(), Busy);
        drop(first);
        assert!(!roundup.respond(1), "late response after the roundup ended");
        let second = roundup.begin(CpuMask::single(2)).unwrap();
        assert_eq!(second.pending(), CpuMask::single(2));
    }
}
