//! Distributor (GICD) register emulation (IHI 0069 §12.9).
//!
//! The virtual distributor has one Security state (GICD_CTLR.DS=1) and
//! affinity routing always on (ARE=1), like QEMU's and KVM's. With ARE=1 the
//! GICD bank registers for SGIs and PPIs (IGROUPR0, ISENABLER0, ...,
//! IPRIORITYR0-7, ICFGR0-1) are RAZ/WI: those live in each redistributor.

use super::irq::{NO_TARGET, SPI_BASE};
use super::regs::{gicd, word, Access, BitReg, WriteResult, IIDR_VALUE, PIDR2_VALUE};
use super::sgi::{Affinity, TargetSet};
use super::state::{Vgic, CTLR_ENABLE_GRP0, CTLR_ENABLE_GRP1};
use arm_gic::gicv3::registers::GicdCtlr;

/// GICD_CTLR.ARE in the single-Security-state view, bit 4: arm-gic names
/// it ARE_S, its name in the Secure view (Linux calls it ARE_NS). RAO/WI.
const CTLR_ARE: u32 = GicdCtlr::ARE_S.bits();
/// GICD_CTLR.DS: one Security state. RAO/WI.
const CTLR_DS: u32 = GicdCtlr::DS.bits();

/// GICD_IROUTER<n>.Interrupt_Routing_Mode [31]: 1-of-N.
const IROUTER_IRM: u64 = 1 << 31;
/// The GICD_IROUTER bits kept: IRM and Aff2..Aff0. Aff3 [39:32] is RES0
/// because GICD_TYPER.A3V=0 (every vCPU has Aff3 = 0).
const IROUTER_MASK: u64 = IROUTER_IRM | 0xff_ffff;

/// IDbits: 10 INTID bits (0-1023), reported as IDbits = 9.
const TYPER_IDBITS: u64 = 9;

/// The range of 32-bit registers `base..base + count * 4` holding `offset`:
/// the register index.
fn index_in(offset: u64, base: u64, count: u64) -> Option<u64> {
    (offset >= base && offset < base + count * 4).then(|| (offset - base) / 4)
}

/// The one-bit bank registers and their GICD bases.
const BIT_BANKS: [(u64, BitReg); 7] = [
    (gicd::IGROUPR, BitReg::Group),
    (gicd::ISENABLER, BitReg::SetEnable),
    (gicd::ICENABLER, BitReg::ClearEnable),
    (gicd::ISPENDR, BitReg::SetPending),
    (gicd::ICPENDR, BitReg::ClearPending),
    (gicd::ISACTIVER, BitReg::SetActive),
    (gicd::ICACTIVER, BitReg::ClearActive),
];

impl Vgic {
    /// GICD_TYPER: ITLinesNumber from the SPI count, CPUNumber (vCPUs - 1,
    /// at most 7: the field only matters without affinity routing),
    /// SecurityExtn=0, no MBIS, no LPIs, IDbits=9, A3V=0, No1N=0 (1-of-N
    /// routing supported), RSS=0 (SGI targets Aff0 0-15).
    pub(crate) fn gicd_typer(&self) -> u64 {
        let it_lines = (self.nr_spis as u64 + 32).div_ceil(32).saturating_sub(1) & 0x1f;
        let cpus = (self.nr_vcpus.saturating_sub(1) as u64).min(7);
        it_lines | cpus << 5 | TYPER_IDBITS << 19
    }

    fn gicd_ctlr(&self) -> u64 {
        u64::from(self.ctlr | CTLR_ARE | CTLR_DS)
    }

