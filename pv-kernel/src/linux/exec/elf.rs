//! Reading an executable's ELF header and program headers, trusting nothing: what `execve`
//! maps, where the program starts, and what its auxiliary vector says about it.
//!
//! Accepted: little-endian 64-bit x86-64 `ET_EXEC` and `ET_DYN` (position-independent,
//! loaded at a base the caller chooses), with or without `PT_INTERP` (whose path, a
//! NUL-terminated string, must lie in the header bytes), with Linux's limits on the program-header table
//! (entries of exactly 56 bytes, at most one page of them). Every segment must lie in the
//! file and map inside the user window below `limit`. Anything else is `ENOEXEC` — also
//! what Linux lets through only to kill the program after the point of no return (more file
//! than memory, a segment past the end of the file) or does not check at all (`EI_CLASS`,
//! `EI_DATA`).

#![deny(unsafe_code)]

use alloc::vec::Vec;

use pvmux_hypercalls::user::{in_user_window, prot};
use pvmux_hypercalls::PAGE_SIZE;

use crate::fs::Errno;

/// `e_type` of a fixed-address executable.
pub(crate) const ET_EXEC: u16 = 2;
/// `e_type` of a position-independent executable.
pub(crate) const ET_DYN: u16 = 3;
/// `e_machine` of x86-64.
pub(crate) const EM_X86_64: u16 = 62;
/// A loadable segment.
pub(crate) const PT_LOAD: u32 = 1;
/// The program interpreter of a dynamically linked program.
pub(crate) const PT_INTERP: u32 = 3;
/// Where the program headers themselves are mapped.
pub(crate) const PT_PHDR: u32 = 6;
/// Size of one program header (`AT_PHENT`).
pub(crate) const PHENT_SIZE: u64 = 56;
/// Most program headers (Linux: the table must fit in one page).
pub(crate) const MAX_PHNUM: u64 = PAGE_SIZE / PHENT_SIZE;
/// Size of the ELF header.
const EHDR_SIZE: usize = 64;

/// A loadable segment, relocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// First address.
    pub(crate) va: u64,
    /// End of its memory (`va + p_memsz`); past `va + filesz` it is zero-filled.
    pub(crate) end: u64,
    /// File offset of its data.
    pub(crate) offset: u64,
    /// Bytes of file data.
    pub(crate) filesz: u64,
    /// `prot::*` rights.
    pub(crate) prot: u32,
}

impl Segment {
    /// The pages it covers: `[first, end)`, page-aligned.
    pub(crate) const fn pages(&self) -> (u64, u64) {
        (page_down(self.va), page_down(self.end + PAGE_SIZE - 1))
    }

    /// True if its file offset and address agree modulo the page size, so whole pages of
    /// the file can be mapped as they are (Linux refuses other segments; they are copied
    /// here).
    pub(crate) const fn congruent(&self) -> bool {
        self.va % PAGE_SIZE == self.offset % PAGE_SIZE
    }
}

/// What loading an executable needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Image {
    /// Entry point, relocated.
    pub(crate) entry: u64,
    /// Address of the program headers in memory (`AT_PHDR`), 0 if not mapped.
    pub(crate) phdr: u64,
    /// Number of program headers (`AT_PHNUM`).
    pub(crate) phnum: u64,
    /// The loadable segments, in file order.
    pub(crate) segments: Vec<Segment>,
    /// Initial program break: the page after the highest segment.
    pub(crate) brk: u64,
    /// The program interpreter's path (`PT_INTERP`, without its NUL) of a dynamically
    /// linked program.
    pub(crate) interp: Option<Vec<u8>>,
}

/// Longest interpreter path (Linux: `PATH_MAX`).
const INTERP_MAX: u64 = 4096;

const fn page_down(v: u64) -> u64 {
    v & !(PAGE_SIZE - 1)
}

