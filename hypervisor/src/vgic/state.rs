//! One VM's emulated GICv3: distributor state, per-vCPU redistributor state,
//! the injection API and the list-register scheduler.
//!
//! # Locking and threads
//!
//! [`Vgic`] is plain data. The glue keeps one per VM behind the VM's vGIC
//! lock. `fold_lrs`, `eoi_count` and `flush_lrs` for a vCPU run on that
//! vCPU's physical CPU (between guest exit and entry); injections and
//! register emulation may come from any CPU and return the vCPUs to kick.
//!
//! # The list-register model
//!
//! An interrupt's state lives here, not in the LRs: `flush_lrs` copies the
//! interesting interrupts into the LRs on entry and remembers what it wrote;
//! `fold_lrs` on exit applies only what the guest *changed* (pending
//! consumed by an acknowledge, active set or cleared). Changes made here
//! while the guest ran (a new edge, a register write from another vCPU) are
//! therefore kept rather than overwritten by a stale LR.

use arm_gic::gicv3::registers::GicdCtlr;
use arrayvec::ArrayVec;

use super::busy::{self, SpiSet};
use super::cpuif::VirtualCpuIf;
use super::irq::{priority_mask, IrqState, MAX_SPIS, NO_TARGET, NR_PRIVATE, SPI_BASE};
use super::lr::{Lr, LrState, HCR_EN, HCR_LRENPIE, HCR_NPIE, MAX_LRS};
use super::sgi::{SgiRequest, TargetSet};
use alloc::vec::Vec;

/// Priorities at or above this urgency (numerically `<=`) are "NMI
/// priority": Linux's pseudo-NMI configures its NMIs at 0x80 and normal
/// interrupts at 0xa0 (and masks with PMR 0xc0 / 0xe0), so a pending virtual
/// interrupt at `<= 0x80` must reach a vCPU that masked normal interrupts.
/// The kick path sends the physical NMI SGI instead of the normal kick for
/// those.
pub const NMI_PRIORITY_THRESHOLD: u8 = 0x80;

/// Whether `priority` is NMI priority (see [`NMI_PRIORITY_THRESHOLD`]).
pub const fn is_nmi_priority(priority: u8) -> bool {
    priority <= NMI_PRIORITY_THRESHOLD
}

/// Most vCPUs one vGIC serves: a [`TargetSet`] names vCPUs 0..64.
pub const MAX_VCPUS: usize = TargetSet::CAPACITY;

/// GICD_CTLR.EnableGrp0 (arm-gic's GicdCtlr).
pub(crate) const CTLR_ENABLE_GRP0: u32 = GicdCtlr::EnableGrp0.bits();
/// GICD_CTLR.EnableGrp1 in the single Security state view (Group 1 = "1A";
/// arm-gic names the bit by its Non-secure view, EnableGrp1NS).
pub(crate) const CTLR_ENABLE_GRP1: u32 = GicdCtlr::EnableGrp1NS.bits();

/// The MPIDR vCPU `index` gets by default: Aff0 = index % 16,
/// Aff1 = index / 16 (16 per cluster, so that one SGI TargetList, 16 bits,
/// covers a cluster with RS = 0). `vm::guest` assigns the same; the glue
/// should pass the vCPUs' own MPIDRs to [`Vgic::with_mpidrs`].
#[cfg(test)]
pub const fn default_mpidr(index: usize) -> u64 {
    ((index as u64 / 16) << 8) | (index as u64 % 16)
}

/// What `flush_lrs` put into one list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LrRecord {
    intid: u32,
    pending: bool,
    active: bool,
    hw: bool,
    generation: u32,
}

/// Per-vCPU state: the private interrupts and the redistributor.
#[derive(Clone, Debug)]
pub(crate) struct VcpuState {
    /// SGIs 0-15 and PPIs 16-31.
    pub(crate) private: [IrqState; NR_PRIVATE],
    /// Bit n: private INTID n may be busy (pending or active, see
    /// [`super::busy`]). Set by [`Vgic::irq_mut`]; a flush clears the bits
    /// of those its scan found idle.
    busy: u32,
    /// Bit n: private INTID n is linked to a physical interrupt
    /// (`hw_pintid` set).
    hw_linked: u32,
    /// What the last `flush_lrs` wrote, by LR index. Kept after the fold so
    /// that `eoi_count` knows which interrupts were in LRs.
    lrs: [Option<LrRecord>; MAX_LRS],
    /// `lrs[nr_records..]` are all `None`.
    nr_records: usize,
    /// Whether `lrs` is in the hardware (flushed, not yet folded).
    live: bool,
    /// GICR_WAKER.ProcessorSleep (resets to 1). ChildrenAsleep follows it at
    /// once. The vGIC delivers to the virtual CPU interface regardless: the
    /// bit is state for the guest's power-management handshake only.
    pub(crate) processor_sleep: bool,
}

