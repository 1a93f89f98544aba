//! Turning the bundle into running VMs at boot.
//!
//! Each VM is checked on its own: a VM that cannot run is reported with
//! `nmivisor: vm NAME: not started: REASON` and the others go on.

use super::devices_dt::{ArchTimerNode, GicV3Node, Pl011Node, PmuNode, GIC_PHANDLE, UART_PATH};
use super::guest::{self, Vcpu, Vm};
use super::guest_dt::{GuestDt, GuestDtConfig};
use super::layout;
use super::memmap::{self, GICR_MAX_VCPUS};
use super::run;
use crate::arch::{cpu, ich};
use crate::mm::ram::FreeRam;
use crate::mm::stage2::Stage2Tables;
use crate::println;
use crate::vgic::state::MAX_VCPUS;
use crate::vgic::Vgic;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Display;
use vm_bundle::{self as bundle, VmSpec};

/// Guest RAM is carved in 2 MiB blocks so stage 2 can use block mappings.
const RAM_ALIGN: u64 = 2 << 20;
/// SPIs each VM's distributor implements (INTIDs 32..96).
const NR_SPIS: usize = 64;
/// Room reserved for a guest's device tree.
const DTB_MAX: u64 = 64 << 10;

fn refuse(name: &str, why: impl Display) {
    println!("nmivisor: vm {name}: not started: {why}");
}

/// Parses and admits the bundle, builds every VM that can run, installs the
/// VM table and starts each VM's boot vCPU. Returns how many VMs started.
pub fn start_vms(bundle_bytes: &'static [u8], nr_cpus: usize, ram: &mut FreeRam) -> usize {
    let entries = match bundle::parse(bundle_bytes) {
        Ok(entries) => entries,
        Err(e) => {
            println!("nmivisor: bundle: {e}");
            return 0;
        }
    };
    let mut vms = Vec::new();
    for entry in bundle::admit(entries, nr_cpus, ram.total()) {
        match entry {
            Err(e) => refuse(&e.vm, &e.kind),
            Ok(spec) => match build(&spec, vms.len(), ram) {
                Ok(vm) => vms.push(vm),
                Err(why) => refuse(spec.name, why),
            },
        }
    }
    let vms = guest::install(vms);
    for vm in vms {
        let cpus: Vec<String> = vm.vcpus.iter().map(|v| v.pcpu.to_string()).collect();
        println!(
            "nmivisor: vm {}: {} vCPUs on CPUs {}, {} MiB RAM (IPA {:#x}, PA {:#x})",
            vm.name,
            vm.vcpus.len(),
            cpus.join(","),
            (vm.ram.end - vm.ram.start) >> 20,
            vm.ram.start,
            vm.ram_pa
        );
        if vm.load().is_none() {
            refuse(&vm.name, "loading into guest RAM failed");
            continue;
        }
        run::boot_vm(vm);
    }
    vms.len()
}

/// Whether the emulated GIC can serve `n` vCPUs: the vGIC names at most
/// [`MAX_VCPUS`] of them, and the guest's redistributor region (QEMU virt's
/// map) holds at most [`GICR_MAX_VCPUS`] frames.
fn check_vcpus(n: usize) -> Result<(), String> {
    if n > MAX_VCPUS {
        return Err(alloc::format!(
            "{n} vCPUs, but the vGIC serves at most {MAX_VCPUS}"
        ));
    }
    if n > GICR_MAX_VCPUS {
        return Err(alloc::format!(
            "{n} vCPUs, but the guest's redistributor region holds at most {GICR_MAX_VCPUS}"
        ));
    }
    Ok(())
}

/// Builds one VM: RAM, stage 2, device tree, layout.
fn build(spec: &VmSpec<'static>, index: usize, ram: &mut FreeRam) -> Result<Vm, String> {
    check_vcpus(spec.cpus.len())?;
    let header = layout::parse_header(spec.image).map_err(|e| e.to_string())?;
    let ipa = memmap::RAM_BASE..memmap::RAM_BASE + spec.memory;
    let layout = layout::place(
        ipa.clone(),
        header,
        spec.initrd.map(|i| i.len() as u64),
        DTB_MAX,
    )
    .map_err(|e| e.to_string())?;
    let vcpus: Vec<Vcpu> = spec
        .cpus
        .iter()
        .enumerate()
        .map(|(i, pcpu)| Vcpu::new(i, pcpu))
        .collect();
    let mpidrs: Vec<u64> = vcpus.iter().map(|v| v.mpidr).collect();
    let dt_config = GuestDtConfig {
        memory: ipa.clone(),
        vcpu_mpidrs: &mpidrs,
        bootargs: spec.cmdline,
        initrd: layout.initrd.clone(),
    };
    let gic = GicV3Node {
        nr_vcpus: vcpus.len(),
    };
    let pmu = PmuNode {
        present: crate::arch::ppi_source::has_pmu(),
    };
    let dtb = GuestDt::new(&dt_config)
        .interrupt_parent(GIC_PHANDLE)
        .device(&gic)
        .device(&ArchTimerNode)
        .device(&pmu)
        .device(&Pl011Node)
        .stdout_path(UART_PATH)
        .build()
        .map_err(|e| e.to_string())?;
    if dtb.len() as u64 > DTB_MAX {
        return Err(alloc::format!(
            "device tree of {} bytes is too large",
            dtb.len()
        ));
    }

    let pa = ram
        .alloc(spec.memory, RAM_ALIGN)
        .ok_or_else(|| alloc::format!("no {} MiB block of free RAM left", spec.memory >> 20))?;
    // Nothing of what the earlier boot stages or the hypervisor left in
    // this RAM reaches the guest. Done before the counter offset is taken,
    // so it is not part of the guest's time. The block was just carved out
    // of free RAM for this VM alone.
    if !crate::mm::window_hw::zero(pa, spec.memory) {
        return Err("zeroing its RAM failed (no EL2 window)".to_string());
    }
    let vmid = u16::try_from(index + 1).map_err(|_| "out of VMIDs".to_string())?;
    let stage2 =
        Stage2Tables::new(vmid, ipa.clone(), pa).map_err(|e| alloc::format!("stage 2: {e:?}"))?;
    let mut vm = Vm::new(
        spec.name.to_string(),
        ipa,
        pa,
        vcpus,
        stage2,
        cpu::counter(),
        layout,
        spec.image,
        spec.initrd,
        dtb,
        Vgic::with_mpidrs(&mpidrs, NR_SPIS, ich::priority_bits()),
    );
    vm.dump_allowed = spec.dump;
    vm.lockup_ticks = spec.lockup_ms.saturating_mul(cpu::counter_freq()) / 1000;
    if spec.lockup_ms != 0 {
        println!(
            "nmivisor: vm {}: guest lockup detector on, threshold {} ms",
            spec.name, spec.lockup_ms
        );
    }
    if let Some(bytes) = spec.symbols {
        match super::guest_symbols::SystemMap::parse(bytes) {
            Ok(map) => {
                println!(
                    "nmivisor: vm {}: {} guest symbols, text {:#x}-{:#x}",
                    spec.name, map.text_symbols, map.text.0, map.text.1
                );
                vm.symbols = Some(map);
            }
            Err(e) => println!("nmivisor: vm {}: symbols ignored: {e}", spec.name),
        }
    }
    Ok(vm)
}
