//! Operations on names: creating, linking, unlinking and renaming entries (Linux's
//! replacement rules and link counts), symbolic links, `stat`/`lstat`, `chmod`, `truncate`
//! and directory listing.

use alloc::vec::Vec;

use super::encode::{DirEntry, Stat};
use super::inode::{Dir, Ino, Node, ROOT_INO};
use super::path::{Last, Walk, PATH_MAX};
use super::Fs;
use crate::fs::errno::Errno::{self, *};

impl Fs {
    /// A name of non-directory `ino`: the directory that holds it and the name (the first
    /// found, in inode order); `None` if it has none. Only directories already listed are
    /// looked in: a file the guest renamed is named in one.
    pub(crate) fn a_name_of(&self, ino: Ino) -> Option<(Ino, Vec<u8>)> {
        self.inodes.iter().find_map(|(&dir, i)| match &i.node {
            Node::Dir(d) if i.nlink > 0 => d
                .entries
                .iter()
                .find(|(_, &(child, _))| child == ino)
                .map(|(name, _)| (dir, name.clone())),
            _ => None,
        })
    }

    /// Adds `name → ino` to directory `dir` (which must still be linked).
    pub(super) fn link_into(&mut self, dir: Ino, name: Vec<u8>, ino: Ino) -> Result<(), Errno> {
        if self.inode(dir)?.nlink == 0 {
            return Err(ENOENT);
        }
        if self.dir(dir)?.entries.contains_key(&name) {
            return Err(EEXIST);
        }
        // The name is stored twice (by name and by cookie), with two map entries.
        crate::mm::heap::charge(2 * name.len() + 2 * 64)?;
        let d = self.dir_mut(dir)?;
        d.insert(name, ino);
        self.touch_dir(dir);
        Ok(())
    }

    /// Creates a new inode named by the walk's last component.
    pub(super) fn create_at(&mut self, walk: Walk, node: Node, perm: u32) -> Result<Ino, Errno> {
        let Last::Name(name) = walk.last else {
            return Err(EEXIST);
        };
        if self.inode(walk.dir)?.nlink == 0 {
            return Err(ENOENT);
        }
        if self.dir(walk.dir)?.get(&name).is_some() {
            return Err(EEXIST);
        }
        self.may_create(walk.dir)?;
        if let Some(ino) = self.vol_create(walk.dir, &name, &node, perm)? {
            return Ok(ino);
        }
        let is_dir = matches!(node, Node::Dir(_));
        // A socket's name is the socket's (a hand-over record carries it with the socket and
        // the adopting kernel makes it again), not a change of the files.
        let (socket, changes) = (matches!(node, Node::Socket), self.changes);
        let ino = self.new_inode(node, perm, if is_dir { 2 } else { 1 }, name.len())?;
        let linked = self.link_into(walk.dir, name, ino);
        if socket {
            self.changes = changes;
        }
        if let Err(e) = linked {
            self.inode_mut(ino)?.nlink = 0;
            self.maybe_free(ino);
            return Err(e);
        }
        if is_dir {
            self.inode_mut(walk.dir)?.nlink += 1;
        }
        Ok(ino)
    }

    /// `mkdir(path, perm)`.
    pub(crate) fn mkdir(&mut self, cwd: Ino, path: &[u8], perm: u32) -> Result<Ino, Errno> {
        let walk = self.walk_parent(cwd, path, &mut 0)?;
        if self.lookup_last(&walk)?.is_some() {
            return Err(EEXIST);
        }
        let dir = walk.dir;
        self.create_at(walk, Node::Dir(Dir::new(dir)), perm)
    }

    /// `rmdir(path)`: the directory must be empty.
    pub(crate) fn rmdir(&mut self, cwd: Ino, path: &[u8]) -> Result<(), Errno> {
        let walk = self.walk_parent(cwd, path, &mut 0)?;
        // A removal from a lazy directory lists it first: a later listing must not bring
        // the name back.
        self.load(walk.dir)?;
        let name = match walk.last {
            Last::Name(n) => n,
            Last::Dot => return Err(EINVAL),
            Last::DotDot => return Err(ENOTEMPTY),
            Last::Root => return Err(EBUSY),
        };
        let ino = self.dir(walk.dir)?.get(&name).ok_or(ENOENT)?;
        self.may_delete(walk.dir, ino)?;
        self.dir(ino)?;
        // A volume's directory: the host decides (ENOTEMPTY), the mount point is EBUSY.
        self.vol_remove(walk.dir, &name, ino, true)?;
        self.load(ino)?;
        if !self.dir(ino)?.entries.is_empty() {
            return Err(ENOTEMPTY);
        }
        self.dir_mut(walk.dir)?.remove(&name);
        self.inode_mut(walk.dir)?.nlink -= 1;
        self.touch_dir(walk.dir);
        self.inode_mut(ino)?.nlink = 0;
        self.maybe_free(ino);
        Ok(())
    }

