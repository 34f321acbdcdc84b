//! `timerfd_create`, `timerfd_settime`, `timerfd_gettime`: a timer as a file (Linux
//! `fs/timerfd.c`). A read returns the number of expirations since the last read (8 bytes)
//! and zeroes it, blocking while there are none; the file is readable (`poll`) while the
//! count is non-zero.
//!
//! `TFD_TIMER_CANCEL_ON_SET` is accepted: the guest's realtime clock is never set, so a read
//! never fails with `ECANCELED`.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;

use super::clock::{id, Clock};
use super::spec;
use super::timer::{Event, Timer};
use crate::fs::ramfs::oflag;
use crate::fs::Errno;
use crate::linux::files::file::{fl, KStat, OpenFile};
use crate::linux::files::object::{anon_ino, anon_stat, downcast, open_object, FileObject};
use crate::linux::files::poll::ev;
use crate::linux::uaccess::{read_val, write_val};
use crate::linux::{signal, SysResult};
use crate::sched::wait::WaitQueue;

/// `TFD_TIMER_ABSTIME`.
const TFD_TIMER_ABSTIME: u64 = 1;
/// `TFD_TIMER_CANCEL_ON_SET`.
const TFD_TIMER_CANCEL_ON_SET: u64 = 2;

/// One timerfd.
pub(crate) struct TimerFd {
    timer: Arc<Timer>,
    ino: u64,
}

impl TimerFd {
    /// The wait queue its expiries wake.
    fn wq(&self) -> &WaitQueue {
        match &self.timer.event {
            Event::Fd(wq) => wq,
            _ => unreachable!("a timerfd's timer has a wait queue"),
        }
    }
}

impl FileObject for TimerFd {
    fn read(&self, f: &OpenFile, buf: &mut [u8], off: Option<u64>) -> Result<usize, Errno> {
        if off.is_some() {
            return Err(Errno::ESPIPE);
        }
        let out = buf.get_mut(..8).ok_or(Errno::EINVAL)?;
        loop {
            let n = self.timer.take_ticks();
            if n != 0 {
                out.copy_from_slice(&n.to_le_bytes());
                return Ok(8);
            }
            if f.nonblock() {
                return Err(Errno::EAGAIN);
            }
            if signal::pending() {
                return Err(Errno::EINTR);
            }
            self.wq()
                .wait_until(|| self.timer.ticks() != 0 || signal::pending());
        }
    }

    fn poll(&self, _f: &OpenFile) -> u16 {
        if self.timer.ticks() != 0 {
            ev::POLLIN | ev::POLLRDNORM
        } else {
            0
        }
    }

    fn available(&self) -> Option<usize> {
        Some(if self.timer.ticks() != 0 { 8 } else { 0 })
    }

    fn stat(&self) -> KStat {
        anon_stat(0o600, self.ino)
    }

    fn link_name(&self) -> Vec<u8> {
        b"anon_inode:[timerfd]".to_vec()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl TimerFd {
    /// Its timer as a hand-over record carries it: realtime (else monotonic), the next
    /// expiry (an absolute time of the guest clock; 0: disarmed), the interval and the
    /// expirations not read yet.
    pub(crate) fn carried(&self) -> (bool, u64, u64, u64) {
        let realtime = matches!(self.timer.clock, Clock::Wall { realtime: true });
        let (next, interval, _) = self.timer.carried();
        (realtime, next, interval, self.timer.ticks())
    }
}

/// A timerfd made again from a hand-over record, disarmed, with its expirations not read
/// yet and its description's status flags; its timer, to arm ([`super::timer::Timer::adopted`])
/// once the programs run.
pub(crate) fn adopted(
    realtime: bool,
    ticks: u64,
    status_flags: u32,
) -> (Arc<OpenFile>, Arc<Timer>) {
    let timer = Timer::new(Clock::Wall { realtime }, Event::Fd(WaitQueue::new()));
    timer.set_ticks(ticks);
    let obj = Arc::new(TimerFd {
        timer: timer.clone(),
        ino: anon_ino(),
    });
    (open_object(obj, status_flags), timer)
}

/// `timerfd_create(clockid, flags)`.
pub(crate) fn sys_timerfd_create(clk: u64, flags: u64) -> SysResult {
    let flags = u32::try_from(flags).map_err(|_| Errno::EINVAL)?;
    if flags & !(fl::O_NONBLOCK | fl::O_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let realtime = match clk as i32 {
        id::REALTIME | id::REALTIME_ALARM => true,
        id::MONOTONIC | id::BOOTTIME | id::BOOTTIME_ALARM => false,
        _ => return Err(Errno::EINVAL),
    };
    crate::linux::alloc_guard::reserve(core::mem::size_of::<TimerFd>() + 128)?;
    let obj = Arc::new(TimerFd {
        timer: Timer::new(Clock::Wall { realtime }, Event::Fd(WaitQueue::new())),
        ino: anon_ino(),
    });
    let file = open_object(obj, oflag::O_RDWR | (flags & fl::O_NONBLOCK));
    crate::linux::files::install(file, flags & fl::O_CLOEXEC != 0)
}

/// The timer of timerfd `fd` (`EINVAL` if `fd` is not a timerfd).
fn timer_of(fd: u64) -> Result<Arc<Timer>, Errno> {
    let f = crate::linux::files::fd_file(fd as i32)?;
    downcast::<TimerFd>(&f)
        .map(|t| t.timer.clone())
        .ok_or(Errno::EINVAL)
}

/// `timerfd_settime(fd, flags, new, old)`.
pub(crate) fn sys_timerfd_settime(fd: u64, flags: u64, new: u64, old: u64) -> SysResult {
    if flags & !(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET) != 0 {
        return Err(Errno::EINVAL);
    }
    let s = spec::itimerspec(read_val(new)?)?;
    let t = timer_of(fd)?;
    let prev = t.set(s, flags & TFD_TIMER_ABSTIME != 0);
    if old != 0 {
        write_val(old, &spec::to_itimerspec(prev))?;
    }
    Ok(0)
}

/// `timerfd_gettime(fd, cur)`.
pub(crate) fn sys_timerfd_gettime(fd: u64, cur: u64) -> SysResult {
    let t = timer_of(fd)?;
    write_val(cur, &spec::to_itimerspec(t.get()))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_match_the_host_linux() {
        assert_eq!(TFD_TIMER_ABSTIME as i32, libc::TFD_TIMER_ABSTIME);
        assert_eq!(
            TFD_TIMER_CANCEL_ON_SET as i32,
            libc::TFD_TIMER_CANCEL_ON_SET
        );
        assert_eq!(fl::O_NONBLOCK as i32, libc::TFD_NONBLOCK);
        assert_eq!(fl::O_CLOEXEC as i32, libc::TFD_CLOEXEC);
    }
}
