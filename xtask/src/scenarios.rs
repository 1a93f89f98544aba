//! The QEMU test scenarios, as data. To add one, append a [`Scenario`] to
//! [`all`]; the harness does the rest (see [`crate::harness`]).
//!
//! Every scenario forbids `panicked` and `unexpected exception` unless it
//! calls `.allow(...)`, and has a timeout (30 s unless it sets one).
//!
//! Three kinds of boot (see [`crate::harness::Boot`]): the bare hypervisor,
//! the hypervisor with a VM bundle (`-initrd`), and guest-test natively at
//! EL1 without the hypervisor, the reference its VM runs are held to.

use crate::bundle::{all_cpus, BundleSpec, Defect};
use crate::harness::{contains, regex, Scenario};

/// All scenarios, in the order they run.
pub fn all() -> Vec<Scenario> {
    let mut list = Vec::new();
    list.extend([1, 2, 4, 8].map(smp_boot));
    list.push(unexpected_exception());
    list.push(el2_map());
    for n in [4, 8] {
        list.push(dump_masked(n));
        list.push(dump_hard_masked(n));
        list.push(panic_crash_stop(n));
        list.push(panic_during_dump(n));
        list.push(watchdog(n));
        list.push(console_monitor(n));
    }
    list.extend([1, 2, 4].map(guest_test_native));
    list.extend([1, 2, 4].map(guest_test_vm));
    list.push(two_vms());
    list.push(vm_not_on_cpu0());
    list.push(console_flood());
    list.push(two_vms_console_flood());
    list.push(guest_system_reset());
    list.push(guest_requested_dump());
    list.push(guest_dump_refused());
    list.push(vgic_lock_held());
    list.push(guest_unwind_chain());
    list.extend([
        bundle_overlapping_cpus(),
        bundle_too_much_memory(),
        bundle_missing_image(),
        bundle_malformed(),
    ]);
    list.extend(linux_scenarios());
    list.extend(guest_unwind_scenarios());
    list.push(hostile_next_to_linux());
    list.extend(stock_linux_scenarios());
    list
}

/// [`all`] plus, when `second` names a second QEMU (e.g. `qemu10`), a copy
/// `NAME@LABEL` of every scenario that is marked for it (guest-test
/// natively and in a VM, the Linux scenarios), after all the others.
pub fn with_second_qemu(list: Vec<Scenario>, second: Option<&str>) -> Vec<Scenario> {
    let copies: Vec<Scenario> = match second {
        Some(label) => list
            .iter()
            .filter(|s| s.also_on_second_qemu)
            .map(|s| s.on_second_qemu(label))
            .collect(),
        None => Vec::new(),
    };
    list.into_iter().chain(copies).collect()
}

/// One guest-test case: its name and how many CPUs it needs to run.
#[derive(Clone, Copy, Debug)]
pub struct GuestCase {
    /// As printed in `test NAME ... ok`.
    pub name: &'static str,
    /// With fewer CPUs the case is not required (guest-test may skip it,
    /// or report it `ok` with a note; either passes).
    pub min_cpus: u32,
}

const fn case(name: &'static str) -> GuestCase {
    GuestCase { name, min_cpus: 1 }
}

/// The cases guest-test must pass, natively and in a VM alike.
pub const GUEST_CASES: &[GuestCase] = &[
    case("psci-version"),
    case("psci-features"),
    case("psci-migrate-info-type"),
    case("psci-cpu-on-invalid"),
    case("psci-cpu-on-already-on"),
    case("psci-cpu-on"),
    case("psci-affinity-info"),
    GuestCase {
        name: "psci-cpu-off-on",
        min_cpus: 2,
    },
    case("psci-cpu-suspend"),
    case("mmio-abort"),
    case("outside-ram"),
    case("fp-simd"),
    // The CPU features shown to the guest work across traps. `ok (... not
    // shown)` where the CPU lacks one; on `-cpu max` see SHOWN_ON_MAX.
    case("sve-state"),
    case("pauth-keys"),
    case("mops"),
    case("counter-monotonic"),
    // The interrupt cases: checked against QEMU's GICv3 natively and
    // nmivisor's vGIC in a VM. Those needing two CPUs print `ok (1 CPU)`.
    case("gic-registers"),
    case("nmi-while-masked"),
    case("nmi-preempts-irq"),
    case("priority-order"),
    case("lr-overflow"),
    case("roundup"),
    case("sgi-storm"),
    case("spi-reroute-pending"),
    case("timer"),
    // Both EL1 timers and the PMU interrupt as level-sensitive PPIs.
    case("timer-pending-virtual"),
    case("timer-pending-physical"),
    case("timer-disable-while-pending-virtual"),
    case("timer-disable-while-pending-physical"),
    case("timer-wfi-masked-virtual"),
    case("timer-wfi-masked-physical"),
    // These print `ok (1 CPU)` on one CPU.
    case("timer-cpu-off-on-virtual"),
    case("timer-cpu-off-on-physical"),
    case("pmu-overflow-irq"),
    // Natively this prints `ok (native: no nmivisor test service)`.
    case("virtual-nmi"),
];

/// Feature cases that must really run (plain `ok`, no "not shown" note) on
/// `-cpu max`, which has SVE and PAuth on every QEMU the suite uses.
pub const SHOWN_ON_MAX: &[&str] = &["sve-state", "pauth-keys"];

/// Timeout of the scenarios that boot guest-test (it runs in seconds).
const GUEST_TIMEOUT_SECS: u64 = 60;

/// The summary line of guest-test when all goes well on `cpus` CPUs:
/// every required case, plus the optional ones if it ran them.
fn guest_summary(cpus: u32) -> String {
    let required = GUEST_CASES.iter().filter(|c| cpus >= c.min_cpus).count();
    let optional = GUEST_CASES.len() - required;
    let counts: Vec<String> = (required..=required + optional)
        .map(|n| n.to_string())
        .collect();
    format!(r"^({}) passed, 0 failed$", counts.join("|"))
}

/// guest-test on `cpus` (v)CPUs passes every case: each expected case line
/// is `ok` exactly once, nothing FAILED, and the summary counts them all
/// (so it also comes last: guest-test prints it after the cases).
fn guest_test_passes(mut s: Scenario, cpus: u32) -> Scenario {
    let summary = guest_summary(cpus);
    for c in GUEST_CASES.iter().filter(|c| cpus >= c.min_cpus) {
        let line = format!(r"^test {} \.\.\. ok\b", ::regex::escape(c.name));
        s = s.expect_count(regex(&line), 1);
    }
    for name in SHOWN_ON_MAX {
        s = s.expect_count(
            regex(&format!(r"^test {} \.\.\. ok$", ::regex::escape(name))),
            1,
        );
    }
    s.forbid(contains("FAILED"))
        .expect_count(regex(&summary), 1)
        .timeout_secs(GUEST_TIMEOUT_SECS)
}

/// guest-test's passing run, then the hypervisor powers the machine off.
fn guest_test_passes_then_power_off(s: Scenario, cpus: u32) -> Scenario {
    guest_test_passes(s, cpus)
        .expect_in_order([
            regex(&guest_summary(cpus)),
            contains("nmivisor: powering off"),
        ])
        .exit_code(0)
}

/// `guest-test-native-smpN`: guest-test alone at EL1, on QEMU's own PSCI
/// and PL011: the reference behaviour.
///
/// QEMU's built-in PSCI answers AFFINITY_INFO with lowest affinity level 1
/// as ON instead of INVALID_PARAMETERS; `guest-test.qemu-affinity-level`
/// tells guest-test to accept that (and say so in the case line). Under
/// nmivisor the check stays strict.
fn guest_test_native(n: u32) -> Scenario {
    guest_test_passes(
        Scenario::new(format!("guest-test-native-smp{n}"))
            .native_guest()
            .append("guest-test.qemu-affinity-level")
            .smp(n),
        n,
    )
    .exit_code(0)
    .also_on_second_qemu()
}

/// `guest-test-smpN`: the hypervisor runs guest-test as the one VM, on
/// every CPU; it passes as natively, then the hypervisor powers off.
fn guest_test_vm(n: u32) -> Scenario {
    let spec = BundleSpec::new().vm("guest-test", &all_cpus(n), "128M");
    guest_test_passes_then_power_off(
        Scenario::new(format!("guest-test-smp{n}"))
            .smp(n)
            .bundle(spec),
        n,
    )
    .forbid(contains("not started"))
    .also_on_second_qemu()
}

/// `two-vms`: VMs `a` (CPUs 0-1) and `b` (CPUs 2-3) each run guest-test to
/// the end at the same time. Every console line of a VM carries its name,
/// and the machine powers off only when the second VM has stopped.
fn two_vms() -> Scenario {
    let spec = BundleSpec::new()
        .vm("a", "0-1", "128M")
        .vm("b", "2-3", "128M");
    let mut s = Scenario::new("two-vms")
        .smp(4)
        .bundle(spec)
        .timeout_secs(GUEST_TIMEOUT_SECS * 2);
    let cases = GUEST_CASES.iter().filter(|c| c.min_cpus <= 2);
    for vm in ["a", "b"] {
        for c in cases.clone() {
            let line = format!(r"^\[{vm}\] test {} \.\.\. ok\b", ::regex::escape(c.name));
            s = s.expect_count(regex(&line), 1);
        }
        s = s
            .expect_count(
                regex(&format!(
                    r"^\[{vm}\] {} passed, 0 failed$",
                    cases.clone().count()
                )),
                1,
            )
            .expect_count(contains(format!("nmivisor: vm {vm}: powered off")), 1);
    }
    let s = s
        .forbid(contains("FAILED"))
        .forbid(contains("not started"))
        .forbid(regex(r"^test "));
    expect_clean_poweroff(s)
}

/// Every VM stopped and the machine powered off cleanly. The last VM to
/// stop may live on any CPU: the machine's shutdown then runs there and
/// must find every other CPU off.
fn expect_clean_poweroff(s: Scenario) -> Scenario {
    s.forbid(contains("did not power off"))
        .forbid(contains("did not take the STOP NMI"))
        .expect_in_order([
            contains("nmivisor: all VMs stopped"),
            contains("nmivisor: powering off"),
        ])
        .exit_code(0)
}

/// `vm-not-on-cpu0`: the only VM lives on CPUs 2-3 of 4, so its SYSTEM_OFF
/// runs the machine's shutdown on CPU 2, which must find CPUs 0, 1 and 3
/// off (it once waited for itself and never looked at CPU 0).
fn vm_not_on_cpu0() -> Scenario {
    let spec = BundleSpec::new().vm("c", "2-3", "128M");
    let passed = GUEST_CASES.iter().filter(|c| c.min_cpus <= 2).count();
    let s = Scenario::new("vm-not-on-cpu0")
        .smp(4)
        .bundle(spec)
        .timeout_secs(GUEST_TIMEOUT_SECS)
        .expect_count(regex(&format!(r"^{passed} passed, 0 failed$")), 1)
        .expect_count(contains("nmivisor: vm c: powered off"), 1)
        .forbid(contains("FAILED"));
    expect_clean_poweroff(s)
}

/// Lines guest-test's console-flood mode prints (guest-test/src/modes.rs).
const FLOOD_LINES: usize = 2000;

