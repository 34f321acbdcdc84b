//! Loading programs: static, static-pie and dynamically linked ELF executables (with their
//! program interpreter, `PT_INTERP`) and `#!` scripts into a fresh address space, with the
//! initial stack Linux programs expect (argv, envp, auxv).
//!
//! The pure parts are functions over byte slices, unit-tested on the host: [`elf`] reads and
//! checks the headers, [`stack`] lays out the initial stack, [`shebang`] parses a `#!` line.
//! This file maps the result into the space.

mod elf;
mod shebang;
mod stack;

use alloc::sync::Arc;
use alloc::vec::Vec;
use pvmux_hypercalls::user::prot;
use pvmux_hypercalls::PAGE_SIZE;

use super::imagecache::{self, CachedFile};
use super::space::{ImageMap, MapFile, Mm, Space};
use super::Errno;
use crate::mm::pool_mem;

/// Top of the initial stack.
pub(crate) const STACK_TOP: u64 = 0x3ff0_0000_0000;
/// Size of the stack region.
pub(crate) const STACK_SIZE: u64 = 8 << 20;
/// Top of the `mmap` area (placements go downwards from here).
pub(crate) const MMAP_TOP: u64 = 0x3f00_0000_0000;
/// Load address of position-independent executables.
const PIE_BASE: u64 = 0x1555_5555_4000;
/// Load address of position-independent executables in a space that runs in the kernel
/// sandbox (the trusted in-process mode): [`PIE_BASE`] lies in the kernel's window there,
/// so they go below the kernel sandbox's control region (`INPROC_LOW`).
const INPROC_PIE_BASE: u64 = 0x0155_5555_4000;
const _: () = assert!(pvmux_hypercalls::user::inproc::in_inproc_window(
    INPROC_PIE_BASE,
    1 << 40
));

pub(crate) use shebang::shebang;

