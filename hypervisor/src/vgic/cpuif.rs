//! The guest's virtual CPU interface state that decides whether a pending
//! interrupt would be signalled: its priority mask, running priority and
//! group enables. Pure: the glue reads ICH_VMCR_EL2 and ICH_AP{0,1}R<n>_EL2
//! and builds a [`VirtualCpuIf`].
//!
//! A WFI wakes on an interrupt the CPU interface signals, whatever
//! PSTATE.I says (Arm ARM D1.6.2, "Wait for Interrupt": a WFI wake-up event
//! is an IRQ "regardless of the value of PSTATE.I"); the CPU interface signals
//! only an interrupt whose priority is higher than the PMR and whose group
//! priority is higher than the running priority, in an enabled group
//! (GICv3 spec, "Interrupt prioritization" and its "Preemption" and
//! "Priority grouping" sections; for the virtual interface, ICV_PMR_EL1,
//! ICV_IGRPEN<n>_EL1 and ICV_BPR<n>_EL1 live in ICH_VMCR_EL2 and the
//! active priorities in ICH_AP<n>R<m>_EL2).

/// ICH_VMCR_EL2 fields (GICv3 spec, ICH_VMCR_EL2).
const VMCR_VENG0: u64 = 1 << 0;
const VMCR_VENG1: u64 = 1 << 1;
const VMCR_VCBPR: u64 = 1 << 4;
const VMCR_VBPR1_SHIFT: u32 = 18;
const VMCR_VBPR0_SHIFT: u32 = 21;
const VMCR_VPMR_SHIFT: u32 = 24;

/// What of the virtual CPU interface gates signalling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtualCpuIf {
    /// ICV_PMR_EL1: only priorities numerically below it are signalled.
    pub pmr: u8,
    /// ICV_IGRPEN0_EL1 / ICV_IGRPEN1_EL1.
    pub group0_enabled: bool,
    pub group1_enabled: bool,
    /// The running priority (ICV_RPR_EL1), `None` when nothing is active.
    pub running: Option<u8>,
    /// The group-priority masks that ICV_BPR0 / ICV_BPR1 give.
    pub group0_mask: u8,
    pub group1_mask: u8,
    /// The priority bits the active priorities registers can tell apart.
    pub preemption_mask: u8,
}

impl VirtualCpuIf {
    /// Everything open: PMR 0xff, both groups on, nothing active. For
    /// callers that want the distributor's view alone.
    #[cfg(test)]
    pub const OPEN: VirtualCpuIf = VirtualCpuIf {
        pmr: 0xff,
        group0_enabled: true,
        group1_enabled: true,
        running: None,
        group0_mask: 0xff,
        group1_mask: 0xff,
        preemption_mask: 0xff,
    };

    /// From ICH_VMCR_EL2, the implemented ICH_AP0R<n>_EL2 (`ap0r`) and
    /// ICH_AP1R<n>_EL2 (`ap1r`) and the number of preemption bits
    /// (ICH_VTR_EL2.PREbits + 1, 5..=7).
    ///
    /// Bit i of the active priorities (register i / 32, bit i % 32) is the
    /// group priority `i << (8 - preemption_bits)` (GICv3 spec,
    /// ICH_AP1R<n>_EL2); the running priority is the lowest such value.
    pub fn from_regs(vmcr: u64, ap0r: &[u32], ap1r: &[u32], preemption_bits: u8) -> Self {
        let pre = preemption_bits.clamp(1, 7);
        let shift = 8 - u32::from(pre);
        let mut running: Option<u8> = None;
        for regs in [ap0r, ap1r] {
            for (n, &r) in regs.iter().enumerate() {
                if r != 0 {
                    let i = 32 * n as u32 + r.trailing_zeros();
                    let p = (i << shift).min(0xff) as u8;
                    running = Some(running.map_or(p, |q| q.min(p)));
                }
            }
        }
        let bpr0 = ((vmcr >> VMCR_VBPR0_SHIFT) & 7) as u32;
        let bpr1 = ((vmcr >> VMCR_VBPR1_SHIFT) & 7) as u32;
        // BPR0 = n: group priority is bits [7:n+1]; BPR1 = n: bits [7:n]
        // (GICv3 spec, "Priority grouping"). With VCBPR, Group 1
        // uses BPR0's grouping.
        let group0_mask = (0xffu32 << (bpr0 + 1)) as u8;
        let group1_mask = if vmcr & VMCR_VCBPR != 0 {
            group0_mask
        } else {
            (0xffu32 << bpr1) as u8
        };
        Self {
            pmr: (vmcr >> VMCR_VPMR_SHIFT) as u8,
            group0_enabled: vmcr & VMCR_VENG0 != 0,
            group1_enabled: vmcr & VMCR_VENG1 != 0,
            running,
            group0_mask,
            group1_mask,
            preemption_mask: (0xffu32 << shift) as u8,
        }
    }

