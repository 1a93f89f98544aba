//! Accesses where nothing is: an unassigned MMIO address and RAM's edge.
//! Both must reach the guest as a synchronous external abort on the data
//! access (EC 0x25, DFSC 0x10) with FAR = the address.

use super::{Outcome, Reason};
use crate::fault::{self, Fault};
use crate::{dt, esr, fail, mmu};

/// An address in QEMU `virt`'s MMIO space with nothing behind it: the gap
/// between the platform bus (0x0c000000-0x0e000000) and PCIe MMIO
/// (0x10000000). (0x0e000000-0x0f000000 is secure RAM when the machine has
/// `secure=on`; this address is above it.) Natively QEMU answers it with a
/// decode error, i.e. a synchronous external abort; nmivisor injects the
/// same for any IPA without RAM or an emulated device.
pub const UNASSIGNED_MMIO: u64 = 0x0f00_0000;

const PAGE: u64 = 4096;

/// Checks that `f` is the abort an access to `addr` should give.
fn check_abort(what: &str, addr: u64, write: bool, f: Fault) -> Result<(), Reason> {
    if !esr::is_sync_external_data_abort(f.esr) {
        fail!(
            "{what} {addr:#x}: ESR {:#x} (EC {:#x}, DFSC {:#x}), want EC 0x25 DFSC 0x10",
            f.esr,
            esr::ec(f.esr),
            esr::dfsc(f.esr)
        );
    }
    if f.far != addr {
        fail!("{what} {addr:#x}: FAR {:#x}, want the address", f.far);
    }
    if esr::is_write(f.esr) != write {
        fail!(
            "{what} {addr:#x}: ESR {:#x} has WnR={}",
            f.esr,
            !write as u8
        );
    }
    Ok(())
}

fn expect_read_abort(addr: u64) -> Result<(), Reason> {
    match fault::read_u64(addr) {
        Ok(v) => fail!("read of {addr:#x} returned {v:#x} instead of aborting"),
        Err(f) => check_abort("read of", addr, false, f),
    }
}

fn expect_write_abort(addr: u64) -> Result<(), Reason> {
    match fault::write_u64(addr, 0x0bad_c0de) {
        Ok(()) => fail!("write to {addr:#x} completed instead of aborting"),
        Err(f) => check_abort("write to", addr, true, f),
    }
}

pub fn mmio_abort() -> Outcome {
    if let Some(node) = dt::node_covering(UNASSIGNED_MMIO) {
        fail!("{UNASSIGNED_MMIO:#x} belongs to {node} in the device tree");
    }
    expect_read_abort(UNASSIGNED_MMIO)?;
    Ok(None)
}

pub fn outside_ram() -> Outcome {
    let ram = dt::platform().ram;
    let end = ram.end();
    if !mmu::is_normal(end + PAGE) {
        fail!(
            "RAM ends at {end:#x}, beyond the identity map ({:#x})",
            mmu::MAPPED_END
        );
    }
    let last = end - 8;
    // The loader may have put the DTB at the end of RAM: then only write
    // back what is there.
    let dtb = dt::platform().dtb;
    let scratch = !dtb.contains(last);
    let original = match fault::read_u64(last) {
        Ok(v) => v,
        Err(f) => fail!(
            "read of the last RAM word {last:#x} aborted (ESR {:#x})",
            f.esr
        ),
    };
    let patterns = [0x5a5a_a5a5_0123_4567u64, !original];
    let patterns: &[u64] = if scratch { &patterns } else { &[original] };
    for &pattern in patterns {
        if let Err(f) = fault::write_u64(last, pattern) {
            fail!(
                "write to the last RAM word {last:#x} aborted (ESR {:#x})",
                f.esr
            );
        }
        match fault::read_u64(last) {
            Ok(v) if v == pattern => {}
            Ok(v) => fail!("last RAM word {last:#x} reads {v:#x} after writing {pattern:#x}"),
            Err(f) => fail!(
                "read of the last RAM word {last:#x} aborted (ESR {:#x})",
                f.esr
            ),
        }
    }
    if fault::write_u64(last, original).is_err() {
        fail!("restoring the last RAM word {last:#x} aborted");
    }
    // The first page past RAM: read and write; one page further: read.
    expect_read_abort(end)?;
    expect_write_abort(end)?;
    expect_read_abort(end + PAGE)?;
    Ok(None)
}
