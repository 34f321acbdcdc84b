//! Process credentials: real, effective, saved and filesystem user and group ids and the
//! supplementary groups, with Linux's rules for changing them (`setuid(2)`, `setresuid(2)`,
//! `setgroups(2)`...). Inherited by `fork` and kept by `execve` (no set-user-id programs
//! here), which sets the saved and filesystem ids to the effective ones, as Linux. Init starts with the boot arguments' `USER` ids (`pvmux run --user UID[:GID]`),
//! else as root, and their `GROUPS` list as its supplementary groups (`--user NAME`'s
//! groups in the guest's /etc/group, `--group-add`), else none.
//!
//! The rules are pure functions over [`Creds`] (host unit tests); the system calls read and
//! write the current process's copy. As on Linux, only a process with `CAP_SETUID` (user
//! ids) or `CAP_SETGID` (group ids, supplementary groups) in its effective set may set
//! arbitrary ids; any other process may only move among its real, effective and saved ids.
//! A uid change adjusts the capability sets ([`super::caps`]: the capabilities fix-up).

use alloc::vec::Vec;

use pvmux_hypercalls::bootargs::{CapSets, Gids};

use super::caps::{cap, CapState};
use super::uaccess::{read_val, write_val};
use super::{Errno, SysResult};

/// The most supplementary groups (`NGROUPS_MAX`).
pub(crate) const NGROUPS_MAX: usize = 65536;

/// `-1` as an id argument: leave that id unchanged.
const KEEP: u32 = u32::MAX;

/// A process's credentials.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct Creds {
    /// Real, effective, saved and filesystem user ids.
    pub(crate) uid: u32,
    pub(crate) euid: u32,
    pub(crate) suid: u32,
    pub(crate) fsuid: u32,
    /// Real, effective, saved and filesystem group ids.
    pub(crate) gid: u32,
    pub(crate) egid: u32,
    pub(crate) sgid: u32,
    pub(crate) fsgid: u32,
    /// Supplementary groups.
    pub(crate) groups: Vec<u32>,
    /// Capability sets and the keep-capabilities flag.
    pub(crate) caps: CapState,
}

impl Default for CapState {
    /// Root's.
    fn default() -> Self {
        Self::for_uid(0)
    }
}

impl Creds {
    /// Every id `uid` / `gid`, no supplementary groups, the capabilities of
    /// [`CapState::for_uid`] (init's credentials when the host gives no sets).
    pub(crate) fn new(uid: u32, gid: u32) -> Self {
        Self {
            uid,
            euid: uid,
            suid: uid,
            fsuid: uid,
            gid,
            egid: gid,
            sgid: gid,
            fsgid: gid,
            groups: Vec::new(),
            caps: CapState::for_uid(uid),
        }
    }

    /// Whether capability `c` is in the effective set.
    pub(crate) fn capable(&self, c: u32) -> bool {
        self.caps.has(c)
    }

    /// Sets the real, effective, saved and filesystem uids (the filesystem one follows the
    /// effective one), with the capabilities fix-up.
    fn put_uids(&mut self, uid: u32, euid: u32, suid: u32) {
        let old = [self.uid, self.euid, self.suid];
        (self.uid, self.euid, self.suid, self.fsuid) = (uid, euid, suid, euid);
        self.caps.fix_setuid(old, [uid, euid, suid]);
    }

    /// `execve`: the saved and filesystem ids become the effective ones, and the
    /// capabilities are recomputed ([`CapState::exec`]).
    pub(crate) fn exec(&mut self) {
        self.suid = self.euid;
        self.fsuid = self.euid;
        self.sgid = self.egid;
        self.fsgid = self.egid;
        self.caps.exec(self.uid, self.euid);
    }

