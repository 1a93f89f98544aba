//! The guest device-tree builder (hypervisor/src/vm/guest_dt.rs) with the
//! device nodes every VM gets (vm/devices_dt.rs), from fuzzed parameters.
//! What it writes is parsed again with the `fdt` crate and with the
//! hypervisor's own reader (boot/dt.rs), and must say what was asked.
//!
//! Input: memory start u64, memory size u64, initrd start u64, initrd end
//! u64, flags u8 (bit 0: an initrd; bit 1: MPIDRs from the input rather
//! than the default layout), vCPUs u8 (1 + n % 20), then with bit 1 the
//! MPIDRs as u64 each, then the bootargs (bytes, lossy UTF-8).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nmivisor_fuzz::Reader;
use nmivisor_pure::arch::MAX_CPUS;
use nmivisor_pure::boot::dt;
use nmivisor_pure::vm::devices_dt::{ArchTimerNode, GicV3Node, Pl011Node, GIC_PHANDLE, UART_PATH};
use nmivisor_pure::vm::guest_dt::{GuestDt, GuestDtConfig, GuestDtError};
use nmivisor_pure::vm::memmap;

/// MPIDR_EL1's affinity fields.
const AFF: u64 = 0xff_00ff_ffff;

fuzz_target!(|data: &[u8]| {
    let mut r = Reader(data);
    let start = r.u64();
    let size = r.u64();
    let (initrd_start, initrd_end) = (r.u64(), r.u64());
    let flags = r.u8();
    let n = 1 + usize::from(r.u8() % 20);
    let mpidrs: Vec<u64> = if flags & 2 != 0 {
        (0..n).map(|_| r.u64()).collect()
    } else {
        (0..n as u64).map(|i| (i / 16) << 8 | i % 16).collect()
    };
    let bootargs = String::from_utf8_lossy(r.rest()).into_owned();
    let memory = start..start.saturating_add(size);
    let initrd = (flags & 1 != 0).then_some(initrd_start..initrd_end);
    let cfg = GuestDtConfig {
        memory: memory.clone(),
        vcpu_mpidrs: &mpidrs,
        bootargs: &bootargs,
        initrd: initrd.clone(),
    };
    let gic = GicV3Node { nr_vcpus: n };
    let built = GuestDt::new(&cfg)
        .interrupt_parent(GIC_PHANDLE)
        .device(&gic)
        .device(&ArchTimerNode)
        .device(&Pl011Node)
        .stdout_path(UART_PATH)
        .build();
    let dtb = match built {
        Ok(dtb) => dtb,
        Err(e) => {
            let _ = format!("{e}");
            match e {
                GuestDtError::EmptyMemory => assert!(memory.is_empty()),
                GuestDtError::DuplicateMpidr(m) => {
                    assert!(mpidrs.iter().filter(|&&x| x & AFF == m).count() >= 2)
                }
                GuestDtError::BadInitrd => assert!(initrd.is_some()),
                GuestDtError::NoVcpus => panic!("there are vCPUs"),
                // The writer refuses a NUL inside a string property.
                GuestDtError::Fdt(_) => assert!(bootargs.contains('\0')),
            }
            return;
        }
    };
    assert!(!memory.is_empty());

    // The reference reader sees what was asked for.
    let fdt = fdt::Fdt::new(&dtb).expect("the builder writes a valid DTB");
    let mem = fdt.memory().regions().next().expect("a memory region");
    assert_eq!(mem.starting_address as u64, memory.start);
    assert_eq!(mem.size.map(|s| s as u64), Some(memory.end - memory.start));
    assert_eq!(fdt.cpus().count(), n);
    for (cpu, &m) in fdt.cpus().zip(&mpidrs) {
        assert_eq!(cpu.ids().first() as u64, m & AFF);
    }
    assert_eq!(fdt.chosen().bootargs(), Some(bootargs.as_str()));

    // So does the hypervisor's own reader, which must accept a guest tree.
    let info = dt::parse(&dtb).expect("the hypervisor reads the guest tree");
    assert_eq!(info.memory.as_slice(), &[memory.clone()]);
    assert_eq!(info.cpus.len(), n.min(MAX_CPUS));
    assert_eq!(info.cpus_ignored, n.saturating_sub(MAX_CPUS));
    for (&got, &m) in info.cpus.iter().zip(&mpidrs) {
        assert_eq!(got, m & AFF);
    }
    assert_eq!(info.psci, dt::PsciConduit::Hvc);
    assert_eq!(info.gicd, memmap::GICD);
    assert_eq!(info.uart, memmap::UART);
    assert_eq!(info.uart_intid, Some(memmap::UART_INTID));
    assert_eq!(info.bootargs, bootargs);
    let want_initrd = initrd.filter(|i| i.end > i.start);
    assert_eq!(info.initrd, want_initrd);
});