/// The little-endian `N`-byte field at `off` of `b`.
fn field<const N: usize>(b: &[u8], off: u64) -> Result<[u8; N], Errno> {
    let start = usize::try_from(off).map_err(|_| Errno::ENOEXEC)?;
    let end = start.checked_add(N).ok_or(Errno::ENOEXEC)?;
    let mut out = [0u8; N];
    out.copy_from_slice(b.get(start..end).ok_or(Errno::ENOEXEC)?);
    Ok(out)
}

fn u16_at(b: &[u8], off: u64) -> Result<u16, Errno> {
    field(b, off).map(u16::from_le_bytes)
}

fn u32_at(b: &[u8], off: u64) -> Result<u32, Errno> {
    field(b, off).map(u32::from_le_bytes)
}

fn u64_at(b: &[u8], off: u64) -> Result<u64, Errno> {
    field(b, off).map(u64::from_le_bytes)
}

/// `p_flags` (`PF_R`, `PF_W`, `PF_X`) as `prot::*` rights.
const fn rights(p_flags: u32) -> u32 {
    let mut p = 0;
    if p_flags & 4 != 0 {
        p |= prot::READ;
    }
    if p_flags & 2 != 0 {
        p |= prot::WRITE;
    }
    if p_flags & 1 != 0 {
        p |= prot::EXEC;
    }
    p
}

