//! VMs and vCPUs: what exists once the bundle has been admitted.
//!
//! The table of VMs is built once on the boot CPU and never changes shape;
//! what changes at run time (power states, VM state, start requests) is in
//! atomics or small locks that no NMI path takes.

use super::console::{sanitize, LineBuffer, MAX_LINE};
use super::layout::Layout;
use crate::arch::percpu::cpu_id;
use crate::arch::MAX_CPUS;
use crate::mm::stage2::Stage2Tables;
use crate::devices::pl011::Pl011;
use crate::vgic::Vgic;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use crate::arch::Mutex;
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

    pub fn power(&self) -> Power {
        match self.power.load(Ordering::Acquire) {
            2 => Power::On,
            1 => Power::OnPending,
            _ => Power::Off,
        }
    }

    pub fn set_power(&self, p: Power) {
        self.power.store(p as u8, Ordering::Release);
    }

    /// Whether its physical CPU is running it (or handling one of its traps).
    pub fn is_resident(&self) -> bool {
        self.resident.load(Ordering::Acquire)
    }

    pub fn set_resident(&self, r: bool) {
        self.resident.store(r, Ordering::Release);
    }

    /// Asks for the vCPU to start at `req`; fails unless it is off.
    pub fn request_start(&self, req: StartRequest) -> bool {
        let mut slot = self.start.lock();
        if self
            .power
            .compare_exchange(Power::Off as u8, Power::OnPending as u8, Ordering::AcqRel, Ordering::Acquire)
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
            .compare_exchange(Power::OnPending as u8, Power::On as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if !claimed {
            self.set_resident(false);
        }
        claimed.then_some(*req)
    }
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
    /// The emulated GICv3; take it through `vgic::hw::lock`.
    pub vgic: Mutex<Vgic>,
    /// Bumped by every vGIC change (see `vgic::hw::lock`).
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
    /// Counter value of the last dump NMV_DUMP ran (rate limit).
    pub last_dump: AtomicU64,
    /// This VM's own limit on log lines about what it does.
    pub log_limit: crate::debug::ratelimit::RateLimit,
    state: AtomicU8,
    console: Mutex<LineBuffer>,
}

impl Vm {
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
            last_dump: AtomicU64::new(0),
            log_limit: crate::debug::ratelimit::RateLimit::new(),
            state: AtomicU8::new(VmState::Running as u8),
            console: Mutex::new(LineBuffer::new()),
        }
    }

    pub fn state(&self) -> VmState {
        match self.state.load(Ordering::Acquire) {
            0 => VmState::Running,
            1 => VmState::Resetting,
            _ => VmState::Stopped,
        }
    }

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
    pub fn read_guest(&self, ipa: u64, buf: &mut [u8]) -> Option<()> {
        let pa = self.ipa_to_pa(ipa, buf.len() as u64)?;
        // SAFETY: `pa..pa+len` lies inside this VM's RAM, which the EL2 map
        // covers as normal memory; the guest may change it concurrently,
        // which only affects the bytes read.
        unsafe { core::ptr::copy_nonoverlapping(pa as *const u8, buf.as_mut_ptr(), buf.len()) };
        Some(())
    }

    /// Copies `data` into guest memory at `ipa`.
    pub fn write_guest(&self, ipa: u64, data: &[u8]) -> Option<()> {
        let pa = self.ipa_to_pa(ipa, data.len() as u64)?;
        // SAFETY: as in `read_guest`; this VM's RAM belongs to no one else.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), pa as *mut u8, data.len()) };
        Some(())
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
        self.write_guest(ipa, data)?;
        let pa = self.ipa_to_pa(ipa, data.len() as u64)?;
        crate::arch::cpu::clean_to_poc(pa, data.len() as u64);
        Some(())
    }

    /// Guest console output. With one VM the guest owns the terminal and
    /// its bytes pass through as they are (prompts and line editing work).
    /// With several, output is collected into whole lines, sanitized and
    /// prefixed with the VM's name, so VMs never mix mid-line.
    pub fn console_write(&self, bytes: &[u8]) {
        if !several_vms() {
            crate::console::write_raw(bytes);
            return;
        }
        let mut buf = self.console.lock();
        buf.push(bytes, |line, continued| {
            let mut clean = [0u8; MAX_LINE];
            let n = sanitize(line, &mut clean);
            let text = core::str::from_utf8(&clean[..n]).unwrap_or("");
            let cont = if continued { "\\" } else { "" };
            crate::println!("[{}] {text}{cont}", self.name);
        });
    }

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
pub fn current() -> Option<(&'static Vm, &'static Vcpu)> {
    owned_by(cpu_id())
}