impl VcpuState {
    fn new(index: usize) -> Self {
        let mut private = [IrqState::new(true, index); NR_PRIVATE];
        // SGIs are always edge-triggered; PPIs are level-sensitive and
        // their configuration is read-only here (IHI 0069 GICR_ICFGR1: it is
        // IMPLEMENTATION DEFINED whether PPI configuration is programmable;
        // the timers, PMU and maintenance PPIs are level).
        for irq in private.iter_mut().skip(16) {
            irq.edge = false;
        }
        for irq in private.iter_mut() {
            irq.owner = Some(index);
        }
        Self {
            private,
            busy: 0,
            hw_linked: 0,
            lrs: [None; MAX_LRS],
            nr_records: 0,
            live: false,
            processor_sleep: true,
        }
    }

    fn records(&self) -> impl Iterator<Item = &LrRecord> {
        self.lrs.iter().take(self.nr_records).flatten()
    }

    fn in_lrs(&self, intid: u32) -> bool {
        self.records().any(|r| r.intid == intid)
    }
}

/// One candidate for an LR, ordered by (priority, INTID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    priority: u8,
    intid: u32,
}

/// The `K` best candidates seen, kept sorted, plus how many were offered.
struct TopK {
    best: ArrayVec<Candidate, MAX_LRS>,
    total: usize,
    keep: usize,
}

impl TopK {
    fn new(keep: usize) -> Self {
        Self {
            best: ArrayVec::new(),
            total: 0,
            keep: keep.min(MAX_LRS),
        }
    }

    fn offer(&mut self, c: Candidate) {
        self.total += 1;
        if self.keep == 0 {
            return;
        }
        let pos = self
            .best
            .iter()
            .position(|b| c < *b)
            .unwrap_or(self.best.len());
        if pos >= self.keep {
            return;
        }
        if self.best.len() == self.keep {
            self.best.pop();
        }
        self.best.insert(pos, c);
    }
}

/// One VM's emulated GICv3 (distributor, redistributors, LR scheduling).
#[derive(Clone, Debug)]
pub struct Vgic {
    pub(crate) nr_vcpus: usize,
    pub(crate) nr_spis: usize,
    pub(crate) priority_mask: u8,
    pub(crate) mpidrs: Vec<u64>,
    /// GICD_CTLR group enables (the only writable bits).
    pub(crate) ctlr: u32,
    pub(crate) spis: Vec<IrqState>,
    /// GICD_IROUTER<n> as written (masked to the implemented fields).
    pub(crate) irouter: Vec<u64>,
    pub(crate) vcpus: Vec<VcpuState>,
    /// vCPUs that must be kicked because an SPI left another vCPU's hands
    /// (its LR or active state) while still pending, and now belongs to
    /// them by its route: the glue sends these after a fold or flush
    /// ([`Vgic::take_handoff_kicks`]).
    pub(crate) handoffs: TargetSet,
    /// The SPIs that may be busy (active, latched pending or line high;
    /// see [`super::busy`]): the scans visit these only. Every mutable
    /// access to an SPI goes through [`Vgic::irq_mut`], which adds it; a
    /// flush whose scan finds members idle removes them.
    pub(crate) spis_busy: SpiSet,
}

impl Vgic {
    /// A vGIC for `nr_vcpus` vCPUs with the [`default_mpidr`] affinities,
    /// `nr_spis` SPIs (rounded up to a multiple of 32, at most 988) and
    /// `priority_bits` implemented priority bits (clamped to 1..=8; QEMU:
    /// 5). At most [`MAX_VCPUS`] vCPUs.
    #[cfg(test)]
    pub fn new(nr_vcpus: usize, nr_spis: usize, priority_bits: u8) -> Self {
        let n = nr_vcpus.min(MAX_VCPUS);
        let mpidrs: Vec<u64> = (0..n).map(default_mpidr).collect();
        Self::with_mpidrs(&mpidrs, nr_spis, priority_bits)
    }

