//! guest-test: a tiny EL1 guest. Its scenarios arrive with the VM issue; for
//! now it only builds, so the workspace layout is complete.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("guest-test runs only as an aarch64-unknown-none guest");
}
