//! VMs and vCPUs: what exists once the bundle has been admitted.
//!
//! The table of VMs is built once on the boot CPU and never changes shape;
//! what changes at run time (power states, VM state, start requests) is in
//! atomics or small locks that no NMI path takes.

use super::console::LineBuffer;
use super::layout::Layout;
use crate::arch::percpu::cpu_id;
use crate::arch::Mutex;
use crate::arch::MAX_CPUS;
use crate::devices::pl011::Pl011;
use crate::mm::stage2::Stage2Tables;
use crate::vgic::Vgic;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use spin::Once;

/// A vCPU's PSCI power state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Power {
    Off = 0,
    OnPending = 1,
    On = 2,
}

/// Where a vCPU starts: PSCI CPU_ON's entry point and context ID.
#[derive(Clone, Copy, Debug, Default)]
pub struct StartRequest {
    pub entry: u64,
    pub context: u64,
}

/// One virtual CPU, pinned to one physical CPU.
pub struct Vcpu {
    pub index: usize,
    /// The MPIDR the guest reads (VMPIDR_EL2 without the RES1 bit).
    pub mpidr: u64,
    /// The physical CPU that runs it.
    pub pcpu: usize,
    power: AtomicU8,
    /// True while its physical CPU is in the guest or in a trap from it.
    resident: AtomicBool,
    start: Mutex<StartRequest>,
}

impl Vcpu {
    /// vCPU `index` gets Aff0 = index % 16 and Aff1 = index / 16, so that
    /// ICC_SGI1R's 16-bit target lists can reach every vCPU.
    pub fn new(index: usize, pcpu: usize) -> Self {
        let mpidr = ((index as u64 / 16) << 8) | (index as u64 % 16);
        Vcpu {
            index,
            mpidr,
            pcpu,
            power: AtomicU8::new(Power::Off as u8),
            resident: AtomicBool::new(false),
            start: Mutex::new(StartRequest::default()),
        }
    }

    /// Its PSCI power state.
    pub fn power(&self) -> Power {
        match self.power.load(Ordering::Acquire) {
            2 => Power::On,
            1 => Power::OnPending,
            _ => Power::Off,
        }
    }

    /// Sets its power state (PSCI CPU_OFF, a VM stop).
    pub fn set_power(&self, p: Power) {
        self.power.store(p as u8, Ordering::Release);
    }

    /// Whether its physical CPU is running it (or handling one of its traps).
    pub fn is_resident(&self) -> bool {
        self.resident.load(Ordering::Acquire)
    }

    /// Marks whether its physical CPU is in the guest or in one of its traps.
    pub fn set_resident(&self, r: bool) {
        self.resident.store(r, Ordering::Release);
    }

    /// Asks for the vCPU to start at `req`; fails unless it is off.
    pub fn request_start(&self, req: StartRequest) -> bool {
        let mut slot = self.start.lock();
        if self
            .power
            .compare_exchange(
                Power::Off as u8,
                Power::OnPending as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return false;
        }
        *slot = req;
        true
    }

    /// Claims a pending start on the vCPU's own CPU: OnPending -> On and
    /// marks it resident. None if the start was withdrawn meanwhile.
    pub fn claim_start(&self) -> Option<StartRequest> {
        let req = self.start.lock();
        self.set_resident(true);
        let claimed = self
            .power
            .compare_exchange(
                Power::OnPending as u8,
                Power::On as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if !claimed {
            self.set_resident(false);
        }
        claimed.then_some(*req)
    }
}

/// A vCPU's guest registers as a VM-scoped dump reports them.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestSnapshot {
    pub vcpu: usize,
    /// The exception level the guest was at.
    pub el: u64,
    /// Whether the CPU was in the hypervisor handling a trap for it.
    pub trapped: bool,
    pub pc: u64,
    pub lr: u64,
    pub sp: u64,
    pub spsr: u64,
    pub esr: u64,
    pub vpmr: u8,
}