    /// `unlink(path)`: removes a name of a non-directory.
    pub(crate) fn unlink(&mut self, cwd: Ino, path: &[u8]) -> Result<(), Errno> {
        let walk = self.walk_parent(cwd, path, &mut 0)?;
        // As in `rmdir`: the whole directory before a removal.
        self.load(walk.dir)?;
        let Last::Name(name) = walk.last else {
            return Err(EISDIR);
        };
        let ino = self.dir(walk.dir)?.get(&name).ok_or(ENOENT)?;
        if walk.must_dir {
            return Err(if self.is_dir(ino) { EISDIR } else { ENOTDIR });
        }
        self.may_delete(walk.dir, ino)?;
        if self.is_dir(ino) {
            return Err(EISDIR);
        }
        self.vol_remove(walk.dir, &name, ino, false)?;
        // Removing a socket's name is no change of the files either (see `create_at`).
        let (socket, changes) = (matches!(self.inode(ino)?.node, Node::Socket), self.changes);
        self.dir_mut(walk.dir)?.remove(&name);
        self.touch_dir(walk.dir);
        if socket {
            self.changes = changes;
        }
        let now = self.now();
        let i = self.inode_mut(ino)?;
        i.nlink = i.nlink.saturating_sub(1);
        i.ctime = now;
        self.maybe_free(ino);
        Ok(())
    }

    #[cfg(any(test, feature = "diagnostics"))]
    /// `link(old, new)`: a new name for a non-directory (`old` is not followed).
    pub(crate) fn link(&mut self, cwd: Ino, old: &[u8], new: &[u8]) -> Result<(), Errno> {
        let ino = self.lookup(cwd, old, false)?;
        if self.is_dir(ino) {
            return Err(EPERM);
        }
        let walk = self.walk_parent(cwd, new, &mut 0)?;
        let Last::Name(name) = walk.last else {
            return Err(EEXIST);
        };
        if self.dir(walk.dir)?.get(&name).is_some() {
            return Err(EEXIST);
        }
        if walk.must_dir {
            return Err(ENOENT);
        }
        let i = self.inode(ino)?;
        if i.nlink == u32::MAX {
            return Err(EMLINK);
        }
        self.link_into(walk.dir, name, ino)?;
        let now = self.now();
        let i = self.inode_mut(ino)?;
        i.nlink += 1;
        i.ctime = now;
        Ok(())
    }

    /// Adds the name `path` for the non-directory inode `ino` (`linkat`, archive hard links),
    /// with Linux's checks in its order: `EEXIST` for an existing name, `EROFS` for a name in
    /// a read-only volume, `EXDEV` across a volume's edge, the caller's rights (`EPERM`,
    /// `EACCES`), `EPERM` for a directory, `ENOENT` for an inode with no name left, `EMLINK`
    /// at the most links. In a volume the host makes the link first.
    pub(crate) fn link_ino(&mut self, cwd: Ino, path: &[u8], ino: Ino) -> Result<(), Errno> {
        self.inode(ino)?;
        let walk = self.walk_parent(cwd, path, &mut 0)?;
        let Last::Name(name) = walk.last else {
            return Err(EEXIST);
        };
        if self.dir(walk.dir)?.get(&name).is_some() {
            return Err(EEXIST);
        }
        self.vol_may_link(ino, walk.dir)?;
        self.may_hardlink(ino)?;
        self.may_create(walk.dir)?;
        if self.is_dir(ino) {
            return Err(EPERM);
        }
        // Check the inode before adding the name: a failure must leave no name behind.
        let i = self.inode(ino)?;
        if i.nlink == 0 {
            return Err(ENOENT);
        }
        if i.nlink == u32::MAX {
            return Err(EMLINK);
        }
        if self.inode(walk.dir)?.nlink == 0 {
            return Err(ENOENT);
        }
        let in_volume = self.vol_link(ino, walk.dir, &name)?;
        if let Err(e) = self.link_into(walk.dir, name.clone(), ino) {
            if in_volume {
                self.vol_unlink_new(ino, walk.dir, &name);
            }
            return Err(e);
        }
        let now = self.now();
        let i = self.inode_mut(ino)?;
        if !in_volume {
            i.nlink += 1;
        }
        i.ctime = now;
        Ok(())
    }

