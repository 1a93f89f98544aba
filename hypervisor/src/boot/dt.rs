//! Reads what nmivisor needs from the host device tree, with the `fdt`
//! crate: memory, CPUs, the GICv3, the PL011, PSCI and /chosen.
//!
//! Pure and heap-free (it runs before the heap exists), so the host tests
//! cover it with device trees built by `vm-fdt`. Anything required that is
//! missing is an error naming it; the boot stops with that message.

use crate::arch::MAX_CPUS;
use arrayvec::ArrayVec;
use core::fmt;
use core::ops::Range;
use fdt::node::FdtNode;
use fdt::Fdt;

/// Most RAM ranges kept from /memory nodes.
pub const MAX_MEMORY_RANGES: usize = 8;

/// A physical address range.
pub type PhysRange = Range<u64>;

/// How PSCI calls reach the firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciConduit {
    Smc,
    Hvc,
}

/// The platform as the device tree describes it.
#[derive(Clone, Debug)]
pub struct PlatformInfo<'a> {
    pub memory: ArrayVec<PhysRange, MAX_MEMORY_RANGES>,
    /// MPIDR affinity of each CPU, in device-tree order.
    pub cpus: ArrayVec<u64, MAX_CPUS>,
    /// CPUs present in the DTB beyond [`MAX_CPUS`], left powered off.
    pub cpus_ignored: usize,
    pub gicd: PhysRange,
    pub gicr: PhysRange,
    pub uart: PhysRange,
    /// The UART's interrupt as a GIC INTID, if the tree gives one.
    pub uart_intid: Option<u32>,
    pub psci: PsciConduit,
    pub bootargs: &'a str,
    pub initrd: Option<PhysRange>,
}

/// Why the device tree cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtError {
    /// The blob is not a valid flattened device tree.
    Invalid,
    /// A required node or property is missing; names it.
    Missing(&'static str),
    /// Present but unusable; says why.
    Unsupported(&'static str),
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtError::Invalid => write!(f, "not a valid flattened device tree"),
            DtError::Missing(what) => write!(f, "missing {what}"),
            DtError::Unsupported(what) => write!(f, "unsupported: {what}"),
        }
    }
}

/// Reads a big-endian number of `cells` 32-bit cells.
fn read_cells(bytes: &[u8], cells: usize) -> Option<u64> {
    if cells == 0 || cells > 2 || bytes.len() < cells * 4 {
        return None;
    }
    Some(bytes[..cells * 4].iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// `reg` entries of `node` as ranges, with its parent's cell sizes.
fn reg_ranges<'b, 'a>(node: FdtNode<'b, 'a>) -> impl Iterator<Item = PhysRange> + 'a {
    node.reg().into_iter().flatten().filter_map(|r| {
        let start = r.starting_address as u64;
        let size = r.size? as u64;
        Some(start..start.checked_add(size)?)
    })
}

fn first_reg(node: FdtNode<'_, '_>, what: &'static str) -> Result<PhysRange, DtError> {
    reg_ranges(node).next().ok_or(DtError::Missing(what))
}

/// Parses the device tree blob that starts at `blob`.
pub fn parse(blob: &[u8]) -> Result<PlatformInfo<'_>, DtError> {
    let fdt = Fdt::new(blob).map_err(|_| DtError::Invalid)?;

    let mut memory = ArrayVec::new();
    for node in fdt.all_nodes() {
        let is_memory = node
            .property("device_type")
            .and_then(|p| p.as_str())
            .is_some_and(|t| t == "memory");
        if !is_memory {
            continue;
        }
        for range in reg_ranges(node).filter(|r| !r.is_empty()) {
            if memory.try_push(range).is_err() {
                return Err(DtError::Unsupported("more than 8 memory ranges"));
            }
        }
    }
    if memory.is_empty() {
        return Err(DtError::Missing("memory node (device_type = \"memory\")"));
    }

    let cpus_node = fdt.find_node("/cpus").ok_or(DtError::Missing("/cpus node"))?;
    let address_cells = cpus_node
        .property("#address-cells")
        .and_then(|p| p.as_usize())
        .ok_or(DtError::Missing("/cpus #address-cells"))?;
    let mut cpus = ArrayVec::new();
    let mut cpus_ignored = 0;
    for cpu in cpus_node.children() {
        let is_cpu = cpu
            .property("device_type")
            .and_then(|p| p.as_str())
            .is_some_and(|t| t == "cpu");
        if !is_cpu {
            continue;
        }
        let mpidr = cpu
            .property("reg")
            .and_then(|p| read_cells(p.value, address_cells))
            .ok_or(DtError::Missing("reg of a /cpus/cpu node"))?;
        if cpus.try_push(mpidr).is_err() {
            cpus_ignored += 1;
        }
    }
    if cpus.is_empty() {
        return Err(DtError::Missing("cpu nodes under /cpus"));
    }

    let gic = fdt
        .find_compatible(&["arm,gic-v3"])
        .ok_or(DtError::Missing("GICv3 node (compatible = \"arm,gic-v3\")"))?;
    let mut gic_regs = reg_ranges(gic);
    let gicd = gic_regs.next().ok_or(DtError::Missing("GICv3 distributor reg"))?;
    let gicr = gic_regs.next().ok_or(DtError::Missing("GICv3 redistributor reg"))?;

    let uart_node = find_uart(&fdt)?;
    let uart = first_reg(uart_node, "PL011 reg")?;
    let uart_intid = uart_node.property("interrupts").and_then(|p| gic_intid(p.value));

    let psci_node = fdt
        .find_compatible(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])
        .ok_or(DtError::Missing("PSCI node (compatible = \"arm,psci-0.2\")"))?;
    let psci = match psci_node.property("method").and_then(|p| p.as_str()) {
        Some("smc") => PsciConduit::Smc,
        Some("hvc") => PsciConduit::Hvc,
        Some(_) => return Err(DtError::Unsupported("PSCI method other than smc or hvc")),
        None => return Err(DtError::Missing("PSCI method")),
    };

    let chosen = fdt.find_node("/chosen");
    let bootargs = chosen
        .and_then(|c| c.property("bootargs"))
        .and_then(|p| p.as_str())
        .unwrap_or("");
    let initrd = chosen.and_then(|c| {
        let start = c.property("linux,initrd-start")?.as_usize()? as u64;
        let end = c.property("linux,initrd-end")?.as_usize()? as u64;
        (end > start).then_some(start..end)
    });

    Ok(PlatformInfo {
        memory,
        cpus,
        cpus_ignored,
        gicd,
        gicr,
        uart,
        uart_intid,
        psci,
        bootargs,
        initrd,
    })
}

