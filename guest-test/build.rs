//! Links the bare-metal guest with its own linker script. Host builds (unit
//! tests) link normally.
fn main() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../linker/guest-test.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
    }
}
