//! Reading a guest's stack from EL2: a software walk of the guest's stage-1
//! translation tables, and a frame-record unwinder over guest virtual
//! addresses. Pure logic, host-tested; the dump feeds it the live EL1
//! registers and a reader of the VM's RAM (`debug::guest_dump`).
//!
//! # Why a software walk, not `AT S12E1R` + `PAR_EL1`
//!
//! Both would work on the interrupted CPU, where the guest's EL1 regime is
//! live. The software walk was chosen because:
//!
//! - **It touches only what the hypervisor checked.** Every descriptor and
//!   every stack word is read through a [`GuestPhys`] that refuses any IPA
//!   outside the VM's RAM. `AT` walks the guest's tables in hardware: a
//!   guest that points its TTBR or a table descriptor at an emulated
//!   device's IPA, or at something that raises an external abort on the
//!   walk, turns a diagnostic into a synchronous external abort or an
//!   SError taken at EL2 in the middle of an NMI.
//! - **It is pure.** It runs in `cargo test` over fake memory, with every
//!   granule (4K, 16K, 64K), both TTBRs, 52-bit (`TCR_EL1.DS`) tables and
//!   hostile descriptors, which `AT` never could.
//! - **No side effects on the CPU.** `AT` overwrites `PAR_EL1`, which is
//!   the guest's register; the walk needs no save and restore around it.
//!
//! Stage 2 needs no walk: a VM's stage 2 is one linear map of its RAM
//! (`mm/stage2.rs`), so IPA to PA is [`GuestPhys`]'s range check.
//!
//! The walk ignores permissions, access flags and the contiguous hint: it
//! answers "which IPA does this VA name", which is all an unwinder needs.
//! Addresses are limited to what a VM can have: any output address that
//! needs more than 48 bits (or 50 with `DS`) lies outside every VM's RAM,
//! and is reported as such instead of being truncated.

use core::fmt;

/// Reads the VM's memory by IPA. Implementations must return `None` for
/// any IPA outside the VM's RAM: this is the only way the walker and the
/// unwinder touch memory.
pub trait GuestPhys {
    /// The 64-bit word at `ipa` (8-byte aligned), or `None`.
    fn read_u64(&self, ipa: u64) -> Option<u64>;
}

impl<M: GuestPhys + ?Sized> GuestPhys for &M {
    fn read_u64(&self, ipa: u64) -> Option<u64> {
        (**self).read_u64(ipa)
    }
}

/// The guest's stage-1 controls, as read from its live EL1 registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regime {
    /// SCTLR_EL1.
    pub sctlr: u64,
    /// TCR_EL1.
    pub tcr: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
}

/// Why a virtual address has no IPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// The VA is outside both halves' ranges (TxSZ), or its half is
    /// disabled (EPDx).
    NotInRange,
    /// TCR_EL1 holds a value the architecture reserves (a TxSZ or TGx).
    BadTcr,
    /// A table or the translation table base is outside the VM's RAM.
    TableOutsideRam,
    /// A descriptor is invalid (a translation fault).
    Unmapped,
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WalkError::NotInRange => "address outside the guest's translation ranges",
            WalkError::BadTcr => "reserved TCR_EL1 value",
            WalkError::TableOutsideRam => "translation table outside the VM's RAM",
            WalkError::Unmapped => "address not mapped by the guest",
        })
    }
}

const SCTLR_M: u64 = 1;
const TCR_EPD0: u64 = 1 << 7;
const TCR_EPD1: u64 = 1 << 23;
const TCR_TBI0: u64 = 1 << 37;
const TCR_TBI1: u64 = 1 << 38;
const TCR_DS: u64 = 1 << 59;

/// One half of the VA space (TTBR0 or TTBR1) as TCR_EL1 configures it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Half {
    /// log2 of the granule: 12, 14 or 16.
    granule_shift: u32,
    /// Bits of VA this half translates (64 - TxSZ).
    va_bits: u32,
    /// Top Byte Ignore.
    tbi: bool,
    disabled: bool,
    ttbr: u64,
}

