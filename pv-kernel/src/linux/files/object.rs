//! File objects: the open-file kinds that are not ramfs nodes, pipes, memory devices or the
//! console — sockets, `epoll`, `eventfd`, `timerfd`, `signalfd`, `inotify`, pseudo files —
//! each in its own module, behind one trait (Linux's `file_operations`).
//!
//! An object is installed as [`Kind::Object`](super::file::Kind::Object); the generic
//! descriptor calls (`read`, `write`, `poll`, `ioctl`, `fstat`, `lseek`, `close`) reach it
//! through [`FileObject`]. Calls that only make sense for one kind (`accept`,
//! `epoll_ctl`, ...) find their object with [`object_of`] and downcast it with
//! [`FileObject::as_any`].
//!
//! Blocking: an object that blocks (a socket read with nothing queued) waits with no lock
//! held and honours [`OpenFile::nonblock`] (`EAGAIN`) and pending signals (`EINTR`, or
//! `ERESTARTSYS`-like restart where Linux restarts); every state change that can make an
//! object ready calls [`super::poll::notify`] so `poll`/`select`/`epoll` waiters re-check.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;

use super::file::{synthetic_stat, KStat, Kind, OpenFile};
use crate::fs::Errno;
use crate::linux::SysResult;

/// An anonymous object's inode numbers (`st_ino`), unique per object.
static NEXT_INO: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1 << 32);

/// A fresh inode number for an object with no filesystem inode.
pub(crate) fn anon_ino() -> u64 {
    NEXT_INO.fetch_add(1, core::sync::atomic::Ordering::Relaxed)
}

/// The behaviour of one kind of file object. Every method but [`FileObject::poll`],
/// [`FileObject::stat`], [`FileObject::link_name`] and [`FileObject::as_any`] has the
/// Linux default of an object that does not support the operation.
pub(crate) trait FileObject: Send + Sync + 'static {
    /// One read into `buf` (at `off` for positional reads, which stream objects refuse with
    /// `ESPIPE`). `f` is the open file description (flags: [`OpenFile::nonblock`]).
    fn read(&self, f: &OpenFile, buf: &mut [u8], off: Option<u64>) -> Result<usize, Errno> {
        let _ = (f, buf, off);
        Err(Errno::EINVAL)
    }

    /// One write of `data`.
    fn write(&self, f: &OpenFile, data: &[u8], off: Option<u64>) -> Result<usize, Errno> {
        let _ = (f, data, off);
        Err(Errno::EINVAL)
    }

    /// The `poll` events it has now (`POLLHUP`/`POLLERR` included whether asked or not).
    fn poll(&self, f: &OpenFile) -> u16;

    /// An `ioctl` other than the generic ones (`FIONBIO`, `FIOCLEX`, ... handled before).
    fn ioctl(&self, f: &OpenFile, cmd: u64, arg: u64) -> SysResult {
        let _ = (f, cmd, arg);
        Err(Errno::ENOTTY)
    }

    /// Bytes ready to read (`FIONREAD`); `None`: `ENOTTY`.
    fn available(&self) -> Option<usize> {
        None
    }

    /// `lseek`: stream objects are `ESPIPE`.
    fn lseek(&self, f: &OpenFile, off: i64, whence: u32) -> SysResult {
        let _ = (f, off, whence);
        Err(Errno::ESPIPE)
    }

    /// A counter that changes with every wake-up that may bring one of `events` (`EPOLL*`
    /// bits), for edge-triggered `epoll`; `None` (the default): the object keeps none, and
    /// the global count of [`super::poll::notify`] calls stands in (an edge may then be
    /// reported twice, never missed).
    fn wakeups(&self, events: u32) -> Option<u64> {
        let _ = events;
        None
    }

    /// `fstat`.
    fn stat(&self) -> KStat;

    /// True if it has no file offset (a read returns what is there, no retry loop).
    fn is_stream(&self) -> bool {
        true
    }

    /// What `/proc/PID/fd/N` links to (`socket:[INO]`, `anon_inode:[eventfd]`, ...).
    fn link_name(&self) -> Vec<u8>;

    /// The object itself, for calls that downcast to their own kind.
    fn as_any(&self) -> &dyn Any;

    /// Lines of its own that `/proc/PID/fdinfo/N` shows after the generic ones (a pidfd's
    /// `Pid:`); none by default.
    fn fdinfo(&self) -> Vec<u8> {
        Vec::new()
    }

    /// The page-cache object holding its bytes, if they live in one (a `memfd`): `mmap`
    /// maps it — `MAP_SHARED` the object's own frames, `MAP_PRIVATE` them copy-on-write
    /// (`linux/memory.rs`). `None`: `mmap` copies what `read` gives (or `ENODEV`).
    fn pages(&self) -> Option<Arc<crate::fs::pagecache::PageObject>> {
        None
    }
}

/// A stat for an anonymous object: `mode` (type and permission bits), inode `ino`.
pub(crate) fn anon_stat(mode: u32, ino: u64) -> KStat {
    KStat::plain(synthetic_stat(mode, ino, crate::time::realtime_ns()))
}

/// A new open file description for `obj` with `flags` (access mode and status flags).
pub(crate) fn open_object(obj: Arc<dyn FileObject>, flags: u32) -> Arc<OpenFile> {
    OpenFile::new(Kind::Object(obj), flags)
}

/// The object behind `f`, if it is one.
pub(crate) fn object_of(f: &OpenFile) -> Option<&Arc<dyn FileObject>> {
    match &f.kind {
        Kind::Object(o) => Some(o),
        _ => None,
    }
}

/// The object behind `f` as a `T` (`None` if it is something else).
pub(crate) fn downcast<T: FileObject>(f: &OpenFile) -> Option<&T> {
    object_of(f).and_then(|o| o.as_any().downcast_ref::<T>())
}
