//! An emulated Arm PrimeCell UART (PL011), as Linux's amba-pl011 driver and
//! guest-test use it (PL011 TRM, ARM DDI 0183).
//!
//! Transmitted bytes wait in a transmit queue ([`TX_QUEUE`] bytes, the VM's
//! console budget) until the hypervisor moves them to the real console.
//! The queue behaves as the UART's TX FIFO: TXFF while it is full (a guest
//! that writes faster than the console drains waits on itself, not on the
//! other VMs), BUSY while it holds anything, and the TX interrupt while it
//! is at most half full (the default TXIFLSEL level, PL011 TRM 3.3.14).
//! Received bytes wait in a FIFO; the RX and RX-timeout interrupts are
//! raised while it holds any. The model is pure: the caller moves queued
//! bytes to the console and drives the interrupt line into the vGIC.

/// Register offsets (PL011 TRM, table 3-1).
mod reg {
    pub const DR: u64 = 0x000;
    pub const RSR_ECR: u64 = 0x004;
    pub const FR: u64 = 0x018;
    pub const ILPR: u64 = 0x020;
    pub const IBRD: u64 = 0x024;
    pub const FBRD: u64 = 0x028;
    pub const LCR_H: u64 = 0x02c;
    pub const CR: u64 = 0x030;
    pub const IFLS: u64 = 0x034;
    pub const IMSC: u64 = 0x038;
    pub const RIS: u64 = 0x03c;
    pub const MIS: u64 = 0x040;
    pub const ICR: u64 = 0x044;
    pub const DMACR: u64 = 0x048;
    /// PeriphID0..3 then PCellID0..3, one byte per word.
    pub const ID_START: u64 = 0xfe0;
}

/// UARTFR bits.
const FR_BUSY: u32 = 1 << 3;
const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
const FR_RXFF: u32 = 1 << 6;
const FR_TXFE: u32 = 1 << 7;
/// Interrupt bits (RIS/MIS/IMSC/ICR).
pub const INT_RX: u32 = 1 << 4;
pub const INT_TX: u32 = 1 << 5;
pub const INT_RT: u32 = 1 << 6;
const INT_ALL: u32 = 0x7ff;
/// UARTLCR_H.FEN: FIFOs enabled (else they are one byte deep).
const LCR_FEN: u32 = 1 << 4;

/// PeriphID (PL011 r1p5) and PrimeCell ID, as QEMU's model reports them.
const IDS: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// Receive FIFO depth (PL011: 16 entries).
pub const RX_FIFO: usize = 16;
/// Console input waiting behind a full receive FIFO: a paste into the
/// console must not be lost just because the guest reads 16 bytes at a
/// time. Beyond this, bytes are dropped and counted as overruns.
pub const BACKLOG: usize = 4096;

/// Transmit queue: how many bytes a VM may have waiting for the console.
/// A VM that fills it sees TXFF (and the hypercall console accepts fewer
/// bytes) until the console has taken some; other VMs are not held up.
pub const TX_QUEUE: usize = 4096;

/// The UART's register state.
#[derive(Clone, Debug)]
pub struct Pl011 {
    rx: [u8; RX_FIFO],
    rx_head: usize,
    rx_len: usize,
    backlog: [u8; BACKLOG],
    backlog_head: usize,
    backlog_len: usize,
    tx: [u8; TX_QUEUE],
    tx_head: usize,
    tx_len: usize,
    ibrd: u32,
    fbrd: u32,
    ilpr: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    dmacr: u32,
    /// Bytes dropped because the guest did not read fast enough.
    pub overruns: u64,
    /// Bytes the guest wrote to UARTDR while TXFF was set (dropped, as the
    /// hardware drops them).
    pub tx_dropped: u64,
}

/// What a register access did besides its value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// The guest wrote UARTDR: the transmit queue has something new.
    pub tx: bool,
    /// The access was to a register the model does not have: RAZ/WI.
    pub unhandled: bool,
}

impl Default for Pl011 {
    fn default() -> Self {
        Self::new()
    }
}

