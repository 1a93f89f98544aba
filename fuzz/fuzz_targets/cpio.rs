//! The newc cpio reader (the vm-bundle crate's `cpio`) on arbitrary bytes.
//! Input: the archive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vm_bundle::cpio;

/// A newc header is 110 bytes; every entry takes at least that.
const HEADER: usize = 110;

fuzz_target!(|data: &[u8]| {
    let range = data.as_ptr_range();
    let inside = |s: &[u8]| {
        let r = s.as_ptr_range();
        s.is_empty() || (range.start <= r.start && r.end <= range.end)
    };
    let mut count = 0;
    let mut errors = 0;
    for entry in cpio::entries(data) {
        count += 1;
        assert!(
            count <= data.len() / HEADER + 1,
            "more entries than the archive can hold"
        );
        match entry {
            Ok(e) => {
                assert_eq!(errors, 0, "an entry after an error");
                assert!(
                    inside(e.data) && inside(e.name.as_bytes()),
                    "a slice outside the archive"
                );
                assert!(!e.name.contains('\0'));
            }
            Err(e) => {
                errors += 1;
                let _ = format!("{e}");
            }
        }
    }
    assert!(errors <= 1, "more than one error");
});
