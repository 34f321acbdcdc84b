//! The program image cache: executables read once into contiguous user-pool frames, shared
//! copy-on-write by every process that runs them (like a page cache for text and data).
//!
//! `execve` of a cached program copies nothing: the ELF loader maps the cached frames of
//! page-aligned segment parts into the new space as copy-on-write pages; only partial pages
//! (segment edges, `.bss`) get private copies. The file is read once, through a kernel bounce
//! buffer, into the frames. Entries are keyed by inode, size and modification time (a
//! rewritten file is read again) and bounded to a quarter of the pool; the least recently
//! used go first, and all of them when the pool runs short. A program may be as large as
//! half of the pool (e.g. a 74 MiB binary with the default `--mem`).
//!
//! The frames are user-pool memory, which a hostile program can map and write (see
//! docs/SECURITY.md): the kernel never parses them in place. What the loader parses — the ELF
//! header and program headers, or a `#!` line — is the entry's [`CachedFile::head`], a copy
//! in kernel memory taken while the file was read; segment edges are copied frame to frame.
//!
//! **Verified before every reuse.** So that a program cannot plant code in the cache for
//! every later exec of a binary (persistence after it exits), each entry keeps, in kernel
//! memory, a SipHash-2-4 tag of every [`TAG_CHUNK`] bytes of the file, keyed with a secret
//! drawn from the kernel's random generator at the first load (a program never sees the key
//! nor the tags, so it cannot forge a matching change). A cache hit re-hashes the chunks the
//! loader will read (the loadable segments' file data, [`super::exec::file_ranges`]) before
//! handing the entry out; a mismatch drops the entry, logs `imagecache: cached image of ...
//! was modified`, and reads the file again into fresh frames. Processes already running on
//! the old frames keep them (a program alive at the same time can write their pages anyway:
//! the documented same-tenant gap).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use pvmux_hypercalls::PAGE_SIZE;

mod siphash;

use super::{exec, pool, Errno};
use crate::fs::ramfs::{mode, Ino};
use crate::irq::IrqLock;
use crate::mm::pool_mem;

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
    /// The file's first bytes, in kernel memory: at least [`HEAD_MIN`] (or the whole file),
    /// and for an ELF file up to the end of its program headers (at most [`HEAD_MAX`]).
    head: Vec<u8>,
    /// Last use (guest ns), for LRU eviction.
    used: AtomicU64,
    /// SipHash-2-4 tag of every [`TAG_CHUNK`] bytes of the file (the last chunk may be
    /// shorter), as read from the file system.
    tags: Vec<u64>,
    /// Indices of the chunks the loader reads (see [`super::exec::file_ranges`]): what a
    /// reuse verifies.
    checked: Vec<usize>,
    /// Per chunk: guest time at the start of the last check that found it intact (or of the
    /// read its tag was made from). A mapping into a space created no later than that needs
    /// no new check: a program that changed the chunk since was alive while that space was,
    /// and could have written the space's own pages just as well (the same-tenant gap);
    /// what a check must stop is a change by a program that exited *before* the space.
    verified: Vec<AtomicU64>,
}

/// Bytes of the file per tag.
const TAG_CHUNK: usize = 64 << 10;

/// Bytes of a file's head kept in kernel memory at least (the ELF header and a `#!` line fit).
const HEAD_MIN: usize = 4096;
/// At most (program headers further into the file are not loaded: `ENOEXEC`).
const HEAD_MAX: usize = 64 << 10;

impl CachedFile {
    /// The file's inode number.
    pub(crate) fn ino(&self) -> Ino {
        self.key.0
    }

    /// The file's first bytes (see [`CachedFile::head`]'s field): what the loader parses.
    pub(crate) fn head(&self) -> &[u8] {
        &self.head
    }

    /// The file's size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.size
    }

    /// Guest-physical address of the frame holding file offset `off` (page aligned).
    pub(crate) fn frame_at(&self, off: u64) -> u64 {
        self.base + off / PAGE_SIZE * PAGE_SIZE
    }

    /// Guest-physical address of file offset `off`, whose next `len` bytes must lie in the
    /// file (`ENOEXEC` otherwise).
    pub(crate) fn gpa_at(&self, off: u64, len: u64) -> Result<u64, Errno> {
        match off.checked_add(len) {
            Some(end) if end <= self.size as u64 => Ok(self.base + off),
            _ => Err(Errno::ENOEXEC),
        }
    }
}

