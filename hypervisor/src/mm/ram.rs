//! Host RAM bookkeeping: which physical ranges are free for guests.
//!
//! Pure, so the host tests cover it. The boot CPU builds it from the device
//! tree's memory ranges, reserves what is in use (the hypervisor image with
//! its BSS, the device tree, the bundle), and carves each VM's RAM from the
//! top down in 2 MiB-aligned blocks, so stage 2 can use block mappings.

use arrayvec::ArrayVec;
use core::ops::Range;

/// Most disjoint free ranges tracked.
const MAX_RANGES: usize = 32;

/// Free physical memory.
#[derive(Clone, Debug, Default)]
pub struct FreeRam {
    free: ArrayVec<Range<u64>, MAX_RANGES>,
}

impl FreeRam {
    /// Starts with `ram` all free (empty ranges are ignored).
    pub fn new(ram: impl IntoIterator<Item = Range<u64>>) -> Self {
        let mut free = FreeRam::default();
        for r in ram.into_iter().filter(|r| !r.is_empty()) {
            // More ranges than MAX_RANGES: the extra RAM is not used.
            let _ = free.free.try_push(r);
        }
        free.free.sort_by_key(|r| r.start);
        free
    }

    /// Removes `used` from the free ranges (it may span several or none).
    pub fn reserve(&mut self, used: Range<u64>) {
        if used.is_empty() {
            return;
        }
        let mut next = ArrayVec::<Range<u64>, MAX_RANGES>::new();
        for r in self.free.drain(..) {
            if r.end <= used.start || r.start >= used.end {
                let _ = next.try_push(r);
                continue;
            }
            if r.start < used.start {
                let _ = next.try_push(r.start..used.start);
            }
            if used.end < r.end {
                // Splitting can only add one range; if full, drop the upper
                // piece rather than keep anything in use.
                let _ = next.try_push(used.end..r.end);
            }
        }
        self.free = next;
    }

    /// Total free bytes.
    pub fn total(&self) -> u64 {
        self.free.iter().map(|r| r.end - r.start).sum()
    }

    /// Takes `size` bytes aligned to `align` (a power of two) from the
    /// highest free range that fits, and returns its start.
    pub fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        if size == 0 || !align.is_power_of_two() {
            return None;
        }
        let start = self.free.iter().rev().find_map(|r| {
            let start = r.end.checked_sub(size)? & !(align - 1);
            (start >= r.start).then_some(start)
        })?;
        self.reserve(start..start + size);
        Some(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn allocates_from_the_top_with_alignment() {
        let mut ram = FreeRam::new(core::iter::once(0x4000_0000..0x8000_0000));
        ram.reserve(0x4020_0000..0x40c0_0000);
        let a = ram.alloc(128 * MIB, 2 * MIB).unwrap();
        assert_eq!(a, 0x8000_0000 - 128 * MIB);
        let b = ram.alloc(3 * MIB, 2 * MIB).unwrap();
        assert_eq!(b % (2 * MIB), 0);
        assert!(b + 3 * MIB <= a);
        assert_eq!(ram.total(), 0x4000_0000 - 0xa0_0000 - 128 * MIB - 3 * MIB);
    }

    #[test]
    fn reservations_split_and_remove_ranges() {
        let mut ram = FreeRam::new([0x1000..0x9000, 0x10000..0x20000]);
        ram.reserve(0x2000..0x3000);
        ram.reserve(0x8000..0x11000);
        assert_eq!(
            ram.free.as_slice(),
            &[0x1000..0x2000, 0x3000..0x8000, 0x11000..0x20000]
        );
        ram.reserve(0..u64::MAX);
        assert_eq!(ram.total(), 0);
        assert_eq!(ram.alloc(0x1000, 0x1000), None);
    }

    #[test]
    fn never_hands_out_reserved_memory() {
        let mut ram = FreeRam::new(core::iter::once(0x4000_0000..0x4100_0000));
        ram.reserve(0x40f0_0000..0x4100_0000);
        let a = ram.alloc(2 * MIB, 2 * MIB).unwrap();
        assert!(a + 2 * MIB <= 0x40f0_0000);
        assert_eq!(ram.alloc(64 * MIB, 2 * MIB), None);
        assert_eq!(ram.alloc(0, 2 * MIB), None);
        assert_eq!(ram.alloc(4096, 3), None);
    }
}
