//! SMCCC function identifiers (Arm DEN0028, section 2.5) and the routing of
//! a guest's HVC/SMC to a service: PSCI, the SMCCC architecture calls, or
//! nmivisor's own vendor-specific hypervisor service (owning entity 6).
//!
//! nmivisor's service, all SMC64 fast calls:
//!
//! | ID | name | arguments | x0 on return |
//! |---|---|---|---|
//! | 0xC6000000 | `NMV_VERSION` | | 0x0001_0000 (1.0) |
//! | 0xC6000001 | `NMV_CONSOLE_WRITE` | x1 = guest address, x2 = length <= 256 | bytes queued (fewer, even 0, while the VM's console queue is full), or -2 |
//! | 0xC6000002 | `NMV_DUMP` | | 0 after a dump of the calling VM's own vCPUs on its console, if its config says `dump = on`; -3 within a second of the last one; else -1 |
//! | 0xC6000100-0xC60001FF | test calls | call-specific | call-specific |
//!
//! Test calls: +0 makes INTID x2 pending at priority x3 on vCPU x1 of the
//! calling VM (every image); +1 makes the calling CPU hold its VM's vGIC
//! lock for good (test images booted with `nmivisor.test=vgic-lock-hold`
//! only, for the `vgic-lock-held` scenario).
//! Any other test call returns NOT_SUPPORTED.

/// SMCCC_VERSION and SMCCC_ARCH_FEATURES (DEN0028), as the smccc crate
/// defines them.
pub use smccc::arch::{SMCCC_ARCH_FEATURES, SMCCC_VERSION};
/// SMCCC 1.1: major in bits [30:16], minor in [15:0].
pub const SMCCC_VERSION_1_1: i64 = 0x1_0001;

/// nmivisor's own calls (the table above).
pub const NMV_VERSION: u32 = 0xC600_0000;
pub const NMV_CONSOLE_WRITE: u32 = 0xC600_0001;
pub const NMV_DUMP: u32 = 0xC600_0002;
/// First of 256 function IDs reserved for test-only calls.
pub const NMV_TEST_BASE: u32 = 0xC600_0100;
const NMV_TEST_LAST: u32 = NMV_TEST_BASE + 0xff;
/// nmivisor service version 1.0.
pub const NMV_VERSION_1_0: i64 = 0x0001_0000;
/// Longest NMV_CONSOLE_WRITE, so one call copies little.
pub const CONSOLE_WRITE_MAX: usize = 256;

/// SMCCC return codes (DEN0028). The smccc crate names them only in its
/// PSCI error table, whose values SMCCC shares.
pub const NOT_SUPPORTED: i64 = smccc::psci::error::NOT_SUPPORTED as i64;
/// See [`NOT_SUPPORTED`].
pub const INVALID_PARAMETERS: i64 = smccc::psci::error::INVALID_PARAMETERS as i64;

/// Owning entity numbers, ID bits [29:24] (DEN0028 section 2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Arch,
    Cpu,
    Sip,
    Oem,
    StandardSecure,
    StandardHypervisor,
    VendorHypervisor,
    /// 7-47: vendor EL3 monitor (SMCCC 1.3+) and reserved numbers.
    Reserved(u8),
    TrustedApp(u8),
    TrustedOs(u8),
}

/// An SMCCC function identifier (w0 of an HVC or SMC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionId(pub u32);

impl FunctionId {
    /// Bit 31: a fast (atomic) call rather than a yielding one.
    pub fn is_fast(self) -> bool {
        self.0 & (1 << 31) != 0
    }

    /// Bit 30: the SMC64/HVC64 calling convention (64-bit arguments).
    #[cfg(test)]
    pub fn is_smc64(self) -> bool {
        self.0 & (1 << 30) != 0
    }

    /// The owning entity, bits [29:24].
    pub fn owner(self) -> Owner {
        match ((self.0 >> 24) & 0x3f) as u8 {
            0 => Owner::Arch,
            1 => Owner::Cpu,
            2 => Owner::Sip,
            3 => Owner::Oem,
            4 => Owner::StandardSecure,
            5 => Owner::StandardHypervisor,
            6 => Owner::VendorHypervisor,
            n @ 7..=47 => Owner::Reserved(n),
            n @ 48..=49 => Owner::TrustedApp(n),
            n => Owner::TrustedOs(n),
        }
    }

