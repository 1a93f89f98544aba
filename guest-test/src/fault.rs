//! "Expect a fault": a CPU arms a per-CPU flag, makes one access with a
//! single load or store instruction, and the synchronous exception handler
//! records ESR/FAR, skips the instruction (ELR += 4) and returns instead of
//! reporting an unexpected exception.

use crate::topology::MAX_CPUS;
use core::arch::asm;
use core::sync::atomic::{compiler_fence, AtomicBool, AtomicU64, Ordering};

static EXPECTING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static TAKEN: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static ESR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static FAR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// A fault taken by a probe.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    pub esr: u64,
    pub far: u64,
}

/// Called by the exception handler for a synchronous exception: if this
/// CPU expects a fault and this is a data abort, records it, disarms and
/// returns true (the handler then skips the instruction).
pub fn take_expected(cpu: usize, esr: u64, far: u64) -> bool {
    if crate::esr::ec(esr) != crate::esr::EC_DATA_ABORT_SAME_EL
        || !EXPECTING[cpu].swap(false, Ordering::Relaxed)
    {
        return false;
    }
    ESR[cpu].store(esr, Ordering::Relaxed);
    FAR[cpu].store(far, Ordering::Relaxed);
    TAKEN[cpu].store(true, Ordering::Relaxed);
    true
}

fn arm(cpu: usize) {
    TAKEN[cpu].store(false, Ordering::Relaxed);
    EXPECTING[cpu].store(true, Ordering::Relaxed);
    compiler_fence(Ordering::SeqCst);
}

fn disarm(cpu: usize) -> Option<Fault> {
    compiler_fence(Ordering::SeqCst);
    EXPECTING[cpu].store(false, Ordering::Relaxed);
    TAKEN[cpu].load(Ordering::Relaxed).then(|| Fault {
        esr: ESR[cpu].load(Ordering::Relaxed),
        far: FAR[cpu].load(Ordering::Relaxed),
    })
}

/// Reads the 64-bit word at `addr` (identity mapped), catching a data
/// abort: `Ok(value)` or `Err(fault)`.
pub fn read_u64(addr: u64) -> Result<u64, Fault> {
    let me = crate::cpu::index();
    arm(me);
    let mut value: u64 = 0;
    // SAFETY: a single load; if it aborts, the handler skips it and `value`
    // keeps its initial contents. The callers pick addresses that are RAM
    // or that nothing answers at.
    unsafe {
        asm!("ldr {v}, [{a}]", a = in(reg) addr, v = inout(reg) value, options(nostack));
    }
    match disarm(me) {
        Some(f) => Err(f),
        None => Ok(value),
    }
}

/// Writes `value` to the 64-bit word at `addr`, catching a data abort.
pub fn write_u64(addr: u64, value: u64) -> Result<(), Fault> {
    let me = crate::cpu::index();
    arm(me);
    // SAFETY: a single store, skipped if it aborts. The callers own the
    // word (they restore it) or nothing answers at the address.
    unsafe {
        asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack));
    }
    match disarm(me) {
        Some(f) => Err(f),
        None => Ok(()),
    }
}
