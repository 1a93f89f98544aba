//! The vGIC's hardware side: the list registers, the maintenance interrupt
//! and the forwarded PPIs (both EL1 timers and the PMU), trapped SGI
//! writes, distributor and redistributor MMIO, and kicking vCPUs on other
//! physical CPUs.
//!
//! # Forwarded PPIs
//!
//! The virtual timer (27), the EL1 physical timer (30) and the PMU overflow
//! interrupt (23) are the guest's own devices on its physical CPU. Each is
//! linked to the same virtual INTID: its list register has HW=1, so the
//! guest's deactivation deactivates the physical interrupt.
//!
//! - Level: re-sampled from the source ([`ppi_source::levels`]) on every
//!   entry, in the physical interrupt's handler, before a WFI check, and
//!   when the guest touches its own GICR_I{S,C}ENABLER0 / I{S,C}PENDR0. The
//!   virtual interrupt is pending exactly while the source asserts it.
//! - Physical active state: set from the virtual state on every entry that
//!   refills the LRs (and so after every vCPU reset), through this CPU's
//!   GICR_ISACTIVER0 / GICR_ICACTIVER0 ([`Vgic::hw_active_wanted`]).
//!
//! The vGIC state of a VM sits behind one lock, always taken with normal
//! interrupts masked by priority ([`IrqGuard`]): an interrupt handler on the
//! same CPU (the virtual timer) cannot deadlock on it, and the NMI path never
//! takes it.

use super::guest::{self, Vcpu, Vm};
use super::memmap;
use crate::arch::esr::{MmioAccess, SysRegAccess};
use crate::arch::ich::{self, MAX_LRS};
use crate::arch::percpu::cpu_id;
use crate::arch::ppi_source;
use crate::arch::MutexGuard;
use crate::arch::{cpu, gicv3, MAX_CPUS};
use crate::gic::driver;
use crate::gic::mask::IrqGuard;
use crate::ipi;
use crate::ipi::message::Message;
use crate::vgic::cpuif::VirtualCpuIf;
use crate::vgic::lr::{hcr_eoi_count, Lr, HCR_EN};
use crate::vgic::regs::gicr;
use crate::vgic::sgi::{SgiGroup, SgiRequest, TargetSet};
use crate::vgic::{is_nmi_priority, Access, Vgic};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

pub use crate::arch::ppi_source::{PMU_INTID, PTIMER_INTID, VTIMER_INTID};
/// The GIC maintenance interrupt (PPI 9).
pub const MAINTENANCE_INTID: u32 = 25;

/// The PPIs forwarded to the vCPU of their physical CPU, each hardware-
/// linked to the same virtual INTID.
pub const FORWARDED: [u32; 3] = [VTIMER_INTID, PTIMER_INTID, PMU_INTID];
const FORWARDED_MASK: u32 = 1 << VTIMER_INTID | 1 << PTIMER_INTID | 1 << PMU_INTID;

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
    Locked {
        vgic: vm.vgic.lock(),
        _masked: masked,
    }
}

/// Per physical CPU: the list registers its last flush wrote, the VM
/// generation that flush saw, and whether this exit's fold found the list
/// registers untouched. Together they let an exit that changed nothing
/// (a hypercall, an MMIO read) skip the vGIC lock on the way out and in.
///
/// It also remembers the forwarded sources' levels last given to the vGIC
/// and the physical active state last written, so that an entry that
/// changes neither costs no lock and no MMIO.
struct LrCache {
    written: [AtomicU64; MAX_LRS],
    /// How many LRs, from LR 0, the last flush left valid (the scheduler
    /// fills them from 0 up). The others were written invalid, and the
    /// hardware never makes an invalid LR valid: an exit need not read
    /// them, and the next flush need not rewrite them.
    used: AtomicUsize,
    generation: AtomicU64,
    untouched: AtomicBool,
    levels: AtomicU32,
    phys_active: AtomicU32,
}

const NO_GENERATION: u64 = u64::MAX;
/// `levels` / `phys_active` not known: the next use re-reads.
const UNKNOWN: u32 = u32::MAX;

static LR_CACHE: [LrCache; MAX_CPUS] = [const {
    LrCache {
        written: [const { AtomicU64::new(0) }; MAX_LRS],
        used: AtomicUsize::new(MAX_LRS),
        generation: AtomicU64::new(NO_GENERATION),
        untouched: AtomicBool::new(false),
        levels: AtomicU32::new(UNKNOWN),
        phys_active: AtomicU32::new(UNKNOWN),
    }
}; MAX_CPUS];