    /// Bits [15:0]: the function number within the service.
    pub fn number(self) -> u16 {
        self.0 as u16
    }
}

/// A call to nmivisor's own service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VendorCall {
    Version,
    /// Print `len` (<= [`CONSOLE_WRITE_MAX`]) bytes at guest address `addr`;
    /// the caller translates the address and returns the bytes written.
    ConsoleWrite {
        addr: u64,
        len: usize,
    },
    Dump,
    /// Test-only call `n` (function ID `NMV_TEST_BASE + n`).
    Test(u8),
}

/// A decoded guest HVC/SMC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// In the PSCI range: hand the ID to `psci::handle`.
    Psci(u32),
    SmcccVersion,
    /// SMCCC_ARCH_FEATURES for this function ID.
    ArchFeatures(u32),
    Vendor(VendorCall),
    /// A known function with arguments it rejects: INVALID_PARAMETERS.
    Invalid(u32),
    /// Any other ID: NOT_SUPPORTED.
    Unknown(u32),
}

/// Decodes `fid` (w0) with arguments x1..x3.
pub fn decode(fid: u32, args: [u64; 3]) -> Call {
    let id = FunctionId(fid);
    match fid {
        SMCCC_VERSION => Call::SmcccVersion,
        SMCCC_ARCH_FEATURES => Call::ArchFeatures(args[0] as u32),
        NMV_VERSION => Call::Vendor(VendorCall::Version),
        NMV_DUMP => Call::Vendor(VendorCall::Dump),
        NMV_CONSOLE_WRITE => match usize::try_from(args[1]) {
            Ok(len) if len <= CONSOLE_WRITE_MAX && args[0].checked_add(args[1]).is_some() => {
                Call::Vendor(VendorCall::ConsoleWrite { addr: args[0], len })
            }
            _ => Call::Invalid(fid),
        },
        NMV_TEST_BASE..=NMV_TEST_LAST => {
            Call::Vendor(VendorCall::Test((fid - NMV_TEST_BASE) as u8))
        }
        _ if id.is_fast()
            && id.owner() == Owner::StandardSecure
            && id.number() < 0x20
            && fid & 0x00ff_0000 == 0 =>
        {
            Call::Psci(fid)
        }
        _ => Call::Unknown(fid),
    }
}

impl Call {
    /// x0 for calls answered without any VM or hypervisor state; `None`
    /// for those the caller carries out (PSCI and the vendor calls other
    /// than NMV_VERSION).
    pub fn fixed_result(self) -> Option<i64> {
        match self {
            Call::SmcccVersion => Some(SMCCC_VERSION_1_1),
            Call::ArchFeatures(queried) => Some(arch_features(queried)),
            Call::Vendor(VendorCall::Version) => Some(NMV_VERSION_1_0),
            Call::Invalid(_) => Some(INVALID_PARAMETERS),
            Call::Unknown(_) => Some(NOT_SUPPORTED),
            Call::Psci(_) | Call::Vendor(_) => None,
        }
    }
}

