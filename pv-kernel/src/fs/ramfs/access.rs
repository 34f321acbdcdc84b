//! Permission checks: the credentials operations run with ([`Fs::set_cred`]; `None`, the
//! default, is root and checks nothing) and the [`crate::fs::perm`] decisions over an
//! inode's metadata, at the places Linux's VFS makes them: searching each directory of a
//! walk, opening, creating and removing names, and changing metadata.

use super::inode::{FileType, Ino};
use super::Fs;
use crate::fs::errno::Errno;
use crate::fs::perm::{self, access, Cred, Meta, Times};

impl Fs {
    /// Checks operations from now on against `cred` (`None`: root, no checks).
    pub(crate) fn set_cred(&mut self, cred: Option<Cred>) {
        self.cred = cred;
    }

    /// Runs `f` without permission checks (the kernel's own lookups, e.g. the path of a
    /// directory for `getcwd`, which Linux does not check either).
    pub(crate) fn unchecked<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let saved = self.cred.take();
        let r = f(self);
        self.cred = saved;
        r
    }

    /// The metadata of `ino` the decisions look at.
    pub(super) fn meta(&self, ino: Ino) -> Result<Meta, Errno> {
        let i = self.inode(ino)?;
        Ok(Meta {
            perm: i.perm,
            uid: i.uid,
            gid: i.gid,
            dir: i.file_type() == FileType::Directory,
        })
    }

    /// `want` ([`access`] bits) on `ino` (`EACCES`).
    pub(crate) fn may(&self, ino: Ino, want: u32) -> Result<(), Errno> {
        if self.cred.is_none() {
            return Ok(());
        }
        perm::check(self.cred.as_ref(), &self.meta(ino)?, want)
    }

    /// Search permission on directory `dir` (each directory a walk looks a name up in).
    pub(super) fn may_search(&self, dir: Ino) -> Result<(), Errno> {
        self.may(dir, access::X)
    }

    /// A new name in `dir`.
    pub(super) fn may_create(&self, dir: Ino) -> Result<(), Errno> {
        if self.cred.is_none() {
            return Ok(());
        }
        perm::may_create(self.cred.as_ref(), &self.meta(dir)?)
    }

    /// Removing `victim`'s name from `dir` (sticky rule included).
    pub(super) fn may_delete(&self, dir: Ino, victim: Ino) -> Result<(), Errno> {
        if self.cred.is_none() {
            return Ok(());
        }
        perm::may_delete(self.cred.as_ref(), &self.meta(dir)?, &self.meta(victim)?)
    }

    /// A new hard link to `ino` (`protected_hardlinks`).
    pub(super) fn may_hardlink(&self, ino: Ino) -> Result<(), Errno> {
        if self.cred.is_none() {
            return Ok(());
        }
        let regular = self.inode(ino)?.file_type() == FileType::Regular;
        perm::may_hardlink(self.cred.as_ref(), &self.meta(ino)?, regular)
    }

    /// `chmod` of `ino` to `perm` by the current credentials: owner or root (`EPERM`); the
    /// set-group-id bit is dropped for a non-member of the file's group.
    pub(crate) fn chmod_ino(&mut self, ino: Ino, perm: u32) -> Result<(), Errno> {
        let perm = perm::chmod(self.cred.as_ref(), &self.meta(ino)?, perm)?;
        self.set_meta(ino, perm, None, None)
    }

    /// Whether the current credentials may `chown(ino, uid, gid)` (`EPERM`).
    pub(crate) fn may_chown(&self, ino: Ino, uid: u32, gid: u32) -> Result<(), Errno> {
        perm::chown(self.cred.as_ref(), &self.meta(ino)?, uid, gid)
    }

    /// Whether the current credentials may set the times of `ino` as `t` says.
    pub(crate) fn may_set_times(&self, ino: Ino, t: Times) -> Result<(), Errno> {
        perm::set_times(self.cred.as_ref(), &self.meta(ino)?, t)
    }
}
