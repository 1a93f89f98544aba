//! The interrupt numbers nmivisor assigns itself: its two physical SGIs.
//! Guests' SGIs are purely virtual and never use these.

/// One of the two physical SGIs nmivisor uses. Everything else in the 16-SGI
/// space stays free; guests get all 16 as purely virtual SGIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sgi {
    /// Normal priority; masked whenever "interrupts are off".
    Kick,
    /// NMI priority; gets through a PMR that masks normal interrupts.
    Nmi,
}

impl Sgi {
    /// Both SGIs, in mailbox word order.
    pub const ALL: [Sgi; 2] = [Sgi::Kick, Sgi::Nmi];
    /// Physical INTID of [`Sgi::Kick`]. SGIs 0-7 are left to the
    /// conventional non-secure users.
    pub const KICK_INTID: u32 = 8;
    /// Physical INTID of [`Sgi::Nmi`].
    pub const NMI_INTID: u32 = 9;

    /// The physical INTID to program and send.
    pub const fn intid(self) -> u32 {
        match self {
            Sgi::Kick => Self::KICK_INTID,
            Sgi::Nmi => Self::NMI_INTID,
        }
    }

    /// Which of our SGIs a physical INTID is, if any.
    pub const fn from_intid(intid: u32) -> Option<Sgi> {
        match intid {
            Self::KICK_INTID => Some(Sgi::Kick),
            Self::NMI_INTID => Some(Sgi::Nmi),
            _ => None,
        }
    }

    /// Index of this SGI's word in a mailbox.
    pub const fn index(self) -> usize {
        self as usize
    }
}
