//! The vGIC's hardware side: the list registers, the maintenance and
//! virtual-timer interrupts, trapped SGI writes, distributor and
//! redistributor MMIO, and kicking vCPUs on other physical CPUs.
//!
//! The vGIC state of a VM sits behind one lock, always taken with normal
//! interrupts masked by priority ([`IrqGuard`]): an interrupt handler on the
//! same CPU (the virtual timer) cannot deadlock on it, and the NMI path never
//! takes it.

use super::lr::{hcr_eoi_count, Lr, HCR_EN};
use super::sgi::{SgiGroup, SgiRequest, TargetSet};
use super::{is_nmi_priority, Access, Vgic};
use crate::arch::esr::MmioAccess;
use crate::arch::ich::{self, MAX_LRS};
use crate::arch::percpu::cpu_id;
use crate::arch::{cpu, gicv3, MAX_CPUS};
use crate::gic::mask::IrqGuard;
use crate::ipi::message::Message;
use crate::vm::guest::{self, Vcpu, Vm};
use crate::vm::memmap;
use crate::ipi;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::arch::MutexGuard;

/// The virtual timer's INTID, physical and virtual alike (PPI 11).
pub const VTIMER_INTID: u32 = 27;
/// The GIC maintenance interrupt (PPI 9).
pub const MAINTENANCE_INTID: u32 = 25;

/// Per physical CPU: the virtual timer's physical interrupt was handed to
/// the guest through a HW list register and is still active; the guest's
/// deactivation (or a vCPU reset) ends it.
static VTIMER_INFLIGHT: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// The VM's vGIC, locked with normal interrupts masked.
pub struct Locked<'a> {
    pub vgic: MutexGuard<'a, Vgic>,
    _masked: IrqGuard,
}

/// Takes the VM's vGIC to change it. Every change bumps the VM's vGIC
/// generation, which tells the other vCPUs' next entries that their list
/// registers may be stale.
pub fn lock(vm: &Vm) -> Locked<'_> {
    let l = lock_quiet(vm);
    vm.vgic_generation.fetch_add(1, Ordering::AcqRel);
    l
}

/// Takes the VM's vGIC to read it, or to refill this vCPU's own list
/// registers: no other vCPU needs to notice.
fn lock_quiet(vm: &Vm) -> Locked<'_> {
    let masked = IrqGuard::new();
    Locked { vgic: vm.vgic.lock(), _masked: masked }
}

/// Per physical CPU: the list registers its last flush wrote, the VM
/// generation that flush saw, and whether this exit's fold found the list
/// registers untouched. Together they let an exit that changed nothing
/// (a hypercall, an MMIO read) skip the vGIC lock on the way out and in.
struct LrCache {
    written: [AtomicU64; MAX_LRS],
    generation: AtomicU64,
    untouched: AtomicBool,
}

const NO_GENERATION: u64 = u64::MAX;

static LR_CACHE: [LrCache; MAX_CPUS] = [const {
    LrCache {
        written: [const { AtomicU64::new(0) }; MAX_LRS],
        generation: AtomicU64::new(NO_GENERATION),
        untouched: AtomicBool::new(false),
    }
}; MAX_CPUS];

/// A vCPU starts from reset: an empty virtual CPU interface, the virtual
/// timer linked to its physical interrupt, and no leftover physical
/// activation from a previous life of this vCPU.
pub fn vcpu_reset(vm: &Vm, vcpu: &Vcpu) {
    if VTIMER_INFLIGHT[cpu_id()].swap(false, Ordering::AcqRel) {
        gicv3::deactivate(VTIMER_INTID);
    }
    ich::reset_virtual_interface();
    let cache = &LR_CACHE[cpu_id()];
    cache.generation.store(NO_GENERATION, Ordering::Relaxed);
    cache.untouched.store(false, Ordering::Relaxed);
    let mut l = lock(vm);
    l.vgic.reset_vcpu(vcpu.index);
    l.vgic.set_hw(vcpu.index, VTIMER_INTID, Some(VTIMER_INTID));
}

