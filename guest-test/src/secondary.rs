//! Secondary CPUs: each checks in when it starts, then polls its mailbox
//! for a job ([`Job`]) from the boot CPU, runs it, posts the result and
//! waits again.

use crate::cpu;
use crate::topology::MAX_CPUS;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Work a CPU can be asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Job {
    /// [`crate::cases::fpsimd::run_on_this_cpu`].
    FpSimd = 1,
    /// [`crate::cases::counter::run_on_this_cpu`].
    Counter = 2,
    /// PSCI CPU_OFF: does not come back unless the call fails.
    CpuOff = 3,
    /// [`crate::cases::nmi::masked_receiver`].
    NmiWhileMasked = 4,
    /// [`crate::cases::nmi::preempt_receiver`].
    NmiPreemptsIrq = 5,
    /// [`crate::cases::nmi::roundup_member`].
    Roundup = 6,
    /// [`crate::cases::sgi_storm::run_on_this_cpu`].
    SgiStorm = 7,
    /// [`crate::cases::vtimer::run_on_this_cpu`].
    Timer = 8,
    /// [`crate::bench::pong_on_this_cpu`] (bench mode).
    BenchPong = 9,
    /// [`crate::cases::nmi::virtual_nmi_receiver`].
    VirtualNmi = 10,
    /// [`crate::modes::hyp_dump_spin`] (hyp-dump mode).
    HypDumpSpin = 11,
    /// [`crate::cases::timers::off_in_handler_job`].
    TimerOffInHandler = 12,
    /// [`crate::cases::timers::after_on_job`].
    TimerAfterOn = 13,
    /// [`crate::cases::spi_route::receiver_job`].
    SpiReroute = 14,
    /// [`crate::unwind_chain::chain_job`].
    UnwindChain = 15,
    /// [`crate::modes::hold_in_handler_job`] (vgic-lock-holder mode).
    HoldInHandler = 20,
    /// [`crate::bench::nmi_spin_on_this_cpu`] (bench mode).
    BenchNmiSpin = 16,
}

impl Job {
    fn from_u32(v: u32) -> Option<Job> {
        match v {
            1 => Some(Job::FpSimd),
            2 => Some(Job::Counter),
            3 => Some(Job::CpuOff),
            4 => Some(Job::NmiWhileMasked),
            5 => Some(Job::NmiPreemptsIrq),
            6 => Some(Job::Roundup),
            7 => Some(Job::SgiStorm),
            8 => Some(Job::Timer),
            9 => Some(Job::BenchPong),
            10 => Some(Job::VirtualNmi),
            11 => Some(Job::HypDumpSpin),
            12 => Some(Job::TimerOffInHandler),
            13 => Some(Job::TimerAfterOn),
            14 => Some(Job::SpiReroute),
            15 => Some(Job::UnwindChain),
            20 => Some(Job::HoldInHandler),
            16 => Some(Job::BenchNmiSpin),
            _ => None,
        }
    }
}

/// A job's outcome: 0 = passed, else a job-specific code plus a detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub code: u64,
    pub detail: u64,
}

impl Outcome {
    pub const OK: Outcome = Outcome { code: 0, detail: 0 };
}

struct Mailbox {
    /// The posted job (0 = none). The CPU clears it when it takes the job.
    job: AtomicU32,
    /// Incremented after each job's result is stored.
    done: AtomicU32,
    code: AtomicU64,
    detail: AtomicU64,
    /// Incremented each time the CPU enters [`secondary_main`].
    checkins: AtomicU32,
    /// The MPIDR_EL1 the CPU saw at its last check-in.
    mpidr: AtomicU64,
}

