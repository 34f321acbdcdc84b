//! The program image cache: executables (and host ELF files mapped privately) in contiguous
//! user-pool frames, read lazily and shared copy-on-write by every process that maps them
//! (like a page cache for text and data).
//!
//! **Read at first use.** An entry is made with frames for the whole file but only its first
//! [`TAG_CHUNK`] read (the head the loader parses); `execve` maps nothing but the segment
//! edges (private copies of partial pages): the whole pages of each segment are named in the
//! region ([`super::space::ImageMap`]) and a page's first touch — the program's fault, or a
//! kernel access to it — reads its 64 KiB chunk, and up to three unread chunks right after it
//! (read-ahead: a program's first run touches most of its image), from the file system into
//! the frames and a kernel buffer at once (for a host file the host writes both in one
//! `HostfsRead`, so the kernel never faults the frames in to copy them), tags each chunk from
//! that buffer ([`CachedFile::ensure`]), and maps the touched chunk's pages copy-on-write, with
//! those of the chunks after it that the entry holds already (`Mm::touch`: the read-ahead's,
//! touched next by a first run). A chunk's frames are never mapped nor read before that. A chunk read
//! after the file changed (size or modification time) or that reads short is `EIO`, `SIGBUS`
//! for the program touching it: never bytes of two versions of a file. Entries are keyed by
//! inode, size and modification time (a rewritten file is read again) and bounded to a
//! quarter of the pool; the least recently used go first, and all of them when the pool runs
//! short (processes mapping an entry keep it). A program may be as large as half of the pool
//! (e.g. a 74 MiB binary with the default `--mem`).
//!
//! **A removed file stays readable.** An entry holds its file's inode open (a filesystem
//! handle, [`CachedFile`]'s `hold`): a library or program removed while it is mapped — a
//! host file, or one in guest memory whose removal would free its pages — keeps its bytes
//! for its chunks not read yet, as Linux keeps a mapped file after its last name goes. The
//! hold goes with the entry (evicted, and mapped by no process).
//!
//! The frames are user-pool memory, which a hostile program can map and write (see
//! docs/SECURITY.md): the kernel never parses them in place. What the loader parses — the ELF
//! header and program headers, or a `#!` line — is the entry's [`CachedFile::head`], a copy
//! in kernel memory taken from the buffer the first chunk was read through.
//!
//! **Verified before every reuse.** So that a program cannot plant code in the cache for
//! every later exec of a binary (persistence after it exits), each entry keeps, in kernel
//! memory, a SipHash-2-4 tag of every [`TAG_CHUNK`] bytes of the file, keyed with a secret
//! drawn from the kernel's random generator at the first load (a program never sees the key
//! nor the tags, so it cannot forge a matching change). A chunk is re-hashed when it is
//! first mapped into a space created after its last check ([`CachedFile::verified`]): an
//! exec pays for the chunks it touches, not for the whole file. A mismatch logs
//! `imagecache: cached image of inode ... was modified` and reads the chunk from the file
//! again into the same frames (processes still mapping them see the file's bytes again; a
//! program alive at the same time can write their pages anyway: the documented same-tenant
//! gap).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pvmux_hypercalls::PAGE_SIZE;

mod siphash;

use super::{pool, Errno};
use crate::fs::ramfs::{mode, Ino};
use crate::irq::IrqLock;
use crate::mm::pool_mem;

