//! The test cases, in the order they run. Each asserts concrete behaviour
//! and returns `Ok(note)` or `Err(reason)`; the runner prints the line.
// The guest has no heap: a failure reason is a formatted line returned by
// value, once per case at most.
#![allow(clippy::result_large_err)]

pub mod counter;
pub mod fpsimd;
pub mod memory;
pub mod psci;
pub mod suspend;

use crate::line::Line;
use crate::secondary::{self, Job, Outcome as JobOutcome};

/// Why a case failed.
pub type Reason = Line<160>;

/// `Ok(Some(note))` prints `ok (note)`.
pub type Outcome = Result<Option<&'static str>, Reason>;

/// A named case.
pub struct Case {
    pub name: &'static str,
    pub run: fn() -> Outcome,
}

/// Fails the case with a formatted reason.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::line::format(format_args!($($arg)*)))
    };
}

pub static CASES: &[Case] = &[
    Case {
        name: "psci-version",
        run: psci::version,
    },
    Case {
        name: "psci-features",
        run: psci::features,
    },
    Case {
        name: "psci-migrate-info-type",
        run: psci::migrate_info_type,
    },
    Case {
        name: "psci-cpu-on-invalid",
        run: psci::cpu_on_invalid,
    },
    Case {
        name: "psci-cpu-on-already-on",
        run: psci::cpu_on_already_on,
    },
    Case {
        name: "psci-cpu-on",
        run: psci::cpu_on,
    },
    Case {
        name: "psci-affinity-info",
        run: psci::affinity_info,
    },
    Case {
        name: "psci-cpu-off-on",
        run: psci::cpu_off_on,
    },
    Case {
        name: "psci-cpu-suspend",
        run: suspend::cpu_suspend,
    },
    Case {
        name: "mmio-abort",
        run: memory::mmio_abort,
    },
    Case {
        name: "outside-ram",
        run: memory::outside_ram,
    },
    Case {
        name: "fp-simd",
        run: fpsimd::fp_simd,
    },
    Case {
        name: "counter-monotonic",
        run: counter::counter_monotonic,
    },
];

/// How long a job on another CPU may take.
const JOB_TIMEOUT_MS: u64 = 30_000;

/// Runs `job` on every CPU at once: posts it to each secondary, runs it
/// here (`local`), then collects. Returns the first failure as a reason
/// made by `explain(cpu, outcome)`.
fn on_every_cpu(
    job: Job,
    local: fn() -> JobOutcome,
    explain: fn(usize, JobOutcome) -> Reason,
) -> Result<(), Reason> {
    let cpus = crate::dt::platform().cpus;
    for cpu in 1..cpus.count() {
        if secondary::checkins(cpu) == 0 {
            fail!("cpu {cpu} is not running (psci-cpu-on failed?)");
        }
    }
    let mut tickets: [Option<secondary::Ticket>; crate::topology::MAX_CPUS] =
        [const { None }; crate::topology::MAX_CPUS];
    for (cpu, t) in tickets.iter_mut().enumerate().take(cpus.count()).skip(1) {
        *t = Some(secondary::post(cpu, job));
    }
    let mut first_failure: Option<Reason> = None;
    let here = local();
    if here != JobOutcome::OK {
        first_failure = Some(explain(0, here));
    }
    for (cpu, t) in tickets.iter().enumerate() {
        let Some(t) = t else { continue };
        match t.wait(JOB_TIMEOUT_MS) {
            Some(JobOutcome::OK) => {}
            Some(out) => {
                first_failure.get_or_insert_with(|| explain(cpu, out));
            }
            None => {
                t.cancel();
                first_failure.get_or_insert_with(|| {
                    crate::line::format(format_args!(
                        "cpu {cpu} did not finish within {} s",
                        JOB_TIMEOUT_MS / 1000
                    ))
                });
            }
        }
    }
    match first_failure {
        None => Ok(()),
        Some(r) => Err(r),
    }
}
