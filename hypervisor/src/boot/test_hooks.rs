//! Test-only behaviour chosen by `nmivisor.test=` on the command line.
//! Compiled only with the `test-hooks` feature, which only the images that
//! `cargo xtask test` boots enable.

use crate::boot::dt::bootarg;
use crate::println;

/// Runs the hook the command line names, if any.
pub fn run(bootargs: &str) {
    let Some(hook) = bootarg(bootargs, "nmivisor.test") else { return };
    println!("nmivisor: running test hook \"{hook}\"");
    match hook {
        "fault" => fault(),
        other => println!("nmivisor: unknown test hook \"{other}\""),
    }
}

/// Reads an address the EL2 map leaves unmapped: a synchronous data abort
/// from EL2 that the vectors report as unexpected.
#[inline(never)]
fn fault() {
    // SAFETY: deliberately faulting; 0xdead0000 is outside RAM (QEMU virt
    // with up to 2 GiB) and outside every MMIO mapping, so the read traps.
    let v = unsafe { core::ptr::read_volatile(0xdead_0000 as *const u64) };
    println!("nmivisor: read {v:#x} from an unmapped address?");
}
