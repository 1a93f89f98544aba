//! Device-tree nodes for the devices every VM gets: the GICv3 and the
//! architected timer. Written with the bindings Linux uses
//! (`arm,gic-v3.yaml`, `arm,arch_timer.yaml`).

use super::guest_dt::DtNode;
use super::memmap;
use vm_fdt::FdtWriter;

/// The GIC's phandle, the root's `interrupt-parent`.
pub const GIC_PHANDLE: u32 = 1;

/// The PL011's clock's phandle.
pub const CLOCK_PHANDLE: u32 = 2;
/// `/chosen/stdout-path` for the PL011.
pub const UART_PATH: &str = "/pl011@9000000";

/// GIC interrupt specifier types (first cell).
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
/// IRQ_TYPE_LEVEL_HIGH (third cell).
const LEVEL_HIGH: u32 = 4;

/// The emulated GICv3 for `nr_vcpus` vCPUs.
pub struct GicV3Node {
    pub nr_vcpus: usize,
}

impl DtNode for GicV3Node {
    fn write(&self, fdt: &mut FdtWriter) -> vm_fdt::FdtWriterResult<()> {
        let gicr = memmap::gicr(self.nr_vcpus);
        let node = fdt.begin_node(&alloc::format!("intc@{:x}", memmap::GICD.start))?;
        fdt.property_string("compatible", "arm,gic-v3")?;
        fdt.property_null("interrupt-controller")?;
        fdt.property_u32("#interrupt-cells", 3)?;
        fdt.property_u32("#redistributor-regions", 1)?;
        fdt.property_array_u64(
            "reg",
            &[
                memmap::GICD.start,
                memmap::GICD.end - memmap::GICD.start,
                gicr.start,
                gicr.end - gicr.start,
            ],
        )?;
        // The maintenance interrupt, PPI 9 (INTID 25).
        fdt.property_array_u32("interrupts", &[GIC_PPI, 9, LEVEL_HIGH])?;
        fdt.property_phandle(GIC_PHANDLE)?;
        fdt.end_node(node)
    }
}

/// The architected timer: secure and non-secure physical, virtual and
/// hypervisor timer PPIs (INTIDs 29, 30, 27, 26).
pub struct ArchTimerNode;

impl DtNode for ArchTimerNode {
    fn write(&self, fdt: &mut FdtWriter) -> vm_fdt::FdtWriterResult<()> {
        write_ppi_device(fdt, "timer", "arm,armv8-timer", &[13, 14, 11, 10], true)
    }
}

/// The PMUv3 (`arm,armv8-pmuv3`, `pmu.yaml`) with its overflow interrupt,
/// PPI 7 (INTID 23), which nmivisor forwards hardware-linked; the guest
/// owns every counter (MDCR_EL2.HPMN = PMCR_EL0.N). Written only when the
/// CPU has a PMU (`present`).
pub struct PmuNode {
    pub present: bool,
}

impl DtNode for PmuNode {
    fn write(&self, fdt: &mut FdtWriter) -> vm_fdt::FdtWriterResult<()> {
        if !self.present {
            return Ok(());
        }
        write_ppi_device(fdt, "pmu", "arm,armv8-pmuv3", &[7], false)
    }
}

/// A device node that is only a `compatible`, level-high PPIs (numbers
/// from 0, as the binding's interrupt specifier takes them) and, for the
/// timer, `always-on`: the timer and the PMU.
fn write_ppi_device(
    fdt: &mut FdtWriter,
    name: &str,
    compatible: &str,
    ppis: &[u32],
    always_on: bool,
) -> vm_fdt::FdtWriterResult<()> {
    let node = fdt.begin_node(name)?;
    fdt.property_string("compatible", compatible)?;
    let cells: alloc::vec::Vec<u32> = ppis
        .iter()
        .flat_map(|&ppi| [GIC_PPI, ppi, LEVEL_HIGH])
        .collect();
    fdt.property_array_u32("interrupts", &cells)?;
    if always_on {
        fdt.property_null("always-on")?;
    }
    fdt.end_node(node)
}

/// The emulated PL011 and the 24 MHz fixed clock its binding asks for
/// (`arm,pl011.yaml`: clocks "uartclk" and "apb_pclk").
pub struct Pl011Node;

