//! The console's owner-CPU lock, in the manner of Linux's `printk_cpu_sync`.
//!
//! Console output comes from ordinary code, from NMI handlers and from crash
//! paths, so a plain spinlock would deadlock twice over: an NMI that interrupts
//! its own CPU in the middle of a line would wait for itself, and a CPU that
//! died holding the lock would silence everyone else. Instead:
//!
//! - the owning CPU re-enters at once ([`Acquired::Nested`]);
//! - another CPU spins until the lock is free, or until its deadline passes,
//!   and then takes it anyway ([`Acquired::Busted`]) so crash output always
//!   gets out, possibly interleaved with the old owner's.
//!
//! Owner and nesting depth share one atomic word. With two separate words a
//! busting CPU could reset the depth just as the old owner decremented it, and
//! leave the lock held for good; with one word every change is a single
//! compare-and-swap, and the old owner's later release sees it lost ownership
//! and does nothing.

use core::sync::atomic::{AtomicU64, Ordering};

/// Owner value meaning "nobody holds the lock".
const NO_OWNER: u32 = u32::MAX;
/// The unlocked state: no owner, depth 0.
const FREE: u64 = NO_OWNER as u64;

const fn pack(owner: u32, depth: u32) -> u64 {
    (depth as u64) << 32 | owner as u64
}

const fn unpack(state: u64) -> (u32, u32) {
    (state as u32, (state >> 32) as u32)
}

/// CPU numbers are small; anything that does not fit is clamped to a value
/// that never matches [`NO_OWNER`].
fn cpu_id(cpu: usize) -> u32 {
    u32::try_from(cpu).unwrap_or(NO_OWNER - 1).min(NO_OWNER - 1)
}

/// How [`CpuLock::acquire`] got the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The lock was free.
    Fresh,
    /// This CPU already held it (e.g. an NMI interrupted its printing).
    Nested,
    /// Another CPU held it past the deadline and lost it; output may interleave.
    Busted,
}

/// A re-entrant, bustable lock owned by a CPU (put it in a static).
#[derive(Debug)]
pub struct CpuLock {
    state: AtomicU64,
}

impl Default for CpuLock {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuLock {
    /// An unlocked lock.
    pub const fn new() -> Self {
        CpuLock {
            state: AtomicU64::new(FREE),
        }
    }

    /// Takes the lock for `cpu`. While another CPU holds it, spins and calls
    /// `timed_out` on every round; once that returns `true` the lock is taken
    /// from its holder.
    pub fn acquire(&self, cpu: usize, mut timed_out: impl FnMut() -> bool) -> Acquired {
        let me = cpu_id(cpu);
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let (owner, depth) = unpack(state);
            let (next, how) = if owner == me {
                (pack(me, depth.saturating_add(1)), Acquired::Nested)
            } else if owner == NO_OWNER {
                (pack(me, 0), Acquired::Fresh)
            } else if timed_out() {
                (pack(me, 0), Acquired::Busted)
            } else {
                crate::arch::relax();
                state = self.state.load(Ordering::Relaxed);
                continue;
            };
            match self.state.compare_exchange_weak(
                state,
                next,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return how,
                Err(current) => state = current,
            }
        }
    }

    /// Takes the lock for `cpu` only if nobody holds it, this CPU included:
    /// for work that can wait, such as moving guests' queued console output,
    /// which must neither spin behind another CPU nor land in the middle of
    /// a line this CPU was printing when it was interrupted.
    pub fn try_acquire(&self, cpu: usize) -> bool {
        self.state
            .compare_exchange(
                FREE,
                pack(cpu_id(cpu), 0),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Undoes one [`acquire`](Self::acquire) by `cpu`. The lock becomes free
    /// when the outermost acquisition is released; if another CPU busted the
    /// lock in the meantime, this does nothing.
    pub fn release(&self, cpu: usize) {
        let me = cpu_id(cpu);
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let (owner, depth) = unpack(state);
            if owner != me {
                return;
            }
            let next = if depth > 0 { pack(me, depth - 1) } else { FREE };
            match self.state.compare_exchange_weak(
                state,
                next,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(current) => state = current,
            }
        }
    }

    /// The CPU holding the lock, if any.
    #[cfg(test)]
    pub fn owner(&self) -> Option<usize> {
        match unpack(self.state.load(Ordering::Relaxed)).0 {
            NO_OWNER => None,
            cpu => Some(cpu as usize),
        }
    }

    /// [`try_acquire`](Self::try_acquire)s and returns a guard if it got the lock.
    pub fn try_lock(&self, cpu: usize) -> Option<CpuLockGuard<'_>> {
        self.try_acquire(cpu).then_some(CpuLockGuard {
            lock: self,
            cpu,
            acquired: Acquired::Fresh,
        })
    }

