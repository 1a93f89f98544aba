//! Emulated devices guests see.

pub mod pl011;
