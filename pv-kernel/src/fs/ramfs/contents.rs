//! A regular file's contents: bytes borrowed from the initramfs, owned in page-cache frames
//! (a [`PageObject`] of user-pool frames, one per written 4 KiB page, holes unstored), or
//! read from the host share through a clean, reclaimable page cache; reads, writes (copying
//! borrowed or host bytes up on the first write) and truncation.
//!
//! Owned pages are user-pool frames (`fs::pagecache`), not kernel heap or kernel frames: a
//! file can grow as large as the filesystem's size limit ([`super::Limits`], half of guest
//! memory) and the pool allow. A write that finds neither gets `ENOSPC` — after the bytes it
//! could store, as Linux's short write.
//!
//! Host files are read through the cache: the first read of a page fills it (and up to
//! [`READ_AHEAD`] pages after it) from the host with one call; later reads copy from the
//! frames. Clean pages may be dropped under memory pressure at any time, so a read that
//! finds a page gone reads it again from the host.

use alloc::sync::Arc;
use alloc::vec::Vec;

use pvmux_hypercalls::PAGE_SIZE;

use super::host::{host_read_exact, host_read_full, HostShare};
use super::inode::{Ino, Node};
use super::Fs;
use crate::fs::errno::Errno::{self, *};
use crate::fs::pagecache::{self, PageObject};

/// Largest file size accepted (`EFBIG` above).
pub(crate) const MAX_FILE_SIZE: u64 = 1 << 40;

/// Bytes per page.
const PAGE: usize = PAGE_SIZE as usize;

/// Kernel heap a stored page costs beyond its frame (its `BTreeMap` entry, generously).
const PAGE_ENTRY_COST: usize = 64;

/// Pages of a host file read ahead of a missing page (one host call).
const READ_AHEAD: u64 = 32;
/// Most pages filled from the host per host call.
const FILL_MAX: u64 = 64;

/// The bytes of a regular file.
pub(super) enum Data {
    /// Borrowed from memory that outlives the filesystem (the initramfs).
    Static(&'static [u8]),
    /// Owned by the filesystem: the file's pages; a missing page reads as zeros.
    Pages(Arc<PageObject>),
    /// The first `len` bytes of host file `path`, cached in clean pages.
    Host {
        /// The path within the share.
        path: Vec<u8>,
        /// Bytes the host backs (a truncate may lower it).
        len: u64,
        /// The pages read so far (created on the first read).
        cache: Option<Arc<PageObject>>,
    },
}

impl Data {
    /// An empty owned file.
    pub(super) fn empty() -> Self {
        Self::Pages(PageObject::new_owned())
    }

    /// Bytes of memory stored for it (for `st_blocks`): its pages, or the borrowed bytes.
    pub(super) fn stored_bytes(&self) -> u64 {
        match self {
            Self::Static(s) => s.len() as u64,
            Self::Pages(p) => p.page_count() * PAGE_SIZE,
            Self::Host { len, .. } => *len,
        }
    }

    /// Owned pages held.
    pub(super) fn pages_held(&self) -> u64 {
        match self {
            Self::Pages(p) => p.page_count(),
            _ => 0,
        }
    }
}

/// The page budget of one operation: the filesystem's size limit and the frames left.
struct Budget<'a> {
    /// Pages the filesystem holds (updated as pages are taken).
    held: &'a mut u64,
    /// The size limit in pages.
    max: u64,
}

impl Budget<'_> {
    /// A fresh zeroed frame, counted (`ENOSPC` past the limit or without frames).
    fn take(&mut self) -> Result<u64, Errno> {
        if *self.held >= self.max {
            return Err(ENOSPC);
        }
        let p = pagecache::alloc_frame().map_err(|_| ENOSPC)?;
        *self.held += 1;
        Ok(p)
    }
}

/// Where copied-up bytes come from: fills the buffer with the bytes at an offset.
type Source<'a> = dyn FnMut(u64, &mut [u8]) -> Result<(), Errno> + 'a;

