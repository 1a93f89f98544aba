//! The VM bundle: the one file QEMU loads with `-initrd` that carries every
//! guest and its configuration. The hypervisor finds it through the device
//! tree's `/chosen` `linux,initrd-start`/`-end` and parses it itself.
//!
//! The format is a newc (`070701`) cpio archive with one directory per VM:
//!
//! | path | |
//! |---|---|
//! | `NAME/image` | required: the guest kernel, an arm64 Image |
//! | `NAME/initrd` | optional: the guest's initramfs |
//! | `NAME/cmdline` | optional: the guest's command line (text) |
//! | `NAME/config` | required: `key = value` lines, `#` comments |
//! | `NAME/symbols` | optional: the guest kernel's `System.map`, for guest backtraces |
//!
//! Config keys: `cpus`, the physical CPUs the VM owns (`0-3`, `1,3`),
//! `memory`, a size with an optional K, M or G suffix, `dump = on` and
//! `lockup = off|SECONDS|NNNms` (the hypervisor's guest lockup detector). VM names are 1-15
//! characters of `a-z`, `0-9`, `_` and `-`.
//!
//! [`build_bundle`] checks what it can before writing (names, CPU lists,
//! sizes, overlapping CPUs, the images' arm64 header); the hypervisor checks
//! again against the real machine. [`BundleSpec`] describes bundles of
//! guest-test VMs as data for the QEMU scenarios, including deliberately
//! broken ones ([`Defect`], [`BundleSpec::unchecked`]) that the hypervisor
//! must refuse without crashing.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use crate::util::{self, display_path};
use crate::{image, say};

/// One VM of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// The VM's directory name: 1-15 characters of `[a-z0-9_-]`.
    pub name: String,
    /// The guest kernel (an arm64 Image).
    pub image: PathBuf,
    /// The guest's initramfs, if any.
    pub initrd: Option<PathBuf>,
    /// The guest's command line; empty means no `cmdline` file.
    pub cmdline: String,
    /// Physical CPUs, e.g. `0-3` or `1,3`.
    pub cpus: String,
    /// Memory size, e.g. `128M`.
    pub memory: String,
    /// `dump = on`: the VM may ask for a dump of its own vCPUs.
    pub dump: bool,
    /// The guest kernel's symbols (`System.map` format), written as
    /// `NAME/symbols`: the hypervisor's dumps then name guest frames.
    pub symbols: Option<PathBuf>,
    /// `lockup = VALUE` (`off`, seconds, or `NNNms`): the hypervisor's
    /// guest lockup detector for this VM; `None` leaves it off.
    pub lockup: Option<String>,
}

impl VmConfig {
    /// The text of the VM's `config` file.
    pub fn config_text(&self) -> String {
        let dump = if self.dump { "dump = on\n" } else { "" };
        let lockup = match &self.lockup {
            Some(v) => format!("lockup = {v}\n"),
            None => String::new(),
        };
        format!(
            "# VM \"{}\" (written by cargo xtask)\ncpus = {}\nmemory = {}\n{dump}{lockup}",
            self.name, self.cpus, self.memory
        )
    }
}

/// The CPU list naming every CPU of an `n`-CPU machine: `0`, `0-1`, `0-3`...
pub fn all_cpus(n: u32) -> String {
    match n {
        0 | 1 => "0".into(),
        n => format!("0-{}", n - 1),
    }
}

/// Where the bundle called `name` is written: `target/nmivisor/NAME.cpio`.
pub fn bundle_path(name: &str) -> PathBuf {
    util::out_dir().join(format!("{name}.cpio"))
}

/// Checks `vms`, then writes their bundle to `out`.
pub fn build_bundle(vms: &[VmConfig], out: &Path) -> Result<()> {
    validate(vms)?;
    let members = members(vms, &[], true)?;
    write_out(&archive(&members)?, vms, out)
}

/// A deliberate mistake in a bundle, for the scenarios that check the
/// hypervisor refuses it gracefully.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Defect {
    /// Leave out the image of the VM with this name.
    NoImage(String),
    /// Cut the finished archive to half its length: the data of the file
    /// that spans the middle (a guest image) runs past the end, and the
    /// trailer is gone.
    Truncate,
}

/// Writes the bundle of `vms` to `out` with `defects`, checking nothing but
/// that the files can be read. For scenarios only.
pub fn build_broken_bundle(vms: &[VmConfig], defects: &[Defect], out: &Path) -> Result<()> {
    let mut bytes = archive(&members(vms, defects, false)?)?;
    if defects.contains(&Defect::Truncate) {
        bytes.truncate(bytes.len() / 2);
    }
    write_out(&bytes, vms, out)
}

