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
use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;
use core::arch::asm;

macro_rules! el1_context {
    ($($field:ident => $reg:ident),* $(,)?) => {
        /// Every EL1 (and EL0) register a guest owns.
        #[derive(Clone, Debug, Default)]
        pub struct El1Context {
            $(pub $field: u64,)*
        }

        impl El1Context {
            /// Reads the live registers.
            pub fn save() -> Self {
                Self {
                    $($field: $reg.get(),)*
                }
            }

            /// Writes every register. Only called on the physical CPU that
            /// will run this vCPU, before entering it. These registers only
            /// affect EL1/EL0 execution, which belongs to the guest about to
            /// run.
            pub fn restore(&self) {
                $($reg.set(self.$field);)*
                barrier::isb(barrier::SY);
            }
        }
    };
}

el1_context! {
    sctlr => SCTLR_EL1,
    actlr => ACTLR_EL1,
    cpacr => CPACR_EL1,
    ttbr0 => TTBR0_EL1,
    ttbr1 => TTBR1_EL1,
    tcr => TCR_EL1,
    mair => MAIR_EL1,
    amair => AMAIR_EL1,
    vbar => VBAR_EL1,
    contextidr => CONTEXTIDR_EL1,
    tpidr_el0 => TPIDR_EL0,
    tpidrro_el0 => TPIDRRO_EL0,
    tpidr_el1 => TPIDR_EL1,
    esr => ESR_EL1,
    far => FAR_EL1,
    afsr0 => AFSR0_EL1,
    afsr1 => AFSR1_EL1,
    par => PAR_EL1,
    csselr => CSSELR_EL1,
    cntkctl => CNTKCTL_EL1,
    mdscr => MDSCR_EL1,
    sp_el0 => SP_EL0,
    sp_el1 => SP_EL1,
    elr => ELR_EL1,
    spsr => SPSR_EL1,
    cntv_ctl => CNTV_CTL_EL0,
    cntv_cval => CNTV_CVAL_EL0,
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
#[inline]
pub fn guest_sp(spsr: u64) -> u64 {
    if spsr & 0xf == 0 {
        SP_EL0.get()
    } else {
        SP_EL1.get()
    }
}

/// The guest's last EL1 exception syndrome (ESR_EL1), for dumps.
#[inline]
pub fn guest_esr() -> u64 {
    ESR_EL1.get()
}

/// Writes the registers an exception injected into EL1 sets
/// (Arm ARM D1.10.2): ESR_EL1, FAR_EL1, ELR_EL1 and SPSR_EL1, the guest's
/// own EL1 exception registers.
#[inline]
pub fn set_exception_regs(esr: u64, far: u64, elr: u64, spsr: u64) {
    ESR_EL1.set(esr);
    FAR_EL1.set(far);
    ELR_EL1.set(elr);
    SPSR_EL1.set(spsr);
}

/// SCTLR_EL1 of the running guest.
#[inline]
pub fn guest_sctlr() -> u64 {
    SCTLR_EL1.get()
}

/// VBAR_EL1 of the running guest.
#[inline]
pub fn guest_vbar() -> u64 {
    VBAR_EL1.get()
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
///
/// These registers only shape the EL1/EL0 world; the hypervisor's own EL2
/// translation and exception handling are unaffected. CNTHCTL gives EL1 the
/// physical counter and timer (EL1PCTEN, EL1PCEN); ECV [12] stays clear, so
/// no CNTPOFF_EL2 offset applies to the guest's physical timer, whose PPI
/// 30 is forwarded like the virtual one. MDCR_EL2.HPMN = PMCR_EL0.N hands
/// the guest every PMU counter (HPMN = 0 would be reserved without
/// FEAT_HPMN0); the other MDCR_EL2 bits come from the feature policy
/// (GuestFeatures::mdcr).
pub fn load_guest_control(c: &GuestControl) {
    use arm_sysregs::el0::accessors::read_pmcr_el0;
    use arm_sysregs::el2::{accessors::write_vpidr_el2, registers::VpidrEl2};
    super::features::load_guest_controls();
    let hcr = c.hcr | super::features::hcr_bits(&super::features::view().features);
    VTCR_EL2.set(c.vtcr);
    VTTBR_EL2.set(c.vttbr);
    // aarch64-cpu lacks VPIDR_EL2; arm-sysregs types it.
    write_vpidr_el2(VpidrEl2::from_bits_retain(MIDR_EL1.get()));
    VMPIDR_EL2.set(c.vmpidr);
    CNTVOFF_EL2.set(c.cntvoff);
    CNTHCTL_EL2.write(CNTHCTL_EL2::EL1PCTEN::SET + CNTHCTL_EL2::EL1PCEN::SET);
    // aarch64-cpu lacks PMCR_EL0; arm-sysregs types it.
    let hpmn = u64::from(read_pmcr_el0().n());
    MDCR_EL2.set(super::features::view().features.mdcr() | MDCR_EL2::HPMN.val(hpmn).value);
    HCR_EL2.set(hcr);
    barrier::isb(barrier::SY);
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
