//! Physical GICv3 bring-up (arm-gic) and the per-CPU setup.
//!
//! - Distributor: affinity routing, Group 1 non-secure for every SPI.
//! - Every redistributor: SGIs and PPIs Group 1 non-secure; the two
//!   hypervisor SGIs, the EL2 timer and the UART get their priorities from
//!   [`super::priority`].
//! - CPU interface: system registers at EL2 and EL1, EOImode=1 (priority
//!   drop and deactivation split, GICv3 spec 4.1.1), PMR "interrupts on".

use super::priority;
use crate::arch::{cpu, gicv3, MAX_CPUS};
use crate::arch::{Mutex, MutexGuard};
use crate::platform::interrupts::Sgi;
use crate::platform::machine::PlatformInfo;
use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicV3, Group, SgiTarget, SgiTargetGroup};
use arm_gic::{IntId, Trigger};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use safe_mmio::UniqueMmioPointer;
use spin::Once;

/// The EL2 physical timer PPI (CNTHP), which drives the watchdog.
pub const EL2_TIMER_INTID: u32 = 26;

/// Most redistributor frames searched for a CPU's MPIDR.
const MAX_GICR_FRAMES: usize = 256;

static GIC: Once<Mutex<GicV3<'static>>> = Once::new();
/// Logical CPU -> redistributor frame index.
static GICR_INDEX: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(usize::MAX) }; MAX_CPUS];
/// Logical CPU -> MPIDR, for SGI targeting.
static MPIDR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];
/// Logical CPU -> its redistributor's SGI_base frame (RD_base + 64 KiB).
static GICR_SGI_BASE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// The console UART's interrupt, once configured.
static UART_INTID: AtomicUsize = AtomicUsize::new(0);

/// Why the GIC could not be brought up.
#[derive(Debug)]
pub enum GicInitError {
    NoRedistributor { cpu: usize, mpidr: u64 },
    Driver(arm_gic::gicv3::GicError),
}

impl core::fmt::Display for GicInitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoRedistributor { cpu, mpidr } => {
                write!(f, "no redistributor for cpu {cpu} (MPIDR {mpidr:#x})")
            }
            Self::Driver(e) => write!(f, "{e}"),
        }
    }
}

impl From<arm_gic::gicv3::GicError> for GicInitError {
    fn from(e: arm_gic::gicv3::GicError) -> Self {
        GicInitError::Driver(e)
    }
}

fn gic() -> MutexGuard<'static, GicV3<'static>> {
    // `init` runs on the boot CPU before any other GIC use.
    GIC.get().expect("GIC used before gic::driver::init").lock()
}

/// Brings up the distributor and every redistributor. Boot CPU only, after
/// the EL2 map covers the GIC. `mpidrs` lists every logical CPU's MPIDR.
pub fn init(
    info: &PlatformInfo,
    mpidrs: &[u64],
    uart_intid: Option<u32>,
) -> Result<(), GicInitError> {
    let gicd = info.gicd.start as *mut Gicd;
    let gicr = info.gicr.start as *mut GicrSgi;
    let new_gic = |frames| {
        // SAFETY: (both constructions) the distributor and redistributor
        // ranges come from the device tree, are mapped as device memory by
        // mm::el2, and nothing else in nmivisor creates pointers to them;
        // the first driver instance is dropped before the second is made.
        unsafe {
            GicV3::new(
                UniqueMmioPointer::new(NonNull::new_unchecked(gicd)),
                NonNull::new_unchecked(gicr),
                frames,
            )
        }
    };

    // Find each CPU's redistributor by affinity (GICR_TYPER), never reading
    // past the frame marked Last (GICv3 spec 12.11.35) or the DT's range.
    let frame_bytes = 0x20000u64;
    let max_frames =
        (((info.gicr.end - info.gicr.start) / frame_bytes) as usize).min(MAX_GICR_FRAMES);
    let mut affinities = [u64::MAX; MAX_GICR_FRAMES];
    let mut frames = 0;
    {
        let mut probe = new_gic(max_frames)?;
        while frames < max_frames {
            let typer = probe.gicr_typer(frames)?;
            affinities[frames] = typer.core_mpidr();
            frames += 1;
            if typer.last_redistributor() {
                break;
            }
        }
    }
    // arm-gic's `setup` configures every redistributor it is told about.
    let mut gic = new_gic(frames)?;
    for (cpu, &mpidr) in mpidrs.iter().enumerate() {
        MPIDR[cpu].store(mpidr, Ordering::Relaxed);
        let index = affinities
            .iter()
            .position(|&a| a == mpidr)
            .ok_or(GicInitError::NoRedistributor { cpu, mpidr })?;
        GICR_INDEX[cpu].store(index, Ordering::Relaxed);
        GICR_SGI_BASE[cpu].store(
            info.gicr.start + index as u64 * frame_bytes + SGI_FRAME_OFFSET,
            Ordering::Relaxed,
        );
    }

    GicCpuInterface::enable_system_register_el2(true);
    gic.setup(GICR_INDEX[0].load(Ordering::Relaxed));

    for index in GICR_INDEX.iter().take(mpidrs.len()) {
        let frame = Some(index.load(Ordering::Relaxed));
        for (intid, prio) in [
            (IntId::sgi(Sgi::Nmi.intid()), priority::NMI),
            (IntId::sgi(Sgi::Kick.intid()), priority::NORMAL),
            (IntId::ppi(EL2_TIMER_INTID - 16), priority::NORMAL),
            // The PPIs forwarded to guests (virtual timer, EL1 physical
            // timer, PMU) and GIC maintenance.
            (IntId::ppi(27 - 16), priority::NORMAL),
            (IntId::ppi(30 - 16), priority::NORMAL),
            (IntId::ppi(23 - 16), priority::NORMAL),
            (IntId::ppi(25 - 16), priority::NORMAL),
        ] {
            gic.set_group(intid, frame, Group::Group1NS)?;
            gic.set_interrupt_priority(intid, frame, prio)?;
            gic.enable_interrupt(intid, frame, true)?;
        }
        for ppi in [EL2_TIMER_INTID, 27, 30, 23, 25] {
            gic.set_trigger(IntId::ppi(ppi - 16), frame, Trigger::Level)?;
        }
    }

    if let Some(intid) = uart_intid.filter(|&i| (32..1020).contains(&i)) {
        let id = IntId::spi(intid - 32);
        gic.distributor().set_routing(id, Some(mpidrs[0]))?;
        gic.set_group(id, None, Group::Group1NS)?;
        gic.set_interrupt_priority(id, None, priority::NORMAL)?;
        gic.set_trigger(id, None, Trigger::Level)?;
        gic.enable_interrupt(id, None, true)?;
        UART_INTID.store(intid as usize, Ordering::Relaxed);
    }

    GIC.call_once(|| Mutex::new(gic));
    init_cpu_interface();
    Ok(())
}

