//! The VM bundle: the newc cpio archive QEMU loads with `-initrd`, holding
//! one directory per VM:
//!
//! | path | |
//! |---|---|
//! | `NAME/image` | required: the guest kernel (an arm64 Image) |
//! | `NAME/initrd` | optional: the guest's initramfs |
//! | `NAME/cmdline` | optional: the kernel command line (one trailing newline is trimmed) |
//! | `NAME/config` | required: `key = value` lines, `#` comments, blank lines |
//! | `NAME/symbols` | optional: the guest kernel's symbols, `System.map` format, for guest backtraces |
//!
//! Config keys: `cpus` lists physical CPUs (`1-3,5`), `memory` is a size in
//! bytes with an optional `K`, `M` or `G` suffix, `dump = on|off` lets the
//! VM ask for a dump of itself, `lockup = off|SECONDS|MSms` turns on the
//! hypervisor's guest lockup detector for it.
//!
//! This crate is the format's one implementation: the hypervisor parses
//! and admits bundles with it, xtask checks every bundle it writes by
//! parsing it back, and the fuzz targets `bundle` and `cpio` run it. It is
//! `no_std` (with `alloc`) and host-tested.
//!
//! Two stages, so one VM's mistake never costs the others their boot:
//! [`parse`] turns the archive into one [`VmEntry`] per directory (only a
//! malformed archive fails as a whole), then [`admit`] hands out CPUs and
//! memory in archive order.

#![no_std]
#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod cpio;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use cpio::CpioError;

/// The most physical CPUs nmivisor manages (its `arch::MAX_CPUS`, which
/// asserts that the two agree): CPU numbers in a config stay below it.
pub const MAX_CPUS: usize = 16;

/// Longest VM name: short enough for console prefixes.
pub const MAX_NAME_LEN: usize = 15;
/// Guest memory is mapped with 2 MiB stage-2 blocks.
pub const MEMORY_GRANULE: u64 = 2 << 20;

/// A set of physical CPU numbers below [`MAX_CPUS`].
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSet(u64);

const _: () = assert!(MAX_CPUS <= 64, "CpuSet is a u64 bitmask");

impl CpuSet {
    /// No CPU.
    pub const EMPTY: Self = Self(0);

    /// Adds `cpu`; false (and no change) if it is not below [`MAX_CPUS`].
    pub fn insert(&mut self, cpu: usize) -> bool {
        if cpu >= MAX_CPUS {
            return false;
        }
        self.0 |= 1 << cpu;
        true
    }

    /// Whether `cpu` is in the set.
    pub fn contains(self, cpu: usize) -> bool {
        cpu < MAX_CPUS && self.0 & (1 << cpu) != 0
    }

    /// Whether the set has no CPU.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many CPUs the set has.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Both sets' CPUs.
    #[cfg(test)]
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The CPUs in both sets (two VMs claiming one CPU).
    pub fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// The CPUs in ascending order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_CPUS).filter(move |&cpu| self.contains(cpu))
    }

    /// The CPUs at or above `nr_cpus`.
    fn at_or_above(self, nr_cpus: usize) -> Self {
        Self(
            self.iter()
                .filter(|&cpu| cpu >= nr_cpus)
                .fold(0, |m, cpu| m | 1 << cpu),
        )
    }

    /// Parses a list like `1-3,5` (spaces around items allowed); blank
    /// text is the empty set.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut set = Self::EMPTY;
        if text.trim().is_empty() {
            return Ok(set);
        }
        for item in text.split(',').map(str::trim) {
            let (first, last) = match item.split_once('-') {
                Some((a, b)) => (parse_cpu(a.trim())?, parse_cpu(b.trim())?),
                None => {
                    let cpu = parse_cpu(item)?;
                    (cpu, cpu)
                }
            };
            if first > last {
                return Err(alloc::format!("range \"{item}\" runs backwards"));
            }
            for cpu in first..=last {
                set.insert(cpu);
            }
        }
        Ok(set)
    }
}

fn parse_cpu(text: &str) -> Result<usize, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(alloc::format!("\"{text}\" is not a CPU number"));
    }
    match text.parse::<usize>() {
        Ok(cpu) if cpu < MAX_CPUS => Ok(cpu),
        _ => Err(alloc::format!(
            "CPU {text} is beyond the {MAX_CPUS} nmivisor supports"
        )),
    }
}

/// `1-3,5`.
impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut cpus = self.iter().peekable();
        while let Some(first) = cpus.next() {
            let mut last = first;
            while cpus.peek() == Some(&(last + 1)) {
                last += 1;
                cpus.next();
            }
            if last == first {
                write!(f, "{sep}{first}")?;
            } else {
                write!(f, "{sep}{first}-{last}")?;
            }
            sep = ",";
        }
        Ok(())
    }
}

