//! The guest half of a dump: the software stage-1 walk and the guest
//! frame-record unwinder over guest-controlled tables and stacks
//! (hypervisor/src/debug/guest_walk.rs), and the bundle's System.map
//! parser, lookup and KASLR derivation (vm/guest_symbols.rs).
//!
//! Input: SCTLR_EL1, TCR_EL1, TTBR0_EL1, TTBR1_EL1, x29, VBAR_EL1, a VA
//! (u64 each), a u16 length and that many bytes of System.map text, then
//! the guest's RAM at IPA 0x40000000 (the rest).
#![no_main]

use std::cell::Cell;

use libfuzzer_sys::fuzz_target;
use nmivisor_fuzz::Reader;
use nmivisor_pure::debug::guest_walk::{GuestPhys, GuestUnwinder, GuestVirt, Regime};
use nmivisor_pure::vm::guest_symbols::SystemMap;

const RAM: u64 = 0x4000_0000;

struct Ram<'a> {
    bytes: &'a [u8],
    reads: Cell<u64>,
}

impl GuestPhys for Ram<'_> {
    fn read_u64(&self, ipa: u64) -> Option<u64> {
        self.reads.set(self.reads.get() + 1);
        let off = usize::try_from(ipa.checked_sub(RAM)?).ok()?;
        let word = self.bytes.get(off..off.checked_add(8)?)?;
        Some(u64::from_le_bytes(word.try_into().ok()?))
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader(data);
    let regime = Regime {
        sctlr: r.u64(),
        tcr: r.u64(),
        ttbr0: r.u64(),
        ttbr1: r.u64(),
    };
    let (fp, vbar, va) = (r.u64(), r.u64(), r.u64());
    let map_len = usize::from(r.u16());
    let map = r.bytes(map_len);
    let ram = Ram {
        bytes: r.rest(),
        reads: Cell::new(0),
    };

    // A translation reads at most one descriptor per level (five levels
    // at most, with 52-bit tables); with the MMU off, VA = IPA.
    let before = ram.reads.get();
    let ipa = regime.translate(va, &ram);
    assert!(ram.reads.get() - before <= 5);
    if !regime.mmu_on() {
        assert_eq!(ipa, Ok(va));
    }
    let stripped = regime.strip_pac(va);
    assert_eq!(
        regime.strip_pac(stripped),
        stripped,
        "stripping is idempotent"
    );

    // The unwinder: bounded frames, bounded reads, a reason at the end.
    let before = ram.reads.get();
    let mut u = GuestUnwinder::new(GuestVirt { regime, mem: &ram }, fp, 32);
    let frames = u.by_ref().count();
    assert!(frames <= 32);
    assert!(u.stop_reason().is_some());
    assert!(ram.reads.get() - before <= 33 * 2 * 6);

    if let Ok(m) = SystemMap::parse(map) {
        assert!(m.text_symbols > 0);
        let k = m.kaslr_offset(vbar);
        let _ = k.offset();
        for addr in [va, vbar, fp, m.text.0, m.text.1.wrapping_sub(1)] {
            if let Some((name, off)) = m.lookup(addr) {
                assert!(!name.is_empty());
                assert!(m.text_range().contains(&addr));
                assert!(
                    off <= addr - m.text.0,
                    "the symbol starts inside the text range"
                );
            }
        }
    }
});
