//! ESR_EL2 / ISS decoding and the MMIO access decode of a data abort
//! (hypervisor/src/arch/esr.rs).
//!
//! Input: ESR u64, HPFAR u64, FAR u64, a loaded value u64 (little endian;
//! missing bytes are 0).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nmivisor_fuzz::Reader;
use nmivisor_pure::arch::esr::{fault_ipa, fault_status_name, Esr, ExceptionClass};

fuzz_target!(|data: &[u8]| {
    let mut r = Reader(data);
    let esr = Esr(r.u64());
    let (hpfar, far, loaded) = (r.u64(), r.u64(), r.u64());

    let class = esr.class();
    assert_eq!(u64::from(esr.ec_raw()), (esr.0 >> 26) & 0x3f);
    assert!(esr.iss() < 1 << 25);
    if let ExceptionClass::Other(ec) = class {
        assert_eq!(ec, esr.ec_raw());
    }
    let text = format!("{esr} {esr:?} {}", fault_status_name(esr.fault_status()));
    assert!(text.starts_with("0x"));

    // The faulting IPA: page from HPFAR.FIPA, offset from FAR, 52 bits at most.
    let ipa = fault_ipa(hpfar, far);
    assert_eq!(ipa & 0xfff, far & 0xfff);
    assert!(ipa < 1 << 52);

    match esr.mmio_access() {
        Some(a) => {
            // Only a data abort with a valid syndrome that is a plain load or
            // store (not cache maintenance, not a stage-1 walk) is emulated.
            assert!(matches!(
                class,
                ExceptionClass::DataAbortLower | ExceptionClass::DataAbortSame
            ));
            let iss = esr.iss();
            assert!(iss & 1 << 24 != 0 && iss & 1 << 8 == 0 && iss & 1 << 7 == 0);
            assert!(matches!(a.size, 1 | 2 | 4 | 8));
            assert!(a.reg <= 31);
            assert_eq!(a.write, iss & 1 << 6 != 0);
            let v = a.load_value(loaded);
            let bits = u32::from(a.size) * 8;
            let low = if bits == 64 {
                u64::MAX
            } else {
                (1 << bits) - 1
            };
            let reg = if a.sixty_four { u64::MAX } else { 0xffff_ffff };
            // The register never gets bits beyond its width, and its low
            // `size` bytes are the loaded ones.
            assert_eq!(v & !reg, 0, "a W register load wrote the upper half");
            assert_eq!(v & low & reg, loaded & low & reg);
            if !a.sign_extend || bits == 64 {
                assert_eq!(v, loaded & low & reg);
            } else {
                // Sign-extended: the loaded `size`-byte field as a signed
                // number, cut to the register width.
                let field = (loaded & low) as i64;
                let signed = (field << (64 - bits)) >> (64 - bits);
                assert_eq!(v, signed as u64 & reg);
            }
        }
        None => {
            let iss = esr.iss();
            let data_abort = matches!(
                class,
                ExceptionClass::DataAbortLower | ExceptionClass::DataAbortSame
            );
            assert!(!data_abort || iss & 1 << 24 == 0 || iss & 1 << 8 != 0 || iss & 1 << 7 != 0);
        }
    }

    // The injected syndromes decode as what they claim to be.
    let undef = Esr::undefined(esr.il());
    assert_eq!(undef.class(), ExceptionClass::Unknown);
    assert_eq!(undef.il(), esr.il());
    let same_el = esr.0 & 1 != 0;
    let write = esr.0 & 2 != 0;
    let sea = Esr::sync_external_data_abort(same_el, write, false);
    assert_eq!(
        sea.class(),
        if same_el {
            ExceptionClass::DataAbortSame
        } else {
            ExceptionClass::DataAbortLower
        }
    );
    assert_eq!(sea.mmio_access(), None, "an injected abort has ISV = 0");
    assert_eq!(sea.fault_status(), 0x10);
});
