//! FP/SIMD state across hypercalls: on every CPU, v0-v31 get a pattern
//! that depends on the CPU, then 1000 PSCI_VERSION calls go through the
//! conduit, then all 32 registers are compared. It all happens in one
//! assembly routine, so no compiled code touches FP/SIMD in between.

use super::{Outcome, Reason};
use crate::secondary::{Job, Outcome as JobOutcome};
use crate::{cpu, line, psci};
use core::arch::global_asm;

const CALLS: u64 = 1000;

const CHANGED: u64 = 1;
const BAD_CALLS: u64 = 2;

global_asm!(
    r#"
/*
 * u64 fp_simd_hypercall_check(u64 seed, u64 calls, u64 conduit, u64 *bad)
 *
 * Loads v<n> = (hi: ~(seed + n), lo: seed + n) for n = 0..31, makes
 * `calls` PSCI_VERSION calls (conduit 0: HVC, 1: SMC) counting results
 * below 0x10000 into *bad, then returns a mask with bit n set if v<n>
 * changed. Saves d8-d15 and x19-x23 (callee-saved) and the link register;
 * x0-x17 may be clobbered by the calls.
 */
.section .text.fp_simd_hypercall_check, "ax"
.global fp_simd_hypercall_check
fp_simd_hypercall_check:
    stp     x29, x30, [sp, #-128]!
    mov     x29, sp
    stp     x19, x20, [sp, #16]
    stp     x21, x22, [sp, #32]
    stp     x23, xzr, [sp, #48]
    stp     d8, d9, [sp, #64]
    stp     d10, d11, [sp, #80]
    stp     d12, d13, [sp, #96]
    stp     d14, d15, [sp, #112]
    mov     x19, x0
    mov     x20, x1
    mov     x21, x2
    mov     x22, #0
    mov     x23, x3

    .irp    r, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    add     x9, x19, #\r
    mvn     x10, x9
    fmov    d\r, x9
    mov     v\r\().d[1], x10
    .endr

1:  cbz     x20, 4f
    mov     w0, #0x84000000
    cbnz    x21, 2f
    hvc     #0
    b       3f
2:  smc     #0
3:  mov     w9, #0x10000
    cmp     w0, w9
    cinc    x22, x22, lt
    sub     x20, x20, #1
    b       1b

4:  mov     x0, #0
    .irp    r, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    add     x9, x19, #\r
    mvn     x10, x9
    fmov    x11, d\r
    mov     x12, v\r\().d[1]
    cmp     x11, x9
    ccmp    x12, x10, #0, eq
    orr     x13, x0, #(1 << \r)
    csel    x0, x0, x13, eq
    .endr

    str     x22, [x23]
    ldp     d14, d15, [sp, #112]
    ldp     d12, d13, [sp, #96]
    ldp     d10, d11, [sp, #80]
    ldp     d8, d9, [sp, #64]
    ldr     x23, [sp, #48]
    ldp     x21, x22, [sp, #32]
    ldp     x19, x20, [sp, #16]
    ldp     x29, x30, [sp], #128
    ret
"#
);

extern "C" {
    fn fp_simd_hypercall_check(seed: u64, calls: u64, conduit: u64, bad: *mut u64) -> u64;
}

/// The pattern base of CPU `cpu`: distinct per CPU and per register.
fn seed(cpu: usize) -> u64 {
    0xf00d_0000_0000_0000 | (cpu as u64) << 40 | 0x00c0_ffee_0000
}

/// The check on the calling CPU.
pub fn run_on_this_cpu() -> JobOutcome {
    let mut bad = 0u64;
    // SAFETY: the routine follows the AAPCS64 (it saves what it must) and
    // only writes `bad`.
    let changed = unsafe {
        fp_simd_hypercall_check(
            seed(cpu::index()),
            CALLS,
            psci::conduit().asm_code(),
            &mut bad,
        )
    };
    if changed != 0 {
        JobOutcome {
            code: CHANGED,
            detail: changed,
        }
    } else if bad != 0 {
        JobOutcome {
            code: BAD_CALLS,
            detail: bad,
        }
    } else {
        JobOutcome::OK
    }
}

fn explain(cpu: usize, out: JobOutcome) -> Reason {
    match out.code {
        CHANGED => {
            let first = out.detail.trailing_zeros();
            line::format(format_args!(
                "cpu {cpu}: {} of v0-v31 changed across {CALLS} hypercalls (mask {:#x}, first v{first})",
                out.detail.count_ones(),
                out.detail
            ))
        }
        BAD_CALLS => line::format(format_args!(
            "cpu {cpu}: {} of {CALLS} PSCI_VERSION calls returned < 0x10000",
            out.detail
        )),
        c => line::format(format_args!(
            "cpu {cpu}: job failed with code {c} ({:#x})",
            out.detail
        )),
    }
}

pub fn fp_simd() -> Outcome {
    super::on_every_cpu(Job::FpSimd, run_on_this_cpu, explain)?;
    Ok(None)
}
