//! The pure half of hostile mode ([`crate::hostile`]): the PRNG that picks
//! operations, the instruction encoders that turn a random choice into one
//! A64 instruction, and the rules that say which answers the architecture
//! (and nmivisor's documented interface, `docs/vms.md`) allow for each
//! operation. Host-tested: the rules decide whether the run passes.

/// splitmix64 (Steele, Lea, Flood 2014): one 64-bit state, full period,
/// good enough to spread choices, and reproducible from a seed.
#[derive(Clone, Copy, Debug)]
pub struct Rng(u64);

impl Rng {
    pub const fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `num`/`den`.
    #[cfg(target_os = "none")]
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// One of `items` (not empty).
    #[cfg(target_os = "none")]
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A64 encodings (Arm ARM C6). Every generated instruction uses x0 as the
/// address or x1 (and x2) as data, so one calling convention fits all.
pub mod enc {
    /// A system register encoding (op0, op1, CRn, CRm, op2).
    pub type SysReg = (u8, u8, u8, u8, u8);

    fn sysreg_fields(r: SysReg) -> u32 {
        let (op0, op1, crn, crm, op2) = r;
        ((op0 as u32 & 1) << 19)
            | ((op1 as u32 & 7) << 16)
            | ((crn as u32 & 15) << 12)
            | ((crm as u32 & 15) << 8)
            | ((op2 as u32 & 7) << 5)
    }

    /// MRS x1, S<op0>_<op1>_C<n>_C<m>_<op2> (op0 is 2 or 3).
    pub fn mrs_x1(r: SysReg) -> u32 {
        0xd530_0000 | sysreg_fields(r) | 1
    }

    /// MSR S<op0>_<op1>_C<n>_C<m>_<op2>, x1.
    pub fn msr_x1(r: SysReg) -> u32 {
        0xd510_0000 | sysreg_fields(r) | 1
    }

    /// LDR{B,H,,} w1/x1, [x0] for a size of 1, 2, 4 or 8 bytes.
    pub fn load(size: u8) -> u32 {
        match size {
            1 => 0x3940_0001,
            2 => 0x7940_0001,
            4 => 0xb940_0001,
            _ => 0xf940_0001,
        }
    }

    /// LDRS{B,H,W} x1, [x0]: sign-extending loads of 1, 2 or 4 bytes.
    #[cfg(target_os = "none")]
    pub fn load_signed(size: u8) -> u32 {
        match size {
            1 => 0x3980_0001,
            2 => 0x7980_0001,
            _ => 0xb980_0001,
        }
    }

    /// STR{B,H,,} w1/x1, [x0].
    pub fn store(size: u8) -> u32 {
        match size {
            1 => 0x3900_0001,
            2 => 0x7900_0001,
            4 => 0xb900_0001,
            _ => 0xf900_0001,
        }
    }

    /// LDP x1, x2, [x0] (or w1, w2 with `wide` false).
    #[cfg(target_os = "none")]
    pub fn ldp(wide: bool) -> u32 {
        if wide {
            0xa940_0801
        } else {
            0x2940_0801
        }
    }

    /// STP x1, x2, [x0] (or w1, w2).
    pub fn stp(wide: bool) -> u32 {
        if wide {
            0xa900_0801
        } else {
            0x2900_0801
        }
    }

    /// DC CIVAC, x0.
    pub const DC_CIVAC: u32 = 0xd50b_7e20;
    /// DC CVAC, x0.
    pub const DC_CVAC: u32 = 0xd50b_7a20;
    /// SVC #0: how an EL0 stub returns to EL1.
    #[cfg(target_os = "none")]
    pub const SVC0: u32 = 0xd400_0001;
    /// RET: how an EL1 stub returns.
    pub const RET: u32 = 0xd65f_03c0;
    /// WFI.
    pub const WFI: u32 = 0xd503_207f;

    /// HVC #imm.
    pub fn hvc(imm: u16) -> u32 {
        0xd400_0002 | (imm as u32) << 5
    }

