//! `prctl(2)`: the options that keep state — a thread's name (`PR_SET_NAME`), the
//! parent-death signal (`PR_SET_PDEATHSIG`), `PR_SET_NO_NEW_PRIVS`,
//! `PR_SET_CHILD_SUBREAPER`, `PR_SET_DUMPABLE` and `PR_SET_THP_DISABLE` — and the
//! capability options (`super::caps::prctl`). Whether a process is dumpable and whether
//! huge pages are disabled for it change nothing else here (the kernel writes no core
//! dumps and maps no huge pages): they are kept for the programs that read them back.
//!
//! Linux keeps the parent-death signal and no-new-privs per thread; this kernel keeps them
//! per process ([`ProcessPrctl`]): the signal is sent when the parent *process* ends (Linux:
//! when the thread that created the child ends, even if its process goes on — the usual
//! surprise of the option), and no-new-privs is set for every thread at once. Both are
//! inherited as Linux inherits them: no-new-privs by `fork` and `execve`, the parent-death
//! signal by neither a `fork` child (cleared) nor lost at `execve`.

#![forbid(unsafe_code)]

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::task::{Process, Task};
use super::{Errno, SysResult};

/// `prctl` option numbers (`<linux/prctl.h>`).
pub(crate) mod pr {
    pub(crate) const SET_PDEATHSIG: u64 = 1;
    pub(crate) const GET_PDEATHSIG: u64 = 2;
    pub(crate) const GET_DUMPABLE: u64 = 3;
    pub(crate) const SET_DUMPABLE: u64 = 4;
    pub(crate) const SET_NAME: u64 = 15;
    pub(crate) const GET_NAME: u64 = 16;
    pub(crate) const SET_CHILD_SUBREAPER: u64 = 36;
    pub(crate) const GET_CHILD_SUBREAPER: u64 = 37;
    pub(crate) const SET_NO_NEW_PRIVS: u64 = 38;
    pub(crate) const GET_NO_NEW_PRIVS: u64 = 39;
    pub(crate) const SET_THP_DISABLE: u64 = 41;
    pub(crate) const GET_THP_DISABLE: u64 = 42;
}

/// Bytes of a thread's name, its NUL included (Linux's `TASK_COMM_LEN`).
pub(crate) const NAME_LEN: usize = 16;

/// A process's `prctl` state.
#[derive(Default)]
pub(crate) struct ProcessPrctl {
    /// The signal it gets when its parent ends (0: none).
    pdeath_signal: AtomicU32,
    /// `PR_SET_NO_NEW_PRIVS` (never cleared).
    no_new_privs: AtomicBool,
    /// `PR_SET_CHILD_SUBREAPER`: its orphaned descendants come to it, not to init.
    child_subreaper: AtomicBool,
    /// `PR_SET_DUMPABLE` 0 (set again by `execve`).
    not_dumpable: AtomicBool,
    /// `PR_SET_THP_DISABLE` (inherited by `fork`, kept by `execve`).
    thp_disabled: AtomicBool,
}

/// [`ProcessPrctl`] as plain values (what `fork` passes on and a hand-over carries).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PrctlValues {
    pub(crate) pdeath_signal: u32,
    pub(crate) no_new_privs: bool,
    pub(crate) child_subreaper: bool,
    pub(crate) not_dumpable: bool,
    pub(crate) thp_disabled: bool,
}

impl ProcessPrctl {
    /// Makes `v` the values (a new process: `fork`, an adoption).
    pub(crate) fn set(&self, v: PrctlValues) {
        self.pdeath_signal.store(v.pdeath_signal, Ordering::Relaxed);
        self.no_new_privs.store(v.no_new_privs, Ordering::Relaxed);
        self.child_subreaper
            .store(v.child_subreaper, Ordering::Relaxed);
        self.not_dumpable.store(v.not_dumpable, Ordering::Relaxed);
        self.thp_disabled.store(v.thp_disabled, Ordering::Relaxed);
    }

