//! `spi-reroute-pending`: an SPI pending at CPU 0, which has PSTATE.I set
//! and so does not take it, is re-routed (GICD_IROUTER) to CPU 1, which is
//! spinning with interrupts on. CPU 1 takes it exactly once and CPU 0 never
//! does: natively the GIC re-targets it at once; under nmivisor the vCPU
//! that held it in a list register lets go of it and kicks its new target.
//!
//! What this cannot catch: a missing kick. The hypervisor's 100 ms watchdog
//! tick makes every vCPU exit, and the exit delivers the SPI anyway, only
//! later; telling "at once" from "100 ms later" would take a timed
//! assertion. The kick itself is covered by the vGIC's host tests
//! (`rerouted_pending_spi_kicks_its_new_target_when_released`).

use super::{irq_setup, Outcome};
use crate::gic::{self, typer_affinity, PMR_ON, PRIO_IRQ};
use crate::secondary::{self, Job, Outcome as JobOutcome};
use crate::topology::MAX_CPUS;
use crate::{cpu, dt, fail, irq};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// GICD_IROUTER<n> for SPI n (n >= 32): 64-bit, at 0x6000 + 8n.
const GICD_IROUTER: u64 = 0x6000;
/// How long CPU 1 waits for the SPI.
const WAIT_MS: u64 = 3000;

static SPI: AtomicU32 = AtomicU32::new(0);
static READY: AtomicBool = AtomicBool::new(false);
static TAKEN: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

fn hook(intid: u32) {
    if intid == SPI.load(Ordering::Relaxed) {
        TAKEN[cpu::index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// The last SPI the distributor implements (unused by QEMU's devices and
/// by nmivisor's).
fn last_spi(gicd: u64) -> u32 {
    let it_lines = gic::rd32(gicd + gic::GICD_TYPER) & 0x1f;
    (32 * (it_lines + 1)).min(1020) - 1
}

/// Routes SPI `intid` to the CPU with MPIDR `mpidr` (two 32-bit halves:
/// Aff2.Aff1.Aff0 with IRM = 0, then Aff3).
fn route(gicd: u64, intid: u32, mpidr: u64) {
    let aff = typer_affinity(mpidr);
    let at = gicd + GICD_IROUTER + 8 * u64::from(intid);
    gic::wr32(at, (aff & 0xff_ffff) as u32);
    gic::wr32(at + 4, (aff >> 24) as u32);
}

/// CPU 1: interrupts on, spin (no trap) until the SPI was taken.
pub fn receiver_job() -> JobOutcome {
    if let Err(why) = irq_setup() {
        return super::setup_failed(why);
    }
    let me = cpu::index();
    gic::set_pmr(PMR_ON);
    irq::enable();
    READY.store(true, Ordering::Release);
    cpu::wait_ms(WAIT_MS, || TAKEN[me].load(Ordering::Relaxed) != 0);
    cpu::wait_ms(1, || false);
    irq::disable();
    match TAKEN[me].load(Ordering::Relaxed) {
        1 => JobOutcome::OK,
        n => JobOutcome {
            code: 1,
            detail: u64::from(n),
        },
    }
}

pub fn spi_reroute_pending() -> Outcome {
    let cpus = dt::platform().cpus;
    if cpus.count() < 2 {
        return Ok(Some("1 CPU"));
    }
    if secondary::checkins(1) == 0 {
        fail!("cpu 1 is not running (psci-cpu-on failed?)");
    }
    let g = match irq_setup() {
        Ok(g) => g,
        Err(why) => fail!("GIC setup failed: {why}"),
    };
    let intid = last_spi(g.gicd);
    SPI.store(intid, Ordering::Relaxed);
    for t in &TAKEN {
        t.store(0, Ordering::Relaxed);
    }
    READY.store(false, Ordering::Relaxed);
    let spi = g.irq(intid);
    spi.disable();
    spi.clear_pending();
    spi.set_group1(true);
    spi.set_priority(PRIO_IRQ);
    route(g.gicd, intid, cpus.mpidr(0));
    spi.enable();
    gic::set_pmr(PMR_ON);
    irq::set_hook(Some(hook));
    let ticket = secondary::post(1, Job::SpiReroute);
    let r = (|| {
        if !cpu::wait_ms(WAIT_MS, || READY.load(Ordering::Acquire)) {
            fail!("cpu 1 did not get ready");
        }
        // PSTATE.I is set here: CPU 0 holds the SPI pending, untaken.
        spi.set_pending();
        if !spi.pending().0 {
            fail!("SPI {intid} not pending after GICD_ISPENDR");
        }
        route(g.gicd, intid, cpus.mpidr(1));
        match ticket.wait(WAIT_MS + 1000) {
            Some(JobOutcome::OK) => {}
            Some(out) => fail!(
                "SPI {intid}, pending at CPU 0 and re-routed to CPU 1, taken {} times by CPU 1 within {WAIT_MS} ms, want once",
                out.detail
            ),
            None => {
                ticket.cancel();
                fail!("cpu 1 did not finish");
            }
        }
        irq::enable();
        cpu::wait_ms(1, || false);
        irq::disable();
        let here = TAKEN[0].load(Ordering::Relaxed);
        if here != 0 {
            fail!("SPI {intid} also taken {here} times by CPU 0 after it was re-routed");
        }
        Ok(None)
    })();
    irq::disable();
    spi.disable();
    spi.clear_pending();
    route(g.gicd, intid, cpus.mpidr(0));
    irq::set_hook(None);
    r
}
