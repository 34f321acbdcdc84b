//! I/O priorities (`ioprio_set`, `ioprio_get`), kept per thread as Linux keeps them and
//! inherited as Linux's `copy_io` does, for `ionice` and the programs that lower their own
//! (backup tools, indexers, `cron` jobs run under `ionice -c3`). The guest's files live in
//! guest memory or are read from the host with the host's own I/O priority, so nothing is
//! enforced: the values are kept and reported. The rules are Linux's (`block/ioprio.c`): the
//! class and level checked, the real-time class only with `CAP_SYS_ADMIN` or
//! `CAP_SYS_NICE`, another user's thread only with `CAP_SYS_NICE`; a new thread or process
//! starts with its creator's. Pure rules with host unit tests; a kernel hand-over does not
//! carry the values.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use super::caps::cap;
use super::sched_params::targets;
use super::task::Task;
use super::{Errno, SysResult};

/// `ioprio_set`/`ioprio_get`'s `which`.
const WHO_PROCESS: u64 = 1;
const WHO_USER: u64 = 3;

/// The classes (the top three bits of a 16-bit priority).
mod class {
    pub(super) const NONE: u32 = 0;
    pub(super) const RT: u32 = 1;
    pub(super) const BE: u32 = 2;
    pub(super) const IDLE: u32 = 3;
}

/// Where the class starts in a priority.
const CLASS_SHIFT: u32 = 13;

/// The class of priority `p`.
fn class_of(p: u32) -> u32 {
    (p >> CLASS_SHIFT) & 7
}

/// The level of priority `p` (0 = highest).
fn level_of(p: u32) -> u32 {
    p & 7
}

/// Linux's `ioprio_check_cap`: whether priority `p` may be set by a caller with (`rt_ok`)
/// or without the right to the real-time class.
fn check(p: u32, rt_ok: bool) -> Result<(), Errno> {
    match class_of(p) {
        class::RT if !rt_ok => Err(Errno::EPERM),
        class::RT | class::BE | class::IDLE => Ok(()),
        class::NONE if level_of(p) == 0 => Ok(()),
        _ => Err(Errno::EINVAL),
    }
}

/// `which` as `sched_params::targets` takes it (`PRIO_PROCESS`, `PRIO_PGRP`, `PRIO_USER`).
fn prio_which(which: u64) -> Result<u64, Errno> {
    if (WHO_PROCESS..=WHO_USER).contains(&which) {
        Ok(which - 1)
    } else {
        Err(Errno::EINVAL)
    }
}

/// `ioprio_set(which, who, ioprio)`: every thread named gets `ioprio`.
pub(crate) fn sys_ioprio_set(me: &Arc<Task>, which: u64, who: u64, ioprio: u64) -> SysResult {
    // A C `int`; Linux keeps the low 16 bits.
    let p = ioprio as u32 & 0xffff;
    let mine = me.process.creds.lock().clone();
    check(
        p,
        mine.capable(cap::SYS_ADMIN) || mine.capable(cap::SYS_NICE),
    )?;
    let which = prio_which(which)?;
    for t in targets(me, which, who)? {
        // Linux's `set_task_ioprio`: the target's real uid is the caller's real or
        // effective one, or the caller has CAP_SYS_NICE.
        let uid = t.process.creds.lock().uid;
        if uid != mine.euid && uid != mine.uid && !mine.capable(cap::SYS_NICE) {
            return Err(Errno::EPERM);
        }
        t.ioprio.store(p, Ordering::Relaxed);
    }
    Ok(0)
}

/// `ioprio_get(which, who)`: the priority of the thread named, or the best (lowest) of
/// those a group or user names.
pub(crate) fn sys_ioprio_get(me: &Arc<Task>, which: u64, who: u64) -> SysResult {
    let which = prio_which(which)?;
    let best = targets(me, which, who)?
        .iter()
        .map(|t| t.ioprio.load(Ordering::Relaxed))
        .min()
        .unwrap_or(0);
    Ok(best.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BE4: u32 = class::BE << CLASS_SHIFT | 4;

    #[test]
    fn classes_and_levels_are_checked_as_linux() {
        assert_eq!(check(BE4, false), Ok(()));
        assert_eq!(check(class::IDLE << CLASS_SHIFT | 7, false), Ok(()));
        assert_eq!(check(0, false), Ok(()));
        assert_eq!(check(1, false), Err(Errno::EINVAL), "class none, level 1");
        assert_eq!(check(class::RT << CLASS_SHIFT, false), Err(Errno::EPERM));
        assert_eq!(check(class::RT << CLASS_SHIFT, true), Ok(()));
        for c in 4..8 {
            assert_eq!(check(c << CLASS_SHIFT, true), Err(Errno::EINVAL));
        }
        assert_eq!(prio_which(0), Err(Errno::EINVAL));
        assert_eq!(prio_which(4), Err(Errno::EINVAL));
        assert_eq!(prio_which(2), Ok(1));
    }
}
