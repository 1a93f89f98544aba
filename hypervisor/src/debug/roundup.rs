//! The hypervisor-wide stack dump and the stop paths, over the NMI SGI.
//!
//! The initiator posts BACKTRACE (or CRASH_STOP) to every other online CPU
//! and sends the NMI SGI. Each CPU checks in as soon as it takes the NMI;
//! one that has not checked in within the arrival timeout (100 ms unless
//! `nmivisor.nmi_timeout_ms` says otherwise) is reported as
//! not responding and the dump goes on without it. The initiator then gives
//! each CPU that checked in its turn to print, in CPU order, so blocks never
//! interleave, and finally prints its own block.
//!
//! Nothing here takes a lock that normal code may hold, except the console
//! lock, which is owner-CPU re-entrant with a timeout and a bust.

use super::dump::{print_backtrace, symbols};
use super::symbols::{describe, describe_return};
use crate::arch::el1::{self, El1Context};
use crate::arch::percpu::stack_of;
use crate::arch::percpu::{cpu_id, percpu};
use crate::arch::vectors::{TrapFrame, VectorKind};
use crate::arch::{cpu, gicv3, ich, MAX_CPUS};
use crate::ipi::message::Message;
use crate::ipi::roundup::{CpuMask, Roundup};
use crate::platform::topology::{mpidr_of, nr_cpus};
use crate::vm::guest::GuestSnapshot;
use crate::{console, ipi, println};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// How long a CPU has to take the NMI and check in.
pub const DEFAULT_ARRIVAL_TIMEOUT_MS: u64 = 100;
static ARRIVAL_TIMEOUT_MS: AtomicU64 = AtomicU64::new(DEFAULT_ARRIVAL_TIMEOUT_MS);

/// Sets how long a CPU has to take the NMI (`nmivisor.nmi_timeout_ms`):
/// under emulation on a loaded host, 100 ms of wall-clock time can be too
/// short for an idle virtual CPU to be scheduled.
pub fn set_arrival_timeout_ms(ms: u64) {
    ARRIVAL_TIMEOUT_MS.store(ms.clamp(1, 60_000), Ordering::Relaxed);
}

fn arrival_timeout_ms() -> u64 {
    ARRIVAL_TIMEOUT_MS.load(Ordering::Relaxed)
}
/// How long one CPU may take to print its block once it is its turn.
const PRINT_TIMEOUT_US: u64 = 2_000_000;
const NO_TURN: usize = usize::MAX;

static ARRIVALS: Roundup = Roundup::new();
/// The CPU whose turn it is to print its block.
static TURN: AtomicUsize = AtomicUsize::new(NO_TURN);
/// CPUs that finished printing in the current dump.
static DONE: AtomicU64 = AtomicU64::new(0);
/// CPUs that have stopped for good (STOP or CRASH_STOP).
static STOPPED: AtomicU64 = AtomicU64::new(0);
static PANICKING: AtomicBool = AtomicBool::new(false);

/// CPUs that are online and not stopped.
pub fn live_cpus() -> CpuMask {
    let stopped = STOPPED.load(Ordering::Acquire);
    (0..nr_cpus().min(MAX_CPUS))
        .filter(|&c| stopped & (1 << c) == 0)
        .filter(|&c| percpu(c).is_some_and(|p| p.online.load(Ordering::Acquire)))
        .fold(CpuMask::EMPTY, CpuMask::with)
}

/// "1 CPU", "3 CPUs".
fn cpus(n: usize) -> alloc::string::String {
    alloc::format!("{n} CPU{}", if n == 1 { "" } else { "s" })
}

fn ticks(us: u64) -> u64 {
    cpu::counter_freq().saturating_mul(us) / 1_000_000
}

/// Prints one CPU's block: what it was doing and its EL2 backtrace.
/// `frame` is the state the NMI interrupted; `None` for the initiator.
fn print_block(frame: Option<&TrapFrame>) {
    let console = console::lock_for_crash();
    let me = cpu_id();
    let table = symbols();
    let table = table.as_ref();
    println!("--- cpu {me} (MPIDR {:#x}) ---", mpidr_of(me));
    if console.busted() {
        println!("(console lock taken by force: output may interleave)");
    }
    match frame {
        Some(f) if VectorKind::from_spsr_el(f.spsr) == 2 => {
            println!("EL2 PC {}", describe(table, f.elr));
            println!("    LR {}", describe_return(table, f.x[30]));
            println!(
                "    SP {:#018x}  PMR {:#04x}  DAIF {:#05x}",
                f.sp,
                gicv3::pmr(),
                f.spsr & 0x3c0
            );
            print_backtrace(Some(f.elr), f.x[29], stack_of(me));
            print_trapped_guest(me);
        }
        Some(f) => {
            print_guest_state(f, "interrupted");
            println!("EL2: PMR {:#04x}", gicv3::pmr());
            print_backtrace(None, cpu::frame_pointer(), stack_of(me));
        }
        None => {
            println!(
                "EL2 (dumping CPU)  PMR {:#04x}  DAIF {:#05x}",
                gicv3::pmr(),
                cpu::daif()
            );
            print_backtrace(None, cpu::frame_pointer(), stack_of(me));
            print_trapped_guest(me);
        }
    }
}

