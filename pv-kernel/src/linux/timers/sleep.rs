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
