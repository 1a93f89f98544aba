//! `cargo xtask bench --profile ROW`: where the instructions of one
//! benchmark operation go, per function, under nmivisor.
//!
//! guest-test runs only benchmark ROW (`guest-test.bench-only=ROW`) as the
//! only VM, twice: with N and with 2N timed operations. Both runs use the
//! bench's `-icount shift=0,sleep=off` plus one instruction per translation
//! block (`-singlestep`) and QEMU's execution log (`-d exec,nochain`), so
//! every executed instruction is one `Trace` line. The log goes to
//! `target/nmivisor/profile-N.log` (about 80 bytes per instruction, some
//! hundreds of MB; deleted once counted); the lines are counted per (CPU,
//! exception level, PC). The boots are identical to the instruction (the runs
//! are deterministic), so the difference of the two histograms is exactly
//! N operations plus nothing else; divided by N it is instructions per
//! operation. The PCs are named with the symbol tables of
//! `hypervisor.elf` (EL2) and `guest-test.elf` (EL1): both are linked at
//! the same addresses, so the exception level decides which.
//!
//! The VM gets [`PROFILE_MEM`] instead of the bench's 256 MiB, which
//! makes its load (zeroing) cheaper to log.
//!
//! The EL comes from the TB flags of the log line (QEMU 7.2's
//! TBFLAG_ANY.MMUIDX, bits [7:4]: 6 is the EL2 regime `ARMMMUIdx_E2`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::bench::{self, BenchOptions};
use crate::build::{self, Flavor};
use crate::bundle::{self, VmConfig};
use crate::harness;
use crate::provision;
use crate::say;
use crate::util;

/// Key of one histogram bucket: (CPU, EL2?, PC).
type Key = (u32, bool, u64);

/// The text both images are linked at (`linker/*.ld`): PCs there are
/// counted in flat arrays (the reader runs unoptimized in xtask's debug
/// build and sees tens of millions of lines), others in a map.
const TEXT_BASE: u64 = 0x4020_0000;
const TEXT_WORDS: usize = 0x10_0000 / 4;

/// A run's histogram, and how many log lines did not parse.
#[derive(Default)]
struct Histogram {
    /// Per (CPU, EL2?): counts of the instructions at TEXT_BASE + 4 i.
    flat: HashMap<(u32, bool), Vec<u64>>,
    other: HashMap<Key, u64>,
    bad: u64,
}

impl Histogram {
    fn add(&mut self, (cpu, el2, pc): Key) {
        let i = pc.wrapping_sub(TEXT_BASE) / 4;
        if (i as usize) < TEXT_WORDS {
            let v = self
                .flat
                .entry((cpu, el2))
                .or_insert_with(|| vec![0; TEXT_WORDS]);
            v[i as usize] += 1;
        } else {
            *self.other.entry((cpu, el2, pc)).or_insert(0) += 1;
        }
    }

    fn iter(&self) -> impl Iterator<Item = (Key, u64)> + '_ {
        let flat = self.flat.iter().flat_map(|(&(cpu, el2), v)| {
            v.iter()
                .enumerate()
                .filter(|(_, &c)| c != 0)
                .map(move |(i, &c)| ((cpu, el2, TEXT_BASE + 4 * i as u64), c))
        });
        flat.chain(self.other.iter().map(|(&k, &c)| (k, c)))
    }

    fn total(&self) -> u64 {
        self.iter().map(|(_, c)| c).sum()
    }
}

fn hex(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 16 {
        return None;
    }
    let mut v = 0u64;
    for &c in b {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = v << 4 | u64::from(d);
    }
    Some(v)
}

/// Parses one `Trace CPU: HOSTPTR [CSBASE/PC/FLAGS/CFLAGS] ...` line.
pub fn parse_trace(line: &[u8]) -> Option<Key> {
    let rest = line.strip_prefix(b"Trace ")?;
    let colon = rest.iter().position(|&c| c == b':')?;
    let cpu = std::str::from_utf8(&rest[..colon])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let open = rest.iter().position(|&c| c == b'[')?;
    let inner = &rest[open + 1..];
    let close = inner.iter().position(|&c| c == b']')?;
    let mut f = inner[..close].split(|&c| c == b'/');
    let _cs_base = f.next()?;
    let pc = hex(f.next()?)?;
    let flags = hex(f.next()?)?;
    let el2 = (flags >> 4) & 0xf == 6;
    Some((cpu, el2, pc))
}

fn read_log(path: &Path) -> Result<Histogram> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut r = BufReader::with_capacity(1 << 22, file);
    let mut h = Histogram::default();
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        match parse_trace(&line) {
            Some(k) => h.add(k),
            None if line.starts_with(b"Trace") => h.bad += 1,
            None => {}
        }
    }
    Ok(h)
}

/// Function symbols of an ELF, sorted by address: (start, end, name).
struct Symbols(Vec<(u64, u64, String)>);

impl Symbols {
    fn open(path: &Path) -> Result<Symbols> {
        use object::{Object, ObjectSymbol};
        let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        let file = object::File::parse(&*data)?;
        let mut v: Vec<(u64, u64, String)> = file
            .symbols()
            // Functions, and the assembly labels (the vectors) that have no
            // type.
            .filter(|s| {
                matches!(
                    s.kind(),
                    object::SymbolKind::Text
                        | object::SymbolKind::Label
                        | object::SymbolKind::Unknown
                ) && s.is_definition()
                    && s.address() != 0
            })
            .filter_map(|s| {
                let name = s.name().ok()?;
                Some((
                    s.address(),
                    s.address() + s.size(),
                    format!("{:#}", rustc_demangle::demangle(name)),
                ))
            })
            .collect();
        v.sort();
        Ok(Symbols(v))
    }