/// A vCPU starts from reset: an empty virtual CPU interface, its forwarded
/// sources (EL1 physical timer, PMU) at reset, the forwarded PPIs linked
/// to their physical interrupts. Whatever physical active state a previous
/// life of this vCPU left is corrected by the flush that follows.
pub fn vcpu_reset(vm: &Vm, vcpu: &Vcpu) {
    ich::reset_virtual_interface();
    ppi_source::reset();
    let cache = &LR_CACHE[cpu_id()];
    // reset_virtual_interface cleared every LR.
    for w in &cache.written {
        w.store(0, Ordering::Relaxed);
    }
    cache.used.store(0, Ordering::Relaxed);
    cache.generation.store(NO_GENERATION, Ordering::Relaxed);
    cache.untouched.store(false, Ordering::Relaxed);
    cache.levels.store(UNKNOWN, Ordering::Relaxed);
    cache.phys_active.store(UNKNOWN, Ordering::Relaxed);
    let mut l = lock(vm);
    l.vgic.reset_vcpu(vcpu.index);
    for intid in FORWARDED {
        l.vgic.set_hw(vcpu.index, intid, Some(intid));
    }
}

/// PSCI SYSTEM_RESET: the VM's distributor and every redistributor back to
/// reset. Called with every vCPU stopped; each vCPU's own start
/// ([`vcpu_reset`]) then resets its virtual CPU interface.
pub fn vm_reset(vm: &Vm) {
    lock(vm).vgic.reset();
    // The reset dropped the UART's line: the next access drives it again.
    vm.uart_level
        .store(guest::UART_LEVEL_UNKNOWN, Ordering::Release);
}

/// Re-samples this CPU's forwarded sources into `vcpu`'s vGIC state. The
/// vCPU must be this CPU's. Cheap when nothing changed: no lock.
fn resample(vm: &Vm, vcpu: &Vcpu) {
    let levels = ppi_source::levels();
    let cache = &LR_CACHE[cpu_id()];
    if cache.levels.load(Ordering::Relaxed) == levels {
        return;
    }
    let changed = lock_quiet(vm).vgic.sample_hw_levels(vcpu.index, levels);
    cache.levels.store(levels, Ordering::Relaxed);
    if changed {
        // The LRs must be rebuilt on the way in.
        cache.untouched.store(false, Ordering::Relaxed);
    }
}

/// Makes the physical active state of the forwarded PPIs on this CPU what
/// the vGIC wants (GICv3 spec 12.11, GICR_ISACTIVER0 / GICR_ICACTIVER0 of
/// this CPU's redistributor). These registers change the active state
/// alone, without touching the physical CPU interface's running priority,
/// which the hypervisor already dropped (EOImode=1, ICC_EOIR1_EL1) when it
/// took the interrupt; ICC_DIR_EL1 could only deactivate.
fn sync_phys_active(wanted: u32) {
    let cache = &LR_CACHE[cpu_id()];
    let wanted = wanted & FORWARDED_MASK;
    let known = cache.phys_active.load(Ordering::Relaxed);
    let current = if known == UNKNOWN {
        driver::ppi_active() & FORWARDED_MASK
    } else {
        known
    };
    if current != wanted {
        driver::set_ppi_active(wanted & !current, current & !wanted);
    }
    cache.phys_active.store(wanted, Ordering::Relaxed);
}

