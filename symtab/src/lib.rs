//! The symbol table nmivisor embeds in its own image, so that stack dumps
//! print `function+offset` on the console without a host-side symbolizer.
//!
//! xtask (on the host, with the `std` feature) [`encode`]s the table and
//! writes it into the image's reserved, zero-filled `.nmv_symtab` section after
//! the link, which keeps every code address unchanged. The hypervisor
//! [`SymbolTable::parse`]s that section in place at run time. An image built
//! without xtask still holds only zeroes there: parsing returns
//! [`Error::Empty`] and dumps fall back to bare addresses.
//!
//! # Layout
//!
//! Every integer is little-endian; offsets are from the start of the blob.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `NMVSYM01` |
//! | 8 | 4 | version, [`VERSION`] |
//! | 12 | 4 | `count`: number of entries |
//! | 16 | 4 | `strings_offset`: where the string area starts |
//! | 20 | 4 | `strings_len`: its length in bytes |
//! | 24 | 8 | reserved, zero |
//! | 32 | 24 × `count` | entries, sorted by `start` |
//! | `strings_offset` | `strings_len` | UTF-8 names, not NUL-terminated |
//!
//! An entry is `start: u64`, `size: u64`, `name_offset: u32` (into the string
//! area) and `name_len: u32`.
//!
//! [`SymbolTable::parse`] checks every field and every offset against the blob,
//! so a damaged table is rejected instead of panicking later in a dump.
#![no_std]

#[cfg(any(feature = "std", test))]
extern crate alloc;

use core::fmt;

/// Identifies the table; the trailing digits are part of the magic so that an
/// incompatible layout is rejected even before the version is read.
pub const MAGIC: [u8; 8] = *b"NMVSYM01";
/// Layout version written by [`encode`] and accepted by [`SymbolTable::parse`].
pub const VERSION: u32 = 1;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 32;
/// Size of one entry in bytes.
pub const ENTRY_LEN: usize = 24;

/// Why a blob is not a usable symbol table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The header is all zeroes: the image was built without embedding a table.
    Empty,
    /// The blob is shorter than its header says.
    Truncated,
    /// The blob does not start with [`MAGIC`].
    BadMagic,
    /// The layout version is not [`VERSION`].
    BadVersion(u32),
    /// An entry's name lies outside the string area.
    NameOutOfRange {
        /// Index of the offending entry.
        index: usize,
    },
    /// An entry's name is not valid UTF-8.
    BadName {
        /// Index of the offending entry.
        index: usize,
    },
    /// Entries are not sorted by start address, so lookups would be wrong.
    Unsorted {
        /// Index of the first entry that starts below its predecessor.
        index: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Empty => f.write_str("no symbol table embedded"),
            Error::Truncated => f.write_str("symbol table truncated"),
            Error::BadMagic => f.write_str("symbol table has a bad magic"),
            Error::BadVersion(v) => write!(f, "symbol table version {v} is not supported"),
            Error::NameOutOfRange { index } => write!(f, "symbol {index}: name out of range"),
            Error::BadName { index } => write!(f, "symbol {index}: name is not UTF-8"),
            Error::Unsorted { index } => write!(f, "symbol {index}: entries not sorted"),
        }
    }
}

/// One symbol to embed, as xtask collects it from the linked ELF.
#[cfg(any(feature = "std", test))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// First address of the symbol.
    pub start: u64,
    /// Size in bytes; 0 means "up to the next symbol".
    pub size: u64,
    /// The (demangled) name to print.
    pub name: alloc::string::String,
}

