//! `gic-registers`: the GICv3 registers Linux relies on, read back.
//!
//! - GICD_CTLR has DS (one security state) and, after setup, ARE and
//!   EnableGrp1; GICD_TYPER.ITLinesNumber > 0; PIDR2.ArchRev = 3 (GICv3)
//!   in the distributor and in this CPU's redistributor.
//! - The redistributor frames, walked to GICR_TYPER.Last, are one per CPU
//!   of the device tree, each with GICR_TYPER affinity = that CPU's MPIDR;
//!   Last is set on the final frame only.
//! - For an SGI and a PPI (this CPU's redistributor) and an SPI (the
//!   distributor): the set/clear-enable, -pending and -active bits read
//!   the same through both registers of a pair, with the interrupt
//!   disabled so it is never taken; priorities written and read with byte
//!   accesses keep the implemented bits only, show in the right byte of
//!   the 32-bit word and leave the neighbouring bytes alone. The
//!   implemented bits are what 0xff reads back as: 4 to 8 high bits, at
//!   least as many as the CPU interface has (ICC_CTLR_EL1.PRIbits). A
//!   5-bit vGIC reads 0xf8; QEMU's own distributor and redistributors
//!   keep all 8 bits (0xff) although its CPU interface has 5.
//!
//! Everything is restored afterwards. One line (`guest-test: gic: ...`)
//! reports what the GIC looks like.

use super::{irq_setup, Outcome};
use crate::gic::{self, Gic, Irq};
use crate::{cpu, dt, fail, println};

/// The private interrupts checked: an SGI and a PPI with no device behind
/// it on QEMU `virt`.
const SGI: u32 = 5;
const PPI: u32 = 20;

pub fn gic_registers() -> Outcome {
    let g = match irq_setup() {
        Ok(g) => g,
        Err(why) => fail!("GIC setup failed: {why}"),
    };
    let ctlr = gic::rd32(g.gicd + gic::GICD_CTLR);
    let typer = gic::rd32(g.gicd + gic::GICD_TYPER);
    let it_lines = typer & 0x1f;
    let bits = gic::priority_bits();
    println!(
        "guest-test: gic: GICD_CTLR {ctlr:#x} (DS {}, ARE {}), GICD_TYPER {typer:#x} \
         (ITLinesNumber {it_lines}), {bits} priority bits, BPR1 reads {}",
        (ctlr & gic::CTLR_DS != 0) as u8,
        (ctlr & gic::CTLR_ARE != 0) as u8,
        gic::bpr1()
    );
    let want = gic::CTLR_DS | gic::CTLR_ARE | gic::CTLR_ENABLE_GRP1;
    if ctlr & want != want {
        fail!("GICD_CTLR = {ctlr:#x}, want DS, ARE and EnableGrp1 ({want:#x}) set");
    }
    if it_lines == 0 {
        fail!("GICD_TYPER = {typer:#x}: ITLinesNumber 0, no SPIs");
    }
    if !(4..=8).contains(&bits) {
        fail!("ICC_CTLR_EL1.PRIbits says {bits} priority bits, want 4 to 8");
    }
    let pidr2 = gic::rd32(g.gicd + gic::GICD_PIDR2);
    if (pidr2 >> 4) & 0xf != 3 {
        fail!(
            "GICD_PIDR2 = {pidr2:#x}: ArchRev {}, want 3",
            (pidr2 >> 4) & 0xf
        );
    }
    frames(&g)?;
    let rd = g.redistributor(cpu::mpidr()).unwrap_or(0);
    let pidr2 = gic::rd32(rd + gic::GICR_PIDR2);
    if (pidr2 >> 4) & 0xf != 3 {
        fail!(
            "GICR_PIDR2 = {pidr2:#x}: ArchRev {}, want 3",
            (pidr2 >> 4) & 0xf
        );
    }
    // The last SPI the distributor implements, below the special INTIDs.
    let spi = (32 * (it_lines + 1)).min(1020) - 1;
    let mut masks = [0u8; 3];
    for ((kind, intid), mask) in [("SGI", SGI), ("PPI", PPI), ("SPI", spi)]
        .into_iter()
        .zip(&mut masks)
    {
        let irq = g.irq(intid);
        let saved = Saved::take(&irq);
        let result = bits_and_priority(&irq, bits);
        saved.restore(&irq);
        match result {
            Ok(m) => *mask = m,
            Err(why) => fail!("{kind} {intid}: {}", why.as_str()),
        }
    }
    println!(
        "guest-test: gic: priority byte 0xff reads {:#04x} (SGI {SGI}), {:#04x} (PPI {PPI}), {:#04x} (SPI {spi})",
        masks[0], masks[1], masks[2]
    );
    Ok(None)
}