/// The flood lines of one VM (`prefix` is `""` or `"\[a\] "`): all of
/// them, whole, the first and the last exactly once, and the guest's own
/// count.
fn expect_flood(s: Scenario, prefix: &str) -> Scenario {
    s.expect_count(regex(&format!(r"^{prefix}guest-test: flood \d{{4}} x{{60}}$")), FLOOD_LINES)
        .expect_count(regex(&format!(r"^{prefix}guest-test: flood 0000 ")), 1)
        .expect_count(regex(&format!(r"^{prefix}guest-test: flood {} ", FLOOD_LINES - 1)), 1)
        .expect_count(
            regex(&format!(
                r"^{prefix}guest-test: console flood: {FLOOD_LINES} lines, transmit FIFO full \d+ times$"
            )),
            1,
        )
        // No guest byte reaches the terminal as an escape sequence.
        .forbid(contains("\x1b"))
        // Nor as a raw byte >= 0x80 (the console is read as lossy UTF-8).
        .forbid(contains("\u{fffd}"))
}

/// `console-flood`: one VM owns the terminal. It writes 2000 lines as fast
/// as its UART takes them, through its console queue, and an escape probe:
/// escape sequences and 8-bit bytes arrive escaped, while BEL and backspace
/// (a shell's line discipline) pass.
fn console_flood() -> Scenario {
    let spec = BundleSpec::new()
        .vm("guest-test", "0-1", "128M")
        .cmdline("guest-test.console-flood");
    let s = guest_test_passes_then_power_off(Scenario::new("console-flood").smp(2).bundle(spec), 2)
        .expect_count(
            contains("guest-test: escape probe ^[[2J^[]0;forged\x07 \\x9b\x08end"),
            1,
        );
    expect_flood(s, "")
}

/// `two-vms-console-flood`: both VMs flood their consoles at once and run
/// their cases. Each VM's lines arrive whole, with its name, none lost;
/// inside a "[vm] " line even CR, backspace and BEL are escaped.
fn two_vms_console_flood() -> Scenario {
    let spec = BundleSpec::new()
        .vm("a", "0-1", "128M")
        .cmdline("guest-test.console-flood")
        .vm("b", "2-3", "128M")
        .cmdline("guest-test.console-flood");
    let mut s = Scenario::new("two-vms-console-flood")
        .smp(4)
        .bundle(spec)
        .timeout_secs(GUEST_TIMEOUT_SECS * 2);
    let cases = GUEST_CASES.iter().filter(|c| c.min_cpus <= 2).count();
    for vm in ["a", "b"] {
        s = expect_flood(s, &format!(r"\[{vm}\] "))
            .expect_count(
                contains(format!(
                    "[{vm}] guest-test: escape probe ^[[2J^[]0;forged^G \\x9b^Hend"
                )),
                1,
            )
            .expect_count(regex(&format!(r"^\[{vm}\] {cases} passed, 0 failed$")), 1);
    }
    s.forbid(contains("FAILED"))
        .expect_in_order([
            contains("nmivisor: all VMs stopped"),
            contains("nmivisor: powering off"),
        ])
        .exit_code(0)
}

/// `guest-system-reset`: guest-test calls PSCI SYSTEM_RESET once; the
/// hypervisor reloads the VM from its image and it runs again to the end.
fn guest_system_reset() -> Scenario {
    let spec = BundleSpec::new()
        .vm("guest-test", "0-1", "128M")
        .cmdline("guest-test.system-reset");
    guest_test_passes_then_power_off(Scenario::new("guest-system-reset").smp(2).bundle(spec), 2)
        .expect_in_order([
            contains("guest-test: SYSTEM_RESET"),
            contains("nmivisor: vm guest-test: reset (SYSTEM_RESET from vCPU 0)"),
            contains("guest-test: running again after SYSTEM_RESET"),
            contains("guest-test: GIC distributor at reset after SYSTEM_RESET"),
        ])
        .expect_count(contains("guest-test: SYSTEM_RESET"), 1)
        .expect_count(contains("reset (SYSTEM_RESET"), 1)
}

/// `guest-requested-dump`: guest-test's secondaries spin in a named loop
/// and its boot vCPU asks for a hypervisor-wide dump (NMV_DUMP): every CPU
/// is reported with the VM, vCPU and guest registers.
/// A VM whose config says `dump = on` asks for a dump (NMV_DUMP): only its
/// own vCPUs are rounded up, and it sees only their guest registers, on its
/// own console. Nothing of the hypervisor (no EL2 block) is printed.
fn guest_requested_dump() -> Scenario {
    let spec = BundleSpec::new()
        .vm("guest-test", "0-3", "128M")
        .cmdline("guest-test.hyp-dump")
        .dump_on();
    let mut s = guest_test_passes_then_power_off(
        Scenario::new("guest-requested-dump").smp(4).bundle(spec),
        4,
    )
    .expect_in_order([
        contains("nmivisor: dump of vm guest-test (requested by vCPU 0): 4 of 4 vCPUs running"),
        contains("nmivisor: end of dump of vm guest-test"),
        contains("guest-test: hyp-dump: NMV_DUMP returned 0"),
    ])
    .expect_count(regex(r"^  vCPU 0 in a trap at EL1: PC 0x[0-9a-f]{16} "), 1)
    .forbid(contains("=== nmivisor: dump of all CPUs"))
    .forbid(regex(r"^EL2 "));
    for v in 1..4 {
        s = s.expect_count(
            regex(&format!(
                r"^  vCPU {v} running at EL1: PC 0x[0-9a-f]{{16}} .* vPMR 0x[0-9a-f]{{2}}$"
            )),
            1,
        );
    }
    s
}

/// `vgic-lock-held`: after its cases guest-test's vCPU 0 makes its CPU take
/// the VM's vGIC lock and keep it (a test call), while the other vCPUs stay
/// in the guest. A hypervisor-wide dump from the console monitor must still
/// reach every CPU: an NMI that arrives while a CPU runs the guest is
/// handled before that CPU's list registers are folded under the lock. The
/// VM runs on CPUs 1-3, so CPU 0 (where the UART interrupt and with it the
/// console monitor run) is not the one that holds the lock masked.
fn vgic_lock_held() -> Scenario {
    let spec = BundleSpec::new()
        .vm("guest-test", "1-3", "128M")
        .cmdline("guest-test.vgic-lock-holder");
    Scenario::new("vgic-lock-held")
        .test_hooks()
        .smp(4)
        .bundle(spec)
        .timeout_secs(GUEST_TIMEOUT_SECS)
        .append(&format!("nmivisor.test=vgic-lock-hold {NMI_TIMEOUT}"))
        .send_after(contains("holds vm guest-test's vGIC lock for good"), b"\x1d\x1d\x1dd")
        .expect_in_order([
            contains("test virtual-nmi ... ok"),
            contains("guest-test: vgic-lock-holder: 2 secondaries stay in SGI 9's handler; the hypervisor keeps the vGIC lock from now on"),
            contains("nmivisor: test: vCPU 0 holds vm guest-test's vGIC lock for good"),
            contains("=== nmivisor: dump of all CPUs (console monitor), from cpu 0 ==="),
            contains("=== end of dump: 4 CPUs dumped, 0 not responding ==="),
        ])
        .expect(regex(r"<hypervisor::vm::trap::hold_vgic_lock\+0x[0-9a-f]+>"))
        .until(contains("=== end of dump"))
}

/// Without `dump = on` (the default), NMV_DUMP is refused with
/// NOT_SUPPORTED and no CPU is stopped.
fn guest_dump_refused() -> Scenario {
    let spec = BundleSpec::new()
        .vm("guest-test", "0-3", "128M")
        .cmdline("guest-test.hyp-dump");
    guest_test_passes_then_power_off(Scenario::new("guest-dump-refused").smp(4).bundle(spec), 4)
        .expect_count(contains("guest-test: hyp-dump: NMV_DUMP refused (-1)"), 1)
        .expect_count(
            contains("NMV_DUMP refused (the bundle config does not say dump = on)"),
            1,
        )
        .forbid(contains("nmivisor: dump of vm"))
        .forbid(contains("=== nmivisor: dump of all CPUs"))
}

/// `guest-unwind-chain`: guest-test's CPU 1 spins with PSTATE.I set in a
/// known call chain (`guest-test.unwind-chain`): the console monitor's
/// dump unwinds its guest stack and names, from the bundle's `symbols`
/// (guest-test's own System.map), the four functions of the chain and the
/// job that called it, innermost first; then a byte typed into the VM's
/// PL011 releases the chain, which returns, and guest-test ends normally.
fn guest_unwind_chain() -> Scenario {
    let spec = BundleSpec::new()
        .vm("guest-test", "0-1", "128M")
        .cmdline("guest-test.unwind-chain")
        .with_symbols();
    let spinning = "guest-test: unwind-chain: cpu 1 spins in unwind_chain_spin";
    let frame =
        |n: u32, name: &str| regex(&format!(r"^  #{n} 0x[0-9a-f]{{16}} <{name}\+0x[0-9a-f]+>$"));
    guest_test_passes_then_power_off(Scenario::new("guest-unwind-chain").smp(2).bundle(spec), 2)
        .send_after(contains(spinning), b"\x1d\x1d\x1dd")
        .send_after(contains("=== end of dump: 2 CPUs dumped"), b"x")
        .expect_count(regex(r"^nmivisor: vm guest-test: \d{2,} guest symbols, text 0x"), 1)
        .expect_in_order([
            contains(spinning),
            contains("=== nmivisor: dump of all CPUs (console monitor), from cpu 0 ==="),
            contains("guest state: vm guest-test vCPU 1 (MPIDR 0x1), interrupted at EL1"),
            // PSTATE.I (SPSR bit 7) set.
            regex(r"^    SPSR 0x[0-9a-f]{6}[89a-f][0-9a-f]  ESR_EL1 "),
            regex(r"^guest backtrace \(EL1, x29 0x[0-9a-f]{16}; symbols: load offset 0 \(no vectors symbol\)\):$"),
            frame(0, "unwind_chain_spin"),
            frame(1, "unwind_chain_inner"),
            frame(2, "unwind_chain_middle"),
            frame(3, "unwind_chain_outer"),
            frame(4, "guest_test::unwind_chain::chain_job"),
            contains("=== end of dump: 2 CPUs dumped, 0 not responding ==="),
            contains("guest-test: unwind-chain: released, the chain returned"),
        ])
        .expect_count(regex(r"^  #0 0x[0-9a-f]{16} <unwind_chain_spin\+"), 1)
}

/// The hypervisor's refusal of VM `vm`: `nmivisor: vm NAME: not started:
/// REASON`, where REASON matches `reason` (a regex, case-insensitive).
fn refused(vm: &str, reason: &str) -> String {
    format!(r"^nmivisor: vm {vm}: not started: .*(?i:{reason})")
}

/// A bundle scenario on 4 CPUs: VM `good` (CPUs 0-1) runs guest-test to the
/// end while the hypervisor refuses VM `bad` for `reason`.
fn good_vm_and_refused(name: &str, spec: BundleSpec, bad: &str, reason: &str) -> Scenario {
    let s = Scenario::new(name).smp(4).bundle(spec);
    guest_test_passes_then_power_off(s, 2)
        .expect_count(regex(&refused(bad, reason)), 1)
        .expect_count(contains("not started"), 1)
        .forbid(contains("vm good: not started"))
}

/// `bundle-overlapping-cpus`: VM `clash` wants CPU 1, which VM `good`
/// already owns.
fn bundle_overlapping_cpus() -> Scenario {
    let spec = BundleSpec::new()
        .vm("good", "0-1", "128M")
        .vm("clash", "1-2", "128M")
        .unchecked();
    good_vm_and_refused(
        "bundle-overlapping-cpus",
        spec,
        "clash",
        r"\bcpus? 1\b|overlap",
    )
}

/// `bundle-too-much-memory`: VM `big` asks for 64 GiB of a 1 GiB machine.
fn bundle_too_much_memory() -> Scenario {
    let spec = BundleSpec::new()
        .vm("good", "0-1", "128M")
        .vm("big", "2-3", "64G")
        .unchecked();
    good_vm_and_refused("bundle-too-much-memory", spec, "big", "memory")
}