impl Regime {
    /// Whether stage 1 is on (SCTLR_EL1.M). Off, VA = IPA.
    pub fn mmu_on(&self) -> bool {
        self.sctlr & SCTLR_M != 0
    }

    fn half(&self, upper: bool) -> Result<Half, WalkError> {
        // A disabled half faults whatever its other fields say.
        if self.tcr & if upper { TCR_EPD1 } else { TCR_EPD0 } != 0 {
            return Err(WalkError::NotInRange);
        }
        let (tsz, tg, epd, tbi, ttbr) = if upper {
            let tg = match (self.tcr >> 30) & 3 {
                1 => 14,
                2 => 12,
                3 => 16,
                _ => return Err(WalkError::BadTcr),
            };
            ((self.tcr >> 16) & 0x3f, tg, TCR_EPD1, TCR_TBI1, self.ttbr1)
        } else {
            let tg = match (self.tcr >> 14) & 3 {
                0 => 12,
                1 => 16,
                2 => 14,
                _ => return Err(WalkError::BadTcr),
            };
            (self.tcr & 0x3f, tg, TCR_EPD0, TCR_TBI0, self.ttbr0)
        };
        // Arm ARM D8.1.9 bounds TxSZ; the walker needs 12..=48 to stay
        // sound (at most 52 and at least 16 VA bits).
        if !(12..=48).contains(&tsz) {
            return Err(WalkError::BadTcr);
        }
        // At least one level of table: a VA range no larger than one page
        // (64K granule, TxSZ 48) is reserved, and would leave the walk no
        // level to start at.
        if 64 - tsz as u32 <= tg {
            return Err(WalkError::BadTcr);
        }
        Ok(Half {
            granule_shift: tg,
            va_bits: 64 - tsz as u32,
            tbi: self.tcr & tbi != 0,
            disabled: self.tcr & epd != 0,
            ttbr,
        })
    }

    /// The number of VA bits of the half `va` belongs to (bit 55 selects
    /// it), or 64 while the MMU is off. Used to strip pointer
    /// authentication codes.
    pub fn va_bits(&self, va: u64) -> u32 {
        if !self.mmu_on() {
            return 64;
        }
        self.half(va >> 55 & 1 == 1).map_or(64, |h| h.va_bits)
    }

    /// A code address as it was before pointer authentication signed it:
    /// the PAC sits in the bits above the VA size (and in the top byte
    /// when TBI is off), which a valid address has all equal to bit 55.
    pub fn strip_pac(&self, addr: u64) -> u64 {
        let bits = self.va_bits(addr);
        if bits >= 64 {
            return addr;
        }
        let mask = (1u64 << bits) - 1;
        if addr >> 55 & 1 == 1 {
            addr | !mask
        } else {
            addr & mask
        }
    }

    /// The IPA of guest virtual address `va`.
    pub fn translate(&self, va: u64, mem: &impl GuestPhys) -> Result<u64, WalkError> {
        if !self.mmu_on() {
            return Ok(va);
        }
        let upper = va >> 55 & 1 == 1;
        let half = self.half(upper)?;
        if half.disabled {
            return Err(WalkError::NotInRange);
        }
        // Every bit from the top of the VA range to bit 63 (to bit 55 with
        // TBI) must equal bit 55 (Arm ARM D8.2.1).
        let top = if half.tbi { 56 } else { 64 };
        let high = va >> half.va_bits;
        let width = top - half.va_bits;
        let expect = if upper { (1u64 << width) - 1 } else { 0 };
        if high & ((1u64 << width) - 1) != expect {
            return Err(WalkError::NotInRange);
        }
        self.walk(va, &half, mem)
    }