/// How many bytes of a file starting with `first` (its first bytes, at least 64 if the file
/// has them) to keep as its head, for a file of `size` bytes.
fn head_len(first: &[u8], size: usize) -> usize {
    let word = |o: usize, n: usize| {
        first.get(o..o + n).map_or(0, |b| {
            b.iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x))
        })
    };
    let mut want = HEAD_MIN;
    if first.starts_with(b"\x7fELF") {
        let (phoff, phentsize, phnum) = (word(32, 8), word(54, 2), word(56, 2));
        let end = phentsize
            .checked_mul(phnum)
            .and_then(|n| n.checked_add(phoff))
            .unwrap_or(u64::MAX);
        want = want.max(end.min(HEAD_MAX as u64) as usize);
    }
    want.min(size)
}

/// The secret SipHash key of the image tags (one per boot).
#[cfg(not(test))]
fn tag_key() -> (u64, u64) {
    static KEY: spin::Once<(u64, u64)> = spin::Once::new();
    *KEY.call_once(|| {
        let mut k = [0u8; 16];
        super::files::random::fill(&mut k);
        let (a, b) = k.split_at(8);
        let word = |x: &[u8]| x.iter().rev().fold(0u64, |v, &b| v << 8 | u64::from(b));
        (word(a), word(b))
    })
}

/// Host unit tests: a fixed key (the kernel's random generator needs the stub).
#[cfg(test)]
fn tag_key() -> (u64, u64) {
    (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908)
}

/// The tag of `bytes` (a chunk of a file): SipHash-2-4 of its two halves, computed
/// together ([`siphash::hash2`]: the chunk's check is the cost of every exec), then of the
/// two results under the key's halves swapped.
fn tag(bytes: &[u8]) -> u64 {
    let key = tag_key();
    let (a, b) = bytes.split_at(bytes.len() / 2 / 8 * 8);
    let (x, y) = siphash::hash2(key, a, b);
    let mut both = [0u8; 16];
    both[..8].copy_from_slice(&x.to_le_bytes());
    both[8..].copy_from_slice(&y.to_le_bytes());
    siphash::hash((key.1, key.0), &both)
}

/// The chunk indices covering the byte ranges `ranges` of a file of `size` bytes.
fn chunks_of(ranges: &[(u64, u64)], size: usize) -> Vec<usize> {
    let mut v: Vec<usize> = Vec::new();
    for &(s, e) in ranges {
        let e = e.min(size as u64);
        if s >= e {
            continue;
        }
        v.extend(s as usize / TAG_CHUNK..(e as usize).div_ceil(TAG_CHUNK));
    }
    v.sort_unstable();
    v.dedup();
    v
}

impl CachedFile {
    /// Whether every chunk the loader reads still holds the bytes read from the file (all
    /// checked now: for a space about to be created).
    fn intact(&self) -> bool {
        self.chunks_intact(&self.checked, u64::MAX)
    }

