//! Pseudo-NMIs the way Linux uses them with `irqchip.gicv3_pseudo_nmi=1`:
//! "interrupts off" is PMR = [`PMR_OFF`] with PSTATE.I clear, and an SGI
//! at [`PRIO_NMI`] still gets through.
//!
//! - `nmi-while-masked`: a secondary with interrupts "off" takes the NMI
//!   SGI at once (RPR 0x80 in the handler) while a normal SGI sent before
//!   it stays pending for 10 ms, and is taken only after PMR goes back to
//!   [`PMR_ON`].
//! - `nmi-preempts-irq`: inside a normal SGI's handler with PSTATE.I
//!   cleared again (running priority 0xc0), the NMI SGI nests; another
//!   normal SGI, at the running priority, does not.
//! - `roundup`: every other CPU spins with interrupts "off"; one NMI SGI
//!   with IRM = 1 (all but self) reaches each of them within
//!   [`ROUNDUP_BOUND_MS`], and not the sender.
//! - `virtual-nmi` (nmivisor only): a CPU with interrupts "off" takes
//!   [`VNMI_PPI`], which the hypervisor's test call made pending at
//!   [`PRIO_NMI`] (enabling it: the guest leaves it disabled), with RPR
//!   0x80; the call returns 0, and -2 for vCPU [`VNMI_BAD_VCPU`]. With one
//!   CPU the boot CPU injects into itself.
//!
//! The boot CPU sends; the secondaries run jobs ([`Job`]) and publish
//! what they saw in their interrupt logs ([`crate::irq`]).

use super::{irq_setup, Outcome, Reason, SETUP_FAILED};
use crate::gic::{self, PMR_OFF, PMR_ON, PRIO_IRQ, PRIO_NMI};
use crate::irq::{self, Event, Kind};
use crate::secondary::{self, Job, Outcome as JobOutcome};
use crate::topology::MAX_CPUS;
use crate::{cpu, dt, fail, hyp, line};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// The normal SGI (Linux's IPI_CALL_FUNC).
pub const SGI_IRQ: u32 = 1;
/// A second normal SGI (Linux's IPI_IRQ_WORK).
pub const SGI_IRQ2: u32 = 5;
/// The NMI SGI (Linux's IPI_CPU_BACKTRACE, an NMI since 6.7).
pub const SGI_NMI: u32 = 6;

/// The CPU the two-CPU cases use as the receiver.
const TARGET: usize = 1;

/// How long a CPU waits for an interrupt that should come.
const ARRIVAL_MS: u64 = 2000;
/// How long the receiver stays masked after the NMI, with the normal SGI
/// pending.
const MASKED_MS: u64 = 10;
/// How long a job may take in all.
const JOB_MS: u64 = 10_000;
/// How soon every CPU must report the roundup NMI (generous for TCG).
const ROUNDUP_BOUND_MS: u64 = 1000;

/// Set by the receiver once it is ready for the sender's SGIs.
static READY: AtomicUsize = AtomicUsize::new(0);
/// `nmi-while-masked`: the normal SGI was pending (GICR_ISPENDR0) after
/// 10 ms masked, and the counter when PMR went back to "on".
static STILL_PENDING: AtomicBool = AtomicBool::new(false);
static UNMASKED_AT: AtomicU64 = AtomicU64::new(0);
/// `nmi-preempts-irq`: the receiver is inside the normal handler with
/// PSTATE.I clear.
static IN_HANDLER: AtomicBool = AtomicBool::new(false);

/// Job outcome codes.
const NO_NMI: u64 = 2;
const NO_IRQ: u64 = 3;
const NO_SEND: u64 = 4;
const NO_VNMI: u64 = 5;

/// Both SGIs at their priorities, enabled, on the calling CPU.
fn configure(g: &gic::Gic) {
    for (intid, prio) in [
        (SGI_IRQ, PRIO_IRQ),
        (SGI_IRQ2, PRIO_IRQ),
        (SGI_NMI, PRIO_NMI),
    ] {
        let i = g.irq(intid);
        i.set_priority(prio);
        i.enable();
    }
}

/// Masks, restores PMR and disables the SGIs on the calling CPU.
fn quiesce(g: &gic::Gic) {
    irq::disable();
    gic::set_pmr(PMR_ON);
    for intid in [SGI_IRQ, SGI_IRQ2, SGI_NMI] {
        g.irq(intid).disable();
    }
}

