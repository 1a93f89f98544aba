//! Which interrupts may be busy (pending or active), so that the LR
//! scheduler visits those and not every interrupt of a vCPU.
//!
//! Written here because no crate of the field offers a fixed-capacity,
//! allocation-free bit set with a summary word for skipping empty words.
//!
//! A set is a superset: an interrupt is added whenever its state may have
//! changed ([`super::Vgic::irq_mut`]), and dropped only by a scan that
//! found it idle (the SPI set is then rebuilt from its busy members). An
//! interrupt that is not in the set is idle.

use super::irq::MAX_SPIS;

const WORDS: usize = MAX_SPIS.div_ceil(64);

/// A set of SPI indexes (INTID - 32), 0..[`MAX_SPIS`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SpiSet {
    words: [u64; WORDS],
    /// Bit w set when `words[w]` is not zero.
    summary: u16,
}

const _: () = assert!(WORDS <= 16, "summary has one bit per word");

impl SpiSet {
    /// No SPI.
    pub(crate) const EMPTY: Self = Self {
        words: [0; WORDS],
        summary: 0,
    };

    /// Adds SPI index `i` (ignored beyond [`MAX_SPIS`]).
    pub(crate) fn insert(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w |= 1 << (i % 64);
            self.summary |= 1 << (i / 64);
        }
    }

    /// The members, lowest first; empty words cost one bit test of the
    /// summary.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        let mut summary = self.summary;
        let mut word = 0u64;
        let mut base = 0usize;
        core::iter::from_fn(move || loop {
            if word != 0 {
                let i = base + word.trailing_zeros() as usize;
                word &= word - 1;
                return Some(i);
            }
            if summary == 0 {
                return None;
            }
            let w = summary.trailing_zeros() as usize;
            summary &= summary - 1;
            word = self.words.get(w).copied().unwrap_or(0);
            base = w * 64;
        })
    }
}

/// The members of a 32-bit mask of private INTIDs, lowest first.
pub(crate) fn bits(mut mask: u32) -> impl Iterator<Item = u32> {
    core::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let i = mask.trailing_zeros();
        mask &= mask - 1;
        Some(i)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn spi_set_keeps_its_members_in_order() {
        let mut s = SpiSet::EMPTY;
        assert_eq!(s.iter().count(), 0);
        for i in [987, 0, 63, 64, 500, 127] {
            s.insert(i);
        }
        s.insert(MAX_SPIS + 40); // out of range: ignored
        assert_eq!(s.iter().collect::<Vec<_>>(), [0, 63, 64, 127, 500, 987]);
        // Words 1 and 15 alone: the summary skips the empty ones between.
        let mut t = SpiSet::EMPTY;
        t.insert(64);
        t.insert(987);
        assert_eq!(t.iter().collect::<Vec<_>>(), [64, 987]);
    }

    #[test]
    fn private_bits() {
        assert_eq!(bits(0).count(), 0);
        assert_eq!(bits(1 << 27 | 1 << 3 | 1).collect::<Vec<_>>(), [0, 3, 27]);
        assert_eq!(bits(u32::MAX).count(), 32);
    }
}