static MAILBOX: [Mailbox; MAX_CPUS] = [const {
    Mailbox {
        job: AtomicU32::new(0),
        done: AtomicU32::new(0),
        code: AtomicU64::new(0),
        detail: AtomicU64::new(0),
        checkins: AtomicU32::new(0),
        mpidr: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// Rust entry of a secondary CPU (from `secondary_entry`).
#[no_mangle]
extern "C" fn secondary_main(me: usize) -> ! {
    let mb = &MAILBOX[me];
    mb.mpidr.store(cpu::mpidr(), Ordering::Relaxed);
    mb.checkins.fetch_add(1, Ordering::Release);
    cpu::send_event();
    if crate::hostile::joins() {
        crate::hostile::secondary(me);
    }
    loop {
        let job = mb.job.load(Ordering::Acquire);
        if job == 0 {
            cpu::wait_for_event();
            continue;
        }
        mb.job.store(0, Ordering::Relaxed);
        let out = match Job::from_u32(job) {
            Some(Job::FpSimd) => crate::cases::fpsimd::run_on_this_cpu(),
            Some(Job::Counter) => crate::cases::counter::run_on_this_cpu(),
            Some(Job::NmiWhileMasked) => crate::cases::nmi::masked_receiver(),
            Some(Job::NmiPreemptsIrq) => crate::cases::nmi::preempt_receiver(),
            Some(Job::Roundup) => crate::cases::nmi::roundup_member(),
            Some(Job::SgiStorm) => crate::cases::sgi_storm::run_on_this_cpu(),
            Some(Job::Timer) => crate::cases::vtimer::run_on_this_cpu(),
            Some(Job::BenchPong) => crate::bench::pong_on_this_cpu(),
            Some(Job::VirtualNmi) => crate::cases::nmi::virtual_nmi_receiver(),
            Some(Job::HypDumpSpin) => crate::modes::hyp_dump_spin(),
            Some(Job::TimerOffInHandler) => crate::cases::timers::off_in_handler_job(),
            Some(Job::TimerAfterOn) => crate::cases::timers::after_on_job(),
            Some(Job::SpiReroute) => crate::cases::spi_route::receiver_job(),
            Some(Job::UnwindChain) => crate::unwind_chain::chain_job(),
            Some(Job::HoldInHandler) => crate::modes::hold_in_handler_job(),
            Some(Job::BenchNmiSpin) => crate::bench::nmi_spin_on_this_cpu(),
            Some(Job::CpuOff) => {
                let ret = crate::psci::cpu_off();
                Outcome {
                    code: 1,
                    detail: ret as u64,
                }
            }
            None => Outcome {
                code: u64::MAX,
                detail: job as u64,
            },
        };
        mb.code.store(out.code, Ordering::Relaxed);
        mb.detail.store(out.detail, Ordering::Relaxed);
        mb.done.fetch_add(1, Ordering::Release);
        cpu::send_event();
    }
}

/// How many times `cpu` has checked in.
pub fn checkins(cpu: usize) -> u32 {
    MAILBOX[cpu].checkins.load(Ordering::Acquire)
}

/// The MPIDR_EL1 `cpu` reported at its last check-in.
pub fn reported_mpidr(cpu: usize) -> u64 {
    MAILBOX[cpu].mpidr.load(Ordering::Relaxed)
}

/// Waits up to `ms` for `cpu` to check in more than `before` times.
pub fn wait_checkin(cpu: usize, before: u32, ms: u64) -> bool {
    cpu::wait_ms(ms, || {
        checkins(cpu) != before || crate::runner::secondary_fault().is_some()
    });
    checkins(cpu) != before
}

/// A posted job, to be collected with [`Ticket::wait`].
pub struct Ticket {
    cpu: usize,
    done_before: u32,
}

/// Posts `job` to `cpu`.
pub fn post(cpu: usize, job: Job) -> Ticket {
    let mb = &MAILBOX[cpu];
    let done_before = mb.done.load(Ordering::Acquire);
    mb.job.store(job as u32, Ordering::Release);
    cpu::send_event();
    Ticket { cpu, done_before }
}

impl Ticket {
    /// Whether the job has finished.
    pub fn is_done(&self) -> bool {
        MAILBOX[self.cpu].done.load(Ordering::Acquire) != self.done_before
    }

    /// Waits up to `ms` for the result; `None` on timeout, or at once when
    /// some secondary took an unexpected exception.
    pub fn wait(&self, ms: u64) -> Option<Outcome> {
        cpu::wait_ms(ms, || {
            self.is_done() || crate::runner::secondary_fault().is_some()
        });
        if !self.is_done() {
            return None;
        }
        let mb = &MAILBOX[self.cpu];
        Some(Outcome {
            code: mb.code.load(Ordering::Relaxed),
            detail: mb.detail.load(Ordering::Relaxed),
        })
    }

    /// Withdraws the job if the CPU has not taken it yet.
    pub fn cancel(&self) {
        MAILBOX[self.cpu].job.store(0, Ordering::Release);
    }
}
