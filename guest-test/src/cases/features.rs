//! The CPU features a guest is shown really work, and their state survives
//! traps: SVE (Z0-Z31 at the full vector length, P0-P15, FFR), pointer
//! authentication (all five keys, PACGA) and the memory copy and set
//! instructions (FEAT_MOPS). Each case reads the ID registers first, as a
//! kernel would, and reports `ok (not shown)` for a feature that is
//! absent: what matters is that whatever is shown works. Natively these
//! check QEMU's CPU; in a VM, nmivisor's feature policy and EL2 enables.

use super::Outcome;
use crate::{fail, psci};
use core::arch::{asm, global_asm};

/// Hypercalls between setting state up and checking it.
const CALLS: u64 = 1000;

/// Field `lsb` of ID register value `v`.
fn field(v: u64, lsb: u32) -> u64 {
    (v >> lsb) & 0xf
}

macro_rules! read_id {
    ($reg:literal) => {{
        let v: u64;
        // SAFETY: reading an ID register has no side effects.
        unsafe { asm!(concat!("mrs {}, ", $reg), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

/// Makes `CALLS` PSCI_VERSION calls through the conduit; the number of
/// wrong answers.
fn hypercalls() -> u64 {
    (0..CALLS).filter(|_| psci::version() < 0x10000).count() as u64
}

// ---------------------------------------------------------------------------
// SVE

/// The largest vector length in bytes (2048 bits).
const MAX_VL: usize = 256;
/// The predicate register length for [`MAX_VL`].
const MAX_PL: usize = MAX_VL / 8;

global_asm!(
    r#"
.arch_extension sve
/*
 * u64 sve_fill_call_dump(u64 seed, u64 calls, u64 conduit, u8 *z, u8 *p, u8 *ffr)
 *
 * z<n>.d[i] = seed + n * 0x100 + i; p<n>.b = the first 3n + 1 elements;
 * FFR = p5. Then `calls` PSCI_VERSION calls, then Z0-Z31 to z (one vector
 * length each), P0-P15 to p and FFR to ffr. Returns the vector length in
 * bytes. Nothing between the fill and the dump touches FP/SIMD or SVE.
 */
.section .text.sve_fill_call_dump, "ax"
.global sve_fill_call_dump
sve_fill_call_dump:
    stp     x29, x30, [sp, #-64]!
    mov     x29, sp
    stp     x19, x20, [sp, #16]
    stp     x21, x22, [sp, #32]
    stp     x23, x24, [sp, #48]
    mov     x19, x1
    mov     x20, x2
    mov     x21, x3
    mov     x22, x4
    mov     x23, x5
    mov     x24, x0
    .irp    r, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    mov     x9, #(\r * 0x100)
    add     x9, x9, x24
    index   z\r\().d, x9, #1
    .endr
    .irp    r, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    mov     x9, #(3 * \r + 1)
    whilelo p\r\().b, xzr, x9
    .endr
    wrffr   p5.b
1:  cbz     x19, 4f
    mov     w0, #0x84000000
    cbnz    x20, 2f
    hvc     #0
    b       3f
2:  smc     #0
3:  sub     x19, x19, #1
    b       1b
4:
    .irp    r, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    str     z\r, [x21, #\r, mul vl]
    .endr
    .irp    r, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    str     p\r, [x22, #\r, mul vl]
    .endr
    rdffr   p0.b
    str     p0, [x23]
    rdvl    x0, #1
    ldp     x23, x24, [sp, #48]
    ldp     x21, x22, [sp, #32]
    ldp     x19, x20, [sp, #16]
    ldp     x29, x30, [sp], #64
    ret
"#
);

extern "C" {
    fn sve_fill_call_dump(
        seed: u64,
        calls: u64,
        conduit: u64,
        z: *mut u8,
        p: *mut u8,
        ffr: *mut u8,
    ) -> u64;
}

struct SveDump {
    z: [[u8; MAX_VL]; 32],
    p: [[u8; MAX_PL]; 16],
    ffr: [u8; MAX_PL],
}

static SVE_DUMP: spin::Mutex<SveDump> = spin::Mutex::new(SveDump {
    z: [[0; MAX_VL]; 32],
    p: [[0; MAX_PL]; 16],
    ffr: [0; MAX_PL],
});

/// Whether predicate bit `bit` (one per byte element) is set in `p`.
fn pred_bit(p: &[u8], bit: usize) -> bool {
    p[bit / 8] & (1 << (bit % 8)) != 0
}

/// SVE registers keep their full-width values across traps.
pub fn sve_state() -> Outcome {
    let pfr0 = read_id!("id_aa64pfr0_el1");
    if field(pfr0, 32) == 0 {
        return Ok(Some("SVE not shown"));
    }
    // SAFETY: CPACR_EL1.ZEN [17:16] and FPEN [21:20] = 0b11 let EL1 use SVE
    // and FP/SIMD; ZCR_EL1 (S3_0_C1_C2_0) LEN = 0xf asks for the largest
    // vector length. Both belong to this guest.
    unsafe {
        asm!(
            "mrs {t}, cpacr_el1",
            "orr {t}, {t}, #(3 << 16)",
            "orr {t}, {t}, #(3 << 20)",
            "msr cpacr_el1, {t}",
            "isb",
            "mov {t}, #0xf",
            "msr S3_0_C1_C2_0, {t}",
            "isb",
            t = out(reg) _,
            options(nomem, nostack, preserves_flags)
        )
    };
    let zcr = read_id!("S3_0_C1_C2_0");
    if zcr & 0xf != 0xf {
        fail!("ZCR_EL1.LEN reads {:#x} after writing 0xf", zcr & 0xf);
    }
    let seed = 0x5e5e_0000_0000_0000u64;
    let mut d = SVE_DUMP.lock();
    let (z, p) = (d.z.as_mut_ptr().cast::<u8>(), d.p.as_mut_ptr().cast::<u8>());
    let ffr = d.ffr.as_mut_ptr();
    // SAFETY: the routine stores 32 vectors of at most MAX_VL bytes to `z`,
    // 16 predicates of at most MAX_PL bytes to `p` and one to `ffr`, all
    // inside the locked buffers, and follows the AAPCS64 for the rest.
    let vl =
        unsafe { sve_fill_call_dump(seed, CALLS, psci::conduit().asm_code(), z, p, ffr) } as usize;
    if vl == 0 || vl > MAX_VL || !vl.is_multiple_of(16) {
        fail!("RDVL gave a vector length of {vl} bytes");
    }
    for (n, reg) in d.z.iter().enumerate() {
        for i in 0..vl / 8 {
            let want = seed + n as u64 * 0x100 + i as u64;
            let got = u64::from_le_bytes(reg[i * 8..i * 8 + 8].try_into().unwrap_or_default());
            if got != want {
                fail!(
                    "z{n}.d[{i}] (VL {} bits) is {got:#x}, expected {want:#x}",
                    vl * 8
                );
            }
        }
    }
    let pl = vl / 8;
    for (n, reg) in d.p.iter().enumerate() {
        for bit in 0..vl {
            if pred_bit(&reg[..pl], bit) != (bit < 3 * n + 1) {
                fail!("p{n} element {bit} changed (VL {} bits)", vl * 8);
            }
        }
    }
    for bit in 0..vl {
        if pred_bit(&d.ffr[..pl], bit) != (bit < 16) {
            fail!("FFR element {bit} changed (VL {} bits)", vl * 8);
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------
// Pointer authentication

/// The five keys' system registers (APIA, APIB, APDA, APDB, APGA; Lo then
/// Hi), written and read through their encodings.
macro_rules! keys {
    ($m:ident) => {
        $m!(
            "S3_0_C2_C1_0",
            "S3_0_C2_C1_1",
            "S3_0_C2_C1_2",
            "S3_0_C2_C1_3",
            "S3_0_C2_C2_0",
            "S3_0_C2_C2_1",
            "S3_0_C2_C2_2",
            "S3_0_C2_C2_3",
            "S3_0_C2_C3_0",
            "S3_0_C2_C3_1"
        )
    };
}

fn write_keys(k: &[u64; 10]) {
    macro_rules! write {
        ($($r:literal),*) => {{
            let mut i = 0;
            $(
                // SAFETY: the pointer authentication keys belong to this
                // guest; nothing in guest-test signs its own pointers.
                unsafe { asm!(concat!("msr ", $r, ", {}"), in(reg) k[i], options(nomem, nostack, preserves_flags)) };
                i += 1;
            )*
            let _ = i;
        }};
    }
    keys!(write);
    // SAFETY: synchronizes the key writes.
    unsafe { asm!("isb", options(nomem, nostack, preserves_flags)) };
}

fn read_keys() -> [u64; 10] {
    let mut k = [0u64; 10];
    macro_rules! read {
        ($($r:literal),*) => {{
            let mut i = 0;
            $(
                // SAFETY: reading a key register has no side effects.
                unsafe { asm!(concat!("mrs {}, ", $r), out(reg) k[i], options(nomem, nostack, preserves_flags)) };
                i += 1;
            )*
            let _ = i;
        }};
    }
    keys!(read);
    k
}

/// PACGA x0, x1, x2: the generic authentication code of `value` with
/// `modifier` under the APGA key, in bits [63:32].
fn pacga(value: u64, modifier: u64) -> u64 {
    let out: u64;
    // SAFETY: PACGA only computes into x0. Encoded directly so that the
    // assembler needs no PAuth extension flag.
    unsafe {
        asm!(".inst 0x9ac23020", in("x1") value, in("x2") modifier, lateout("x0") out,
             options(nomem, nostack, preserves_flags))
    };
    out
}

/// The keys are usable and survive traps; PACGA gives the same code
/// before and after, and another code under another key.
pub fn pauth_keys() -> Outcome {
    let isar1 = read_id!("id_aa64isar1_el1");
    let isar2 = read_id!("S3_0_C0_C6_2");
    let address_auth = field(isar1, 4) | field(isar1, 8) | field(isar2, 12) != 0;
    let generic_auth = field(isar1, 24) | field(isar1, 28) | field(isar2, 8) != 0;
    if !address_auth && !generic_auth {
        return Ok(Some("pointer authentication not shown"));
    }
    let keys: [u64; 10] =
        core::array::from_fn(|i| 0x6b65_7900_0000_0000 | (i as u64) << 32 | 0x1234_5678 ^ i as u64);
    write_keys(&keys);
    let before = generic_auth.then(|| pacga(0x4000_1234, 42));
    let bad = hypercalls();
    if bad != 0 {
        fail!("{bad} of {CALLS} PSCI_VERSION calls failed");
    }
    let after = read_keys();
    if let Some(i) = (0..10).find(|&i| after[i] != keys[i]) {
        fail!(
            "key register {i} is {:#x} after {CALLS} hypercalls, expected {:#x}",
            after[i],
            keys[i]
        );
    }
    if let Some(code) = before {
        if code >> 32 == 0 {
            fail!("PACGA gave no code ({code:#x})");
        }
        let again = pacga(0x4000_1234, 42);
        if again != code {
            fail!("PACGA gave {again:#x} after the hypercalls, {code:#x} before");
        }
        let mut other = keys;
        other[8] ^= 1;
        write_keys(&other);
        if pacga(0x4000_1234, 42) == code {
            fail!("PACGA gave the same code under another key");
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------
// Memory copy and set (FEAT_MOPS)

global_asm!(
    r#"
.arch_extension mops
/* void mops_set(u8 *dst, u64 len, u64 byte) */
.section .text.mops_set, "ax"
.global mops_set
mops_set:
    setp    [x0]!, x1!, x2
    setm    [x0]!, x1!, x2
    sete    [x0]!, x1!, x2
    ret
/* void mops_copy(u8 *dst, const u8 *src, u64 len) */
.section .text.mops_copy, "ax"
.global mops_copy
mops_copy:
    cpyfp   [x0]!, [x1]!, x2!
    cpyfm   [x0]!, [x1]!, x2!
    cpyfe   [x0]!, [x1]!, x2!
    ret
"#
);

extern "C" {
    fn mops_set(dst: *mut u8, len: u64, byte: u64);
    fn mops_copy(dst: *mut u8, src: *const u8, len: u64);
}

static MOPS_BUF: spin::Mutex<[u8; 512]> = spin::Mutex::new([0; 512]);

/// SETP/SETM/SETE and CPYFP/CPYFM/CPYFE execute (HCRX_EL2.MSCEn under a
/// hypervisor) and do what they say.
pub fn mops() -> Outcome {
    let isar2 = read_id!("S3_0_C0_C6_2");
    if field(isar2, 16) == 0 {
        return Ok(Some("FEAT_MOPS not shown"));
    }
    let mut buf = MOPS_BUF.lock();
    buf.fill(0);
    let base = buf.as_mut_ptr();
    // SAFETY: both calls stay inside the 512-byte locked buffer: set bytes
    // 3..203, then copy 200 bytes from 3.. to 300..
    unsafe {
        mops_set(base.add(3), 200, 0xa5);
        mops_copy(base.add(300), base.add(3), 200);
    }
    for (i, &b) in buf.iter().enumerate() {
        let want = if (3..203).contains(&i) || (300..500).contains(&i) {
            0xa5
        } else {
            0
        };
        if b != want {
            fail!("byte {i} is {b:#x} after SETP/CPYFP, expected {want:#x}");
        }
    }
    Ok(None)
}