/// SMCCC_ARCH_FEATURES: only SMCCC_VERSION and this call itself are
/// implemented. The ARCH_WORKAROUND_* calls are NOT_SUPPORTED, which tells
/// a guest no firmware mitigation is on offer (DEN0028, SMCCC_ARCH_FEATURES).
fn arch_features(queried: u32) -> i64 {
    match queried {
        SMCCC_VERSION | SMCCC_ARCH_FEATURES => 0,
        _ => NOT_SUPPORTED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_id_fields() {
        let cpu_on64 = FunctionId(0xC400_0003);
        assert!(cpu_on64.is_fast() && cpu_on64.is_smc64());
        assert_eq!(cpu_on64.owner(), Owner::StandardSecure);
        assert_eq!(cpu_on64.number(), 3);
        let yielding = FunctionId(0x3200_0001);
        assert!(!yielding.is_fast() && !yielding.is_smc64());
        assert_eq!(yielding.owner(), Owner::TrustedOs(50));
        assert_eq!(FunctionId(0x8000_0000).owner(), Owner::Arch);
        assert_eq!(FunctionId(0x8100_0000).owner(), Owner::Cpu);
        assert_eq!(FunctionId(0x8200_0000).owner(), Owner::Sip);
        assert_eq!(FunctionId(0x8300_0000).owner(), Owner::Oem);
        assert_eq!(FunctionId(0x8500_0000).owner(), Owner::StandardHypervisor);
        assert_eq!(FunctionId(0xC600_0002).owner(), Owner::VendorHypervisor);
        assert_eq!(FunctionId(0x8700_0000).owner(), Owner::Reserved(7));
        assert_eq!(FunctionId(0xAF00_0000).owner(), Owner::Reserved(47));
        assert_eq!(FunctionId(0xB100_0000).owner(), Owner::TrustedApp(49));
        assert_eq!(FunctionId(0xBF00_0000).owner(), Owner::TrustedOs(63));
    }

    #[test]
    fn smccc_arch_calls() {
        assert_eq!(decode(SMCCC_VERSION, [0; 3]).fixed_result(), Some(0x10001));
        let features = |fid: u32| decode(SMCCC_ARCH_FEATURES, [fid as u64, 0, 0]).fixed_result();
        assert_eq!(features(SMCCC_VERSION), Some(0));
        assert_eq!(features(SMCCC_ARCH_FEATURES), Some(0));
        assert_eq!(features(0x8000_8000), Some(-1)); // ARCH_WORKAROUND_1
        assert_eq!(features(0x8000_7fff), Some(-1)); // ARCH_WORKAROUND_2
        assert_eq!(features(0xC600_0000), Some(-1));
    }

    #[test]
    fn psci_range() {
        for fid in [0x8400_0000, 0x8400_001F, 0xC400_0003] {
            assert_eq!(decode(fid, [0; 3]), Call::Psci(fid));
            assert_eq!(Call::Psci(fid).fixed_result(), None);
        }
        for fid in [0x8400_0020, 0x0400_0000, 0x8401_0000, 0x8500_0000] {
            assert_eq!(decode(fid, [0; 3]), Call::Unknown(fid), "{fid:#x}");
        }
    }

    #[test]
    fn vendor_calls() {
        assert_eq!(decode(NMV_VERSION, [0; 3]).fixed_result(), Some(0x1_0000));
        assert_eq!(decode(NMV_DUMP, [0; 3]), Call::Vendor(VendorCall::Dump));
        assert_eq!(Call::Vendor(VendorCall::Dump).fixed_result(), None);
        assert_eq!(
            decode(NMV_CONSOLE_WRITE, [0x4000_0000, 256, 0]),
            Call::Vendor(VendorCall::ConsoleWrite {
                addr: 0x4000_0000,
                len: 256
            })
        );
        assert_eq!(
            decode(NMV_CONSOLE_WRITE, [0x4000_0000, 0, 0]),
            Call::Vendor(VendorCall::ConsoleWrite {
                addr: 0x4000_0000,
                len: 0
            })
        );
        for args in [[0, 257, 0], [0, u64::MAX, 0], [u64::MAX, 2, 0]] {
            let call = decode(NMV_CONSOLE_WRITE, args);
            assert_eq!(call, Call::Invalid(NMV_CONSOLE_WRITE));
            assert_eq!(call.fixed_result(), Some(INVALID_PARAMETERS));
        }
        assert_eq!(
            decode(NMV_TEST_BASE, [0; 3]),
            Call::Vendor(VendorCall::Test(0))
        );
        assert_eq!(
            decode(NMV_TEST_BASE + 0x2a, [0; 3]),
            Call::Vendor(VendorCall::Test(0x2a))
        );
        assert_eq!(
            decode(NMV_TEST_BASE + 0xff, [0; 3]),
            Call::Vendor(VendorCall::Test(0xff))
        );
    }

    #[test]
    fn unknown_calls_are_not_supported() {
        // Past the test range, unassigned vendor numbers, SMC32 and
        // yielding forms of the vendor calls.
        for fid in [
            NMV_TEST_BASE + 0x100,
            0xC600_0003,
            0x8600_0000,
            0x4600_0000,
            0xFFFF_FFFF,
            0,
        ] {
            let call = decode(fid, [0; 3]);
            assert_eq!(call, Call::Unknown(fid), "{fid:#x}");
            assert_eq!(call.fixed_result(), Some(NOT_SUPPORTED));
        }
    }
}
