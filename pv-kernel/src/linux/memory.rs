//! Memory system calls: brk, mmap, munmap, mprotect, mremap, madvise, msync.
//!
//! File mappings map the page cache (`fs::pagecache`): a `MAP_SHARED` one the file's own
//! frames (shared memory the file, `read` and `write` all see; `msync` has nothing to
//! write back, `munmap` keeps the data), a `MAP_PRIVATE` one the cached frames
//! copy-on-write.
//!
//! A process's regions are bounded like Linux's: at most [`limits::MAX_MAP_COUNT`] (Linux's
//! `vm.max_map_count`) — `mmap` fails with `ENOMEM` beyond it, and so do the `munmap` and
//! `mprotect` that would split a region at the limit ([`limits`]) — and by `RLIMIT_AS`
//! (bytes mapped) and `RLIMIT_DATA` (the heap). Every region costs kernel heap, so before
//! one is added the heap's headroom is checked too (`alloc_guard`). Unlike Linux, the
//! memory map does not merge neighbouring regions with equal rights (`space/mm.rs`), so a
//! program that maps more than [`limits::MAX_MAP_COUNT`] adjacent pieces one by one gets `ENOMEM`
//! here where Linux would have merged them.

use alloc::sync::Arc;
use alloc::vec::Vec;
use pvmux_hypercalls::user::in_user_window;
use pvmux_hypercalls::PAGE_SIZE;

use super::files::MmapSource;
use super::rlimit::{self, res, RLIM_INFINITY};
use super::shmem::ShmRef;
use super::space::{MapFile, Mm, Space};
use super::task::current_process;
use super::uaccess::copy_to_user;
use super::{Errno, SysResult};

pub(crate) mod limits;
use limits::{splits_for_munmap, splits_for_protect};

/// Kernel heap a region costs at most (its entry in the map, bookkeeping): checked against
/// the heap's headroom before one is added.
const VMA_COST: usize = 256;

/// Number of regions of `mm` (in O(1): the map's exact length).
fn map_count(mm: &Mm) -> usize {
    mm.vmas().size_hint().0
}

/// Kernel heap a page of the memory map costs (its entry).
const PAGE_ENTRY_COST: usize = 64;

/// `ENOMEM` unless the kernel heap can afford a copy of `mm`'s map (`fork`).
pub(crate) fn check_fork(mm: &Mm) -> Result<(), Errno> {
    let cost = map_count(mm)
        .saturating_mul(VMA_COST)
        .saturating_add(mm.resident_pages().saturating_mul(PAGE_ENTRY_COST));
    super::alloc_guard::reserve(cost)
}

/// `Ok` if `mm` may get `added` more regions: fewer than [`limits::MAX_MAP_COUNT`] now
/// (`strict`: the splitting check of `munmap`/`mprotect`, `count + added <= MAX`; else
/// Linux's `do_mmap` check, `count <= MAX`) and the kernel heap can afford them.
fn may_add_regions(mm: &Mm, added: usize, strict: bool) -> Result<(), Errno> {
    if added == 0 {
        return Ok(());
    }
    if !limits::map_count_allows(map_count(mm), added, strict) {
        return Err(Errno::ENOMEM);
    }
    super::alloc_guard::reserve(added * VMA_COST)
}

/// `ENOMEM` if mapping `more` bytes would take `mm` past the process's `RLIMIT_AS`.
fn check_as(mm: &Mm, more: u64) -> Result<(), Errno> {
    let limit = rlimit::current(res::AS);
    if limit == RLIM_INFINITY {
        return Ok(());
    }
    let mapped = mm.usage().mapped;
    if mapped.saturating_add(more) > limit {
        return Err(Errno::ENOMEM);
    }
    Ok(())
}

/// The region `[start, end)` of `mm` that contains `va`, if any.
fn region(mm: &Mm, va: u64) -> Option<(u64, u64)> {
    mm.vma_at(va).map(|(s, v)| (s, v.end))
}

const MAP_SHARED: u64 = 0x01;
const MAP_PRIVATE: u64 = 0x02;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;
const MREMAP_DONTUNMAP: u64 = 4;