/// A program file's bytes in contiguous pool frames, read chunk by chunk at first use.
pub(crate) struct CachedFile {
    /// Inode, size, mtime: the cache key.
    key: (Ino, u64, u64),
    /// First frame (guest-physical).
    base: u64,
    /// Frames held (one reference each); 0 for a host file window's entry, whose pages are
    /// the window's ([`CachedFile::base`] a window's address, `linux/window.rs`).
    pages: usize,
    /// File size in bytes.
    size: usize,
    /// The file's first bytes, in kernel memory: at least [`HEAD_MIN`] (or the whole file),
    /// and for an ELF file up to the end of its program headers (at most [`HEAD_MAX`]).
    head: Vec<u8>,
    /// Last use (guest ns), for LRU eviction.
    used: AtomicU64,
    /// Per [`TAG_CHUNK`]: whether its frames hold the file's bytes yet (read from the file
    /// system at the chunk's first use, [`CachedFile::ensure`]). The frames of a chunk not
    /// filled hold whatever the pool gave (another process's old data): they are never
    /// mapped nor read before the chunk is filled.
    filled: Vec<AtomicBool>,
    /// SipHash-2-4 tag of every filled [`TAG_CHUNK`] (the last chunk may be shorter), taken
    /// from the kernel buffer the chunk was read through.
    tags: Vec<AtomicU64>,
    /// Per chunk: guest time at the start of the last check that found it intact (or of the
    /// read its tag was made from). A mapping into a space created no later than that needs
    /// no new check: a program that changed the chunk since was alive while that space was,
    /// and could have written the space's own pages just as well (the same-tenant gap);
    /// what a check must stop is a change by a program that exited *before* the space.
    verified: Vec<AtomicU64>,
    /// Held while a chunk is filled or checked (one reader of the file per entry).
    fill_lock: IrqLock<()>,
    /// A host file's inode held open while the entry lives: its chunks not read yet are
    /// read from it, also after its last name went (a library removed while processes map
    /// it, as Linux keeps a mapped file).
    hold: Option<crate::fs::ramfs::Handle>,
    /// The file's bytes come from the host (a `--rootfs` or volume file as the host has
    /// it): each read is a host call, so a read takes the chunks after it too
    /// ([`READ_AHEAD_CHUNKS`]). An in-memory file's chunk (the initramfs, `/tmp`) is a
    /// copy in guest memory: read alone, as a fault needs it.
    from_host: bool,
}

/// Bytes of the file per tag, and per read at a chunk's first use.
pub(crate) const TAG_CHUNK: usize = 64 << 10;

/// Most chunks one read of a host file fills: the one a fault needs and the unread ones
/// right after it (256 KiB in all). Each read is a host call whose fixed cost (10–45 µs on a
/// nested EPYC) is that of copying a chunk or more; a window of four quarters the calls of a
/// program that touches its whole image and reads at most three chunks it may never use.
/// An in-memory file has no such fixed cost and is read a chunk at a time: the chunks a
/// program never touches are not copied (each copy lands in fresh frames, 1–3 µs a page on
/// a nested host): the bench workload's exec from the initramfs took 0.3 ms instead of
/// 1.0–1.1 ms, and its boot 0.8 ms less (docs/BENCHMARKS.md).
pub(crate) const READ_AHEAD_CHUNKS: usize = 4;