/// What a VM is doing as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum VmState {
    Running = 0,
    Resetting = 1,
    Stopped = 2,
}

/// [`Vm::uart_level`] before the line was first driven.
pub const UART_LEVEL_UNKNOWN: u8 = 2;

/// One virtual machine.
pub struct Vm {
    pub name: String,
    /// Guest RAM as IPAs.
    pub ram: Range<u64>,
    /// Host PA of the first byte of guest RAM.
    pub ram_pa: u64,
    pub vcpus: Vec<Vcpu>,
    pub stage2: Stage2Tables,
    /// CNTVOFF_EL2 for every vCPU, so the guest's virtual counter starts
    /// near zero and is the same on all its vCPUs.
    pub cntvoff: u64,
    pub layout: Layout,
    pub image: &'static [u8],
    pub initrd: Option<&'static [u8]>,
    pub dtb: Vec<u8>,
    /// The emulated GICv3; take it through `vm::vgic::lock`.
    pub vgic: Mutex<Vgic>,
    /// Bumped by every vGIC change (see `vm::vgic::lock`).
    pub vgic_generation: AtomicU64,
    /// The emulated PL011; see `vm::uart`.
    pub uart: Mutex<Pl011>,
    /// The level the UART's interrupt line was last driven to in the vGIC
    /// ([`UART_LEVEL_UNKNOWN`] after a vGIC reset); read and written with
    /// `uart` locked, so that the vGIC sees every change in order and an
    /// access that leaves the level as it was costs no vGIC lock.
    pub uart_level: AtomicU8,
    /// The bundle's `dump = on`: NMV_DUMP is allowed.
    pub dump_allowed: bool,
    /// The guest kernel's symbols (the bundle's `symbols` file), for the
    /// guest backtraces of dumps.
    pub symbols: Option<super::guest_symbols::SystemMap<'static>>,
    /// The guest lockup detector's threshold in counter ticks; 0 = off.
    pub lockup_ticks: u64,
    /// Counter value of the last dump NMV_DUMP ran (rate limit).
    pub last_dump: AtomicU64,
    /// This VM's own limit on log lines about what it does.
    pub log_limit: crate::console::ratelimit::RateLimit,
    state: AtomicU8,
    /// The partial line of queued output when several VMs share the console;
    /// only the CPU draining the queues takes it (see `vm::uart::drain`).
    pub console_lines: Mutex<LineBuffer>,
}

