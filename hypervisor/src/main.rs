//! nmivisor: a type-1 hypervisor for 64-bit Arm that runs at EL2, owns the
//! physical GICv3 and makes NMIs work for itself and for its guests.
//!
//! The crate builds two ways:
//! - for `aarch64-unknown-none-softfloat` it is the bare-metal image (`arch`, `mm` and
//!   every module that touches hardware are compiled only there);
//! - for the host, `cargo test` runs the pure modules' unit tests. Those
//!   modules (device-tree parsing, the SGI mailbox, the unwinder, the console
//!   lock and monitor, ...) never use `asm!` or MMIO.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

extern crate alloc;

mod arch;
mod boot;
mod console;
mod debug;
mod devices;
mod gic;
mod ipi;
mod mm;
mod vgic;
mod vm;

/// Reports a Rust panic and halts this CPU.
#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let me = arch::percpu::cpu_id();
    // Say it first: if the roundup itself fails, this line is still out.
    println!("nmivisor: cpu {me} panicked: {info}");
    if debug::roundup::crash_stop_all() {
        println!("nmivisor: cpu {me} panicked: {info}");
        if boot::start::panic_powers_off() {
            println!("nmivisor: powering off after the panic");
            arch::psci::system_off();
        }
        println!("nmivisor: all CPUs halted");
    }
    arch::cpu::halt()
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("nmivisor is a bare-metal image: build it with `cargo xtask build`");
}
