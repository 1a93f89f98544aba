//! PSCI cases: version, features, migration, CPU_ON/CPU_OFF and
//! AFFINITY_INFO, checked against DEN0022D's return codes.

use super::Outcome;
use crate::entry::{secondary_entry_address, PROBE_CONTEXT};
use crate::psci::{self as p, *};
use crate::secondary::{self, Job};
use crate::{cpu, dt, fail};

/// How long a started CPU may take to check in, and a stopped one to
/// report OFF.
const CPU_TIMEOUT_MS: u64 = 2000;

pub fn version() -> Outcome {
    let v = p::version();
    if v < 0x1_0000 {
        fail!("PSCI_VERSION returned {v:#x}, want 1.0 or later (>= 0x10000)");
    }
    Ok(None)
}

pub fn features() -> Outcome {
    const SUPPORTED: [(&str, u32); 8] = [
        ("PSCI_VERSION", PSCI_VERSION),
        ("CPU_ON_64", CPU_ON_64),
        ("CPU_OFF", CPU_OFF),
        ("AFFINITY_INFO_64", AFFINITY_INFO_64),
        ("SYSTEM_OFF", SYSTEM_OFF),
        ("SYSTEM_RESET", SYSTEM_RESET),
        ("MIGRATE_INFO_TYPE", MIGRATE_INFO_TYPE),
        ("PSCI_FEATURES", PSCI_FEATURES),
    ];
    for (name, fid) in SUPPORTED {
        let r = p::features(fid);
        if r != SUCCESS {
            fail!("PSCI_FEATURES({name} {fid:#x}) = {r}, want 0 (supported)");
        }
    }
    const UNUSED: u32 = 0x8400_001F;
    let r = p::features(UNUSED);
    if r != NOT_SUPPORTED {
        fail!("PSCI_FEATURES({UNUSED:#x}) = {r}, want {NOT_SUPPORTED} (NOT_SUPPORTED)");
    }
    Ok(None)
}

pub fn migrate_info_type() -> Outcome {
    let r = p::migrate_info_type();
    if r != 2 {
        fail!("MIGRATE_INFO_TYPE = {r}, want 2 (no migration needed)");
    }
    Ok(None)
}

pub fn cpu_on_invalid() -> Outcome {
    let mpidr = dt::platform().cpus.unused_mpidr();
    let r = p::cpu_on(mpidr, secondary_entry_address(), PROBE_CONTEXT);
    if r != INVALID_PARAMETERS {
        fail!("CPU_ON({mpidr:#x}, not in the DT) = {r}, want {INVALID_PARAMETERS} (INVALID_PARAMETERS)");
    }
    Ok(None)
}

pub fn cpu_on_already_on() -> Outcome {
    let mpidr = dt::platform().cpus.mpidr(0);
    let r = p::cpu_on(mpidr, secondary_entry_address(), PROBE_CONTEXT);
    if r != ALREADY_ON {
        fail!("CPU_ON({mpidr:#x}, the boot CPU) = {r}, want {ALREADY_ON} (ALREADY_ON)");
    }
    Ok(None)
}

/// Starts `cpu` with CPU_ON and waits for it to check in with the right
/// MPIDR (also used by bench mode).
pub fn start(cpu: usize) -> Result<(), super::Reason> {
    let mpidr = dt::platform().cpus.mpidr(cpu);
    let before = secondary::checkins(cpu);
    let r = p::cpu_on(mpidr, secondary_entry_address(), cpu as u64);
    if r != SUCCESS {
        fail!("CPU_ON({mpidr:#x}) = {r}, want 0");
    }
    if !secondary::wait_checkin(cpu, before, CPU_TIMEOUT_MS) {
        fail!("cpu {cpu} ({mpidr:#x}) did not check in within {CPU_TIMEOUT_MS} ms of CPU_ON");
    }
    let seen = secondary::reported_mpidr(cpu) & crate::topology::MPIDR_AFF_MASK;
    if seen != mpidr {
        fail!("cpu {cpu} started with MPIDR {seen:#x}, want {mpidr:#x}");
    }
    Ok(())
}

