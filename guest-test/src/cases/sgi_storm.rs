//! `sgi-storm`: every CPU sends [`PER_PAIR`] SGIs to every other CPU at
//! once, all with interrupts on, and the count received must equal the
//! count sent, per ordered pair, exactly.
//!
//! The 16 SGIs are shared out: with n CPUs each sender owns 16 / n of
//! them (INTIDs `sender * w .. sender * w + w`), so a receiver knows who
//! sent what. A sender sends one of its SGIs to a target again only after
//! the target counted the previous one (an SGI sent while the same one is
//! still pending would merge with it); owning several keeps several in
//! flight per pair, which matters when the host is busy and a round trip
//! waits for a host thread to be scheduled.

use super::{irq_setup, Outcome, Reason, SETUP_FAILED};
use crate::gic::{self, PMR_ON, PRIO_IRQ};
use crate::irq;
use crate::secondary::{Job, Outcome as JobOutcome};
use crate::topology::MAX_CPUS;
use crate::{cpu, dt, fail, line};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// SGIs per ordered pair of CPUs.
const PER_PAIR: u32 = 1000;
/// How long a sender may make no progress, and how long the CPUs wait
/// for each other at a barrier.
const STEP_MS: u64 = 2000;

/// The SGIs.
const SGIS: usize = 16;

/// RECEIVED[to][intid]: how many of SGI `intid` `to` took.
static RECEIVED: [[AtomicU32; SGIS]; MAX_CPUS] =
    [const { [const { AtomicU32::new(0) }; SGIS] }; MAX_CPUS];
/// SENT[from][to].
static SENT: [[AtomicU32; MAX_CPUS]; MAX_CPUS] =
    [const { [const { AtomicU32::new(0) }; MAX_CPUS] }; MAX_CPUS];
/// CPUs ready to receive, and CPUs whose SGIs were all counted.
static READY: AtomicUsize = AtomicUsize::new(0);
static DONE: AtomicUsize = AtomicUsize::new(0);

const BARRIER: u64 = 1;
const STALLED: u64 = 2;

/// SGIs per sender with `n` CPUs.
fn window(n: usize) -> usize {
    SGIS / n
}

/// How many SGIs from `from` CPU `to` took.
fn received(to: usize, from: usize, n: usize) -> u32 {
    let w = window(n);
    RECEIVED[to][from * w..from * w + w]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
}

fn hook(intid: u32) {
    if (intid as usize) < SGIS {
        RECEIVED[cpu::index()][intid as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// One CPU's part (every CPU runs it at once).
pub fn run_on_this_cpu() -> JobOutcome {
    let me = cpu::index();
    let n = dt::platform().cpus.count();
    let g = match irq_setup() {
        Ok(g) => g,
        Err(why) => return super::setup_failed(why),
    };
    for intid in 0..SGIS as u32 {
        let i = g.irq(intid);
        i.set_priority(PRIO_IRQ);
        i.enable();
    }
    gic::set_pmr(PMR_ON);
    irq::enable();
    let out = storm(me, n);
    // Keep receiving until every CPU's SGIs were counted.
    DONE.fetch_add(1, Ordering::Release);
    let all_done = cpu::wait_ms(STEP_MS * 5, || DONE.load(Ordering::Acquire) >= n);
    irq::disable();
    for intid in 0..SGIS as u32 {
        g.irq(intid).disable();
    }
    if out == JobOutcome::OK && !all_done {
        return JobOutcome {
            code: BARRIER,
            detail: 1,
        };
    }
    out
}

fn storm(me: usize, n: usize) -> JobOutcome {
    let cpus = dt::platform().cpus;
    let w = window(n);
    READY.fetch_add(1, Ordering::Release);
    if !cpu::wait_ms(STEP_MS, || READY.load(Ordering::Acquire) >= n) {
        return JobOutcome {
            code: BARRIER,
            detail: 0,
        };
    }
    // sent[to][k]: SGIs sent to `to` as this CPU's k-th SGI.
    let mut sent = [[0u32; SGIS]; MAX_CPUS];
    let mut progress = crate::cpu::Deadline::after_ms(STEP_MS);
    loop {
        let mut all_sent = true;
        for to in (0..n).filter(|&to| to != me) {
            for (k, count) in sent[to].iter_mut().enumerate().take(w) {
                let total = SENT[me][to].load(Ordering::Relaxed);
                if total >= PER_PAIR {
                    break;
                }
                all_sent = false;
                let intid = me * w + k;
                if RECEIVED[to][intid].load(Ordering::Relaxed) < *count {
                    continue;
                }
                *count += 1;
                SENT[me][to].store(total + 1, Ordering::Relaxed);
                gic::send_sgi(intid as u32, cpus.mpidr(to));
                progress = crate::cpu::Deadline::after_ms(STEP_MS);
            }
        }
        if all_sent {
            break;
        }
        if progress.expired() {
            let to = (0..n)
                .find(|&to| to != me && SENT[me][to].load(Ordering::Relaxed) < PER_PAIR)
                .unwrap_or(0);
            return JobOutcome {
                code: STALLED,
                detail: (to as u64) << 32 | SENT[me][to].load(Ordering::Relaxed) as u64,
            };
        }
        cpu::relax();
    }
    for to in (0..n).filter(|&to| to != me) {
        if !cpu::wait_ms(STEP_MS, || received(to, me, n) >= PER_PAIR) {
            return JobOutcome {
                code: STALLED,
                detail: (to as u64) << 32 | PER_PAIR as u64,
            };
        }
    }
    JobOutcome::OK
}

fn explain(cpu: usize, out: JobOutcome) -> Reason {
    match out.code {
        BARRIER => line::format(format_args!(
            "cpu {cpu}: the other CPUs did not reach barrier {} (READY {}, DONE {})",
            out.detail,
            READY.load(Ordering::Relaxed),
            DONE.load(Ordering::Relaxed)
        )),
        STALLED => {
            let to = (out.detail >> 32) as usize;
            let n = dt::platform().cpus.count();
            line::format(format_args!(
                "cpu {cpu}: no progress for {STEP_MS} ms with {} SGIs sent to cpu {to}, which counted {}",
                out.detail as u32,
                received(to, cpu, n)
            ))
        }
        SETUP_FAILED => super::explain_setup(cpu),
        c => line::format(format_args!(
            "cpu {cpu}: job failed with code {c} ({:#x})",
            out.detail
        )),
    }
}

pub fn sgi_storm() -> Outcome {
    let n = dt::platform().cpus.count();
    if n < 2 {
        return Ok(Some("1 CPU"));
    }
    for c in RECEIVED.iter().flatten().chain(SENT.iter().flatten()) {
        c.store(0, Ordering::Relaxed);
    }
    READY.store(0, Ordering::Relaxed);
    DONE.store(0, Ordering::Relaxed);
    irq::set_hook(Some(hook));
    let result = super::on_every_cpu(Job::SgiStorm, run_on_this_cpu, explain);
    irq::set_hook(None);
    result?;
    for (from, sent_by) in SENT.iter().enumerate().take(n) {
        for (to, sent) in sent_by.iter().enumerate().take(n) {
            let got = received(to, from, n);
            let sent = sent.load(Ordering::Relaxed);
            let want = if to == from { 0 } else { PER_PAIR };
            if got != sent || sent != want {
                fail!("cpu {from} -> cpu {to}: sent {sent}, received {got}, want {want} each");
            }
        }
    }
    Ok(None)
}
