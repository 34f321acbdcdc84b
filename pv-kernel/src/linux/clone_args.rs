//! The arguments of `clone` and `clone3` (Linux `kernel/fork.c`), checked and put in one
//! shape ([`CloneArgs`]) for `task::clone_with`.
//!
//! `clone3` takes a `struct clone_args` of a size the caller states: at least the first
//! version's 64 bytes (`EINVAL`), at most a page (`E2BIG`); bytes past the fields this kernel
//! knows must be zero (`E2BIG`), as `copy_struct_from_user` wants. Its exit signal is a field
//! of its own (the `CSIGNAL` bits of its flags are `EINVAL`), its stack a base and a size,
//! and it adds `CLONE_CLEAR_SIGHAND` (the child's handlers reset, as after `execve`). A
//! `set_tid` (a chosen pid: checkpoint/restore) and `CLONE_INTO_CGROUP` are `EINVAL`: the
//! guest has no pid namespaces to choose in and no cgroup file system.
//!
//! Both take `CLONE_PIDFD`: a pidfd for the child (`linux/pidfd.rs`) written where
//! `clone`'s parent-tid pointer or `clone3`'s `pidfd` field points. A pidfd for a thread
//! (`CLONE_PIDFD` with `CLONE_THREAD`) is `EINVAL`.

#![forbid(unsafe_code)]

use super::task::clone_flags::*;
use super::Errno;

/// `CLONE_PIDFD`.
pub(crate) const CLONE_PIDFD: u64 = 0x1000;
/// `CLONE_DETACHED` (ignored by `clone`; `EINVAL` with `CLONE_PIDFD` and in `clone3`).
const CLONE_DETACHED: u64 = 0x40_0000;
/// `CLONE_NEWTIME` (shares the `CSIGNAL` bits: allowed there in `clone3`).
const CLONE_NEWTIME: u64 = 0x80;
/// `clone3` only: reset the child's signal handlers.
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
/// `clone3` only: start the child in the cgroup `cgroup` names.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
/// `CLONE_NEWNS`, `CLONE_NEWUSER`: refused with `CLONE_FS`, as Linux.
const CLONE_NEWNS: u64 = 0x2_0000;
const CLONE_NEWUSER: u64 = 0x1000_0000;

/// `struct clone_args`: the first version's size, and the size of the fields known here.
pub(crate) const CLONE_ARGS_SIZE_VER0: usize = 64;
pub(crate) const CLONE_ARGS_SIZE: usize = 88;
/// Most pid namespace levels (`set_tid_size`).
const MAX_PID_NS_LEVEL: u64 = 32;
/// Highest signal number.
const NSIG: u64 = 64;

/// What `clone`, `clone3`, `fork` and `vfork` ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CloneArgs {
    /// `CLONE_*` flags, without the exit signal.
    pub(crate) flags: u64,
    /// The signal the parent gets when the child exits (0: none).
    pub(crate) exit_signal: u32,
    /// The child's stack pointer (0: the caller's).
    pub(crate) stack: u64,
    /// Where `CLONE_PARENT_SETTID` writes the child's id.
    pub(crate) parent_tid: u64,
    /// Where `CLONE_CHILD_SETTID` writes, and `CLONE_CHILD_CLEARTID` clears, the child's id.
    pub(crate) child_tid: u64,
    /// The child's FS base with `CLONE_SETTLS`.
    pub(crate) tls: u64,
    /// Where the child's pidfd goes (`CLONE_PIDFD`).
    pub(crate) pidfd: Option<u64>,
}

impl CloneArgs {
    /// `fork` (`extra` 0) or `vfork` (`CLONE_VM | CLONE_VFORK`): `SIGCHLD` at exit.
    pub(crate) const fn fork(extra: u64) -> Self {
        Self {
            flags: extra,
            exit_signal: 17,
            stack: 0,
            parent_tid: 0,
            child_tid: 0,
            tls: 0,
            pidfd: None,
        }
    }