impl Vm {
    /// A VM from what `vm::create` built; not running until a vCPU starts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        ram: Range<u64>,
        ram_pa: u64,
        vcpus: Vec<Vcpu>,
        stage2: Stage2Tables,
        cntvoff: u64,
        layout: Layout,
        image: &'static [u8],
        initrd: Option<&'static [u8]>,
        dtb: Vec<u8>,
        vgic: Vgic,
    ) -> Self {
        Vm {
            vgic: Mutex::new(vgic),
            vgic_generation: AtomicU64::new(0),
            uart: Mutex::new(Pl011::new()),
            uart_level: AtomicU8::new(UART_LEVEL_UNKNOWN),
            name,
            ram,
            ram_pa,
            vcpus,
            stage2,
            cntvoff,
            layout,
            image,
            initrd,
            dtb,
            dump_allowed: false,
            symbols: None,
            lockup_ticks: 0,
            last_dump: AtomicU64::new(0),
            log_limit: crate::console::ratelimit::RateLimit::new(),
            state: AtomicU8::new(VmState::Running as u8),
            console_lines: Mutex::new(LineBuffer::new()),
        }
    }

    /// What the VM is doing as a whole.
    pub fn state(&self) -> VmState {
        match self.state.load(Ordering::Acquire) {
            0 => VmState::Running,
            1 => VmState::Resetting,
            _ => VmState::Stopped,
        }
    }

    /// Records a VM-wide change (reset, stop).
    pub fn set_state(&self, s: VmState) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// The host PA range backing guest IPAs `ipa..ipa+len`, if wholly in RAM.
    pub fn ipa_to_pa(&self, ipa: u64, len: u64) -> Option<u64> {
        let end = ipa.checked_add(len)?;
        (ipa >= self.ram.start && end <= self.ram.end).then(|| ipa - self.ram.start + self.ram_pa)
    }

    /// Copies guest memory at `ipa` into `buf`; None if any byte is outside
    /// guest RAM (the guest never makes the hypervisor read elsewhere).
    /// Goes through this CPU's window onto guest RAM (`mm::window`), so it
    /// works in any context, the NMI path included.
    pub fn read_guest(&self, ipa: u64, buf: &mut [u8]) -> Option<()> {
        let pa = self.ipa_to_pa(ipa, buf.len() as u64)?;
        crate::mm::window_hw::read(pa, buf).then_some(())
    }

    /// Loads the kernel, initrd and device tree into guest RAM (at creation
    /// and on SYSTEM_RESET), and cleans them to the Point of Coherency: the
    /// guest starts with its MMU and caches off and must see these bytes,
    /// not stale memory (QEMU has no caches to show the difference; real
    /// hardware does).
    pub fn load(&self) -> Option<()> {
        self.write_clean(self.layout.kernel.start, self.image)?;
        if let (Some(range), Some(initrd)) = (&self.layout.initrd, self.initrd) {
            self.write_clean(range.start, initrd)?;
        }
        self.write_clean(self.layout.dtb.start, &self.dtb)?;
        crate::arch::cpu::invalidate_icache();
        Some(())
    }

    fn write_clean(&self, ipa: u64, data: &[u8]) -> Option<()> {
        let pa = self.ipa_to_pa(ipa, data.len() as u64)?;
        crate::mm::window_hw::write(pa, data, true).then_some(())
    }

    /// Hypervisor text addressed to this VM's user (the answer to the VM's
    /// own NMV_DUMP): printed at once, after what the VM has queued, with the
    /// VM's name in front when several VMs share the console.
    pub fn console_note(&self, text: &str) {
        super::uart::flush(self);
        for line in text.lines() {
            if several_vms() {
                crate::println!("[{}] {line}", self.name);
            } else {
                crate::println!("{line}");
            }
        }
    }

    /// The vCPU a guest names by its MPIDR (PSCI calls, SGI targets).
    pub fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<&Vcpu> {
        self.vcpus.iter().find(|v| v.mpidr == mpidr)
    }
}

static VMS: Once<Vec<Vm>> = Once::new();
/// Physical CPU -> (VM index << 8 | vCPU index), or NONE.
static OWNER: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(NONE) }; MAX_CPUS];
const NONE: usize = usize::MAX;

/// Installs the VM table (boot CPU, once) and pins every vCPU.
pub fn install(vms: Vec<Vm>) -> &'static [Vm] {
    let vms = VMS.call_once(|| vms);
    for (v, vm) in vms.iter().enumerate() {
        for vcpu in &vm.vcpus {
            if let Some(slot) = OWNER.get(vcpu.pcpu) {
                slot.store(v << 8 | vcpu.index, Ordering::Release);
            }
        }
    }
    vms
}

/// Every VM (empty before the bundle is admitted).
pub fn vms() -> &'static [Vm] {
    VMS.get().map_or(&[], Vec::as_slice)
}

fn several_vms() -> bool {
    vms().len() > 1
}

/// The vCPU pinned to physical CPU `pcpu`, if any.
pub fn owned_by(pcpu: usize) -> Option<(&'static Vm, &'static Vcpu)> {
    let v = OWNER.get(pcpu)?.load(Ordering::Acquire);
    if v == NONE {
        return None;
    }
    let vm = vms().get(v >> 8)?;
    Some((vm, vm.vcpus.get(v & 0xff)?))
}

/// The vCPU of the calling physical CPU.
#[inline]
pub fn current() -> Option<(&'static Vm, &'static Vcpu)> {
    owned_by(cpu_id())
}
