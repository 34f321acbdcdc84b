//! `eventfd` and `eventfd2`: a 64-bit counter as a file (Linux `fs/eventfd.c`).
//!
//! A write of an 8-byte value adds it (blocking while the sum would exceed `u64::MAX - 1`);
//! a read returns the counter and zeroes it, or, with `EFD_SEMAPHORE`, returns 1 and
//! decrements it; a read of a zero counter blocks. Readable while non-zero, writable while at
//! least 1 can be added.

#![deny(unsafe_code)]

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;

use super::file::{fl, KStat, OpenFile};
use super::object::{anon_ino, anon_stat, open_object, FileObject};
use super::poll::{self, ev};
use crate::fs::ramfs::oflag;
use crate::fs::Errno;
use crate::irq::IrqLock;
use crate::linux::{signal, SysResult};
use crate::sched::wait::WaitQueue;

/// `EFD_SEMAPHORE`.
const EFD_SEMAPHORE: u32 = 1;
/// The largest counter value.
const MAX: u64 = u64::MAX - 1;

/// One eventfd.
pub(crate) struct EventFd {
    count: IrqLock<u64>,
    semaphore: bool,
    wq: WaitQueue,
    ino: u64,
    /// Writes (wake-ups of readers) and reads (of writers), for edge-triggered `epoll`.
    writes: core::sync::atomic::AtomicU64,
    reads: core::sync::atomic::AtomicU64,
}

impl EventFd {
    fn changed(&self) {
        self.wq.wake_all();
        poll::notify();
    }

    /// Takes what a read returns, if the counter is non-zero.
    fn take(&self) -> Option<u64> {
        let mut c = self.count.lock();
        match *c {
            0 => None,
            n if self.semaphore => {
                *c = n - 1;
                Some(1)
            }
            n => {
                *c = 0;
                Some(n)
            }
        }
    }

    /// Adds `v` if it fits.
    fn add(&self, v: u64) -> bool {
        let mut c = self.count.lock();
        if MAX - *c >= v {
            *c += v;
            true
        } else {
            false
        }
    }

    /// Blocks until `ready` holds: `EAGAIN` if non-blocking, `EINTR` on a signal.
    fn wait(&self, f: &OpenFile, ready: impl Fn(u64) -> bool) -> Result<(), Errno> {
        if f.nonblock() {
            return Err(Errno::EAGAIN);
        }
        if signal::pending() {
            return Err(Errno::EINTR);
        }
        self.wq
            .wait_until(|| ready(*self.count.lock()) || signal::pending());
        Ok(())
    }
}

impl FileObject for EventFd {
    fn read(&self, f: &OpenFile, buf: &mut [u8], off: Option<u64>) -> Result<usize, Errno> {
        if off.is_some() {
            return Err(Errno::ESPIPE);
        }
        let out = buf.get_mut(..8).ok_or(Errno::EINVAL)?;
        loop {
            if let Some(v) = self.take() {
                out.copy_from_slice(&v.to_le_bytes());
                self.reads
                    .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
                self.changed();
                return Ok(8);
            }
            self.wait(f, |c| c != 0)?;
        }
    }

    fn write(&self, f: &OpenFile, data: &[u8], off: Option<u64>) -> Result<usize, Errno> {
        if off.is_some() {
            return Err(Errno::ESPIPE);
        }
        let raw: [u8; 8] = data
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or(Errno::EINVAL)?;
        let v = u64::from_le_bytes(raw);
        if v == u64::MAX {
            return Err(Errno::EINVAL);
        }
        loop {
            if self.add(v) {
                self.writes
                    .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
                self.changed();
                return Ok(8);
            }
            self.wait(f, |c| MAX - c >= v)?;
        }
    }

    fn poll(&self, _f: &OpenFile) -> u16 {
        let c = *self.count.lock();
        let mut m = 0;
        if c > 0 {
            m |= ev::POLLIN | ev::POLLRDNORM;
        }
        if c < MAX {
            m |= ev::POLLOUT | ev::POLLWRNORM;
        }
        m
    }

    fn wakeups(&self, events: u32) -> Option<u64> {
        use core::sync::atomic::Ordering::Relaxed;
        let mut n = 0u64;
        if events & u32::from(ev::POLLIN | ev::POLLRDNORM) != 0 {
            n = n.wrapping_add(self.writes.load(Relaxed));
        }
        if events & u32::from(ev::POLLOUT | ev::POLLWRNORM) != 0 {
            n = n.wrapping_add(self.reads.load(Relaxed));
        }
        Some(n)
    }

    fn stat(&self) -> KStat {
        anon_stat(0o600, self.ino)
    }

    fn link_name(&self) -> Vec<u8> {
        b"anon_inode:[eventfd]".to_vec()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl EventFd {
    /// Its counter and `EFD_SEMAPHORE`, as a hand-over record carries them.
    pub(crate) fn carried(&self) -> (u64, bool) {
        (*self.count.lock(), self.semaphore)
    }
}

/// An eventfd made again from a hand-over record: its counter (at most the largest),
/// `EFD_SEMAPHORE`, and its description's status flags.
pub(crate) fn adopted(count: u64, semaphore: bool, status_flags: u32) -> Arc<super::OpenFile> {
    let obj = Arc::new(EventFd {
        count: IrqLock::new(count.min(MAX)),
        semaphore,
        wq: WaitQueue::new(),
        ino: anon_ino(),
        writes: core::sync::atomic::AtomicU64::new(0),
        reads: core::sync::atomic::AtomicU64::new(0),
    });
    open_object(obj, status_flags)
}

/// `eventfd2(initval, flags)` (`eventfd(initval)` is flags 0).
pub(crate) fn sys_eventfd2(initval: u64, flags: u64) -> SysResult {
    let flags = u32::try_from(flags).map_err(|_| Errno::EINVAL)?;
    if flags & !(EFD_SEMAPHORE | fl::O_NONBLOCK | fl::O_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let obj = Arc::new(EventFd {
        count: IrqLock::new(initval & 0xffff_ffff),
        semaphore: flags & EFD_SEMAPHORE != 0,
        wq: WaitQueue::new(),
        ino: anon_ino(),
        writes: core::sync::atomic::AtomicU64::new(0),
        reads: core::sync::atomic::AtomicU64::new(0),
    });
    let file = open_object(obj, oflag::O_RDWR | (flags & fl::O_NONBLOCK));
    super::install(file, flags & fl::O_CLOEXEC != 0)
}