/// Bytes of a file's head kept in kernel memory at least (the ELF header and a `#!` line fit).
const HEAD_MIN: usize = 4096;
/// At most (program headers further into the file are not loaded: `ENOEXEC`). The head
/// comes from the file's first chunk, read when the entry is made.
const HEAD_MAX: usize = TAG_CHUNK;

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

    /// Guest-physical address of the frame holding file offset `off` (page aligned). Its
    /// chunk must have been made ready for the space it goes to ([`CachedFile::ensure`]).
    pub(crate) fn frame_at(&self, off: u64) -> u64 {
        self.base + off / PAGE_SIZE * PAGE_SIZE
    }

    /// Guest-physical address of file offset `off`, whose next `len` bytes must lie in the
    /// file (`ENOEXEC` otherwise), for a space created at guest time `since`: the chunks
    /// holding them are read or checked first ([`CachedFile::ensure`]).
    pub(crate) fn gpa_at(&self, off: u64, len: u64, since: u64) -> Result<u64, Errno> {
        match off.checked_add(len) {
            Some(end) if end <= self.size as u64 => {
                let last = (end.max(off + 1) - 1) as usize / TAG_CHUNK;
                for i in off as usize / TAG_CHUNK..=last {
                    self.ensure(i, since)?;
                }
                Ok(self.base + off)
            }
            _ => Err(Errno::ENOEXEC),
        }
    }

    /// Makes chunk `i` ready to be mapped into (or copied for) a space created at guest time
    /// `since`: read from the file system into its frames at its first use, else checked
    /// against its tag unless found intact since `since` (see [`CachedFile::verified`]); a
    /// chunk found modified is read again (logged). `EIO` if the file is no longer the one
    /// the entry was made from (its size or modification time changed, or it reads short):
    /// the fault that needed the chunk is then `SIGBUS`, as on Linux for a mapping of a file
    /// truncated under it, never bytes of another version of the file.
    pub(crate) fn ensure(&self, i: usize, since: u64) -> Result<(), Errno> {
        if i >= self.filled.len() {
            return Err(Errno::EIO);
        }
        let ready = |s: &Self| {
            s.filled[i].load(Ordering::Acquire) && s.verified[i].load(Ordering::Acquire) >= since
        };
        if ready(self) {
            return Ok(());
        }
        let _g = self.fill_lock.lock();
        if ready(self) {
            return Ok(());
        }
        if self.filled[i].load(Ordering::Acquire) {
            let start = crate::time::now_ns();
            let (off, n) = self.chunk_span(i);
            let mut buf = take_buffer(n)?;
            pool_mem::read(self.base + off as u64, &mut buf);
            let intact = tag(&buf) == self.tags[i].load(Ordering::Acquire);
            give_back(buf);
            if intact {
                self.verified[i].fetch_max(start, Ordering::AcqRel);
                return Ok(());
            }
            crate::println!(
                "imagecache: cached image of inode {} was modified (chunk {i}); reading it again",
                self.key.0
            );
            self.filled[i].store(false, Ordering::Release);
        }
        // Read ahead: the chunks right after it that were not read yet come in the same
        // host read (a program's first run touches most chunks of its text and data:
        // python3's 6.8 MB binary is read whole at start-up, and one read per chunk cost a
        // host call each). Not for an in-memory file (`from_host`).
        let window = if self.from_host { READ_AHEAD_CHUNKS } else { 1 };
        let ahead = (i + 1..self.filled.len().min(i + window))
            .take_while(|&j| !self.filled[j].load(Ordering::Acquire))
            .count();
        self.fill_chunks(i, 1 + ahead).map(give_back)
    }

    /// Whether chunk `i` has been read (its frames hold the file's bytes, unless a program
    /// wrote them: [`CachedFile::ensure`] checks before use).
    pub(crate) fn is_filled(&self, i: usize) -> bool {
        self.filled
            .get(i)
            .is_some_and(|f| f.load(Ordering::Acquire))
    }

    /// File offset and length of chunk `i`.
    fn chunk_span(&self, i: usize) -> (usize, usize) {
        let off = i * TAG_CHUNK;
        (off, (self.size - off).min(TAG_CHUNK))
    }

    /// Reads chunks `i..i + count` (at most [`READ_AHEAD_CHUNKS`], within the file) from the
    /// file system through one kernel buffer into their frames (the rest of the file's last
    /// page zeroed), tags each from that buffer, and returns the buffer. Called under
    /// [`CachedFile::fill_lock`] or before the entry is shared.
    fn fill_chunks(&self, i: usize, count: usize) -> Result<Vec<u8>, Errno> {
        let read_at = crate::time::now_ns();
        let last = i + count.clamp(1, READ_AHEAD_CHUNKS) - 1;
        if last >= self.filled.len() {
            return Err(Errno::EIO);
        }
        let off = self.chunk_span(i).0;
        let n = {
            let (last_off, last_n) = self.chunk_span(last);
            last_off + last_n - off
        };
        let mut buf = take_buffer(n)?;
        let (ino, size, mtime) = self.key;
        // Execute permission was checked (`load`), or the file is open for reading (a
        // mapping): the kernel reads the file by inode whatever its read bits, as Linux does
        // for a program that is execute-only. From the host itself for a host file, not the
        // page cache (whose frames programs can write): see `Fs::read_ino_uncached`.
        // The file's bytes go to the frames and, in the same read, to the kernel's own
        // buffer the tag is taken from: a program that writes the frames meanwhile cannot
        // get its bytes tagged.
        crate::fs::with(|fs| {
            let st = fs.stat_ino(ino)?;
            if (st.size, st.mtime_ns) != (size, mtime) {
                return Err(Errno::EIO); // the file changed since the entry was made
            }
            fs.read_ino_uncached_frames(ino, off as u64, self.base + off as u64, &mut buf)
        })
        .inspect_err(|e| {
            crate::println!("imagecache: reading chunk {i} of inode {ino} failed: {e}");
        })?;
        if off + n == self.size {
            // The tail of the last page (the loader may map it).
            let tail = self.pages * PAGE_SIZE as usize - self.size;
            pool_mem::zero(self.base + self.size as u64, tail);
        }
        for (k, bytes) in buf.chunks(TAG_CHUNK).enumerate() {
            self.tags[i + k].store(tag(bytes), Ordering::Release);
            self.verified[i + k].store(read_at, Ordering::Release);
            self.filled[i + k].store(true, Ordering::Release);
        }
        Ok(buf)
    }
}