fn explain(cpu: usize, out: JobOutcome) -> Reason {
    match out.code {
        SETUP_FAILED => super::explain_setup(cpu),
        NO_NMI => line::format(format_args!(
            "cpu {cpu}: the NMI SGI {SGI_NMI} was not taken within {ARRIVAL_MS} ms (PMR {:#x}, PSTATE.I clear)",
            out.detail
        )),
        NO_IRQ => line::format(format_args!(
            "cpu {cpu}: normal SGI {} was not taken within {ARRIVAL_MS} ms of PMR = {PMR_ON:#x}",
            out.detail
        )),
        NO_VNMI => line::format(format_args!(
            "cpu {cpu}: the injected PPI {VNMI_PPI} was not taken within {ARRIVAL_MS} ms (PMR {PMR_OFF:#x}, PSTATE.I clear)"
        )),
        NO_SEND => line::format(format_args!(
            "cpu {cpu}: the sender did not go on (step {})",
            out.detail
        )),
        c => line::format(format_args!("cpu {cpu}: job failed with code {c} ({:#x})", out.detail)),
    }
}

/// Checks that the secondaries a case needs are running.
fn secondaries_running(cpus: impl Iterator<Item = usize>) -> Result<(), Reason> {
    for c in cpus {
        if secondary::checkins(c) == 0 {
            fail!("cpu {c} is not running (psci-cpu-on failed?)");
        }
    }
    Ok(())
}

/// Jobs posted to CPUs, indexed by CPU.
type Tickets = [Option<secondary::Ticket>; MAX_CPUS];

/// Posts `job` to each CPU in `cpus`.
fn post(cpus: core::ops::Range<usize>, job: Job) -> Tickets {
    core::array::from_fn(|c| cpus.contains(&c).then(|| secondary::post(c, job)))
}

/// Waits for `READY` to reach `n` (the jobs count it up). On failure it
/// lets the jobs end (they are bounded) so that the CPUs are idle again
/// for the next case.
fn wait_ready(n: usize, tickets: &Tickets) -> Result<(), Reason> {
    let posted = || {
        tickets
            .iter()
            .enumerate()
            .filter_map(|(c, t)| Some((c, t.as_ref()?)))
    };
    let ok = cpu::wait_ms(ARRIVAL_MS, || {
        READY.load(Ordering::Acquire) >= n || posted().any(|(_, t)| t.is_done())
    });
    let mut first: Option<Reason> = None;
    for (c, t) in posted() {
        if let Some(out) = t.wait(0) {
            first.get_or_insert_with(|| explain(c, out));
        }
    }
    if first.is_none() && (!ok || READY.load(Ordering::Acquire) < n) {
        first = Some(line::format(format_args!(
            "only {} of {n} CPUs got ready within {ARRIVAL_MS} ms",
            READY.load(Ordering::Acquire)
        )));
    }
    match first {
        None => Ok(()),
        Some(r) => {
            finish(tickets).ok();
            Err(r)
        }
    }
}

/// Collects the jobs' results: the first failure, if any.
fn finish(tickets: &Tickets) -> Result<(), Reason> {
    let mut first: Option<Reason> = None;
    for (c, t) in tickets.iter().enumerate() {
        let Some(t) = t else { continue };
        let r = match t.wait(JOB_MS) {
            Some(JobOutcome::OK) => continue,
            Some(out) => explain(c, out),
            None => {
                t.cancel();
                line::format(format_args!(
                    "cpu {c} did not finish within {} s",
                    JOB_MS / 1000
                ))
            }
        };
        first.get_or_insert(r);
    }
    match first {
        None => Ok(()),
        Some(r) => Err(r),
    }
}

/// Starts `job` on the secondaries `cpus` with fresh interrupt logs and
/// waits until every one is ready for the sender's SGIs.
fn start(cpus: core::ops::Range<usize>, job: Job) -> Result<Tickets, Reason> {
    secondaries_running(cpus.clone())?;
    READY.store(0, Ordering::Relaxed);
    for c in cpus.clone() {
        irq::reset_log(c);
    }
    let tickets = post(cpus.clone(), job);
    wait_ready(cpus.len(), &tickets)?;
    Ok(tickets)
}

/// The frame every receiver job shares: the SGIs configured on this CPU,
/// PMR at `pmr` with PSTATE.I clear, ready announced; then `wait` (given
/// the GIC and this CPU's index) watches for what the case sends, and
/// finally a millisecond more (anything late or doubled shows in the
/// log) before the SGIs are disabled and the CPU masked again.
fn receiver(pmr: u8, wait: impl FnOnce(&gic::Gic, usize) -> JobOutcome) -> JobOutcome {
    let g = match irq_setup() {
        Ok(g) => g,
        Err(why) => return super::setup_failed(why),
    };
    configure(&g);
    gic::set_pmr(pmr);
    irq::enable();
    READY.fetch_add(1, Ordering::Release);
    let out = wait(&g, cpu::index());
    cpu::wait_ms(1, || false);
    quiesce(&g);
    out
}