/// The redistributor frames against the device tree's CPUs.
fn frames(g: &Gic) -> Result<(), super::Reason> {
    let cpus = dt::platform().cpus;
    let mut seen = [false; crate::topology::MAX_CPUS];
    let mut count = 0;
    let mut last = None;
    for (frame, typer) in g.frames() {
        let aff = typer >> 32;
        let Some(c) = (0..cpus.count()).find(|&c| gic::typer_affinity(cpus.mpidr(c)) == aff) else {
            if cpus.ignored > 0 {
                continue;
            }
            fail!("redistributor {frame:#x}: GICR_TYPER {typer:#x}, affinity {aff:#x} is no CPU's MPIDR");
        };
        if seen[c] {
            fail!("redistributors {frame:#x} and an earlier one both have affinity {aff:#x}");
        }
        seen[c] = true;
        count += 1;
        last = Some((frame, typer));
    }
    if let Some(c) = (0..cpus.count()).find(|&c| !seen[c]) {
        fail!(
            "no redistributor frame (walked to GICR_TYPER.Last) has cpu {c}'s affinity {:#x}",
            cpus.mpidr(c)
        );
    }
    let Some((frame, typer)) = last else {
        fail!("no redistributor frames");
    };
    if cpus.ignored == 0 && typer & gic::TYPER_LAST == 0 {
        fail!("the last CPU's redistributor {frame:#x} lacks GICR_TYPER.Last ({typer:#x})");
    }
    if count != cpus.count() && cpus.ignored == 0 {
        fail!("{count} redistributor frames for {} CPUs", cpus.count());
    }
    Ok(())
}

/// An interrupt's state, to put back.
struct Saved {
    enabled: bool,
    pending: bool,
    active: bool,
    group1: bool,
    priority: u8,
}

impl Saved {
    fn take(irq: &Irq) -> Saved {
        Saved {
            enabled: irq.enabled().0,
            pending: irq.pending().0,
            active: irq.active().0,
            group1: irq.is_group1(),
            priority: irq.priority(),
        }
    }

    fn restore(&self, irq: &Irq) {
        irq.disable();
        irq.set_group1(self.group1);
        irq.set_priority(self.priority);
        if self.active {
            irq.set_active();
        } else {
            irq.clear_active();
        }
        if self.pending {
            irq.set_pending();
        } else {
            irq.clear_pending();
        }
        if self.enabled {
            irq.enable();
        }
    }
}

type Reason = crate::line::Line<120>;

macro_rules! check {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err(crate::line::format(format_args!($($arg)*)));
        }
    };
}

/// The bit pairs and the priority byte of `irq` (PSTATE.I is set and the
/// interrupt stays disabled while it is pending or active).
fn bits_and_priority(irq: &Irq, bits: u32) -> Result<u8, Reason> {
    irq.set_group1(true);
    check!(irq.is_group1(), "IGROUPR bit does not stick");
    irq.disable();
    check!(
        irq.enabled() == (false, false),
        "enabled after ICENABLER: (ISENABLER, ICENABLER) = {:?}",
        irq.enabled()
    );
    irq.enable();
    check!(
        irq.enabled() == (true, true),
        "ISENABLER write: (ISENABLER, ICENABLER) = {:?}, want both set",
        irq.enabled()
    );
    irq.disable();
    check!(
        irq.enabled() == (false, false),
        "ICENABLER write: (ISENABLER, ICENABLER) = {:?}, want both clear",
        irq.enabled()
    );

    irq.clear_pending();
    irq.set_pending();
    check!(
        irq.pending() == (true, true),
        "ISPENDR write: (ISPENDR, ICPENDR) = {:?}, want both set",
        irq.pending()
    );
    irq.clear_pending();
    check!(
        irq.pending() == (false, false),
        "ICPENDR write: (ISPENDR, ICPENDR) = {:?}, want both clear",
        irq.pending()
    );

    irq.clear_active();
    irq.set_active();
    check!(
        irq.active() == (true, true),
        "ISACTIVER write: (ISACTIVER, ICACTIVER) = {:?}, want both set",
        irq.active()
    );
    irq.clear_active();
    check!(
        irq.active() == (false, false),
        "ICACTIVER write: (ISACTIVER, ICACTIVER) = {:?}, want both clear",
        irq.active()
    );

    // The implemented bits: the byte that 0xff reads back as (Linux's
    // GICv2 driver probes the same way). The distributor may keep more
    // bits than the CPU interface (QEMU's keeps all 8), never fewer.
    irq.set_priority(0xff);
    let mask = irq.priority();
    let cpu_mask = gic::priority_mask(bits);
    check!(
        mask.leading_ones() >= 4 && mask.leading_ones() + mask.trailing_zeros() == 8,
        "priority byte write 0xff reads back {mask:#04x}: not 4 to 8 high bits"
    );
    check!(
        mask & cpu_mask == cpu_mask,
        "priority byte write 0xff reads back {mask:#04x}: fewer bits than the CPU interface's {bits} ({cpu_mask:#04x})"
    );
    let lane = 8 * (irq.intid % 4);
    let word_before = irq.priority_word();
    for value in [0xff, 0x80, 0xa8, 0x08, 0x00, 0x87] {
        irq.set_priority(value);
        let byte = irq.priority();
        let word = irq.priority_word();
        check!(
            byte == value & mask,
            "priority byte write {value:#04x} reads back {byte:#04x}, want {:#04x} (0xff reads {mask:#04x})",
            value & mask
        );
        check!(
            (word >> lane) as u8 == byte,
            "priority {byte:#04x} (byte read) but {:#04x} in the IPRIORITYR word {word:#010x}",
            (word >> lane) as u8
        );
        let others = !(0xffu32 << lane);
        check!(
            word & others == word_before & others,
            "byte write {value:#04x} changed other bytes: word {word_before:#010x} -> {word:#010x}"
        );
    }
    Ok(mask)
}