/// A kernel buffer of `n` bytes (at most [`READ_AHEAD_CHUNKS`] chunks) to read or check
/// chunks through: a spare one if there is one, its old bytes left (the read or the copy
/// overwrites them all, or fails), else a new zeroed one (`ENOMEM` if the heap has none).
fn take_buffer(n: usize) -> Result<Vec<u8>, Errno> {
    let spare = SPARE_BUFS.lock().pop();
    if let Some(mut buf) = spare {
        buf.try_reserve_exact(n.saturating_sub(buf.len()))
            .map_err(|_| Errno::ENOMEM)?;
        buf.resize(n, 0);
        return Ok(buf);
    }
    let mut buf = Vec::new();
    buf.try_reserve_exact(TAG_CHUNK.max(n))
        .map_err(|_| Errno::ENOMEM)?;
    buf.resize(n, 0);
    Ok(buf)
}

/// Keeps a chunk buffer for the next [`take_buffer`] if fewer than [`SPARE_BUFFERS`] are
/// kept: no allocation and no 64 KiB of zeroes per chunk read.
fn give_back(buf: Vec<u8>) {
    if buf.capacity() >= TAG_CHUNK {
        let mut spare = SPARE_BUFS.lock();
        if spare.len() < SPARE_BUFFERS {
            spare.push(buf);
        }
    }
}

/// Chunk buffers kept for reuse.
static SPARE_BUFS: IrqLock<Vec<Vec<u8>>> = IrqLock::new(Vec::new());
/// Most buffers in [`SPARE_BUFS`] (one per vCPU reading at once is plenty).
const SPARE_BUFFERS: usize = 2;

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

/// The tag of `bytes` (a chunk of a file): SipHash-2-4 of its eight interleaved lanes (the
/// chunk's 8-byte word `k` in lane `k mod 8`, over its whole 64-byte rows), computed
/// together ([`siphash::hash8_rows`]: a chunk's check is the cost of its first use in a new
/// space), then SipHash-2-4, under the key's halves swapped, of the eight results followed
/// by the chunk's bytes after its last whole row.
fn tag(bytes: &[u8]) -> u64 {
    let key = tag_key();
    let lanes = siphash::hash8_rows(key, bytes);
    let rest = &bytes[bytes.len() / siphash::ROW * siphash::ROW..];
    let mut all = [0u8; 2 * siphash::ROW];
    for (dst, h) in all.chunks_exact_mut(8).zip(lanes) {
        dst.copy_from_slice(&h.to_le_bytes());
    }
    all[siphash::ROW..siphash::ROW + rest.len()].copy_from_slice(rest);
    siphash::hash((key.1, key.0), &all[..siphash::ROW + rest.len()])
}

impl Drop for CachedFile {
    fn drop(&mut self) {
        for i in 0..self.pages as u64 {
            pool::put(self.base + i * PAGE_SIZE);
        }
        if let Some(h) = self.hold.take() {
            TO_CLOSE.lock().push(h);
            close_released();
        }
    }
}

/// Inode holds of dropped entries not closed yet: an entry may be dropped while the
/// filesystem is in use further up the stack (the pool ran short inside a file operation,
/// [`shrink`]); they are closed at the next chance.
static TO_CLOSE: IrqLock<Vec<crate::fs::ramfs::Handle>> = IrqLock::new(Vec::new());

/// Closes the released holds, if the filesystem is free (a removed file's inode goes with
/// its last hold).
fn close_released() {
    let held = core::mem::take(&mut *TO_CLOSE.lock());
    if held.is_empty() {
        return;
    }
    let closed = crate::fs::try_with(|fs| {
        for &h in &held {
            let _ = fs.close(h);
        }
    });
    if closed.is_none() {
        TO_CLOSE.lock().extend(held);
    }
}

