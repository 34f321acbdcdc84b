//! `alarm`, `setitimer`, `getitimer`: the three interval timers of a process
//! (`ITIMER_REAL` on the realtime clock sending `SIGALRM`, `ITIMER_VIRTUAL` on its user CPU
//! time sending `SIGVTALRM`, `ITIMER_PROF` on its user + system CPU time sending `SIGPROF`).
//! They survive `execve` and are not inherited by `fork`, as on Linux.

use alloc::sync::Arc;

use super::clock::{Clock, CpuKind};
use super::spec::{self, Setting};
use super::timer::{Event, Timer};
use crate::fs::Errno;
use crate::linux::signal::sig;
use crate::linux::task::{self, Process};
use crate::linux::uaccess::{read_val, write_val};
use crate::linux::SysResult;

/// `ITIMER_REAL`.
const ITIMER_REAL: usize = 0;

/// The timer `which` of `p`, created on first use.
fn itimer(p: &Arc<Process>, which: usize) -> Arc<Timer> {
    let mut slots = p.timers.itimers.lock();
    slots[which]
        .get_or_insert_with(|| {
            let weak = Arc::downgrade(p);
            let (clock, signo) = match which {
                ITIMER_REAL => (Clock::Wall { realtime: true }, sig::SIGALRM),
                1 => (
                    Clock::ProcessCpu(weak.clone(), CpuKind::User),
                    sig::SIGVTALRM,
                ),
                _ => (
                    Clock::ProcessCpu(weak.clone(), CpuKind::Total),
                    sig::SIGPROF,
                ),
            };
            Timer::new(
                clock,
                Event::Itimer {
                    process: weak,
                    signo,
                },
            )
        })
        .clone()
}

/// Decodes `which`.
fn which(w: u64) -> Result<usize, Errno> {
    match w {
        0..=2 => Ok(w as usize),
        _ => Err(Errno::EINVAL),
    }
}

/// `getitimer(which, value)`.
pub(crate) fn sys_getitimer(w: u64, value: u64) -> SysResult {
    let which = which(w)?;
    let p = task::current_process();
    let cur = itimer(&p, which).get();
    write_val(value, &spec::to_itimerval(cur))?;
    Ok(0)
}

/// `setitimer(which, new, old)` (a null `new` disarms, as Linux).
pub(crate) fn sys_setitimer(w: u64, new: u64, old: u64) -> SysResult {
    let which = which(w)?;
    let s = if new == 0 {
        Setting::default()
    } else {
        spec::itimerval(read_val(new)?)?
    };
    let p = task::current_process();
    let prev = itimer(&p, which).set(s, false);
    if old != 0 {
        write_val(old, &spec::to_itimerval(prev))?;
    }
    Ok(0)
}

/// `alarm(seconds)`: `ITIMER_REAL`, one-shot; returns the seconds the previous alarm had
/// left.
pub(crate) fn sys_alarm(seconds: u64) -> SysResult {
    let s = Setting {
        value: (seconds & 0xffff_ffff).saturating_mul(spec::NSEC),
        interval: 0,
    };
    let p = task::current_process();
    let prev = itimer(&p, ITIMER_REAL).set(s, false);
    Ok(spec::alarm_seconds(prev.value))
}
