//! Reset entry for the boot CPU and for secondaries started by PSCI CPU_ON.
//!
//! The image starts with an arm64 Linux Image header (Linux
//! `Documentation/arch/arm64/booting.rst`), so QEMU's `-kernel` and any
//! arm64 kernel loader boot it like a kernel and pass the DTB in x0.
//!
//! Both entry paths turn the MMU on in assembly before any Rust runs:
//! with the MMU off every data access is Device-nGnRnE, on which exclusive
//! accesses (atomics, locks) are IMPLEMENTATION DEFINED (Arm ARM B2.9.4) and
//! caches are off. The boot CPU starts with `EARLY_L1`, a static table of
//! 1 GiB identity blocks; `mm::el2` later replaces it with the final,
//! permission-split map, which secondaries load directly.

use super::{MAX_CPUS, STACK_SIZE};
use core::arch::global_asm;

/// MAIR_EL2: attribute 0 is Device-nGnRE (MMIO), attribute 1 is Normal
/// write-back read/write-allocate (RAM). `mm::el2` relies on these indices.
pub const MAIR_EL2: u64 = 0xff << 8 | 0x04;

global_asm!(
    r#"
.equ MAIR_VALUE, {mair}
.equ STACK_SIZE, {stack_size}
.equ MAX_CPUS, {max_cpus}
/* SCTLR_EL2 RES1 bits (Arm ARM D19.2.118, E2H=0), then with M, C, I. */
.equ SCTLR_RES1, 0x30c50830
.equ SCTLR_MMU_ON, (SCTLR_RES1 | (1 << 12) | (1 << 2) | (1 << 0))
/* CPTR_EL2 RES1 bits with TFP=0: EL2 code (and the compiler) may use FP/SIMD. */
.equ CPTR_VALUE, 0x33ff
.equ HCR_VALUE, (1 << 31) | (1 << 5) | (1 << 4) | (1 << 3)

.section .text.head, "ax"
.global _start
_start:
    /* arm64 Image header */
    b       primary_entry           /* code0 */
    .long   0                       /* code1 */
    .quad   0x200000                /* text_offset: loaded at RAM base + 2 MiB */
    .quad   __image_size            /* image_size, BSS and stacks included */
    .quad   0xa                     /* flags: little-endian, 4K pages */
    .quad   0, 0, 0                 /* res2..res4 */
    .ascii  "ARM\x64"               /* magic */
    .long   0                       /* res5 */

.type primary_entry, %function
primary_entry:
    mov     x19, x0                 /* DTB physical address */
    /* The image is linked at a fixed address: refuse to run elsewhere. */
    adr     x9, _start
    ldr     x10, =_start
    cmp     x9, x10
    b.ne    early_hang
    mrs     x9, CurrentEL
    cmp     x9, #(2 << 2)
    b.ne    early_hang

    bl      el2_cpu_setup
    adrp    x9, EARLY_L1
    msr     ttbr0_el2, x9
    bl      el2_mmu_on

    /* Clear BSS (this also zeroes the stacks) with the MMU and caches on. */
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
1:  cmp     x9, x10
    b.hs    2f
    stp     xzr, xzr, [x9], #16
    b       1b
2:
    mov     x0, #0                  /* the boot CPU is logical CPU 0 */
    bl      set_stack_and_percpu
    mov     x0, x19
    mov     x29, xzr
    mov     x30, xzr
    b       boot_main

/* Secondary entry from PSCI CPU_ON: x0 = context_id = logical CPU number. */
.global secondary_entry
.type secondary_entry, %function
secondary_entry:
    mov     x19, x0
    cmp     x19, #MAX_CPUS
    b.hs    early_hang
    bl      el2_cpu_setup
    adrp    x9, SECONDARY_TTBR0
    ldr     x9, [x9, :lo12:SECONDARY_TTBR0]
    msr     ttbr0_el2, x9
    bl      el2_mmu_on
    mov     x0, x19
    bl      set_stack_and_percpu
    mov     x0, x19
    mov     x29, xzr
    mov     x30, xzr
    b       secondary_main

/* Registers every EL2 CPU needs before the MMU goes on. Clobbers x9, x10. */
.type el2_cpu_setup, %function
el2_cpu_setup:
    ldr     x9, =SCTLR_RES1
    msr     sctlr_el2, x9
    isb
    mov     x9, #CPTR_VALUE
    msr     cptr_el2, x9
    /*
     * HCR_EL2: RW (EL1 is AArch64), AMO/IMO/FMO: physical SError, IRQ and
     * FIQ are taken to EL2, also while EL2 itself runs (Arm ARM D1.3.3);
     * without IMO an IRQ would target EL1 and stay pending at EL2.
     */
    ldr     x9, =HCR_VALUE
    msr     hcr_el2, x9
    adrp    x9, exception_vectors
    add     x9, x9, :lo12:exception_vectors
    msr     vbar_el2, x9
    ldr     x9, =MAIR_VALUE
    msr     mair_el2, x9
    /*
     * TCR_EL2: T0SZ=25 (39-bit VA, level-1 root), inner/outer write-back
     * write-allocate, inner shareable, 4K granule, PS = the CPU's PARange
     * (capped at 48 bits), RES1 bits 23 and 31.
     */
    mrs     x10, id_aa64mmfr0_el1
    and     x10, x10, #0xf
    cmp     x10, #5
    mov     x9, #5
    csel    x10, x10, x9, ls
    ldr     x9, =((1 << 31) | (1 << 23) | (3 << 12) | (1 << 10) | (1 << 8) | 25)
    orr     x9, x9, x10, lsl #16
    msr     tcr_el2, x9
    isb
    ret

.type el2_mmu_on, %function
el2_mmu_on:
    dsb     ish
    tlbi    alle2
    dsb     ish
    isb
    ldr     x9, =SCTLR_MMU_ON
    msr     sctlr_el2, x9
    isb
    ret

/* x0 = logical CPU: SP = top of its stack, TPIDR_EL2 = &PERCPU[x0]. */
.type set_stack_and_percpu, %function
set_stack_and_percpu:
    adrp    x9, __stacks_start
    add     x9, x9, :lo12:__stacks_start
    add     x10, x0, #1
    ldr     x11, =STACK_SIZE
    madd    x9, x10, x11, x9
    mov     sp, x9
    adrp    x9, PERCPU
    add     x9, x9, :lo12:PERCPU
    ldr     x11, ={percpu_size}
    madd    x9, x0, x11, x9
    msr     tpidr_el2, x9
    ret

.type early_hang, %function
early_hang:
    wfe
    b       early_hang

.pushsection .data.early_l1, "aw"
.balign 4096
/*
 * 1 GiB identity blocks: [0, 1 GiB) as Device-nGnRE, execute-never (QEMU
 * virt's MMIO: GIC, UART, ...), [1 GiB, 8 GiB) as Normal write-back RAM.
 */
.global EARLY_L1
EARLY_L1:
    .quad   (1 << 54) | (1 << 10) | (0 << 2) | 1
    .set    blk, 1
    .rept   7
    .quad   (blk << 30) | (1 << 10) | (3 << 8) | (1 << 2) | 1
    .set    blk, blk + 1
    .endr
    .fill   504, 8, 0
.popsection

.pushsection .bss.stacks, "aw", %nobits
.balign 4096
.global __stacks_start
__stacks_start:
    .space  STACK_SIZE * MAX_CPUS
.global __stacks_end
__stacks_end:
.popsection
"#,
    mair = const MAIR_EL2,
    stack_size = const STACK_SIZE,
    max_cpus = const MAX_CPUS,
    percpu_size = const core::mem::size_of::<super::percpu::PerCpu>(),
);

/// TTBR0_EL2 value that secondaries load before turning their MMU on:
/// the final EL2 page table, written by the boot CPU before any CPU_ON.
#[no_mangle]
pub static SECONDARY_TTBR0: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
