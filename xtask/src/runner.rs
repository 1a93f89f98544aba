//! The scenario runner behind `cargo xtask test`: the host half (unit
//! tests, the lint gate), the short fuzz runs, then every selected QEMU
//! scenario, each prepared (image, bundle, Linux guest) and run with its
//! timeout, with the totals `N passed, M failed`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::build::{self, Built};
use crate::bundle::{self, VmConfig};
use crate::harness::{self, Boot};
use crate::provision::{self, ToolchainChoice};
use crate::qemu::{self, QemuConfig};
use crate::{fuzz, hosttest, image, lint, linux, say, scenarios, symbolize, util, TestArgs};

pub fn test(
    choice: ToolchainChoice,
    qemu_choice: Option<&std::path::Path>,
    args: TestArgs,
) -> Result<ExitCode> {
    // With one QEMU chosen for everything there is no second QEMU.
    let second = qemu_choice.is_none().then_some(qemu::QEMU10_LABEL);
    let scenarios: Vec<harness::Scenario> = scenarios::with_second_qemu(scenarios::all(), second)
        .into_iter()
        .filter(|s| args.filter.as_deref().is_none_or(|f| s.name.contains(f)))
        .collect();
    let fuzz_entries = if args.no_fuzz {
        Vec::new()
    } else {
        fuzz::test_entries(args.filter.as_deref())
    };
    if args.list {
        if !args.no_host && !args.no_lint && args.filter.is_none() {
            for name in lint::names() {
                println!("lint {name:<29} rustfmt / clippy -D warnings");
            }
        }
        fuzz::list_test_entries(&fuzz_entries);
        for s in &scenarios {
            let append = s
                .append
                .as_deref()
                .map(|a| format!(" -append {a:?}"))
                .unwrap_or_default();
            let boot = match &s.boot {
                Boot::Hypervisor => format!("{} image", s.flavor.stem()),
                Boot::Bundle(spec) => {
                    format!("{} image + bundle [{}]", s.flavor.stem(), spec.describe())
                }
                Boot::NativeGuest => format!("{} natively", build::GUEST),
                Boot::LinuxNative => "Linux natively".to_string(),
                Boot::LinuxVm(cmdline) => format!(
                    "{} image + Linux VM {} [{cmdline}]",
                    s.flavor.stem(),
                    linux::VM_NAME
                ),
                Boot::LinuxAndGuests {
                    cmdline,
                    linux_cpus,
                    guests,
                } => format!(
                    "{} image + Linux VM {} cpus {linux_cpus} [{cmdline}] + bundle [{}]",
                    s.flavor.stem(),
                    linux::VM_NAME,
                    guests.describe()
                ),
            };
            let kernel = match s.linux_kernel {
                harness::LinuxKernel::Stock if s.needs_linux() => " (Debian's stock kernel)",
                _ => "",
            };
            let on = if s.on_second_qemu { ", on QEMU 10" } else { "" };
            println!(
                "{:<34} {boot}{kernel}, -smp {}{append}, timeout {}s{on}",
                s.name,
                s.smp,
                s.timeout.as_secs()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }

    let (mut passed, mut failed) = (0usize, 0usize);

    if !args.no_host {
        let host = hosttest::run()?;
        let s = host.summary;
        println!(
            "host unit tests: {} passed, {} failed ({} test binaries)",
            s.passed, s.failed, s.suites
        );
        passed += s.passed;
        failed += s.failed;
        if !host.success && s.failed == 0 {
            println!("host unit tests: cargo test failed before running every test (build error?)");
            failed += 1;
        }
        if !args.no_lint && args.filter.is_none() {
            let (p, f) = lint::run(&provision::cross_toolchain(choice)?)?;
            passed += p;
            failed += f;
        }
    }

    let (p, f) = fuzz::run_tests(&fuzz_entries);
    passed += p;
    failed += f;

    if !scenarios.is_empty() {
        let (p, f) = run_scenarios(choice, qemu_choice, &scenarios, &args.linux.options())?;
        passed += p;
        failed += f;
    } else if args.filter.is_some() && fuzz_entries.is_empty() {
        say!("no scenario matches the filter");
    }

    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What a scenario may boot: the hypervisor build of its flavor and the
/// Linux guest, each present only if a scenario needs it.
struct Inputs<'a> {
    built: Option<&'a Built>,
    linux: Option<&'a linux::Artifacts>,
    /// The initramfs every Linux boot uses.
    initramfs: Option<&'a std::path::Path>,
    stock: Option<&'a linux::stock::StockKernel>,
}

/// The kernel image a Linux scenario boots.
fn linux_image(s: &harness::Scenario, inputs: &Inputs<'_>) -> Result<PathBuf> {
    Ok(match s.linux_kernel {
        harness::LinuxKernel::Suite => inputs
            .linux
            .context("no Linux guest (cargo xtask linux)")?
            .kernel
            .image
            .clone(),
        harness::LinuxKernel::Stock => inputs
            .stock
            .context("no stock Debian kernel")?
            .image
            .clone(),
    })
}

/// guest-test's functions as a System.map (`target/nmivisor/guest-test.map`),
/// if some VM of `spec` carries its symbols; None otherwise.
fn guest_symbols(spec: &bundle::BundleSpec, built: &Built) -> Result<Option<PathBuf>> {
    if !spec.wants_symbols() {
        return Ok(None);
    }
    let elf = &built.guest()?.elf;
    let bytes = std::fs::read(elf).with_context(|| format!("cannot read {}", elf.display()))?;
    let map = image::system_map(&bytes).with_context(|| elf.display().to_string())?;
    let out = util::out_dir().join("guest-test.map");
    std::fs::write(&out, map).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(Some(out))
}

/// The symbols of the kernel a Linux scenario boots (its `System.map`),
/// which the VM's bundle carries so that the hypervisor's dumps name the
/// guest's frames.
fn linux_symbols(s: &harness::Scenario, inputs: &Inputs<'_>) -> Option<PathBuf> {
    match s.linux_kernel {
        harness::LinuxKernel::Suite => inputs.linux.map(|l| l.kernel.system_map.clone()),
        harness::LinuxKernel::Stock => inputs.stock.and_then(|k| k.system_map.clone()),
    }
}

/// The Linux VM of a bundle scenario: the kernel `s` boots with its
/// symbols, the suite's initramfs, `cmdline`, on `cpus`.
fn linux_vm(
    s: &harness::Scenario,
    inputs: &Inputs<'_>,
    cmdline: &str,
    cpus: String,
) -> Result<VmConfig> {
    Ok(VmConfig {
        symbols: linux_symbols(s, inputs),
        lockup: s.guest_lockup.clone(),
        dump: false,
        name: linux::VM_NAME.into(),
        image: linux_image(s, inputs)?,
        initrd: Some(
            inputs
                .initramfs
                .context("no initramfs (cargo xtask linux)")?
                .to_path_buf(),
        ),
        cmdline: cmdline.to_string(),
        cpus,
        memory: linux::VM_MEMORY.into(),
    })
}

/// The QEMU configuration of scenario `s`: the image it boots and, for a
/// bundle scenario, the bundle written for it now.
fn prepare(s: &harness::Scenario, inputs: &Inputs<'_>) -> Result<QemuConfig> {
    let built = || inputs.built.context("no hypervisor build");
    let initramfs = || inputs.initramfs.context("no initramfs (cargo xtask linux)");
    Ok(match &s.boot {
        Boot::Hypervisor => s.qemu_config(&built()?.hypervisor.bin, None),
        Boot::NativeGuest => s.qemu_config(&built()?.guest()?.bin, None),
        Boot::Bundle(spec) => {
            let built = built()?;
            let out = bundle::bundle_path(&s.name);
            let symbols = guest_symbols(spec, built)?;
            spec.build(&built.guest()?.bin, symbols.as_deref(), &out)
                .context("cannot write the scenario's bundle")?;
            s.qemu_config(&built.hypervisor.bin, Some(&out))
        }
        Boot::LinuxNative => s.qemu_config(&linux_image(s, inputs)?, Some(initramfs()?)),
        Boot::LinuxVm(cmdline) => {
            let vm = linux_vm(s, inputs, cmdline, bundle::all_cpus(s.smp))?;
            let out = bundle::bundle_path(&s.name);
            bundle::build_bundle(std::slice::from_ref(&vm), &out)
                .context("cannot write the scenario's bundle")?;
            s.qemu_config(&built()?.hypervisor.bin, Some(&out))
        }
        Boot::LinuxAndGuests {
            cmdline,
            linux_cpus,
            guests,
        } => {
            let built = built()?;
            let mut vms = vec![linux_vm(s, inputs, cmdline, linux_cpus.clone())?];
            let symbols = guest_symbols(guests, built)?;
            vms.extend(guests.configs(&built.guest()?.bin, symbols.as_deref()));
            let out = bundle::bundle_path(&s.name);
            bundle::build_bundle(&vms, &out).context("cannot write the scenario's bundle")?;
            s.qemu_config(&built.hypervisor.bin, Some(&out))
        }
    })
}

/// The check of [`harness::Scenario::guest_pc_symbol`]: some guest PC of
/// the dump names a symbol of the Linux guest's System.map. Adds the
/// resolved PCs to the log.
fn check_guest_pc_symbol(outcome: &mut harness::Outcome, linux: Option<&linux::Artifacts>) {
    let Some(linux) = linux else {
        outcome
            .failures
            .push("no Linux guest to symbolize with".into());
        return;
    };
    let map = &linux.kernel.system_map;
    match symbolize::SystemMapSource::open(map) {
        Err(e) => outcome.failures.push(format!("{e:#}")),
        Ok(source) => {
            let found = symbolize::resolve_guest_pcs(&outcome.console, &source);
            if found.is_empty() {
                outcome.failures.push(format!(
                    "no guest PC of the dump resolves to a kernel symbol of {}",
                    map.display()
                ));
            }
            for (pc, name) in found {
                outcome
                    .log
                    .push(format!("[xtask symbolize] guest PC {pc:#018x} is {name}"));
            }
        }
    }
}

/// Builds the images the scenarios need, then runs each scenario.
fn run_scenarios(
    choice: ToolchainChoice,
    qemu_choice: Option<&std::path::Path>,
    scenarios: &[harness::Scenario],
    linux_opts: &linux::Options,
) -> Result<(usize, usize)> {
    let qemu = provision::qemu(qemu_choice)?;
    let second = if scenarios.iter().any(|s| s.on_second_qemu) {
        say!("the selected scenarios run on QEMU 10 too: fetching (or reusing) it");
        let q = qemu::qemu10().map_err(|e| {
            say!("error: QEMU 10 is not available: {e:#}");
            format!("QEMU 10 is not available: {e:#}")
        });
        Some(q)
    } else {
        None
    };
    let mut images = BTreeMap::new();
    let (mut passed, mut failed) = (0, 0);
    let tc = if scenarios.iter().any(|s| s.needs_build()) {
        Some(provision::cross_toolchain(choice)?)
    } else {
        None
    };
    let suite_kernel =
        |s: &&harness::Scenario| s.needs_linux() && s.linux_kernel == harness::LinuxKernel::Suite;
    let linux = if scenarios.iter().any(|s| suite_kernel(&s)) {
        say!("the selected scenarios boot Linux: building (or reusing) the Linux guest");
        match linux::build(linux_opts) {
            Ok(a) => Ok(a),
            Err(e) => {
                say!("error: building the Linux guest failed: {e:#}");
                Err(format!("{e:#}"))
            }
        }
    } else {
        Err("not needed".into())
    };
    let stock_kernel =
        |s: &&harness::Scenario| s.needs_linux() && s.linux_kernel == harness::LinuxKernel::Stock;
    let stock = if scenarios.iter().any(|s| stock_kernel(&s)) {
        say!("the selected scenarios boot Debian's stock kernel: fetching (or reusing) it");
        linux::stock::fetch().map_err(|e| {
            say!("error: fetching the stock kernel failed: {e:#}");
            format!("{e:#}")
        })
    } else {
        Err("not needed".into())
    };
    // The initramfs: the Linux build's, or built alone for the stock kernel.
    let initramfs: Result<PathBuf, String> = match &linux {
        Ok(a) => Ok(a.initramfs.clone()),
        Err(_) if scenarios.iter().any(|s| s.needs_linux()) => linux::initramfs().map_err(|e| {
            say!("error: building the initramfs failed: {e:#}");
            format!("{e:#}")
        }),
        Err(e) => Err(e.clone()),
    };
    let flavors = scenarios
        .iter()
        .filter(|s| s.needs_build())
        .map(|s| s.flavor);
    for (flavor, tc) in flavors.filter_map(|f| tc.as_ref().map(|tc| (f, tc))) {
        if let std::collections::btree_map::Entry::Vacant(e) = images.entry(flavor) {
            match build::build(tc, flavor) {
                Ok(img) => {
                    e.insert(Some(img));
                }
                Err(err) => {
                    say!(
                        "error: building the {} image failed: {err:#}",
                        flavor.stem()
                    );
                    e.insert(None);
                }
            }
        }
    }
    for s in scenarios {
        let built = images.get(&s.flavor).and_then(Option::as_ref);
        if s.needs_build() && built.is_none() {
            println!(
                "scenario {} ... FAILED: the {} image did not build",
                s.name,
                s.flavor.stem()
            );
            failed += 1;
            continue;
        }
        let missing = if suite_kernel(&s) {
            linux
                .as_ref()
                .err()
                .map(|e| format!("the Linux guest did not build: {e}"))
        } else if stock_kernel(&s) {
            stock
                .as_ref()
                .err()
                .or(initramfs.as_ref().err())
                .map(|e| format!("the stock kernel or the initramfs is missing: {e}"))
        } else {
            None
        };
        if let Some(why) = missing {
            println!("scenario {} ... FAILED: {why}", s.name);
            failed += 1;
            continue;
        }
        let run_qemu = match (&second, s.on_second_qemu) {
            (_, false) => &qemu,
            (Some(Ok(q)), true) => q,
            (Some(Err(e)), true) => {
                println!("scenario {} ... FAILED: {e}", s.name);
                failed += 1;
                continue;
            }
            (None, true) => unreachable!("the second QEMU is fetched when a scenario needs it"),
        };
        let inputs = Inputs {
            built,
            linux: linux.as_ref().ok(),
            initramfs: initramfs.as_deref().ok(),
            stock: stock.as_ref().ok(),
        };
        let cfg = match prepare(s, &inputs) {
            Ok(cfg) => cfg,
            Err(e) => {
                println!("scenario {} ... FAILED: {e:#}", s.name);
                failed += 1;
                continue;
            }
        };
        let mut cmd = cfg.command(run_qemu);
        cmd.current_dir(util::workspace_root());
        let mut outcome = harness::run(s, cmd);
        if s.guest_pc_symbol {
            check_guest_pc_symbol(&mut outcome, inputs.linux);
        }
        // Every run's console stays in target/nmivisor/logs/NAME.log, so a
        // passing dump can be read (and symbolized) afterwards too.
        let logs = util::out_dir().join("logs");
        let _ = std::fs::create_dir_all(&logs).and_then(|()| {
            std::fs::write(
                logs.join(format!("{}.log", s.name)),
                outcome.log.join("\n") + "\n",
            )
        });
        if outcome.passed() {
            println!(
                "scenario {} ... ok ({:.1}s)",
                s.name,
                outcome.elapsed.as_secs_f32()
            );
            for line in outcome
                .console
                .iter()
                .filter(|l| s.reports.iter().any(|p| p.matches(l)))
            {
                println!("    {line}");
            }
            for e in &s.expects {
                if let harness::Expect::Heartbeat {
                    marker, max_gap_ms, ..
                } = e
                {
                    if let Ok((beats, gap)) = harness::heartbeat_stats(marker, &outcome.console) {
                        println!("    heartbeat: {beats} beats, largest gap {gap} ms of guest time (bound {max_gap_ms} ms)");
                    }
                }
            }
            passed += 1;
        } else {
            println!(
                "scenario {} ... FAILED: {}",
                s.name,
                outcome.failures.join("; ")
            );
            println!(
                "    console log of {} ({} lines):",
                s.name,
                outcome.log.len()
            );
            for line in &outcome.log {
                println!("    | {line}");
            }
            failed += 1;
        }
    }
    Ok((passed, failed))
}
