//! PSCI 1.1 for guests (Arm DEN0022D): argument checking and the answer
//! to each call, over a small view of the VM ([`PsciVm`]).
//!
//! [`handle`] decides; the caller acts. Calls that change vCPU state come
//! back as a [`PsciCall`] other than `Return`, so this module holds no state
//! and never touches a vCPU.

/// Function IDs (DEN0022D, "PSCI functions"), as the smccc crate defines
/// them; `_64` is the SMC64 form.
pub mod fid {
    pub use smccc::psci::{
        PSCI_AFFINITY_INFO_32 as AFFINITY_INFO, PSCI_AFFINITY_INFO_64 as AFFINITY_INFO_64,
        PSCI_CPU_OFF as CPU_OFF, PSCI_CPU_ON_32 as CPU_ON, PSCI_CPU_ON_64 as CPU_ON_64,
        PSCI_CPU_SUSPEND_32 as CPU_SUSPEND, PSCI_CPU_SUSPEND_64 as CPU_SUSPEND_64, PSCI_FEATURES,
        PSCI_MIGRATE_INFO_TYPE as MIGRATE_INFO_TYPE, PSCI_SYSTEM_OFF as SYSTEM_OFF,
        PSCI_SYSTEM_RESET as SYSTEM_RESET, PSCI_VERSION,
    };
}

/// Return codes (DEN0022D, "Return error codes"): the smccc crate's,
/// widened to the 64-bit x0 a guest reads.
pub mod ret {
    use smccc::psci::error as e;

    /// Success.
    pub const SUCCESS: i64 = e::SUCCESS as i64;
    /// The call or its variant is not implemented.
    pub const NOT_SUPPORTED: i64 = e::NOT_SUPPORTED as i64;
    /// A bad argument.
    pub const INVALID_PARAMETERS: i64 = e::INVALID_PARAMETERS as i64;
    /// Part of the spec table: nmivisor never returns it; the tests check it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub const DENIED: i64 = e::DENIED as i64;
    /// CPU_ON of a vCPU that is on.
    pub const ALREADY_ON: i64 = e::ALREADY_ON as i64;
    /// CPU_ON of a vCPU that is being turned on.
    pub const ON_PENDING: i64 = e::ON_PENDING as i64;
    /// Part of the spec table: nmivisor never returns it; the tests check it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub const INTERNAL_FAILURE: i64 = e::INTERNAL_FAILURE as i64;
    /// An entry point outside the guest's RAM.
    pub const INVALID_ADDRESS: i64 = e::INVALID_ADDRESS as i64;
}

/// PSCI 1.1: major version in bits [31:16], minor in [15:0].
pub const VERSION: i64 = 0x0001_0001;

/// MIGRATE_INFO_TYPE 2: no Trusted OS, so nothing needs migrating
/// (DEN0022D, MIGRATE_INFO_TYPE).
const MIGRATE_NOT_NEEDED: i64 = 2;

/// SMCCC_VERSION: PSCI_FEATURES reports it so that guests (Linux's
/// `psci_init_smccc`) go on to ask for the SMCCC version (DEN0028, SMCCC_VERSION).
use smccc::arch::SMCCC_VERSION;

/// The affinity fields of an MPIDR, Aff3 [39:32] and Aff2..Aff0 [23:0];
/// other bits of an MPIDR argument are ignored.
pub const MPIDR_AFF_MASK: u64 = 0xff_00ff_ffff;

/// A vCPU's PSCI power state (AFFINITY_INFO's answers in DEN0022D).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    On,
    Off,
    /// CPU_ON was accepted but the vCPU has not started running yet.
    OnPending,
}

/// What PSCI needs to know about the calling VM.
pub trait PsciVm {
    /// The vCPU index whose virtual MPIDR affinity is `mpidr` (already
    /// masked with [`MPIDR_AFF_MASK`]), if the VM has one.
    fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<usize>;
    fn power_state(&self, vcpu: usize) -> PowerState;
    /// Whether `ipa` is guest RAM the vCPU may start executing at.
    fn entry_is_valid(&self, ipa: u64) -> bool;
}

