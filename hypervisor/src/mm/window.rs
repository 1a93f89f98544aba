//! Windows onto guest RAM for EL2.
//!
//! The EL2 map does not cover any VM's RAM (see [`crate::mm::el2`]): a
//! speculative-execution gadget in the hypervisor then finds no mapping
//! through which to read another VM's memory. When the hypervisor must
//! touch guest RAM (loading an image, zeroing RAM, a hypercall's buffer, a
//! guest stack in a dump), it maps the 2 MiB block it needs into a window
//! of its own CPU, uses it, and unmaps it again.
//!
//! Every CPU has [`SLOTS_PER_CPU`] windows, one per context that can nest
//! on it (thread, interrupt, NMI), taken in stack order, so no window is
//! ever shared and no lock is needed: the NMI path may use one too.
//!
//! This file is the pure part (where each window lives, how an access is
//! split into blocks); `window_hw` maps and unmaps.

use core::ops::Range;

/// Size of one window: a level-2 block (4 KiB granule).
pub const BLOCK: u64 = 2 << 20;
/// Windows per CPU: thread context, a normal interrupt, an NMI.
pub const SLOTS_PER_CPU: usize = 3;
/// Virtual address of the first window. The EL2 regime has a 39-bit VA
/// space (TCR_EL2.T0SZ = 25); the windows sit in its top 4 GiB, where
/// QEMU's virt machine (RAM from 1 GiB, high MMIO from 256 GiB) and any
/// RAM the EL2 map covers do not reach. `el2::init` checks that.
pub const BASE: u64 = (1 << 39) - (4 << 30);

/// The VA range all windows of `cpus` CPUs occupy.
pub const fn region(cpus: usize) -> Range<u64> {
    BASE..BASE + (cpus * SLOTS_PER_CPU) as u64 * BLOCK
}

/// The window of `cpu` at nesting depth `depth`.
pub const fn slot_index(cpu: usize, depth: usize) -> usize {
    cpu * SLOTS_PER_CPU + depth
}

/// The VA of window `index`.
pub const fn slot_va(index: usize) -> u64 {
    BASE + index as u64 * BLOCK
}

/// One piece of an access that a single window can serve: the 2 MiB block
/// to map, and where in it the piece lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub block_pa: u64,
    pub offset: u64,
    pub len: u64,
}

/// Splits `len` bytes at physical address `pa` into per-block pieces.
pub fn pieces(pa: u64, len: u64) -> impl Iterator<Item = Piece> {
    let end = pa.saturating_add(len);
    let mut at = pa;
    core::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let block_pa = at & !(BLOCK - 1);
        let offset = at - block_pa;
        let piece = (BLOCK - offset).min(end - at);
        at += piece;
        Some(Piece {
            block_pa,
            offset,
            len: piece,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn windows_fill_the_top_of_the_39_bit_space_without_overlap() {
        let all = region(crate::arch::MAX_CPUS);
        assert!(all.end <= 1 << 39);
        assert!(
            all.start >= 256 << 30,
            "above QEMU virt's RAM and high MMIO"
        );
        assert_eq!(slot_va(slot_index(0, 0)), BASE);
        assert_eq!(
            slot_va(slot_index(1, 0)),
            BASE + SLOTS_PER_CPU as u64 * BLOCK
        );
        let last = slot_index(crate::arch::MAX_CPUS - 1, SLOTS_PER_CPU - 1);
        assert_eq!(slot_va(last) + BLOCK, all.end);
    }

    #[test]
    fn an_access_splits_at_block_boundaries() {
        let got: Vec<Piece> = pieces(0x4020_0000 - 16, 48).collect();
        assert_eq!(
            got,
            [
                Piece {
                    block_pa: 0x4000_0000,
                    offset: BLOCK - 16,
                    len: 16
                },
                Piece {
                    block_pa: 0x4020_0000,
                    offset: 0,
                    len: 32
                },
            ]
        );
        let whole: Vec<Piece> = pieces(0x8000_0000, 3 * BLOCK).collect();
        assert_eq!(whole.len(), 3);
        assert!(whole.iter().all(|p| p.offset == 0 && p.len == BLOCK));
        assert_eq!(pieces(0x1000, 0).count(), 0);
        assert_eq!(
            pieces(u64::MAX - 4, 100).map(|p| p.len).sum::<u64>(),
            4,
            "clamped at the top"
        );
    }
}