    /// `setresuid(r, e, s)` (`u32::MAX` keeps an id): unprivileged, each new id must be one
    /// of the current real, effective or saved ids (`EPERM`). The filesystem uid follows the
    /// effective one.
    pub(crate) fn setresuid(&mut self, r: u32, e: u32, s: u32) -> Result<(), Errno> {
        let allowed = |v: u32| v == KEEP || v == self.uid || v == self.euid || v == self.suid;
        if !self.capable(cap::SETUID) && (!allowed(r) || !allowed(e) || !allowed(s)) {
            return Err(Errno::EPERM);
        }
        let pick = |new: u32, old: u32| if new == KEEP { old } else { new };
        self.put_uids(pick(r, self.uid), pick(e, self.euid), pick(s, self.suid));
        Ok(())
    }

    /// `setresgid(r, e, s)`: as [`Creds::setresuid`] for the group ids (`CAP_SETGID`).
    pub(crate) fn setresgid(&mut self, r: u32, e: u32, s: u32) -> Result<(), Errno> {
        let allowed = |v: u32| v == KEEP || v == self.gid || v == self.egid || v == self.sgid;
        if !self.capable(cap::SETGID) && (!allowed(r) || !allowed(e) || !allowed(s)) {
            return Err(Errno::EPERM);
        }
        let pick = |new: u32, old: u32| if new == KEEP { old } else { new };
        (self.gid, self.egid, self.sgid) =
            (pick(r, self.gid), pick(e, self.egid), pick(s, self.sgid));
        self.fsgid = self.egid;
        Ok(())
    }

    /// `setuid(u)`: privileged, all three ids; else only the effective one, to the real or
    /// saved id (`EPERM`).
    pub(crate) fn setuid(&mut self, u: u32) -> Result<(), Errno> {
        if u == KEEP {
            return Err(Errno::EINVAL);
        }
        if self.capable(cap::SETUID) {
            return self.setresuid(u, u, u);
        }
        if u != self.uid && u != self.suid {
            return Err(Errno::EPERM);
        }
        self.setresuid(KEEP, u, KEEP)
    }

    /// `setgid(g)`: as [`Creds::setuid`] for the group ids.
    pub(crate) fn setgid(&mut self, g: u32) -> Result<(), Errno> {
        if g == KEEP {
            return Err(Errno::EINVAL);
        }
        if self.capable(cap::SETGID) {
            return self.setresgid(g, g, g);
        }
        if g != self.gid && g != self.sgid {
            return Err(Errno::EPERM);
        }
        self.setresgid(KEEP, g, KEEP)
    }

    /// `setreuid(r, e)`: unprivileged, the real id may become the effective one and the
    /// effective id the real or saved one; the saved id becomes the new effective id when
    /// the real id is set or the effective id changes to something other than the old real
    /// id (Linux's rule).
    pub(crate) fn setreuid(&mut self, r: u32, e: u32) -> Result<(), Errno> {
        let old = self.clone();
        if !self.capable(cap::SETUID)
            && ((r != KEEP && r != old.uid && r != old.euid)
                || (e != KEEP && e != old.uid && e != old.euid && e != old.suid))
        {
            return Err(Errno::EPERM);
        }
        let new_uid = if r == KEEP { old.uid } else { r };
        let new_euid = if e == KEEP { old.euid } else { e };
        let new_suid = if r != KEEP || (e != KEEP && e != old.uid) {
            new_euid
        } else {
            old.suid
        };
        self.put_uids(new_uid, new_euid, new_suid);
        Ok(())
    }

    /// `setregid(r, e)`: as [`Creds::setreuid`] for the group ids.
    pub(crate) fn setregid(&mut self, r: u32, e: u32) -> Result<(), Errno> {
        let old = self.clone();
        if !self.capable(cap::SETGID)
            && ((r != KEEP && r != old.gid && r != old.egid)
                || (e != KEEP && e != old.gid && e != old.egid && e != old.sgid))
        {
            return Err(Errno::EPERM);
        }
        let new_gid = if r == KEEP { old.gid } else { r };
        let new_egid = if e == KEEP { old.egid } else { e };
        let new_sgid = if r != KEEP || (e != KEEP && e != old.gid) {
            new_egid
        } else {
            old.sgid
        };
        (self.gid, self.egid, self.sgid, self.fsgid) = (new_gid, new_egid, new_sgid, new_egid);
        Ok(())
    }

