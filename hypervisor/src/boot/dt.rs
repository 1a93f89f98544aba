//! Reads what nmivisor needs from the host device tree, with the `fdt`
//! crate: memory, CPUs, the GICv3, the PL011, PSCI and /chosen.
//!
//! Pure and heap-free (it runs before the heap exists), so the host tests
//! cover it with device trees built by `vm-fdt`. Anything required that is
//! missing is an error naming it; the boot stops with that message.
//!
//! The `fdt` crate (0.1.5) trusts the blob: a truncated block, a string
//! without its NUL, a short `#address-cells`, a property after a child node
//! or an alias that names itself make it panic (found by fuzzing, see
//! docs/fuzzing.md). So [`check_structure`] walks the whole blob first and
//! refuses what the crate cannot handle, and this module never calls the
//! crate's helpers that panic on a missing node (`Fdt::chosen`).

pub use crate::platform::machine::{PhysRange, PlatformInfo, PsciConduit};
use arrayvec::ArrayVec;
use core::fmt;
use fdt::node::FdtNode;
use fdt::Fdt;

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
    Some(
        bytes[..cells * 4]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
    )
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

/// FDT header magic (Devicetree Specification v0.4, §5.2).
const FDT_MAGIC: u32 = 0xd00d_feed;
/// Structure block tokens (§5.4.1).
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_END: u32 = 9;
/// Deepest node nesting accepted (the crate's node walk keeps 64 levels).
const MAX_DEPTH: usize = 32;

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The NUL-terminated UTF-8 string at `at` and its length with the NUL.
fn c_str(bytes: &[u8], at: usize) -> Option<(&str, usize)> {
    let rest = bytes.get(at..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    Some((core::str::from_utf8(&rest[..len]).ok()?, len + 1))
}

/// `n` rounded up to the 4-byte token alignment.
fn align4(n: usize) -> Option<usize> {
    Some(n.checked_add(3)? & !3)
}

/// Checks that `blob` is a flattened device tree (version 17) whose every
/// part the `fdt` crate reads lies inside it and is well formed (§5.2-§5.4):
/// the header's blocks within `totalsize`; one root node; each node's name
/// and each property name (an offset into the strings block) NUL-terminated
/// UTF-8; property values within the structure block; properties before
/// child nodes; nesting at most [`MAX_DEPTH`] deep and balanced, then
/// FDT_END. It also refuses what the crate mishandles though the
/// specification allows it: FDT_NOP tokens (the crate skips them in some
/// places only), `#address-cells`/`#size-cells` shorter than one cell, an
/// empty `stdout-path`, `stdin-path` or `bootargs`, and property names with
/// a `/` (the crate resolves a path it cannot find through `/aliases`, and
/// would do so forever for an alias that names itself).
fn check_structure(blob: &[u8]) -> Result<(), DtError> {
    let header = |i: usize| be32(blob, i * 4).ok_or(DtError::Invalid);
    if header(0)? != FDT_MAGIC {
        return Err(DtError::Invalid);
    }
    let total = header(1)? as usize;
    let blob = blob.get(..total).ok_or(DtError::Invalid)?;
    let (off_struct, off_strings) = (header(2)? as usize, header(3)? as usize);
    let (version, size_strings, size_struct) =
        (header(5)?, header(8)? as usize, header(9)? as usize);
    if version < 17 || off_struct % 4 != 0 {
        return Err(DtError::Unsupported(
            "device tree older than version 17 or misaligned",
        ));
    }
    let block = |off: usize, size: usize| blob.get(off..off.checked_add(size)?);
    let structs = block(off_struct, size_struct).ok_or(DtError::Invalid)?;
    let strings = block(off_strings, size_strings).ok_or(DtError::Invalid)?;

    let mut at = 0;
    let mut depth = 0;
    let mut had_root = false;
    // Per level: a child node was seen (properties must come first).
    let mut had_child = [false; MAX_DEPTH + 1];
    loop {
        let token = be32(structs, at).ok_or(DtError::Invalid)?;
        at += 4;
        match token {
            FDT_BEGIN_NODE => {
                if depth == 0 && had_root || depth == MAX_DEPTH {
                    return Err(DtError::Unsupported(
                        "a second root node or nesting too deep",
                    ));
                }
                let (_, len) = c_str(structs, at).ok_or(DtError::Invalid)?;
                at = at
                    .checked_add(align4(len).ok_or(DtError::Invalid)?)
                    .ok_or(DtError::Invalid)?;
                had_child[depth] = true;
                depth += 1;
                had_child[depth] = false;
                had_root = true;
            }
            FDT_PROP => {
                if depth == 0 || had_child[depth] {
                    return Err(DtError::Unsupported(
                        "a property outside a node or after a child node",
                    ));
                }
                let len = be32(structs, at).ok_or(DtError::Invalid)? as usize;
                let name_off = be32(structs, at + 4).ok_or(DtError::Invalid)? as usize;
                at += 8;
                let end = at.checked_add(len).ok_or(DtError::Invalid)?;
                structs.get(at..end).ok_or(DtError::Invalid)?;
                at = at
                    .checked_add(align4(len).ok_or(DtError::Invalid)?)
                    .ok_or(DtError::Invalid)?;
                let (name, _) = c_str(strings, name_off).ok_or(DtError::Invalid)?;
                let short = match name {
                    "#address-cells" | "#size-cells" => len < 4,
                    "stdout-path" | "stdin-path" | "bootargs" => len == 0,
                    _ => false,
                };
                if short || name.contains('/') {
                    return Err(DtError::Unsupported("a malformed property"));
                }
            }
            FDT_END_NODE => {
                depth = depth.checked_sub(1).ok_or(DtError::Invalid)?;
            }
            FDT_END if depth == 0 && had_root => return Ok(()),
            _ => return Err(DtError::Unsupported("an FDT_NOP or unknown token")),
        }
        if at > structs.len() {
            return Err(DtError::Invalid);
        }
    }
}

/// Parses the device tree blob that starts at `blob`.
pub fn parse(blob: &[u8]) -> Result<PlatformInfo<'_>, DtError> {
    check_structure(blob)?;
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

    let cpus_node = fdt
        .find_node("/cpus")
        .ok_or(DtError::Missing("/cpus node"))?;
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
    let gicd = gic_regs
        .next()
        .ok_or(DtError::Missing("GICv3 distributor reg"))?;
    let gicr = gic_regs
        .next()
        .ok_or(DtError::Missing("GICv3 redistributor reg"))?;

    let uart_node = find_uart(&fdt)?;
    let uart = first_reg(uart_node, "PL011 reg")?;
    let uart_intid = uart_node
        .property("interrupts")
        .and_then(|p| gic_intid(p.value));

    let psci_node = fdt
        .find_compatible(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])
        .ok_or(DtError::Missing(
            "PSCI node (compatible = \"arm,psci-0.2\")",
        ))?;
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
        n.compatible()
            .is_some_and(|c| c.all().any(|s| s == "arm,pl011"))
    };
    // `Fdt::chosen` panics without /chosen; and only absolute paths are
    // looked up (see `check_structure` on aliases). A path may end in
    // ":options" (e.g. a baud rate).
    let stdout = fdt
        .find_node("/chosen")
        .and_then(|c| c.property("stdout-path"))
        .and_then(|p| p.as_str())
        .map(|p| p.split(':').next().unwrap_or(p))
        .filter(|p| p.starts_with('/'))
        .and_then(|p| fdt.find_node(p));
    if let Some(stdout) = stdout.filter(is_pl011) {
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
    cmdline
        .split_ascii_whitespace()
        .find_map(|word| match word.split_once('=') {
            Some((k, v)) => (k == key).then_some(v),
            None => (word == key).then_some(""),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::MAX_CPUS;
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
            Spec {
                memory: true,
                cpus: 4,
                gic: true,
                uart: true,
                psci: Some("smc"),
                initrd: None,
            }
        }
    }

    /// Builds a QEMU-virt-like device tree.
    fn build(spec: &Spec) -> Vec<u8> {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let chosen = w.begin_node("chosen").unwrap();
        w.property_string("bootargs", "nmivisor.test=fault quiet")
            .unwrap();
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
            w.property_array_u64("reg", &[0x4000_0000, 0x4000_0000])
                .unwrap();
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
            w.property_string_list(
                "compatible",
                vec!["arm,pl011".into(), "arm,primecell".into()],
            )
            .unwrap();
            w.property_array_u64("reg", &[0x0900_0000, 0x1000]).unwrap();
            w.property_array_u32("interrupts", &[0, 1, 4]).unwrap();
            w.end_node(u).unwrap();
        }
        if let Some(method) = spec.psci {
            let p = w.begin_node("psci").unwrap();
            w.property_string_list(
                "compatible",
                vec![
                    "arm,psci-1.0".into(),
                    "arm,psci-0.2".into(),
                    "arm,psci".into(),
                ],
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
        let blob = build(&Spec {
            initrd: Some((0x4800_0000, 0x4810_0000)),
            ..Spec::default()
        });
        let p = parse(&blob).unwrap();
        assert_eq!(
            p.memory.as_slice(),
            core::slice::from_ref(&(0x4000_0000..0x8000_0000))
        );
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
        let blob = build(&Spec {
            cpus: MAX_CPUS + 3,
            ..Spec::default()
        });
        let p = parse(&blob).unwrap();
        assert_eq!(p.cpus.len(), MAX_CPUS);
        assert_eq!(p.cpus_ignored, 3);
    }

    #[test]
    fn missing_pieces_are_named() {
        let cases: [(Spec, &str); 5] = [
            (
                Spec {
                    memory: false,
                    ..Spec::default()
                },
                "memory",
            ),
            (
                Spec {
                    cpus: 0,
                    ..Spec::default()
                },
                "cpu nodes",
            ),
            (
                Spec {
                    gic: false,
                    ..Spec::default()
                },
                "GICv3",
            ),
            (
                Spec {
                    uart: false,
                    ..Spec::default()
                },
                "PL011",
            ),
            (
                Spec {
                    psci: None,
                    ..Spec::default()
                },
                "PSCI",
            ),
        ];
        for (spec, needle) in cases {
            let err = parse(&build(&spec)).unwrap_err();
            assert!(
                err.to_string().contains(needle),
                "{err} should name {needle}"
            );
        }
    }

    #[test]
    fn rejects_garbage_and_odd_psci_methods() {
        assert_eq!(parse(&[0u8; 64]).unwrap_err(), DtError::Invalid);
        let err = parse(&build(&Spec {
            psci: Some("firmware"),
            ..Spec::default()
        }))
        .unwrap_err();
        assert!(matches!(err, DtError::Unsupported(_)));
        let blob = build(&Spec {
            psci: Some("hvc"),
            ..Spec::default()
        });
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
        assert_eq!(
            bootarg("a=1 nmivisor.test=fault b", "nmivisor.test"),
            Some("fault")
        );
        assert_eq!(bootarg("nmivisor.testx=1", "nmivisor.test"), None);
        assert_eq!(bootarg("", "x"), None);
        assert_eq!(bootarg("quiet nmivisor.idle", "nmivisor.idle"), Some(""));
        assert_eq!(bootarg("nmivisor.idle=1", "nmivisor.idle"), Some("1"));
    }

    /// Crash found by `cargo xtask fuzz dt`: totalsize 0 and a structure
    /// block far beyond the blob; the fdt crate sliced it and panicked
    /// ("range end index 65535 out of range for slice of length 57").
    #[test]
    fn fuzz_crash_blocks_outside_the_blob() {
        const CRASH: [u8; 57] = [
            0xd0, 0x0d, 0xfe, 0xed, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x27,
            0x00, 0x00, 0x00, 0x00, 0x00, 0xd0, 0x0d, 0xfe, 0xed, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x44, 0xfb,
            0xff, 0xff, 0xff, 0xff, 0x51, 0x0a, 0x0a, 0x76, 0x0a, 0x0a, 0x0a, 0xff, 0xff, 0xff,
            0xe5,
        ];
        assert_eq!(parse(&CRASH).unwrap_err(), DtError::Invalid);
    }

    /// A flattened tree from raw structure-block words and a strings block,
    /// for shapes vm-fdt refuses to write.
    fn raw_fdt(words: &[u32], strings: &[u8]) -> Vec<u8> {
        let off_struct = 40u32;
        let size_struct = (words.len() * 4) as u32;
        let off_strings = off_struct + size_struct;
        let total = off_strings + strings.len() as u32;
        let header = [
            FDT_MAGIC,
            total,
            off_struct,
            off_strings,
            40,
            17,
            16,
            0,
            strings.len() as u32,
            size_struct,
        ];
        let mut blob: Vec<u8> = header
            .iter()
            .chain(words)
            .flat_map(|w| w.to_be_bytes())
            .collect();
        blob.extend_from_slice(strings);
        blob
    }

    /// Shapes the fdt crate (0.1.5) panics on or loops over, which
    /// `check_structure` now refuses (found by reading the crate after the
    /// fuzzer's first crash above).
    #[test]
    fn refuses_trees_the_fdt_crate_cannot_walk() {
        const B: u32 = FDT_BEGIN_NODE;
        const E: u32 = FDT_END_NODE;
        const P: u32 = FDT_PROP;
        const END: u32 = FDT_END;
        // "#address-cells\0" at 0, "x\0" at 15.
        let strings = b"#address-cells\0x\0";
        // The well-formed baseline: / { x = <1>; sub { }; };
        let good = raw_fdt(&[B, 0, P, 4, 15, 1, B, 0x7375_6200, E, E, END], strings);
        assert!(check_structure(&good).is_ok());
        let cases: [(&str, &[u32]); 7] = [
            // A one-byte #address-cells: the crate's cell_sizes() expects 4.
            ("short #address-cells", &[B, 0, P, 1, 0, 0, E, END]),
            // A property after a child node: skip_current_node asserts.
            (
                "property after a child",
                &[B, 0, B, 0, E, P, 4, 15, 1, E, END],
            ),
            // FDT_NOP where the crate does not skip it.
            ("FDT_NOP", &[B, 0, 4, E, END]),
            // A property value running past the block.
            ("value past the block", &[B, 0, P, 64, 15, E, END]),
            // A name offset outside the strings block.
            ("name offset", &[B, 0, P, 4, 99, 1, E, END]),
            // Unbalanced nesting, and no FDT_END.
            ("unbalanced", &[B, 0, E, E, END]),
            ("no FDT_END", &[B, 0, E]),
        ];
        for (what, words) in cases {
            assert!(parse(&raw_fdt(words, strings)).is_err(), "{what}");
        }
        // A node name without its NUL at the end of the block.
        let blob = raw_fdt(&[B, 0x6161_6161], b"");
        assert_eq!(parse(&blob).unwrap_err(), DtError::Invalid);
    }

    /// No /chosen (Fdt::chosen() panics then), and a stdout-path naming an
    /// alias that names itself (Fdt::find_node resolves aliases with no
    /// end): the PL011 is still found by its compatible string.
    #[test]
    fn uart_without_chosen_or_with_a_self_alias() {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let a = w.begin_node("aliases").unwrap();
        w.property_string("serial0", "serial0").unwrap();
        w.end_node(a).unwrap();
        let tail = |w: &mut FdtWriter| {
            let m = w.begin_node("memory@40000000").unwrap();
            w.property_string("device_type", "memory").unwrap();
            w.property_array_u64("reg", &[0x4000_0000, 0x4000_0000])
                .unwrap();
            w.end_node(m).unwrap();
            let cpus = w.begin_node("cpus").unwrap();
            w.property_u32("#address-cells", 1).unwrap();
            w.property_u32("#size-cells", 0).unwrap();
            let c = w.begin_node("cpu@0").unwrap();
            w.property_string("device_type", "cpu").unwrap();
            w.property_u32("reg", 0).unwrap();
            w.end_node(c).unwrap();
            w.end_node(cpus).unwrap();
            let g = w.begin_node("intc@8000000").unwrap();
            w.property_string("compatible", "arm,gic-v3").unwrap();
            w.property_array_u64("reg", &[0x0800_0000, 0x1_0000, 0x080a_0000, 0xf6_0000])
                .unwrap();
            w.end_node(g).unwrap();
            let u = w.begin_node("pl011@9000000").unwrap();
            w.property_string("compatible", "arm,pl011").unwrap();
            w.property_array_u64("reg", &[0x0900_0000, 0x1000]).unwrap();
            w.end_node(u).unwrap();
            let p = w.begin_node("psci").unwrap();
            w.property_string("compatible", "arm,psci-0.2").unwrap();
            w.property_string("method", "smc").unwrap();
            w.end_node(p).unwrap();
        };
        let mut no_chosen = FdtWriter::new().unwrap();
        let r = no_chosen.begin_node("").unwrap();
        no_chosen.property_u32("#address-cells", 2).unwrap();
        no_chosen.property_u32("#size-cells", 2).unwrap();
        tail(&mut no_chosen);
        no_chosen.end_node(r).unwrap();
        let blob = no_chosen.finish().unwrap();
        let info = parse(&blob).unwrap();
        assert_eq!(
            (info.uart.start, info.bootargs, info.initrd),
            (0x0900_0000, "", None)
        );

        let c = w.begin_node("chosen").unwrap();
        w.property_string("stdout-path", "serial0").unwrap();
        w.end_node(c).unwrap();
        tail(&mut w);
        w.end_node(root).unwrap();
        let blob = w.finish().unwrap();
        assert_eq!(parse(&blob).unwrap().uart.start, 0x0900_0000);
    }
}
