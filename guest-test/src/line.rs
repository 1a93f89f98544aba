//! A fixed-size line buffer: console lines are formatted here first and
//! then written out whole.

use core::fmt;

/// Bytes written into a [`Line`] beyond its capacity are dropped and the
/// line ends in this marker instead.
pub const TRUNCATED: &[u8] = b"...";

/// A line of at most `N` bytes, filled with `core::fmt::Write`.
pub struct Line<const N: usize> {
    buf: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> Line<N> {
    pub const fn new() -> Self {
        Line {
            buf: [0; N],
            len: 0,
            truncated: false,
        }
    }

    /// The text so far; a truncated line ends in [`TRUNCATED`].
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The text as a `str` (it only ever holds whole UTF-8 characters).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("<bad utf-8>")
    }

    fn push_str(&mut self, s: &str) {
        if self.truncated {
            return;
        }
        let room = N - TRUNCATED.len() - self.len;
        if s.len() <= room {
            self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
            self.len += s.len();
            return;
        }
        // Cut at a character boundary, then mark the cut.
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.buf[self.len..self.len + cut].copy_from_slice(&s.as_bytes()[..cut]);
        self.len += cut;
        self.buf[self.len..self.len + TRUNCATED.len()].copy_from_slice(TRUNCATED);
        self.len += TRUNCATED.len();
        self.truncated = true;
    }
}

impl<const N: usize> Default for Line<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for Line<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

/// Formats `args` into a new line.
pub fn format<const N: usize>(args: fmt::Arguments) -> Line<N> {
    let mut line = Line::new();
    let _ = fmt::write(&mut line, args);
    line
}

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

    #[test]
    fn formats_a_short_line() {
        let l: Line<64> = format(format_args!("test {} ... ok", "psci-version"));
        assert_eq!(l.as_str(), "test psci-version ... ok");
    }

    #[test]
    fn truncates_with_a_marker_and_keeps_utf8_whole() {
        let l: Line<10> = format(format_args!("abcdefghijkl"));
        assert_eq!(l.as_str(), "abcdefg...");
        let l: Line<10> = format(format_args!("abcdef\u{e9}xyz"));
        assert_eq!(l.as_str(), "abcdef...");
        let l: Line<10> = format(format_args!("{}{}", "abcdefgh", "ij"));
        assert_eq!(l.as_str(), "abcdefg...");
    }
}