    /// SMC #imm.
    pub fn smc(imm: u16) -> u32 {
        0xd400_0003 | (imm as u32) << 5
    }
}

/// The code table: every instruction hostile mode runs has a fixed slot,
/// so the table is written once and each operation only jumps to its
/// slot (no self-modifying code per operation: an emulator translates
/// each slot once). A slot is the instruction and then RET (EL1 table)
/// or SVC #0 (EL0 table).
pub mod slots {
    use super::enc;

    /// MRS and MSR of every Op0 2/3 encoding.
    pub const SYSREG: usize = 1 << 16;
    /// The fixed memory, cache and WFI instructions.
    pub const FIXED: [u32; 18] = [
        0x3940_0001,
        0x7940_0001,
        0xb940_0001,
        0xf940_0001, // LDR 1/2/4/8
        0x3980_0001,
        0x7980_0001,
        0xb980_0001, // LDRS 1/2/4
        0x3900_0001,
        0x7900_0001,
        0xb900_0001,
        0xf900_0001, // STR 1/2/4/8
        0xa940_0801,
        0x2940_0801,
        0xa900_0801,
        0x2900_0801, // LDP/STP x, w
        enc::DC_CIVAC,
        enc::DC_CVAC,
        enc::WFI,
    ];
    const FIXED_BASE: usize = SYSREG;
    const HVC_BASE: usize = FIXED_BASE + 32;
    const SMC_BASE: usize = HVC_BASE + 256;
    /// Slots in a table.
    pub const COUNT: usize = SMC_BASE + 256;

    /// The slot of `insn`, if it has one (HVC/SMC only with an immediate
    /// below 256).
    pub fn of(insn: u32) -> Option<usize> {
        if insn & 0xffd0_0000 == 0xd510_0000 {
            let read = (insn >> 21) & 1;
            return Some(((read << 15) | ((insn >> 5) & 0x7fff)) as usize);
        }
        if let Some(i) = FIXED.iter().position(|&f| f == insn) {
            return Some(FIXED_BASE + i);
        }
        let imm = ((insn >> 5) & 0xffff) as usize;
        match insn & 0xffe0_001f {
            0xd400_0002 if imm < 256 => Some(HVC_BASE + imm),
            0xd400_0003 if imm < 256 => Some(SMC_BASE + imm),
            _ => None,
        }
    }

    /// The instruction in slot `i` (0 for an unused slot: UDF #0).
    pub fn insn(i: usize) -> u32 {
        if i < SYSREG {
            let read = (i >> 15) as u32 & 1;
            return 0xd510_0000 | read << 21 | ((i as u32) & 0x7fff) << 5 | 1;
        }
        match i {
            _ if i < FIXED_BASE + FIXED.len() => FIXED[i - FIXED_BASE],
            _ if (HVC_BASE..SMC_BASE).contains(&i) => enc::hvc((i - HVC_BASE) as u16),
            _ if (SMC_BASE..COUNT).contains(&i) => enc::smc((i - SMC_BASE) as u16),
            _ => 0,
        }
    }
}

/// Exception classes (ESR_ELx.EC) the rules name.
pub mod ec {
    pub const UNKNOWN: u8 = 0x00;
    pub const WFX: u8 = 0x01;
    #[cfg(target_os = "none")]
    pub const SVC64: u8 = 0x15;
    pub const SYSREG: u8 = 0x18;
    pub const SVE: u8 = 0x19;
    /// SME access trap (CPACR_EL1.SMEN: the guest's own control).
    pub const SME: u8 = 0x1d;
    pub const DABT_LOWER: u8 = 0x24;
    pub const DABT_SAME: u8 = 0x25;
    pub const BREAKPOINT_LOWER: u8 = 0x30;
    pub const STEP_LOWER: u8 = 0x32;
    pub const WATCHPOINT_LOWER: u8 = 0x34;
}

/// What an operation got back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It completed (a load's value, or a write that went through).
    Done,
    /// A synchronous exception reached the guest's EL1 (ESR_EL1, FAR_EL1).
    /// From an EL0 stub, the stub's closing SVC is [`Answer::Done`] instead.
    Exception { esr: u64, far: u64 },
    /// An exception the vectors took that is not synchronous (SError, or
    /// an unexpected vector): never a defined answer to an access.
    Async { vector: u64 },
}