    /// [`acquire`](Self::acquire)s and returns a guard that releases on drop.
    pub fn lock(&self, cpu: usize, timed_out: impl FnMut() -> bool) -> CpuLockGuard<'_> {
        let acquired = self.acquire(cpu, timed_out);
        CpuLockGuard {
            lock: self,
            cpu,
            acquired,
        }
    }
}

/// Holds a [`CpuLock`] until dropped.
#[derive(Debug)]
pub struct CpuLockGuard<'a> {
    lock: &'a CpuLock,
    cpu: usize,
    acquired: Acquired,
}

impl CpuLockGuard<'_> {
    /// How the lock was obtained, e.g. to print a "lock busted" note.
    pub fn acquired(&self) -> Acquired {
        self.acquired
    }
}

impl Drop for CpuLockGuard<'_> {
    fn drop(&mut self) {
        self.lock.release(self.cpu);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn same_cpu_reenters() {
        let lock = CpuLock::new();
        assert_eq!(lock.acquire(3, || panic!("must not spin")), Acquired::Fresh);
        assert_eq!(
            lock.acquire(3, || panic!("must not spin")),
            Acquired::Nested
        );
        lock.release(3);
        assert_eq!(lock.owner(), Some(3), "inner release keeps the lock");
        lock.release(3);
        assert_eq!(lock.owner(), None);
        lock.release(3);
        assert_eq!(lock.owner(), None, "extra release is harmless");
    }

    #[test]
    fn bust_after_timeout() {
        let lock = CpuLock::new();
        assert_eq!(lock.acquire(0, || false), Acquired::Fresh);
        let mut rounds = 0;
        let how = lock.acquire(1, || {
            rounds += 1;
            rounds == 5
        });
        assert_eq!((how, rounds), (Acquired::Busted, 5));
        assert_eq!(lock.owner(), Some(1));

        lock.release(0);
        assert_eq!(lock.owner(), Some(1), "the old owner's release is ignored");
        assert_eq!(lock.acquire(1, || false), Acquired::Nested);
        lock.release(1);
        lock.release(1);
        assert_eq!(lock.owner(), None);
    }

    #[test]
    fn try_lock_takes_only_a_free_lock() {
        let lock = CpuLock::new();
        let held = lock.lock(0, || false);
        assert!(lock.try_lock(1).is_none(), "another CPU holds it");
        assert!(lock.try_lock(0).is_none(), "not even nested on the owner");
        drop(held);
        let got = lock.try_lock(1).expect("free");
        assert_eq!(lock.owner(), Some(1));
        drop(got);
        assert_eq!(lock.owner(), None);
    }

    #[test]
    fn guard_releases() {
        let lock = CpuLock::new();
        {
            let outer = lock.lock(2, || false);
            let inner = lock.lock(2, || false);
            assert_eq!(
                (outer.acquired(), inner.acquired()),
                (Acquired::Fresh, Acquired::Nested)
            );
        }
        assert_eq!(lock.owner(), None);
    }

    #[test]
    fn waiter_gets_the_lock_when_released() {
        let lock = Arc::new(CpuLock::new());
        lock.acquire(0, || false);
        let spinning = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (lock, spinning) = (Arc::clone(&lock), Arc::clone(&spinning));
            thread::spawn(move || {
                lock.acquire(1, || {
                    spinning.store(true, Ordering::Relaxed);
                    false
                })
            })
        };
        while !spinning.load(Ordering::Relaxed) {
            thread::yield_now();
        }
        assert_eq!(lock.owner(), Some(0));
        lock.release(0);
        assert_eq!(waiter.join().unwrap(), Acquired::Fresh);
        assert_eq!(lock.owner(), Some(1));
    }

    /// Several CPUs (threads) increment a counter with a deliberately racy
    /// load-yield-store under the lock, and check that nobody else is inside.
    #[test]
    fn mutual_exclusion() {
        const CPUS: usize = 4;
        const ROUNDS: usize = 5_000;
        let lock = Arc::new(CpuLock::new());
        let inside = Arc::new(AtomicUsize::new(0));
        let counter = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..CPUS)
            .map(|cpu| {
                let (lock, inside, counter) =
                    (Arc::clone(&lock), Arc::clone(&inside), Arc::clone(&counter));
                thread::spawn(move || {
                    for round in 0..ROUNDS {
                        let spin = || {
                            thread::yield_now();
                            false
                        };
                        assert_eq!(lock.acquire(cpu, spin), Acquired::Fresh);
                        assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0, "two owners");
                        if round % 7 == 0 {
                            assert_eq!(lock.acquire(cpu, || false), Acquired::Nested);
                            lock.release(cpu);
                        }
                        let value = counter.load(Ordering::Relaxed);
                        if round % 3 == 0 {
                            thread::yield_now();
                        }
                        counter.store(value + 1, Ordering::Relaxed);
                        inside.fetch_sub(1, Ordering::Relaxed);
                        lock.release(cpu);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counter.load(Ordering::Relaxed), CPUS * ROUNDS);
        assert_eq!(lock.owner(), None);
    }
}
