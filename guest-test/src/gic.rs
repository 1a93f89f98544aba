//! Just enough GICv3 for one wake-up source: a PPI of the calling CPU,
//! enabled at the distributor, its redistributor and the CPU interface,
//! while PSTATE.I stays set so it is never taken.
//!
//! WFI (and a WFI-based PSCI standby) only ends when the GIC signals an
//! interrupt to the CPU; a timer whose interrupt the GIC does not forward
//! never wakes it. Natively QEMU implements CPU_SUSPEND standby with WFI,
//! so the guest arms the virtual timer *and* this path.

use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};

use crate::dt::Range;

const GICD_CTLR: u64 = 0x0000;
const CTLR_RWP: u32 = 1 << 31;
const CTLR_ENABLE_GRP1: u32 = 1 << 1;
const CTLR_ARE: u32 = 1 << 4;
const CTLR_DS: u32 = 1 << 6;

const GICR_FRAME: u64 = 0x20000;
const GICR_WAKER: u64 = 0x0014;
const GICR_TYPER: u64 = 0x0008;
const TYPER_LAST: u64 = 1 << 4;
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
const SGI_BASE: u64 = 0x10000;
const GICR_IGROUPR0: u64 = SGI_BASE + 0x0080;
const GICR_ISENABLER0: u64 = SGI_BASE + 0x0100;
const GICR_ICENABLER0: u64 = SGI_BASE + 0x0180;
const GICR_IPRIORITYR: u64 = SGI_BASE + 0x0400;

/// Priority of the wake-up PPI, and the PMR that lets it through.
const PRIORITY: u8 = 0x80;
const PMR: u64 = 0xf0;

fn rd32(addr: u64) -> u32 {
    // SAFETY: addresses are GIC registers from the device tree, mapped as
    // Device memory by the identity map.
    unsafe { read_volatile(addr as *const u32) }
}

fn wr32(addr: u64, v: u32) {
    // SAFETY: as in `rd32`.
    unsafe { write_volatile(addr as *mut u32, v) }
}

fn rd64(addr: u64) -> u64 {
    // SAFETY: as in `rd32`.
    unsafe { read_volatile(addr as *const u64) }
}

/// The redistributor frame of the CPU with MPIDR affinity `mpidr`.
fn redistributor(gicr: Range, mpidr: u64) -> Option<u64> {
    let aff = (mpidr & 0xff_0000_0000) >> 8 | (mpidr & 0xff_ffff);
    let mut frame = gicr.base;
    while frame + GICR_FRAME <= gicr.end() {
        let typer = rd64(frame + GICR_TYPER);
        if typer >> 32 == aff {
            return Some(frame);
        }
        if typer & TYPER_LAST != 0 {
            break;
        }
        frame += GICR_FRAME;
    }
    None
}

/// Enables `intid` (a PPI) as a Group 1 interrupt that can wake this CPU.
/// Returns what [`disable_wakeup`] needs, or why it cannot.
pub fn enable_wakeup(gicd: Range, gicr: Range, intid: u32) -> Result<u64, &'static str> {
    let rd = redistributor(gicr, crate::cpu::mpidr()).ok_or("no redistributor for this CPU")?;
    // SAFETY: GIC system register interface of this CPU; SRE first so the
    // other ICC_* registers are accessible.
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
    let ctlr = rd32(gicd.base + GICD_CTLR);
    if ctlr & CTLR_DS == 0 {
        return Err("GICD_CTLR.DS is 0 (two security states): not handled");
    }
    if ctlr & (CTLR_ARE | CTLR_ENABLE_GRP1) != CTLR_ARE | CTLR_ENABLE_GRP1 {
        wr32(gicd.base + GICD_CTLR, ctlr | CTLR_ARE | CTLR_ENABLE_GRP1);
        if !crate::cpu::wait_ms(100, || rd32(gicd.base + GICD_CTLR) & CTLR_RWP == 0) {
            return Err("GICD_CTLR.RWP stuck");
        }
    }
    let waker = rd32(rd + GICR_WAKER);
    wr32(rd + GICR_WAKER, waker & !WAKER_PROCESSOR_SLEEP);
    if !crate::cpu::wait_ms(100, || rd32(rd + GICR_WAKER) & WAKER_CHILDREN_ASLEEP == 0) {
        return Err("GICR_WAKER.ChildrenAsleep stuck");
    }
    let bit = 1u32 << intid;
    wr32(rd + GICR_IGROUPR0, rd32(rd + GICR_IGROUPR0) | bit);
    // SAFETY: one byte of this CPU's IPRIORITYR (byte accesses are allowed).
    unsafe { write_volatile((rd + GICR_IPRIORITYR + intid as u64) as *mut u8, PRIORITY) };
    wr32(rd + GICR_ISENABLER0, bit);
    // SAFETY: this CPU's priority mask and Group 1 enable.
    unsafe {
        asm!(
            "msr icc_pmr_el1, {pmr}",
            "msr icc_igrpen1_el1, {one}",
            "isb",
            pmr = in(reg) PMR,
            one = in(reg) 1u64,
            options(nomem, nostack, preserves_flags)
        );
    }
    Ok(rd)
}

/// Acknowledges the highest-priority pending Group 1 interrupt without
/// taking it (PSTATE.I stays set): returns its INTID (1023: none).
pub fn acknowledge() -> u32 {
    let iar: u64;
    // SAFETY: reads ICC_IAR1_EL1, which activates the interrupt it returns.
    unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) iar, options(nomem, nostack, preserves_flags)) };
    (iar & 0xff_ffff) as u32
}

/// Ends an interrupt returned by [`acknowledge`] (EOImode 0: priority drop
/// and deactivation).
pub fn end_of_interrupt(intid: u32) {
    // SAFETY: writes ICC_EOIR1_EL1 for an interrupt this CPU acknowledged.
    unsafe {
        asm!("msr icc_eoir1_el1, {}", "isb", in(reg) intid as u64, options(nomem, nostack, preserves_flags))
    };
}

/// INTIDs 1020-1023 are special (1023: nothing pending).
pub fn is_special(intid: u32) -> bool {
    (1020..=1023).contains(&intid)
}

/// Undoes [`enable_wakeup`] for `intid` (redistributor `rd`).
pub fn disable_wakeup(rd: u64, intid: u32) {
    wr32(rd + GICR_ICENABLER0, 1 << intid);
    // SAFETY: this CPU's Group 1 enable.
    unsafe {
        asm!(
            "msr icc_igrpen1_el1, xzr",
            "isb",
            options(nomem, nostack, preserves_flags)
        )
    };
}
