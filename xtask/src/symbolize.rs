//! `cargo xtask symbolize`: annotates hex addresses in a console log with
//! `[function+0xoff at file:line]`, using the DWARF of the hypervisor ELF.
//!
//! Lookups go through the [`SymbolSource`] trait so that more sources (a
//! guest's `System.map` or `vmlinux`) can be added next to [`ElfSource`]:
//! the first source whose range contains an address describes it.

use std::io::{BufRead, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use anyhow::{Context, Result};
use object::{Object, ObjectSection, SectionFlags};
use regex::Regex;

use crate::image::demangle;
use crate::util::workspace_root;

/// Something that can name code addresses.
pub trait SymbolSource {
    /// Whether `addr` lies in this source's code.
    fn contains(&self, addr: u64) -> bool;

    /// Describes `addr` as `function+0xoff at file:line` (inlined frames
    /// joined by ` inlined into `). `return_address` is set for the return
    /// addresses of a backtrace (frames #1 and up): the source line is then
    /// looked up for the call instruction before it.
    fn describe(&self, addr: u64, return_address: bool) -> Option<String>;
}

/// The hypervisor ELF (with DWARF), via addr2line.
pub struct ElfSource {
    loader: addr2line::Loader,
    text: Vec<Range<u64>>,
}

impl ElfSource {
    /// Opens `path` (an ELF with debug info).
    pub fn open(path: &Path) -> Result<ElfSource> {
        let data = std::fs::read(path).with_context(|| {
            format!(
                "cannot read {} (run `cargo xtask build` first?)",
                path.display()
            )
        })?;
        let file = object::File::parse(&*data)
            .with_context(|| format!("{} is not an object file", path.display()))?;
        let text = file
            .sections()
            .filter(|s| match s.flags() {
                SectionFlags::Elf { sh_flags, .. } => sh_flags.contains(object::elf::SHF_EXECINSTR),
                _ => s.kind() == object::SectionKind::Text,
            })
            .map(|s| s.address()..s.address() + s.size())
            .filter(|r| !r.is_empty())
            .collect();
        let loader = addr2line::Loader::new(path)
            .map_err(|e| anyhow::anyhow!("cannot load debug info from {}: {e}", path.display()))?;
        Ok(ElfSource { loader, text })
    }
}

impl SymbolSource for ElfSource {
    fn contains(&self, addr: u64) -> bool {
        self.text.iter().any(|r| r.contains(&addr))
    }

    fn describe(&self, addr: u64, return_address: bool) -> Option<String> {
        let probe = if return_address {
            addr.saturating_sub(1)
        } else {
            addr
        };
        let symbol = self
            .loader
            .find_symbol_info(addr)
            .map(|s| (demangle(s.name()), addr - s.address()));

        let mut frames: Vec<(Option<String>, Option<String>)> = Vec::new();
        if let Ok(mut iter) = self.loader.find_frames(probe) {
            while let Ok(Some(frame)) = iter.next() {
                let name = frame
                    .function
                    .as_ref()
                    .and_then(|f| f.demangle().ok())
                    .map(|n| demangle(&n));
                let location = frame.location.as_ref().and_then(|l| {
                    let file = shorten_path(l.file?);
                    Some(match l.line {
                        Some(line) => format!("{file}:{line}"),
                        None => file,
                    })
                });
                frames.push((name, location));
            }
        }
        if frames.is_empty() {
            let (name, off) = symbol?;
            return Some(format!("{name}+{off:#x}"));
        }
        let last = frames.len() - 1;
        let parts: Vec<String> = frames
            .into_iter()
            .enumerate()
            .map(|(i, (name, location))| {
                let mut name = name.unwrap_or_else(|| "??".into());
                if i == last {
                    match &symbol {
                        Some((sym, off)) => name = format!("{sym}+{off:#x}"),
                        None => name.push_str("+?"),
                    }
                }
                match location {
                    Some(loc) => format!("{name} at {loc}"),
                    None => name,
                }
            })
            .collect();
        Some(parts.join(" inlined into "))
    }
}

/// A Linux `System.map` (`ADDRESS TYPE NAME` lines): names the guest
/// kernel's text addresses (`0xffff...`) as `function+0xoff`.
pub struct SystemMapSource {
    /// Text symbols, sorted by address.
    symbols: Vec<(u64, String)>,
    /// `_stext`/`_text` .. `_etext`, or the span of the text symbols.
    text: Range<u64>,
}

impl SystemMapSource {
    /// Parses the text of a `System.map`.
    pub fn parse(map: &str) -> Result<SystemMapSource> {
        let mut symbols = Vec::new();
        let (mut start, mut end) = (None, None);
        for line in map.lines() {
            let mut it = line.split_whitespace();
            let (Some(addr), Some(ty), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            match name {
                "_text" | "_stext" => start = Some(start.map_or(addr, |s: u64| s.min(addr))),
                "_etext" => end = Some(addr),
                _ => {}
            }
            if matches!(ty, "t" | "T" | "w" | "W") {
                symbols.push((addr, name.to_string()));
            }
        }
        anyhow::ensure!(!symbols.is_empty(), "no text symbols: not a System.map");
        // One name per address: a function rather than a section marker
        // (`__do_softirq`, not `__softirqentry_text_start`).
        symbols.sort_by_key(|s| (s.0, is_marker(&s.1)));
        symbols.dedup_by_key(|s| s.0);
        let first = symbols[0].0;
        let last = symbols[symbols.len() - 1].0;
        let text = start.unwrap_or(first)..end.unwrap_or(last + 1);
        Ok(SystemMapSource { symbols, text })
    }

    /// Reads and parses `path`.
    pub fn open(path: &Path) -> Result<SystemMapSource> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("cannot read {} (run `cargo xtask linux`?)", path.display())
        })?;
        SystemMapSource::parse(&text).with_context(|| path.display().to_string())
    }
}

