//! The device tree a guest boots with.
//!
//! [`GuestDt`] writes the nodes every guest has: the root, `/memory`,
//! `/cpus`, `/psci` and `/chosen`. Devices the VM emulates (the GIC, the
//! architected timer, the PL011) are [`DtNode`]s added with
//! [`GuestDt::device`]; a device the others refer to by phandle (the GIC)
//! also sets the root's `interrupt-parent` with [`GuestDt::interrupt_parent`],
//! and the console sets `/chosen/stdout-path` with [`GuestDt::stdout_path`].

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use vm_fdt::FdtWriter;

use super::psci::MPIDR_AFF_MASK;

/// What the generic part of the tree describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestDtConfig<'a> {
    /// Guest RAM (IPA range).
    pub memory: Range<u64>,
    /// Virtual MPIDR of each vCPU, in vCPU order; vCPU 0 boots.
    pub vcpu_mpidrs: &'a [u64],
    pub bootargs: &'a str,
    /// Where the initrd was loaded (IPA range inside `memory`).
    pub initrd: Option<Range<u64>>,
}

/// A device node written at the root, after `/psci` and before `/chosen`.
pub trait DtNode {
    fn write(&self, fdt: &mut FdtWriter) -> vm_fdt::FdtWriterResult<()>;
}

/// Why a guest device tree could not be built.
#[derive(Debug, PartialEq, Eq)]
pub enum GuestDtError {
    EmptyMemory,
    NoVcpus,
    /// Two vCPUs share an MPIDR (affinity bits shown).
    DuplicateMpidr(u64),
    /// The initrd range is backwards or not inside guest memory.
    BadInitrd,
    /// The writer rejected a name or value (e.g. a NUL in bootargs).
    Fdt(vm_fdt::Error),
}

impl fmt::Display for GuestDtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyMemory => write!(f, "guest device tree: empty memory range"),
            Self::NoVcpus => write!(f, "guest device tree: no vCPUs"),
            Self::DuplicateMpidr(m) => write!(f, "guest device tree: two vCPUs with MPIDR {m:#x}"),
            Self::BadInitrd => write!(f, "guest device tree: initrd is not inside guest memory"),
            Self::Fdt(e) => write!(f, "guest device tree: {e}"),
        }
    }
}

impl From<vm_fdt::Error> for GuestDtError {
    fn from(e: vm_fdt::Error) -> Self {
        Self::Fdt(e)
    }
}

/// Builds a guest device tree; see the module documentation.
pub struct GuestDt<'a> {
    config: &'a GuestDtConfig<'a>,
    interrupt_parent: Option<u32>,
    stdout_path: Option<&'a str>,
    devices: Vec<&'a dyn DtNode>,
}

impl<'a> GuestDt<'a> {
    /// A builder for the device tree of `config`.
    pub fn new(config: &'a GuestDtConfig<'a>) -> Self {
        Self {
            config,
            interrupt_parent: None,
            stdout_path: None,
            devices: Vec::new(),
        }
    }

    /// Sets the root's `interrupt-parent` (the interrupt controller's phandle).
    pub fn interrupt_parent(mut self, phandle: u32) -> Self {
        self.interrupt_parent = Some(phandle);
        self
    }

    /// Sets `/chosen/stdout-path` (e.g. `/pl011@9000000`).
    pub fn stdout_path(mut self, path: &'a str) -> Self {
        self.stdout_path = Some(path);
        self
    }

    /// Adds a device node; devices are written in the order added.
    pub fn device(mut self, node: &'a dyn DtNode) -> Self {
        self.devices.push(node);
        self
    }

    /// Checks the configuration and writes the DTB.
    pub fn build(&self) -> Result<Vec<u8>, GuestDtError> {
        let cfg = self.config;
        if cfg.memory.is_empty() {
            return Err(GuestDtError::EmptyMemory);
        }
        if cfg.vcpu_mpidrs.is_empty() {
            return Err(GuestDtError::NoVcpus);
        }
        if let Some(initrd) = &cfg.initrd {
            if initrd.start > initrd.end
                || initrd.start < cfg.memory.start
                || initrd.end > cfg.memory.end
            {
                return Err(GuestDtError::BadInitrd);
            }
        }

        let mut fdt = FdtWriter::new()?;
        let root = fdt.begin_node("")?;
        fdt.property_u32("#address-cells", 2)?;
        fdt.property_u32("#size-cells", 2)?;
        fdt.property_string_list(
            "compatible",
            strings(&["linux,dummy-virt", "nmivisor,guest"]),
        )?;
        fdt.property_string("model", "nmivisor guest")?;
        if let Some(phandle) = self.interrupt_parent {
            fdt.property_u32("interrupt-parent", phandle)?;
        }

        let memory = fdt.begin_node(&alloc::format!("memory@{:x}", cfg.memory.start))?;
        fdt.property_string("device_type", "memory")?;
        fdt.property_array_u64(
            "reg",
            &[cfg.memory.start, cfg.memory.end - cfg.memory.start],
        )?;
        fdt.end_node(memory)?;

        write_cpus(&mut fdt, cfg.vcpu_mpidrs)?;

        // The guest calls PSCI with HVC, which always traps to EL2.
        let psci = fdt.begin_node("psci")?;
        fdt.property_string_list("compatible", strings(&["arm,psci-1.0", "arm,psci-0.2"]))?;
        fdt.property_string("method", "hvc")?;
        fdt.end_node(psci)?;

        for device in &self.devices {
            device.write(&mut fdt)?;
        }

        let chosen = fdt.begin_node("chosen")?;
        fdt.property_string("bootargs", cfg.bootargs)?;
        if let Some(initrd) = &cfg.initrd {
            fdt.property_u64("linux,initrd-start", initrd.start)?;
            fdt.property_u64("linux,initrd-end", initrd.end)?;
        }
        if let Some(path) = self.stdout_path {
            fdt.property_string("stdout-path", path)?;
        }
        fdt.end_node(chosen)?;

        fdt.end_node(root)?;
        Ok(fdt.finish()?)
    }
}

