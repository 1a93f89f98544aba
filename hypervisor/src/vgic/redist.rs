//! Redistributor (GICR) register emulation: the RD frame (IHI 0069 §12.10)
//! and the SGI frame at +64 KiB (§12.11), one frame pair per vCPU.
//!
//! No LPIs (GICR_TYPER.PLPIS=0), so GICR_CTLR has nothing writable and the
//! LPI registers (PROPBASER, PENDBASER, INVLPIR, SYNCR, ...) are reported as
//! unhandled. The extended PPI registers do not exist (PPInum=0).

use super::regs::{gicr, word, Access, BitReg, WriteResult, IIDR_VALUE, PIDR2_VALUE};
use super::sgi::Affinity;
use super::state::Vgic;
use arm_gic::gicv3::registers::Waker;

/// GICR_WAKER.ProcessorSleep (arm-gic's Waker).
const WAKER_PROCESSOR_SLEEP: u64 = Waker::PROCESSOR_SLEEP.bits() as u64;
/// GICR_WAKER.ChildrenAsleep (arm-gic's Waker).
const WAKER_CHILDREN_ASLEEP: u64 = Waker::CHILDREN_ASLEEP.bits() as u64;
/// GICR_TYPER.Last (arm-gic's GicrTyper names no such bit).
const TYPER_LAST: u64 = 1 << 4;

/// The SGI-frame one-bit registers (only register 0 of each exists here).
const BIT_REGS: [(u64, BitReg); 7] = [
    (gicr::IGROUPR0, BitReg::Group),
    (gicr::ISENABLER0, BitReg::SetEnable),
    (gicr::ICENABLER0, BitReg::ClearEnable),
    (gicr::ISPENDR0, BitReg::SetPending),
    (gicr::ICPENDR0, BitReg::ClearPending),
    (gicr::ISACTIVER0, BitReg::SetActive),
    (gicr::ICACTIVER0, BitReg::ClearActive),
];

impl Vgic {
    /// GICR_TYPER of `vcpu`'s redistributor: Affinity_Value [63:32] =
    /// its MPIDR's Aff3.Aff2.Aff1.Aff0, Processor_Number [23:8] = its index,
    /// Last [4] on the last vCPU, no PLPIS/VLPIS/DirectLPI, PPInum=0.
    pub(crate) fn gicr_typer(&self, vcpu: usize) -> u64 {
        let a = Affinity::of(self.mpidrs.get(vcpu).copied().unwrap_or(0));
        let aff = u64::from(a.aff3) << 24
            | u64::from(a.aff2) << 16
            | u64::from(a.aff1) << 8
            | u64::from(a.aff0);
        let mut t = aff << 32 | ((vcpu as u64) & 0xffff) << 8;
        if vcpu + 1 == self.nr_vcpus {
            t |= TYPER_LAST;
        }
        t
    }

    /// Reads `frame_vcpu`'s redistributor register at `offset` within its
    /// 128 KiB frame pair, on behalf of vCPU `caller` (any vCPU may read any
    /// redistributor; `caller` does not change the answer).
    pub fn redist_read(&self, caller: usize, frame_vcpu: usize, offset: u64, size: u8) -> Access {
        let _ = caller;
        let Some(v) = self.vcpus.get(frame_vcpu) else {
            return Access::Unhandled;
        };
        let w = word(offset, size);
        match offset {
            // No LPIs: EnableLPIs is RES0, RWP/UWP read 0, DPG* unsupported.
            gicr::CTLR if w => Access::Value(0),
            gicr::IIDR if w => Access::Value(IIDR_VALUE),
            gicr::TYPER if size == 8 => Access::Value(self.gicr_typer(frame_vcpu)),
            gicr::TYPER if w => Access::Value(self.gicr_typer(frame_vcpu) & 0xffff_ffff),
            o if o == gicr::TYPER + 4 && w => Access::Value(self.gicr_typer(frame_vcpu) >> 32),
            gicr::STATUSR if w => Access::Value(0),
            gicr::WAKER if w => {
                let sleep = if v.processor_sleep {
                    WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP
                } else {
                    0
                };
                Access::Value(sleep)
            }
            gicr::PIDR2 if w => Access::Value(PIDR2_VALUE),
            o if w && (gicr::ID_FIRST..gicr::SGI_BASE).contains(&o) => Access::Value(0),
            o => self.redist_read_sgi(frame_vcpu, o, size),
        }
    }

