//! A small GICv3 driver, set up the way Linux sets it up for
//! `irqchip.gicv3_pseudo_nmi=1` on a GIC with one security state
//! (GICD_CTLR.DS = 1): affinity routing, everything in Group 1, EOImode 0,
//! binary point 0 (every implemented priority bit is a preemption bit),
//! and interrupts masked by priority ([`PMR_OFF`]) rather than only by
//! PSTATE.I.
//!
//! The distributor and the redistributor region come from the device
//! tree's `arm,gic-v3` node; a CPU's redistributor frame is the one whose
//! GICR_TYPER affinity equals the CPU's MPIDR.
//!
//! Priorities, as Linux 6.12 uses them with DS = 1 (see
//! `include/linux/irqchip/arm-gic-v3-prio.h`), all multiples of 0x08
//! because QEMU implements 5 priority bits:
//!
//! | what | priority |
//! |---|---|
//! | pseudo-NMI | [`PRIO_NMI`] 0x80 |
//! | a normal interrupt | [`PRIO_IRQ`] 0xc0 |
//! | PMR "interrupts off" (only NMIs pass) | [`PMR_OFF`] 0xc0 |
//! | PMR "interrupts on" | [`PMR_ON`] 0xe0 |
//!
//! A normal interrupt has the same priority as the "off" mask, so the mask
//! blocks it: the GIC signals an interrupt only if its priority is strictly
//! higher (numerically lower) than the PMR.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::dt::Range;
use crate::topology::MAX_CPUS;

/// Priority of a pseudo-NMI.
pub const PRIO_NMI: u8 = 0x80;
/// Priority of a normal interrupt (Linux's GICV3_PRIO_IRQ).
pub const PRIO_IRQ: u8 = 0xc0;
/// Priority mask that lets every configured interrupt through.
pub const PMR_ON: u8 = 0xe0;
/// Priority mask of Linux's `local_irq_disable()` with pseudo-NMIs: only
/// NMIs pass.
pub const PMR_OFF: u8 = 0xc0;

/// Distributor registers.
pub const GICD_CTLR: u64 = 0x0000;
pub const GICD_TYPER: u64 = 0x0004;
pub const GICD_PIDR2: u64 = 0xffe8;
/// GICD_CTLR bits (one security state).
pub const CTLR_ENABLE_GRP1: u32 = 1 << 1;
pub const CTLR_ARE: u32 = 1 << 4;
pub const CTLR_DS: u32 = 1 << 6;
const CTLR_RWP: u32 = 1 << 31;

/// Redistributor registers (RD_base frame).
const GICR_FRAME: u64 = 0x20000;
const GICR_CTLR: u64 = 0x0000;
pub const GICR_TYPER: u64 = 0x0008;
const GICR_WAKER: u64 = 0x0014;
pub const GICR_PIDR2: u64 = 0xffe8;
const GICR_CTLR_RWP: u32 = 1 << 3;
/// GICR_TYPER.Last: the last frame of the region.
pub const TYPER_LAST: u64 = 1 << 4;
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// The SGI_base frame follows RD_base.
const SGI_BASE: u64 = 0x10000;

/// Offsets shared by the distributor and the SGI_base frame (for INTIDs
/// 0-31 the redistributor's copy is the one that counts).
const IGROUPR: u64 = 0x0080;
const ISENABLER: u64 = 0x0100;
const ICENABLER: u64 = 0x0180;
const ISPENDR: u64 = 0x0200;
const ICPENDR: u64 = 0x0280;
const ISACTIVER: u64 = 0x0300;
const ICACTIVER: u64 = 0x0380;
const IPRIORITYR: u64 = 0x0400;

/// ICC_CTLR_EL1 fields.
const ICC_CTLR_EOIMODE: u64 = 1 << 1;
const ICC_CTLR_PRIBITS_SHIFT: u64 = 8;

/// The number of private interrupts (SGIs and PPIs) per CPU.
pub const PRIVATE: u32 = 32;

// The accessors use one plain LDR/STR with a base register each: a
// compiler's post-indexed or pair access has no valid syndrome (ISV = 0),
// which a hypervisor cannot emulate (nmivisor injects an external abort,
// as the architecture allows).

