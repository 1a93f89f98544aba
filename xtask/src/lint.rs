//! The lint gate of `cargo xtask test`: formatting and clippy, for the host
//! and for both bare-metal targets, every warning an error. Each check
//! counts as one test in the totals.
//!
//! The hypervisor crate adds its own rules in `main.rs`
//! (`clippy::undocumented_unsafe_blocks` denied, `missing_docs` warned).

use std::process::Command;

use anyhow::Result;

use crate::provision::{CrossToolchain, ToolchainKind};
use crate::say;
use crate::util::{command_line, workspace_root};

/// One check: a name and the cargo arguments that run it.
struct Check {
    name: &'static str,
    args: &'static [&'static str],
    /// Needs the bare-metal targets (so the rustup toolchain's clippy).
    target: bool,
}

const CHECKS: &[Check] = &[
    Check {
        name: "fmt",
        args: &["fmt", "--all", "--check"],
        target: false,
    },
    // The fuzz targets are their own workspace (docs/fuzzing.md).
    Check {
        name: "fmt-fuzz",
        args: &[
            "fmt",
            "--all",
            "--check",
            "--manifest-path",
            "fuzz/Cargo.toml",
        ],
        target: false,
    },
    Check {
        name: "clippy-host",
        args: &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        target: false,
    },
    Check {
        name: "clippy-hypervisor",
        args: &[
            "clippy",
            "--release",
            "-p",
            "hypervisor",
            "--target",
            "aarch64-unknown-none-softfloat",
            "--",
            "-D",
            "warnings",
        ],
        target: true,
    },
    Check {
        name: "clippy-hypervisor-test-hooks",
        args: &[
            "clippy",
            "--release",
            "-p",
            "hypervisor",
            "--features",
            "test-hooks",
            "--target",
            "aarch64-unknown-none-softfloat",
            "--",
            "-D",
            "warnings",
        ],
        target: true,
    },
    Check {
        name: "clippy-guest-test",
        args: &[
            "clippy",
            "--release",
            "-p",
            "guest-test",
            "--target",
            "aarch64-unknown-none",
            "--",
            "-D",
            "warnings",
        ],
        target: true,
    },
];

/// Runs every check; returns (passed, failed). The target checks need the
/// rustup toolchain's targets; with Debian's fallback toolchain (which has
/// no clippy) they are not run, and the line says so.
pub fn run(tc: &CrossToolchain) -> Result<(usize, usize)> {
    ensure_components();
    let (mut passed, mut failed) = (0, 0);
    for check in CHECKS {
        if check.target && tc.kind != ToolchainKind::Rustup {
            say!(
                "lint {}: not run: the {:?} toolchain has no clippy for the bare-metal targets",
                check.name,
                tc.kind
            );
            continue;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace_root()).args(check.args);
        say!("lint {}: {}", check.name, command_line(&cmd));
        let ok = match cmd.status() {
            Ok(status) => status.success(),
            Err(e) => {
                say!("lint {}: cannot run cargo: {e}", check.name);
                false
            }
        };
        println!(
            "lint {} ... {}",
            check.name,
            if ok { "ok" } else { "FAILED" }
        );
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    Ok((passed, failed))
}

/// rustfmt and clippy come with rustup's default profile, but
/// `rust-toolchain.toml` asks only for the minimal one: add them if they
/// are missing (a check whose tool is still missing then fails, naming it).
fn ensure_components() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    for (tool, component) in [("fmt", "rustfmt"), ("clippy", "clippy")] {
        let present = Command::new(&cargo)
            .current_dir(workspace_root())
            .args([tool, "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if present {
            continue;
        }
        say!("lint: cargo {tool} is missing; adding the {component} component with rustup");
        let added = Command::new("rustup")
            .current_dir(workspace_root())
            .args(["component", "add", component])
            .status()
            .is_ok_and(|s| s.success());
        if !added {
            say!("lint: rustup could not add {component}; the checks that need it will fail");
        }
    }
}

/// The names of the checks (for `cargo xtask test --list`).
pub fn names() -> impl Iterator<Item = &'static str> {
    CHECKS.iter().map(|c| c.name)
}
