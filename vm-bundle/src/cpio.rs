//! A reader for "newc" cpio archives (magic `070701`; `070702` is accepted
//! too, its checksum is not checked).
//!
//! The VM bundle QEMU loads with `-initrd` is such an archive. The `cpio`
//! crate needs std, so this is a small zero-copy reader over `&[u8]`. The
//! bundle comes from outside the hypervisor: every malformed input gives a
//! [`CpioError`] naming the offset and the reason, never a panic.
//!
//! Format (as written by GNU cpio `-H newc` and the Linux initramfs tools):
//! a 110-byte header of magic plus 13 eight-digit hex fields, the NUL-
//! terminated name (`namesize` counts the NUL), padding so that header plus
//! name end 4-byte aligned, then `filesize` bytes of data padded to 4 bytes.
//! The entry named `TRAILER!!!` ends the archive.

use core::fmt;

/// Header size: 6 magic bytes and 13 fields of 8 hex digits.
const HEADER_LEN: usize = 6 + 13 * 8;
const TRAILER: &str = "TRAILER!!!";

/// File-type bits of `mode` (as in `st_mode`).
const S_IFMT: u32 = 0o170000;
#[cfg(test)]
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;

/// One archive member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The path as stored (no leading `/` is added or removed).
    pub name: &'a str,
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    /// The file's contents (empty for a directory).
    pub data: &'a [u8],
}

impl Entry<'_> {
    /// A regular file (S_IFREG).
    #[cfg(test)]
    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    /// A directory (S_IFDIR): a VM of the bundle.
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
}

/// Why an archive was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpioErrorKind {
    /// The header does not start with `070701` or `070702`.
    BadMagic,
    /// Fewer than 110 bytes remain for a header.
    TruncatedHeader,
    /// A header field is not 8 hex digits; names the field.
    NonHexField(&'static str),
    /// `namesize` is 0 or the name runs past the end of the archive.
    NamePastEnd,
    /// The name's last byte (per `namesize`) is not NUL, or it has an
    /// embedded NUL.
    MissingNul,
    /// The name is not UTF-8.
    NameNotUtf8,
    /// `filesize` runs past the end of the archive.
    DataPastEnd,
    /// The archive ends without a `TRAILER!!!` entry.
    MissingTrailer,
}

/// A malformed archive: where (byte offset of the offending entry's header
/// or, for [`CpioErrorKind::MissingTrailer`], of the end) and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpioError {
    /// Where in the archive the problem is.
    pub offset: usize,
    /// What the problem is.
    pub kind: CpioErrorKind,
}

impl fmt::Display for CpioErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => write!(f, "bad magic (expected \"070701\", newc format)"),
            Self::TruncatedHeader => write!(f, "header truncated"),
            Self::NonHexField(field) => write!(f, "field {field} is not 8 hex digits"),
            Self::NamePastEnd => write!(f, "name is empty or runs past the end"),
            Self::MissingNul => write!(f, "name is not NUL-terminated"),
            Self::NameNotUtf8 => write!(f, "name is not UTF-8"),
            Self::DataPastEnd => write!(f, "file data runs past the end"),
            Self::MissingTrailer => write!(f, "archive ends without a TRAILER!!! entry"),
        }
    }
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpio archive, entry at offset {:#x}: {}",
            self.offset, self.kind
        )
    }
}

/// Iterates over the entries of `archive`, which must start 4-byte aligned
/// relative to the alignment the writer assumed (offset 0 of the archive).
pub fn entries(archive: &[u8]) -> Entries<'_> {
    Entries {
        archive,
        offset: 0,
        done: false,
    }
}

/// Iterator over archive entries. It yields at most one error and then
/// stops; it also stops after `TRAILER!!!` (which it does not yield).
pub struct Entries<'a> {
    archive: &'a [u8],
    offset: usize,
    done: bool,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, CpioError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let at = self.offset;
        match parse_entry(self.archive, at) {
            Ok((entry, next)) => {
                if entry.name == TRAILER {
                    self.done = true;
                    return None;
                }
                self.offset = next;
                Some(Ok(entry))
            }
            Err(kind) => {
                self.done = true;
                let offset = if kind == CpioErrorKind::MissingTrailer {
                    self.archive.len()
                } else {
                    at
                };
                Some(Err(CpioError { offset, kind }))
            }
        }
    }
}

