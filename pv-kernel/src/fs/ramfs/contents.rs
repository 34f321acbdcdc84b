//! A regular file's contents: bytes borrowed from the initramfs, owned in kernel frames
//! (one [`Page`] per written 4 KiB page, holes unstored), or read through from the host
//! share; reads, writes (copying borrowed or host bytes up on the first write) and truncation.
//!
//! Owned pages are kernel frames, not kernel heap: a file can grow as large as the
//! filesystem's size limit ([`super::Limits`]) and the frames the kernel can spare allow
//! (`frame::reserve_frames` stay free). A write that finds neither gets `ENOSPC` — after the
//! bytes it could store, as Linux's short write.

use alloc::collections::btree_map::Entry;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use pvmux_hypercalls::PAGE_SIZE;

use super::host::host_read_full;
use super::inode::{Ino, Node};
use super::Fs;
use crate::fs::errno::Errno::{self, *};
use crate::mm::frame::Page;

/// Largest file size accepted (`EFBIG` above).
pub(crate) const MAX_FILE_SIZE: u64 = 1 << 40;

/// Bytes per page.
const PAGE: usize = PAGE_SIZE as usize;

/// Kernel heap a stored page costs beyond its frame (its `BTreeMap` entry, generously).
const PAGE_ENTRY_COST: usize = 64;

/// The bytes of a regular file.
pub(super) enum Data {
    /// Borrowed from memory that outlives the filesystem (the initramfs).
    Static(&'static [u8]),
    /// Owned by the filesystem: page index → page; a missing page reads as zeros.
    Pages(BTreeMap<u64, Page>),
    /// The first `len` bytes of host file `path` (read through, never cached).
    Host {
        /// The path within the share.
        path: Vec<u8>,
        /// Bytes the host backs (a truncate may lower it).
        len: u64,
    },
}

impl Data {
    /// An empty owned file.
    pub(super) const fn empty() -> Self {
        Self::Pages(BTreeMap::new())
    }

    /// Bytes of memory stored for it (for `st_blocks`): its pages, or the borrowed bytes.
    pub(super) fn stored_bytes(&self) -> u64 {
        match self {
            Self::Static(s) => s.len() as u64,
            Self::Pages(p) => p.len() as u64 * PAGE_SIZE,
            Self::Host { len, .. } => *len,
        }
    }