/// A 32-bit MMIO read of a GIC register.
pub fn rd32(addr: u64) -> u32 {
    let v: u32;
    // SAFETY: addresses are GIC registers from the device tree, mapped as
    // Device memory by the identity map.
    unsafe {
        asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, preserves_flags))
    };
    v
}

/// A 32-bit MMIO write of a GIC register.
pub fn wr32(addr: u64, v: u32) {
    // SAFETY: as in `rd32`.
    unsafe {
        asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack, preserves_flags))
    };
}

/// A 64-bit MMIO read (GICR_TYPER, as Linux reads it).
pub fn rd64(addr: u64) -> u64 {
    let v: u64;
    // SAFETY: as in `rd32`.
    unsafe {
        asm!("ldr {v}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, preserves_flags))
    };
    v
}

/// A byte MMIO read (IPRIORITYR).
pub fn rd8(addr: u64) -> u8 {
    let v: u32;
    // SAFETY: as in `rd32`; IPRIORITYR is byte-accessible.
    unsafe {
        asm!("ldrb {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, preserves_flags))
    };
    v as u8
}

/// A byte MMIO write (IPRIORITYR).
pub fn wr8(addr: u64, v: u8) {
    // SAFETY: as in `rd8`.
    unsafe {
        asm!("strb {v:w}, [{a}]", a = in(reg) addr, v = in(reg) v as u32, options(nostack, preserves_flags))
    };
}

/// The affinity of an MPIDR in GICR_TYPER's layout (Aff3.Aff2.Aff1.Aff0).
pub fn typer_affinity(mpidr: u64) -> u64 {
    (mpidr & 0xff_0000_0000) >> 8 | (mpidr & 0xff_ffff)
}

/// Each CPU's redistributor frame once [`Gic::init_this_cpu`] found it.
static RD: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// The GIC the device tree describes.
#[derive(Clone, Copy, Debug)]
pub struct Gic {
    pub gicd: u64,
    pub gicr: Range,
}

/// The device tree's GICv3, or why there is none.
pub fn get() -> Result<Gic, &'static str> {
    let p = crate::dt::platform();
    match (p.gicd, p.gicr) {
        (Some(d), Some(r)) => Ok(Gic {
            gicd: d.base,
            gicr: r,
        }),
        _ => Err("no arm,gic-v3 node with two reg ranges in the device tree"),
    }
}

impl Gic {
    /// Affinity routing and Group 1 on at the distributor. Refuses a GIC
    /// with two security states (DS = 0): the priorities would be shifted.
    pub fn init_distributor(&self) -> Result<(), &'static str> {
        let ctlr = rd32(self.gicd + GICD_CTLR);
        if ctlr & CTLR_DS == 0 {
            return Err("GICD_CTLR.DS is 0 (two security states): not handled");
        }
        let want = CTLR_ARE | CTLR_ENABLE_GRP1;
        if ctlr & want != want {
            wr32(self.gicd + GICD_CTLR, ctlr | want);
            if !self.wait_distributor() {
                return Err("GICD_CTLR.RWP stuck");
            }
            if rd32(self.gicd + GICD_CTLR) & want != want {
                return Err("GICD_CTLR.ARE/EnableGrp1 do not stick");
            }
        }
        Ok(())
    }

    /// Waits for GICD_CTLR.RWP to clear (after CTLR or ICENABLER writes).
    pub fn wait_distributor(&self) -> bool {
        crate::cpu::wait_ms(100, || rd32(self.gicd + GICD_CTLR) & CTLR_RWP == 0)
    }

    /// The redistributor frames, in order, up to the one marked Last or
    /// the end of the region: (RD_base, GICR_TYPER).
    pub fn frames(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut frame = self.gicr.base;
        let mut done = false;
        core::iter::from_fn(move || {
            if done || frame + GICR_FRAME > self.gicr.end() {
                return None;
            }
            let typer = rd64(frame + GICR_TYPER);
            let here = frame;
            done = typer & TYPER_LAST != 0;
            frame += GICR_FRAME;
            Some((here, typer))
        })
    }

    /// The redistributor frame of the CPU with MPIDR `mpidr`.
    pub fn redistributor(&self, mpidr: u64) -> Option<u64> {
        let aff = typer_affinity(mpidr);
        self.frames()
            .find(|&(_, typer)| typer >> 32 == aff)
            .map(|(frame, _)| frame)
    }

    /// Sets up the calling CPU: wakes its redistributor; disables,
    /// un-pends and deactivates its SGIs and PPIs, puts them in Group 1 at
    /// [`PRIO_IRQ`]; then the CPU interface: system registers on, no
    /// active priorities left over, PMR = [`PMR_ON`], BPR1 = 0, EOImode 0,
    /// Group 1 enabled. PSTATE.I is left as it is (set, outside cases).
    /// Returns the redistributor frame.
    pub fn init_this_cpu(&self) -> Result<u64, &'static str> {
        let me = crate::cpu::index();
        let rd = self
            .redistributor(crate::cpu::mpidr())
            .ok_or("no redistributor frame has this CPU's affinity")?;
        RD[me].store(rd, Ordering::Relaxed);
        let waker = rd32(rd + GICR_WAKER);
        if waker & WAKER_PROCESSOR_SLEEP != 0 {
            wr32(rd + GICR_WAKER, waker & !WAKER_PROCESSOR_SLEEP);
        }
        if !crate::cpu::wait_ms(100, || rd32(rd + GICR_WAKER) & WAKER_CHILDREN_ASLEEP == 0) {
            return Err("GICR_WAKER.ChildrenAsleep stuck");
        }
        let sgi = rd + SGI_BASE;
        wr32(sgi + ICENABLER, u32::MAX);
        if !wait_redistributor(rd) {
            return Err("GICR_CTLR.RWP stuck");
        }
        wr32(sgi + ICPENDR, u32::MAX);
        wr32(sgi + ICACTIVER, u32::MAX);
        wr32(sgi + IGROUPR, u32::MAX);
        for intid in 0..PRIVATE {
            wr8(sgi + IPRIORITYR + intid as u64, PRIO_IRQ);
        }
        sre_enable();
        // Nothing may stay active from an earlier owner of this interface.
        // SAFETY: this CPU's own Group 1 active priorities; no interrupt is
        // being handled here (callers run with PSTATE.I set).
        unsafe {
            asm!(
                "msr icc_ap1r0_el1, xzr",
                options(nomem, nostack, preserves_flags)
            )
        };
        set_pmr(PMR_ON);
        let ctlr = icc_ctlr() & !ICC_CTLR_EOIMODE;
        // SAFETY: this CPU's interface: binary point 0 and EOImode 0,
        // then Group 1 on.
        unsafe {
            asm!(
                "msr icc_bpr1_el1, xzr",
                "msr icc_ctlr_el1, {ctlr}",
                "msr icc_igrpen1_el1, {one}",
                "isb",
                ctlr = in(reg) ctlr,
                one = in(reg) 1u64,
                options(nomem, nostack, preserves_flags)
            );
        }
        Ok(rd)
    }

    /// Interrupt `intid` as this CPU sees it: INTIDs below 32 are in this
    /// CPU's redistributor ([`Gic::init_this_cpu`] must have run), the
    /// others in the distributor.
    pub fn irq(&self, intid: u32) -> Irq {
        if intid < PRIVATE {
            let rd = RD[crate::cpu::index()].load(Ordering::Relaxed);
            assert!(rd != 0, "redistributor not set up on this CPU");
            Irq {
                base: rd + SGI_BASE,
                intid,
                wait: Wait::Redistributor(rd),
            }
        } else {
            Irq {
                base: self.gicd,
                intid,
                wait: Wait::Distributor(self.gicd),
            }
        }
    }
}

