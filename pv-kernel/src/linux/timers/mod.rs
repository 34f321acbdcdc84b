//! Timers: `alarm` and the interval timers (`setitimer`/`getitimer`), POSIX timers
//! (`timer_create` and friends, on the wall clocks and the CPU-time clocks), timerfds, and
//! `clock_nanosleep` on every clock.
//!
//! * [`spec`] the pure arithmetic (encodings, moving past missed expirations), unit-tested,
//! * [`clock`] the clocks and clock ids,
//! * [`state`] a timer's state and transitions (expiry, overruns, re-arming), unit-tested,
//! * [`timer`] one timer and what its expiry does (a signal through `linux/signal`, or a
//!   timerfd's count),
//! * [`daemon`] the kernel thread that sleeps until the next expiry (on the scheduler's
//!   sleep list) and fires timers,
//! * [`itimer`], [`posix`], [`timerfd`], [`sleep`] the system calls,
//! * [`carry`] the timers across a kernel hand-over (record section 16).
//!
//! A process's timers live in [`ProcessTimers`] (a field of `Process`): interval timers
//! survive `execve`, POSIX timers do not, and both go at exit; `fork` starts with none.

pub(crate) mod carry;
pub(crate) mod clock;
mod daemon;
pub(crate) mod itimer;
pub(crate) mod posix;
pub(crate) mod sleep;
pub(crate) mod spec;
pub(crate) mod state;
pub(crate) mod timer;
pub(crate) mod timerfd;

use alloc::collections::BTreeMap;
use alloc::sync::Arc;

use super::abi::nr;
use super::task::Process;
use super::{Errno, SysResult};
use crate::irq::IrqLock;
use timer::Timer;

/// A process's POSIX timers by id.
#[derive(Default)]
pub(crate) struct PosixTimers {
    /// The timers.
    pub(crate) map: BTreeMap<i32, Arc<Timer>>,
    /// Where to look for the next free id.
    next: i32,
}

impl PosixTimers {
    /// The lowest free id at or after the last one handed out (wrapping to 0), as Linux.
    fn free_id(&mut self) -> i32 {
        let mut id = self.next;
        while self.map.contains_key(&id) {
            id = if id == i32::MAX { 0 } else { id + 1 };
        }
        self.next = if id == i32::MAX { 0 } else { id + 1 };
        id
    }

    fn insert(&mut self, id: i32, t: Arc<Timer>) -> Result<(), Errno> {
        self.map.insert(id, t);
        Ok(())
    }
}

/// A process's timers.
pub(crate) struct ProcessTimers {
    /// `ITIMER_REAL`, `ITIMER_VIRTUAL`, `ITIMER_PROF`, created on first use.
    pub(crate) itimers: IrqLock<[Option<Arc<Timer>>; 3]>,
    /// POSIX timers.
    pub(crate) posix: IrqLock<PosixTimers>,
}

impl Default for ProcessTimers {
    fn default() -> Self {
        Self {
            itimers: IrqLock::new([None, None, None]),
            posix: IrqLock::new(PosixTimers::default()),
        }
    }
}

/// `execve`: the process's POSIX timers are deleted (interval timers stay).
pub(crate) fn process_execed(p: &Process) {
    let timers = core::mem::take(&mut *p.timers.posix.lock());
    for t in timers.map.values() {
        t.disarm();
    }
}

/// Exit: every timer of the process is deleted.
pub(crate) fn process_exited(p: &Process) {
    process_execed(p);
    let itimers = core::mem::take(&mut *p.timers.itimers.lock());
    for t in itimers.iter().flatten() {
        t.disarm();
    }
}

/// A queued `SI_TIMER` signal of `p`'s timer `timerid`, armed as `key`, is being taken:
/// its `si_overrun` (see [`Timer::taken`]); 0 if the timer is gone.
pub(crate) fn signal_taken(p: &Process, timerid: i32, key: u64) -> i32 {
    let t = p.timers.posix.lock().map.get(&timerid).cloned();
    t.map_or(0, |t| t.taken(key))
}

/// Handles system call `n` if it is a timer call; `None` otherwise.
pub(crate) fn syscall(n: u64, a: [u64; 6]) -> Option<SysResult> {
    Some(match n {
        nr::ALARM => itimer::sys_alarm(a[0]),
        nr::GETITIMER => itimer::sys_getitimer(a[0], a[1]),
        nr::SETITIMER => itimer::sys_setitimer(a[0], a[1], a[2]),
        nr::TIMER_CREATE => posix::sys_timer_create(a[0], a[1], a[2]),
        nr::TIMER_SETTIME => posix::sys_timer_settime(a[0], a[1], a[2], a[3]),
        nr::TIMER_GETTIME => posix::sys_timer_gettime(a[0], a[1]),
        nr::TIMER_GETOVERRUN => posix::sys_timer_getoverrun(a[0]),
        nr::TIMER_DELETE => posix::sys_timer_delete(a[0]),
        nr::TIMERFD_CREATE => timerfd::sys_timerfd_create(a[0], a[1]),
        nr::TIMERFD_SETTIME => timerfd::sys_timerfd_settime(a[0], a[1], a[2], a[3]),
        nr::TIMERFD_GETTIME => timerfd::sys_timerfd_gettime(a[0], a[1]),
        nr::CLOCK_NANOSLEEP => sleep::sys_clock_nanosleep(a[0], a[1], a[2], a[3]),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_timer_ids_are_the_lowest_free_after_the_last() {
        let mut t = PosixTimers::default();
        assert_eq!(t.free_id(), 0);
        assert_eq!(t.free_id(), 1);
        t.next = i32::MAX;
        assert_eq!(t.free_id(), i32::MAX);
        assert_eq!(t.free_id(), 0, "wraps");
    }
}
