//! Loading programs: static and static-pie ELF executables (and `#!` scripts) into a fresh
//! address space, with the initial stack Linux programs expect (argv, envp, auxv).

use alloc::vec::Vec;
use pvmux_hypercalls::user::{in_user_window, prot};
use pvmux_hypercalls::PAGE_SIZE;

use super::imagecache::CachedFile;
use super::space::{Mm, Space};
use super::{pool, Errno};
use crate::mm::pool_mem;

/// Top of the initial stack.
pub(crate) const STACK_TOP: u64 = 0x3ff0_0000_0000;
/// Size of the stack region.
pub(crate) const STACK_SIZE: u64 = 8 << 20;
/// Top of the `mmap` area (placements go downwards from here).
pub(crate) const MMAP_TOP: u64 = 0x3f00_0000_0000;
/// Load address of position-independent executables.
const PIE_BASE: u64 = 0x1555_5555_4000;
/// Largest total size of argv + envp strings (Linux: a quarter of the stack; we use 2 MiB).
const MAX_ARGS: usize = 2 << 20;

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;

/// What was loaded.
pub(crate) struct Loaded {
    /// Entry point.
    pub(crate) entry: u64,
    /// Initial stack pointer (pointing at argc).
    pub(crate) rsp: u64,
}

fn rd16(b: &[u8], o: usize) -> Result<u16, Errno> {
    Ok(u16::from_le_bytes(
        b.get(o..o + 2)
            .ok_or(Errno::ENOEXEC)?
            .try_into()
            .map_err(|_| Errno::ENOEXEC)?,
    ))
}
fn rd32(b: &[u8], o: usize) -> Result<u32, Errno> {
    Ok(u32::from_le_bytes(
        b.get(o..o + 4)
            .ok_or(Errno::ENOEXEC)?
            .try_into()
            .map_err(|_| Errno::ENOEXEC)?,
    ))
}
fn rd64(b: &[u8], o: usize) -> Result<u64, Errno> {
    Ok(u64::from_le_bytes(
        b.get(o..o + 8)
            .ok_or(Errno::ENOEXEC)?
            .try_into()
            .map_err(|_| Errno::ENOEXEC)?,
    ))
}

/// Parses a `#!` line: `(interpreter, optional argument)`.
pub(crate) fn shebang(file: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    if !file.starts_with(b"#!") {
        return None;
    }
    let end = file
        .iter()
        .take(256)
        .position(|&b| b == b'\n')
        .unwrap_or(file.len().min(256));
    let line = &file[2..end];
    let mut words = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty());
    let interp = words.next()?.to_vec();
    let rest: Vec<u8> = {
        let pos = line
            .windows(interp.len())
            .position(|w| w == interp.as_slice())
            .map_or(line.len(), |p| p + interp.len());
        let r = &line[pos..];
        let r = r
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .map_or(&r[r.len()..], |s| &r[s..]);
        let e = r
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t' && b != b'\r')
            .map_or(0, |e| e + 1);
        r[..e].to_vec()
    };
    Some((interp, (!rest.is_empty()).then_some(rest)))
}

/// Copies `bytes` into `space` at `va`, populating pages regardless of protection.
fn poke(mm: &mut Mm, va: u64, bytes: &[u8]) -> Result<(), Errno> {
    let mut off = 0usize;
    while off < bytes.len() {
        let a = va + off as u64;
        let n = ((PAGE_SIZE - (a & (PAGE_SIZE - 1))) as usize).min(bytes.len() - off);
        let gpa = mm.populate_private(a)?;
        pool_mem::write(gpa + (a & (PAGE_SIZE - 1)), &bytes[off..off + n]);
        off += n;
    }
    Ok(())
}

/// Copies `len` bytes of `image` from file offset `fo` into `space` at `va` (inside one
/// page), populating the page regardless of protection.
fn poke_image(mm: &mut Mm, va: u64, image: &CachedFile, fo: u64, len: u64) -> Result<(), Errno> {
    let gpa = mm.populate_private(va)?;
    pool_mem::copy(
        gpa + (va & (PAGE_SIZE - 1)),
        image.gpa_at(fo, len)?,
        len as usize,
    );
    Ok(())
}