/// Waits for GICR_CTLR.RWP to clear (after GICR_ICENABLER0 writes).
fn wait_redistributor(rd: u64) -> bool {
    crate::cpu::wait_ms(100, || rd32(rd + GICR_CTLR) & GICR_CTLR_RWP == 0)
}

#[derive(Clone, Copy, Debug)]
enum Wait {
    Distributor(u64),
    Redistributor(u64),
}

/// One interrupt's configuration registers.
#[derive(Clone, Copy, Debug)]
pub struct Irq {
    /// GICD, or the SGI_base frame of a redistributor.
    base: u64,
    pub intid: u32,
    wait: Wait,
}

impl Irq {
    /// The word of a one-bit-per-interrupt register and this interrupt's bit.
    fn bit(&self, reg: u64) -> (u64, u32) {
        (
            self.base + reg + 4 * (self.intid / 32) as u64,
            1 << (self.intid % 32),
        )
    }

    fn set_bit(&self, reg: u64) {
        let (addr, bit) = self.bit(reg);
        wr32(addr, bit);
    }

    fn test_bit(&self, reg: u64) -> bool {
        let (addr, bit) = self.bit(reg);
        rd32(addr) & bit != 0
    }

    /// Group 1 (`true`) or Group 0, by read-modify-write of IGROUPR.
    pub fn set_group1(&self, group1: bool) {
        let (addr, bit) = self.bit(IGROUPR);
        let v = rd32(addr);
        wr32(addr, if group1 { v | bit } else { v & !bit });
    }

