//! Scheduling parameters a program sets and reads back, kept per thread as Linux keeps them
//! and inherited by `fork` and new threads: the nice value (`setpriority`, `getpriority`,
//! `/proc/PID/stat`), the CPU affinity mask (`sched_setaffinity`, `sched_getaffinity`) and
//! the scheduling policy (`sched_setscheduler`, `sched_getscheduler`, `sched_setparam`,
//! `sched_getparam`, with `sched_get_priority_max`/`min` and `sched_rr_get_interval`; and
//! `sched_setattr`/`sched_getattr` over the same values, `linux/sched_attr.rs`).
//! The guest scheduler gives every thread the same share and may run a thread on any vCPU:
//! the values are kept and reported (what `nice`, `renice`, `taskset`, `chrt`, `nproc` and
//! thread pools sized by the affinity mask see), not enforced. The normal policies
//! (`SCHED_OTHER`, `SCHED_BATCH`, `SCHED_IDLE`) are kept; the real-time ones are `EPERM`,
//! as for a process without the right to them, since the guest has no real-time
//! scheduling to give (and a kernel hand-over carries no policy: the adopted threads run
//! `SCHED_OTHER`). Permission checks are
//! Linux's: another user's thread needs `CAP_SYS_NICE` (`EPERM`); a lower nice value needs
//! `CAP_SYS_NICE` or `RLIMIT_NICE` room (`EACCES`). The rules are pure functions with host
//! unit tests; a kernel hand-over carries the values (record section 45).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::caps::cap;
use super::task::{self, Task};
use super::uaccess::{copy_from_user, copy_to_user};
use super::{Errno, SysResult};

/// `getpriority`/`setpriority`'s `which`.
const PRIO_PROCESS: u64 = 0;
const PRIO_PGRP: u64 = 1;
const PRIO_USER: u64 = 2;

/// Scheduling policies (`sched_setscheduler`), as Linux numbers them.
pub(crate) mod policy {
    /// The default time-sharing policy (`SCHED_NORMAL`).
    pub(crate) const OTHER: u32 = 0;
    /// Real-time, first in first out.
    pub(crate) const FIFO: u32 = 1;
    /// Real-time, round robin.
    pub(crate) const RR: u32 = 2;
    /// Time-sharing for batch work.
    pub(crate) const BATCH: u32 = 3;
    /// Time-sharing at the lowest weight.
    pub(crate) const IDLE: u32 = 5;
    /// Deadline scheduling (`sched_setattr` only).
    pub(crate) const DEADLINE: u32 = 6;
    /// Or'ed into a policy: children start without it, a negative nice value reset.
    pub(crate) const RESET_ON_FORK: u32 = 0x4000_0000;
}

/// Whether `policy` (without [`policy::RESET_ON_FORK`]) may be set at priority `prio`: the
/// normal policies at priority 0; the real-time ones (priority 1..=99) are `EPERM` (no
/// real-time scheduling in the guest); any other priority or policy `EINVAL`.
pub(super) fn check_policy(pol: u32, prio: i32) -> Result<(), Errno> {
    use policy::*;
    match pol {
        OTHER | BATCH | IDLE if prio == 0 => Ok(()),
        FIFO | RR if (1..=99).contains(&prio) => Err(Errno::EPERM),
        _ => Err(Errno::EINVAL),
    }
}

/// The highest and lowest priority of `pol` (`sched_get_priority_max`/`min`), `None` for a
/// policy Linux does not know.
fn priority_range(pol: u64) -> Option<(u64, u64)> {
    use policy::*;
    // A C `int`.
    match pol as u32 {
        FIFO | RR => Some((1, 99)),
        OTHER | BATCH | IDLE | DEADLINE => Some((0, 0)),
        _ => None,
    }
}

/// The nice value and policy a new thread starts with, its creator's being `nice` and
/// `pol`: the same, except that [`policy::RESET_ON_FORK`] is not inherited and resets a
/// negative nice value to 0 (Linux's `sched_fork`).
pub(crate) fn inherited(nice: i32, pol: u32) -> (i32, u32) {
    if pol & policy::RESET_ON_FORK != 0 {
        (nice.max(0), pol & !policy::RESET_ON_FORK)
    } else {
        (nice, pol)
    }
}

