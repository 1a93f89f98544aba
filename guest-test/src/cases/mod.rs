//! The test cases, in the order they run. Each asserts concrete behaviour
//! and returns `Ok(note)` or `Err(reason)`; the runner prints the line.
// The guest has no heap: a failure reason is a formatted line returned by
// value, once per case at most.
#![allow(clippy::result_large_err)]

pub mod counter;
pub mod features;
pub mod fpsimd;
pub mod gic_registers;
pub mod memory;
pub mod nmi;
pub mod ordering;
pub mod psci;
pub mod sgi_storm;
pub mod spi_route;
pub mod suspend;
pub mod timers;
pub mod vtimer;

use crate::line::Line;
use crate::secondary::{self, Job, Outcome as JobOutcome};
use crate::topology::MAX_CPUS;

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
        name: "sve-state",
        run: features::sve_state,
    },
    Case {
        name: "pauth-keys",
        run: features::pauth_keys,
    },
    Case {
        name: "mops",
        run: features::mops,
    },
    Case {
        name: "counter-monotonic",
        run: counter::counter_monotonic,
    },
    Case {
        name: "gic-registers",
        run: gic_registers::gic_registers,
    },
    Case {
        name: "nmi-while-masked",
        run: nmi::nmi_while_masked,
    },
    Case {
        name: "nmi-preempts-irq",
        run: nmi::nmi_preempts_irq,
    },
    Case {
        name: "priority-order",
        run: ordering::priority_order,
    },
    Case {
        name: "lr-overflow",
        run: ordering::lr_overflow,
    },
    Case {
        name: "roundup",
        run: nmi::roundup,
    },
    Case {
        name: "sgi-storm",
        run: sgi_storm::sgi_storm,
    },
    Case {
        name: "spi-reroute-pending",
        run: spi_route::spi_reroute_pending,
    },
    Case {
        name: "timer",
        run: vtimer::timer,
    },
    Case {
        name: "timer-pending-virtual",
        run: timers::pending_virtual,
    },
    Case {
        name: "timer-pending-physical",
        run: timers::pending_physical,
    },
    Case {
        name: "timer-disable-while-pending-virtual",
        run: timers::disable_while_pending_virtual,
    },
    Case {
        name: "timer-disable-while-pending-physical",
        run: timers::disable_while_pending_physical,
    },
    Case {
        name: "timer-wfi-masked-virtual",
        run: timers::wfi_masked_virtual,
    },
    Case {
        name: "timer-wfi-masked-physical",
        run: timers::wfi_masked_physical,
    },
    Case {
        name: "timer-cpu-off-on-virtual",
        run: timers::cpu_off_on_virtual,
    },
    Case {
        name: "timer-cpu-off-on-physical",
        run: timers::cpu_off_on_physical,
    },
    Case {
        name: "pmu-overflow-irq",
        run: timers::pmu_overflow_irq,
    },
    Case {
        name: "virtual-nmi",
        run: nmi::virtual_nmi,
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

/// The job outcome code of a CPU whose GIC setup failed
/// ([`setup_failed`]).
pub const SETUP_FAILED: u64 = u64::MAX - 1;

/// Why each CPU's GIC setup last failed.
static SETUP_FAILURE: [spin::Mutex<&str>; MAX_CPUS] = [const { spin::Mutex::new("") }; MAX_CPUS];

/// Sets up the GIC for an interrupt case on the calling CPU: the
/// distributor (once it is, this only reads GICD_CTLR), this CPU's
/// redistributor and CPU interface; then clears the CPU's interrupt log.
/// PSTATE.I stays set.
pub fn irq_setup() -> Result<crate::gic::Gic, &'static str> {
    let g = crate::gic::get()?;
    g.init_distributor()?;
    g.init_this_cpu()?;
    crate::irq::reset_log(crate::cpu::index());
    Ok(g)
}

/// A job's outcome when [`irq_setup`] failed with `why`.
pub fn setup_failed(why: &'static str) -> JobOutcome {
    *SETUP_FAILURE[crate::cpu::index()].lock() = why;
    JobOutcome {
        code: SETUP_FAILED,
        detail: 0,
    }
}

/// The reason for a [`SETUP_FAILED`] outcome from `cpu`.
pub fn explain_setup(cpu: usize) -> Reason {
    crate::line::format(format_args!(
        "cpu {cpu}: GIC setup failed: {}",
        *SETUP_FAILURE[cpu].lock()
    ))
}
