//! Inodes and the inode table: the three kinds of inode, a directory's entries (with the
//! stable cookies `getdents64` resumes from), link counts, metadata, and freeing an inode
//! once it has neither names nor open handles.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::contents::Data;
use super::encode::{dt, mode};
use super::Fs;
use crate::fs::errno::Errno::{self, *};

/// An inode number.
pub(crate) type Ino = u64;

/// Inode number of the root directory.
pub(crate) const ROOT_INO: Ino = 1;

/// The three kinds of inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileType {
    /// Regular file.
    Regular,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Socket (the name an `AF_UNIX` socket is bound to; the socket itself lives in the
    /// Linux layer, keyed by inode number).
    Socket,
}

impl FileType {
    /// The `st_mode` type bits.
    pub(crate) const fn mode_bits(self) -> u32 {
        match self {
            Self::Regular => mode::S_IFREG,
            Self::Directory => mode::S_IFDIR,
            Self::Symlink => mode::S_IFLNK,
            Self::Socket => mode::S_IFSOCK,
        }
    }

    /// The `d_type` value.
    pub(crate) const fn dtype(self) -> u8 {
        match self {
            Self::Regular => dt::DT_REG,
            Self::Directory => dt::DT_DIR,
            Self::Symlink => dt::DT_LNK,
            Self::Socket => dt::DT_SOCK,
        }
    }

    /// The `ls -l` type character.
    pub(crate) const fn ls_char(self) -> char {
        match self {
            Self::Regular => '-',
            Self::Directory => 'd',
            Self::Symlink => 'l',
            Self::Socket => 's',
        }
    }
}

/// Kernel heap an inode named by a `name_len`-byte name costs, generously: the inode, the
/// name twice (by name and by cookie) and three map entries.
pub(super) const fn inode_cost(name_len: usize) -> usize {
    core::mem::size_of::<Inode>() + 2 * name_len + 3 * 64
}

/// A directory's entries.
pub(super) struct Dir {
    /// Name → (inode, cookie).
    pub(super) entries: BTreeMap<Vec<u8>, (Ino, u64)>,
    /// Cookie → name: the `getdents64` order.
    pub(super) by_cookie: BTreeMap<u64, Vec<u8>>,
    /// Next cookie (1 and 2 are `.` and `..`).
    pub(super) next_cookie: u64,
    /// The parent directory (the root is its own parent).
    pub(super) parent: Ino,
    /// Lazy: the host directory whose entries have not been loaded yet.
    pub(super) host: Option<Vec<u8>>,
}

impl Dir {
    /// An empty directory in `parent`.
    pub(super) fn new(parent: Ino) -> Self {
        Self {
            entries: BTreeMap::new(),
            by_cookie: BTreeMap::new(),
            next_cookie: 3,
            parent,
            host: None,
        }
    }

    /// The inode `name` names.
    pub(super) fn get(&self, name: &[u8]) -> Option<Ino> {
        self.entries.get(name).map(|&(ino, _)| ino)
    }

    /// Adds `name` with the next cookie.
    pub(super) fn insert(&mut self, name: Vec<u8>, ino: Ino) {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        self.by_cookie.insert(cookie, name.clone());
        self.entries.insert(name, (ino, cookie));
    }

    /// Removes `name` (its cookie is not reused).
    pub(super) fn remove(&mut self, name: &[u8]) -> Option<Ino> {
        let (ino, cookie) = self.entries.remove(name)?;
        self.by_cookie.remove(&cookie);
        Some(ino)
    }
}

/// What an inode holds.
pub(super) enum Node {
    /// A regular file: its bytes and its size (bytes past the stored ones read as zeros).
    File { data: Data, size: u64 },
    /// A directory.
    Dir(Dir),
    /// A symbolic link: its target.
    Symlink(Vec<u8>),
    /// A socket's name (no contents).
    Socket,
}

/// One inode.
pub(super) struct Inode {
    pub(super) node: Node,
    /// Permission bits only (the type comes from `node`).
    pub(super) perm: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) nlink: u32,
    pub(super) atime: u64,
    pub(super) mtime: u64,
    pub(super) ctime: u64,
    /// Open handles referring to it.
    pub(super) open: u32,
    /// Counted against the inode limit (created in the guest, not listed from the host).
    pub(super) counted: bool,
}

impl Inode {
    /// A fresh inode whose three times are `now`.
    pub(super) fn new(node: Node, perm: u32, nlink: u32, now: u64) -> Self {
        Self {
            node,
            perm: perm & mode::PERM,
            uid: 0,
            gid: 0,
            nlink,
            atime: now,
            mtime: now,
            ctime: now,
            open: 0,
            counted: true,
        }
    }

    /// Its type.
    pub(super) fn file_type(&self) -> FileType {
        match self.node {
            Node::File { .. } => FileType::Regular,
            Node::Dir(_) => FileType::Directory,
            Node::Symlink(_) => FileType::Symlink,
            Node::Socket => FileType::Socket,
        }
    }

    /// `st_size`: a directory reports 32 bytes per entry (with `.` and `..`).
    pub(super) fn size(&self) -> u64 {
        match &self.node {
            Node::File { size, .. } => *size,
            Node::Dir(d) => (d.entries.len() as u64 + 2) * 32,
            Node::Symlink(t) => t.len() as u64,
            Node::Socket => 0,
        }
    }
}

