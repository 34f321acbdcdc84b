//! `MAP_SHARED` mappings of volume files. A volume file keeps no bytes in the guest (reads
//! and writes go to the host), but a shared mapping needs pages that the mapping, `read` and
//! `write` all see. The first shared mapping of a volume file gives it a page cache of its
//! own ([`Fs::vol_map_pages`]: an owned [`PageObject`] holding every page of the file, read
//! from the host then) that the mappings map; while it exists `read` copies from it, `write`
//! goes through to the host *and* into it, and a truncate cuts both, so the three stay
//! coherent. Stores through a mapping reach the host when they are written back
//! ([`Fs::vol_writeback`]): on `msync` (`MS_SYNC` and `MS_ASYNC` alike, synchronously),
//! `munmap` of the last mapping, `fsync` and when the process exits or execs
//! (`linux/memory.rs`). Pages are not
//! tracked dirty: a write-back writes every page of the range (within the file's size). The
//! cache is dropped once no mapping refers to it ([`Fs::vol_release_unmapped`]), so later
//! reads see the host's bytes again. Its pages are pool frames like the page cache's (not
//! counted in the filesystem's size limit: they are the mapped memory of the programs).
//!
//! A volume file removed while mapped keeps the cache as its own data (`vol_detach`), like
//! any file unlinked while mapped on Linux.

use alloc::sync::Arc;
use alloc::vec::Vec;

use pvmux_hypercalls::volume::{op, IO_MAX};

use super::{copy, Buf, Req};
use crate::fs::errno::Errno::{self, *};
use crate::fs::pagecache::{self, PageObject};
use crate::fs::ramfs::inode::{Ino, Node};
use crate::fs::ramfs::Fs;

impl Fs {
    /// The size of regular file `ino`.
    fn file_size(&self, ino: Ino) -> Result<u64, Errno> {
        match &self.inode(ino)?.node {
            Node::File { size, .. } => Ok(*size),
            _ => Err(EISDIR),
        }
    }

    /// The pages a `MAP_SHARED` mapping of volume file `ino` maps: its cache, made now (every
    /// page of the file read from the host) if no mapping has one yet. `ENOMEM` if the pool
    /// cannot hold the file.
    pub(crate) fn vol_map_pages(&mut self, ino: Ino) -> Result<Arc<PageObject>, Errno> {
        if let Some(obj) = self.vols.maps.get(&ino) {
            return Ok(obj.clone());
        }
        let size = self.file_size(ino)?;
        let obj = PageObject::new_owned();
        let mut chunk: Vec<u8> = Vec::new();
        let want = size.min(IO_MAX) as usize;
        chunk.try_reserve_exact(want).map_err(|_| ENOMEM)?;
        chunk.resize(want, 0);
        let mut off = 0;
        while off < size {
            let n = ((size - off) as usize).min(chunk.len());
            // Not in `maps` yet: this reads the host.
            let got = match self.vol_read(ino, off, &mut chunk[..n]) {
                Some(r) => r?,
                None => return Err(ENODEV),
            };
            if got == 0 {
                // The host file is shorter than the guest thought: the rest reads as zeros.
                break;
            }
            obj.write(off, &chunk[..got], &mut pagecache::alloc_frame)
                .map_err(|_| ENOMEM)
                .and_then(|w| if w == got { Ok(()) } else { Err(ENOMEM) })?;
            off += got as u64;
        }
        self.vols.maps.insert(ino, obj.clone());
        Ok(obj)
    }

    /// The cache of volume file `ino` while shared mappings refer to it.
    pub(in crate::fs::ramfs) fn vol_cache(&self, ino: Ino) -> Option<&Arc<PageObject>> {
        self.vols.maps.get(&ino)
    }

    /// Writes the bytes of `[off, off + len)` of mapped volume file `ino` (within its size)
    /// from its cache to the host. Nothing to do for a file without a cache.
    pub(crate) fn vol_writeback(&mut self, ino: Ino, off: u64, len: u64) -> Result<(), Errno> {
        let Some(obj) = self.vols.maps.get(&ino).cloned() else {
            return Ok(());
        };
        let Some((vol, path)) = self.vol_of(ino) else {
            return Ok(());
        };
        // A read-only volume's files are never mapped writable: nothing was stored.
        if self.vol_writable(vol).is_err() {
            return Ok(());
        }
        let path = copy(path)?;
        let end = off.saturating_add(len).min(self.file_size(ino)?);
        let mut chunk: Vec<u8> = Vec::new();
        let mut pos = off;
        while pos < end {
            let n = (end - pos).min(IO_MAX) as usize;
            if chunk.len() < n {
                chunk
                    .try_reserve_exact(n - chunk.len())
                    .map_err(|_| ENOMEM)?;
                chunk.resize(n, 0);
            }
            obj.read(pos, &mut chunk[..n]);
            let req = Req {
                op: op::WRITE,
                path: &path,
                offset: pos,
                ..Req::default()
            };
            let (w, _) = self.vol_call(vol, &req, Buf::In(&chunk[..n]))?;
            if w == 0 {
                return Err(EIO);
            }
            pos += w.min(n as u64);
        }
        Ok(())
    }

    /// Writes back and drops the caches of volume files that no mapping refers to any more
    /// (after `munmap`, an exit or an exec: the last mapping's stores reach the host here).
    pub(crate) fn vol_release_unmapped(&mut self) {
        let idle: Vec<Ino> = self
            .vols
            .maps
            .iter()
            .filter(|(_, o)| Arc::strong_count(o) == 1)
            .map(|(&i, _)| i)
            .collect();
        for ino in idle {
            // Best effort: no caller to tell (`munmap` succeeds as on Linux).
            let _ = self.vol_writeback(ino, 0, u64::MAX);
            self.vols.maps.remove(&ino);
        }
    }

    /// Reads from a mapped volume file's cache (`None`: no cache).
    pub(in crate::fs::ramfs) fn vol_cache_read(
        &self,
        ino: Ino,
        off: u64,
        buf: &mut [u8],
    ) -> Option<Result<usize, Errno>> {
        let obj = self.vol_cache(ino)?;
        let size = match self.file_size(ino) {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        if off >= size {
            return Some(Ok(0));
        }
        let n = buf.len().min((size - off).min(usize::MAX as u64) as usize);
        obj.read(off, &mut buf[..n]);
        Some(Ok(n))
    }

    /// After `write` put `data` at `off` on the host: the same bytes into the cache, if the
    /// file has one. Only a page past the cached ones needs a frame (the cache holds every
    /// page of the file); one the pool cannot give reads as zeros in the mappings until the
    /// pool has frames again (the host has the bytes).
    pub(in crate::fs::ramfs) fn vol_cache_write(&self, ino: Ino, off: u64, data: &[u8]) {
        if let Some(obj) = self.vol_cache(ino) {
            let _ = obj.write(off, data, &mut pagecache::alloc_frame);
        }
    }

    /// After a truncate on the host: the cache cut to `len` bytes too.
    pub(in crate::fs::ramfs) fn vol_cache_truncate(&self, ino: Ino, len: u64) {
        if let Some(obj) = self.vol_cache(ino) {
            obj.truncate(len);
        }
    }
}