    /// `execve`: the program is dumpable again (Linux resets it for a program that is not
    /// set-id).
    pub(crate) fn execed(&self) {
        self.not_dumpable.store(false, Ordering::Relaxed);
    }

    /// Its values now.
    pub(crate) fn values(&self) -> PrctlValues {
        PrctlValues {
            pdeath_signal: self.pdeath_signal.load(Ordering::Relaxed),
            no_new_privs: self.no_new_privs.load(Ordering::Relaxed),
            child_subreaper: self.child_subreaper.load(Ordering::Relaxed),
            not_dumpable: self.not_dumpable.load(Ordering::Relaxed),
            thp_disabled: self.thp_disabled.load(Ordering::Relaxed),
        }
    }

    /// What a `fork` child starts with: no-new-privs, dumpability and the huge-page setting
    /// (the parent-death signal and the subreaper flag are not inherited).
    pub(crate) fn for_child(&self) -> PrctlValues {
        PrctlValues {
            no_new_privs: self.no_new_privs.load(Ordering::Relaxed),
            not_dumpable: self.not_dumpable.load(Ordering::Relaxed),
            thp_disabled: self.thp_disabled.load(Ordering::Relaxed),
            ..PrctlValues::default()
        }
    }

    /// The parent-death signal (0: none).
    pub(crate) fn pdeath_signal(&self) -> u32 {
        self.pdeath_signal.load(Ordering::Relaxed)
    }

    /// Whether it is a child subreaper.
    pub(crate) fn child_subreaper(&self) -> bool {
        self.child_subreaper.load(Ordering::Relaxed)
    }
}

/// A thread's name as `PR_SET_NAME` sets it from the bytes at `va`: at most 15 of them, up
/// to the first NUL (Linux copies `TASK_COMM_LEN` bytes and ends them with a NUL).
fn read_name(va: u64) -> Result<Vec<u8>, Errno> {
    let mut name = Vec::new();
    for i in 0..NAME_LEN as u64 - 1 {
        let mut b = [0u8];
        super::uaccess::copy_from_user(va.checked_add(i).ok_or(Errno::EFAULT)?, &mut b)?;
        if b[0] == 0 {
            break;
        }
        name.push(b[0]);
    }
    Ok(name)
}

/// The name `PR_GET_NAME` gives: `name` NUL-padded to [`NAME_LEN`] bytes.
pub(crate) fn name_bytes(name: &[u8]) -> [u8; NAME_LEN] {
    let mut out = [0u8; NAME_LEN];
    let n = name.len().min(NAME_LEN - 1);
    out[..n].copy_from_slice(&name[..n]);
    out
}

