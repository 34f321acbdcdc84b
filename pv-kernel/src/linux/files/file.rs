//! Open file descriptions, the per-process descriptor table, and reading and writing.
//!
//! An [`OpenFile`] is Linux's "open file description": the object behind one `open` or
//! `pipe`, with the file offset and status flags. `dup` and `fork` share it (one `Arc`), so
//! they share offset and flags; the descriptor's own close-on-exec flag lives in the table.
//! The last reference closes it ([`Drop`]): the ramfs handle is closed, a pipe end counted
//! down.
//!
//! Lock order: a descriptor table, then an open file's offset, then the filesystem or a
//! pipe. Nothing blocks while holding any of them; blocking (pipes, console) happens with no
//! lock held, and user memory is copied outside every lock.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::dev::{self, Dev};
use super::pipe::{Pipe, PIPE_BUF};
use crate::fs::ramfs::{mode, oflag, Handle, Ino, Stat};
use crate::fs::{self, Errno};
use crate::irq::IrqLock;
use crate::linux::uaccess::{copy_from_user, copy_to_user};
use crate::linux::{signal, SysResult};

/// The most descriptors any process may have open (`RLIMIT_NOFILE`'s ceiling; each
/// process's own limit is its `RLIMIT_NOFILE`, `crate::linux::rlimit::nofile`).
pub(crate) const NOFILE: usize = crate::linux::rlimit::NR_OPEN as usize;
/// Kernel heap a descriptor may cost (its slot, the open file description, a pipe's
/// bookkeeping): checked against the heap's headroom before one is installed.
const FD_COST: usize = 512;
/// Most bytes one read or write transfers (Linux `MAX_RW_COUNT`).
pub(crate) const MAX_RW: usize = 0x7fff_f000;
/// Kernel bounce-buffer size for copying between user memory and files.
const CHUNK: usize = 64 * 1024;

/// Open-flag bits beyond those of [`oflag`] (Linux x86-64 values).
pub(crate) mod fl {
    pub(crate) const O_NOCTTY: u32 = 0o400;
    pub(crate) const O_NONBLOCK: u32 = 0o4000;
    pub(crate) const O_ASYNC: u32 = 0o20000;
    pub(crate) const O_DIRECT: u32 = 0o40000;
    pub(crate) const O_LARGEFILE: u32 = 0o100000;
    pub(crate) const O_NOATIME: u32 = 0o1000000;
    pub(crate) const O_CLOEXEC: u32 = 0o2000000;
    pub(crate) const O_PATH: u32 = 0o10000000;
    /// `O_TMPFILE` without its `O_DIRECTORY` bit.
    pub(crate) const O_TMPFILE_BIT: u32 = 0o20000000;
    /// Flags `F_SETFL` may change.
    pub(crate) const SETFL_MASK: u32 =
        super::oflag::O_APPEND | O_NONBLOCK | O_ASYNC | O_DIRECT | O_NOATIME;
    /// Flags that only matter while opening (not kept in the description).
    pub(crate) const OPEN_ONLY: u32 =
        super::oflag::O_CREAT | super::oflag::O_EXCL | O_NOCTTY | super::oflag::O_TRUNC | O_CLOEXEC;
}

/// Extra `st_mode` type bits.
pub(crate) const S_IFCHR: u32 = 0o020_000;
/// `S_IFBLK`.
pub(crate) const S_IFBLK: u32 = 0o060_000;
/// FIFO type bits.
pub(crate) const S_IFIFO: u32 = 0o010_000;

/// What an open file description refers to.
pub(crate) enum Kind {
    /// A ramfs regular file or directory; the handle keeps the inode alive.
    Node {
        /// The ramfs handle.
        h: Handle,
        /// Its inode.
        ino: Ino,
        /// True for a directory.
        dir: bool,
    },
    /// The read end of a pipe.
    PipeRead(Arc<Pipe>),
    /// The write end of a pipe.
    PipeWrite(Arc<Pipe>),
    /// A memory-like character device (`/dev/null`, `zero`, `full`, `random`, `urandom`).
    Dev {
        /// Which.
        dev: Dev,
        /// Its `/dev` node.
        ino: Ino,
    },
    /// The console (`/dev/console`, `/dev/tty`, the first process's fds 0-2).
    Console {
        /// Host stream written to (0 stdout, 2 stderr).
        out: u64,
        /// True if the host stream is a terminal (terminal ioctls work).
        tty: bool,
        /// The device it was opened as.
        dev: Dev,
    },
    /// Any other kind: a socket, an event object, a pseudo file ([`super::object`]).
    Object(Arc<dyn super::object::FileObject>),
}