    /// Owned pages held.
    pub(super) fn pages_held(&self) -> u64 {
        match self {
            Self::Pages(p) => p.len() as u64,
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
    /// A fresh zeroed page, counted (`ENOSPC` past the limit or without frames).
    fn take(&mut self) -> Result<Page, Errno> {
        if *self.held >= self.max {
            return Err(ENOSPC);
        }
        let p = Page::new().ok_or(ENOSPC)?;
        *self.held += 1;
        Ok(p)
    }
}

/// Where copied-up bytes come from: fills the buffer with the bytes at an offset.
type Source<'a> = dyn FnMut(u64, &mut [u8]) -> Result<(), Errno> + 'a;

/// Copies `src` (the stored bytes of a borrowed or host file) into fresh pages.
fn copy_up(
    budget: &mut Budget<'_>,
    src: &mut Source<'_>,
    len: u64,
) -> Result<BTreeMap<u64, Page>, Errno> {
    let n = len.div_ceil(PAGE_SIZE);
    crate::mm::heap::charge((n as usize).saturating_mul(PAGE_ENTRY_COST))?;
    let mut pages = BTreeMap::new();
    let mut fill = |pages: &mut BTreeMap<u64, Page>| -> Result<(), Errno> {
        for i in 0..n {
            let mut p = budget.take()?;
            let off = i * PAGE_SIZE;
            let k = (len - off).min(PAGE_SIZE) as usize;
            let r = src(off, &mut p.bytes_mut()[..k]);
            pages.insert(i, p);
            r?;
        }
        Ok(())
    };
    match fill(&mut pages) {
        Ok(()) => Ok(pages),
        Err(e) => {
            *budget.held -= pages.len() as u64;
            Err(e)
        }
    }
}

impl Fs {
    /// Reads at `off` from a regular file's inode.
    pub(super) fn read_at(&mut self, ino: Ino, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        if let Some(r) = self.vol_read(ino, off, buf) {
            return r;
        }
        let now = self.now();
        let host = self.host.as_deref();
        let i = self.inodes.get_mut(&ino).ok_or(ENOENT)?;
        let Node::File { data, size } = &i.node else {
            return Err(EISDIR);
        };
        if off >= *size {
            return Ok(0);
        }
        let n = buf.len().min((*size - off).min(usize::MAX as u64) as usize);
        let buf = &mut buf[..n];
        match data {
            Data::Pages(pages) => {
                let mut done = 0;
                while done < n {
                    let pos = off + done as u64;
                    let (idx, in_page) = (pos / PAGE_SIZE, (pos % PAGE_SIZE) as usize);
                    let k = (PAGE - in_page).min(n - done);
                    let dst = &mut buf[done..done + k];
                    match pages.get(&idx) {
                        Some(p) => dst.copy_from_slice(&p.bytes()[in_page..in_page + k]),
                        None => dst.fill(0),
                    }
                    done += k;
                }
            }
            Data::Static(_) | Data::Host { .. } => {
                let stored_len = data.stored_bytes();
                let start = off.min(stored_len);
                let stored = (stored_len - start).min(n as u64) as usize;
                match data {
                    Data::Static(b) => {
                        buf[..stored].copy_from_slice(&b[start as usize..][..stored]);
                    }
                    Data::Host { path, .. } => {
                        host_read_full(host.ok_or(EIO)?, path, start, &mut buf[..stored])?;
                    }
                    Data::Pages(_) => {}
                }
                buf[stored..].fill(0);
            }
        }
        i.atime = now;
        Ok(n)
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
        let host = self.host.as_deref();
        let i = self.inodes.get_mut(&ino).ok_or(ENOENT)?;
        let Node::File { data, size } = &mut i.node else {
            return Err(EISDIR);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let mut budget = Budget {
            held: &mut self.data_pages,
            max: self.limits.max_pages,
        };
        // The first write copies borrowed or host bytes up into pages.
        match data {
            Data::Pages(_) => {}
            Data::Static(s) => {
                let s: &'static [u8] = s;
                let mut src = |o: u64, d: &mut [u8]| {
                    d.copy_from_slice(&s[o as usize..o as usize + d.len()]);
                    Ok(())
                };
                *data = Data::Pages(copy_up(&mut budget, &mut src, s.len() as u64)?);
            }
            Data::Host { path, len } => {
                let ops = host.ok_or(EIO)?;
                let path: &[u8] = path;
                let mut src = |o: u64, d: &mut [u8]| host_read_full(ops, path, o, d);
                *data = Data::Pages(copy_up(&mut budget, &mut src, *len)?);
            }
        }
        let Data::Pages(pages) = data else {
            return Err(EIO);
        };
        // Heap for the new pages' map entries, asked once for the whole write.
        let new_pages = (off / PAGE_SIZE..end.div_ceil(PAGE_SIZE))
            .filter(|i| !pages.contains_key(i))
            .count();
        crate::mm::heap::charge(new_pages.saturating_mul(PAGE_ENTRY_COST))?;
        let mut done = 0;
        while done < buf.len() {
            let pos = off + done as u64;
            let (idx, in_page) = (pos / PAGE_SIZE, (pos % PAGE_SIZE) as usize);
            let k = (PAGE - in_page).min(buf.len() - done);
            let page = match pages.entry(idx) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(v) => match budget.take() {
                    Ok(p) => v.insert(p),
                    Err(e) if done == 0 => return Err(e),
                    Err(_) => break,
                },
            };
            page.bytes_mut()[in_page..in_page + k].copy_from_slice(&buf[done..done + k]);
            done += k;
        }
        *size = (*size).max(off + done as u64);
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
        let now = self.now();
        let i = self.inodes.get_mut(&ino).ok_or(ENOENT)?;
        let Node::File { data, size } = &mut i.node else {
            return Err(EISDIR);
        };
        match data {
            Data::Static(s) if len < s.len() as u64 => *s = &s[..len as usize],
            Data::Host { len: l, .. } if len < *l => *l = len,
            Data::Pages(pages) if len < *size => {
                // Drop whole pages past the end, zero the tail of the last one (a later
                // growth must read zeros there).
                let dropped = pages.split_off(&len.div_ceil(PAGE_SIZE));
                self.data_pages -= dropped.len() as u64;
                drop(dropped);
                let tail = (len % PAGE_SIZE) as usize;
                if tail != 0 {
                    if let Some(p) = pages.get_mut(&(len / PAGE_SIZE)) {
                        p.bytes_mut()[tail..].fill(0);
                    }
                }
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
        self.data_pages -= data.pages_held();
        *data = Data::Static(bytes);
        *size = bytes.len() as u64;
        Ok(())
    }
}
