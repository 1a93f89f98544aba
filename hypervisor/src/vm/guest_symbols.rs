//! A guest's symbols on target: the bundle's `NAME/symbols` file, in Linux
//! `System.map` format (`ADDRESS TYPE NAME` lines sorted by address, as
//! `nm -n` writes them), read in place from the bundle.
//!
//! [`SystemMap::parse`] checks the whole file once, at VM creation: every
//! line well formed, addresses non-decreasing. After that a lookup is a
//! binary search over the raw bytes: no heap, no index, no lock, so the
//! NMI path of a dump can use it.
//!
//! KASLR: a relocated kernel runs at its link addresses plus one offset.
//! [`SystemMap::kaslr_offset`] derives it from VBAR_EL1, which the guest
//! must point into its own image: at `vectors`, or (with Spectre-BHB
//! mitigations) at one of the 2 KiB slots of `__bp_harden_el1_vectors`.
//! arm64 Linux keeps the offset a multiple of 64 KiB (the image's
//! alignment, `MIN_KIMG_ALIGN` for a 2 MiB-aligned load), which tells the
//! candidates apart.

use core::fmt;
use core::ops::Range;

/// Longest symbols file accepted (the Debian arm64 kernel's is ~9 MB).
pub const MAX_LEN: usize = 64 << 20;
/// How many lines a lookup steps back over non-text symbols.
const MAX_STEP_BACK: usize = 64;
/// Size of one vector-table slot of `__bp_harden_el1_vectors`.
const VECTOR_SLOT: u64 = 0x800;
/// Slots of `__bp_harden_el1_vectors` (Linux 6.x: the BHB loop, the
/// firmware call, the clearbhb instruction; one spare).
const VECTOR_SLOTS: u64 = 4;
/// The alignment a KASLR offset has.
const KASLR_ALIGN: u64 = 0x1_0000;

/// A checked System.map.
#[derive(Clone, Copy, Debug)]
pub struct SystemMap<'a> {
    bytes: &'a [u8],
    /// Number of text symbols (functions; markers not counted).
    pub text_symbols: usize,
    /// `_text` (or `_stext`) .. `_etext`, else the span of text symbols.
    pub text: (u64, u64),
    vectors: Option<u64>,
    bp_vectors: Option<u64>,
}

/// Why a symbols file was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    TooLarge,
    /// Line N (1-based) is not `ADDRESS TYPE NAME`.
    BadLine(usize),
    /// Line N has a lower address than the line before it.
    NotSorted(usize),
    NoTextSymbols,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::TooLarge => write!(f, "larger than {} MiB", MAX_LEN >> 20),
            MapError::BadLine(n) => write!(f, "line {n} is not \"ADDRESS TYPE NAME\""),
            MapError::NotSorted(n) => {
                write!(f, "line {n} is out of address order (want nm -n order)")
            }
            MapError::NoTextSymbols => write!(f, "no text (t, T, w, W) symbols"),
        }
    }
}

/// One parsed line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Line<'a> {
    addr: u64,
    ty: u8,
    name: &'a str,
}

/// `ADDRESS TYPE NAME`; the name is the rest of the line (a demangled
/// Rust name may hold spaces: `<T as Trait>::f`).
fn parse_line(line: &[u8]) -> Option<Line<'_>> {
    let line = core::str::from_utf8(line).ok()?;
    let line = line.strip_suffix('\r').unwrap_or(line).trim();
    let (addr, rest) = line.split_once([' ', '\t'])?;
    let (ty, name) = rest.trim_start().split_once([' ', '\t'])?;
    let name = name.trim();
    if addr.is_empty() || addr.len() > 16 || ty.len() != 1 || name.is_empty() {
        return None;
    }
    let addr = u64::from_str_radix(addr, 16).ok()?;
    Some(Line {
        addr,
        ty: ty.as_bytes()[0],
        name,
    })
}

fn is_text(ty: u8) -> bool {
    matches!(ty, b't' | b'T' | b'w' | b'W')
}

