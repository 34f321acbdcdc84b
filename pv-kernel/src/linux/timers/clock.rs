//! The clocks a timer or a sleep can run on: the wall clocks (`CLOCK_REALTIME`,
//! `CLOCK_MONOTONIC`, `CLOCK_BOOTTIME` and their alarm variants — all guest time here, the
//! realtime clock being the host's wall clock at boot plus guest time, never set) and the
//! CPU-time clocks of a process or a thread (`linux/cputime.rs`).
//!
//! A timer keeps its expiry in its clock's *base*: guest time since boot for every wall clock
//! (an absolute `CLOCK_REALTIME` time is converted once, when the timer is set), CPU
//! nanoseconds for a CPU clock.

use alloc::sync::{Arc, Weak};

use crate::fs::Errno;
use crate::linux::cputime::{process_usage, thread_usage};
use crate::linux::task::{self, Process, Task};

/// Clock ids (`<linux/time.h>`).
pub(crate) mod id {
    pub(crate) const REALTIME: i32 = 0;
    pub(crate) const MONOTONIC: i32 = 1;
    pub(crate) const PROCESS_CPUTIME: i32 = 2;
    pub(crate) const THREAD_CPUTIME: i32 = 3;
    pub(crate) const MONOTONIC_RAW: i32 = 4;
    pub(crate) const REALTIME_COARSE: i32 = 5;
    pub(crate) const MONOTONIC_COARSE: i32 = 6;
    pub(crate) const BOOTTIME: i32 = 7;
    pub(crate) const REALTIME_ALARM: i32 = 8;
    pub(crate) const BOOTTIME_ALARM: i32 = 9;
    pub(crate) const TAI: i32 = 11;
}

/// What a CPU clock counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CpuKind {
    /// User plus system time (`CPUCLOCK_PROF`, `CPUCLOCK_SCHED`, `ITIMER_PROF`).
    Total,
    /// User time only (`CPUCLOCK_VIRT`, `ITIMER_VIRTUAL`).
    User,
}

/// A clock id decoded, before its process or thread is looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClockId {
    /// `CLOCK_REALTIME` (and its alarm, coarse and TAI variants).
    Realtime,
    /// `CLOCK_MONOTONIC`, `CLOCK_BOOTTIME` and their variants: guest time.
    Monotonic,
    /// A process's CPU time (`pid` 0: the caller's).
    ProcessCpu { pid: i32, kind: CpuKind },
    /// A thread's CPU time (`tid` 0: the calling thread's).
    ThreadCpu { tid: i32, kind: CpuKind },
}

impl ClockId {
    /// Decodes `clk` as `clock_gettime` does: the fixed ids and the dynamic CPU clock ids of
    /// `clock_getcpuclockid`/`pthread_getcpuclockid` (`(~pid << 3) | thread << 2 | kind`).
    pub(crate) fn decode(clk: i32) -> Result<Self, Errno> {
        Ok(match clk {
            id::REALTIME | id::REALTIME_COARSE | id::REALTIME_ALARM | id::TAI => Self::Realtime,
            id::MONOTONIC
            | id::MONOTONIC_RAW
            | id::MONOTONIC_COARSE
            | id::BOOTTIME
            | id::BOOTTIME_ALARM => Self::Monotonic,
            id::PROCESS_CPUTIME => Self::ProcessCpu {
                pid: 0,
                kind: CpuKind::Total,
            },
            id::THREAD_CPUTIME => Self::ThreadCpu {
                tid: 0,
                kind: CpuKind::Total,
            },
            c if c < 0 => {
                let pid = !(c >> 3);
                let kind = match c & 3 {
                    1 => CpuKind::User,
                    3 => return Err(Errno::EINVAL),
                    _ => CpuKind::Total,
                };
                if c & 4 != 0 {
                    Self::ThreadCpu { tid: pid, kind }
                } else {
                    Self::ProcessCpu { pid, kind }
                }
            }
            _ => return Err(Errno::EINVAL),
        })
    }

    /// Decodes `clk` for a POSIX timer or a sleep: the coarse and raw clocks have none
    /// (`EOPNOTSUPP`, as Linux, whose `k_clock` for them has no `timer_create`/`nsleep`),
    /// nor have the alarm clocks (no wake-up device: Linux without an RTC says the same;
    /// timerfds accept them).
    pub(crate) fn decode_for_timer(clk: i32) -> Result<Self, Errno> {
        match clk {
            id::MONOTONIC_RAW
            | id::REALTIME_COARSE
            | id::MONOTONIC_COARSE
            | id::REALTIME_ALARM
            | id::BOOTTIME_ALARM => Err(Errno::EOPNOTSUPP),
            c => Self::decode(c),
        }
    }
}

/// A clock bound to what it measures.
#[derive(Clone)]
pub(crate) enum Clock {
    /// A wall clock (base: guest time); `realtime` if absolute times are wall-clock times.
    Wall { realtime: bool },
    /// A process's CPU time.
    ProcessCpu(Weak<Process>, CpuKind),
    /// A thread's CPU time.
    ThreadCpu(Weak<Task>, CpuKind),
}

