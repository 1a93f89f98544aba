//! Taking interrupts: the IRQ vector's handler, a per-CPU log of what was
//! taken, and PSTATE.I masking.
//!
//! The handler ([`handle`]) acknowledges through ICC_IAR1_EL1, reads the
//! running priority ICC_RPR_EL1, logs an [`Kind::Enter`] event, calls the
//! running case's hook ([`set_hook`]) if there is one, masks PSTATE.I
//! again (a hook may have unmasked it to let an NMI nest), logs
//! [`Kind::Exit`] and ends the interrupt with ICC_EOIR1_EL1. The vectors
//! save the general-purpose and the FP/SIMD registers, so any code can be
//! interrupted and handlers may nest.
//!
//! PSTATE.I is set everywhere except where a case clears it with
//! [`enable`] for as long as it wants interrupts.

use crate::gic;
use crate::topology::MAX_CPUS;
use core::arch::asm;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Events kept per CPU; later ones are counted but not kept.
pub const LOG_CAPACITY: usize = 64;

/// Log events (two per interrupt) after which the handler disables the
/// interrupt it took: far more than any case takes.
const RUNAWAY: usize = 100_000;

/// What a log entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// After the acknowledge, before the hook.
    Enter = 1,
    /// After the hook, before the end of interrupt.
    Exit = 2,
}

/// One logged event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: Kind,
    pub intid: u32,
    /// ICC_RPR_EL1 right after the acknowledge (Enter) or before the end
    /// of interrupt (Exit).
    pub rpr: u8,
    /// CNTVCT_EL0 when it was logged.
    pub time: u64,
}

struct Log {
    /// Events logged (including those beyond the capacity).
    len: AtomicUsize,
    /// kind << 40 | rpr << 32 | intid; 0 until the entry is complete.
    packed: [AtomicU64; LOG_CAPACITY],
    time: [AtomicU64; LOG_CAPACITY],
}

static LOGS: [Log; MAX_CPUS] = [const {
    Log {
        len: AtomicUsize::new(0),
        packed: [const { AtomicU64::new(0) }; LOG_CAPACITY],
        time: [const { AtomicU64::new(0) }; LOG_CAPACITY],
    }
}; MAX_CPUS];

/// Spurious acknowledges (INTID 1023) per CPU.
static SPURIOUS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// The running case's hook: a `fn(u32)` as an address, 0 for none.
static HOOK: AtomicUsize = AtomicUsize::new(0);

/// Calls `hook(intid)` from the handler of every interrupt on every CPU
/// (with PSTATE.I set; the hook may clear it), until cleared with `None`.
pub fn set_hook(hook: Option<fn(u32)>) {
    HOOK.store(hook.map_or(0, |f| f as usize), Ordering::Release);
}

/// Clears `cpu`'s log and spurious count. The CPU must not be taking
/// interrupts meanwhile.
pub fn reset_log(cpu: usize) {
    let log = &LOGS[cpu];
    for p in &log.packed {
        p.store(0, Ordering::Relaxed);
    }
    SPURIOUS[cpu].store(0, Ordering::Relaxed);
    log.len.store(0, Ordering::Release);
}

fn record(cpu: usize, kind: Kind, intid: u32, rpr: u8) {
    let log = &LOGS[cpu];
    let i = log.len.fetch_add(1, Ordering::Relaxed);
    if i < LOG_CAPACITY {
        log.time[i].store(crate::cpu::counter(), Ordering::Relaxed);
        let packed = (kind as u64) << 40 | (rpr as u64) << 32 | intid as u64;
        log.packed[i].store(packed, Ordering::Release);
    }
}

/// How many events `cpu` logged (may exceed [`LOG_CAPACITY`]).
pub fn log_len(cpu: usize) -> usize {
    LOGS[cpu].len.load(Ordering::Acquire)
}

/// Event `i` of `cpu`'s log, if it is complete and kept.
pub fn event(cpu: usize, i: usize) -> Option<Event> {
    let log = &LOGS[cpu];
    let packed = log.packed.get(i)?.load(Ordering::Acquire);
    let kind = match packed >> 40 {
        1 => Kind::Enter,
        2 => Kind::Exit,
        _ => return None,
    };
    Some(Event {
        kind,
        intid: packed as u32,
        rpr: (packed >> 32) as u8,
        time: log.time[i].load(Ordering::Relaxed),
    })
}

/// The kept events of `cpu`, in order.
pub fn events(cpu: usize) -> impl Iterator<Item = Event> {
    let n = log_len(cpu).min(LOG_CAPACITY);
    (0..n).filter_map(move |i| event(cpu, i))
}

/// The Enter events of `cpu`, in order.
pub fn entries(cpu: usize) -> impl Iterator<Item = Event> {
    events(cpu).filter(|e| e.kind == Kind::Enter)
}

/// The first time `cpu` took `intid`.
pub fn first_entry(cpu: usize, intid: u32) -> Option<Event> {
    entries(cpu).find(|e| e.intid == intid)
}

/// How many times `cpu` took `intid`.
pub fn times_taken(cpu: usize, intid: u32) -> usize {
    entries(cpu).filter(|e| e.intid == intid).count()
}

/// Spurious acknowledges on `cpu` since its log was reset.
pub fn spurious(cpu: usize) -> u32 {
    SPURIOUS[cpu].load(Ordering::Relaxed)
}

/// The IRQ exception (from the vectors, PSTATE.I set).
pub fn handle() {
    let me = crate::cpu::index();
    let intid = gic::acknowledge();
    if gic::is_special(intid) {
        SPURIOUS[me].fetch_add(1, Ordering::Relaxed);
        return;
    }
    record(me, Kind::Enter, intid, gic::rpr());
    if log_len(me) > RUNAWAY {
        // An interrupt that keeps coming back (say a level the handler
        // cannot clear) would starve the case of every timeout: switch
        // it off, and let the case fail on its counts.
        if let Ok(g) = gic::get() {
            g.irq(intid).disable();
        }
    }
    let hook = HOOK.load(Ordering::Acquire);
    if hook != 0 {
        // SAFETY: HOOK only ever holds 0 or a `fn(u32)` stored by
        // `set_hook`.
        let hook: fn(u32) = unsafe { core::mem::transmute::<usize, fn(u32)>(hook) };
        hook(intid);
    }
    // The hook may have unmasked to let an NMI nest: the vectors restore
    // ELR/SPSR with interrupts masked.
    disable();
    record(me, Kind::Exit, intid, gic::rpr());
    gic::end_of_interrupt(intid);
}

/// Clears PSTATE.I: interrupts that pass the PMR are taken.
pub fn enable() {
    // SAFETY: unmasks IRQs; the vectors handle them.
    // Not `nomem`: memory accesses must not move across the unmask.
    unsafe { asm!("msr daifclr, #2", options(nostack, preserves_flags)) };
}

/// Sets PSTATE.I.
pub fn disable() {
    // SAFETY: masks IRQs.
    unsafe { asm!("msr daifset, #2", options(nostack, preserves_flags)) };
}