/// What the caller does for a PSCI call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciCall {
    /// Put this value in x0 and return to the guest.
    Return(i64),
    /// Start `vcpu` at `entry` with x0 = `context` (EL1h, MMU off, DAIF
    /// masked, as DEN0022D requires for CPU_ON), then return 0 to the caller.
    CpuOn {
        vcpu: usize,
        entry: u64,
        context: u64,
    },
    /// Power the calling vCPU off; the call does not return.
    CpuOff,
    /// Idle the calling vCPU like WFI, then return 0.
    Suspend,
    SystemOff,
    SystemReset,
}

/// Handles PSCI function `fid` with arguments x1..x3; `None` if `fid` is
/// not in the PSCI range (SMCCC owning entity 4, functions 0x00-0x1F), so
/// the caller can try other services. Unimplemented PSCI functions return
/// NOT_SUPPORTED.
///
/// Inlined into the hypercall handler: returning the decision in memory
/// and a call frame cost more than the decision itself.
#[inline(always)]
pub fn handle(fid: u32, args: [u64; 3], vm: &impl PsciVm) -> Option<PsciCall> {
    use fid::*;
    use PsciCall::Return;

    if !is_psci(fid) {
        return None;
    }
    // SMC32 calls pass 32-bit arguments; the upper halves are not defined
    // (DEN0028, SMC32/HVC32 argument passing).
    let args = if fid & SMC64_BIT == 0 {
        args.map(|a| a & 0xffff_ffff)
    } else {
        args
    };
    let [a1, a2, a3] = args;
    Some(match fid {
        PSCI_VERSION => Return(VERSION),
        // power_state and lowest_affinity_level are uint32 even in the SMC64
        // forms: their upper halves are ignored.
        CPU_SUSPEND | CPU_SUSPEND_64 => cpu_suspend(a1 as u32),
        CPU_OFF => PsciCall::CpuOff,
        CPU_ON | CPU_ON_64 => cpu_on(a1, a2, a3, vm),
        AFFINITY_INFO | AFFINITY_INFO_64 => Return(affinity_info(a1, a2 as u32, vm)),
        MIGRATE_INFO_TYPE => Return(MIGRATE_NOT_NEEDED),
        SYSTEM_OFF => PsciCall::SystemOff,
        SYSTEM_RESET => PsciCall::SystemReset,
        PSCI_FEATURES => Return(features(a1 as u32)),
        _ => Return(ret::NOT_SUPPORTED),
    })
}

const SMC64_BIT: u32 = 1 << 30;

/// Fast calls of the standard secure service, function numbers 0-0x1F.
fn is_psci(fid: u32) -> bool {
    fid & !SMC64_BIT & !0x1f == 0x8400_0000
}

/// PSCI_FEATURES (DEN0022D): 0 for what [`handle`] implements. For
/// CPU_SUSPEND the 0 also says: original power_state format, no OS-initiated
/// mode.
fn features(queried: u32) -> i64 {
    use fid::*;
    match queried {
        PSCI_VERSION | CPU_SUSPEND | CPU_SUSPEND_64 | CPU_OFF | CPU_ON | CPU_ON_64
        | AFFINITY_INFO | AFFINITY_INFO_64 | MIGRATE_INFO_TYPE | SYSTEM_OFF | SYSTEM_RESET
        | PSCI_FEATURES | SMCCC_VERSION => ret::SUCCESS,
        _ => ret::NOT_SUPPORTED,
    }
}

/// CPU_SUSPEND (DEN0022D) with the original power_state format:
/// StateID [15:0], StateType [16] (0 standby, 1 power-down), PowerLevel
/// [25:24], the rest reserved. The guest's device tree describes no idle
/// states, so only standby is offered: a power-down request would need the
/// warm-boot entry point, and answering it as standby would make Linux
/// treat the suspend as failed. It is rejected instead.
fn cpu_suspend(power_state: u32) -> PsciCall {
    const RESERVED: u32 = 0x3f << 26 | 0x7f << 17;
    const POWER_DOWN: u32 = 1 << 16;
    if power_state & (RESERVED | POWER_DOWN) != 0 {
        return PsciCall::Return(ret::INVALID_PARAMETERS);
    }
    PsciCall::Suspend
}

