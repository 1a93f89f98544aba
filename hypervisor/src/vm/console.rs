//! Console output from guests, as it reaches the real terminal.
//!
//! A guest never drives the terminal: every byte outside printable ASCII and
//! the plain line discipline a shell needs is shown escaped ([`escape`]), so
//! no escape sequence can move the cursor, erase the hypervisor's lines or
//! retitle the window.
//!
//! With several VMs, bytes are collected per VM until a newline, then printed
//! as one line with the VM's name in front, so output from several VMs and
//! CPUs never mixes mid-line. An over-long line is printed in pieces marked
//! with a trailing "\", never dropped.

/// Longest line kept before it is flushed.
pub const MAX_LINE: usize = 256;

/// One VM's partial line.
pub struct LineBuffer {
    buf: [u8; MAX_LINE],
    len: usize,
}

impl LineBuffer {
    /// An empty line.
    pub const fn new() -> Self {
        LineBuffer {
            buf: [0; MAX_LINE],
            len: 0,
        }
    }

    /// Adds `bytes`, calling `emit(line, continued)` for every complete line
    /// (without its newline; carriage returns dropped) and for every full
    /// buffer (`continued` = true).
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&[u8], bool)) {
        for &b in bytes {
            match b {
                b'\n' => {
                    emit(&self.buf[..self.len], false);
                    self.len = 0;
                }
                b'\r' => {}
                _ => {
                    if self.len == MAX_LINE {
                        emit(&self.buf[..self.len], true);
                        self.len = 0;
                    }
                    self.buf[self.len] = b;
                    self.len += 1;
                }
            }
        }
    }
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

/// Where escaped guest bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discipline {
    /// The guest owns the terminal (a single VM): CR, LF, tab, backspace and
    /// BEL pass, so a shell's prompt, echo and line editing work.
    Terminal,
    /// Inside a "[vm] " line: only printable ASCII and tab pass (a backspace
    /// or CR would eat into the prefix).
    Line,
}

/// One guest byte as the terminal gets it: itself, or a visible escape
/// (`^X` for C0 controls, `^?` for DEL, `\xNN` for bytes >= 0x80, which
/// include the 8-bit C1 controls such as CSI 0x9b).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Escaped {
    bytes: [u8; 4],
    len: u8,
}

impl Escaped {
    /// The bytes the terminal gets.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Escapes `b` for `discipline`.
pub fn escape(b: u8, discipline: Discipline) -> Escaped {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let passes = match b {
        b'\t' | 0x20..=0x7e => true,
        b'\r' | b'\n' | 0x07 | 0x08 => discipline == Discipline::Terminal,
        _ => false,
    };
    let (bytes, len) = if passes {
        ([b, 0, 0, 0], 1)
    } else if b < 0x20 {
        ([b'^', b + 0x40, 0, 0], 2)
    } else if b == 0x7f {
        ([b'^', b'?', 0, 0], 2)
    } else {
        (
            [
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ],
            4,
        )
    };
    Escaped { bytes, len }
}

/// Escapes every byte of `input` into `out`, stopping before a byte whose
/// escape would not fit; returns (bytes of `input` consumed, bytes written).
pub fn escape_into(input: &[u8], discipline: Discipline, out: &mut [u8]) -> (usize, usize) {
    let mut written = 0;
    for (i, &b) in input.iter().enumerate() {
        let e = escape(b, discipline);
        let Some(dst) = out.get_mut(written..written + e.as_bytes().len()) else {
            return (i, written);
        };
        dst.copy_from_slice(e.as_bytes());
        written += dst.len();
    }
    (input.len(), written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut lb = LineBuffer::new();
        let mut out = Vec::new();
        for c in chunks {
            lb.push(c, |l, cont| {
                out.push((String::from_utf8_lossy(l).into_owned(), cont))
            });
        }
        out
    }

    #[test]
    fn joins_partial_writes_into_lines() {
        assert_eq!(
            lines(&[b"test a ", b"... ok\r\nnext", b" line\n"]),
            vec![("test a ... ok".into(), false), ("next line".into(), false)]
        );
        assert!(lines(&[b"no newline yet"]).is_empty());
    }

    #[test]
    fn splits_over_long_lines_without_losing_bytes() {
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        let mut all = long.clone();
        all.push(b'\n');
        let got = lines(&[&all]);
        assert_eq!(got.len(), 3);
        assert!(got[0].1 && got[1].1 && !got[2].1);
        assert_eq!(got.iter().map(|(l, _)| l.len()).sum::<usize>(), long.len());
    }

    fn escaped(input: &[u8], d: Discipline) -> String {
        let mut out = vec![0u8; input.len() * 4];
        let (used, n) = escape_into(input, d, &mut out);
        assert_eq!(used, input.len());
        String::from_utf8(out[..n].to_vec()).unwrap()
    }

    #[test]
    fn a_terminal_keeps_the_line_discipline_and_nothing_else() {
        assert_eq!(
            escaped(b"$ ls\x08\x08\tx\r\n\x07", Discipline::Terminal),
            "$ ls\x08\x08\tx\r\n\x07"
        );
        assert_eq!(
            escaped(b"ok\x1b[2J\x1b]0;title\x07", Discipline::Terminal),
            "ok^[[2J^[]0;title\x07"
        );
        assert_eq!(
            escaped(b"\x00\x1f\x7f\x9b\xff", Discipline::Terminal),
            "^@^_^?\\x9b\\xff"
        );
    }

    #[test]
    fn a_prefixed_line_escapes_cr_and_backspace_too() {
        assert_eq!(
            escaped(b"a\rb\x08c\td\x07", Discipline::Line),
            "a^Mb^Hc\td^G"
        );
    }

    #[test]
    fn escaping_stops_before_an_escape_that_does_not_fit() {
        let mut out = [0u8; 5];
        assert_eq!(
            escape_into(b"ab\x1b\xee", Discipline::Terminal, &mut out),
            (3, 4)
        );
        assert_eq!(&out[..4], b"ab^[");
        let mut out = [0u8; 3];
        assert_eq!(escape_into(b"\xee", Discipline::Terminal, &mut out), (0, 0));
    }

    #[test]
    fn every_byte_escapes_to_printable_ascii_or_the_allowed_controls() {
        for b in 0..=255u8 {
            for d in [Discipline::Terminal, Discipline::Line] {
                let e = escape(b, d);
                for &c in e.as_bytes() {
                    let allowed = (0x20..0x7f).contains(&c)
                        || c == b'\t'
                        || (d == Discipline::Terminal && matches!(c, b'\r' | b'\n' | 0x07 | 0x08));
                    assert!(allowed, "byte {b:#x} escapes to {c:#x} under {d:?}");
                }
            }
        }
    }
}