static CACHE: IrqLock<Vec<Arc<CachedFile>>> = IrqLock::new(Vec::new());

/// Largest program loaded, as a share of the pool: a program of any size that fits in
/// memory runs (its image is read into pool frames, never into kernel memory).
const MAX_FILE_POOL_SHARE: u64 = 2;

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
    load_ino(crate::fs::with(|fs| fs.lookup(cwd, path, true))?)
}

/// [`load`] of inode `ino` (the file of a descriptor: `execveat` with `AT_EMPTY_PATH`).
pub(crate) fn load_ino(ino: Ino) -> Result<Arc<CachedFile>, Errno> {
    let st = crate::fs::with(|fs| fs.stat_ino(ino))?;
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
    entry(ino, st.size, st.mtime_ns)
}

/// The cached image of host file `ino` (a `--rootfs` file the guest has not written) for a
/// private mapping of its bytes from `off` (`exec`: an executable one): the entry is made
/// (its first chunk read) if absent or stale; the chunks of the mapped range are read or
/// checked as the new mapping's pages are first touched ([`CachedFile::ensure`]). `None`
/// when the file is not such a host file, is too large to cache, or (for a mapping that is
/// not executable) is not an ELF file: the caller then reads it itself.
pub(crate) fn for_mapping(
    ino: Ino,
    off: u64,
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
    entry(ino, st.size, st.mtime_ns).map(Some)
}

/// Kernel hand-over: the cached image of file `ino` for a program's or library's image
/// area an adopted process maps from offset `off` — a host file, a volume file or a file
/// in memory, as its writer's loader cached it (`load` caches any of them; its execute
/// permission was checked by that exec). `None` if it is not a regular file the cache
/// can hold, or `off` is past its end.
pub(crate) fn for_adopted_image(ino: Ino, off: u64) -> Option<Arc<CachedFile>> {
    let st = crate::fs::with(|fs| fs.stat_ino(ino)).ok()?;
    if st.mode & mode::S_IFMT != mode::S_IFREG || off >= st.size {
        return None;
    }
    entry(ino, st.size, st.mtime_ns).ok()
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

/// The cache entry of file `ino` (`size` bytes, modified at `mtime_ns`): a hit as it is
/// (its chunks are checked as they are mapped, [`CachedFile::ensure`]), else a new entry:
/// frames for the whole file and its first chunk read now (the head the loader parses),
/// the rest read at first use.
fn entry(ino: Ino, size: u64, mtime_ns: u64) -> Result<Arc<CachedFile>, Errno> {
    close_released();
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
        e.used.store(now, Ordering::Relaxed);
        return Ok(e);
    }
    if let Some(e) = window_entry(ino, size, mtime_ns, now)? {
        let entry = Arc::new(e);
        CACHE.lock().push(entry.clone());
        return Ok(entry);
    }
    let size = size as usize;
    let pages = size.div_ceil(PAGE_SIZE as usize);
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
    let chunks = size.div_ceil(TAG_CHUNK);
    // Any file: a removed file's bytes (a host file's, or an in-memory file's pages, which
    // its removal would free) stay readable for the chunks not read yet.
    let (hold, from_host) = crate::fs::with(|fs| {
        (
            fs.open_ino(ino, crate::fs::ramfs::oflag::O_RDONLY).ok(),
            fs.is_host_file(ino),
        )
    });
    let mut e = CachedFile {
        key,
        base,
        pages,
        size,
        head: Vec::new(),
        used: AtomicU64::new(now),
        filled: (0..chunks).map(|_| AtomicBool::new(false)).collect(),
        tags: (0..chunks).map(|_| AtomicU64::new(0)).collect(),
        verified: (0..chunks).map(|_| AtomicU64::new(0)).collect(),
        fill_lock: IrqLock::new(()),
        hold,
        from_host,
    };
    // Dropping `e` on an error gives the frames back.
    let first = e.fill_chunks(0, 1)?;
    e.head = first[..head_len(&first, size)].to_vec();
    give_back(first);
    let entry = Arc::new(e);
    CACHE.lock().push(entry.clone());
    Ok(entry)
}