fn page_up(v: u64) -> Option<u64> {
    v.checked_add(PAGE_SIZE - 1).map(|x| x & !(PAGE_SIZE - 1))
}

/// `brk(addr)`.
pub(crate) fn sys_brk(addr: u64) -> SysResult {
    let p = current_process();
    let space = p.space().ok_or(Errno::ENOMEM)?;
    let mut mm = space.mm.lock();
    let cur = mm.brk;
    if addr > cur {
        // Growing adds a region (Linux's `do_brk_flags` checks the count the same way);
        // `RLIMIT_DATA` bounds the heap and `RLIMIT_AS` everything mapped.
        let data = rlimit::current(res::DATA);
        let grows = addr.saturating_sub(cur.max(mm.brk_base));
        if may_add_regions(&mm, 1, false).is_err()
            || (data != RLIM_INFINITY && addr.saturating_sub(mm.brk_base) > data)
            || check_as(&mm, grows).is_err()
        {
            return Ok(cur);
        }
    }
    Ok(mm.set_brk(addr))
}

/// `mmap(addr, len, prot, flags, fd, off)`.
pub(crate) fn sys_mmap(
    addr: u64,
    len: u64,
    prot_bits: u64,
    flags: u64,
    fd: u64,
    off: u64,
) -> SysResult {
    if len == 0 || !addr.is_multiple_of(PAGE_SIZE) || !off.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    let len = page_up(len).ok_or(Errno::ENOMEM)?;
    if prot_bits & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    let shared = match flags & 3 {
        MAP_SHARED => true,
        MAP_PRIVATE => false,
        _ => return Err(Errno::EINVAL),
    };
    // A shared mapping of /dev/zero is shared anonymous memory (as Linux).
    let anon = flags & MAP_ANONYMOUS != 0 || (shared && super::files::is_dev_zero(fd as i32));
    // File mappings map the page cache's frames: a shared one the file's own pages (so
    // the mapping, `read` and `write` see the same bytes), a private one copy-on-write.
    let file = if anon {
        None
    } else {
        if shared && prot_bits & 2 != 0 && super::files::memfd::fd_write_sealed(fd as i32) {
            return Err(Errno::EPERM);
        }
        let fd = fd as i32;
        // The errors Linux gives before mapping anything: not a readable file.
        let target = super::files::mmap_file(fd)?;
        if target.is_none() {
            super::files::read_fd_at(fd, off, &mut [])?;
        }
        if shared && prot_bits & 2 != 0 {
            match target {
                Some((_, true)) => {}
                Some((_, false)) => return Err(Errno::EACCES),
                None => return Err(Errno::ENODEV),
            }
        }
        Some((fd, target.map(|(source, _)| source)))
    };
    // A shared mapping of a file the guest owns (or a writable one of any file, copied up
    // first) maps the file's pages; a read-only shared mapping of a host or initramfs file
    // is a copy-on-write snapshot of its cached pages, as a private one.
    let file_shm = match &file {
        // A file object's page-cache object (a memfd): its frames, always.
        Some((_, Some(MmapSource::Pages(obj)))) if shared => {
            Some(ShmRef::of(obj.clone(), off / PAGE_SIZE))
        }
        Some((_, Some(MmapSource::Node(ino)))) if shared => {
            let ino = *ino;
            let obj = crate::fs::with(|fs| {
                if prot_bits & 2 != 0 || fs.has_owned_pages(ino) || fs.is_volume_file(ino) {
                    fs.shared_pages(ino).map(Some)
                } else {
                    Ok(None)
                }
            })
            .map_err(|e| match e {
                Errno::ENOSPC => Errno::ENOMEM,
                e => e,
            })?;
            obj.map(|o| ShmRef::of(o, off / PAGE_SIZE))
        }
        _ => None,
    };
    let p = current_process();
    let space = p.space().ok_or(Errno::ENOMEM)?;
    let mut mm = space.mm.lock();
    let start = place(
        &mut mm,
        addr,
        len,
        flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0,
        flags & MAP_FIXED_NOREPLACE == 0,
    )?;
    // Shared anonymous memory is an object of its own that every `fork` copy of the region
    // maps too (`shmem`); private memory is copy-on-write after `fork`.
    let shm = if shared && anon {
        Some(ShmRef::new_object())
    } else {
        file_shm
    };
    let is_shm = shm.is_some();
    mm.add_vma(start, start + len, prot_bits as u32, shm);
    if let Some((fd, _)) = &file {
        if let Some((path, ino)) = super::files::map_name(*fd) {
            let f = MapFile {
                path,
                ino,
                offset: off,
                bus_past_eof: true,
                image: None,
            };
            mm.name_file(start, start + 1, &f);
        }
    }
    drop(mm);
    if let (Some((fd, source)), false) = (file, is_shm) {
        let exec = prot_bits & 4 != 0;
        if let Err(e) = map_file_private(&space, fd, source, exec, start, off, len) {
            space.mm.lock().unmap(start, start + len);
            return Err(e);
        }
    }
    Ok(start)
}

