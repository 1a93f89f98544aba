//! console: output shared by every CPU, including NMI and crash paths.

pub mod lock;
mod output;

pub use output::*;