/// Answer classes, counted and printed at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Class {
    /// A load returned a value / a write completed (emulated, RAZ/WI).
    Value = 0,
    /// The hypervisor's synchronous external abort (DFSC 0x10).
    ExternalAbort,
    /// A stage-1 fault of the guest's own tables (translation, permission,
    /// address size): the guest MMU answered before the hypervisor saw it.
    Stage1Fault,
    /// UNDEFINED (EC 0x00).
    Undefined,
    /// Trapped to EL1 (EC 0x18/0x19/0x01: EL0 sysreg/DC/WFI, SVE at EL1).
    TrappedToEl1,
    /// A debug exception from EL0 (the guest's own breakpoints/step).
    Debug,
    /// SMCCC: a result that is not an error code.
    SmcccOk,
    /// SMCCC: an error code (-1 NOT_SUPPORTED, -2 INVALID_PARAMETERS, ...).
    SmcccError,
}

/// How many answer classes there are.
#[cfg(target_os = "none")]
pub const CLASSES: usize = 8;

#[cfg(target_os = "none")]
impl Class {
    /// Every class, in the order of the counts line.
    pub const ALL: [Class; CLASSES] = [
        Class::Value,
        Class::ExternalAbort,
        Class::Stage1Fault,
        Class::Undefined,
        Class::TrappedToEl1,
        Class::Debug,
        Class::SmcccOk,
        Class::SmcccError,
    ];

    /// The class's name in the counts line.
    pub fn name(self) -> &'static str {
        match self {
            Class::Value => "value",
            Class::ExternalAbort => "ext-abort",
            Class::Stage1Fault => "s1-fault",
            Class::Undefined => "undef",
            Class::TrappedToEl1 => "el1-trap",
            Class::Debug => "debug",
            Class::SmcccOk => "smccc-ok",
            Class::SmcccError => "smccc-err",
        }
    }
}

/// Why an answer is not one the operation may get.
pub type Verdict = Result<Class, &'static str>;

fn ec_of(esr: u64) -> u8 {
    ((esr >> 26) & 0x3f) as u8
}

fn dfsc(esr: u64) -> u8 {
    (esr & 0x3f) as u8
}

/// Stage-1 fault status codes: address size (0x00-0x03), translation
/// (0x04-0x07), access flag (0x08-0x0b), permission (0x0c-0x0f),
/// alignment (0x21).
fn is_stage1_fsc(fsc: u8) -> bool {
    fsc <= 0x0f || fsc == 0x21
}

/// Where a memory operation went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// An emulated device frame: GICD, a GICR frame (any vCPU's), the PL011.
    Device,
    /// An IPA with nothing behind it for this VM: other VMs' and the
    /// hypervisor's RAM, holes, and everything above. Only an abort is
    /// allowed: a value here would be a leak.
    Nothing,
    /// Guest RAM mapped without EL0 access (EL0 operations only).
    El0Forbidden,
}

/// What kind of memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Load,
    Store,
    /// LDP: no valid syndrome (ISV = 0), so never emulated as MMIO.
    #[cfg_attr(not(target_os = "none"), allow(dead_code))]
    LoadPair,
    StorePair,
    /// DC CIVAC / CVAC.
    CacheMaintenance,
}

impl Access {
    fn is_write(self) -> bool {
        matches!(self, Access::Store | Access::StorePair)
    }
}