/// An open file description.
pub(crate) struct OpenFile {
    /// What it refers to.
    pub(crate) kind: Kind,
    /// Access mode and status flags (`F_GETFL`).
    flags: AtomicU32,
    /// File offset (regular files; directories keep theirs in the ramfs handle).
    pos: IrqLock<u64>,
    /// The absolute path it was opened by (regular files; `/proc/PID/fd`).
    path: spin::Once<Vec<u8>>,
    /// Unique among the descriptions of this kernel: what owns its `flock` and open file
    /// description locks (`locks.rs`).
    id: u64,
    /// Whether it ever took such a lock (its drop then drops them).
    locked: AtomicBool,
}

/// The next [`OpenFile::id`].
static NEXT_DESCRIPTION_ID: AtomicU64 = AtomicU64::new(1);

impl OpenFile {
    /// A new description with `flags` (open-only flags are dropped).
    pub(crate) fn new(kind: Kind, flags: u32) -> Arc<Self> {
        Arc::new(Self {
            kind,
            flags: AtomicU32::new((flags & !fl::OPEN_ONLY) | fl::O_LARGEFILE),
            pos: IrqLock::new(0),
            path: spin::Once::new(),
            id: NEXT_DESCRIPTION_ID.fetch_add(1, Ordering::Relaxed),
            locked: AtomicBool::new(false),
        })
    }

    /// Its id, unique among this kernel's descriptions (what owns its locks).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// It takes a `flock` or open file description lock: its drop drops its locks.
    pub(crate) fn note_locked(&self) {
        self.locked.store(true, Ordering::Relaxed);
    }

    /// Records the absolute path it was opened by (once).
    pub(crate) fn set_path(&self, path: Vec<u8>) {
        self.path.call_once(|| path);
    }

    /// The absolute path it was opened by, if recorded.
    pub(crate) fn path(&self) -> Option<&[u8]> {
        self.path.get().map(Vec::as_slice)
    }

    /// Access mode and status flags.
    pub(crate) fn flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    /// `F_SETFL`: changes the changeable status flags.
    pub(crate) fn set_status_flags(&self, new: u32) {
        let old = self.flags();
        let v = (old & !fl::SETFL_MASK) | (new & fl::SETFL_MASK);
        self.flags.store(v, Ordering::Relaxed);
    }

    /// True if opened with `O_PATH` (no I/O).
    pub(crate) fn is_path(&self) -> bool {
        self.flags() & fl::O_PATH != 0
    }

    /// True if open for reading (access mode 3 is neither reading nor writing).
    pub(crate) fn readable(&self) -> bool {
        !self.is_path()
            && matches!(
                self.flags() & oflag::O_ACCMODE,
                oflag::O_RDONLY | oflag::O_RDWR
            )
    }

    /// True if open for writing.
    pub(crate) fn writable(&self) -> bool {
        !self.is_path()
            && matches!(
                self.flags() & oflag::O_ACCMODE,
                oflag::O_WRONLY | oflag::O_RDWR
            )
    }

    /// True with `O_NONBLOCK`.
    pub(crate) fn nonblock(&self) -> bool {
        self.flags() & fl::O_NONBLOCK != 0
    }

    /// True for pipes and the console (no offset; a read returns what is there).
    pub(crate) fn is_stream(&self) -> bool {
        match &self.kind {
            Kind::PipeRead(_) | Kind::PipeWrite(_) | Kind::Console { .. } => true,
            Kind::Object(o) => o.is_stream(),
            Kind::Node { .. } | Kind::Dev { .. } => false,
        }
    }

    /// The inode behind it, if any (ramfs nodes and devices).
    pub(crate) fn ino(&self) -> Option<Ino> {
        match &self.kind {
            Kind::Node { ino, .. } | Kind::Dev { ino, .. } => Some(*ino),
            Kind::Console { dev, .. } => dev::node_ino(*dev),
            Kind::PipeRead(_) | Kind::PipeWrite(_) | Kind::Object(_) => None,
        }
    }

    /// The directory inode, if this is an open directory.
    pub(crate) fn dir_ino(&self) -> Option<Ino> {
        match self.kind {
            Kind::Node { ino, dir: true, .. } => Some(ino),
            _ => None,
        }
    }