    /// Reads the distributor register at `offset` (`size` bytes) for
    /// `vcpu`. ARE=1 means no GICD register is banked, so `vcpu` does not
    /// change the answer; it is there for the glue's logging symmetry.
    pub fn dist_read(&self, vcpu: usize, offset: u64, size: u8) -> Access {
        let _ = vcpu;
        let w = word(offset, size);
        match offset {
            gicd::CTLR if w => Access::Value(self.gicd_ctlr()),
            gicd::TYPER if w => Access::Value(self.gicd_typer()),
            gicd::IIDR if w => Access::Value(IIDR_VALUE),
            // GICD_TYPER2: no vPE/vSGI features (GICv4.1). STATUSR: no
            // errors to report.
            gicd::TYPER2 | gicd::STATUSR if w => Access::Value(0),
            gicd::PIDR2 if w => Access::Value(PIDR2_VALUE),
            o if w && (gicd::ID_FIRST..gicd::SIZE).contains(&o) => Access::Value(0),
            o => self.dist_read_bank(o, size),
        }
    }

    fn dist_read_bank(&self, offset: u64, size: u8) -> Access {
        let w = word(offset, size);
        for (base, reg) in BIT_BANKS {
            if let Some(n) = index_in(offset, base, 32) {
                if !w {
                    return Access::Unhandled;
                }
                // n == 0 is the SGI/PPI bank: RAZ/WI with ARE=1.
                return Access::Value(if n == 0 {
                    0
                } else {
                    self.read_bits(0, reg, 32 * n as u32)
                });
            }
        }
        if let Some(n) = index_in(offset, gicd::IPRIORITYR, 255) {
            let _ = n;
            // Byte or word accesses (IHI 0069 §12.1.3).
            if !(size == 1 || w) {
                return Access::Unhandled;
            }
            let intid = (offset - gicd::IPRIORITYR) as u32;
            if intid < SPI_BASE {
                return Access::Value(0);
            }
            return Access::Value(self.read_priorities(0, intid, size));
        }
        if index_in(offset, gicd::ITARGETSR, 255).is_some() {
            // RES0 with affinity routing: RAZ/WI, byte or word.
            return if size == 1 || w {
                Access::Value(0)
            } else {
                Access::Unhandled
            };
        }
        if let Some(n) = index_in(offset, gicd::ICFGR, 64) {
            if !w {
                return Access::Unhandled;
            }
            // ICFGR0-1 (SGIs/PPIs): RAZ/WI with ARE=1.
            return Access::Value(if n < 2 {
                0
            } else {
                self.read_config(0, 16 * n as u32)
            });
        }
        // IGRPMODR: RAZ/WI when DS=1 (IHI 0069 GICD_IGRPMODR): with one
        // Security state there is no Secure Group 1 to select.
        // NSACR: RAZ/WI when DS=1 as well.
        if index_in(offset, gicd::IGRPMODR, 32).is_some()
            || index_in(offset, gicd::NSACR, 64).is_some()
        {
            return if w {
                Access::Value(0)
            } else {
                Access::Unhandled
            };
        }
        if let Some(spi) = self.irouter_index(offset, size) {
            return match spi {
                Some((i, shift)) => {
                    let v = self.irouter.get(i).copied().unwrap_or(0) >> shift;
                    Access::Value(if size == 4 { v & 0xffff_ffff } else { v })
                }
                None => Access::Value(0),
            };
        }
        Access::Unhandled
    }

    /// For an access to GICD_IROUTER<n> (n >= 32): `Some(Some((spi index,
    /// shift)))` for an implemented SPI, `Some(None)` for an SPI beyond
    /// ITLinesNumber (RAZ/WI), `None` if `offset`/`size` is no IROUTER
    /// access. 64-bit accesses, or 32-bit halves (IHI 0069 §12.1.3).
    fn irouter_index(&self, offset: u64, size: u8) -> Option<Option<(usize, u32)>> {
        let end = gicd::IROUTER_SPI + 8 * 988;
        if offset < gicd::IROUTER_SPI || offset >= end {
            return None;
        }
        let rel = offset - gicd::IROUTER_SPI;
        let shift = match (size, rel % 8) {
            (8, 0) | (4, 0) => 0,
            (4, 4) => 32,
            _ => return None,
        };
        let i = (rel / 8) as usize;
        Some((i < self.nr_spis).then_some((i, shift)))
    }

