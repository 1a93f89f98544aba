//! Symbols from a Linux arm64 Image's own kallsyms tables, for kernels
//! whose System.map is not at hand: Debian's stock kernel package ships
//! only a placeholder (the real map is in the 1 GB `-dbg` package).
//!
//! The tables are what `scripts/kallsyms.c` (Linux 6.12) writes into
//! `.rodata`, each label 8-byte aligned, in this order:
//!
//! | label | content |
//! |---|---|
//! | `kallsyms_num_syms` | u32 N |
//! | `kallsyms_names` | N names: a ULEB128 length (1 or 2 bytes), then that many token codes |
//! | `kallsyms_markers` | u32 per 256 names: offset of name 256·i in `kallsyms_names` |
//! | `kallsyms_token_table` | 256 NUL-terminated tokens |
//! | `kallsyms_token_index` | u16 per token: its offset in the token table |
//! | `kallsyms_offsets` | u32 per name: address − `kallsyms_relative_base` |
//! | `kallsyms_relative_base` | u64 |
//!
//! An expanded name's first character is its `nm` type. The tables are
//! found without any symbol: the token table holds the digits `0`-`9` as
//! one-character tokens at their own codes (every digit occurs in some
//! symbol name), which pins it down; the markers and the name count before
//! it are then checked against a full decode of the names.
//!
//! `kallsyms_relative_base` is a relocated pointer: an arm64 Image is
//! linked with `--no-apply-dynamic-relocs`, so the file holds 0 there. The
//! base is then the link address of `_text` (the symbol at offset 0):
//! `KIMAGE_VADDR`, 0xffff800080000000 for every 6.x arm64 kernel
//! (`VA_BITS_MIN` 48: the modules' 2 GiB end there).

use anyhow::{bail, ensure, Context, Result};

/// `KIMAGE_VADDR` of arm64 Linux 6.x.
pub const KIMAGE_VADDR: u64 = 0xffff_8000_8000_0000;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn align8(x: usize) -> usize {
    (x + 7) & !7
}

/// The token table: its start, and each token's bytes.
struct Tokens<'a> {
    start: usize,
    end: usize,
    tokens: Vec<&'a [u8]>,
}

/// Finds the token table around one occurrence of the digit tokens.
fn tokens_at(b: &[u8], digits: usize) -> Option<Tokens<'_>> {
    // Back from token 0x30 ("0") over 0x30 tokens to token 0.
    let mut start = digits;
    for _ in 0..0x30 {
        // `start - 1` is the NUL ending the previous token.
        let nul = start.checked_sub(1)?;
        if b[nul] != 0 {
            return None;
        }
        let prev = b[..nul].iter().rposition(|&c| c == 0).map_or(0, |p| p + 1);
        if prev == nul || nul - prev > 64 {
            return None; // empty or implausibly long token
        }
        start = prev;
    }
    if !start.is_multiple_of(8) {
        return None;
    }
    let mut tokens = Vec::with_capacity(256);
    let mut at = start;
    for _ in 0..256 {
        let len = b.get(at..)?.iter().position(|&c| c == 0)?;
        if len == 0 || len > 64 {
            return None;
        }
        tokens.push(&b[at..at + len]);
        at += len + 1;
    }
    let end = at;
    // The index must agree with the table.
    let index = align8(end);
    let mut off = 0usize;
    for (i, t) in tokens.iter().enumerate() {
        if u16_at(b, index + 2 * i)? as usize != off {
            return None;
        }
        off += t.len() + 1;
    }
    Some(Tokens { start, end, tokens })
}

/// The names decoded from `names` (N of them); `None` unless they end
/// exactly where the markers (8-aligned) begin and the markers match.
fn decode_names(
    b: &[u8],
    names: usize,
    n: usize,
    markers: usize,
    tokens: &Tokens<'_>,
) -> Option<Vec<String>> {
    let mut out = Vec::with_capacity(n);
    let mut at = names;
    for i in 0..n {
        if i % 256 == 0 && u32_at(b, markers + 4 * (i / 256))? as usize != at - names {
            return None;
        }
        let first = *b.get(at)? as usize;
        let (len, hdr) = if first & 0x80 != 0 {
            ((first & 0x7f) | (*b.get(at + 1)? as usize) << 7, 2)
        } else {
            (first, 1)
        };
        if len == 0 {
            return None;
        }
        let codes = b.get(at + hdr..at + hdr + len)?;
        let mut name = Vec::new();
        for &c in codes {
            name.extend_from_slice(tokens.tokens[c as usize]);
        }
        out.push(String::from_utf8(name).ok()?);
        at += hdr + len;
    }
    (align8(at) == markers).then_some(out)
}