pub fn cpu_on() -> Outcome {
    let cpus = dt::platform().cpus;
    if cpus.count() == 1 {
        return Ok(Some("1 CPU"));
    }
    for cpu in 1..cpus.count() {
        start(cpu)?;
    }
    for cpu in 1..cpus.count() {
        let mpidr = cpus.mpidr(cpu);
        let r = p::affinity_info(mpidr, 0);
        if r != AFFINITY_ON {
            fail!("AFFINITY_INFO({mpidr:#x}, 0) = {r} after check-in, want 0 (ON)");
        }
    }
    Ok(None)
}

pub fn affinity_info() -> Outcome {
    let cpus = dt::platform().cpus;
    let boot = cpus.mpidr(0);
    let r = p::affinity_info(boot, 0);
    if r != AFFINITY_ON {
        fail!("AFFINITY_INFO({boot:#x}, 0) = {r} for the calling CPU, want 0 (ON)");
    }
    let unused = cpus.unused_mpidr();
    let r = p::affinity_info(unused, 0);
    if r != INVALID_PARAMETERS {
        fail!("AFFINITY_INFO({unused:#x}, not in the DT) = {r}, want {INVALID_PARAMETERS} (INVALID_PARAMETERS)");
    }
    let r = p::affinity_info(boot, 1);
    if r == AFFINITY_ON && dt::platform().has_bootarg(ACCEPT_QEMU_AFFINITY_LEVEL) {
        return Ok(Some(QEMU_AFFINITY_NOTE));
    }
    if r != INVALID_PARAMETERS {
        fail!("AFFINITY_INFO({boot:#x}, lowest level 1) = {r}, want {INVALID_PARAMETERS} (INVALID_PARAMETERS)");
    }
    Ok(None)
}

/// Boot argument that lets psci-affinity-info accept QEMU's built-in PSCI
/// (no EL2 or EL3 emulated): it answers AFFINITY_INFO with a lowest
/// affinity level above 0 with 0 (ON), for any MPIDR ("everything above
/// level 0 is always on"), where PSCI 1.0+ implementations such as
/// TF-A and nmivisor, which only support level 0, return
/// INVALID_PARAMETERS. Never set under nmivisor.
pub const ACCEPT_QEMU_AFFINITY_LEVEL: &str = "guest-test.qemu-affinity-level";

/// The `ok` note when [`ACCEPT_QEMU_AFFINITY_LEVEL`] was used.
const QEMU_AFFINITY_NOTE: &str =
    "level 1 answered 0, not -2: accepted by guest-test.qemu-affinity-level";

pub fn cpu_off_on() -> Outcome {
    let cpus = dt::platform().cpus;
    if cpus.count() == 1 {
        return Ok(Some("1 CPU"));
    }
    let cpu = 1;
    let mpidr = cpus.mpidr(cpu);
    if secondary::checkins(cpu) == 0 {
        fail!("cpu {cpu} is not running (psci-cpu-on failed?)");
    }
    let ticket = secondary::post(cpu, Job::CpuOff);
    let mut state = p::affinity_info(mpidr, 0);
    let off = cpu::wait_ms(CPU_TIMEOUT_MS, || {
        state = p::affinity_info(mpidr, 0);
        state == AFFINITY_OFF || ticket.is_done()
    });
    if let Some(out) = ticket.wait(0) {
        fail!("cpu {cpu}: CPU_OFF returned {}", out.detail as i64);
    }
    if !off {
        ticket.cancel();
        fail!("AFFINITY_INFO({mpidr:#x}, 0) = {state} {CPU_TIMEOUT_MS} ms after CPU_OFF, want 1 (OFF)");
    }
    start(cpu)?;
    let r = p::affinity_info(mpidr, 0);
    if r != AFFINITY_ON {
        fail!("AFFINITY_INFO({mpidr:#x}, 0) = {r} after the second CPU_ON, want 0 (ON)");
    }
    Ok(None)
}