/// Parses an executable of `file_len` bytes from its first bytes `head`, which must hold the
/// ELF header and the whole program-header table (the segments' data is not read, only
/// checked to lie within `file_len`): a position-independent executable is placed at
/// `pie_base`; every segment must end below `limit`.
pub(crate) fn parse(head: &[u8], file_len: u64, pie_base: u64, limit: u64) -> Result<Image, Errno> {
    let file = head;
    if file.len() < EHDR_SIZE || file[..4] != *b"\x7fELF" {
        return Err(Errno::ENOEXEC);
    }
    // ELFCLASS64, ELFDATA2LSB, x86-64.
    if file[4] != 2 || file[5] != 1 || u16_at(file, 18)? != EM_X86_64 {
        return Err(Errno::ENOEXEC);
    }
    let base = match u16_at(file, 16)? {
        ET_EXEC => 0,
        ET_DYN => pie_base,
        _ => return Err(Errno::ENOEXEC),
    };
    let entry = u64_at(file, 24)?.checked_add(base).ok_or(Errno::ENOEXEC)?;
    let phoff = u64_at(file, 32)?;
    let phentsize = u64::from(u16_at(file, 54)?);
    let phnum = u64::from(u16_at(file, 56)?);
    if phentsize != PHENT_SIZE || phnum == 0 || phnum > MAX_PHNUM {
        return Err(Errno::ENOEXEC);
    }
    // The whole table must be in the header bytes.
    let table_end = phoff
        .checked_add(phnum * PHENT_SIZE)
        .ok_or(Errno::ENOEXEC)?;
    if table_end > file.len() as u64 {
        return Err(Errno::ENOEXEC);
    }
    let mut phdr = 0;
    let mut interp = None;
    let mut segments = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * PHENT_SIZE;
        let p_type = u32_at(file, ph)?;
        let p_flags = u32_at(file, ph + 4)?;
        let p_offset = u64_at(file, ph + 8)?;
        let p_vaddr = u64_at(file, ph + 16)?;
        let p_filesz = u64_at(file, ph + 32)?;
        let p_memsz = u64_at(file, ph + 40)?;
        match p_type {
            // Dynamically linked: the interpreter's path, a NUL-terminated string that must
            // lie in the header bytes (Linux's checks: 2..=PATH_MAX bytes, NUL last; the
            // first PT_INTERP counts). A relative path is looked up from the working
            // directory, as Linux does.
            PT_INTERP if interp.is_none() => {
                if !(2..=INTERP_MAX).contains(&p_filesz) {
                    return Err(Errno::ENOEXEC);
                }
                let start = usize::try_from(p_offset).map_err(|_| Errno::ENOEXEC)?;
                let end = start.checked_add(p_filesz as usize).ok_or(Errno::ENOEXEC)?;
                let path = file.get(start..end).ok_or(Errno::ENOEXEC)?;
                // Linux opens it as a C string: up to the first NUL.
                if path.last() != Some(&0) {
                    return Err(Errno::ENOEXEC);
                }
                let len = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                interp = Some(path[..len].to_vec());
            }
            PT_PHDR => phdr = p_vaddr.wrapping_add(base),
            PT_LOAD => {
                let va = p_vaddr.checked_add(base).ok_or(Errno::ENOEXEC)?;
                let end = va.checked_add(p_memsz).ok_or(Errno::ENOEXEC)?;
                let file_end = p_offset.checked_add(p_filesz).ok_or(Errno::ENOEXEC)?;
                let first = page_down(va);
                let last = end
                    .checked_add(PAGE_SIZE - 1)
                    .map(page_down)
                    .ok_or(Errno::ENOEXEC)?;
                if p_filesz > p_memsz
                    || file_end > file_len
                    || !in_user_window(first, last - first)
                    || end >= limit
                {
                    return Err(Errno::ENOEXEC);
                }
                // The program headers are mapped where the segment holding them goes.
                if phdr == 0 && p_offset <= phoff && phoff < file_end {
                    phdr = va + (phoff - p_offset);
                }
                segments.push(Segment {
                    va,
                    end,
                    offset: p_offset,
                    filesz: p_filesz,
                    prot: rights(p_flags),
                });
            }
            _ => {}
        }
    }
    let top = segments.iter().map(|s| s.end).max().ok_or(Errno::ENOEXEC)?;
    Ok(Image {
        entry,
        phdr,
        phnum,
        segments,
        brk: page_down(top + PAGE_SIZE - 1),
        interp,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Where the tests place position-independent programs, and the highest end.
    pub(crate) const PIE: u64 = 0x1555_5555_4000;
    pub(crate) const LIMIT: u64 = 0x3f00_0000_0000;

    /// One program header to write.
    #[derive(Clone, Copy)]
    pub(crate) struct Ph {
        pub(crate) p_type: u32,
        pub(crate) flags: u32,
        pub(crate) offset: u64,
        pub(crate) vaddr: u64,
        pub(crate) filesz: u64,
        pub(crate) memsz: u64,
    }

    /// A static executable: text (r-x) at 0x40_0000 holding the headers, data (rw-) with
    /// some .bss at 0x40_2000+0x10; `len` bytes of file.
    pub(crate) fn headers() -> Vec<Ph> {
        vec![
            Ph {
                p_type: PT_PHDR,
                flags: 4,
                offset: 64,
                vaddr: 0x40_0040,
                filesz: 3 * 56,
                memsz: 3 * 56,
            },
            Ph {
                p_type: PT_LOAD,
                flags: 5,
                offset: 0,
                vaddr: 0x40_0000,
                filesz: 0x1800,
                memsz: 0x1800,
            },
            Ph {
                p_type: PT_LOAD,
                flags: 6,
                offset: 0x1810,
                vaddr: 0x40_2810,
                filesz: 0x100,
                memsz: 0x3000,
            },
        ]
    }

    /// An ELF file of type `ty` with program headers `phs` after the ELF header, padded
    /// (with a recognisable pattern) to `len` bytes.
    pub(crate) fn elf(ty: u16, entry: u64, phs: &[Ph], len: usize) -> Vec<u8> {
        let mut f: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        f[..EHDR_SIZE].fill(0);
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // ELFCLASS64
        f[5] = 1; // ELFDATA2LSB
        f[6] = 1; // EV_CURRENT
        f[16..18].copy_from_slice(&ty.to_le_bytes());
        f[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&(phs.len() as u16).to_le_bytes());
        for (i, p) in phs.iter().enumerate() {
            let o = 64 + 56 * i;
            let h = &mut f[o..o + 56];
            h.fill(0);
            h[0..4].copy_from_slice(&p.p_type.to_le_bytes());
            h[4..8].copy_from_slice(&p.flags.to_le_bytes());
            h[8..16].copy_from_slice(&p.offset.to_le_bytes());
            h[16..24].copy_from_slice(&p.vaddr.to_le_bytes());
            h[24..32].copy_from_slice(&p.vaddr.to_le_bytes());
            h[32..40].copy_from_slice(&p.filesz.to_le_bytes());
            h[40..48].copy_from_slice(&p.memsz.to_le_bytes());
            h[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
        }
        f
    }

    /// Parses a whole file.
    pub(crate) fn whole(f: &[u8]) -> Result<Image, Errno> {
        parse(f, f.len() as u64, PIE, LIMIT)
    }

    /// A valid static executable.
    pub(crate) fn static_exe() -> Vec<u8> {
        elf(ET_EXEC, 0x40_1000, &headers(), 0x2000)
    }

    #[test]
    fn constants_match_the_host_linux() {
        assert_eq!(PT_LOAD, libc::PT_LOAD);
        assert_eq!(PT_INTERP, libc::PT_INTERP);
        assert_eq!(PT_PHDR, libc::PT_PHDR);
        assert_eq!(ET_EXEC, libc::ET_EXEC);
        assert_eq!(ET_DYN, libc::ET_DYN);
        assert_eq!(EM_X86_64, libc::EM_X86_64);
        assert_eq!(
            PHENT_SIZE as usize,
            core::mem::size_of::<libc::Elf64_Phdr>()
        );
        assert_eq!(EHDR_SIZE, core::mem::size_of::<libc::Elf64_Ehdr>());
        assert_eq!(MAX_PHNUM, 73);
    }

    #[test]
    fn a_static_executable() {
        let img = whole(&static_exe()).unwrap();
        assert_eq!(img.entry, 0x40_1000);
        assert_eq!(img.phdr, 0x40_0040);
        assert_eq!(img.phnum, 3);
        assert_eq!(
            img.segments,
            [
                Segment {
                    va: 0x40_0000,
                    end: 0x40_1800,
                    offset: 0,
                    filesz: 0x1800,
                    prot: prot::READ | prot::EXEC,
                },
                Segment {
                    va: 0x40_2810,
                    end: 0x40_5810,
                    offset: 0x1810,
                    filesz: 0x100,
                    prot: prot::READ | prot::WRITE,
                }
            ]
        );
        assert_eq!(img.segments[1].pages(), (0x40_2000, 0x40_6000));
        assert!(img.segments.iter().all(Segment::congruent));
        assert_eq!(img.brk, 0x40_6000);
    }

    #[test]
    fn a_static_pie_is_placed_at_the_base_and_phdr_found_without_pt_phdr() {
        let phs: Vec<Ph> = headers()[1..]
            .iter()
            .map(|p| Ph {
                vaddr: p.vaddr - 0x40_0000,
                ..*p
            })
            .collect();
        let img = whole(&elf(ET_DYN, 0x1000, &phs, 0x2000)).unwrap();
        assert_eq!(img.entry, PIE + 0x1000);
        assert_eq!(img.phdr, PIE + 64, "inside the first PT_LOAD");
        assert_eq!(img.segments[0].va, PIE);
        assert_eq!(img.brk, PIE + 0x6000);
    }

    #[test]
    fn what_is_refused() {
        let ok = static_exe();
        let refused = |f: &[u8], why: &str| {
            assert_eq!(whole(f), Err(Errno::ENOEXEC), "{why}");
        };
        let with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut f = ok.clone();
            edit(&mut f);
            f
        };
        refused(&ok[..63], "shorter than an ELF header");
        refused(b"#!/bin/sh\n", "a script");
        refused(&with(&|f| f[0] = 0), "bad magic");
        refused(&with(&|f| f[4] = 1), "32-bit");
        refused(&with(&|f| f[5] = 2), "big-endian");
        refused(&with(&|f| f[18] = 3), "i386");
        refused(&with(&|f| f[16] = 4), "a core file");
        refused(&with(&|f| f[16] = 1), "a relocatable object");
        refused(&with(&|f| f[54] = 64), "program headers of another size");
        refused(&with(&|f| f[56..58].fill(0)), "no program headers");
        refused(&with(&|f| f[56] = 74), "more than a page of them");
        refused(
            &with(&|f| f[32..40].copy_from_slice(&(0x2000u64 - 100).to_le_bytes())),
            "table past the end",
        );
        refused(
            &with(&|f| f[32..40].copy_from_slice(&u64::MAX.to_le_bytes())),
            "table offset overflows",
        );
        refused(
            &with(&|f| {
                f[16] = ET_DYN as u8;
                f[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
            }),
            "entry overflows the base",
        );
        let one = |edit: &dyn Fn(&mut Ph)| {
            let mut phs = headers();
            edit(&mut phs[2]);
            elf(ET_EXEC, 0x40_1000, &phs, 0x2000)
        };
        refused(
            &one(&|p| p.p_type = PT_INTERP),
            "an interpreter path without its NUL",
        );
        refused(&one(&|p| p.filesz = p.memsz + 1), "more file than memory");
        refused(
            &one(&|p| p.offset = 0x1f80),
            "data past the end of the file",
        );
        refused(
            &one(&|p| p.offset = u64::MAX - 8),
            "offset + size overflows",
        );
        refused(&one(&|p| p.memsz = u64::MAX - p.vaddr), "end overflows");
        refused(&one(&|p| p.memsz = LIMIT), "huge: past the limit");
        refused(&one(&|p| p.vaddr = 0x1000), "below the user window");
        refused(
            &one(&|p| p.vaddr = 0x4000_0000_0000),
            "above the user window",
        );
        refused(&one(&|p| p.vaddr = u64::MAX - 0x100), "wraps around");
        let no_load: Vec<Ph> = headers()[..1].to_vec();
        refused(
            &elf(ET_EXEC, 0x40_1000, &no_load, 0x2000),
            "nothing to load",
        );
        // Refused PIE: an ET_DYN whose segment would wrap past the base.
        let mut phs = headers();
        phs[1].vaddr = u64::MAX - 0x1000;
        refused(&elf(ET_DYN, 0, &phs, 0x2000), "PIE segment wraps");
    }

    #[test]
    fn the_headers_alone_are_enough_and_segments_are_checked_against_the_file_length() {
        let f = static_exe();
        let head = &f[..64 + 3 * 56];
        assert_eq!(parse(head, f.len() as u64, PIE, LIMIT), whole(&f));
        // The data segment ends at 0x1910: a file one byte shorter cannot hold it.
        assert_eq!(
            parse(head, 0x1910, PIE, LIMIT).map(|i| i.segments.len()),
            Ok(2)
        );
        assert_eq!(parse(head, 0x190f, PIE, LIMIT), Err(Errno::ENOEXEC));
        // The program headers themselves must be in the head.
        assert_eq!(
            parse(&f[..64 + 2 * 56], f.len() as u64, PIE, LIMIT),
            Err(Errno::ENOEXEC)
        );
    }

    #[test]
    fn odd_but_harmless_headers_are_accepted() {
        // Segments out of order, overlapping, or not congruent with their file offset; an
        // entry point outside every segment (the program will fault, as on Linux); other
        // header types; a zero-sized segment.
        let mut phs = headers();
        phs.swap(1, 2);
        phs[1].offset = 0x1234; // not congruent with 0x40_2810
        phs.push(Ph {
            p_type: 0x6474_e551, // PT_GNU_STACK
            flags: 6,
            offset: 0,
            vaddr: 0,
            filesz: 0,
            memsz: 0,
        });
        phs.push(Ph {
            p_type: PT_LOAD,
            flags: 4,
            offset: 0,
            vaddr: 0x40_1000,
            filesz: 0,
            memsz: 0,
        });
        let img = whole(&elf(ET_EXEC, 0x90_0000, &phs, 0x2000)).unwrap();
        assert_eq!(img.segments.len(), 3);
        assert!(!img.segments[0].congruent());
        assert_eq!(img.entry, 0x90_0000);
        assert_eq!(img.brk, 0x40_6000);
    }

    /// A position-independent program whose `PT_INTERP` (at file offset 0x300) holds `path`.
    fn dynamic(path: &[u8]) -> Vec<u8> {
        let mut phs = headers();
        phs.push(Ph {
            p_type: PT_INTERP,
            flags: 4,
            offset: 0x300,
            vaddr: 0x40_0300,
            filesz: path.len() as u64,
            memsz: path.len() as u64,
        });
        let mut f = elf(ET_DYN, 0x1000, &phs, 0x2000);
        f[0x300..0x300 + path.len()].copy_from_slice(path);
        f
    }

    #[test]
    fn the_interpreter_path() {
        let img = whole(&dynamic(b"/lib64/ld.so\0")).unwrap();
        assert_eq!(img.interp.as_deref(), Some(&b"/lib64/ld.so"[..]));
        assert_eq!(img.entry, PIE + 0x1000);
        // Up to the first NUL, as Linux opens it; relative paths are kept as they are.
        let img = whole(&dynamic(b"lib/ld\0x\0")).unwrap();
        assert_eq!(img.interp.as_deref(), Some(&b"lib/ld"[..]));
        assert_eq!(whole(&static_exe()).unwrap().interp, None);
    }

    #[test]
    fn bad_interpreter_paths_are_refused() {
        assert_eq!(
            whole(&dynamic(b"/lib64/ld.so")),
            Err(Errno::ENOEXEC),
            "no NUL"
        );
        assert_eq!(whole(&dynamic(b"\0")), Err(Errno::ENOEXEC), "1 byte");
        let mut long = vec![b'a'; 4096];
        long.push(0);
        assert_eq!(whole(&dynamic(&long)), Err(Errno::ENOEXEC), "past PATH_MAX");
        // The path must lie in the header bytes the loader was given.
        let f = dynamic(b"/lib64/ld.so\0");
        assert_eq!(
            parse(&f[..0x305], f.len() as u64, PIE, LIMIT),
            Err(Errno::ENOEXEC)
        );
        assert!(parse(&f[..0x30d], f.len() as u64, PIE, LIMIT).is_ok());
    }

    #[test]
    fn the_host_test_binary_parses_with_its_interpreter_and_without_it() {
        // A real ELF file: this test program (dynamically linked, a PIE).
        let mut me = std::fs::read("/proc/self/exe").unwrap();
        let interp = whole(&me).unwrap().interp.expect("PT_INTERP");
        assert!(
            interp.starts_with(b"/") && interp.contains(&b'/'),
            "{interp:?}"
        );
        let phoff = u64::from_le_bytes(me[32..40].try_into().unwrap()) as usize;
        let phnum = u16::from_le_bytes(me[56..58].try_into().unwrap()) as usize;
        let mut loads = 0;
        for i in 0..phnum {
            let o = phoff + 56 * i;
            let ty = u32::from_le_bytes(me[o..o + 4].try_into().unwrap());
            if ty == PT_INTERP {
                me[o..o + 4].copy_from_slice(&0u32.to_le_bytes()); // PT_NULL
            }
            loads += usize::from(ty == PT_LOAD);
        }
        if phnum as u64 > MAX_PHNUM {
            return; // a linker that wrote more headers than Linux would take
        }
        let img = whole(&me).unwrap();
        assert_eq!(img.interp, None);
        assert_eq!(img.segments.len(), loads);
        assert!(img.phdr >= PIE, "PT_PHDR relocated");
        for s in &img.segments {
            assert!(s.va >= PIE && s.end <= img.brk && s.filesz <= s.end - s.va);
            assert!(s.congruent(), "a linker's segments map as they are");
        }
    }

    /// The PT_LOAD segments of `f` as the object crate reads them, relocated by `base`.
    fn reference_segments(f: &[u8], base: u64) -> Option<Vec<(u64, u64, u64, u64)>> {
        use object::read::elf::{FileHeader, ProgramHeader};
        let h = object::elf::FileHeader64::<object::LittleEndian>::parse(f).ok()?;
        let e = h.endian().ok()?;
        let phs = h.program_headers(e, f).ok()?;
        Some(
            phs.iter()
                .filter(|p| p.p_type(e) == PT_LOAD)
                .map(|p| {
                    let va = p.p_vaddr(e).wrapping_add(base);
                    (
                        va,
                        va.wrapping_add(p.p_memsz(e)),
                        p.p_offset(e),
                        p.p_filesz(e),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn mutants_never_panic_and_what_is_accepted_is_safe_to_load() {
        // xorshift: deterministic mutations of a static and a static-pie executable (bit
        // flips, truncations, header fields set to edge values, bytes cut out).
        let pie_phs: Vec<Ph> = headers()[1..]
            .iter()
            .map(|p| Ph {
                vaddr: p.vaddr - 0x40_0000,
                ..*p
            })
            .collect();
        let bases = [static_exe(), elf(ET_DYN, 0x1000, &pie_phs, 0x2000)];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        const EDGES: [u64; 8] = [
            0,
            1,
            0xfff,
            0x1000,
            0x7fff_ffff,
            LIMIT,
            u64::MAX - 0xfff,
            u64::MAX,
        ];
        let mut accepted = 0;
        for round in 0..30_000 {
            let mut m = bases[round % 2].clone();
            // Mostly the headers, where the checks are.
            let hot = 64 + 56 * 3;
            let i = if next() % 4 == 0 {
                (next() as usize) % m.len()
            } else {
                (next() as usize) % hot
            };
            match next() % 5 {
                0 => m[i] ^= 1 << (next() % 8),
                1 => m.truncate(i),
                2 => {
                    let at = i & !7;
                    let v = EDGES[(next() % 8) as usize].wrapping_add(next() % 3);
                    if at + 8 <= m.len() {
                        m[at..at + 8].copy_from_slice(&v.to_le_bytes());
                    }
                }
                3 => m[i] = (next() % 256) as u8,
                _ => {
                    let len = (next() as usize % 16).min(m.len() - i);
                    m.drain(i..i + len);
                }
            }
            let Ok(img) = whole(&m) else {
                continue;
            };
            accepted += 1;
            // What load() relies on.
            assert!(!img.segments.is_empty());
            assert!(img.phnum >= 1 && img.phnum <= MAX_PHNUM);
            assert_eq!(img.brk % PAGE_SIZE, 0);
            for s in &img.segments {
                let (first, last) = s.pages();
                assert!(
                    in_user_window(first, last - first) && s.end < LIMIT,
                    "{s:?}"
                );
                assert!(s.va <= s.end && s.filesz <= s.end - s.va, "{s:?}");
                assert!(
                    s.offset + s.filesz <= m.len() as u64,
                    "{s:?} in {} bytes",
                    m.len()
                );
                assert!(last <= img.brk);
            }
            // The object crate reads the same segments (it also wants EI_VERSION to be
            // EV_CURRENT, which Linux does not check).
            m[6] = 1;
            let is_pie = u16::from_le_bytes([m[16], m[17]]) == ET_DYN;
            let base = if is_pie { PIE } else { 0 };
            let ours: Vec<(u64, u64, u64, u64)> = img
                .segments
                .iter()
                .map(|s| (s.va, s.end, s.offset, s.filesz))
                .collect();
            assert_eq!(reference_segments(&m, base), Some(ours));
        }
        assert!(accepted > 1000, "too few valid mutants ({accepted})");
    }
}