/// Formats a log for a failure message.
fn show(events: impl Iterator<Item = Event>) -> line::Line<96> {
    use core::fmt::Write;
    let mut l = line::Line::new();
    for e in events {
        let k = if e.kind == Kind::Enter { '+' } else { '-' };
        let _ = write!(l, "{k}{}@{:#x} ", e.intid, e.rpr);
    }
    l
}

// ---- nmi-while-masked ------------------------------------------------

/// The receiver of `nmi-while-masked` (a secondary).
pub fn masked_receiver() -> JobOutcome {
    receiver(PMR_OFF, |g, me| {
        if !cpu::wait_ms(ARRIVAL_MS, || irq::first_entry(me, SGI_NMI).is_some()) {
            return JobOutcome {
                code: NO_NMI,
                detail: gic::pmr() as u64,
            };
        }
        // "Interrupts off" for a measurable while: the normal SGI, sent
        // before the NMI, must stay pending.
        cpu::wait_ms(MASKED_MS, || false);
        STILL_PENDING.store(g.irq(SGI_IRQ).pending().0, Ordering::Relaxed);
        UNMASKED_AT.store(cpu::counter(), Ordering::Relaxed);
        gic::set_pmr(PMR_ON);
        if !cpu::wait_ms(ARRIVAL_MS, || irq::first_entry(me, SGI_IRQ).is_some()) {
            return JobOutcome {
                code: NO_IRQ,
                detail: SGI_IRQ as u64,
            };
        }
        JobOutcome::OK
    })
}

pub fn nmi_while_masked() -> Outcome {
    let cpus = dt::platform().cpus;
    if cpus.count() < 2 {
        return Ok(Some("1 CPU"));
    }
    let target = cpus.mpidr(TARGET);
    STILL_PENDING.store(false, Ordering::Relaxed);
    UNMASKED_AT.store(0, Ordering::Relaxed);
    let tickets = start(TARGET..TARGET + 1, Job::NmiWhileMasked)?;
    // The normal SGI first: it is pending when the NMI arrives.
    gic::send_sgi(SGI_IRQ, target);
    gic::send_sgi(SGI_NMI, target);
    finish(&tickets)?;

    let log: [Option<Event>; 4] = core::array::from_fn(|i| irq::event(TARGET, i));
    let want = [
        (Kind::Enter, SGI_NMI, PRIO_NMI),
        (Kind::Exit, SGI_NMI, PRIO_NMI),
        (Kind::Enter, SGI_IRQ, PRIO_IRQ),
        (Kind::Exit, SGI_IRQ, PRIO_IRQ),
    ];
    let matches = irq::log_len(TARGET) == want.len()
        && log
            .iter()
            .zip(want)
            .all(|(e, (k, i, p))| e.is_some_and(|e| e.kind == k && e.intid == i && e.rpr == p));
    if !matches {
        fail!(
            "cpu {TARGET} took (+enter/-exit INTID@RPR) {}, want +{SGI_NMI}@{PRIO_NMI:#x} -{SGI_NMI} +{SGI_IRQ}@{PRIO_IRQ:#x} -{SGI_IRQ}",
            show(irq::events(TARGET)).as_str()
        );
    }
    if !STILL_PENDING.load(Ordering::Relaxed) {
        fail!("SGI {SGI_IRQ} was not pending after {MASKED_MS} ms at PMR {PMR_OFF:#x}");
    }
    let unmasked = UNMASKED_AT.load(Ordering::Relaxed);
    let (Some(nmi), Some(normal)) = (log[0], log[2]) else {
        unreachable!("checked above")
    };
    if normal.time < unmasked {
        fail!(
            "SGI {SGI_IRQ} was taken {} ticks before PMR went back to {PMR_ON:#x}",
            unmasked - normal.time
        );
    }
    if unmasked - nmi.time < cpu::ticks_from_ms(MASKED_MS) {
        fail!(
            "the receiver stayed masked only {} ticks after the NMI",
            unmasked - nmi.time
        );
    }
    Ok(None)
}

// ---- nmi-preempts-irq ------------------------------------------------

