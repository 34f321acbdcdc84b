//! CPU-time accounting of guest threads and processes: what `getrusage`, `wait4`'s rusage,
//! `times`, `SIGCHLD`'s `si_utime`/`si_stime` and the CPU-time clocks report.
//!
//! A guest thread's CPU time is the time its kernel thread spent on a vCPU (the scheduler
//! counts it; while user code runs the vCPU waits for the user sandbox and does nothing
//! else). Of that, *user* time is the time the program's code ran in its user sandbox: the
//! user stub counts the TSC ticks from entering user code to the signal that brings it back
//! (`user_stat::USER_TICKS`), and the kernel clamps that to how long the hand-off took
//! (`Space::run`). The rest is *system* time, the kernel working for it: system calls,
//! faults, signal delivery and the hand-offs themselves. Time spent blocked (sleeping,
//! waiting) counts as neither.
//!
//! A process adds up its live threads, the threads that have ended, and — for
//! `RUSAGE_CHILDREN` — the children it has reaped (each with its own reaped children, as
//! Linux).

#![deny(unsafe_code)]

use alloc::sync::{Arc, Weak};
use core::sync::atomic::{AtomicU64, Ordering};

use super::task::{Process, Task};
use crate::irq::IrqLock;

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`: the `AT_CLKTCK` that `exec.rs` passes).
pub(crate) const CLK_TCK: u64 = 100;

/// Nanoseconds as clock ticks.
pub(crate) fn ticks(ns: u64) -> i64 {
    (ns / (1_000_000_000 / CLK_TCK)) as i64
}

/// Resource usage (the parts of `struct rusage` pvmux measures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// User CPU time.
    pub(crate) user_ns: u64,
    /// System CPU time.
    pub(crate) system_ns: u64,
    /// Largest resident set seen, in KiB.
    pub(crate) maxrss_kib: u64,
    /// Page faults served without I/O.
    pub(crate) minflt: u64,
}

impl Usage {
    /// Adds `o` (times and faults add up; the resident set is the larger one).
    pub(crate) fn add(&mut self, o: &Usage) {
        self.user_ns += o.user_ns;
        self.system_ns += o.system_ns;
        self.maxrss_kib = self.maxrss_kib.max(o.maxrss_kib);
        self.minflt += o.minflt;
    }

    /// User plus system time.
    pub(crate) fn cpu_ns(&self) -> u64 {
        self.user_ns + self.system_ns
    }

    /// The x86-64 `struct rusage` (144 bytes).
    pub(crate) fn to_rusage(self) -> [u8; 144] {
        let mut b = [0u8; 144];
        let tv = |ns: u64| {
            let (s, us) = (ns / 1_000_000_000, (ns % 1_000_000_000) / 1000);
            (s as i64, us as i64)
        };
        let (s, us) = tv(self.user_ns);
        b[0..8].copy_from_slice(&s.to_le_bytes());
        b[8..16].copy_from_slice(&us.to_le_bytes());
        let (s, us) = tv(self.system_ns);
        b[16..24].copy_from_slice(&s.to_le_bytes());
        b[24..32].copy_from_slice(&us.to_le_bytes());
        b[32..40].copy_from_slice(&(self.maxrss_kib as i64).to_le_bytes());
        b[64..72].copy_from_slice(&(self.minflt as i64).to_le_bytes());
        b
    }
}

/// Per thread: its user time, and the CPU time it had used under the kernel that handed it
/// over (its kernel thread here counts from zero).
#[derive(Default)]
pub(crate) struct TaskTimes {
    user_ns: AtomicU64,
    adopted_cpu_ns: AtomicU64,
}

impl TaskTimes {
    /// Adds `ns` of user time (one run of user code). Only the task's own thread adds (after
    /// each run; others only read), so a load and a store do, without a locked add.
    pub(crate) fn add_user(&self, ns: u64) {
        let now = self.user_ns.load(Ordering::Relaxed);
        self.user_ns.store(now.wrapping_add(ns), Ordering::Relaxed);
    }

    /// Starts from what an adopted thread had used (hand-over record section 28).
    pub(crate) fn adopt(&self, u: &Usage) {
        self.user_ns.store(u.user_ns, Ordering::Relaxed);
        self.adopted_cpu_ns
            .store(u.user_ns.saturating_add(u.system_ns), Ordering::Relaxed);
    }
}

/// Per process: what ended threads and reaped children used, the largest resident set and
/// the faults.
pub(crate) struct ProcessTimes {
    /// Threads that have ended.
    ended: IrqLock<Usage>,
    /// Children reaped by `wait4`/`waitid` (with everything they reaped).
    children: IrqLock<Usage>,
    /// Largest resident set seen, in KiB.
    maxrss_kib: AtomicU64,
    /// Page faults served.
    minflt: AtomicU64,
}

impl Default for ProcessTimes {
    fn default() -> Self {
        Self {
            ended: IrqLock::new(Usage::default()),
            children: IrqLock::new(Usage::default()),
            maxrss_kib: AtomicU64::new(0),
            minflt: AtomicU64::new(0),
        }
    }
}

impl ProcessTimes {
    /// Notes a served page fault and the resident set after it (`pages` 4 KiB pages).
    pub(crate) fn fault(&self, pages: usize) {
        self.minflt.fetch_add(1, Ordering::Relaxed);
        self.note_rss(pages);
    }

    /// Notes the resident set (`pages` 4 KiB pages).
    pub(crate) fn note_rss(&self, pages: usize) {
        self.maxrss_kib
            .fetch_max(pages as u64 * 4, Ordering::Relaxed);
    }

    /// Adds what a reaped child used (its [`ProcessTimes::total`]).
    pub(crate) fn child_reaped(&self, u: &Usage) {
        self.children.lock().add(u);
    }

    /// Starts from what an adopted process's ended threads and reaped children had used
    /// (hand-over record section 28).
    pub(crate) fn adopt(&self, ended: &Usage, children: &Usage) {
        *self.ended.lock() = Usage {
            maxrss_kib: 0,
            minflt: 0,
            ..*ended
        };
        *self.children.lock() = *children;
        self.maxrss_kib
            .fetch_max(ended.maxrss_kib, Ordering::Relaxed);
        self.minflt.fetch_add(ended.minflt, Ordering::Relaxed);
    }

    /// What its ended threads used, with its largest resident set and its faults (the
    /// hand-over record's `ENDED` entry).
    pub(crate) fn ended_usage(&self) -> Usage {
        self.own_ended()
    }

    /// What the reaped children used (`RUSAGE_CHILDREN`).
    pub(crate) fn children(&self) -> Usage {
        *self.children.lock()
    }

    /// The process's own usage once all its threads have ended, plus its reaped children:
    /// what its parent's `wait4` reports and adds to its own `RUSAGE_CHILDREN`.
    pub(crate) fn total(&self) -> Usage {
        let mut u = self.own_ended();
        u.add(&self.children());
        u
    }

    fn own_ended(&self) -> Usage {
        let mut u = *self.ended.lock();
        u.maxrss_kib = self.maxrss_kib.load(Ordering::Relaxed);
        u.minflt = self.minflt.load(Ordering::Relaxed);
        u
    }
}

/// The kernel thread running `t`, if it still exists.
fn thread_of(t: &Task) -> Option<Arc<crate::sched::thread::Thread>> {
    t.thread.get().and_then(Weak::upgrade)
}

/// What thread `t` has used so far (`RUSAGE_THREAD`, `CLOCK_THREAD_CPUTIME_ID`).
pub(crate) fn thread_usage(t: &Task) -> Usage {
    let cpu = thread_of(t)
        .map_or(0, |th| th.cpu_time_ns())
        .saturating_add(t.times.adopted_cpu_ns.load(Ordering::Relaxed));
    let user = t.times.user_ns.load(Ordering::Relaxed).min(cpu);
    Usage {
        user_ns: user,
        system_ns: cpu - user,
        ..Usage::default()
    }
}

/// What `p` itself has used so far: its ended threads and its live ones (`RUSAGE_SELF`,
/// `CLOCK_PROCESS_CPUTIME_ID`).
pub(crate) fn process_usage(p: &Process) -> Usage {
    let mut u = p.times.own_ended();
    for t in p.threads.lock().iter() {
        u.add(&thread_usage(t));
    }
    if let Some(space) = p.space() {
        p.times.note_rss(space.mm.lock().resident_pages());
        u.maxrss_kib = p.times.maxrss_kib.load(Ordering::Relaxed);
    }
    u
}

/// Folds what the ending thread `t` used into its process (called by the thread itself
/// before it leaves its process's thread list).
pub(crate) fn thread_ended(t: &Task) {
    let u = thread_usage(t);
    t.process.times.ended.lock().add(&u);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_hundredths_of_a_second_rounded_down() {
        assert_eq!(ticks(0), 0);
        assert_eq!(ticks(9_999_999), 0);
        assert_eq!(ticks(10_000_000), 1);
        assert_eq!(ticks(1_234_567_890), 123);
        assert_eq!(ticks(u64::MAX), (u64::MAX / 10_000_000) as i64);
        // What sysconf(_SC_CLK_TCK) says on the host too.
        assert_eq!(CLK_TCK, 100);
    }

    #[test]
    fn rusage_layout_matches_the_host_linux() {
        use core::mem::offset_of;
        assert_eq!(core::mem::size_of::<libc::rusage>(), 144);
        let u = Usage {
            user_ns: 3_250_000_999,
            system_ns: 1_000_500,
            maxrss_kib: 4096,
            minflt: 77,
        };
        let b = u.to_rusage();
        let at = |o: usize| i64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let utime = offset_of!(libc::rusage, ru_utime);
        let stime = offset_of!(libc::rusage, ru_stime);
        assert_eq!(
            (at(utime), at(utime + 8)),
            (3, 250_000),
            "s, µs rounded down"
        );
        assert_eq!((at(stime), at(stime + 8)), (0, 1_000));
        assert_eq!(at(offset_of!(libc::rusage, ru_maxrss)), 4096);
        assert_eq!(at(offset_of!(libc::rusage, ru_minflt)), 77);
        assert_eq!(at(offset_of!(libc::rusage, ru_majflt)), 0);
        assert_eq!(at(offset_of!(libc::rusage, ru_nvcsw)), 0);
    }

    #[test]
    fn usages_add_up_and_the_resident_set_is_the_largest() {
        let mut a = Usage {
            user_ns: 5,
            system_ns: 7,
            maxrss_kib: 100,
            minflt: 1,
        };
        a.add(&Usage {
            user_ns: 1,
            system_ns: 2,
            maxrss_kib: 50,
            minflt: 3,
        });
        assert_eq!(
            a,
            Usage {
                user_ns: 6,
                system_ns: 9,
                maxrss_kib: 100,
                minflt: 4
            }
        );
        assert_eq!(a.cpu_ns(), 15);
    }

    #[test]
    fn a_process_counts_its_ended_threads_and_reaped_children() {
        let t = ProcessTimes::default();
        t.fault(10);
        t.fault(5);
        t.note_rss(3);
        t.ended.lock().add(&Usage {
            user_ns: 100,
            system_ns: 10,
            ..Usage::default()
        });
        let child = Usage {
            user_ns: 1000,
            system_ns: 1,
            maxrss_kib: 400,
            minflt: 9,
        };
        t.child_reaped(&child);
        assert_eq!(t.children(), child);
        assert_eq!(
            t.total(),
            Usage {
                user_ns: 1100,
                system_ns: 11,
                maxrss_kib: 400,
                minflt: 11
            },
            "own faults plus the child's; the larger resident set"
        );
        assert_eq!(t.own_ended().maxrss_kib, 40, "10 pages at most");
    }
}
