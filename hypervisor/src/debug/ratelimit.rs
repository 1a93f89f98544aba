//! Rate-limited log lines for things that should not happen but may repeat
//! (a stray interrupt, later a guest poking at registers).

use core::sync::atomic::{AtomicU32, Ordering};

/// Lines printed per source before it goes quiet.
const BURST: u32 = 10;

/// Counts events and says whether this one may still be logged.
pub struct RateLimit(AtomicU32);

impl RateLimit {
    pub const fn new() -> Self {
        RateLimit(AtomicU32::new(0))
    }

    /// True for the first [`BURST`] events; the one after the burst gets a
    /// "suppressing" note from the caller.
    pub fn allow(&self) -> Allow {
        match self.0.fetch_add(1, Ordering::Relaxed).saturating_add(1) {
            n if n < BURST => Allow::Yes,
            n if n == BURST => Allow::Last,
            _ => Allow::No,
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allow {
    Yes,
    /// Log this one and say that more will be suppressed.
    Last,
    No,
}

#[cfg(target_os = "none")]
impl RateLimit {
    /// Prints `line` if the burst allows it; the last line of the burst
    /// says that further ones are not logged.
    pub fn println(&self, line: core::fmt::Arguments) {
        match self.allow() {
            Allow::Yes => crate::println!("{line}"),
            Allow::Last => crate::println!("{line} (further ones not logged)"),
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
        let got: Vec<Allow> = (0..12).map(|_| r.allow()).collect();
        assert!(got[..9].iter().all(|&a| a == Allow::Yes));
        assert_eq!(got[9], Allow::Last);
        assert_eq!(&got[10..], &[Allow::No, Allow::No]);
    }
}
