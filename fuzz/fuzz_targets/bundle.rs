//! The VM bundle parser and the CPU/memory admission (the vm-bundle
//! crate).
//!
//! Input: 2 bytes [nr_cpus, memory in 2 MiB units / 4], then the cpio
//! archive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nmivisor_fuzz::Reader;
use vm_bundle::{self as bundle, MAX_NAME_LEN, MEMORY_GRANULE};

fuzz_target!(|data: &[u8]| {
    let mut r = Reader(data);
    let nr_cpus = usize::from(r.u8() % 20);
    let available = u64::from(r.u8()) * 4 * MEMORY_GRANULE;
    let archive = r.rest();
    let entries = match bundle::parse(archive) {
        Ok(e) => e,
        Err(e) => {
            let _ = format!("{e}");
            return;
        }
    };
    assert!(!entries.is_empty());
    for e in &entries {
        match e {
            Ok(spec) => {
                assert!(!spec.name.is_empty() && spec.name.len() <= MAX_NAME_LEN);
                assert!(spec.name.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'_'
                    || b == b'-'));
                assert!(!spec.image.is_empty());
            }
            Err(err) => {
                let _ = format!("{err}");
            }
        }
    }
    let names: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.as_ref().ok())
        .map(|s| s.name)
        .collect();
    for (i, n) in names.iter().enumerate() {
        assert!(!names[..i].contains(n), "VM {n} twice");
    }

    let n = entries.len();
    let admitted = bundle::admit(entries, nr_cpus, available);
    assert_eq!(admitted.len(), n);
    // Admitted VMs own existing, distinct CPUs and memory that fits.
    let mut owned = 0u64;
    let mut memory = 0u64;
    for spec in admitted.iter().filter_map(|e| e.as_ref().ok()) {
        for cpu in spec.cpus.iter() {
            assert!(cpu < nr_cpus, "CPU {cpu} of {nr_cpus}");
            assert!(owned & 1 << cpu == 0, "CPU {cpu} given twice");
            owned |= 1 << cpu;
        }
        assert!(spec.memory >= MEMORY_GRANULE && spec.memory % MEMORY_GRANULE == 0);
        memory += spec.memory;
    }
    assert!(memory <= available);
    for e in admitted.iter().filter_map(|e| e.as_ref().err()) {
        let _ = format!("{e}");
    }
});
