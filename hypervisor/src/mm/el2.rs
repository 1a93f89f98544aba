//! The EL2 stage-1 identity map, built with aarch64-paging's El2 regime.
//!
//! - the RAM the hypervisor owns (its image with BSS, stacks and heap, the
//!   device tree, the bundle): Normal write-back, read/write, execute-never;
//! - no other RAM: guests' RAM is reached only through a CPU's window while
//!   it is needed ([`super::window`]), so no stray or speculative access at
//!   EL2 can reach a VM's memory through the map;
//! - the hypervisor's text: read-only and executable;
//! - its read-only data (and the embedded symbol table): read-only, XN;
//! - the GIC and UART: Device-nGnRE, execute-never.
//!
//! It replaces the boot CPU's early 1 GiB-block map, and secondaries load it
//! directly (see `arch::entry`).

use super::window;
use crate::arch::entry::SECONDARY_TTBR0;
use crate::arch::MAX_CPUS;
use crate::platform::machine::{PhysRange, PlatformInfo};
use aarch64_paging::descriptor::El23Attributes as Attr;
use aarch64_paging::idmap::IdMap;
use aarch64_paging::paging::{El2, MemoryRegion};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

/// The root level matching TCR_EL2.T0SZ = 25 (39-bit VA), set in entry.rs.
const ROOT_LEVEL: usize = 1;

const NORMAL: Attr = Attr::VALID
    .union(Attr::ATTRIBUTE_INDEX_1)
    .union(Attr::INNER_SHAREABLE)
    .union(Attr::ACCESSED);
const DEVICE: Attr = Attr::VALID
    .union(Attr::ATTRIBUTE_INDEX_0)
    .union(Attr::ACCESSED)
    .union(Attr::XN);

extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __image_end: u8;
}

fn sym(s: &u8) -> usize {
    s as *const u8 as usize
}

fn page_aligned(r: &PhysRange) -> MemoryRegion {
    let start = (r.start as usize) & !0xfff;
    let end = (r.end as usize + 0xfff) & !0xfff;
    MemoryRegion::new(start, end)
}

/// Why the map could not be built.
#[derive(Debug)]
pub struct MapFailed(pub &'static str, pub Option<aarch64_paging::MapError>);

/// Builds the final EL2 map and switches this CPU to it. `dtb` is the
/// device tree's range (the bundle's is in `info`).
pub fn init(info: &PlatformInfo, dtb: PhysRange) -> Result<(), MapFailed> {
    let mut map = IdMap::new(ROOT_LEVEL, El2);
    // SAFETY: only the addresses of linker symbols are taken.
    let (text, rodata_end, image_end) = unsafe {
        (
            sym(&__image_start)..sym(&__text_end),
            sym(&__rodata_end),
            sym(&__image_end),
        )
    };
    let image = text.start as u64..image_end as u64;
    for (what, range) in [
        ("hypervisor image", Some(image)),
        ("device tree", Some(dtb)),
        ("bundle", info.initrd.clone()),
    ] {
        if let Some(range) = range {
            map.map_range(&page_aligned(&range), NORMAL | Attr::XN)
                .map_err(|e| MapFailed(what, Some(e)))?;
        }
    }
    map.map_range(
        &MemoryRegion::new(text.start, text.end),
        NORMAL | Attr::READ_ONLY,
    )
    .map_err(|e| MapFailed("hypervisor text", Some(e)))?;
    map.map_range(
        &MemoryRegion::new(text.end, rodata_end),
        NORMAL | Attr::READ_ONLY | Attr::XN,
    )
    .map_err(|e| MapFailed("hypervisor rodata", Some(e)))?;
    for (what, range) in [
        ("GIC distributor", &info.gicd),
        ("GIC redistributors", &info.gicr),
        ("UART", &info.uart),
    ] {
        map.map_range(&page_aligned(range), DEVICE)
            .map_err(|e| MapFailed(what, Some(e)))?;
    }

    let windows = window::region(MAX_CPUS);
    if info.memory.iter().any(|r| r.end > windows.start) {
        return Err(MapFailed(
            "guest RAM windows (RAM reaches their addresses)",
            None,
        ));
    }
    // The windows' level-2 entries, created invalid; window_hw fills and
    // empties them at run time.
    let window_region = MemoryRegion::new(windows.start as usize, windows.end as usize);
    map.map_range(&window_region, (NORMAL | Attr::XN).difference(Attr::VALID))
        .map_err(|e| MapFailed("guest RAM windows", Some(e)))?;
    let mut entries = Vec::with_capacity(MAX_CPUS * window::SLOTS_PER_CPU);
    map.walk_range(&window_region, &mut |_, descriptor, level| {
        if level == 2 {
            entries.push(descriptor as *const _ as usize);
        }
        Ok(())
    })
    .map_err(|e| MapFailed("guest RAM windows", Some(e)))?;
    if entries.len() != MAX_CPUS * window::SLOTS_PER_CPU {
        return Err(MapFailed("guest RAM windows (not level-2 blocks)", None));
    }
    super::window_hw::init(entries, (NORMAL | Attr::XN).bits() as u64);

    // The map lives as long as the hypervisor: dropping it would deactivate
    // it. Only the windows' entries change after this (arch::el2map).
    let map = Box::leak(Box::new(map));
    // SAFETY: the new map covers everything the hypervisor uses (its image,
    // stacks, heap and per-CPU data are in RAM; the devices are mapped) with
    // the same memory types as the early map, so switching is safe. The TLB
    // is invalidated right after, as aarch64-paging's El2 `activate` leaves
    // that to the caller.
    unsafe { map.activate() };
    crate::arch::el2map::flush_el2_tlb();
    SECONDARY_TTBR0.store(map.root_address().0 as u64, Ordering::Release);
    Ok(())
}