    /// A vGIC whose vCPU i has MPIDR `mpidrs[i]` (affinity fields only are
    /// used: GICR_TYPER, SGI targets and IROUTER matching).
    pub fn with_mpidrs(mpidrs: &[u64], nr_spis: usize, priority_bits: u8) -> Self {
        let mpidrs: Vec<u64> = mpidrs
            .iter()
            .take(MAX_VCPUS)
            .map(|m| m & AFFINITY_MASK)
            .collect();
        let nr_vcpus = mpidrs.len();
        let nr_spis = nr_spis.div_ceil(32).saturating_mul(32).min(MAX_SPIS);
        let bits = priority_bits.clamp(1, 8);
        // IROUTER resets to 0 (Aff 0.0.0.0): the vCPU with that affinity.
        let reset_target = mpidrs.iter().position(|&m| m == 0).unwrap_or(NO_TARGET);
        Self {
            nr_vcpus,
            nr_spis,
            priority_mask: priority_mask(bits),
            spis: alloc::vec![IrqState::new(false, reset_target); nr_spis],
            irouter: alloc::vec![0; nr_spis],
            vcpus: (0..nr_vcpus).map(VcpuState::new).collect(),
            mpidrs,
            ctlr: 0,
            handoffs: TargetSet::EMPTY,
            spis_busy: SpiSet::EMPTY,
        }
    }

    /// Puts the whole vGIC back to its reset state (PSCI SYSTEM_RESET):
    /// distributor, every redistributor, every interrupt. The vCPUs'
    /// affinities and the implemented SPIs and priority bits stay.
    pub fn reset(&mut self) {
        let mpidrs = core::mem::take(&mut self.mpidrs);
        let bits = self.priority_mask.count_ones() as u8;
        *self = Self::with_mpidrs(&mpidrs, self.nr_spis, bits);
    }

    /// The vCPUs to kick for SPIs that changed hands since the last call
    /// (see the `handoffs` field); clears the set.
    pub fn take_handoff_kicks(&mut self) -> TargetSet {
        core::mem::replace(&mut self.handoffs, TargetSet::EMPTY)
    }

    /// An SPI just stopped being held by `from`: if it is still pending
    /// and now routed to another vCPU, that vCPU must be kicked to take it.
    fn note_handoff(&mut self, from: usize, intid: u32) {
        if intid < SPI_BASE {
            return;
        }
        if let Some(to) = self.kick_for(from, intid) {
            if to != from {
                self.handoffs.insert(to);
            }
        }
    }

    /// vCPU `vcpu`'s MPIDR affinity, if it exists.
    #[cfg(test)]
    pub fn mpidr(&self, vcpu: usize) -> Option<u64> {
        self.mpidrs.get(vcpu).copied()
    }

    /// The state of `intid` (private ones from `vcpu`'s bank).
    pub fn irq(&self, vcpu: usize, intid: u32) -> Option<&IrqState> {
        if intid < SPI_BASE {
            self.vcpus.get(vcpu)?.private.get(intid as usize)
        } else {
            self.spis.get((intid - SPI_BASE) as usize)
        }
    }

    /// The state of `intid` as `vcpu` sees it (SGIs and PPIs are per vCPU), if both exist.
    ///
    /// The interrupt joins its busy set: whatever the caller changes, the
    /// next scan looks at it.
    pub(crate) fn irq_mut(&mut self, vcpu: usize, intid: u32) -> Option<&mut IrqState> {
        if intid < SPI_BASE {
            let v = self.vcpus.get_mut(vcpu)?;
            v.busy |= 1 << intid;
            v.private.get_mut(intid as usize)
        } else {
            let i = (intid - SPI_BASE) as usize;
            self.spis_busy.insert(i);
            self.spis.get_mut(i)
        }
    }

    /// Whether `irq`'s group is enabled in the virtual GICD_CTLR.
    pub(crate) fn group_enabled(&self, irq: &IrqState) -> bool {
        let bit = if irq.group1 {
            CTLR_ENABLE_GRP1
        } else {
            CTLR_ENABLE_GRP0
        };
        self.ctlr & bit != 0
    }

    /// Pending, enabled and its group enabled: it would be signalled to
    /// whichever vCPU it is routed to.
    pub(crate) fn signalable(&self, irq: &IrqState) -> bool {
        irq.is_pending() && irq.enabled && self.group_enabled(irq)
    }

    /// The vCPU `intid` is delivered to: the bank's vCPU for private
    /// interrupts; for an SPI the vCPU holding it (in an LR or active), else
    /// its GICD_IROUTER target.
    pub(crate) fn route(&self, vcpu: usize, intid: u32) -> Option<usize> {
        if intid < SPI_BASE {
            return (vcpu < self.nr_vcpus).then_some(vcpu);
        }
        let irq = self.irq(vcpu, intid)?;
        let to = irq.owner.unwrap_or(irq.target);
        (to < self.nr_vcpus).then_some(to)
    }

