//! Where a guest's kernel, initrd and device tree go in its RAM, following
//! the arm64 boot protocol (Linux `Documentation/arch/arm64/booting.rst`):
//! the Image at a 2 MiB-aligned base plus `text_offset`, with `image_size`
//! bytes free from there; the DTB 8-byte aligned, within 2 MiB, not
//! overlapping the kernel; the initrd anywhere else in RAM.
//!
//! Pure: a hostile or broken image gets an error, never a panic.

use core::fmt;
use core::ops::Range;

const MIB: u64 = 1 << 20;
/// Offset of the "ARM\x64" magic in the Image header.
const MAGIC_OFFSET: usize = 56;
const HEADER_LEN: usize = 64;

/// The fields of an arm64 Image header that placement needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    pub text_offset: u64,
    /// Bytes the kernel needs from its load address (BSS included).
    pub image_size: u64,
}

/// Why a guest cannot be laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    NotAnImage,
    TooBig {
        what: &'static str,
        need: u64,
        have: u64,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::NotAnImage => {
                write!(f, "image: not an arm64 Image (no \"ARM\\x64\" magic)")
            }
            LayoutError::TooBig { what, need, have } => {
                write!(
                    f,
                    "{what} does not fit: needs {need:#x} bytes, {have:#x} available"
                )
            }
        }
    }
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(v)
}

/// Reads the Image header. An `image_size` of 0 (very old kernels) means
/// "unknown": text_offset is then 0x80000 by the protocol.
pub fn parse_header(image: &[u8]) -> Result<ImageHeader, LayoutError> {
    if image.len() < HEADER_LEN || &image[MAGIC_OFFSET..MAGIC_OFFSET + 4] != b"ARM\x64" {
        return Err(LayoutError::NotAnImage);
    }
    let image_size = le64(image, 16);
    if image_size == 0 {
        return Ok(ImageHeader {
            text_offset: 0x80000,
            image_size: image.len() as u64,
        });
    }
    Ok(ImageHeader {
        text_offset: le64(image, 8),
        image_size: image_size.max(image.len() as u64),
    })
}

/// IPAs of everything loaded into a guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub kernel: Range<u64>,
    pub initrd: Option<Range<u64>>,
    pub dtb: Range<u64>,
}

/// Places the kernel at RAM base + text_offset, the DTB in the last 2 MiB
/// and the initrd just below the DTB's 2 MiB block.
pub fn place(
    ram: Range<u64>,
    header: ImageHeader,
    initrd_len: Option<u64>,
    dtb_max: u64,
) -> Result<Layout, LayoutError> {
    let have = ram.end - ram.start;
    let too_big = |what, need| LayoutError::TooBig { what, need, have };
    let kernel_start = ram
        .start
        .checked_add(header.text_offset)
        .ok_or(too_big("kernel", u64::MAX))?;
    let kernel_end = kernel_start
        .checked_add(header.image_size)
        .ok_or(too_big("kernel", u64::MAX))?;

    if dtb_max > 2 * MIB || have < 2 * MIB {
        return Err(too_big("device tree", dtb_max.max(2 * MIB)));
    }
    let dtb_start = (ram.end - 2 * MIB) & !(2 * MIB - 1);
    let dtb = dtb_start..dtb_start + dtb_max;
    if kernel_end > dtb_start {
        return Err(too_big("kernel", kernel_end - ram.start + 2 * MIB));
    }

    let initrd = match initrd_len {
        None | Some(0) => None,
        Some(len) => {
            let start = dtb_start.checked_sub(len).map(|s| s & !0xfff);
            match start {
                Some(s) if s >= kernel_end => Some(s..s + len),
                _ => {
                    let need = (kernel_end - ram.start) + len + 2 * MIB;
                    return Err(too_big("initrd", need));
                }
            }
        }
    };
    Ok(Layout {
        kernel: kernel_start..kernel_end,
        initrd,
        dtb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(text_offset: u64, image_size: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len.max(64)];
        v[8..16].copy_from_slice(&text_offset.to_le_bytes());
        v[16..24].copy_from_slice(&image_size.to_le_bytes());
        v[56..60].copy_from_slice(b"ARM\x64");
        v
    }

    #[test]
    fn reads_headers() {
        let h = parse_header(&image(0x20_0000, 0x30_0000, 4096)).unwrap();
        assert_eq!(
            h,
            ImageHeader {
                text_offset: 0x20_0000,
                image_size: 0x30_0000
            }
        );
        let old = parse_header(&image(0x12345, 0, 4096)).unwrap();
        assert_eq!(
            old,
            ImageHeader {
                text_offset: 0x80000,
                image_size: 4096
            }
        );
        assert_eq!(parse_header(&[0u8; 100]), Err(LayoutError::NotAnImage));
        assert_eq!(parse_header(&[0u8; 10]), Err(LayoutError::NotAnImage));
    }

    #[test]
    fn lays_out_kernel_initrd_and_dtb() {
        let ram = 0x4000_0000..0x4800_0000;
        let h = ImageHeader {
            text_offset: 0x20_0000,
            image_size: 0x100_0000,
        };
        let l = place(ram.clone(), h, Some(0x10_0001), 0x1_0000).unwrap();
        assert_eq!(l.kernel, 0x4020_0000..0x4120_0000);
        assert_eq!(l.dtb, 0x47e0_0000..0x47e1_0000);
        let initrd = l.initrd.unwrap();
        assert!(initrd.end <= l.dtb.start && initrd.start >= l.kernel.end);
        assert_eq!(initrd.start % 0x1000, 0);
        assert_eq!(initrd.end - initrd.start, 0x10_0001);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let ram = 0x4000_0000..0x4080_0000;
        let h = ImageHeader {
            text_offset: 0x20_0000,
            image_size: 0x10_0000,
        };
        assert!(place(ram.clone(), h, Some(0x10_0000), 0x1000).is_ok());
        assert!(matches!(
            place(ram.clone(), h, Some(0x100_0000), 0x1000),
            Err(LayoutError::TooBig { what: "initrd", .. })
        ));
        let huge = ImageHeader {
            text_offset: u64::MAX,
            image_size: 1,
        };
        assert!(place(ram.clone(), huge, None, 0x1000).is_err());
        let big = ImageHeader {
            text_offset: 0,
            image_size: 0x70_0000,
        };
        assert!(matches!(
            place(ram.clone(), big, None, 0x1000),
            Err(LayoutError::TooBig { what: "kernel", .. })
        ));
        assert!(place(0x4000_0000..0x4010_0000, h, None, 0x1000).is_err());
    }
}