/// Where a new region of `len` bytes goes in `mm`, after the region-count and `RLIMIT_AS`
/// checks: at `addr` if `fixed` (`replace`: what it overlapped unmapped, else `EEXIST` if
/// anything is there), else at `addr` if that range is free, else wherever there is room.
fn place(mm: &mut Mm, addr: u64, len: u64, fixed: bool, replace: bool) -> Result<u64, Errno> {
    may_add_regions(mm, 1, false)?;
    check_as(mm, len)?;
    if fixed {
        if !in_user_window(addr, len) {
            return Err(Errno::ENOMEM);
        }
        if !replace && !mm.is_free(addr, addr + len) {
            return Err(Errno::EEXIST);
        }
        let split = splits_for_munmap(region(mm, addr), addr, addr + len);
        may_add_regions(mm, split, true)?;
        mm.unmap(addr, addr + len);
        Ok(addr)
    } else if addr != 0 && in_user_window(addr, len) && mm.is_free(addr, addr + len) {
        Ok(addr)
    } else {
        mm.find_free(len)
    }
}

/// Maps shared object `shm` as a new region of `len` bytes with `prot_bits`, named `name`
/// in `/proc/PID/maps` (`shmat`): at `addr` if `fixed` — `EINVAL` if anything is mapped
/// there, unless `replace` — else wherever there is room. The region's start.
pub(crate) fn map_shared_object(
    addr: u64,
    len: u64,
    prot_bits: u32,
    fixed: bool,
    replace: bool,
    shm: ShmRef,
    name: &MapFile,
) -> SysResult {
    let space = current_process().space().ok_or(Errno::ENOMEM)?;
    let mut mm = space.mm.lock();
    let start = place(&mut mm, addr, len, fixed, replace).map_err(|e| match e {
        Errno::EEXIST => Errno::EINVAL,
        e => e,
    })?;
    mm.add_vma(start, start + len, prot_bits, Some(shm));
    mm.name_file(start, start + 1, name);
    Ok(start)
}

/// The shared object whose region starts at `addr` from the object's first page, if
/// `size_of` knows its size, and the end of its regions from there (the contiguous ones of
/// that object, at most that size): what `shmdt(addr)` unmaps.
pub(crate) fn shared_object_at(
    addr: u64,
    size_of: impl Fn(&Arc<super::shmem::ShmObject>) -> Option<u64>,
) -> Option<(Arc<super::shmem::ShmObject>, u64)> {
    let space = current_process().space()?;
    let mm = space.mm.lock();
    let (start, vma) = mm.vma_at(addr)?;
    let shm = vma.shm.as_ref().filter(|s| start == addr && s.pgoff == 0)?;
    let obj = shm.obj.clone();
    let limit = addr.saturating_add(page_up(size_of(&obj)?)?);
    let mut end = vma.end;
    while end < limit {
        match mm.vma_at(end) {
            Some((s, v))
                if s == end && v.shm.as_ref().is_some_and(|x| Arc::ptr_eq(&x.obj, &obj)) =>
            {
                end = v.end;
            }
            _ => break,
        }
    }
    Some((obj, end.min(limit)))
}

/// Pages of a private file mapping set up per filesystem call (bounds the time the
/// filesystem lock is held and the list of frames).
const MAP_CHUNK_PAGES: u64 = 1024;

