//! The guest's only translation table: a static identity map of 1 GiB
//! blocks at level 1 (4 KiB granule, 39-bit VA, so TTBR0_EL1 points
//! straight at it). Entry code turns the MMU on with it before any Rust
//! runs: with the MMU off every data access is Device-nGnRnE, where
//! exclusives (atomics) are IMPLEMENTATION DEFINED and caches are off.
//!
//! | range | attributes |
//! |---|---|
//! | 0 - 1 GiB | Device-nGnRE, execute-never (MMIO on QEMU `virt`) |
//! | 1 - 4 GiB | Normal write-back, inner shareable (RAM) |
//! | above 4 GiB | unmapped (translation fault) |

/// MAIR_EL1: attribute 0 is Device-nGnRE, attribute 1 is Normal
/// write-back read/write-allocate, inner and outer.
#[cfg(target_os = "none")]
pub const MAIR_EL1: u64 = 0xff << 8 | 0x04;

const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;
const VALID_BLOCK: u64 = 0b01;
const SH_INNER: u64 = 3 << 8;
const AF: u64 = 1 << 10;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;

/// Size of one level-1 block.
pub const BLOCK_SIZE: u64 = 1 << 30;

/// Number of mapped 1 GiB blocks: the map covers [0, 4 GiB).
pub const MAPPED_BLOCKS: usize = 4;

/// The end of the identity map.
pub const MAPPED_END: u64 = MAPPED_BLOCKS as u64 * BLOCK_SIZE;

/// A level-1 table, aligned as TTBR0_EL1 needs.
#[repr(C, align(4096))]
pub struct Table(pub [u64; 512]);

/// The descriptor of identity block `index`.
pub const fn block(index: usize) -> u64 {
    let pa = index as u64 * BLOCK_SIZE;
    if index == 0 {
        pa | VALID_BLOCK | ATTR_DEVICE | AF | PXN | UXN
    } else if index < MAPPED_BLOCKS {
        pa | VALID_BLOCK | ATTR_NORMAL | SH_INNER | AF | UXN
    } else {
        0
    }
}

/// The identity map described in the module comment.
pub const fn identity_map() -> Table {
    let mut t = [0u64; 512];
    let mut i = 0;
    while i < MAPPED_BLOCKS {
        t[i] = block(i);
        i += 1;
    }
    Table(t)
}

/// Whether `addr` is covered by a Normal (RAM) block of the map.
pub fn is_normal(addr: u64) -> bool {
    (BLOCK_SIZE..MAPPED_END).contains(&addr)
}

/// TCR_EL1 without the IPS field: T0SZ=25 (39-bit VA, level-1 start),
/// write-back write-allocate inner shareable walks, 4 KiB TG0, EPD1 (no
/// TTBR1 walks), TG1 = 4 KiB. Entry code adds IPS from ID_AA64MMFR0_EL1.
pub const TCR_EL1: u64 = 25 | 1 << 8 | 1 << 10 | 3 << 12 | 1 << 23 | 2 << 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_mmio_as_device_xn_and_ram_as_normal() {
        let t = identity_map();
        assert_eq!(t.0[0], 0x0060_0000_0000_0401);
        assert_eq!(t.0[1], 0x0040_0000_4000_0705);
        assert_eq!(t.0[3], 0x0040_0000_c000_0705);
        assert!(t.0[4..].iter().all(|&d| d == 0));
        assert!(is_normal(0x4000_0000) && is_normal(0xffff_fff8));
        assert!(!is_normal(0x0900_0000) && !is_normal(MAPPED_END));
    }

    #[test]
    fn tcr_has_a_39_bit_va_and_no_ttbr1_walks() {
        assert_eq!(TCR_EL1 & 0x3f, 25);
        assert_ne!(TCR_EL1 & 1 << 23, 0);
    }
}