/// Guest exit: what the guest did with its list registers flows back into
/// the vGIC state, and maintenance requests are switched off while the
/// hypervisor runs.
///
/// An exit that left the LRs as written (most traps) only reads them. A
/// fold that must change the state may wait for the VM's vGIC lock, which
/// a CPU parked for good (STOP, CRASH_STOP) may hold. So it waits the way
/// every lock holder does: normal interrupts masked by priority, PSTATE.I
/// clear, so the NMI SGI still gets through and this CPU still answers
/// dumps and crash stops (scenario `vgic-lock-held`). An interrupt already
/// acknowledged by the exit (`dispatch::handle_irq`) keeps its running
/// priority meanwhile, so only an NMI can preempt the fold.
///
/// Inlined into every exit, with the work out of line: a call frame cost
/// the unchanged exit a fifth of a hypercall.
#[inline(always)]
pub fn fold(vm: &Vm, vcpu: &Vcpu) {
    let hcr = ich::read_hcr();
    let cache = &LR_CACHE[cpu_id()];
    // Nothing the guest did shows in its LRs, and no EOI missed an LR: the
    // state is unchanged, and so is every maintenance condition (NPIE is
    // only set with a pending LR listed, LRENPIE only fires with EOIcount,
    // an EOI-bit LR changes when deactivated), so ICH_HCR_EL2 can stay.
    // Only the LRs the last flush made valid can have changed.
    let used = cache.used.load(Ordering::Relaxed).min(MAX_LRS);
    let untouched = hcr_eoi_count(hcr) == 0
        && cache.written[..used]
            .iter()
            .enumerate()
            .all(|(i, w)| ich::read_lr(i) == w.load(Ordering::Relaxed));
    cache.untouched.store(untouched, Ordering::Relaxed);
    if untouched {
        return;
    }
    // Arrays sized for the common 4 LRs (QEMU, most cores) are zeroed with
    // two stores; one of 16 took a memset call of about 85 instructions.
    match nr_lrs() {
        n @ 0..=SMALL_LRS => fold_slow::<SMALL_LRS>(vm, vcpu, cache, hcr, n),
        n => fold_slow::<MAX_LRS>(vm, vcpu, cache, hcr, n),
    }
}

/// LR arrays of this size serve CPUs with at most this many LRs.
const SMALL_LRS: usize = 4;

/// [`fold`] when the LRs changed: `n` LRs (at most `N`) flow into the
/// state. Waits for the vGIC lock as [`fold`] says.
#[inline(never)]
fn fold_slow<const N: usize>(vm: &Vm, vcpu: &Vcpu, cache: &LrCache, hcr: u64, n: usize) {
    let _masked = IrqGuard::new();
    gicv3::local_irq_unmask();
    let n = n.min(N);
    let mut lrs = [0u64; N];
    for (i, lr) in lrs.iter_mut().enumerate().take(n) {
        *lr = ich::read_lr(i);
    }
    ich::write_hcr(HCR_EN);
    // A HW-linked LR the guest changed may have deactivated the physical
    // interrupt (which only the hardware knows), and the fold then drops
    // the virtual level: both must be read again before the next entry.
    let hw_changed = lrs[..n].iter().zip(&cache.written).any(|(&lr, w)| {
        let w = w.load(Ordering::Relaxed);
        Lr(w).is_hw() && lr != w
    });
    if hw_changed {
        cache.levels.store(UNKNOWN, Ordering::Relaxed);
        cache.phys_active.store(UNKNOWN, Ordering::Relaxed);
    }
    let mut l = lock(vm);
    l.vgic.fold_lrs(vcpu.index, &lrs[..n]);
    let eoicount = hcr_eoi_count(hcr);
    if eoicount != 0 {
        // HW-linked interrupts the guest ended without an LR (GICv3 spec
        // 4.4.5, EOIcount) are all forwarded PPIs: the entry's active-state
        // sync deactivates their physical side.
        let _ = l.vgic.eoi_count(vcpu.index, eoicount);
    }
    let handoffs = l.vgic.take_handoff_kicks();
    drop(l);
    if !handoffs.is_empty() {
        kick(vm, handoffs);
    }
    // PSTATE.I set again before `_masked` lowers the PMR.
    gicv3::local_irq_mask();
}

/// Guest entry: the forwarded PPIs are re-sampled, the list registers get
/// the highest-priority pending interrupts (active ones stay), the
/// forwarded PPIs' physical active state follows the virtual one, and
/// ICH_HCR_EL2 asks for a maintenance interrupt when the LRs need
/// refilling.
///
/// Inlined into every exit, with the work out of line (see [`fold`]).
#[inline(always)]
pub fn flush(vm: &Vm, vcpu: &Vcpu) {
    let cache = &LR_CACHE[cpu_id()];
    // With every forwarded line low in the vGIC and every forwarded PPI
    // physically inactive, any assertion of a source fires at EL2 and is
    // re-sampled by its handler: nothing to read here.
    if cache.levels.load(Ordering::Relaxed) != 0 || cache.phys_active.load(Ordering::Relaxed) != 0 {
        resample(vm, vcpu);
    }
    // Read before taking the lock: a change made after this read makes the
    // next entry flush again (and its author kicks this vCPU).
    let generation = vm.vgic_generation.load(Ordering::Acquire);
    if cache.untouched.swap(false, Ordering::Relaxed)
        && cache.generation.load(Ordering::Relaxed) == generation
    {
        // Nothing changed on either side since the LRs were written: they,
        // ICH_HCR_EL2 and the physical active state are still right.
        return;
    }
    match nr_lrs() {
        n @ 0..=SMALL_LRS => flush_slow::<SMALL_LRS>(vm, vcpu, cache, generation, n),
        n => flush_slow::<MAX_LRS>(vm, vcpu, cache, generation, n),
    }
}

