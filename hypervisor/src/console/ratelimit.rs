//! Rate-limited log lines for things that should not happen but may repeat
//! (a stray interrupt, later a guest poking at registers).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Lines printed per source and window before it goes quiet.
const BURST: u32 = 10;

/// The window after which a quiet source may log again, in seconds.
#[cfg(target_os = "none")]
pub const WINDOW_SECS: u64 = 10;

/// Counts events per time window and says whether this one may be logged:
/// a burst of [`BURST`] per window, then quiet until the next window,
/// whose first line says how many were left out. Each VM has its own (see
/// `vm::guest::Vm::log_limit`), so one VM's noise never silences another's
/// diagnostics, and none is silenced for good.
pub struct RateLimit {
    /// Counter value at which the current window started.
    start: AtomicU64,
    /// Events in the current window.
    count: AtomicU32,
    /// Events not logged since the last logged one.
    dropped: AtomicU32,
}

impl RateLimit {
    /// A limiter with nothing counted yet.
    pub const fn new() -> Self {
        RateLimit {
            start: AtomicU64::new(0),
            count: AtomicU32::new(0),
            dropped: AtomicU32::new(0),
        }
    }

    /// Decides about one event at counter value `now`, with windows of
    /// `window` counter ticks. Racing callers may let a line or two more
    /// through at a window boundary, never fewer.
    pub fn allow_at(&self, now: u64, window: u64) -> Allow {
        let start = self.start.load(Ordering::Relaxed);
        if now.wrapping_sub(start) >= window
            && self
                .start
                .compare_exchange(start, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.count.store(0, Ordering::Relaxed);
        }
        match self.count.fetch_add(1, Ordering::Relaxed).saturating_add(1) {
            n if n < BURST => match self.dropped.swap(0, Ordering::Relaxed) {
                0 => Allow::Yes,
                d => Allow::AfterDropped(d),
            },
            n if n == BURST => Allow::Last,
            _ => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Allow::No
            }
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new()
    }
}

/// What a rate limiter decided for one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allow {
    Yes,
    /// Log this one, and say that this many were left out before it.
    AfterDropped(u32),
    /// Log this one and say that more will be suppressed for a while.
    Last,
    No,
}

#[cfg(target_os = "none")]
impl RateLimit {
    /// Prints `line` if the window's burst allows it.
    pub fn println(&self, line: core::fmt::Arguments) {
        self.println_after(|| {}, line);
    }

    /// [`RateLimit::println`], calling `before` first when the line is
    /// printed (and only then): e.g. to put out the guest output that came
    /// before the event the line reports.
    pub fn println_after(&self, before: impl FnOnce(), line: core::fmt::Arguments) {
        let freq = crate::arch::cpu::counter_freq();
        let allow = self.allow_at(
            crate::arch::cpu::counter(),
            freq.saturating_mul(WINDOW_SECS),
        );
        if allow != Allow::No {
            before();
        }
        match allow {
            Allow::Yes => crate::println!("{line}"),
            Allow::AfterDropped(n) => crate::println!("{line} ({n} similar lines were not logged)"),
            Allow::Last => {
                crate::println!("{line} (further ones not logged for up to {WINDOW_SECS} s)")
            }
            Allow::No => {}
        }
    }
}

/// An interrupt nmivisor did not enable.
#[cfg(target_os = "none")]
pub fn log_unexpected_irq(intid: u32) {
    static LIMIT: RateLimit = RateLimit::new();
    LIMIT.println(format_args!("nmivisor: unexpected interrupt {intid}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_goes_quiet() {
        let r = RateLimit::new();
        let got: Vec<Allow> = (0..12).map(|t| r.allow_at(t, 1000)).collect();
        assert!(got[..9].iter().all(|&a| a == Allow::Yes));
        assert_eq!(got[9], Allow::Last);
        assert_eq!(&got[10..], &[Allow::No, Allow::No]);
    }

    #[test]
    fn a_new_window_logs_again_and_counts_what_was_left_out() {
        let r = RateLimit::new();
        for t in 0..15 {
            r.allow_at(t, 1000);
        }
        // 15 events: 10 logged, 5 dropped. The next window resumes.
        assert_eq!(r.allow_at(1000, 1000), Allow::AfterDropped(5));
        assert_eq!(r.allow_at(1001, 1000), Allow::Yes);
    }

    #[test]
    fn limits_are_independent() {
        let (a, b) = (RateLimit::new(), RateLimit::new());
        for t in 0..100 {
            a.allow_at(t, 1000);
        }
        assert_eq!(b.allow_at(100, 1000), Allow::Yes);
    }
}
