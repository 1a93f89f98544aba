//! The EL1 exception vectors. All 16 entries save every general-purpose
//! register and the exception registers in a [`Frame`] on the current
//! stack (and the FP/SIMD registers below it) and call
//! [`exception_handler`]. An IRQ goes to [`crate::irq::handle`]; an
//! expected fault ([`crate::fault`]) is skipped and execution resumes;
//! anything else is reported with a register dump and fails the running
//! case.

use crate::{cpu, esr, fault, runner};
use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, Ordering};

/// The registers at exception entry.
#[repr(C)]
pub struct Frame {
    pub x: [u64; 31],
    /// SP before the exception.
    pub sp: u64,
    pub elr: u64,
    pub spsr: u64,
    pub esr: u64,
    pub far: u64,
}

const FRAME_SIZE: usize = core::mem::size_of::<Frame>();
const _: () = assert!(FRAME_SIZE == 288);

global_asm!(
    r#"
.equ FRAME_SIZE, {frame_size}
/* FPSR and FPCR, then q0-q31. */
.equ FP_SIZE, 528

.macro VENTRY index
    .balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\index
    b       exception_common
.endm

.section .text.vectors, "ax"
.balign 0x800
.global guest_vectors
guest_vectors:
    .irp    i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    VENTRY  \i
    .endr

exception_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    add     x2, sp, #FRAME_SIZE
    stp     x30, x2, [sp, #240]
    mrs     x2, elr_el1
    mrs     x3, spsr_el1
    stp     x2, x3, [sp, #256]
    mrs     x2, esr_el1
    mrs     x3, far_el1
    stp     x2, x3, [sp, #272]
    mov     x1, x0
    mov     x0, sp
    /*
     * FP/SIMD state below the frame: an interrupt may arrive anywhere,
     * and compiled code (handlers included) uses these registers.
     */
    sub     sp, sp, #FP_SIZE
    stp     q0, q1, [sp, #16]
    stp     q2, q3, [sp, #48]
    stp     q4, q5, [sp, #80]
    stp     q6, q7, [sp, #112]
    stp     q8, q9, [sp, #144]
    stp     q10, q11, [sp, #176]
    stp     q12, q13, [sp, #208]
    stp     q14, q15, [sp, #240]
    stp     q16, q17, [sp, #272]
    stp     q18, q19, [sp, #304]
    stp     q20, q21, [sp, #336]
    stp     q22, q23, [sp, #368]
    stp     q24, q25, [sp, #400]
    stp     q26, q27, [sp, #432]
    stp     q28, q29, [sp, #464]
    stp     q30, q31, [sp, #496]
    mrs     x2, fpsr
    mrs     x3, fpcr
    stp     x2, x3, [sp, #0]
    /* A frame record so a debugger can walk past the exception. */
    ldr     x2, [x0, #256]
    stp     x29, x2, [sp, #-16]!
    mov     x29, sp
    bl      exception_handler
    add     sp, sp, #16
    ldp     x2, x3, [sp, #0]
    msr     fpsr, x2
    msr     fpcr, x3
    ldp     q0, q1, [sp, #16]
    ldp     q2, q3, [sp, #48]
    ldp     q4, q5, [sp, #80]
    ldp     q6, q7, [sp, #112]
    ldp     q8, q9, [sp, #144]
    ldp     q10, q11, [sp, #176]
    ldp     q12, q13, [sp, #208]
    ldp     q14, q15, [sp, #240]
    ldp     q16, q17, [sp, #272]
    ldp     q18, q19, [sp, #304]
    ldp     q20, q21, [sp, #336]
    ldp     q22, q23, [sp, #368]
    ldp     q24, q25, [sp, #400]
    ldp     q26, q27, [sp, #432]
    ldp     q28, q29, [sp, #464]
    ldp     q30, q31, [sp, #496]
    add     sp, sp, #FP_SIZE
    /* Resume: ELR may have been moved past the faulting instruction. */
    ldp     x2, x3, [sp, #256]
    msr     elr_el1, x2
    msr     spsr_el1, x3
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldr     x30, [sp, #240]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #FRAME_SIZE
    eret
"#,
    frame_size = const FRAME_SIZE,
);

/// Set while a CPU reports an unexpected exception: a second one on the
/// same CPU (say, the report itself faults) powers off without a report.
static REPORTING: [AtomicBool; crate::topology::MAX_CPUS] =
    [const { AtomicBool::new(false) }; crate::topology::MAX_CPUS];

/// Called by the vectors with the saved registers and the vector index
/// (0-15). Returns only to resume at `frame.elr`.
#[no_mangle]
extern "C" fn exception_handler(frame: &mut Frame, vector: u64) {
    let me = cpu::index();
    if crate::hostile::take(me, vector, frame) {
        return;
    }
    if vector == esr::VECTOR_SYNC_EL1H && fault::take_expected(me, frame.esr, frame.far) {
        frame.elr += 4;
        return;
    }
    if vector == esr::VECTOR_IRQ_EL1H {
        crate::irq::handle();
        return;
    }
    if REPORTING[me].swap(true, Ordering::Relaxed) {
        crate::psci::system_off();
    }
    report(me, frame, vector);
    runner::abort(me, "unexpected exception")
}

/// One line: the prefix, what was taken, then every register.
fn report(me: usize, f: &Frame, vector: u64) {
    use core::fmt::Write;
    let ec = esr::ec(f.esr);
    let mut line: crate::line::Line<1024> = crate::line::Line::new();
    let _ = write!(
        line,
        "guest-test: unexpected exception on cpu {me}: {} ec={ec:#04x} ({}) esr={:#x} \
         far={:#x} elr={:#x} spsr={:#x} sp={:#x}",
        esr::vector_name(vector),
        esr::ec_name(ec),
        f.esr,
        f.far,
        f.elr,
        f.spsr,
        f.sp
    );
    for (i, x) in f.x.iter().enumerate() {
        let _ = write!(line, " x{i}={x:#x}");
    }
    crate::console::write_line(line.as_bytes());
}
