//! Rust side of the exception vectors: dispatch by vector kind.

use super::vectors::{TrapFrame, VectorKind};

/// Vector sources (VectorKind::source) and types (VectorKind::exception_type).
const FROM_EL2_SPX: u64 = 1;
const FROM_LOWER_A64: u64 = 2;
const FROM_LOWER_A32: u64 = 3;
const SYNC: u64 = 0;
const IRQ: u64 = 1;

/// Called by every vector with the trap frame it built. Returning resumes
/// the interrupted context through `exception_return`.
#[no_mangle]
extern "C" fn handle_exception(kind: u64, frame: &mut TrapFrame) {
    let kind = VectorKind(kind);
    match (kind.source(), kind.exception_type()) {
        (FROM_EL2_SPX, IRQ) => crate::gic::irq::handle_irq(frame, None),
        (FROM_LOWER_A64 | FROM_LOWER_A32, ty) => {
            // Looked up once per exit: a vCPU stays pinned to its CPU.
            let current = crate::vm::guest::current();
            match ty {
                // The NMI SGI is handled before the guest exit folds the
                // list registers under the vGIC lock (see handle_irq).
                IRQ => crate::gic::irq::handle_irq(frame, Some(crate::vm::run::guest_exited)),
                SYNC => {
                    crate::debug::guest_dump::note_trap();
                    crate::vm::run::guest_exited_on(current);
                    crate::vm::trap::handle_sync(frame, current)
                }
                // A guest's SError or FIQ is the guest's problem, never a
                // reason to stop the hypervisor: note it and resume.
                _ => {
                    crate::vm::run::guest_exited_on(current);
                    crate::vm::trap::log_async(kind, frame)
                }
            }
            crate::vm::run::resume_guest(current);
        }
        _ => unexpected(kind, frame),
    }
}

/// An exception nmivisor has no handler for: dump everything and halt this
/// CPU. The other CPUs go on.
fn unexpected(kind: VectorKind, frame: &TrapFrame) -> ! {
    crate::debug::dump::unexpected_exception(kind, frame);
    super::cpu::halt()
}
