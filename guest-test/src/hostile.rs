//! Hostile mode (`guest-test.hostile seed=N ops=N` in /chosen/bootargs):
//! every vCPU throws random operations at the hypervisor and checks that
//! each one gets a defined answer ([`crate::hostile_rules`] has the PRNG,
//! the encoders and the rules).
//!
//! - Every operation is one instruction, chosen and encoded at run time
//!   from a per-CPU splitmix64 stream seeded from `seed` (any system
//!   register encoding can come up), and executed from its slot in a code
//!   table written once at start (`insn; ret` at EL1, `insn; svc #0` at
//!   EL0, [`rules::slots`]) with a probe armed: the exception vectors
//!   ([`take`]) record any exception it raises and resume after it.
//! - Operations: MMIO loads and stores of 1, 2, 4 and 8 bytes, LDP/STP and
//!   DC CIVAC/CVAC on the GIC distributor, every redistributor frame, the
//!   PL011 and anywhere in the IPA space outside the guest's RAM; loads
//!   from the host RAM that other VMs and the hypervisor use; MRS/MSR of
//!   the ID space, IMPLEMENTATION DEFINED, RAS, LOR, PAuth key, ZCR_EL1,
//!   ICC_SRE_EL1, ACTLR_EL1 and debug registers, and reads anywhere in the
//!   system register space; HVC and SMC with random function IDs and
//!   arguments; ICC_SGI1R/ASGI1R/SGI0R writes (IRM=1 included) while
//!   SGIs 8-15 are NMIs (priority 0x80) on every vCPU; PSCI CPU_ON,
//!   CPU_OFF and AFFINITY_INFO racing across the vCPUs; and the same
//!   instructions from EL0.
//! - A random hypercall never uses SYSTEM_OFF, SYSTEM_RESET, CPU_SUSPEND,
//!   CPU_OFF or CPU_ON (they are separate, deliberate operations). When
//!   the op count is reached the boot vCPU prints the result and calls
//!   SYSTEM_RESET while the other vCPUs keep going; the next boot finds
//!   a marker in RAM, says so and powers off.
//! - A hang is an undefined answer too: each vCPU stamps the virtual
//!   counter before every operation, the boot vCPU checks the others and
//!   vCPU 1 checks the boot vCPU (no interrupt is needed, so random GIC
//!   writes cannot blind it).
//!
//! Output (parseable): `hostile: progress N ops` every 100000, then
//! `hostile: counts value=N ext-abort=N ...`, then `hostile: N ops, 0
//! undefined answers` or `hostile: N ops, K undefined answers` followed by
//! one `hostile: undefined: ...` line each (the first 16).
//!
//! With the word `wait=console`, the boot vCPU waits (up to 600 s) for a
//! byte on its PL011 before it starts, so a test can start the storm when
//! the machine's other VMs are up.

use crate::hostile_rules::{
    self as rules, enc, slots, Access, Answer, Class, Rng, Target, CLASSES,
};
use crate::topology::MAX_CPUS;
use crate::{cpu, dt, gic, println, psci};
use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// The boot argument that selects hostile mode.
pub const ARG: &str = "guest-test.hostile";

/// The marker word's value after the deliberate SYSTEM_RESET: "nmvhostl".
const RESET_MAGIC: u64 = u64::from_be_bytes(*b"nmvhostl");

const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;
const PAGE: u64 = 4096;

// ---------------------------------------------------------------------------
// The guest's translation tables in hostile mode.

/// A translation table built at run time.
#[repr(C, align(4096))]
struct Table([AtomicU64; 512]);

static L1: Table = Table([const { AtomicU64::new(0) }; 512]);
/// Level 2 table of VA 3-4 GiB: entry 0 is the EL0 code block.
static L2: Table = Table([const { AtomicU64::new(0) }; 512]);

const VALID_BLOCK: u64 = 0b01;
const VALID_TABLE: u64 = 0b11;
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;
/// AP[2:1] = 01: read/write at EL1 and EL0.
const AP_EL0_RW: u64 = 1 << 6;
const SH_INNER: u64 = 3 << 8;
const AF: u64 = 1 << 10;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;

/// The VA at which EL0 runs its stubs.
const EL0_VA: u64 = 3 * GIB;

/// Builds the tables (boot vCPU, once):
///
/// | VA | maps to | attributes |
/// |---|---|---|
/// | 0-1 GiB | identity | Device, EL0 read/write, never executable |
/// | 1-3 GiB | identity | Normal, EL1 only (guest RAM and what lies beyond it) |
/// | 3 GiB + 2 MiB | the EL0 code block in RAM | Normal, EL0 read/write/execute |
/// | rest of 3-4 GiB | identity | Normal, EL1 only |
/// | 4-512 GiB | identity | Device, EL0 read/write, never executable |
///
/// Above the guest's PARange (36 bits) the guest MMU itself answers with
/// an address size fault.
fn build_tables(el0_pa: u64) {
    let device = ATTR_DEVICE | AF | AP_EL0_RW | PXN | UXN | VALID_BLOCK;
    let normal = ATTR_NORMAL | SH_INNER | AF | UXN | VALID_BLOCK;
    for i in 0..512u64 {
        let d = match i {
            0 => device,
            1 | 2 => (i * GIB) | normal,
            3 => &L2 as *const Table as u64 | VALID_TABLE,
            _ => (i * GIB) | device,
        };
        L1.0[i as usize].store(d, Ordering::Relaxed);
    }
    for j in 0..512u64 {
        let d = if j == 0 {
            el0_pa | ATTR_NORMAL | SH_INNER | AF | AP_EL0_RW | PXN | VALID_BLOCK
        } else {
            (EL0_VA + j * MIB2) | normal
        };
        L2.0[j as usize].store(d, Ordering::Relaxed);
    }
    // SAFETY: orders the table writes before any walk.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
}

/// Switches this CPU to the hostile tables (same TCR: 39-bit VA).
fn install_tables() {
    let ttbr = &L1 as *const Table as u64;
    // SAFETY: the new tables map everything the old identity map did
    // (RAM and MMIO at the same addresses), so execution continues.
    unsafe {
        asm!(
            "dsb ish",
            "msr ttbr0_el1, {t}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            t = in(reg) ttbr,
            options(nostack, preserves_flags)
        )
    };
}

// ---------------------------------------------------------------------------
// Code slots and the probe.

/// The EL1 code table ([`rules::slots`]): each slot is `insn; ret`,
/// one u64 (the instruction is the low, first word). Written once by the
/// boot vCPU before the storm.
#[repr(C, align(4096))]
struct CodeTable([AtomicU64; slots::COUNT]);

