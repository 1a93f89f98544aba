//! nmivisor: a type-1 hypervisor for 64-bit Arm that runs at EL2, owns the
//! physical GICv3 and makes NMIs work for itself and for its guests.
//!
//! The crate builds two ways:
//! - for `aarch64-unknown-none-softfloat` it is the bare-metal image (`arch`, `mm` and
//!   every module that touches hardware are compiled only there);
//! - for the host, `cargo test` runs the pure modules' unit tests. Those
//!   modules (device-tree parsing, the SGI mailbox, the unwinder, the console
//!   lock and monitor, ...) never use `asm!` or MMIO.
//!
//! # Layers
//!
//! The modules form layers; a module imports only from its own layer and
//! the ones below it, never from above (the host test
//! `source_rules::imports_run_down_the_layers_only` checks every
//! `crate::` path; docs/architecture.md explains each layer). From the
//! bottom:
//!
//! 1. `arch`: the CPU, its system registers and every line of inline
//!    assembly; the exception vectors and the trap frame.
//! 2. `platform`: facts the layers above share: the CPUs' topology, the
//!    machine the device tree describes, the physical SGIs nmivisor uses.
//! 3. `gic`, `mm`, `console`: the physical GICv3, memory (EL2 map, guest
//!    RAM windows, stage 2, heap), console output and rate-limited logs.
//! 4. `ipi`: messages between physical CPUs over the two SGIs; roundups.
//! 5. `vgic`, `devices`: the emulated GICv3 and PL011, as pure models.
//! 6. `vm`: VMs and vCPUs: creation, the run loop, traps, the vGIC and
//!    UART on the hardware, guest services.
//! 7. `debug`: dumps, backtraces, the NMI roundup's responders, the
//!    console monitor, the watchdogs.
//! 8. `boot`: bring-up, the device tree, wiring the layers together
//!    (`vm::services`), test hooks.
//! 9. `dispatch`: where every exception lands and is routed to its layer.
#![cfg_attr(target_os = "none", no_std, no_main)]
// Every unsafe block says why it is sound. Every public item says why it
// exists: `missing_docs` is on, but rustc applies it only to what a crate
// exports and a binary exports nothing, so the host test
// `source_rules::every_public_item_has_a_doc_comment` checks it instead.
// The lint gate of `cargo xtask test` turns every warning into an error.
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

extern crate alloc;

// On the host the modules exist only for their unit tests; a plain host
// build is just the `main` below.
#[cfg(any(test, target_os = "none"))]
mod arch;
#[cfg(any(test, target_os = "none"))]
mod boot;
#[cfg(any(test, target_os = "none"))]
mod console;
#[cfg(any(test, target_os = "none"))]
mod debug;
#[cfg(any(test, target_os = "none"))]
mod devices;
#[cfg(target_os = "none")]
mod dispatch;
#[cfg(any(test, target_os = "none"))]
mod gic;
#[cfg(any(test, target_os = "none"))]
mod ipi;
#[cfg(any(test, target_os = "none"))]
mod mm;
#[cfg(any(test, target_os = "none"))]
mod platform;
#[cfg(test)]
mod source_rules;
#[cfg(any(test, target_os = "none"))]
mod vgic;
#[cfg(any(test, target_os = "none"))]
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
