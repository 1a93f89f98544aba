//! Rust side of the exception vectors: dispatch by vector kind.

use super::vectors::{TrapFrame, VectorKind};

/// Called by every vector with the trap frame it built. Returning resumes
/// the interrupted context through `exception_return`.
#[no_mangle]
extern "C" fn handle_exception(kind: u64, frame: &mut TrapFrame) {
    let kind = VectorKind(kind);
    unexpected(kind, frame)
}

/// An exception nmivisor has no handler for: dump everything and halt this
/// CPU. The other CPUs go on.
fn unexpected(kind: VectorKind, frame: &TrapFrame) -> ! {
    crate::debug::dump::unexpected_exception(kind, frame);
    super::cpu::halt()
}
