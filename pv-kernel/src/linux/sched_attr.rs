//! `sched_setattr` and `sched_getattr` (Linux `kernel/sched/syscalls.c`): a thread's policy,
//! `SCHED_FLAG_RESET_ON_FORK` and nice value in one `struct sched_attr`, over the same
//! per-thread values and rules as `sched_setscheduler` and `setpriority`
//! (`linux/sched_params.rs`: the normal policies kept, the real-time and deadline ones
//! `EPERM`; `sched_runtime` reports the guest scheduler's time slice). The struct is sized by its caller as Linux reads it: 0 means the first
//! version's 48 bytes; a size below that or past a page is `E2BIG` with this kernel's size
//! written back; bytes past the known fields must be zero (`E2BIG`). Utilisation clamps
//! (`SCHED_FLAG_UTIL_CLAMP_*`) are checked and not kept (`sched_getattr` reports none).

#![forbid(unsafe_code)]

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use super::caps::cap;
use super::sched_params::{self as params, policy};
use super::task::Task;
use super::uaccess::{copy_from_user, copy_to_user};
use super::{Errno, SysResult};

/// `struct sched_attr`'s first version's size, and this kernel's (with the clamps).
const SIZE_VER0: usize = 48;
const SIZE: usize = 56;

/// `sched_flags`.
mod flag {
    pub(super) const RESET_ON_FORK: u64 = 0x01;
    pub(super) const KEEP_POLICY: u64 = 0x08;
    pub(super) const KEEP_PARAMS: u64 = 0x10;
    pub(super) const UTIL_CLAMP: u64 = 0x20 | 0x40;
    /// Every flag Linux knows (`SCHED_FLAG_ALL`).
    pub(super) const ALL: u64 = 0x7f;
}

/// `struct sched_attr`'s fields this kernel reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Attr {
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    util_min: u32,
    util_max: u32,
}

