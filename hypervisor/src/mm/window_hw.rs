//! Guest-RAM windows on the hardware: mapping a 2 MiB block of guest RAM
//! into one of this CPU's windows, and the accesses built on that (copies,
//! zeroing, cache cleaning). See [`super::window`] for the layout.

use super::window::{pieces, slot_index, slot_va, BLOCK, SLOTS_PER_CPU};
use crate::arch::el2map::{install_block, remove_block};
use crate::arch::percpu::cpu_id;
use crate::arch::{cpu, MAX_CPUS};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};
use spin::Once;

/// Address of each window's level-2 entry in the EL2 map, by slot index.
static ENTRIES: Once<Vec<usize>> = Once::new();
/// The block descriptor's attribute bits (Normal write-back, inner
/// shareable, accessed, execute-never), from the EL2 map.
static ATTRIBUTES: Once<u64> = Once::new();
/// Windows each CPU has in use (its next free slot).
static DEPTH: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

/// Records where the windows' entries are (boot CPU, once, from
/// `el2::init`, before any window is used).
pub fn init(entries: Vec<usize>, attributes: u64) {
    ENTRIES.call_once(|| entries);
    ATTRIBUTES.call_once(|| attributes);
}

/// One mapped window; unmapped when dropped.
struct Window {
    cpu: usize,
    entry: usize,
    va: u64,
}

impl Window {
    /// Maps the 2 MiB block at `block_pa` into this CPU's next window.
    /// None if the CPU's windows are all in use (more nesting than thread,
    /// interrupt and NMI) or the windows are not set up.
    fn map(block_pa: u64) -> Option<Window> {
        let cpu = cpu_id();
        let depth_of = DEPTH.get(cpu)?;
        let depth = depth_of.fetch_add(1, Ordering::Relaxed);
        let slot = (depth < SLOTS_PER_CPU).then(|| slot_index(cpu, depth));
        let entry = slot.and_then(|s| ENTRIES.get()?.get(s).copied());
        let (Some(slot), Some(entry), Some(&attributes)) = (slot, entry, ATTRIBUTES.get()) else {
            depth_of.fetch_sub(1, Ordering::Relaxed);
            return None;
        };
        // SAFETY: `entry` is the level-2 entry of this CPU's window at this
        // depth; it is invalid (every window is unmapped when dropped, and
        // nested users take deeper slots), and only this CPU writes it.
        unsafe { install_block(entry, (block_pa & !(BLOCK - 1)) | attributes) };
        Some(Window {
            cpu,
            entry,
            va: slot_va(slot),
        })
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: this window's entry, mapped by `map`; the borrow that used
        // it has ended.
        unsafe { remove_block(self.entry, self.va) };
        DEPTH[self.cpu].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `f(va, len)` on every piece of the physical range `pa..pa+len`,
/// each mapped through a window. False if a window was not available.
fn each_piece(pa: u64, len: u64, mut f: impl FnMut(u64, u64, u64)) -> bool {
    let mut done = 0;
    for p in pieces(pa, len) {
        let Some(w) = Window::map(p.block_pa) else {
            return false;
        };
        f(w.va + p.offset, p.len, done);
        done += p.len;
    }
    true
}

/// Copies guest RAM at physical `pa` into `buf`.
///
/// The caller has checked that the range lies in one VM's RAM.
pub fn read(pa: u64, buf: &mut [u8]) -> bool {
    each_piece(pa, buf.len() as u64, |va, len, done| {
        let dst = &mut buf[done as usize..(done + len) as usize];
        // SAFETY: `va..va+len` is mapped by a window onto guest RAM as
        // normal memory for the duration of this call; the guest may
        // change it concurrently, which only affects the bytes read.
        unsafe { core::ptr::copy_nonoverlapping(va as *const u8, dst.as_mut_ptr(), dst.len()) };
    })
}

/// Copies `data` into guest RAM at physical `pa`, and cleans it to the
/// Point of Coherency when `clean` (the guest may read it with its caches
/// off).
pub fn write(pa: u64, data: &[u8], clean: bool) -> bool {
    each_piece(pa, data.len() as u64, |va, len, done| {
        let src = &data[done as usize..(done + len) as usize];
        // SAFETY: as in `read`; the range is guest RAM the caller owns
        // for this write.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), va as *mut u8, src.len()) };
        if clean {
            cpu::clean_to_poc(va, len);
        }
    })
}

/// Zeroes guest RAM at physical `pa` and cleans it to the Point of
/// Coherency (before a VM first runs).
pub fn zero(pa: u64, len: u64) -> bool {
    each_piece(pa, len, |va, len, _| {
        // SAFETY: the window maps `va..va+len` as normal memory, and the
        // VM that owns this RAM is not running yet.
        unsafe { cpu::zero_and_clean(va, len) };
    })
}

/// Runs `f` with the block at `block_pa` mapped in a window, giving it the
/// window's VA (the `el2-map` test hook checks the translation).
#[cfg(feature = "test-hooks")]
pub fn with_window<R>(block_pa: u64, f: impl FnOnce(u64) -> R) -> Option<R> {
    let w = Window::map(block_pa)?;
    Some(f(w.va))
}