    /// Whether a pending interrupt of `priority` in Group 1 (`group1`) or
    /// Group 0 would be signalled: group enabled, priority higher than the
    /// PMR, group priority higher than the running priority.
    pub fn admits(&self, priority: u8, group1: bool) -> bool {
        let (enabled, mask) = if group1 {
            (self.group1_enabled, self.group1_mask)
        } else {
            (self.group0_enabled, self.group0_mask)
        };
        if !enabled || priority >= self.pmr {
            return false;
        }
        match self.running {
            None => true,
            Some(r) => priority & mask & self.preemption_mask < r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmcr(pmr: u8, eng0: bool, eng1: bool) -> u64 {
        u64::from(pmr) << VMCR_VPMR_SHIFT | u64::from(eng0) | u64::from(eng1) << 1
    }

    #[test]
    fn pmr_masks_equal_and_lower_priorities() {
        let c = VirtualCpuIf::from_regs(vmcr(0xc0, true, true), &[0], &[0], 5);
        assert_eq!(c.running, None);
        assert!(c.admits(0x80, true));
        assert!(c.admits(0xb8, true));
        assert!(!c.admits(0xc0, true));
        assert!(!c.admits(0xe0, true));
    }

    #[test]
    fn group_enables() {
        let c = VirtualCpuIf::from_regs(vmcr(0xff, false, true), &[0], &[0], 5);
        assert!(c.admits(0xa0, true));
        assert!(!c.admits(0xa0, false));
        let c = VirtualCpuIf::from_regs(vmcr(0xff, true, false), &[0], &[0], 5);
        assert!(!c.admits(0xa0, true));
        assert!(c.admits(0xa0, false));
    }

    #[test]
    fn running_priority_from_the_active_priorities() {
        // 5 preemption bits: bit i is priority i << 3. Bit 20 = 0xa0.
        let c = VirtualCpuIf::from_regs(vmcr(0xff, true, true), &[0], &[1 << 20], 5);
        assert_eq!(c.running, Some(0xa0));
        assert!(c.admits(0x98, true));
        assert!(
            !c.admits(0xa0, true),
            "same group priority does not preempt"
        );
        assert!(!c.admits(0xc0, true));
        // The lowest bit of either group wins.
        let c = VirtualCpuIf::from_regs(vmcr(0xff, true, true), &[1 << 16], &[1 << 20], 5);
        assert_eq!(c.running, Some(0x80));
        // 7 preemption bits: four registers, bit i is priority i << 1.
        let c = VirtualCpuIf::from_regs(
            vmcr(0xff, true, true),
            &[0, 0, 0, 0],
            &[0, 0, 1 << 16, 0],
            7,
        );
        assert_eq!(c.running, Some(0xa0));
    }

    #[test]
    fn binary_point_groups_priorities_for_preemption() {
        // BPR1 = 6: group priority [7:6]. Running at group 0x40 (bit 8):
        // 0x50 is in the same group and waits, 0x30 preempts.
        let v = vmcr(0xff, true, true) | 6 << VMCR_VBPR1_SHIFT;
        let c = VirtualCpuIf::from_regs(v, &[0], &[1 << 8], 5);
        assert_eq!(c.running, Some(0x40));
        assert_eq!(c.group1_mask, 0xc0);
        assert!(!c.admits(0x50, true));
        assert!(c.admits(0x30, true));
        // VCBPR: Group 1 uses BPR0's grouping (0 here: [7:1]).
        let c = VirtualCpuIf::from_regs(v | VMCR_VCBPR, &[0], &[1 << 8], 5);
        assert_eq!(c.group1_mask, 0xfe);
        assert_eq!(c.group0_mask, 0xfe);
    }

    #[test]
    fn reset_vmcr_masks_everything() {
        let c = VirtualCpuIf::from_regs(0, &[0], &[0], 5);
        assert!(!c.admits(0, true));
        assert!(!c.admits(0, false));
        assert!(VirtualCpuIf::OPEN.admits(0xf8, true));
    }
}