    /// Whether the chunks `chunks` still hold the bytes read from the file, for a space
    /// created at guest time `since`: chunks found intact since then are not hashed again
    /// (see [`CachedFile::verified`]).
    fn chunks_intact(&self, chunks: &[usize], since: u64) -> bool {
        let start = crate::time::now_ns();
        let mut buf = Vec::new();
        chunks.iter().all(|&i| {
            if self.verified[i].load(Ordering::Acquire) >= since {
                return true;
            }
            if buf.is_empty() {
                if buf.try_reserve_exact(TAG_CHUNK).is_err() {
                    return false;
                }
                buf.resize(TAG_CHUNK, 0);
            }
            let off = i * TAG_CHUNK;
            let n = (self.size - off).min(TAG_CHUNK);
            pool_mem::read(self.base + off as u64, &mut buf[..n]);
            let ok = tag(&buf[..n]) == self.tags[i];
            if ok {
                self.verified[i].fetch_max(start, Ordering::AcqRel);
            }
            ok
        })
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

/// Largest program loaded, as a share of the pool: a program of any size that fits in
/// memory runs (its image is read into pool frames once, never into kernel memory).
const MAX_FILE_POOL_SHARE: u64 = 2;
/// Bytes read per filesystem call (bounds the time the filesystem lock is held, and the
/// kernel buffer the file goes through).
const CHUNK: usize = 256 << 10;

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
/// the current process may execute (`creds::permitted`: for root, any execute bit), else
/// `EACCES`. Cached, or read into the cache now.
pub(crate) fn load(cwd: Ino, path: &[u8]) -> Result<Arc<CachedFile>, Errno> {
    let (ino, st) = crate::fs::with(|fs| {
        let ino = fs.lookup(cwd, path, true)?;
        Ok::<_, Errno>((ino, fs.stat_ino(ino)?))
    })?;
    let [_, uid, _, gid] = super::creds::exec_ids();
    let groups = super::creds::fs_groups();
    let caps = super::creds::exec_caps();
    if st.mode & mode::S_IFMT != mode::S_IFREG
        || !super::creds::permitted(
            (uid, gid, &groups, caps),
            (st.mode & 0o7777, st.uid, st.gid, false),
            super::creds::access::X,
        )
        || super::files::is_device(ino)
    {
        return Err(Errno::EACCES);
    }
    entry(ino, st.size, st.mtime_ns, path, None)
}

/// The cached image of host file `ino` (a `--rootfs` file the guest has not written) for a
/// private executable mapping of its bytes `[off, off + len)`: the chunks of that range are
/// verified (like a program's loaded part on exec), the file read into the cache if absent
/// or modified. `None` when the file is not such a host file or is too large to cache: the
/// caller then reads it from the host itself (`Fs::read_ino_uncached`).
pub(crate) fn for_mapping(
    ino: Ino,
    off: u64,
    len: u64,
    since: u64,
    exec: bool,
) -> Result<Option<Arc<CachedFile>>, Errno> {
    let st = crate::fs::with(|fs| {
        if !fs.is_host_file(ino) {
            return Ok(None);
        }
        fs.stat_ino(ino).map(Some)
    })?;
    let Some(st) = st else {
        return Ok(None);
    };
    let max_file = pool::stats().1 as u64 * PAGE_SIZE / MAX_FILE_POOL_SHARE;
    if st.size > max_file || st.size == 0 || off >= st.size {
        return Ok(None);
    }
    if !exec && !is_elf((ino, st.size, st.mtime_ns))? {
        return Ok(None);
    }
    let end = off.saturating_add(len).min(st.size);
    let chunks = chunks_of(&[(off, end)], st.size as usize);
    entry(
        ino,
        st.size,
        st.mtime_ns,
        b"(mapped library)",
        Some((&chunks, since)),
    )
    .map(Some)
}

/// Files (by cache key) found not to be ELF files: a private mapping of them comes from the
/// page cache, and knowing it spares a host read per mapping. Bounded (oldest dropped).
static NOT_ELF: IrqLock<Vec<(Ino, u64, u64)>> = IrqLock::new(Vec::new());
/// Most entries of [`NOT_ELF`].
const NOT_ELF_MAX: usize = 64;

/// Whether the host file with cache key `key` is an ELF file, judged from bytes the
/// kernel read from the host itself (a cached entry's head, or the file's first four bytes
/// read now), never from the page cache a program may have written.
fn is_elf(key: (Ino, u64, u64)) -> Result<bool, Errno> {
    if let Some(e) = CACHE.lock().iter().find(|e| e.key == key) {
        return Ok(e.head.starts_with(ELF_MAGIC));
    }
    if NOT_ELF.lock().contains(&key) {
        return Ok(false);
    }
    let mut magic = [0u8; 4];
    let n = crate::fs::with(|fs| fs.read_ino_uncached(key.0, 0, &mut magic))?;
    let elf = n == 4 && magic == *ELF_MAGIC;
    if !elf {
        let mut l = NOT_ELF.lock();
        if l.len() >= NOT_ELF_MAX {
            l.remove(0);
        }
        l.push(key);
    }
    Ok(elf)
}

/// The first bytes of an ELF file.
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// The cache entry of file `ino` (`size` bytes, modified at `mtime_ns`; `name` for the
/// log): a hit whose `verify` chunks (the loaded part of a program when `None`; else the
/// chunks and the creation time of the space they are for) still hold the file's bytes,
/// else the file read into fresh frames now.
fn entry(
    ino: Ino,
    size: u64,
    mtime_ns: u64,
    name: &[u8],
    verify: Option<(&[usize], u64)>,
) -> Result<Arc<CachedFile>, Errno> {
    let max_file = pool::stats().1 as u64 * PAGE_SIZE / MAX_FILE_POOL_SHARE;
    if size > max_file || size == 0 {
        return Err(if size == 0 {
            Errno::ENOEXEC
        } else {
            Errno::ENOMEM
        });
    }
    let key = (ino, size, mtime_ns);
    let now = crate::time::now_ns();
    let hit = {
        let mut c = CACHE.lock();
        c.retain(|e| e.key.0 != ino || e.key == key);
        c.iter().find(|e| e.key == key).cloned()
    };
    if let Some(e) = hit {
        // Verified outside the lock (it reads the whole loaded part of the file).
        let ok = match verify {
            None => e.intact(),
            Some((chunks, since)) => e.chunks_intact(chunks, since),
        };
        if ok {
            e.used.store(now, Ordering::Relaxed);
            return Ok(e);
        }
        CACHE.lock().retain(|x| !Arc::ptr_eq(x, &e));
        crate::println!(
            "imagecache: cached image of {} (inode {}) was modified; reading it again",
            alloc::string::String::from_utf8_lossy(name),
            ino
        );
    }
    let size = size as usize;
    let pages = size.div_ceil(PAGE_SIZE as usize);
    let read_at = crate::time::now_ns();
    let (_, pool_total) = pool::stats();
    while cached_pages() + pages > pool_total / 4 && evict_one() {}
    let base = loop {
        match pool::alloc_contiguous(pages) {
            Ok(b) => break b,
            Err(e) => {
                if !evict_one()
                    && !crate::fs::pagecache::shrink(pages as u64)
                    && !super::space::wait_for_reclaim()
                {
                    return Err(e);
                }
            }
        }
    };
    // Read the file through a kernel buffer into the frames, keeping its head.
    let r = read_into(ino, base, size);
    let (head, tags) = match r {
        Ok(v) => v,
        Err(e) => {
            for i in 0..pages as u64 {
                pool::put(base + i * PAGE_SIZE);
            }
            return Err(e);
        }
    };
    // Zero the tail of the last page (the loader may map it).
    let tail = pages * PAGE_SIZE as usize - size;
    pool_mem::zero(base + size as u64, tail);
    let checked = chunks_of(&exec::file_ranges(&head, size as u64), size);
    let entry = Arc::new(CachedFile {
        key,
        base,
        pages,
        size,
        head,
        used: AtomicU64::new(now),
        verified: (0..tags.len()).map(|_| AtomicU64::new(read_at)).collect(),
        tags,
        checked,
    });
    CACHE.lock().push(entry.clone());
    Ok(entry)
}

/// Reads the `size` bytes of file `ino` into the pool frames at `base`, in chunks of
/// at most [`CHUNK`] through a kernel buffer; returns the file's head (see
/// [`CachedFile::head`]) and the tags of its [`TAG_CHUNK`]s, computed from the kernel buffer.
fn read_into(ino: Ino, base: u64, size: usize) -> Result<(Vec<u8>, Vec<u64>), Errno> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(size.min(CHUNK))
        .map_err(|_| Errno::ENOMEM)?;
    buf.resize(size.min(CHUNK), 0);
    let mut head = Vec::new();
    let mut tags = Vec::new();
    tags.try_reserve_exact(size.div_ceil(TAG_CHUNK))
        .map_err(|_| Errno::ENOMEM)?;
    // The partial tag chunk carried over between reads.
    let mut partial: Vec<u8> = Vec::new();
    // The head's length, known once the first bytes are in.
    let mut want = 0;
    // Execute permission was checked (`load`), or the file is open for reading (a
    // mapping): the kernel reads the file by inode whatever its read bits, as Linux does
    // for a program that is execute-only.
    let mut off = 0;
    let r = loop {
        if off == size {
            break Ok(());
        }
        let n = (size - off).min(buf.len());
        // From the host itself for a host file, not the page cache (whose frames programs
        // can write): see `Fs::read_ino_uncached`.
        match crate::fs::with(|fs| fs.read_ino_uncached(ino, off as u64, &mut buf[..n])) {
            Ok(0) => break Err(Errno::EIO), // shrank under us
            Ok(got) => {
                if off == 0 {
                    want = head_len(&buf[..got], size);
                }
                if off < want {
                    head.extend_from_slice(&buf[..(want - off).min(got)]);
                }
                pool_mem::write(base + off as u64, &buf[..got]);
                tag_bytes(&mut tags, &mut partial, &buf[..got], off + got == size);
                off += got;
            }
            Err(e) => break Err(e),
        }
    };
    r.map(|()| (head, tags))
}

/// Adds the tags of the complete [`TAG_CHUNK`]s in `partial` + `bytes` (and of the rest too
/// when `last`), keeping an incomplete chunk in `partial`.
fn tag_bytes(tags: &mut Vec<u64>, partial: &mut Vec<u8>, mut bytes: &[u8], last: bool) {
    if !partial.is_empty() {
        let n = (TAG_CHUNK - partial.len()).min(bytes.len());
        partial.extend_from_slice(&bytes[..n]);
        bytes = &bytes[n..];
        if partial.len() == TAG_CHUNK {
            tags.push(tag(partial));
            partial.clear();
        }
    }
    let mut chunks = bytes.chunks_exact(TAG_CHUNK);
    for c in &mut chunks {
        tags.push(tag(c));
    }
    partial.extend_from_slice(chunks.remainder());
    if last && !partial.is_empty() {
        tags.push(tag(partial));
        partial.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_tags_do_not_depend_on_how_the_file_was_read() {
        let data: Vec<u8> = (0..TAG_CHUNK * 3 + 1234)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let whole: Vec<u64> = data.chunks(TAG_CHUNK).map(tag).collect();
        for step in [1000, 4096, TAG_CHUNK, TAG_CHUNK + 1, 256 << 10, data.len()] {
            let (mut tags, mut partial) = (Vec::new(), Vec::new());
            let mut off = 0;
            while off < data.len() {
                let n = step.min(data.len() - off);
                tag_bytes(
                    &mut tags,
                    &mut partial,
                    &data[off..off + n],
                    off + n == data.len(),
                );
                off += n;
            }
            assert_eq!(tags, whole, "step {step}");
            assert!(partial.is_empty());
        }
        // Swapping the two halves of a chunk changes its tag.
        let (a, b) = data[..TAG_CHUNK].split_at(TAG_CHUNK / 2);
        let swapped: Vec<u8> = b.iter().chain(a).copied().collect();
        assert_ne!(tag(&swapped), whole[0]);
        // A one-byte change changes its chunk's tag only.
        let mut evil = data.clone();
        evil[TAG_CHUNK + 5] ^= 1;
        let t: Vec<u64> = evil.chunks(TAG_CHUNK).map(tag).collect();
        assert_eq!(t[0], whole[0]);
        assert_ne!(t[1], whole[1]);
    }

    #[test]
    fn checked_chunks_cover_the_ranges() {
        let c = TAG_CHUNK as u64;
        assert_eq!(chunks_of(&[], 10 * TAG_CHUNK), Vec::<usize>::new());
        assert_eq!(chunks_of(&[(0, 1)], 10 * TAG_CHUNK), [0]);
        assert_eq!(chunks_of(&[(c - 1, c + 1)], 10 * TAG_CHUNK), [0, 1]);
        assert_eq!(chunks_of(&[(c, 2 * c), (0, 10)], 10 * TAG_CHUNK), [0, 1]);
        // Clamped to the file.
        assert_eq!(chunks_of(&[(0, u64::MAX)], 2 * TAG_CHUNK + 1), [0, 1, 2]);
        assert_eq!(
            chunks_of(&[(5 * c, 4 * c)], 10 * TAG_CHUNK),
            Vec::<usize>::new()
        );
    }
}
