//! Logical CPU numbering from the device tree's MPIDRs. The boot CPU is
//! logical CPU 0, the other CPUs follow in device-tree order; a CPU's
//! logical index is what it gets as PSCI CPU_ON's context_id.

/// The affinity fields of an MPIDR: Aff3 [39:32], Aff2..Aff0 [23:0].
pub const MPIDR_AFF_MASK: u64 = 0xff_00ff_ffff;

/// Most CPUs the guest drives (stacks, per-CPU state).
pub const MAX_CPUS: usize = 16;

/// The CPUs in logical order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpus {
    mpidr: [u64; MAX_CPUS],
    count: usize,
    /// CPUs in the device tree beyond [`MAX_CPUS`], not used.
    pub ignored: usize,
}

/// Why the device tree's CPUs cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyError {
    /// The boot CPU's MPIDR is not among the device tree's CPUs.
    BootCpuMissing(u64),
    /// Two CPUs have the same MPIDR.
    Duplicate(u64),
}

impl Cpus {
    /// Orders `dt_mpidrs` with `boot_mpidr` first. Only affinity bits count.
    pub fn new(
        boot_mpidr: u64,
        dt_mpidrs: impl Iterator<Item = u64>,
    ) -> Result<Cpus, TopologyError> {
        let boot = boot_mpidr & MPIDR_AFF_MASK;
        let mut cpus = Cpus {
            mpidr: [0; MAX_CPUS],
            count: 1,
            ignored: 0,
        };
        cpus.mpidr[0] = boot;
        let mut boot_seen = false;
        for m in dt_mpidrs.map(|m| m & MPIDR_AFF_MASK) {
            if m == boot && !boot_seen {
                boot_seen = true;
                continue;
            }
            if cpus.logical(m).is_some() {
                return Err(TopologyError::Duplicate(m));
            }
            if cpus.count == MAX_CPUS {
                cpus.ignored += 1;
                continue;
            }
            cpus.mpidr[cpus.count] = m;
            cpus.count += 1;
        }
        if !boot_seen {
            return Err(TopologyError::BootCpuMissing(boot));
        }
        Ok(cpus)
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// MPIDR affinity of logical CPU `cpu`.
    pub fn mpidr(&self, cpu: usize) -> u64 {
        assert!(cpu < self.count);
        self.mpidr[cpu]
    }

    /// Logical index of the CPU with affinity `mpidr`.
    pub fn logical(&self, mpidr: u64) -> Option<usize> {
        let m = mpidr & MPIDR_AFF_MASK;
        self.mpidr[..self.count].iter().position(|&x| x == m)
    }

    /// An MPIDR affinity that no CPU has: 0xff, or the next lower Aff0
    /// value that is free.
    pub fn unused_mpidr(&self) -> u64 {
        (0..=0xffu64)
            .rev()
            .find(|&m| self.logical(m).is_none())
            .unwrap_or(0xff_0000_0000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_the_boot_cpu_first() {
        let c = Cpus::new(0x8000_0002, [0, 1, 2, 3].into_iter()).unwrap();
        assert_eq!(c.count(), 4);
        assert_eq!((0..4).map(|i| c.mpidr(i)).collect::<Vec<_>>(), [2, 0, 1, 3]);
        assert_eq!(c.logical(3), Some(3));
        assert_eq!(c.logical(0x8000_0001), Some(2));
        assert_eq!(c.unused_mpidr(), 0xff);
    }

    #[test]
    fn rejects_a_missing_boot_cpu_and_duplicates() {
        assert_eq!(
            Cpus::new(5, [0, 1].into_iter()),
            Err(TopologyError::BootCpuMissing(5))
        );
        assert_eq!(
            Cpus::new(0, [0, 1, 1].into_iter()),
            Err(TopologyError::Duplicate(1))
        );
    }

    #[test]
    fn caps_the_cpu_count_and_finds_a_free_mpidr() {
        let c = Cpus::new(0, 0..=0xffu64).unwrap();
        assert_eq!(c.count(), MAX_CPUS);
        assert_eq!(c.ignored, 0x100 - MAX_CPUS);
        let c = Cpus::new(0xff, [0xff].into_iter()).unwrap();
        assert_eq!(c.unused_mpidr(), 0xfe);
    }
}