    /// `clone(flags, newsp, parent_tid, child_tid, tls)` (x86-64 argument order). Only the
    /// low 32 bits of `flags` count, as on Linux.
    pub(crate) fn of_clone(
        flags: u64,
        newsp: u64,
        parent_tid: u64,
        child_tid: u64,
        tls: u64,
    ) -> Result<Self, Errno> {
        let flags = flags & 0xffff_ffff;
        let pidfd = if flags & CLONE_PIDFD != 0 {
            // The pidfd goes where the parent's tid would: not both.
            if flags & (CLONE_PARENT_SETTID | CLONE_DETACHED) != 0 {
                return Err(Errno::EINVAL);
            }
            Some(parent_tid)
        } else {
            None
        };
        let args = Self {
            flags: flags & !CSIGNAL & !CLONE_DETACHED,
            exit_signal: (flags & CSIGNAL) as u32,
            stack: newsp,
            parent_tid,
            child_tid,
            tls,
            pidfd,
        };
        args.check()?;
        Ok(args)
    }

    /// `clone3`'s `struct clone_args`, `raw` being the caller's `size` bytes of it (at most a
    /// page: the caller checks `size` and copies).
    pub(crate) fn of_clone3(raw: &[u8]) -> Result<Self, Errno> {
        if raw.len() < CLONE_ARGS_SIZE_VER0 {
            return Err(Errno::EINVAL);
        }
        if raw.iter().skip(CLONE_ARGS_SIZE).any(|&b| b != 0) {
            return Err(Errno::E2BIG);
        }
        let field = |i: usize| {
            raw.get(i * 8..i * 8 + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        let (flags, pidfd, child_tid, parent_tid, exit_signal) =
            (field(0), field(1), field(2), field(3), field(4));
        let (stack, stack_size, tls, set_tid, set_tid_size, cgroup) =
            (field(5), field(6), field(7), field(8), field(9), field(10));
        if set_tid_size > MAX_PID_NS_LEVEL
            || (set_tid == 0) != (set_tid_size == 0)
            || exit_signal > NSIG
            || (flags & CLONE_INTO_CGROUP != 0 && cgroup > i32::MAX as u64)
        {
            return Err(Errno::EINVAL);
        }
        let known = 0xffff_ffff | CLONE_CLEAR_SIGHAND | CLONE_INTO_CGROUP;
        if flags & !known != 0
            || flags & (CLONE_DETACHED | (CSIGNAL & !CLONE_NEWTIME)) != 0
            || (flags & CLONE_SIGHAND != 0 && flags & CLONE_CLEAR_SIGHAND != 0)
            || (flags & (CLONE_THREAD | CLONE_PARENT) != 0 && exit_signal != 0)
            || (stack == 0) != (stack_size == 0)
        {
            return Err(Errno::EINVAL);
        }
        // Not supported: a chosen pid, a cgroup to start in.
        if set_tid_size != 0 || flags & CLONE_INTO_CGROUP != 0 {
            return Err(Errno::EINVAL);
        }
        let args = Self {
            flags,
            exit_signal: exit_signal as u32,
            stack: if stack == 0 {
                0
            } else {
                stack.checked_add(stack_size).ok_or(Errno::EINVAL)?
            },
            parent_tid,
            child_tid,
            tls,
            pidfd: (flags & CLONE_PIDFD != 0).then_some(pidfd),
        };
        args.check()?;
        Ok(args)
    }

    /// Whether the child's signal handlers start reset (`CLONE_CLEAR_SIGHAND`).
    pub(crate) const fn clears_handlers(&self) -> bool {
        self.flags & CLONE_CLEAR_SIGHAND != 0
    }

    /// The rules both calls share (Linux's `copy_process`).
    fn check(&self) -> Result<(), Errno> {
        let f = self.flags;
        let bad = (f & (CLONE_NEWNS | CLONE_NEWUSER) != 0 && f & CLONE_FS != 0)
            || (f & CLONE_THREAD != 0 && f & CLONE_SIGHAND == 0)
            || (f & CLONE_SIGHAND != 0 && f & CLONE_VM == 0)
            || (f & CLONE_PIDFD != 0 && f & CLONE_THREAD != 0);
        if bad {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(fields: &[u64]) -> alloc::vec::Vec<u8> {
        let mut v = alloc::vec![0u8; CLONE_ARGS_SIZE];
        for (i, f) in fields.iter().enumerate() {
            v[i * 8..i * 8 + 8].copy_from_slice(&f.to_le_bytes());
        }
        v
    }

    #[test]
    fn clone_splits_the_exit_signal_and_puts_the_pidfd_where_the_parent_tid_goes() {
        let a = CloneArgs::of_clone(CLONE_PIDFD | 17, 0x1000, 0x2000, 0x3000, 0).unwrap();
        assert_eq!(a.exit_signal, 17);
        assert_eq!(a.flags, CLONE_PIDFD);
        assert_eq!(a.pidfd, Some(0x2000));
        assert_eq!(a.stack, 0x1000);
        assert_eq!(
            CloneArgs::of_clone(CLONE_PIDFD | CLONE_PARENT_SETTID, 0, 0, 0, 0),
            Err(Errno::EINVAL)
        );
        // The high half of the flags is not clone's.
        let a = CloneArgs::of_clone(CLONE_CLEAR_SIGHAND | 17, 0, 0, 0, 0).unwrap();
        assert!(!a.clears_handlers());
    }

    #[test]
    fn clone3_checks_its_struct_as_linux() {
        // A thread as glibc's pthread_create asks for one.
        let thread = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD;
        let a =
            CloneArgs::of_clone3(&raw(&[thread, 0, 8, 16, 0, 0x10_0000, 0x1000, 0x77])).unwrap();
        assert_eq!(a.stack, 0x10_1000);
        assert_eq!((a.child_tid, a.parent_tid, a.tls), (8, 16, 0x77));
        // Sizes: short, the first version, trailing bytes.
        assert_eq!(CloneArgs::of_clone3(&[0u8; 63]), Err(Errno::EINVAL));
        assert!(CloneArgs::of_clone3(&raw(&[0, 0, 0, 0, 17])[..64]).is_ok());
        let mut long = raw(&[0, 0, 0, 0, 17]);
        long.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(CloneArgs::of_clone3(&long).is_ok());
        long[90] = 1;
        assert_eq!(CloneArgs::of_clone3(&long), Err(Errno::E2BIG));
        // The exit signal is a field: not in the flags, not for a thread, a valid signal.
        assert_eq!(CloneArgs::of_clone3(&raw(&[17])), Err(Errno::EINVAL));
        assert_eq!(
            CloneArgs::of_clone3(&raw(&[thread, 0, 0, 0, 17])),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            CloneArgs::of_clone3(&raw(&[0, 0, 0, 0, 65])),
            Err(Errno::EINVAL)
        );
        // A stack is a base and a size.
        assert_eq!(
            CloneArgs::of_clone3(&raw(&[0, 0, 0, 0, 17, 0x1000])),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            CloneArgs::of_clone3(&raw(&[0, 0, 0, 0, 17, 0, 0x1000])),
            Err(Errno::EINVAL)
        );
        // set_tid and its size go together; unsupported either way.
        let st = |tid: u64, n: u64| raw(&[0, 0, 0, 0, 17, 0, 0, 0, tid, n]);
        assert_eq!(CloneArgs::of_clone3(&st(0x1000, 0)), Err(Errno::EINVAL));
        assert_eq!(CloneArgs::of_clone3(&st(0, 1)), Err(Errno::EINVAL));
        assert_eq!(CloneArgs::of_clone3(&st(0x1000, 1)), Err(Errno::EINVAL));
        // Clearing the handlers cannot go with sharing them.
        let a = CloneArgs::of_clone3(&raw(&[CLONE_CLEAR_SIGHAND, 0, 0, 0, 17])).unwrap();
        assert!(a.clears_handlers());
        assert_eq!(
            CloneArgs::of_clone3(&raw(&[CLONE_CLEAR_SIGHAND | CLONE_SIGHAND | CLONE_VM])),
            Err(Errno::EINVAL)
        );
        // Flags no clone knows.
        assert_eq!(CloneArgs::of_clone3(&raw(&[1 << 40])), Err(Errno::EINVAL));
        // A pidfd and a parent tid both, in clone3.
        let a = CloneArgs::of_clone3(&raw(&[CLONE_PIDFD | CLONE_PARENT_SETTID, 40, 0, 48, 17]))
            .unwrap();
        assert_eq!((a.pidfd, a.parent_tid), (Some(40), 48));
        assert_eq!(
            CloneArgs::of_clone3(&raw(&[CLONE_PIDFD | thread])),
            Err(Errno::EINVAL)
        );
    }
}
