//! debug: what nmivisor needs to explain itself when something goes wrong:
//! stack unwinding and symbolization for dumps, the console monitor's escape
//! keys and the lockup watchdog. The modules here are pure logic.

pub mod guest_lockup;
pub mod guest_walk;
pub mod monitor;
pub mod symbols;
pub mod unwind;
pub mod watchdog;

#[cfg(target_os = "none")]
pub mod dump;
#[cfg(target_os = "none")]
pub mod guest_dump;
#[cfg(target_os = "none")]
pub mod monitor_hw;
#[cfg(target_os = "none")]
pub mod roundup;
#[cfg(target_os = "none")]
pub mod watchdog_hw;
