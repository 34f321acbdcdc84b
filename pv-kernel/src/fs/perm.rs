//! Linux's discretionary access control (DAC), as pure decisions: who may search a
//! directory, open a file for reading or writing, create or remove a name, change a file's
//! mode, owner or times. The filesystem ([`super::ramfs`]) asks these with the calling
//! process's filesystem credentials ([`Cred`]) and the metadata `stat` shows ([`Meta`]);
//! the Linux layer asks them for the calls it decides itself (`access`, `execve`).
//!
//! Root — a filesystem uid of 0 — is not checked at all (the guest has no finer
//! capabilities, so root holds `CAP_DAC_OVERRIDE`, `CAP_FOWNER`, `CAP_CHOWN` and
//! `CAP_FSETID`), except that executing a non-directory needs some execute bit
//! ([`permitted`]). The filesystem represents root as "no credentials" (`None`).
//!
//! Errors are Linux's: `EACCES` for a missing permission bit, `EPERM` for an operation
//! only the owner (or root) may do, and for the sticky-directory rule.

#![forbid(unsafe_code)]

use alloc::vec::Vec;

use super::Errno;

/// Access bits: read, write, execute (search for a directory); `access(2)`'s `R_OK`,
/// `W_OK`, `X_OK`.
pub(crate) mod access {
    /// Read.
    pub(crate) const R: u32 = 4;
    /// Write.
    pub(crate) const W: u32 = 2;
    /// Execute (or search).
    pub(crate) const X: u32 = 1;
}

/// `S_ISUID`.
const S_ISUID: u32 = 0o4000;
/// `S_ISGID`.
const S_ISGID: u32 = 0o2000;
/// `S_ISVTX`: the sticky bit.
const S_ISVTX: u32 = 0o1000;

/// The filesystem credentials of a process that is not root: its filesystem uid and gid and
/// its supplementary groups.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct Cred {
    /// Filesystem uid (never 0 here).
    pub(crate) uid: u32,
    /// Filesystem gid.
    pub(crate) gid: u32,
    /// Supplementary groups.
    pub(crate) groups: Vec<u32>,
}

impl Cred {
    /// The credentials to check, or `None` for root (filesystem uid 0: not checked).
    pub(crate) fn checked(uid: u32, gid: u32, groups: &[u32]) -> Option<Self> {
        (uid != 0).then(|| Self {
            uid,
            gid,
            groups: groups.to_vec(),
        })
    }

    /// Whether the process is in group `g` (primary or supplementary).
    pub(crate) fn in_group(&self, g: u32) -> bool {
        self.gid == g || self.groups.contains(&g)
    }
}

/// The metadata a decision looks at, as `stat` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Permission bits (`0o7777`: with set-user-id, set-group-id and sticky).
    pub(crate) perm: u32,
    /// Owner.
    pub(crate) uid: u32,
    /// Group.
    pub(crate) gid: u32,
    /// A directory.
    pub(crate) dir: bool,
}

/// The permission class that applies to `c` for `m`: owner, else group (primary or
/// supplementary), else others — only one class is looked at, as on Linux.
fn class(c: &Cred, m: &Meta) -> u32 {
    if c.uid == m.uid {
        (m.perm >> 6) & 7
    } else if c.in_group(m.gid) {
        (m.perm >> 3) & 7
    } else {
        m.perm & 7
    }
}

/// Whether a process with filesystem ids `uid`/`gid` and supplementary `groups` may access
/// `m` for `want` ([`access`] bits). Root may read and write anything, and execute a file
/// with any execute bit (or search any directory).
pub(crate) fn permitted((uid, gid, groups): (u32, u32, &[u32]), m: &Meta, want: u32) -> bool {
    match Cred::checked(uid, gid, groups) {
        None => want & access::X == 0 || m.dir || m.perm & 0o111 != 0,
        Some(c) => class(&c, m) & want == want,
    }
}

/// `inode_permission`: `want` ([`access`] bits) on `m`, `EACCES` if refused. Root (`None`)
/// always may (the filesystem never asks root to execute).
pub(crate) fn check(c: Option<&Cred>, m: &Meta, want: u32) -> Result<(), Errno> {
    match c {
        Some(c) if class(c, m) & want != want => Err(Errno::EACCES),
        _ => Ok(()),
    }
}

/// `may_create`: a new name in directory `dir` needs write and search permission on it.
pub(crate) fn may_create(c: Option<&Cred>, dir: &Meta) -> Result<(), Errno> {
    check(c, dir, access::W | access::X)
}

/// `may_delete`: removing (or renaming away, or replacing) `victim` from `dir` needs write
/// and search permission on `dir` (`EACCES`), and in a sticky directory the process must
/// own `victim` or `dir` (`EPERM`).
pub(crate) fn may_delete(c: Option<&Cred>, dir: &Meta, victim: &Meta) -> Result<(), Errno> {
    check(c, dir, access::W | access::X)?;
    match c {
        Some(c) if dir.perm & S_ISVTX != 0 && c.uid != victim.uid && c.uid != dir.uid => {
            Err(Errno::EPERM)
        }
        _ => Ok(()),
    }
}

