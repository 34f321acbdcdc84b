//! `clock_nanosleep` on every clock: the wall clocks sleep on the scheduler's sleep list;
//! a CPU-time clock is looked at again no earlier than it could reach the wake-up time.

use super::clock::{Clock, ClockId};
use super::spec;
use crate::fs::Errno;
use crate::linux::misc::sleep_until;
use crate::linux::uaccess::{read_val, write_val};
use crate::linux::SysResult;

/// `TIMER_ABSTIME`.
const TIMER_ABSTIME: u64 = 1;

/// A relative sleep (`nanosleep`, a relative `clock_nanosleep` on a wall clock) that a
/// hand-over freeze interrupted, which goes on with the time it had left, as Linux continues
/// a sleep a stop interrupted: the thread re-issues the call (`nr`, from the same place:
/// `ret_rip` is its return address, a patched site's too) and [`continued`] turns that into
/// `restart_syscall`, which sleeps on until `target` (the kernel's monotonic ns, which a
/// kernel switch keeps) and, interrupted by a signal, writes the time left to `rem` (0:
/// nowhere). A wait with a timeout (`poll`, `ppoll`, `select`, `pselect6`, the `epoll`
/// waits, a relative `FUTEX_WAIT`: [`is_wait`]) goes on the same way: its re-issue runs as it was, with `target` as
/// its deadline instead of one its timeout argument gives ([`with_continued_deadline`]).
/// Carried in the hand-over record (section 27).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RestartBlock {
    pub(crate) target: u64,
    pub(crate) rem: u64,
    /// The call re-issued (0 until [`arm_restart`]).
    pub(crate) nr: u64,
    /// Its return address.
    pub(crate) ret_rip: u64,
}

/// The sleeps a freeze can stop and a restart block continues.
fn continuable(n: u64) -> bool {
    use crate::linux::abi::nr;
    is_wait(n) || matches!(n, nr::NANOSLEEP | nr::CLOCK_NANOSLEEP | nr::RESTART_SYSCALL)
}

/// The waits with a timeout a restart block continues with their deadline.
pub(crate) fn is_wait(n: u64) -> bool {
    use crate::linux::abi::nr;
    [
        nr::POLL,
        nr::PPOLL,
        nr::SELECT,
        nr::PSELECT6,
        nr::EPOLL_WAIT,
        nr::EPOLL_PWAIT,
        nr::EPOLL_PWAIT2,
        nr::FUTEX,
    ]
    .contains(&n)
}

/// Runs wait `nr` (one of [`is_wait`]) until `deadline` (`None`: no timeout) — or, when it
/// is the re-issue of a wait a freeze stopped ([`continued`] kept its block), until the
/// deadline it had then; an `EINTR` with a deadline leaves a block, in case the
/// interruption is a freeze's.
pub(crate) fn with_continued_deadline(
    nr: u64,
    deadline: Option<u64>,
    f: impl FnOnce(Option<u64>) -> SysResult,
) -> SysResult {
    use core::sync::atomic::Ordering;
    let task = crate::linux::task::current_task();
    // One load on every wait: `continued` leaves the flag set only for a re-issue it met.
    let kept = if task.restart_armed.swap(false, Ordering::Relaxed) {
        let mut b = task.restart_block.lock();
        match *b {
            Some(blk) if blk.nr == nr && blk.rem == CONTINUING => {
                *b = None;
                Some(blk.target)
            }
            _ => None,
        }
    } else {
        None
    };
    let deadline = kept.or(deadline);
    let r = f(deadline);
    if matches!(r, Err(Errno::EINTR)) {
        // Named for the wait already: `restart_syscall` never takes it for a sleep's. A
        // wait without a timeout leaves none (an older one must not give it a deadline).
        *task.restart_block.lock() = deadline.map(|d| RestartBlock {
            target: d,
            rem: 0,
            nr,
            ret_rip: 0,
        });
    }
    r
}

/// A wait's block that its re-issue has met ([`continued`], which leaves the task's
/// `restart_armed` set for [`with_continued_deadline`]): `rem`, which no wait has.
const CONTINUING: u64 = u64::MAX;

/// For a sleep about to fail with `e`: if that is `EINTR`, notes where it was to end, in case
/// the interruption turns out to be a freeze's ([`arm_restart`] decides). Called last, so
/// that no other error leaves a block behind.
pub(crate) fn note_restart(e: Errno, target: u64, rem: u64) {
    if e == Errno::EINTR {
        let t = crate::linux::task::current_task();
        *t.restart_block.lock() = Some(RestartBlock {
            target,
            rem,
            nr: 0,
            ret_rip: 0,
        });
    }
}