/// The guest registers in `f` (a trap frame from a lower EL) with the VM
/// and vCPU they belong to. The guest's EL1 registers are live while its
/// vCPU is resident on this CPU; vPMR shows a guest spinning with its
/// interrupts masked.
pub(super) fn print_guest_state(f: &TrapFrame, how: &str) {
    match crate::vm::guest::current() {
        Some((vm, vcpu)) => println!(
            "guest state: vm {} vCPU {} (MPIDR {:#x}), {how} at EL{}",
            vm.name,
            vcpu.index,
            vcpu.mpidr,
            (f.spsr >> 2) & 3
        ),
        None => println!("guest state: {how} at EL{}", (f.spsr >> 2) & 3),
    }
    println!(
        "    PC {:#018x}  LR {:#018x}  SP {:#018x}",
        f.elr,
        f.x[30],
        el1::guest_sp(f.spsr)
    );
    println!(
        "    SPSR {:#010x}  ESR_EL1 {:#010x}",
        f.spsr,
        el1::guest_esr()
    );
    let regs = El1Context::save();
    println!(
        "    SCTLR_EL1 {:#010x}  TTBR0_EL1 {:#018x}  TTBR1_EL1 {:#018x}  VBAR_EL1 {:#018x}  vPMR {:#04x}",
        regs.sctlr,
        regs.ttbr0,
        regs.ttbr1,
        regs.vbar,
        ich::virtual_pmr()
    );
    println!("    TCR_EL1 {:#018x}", regs.tcr);
    if let Some((vm, _)) = crate::vm::guest::current() {
        super::guest_dump::print_guest_backtrace(vm, f);
    }
}

/// A CPU dumped while it was in the hypervisor on behalf of its guest (a
/// trap such as WFI or an MMIO access): the guest's registers wait in the
/// trap-frame slot at the top of this CPU's stack, so show them too.
fn print_trapped_guest(me: usize) {
    let Some((_, vcpu)) = crate::vm::guest::current() else {
        return;
    };
    if !vcpu.is_resident() {
        return;
    }
    if let Some(f) = crate::vm::run::guest_frame(me) {
        print_guest_state(f, "trapped to the hypervisor");
    }
}

/// Rounds up `targets` with `msg` over the NMI SGI and lets each print its
/// block in turn. Returns the CPUs that did not respond.
fn roundup(targets: CpuMask, msg: Message) -> Option<CpuMask> {
    let initiator = ARRIVALS.begin(targets).ok()?;
    DONE.store(0, Ordering::Release);
    TURN.store(NO_TURN, Ordering::Release);
    for cpu in targets {
        ipi::hw::send(cpu, msg);
    }
    let missing = initiator.wait(cpu::counter, ticks(arrival_timeout_ms() * 1000));
    for cpu in targets {
        if missing.contains(cpu) {
            let _console = console::lock_for_crash();
            println!("--- cpu {cpu} (MPIDR {:#x}) ---", mpidr_of(cpu));
            println!(
                "cpu {cpu} not responding to the NMI (no answer within {} ms)",
                arrival_timeout_ms()
            );
            continue;
        }
        TURN.store(cpu, Ordering::Release);
        let deadline = cpu::counter() + ticks(PRINT_TIMEOUT_US);
        while DONE.load(Ordering::Acquire) & (1 << cpu) == 0 {
            if cpu::counter() > deadline {
                println!("cpu {cpu}: dump did not complete");
                break;
            }
            crate::arch::relax();
        }
    }
    TURN.store(NO_TURN, Ordering::Release);
    drop(initiator);
    Some(missing)
}

