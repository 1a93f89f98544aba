//! The per-CPU run loop and the vCPU lifecycle: start, stop, VM power-off
//! and reset.
//!
//! Every physical CPU ends up in [`pcpu_loop`], running on its stack below
//! a reserved trap-frame slot at the very top. Entering a vCPU fills that
//! slot and ERETs; every trap from the guest builds its frame in the same
//! slot. Leaving a vCPU for good (CPU_OFF, VM stop) restarts the loop on a
//! fresh stack, so nothing piles up.

use super::guest::{self, owned_by, Power, StartRequest, Vcpu, Vm, VmState};
use crate::arch::el1::{self, El1Context, GuestControl, HCR_GUEST};
use crate::arch::percpu::cpu_id;
use crate::arch::percpu::stack_of;
use crate::arch::vectors::TrapFrame;
use crate::arch::{cpu, gicv3};
use crate::gic::priority;
use crate::ipi::message::Message;
use crate::mm::stage2;
use crate::{ipi, println};
use core::sync::atomic::{AtomicUsize, Ordering};

/// SPSR for a vCPU's first instruction: EL1h, all of DAIF masked.
const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// Top of this CPU's stack minus the guest trap-frame slot.
fn loop_stack_top(cpu: usize) -> u64 {
    stack_of(cpu).end - core::mem::size_of::<TrapFrame>() as u64
}

/// The guest's registers while its vCPU is in a trap on physical CPU
/// `cpu`: the frame slot at the top of that CPU's stack. Only meaningful
/// while the vCPU is resident and the CPU is handling one of its traps;
/// the caller (a dump on that same CPU) checks that.
pub fn guest_frame(cpu: usize) -> Option<&'static TrapFrame> {
    if cpu != cpu_id() {
        return None;
    }
    let slot = loop_stack_top(cpu) as *const TrapFrame;
    // SAFETY: the slot is part of this CPU's stack, always mapped; the
    // vectors fill it on every trap from the guest. Reading it from this
    // CPU while the trap is being handled sees a complete frame.
    Some(unsafe { &*slot })
}

/// Restarts this CPU's run loop from a fresh stack.
pub fn restart_loop() -> ! {
    // Masked only for the switch to the fresh stack; pcpu_loop unmasks.
    gicv3::local_irq_mask();
    if let Some((_, vcpu)) = guest::current() {
        vcpu.set_resident(false);
    }
    el1::run_on_fresh_stack(loop_stack_top(cpu_id()), pcpu_loop)
}

/// Where every physical CPU waits: runs work queued for it, enters its vCPU
/// once that is asked to start, and otherwise sleeps in WFI.
pub extern "C" fn pcpu_loop() -> ! {
    let me = cpu_id();
    // The loop may be restarted from inside a trap or interrupt handler,
    // where PSTATE.I is set: it is thread context from here on.
    gicv3::set_pmr(priority::PMR_ON);
    gicv3::local_irq_unmask();
    loop {
        // PSTATE.I is set from the checks to the WFI, so a kick that arrives
        // after a check still ends the WFI (it wakes on a pending interrupt
        // even when masked, Arm ARM D1.6.2) instead of being taken just
        // before it and leaving this CPU asleep until the next interrupt.
        gicv3::local_irq_mask();
        if let Some(work) = ipi::hw::take_work(me) {
            gicv3::local_irq_unmask();
            work();
            continue;
        }
        if let Some((vm, vcpu)) = owned_by(me) {
            if vcpu.power() == Power::OnPending && vm.state() == VmState::Running {
                if let Some(req) = vcpu.claim_start() {
                    enter(vm, vcpu, req);
                }
            }
        }
        cpu::wfi();
        gicv3::local_irq_unmask();
    }
}

/// Loads `vcpu` on this CPU from reset and enters it.
fn enter(vm: &Vm, vcpu: &Vcpu, req: StartRequest) -> ! {
    El1Context::reset().restore();
    el1::load_guest_control(&GuestControl {
        hcr: HCR_GUEST,
        vttbr: vm.stage2.vttbr(),
        vtcr: stage2::vtcr(),
        vmpidr: vcpu.mpidr | 1 << 31,
        cntvoff: vm.cntvoff,
    });
    stage2::flush_current_vmid();
    super::vgic::vcpu_reset(vm, vcpu);
    super::vgic::flush(vm, vcpu);

    let top = stack_of(cpu_id()).end;
    let slot = (top - core::mem::size_of::<TrapFrame>() as u64) as *mut TrapFrame;
    // SAFETY: the slot is the reserved top of this CPU's stack, below which
    // the run loop runs; nothing else uses it. It is fully initialized here.
    let frame = unsafe {
        slot.write_bytes(0, 1);
        &mut *slot
    };
    frame.x[0] = req.context;
    frame.elr = req.entry;
    frame.spsr = SPSR_EL1H_MASKED;
    el1::enter_guest(frame)
}

/// First thing on every trap from the guest: its list registers flow back
/// into the vGIC state ([`super::vgic::fold`], which says how it waits for
/// the vGIC lock without blocking the NMI path).
#[inline]
pub fn guest_exited() {
    guest_exited_on(guest::current());
}