    pub fn is_group1(&self) -> bool {
        self.test_bit(IGROUPR)
    }

    pub fn enable(&self) {
        self.set_bit(ISENABLER);
    }

    /// Disables, and waits until the GIC says it took effect (RWP).
    pub fn disable(&self) {
        self.set_bit(ICENABLER);
        let _ = match self.wait {
            Wait::Distributor(d) => {
                crate::cpu::wait_ms(100, || rd32(d + GICD_CTLR) & CTLR_RWP == 0)
            }
            Wait::Redistributor(rd) => wait_redistributor(rd),
        };
    }

    /// The bit as ISENABLER and as ICENABLER read it.
    pub fn enabled(&self) -> (bool, bool) {
        (self.test_bit(ISENABLER), self.test_bit(ICENABLER))
    }

    pub fn set_pending(&self) {
        self.set_bit(ISPENDR);
    }

    pub fn clear_pending(&self) {
        self.set_bit(ICPENDR);
    }

    /// The bit as ISPENDR and as ICPENDR read it.
    pub fn pending(&self) -> (bool, bool) {
        (self.test_bit(ISPENDR), self.test_bit(ICPENDR))
    }

    pub fn set_active(&self) {
        self.set_bit(ISACTIVER);
    }

    pub fn clear_active(&self) {
        self.set_bit(ICACTIVER);
    }

    /// The bit as ISACTIVER and as ICACTIVER read it.
    pub fn active(&self) -> (bool, bool) {
        (self.test_bit(ISACTIVER), self.test_bit(ICACTIVER))
    }

    /// The address of this interrupt's IPRIORITYR byte.
    pub fn priority_addr(&self) -> u64 {
        self.base + IPRIORITYR + self.intid as u64
    }

    /// Writes the priority with a byte access, as Linux does for NMIs.
    pub fn set_priority(&self, prio: u8) {
        wr8(self.priority_addr(), prio);
    }

    /// Reads the priority with a byte access.
    pub fn priority(&self) -> u8 {
        rd8(self.priority_addr())
    }

    /// The IPRIORITYR word holding this interrupt's byte (32-bit access).
    pub fn priority_word(&self) -> u32 {
        rd32(self.priority_addr() & !3)
    }
}

/// ICC_SRE_EL1.SRE = 1: the system register interface (idempotent).
pub fn sre_enable() {
    // SAFETY: this CPU's GIC system register enable; ICC_* need it.
    unsafe {
        asm!(
            "mrs {t}, icc_sre_el1",
            "orr {t}, {t}, #1",
            "msr icc_sre_el1, {t}",
            "isb",
            t = out(reg) _,
            options(nomem, nostack, preserves_flags)
        );
    }
}