/// `bundle-missing-image`: VM `noimage` has a config but no image.
fn bundle_missing_image() -> Scenario {
    let spec = BundleSpec::new()
        .vm("good", "0-1", "128M")
        .vm("noimage", "2-3", "128M")
        .defect(Defect::NoImage("noimage".into()));
    good_vm_and_refused("bundle-missing-image", spec, "noimage", "image")
}

/// `bundle-malformed`: the archive is cut in half (inside the guest image,
/// trailer lost). The hypervisor names the problem, runs no VM, and powers
/// off instead of crashing.
fn bundle_malformed() -> Scenario {
    let spec = BundleSpec::new()
        .vm("good", "0-3", "128M")
        .defect(Defect::Truncate);
    let problem = regex(r"^nmivisor: bundle: .*(?i:truncat|past the end|trailer|malformed)");
    Scenario::new("bundle-malformed")
        .smp(4)
        .bundle(spec)
        .expect_in_order([
            problem.clone(),
            contains("nmivisor: no VM to run, powering off"),
        ])
        .expect_count(problem, 1)
        .forbid(regex(r"^test "))
        .timeout_secs(GUEST_TIMEOUT_SECS)
        .exit_code(0)
}

/// The NMI check-in bound the dump scenarios use. The default (100 ms of
/// wall-clock time) is what a real machine needs; an emulated CPU on a
/// loaded 2-core host can take longer to be scheduled, and a scenario that
/// asserts "0 not responding" must not depend on the host's load.
const NMI_TIMEOUT: &str = "nmivisor.nmi_timeout_ms=1000";

/// Symbolized frames name functions by their demangled path.
const SPIN_MASKED: &str = "hypervisor::boot::test_hooks::spin_with_irqs_masked_by_pmr";

/// Every CPU's dump block appears exactly once.
fn every_cpu_block(mut s: Scenario, n: u32) -> Scenario {
    for i in 0..n {
        s = s.expect_count(
            regex(&format!(r"^--- cpu {i} \(MPIDR 0x[0-9a-f]+\) ---$")),
            1,
        );
    }
    s
}