    /// The offset lock (regular files).
    pub(crate) fn pos(&self) -> crate::irq::IrqLockGuard<'_, u64> {
        self.pos.lock()
    }

    /// Takes back `n` bytes of a read that could not be delivered.
    pub(crate) fn rewind(&self, n: usize) {
        if let Kind::Node { dir: false, .. } = self.kind {
            let mut p = self.pos.lock();
            *p = p.saturating_sub(n as u64);
        }
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        if *self.locked.get_mut() {
            super::locks::description_closed(self.id);
        }
        match &self.kind {
            Kind::Node { h, ino, dir } => {
                let h = *h;
                if !self.is_path() {
                    super::inotify::closed(*ino, self.writable(), *dir);
                }
                let _ = fs::with(|fs| fs.close(h));
            }
            Kind::PipeRead(p) => p.close_reader(),
            Kind::PipeWrite(p) => p.close_writer(),
            Kind::Dev { .. } | Kind::Console { .. } | Kind::Object(_) => {}
        }
    }
}

/// A descriptor of `file` is closed by the current process (if a process's thread closes
/// it): POSIX drops the process's record locks on the file (`locks.rs`).
fn closing(file: &OpenFile) {
    if let Some(t) = crate::linux::task::try_current_task() {
        super::locks::descriptor_closed(t.process.pid, file);
    }
}

/// One descriptor.
#[derive(Clone)]
struct Slot {
    file: Arc<OpenFile>,
    cloexec: bool,
}

/// A process's file-descriptor table.
pub(crate) struct FdTable {
    slots: Vec<Option<Slot>>,
}

impl FdTable {
    /// An empty table.
    pub(crate) const fn new() -> Self {
        Self { slots: Vec::new() }
    }

    /// A table with fds 0, 1, 2 open on the console (the first process): the host's stdin,
    /// stdout and stderr.
    pub(crate) fn with_console() -> Self {
        super::init();
        let mut t = Self::new();
        for (flags, out, tty) in super::tty::initial_console_fds() {
            let f = OpenFile::new(
                Kind::Console {
                    out,
                    tty,
                    dev: Dev::Console,
                },
                flags,
            );
            let _ = t.alloc(f, false, 0, NOFILE);
        }
        t
    }

    /// A table with fds 0, 1, 2 open on `stdio` (an exec session's process).
    pub(crate) fn with_stdio(stdio: [Arc<OpenFile>; 3]) -> Self {
        super::init();
        let mut t = Self::new();
        for f in stdio {
            let _ = t.alloc(f, false, 0, NOFILE);
        }
        t
    }

    /// The child's copy after `fork` (same open files, shared offsets, same flags).
    pub(crate) fn fork(&self) -> Self {
        Self {
            slots: self.slots.clone(),
        }
    }

    /// Closes every descriptor marked close-on-exec (`execve`).
    pub(crate) fn close_on_exec(&mut self) {
        for s in &mut self.slots {
            if s.as_ref().is_some_and(|s| s.cloexec) {
                if let Some(s) = s.take() {
                    closing(&s.file);
                }
            }
        }
        self.trim();
    }