    fn redist_read_sgi(&self, vcpu: usize, offset: u64, size: u8) -> Access {
        let w = word(offset, size);
        for (reg_off, reg) in BIT_REGS {
            if offset == reg_off {
                return if w {
                    Access::Value(self.read_bits(vcpu, reg, 0))
                } else {
                    Access::Unhandled
                };
            }
        }
        if (gicr::IPRIORITYR0..gicr::IPRIORITYR0 + 32).contains(&offset) {
            // Byte accesses are what Linux uses for its NMI SGI priorities.
            if !(size == 1 || w) {
                return Access::Unhandled;
            }
            return Access::Value(self.read_priorities(
                vcpu,
                (offset - gicr::IPRIORITYR0) as u32,
                size,
            ));
        }
        if w && (offset == gicr::ICFGR0 || offset == gicr::ICFGR0 + 4) {
            let first = if offset == gicr::ICFGR0 { 0 } else { 16 };
            return Access::Value(self.read_config(vcpu, first));
        }
        // IGRPMODR0 and NSACR: RAZ/WI with DS=1.
        if w && (offset == gicr::IGRPMODR0 || offset == gicr::NSACR) {
            return Access::Value(0);
        }
        Access::Unhandled
    }

    /// Writes `frame_vcpu`'s redistributor register at `offset` on behalf of
    /// `caller`. The kicks name the vCPUs whose LRs must be refreshed
    /// (usually `frame_vcpu`).
    pub fn redist_write(
        &mut self,
        caller: usize,
        frame_vcpu: usize,
        offset: u64,
        size: u8,
        value: u64,
    ) -> WriteResult {
        let _ = caller;
        if frame_vcpu >= self.nr_vcpus {
            return WriteResult::UNHANDLED;
        }
        let w = word(offset, size);
        match offset {
            gicr::WAKER if w => {
                // ProcessorSleep is writable; ChildrenAsleep follows it at
                // once (there is nothing to quiesce). Bit 0 and Quiescent
                // are IMPLEMENTATION DEFINED: RAZ/WI.
                if let Some(v) = self.vcpus.get_mut(frame_vcpu) {
                    v.processor_sleep = value & WAKER_PROCESSOR_SLEEP != 0;
                }
                WriteResult::HANDLED
            }
            gicr::CTLR | gicr::IIDR | gicr::STATUSR | gicr::PIDR2 if w => WriteResult::HANDLED,
            gicr::TYPER if size == 8 || w => WriteResult::HANDLED,
            o if o == gicr::TYPER + 4 && w => WriteResult::HANDLED,
            o if w && (gicr::ID_FIRST..gicr::SGI_BASE).contains(&o) => WriteResult::HANDLED,
            o => self.redist_write_sgi(frame_vcpu, o, size, value),
        }
    }