/// Whether a System.map name is a linker marker rather than a function:
/// `_text`, `_stext`, `__irqentry_text_start`, `__entry_text_end`...
fn is_marker(name: &str) -> bool {
    matches!(
        name,
        "_text" | "_stext" | "_etext" | "_sinittext" | "_einittext"
    ) || (name.starts_with("__") && (name.ends_with("_start") || name.ends_with("_end")))
}

impl SymbolSource for SystemMapSource {
    fn contains(&self, addr: u64) -> bool {
        self.text.contains(&addr)
    }

    fn describe(&self, addr: u64, return_address: bool) -> Option<String> {
        // A return address may be the first byte after its function.
        let probe = if return_address {
            addr.saturating_sub(1)
        } else {
            addr
        };
        let at = self.symbols.partition_point(|s| s.0 <= probe);
        let (start, name) = self.symbols.get(at.checked_sub(1)?)?;
        Some(format!("{name}+{:#x}", addr - start))
    }
}

static GUEST_PC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*PC 0x([0-9a-fA-F]{16})\s+LR 0x([0-9a-fA-F]{16})").expect("valid regex")
});

/// The guest PCs of a hypervisor dump (`    PC 0x... LR 0x...` lines after
/// `guest state: ...`) that `source` names: `(pc, description)`.
pub fn resolve_guest_pcs(lines: &[String], source: &dyn SymbolSource) -> Vec<(u64, String)> {
    lines
        .iter()
        .filter_map(|l| GUEST_PC.captures(l))
        .filter_map(|c| u64::from_str_radix(&c[1], 16).ok())
        .filter(|&pc| source.contains(pc))
        .filter_map(|pc| Some((pc, source.describe(pc, false)?)))
        .collect()
}

/// Makes paths inside the workspace relative, and shortens paths into the
/// cargo registry and the Rust sources to the part after them.
fn shorten_path(file: &str) -> String {
    let root = workspace_root();
    if let Ok(rel) = Path::new(file).strip_prefix(&root) {
        return rel.display().to_string();
    }
    for marker in ["/registry/src/", "/lib/rustlib/src/rust/", "/rustc/"] {
        if let Some(at) = file.find(marker) {
            let rest = &file[at + marker.len()..];
            // Skip the registry's index directory or rustc's commit hash.
            return match marker {
                "/lib/rustlib/src/rust/" => rest.to_string(),
                _ => rest.split_once('/').map_or(rest, |(_, r)| r).to_string(),
            };
        }
    }
    file.to_string()
}

static ADDRESS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b0x([0-9a-fA-F]{8,16})\b").expect("valid regex"));
static BACKTRACE_FRAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*#(\d+)\s").expect("valid regex"));

