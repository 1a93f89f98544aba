//! Guest exits: synchronous exceptions from EL1/EL0, decoded with the pure
//! ESR module and dispatched. Every guest-controlled value gets a defined
//! answer (an SMCCC error, an injected abort or UNDEFINED, a rate-limited
//! log line), never a hypervisor panic.

use super::guest::{self, Power, StartRequest, Vcpu, Vm};
use super::hypercall::{self, Call, VendorCall, CONSOLE_WRITE_MAX};
use super::inject::{self, ExceptionKind, GuestState};
use super::psci::{self, PowerState, PsciCall, PsciVm};
use super::run;
use super::sysreg;
use crate::arch::el1;
use crate::arch::esr::{fault_ipa, Esr, ExceptionClass, SysRegAccess};
use crate::arch::vectors::TrapFrame;
use crate::arch::{cpu, gicv3};
use crate::println;

/// Handles a synchronous exception from the guest running on this CPU,
/// `current` ([`guest::current`]).
pub fn handle_sync(frame: &mut TrapFrame, current: (&'static Vm, &'static Vcpu)) {
    let (vm, vcpu) = current;
    // Traps may take long (PSCI, console, dumps): let interrupts in, NMIs
    // above all, while the trap frame keeps the guest state.
    gicv3::local_irq_unmask();
    let esr = Esr(frame.esr);
    match esr.class() {
        ExceptionClass::Hvc64 => hypercall(vm, vcpu, frame),
        ExceptionClass::Smc64 => {
            // A trapped SMC returns to the SMC itself (Arm ARM D1.10.1).
            frame.elr += esr.instruction_len();
            hypercall(vm, vcpu, frame);
        }
        ExceptionClass::WfiWfe => {
            frame.elr += esr.instruction_len();
            super::vgic::wait_for_interrupt(vm, vcpu);
        }
        ExceptionClass::SysReg => {
            if sysreg(vm, vcpu, esr.iss(), &mut frame.x) {
                frame.elr += esr.instruction_len();
            } else {
                log(
                    vm,
                    "system register access not emulated, injecting UNDEFINED",
                    u64::from(esr.iss()),
                );
                inject_sync(frame, Esr::undefined(esr.il()).0);
            }
        }
        ExceptionClass::DataAbortLower => data_abort(vm, vcpu, frame, esr),
        ExceptionClass::InstructionAbortLower => {
            log(vm, "instruction fetch outside guest RAM", frame.far);
            inject_sync(frame, instruction_abort_esr(frame.spsr));
        }
        _ => {
            log(
                vm,
                "unhandled exception class, injecting UNDEFINED",
                frame.esr,
            );
            inject_sync(frame, Esr::undefined(esr.il()).0);
        }
    }
    gicv3::local_irq_mask();
}

/// A trapped MSR/MRS: the registers nmivisor answers itself
/// (`vm::sysreg`), then the vGIC's SGI registers. False: UNDEFINED.
fn sysreg(vm: &Vm, vcpu: &Vcpu, iss: u32, regs: &mut [u64; 31]) -> bool {
    let access = SysRegAccess::decode(iss);
    match sysreg::emulate(&access, crate::arch::features::view()) {
        sysreg::Answer::Read(v) => {
            if let Some(r) = regs.get_mut(usize::from(access.rt)) {
                *r = v;
            }
            true
        }
        sysreg::Answer::Ignored => true,
        sysreg::Answer::NotMine => super::vgic::sysreg_trap(vm, vcpu, &access, regs),
    }
}

/// A physical SError or FIQ taken while a guest ran: logged (rate-limited).
pub fn log_async(kind: crate::arch::vectors::VectorKind, frame: &TrapFrame) {
    if let Some((vm, _)) = guest::current() {
        let (ty, _) = kind.describe();
        log(vm, ty, frame.esr);
    }
}

/// A rate-limited line about something a guest did.
pub fn log_guest(vm: &Vm, what: &str, value: u64) {
    log(vm, what, value);
}

