//! Per-interrupt state of the emulated GICv3.
//!
//! One [`IrqState`] describes one virtual SGI, PPI or SPI the way the GIC
//! architecture does: an enable bit, a group, a priority, a trigger mode and
//! the pending/active state machine of IHI 0069 §4.1 ("Interrupt handling
//! state machine"). Everything here is plain data: the vGIC ([`super::Vgic`])
//! decides where an interrupt is delivered and how it reaches the list
//! registers.

/// The first SPI INTID (SGIs are 0-15, PPIs 16-31).
pub const SPI_BASE: u32 = 32;
/// Number of private (banked per vCPU) interrupts: 16 SGIs and 16 PPIs.
pub const NR_PRIVATE: usize = 32;
/// SPIs end below the special INTIDs 1020-1023 (IHI 0069 §2.2, INTIDs), so
/// at most 1020 - 32 = 988 SPIs exist.
pub const MAX_SPIS: usize = 988;
/// `target` of an SPI whose GICD_IROUTER names no vCPU of the VM: the
/// interrupt is delivered nowhere (see [`super::Vgic`]'s IROUTER notes).
pub const NO_TARGET: usize = usize::MAX;

/// The state of one virtual interrupt.
///
/// Pending has two sources, as in IHI 0069 §4.1: the *latch* (an edge seen on
/// the input, a write to GICD_ISPENDR or an SGI) and, for level-sensitive
/// interrupts only, the input *line level*. Acknowledging an interrupt clears
/// the latch; it never lowers the line, so a level interrupt whose device
/// still asserts it is pending again as soon as it is deactivated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqState {
    /// GICD_ISENABLER / GICR_ISENABLER0 bit.
    pub enabled: bool,
    /// Edge-triggered or software (ISPENDR / SGI) pending state.
    pub pending_latch: bool,
    /// The input signal of a level-sensitive interrupt (also recorded for
    /// edge-triggered ones, to detect rising edges in `set_level`).
    pub line_level: bool,
    /// Active: acknowledged by the guest and not yet deactivated.
    pub active: bool,
    /// Priority as the guest reads it back: already masked to the
    /// implemented priority bits.
    pub priority: u8,
    /// Group 1 (true) or Group 0 (GICD_IGROUPR / GICR_IGROUPR0 bit).
    pub group1: bool,
    /// Edge-triggered (GICD_ICFGR bit 2n+1 set) or level-sensitive.
    pub edge: bool,
    /// The vCPU an SPI is routed to (GICD_IROUTER), or [`NO_TARGET`].
    /// Private interrupts always target the vCPU that owns the bank.
    pub target: usize,
    /// Physical INTID this virtual interrupt is linked to: its list register
    /// then has HW=1, and the guest's deactivation deactivates the physical
    /// interrupt too (IHI 0069 ICH_LR<n>_EL2.HW).
    pub hw_pintid: Option<u32>,
    /// The vCPU whose list registers hold this interrupt, or on which it is
    /// active. An SPI stays with that vCPU until it is neither in an LR nor
    /// active there, even if GICD_IROUTER changes meanwhile: otherwise two
    /// vCPUs could both present it.
    pub(crate) owner: Option<usize>,
    /// Bumped on every event that makes the interrupt pending, so that the
    /// LR fold can tell "the pending state I put in the LR was consumed"
    /// from "and a new edge arrived while the guest ran".
    pub(crate) generation: u32,
}

impl IrqState {
    /// The reset state of an interrupt: disabled, idle, Group 0, priority 0
    /// (GICD/GICR reset values, IHI 0069 §12.9 and §12.11), edge-triggered
    /// if `edge`.
    pub const fn new(edge: bool, target: usize) -> Self {
        Self {
            enabled: false,
            pending_latch: false,
            line_level: false,
            active: false,
            priority: 0,
            group1: false,
            edge,
            target,
            hw_pintid: None,
            owner: None,
            generation: 0,
        }
    }

    /// The pending state (IHI 0069 §4.1): the latch for edge-triggered
    /// interrupts; latch or line level for level-sensitive ones.
    pub const fn is_pending(&self) -> bool {
        if self.edge {
            self.pending_latch
        } else {
            self.pending_latch || self.line_level
        }
    }

    /// Active, or its latch or line set: what the LR scheduler's scans look
    /// for (a superset of pending, whatever the trigger mode).
    pub const fn is_busy(&self) -> bool {
        self.active | self.pending_latch | self.line_level
    }

    /// Sets the latch: an edge, an ISPENDR write or an SGI.
    pub fn pend(&mut self) {
        self.pending_latch = true;
        self.generation = self.generation.wrapping_add(1);
    }

    /// Drives the input line. Level-sensitive: the line is the pending
    /// state. Edge-triggered: only a rising edge latches (IHI 0069 §4.1,
    /// "edge-triggered interrupts ... become pending on a rising edge").
    pub fn drive_line(&mut self, level: bool) {
        let rising = level && !self.line_level;
        self.line_level = level;
        if rising {
            if self.edge {
                self.pend();
            } else {
                self.generation = self.generation.wrapping_add(1);
            }
        }
    }

    /// The pending state acknowledged by the guest was consumed: clears the
    /// latch unless a new pending event (`generation` moved on since
    /// `seen_generation`) arrived meanwhile. The line level is untouched: a
    /// level interrupt stays pending while its input is high.
    pub fn consume_pending(&mut self, seen_generation: u32) {
        if self.generation == seen_generation {
            self.pending_latch = false;
        }
    }
}

/// The mask that keeps the `bits` most significant priority bits, the way a
/// GIC that implements only those bits stores a written priority
/// (IHI 0069 §4.8, "Interrupt prioritization": unimplemented low-order bits
/// are RAZ/WI). `bits` is clamped to 1..=8.
pub const fn priority_mask(bits: u8) -> u8 {
    let bits = if bits == 0 {
        1
    } else if bits > 8 {
        8
    } else {
        bits
    };
    !((1u16 << (8 - bits)) - 1) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_pending_is_the_latch() {
        let mut irq = IrqState::new(true, 0);
        irq.drive_line(true);
        assert!(irq.is_pending());
        irq.drive_line(true); // no new edge
        irq.consume_pending(irq.generation);
        assert!(!irq.is_pending());
        irq.drive_line(false);
        irq.drive_line(true);
        assert!(irq.is_pending());
    }

    #[test]
    fn level_pending_follows_the_line_and_survives_ack() {
        let mut irq = IrqState::new(false, 0);
        irq.drive_line(true);
        assert!(irq.is_pending());
        irq.consume_pending(irq.generation);
        assert!(irq.is_pending(), "line still high");
        irq.drive_line(false);
        assert!(!irq.is_pending());
        irq.pend(); // software pend of a level interrupt
        assert!(irq.is_pending());
        irq.consume_pending(irq.generation);
        assert!(!irq.is_pending());
    }

    #[test]
    fn new_edge_after_presentation_is_kept() {
        let mut irq = IrqState::new(true, 0);
        irq.pend();
        let seen = irq.generation;
        irq.pend();
        irq.consume_pending(seen);
        assert!(irq.is_pending());
    }

    #[test]
    fn priority_masks() {
        assert_eq!(priority_mask(5), 0xf8);
        assert_eq!(priority_mask(4), 0xf0);
        assert_eq!(priority_mask(8), 0xff);
        assert_eq!(priority_mask(0), 0x80);
        assert_eq!(priority_mask(9), 0xff);
    }
}
