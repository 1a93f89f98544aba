//! Reset entry for the boot CPU and for secondaries started by PSCI CPU_ON.
//!
//! The image starts with an arm64 Linux Image header (Linux
//! `Documentation/arch/arm64/booting.rst`), so QEMU's `-kernel` and
//! nmivisor load it like a kernel at RAM base + text_offset and pass the
//! DTB address in x0.
//!
//! Both paths set up EL1 (FP/SIMD access, vectors, MAIR, TCR) and turn the
//! MMU on with the static identity map of [`crate::mmu`] before any Rust
//! runs. The boot CPU then clears BSS (which holds the stacks); secondaries
//! take their logical CPU index from x0 (the CPU_ON context_id). Each CPU
//! keeps its index in TPIDR_EL1 ([`crate::cpu::index`]).

use crate::mmu::{self, Table};
use crate::topology::MAX_CPUS;
use core::arch::global_asm;

/// Stack size per CPU.
pub const STACK_SIZE: usize = 16 * 1024;

/// CPU_SUSPEND's context_id: the boot CPU would enter `secondary_entry`
/// with it only if a standby request had been turned into a power-down.
pub const RESUME_CONTEXT: u64 = 0x7e57_0000_0000_0000;

/// CPU_ON's context_id for calls that must fail: `secondary_entry` parks a
/// CPU that enters with it.
pub const PROBE_CONTEXT: u64 = u64::MAX;

/// The translation table every CPU uses (read-only: it never changes).
#[no_mangle]
static GUEST_IDMAP: Table = mmu::identity_map();

global_asm!(
    r#"
.equ STACK_SIZE, {stack_size}
.equ MAX_CPUS, {max_cpus}
.equ RESUME_CONTEXT, {resume_context}
/*
 * SCTLR_EL1 RES1 bits (EOS, TSCXT, EIS, SPAN, nTLSMD, LSMAOE: their
 * architectural values without the features that give them a meaning),
 * then with M (MMU), C and I (caches).
 */
.equ SCTLR_RES1, 0x30d00800
.equ SCTLR_MMU_ON, (SCTLR_RES1 | (1 << 12) | (1 << 2) | (1 << 0))
/* CPACR_EL1.FPEN = 0b11: FP/SIMD does not trap (the compiler uses it). */
.equ CPACR_FP_ON, (3 << 20)

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

primary_entry:
    msr     daifset, #0xf
    mov     x19, x0                 /* DTB address */
    /* Linked at a fixed address and identity mapped: refuse to run elsewhere. */
    adr     x9, _start
    ldr     x10, =_start
    cmp     x9, x10
    b.ne    early_hang
    mrs     x9, CurrentEL
    cmp     x9, #(1 << 2)
    b.ne    early_hang

    bl      el1_setup
    /* Clear BSS (stacks included) with the MMU and caches on. */
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
    bl      set_cpu_stack
    mov     x0, x19
    mov     x29, xzr
    mov     x30, xzr
    bl      boot_main
    b       early_hang

/*
 * PSCI entry point: x0 = context_id. For CPU_ON it is the logical CPU
 * index. RESUME_CONTEXT marks the boot CPU coming back from a CPU_SUSPEND
 * that should have been a standby: it reports that and powers off.
 */
.global secondary_entry
secondary_entry:
    msr     daifset, #0xf
    mov     x19, x0
    mov     x20, #0
    ldr     x9, =RESUME_CONTEXT
    cmp     x19, x9
    b.ne    1f
    mov     x19, #0
    mov     x20, #1
1:  cmp     x19, #MAX_CPUS
    b.hs    early_hang
    mrs     x9, CurrentEL
    cmp     x9, #(1 << 2)
    b.ne    early_hang
    bl      el1_setup
    mov     x0, x19
    bl      set_cpu_stack
    mov     x0, x19
    mov     x29, xzr
    mov     x30, xzr
    cbnz    x20, 2f
    bl      secondary_main
    b       early_hang
2:  bl      unexpected_resume
    b       early_hang

/* EL1 system registers, then the MMU on. Clobbers x9, x10. */
el1_setup:
    ldr     x9, =SCTLR_RES1
    msr     sctlr_el1, x9
    isb
    mov     x9, #CPACR_FP_ON
    msr     cpacr_el1, x9
    adrp    x9, guest_vectors
    add     x9, x9, :lo12:guest_vectors
    msr     vbar_el1, x9
    ldr     x9, ={mair}
    msr     mair_el1, x9
    /* TCR_EL1 with IPS = the CPU's PARange, capped at 48 bits. */
    mrs     x10, id_aa64mmfr0_el1
    and     x10, x10, #0xf
    cmp     x10, #5
    mov     x9, #5
    csel    x10, x10, x9, ls
    ldr     x9, ={tcr}
    orr     x9, x9, x10, lsl #32
    msr     tcr_el1, x9
    adrp    x9, GUEST_IDMAP
    msr     ttbr0_el1, x9
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    ldr     x9, =SCTLR_MMU_ON
    msr     sctlr_el1, x9
    isb
    ret

/* x0 = logical CPU index: TPIDR_EL1 and SP (top of the CPU's stack). */
set_cpu_stack:
    msr     tpidr_el1, x0
    adrp    x9, guest_stacks
    add     x9, x9, :lo12:guest_stacks
    add     x10, x0, #1
    mov     x11, #STACK_SIZE
    madd    x9, x10, x11, x9
    mov     sp, x9
    ret

.global early_hang
early_hang:
    wfe
    b       early_hang

.section .bss.guest_stacks, "aw", %nobits
.balign 4096
guest_stacks:
    .space  STACK_SIZE * MAX_CPUS
"#,
    stack_size = const STACK_SIZE,
    max_cpus = const MAX_CPUS,
    resume_context = const RESUME_CONTEXT,
    mair = const mmu::MAIR_EL1,
    tcr = const mmu::TCR_EL1,
);

extern "C" {
    fn secondary_entry();
}

/// The boot CPU came back through the power-down entry point of
/// CPU_SUSPEND: the running case fails and the guest powers off.
#[no_mangle]
extern "C" fn unexpected_resume(me: usize) -> ! {
    crate::runner::abort(
        me,
        "CPU_SUSPEND standby resumed at the power-down entry point",
    )
}

/// The physical (= virtual) address secondaries start at.
pub fn secondary_entry_address() -> u64 {
    secondary_entry as *const () as usize as u64
}