/// The kernel's symbols as System.map text: the text symbols (`t`, `T`,
/// `w`, `W`) and `_text`/`_etext`, sorted by address.
pub fn extract(image: &[u8]) -> Result<String> {
    ensure!(
        image.len() > 64 && &image[0x38..0x3c] == b"ARM\x64",
        "not an arm64 Image"
    );
    let digits: &[u8] = b"0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00";
    let mut found = None;
    let mut from = 0;
    while let Some(pos) = image[from..]
        .windows(digits.len())
        .position(|w| w == digits)
    {
        let at = from + pos;
        // The digit run must start a token: preceded by a NUL.
        if at > 0 && image[at - 1] == 0 {
            if let Some(t) = tokens_at(image, at) {
                found = Some(t);
                break;
            }
        }
        from = at + 1;
    }
    let tokens = found.context("no kallsyms token table in the Image (CONFIG_KALLSYMS off?)")?;
    let offsets = align8(tokens.end) + 2 * 256;
    // The markers end just before the token table (4 bytes of padding when
    // their count is odd). For each count, find the name count N before
    // the names whose decode reproduces every marker.
    for m in 1..=4096usize {
        for pad in [0usize, 4] {
            let Some(markers) = tokens.start.checked_sub(4 * m + pad) else {
                continue;
            };
            if markers % 8 != 0 || u32_at(image, markers) != Some(0) {
                continue;
            }
            let last = u32_at(image, markers + 4 * (m - 1)).unwrap_or(0) as usize;
            // The names end within the 8 bytes before the markers, and
            // hold more than `last` bytes; the last 256 names take at most
            // 256 * (2 + 255) bytes after the last marker.
            let hi = markers.saturating_sub(last);
            let lo = hi.saturating_sub(256 * 257);
            let mut names = hi - hi % 8;
            while names >= lo.max(8) {
                if let Some(n) = u32_at(image, names - 8).map(|n| n as usize) {
                    if n > 0 && n.div_ceil(256) == m {
                        if let Some(list) = decode_names(image, names, n, markers, &tokens) {
                            return map_text(image, &list, offsets);
                        }
                    }
                }
                names -= 8;
            }
        }
    }
    bail!("found the kallsyms token table but not the names before it")
}

