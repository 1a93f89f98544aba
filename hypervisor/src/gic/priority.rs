//! nmivisor's interrupt priority scheme: the one place that defines it.
//!
//! The hypervisor masks interrupts with the GIC priority mask
//! (ICC_PMR_EL1), not with PSTATE.I, so the NMI SGI still reaches a CPU
//! that is "spinning with interrupts off". QEMU's GIC implements 5 priority
//! bits (ICC_CTLR_EL1.PRIbits = 4), so every value is a multiple of 0x08.
//!
//! | what                                        | priority |
//! |---------------------------------------------|----------|
//! | NMI SGI                                     | 0x20     |
//! | every other physical interrupt              | 0xa0     |
//! | PMR with "interrupts on"                    | 0xf0     |
//! | PMR with "interrupts off" (NMIs still pass) | 0x80     |
//!
//! An interrupt is signalled when its priority is numerically lower than
//! PMR (GICv3 spec 4.8, "Interrupt prioritization").

/// The NMI SGI: passes the "interrupts off" mask.
pub const NMI: u8 = 0x20;
/// Every other interrupt the hypervisor handles (kick SGI, timers, UART).
pub const NORMAL: u8 = 0xa0;
/// ICC_PMR_EL1 with interrupts enabled: everything above passes.
pub const PMR_ON: u8 = 0xf0;
/// ICC_PMR_EL1 with interrupts "off": only [`NMI`] passes.
pub const PMR_OFF: u8 = 0x80;

/// Whether an interrupt at `priority` is delivered under `pmr`.
#[cfg(test)]
pub const fn passes(priority: u8, pmr: u8) -> bool {
    priority < pmr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_lets_only_nmis_through_when_masked() {
        assert!(passes(NMI, PMR_OFF));
        assert!(!passes(NORMAL, PMR_OFF));
        assert!(passes(NORMAL, PMR_ON));
        assert!(passes(NMI, PMR_ON));
    }

    #[test]
    fn values_fit_five_priority_bits() {
        for p in [NMI, NORMAL, PMR_ON, PMR_OFF] {
            assert_eq!(p % 0x08, 0, "{p:#x} is not representable with 5 bits");
        }
    }
}