/// [`guest_exited`] for the vCPU `current` (this CPU's, looked up by the
/// caller). Inlined into the exception dispatch, as the fold's fast path
/// is.
#[inline(always)]
pub fn guest_exited_on(current: Option<(&'static Vm, &'static Vcpu)>) {
    if let Some((vm, vcpu)) = current {
        super::vgic::fold(vm, vcpu);
    }
}

/// Last thing before returning to the guest after a trap. A vCPU that was
/// turned off, or whose VM stopped or is resetting, is abandoned here and
/// the CPU goes back to its run loop; otherwise the list registers are
/// refilled for it. `current` is this CPU's vCPU ([`guest::current`]).
#[inline(always)]
pub fn resume_guest(current: Option<(&'static Vm, &'static Vcpu)>) {
    let Some((vm, vcpu)) = current else { return };
    if vcpu.power() != Power::On || vm.state() != VmState::Running {
        vcpu.set_power(Power::Off);
        restart_loop();
    }
    super::vgic::flush(vm, vcpu);
}

/// Starts `vcpu` (PSCI CPU_ON, VM start): marks it pending and kicks its CPU.
pub fn start_vcpu(vcpu: &Vcpu, req: StartRequest) -> bool {
    if !vcpu.request_start(req) {
        return false;
    }
    kick(vcpu.pcpu);
    true
}

fn kick(pcpu: usize) {
    if pcpu == cpu_id() {
        return;
    }
    ipi::hw::send(pcpu, Message::VcpuKick);
}

/// Starts a VM's boot vCPU at the kernel with x0 = the DTB.
pub fn boot_vm(vm: &Vm) {
    let Some(boot) = vm.vcpus.first() else { return };
    start_vcpu(
        boot,
        StartRequest {
            entry: vm.layout.kernel.start,
            context: vm.layout.dtb.start,
        },
    );
}

/// How long the other vCPUs of a VM get to leave the guest.
const LEAVE_TIMEOUT_US: u64 = 1_000_000;

/// Makes every other vCPU of `vm` leave the guest and waits (bounded) until
/// none is resident, so the VM's memory can be rewritten. Returns false if
/// one did not leave in time.
fn stop_other_vcpus(vm: &Vm, me: Option<usize>) -> bool {
    let others = || vm.vcpus.iter().filter(move |v| Some(v.index) != me);
    for vcpu in others() {
        vcpu.set_power(Power::Off);
        if vcpu.is_resident() {
            kick(vcpu.pcpu);
        }
    }
    let deadline = cpu::deadline_after_us(LEAVE_TIMEOUT_US);
    while others().any(Vcpu::is_resident) {
        if cpu::counter() > deadline {
            return false;
        }
        crate::arch::relax();
    }
    true
}

/// PSCI SYSTEM_OFF: stops the VM; the machine powers off when no VM runs.
pub fn system_off(vm: &Vm, vcpu: &Vcpu) -> ! {
    vm.set_state(VmState::Stopped);
    stop_other_vcpus(vm, Some(vcpu.index));
    vcpu.set_power(Power::Off);
    super::uart::flush(vm);
    println!(
        "nmivisor: vm {}: powered off (SYSTEM_OFF from vCPU {})",
        vm.name, vcpu.index
    );
    vm_stopped()
}

/// VMs that stopped for good and said their last words.
static STOPPED_VMS: AtomicUsize = AtomicUsize::new(0);

/// Called by the CPU that stopped a VM, after the VM's last console
/// output and lines: the CPU whose VM completes the count powers the
/// machine off. Counting here rather than testing every VM's state keeps
/// a VM that is still flushing its console (its state already `Stopped`,
/// so that its vCPUs leave) from being cut short by the machine's power-off,
/// and makes exactly one CPU power off.
fn vm_stopped() -> ! {
    let stopped = STOPPED_VMS.fetch_add(1, Ordering::AcqRel) + 1;
    if stopped == guest::vms().len() {
        println!("nmivisor: all VMs stopped");
        super::services::power_off();
    }
    restart_loop()
}

/// PSCI SYSTEM_RESET: stops every vCPU, reloads the VM from its image and
/// starts it again on its boot vCPU.
pub fn system_reset(vm: &Vm, vcpu: &Vcpu) -> ! {
    vm.set_state(VmState::Resetting);
    vcpu.set_power(Power::Off);
    if !stop_other_vcpus(vm, Some(vcpu.index)) {
        println!(
            "nmivisor: vm {}: a vCPU did not stop; reset abandoned, VM stopped",
            vm.name
        );
        vm.set_state(VmState::Stopped);
        vm_stopped();
    }
    super::uart::flush(vm);
    println!(
        "nmivisor: vm {}: reset (SYSTEM_RESET from vCPU {})",
        vm.name, vcpu.index
    );
    // The distributor and redistributors start over too; each vCPU's
    // virtual CPU interface is reset when it starts.
    super::vgic::vm_reset(vm);
    if vm.load().is_none() {
        println!("nmivisor: vm {}: reload failed, stopping it", vm.name);
        vm.set_state(VmState::Stopped);
        vm_stopped();
    }
    vm.set_state(VmState::Running);
    boot_vm(vm);
    restart_loop()
}