    /// The open descriptors, ascending.
    pub(crate) fn open_fds(&self) -> Vec<i32> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].is_some())
            .map(|i| i as i32)
            .collect()
    }

    /// Closes everything (process exit).
    pub(crate) fn close_all(&mut self) {
        for s in core::mem::take(&mut self.slots).into_iter().flatten() {
            closing(&s.file);
        }
    }

    /// Drops trailing empty slots.
    fn trim(&mut self) {
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
    }

    fn slot(&self, fd: i32) -> Result<&Slot, Errno> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get(i))
            .and_then(Option::as_ref)
            .ok_or(Errno::EBADF)
    }

    fn slot_mut(&mut self, fd: i32) -> Result<&mut Slot, Errno> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)
    }

    /// The open file of `fd` (`EBADF` if not open).
    pub(crate) fn get(&self, fd: i32) -> Result<Arc<OpenFile>, Errno> {
        Ok(self.slot(fd)?.file.clone())
    }

    /// The close-on-exec flag of `fd`.
    pub(crate) fn cloexec(&self, fd: i32) -> Result<bool, Errno> {
        Ok(self.slot(fd)?.cloexec)
    }

    /// Sets the close-on-exec flag of `fd`.
    pub(crate) fn set_cloexec(&mut self, fd: i32, on: bool) -> Result<(), Errno> {
        self.slot_mut(fd)?.cloexec = on;
        Ok(())
    }

    /// Installs `file` at the lowest free descriptor `>= min`; `EMFILE` if none below
    /// `limit` (the process's `RLIMIT_NOFILE`, at most [`NOFILE`]), `ENOMEM` if the kernel
    /// heap cannot afford another descriptor.
    pub(crate) fn alloc(
        &mut self,
        file: Arc<OpenFile>,
        cloexec: bool,
        min: usize,
        limit: usize,
    ) -> Result<i32, Errno> {
        let fd = (min..limit.min(NOFILE))
            .find(|&i| self.slots.get(i).is_none_or(Option::is_none))
            .ok_or(Errno::EMFILE)?;
        crate::linux::alloc_guard::reserve(FD_COST)?;
        if fd >= self.slots.len() {
            self.slots
                .try_reserve(fd + 1 - self.slots.len())
                .map_err(|_| Errno::ENOMEM)?;
            self.slots.resize(fd + 1, None);
        }
        self.slots[fd] = Some(Slot { file, cloexec });
        Ok(fd as i32)
    }

    /// Installs `file` at `fd`, returning what was there: `EBADF` if `fd` is not below
    /// `limit` (the process's `RLIMIT_NOFILE`, at most [`NOFILE`]), as `dup2`.
    pub(crate) fn put(
        &mut self,
        fd: usize,
        file: Arc<OpenFile>,
        cloexec: bool,
        limit: usize,
    ) -> Result<Option<Arc<OpenFile>>, Errno> {
        if fd >= limit.min(NOFILE) {
            return Err(Errno::EBADF);
        }
        crate::linux::alloc_guard::reserve(FD_COST)?;
        if fd >= self.slots.len() {
            self.slots
                .try_reserve(fd + 1 - self.slots.len())
                .map_err(|_| Errno::ENOMEM)?;
            self.slots.resize(fd + 1, None);
        }
        let old = self.slots[fd].replace(Slot { file, cloexec });
        if let Some(s) = &old {
            closing(&s.file);
        }
        Ok(old.map(|s| s.file))
    }

    /// Removes `fd`, returning its file (drop it after releasing the table's lock).
    pub(crate) fn take(&mut self, fd: i32) -> Result<Arc<OpenFile>, Errno> {
        let i = usize::try_from(fd).map_err(|_| Errno::EBADF)?;
        let s = self
            .slots
            .get_mut(i)
            .and_then(Option::take)
            .ok_or(Errno::EBADF)?;
        self.trim();
        closing(&s.file);
        Ok(s.file)
    }

    /// Removes the descriptors in `[first, last]` (or marks them close-on-exec), returning
    /// the removed files.
    pub(crate) fn close_range(
        &mut self,
        first: usize,
        last: usize,
        cloexec: bool,
    ) -> Vec<Arc<OpenFile>> {
        let mut out = Vec::new();
        let end = last.saturating_add(1).min(self.slots.len());
        for s in self.slots.get_mut(first..end).into_iter().flatten() {
            if cloexec {
                if let Some(s) = s {
                    s.cloexec = true;
                }
            } else if let Some(s) = s.take() {
                closing(&s.file);
                out.push(s.file);
            }
        }
        self.trim();
        out
    }
}

// ---------------------------------------------------------------------------------------
// User buffers.

/// A user buffer: one range or an `iovec` array.
pub(crate) struct UserBuf {
    segs: Vec<(u64, usize)>,
    len: usize,
}

impl UserBuf {
    /// `count` bytes at `va` (capped at [`MAX_RW`]).
    pub(crate) fn single(va: u64, count: u64) -> Self {
        let len = usize::try_from(count).unwrap_or(MAX_RW).min(MAX_RW);
        Self {
            segs: alloc::vec![(va, len)],
            len,
        }
    }