    /// `setgroups`: `CAP_SETGID` only (`EPERM`), at most [`NGROUPS_MAX`] (`EINVAL`). Kept
    /// sorted, as Linux does (`groups_sort`): `getgroups` returns them in ascending order,
    /// duplicates included.
    pub(crate) fn setgroups(&mut self, mut groups: Vec<u32>) -> Result<(), Errno> {
        if !self.capable(cap::SETGID) {
            return Err(Errno::EPERM);
        }
        if groups.len() > NGROUPS_MAX {
            return Err(Errno::EINVAL);
        }
        groups.sort_unstable();
        self.groups = groups;
        Ok(())
    }

    /// `setfsuid(u)`: set if `CAP_SETUID` or one of the process's uids (else unchanged),
    /// with the filesystem capabilities fix-up; returns the old id.
    pub(crate) fn setfsuid(&mut self, u: u32) -> u32 {
        let old = self.fsuid;
        if self.capable(cap::SETUID) || [self.uid, self.euid, self.suid].contains(&u) {
            self.fsuid = u;
            self.caps.fix_setfsuid(old, u);
        }
        old
    }

    /// `setfsgid(g)`: as [`Creds::setfsuid`] (`CAP_SETGID`, no fix-up).
    pub(crate) fn setfsgid(&mut self, g: u32) -> u32 {
        let old = self.fsgid;
        if self.capable(cap::SETGID) || [self.gid, self.egid, self.sgid].contains(&g) {
            self.fsgid = g;
        }
        old
    }
}

pub(crate) use crate::fs::perm::access;

/// Whether a process with filesystem ids `uid`/`gid`, supplementary `groups` and effective
/// capabilities `caps` may access a file of permission bits `mode`, owned by
/// `owner`/`group`, for `want` ([`access`] bits): Linux's DAC rule
/// ([`crate::fs::perm::permitted`]). With every filesystem capability (root) it may read
/// and write anything, and execute a file with any execute bit (or search any directory:
/// `dir`); anyone else is judged by the owner class if it owns the file, else the group
/// class if in its group, else the others, and the capabilities it holds.
pub(crate) fn permitted(
    ids: (u32, u32, &[u32], u64),
    (mode, owner, group, dir): (u32, u32, u32, bool),
    want: u32,
) -> bool {
    let m = crate::fs::perm::Meta {
        perm: mode,
        uid: owner,
        gid: group,
        dir,
    };
    crate::fs::perm::permitted(ids, &m, want)
}

/// The filesystem credentials the current process's file operations are checked against
/// (`None` with every filesystem capability — root — and in a kernel thread that runs no
/// process).
pub(crate) fn fs_cred() -> Option<crate::fs::perm::Cred> {
    let t = super::task::try_current_task()?;
    let c = t.process.creds.lock();
    crate::fs::perm::Cred::checked(c.fsuid, c.fsgid, &c.groups, c.caps.sets.effective)
}

/// The effective capabilities of the process loading a program: the current process's, or
/// for init (loaded by a kernel thread, as [`exec_ids`]) its sets from the boot arguments.
pub(crate) fn exec_caps() -> u64 {
    match super::task::try_current_task() {
        Some(t) => t.process.creds.lock().caps.sets.effective,
        None => for_init().caps.sets.effective,
    }
}

/// The owner of a file the current process creates: its filesystem uid and gid (root in a
/// kernel thread that runs no process, e.g. while unpacking the initramfs).
pub(crate) fn fs_owner() -> (u32, u32) {
    match super::task::try_current_task() {
        Some(t) => {
            let c = t.process.creds.lock();
            (c.fsuid, c.fsgid)
        }
        None => (0, 0),
    }
}