    /// `symlink(target, linkpath)`.
    pub(crate) fn symlink(
        &mut self,
        cwd: Ino,
        target: &[u8],
        linkpath: &[u8],
    ) -> Result<Ino, Errno> {
        if target.is_empty() {
            return Err(ENOENT);
        }
        if target.len() > PATH_MAX {
            return Err(ENAMETOOLONG);
        }
        let walk = self.walk_parent(cwd, linkpath, &mut 0)?;
        if self.lookup_last(&walk)?.is_some() {
            return Err(EEXIST);
        }
        if walk.must_dir {
            return Err(ENOENT);
        }
        crate::mm::heap::charge(target.len())?;
        let mut t = Vec::new();
        t.try_reserve_exact(target.len()).map_err(|_| ENOMEM)?;
        t.extend_from_slice(target);
        self.create_at(walk, Node::Symlink(t), 0o777)
    }

    /// Creates the socket inode `path` names, with permission bits `perm` (`bind` of an
    /// `AF_UNIX` socket): `EEXIST` if the name exists (a final symbolic link is not
    /// followed, as Linux's `bind`).
    pub(crate) fn mksock(&mut self, cwd: Ino, path: &[u8], perm: u32) -> Result<Ino, Errno> {
        let walk = self.walk_parent(cwd, path, &mut 0)?;
        if self.lookup_last(&walk)?.is_some() {
            return Err(EEXIST);
        }
        if walk.must_dir {
            return Err(ENOENT);
        }
        self.create_at(walk, Node::Socket, perm)
    }

    /// `readlink(path)`: the target of a symbolic link (`EINVAL` for anything else).
    pub(crate) fn readlink(&mut self, cwd: Ino, path: &[u8]) -> Result<Vec<u8>, Errno> {
        let ino = self.lookup(cwd, path, false)?;
        match &self.inode(ino)?.node {
            Node::Symlink(t) => Ok(t.clone()),
            _ => Err(EINVAL),
        }
    }

    /// `rename(old, new)` with Linux's replacement rules: a file may replace a file, a
    /// directory an empty directory; a directory cannot move into its own subtree.
    pub(crate) fn rename(&mut self, cwd: Ino, old: &[u8], new: &[u8]) -> Result<(), Errno> {
        let wo = self.walk_parent(cwd, old, &mut 0)?;
        let wn = self.walk_parent(cwd, new, &mut 0)?;
        // As in `rmdir`: both whole directories before names move or are replaced.
        self.load(wo.dir)?;
        self.load(wn.dir)?;
        let (Last::Name(oname), Last::Name(nname)) = (&wo.last, &wn.last) else {
            return Err(EBUSY);
        };
        let src = self.dir(wo.dir)?.get(oname).ok_or(ENOENT)?;
        let src_dir = self.is_dir(src);
        if (wo.must_dir || wn.must_dir) && !src_dir {
            return Err(ENOTDIR);
        }
        let dst = self.dir(wn.dir)?.get(nname);
        if let Some(dst) = dst {
            if dst == src {
                return Ok(());
            }
        }
        self.may_rename(wo.dir, src, wn.dir, dst)?;
        if let Some(dst) = dst {
            self.load(dst)?;
            match (src_dir, self.is_dir(dst)) {
                (false, true) => return Err(EISDIR),
                (true, false) => return Err(ENOTDIR),
                (true, true) if !self.dir(dst)?.entries.is_empty() => return Err(ENOTEMPTY),
                _ => {}
            }
        }
        if src_dir {
            // The new parent must not be the source or inside it.
            let mut p = wn.dir;
            loop {
                if p == src {
                    return Err(EINVAL);
                }
                if p == ROOT_INO {
                    break;
                }
                p = self.dir(p)?.parent;
            }
        }
        if self.inode(wn.dir)?.nlink == 0 {
            return Err(ENOENT);
        }
        let vol_path = self.vol_rename(wo.dir, oname, wn.dir, nname, src, dst)?;
        let (odir, ndir, oname, nname) = (wo.dir, wn.dir, oname.clone(), nname.clone());
        if let Some(dst) = dst {
            self.dir_mut(ndir)?.remove(&nname);
            let dst_is_dir = self.is_dir(dst);
            let d = self.inode_mut(dst)?;
            if dst_is_dir {
                d.nlink = 0;
            } else {
                d.nlink = d.nlink.saturating_sub(1);
            }
            if dst_is_dir {
                self.inode_mut(ndir)?.nlink -= 1;
            }
            self.maybe_free(dst);
        }
        self.dir_mut(odir)?.remove(&oname);
        self.dir_mut(ndir)?.insert(nname, src);
        if src_dir && odir != ndir {
            self.dir_mut(src)?.parent = ndir;
            self.inode_mut(odir)?.nlink -= 1;
            self.inode_mut(ndir)?.nlink += 1;
        }
        self.touch_dir(odir);
        self.touch_dir(ndir);
        let now = self.now();
        self.inode_mut(src)?.ctime = now;
        if let Some((old, new)) = vol_path {
            self.vol_repath(src, &old, &new)?;
        }
        Ok(())
    }

