//! Console output from guests: whole lines only.
//!
//! Bytes a guest writes are collected per VM until a newline, then printed
//! as one line (with the VM's name in front when several VMs run), so
//! output from several VMs and CPUs never mixes mid-line. An over-long line
//! is printed in pieces marked with a trailing "\", never dropped.

/// Longest line kept before it is flushed.
pub const MAX_LINE: usize = 256;

/// One VM's partial line.
pub struct LineBuffer {
    buf: [u8; MAX_LINE],
    len: usize,
}

impl LineBuffer {
    pub const fn new() -> Self {
        LineBuffer { buf: [0; MAX_LINE], len: 0 }
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

/// Makes guest bytes printable: anything but printable ASCII and tab
/// becomes '?', so a guest cannot drive the terminal.
pub fn sanitize(line: &[u8], out: &mut [u8; MAX_LINE]) -> usize {
    let n = line.len().min(MAX_LINE);
    for (o, &b) in out.iter_mut().zip(&line[..n]) {
        *o = if b == b'\t' || (0x20..0x7f).contains(&b) { b } else { b'?' };
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut lb = LineBuffer::new();
        let mut out = Vec::new();
        for c in chunks {
            lb.push(c, |l, cont| out.push((String::from_utf8_lossy(l).into_owned(), cont)));
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

    #[test]
    fn sanitizes_control_characters() {
        let mut out = [0u8; MAX_LINE];
        let n = sanitize(b"ok\x1b[2J\tend", &mut out);
        assert_eq!(&out[..n], b"ok?[2J\tend");
    }
}