/// The console UART: /chosen stdout-path if it is a PL011, else the first
/// PL011 in the tree.
fn find_uart<'b, 'a>(fdt: &'b Fdt<'a>) -> Result<FdtNode<'b, 'a>, DtError> {
    let is_pl011 = |n: &FdtNode<'_, '_>| {
        n.compatible().is_some_and(|c| c.all().any(|s| s == "arm,pl011"))
    };
    if let Some(stdout) = fdt.chosen().stdout().filter(is_pl011) {
        return Ok(stdout);
    }
    fdt.find_compatible(&["arm,pl011"])
        .ok_or(DtError::Missing("PL011 UART (compatible = \"arm,pl011\")"))
}

/// The INTID of the first GICv3 `interrupts` specifier (3 cells: type,
/// number, flags; type 0 is an SPI from INTID 32, type 1 a PPI from 16).
fn gic_intid(cells: &[u8]) -> Option<u32> {
    let kind = read_cells(cells, 1)?;
    let number = u32::try_from(read_cells(cells.get(4..)?, 1)?).ok()?;
    match kind {
        0 => number.checked_add(32).filter(|&i| i < 1020),
        1 => number.checked_add(16).filter(|&i| i < 32),
        _ => None,
    }
}

/// The value of `key` in a kernel-style command line: `key=value` gives
/// the value, a bare `key` gives "" (a flag), absent gives None.
pub fn bootarg<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline.split_ascii_whitespace().find_map(|word| match word.split_once('=') {
        Some((k, v)) => (k == key).then_some(v),
        None => (word == key).then_some(""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_fdt::FdtWriter;

    struct Spec {
        memory: bool,
        cpus: usize,
        gic: bool,
        uart: bool,
        psci: Option<&'static str>,
        initrd: Option<(u64, u64)>,
    }

    impl Default for Spec {
        fn default() -> Self {
            Spec { memory: true, cpus: 4, gic: true, uart: true, psci: Some("smc"), initrd: None }
        }
    }

    /// Builds a QEMU-virt-like device tree.
    fn build(spec: &Spec) -> Vec<u8> {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let chosen = w.begin_node("chosen").unwrap();
        w.property_string("bootargs", "nmivisor.test=fault quiet").unwrap();
        if spec.uart {
            w.property_string("stdout-path", "/pl011@9000000").unwrap();
        }
        if let Some((s, e)) = spec.initrd {
            w.property_u64("linux,initrd-start", s).unwrap();
            w.property_u64("linux,initrd-end", e).unwrap();
        }
        w.end_node(chosen).unwrap();
        if spec.memory {
            let m = w.begin_node("memory@40000000").unwrap();
            w.property_string("device_type", "memory").unwrap();
            w.property_array_u64("reg", &[0x4000_0000, 0x4000_0000]).unwrap();
            w.end_node(m).unwrap();
        }
        let cpus = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        for i in 0..spec.cpus {
            let c = w.begin_node(&format!("cpu@{i}")).unwrap();
            w.property_string("device_type", "cpu").unwrap();
            w.property_string("compatible", "arm,cortex-a57").unwrap();
            w.property_u32("reg", i as u32).unwrap();
            w.end_node(c).unwrap();
        }
        w.end_node(cpus).unwrap();
        if spec.gic {
            let g = w.begin_node("intc@8000000").unwrap();
            w.property_string("compatible", "arm,gic-v3").unwrap();
            w.property_array_u64("reg", &[0x0800_0000, 0x1_0000, 0x080a_0000, 0xf6_0000])
                .unwrap();
            w.end_node(g).unwrap();
        }
        if spec.uart {
            let u = w.begin_node("pl011@9000000").unwrap();
            w.property_string_list("compatible", vec!["arm,pl011".into(), "arm,primecell".into()])
                .unwrap();
            w.property_array_u64("reg", &[0x0900_0000, 0x1000]).unwrap();
            w.property_array_u32("interrupts", &[0, 1, 4]).unwrap();
            w.end_node(u).unwrap();
        }
        if let Some(method) = spec.psci {
            let p = w.begin_node("psci").unwrap();
            w.property_string_list(
                "compatible",
                vec!["arm,psci-1.0".into(), "arm,psci-0.2".into(), "arm,psci".into()],
            )
            .unwrap();
            w.property_string("method", method).unwrap();
            w.end_node(p).unwrap();
        }
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn parses_a_qemu_virt_like_tree() {
        let blob = build(&Spec { initrd: Some((0x4800_0000, 0x4810_0000)), ..Spec::default() });
        let p = parse(&blob).unwrap();
        assert_eq!(p.memory.as_slice(), core::slice::from_ref(&(0x4000_0000..0x8000_0000)));
        assert_eq!(p.cpus.as_slice(), &[0, 1, 2, 3]);
        assert_eq!(p.cpus_ignored, 0);
        assert_eq!(p.gicd, 0x0800_0000..0x0801_0000);
        assert_eq!(p.gicr, 0x080a_0000..0x0900_0000);
        assert_eq!(p.uart, 0x0900_0000..0x0900_1000);
        assert_eq!(p.uart_intid, Some(33));
        assert_eq!(p.psci, PsciConduit::Smc);
        assert_eq!(p.bootargs, "nmivisor.test=fault quiet");
        assert_eq!(p.initrd, Some(0x4800_0000..0x4810_0000));
    }

    #[test]
    fn extra_cpus_are_counted_not_dropped_silently() {
        let blob = build(&Spec { cpus: MAX_CPUS + 3, ..Spec::default() });
        let p = parse(&blob).unwrap();
        assert_eq!(p.cpus.len(), MAX_CPUS);
        assert_eq!(p.cpus_ignored, 3);
    }

    #[test]
    fn missing_pieces_are_named() {
        let cases: [(Spec, &str); 5] = [
            (Spec { memory: false, ..Spec::default() }, "memory"),
            (Spec { cpus: 0, ..Spec::default() }, "cpu nodes"),
            (Spec { gic: false, ..Spec::default() }, "GICv3"),
            (Spec { uart: false, ..Spec::default() }, "PL011"),
            (Spec { psci: None, ..Spec::default() }, "PSCI"),
        ];
        for (spec, needle) in cases {
            let err = parse(&build(&spec)).unwrap_err();
            assert!(err.to_string().contains(needle), "{err} should name {needle}");
        }
    }

    #[test]
    fn rejects_garbage_and_odd_psci_methods() {
        assert_eq!(parse(&[0u8; 64]).unwrap_err(), DtError::Invalid);
        let err = parse(&build(&Spec { psci: Some("firmware"), ..Spec::default() })).unwrap_err();
        assert!(matches!(err, DtError::Unsupported(_)));
        let blob = build(&Spec { psci: Some("hvc"), ..Spec::default() });
        let hvc = parse(&blob).unwrap();
        assert_eq!(hvc.psci, PsciConduit::Hvc);
    }

    #[test]
    fn decodes_gic_interrupt_specifiers() {
        let cells = |v: [u32; 3]| v.iter().flat_map(|c| c.to_be_bytes()).collect::<Vec<u8>>();
        assert_eq!(gic_intid(&cells([0, 1, 4])), Some(33));
        assert_eq!(gic_intid(&cells([1, 10, 4])), Some(26));
        assert_eq!(gic_intid(&cells([1, 20, 4])), None);
        assert_eq!(gic_intid(&cells([0, 5000, 4])), None);
        assert_eq!(gic_intid(&cells([2, 1, 4])), None);
        assert_eq!(gic_intid(&[0, 0]), None);
    }

    #[test]
    fn finds_bootargs() {
        assert_eq!(bootarg("a=1 nmivisor.test=fault b", "nmivisor.test"), Some("fault"));
        assert_eq!(bootarg("nmivisor.testx=1", "nmivisor.test"), None);
        assert_eq!(bootarg("", "x"), None);
        assert_eq!(bootarg("quiet nmivisor.idle", "nmivisor.idle"), Some(""));
        assert_eq!(bootarg("nmivisor.idle=1", "nmivisor.idle"), Some("1"));
    }
}