/// The hook of `nmi-preempts-irq` on the receiver: inside the first
/// normal SGI, unmask at PSTATE (running priority stays 0xc0), tell the
/// sender, wait for the NMI to nest, and stay a little longer so that a
/// wrongly nesting normal SGI would show too.
fn preempt_hook(intid: u32) {
    let me = cpu::index();
    if me != TARGET || intid != SGI_IRQ || IN_HANDLER.load(Ordering::Relaxed) {
        return;
    }
    irq::enable();
    IN_HANDLER.store(true, Ordering::Release);
    cpu::wait_ms(ARRIVAL_MS, || irq::first_entry(me, SGI_NMI).is_some());
    cpu::wait_ms(2, || false);
}

/// The receiver of `nmi-preempts-irq` (a secondary).
pub fn preempt_receiver() -> JobOutcome {
    receiver(PMR_ON, |_, me| {
        if !cpu::wait_ms(ARRIVAL_MS * 2, || irq::first_entry(me, SGI_IRQ2).is_some()) {
            return JobOutcome {
                code: NO_IRQ,
                detail: SGI_IRQ2 as u64,
            };
        }
        JobOutcome::OK
    })
}

pub fn nmi_preempts_irq() -> Outcome {
    let cpus = dt::platform().cpus;
    if cpus.count() < 2 {
        return Ok(Some("1 CPU"));
    }
    let target = cpus.mpidr(TARGET);
    IN_HANDLER.store(false, Ordering::Relaxed);
    irq::set_hook(Some(preempt_hook));
    let result = (|| {
        let tickets = start(TARGET..TARGET + 1, Job::NmiPreemptsIrq)?;
        gic::send_sgi(SGI_IRQ, target);
        if !cpu::wait_ms(ARRIVAL_MS, || IN_HANDLER.load(Ordering::Acquire)) {
            finish(&tickets)?;
            fail!(
                "cpu {TARGET} did not enter the handler of SGI {SGI_IRQ} within {ARRIVAL_MS} ms (log: {})",
                show(irq::events(TARGET)).as_str()
            );
        }
        // Same priority as the running one: must wait for the handler.
        gic::send_sgi(SGI_IRQ2, target);
        gic::send_sgi(SGI_NMI, target);
        finish(&tickets)
    })();
    irq::set_hook(None);
    result?;

    let want = [
        (Kind::Enter, SGI_IRQ, PRIO_IRQ),
        (Kind::Enter, SGI_NMI, PRIO_NMI),
        (Kind::Exit, SGI_NMI, PRIO_NMI),
        (Kind::Exit, SGI_IRQ, PRIO_IRQ),
        (Kind::Enter, SGI_IRQ2, PRIO_IRQ),
        (Kind::Exit, SGI_IRQ2, PRIO_IRQ),
    ];
    let matches = irq::log_len(TARGET) == want.len()
        && want.iter().enumerate().all(|(n, &(k, i, p))| {
            irq::event(TARGET, n).is_some_and(|e| e.kind == k && e.intid == i && e.rpr == p)
        });
    if !matches {
        fail!(
            "cpu {TARGET} took (+enter/-exit INTID@RPR) {}, want +{SGI_IRQ}@{PRIO_IRQ:#x} +{SGI_NMI}@{PRIO_NMI:#x} -{SGI_NMI} -{SGI_IRQ} +{SGI_IRQ2} -{SGI_IRQ2}",
            show(irq::events(TARGET)).as_str()
        );
    }
    Ok(None)
}

// ---- roundup -----------------------------------------------------------

/// A CPU rounded up by `roundup` (every secondary).
pub fn roundup_member() -> JobOutcome {
    receiver(PMR_OFF, |_, me| {
        if !cpu::wait_ms(ARRIVAL_MS, || irq::first_entry(me, SGI_NMI).is_some()) {
            return JobOutcome {
                code: NO_NMI,
                detail: PMR_OFF as u64,
            };
        }
        JobOutcome::OK
    })
}

