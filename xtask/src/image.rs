//! Turns a linked bare-metal ELF into a bootable image:
//!
//! 1. (hypervisor only, [`Symbols::Embed`]) collect the function symbols,
//!    demangle them and encode them with [`symtab::encode`], then write that
//!    blob into the reserved, zero-filled `.nmv_symtab` section of a copy of
//!    the ELF (no code address moves: the space was linked in);
//! 2. cut the flat binary (an arm64 Linux `Image`, what QEMU's `-kernel`
//!    loads) out of the `PT_LOAD` segments of the (patched) ELF;
//! 3. check that it starts with the arm64 Image header.
//!
//! The test guest has no `.nmv_symtab` and takes [`Symbols::Omit`].
//!
//! Everything here is pure (bytes in, bytes out) so it is unit-tested on a
//! synthetic ELF.

use anyhow::{bail, ensure, Context, Result};
use object::elf;
use object::read::elf::{ElfFile64, ProgramHeader as _};
use object::{Endianness, Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

/// The section the symbol table blob is written into (see linker/hypervisor.ld).
pub const SYMTAB_SECTION: &str = ".nmv_symtab";

/// Offset and value of the arm64 Image header magic ("ARM\x64").
pub const IMAGE_MAGIC_OFFSET: usize = 56;
/// The arm64 Linux Image header magic.
pub const IMAGE_MAGIC: &[u8; 4] = b"ARM\x64";

/// Whether [`build_image`] embeds the symbol table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Symbols {
    /// Write the function symbols into `.nmv_symtab` (required to exist).
    Embed,
    /// Leave the ELF as it is (images without `.nmv_symtab`, e.g. guests).
    Omit,
}

/// What [`build_image`] embedded with [`Symbols::Embed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbeddedSymtab {
    /// How many function symbols were embedded.
    pub symbols: usize,
    /// Size of the encoded symbol table.
    pub len: usize,
    /// Size reserved for it.
    pub capacity: usize,
}

/// The result of [`build_image`].
pub struct BuiltImage {
    /// The ELF, with the symbol table written into `.nmv_symtab` if asked.
    pub elf: Vec<u8>,
    /// The flat, loadable image.
    pub bin: Vec<u8>,
    /// The embedded symbol table, with [`Symbols::Embed`].
    pub symtab: Option<EmbeddedSymtab>,
    /// Load (physical) address of the first byte of `bin`.
    pub load_address: u64,
}

/// Runs the whole pipeline on the bytes of a linked ELF.
pub fn build_image(elf: &[u8], symbols: Symbols) -> Result<BuiltImage> {
    let file = ElfFile64::<Endianness>::parse(elf).context("not a 64-bit ELF file")?;
    let (patched, symtab) = match symbols {
        Symbols::Omit => (elf.to_vec(), None),
        Symbols::Embed => {
            let symbols = function_symbols(&file);
            let blob = symtab::encode(&symbols);
            let (patched, capacity) = embed_symtab(elf, &blob)?;
            let info = EmbeddedSymtab {
                symbols: symbols.len(),
                len: blob.len(),
                capacity,
            };
            (patched, Some((blob, info)))
        }
    };
    let (load_address, bin) = flat_binary(&patched)?;
    check_image_header(&bin)?;
    if let Some((blob, _)) = &symtab {
        // The table must reach the loaded image, not only the ELF.
        let offset = symtab_file_offset(&patched)?;
        let at = image_offset_of(&patched, offset, load_address).with_context(|| {
            format!(
                "{SYMTAB_SECTION} is not inside a PT_LOAD segment, so the image would not carry it"
            )
        })?;
        ensure!(
            bin.get(at..at + blob.len()) == Some(&blob[..]),
            "{SYMTAB_SECTION} did not land in the flat image"
        );
    }
    Ok(BuiltImage {
        elf: patched,
        bin,
        symtab: symtab.map(|(_, info)| info),
        load_address,
    })
}