/// Fills the new private file mapping `[start, start + len)` of `space` with the bytes of
/// `fd` (inode `ino` if a regular file) from `off`: the page cache's frames mapped
/// copy-on-write where the file's bytes are in the cache (a write copies the page; until
/// then the mapping sees the file), else copies. Holes and pages past the end of the file
/// stay demand-zero.
fn map_file_private(
    space: &super::space::Space,
    fd: i32,
    source: Option<MmapSource>,
    exec: bool,
    start: u64,
    off: u64,
    len: u64,
) -> Result<(), Errno> {
    let ino = match source {
        None => return fill_from_file(space, fd, start, off, len),
        Some(MmapSource::Pages(obj)) => {
            // A file object's pages (a memfd): copy-on-write, holes demand-zero.
            let (first, pages) = (off / PAGE_SIZE, len / PAGE_SIZE);
            let mut mm = space.mm.lock();
            for i in 0..pages {
                let va = start + i * PAGE_SIZE;
                // The region may have been unmapped by another thread meanwhile.
                if mm.vma_at(va).is_none_or(|(_, v)| v.shm.is_some()) {
                    continue;
                }
                if let Some(gpa) = obj.existing(first + i) {
                    mm.install_cow(va, gpa);
                }
            }
            return Ok(());
        }
        Some(MmapSource::Node(ino)) => ino,
    };
    // Code of a host file, and every part of a host ELF file (a shared library's headers,
    // relocations and data are as good as code to the processes that map them), comes from
    // the image cache, verified against the tags taken when the file was read from the host
    // (not from the page cache, whose frames a program could have written:
    // docs/SECURITY.md, "Program image cache"); other files' code is copied from the file
    // itself.
    if let Some(image) = super::imagecache::for_mapping(ino, off, exec)? {
        return map_image(space, &image, start, off, len);
    }
    if exec {
        return fill_from_ino(space, ino, start, off, len);
    }
    let (first, pages) = (off / PAGE_SIZE, len / PAGE_SIZE);
    let mut done = 0;
    while done < pages {
        let n = (pages - done).min(MAP_CHUNK_PAGES);
        let Some(frames) = crate::fs::with(|fs| fs.file_frames(ino, first + done, n))? else {
            // Not in the cache (initramfs bytes, or the pool is short): copy the rest.
            let at = done * PAGE_SIZE;
            return fill_from_file(space, fd, start + at, off + at, len - at);
        };
        let mut mm = space.mm.lock();
        for (idx, gpa) in frames {
            let va = start + (idx - first) * PAGE_SIZE;
            // The region may have been unmapped by another thread meanwhile.
            if mm.vma_at(va).is_some_and(|(_, v)| v.shm.is_none()) {
                mm.install_cow(va, gpa);
            } else {
                super::pool::put(gpa);
            }
        }
        drop(mm);
        done += n;
    }
    Ok(())
}

/// Maps the cached image `image` of a file into the new private mapping `[start, start +
/// len)` from file offset `off` (page aligned): whole pages of the file come from the
/// image's frames at their first touch, copy-on-write (`ImageMap`: the image's 64 KiB
/// chunks are read or checked then, not now); a last partial page is a private copy of its
/// file bytes (the rest of it zero, whatever the shared frame holds past the end of the
/// file); pages past the end of the file stay demand-zero.
fn map_image(
    space: &super::space::Space,
    image: &alloc::sync::Arc<super::imagecache::CachedFile>,
    start: u64,
    off: u64,
    len: u64,
) -> Result<(), Errno> {
    let size = image.len() as u64;
    let since = space.created_ns;
    let whole_end = off.saturating_add(len).min(size) & !(PAGE_SIZE - 1);
    let backing = super::space::ImageMap {
        file: image.clone(),
        lo: off,
        hi: whole_end.max(off),
        since,
    };
    let mut mm = space.mm.lock();
    let lazy = mm.set_image(start, start + len, &backing);
    if lazy {
        // The chunks earlier mappings read already: mapped now, not one fault each.
        mm.map_image_filled(start, start + len);
    }
    let mut i = 0;
    while i < len / PAGE_SIZE {
        let (va, fo) = (start + i * PAGE_SIZE, off + i * PAGE_SIZE);
        i += 1;
        if fo >= size {
            break;
        }
        let whole = fo + PAGE_SIZE <= size;
        if lazy && whole {
            continue;
        }
        // The region may have been unmapped by another thread meanwhile.
        if mm.vma_at(va).is_none_or(|(_, v)| v.shm.is_some()) || mm.frame_of(va).is_some() {
            continue;
        }
        if whole {
            // A region with no name to carry the image: its pages now.
            image.gpa_at(fo, PAGE_SIZE, since)?;
            let frame = image.frame_at(fo);
            super::pool::get(frame);
            mm.install_cow(va, frame);
        } else {
            let n = size - fo;
            let src = image.gpa_at(fo, n, since)?;
            let gpa = mm.populate_private(va)?;
            crate::mm::pool_mem::copy(gpa, src, n as usize);
        }
    }
    Ok(())
}