/// The rule for a memory access at EL1 (`el0` false) or from an EL0 stub.
///
/// Data aborts the hypervisor injects must look like a real synchronous
/// external abort (Arm ARM D19.2.40, ISS encoding for a Data Abort): EC
/// 0x25 at EL1 (0x24 from EL0), DFSC 0x10, WnR set for a write, and for a
/// cache maintenance instruction CM = 1 with WnR = 1.
pub fn memory(target: Target, access: Access, el0: bool, answer: Answer) -> Verdict {
    match answer {
        Answer::Done => match target {
            Target::Device => Ok(Class::Value),
            // A cache maintenance instruction may complete without effect.
            _ if access == Access::CacheMaintenance => Ok(Class::Value),
            Target::Nothing => Err("completed at an IPA with nothing behind it"),
            Target::El0Forbidden => Err("EL0 reached memory mapped for EL1 only"),
        },
        Answer::Async { .. } => Err("asynchronous exception"),
        Answer::Exception { esr, .. } => {
            let ec = ec_of(esr);
            if el0 && access == Access::CacheMaintenance && ec == ec::SYSREG {
                // SCTLR_EL1.UCI = 0: DC by VA from EL0 traps to EL1.
                return Ok(Class::TrappedToEl1);
            }
            let want = if el0 { ec::DABT_LOWER } else { ec::DABT_SAME };
            if el0
                && matches!(
                    ec,
                    ec::BREAKPOINT_LOWER | ec::STEP_LOWER | ec::WATCHPOINT_LOWER
                )
            {
                return Ok(Class::Debug);
            }
            if ec != want {
                return Err("exception class not allowed for a data access");
            }
            let fsc = dfsc(esr);
            let cm = esr & (1 << 8) != 0;
            let wnr = esr & (1 << 6) != 0;
            if fsc == 0x10 {
                if target == Target::El0Forbidden {
                    return Err("external abort where the guest's own tables forbid EL0");
                }
                if access == Access::CacheMaintenance {
                    if !cm || !wnr {
                        return Err("abort on cache maintenance without CM=1 WnR=1");
                    }
                } else if cm {
                    return Err("CM set on an abort of a load or store");
                } else if wnr != access.is_write() {
                    return Err("abort with WnR not matching the access");
                }
                return Ok(Class::ExternalAbort);
            }
            if is_stage1_fsc(fsc) {
                return Ok(Class::Stage1Fault);
            }
            Err("data abort with a fault status the access cannot cause")
        }
    }
}

/// Whether an encoding is in the ID space (Op0 3, Op1 0, 1 or 3, CRn 0,
/// CRm 0-7).
/// With FEAT_IDST an unallocated register there is reported as a trapped
/// system register access (EC 0x18) rather than UNDEFINED (Arm ARM D19.2,
/// FEAT_IDST), which QEMU implements.
pub fn is_id_space(r: enc::SysReg) -> bool {
    r.0 == 3 && matches!(r.1, 0 | 1 | 3) && r.2 == 0 && r.3 < 8
}

/// The rule for MRS/MSR at EL1: a value (or a write that went through),
/// UNDEFINED, the SVE or SME access trap (EC 0x19 / 0x1d: ZCR_EL1, SVCR
/// and the like with CPACR_EL1.ZEN / SMEN off, a trap to the guest's own
/// EL1 that takes priority over any EL2 trap), or in the ID space the FEAT_IDST trap (EC 0x18). `expect` is the
/// value nmivisor documents for the register, if any (ICC_SRE_EL1 reads
/// 0x7, RAS error records read 0).
pub fn sysreg_el1(
    r: enc::SysReg,
    read: bool,
    value: u64,
    expect: Option<u64>,
    answer: Answer,
) -> Verdict {
    match answer {
        Answer::Done => match expect {
            Some(want) if read && value != want => {
                Err("read a value other than the documented one")
            }
            _ => Ok(Class::Value),
        },
        Answer::Async { .. } => Err("asynchronous exception"),
        Answer::Exception { esr, .. } => match ec_of(esr) {
            ec::UNKNOWN => Ok(Class::Undefined),
            ec::SVE | ec::SME => Ok(Class::TrappedToEl1),
            ec::SYSREG if is_id_space(r) => Ok(Class::TrappedToEl1),
            _ => Err("exception class not allowed for MRS/MSR at EL1"),
        },
    }
}