    /// The vCPU to kick for `intid` if it can be signalled.
    fn kick_for(&self, vcpu: usize, intid: u32) -> Option<usize> {
        let irq = self.irq(vcpu, intid)?;
        if self.signalable(irq) {
            self.route(vcpu, intid)
        } else {
            None
        }
    }

    /// The vCPU to kick for `intid` if it is pending or active anywhere:
    /// after a register write changed it, the vCPU presenting it must
    /// refresh its LRs.
    pub(crate) fn kick_if_busy(&self, vcpu: usize, intid: u32) -> Option<usize> {
        let irq = self.irq(vcpu, intid)?;
        if irq.is_pending() || irq.active {
            self.route(vcpu, intid)
        } else {
            None
        }
    }

    /// Forgets the owner of an SPI that is neither active nor in its
    /// owner's live LRs any more (after a register write deactivated it).
    pub(crate) fn settle_owner(&mut self, intid: u32) {
        if intid < SPI_BASE {
            return;
        }
        let Some(irq) = self.spis.get((intid - SPI_BASE) as usize) else {
            return;
        };
        let Some(o) = irq.owner else { return };
        let in_lr = self.vcpus.get(o).is_some_and(|v| v.live && v.in_lrs(intid));
        if !irq.active && !in_lr {
            if let Some(irq) = self.spis.get_mut((intid - SPI_BASE) as usize) {
                irq.owner = None;
            }
            self.note_handoff(o, intid);
        }
    }

    /// Resets vCPU `vcpu`'s private interrupts and redistributor to their
    /// reset state and forgets its LRs (a vCPU reset, e.g. PSCI CPU_ON: its
    /// virtual CPU interface starts empty). SPIs it held in LRs or had
    /// active are released: their active state went with the old CPU
    /// interface; pending SPIs stay pending and follow their routes.
    pub fn reset_vcpu(&mut self, vcpu: usize) {
        let Some(v) = self.vcpus.get_mut(vcpu) else {
            return;
        };
        *v = VcpuState::new(vcpu);
        for irq in self.spis.iter_mut() {
            if irq.owner == Some(vcpu) {
                irq.owner = None;
                irq.active = false;
            }
        }
    }

    // ----- Injection -------------------------------------------------------

    /// Makes `intid` pending through its latch (an edge, or a software pend
    /// for a level-sensitive interrupt); `vcpu` selects the private bank for
    /// SGIs/PPIs. Returns the vCPU to kick if the interrupt can now be
    /// signalled (pending, enabled, group enabled, routed to a vCPU). It is
    /// returned even if it was already pending: the target may hold it in an
    /// LR as active, and only an exit lets the new pending state reach the
    /// LR. Out-of-range `vcpu`/`intid`: `None`.
    #[cfg(test)]
    pub fn set_pending(&mut self, vcpu: usize, intid: u32) -> Option<usize> {
        self.irq_mut(vcpu, intid)?.pend();
        self.kick_for(vcpu, intid)
    }

    /// Drives the input line of `intid`: level-sensitive interrupts are
    /// pending while it is high; edge-triggered ones latch on a rising edge.
    /// Returns the vCPU to kick if the interrupt can now be signalled (even
    /// if it already was pending, as for a latched one).
    pub fn set_level(&mut self, vcpu: usize, intid: u32, level: bool) -> Option<usize> {
        self.irq_mut(vcpu, intid)?.drive_line(level);
        self.kick_for(vcpu, intid)
    }

    /// The "virtual NMI": sets `intid`'s priority (masked to the implemented
    /// bits), enables it and makes it pending. Its group and the GICD_CTLR
    /// group enables are the guest's: if that group is disabled, nothing is
    /// signalled. Returns the vCPU to kick.
    pub fn inject_at_priority(&mut self, vcpu: usize, intid: u32, priority: u8) -> Option<usize> {
        let mask = self.priority_mask;
        let irq = self.irq_mut(vcpu, intid)?;
        irq.priority = priority & mask;
        irq.enabled = true;
        irq.pend();
        self.kick_for(vcpu, intid)
    }

    /// Links `intid` to the physical interrupt `pintid` (`None` unlinks):
    /// its LRs get HW=1, and the guest's deactivation deactivates the
    /// physical interrupt. E.g. the virtual timer, PPI 27 -> physical 27.
    /// pINTIDs outside 16..1020 (the LR field cannot name SGIs or special
    /// INTIDs) unlink.
    pub fn set_hw(&mut self, vcpu: usize, intid: u32, pintid: Option<u32>) {
        let Some(irq) = self.irq_mut(vcpu, intid) else {
            return;
        };
        irq.hw_pintid = pintid.filter(|p| (16..1020).contains(p));
        let linked = irq.hw_pintid.is_some();
        if let (true, Some(v)) = (intid < SPI_BASE, self.vcpus.get_mut(vcpu)) {
            v.hw_linked = (v.hw_linked & !(1 << intid)) | u32::from(linked) << intid;
        }
    }