/// The hex addresses (`0x` and 8 to 16 digits) in `line`, with their spans.
pub fn extract_addresses(line: &str) -> Vec<(Range<usize>, u64)> {
    ADDRESS
        .captures_iter(line)
        .filter_map(|c| {
            let whole = c.get(0)?;
            let value = u64::from_str_radix(c.get(1)?.as_str(), 16).ok()?;
            Some((whole.range(), value))
        })
        .collect()
}

/// Whether `line` is a backtrace frame above #0 (its address is a return
/// address).
pub fn is_return_address_frame(line: &str) -> bool {
    BACKTRACE_FRAME
        .captures(line)
        .and_then(|c| c[1].parse::<u32>().ok())
        .is_some_and(|n| n > 0)
}

static KASLR_OFFSET: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\bKASLR offset 0x([0-9a-f]+) ").expect("valid regex"));

/// Annotates lines using a list of sources.
pub struct Symbolizer {
    sources: Vec<Box<dyn SymbolSource>>,
    /// The guest kernel's sources (System.map, vmlinux): asked after the
    /// others, at the address minus the guest's load offset.
    guest: Vec<Box<dyn SymbolSource>>,
    /// The KASLR offset the dump printed last (`symbols: KASLR offset
    /// 0x...` on a guest backtrace's first line); guest addresses after it
    /// are relocated by it.
    guest_offset: std::cell::Cell<u64>,
}

impl Symbolizer {
    /// A symbolizer over `sources`, asked in order.
    #[cfg(test)]
    pub fn new(sources: Vec<Box<dyn SymbolSource>>) -> Self {
        Symbolizer::with_guest(sources, Vec::new())
    }

    /// A symbolizer over `sources`, then over the guest kernel's `guest`
    /// sources, which see link addresses (the running address minus the
    /// KASLR offset the log states).
    pub fn with_guest(
        sources: Vec<Box<dyn SymbolSource>>,
        guest: Vec<Box<dyn SymbolSource>>,
    ) -> Self {
        Symbolizer {
            sources,
            guest,
            guest_offset: std::cell::Cell::new(0),
        }
    }

    /// `line` with ` [description]` appended for each address a source
    /// knows; unchanged if there is none.
    pub fn annotate(&self, line: &str) -> String {
        if let Some(off) = KASLR_OFFSET
            .captures(line)
            .and_then(|c| u64::from_str_radix(&c[1], 16).ok())
        {
            self.guest_offset.set(off);
        }
        let ret = is_return_address_frame(line);
        let mut out = line.to_string();
        for (_, addr) in extract_addresses(line) {
            let link = addr.wrapping_sub(self.guest_offset.get());
            let found = self
                .sources
                .iter()
                .filter(|s| s.contains(addr))
                .find_map(|s| s.describe(addr, ret))
                .or_else(|| {
                    self.guest
                        .iter()
                        .filter(|s| s.contains(link))
                        .find_map(|s| s.describe(link, ret))
                });
            if let Some(desc) = found {
                out.push_str(&format!(" [{desc}]"));
            }
        }
        out
    }
}

/// Where `cargo xtask symbolize` finds its symbols.
pub struct Sources {
    /// The hypervisor ELF; `None` for the default path.
    pub elf: Option<PathBuf>,
    /// The default hypervisor ELF, used if it exists.
    pub default_elf: PathBuf,
    /// A guest kernel's `System.map`.
    pub system_map: Option<PathBuf>,
    /// A guest kernel's `vmlinux` (symbols; DWARF if it has some).
    pub vmlinux: Option<PathBuf>,
}

impl Sources {
    /// Opens the sources: the hypervisor ELF, and apart the guest kernel's.
    /// Without a guest source the hypervisor ELF is required; with one, a
    /// missing default ELF is skipped.
    pub fn open(self) -> Result<Symbolizer> {
        let has_guest = self.system_map.is_some() || self.vmlinux.is_some();
        let mut out: Vec<Box<dyn SymbolSource>> = Vec::new();
        match self.elf {
            Some(elf) => out.push(Box::new(ElfSource::open(&elf)?)),
            None if has_guest && !self.default_elf.exists() => crate::say!(
                "no hypervisor ELF at {}: symbolizing guest addresses only",
                self.default_elf.display()
            ),
            None => out.push(Box::new(ElfSource::open(&self.default_elf)?)),
        }
        let mut guest: Vec<Box<dyn SymbolSource>> = Vec::new();
        if let Some(vmlinux) = &self.vmlinux {
            guest.push(Box::new(ElfSource::open(vmlinux)?));
        }
        if let Some(map) = &self.system_map {
            guest.push(Box::new(SystemMapSource::open(map)?));
        }
        Ok(Symbolizer::with_guest(out, guest))
    }
}

