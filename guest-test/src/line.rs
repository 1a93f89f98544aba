//! Console lines (the fixed-size, truncating `Line` of the `line-buf`
//! crate, shared with the hypervisor) and writing them out in chunks.

// The cases and the console that use it are target-only.
#[cfg(target_os = "none")]
pub use line_buf::{format, Line};

/// Writes `bytes` through `call`, which takes at most `max` bytes and
/// returns how many it wrote or a negative error. Stops on an error, on a
/// count larger than asked, or after `max_stalls` calls that wrote nothing.
/// Returns the number of bytes written.
pub fn write_all(
    bytes: &[u8],
    max: usize,
    max_stalls: usize,
    mut call: impl FnMut(&[u8]) -> i64,
) -> usize {
    let mut done = 0;
    let mut stalls = 0;
    while done < bytes.len() {
        let n = (bytes.len() - done).min(max);
        match call(&bytes[done..done + n]) {
            r if r > 0 && r as usize <= n => done += r as usize,
            0 if stalls < max_stalls => stalls += 1,
            _ => break,
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_all_splits_and_follows_partial_writes() {
        let text: Vec<u8> = (0..600).map(|i| i as u8).collect();
        let mut seen = Vec::new();
        let mut calls = Vec::new();
        let n = write_all(&text, 256, 2, |chunk| {
            calls.push(chunk.len());
            let take = chunk.len().min(200);
            seen.extend_from_slice(&chunk[..take]);
            take as i64
        });
        assert_eq!(n, 600);
        assert_eq!(seen, text);
        assert_eq!(calls, [256, 256, 200]);
    }

    #[test]
    fn write_all_stops_on_errors_bad_counts_and_stalls() {
        assert_eq!(write_all(b"hello", 256, 2, |_| -1), 0);
        assert_eq!(write_all(b"hello", 256, 2, |c| c.len() as i64 + 1), 0);
        let mut calls = 0;
        assert_eq!(
            write_all(b"hello", 256, 2, |_| {
                calls += 1;
                0
            }),
            0
        );
        assert_eq!(calls, 3);
    }
}
