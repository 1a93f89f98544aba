//! The hypervisor's device-tree reader (hypervisor/src/boot/dt.rs): the
//! platform description it boots from. Input: the DTB.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nmivisor_pure::arch::MAX_CPUS;
use nmivisor_pure::boot::dt;

fuzz_target!(|data: &[u8]| {
    match dt::parse(data) {
        Ok(info) => {
            assert!(!info.memory.is_empty() && !info.cpus.is_empty());
            assert!(info.cpus.len() <= MAX_CPUS);
            for m in &info.memory {
                assert!(m.start < m.end);
            }
            if let Some(initrd) = &info.initrd {
                assert!(initrd.start < initrd.end);
            }
            for key in ["nmivisor.watchdog", "nmivisor.idle", "", "="] {
                if let Some(v) = dt::bootarg(info.bootargs, key) {
                    assert!(info.bootargs.contains(v));
                }
            }
        }
        Err(e) => {
            let _ = format!("{e}");
        }
    }
});