/// Called outside the UART and vGIC locks (the flush takes both). Out of
/// line and cold: inlined, it made every trap's frame bigger.
#[cold]
#[inline(never)]
fn log(vm: &Vm, what: &str, value: u64) {
    // The VM's queued output first: with one VM, its bytes go out
    // unbuffered, and a line printed while the rest of the guest's line
    // still waited in the queue would split that line in two.
    vm.log_limit.println_after(
        || super::uart::flush(vm),
        format_args!("nmivisor: vm {}: {what} ({value:#x})", vm.name),
    );
}

/// Data aborts that reach EL2 are stage-2 faults on IPAs outside guest RAM:
/// MMIO. An access with a valid syndrome to an emulated device is carried
/// out; anything else becomes a synchronous external abort in the guest.
fn data_abort(vm: &Vm, vcpu: &Vcpu, frame: &mut TrapFrame, esr: Esr) {
    let ipa = fault_ipa(cpu::hpfar(), frame.far);
    if let Some(access) = esr.mmio_access() {
        let reg = usize::from(access.reg);
        let value = if reg == 31 { 0 } else { frame.x[reg] };
        let done = if super::uart::is_uart(ipa) {
            Some(super::uart::mmio(
                vm,
                &access,
                ipa - super::memmap::UART.start,
                value,
            ))
        } else {
            match super::vgic::mmio(vm, vcpu, ipa, &access, value) {
                super::vgic::Mmio::Done(read) => Some(read),
                super::vgic::Mmio::NotMine => None,
            }
        };
        if let Some(read) = done {
            if let (Some(v), true) = (read, reg != 31) {
                frame.x[reg] = access.load_value(v);
            }
            frame.elr += esr.instruction_len();
            return;
        }
    }
    // WnR and CM hold even without a valid syndrome (LDP/STP, DC by VA).
    let (write, cm) = esr.abort_direction();
    log(
        vm,
        "access to an IPA with no memory or device, injecting an external abort",
        ipa,
    );
    let same_el = frame.spsr & 0xf != 0;
    inject_sync(frame, Esr::sync_external_data_abort(same_el, write, cm).0);
}

/// ESR for a synchronous external abort on instruction fetch (EC 0x21 from
/// EL1, 0x20 from EL0; IFSC 0x10).
fn instruction_abort_esr(spsr: u64) -> u64 {
    let ec = if spsr & 0xf != 0 { 0x21 } else { 0x20 };
    ec << 26 | 1 << 25 | 0x10
}

/// Takes a synchronous exception with syndrome `esr` to the guest's EL1.
fn inject_sync(frame: &mut TrapFrame, esr: u64) {
    let state = GuestState {
        pstate: frame.spsr,
        pc: frame.elr,
        vbar_el1: el1::guest_vbar(),
        sctlr_el1: el1::guest_sctlr(),
    };
    match inject::inject(&state, ExceptionKind::Sync) {
        Ok(to) => {
            el1::set_exception_regs(esr, frame.far, to.elr_el1, to.spsr_el1);
            frame.elr = to.pc;
            frame.spsr = to.pstate;
        }
        Err(e) => {
            // Nothing sane to resume: stop this vCPU, keep the hypervisor.
            println!("nmivisor: {e}; stopping this vCPU");
            if let Some((_, vcpu)) = guest::current() {
                vcpu.set_power(Power::Off);
            }
        }
    }
}

/// The PSCI view of a VM.
struct PsciView<'a>(&'a Vm);

impl PsciVm for PsciView<'_> {
    fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<usize> {
        self.0.vcpu_by_mpidr(mpidr).map(|v| v.index)
    }

    fn power_state(&self, vcpu: usize) -> PowerState {
        match self.0.vcpus.get(vcpu).map(Vcpu::power) {
            Some(Power::On) => PowerState::On,
            Some(Power::OnPending) => PowerState::OnPending,
            _ => PowerState::Off,
        }
    }

    fn entry_is_valid(&self, ipa: u64) -> bool {
        self.0.ipa_to_pa(ipa, 4).is_some() && ipa.is_multiple_of(4)
    }
}

