//! POSIX timers: `timer_create`, `timer_settime`, `timer_gettime`, `timer_getoverrun`,
//! `timer_delete`. A process's timers are numbered from 0; they are deleted by `execve`
//! and at exit, and not inherited by `fork`, as on Linux.

use alloc::sync::Arc;

use super::clock::{Clock, ClockId};
use super::spec;
use super::timer::{Event, Target, Timer};
use crate::fs::Errno;
use crate::linux::signal::sig;
use crate::linux::task;
use crate::linux::uaccess::{copy_from_user, read_val, write_val};
use crate::linux::SysResult;

/// `sigev_notify` values.
mod notify {
    pub(super) const SIGEV_SIGNAL: i32 = 0;
    pub(super) const SIGEV_NONE: i32 = 1;
    pub(super) const SIGEV_THREAD: i32 = 2;
    pub(super) const SIGEV_THREAD_ID: i32 = 4;
}

/// `TIMER_ABSTIME`.
pub(crate) const TIMER_ABSTIME: u64 = 1;

/// Most POSIX timers per process (Linux bounds them by memory only).
pub(crate) const MAX_TIMERS: usize = 4096;

/// A decoded `struct sigevent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SigEvent {
    /// `sigev_value`.
    pub(crate) value: u64,
    /// `sigev_signo`.
    pub(crate) signo: i32,
    /// `sigev_notify`.
    pub(crate) notify: i32,
    /// `sigev_notify_thread_id`.
    pub(crate) tid: i32,
}

impl SigEvent {
    /// Decodes the 64-byte x86-64 `struct sigevent`.
    pub(crate) fn from_bytes(b: &[u8; 64]) -> Self {
        let i32_at = |o: usize| i32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let mut v = [0u8; 8];
        v.copy_from_slice(&b[0..8]);
        Self {
            value: u64::from_le_bytes(v),
            signo: i32_at(8),
            notify: i32_at(12),
            tid: i32_at(16),
        }
    }