/// What was loaded.
pub(crate) struct Loaded {
    /// Entry point.
    pub(crate) entry: u64,
    /// Initial stack pointer (pointing at argc).
    pub(crate) rsp: u64,
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

/// Copies `len` bytes of `image` from file offset `fo` into `space` (created at guest time
/// `since`) at `va` (inside one page), populating the page regardless of protection.
fn poke_image(
    mm: &mut Mm,
    va: u64,
    image: &CachedFile,
    fo: u64,
    len: u64,
    since: u64,
) -> Result<(), Errno> {
    let src = image.gpa_at(fo, len, since)?;
    let gpa = mm.populate_private(va)?;
    pool_mem::copy(gpa + (va & (PAGE_SIZE - 1)), src, len as usize);
    Ok(())
}

fn page_down(v: u64) -> u64 {
    v & !(PAGE_SIZE - 1)
}

/// Where a program interpreter (`ld.so`) is loaded: above the `mmap` area (which grows
/// down from [`MMAP_TOP`]) and below the stack, so neither ever meets it.
const INTERP_BASE: u64 = MMAP_TOP;

/// Maps the loadable segments of `elf` (parsed from `image`, the file at `path`) into `mm`,
/// a space created at guest time `since`.
fn map_segments(
    mm: &mut Mm,
    image: &Arc<CachedFile>,
    elf: &elf::Image,
    path: &[u8],
    since: u64,
) -> Result<(), Errno> {
    let name: alloc::sync::Arc<[u8]> = path.into();
    for seg in &elf.segments {
        let (s, e) = seg.pages();
        mm.add_region_merging(s, e, seg.prot);
        // Whole pages of file data whose file offset is congruent with their address come
        // from the image at their first touch (copy-on-write; the image's chunk is read
        // then: nothing is read here but the edges); the edges are private copies; the
        // rest up to memsz (.bss) is demand-zero.
        let (va, off, filesz) = (seg.va, seg.offset, seg.filesz);
        let file_end = off + filesz;
        let offset = page_down(off);
        let backed = seg.congruent().then(|| ImageMap {
            file: image.clone(),
            lo: off.next_multiple_of(PAGE_SIZE),
            hi: page_down(file_end.min(image.len() as u64)),
            since,
        });
        let file = MapFile {
            path: name.clone(),
            ino: image.ino(),
            offset,
            bus_past_eof: false,
            image: backed,
        };
        mm.name_file(s, e, &file);
        let mut page = page_down(va);
        while page < va + filesz {
            let lo = page.max(va);
            let hi = (page + PAGE_SIZE).min(va + filesz);
            let fo = off + (lo - va); // file offset of `lo`
            let whole = seg.congruent()
                && lo == page
                && hi == page + PAGE_SIZE
                && fo + PAGE_SIZE <= file_end;
            // A whole page comes from this segment's image mapping unless the page is held
            // already or belongs to a region an earlier segment named (a page two segments
            // share): then it is copied, over what that segment put there.
            let lazy = whole
                && mm.frame_of(page).is_none()
                && mm
                    .image_source(page)
                    .is_some_and(|(f, o)| Arc::ptr_eq(f, image) && o == fo);
            if !lazy {
                poke_image(mm, lo, image, fo, hi - lo, since)?;
            }
            page += PAGE_SIZE;
        }
        // The chunks earlier runs read already: mapped now, not one fault each.
        mm.map_image_filled(s, e);
    }
    Ok(())
}

/// The program interpreter `path` of a dynamically linked program, read (through the image
/// cache) and parsed for loading at [`INTERP_BASE`]. `ENOENT` (and the other errors of
/// opening it) as Linux gives them; an interpreter that is not a loadable ELF file is
/// `ELIBBAD` (Linux: `ELIBBAD` too, but `EIO` for one shorter than an ELF header).
fn interpreter(
    cwd: crate::fs::ramfs::Ino,
    path: &[u8],
) -> Result<(Arc<CachedFile>, elf::Image), Errno> {
    let file = imagecache::load(cwd, path).map_err(|e| {
        crate::println!(
            "exec: program interpreter {} not loaded: {e}",
            alloc::string::String::from_utf8_lossy(path)
        );
        if e == Errno::ENOEXEC {
            Errno::ELIBBAD
        } else {
            e
        }
    })?;
    match elf::parse(
        file.head(),
        file.len() as u64,
        INTERP_BASE,
        STACK_TOP - STACK_SIZE,
    ) {
        // Its own PT_INTERP, if any, is ignored (Linux maps only the loadable segments of an
        // interpreter).
        Ok(img) => Ok((file, img)),
        Err(_) => {
            crate::println!(
                "exec: program interpreter {} is not a loadable ELF file",
                alloc::string::String::from_utf8_lossy(path)
            );
            Err(Errno::ELIBBAD)
        }
    }
}

/// The interpreter a dynamically linked program `path` (looked up from `cwd`) names, if it
/// is one and that interpreter cannot be found: for the error message of a program that
/// could not start (`ENOENT` alone would blame the program).
pub(crate) fn missing_interpreter(cwd: crate::fs::ramfs::Ino, path: &[u8]) -> Option<Vec<u8>> {
    let file = imagecache::load(cwd, path).ok()?;
    let interp = elf::parse(file.head(), file.len() as u64, PIE_BASE, MMAP_TOP)
        .ok()?
        .interp?;
    match imagecache::load(cwd, &interp) {
        Err(Errno::ENOENT | Errno::ENOTDIR) => Some(interp),
        _ => None,
    }
}

/// Loads ELF image `file` into the empty `space` and builds the initial stack; a
/// dynamically linked program's interpreter (`PT_INTERP`, looked up from `cwd` when
/// relative) is loaded too, at [`INTERP_BASE`], and started instead of the program (which
/// it finds through `AT_PHDR`/`AT_ENTRY`; `AT_BASE` is its own base).
pub(crate) fn load(
    space: &Space,
    image: &Arc<CachedFile>,
    cwd: crate::fs::ramfs::Ino,
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
    execfn: &[u8],
) -> Result<Loaded, Errno> {
    // The ELF and program headers, copied when the image was read (the image's frames are
    // user-pool memory a program may write: never parsed in place).
    let pie_base = if space.is_inproc() {
        INPROC_PIE_BASE
    } else {
        PIE_BASE
    };
    let elf = elf::parse(image.head(), image.len() as u64, pie_base, MMAP_TOP)?;
    let interp = match &elf.interp {
        Some(path) => Some(interpreter(cwd, path)?),
        None => None,
    };
    let mut mm = space.mm.lock();
    map_segments(&mut mm, image, &elf, execfn, space.created_ns)?;
    let (start, base) = match &interp {
        Some((file, ld)) => {
            let ld_path = elf.interp.as_deref().unwrap_or_default();
            map_segments(&mut mm, file, ld, ld_path, space.created_ns)?;
            (ld.entry, INTERP_BASE)
        }
        None => (elf.entry, 0),
    };
    mm.brk_base = elf.brk;
    mm.brk = elf.brk;

    // The vDSO and its vvar page, then the stack.
    let sysinfo_ehdr = super::vdso::map(&mut mm)?;
    let bottom = STACK_TOP - STACK_SIZE;
    mm.add_vma(bottom, STACK_TOP, prot::READ | prot::WRITE, None);
    let mut random = [0u8; 16];
    super::files::random::fill(&mut random);
    let st = stack::build(
        STACK_TOP,
        bottom + PAGE_SIZE,
        &stack::Params {
            argv,
            envp,
            execfn,
            random,
            base,
            entry: elf.entry,
            phdr: elf.phdr,
            phnum: elf.phnum,
            hwcap: super::misc::cpuid_hwcap(),
            minsigstksz: super::signal::min_sigstack_size(),
            sysinfo_ehdr,
            ids: super::creds::exec_ids(),
        },
    )?;
    poke(&mut mm, st.sp, &st.bytes)?;
    Ok(Loaded {
        entry: start,
        rsp: st.sp,
    })
}