    /// The `iovec` array at `va` with `cnt` entries (`EINVAL` above 1024 or if the total
    /// overflows `ssize_t`; the total is capped at [`MAX_RW`] like Linux).
    pub(crate) fn iovec(va: u64, cnt: u64) -> Result<Self, Errno> {
        if cnt > 1024 {
            return Err(Errno::EINVAL);
        }
        let cnt = cnt as usize;
        let mut raw = Vec::new();
        raw.try_reserve_exact(cnt * 16).map_err(|_| Errno::ENOMEM)?;
        raw.resize(cnt * 16, 0);
        copy_from_user(va, &mut raw)?;
        let mut segs = Vec::with_capacity(cnt);
        let mut total: u64 = 0;
        for e in raw.chunks_exact(16) {
            let base = u64::from_le_bytes(e[..8].try_into().map_err(|_| Errno::EINVAL)?);
            let len = u64::from_le_bytes(e[8..].try_into().map_err(|_| Errno::EINVAL)?);
            if len > i64::MAX as u64 {
                return Err(Errno::EINVAL);
            }
            total = total.checked_add(len).ok_or(Errno::EINVAL)?;
            if total > i64::MAX as u64 {
                return Err(Errno::EINVAL);
            }
            let room = (MAX_RW as u64).saturating_sub(total - len);
            let len = len.min(room) as usize;
            if len > 0 {
                segs.push((base, len));
            }
        }
        let len = total.min(MAX_RW as u64) as usize;
        Ok(Self { segs, len })
    }

    /// Total length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The user ranges, in order (empty ones left out).
    pub(crate) fn segments(&self) -> &[(u64, usize)] {
        &self.segs
    }

    /// Calls `f(user address, range in the data)` for the user ranges backing buffer bytes
    /// `[at, at + n)`.
    fn walk(
        &self,
        at: usize,
        n: usize,
        mut f: impl FnMut(u64, core::ops::Range<usize>) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        let mut seg_start = 0;
        let end = at + n;
        for &(va, len) in &self.segs {
            let seg_end = seg_start + len;
            let lo = at.max(seg_start);
            let hi = end.min(seg_end);
            if lo < hi {
                f(va + (lo - seg_start) as u64, lo - at..hi - at)?;
            }
            if seg_end >= end {
                break;
            }
            seg_start = seg_end;
        }
        Ok(())
    }

    /// Copies `data` to buffer bytes `[at, at + data.len())`.
    pub(crate) fn copy_out(&self, at: usize, data: &[u8]) -> Result<(), Errno> {
        self.walk(at, data.len(), |va, r| copy_to_user(va, &data[r]))
    }

    /// Copies buffer bytes `[at, at + out.len())` into `out`.
    pub(crate) fn copy_in(&self, at: usize, out: &mut [u8]) -> Result<(), Errno> {
        self.walk(at, out.len(), |va, r| copy_from_user(va, &mut out[r]))
    }
}

/// A zeroed kernel buffer of `n` bytes (`ENOMEM` if the heap is exhausted).
pub(crate) fn kbuf(n: usize) -> Result<Vec<u8>, Errno> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Errno::ENOMEM)?;
    v.resize(n, 0);
    Ok(v)
}

// ---------------------------------------------------------------------------------------
// Reading and writing kernel buffers.

/// One read into `buf`: at `off` (positional) or at the file offset (advancing it). Pipes
/// and the console block until something is there (unless non-blocking).
pub(crate) fn read_kernel(f: &OpenFile, buf: &mut [u8], off: Option<u64>) -> Result<usize, Errno> {
    if !f.readable() {
        return Err(Errno::EBADF);
    }
    let r = match &f.kind {
        Kind::Node { dir: true, .. } => Err(Errno::EISDIR),
        Kind::Node { h, .. } => {
            let h = *h;
            match off {
                Some(o) => fs::with(|fs| fs.pread(h, buf, o)),
                None => {
                    let mut pos = f.pos.lock();
                    let n = fs::with(|fs| fs.pread(h, buf, *pos))?;
                    *pos += n as u64;
                    Ok(n)
                }
            }
        }
        Kind::PipeRead(p) => {
            if off.is_some() {
                return Err(Errno::ESPIPE);
            }
            p.read(buf, f.nonblock())
        }
        Kind::PipeWrite(_) => Err(Errno::EBADF),
        Kind::Dev { dev, .. } => Ok(dev::read(*dev, buf)),
        Kind::Console { tty, .. } => {
            if off.is_some() {
                return Err(Errno::ESPIPE);
            }
            super::tty::console_read(buf, f.nonblock(), *tty)
        }
        Kind::Object(o) => o.read(f, buf, off),
    };
    r.inspect(|&n| {
        if let (Kind::Node { ino, .. }, true) = (&f.kind, n > 0) {
            super::inotify::on_inode(*ino, super::inotify::inm::IN_ACCESS, false);
        }
    })
}