    /// Re-samples the line levels of `vcpu`'s hardware-linked PPIs from
    /// their sources: bit n of `levels` is INTID n's output (e.g. a timer's
    /// ENABLE && ISTATUS && !IMASK). A level interrupt is pending exactly
    /// while its line is high, so a source that was disabled or masked
    /// leaves no stale pending state. Returns whether any level changed.
    pub fn sample_hw_levels(&mut self, vcpu: usize, levels: u32) -> bool {
        let Some(v) = self.vcpus.get_mut(vcpu) else {
            return false;
        };
        let mut changed = false;
        for intid in busy::bits(v.hw_linked & 0xffff_0000) {
            let Some(irq) = v.private.get_mut(intid as usize) else {
                continue;
            };
            let level = levels & (1 << intid) != 0;
            if irq.line_level != level {
                irq.drive_line(level);
                v.busy |= 1 << intid;
                changed = true;
            }
        }
        changed
    }

    /// The physical active state `vcpu`'s hardware-linked PPIs need, as a
    /// mask of pINTIDs: active while the virtual interrupt is active (the
    /// guest's deactivation through the HW list register then deactivates
    /// it, GICv3 spec ICH_LR<n>_EL2.HW) or pending (its level is
    /// being presented virtually: the physical interrupt must not fire at
    /// EL2 again until the guest is done with it). Otherwise inactive, so the
    /// next assertion of the source reaches the hypervisor.
    pub fn hw_active_wanted(&self, vcpu: usize) -> u32 {
        let Some(v) = self.vcpus.get(vcpu) else {
            return 0;
        };
        let mut m = 0;
        // Idle interrupts want their physical side inactive: only the busy
        // linked PPIs are looked at.
        for intid in busy::bits(v.hw_linked & v.busy & 0xffff_0000) {
            let Some(irq) = v.private.get(intid as usize) else {
                continue;
            };
            if let Some(p) = irq.hw_pintid.filter(|p| (16..32).contains(p)) {
                if irq.active || irq.is_pending() {
                    m |= 1 << p;
                }
            }
        }
        m
    }

    /// Generates a guest SGI (a trapped ICC_SGI{0,1}R_EL1 / ICC_ASGI1R_EL1
    /// write by vCPU `sender`). The SGI becomes pending at each target whose
    /// copy is in the group the register reaches ([`super::SgiGroup::reaches`]).
    /// Returns the vCPUs where it can be signalled (to kick).
    pub fn send_sgi(&mut self, sender: usize, req: &SgiRequest) -> TargetSet {
        let mut kicks = TargetSet::EMPTY;
        let intid = req.intid & 0xf;
        for t in req.resolve(sender, &self.mpidrs).iter() {
            let Some(irq) = self.irq_mut(t, intid) else {
                continue;
            };
            if !req.group.reaches(irq.group1) {
                continue;
            }
            irq.pend();
            if let Some(k) = self.kick_for(t, intid) {
                kicks.insert(k);
            }
        }
        kicks
    }

    // ----- Queries ----------------------------------------------------------

    /// Whether `vcpu` has an interrupt it could take now, ignoring its
    /// PMR and running priority: pending, enabled, group enabled, routed to
    /// it and not active. A WFI idles until this holds.
    pub fn has_deliverable(&self, vcpu: usize) -> bool {
        self.highest_pending_priority(vcpu).is_some()
    }

    /// Whether a WFI of `vcpu` ends: a deliverable interrupt (see
    /// [`Vgic::has_deliverable`]) that its virtual CPU interface `cpuif`
    /// would signal, i.e. not masked by its PMR, its running priority or a
    /// disabled group. PSTATE.I plays no part (see [`super::cpuif`]).
    pub fn wakes_from_wfi(&self, vcpu: usize, cpuif: &VirtualCpuIf) -> bool {
        let mut wake = false;
        self.for_each_routed(vcpu, |_, irq| {
            if !irq.active && self.signalable(irq) && cpuif.admits(irq.priority, irq.group1) {
                wake = true;
            }
        });
        wake
    }

    /// The highest priority (lowest value) among `vcpu`'s deliverable
    /// interrupts (see [`Vgic::has_deliverable`]).
    pub fn highest_pending_priority(&self, vcpu: usize) -> Option<u8> {
        let mut best: Option<u8> = None;
        self.for_each_routed(vcpu, |intid, irq| {
            let _ = intid;
            if !irq.active && self.signalable(irq) {
                best = Some(best.map_or(irq.priority, |b| b.min(irq.priority)));
            }
        });
        best
    }

