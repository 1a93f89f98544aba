//! The guest lockup detector's decision, per vCPU: pure logic.
//!
//! The physical CPU that runs a vCPU samples it on every watchdog tick
//! (its EL2 timer, every 100 ms, which reaches EL2 whatever the guest's
//! masks). A sample is *stuck* when the tick interrupted the guest itself
//! (not a trap the hypervisor is handling for it, such as a WFI) and the
//! guest has an interrupt waiting that it does not take:
//!
//! - a list register holds a pending interrupt whose priority passes the
//!   guest's virtual PMR (deliverable by the GIC's rules: only the guest's
//!   PSTATE.I, or a handler that never ends, keeps it out), or
//! - its virtual timer condition is met (CNTV_CTL_EL0 ENABLE, not IMASK,
//!   ISTATUS): its timer interrupt is pending.
//!
//! A vCPU is locked up when every sample has been stuck, and it has not
//! made a single trap to the hypervisor (WFI, hypercall, MMIO, ...), for
//! longer than the threshold. It is reported once; any sample that is not
//! stuck, or any trap, ends the episode and re-arms the report.

/// One vCPU's episode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockupState {
    /// Counter value of the first stuck sample of the episode; 0 = none.
    since: u64,
    /// The vCPU's trap count at that sample.
    traps: u64,
    reported: bool,
}

/// What a sample concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// Stuck, for `for_ticks` so far, below the threshold or already reported.
    Stuck {
        for_ticks: u64,
    },
    /// Stuck for longer than the threshold: report it now (once).
    Report {
        for_ticks: u64,
    },
}

impl LockupState {
    /// A vCPU seen doing nothing wrong yet.
    pub const fn new() -> Self {
        LockupState {
            since: 0,
            traps: 0,
            reported: false,
        }
    }

    /// Folds in a sample taken at `now` (a shared counter) when the vCPU
    /// had made `traps` traps so far.
    pub fn sample(&mut self, now: u64, stuck: bool, traps: u64, threshold: u64) -> Verdict {
        if !stuck || (self.since != 0 && traps != self.traps) {
            *self = LockupState::new();
            if !stuck {
                return Verdict::Healthy;
            }
        }
        if self.since == 0 {
            // Never 0 while an episode runs (the counter is past 0 by then).
            self.since = now.max(1);
            self.traps = traps;
        }
        let for_ticks = now.saturating_sub(self.since);
        if for_ticks > threshold && !self.reported {
            self.reported = true;
            return Verdict::Report { for_ticks };
        }
        Verdict::Stuck { for_ticks }
    }
}

/// A list register as the sampler reads it (ICH_LR<n>_EL2, GICv3 spec
/// 12.4.6): pending, not active, priority above the virtual PMR.
pub fn lr_deliverable(lr: u64, vpmr: u8) -> bool {
    let state = lr >> 62;
    let priority = (lr >> 48) as u8;
    state == 0b01 && priority < vpmr
}

/// CNTV_CTL_EL0: ENABLE set, IMASK clear, ISTATUS set (Arm ARM D24.10).
pub fn timer_pending(cntv_ctl: u64) -> bool {
    cntv_ctl & 0b111 == 0b101
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1000;

    #[test]
    fn reported_once_after_the_threshold_then_rearmed() {
        let mut s = LockupState::new();
        assert_eq!(s.sample(100, true, 7, T), Verdict::Stuck { for_ticks: 0 });
        assert_eq!(s.sample(600, true, 7, T), Verdict::Stuck { for_ticks: 500 });
        assert_eq!(
            s.sample(1100, true, 7, T),
            Verdict::Stuck { for_ticks: 1000 },
            "not over yet"
        );
        assert_eq!(
            s.sample(1200, true, 7, T),
            Verdict::Report { for_ticks: 1100 }
        );
        assert_eq!(
            s.sample(5000, true, 7, T),
            Verdict::Stuck { for_ticks: 4900 },
            "once"
        );
        assert_eq!(
            s.sample(5100, false, 7, T),
            Verdict::Healthy,
            "the episode ends"
        );
        assert_eq!(s.sample(5200, true, 7, T), Verdict::Stuck { for_ticks: 0 });
        assert_eq!(
            s.sample(6300, true, 7, T),
            Verdict::Report { for_ticks: 1100 },
            "re-armed"
        );
    }

    #[test]
    fn a_trap_or_a_healthy_sample_restarts_the_clock() {
        let mut s = LockupState::new();
        s.sample(100, true, 7, T);
        assert_eq!(
            s.sample(900, true, 8, T),
            Verdict::Stuck { for_ticks: 0 },
            "trapped meanwhile"
        );
        assert_eq!(
            s.sample(1800, true, 8, T),
            Verdict::Stuck { for_ticks: 900 }
        );
        assert_eq!(s.sample(1850, false, 8, T), Verdict::Healthy);
        assert_eq!(s.sample(2000, true, 8, T), Verdict::Stuck { for_ticks: 0 });
        // A healthy guest: the timer interrupt seen pending now and then.
        let mut s = LockupState::new();
        for i in 0..100u64 {
            let v = s.sample(100 * (i + 1), i % 3 == 0, i, T);
            assert!(!matches!(v, Verdict::Report { .. }));
        }
    }

    #[test]
    fn counter_at_zero_still_starts_an_episode() {
        let mut s = LockupState::new();
        assert_eq!(s.sample(0, true, 0, T), Verdict::Stuck { for_ticks: 0 });
        assert_eq!(
            s.sample(1002, true, 0, T),
            Verdict::Report { for_ticks: 1001 }
        );
    }

    #[test]
    fn list_register_and_timer_conditions() {
        let lr = |state: u64, prio: u64| state << 62 | 1 << 60 | prio << 48 | 27;
        assert!(lr_deliverable(lr(0b01, 0xa0), 0xf0));
        assert!(
            !lr_deliverable(lr(0b01, 0xa0), 0x60),
            "masked by the virtual PMR"
        );
        assert!(
            !lr_deliverable(lr(0b11, 0xa0), 0xf0),
            "pending and active: being handled"
        );
        assert!(!lr_deliverable(lr(0b10, 0xa0), 0xf0));
        assert!(!lr_deliverable(0, 0xf0));
        assert!(timer_pending(0b101));
        assert!(!timer_pending(0b111), "IMASK");
        assert!(!timer_pending(0b001), "not expired");
        assert!(!timer_pending(0b100), "disabled");
    }
}