fn page_down(v: u64) -> u64 {
    v & !(PAGE_SIZE - 1)
}
fn page_up(v: u64) -> Option<u64> {
    v.checked_add(PAGE_SIZE - 1).map(page_down)
}

/// Loads ELF image `file` into the empty `space` and builds the initial stack.
pub(crate) fn load(
    space: &Space,
    image: &CachedFile,
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
    execfn: &[u8],
) -> Result<Loaded, Errno> {
    // The ELF and program headers, copied when the image was read (the image's frames are
    // user-pool memory a program may write: never parsed in place).
    let file = image.head();
    if file.len() < 64 || &file[..4] != b"\x7fELF" {
        return Err(Errno::ENOEXEC);
    }
    if file[4] != 2 || file[5] != 1 || rd16(file, 18)? != 62 {
        return Err(Errno::ENOEXEC);
    }
    let ty = rd16(file, 16)?;
    let base = match ty {
        2 => 0,
        3 => PIE_BASE,
        _ => return Err(Errno::ENOEXEC),
    };
    let entry = rd64(file, 24)?.checked_add(base).ok_or(Errno::ENOEXEC)?;
    let phoff = rd64(file, 32)? as usize;
    let phentsize = rd16(file, 54)? as usize;
    let phnum = rd16(file, 56)? as usize;
    if phentsize < 56 || phnum == 0 || phnum > 128 {
        return Err(Errno::ENOEXEC);
    }
    let mut phdr_va = 0;
    let mut brk = 0u64;
    let mut loads = 0;
    let mut mm = space.mm.lock();
    // Program headers: validate all, then map.
    let mut segs = Vec::new();
    for i in 0..phnum {
        let ph = phoff.checked_add(i * phentsize).ok_or(Errno::ENOEXEC)?;
        let p_type = rd32(file, ph)?;
        let p_flags = rd32(file, ph + 4)?;
        let p_offset = rd64(file, ph + 8)?;
        let p_vaddr = rd64(file, ph + 16)?;
        let p_filesz = rd64(file, ph + 32)?;
        let p_memsz = rd64(file, ph + 40)?;
        match p_type {
            PT_INTERP => return Err(Errno::ENOEXEC), // dynamically linked: not supported
            PT_PHDR => phdr_va = p_vaddr.wrapping_add(base),
            PT_LOAD => {
                let va = p_vaddr.checked_add(base).ok_or(Errno::ENOEXEC)?;
                let end = va.checked_add(p_memsz).ok_or(Errno::ENOEXEC)?;
                if p_filesz > p_memsz
                    || p_offset
                        .checked_add(p_filesz)
                        .is_none_or(|e| e > image.len() as u64)
                    || !in_user_window(
                        page_down(va),
                        page_up(end).ok_or(Errno::ENOEXEC)? - page_down(va),
                    )
                    || end >= super::exec::MMAP_TOP
                {
                    return Err(Errno::ENOEXEC);
                }
                if phdr_va == 0 && p_offset <= phoff as u64 && (phoff as u64) < p_offset + p_filesz
                {
                    phdr_va = va + (phoff as u64 - p_offset);
                }
                segs.push((va, end, p_offset, p_filesz, p_flags));
                brk = brk.max(end);
                loads += 1;
            }
            _ => {}
        }
    }
    if loads == 0 {
        return Err(Errno::ENOEXEC);
    }
    for &(va, end, off, filesz, flags) in &segs {
        let mut p = 0;
        if flags & 4 != 0 {
            p |= prot::READ;
        }
        if flags & 2 != 0 {
            p |= prot::WRITE;
        }
        if flags & 1 != 0 {
            p |= prot::EXEC;
        }
        let (s, e) = (page_down(va), page_up(end).ok_or(Errno::ENOEXEC)?);
        mm.add_region_merging(s, e, p);
        // Whole pages of file data whose file offset is congruent with their address are
        // the cached frames themselves, mapped copy-on-write; the edges are private
        // copies; the rest up to memsz (.bss) is demand-zero.
        let congruent = va % PAGE_SIZE == off % PAGE_SIZE;
        let file_end = off + filesz;
        let mut page = page_down(va);
        while page < va + filesz {
            let lo = page.max(va);
            let hi = (page + PAGE_SIZE).min(va + filesz);
            let fo = off + (lo - va); // file offset of `lo`
            let whole =
                congruent && lo == page && hi == page + PAGE_SIZE && fo + PAGE_SIZE <= file_end;
            if whole && mm.frame_of(page).is_none() {
                let frame = image.frame_at(fo);
                pool::get(frame);
                mm.install_cow(page, frame);
            } else {
                poke_image(&mut mm, lo, image, fo, hi - lo)?;
            }
            page += PAGE_SIZE;
        }
    }
    let brk = page_up(brk).ok_or(Errno::ENOEXEC)?;
    mm.brk_base = brk;
    mm.brk = brk;

    // The stack.
    mm.add_vma(
        STACK_TOP - STACK_SIZE,
        STACK_TOP,
        prot::READ | prot::WRITE,
        None,
    );
    let strings: usize = argv.iter().chain(envp.iter()).map(|s| s.len() + 1).sum();
    if strings > MAX_ARGS {
        return Err(Errno::E2BIG);
    }
    let mut sp = STACK_TOP - 16;
    // AT_RANDOM: the C library's stack-protector canary and pointer guard.
    let mut random = [0u8; 16];
    super::files::random::fill(&mut random);
    sp -= 16;
    let at_random = sp;
    poke(&mut mm, sp, &random)?;
    let push_str = |mm: &mut Mm, sp: &mut u64, s: &[u8]| -> Result<u64, Errno> {
        *sp -= s.len() as u64 + 1;
        poke(mm, *sp, s)?;
        poke(mm, *sp + s.len() as u64, &[0])?;
        Ok(*sp)
    };
    let platform = push_str(&mut mm, &mut sp, b"x86_64")?;
    let execfn_va = push_str(&mut mm, &mut sp, execfn)?;
    let mut envp_va = Vec::with_capacity(envp.len());
    for e in envp.iter().rev() {
        envp_va.push(push_str(&mut mm, &mut sp, e)?);
    }
    envp_va.reverse();
    let mut argv_va = Vec::with_capacity(argv.len());
    for a in argv.iter().rev() {
        argv_va.push(push_str(&mut mm, &mut sp, a)?);
    }
    argv_va.reverse();
    sp &= !15;
    let hwcap = super::misc::cpuid_hwcap();
    let auxv: [(u64, u64); 18] = [
        (3, phdr_va),      // AT_PHDR
        (4, 56),           // AT_PHENT
        (5, phnum as u64), // AT_PHNUM
        (6, PAGE_SIZE),    // AT_PAGESZ
        (7, 0),            // AT_BASE
        (8, 0),            // AT_FLAGS
        (9, entry),        // AT_ENTRY
        (11, 0),           // AT_UID
        (12, 0),           // AT_EUID
        (13, 0),           // AT_GID
        (14, 0),           // AT_EGID
        (16, hwcap),       // AT_HWCAP
        (17, 100),         // AT_CLKTCK
        (23, 0),           // AT_SECURE
        (25, at_random),   // AT_RANDOM
        (26, 0),           // AT_HWCAP2
        (31, execfn_va),   // AT_EXECFN
        (15, platform),    // AT_PLATFORM
    ];
    let mut words: Vec<u64> = Vec::new();
    words.push(argv.len() as u64);
    words.extend_from_slice(&argv_va);
    words.push(0);
    words.extend_from_slice(&envp_va);
    words.push(0);
    for (k, v) in auxv {
        words.push(k);
        words.push(v);
    }
    words.push(0);
    words.push(0);
    let bytes = words.len() * 8;
    sp -= bytes as u64;
    sp &= !15;
    if sp < STACK_TOP - STACK_SIZE + PAGE_SIZE {
        return Err(Errno::E2BIG);
    }
    let raw: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    poke(&mut mm, sp, &raw)?;
    Ok(Loaded { entry, rsp: sp })
}
