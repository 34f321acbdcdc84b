//! Resource limits (`getrlimit`, `setrlimit`, `prlimit64`): a table per process, inherited
//! by `fork` and kept by `execve`, as Linux, and the kernel's own ceilings above them
//! (Linux's sysctls).
//!
//! What each limit bounds here (docs/SECURITY.md, "The guest kernel survives any program —
//! processes"):
//! * `RLIMIT_NOFILE`: descriptors of a process (`EMFILE`; `dup2`/`dup3` beyond it `EBADF`,
//!   `F_DUPFD` `EINVAL`, `poll` with more entries `EINVAL`); its hard limit cannot exceed
//!   [`NR_OPEN`] (`EPERM`, Linux's `fs.nr_open`);
//! * `RLIMIT_NPROC`: tasks (processes and threads) of the user — every guest program runs
//!   as uid 0, so all of the tenant's — `fork`/`clone` beyond it fail with `EAGAIN`. Linux
//!   exempts root; here it would make the limit meaningless, so uid 0 is not exempt. The
//!   kernel's own ceiling ([`crate::linux::task::max_tasks`]) applies whatever the limit;
//! * `RLIMIT_SIGPENDING`: queued signals of the user (`EAGAIN` for `sigqueue` of a
//!   real-time signal beyond it), under the ceiling [`SIGPENDING_MAX`];
//! * `RLIMIT_AS`: bytes mapped by a process (`mmap`, `mremap`, `brk` fail with `ENOMEM`);
//! * `RLIMIT_DATA`: the heap (`brk` beyond it fails);
//! * the others are kept and reported (a program reads back what it set) but bound nothing
//!   in this kernel: `RLIMIT_CORE` (no core is ever written), `RLIMIT_STACK` (the stack is
//!   mapped at `execve`), `RLIMIT_CPU`, `RLIMIT_FSIZE`, `RLIMIT_MEMLOCK`, `RLIMIT_RSS`,
//!   `RLIMIT_LOCKS`, `RLIMIT_MSGQUEUE`, `RLIMIT_NICE`, `RLIMIT_RTPRIO`, `RLIMIT_RTTIME`.
//!
//! As on Linux, raising a hard limit needs `CAP_SYS_RESOURCE` (`EPERM`), which root holds
//! unless it was dropped ([`super::caps`]); the kernel's ceilings bound it either way.

use super::task::{self, Process};
use super::uaccess::{read_val, write_val};
use super::{Errno, SysResult};

/// "No limit".
pub(crate) const RLIM_INFINITY: u64 = u64::MAX;
/// Number of resources.
pub(crate) const NLIMITS: usize = 16;
/// The largest `RLIMIT_NOFILE` hard limit (Linux's `fs.nr_open`, smaller here: every
/// descriptor costs kernel heap).
pub(crate) const NR_OPEN: u64 = 4096;
/// The most signals queued for the tenant's user whatever `RLIMIT_SIGPENDING` says.
pub(crate) const SIGPENDING_MAX: u64 = 4096;

/// Resource numbers (x86-64 Linux); the table has them all, some bound nothing here.
#[allow(dead_code)]
pub(crate) mod res {
    pub(crate) const CPU: usize = 0;
    pub(crate) const FSIZE: usize = 1;
    pub(crate) const DATA: usize = 2;
    pub(crate) const STACK: usize = 3;
    pub(crate) const CORE: usize = 4;
    pub(crate) const RSS: usize = 5;
    pub(crate) const NPROC: usize = 6;
    pub(crate) const NOFILE: usize = 7;
    pub(crate) const MEMLOCK: usize = 8;
    pub(crate) const AS: usize = 9;
    pub(crate) const LOCKS: usize = 10;
    pub(crate) const SIGPENDING: usize = 11;
    pub(crate) const MSGQUEUE: usize = 12;
    pub(crate) const NICE: usize = 13;
    pub(crate) const RTPRIO: usize = 14;
    pub(crate) const RTTIME: usize = 15;
}

/// One limit: soft (`rlim_cur`) and hard (`rlim_max`), as `struct rlimit64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rlimit {
    /// Soft limit: what is enforced.
    pub(crate) cur: u64,
    /// Hard limit: the ceiling of the soft one.
    pub(crate) max: u64,
}

impl Rlimit {
    const fn both(v: u64) -> Self {
        Self { cur: v, max: v }
    }

    const fn to_raw(self) -> [u64; 2] {
        [self.cur, self.max]
    }
}

/// A process's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rlimits([Rlimit; NLIMITS]);

