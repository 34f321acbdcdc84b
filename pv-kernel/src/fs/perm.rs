//! Linux's discretionary access control (DAC), as pure decisions: who may search a
//! directory, open a file for reading or writing, create or remove a name, change a file's
//! mode, owner or times. The filesystem ([`super::ramfs`]) asks these with the calling
//! process's filesystem credentials ([`Cred`]) and the metadata `stat` shows ([`Meta`]);
//! the Linux layer asks them for the calls it decides itself (`access`, `execve`).
//!
//! A process holding every filesystem capability (`CAP_CHOWN`, `CAP_DAC_OVERRIDE`,
//! `CAP_DAC_READ_SEARCH`, `CAP_FOWNER`, `CAP_FSETID` in its effective set: root, unless it
//! dropped some) is not checked at all, except that executing a non-directory needs some
//! execute bit ([`permitted`]); the filesystem represents it as "no credentials" (`None`).
//! Any other process is checked by its ids, with each capability it holds overriding the
//! rules Linux lets it override: `CAP_DAC_OVERRIDE` the permission bits (execute needs an
//! execute bit), `CAP_DAC_READ_SEARCH` reading files and reading and searching directories,
//! `CAP_FOWNER` the owner-only rules (mode, times, the sticky rule, hard links),
//! `CAP_CHOWN` ownership changes, `CAP_FSETID` keeping a set-group-id bit. A filesystem uid
//! of 0 without them is an ordinary id.
//!
//! Errors are Linux's: `EACCES` for a missing permission bit, `EPERM` for an operation
//! only the owner (or root) may do, and for the sticky-directory rule.

#![forbid(unsafe_code)]

use alloc::vec::Vec;

use super::Errno;
use crate::linux::caps::cap;

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

/// The filesystem capabilities: holding all of them in the effective set, a process is not
/// checked.
pub(crate) const ALL_CAPS: u64 = (1 << cap::CHOWN)
    | (1 << cap::DAC_OVERRIDE)
    | (1 << cap::DAC_READ_SEARCH)
    | (1 << cap::FOWNER)
    | (1 << cap::FSETID);

/// The filesystem credentials of a process that does not hold every filesystem capability:
/// its filesystem uid and gid, its supplementary groups and its effective capabilities.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct Cred {
    /// Filesystem uid.
    pub(crate) uid: u32,
    /// Filesystem gid.
    pub(crate) gid: u32,
    /// Supplementary groups.
    pub(crate) groups: Vec<u32>,
    /// Effective capabilities (a mask; only the filesystem ones matter).
    pub(crate) caps: u64,
}

impl Cred {
    /// The credentials to check, or `None` for a process holding [`ALL_CAPS`] (not
    /// checked).
    pub(crate) fn checked(uid: u32, gid: u32, groups: &[u32], caps: u64) -> Option<Self> {
        (caps & ALL_CAPS != ALL_CAPS).then(|| Self {
            uid,
            gid,
            groups: groups.to_vec(),
            caps,
        })
    }

    /// Whether capability `c` is effective.
    const fn has(&self, c: u32) -> bool {
        self.caps & (1 << c) != 0
    }