fn write_out(bytes: &[u8], vms: &[VmConfig], out: &Path) -> Result<()> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, bytes).with_context(|| format!("cannot write {}", out.display()))?;
    let names: Vec<&str> = vms.iter().map(|v| v.name.as_str()).collect();
    say!(
        "bundle: {} ({} bytes, VMs: {})",
        display_path(out),
        bytes.len(),
        names.join(", ")
    );
    Ok(())
}

/// Checks `vms` with the hypervisor's own bundle parser (the `vm-bundle`
/// crate), so the two can never disagree: names, configs (CPU lists,
/// sizes, every key) and command lines are written into an archive with a
/// stand-in image and parsed back, and the VMs are admitted as on a
/// machine with every CPU nmivisor supports and memory to spare, which
/// refuses two VMs that want one CPU.
pub fn validate(vms: &[VmConfig]) -> Result<()> {
    ensure!(!vms.is_empty(), "a bundle needs at least one VM");
    let mut members = Vec::new();
    for vm in vms {
        let file = |name: &str, data: Vec<u8>| Member {
            path: format!("{}/{name}", vm.name),
            dir: false,
            data,
        };
        members.push(Member {
            path: vm.name.clone(),
            dir: true,
            data: Vec::new(),
        });
        members.push(file("config", vm.config_text().into_bytes()));
        if !vm.cmdline.is_empty() {
            members.push(file("cmdline", vm.cmdline.clone().into_bytes()));
        }
        members.push(file("image", b"stand-in image".to_vec()));
    }
    let bytes = archive(&members)?;
    let entries = vm_bundle::parse(&bytes).map_err(|e| anyhow::anyhow!("bundle: {e}"))?;
    let errors: Vec<String> = vm_bundle::admit(entries, vm_bundle::MAX_CPUS, u64::MAX)
        .iter()
        .filter_map(|e| e.as_ref().err())
        .map(ToString::to_string)
        .collect();
    ensure!(errors.is_empty(), "{}", errors.join("; "));
    Ok(())
}

/// One archive member: a directory (no data) or a regular file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Member {
    path: String,
    dir: bool,
    data: Vec<u8>,
}

/// The members for `vms` in archive order: each VM's directory, then its
/// config, cmdline, image and initrd. With `check_images`, every image
/// must carry the arm64 Image header.
fn members(vms: &[VmConfig], defects: &[Defect], check_images: bool) -> Result<Vec<Member>> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let mut out = Vec::new();
    for vm in vms {
        let file = |name: &str, data: Vec<u8>| Member {
            path: format!("{}/{name}", vm.name),
            dir: false,
            data,
        };
        out.push(Member {
            path: vm.name.clone(),
            dir: true,
            data: Vec::new(),
        });
        out.push(file("config", vm.config_text().into_bytes()));
        if !vm.cmdline.is_empty() {
            out.push(file("cmdline", vm.cmdline.clone().into_bytes()));
        }
        if !defects.contains(&Defect::NoImage(vm.name.clone())) {
            let data = read(&vm.image)?;
            if check_images {
                image::check_image_header(&data).with_context(|| {
                    format!(
                        "VM {}: {} is not an arm64 Image",
                        vm.name,
                        vm.image.display()
                    )
                })?;
            }
            out.push(file("image", data));
        }
        if let Some(initrd) = &vm.initrd {
            out.push(file("initrd", read(initrd)?));
        }
        if let Some(symbols) = &vm.symbols {
            out.push(file("symbols", read(symbols)?));
        }
    }
    Ok(out)
}

/// Writes `members` as a newc cpio archive (fixed owner and time, so the
/// same inputs give the same bytes).
fn archive(members: &[Member]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let size = u32::try_from(m.data.len())
            .with_context(|| format!("{} is too large for a cpio archive", m.path))?;
        let (mode, nlink) = if m.dir {
            (0o040_755, 2)
        } else {
            (0o100_644, 1)
        };
        let ino = u32::try_from(i + 1)?;
        let mut w = cpio::NewcBuilder::new(&m.path)
            .ino(ino)
            .mode(mode)
            .nlink(nlink)
            .write(out, size);
        w.write_all(&m.data)?;
        out = w.finish()?;
    }
    Ok(cpio::newc::trailer(out)?)
}

