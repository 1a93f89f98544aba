//! The EL2 exception vector table and the trap frame every entry builds.
//!
//! All 16 vectors (Arm ARM D1.3.2: {current EL with SP_EL0, current EL with
//! SP_ELx, lower EL AArch64, lower EL AArch32} x {sync, IRQ, FIQ, SError})
//! save the general-purpose register state and call
//! `dispatch::handle_exception`.
//!
//! FP/SIMD, SVE and SME state is not saved: the hypervisor is built for
//! `aarch64-unknown-none-softfloat`, so no EL2 code touches those registers,
//! and a guest's Z, P and FFR registers (whose upper bits any write of a
//! V register would zero) and FPSR/FPCR stay live in the hardware across
//! every trap. See docs/cpu-features.md for the measurement behind this.

use core::arch::global_asm;

/// Register state at the moment of an exception, as built by the vectors.
#[repr(C, align(16))]
#[derive(Clone, Debug)]
pub struct TrapFrame {
    /// General-purpose registers x0..x30.
    pub x: [u64; 31],
    /// The interrupted stack pointer (SP_EL2 for exceptions from EL2).
    pub sp: u64,
    pub elr: u64,
    pub spsr: u64,
    pub esr: u64,
    pub far: u64,
    /// A frame record {interrupted x29, ELR} so that an unwind from inside
    /// a handler continues into the interrupted code.
    pub frame_record: [u64; 2],
}

/// Which of the 16 vectors was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VectorKind(pub u64);

impl VectorKind {
    /// The exception type: 0 sync, 1 IRQ, 2 FIQ, 3 SError.
    pub fn exception_type(self) -> u64 {
        self.0 & 3
    }

    /// Where it came from: 0 current EL with SP_EL0, 1 current EL with
    /// SP_ELx, 2 lower EL AArch64, 3 lower EL AArch32.
    pub fn source(self) -> u64 {
        self.0 >> 2
    }

    /// The exception level an SPSR_EL2 value says was interrupted.
    pub fn from_spsr_el(spsr: u64) -> u64 {
        (spsr >> 2) & 3
    }

    /// The exception type and where it came from, for the unexpected-exception report.
    pub fn describe(self) -> (&'static str, &'static str) {
        let ty = ["synchronous", "IRQ", "FIQ", "SError"][(self.0 & 3) as usize];
        let from = [
            "current EL (SP0)",
            "current EL (SPx)",
            "lower EL (AArch64)",
            "lower EL (AArch32)",
        ][((self.0 >> 2) & 3) as usize];
        (ty, from)
    }
}

const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE.is_multiple_of(16));

global_asm!(
    r#"
.equ FRAME_SIZE, {frame_size}
.equ OFF_SP, {off_sp}
.equ OFF_ELR, {off_elr}
.equ OFF_ESR, {off_esr}
.equ OFF_RECORD, {off_record}

.macro vector kind
    .balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       exception_common
.endm

.section .text.vectors, "ax"
.balign 0x800
.global exception_vectors
exception_vectors:
    vector 0
    vector 1
    vector 2
    vector 3
    vector 4
    vector 5
    vector 6
    vector 7
    vector 8
    vector 9
    vector 10
    vector 11
    vector 12
    vector 13
    vector 14
    vector 15

.type exception_common, %function
exception_common:
    stp     x2, x3, [sp, #16 * 1]
    stp     x4, x5, [sp, #16 * 2]
    stp     x6, x7, [sp, #16 * 3]
    stp     x8, x9, [sp, #16 * 4]
    stp     x10, x11, [sp, #16 * 5]
    stp     x12, x13, [sp, #16 * 6]
    stp     x14, x15, [sp, #16 * 7]
    stp     x16, x17, [sp, #16 * 8]
    stp     x18, x19, [sp, #16 * 9]
    stp     x20, x21, [sp, #16 * 10]
    stp     x22, x23, [sp, #16 * 11]
    stp     x24, x25, [sp, #16 * 12]
    stp     x26, x27, [sp, #16 * 13]
    stp     x28, x29, [sp, #16 * 14]
    add     x1, sp, #FRAME_SIZE
    stp     x30, x1, [sp, #OFF_SP - 8]
    mrs     x2, elr_el2
    mrs     x3, spsr_el2
    stp     x2, x3, [sp, #OFF_ELR]
    mrs     x4, esr_el2
    mrs     x5, far_el2
    stp     x4, x5, [sp, #OFF_ESR]
    /*
     * The frame record links an unwind from the handler into the
     * interrupted EL2 code. A guest's x29 and PC are not EL2 frames: for
     * exceptions from a lower EL (vectors 8..15) the chain ends here.
     */
    cmp     x0, #8
    b.hs    1f
    stp     x29, x2, [sp, #OFF_RECORD]
    b       2f
1:  stp     xzr, xzr, [sp, #OFF_RECORD]
2:
    add     x29, sp, #OFF_RECORD
    mov     x1, sp
    bl      handle_exception

.global exception_return
.type exception_return, %function
exception_return:
    ldp     x2, x3, [sp, #OFF_ELR]
    msr     elr_el2, x2
    msr     spsr_el2, x3
    ldp     x2, x3, [sp, #16 * 1]
    ldp     x4, x5, [sp, #16 * 2]
    ldp     x6, x7, [sp, #16 * 3]
    ldp     x8, x9, [sp, #16 * 4]
    ldp     x10, x11, [sp, #16 * 5]
    ldp     x12, x13, [sp, #16 * 6]
    ldp     x14, x15, [sp, #16 * 7]
    ldp     x16, x17, [sp, #16 * 8]
    ldp     x18, x19, [sp, #16 * 9]
    ldp     x20, x21, [sp, #16 * 10]
    ldp     x22, x23, [sp, #16 * 11]
    ldp     x24, x25, [sp, #16 * 12]
    ldp     x26, x27, [sp, #16 * 13]
    ldp     x28, x29, [sp, #16 * 14]
    ldr     x30, [sp, #OFF_SP - 8]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #FRAME_SIZE
    eret
"#,
    frame_size = const FRAME_SIZE,
    off_sp = const core::mem::offset_of!(TrapFrame, sp),
    off_elr = const core::mem::offset_of!(TrapFrame, elr),
    off_esr = const core::mem::offset_of!(TrapFrame, esr),
    off_record = const core::mem::offset_of!(TrapFrame, frame_record),
);