/// The defined function symbols (`STT_FUNC`) of `file`, demangled without
/// hashes, sorted by address, one per address. Symbols with size 0 get the
/// distance to the next function (or to the end of their section).
pub fn function_symbols(file: &ElfFile64<'_, Endianness>) -> Vec<symtab::Symbol> {
    let mut raw: Vec<(u64, u64, String, Option<u64>)> = Vec::new();
    for sym in file.symbols() {
        if sym.kind() != SymbolKind::Text || !sym.is_definition() {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        if name.is_empty() {
            continue;
        }
        let section_end = sym
            .section_index()
            .and_then(|i| file.section_by_index(i).ok())
            .map(|s| s.address() + s.size());
        raw.push((sym.address(), sym.size(), demangle(name), section_end));
    }
    // Sort by address; among aliases prefer the one that has a size, then
    // the shortest name (usually the public one), then alphabetical order.
    raw.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then((a.1 == 0).cmp(&(b.1 == 0)))
            .then(a.2.len().cmp(&b.2.len()))
            .then(a.2.cmp(&b.2))
    });
    raw.dedup_by_key(|s| s.0);

    let mut out = Vec::with_capacity(raw.len());
    for (i, (start, size, name, section_end)) in raw.iter().enumerate() {
        let size = if *size != 0 {
            *size
        } else {
            let next = raw.get(i + 1).map(|n| n.0);
            match (next, section_end) {
                (Some(n), Some(e)) => n.min(*e) - start,
                (Some(n), None) => n - start,
                (None, Some(e)) => e.saturating_sub(*start),
                (None, None) => 0,
            }
        };
        out.push(symtab::Symbol {
            start: *start,
            size,
            name: name.clone(),
        });
    }
    out
}

/// The function symbols of an ELF as a Linux-style `System.map` (sorted
/// `ADDRESS T NAME` lines, framed by `_text` and `_etext` at the ends of
/// its code), for a VM bundle's `symbols` file: guest-test is an ELF of
/// its own, and the hypervisor's dumps name its frames from this.
pub fn system_map(elf: &[u8]) -> Result<String> {
    let file = ElfFile64::<Endianness>::parse(elf).context("not a 64-bit ELF")?;
    let code: Vec<(u64, u64)> = file
        .sections()
        .filter(|s| s.kind() == SectionKind::Text && s.size() > 0)
        .map(|s| (s.address(), s.address() + s.size()))
        .collect();
    let (Some(start), Some(end)) = (
        code.iter().map(|c| c.0).min(),
        code.iter().map(|c| c.1).max(),
    ) else {
        bail!("no code sections");
    };
    let mut out = format!("{start:016x} T _text\n");
    for sym in function_symbols(&file) {
        if (start..end).contains(&sym.start) {
            out.push_str(&format!("{:016x} T {}\n", sym.start, sym.name));
        }
    }
    out.push_str(&format!("{end:016x} T _etext\n"));
    Ok(out)
}

