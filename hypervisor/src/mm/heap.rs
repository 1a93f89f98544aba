//! The hypervisor heap: a buddy allocator over a region reserved in BSS.
//!
//! The heap lock is a normal spin lock, so NMI paths never allocate.

use buddy_system_allocator::LockedHeap;
use core::cell::UnsafeCell;

/// Heap size. Page tables and boot-time data live here; guest memory will
/// be carved from RAM separately.
pub const HEAP_SIZE: usize = 8 * 1024 * 1024;

#[repr(C, align(4096))]
struct HeapSpace(UnsafeCell<[u8; HEAP_SIZE]>);

// SAFETY: the space is handed to the allocator once, in `init`, and only
// reached through it afterwards.
unsafe impl Sync for HeapSpace {}

static HEAP_SPACE: HeapSpace = HeapSpace(UnsafeCell::new([0; HEAP_SIZE]));

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Hands the reserved region to the allocator. Called once by the boot CPU.
pub fn init() {
    let start = HEAP_SPACE.0.get() as usize;
    // SAFETY: HEAP_SPACE is a static region used by nothing else, and `init`
    // runs once, before any allocation.
    unsafe { HEAP.lock().init(start, HEAP_SIZE) };
}