    /// Calls `f` for every interrupt routed to `vcpu` (its private ones and
    /// the SPIs it holds or that target it) that is active or may be
    /// pending (its latch or its line is set): every caller looks for
    /// active or pending interrupts only, and most interrupts are idle, so
    /// only the members of the busy sets are visited.
    ///
    /// Returns the members found idle, for [`Vgic::forget_idle`].
    fn for_each_routed(&self, vcpu: usize, mut f: impl FnMut(u32, &IrqState)) -> Idle {
        let mut idle = Idle::default();
        let Some(v) = self.vcpus.get(vcpu) else {
            return idle;
        };
        for i in busy::bits(v.busy) {
            match v.private.get(i as usize) {
                Some(irq) if irq.is_busy() => f(i, irq),
                _ => idle.private |= 1 << i,
            }
        }
        for i in self.spis_busy.iter() {
            let Some(irq) = self.spis.get(i) else {
                continue;
            };
            if !irq.is_busy() {
                idle.spis = true;
                continue;
            }
            let here = match irq.owner {
                Some(o) => o == vcpu,
                None => irq.target == vcpu,
            };
            if here {
                f(SPI_BASE + i as u32, irq);
            }
        }
        idle
    }

    /// The busy sets' invariant: every active or pending interrupt (latch
    /// or line) is a member.
    #[cfg(test)]
    pub(crate) fn busy_sets_cover_busy_interrupts(&self) -> bool {
        let private = self.vcpus.iter().all(|v| {
            v.private
                .iter()
                .enumerate()
                .all(|(i, irq)| !irq.is_busy() || v.busy & (1 << i) != 0)
        });
        let spis = self
            .spis
            .iter()
            .enumerate()
            .all(|(i, irq)| !irq.is_busy() || self.spis_busy.iter().any(|m| m == i));
        private && spis
    }

    /// The members of `vcpu`'s private busy set (a mask) and of the SPI
    /// busy set (INTIDs).
    #[cfg(test)]
    pub(crate) fn busy_members(&self, vcpu: usize) -> (u32, Vec<u32>) {
        let private = self.vcpus.get(vcpu).map_or(0, |v| v.busy);
        let spis = self.spis_busy.iter().map(|i| SPI_BASE + i as u32).collect();
        (private, spis)
    }

    /// Drops the members a scan found idle from the busy sets.
    fn forget_idle(&mut self, vcpu: usize, idle: Idle) {
        if let Some(v) = self.vcpus.get_mut(vcpu) {
            v.busy &= !idle.private;
        }
        if idle.spis {
            let mut still = SpiSet::EMPTY;
            for i in self.spis_busy.iter() {
                if self.spis.get(i).is_some_and(IrqState::is_busy) {
                    still.insert(i);
                }
            }
            self.spis_busy = still;
        }
    }

    // ----- List registers ----------------------------------------------------

    /// Folds the LRs read on a guest exit back into the state. `lrs[i]` must
    /// be ICH_LR<i>_EL2 as the hardware left it after the last
    /// [`Vgic::flush_lrs`] for this vCPU. Per LR, against what was written:
    ///
    /// - the pending state gone (pending -> active, or -> invalid): the guest
    ///   acknowledged it, which clears the latch (IHI 0069 §4.1) unless a new
    ///   pending event arrived meanwhile; a level interrupt stays pending
    ///   while its line is high;
    /// - the active bit changed: take the LR's (set = acknowledged; cleared =
    ///   deactivated by an EOI with EOImode=0 or by a DIR);
    /// - a HW-linked interrupt gone invalid: the guest deactivated it, and
    ///   the hardware deactivated the physical interrupt with it; its pending
    ///   state now lives at the physical GIC, so the line level is dropped
    ///   (the physical interrupt fires again if the source still asserts).
    ///
    /// An LR whose vINTID is not what was written is ignored (the state
    /// stays as it is). Folding twice without a flush does nothing.
    pub fn fold_lrs(&mut self, vcpu: usize, lrs: &[u64]) {
        let Some(v) = self.vcpus.get_mut(vcpu) else {
            return;
        };
        if !v.live {
            return;
        }
        v.live = false;
        let nr_records = v.nr_records.min(lrs.len());
        // One record at a time (copying the whole array cost more than
        // the fold itself).
        for i in 0..nr_records {
            let Some(rec) = self.vcpus.get(vcpu).and_then(|v| v.lrs[i]) else {
                continue;
            };
            let Some(&raw) = lrs.get(i) else { continue };
            let lr = Lr(raw);
            if lr.vintid() != rec.intid {
                continue;
            }
            let state = lr.state();
            let Some(irq) = self.irq_mut(vcpu, rec.intid) else {
                continue;
            };
            let consumed = rec.pending && !state.pending();
            if consumed {
                irq.consume_pending(rec.generation);
            }
            if rec.active != state.active() {
                irq.active = state.active();
            }
            if rec.hw && state == LrState::Invalid {
                irq.active = false;
                if irq.generation == rec.generation {
                    irq.pending_latch = false;
                    irq.line_level = false;
                }
            }
            irq.owner = if irq.active || rec.intid < SPI_BASE {
                Some(vcpu)
            } else {
                None
            };
            if irq.owner.is_none() {
                self.note_handoff(vcpu, rec.intid);
            }
        }
    }