/// `(uid, euid, gid, egid)` for a program being loaded (`AT_UID`, `AT_EUID`, `AT_GID`,
/// `AT_EGID`): the current process's ids, or for init (loaded by a kernel thread before its
/// process exists) the boot arguments' `USER` ids, else root.
pub(crate) fn exec_ids() -> [u32; 4] {
    match super::task::try_current_task() {
        Some(t) => {
            let c = t.process.creds.lock();
            [c.uid, c.euid, c.gid, c.egid]
        }
        None => {
            let (u, g) = crate::boot::args().user().unwrap_or((0, 0));
            [u, u, g, g]
        }
    }
}

/// Init's credentials: the boot arguments' `USER` ids (else root) and `GROUPS` list (else
/// none; the host sends it ascending, as [`Creds::setgroups`] keeps it).
pub(crate) fn for_init() -> Creds {
    let args = crate::boot::args();
    let (uid, gid) = args.user().unwrap_or((0, 0));
    let mut c = Creds::new(uid, gid);
    if let Some(g) = args.groups() {
        c.groups = g.iter().collect();
    }
    // The host's sets (`CAPS`) are those init holds when it calls `execve` (as runc's
    // `capset` leaves them): init runs with what Linux's `execve` rules make of them.
    if let Some(sets) = args.caps() {
        c.caps = CapState { sets, keep: false };
        c.caps.exec(c.uid, c.euid);
    }
    c
}

/// What an exec request asks of its program's credentials (the ABI's `USER`, `GROUPS` and
/// `CAPS` parts, each optional).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ExecIds<'a> {
    /// The user and group ids.
    pub(crate) user: Option<(u32, u32)>,
    /// The supplementary groups (ascending, as the ABI checked them).
    pub(crate) groups: Option<Gids<'a>>,
    /// The capability sets (valid, as the ABI checked them).
    pub(crate) caps: Option<CapSets>,
}

/// The credentials of a process an exec session starts (as runc gives an exec'd process):
/// with `user`, those ids, no supplementary groups and what `execve` makes of the
/// container's capability sets (`container_caps`, the boot arguments' `CAPS`) for those ids
/// if the host sent them, else
/// [`CapState::for_uid`]'s; without, a copy of `init`'s (root's if init is gone). Then the
/// request's groups, if given, replace those, and its sets, if given, are those the process
/// holds when it calls `execve` (as runc's `capset` leaves them before it runs the program):
/// the program runs with what Linux's `execve` rules make of them ([`CapState::exec`]; for
/// root, every capability of the bounding and inheritable sets is permitted and effective).
pub(crate) fn for_exec_session(
    ids: ExecIds<'_>,
    init: Option<&Creds>,
    container_caps: Option<CapSets>,
) -> Creds {
    let mut c = match (ids.user, init) {
        (Some((uid, gid)), _) => {
            let mut c = Creds::new(uid, gid);
            if let Some(sets) = container_caps {
                c.caps = CapState { sets, keep: false };
                c.caps.exec(c.uid, c.euid);
            }
            c
        }
        (None, Some(i)) => i.clone(),
        (None, None) => Creds::default(),
    };
    if let Some(g) = ids.groups {
        c.groups = g.iter().collect();
    }
    if let Some(sets) = ids.caps {
        c.caps = CapState { sets, keep: false };
        c.caps.exec(c.uid, c.euid);
    }
    c
}

/// The current process's supplementary groups, or for init (loaded by a kernel thread before
/// its process exists, as [`exec_ids`]) the boot arguments' `GROUPS`.
pub(crate) fn fs_groups() -> Vec<u32> {
    match super::task::try_current_task() {
        Some(t) => t.process.creds.lock().groups.clone(),
        None => for_init().groups,
    }
}

/// The current process's credentials (a copy).
pub(crate) fn current() -> Creds {
    super::task::current_process().creds.lock().clone()
}