impl Fs {
    /// Inode `ino` (`ENOENT` if it was freed).
    pub(super) fn inode(&self, ino: Ino) -> Result<&Inode, Errno> {
        self.inodes.get(&ino).ok_or(ENOENT)
    }

    pub(super) fn inode_mut(&mut self, ino: Ino) -> Result<&mut Inode, Errno> {
        self.inodes.get_mut(&ino).ok_or(ENOENT)
    }

    /// Directory `ino` (`ENOTDIR` if it is something else).
    pub(super) fn dir(&self, ino: Ino) -> Result<&Dir, Errno> {
        match &self.inode(ino)?.node {
            Node::Dir(d) => Ok(d),
            _ => Err(ENOTDIR),
        }
    }

    pub(super) fn dir_mut(&mut self, ino: Ino) -> Result<&mut Dir, Errno> {
        match &mut self.inode_mut(ino)?.node {
            Node::Dir(d) => Ok(d),
            _ => Err(ENOTDIR),
        }
    }

    pub(super) fn is_dir(&self, ino: Ino) -> bool {
        matches!(self.inodes.get(&ino).map(|i| &i.node), Some(Node::Dir(_)))
    }

    /// Frees `ino` if it has neither names nor open handles (its pages go back to the frame
    /// allocator, its heap memory to the heap).
    pub(super) fn maybe_free(&mut self, ino: Ino) {
        if let Some(i) = self.inodes.get(&ino) {
            if i.nlink == 0 && i.open == 0 && ino != ROOT_INO {
                if let Some(i) = self.inodes.remove(&ino) {
                    if let Node::File { data, .. } = &i.node {
                        self.data_pages = self.data_pages.saturating_sub(data.pages_held());
                    }
                    self.counted_inodes -= u64::from(i.counted);
                    self.vols.forget(ino);
                }
            }
        }
    }

    /// Updates a directory's mtime and ctime.
    pub(super) fn touch_dir(&mut self, ino: Ino) {
        self.note_change(ino);
        let now = self.now();
        if let Ok(i) = self.inode_mut(ino) {
            i.mtime = now;
            i.ctime = now;
        }
    }

    /// Allocates a new inode created in the guest, to be named by a `name_len`-byte name:
    /// `ENOSPC` at the inode limit, `ENOMEM` if the kernel heap has no headroom for it.
    pub(super) fn new_inode(
        &mut self,
        node: Node,
        perm: u32,
        nlink: u32,
        name_len: usize,
    ) -> Result<Ino, Errno> {
        if self.counted_inodes >= self.limits.max_inodes {
            return Err(ENOSPC);
        }
        let ino = self.new_uncounted_inode(node, perm, nlink, name_len)?;
        self.count(ino);
        self.counted_inodes += 1;
        let (uid, gid) = (self.owner)();
        if let Some(i) = self.inodes.get_mut(&ino) {
            (i.uid, i.gid) = (uid, gid);
        }
        Ok(ino)
    }

    /// Allocates a new inode that does not count against the inode limit (listed from the
    /// host share): `ENOMEM` if the kernel heap has no headroom for it.
    pub(super) fn new_uncounted_inode(
        &mut self,
        node: Node,
        perm: u32,
        nlink: u32,
        name_len: usize,
    ) -> Result<Ino, Errno> {
        crate::mm::heap::charge(inode_cost(name_len))?;
        let now = self.now();
        let ino = self.next_ino;
        self.next_ino += 1;
        let mut inode = Inode::new(node, perm, nlink, now);
        inode.counted = false;
        self.inodes.insert(ino, inode);
        Ok(ino)
    }

    /// Marks a fresh inode as counted (see [`Fs::new_inode`]).
    fn count(&mut self, ino: Ino) {
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.counted = true;
        }
    }

    /// Sets permission bits, and optionally owner and mtime (ns) — used when unpacking.
    pub(crate) fn set_meta(
        &mut self,
        ino: Ino,
        perm: u32,
        owner: Option<(u32, u32)>,
        mtime: Option<u64>,
    ) -> Result<(), Errno> {
        if let Some((uid, gid)) = owner {
            self.vol_chown(ino, uid, gid)?;
        }
        let perm = self.vol_chmod(ino, perm)?;
        // Setting what is already there (`/dev`'s nodes, made again for every first
        // descriptor table) changes nothing a hand-over would lose.
        let same = self.inode(ino).is_ok_and(|i| {
            i.perm == perm & mode::PERM
                && owner.is_none_or(|(u, g)| (i.uid, i.gid) == (u, g))
                && mtime.is_none_or(|t| i.mtime == t)
        });
        if !same {
            self.note_change(ino);
        }
        let now = self.now();
        let i = self.inode_mut(ino)?;
        i.perm = perm & mode::PERM;
        if let Some((uid, gid)) = owner {
            i.uid = uid;
            i.gid = gid;
        }
        if let Some(t) = mtime {
            i.mtime = t;
            i.atime = t;
        }
        i.ctime = now;
        Ok(())
    }

    /// Sets an inode's modification (and access) time in ns since the epoch.
    pub(crate) fn set_mtime(&mut self, ino: Ino, t: u64) -> Result<(), Errno> {
        if self.vol_utimes(ino, t, t)? {
            return Ok(());
        }
        let i = self.inode_mut(ino)?;
        i.mtime = t;
        i.atime = t;
        Ok(())
    }
}