/// The UART's INTID if its interrupt is in use.
pub fn uart_intid() -> Option<u32> {
    match UART_INTID.load(Ordering::Relaxed) {
        0 => None,
        i => Some(i as u32),
    }
}

/// GICR_ISACTIVER0 / GICR_ICACTIVER0 within the SGI_base frame (GICv3
/// spec 12.11): write 1 to set / clear the active state of an SGI or PPI.
const SGI_FRAME_OFFSET: u64 = 0x1_0000;
const GICR_ISACTIVER0: u64 = 0x300;
const GICR_ICACTIVER0: u64 = 0x380;

/// This CPU's redistributor SGI frame, if `init` found it.
fn sgi_frame() -> Option<u64> {
    match GICR_SGI_BASE
        .get(crate::arch::percpu::cpu_id())?
        .load(Ordering::Relaxed)
    {
        0 => None,
        b => Some(b),
    }
}

/// The active state of this CPU's SGIs and PPIs (GICR_ISACTIVER0: bit n =
/// INTID n). arm-gic has no accessor for it.
pub fn ppi_active() -> u32 {
    let Some(base) = sgi_frame() else { return 0 };
    // SAFETY: this CPU's redistributor SGI frame, mapped as device memory
    // by mm::el2 (it lies inside the DT's GICR range); a 32-bit read of
    // GICR_ISACTIVER0 has no side effects.
    unsafe { core::ptr::read_volatile((base + GICR_ISACTIVER0) as *const u32) }
}

/// Sets the active state of this CPU's PPIs in `set` and clears it for
/// those in `clear` (bit n = INTID n), without touching the CPU
/// interface's running priority.
pub fn set_ppi_active(set: u32, clear: u32) {
    let Some(base) = sgi_frame() else { return };
    // SAFETY: as in `ppi_active`; GICR_ISACTIVER0 / GICR_ICACTIVER0 are
    // write-1-to-set / -clear, so other bits and CPUs are unaffected.
    unsafe {
        if set != 0 {
            core::ptr::write_volatile((base + GICR_ISACTIVER0) as *mut u32, set);
        }
        if clear != 0 {
            core::ptr::write_volatile((base + GICR_ICACTIVER0) as *mut u32, clear);
        }
    }
}

/// Per-CPU setup on a secondary: wake its redistributor and set up its CPU
/// interface.
pub fn init_secondary(cpu: usize) {
    GicCpuInterface::enable_system_register_el2(true);
    gic().init_cpu(GICR_INDEX[cpu].load(Ordering::Relaxed));
    init_cpu_interface();
}

fn init_cpu_interface() {
    gicv3::set_eoi_mode_split();
    gicv3::trap_guest_sre();
    gicv3::set_pmr(priority::PMR_ON);
    GicCpuInterface::enable_group1(true);
    gicv3::local_irq_unmask();
}

/// Sends `sgi` to logical CPU `cpu` (ICC_SGI1R_EL1 with its affinity).
pub fn send_sgi(cpu: usize, sgi: Sgi) {
    let Some(mpidr) = MPIDR.get(cpu).map(|m| m.load(Ordering::Relaxed)) else {
        return;
    };
    if mpidr == u64::MAX {
        return;
    }
    let aff0 = (mpidr & 0xff) as u16;
    if aff0 >= 16 {
        // ICC_SGI1R_EL1's TargetList holds Aff0 0..15 (RS=0); nmivisor's
        // CPUs all fit (RS would be needed beyond 16 per cluster).
        return;
    }
    let target = SgiTarget::List {
        affinity3: (mpidr >> 32) as u8,
        affinity2: (mpidr >> 16) as u8,
        affinity1: (mpidr >> 8) as u8,
        target_list: 1 << aff0,
    };
    let _ = GicCpuInterface::send_sgi(
        IntId::sgi(sgi.intid()),
        target,
        SgiTargetGroup::CurrentGroup1,
    );
}

/// Arms this CPU's EL2 physical timer `us` microseconds ahead.
pub fn arm_timer_us(us: u64) {
    gicv3::arm_el2_timer(cpu::counter_freq().saturating_mul(us) / 1_000_000);
}