impl Rlimits {
    /// Linux's defaults for init (`INIT_RLIMITS`) but `RLIMIT_CORE` 0/0, with `RLIMIT_NPROC` and
    /// `RLIMIT_SIGPENDING` from the kernel's task ceiling `max_tasks` (Linux derives both
    /// from its thread ceiling too).
    pub(crate) fn defaults(max_tasks: u64) -> Self {
        let mut l = [Rlimit::both(RLIM_INFINITY); NLIMITS];
        l[res::STACK] = Rlimit {
            cur: 8 << 20,
            max: RLIM_INFINITY,
        };
        // No core dump is ever written: 0/0, not Linux's 0/unlimited.
        l[res::CORE] = Rlimit::both(0);
        l[res::NPROC] = Rlimit::both(max_tasks);
        l[res::NOFILE] = Rlimit {
            cur: 1024,
            max: NR_OPEN,
        };
        l[res::MEMLOCK] = Rlimit::both(8 << 20);
        l[res::SIGPENDING] = Rlimit::both(max_tasks.min(SIGPENDING_MAX));
        l[res::MSGQUEUE] = Rlimit::both(819_200);
        l[res::NICE] = Rlimit::both(0);
        l[res::RTPRIO] = Rlimit::both(0);
        Self(l)
    }

    /// The limit of resource `r` (a [`res`] number below [`NLIMITS`]).
    pub(crate) fn get(&self, r: usize) -> Rlimit {
        self.0[r]
    }

    /// The soft limit of `r`.
    pub(crate) fn cur(&self, r: usize) -> u64 {
        self.0[r].cur
    }

    /// Sets the limit of `r` (`setrlimit`): `EINVAL` if the soft limit exceeds the hard
    /// one, `EPERM` for an `RLIMIT_NOFILE` hard limit above [`NR_OPEN`], or for raising a
    /// hard limit without `may_raise` (`CAP_SYS_RESOURCE`).
    pub(crate) fn set_checked(
        &mut self,
        r: usize,
        new: Rlimit,
        may_raise: bool,
    ) -> Result<(), Errno> {
        if new.cur > new.max {
            return Err(Errno::EINVAL);
        }
        if new.max > self.0[r].max && !may_raise {
            return Err(Errno::EPERM);
        }
        self.set(r, new)
    }

    /// As [`Rlimits::set_checked`] with the right to raise hard limits (the kernel's own
    /// settings, init's limits from the host).
    pub(crate) fn set(&mut self, r: usize, new: Rlimit) -> Result<(), Errno> {
        if new.cur > new.max {
            return Err(Errno::EINVAL);
        }
        if r == res::NOFILE && new.max > NR_OPEN {
            return Err(Errno::EPERM);
        }
        self.0[r] = new;
        Ok(())
    }
}

/// Init's limits: [`Rlimits::defaults`] with the boot arguments' `RLIMIT` records
/// (`pvmux run --ulimit`) applied in order; one the kernel refuses (an `RLIMIT_NOFILE` hard
/// limit above [`NR_OPEN`], which the host checks first) is logged and skipped.
pub(crate) fn for_init(max_tasks: u64) -> Rlimits {
    let mut l = Rlimits::defaults(max_tasks);
    for (r, soft, hard) in crate::boot::args().rlimits() {
        let Ok(r) = resource(u64::from(r)) else {
            continue;
        };
        if let Err(e) = l.set(
            r,
            Rlimit {
                cur: soft,
                max: hard,
            },
        ) {
            crate::println!("pvmux-kernel: init's limit {r} = {soft}:{hard} refused: {e}");
        }
    }
    l
}

/// A resource number from a program (`EINVAL` if there is no such resource).
pub(crate) fn resource(raw: u64) -> Result<usize, Errno> {
    usize::try_from(raw)
        .ok()
        .filter(|&r| r < NLIMITS)
        .ok_or(Errno::EINVAL)
}

/// The soft limit of `r` for process `p`.
pub(crate) fn of(p: &Process, r: usize) -> u64 {
    p.rlimits.lock().cur(r)
}

/// The soft limit of `r` for the current process (the default without one: kernel
/// threads, host unit tests).
pub(crate) fn current(r: usize) -> u64 {
    match task::try_current_task() {
        Some(t) => of(&t.process, r),
        None => Rlimits::defaults(u64::from(task::max_tasks())).cur(r),
    }
}

/// The `RLIMIT_NOFILE` soft limit as a descriptor bound (never above [`NR_OPEN`]).
pub(crate) fn nofile(p: &Process) -> usize {
    of(p, res::NOFILE).min(NR_OPEN) as usize
}