/// An HVC or SMC from the guest (SMCCC): x0 is the function ID, x1..x3 the
/// arguments; results go back in x0. Inlined into [`handle_sync`]: the
/// calls that do real work are out of line.
#[inline(always)]
fn hypercall(vm: &'static Vm, vcpu: &Vcpu, frame: &mut TrapFrame) {
    let fid = frame.x[0] as u32;
    let args = [frame.x[1], frame.x[2], frame.x[3]];
    let call = hypercall::decode(fid, args);
    let result = match call.fixed_result() {
        Some(r) => r,
        None => match call {
            Call::Psci(fid) => psci_call(vm, vcpu, fid, args),
            Call::Vendor(VendorCall::ConsoleWrite { addr, len }) => console_write(vm, addr, len),
            Call::Vendor(VendorCall::Test(0)) => inject_test_interrupt(vm, args),
            #[cfg(feature = "test-hooks")]
            Call::Vendor(VendorCall::Test(1)) => hold_vgic_lock(vm, vcpu),
            Call::Vendor(VendorCall::Dump) => vm_dump(vm, vcpu),
            _ => hypercall::NOT_SUPPORTED,
        },
    };
    frame.x[0] = result as u64;
}

/// The shortest time between two NMV_DUMP dumps of one VM.
const DUMP_INTERVAL_US: u64 = 1_000_000;
/// NMV_DUMP's answer when the last dump was less than DUMP_INTERVAL_US ago
/// or another dump is running (SMCCC's DENIED).
const DUMP_BUSY: i64 = -3;

/// NMV_DUMP: with the bundle's `dump = on`, a dump of this VM's own vCPUs
/// (their guest registers, nothing of the hypervisor or other VMs) on this
/// VM's console; at most one per second. Refused otherwise: a dump stops
/// CPUs, which no VM may do to another.
fn vm_dump(vm: &Vm, vcpu: &Vcpu) -> i64 {
    if !vm.dump_allowed {
        log(
            vm,
            "NMV_DUMP refused (the bundle config does not say dump = on)",
            0,
        );
        return hypercall::NOT_SUPPORTED;
    }
    let now = cpu::counter();
    let interval = cpu::counter_freq().saturating_mul(DUMP_INTERVAL_US) / 1_000_000;
    // One winner per interval even when several vCPUs ask at once.
    let last = vm.last_dump.load(core::sync::atomic::Ordering::Acquire);
    if last != 0 && now.wrapping_sub(last) < interval {
        return DUMP_BUSY;
    }
    if vm
        .last_dump
        .compare_exchange(
            last,
            now,
            core::sync::atomic::Ordering::AcqRel,
            core::sync::atomic::Ordering::Acquire,
        )
        .is_err()
    {
        return DUMP_BUSY;
    }
    let Some(index) = guest::vms().iter().position(|v| core::ptr::eq(v, vm)) else {
        return hypercall::NOT_SUPPORTED;
    };
    let cpus = vm
        .vcpus
        .iter()
        .filter(|v| v.is_resident())
        .fold(crate::ipi::roundup::CpuMask::from_bits(0), |m, v| {
            m.with(v.pcpu)
        });
    let Some(snaps) = super::services::snapshot_vm(index, cpus) else {
        return DUMP_BUSY;
    };
    let mut out = alloc::string::String::new();
    use core::fmt::Write;
    let _ = writeln!(
        out,
        "nmivisor: dump of vm {} (requested by vCPU {}): {} of {} vCPUs running",
        vm.name,
        vcpu.index,
        snaps.len(),
        vm.vcpus.len()
    );
    for s in &snaps {
        let _ = writeln!(
            out,
            "  vCPU {} {} at EL{}: PC {:#018x} LR {:#018x} SP {:#018x} SPSR {:#010x} ESR_EL1 {:#010x} vPMR {:#04x}",
            s.vcpu,
            if s.trapped { "in a trap" } else { "running" },
            s.el,
            s.pc,
            s.lr,
            s.sp,
            s.spsr,
            s.esr,
            s.vpmr
        );
    }
    let _ = writeln!(out, "nmivisor: end of dump of vm {}", vm.name);
    vm.console_note(&out);
    0
}