static EL1_CODE: CodeTable = CodeTable([const { AtomicU64::new(0) }; slots::COUNT]);

/// PA (= identity VA) of the EL0 code block.
static EL0_PA: AtomicU64 = AtomicU64::new(0);

/// The probe, per CPU.
static ARMED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// 0: nothing taken; 1: synchronous; 2: SVC from the EL0 stub; 3: async.
static TAKEN: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static T_ESR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static T_FAR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static T_VEC: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// x1 of the EL0 stub when it ended.
static T_X1: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// The EL1 stack pointer saved while an EL0 stub runs.
#[no_mangle]
static HOSTILE_EL0_SP: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

global_asm!(
    r#"
/* x0 = EL0 entry VA, x1..x3 = the stub's x0..x2. Returns through
 * hostile_el0_resume once the vectors took the stub's exception. */
.global hostile_el0_enter
hostile_el0_enter:
    /* No interrupt may overwrite ELR/SPSR_EL1 before the ERET. */
    msr     daifset, #0xf
    stp     x29, x30, [sp, #-96]!
    stp     x19, x20, [sp, #16]
    stp     x21, x22, [sp, #32]
    stp     x23, x24, [sp, #48]
    stp     x25, x26, [sp, #64]
    stp     x27, x28, [sp, #80]
    mrs     x9, tpidr_el1
    adrp    x10, HOSTILE_EL0_SP
    add     x10, x10, :lo12:HOSTILE_EL0_SP
    mov     x11, sp
    str     x11, [x10, x9, lsl #3]
    msr     elr_el1, x0
    /* EL0t with D, A, I and F masked. */
    mov     x9, #0x3c0
    msr     spsr_el1, x9
    mov     x0, x1
    mov     x1, x2
    mov     x2, x3
    eret

.global hostile_el0_resume
hostile_el0_resume:
    mrs     x9, tpidr_el1
    adrp    x10, HOSTILE_EL0_SP
    add     x10, x10, :lo12:HOSTILE_EL0_SP
    ldr     x11, [x10, x9, lsl #3]
    mov     sp, x11
    ldp     x19, x20, [sp, #16]
    ldp     x21, x22, [sp, #32]
    ldp     x23, x24, [sp, #48]
    ldp     x25, x26, [sp, #64]
    ldp     x27, x28, [sp, #80]
    ldp     x29, x30, [sp], #96
    ret
"#
);

extern "C" {
    fn hostile_el0_enter(entry: u64, x0: u64, x1: u64, x2: u64);
    fn hostile_el0_resume();
}

/// Called by the vectors first: if this CPU has a probe armed, records
/// the exception and resumes after the probed instruction (EL1) or back
/// in [`run_el0`] (EL0). Returns false for everything else.
pub fn take(me: usize, vector: u64, frame: &mut crate::vectors::Frame) -> bool {
    if me >= MAX_CPUS || !ARMED[me].load(Ordering::Relaxed) {
        return false;
    }
    let kind = match vector {
        // Synchronous, current EL with SP_ELx: the EL1 slot.
        4 => {
            frame.elr += 4;
            1
        }
        // Synchronous from EL0 (AArch64): the stub's SVC or its fault.
        8 => {
            let ec = (frame.esr >> 26) & 0x3f;
            T_X1[me].store(frame.x[1], Ordering::Relaxed);
            frame.elr = hostile_el0_resume as *const () as usize as u64;
            frame.spsr = 0x3c5;
            if ec == rules::ec::SVC64 as u64 {
                2
            } else {
                1
            }
        }
        // SError/FIQ while probing: never an answer to an access.
        6 | 7 => 3,
        10 | 11 => {
            frame.elr = hostile_el0_resume as *const () as usize as u64;
            frame.spsr = 0x3c5;
            3
        }
        _ => return false,
    };
    ARMED[me].store(false, Ordering::Relaxed);
    T_ESR[me].store(frame.esr, Ordering::Relaxed);
    T_FAR[me].store(frame.far, Ordering::Relaxed);
    T_VEC[me].store(vector, Ordering::Relaxed);
    TAKEN[me].store(kind, Ordering::Relaxed);
    true
}

/// Makes freshly written instructions in `[start, start + len)` visible
/// to instruction fetch on every CPU (Arm ARM B2.4.4: clean to PoU,
/// invalidate the instruction cache, synchronize).
fn sync_icache(start: u64, len: u64) {
    let mut a = start & !63;
    while a < start + len {
        // SAFETY: cleans one line of the code table to the PoU.
        unsafe { asm!("dc cvau, {a}", a = in(reg) a, options(nostack, preserves_flags)) };
        a += 64;
    }
    // SAFETY: barriers and an instruction cache invalidation.
    unsafe {
        asm!(
            "dsb ish",
            "ic ialluis",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

/// Writes both code tables (boot vCPU, before any other vCPU runs one).
fn write_code_tables(el0_pa: u64) {
    for i in 0..slots::COUNT {
        let insn = slots::insn(i) as u64;
        EL1_CODE.0[i].store(insn | (enc::RET as u64) << 32, Ordering::Relaxed);
        // SAFETY: slot i of the EL0 table, in the EL0 code block of guest
        // RAM that nothing else uses, written through the identity map.
        unsafe {
            core::ptr::write_volatile(
                (el0_pa + 8 * i as u64) as *mut u64,
                insn | (enc::SVC0 as u64) << 32,
            )
        };
    }
    let len = 8 * slots::COUNT as u64;
    sync_icache(EL1_CODE.0.as_ptr() as u64, len);
    sync_icache(el0_pa, len);
}

/// The slot of a generated instruction. Every generator draws from the
/// table's instructions; a miss is a bug in this file, reported as such.
fn slot_of(me: usize, insn: u32) -> Option<usize> {
    let s = slots::of(insn);
    if s.is_none() {
        record_bad(Bad {
            cpu: me,
            op: Op::Idle,
            what: insn as u64,
            esr: 0,
            value: 0,
            reason: "guest-test bug: an instruction without a slot",
        });
    }
    s
}

fn answer(me: usize, completed_el0: bool) -> Answer {
    match TAKEN[me].load(Ordering::Relaxed) {
        0 => Answer::Done,
        2 if completed_el0 => Answer::Done,
        3 => Answer::Async {
            vector: T_VEC[me].load(Ordering::Relaxed),
        },
        _ => Answer::Exception {
            esr: T_ESR[me].load(Ordering::Relaxed),
            far: T_FAR[me].load(Ordering::Relaxed),
        },
    }
}

/// Runs `insn` at EL1 with x0..x3 = `regs`; returns the answer and x0..x3
/// afterwards.
fn run_el1(me: usize, insn: u32, regs: [u64; 4]) -> (Answer, [u64; 4]) {
    let Some(i) = slot_of(me, insn) else {
        return (Answer::Done, regs);
    };
    let addr = EL1_CODE.0[i].as_ptr() as u64;
    TAKEN[me].store(0, Ordering::Relaxed);
    ARMED[me].store(true, Ordering::Relaxed);
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    let (mut r0, mut r1, mut r2, mut r3) = (regs[0], regs[1], regs[2], regs[3]);
    // SAFETY: the slot holds one generated instruction and RET. The
    // generators only draw instructions that cannot change the guest's
    // own translation, vectors or stack: accesses to MMIO or to memory
    // outside the guest's RAM, hypercalls, MRS anywhere but the interrupt
    // acknowledge registers, MSR only to the trapping families. If it
    // faults, the vectors skip it (`take`).
    unsafe {
        asm!(
            "blr {s}",
            s = in(reg) addr,
            inout("x0") r0,
            inout("x1") r1,
            inout("x2") r2,
            inout("x3") r3,
            clobber_abi("C"),
        )
    };
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    ARMED[me].store(false, Ordering::Relaxed);
    (answer(me, false), [r0, r1, r2, r3])
}

/// Runs `insn` at EL0 with x0..x2 = `regs`; returns the answer and the
/// stub's x1.
fn run_el0(me: usize, insn: u32, regs: [u64; 3]) -> (Answer, u64) {
    let Some(i) = slot_of(me, insn) else {
        return (Answer::Done, 0);
    };
    let daif: u64;
    // SAFETY: reads PSTATE.DAIF.
    unsafe { asm!("mrs {}, daif", out(reg) daif, options(nomem, nostack, preserves_flags)) };
    TAKEN[me].store(0, Ordering::Relaxed);
    ARMED[me].store(true, Ordering::Relaxed);
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    // SAFETY: drops to EL0 at the slot's stub in the EL0 code table (the
    // only memory EL0 may execute), which ends with SVC; the vectors bring
    // the CPU back to `hostile_el0_resume`, which restores the
    // callee-saved registers and the stack.
    unsafe { hostile_el0_enter(EL0_VA + 8 * i as u64, regs[0], regs[1], regs[2]) };
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    ARMED[me].store(false, Ordering::Relaxed);
    // SAFETY: restores PSTATE.DAIF as it was before the stub.
    unsafe { asm!("msr daif, {}", in(reg) daif, options(nomem, nostack, preserves_flags)) };
    if TAKEN[me].load(Ordering::Relaxed) == 0 {
        // Cannot happen: the stub always ends in an exception.
        return (Answer::Async { vector: 99 }, 0);
    }
    (answer(me, true), T_X1[me].load(Ordering::Relaxed))
}

// ---------------------------------------------------------------------------
// Shared state and results.

static SEED: AtomicU64 = AtomicU64::new(1);
static TARGET: AtomicU64 = AtomicU64::new(0);
/// Secondaries that start (again) join the storm.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Operations claimed (may run past TARGET during the reset race).
static CLAIMED: AtomicU64 = AtomicU64::new(0);
/// Counted operations finished.
static COMPLETED: AtomicU64 = AtomicU64::new(0);
static COUNTS: [AtomicU64; CLASSES] = [const { AtomicU64::new(0) }; CLASSES];
static UNDEFINED: AtomicU64 = AtomicU64::new(0);
static EL0_OPS: AtomicU64 = AtomicU64::new(0);
static CPU_OFFS: AtomicU64 = AtomicU64::new(0);
static CPU_ON_STARTS: AtomicU64 = AtomicU64::new(0);
/// Per CPU: online in the storm, counter at the last operation, the
/// operation it is in, times started.
static ONLINE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static BEAT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static CURRENT_OP: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
static STARTS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static HANG_REPORTED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Per CPU: the running operation is past the count (the reset race):
/// its answer is checked but not counted.
static LATE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Per CPU: the running operation was settled (else it was skipped: an
/// address or register no operation may touch came up).
static SETTLED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static SKIPPED: AtomicU64 = AtomicU64::new(0);
/// Set while the boot vCPU prints the result: the other vCPUs hold their
/// operations (whose log lines could land in the middle of a result line)
/// until the reset race starts.
static QUIET: AtomicBool = AtomicBool::new(false);

/// One undefined answer, kept for the report.
#[derive(Clone, Copy)]
struct Bad {
    cpu: usize,
    op: Op,
    what: u64,
    esr: u64,
    value: u64,
    reason: &'static str,
}

const KEPT: usize = 16;
static BAD: spin::Mutex<[Option<Bad>; KEPT]> = spin::Mutex::new([None; KEPT]);

/// What an operation did, for the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
enum Op {
    Idle = 0,
    MmioEl1,
    PairEl1,
    CacheEl1,
    ForeignRam,
    SysregEl1,
    Hypercall,
    Sgi,
    CpuOn,
    CpuOff,
    AffinityInfo,
    MmioEl0,
    PairEl0,
    CacheEl0,
    OtherEl0,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Idle => "idle",
            Op::MmioEl1 => "mmio",
            Op::PairEl1 => "ldp/stp",
            Op::CacheEl1 => "dc",
            Op::ForeignRam => "foreign-ram",
            Op::SysregEl1 => "sysreg",
            Op::Hypercall => "hvc/smc",
            Op::Sgi => "sgi",
            Op::CpuOn => "cpu-on",
            Op::CpuOff => "cpu-off",
            Op::AffinityInfo => "affinity-info",
            Op::MmioEl0 => "el0-mmio",
            Op::PairEl0 => "el0-ldp/stp",
            Op::CacheEl0 => "el0-dc",
            Op::OtherEl0 => "el0-insn",
        }
    }

    fn from_usize(v: usize) -> Op {
        const ALL: [Op; 15] = [
            Op::Idle,
            Op::MmioEl1,
            Op::PairEl1,
            Op::CacheEl1,
            Op::ForeignRam,
            Op::SysregEl1,
            Op::Hypercall,
            Op::Sgi,
            Op::CpuOn,
            Op::CpuOff,
            Op::AffinityInfo,
            Op::MmioEl0,
            Op::PairEl0,
            Op::CacheEl0,
            Op::OtherEl0,
        ];
        ALL.get(v).copied().unwrap_or(Op::Idle)
    }
}

fn record_bad(b: Bad) {
    UNDEFINED.fetch_add(1, Ordering::Relaxed);
    let mut kept = BAD.lock();
    if let Some(slot) = kept.iter_mut().find(|s| s.is_none()) {
        *slot = Some(b);
    }
}

/// Counts a verdict; `what` and `value` describe the operation.
fn settle(me: usize, op: Op, what: u64, value: u64, answer: Answer, verdict: rules::Verdict) {
    SETTLED[me].store(true, Ordering::Relaxed);
    match verdict {
        Ok(class) => {
            if !LATE[me].load(Ordering::Relaxed) {
                COUNTS[class as usize].fetch_add(1, Ordering::Relaxed);
            }
        }
        Err(reason) => {
            let esr = match answer {
                Answer::Exception { esr, .. } => esr,
                Answer::Async { vector } => 0xa5a5_0000 | vector,
                Answer::Done => 0,
            };
            record_bad(Bad {
                cpu: me,
                op,
                what,
                esr,
                value,
                reason,
            });
        }
    }
}

// ---------------------------------------------------------------------------
// The platform, as the operations see it.

#[derive(Clone, Copy)]
struct Map {
    ram: dt::Range,
    gicd: dt::Range,
    gicr: dt::Range,
    uart: dt::Range,
    cpus: usize,
    /// An 8-byte-aligned buffer of printable junk in RAM, for the console
    /// hypercall.
    junk: u64,
}

static JUNK: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

fn map() -> Map {
    let p = dt::platform();
    let none = dt::Range { base: 0, size: 0 };
    Map {
        ram: p.ram,
        gicd: p.gicd.unwrap_or(none),
        gicr: p.gicr.unwrap_or(none),
        uart: p.pl011.map_or(none, |b| dt::Range {
            base: b,
            size: PAGE,
        }),
        cpus: p.cpus.count(),
        junk: JUNK.as_ptr() as u64,
    }
}

impl Map {
    fn is_device(&self, a: u64) -> bool {
        self.gicd.contains(a) || self.gicr.contains(a) || self.uart.contains(a)
    }

    /// What lies behind `a` for an access from `el0`; None for addresses
    /// no operation may touch (the guest's own RAM and the EL0 code alias).
    fn target(&self, a: u64, el0: bool) -> Option<Target> {
        if self.ram.contains(a) || (EL0_VA..EL0_VA + MIB2).contains(&a) {
            return None;
        }
        if self.is_device(a) {
            Some(Target::Device)
        } else if el0 && (GIB..4 * GIB).contains(&a) {
            Some(Target::El0Forbidden)
        } else {
            Some(Target::Nothing)
        }
    }

    /// A random address for an access of `size` bytes, mostly aligned.
    fn address(&self, rng: &mut Rng, size: u64) -> u64 {
        let a = match rng.below(10) {
            0 | 1 => self.gicd.base + rng.below(self.gicd.size.max(1)),
            2 | 3 => self.gicr.base + rng.below(self.gicr.size.max(1)),
            4 => self.uart.base + rng.below(0x1000),
            // The MMIO block around the GIC and the rest of the first GiB.
            5 => 0x0800_0000 + rng.below(0x0200_0000),
            6 => rng.below(GIB),
            // Host RAM beyond this VM's: other VMs and the hypervisor.
            7 => self.ram.end() + rng.below((3 * GIB).saturating_sub(self.ram.end()).max(1)),
            // Up to the 36-bit PARange the guest is shown, then beyond.
            8 => 4 * GIB + rng.below(60 * GIB),
            _ => rng.below(512 * GIB),
        };
        if rng.chance(1, 16) {
            a
        } else {
            a & !(size - 1)
        }
    }
}

// ---------------------------------------------------------------------------
// The operations.

fn random_value(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => 0,
        1 => u64::MAX,
        2 => rng.next() & 0xffff_ffff,
        _ => rng.next(),
    }
}

fn size_of(rng: &mut Rng) -> u8 {
    rng.pick(&[1u8, 2, 4, 8])
}

/// A single load or store of 1, 2, 4 or 8 bytes, at EL1 or EL0.
fn op_mmio(me: usize, rng: &mut Rng, m: &Map, el0: bool) {
    let size = size_of(rng);
    let a = m.address(rng, size as u64);
    let Some(target) = m.target(a, el0) else {
        return;
    };
    let (insn, access) = match rng.below(8) {
        0..=2 => (enc::load(size), Access::Load),
        3 if size < 8 => (enc::load_signed(size), Access::Load),
        3 => (enc::load(size), Access::Load),
        // Writes to the PL011's data register print: keep them rare.
        _ if m.uart.contains(a) && a & 0xfff < 4 && !rng.chance(1, 8) => {
            (enc::load(size), Access::Load)
        }
        _ => (enc::store(size), Access::Store),
    };
    let v = random_value(rng);
    let (ans, x1) = if el0 {
        EL0_OPS.fetch_add(1, Ordering::Relaxed);
        run_el0(me, insn, [a, v, 0])
    } else {
        let (ans, r) = run_el1(me, insn, [a, v, 0, 0]);
        (ans, r[1])
    };
    let op = if el0 { Op::MmioEl0 } else { Op::MmioEl1 };
    settle(me, op, a, x1, ans, rules::memory(target, access, el0, ans));
}

/// LDP/STP (32- or 64-bit pairs): no valid syndrome, so the hypervisor
/// cannot emulate them.
fn op_pair(me: usize, rng: &mut Rng, m: &Map, el0: bool) {
    let wide = rng.chance(1, 2);
    let a = m.address(rng, if wide { 16 } else { 8 });
    let Some(target) = m.target(a, el0) else {
        return;
    };
    let store = rng.chance(1, 2);
    let (insn, access) = if store {
        (enc::stp(wide), Access::StorePair)
    } else {
        (enc::ldp(wide), Access::LoadPair)
    };
    let (v1, v2) = (random_value(rng), random_value(rng));
    let ans = if el0 {
        EL0_OPS.fetch_add(1, Ordering::Relaxed);
        run_el0(me, insn, [a, v1, v2]).0
    } else {
        run_el1(me, insn, [a, v1, v2, 0]).0
    };
    let op = if el0 { Op::PairEl0 } else { Op::PairEl1 };
    settle(me, op, a, 0, ans, rules::memory(target, access, el0, ans));
}

/// DC CIVAC / CVAC on MMIO or on nothing.
fn op_cache(me: usize, rng: &mut Rng, m: &Map, el0: bool) {
    let a = m.address(rng, 64);
    let Some(target) = m.target(a, el0) else {
        return;
    };
    let insn = if rng.chance(3, 4) {
        enc::DC_CIVAC
    } else {
        enc::DC_CVAC
    };
    let ans = if el0 {
        EL0_OPS.fetch_add(1, Ordering::Relaxed);
        run_el0(me, insn, [a, 0, 0]).0
    } else {
        run_el1(me, insn, [a, 0, 0, 0]).0
    };
    let op = if el0 { Op::CacheEl0 } else { Op::CacheEl1 };
    settle(
        me,
        op,
        a,
        0,
        ans,
        rules::memory(target, Access::CacheMaintenance, el0, ans),
    );
}

/// An 8-byte load at an IPA in the host RAM that other VMs and the
/// hypervisor use (but not this VM): it must abort, never return a value.
fn op_foreign_ram(me: usize, rng: &mut Rng, m: &Map) {
    // QEMU virt's RAM starts at 1 GiB; the machine has up to 2 GiB.
    let a = match rng.below(3) {
        // The start of host RAM: where the hypervisor's image lies.
        0 => GIB + rng.below(16 << 20),
        1 => m.ram.end() + rng.below(GIB),
        _ => 2 * GIB + rng.below(GIB),
    } & !7;
    let Some(target) = m.target(a, false) else {
        return;
    };
    let (ans, r) = run_el1(me, enc::load(8), [a, 0, 0, 0]);
    settle(
        me,
        Op::ForeignRam,
        a,
        r[1],
        ans,
        rules::memory(target, Access::Load, false, ans),
    );
}

use enc::SysReg;

/// ICC_IAR0/IAR1/NMIAR1_EL1: reading them acknowledges an interrupt, which
/// would leave it active for good. Never read at random.
fn has_read_side_effect(r: SysReg) -> bool {
    matches!(r, (3, 0, 12, 8, 0) | (3, 0, 12, 12, 0) | (3, 0, 12, 9, 5))
}

/// A register of the trapping families, whether writing it is safe for
/// the guest itself, and the value nmivisor documents for a read.
fn trapping_sysreg(rng: &mut Rng) -> (SysReg, bool, Option<u64>) {
    let b = |n: u64| -> u8 { n as u8 };
    match rng.below(12) {
        // Feature ID space (TID3); read-only.
        0 | 1 => ((3, 0, 0, b(rng.below(8)), b(rng.below(8))), true, None),
        // IMPLEMENTATION DEFINED (TIDCP): CRn 11 and 15.
        2 | 3 => (
            (
                3,
                b(rng.below(8)),
                rng.pick(&[11u8, 15]),
                b(rng.below(16)),
                b(rng.below(8)),
            ),
            true,
            None,
        ),
        // RAS error records (TERR): RAZ/WI where nmivisor answers them.
        4 => {
            let r = match rng.below(4) {
                0 => (3, 0, 5, 3, b(rng.below(2))),
                1 => (3, 0, 5, 4, b(rng.below(8))),
                2 => (3, 0, 5, 5, b(rng.below(4))),
                _ => (3, 0, 12, 1, 1), // DISR_EL1
            };
            let expect = (r.2 == 5).then_some(0);
            (r, true, expect)
        }
        // LORegions (TLOR).
        5 => ((3, 0, 10, 4, rng.pick(&[0u8, 1, 2, 3, 7])), true, None),
        // PAuth keys (the guest's own when PAuth is shown; guest-test
        // signs nothing with them).
        6 => {
            let r = rng.pick(&[(2u8, 1u8), (2, 2), (2, 3)]);
            ((3, 0, r.0, r.1, b(rng.below(4))), true, None)
        }
        // ZCR_EL1, ICC_SRE_EL1 (reads 0x7), ACTLR_EL1 (RAZ/WI).
        7 => rng.pick(&[
            ((3, 0, 1, 2, 0), true, None),
            ((3, 0, 12, 12, 5), true, Some(0b111)),
            ((3, 0, 1, 0, 1), true, Some(0)),
        ]),
        // Debug: breakpoints, watchpoints, MDSCR, the OS lock, MDRAR
        // (TDRA: reads 0), claim tags, DCC.
        8 | 9 => {
            let r = match rng.below(6) {
                0 | 1 => (2, 0, 0, b(rng.below(16)), b(4 + rng.below(4))),
                2 => rng.pick(&[
                    (2u8, 0u8, 0u8, 2u8, 2u8),
                    (2, 0, 1, 0, 4),
                    (2, 0, 1, 1, 4),
                    (2, 0, 1, 3, 4),
                    (2, 0, 1, 4, 4),
                ]),
                3 => rng.pick(&[
                    (2u8, 0u8, 7u8, 8u8, 6u8),
                    (2, 0, 7, 9, 6),
                    (2, 0, 7, 14, 6),
                    (2, 0, 0, 2, 0),
                ]),
                4 => rng.pick(&[
                    (2u8, 0u8, 0u8, 0u8, 2u8),
                    (2, 0, 0, 3, 2),
                    (2, 0, 0, 6, 2),
                    (2, 3, 0, 1, 0),
                    (2, 3, 0, 4, 0),
                ]),
                _ => (2, 0, 1, 0, 0),
            };
            let expect = (r == (2, 0, 1, 0, 0)).then_some(0);
            (r, true, expect)
        }
        // Anywhere in the op0 = 2/3 space: read only.
        _ => {
            let r = (
                2 + b(rng.below(2)),
                b(rng.below(8)),
                b(rng.below(16)),
                b(rng.below(16)),
                b(rng.below(8)),
            );
            (r, false, None)
        }
    }
}

fn op_sysreg_el1(me: usize, rng: &mut Rng) {
    let (r, writable, expect) = trapping_sysreg(rng);
    if has_read_side_effect(r) {
        return;
    }
    let read = !writable || rng.chance(1, 2);
    let v = random_value(rng);
    let insn = if read { enc::mrs_x1(r) } else { enc::msr_x1(r) };
    let (ans, regs) = run_el1(me, insn, [0, v, 0, 0]);
    let enc_word = (r.0 as u64) << 32
        | (r.1 as u64) << 24
        | (r.2 as u64) << 16
        | (r.3 as u64) << 8
        | r.4 as u64;
    settle(
        me,
        Op::SysregEl1,
        enc_word | (read as u64) << 40,
        regs[1],
        ans,
        rules::sysreg_el1(r, read, regs[1], expect, ans),
    );
}

/// A random SMCCC function ID; PSCI IDs are limited to the safe numbers.
fn random_fid(rng: &mut Rng) -> u32 {
    let fid = match rng.below(7) {
        0 => rng.next() as u32,
        1 => {
            let any = rng.next() as u32 & 0xffff;
            0x8000_0000 | rng.pick(&[0u32, 1, 2, 3, 0x3fff, 0x7fff, 0x8000, any])
        }
        2 => rng.pick(&[
            0xc600_0000u32,
            0xc600_0001,
            0xc600_0002,
            0x8600_0001,
            0x4600_0002,
        ]),
        3 => 0xc600_0100 + rng.below(0x100) as u32,
        4 => rng.pick(&[0x8400_0000u32, 0xc400_0000]) | rng.pick(&rules::SAFE_PSCI_NUMBERS),
        5 => {
            (rng.pick(&[0x80u32, 0xc0, 0x00, 0x40]) | rng.below(64) as u32) << 24
                | (rng.next() as u32 & 0xffff)
        }
        _ => 0xc500_0000 | (rng.next() as u32 & 0xffff),
    };
    if rules::is_psci(fid) && !rules::SAFE_PSCI_NUMBERS.contains(&(fid & 0x1f)) {
        fid & !0x1f
    } else {
        fid
    }
}

fn op_hypercall(me: usize, rng: &mut Rng, m: &Map) {
    let fid = random_fid(rng);
    let mut args = [random_value(rng), random_value(rng), random_value(rng)];
    match fid {
        // Console writes: mostly refused; rarely a few junk bytes.
        0xc600_0001 => {
            args = if rng.chance(1, 16) {
                [m.junk + 8 * rng.below(64), 8, 0]
            } else {
                let any = rng.next();
                [
                    rng.pick(&[0, m.ram.end() - 8, any, m.junk]),
                    257 + rng.below(1 << 20),
                    0,
                ]
            };
        }
        0xc600_0100 => {
            args = [
                rng.below(m.cpus as u64 + 2),
                rng.below(1100),
                rng.below(256),
            ]
        }
        _ => {
            if rng.chance(1, 4) {
                args[0] = m.ram.base + rng.below(m.ram.size);
            }
        }
    }
    let imm = if rng.chance(1, 4) {
        rng.below(256) as u16
    } else {
        0
    };
    let insn = if rng.chance(1, 2) {
        enc::hvc(imm)
    } else {
        enc::smc(imm)
    };
    let (ans, r) = run_el1(me, insn, [fid as u64, args[0], args[1], args[2]]);
    let verdict = match ans {
        Answer::Done => rules::smccc(fid, args, r[0], (m.ram.base, m.ram.size)),
        _ => Err("an exception for a hypercall from EL1"),
    };
    settle(
        me,
        Op::Hypercall,
        fid as u64 | (imm as u64) << 32,
        r[0],
        ans,
        verdict,
    );
}

/// A write to ICC_SGI1R/ASGI1R/SGI0R_EL1: to listed vCPUs or (IRM=1) to
/// all others, mostly at the SGIs that are NMIs.
fn op_sgi(me: usize, rng: &mut Rng) {
    let intid = if rng.chance(2, 3) {
        8 + rng.below(8)
    } else {
        rng.below(16)
    };
    let mut v = (intid << 24) | (rng.next() & 0xffff);
    if rng.chance(1, 3) {
        v |= 1 << 40;
    }
    if rng.chance(1, 4) {
        v |= rng.next() & (0xff << 16 | 0xff << 32 | 0xf << 44 | 0xff << 48);
    }
    let reg: SysReg = match rng.below(6) {
        0 => (3, 0, 12, 11, 6),
        1 => (3, 0, 12, 11, 7),
        _ => (3, 0, 12, 11, 5),
    };
    let (ans, _) = run_el1(me, enc::msr_x1(reg), [0, v, 0, 0]);
    settle(me, Op::Sgi, v, 0, ans, rules::must_complete(ans));
}

/// PSCI races: CPU_ON of a random vCPU (or of no vCPU, or at a bad entry
/// point), AFFINITY_INFO, and CPU_OFF of a secondary itself.
fn op_psci(me: usize, rng: &mut Rng, m: &Map) {
    let p = dt::platform();
    match rng.below(8) {
        0..=3 => {
            let t = rng.below(m.cpus as u64) as usize;
            let mpidr_valid = !rng.chance(1, 8);
            let mpidr = if mpidr_valid {
                p.cpus.mpidr(t)
            } else {
                (1 + rng.below(200)) << 8 | rng.below(256)
            };
            let good_entry = crate::entry::secondary_entry_address();
            let entry_valid = !rng.chance(1, 8);
            let entry = if entry_valid {
                good_entry
            } else if rng.chance(1, 2) {
                good_entry + 2
            } else {
                rng.pick(&[0x1000, m.ram.end(), !3])
            };
            let x0 = psci::call(psci::CPU_ON_64, mpidr, entry, t as u64);
            if x0 == 0 {
                CPU_ON_STARTS.fetch_add(1, Ordering::Relaxed);
            }
            settle(
                me,
                Op::CpuOn,
                mpidr,
                x0,
                Answer::Done,
                rules::cpu_on(mpidr_valid, entry_valid, x0),
            );
        }
        4..=6 => {
            let mpidr = if rng.chance(3, 4) {
                p.cpus.mpidr(rng.below(m.cpus as u64) as usize)
            } else {
                rng.next()
            };
            let level = rng.below(4);
            let fid = psci::AFFINITY_INFO_64;
            let x0 = psci::call(fid, mpidr, level, 0);
            settle(
                me,
                Op::AffinityInfo,
                mpidr,
                x0,
                Answer::Done,
                rules::smccc(fid, [mpidr, level, 0], x0, (m.ram.base, m.ram.size)),
            );
        }
        _ if me != 0 => {
            // Counted before the call: a successful CPU_OFF does not return.
            SETTLED[me].store(true, Ordering::Relaxed);
            COUNTS[Class::SmcccOk as usize].fetch_add(1, Ordering::Relaxed);
            CPU_OFFS.fetch_add(1, Ordering::Relaxed);
            ONLINE[me].store(false, Ordering::Release);
            COMPLETED.fetch_add(1, Ordering::Release);
            let ret = psci::cpu_off();
            // Still here: CPU_OFF has no failure for a vCPU of a VM.
            ONLINE[me].store(true, Ordering::Release);
            COUNTS[Class::SmcccOk as usize].fetch_sub(1, Ordering::Relaxed);
            COMPLETED.fetch_sub(1, Ordering::Relaxed);
            settle(
                me,
                Op::CpuOff,
                0,
                ret as u64,
                Answer::Done,
                Err("CPU_OFF returned"),
            );
        }
        _ => {}
    }
}

/// Anything else from EL0: MRS/MSR anywhere (but the PSTATE/FP registers
/// EL0 may write), HVC/SMC, WFI, the SGI registers.
fn op_other_el0(me: usize, rng: &mut Rng) {
    let insn = match rng.below(8) {
        0..=3 => {
            let r: SysReg = (
                2 + rng.below(2) as u8,
                rng.below(8) as u8,
                rng.below(16) as u8,
                rng.below(16) as u8,
                rng.below(8) as u8,
            );
            let writes_pstate_or_fp = r.0 == 3 && r.1 == 3 && r.2 == 4;
            if has_read_side_effect(r) {
                return;
            }
            if rng.chance(1, 2) && !writes_pstate_or_fp {
                enc::msr_x1(r)
            } else {
                enc::mrs_x1(r)
            }
        }
        4 => enc::hvc(rng.below(256) as u16),
        5 => enc::smc(rng.below(256) as u16),
        6 => enc::WFI,
        _ => enc::msr_x1((3, 0, 12, 11, 5)),
    };
    EL0_OPS.fetch_add(1, Ordering::Relaxed);
    let (ans, x1) = run_el0(me, insn, [0, random_value(rng), 0]);
    settle(
        me,
        Op::OtherEl0,
        insn as u64,
        x1,
        ans,
        rules::el0_other(ans),
    );
}

fn one_op(me: usize, rng: &mut Rng, m: &Map) {
    let roll = rng.below(100);
    let op = match roll {
        0..=21 => Op::MmioEl1,
        22..=27 => Op::PairEl1,
        28..=31 => Op::CacheEl1,
        32..=37 => Op::ForeignRam,
        38..=55 => Op::SysregEl1,
        56..=67 => Op::Hypercall,
        68..=75 => Op::Sgi,
        76..=79 => Op::CpuOn,
        80..=87 => Op::MmioEl0,
        88..=89 => Op::PairEl0,
        90..=91 => Op::CacheEl0,
        _ => Op::OtherEl0,
    };
    CURRENT_OP[me].store(op as usize, Ordering::Relaxed);
    SETTLED[me].store(false, Ordering::Relaxed);
    match op {
        Op::MmioEl1 => op_mmio(me, rng, m, false),
        Op::PairEl1 => op_pair(me, rng, m, false),
        Op::CacheEl1 => op_cache(me, rng, m, false),
        Op::ForeignRam => op_foreign_ram(me, rng, m),
        Op::SysregEl1 => op_sysreg_el1(me, rng),
        Op::Hypercall => op_hypercall(me, rng, m),
        Op::Sgi => op_sgi(me, rng),
        Op::CpuOn => op_psci(me, rng, m),
        Op::MmioEl0 => op_mmio(me, rng, m, true),
        Op::PairEl0 => op_pair(me, rng, m, true),
        Op::CacheEl0 => op_cache(me, rng, m, true),
        _ => op_other_el0(me, rng),
    }
    CURRENT_OP[me].store(Op::Idle as usize, Ordering::Relaxed);
    if !SETTLED[me].load(Ordering::Relaxed) && !LATE[me].load(Ordering::Relaxed) {
        SKIPPED.fetch_add(1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------
// Per-CPU setup, upkeep and the storm loop.

/// Priority of the SGIs that are NMIs (8-15) and of the others (0-7).
const SGI_NMI_MASK: u32 = 0xff00;

/// This CPU's redistributor: SGIs 8-15 at NMI priority, 0-7 normal, all
/// enabled, PPIs off; PMR "off" so that only the NMIs are taken.
fn gic_setup(me: usize) {
    let Ok(g) = gic::get() else { return };
    if me == 0 {
        let _ = g.init_distributor();
    }
    if g.init_this_cpu().is_err() {
        return;
    }
    for intid in 0..16 {
        let irq = g.irq(intid);
        irq.set_priority(if SGI_NMI_MASK & (1 << intid) != 0 {
            gic::PRIO_NMI
        } else {
            gic::PRIO_IRQ
        });
        irq.enable();
    }
    gic::set_pmr(gic::PMR_OFF);
}

/// Undoes what random writes may have left that would drown the guest:
/// the PL011's interrupt mask, enabled SPIs and PPIs (a level that stays
/// high is taken forever), this CPU's SGI setup, and the debug state.
fn upkeep(me: usize, m: &Map) {
    crate::irq::disable();
    if let Ok(g) = gic::get() {
        if me == 0 {
            if m.uart.size != 0 {
                gic::wr32(m.uart.base + 0x38, 0); // UARTIMSC
            }
            let lines = (gic::rd32(g.gicd + gic::GICD_TYPER) & 0x1f) + 1;
            for w in 1..lines {
                gic::wr32(g.gicd + 0x180 + 4 * w as u64, u32::MAX); // ICENABLER
            }
        }
        let rd = g.redistributor(cpu::mpidr());
        if let Some(rd) = rd {
            gic::wr32(rd + 0x10000 + 0x180, 0xffff_0000); // PPIs off
        }
        for intid in 8..16 {
            let irq = g.irq(intid);
            irq.set_priority(gic::PRIO_NMI);
            irq.enable();
        }
        gic::set_pmr(gic::PMR_OFF);
    }
    // SAFETY: the guest's own debug controls back to off: no breakpoint,
    // watchpoint or step from EL0 outlives a few hundred operations.
    unsafe {
        asm!(
            "msr mdscr_el1, xzr",
            "isb",
            options(nomem, nostack, preserves_flags)
        )
    };
    crate::irq::reset_log(me);
    crate::irq::enable();
}

/// No progress from an online CPU for this long is a hang.
const HANG_MS: u64 = 10_000;

fn check_hangs(me: usize) {
    let now = cpu::counter();
    let limit = cpu::ticks_from_ms(HANG_MS);
    let watched: &[usize] = if me == 0 {
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    } else {
        &[0]
    };
    for &c in watched {
        if c >= dt::platform().cpus.count() || !ONLINE[c].load(Ordering::Acquire) {
            continue;
        }
        let beat = BEAT[c].load(Ordering::Acquire);
        if now.saturating_sub(beat) > limit && !HANG_REPORTED[c].swap(true, Ordering::Relaxed) {
            let op = Op::from_usize(CURRENT_OP[c].load(Ordering::Relaxed));
            println!(
                "hostile: cpu {c} made no progress for {HANG_MS} ms (in op {})",
                op.name()
            );
            record_bad(Bad {
                cpu: c,
                op,
                what: 0,
                esr: 0,
                value: 0,
                reason: "the vCPU hangs",
            });
        }
    }
}

/// The storm on this CPU, until the count is reached (boot vCPU) or the
/// system resets (the others).
fn storm(me: usize) {
    let m = map();
    install_tables();
    gic_setup(me);
    let starts = STARTS[me].fetch_add(1, Ordering::Relaxed);
    let seed = SEED.load(Ordering::Relaxed);
    let mut rng =
        Rng::new(seed ^ (me as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ starts << 48);
    let target = TARGET.load(Ordering::Relaxed);
    BEAT[me].store(cpu::counter(), Ordering::Release);
    HANG_REPORTED[me].store(false, Ordering::Relaxed);
    ONLINE[me].store(true, Ordering::Release);
    crate::irq::enable();
    let mut mine: u64 = 0;
    let mut progress = 0;
    loop {
        let n = CLAIMED.fetch_add(1, Ordering::AcqRel);
        if n >= target {
            if me == 0 {
                break;
            }
            LATE[me].store(true, Ordering::Relaxed);
            while QUIET.load(Ordering::Acquire) {
                cpu::relax();
            }
        }
        BEAT[me].store(cpu::counter(), Ordering::Release);
        one_op(me, &mut rng, &m);
        if n < target {
            COMPLETED.fetch_add(1, Ordering::Release);
        }
        mine += 1;
        if mine.is_multiple_of(256) {
            upkeep(me, &m);
        }
        if mine.is_multiple_of(1024) {
            check_hangs(me);
            if me == 0 {
                let done = COMPLETED.load(Ordering::Relaxed) / 100_000;
                if done > progress {
                    progress = done;
                    println!("hostile: progress {} ops", done * 100_000);
                }
            }
        }
    }
    crate::irq::disable();
}

/// Entry of a secondary CPU in hostile mode (from `secondary_main`): the
/// storm until the reset.
pub fn joins() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

pub fn secondary(me: usize) -> ! {
    storm(me);
    loop {
        cpu::wait_for_event();
    }
}

// ---------------------------------------------------------------------------
// The boot vCPU.

fn wait_for_console_key() {
    let Some(base) = dt::platform().pl011 else {
        return;
    };
    println!("hostile: waiting for a byte on the console (up to 600 s)");
    // UARTFR.RXFE: receive FIFO empty.
    let got = cpu::wait_ms(600_000, || gic::rd32(base + 0x18) & (1 << 4) == 0);
    if got {
        let _ = gic::rd32(base);
        println!("hostile: console input received, starting");
    } else {
        println!("hostile: no console input within 600 s, starting anyway");
    }
}

/// `guest-test.hostile`: never returns.
pub fn run() -> ! {
    let p = dt::platform();
    let args = p.bootargs.unwrap_or("");
    let marker = crate::modes::marker_address().ok();
    if let Some(at) = marker {
        // SAFETY: the marker word (see modes::marker_address).
        if unsafe { core::ptr::read_volatile(at as *const u64) } == RESET_MAGIC {
            crate::modes::set_marker(at, 0);
            println!("hostile: back after SYSTEM_RESET; powering off");
            psci::system_off();
        }
    }
    if !p.nmivisor {
        println!("hostile: needs nmivisor (its device tree says nmivisor,guest)");
        psci::system_off();
    }
    let seed = rules::arg_u64(args, "seed").unwrap_or(1);
    let target = rules::arg_u64(args, "ops").unwrap_or(100_000);
    SEED.store(seed, Ordering::Relaxed);
    TARGET.store(target, Ordering::Relaxed);
    for (i, w) in JUNK.iter().enumerate() {
        w.store(
            u64::from_le_bytes(*b"junk-ab\n") + (i as u64 % 26) * 0x100_0000_0000,
            Ordering::Relaxed,
        );
    }
    // The EL0 code block: a 2 MiB block in the middle of RAM, clear of the
    // image (RAM base + 2 MiB), the DTB and the reset marker (the last
    // 2 MiB).
    let el0_pa = (p.ram.base + p.ram.size / 2) & !(MIB2 - 1);
    EL0_PA.store(el0_pa, Ordering::Relaxed);
    build_tables(el0_pa);
    write_code_tables(el0_pa);
    println!(
        "hostile: seed {seed:#x}, {target} ops on {} vCPUs; RAM {:#x}-{:#x}, EL0 code at {el0_pa:#x}",
        p.cpus.count(),
        p.ram.base,
        p.ram.end()
    );
    if args.split_ascii_whitespace().any(|w| w == "wait=console") {
        wait_for_console_key();
    }
    ACTIVE.store(true, Ordering::Release);
    let entry = crate::entry::secondary_entry_address();
    for c in 1..p.cpus.count() {
        let ret = psci::cpu_on(p.cpus.mpidr(c), entry, c as u64);
        if ret != 0 {
            println!("hostile: CPU_ON of cpu {c} returned {ret}");
        }
    }
    let start = cpu::counter();
    QUIET.store(true, Ordering::Release);
    storm(0);
    // Every counted operation finished (a hung one is reported).
    let finished = cpu::wait_ms(HANG_MS, || COMPLETED.load(Ordering::Acquire) >= target);
    check_hangs(0);
    let ms = (cpu::counter() - start) / (cpu::frequency() / 1000).max(1);
    let mut line: crate::line::Line<400> = crate::line::Line::new();
    {
        use core::fmt::Write;
        let _ = write!(line, "hostile: counts");
        for c in Class::ALL {
            let _ = write!(
                line,
                " {}={}",
                c.name(),
                COUNTS[c as usize].load(Ordering::Relaxed)
            );
        }
        let _ = write!(
            line,
            " skipped={} el0={} cpu-off={} cpu-on-started={} time-ms={ms}",
            SKIPPED.load(Ordering::Relaxed),
            EL0_OPS.load(Ordering::Relaxed),
            CPU_OFFS.load(Ordering::Relaxed),
            CPU_ON_STARTS.load(Ordering::Relaxed)
        );
    }
    crate::console::write_line(line.as_bytes());
    if !finished {
        record_bad(Bad {
            cpu: 0,
            op: Op::Idle,
            what: 0,
            esr: 0,
            value: COMPLETED.load(Ordering::Relaxed),
            reason: "operations never finished",
        });
    }
    let undefined = UNDEFINED.load(Ordering::Relaxed);
    let done = COMPLETED.load(Ordering::Relaxed).min(target);
    println!("hostile: {done} ops, {undefined} undefined answers");
    for b in BAD.lock().iter().flatten() {
        println!(
            "hostile: undefined: cpu {} op {} at {:#x}: esr {:#x} value {:#x}: {}",
            b.cpu,
            b.op.name(),
            b.what,
            b.esr,
            b.value,
            b.reason
        );
    }
    // The reset race: SYSTEM_RESET while the other vCPUs keep going.
    match marker {
        Some(at) => {
            crate::modes::set_marker(at, RESET_MAGIC);
            println!("hostile: SYSTEM_RESET while the other vCPUs keep going");
            QUIET.store(false, Ordering::Release);
            let ret = psci::status(psci::call(psci::SYSTEM_RESET, 0, 0, 0));
            crate::modes::set_marker(at, 0);
            println!("hostile: SYSTEM_RESET returned {ret}");
        }
        None => println!("hostile: no room for the reset marker; no SYSTEM_RESET"),
    }
    psci::system_off()
}