/// Copies `src` (the stored bytes of a borrowed file) into a fresh object.
fn copy_up(
    budget: &mut Budget<'_>,
    src: &mut Source<'_>,
    len: u64,
) -> Result<Arc<PageObject>, Errno> {
    let n = len.div_ceil(PAGE_SIZE);
    crate::mm::heap::charge((n as usize).saturating_mul(PAGE_ENTRY_COST))?;
    let obj = PageObject::new_owned();
    let mut page = Vec::new();
    page.try_reserve_exact(PAGE).map_err(|_| ENOMEM)?;
    page.resize(PAGE, 0);
    for i in 0..n {
        let gpa = match budget.take() {
            Ok(g) => g,
            Err(e) => {
                *budget.held -= i;
                return Err(e);
            }
        };
        obj.insert(i, gpa);
        let off = i * PAGE_SIZE;
        let k = (len - off).min(PAGE_SIZE) as usize;
        if let Err(e) = src(off, &mut page[..k]) {
            *budget.held -= i + 1;
            return Err(e);
        }
        crate::mm::pool_mem::write(gpa, &page[..k]);
    }
    Ok(obj)
}

/// Fills the pages `first..end` of `cache` (host file `path`, `len` bytes) that it lacks
/// from the host, reading ahead after a missing run. `ENOMEM` if the pool has no frames.
pub(super) fn fill_host(
    host: &dyn HostShare,
    path: &[u8],
    len: u64,
    cache: &PageObject,
    first: u64,
    end: u64,
) -> Result<(), Errno> {
    let file_pages = len.div_ceil(PAGE_SIZE);
    let end = end.min(file_pages);
    let missing = cache.missing(first, end);
    pagecache::count_lookup(missing.is_empty());
    if missing.is_empty() {
        return Ok(());
    }
    if cache.is_clean() {
        pagecache::make_room_for_clean(missing.len() as u64 + READ_AHEAD);
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < missing.len() {
        // A run of missing pages, extended by read-ahead past the last one asked for.
        let start = missing[i];
        let mut run_end = start + 1;
        while i + 1 < missing.len() && missing[i + 1] == run_end && run_end - start < FILL_MAX {
            i += 1;
            run_end += 1;
        }
        i += 1;
        if i == missing.len() {
            let limit = (end + READ_AHEAD).min(file_pages).min(start + FILL_MAX);
            while run_end < limit && !cache.has(run_end) {
                run_end += 1;
            }
        }
        let from = start * PAGE_SIZE;
        let bytes = (run_end * PAGE_SIZE).min(len) - from;
        buf.clear();
        buf.try_reserve_exact(bytes as usize).map_err(|_| ENOMEM)?;
        buf.resize(bytes as usize, 0);
        host_read_full(host, path, from, &mut buf)?;
        for (k, chunk) in buf.chunks(PAGE).enumerate() {
            let gpa = pagecache::alloc_frame()?;
            crate::mm::pool_mem::write(gpa, chunk);
            cache.insert(start + k as u64, gpa);
        }
    }
    Ok(())
}

impl Fs {
    /// Reads at `off` from a regular file's inode (host bytes through the page cache).
    pub(super) fn read_at(&mut self, ino: Ino, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        self.read_at_with(ino, off, buf, true)
    }

    /// Reads at `off` from regular file `ino` as `read` does (host bytes through the page
    /// cache): a private file mapping's page filled at its first touch (`linux/space/mm`).
    pub(crate) fn read_ino(&mut self, ino: Ino, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        self.read_at(ino, off, buf)
    }

    /// Reads inode `ino` at `off` taking host bytes from the host itself, not from the page
    /// cache: what programs are read from into the image cache (`linux/imagecache.rs`) and
    /// what the code of files that cache does not keep is copied from. Cached pages are pool
    /// frames a program of the tenant can write; reading code straight from the host keeps
    /// such a write from outliving the program that made it (docs/SECURITY.md, "Program
    /// image cache").
    pub(crate) fn read_ino_uncached(
        &mut self,
        ino: Ino,
        off: u64,
        buf: &mut [u8],
    ) -> Result<usize, Errno> {
        self.read_at_with(ino, off, buf, false)
    }

    /// [`Fs::read_ino_uncached`] of exactly `buf.len()` bytes at `off` into `buf` and the
    /// same bytes into the pool frames at `frames_gpa` (contiguous): for a host file the
    /// host writes both in one call per piece ([`HostShare::read_frames`]); `EIO` if the
    /// file ends first (it shrank under the guest).
    pub(crate) fn read_ino_uncached_frames(
        &mut self,
        ino: Ino,
        off: u64,
        frames_gpa: u64,
        buf: &mut [u8],
    ) -> Result<(), Errno> {
        let end = off.checked_add(buf.len() as u64).ok_or(EIO)?;
        let host_path = match (self.is_volume_file(ino), self.inodes.get(&ino)) {
            (false, Some(i)) => match &i.node {
                Node::File {
                    data: Data::Host { path, len, .. },
                    size,
                } if end <= (*len).min(*size) => Some(path.clone()),
                _ => None,
            },
            _ => None,
        };
        let (Some(path), Some(host)) = (host_path, self.host.clone()) else {
            let mut got = 0;
            while got < buf.len() {
                match self.read_ino_uncached(ino, off + got as u64, &mut buf[got..])? {
                    0 => return Err(EIO),
                    k => got += k,
                }
            }
            crate::mm::pool_mem::write_new(frames_gpa, buf);
            return Ok(());
        };
        let mut got = 0;
        while got < buf.len() {
            let at = off + got as u64;
            match host.read_frames(&path, at, frames_gpa + got as u64, &mut buf[got..])? {
                k if k == 0 || k > buf.len() - got => return Err(EIO),
                k => got += k,
            }
        }
        let now = self.now();
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.atime = now;
        }
        Ok(())
    }

    /// The share's path of `ino` if it is a host file ([`Fs::is_host_file`]).
    pub(crate) fn host_file_path(&self, ino: Ino) -> Option<Vec<u8>> {
        if !self.is_host_file(ino) {
            return None;
        }
        match &self.inodes.get(&ino)?.node {
            Node::File {
                data: Data::Host { path, .. },
                ..
            } => Some(path.clone()),
            _ => None,
        }
    }

    /// Whether `ino` is a `--rootfs` host file all of whose bytes come from the host (not
    /// written or truncated by the guest, not a `--volume` file): what the image cache may
    /// keep for executable mappings (`linux::imagecache::for_mapping`).
    pub(crate) fn is_host_file(&self, ino: Ino) -> bool {
        !self.is_volume_file(ino)
            && self.inodes.get(&ino).is_some_and(|i| {
                matches!(&i.node, Node::File { data: Data::Host { len, .. }, size } if len == size)
            })
    }

    /// Reads at `off`; host bytes through the cache if `cached`, else from the host.
    fn read_at_with(
        &mut self,
        ino: Ino,
        off: u64,
        buf: &mut [u8],
        use_cache: bool,
    ) -> Result<usize, Errno> {
        if let Some(r) = self.vol_read(ino, off, buf) {
            return r;
        }
        let now = self.now();
        let host = self.host.as_deref();
        let i = self.inodes.get_mut(&ino).ok_or(ENOENT)?;
        let Node::File { data, size } = &mut i.node else {
            return Err(EISDIR);
        };
        if off >= *size {
            return Ok(0);
        }
        let n = buf.len().min((*size - off).min(usize::MAX as u64) as usize);
        let buf = &mut buf[..n];
        match data {
            Data::Pages(pages) => pages.read(off, buf),
            Data::Static(_) | Data::Host { .. } => {
                let stored_len = data.stored_bytes();
                let start = off.min(stored_len);
                let stored = (stored_len - start).min(n as u64) as usize;
                match data {
                    Data::Static(b) => {
                        buf[..stored].copy_from_slice(&b[start as usize..][..stored]);
                    }
                    Data::Host { path, .. } if stored > 0 && !use_cache => {
                        host_read_exact(host.ok_or(EIO)?, path, start, &mut buf[..stored])?;
                    }
                    Data::Host { path, len, cache } if stored > 0 => {
                        let host = host.ok_or(EIO)?;
                        let cache = match cache {
                            Some(c) => c,
                            None => cache.insert(PageObject::new_clean()),
                        };
                        let (first, end) = (
                            start / PAGE_SIZE,
                            (start + stored as u64).div_ceil(PAGE_SIZE),
                        );
                        // From the cache if its pages are (still) there, else straight
                        // from the host (the pool is short).
                        let cached = fill_host(host, path, *len, cache, first, end).is_ok()
                            && cache.read_cached(start, &mut buf[..stored]);
                        if !cached {
                            host_read_full(host, path, start, &mut buf[..stored])?;
                        }
                    }
                    _ => {}
                }
                buf[stored..].fill(0);
            }
        }
        i.atime = now;
        Ok(n)
    }

    /// Makes a borrowed or host-backed file's data owned pages (copying it up), within the
    /// size limit and the pool's frames.
    fn own_data(&mut self, ino: Ino) -> Result<Arc<PageObject>, Errno> {
        let host = self.host.as_deref();
        let i = self.inodes.get_mut(&ino).ok_or(ENOENT)?;
        let Node::File { data, .. } = &mut i.node else {
            return Err(EISDIR);
        };
        let mut budget = Budget {
            held: &mut self.data_pages,
            max: self.limits.max_pages,
        };
        match data {
            Data::Pages(p) => return Ok(p.clone()),
            Data::Static(s) => {
                let s: &'static [u8] = s;
                let mut src = |o: u64, d: &mut [u8]| {
                    d.copy_from_slice(&s[o as usize..o as usize + d.len()]);
                    Ok(())
                };
                *data = Data::Pages(copy_up(&mut budget, &mut src, s.len() as u64)?);
            }
            Data::Host { path, len, cache } => {
                // The cached pages become the file's: fill the rest, then own them.
                let ops = host.ok_or(EIO)?;
                let n = len.div_ceil(PAGE_SIZE);
                if budget.held.saturating_add(n) > budget.max {
                    return Err(ENOSPC);
                }
                crate::mm::heap::charge((n as usize).saturating_mul(PAGE_ENTRY_COST))?;
                let obj = cache.take().unwrap_or_else(PageObject::new_owned);
                obj.make_owned();
                fill_host(ops, path, *len, &obj, 0, n).map_err(|e| match e {
                    ENOMEM => ENOSPC,
                    e => e,
                })?;
                *budget.held += obj.page_count();
                *data = Data::Pages(obj);
            }
        }
        match data {
            Data::Pages(p) => Ok(p.clone()),
            _ => Err(EIO),
        }
    }

    /// Writes at `off` into a regular file's inode (a gap reads as zeros). Past the size
    /// limit or the memory the kernel can spare, the bytes stored so far count (a short
    /// write); if none could be, `ENOSPC`.
    pub(super) fn write_at(&mut self, ino: Ino, off: u64, buf: &[u8]) -> Result<usize, Errno> {
        let now = self.now();
        let end = off.checked_add(buf.len() as u64).ok_or(EFBIG)?;
        if end > MAX_FILE_SIZE {
            return Err(EFBIG);
        }
        if let Some(r) = self.vol_write(ino, off, buf) {
            return r;
        }
        if !matches!(
            self.inodes.get(&ino).map(|i| &i.node),
            Some(Node::File { .. })
        ) {
            return Err(if self.inodes.contains_key(&ino) {
                EISDIR
            } else {
                ENOENT
            });
        }
        if buf.is_empty() {
            return Ok(0);
        }
        // The first write copies borrowed or host bytes up into pages.
        let pages = self.own_data(ino)?;
        // Heap for the new pages' map entries, asked once for the whole write.
        let new_pages = pages
            .missing(off / PAGE_SIZE, end.div_ceil(PAGE_SIZE))
            .len();
        crate::mm::heap::charge(new_pages.saturating_mul(PAGE_ENTRY_COST))?;
        let mut budget = Budget {
            held: &mut self.data_pages,
            max: self.limits.max_pages,
        };
        let done = pages.write(off, buf, &mut || budget.take())?;
        self.note_change(ino);
        let i = self.inodes.get_mut(&ino).ok_or(ENOENT)?;
        if let Node::File { size, .. } = &mut i.node {
            *size = (*size).max(off + done as u64);
        }
        i.mtime = now;
        i.ctime = now;
        Ok(done)
    }

    /// Sets a regular file's size: shrinking drops bytes (and pages), growing adds zeros
    /// (not stored).
    pub(super) fn truncate_ino(&mut self, ino: Ino, len: u64) -> Result<(), Errno> {
        if len > MAX_FILE_SIZE {
            return Err(EFBIG);
        }
        if self.vol_truncate(ino, len)? {
            return Ok(());
        }
        self.note_change(ino);
        let now = self.now();
        let i = self.inodes.get_mut(&ino).ok_or(ENOENT)?;
        let Node::File { data, size } = &mut i.node else {
            return Err(EISDIR);
        };
        match data {
            Data::Static(s) if len < s.len() as u64 => *s = &s[..len as usize],
            Data::Host { len: l, cache, .. } if len < *l => {
                *l = len;
                if let Some(c) = cache {
                    c.truncate(len);
                }
            }
            Data::Pages(pages) if len < *size => {
                // Drop whole pages past the end, zero the tail of the last one (a later
                // growth must read zeros there).
                let dropped = pages.truncate(len);
                self.data_pages = self.data_pages.saturating_sub(dropped);
            }
            _ => {}
        }
        *size = len;
        i.mtime = now;
        i.ctime = now;
        Ok(())
    }

    /// Makes a regular file's contents `bytes` without copying them (initramfs files).
    pub(crate) fn set_static_data(&mut self, ino: Ino, bytes: &'static [u8]) -> Result<(), Errno> {
        let i = self.inodes.get_mut(&ino).ok_or(ENOENT)?;
        let Node::File { data, size } = &mut i.node else {
            return Err(EISDIR);
        };
        self.data_pages = self.data_pages.saturating_sub(data.pages_held());
        *data = Data::Static(bytes);
        *size = bytes.len() as u64;
        Ok(())
    }

    /// The pages of regular file `ino` for a `MAP_SHARED` mapping: the file's own object
    /// (borrowed or host bytes are copied up first), so the mapping, `read` and `write`
    /// share its frames. A `--volume` file, whose bytes are the host's, gets a cache of its
    /// own while mapped (`volume/maps.rs`).
    pub(crate) fn shared_pages(&mut self, ino: Ino) -> Result<Arc<PageObject>, Errno> {
        if self.is_volume_file(ino) {
            return self.vol_map_pages(ino);
        }
        self.own_data(ino)
    }

    /// The page object of regular file `ino` if its data is owned pages (what a
    /// `MAP_SHARED` mapping of it maps; not a volume file's), without changing anything.
    pub(crate) fn owned_pages(&self, ino: Ino) -> Option<Arc<PageObject>> {
        if self.is_volume_file(ino) {
            return None;
        }
        match &self.inodes.get(&ino)?.node {
            Node::File {
                data: Data::Pages(p),
                ..
            } => Some(p.clone()),
            _ => None,
        }
    }

    /// The page object a `MAP_SHARED` mapping of regular file `ino` maps now, if it has
    /// one: its owned pages, or a volume file's cache while it is mapped.
    pub(crate) fn mapped_pages(&self, ino: Ino) -> Option<Arc<PageObject>> {
        self.owned_pages(ino)
            .or_else(|| self.vol_cache(ino).cloned())
    }

    /// Whether regular file `ino`'s data is owned pages (a `MAP_SHARED` mapping of it maps
    /// them; of a borrowed or host file, a read-only one maps a copy-on-write snapshot).
    pub(crate) fn has_owned_pages(&self, ino: Ino) -> bool {
        !self.is_volume_file(ino)
            && matches!(
                self.inodes.get(&ino).map(|i| &i.node),
                Some(Node::File {
                    data: Data::Pages(_),
                    ..
                })
            )
    }

    /// The cache frames of pages `first..first + count` of regular file `ino` that exist
    /// (host bytes are read into the cache first), each with a reference for the caller:
    /// `(page index, frame)`. Pages past the end of the file and holes are left out (they
    /// read as zeros). `None` if the file's bytes are not in the cache (borrowed from the
    /// initramfs, or the pool is too short to cache them): the caller copies them instead.
    pub(crate) fn file_frames(
        &mut self,
        ino: Ino,
        first: u64,
        count: u64,
    ) -> Result<Option<Vec<(u64, u64)>>, Errno> {
        // A volume file's bytes are read from the host by the caller (`None`: not cached).
        if self.is_volume_file(ino) {
            return Ok(None);
        }
        let host = self.host.as_deref();
        let i = self.inodes.get_mut(&ino).ok_or(ENOENT)?;
        let Node::File { data, size } = &mut i.node else {
            return Err(EISDIR);
        };
        let end = first.saturating_add(count).min((*size).div_ceil(PAGE_SIZE));
        let obj = match data {
            Data::Static(_) => return Ok(None),
            Data::Pages(p) => p.clone(),
            Data::Host { path, len, cache } => {
                let host = host.ok_or(EIO)?;
                let c = match cache {
                    Some(c) => c,
                    None => cache.insert(PageObject::new_clean()),
                };
                let end = end.min(len.div_ceil(PAGE_SIZE));
                if fill_host(host, path, *len, c, first, end).is_err() {
                    return Ok(None);
                }
                let mut v = Vec::new();
                v.try_reserve_exact(end.saturating_sub(first) as usize)
                    .map_err(|_| ENOMEM)?;
                for idx in first..end {
                    match c.existing(idx) {
                        Some(gpa) => v.push((idx, gpa)),
                        None => {
                            // Reclaimed under us: give the references back, copy instead.
                            for (_, gpa) in v {
                                crate::linux::pool::put(gpa);
                            }
                            return Ok(None);
                        }
                    }
                }
                return Ok(Some(v));
            }
        };
        let mut v = Vec::new();
        v.try_reserve_exact(end.saturating_sub(first) as usize)
            .map_err(|_| ENOMEM)?;
        for idx in first..end {
            if let Some(gpa) = obj.existing(idx) {
                v.push((idx, gpa));
            }
        }
        Ok(Some(v))
    }
}