impl fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuSet({self})")
    }
}

/// One VM as described by the bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSpec<'a> {
    /// The VM's directory name.
    pub name: &'a str,
    /// The guest kernel (`NAME/image`).
    pub image: &'a [u8],
    /// The guest's initramfs (`NAME/initrd`).
    pub initrd: Option<&'a [u8]>,
    /// The kernel command line (`NAME/cmdline`, one trailing newline trimmed).
    pub cmdline: &'a str,
    /// `cpus`: the physical CPUs it owns.
    pub cpus: CpuSet,
    /// `memory`: its RAM in bytes.
    pub memory: u64,
    /// `dump = on`: the VM may ask for a dump of its own vCPUs (NMV_DUMP).
    /// Off by default: a dump stops the VM's CPUs for a while.
    pub dump: bool,
    /// The guest kernel's `System.map` (the `symbols` file), checked when
    /// the VM is built (`debug::guest_symbols`).
    pub symbols: Option<&'a [u8]>,
    /// `lockup = ...`: the guest lockup detector's threshold in
    /// milliseconds, 0 (the default) for off.
    pub lockup_ms: u64,
}

/// One VM directory of the bundle: its spec or why it cannot run.
pub type VmEntry<'a> = Result<VmSpec<'a>, VmError>;

/// A problem with one VM; the other VMs are unaffected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmError {
    /// The VM's directory name as found in the bundle.
    pub vm: String,
    /// What is wrong.
    pub kind: VmErrorKind,
}

/// Why one VM of the bundle is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmErrorKind {
    /// Not 1–15 characters of `[a-z0-9_-]`.
    BadName,
    /// No `NAME/image`.
    MissingImage,
    /// `NAME/image` is empty.
    EmptyImage,
    /// No `NAME/config`.
    MissingConfig,
    /// A file other than image, initrd, cmdline and config (or a nested path).
    UnknownFile(String),
    /// A file given twice.
    DuplicateFile(String),
    /// `config` or `cmdline` is not UTF-8.
    NotText(&'static str),
    /// A config line that is not `key = value`.
    ConfigSyntax {
        /// Its line number (from 1).
        line: usize,
    },
    /// A key the format does not have.
    UnknownKey {
        /// Its line number (from 1).
        line: usize,
        /// The key as written.
        key: String,
    },
    /// A key given twice.
    DuplicateKey {
        /// Its line number (from 1).
        line: usize,
        /// The key.
        key: String,
    },
    /// A value the key does not accept.
    BadValue {
        /// Its line number (from 1).
        line: usize,
        /// The key.
        key: &'static str,
        /// Why the value is refused.
        why: String,
    },
    /// A required key (`cpus`, `memory`) is missing.
    MissingKey(&'static str),
    /// `cpus` names no CPU.
    EmptyCpus,
    /// `memory = 0`.
    ZeroMemory,
    /// Admission: CPUs this machine does not have.
    NoSuchCpus {
        /// The CPUs it lacks.
        cpus: CpuSet,
        /// How many CPUs the machine has.
        nr_cpus: usize,
    },
    /// Admission: CPUs an earlier VM already owns.
    CpusTaken {
        /// The CPUs already taken.
        cpus: CpuSet,
        /// The VM that has them.
        owner: String,
    },
    /// Less memory than one 2 MiB block.
    MemoryTooSmall(u64),
    /// Memory that is not a multiple of 2 MiB.
    MemoryUnaligned(u64),
    /// More memory than is left.
    OutOfMemory {
        /// What the VM asks for, in bytes.
        wanted: u64,
        /// What is left, in bytes.
        left: u64,
    },
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VM \"{}\": {}", self.vm, self.kind)
    }
}