    /// Whether the permission bits (or the capabilities overriding them) allow `want` on
    /// `m`.
    fn allows(&self, m: &Meta, want: u32) -> bool {
        if class(self, m) & want == want {
            return true;
        }
        if self.has(cap::DAC_OVERRIDE) && (want & access::X == 0 || m.dir || m.perm & 0o111 != 0) {
            return true;
        }
        // Read on anything, search on directories.
        self.has(cap::DAC_READ_SEARCH) && want & access::W == 0 && (m.dir || want & access::X == 0)
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

/// Whether a process with filesystem ids `uid`/`gid`, supplementary `groups` and effective
/// capabilities `caps` may access `m` for `want` ([`access`] bits). With every filesystem
/// capability (root) it may read and write anything, and execute a file with any execute
/// bit (or search any directory).
pub(crate) fn permitted(
    (uid, gid, groups, caps): (u32, u32, &[u32], u64),
    m: &Meta,
    want: u32,
) -> bool {
    match Cred::checked(uid, gid, groups, caps) {
        None => want & access::X == 0 || m.dir || m.perm & 0o111 != 0,
        Some(c) => c.allows(m, want),
    }
}

/// `inode_permission`: `want` ([`access`] bits) on `m`, `EACCES` if refused. `None`
/// always may (the filesystem never asks it to execute).
pub(crate) fn check(c: Option<&Cred>, m: &Meta, want: u32) -> Result<(), Errno> {
    match c {
        Some(c) if !c.allows(m, want) => Err(Errno::EACCES),
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
        Some(c)
            if dir.perm & S_ISVTX != 0
                && c.uid != victim.uid
                && c.uid != dir.uid
                && !c.has(cap::FOWNER) =>
        {
            Err(Errno::EPERM)
        }
        _ => Ok(()),
    }
}

/// Whether the process owns `m` or has `CAP_FOWNER` (`inode_owner_or_capable`).
fn owner(c: Option<&Cred>, m: &Meta) -> bool {
    c.is_none_or(|c| c.uid == m.uid || c.has(cap::FOWNER))
}

/// `chmod`: only the owner or root (`EPERM`). Returns the bits to set: as Linux, a process
/// not in the file's group (and not root) cannot set the set-group-id bit (it is dropped).
pub(crate) fn chmod(c: Option<&Cred>, m: &Meta, perm: u32) -> Result<u32, Errno> {
    if !owner(c, m) {
        return Err(Errno::EPERM);
    }
    Ok(match c {
        Some(c) if !c.in_group(m.gid) && !c.has(cap::FSETID) => perm & !S_ISGID,
        _ => perm,
    })
}

/// `chown(uid, gid)` (`u32::MAX` keeps a value): changing the owner needs `CAP_CHOWN` (the
/// owner may "change" it to itself); changing the group needs `CAP_CHOWN` or the owner
/// changing it to a group it is in. `EPERM` otherwise.
pub(crate) fn chown(c: Option<&Cred>, m: &Meta, uid: u32, gid: u32) -> Result<(), Errno> {
    let Some(c) = c.filter(|c| !c.has(cap::CHOWN)) else {
        return Ok(());
    };
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
        caps: 0,
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
        assert_eq!(Cred::checked(0, 5, &[1], ALL_CAPS), None);
        assert!(check(None, &file(0, 1, 1), access::R | access::W).is_ok());
        assert!(permitted(
            (0, 0, &[], ALL_CAPS),
            &file(0o000, 1, 1),
            access::R
        ));
        assert!(!permitted(
            (0, 0, &[], ALL_CAPS),
            &file(0o644, 1, 1),
            access::X
        ));
        assert!(permitted(
            (0, 0, &[], ALL_CAPS),
            &file(0o001, 1, 1),
            access::X
        ));
        assert!(permitted((0, 0, &[], ALL_CAPS), &dir(0, 1), access::X));
        assert!(may_delete(None, &dir(0o1755, 5), &file(0, 6, 6)).is_ok());
        assert_eq!(chmod(None, &file(0o600, 5, 5), 0o2755), Ok(0o2755));
        assert!(chown(None, &file(0o600, 5, 5), 7, 7).is_ok());
    }

    #[test]
    fn each_capability_overrides_its_rules() {
        let with = |caps: u64| Cred { caps, ..USER };
        let bit = |c: u32| 1u64 << c;
        let secret = file(0o600, 0, 0);
        // A uid 0 without capabilities is an ordinary id (owner class of root's files).
        let root_nocaps = Cred {
            uid: 0,
            gid: 0,
            ..with(0)
        };
        assert_eq!(Cred::checked(0, 0, &[], 0), Some(root_nocaps.clone()));
        assert!(check(Some(&root_nocaps), &secret, access::R).is_ok());
        assert_eq!(
            check(Some(&root_nocaps), &file(0o600, 5, 5), access::R),
            Err(Errno::EACCES)
        );
        assert_eq!(
            chown(Some(&root_nocaps), &file(0o600, 0, 0), 5, u32::MAX),
            Err(Errno::EPERM)
        );
        // DAC_OVERRIDE: read and write anything, execute with an x bit.
        let dac = with(bit(cap::DAC_OVERRIDE));
        assert!(check(Some(&dac), &secret, access::R | access::W).is_ok());
        assert!(!permitted(
            (1000, 1000, &[], dac.caps),
            &file(0o644, 0, 0),
            access::X
        ));
        assert!(permitted(
            (1000, 1000, &[], dac.caps),
            &file(0o100, 0, 0),
            access::X
        ));
        // DAC_READ_SEARCH: read files, read and search directories, never write.
        let rs = with(bit(cap::DAC_READ_SEARCH));
        assert!(check(Some(&rs), &secret, access::R).is_ok());
        assert_eq!(check(Some(&rs), &secret, access::W), Err(Errno::EACCES));
        assert!(check(Some(&rs), &dir(0o700, 0), access::R | access::X).is_ok());
        assert_eq!(
            check(Some(&rs), &file(0o700, 0, 0), access::X),
            Err(Errno::EACCES)
        );
        // FOWNER: chmod, times, the sticky rule.
        let fo = with(bit(cap::FOWNER));
        assert_eq!(chmod(Some(&fo), &secret, 0o644), Ok(0o644));
        assert_eq!(chmod(Some(&fo), &secret, 0o2644), Ok(0o644), "no FSETID");
        assert_eq!(set_times(Some(&fo), &secret, Times::Explicit), Ok(()));
        assert_eq!(
            may_delete(Some(&fo), &dir(0o1777, 0), &file(0o600, 5, 5)),
            Ok(())
        );
        assert_eq!(chown(Some(&fo), &secret, 1000, u32::MAX), Err(Errno::EPERM));
        let fs = with(bit(cap::FOWNER) | bit(cap::FSETID));
        assert_eq!(chmod(Some(&fs), &secret, 0o2644), Ok(0o2644));
        // CHOWN: any owner and group.
        let ch = with(bit(cap::CHOWN));
        assert_eq!(chown(Some(&ch), &secret, 1000, 7), Ok(()));
        assert_eq!(chmod(Some(&ch), &secret, 0o644), Err(Errno::EPERM));
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
        assert!(!permitted(
            (1000, 1000, &[], 0),
            &file(0o644, 0, 0),
            access::W
        ));
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