/// Whether the process owns `m` or is root (`inode_owner_or_capable`).
fn owner(c: Option<&Cred>, m: &Meta) -> bool {
    c.is_none_or(|c| c.uid == m.uid)
}

/// `chmod`: only the owner or root (`EPERM`). Returns the bits to set: as Linux, a process
/// not in the file's group (and not root) cannot set the set-group-id bit (it is dropped).
pub(crate) fn chmod(c: Option<&Cred>, m: &Meta, perm: u32) -> Result<u32, Errno> {
    if !owner(c, m) {
        return Err(Errno::EPERM);
    }
    Ok(match c {
        Some(c) if !c.in_group(m.gid) => perm & !S_ISGID,
        _ => perm,
    })
}

/// `chown(uid, gid)` (`u32::MAX` keeps a value): changing the owner is root's alone (the
/// owner may "change" it to itself); changing the group needs the owner changing it to a
/// group it is in. `EPERM` otherwise.
pub(crate) fn chown(c: Option<&Cred>, m: &Meta, uid: u32, gid: u32) -> Result<(), Errno> {
    let Some(c) = c else { return Ok(()) };
    let uid_ok = uid == u32::MAX || (c.uid == m.uid && uid == m.uid);
    let gid_ok = gid == u32::MAX || (c.uid == m.uid && (gid == m.gid || c.in_group(gid)));
    if uid_ok && gid_ok {
        Ok(())
    } else {
        Err(Errno::EPERM)
    }
}

/// What `utimensat` sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Times {
    /// Both times to now (a null `times`, or both `UTIME_NOW`): the owner, or anyone who
    /// may write the file (`EACCES`).
    Now,
    /// An explicit time: the owner only (`EPERM`).
    Explicit,
}

/// `utimensat`'s permission check.
pub(crate) fn set_times(c: Option<&Cred>, m: &Meta, t: Times) -> Result<(), Errno> {
    if owner(c, m) {
        return Ok(());
    }
    match t {
        Times::Now => check(c, m, access::W),
        Times::Explicit => Err(Errno::EPERM),
    }
}

/// `link`'s `protected_hardlinks` rule (on by default in the distributions): a process may
/// hard-link a file it does not own only if it is a regular file it may read and write and
/// that is neither set-user-id nor set-group-id-executable (`EPERM`).
pub(crate) fn may_hardlink(c: Option<&Cred>, m: &Meta, regular: bool) -> Result<(), Errno> {
    if owner(c, m) {
        return Ok(());
    }
    let safe = regular
        && m.perm & S_ISUID == 0
        && m.perm & (S_ISGID | 0o010) != (S_ISGID | 0o010)
        && check(c, m, access::R | access::W).is_ok();
    if safe {
        Ok(())
    } else {
        Err(Errno::EPERM)
    }
}