    fn walk(&self, va: u64, half: &Half, mem: &impl GuestPhys) -> Result<u64, WalkError> {
        let g = half.granule_shift;
        let stride = g - 3;
        let ds = self.tcr & TCR_DS != 0 && g != 16;
        // Output addresses: bits [47:g], or [49:g] with DS (4K/16K);
        // bits above that (TTBR[5:2], desc[9:8] or desc[15:12]) would name
        // memory beyond every VM, so they must be zero.
        let oa_top = if ds { 50 } else { 48 };
        let oa_mask = |shift: u32| ((1u64 << oa_top) - 1) & !((1u64 << shift) - 1);
        let high_oa = |desc: u64| -> bool {
            if ds {
                desc & (3 << 8) != 0
            } else if g == 16 {
                desc & (0xf << 12) != 0
            } else {
                false
            }
        };
        if half.ttbr & (0xf << 2) != 0 && (ds || g == 16) {
            return Err(WalkError::TableOutsideRam);
        }
        // Levels needed to resolve va_bits - g bits, `stride` per level.
        let levels = (half.va_bits - g).div_ceil(stride) as i32;
        let start = 4 - levels;
        // TTBR: ASID in [63:48], BADDR in [47:1] (its bits [51:48], in
        // TTBR[5:2], were checked above); bit 0 is CnP.
        let mut table = half.ttbr & 0x0000_ffff_ffff_fffe;
        let mut level = start;
        loop {
            let shift = g + stride * (3 - level) as u32;
            let bits = if level == start {
                half.va_bits - shift
            } else {
                stride
            };
            let index = (va >> shift) & ((1u64 << bits) - 1);
            let desc = mem
                .read_u64(table + index * 8)
                .ok_or(WalkError::TableOutsideRam)?;
            if desc & 1 == 0 {
                return Err(WalkError::Unmapped);
            }
            let is_table = desc & 2 != 0;
            if level == 3 {
                if !is_table || high_oa(desc) {
                    return Err(WalkError::Unmapped);
                }
                return Ok((desc & oa_mask(g)) | (va & ((1 << g) - 1)));
            }
            if !is_table {
                // A block: the architecture allows them at levels 1 and 2
                // (level 0 and -1 only with 52-bit tables); the walk takes
                // any, since the address check bounds the result anyway.
                if level < 0 || high_oa(desc) {
                    return Err(WalkError::Unmapped);
                }
                return Ok((desc & oa_mask(shift)) | (va & ((1 << shift) - 1)));
            }
            if high_oa(desc) {
                return Err(WalkError::TableOutsideRam);
            }
            table = desc & oa_mask(g);
            level += 1;
        }
    }
}

/// Guest virtual memory: the regime's walk, then the VM's RAM.
pub struct GuestVirt<'a, M> {
    pub regime: Regime,
    pub mem: &'a M,
}

impl<M: GuestPhys> GuestVirt<'_, M> {
    /// The word at guest VA `va` (8-byte aligned), or why not.
    pub fn read_u64(&self, va: u64) -> Result<u64, UnwindStop> {
        if !va.is_multiple_of(8) {
            return Err(UnwindStop::Misaligned);
        }
        let ipa = self
            .regime
            .translate(va, self.mem)
            .map_err(UnwindStop::Walk)?;
        self.mem.read_u64(ipa).ok_or(UnwindStop::OutsideRam)
    }
}

/// Why a guest unwind ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnwindStop {
    /// A frame pointer or return address of 0: the normal end.
    End,
    Misaligned,
    /// The frame record's VA did not translate.
    Walk(WalkError),
    /// It translated to an IPA outside the VM's RAM.
    OutsideRam,
    /// The caller's record is not above the callee's and the stack-switch
    /// budget is spent: a loop or corruption.
    NotIncreasing,
    /// The frame limit was reached.
    Limit,
}

impl fmt::Display for UnwindStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnwindStop::End => f.write_str("end of the frame chain"),
            UnwindStop::Misaligned => f.write_str("misaligned frame pointer"),
            UnwindStop::Walk(e) => write!(f, "frame record: {e}"),
            UnwindStop::OutsideRam => f.write_str("frame record outside the VM's RAM"),
            UnwindStop::NotIncreasing => f.write_str("caller frame not above its callee"),
            UnwindStop::Limit => f.write_str("frame limit reached"),
        }
    }
}