    /// Writes the distributor register at `offset`.
    pub fn dist_write(&mut self, vcpu: usize, offset: u64, size: u8, value: u64) -> WriteResult {
        let _ = vcpu;
        let w = word(offset, size);
        match offset {
            gicd::CTLR if w => {
                // EnableGrp0/EnableGrp1 are the only writable bits; ARE and
                // DS are RAO/WI, RWP reads 0 (writes take effect at once).
                self.ctlr = value as u32 & (CTLR_ENABLE_GRP0 | CTLR_ENABLE_GRP1);
                let mut kicks = TargetSet::EMPTY;
                for v in 0..self.nr_vcpus {
                    if self.has_deliverable(v) {
                        kicks.insert(v);
                    }
                }
                WriteResult::kicks(kicks)
            }
            gicd::TYPER | gicd::IIDR | gicd::TYPER2 | gicd::STATUSR | gicd::PIDR2 if w => {
                // Read-only (STATUSR: nothing to clear).
                WriteResult::HANDLED
            }
            o if w && (gicd::ID_FIRST..gicd::SIZE).contains(&o) => WriteResult::HANDLED,
            o => self.dist_write_bank(o, size, value),
        }
    }

    fn dist_write_bank(&mut self, offset: u64, size: u8, value: u64) -> WriteResult {
        let w = word(offset, size);
        for (base, reg) in BIT_BANKS {
            if let Some(n) = index_in(offset, base, 32) {
                if !w {
                    return WriteResult::UNHANDLED;
                }
                if n == 0 {
                    return WriteResult::HANDLED;
                }
                return WriteResult::kicks(self.write_bits(0, reg, 32 * n as u32, value));
            }
        }
        if index_in(offset, gicd::IPRIORITYR, 255).is_some() {
            if !(size == 1 || w) {
                return WriteResult::UNHANDLED;
            }
            let intid = (offset - gicd::IPRIORITYR) as u32;
            if intid < SPI_BASE {
                return WriteResult::HANDLED;
            }
            return WriteResult::kicks(self.write_priorities(0, intid, size, value));
        }
        if index_in(offset, gicd::ITARGETSR, 255).is_some() {
            return if size == 1 || w {
                WriteResult::HANDLED
            } else {
                WriteResult::UNHANDLED
            };
        }
        if let Some(n) = index_in(offset, gicd::ICFGR, 64) {
            if !w {
                return WriteResult::UNHANDLED;
            }
            if n < 2 {
                return WriteResult::HANDLED;
            }
            return WriteResult::kicks(self.write_config(0, 16 * n as u32, value));
        }
        if index_in(offset, gicd::IGRPMODR, 32).is_some()
            || index_in(offset, gicd::NSACR, 64).is_some()
        {
            return if w {
                WriteResult::HANDLED
            } else {
                WriteResult::UNHANDLED
            };
        }
        if let Some(spi) = self.irouter_index(offset, size) {
            let Some((i, shift)) = spi else {
                return WriteResult::HANDLED;
            };
            let old = self.irouter.get(i).copied().unwrap_or(0);
            let new = if size == 8 {
                value
            } else {
                let keep = !(0xffff_ffffu64 << shift);
                (old & keep) | ((value & 0xffff_ffff) << shift)
            };
            return WriteResult::kicks(self.set_irouter(i, new));
        }
        WriteResult::UNHANDLED
    }