    /// `chmod(path, perm)`: the owner or root only (`EPERM`).
    pub(crate) fn chmod(&mut self, cwd: Ino, path: &[u8], perm: u32) -> Result<(), Errno> {
        let ino = self.lookup(cwd, path, true)?;
        self.chmod_ino(ino, perm)
    }

    /// `truncate(path, len)`: needs write permission (`EACCES`).
    pub(crate) fn truncate(&mut self, cwd: Ino, path: &[u8], len: i64) -> Result<(), Errno> {
        let len = u64::try_from(len).map_err(|_| EINVAL)?;
        let ino = self.lookup(cwd, path, true)?;
        self.may(ino, crate::fs::perm::access::W)?;
        self.truncate_ino(ino, len)
    }

    /// `vfs_rename`'s checks: removing `src` from `odir`; a new name in `ndir`, or removing
    /// the `dst` it replaces; and a directory changing parent needs write permission on
    /// itself (its `..` changes).
    fn may_rename(&self, odir: Ino, src: Ino, ndir: Ino, dst: Option<Ino>) -> Result<(), Errno> {
        self.may_delete(odir, src)?;
        match dst {
            None => self.may_create(ndir)?,
            Some(dst) => self.may_delete(ndir, dst)?,
        }
        if odir != ndir && self.is_dir(src) {
            self.may(src, crate::fs::perm::access::W)?;
        }
        Ok(())
    }

    /// `stat(path)`: follows symbolic links.
    pub(crate) fn stat(&mut self, cwd: Ino, path: &[u8]) -> Result<Stat, Errno> {
        let ino = self.lookup(cwd, path, true)?;
        self.stat_ino(ino)
    }

    /// `lstat(path)`: does not follow a final symbolic link.
    pub(crate) fn lstat(&mut self, cwd: Ino, path: &[u8]) -> Result<Stat, Errno> {
        let ino = self.lookup(cwd, path, false)?;
        self.stat_ino(ino)
    }

    /// The entries of directory `ino` (without `.` and `..`), sorted by name.
    pub(crate) fn list(&mut self, ino: Ino) -> Result<Vec<DirEntry>, Errno> {
        self.load(ino)?;
        let d = self.dir(ino)?;
        // A copy of every name: ask the heap first (a directory can be huge).
        let names: usize = d.entries.keys().map(|n| n.len() + 16).sum();
        crate::mm::heap::charge(names + d.entries.len() * core::mem::size_of::<DirEntry>())?;
        let mut out = Vec::new();
        out.try_reserve_exact(d.entries.len()).map_err(|_| ENOMEM)?;
        for (name, &(child, _)) in &d.entries {
            out.push(DirEntry {
                name: name.clone(),
                ino: child,
                file_type: self.inode(child)?.file_type(),
            });
        }
        Ok(out)
    }
}