/// Runs `cargo xtask symbolize`.
pub fn run(input: Option<PathBuf>, sources: Sources) -> Result<()> {
    let sym = sources.open()?;
    let reader: Box<dyn BufRead> = match &input {
        Some(path) if path.as_os_str() != "-" => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        )),
        _ => Box::new(std::io::stdin().lock()),
    };
    let mut stdout = std::io::stdout().lock();
    for line in reader.split(b'\n') {
        let line = line?;
        let text = String::from_utf8_lossy(&line);
        let (text, cr) = match text.strip_suffix('\r') {
            Some(t) => (t, "\r"),
            None => (&*text, ""),
        };
        writeln!(stdout, "{}{cr}", sym.annotate(text))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_addresses() {
        let got: Vec<u64> = extract_addresses(
            "ELR_EL2 0x0000000040201234 x1 0x1 short 0x1234567 ok 0xdeadbeef long 0x00000000400000000 0xABCDEF0123",
        )
        .into_iter()
        .map(|(_, a)| a)
        .collect();
        assert_eq!(got, [0x4020_1234, 0xdead_beef, 0xab_cdef_0123]);
        let (span, _) = &extract_addresses("at 0x40200000!")[0];
        assert_eq!(span.clone(), 3..13);
    }

    #[test]
    fn recognises_return_address_frames() {
        assert!(!is_return_address_frame("  #0 0x0000000040201234"));
        assert!(is_return_address_frame("  #1 0x0000000040201234"));
        assert!(is_return_address_frame("#12 0x0000000040201234 foo"));
        assert!(!is_return_address_frame("x0 0x0000000040201234"));
    }

    struct Fake;
    impl SymbolSource for Fake {
        fn contains(&self, addr: u64) -> bool {
            (0x4020_0000..0x4030_0000).contains(&addr)
        }
        fn describe(&self, addr: u64, ret: bool) -> Option<String> {
            Some(format!(
                "f+{:#x}{}",
                addr - 0x4020_0000,
                if ret { " (ret)" } else { "" }
            ))
        }
    }

    #[test]
    fn annotates_only_known_addresses() {
        let s = Symbolizer::new(vec![Box::new(Fake)]);
        assert_eq!(s.annotate("no address here"), "no address here");
        assert_eq!(
            s.annotate("FAR_EL2 0x00000000dead0000"),
            "FAR_EL2 0x00000000dead0000"
        );
        assert_eq!(
            s.annotate("ELR 0x0000000040200010 LR 0x0000000040200020"),
            "ELR 0x0000000040200010 LR 0x0000000040200020 [f+0x10] [f+0x20]"
        );
        assert_eq!(
            s.annotate("  #2 0x0000000040200020"),
            "  #2 0x0000000040200020 [f+0x20 (ret)]"
        );
    }

    const MAP: &str = "\
ffff800080000000 T _text
ffff800080010000 T _stext
ffff800080010000 T __irqentry_text_start
ffff800080010040 t gic_handle_irq
ffff800080010080 T __do_softirq
ffff800080010080 T __irqentry_text_end
ffff800080010080 T __softirqentry_text_start
ffff800080010100 T lkdtm_HARDLOCKUP
ffff800080010124 T lkdtm_SOFTLOCKUP
ffff800080010200 W weak_thing
ffff800080010300 T _etext
ffff800081000000 D jiffies
ffff800081000100 d some_data
";

    #[test]
    fn system_map_names_kernel_text() {
        let s = SystemMapSource::parse(MAP).unwrap();
        assert!(s.contains(0xffff_8000_8001_0108));
        assert!(!s.contains(0xffff_8000_8100_0000), "data is not text");
        assert!(!s.contains(0x4020_0000));
        assert_eq!(
            s.describe(0xffff_8000_8001_0108, false).as_deref(),
            Some("lkdtm_HARDLOCKUP+0x8")
        );
        assert_eq!(
            s.describe(0xffff_8000_8001_0124, false).as_deref(),
            Some("lkdtm_SOFTLOCKUP+0x0")
        );
        // A return address just past a function belongs to that function.
        assert_eq!(
            s.describe(0xffff_8000_8001_0124, true).as_deref(),
            Some("lkdtm_HARDLOCKUP+0x24")
        );
        assert_eq!(
            s.describe(0xffff_8000_8001_0204, false).as_deref(),
            Some("weak_thing+0x4")
        );
        assert_eq!(
            s.describe(0xffff_8000_8001_0090, false).as_deref(),
            Some("__do_softirq+0x10"),
            "functions win over section markers"
        );
        assert!(SystemMapSource::parse("not a map\n").is_err());

        let sym = Symbolizer::new(vec![Box::new(Fake), Box::new(s)]);
        assert_eq!(
            sym.annotate("    PC 0xffff800080010108  LR 0xffff800080010050  SP 0xffff800082003e60"),
            "    PC 0xffff800080010108  LR 0xffff800080010050  SP 0xffff800082003e60 \
             [lkdtm_HARDLOCKUP+0x8] [gic_handle_irq+0x10]"
        );
        assert_eq!(
            sym.annotate("EL2 PC 0x0000000040200010"),
            "EL2 PC 0x0000000040200010 [f+0x10]"
        );
    }

    #[test]
    fn guest_addresses_follow_the_kaslr_offset_of_the_dump() {
        let s = SystemMapSource::parse(MAP).unwrap();
        let sym = Symbolizer::with_guest(vec![Box::new(Fake)], vec![Box::new(s)]);
        // Before any offset is known, link addresses resolve as they are.
        assert_eq!(
            sym.annotate("  #0 0xffff800080010108"),
            "  #0 0xffff800080010108 [lkdtm_HARDLOCKUP+0x8]"
        );
        let header =
            "guest backtrace (EL1, x29 0xffff000001234560; symbols: KASLR offset 0x2a00000 \
                      (VBAR_EL1 0xffff800082a10800 = vectors + offset)):";
        sym.annotate(header);
        assert_eq!(
            sym.annotate("  #0 0xffff800082a10108 <lkdtm_HARDLOCKUP+0x8>"),
            "  #0 0xffff800082a10108 <lkdtm_HARDLOCKUP+0x8> [lkdtm_HARDLOCKUP+0x8]"
        );
        // A return address: looked up before it.
        assert_eq!(
            sym.annotate("  #1 0xffff800082a10124"),
            "  #1 0xffff800082a10124 [lkdtm_HARDLOCKUP+0x24]"
        );
        // Hypervisor addresses are not shifted.
        assert_eq!(
            sym.annotate("  #2 0x0000000040200010"),
            "  #2 0x0000000040200010 [f+0x10 (ret)]"
        );
    }

    #[test]
    fn resolves_guest_pcs_of_a_dump() {
        let s = SystemMapSource::parse(MAP).unwrap();
        let log: Vec<String> = [
            "guest state: vm linux vCPU 3 (MPIDR 0x3), interrupted at EL1",
            "    PC 0xffff800080010108  LR 0xffff800080010050  SP 0xffff800082003e60",
            "guest state: vm linux vCPU 0 (MPIDR 0x0), interrupted at EL0",
            "    PC 0x0000000000412345  LR 0x0000000000412000  SP 0x0000ffffc0000000",
            "EL2 PC 0x0000000040200010 <x+0x10>",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            resolve_guest_pcs(&log, &s),
            [(0xffff_8000_8001_0108, "lkdtm_HARDLOCKUP+0x8".to_string())]
        );
        assert!(resolve_guest_pcs(&log[2..], &s).is_empty());
    }

    #[test]
    fn shortens_paths() {
        let root = workspace_root();
        assert_eq!(
            shorten_path(&root.join("hypervisor/src/main.rs").display().to_string()),
            "hypervisor/src/main.rs"
        );
        assert_eq!(
            shorten_path("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/spin-0.9.9/src/mutex.rs"),
            "spin-0.9.9/src/mutex.rs"
        );
        assert_eq!(
            shorten_path("/rustc/abc123/library/core/src/ptr/mod.rs"),
            "library/core/src/ptr/mod.rs"
        );
        assert_eq!(shorten_path("/elsewhere/x.rs"), "/elsewhere/x.rs");
    }
}