/// [`flush`] when something changed: rebuilds `n` LRs (at most `N`).
#[inline(never)]
fn flush_slow<const N: usize>(vm: &Vm, vcpu: &Vcpu, cache: &LrCache, generation: u64, n: usize) {
    let n = n.min(N);
    let mut lrs = [0u64; N];
    let (hcr, wanted, handoffs) = {
        let mut l = lock_quiet(vm);
        let hcr = l.vgic.flush_lrs(vcpu.index, &mut lrs[..n]);
        (
            hcr,
            l.vgic.hw_active_wanted(vcpu.index),
            l.vgic.take_handoff_kicks(),
        )
    };
    sync_phys_active(wanted);
    let used = lrs[..n]
        .iter()
        .rposition(|&lr| lr != Lr::INVALID.0)
        .map_or(0, |i| i + 1);
    let old = cache.used.load(Ordering::Relaxed).min(n);
    for (i, &lr) in lrs.iter().enumerate().take(used.max(old)) {
        ich::write_lr(i, lr);
        cache.written[i].store(lr, Ordering::Relaxed);
    }
    cache.used.store(used, Ordering::Relaxed);
    cache.generation.store(generation, Ordering::Relaxed);
    ich::write_hcr(hcr);
    if !handoffs.is_empty() {
        // Released SPIs now belong to other vCPUs: their entries must not
        // take the fast path.
        vm.vgic_generation.fetch_add(1, Ordering::AcqRel);
        kick(vm, handoffs);
    }
}