/// Writes the System.map lines for the decoded `names` (type + name),
/// with addresses from the offsets table at `offsets`.
fn map_text(image: &[u8], names: &[String], offsets: usize) -> Result<String> {
    let n = names.len();
    let base_at = align8(offsets + 4 * n);
    let file_base = u64_at(image, base_at).context("kallsyms_relative_base past the end")?;
    let base = if file_base == 0 {
        KIMAGE_VADDR
    } else {
        file_base
    };
    let mut syms: Vec<(u64, char, &str)> = Vec::new();
    for (i, full) in names.iter().enumerate() {
        let off = u32_at(image, offsets + 4 * i).context("kallsyms_offsets past the end")?;
        let mut chars = full.chars();
        let ty = chars.next().context("empty kallsyms name")?;
        let name = chars.as_str();
        if matches!(ty, 't' | 'T' | 'w' | 'W') || matches!(name, "_text" | "_etext") {
            syms.push((base + u64::from(off), ty, name));
        }
    }
    ensure!(
        syms.iter().any(|s| s.2 == "_text"),
        "the decoded symbols lack _text"
    );
    syms.sort_by_key(|s| s.0);
    let mut out = String::with_capacity(syms.len() * 48);
    for (addr, ty, name) in syms {
        out.push_str(&format!("{addr:016x} {ty} {name}\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds an Image-like blob with kallsyms tables as kallsyms.c lays
    /// them out, for `syms` (type+name, offset from _text).
    fn blob(syms: &[(&str, u32)]) -> Vec<u8> {
        let mut b = vec![0u8; 0x40];
        b[0x38..0x3c].copy_from_slice(b"ARM\x64");
        b.resize(0x1000, 0xaa);
        // Tokens: every byte value c < 0x80 is itself, except a few
        // multi-byte ones in unused slots; codes >= 0x80 are pairs.
        let mut tokens: Vec<Vec<u8>> = (0..256u32)
            .map(|c| {
                if (0x21..0x7f).contains(&c) {
                    vec![c as u8]
                } else {
                    format!("~{c:02x}").into_bytes()
                }
            })
            .collect();
        tokens[0x80] = b"lkdtm_".to_vec();
        tokens[0x81] = b"HARD".to_vec();
        let encode = |s: &str| -> Vec<u8> {
            let mut out = Vec::new();
            let mut rest = s.as_bytes();
            while !rest.is_empty() {
                if rest.starts_with(b"lkdtm_") {
                    out.push(0x80);
                    rest = &rest[6..];
                } else if rest.starts_with(b"HARD") {
                    out.push(0x81);
                    rest = &rest[4..];
                } else {
                    out.push(rest[0]);
                    rest = &rest[1..];
                }
            }
            out
        };
        let pad8 = |b: &mut Vec<u8>| {
            while !b.len().is_multiple_of(8) {
                b.push(0);
            }
        };
        pad8(&mut b);
        b.extend_from_slice(&(syms.len() as u32).to_le_bytes());
        pad8(&mut b);
        let names = b.len();
        let mut markers = Vec::new();
        for (i, (name, _)) in syms.iter().enumerate() {
            if i % 256 == 0 {
                markers.push((b.len() - names) as u32);
            }
            let code = encode(name);
            b.push(code.len() as u8);
            b.extend_from_slice(&code);
        }
        pad8(&mut b);
        for m in markers {
            b.extend_from_slice(&m.to_le_bytes());
        }
        pad8(&mut b);
        let mut index = Vec::new();
        let start = b.len();
        for t in &tokens {
            index.push((b.len() - start) as u16);
            b.extend_from_slice(t);
            b.push(0);
        }
        pad8(&mut b);
        for i in index {
            b.extend_from_slice(&i.to_le_bytes());
        }
        pad8(&mut b);
        for (_, off) in syms {
            b.extend_from_slice(&off.to_le_bytes());
        }
        pad8(&mut b);
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&[0x55; 64]);
        b
    }

    #[test]
    fn decodes_a_table() {
        let mut syms: Vec<(String, u32)> =
            vec![("T_text".into(), 0), ("tgic_handle_irq".into(), 0x10040)];
        for i in 0..600 {
            syms.push((format!("tfunc_{i}"), 0x20000 + 0x40 * i));
        }
        syms.push(("tlkdtm_HARDLOCKUP".into(), 0x246e60));
        syms.push(("dsome_data".into(), 0x300000));
        syms.push(("D_etext".into(), 0x2a0000));
        let refs: Vec<(&str, u32)> = syms.iter().map(|(n, o)| (n.as_str(), *o)).collect();
        let image = blob(&refs);
        let map = extract(&image).unwrap();
        let lines: Vec<&str> = map.lines().collect();
        assert_eq!(lines[0], "ffff800080000000 T _text");
        assert!(
            lines.contains(&"ffff800080246e60 t lkdtm_HARDLOCKUP"),
            "{map}"
        );
        assert!(lines.contains(&"ffff800080029540 t func_597"));
        assert!(lines.contains(&"ffff8000802a0000 D _etext"));
        assert!(!map.contains("some_data"));
        assert_eq!(lines.len(), 2 + 600 + 2);
    }

    #[test]
    fn refuses_what_is_no_kernel() {
        assert!(extract(b"not an image").is_err());
        let mut b = vec![0u8; 0x1000];
        b[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert!(extract(&b).unwrap_err().to_string().contains("token table"));
    }
}

#[cfg(test)]
mod real_kernel {
    /// Checks the extraction against a kernel built with its System.map:
    /// `NMV_KALLSYMS_KERNEL=DIR` (holding `Image` and `System.map`, e.g.
    /// the cache's `linux/kernel-*` of `cargo xtask linux`). Skipped
    /// without it.
    #[test]
    fn matches_the_system_map_of_a_real_kernel() {
        let Some(dir) = std::env::var_os("NMV_KALLSYMS_KERNEL") else {
            return;
        };
        let dir = std::path::Path::new(&dir);
        let image = std::fs::read(dir.join("Image")).unwrap();
        let ours = super::extract(&image).unwrap();
        let Ok(real) = std::fs::read_to_string(dir.join("System.map")) else {
            // No map to compare with (Debian's stock kernel): keep what was
            // found for a look, and check the names the dumps rely on.
            std::fs::write(dir.join("extracted.map"), &ours).unwrap();
            for name in [" T vectors", " T cpu_do_idle", " T _text"] {
                assert!(ours.lines().any(|l| l.ends_with(name)), "{name}");
            }
            return;
        };
        let real: std::collections::BTreeSet<&str> = real.lines().collect();
        let mut text = 0;
        for line in ours.lines() {
            if line.ends_with(" _text") || line.ends_with(" _etext") {
                continue;
            }
            assert!(real.contains(line), "{line} is not in the System.map");
            text += 1;
        }
        assert!(text > 1000, "only {text} text symbols");
        eprintln!("{text} text symbols, all in the System.map");
    }
}