/// Demangles a Rust symbol in the alternate format (no hash suffix); other
/// names are returned unchanged.
pub fn demangle(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

/// Returns a copy of `elf` with `blob` written at the start of the
/// `.nmv_symtab` section and the rest of the section zeroed, plus the
/// section's size.
pub fn embed_symtab(elf: &[u8], blob: &[u8]) -> Result<(Vec<u8>, usize)> {
    let file = ElfFile64::<Endianness>::parse(elf).context("not a 64-bit ELF file")?;
    let section = file.section_by_name(SYMTAB_SECTION).with_context(|| {
        format!("the ELF has no {SYMTAB_SECTION} section (is linker/hypervisor.ld in use?)")
    })?;
    ensure!(
        section.kind() != SectionKind::UninitializedData,
        "{SYMTAB_SECTION} is NOBITS; it must be PROGBITS (zero-filled) to carry the table"
    );
    let (offset, size) = section
        .file_range()
        .with_context(|| format!("{SYMTAB_SECTION} has no file contents"))?;
    let (offset, size) = (offset as usize, size as usize);
    if blob.len() > size {
        bail!(
            "the symbol table does not fit: it needs {} bytes but {SYMTAB_SECTION} \
             reserves {} bytes (raise SYMTAB_RESERVED in linker/hypervisor.ld)",
            blob.len(),
            size
        );
    }
    ensure!(
        offset + size <= elf.len(),
        "{SYMTAB_SECTION} lies beyond the end of the file"
    );
    let mut out = elf.to_vec();
    let dst = &mut out[offset..offset + size];
    dst.fill(0);
    dst[..blob.len()].copy_from_slice(blob);
    Ok((out, size))
}

/// The file offset of the `.nmv_symtab` section.
fn symtab_file_offset(elf: &[u8]) -> Result<u64> {
    let file = ElfFile64::<Endianness>::parse(elf).context("not a 64-bit ELF file")?;
    let section = file
        .section_by_name(SYMTAB_SECTION)
        .with_context(|| format!("the ELF has no {SYMTAB_SECTION} section"))?;
    Ok(section.file_range().context("no file contents")?.0)
}

/// Where the byte at file `offset` ends up in the flat image that starts
/// at physical address `base`.
fn image_offset_of(elf: &[u8], offset: u64, base: u64) -> Option<usize> {
    let file = ElfFile64::<Endianness>::parse(elf).ok()?;
    let endian = file.endian();
    file.elf_program_headers()
        .iter()
        .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
        .find(|ph| {
            (ph.p_offset(endian)..ph.p_offset(endian) + ph.p_filesz(endian)).contains(&offset)
        })
        .map(|ph| (ph.p_paddr(endian) + (offset - ph.p_offset(endian)) - base) as usize)
}

/// Builds the flat binary from the `PT_LOAD` segments: the bytes from the
/// lowest `p_paddr` to the highest `p_paddr + p_filesz`, gaps zero-filled.
/// Returns the load address and the bytes.
pub fn flat_binary(elf: &[u8]) -> Result<(u64, Vec<u8>)> {
    let file = ElfFile64::<Endianness>::parse(elf).context("not a 64-bit ELF file")?;
    let endian = file.endian();
    let segments: Vec<(u64, u64, u64)> = file
        .elf_program_headers()
        .iter()
        .filter(|ph| ph.p_type(endian) == elf::PT_LOAD && ph.p_filesz(endian) > 0)
        .map(|ph| (ph.p_paddr(endian), ph.p_offset(endian), ph.p_filesz(endian)))
        .collect();
    ensure!(
        !segments.is_empty(),
        "the ELF has no PT_LOAD segment with file contents"
    );
    let base = segments.iter().map(|s| s.0).min().unwrap_or(0);
    let end = segments.iter().map(|s| s.0 + s.2).max().unwrap_or(0);
    let len = usize::try_from(end - base)?;
    ensure!(
        len <= 256 << 20,
        "the PT_LOAD segments span {len:#x} bytes from {base:#x}: refusing to write such an image"
    );
    let mut bin = vec![0u8; len];
    for (paddr, offset, filesz) in segments {
        let src = elf
            .get(offset as usize..(offset + filesz) as usize)
            .context("a PT_LOAD segment lies beyond the end of the file")?;
        let at = (paddr - base) as usize;
        bin[at..at + src.len()].copy_from_slice(src);
    }
    Ok((base, bin))
}

/// Checks that `bin` starts with an arm64 Linux Image header.
pub fn check_image_header(bin: &[u8]) -> Result<()> {
    let magic = bin.get(IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4);
    if magic != Some(&IMAGE_MAGIC[..]) {
        bail!(
            "the image has no arm64 Image header: expected magic \"ARM\\x64\" at offset \
             {IMAGE_MAGIC_OFFSET}, found {:02x?} (the first 64 bytes must be the header, \
             from the `.text.head` section)",
            magic.unwrap_or(&[])
        );
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF64 executable writer for tests: one PT_LOAD per
    /// section, a symbol table, and section headers.
    pub struct TestElf {
        /// (name, address, contents, executable).
        pub sections: Vec<(&'static str, u64, Vec<u8>, bool)>,
        /// (name, address, size, STT_* type, section index (1-based)).
        pub symbols: Vec<(&'static str, u64, u64, elf::SymbolType, u16)>,
    }

    impl TestElf {
        pub fn write(&self) -> Vec<u8> {
            let nsec = self.sections.len();
            let phnum = nsec;
            let mut out = vec![0u8; 64 + 56 * phnum];
            // Section contents, each 16-aligned in the file.
            let mut offsets = Vec::new();
            for (_, _, data, _) in &self.sections {
                while !out.len().is_multiple_of(16) {
                    out.push(0);
                }
                offsets.push(out.len() as u64);
                out.extend_from_slice(data);
            }
            // String table and symbol table.
            let mut strtab = vec![0u8];
            let mut symtab = vec![0u8; 24];
            for (name, addr, size, ty, shndx) in &self.symbols {
                let name_off = strtab.len() as u32;
                strtab.extend_from_slice(name.as_bytes());
                strtab.push(0);
                symtab.extend_from_slice(&name_off.to_le_bytes());
                symtab.push((elf::STB_GLOBAL.0 << 4) | ty.0);
                symtab.push(0);
                symtab.extend_from_slice(&shndx.to_le_bytes());
                symtab.extend_from_slice(&addr.to_le_bytes());
                symtab.extend_from_slice(&size.to_le_bytes());
            }
            let mut shstrtab = vec![0u8];
            let mut names = Vec::new();
            for n in self
                .sections
                .iter()
                .map(|s| s.0)
                .chain([".symtab", ".strtab", ".shstrtab"])
            {
                names.push(shstrtab.len() as u32);
                shstrtab.extend_from_slice(n.as_bytes());
                shstrtab.push(0);
            }
            while !out.len().is_multiple_of(8) {
                out.push(0);
            }
            let symtab_off = out.len() as u64;
            out.extend_from_slice(&symtab);
            let strtab_off = out.len() as u64;
            out.extend_from_slice(&strtab);
            let shstrtab_off = out.len() as u64;
            out.extend_from_slice(&shstrtab);
            while !out.len().is_multiple_of(8) {
                out.push(0);
            }
            let shoff = out.len() as u64;
            let shnum = nsec + 4;
            // Section headers.
            out.extend_from_slice(&[0u8; 64]);
            let sh = |out: &mut Vec<u8>,
                      name: u32,
                      ty: u32,
                      flags: u64,
                      addr: u64,
                      off: u64,
                      size: u64,
                      link: u32,
                      entsize: u64| {
                out.extend_from_slice(&name.to_le_bytes());
                out.extend_from_slice(&ty.to_le_bytes());
                out.extend_from_slice(&flags.to_le_bytes());
                out.extend_from_slice(&addr.to_le_bytes());
                out.extend_from_slice(&off.to_le_bytes());
                out.extend_from_slice(&size.to_le_bytes());
                out.extend_from_slice(&link.to_le_bytes());
                out.extend_from_slice(&1u32.to_le_bytes()); // info: first global
                out.extend_from_slice(&8u64.to_le_bytes());
                out.extend_from_slice(&entsize.to_le_bytes());
            };
            for (i, (_, addr, data, exec)) in self.sections.iter().enumerate() {
                let flags = elf::SHF_ALLOC.0 | if *exec { elf::SHF_EXECINSTR.0 } else { 0 };
                sh(
                    &mut out,
                    names[i],
                    elf::SHT_PROGBITS.0,
                    flags,
                    *addr,
                    offsets[i],
                    data.len() as u64,
                    0,
                    0,
                );
            }
            let strtab_idx = (nsec + 2) as u32;
            sh(
                &mut out,
                names[nsec],
                elf::SHT_SYMTAB.0,
                0,
                0,
                symtab_off,
                symtab.len() as u64,
                strtab_idx,
                24,
            );
            sh(
                &mut out,
                names[nsec + 1],
                elf::SHT_STRTAB.0,
                0,
                0,
                strtab_off,
                strtab.len() as u64,
                0,
                0,
            );
            sh(
                &mut out,
                names[nsec + 2],
                elf::SHT_STRTAB.0,
                0,
                0,
                shstrtab_off,
                shstrtab.len() as u64,
                0,
                0,
            );
            // Program headers.
            for (i, (_, addr, data, exec)) in self.sections.iter().enumerate() {
                let at = 64 + 56 * i;
                let ph = &mut out[at..at + 56];
                ph[0..4].copy_from_slice(&elf::PT_LOAD.0.to_le_bytes());
                let flags = elf::PF_R.0 | if *exec { elf::PF_X.0 } else { 0 };
                ph[4..8].copy_from_slice(&flags.to_le_bytes());
                ph[8..16].copy_from_slice(&offsets[i].to_le_bytes());
                ph[16..24].copy_from_slice(&addr.to_le_bytes());
                ph[24..32].copy_from_slice(&addr.to_le_bytes());
                ph[32..40].copy_from_slice(&(data.len() as u64).to_le_bytes());
                ph[40..48].copy_from_slice(&(data.len() as u64).to_le_bytes());
                ph[48..56].copy_from_slice(&16u64.to_le_bytes());
            }
            // File header.
            let h = &mut out[..64];
            h[0..4].copy_from_slice(&elf::ELFMAG);
            h[4] = elf::ELFCLASS64.0;
            h[5] = elf::ELFDATA2LSB.0;
            h[6] = elf::EV_CURRENT.0;
            h[16..18].copy_from_slice(&elf::ET_EXEC.0.to_le_bytes());
            h[18..20].copy_from_slice(&elf::EM_AARCH64.0.to_le_bytes());
            h[20..24].copy_from_slice(&1u32.to_le_bytes());
            h[24..32].copy_from_slice(&self.sections[0].1.to_le_bytes());
            h[32..40].copy_from_slice(&64u64.to_le_bytes());
            h[40..48].copy_from_slice(&shoff.to_le_bytes());
            h[52..54].copy_from_slice(&64u16.to_le_bytes());
            h[54..56].copy_from_slice(&56u16.to_le_bytes());
            h[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
            h[58..60].copy_from_slice(&64u16.to_le_bytes());
            h[60..62].copy_from_slice(&(shnum as u16).to_le_bytes());
            h[62..64].copy_from_slice(&((nsec + 3) as u16).to_le_bytes());
            out
        }
    }

    /// A fake hypervisor: an Image header in .text, a gap, and a 256-byte
    /// `.nmv_symtab` filled with junk that must be overwritten.
    pub fn fake_hypervisor(symtab_size: usize) -> TestElf {
        let mut text = vec![0u8; 0x100];
        text[IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4].copy_from_slice(IMAGE_MAGIC);
        text[0] = 0x1f; // something recognisable at the start
        TestElf {
            sections: vec![
                (".text", 0x4020_0000, text, true),
                (SYMTAB_SECTION, 0x4020_1000, vec![0xaa; symtab_size], false),
            ],
            symbols: vec![
                (
                    "_ZN10hypervisor4main17h0123456789abcdefE",
                    0x4020_0040,
                    0x20,
                    elf::STT_FUNC,
                    1,
                ),
                ("_start", 0x4020_0000, 0, elf::STT_FUNC, 1),
                ("alias_of_start", 0x4020_0000, 0, elf::STT_FUNC, 1),
                ("tail", 0x4020_0080, 0, elf::STT_FUNC, 1),
                ("some_data", 0x4020_1000, 8, elf::STT_OBJECT, 2),
            ],
        }
    }

    #[test]
    fn collects_sorted_demangled_functions_with_sizes() {
        let bytes = fake_hypervisor(256).write();
        let file = ElfFile64::<Endianness>::parse(&*bytes).unwrap();
        let syms = function_symbols(&file);
        let got: Vec<(u64, u64, &str)> = syms
            .iter()
            .map(|s| (s.start, s.size, s.name.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (0x4020_0000, 0x40, "_start"),
                (0x4020_0040, 0x20, "hypervisor::main"),
                (0x4020_0080, 0x80, "tail"),
            ]
        );
    }

    #[test]
    fn embeds_blob_and_zero_fills_the_rest() {
        let bytes = fake_hypervisor(256).write();
        let (patched, cap) = embed_symtab(&bytes, b"BLOB").unwrap();
        assert_eq!(cap, 256);
        assert_eq!(patched.len(), bytes.len());
        let (_, bin) = flat_binary(&patched).unwrap();
        assert_eq!(&bin[0x1000..0x1004], b"BLOB");
        assert!(bin[0x1004..0x1100].iter().all(|&b| b == 0));
    }

    #[test]
    fn blob_too_large_names_both_sizes() {
        let bytes = fake_hypervisor(16).write();
        let err = embed_symtab(&bytes, &[1u8; 17]).unwrap_err().to_string();
        assert!(
            err.contains("17 bytes") && err.contains("16 bytes"),
            "{err}"
        );
    }

    #[test]
    fn flat_binary_spans_segments_and_fills_gaps() {
        let bytes = fake_hypervisor(256).write();
        let (base, bin) = flat_binary(&bytes).unwrap();
        assert_eq!(base, 0x4020_0000);
        assert_eq!(bin.len(), 0x1100);
        assert_eq!(bin[0], 0x1f);
        assert!(bin[0x100..0x1000].iter().all(|&b| b == 0));
        assert_eq!(bin[0x1000], 0xaa);
        check_image_header(&bin).unwrap();
    }

    #[test]
    fn rejects_missing_image_magic() {
        let err = check_image_header(&[0u8; 64]).unwrap_err().to_string();
        assert!(err.contains("ARM\\x64"), "{err}");
    }

    #[test]
    fn whole_pipeline() {
        let bytes = fake_hypervisor(4096).write();
        let img = build_image(&bytes, Symbols::Embed).unwrap();
        let symtab = img.symtab.unwrap();
        assert_eq!(symtab.symbols, 3);
        assert_eq!(img.load_address, 0x4020_0000);
        assert!(symtab.len <= symtab.capacity);
    }

    /// A fake guest: an Image header and no `.nmv_symtab`.
    fn fake_guest(magic: bool) -> TestElf {
        let mut text = vec![0u8; 0x80];
        if magic {
            text[IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4].copy_from_slice(IMAGE_MAGIC);
        }
        TestElf {
            sections: vec![
                (".text", 0x4008_0000, text, true),
                (".data", 0x4008_1000, vec![7; 16], false),
            ],
            symbols: vec![("_start", 0x4008_0000, 0x80, elf::STT_FUNC, 1)],
        }
    }

    #[test]
    fn guest_pipeline_without_symtab() {
        let bytes = fake_guest(true).write();
        let img = build_image(&bytes, Symbols::Omit).unwrap();
        assert!(img.symtab.is_none());
        assert_eq!(img.elf, bytes, "the ELF is left untouched");
        assert_eq!(img.load_address, 0x4008_0000);
        assert_eq!(img.bin.len(), 0x1010);
        assert_eq!(img.bin[0x1000], 7);

        // Embedding needs the section the guest does not have.
        let err = build_image(&bytes, Symbols::Embed)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(SYMTAB_SECTION), "{err}");
    }

    #[test]
    fn guest_pipeline_still_checks_the_magic() {
        let bytes = fake_guest(false).write();
        let err = build_image(&bytes, Symbols::Omit)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("arm64 Image header"), "{err}");
    }
}