/// NMV_TEST_BASE + 0: the "virtual NMI" API for tests: make INTID x2
/// pending at priority x3 on vCPU x1 of the calling VM.
fn inject_test_interrupt(vm: &Vm, args: [u64; 3]) -> i64 {
    let (Ok(vcpu), Ok(intid), Ok(priority)) = (
        usize::try_from(args[0]),
        u32::try_from(args[1]),
        u8::try_from(args[2]),
    ) else {
        return hypercall::INVALID_PARAMETERS;
    };
    if super::vgic::inject(vm, vcpu, intid, priority) {
        0
    } else {
        hypercall::INVALID_PARAMETERS
    }
}

/// Whether NMV_TEST_BASE + 1 may hold a vGIC lock: only a test image
/// booted with `nmivisor.test=vgic-lock-hold` says yes, so that no other
/// test (a hostile guest's random hypercalls) can stop a CPU with it.
#[cfg(feature = "test-hooks")]
pub static LOCK_HOLD_ALLOWED: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// NMV_TEST_BASE + 1, test images with `nmivisor.test=vgic-lock-hold`
/// only (else NOT_SUPPORTED): this CPU takes the VM's vGIC lock and keeps
/// it, spinning masked by priority as every lock holder is. The
/// `vgic-lock-held` scenario then checks that a hypervisor-wide dump still
/// reaches every CPU: the NMI path never waits for that lock.
#[cfg(feature = "test-hooks")]
fn hold_vgic_lock(vm: &Vm, vcpu: &Vcpu) -> i64 {
    if !LOCK_HOLD_ALLOWED.load(core::sync::atomic::Ordering::Relaxed) {
        return hypercall::NOT_SUPPORTED;
    }
    let _held = super::vgic::lock(vm);
    crate::println!(
        "nmivisor: test: vCPU {} holds vm {}'s vGIC lock for good",
        vcpu.index,
        vm.name
    );
    loop {
        crate::arch::relax();
    }
}

// Out of line: its 256-byte buffer would otherwise be zeroed on every
// hypercall.
#[inline(never)]
fn console_write(vm: &Vm, addr: u64, len: usize) -> i64 {
    let mut buf = [0u8; CONSOLE_WRITE_MAX];
    let Some(bytes) = buf.get_mut(..len) else {
        return hypercall::INVALID_PARAMETERS;
    };
    if vm.read_guest(addr, bytes).is_none() {
        return hypercall::INVALID_PARAMETERS;
    }
    super::uart::queue(vm, bytes) as i64
}

fn psci_call(vm: &'static Vm, vcpu: &Vcpu, fid: u32, args: [u64; 3]) -> i64 {
    match psci::handle(fid, args, &PsciView(vm)) {
        None => hypercall::NOT_SUPPORTED,
        Some(PsciCall::Return(r)) => r,
        Some(PsciCall::CpuOn {
            vcpu: target,
            entry,
            context,
        }) => {
            match vm.vcpus.get(target) {
                Some(t) if run::start_vcpu(t, StartRequest { entry, context }) => 0,
                // Lost a race with another CPU_ON for the same vCPU.
                Some(_) => psci::ret::ALREADY_ON,
                None => psci::ret::INVALID_PARAMETERS,
            }
        }
        Some(PsciCall::CpuOff) => {
            vcpu.set_power(Power::Off);
            gicv3::local_irq_mask();
            run::restart_loop()
        }
        Some(PsciCall::Suspend) => {
            super::vgic::wait_for_interrupt(vm, vcpu);
            0
        }
        // Both run with PSTATE.I clear, as every trap does (NMIs and kicks
        // reach this CPU while it waits for the other vCPUs and reloads
        // the image); restart_loop masks for the stack switch.
        Some(PsciCall::SystemOff) => run::system_off(vm, vcpu),
        Some(PsciCall::SystemReset) => run::system_reset(vm, vcpu),
    }
}