impl Pl011 {
    /// Reset state: UART and FIFOs off, all interrupts masked.
    pub const fn new() -> Self {
        Pl011 {
            rx: [0; RX_FIFO],
            rx_head: 0,
            rx_len: 0,
            backlog: [0; BACKLOG],
            backlog_head: 0,
            backlog_len: 0,
            tx: [0; TX_QUEUE],
            tx_head: 0,
            tx_len: 0,
            ibrd: 0,
            fbrd: 0,
            ilpr: 0,
            lcr_h: 0,
            cr: 0x300,
            ifls: 0x12,
            imsc: 0,
            dmacr: 0,
            overruns: 0,
            tx_dropped: 0,
        }
    }

    fn rx_depth(&self) -> usize {
        if self.lcr_h & LCR_FEN != 0 {
            RX_FIFO
        } else {
            1
        }
    }

    /// Raw interrupt status.
    fn ris(&self) -> u32 {
        let mut ris = 0;
        if self.tx_len <= TX_QUEUE / 2 {
            ris |= INT_TX;
        }
        if self.rx_len > 0 {
            ris |= INT_RX | INT_RT;
        }
        ris
    }

    /// The interrupt line: any unmasked raw interrupt.
    pub fn irq_level(&self) -> bool {
        self.ris() & self.imsc != 0
    }

    /// Queues bytes for the console (the hypercall console's path), as many
    /// as fit; returns how many did.
    pub fn queue_tx(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(TX_QUEUE - self.tx_len);
        for &b in &bytes[..n] {
            self.tx[(self.tx_head + self.tx_len) % TX_QUEUE] = b;
            self.tx_len += 1;
        }
        n
    }