/// ICH_VTR_EL2.ListRegs + 1, read once (the same on every CPU). Inlined:
/// every fold and flush that changes something asks.
#[inline(always)]
fn nr_lrs() -> usize {
    static NR: AtomicUsize = AtomicUsize::new(0);
    match NR.load(Ordering::Relaxed) {
        0 => {
            let n = ich::nr_lrs();
            NR.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

/// Sends the kick each target needs: the NMI SGI when a virtual interrupt
/// at NMI priority waits for it (it must get through even while that CPU
/// runs hypervisor code with normal interrupts masked), else the normal
/// kick. The calling CPU's own vCPU needs none: the LRs are refilled on
/// the way back in.
pub fn kick(vm: &Vm, targets: TargetSet) {
    let me = cpu_id();
    for v in targets.iter() {
        let Some(target) = vm.vcpus.get(v) else {
            continue;
        };
        if target.pcpu == me {
            continue;
        }
        let nmi = lock_quiet(vm)
            .vgic
            .highest_pending_priority(v)
            .is_some_and(is_nmi_priority);
        ipi::hw::send(
            target.pcpu,
            if nmi {
                Message::VcpuNmiKick
            } else {
                Message::VcpuKick
            },
        );
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

/// A forwarded PPI (a timer or the PMU) fired on this CPU. With a vCPU
/// here, its level is re-sampled into the vGIC and the physical interrupt
/// stays active: the next entry sets its active state from the virtual
/// one. Returns whether the caller must skip the physical deactivation.
/// With no vCPU resident (it was turned off with its timer running), the
/// source is silenced and the caller deactivates; the vCPU's next start
/// resets the source.
pub fn forwarded_interrupt(intid: u32) -> bool {
    let Some((vm, vcpu)) = guest::current().filter(|(_, v)| v.is_resident()) else {
        ppi_source::silence(intid);
        return false;
    };
    let cache = &LR_CACHE[cpu_id()];
    let known = cache.phys_active.load(Ordering::Relaxed);
    if known != UNKNOWN {
        cache
            .phys_active
            .store(known | 1 << intid, Ordering::Relaxed);
    }
    // The acknowledge made it active: the next entry must sync, even if
    // the level reads as it did (the source may have dropped meanwhile).
    cache.untouched.store(false, Ordering::Relaxed);
    resample(vm, vcpu);
    true
}

/// The ICC_SGI*R_EL1 system register encodings (Op0, Op1, CRn, CRm, Op2).
fn sgi_group(a: &SysRegAccess) -> Option<SgiGroup> {
    SgiGroup::from_encoding(a.encoding())
}

/// A trapped system-register access. Returns false if it is not an SGI
/// write (the caller injects UNDEFINED).
pub fn sysreg_trap(vm: &Vm, vcpu: &Vcpu, a: &SysRegAccess, regs: &[u64; 31]) -> bool {
    let Some(group) = sgi_group(a) else {
        return false;
    };
    if a.read {
        // The SGI registers are write-only: reads are UNDEFINED.
        return false;
    }
    let value = regs.get(usize::from(a.rt)).copied().unwrap_or(0);
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
            Some(read_value(
                vm,
                "GICD",
                off,
                size,
                lock_quiet(vm).vgic.dist_read(vcpu.index, off, size),
            ))
        }
    } else if gicr.contains(&ipa) {
        let off = ipa - gicr.start;
        let frame = (off / memmap::GICR_FRAME) as usize;
        let off = off % memmap::GICR_FRAME;
        if frame == vcpu.index
            && matches!(
                off,
                gicr::ISENABLER0 | gicr::ICENABLER0 | gicr::ISPENDR0 | gicr::ICPENDR0
            )
        {
            // The guest looks at or enables its own PPIs: the forwarded
            // ones show their sources' current levels, as a GIC's
            // level-sensitive pending state does. Another vCPU's frame
            // shows that vCPU's last sample (its sources are not readable
            // from here).
            resample(vm, vcpu);
        }
        if access.write {
            let r = lock(vm)
                .vgic
                .redist_write(vcpu.index, frame, off, size, value);
            kick(vm, r.kicks);
            if r.unhandled {
                unhandled(vm, "GICR", off, size);
            }
            None
        } else {
            Some(read_value(
                vm,
                "GICR",
                off,
                size,
                lock_quiet(vm)
                    .vgic
                    .redist_read(vcpu.index, frame, off, size),
            ))
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

/// A register access the vGIC does not implement: read as zero, writes
/// ignored, and a rate-limited line.
fn unhandled(vm: &Vm, what: &str, off: u64, size: u8) {
    vm.log_limit.println(format_args!(
        "nmivisor: vm {}: {what} offset {off:#x} ({size} bytes): not emulated, RAZ/WI",
        vm.name
    ));
}

/// The running vCPU's virtual CPU interface, as far as it decides whether
/// an interrupt is signalled (ICH_VMCR_EL2, the active priorities).
fn current_cpuif() -> VirtualCpuIf {
    let n = ich::nr_aprs();
    let mut ap0 = [0u32; 4];
    let mut ap1 = [0u32; 4];
    for i in 0..n {
        ap0[i] = ich::read_apr(false, i);
        ap1[i] = ich::read_apr(true, i);
    }
    VirtualCpuIf::from_regs(
        ich::read_vmcr(),
        &ap0[..n],
        &ap1[..n],
        ich::preemption_bits(),
    )
}

/// WFI: idles until the vCPU's virtual CPU interface would signal an
/// interrupt (or the vCPU is being stopped). An interrupt masked by the
/// guest's PMR, running priority or group enables does not end it; one
/// masked only by PSTATE.I does (Arm ARM D1.6.2; see [`crate::vgic::cpuif`]).
/// Physical interrupts (kicks, the forwarded PPIs) are taken meanwhile.
pub fn wait_for_interrupt(vm: &Vm, vcpu: &Vcpu) {
    let cpuif = current_cpuif();
    loop {
        // PSTATE.I is set across the check and the WFI, so an interrupt
        // arriving in between still ends the WFI (Arm ARM D1.6.2: WFI wakes
        // on a pending interrupt even when masked); it is taken just after.
        gicv3::local_irq_mask();
        let stop = vcpu.power() != guest::Power::On || vm.state() != guest::VmState::Running;
        if !stop {
            resample(vm, vcpu);
        }
        if stop || lock_quiet(vm).vgic.wakes_from_wfi(vcpu.index, &cpuif) {
            gicv3::local_irq_unmask();
            return;
        }
        cpu::wfi();
        gicv3::local_irq_unmask();
    }
}
