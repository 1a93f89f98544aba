//! Device-tree nodes for the devices every VM gets: the GICv3 and the
//! architected timer. Written with the bindings Linux uses
//! (`arm,gic-v3.yaml`, `arm,arch_timer.yaml`).

use super::guest_dt::DtNode;
use super::memmap;
use vm_fdt::FdtWriter;

/// The GIC's phandle, the root's `interrupt-parent`.
pub const GIC_PHANDLE: u32 = 1;

/// GIC interrupt specifier types (first cell).
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
        let node = fdt.begin_node("timer")?;
        fdt.property_string("compatible", "arm,armv8-timer")?;
        fdt.property_array_u32(
            "interrupts",
            &[GIC_PPI, 13, LEVEL_HIGH, GIC_PPI, 14, LEVEL_HIGH, GIC_PPI, 11, LEVEL_HIGH, GIC_PPI, 10, LEVEL_HIGH],
        )?;
        fdt.property_null("always-on")?;
        fdt.end_node(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::guest_dt::{GuestDt, GuestDtConfig};

    #[test]
    fn gic_and_timer_nodes_parse_back() {
        let mpidrs = [0, 1, 2];
        let cfg = GuestDtConfig { memory: 0x4000_0000..0x4800_0000, vcpu_mpidrs: &mpidrs, bootargs: "", initrd: None };
        let gic = GicV3Node { nr_vcpus: 3 };
        let blob = GuestDt::new(&cfg)
            .interrupt_parent(GIC_PHANDLE)
            .device(&gic)
            .device(&ArchTimerNode)
            .build()
            .unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let intc = fdt.find_compatible(&["arm,gic-v3"]).unwrap();
        let regs: Vec<_> = intc.reg().unwrap().map(|r| (r.starting_address as u64, r.size.unwrap() as u64)).collect();
        assert_eq!(regs, vec![(0x0800_0000, 0x1_0000), (0x080a_0000, 0x6_0000)]);
        assert!(intc.property("interrupt-controller").is_some());
        assert_eq!(intc.property("#interrupt-cells").unwrap().as_usize(), Some(3));
        assert_eq!(intc.property("phandle").unwrap().as_usize(), Some(GIC_PHANDLE as usize));
        let root = fdt.find_node("/").unwrap();
        assert_eq!(root.property("interrupt-parent").unwrap().as_usize(), Some(GIC_PHANDLE as usize));
        let timer = fdt.find_compatible(&["arm,armv8-timer"]).unwrap();
        assert_eq!(timer.property("interrupts").unwrap().value.len(), 12 * 4);
    }
}