/// `prctl(option, a2, a3, a4, a5)` for thread `t`.
pub(crate) fn sys_prctl(t: &Arc<Task>, a: [u64; 5]) -> SysResult {
    let p = &t.process;
    let int_out = |v: u32| super::uaccess::write_val(a[1], &v).map(|()| 0);
    match a[0] {
        pr::SET_PDEATHSIG => {
            if a[1] > 64 {
                return Err(Errno::EINVAL);
            }
            p.prctl.pdeath_signal.store(a[1] as u32, Ordering::Relaxed);
            Ok(0)
        }
        pr::GET_PDEATHSIG => int_out(p.prctl.pdeath_signal()),
        pr::SET_NAME => {
            let name = read_name(a[1])?;
            *t.name.lock() = Some(name);
            Ok(0)
        }
        pr::GET_NAME => {
            let name = thread_name(t);
            super::uaccess::write_val(a[1], &name_bytes(&name)).map(|()| 0)
        }
        pr::SET_CHILD_SUBREAPER => {
            p.prctl.child_subreaper.store(a[1] != 0, Ordering::Relaxed);
            Ok(0)
        }
        pr::GET_CHILD_SUBREAPER => int_out(u32::from(p.prctl.child_subreaper())),
        pr::SET_NO_NEW_PRIVS => {
            if a[1] != 1 || a[2] != 0 || a[3] != 0 || a[4] != 0 {
                return Err(Errno::EINVAL);
            }
            p.prctl.no_new_privs.store(true, Ordering::Relaxed);
            Ok(0)
        }
        pr::SET_DUMPABLE => {
            // Only 0 (`SUID_DUMP_DISABLE`) and 1 (`SUID_DUMP_USER`), as Linux.
            if a[1] > 1 {
                return Err(Errno::EINVAL);
            }
            p.prctl.not_dumpable.store(a[1] == 0, Ordering::Relaxed);
            Ok(0)
        }
        pr::GET_DUMPABLE => Ok(u64::from(!p.prctl.values().not_dumpable)),
        pr::SET_THP_DISABLE => {
            if a[2] != 0 || a[3] != 0 || a[4] != 0 {
                return Err(Errno::EINVAL);
            }
            p.prctl.thp_disabled.store(a[1] != 0, Ordering::Relaxed);
            Ok(0)
        }
        pr::GET_THP_DISABLE => {
            if a[1] != 0 || a[2] != 0 || a[3] != 0 || a[4] != 0 {
                return Err(Errno::EINVAL);
            }
            Ok(u64::from(p.prctl.values().thp_disabled))
        }
        pr::GET_NO_NEW_PRIVS => {
            if a[1] != 0 || a[2] != 0 || a[3] != 0 || a[4] != 0 {
                return Err(Errno::EINVAL);
            }
            Ok(u64::from(p.prctl.values().no_new_privs))
        }
        _ => {
            let mut c = p.creds.lock();
            super::caps::prctl(&mut c.caps, a).unwrap_or(Err(Errno::EINVAL))
        }
    }
}

/// The name of thread `t`: what `PR_SET_NAME` gave it, else its process's command name.
pub(crate) fn thread_name(t: &Task) -> Vec<u8> {
    if let Some(n) = t.name.lock().clone() {
        return n;
    }
    super::procfs::snap::comm(&t.process)
}

/// The process that takes the orphans of `dying` (whose parent is `ppid`): the nearest
/// live ancestor that is a child subreaper, else init (`None` when there is none, as when
/// init itself ends).
pub(crate) fn reaper_for(dying: &Process, ppid: i32) -> Option<Arc<Process>> {
    let mut pid = ppid;
    // Each step goes to a live parent; a loop cannot happen (pids only grow down the
    // tree), but the walk is bounded all the same.
    for _ in 0..4096 {
        if pid <= 1 {
            break;
        }
        let Some(a) = super::task::find_process(pid) else {
            break;
        };
        if a.pid != dying.pid
            && a.prctl.child_subreaper()
            && !a.zombie.load(Ordering::Acquire)
            && a.exit_status.lock().is_none()
        {
            return Some(a);
        }
        pid = a.ppid();
    }
    super::task::find_process(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_and_padded_as_linux() {
        assert_eq!(&name_bytes(b"worker")[..7], b"worker\0");
        let long = name_bytes(b"a-name-longer-than-fifteen");
        assert_eq!(&long[..15], b"a-name-longer-t");
        assert_eq!(long[15], 0);
    }

    #[test]
    fn a_fork_child_keeps_what_linux_passes_on() {
        let p = ProcessPrctl::default();
        p.set(PrctlValues {
            pdeath_signal: 9,
            no_new_privs: true,
            child_subreaper: true,
            not_dumpable: true,
            thp_disabled: true,
        });
        assert_eq!(
            p.for_child(),
            PrctlValues {
                pdeath_signal: 0,
                no_new_privs: true,
                child_subreaper: false,
                not_dumpable: true,
                thp_disabled: true,
            }
        );
        p.execed();
        assert!(!p.values().not_dumpable);
        assert_eq!(p.values().pdeath_signal, 9);
    }
}