    /// Checks it like Linux's `good_sigevent`: `Ok(Some(signo))` to signal, `Ok(None)` for
    /// `SIGEV_NONE`.
    pub(crate) fn signal(&self) -> Result<Option<u32>, Errno> {
        let kind = self.notify & !notify::SIGEV_THREAD_ID;
        if self.notify & notify::SIGEV_THREAD_ID != 0 && kind != notify::SIGEV_SIGNAL {
            return Err(Errno::EINVAL);
        }
        match kind {
            notify::SIGEV_NONE => Ok(None),
            notify::SIGEV_SIGNAL | notify::SIGEV_THREAD => {
                let s = u32::try_from(self.signo).map_err(|_| Errno::EINVAL)?;
                if s == 0 || s > sig::NSIG {
                    return Err(Errno::EINVAL);
                }
                Ok(Some(s))
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// True for `SIGEV_THREAD_ID`.
    pub(crate) fn targets_thread(&self) -> bool {
        self.notify & notify::SIGEV_THREAD_ID != 0
    }
}

/// `timer_create(clockid, sevp, timerid)`.
pub(crate) fn sys_timer_create(clk: u64, sevp: u64, out: u64) -> SysResult {
    let id = ClockId::decode_for_timer(clk as i32)?;
    let clock = Clock::bind(id)?;
    let t = task::current_task();
    let p = t.process.clone();
    let ev = if sevp == 0 {
        None
    } else {
        let mut b = [0u8; 64];
        copy_from_user(sevp, &mut b)?;
        Some(SigEvent::from_bytes(&b))
    };
    let mut timers = p.timers.posix.lock();
    if timers.map.len() >= MAX_TIMERS {
        return Err(Errno::EAGAIN);
    }
    crate::linux::alloc_guard::reserve(core::mem::size_of::<Timer>() + 64)
        .map_err(|_| Errno::EAGAIN)?;
    let timerid = timers.free_id();
    let event = match ev {
        // No sigevent: SIGALRM to the process, with the timer id as the value.
        None => Event::Posix {
            target: Target::Process(Arc::downgrade(&p)),
            signo: sig::SIGALRM,
            timerid,
            value: timerid as u64,
        },
        Some(ev) => match ev.signal()? {
            None => Event::None,
            Some(signo) => {
                let target = if ev.targets_thread() {
                    let th = task::find_task(ev.tid)
                        .filter(|x| Arc::ptr_eq(&x.process, &p))
                        .ok_or(Errno::EINVAL)?;
                    Target::Thread(Arc::downgrade(&th))
                } else {
                    Target::Process(Arc::downgrade(&p))
                };
                Event::Posix {
                    target,
                    signo,
                    timerid,
                    value: ev.value,
                }
            }
        },
    };
    write_val(out, &timerid)?;
    timers.insert(timerid, Timer::new(clock, event))?;
    Ok(0)
}

/// The caller's timer `id`.
fn lookup(id: u64) -> Result<Arc<Timer>, Errno> {
    let id = i32::try_from(id as i64).map_err(|_| Errno::EINVAL)?;
    task::current_process()
        .timers
        .posix
        .lock()
        .map
        .get(&id)
        .cloned()
        .ok_or(Errno::EINVAL)
}

/// `timer_settime(timerid, flags, new, old)`.
pub(crate) fn sys_timer_settime(id: u64, flags: u64, new: u64, old: u64) -> SysResult {
    let t = lookup(id)?;
    let s = spec::itimerspec(read_val(new)?)?;
    let prev = t.set(s, flags & TIMER_ABSTIME != 0);
    if old != 0 {
        write_val(old, &spec::to_itimerspec(prev))?;
    }
    Ok(0)
}

/// `timer_gettime(timerid, value)`.
pub(crate) fn sys_timer_gettime(id: u64, value: u64) -> SysResult {
    let t = lookup(id)?;
    write_val(value, &spec::to_itimerspec(t.get()))?;
    Ok(0)
}

/// `timer_getoverrun(timerid)`.
pub(crate) fn sys_timer_getoverrun(id: u64) -> SysResult {
    Ok(lookup(id)?.last_overrun() as u64)
}

/// `timer_delete(timerid)`.
pub(crate) fn sys_timer_delete(id: u64) -> SysResult {
    let id = i32::try_from(id as i64).map_err(|_| Errno::EINVAL)?;
    let p = task::current_process();
    let t = p.timers.posix.lock().map.remove(&id).ok_or(Errno::EINVAL)?;
    t.disarm();
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(notify: i32, signo: i32, tid: i32) -> SigEvent {
        let mut b = [0u8; 64];
        b[0..8].copy_from_slice(&0x1234_5678_9abc_def0u64.to_le_bytes());
        b[8..12].copy_from_slice(&signo.to_le_bytes());
        b[12..16].copy_from_slice(&notify.to_le_bytes());
        b[16..20].copy_from_slice(&tid.to_le_bytes());
        SigEvent::from_bytes(&b)
    }

    #[test]
    fn sigevents_are_checked_like_linux() {
        let e = ev(libc::SIGEV_SIGNAL, 10, 0);
        assert_eq!(e.value, 0x1234_5678_9abc_def0);
        assert_eq!(e.signal(), Ok(Some(10)));
        assert!(!e.targets_thread());
        assert_eq!(ev(libc::SIGEV_NONE, 0, 0).signal(), Ok(None));
        assert_eq!(ev(libc::SIGEV_SIGNAL, 0, 0).signal(), Err(Errno::EINVAL));
        assert_eq!(ev(libc::SIGEV_SIGNAL, 65, 0).signal(), Err(Errno::EINVAL));
        assert_eq!(ev(libc::SIGEV_SIGNAL, -1, 0).signal(), Err(Errno::EINVAL));
        let t = ev(libc::SIGEV_THREAD_ID, 34, 99);
        assert_eq!(
            (t.signal(), t.targets_thread(), t.tid),
            (Ok(Some(34)), true, 99)
        );
        assert_eq!(
            ev(libc::SIGEV_THREAD_ID | libc::SIGEV_NONE, 34, 99).signal(),
            Err(Errno::EINVAL)
        );
        assert_eq!(ev(7, 10, 0).signal(), Err(Errno::EINVAL));
    }

    #[test]
    fn notify_values_match_the_host_linux() {
        assert_eq!(notify::SIGEV_SIGNAL, libc::SIGEV_SIGNAL);
        assert_eq!(notify::SIGEV_NONE, libc::SIGEV_NONE);
        assert_eq!(notify::SIGEV_THREAD, libc::SIGEV_THREAD);
        assert_eq!(notify::SIGEV_THREAD_ID, libc::SIGEV_THREAD_ID);
        assert_eq!(TIMER_ABSTIME as i32, libc::TIMER_ABSTIME);
    }
}