/// `nmi-dump-masked-smpN`: CPU 2 spins with interrupts masked by PMR; the
/// NMI roundup still gets its backtrace, symbolized, and every CPU's block.
fn dump_masked(n: u32) -> Scenario {
    let s = Scenario::new(format!("nmi-dump-masked-smp{n}"))
        .test_hooks()
        .smp(n)
        .append(&format!("nmivisor.test=dump-masked {NMI_TIMEOUT}"))
        .expect_in_order([
            contains("nmivisor: cpu 2 is spinning"),
            contains("=== nmivisor: dump of all CPUs (test hook), from cpu 0 ==="),
            contains("--- cpu 2 (MPIDR"),
            regex(&format!(
                r"^EL2 PC 0x[0-9a-f]{{16}} <{SPIN_MASKED}\+0x[0-9a-f]+>$"
            )),
            regex(r"PMR 0x80 "),
            regex(&format!(r"^\s+#0 0x[0-9a-f]{{16}} <{SPIN_MASKED}\+")),
            contains("--- cpu 3 (MPIDR"),
            contains("--- cpu 0 (MPIDR"),
            regex(r"<hypervisor::debug::roundup::dump_all_cpus\+0x[0-9a-f]+>"),
            contains(format!(
                "=== end of dump: {n} CPUs dumped, 0 not responding ==="
            )),
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
        .append(&format!("nmivisor.test=dump-hardmasked {NMI_TIMEOUT}"))
        .expect_in_order([
            contains("nmivisor: cpu 3 is spinning"),
            contains("=== nmivisor: dump of all CPUs"),
            contains("--- cpu 3 (MPIDR"),
            contains("cpu 3 not responding to the NMI (no answer within 1000 ms)"),
            contains("--- cpu 0 (MPIDR"),
            contains(format!(
                "=== end of dump: {} CPUs dumped, 1 not responding ===",
                n - 1
            )),
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
        .append(&format!(
            "nmivisor.test=panic nmivisor.panic=poweroff {NMI_TIMEOUT}"
        ))
        .allow("panicked")
        .expect_in_order([
            contains("nmivisor: cpu 1 panicked: panicked at"),
            contains("test hook: deliberate panic on cpu 1"),
            contains("=== nmivisor: crash on cpu 1: stopping and dumping all CPUs ==="),
            contains("--- cpu 0 (MPIDR"),
            contains("--- cpu 1 (MPIDR"),
            regex(r"<hypervisor::boot::test_hooks::panic_on_purpose\+0x[0-9a-f]+>"),
            contains(format!(
                "=== end of crash dump: {} CPUs stopped, 0 not responding ===",
                n - 1
            )),
            contains("nmivisor: cpu 1 panicked"),
            contains("nmivisor: powering off after the panic"),
        ])
        .expect_count(contains("test hook: deliberate panic on cpu 1"), 2);
    every_cpu_block(s, n).exit_code(0)
}

/// `panic-during-dump-smpN`: the boot CPU waits for CPU 3's backtrace
/// (PSTATE.I set, cannot answer) while CPU 1 panics. The roundup is busy,
/// yet the panic stops every CPU that can take the NMI: the waiting CPU 0,
/// CPU 2 (masked by priority) and the rest; only CPU 3 does not respond.
fn panic_during_dump(n: u32) -> Scenario {
    Scenario::new(format!("panic-during-dump-smp{n}"))
        .test_hooks()
        .smp(n)
        .append(&format!(
            "nmivisor.test=panic-during-dump nmivisor.panic=poweroff {NMI_TIMEOUT}"
        ))
        .allow("panicked")
        .expect_in_order([
            contains("nmivisor: asking cpu 3 for its backtrace"),
            contains("nmivisor: cpu 1 panicked: panicked at"),
            contains("=== nmivisor: crash on cpu 1: stopping and dumping all CPUs ==="),
            contains(format!(
                "=== end of crash dump: {} CPUs stopped, 1 not responding ===",
                n - 2
            )),
            contains("nmivisor: powering off after the panic"),
        ])
        // The count above comes from each CPU marking itself stopped after
        // its block. The blocks themselves are printed concurrently on this
        // path (outside the busy roundup's turn order), so under host load
        // a bust of the console lock may interleave them: not asserted.
        .forbid(contains("the roundup ended"))
        .exit_code(0)
}

/// `watchdog-smpN`: CPU 2 spins masked; its buddy's heartbeat check finds
/// it and fetches its backtrace over the NMI, with no manual trigger.
fn watchdog(n: u32) -> Scenario {
    Scenario::new(format!("watchdog-smp{n}"))
        .test_hooks()
        .smp(n)
        .append(&format!("nmivisor.test=watchdog nmivisor.watchdog=1 {NMI_TIMEOUT}"))
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
        .append(&format!("nmivisor.test=monitor {NMI_TIMEOUT}"))
        .send_after(contains("running test hook \"monitor\""), b"\x1d\x1d\x1dh")
        .send_after(contains("any other key"), b"\x1d\x1d\x1dd")
        .expect(contains("nmivisor monitor: press Ctrl-] three times"))
        .expect_in_order([
            contains("=== nmivisor: dump of all CPUs (console monitor), from cpu 0 ==="),
            contains(format!(
                "=== end of dump: {n} CPUs dumped, 0 not responding ==="
            )),
        ])
        .until(contains("=== end of dump"));
    every_cpu_block(s, n)
}

/// `el2-map`: the EL2 map covers the hypervisor's text but not the free
/// RAM guests are given; a guest-RAM window translates to its block only
/// while it is in use, and copies through windows cross block boundaries.
fn el2_map() -> Scenario {
    Scenario::new("el2-map")
        .test_hooks()
        .smp(2)
        .append("nmivisor.test=el2-map")
        .expect(regex(
            r"^nmivisor: el2-map: hypervisor text 0x4[0-9a-f]{7} -> 0x4[0-9a-f]{7} \(identity\)$",
        ))
        .expect(regex(
            r"^nmivisor: el2-map: free RAM 0x[0-9a-f]+ -> not mapped$",
        ))
        .expect(regex(
            r"^nmivisor: el2-map: window 0x7f[0-9a-f]{8}\+0x1234 -> 0x[0-9a-f]+234$",
        ))
        .expect(regex(
            r"^nmivisor: el2-map: window 0x7f[0-9a-f]{8} after use -> not mapped$",
        ))
        .expect(contains(
            "nmivisor: el2-map: copy across a block boundary ok",
        ))
        .exit_code(0)
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

// ---------------------------------------------------------------------------
// The Linux guest (`cargo xtask linux`): a 6.12 kernel with pseudo-NMIs and a
// busybox initramfs whose /init runs the flow named by `nmv.test=`
// (linux/init.sh). Each flow runs natively (QEMU's own GIC and PSCI, the
// reference) and under nmivisor (VM `linux` on all 4 CPUs); a failure of
// the native twin points at the kernel or the initramfs, not the hypervisor.
//
// Measured natively (QEMU 7.2 TCG, 2 host cores): userspace after ~1.5 s;
// whole flows 1.5 s (boot, poweroff) to 7 s (nmi-backtrace), 11 s
// (hardlockup), 16 s (hyp-dump). The timeouts allow several times that for
// the hypervisor, a loaded CI machine and the slower poweroff with a CPU
// stuck (Linux first waits for the normal stop IPI, then retries with NMIs).

/// Timeout of the native Linux scenarios.
const LINUX_NATIVE_TIMEOUT_SECS: u64 = 60;
/// Timeout of the Linux scenarios under the hypervisor.
const LINUX_VM_TIMEOUT_SECS: u64 = 150;

/// The line `/init` prints once userspace runs.
const USERSPACE_UP: &str = "nmv-init: userspace up (4 CPUs";

/// Every Linux scenario, natively and under nmivisor.
fn linux_scenarios() -> Vec<Scenario> {
    vec![
        linux_boot(true),
        linux_boot(false),
        linux_nmi_backtrace(true),
        linux_nmi_backtrace(false),
        linux_hardlockup(true),
        linux_hardlockup(false),
        linux_poweroff(true),
        linux_poweroff(false),
        linux_hyp_dump(),
    ]
}

/// The guest backtraces of the hypervisor's dumps and its guest lockup
/// detector, on the suite's Linux with pseudo-NMIs off.
fn guest_unwind_scenarios() -> Vec<Scenario> {
    vec![linux_hyp_dump_masked(), linux_guest_lockup()]
}

/// A Linux scenario `linux-NAME` (`linux-native-NAME` natively) with
/// `extra` on the guest command line: the kernel comes up with pseudo-NMIs
/// and every secondary CPU, userspace starts, and the flow powers off
/// (QEMU exits 0; under nmivisor, after `nmivisor: powering off`).
fn linux(name: &str, native: bool, extra: &str) -> Scenario {
    let cpus = crate::linux::CPUS;
    let mut s = if native {
        Scenario::new(format!("linux-native-{name}"))
            .linux_native(extra)
            .timeout_secs(LINUX_NATIVE_TIMEOUT_SECS)
    } else {
        Scenario::new(format!("linux-{name}"))
            .linux_vm(extra)
            .timeout_secs(LINUX_VM_TIMEOUT_SECS)
            .expect_in_order([
                contains("nmv-init: powering off"),
                contains("nmivisor: powering off"),
            ])
    };
    s = s.expect(contains(
        "GICv3: Pseudo-NMIs enabled using relaxed ICC_PMR_EL1 synchronisation",
    ));
    expect_all_cpus_up(s, cpus)
        .expect_in_order([
            contains("Run /init as init process"),
            contains(USERSPACE_UP),
            contains("nmv-init: powering off"),
        ])
        .exit_code(0)
        .also_on_second_qemu()
}

/// `linux-boot` / `linux-native-boot`: /proc/interrupts lists the IPIs
/// Linux requests as NMIs.
fn linux_boot(native: bool) -> Scenario {
    linux("boot", native, "nmv.test=boot")
        .expect(regex(r"^\s*IPI\d+:(\s+\d+){4}\s+CPU stop NMIs$"))
        .expect(regex(r"^\s*IPI\d+:(\s+\d+){4}\s+CPU backtrace interrupts$"))
        .expect(contains(
            "nmv-init: boot: /proc/interrupts lists the NMI IPIs",
        ))
}

/// `linux-nmi-backtrace` / `linux-native-nmi-backtrace`: CPU 3 spins in
/// LKDTM HARDLOCKUP (interrupts masked by PMR); sysrq-l still gets its
/// backtrace over the pseudo-NMI, and poweroff stops it with the NMI.
fn linux_nmi_backtrace(native: bool) -> Scenario {
    linux("nmi-backtrace", native, "nmv.test=nmi-backtrace")
        .expect_in_order([
            contains("nmv-init: CPU 3 locks up now (HARDLOCKUP)"),
            contains("sysrq: Show backtrace of all active CPUs"),
            regex(r"NMI backtrace for cpu 3$"),
            regex(r"\blkdtm_HARDLOCKUP\+0x"),
            contains("nmv-init: nmi-backtrace: CPU 3 answered the NMI"),
        ])
        .expect(regex(r"pc : lkdtm_HARDLOCKUP\+0x"))
        .forbid(contains("failed to stop secondary CPUs"))
}

/// `linux-hardlockup` / `linux-native-hardlockup`: with
/// `watchdog_thresh=1` the buddy detector reports CPU 3 and fetches its
/// backtrace over the NMI.
fn linux_hardlockup(native: bool) -> Scenario {
    linux(
        "hardlockup",
        native,
        "nmv.test=hardlockup watchdog_thresh=1",
    )
    .expect_in_order([
        contains("nmv-init: CPU 3 locks up now (HARDLOCKUP)"),
        contains("watchdog: Watchdog detected hard LOCKUP on cpu 3"),
        regex(r"NMI backtrace for cpu 3$"),
        regex(r"\blkdtm_HARDLOCKUP\+0x"),
        contains("nmv-init: hardlockup: the detector reported CPU 3"),
    ])
    .forbid(contains("failed to stop secondary CPUs"))
}

/// `linux-poweroff` / `linux-native-poweroff`: `poweroff -f` ends the run
/// cleanly.
fn linux_poweroff(native: bool) -> Scenario {
    linux("poweroff", native, "nmv.test=poweroff").expect_in_order([
        contains("nmv-init: powering off"),
        contains("reboot: Power down"),
    ])
}

// ---------------------------------------------------------------------------
// Debian's stock arm64 kernel (`linux-image-*-arm64-unsigned`, see
// `linux::stock`) with the suite's busybox initramfs: a real user's guest.
// It has no pseudo-NMI, so nothing here asks for NMIs; it has SVE, SME,
// PAuth and KASLR, and so tests what nmivisor shows the guest's CPU.

/// The stock kernel's command line: its console and the `poweroff` flow
/// of `linux/init.sh` (no `irqchip.gicv3_pseudo_nmi`, which it lacks).
pub const STOCK_CMDLINE: &str = "console=ttyAMA0 nmv.test=poweroff";

/// Timeout of the stock kernel natively (it takes about 10 s of guest
/// time to userspace, more in wall time on a loaded host).
const STOCK_NATIVE_TIMEOUT_SECS: u64 = 180;
/// Timeout of the stock kernel under the hypervisor.
const STOCK_VM_TIMEOUT_SECS: u64 = 300;

/// `linux-stock-boot` and `linux-native-stock-boot`, and the dump of the
/// stock kernel idling.
fn stock_linux_scenarios() -> Vec<Scenario> {
    vec![stock_linux(true), stock_linux(false), stock_linux_dump()]
}

/// `linux-stock-dump`: Debian's kernel (KASLR, pointer authentication of
/// return addresses, 52-bit VAs) idles on every CPU; the console
/// monitor's dump unwinds every vCPU's guest stack and names the frames
/// on target from the symbols xtask extracts from the kernel's own
/// kallsyms (Debian ships no System.map), after deriving the load offset
/// from VBAR_EL1: every vCPU gets a guest backtrace, every secondary's
/// innermost frame is named, and at least one is in `cpu_do_idle`.
fn stock_linux_dump() -> Scenario {
    let cpus = crate::linux::CPUS;
    let idling = "nmv-init: idle: every CPU idles";
    let mut s = Scenario::new("linux-stock-dump")
        .linux_vm("")
        .timeout_secs(STOCK_VM_TIMEOUT_SECS)
        .stock_kernel()
        .forbid(contains("Oops"))
        .forbid(contains("Internal error:"))
        .send_after(contains(idling), b"\x1d\x1d\x1dd")
        .expect_count(regex(r"^nmivisor: vm linux: \d{5,} guest symbols, text 0xffff800080000000-0xffff8000"), 1)
        .expect_in_order([
            contains(idling),
            contains("=== nmivisor: dump of all CPUs (console monitor), from cpu 0 ==="),
            contains(format!("=== end of dump: {cpus} CPUs dumped, 0 not responding ===")),
            contains("nmv-init: powering off"),
            contains("nmivisor: powering off"),
        ])
        .expect_count(
            regex(
                r"^guest backtrace \(EL1, x29 0x[0-9a-f]{16}; symbols: KASLR offset 0x[0-9a-f]+ \(VBAR_EL1 0x[0-9a-f]{16} = (vectors|__bp_harden_el1_vectors slot \d) \+ offset\)\):$",
            ),
            cpus as usize,
        )
        // At least one secondary is found in the idle instruction itself.
        // (Any of them may be in its timer interrupt, in the idle loop's
        // bookkeeping or, rarely, in a kernel thread when the keys come;
        // vCPU 0 runs the console and may be printing or in userspace.)
        .expect_at_least(regex(r"^  #0 0xffff[0-9a-f]{12} <cpu_do_idle\+0x[0-9a-f]+>$"), 1)
        .exit_code(0);
    for i in 0..cpus {
        s = s.expect_count(regex(&format!(r"^guest state: vm linux vCPU {i} \(")), 1);
    }
    // Each secondary (they print in CPU order, before the dumping CPU 0)
    // is in the kernel: its #0 is named, after its KASLR header.
    let mut order = Vec::new();
    for i in 1..cpus {
        order.push(regex(&format!(
            r"^guest state: vm linux vCPU {i} \(MPIDR 0x{i}\), "
        )));
        order.push(regex(
            r"^guest backtrace \(EL1, .*; symbols: KASLR offset 0x[0-9a-f]+ ",
        ));
        order.push(regex(
            r"^  #0 0xffff[0-9a-f]{12} <[A-Za-z0-9_.$]+\+0x[0-9a-f]+>$",
        ));
    }
    order.push(contains("--- cpu 0 (MPIDR 0x0) ---"));
    s = s.expect_in_order(order);
    s.boot = crate::harness::Boot::LinuxVm("console=ttyAMA0 nmv.test=idle".into());
    s
}

/// Debian's kernel boots on `-cpu max` with every CPU, runs the
/// initramfs' `/init` to userspace (its `uname -r` is the stock kernel's)
/// and powers off cleanly; no oops on the way.
fn stock_linux(native: bool) -> Scenario {
    let cpus = crate::linux::CPUS;
    let mut s = if native {
        let mut s = Scenario::new("linux-native-stock-boot")
            .linux_native("")
            .timeout_secs(STOCK_NATIVE_TIMEOUT_SECS);
        s.append = Some(STOCK_CMDLINE.into());
        s
    } else {
        let mut s = Scenario::new("linux-stock-boot")
            .linux_vm("")
            .timeout_secs(STOCK_VM_TIMEOUT_SECS)
            .expect_in_order([
                contains("nmv-init: powering off"),
                contains("nmivisor: powering off"),
            ]);
        s.boot = crate::harness::Boot::LinuxVm(STOCK_CMDLINE.into());
        s
    };
    s = s
        .stock_kernel()
        // A trap the hypervisor cannot handle kills this guest before its
        // console is up: stop at once instead of waiting for the timeout.
        .forbid(contains("unhandled exception class"))
        .forbid(contains("Internal error:"))
        .forbid(contains("Oops"))
        .expect(regex(
            r"^(\[[ \d.]+\] )?Booting Linux on physical CPU 0x0+ ",
        ));
    expect_all_cpus_up(s, cpus)
        .expect_in_order([
            contains("Run /init as init process"),
            regex(&format!(
                r"^nmv-init: userspace up \({cpus} CPUs, kernel 6\.12\.\d+\+deb\d+-arm64, test: poweroff\)$"
            )),
            contains("nmv-init: powering off"),
            contains("reboot: Power down"),
        ])
        .exit_code(0)
        .also_on_second_qemu()
}

/// `linux-hyp-dump`: every CPU is busy in the guest (CPUs 1-3 in the
/// kernel, LKDTM SOFTLOCKUP; CPU 0 in userspace); the console keys ask the
/// hypervisor for a dump, which shows each vCPU's guest PC and LR, and at
/// least one guest PC names a kernel function of System.map.
fn linux_hyp_dump() -> Scenario {
    let cpus = crate::linux::CPUS;
    let mut s = linux("hyp-dump", false, "nmv.test=hyp-dump")
        .send_after(
            contains("nmv-init: hyp-dump: every CPU is busy"),
            b"\x1d\x1d\x1dd",
        )
        .expect_in_order([
            contains("nmv-init: hyp-dump: every CPU is busy"),
            contains("=== nmivisor: dump of all CPUs (console monitor)"),
            contains(format!(
                "=== end of dump: {cpus} CPUs dumped, 0 not responding ==="
            )),
            contains("nmv-init: powering off"),
        ])
        .expect_at_least(
            regex(r"^\s+PC 0x[0-9a-f]{16}\s+LR 0x[0-9a-f]{16}"),
            cpus as usize,
        )
        .expect_guest_pc_symbol();
    for i in 0..cpus {
        s = s.expect_count(regex(&format!(r"^guest state: vm linux vCPU {i} \(")), 1);
    }
    s
}

/// The guest frames of vCPU 3 stuck in LKDTM HARDLOCKUP, symbolized on
/// target with the bundle's System.map (the suite kernel: no KASLR), as
/// `how` ("interrupted", "locked up") introduces them: the PC in
/// `lkdtm_HARDLOCKUP`, then its callers up to the system call entry.
fn hardlockup_guest_frames(how: &str) -> Vec<crate::harness::Pattern> {
    vec![
        contains(format!(
            "guest state: vm linux vCPU 3 (MPIDR 0x3), {how} at EL1"
        )),
        // PSTATE.I (SPSR bit 7) set: the guest masked interrupts itself.
        regex(r"^    SPSR 0x[0-9a-f]{6}[89a-f][0-9a-f]  ESR_EL1 "),
        regex(
            r"^guest backtrace \(EL1, x29 0x[0-9a-f]{16}; symbols: KASLR offset 0x0 \(VBAR_EL1 0x[0-9a-f]{16} = vectors \+ offset\)\):$",
        ),
        regex(r"^  #0 0x[0-9a-f]{16} <lkdtm_HARDLOCKUP\+0x[0-9a-f]+>$"),
        // lkdtm_HARDLOCKUP stores no frame record: its caller is in LR.
        regex(r"^  lr 0x[0-9a-f]{16} <lkdtm_do_action\+0x[0-9a-f]+>$"),
        regex(r"^  #[1-9] 0x[0-9a-f]{16} <direct_entry\+0x[0-9a-f]+>$"),
        regex(r"^  #\d+ 0x[0-9a-f]{16} <vfs_write\+0x[0-9a-f]+>$"),
        regex(r"^  #\d+ 0x[0-9a-f]{16} <el0_svc\+0x[0-9a-f]+>$"),
    ]
}

/// The suite's Linux VM booted with pseudo-NMIs off
/// (`irqchip.gicv3_pseudo_nmi=0`, so Linux's own sysrq-l and NMI
/// backtraces cannot reach a CPU that masked interrupts) whose CPU 3 spins
/// in LKDTM HARDLOCKUP with PSTATE.I set (`nmv.test=hyp-lockup`). The VM
/// carries the kernel's System.map.
fn linux_masked_lockup(name: &str) -> Scenario {
    let cpus = crate::linux::CPUS;
    Scenario::new(name)
        .linux_vm("nmv.test=hyp-lockup irqchip.gicv3_pseudo_nmi=0")
        .timeout_secs(LINUX_VM_TIMEOUT_SECS)
        .forbid(contains("Pseudo-NMIs enabled"))
        .expect_count(
            regex(r"^nmivisor: vm linux: \d{4,} guest symbols, text 0xffff8000"),
            1,
        )
        .expect_count(contains("Booted secondary processor"), cpus as usize - 1)
        .expect_in_order([
            contains(USERSPACE_UP),
            contains("nmv-init: CPU 3 locks up now (HARDLOCKUP)"),
            // The dump may cut this line short: the trigger is its start.
            contains("nmv-init: hyp-lockup: CPU 3 is stuck"),
            contains("nmv-init: powering off"),
            contains("nmivisor: powering off"),
        ])
        .exit_code(0)
}

/// `linux-hyp-dump-masked`: the console monitor's dump (Ctrl-] x3, d)
/// reaches CPU 3 although its guest masked interrupts with PSTATE.I (the
/// physical NMI SGI goes to EL2), and unwinds the guest's stack there:
/// `lkdtm_HARDLOCKUP` and its callers, named on target. Every vCPU's block
/// has a guest backtrace.
fn linux_hyp_dump_masked() -> Scenario {
    let cpus = crate::linux::CPUS;
    let mut order = vec![
        contains("nmv-init: hyp-lockup: CPU 3 is stuck"),
        contains("=== nmivisor: dump of all CPUs (console monitor), from cpu 0 ==="),
    ];
    order.extend(hardlockup_guest_frames("interrupted"));
    order.push(contains(format!(
        "=== end of dump: {cpus} CPUs dumped, 0 not responding ==="
    )));
    linux_masked_lockup("linux-hyp-dump-masked")
        .send_after(
            contains("nmv-init: hyp-lockup: CPU 3 is stuck"),
            b"\x1d\x1d\x1dd",
        )
        .expect_in_order(order)
        .expect_count(regex(r"^guest backtrace \(EL[01], "), cpus as usize)
        .expect_count(regex(r"^  #0 0x[0-9a-f]{16} <lkdtm_HARDLOCKUP\+"), 1)
        .expect_count(regex(r"^guest state: vm linux vCPU 3 "), 1)
}

/// `linux-guest-lockup`: the same stuck CPU with the hypervisor's guest
/// lockup detector on (`lockup = 2` in the VM's config) and no key typed:
/// vCPU 3 is reported once, with its guest frames, and the machine runs on
/// to a clean power-off; no other vCPU is reported while the guest runs.
/// (At power-off, Linux's `smp_send_stop` spins with interrupts masked for
/// a second of udelay(1) calls, longer under emulation, waiting for CPU 3:
/// the detector may rightly report vCPU 0 there, so that part is not
/// checked.)
fn linux_guest_lockup() -> Scenario {
    let mut order = vec![
        contains("nmv-init: CPU 3 locks up now (HARDLOCKUP)"),
        regex(
            r"^nmivisor: vm linux vCPU 3 \(cpu 3\): guest lockup: no interrupt taken and no trap for over \d+ ms \(.*PSTATE\.I set\)$",
        ),
    ];
    order.extend(hardlockup_guest_frames("locked up"));
    order.push(contains(
        "nmivisor: vm linux vCPU 3: end of the guest lockup report",
    ));
    order.push(contains("nmv-init: powering off"));
    linux_masked_lockup("linux-guest-lockup")
        .guest_lockup("2")
        .expect_count(
            contains("nmivisor: vm linux: guest lockup detector on, threshold 2000 ms"),
            1,
        )
        .expect_in_order(order)
        .expect_count(
            regex(r"^nmivisor: vm linux vCPU 3 \(cpu 3\): guest lockup: "),
            1,
        )
        .expect_count(regex(r"^  #0 0x[0-9a-f]{16} <lkdtm_HARDLOCKUP\+"), 1)
        .forbid_before(
            regex(r"^nmivisor: vm linux vCPU [0-2] \(cpu \d+\): guest lockup"),
            contains("nmv-init: powering off"),
        )
        .forbid(contains("=== nmivisor: dump of all CPUs"))
}

// ---------------------------------------------------------------------------
// A hostile guest next to Linux.

/// Operations the hostile guest runs in [`hostile_next_to_linux`].
const HOSTILE_OPS: u64 = 1_000_000;

/// The largest gap between two Linux heartbeats (100 ms apart) allowed
/// while the hostile guest runs, in guest time (the virtual counter): 20
/// periods. It covers a hypervisor-wide dump, which stops every CPU while
/// it prints, and a loaded emulation host that does not run a vCPU's
/// thread for a while; a guest that could stall Linux through the
/// hypervisor (a lock held, an NMI path blocked) would exceed it.
const HEARTBEAT_GAP_BOUND_MS: u64 = 2000;

/// `hostile-next-to-linux`: on 5 CPUs, the suite's Linux (CPUs 0-1,
/// `nmv.test=heartbeat`: a line every 100 ms of guest time with the
/// virtual counter) and guest-test's hostile mode (CPUs 2-3, 1,000,000
/// random operations); CPU 4 belongs to no VM.
///
/// Once Linux has beaten 20 times, the console monitor moves input to
/// the hostile VM and types the byte that starts it. At 200,000
/// operations the monitor asks for a dump of every CPU; at 400,000 it
/// makes CPU 4 spin with interrupts masked until the watchdog (threshold
/// 2 s) reports it. When the hostile VM has powered off (after its
/// deliberate SYSTEM_RESET race), input goes back to Linux, `stop` ends
/// its heartbeat, and it powers off.
///
/// Passes when: no hypervisor panic; the hostile guest reaches its count
/// with 0 undefined answers; the dump completes with every CPU and none
/// "not responding"; the watchdog reports CPU 4 and nothing else; the
/// heartbeat has no hole and no gap above [`HEARTBEAT_GAP_BOUND_MS`].
fn hostile_next_to_linux() -> Scenario {
    let guests = BundleSpec::new()
        .vm("hostile", "2-3", "128M")
        .cmdline(&format!(
            "guest-test.hostile seed=0x5eed ops={HOSTILE_OPS} wait=console"
        ));
    let mut s = Scenario::new("hostile-next-to-linux")
        .test_hooks()
        .smp(5)
        .mem(crate::linux::HOST_MEMORY)
        .append(&format!("nmivisor.watchdog=2 {NMI_TIMEOUT}"))
        .timeout_secs(900);
    s.boot = crate::harness::Boot::LinuxAndGuests {
        cmdline: crate::linux::cmdline("nmv.test=heartbeat"),
        linux_cpus: "0-1".into(),
        guests,
    };
    let done = format!("hostile: {HOSTILE_OPS} ops, 0 undefined answers");
    // Whole lines only: a trigger on a partial line would put the
    // monitor's answer in the middle of Linux's line.
    s.send_after(regex(r"nmv-init: heartbeat 20 [0-9a-f]{16} [0-9a-f]{16}$"), b"\x1d\x1d\x1dng")
        .send_after(contains("hostile: progress 200000 ops"), b"\x1d\x1d\x1dd")
        .send_after(contains("hostile: progress 400000 ops"), b"\x1d\x1d\x1dw")
        .send_after(contains("nmivisor: vm hostile: powered off"), b"\x1d\x1d\x1dnstop\r")
        .forbid(contains("Kernel panic"))
        .forbid(contains("Unable to handle kernel"))
        .forbid(contains("nmv-init: FAILED"))
        .forbid(contains("not started"))
        .forbid(contains("hostile: undefined:"))
        .forbid(contains("made no progress"))
        .forbid(regex(r"\bcpu \d+ not responding"))
        .forbid(contains("did not answer"))
        .forbid(contains("another dump is in progress"))
        .forbid(regex(r"hard LOCKUP on cpu [0-3]\b"))
        .expect_in_order([
            contains("nmv-init: heartbeat: a line every 100 ms"),
            contains("hostile: console input received, starting"),
            contains("=== nmivisor: dump of all CPUs (console monitor)"),
            contains("=== end of dump: 5 CPUs dumped, 0 not responding ==="),
            contains("nmivisor: watchdog test: cpu 4 spins with interrupts masked"),
            regex(r"^watchdog: hard LOCKUP on cpu 4 \(no heartbeat for over 2000 ms\)"),
            contains("nmivisor: watchdog test: cpu 4 was reported"),
            regex(r"hostile: counts value=\d+ ext-abort=\d+ s1-fault=\d+ undef=\d+ el1-trap=\d+ debug=\d+ smccc-ok=\d+ smccc-err=\d+ skipped=\d+ el0=[1-9]\d* cpu-off=[1-9]\d* cpu-on-started=[1-9]\d* time-ms=\d+"),
            contains(done.as_str()),
            contains("nmivisor: vm hostile: reset (SYSTEM_RESET from vCPU 0)"),
            contains("hostile: back after SYSTEM_RESET; powering off"),
            contains("nmivisor: vm hostile: powered off"),
            contains("nmv-init: heartbeat: stopped"),
            contains("nmivisor: all VMs stopped"),
            contains("nmivisor: powering off"),
        ])
        .expect_count(contains(done.as_str()), 1)
        .expect_count(contains("=== end of dump:"), 1)
        .expect_count(contains("watchdog: hard LOCKUP"), 1)
        .expect_heartbeat("nmv-init: heartbeat ", 100, HEARTBEAT_GAP_BOUND_MS)
        .report(contains("hostile: counts"))
        .report(contains("undefined answers"))
        .exit_code(0)
}

/// Linux booted each of its `cpus - 1` secondary CPUs exactly once and
/// says it brought all `cpus` up.
fn expect_all_cpus_up(mut s: Scenario, cpus: u32) -> Scenario {
    s = s.expect_count(contains("Booted secondary processor"), cpus as usize - 1);
    for cpu in 1..cpus {
        s = s.expect_count(
            regex(&format!(r"\bCPU{cpu}: Booted secondary processor ")),
            1,
        );
    }
    s.expect(contains(format!("smp: Brought up 1 node, {cpus} CPUs")))
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

    fn find(name: &str) -> Scenario {
        all()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no scenario {name}"))
    }

    fn assert_passes(s: &Scenario, log: &[String]) {
        let failures = check(&s.expects, log);
        assert!(failures.is_empty(), "{}: {failures:?}", s.name);
    }

    fn assert_fails(s: &Scenario, log: &[String], why: &str) {
        assert!(!check(&s.expects, log).is_empty(), "{}: {why}", s.name);
    }

    /// `log` without the lines that contain `text`: a broken run to check
    /// that a scenario notices what is missing.
    fn without(log: &[String], text: &str) -> Vec<String> {
        log.iter().filter(|l| !l.contains(text)).cloned().collect()
    }

    /// guest-test's output on `cpus` CPUs, every case ok.
    fn guest_log(cpus: u32) -> Vec<String> {
        let mut log = vec!["guest-test: 4 CPUs, PSCI 1.1".to_string()];
        for c in GUEST_CASES {
            if cpus >= c.min_cpus {
                log.push(format!("test {} ... ok", c.name));
            }
        }
        log.push(format!("{} passed, 0 failed", log.len() - 1));
        log
    }

    fn with_power_off(mut log: Vec<String>) -> Vec<String> {
        log.insert(0, "nmivisor v0.1.0 (EL2, GICv3)".into());
        log.push("nmivisor: vm guest-test: powered off".into());
        log.push("nmivisor: powering off".into());
        log
    }

    #[test]
    fn guest_test_expectations_accept_the_contract() {
        for n in [1, 2, 4] {
            assert_passes(&find(&format!("guest-test-native-smp{n}")), &guest_log(n));
            assert_passes(
                &find(&format!("guest-test-smp{n}")),
                &with_power_off(guest_log(n)),
            );
        }
        // Every case, and notes after `ok`, are accepted.
        let s = find("guest-test-native-smp2");
        let mut noted = guest_log(2);
        noted[1].push_str(" (PSCI 1.1)");
        assert_passes(&s, &noted);
    }

    #[test]
    fn guest_test_with_one_cpu_may_skip_or_pass_cpu_off_on() {
        let s = find("guest-test-native-smp1");
        let skipped = guest_log(1);
        assert!(!skipped.iter().any(|l| l.contains("psci-cpu-off-on")));
        assert_passes(&s, &skipped);
        let mut noted = guest_log(2);
        let at = noted
            .iter()
            .position(|l| l.contains("psci-cpu-off-on"))
            .unwrap();
        noted[at].push_str(" (skipped: only 1 CPU)");
        assert_passes(&s, &noted);
        // ...but never fails it.
        let mut failed = guest_log(2);
        failed[at] = "test psci-cpu-off-on ... FAILED: only 1 CPU".into();
        let last = failed.len() - 1;
        failed[last] = "12 passed, 1 failed".into();
        assert_fails(&s, &failed, "a FAILED case");
    }

    #[test]
    fn guest_test_expectations_reject_failures() {
        let s = find("guest-test-smp4");
        let good = with_power_off(guest_log(4));
        assert_passes(&s, &good);

        let missing = without(&good, "fp-simd");
        assert_fails(&s, &missing, "a missing case (the count is off too)");

        let mut failed = good.clone();
        let at = failed
            .iter()
            .position(|l| l.contains("mmio-abort"))
            .unwrap();
        failed[at] = "test mmio-abort ... FAILED: no abort".into();
        assert_fails(&s, &failed, "a FAILED case");

        let mut wrong_count = good.clone();
        let at = wrong_count
            .iter()
            .position(|l| l.ends_with("0 failed"))
            .unwrap();
        wrong_count[at] = "12 passed, 0 failed".into();
        assert_fails(&s, &wrong_count, "the wrong count");

        let no_off: Vec<String> = good[..good.len() - 1].to_vec();
        assert_fails(&s, &no_off, "no power-off line");

        let mut twice = good.clone();
        twice.insert(3, good[2].clone());
        assert_fails(&s, &twice, "a case reported twice");

        let mut refused = good.clone();
        refused.insert(1, "nmivisor: vm guest-test: not started: no image".into());
        assert_fails(&s, &refused, "a refused VM");

        // The native run needs no nmivisor lines, and the VM run needs them.
        assert_passes(&find("guest-test-native-smp4"), &guest_log(4));
        assert_fails(&s, &guest_log(4), "the native log under the hypervisor");
    }

    #[test]
    fn native_and_vm_runs_expect_the_same_cases() {
        let case_lines = |s: &Scenario| -> Vec<String> {
            let mut v: Vec<String> = s
                .expects
                .iter()
                .filter_map(|e| match e {
                    crate::harness::Expect::Count(p, 1) if p.to_string().contains("^test ") => {
                        Some(p.to_string())
                    }
                    _ => None,
                })
                .collect();
            v.sort();
            v
        };
        for n in [1, 2, 4] {
            let native = case_lines(&find(&format!("guest-test-native-smp{n}")));
            let vm = case_lines(&find(&format!("guest-test-smp{n}")));
            assert_eq!(native, vm);
            let want = if n == 1 {
                GUEST_CASES.len() - 1
            } else {
                GUEST_CASES.len()
            } + SHOWN_ON_MAX.len();
            assert_eq!(native.len(), want);
        }
    }

    #[test]
    fn bundle_scenarios_accept_the_contract() {
        let cases: &[(&str, &str)] = &[
            (
                "bundle-overlapping-cpus",
                "nmivisor: vm clash: not started: CPU 1 already belongs to VM \"good\"",
            ),
            (
                "bundle-too-much-memory",
                "nmivisor: vm big: not started: memory 0x1000000000 does not fit: only 0x30000000 bytes are left",
            ),
            (
                "bundle-missing-image",
                "nmivisor: vm noimage: not started: no image file (the guest kernel)",
            ),
        ];
        for (name, refusal) in cases {
            let s = find(name);
            assert_eq!(s.smp, 4);
            let mut log = with_power_off(guest_log(2));
            log.insert(1, (*refusal).into());
            assert_passes(&s, &log);
            // The other wording the contract allows for overlaps.
            if *name == "bundle-overlapping-cpus" {
                log[1] = "nmivisor: vm clash: not started: CPUs overlap with VM good".into();
                assert_passes(&s, &log);
            }
            // Without the refusal, or with the good VM refused, it fails.
            let mut quiet = log.clone();
            quiet.remove(1);
            assert_fails(&s, &quiet, "no refusal");
            let mut both = log.clone();
            both.insert(
                1,
                "nmivisor: vm good: not started: CPU 1 already belongs".into(),
            );
            assert_fails(&s, &both, "the good VM refused");
            let vm = refusal.split(' ').nth(2).unwrap();
            let mut wrong = log.clone();
            wrong[1] = format!("nmivisor: vm {vm}: not started: bad name");
            assert_fails(&s, &wrong, "a refusal for the wrong reason");
        }
    }

    #[test]
    fn malformed_bundle_expectations() {
        let s = find("bundle-malformed");
        let log: Vec<String> = [
            "nmivisor v0.1.0 (EL2, GICv3)",
            "nmivisor: bundle: cpio archive, entry at offset 0x1d8: file data runs past the end",
            "nmivisor: no VM to run, powering off",
        ]
        .map(String::from)
        .to_vec();
        assert_passes(&s, &log);
        let mut ran = log.clone();
        ran.insert(2, "test psci-version ... ok".into());
        assert_fails(&s, &ran, "a VM ran");
        let mut crashed = log.clone();
        crashed[2] =
            "*** unexpected exception: synchronous from current EL (SPx) on cpu 0 ***".into();
        assert_fails(&s, &crashed, "a crash");
        let mut vague = log.clone();
        vague[1] = "nmivisor: bundle: something".into();
        assert_fails(&s, &vague, "the problem is not named");
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

    /// The start of a native Linux boot, as QEMU 7.2 prints it (abridged).
    fn linux_boot_log() -> Vec<String> {
        [
            "[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]",
            "[    0.000000] GICv3: Pseudo-NMIs enabled using relaxed ICC_PMR_EL1 synchronisation",
            "[    0.157884] CPU1: Booted secondary processor 0x0000000001 [0x000f0510]",
            "[    0.175666] CPU2: Booted secondary processor 0x0000000002 [0x000f0510]",
            "[    0.181115] CPU3: Booted secondary processor 0x0000000003 [0x000f0510]",
            "[    0.187258] smp: Brought up 1 node, 4 CPUs",
            "[    1.175290] Run /init as init process",
            "nmv-init: userspace up (4 CPUs, kernel 6.12.117, test: boot)",
        ]
        .map(String::from)
        .to_vec()
    }

    fn linux_log(flow: &[&str], native: bool) -> Vec<String> {
        let mut log = linux_boot_log();
        log.extend(flow.iter().map(|l| l.to_string()));
        log.push("nmv-init: powering off".into());
        log.push("[    2.130036] reboot: Power down".into());
        if !native {
            log.insert(0, "nmivisor v0.1.0 (EL2, GICv3)".into());
            log.push("nmivisor: vm linux: powered off".into());
            log.push("nmivisor: powering off".into());
        }
        log
    }

    const NMI_BACKTRACE_FLOW: &[&str] = &[
        "nmv-init: CPU 3 locks up now (HARDLOCKUP)",
        "[    1.503632] lkdtm: Performing direct entry HARDLOCKUP",
        "nmv-init: sysrq-l: backtrace of all active CPUs",
        "[    3.509613] sysrq: Show backtrace of all active CPUs",
        "[    3.510044] NMI backtrace for cpu 0",
        "[    3.521037] NMI backtrace for cpu 2 skipped: idling at cpu_do_idle+0x24/0x48",
        "[    3.522183] NMI backtrace for cpu 3",
        "[    3.522439] pc : lkdtm_HARDLOCKUP+0x8/0x24",
        "[    3.523332]  lkdtm_HARDLOCKUP+0x8/0x24",
        "nmv-init: nmi-backtrace: CPU 3 answered the NMI",
    ];

    #[test]
    fn linux_scenarios_come_in_twins() {
        let names: Vec<String> = linux_scenarios().into_iter().map(|s| s.name).collect();
        for flow in ["boot", "nmi-backtrace", "hardlockup", "poweroff"] {
            assert!(names.contains(&format!("linux-{flow}")), "{flow}");
            assert!(names.contains(&format!("linux-native-{flow}")), "{flow}");
        }
        assert!(names.contains(&"linux-hyp-dump".to_string()));
        for s in linux_scenarios() {
            assert!(s.needs_linux());
            assert_eq!(s.smp, 4);
            let native = s.name.starts_with("linux-native-");
            assert_eq!(s.needs_build(), !native, "{}", s.name);
            let test = s
                .name
                .trim_start_matches("linux-")
                .trim_start_matches("native-");
            let cmdline = match &s.boot {
                crate::harness::Boot::LinuxNative => s.append.clone().unwrap(),
                crate::harness::Boot::LinuxVm(c) => c.clone(),
                other => panic!("{other:?}"),
            };
            assert!(
                cmdline.starts_with("console=ttyAMA0 irqchip.gicv3_pseudo_nmi=1 ")
                    && cmdline.contains(&format!("nmv.test={test}")),
                "{cmdline}"
            );
        }
    }

    #[test]
    fn linux_boot_expectations() {
        let interrupts = [
            "IPI3:         0          0          0          0       CPU stop NMIs",
            "IPI6:         0          0          0          0       CPU backtrace interrupts",
            "nmv-init: boot: /proc/interrupts lists the NMI IPIs",
        ];
        for native in [true, false] {
            let s = find(if native {
                "linux-native-boot"
            } else {
                "linux-boot"
            });
            let good = linux_log(&interrupts, native);
            assert_passes(&s, &good);
            let two_cpus = without(&good, "CPU3: Booted");
            assert_fails(&s, &two_cpus, "a secondary CPU missing");
            let no_nmi = without(&good, "Pseudo-NMIs");
            assert_fails(&s, &no_nmi, "pseudo-NMIs off");
            let no_ipi = without(&good, "CPU stop NMIs");
            assert_fails(&s, &no_ipi, "no CPU stop NMIs in /proc/interrupts");
            let mut failed = good.clone();
            failed.push("nmv-init: FAILED: /proc/interrupts lacks \"CPU stop NMIs\"".into());
            assert_fails(&s, &failed, "init reported a failure");
            let mut panic = good.clone();
            panic.push("[    1.0] Kernel panic - not syncing: No working init found.".into());
            assert_fails(&s, &panic, "a kernel panic");
        }
        // Under nmivisor the hypervisor must power off.
        let vm = find("linux-boot");
        let native_log = linux_log(&interrupts, true);
        assert_fails(&vm, &native_log, "no nmivisor power-off");
        let mut refused = linux_log(&interrupts, false);
        refused.insert(1, "nmivisor: vm linux: not started: no image".into());
        assert_fails(&vm, &refused, "the VM was refused");
    }

    #[test]
    fn linux_nmi_backtrace_expectations() {
        for name in ["linux-native-nmi-backtrace", "linux-nmi-backtrace"] {
            let s = find(name);
            let native = name.contains("native");
            assert_passes(&s, &linux_log(NMI_BACKTRACE_FLOW, native));
            // The control run (irqchip.gicv3_pseudo_nmi=0): no backtrace of
            // CPU 3, and the stop fails.
            let control: Vec<&str> = NMI_BACKTRACE_FLOW
                .iter()
                .copied()
                .filter(|l| !l.contains("cpu 3") && !l.contains("lkdtm_HARDLOCKUP+"))
                .collect();
            assert_fails(
                &s,
                &linux_log(&control, native),
                "no NMI backtrace for cpu 3",
            );
            let mut stuck = linux_log(NMI_BACKTRACE_FLOW, native);
            stuck.push("[    5.0] SMP: failed to stop secondary CPUs 3".into());
            assert_fails(&s, &stuck, "CPU 3 not stopped");
        }
    }

    #[test]
    fn linux_hardlockup_expectations() {
        let flow = [
            "nmv-init: CPU 3 locks up now (HARDLOCKUP)",
            "[    3.931889] watchdog: Watchdog detected hard LOCKUP on cpu 3",
            "[    3.932368] Sending NMI from CPU 2 to CPUs 3:",
            "[    3.939816] NMI backtrace for cpu 3",
            "[    3.940554] pc : lkdtm_HARDLOCKUP+0x8/0x24",
            "[    3.942021]  lkdtm_HARDLOCKUP+0x8/0x24",
            "nmv-init: hardlockup: the detector reported CPU 3",
        ];
        for name in ["linux-native-hardlockup", "linux-hardlockup"] {
            let s = find(name);
            assert!(
                matches!(&s.boot, crate::harness::Boot::LinuxNative)
                    || matches!(&s.boot, crate::harness::Boot::LinuxVm(c) if c.contains("watchdog_thresh=1"))
            );
            let native = name.contains("native");
            assert_passes(&s, &linux_log(&flow, native));
            assert_fails(&s, &linux_log(&flow[..1], native), "no detection");
        }
        assert!(find("linux-native-hardlockup")
            .append
            .unwrap()
            .contains("watchdog_thresh=1"));
    }

    #[test]
    fn linux_poweroff_expectations() {
        for name in ["linux-native-poweroff", "linux-poweroff"] {
            let s = find(name);
            let native = name.contains("native");
            assert_passes(&s, &linux_log(&[], native));
            let log = linux_log(&[], native);
            let no_off = without(&log, "Power down");
            assert_fails(&s, &no_off, "no power down");
        }
    }

    #[test]
    fn linux_hyp_dump_expectations() {
        let s = find("linux-hyp-dump");
        assert!(s.guest_pc_symbol);
        assert_eq!(s.inputs.len(), 1);
        assert_eq!(s.inputs[0].bytes, b"\x1d\x1d\x1dd");
        let mut flow = vec![
            "nmv-init: CPU 1 locks up now (SOFTLOCKUP)".to_string(),
            "nmv-init: hyp-dump: every CPU is busy; waiting for the hypervisor's dump".into(),
            "=== nmivisor: dump of all CPUs (console monitor), from cpu 0 ===".into(),
        ];
        for i in 0..4 {
            flow.push(format!("--- cpu {i} (MPIDR 0x8000000{i}) ---"));
            flow.push(format!(
                "guest state: vm linux vCPU {i} (MPIDR 0x{i}), interrupted at EL1"
            ));
            flow.push(
                "    PC 0xffff8000804ac5a8  LR 0xffff8000804ac2c0  SP 0xfff000000128fce0".into(),
            );
        }
        flow.push("=== end of dump: 4 CPUs dumped, 0 not responding ===".into());
        let flow: Vec<&str> = flow.iter().map(String::as_str).collect();
        let good = linux_log(&flow, false);
        assert_passes(&s, &good);
        // The dumping CPU shown only at EL2: its guest state is missing.
        let mut partial = good.clone();
        let at = partial
            .iter()
            .position(|l| l.starts_with("guest state: vm linux vCPU 0 "))
            .unwrap();
        partial[at] = "EL2 (dumping CPU)  PMR 0x80  DAIF 0x3c0".into();
        partial.remove(at + 1);
        assert_fails(&s, &partial, "vCPU 0's guest state missing");
        let no_dump: Vec<String> = good
            .iter()
            .filter(|l| !l.starts_with("===") && !l.starts_with("guest state"))
            .cloned()
            .collect();
        assert_fails(&s, &no_dump, "no dump");
    }

    /// vCPU 3's guest block of a real `linux-hyp-dump-masked` run.
    fn hardlockup_block(how: &str) -> Vec<String> {
        [
            &format!("guest state: vm linux vCPU 3 (MPIDR 0x3), {how} at EL1") as &str,
            "    PC 0xffff800080246e68  LR 0xffff800080246af4  SP 0xfff000000109fce0",
            "    SPSR 0x610000c5  ESR_EL1 0x56000000",
            "    TCR_EL1 0x08000031b54c350c",
            "guest backtrace (EL1, x29 0xfff000000109fce0; symbols: KASLR offset 0x0 (VBAR_EL1 0xffff800080010800 = vectors + offset)):",
            "  #0 0xffff800080246e68 <lkdtm_HARDLOCKUP+0x8>",
            "  lr 0xffff800080246af4 <lkdtm_do_action+0x18>",
            "  #1 0xffff800080246bac <direct_entry+0xa0>",
            "  #2 0xffff80008018f360 <full_proxy_write+0x5c>",
            "  #3 0xffff800080117dfc <vfs_write+0x84>",
            "  #8 0xffff800080287ae4 <el0_svc+0x20>",
        ]
        .map(String::from)
        .to_vec()
    }

    /// The frame of the suite's Linux with pseudo-NMIs off, around `flow`.
    fn masked_linux_log(flow: Vec<String>) -> Vec<String> {
        let mut log: Vec<String> = [
            "nmivisor: vm linux: 12645 guest symbols, text 0xffff800080000000-0xffff8000802a0000",
            "[    0.157884] CPU1: Booted secondary processor 0x0000000001 [0x000f0510]",
            "[    0.175666] CPU2: Booted secondary processor 0x0000000002 [0x000f0510]",
            "[    0.181115] CPU3: Booted secondary processor 0x0000000003 [0x000f0510]",
            "nmv-init: userspace up (4 CPUs, kernel 6.12.117, test: hyp-lockup)",
            "nmv-init: CPU 3 locks up now (HARDLOCKUP)",
        ]
        .map(String::from)
        .to_vec();
        log.extend(flow);
        log.extend(["nmv-init: powering off", "nmivisor: powering off"].map(String::from));
        log
    }

    /// The console of a passing `hostile-next-to-linux` run (abridged,
    /// from a real run), with heartbeats `gap_ms` apart in guest time.
    fn hostile_log(gap_ms: u64) -> Vec<String> {
        let mut log: Vec<String> = [
            "nmivisor: lockup watchdog on, threshold 2 s",
            "[hostile] hostile: seed 0x5eed, 1000000 ops on 2 vCPUs; RAM 0x40000000-0x48000000, EL0 code at 0x44000000",
            "[linux] nmv-init: heartbeat: a line every 100 ms; type stop to end",
        ]
        .map(String::from)
        .to_vec();
        let beat = |log: &mut Vec<String>, n: u64| {
            let ticks = 62_500 * gap_ms * n;
            log.push(format!(
                "[linux] nmv-init: heartbeat {n} {ticks:016x} 0000000003b9aca0"
            ));
        };
        for n in 0..60 {
            beat(&mut log, n);
        }
        log.extend(
            [
                "nmivisor: console input goes to vm hostile",
                "[hostile] hostile: console input received, starting",
                "[hostile] junk-hostile: progress 200000 ops",
                "=== nmivisor: dump of all CPUs (console monitor), from cpu 0 ===",
                "=== end of dump: 5 CPUs dumped, 0 not responding ===",
                "nmivisor: watchdog test: cpu 4 spins with interrupts masked",
                "watchdog: hard LOCKUP on cpu 4 (no heartbeat for over 2000 ms), detected by cpu 3",
                "nmivisor: watchdog test: cpu 4 was reported; back to its run loop",
                "[hostile] hostile: counts value=321379 ext-abort=224945 s1-fault=43035 undef=190671 el1-trap=36123 debug=3025 smccc-ok=13440 smccc-err=144040 skipped=23341 el0=200341 cpu-off=1735 cpu-on-started=1735 time-ms=191022",
                "[hostile] hostile: 1000000 ops, 0 undefined answers",
                "[hostile] hostile: SYSTEM_RESET while the other vCPUs keep going",
                "nmivisor: vm hostile: reset (SYSTEM_RESET from vCPU 0)",
                "[hostile] hostile: back after SYSTEM_RESET; powering off",
                "nmivisor: vm hostile: powered off (SYSTEM_OFF from vCPU 0)",
            ]
            .map(String::from),
        );
        for n in 60..120 {
            beat(&mut log, n);
        }
        log.extend(
            [
                "[linux] nmv-init: heartbeat: stopped",
                "nmivisor: vm linux: powered off (SYSTEM_OFF from vCPU 0)",
                "nmivisor: all VMs stopped",
                "nmivisor: powering off",
            ]
            .map(String::from),
        );
        log
    }

    #[test]
    fn guest_frames_of_a_masked_lockup() {
        let s = find("linux-hyp-dump-masked");
        assert_eq!(s.inputs[0].bytes, b"\x1d\x1d\x1dd");
        let mut flow = vec![
            "nmv-init: hyp-lockup: CPU 3 is stuck".to_string(),
            "=== nmivisor: dump of all CPUs (console monitor), from cpu 0 ===".into(),
        ];
        for i in 0..3 {
            flow.push(format!(
                "guest state: vm linux vCPU {i} (MPIDR 0x{i}), trapped to the hypervisor at EL1"
            ));
            flow.push("guest backtrace (EL1, x29 0xfff00000008efe10; symbols: KASLR offset 0x0 (VBAR_EL1 0xffff800080010800 = vectors + offset)):".into());
        }
        flow.extend(hardlockup_block("interrupted"));
        flow.push("=== end of dump: 4 CPUs dumped, 0 not responding ===".into());
        let good = masked_linux_log(flow);
        assert_passes(&s, &good);
        assert_fails(
            &s,
            &without(&good, "<lkdtm_HARDLOCKUP+"),
            "the stuck frame unnamed",
        );
        assert_fails(&s, &without(&good, "<lkdtm_do_action+"), "no lr line");
        assert_fails(&s, &without(&good, "<direct_entry+"), "the chain cut short");
        let mut unmasked = good.clone();
        let at = unmasked
            .iter()
            .position(|l| l.starts_with("    SPSR 0x610000c5"))
            .unwrap();
        unmasked[at] = "    SPSR 0x61000045  ESR_EL1 0x56000000".into();
        assert_fails(&s, &unmasked, "PSTATE.I clear");
        let mut pnmi = good.clone();
        pnmi.insert(
            1,
            "GICv3: Pseudo-NMIs enabled using relaxed ICC_PMR_EL1 synchronisation".into(),
        );
        assert_fails(&s, &pnmi, "pseudo-NMIs on");

        let l = find("linux-guest-lockup");
        assert!(l.inputs.is_empty(), "no key typed");
        assert_eq!(l.guest_lockup.as_deref(), Some("2"));
        let mut flow = vec![
            "nmivisor: vm linux: guest lockup detector on, threshold 2000 ms".to_string(),
            "nmivisor: vm linux vCPU 3 (cpu 3): guest lockup: no interrupt taken and no trap for over 2004 ms (virtual timer pending; INTID 27 pending at priority 0xc0, vPMR 0xf0; PSTATE.I set)".into(),
        ];
        flow.extend(hardlockup_block("locked up"));
        flow.push("nmivisor: vm linux vCPU 3: end of the guest lockup report".into());
        flow.push("nmv-init: hyp-lockup: CPU 3 is stuck; waiting for the hypervisor".into());
        let good = masked_linux_log(flow);
        assert_passes(&l, &good);
        let mut twice = good.clone();
        let at = twice
            .iter()
            .position(|l| l.contains("end of the guest lockup report"))
            .unwrap();
        twice.insert(at + 1, good[7].clone());
        assert_fails(&l, &twice, "reported twice");
        let mut other = good.clone();
        other.insert(7, "nmivisor: vm linux vCPU 1 (cpu 1): guest lockup: no interrupt taken and no trap for over 2100 ms (PSTATE.I set)".into());
        assert_fails(&l, &other, "another vCPU reported while the guest runs");
        // At power-off (smp_send_stop spinning masked) it may be reported.
        let mut at_poweroff = good.clone();
        let end = at_poweroff.len() - 1;
        at_poweroff.insert(end, other[7].clone());
        assert_passes(&l, &at_poweroff);
    }

    #[test]
    fn stock_dump_expectations() {
        let s = find("linux-stock-dump");
        let header = "guest backtrace (EL1, x29 0xffff80008016bdf0; symbols: KASLR offset 0x30685e600000 (VBAR_EL1 0xffffb068de610800 = vectors + offset)):";
        let mut log: Vec<String> = [
            "nmivisor: vm linux: 57737 guest symbols, text 0xffff800080000000-0xffff800080f50000",
            "nmv-init: idle: every CPU idles; waiting for the hypervisor's dump",
            "=== nmivisor: dump of all CPUs (console monitor), from cpu 0 ===",
        ]
        .map(String::from)
        .to_vec();
        let firsts = [
            "  #0 0xffffb068df52b7f0 <cpu_do_idle+0x8>",
            "  #0 0xffffb068df52b7f0 <cpu_do_idle+0x8>",
            // Found in the idle loop's bookkeeping rather than the WFI.
            "  #0 0xffffb068de7ad9a0 <tick_nohz_idle_stop_tick+0xd8>",
        ];
        for (i, first) in (1..4).zip(firsts) {
            log.push(format!("--- cpu {i} (MPIDR 0x{i}) ---"));
            log.push(format!(
                "guest state: vm linux vCPU {i} (MPIDR 0x{i}), trapped to the hypervisor at EL1"
            ));
            log.push(header.into());
            log.push(first.into());
            log.push("  #1 0xffffb068de71463c <do_idle+0x284>".into());
            log.push("  #0 0x000000004020ecb0 <hypervisor::debug::roundup::respond+0x29c>".into());
        }
        log.push("--- cpu 0 (MPIDR 0x0) ---".into());
        log.push(
            "guest state: vm linux vCPU 0 (MPIDR 0x0), trapped to the hypervisor at EL1".into(),
        );
        log.push(header.into());
        log.push("  #0 0x0000aaaac0de0040".into());
        log.extend(
            [
                "=== end of dump: 4 CPUs dumped, 0 not responding ===",
                "nmv-init: powering off",
                "nmivisor: powering off",
            ]
            .map(String::from),
        );
        assert_passes(&s, &log);
        let mut unnamed = log.clone();
        let at = unnamed
            .iter()
            .position(|l| l.contains("tick_nohz_idle_stop_tick"))
            .unwrap();
        unnamed[at] = "  #0 0xffffb068de7ad9a0".into();
        assert_fails(&s, &unnamed, "vCPU 3's #0 unnamed");
        let busy: Vec<String> = log
            .iter()
            .map(|l| l.replace("<cpu_do_idle+", "<pl011_read+"))
            .collect();
        assert_fails(&s, &busy, "no secondary in cpu_do_idle");
        let no_kaslr: Vec<String> = log
            .iter()
            .map(|l| l.replace("KASLR offset 0x30685e600000 (", "KASLR offset unknown ("))
            .collect();
        assert_fails(&s, &no_kaslr, "no offset derived");
    }

    #[test]
    fn hostile_expectations() {
        let s = find("hostile-next-to-linux");
        assert!(s.needs_guest() && s.needs_linux());
        assert_eq!(s.inputs.len(), 4);
        assert_eq!(s.inputs[0].bytes, b"\x1d\x1d\x1dng");
        assert_passes(&s, &hostile_log(100));
        assert_fails(&s, &hostile_log(2100), "heartbeats 2.1 s apart");
        let with = |from: &str, to: &str| -> Vec<String> {
            hostile_log(100)
                .into_iter()
                .map(|l| {
                    if l.contains(from) {
                        l.replace(from, to)
                    } else {
                        l
                    }
                })
                .collect()
        };
        assert_fails(
            &s,
            &with("0 undefined answers", "1 undefined answers"),
            "an undefined answer",
        );
        assert_fails(
            &s,
            &with("0 not responding", "1 not responding"),
            "a CPU not responding",
        );
        assert_fails(&s, &with("1000000 ops,", "999999 ops,"), "fewer operations");
        assert_fails(
            &s,
            &with("on cpu 4 (no", "on cpu 2 (no"),
            "the watchdog reported a VM's CPU",
        );
        let mut hole = hostile_log(100);
        hole.retain(|l| !l.contains("nmv-init: heartbeat 61 "));
        assert_fails(&s, &hole, "a missing heartbeat");
        let mut undefined = hostile_log(100);
        undefined.push(
            "[hostile] hostile: undefined: cpu 0 op sgi at 0x1: esr 0x2000000 value 0x0: x".into(),
        );
        assert_fails(&s, &undefined, "an undefined answer listed");
    }

    /// A stock kernel's boot as QEMU 7.2 prints it natively (abridged).
    fn stock_log(native: bool) -> Vec<String> {
        let mut log: Vec<String> = [
            "[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]",
            "[    0.000000] Linux version 6.12.117+deb12-arm64 (debian-kernel@lists.debian.org)",
            "[    0.301017] CPU1: Booted secondary processor 0x0000000001 [0x000f0510]",
            "[    0.321771] CPU2: Booted secondary processor 0x0000000002 [0x000f0510]",
            "[    0.340312] CPU3: Booted secondary processor 0x0000000003 [0x000f0510]",
            "[    0.342000] smp: Brought up 1 node, 4 CPUs",
            "[    9.875290] Run /init as init process",
            "nmv-init: userspace up (4 CPUs, kernel 6.12.117+deb12-arm64, test: poweroff)",
            "nmv-init: counter at userspace: 0000000025c3f5a1 0000000003b9aca0",
            "nmv-init: powering off",
            "[   10.130036] reboot: Power down",
        ]
        .map(String::from)
        .to_vec();
        if !native {
            log.insert(0, "nmivisor v0.1.0 (EL2, GICv3)".into());
            log.push("nmivisor: vm linux: powered off".into());
            log.push("nmivisor: powering off".into());
        }
        log
    }

    #[test]
    fn stock_kernel_expectations() {
        for native in [true, false] {
            let s = find(if native {
                "linux-native-stock-boot"
            } else {
                "linux-stock-boot"
            });
            assert_eq!(s.linux_kernel, crate::harness::LinuxKernel::Stock);
            assert!(s.needs_linux() && s.also_on_second_qemu);
            let cmdline = match &s.boot {
                crate::harness::Boot::LinuxNative => s.append.clone().unwrap(),
                crate::harness::Boot::LinuxVm(c) => c.clone(),
                other => panic!("{other:?}"),
            };
            // No pseudo-NMI asked for: the stock kernel has none.
            assert_eq!(cmdline, STOCK_CMDLINE);
            let good = stock_log(native);
            assert_passes(&s, &good);
            // The suite's own kernel is not the stock one.
            let suite: Vec<String> = good
                .iter()
                .map(|l| l.replace("kernel 6.12.117+deb12-arm64", "kernel 6.12.117"))
                .collect();
            assert_fails(&s, &suite, "not Debian's kernel");
            let no_off = without(&good, "Power down");
            assert_fails(&s, &no_off, "no power down");
            let mut oops = good.clone();
            oops.insert(
                6,
                "[    1.0] Internal error: Oops - Undefined instruction: 0000000002000000 [#1] SMP"
                    .into(),
            );
            assert_fails(&s, &oops, "an oops");
            let three = without(&good, "CPU3: Booted");
            assert_fails(&s, &three, "a CPU missing");
            let mut trap = good.clone();
            trap.insert(
                1,
                "nmivisor: vm linux: unhandled exception class, injecting UNDEFINED (0x66000000)"
                    .into(),
            );
            assert_fails(&s, &trap, "a trap the hypervisor does not handle");
        }
        assert_fails(
            &find("linux-stock-boot"),
            &stock_log(true),
            "no nmivisor power-off",
        );
    }

    #[test]
    fn second_qemu_copies() {
        let base = all();
        assert_eq!(with_second_qemu(base.clone(), None).len(), base.len());
        let both = with_second_qemu(base.clone(), Some("qemu10"));
        let copies: Vec<&Scenario> = both.iter().filter(|s| s.on_second_qemu).collect();
        let names: Vec<&str> = copies.iter().map(|s| s.name.as_str()).collect();
        for n in [1, 2, 4] {
            assert!(names.contains(&format!("guest-test-native-smp{n}@qemu10").as_str()));
            assert!(names.contains(&format!("guest-test-smp{n}@qemu10").as_str()));
        }
        for n in [
            "linux-boot",
            "linux-native-boot",
            "linux-hyp-dump",
            "linux-stock-boot",
            "linux-native-stock-boot",
        ] {
            assert!(names.contains(&format!("{n}@qemu10").as_str()), "{n}");
        }
        // Hypervisor-only scenarios run once.
        assert!(!names
            .iter()
            .any(|n| n.starts_with("smp-") || n.starts_with("nmi-dump")));
        // The copies come last, with the same expectations.
        assert!(both[..base.len()].iter().all(|s| !s.on_second_qemu));
        let g = both
            .iter()
            .find(|s| s.name == "guest-test-smp2@qemu10")
            .unwrap();
        assert_eq!(g.expects.len(), find("guest-test-smp2").expects.len());
        // Names stay unique.
        let mut all_names: Vec<&str> = both.iter().map(|s| s.name.as_str()).collect();
        all_names.sort();
        all_names.dedup();
        assert_eq!(all_names.len(), both.len());
    }
}