/// Parses the entry at `at`; returns it and the offset of the next header.
fn parse_entry(archive: &[u8], at: usize) -> Result<(Entry<'_>, usize), CpioErrorKind> {
    let rest = archive.get(at..).unwrap_or_default();
    if rest.is_empty() {
        return Err(CpioErrorKind::MissingTrailer);
    }
    let header = rest
        .get(..HEADER_LEN)
        .ok_or(CpioErrorKind::TruncatedHeader)?;
    if &header[..6] != b"070701" && &header[..6] != b"070702" {
        return Err(CpioErrorKind::BadMagic);
    }
    let field = |index: usize, name: &'static str| -> Result<u32, CpioErrorKind> {
        let start = 6 + index * 8;
        parse_hex(&header[start..start + 8]).ok_or(CpioErrorKind::NonHexField(name))
    };
    // Validate every field, even those unused, so corrupt headers are caught.
    const NAMES: [&str; 13] = [
        "ino",
        "mode",
        "uid",
        "gid",
        "nlink",
        "mtime",
        "filesize",
        "devmajor",
        "devminor",
        "rdevmajor",
        "rdevminor",
        "namesize",
        "check",
    ];
    let mut fields = [0u32; 13];
    for (i, name) in NAMES.iter().enumerate() {
        fields[i] = field(i, name)?;
    }
    let mode = fields[1];
    let filesize = fields[6] as usize;
    let namesize = fields[11] as usize;

    let name_start = HEADER_LEN;
    let name_end = name_start
        .checked_add(namesize)
        .ok_or(CpioErrorKind::NamePastEnd)?;
    let name_bytes = match rest.get(name_start..name_end) {
        Some(bytes) if namesize > 0 => bytes,
        _ => return Err(CpioErrorKind::NamePastEnd),
    };
    let (last, name) = name_bytes.split_last().ok_or(CpioErrorKind::NamePastEnd)?;
    if *last != 0 || name.contains(&0) {
        return Err(CpioErrorKind::MissingNul);
    }
    let name = core::str::from_utf8(name).map_err(|_| CpioErrorKind::NameNotUtf8)?;

    let data_start = align4(at + name_end) - at;
    let data_end = data_start
        .checked_add(filesize)
        .ok_or(CpioErrorKind::DataPastEnd)?;
    let data = rest
        .get(data_start..data_end)
        .ok_or(CpioErrorKind::DataPastEnd)?;
    // The last padding may be missing at the very end of the archive; the
    // next `parse_entry` then reports what is missing.
    let next = align4(at + data_end);
    Ok((Entry { name, mode, data }, next))
}

fn align4(x: usize) -> usize {
    x.saturating_add(3) & !3
}

