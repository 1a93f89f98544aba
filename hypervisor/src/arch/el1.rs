//! The guest's EL1 system-register context and the entry into a guest.
//!
//! With static partitioning a vCPU owns its physical CPU, so its EL1
//! registers stay live in the hardware while it runs and traps are handled
//! without touching them. They are loaded as a whole when a vCPU starts
//! (power-on, CPU_ON, reset) from the architectural reset state; nothing
//! needs them back after power-off, since PSCI restarts a vCPU from reset.
//! [`El1Context::save`] reads them all for dumps and debugging.
//! General-purpose and FP/SIMD registers are switched on every trap by the
//! exception vectors (the trap frame).

use super::vectors::TrapFrame;
use aarch64_cpu::registers::HCR_EL2;
use core::arch::asm;

macro_rules! el1_context {
    ($($field:ident => $reg:literal),* $(,)?) => {
        /// Every EL1 (and EL0) register a guest owns.
        #[derive(Clone, Debug, Default)]
        pub struct El1Context {
            $(pub $field: u64,)*
        }

        impl El1Context {
            /// Reads the live registers.
            pub fn save() -> Self {
                let mut c = Self::default();
                // SAFETY: reading EL1 system registers at EL2 has no side effects.
                unsafe {
                    $(asm!(concat!("mrs {}, ", $reg), out(reg) c.$field, options(nomem, nostack, preserves_flags));)*
                }
                c
            }

            /// Writes every register. Only called on the physical CPU that
            /// will run this vCPU, before entering it.
            pub fn restore(&self) {
                // SAFETY: these registers only affect EL1/EL0 execution, which
                // belongs to the guest about to run.
                unsafe {
                    $(asm!(concat!("msr ", $reg, ", {}"), in(reg) self.$field, options(nomem, nostack, preserves_flags));)*
                    asm!("isb", options(nomem, nostack, preserves_flags));
                }
            }
        }
    };
}

el1_context! {
    sctlr => "sctlr_el1",
    actlr => "actlr_el1",
    cpacr => "cpacr_el1",
    ttbr0 => "ttbr0_el1",
    ttbr1 => "ttbr1_el1",
    tcr => "tcr_el1",
    mair => "mair_el1",
    amair => "amair_el1",
    vbar => "vbar_el1",
    contextidr => "contextidr_el1",
    tpidr_el0 => "tpidr_el0",
    tpidrro_el0 => "tpidrro_el0",
    tpidr_el1 => "tpidr_el1",
    esr => "esr_el1",
    far => "far_el1",
    afsr0 => "afsr0_el1",
    afsr1 => "afsr1_el1",
    par => "par_el1",
    csselr => "csselr_el1",
    cntkctl => "cntkctl_el1",
    mdscr => "mdscr_el1",
    sp_el0 => "sp_el0",
    sp_el1 => "sp_el1",
    elr => "elr_el1",
    spsr => "spsr_el1",
    cntv_ctl => "cntv_ctl_el0",
    cntv_cval => "cntv_cval_el0",
}

/// SCTLR_EL1 at reset: RES1 bits only, MMU and caches off (Arm ARM D19.2.118).
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

impl El1Context {
    /// The state of an EL1 that just came out of reset.
    pub fn reset() -> Self {
        El1Context {
            sctlr: SCTLR_EL1_RESET,
            ..Default::default()
        }
    }
}

/// Reads one live EL1 register for dumps: the guest's SP_EL1 / SP_EL0.
pub fn guest_sp(spsr: u64) -> u64 {
    let v: u64;
    // SAFETY: reading the stack pointers of a lower EL has no side effects.
    unsafe {
        if spsr & 0xf == 0 {
            asm!("mrs {}, sp_el0", out(reg) v, options(nomem, nostack, preserves_flags));
        } else {
            asm!("mrs {}, sp_el1", out(reg) v, options(nomem, nostack, preserves_flags));
        }
    }
    v
}