/// The entry of host file `ino` as a host file window (`linux/window.rs`), if the host gives
/// one: its pages are the window's (no pool frames, nothing read but its head, nothing to
/// check: programs cannot write them), its head read from the host into kernel memory.
/// `None`: not a share's file, or no window for it (then it is read into pool frames).
fn window_entry(ino: Ino, size: u64, mtime_ns: u64, now: u64) -> Result<Option<CachedFile>, Errno> {
    let Some(path) = crate::fs::with(|fs| fs.host_file_path(ino)) else {
        return Ok(None);
    };
    let Some(slot) = super::window::open(&path, size, mtime_ns) else {
        return Ok(None);
    };
    let size = size as usize;
    let mut first = take_buffer(size.min(HEAD_MAX))?;
    let mut got = 0;
    while got < first.len() {
        match crate::fs::with(|fs| fs.read_ino_uncached(ino, got as u64, &mut first[got..]))? {
            0 => break,
            n => got += n,
        }
    }
    if got < first.len() {
        give_back(first);
        return Err(Errno::EIO); // shorter than it said
    }
    let chunks = size.div_ceil(TAG_CHUNK);
    let hold = crate::fs::with(|fs| fs.open_ino(ino, crate::fs::ramfs::oflag::O_RDONLY).ok());
    let head = first[..head_len(&first, size)].to_vec();
    give_back(first);
    Ok(Some(CachedFile {
        key: (ino, size as u64, mtime_ns),
        base: pvmux_hypercalls::window::gpa(slot, 0),
        pages: 0,
        size,
        head,
        used: AtomicU64::new(now),
        // Always ready: a window's pages hold the file's bytes and no program can write them.
        filled: (0..chunks).map(|_| AtomicBool::new(true)).collect(),
        tags: (0..chunks).map(|_| AtomicU64::new(0)).collect(),
        verified: (0..chunks).map(|_| AtomicU64::new(u64::MAX)).collect(),
        fill_lock: IrqLock::new(()),
        hold,
        from_host: true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_tag_depends_on_every_byte_and_their_order() {
        let data: Vec<u8> = (0..TAG_CHUNK * 2 + 1234)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let whole: Vec<u64> = data.chunks(TAG_CHUNK).map(tag).collect();
        // Swapping the two halves of a chunk changes its tag.
        let (a, b) = data[..TAG_CHUNK].split_at(TAG_CHUNK / 2);
        let swapped: Vec<u8> = b.iter().chain(a).copied().collect();
        assert_ne!(tag(&swapped), whole[0]);
        // So does swapping two words of a row (each in a lane of its own), or two rows.
        let mut words = data[..TAG_CHUNK].to_vec();
        words[..16].rotate_left(8);
        assert_ne!(tag(&words), whole[0]);
        let mut rows = data[..TAG_CHUNK].to_vec();
        rows[..128].rotate_left(64);
        assert_ne!(tag(&rows), whole[0]);
        // And a change in the bytes after the last whole row of a short chunk.
        let short = &data[2 * TAG_CHUNK..];
        let mut tail = short.to_vec();
        *tail.last_mut().expect("a short chunk") ^= 0x80;
        assert_ne!(tag(&tail), tag(short));
        // A one-byte change changes its chunk's tag only.
        let mut evil = data.clone();
        evil[TAG_CHUNK + 5] ^= 1;
        let t: Vec<u64> = evil.chunks(TAG_CHUNK).map(tag).collect();
        assert_eq!(t[0], whole[0]);
        assert_ne!(t[1], whole[1]);
        assert_eq!(t[2], whole[2]);
    }

    #[test]
    fn the_head_covers_the_program_headers() {
        let mut elf = alloc::vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[32..40].copy_from_slice(&8000u64.to_le_bytes()); // e_phoff
        elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        elf[56..58].copy_from_slice(&10u16.to_le_bytes()); // e_phnum
        assert_eq!(head_len(&elf, 1 << 20), 8560);
        assert_eq!(head_len(&elf, 5000), 5000);
        assert_eq!(head_len(b"#!/bin/sh\n", 1 << 20), HEAD_MIN);
        // Program headers past the first chunk are not kept (`ENOEXEC` from the loader).
        elf[32..40].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert_eq!(head_len(&elf, 1 << 41), HEAD_MAX);
    }
}