/// The reason alone, without the VM's name.
impl fmt::Display for VmErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use VmErrorKind::*;
        match self {
            BadName => write!(
                f,
                "bad name: use 1-{MAX_NAME_LEN} characters of a-z, 0-9, _ and -"
            ),
            MissingImage => write!(f, "no image file (the guest kernel)"),
            EmptyImage => write!(f, "the image file is empty"),
            MissingConfig => write!(f, "no config file"),
            UnknownFile(file) => write!(f, "unexpected file \"{file}\""),
            DuplicateFile(file) => write!(f, "file \"{file}\" appears twice"),
            NotText(file) => write!(f, "{file} is not UTF-8 text"),
            ConfigSyntax { line } => write!(f, "config line {line}: expected \"key = value\""),
            UnknownKey { line, key } => {
                write!(
                    f,
                    "config line {line}: unknown key \"{key}\" (known: cpus, memory, dump, lockup)"
                )
            }
            DuplicateKey { line, key } => write!(f, "config line {line}: \"{key}\" set twice"),
            BadValue { line, key, why } => write!(f, "config line {line}: bad {key}: {why}"),
            MissingKey(key) => write!(f, "config does not set \"{key}\""),
            EmptyCpus => write!(f, "cpus is empty"),
            ZeroMemory => write!(f, "memory is zero"),
            NoSuchCpus { cpus, nr_cpus } => {
                let (noun, verb) = if cpus.len() == 1 {
                    ("CPU", "does")
                } else {
                    ("CPUs", "do")
                };
                write!(
                    f,
                    "{noun} {cpus} {verb} not exist (this machine has {nr_cpus})"
                )
            }
            CpusTaken { cpus, owner } => {
                let (noun, verb) = if cpus.len() == 1 {
                    ("CPU", "belongs")
                } else {
                    ("CPUs", "belong")
                };
                write!(f, "{noun} {cpus} already {verb} to VM \"{owner}\"")
            }
            MemoryTooSmall(m) => write!(f, "memory {m:#x} is below the 2 MiB minimum"),
            MemoryUnaligned(m) => write!(f, "memory {m:#x} is not a multiple of 2 MiB"),
            OutOfMemory { wanted, left } => {
                write!(
                    f,
                    "memory {wanted:#x} does not fit: only {left:#x} bytes are left"
                )
            }
        }
    }
}

/// The archive as a whole is unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleError {
    /// The archive itself is malformed.
    Cpio(CpioError),
    /// A file outside any VM directory: the bundle was probably built from
    /// the wrong directory.
    StrayFile(String),
    /// The archive holds no VM directory.
    Empty,
    /// More VM directories than [`MAX_VM_DIRS`].
    TooManyVms,
}

/// The most VM directories a bundle may hold. Every VM needs a CPU of its
/// own, so more than [`MAX_CPUS`] can never all run; four times that
/// leaves room for VMs that are refused and reported one by one, while a
/// hostile archive with thousands of directories is refused as a whole
/// before it can exhaust the heap.
pub const MAX_VM_DIRS: usize = 4 * MAX_CPUS;

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpio(e) => write!(f, "{e}"),
            Self::StrayFile(name) => {
                write!(f, "\"{name}\" is not inside a VM directory (NAME/{name}?)")
            }
            Self::Empty => write!(f, "no VM directories"),
            Self::TooManyVms => write!(f, "more than {MAX_VM_DIRS} VM directories"),
        }
    }
}

impl From<CpioError> for BundleError {
    fn from(e: CpioError) -> Self {
        Self::Cpio(e)
    }
}

/// The files of one VM directory, gathered before interpretation.
#[derive(Default)]
struct Files<'a> {
    image: Option<&'a [u8]>,
    initrd: Option<&'a [u8]>,
    cmdline: Option<&'a [u8]>,
    config: Option<&'a [u8]>,
    symbols: Option<&'a [u8]>,
    /// The first structural problem found.
    error: Option<VmErrorKind>,
}

/// Splits the archive into VMs, in the order their first entry appears.
pub fn parse(data: &[u8]) -> Result<Vec<VmEntry<'_>>, BundleError> {
    let mut vms: Vec<(&str, Files<'_>)> = Vec::new();
    for entry in cpio::entries(data) {
        let entry = entry?;
        let path = entry.name.trim_start_matches("./").trim_start_matches('/');
        if path.is_empty() || path == "." {
            continue;
        }
        let (vm, file) = match path.split_once('/') {
            Some((vm, "")) => (vm, None),
            Some((vm, file)) => (vm, Some(file)),
            None if entry.is_dir() => (path, None),
            None => return Err(BundleError::StrayFile(path.to_string())),
        };
        let index = match vms.iter().position(|(name, _)| *name == vm) {
            Some(i) => i,
            None if vms.len() == MAX_VM_DIRS => return Err(BundleError::TooManyVms),
            None => {
                vms.push((vm, Files::default()));
                vms.len() - 1
            }
        };
        let files = &mut vms[index].1;
        if let Some(file) = file {
            if files.error.is_none() {
                files.error = files.add(file, entry.is_dir(), entry.data).err();
            }
        }
    }
    if vms.is_empty() {
        return Err(BundleError::Empty);
    }
    Ok(vms
        .into_iter()
        .map(|(name, files)| vm_entry(name, files))
        .collect())
}

impl<'a> Files<'a> {
    fn add(&mut self, file: &str, is_dir: bool, data: &'a [u8]) -> Result<(), VmErrorKind> {
        let slot = match file {
            "image" => &mut self.image,
            "initrd" => &mut self.initrd,
            "cmdline" => &mut self.cmdline,
            "config" => &mut self.config,
            "symbols" => &mut self.symbols,
            _ => return Err(VmErrorKind::UnknownFile(file.to_string())),
        };
        if is_dir {
            return Err(VmErrorKind::UnknownFile(file.to_string()));
        }
        if slot.replace(data).is_some() {
            return Err(VmErrorKind::DuplicateFile(file.to_string()));
        }
        Ok(())
    }
}

