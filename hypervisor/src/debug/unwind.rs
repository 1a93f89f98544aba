//! A frame-pointer unwinder over AArch64 (AAPCS64) frame records: x29 points
//! at a record whose first word is the caller's x29 and whose second is the
//! return address. The image is built with frame pointers forced on.
//!
//! Dumps run on CPUs in unknown states, so the unwinder trusts nothing it
//! reads: it never reads outside the stack it was given, requires records to
//! be aligned and each caller's record to lie strictly higher than the callee's
//! (so a corrupted chain cannot loop), and stops after a frame limit.

use core::fmt;
use core::ops::Range;

/// Read access to the memory holding the stack; tests use a fake one.
pub trait Memory {
    /// The 64-bit word at `addr`, or `None` if it cannot be read.
    fn read_u64(&self, addr: u64) -> Option<u64>;
}

impl<M: Memory + ?Sized> Memory for &M {
    fn read_u64(&self, addr: u64) -> Option<u64> {
        (**self).read_u64(addr)
    }
}

/// Size of a frame record: saved x29, then saved x30.
const RECORD_LEN: u64 = 16;
/// Alignment a frame record must have: two X registers stored by `stp` at
/// an 8-byte-aligned address (what Linux's arm64 unwinder checks too).
const RECORD_ALIGN: u64 = 8;

/// Why the unwinder stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The chain ended normally: a frame pointer or return address of 0.
    End,
    /// A frame record did not lie wholly inside the stack.
    OutsideStack,
    /// A frame pointer was not aligned.
    Misaligned,
    /// A caller's frame was not above its callee's: a loop or corruption.
    NotIncreasing,
    /// Memory inside the stack could not be read.
    Unreadable,
    /// `max_frames` return addresses were produced.
    Limit,
}

/// What a backtrace prints after its frames.
impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stop::End => "end of the frame chain",
            Stop::OutsideStack => "frame record outside the stack",
            Stop::Misaligned => "misaligned frame pointer",
            Stop::NotIncreasing => "caller frame not above its callee",
            Stop::Unreadable => "unreadable stack memory",
            Stop::Limit => "frame limit reached",
        })
    }
}

/// Iterator over the return addresses of a frame-record chain, innermost
/// first. The caller prints the interrupted PC itself.
#[derive(Debug)]
pub struct Unwinder<M> {
    fp: u64,
    stack: Range<u64>,
    mem: M,
    remaining: usize,
    stopped: Option<Stop>,
}

impl<M: Memory> Unwinder<M> {
    /// Starts at frame pointer `fp` (the interrupted x29) on the stack that
    /// occupies `stack`, yielding at most `max_frames` addresses.
    pub fn new(fp: u64, stack: Range<u64>, mem: M, max_frames: usize) -> Self {
        Unwinder {
            fp,
            stack,
            mem,
            remaining: max_frames,
            stopped: None,
        }
    }

    /// Why iteration ended, once it has (`None` while frames may remain).
    pub fn stop_reason(&self) -> Option<Stop> {
        self.stopped
    }

    fn stop(&mut self, why: Stop) -> Option<u64> {
        self.stopped = Some(why);
        None
    }

    /// Checks the record at the current `fp` and returns (caller fp, return
    /// address), or why there is none.
    fn record(&self) -> Result<(u64, u64), Stop> {
        let fp = self.fp;
        if fp == 0 {
            return Err(Stop::End);
        }
        if !fp.is_multiple_of(RECORD_ALIGN) {
            return Err(Stop::Misaligned);
        }
        let end = fp.checked_add(RECORD_LEN).ok_or(Stop::OutsideStack)?;
        if fp < self.stack.start || end > self.stack.end {
            return Err(Stop::OutsideStack);
        }
        let caller_fp = self.mem.read_u64(fp).ok_or(Stop::Unreadable)?;
        let ret = self.mem.read_u64(fp + 8).ok_or(Stop::Unreadable)?;
        Ok((caller_fp, ret))
    }
}