impl Attr {
    /// Decodes `raw` (the caller's `size` bytes: [`SIZE_VER0`] up to a page): `E2BIG` for a
    /// non-zero byte past the known fields, `EINVAL` for clamps in a first-version struct.
    fn decode(raw: &[u8]) -> Result<Self, Errno> {
        if raw.iter().skip(SIZE).any(|&b| b != 0) {
            return Err(Errno::E2BIG);
        }
        let u32_at = |o: usize| {
            raw.get(o..o + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        let u64_at = |o: usize| {
            raw.get(o..o + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        let a = Self {
            policy: u32_at(4),
            flags: u64_at(8),
            nice: u32_at(16) as i32,
            priority: u32_at(20),
            util_min: u32_at(48),
            util_max: u32_at(52),
        };
        if a.flags & flag::UTIL_CLAMP != 0 && raw.len() < SIZE {
            return Err(Errno::EINVAL);
        }
        Ok(a)
    }

    /// The struct as `sched_getattr` writes it (this kernel's size).
    fn encode(&self) -> [u8; SIZE] {
        let mut out = [0u8; SIZE];
        out[0..4].copy_from_slice(&(SIZE as u32).to_le_bytes());
        out[4..8].copy_from_slice(&self.policy.to_le_bytes());
        out[8..16].copy_from_slice(&self.flags.to_le_bytes());
        out[16..20].copy_from_slice(&self.nice.to_le_bytes());
        out[20..24].copy_from_slice(&self.priority.to_le_bytes());
        out
    }
}

/// `sched_setattr(pid, attr, flags)`.
pub(crate) fn sys_sched_setattr(me: &Arc<Task>, pid: u64, uattr: u64, flags: u64) -> SysResult {
    if uattr == 0 || (pid as u32 as i32) < 0 || flags as u32 != 0 {
        return Err(Errno::EINVAL);
    }
    let mut size_word = [0u8; 4];
    copy_from_user(uattr, &mut size_word)?;
    let size = match u32::from_le_bytes(size_word) as usize {
        0 => SIZE_VER0,
        s => s,
    };
    let too_big = |e: Errno| {
        if e == Errno::E2BIG {
            // Linux writes the size it takes back for the caller.
            let _ = copy_to_user(uattr, &(SIZE as u32).to_le_bytes());
        }
        e
    };
    if !(SIZE_VER0..=pvmux_hypercalls::PAGE_SIZE as usize).contains(&size) {
        return Err(too_big(Errno::E2BIG));
    }
    let mut raw = alloc::vec![0u8; size];
    copy_from_user(uattr, &mut raw)?;
    let mut a = Attr::decode(&raw).map_err(too_big)?;
    if (a.policy as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    let t = params::policy_target(me, pid)?;
    let current = t.policy.load(Ordering::Relaxed);
    if a.flags & flag::KEEP_POLICY != 0 {
        a.policy = current & !policy::RESET_ON_FORK;
    }
    // `SCHED_FLAG_KEEP_PARAMS` keeps the nice value — and, as Linux's
    // `__sched_setscheduler` skips `__setscheduler_params` then, the policy too: only
    // `SCHED_FLAG_RESET_ON_FORK` changes (the policy asked for is still checked).
    let keep_params = a.flags & flag::KEEP_PARAMS != 0;
    if keep_params {
        a.priority = 0;
    }
    if a.flags & !flag::ALL != 0 || a.priority > 99 {
        return Err(Errno::EINVAL);
    }
    if a.flags & flag::UTIL_CLAMP != 0
        && (a.util_min > 1024 || a.util_max > 1024 || a.util_min > a.util_max)
    {
        return Err(Errno::EINVAL);
    }
    params::check_policy(a.policy, a.priority as i32)?;
    let nice = params::clamp_nice(i64::from(a.nice));
    let cap_nice = me.process.creds.lock().capable(cap::SYS_NICE);
    let rlimit = super::rlimit::current(super::rlimit::res::NICE);
    let dropping_reset = current & policy::RESET_ON_FORK != 0 && a.flags & flag::RESET_ON_FORK == 0;
    if !params::may_change(me, &t)
        || (dropping_reset && !cap_nice)
        || (!keep_params
            && !params::may_set_nice(t.nice.load(Ordering::Relaxed), nice, rlimit, cap_nice))
    {
        return Err(Errno::EPERM);
    }
    let reset = if a.flags & flag::RESET_ON_FORK != 0 {
        policy::RESET_ON_FORK
    } else {
        0
    };
    if keep_params {
        t.policy.store(
            (current & !policy::RESET_ON_FORK) | reset,
            Ordering::Relaxed,
        );
    } else {
        t.policy.store(a.policy | reset, Ordering::Relaxed);
        t.nice.store(nice, Ordering::Relaxed);
    }
    Ok(0)
}

/// `sched_getattr(pid, attr, size, flags)`: the first `size` bytes of this kernel's
/// struct (its size field says how many were written).
pub(crate) fn sys_sched_getattr(
    me: &Arc<Task>,
    pid: u64,
    uattr: u64,
    size: u64,
    flags: u64,
) -> SysResult {
    let size = size as u32 as usize;
    if uattr == 0
        || (pid as u32 as i32) < 0
        || !(SIZE_VER0..=pvmux_hypercalls::PAGE_SIZE as usize).contains(&size)
        || flags as u32 != 0
    {
        return Err(Errno::EINVAL);
    }
    let t = params::policy_target(me, pid)?;
    let pol = t.policy.load(Ordering::Relaxed);
    let a = Attr {
        policy: pol & !policy::RESET_ON_FORK,
        flags: if pol & policy::RESET_ON_FORK != 0 {
            flag::RESET_ON_FORK
        } else {
            0
        },
        nice: t.nice.load(Ordering::Relaxed),
        ..Attr::default()
    };
    let mut out = a.encode();
    // `sched_runtime`: the normal policies' time slice, as Linux reports its own.
    out[24..32].copy_from_slice(&super::task::SLICE_NS.to_le_bytes());
    let n = size.min(SIZE);
    out[0..4].copy_from_slice(&(n as u32).to_le_bytes());
    copy_to_user(uattr, &out[..n])?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sched_attr_is_read_as_linux_reads_it() {
        let mut raw = alloc::vec![0u8; SIZE_VER0];
        raw[4..8].copy_from_slice(&3u32.to_le_bytes());
        raw[8..16].copy_from_slice(&flag::RESET_ON_FORK.to_le_bytes());
        raw[16..20].copy_from_slice(&(-5i32).to_le_bytes());
        let a = Attr::decode(&raw).unwrap();
        assert_eq!((a.policy, a.flags, a.nice, a.priority), (3, 1, -5, 0));
        // Clamps need the second version's size.
        raw[8..16].copy_from_slice(&0x20u64.to_le_bytes());
        assert_eq!(Attr::decode(&raw), Err(Errno::EINVAL));
        // Bytes past the known fields must be zero.
        let mut long = alloc::vec![0u8; 64];
        assert!(Attr::decode(&long).is_ok());
        long[60] = 1;
        assert_eq!(Attr::decode(&long), Err(Errno::E2BIG));
        // What sched_getattr writes.
        let out = Attr {
            policy: 5,
            flags: 1,
            nice: 7,
            ..Attr::default()
        }
        .encode();
        assert_eq!(u32::from_le_bytes(out[0..4].try_into().unwrap()), 56);
        assert_eq!(i32::from_le_bytes(out[16..20].try_into().unwrap()), 7);
    }
}