/// Encodes `symbols` in the layout described in the crate docs.
///
/// The entries are sorted by start address (lookups binary-search them). Of
/// several symbols at the same address only one is kept: the largest, then
/// the alphabetically first, so the output does not depend on input order.
#[cfg(any(feature = "std", test))]
pub fn encode(symbols: &[Symbol]) -> alloc::vec::Vec<u8> {
    use alloc::vec::Vec;
    use core::cmp::Reverse;

    let mut sorted: Vec<&Symbol> = symbols.iter().collect();
    sorted.sort_by(|a, b| {
        (a.start, Reverse(a.size), &a.name).cmp(&(b.start, Reverse(b.size), &b.name))
    });
    sorted.dedup_by_key(|s| s.start);

    let strings_offset = HEADER_LEN + ENTRY_LEN * sorted.len();
    let strings_len: usize = sorted.iter().map(|s| s.name.len()).sum();
    let mut out = Vec::with_capacity(strings_offset + strings_len);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&u32_of(sorted.len()).to_le_bytes());
    out.extend_from_slice(&u32_of(strings_offset).to_le_bytes());
    out.extend_from_slice(&u32_of(strings_len).to_le_bytes());
    out.extend_from_slice(&[0; 8]);

    let mut name_offset = 0;
    for s in &sorted {
        out.extend_from_slice(&s.start.to_le_bytes());
        out.extend_from_slice(&s.size.to_le_bytes());
        out.extend_from_slice(&u32_of(name_offset).to_le_bytes());
        out.extend_from_slice(&u32_of(s.name.len()).to_le_bytes());
        name_offset += s.name.len();
    }
    for s in &sorted {
        out.extend_from_slice(s.name.as_bytes());
    }
    out
}

/// Host-side only: a table that does not fit 32-bit offsets is a build bug.
#[cfg(any(feature = "std", test))]
fn u32_of(n: usize) -> u32 {
    u32::try_from(n).expect("symbol table larger than 4 GiB")
}

/// A validated symbol table, borrowed from the blob it was parsed from.
#[derive(Clone, Copy, Debug)]
pub struct SymbolTable<'a> {
    entries: &'a [u8],
    strings: &'a [u8],
}

/// The symbol that contains an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found<'a> {
    /// The symbol's name.
    pub name: &'a str,
    /// The symbol's first address.
    pub start: u64,
    /// How far into the symbol the looked-up address lies.
    pub offset: u64,
}

/// One decoded entry.
struct Entry {
    start: u64,
    size: u64,
    name_offset: usize,
    name_len: usize,
}

impl<'a> SymbolTable<'a> {
    /// Validates `blob` and wraps it without copying.
    ///
    /// Trailing bytes after the string area are allowed: the reserved section
    /// is larger than the table.
    pub fn parse(blob: &'a [u8]) -> Result<Self, Error> {
        if blob[..HEADER_LEN.min(blob.len())].iter().all(|&b| b == 0) {
            return Err(Error::Empty);
        }
        if blob.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if blob[..8] != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = read_u32(blob, 8).ok_or(Error::Truncated)?;
        if version != VERSION {
            return Err(Error::BadVersion(version));
        }
        let field = |at| {
            read_u32(blob, at)
                .map(|v| v as usize)
                .ok_or(Error::Truncated)
        };
        let (count, strings_offset, strings_len) = (field(12)?, field(16)?, field(20)?);

        let entries_len = count.checked_mul(ENTRY_LEN).ok_or(Error::Truncated)?;
        let entries = blob
            .get(HEADER_LEN..)
            .and_then(|rest| rest.get(..entries_len))
            .ok_or(Error::Truncated)?;
        let strings = strings_offset
            .checked_add(strings_len)
            .and_then(|end| blob.get(strings_offset..end))
            .ok_or(Error::Truncated)?;

        let table = SymbolTable { entries, strings };
        let mut previous_start = 0;
        for index in 0..count {
            let entry = table.entry(index).ok_or(Error::Truncated)?;
            if entry.start < previous_start {
                return Err(Error::Unsorted { index });
            }
            previous_start = entry.start;
            let name = entry
                .name_offset
                .checked_add(entry.name_len)
                .and_then(|end| strings.get(entry.name_offset..end))
                .ok_or(Error::NameOutOfRange { index })?;
            core::str::from_utf8(name).map_err(|_| Error::BadName { index })?;
        }
        Ok(table)
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.entries.len() / ENTRY_LEN
    }