/// `prlimit64(pid, resource, new, old)`, and `getrlimit`/`setrlimit` (pid 0, one of the
/// two pointers null): reads the old limit, then sets the new one, of process `pid` (0:
/// the caller).
pub(crate) fn sys_prlimit64(pid: u64, resource_raw: u64, new: u64, old: u64) -> SysResult {
    let p = if pid == 0 {
        task::current_process()
    } else {
        i32::try_from(pid)
            .ok()
            .and_then(task::find_process)
            .ok_or(Errno::ESRCH)?
    };
    let r = resource(resource_raw)?;
    let new = if new != 0 {
        let [cur, max]: [u64; 2] = read_val(new)?;
        Some(Rlimit { cur, max })
    } else {
        None
    };
    let may_raise = super::creds::current().capable(super::caps::cap::SYS_RESOURCE);
    let prev = {
        let mut l = p.rlimits.lock();
        let prev = l.get(r);
        if let Some(n) = new {
            l.set_checked(r, n, may_raise)?;
        }
        prev
    };
    if old != 0 {
        write_val(old, &prev.to_raw())?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_linuxs() {
        let l = Rlimits::defaults(256);
        assert_eq!(
            l.get(res::NOFILE),
            Rlimit {
                cur: 1024,
                max: 4096
            }
        );
        assert_eq!(l.get(res::STACK).cur, 8 << 20);
        assert_eq!(l.get(res::CORE), Rlimit::both(0), "no core dumps");
        assert_eq!(l.get(res::NPROC), Rlimit::both(256));
        assert_eq!(l.get(res::SIGPENDING), Rlimit::both(256));
        assert_eq!(
            Rlimits::defaults(1 << 20).cur(res::SIGPENDING),
            SIGPENDING_MAX
        );
        for r in [
            res::CPU,
            res::FSIZE,
            res::DATA,
            res::AS,
            res::RSS,
            res::LOCKS,
            res::RTTIME,
        ] {
            assert_eq!(l.get(r), Rlimit::both(RLIM_INFINITY), "resource {r}");
        }
    }

    #[test]
    fn the_resource_numbers_are_the_hosts() {
        for (ours, theirs) in [
            (res::CPU, libc::RLIMIT_CPU),
            (res::FSIZE, libc::RLIMIT_FSIZE),
            (res::DATA, libc::RLIMIT_DATA),
            (res::STACK, libc::RLIMIT_STACK),
            (res::CORE, libc::RLIMIT_CORE),
            (res::RSS, libc::RLIMIT_RSS),
            (res::NPROC, libc::RLIMIT_NPROC),
            (res::NOFILE, libc::RLIMIT_NOFILE),
            (res::MEMLOCK, libc::RLIMIT_MEMLOCK),
            (res::AS, libc::RLIMIT_AS),
            (res::LOCKS, libc::RLIMIT_LOCKS),
            (res::SIGPENDING, libc::RLIMIT_SIGPENDING),
            (res::MSGQUEUE, libc::RLIMIT_MSGQUEUE),
            (res::NICE, libc::RLIMIT_NICE),
            (res::RTPRIO, libc::RLIMIT_RTPRIO),
            (res::RTTIME, libc::RLIMIT_RTTIME),
        ] {
            assert_eq!(ours as u32, theirs);
        }
        assert_eq!(NLIMITS, 16, "RLIM_NLIMITS of x86-64 Linux");
        assert_eq!(RLIM_INFINITY, libc::RLIM_INFINITY);
    }

    #[test]
    fn setting_checks_like_linux() {
        let mut l = Rlimits::defaults(256);
        assert_eq!(
            l.set(res::NOFILE, Rlimit { cur: 10, max: 5 }),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            l.set(
                res::NOFILE,
                Rlimit {
                    cur: 10,
                    max: NR_OPEN + 1
                }
            ),
            Err(Errno::EPERM)
        );
        assert_eq!(
            l.get(res::NOFILE).cur,
            1024,
            "a refused change changes nothing"
        );
        l.set(res::NOFILE, Rlimit { cur: 64, max: 128 }).unwrap();
        assert_eq!(l.cur(res::NOFILE), 64);
        // Raising again (a privileged program may).
        l.set(
            res::NOFILE,
            Rlimit {
                cur: 200,
                max: NR_OPEN,
            },
        )
        .unwrap();
        l.set(res::STACK, Rlimit::both(RLIM_INFINITY)).unwrap();
        // Raising a hard limit needs CAP_SYS_RESOURCE; lowering it does not.
        l.set_checked(res::STACK, Rlimit::both(1 << 20), false)
            .unwrap();
        assert_eq!(
            l.set_checked(res::STACK, Rlimit::both(2 << 20), false),
            Err(Errno::EPERM)
        );
        l.set_checked(res::STACK, Rlimit::both(RLIM_INFINITY), true)
            .unwrap();
        assert_eq!(l.get(res::STACK).max, RLIM_INFINITY);
        // A copy (fork) is independent.
        let child = l;
        l.set(res::NOFILE, Rlimit { cur: 3, max: 3 }).unwrap();
        assert_eq!(child.cur(res::NOFILE), 200);
        assert_eq!(resource(16), Err(Errno::EINVAL));
        assert_eq!(resource(u64::MAX), Err(Errno::EINVAL));
        assert_eq!(resource(7), Ok(res::NOFILE));
    }
}