/// Bytes of a file mapping read at a time (through one kernel buffer, so a mapping of any
/// size costs the kernel heap no more than this).
const FILE_CHUNK: usize = 64 * 1024;

/// Fills the new private file mapping `[start, start + len)` of `space` with the bytes of
/// `fd` from `off`, chunk by chunk (the memory map is not locked while the file is read);
/// pages past the end of the file stay demand-zero.
fn fill_from_file(
    space: &super::space::Space,
    fd: i32,
    start: u64,
    off: u64,
    len: u64,
) -> Result<(), Errno> {
    fill_with(space, start, off, len, &mut |at, buf| {
        super::files::read_fd_at(fd, at, buf)
    })
}

/// [`fill_from_file`] from inode `ino`, host bytes from the host (not the page cache).
fn fill_from_ino(
    space: &super::space::Space,
    ino: crate::fs::ramfs::Ino,
    start: u64,
    off: u64,
    len: u64,
) -> Result<(), Errno> {
    fill_with(space, start, off, len, &mut |at, buf| {
        crate::fs::with(|fs| fs.read_ino_uncached(ino, at, buf))
    })
}

/// Reads a file's bytes at an offset into a buffer: the bytes read, 0 at the end.
type FileReader<'a> = dyn FnMut(u64, &mut [u8]) -> Result<usize, Errno> + 'a;

