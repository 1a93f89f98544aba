//! Interrupt masking at EL2 by priority.

use super::priority::PMR_OFF;
use crate::arch::gicv3::{pmr, set_pmr};

/// Masks normal interrupts on this CPU by raising the priority mask to
/// "interrupts off" (PMR 0x80), and restores the previous mask on drop.
/// NMIs still get through: that is the point of masking by priority.
#[must_use = "interrupts are unmasked again when the guard is dropped"]
pub struct IrqGuard {
    saved: u8,
}

impl IrqGuard {
    /// Masks normal interrupts until dropped.
    pub fn new() -> Self {
        let saved = pmr();
        set_pmr(saved.min(PMR_OFF));
        IrqGuard { saved }
    }
}

impl Default for IrqGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for IrqGuard {
    fn drop(&mut self) {
        set_pmr(self.saved);
    }
}