/// How many times a chain may continue at a lower address: a guest kernel
/// runs on several stacks (task, IRQ, overflow), and the record that
/// leaves an IRQ stack points back to the task stack, which may lie below.
/// Linux's own unwinder allows each kind of stack once.
pub const STACK_SWITCHES: usize = 2;

/// Iterator over the return addresses of a guest's frame-record chain
/// (AAPCS64: x29 points at {caller x29, return address}), innermost first,
/// PAC stripped. Every read goes through [`GuestVirt`], so nothing outside
/// the VM's RAM is touched; the chain must rise (but for
/// [`STACK_SWITCHES`] jumps), and it ends after `max_frames`.
pub struct GuestUnwinder<'a, M> {
    mem: GuestVirt<'a, M>,
    fp: u64,
    remaining: usize,
    switches: usize,
    stopped: Option<UnwindStop>,
}

impl<'a, M: GuestPhys> GuestUnwinder<'a, M> {
    /// A walk from frame pointer `fp`, at most `max_frames` deep.
    pub fn new(mem: GuestVirt<'a, M>, fp: u64, max_frames: usize) -> Self {
        GuestUnwinder {
            mem,
            fp,
            remaining: max_frames,
            switches: 0,
            stopped: None,
        }
    }

    /// Why iteration ended, once it has.
    pub fn stop_reason(&self) -> Option<UnwindStop> {
        self.stopped
    }

    fn stop(&mut self, why: UnwindStop) -> Option<u64> {
        self.stopped = Some(why);
        None
    }
}

