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

/// Annotates lines using a list of sources.
pub struct Symbolizer {
    sources: Vec<Box<dyn SymbolSource>>,
}

impl Symbolizer {
    /// A symbolizer over `sources`, asked in order.
    pub fn new(sources: Vec<Box<dyn SymbolSource>>) -> Self {
        Symbolizer { sources }
    }

    /// `line` with ` [description]` appended for each address a source
    /// knows; unchanged if there is none.
    pub fn annotate(&self, line: &str) -> String {
        let ret = is_return_address_frame(line);
        let mut out = line.to_string();
        for (_, addr) in extract_addresses(line) {
            let found = self
                .sources
                .iter()
                .filter(|s| s.contains(addr))
                .find_map(|s| s.describe(addr, ret));
            if let Some(desc) = found {
                out.push_str(&format!(" [{desc}]"));
            }
        }
        out
    }
}

/// Runs `cargo xtask symbolize`.
pub fn run(input: Option<PathBuf>, elf: PathBuf) -> Result<()> {
    let sym = Symbolizer::new(vec![Box::new(ElfSource::open(&elf)?)]);
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