/// ICC_CTLR_EL1.
pub fn icc_ctlr() -> u64 {
    let v: u64;
    // SAFETY: reads a system register.
    unsafe { asm!("mrs {}, icc_ctlr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// The number of priority bits the CPU interface implements
/// (ICC_CTLR_EL1.PRIbits + 1).
pub fn priority_bits() -> u32 {
    ((icc_ctlr() >> ICC_CTLR_PRIBITS_SHIFT) & 7) as u32 + 1
}

/// The bits of a priority byte that a GIC with `bits` priority bits keeps.
pub fn priority_mask(bits: u32) -> u8 {
    (0xff00u16 >> bits.clamp(1, 8)) as u8
}

/// ICC_BPR1_EL1.
pub fn bpr1() -> u64 {
    let v: u64;
    // SAFETY: reads a system register.
    unsafe { asm!("mrs {}, icc_bpr1_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Writes ICC_PMR_EL1. Like Linux's `pmr_sync()`, a DSB makes an
/// unmasking write visible to the GIC before the CPU goes on.
pub fn set_pmr(pmr: u8) {
    // SAFETY: this CPU's priority mask.
    unsafe {
        asm!(
            "msr icc_pmr_el1, {}",
            "isb",
            "dsb sy",
            in(reg) pmr as u64,
            options(nostack, preserves_flags)
        )
    };
}

/// ICC_PMR_EL1.
pub fn pmr() -> u8 {
    let v: u64;
    // SAFETY: reads a system register.
    unsafe { asm!("mrs {}, icc_pmr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v as u8
}

/// ICC_RPR_EL1: the running priority (0xff when nothing is active).
pub fn rpr() -> u8 {
    let v: u64;
    // SAFETY: reads a system register.
    unsafe { asm!("mrs {}, icc_rpr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v as u8
}

/// Reads ICC_IAR1_EL1: acknowledges the highest-priority pending Group 1
/// interrupt and returns its INTID ([`SPURIOUS`]: none).
pub fn acknowledge() -> u32 {
    let iar: u64;
    // SAFETY: activates the interrupt it returns; the caller ends it.
    unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) iar, options(nomem, nostack, preserves_flags)) };
    (iar & 0xff_ffff) as u32
}

/// ICC_EOIR1_EL1 (EOImode 0: priority drop and deactivation).
pub fn end_of_interrupt(intid: u32) {
    // SAFETY: ends an interrupt this CPU acknowledged.
    unsafe {
        asm!("msr icc_eoir1_el1, {}", "isb", in(reg) intid as u64, options(nomem, nostack, preserves_flags))
    };
}

/// Whether an INTID from [`acknowledge`] is special (1020-1023).
pub fn is_special(intid: u32) -> bool {
    (1020..=1023).contains(&intid)
}

/// ICC_SGI1R_EL1 IRM: to every CPU but the sender.
const SGI1R_IRM: u64 = 1 << 40;

/// The ICC_SGI1R_EL1 value that sends SGI `intid` to the CPU with
/// affinity `mpidr` (range selector RS = Aff0 / 16).
pub fn sgi1r_value(intid: u32, mpidr: u64) -> u64 {
    let aff0 = mpidr & 0xff;
    let aff1 = (mpidr >> 8) & 0xff;
    let aff2 = (mpidr >> 16) & 0xff;
    let aff3 = (mpidr >> 32) & 0xff;
    (1u64 << (aff0 % 16))
        | aff1 << 16
        | ((intid as u64) & 0xf) << 24
        | aff2 << 32
        | (aff0 / 16) << 44
        | aff3 << 48
}

fn write_sgi1r(v: u64) {
    // SAFETY: generates an SGI. The DSB first orders earlier stores before
    // it, so the receiver sees what the sender wrote (as Linux does).
    unsafe {
        asm!("dsb ishst", "msr icc_sgi1r_el1, {}", "isb", in(reg) v, options(nostack, preserves_flags))
    };
}

/// Sends SGI `intid` (Group 1) to the CPU with affinity `mpidr`.
pub fn send_sgi(intid: u32, mpidr: u64) {
    write_sgi1r(sgi1r_value(intid, mpidr));
}

/// Sends SGI `intid` to every CPU except this one (IRM = 1).
pub fn send_sgi_to_others(intid: u32) {
    write_sgi1r(SGI1R_IRM | ((intid as u64) & 0xf) << 24);
}