impl<M: Memory> Iterator for Unwinder<M> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.stopped.is_some() {
            return None;
        }
        if self.remaining == 0 {
            return self.stop(Stop::Limit);
        }
        let (caller_fp, ret) = match self.record() {
            Ok(record) => record,
            Err(why) => return self.stop(why),
        };
        if ret == 0 {
            return self.stop(Stop::End);
        }
        self.remaining -= 1;
        if caller_fp != 0 && caller_fp <= self.fp {
            // This record is sound, so its return address is worth printing;
            // the chain beyond it is not.
            self.stopped = Some(Stop::NotIncreasing);
        }
        self.fp = caller_fp;
        Some(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use std::cell::RefCell;

    /// Word-addressed fake memory that records every address read, and is
    /// larger than the stack range handed to the unwinder so that reads
    /// outside that range would succeed (and be caught by the check).
    struct Fake {
        base: u64,
        words: Vec<u64>,
        reads: RefCell<Vec<u64>>,
    }

    const BASE: u64 = 0x4000_0000;
    const STACK: Range<u64> = BASE + 0x100..BASE + 0x400;

    impl Fake {
        fn new() -> Self {
            Fake {
                base: BASE,
                words: vec![0; 0x500 / 8],
                reads: RefCell::default(),
            }
        }
        fn frame(&mut self, fp: u64, caller_fp: u64, ret: u64) -> &mut Self {
            self.set(fp, caller_fp);
            self.set(fp + 8, ret);
            self
        }
        fn set(&mut self, addr: u64, value: u64) {
            self.words[((addr - self.base) / 8) as usize] = value;
        }
        fn unwind(&self, fp: u64, max: usize) -> (Vec<u64>, Option<Stop>) {
            let mut unwinder = Unwinder::new(fp, STACK, self, max);
            let addrs = unwinder.by_ref().collect();
            for &addr in self.reads.borrow().iter() {
                assert!(
                    STACK.contains(&addr) && STACK.contains(&(addr + 7)),
                    "read {addr:#x}"
                );
            }
            (addrs, unwinder.stop_reason())
        }
    }

    impl Memory for Fake {
        fn read_u64(&self, addr: u64) -> Option<u64> {
            self.reads.borrow_mut().push(addr);
            if !addr.is_multiple_of(8) {
                return None;
            }
            let index = usize::try_from(addr.checked_sub(self.base)? / 8).ok()?;
            self.words.get(index).copied()
        }
    }

    #[test]
    fn normal_chain() {
        let mut m = Fake::new();
        m.frame(BASE + 0x100, BASE + 0x140, 0x1004)
            .frame(BASE + 0x140, BASE + 0x200, 0x2008)
            .frame(BASE + 0x200, 0, 0x300c);
        assert_eq!(
            m.unwind(BASE + 0x100, 16),
            (vec![0x1004, 0x2008, 0x300c], Some(Stop::End))
        );
    }

    #[test]
    fn zero_return_address_ends_the_chain() {
        let mut m = Fake::new();
        m.frame(BASE + 0x100, BASE + 0x140, 0x1004)
            .frame(BASE + 0x140, BASE + 0x200, 0);
        assert_eq!(m.unwind(BASE + 0x100, 16), (vec![0x1004], Some(Stop::End)));
        assert_eq!(Fake::new().unwind(0, 16), (vec![], Some(Stop::End)));
    }

    #[test]
    fn loops_are_cut() {
        let mut m = Fake::new();
        m.frame(BASE + 0x100, BASE + 0x140, 0x1004)
            .frame(BASE + 0x140, BASE + 0x100, 0x2008);
        assert_eq!(
            m.unwind(BASE + 0x100, 64),
            (vec![0x1004, 0x2008], Some(Stop::NotIncreasing))
        );

        let mut m = Fake::new();
        m.frame(BASE + 0x100, BASE + 0x100, 0x1004);
        assert_eq!(
            m.unwind(BASE + 0x100, 64),
            (vec![0x1004], Some(Stop::NotIncreasing))
        );
    }

    #[test]
    fn frame_limit() {
        let mut m = Fake::new();
        for i in 0..8 {
            m.frame(BASE + 0x100 + i * 0x20, BASE + 0x120 + i * 0x20, 0x1000 + i);
        }
        let (addrs, why) = m.unwind(BASE + 0x100, 3);
        assert_eq!(
            (addrs, why),
            (vec![0x1000, 0x1001, 0x1002], Some(Stop::Limit))
        );
        assert_eq!(m.unwind(BASE + 0x100, 0), (vec![], Some(Stop::Limit)));
    }

    #[test]
    fn out_of_range_fp() {
        let mut m = Fake::new();
        // Below the stack, in readable memory.
        m.frame(BASE + 0x40, BASE + 0x200, 0x1004);
        assert_eq!(
            m.unwind(BASE + 0x40, 16),
            (vec![], Some(Stop::OutsideStack))
        );
        // Caller above the stack.
        m.frame(BASE + 0x100, BASE + 0x400, 0x1004);
        assert_eq!(
            m.unwind(BASE + 0x100, 16),
            (vec![0x1004], Some(Stop::OutsideStack))
        );
        // Record straddling the top: the return-address word is outside.
        m.frame(BASE + 0x3f0, BASE + 0x3f8, 0x1004);
        let (addrs, why) = m.unwind(BASE + 0x3f0, 16);
        assert_eq!((addrs, why), (vec![0x1004], Some(Stop::OutsideStack)));
        // Would wrap around the address space.
        assert_eq!(
            m.unwind(u64::MAX - 7, 16),
            (vec![], Some(Stop::OutsideStack))
        );
    }

    #[test]
    fn misaligned_fp() {
        let mut m = Fake::new();
        m.frame(BASE + 0x100, BASE + 0x144, 0x1004);
        assert_eq!(
            m.unwind(BASE + 0x100, 16),
            (vec![0x1004], Some(Stop::Misaligned))
        );
        assert_eq!(m.unwind(BASE + 0x101, 16), (vec![], Some(Stop::Misaligned)));
    }

    #[test]
    fn truncated_memory() {
        /// A stack whose upper half is unmapped.
        struct Half(Fake);
        impl Memory for Half {
            fn read_u64(&self, addr: u64) -> Option<u64> {
                (addr < BASE + 0x200)
                    .then(|| self.0.read_u64(addr))
                    .flatten()
            }
        }
        let mut m = Fake::new();
        m.frame(BASE + 0x100, BASE + 0x200, 0x1004)
            .frame(BASE + 0x200, 0, 0x2008);
        let mut unwinder = Unwinder::new(BASE + 0x100, STACK, Half(m), 16);
        assert_eq!(unwinder.by_ref().collect::<Vec<_>>(), [0x1004]);
        assert_eq!(unwinder.stop_reason(), Some(Stop::Unreadable));
        assert_eq!(unwinder.next(), None, "stays stopped");
    }

    #[test]
    fn stop_reasons_read_as_text() {
        assert_eq!(Stop::Limit.to_string(), "frame limit reached");
        assert_eq!(
            Stop::OutsideStack.to_string(),
            "frame record outside the stack"
        );
    }
}