    /// Takes up to `out.len()` queued bytes for the console, oldest first.
    pub fn take_tx(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.tx_len);
        for o in &mut out[..n] {
            *o = self.tx[self.tx_head];
            self.tx_head = (self.tx_head + 1) % TX_QUEUE;
        }
        self.tx_len -= n;
        n
    }

    /// Bytes waiting for the console.
    pub fn tx_pending(&self) -> usize {
        self.tx_len
    }

    /// Queues a received byte: into the FIFO, or behind it when the FIFO
    /// is full. False (and counted as an overrun) when both are full.
    pub fn receive(&mut self, byte: u8) -> bool {
        if self.backlog_len == 0 && self.rx_len < self.rx_depth() {
            self.push_fifo(byte);
            return true;
        }
        if self.backlog_len == BACKLOG {
            self.overruns += 1;
            return false;
        }
        self.backlog[(self.backlog_head + self.backlog_len) % BACKLOG] = byte;
        self.backlog_len += 1;
        true
    }

    fn push_fifo(&mut self, byte: u8) {
        self.rx[(self.rx_head + self.rx_len) % RX_FIFO] = byte;
        self.rx_len += 1;
    }

    /// Moves waiting input into the FIFO as room appears.
    fn refill(&mut self) {
        while self.backlog_len > 0 && self.rx_len < self.rx_depth() {
            let b = self.backlog[self.backlog_head];
            self.backlog_head = (self.backlog_head + 1) % BACKLOG;
            self.backlog_len -= 1;
            self.push_fifo(b);
        }
    }

    /// Room left in the receive FIFO.
    #[cfg(test)]
    pub fn rx_room(&self) -> usize {
        self.rx_depth().saturating_sub(self.rx_len)
    }

    fn pop_rx(&mut self) -> u32 {
        if self.rx_len == 0 {
            return 0;
        }
        let b = self.rx[self.rx_head];
        self.rx_head = (self.rx_head + 1) % RX_FIFO;
        self.rx_len -= 1;
        self.refill();
        u32::from(b)
    }

    fn flags(&self) -> u32 {
        let mut fr = 0;
        match self.tx_len {
            0 => fr |= FR_TXFE,
            TX_QUEUE => fr |= FR_TXFF | FR_BUSY,
            _ => fr |= FR_BUSY,
        }
        if self.rx_len == 0 {
            fr |= FR_RXFE;
        }
        if self.rx_len >= self.rx_depth() {
            fr |= FR_RXFF;
        }
        fr
    }

    /// A guest read of `size` bytes at `offset`. Registers are 32 bits wide;
    /// narrower reads of the low byte(s) are allowed, as on the hardware.
    pub fn read(&mut self, offset: u64, size: u8) -> (u64, Effect) {
        let unhandled = Effect {
            unhandled: true,
            ..Effect::default()
        };
        if size > 4 || !offset.is_multiple_of(4) {
            return (0, unhandled);
        }
        let v = match offset {
            reg::DR => self.pop_rx(),
            reg::RSR_ECR => 0,
            reg::FR => self.flags(),
            reg::ILPR => self.ilpr,
            reg::IBRD => self.ibrd,
            reg::FBRD => self.fbrd,
            reg::LCR_H => self.lcr_h,
            reg::CR => self.cr,
            reg::IFLS => self.ifls,
            reg::IMSC => self.imsc,
            reg::RIS => self.ris(),
            reg::MIS => self.ris() & self.imsc,
            reg::DMACR => self.dmacr,
            o @ reg::ID_START..=0xffc => u32::from(IDS[((o - reg::ID_START) / 4) as usize]),
            _ => return (0, unhandled),
        };
        (u64::from(v), Effect::default())
    }

    /// A guest write of `size` bytes at `offset`.
    pub fn write(&mut self, offset: u64, size: u8, value: u64) -> Effect {
        let unhandled = Effect {
            unhandled: true,
            ..Effect::default()
        };
        if size > 4 || !offset.is_multiple_of(4) {
            return unhandled;
        }
        let v = value as u32;
        match offset {
            reg::DR => {
                if self.queue_tx(&[v as u8]) == 0 {
                    self.tx_dropped += 1;
                }
                return Effect {
                    tx: true,
                    unhandled: false,
                };
            }
            reg::RSR_ECR => {}
            reg::ILPR => self.ilpr = v & 0xff,
            reg::IBRD => self.ibrd = v & 0xffff,
            reg::FBRD => self.fbrd = v & 0x3f,
            reg::LCR_H => {
                if (v ^ self.lcr_h) & LCR_FEN != 0 {
                    // Switching the FIFOs on or off flushes them; input
                    // still waiting behind them moves in.
                    self.rx_len = 0;
                    self.lcr_h = v & 0xff;
                    self.refill();
                }
                self.lcr_h = v & 0xff;
            }
            reg::CR => self.cr = v & 0xff87,
            reg::IFLS => self.ifls = v & 0x3f,
            reg::IMSC => self.imsc = v & INT_ALL,
            // RX/RT follow the receive FIFO and TX the transmit queue's
            // level, so clearing only matters for bits the model never sets.
            reg::ICR => {}
            reg::DMACR => self.dmacr = v & 0x7,
            _ => return unhandled,
        }
        Effect::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_primecell_ids() {
        let mut u = Pl011::new();
        let ids: Vec<u64> = (0..8).map(|i| u.read(0xfe0 + i * 4, 4).0).collect();
        assert_eq!(ids, vec![0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
    }

    fn fr(u: &mut Pl011) -> u32 {
        u.read(0x018, 4).0 as u32
    }

    #[test]
    fn transmitted_bytes_queue_until_taken_and_raise_tx_when_unmasked() {
        let mut u = Pl011::new();
        assert_eq!(fr(&mut u) & (FR_TXFE | FR_TXFF | FR_BUSY), FR_TXFE);
        assert!(u.write(0x000, 4, u64::from(b'A')).tx);
        u.write(0x000, 4, u64::from(b'B'));
        assert_eq!(fr(&mut u) & (FR_TXFE | FR_TXFF | FR_BUSY), FR_BUSY);
        assert_eq!(u.tx_pending(), 2);
        assert!(!u.irq_level());
        u.write(0x038, 4, u64::from(INT_TX));
        assert!(u.irq_level(), "queue at most half full: TX raised");
        assert_eq!(u.read(0x040, 4).0 as u32, INT_TX);
        let mut out = [0u8; 8];
        assert_eq!(u.take_tx(&mut out), 2);
        assert_eq!(&out[..2], b"AB");
        assert_eq!(fr(&mut u) & (FR_TXFE | FR_BUSY), FR_TXFE);
    }

    #[test]
    fn a_full_queue_sets_txff_drops_and_counts_further_bytes() {
        let mut u = Pl011::new();
        u.write(0x038, 4, u64::from(INT_TX));
        for i in 0..TX_QUEUE {
            u.write(0x000, 4, i as u64);
            assert_eq!(
                u.irq_level(),
                i < TX_QUEUE / 2,
                "TX follows the level after byte {i}"
            );
        }
        assert_ne!(fr(&mut u) & FR_TXFF, 0);
        u.write(0x000, 4, 0xaa);
        assert_eq!(u.tx_dropped, 1);
        assert_eq!(
            u.queue_tx(b"more"),
            0,
            "the hypercall path gets no room either"
        );
        let mut out = [0u8; 100];
        assert_eq!(u.take_tx(&mut out), 100);
        assert_eq!(out[99], 99, "oldest first, nothing overwritten");
        assert_eq!(fr(&mut u) & FR_TXFF, 0);
        assert_eq!(
            u.queue_tx(&[1; 200]),
            100,
            "room for exactly what was taken"
        );
        let mut rest = vec![0u8; TX_QUEUE];
        assert_eq!(u.take_tx(&mut rest), TX_QUEUE);
        assert_eq!(rest[TX_QUEUE - 100 - 1], (TX_QUEUE - 1) as u8);
        assert!(rest[TX_QUEUE - 100..].iter().all(|&b| b == 1));
    }

    #[test]
    fn receives_through_the_fifo_with_interrupts() {
        let mut u = Pl011::new();
        u.write(0x02c, 4, u64::from(LCR_FEN));
        u.write(0x038, 4, u64::from(INT_RX | INT_RT));
        assert!(!u.irq_level());
        for b in b"hello" {
            assert!(u.receive(*b));
        }
        assert!(u.irq_level());
        assert_eq!(u.read(0x018, 4).0 as u32 & FR_RXFE, 0);
        let got: Vec<u8> = (0..5).map(|_| u.read(0x000, 4).0 as u8).collect();
        assert_eq!(got, b"hello");
        assert_ne!(u.read(0x018, 4).0 as u32 & FR_RXFE, 0);
        assert!(!u.irq_level());
        assert_eq!(u.read(0x000, 4).0, 0, "reading an empty FIFO gives 0");
    }

    #[test]
    fn a_paste_longer_than_the_fifo_arrives_whole_and_in_order() {
        let mut u = Pl011::new();
        u.write(0x02c, 4, u64::from(LCR_FEN));
        let text: Vec<u8> = (0..200u8).collect();
        for &b in &text {
            assert!(u.receive(b));
        }
        assert_ne!(
            u.read(0x018, 4).0 as u32 & FR_RXFF,
            0,
            "FIFO full, rest waits"
        );
        let mut got = Vec::new();
        while u.read(0x018, 4).0 as u32 & FR_RXFE == 0 {
            got.push(u.read(0x000, 4).0 as u8);
        }
        assert_eq!(got, text);
        assert_eq!(u.overruns, 0);
    }

    #[test]
    fn fifo_depth_follows_fen_and_overruns_are_counted() {
        let mut u = Pl011::new();
        assert!(u.receive(1));
        assert_eq!(u.rx_room(), 0, "FIFOs off: one byte deep");
        for i in 0..BACKLOG {
            assert!(u.receive(i as u8));
        }
        assert!(!u.receive(2), "FIFO and backlog full");
        assert_eq!(u.overruns, 1);
        u.write(0x02c, 4, u64::from(LCR_FEN));
        assert_eq!(u.rx_room(), 0, "FEN on: the backlog fills the FIFO");
        assert_ne!(u.read(0x018, 4).0 as u32 & FR_RXFF, 0);
    }

    #[test]
    fn odd_accesses_are_raz_wi() {
        let mut u = Pl011::new();
        assert!(u.read(0x001, 1).1.unhandled);
        assert!(u.read(0x000, 8).1.unhandled);
        assert!(u.read(0x800, 4).1.unhandled);
        assert!(u.write(0x800, 4, 1).unhandled);
        assert_eq!(u.read(0x800, 4).0, 0);
    }
}
