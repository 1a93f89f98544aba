//! The QEMU test scenarios, as data. To add one, append a [`Scenario`] to
//! [`all`]; the harness does the rest (see [`crate::harness`]).
//!
//! Every scenario forbids `panicked` and `unexpected exception` unless it
//! calls `.allow(...)`, and has a timeout (30 s unless it sets one).

use crate::harness::{contains, regex, Scenario};

/// All scenarios, in the order they run.
pub fn all() -> Vec<Scenario> {
    let mut list = Vec::new();
    list.extend([1, 2, 4, 8].map(smp_boot));
    list.push(unexpected_exception());
    for n in [4, 8] {
        list.push(dump_masked(n));
        list.push(dump_hard_masked(n));
        list.push(panic_crash_stop(n));
        list.push(watchdog(n));
        list.push(console_monitor(n));
    }
    list
}

/// Symbolized frames name functions by their demangled path.
const SPIN_MASKED: &str = "hypervisor::boot::test_hooks::spin_with_irqs_masked_by_pmr";

/// Every CPU's dump block appears exactly once.
fn every_cpu_block(mut s: Scenario, n: u32) -> Scenario {
    for i in 0..n {
        s = s.expect_count(regex(&format!(r"^--- cpu {i} \(MPIDR 0x[0-9a-f]+\) ---$")), 1);
    }
    s
}

/// `nmi-dump-masked-smpN`: CPU 2 spins with interrupts masked by PMR; the
/// NMI roundup still gets its backtrace, symbolized, and every CPU's block.
fn dump_masked(n: u32) -> Scenario {
    let s = Scenario::new(format!("nmi-dump-masked-smp{n}"))
        .test_hooks()
        .smp(n)
        .append("nmivisor.test=dump-masked")
        .expect_in_order([
            contains("nmivisor: cpu 2 is spinning"),
            contains("=== nmivisor: dump of all CPUs (test hook), from cpu 0 ==="),
            contains("--- cpu 2 (MPIDR"),
            regex(&format!(r"^EL2 PC 0x[0-9a-f]{{16}} <{SPIN_MASKED}\+0x[0-9a-f]+>$")),
            regex(r"PMR 0x80 "),
            regex(&format!(r"^\s+#0 0x[0-9a-f]{{16}} <{SPIN_MASKED}\+")),
            contains("--- cpu 3 (MPIDR"),
            contains("--- cpu 0 (MPIDR"),
            regex(r"<hypervisor::debug::roundup::dump_all_cpus\+0x[0-9a-f]+>"),
            contains(format!("=== end of dump: {n} CPUs dumped, 0 not responding ===")),
            contains("nmivisor: powering off"),
        ])
        .forbid(contains("not responding to the NMI"));
    every_cpu_block(s, n).exit_code(0)
}

/// `nmi-dump-hardmasked-smpN`: CPU 3 spins with PSTATE.I set, so not even
/// the NMI reaches it: it is reported as not responding and the dump ends.
fn dump_hard_masked(n: u32) -> Scenario {
    let s = Scenario::new(format!("nmi-dump-hardmasked-smp{n}"))
        .test_hooks()
        .smp(n)
        .append("nmivisor.test=dump-hardmasked")
        .expect_in_order([
            contains("nmivisor: cpu 3 is spinning"),
            contains("=== nmivisor: dump of all CPUs"),
            contains("--- cpu 3 (MPIDR"),
            contains("cpu 3 not responding to the NMI (no answer within 100 ms)"),
            contains("--- cpu 0 (MPIDR"),
            contains(format!("=== end of dump: {} CPUs dumped, 1 not responding ===", n - 1)),
            contains("nmivisor: powering off"),
        ])
        .expect_count(contains("not responding to the NMI"), 1);
    every_cpu_block(s, n).exit_code(0)
}

/// `panic-smpN`: a panic on CPU 1 stops and dumps every other CPU with
/// CRASH_STOP, dumps CPU 1 with the panicking frames, repeats the message,
/// and (nmivisor.panic=poweroff) ends the run instead of hanging.
fn panic_crash_stop(n: u32) -> Scenario {
    let s = Scenario::new(format!("panic-smp{n}"))
        .test_hooks()
        .smp(n)
        .append("nmivisor.test=panic nmivisor.panic=poweroff")
        .allow("panicked")
        .expect_in_order([
            contains("nmivisor: cpu 1 panicked: panicked at"),
            contains("test hook: deliberate panic on cpu 1"),
            contains("=== nmivisor: crash on cpu 1: stopping and dumping all CPUs ==="),
            contains("--- cpu 0 (MPIDR"),
            contains("--- cpu 1 (MPIDR"),
            regex(r"<hypervisor::boot::test_hooks::panic_on_purpose\+0x[0-9a-f]+>"),
            contains(format!("=== end of crash dump: {} CPUs stopped, 0 not responding ===", n - 1)),
            contains("nmivisor: cpu 1 panicked"),
            contains("nmivisor: powering off after the panic"),
        ])
        .expect_count(contains("test hook: deliberate panic on cpu 1"), 2);
    every_cpu_block(s, n).exit_code(0)
}

/// `watchdog-smpN`: CPU 2 spins masked; its buddy's heartbeat check finds
/// it and fetches its backtrace over the NMI, with no manual trigger.
fn watchdog(n: u32) -> Scenario {
    Scenario::new(format!("watchdog-smp{n}"))
        .test_hooks()
        .smp(n)
        .append("nmivisor.test=watchdog nmivisor.watchdog=1")
        .expect(contains("nmivisor: lockup watchdog on, threshold 1 s"))
        .expect_in_order([
            contains("nmivisor: cpu 2 is spinning"),
            regex(r"^watchdog: hard LOCKUP on cpu 2 \(no heartbeat for over 1000 ms\), detected by cpu 1$"),
            contains("--- cpu 2 (MPIDR"),
            regex(&format!(r"^EL2 PC 0x[0-9a-f]{{16}} <{SPIN_MASKED}\+0x[0-9a-f]+>$")),
            contains("nmivisor: powering off"),
        ])
        .expect_count(contains("watchdog: hard LOCKUP"), 1)
        .exit_code(0)
}