/// `/cpus`: one `cpu@N` per vCPU. `reg` is the MPIDR's affinity fields,
/// in one cell when every Aff3 is 0 (Linux's arm64 cpu binding).
fn write_cpus(fdt: &mut FdtWriter, mpidrs: &[u64]) -> Result<(), GuestDtError> {
    let mpidrs: Vec<u64> = mpidrs.iter().map(|m| m & MPIDR_AFF_MASK).collect();
    for (i, m) in mpidrs.iter().enumerate() {
        if mpidrs[..i].contains(m) {
            return Err(GuestDtError::DuplicateMpidr(*m));
        }
    }
    let one_cell = mpidrs.iter().all(|&m| m <= u64::from(u32::MAX));
    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", if one_cell { 1 } else { 2 })?;
    fdt.property_u32("#size-cells", 0)?;
    for &mpidr in &mpidrs {
        let cpu = fdt.begin_node(&alloc::format!("cpu@{mpidr:x}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,armv8")?;
        if one_cell {
            fdt.property_u32("reg", mpidr as u32)?;
        } else {
            fdt.property_u64("reg", mpidr)?;
        }
        fdt.property_string("enable-method", "psci")?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)?;
    Ok(())
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds the tree with no devices.
    fn build(config: &GuestDtConfig<'_>) -> Result<Vec<u8>, GuestDtError> {
        GuestDt::new(config).build()
    }
    use fdt::Fdt;

    const MPIDRS: [u64; 3] = [0x8000_0000, 0x8000_0001, 0x8000_0100];

    fn config() -> GuestDtConfig<'static> {
        GuestDtConfig {
            memory: 0x4000_0000..0x6000_0000,
            vcpu_mpidrs: &MPIDRS,
            bootargs: "console=ttyAMA0 irqchip.gicv3_pseudo_nmi=1",
            initrd: Some(0x4800_0000..0x4810_0000),
        }
    }

    fn be_u64(bytes: &[u8]) -> u64 {
        u64::from_be_bytes(bytes.try_into().unwrap())
    }

    #[test]
    fn writes_every_field() {
        let dtb = build(&config()).unwrap();
        let fdt = Fdt::new(&dtb).unwrap();

        let root = fdt.root();
        assert_eq!(root.cell_sizes().address_cells, 2);
        assert_eq!(root.cell_sizes().size_cells, 2);
        assert_eq!(
            root.compatible().all().collect::<Vec<_>>(),
            ["linux,dummy-virt", "nmivisor,guest"]
        );
        assert_eq!(root.model(), "nmivisor guest");
        assert!(root.property("interrupt-parent").is_none());

        let memory = fdt.find_node("/memory@40000000").unwrap();
        assert_eq!(
            memory.property("device_type").unwrap().as_str(),
            Some("memory")
        );
        let region = fdt.memory().regions().next().unwrap();
        assert_eq!(region.starting_address as u64, 0x4000_0000);
        assert_eq!(region.size, Some(0x2000_0000));

        let cpus = fdt.find_node("/cpus").unwrap();
        assert_eq!(cpus.property("#address-cells").unwrap().as_usize(), Some(1));
        assert_eq!(cpus.property("#size-cells").unwrap().as_usize(), Some(0));
        let ids: Vec<_> = fdt.cpus().map(|c| c.ids().first()).collect();
        assert_eq!(ids, [0, 1, 0x100]);
        for (cpu, name) in fdt.cpus().zip(["cpu@0", "cpu@1", "cpu@100"]) {
            assert_eq!(cpu.property("device_type").unwrap().as_str(), Some("cpu"));
            assert_eq!(
                cpu.property("compatible").unwrap().as_str(),
                Some("arm,armv8")
            );
            assert_eq!(
                cpu.property("enable-method").unwrap().as_str(),
                Some("psci")
            );
            assert!(fdt.find_node(&format!("/cpus/{name}")).is_some());
        }

        let psci = fdt.find_node("/psci").unwrap();
        assert_eq!(
            psci.compatible().unwrap().all().collect::<Vec<_>>(),
            ["arm,psci-1.0", "arm,psci-0.2"]
        );
        assert_eq!(psci.property("method").unwrap().as_str(), Some("hvc"));

        let chosen = fdt.chosen();
        assert_eq!(
            chosen.bootargs(),
            Some("console=ttyAMA0 irqchip.gicv3_pseudo_nmi=1")
        );
        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(
            be_u64(chosen.property("linux,initrd-start").unwrap().value),
            0x4800_0000
        );
        assert_eq!(
            be_u64(chosen.property("linux,initrd-end").unwrap().value),
            0x4810_0000
        );
        assert!(chosen.property("stdout-path").is_none());
    }

    #[test]
    fn no_initrd_and_empty_bootargs() {
        let cfg = GuestDtConfig {
            initrd: None,
            bootargs: "",
            ..config()
        };
        let dtb = build(&cfg).unwrap();
        let fdt = Fdt::new(&dtb).unwrap();
        let chosen = fdt.find_node("/chosen").unwrap();
        assert!(chosen.property("linux,initrd-start").is_none());
        assert!(chosen.property("linux,initrd-end").is_none());
        assert_eq!(fdt.chosen().bootargs(), Some(""));
    }

    #[test]
    fn two_cell_cpu_reg_when_aff3_is_used() {
        let mpidrs = [0, 1 << 32 | 2];
        let cfg = GuestDtConfig {
            vcpu_mpidrs: &mpidrs,
            ..config()
        };
        let dtb = build(&cfg).unwrap();
        let fdt = Fdt::new(&dtb).unwrap();
        let cpus = fdt.find_node("/cpus").unwrap();
        assert_eq!(cpus.property("#address-cells").unwrap().as_usize(), Some(2));
        let ids: Vec<_> = fdt.cpus().map(|c| c.ids().first()).collect();
        assert_eq!(ids, [0, 0x1_0000_0002]);
        assert!(fdt.find_node("/cpus/cpu@100000002").is_some());
    }

    struct Uart;

    impl DtNode for Uart {
        fn write(&self, fdt: &mut FdtWriter) -> vm_fdt::FdtWriterResult<()> {
            let node = fdt.begin_node("pl011@9000000")?;
            fdt.property_string("compatible", "arm,pl011")?;
            fdt.property_array_u64("reg", &[0x900_0000, 0x1000])?;
            fdt.end_node(node)
        }
    }

    #[test]
    fn extension_points() {
        let cfg = config();
        let uart = Uart;
        let dtb = GuestDt::new(&cfg)
            .interrupt_parent(1)
            .device(&uart)
            .stdout_path("/pl011@9000000")
            .build()
            .unwrap();
        let fdt = Fdt::new(&dtb).unwrap();
        assert_eq!(
            fdt.root().property("interrupt-parent").unwrap().as_usize(),
            Some(1)
        );
        let uart = fdt.find_node("/pl011@9000000").unwrap();
        assert_eq!(uart.compatible().unwrap().first(), "arm,pl011");
        assert_eq!(fdt.chosen().stdout().unwrap().name, "pl011@9000000");
    }

    #[test]
    fn rejects_bad_configs() {
        let mpidrs = [5, 5 | 1 << 31];
        let cases = [
            (
                GuestDtConfig {
                    memory: 0x4000_0000..0x4000_0000,
                    ..config()
                },
                GuestDtError::EmptyMemory,
            ),
            (
                GuestDtConfig {
                    vcpu_mpidrs: &[],
                    ..config()
                },
                GuestDtError::NoVcpus,
            ),
            (
                GuestDtConfig {
                    vcpu_mpidrs: &mpidrs,
                    ..config()
                },
                GuestDtError::DuplicateMpidr(5),
            ),
            (
                GuestDtConfig {
                    initrd: Some(0x3000_0000..0x4100_0000),
                    ..config()
                },
                GuestDtError::BadInitrd,
            ),
            (
                GuestDtConfig {
                    initrd: Some(0x5000_0000..0x7000_0000),
                    ..config()
                },
                GuestDtError::BadInitrd,
            ),
            #[allow(clippy::reversed_empty_ranges)]
            (
                GuestDtConfig {
                    initrd: Some(0x5000_0000..0x4000_0000),
                    ..config()
                },
                GuestDtError::BadInitrd,
            ),
            (
                GuestDtConfig {
                    bootargs: "a\0b",
                    ..config()
                },
                GuestDtError::Fdt(vm_fdt::Error::InvalidString),
            ),
        ];
        for (cfg, want) in cases {
            assert!(want.to_string().starts_with("guest device tree: "));
            assert_eq!(build(&cfg), Err(want));
        }
    }
}