    /// Stores GICD_IROUTER for SPI index `i` and re-targets the SPI.
    ///
    /// - IRM=1 (1-of-N): the GIC may pick any participating PE; we pick
    ///   vCPU 0, which always exists and participates.
    /// - IRM=0 with an affinity no vCPU has: the value is kept (it reads
    ///   back) and the SPI is delivered nowhere, as a GIC does not forward
    ///   to a PE that does not exist; rewriting IROUTER recovers.
    ///
    /// An SPI that is active or held in a vCPU's LRs stays with that vCPU
    /// until it is done (IHI 0069: a change of routing takes effect for the
    /// next activation); then it follows the new route.
    fn set_irouter(&mut self, i: usize, value: u64) -> TargetSet {
        let value = value & IROUTER_MASK;
        let target = if value & IROUTER_IRM != 0 {
            if self.nr_vcpus > 0 {
                0
            } else {
                NO_TARGET
            }
        } else {
            let want = Affinity::of(value);
            self.mpidrs
                .iter()
                .position(|&m| Affinity::of(m) == Affinity { aff3: 0, ..want })
                .unwrap_or(NO_TARGET)
        };
        let mut kicks = TargetSet::EMPTY;
        if let (Some(r), Some(irq)) = (self.irouter.get_mut(i), self.spis.get_mut(i)) {
            *r = value;
            irq.target = target;
        }
        if let Some(k) = self.kick_if_busy(0, SPI_BASE + i as u32) {
            kicks.insert(k);
        }
        kicks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vgic::state::Vgic;

    fn vgic() -> Vgic {
        Vgic::new(4, 64, 5)
    }

    fn rd(v: &Vgic, off: u64, size: u8) -> u64 {
        match v.dist_read(0, off, size) {
            Access::Value(x) => x,
            Access::Unhandled => panic!("unhandled read at {off:#x}/{size}"),
        }
    }

    fn wr(v: &mut Vgic, off: u64, size: u8, val: u64) -> WriteResult {
        let r = v.dist_write(0, off, size, val);
        assert!(!r.unhandled, "unhandled write at {off:#x}/{size}");
        r
    }

    #[test]
    fn ctlr_has_ds_and_are_and_writable_enables() {
        let mut v = vgic();
        assert_eq!(rd(&v, 0, 4), 0x50);
        wr(&mut v, 0, 4, 0xffff_ffff);
        assert_eq!(rd(&v, 0, 4), 0x53);
        wr(&mut v, 0, 4, 0);
        assert_eq!(rd(&v, 0, 4), 0x50, "ARE and DS are RAO/WI, RWP reads 0");
    }

    #[test]
    fn typer_iidr_pidr2() {
        let v = vgic();
        let t = rd(&v, 4, 4);
        assert_eq!(t & 0x1f, 2, "64 SPIs + 32 private = 3 blocks");
        assert_eq!((t >> 5) & 7, 3, "CPUNumber = vCPUs - 1");
        assert_eq!((t >> 19) & 0x1f, 9, "IDbits");
        assert_eq!(t & (1 << 10), 0, "SecurityExtn");
        assert_eq!(
            t & (1 << 16 | 1 << 17 | 1 << 24 | 1 << 25 | 1 << 26),
            0,
            "MBIS LPIS A3V No1N RSS"
        );
        assert_eq!(rd(&v, 8, 4), IIDR_VALUE);
        assert_eq!(rd(&v, 0xffe8, 4) >> 4 & 0xf, 3);
        assert_eq!(Vgic::new(16, 988, 5).gicd_typer() & 0x1f, 31);
        assert_eq!((Vgic::new(16, 64, 5).gicd_typer() >> 5) & 7, 7);
    }

    #[test]
    fn enable_set_and_clear() {
        let mut v = vgic();
        wr(&mut v, 0x104, 4, 1 << 3 | 1 << 31); // SPIs 35 and 63
        assert_eq!(rd(&v, 0x104, 4), 1 << 3 | 1 << 31);
        assert_eq!(
            rd(&v, 0x184, 4),
            1 << 3 | 1 << 31,
            "ICENABLER reads the same"
        );
        wr(&mut v, 0x184, 4, 1 << 3);
        assert_eq!(rd(&v, 0x104, 4), 1 << 31);
        assert!(v.irq(0, 63).unwrap().enabled);
        assert!(!v.irq(0, 35).unwrap().enabled);
    }

    #[test]
    fn private_banks_are_raz_wi_with_are() {
        let mut v = vgic();
        wr(&mut v, 0x100, 4, 0xffff_ffff);
        assert_eq!(rd(&v, 0x100, 4), 0);
        assert!(!v.irq(0, 5).unwrap().enabled);
        wr(&mut v, 0x400, 1, 0x80);
        assert_eq!(rd(&v, 0x400, 1), 0);
        assert_eq!(rd(&v, 0xc04, 4), 0);
        assert_eq!(rd(&v, 0x80, 4), 0);
    }

    #[test]
    fn pending_and_active_set_clear() {
        let mut v = vgic();
        wr(&mut v, 0x204, 4, 1);
        assert_eq!(rd(&v, 0x204, 4), 1);
        assert_eq!(rd(&v, 0x284, 4), 1);
        wr(&mut v, 0x284, 4, 1);
        assert_eq!(rd(&v, 0x204, 4), 0);
        wr(&mut v, 0x308, 4, 1 << 4); // SPI 68
        assert_eq!(rd(&v, 0x308, 4), 1 << 4);
        assert!(v.irq(0, 68).unwrap().active);
        wr(&mut v, 0x388, 4, 1 << 4);
        assert_eq!(rd(&v, 0x388, 4), 0);
    }

    #[test]
    fn icpendr_keeps_a_high_level_line_pending() {
        let mut v = vgic();
        v.set_level(0, 40, true);
        wr(&mut v, 0x284, 4, 1 << 8);
        assert_eq!(rd(&v, 0x204, 4), 1 << 8);
        v.set_level(0, 40, false);
        assert_eq!(rd(&v, 0x204, 4), 0);
    }

    #[test]
    fn group_register() {
        let mut v = vgic();
        wr(&mut v, 0x84, 4, 0xf0f0_f0f0);
        assert_eq!(rd(&v, 0x84, 4), 0xf0f0_f0f0);
        wr(&mut v, 0x84, 4, 0x1);
        assert_eq!(rd(&v, 0x84, 4), 0x1);
        assert!(v.irq(0, 32).unwrap().group1);
    }

    #[test]
    fn priority_bytes_and_words_masked_to_five_bits() {
        let mut v = vgic();
        wr(&mut v, 0x400 + 33, 1, 0xff);
        assert_eq!(rd(&v, 0x400 + 33, 1), 0xf8);
        assert_eq!(rd(&v, 0x420, 4), 0xf800);
        wr(&mut v, 0x424, 4, 0x8182_a0a7);
        assert_eq!(rd(&v, 0x424, 4), 0x8080_a0a0);
        assert_eq!(rd(&v, 0x427, 1), 0x80);
        let mut v4 = Vgic::new(1, 32, 4);
        v4.dist_write(0, 0x420, 1, 0xff);
        assert_eq!(v4.dist_read(0, 0x420, 1), Access::Value(0xf0));
        // Halfword and misaligned words are not allowed.
        assert_eq!(v.dist_read(0, 0x420, 2), Access::Unhandled);
        assert_eq!(v.dist_read(0, 0x421, 4), Access::Unhandled);
        assert!(v.dist_write(0, 0x420, 2, 0).unhandled);
    }

    #[test]
    fn icfgr_programs_spis_only() {
        let mut v = vgic();
        assert_eq!(rd(&v, 0xc08, 4), 0, "SPIs reset level-sensitive");
        wr(&mut v, 0xc08, 4, 0xffff_ffff);
        assert_eq!(rd(&v, 0xc08, 4), 0xaaaa_aaaa, "bit 2n is RES0");
        assert!(v.irq(0, 32).unwrap().edge);
        wr(&mut v, 0xc00, 4, 0);
        assert_eq!(rd(&v, 0xc00, 4), 0);
    }

    #[test]
    fn igrpmodr_nsacr_itargetsr_raz_wi() {
        let mut v = vgic();
        wr(&mut v, 0xd04, 4, !0);
        assert_eq!(rd(&v, 0xd04, 4), 0);
        wr(&mut v, 0xe08, 4, !0);
        assert_eq!(rd(&v, 0xe08, 4), 0);
        wr(&mut v, 0x820, 1, 0xff);
        assert_eq!(rd(&v, 0x820, 1), 0);
    }

    #[test]
    fn irouter_routes_by_affinity() {
        let mut v = vgic();
        let off = 0x6100 + 8 * 5; // SPI 37
        assert_eq!(rd(&v, off, 8), 0);
        assert_eq!(v.irq(0, 37).unwrap().target, 0);
        wr(&mut v, off, 8, 2);
        assert_eq!(rd(&v, off, 8), 2);
        assert_eq!(v.irq(0, 37).unwrap().target, 2);
        // Unimplemented bits (Aff3 with A3V=0, bits 30:24) are dropped.
        wr(&mut v, off, 8, 0xff_7f00_0003);
        assert_eq!(rd(&v, off, 8), 3);
        // 32-bit halves.
        wr(&mut v, off, 4, 1);
        assert_eq!(rd(&v, off, 4), 1);
        assert_eq!(rd(&v, off + 4, 4), 0);
        wr(&mut v, off + 4, 4, 0xff);
        assert_eq!(rd(&v, off, 8), 1);
        assert_eq!(v.irq(0, 37).unwrap().target, 1);
        // IRM=1: vCPU 0.
        wr(&mut v, off, 8, 1 << 31 | 3);
        assert_eq!(rd(&v, off, 8), 1 << 31 | 3);
        assert_eq!(v.irq(0, 37).unwrap().target, 0);
        // No such vCPU: kept, delivered nowhere.
        wr(&mut v, off, 8, 0x0100);
        assert_eq!(rd(&v, off, 8), 0x100);
        assert_eq!(v.irq(0, 37).unwrap().target, NO_TARGET);
        assert_eq!(v.set_pending(0, 37), None);
        // Beyond the implemented SPIs: RAZ/WI. Below SPI 32: reserved.
        wr(&mut v, 0x6100 + 8 * 100, 8, 1);
        assert_eq!(rd(&v, 0x6100 + 8 * 100, 8), 0);
        assert_eq!(v.dist_read(0, 0x6000, 8), Access::Unhandled);
        assert_eq!(v.dist_read(0, off + 2, 4), Access::Unhandled);
        assert_eq!(v.dist_read(0, off, 2), Access::Unhandled);
    }

    #[test]
    fn irouter_change_kicks_the_new_target() {
        let mut v = vgic();
        wr(&mut v, 0, 4, 3);
        wr(&mut v, 0x104, 4, 1);
        v.set_pending(0, 32);
        let r = wr(&mut v, 0x6100, 8, 3);
        assert!(r.kicks.contains(3));
    }

    #[test]
    fn widths_and_unknown_offsets() {
        let mut v = vgic();
        assert_eq!(v.dist_read(0, 0, 8), Access::Unhandled);
        assert_eq!(v.dist_read(0, 0, 1), Access::Unhandled);
        assert_eq!(v.dist_read(0, 0x104, 8), Access::Unhandled);
        assert_eq!(v.dist_read(0, 0x102, 4), Access::Unhandled);
        assert_eq!(v.dist_read(0, 0x20, 4), Access::Unhandled);
        assert_eq!(v.dist_read(0, 0x10000, 4), Access::Unhandled);
        assert_eq!(v.dist_read(0, u64::MAX, 4), Access::Unhandled);
        assert_eq!(v.dist_read(0, u64::MAX - 3, 4), Access::Unhandled);
        assert!(v.dist_write(0, 0x104, 8, !0).unhandled);
        assert!(v.dist_write(0, u64::MAX, 1, !0).unhandled);
        assert!(
            v.dist_write(0, 0xf00, 4, 0).unhandled,
            "GICD_SGIR is GICv2-only"
        );
        assert_eq!(rd(&v, 0x104, 4), 0);
        // Every offset and width answers without panicking.
        for off in (0..0x10010u64).step_by(1) {
            for size in [1u8, 2, 4, 8, 3, 0] {
                let _ = v.dist_read(1, off, size);
                let _ = v.dist_write(1, off, size, 0);
            }
        }
    }

    #[test]
    fn ctlr_enable_kicks_vcpus_with_pending_work() {
        let mut v = vgic();
        wr(&mut v, 0x84, 4, 1);
        wr(&mut v, 0x104, 4, 1);
        assert_eq!(v.set_pending(0, 32), None, "group disabled");
        let r = wr(&mut v, 0, 4, 2);
        assert_eq!(r.kicks, TargetSet(1));
    }
}