/// Changes the current process's credentials with `f`.
fn change(f: impl FnOnce(&mut Creds) -> Result<(), Errno>) -> SysResult {
    let p = super::task::current_process();
    let mut c = p.creds.lock();
    f(&mut c).map(|()| 0)
}

/// Writes three ids to three user addresses (`EFAULT` for a bad one, as Linux).
fn put3(va: [u64; 3], v: [u32; 3]) -> SysResult {
    for (a, x) in va.into_iter().zip(v) {
        write_val(a, &x)?;
    }
    Ok(0)
}

/// The credential system calls (`n` one of them, `a` its arguments).
pub(crate) fn syscall(n: u64, a: [u64; 6]) -> Option<SysResult> {
    use super::abi::nr;
    let id = |v: u64| v as u32;
    Some(match n {
        nr::GETUID => Ok(u64::from(current().uid)),
        nr::GETEUID => Ok(u64::from(current().euid)),
        nr::GETGID => Ok(u64::from(current().gid)),
        nr::GETEGID => Ok(u64::from(current().egid)),
        nr::GETRESUID => {
            let c = current();
            put3([a[0], a[1], a[2]], [c.uid, c.euid, c.suid])
        }
        nr::GETRESGID => {
            let c = current();
            put3([a[0], a[1], a[2]], [c.gid, c.egid, c.sgid])
        }
        nr::SETUID => change(|c| c.setuid(id(a[0]))),
        nr::SETGID => change(|c| c.setgid(id(a[0]))),
        nr::SETREUID => change(|c| c.setreuid(id(a[0]), id(a[1]))),
        nr::SETREGID => change(|c| c.setregid(id(a[0]), id(a[1]))),
        nr::SETRESUID => change(|c| c.setresuid(id(a[0]), id(a[1]), id(a[2]))),
        nr::SETRESGID => change(|c| c.setresgid(id(a[0]), id(a[1]), id(a[2]))),
        // Return the old id; set the new one if allowed, never fail.
        nr::SETFSUID => Ok(u64::from(
            super::task::current_process()
                .creds
                .lock()
                .setfsuid(id(a[0])),
        )),
        nr::SETFSGID => Ok(u64::from(
            super::task::current_process()
                .creds
                .lock()
                .setfsgid(id(a[0])),
        )),
        nr::CAPGET => super::caps::sys_capget(a[0], a[1]),
        nr::CAPSET => super::caps::sys_capset(a[0], a[1]),
        nr::GETGROUPS => {
            let groups = current().groups;
            let size = a[0] as i32;
            if size < 0 {
                return Some(Err(Errno::EINVAL));
            }
            if size == 0 {
                return Some(Ok(groups.len() as u64));
            }
            if (size as usize) < groups.len() {
                return Some(Err(Errno::EINVAL));
            }
            for (i, g) in groups.iter().enumerate() {
                if let Err(e) = write_val(a[1] + 4 * i as u64, g) {
                    return Some(Err(e));
                }
            }
            Ok(groups.len() as u64)
        }
        nr::SETGROUPS => {
            let size = a[0] as i32;
            if size < 0 || size as usize > NGROUPS_MAX {
                return Some(Err(Errno::EINVAL));
            }
            let mut groups = Vec::new();
            if groups.try_reserve_exact(size as usize).is_err() {
                return Some(Err(Errno::ENOMEM));
            }
            for i in 0..size as u64 {
                match read_val::<u32>(a[1] + 4 * i) {
                    Ok(g) => groups.push(g),
                    Err(e) => return Some(Err(e)),
                }
            }
            change(|c| c.setgroups(groups))
        }
        _ => return None,
    })
}