/// Fills `[start, start + len)` of `space` with the bytes `read(offset, buf)` gives from
/// `off` on, chunk by chunk through one kernel buffer.
fn fill_with(
    space: &super::space::Space,
    start: u64,
    off: u64,
    len: u64,
    read: &mut FileReader<'_>,
) -> Result<(), Errno> {
    let mut buf = super::files::file::kbuf(FILE_CHUNK.min(len as usize))?;
    let mut done = 0u64;
    while done < len {
        let want = ((len - done) as usize).min(FILE_CHUNK);
        let mut got = 0usize;
        while got < want {
            let n = read(off + done + got as u64, &mut buf[got..want])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        if got == 0 {
            break;
        }
        let mut mm = space.mm.lock();
        for (i, page) in buf[..got].chunks(PAGE_SIZE as usize).enumerate() {
            let gpa = mm.populate(start + done + (i as u64) * PAGE_SIZE)?;
            crate::mm::pool_mem::write(gpa, page);
        }
        drop(mm);
        if got < want {
            break;
        }
        done += got as u64;
    }
    Ok(())
}

const MS_ASYNC: u64 = 1;
const MS_INVALIDATE: u64 = 2;
const MS_SYNC: u64 = 4;

/// The caller's space and the end of `[addr, addr + len)` (`len` rounded up to pages), all
/// of which regions must cover (`msync`, `mincore`): `ENOMEM` if some part is not mapped
/// or the range wraps; `None` for an empty range.
fn mapped_range(addr: u64, len: u64) -> Result<Option<(Arc<Space>, u64)>, Errno> {
    let len = page_up(len).ok_or(Errno::ENOMEM)?;
    if len == 0 {
        return Ok(None);
    }
    let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
    let space = current_process().space().ok_or(Errno::ENOMEM)?;
    {
        let mm = space.mm.lock();
        let mut at = addr;
        while at < end {
            let (_, v) = mm.vma_at(at).ok_or(Errno::ENOMEM)?;
            at = v.end;
        }
    }
    Ok(Some((space, end)))
}

/// Pages `mincore` reports per copy to the caller's vector (its bytes are built on the
/// kernel heap a piece at a time: a range can be a terabyte reservation).
const MINCORE_PIECE: u64 = 4096;

/// `mincore(addr, len, vec)`: a byte per page of `[addr, addr + len)`, 1 where the page is
/// resident in this process (touched, or populated with a fault around it), else 0. As
/// Linux: `EINVAL` for an unaligned `addr`, `ENOMEM` if part of the range is not mapped,
/// `EFAULT` for a vector the caller cannot write (the pieces before it written).
pub(crate) fn sys_mincore(addr: u64, len: u64, vec: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    let Some((space, end)) = mapped_range(addr, len)? else {
        return Ok(0);
    };
    let mut start = addr;
    while start < end {
        let stop = end.min(start.saturating_add(MINCORE_PIECE * PAGE_SIZE));
        let mut bytes = alloc::vec![0u8; ((stop - start) / PAGE_SIZE) as usize];
        for (va, _, _) in space.mm.lock().resident(start, stop) {
            bytes[((va - start) / PAGE_SIZE) as usize] = 1;
        }
        copy_to_user(vec + (start - addr) / PAGE_SIZE, &bytes)?;
        start = stop;
    }
    Ok(0)
}

/// `msync(addr, len, flags)`: a shared file mapping maps the page cache's frames of the
/// file themselves, so there is nothing to write back (`MS_SYNC`, `MS_ASYNC`) or to
/// invalidate (`MS_INVALIDATE`): the checks are Linux's (`EINVAL` for bad flags or an
/// unaligned address, `ENOMEM` for a range not fully mapped).
pub(crate) fn sys_msync(addr: u64, len: u64, flags: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE_SIZE)
        || flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0
        || flags & (MS_ASYNC | MS_SYNC) == (MS_ASYNC | MS_SYNC)
    {
        return Err(Errno::EINVAL);
    }
    let Some((space, end)) = mapped_range(addr, len)? else {
        return Ok(0);
    };
    let mm = space.mm.lock();
    // The page cache's files share their frames with the mapping: nothing to write. A
    // volume file's mapped cache is written to the host now (MS_ASYNC too).
    let ranges = shared_file_ranges(&mm, addr, end);
    drop(mm);
    write_back(&ranges)?;
    Ok(0)
}

/// The file ranges `(inode, offset, length)` the shared file mappings of `mm` cover in
/// `[start, end)`.
fn shared_file_ranges(mm: &Mm, start: u64, end: u64) -> Vec<(u64, u64, u64)> {
    mm.vmas()
        .filter(|(s, v)| *s < end && v.end > start && v.shm.is_some())
        .filter_map(|(s, v)| {
            let f = v.file.as_ref().filter(|f| f.bus_past_eof)?;
            let (a, b) = (s.max(start), v.end.min(end));
            Some((f.ino, f.offset.saturating_add(a - s), b - a))
        })
        .collect()
}

/// Writes what programs stored through shared mappings of `ranges` back to the files that
/// keep their bytes elsewhere (`--volume` files, `Fs::vol_writeback`); `EIO` and the like
/// from the host.
fn write_back(ranges: &[(u64, u64, u64)]) -> Result<(), Errno> {
    for &(ino, off, len) in ranges {
        crate::fs::with(|fs| fs.vol_writeback(ino, off, len))?;
    }
    Ok(())
}

/// Before address space `space` goes (its process exits or execs): writes back what its
/// shared file mappings stored (best effort: there is no one to report an error to).
/// Returns whether it had any (then [`release_unmapped`] has work once it is gone).
pub(crate) fn write_back_space(space: &super::space::Space) -> bool {
    let ranges = shared_file_ranges(&space.mm.lock(), 0, u64::MAX);
    let _ = write_back(&ranges);
    !ranges.is_empty()
}

