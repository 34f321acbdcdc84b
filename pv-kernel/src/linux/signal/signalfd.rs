//! `signalfd` and `signalfd4`: pending signals as a file (Linux `fs/signalfd.c`). A read
//! takes pending signals of the mask — the calling thread's first, then its process's
//! (process-wide pending: `kill`, `sigqueue`, timers) — and
//! returns one 128-byte `signalfd_siginfo` per signal; it blocks while none is pending. The
//! file is readable (`poll`) while one is. Every raised signal wakes readers and pollers
//! while a signalfd exists.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::info::{code, Detail, SigInfo};
use super::set::SigSet;
use super::{pending_for_process, sig, take_for_process, task, Task};
use crate::fs::ramfs::oflag;
use crate::fs::Errno;
use crate::linux::files::file::{fl, KStat, OpenFile};
use crate::linux::files::object::{anon_ino, anon_stat, downcast, open_object, FileObject};
use crate::linux::files::poll::{self, ev};
use crate::linux::uaccess::read_val;
use crate::linux::SysResult;
use crate::sched::wait::WaitQueue;

/// Size of a `struct signalfd_siginfo`.
pub(crate) const RECORD_SIZE: usize = 128;

/// Live signalfds (raising a signal wakes readers only while there is one).
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Blocked signalfd readers.
static READERS: WaitQueue = WaitQueue::new();

/// A signal was raised somewhere: wake signalfd readers and pollers, if any signalfd exists.
pub(crate) fn signal_raised() {
    if LIVE.load(Ordering::Acquire) != 0 {
        READERS.wake_all();
        poll::notify();
    }
}

/// One signalfd.
pub(crate) struct SignalFd {
    /// The signals it reads (never SIGKILL or SIGSTOP).
    mask: AtomicU64,
    ino: u64,
}

impl Drop for SignalFd {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SignalFd {
    fn mask(&self) -> SigSet {
        SigSet::from_bits(self.mask.load(Ordering::Acquire))
    }

    /// True if a signal of the mask is pending for `t` or its process.
    fn ready(&self, t: &Task) -> bool {
        pending_for_process(t, self.mask())
    }

    /// Takes a pending signal of the mask: the thread's own first, then its process's.
    fn take_one(&self, t: &Arc<Task>) -> Option<SigInfo> {
        take_for_process(t, self.mask())
    }
}

impl FileObject for SignalFd {
    fn read(&self, f: &OpenFile, buf: &mut [u8], off: Option<u64>) -> Result<usize, Errno> {
        if off.is_some() {
            return Err(Errno::ESPIPE);
        }
        if buf.len() < RECORD_SIZE {
            return Err(Errno::EINVAL);
        }
        let t = task::current_task();
        let mut n = 0;
        while n + RECORD_SIZE <= buf.len() {
            match self.take_one(&t) {
                Some(info) => {
                    buf[n..n + RECORD_SIZE].copy_from_slice(&record(&info));
                    n += RECORD_SIZE;
                }
                None if n > 0 => break,
                None => {
                    if f.nonblock() {
                        return Err(Errno::EAGAIN);
                    }
                    if t.signal_pending() {
                        return Err(Errno::EINTR);
                    }
                    READERS.wait_until(|| self.ready(&t) || t.signal_pending());
                }
            }
        }
        Ok(n)
    }

    fn poll(&self, _f: &OpenFile) -> u16 {
        match task::try_current_task() {
            Some(t) if self.ready(&t) => ev::POLLIN | ev::POLLRDNORM,
            _ => 0,
        }
    }

    fn stat(&self) -> KStat {
        anon_stat(0o600, self.ino)
    }