/// Whether a process with credentials `sender` may send a signal to one with `target`
/// (Linux's `kill_ok_by_cred`): `CAP_KILL`, or the sender's real or effective uid is the
/// target's real or saved uid. (`SIGCONT` within a session is allowed besides: the caller.)
pub(crate) fn may_signal(sender: &Creds, target: &Creds) -> bool {
    sender.capable(cap::KILL)
        || sender.euid == target.suid
        || sender.euid == target.uid
        || sender.uid == target.suid
        || sender.uid == target.uid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_follow_linux_s_uid_rules() {
        let root = Creds::new(0, 0);
        let alice = Creds::new(1000, 1000);
        let bob = Creds::new(1001, 1001);
        assert!(may_signal(&root, &alice));
        assert!(may_signal(&alice, &alice));
        assert!(!may_signal(&alice, &bob));
        assert!(!may_signal(&alice, &root));
        // A set-uid program (euid 0, real uid alice) may be signalled by alice, and one that
        // dropped to bob but kept alice as its saved uid too.
        let mut setuid = Creds::new(1000, 1000);
        setuid.euid = 0;
        assert!(may_signal(&alice, &setuid));
        let mut dropped = Creds::new(1001, 1001);
        dropped.suid = 1000;
        assert!(may_signal(&alice, &dropped));
        assert!(!may_signal(&bob, &setuid));
    }

    #[test]
    fn root_may_set_anything_once() {
        let mut c = Creds::new(0, 0);
        c.setuid(1000).unwrap();
        assert_eq!((c.uid, c.euid, c.suid, c.fsuid), (1000, 1000, 1000, 1000));
        // Privilege is gone for good.
        assert_eq!(c.setuid(0), Err(Errno::EPERM));
        assert_eq!(c.setgroups(alloc::vec![1]), Err(Errno::EPERM));
        assert_eq!(c.setgid(5), Err(Errno::EPERM));
    }

    #[test]
    fn capabilities_decide_and_follow_uid_changes() {
        use super::super::caps::cap;
        use pvmux_hypercalls::bootargs::CAP_FULL_SET;
        // Root without CAP_SETUID is held to the unprivileged rule, but keeps CAP_SETGID.
        let mut c = Creds::new(0, 0);
        c.caps.sets.effective &= !(1 << cap::SETUID);
        assert_eq!(c.setuid(1000), Err(Errno::EPERM));
        c.setgid(5).unwrap();
        // A user with CAP_KILL may signal anyone.
        let mut k = Creds::new(1000, 1000);
        assert!(!may_signal(&k, &Creds::new(0, 0)));
        k.caps.sets.permitted = 1 << cap::KILL;
        k.caps.sets.effective = 1 << cap::KILL;
        assert!(may_signal(&k, &Creds::new(0, 0)));
        // setresuid keeping saved uid 0: effective cleared, then restored.
        let mut c = Creds::new(0, 0);
        c.setresuid(1000, 1000, 0).unwrap();
        assert_eq!(
            (c.caps.sets.effective, c.caps.sets.permitted),
            (0, CAP_FULL_SET)
        );
        c.setresuid(KEEP, 0, KEEP).unwrap();
        assert_eq!(c.caps.sets.effective, CAP_FULL_SET);
        // setuid to a user: all gone; with keepcaps, permitted stays.
        let mut c = Creds::new(0, 0);
        c.setuid(65534).unwrap();
        assert_eq!(c.caps, CapState::for_uid(65534));
        let mut c = Creds::new(0, 0);
        c.caps.keep = true;
        c.setuid(65534).unwrap();
        assert_eq!(
            (c.caps.sets.effective, c.caps.sets.permitted),
            (0, CAP_FULL_SET)
        );
        // setfsuid drops the filesystem capabilities from the effective set.
        let mut c = Creds::new(0, 0);
        assert_eq!(c.setfsuid(1000), 0);
        assert!(!c.capable(cap::CHOWN) && c.capable(cap::SETUID));
        assert_eq!(c.setfsuid(0), 1000);
        assert!(c.capable(cap::CHOWN));
        // execve: saved ids follow the effective ones; a user loses permitted capabilities.
        let mut c = Creds::new(0, 0);
        c.caps.keep = true;
        c.setresuid(1000, 1000, 1000).unwrap();
        c.exec();
        assert_eq!((c.caps.sets.permitted, c.caps.sets.effective), (0, 0));
    }

    #[test]
    fn unprivileged_moves_among_its_own_ids() {
        let mut c = Creds::new(0, 0);
        c.setresuid(1000, 2000, 0).unwrap();
        // Effective 2000: unprivileged; may take any of 1000, 2000, 0 (saved).
        assert_eq!(c.setresuid(KEEP, 3000, KEEP), Err(Errno::EPERM));
        c.setresuid(KEEP, 0, KEEP).unwrap();
        assert_eq!(c.euid, 0, "back to the saved root id");
        c.setresuid(1000, 1000, 1000).unwrap();
        assert_eq!(c.setuid(0), Err(Errno::EPERM));
        c.setuid(1000).unwrap();
        assert_eq!(c.setreuid(KEEP, 5), Err(Errno::EPERM));
    }

    #[test]
    fn setreuid_updates_the_saved_id_like_linux() {
        let mut c = Creds::new(0, 0);
        c.setresuid(1000, 0, 0).unwrap();
        // Effective changes to something other than the real id: saved follows.
        c.setreuid(KEEP, 2000).unwrap();
        assert_eq!((c.uid, c.euid, c.suid), (1000, 2000, 2000));
        let mut c = Creds::new(0, 0);
        c.setresuid(1000, 0, 0).unwrap();
        // Effective set to the real id: saved unchanged.
        c.setreuid(KEEP, 1000).unwrap();
        assert_eq!((c.uid, c.euid, c.suid), (1000, 1000, 0));
    }

    #[test]
    fn dac_like_linux() {
        let file = |mode| (mode, 1000, 100, false);
        // Root: read/write anything, execute with any x bit.
        assert!(permitted(
            (0, 0, &[], u64::MAX),
            file(0o000),
            access::R | access::W
        ));
        assert!(!permitted((0, 0, &[], u64::MAX), file(0o644), access::X));
        assert!(permitted((0, 0, &[], u64::MAX), file(0o001), access::X));
        assert!(permitted(
            (0, 0, &[], u64::MAX),
            (0o000, 1, 1, true),
            access::X
        ));
        // The owner class decides for the owner, even when others may do more.
        assert!(!permitted((1000, 5, &[], 0), file(0o077), access::R));
        assert!(permitted(
            (1000, 5, &[], 0),
            file(0o600),
            access::R | access::W
        ));
        // Group (primary or supplementary), then others.
        assert!(permitted((2000, 100, &[], 0), file(0o640), access::R));
        assert!(permitted((2000, 7, &[100], 0), file(0o640), access::R));
        assert!(!permitted((2000, 100, &[], 0), file(0o640), access::W));
        assert!(!permitted((2000, 7, &[], 0), file(0o640), access::R));
        assert!(permitted(
            (2000, 7, &[], 0),
            file(0o645),
            access::R | access::X
        ));
    }

    #[test]
    fn groups() {
        let mut c = Creds::new(0, 7);
        c.setgroups(alloc::vec![20, 10, 20]).unwrap();
        assert_eq!(c.groups, [10, 20, 20], "sorted as Linux, duplicates kept");
        c.setgroups(alloc::vec![10, 20]).unwrap();
        assert_eq!(c.groups, [10, 20]);
        c.setgid(8).unwrap();
        assert_eq!((c.gid, c.egid, c.sgid, c.fsgid), (8, 8, 8, 8));
    }

    #[test]
    fn exec_session_credentials() {
        let mut init = Creds::new(0, 0);
        init.groups = alloc::vec![4, 27];
        init.caps.keep = true;
        let container = CapSets {
            effective: 1 << cap::KILL,
            permitted: 1 << cap::KILL,
            inheritable: 0,
            bounding: 1 << cap::KILL | 1 << cap::CHOWN,
            ambient: 0,
        };
        let ids = [10u32, 20].map(u32::to_le_bytes).concat();
        let groups = Gids::from_le_bytes(&ids);
        let reduced = CapSets {
            effective: 1 << cap::CHOWN,
            permitted: 1 << cap::CHOWN,
            inheritable: 1 << cap::CHOWN,
            bounding: 1 << cap::CHOWN,
            ambient: 1 << cap::CHOWN,
        };
        let exec = |user, groups, caps, init: Option<&Creds>, container| {
            for_exec_session(ExecIds { user, groups, caps }, init, container)
        };
        // Nothing asked: init's credentials (root's without init).
        assert_eq!(exec(None, None, None, Some(&init), Some(container)), init);
        assert_eq!(exec(None, None, None, None, None), Creds::default());
        // A user: its ids, no groups, what `execve` makes of the container's sets for it
        // (runc's `exec --user` without a process file: no ambient set, nothing permitted;
        // the bounding set kept), else those of its uid.
        let u = exec(Some((1000, 100)), None, None, Some(&init), Some(container));
        assert_eq!((u.uid, u.euid, u.suid, u.fsuid), (1000, 1000, 1000, 1000));
        assert_eq!((u.gid, u.egid, u.sgid, u.fsgid), (100, 100, 100, 100));
        assert!(u.groups.is_empty());
        let mut want = CapState {
            sets: container,
            keep: false,
        };
        want.exec(1000, 1000);
        assert_eq!(u.caps, want);
        assert_eq!(
            (u.caps.sets.permitted, u.caps.sets.bounding),
            (0, container.bounding)
        );
        // Root with the container's sets: its bounding set becomes permitted and effective.
        let r = exec(Some((0, 0)), None, None, Some(&init), Some(container));
        assert_eq!(r.caps.sets.effective, container.bounding);
        let u = exec(Some((1000, 100)), None, None, Some(&init), None);
        assert_eq!(u.caps, CapState::for_uid(1000));
        // The request's groups replace those, with or without a user; its sets are those
        // before `execve`: a user keeps its ambient set (permitted and effective), root gets
        // its bounding and inheritable sets.
        let u = exec(
            Some((1000, 100)),
            groups,
            Some(reduced),
            Some(&init),
            Some(container),
        );
        assert_eq!(u.groups, [10, 20]);
        assert_eq!(u.caps.sets, reduced);
        assert!(u.capable(cap::CHOWN) && !u.capable(cap::KILL));
        let no_ambient = CapSets {
            ambient: 0,
            ..reduced
        };
        let u = exec(Some((1000, 100)), None, Some(no_ambient), None, None);
        assert_eq!((u.caps.sets.permitted, u.caps.sets.effective), (0, 0));
        assert_eq!(u.caps.sets.bounding, 1 << cap::CHOWN);
        let r = exec(None, groups, Some(reduced), Some(&init), None);
        assert_eq!((r.uid, r.gid, &r.groups[..]), (0, 0, &[10, 20][..]));
        assert_eq!(
            r.caps,
            CapState {
                sets: reduced,
                keep: false
            }
        );
        // runc's example: bounding CHOWN+KILL, permitted CHOWN+KILL, effective,
        // inheritable and ambient KILL; root ends with CHOWN+KILL permitted and effective.
        let kill = 1 << cap::KILL;
        let runc = CapSets {
            effective: kill,
            permitted: kill | 1 << cap::CHOWN,
            inheritable: kill,
            bounding: kill | 1 << cap::CHOWN,
            ambient: kill,
        };
        let r = exec(Some((0, 0)), None, Some(runc), None, None);
        assert_eq!(r.caps.sets.effective, kill | 1 << cap::CHOWN);
        assert_eq!(r.caps.sets.permitted, kill | 1 << cap::CHOWN);
        assert_eq!((r.caps.sets.inheritable, r.caps.sets.ambient), (kill, kill));
        let none = Gids::from_le_bytes(&[]);
        assert!(exec(None, none, None, Some(&init), None).groups.is_empty());
    }
}
