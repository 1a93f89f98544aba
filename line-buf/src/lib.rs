//! A fixed-size line buffer: console lines are formatted here first and
//! then written out whole, without the heap (usable from exception and
//! NMI context).
//!
//! Shared by the hypervisor and guest-test, which each had their own copy.
//! Written here because the field's crates offer either growable strings
//! (heapless, arrayvec) that refuse an overlong write, or nothing that
//! marks a cut: a console line that overflows must say so.

#![no_std]

use core::fmt;

/// Bytes written into a [`Line`] beyond its capacity are dropped and the
/// line ends in this marker instead: overflow is never silent.
pub const TRUNCATED: &[u8] = b"...";

/// A line of at most `N` bytes (`N` > [`TRUNCATED`]`.len()`), filled with
/// `core::fmt::Write`.
pub struct Line<const N: usize> {
    buf: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> Line<N> {
    const ROOM_FOR_MARKER: () = assert!(N > TRUNCATED.len(), "a line must hold its marker");

    /// An empty line.
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::ROOM_FOR_MARKER;
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

    /// The text as a `str`. Only whole UTF-8 characters are ever copied
    /// in, so this is the whole text; the fallback is never reached.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// Whether a write was cut short.
    pub fn is_truncated(&self) -> bool {
        self.truncated
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

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn formats_a_short_line() {
        let l: Line<64> = format(format_args!("test {} ... ok", "psci-version"));
        assert_eq!(l.as_str(), "test psci-version ... ok");
        assert!(!l.is_truncated());
        let mut l = Line::<160>::new();
        write!(l, "x{} {:#x}", 1, 0x20).unwrap();
        assert_eq!(l.as_str(), "x1 0x20");
    }

    #[test]
    fn truncates_with_a_marker_and_keeps_utf8_whole() {
        let l: Line<10> = format(format_args!("abcdefghijkl"));
        assert_eq!(l.as_str(), "abcdefg...");
        assert!(l.is_truncated());
        let l: Line<10> = format(format_args!("abcdef\u{e9}xyz"));
        assert_eq!(l.as_str(), "abcdef...");
        let l: Line<10> = format(format_args!("{}{}", "abcdefgh", "ij"));
        assert_eq!(l.as_str(), "abcdefg...");
    }

    #[test]
    fn nothing_is_added_after_the_marker() {
        let mut l = Line::<160>::new();
        for _ in 0..100 {
            write!(l, "abcdefgh").unwrap();
        }
        assert_eq!(l.as_bytes().len(), 160);
        assert!(l.as_str().ends_with("..."));
        write!(l, "more").unwrap();
        assert_eq!(l.as_bytes().len(), 160);
        // Exactly full without the marker's room: still marked.
        let l: Line<8> = format(format_args!("abcde"));
        assert_eq!(l.as_str(), "abcde");
        let l: Line<8> = format(format_args!("abcdef"));
        assert_eq!(l.as_str(), "abcde...");
    }
}
