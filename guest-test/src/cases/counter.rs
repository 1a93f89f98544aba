//! The virtual counter on every CPU: 10000 reads (each after an ISB),
//! a PSCI_VERSION hypercall between reads. It never goes backwards and it
//! advances.

use super::{Outcome, Reason};
use crate::secondary::{Job, Outcome as JobOutcome};
use crate::{cpu, line, psci};

const READS: u64 = 10_000;

const BACKWARDS: u64 = 1;
const STUCK: u64 = 2;
const BAD_CALL: u64 = 3;

/// The check on the calling CPU.
pub fn run_on_this_cpu() -> JobOutcome {
    let first = cpu::counter();
    let mut prev = first;
    for i in 1..READS {
        let v = psci::version();
        if v < 0x1_0000 {
            return JobOutcome {
                code: BAD_CALL,
                detail: v as u32 as u64,
            };
        }
        let now = cpu::counter();
        if now < prev {
            return JobOutcome {
                code: BACKWARDS,
                detail: i,
            };
        }
        prev = now;
    }
    if prev <= first {
        return JobOutcome {
            code: STUCK,
            detail: first,
        };
    }
    JobOutcome::OK
}

fn explain(cpu: usize, out: JobOutcome) -> Reason {
    match out.code {
        BACKWARDS => line::format(format_args!(
            "cpu {cpu}: CNTVCT_EL0 went backwards at read {}",
            out.detail
        )),
        STUCK => line::format(format_args!(
            "cpu {cpu}: CNTVCT_EL0 stayed at {:#x} over {READS} reads",
            out.detail
        )),
        BAD_CALL => line::format(format_args!(
            "cpu {cpu}: PSCI_VERSION returned {:#x}",
            out.detail
        )),
        c => line::format(format_args!(
            "cpu {cpu}: job failed with code {c} ({:#x})",
            out.detail
        )),
    }
}

pub fn counter_monotonic() -> Outcome {
    super::on_every_cpu(Job::Counter, run_on_this_cpu, explain)?;
    Ok(None)
}