/// The realtime clock's offset from guest time (the host's wall clock at boot).
fn realtime_offset() -> u64 {
    crate::time::realtime_ns().saturating_sub(crate::time::now_ns())
}

impl Clock {
    /// Binds `id` to the caller's process or thread, or the one it names (`EINVAL` if none).
    pub(crate) fn bind(id: ClockId) -> Result<Self, Errno> {
        Ok(match id {
            ClockId::Realtime => Self::Wall { realtime: true },
            ClockId::Monotonic => Self::Wall { realtime: false },
            ClockId::ProcessCpu { pid, kind } => {
                let p = if pid == 0 {
                    task::current_process()
                } else {
                    task::find_process(pid).ok_or(Errno::EINVAL)?
                };
                Self::ProcessCpu(Arc::downgrade(&p), kind)
            }
            ClockId::ThreadCpu { tid, kind } => {
                let t = if tid == 0 {
                    task::current_task()
                } else {
                    task::find_task(tid).ok_or(Errno::EINVAL)?
                };
                Self::ThreadCpu(Arc::downgrade(&t), kind)
            }
        })
    }

    /// True for a CPU-time clock.
    pub(crate) fn is_cpu(&self) -> bool {
        !matches!(self, Self::Wall { .. })
    }

    /// The clock now, in its base; `None` once its process or thread is gone.
    pub(crate) fn now(&self) -> Option<u64> {
        let pick = |u: crate::linux::cputime::Usage, k: CpuKind| match k {
            CpuKind::Total => u.cpu_ns(),
            CpuKind::User => u.user_ns,
        };
        match self {
            Self::Wall { .. } => Some(crate::time::now_ns()),
            Self::ProcessCpu(p, k) => {
                let p = p.upgrade()?;
                (!p.zombie.load(core::sync::atomic::Ordering::Acquire))
                    .then(|| pick(process_usage(&p), *k))
            }
            Self::ThreadCpu(t, k) => {
                let t = t.upgrade()?;
                let alive = t.process.threads.lock().iter().any(|x| Arc::ptr_eq(x, &t));
                alive.then(|| pick(thread_usage(&t), *k))
            }
        }
    }

    /// An absolute time of this clock (as a program gives it) in the clock's base.
    pub(crate) fn absolute_to_base(&self, t: u64) -> u64 {
        match self {
            Self::Wall { realtime: true } => t.saturating_sub(realtime_offset()),
            _ => t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_ids_decode_like_linux() {
        assert_eq!(ClockId::decode(0), Ok(ClockId::Realtime));
        assert_eq!(ClockId::decode(7), Ok(ClockId::Monotonic));
        assert_eq!(ClockId::decode(10), Err(Errno::EINVAL));
        assert_eq!(ClockId::decode(12), Err(Errno::EINVAL));
        for c in [
            id::MONOTONIC_RAW,
            id::REALTIME_COARSE,
            id::MONOTONIC_COARSE,
            id::REALTIME_ALARM,
            id::BOOTTIME_ALARM,
        ] {
            assert_eq!(
                ClockId::decode_for_timer(c),
                Err(Errno::EOPNOTSUPP),
                "clock {c}"
            );
        }
        assert_eq!(ClockId::decode_for_timer(id::TAI), Ok(ClockId::Realtime));
        // clock_getcpuclockid(42): (~42 << 3) | CPUCLOCK_SCHED (2).
        let c = (!42i32 << 3) | 2;
        assert_eq!(
            ClockId::decode(c),
            Ok(ClockId::ProcessCpu {
                pid: 42,
                kind: CpuKind::Total
            })
        );
        // pthread_getcpuclockid of tid 7: thread bit (4) and SCHED.
        let c = (!7i32 << 3) | 4 | 2;
        assert_eq!(
            ClockId::decode(c),
            Ok(ClockId::ThreadCpu {
                tid: 7,
                kind: CpuKind::Total
            })
        );
        assert_eq!(
            ClockId::decode((!1i32 << 3) | 1),
            Ok(ClockId::ProcessCpu {
                pid: 1,
                kind: CpuKind::User
            })
        );
        assert_eq!(ClockId::decode((!1i32 << 3) | 3), Err(Errno::EINVAL));
    }

    #[test]
    fn clock_ids_match_the_host_linux() {
        assert_eq!(id::REALTIME, libc::CLOCK_REALTIME);
        assert_eq!(id::MONOTONIC, libc::CLOCK_MONOTONIC);
        assert_eq!(id::PROCESS_CPUTIME, libc::CLOCK_PROCESS_CPUTIME_ID);
        assert_eq!(id::THREAD_CPUTIME, libc::CLOCK_THREAD_CPUTIME_ID);
        assert_eq!(id::BOOTTIME, libc::CLOCK_BOOTTIME);
        assert_eq!(id::BOOTTIME_ALARM, libc::CLOCK_BOOTTIME_ALARM);
        assert_eq!(id::TAI, libc::CLOCK_TAI);
    }
}