fn parse_hex(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = (d as char).to_digit(16)?;
        Some((acc << 4) | v)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::format;
    use std::prelude::rust_2021::*;

    /// A minimal newc writer for tests (also used by the bundle tests).
    pub(crate) fn newc(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut push = |name: &str, mode: u32, data: &[u8]| {
            let fields = [
                1,
                mode,
                0,
                0,
                1,
                0,
                data.len() as u32,
                0,
                0,
                0,
                0,
                name.len() as u32 + 1,
                0,
            ];
            out.extend_from_slice(b"070701");
            for f in fields {
                out.extend_from_slice(format!("{f:08X}").as_bytes());
            }
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            while out.len() % 4 != 0 {
                out.push(0);
            }
            out.extend_from_slice(data);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        };
        for &(name, mode, data) in entries {
            push(name, mode, data);
        }
        push(TRAILER, 0, &[]);
        out
    }

    /// The `c_mode` of a regular file and (next) of a directory.
    pub(crate) const FILE: u32 = 0o100644;
    pub(crate) const DIR: u32 = 0o040755;

    fn collect(archive: &[u8]) -> Result<Vec<Entry<'_>>, CpioError> {
        entries(archive).collect()
    }

    #[test]
    fn reads_entries_with_all_paddings() {
        // Names and data of every length modulo 4.
        let archive = newc(&[
            ("d", DIR, b""),
            ("d/a", FILE, b"1"),
            ("d/ab", FILE, b"12"),
            ("d/abc", FILE, b"123"),
            ("d/abcd", FILE, b"1234"),
        ]);
        let got = collect(&archive).unwrap();
        assert_eq!(got.len(), 5);
        assert!(got[0].is_dir() && !got[0].is_file());
        assert_eq!((got[3].name, got[3].data), ("d/abc", &b"123"[..]));
        assert_eq!(
            (got[4].name, got[4].data, got[4].mode),
            ("d/abcd", &b"1234"[..], FILE)
        );
        assert!(got[4].is_file());
    }

    #[test]
    fn stops_at_trailer_and_ignores_what_follows() {
        let mut archive = newc(&[("x", FILE, b"data")]);
        archive.extend_from_slice(&[0; 512]);
        archive.extend_from_slice(b"garbage");
        assert_eq!(collect(&archive).unwrap().len(), 1);
    }

    #[test]
    fn empty_input_has_no_trailer() {
        assert_eq!(
            collect(&[]).unwrap_err(),
            CpioError {
                offset: 0,
                kind: CpioErrorKind::MissingTrailer
            }
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let archive = newc(&[("vm/image", FILE, b"hello world"), ("vm/x", FILE, b"abc")]);
        for len in 0..archive.len() {
            let result = collect(&archive[..len]);
            assert!(result.is_err(), "truncated to {len} bytes was accepted");
        }
        assert!(collect(&archive).is_ok());
    }

    #[test]
    fn reports_bad_magic_with_offset() {
        let mut archive = newc(&[("a", FILE, b"1234")]);
        let second = HEADER_LEN + 2 + 4; // header, "a\0" (ends aligned), data
        archive[second] = b'9';
        let err = collect(&archive).unwrap_err();
        assert_eq!(
            err,
            CpioError {
                offset: second,
                kind: CpioErrorKind::BadMagic
            }
        );
        assert_eq!(
            err.to_string(),
            "cpio archive, entry at offset 0x74: bad magic (expected \"070701\", newc format)"
        );
    }

    #[test]
    fn reports_non_hex_field() {
        let mut archive = newc(&[("a", FILE, b"")]);
        archive[6 + 6 * 8 + 3] = b'g'; // filesize
        assert_eq!(
            collect(&archive).unwrap_err().kind,
            CpioErrorKind::NonHexField("filesize")
        );
    }

    #[test]
    fn reports_missing_nul_and_zero_namesize() {
        let mut archive = newc(&[("ab", FILE, b"")]);
        archive[HEADER_LEN + 2] = b'c';
        assert_eq!(
            collect(&archive).unwrap_err().kind,
            CpioErrorKind::MissingNul
        );

        let mut archive = newc(&[("ab", FILE, b"")]);
        archive[HEADER_LEN + 1] = 0; // embedded NUL
        assert_eq!(
            collect(&archive).unwrap_err().kind,
            CpioErrorKind::MissingNul
        );

        let mut archive = newc(&[("ab", FILE, b"")]);
        archive[6 + 11 * 8..6 + 12 * 8].copy_from_slice(b"00000000");
        assert_eq!(
            collect(&archive).unwrap_err().kind,
            CpioErrorKind::NamePastEnd
        );
    }

    #[test]
    fn reports_huge_sizes_without_overflow() {
        let mut archive = newc(&[("ab", FILE, b"")]);
        archive[6 + 11 * 8..6 + 12 * 8].copy_from_slice(b"FFFFFFFF");
        assert_eq!(
            collect(&archive).unwrap_err().kind,
            CpioErrorKind::NamePastEnd
        );

        let mut archive = newc(&[("ab", FILE, b"")]);
        archive[6 + 6 * 8..6 + 7 * 8].copy_from_slice(b"FFFFFFFF");
        assert_eq!(
            collect(&archive).unwrap_err().kind,
            CpioErrorKind::DataPastEnd
        );
    }

    #[test]
    fn rejects_non_utf8_names() {
        let mut archive = newc(&[("ab", FILE, b"")]);
        archive[HEADER_LEN] = 0xff;
        assert_eq!(
            collect(&archive).unwrap_err().kind,
            CpioErrorKind::NameNotUtf8
        );
    }

    #[test]
    fn yields_entries_before_an_error_then_stops() {
        let archive = newc(&[("a", FILE, b"1"), ("b", FILE, b"2")]);
        let cut = &archive[..archive.len() - 4];
        let mut it = entries(cut);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }
}
