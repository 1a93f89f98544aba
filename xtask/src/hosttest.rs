//! The host half of `cargo xtask test`: `cargo test --workspace` on the
//! build machine, with its `test result:` lines counted.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::say;
use crate::util::{command_line, workspace_root};

/// Totals over all `test result:` lines of a `cargo test` run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
    /// Test binaries (and doc-test runs) reported.
    pub suites: usize,
}

impl Summary {
    /// Adds one line of output; returns whether it was a `test result:` line.
    pub fn add_line(&mut self, line: &str) -> bool {
        match parse_result_line(line) {
            Some((passed, failed)) => {
                self.passed += passed;
                self.failed += failed;
                self.suites += 1;
                true
            }
            None => false,
        }
    }
}

/// Parses `test result: ok. 12 passed; 0 failed; 0 ignored; ...` (or
/// `FAILED.`) into (passed, failed).
pub fn parse_result_line(line: &str) -> Option<(usize, usize)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_, counts) = rest.split_once(". ")?;
    let mut passed = None;
    let mut failed = None;
    for part in counts.split(';') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<usize>() else { continue };
        match what {
            "passed" => passed = Some(n),
            "failed" => failed = Some(n),
            _ => {}
        }
    }
    Some((passed?, failed?))
}

/// The result of the host test run.
pub struct HostResult {
    /// Counted tests.
    pub summary: Summary,
    /// Whether `cargo test` itself succeeded (it fails on build errors too).
    pub success: bool,
}

/// Runs `cargo test --workspace` for the host, streaming its output.
pub fn run() -> Result<HostResult> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["test", "--workspace"])
        .stdout(Stdio::piped());
    say!("host unit tests: {}", command_line(&cmd));
    let mut child = cmd.spawn().context("cannot start cargo test")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut summary = Summary::default();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        summary.add_line(&line);
    }
    let success = child.wait()?.success();
    Ok(HostResult { summary, success })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_result_lines() {
        assert_eq!(
            parse_result_line(
                "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"
            ),
            Some((12, 0))
        );
        assert_eq!(
            parse_result_line(
                "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out"
            ),
            Some((3, 2))
        );
        assert_eq!(parse_result_line("running 3 tests"), None);
        assert_eq!(parse_result_line("test foo ... ok"), None);
    }

    #[test]
    fn sums_suites() {
        let mut s = Summary::default();
        for l in [
            "test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
            "   Doc-tests symtab",
            "test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
        ] {
            s.add_line(l);
        }
        assert_eq!(
            s,
            Summary {
                passed: 3,
                failed: 1,
                suites: 2
            }
        );
    }
}