fn vm_entry<'a>(name: &'a str, files: Files<'a>) -> VmEntry<'a> {
    let err = |kind| VmError {
        vm: name.to_string(),
        kind,
    };
    if !valid_name(name) {
        return Err(err(VmErrorKind::BadName));
    }
    if let Some(kind) = files.error {
        return Err(err(kind));
    }
    let image = files.image.ok_or_else(|| err(VmErrorKind::MissingImage))?;
    if image.is_empty() {
        return Err(err(VmErrorKind::EmptyImage));
    }
    let config = files
        .config
        .ok_or_else(|| err(VmErrorKind::MissingConfig))?;
    let config = core::str::from_utf8(config).map_err(|_| err(VmErrorKind::NotText("config")))?;
    let Config {
        cpus,
        memory,
        dump,
        lockup_ms,
    } = parse_config(config).map_err(err)?;
    let cmdline = match files.cmdline {
        Some(bytes) => {
            core::str::from_utf8(bytes).map_err(|_| err(VmErrorKind::NotText("cmdline")))?
        }
        None => "",
    };
    let cmdline = cmdline.strip_suffix('\n').unwrap_or(cmdline);
    Ok(VmSpec {
        name,
        image,
        initrd: files.initrd,
        cmdline,
        cpus,
        memory,
        dump,
        symbols: files.symbols,
        lockup_ms,
    })
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// What a config file says.
#[derive(Debug, PartialEq, Eq)]
struct Config {
    cpus: CpuSet,
    memory: u64,
    dump: bool,
    lockup_ms: u64,
}

/// The longest lockup threshold: an hour.
pub const MAX_LOCKUP_MS: u64 = 3_600_000;

/// `lockup = off`, `lockup = 2` (seconds) or `lockup = 500ms`: the guest
/// lockup detector's threshold in ms (0 = off). At least 200 ms: the
/// detector samples every 100 ms.
fn parse_lockup(value: &str) -> Result<u64, String> {
    if value == "off" {
        return Ok(0);
    }
    let (digits, scale) = match value.strip_suffix("ms") {
        Some(d) => (d.trim(), 1),
        None => (value.strip_suffix('s').unwrap_or(value).trim(), 1000),
    };
    let bad = || alloc::format!("\"{value}\" is not off, SECONDS or MILLISECONDSms");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 9 {
        return Err(bad());
    }
    let ms = digits.parse::<u64>().map_err(|_| bad())? * scale;
    if !(200..=MAX_LOCKUP_MS).contains(&ms) {
        return Err(alloc::format!("{ms} ms is outside 200 ms to 1 hour"));
    }
    Ok(ms)
}

/// Reads `cpus`, `memory`, `dump` and `lockup` from a config file.
fn parse_config(text: &str) -> Result<Config, VmErrorKind> {
    let mut cpus = None;
    let mut memory = None;
    let mut dump = None;
    let mut lockup = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
        if content.is_empty() {
            continue;
        }
        let (key, value) = content
            .split_once('=')
            .ok_or(VmErrorKind::ConfigSyntax { line })?;
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(VmErrorKind::ConfigSyntax { line });
        }
        let duplicate = || VmErrorKind::DuplicateKey {
            line,
            key: key.to_string(),
        };
        match key {
            "cpus" => {
                let set = CpuSet::parse(value).map_err(|why| VmErrorKind::BadValue {
                    line,
                    key: "cpus",
                    why,
                })?;
                if cpus.replace(set).is_some() {
                    return Err(duplicate());
                }
            }
            "memory" => {
                let size = parse_size(value).map_err(|why| VmErrorKind::BadValue {
                    line,
                    key: "memory",
                    why,
                })?;
                if memory.replace(size).is_some() {
                    return Err(duplicate());
                }
            }
            "dump" => {
                let on = match value {
                    "on" => true,
                    "off" => false,
                    _ => {
                        return Err(VmErrorKind::BadValue {
                            line,
                            key: "dump",
                            why: alloc::format!("\"{value}\" is neither on nor off"),
                        })
                    }
                };
                if dump.replace(on).is_some() {
                    return Err(duplicate());
                }
            }
            "lockup" => {
                let ms = parse_lockup(value).map_err(|why| VmErrorKind::BadValue {
                    line,
                    key: "lockup",
                    why,
                })?;
                if lockup.replace(ms).is_some() {
                    return Err(duplicate());
                }
            }
            _ => {
                return Err(VmErrorKind::UnknownKey {
                    line,
                    key: key.to_string(),
                })
            }
        }
    }
    let cpus = cpus.ok_or(VmErrorKind::MissingKey("cpus"))?;
    let memory = memory.ok_or(VmErrorKind::MissingKey("memory"))?;
    if cpus.is_empty() {
        return Err(VmErrorKind::EmptyCpus);
    }
    if memory == 0 {
        return Err(VmErrorKind::ZeroMemory);
    }
    Ok(Config {
        cpus,
        memory,
        dump: dump.unwrap_or(false),
        lockup_ms: lockup.unwrap_or(0),
    })
}