    /// Handles ICH_HCR_EL2.EOIcount = `count` read on an exit: the guest
    /// EOIed (EOImode=0) `count` interrupts that were not in any LR, i.e.
    /// active interrupts the last flush left out. With EOImode=0 EOIs come in
    /// reverse acknowledge order, and the flush keeps the most urgent actives
    /// in LRs, so the EOIed ones are the left-out actives in priority order:
    /// those are deactivated. Call after [`Vgic::fold_lrs`] and before the
    /// next flush; the flush's ICH_HCR_EL2 value resets EOIcount to 0.
    ///
    /// Returns the physical INTIDs of HW-linked interrupts deactivated this
    /// way: their LR could not forward the deactivation, so the glue must
    /// deactivate them (ICC_DIR_EL1).
    ///
    /// A guest using EOImode=1 deactivates in any order; EOIcount then
    /// cannot say which: this picks by priority all the same (Linux guests
    /// at EL1 use EOImode=0).
    pub fn eoi_count(&mut self, vcpu: usize, count: u32) -> ArrayVec<u32, 32> {
        let mut phys = ArrayVec::new();
        let Some(v) = self.vcpus.get(vcpu) else {
            return phys;
        };
        let records = v.lrs;
        let nr_records = v.nr_records;
        let in_lrs = |intid: u32| {
            records
                .iter()
                .take(nr_records)
                .flatten()
                .any(|r| r.intid == intid)
        };
        for _ in 0..count.min(32) {
            let mut best: Option<Candidate> = None;
            self.for_each_routed(vcpu, |intid, irq| {
                if irq.active && !in_lrs(intid) {
                    let c = Candidate {
                        priority: irq.priority,
                        intid,
                    };
                    if best.is_none_or(|b| c < b) {
                        best = Some(c);
                    }
                }
            });
            let Some(c) = best else { break };
            let Some(irq) = self.irq_mut(vcpu, c.intid) else {
                break;
            };
            irq.active = false;
            if let Some(p) = irq.hw_pintid {
                let _ = phys.try_push(p);
            }
            if c.intid >= SPI_BASE {
                irq.owner = None;
                self.note_handoff(vcpu, c.intid);
            }
        }
        phys
    }