impl DtNode for Pl011Node {
    fn write(&self, fdt: &mut FdtWriter) -> vm_fdt::FdtWriterResult<()> {
        let clk = fdt.begin_node("apb-pclk")?;
        fdt.property_string("compatible", "fixed-clock")?;
        fdt.property_u32("#clock-cells", 0)?;
        fdt.property_u32("clock-frequency", 24_000_000)?;
        fdt.property_string("clock-output-names", "clk24mhz")?;
        fdt.property_phandle(CLOCK_PHANDLE)?;
        fdt.end_node(clk)?;

        let uart = fdt.begin_node(&UART_PATH[1..])?;
        fdt.property_string_list(
            "compatible",
            alloc::vec!["arm,pl011".into(), "arm,primecell".into()],
        )?;
        fdt.property_array_u64(
            "reg",
            &[memmap::UART.start, memmap::UART.end - memmap::UART.start],
        )?;
        fdt.property_array_u32(
            "interrupts",
            &[GIC_SPI, memmap::UART_INTID - 32, LEVEL_HIGH],
        )?;
        fdt.property_array_u32("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE])?;
        fdt.property_string_list(
            "clock-names",
            alloc::vec!["uartclk".into(), "apb_pclk".into()],
        )?;
        fdt.end_node(uart)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::guest_dt::{GuestDt, GuestDtConfig};

    /// A guest with 128 MiB at 0x4000_0000 and these vCPUs.
    fn config(mpidrs: &[u64]) -> GuestDtConfig<'_> {
        GuestDtConfig {
            memory: 0x4000_0000..0x4800_0000,
            vcpu_mpidrs: mpidrs,
            bootargs: "",
            initrd: None,
        }
    }

    /// A property value of 32-bit cells, as the blob stores it.
    fn be_cells(cells: &[u32]) -> Vec<u8> {
        cells.iter().flat_map(|c| c.to_be_bytes()).collect()
    }

    #[test]
    fn gic_and_timer_nodes_parse_back() {
        let mpidrs = [0, 1, 2];
        let cfg = config(&mpidrs);
        let gic = GicV3Node { nr_vcpus: 3 };
        let blob = GuestDt::new(&cfg)
            .interrupt_parent(GIC_PHANDLE)
            .device(&gic)
            .device(&ArchTimerNode)
            .build()
            .unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let intc = fdt.find_compatible(&["arm,gic-v3"]).unwrap();
        let regs: Vec<_> = intc
            .reg()
            .unwrap()
            .map(|r| (r.starting_address as u64, r.size.unwrap() as u64))
            .collect();
        assert_eq!(regs, vec![(0x0800_0000, 0x1_0000), (0x080a_0000, 0x6_0000)]);
        assert!(intc.property("interrupt-controller").is_some());
        assert_eq!(
            intc.property("#interrupt-cells").unwrap().as_usize(),
            Some(3)
        );
        assert_eq!(
            intc.property("phandle").unwrap().as_usize(),
            Some(GIC_PHANDLE as usize)
        );
        let root = fdt.find_node("/").unwrap();
        assert_eq!(
            root.property("interrupt-parent").unwrap().as_usize(),
            Some(GIC_PHANDLE as usize)
        );
        let timer = fdt.find_compatible(&["arm,armv8-timer"]).unwrap();
        let irq: Vec<u8> = timer.property("interrupts").unwrap().value.to_vec();
        assert_eq!(irq, be_cells(&[1u32, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]));
        assert!(timer.property("always-on").is_some());
    }

    #[test]
    fn pmu_node_has_ppi_7_and_only_when_present() {
        let mpidrs = [0];
        let cfg = config(&mpidrs);
        let blob = GuestDt::new(&cfg)
            .device(&PmuNode { present: true })
            .build()
            .unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let pmu = fdt.find_compatible(&["arm,armv8-pmuv3"]).unwrap();
        let irq: Vec<u8> = pmu.property("interrupts").unwrap().value.to_vec();
        assert_eq!(irq, be_cells(&[1u32, 7, 4]));
        let blob = GuestDt::new(&cfg)
            .device(&PmuNode { present: false })
            .build()
            .unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        assert!(fdt.find_compatible(&["arm,armv8-pmuv3"]).is_none());
    }

    #[test]
    fn pl011_node_parses_back() {
        let mpidrs = [0];
        let cfg = config(&mpidrs);
        let blob = GuestDt::new(&cfg)
            .device(&Pl011Node)
            .stdout_path(UART_PATH)
            .build()
            .unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let uart = fdt.chosen().stdout().unwrap();
        assert!(uart.compatible().unwrap().all().any(|c| c == "arm,pl011"));
        let reg = uart.reg().unwrap().next().unwrap();
        assert_eq!(
            (reg.starting_address as u64, reg.size),
            (0x0900_0000, Some(0x1000))
        );
        let irq: Vec<u8> = uart.property("interrupts").unwrap().value.to_vec();
        assert_eq!(
            irq,
            [0u32, 1, 4]
                .iter()
                .flat_map(|c| c.to_be_bytes())
                .collect::<Vec<u8>>()
        );
        let clk = fdt.find_node("/apb-pclk").unwrap();
        assert_eq!(
            clk.property("clock-frequency").unwrap().as_usize(),
            Some(24_000_000)
        );
        assert_eq!(
            clk.property("phandle").unwrap().as_usize(),
            Some(CLOCK_PHANDLE as usize)
        );
    }
}