/// CPU_ON (DEN0022D). The entry point must also be 4-byte aligned: an
/// AArch64 PC that is not would fault at once (INVALID_ADDRESS).
fn cpu_on(target: u64, entry: u64, context: u64, vm: &impl PsciVm) -> PsciCall {
    use PsciCall::Return;
    let Some(vcpu) = vm.vcpu_by_mpidr(target & MPIDR_AFF_MASK) else {
        return Return(ret::INVALID_PARAMETERS);
    };
    match vm.power_state(vcpu) {
        PowerState::On => Return(ret::ALREADY_ON),
        PowerState::OnPending => Return(ret::ON_PENDING),
        PowerState::Off if !entry.is_multiple_of(4) || !vm.entry_is_valid(entry) => {
            Return(ret::INVALID_ADDRESS)
        }
        PowerState::Off => PsciCall::CpuOn {
            vcpu,
            entry,
            context,
        },
    }
}

/// AFFINITY_INFO (DEN0022D). From PSCI 1.0 only level 0 need be
/// supported; higher levels are INVALID_PARAMETERS.
fn affinity_info(target: u64, lowest_level: u32, vm: &impl PsciVm) -> i64 {
    if lowest_level != 0 {
        return ret::INVALID_PARAMETERS;
    }
    match vm
        .vcpu_by_mpidr(target & MPIDR_AFF_MASK)
        .map(|v| vm.power_state(v))
    {
        Some(PowerState::On) => 0,
        Some(PowerState::Off) => 1,
        Some(PowerState::OnPending) => 2,
        None => ret::INVALID_PARAMETERS,
    }
}

#[cfg(test)]
mod tests {
    use super::fid::*;
    use super::ret::*;
    use super::*;
    use PsciCall::*;

    /// vCPU n has MPIDR n (Aff0), RAM is [0x4000_0000, 0x5000_0000).
    struct Vm([PowerState; 3]);

    impl PsciVm for Vm {
        fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<usize> {
            (mpidr < 3).then_some(mpidr as usize)
        }
        fn power_state(&self, vcpu: usize) -> PowerState {
            self.0[vcpu]
        }
        fn entry_is_valid(&self, ipa: u64) -> bool {
            (0x4000_0000..0x5000_0000).contains(&ipa)
        }
    }

    const VM: Vm = Vm([PowerState::On, PowerState::Off, PowerState::OnPending]);

    fn call(fid: u32, args: [u64; 3]) -> PsciCall {
        handle(fid, args, &VM).expect("a PSCI function")
    }

    #[test]
    fn version_migrate_and_system_calls() {
        assert_eq!(call(PSCI_VERSION, [0; 3]), Return(0x10001));
        assert_eq!(call(MIGRATE_INFO_TYPE, [0; 3]), Return(2));
        assert_eq!(call(SYSTEM_OFF, [0; 3]), SystemOff);
        assert_eq!(call(SYSTEM_RESET, [0; 3]), SystemReset);
        assert_eq!(call(CPU_OFF, [0; 3]), CpuOff);
    }

    #[test]
    fn non_psci_ids_are_not_handled() {
        for fid in [
            0x8000_0000,
            0xC600_0000,
            0x8400_0020,
            0x0400_0000,
            0x8500_0000,
            0,
        ] {
            assert_eq!(handle(fid, [0; 3], &VM), None, "{fid:#x}");
        }
    }

    #[test]
    fn unimplemented_psci_ids_are_not_supported() {
        // MIGRATE, MIGRATE_INFO_UP_CPU, SYSTEM_RESET2, SMC64 forms of SMC32-only calls.
        for fid in [
            0x8400_0005,
            0x8400_0007,
            0x8400_0012,
            0xC400_0012,
            0xC400_0000,
            0xC400_0008,
            0x8400_001F,
        ] {
            assert_eq!(call(fid, [0; 3]), Return(NOT_SUPPORTED), "{fid:#x}");
        }
    }

    #[test]
    fn features() {
        let implemented = [
            PSCI_VERSION,
            CPU_SUSPEND,
            CPU_SUSPEND_64,
            CPU_OFF,
            CPU_ON,
            CPU_ON_64,
            AFFINITY_INFO,
            AFFINITY_INFO_64,
            MIGRATE_INFO_TYPE,
            SYSTEM_OFF,
            SYSTEM_RESET,
            PSCI_FEATURES,
            0x8000_0000,
        ];
        for f in implemented {
            assert_eq!(call(PSCI_FEATURES, [f as u64, 0, 0]), Return(0), "{f:#x}");
        }
        for f in [0x8400_0005u32, 0xC400_0008, 0x8000_0001, 0xC600_0000, 0] {
            assert_eq!(
                call(PSCI_FEATURES, [f as u64, 0, 0]),
                Return(NOT_SUPPORTED),
                "{f:#x}"
            );
        }
        // PSCI_FEATURES is SMC32: the argument's upper half is ignored.
        assert_eq!(
            call(PSCI_FEATURES, [0xdead_0000_8400_0000, 0, 0]),
            Return(0)
        );
    }