/// Guest exit: what the guest did with its list registers flows back into
/// the vGIC state, and maintenance requests are switched off while the
/// hypervisor runs.
pub fn fold(vm: &Vm, vcpu: &Vcpu) {
    let n = ich::nr_lrs();
    let mut lrs = [0u64; MAX_LRS];
    for (i, lr) in lrs.iter_mut().enumerate().take(n) {
        *lr = ich::read_lr(i);
    }
    let hcr = ich::read_hcr();
    let cache = &LR_CACHE[cpu_id()];
    // Nothing the guest did shows in its LRs, and no EOI missed an LR: the
    // state is unchanged, and so is every maintenance condition (NPIE is
    // only set with a pending LR listed, LRENPIE only fires with EOIcount,
    // an EOI-bit LR changes when deactivated), so ICH_HCR_EL2 can stay.
    let untouched = hcr_eoi_count(hcr) == 0
        && lrs[..n].iter().zip(&cache.written).all(|(&lr, w)| lr == w.load(Ordering::Relaxed));
    cache.untouched.store(untouched, Ordering::Relaxed);
    if untouched {
        return;
    }
    ich::write_hcr(HCR_EN);
    // A HW-linked timer LR that is gone was deactivated by the guest, and
    // with it the physical interrupt.
    let timer_still_listed = lrs[..n].iter().any(|&v| {
        let lr = Lr(v);
        lr.is_valid() && lr.intid() == VTIMER_INTID
    });
    if !timer_still_listed {
        VTIMER_INFLIGHT[cpu_id()].store(false, Ordering::Release);
    }
    let mut l = lock(vm);
    l.vgic.fold_lrs(vcpu.index, &lrs[..n]);
    let eoicount = hcr_eoi_count(hcr);
    if eoicount != 0 {
        // HW-linked interrupts the guest ended without an LR: their physical
        // side must be deactivated here (GICv3 spec 4.4.5, EOIcount).
        for pintid in l.vgic.eoi_count(vcpu.index, eoicount) {
            gicv3::deactivate(pintid);
            if pintid == VTIMER_INTID {
                VTIMER_INFLIGHT[cpu_id()].store(false, Ordering::Release);
            }
        }
    }
}

/// Guest entry: the list registers get the highest-priority pending
/// interrupts (active ones stay), and ICH_HCR_EL2 asks for a maintenance
/// interrupt when they need refilling.
pub fn flush(vm: &Vm, vcpu: &Vcpu) {
    let cache = &LR_CACHE[cpu_id()];
    // Read before taking the lock: a change made after this read makes the
    // next entry flush again (and its author kicks this vCPU).
    let generation = vm.vgic_generation.load(Ordering::Acquire);
    if cache.untouched.swap(false, Ordering::Relaxed)
        && cache.generation.load(Ordering::Relaxed) == generation
    {
        // Nothing changed on either side since the LRs were written: they
        // and ICH_HCR_EL2 are still right.
        return;
    }
    let n = ich::nr_lrs();
    let mut lrs = [0u64; MAX_LRS];
    let hcr = lock_quiet(vm).vgic.flush_lrs(vcpu.index, &mut lrs[..n]);
    for (i, &lr) in lrs.iter().enumerate().take(n) {
        ich::write_lr(i, lr);
        cache.written[i].store(lr, Ordering::Relaxed);
    }
    cache.generation.store(generation, Ordering::Relaxed);
    ich::write_hcr(hcr);
}

/// Sends the kick each target needs: the NMI SGI when a virtual interrupt
/// at NMI priority waits for it (it must get through even while that CPU
/// runs hypervisor code with normal interrupts masked), else the normal
/// kick. The calling CPU's own vCPU needs none: the LRs are refilled on
/// the way back in.
pub fn kick(vm: &Vm, targets: TargetSet) {
    let me = cpu_id();
    for v in targets.iter() {
        let Some(target) = vm.vcpus.get(v) else { continue };
        if target.pcpu == me {
            continue;
        }
        let nmi = lock_quiet(vm).vgic.highest_pending_priority(v).is_some_and(is_nmi_priority);
        ipi::hw::send(target.pcpu, if nmi { Message::VcpuNmiKick } else { Message::VcpuKick });
    }
}

/// The "virtual NMI" API: makes `intid` pending at `priority` on vCPU
/// `vcpu` of `vm` and kicks it. Returns false for a bad vCPU or INTID.
pub fn inject(vm: &Vm, vcpu: usize, intid: u32, priority: u8) -> bool {
    let Some(target) = lock(vm).vgic.inject_at_priority(vcpu, intid, priority) else {
        return false;
    };
    let mut t = TargetSet::default();
    t.insert(target);
    kick(vm, t);
    true
}

/// The physical virtual-timer interrupt fired while this CPU's vCPU owns
/// the timer: pass it on through a HW list register. The physical
/// interrupt stays active until the guest deactivates the virtual one.
/// Returns whether the caller must skip the physical deactivation.
pub fn vtimer_interrupt() -> bool {
    let Some((vm, vcpu)) = guest::current() else {
        mask_vtimer();
        return false;
    };
    VTIMER_INFLIGHT[cpu_id()].store(true, Ordering::Release);
    let _ = lock(vm).vgic.set_level(vcpu.index, VTIMER_INTID, true);
    true
}

/// A virtual-timer interrupt with no vCPU to take it: mask it at the timer.
fn mask_vtimer() {
    // SAFETY: sets CNTV_CTL_EL0.IMASK of a timer no guest owns right now.
    unsafe { core::arch::asm!("mrs {t}, cntv_ctl_el0", "orr {t}, {t}, #2", "msr cntv_ctl_el0, {t}", t = out(reg) _, options(nomem, nostack)) };
}