/// The rule for an instruction that must complete without an exception
/// (a write to ICC_SGI1R/ASGI1R/SGI0R_EL1: nmivisor turns it into virtual
/// SGIs).
#[cfg(target_os = "none")]
pub fn must_complete(answer: Answer) -> Verdict {
    match answer {
        Answer::Done => Ok(Class::Value),
        _ => Err("an exception for an access that must complete"),
    }
}

/// The rule for any instruction run by an EL0 stub that is not a memory
/// access: it completes, is UNDEFINED, traps to EL1 (EC 0x18 system
/// register / EC 0x01 WFI), or takes a debug exception of the guest's own
/// making. Nothing from EL0 may reach the hypervisor and come back as
/// anything else.
pub fn el0_other(answer: Answer) -> Verdict {
    match answer {
        Answer::Done => Ok(Class::Value),
        Answer::Async { .. } => Err("asynchronous exception"),
        Answer::Exception { esr, .. } => match ec_of(esr) {
            ec::UNKNOWN => Ok(Class::Undefined),
            ec::SYSREG | ec::WFX | ec::SVE | ec::SME => Ok(Class::TrappedToEl1),
            ec::BREAKPOINT_LOWER | ec::STEP_LOWER | ec::WATCHPOINT_LOWER => Ok(Class::Debug),
            _ => Err("exception class not allowed for this EL0 instruction"),
        },
    }
}

/// SMCCC error codes nmivisor may return (DEN0028 / DEN0022D): -1
/// NOT_SUPPORTED, -2 INVALID_PARAMETERS, -3 DENIED, -4 ALREADY_ON, -5
/// ON_PENDING, -9 INVALID_ADDRESS.
fn smccc_error(v: i64) -> bool {
    matches!(v, -1 | -2 | -3 | -4 | -5 | -9)
}

/// PSCI function numbers a random hypercall may use: those that cannot
/// power off, reset, suspend or start anything (VERSION, AFFINITY_INFO,
/// MIGRATE, MIGRATE_INFO_TYPE, MIGRATE_INFO_UP_CPU, PSCI_FEATURES) and
/// numbers no PSCI version defines.
pub const SAFE_PSCI_NUMBERS: [u32; 12] = [
    0x0, 0x4, 0x5, 0x6, 0x7, 0xa, 0x18, 0x19, 0x1a, 0x1c, 0x1d, 0x1f,
];

/// Whether `fid` is in PSCI's range (fast calls 0-0x1F of the standard
/// secure service, SMC32 and SMC64).
pub fn is_psci(fid: u32) -> bool {
    fid & !(1 << 30) & !0x1f == 0x8400_0000
}

/// The rule for the x0 a hypercall (HVC or SMC from EL1) returned, given
/// the function ID and arguments, following nmivisor's table
/// (`docs/vms.md`, Hypercalls and PSCI). `ram` is the guest's RAM
/// (base, size) for NMV_CONSOLE_WRITE's address check.
pub fn smccc(fid: u32, args: [u64; 3], x0: u64, ram: (u64, u64)) -> Verdict {
    let smc32 = fid & (1 << 30) == 0;
    // SMC32 results are in w0 (DEN0028, Register use in AArch64 SMC and
    // HVC calls).
    let v = if smc32 {
        x0 as u32 as i32 as i64
    } else {
        x0 as i64
    };
    let ok = |good: bool| {
        if good {
            Ok(if v < 0 {
                Class::SmcccError
            } else {
                Class::SmcccOk
            })
        } else {
            Err("hypercall result not in the documented set")
        }
    };
    match fid {
        0x8000_0000 => ok(v == 0x1_0001),
        0x8000_0001 => ok(v == 0 || v == -1),
        0xc600_0000 => ok(v == 0x1_0000),
        0xc600_0001 => {
            let (addr, len) = (args[0], args[1]);
            let inside = addr >= ram.0
                && addr
                    .checked_add(len)
                    .is_some_and(|end| end <= ram.0 + ram.1);
            if len == 0 {
                // Nothing to read: either answer is sensible.
                ok(v == 0 || v == -2)
            } else if len <= 256 && inside {
                ok(v == len as i64)
            } else {
                ok(v == -2)
            }
        }
        0xc600_0002 => ok(v == -1 || v == -3 || v == 0),
        0xc600_0100 => ok(v == 0 || v == -2),
        0xc600_0101..=0xc600_01ff => ok(v == -1),
        _ if is_psci(fid) => {
            let n = fid & 0x1f;
            let psci64 = fid & (1 << 30) != 0;
            match n {
                0x0 if !psci64 => ok(v == 0x1_0001),
                0x4 => ok(matches!(v, 0..=2) || v == -2),
                0x6 if !psci64 => ok(v == 2),
                0xa if !psci64 => ok(v == 0 || v == -1),
                _ => ok(v == -1),
            }
        }
        _ => ok(v == -1),
    }
    .and_then(|c| {
        if c == Class::SmcccError && !smccc_error(v) {
            Err("not an SMCCC error code")
        } else {
            Ok(c)
        }
    })
}