    fn name(&self, pc: u64) -> String {
        let i = self.0.partition_point(|s| s.0 <= pc);
        if i > 0 {
            let (start, end, name) = &self.0[i - 1];
            // Assembly labels have size 0: they run to the next symbol.
            if pc < *end || *end == *start {
                return name.clone();
            }
        }
        format!("?{pc:#x}")
    }
}

/// The VM's memory in the profile runs: smaller than the bench's 256M,
/// because the hypervisor zeroes and cleans a VM's memory when it loads
/// it, which at 256M is about 22 million logged instructions per boot
/// (the operations themselves do not depend on it).
const PROFILE_MEM: &str = "32M";

/// Runs the profile of `row` and prints the per-function table.
pub fn run(opts: &BenchOptions, row: &str, ops: u32) -> Result<()> {
    if !bench::BENCHMARKS.contains(&row) {
        bail!(
            "unknown benchmark {row:?}; one of: {}",
            bench::BENCHMARKS.join(", ")
        );
    }
    let tc = provision::cross_toolchain(opts.toolchain)?;
    let qemu = provision::qemu(opts.qemu.as_deref())?;
    let built = build::build(&tc, Flavor::Normal)?;
    let guest = built.guest()?.clone();
    let hypervisor = built.hypervisor.clone();
    let version = qemu.version().unwrap_or_default();
    let one_insn: &[&str] = if version.contains("version 7.") {
        &["-singlestep"]
    } else {
        &["-accel", "tcg,one-insn-per-tb=on"]
    };

    let mut hists = Vec::new();
    for (i, n) in [ops, 2 * ops].into_iter().enumerate() {
        let cmdline = format!(
            "{} {}{row}",
            bench::guest_cmdline(n),
            "guest-test.bench-only="
        );
        let vm = VmConfig {
            symbols: None,
            lockup: None,
            dump: false,
            name: build::GUEST.into(),
            image: guest.bin.clone(),
            initrd: None,
            cmdline,
            cpus: bundle::all_cpus(opts.smp),
            memory: PROFILE_MEM.into(),
        };
        let bundle_file = bundle::bundle_path(&format!("profile-{i}"));
        bundle::build_bundle(std::slice::from_ref(&vm), &bundle_file)?;
        let log = util::workspace_root().join(format!("target/nmivisor/profile-{i}.log"));
        let _ = std::fs::remove_file(&log);
        let mut s = bench::scenario("bench-profile", opts).mem("1G");
        for a in one_insn {
            s = s.qemu_arg(a);
        }
        s = s
            .qemu_arg("-d")
            .qemu_arg("exec,nochain")
            .qemu_arg("-D")
            .qemu_arg(&log.display().to_string());
        let cfg = s.qemu_config(&hypervisor.bin, Some(&bundle_file));
        let mut cmd = cfg.command(&qemu);
        cmd.current_dir(util::workspace_root());
        say!(
            "profile: {row}, {n} operations: {}",
            util::command_line(&cmd)
        );
        let outcome = harness::run(&s, cmd);
        let h = read_log(&log);
        let _ = std::fs::remove_file(&log);
        let h = h?;
        if !outcome.passed() {
            bail!("the profile run failed: {}", outcome.failures.join("; "));
        }
        let r = bench::parse(&outcome.console)?;
        let Some(&(_, ticks)) = r.counts.get(row) else {
            bail!("no `bench {row}` line")
        };
        say!(
            "profile: {} instructions logged ({} unparsed), bench {row}: {:.0} instructions/op",
            h.total(),
            h.bad,
            ticks as f64 * r.instructions_per_tick() / f64::from(n)
        );
        hists.push(h);
    }
    let hyp = Symbols::open(&hypervisor.elf)?;
    let gst = Symbols::open(&guest.elf)?;
    // Per (CPU, EL, function): the second run's count minus the first's.
    let mut per: HashMap<(u32, bool, String), i64> = HashMap::new();
    for (sign, h) in [(-1i64, &hists[0]), (1, &hists[1])] {
        for ((cpu, el2, pc), c) in h.iter() {
            let name = if el2 { hyp.name(pc) } else { gst.name(pc) };
            *per.entry((cpu, el2, name)).or_insert(0) += sign * c as i64;
        }
    }
    let mut rows: Vec<_> = per.into_iter().filter(|(_, d)| *d != 0).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let per_op = |d: i64| d as f64 / f64::from(ops);
    let total: i64 = rows.iter().map(|r| r.1).sum();
    let el2: i64 = rows.iter().filter(|r| r.0 .1).map(|r| r.1).sum();
    println!("profile of {row} under nmivisor: instructions per operation (2x{ops} minus {ops} operations, -smp {})", opts.smp);
    println!("{:>9}  cpu  EL  function", "instr/op");
    for ((cpu, is2, name), d) in &rows {
        if per_op(*d).abs() < 0.5 {
            continue;
        }
        println!(
            "{:>9.1}  {cpu:>3}  {}  {name}",
            per_op(*d),
            if *is2 { "2" } else { "1" }
        );
    }
    println!(
        "{:>9.1}  total ({:.1} at EL2, {:.1} at EL1)",
        per_op(total),
        per_op(el2),
        per_op(total - el2)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trace_lines() {
        let l = b"Trace 1: 0x7fa0dc000100 [0000000000000000/0000000040000000/00000061/ff020201] \n";
        assert_eq!(parse_trace(l), Some((1, true, 0x4000_0000)));
        let l = b"Trace 0: 0x7f [00000000002000f0/000000004022c5c4/00000021/ff020201] sym";
        assert_eq!(parse_trace(l), Some((0, false, 0x4022_c5c4)));
        assert_eq!(parse_trace(b"IN: foo"), None);
    }
}
