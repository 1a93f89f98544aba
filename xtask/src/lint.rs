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
    args: Vec<&'static str>,
    /// Needs the bare-metal targets (so the rustup toolchain's clippy).
    target: bool,
}

/// The host checks, one cargo command line each.
const HOST_CHECKS: &[(&str, &[&str])] = &[
    ("fmt", &["fmt", "--all", "--check"]),
    // The fuzz targets are their own workspace (docs/fuzzing.md).
    (
        "fmt-fuzz",
        &[
            "fmt",
            "--all",
            "--check",
            "--manifest-path",
            "fuzz/Cargo.toml",
        ],
    ),
    (
        "clippy-host",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ),
];

/// The bare-metal clippy runs: (name, package, target, extra cargo
/// arguments). Each becomes `cargo clippy --release -p PACKAGE EXTRA
/// --target TARGET -- -D warnings`; the hypervisor is checked with and
/// without the test hooks, which compile code of their own.
const TARGET_CLIPPY: &[(&str, &str, &str, &[&str])] = &[
    (
        "clippy-hypervisor",
        "hypervisor",
        "aarch64-unknown-none-softfloat",
        &[],
    ),
    (
        "clippy-hypervisor-test-hooks",
        "hypervisor",
        "aarch64-unknown-none-softfloat",
        &["--features", "test-hooks"],
    ),
    (
        "clippy-guest-test",
        "guest-test",
        "aarch64-unknown-none",
        &[],
    ),
];

/// Every check, in the order they run.
fn checks() -> Vec<Check> {
    let host = HOST_CHECKS.iter().map(|&(name, args)| Check {
        name,
        args: args.to_vec(),
        target: false,
    });
    let target = TARGET_CLIPPY.iter().map(|&(name, package, target, extra)| {
        let mut args = vec!["clippy", "--release", "-p", package];
        args.extend_from_slice(extra);
        args.extend(["--target", target, "--", "-D", "warnings"]);
        Check {
            name,
            args,
            target: true,
        }
    });
    host.chain(target).collect()
}

/// Runs every check; returns (passed, failed). The target checks need the
/// rustup toolchain's targets; with Debian's fallback toolchain (which has
/// no clippy) they are not run, and the line says so.
pub fn run(tc: &CrossToolchain) -> Result<(usize, usize)> {
    ensure_components();
    let (mut passed, mut failed) = (0, 0);
    for check in checks() {
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
        cmd.current_dir(workspace_root()).args(&check.args);
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
    checks().into_iter().map(|c| c.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_checks_keep_their_command_lines() {
        let all = checks();
        let args = |name: &str| all.iter().find(|c| c.name == name).unwrap().args.join(" ");
        assert_eq!(
            args("clippy-hypervisor"),
            "clippy --release -p hypervisor --target aarch64-unknown-none-softfloat -- -D warnings"
        );
        assert_eq!(
            args("clippy-hypervisor-test-hooks"),
            "clippy --release -p hypervisor --features test-hooks \
             --target aarch64-unknown-none-softfloat -- -D warnings"
        );
        assert_eq!(
            args("clippy-guest-test"),
            "clippy --release -p guest-test --target aarch64-unknown-none -- -D warnings"
        );
        let names: Vec<_> = names().collect();
        assert_eq!(
            names,
            [
                "fmt",
                "fmt-fuzz",
                "clippy-host",
                "clippy-hypervisor",
                "clippy-hypervisor-test-hooks",
                "clippy-guest-test"
            ]
        );
        assert!(all
            .iter()
            .all(|c| c.target == (c.name.starts_with("clippy-") && c.name != "clippy-host")));
    }
}
