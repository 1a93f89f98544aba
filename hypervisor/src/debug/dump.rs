//! Register dumps and backtraces printed on the console.

use crate::arch::cpu;
use crate::arch::esr::Esr;
use crate::arch::percpu::{cpu_id, stack_of, this_cpu};
use crate::arch::vectors::{TrapFrame, VectorKind};
use crate::console;
use crate::debug::symbols::{describe, describe_return};
use crate::debug::unwind::{Memory, Stop, Unwinder};
use crate::println;
use core::ops::Range;
use symtab::SymbolTable;

/// Most frames a backtrace prints.
const MAX_FRAMES: usize = 32;

extern "C" {
    static __symtab_start: u8;
    static __symtab_end: u8;
}

/// The symbol table xtask embedded in the image, if it is there (an image
/// linked without xtask's patch step has an all-zero table).
pub fn symbols() -> Option<SymbolTable<'static>> {
    // SAFETY: the linker script reserves [__symtab_start, __symtab_end) in
    // the read-only data of the image; it is mapped and never written.
    let blob = unsafe {
        let start = core::ptr::addr_of!(__symtab_start);
        let end = core::ptr::addr_of!(__symtab_end) as usize;
        core::slice::from_raw_parts(start, end - start as usize)
    };
    SymbolTable::parse(blob).ok()
}

/// Reads EL2 stack memory for the unwinder. `Unwinder` only asks for words
/// inside the stack range it was given, which is always an EL2 stack.
struct StackMemory {
    range: Range<u64>,
}

impl Memory for StackMemory {
    fn read_u64(&self, addr: u64) -> Option<u64> {
        if !addr.is_multiple_of(8)
            || addr < self.range.start
            || addr.checked_add(8)? > self.range.end
        {
            return None;
        }
        // SAFETY: `addr` is an aligned word inside a per-CPU stack, which is
        // mapped read/write for the whole life of the hypervisor.
        Some(unsafe { core::ptr::read_volatile(addr as *const u64) })
    }
}

/// Prints a frame-pointer backtrace. Frame #0 is `pc` when given (the
/// interrupted instruction); the rest are return addresses unwound from the
/// frame record at `fp`.
pub fn print_backtrace(pc: Option<u64>, fp: u64, stack: Range<u64>) {
    let table = symbols();
    let mem = StackMemory {
        range: stack.clone(),
    };
    println!("backtrace:");
    let mut n = 0;
    if let Some(pc) = pc {
        println!("  #0 {}", describe(table.as_ref(), pc));
        n = 1;
    }
    let mut unwinder = Unwinder::new(fp, stack, &mem, MAX_FRAMES);
    for ret in unwinder.by_ref() {
        println!("  #{n} {}", describe_return(table.as_ref(), ret));
        n += 1;
    }
    if n == 0 {
        println!("  (no frame records)");
    }
    if let Some(why) = unwinder.stop_reason().filter(|&why| why != Stop::End) {
        println!("  (unwind stopped: {why})");
    }
}

/// Prints the general-purpose registers of a trap frame, four per line.
pub fn print_registers(frame: &TrapFrame) {
    for row in 0..8 {
        let mut line = console::LineBuf::new();
        for col in 0..4 {
            let i = row * 4 + col;
            let _ = match i {
                0..=30 => core::fmt::Write::write_fmt(
                    &mut line,
                    format_args!(" x{:<3}{:#018x}", i, frame.x[i]),
                ),
                _ => {
                    core::fmt::Write::write_fmt(&mut line, format_args!(" sp  {:#018x}", frame.sp))
                }
            };
        }
        println!("{}", line.as_str());
    }
}

/// The report for an exception nmivisor did not expect.
pub fn unexpected_exception(kind: VectorKind, frame: &TrapFrame) {
    let _console = console::lock_for_crash();
    let cpu = cpu_id();
    let (ty, from) = kind.describe();
    let table = symbols();
    println!("*** unexpected exception: {ty} from {from} on cpu {cpu} ***");
    println!("ESR_EL2 {}  FAR_EL2 {:#018x}", Esr(frame.esr), frame.far);
    println!(
        "ELR_EL2 {}  SPSR_EL2 {:#018x}",
        describe(table.as_ref(), frame.elr),
        frame.spsr
    );
    println!(
        "MPIDR {:#x}  DAIF {:#x}",
        this_cpu().mpidr.load(core::sync::atomic::Ordering::Relaxed),
        cpu::daif()
    );
    print_registers(frame);
    let stack = if kind.source() < 2 {
        stack_of(cpu)
    } else {
        0..0
    };
    print_backtrace(Some(frame.elr), frame.x[29], stack);
    println!("cpu {cpu} halted");
    crate::debug::roundup::mark_stopped(cpu);
}
