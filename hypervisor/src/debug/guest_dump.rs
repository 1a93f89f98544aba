//! The guest half of a dump: the frame-record backtrace of the guest a CPU
//! was running, symbolized with the VM's own symbols (the bundle's
//! `NAME/symbols`) when it has them.
//!
//! It runs on the CPU that runs the vCPU (a dump's responder in its NMI
//! handler, the initiator for its own vCPU, the guest lockup detector in
//! its timer interrupt), because the guest's EL1 translation registers are
//! live only there. The walk is in software (`debug::guest_walk` says why)
//! and reads only the VM's RAM; it never allocates and takes no lock, so
//! it is safe in NMI context. Lines go through `println!`, like the rest of
//! the dump block, under the console lock the caller holds.

use super::guest_lockup::{lr_deliverable, timer_pending, LockupState, Verdict};
use super::guest_walk::{GuestPhys, GuestUnwinder, GuestVirt, Regime, UnwindStop};
use crate::arch::el1::El1Context;
use crate::arch::percpu::cpu_id;
use crate::arch::vectors::{TrapFrame, VectorKind};
use crate::arch::{cpu, ich, Mutex, MAX_CPUS};
use crate::vm::guest::Vm;
use crate::vm::guest_symbols::{Kaslr, SystemMap};
use crate::{console, println};
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// Most return addresses a guest backtrace prints (after the PC).
pub const MAX_GUEST_FRAMES: usize = 32;

/// The VM's RAM by IPA; [`Vm::read_guest`] refuses anything outside it.
struct VmRam<'a>(&'a Vm);

impl GuestPhys for VmRam<'_> {
    fn read_u64(&self, ipa: u64) -> Option<u64> {
        if !ipa.is_multiple_of(8) {
            return None;
        }
        let mut word = [0u8; 8];
        self.0.read_guest(ipa, &mut word)?;
        Some(u64::from_le_bytes(word))
    }
}

/// A guest code address for the console: `0x%016x <name+0xoff>` when the
/// VM's symbols name it (at its link address, `addr - offset`).
struct GuestAddr<'a> {
    addr: u64,
    symbol: Option<(&'a str, u64)>,
}

impl<'a> GuestAddr<'a> {
    /// `ret`: a return address, looked up at the call (`addr - 4`), like
    /// the hypervisor's own frames.
    fn new(map: Option<&SystemMap<'a>>, offset: u64, addr: u64, ret: bool) -> Self {
        let link = addr.wrapping_sub(offset);
        let probe = if ret { link.wrapping_sub(4) } else { link };
        let symbol = map
            .and_then(|m| m.lookup(probe))
            .map(|(name, off)| (name, off.wrapping_add(link.wrapping_sub(probe))));
        GuestAddr { addr, symbol }
    }
}

impl fmt::Display for GuestAddr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}", self.addr)?;
        if let Some((name, off)) = self.symbol {
            write!(f, " <{name}+{off:#x}>")?;
        }
        Ok(())
    }
}

/// How the symbols line reads.
fn describe_kaslr(f: &mut fmt::Formatter<'_>, k: &Kaslr, vbar: u64) -> fmt::Result {
    match *k {
        Kaslr::Derived {
            offset,
            symbol,
            slot: 0,
        } => {
            write!(
                f,
                "KASLR offset {offset:#x} (VBAR_EL1 {vbar:#x} = {symbol} + offset)"
            )
        }
        Kaslr::Derived {
            offset,
            symbol,
            slot,
        } => write!(
            f,
            "KASLR offset {offset:#x} (VBAR_EL1 {vbar:#x} = {symbol} slot {slot} + offset)"
        ),
        Kaslr::NoVectors => write!(f, "load offset 0 (no vectors symbol)"),
        Kaslr::Mismatch => write!(
            f,
            "KASLR offset unknown (VBAR_EL1 {vbar:#x} is no vector table of the symbols), using 0"
        ),
    }
}

struct KaslrLine<'a>(&'a Kaslr, u64);
impl fmt::Display for KaslrLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        describe_kaslr(f, self.0, self.1)
    }
}

