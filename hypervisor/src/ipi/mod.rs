//! ipi: the SGI multiplexer. nmivisor uses two physical SGIs (a normal-priority
//! kick and an NMI SGI) and carries many messages on each as bits in per-CPU
//! mailbox words; see `docs/` for the allocation table. The modules here are the
//! pure part; sending and receiving the SGIs lives with the GIC code.

pub mod mailbox;
pub mod message;
pub mod roundup;

#[cfg(target_os = "none")]
pub mod hw;