/// One guest-test VM of a [`BundleSpec`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestVm {
    /// VM name.
    pub name: String,
    /// Physical CPUs.
    pub cpus: String,
    /// Memory size.
    pub memory: String,
    /// The VM's command line (guest-test reads its modes from it).
    pub cmdline: String,
    /// `dump = on` in its config.
    pub dump: bool,
    /// Whether its bundle directory carries guest-test's symbols.
    pub symbols: bool,
}

/// A bundle of guest-test VMs described as data: the image path is only
/// known once the guest is built, so scenarios carry this and the runner
/// calls [`BundleSpec::build`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleSpec {
    /// The VMs, in archive order.
    pub vms: Vec<GuestVm>,
    /// Deliberate mistakes.
    pub defects: Vec<Defect>,
    /// Whether [`validate`] runs (off for bundles the hypervisor must refuse
    /// on their configuration, e.g. overlapping CPUs).
    pub checked: bool,
}

impl Default for BundleSpec {
    fn default() -> Self {
        BundleSpec {
            vms: Vec::new(),
            defects: Vec::new(),
            checked: true,
        }
    }
}

impl BundleSpec {
    /// An empty bundle; add VMs with [`BundleSpec::vm`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a guest-test VM.
    pub fn vm(mut self, name: &str, cpus: &str, memory: &str) -> Self {
        self.vms.push(GuestVm {
            name: name.into(),
            cpus: cpus.into(),
            memory: memory.into(),
            cmdline: String::new(),
            dump: false,
            symbols: false,
        });
        self
    }

    /// The VM added last carries guest-test's symbols (`NAME/symbols`), so
    /// the hypervisor's dumps name its guest frames.
    pub fn with_symbols(mut self) -> Self {
        if let Some(vm) = self.vms.last_mut() {
            vm.symbols = true;
        }
        self
    }

    /// Whether some VM carries guest-test's symbols.
    pub fn wants_symbols(&self) -> bool {
        self.vms.iter().any(|v| v.symbols)
    }

    /// Lets the VM added last ask for a dump of itself (`dump = on`).
    pub fn dump_on(mut self) -> Self {
        if let Some(vm) = self.vms.last_mut() {
            vm.dump = true;
        }
        self
    }

    /// Sets the command line of the VM added last.
    pub fn cmdline(mut self, cmdline: &str) -> Self {
        if let Some(vm) = self.vms.last_mut() {
            vm.cmdline = cmdline.into();
        }
        self
    }

    /// Adds a deliberate mistake.
    pub fn defect(mut self, d: Defect) -> Self {
        self.defects.push(d);
        self
    }

    /// Skips [`validate`]: the configuration is wrong on purpose.
    pub fn unchecked(mut self) -> Self {
        self.checked = false;
        self
    }

    /// The VM configurations, each booting `image`; those that want them
    /// carry `symbols` (guest-test's System.map).
    pub fn configs(&self, image: &Path, symbols: Option<&Path>) -> Vec<VmConfig> {
        self.vms
            .iter()
            .map(|v| VmConfig {
                symbols: symbols.filter(|_| v.symbols).map(Path::to_path_buf),
                lockup: None,
                dump: v.dump,
                name: v.name.clone(),
                image: image.to_path_buf(),
                initrd: None,
                cmdline: v.cmdline.clone(),
                cpus: v.cpus.clone(),
                memory: v.memory.clone(),
            })
            .collect()
    }

    /// Writes the bundle to `out`, every VM booting `image` (see
    /// [`BundleSpec::configs`] for `symbols`).
    pub fn build(&self, image: &Path, symbols: Option<&Path>, out: &Path) -> Result<()> {
        let vms = self.configs(image, symbols);
        if self.checked && self.defects.is_empty() {
            build_bundle(&vms, out)
        } else {
            if vms.is_empty() {
                bail!("a bundle needs at least one VM");
            }
            build_broken_bundle(&vms, &self.defects, out)
        }
    }