    #[test]
    fn cpu_on() {
        let entry = 0x4008_0000;
        assert_eq!(
            call(CPU_ON_64, [1, entry, 7]),
            CpuOn {
                vcpu: 1,
                entry,
                context: 7
            }
        );
        assert_eq!(call(CPU_ON_64, [0, entry, 0]), Return(ALREADY_ON));
        assert_eq!(call(CPU_ON_64, [2, entry, 0]), Return(ON_PENDING));
        assert_eq!(call(CPU_ON_64, [3, entry, 0]), Return(INVALID_PARAMETERS));
        assert_eq!(call(CPU_ON_64, [1, 0x1000, 0]), Return(INVALID_ADDRESS));
        assert_eq!(call(CPU_ON_64, [1, entry + 2, 0]), Return(INVALID_ADDRESS));
        // MPIDR bits outside Aff3..Aff0 (U, MT, RES1 bit 31) are ignored.
        let mpidr = 1 | 1 << 31 | 1 << 30 | 1 << 24 | 0xff << 40;
        assert_eq!(
            call(CPU_ON_64, [mpidr, entry, 0]),
            CpuOn {
                vcpu: 1,
                entry,
                context: 0
            }
        );
        // Aff3 is not ignored.
        assert_eq!(
            call(CPU_ON_64, [1 << 32 | 1, entry, 0]),
            Return(INVALID_PARAMETERS)
        );
    }

    #[test]
    fn smc32_cpu_on_masks_arguments() {
        let got = call(CPU_ON, [1 << 32 | 1, 0xffff_ffff_4000_0000, 0x1_0000_0005]);
        assert_eq!(
            got,
            CpuOn {
                vcpu: 1,
                entry: 0x4000_0000,
                context: 5
            }
        );
    }

    #[test]
    fn affinity_info() {
        assert_eq!(call(AFFINITY_INFO_64, [0, 0, 0]), Return(0));
        assert_eq!(call(AFFINITY_INFO_64, [1, 0, 0]), Return(1));
        assert_eq!(call(AFFINITY_INFO, [2, 0, 0]), Return(2));
        assert_eq!(
            call(AFFINITY_INFO_64, [9, 0, 0]),
            Return(INVALID_PARAMETERS)
        );
        assert_eq!(
            call(AFFINITY_INFO_64, [0, 1, 0]),
            Return(INVALID_PARAMETERS)
        );
        // SMC32: the level's upper half is ignored, the MPIDR's too.
        assert_eq!(call(AFFINITY_INFO, [1 << 32 | 1, 1 << 32, 0]), Return(1));
        assert_eq!(call(AFFINITY_INFO_64, [1, 1 << 32, 0]), Return(1));
    }

    #[test]
    fn cpu_suspend() {
        assert_eq!(call(CPU_SUSPEND, [0, 0, 0]), Suspend);
        assert_eq!(call(CPU_SUSPEND_64, [0x0300_ffff, 0x1234, 0]), Suspend);
        assert_eq!(
            call(CPU_SUSPEND_64, [1 << 16, 0x4000_0000, 0]),
            Return(INVALID_PARAMETERS)
        );
        assert_eq!(
            call(CPU_SUSPEND_64, [1 << 17, 0, 0]),
            Return(INVALID_PARAMETERS)
        );
        assert_eq!(
            call(CPU_SUSPEND_64, [1 << 26, 0, 0]),
            Return(INVALID_PARAMETERS)
        );
        assert_eq!(
            call(CPU_SUSPEND_64, [1 << 31, 0, 0]),
            Return(INVALID_PARAMETERS)
        );
        // power_state is 32 bits wide in both forms.
        assert_eq!(call(CPU_SUSPEND, [1 << 40, 0, 0]), Suspend);
        assert_eq!(call(CPU_SUSPEND_64, [1 << 40, 0, 0]), Suspend);
    }

    #[test]
    fn unused_codes_keep_their_values() {
        assert_eq!((DENIED, INTERNAL_FAILURE, SUCCESS), (-3, -6, 0));
    }
}