/// One write of `data`: at `off` (positional), else at the file offset (or the end with
/// `O_APPEND`), advancing it. `atomic`: the whole system call writes at most `PIPE_BUF`.
pub(crate) fn write_kernel(
    f: &OpenFile,
    data: &[u8],
    off: Option<u64>,
    atomic: bool,
) -> Result<usize, Errno> {
    if !f.writable() {
        return Err(Errno::EBADF);
    }
    let r = match &f.kind {
        Kind::Node { dir: true, .. } => Err(Errno::EISDIR),
        Kind::Node { h, ino, .. } => {
            let (h, ino) = (*h, *ino);
            let sealed = |fs: &mut fs::Fs, at: u64| {
                let n = super::memfd::check_write(ino, at, data.len(), || Ok(fs.fstat(h)?.size))?;
                Ok::<_, Errno>(&data[..n])
            };
            match off {
                Some(o) => fs::with(|fs| {
                    let data = sealed(fs, o)?;
                    fs.pwrite(h, data, o)
                }),
                None => {
                    let append = f.flags() & oflag::O_APPEND != 0;
                    let mut pos = f.pos.lock();
                    let (n, end) = fs::with(|fs| {
                        let at = if append { fs.fstat(h)?.size } else { *pos };
                        let data = sealed(fs, at)?;
                        let n = fs.pwrite(h, data, at)?;
                        Ok::<_, Errno>((n, at + n as u64))
                    })?;
                    *pos = end;
                    Ok(n)
                }
            }
        }
        Kind::PipeWrite(p) => {
            if off.is_some() {
                return Err(Errno::ESPIPE);
            }
            p.write(data, f.nonblock(), atomic)
        }
        Kind::PipeRead(_) => Err(Errno::EBADF),
        Kind::Dev { dev, .. } => dev::write(*dev, data.len()),
        Kind::Console { out, .. } => {
            if off.is_some() {
                return Err(Errno::ESPIPE);
            }
            super::tty::console_write(*out, data);
            Ok(data.len())
        }
        Kind::Object(o) => o.write(f, data, off),
    };
    r.inspect(|&n| {
        if let (Kind::Node { ino, .. }, true) = (&f.kind, n > 0) {
            super::inotify::on_inode(*ino, super::inotify::inm::IN_MODIFY, false);
        }
    })
}