    /// A short description for `cargo xtask test --list`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .vms
            .iter()
            .map(|v| {
                let cmdline = if v.cmdline.is_empty() {
                    String::new()
                } else {
                    format!(" cmdline \"{}\"", v.cmdline)
                };
                format!("{} cpus {} mem {}{cmdline}", v.name, v.cpus, v.memory)
            })
            .collect();
        for d in &self.defects {
            parts.push(match d {
                Defect::NoImage(vm) => format!("no image for {vm}"),
                Defect::Truncate => "truncated".into(),
            });
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "xtask-bundle-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn file(&self, name: &str, data: &[u8]) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, data).unwrap();
            p
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// An "image" of `len` bytes with the arm64 magic.
    fn fake_image(len: usize, fill: u8) -> Vec<u8> {
        let mut v = vec![fill; len];
        v[image::IMAGE_MAGIC_OFFSET..image::IMAGE_MAGIC_OFFSET + 4]
            .copy_from_slice(image::IMAGE_MAGIC);
        v
    }

    /// (path, mode, data) of every entry, read back with the `cpio` crate.
    fn read_back(mut bytes: &[u8]) -> std::io::Result<Vec<(String, u32, Vec<u8>)>> {
        let mut out = Vec::new();
        loop {
            let mut r = cpio::NewcReader::new(bytes)?;
            if r.entry().is_trailer() {
                return Ok(out);
            }
            let (name, mode) = (r.entry().name().to_owned(), r.entry().mode());
            let mut data = Vec::new();
            r.read_to_end(&mut data)?;
            out.push((name, mode, data));
            bytes = r.finish()?;
        }
    }

    fn vm(name: &str, image: &Path, cpus: &str) -> VmConfig {
        VmConfig {
            symbols: None,
            lockup: None,
            dump: false,
            name: name.into(),
            image: image.into(),
            initrd: None,
            cmdline: String::new(),
            cpus: cpus.into(),
            memory: "128M".into(),
        }
    }

    #[test]
    fn builds_and_reads_back() {
        let dir = Scratch::new();
        let img = fake_image(1001, 0x11);
        let initrd = b"initramfs bytes".to_vec();
        let a = VmConfig {
            symbols: None,
            lockup: None,
            dump: false,
            initrd: Some(dir.file("initrd", &initrd)),
            cmdline: "console=ttyAMA0 quiet".into(),
            ..vm("guest-test", &dir.file("image", &img), "0-1")
        };
        let img2 = fake_image(64, 0x22);
        let b = VmConfig {
            symbols: None,
            lockup: None,
            dump: false,
            memory: "1G".into(),
            ..vm("second_2", &dir.file("image2", &img2), "2,3")
        };
        let out = dir.0.join("out/bundle.cpio");
        build_bundle(&[a, b], &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(&bytes[..6], b"070701");

        let entries = read_back(&bytes).unwrap();
        let paths: Vec<(&str, u32)> = entries.iter().map(|e| (e.0.as_str(), e.1)).collect();
        assert_eq!(
            paths,
            [
                ("guest-test", 0o040755),
                ("guest-test/config", 0o100644),
                ("guest-test/cmdline", 0o100644),
                ("guest-test/image", 0o100644),
                ("guest-test/initrd", 0o100644),
                ("second_2", 0o040755),
                ("second_2/config", 0o100644),
                ("second_2/image", 0o100644),
            ]
        );
        let data = |p: &str| &entries.iter().find(|e| e.0 == p).unwrap().2;
        assert_eq!(data("guest-test/image"), &img);
        assert_eq!(data("guest-test/initrd"), &initrd);
        assert_eq!(data("guest-test/cmdline"), b"console=ttyAMA0 quiet");
        assert_eq!(data("second_2/image"), &img2);
        assert!(data("guest-test").is_empty());
        let config = String::from_utf8(data("second_2/config").clone()).unwrap();
        let pairs: Vec<&str> = config.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(pairs, ["cpus = 2,3", "memory = 1G"]);
        assert!(config.starts_with('#'));

        // Reproducible: the same inputs give the same bytes.
        let again = dir.0.join("again.cpio");
        build_bundle(
            &[
                VmConfig {
                    symbols: None,
                    lockup: None,
                    dump: false,
                    initrd: Some(dir.0.join("initrd")),
                    cmdline: "console=ttyAMA0 quiet".into(),
                    ..vm("guest-test", &dir.0.join("image"), "0-1")
                },
                VmConfig {
                    symbols: None,
                    lockup: None,
                    dump: false,
                    memory: "1G".into(),
                    ..vm("second_2", &dir.0.join("image2"), "2,3")
                },
            ],
            &again,
        )
        .unwrap();
        assert_eq!(std::fs::read(again).unwrap(), bytes);
    }

    #[test]
    fn entries_are_4_byte_aligned() {
        // newc pads header+name and data to 4 bytes; odd sizes exercise it.
        let dir = Scratch::new();
        let out = dir.0.join("b.cpio");
        build_bundle(&[vm("a", &dir.file("i", &fake_image(67, 1)), "0")], &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let mut at = 0;
        let mut magics = 0;
        while let Some(pos) = bytes[at..].windows(6).position(|w| w == b"070701") {
            assert_eq!((at + pos) % 4, 0);
            at += pos + 6;
            magics += 1;
        }
        assert_eq!(magics, 4, "dir, config, image, trailer");
    }

    #[test]
    fn all_cpus_covers_the_machine() {
        assert_eq!(all_cpus(1), "0");
        assert_eq!(all_cpus(2), "0-1");
        assert_eq!(all_cpus(8), "0-7");
        assert_eq!(vm_bundle::CpuSet::parse(&all_cpus(4)).unwrap().len(), 4);
    }

    #[test]
    fn validation_refuses_bad_bundles() {
        let img = Path::new("/nonexistent");
        let err = |vms: &[VmConfig]| format!("{:#}", validate(vms).unwrap_err());
        assert!(err(&[]).contains("at least one VM"));
        assert!(err(&[vm("Bad", img, "0")]).contains("VM \"Bad\": bad name"));
        assert!(err(&[vm("a", img, "0"), vm("a", img, "1")])
            .contains("VM \"a\": file \"config\" appears twice"));
        assert!(err(&[vm("a", img, "0-2"), vm("b", img, "2-3")])
            .contains("CPU 2 already belongs to VM \"a\""));
        assert!(err(&[vm("a", img, "")]).contains("cpus is empty"));
        let no_mem = VmConfig {
            symbols: None,
            lockup: None,
            dump: false,
            memory: "lots".into(),
            ..vm("a", img, "0")
        };
        let msg = err(&[no_mem]);
        assert!(msg.contains("memory"), "{msg}");
        validate(&[vm("a", img, "0-1"), vm("b", img, "2-3")]).unwrap();
    }

    #[test]
    fn refuses_images_without_the_arm64_header() {
        let dir = Scratch::new();
        let out = dir.0.join("b.cpio");
        let e = build_bundle(&[vm("a", &dir.file("elf", b"\x7fELF..."), "0")], &out).unwrap_err();
        assert!(format!("{e:#}").contains("not an arm64 Image"), "{e:#}");
        let e = build_bundle(&[vm("a", &dir.0.join("missing"), "0")], &out).unwrap_err();
        assert!(format!("{e:#}").contains("cannot read"), "{e:#}");
        assert!(!out.exists());
    }

    #[test]
    fn broken_bundles_for_the_scenarios() {
        let dir = Scratch::new();
        let img = dir.file("image", &fake_image(4096, 0x33));
        let out = dir.0.join("broken.cpio");

        // Overlapping CPUs and too much memory are written as asked.
        let spec = BundleSpec::new()
            .vm("good", "0-1", "128M")
            .vm("clash", "1-2", "64G")
            .unchecked();
        assert!(BundleSpec {
            checked: true,
            ..spec.clone()
        }
        .build(&img, None, &out)
        .is_err());
        spec.build(&img, None, &out).unwrap();
        let entries = read_back(&std::fs::read(&out).unwrap()).unwrap();
        let config = &entries.iter().find(|e| e.0 == "clash/config").unwrap().2;
        let config = String::from_utf8_lossy(config);
        assert!(config.contains("cpus = 1-2") && config.contains("memory = 64G"));

        // A VM without an image: the other VM keeps its own.
        BundleSpec::new()
            .vm("good", "0-1", "128M")
            .vm("noimage", "2-3", "128M")
            .defect(Defect::NoImage("noimage".into()))
            .build(&img, None, &out)
            .unwrap();
        let paths: Vec<String> = read_back(&std::fs::read(&out).unwrap())
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert!(paths.contains(&"good/image".into()));
        assert!(paths.contains(&"noimage/config".into()));
        assert!(!paths.contains(&"noimage/image".into()));

        // Truncated: the reader fails partway, inside the image data.
        let spec = BundleSpec::new()
            .vm("good", "0-3", "128M")
            .defect(Defect::Truncate);
        spec.build(&img, None, &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert!(bytes.len() < 4096);
        assert_eq!(&bytes[..6], b"070701");
        assert!(read_back(&bytes).is_err());
        assert_eq!(spec.describe(), "good cpus 0-3 mem 128M; truncated");
    }
}
