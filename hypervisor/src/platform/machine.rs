//! The machine as the device tree describes it: what `boot::dt` reads and
//! the layers above boot use (the GIC's and UART's addresses, RAM, CPUs).

use crate::arch::MAX_CPUS;
use arrayvec::ArrayVec;
use core::ops::Range;

/// Most RAM ranges kept from /memory nodes.
pub const MAX_MEMORY_RANGES: usize = 8;

/// A physical address range.
pub type PhysRange = Range<u64>;

/// How PSCI calls reach the firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciConduit {
    Smc,
    Hvc,
}

/// The platform as the device tree describes it.
#[derive(Clone, Debug)]
pub struct PlatformInfo<'a> {
    pub memory: ArrayVec<PhysRange, MAX_MEMORY_RANGES>,
    /// MPIDR affinity of each CPU, in device-tree order.
    pub cpus: ArrayVec<u64, MAX_CPUS>,
    /// CPUs present in the DTB beyond [`MAX_CPUS`], left powered off.
    pub cpus_ignored: usize,
    pub gicd: PhysRange,
    pub gicr: PhysRange,
    pub uart: PhysRange,
    /// The UART's interrupt as a GIC INTID, if the tree gives one.
    pub uart_intid: Option<u32>,
    pub psci: PsciConduit,
    pub bootargs: &'a str,
    pub initrd: Option<PhysRange>,
}