/// `console-monitor-smpN`: the escape sequence typed into the serial port
/// (Ctrl-] three times, then a key) shows the help, then dumps every CPU.
fn console_monitor(n: u32) -> Scenario {
    let s = Scenario::new(format!("console-monitor-smp{n}"))
        .test_hooks()
        .smp(n)
        .append("nmivisor.test=monitor")
        .send_after(contains("running test hook \"monitor\""), b"\x1d\x1d\x1dh")
        .send_after(contains("any other key"), b"\x1d\x1d\x1dd")
        .expect(contains("nmivisor monitor: press Ctrl-] three times"))
        .expect_in_order([
            contains("=== nmivisor: dump of all CPUs (console monitor), from cpu 0 ==="),
            contains(format!("=== end of dump: {n} CPUs dumped, 0 not responding ===")),
        ])
        .until(contains("=== end of dump"));
    every_cpu_block(s, n)
}

/// `smp-N`: every CPU comes online at EL2, then the hypervisor powers off.
fn smp_boot(n: u32) -> Scenario {
    let mut s = Scenario::new(format!("smp-{n}"))
        .smp(n)
        .expect(regex("^nmivisor v"))
        .expect_in_order([
            regex("^nmivisor v"),
            contains(format!("all {n} CPUs online")),
        ])
        .expect(contains("nmivisor: powering off"));
    for i in 0..n {
        let cpu = format!(r"^cpu {i} online \(MPIDR 0x[0-9a-f]+\) at EL2$");
        s = s.expect_count(regex(&cpu), 1).expect_in_order([
            regex("^nmivisor v"),
            regex(&cpu),
            regex(&format!("^all {n} CPUs online")),
        ]);
    }
    // No CPU beyond the last one may report in.
    if n < 10 {
        s = s.forbid(regex(&format!(r"^cpu (\d{{2,}}|[{n}-9]) online")));
    }
    s.exit_code(0)
}

/// A deliberate data abort at EL2 (test hook) produces the full dump.
fn unexpected_exception() -> Scenario {
    Scenario::new("unexpected-exception")
        .test_hooks()
        .smp(2)
        .append("nmivisor.test=fault")
        .allow("unexpected exception")
        .expect(contains(
            "*** unexpected exception: synchronous from current EL (SPx) on cpu 0 ***",
        ))
        // EC 0x25 (data abort from the current EL) with IL set: 0x96......,
        // or 0x97...... when the syndrome is valid (ISV, bit 24).
        .expect(regex(r"ESR_EL2 0x9[67][0-9a-f]{6}\b"))
        .expect(contains("FAR_EL2 0x00000000dead0000"))
        .expect(contains("ELR_EL2"))
        .expect(contains("SPSR_EL2"))
        .expect(regex(r"\bx0\b"))
        .expect(regex(r"\bx30\b"))
        .expect_in_order([
            contains("*** unexpected exception"),
            regex("^backtrace:"),
            regex(r"^\s+#0 0x[0-9a-f]{16}"),
            regex("^cpu 0 halted"),
        ])
        .until(regex("cpu 0 halted"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::check;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<String> = all().into_iter().map(|s| s.name).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn smp_expectations_accept_the_contract() {
        let log: Vec<String> = [
            "nmivisor v0.1.0 (EL2, GICv3)",
            "cpu 0 online (MPIDR 0x80000000) at EL2",
            "cpu 1 online (MPIDR 0x80000001) at EL2",
            "all 2 CPUs online",
            "nmivisor: powering off",
        ]
        .map(String::from)
        .to_vec();
        let s = smp_boot(2);
        assert!(
            check(&s.expects, &log).is_empty(),
            "{:?}",
            check(&s.expects, &log)
        );

        let mut missing = log.clone();
        missing.remove(2);
        assert!(!check(&s.expects, &missing).is_empty());

        let mut extra = log.clone();
        extra.insert(3, "cpu 2 online (MPIDR 0x80000002) at EL2".into());
        assert!(!check(&s.expects, &extra).is_empty());

        let mut twice = log.clone();
        twice.insert(3, log[1].clone());
        assert!(!check(&s.expects, &twice).is_empty());
    }

    #[test]
    fn exception_expectations_accept_the_contract() {
        let log: Vec<String> = [
            "*** unexpected exception: synchronous from current EL (SPx) on cpu 0 ***",
            "ESR_EL2 0x97c88005 (EC 0x25: data abort from EL2)  FAR_EL2 0x00000000dead0000",
            "ELR_EL2 0x0000000040201234  SPSR_EL2 0x00000000000003c9",
            " x0  0x0000000000000000  x1  0x0000000000000001",
            " x30 0x0000000040201000",
            "backtrace:",
            "  #0 0x0000000040201234",
            "  #1 0x0000000040201000",
            "cpu 0 halted",
        ]
        .map(String::from)
        .to_vec();
        let s = unexpected_exception();
        assert!(
            check(&s.expects, &log).is_empty(),
            "{:?}",
            check(&s.expects, &log)
        );
        let mut panicked = log.clone();
        panicked.push("panicked at src/main.rs:1".into());
        assert!(!check(&s.expects, &panicked).is_empty());
    }
}
