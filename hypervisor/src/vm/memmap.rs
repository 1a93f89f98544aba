//! The guest physical address map. It copies QEMU virt's, so kernels and
//! guest-test see the same machine natively and under nmivisor.

use core::ops::Range;

/// Guest RAM starts here (as QEMU virt's RAM).
#[cfg(target_os = "none")]
pub const RAM_BASE: u64 = 0x4000_0000;
/// The emulated GICv3 distributor (64 KiB).
pub const GICD: Range<u64> = 0x0800_0000..0x0801_0000;
/// The emulated redistributors: one RD + SGI frame pair per vCPU.
pub const GICR_BASE: u64 = 0x080a_0000;
/// One vCPU's RD + SGI frame pair (128 KiB).
pub const GICR_FRAME: u64 = crate::vgic::regs::gicr::SIZE;
/// Room QEMU virt leaves for redistributors below the UART.
#[cfg(target_os = "none")]
pub const GICR_MAX_VCPUS: usize = 123;

/// The emulated PL011 (4 KiB) and its interrupt (SPI 1, INTID 33).
pub const UART: Range<u64> = 0x0900_0000..0x0900_1000;
pub const UART_INTID: u32 = 33;

/// The redistributor range for `nr_vcpus` vCPUs.
pub fn gicr(nr_vcpus: usize) -> Range<u64> {
    GICR_BASE..GICR_BASE + GICR_FRAME * nr_vcpus as u64
}
