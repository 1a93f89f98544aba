//! What the guest learns from its device tree (x0 at boot): RAM, the CPUs'
//! MPIDRs, the PSCI conduit, a PL011 if there is one, the GICv3, /chosen.

use crate::psci::Conduit;
use crate::topology::{Cpus, TopologyError};
use fdt::Fdt;

/// One reg range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub base: u64,
    pub size: u64,
}

impl Range {
    pub fn end(&self) -> u64 {
        self.base + self.size
    }

    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.size
    }
}

/// The platform as the device tree describes it.
#[derive(Clone, Copy, Debug)]
pub struct Platform {
    pub dtb: Range,
    /// The RAM region with the highest end.
    pub ram: Range,
    pub cpus: Cpus,
    pub conduit: Conduit,
    /// The PL011 the console uses: /chosen's stdout-path if that is a
    /// PL011, else the first `arm,pl011` node.
    pub pl011: Option<u64>,
    /// GICv3 distributor and redistributor ranges.
    pub gicd: Option<Range>,
    pub gicr: Option<Range>,
    /// /chosen's bootargs (printed; some words select modes).
    pub bootargs: Option<&'static str>,
    /// The root `compatible` has "nmivisor,guest": a VM under nmivisor,
    /// whose vendor hypercalls ([`crate::hyp`]) exist.
    pub nmivisor: bool,
}

/// Why the device tree cannot be used.
#[derive(Debug)]
pub enum DtError {
    Parse(fdt::FdtError),
    NoMemory,
    NoPsci,
    BadPsciMethod,
    Topology(TopologyError),
}

impl core::fmt::Display for DtError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            DtError::Parse(e) => write!(f, "bad device tree: {e}"),
            DtError::NoMemory => write!(f, "no memory node"),
            DtError::NoPsci => write!(f, "no /psci node"),
            DtError::BadPsciMethod => write!(f, "/psci method is neither \"hvc\" nor \"smc\""),
            DtError::Topology(TopologyError::BootCpuMissing(m)) => {
                write!(f, "boot CPU {m:#x} is not in /cpus")
            }
            DtError::Topology(TopologyError::Duplicate(m)) => {
                write!(f, "MPIDR {m:#x} twice in /cpus")
            }
        }
    }
}

fn reg(node: fdt::node::FdtNode, index: usize) -> Option<Range> {
    let r = node.reg()?.nth(index)?;
    Some(Range {
        base: r.starting_address as u64,
        size: r.size.unwrap_or(0) as u64,
    })
}

fn is_pl011(node: &fdt::node::FdtNode) -> bool {
    node.compatible()
        .is_some_and(|c| c.all().any(|s| s == "arm,pl011"))
}

/// Parses the device tree at `dtb` for a CPU whose MPIDR is `boot_mpidr`.
///
/// # Safety
/// `dtb` must point at a device tree blob that stays in place and unchanged.
pub unsafe fn parse(dtb: u64, boot_mpidr: u64) -> Result<Platform, DtError> {
    // SAFETY: as the caller promises.
    let fdt: Fdt<'static> = unsafe { Fdt::from_ptr(dtb as *const u8) }.map_err(DtError::Parse)?;

    let memory = fdt.find_node("/memory").ok_or(DtError::NoMemory)?;
    let ram = memory
        .reg()
        .ok_or(DtError::NoMemory)?
        .filter_map(|r| {
            Some(Range {
                base: r.starting_address as u64,
                size: r.size? as u64,
            })
        })
        .filter(|r| r.size > 0)
        .max_by_key(|r| r.end())
        .ok_or(DtError::NoMemory)?;

    let cpus = Cpus::new(boot_mpidr, fdt.cpus().map(|c| c.ids().first() as u64))
        .map_err(DtError::Topology)?;

    let psci = fdt.find_node("/psci").ok_or(DtError::NoPsci)?;
    let conduit = match psci.property("method").and_then(|p| p.as_str()) {
        Some("hvc") => Conduit::Hvc,
        Some("smc") => Conduit::Smc,
        _ => return Err(DtError::BadPsciMethod),
    };

    let stdout = fdt.chosen().stdout().filter(is_pl011);
    let pl011 = stdout
        .or_else(|| fdt.find_compatible(&["arm,pl011"]))
        .and_then(|n| reg(n, 0))
        .map(|r| r.base);

    let gic = fdt.find_compatible(&["arm,gic-v3"]);
    let gicd = gic.and_then(|n| reg(n, 0));
    let gicr = gic.and_then(|n| reg(n, 1));

    Ok(Platform {
        dtb: Range {
            base: dtb,
            size: fdt.total_size() as u64,
        },
        ram,
        cpus,
        conduit,
        pl011,
        gicd,
        gicr,
        bootargs: fdt.chosen().bootargs().filter(|s| !s.is_empty()),
        nmivisor: fdt
            .find_node("/")
            .and_then(|n| n.compatible())
            .is_some_and(|c| c.all().any(|s| s == "nmivisor,guest")),
    })
}

impl Platform {
    /// Whether /chosen's bootargs contain the word `flag`.
    pub fn has_bootarg(&self, flag: &str) -> bool {
        self.bootargs
            .is_some_and(|a| a.split_ascii_whitespace().any(|w| w == flag))
    }
}

static PLATFORM: spin::Once<Platform> = spin::Once::new();

/// Publishes the parsed platform (boot CPU, once).
pub fn set(p: Platform) {
    PLATFORM.call_once(|| p);
}

/// The parsed platform.
pub fn platform() -> &'static Platform {
    PLATFORM.get().expect("device tree not parsed yet")
}

/// The parsed blob again, for what [`Platform`] does not keep.
fn fdt() -> Option<Fdt<'static>> {
    // SAFETY: the blob was parsed at boot and nothing writes to it.
    unsafe { Fdt::from_ptr(platform().dtb.base as *const u8) }.ok()
}

/// The position in /cpus of the CPU with affinity `mpidr`: nmivisor's
/// vCPU index of that CPU (the logical index puts the boot CPU first).
pub fn cpu_position(mpidr: u64) -> Option<usize> {
    let aff = crate::topology::MPIDR_AFF_MASK;
    fdt()?
        .cpus()
        .position(|c| c.ids().first() as u64 & aff == mpidr & aff)
}

/// The first device-tree node whose `reg` covers `addr`, by name.
pub fn node_covering(addr: u64) -> Option<&'static str> {
    let fdt = fdt()?;
    let name = fdt.all_nodes().find_map(|n| {
        let covers = n.reg()?.any(|r| {
            let base = r.starting_address as u64;
            r.size
                .is_some_and(|s| addr >= base && addr - base < s as u64)
        });
        covers.then_some(n.name)
    });
    name
}