/// The rule for PSCI CPU_ON: `entry_valid` says whether the entry point
/// was in RAM and 4-byte aligned, `mpidr_valid` whether the MPIDR is one
/// of the VM's vCPUs. A started vCPU (0) needs both.
pub fn cpu_on(mpidr_valid: bool, entry_valid: bool, x0: u64) -> Verdict {
    let v = x0 as i64;
    let good = match (mpidr_valid, entry_valid) {
        (true, true) => matches!(v, 0 | -4 | -5),
        (true, false) => matches!(v, -4 | -5 | -9),
        (false, _) => matches!(v, -2 | -9),
    };
    if !good {
        Err("CPU_ON result not allowed for these arguments")
    } else if v == 0 {
        Ok(Class::SmcccOk)
    } else {
        Ok(Class::SmcccError)
    }
}

/// Parses the word `key=N` (decimal or 0x hex) out of a command line.
pub fn arg_u64(cmdline: &str, key: &str) -> Option<u64> {
    cmdline.split_ascii_whitespace().find_map(|w| {
        let v = w.strip_prefix(key)?.strip_prefix('=')?;
        match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abort(ec: u64, fsc: u64, cm: bool, wnr: bool) -> Answer {
        Answer::Exception {
            esr: ec << 26 | 1 << 25 | (cm as u64) << 8 | (wnr as u64) << 6 | fsc,
            far: 0,
        }
    }

    #[test]
    fn rng_is_reproducible_and_spreads() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: [u64; 4] = core::array::from_fn(|_| a.next());
        assert_eq!(xs, core::array::from_fn(|_| b.next()));
        assert_ne!(xs[0], xs[1]);
        let mut r = Rng::new(1);
        let mut seen = [false; 8];
        for _ in 0..200 {
            seen[r.below(8) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn encodings_match_the_assembler() {
        // mrs x1, midr_el1 / msr s3_0_c12_c12_5 (icc_sre_el1), x1
        assert_eq!(enc::mrs_x1((3, 0, 0, 0, 0)), 0xd538_0001);
        assert_eq!(enc::msr_x1((3, 0, 12, 12, 5)), 0xd518_cca1);
        // mrs x1, mdscr_el1 (2,0,0,2,2)
        assert_eq!(enc::mrs_x1((2, 0, 0, 2, 2)), 0xd530_0241);
        // ldrb w1,[x0]; str x1,[x0]; stp x1,x2,[x0]; hvc #0; smc #0
        assert_eq!(enc::load(1), 0x3940_0001);
        assert_eq!(enc::store(8), 0xf900_0001);
        assert_eq!(enc::stp(true), 0xa900_0801);
        assert_eq!(enc::hvc(0), 0xd400_0002);
        assert_eq!(enc::smc(0), 0xd400_0003);
    }

    #[test]
    fn every_generated_instruction_has_a_slot() {
        for i in 0..slots::COUNT {
            let insn = slots::insn(i);
            if insn != 0 {
                assert_eq!(slots::of(insn), Some(i), "slot {i}: {insn:#x}");
            }
        }
        for r in [(3, 0, 12, 11, 5), (2, 0, 0, 15, 7), (3, 7, 15, 15, 7)] {
            assert_eq!(
                slots::insn(slots::of(enc::mrs_x1(r)).unwrap()),
                enc::mrs_x1(r)
            );
            assert_eq!(
                slots::insn(slots::of(enc::msr_x1(r)).unwrap()),
                enc::msr_x1(r)
            );
        }
        for size in [1, 2, 4, 8] {
            assert!(slots::of(enc::load(size)).is_some() && slots::of(enc::store(size)).is_some());
        }
        assert!(slots::of(enc::hvc(255)).is_some() && slots::of(enc::smc(0)).is_some());
        assert_eq!(slots::of(enc::hvc(256)), None);
        assert_eq!(slots::of(enc::RET), None);
    }

    #[test]
    fn nothing_behind_an_ipa_must_abort() {
        assert!(memory(Target::Nothing, Access::Load, false, Answer::Done).is_err());
        assert_eq!(
            memory(
                Target::Nothing,
                Access::Load,
                false,
                abort(0x25, 0x10, false, false)
            ),
            Ok(Class::ExternalAbort)
        );
        assert_eq!(
            memory(Target::Device, Access::Store, false, Answer::Done),
            Ok(Class::Value)
        );
        // From EL0 the abort is a lower-EL one.
        assert!(memory(
            Target::Nothing,
            Access::Load,
            true,
            abort(0x25, 0x10, false, false)
        )
        .is_err());
        assert_eq!(
            memory(
                Target::Nothing,
                Access::Load,
                true,
                abort(0x24, 0x10, false, false)
            ),
            Ok(Class::ExternalAbort)
        );
    }

    #[test]
    fn injected_aborts_must_carry_wnr_and_cm() {
        // A store pair reported as a read.
        assert!(memory(
            Target::Nothing,
            Access::StorePair,
            false,
            abort(0x25, 0x10, false, false)
        )
        .is_err());
        assert!(memory(
            Target::Nothing,
            Access::StorePair,
            false,
            abort(0x25, 0x10, false, true)
        )
        .is_ok());
        // DC CIVAC: CM=1, WnR=1, or no exception at all.
        assert!(memory(
            Target::Device,
            Access::CacheMaintenance,
            false,
            abort(0x25, 0x10, false, false)
        )
        .is_err());
        assert!(memory(
            Target::Device,
            Access::CacheMaintenance,
            false,
            abort(0x25, 0x10, true, true)
        )
        .is_ok());
        assert!(memory(
            Target::Nothing,
            Access::CacheMaintenance,
            false,
            Answer::Done
        )
        .is_ok());
        assert_eq!(
            memory(
                Target::Nothing,
                Access::CacheMaintenance,
                true,
                abort(0x18, 0, false, false)
            ),
            Ok(Class::TrappedToEl1)
        );
    }

    #[test]
    fn stage1_faults_are_the_guests_own() {
        assert_eq!(
            memory(
                Target::El0Forbidden,
                Access::Load,
                true,
                abort(0x24, 0x0d, false, false)
            ),
            Ok(Class::Stage1Fault)
        );
        assert!(memory(
            Target::El0Forbidden,
            Access::Load,
            true,
            abort(0x24, 0x10, false, false)
        )
        .is_err());
        assert!(memory(
            Target::Nothing,
            Access::Load,
            false,
            abort(0x25, 0x18, false, false)
        )
        .is_err());
        assert!(memory(
            Target::Nothing,
            Access::Load,
            false,
            Answer::Async { vector: 7 }
        )
        .is_err());
    }

    #[test]
    fn sysregs() {
        let sre = (3, 0, 12, 12, 5);
        assert_eq!(
            sysreg_el1(sre, true, 7, Some(7), Answer::Done),
            Ok(Class::Value)
        );
        assert!(sysreg_el1(sre, true, 0, Some(7), Answer::Done).is_err());
        assert_eq!(
            sysreg_el1(sre, false, 0, Some(7), Answer::Done),
            Ok(Class::Value)
        );
        assert_eq!(
            sysreg_el1(sre, true, 0, None, abort(0, 0, false, false)),
            Ok(Class::Undefined)
        );
        assert!(sysreg_el1(sre, true, 0, None, abort(0x25, 0x10, false, false)).is_err());
        // FEAT_IDST: an unallocated ID register traps to EL1.
        assert_eq!(
            sysreg_el1((3, 0, 0, 0, 1), true, 0, None, abort(0x18, 0, false, false)),
            Ok(Class::TrappedToEl1)
        );
        assert_eq!(
            sysreg_el1((3, 3, 0, 4, 0), true, 0, None, abort(0x18, 0, false, false)),
            Ok(Class::TrappedToEl1)
        );
        assert!(sysreg_el1((3, 2, 0, 4, 0), true, 0, None, abort(0x18, 0, false, false)).is_err());
        assert!(sysreg_el1(sre, true, 0, None, abort(0x18, 0, false, false)).is_err());
        assert_eq!(
            el0_other(abort(0x18, 0, false, false)),
            Ok(Class::TrappedToEl1)
        );
        assert!(el0_other(abort(0x16, 0, false, false)).is_err());
        // SVCR with CPACR_EL1.SMEN off: the guest's own SME trap.
        assert_eq!(
            sysreg_el1((3, 3, 4, 2, 2), true, 0, None, abort(0x1d, 0, false, false)),
            Ok(Class::TrappedToEl1)
        );
    }

    #[test]
    fn hypercall_results() {
        let ram = (0x4000_0000, 0x800_0000);
        assert_eq!(smccc(0x8000_0000, [0; 3], 0x10001, ram), Ok(Class::SmcccOk));
        assert_eq!(
            smccc(0xdead_beef, [0; 3], u64::MAX, ram),
            Ok(Class::SmcccError)
        );
        assert!(smccc(0xdead_beef, [0; 3], 0, ram).is_err());
        // SMC32: only w0 counts.
        assert_eq!(
            smccc(0x8200_0001, [0; 3], 0xffff_ffff, ram),
            Ok(Class::SmcccError)
        );
        assert_eq!(
            smccc(0xc600_0001, [0x4000_1000, 10, 0], 10, ram),
            Ok(Class::SmcccOk)
        );
        assert_eq!(
            smccc(0xc600_0001, [0x4000_1000, 300, 0], (-2i64) as u64, ram),
            Ok(Class::SmcccError)
        );
        assert!(smccc(0xc600_0001, [0x1000, 10, 0], 10, ram).is_err());
        assert_eq!(
            smccc(0x8400_0004, [0, 1, 0], (-2i64) as u64, ram),
            Ok(Class::SmcccError)
        );
        assert!(is_psci(0xc400_0003) && is_psci(0x8400_001f) && !is_psci(0x8400_0020));
        for n in SAFE_PSCI_NUMBERS {
            assert!(![1, 2, 3, 8, 9, 0xe, 0xf, 0x12, 0x15].contains(&n));
        }
    }

    #[test]
    fn cpu_on_results() {
        assert!(cpu_on(true, true, 0).is_ok());
        assert!(
            cpu_on(true, false, 0).is_err(),
            "started at a bad entry point"
        );
        assert!(cpu_on(true, false, (-9i64) as u64).is_ok());
        assert!(cpu_on(false, true, (-2i64) as u64).is_ok());
        assert!(cpu_on(false, true, 0).is_err());
    }

    #[test]
    fn parses_arguments() {
        let c = "console=x guest-test.hostile seed=0x10 ops=1000000";
        assert_eq!(arg_u64(c, "seed"), Some(16));
        assert_eq!(arg_u64(c, "ops"), Some(1_000_000));
        assert_eq!(arg_u64(c, "wait"), None);
    }
}
