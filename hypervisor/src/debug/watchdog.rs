//! The pure part of the lockup watchdog, a buddy scheme like Linux's
//! `watchdog_buddy`: every online CPU records a heartbeat from its periodic
//! timer, and checks the next online CPU (wrapping around). A CPU whose
//! heartbeat is older than the threshold is stuck with interrupts off; its
//! buddy reports it once per lockup episode and then, typically, asks it for
//! an NMI backtrace.
//!
//! Times are ticks of a clock all CPUs share (the generic timer's counter).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::ipi::roundup::CpuMask;

/// Heartbeats and lockup state for up to `N` CPUs (`N` ≤ 64).
#[derive(Debug)]
pub struct Watchdog<const N: usize> {
    last_beat: [AtomicU64; N],
    online: AtomicU64,
    reported: AtomicU64,
}

impl<const N: usize> Default for Watchdog<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Watchdog<N> {
    const FITS: () = assert!(N <= 64, "CPU sets are 64-bit masks");
    #[allow(clippy::declare_interior_mutable_const)]
    const NEVER: AtomicU64 = AtomicU64::new(0);

    /// No CPU online.
    pub const fn new() -> Self {
        let () = Self::FITS;
        Watchdog {
            last_beat: [Self::NEVER; N],
            online: AtomicU64::new(0),
            reported: AtomicU64::new(0),
        }
    }

    /// Starts watching `cpu`, counting its first heartbeat as `now`.
    pub fn set_online(&self, cpu: usize, now: u64) {
        let Some(beat) = self.last_beat.get(cpu) else {
            return;
        };
        beat.store(now, Ordering::Relaxed);
        self.reported
            .fetch_and(!CpuMask::single(cpu).bits(), Ordering::Relaxed);
        self.online
            .fetch_or(CpuMask::single(cpu).bits(), Ordering::Release);
    }

    /// Stops watching `cpu` (before it powers off).
    pub fn set_offline(&self, cpu: usize) {
        self.online
            .fetch_and(!CpuMask::single(cpu).bits(), Ordering::Release);
    }

    /// The CPUs being watched.
    pub fn online(&self) -> CpuMask {
        CpuMask::from_bits(self.online.load(Ordering::Acquire))
    }

    /// Records that `cpu` is alive at `now`; call it from its periodic timer.
    pub fn beat(&self, cpu: usize, now: u64) {
        if let Some(beat) = self.last_beat.get(cpu) {
            beat.store(now, Ordering::Release);
        }
    }

    /// The CPU that `cpu` watches: the next online CPU after it, wrapping.
    pub fn buddy_of(&self, cpu: usize) -> Option<usize> {
        self.online().next_after(cpu)
    }

    /// Run by `cpu` on each watchdog tick: checks its buddy and returns it if
    /// it has not beaten for more than `threshold` ticks and has not been
    /// reported in this lockup episode yet. A buddy found beating again is
    /// re-armed, so its next lockup is reported too.
    pub fn check(&self, cpu: usize, now: u64, threshold: u64) -> Option<usize> {
        let buddy = self.buddy_of(cpu)?;
        let bit = CpuMask::single(buddy).bits();
        let last = self.last_beat.get(buddy)?.load(Ordering::Acquire);
        if now.saturating_sub(last) > threshold {
            let before = self.reported.fetch_or(bit, Ordering::Relaxed);
            (before & bit == 0).then_some(buddy)
        } else {
            self.reported.fetch_and(!bit, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn four_online(now: u64) -> Watchdog<4> {
        let w = Watchdog::new();
        for cpu in 0..4 {
            w.set_online(cpu, now);
        }
        w
    }

    #[test]
    fn buddies_form_a_ring_of_online_cpus() {
        let w = four_online(0);
        assert_eq!(
            [0, 1, 2, 3].map(|c| w.buddy_of(c)),
            [Some(1), Some(2), Some(3), Some(0)]
        );
        w.set_offline(2);
        assert_eq!(w.buddy_of(1), Some(3));
        assert_eq!(w.online(), CpuMask::from_bits(0b1011));
        let lonely = Watchdog::<4>::new();
        lonely.set_online(0, 0);
        assert_eq!(lonely.buddy_of(0), None);
        assert_eq!(lonely.check(0, 1000, 1), None);
    }

    #[test]
    fn healthy_cpus_are_not_reported() {
        let w = four_online(0);
        for now in (10..1000).step_by(10) {
            for cpu in 0..4 {
                w.beat(cpu, now);
            }
            for cpu in 0..4 {
                assert_eq!(w.check(cpu, now, 50), None);
            }
        }
    }

    #[test]
    fn stuck_cpu_reported_once_then_rearmed() {
        let w = four_online(0);
        let tick = |now: u64, alive: &[usize]| {
            for &cpu in alive {
                w.beat(cpu, now);
            }
            (0..4)
                .filter(|&c| alive.contains(&c))
                .filter_map(|c| w.check(c, now, 50))
                .collect::<alloc::vec::Vec<_>>()
        };
        let alive = [0, 1, 3];
        assert!(tick(40, &alive).is_empty(), "within the threshold");
        assert_eq!(tick(60, &alive), [2], "reported by its buddy, CPU 1");
        assert!(tick(80, &alive).is_empty(), "once per episode");
        assert!(tick(500, &alive).is_empty());

        assert!(tick(510, &[0, 1, 2, 3]).is_empty(), "heartbeat resumed");
        assert_eq!(tick(600, &alive), [2], "the next lockup is reported again");
    }

    #[test]
    fn only_the_buddy_reports() {
        let w = four_online(0);
        w.beat(1, 100);
        assert_eq!(
            w.check(0, 100, 50),
            None,
            "CPU 0 watches CPU 1, which is alive"
        );
        assert_eq!(w.check(1, 100, 50), Some(2));
        assert_eq!(w.check(3, 100, 50), Some(0));
    }

    #[test]
    fn online_again_rearms_and_restarts_the_clock() {
        let w = four_online(0);
        assert_eq!(w.check(1, 100, 50), Some(2));
        w.set_offline(2);
        assert_eq!(w.check(1, 200, 50), Some(3));
        w.set_online(2, 300);
        assert_eq!(w.check(1, 320, 50), None);
        assert_eq!(w.check(1, 400, 50), Some(2));
    }

    #[test]
    fn clock_skew_is_not_a_lockup() {
        let w = four_online(0);
        w.beat(1, 1000);
        assert_eq!(w.check(0, 990, 50), None);
    }

    #[test]
    fn out_of_range_cpus_are_ignored() {
        let w = Watchdog::<2>::new();
        w.set_online(5, 0);
        w.beat(5, 0);
        assert!(w.online().is_empty());
    }
}