/// The nice values a thread may have.
const NICE_MIN: i64 = -20;
const NICE_MAX: i64 = 19;

/// A nice value asked for, clamped to `-20..=19` as Linux does.
pub(super) fn clamp_nice(v: i64) -> i32 {
    v.clamp(NICE_MIN, NICE_MAX) as i32
}

/// Whether a thread may go from nice `cur` to `new`: raising is free; lowering needs
/// `CAP_SYS_NICE` or an `RLIMIT_NICE` soft limit of at least `20 - new` (Linux's
/// `can_nice`).
pub(super) fn may_set_nice(cur: i32, new: i32, rlimit_nice: u64, cap_sys_nice: bool) -> bool {
    new >= cur || cap_sys_nice || (20 - i64::from(new)) as u64 <= rlimit_nice
}

/// The affinity mask `bytes` asks for, on `n` vCPUs (bits past them ignored): `None` if it
/// names none of them.
fn mask_of(bytes: &[u8], n: u32) -> Option<u64> {
    let mut m = 0u64;
    for (i, b) in bytes.iter().enumerate().take(8) {
        m |= u64::from(*b) << (8 * i);
    }
    let m = m & online(n);
    (m != 0).then_some(m)
}

/// The mask of vCPUs `0..n`.
fn online(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// The threads `which`/`who` names (`ESRCH` if none).
pub(super) fn targets(me: &Arc<Task>, which: u64, who: u64) -> Result<Vec<Arc<Task>>, Errno> {
    let who = who as u32 as i32;
    let out: Vec<Arc<Task>> = match which {
        PRIO_PROCESS if who == 0 => alloc::vec![me.clone()],
        PRIO_PROCESS => alloc::vec![task::find_task(who).ok_or(Errno::ESRCH)?],
        PRIO_PGRP => {
            let pgid = if who == 0 { me.process.pgid() } else { who };
            task::all_processes()
                .iter()
                .filter(|p| p.pgid() == pgid && !p.zombie.load(Ordering::Relaxed))
                .flat_map(|p| p.threads.lock().clone())
                .collect()
        }
        PRIO_USER => {
            let uid = if who == 0 {
                me.process.creds.lock().uid
            } else {
                who as u32
            };
            task::all_processes()
                .iter()
                .filter(|p| p.creds.lock().uid == uid && !p.zombie.load(Ordering::Relaxed))
                .flat_map(|p| p.threads.lock().clone())
                .collect()
        }
        _ => return Err(Errno::EINVAL),
    };
    if out.is_empty() {
        return Err(Errno::ESRCH);
    }
    Ok(out)
}

/// Whether `me` may change `target`'s scheduling parameters: its own user's threads (by
/// real or effective uid), or any with `CAP_SYS_NICE` (Linux's `set_one_prio_perm`).
pub(super) fn may_change(me: &Task, target: &Task) -> bool {
    let mine = me.process.creds.lock().clone();
    if mine.capable(cap::SYS_NICE) {
        return true;
    }
    let theirs = target.process.creds.lock();
    theirs.uid == mine.euid || theirs.euid == mine.euid
}

/// `getpriority(which, who)`: `20 - nice` of the least nice thread named (1..=40).
pub(crate) fn sys_getpriority(me: &Arc<Task>, which: u64, who: u64) -> SysResult {
    let best = targets(me, which, who)?
        .iter()
        .map(|t| t.nice.load(Ordering::Relaxed))
        .min()
        .unwrap_or(0);
    Ok((20 - i64::from(best)) as u64)
}

/// `setpriority(which, who, prio)`: every thread named gets nice `prio` (clamped).
pub(crate) fn sys_setpriority(me: &Arc<Task>, which: u64, who: u64, prio: u64) -> SysResult {
    let new = clamp_nice(prio as u32 as i32 as i64);
    let (rlimit, cap_nice) = (
        super::rlimit::current(super::rlimit::res::NICE),
        me.process.creds.lock().capable(cap::SYS_NICE),
    );
    let mut result = Ok(0);
    for t in targets(me, which, who)? {
        if !may_change(me, &t) {
            result = Err(Errno::EPERM);
            continue;
        }
        if !may_set_nice(t.nice.load(Ordering::Relaxed), new, rlimit, cap_nice) {
            result = Err(Errno::EACCES);
            continue;
        }
        t.nice.store(new, Ordering::Relaxed);
    }
    result
}

/// The thread `pid` names for the affinity calls (0: the caller).
fn affinity_target(me: &Arc<Task>, pid: u64) -> Result<Arc<Task>, Errno> {
    match pid as u32 as i32 {
        0 => Ok(me.clone()),
        tid => task::find_task(tid).ok_or(Errno::ESRCH),
    }
}

/// `sched_setaffinity(pid, len, mask)`: `EINVAL` for a mask of no vCPU.
pub(crate) fn sys_sched_setaffinity(me: &Arc<Task>, pid: u64, len: u64, mask: u64) -> SysResult {
    let t = affinity_target(me, pid)?;
    let mut bytes = [0u8; 8];
    let n = (len.min(8)) as usize;
    copy_from_user(mask, &mut bytes[..n])?;
    let m = mask_of(&bytes[..n], crate::boot::nr_vcpus()).ok_or(Errno::EINVAL)?;
    if !may_change(me, &t) {
        return Err(Errno::EPERM);
    }
    t.affinity.store(m, Ordering::Relaxed);
    Ok(0)
}

/// The thread a policy call's `pid` (a C `pid_t`: the register's low 32 bits) names (0:
/// the caller); a negative pid is `EINVAL`.
pub(super) fn policy_target(me: &Arc<Task>, pid: u64) -> Result<Arc<Task>, Errno> {
    if (pid as u32 as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    affinity_target(me, pid)
}

/// `sched_setscheduler(pid, policy, param)`: see [`check_policy`]; another user's thread
/// needs `CAP_SYS_NICE` (`EPERM`), as does dropping [`policy::RESET_ON_FORK`].
pub(crate) fn sys_sched_setscheduler(me: &Arc<Task>, pid: u64, pol: u64, param: u64) -> SysResult {
    // `pid` and `policy` are C `int`s.
    let pol = pol as u32;
    if param == 0 || (pid as u32 as i32) < 0 || (pol as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    let mut prio = [0u8; 4];
    copy_from_user(param, &mut prio)?;
    let t = policy_target(me, pid)?;
    check_policy(pol & !policy::RESET_ON_FORK, i32::from_ne_bytes(prio))?;
    let cap_nice = me.process.creds.lock().capable(cap::SYS_NICE);
    let dropping_reset = t.policy.load(Ordering::Relaxed) & policy::RESET_ON_FORK != 0
        && pol & policy::RESET_ON_FORK == 0;
    if !may_change(me, &t) || (dropping_reset && !cap_nice) {
        return Err(Errno::EPERM);
    }
    t.policy.store(pol, Ordering::Relaxed);
    Ok(0)
}

/// `sched_setparam(pid, param)`: the priority within the thread's policy (0 for the
/// normal ones: anything else `EINVAL`).
pub(crate) fn sys_sched_setparam(me: &Arc<Task>, pid: u64, param: u64) -> SysResult {
    if param == 0 || (pid as u32 as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    let mut prio = [0u8; 4];
    copy_from_user(param, &mut prio)?;
    let t = policy_target(me, pid)?;
    let pol = t.policy.load(Ordering::Relaxed) & !policy::RESET_ON_FORK;
    check_policy(pol, i32::from_ne_bytes(prio))?;
    if !may_change(me, &t) {
        return Err(Errno::EPERM);
    }
    Ok(0)
}

/// `sched_getscheduler(pid)`: the thread's policy, with [`policy::RESET_ON_FORK`] if set.
pub(crate) fn sys_sched_getscheduler(me: &Arc<Task>, pid: u64) -> SysResult {
    Ok(policy_target(me, pid)?
        .policy
        .load(Ordering::Relaxed)
        .into())
}

/// `sched_getparam(pid, param)`: the thread's priority (0: the policies kept are the
/// normal ones).
pub(crate) fn sys_sched_getparam(me: &Arc<Task>, pid: u64, param: u64) -> SysResult {
    if param == 0 {
        return Err(Errno::EINVAL);
    }
    policy_target(me, pid)?;
    copy_to_user(param, &0i32.to_ne_bytes())?;
    Ok(0)
}

/// `sched_get_priority_max(policy)`.
pub(crate) fn priority_max(pol: u64) -> SysResult {
    priority_range(pol).map(|r| r.1).ok_or(Errno::EINVAL)
}

/// `sched_get_priority_min(policy)`.
pub(crate) fn priority_min(pol: u64) -> SysResult {
    priority_range(pol).map(|r| r.0).ok_or(Errno::EINVAL)
}

/// `sched_rr_get_interval(pid, ts)`: the time slice the guest scheduler gives a thread.
pub(crate) fn sys_sched_rr_get_interval(me: &Arc<Task>, pid: u64, ts: u64) -> SysResult {
    policy_target(me, pid)?;
    let slice = super::task::SLICE_NS;
    let t = [
        (slice / 1_000_000_000).to_ne_bytes(),
        (slice % 1_000_000_000).to_ne_bytes(),
    ];
    copy_to_user(ts, t.as_flattened())?;
    Ok(0)
}

/// `sched_getaffinity(pid, len, mask)`: the thread's mask (on this kernel's vCPUs), in
/// whole 64-bit words; the bytes written.
pub(crate) fn sys_sched_getaffinity(me: &Arc<Task>, pid: u64, len: u64, mask: u64) -> SysResult {
    let n = crate::boot::nr_vcpus();
    let bytes = u64::from(n).div_ceil(64) * 8;
    if len < bytes || !len.is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    let t = affinity_target(me, pid)?;
    let m = t.affinity.load(Ordering::Relaxed) & online(n);
    copy_to_user(mask, &m.to_le_bytes()[..bytes as usize])?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_values_are_clamped_and_lowering_needs_a_right() {
        assert_eq!(
            (clamp_nice(-50), clamp_nice(5), clamp_nice(99)),
            (-20, 5, 19)
        );
        // Raising is free; lowering needs CAP_SYS_NICE or RLIMIT_NICE room.
        assert!(may_set_nice(0, 10, 0, false));
        assert!(!may_set_nice(10, 5, 0, false));
        assert!(may_set_nice(10, 5, 0, true));
        // RLIMIT_NICE 25 allows down to nice -5.
        assert!(may_set_nice(0, -5, 25, false));
        assert!(!may_set_nice(0, -6, 25, false));
    }

    #[test]
    fn policies_as_linux_checks_them_without_real_time() {
        use policy::*;
        for pol in [OTHER, BATCH, IDLE] {
            assert_eq!(check_policy(pol, 0), Ok(()));
            assert_eq!(check_policy(pol, 1), Err(Errno::EINVAL));
        }
        for pol in [FIFO, RR] {
            assert_eq!(check_policy(pol, 50), Err(Errno::EPERM));
            assert_eq!(check_policy(pol, 0), Err(Errno::EINVAL));
            assert_eq!(check_policy(pol, 100), Err(Errno::EINVAL));
        }
        assert_eq!(
            check_policy(DEADLINE, 0),
            Err(Errno::EINVAL),
            "sched_setattr's"
        );
        assert_eq!(check_policy(4, 0), Err(Errno::EINVAL));
        assert_eq!(priority_range(u64::from(FIFO)), Some((1, 99)));
        assert_eq!(priority_range(u64::from(IDLE)), Some((0, 0)));
        assert_eq!(priority_range(7), None);
        assert_eq!(priority_range(u64::MAX), None);
        assert_eq!(
            priority_range(1 << 32 | u64::from(FIFO)),
            Some((1, 99)),
            "an int"
        );
        // SCHED_RESET_ON_FORK: not inherited, a negative nice value reset.
        assert_eq!(inherited(-5, BATCH | RESET_ON_FORK), (0, BATCH));
        assert_eq!(inherited(7, OTHER | RESET_ON_FORK), (7, OTHER));
        assert_eq!(inherited(-5, IDLE), (-5, IDLE));
    }

    #[test]
    fn an_affinity_mask_names_some_online_vcpu() {
        assert_eq!(online(2), 0b11);
        assert_eq!(online(64), u64::MAX);
        assert_eq!(mask_of(&[0b01], 2), Some(0b01));
        assert_eq!(mask_of(&[0xff, 0xff], 2), Some(0b11));
        assert_eq!(
            mask_of(&[0b100], 2),
            None,
            "only a vCPU past the online ones"
        );
        assert_eq!(mask_of(&[], 2), None);
        assert_eq!(mask_of(&[0, 1], 16), Some(1 << 8));
    }
}