const NO_VM: usize = usize::MAX;
/// The VM (its index) whose own dump is in progress, or NO_VM. In such a
/// dump the responders only record their guest's registers for the
/// initiator: nothing about the hypervisor or other VMs is printed, and no
/// responder writes to a console from NMI context.
static VM_SCOPE: AtomicUsize = AtomicUsize::new(NO_VM);
static SNAPSHOTS: [crate::arch::Mutex<Option<GuestSnapshot>>; MAX_CPUS] =
    [const { crate::arch::Mutex::new(None) }; MAX_CPUS];

/// This CPU's guest registers, if it runs a vCPU of VM `vm_index`: from
/// `frame` when the NMI interrupted the guest, else from the trap frame of
/// a trap being handled for it.
fn snapshot(vm_index: usize, frame: Option<&TrapFrame>) -> Option<GuestSnapshot> {
    let me = cpu_id();
    let (vm, vcpu) = crate::vm::guest::current()?;
    if !core::ptr::eq(crate::vm::guest::vms().get(vm_index)?, vm) || !vcpu.is_resident() {
        return None;
    }
    let (f, trapped) = match frame {
        Some(f) if VectorKind::from_spsr_el(f.spsr) != 2 => (f, false),
        _ => (crate::vm::run::guest_frame(me)?, true),
    };
    Some(GuestSnapshot {
        vcpu: vcpu.index,
        el: (f.spsr >> 2) & 3,
        trapped,
        pc: f.elr,
        lr: f.x[30],
        sp: el1::guest_sp(f.spsr),
        spsr: f.spsr,
        esr: el1::guest_esr(),
        vpmr: ich::virtual_pmr(),
    })
}

/// A dump that a VM asked for and may see: only the physical CPUs that run
/// its vCPUs are rounded up (other VMs are not disturbed), and it gets
/// back their guest registers, nothing of the hypervisor. `None` if
/// another dump is in progress. vCPUs whose CPU did not answer in time are
/// missing from the result.
pub fn snapshot_vm(vm_index: usize, cpus: CpuMask) -> Option<alloc::vec::Vec<GuestSnapshot>> {
    let me = cpu_id();
    let targets = cpus.without(me);
    let initiator = ARRIVALS.begin(targets).ok()?;
    VM_SCOPE.store(vm_index, Ordering::Release);
    for cpu in targets {
        if let Some(mut slot) = SNAPSHOTS[cpu].try_lock() {
            *slot = None;
        }
        ipi::hw::send(cpu, Message::Backtrace);
    }
    let missing = initiator.wait(cpu::counter, ticks(arrival_timeout_ms() * 1000));
    // Responders record before they check in; the ones that checked in
    // are complete.
    VM_SCOPE.store(NO_VM, Ordering::Release);
    drop(initiator);
    let mut out = alloc::vec::Vec::new();
    out.extend(snapshot(vm_index, None));
    for cpu in targets {
        if missing.contains(cpu) {
            continue;
        }
        if let Some(s) = SNAPSHOTS[cpu].try_lock().and_then(|s| *s) {
            out.push(s);
        }
    }
    out.sort_by_key(|s| s.vcpu);
    Some(out)
}

/// The responder's side: check in, wait for the turn, print, report done.
fn respond(frame: &TrapFrame) {
    let me = cpu_id();
    let scope = VM_SCOPE.load(Ordering::Acquire);
    if scope != NO_VM {
        if let Some(mut slot) = SNAPSHOTS[me].try_lock() {
            *slot = snapshot(scope, Some(frame));
        }
        ARRIVALS.respond(me);
        return;
    }
    if !ARRIVALS.respond(me) {
        // Not part of a roundup in flight (e.g. it arrived too late): still
        // useful, so print on our own.
        print_block(Some(frame));
        return;
    }
    let deadline = cpu::counter() + ticks(PRINT_TIMEOUT_US + arrival_timeout_ms() * 1000);
    while TURN.load(Ordering::Acquire) != me {
        if cpu::counter() > deadline {
            return;
        }
        crate::arch::relax();
    }
    print_block(Some(frame));
    DONE.fetch_or(1 << me, Ordering::Release);
}

/// The hypervisor-wide stack dump: every other live CPU over the NMI SGI,
/// then this one. Safe to call from any context but the NMI handler; a
/// dump already in progress makes this one a no-op.
pub fn dump_all_cpus(reason: &str) {
    let me = cpu_id();
    let targets = live_cpus().without(me);
    println!("=== nmivisor: dump of all CPUs ({reason}), from cpu {me} ===");
    let Some(missing) = roundup(targets, Message::Backtrace) else {
        println!("nmivisor: a dump is already in progress");
        return;
    };
    print_block(None);
    println!(
        "=== end of dump: {} dumped, {} not responding ===",
        cpus(live_cpus().len() - missing.len()),
        missing.len()
    );
}