/// A freeze interrupted call `nr` (return address `ret_rip`), which the thread re-issues:
/// a sleep that left a restart block goes on from it when it does ([`continued`]); anything
/// else is re-issued as it was.
pub(crate) fn arm_restart(task: &crate::linux::task::Task, nr: u64, ret_rip: u64) {
    use core::sync::atomic::Ordering;
    let mut b = task.restart_block.lock();
    match b.as_mut() {
        Some(blk) if continuable(nr) => {
            blk.nr = nr;
            blk.ret_rip = ret_rip;
            task.restart_armed.store(true, Ordering::Relaxed);
        }
        _ => {
            *b = None;
            task.restart_armed.store(false, Ordering::Relaxed);
        }
    }
}

/// Drops a restart block (the call returned to the program).
pub(crate) fn disarm_restart(task: &crate::linux::task::Task) {
    use core::sync::atomic::Ordering;
    task.restart_armed.store(false, Ordering::Relaxed);
    task.restart_block.lock().take();
}

/// The call to run for system call `nr` entered with return address `ret_rip`: the
/// re-issue of a stopped sleep is `restart_syscall`; one load when no sleep is armed.
pub(crate) fn continued(task: &crate::linux::task::Task, nr: u64, ret_rip: u64) -> u64 {
    use core::sync::atomic::Ordering;
    if !task.restart_armed.load(Ordering::Relaxed) {
        return nr;
    }
    task.restart_armed.store(false, Ordering::Relaxed);
    let mut b = task.restart_block.lock();
    match *b {
        // A wait runs as it was, with the block's deadline (`with_continued_deadline`).
        Some(ref mut blk) if blk.nr == nr && blk.ret_rip == ret_rip && is_wait(nr) => {
            blk.rem = CONTINUING;
            task.restart_armed.store(true, Ordering::Relaxed);
            nr
        }
        // `restart_syscall` takes the block.
        Some(blk) if blk.nr == nr && blk.ret_rip == ret_rip => {
            crate::linux::abi::nr::RESTART_SYSCALL
        }
        // Something else ran first (a handler): the sleep is not continued.
        _ => {
            *b = None;
            nr
        }
    }
}

/// `restart_syscall()`: continues the sleep of this thread's restart block until its target;
/// `EINTR` (as on Linux) when there is none.
pub(crate) fn sys_restart_syscall() -> SysResult {
    // A wait's block is its own (`with_continued_deadline`), never a sleep to go on with.
    let Some(b) = crate::linux::task::current_task()
        .restart_block
        .lock()
        .take()
        .filter(|b| !is_wait(b.nr))
    else {
        return Err(Errno::EINTR);
    };
    match sleep_until(b.target) {
        Ok(()) => Ok(0),
        Err(e) => {
            if b.rem != 0 {
                let left = b.target.saturating_sub(crate::time::now_ns());
                write_val(b.rem, &spec::ns_timespec(left))?;
            }
            note_restart(e, b.target, b.rem);
            Err(e)
        }
    }
}

/// The shortest step of a sleep on a CPU-time clock.
const CPU_STEP_NS: u64 = 1_000_000;

/// `clock_nanosleep(clk, flags, req, rem)`. `rem` is written for an interrupted relative
/// sleep only. Sleeping on the calling thread's own CPU clock is `EINVAL`, as on Linux.
pub(crate) fn sys_clock_nanosleep(clk: u64, flags: u64, req: u64, rem: u64) -> SysResult {
    let id = ClockId::decode_for_timer(clk as i32)?;
    if let ClockId::ThreadCpu { tid, .. } = id {
        if tid == 0 || tid == crate::linux::task::current_task().tid {
            return Err(Errno::EINVAL);
        }
    }
    let clock = Clock::bind(id)?;
    let ns = spec::timespec_ns(read_val(req)?)?;
    let absolute = flags & TIMER_ABSTIME != 0;
    let start = clock.now().ok_or(Errno::EINVAL)?;
    let target = if absolute {
        clock.absolute_to_base(ns)
    } else {
        start.saturating_add(ns)
    };
    let r = if clock.is_cpu() {
        sleep_cpu(&clock, target)
    } else {
        sleep_until(target)
    };
    match r {
        Ok(()) => Ok(0),
        Err(e) => {
            if rem != 0 && !absolute {
                let left = target.saturating_sub(clock.now().unwrap_or(target));
                write_val(rem, &spec::ns_timespec(left))?;
            }
            // An absolute sleep is re-issued as it was; a CPU clock's target is not the
            // monotonic clock's.
            if !absolute && !clock.is_cpu() {
                note_restart(e, target, rem);
            }
            Err(e)
        }
    }
}

/// Sleeps until CPU clock `clock` reaches `target`, or a signal (`EINTR`).
fn sleep_cpu(clock: &Clock, target: u64) -> Result<(), Errno> {
    let vcpus = u64::from(crate::boot::nr_vcpus().max(1));
    loop {
        let Some(now) = clock.now() else {
            return Err(Errno::EINVAL);
        };
        if now >= target {
            return Ok(());
        }
        let step = ((target - now) / vcpus).max(CPU_STEP_NS);
        sleep_until(crate::time::now_ns().saturating_add(step))?;
    }
}