    fn link_name(&self) -> Vec<u8> {
        b"anon_inode:[signalfd]".to_vec()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The `struct signalfd_siginfo` of `info` (Linux's `signalfd_copyinfo`: the fields of the
/// `siginfo_t` layout its code and signal select).
pub(crate) fn record(info: &SigInfo) -> [u8; RECORD_SIZE] {
    let mut b = [0u8; RECORD_SIZE];
    let put32 = |b: &mut [u8; RECORD_SIZE], o: usize, v: u32| {
        b[o..o + 4].copy_from_slice(&v.to_le_bytes());
    };
    let put64 = |b: &mut [u8; RECORD_SIZE], o: usize, v: u64| {
        b[o..o + 8].copy_from_slice(&v.to_le_bytes());
    };
    put32(&mut b, 0, info.signo);
    put32(&mut b, 8, info.code as u32);
    match info.detail {
        Detail::Sender { pid, uid } => {
            put32(&mut b, 12, pid as u32);
            put32(&mut b, 16, uid);
        }
        Detail::Queued { errno, rest } => {
            put32(&mut b, 4, errno as u32);
            let w32 =
                |o: usize| u32::from_le_bytes([rest[o], rest[o + 1], rest[o + 2], rest[o + 3]]);
            let mut v = [0u8; 8];
            v.copy_from_slice(&rest[8..16]);
            let value = u64::from_le_bytes(v);
            if info.code == code::SI_TIMER {
                put32(&mut b, 24, w32(0));
                put32(&mut b, 32, w32(4));
                put32(&mut b, 44, value as u32);
                put64(&mut b, 48, value);
            } else {
                put32(&mut b, 12, w32(0));
                put32(&mut b, 16, w32(4));
                if info.code < 0 {
                    put32(&mut b, 44, value as u32);
                    put64(&mut b, 48, value);
                }
            }
        }
        Detail::Child {
            pid,
            uid,
            status,
            utime,
            stime,
        } => {
            put32(&mut b, 12, pid as u32);
            put32(&mut b, 16, uid);
            put32(&mut b, 40, status as u32);
            put64(&mut b, 56, utime as u64);
            put64(&mut b, 64, stime as u64);
        }
        Detail::Fault(f) => put64(&mut b, 72, f.addr),
        Detail::Timer {
            timerid,
            overrun,
            value,
            ..
        } => {
            put32(&mut b, 24, timerid as u32);
            put32(&mut b, 32, overrun as u32);
            put32(&mut b, 44, value as u32);
            put64(&mut b, 48, value);
        }
    }
    b
}

impl SignalFd {
    /// Its mask, as a hand-over record carries it.
    pub(crate) fn carried(&self) -> u64 {
        self.mask.load(Ordering::Acquire)
    }
}

/// A signalfd made again from a hand-over record: its mask (`SIGKILL` and `SIGSTOP` left
/// out) and its description's status flags.
pub(crate) fn adopted(mask: u64, status_flags: u32) -> Arc<crate::linux::files::OpenFile> {
    LIVE.fetch_add(1, Ordering::AcqRel);
    let m = SigSet::from_bits(mask)
        .minus(SigSet::of(sig::SIGKILL).with(sig::SIGSTOP))
        .bits();
    let obj = Arc::new(SignalFd {
        mask: AtomicU64::new(m),
        ino: anon_ino(),
    });
    open_object(obj, status_flags)
}

/// `signalfd4(fd, mask, sizemask, flags)` (`signalfd` is flags 0): a new signalfd for
/// `fd == -1`, else a new mask for signalfd `fd`.
pub(crate) fn sys_signalfd4(fd: u64, mask: u64, size: u64, flags: u64) -> SysResult {
    let flags = u32::try_from(flags).map_err(|_| Errno::EINVAL)?;
    if size != 8 || flags & !(fl::O_NONBLOCK | fl::O_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let m = SigSet::from_bits(read_val(mask)?)
        .minus(SigSet::of(sig::SIGKILL).with(sig::SIGSTOP))
        .bits();
    let fd = fd as i32;
    if fd != -1 {
        let f = crate::linux::files::fd_file(fd)?;
        let s = downcast::<SignalFd>(&f).ok_or(Errno::EINVAL)?;
        s.mask.store(m, Ordering::Release);
        // The new mask may make it readable.
        READERS.wake_all();
        poll::notify();
        return Ok(fd as u64);
    }
    crate::linux::alloc_guard::reserve(core::mem::size_of::<SignalFd>() + 128)?;
    LIVE.fetch_add(1, Ordering::AcqRel);
    let obj = Arc::new(SignalFd {
        mask: AtomicU64::new(m),
        ino: anon_ino(),
    });
    let file = open_object(obj, oflag::O_RDWR | (flags & fl::O_NONBLOCK));
    crate::linux::files::install(file, flags & fl::O_CLOEXEC != 0)
}

#[cfg(test)]
mod tests {
    use super::super::info::Fault;
    use super::*;
    use core::mem::offset_of;

    fn u32_at(b: &[u8; RECORD_SIZE], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8; RECORD_SIZE], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn records_have_the_host_linux_layout() {
        use libc::signalfd_siginfo as S;
        assert_eq!(core::mem::size_of::<S>(), RECORD_SIZE);
        assert_eq!(offset_of!(S, ssi_pid), 12);
        assert_eq!(offset_of!(S, ssi_uid), 16);
        assert_eq!(offset_of!(S, ssi_tid), 24);
        assert_eq!(offset_of!(S, ssi_overrun), 32);
        assert_eq!(offset_of!(S, ssi_status), 40);
        assert_eq!(offset_of!(S, ssi_int), 44);
        assert_eq!(offset_of!(S, ssi_ptr), 48);
        assert_eq!(offset_of!(S, ssi_utime), 56);
        assert_eq!(offset_of!(S, ssi_stime), 64);
        assert_eq!(offset_of!(S, ssi_addr), 72);
    }

    #[test]
    fn records_carry_the_fields_of_each_kind() {
        let k = record(&SigInfo::from_process(sig::SIGUSR1, code::SI_USER, 42));
        assert_eq!((u32_at(&k, 0), u32_at(&k, 8), u32_at(&k, 12)), (10, 0, 42));

        let mut raw = [0u8; 128];
        raw[8..12].copy_from_slice(&code::SI_QUEUE.to_le_bytes());
        raw[16..20].copy_from_slice(&77i32.to_le_bytes());
        raw[24..32].copy_from_slice(&0x1_0000_0005u64.to_le_bytes());
        let q = record(&SigInfo::queued(40, &raw));
        assert_eq!((u32_at(&q, 0), u32_at(&q, 8) as i32), (40, code::SI_QUEUE));
        assert_eq!((u32_at(&q, 12), u32_at(&q, 44)), (77, 5));
        assert_eq!(u64_at(&q, 48), 0x1_0000_0005);

        let mut t = SigInfo::timer(sig::SIGALRM, 2, 9, 1);
        if let Detail::Timer { overrun, .. } = &mut t.detail {
            *overrun = 6;
        }
        let r = record(&t);
        assert_eq!(u32_at(&r, 8) as i32, code::SI_TIMER);
        assert_eq!((u32_at(&r, 24), u32_at(&r, 32), u32_at(&r, 44)), (2, 6, 9));
        assert_eq!(u32_at(&r, 12), 0, "no pid for a timer");

        let c = record(&SigInfo {
            signo: sig::SIGCHLD,
            code: code::CLD_EXITED,
            detail: Detail::Child {
                pid: 5,
                uid: 0,
                status: 3,
                utime: 1,
                stime: 2,
            },
        });
        assert_eq!((u32_at(&c, 12), u32_at(&c, 40)), (5, 3));
        assert_eq!((u64_at(&c, 56), u64_at(&c, 64)), (1, 2));

        let f = record(&SigInfo::fault(
            sig::SIGSEGV,
            code::SEGV_MAPERR,
            Fault {
                addr: 0x1000,
                ..Fault::default()
            },
        ));
        assert_eq!(u64_at(&f, 72), 0x1000);
    }
}
