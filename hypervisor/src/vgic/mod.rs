//! The emulated GICv3 each guest sees (the pure part: no `asm!`, no MMIO).
//!
//! The guest's own priorities reach the list registers, so a Linux guest's
//! pseudo-NMIs (priority 0x80) preempt its normal interrupts (0xa0) even
//! while it masks those with ICV_PMR_EL1.
//!
//! - [`irq`]: per-interrupt state and the edge/level pending rules.
//! - [`lr`]: the ICH_LR<n>_EL2 encoding and ICH_HCR_EL2 bits.
//! - [`state`]: [`Vgic`], injection, and the LR scheduler (`fold_lrs` /
//!   `flush_lrs` / `eoi_count`).
//! - [`cpuif`]: the virtual CPU interface's masking (PMR, running
//!   priority, group enables), for WFI wake-ups.
//! - [`sgi`]: guest SGI decoding and target resolution.
//! - [`regs`], [`dist`], [`redist`]: GICD and GICR register emulation.
//!
//! - `hw` (target only, written against this API): the hardware glue that
//!   moves LRs to and from ICH_* registers, handles traps and sends kicks.

mod busy;
pub mod cpuif;
pub mod dist;
pub mod irq;
pub mod lr;
pub mod redist;
pub mod regs;
pub mod sgi;
pub mod state;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod state_tests;

// The glue (target only) and tests use these; on the host build some are
// otherwise unused.
#[allow(unused_imports)]
pub use irq::IrqState;
#[allow(unused_imports)]
pub use lr::{Lr, LrState};
#[allow(unused_imports)]
pub use regs::{Access, WriteResult};
#[allow(unused_imports)]
pub use sgi::{SgiGroup, SgiRequest, TargetSet, Targets};
#[allow(unused_imports)]
pub use state::{is_nmi_priority, Vgic, NMI_PRIORITY_THRESHOLD};