/// The access an `open` asks of an existing file, from its access mode and `O_TRUNC`
/// (`acc` the low two bits: read for `O_RDONLY`/`O_RDWR`/3, write for
/// `O_WRONLY`/`O_RDWR`/3 and for `truncate`).
pub(crate) const fn open_access(acc: u32, truncate: bool) -> u32 {
    let mut want = match acc & 3 {
        0 => access::R,
        1 => access::W,
        _ => access::R | access::W,
    };
    if truncate {
        want |= access::W;
    }
    want
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: Cred = Cred {
        uid: 1000,
        gid: 1000,
        groups: Vec::new(),
    };

    fn file(perm: u32, uid: u32, gid: u32) -> Meta {
        Meta {
            perm,
            uid,
            gid,
            dir: false,
        }
    }

    fn dir(perm: u32, uid: u32) -> Meta {
        Meta {
            perm,
            uid,
            gid: uid,
            dir: true,
        }
    }

    #[test]
    fn root_is_not_checked_but_executes_only_with_an_x_bit() {
        assert_eq!(Cred::checked(0, 5, &[1]), None);
        assert!(check(None, &file(0, 1, 1), access::R | access::W).is_ok());
        assert!(permitted((0, 0, &[]), &file(0o000, 1, 1), access::R));
        assert!(!permitted((0, 0, &[]), &file(0o644, 1, 1), access::X));
        assert!(permitted((0, 0, &[]), &file(0o001, 1, 1), access::X));
        assert!(permitted((0, 0, &[]), &dir(0, 1), access::X));
        assert!(may_delete(None, &dir(0o1755, 5), &file(0, 6, 6)).is_ok());
        assert_eq!(chmod(None, &file(0o600, 5, 5), 0o2755), Ok(0o2755));
        assert!(chown(None, &file(0o600, 5, 5), 7, 7).is_ok());
    }

    #[test]
    fn one_class_decides() {
        let c = Some(&USER);
        // The owner class, even when others may do more.
        assert_eq!(
            check(c, &file(0o077, 1000, 1), access::R),
            Err(Errno::EACCES)
        );
        assert!(check(c, &file(0o600, 1000, 1), access::R | access::W).is_ok());
        // Group, primary or supplementary.
        assert!(check(c, &file(0o640, 1, 1000), access::R).is_ok());
        let sup = Cred {
            groups: alloc::vec![50],
            ..USER
        };
        assert!(check(Some(&sup), &file(0o640, 1, 50), access::R).is_ok());
        assert_eq!(
            check(Some(&sup), &file(0o604, 1, 50), access::R),
            Err(Errno::EACCES)
        );
        // Others.
        assert_eq!(check(c, &file(0o600, 0, 0), access::R), Err(Errno::EACCES));
        assert!(check(c, &file(0o644, 0, 0), access::R).is_ok());
        assert!(!permitted((1000, 1000, &[]), &file(0o644, 0, 0), access::W));
    }

    #[test]
    fn names_need_write_and_search_and_the_sticky_rule() {
        let c = Some(&USER);
        assert_eq!(may_create(c, &dir(0o755, 0)), Err(Errno::EACCES));
        assert_eq!(may_create(c, &dir(0o733, 0)), Ok(()));
        assert_eq!(may_create(c, &dir(0o776, 0)), Err(Errno::EACCES));
        let tmp = dir(0o1777, 0);
        // Another user's file in /tmp: EPERM; own file, or own sticky dir: fine.
        assert_eq!(
            may_delete(c, &tmp, &file(0o666, 2000, 2000)),
            Err(Errno::EPERM)
        );
        assert_eq!(may_delete(c, &tmp, &file(0o600, 1000, 1000)), Ok(()));
        assert_eq!(
            may_delete(c, &dir(0o1777, 1000), &file(0o600, 2000, 2000)),
            Ok(())
        );
        // Without the sticky bit, a writable directory is enough.
        assert_eq!(
            may_delete(c, &dir(0o777, 0), &file(0o600, 2000, 2000)),
            Ok(())
        );
        assert_eq!(
            may_delete(c, &dir(0o755, 0), &file(0o600, 1000, 1000)),
            Err(Errno::EACCES)
        );
    }

    #[test]
    fn owner_only_metadata() {
        let c = Some(&USER);
        assert_eq!(chmod(c, &file(0o644, 0, 0), 0o600), Err(Errno::EPERM));
        assert_eq!(chmod(c, &file(0o644, 1000, 1000), 0o2600), Ok(0o2600));
        // Not in the file's group: set-group-id is dropped.
        assert_eq!(chmod(c, &file(0o644, 1000, 5), 0o2755), Ok(0o755));
        // chown: to oneself as owner only; chgrp to one's own groups.
        let own = file(0o644, 1000, 1000);
        assert_eq!(chown(c, &own, 1000, u32::MAX), Ok(()));
        assert_eq!(chown(c, &own, 0, u32::MAX), Err(Errno::EPERM));
        assert_eq!(chown(c, &own, u32::MAX, 5), Err(Errno::EPERM));
        let sup = Cred {
            groups: alloc::vec![5],
            ..USER
        };
        assert_eq!(chown(Some(&sup), &own, u32::MAX, 5), Ok(()));
        assert_eq!(
            chown(c, &file(0o644, 0, 1000), u32::MAX, 1000),
            Err(Errno::EPERM)
        );
        assert_eq!(chown(c, &file(0o644, 0, 0), u32::MAX, u32::MAX), Ok(()));
        // Times.
        assert_eq!(set_times(c, &file(0o666, 0, 0), Times::Now), Ok(()));
        assert_eq!(
            set_times(c, &file(0o644, 0, 0), Times::Now),
            Err(Errno::EACCES)
        );
        assert_eq!(
            set_times(c, &file(0o666, 0, 0), Times::Explicit),
            Err(Errno::EPERM)
        );
        assert_eq!(set_times(c, &own, Times::Explicit), Ok(()));
    }

    #[test]
    fn hardlinks_are_protected() {
        let c = Some(&USER);
        assert_eq!(may_hardlink(c, &file(0o600, 0, 0), true), Err(Errno::EPERM));
        assert_eq!(may_hardlink(c, &file(0o666, 0, 0), true), Ok(()));
        assert_eq!(
            may_hardlink(c, &file(0o4666, 0, 0), true),
            Err(Errno::EPERM)
        );
        assert_eq!(may_hardlink(c, &file(0o000, 1000, 0), true), Ok(()));
        assert_eq!(
            may_hardlink(c, &file(0o666, 0, 0), false),
            Err(Errno::EPERM)
        );
    }

    #[test]
    fn open_asks_what_the_mode_needs() {
        assert_eq!(open_access(0, false), access::R);
        assert_eq!(open_access(1, false), access::W);
        assert_eq!(open_access(2, false), access::R | access::W);
        assert_eq!(open_access(3, false), access::R | access::W);
        assert_eq!(open_access(0, true), access::R | access::W);
    }
}
