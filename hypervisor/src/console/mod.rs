//! console: output shared by every CPU, including NMI and crash paths.

pub mod lock;
mod output;
pub mod ratelimit;

// Only the bare-metal image prints; host tests reach `output` directly.
#[cfg(target_os = "none")]
pub use output::*;