/// The guest's last EL1 exception syndrome (ESR_EL1), for dumps.
pub fn guest_esr() -> u64 {
    let v: u64;
    // SAFETY: reading ESR_EL1 has no side effects.
    unsafe { asm!("mrs {}, esr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Writes the registers an exception injected into EL1 sets
/// (Arm ARM D1.10.2): ESR_EL1, FAR_EL1, ELR_EL1 and SPSR_EL1.
pub fn set_exception_regs(esr: u64, far: u64, elr: u64, spsr: u64) {
    // SAFETY: these are the guest's own EL1 exception registers.
    unsafe {
        asm!(
            "msr esr_el1, {esr}",
            "msr far_el1, {far}",
            "msr elr_el1, {elr}",
            "msr spsr_el1, {spsr}",
            esr = in(reg) esr, far = in(reg) far, elr = in(reg) elr, spsr = in(reg) spsr,
            options(nomem, nostack, preserves_flags)
        )
    };
}

/// SCTLR_EL1 of the running guest.
pub fn guest_sctlr() -> u64 {
    let v: u64;
    // SAFETY: reading SCTLR_EL1 has no side effects.
    unsafe { asm!("mrs {}, sctlr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// VBAR_EL1 of the running guest.
pub fn guest_vbar() -> u64 {
    let v: u64;
    // SAFETY: reading VBAR_EL1 has no side effects.
    unsafe { asm!("mrs {}, vbar_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// The EL2 registers that set up a VM's execution environment.
pub struct GuestControl {
    pub hcr: u64,
    pub vttbr: u64,
    pub vtcr: u64,
    pub vmpidr: u64,
    pub cntvoff: u64,
}

/// HCR_EL2 for guests (Arm ARM D19.2.48): VM (stage 2), SWIO, FMO/IMO/AMO
/// (physical interrupts to EL2, virtual ones to the guest), TSC (SMC traps),
/// TWI (WFI traps), RW (EL1 is AArch64), FB and BSU=inner (broadcast TLB and
/// barrier maintenance within the inner shareable domain), TID3 (the
/// feature ID registers come from the CPU feature policy,
/// `arch::cpu_features`), TIDCP (IMPLEMENTATION DEFINED registers are
/// UNDEFINED) and TACR (ACTLR_EL1 is RAZ/WI). The feature-dependent bits
/// come from [`super::features::hcr_bits`].
///
/// Left clear on purpose (docs/security.md has the whole table): TSW,
/// because with VM set a DC ISW from EL1 executes as DC CISW (HCR_EL2.VM
/// field description), so set/way operations can only write lines back,
/// never discard another VM's data, and pinned vCPUs never straddle CPUs;
/// TWE (WFE is a spin hint inside the guest); TID1/TID2 (AIDR, REVIDR and
/// the cache geometry are the real CPU's); TVM/TRVM/TTLB/TPU/TPCP (the
/// guest's own stage 1 and maintenance, bounded by stage 2).
pub const HCR_GUEST: u64 = HCR_EL2::VM::Enable.value
    | HCR_EL2::SWIO::SET.value
    | HCR_EL2::FMO::EnableVirtualFIQ.value
    | HCR_EL2::IMO::EnableVirtualIRQ.value
    | HCR_EL2::AMO::SET.value
    | HCR_EL2::FB::SET.value
    | HCR_EL2::BSU::InnerShareable.value
    | HCR_EL2::TWI::SET.value
    | HCR_EL2::TID3::SET.value
    | HCR_EL2::TSC::EnableTrapEl1SmcToEl2.value
    | HCR_EL2::TIDCP::SET.value
    | HCR_EL2::TACR::SET.value
    | HCR_EL2::RW::EL1IsAarch64.value;

/// Loads a VM's control registers on this CPU.
pub fn load_guest_control(c: &GuestControl) {
    super::features::load_guest_controls();
    let hcr = c.hcr | super::features::hcr_bits(&super::features::view().features);
    let midr: u64;
    // SAFETY: these registers only shape the EL1/EL0 world; the hypervisor's
    // own EL2 translation and exception handling are unaffected. CNTHCTL
    // gives EL1 the physical counter and timer (EL1PCTEN, EL1PCEN); ECV
    // [12] stays clear, so no CNTPOFF_EL2 offset applies to the guest's
    // physical timer, whose PPI 30 is forwarded like the virtual one.
    // MDCR_EL2.HPMN = PMCR_EL0.N hands the guest every PMU counter (HPMN = 0
    // would be reserved without FEAT_HPMN0); the other MDCR_EL2 bits come
    // from the feature policy (GuestFeatures::mdcr).
    unsafe {
        asm!("mrs {}, midr_el1", out(reg) midr, options(nomem, nostack, preserves_flags));
        asm!(
            "msr vtcr_el2, {vtcr}",
            "msr vttbr_el2, {vttbr}",
            "msr vpidr_el2, {midr}",
            "msr vmpidr_el2, {vmpidr}",
            "msr cntvoff_el2, {cntvoff}",
            "msr cnthctl_el2, {cnthctl}",
            "mrs {tmp}, pmcr_el0",
            "ubfx {tmp}, {tmp}, #11, #5",
            "orr {tmp}, {tmp}, {mdcr}",
            "msr mdcr_el2, {tmp}",
            "msr hcr_el2, {hcr}",
            "isb",
            vtcr = in(reg) c.vtcr,
            vttbr = in(reg) c.vttbr,
            midr = in(reg) midr,
            vmpidr = in(reg) c.vmpidr,
            cntvoff = in(reg) c.cntvoff,
            cnthctl = in(reg) 3u64,
            hcr = in(reg) hcr,
            mdcr = in(reg) super::features::view().features.mdcr(),
            tmp = out(reg) _,
            options(nomem, nostack, preserves_flags)
        );
    }
}

/// Enters the guest described by `frame`, which must sit at the very top of
/// this CPU's EL2 stack: the vectors build every later trap frame at that
/// same place, so the guest's registers always live there while it runs.
pub fn enter_guest(frame: &TrapFrame) -> ! {
    // SAFETY: `frame` is a complete trap frame at the top of this CPU's
    // stack; `exception_return` restores it and ERETs, leaving SP_EL2 at the
    // stack top. Nothing on the stack below it is needed any more.
    unsafe {
        asm!(
            "mov sp, {frame}",
            "b exception_return",
            frame = in(reg) frame as *const TrapFrame,
            options(noreturn)
        )
    }
}

/// Runs `f` on this CPU's stack from the top, discarding everything on it.
/// Used to go back to the run loop from deep inside a trap handler.
pub fn run_on_fresh_stack(stack_top: u64, f: extern "C" fn() -> !) -> ! {
    // SAFETY: nothing on this CPU's stack is used after the switch, and `f`
    // never returns.
    unsafe {
        asm!(
            "mov sp, {top}",
            "mov x29, xzr",
            "mov x30, xzr",
            "br {f}",
            top = in(reg) stack_top,
            f = in(reg) f,
            options(noreturn)
        )
    }
}
