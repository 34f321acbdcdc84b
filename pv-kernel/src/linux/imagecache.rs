//! The program image cache: executables read once into contiguous user-pool frames, shared
//! copy-on-write by every process that runs them (like a page cache for text and data).
//!
//! `execve` of a cached program copies nothing: the ELF loader maps the cached frames of
//! page-aligned segment parts into the new space as copy-on-write pages; only partial pages
//! (segment edges, `.bss`) get private copies. The file is read straight into the frames
//! (for the host share: `HostfsRead` into guest-physical memory), so even the first exec
//! copies the program once, not twice. Entries are keyed by inode, size and modification
//! time (a rewritten file is read again) and bounded to a quarter of the pool; the least
//! recently used go first, and all of them when the pool runs short.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use pvmux_hypercalls::PAGE_SIZE;

use super::{pool, Errno};
use crate::fs::ramfs::{mode, Ino};
use crate::irq::IrqLock;

/// A program file's bytes in contiguous pool frames.
pub(crate) struct CachedFile {
    /// Inode, size, mtime: the cache key.
    key: (Ino, u64, u64),
    /// First frame (guest-physical).
    base: u64,
    /// Frames held (one reference each).
    pages: usize,
    /// File size in bytes.
    size: usize,
    /// Last use (guest ns), for LRU eviction.
    used: AtomicU64,
}

impl CachedFile {
    /// The file's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the frames are held by this entry (one pool reference each) until it is
        // dropped, lie in guest memory covered by the direct map, and are never written
        // after loading (users map them copy-on-write).
        unsafe { core::slice::from_raw_parts(pool::frame_ptr(self.base), self.size) }
    }

    /// Guest-physical address of the frame holding file offset `off` (page aligned).
    pub(crate) fn frame_at(&self, off: u64) -> u64 {
        self.base + off / PAGE_SIZE * PAGE_SIZE
    }
}

impl Drop for CachedFile {
    fn drop(&mut self) {
        for i in 0..self.pages as u64 {
            pool::put(self.base + i * PAGE_SIZE);
        }
    }
}

static CACHE: IrqLock<Vec<Arc<CachedFile>>> = IrqLock::new(Vec::new());

/// Largest file cached (bigger programs are read into kernel memory each time).
const MAX_FILE: u64 = 64 << 20;
/// Bytes read per filesystem call (bounds the time the filesystem lock is held).
const CHUNK: usize = 1 << 20;

fn cached_pages() -> usize {
    CACHE.lock().iter().map(|c| c.pages).sum()
}

/// Drops the least recently used entry; false if the cache is empty.
fn evict_one() -> bool {
    let victim = {
        let mut c = CACHE.lock();
        let Some(i) = (0..c.len()).min_by_key(|&i| c[i].used.load(Ordering::Relaxed)) else {
            return false;
        };
        c.swap_remove(i)
    };
    drop(victim);
    true
}

/// Drops every entry (the pool is short; running processes keep their own references).
pub(crate) fn shrink() -> bool {
    let all = core::mem::take(&mut *CACHE.lock());
    let any = !all.is_empty();
    drop(all);
    any
}

/// The program at `path` (resolved from `cwd`, following symbolic links): a regular file
/// with an execute bit, else `EACCES`. Cached, or read into the cache now.
pub(crate) fn load(cwd: Ino, path: &[u8]) -> Result<Arc<CachedFile>, Errno> {
    let (ino, st) = crate::fs::with(|fs| {
        let ino = fs.lookup(cwd, path, true)?;
        Ok::<_, Errno>((ino, fs.stat_ino(ino)?))
    })?;
    if st.mode & mode::S_IFMT != mode::S_IFREG
        || st.mode & 0o111 == 0
        || super::files::is_device(ino)
    {
        return Err(Errno::EACCES);
    }
    if st.size > MAX_FILE || st.size == 0 {
        return Err(if st.size == 0 {
            Errno::ENOEXEC
        } else {
            Errno::ENOMEM
        });
    }
    let key = (ino, st.size, st.mtime_ns);
    let now = crate::time::now_ns();
    {
        let mut c = CACHE.lock();
        c.retain(|e| e.key.0 != ino || e.key == key);
        if let Some(e) = c.iter().find(|e| e.key == key) {
            e.used.store(now, Ordering::Relaxed);
            return Ok(e.clone());
        }
    }
    let size = st.size as usize;
    let pages = size.div_ceil(PAGE_SIZE as usize);
    let (_, pool_total) = pool::stats();
    while cached_pages() + pages > pool_total / 4 && evict_one() {}
    let base = loop {
        match pool::alloc_contiguous(pages) {
            Ok(b) => break b,
            Err(e) => {
                if !evict_one() && !super::space::wait_for_reclaim() {
                    return Err(e);
                }
            }
        }
    };
    let entry = Arc::new(CachedFile {
        key,
        base,
        pages,
        size,
        used: AtomicU64::new(now),
    });
    // Zero the tail of the last page (the loader may map it).
    let tail = pages * PAGE_SIZE as usize - size;
    // SAFETY: the frames were just allocated for this entry alone.
    unsafe { pool::frame_ptr(base + size as u64).write_bytes(0, tail) };
    // SAFETY: as in `bytes`, and nobody else sees the entry yet, so it may be written.
    let buf = unsafe { core::slice::from_raw_parts_mut(pool::frame_ptr(base), size) };
    let h = crate::fs::with(|fs| fs.open(cwd, path, 0, 0))?;
    let mut off = 0;
    let r = loop {
        if off == size {
            break Ok(());
        }
        let end = (off + CHUNK).min(size);
        match crate::fs::with(|fs| fs.pread(h, &mut buf[off..end], off as u64)) {
            Ok(0) => break Err(Errno::EIO), // shrank under us
            Ok(n) => off += n,
            Err(e) => break Err(e),
        }
    };
    let _ = crate::fs::with(|fs| fs.close(h));
    r?;
    CACHE.lock().push(entry.clone());
    Ok(entry)
}