/// A linker marker rather than a function (`_text`, `__entry_text_start`):
/// never the name a frame gets when a function shares its address.
fn is_marker(name: &str) -> bool {
    matches!(
        name,
        "_text" | "_stext" | "_etext" | "_sinittext" | "_einittext"
    ) || (name.starts_with("__") && (name.ends_with("_start") || name.ends_with("_end")))
}

/// What KASLR handling found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kaslr {
    /// VBAR_EL1 = `symbol` (+ `slot` × 2 KiB) + `offset`.
    Derived {
        offset: u64,
        symbol: &'static str,
        slot: u64,
    },
    /// The map has no vector table symbol (not a Linux kernel): offset 0.
    NoVectors,
    /// VBAR_EL1 matches no vector table of the map (early boot, another
    /// kernel): offset 0 is assumed.
    Mismatch,
}

impl Kaslr {
    /// The offset to subtract from a runtime address to get a link address.
    pub fn offset(&self) -> u64 {
        match *self {
            Kaslr::Derived { offset, .. } => offset,
            _ => 0,
        }
    }
}

impl<'a> SystemMap<'a> {
    /// Checks `bytes` (see the module comment).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, MapError> {
        if bytes.len() > MAX_LEN {
            return Err(MapError::TooLarge);
        }
        let (mut last, mut count) = (0u64, 0usize);
        let (mut start, mut end, mut span) = (None, None, (u64::MAX, 0u64));
        let (mut vectors, mut bp_vectors) = (None, None);
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
            let line = parse_line(raw).ok_or(MapError::BadLine(i + 1))?;
            if line.addr < last {
                return Err(MapError::NotSorted(i + 1));
            }
            last = line.addr;
            match line.name {
                "_text" | "_stext" => {
                    start = Some(start.map_or(line.addr, |s: u64| s.min(line.addr)))
                }
                "_etext" => end = Some(line.addr),
                _ => {}
            }
            if is_text(line.ty) && !is_marker(line.name) {
                count += 1;
                span = (
                    span.0.min(line.addr),
                    span.1.max(line.addr.saturating_add(1)),
                );
                match line.name {
                    "vectors" => vectors = Some(line.addr),
                    "__bp_harden_el1_vectors" => bp_vectors = Some(line.addr),
                    _ => {}
                }
            }
        }
        if count == 0 {
            return Err(MapError::NoTextSymbols);
        }
        let text = (start.unwrap_or(span.0), end.unwrap_or(span.1));
        Ok(SystemMap {
            bytes,
            text_symbols: count,
            text,
            vectors,
            bp_vectors,
        })
    }

    /// The text range as link addresses.
    pub fn text_range(&self) -> Range<u64> {
        self.text.0..self.text.1
    }

    /// The load offset of a kernel whose VBAR_EL1 is `vbar`.
    pub fn kaslr_offset(&self, vbar: u64) -> Kaslr {
        let mut candidates = self
            .vectors
            .map(|v| (v, "vectors", 0))
            .into_iter()
            .chain(self.bp_vectors.into_iter().flat_map(|v| {
                (0..VECTOR_SLOTS).filter_map(move |slot| {
                    Some((
                        v.checked_add(slot * VECTOR_SLOT)?,
                        "__bp_harden_el1_vectors",
                        slot,
                    ))
                })
            }))
            .peekable();
        if candidates.peek().is_none() {
            return Kaslr::NoVectors;
        }
        candidates
            .find_map(|(at, symbol, slot)| {
                let offset = vbar.checked_sub(at)?;
                offset
                    .is_multiple_of(KASLR_ALIGN)
                    .then_some(Kaslr::Derived {
                        offset,
                        symbol,
                        slot,
                    })
            })
            .unwrap_or(Kaslr::Mismatch)
    }

    /// The line starting at byte `at`.
    fn line_at(&self, at: usize) -> Option<Line<'a>> {
        let rest = self.bytes.get(at..)?;
        let len = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        parse_line(&rest[..len])
    }

    /// The first line start at or after `pos`.
    fn line_start_from(&self, pos: usize) -> usize {
        if pos == 0 {
            return 0;
        }
        match self.bytes[pos - 1..].iter().position(|&b| b == b'\n') {
            Some(nl) => pos + nl,
            None => self.bytes.len(),
        }
    }

    /// The start of the line before the one at `at`.
    fn previous_line(&self, at: usize) -> Option<usize> {
        if at == 0 {
            return None;
        }
        let before = &self.bytes[..at - 1];
        Some(
            before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |nl| nl + 1),
        )
    }

    /// The function containing link address `addr`: its name and `addr`'s
    /// offset into it. `None` outside the text range.
    pub fn lookup(&self, addr: u64) -> Option<(&'a str, u64)> {
        if !self.text_range().contains(&addr) {
            return None;
        }
        if self.line_at(0)?.addr > addr {
            return None;
        }
        // The last line whose address is <= addr: `lo` always starts such
        // a line; no line starting in (lo, hi) has been ruled out.
        let (mut lo, mut hi) = (0usize, self.bytes.len());
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let s = self.line_start_from(mid);
            if s >= hi {
                hi = mid;
                continue;
            }
            match self.line_at(s) {
                Some(l) if l.addr <= addr => lo = s,
                _ => hi = s,
            }
        }
        let mut at = lo;
        for _ in 0..MAX_STEP_BACK {
            let line = self.line_at(at)?;
            if line.addr < self.text.0 {
                return None; // only symbols inside the text range name frames
            }
            if is_text(line.ty) && !is_marker(line.name) {
                return Some((line.name, addr - line.addr));
            }
            at = self.previous_line(at)?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "\
ffff800080000000 T _text
ffff800080010000 T _stext
ffff800080010000 T __irqentry_text_start
ffff800080010040 t gic_handle_irq
ffff800080010800 T vectors
ffff800080011000 T __do_softirq
ffff800080011000 T __softirqentry_text_start
ffff800080012800 T __bp_harden_el1_vectors
ffff800080246e60 t lkdtm_HARDLOCKUP
ffff800080246e84 t lkdtm_SOFTLOCKUP
ffff800080246f00 r some_rodata_in_text
ffff8000802899e0 T cpu_do_idle
ffff800080289a00 W weak_thing
ffff8000802a0000 D _etext
ffff800081000000 D jiffies
";

    #[test]
    fn lookups_by_binary_search() {
        let m = SystemMap::parse(MAP.as_bytes()).unwrap();
        assert_eq!(m.text_symbols, 8);
        assert_eq!(m.text, (0xffff_8000_8000_0000, 0xffff_8000_802a_0000));
        assert_eq!(
            m.lookup(0xffff_8000_8024_6e68),
            Some(("lkdtm_HARDLOCKUP", 8))
        );
        assert_eq!(
            m.lookup(0xffff_8000_8024_6e84),
            Some(("lkdtm_SOFTLOCKUP", 0))
        );
        assert_eq!(
            m.lookup(0xffff_8000_8024_6f10),
            Some(("lkdtm_SOFTLOCKUP", 0x8c)),
            "steps over rodata"
        );
        assert_eq!(m.lookup(0xffff_8000_8001_0044), Some(("gic_handle_irq", 4)));
        assert_eq!(
            m.lookup(0xffff_8000_8001_1008),
            Some(("__do_softirq", 8)),
            "not the marker"
        );
        assert_eq!(m.lookup(0xffff_8000_8028_99e4), Some(("cpu_do_idle", 4)));
        assert_eq!(
            m.lookup(0xffff_8000_8029_0000),
            Some(("weak_thing", 0x6600))
        );
        assert_eq!(m.lookup(0xffff_8000_802a_0000), None, "past _etext");
        assert_eq!(m.lookup(0xffff_8000_8100_0000), None, "data");
        assert_eq!(m.lookup(0x4000_0000), None);
        assert_eq!(m.lookup(0xffff_8000_8000_0004), None, "only markers before");
        // Every line of the map is found by its own address.
        for line in MAP.lines() {
            let l = parse_line(line.as_bytes()).unwrap();
            if is_text(l.ty) && !is_marker(l.name) && l.addr < m.text.1 {
                assert_eq!(m.lookup(l.addr).map(|f| f.1), Some(0), "{line}");
            }
        }
    }

    #[test]
    fn many_symbols_and_no_final_newline() {
        let mut text = alloc::string::String::new();
        for i in 0..5000u64 {
            text.push_str(&alloc::format!("{:016x} t f{i}\n", 0x4020_0000 + i * 0x40));
        }
        text.pop();
        let m = SystemMap::parse(text.as_bytes()).unwrap();
        for i in (0..5000u64).step_by(7) {
            let name = alloc::format!("f{i}");
            assert_eq!(
                m.lookup(0x4020_0000 + i * 0x40 + 0x3c),
                Some((name.as_str(), 0x3c))
            );
        }
        assert_eq!(m.lookup(0x4020_0000 + 5000 * 0x40), None);
    }

    #[test]
    fn bad_files_are_refused() {
        assert_eq!(SystemMap::parse(b"").unwrap_err(), MapError::BadLine(1));
        assert_eq!(
            SystemMap::parse(b"ffff T a\nfff0 T b\n").unwrap_err(),
            MapError::NotSorted(2)
        );
        assert_eq!(
            SystemMap::parse(b"ffff T a\nzz T b\n").unwrap_err(),
            MapError::BadLine(2)
        );
        assert_eq!(
            SystemMap::parse(b"ffff T\n").unwrap_err(),
            MapError::BadLine(1)
        );
        assert_eq!(
            SystemMap::parse(b"ffff TT a\n").unwrap_err(),
            MapError::BadLine(1)
        );
        let m = SystemMap::parse(b"ffff T <u8 as core::fmt::Debug>::fmt\n").unwrap();
        assert_eq!(m.lookup(0xffff), Some(("<u8 as core::fmt::Debug>::fmt", 0)));
        assert_eq!(
            SystemMap::parse(b"ffff D a\n").unwrap_err(),
            MapError::NoTextSymbols
        );
        assert_eq!(
            SystemMap::parse(b"1ffffffffffffffff T a\n").unwrap_err(),
            MapError::BadLine(1)
        );
        assert!(SystemMap::parse(b"ffff T a\r\n").is_ok());
        let below = SystemMap::parse(b"10 T a\n20 T _text\n30 T _etext\n").unwrap();
        assert_eq!(below.lookup(0x25), None, "a is below _text");
        let top = SystemMap::parse(b"ffffffffffffffff T last\n").unwrap();
        assert_eq!(
            top.lookup(u64::MAX),
            None,
            "the span ends at u64::MAX, exclusive"
        );
        assert_eq!(
            MapError::NotSorted(3).to_string(),
            "line 3 is out of address order (want nm -n order)"
        );
    }

    #[test]
    fn kaslr_from_vbar() {
        let m = SystemMap::parse(MAP.as_bytes()).unwrap();
        let off = 0x2a_4b60_0000u64;
        assert_eq!(
            m.kaslr_offset(0xffff_8000_8001_0800 + off),
            Kaslr::Derived {
                offset: off,
                symbol: "vectors",
                slot: 0
            }
        );
        assert_eq!(
            m.kaslr_offset(0xffff_8000_8001_0800),
            Kaslr::Derived {
                offset: 0,
                symbol: "vectors",
                slot: 0
            }
        );
        // Spectre-BHB: the kernel runs on a slot of the hardened vectors.
        assert_eq!(
            m.kaslr_offset(0xffff_8000_8001_3000 + off),
            Kaslr::Derived {
                offset: off,
                symbol: "__bp_harden_el1_vectors",
                slot: 1
            }
        );
        assert_eq!(m.kaslr_offset(0), Kaslr::Mismatch);
        assert_eq!(
            m.kaslr_offset(0xffff_8000_8001_0800 + 0x800),
            Kaslr::Mismatch
        );
        let top = SystemMap::parse(b"fffffffffffff800 T __bp_harden_el1_vectors\n").unwrap();
        assert_eq!(
            top.kaslr_offset(0x1000),
            Kaslr::Mismatch,
            "no overflow past the top"
        );
        let plain = SystemMap::parse(b"40200000 T main\n40201000 T _etext\n").unwrap();
        assert_eq!(plain.kaslr_offset(0x4020_0800), Kaslr::NoVectors);
        assert_eq!(plain.kaslr_offset(0x4020_0800).offset(), 0);
    }
}