/// After mappings went: drops the volume files' caches no mapping uses any more.
pub(crate) fn release_unmapped() {
    crate::fs::with(|fs| fs.vol_release_unmapped());
}

/// `munmap(addr, len)`.
pub(crate) fn sys_munmap(addr: u64, len: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE_SIZE) || len == 0 {
        return Err(Errno::EINVAL);
    }
    let len = page_up(len).ok_or(Errno::EINVAL)?;
    if !in_user_window(addr, len) {
        return Err(Errno::EINVAL);
    }
    let space = current_process().space().ok_or(Errno::EINVAL)?;
    // Shared file mappings among those going: a volume file's cache is written back (and
    // dropped) once its last mapping is gone, afterwards.
    let ranges = shared_file_ranges(&space.mm.lock(), addr, addr + len);
    let mut mm = space.mm.lock();
    let split = splits_for_munmap(region(&mm, addr), addr, addr + len);
    may_add_regions(&mm, split, true)?;
    mm.unmap(addr, addr + len);
    drop(mm);
    if !ranges.is_empty() {
        release_unmapped();
    }
    Ok(0)
}

/// `mprotect(addr, len, prot)`.
pub(crate) fn sys_mprotect(addr: u64, len: u64, prot_bits: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE_SIZE) || prot_bits & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    if len == 0 {
        return Ok(0);
    }
    let len = page_up(len).ok_or(Errno::ENOMEM)?;
    if !in_user_window(addr, len) {
        return Err(Errno::ENOMEM);
    }
    let space = current_process().space().ok_or(Errno::ENOMEM)?;
    let mut mm = space.mm.lock();
    let end = addr + len;
    let split = splits_for_protect(region(&mm, addr), region(&mm, end), addr, end);
    may_add_regions(&mm, split, true)?;
    mm.protect(addr, end, prot_bits as u32)?;
    Ok(0)
}

/// `mremap(old, old_len, new_len, flags, new_addr)`.
pub(crate) fn sys_mremap(
    old: u64,
    old_len: u64,
    new_len: u64,
    flags: u64,
    new_addr: u64,
) -> SysResult {
    let may_move = flags & MREMAP_MAYMOVE != 0;
    // `MREMAP_DONTUNMAP`: moved, the old range left mapped with no pages (a private
    // mapping's refill as after `MADV_DONTNEED`: zeros, or the file's bytes).
    let keep_old = flags & MREMAP_DONTUNMAP != 0;
    if !old.is_multiple_of(PAGE_SIZE)
        || new_len == 0
        || flags & !(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP) != 0
        || (flags & MREMAP_FIXED != 0 && !may_move)
        || (keep_old && (!may_move || old_len != new_len))
    {
        return Err(Errno::EINVAL);
    }
    let old_len = page_up(old_len).ok_or(Errno::EINVAL)?;
    let new_len = page_up(new_len).ok_or(Errno::EINVAL)?;
    let space = current_process().space().ok_or(Errno::EFAULT)?;
    let mut mm = space.mm.lock();
    // The old range must lie in one region, as Linux's would be after its merges.
    mm.coalesce(old, old.saturating_add(old_len));
    let (vstart, vma) = mm.vma_at(old).ok_or(Errno::EFAULT)?;
    if old + old_len > vma.end {
        return Err(Errno::EFAULT);
    }
    if keep_old {
        check_as(&mm, new_len)?;
    } else if new_len > old_len {
        check_as(&mm, new_len - old_len)?;
    }
    if flags & MREMAP_FIXED == 0 && !keep_old {
        if new_len <= old_len {
            mm.unmap(old + new_len, old + old_len);
            return Ok(old);
        }
        // Grow in place: the region, if it ends where the old range does, takes the room
        // after it.
        if old + old_len == vma.end
            && in_user_window(old, new_len)
            && mm.is_free(old + old_len, old + new_len)
        {
            mm.extend_vma(vstart, old + new_len);
            return Ok(old);
        }
        if flags & MREMAP_MAYMOVE == 0 {
            return Err(Errno::ENOMEM);
        }
    }
    // A move: Linux's `move_vma` wants room for up to 3 more regions.
    may_add_regions(&mm, limits::MREMAP_MOVE_REGIONS, true)?;
    let dest = if flags & MREMAP_FIXED != 0 {
        if !new_addr.is_multiple_of(PAGE_SIZE)
            || !in_user_window(new_addr, new_len)
            || (new_addr < old + old_len && old < new_addr + new_len)
        {
            return Err(Errno::EINVAL);
        }
        mm.unmap(new_addr, new_addr + new_len);
        new_addr
    } else {
        mm.find_free(new_len)?
    };
    mm.add_vma(dest, dest + new_len, vma.prot, vma.shm_at(vstart, old));
    if let Some(f) = &vma.file {
        mm.name_file(dest, dest + 1, &f.advanced(old - vstart));
    }
    mm.move_pages(old, dest, old_len.min(new_len));
    if !keep_old {
        mm.unmap(old, old + old_len);
    }
    Ok(dest)
}