    fn redist_write_sgi(&mut self, vcpu: usize, offset: u64, size: u8, value: u64) -> WriteResult {
        let w = word(offset, size);
        for (reg_off, reg) in BIT_REGS {
            if offset == reg_off {
                return if w {
                    WriteResult::kicks(self.write_bits(vcpu, reg, 0, value))
                } else {
                    WriteResult::UNHANDLED
                };
            }
        }
        if (gicr::IPRIORITYR0..gicr::IPRIORITYR0 + 32).contains(&offset) {
            if !(size == 1 || w) {
                return WriteResult::UNHANDLED;
            }
            let intid = (offset - gicr::IPRIORITYR0) as u32;
            return WriteResult::kicks(self.write_priorities(vcpu, intid, size, value));
        }
        // ICFGR0 (SGIs, always edge) and ICFGR1 (PPIs, level here) are
        // read-only; IGRPMODR0 and NSACR are RAZ/WI with DS=1.
        if w && [gicr::ICFGR0, gicr::ICFGR0 + 4, gicr::IGRPMODR0, gicr::NSACR].contains(&offset) {
            return WriteResult::HANDLED;
        }
        WriteResult::UNHANDLED
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vgic::state::Vgic;

    const SGI: u64 = 0x10000;

    fn rd(v: &Vgic, frame: usize, off: u64, size: u8) -> u64 {
        match v.redist_read(0, frame, off, size) {
            Access::Value(x) => x,
            Access::Unhandled => panic!("unhandled read at {off:#x}/{size}"),
        }
    }

    fn wr(v: &mut Vgic, frame: usize, off: u64, size: u8, val: u64) -> WriteResult {
        let r = v.redist_write(0, frame, off, size, val);
        assert!(!r.unhandled, "unhandled write at {off:#x}/{size}");
        r
    }

    #[test]
    fn typer_affinity_number_and_last() {
        let v = Vgic::new(18, 32, 5);
        let t = rd(&v, 17, 0x8, 8);
        assert_eq!(t >> 32, 0x0101, "vCPU 17: Aff1=1, Aff0=1");
        assert_eq!((t >> 8) & 0xffff, 17);
        assert_ne!(t & TYPER_LAST, 0);
        assert_eq!(t & 1, 0, "PLPIS");
        assert_eq!(rd(&v, 3, 0x8, 8) & TYPER_LAST, 0);
        assert_eq!(rd(&v, 3, 0x8, 4), 3 << 8);
        assert_eq!(rd(&v, 3, 0xc, 4), 3);
        assert_eq!(v.redist_read(0, 3, 0xa, 4), Access::Unhandled);
        assert_eq!(
            v.redist_read(0, 18, 0x8, 8),
            Access::Unhandled,
            "no such frame"
        );
        assert!(v.clone().redist_write(0, 18, 0x14, 4, 0).unhandled);
    }

    #[test]
    fn custom_mpidrs_reach_typer() {
        let v = Vgic::with_mpidrs(&[0x100, 0x1_0000_0203], 32, 5);
        assert_eq!(rd(&v, 0, 0x8, 8) >> 32, 0x100);
        assert_eq!(rd(&v, 1, 0xc, 4), 0x0100_0203);
    }

    #[test]
    fn waker_handshake() {
        let mut v = Vgic::new(2, 32, 5);
        assert_eq!(rd(&v, 1, 0x14, 4), 0b110, "asleep at reset");
        wr(&mut v, 1, 0x14, 4, 0);
        assert_eq!(rd(&v, 1, 0x14, 4), 0, "awake, children awake");
        assert_eq!(rd(&v, 0, 0x14, 4), 0b110, "per vCPU");
        wr(&mut v, 1, 0x14, 4, 0b111 | 1 << 31);
        assert_eq!(rd(&v, 1, 0x14, 4), 0b110);
    }

    #[test]
    fn ctlr_iidr_pidr2() {
        let mut v = Vgic::new(1, 32, 5);
        wr(&mut v, 0, 0, 4, !0);
        assert_eq!(rd(&v, 0, 0, 4), 0);
        assert_eq!(rd(&v, 0, 4, 4), IIDR_VALUE);
        assert_eq!(rd(&v, 0, 0xffe8, 4), 0x30);
    }

    #[test]
    fn sgi_frame_banks_are_per_vcpu() {
        let mut v = Vgic::new(2, 32, 5);
        wr(&mut v, 1, SGI + 0x80, 4, 0xffff_ffff);
        wr(&mut v, 1, SGI + 0x100, 4, 1 << 3 | 1 << 27);
        assert_eq!(rd(&v, 1, SGI + 0x100, 4), 1 << 3 | 1 << 27);
        assert_eq!(rd(&v, 0, SGI + 0x100, 4), 0);
        assert_eq!(rd(&v, 1, SGI + 0x80, 4), 0xffff_ffff);
        wr(&mut v, 1, SGI + 0x180, 4, 1 << 3);
        assert_eq!(rd(&v, 1, SGI + 0x100, 4), 1 << 27);
        // Pending, and the kick goes to the frame's vCPU.
        assert_eq!(v.redist_read(0, 1, SGI, 4), Access::Unhandled, "reserved");
        let mut v2 = v.clone();
        v2.dist_write(0, 0, 4, 2); // EnableGrp1
        let r = wr(&mut v2, 1, SGI + 0x200, 4, 1 << 27);
        assert!(r.kicks.contains(1));
        assert_eq!(rd(&v2, 1, SGI + 0x200, 4), 1 << 27);
        wr(&mut v2, 1, SGI + 0x280, 4, 1 << 27);
        assert_eq!(rd(&v2, 1, SGI + 0x280, 4), 0);
        wr(&mut v2, 1, SGI + 0x300, 4, 1 << 2);
        assert_eq!(rd(&v2, 1, SGI + 0x380, 4), 1 << 2);
        wr(&mut v2, 1, SGI + 0x380, 4, 1 << 2);
        assert_eq!(rd(&v2, 1, SGI + 0x300, 4), 0);
    }

    #[test]
    fn priority_byte_access_for_nmi_sgis() {
        let mut v = Vgic::new(2, 32, 5);
        // Linux writes IPI 3/6/7 priorities one byte at a time.
        for sgi in [3u64, 6, 7] {
            wr(&mut v, 1, SGI + 0x400 + sgi, 1, 0x80);
        }
        wr(&mut v, 1, SGI + 0x400 + 27, 1, 0xa7);
        assert_eq!(rd(&v, 1, SGI + 0x400 + 3, 1), 0x80);
        assert_eq!(rd(&v, 1, SGI + 0x404, 4), 0x8080_0000);
        assert_eq!(rd(&v, 1, SGI + 0x400 + 27, 1), 0xa0);
        assert_eq!(rd(&v, 0, SGI + 0x404, 4), 0);
        wr(&mut v, 0, SGI + 0x41c, 4, 0xffff_ffff);
        assert_eq!(rd(&v, 0, SGI + 0x41c, 4), 0xf8f8_f8f8);
        assert_eq!(v.redist_read(0, 0, SGI + 0x402, 2), Access::Unhandled);
        assert_eq!(v.redist_read(0, 0, SGI + 0x420, 4), Access::Unhandled);
    }

    #[test]
    fn icfgr_is_read_only() {
        let mut v = Vgic::new(1, 32, 5);
        assert_eq!(rd(&v, 0, SGI + 0xc00, 4), 0xaaaa_aaaa, "SGIs edge");
        assert_eq!(rd(&v, 0, SGI + 0xc04, 4), 0, "PPIs level");
        wr(&mut v, 0, SGI + 0xc00, 4, 0);
        wr(&mut v, 0, SGI + 0xc04, 4, !0);
        assert_eq!(rd(&v, 0, SGI + 0xc00, 4), 0xaaaa_aaaa);
        assert_eq!(rd(&v, 0, SGI + 0xc04, 4), 0);
        wr(&mut v, 0, SGI + 0xd00, 4, !0);
        assert_eq!(rd(&v, 0, SGI + 0xd00, 4), 0);
    }

    #[test]
    fn widths_and_unknown_offsets() {
        let mut v = Vgic::new(2, 32, 5);
        assert_eq!(v.redist_read(0, 0, 0x14, 8), Access::Unhandled);
        assert_eq!(v.redist_read(0, 0, SGI + 0x100, 8), Access::Unhandled);
        assert_eq!(
            v.redist_read(0, 0, SGI + 0x104, 4),
            Access::Unhandled,
            "no extended PPIs"
        );
        assert_eq!(v.redist_read(0, 0, 0x70, 8), Access::Unhandled, "no LPIs");
        assert!(v.redist_write(0, 0, 0x70, 8, 0).unhandled);
        assert!(v.redist_write(0, 0, SGI + 0x100, 2, 1).unhandled);
        assert_eq!(v.redist_read(0, 0, 0x20000, 4), Access::Unhandled);
        for off in 0..0x20010u64 {
            for size in [0u8, 1, 2, 3, 4, 8] {
                let _ = v.redist_read(1, 0, off, size);
                let _ = v.redist_write(1, 0, off, size, 0);
            }
        }
        let _ = v.redist_read(0, usize::MAX, u64::MAX, 8);
        let _ = v.redist_write(0, usize::MAX, u64::MAX, 8, 0);
    }
}