    /// Whether the table holds no symbols.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Finds the symbol containing `addr`.
    ///
    /// A symbol covers `[start, start + size)`. A symbol of size 0 extends to
    /// the next symbol's start; the last one, having no successor, covers only
    /// its own start address. Where symbols overlap, the one that starts
    /// closest below `addr` is asked.
    pub fn lookup(&self, addr: u64) -> Option<Found<'a>> {
        let index = self.partition_point(|start| start <= addr).checked_sub(1)?;
        let entry = self.entry(index)?;
        let end = match entry.size {
            0 => match self.entry(index + 1) {
                Some(next) => next.start,
                None => entry.start.saturating_add(1),
            },
            size => entry.start.saturating_add(size),
        };
        if addr >= end {
            return None;
        }
        Some(Found {
            name: self.name(&entry)?,
            start: entry.start,
            offset: addr - entry.start,
        })
    }

    /// Index of the first entry whose start does not satisfy `pred`
    /// (entries are sorted, so `pred` holds for a prefix).
    fn partition_point(&self, pred: impl Fn(u64) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid) {
                Some(e) if pred(e.start) => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }

    fn entry(&self, index: usize) -> Option<Entry> {
        let at = index.checked_mul(ENTRY_LEN)?;
        Some(Entry {
            start: read_u64(self.entries, at)?,
            size: read_u64(self.entries, at + 8)?,
            name_offset: read_u32(self.entries, at + 16)? as usize,
            name_len: read_u32(self.entries, at + 20)? as usize,
        })
    }

    /// Validated by `parse`, so this only fails on a logic error.
    fn name(&self, entry: &Entry) -> Option<&'a str> {
        let end = entry.name_offset.checked_add(entry.name_len)?;
        let bytes = self.strings.get(entry.name_offset..end)?;
        core::str::from_utf8(bytes).ok()
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(raw.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let raw = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(raw.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use alloc::vec::Vec;

    fn sym(start: u64, size: u64, name: &str) -> Symbol {
        Symbol {
            start,
            size,
            name: name.to_string(),
        }
    }

    fn sample() -> Vec<u8> {
        encode(&[
            sym(0x4020_1000, 0x40, "main"),
            sym(0x4020_0000, 0x100, "_start"),
            sym(0x4020_2000, 0, "marker"),
            sym(0x4020_3000, 0x10, "handler"),
        ])
    }

    #[test]
    fn round_trip_and_edges() {
        let blob = sample();
        let table = SymbolTable::parse(&blob).unwrap();
        assert_eq!(table.len(), 4);
        assert!(!table.is_empty());

        let found = table.lookup(0x4020_0000).unwrap();
        assert_eq!(
            (found.name, found.start, found.offset),
            ("_start", 0x4020_0000, 0)
        );
        assert_eq!(table.lookup(0x4020_00ff).unwrap().offset, 0xff);
        assert_eq!(table.lookup(0x4020_0100), None, "one past the end");
        assert_eq!(table.lookup(0x401f_ffff), None, "below the first symbol");
        assert_eq!(table.lookup(0).map(|f| f.name), None);
        assert_eq!(table.lookup(0x4020_1000).unwrap().name, "main");
        assert_eq!(table.lookup(0x4020_103f).unwrap().name, "main");
        assert_eq!(table.lookup(0x4020_1040), None);
        assert_eq!(table.lookup(u64::MAX), None);
    }

    #[test]
    fn zero_size_extends_to_next_symbol() {
        let blob = sample();
        let table = SymbolTable::parse(&blob).unwrap();
        let found = table.lookup(0x4020_2fff).unwrap();
        assert_eq!((found.name, found.offset), ("marker", 0xfff));
        assert_eq!(table.lookup(0x4020_3000).unwrap().name, "handler");

        let last = encode(&[sym(0x1000, 0, "last")]);
        let table = SymbolTable::parse(&last).unwrap();
        assert_eq!(table.lookup(0x1000).unwrap().name, "last");
        assert_eq!(table.lookup(0x1001), None);
    }

    #[test]
    fn encode_dedups_same_start() {
        let blob = encode(&[sym(0x10, 4, "b"), sym(0x10, 8, "big"), sym(0x10, 8, "a")]);
        let table = SymbolTable::parse(&blob).unwrap();
        assert_eq!(table.len(), 1);
        assert_eq!(table.lookup(0x17).unwrap().name, "a");
    }

    #[test]
    fn empty_table_and_trailing_zeroes() {
        let mut blob = encode(&[]);
        let table = SymbolTable::parse(&blob).unwrap();
        assert!(table.is_empty());
        assert_eq!(table.lookup(0x1234), None);

        blob = sample();
        blob.resize(1 << 20, 0);
        assert_eq!(SymbolTable::parse(&blob).unwrap().len(), 4);
    }

    #[test]
    fn zero_filled_section_is_empty() {
        assert_eq!(
            SymbolTable::parse(&vec![0; 1 << 20]).unwrap_err(),
            Error::Empty
        );
        assert_eq!(SymbolTable::parse(&[]).unwrap_err(), Error::Empty);
        assert_eq!(SymbolTable::parse(&[0; 5]).unwrap_err(), Error::Empty);
    }

    #[test]
    fn bad_header() {
        let mut blob = sample();
        blob[0] = b'X';
        assert_eq!(SymbolTable::parse(&blob).unwrap_err(), Error::BadMagic);

        let mut blob = sample();
        blob[8] = 2;
        assert_eq!(SymbolTable::parse(&blob).unwrap_err(), Error::BadVersion(2));
    }

    #[test]
    fn every_truncation_is_rejected() {
        let blob = sample();
        for len in 1..blob.len() {
            assert!(
                SymbolTable::parse(&blob[..len]).is_err(),
                "accepted {len} bytes"
            );
        }
    }

    fn patch_u32(blob: &mut [u8], at: usize, value: u32) {
        blob[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    #[test]
    fn offsets_out_of_range() {
        let blob = sample();
        for (at, value) in [
            (12, u32::MAX),
            (16, u32::MAX),
            (20, u32::MAX),
            (16, 1 << 20),
        ] {
            let mut bad = blob.clone();
            patch_u32(&mut bad, at, value);
            assert_eq!(SymbolTable::parse(&bad).unwrap_err(), Error::Truncated);
        }
        let name_offset = HEADER_LEN + 16;
        let mut bad = blob.clone();
        patch_u32(&mut bad, name_offset, u32::MAX);
        assert_eq!(
            SymbolTable::parse(&bad).unwrap_err(),
            Error::NameOutOfRange { index: 0 }
        );
        let mut bad = blob.clone();
        patch_u32(&mut bad, name_offset + 4, 1000);
        assert_eq!(
            SymbolTable::parse(&bad).unwrap_err(),
            Error::NameOutOfRange { index: 0 }
        );
    }

    #[test]
    fn bad_name_and_order() {
        let mut blob = sample();
        let strings = read_u32(&blob, 16).unwrap() as usize;
        blob[strings] = 0xff;
        assert_eq!(
            SymbolTable::parse(&blob).unwrap_err(),
            Error::BadName { index: 0 }
        );

        let mut blob = sample();
        blob[HEADER_LEN + ENTRY_LEN..HEADER_LEN + ENTRY_LEN + 8].copy_from_slice(&[0; 8]);
        assert_eq!(
            SymbolTable::parse(&blob).unwrap_err(),
            Error::Unsorted { index: 1 }
        );
    }

    #[test]
    fn arbitrary_corruption_never_panics() {
        let blob = sample();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut bad = blob.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % bad.len() as u64) as usize;
                bad[at] = (state >> 32) as u8;
            }
            let cut = (state >> 40) as usize % (bad.len() + 1);
            if let Ok(table) = SymbolTable::parse(&bad[..cut]) {
                for addr in [0, 0x4020_0000, 0x4020_2100, u64::MAX] {
                    let _ = table.lookup(addr);
                }
            }
        }
    }
}