    /// Fills all `lrs` (the glue writes them to ICH_LR<n>_EL2, at most
    /// [`MAX_LRS`] are used) on guest entry and returns ICH_HCR_EL2.
    ///
    /// Policy:
    /// 1. Active interrupts (including pending+active) stay in LRs, most
    ///    urgent first, so that the guest's EOI/DIR finds them. If they
    ///    alone would fill every LR while something is pending, one LR is
    ///    kept for the most urgent pending interrupt: an NMI must get
    ///    through to a vCPU deep in nested handlers.
    /// 2. The remaining LRs take the most urgent deliverable pending
    ///    interrupts: by priority, then lower INTID. Pending ones that do not
    ///    fit stay pending here (evicted) until a refill.
    /// 3. The LR priority is the guest's configured priority.
    /// 4. HW-linked interrupts get HW=1 and pINTID, and never pending+active
    ///    (the physical GIC holds the new pending state until deactivation).
    ///    A level-sensitive, non-HW interrupt whose line is high gets the EOI
    ///    bit: its deactivation then exits, so it can be re-pended while the
    ///    line stays high.
    /// 5. When pending interrupts are left out, a pending+active (non-HW)
    ///    interrupt is listed active only, with the EOI bit: its deactivation
    ///    exits and the refill ranks its pending half against the others.
    ///
    /// ICH_HCR_EL2 = En, plus:
    /// - NPIE when pending interrupts were left out: it fires once no LR is
    ///   pending, i.e. when the guest has taken those presented, so the next
    ///   ones can be loaded. At least one LR is pending whenever it is set,
    ///   so it does not fire at once.
    /// - LRENPIE when active interrupts were left out: an EOI of one of them
    ///   finds no LR and bumps EOIcount; LRENPIE turns that into an exit so
    ///   [`Vgic::eoi_count`] deactivates it and frees its pending state.
    /// - UIE is never set: a refill is only useful to bring in pending
    ///   interrupts (NPIE's job) or to track left-out actives (LRENPIE's
    ///   job); underflow alone would only add exits.
    ///
    /// EOIcount is returned as 0 (the count was consumed by `eoi_count`).
    pub fn flush_lrs(&mut self, vcpu: usize, lrs: &mut [u64]) -> u64 {
        lrs.fill(Lr::INVALID.0);
        let nr = lrs.len().min(MAX_LRS);
        let Some(v) = self.vcpus.get_mut(vcpu) else {
            return HCR_EN;
        };
        // Anything never folded: its LR content is lost; keep our state.
        v.live = false;
        let nr_records = core::mem::take(&mut v.nr_records);
        for i in 0..nr_records {
            let Some(rec) = self.vcpus.get_mut(vcpu).and_then(|v| v.lrs[i].take()) else {
                continue;
            };
            if rec.intid >= SPI_BASE {
                self.settle_owner(rec.intid);
            }
        }

        let mut active = TopK::new(nr);
        let mut pending = TopK::new(nr);
        let idle = self.for_each_routed(vcpu, |intid, irq| {
            let c = Candidate {
                priority: irq.priority,
                intid,
            };
            if irq.active {
                active.offer(c);
            } else if self.signalable(irq) {
                pending.offer(c);
            }
        });
        self.forget_idle(vcpu, idle);
        let reserve = usize::from(pending.total > 0 && nr > 0);
        let active_slots = active.best.len().min(nr - reserve);
        let pending_slots = pending.best.len().min(nr - active_slots);

        let mut hcr = HCR_EN;
        if pending.total > pending_slots {
            hcr |= HCR_NPIE;
        }
        if active.total > active_slots {
            hcr |= HCR_LRENPIE;
        }

        let overflow = pending.total > pending_slots;
        let chosen = active.best[..active_slots]
            .iter()
            .chain(pending.best[..pending_slots].iter());
        // The records go straight into the vCPU's (all None after the
        // loop above).
        for (slot, c) in chosen.enumerate() {
            let Some(irq) = self.irq(vcpu, c.intid) else {
                continue;
            };
            let irq = *irq;
            let hw = irq.hw_pintid;
            let mut pend = self.signalable(&irq) && !(hw.is_some() && irq.active);
            let mut eoi = hw.is_none() && !irq.edge && irq.line_level;
            if overflow && pend && irq.active {
                // Pending+active while others wait outside the LRs: list it
                // active only, with the EOI bit, so its deactivation exits
                // and the refill ranks its pending half against the waiting
                // ones. Otherwise the guest could take it straight from the
                // LR ahead of more urgent waiting interrupts, and NPIE would
                // not help: whether a pending+active LR counts as "pending"
                // for ICH_MISR_EL2.NP differs between implementations
                // (QEMU: no; KVM's nested model: yes).
                pend = false;
                eoi = true;
            }
            let state = LrState::from_bits(pend, irq.active);
            let lr = match hw {
                Some(p) => Lr::new_hw(c.intid, p, irq.priority, irq.group1, state),
                None => Lr::new(c.intid, irq.priority, irq.group1, state, eoi),
            };
            if let Some(out) = lrs.get_mut(slot) {
                *out = lr.0;
            }
            let record = Some(LrRecord {
                intid: c.intid,
                pending: pend,
                active: irq.active,
                hw: hw.is_some(),
                generation: irq.generation,
            });
            if let Some(r) = self.vcpus.get_mut(vcpu).and_then(|v| v.lrs.get_mut(slot)) {
                *r = record;
            }
            if let Some(irq) = self.irq_mut(vcpu, c.intid) {
                irq.owner = Some(vcpu);
            }
        }
        if let Some(v) = self.vcpus.get_mut(vcpu) {
            v.live = true;
            v.nr_records = active_slots + pending_slots;
        }
        hcr
    }
}

/// What a scan found idle among the busy sets' members.
#[derive(Clone, Copy, Debug, Default)]
struct Idle {
    /// Private INTIDs, as a mask.
    private: u32,
    /// Whether any SPI member was idle.
    spis: bool,
}

/// The MPIDR affinity fields: Aff3 [39:32], Aff2..Aff0 [23:0].
pub const AFFINITY_MASK: u64 = 0xff_00ff_ffff;