impl<M: GuestPhys> Iterator for GuestUnwinder<'_, M> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.stopped.is_some() {
            return None;
        }
        if self.fp == 0 {
            return self.stop(UnwindStop::End);
        }
        if self.remaining == 0 {
            return self.stop(UnwindStop::Limit);
        }
        let Some(ret_va) = self.fp.checked_add(8) else {
            return self.stop(UnwindStop::Walk(WalkError::NotInRange));
        };
        let record = self
            .mem
            .read_u64(self.fp)
            .and_then(|caller| Ok((caller, self.mem.read_u64(ret_va)?)));
        let (caller_fp, ret) = match record {
            Ok(r) => r,
            Err(why) => return self.stop(why),
        };
        let ret = self.mem.regime.strip_pac(ret);
        if ret == 0 {
            return self.stop(UnwindStop::End);
        }
        self.remaining -= 1;
        if caller_fp != 0 && caller_fp <= self.fp {
            if caller_fp == self.fp || self.switches == STACK_SWITCHES {
                // This record is sound; the chain beyond it is not.
                self.stopped = Some(UnwindStop::NotIncreasing);
            }
            self.switches += 1;
        }
        self.fp = caller_fp;
        Some(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::vec;
    use alloc::vec::Vec;
    use std::cell::RefCell;

    /// Sparse fake RAM at IPA [RAM, RAM + 1 GiB) that records every read.
    #[derive(Default)]
    struct Ram {
        words: BTreeMap<u64, u64>,
        reads: RefCell<Vec<u64>>,
    }
    const RAM: u64 = 0x4000_0000;
    const RAM_END: u64 = 0x8000_0000;

    impl Ram {
        fn set(&mut self, ipa: u64, v: u64) {
            self.words.insert(ipa, v);
        }
    }
    impl GuestPhys for Ram {
        fn read_u64(&self, ipa: u64) -> Option<u64> {
            self.reads.borrow_mut().push(ipa);
            if ipa < RAM || ipa.checked_add(8)? > RAM_END || !ipa.is_multiple_of(8) {
                return None;
            }
            Some(*self.words.get(&ipa).unwrap_or(&0))
        }
    }

    const TABLE: u64 = 0b11;
    const BLOCK: u64 = 0b01;
    const PAGE: u64 = 0b11;

    /// TCR for 4K granules on both halves, 48-bit VAs.
    const TCR_4K_48: u64 = 16 | 16 << 16 | 2 << 30;

    fn regime(tcr: u64, ttbr0: u64, ttbr1: u64) -> Regime {
        Regime {
            sctlr: 1,
            tcr,
            ttbr0,
            ttbr1,
        }
    }

    /// Builds a 4-level 4K mapping of `va` -> `pa` (one page) with tables
    /// at consecutive pages from `tables`.
    fn map_4k(ram: &mut Ram, root: u64, tables: u64, va: u64, pa: u64) {
        let mut table = root;
        for (i, level) in (0..3).enumerate() {
            let shift = 12 + 9 * (3 - level);
            let idx = (va >> shift) & 0x1ff;
            let next = match ram.words.get(&(table + idx * 8)) {
                Some(&desc) => desc & !0xfff,
                None => {
                    let next = tables + i as u64 * 0x1000;
                    ram.set(table + idx * 8, next | TABLE);
                    next
                }
            };
            table = next;
        }
        ram.set(table + ((va >> 12) & 0x1ff) * 8, pa | PAGE | 1 << 10);
    }

    #[test]
    fn mmu_off_is_identity() {
        let ram = Ram::default();
        let r = Regime::default();
        assert_eq!(r.translate(0x4008_0000, &ram), Ok(0x4008_0000));
        assert_eq!(r.strip_pac(0xdead_4008_0000), 0xdead_4008_0000);
    }

    #[test]
    fn four_k_kernel_and_user_halves() {
        let mut ram = Ram::default();
        let va1 = 0xffff_8000_8024_6e60u64;
        map_4k(&mut ram, 0x4100_0000, 0x4100_1000, va1, 0x4024_6000);
        let va0 = 0x0000_ffff_f7e0_1238u64;
        map_4k(&mut ram, 0x4200_0000, 0x4200_1000, va0, 0x4300_1000);
        let asid = 0x42u64 << 48;
        let r = regime(TCR_4K_48, 0x4200_0000 | asid, 0x4100_0000 | asid | 1);
        assert_eq!(r.translate(va1, &ram), Ok(0x4024_6e60));
        assert_eq!(r.translate(va0, &ram), Ok(0x4300_1238));
        // Neighbouring pages are not mapped.
        assert_eq!(r.translate(va1 + 0x1000, &ram), Err(WalkError::Unmapped));
        // Non-canonical: bits above the 48-bit range not all equal bit 55.
        assert_eq!(
            r.translate(0xff7f_8000_8024_6e60, &ram),
            Err(WalkError::NotInRange)
        );
        assert_eq!(
            r.translate(0x0001_0000_0000_0000, &ram),
            Err(WalkError::NotInRange)
        );
        // With TBI0 the top byte of a user address is ignored.
        let tbi = regime(TCR_4K_48 | TCR_TBI0, 0x4200_0000, 0x4100_0000);
        assert_eq!(tbi.translate(va0 | 0x5a << 56, &ram), Ok(0x4300_1238));
        // EPD0 disables the lower half.
        let epd = regime(TCR_4K_48 | TCR_EPD0, 0x4200_0000, 0x4100_0000);
        assert_eq!(epd.translate(va0, &ram), Err(WalkError::NotInRange));
    }

    #[test]
    fn guest_test_identity_map_39_bit_level_1_blocks() {
        // guest-test's own map: T0SZ 25 (level-1 start), 1 GiB blocks.
        let mut ram = Ram::default();
        let root = 0x4010_0000;
        ram.set(root + 8, 0x4000_0000 | BLOCK | 1 << 10);
        let r = regime(25 | 1 << 23 | 2 << 30, root, 0);
        assert_eq!(r.translate(0x4020_1234, &ram), Ok(0x4020_1234));
        assert_eq!(r.translate(0x0900_0000, &ram), Err(WalkError::Unmapped));
        assert_eq!(
            r.translate(0xffff_ff80_0000_0000, &ram),
            Err(WalkError::NotInRange),
            "EPD1"
        );
    }

    #[test]
    fn sixteen_k_and_sixty_four_k_granules() {
        // 16K, 48-bit VA on TTBR1 (T1SZ 16): levels 0 (one index bit)..3.
        let mut ram = Ram::default();
        let va = 0xffff_8000_1234_5678u64;
        let (l0, l1, l2, l3) = (
            0x4100_0000u64,
            0x4100_4000u64,
            0x4100_8000u64,
            0x4100_c000u64,
        );
        ram.set(l0 + ((va >> 47) & 1) * 8, l1 | TABLE);
        ram.set(l1 + ((va >> 36) & 0x7ff) * 8, l2 | TABLE);
        ram.set(l2 + ((va >> 25) & 0x7ff) * 8, l3 | TABLE);
        ram.set(l3 + ((va >> 14) & 0x7ff) * 8, 0x4444_0000 | PAGE);
        let r = regime(16 << 16 | 1 << 30, 0, l0);
        assert_eq!(r.translate(va, &ram), Ok(0x4444_0000 | (va & 0x3fff)));

        // 64K, 42-bit VA on TTBR0 (T0SZ 22): levels 2..3, then a 512 MiB
        // block at level 2.
        let mut ram = Ram::default();
        let va = 0x0000_0123_4567_89a8u64;
        let (l2, l3) = (0x4200_0000u64, 0x4201_0000u64);
        ram.set(l2 + ((va >> 29) & 0x1fff) * 8, l3 | TABLE);
        ram.set(l3 + ((va >> 16) & 0x1fff) * 8, 0x4555_0000 | PAGE);
        let r = regime(22 | 1 << 14, l2, 0);
        assert_eq!(r.translate(va, &ram), Ok(0x4555_0000 | (va & 0xffff)));
        let block_va = 0x0000_0000_2000_0010u64;
        ram.set(l2 + ((block_va >> 29) & 0x1fff) * 8, 0x6000_0000 | BLOCK);
        assert_eq!(r.translate(block_va, &ram), Ok(0x6000_0010));
        // A 64K descriptor with OA[51:48] set names memory beyond any VM.
        ram.set(l3 + ((va >> 16) & 0x1fff) * 8, 0x4555_0000 | 1 << 12 | PAGE);
        assert_eq!(r.translate(va, &ram), Err(WalkError::Unmapped));
    }

    #[test]
    fn fifty_two_bit_4k_walk_starts_at_level_minus_one() {
        // TCR.DS, T1SZ 12: 52-bit VA, five levels (-1..3).
        let mut ram = Ram::default();
        let va = 0xfff8_0000_8024_6e60u64;
        let tables = [
            0x4100_0000u64,
            0x4100_1000,
            0x4100_2000,
            0x4100_3000,
            0x4100_4000,
        ];
        let shifts = [48u32, 39, 30, 21, 12];
        for i in 0..4 {
            let bits = if i == 0 { 4 } else { 9 };
            ram.set(
                tables[i] + ((va >> shifts[i]) & ((1 << bits) - 1)) * 8,
                tables[i + 1] | TABLE,
            );
        }
        ram.set(tables[4] + ((va >> 12) & 0x1ff) * 8, 0x4024_6000 | PAGE);
        // An ASID with bits 48 and 49 set must not leak into the address.
        let r = regime(TCR_DS | 12 << 16 | 2 << 30 | 16, 0, tables[0] | 0x2f << 48);
        assert_eq!(r.translate(va, &ram), Ok(0x4024_6e60));
        // desc[9:8] are OA[51:50] with DS: beyond every VM.
        ram.set(
            tables[4] + ((va >> 12) & 0x1ff) * 8,
            0x4024_6000 | 1 << 8 | PAGE,
        );
        assert_eq!(r.translate(va, &ram), Err(WalkError::Unmapped));
    }

    #[test]
    fn hostile_tables_never_read_outside_ram() {
        let mut ram = Ram::default();
        // TTBR outside RAM.
        let r = regime(TCR_4K_48, 0x0800_0000, 0x0800_0000);
        assert_eq!(r.translate(0x1000, &ram), Err(WalkError::TableOutsideRam));
        // A table descriptor pointing at the GIC's IPA, and one far above RAM.
        ram.set(0x4100_0000, 0x0800_0000 | TABLE);
        ram.set(0x4100_0008, 0x0000_fff0_0000_0000 | TABLE);
        let r = regime(TCR_4K_48, 0x4100_0000, 0);
        assert_eq!(r.translate(0x10, &ram), Err(WalkError::TableOutsideRam));
        assert_eq!(r.translate(1 << 39, &ram), Err(WalkError::TableOutsideRam));
        // Reserved TCR values.
        assert_eq!(
            regime(3 << 14 | 16, 0, 0).translate(0x10, &ram),
            Err(WalkError::BadTcr)
        );
        assert_eq!(
            regime(2 << 30 | 60 << 16, 0, 0).translate(!0, &ram),
            Err(WalkError::BadTcr)
        );
        // 64K granule and 16-bit VAs: no level left to walk.
        assert_eq!(
            regime(48 | 1 << 14, 0x4100_0000, 0).translate(0x10, &ram),
            Err(WalkError::BadTcr)
        );
        assert_eq!(regime(48 << 16 | 3 << 30, 0, 0x4100_0000).va_bits(!0), 64);
        // Every TCR a guest can write gives an answer, never a panic.
        for tcr in (0..64u64)
            .flat_map(|tsz| (0..4u64).map(move |tg| tsz | tg << 14 | tsz << 16 | tg << 30))
        {
            for ds in [0, TCR_DS] {
                let r = regime(tcr | ds, 0x4100_0000, 0x4100_0000);
                for va in [
                    0u64,
                    0x4020_0000,
                    0xffff_8000_8000_0000,
                    !7,
                    0x00ff_0000_0000_0000,
                ] {
                    let _ = r.translate(va, &ram);
                    let _ = r.strip_pac(va);
                }
            }
        }
        // Every read the walker asked for was a descriptor of a table it
        // had reached; the fake refused those outside RAM.
        assert!(ram.reads.borrow().iter().all(|ipa| ipa % 8 == 0));
    }

    #[test]
    fn pac_is_stripped_from_return_addresses() {
        let r = regime(TCR_4K_48, 0, 0);
        assert_eq!(r.strip_pac(0x5abf_8000_8024_6e84), 0xffff_8000_8024_6e84);
        assert_eq!(r.strip_pac(0x0012_aaaa_0040_1000), 0x0000_aaaa_0040_1000);
        assert_eq!(r.strip_pac(0xffff_8000_8024_6e84), 0xffff_8000_8024_6e84);
    }

    /// A guest stack in one mapped 4K page at VA `STACK_VA`.
    fn stack_setup(frames: &[(u64, u64, u64)]) -> Ram {
        let mut ram = Ram::default();
        map_4k(&mut ram, 0x4100_0000, 0x4100_1000, STACK_VA, STACK_PA);
        map_4k(
            &mut ram,
            0x4100_0000,
            0x4100_4000,
            OTHER_STACK_VA,
            OTHER_STACK_PA,
        );
        for &(fp, caller, ret) in frames {
            let pa = if fp >> 12 == STACK_VA >> 12 {
                STACK_PA
            } else {
                OTHER_STACK_PA
            } + (fp & 0xfff);
            ram.set(pa, caller);
            ram.set(pa + 8, ret);
        }
        ram
    }
    const STACK_VA: u64 = 0xffff_8000_8400_0000;
    const STACK_PA: u64 = 0x4500_0000;
    const OTHER_STACK_VA: u64 = 0xffff_8000_8300_0000;
    const OTHER_STACK_PA: u64 = 0x4600_0000;

    fn unwind(ram: &Ram, fp: u64, max: usize) -> (Vec<u64>, Option<UnwindStop>) {
        let mem = GuestVirt {
            regime: regime(TCR_4K_48, 0, 0x4100_0000),
            mem: ram,
        };
        let mut u = GuestUnwinder::new(mem, fp, max);
        let frames = u.by_ref().collect();
        (frames, u.stop_reason())
    }

    #[test]
    fn a_normal_chain_with_pac_and_a_stack_switch() {
        let s = STACK_VA;
        let o = OTHER_STACK_VA;
        let ram = stack_setup(&[
            (
                s + 0x100,
                s + 0x140,
                0x0012_8000_8000_1004 | 1 << 55 | 0xff << 56,
            ),
            (s + 0x140, o + 0x800, 0xffff_8000_8000_2008),
            (o + 0x800, o + 0x900, 0xffff_8000_8000_300c),
            (o + 0x900, 0, 0xffff_8000_8000_4010),
        ]);
        assert_eq!(
            unwind(&ram, s + 0x100, 32),
            (
                vec![
                    0xffff_8000_8000_1004,
                    0xffff_8000_8000_2008,
                    0xffff_8000_8000_300c,
                    0xffff_8000_8000_4010
                ],
                Some(UnwindStop::End)
            )
        );
    }

    #[test]
    fn bad_chains_end_with_a_reason() {
        let s = STACK_VA;
        // A loop.
        let ram = stack_setup(&[(s + 0x100, s + 0x100, 0xffff_8000_8000_1004)]);
        assert_eq!(
            unwind(&ram, s + 0x100, 32),
            (vec![0xffff_8000_8000_1004], Some(UnwindStop::NotIncreasing))
        );
        // A two-record cycle: allowed as a stack switch twice, then cut.
        let ram = stack_setup(&[(s + 0x100, s + 0x200, 1), (s + 0x200, s + 0x100, 2)]);
        let (frames, why) = unwind(&ram, s + 0x100, 32);
        assert!(frames.len() <= 2 * (STACK_SWITCHES + 1), "{frames:?}");
        assert_eq!(why, Some(UnwindStop::NotIncreasing));
        // Unmapped caller, misaligned caller, the frame limit.
        let ram = stack_setup(&[(s + 0x100, s + 0x10_0000, 1)]);
        assert_eq!(
            unwind(&ram, s + 0x100, 32),
            (vec![1], Some(UnwindStop::Walk(WalkError::Unmapped)))
        );
        let ram = stack_setup(&[(s + 0x100, s + 0x104, 1)]);
        assert_eq!(
            unwind(&ram, s + 0x100, 32),
            (vec![1], Some(UnwindStop::Misaligned))
        );
        let frames: Vec<(u64, u64, u64)> = (0..40)
            .map(|i| (s + 0x10 * i, s + 0x10 * (i + 1), 0x100 + i))
            .collect();
        let ram = stack_setup(&frames);
        let (got, why) = unwind(&ram, s, 32);
        assert_eq!((got.len(), why), (32, Some(UnwindStop::Limit)));
        // A user-space address as fp, with the lower half unmapped.
        let ram = stack_setup(&[]);
        assert_eq!(
            unwind(&ram, 0x1000, 32),
            (vec![], Some(UnwindStop::Walk(WalkError::TableOutsideRam)))
        );
        assert_eq!(
            unwind(&ram, !7, 32).1,
            Some(UnwindStop::Walk(WalkError::NotInRange))
        );
        assert_eq!(UnwindStop::Limit.to_string(), "frame limit reached");
        assert_eq!(
            UnwindStop::Walk(WalkError::Unmapped).to_string(),
            "frame record: address not mapped by the guest"
        );
    }
}