/// The ICC_SGI*R_EL1 system register encodings (Op0, Op1, CRn, CRm, Op2),
/// as ESR_EL2's ISS for a trapped MSR shows them (Arm ARM D24.2.41, EC 0x18).
fn sgi_group(iss: u32) -> Option<SgiGroup> {
    let op0 = (iss >> 20) & 3;
    let op2 = (iss >> 17) & 7;
    let op1 = (iss >> 14) & 7;
    let crn = (iss >> 10) & 0xf;
    let crm = (iss >> 1) & 0xf;
    match (op0, op1, crn, crm, op2) {
        (3, 0, 12, 11, 5) => Some(SgiGroup::G1),
        (3, 1, 12, 11, 6) => Some(SgiGroup::AltG1),
        (3, 2, 12, 11, 7) => Some(SgiGroup::G0),
        _ => None,
    }
}

/// A trapped system-register access. Returns false if it is not an SGI
/// write (the caller injects UNDEFINED).
pub fn sysreg_trap(vm: &Vm, vcpu: &Vcpu, iss: u32, regs: &mut [u64; 31]) -> bool {
    let is_read = iss & 1 != 0;
    let rt = ((iss >> 5) & 0x1f) as usize;
    let Some(group) = sgi_group(iss) else { return false };
    if is_read {
        // The SGI registers are write-only: reads are UNDEFINED.
        return false;
    }
    let value = if rt == 31 { 0 } else { regs[rt] };
    let req = SgiRequest::decode(value, group);
    let targets = lock(vm).vgic.send_sgi(vcpu.index, &req);
    kick(vm, targets);
    true
}

/// What became of a data abort on an IPA the vGIC may own.
pub enum Mmio {
    /// Emulated; for a read, the value to write to the register.
    Done(Option<u64>),
    /// Not the vGIC's address.
    NotMine,
}

/// Emulates a distributor or redistributor access.
pub fn mmio(vm: &Vm, vcpu: &Vcpu, ipa: u64, access: &MmioAccess, value: u64) -> Mmio {
    let nr = vm.vcpus.len();
    let gicr = memmap::gicr(nr);
    let size = access.size;
    let result = if memmap::GICD.contains(&ipa) {
        let off = ipa - memmap::GICD.start;
        if access.write {
            let r = lock(vm).vgic.dist_write(vcpu.index, off, size, value);
            kick(vm, r.kicks);
            if r.unhandled {
                unhandled(vm, "GICD", off, size);
            }
            None
        } else {
            Some(read_value(vm, "GICD", off, size, lock_quiet(vm).vgic.dist_read(vcpu.index, off, size)))
        }
    } else if gicr.contains(&ipa) {
        let off = ipa - gicr.start;
        let frame = (off / memmap::GICR_FRAME) as usize;
        let off = off % memmap::GICR_FRAME;
        if access.write {
            let r = lock(vm).vgic.redist_write(vcpu.index, frame, off, size, value);
            kick(vm, r.kicks);
            if r.unhandled {
                unhandled(vm, "GICR", off, size);
            }
            None
        } else {
            Some(read_value(vm, "GICR", off, size, lock_quiet(vm).vgic.redist_read(vcpu.index, frame, off, size)))
        }
    } else {
        return Mmio::NotMine;
    };
    Mmio::Done(result)
}

fn read_value(vm: &Vm, what: &str, off: u64, size: u8, a: Access) -> u64 {
    match a {
        Access::Value(v) => v,
        Access::Unhandled => {
            unhandled(vm, what, off, size);
            0
        }
    }
}

static MMIO_LOG: crate::debug::ratelimit::RateLimit = crate::debug::ratelimit::RateLimit::new();

/// A register access the vGIC does not implement: read as zero, writes
/// ignored, and a rate-limited line.
fn unhandled(vm: &Vm, what: &str, off: u64, size: u8) {
    MMIO_LOG.println(format_args!(
        "nmivisor: vm {}: {what} offset {off:#x} ({size} bytes): not emulated, RAZ/WI",
        vm.name
    ));
}

/// WFI: idles until an interrupt is deliverable to the vCPU (or the vCPU
/// is being stopped). Physical interrupts (kicks, the virtual timer) are
/// taken meanwhile.
pub fn wait_for_interrupt(vm: &Vm, vcpu: &Vcpu) {
    loop {
        // PSTATE.I is set across the check and the WFI, so an interrupt
        // arriving in between still ends the WFI (Arm ARM D1.6.2: WFI wakes
        // on a pending interrupt even when masked); it is taken just after.
        gicv3::local_irq_mask();
        let stop = vcpu.power() != guest::Power::On || vm.state() != guest::VmState::Running;
        if stop || lock_quiet(vm).vgic.has_deliverable(vcpu.index) {
            gicv3::local_irq_unmask();
            return;
        }
        cpu::wfi();
        gicv3::local_irq_unmask();
    }
}