/// Prints the guest backtrace of `frame` (the guest's registers as the
/// exception from it saved them), for the vCPU of `vm` running on this
/// CPU: frame #0 is the guest PC, then the frame-record chain from its x29.
pub fn print_guest_backtrace(vm: &Vm, frame: &TrapFrame) {
    let el = (frame.spsr >> 2) & 3;
    if frame.spsr & (1 << 4) != 0 {
        println!("guest backtrace: none (the guest is in AArch32)");
        return;
    }
    let regs = El1Context::save();
    let regime = Regime {
        sctlr: regs.sctlr,
        tcr: regs.tcr,
        ttbr0: regs.ttbr0,
        ttbr1: regs.ttbr1,
    };
    let map = vm.symbols.as_ref();
    let kaslr = map.map(|m| m.kaslr_offset(regs.vbar));
    let offset = kaslr.map_or(0, |k| k.offset());
    match &kaslr {
        Some(k) => println!(
            "guest backtrace (EL{el}, x29 {:#018x}; symbols: {}):",
            frame.x[29],
            KaslrLine(k, regs.vbar)
        ),
        None => println!(
            "guest backtrace (EL{el}, x29 {:#018x}; no symbols in the bundle):",
            frame.x[29]
        ),
    }
    let ram = VmRam(vm);
    println!(
        "  #0 {}",
        GuestAddr::new(map, offset, regime.strip_pac(frame.elr), false)
    );
    // The link register: the caller of #0 while #0 has not stored its
    // frame record (a leaf function, or the first instructions of one),
    // which the frame-record chain below then skips; stale otherwise.
    println!(
        "  lr {}",
        GuestAddr::new(map, offset, regime.strip_pac(frame.x[30]), true)
    );
    let mut unwinder = GuestUnwinder::new(
        GuestVirt { regime, mem: &ram },
        frame.x[29],
        MAX_GUEST_FRAMES,
    );
    for (n, ret) in (1..).zip(unwinder.by_ref()) {
        println!("  #{n} {}", GuestAddr::new(map, offset, ret, true));
    }
    match unwinder.stop_reason() {
        Some(UnwindStop::End) | None => {}
        Some(why) => println!("  (guest unwind stopped: {why})"),
    }
}

/// Traps each CPU took from its guest (synchronous exceptions only:
/// WFI, hypercalls, MMIO, system registers, aborts). Interrupt exits do not
/// count: a guest spinning with PSTATE.I set still has those.
static TRAPS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// The lockup detector's episode of the vCPU on each CPU; only that CPU's
/// timer interrupt touches its slot.
static LOCKUP: [Mutex<LockupState>; MAX_CPUS] =
    [const { Mutex::new(LockupState::new()) }; MAX_CPUS];

/// A synchronous exception from the guest on this CPU (the trap path;
/// inlined there: three instructions, which a call would double).
#[inline(always)]
pub fn note_trap() {
    if let Some(t) = TRAPS.get(cpu_id()) {
        t.store(t.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

/// The first list register holding a deliverable pending interrupt:
/// (INTID, priority).
fn deliverable_lr(vpmr: u8) -> Option<(u32, u8)> {
    (0..ich::nr_lrs())
        .map(ich::read_lr)
        .find(|&lr| lr_deliverable(lr, vpmr))
        .map(|lr| (lr as u32, (lr >> 48) as u8))
}

/// The guest lockup detector's sample, from the watchdog tick on this CPU
/// (`frame`: what the tick interrupted). Reports a vCPU stuck with an
/// interrupt it does not take once per episode, with its guest state and
/// backtrace; nothing else stops (see `debug::guest_lockup`).
pub fn lockup_tick(frame: &TrapFrame) {
    let me = cpu_id();
    let Some((vm, vcpu)) = crate::vm::guest::current() else {
        return;
    };
    if vm.lockup_ticks == 0 || !vcpu.is_resident() {
        return;
    }
    let in_guest = VectorKind::from_spsr_el(frame.spsr) != 2;
    let vpmr = ich::virtual_pmr();
    let (lr, timer) = if in_guest {
        (
            deliverable_lr(vpmr),
            timer_pending(El1Context::save().cntv_ctl),
        )
    } else {
        (None, false)
    };
    let stuck = lr.is_some() || timer;
    let traps = TRAPS[me].load(Ordering::Relaxed);
    let Some(mut state) = LOCKUP[me].try_lock() else {
        return;
    };
    let verdict = state.sample(cpu::counter(), stuck, traps, vm.lockup_ticks);
    drop(state);
    let Verdict::Report { for_ticks } = verdict else {
        return;
    };
    let ms = for_ticks.saturating_mul(1000) / cpu::counter_freq().max(1);
    let _console = console::lock_for_crash();
    let mut why = console::LineBuf::new();
    if timer {
        let _ = fmt::Write::write_str(&mut why, "virtual timer pending; ");
    }
    if let Some((intid, prio)) = lr {
        let _ = fmt::Write::write_fmt(
            &mut why,
            format_args!("INTID {intid} pending at priority {prio:#04x}, vPMR {vpmr:#04x}; "),
        );
    }
    let masked = if frame.spsr & (1 << 7) != 0 {
        "set"
    } else {
        "clear"
    };
    println!(
        "nmivisor: vm {} vCPU {} (cpu {me}): guest lockup: no interrupt taken and no trap for over {ms} ms ({}PSTATE.I {masked})",
        vm.name,
        vcpu.index,
        why.as_str()
    );
    super::roundup::print_guest_state(frame, "locked up");
    println!(
        "nmivisor: vm {} vCPU {}: end of the guest lockup report",
        vm.name, vcpu.index
    );
}