/// `madvise` advice values.
mod advice {
    pub(super) const DONTNEED: u64 = 4;
    pub(super) const FREE: u64 = 8;
    pub(super) const DONTFORK: u64 = 10;
    pub(super) const DOFORK: u64 = 11;
    pub(super) const WIPEONFORK: u64 = 18;
    pub(super) const KEEPONFORK: u64 = 19;
    /// Every value Linux 6.18 knows (x86-64, no KSM): others are `EINVAL`.
    pub(super) fn known(a: u64) -> bool {
        matches!(a, 0..=4 | 8..=11 | 14..=25 | 100..=103)
    }
}

/// `madvise(addr, len, advice)`: `MADV_DONTNEED`/`MADV_FREE` discard pages (a private file
/// mapping's come back from the file), `MADV_DONTFORK`/`DOFORK`/`WIPEONFORK`/`KEEPONFORK`
/// set what `fork` does with the regions; the rest of Linux's advice is accepted and changes
/// nothing here (nothing is swapped, merged or huge-paged); unknown advice is `EINVAL`.
pub(crate) fn sys_madvise(addr: u64, len: u64, advice: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE_SIZE) || !advice::known(advice) {
        return Err(Errno::EINVAL);
    }
    let len = page_up(len).ok_or(Errno::EINVAL)?;
    if len == 0 {
        return Ok(0);
    }
    let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
    let space = current_process().space().ok_or(Errno::EINVAL)?;
    let mut mm = space.mm.lock();
    // Linux applies advice to the mapped parts and then fails with `ENOMEM` for a hole.
    let mut covered = true;
    let mut at = addr;
    while at < end {
        match mm.vma_at(at) {
            Some((_, v)) => at = v.end,
            None => {
                covered = false;
                break;
            }
        }
    }
    match advice {
        advice::DONTNEED | advice::FREE => mm.discard(addr, end),
        advice::DONTFORK | advice::DOFORK | advice::WIPEONFORK | advice::KEEPONFORK => {
            let split = splits_for_protect(region(&mm, addr), region(&mm, end), addr, end);
            may_add_regions(&mm, split, true)?;
            mm.advise_fork(addr, end, advice == advice::WIPEONFORK, |f| match advice {
                advice::DONTFORK => f.skip = true,
                advice::DOFORK => f.skip = false,
                advice::WIPEONFORK => f.wipe = true,
                _ => f.wipe = false,
            })?;
        }
        _ => {}
    }
    if covered {
        Ok(0)
    } else {
        Err(Errno::ENOMEM)
    }
}

/// Drops the pages of every `mmap` of regular file `ino`, in every address space, that lie
/// wholly past its end (after `truncate`, `ftruncate` or `O_TRUNC`), as Linux's truncate
/// does (`unmap_mapping_range`, private copies included): touching them again is `SIGBUS`
/// (`linux/fault.rs`).
pub(crate) fn file_shrunk(ino: u64) {
    let Ok(st) = crate::fs::with(|fs| fs.stat_ino(ino)) else {
        return;
    };
    let eof = st.size.next_multiple_of(PAGE_SIZE);
    for p in super::task::all_processes() {
        if let Some(space) = p.space() {
            space.mm.lock().discard_file_past(ino, eof);
        }
    }
}