/// `read`/`readv`/`pread64`/`preadv` into a user buffer.
pub(crate) fn read_user(f: &OpenFile, ub: &UserBuf, mut off: Option<u64>) -> SysResult {
    let total = ub.len();
    let mut buf = kbuf(total.min(CHUNK))?;
    let mut done = 0;
    loop {
        let want = (total - done).min(CHUNK);
        let n = match read_kernel(f, &mut buf[..want], off) {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        if let Err(e) = ub.copy_out(done, &buf[..n]) {
            if off.is_none() {
                f.rewind(n);
            }
            if done == 0 {
                return Err(e);
            }
            break;
        }
        done += n;
        off = off.map(|o| o + n as u64);
        if f.is_stream() || n < want || done == total || signal::pending() {
            break;
        }
    }
    Ok(done as u64)
}

/// `write`/`writev`/`pwrite64`/`pwritev` from a user buffer.
pub(crate) fn write_user(f: &OpenFile, ub: &UserBuf, mut off: Option<u64>) -> SysResult {
    if !f.writable() {
        return Err(Errno::EBADF);
    }
    let total = ub.len();
    if let Kind::Dev { dev, .. } = f.kind {
        // The data goes nowhere: Linux does not even look at it.
        return dev::write(dev, total).map(|n| n as u64);
    }
    let atomic = total <= PIPE_BUF;
    let mut buf = kbuf(total.min(CHUNK))?;
    let mut done = 0;
    loop {
        let want = (total - done).min(CHUNK);
        if let Err(e) = ub.copy_in(done, &mut buf[..want]) {
            if done == 0 {
                return Err(e);
            }
            break;
        }
        let n = match write_kernel(f, &buf[..want], off, atomic) {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        done += n;
        off = off.map(|o| o + n as u64);
        if n < want || done == total {
            break;
        }
    }
    Ok(done as u64)
}

// ---------------------------------------------------------------------------------------
// stat.

/// A `stat` result with the device number a ramfs `Stat` lacks.
#[derive(Clone, Copy)]
pub(crate) struct KStat {
    /// The ramfs fields.
    pub(crate) st: Stat,
    /// `st_rdev`.
    pub(crate) rdev: u64,
}

impl KStat {
    /// A plain ramfs inode.
    pub(crate) fn plain(st: Stat) -> Self {
        Self { st, rdev: 0 }
    }

    /// A device node's stat: character (or block) device with `dev`'s number.
    pub(crate) fn device(mut st: Stat, dev: Dev) -> Self {
        let kind = if dev.is_block() { S_IFBLK } else { S_IFCHR };
        st.mode = kind | (st.mode & mode::PERM);
        st.size = 0;
        st.blocks = 0;
        Self {
            st,
            rdev: dev::encode_dev(dev.number()),
        }
    }

    /// `st` as a device node if its inode is one.
    pub(crate) fn of(st: Stat) -> Self {
        match dev::node(st.ino) {
            Some(d) => Self::device(st, d),
            None => Self::plain(st),
        }
    }

    /// The x86-64 `struct stat`.
    pub(crate) fn to_linux(self) -> [u8; 144] {
        let mut b = self.st.to_linux();
        b[40..48].copy_from_slice(&self.rdev.to_le_bytes());
        b
    }

    /// `struct statx` (256 bytes) with the basic fields.
    pub(crate) fn to_statx(self) -> [u8; 256] {
        let mut b = [0u8; 256];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        let st = self.st;
        put(0, &0x7ffu32.to_le_bytes()); // STATX_BASIC_STATS
        put(4, &(st.blksize as u32).to_le_bytes());
        put(16, &st.nlink.to_le_bytes());
        put(20, &st.uid.to_le_bytes());
        put(24, &st.gid.to_le_bytes());
        put(28, &(st.mode as u16).to_le_bytes());
        put(32, &st.shown_ino().to_le_bytes());
        put(40, &st.size.to_le_bytes());
        put(48, &st.blocks.to_le_bytes());
        for (off, ns) in [(64, st.atime_ns), (96, st.ctime_ns), (112, st.mtime_ns)] {
            put(off, &(ns / 1_000_000_000).to_le_bytes());
            put(off + 8, &((ns % 1_000_000_000) as u32).to_le_bytes());
        }
        let (maj, min) = decode_dev(self.rdev);
        put(128, &maj.to_le_bytes());
        put(132, &min.to_le_bytes());
        let (maj, min) = decode_dev(st.dev);
        put(136, &maj.to_le_bytes());
        put(140, &min.to_le_bytes());
        b
    }
}

/// (major, minor) of an encoded device number.
pub(crate) fn decode_dev(d: u64) -> (u32, u32) {
    (
        ((d >> 8) & 0xfff) as u32,
        ((d & 0xff) | ((d >> 12) & !0xff)) as u32,
    )
}

/// A stat for an object with no inode (pipes).
pub(crate) fn synthetic_stat(mode: u32, ino: u64, time_ns: u64) -> Stat {
    Stat {
        dev: 0xc,
        ino,
        mode,
        nlink: 1,
        uid: 0,
        gid: 0,
        size: 0,
        blocks: 0,
        blksize: 4096,
        atime_ns: time_ns,
        mtime_ns: time_ns,
        ctime_ns: time_ns,
        host_ino: 0,
    }
}

/// `fstat` of an open file.
pub(crate) fn fstat(f: &OpenFile) -> Result<KStat, Errno> {
    match &f.kind {
        Kind::Node { h, .. } => {
            let h = *h;
            Ok(KStat::plain(fs::with(|fs| fs.fstat(h))?))
        }
        Kind::PipeRead(p) | Kind::PipeWrite(p) => Ok(KStat::plain(synthetic_stat(
            S_IFIFO | 0o600,
            p.id,
            p.ctime_ns,
        ))),
        Kind::Dev { dev, ino } => {
            let ino = *ino;
            let st =
                fs::with(|fs| fs.stat_ino(ino)).unwrap_or_else(|_| synthetic_stat(0o666, ino, 0));
            Ok(KStat::device(st, *dev))
        }
        Kind::Console { dev, .. } => {
            let st = dev::node_ino(*dev)
                .and_then(|ino| fs::with(|fs| fs.stat_ino(ino)).ok())
                .unwrap_or_else(|| synthetic_stat(0o620, 0, 0));
            Ok(KStat::device(st, *dev))
        }
        Kind::Object(o) => Ok(o.stat()),
    }
}