/// `4096`, `64K`, `512M`, `1G` (suffixes are binary and case-insensitive).
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'K' | b'k') => (&text[..text.len() - 1], 10),
        Some(b'M' | b'm') => (&text[..text.len() - 1], 20),
        Some(b'G' | b'g') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let bad = || alloc::format!("\"{text}\" is not a size (bytes, or a number with K, M or G)");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let value: u64 = digits.parse().map_err(|_| bad())?;
    value
        .checked_mul(1 << shift)
        .ok_or_else(|| alloc::format!("\"{text}\" is too large"))
}

/// Hands out CPUs and memory in order. A VM is admitted when its CPUs exist
/// (`< nr_cpus`) and no earlier admitted VM owns them, and its memory is a
/// non-zero multiple of 2 MiB that still fits in `memory_available`. A
/// rejected VM takes nothing, so later VMs may use what it asked for.
pub fn admit<'a>(
    entries: Vec<VmEntry<'a>>,
    nr_cpus: usize,
    memory_available: u64,
) -> Vec<VmEntry<'a>> {
    let mut owners: Vec<(&'a str, CpuSet)> = Vec::new();
    let mut left = memory_available;
    entries
        .into_iter()
        .map(|entry| {
            let spec = entry?;
            let err = |kind| VmError {
                vm: spec.name.to_string(),
                kind,
            };
            let missing = spec.cpus.at_or_above(nr_cpus);
            if !missing.is_empty() {
                return Err(err(VmErrorKind::NoSuchCpus {
                    cpus: missing,
                    nr_cpus,
                }));
            }
            for &(owner, cpus) in &owners {
                let taken = spec.cpus.intersection(cpus);
                if !taken.is_empty() {
                    return Err(err(VmErrorKind::CpusTaken {
                        cpus: taken,
                        owner: owner.to_string(),
                    }));
                }
            }
            if spec.memory < MEMORY_GRANULE {
                return Err(err(VmErrorKind::MemoryTooSmall(spec.memory)));
            }
            if !spec.memory.is_multiple_of(MEMORY_GRANULE) {
                return Err(err(VmErrorKind::MemoryUnaligned(spec.memory)));
            }
            if spec.memory > left {
                return Err(err(VmErrorKind::OutOfMemory {
                    wanted: spec.memory,
                    left,
                }));
            }
            left -= spec.memory;
            owners.push((spec.name, spec.cpus));
            Ok(spec)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::tests::{newc, DIR, FILE};
    use alloc::format;
    use alloc::vec;
    use std::prelude::rust_2021::*;

    const IMAGE: &[u8] = b"MZ fake arm64 Image";

    fn vm_files<'a>(name: &'a str, config: &'a str) -> Vec<(String, u32, &'a [u8])> {
        vec![
            (name.to_string(), DIR, &b""[..]),
            (format!("{name}/image"), FILE, IMAGE),
            (format!("{name}/config"), FILE, config.as_bytes()),
        ]
    }

    fn archive(files: &[(String, u32, &[u8])]) -> Vec<u8> {
        let refs: Vec<(&str, u32, &[u8])> =
            files.iter().map(|(n, m, d)| (n.as_str(), *m, *d)).collect();
        newc(&refs)
    }

    fn one_vm(config: &str) -> VmEntry<'static> {
        let data = archive(&vm_files("vm", config)).leak();
        let mut entries = parse(data).unwrap();
        assert_eq!(entries.len(), 1);
        entries.pop().unwrap()
    }

    fn kind(entry: &VmEntry<'_>) -> VmErrorKind {
        entry.clone().unwrap_err().kind
    }

    #[test]
    fn good_two_vm_bundle() {
        let mut files = vm_files("linux", "# the Linux guest\ncpus = 1-3\n\nmemory = 512M\n");
        files.push(("linux/initrd".into(), FILE, b"initramfs"));
        files.push(("linux/cmdline".into(), FILE, b"console=ttyAMA0 earlycon\n"));
        files.extend(vm_files("test_0", "cpus=0 # boot CPU\nmemory = 4194304"));
        let data = archive(&files);
        let entries = admit(parse(&data).unwrap(), 4, 1 << 30);
        let linux = entries[0].as_ref().unwrap();
        assert_eq!(linux.name, "linux");
        assert_eq!(linux.image, IMAGE);
        assert_eq!(linux.initrd, Some(&b"initramfs"[..]));
        assert_eq!(linux.cmdline, "console=ttyAMA0 earlycon");
        assert_eq!(linux.cpus.iter().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(linux.memory, 512 << 20);
        let test = entries[1].as_ref().unwrap();
        assert_eq!((test.name, test.initrd, test.cmdline), ("test_0", None, ""));
        assert_eq!(test.cpus.iter().collect::<Vec<_>>(), [0]);
        assert_eq!(test.memory, 4 << 20);
    }

    #[test]
    fn accepts_dot_slash_paths_without_directory_entries() {
        let data = newc(&[
            (".", DIR, b""),
            ("./a/", DIR, b""),
            ("/a/initrd", FILE, b"rd"),
            ("./a/image", FILE, IMAGE),
            ("./a/config", FILE, b"cpus = 0\nmemory = 2M\n"),
        ]);
        let entries = parse(&data).unwrap();
        assert_eq!(entries.len(), 1);
        let a = entries[0].as_ref().unwrap();
        assert_eq!((a.name, a.initrd), ("a", Some(&b"rd"[..])));
    }

    #[test]
    fn whole_bundle_errors() {
        let data = archive(&vm_files("vm", "cpus = 0\nmemory = 2M"));
        let cut = &data[..data.len() - 8];
        assert!(matches!(parse(cut), Err(BundleError::Cpio(_))));
        assert_eq!(parse(&newc(&[])), Err(BundleError::Empty));
        let stray = newc(&[("image", FILE, IMAGE)]);
        let err = parse(&stray).unwrap_err();
        assert_eq!(err, BundleError::StrayFile("image".into()));
        assert_eq!(
            err.to_string(),
            "\"image\" is not inside a VM directory (NAME/image?)"
        );
    }

    #[test]
    fn per_vm_file_errors_leave_other_vms_alone() {
        let mut files = vm_files("good", "cpus = 0\nmemory = 2M");
        files.push(("noimage".into(), DIR, b""));
        files.push(("noimage/config".into(), FILE, b"cpus = 1\nmemory = 2M"));
        files.push(("noconfig/image".into(), FILE, IMAGE));
        files.push(("Bad".into(), DIR, b""));
        files.extend(vm_files("emptyimg", "cpus = 1\nmemory = 2M"));
        files.push(("emptyimg/image".into(), FILE, b""));
        files.push(("extra/image".into(), FILE, IMAGE));
        files.push(("extra/notes".into(), FILE, b"hi"));
        files.push(("nested/sub/image".into(), FILE, IMAGE));
        files.push(("badtext/image".into(), FILE, IMAGE));
        files.push(("badtext/config".into(), FILE, b"\xff"));
        files.push(("badcmd/image".into(), FILE, IMAGE));
        files.push(("badcmd/config".into(), FILE, b"cpus=0\nmemory=2M"));
        files.push(("badcmd/cmdline".into(), FILE, b"\xfe"));
        files.push(("sixteen-chars-xx/image".into(), FILE, IMAGE));
        let data = archive(&files);
        let entries = parse(&data).unwrap();
        let kinds: Vec<_> = entries.iter().skip(1).map(kind).collect();
        assert!(entries[0].is_ok());
        assert_eq!(
            kinds,
            [
                VmErrorKind::MissingImage,
                VmErrorKind::MissingConfig,
                VmErrorKind::BadName,
                VmErrorKind::DuplicateFile("image".into()),
                VmErrorKind::UnknownFile("notes".into()),
                VmErrorKind::UnknownFile("sub/image".into()),
                VmErrorKind::NotText("config"),
                VmErrorKind::NotText("cmdline"),
                VmErrorKind::BadName,
            ]
        );
        assert_eq!(entries[3].clone().unwrap_err().vm, "Bad");
        assert_eq!(
            entries[1].clone().unwrap_err().to_string(),
            "VM \"noimage\": no image file (the guest kernel)"
        );
    }

    #[test]
    fn empty_image_is_rejected() {
        let data = newc(&[
            ("e/image", FILE, b""),
            ("e/config", FILE, b"cpus=0\nmemory=2M"),
        ]);
        assert_eq!(kind(&parse(&data).unwrap()[0]), VmErrorKind::EmptyImage);
    }

    #[test]
    fn config_errors() {
        use VmErrorKind::*;
        let bad = |key, why: &str| BadValue {
            line: 1,
            key,
            why: why.to_string(),
        };
        let cases: &[(&str, VmErrorKind)] = &[
            ("cpus 0", ConfigSyntax { line: 1 }),
            ("# c\n = 3", ConfigSyntax { line: 2 }),
            (
                "cpus = 0\nmemory = 2M\nfoo = 1",
                UnknownKey {
                    line: 3,
                    key: "foo".into(),
                },
            ),
            (
                "cpus = 0\ncpus = 1",
                DuplicateKey {
                    line: 2,
                    key: "cpus".into(),
                },
            ),
            (
                "memory = 2M\nmemory = 4M",
                DuplicateKey {
                    line: 2,
                    key: "memory".into(),
                },
            ),
            ("cpus = x", bad("cpus", "\"x\" is not a CPU number")),
            ("cpus = 1,", bad("cpus", "\"\" is not a CPU number")),
            ("cpus = 3-1", bad("cpus", "range \"3-1\" runs backwards")),
            (
                "cpus = 16",
                bad("cpus", "CPU 16 is beyond the 16 nmivisor supports"),
            ),
            ("cpus = -1", bad("cpus", "\"\" is not a CPU number")),
            (
                "memory = 2T",
                bad(
                    "memory",
                    "\"2T\" is not a size (bytes, or a number with K, M or G)",
                ),
            ),
            (
                "memory = M",
                bad(
                    "memory",
                    "\"M\" is not a size (bytes, or a number with K, M or G)",
                ),
            ),
            (
                "memory = -5",
                bad(
                    "memory",
                    "\"-5\" is not a size (bytes, or a number with K, M or G)",
                ),
            ),
            (
                "memory = 99999999999G",
                bad("memory", "\"99999999999G\" is too large"),
            ),
            (
                "memory = 99999999999999999999",
                bad(
                    "memory",
                    "\"99999999999999999999\" is not a size (bytes, or a number with K, M or G)",
                ),
            ),
            ("memory = 2M", MissingKey("cpus")),
            ("cpus = 0", MissingKey("memory")),
            ("cpus = \nmemory = 2M", EmptyCpus),
            ("cpus = 0\nmemory = 0", ZeroMemory),
            ("cpus = 0\nmemory = 0K", ZeroMemory),
        ];
        for (config, want) in cases {
            assert_eq!(&kind(&one_vm(config)), want, "config {config:?}");
        }
    }

    #[test]
    fn sizes_and_cpu_lists() {
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("3g"), Ok(3 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        let set = CpuSet::parse(" 0 , 2-4,7, 9 - 10").unwrap();
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 2, 3, 4, 7, 9, 10]);
        assert_eq!(set.len(), 7);
        assert_eq!(set.to_string(), "0,2-4,7,9-10");
        assert_eq!(format!("{:?}", CpuSet::EMPTY), "CpuSet()");
        let mut s = CpuSet::EMPTY;
        assert!(!s.insert(MAX_CPUS));
        assert!(s.insert(MAX_CPUS - 1));
        assert!(!s.contains(MAX_CPUS) && s.contains(MAX_CPUS - 1));
        assert_eq!(s.union(set).len(), 8);
    }

    fn spec(name: &'static str, cpus: &str, memory: u64) -> VmEntry<'static> {
        Ok(VmSpec {
            name,
            image: IMAGE,
            initrd: None,
            cmdline: "",
            cpus: CpuSet::parse(cpus).unwrap(),
            memory,
            dump: false,
            symbols: None,
            lockup_ms: 0,
        })
    }

    #[test]
    fn thousands_of_vm_directories_are_refused_whole() {
        let config = "cpus = 0\nmemory = 2M";
        let mut files = Vec::new();
        for i in 0..=MAX_VM_DIRS {
            files.extend(vm_files(
                Box::leak(format!("vm{i}").into_boxed_str()),
                config,
            ));
        }
        let data = archive(&files);
        assert_eq!(parse(&data).err(), Some(BundleError::TooManyVms));
        assert_eq!(
            BundleError::TooManyVms.to_string(),
            format!("more than {MAX_VM_DIRS} VM directories")
        );
        // Exactly the limit is accepted.
        let limit = MAX_VM_DIRS * vm_files("x", config).len();
        assert_eq!(parse(&archive(&files[..limit])).unwrap().len(), MAX_VM_DIRS);
    }

    #[test]
    fn dump_permission_is_off_unless_on() {
        let cfg = |text: &str| parse_config(text);
        assert!(!cfg("cpus = 1\nmemory = 2M").unwrap().dump);
        assert!(cfg("cpus = 1\nmemory = 2M\ndump = on").unwrap().dump);
        assert!(!cfg("cpus = 1\nmemory = 2M\ndump = off").unwrap().dump);
        let err = cfg("cpus = 1\nmemory = 2M\ndump = yes").unwrap_err();
        assert_eq!(
            err.to_string(),
            "config line 3: bad dump: \"yes\" is neither on nor off"
        );
        assert!(matches!(
            cfg("dump = on\ndump = off\ncpus = 1\nmemory = 2M"),
            Err(VmErrorKind::DuplicateKey { line: 2, .. })
        ));
    }

    #[test]
    fn lockup_detector_is_off_unless_set() {
        let cfg = |text: &str| parse_config(text);
        assert_eq!(cfg("cpus = 1\nmemory = 2M").unwrap().lockup_ms, 0);
        assert_eq!(
            cfg("cpus = 1\nmemory = 2M\nlockup = off")
                .unwrap()
                .lockup_ms,
            0
        );
        assert_eq!(
            cfg("cpus = 1\nmemory = 2M\nlockup = 2").unwrap().lockup_ms,
            2000
        );
        assert_eq!(
            cfg("cpus = 1\nmemory = 2M\nlockup = 3s").unwrap().lockup_ms,
            3000
        );
        assert_eq!(
            cfg("cpus = 1\nmemory = 2M\nlockup = 500ms")
                .unwrap()
                .lockup_ms,
            500
        );
        for bad in ["on", "100ms", "2h", "-1", "", "99999999999"] {
            let err = cfg(&alloc::format!("cpus = 1\nmemory = 2M\nlockup = {bad}")).unwrap_err();
            assert!(
                err.to_string().starts_with("config line 3: bad lockup: "),
                "{bad}: {err}"
            );
        }
        assert!(matches!(
            cfg("lockup = 1\nlockup = 2\ncpus = 1\nmemory = 2M"),
            Err(VmErrorKind::DuplicateKey { line: 2, .. })
        ));
    }

    #[test]
    fn a_vm_may_carry_its_symbols() {
        let mut files = vm_files("linux", "cpus = 0\nmemory = 2M\n");
        files.push((
            "linux/symbols".to_string(),
            FILE,
            b"ffff800080000000 T _text\n".as_slice(),
        ));
        let bytes = archive(&files);
        let entries = parse(&bytes).unwrap();
        let spec = entries[0].clone().unwrap();
        assert_eq!(spec.symbols, Some(b"ffff800080000000 T _text\n".as_slice()));
        let bytes = archive(&vm_files("linux", "cpus = 0\nmemory = 2M\n"));
        let entries = parse(&bytes).unwrap();
        assert_eq!(entries[0].clone().unwrap().symbols, None);
    }

    #[test]
    fn admission_errors() {
        let m = MEMORY_GRANULE;
        let early_error = Err(VmError {
            vm: "broken".into(),
            kind: VmErrorKind::MissingImage,
        });
        let entries = vec![
            spec("a", "0-1", 4 * m),
            early_error.clone(),
            spec("big", "7-9", m),      // CPUs 8, 9 do not exist
            spec("b", "1-3", m),        // CPU 1 belongs to a
            spec("tiny", "4", m / 2),   // below 2 MiB
            spec("odd", "4", m + 4096), // not a multiple of 2 MiB
            spec("hog", "4", 8 * m),    // only 4 * 2 MiB left
            spec("c", "2-3", 4 * m),    // fits exactly: rejected VMs took nothing
            spec("late", "5", m),       // no memory left
        ];
        let got = admit(entries, 8, 8 * m);
        assert!(got[0].is_ok());
        assert_eq!(got[1], early_error);
        let msg = |i: usize| got[i].clone().unwrap_err().to_string();
        assert_eq!(
            msg(2),
            "VM \"big\": CPUs 8-9 do not exist (this machine has 8)"
        );
        assert_eq!(msg(3), "VM \"b\": CPU 1 already belongs to VM \"a\"");
        assert_eq!(
            msg(4),
            "VM \"tiny\": memory 0x100000 is below the 2 MiB minimum"
        );
        assert_eq!(
            msg(5),
            "VM \"odd\": memory 0x201000 is not a multiple of 2 MiB"
        );
        assert_eq!(
            msg(6),
            "VM \"hog\": memory 0x1000000 does not fit: only 0x800000 bytes are left"
        );
        assert!(got[7].is_ok());
        assert_eq!(
            msg(8),
            "VM \"late\": memory 0x200000 does not fit: only 0x0 bytes are left"
        );
    }

    #[test]
    fn every_error_has_a_message() {
        use VmErrorKind::*;
        let kinds = [
            BadName,
            EmptyImage,
            MissingConfig,
            UnknownFile("x".into()),
            ConfigSyntax { line: 4 },
            UnknownKey {
                line: 1,
                key: "k".into(),
            },
            DuplicateKey {
                line: 2,
                key: "cpus".into(),
            },
            MissingKey("memory"),
            EmptyCpus,
            ZeroMemory,
        ];
        for kind in kinds {
            let text = VmError {
                vm: "v".into(),
                kind,
            }
            .to_string();
            assert!(text.starts_with("VM \"v\": ") && text.len() > 10, "{text}");
        }
    }
}
