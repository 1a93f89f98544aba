//! Guest SGI register decode and target resolution
//! (hypervisor/src/vgic/sgi.rs): the value a vCPU writes to
//! ICC_SGI0R_EL1 / ICC_SGI1R_EL1 / ICC_ASGI1R_EL1.
//!
//! Input: value u64, group u8 (% 3), sender u8, then the vCPUs' MPIDRs as
//! u64 each (up to 70, so more than a TargetSet can name).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nmivisor_fuzz::Reader;
use nmivisor_pure::vgic::sgi::{Affinity, SgiGroup, SgiRequest, TargetSet, Targets};

fuzz_target!(|data: &[u8]| {
    let mut r = Reader(data);
    let value = r.u64();
    let group = match r.u8() % 3 {
        0 => SgiGroup::G0,
        1 => SgiGroup::G1,
        _ => SgiGroup::AltG1,
    };
    let sender = usize::from(r.u8());
    let mut mpidrs = Vec::new();
    while !r.is_empty() && mpidrs.len() < 70 {
        mpidrs.push(r.u64());
    }

    let req = SgiRequest::decode(value, group);
    assert!(req.intid < 16);
    assert_eq!(req.intid as u64, (value >> 24) & 0xf);
    assert_eq!(req.group, group);
    let set = req.resolve(sender, &mpidrs);
    for t in set.iter() {
        assert!(
            t < mpidrs.len() && t < TargetSet::CAPACITY,
            "target {t} is no vCPU"
        );
    }
    match req.targets {
        Targets::AllButSelf => {
            assert!(value & 1 << 40 != 0);
            for i in 0..mpidrs.len().min(TargetSet::CAPACITY) {
                assert_eq!(
                    set.contains(i),
                    i != sender,
                    "IRM=1 reaches everyone but the sender"
                );
            }
        }
        Targets::List {
            aff3,
            aff2,
            aff1,
            rs,
            list,
        } => {
            assert!(value & 1 << 40 == 0);
            // Exactly the vCPUs whose affinity is named: Aff3.Aff2.Aff1 equal,
            // Aff0 = RS * 16 + a set TargetList bit (IHI 0069 §12.2).
            for (i, &m) in mpidrs.iter().enumerate().take(TargetSet::CAPACITY) {
                let a = Affinity::of(m);
                let aff0 = u16::from(a.aff0);
                let named = a.aff3 == aff3
                    && a.aff2 == aff2
                    && a.aff1 == aff1
                    && aff0 / 16 == u16::from(rs)
                    && list & (1 << (aff0 % 16)) != 0;
                assert_eq!(set.contains(i), named, "vCPU {i} mpidr {m:#x}");
            }
        }
    }
});