pub fn roundup() -> Outcome {
    let cpus = dt::platform().cpus;
    let n = cpus.count();
    if n < 2 {
        return Ok(Some("1 CPU"));
    }
    // The sender has the NMI SGI enabled too, masked at PSTATE: IRM = 1
    // must leave it out.
    let g = match irq_setup() {
        Ok(g) => g,
        Err(why) => fail!("GIC setup failed: {why}"),
    };
    configure(&g);
    let result = (|| {
        let tickets = start(1..n, Job::Roundup)?;
        let sent = cpu::counter();
        gic::send_sgi_to_others(SGI_NMI);
        finish(&tickets)?;
        let bound = cpu::ticks_from_ms(ROUNDUP_BOUND_MS);
        for c in 1..n {
            let Some(e) = irq::first_entry(c, SGI_NMI) else {
                fail!("cpu {c} did not log the NMI SGI {SGI_NMI}");
            };
            if e.rpr != PRIO_NMI {
                fail!(
                    "cpu {c}: RPR {:#x} in the NMI handler, want {PRIO_NMI:#x}",
                    e.rpr
                );
            }
            if e.time.saturating_sub(sent) > bound {
                fail!(
                    "cpu {c} took the NMI {} ticks after it was sent, over {ROUNDUP_BOUND_MS} ms",
                    e.time - sent
                );
            }
            if irq::times_taken(c, SGI_NMI) != 1 || irq::entries(c).count() != 1 {
                fail!(
                    "cpu {c} took (+enter/-exit INTID@RPR) {}, want the NMI SGI {SGI_NMI} once",
                    show(irq::events(c)).as_str()
                );
            }
        }
        if g.irq(SGI_NMI).pending().0 {
            fail!("the sender got its own IRM=1 NMI SGI {SGI_NMI}");
        }
        Ok(())
    })();
    quiesce(&g);
    result?;
    Ok(None)
}

// ---- virtual-nmi -------------------------------------------------------

/// The interrupt nmivisor injects: Linux's PMU overflow PPI on `virt`
/// (an NMI with pseudo-NMIs), otherwise unused here.
pub const VNMI_PPI: u32 = 23;
/// A vCPU index no VM has.
pub const VNMI_BAD_VCPU: u64 = 99;

/// Masks like Linux (PMR "off", PSTATE.I clear), runs `go`, waits for
/// [`VNMI_PPI`], then unmasks and cleans up. [`VNMI_PPI`] stays disabled
/// here: the hypervisor's injection must enable it.
fn take_virtual_nmi(go: impl FnOnce()) -> JobOutcome {
    let me = cpu::index();
    let g = match irq_setup() {
        Ok(g) => g,
        Err(why) => return super::setup_failed(why),
    };
    gic::set_pmr(PMR_OFF);
    irq::enable();
    go();
    let taken = cpu::wait_ms(ARRIVAL_MS, || irq::first_entry(me, VNMI_PPI).is_some());
    gic::set_pmr(PMR_ON);
    // Anything late or doubled shows in the log.
    cpu::wait_ms(1, || false);
    irq::disable();
    g.irq(VNMI_PPI).disable();
    if !taken {
        return JobOutcome {
            code: NO_VNMI,
            detail: 0,
        };
    }
    JobOutcome::OK
}

/// The receiver of `virtual-nmi` (a secondary).
pub fn virtual_nmi_receiver() -> JobOutcome {
    take_virtual_nmi(|| {
        READY.fetch_add(1, Ordering::Release);
    })
}

pub fn virtual_nmi() -> Outcome {
    if !dt::platform().nmivisor {
        return Ok(Some("native: no nmivisor test service"));
    }
    let ret = hyp::test_inject(VNMI_BAD_VCPU, VNMI_PPI, PRIO_NMI);
    if ret != hyp::INVALID_PARAMETERS {
        fail!("injecting into vCPU {VNMI_BAD_VCPU} returned {ret}, want -2");
    }
    let cpus = dt::platform().cpus;
    // Another CPU if there is one, else the boot CPU itself.
    let target = if cpus.count() > 1 { TARGET } else { 0 };
    let Some(vcpu) = dt::cpu_position(cpus.mpidr(target)) else {
        fail!("cpu {target} is not in the device tree's /cpus");
    };
    let inject = || hyp::test_inject(vcpu as u64, VNMI_PPI, PRIO_NMI);
    let mut ret = 0;
    if target == 0 {
        let out = take_virtual_nmi(|| ret = inject());
        if ret != 0 {
            fail!("injecting PPI {VNMI_PPI} into vCPU {vcpu} returned {ret}, want 0");
        }
        if out != JobOutcome::OK {
            return Err(explain(0, out));
        }
    } else {
        let tickets = start(target..target + 1, Job::VirtualNmi)?;
        ret = inject();
        let done = finish(&tickets);
        if ret != 0 {
            fail!("injecting PPI {VNMI_PPI} into vCPU {vcpu} returned {ret}, want 0");
        }
        done?;
    }
    let mut taken = irq::entries(target);
    match (taken.next(), taken.next()) {
        (Some(e), None) if e.intid == VNMI_PPI && e.rpr == PRIO_NMI => Ok(None),
        _ => fail!(
            "cpu {target} took (+enter/-exit INTID@RPR) {}, want +{VNMI_PPI}@{PRIO_NMI:#x} -{VNMI_PPI}",
            show(irq::events(target)).as_str()
        ),
    }
}