/// Dumps only this CPU.
pub fn dump_this_cpu() {
    print_block(None);
}

/// What became of a one-CPU backtrace request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BacktraceResult {
    Printed,
    /// The CPU did not take the NMI in time.
    NoAnswer,
    /// Another roundup (a dump) was in flight; nothing was asked.
    Busy,
}

/// Asks one CPU for its backtrace (the watchdog uses it).
pub fn backtrace_cpu(cpu: usize) -> BacktraceResult {
    match roundup(CpuMask::single(cpu), Message::Backtrace) {
        None => BacktraceResult::Busy,
        Some(missing) if missing.is_empty() => BacktraceResult::Printed,
        Some(_) => BacktraceResult::NoAnswer,
    }
}

/// Crash path: stops every other CPU with CRASH_STOP (each dumps itself and
/// halts), dumps this CPU, and returns so the caller can print its message
/// and halt. A second crash while one is being handled returns false at once.
pub fn crash_stop_all() -> bool {
    if PANICKING.swap(true, Ordering::AcqRel) {
        return false;
    }
    let me = cpu_id();
    let targets = live_cpus().without(me);
    println!("=== nmivisor: crash on cpu {me}: stopping and dumping all CPUs ===");
    let missing = match roundup(targets, Message::CrashStop) {
        Some(missing) => missing,
        // Another roundup (a dump) is in flight. A panic must still stop
        // every CPU: post CRASH_STOP anyway; each CPU halts after its block
        // (printed on its own, outside the turn order) and marks itself
        // stopped.
        None => {
            for cpu in targets {
                ipi::hw::send(cpu, Message::CrashStop);
            }
            let deadline = cpu::counter() + ticks(arrival_timeout_ms() * 1000 + PRINT_TIMEOUT_US);
            let stopped = || CpuMask::from_bits(STOPPED.load(Ordering::Acquire));
            while targets.into_iter().any(|c| !stopped().contains(c)) && cpu::counter() < deadline {
                crate::arch::relax();
            }
            let stopped = stopped();
            targets
                .into_iter()
                .filter(|&c| !stopped.contains(c))
                .fold(CpuMask::from_bits(0), CpuMask::with)
        }
    };
    print_block(None);
    println!(
        "=== end of crash dump: {} stopped, {} not responding ===",
        cpus(targets.len() - missing.len()),
        missing.len()
    );
    true
}

/// Stops the other live CPUs with STOP (each powers itself off through
/// PSCI) and returns the ones that did not take the NMI in time.
pub fn stop_others() -> CpuMask {
    let me = cpu_id();
    let targets = live_cpus().without(me);
    let Ok(initiator) = ARRIVALS.begin(targets) else {
        return targets;
    };
    for cpu in targets {
        ipi::hw::send(cpu, Message::Stop);
    }
    let missing = initiator.wait(cpu::counter, ticks(arrival_timeout_ms() * 1000));
    drop(initiator);
    missing
}

/// Takes a CPU that stopped for good (a STOP, a crash, an unexpected
/// exception) out of dumps, shutdown and the watchdog ring.
pub fn mark_stopped(me: usize) {
    STOPPED.fetch_or(1 << me, Ordering::AcqRel);
    crate::debug::watchdog_hw::cpu_offline(me);
}

/// NMI BACKTRACE.
pub fn on_backtrace(frame: &TrapFrame) {
    respond(frame);
}

/// NMI CRASH_STOP: dump this CPU, then halt it for good.
pub fn on_crash_stop(frame: &TrapFrame) -> ! {
    let me = cpu_id();
    respond(frame);
    mark_stopped(me);
    cpu::halt()
}

/// NMI STOP: leave for good through PSCI CPU_OFF.
pub fn on_stop() -> ! {
    let me = cpu_id();
    mark_stopped(me);
    if let Some(p) = percpu(me) {
        p.online.store(false, Ordering::Release);
    }
    ARRIVALS.respond(me);
    let err = crate::arch::psci::cpu_off();
    println!("cpu {me}: PSCI CPU_OFF failed: {err}");
    cpu::halt()
}

/// NMI DEBUG: a one-line report of where this CPU is.
pub fn on_debug(frame: &TrapFrame) {
    let table = symbols();
    println!(
        "cpu {}: DEBUG at {}",
        cpu_id(),
        describe(table.as_ref(), frame.elr)
    );
}
