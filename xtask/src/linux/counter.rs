//! `/bin/nmv-counter`: a 278-byte static arm64 Linux program (124 bytes of
//! code) that prints
//! the virtual counter (CNTVCT_EL0) and its frequency (CNTFRQ_EL0) as two
//! 16-digit hex numbers, `CNTVCT CNTFRQ`. busybox has no way to read the
//! counter (`/proc/uptime` has 10 ms steps, and the kernel's clocks start
//! only when its timer driver does), and `cargo xtask bench --linux` wants
//! the guest's time to userspace as the counter says it: `/init` runs this
//! first.
//!
//! The code was assembled once with GNU as from the listing in the
//! comments; xtask wraps it in an ELF header and one RWX `PT_LOAD` segment
//! (the output buffer follows the code).

/// The instructions (see the module documentation).
const CODE: [u32; 31] = [
    0xd503_3fdf, // 00 isb
    0xd53b_e053, // 04 mrs x19, cntvct_el0
    0xd53b_e014, // 08 mrs x20, cntfrq_el0
    0x1000_0381, // 0c adr x1, buf (0x7c)
    0xaa13_03e3, // 10 mov x3, x19
    0x9400_000f, // 14 bl hex (0x50)
    0x5280_0405, // 18 mov w5, #' '
    0x3800_1425, // 1c strb w5, [x1], #1
    0xaa14_03e3, // 20 mov x3, x20
    0x9400_000b, // 24 bl hex
    0x5280_0145, // 28 mov w5, #'\n'
    0x3800_1425, // 2c strb w5, [x1], #1
    0xd280_0020, // 30 mov x0, #1 (stdout)
    0x1000_0241, // 34 adr x1, buf
    0xd280_0442, // 38 mov x2, #34
    0xd280_0808, // 3c mov x8, #64 (write)
    0xd400_0001, // 40 svc #0
    0xd280_0000, // 44 mov x0, #0
    0xd280_0ba8, // 48 mov x8, #93 (exit)
    0xd400_0001, // 4c svc #0
    // hex: x3 as 16 hex digits at [x1], advancing x1
    0xd280_0784, // 50 mov x4, #60
    0x9ac4_2465, // 54 1: lsr x5, x3, x4
    0x9240_0ca5, // 58 and x5, x5, #0xf
    0x9100_c0a6, // 5c add x6, x5, #'0'
    0x9101_5ca7, // 60 add x7, x5, #('a' - 10)
    0xf100_28bf, // 64 cmp x5, #10
    0x9a87_30c5, // 68 csel x5, x6, x7, lo
    0x3800_1425, // 6c strb w5, [x1], #1
    0xf100_1084, // 70 subs x4, x4, #4
    0x54ff_ff0a, // 74 b.ge 1b
    0xd65f_03c0, // 78 ret
];

/// The output buffer after the code: 16 + 1 + 16 + 1 bytes.
const BUF_LEN: usize = 34;

/// Where the segment is loaded.
const BASE: u64 = 0x40_0000;
const EHDR: usize = 64;
const PHDR: usize = 56;

/// The program as an ELF file.
pub fn elf() -> Vec<u8> {
    let code_off = EHDR + PHDR;
    let size = (code_off + CODE.len() * 4 + BUF_LEN) as u64;
    let mut f = Vec::with_capacity(size as usize);
    // ELF header: 64-bit, little endian, version 1, SysV; ET_EXEC, EM_AARCH64.
    f.extend_from_slice(b"\x7fELF\x02\x01\x01\x00");
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // e_type ET_EXEC
    f.extend_from_slice(&183u16.to_le_bytes()); // e_machine EM_AARCH64
    f.extend_from_slice(&1u32.to_le_bytes()); // e_version
    f.extend_from_slice(&(BASE + code_off as u64).to_le_bytes()); // e_entry
    f.extend_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    f.extend_from_slice(&(EHDR as u16).to_le_bytes()); // e_ehsize
    f.extend_from_slice(&(PHDR as u16).to_le_bytes()); // e_phentsize
    f.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    f.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
                                  // Program header: PT_LOAD, RWX, the whole file at BASE.
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&7u32.to_le_bytes());
    f.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    f.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    f.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    f.extend_from_slice(&size.to_le_bytes()); // p_filesz
    f.extend_from_slice(&size.to_le_bytes()); // p_memsz
    f.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    for insn in CODE {
        f.extend_from_slice(&insn.to_le_bytes());
    }
    f.resize(size as usize, 0);
    f
}

/// Parses the program's output, `CNTVCT CNTFRQ` in hex, into seconds.
pub fn seconds(line: &str) -> Option<f64> {
    let mut w = line.split_whitespace();
    let ticks = u64::from_str_radix(w.next()?, 16).ok()?;
    let freq = u64::from_str_radix(w.next()?, 16).ok()?;
    (freq > 0).then(|| ticks as f64 / freq as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_elf_is_well_formed() {
        let f = elf();
        super::super::initramfs::check_aarch64_elf(&f).unwrap();
        assert_eq!(f.len(), 64 + 56 + 31 * 4 + 34);
        let entry = u64::from_le_bytes(f[24..32].try_into().unwrap());
        assert_eq!(entry, BASE + 120);
        // The two `adr x1, buf` reach the byte after the code.
        let buf = (CODE.len() * 4) as i64;
        for at in [0x0c_usize, 0x34] {
            let insn = CODE[at / 4];
            let imm = (((insn >> 5) & 0x7_ffff) << 2 | (insn >> 29) & 3) as i64;
            assert_eq!(at as i64 + imm, buf, "adr at {at:#x}");
        }
    }

    #[test]
    fn output() {
        assert_eq!(seconds("0000000003b9aca0 0000000003b9aca0\n"), Some(1.0));
        assert_eq!(seconds("0000000000000000 0000000003b9aca0"), Some(0.0));
        assert_eq!(seconds("zz 1"), None);
        assert_eq!(seconds("1 0"), None);
    }
}
