//! Volumes (`pvmux run --volume HOST:GUEST[:ro|rw]`): host directories the guest may write,
//! mounted at a guest directory, and host files, mounted at a guest file ([`Fs::mount_volume`];
//! a file volume's mount point is a volume file whose path is `/`).
//!
//! A volume's inodes are ordinary inodes of this filesystem, remembered in a side table
//! ([`Volumes`]) with their volume and their path inside it. Directories are listed from the
//! host the first time their entries are needed (like the host share's lazy directories);
//! regular files keep no bytes in the guest: every read and write goes to the host
//! ([`VolumeHost`]; write-through, so the host file has the bytes when `write` returns), and
//! opening one refreshes its size from the host. Every change of a name or of metadata is
//! made on the host first and only then in the tree, so a failure (an errno from the host)
//! leaves the tree unchanged. A read-only volume refuses every change with `EROFS` before
//! asking the host (which refuses them too).
//!
//! Linux's rules at a mount point: a rename or hard link between a volume and anything else
//! is `EXDEV`; the mount point itself cannot be renamed or removed (`EBUSY`). Hard links
//! inside a volume are made by hosts that keep them ([`VolumeHost::link`]: a disk's ext2;
//! `EPERM` for `--volume`, whose op set has none). A volume inode has a path for its I/O and
//! the other names it is known by; a host that states inode numbers (`HostfsEntry::ino`)
//! lets a listing find a second name of a file the guest knows already, so every name of one
//! file is one inode here, with the host's link count. A file unlinked (or replaced by a
//! rename) while open, with no other name the guest knows, is first copied into guest
//! memory, so its open descriptors keep reading its bytes, as on Linux. Symbolic links
//! resolve in the guest's namespace like any other link; the host never follows one.
//!
//! Directories listed once are not listed again, but a name a listed directory does not
//! hold is asked of the host ([`Fs::vol_lookup_new`]): a file the host makes behind the
//! guest's back is found by name at once, and shows in listings from then on; file sizes are
//! read again at the next open. Names the host removes behind the guest's back stay listed
//! (opening one is then the host's error).

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;

use pvmux_hypercalls::hostfs::{self as abi, parse_record, HostfsEntry};
use pvmux_hypercalls::volume::{flag, op, IO_MAX, UTIME_OMIT};

use super::contents::{Data, MAX_FILE_SIZE};
use super::inode::{Dir, Ino, Node};
use super::path::{Last, Walk, PATH_MAX};
use super::Fs;
use crate::fs::errno::Errno::{self, *};
use crate::fs::pagecache::PageObject;

mod maps;

/// Size of the buffer a volume directory is listed into.
const LIST_BUF: usize = 16 << 10;
/// Most entries taken from one volume directory.
const DIR_MAX: u64 = 1 << 16;

/// One request to the host, with kernel values (the kernel's implementation turns it into a
/// `VolumeRequest` with guest-physical addresses).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Req<'a> {
    /// [`op`].
    pub(crate) op: u32,
    /// The object's path in the volume.
    pub(crate) path: &'a [u8],
    /// `RENAME`'s new path or `SYMLINK`'s target.
    pub(crate) path2: &'a [u8],
    /// Offset, new size or cookie.
    pub(crate) offset: u64,
    /// Permission bits.
    pub(crate) mode: u32,
    /// `volume::flag` bits.
    pub(crate) flags: u32,
    /// `UTIMES` times (ns, or `UTIME_OMIT`).
    pub(crate) atime: u64,
    /// `UTIMES` modification time.
    pub(crate) mtime: u64,
    /// `CREATE` (with `EXCL`), `MKDIR`, `SYMLINK`: the new object's owner (uid, gid), the
    /// caller's filesystem ids; `None` for a caller with every capability (root's 0, 0).
    /// A host that keeps no owners (a `--volume` when pvmux may not change owners: the
    /// host's files are then the runtime user's) ignores it. `CHOWN`: the new owner.
    pub(crate) owner: Option<(u32, u32)>,
}

/// The data of a request: bytes to write, or a buffer to fill.
pub(crate) enum Buf<'a> {
    /// No data.
    None,
    /// `WRITE`'s bytes.
    In(&'a [u8]),
    /// `READ`, `LIST`, `READLINK`'s buffer.
    Out(&'a mut [u8]),
}

/// The host side of volumes: one `VolumeOp` per call. The kernel's makes hypercalls
/// (`fs::volume`); tests pass fakes.
pub(crate) trait VolumeHost: Send + Sync {
    /// Performs `req` on volume `vol`: the response's value and stat, or the errno.
    fn call(&self, vol: u32, req: &Req<'_>, buf: Buf<'_>) -> Result<(u64, HostfsEntry), Errno>;

    /// `chown` of `path` in volume `vol` to (`uid`, `gid`): the new stat, or `None` for a
    /// host that keeps no owners (the owner then lives in guest memory only, as before).
    fn chown(
        &self,
        vol: u32,
        path: &[u8],
        uid: u32,
        gid: u32,
    ) -> Result<Option<HostfsEntry>, Errno> {
        let _ = (vol, path, uid, gid);
        Ok(None)
    }

    /// `link(2)`: the new name `to` for the non-directory `from` of volume `vol` (both paths
    /// in it): the file's new stat. `EPERM` for a host that keeps no hard links (the
    /// default: `--volume`).
    fn link(&self, vol: u32, from: &[u8], to: &[u8]) -> Result<HostfsEntry, Errno> {
        let _ = (vol, from, to);
        Err(EPERM)
    }
}

/// A volume inode: its volume and its path in it (`/` for the mount point), the file's
/// other names the guest knows (hard links), and its host inode number (0: not given).
pub(super) struct VolNode {
    vol: u32,
    path: Vec<u8>,
    others: Vec<Vec<u8>>,
    hino: u32,
}

impl VolNode {
    fn new(vol: u32, path: Vec<u8>, hino: u32) -> Self {
        Self {
            vol,
            path,
            others: Vec::new(),
            hino,
        }
    }

    /// Drops name `path` of a file with other names (the next one becomes the path its I/O
    /// uses): false if `path` is its only name (or not one of its names).
    fn drop_name(&mut self, path: &[u8]) -> bool {
        if self.others.is_empty() {
            return false;
        }
        if self.path == path {
            if let Some(next) = self.others.pop() {
                self.path = next;
            }
            return true;
        }
        match self.others.iter().position(|p| p == path) {
            Some(k) => {
                self.others.swap_remove(k);
                true
            }
            None => false,
        }
    }
}

/// The volumes of a filesystem: the host, each mounted volume's read-only flag and the
/// volume inodes.
#[derive(Default)]
pub(crate) struct Volumes {
    /// Each volume's host (the hypercalls for `--volume`, a filesystem for `--disk`).
    hosts: BTreeMap<u32, Arc<dyn VolumeHost>>,
    read_only: BTreeMap<u32, bool>,
    nodes: BTreeMap<Ino, VolNode>,
    /// The non-directory volume inodes by (volume, host inode number), for hosts that state
    /// one: a listing that meets another name of a known file links it to the same inode.
    by_hino: BTreeMap<(u32, u32), Ino>,
    /// The caches of volume files mapped `MAP_SHARED` ([`maps`]).
    maps: BTreeMap<Ino, Arc<PageObject>>,
    /// Volumes detached from the tree while in use ([`Fs::detach_volume`]).
    detached: alloc::collections::BTreeSet<u32>,
    /// The device number (`st_dev`) of a volume's files, for volumes that have one (a
    /// disk's, [`Fs::set_volume_dev`]).
    devs: BTreeMap<u32, u64>,
}

impl Volumes {
    /// Whether volume `id` is mounted here.
    pub(super) fn has_volume(&self, id: u32) -> bool {
        self.hosts.contains_key(&id)
    }

    /// Replaces every volume inode by `nodes`: (inode, volume, path, host inode number,
    /// directory), and the caches of mapped files by `maps` — a kernel hand-over's tree
    /// (`carry.rs`).
    pub(super) fn replace_nodes(
        &mut self,
        nodes: Vec<(Ino, u32, Vec<u8>, u32, bool)>,
        maps: Vec<(Ino, Arc<PageObject>)>,
    ) {
        self.nodes.clear();
        self.by_hino.clear();
        self.maps.clear();
        for (ino, vol, path, hino, dir) in nodes {
            self.put(ino, VolNode::new(vol, path, hino), dir);
        }
        self.maps.extend(maps);
    }

    /// Forgets a freed inode.
    pub(super) fn forget(&mut self, ino: Ino) {
        self.take(ino);
        self.maps.remove(&ino);
    }

    /// Records volume inode `ino` (and its host inode number, if it has one).
    fn put(&mut self, ino: Ino, node: VolNode, dir: bool) {
        if node.hino != 0 && !dir {
            self.by_hino.insert((node.vol, node.hino), ino);
        }
        self.nodes.insert(ino, node);
    }

    /// Takes volume inode `ino` out of the table.
    fn take(&mut self, ino: Ino) -> Option<VolNode> {
        let node = self.nodes.remove(&ino)?;
        if node.hino != 0 && self.by_hino.get(&(node.vol, node.hino)) == Some(&ino) {
            self.by_hino.remove(&(node.vol, node.hino));
        }
        Some(node)
    }
}

/// What [`Fs::vol_detach`] took from an inode: its volume node, its size, whether it was
/// an unlisted directory, and its mapped pages' cache.
type Detached = (VolNode, u64, bool, Option<Arc<PageObject>>);

/// A rename's old and new paths in its volume (see [`Fs::vol_repath`]).
type Renamed = (Vec<u8>, Vec<u8>);

/// `parent/name` with the heap asked first.
fn join(parent: &[u8], name: &[u8]) -> Result<Vec<u8>, Errno> {
    let mut p = Vec::new();
    p.try_reserve_exact(parent.len() + 1 + name.len())
        .map_err(|_| ENOMEM)?;
    p.extend_from_slice(parent);
    if !parent.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    if p.len() > abi::PATH_MAX as usize {
        return Err(ENAMETOOLONG);
    }
    Ok(p)
}

fn copy(bytes: &[u8]) -> Result<Vec<u8>, Errno> {
    let mut v = Vec::new();
    v.try_reserve_exact(bytes.len()).map_err(|_| ENOMEM)?;
    v.extend_from_slice(bytes);
    Ok(v)
}

impl Fs {
    /// Volume inode `ino`'s volume, path, whether it has other names, and host inode number.
    pub(super) fn vol_node_parts(&self, ino: Ino) -> Option<(u32, &[u8], bool, u32)> {
        let n = self.vols.nodes.get(&ino)?;
        Some((n.vol, &n.path, !n.others.is_empty(), n.hino))
    }

    /// Whether `ino` is a regular file of a volume (its bytes live on the host, not here).
    pub(crate) fn is_volume_file(&self, ino: Ino) -> bool {
        self.vols.nodes.contains_key(&ino)
            && matches!(
                self.inodes.get(&ino).map(|i| &i.node),
                Some(Node::File { .. })
            )
    }

    /// Whether `ino` belongs to a volume (the mount point included).
    pub(crate) fn is_volume_node(&self, ino: Ino) -> bool {
        self.vols.nodes.contains_key(&ino)
    }

    /// Mounts volume `id` at `path` (absolute; missing directories are created). A directory
    /// volume is mounted at a directory (an existing directory's entries are hidden); a file
    /// volume at a file (an existing file or link of that name is hidden: the name now
    /// leads to the volume's file, as a bind mount of a file does). `ENOTDIR` if a component
    /// is not a directory or a directory volume's path is not one, `EISDIR` for a file volume
    /// at a directory, `EBUSY` if the volume is mounted or `path` is already a volume's.
    pub(crate) fn mount_volume(
        &mut self,
        host: Arc<dyn VolumeHost>,
        id: u32,
        read_only: bool,
        path: &[u8],
    ) -> Result<(), Errno> {
        if self.vols.read_only.contains_key(&id) {
            return Err(EBUSY);
        }
        let root = (host.call(
            id,
            &Req {
                op: op::LOOKUP,
                path: b"/",
                ..Req::default()
            },
            Buf::None,
        ))?
        .1;
        let mut comps = path.split(|&b| b == b'/').filter(|c| !c.is_empty());
        let file_name = match root.kind {
            abi::kind::DIR => None,
            abi::kind::REG => Some(comps.next_back().ok_or(EBUSY)?),
            _ => return Err(ENOTDIR),
        };
        // mkdir -p.
        let mut dir = super::inode::ROOT_INO;
        for comp in comps {
            if self.is_volume_node(dir) {
                return Err(EBUSY);
            }
            dir = match self.lookup_child(dir, comp)? {
                Some(c) if self.is_dir(c) => c,
                Some(_) => return Err(ENOTDIR),
                None => self.create_at(
                    Walk {
                        dir,
                        last: Last::Name(copy(comp)?),
                        must_dir: false,
                    },
                    Node::Dir(Dir::new(dir)),
                    0o755,
                )?,
            };
        }
        if let Some(name) = file_name {
            return self.mount_file_volume(host, id, read_only, dir, name, &root);
        }
        if dir == super::inode::ROOT_INO || self.is_volume_node(dir) {
            return Err(EBUSY);
        }
        // Hide what was there: a fresh, lazy directory (the old entries stay allocated).
        let parent = self.dir(dir)?.parent;
        let mut d = Dir::new(parent);
        d.host = Some(Vec::new());
        let i = self.inode_mut(dir)?;
        i.node = Node::Dir(d);
        i.nlink = 2;
        (i.perm, i.uid, i.gid) = (root.perm & 0o7777, root.uid, root.gid);
        (i.atime, i.mtime, i.ctime) = (root.mtime_ns, root.mtime_ns, root.mtime_ns);
        self.vol_register(host, id, read_only, dir, root.ino)
    }

    /// Mounts file volume `id` (host stat `root`) as `name` in directory `dir`: a new inode
    /// that name leads to; the inode it named before loses that name (other hard links keep
    /// it).
    fn mount_file_volume(
        &mut self,
        host: Arc<dyn VolumeHost>,
        id: u32,
        read_only: bool,
        dir: Ino,
        name: &[u8],
        root: &HostfsEntry,
    ) -> Result<(), Errno> {
        if self.is_volume_node(dir) {
            return Err(EBUSY);
        }
        let old = self.lookup_child(dir, name)?;
        match old {
            Some(o) if self.is_volume_node(o) => return Err(EBUSY),
            Some(o) if self.is_dir(o) => return Err(EISDIR),
            _ => {}
        }
        let node = Node::File {
            data: Data::empty(),
            size: root.size.min(MAX_FILE_SIZE),
        };
        let ino = self.new_uncounted_inode(node, root.perm, 1, name.len())?;
        self.vol_apply(ino, root);
        if let Some(o) = old {
            if let Some(entry) = self.dir_mut(dir)?.entries.get_mut(name) {
                entry.0 = ino;
            }
            if let Ok(i) = self.inode_mut(o) {
                i.nlink = i.nlink.saturating_sub(1);
            }
            self.maybe_free(o);
        } else {
            self.dir_mut(dir)?.insert(copy(name)?, ino);
        }
        self.vol_register(host, id, read_only, ino, root.ino)
    }

    /// Unmounts volume `id` (a disk given back to the host, `pvmux disk move`): `EBUSY`,
    /// nothing changed, while a file or directory of it is open or mapped; `EINVAL` if no
    /// such volume is mounted. Its inodes are freed and its mount point becomes an empty
    /// directory (a file volume's name is removed). Returns the volume's host, for the
    /// caller to flush and close.
    pub(crate) fn unmount_volume(&mut self, id: u32) -> Result<Arc<dyn VolumeHost>, Errno> {
        if !self.vols.read_only.contains_key(&id) {
            return Err(EINVAL);
        }
        let inos: Vec<Ino> = self
            .vols
            .nodes
            .iter()
            .filter(|(_, n)| n.vol == id)
            .map(|(&i, _)| i)
            .collect();
        let busy = inos.iter().any(|i| {
            self.vols.maps.contains_key(i) || self.inodes.get(i).is_some_and(|n| n.open > 0)
        });
        if busy {
            return Err(EBUSY);
        }
        let mount = self
            .vols
            .nodes
            .iter()
            .find(|(_, n)| n.vol == id && n.path == b"/")
            .map(|(&i, _)| i)
            .ok_or(EINVAL)?;
        let host = self.vols.hosts.remove(&id).ok_or(EINVAL)?;
        self.vols.read_only.remove(&id);
        self.vols.devs.remove(&id);
        let detached = self.vols.detached.remove(&id);
        for &i in &inos {
            self.vols.take(i);
            if i == mount {
                continue;
            }
            if let Some(n) = self.inodes.get_mut(&i) {
                n.nlink = 0;
                if let Node::Dir(d) = &mut n.node {
                    d.entries.clear();
                }
            }
            self.maybe_free(i);
        }
        if detached {
            // Out of the tree already: its root goes too.
            if let Some(n) = self.inodes.get_mut(&mount) {
                n.nlink = 0;
                if let Node::Dir(d) = &mut n.node {
                    d.entries.clear();
                }
            }
            self.maybe_free(mount);
        } else if self.is_dir(mount) {
            let parent = self.dir(mount)?.parent;
            let i = self.inode_mut(mount)?;
            i.node = Node::Dir(Dir::new(parent));
            i.nlink = 2;
            i.perm = 0o755;
        } else {
            // A file volume: drop the name that led to it.
            let parents: Vec<(Ino, Vec<u8>)> = self
                .inodes
                .iter()
                .filter_map(|(&d, n)| match &n.node {
                    Node::Dir(dir) => dir
                        .entries
                        .iter()
                        .find(|(_, e)| e.0 == mount)
                        .map(|(name, _)| (d, name.clone())),
                    _ => None,
                })
                .collect();
            for (d, name) in parents {
                if let Ok(dir) = self.dir_mut(d) {
                    dir.remove(&name);
                }
            }
            if let Some(n) = self.inodes.get_mut(&mount) {
                n.nlink = 0;
            }
            self.maybe_free(mount);
        }
        Ok(host)
    }

    /// Whether volume `id` is in use: a file or directory of it open or mapped, or the
    /// working directory of a process (`cwds`). False if no such volume is mounted.
    pub(crate) fn volume_in_use(&self, id: u32, cwds: &[Ino]) -> bool {
        self.vols.nodes.iter().any(|(i, n)| {
            n.vol == id
                && (self.vols.maps.contains_key(i)
                    || cwds.contains(i)
                    || self.inodes.get(i).is_some_and(|n| n.open > 0))
        })
    }

    /// `umount2(MNT_DETACH)` of directory volume `id`: it leaves the tree at once — its
    /// mount point's name leads to a new, empty directory — while its inodes stay, for the
    /// files, directories and working directories still in it (whose paths no longer
    /// reach them); [`Fs::unmount_volume`] frees them once nothing uses them. `EINVAL` if no
    /// such volume is mounted (or it is detached already, or a file volume).
    pub(crate) fn detach_volume(&mut self, id: u32) -> Result<(), Errno> {
        if !self.vols.read_only.contains_key(&id) || self.vols.detached.contains(&id) {
            return Err(EINVAL);
        }
        let mount = self
            .vols
            .nodes
            .iter()
            .find(|(_, n)| n.vol == id && n.path == b"/")
            .map(|(&i, _)| i)
            .ok_or(EINVAL)?;
        let parent = self.dir(mount)?.parent;
        let name = self
            .dir(parent)?
            .entries
            .iter()
            .find(|(_, e)| e.0 == mount)
            .map(|(n, _)| n.clone())
            .ok_or(EINVAL)?;
        let fresh = self.new_uncounted_inode(Node::Dir(Dir::new(parent)), 0o755, 2, name.len())?;
        // The name's place in the inode count goes with the name.
        let counted = core::mem::replace(&mut self.inode_mut(mount)?.counted, false);
        self.inode_mut(fresh)?.counted = counted;
        if let Some(e) = self.dir_mut(parent)?.entries.get_mut(&name) {
            e.0 = fresh;
        }
        self.vols.detached.insert(id);
        Ok(())
    }

    /// Whether volume `id` was detached from the tree ([`Fs::detach_volume`]).
    #[cfg(test)]
    pub(crate) fn volume_detached(&self, id: u32) -> bool {
        self.vols.detached.contains(&id)
    }

    /// Gives volume `id`'s files the device number `dev` (`st_dev`, Linux's encoding), and
    /// so their host inode numbers as `st_ino` (a disk: its block device's number and ext2's
    /// inode numbers, as Linux shows them; `stat` and `debugfs` agree).
    pub(crate) fn set_volume_dev(&mut self, id: u32, dev: u64) {
        if self.vols.read_only.contains_key(&id) {
            self.vols.devs.insert(id, dev);
        }
    }

    /// (`st_dev`, host inode number) of `ino`: the volume's device and the host's number
    /// for an inode of a volume with a device ([`Fs::set_volume_dev`]), else (0, 0).
    pub(super) fn vol_ids(&self, ino: Ino) -> (u64, u64) {
        self.vols
            .nodes
            .get(&ino)
            .filter(|n| n.hino != 0)
            .and_then(|n| Some((*self.vols.devs.get(&n.vol)?, u64::from(n.hino))))
            .unwrap_or((0, 0))
    }

    /// The inode number programs see for `ino` (`d_ino`): its host number on a volume with
    /// a device, else `ino`.
    pub(super) fn shown_ino(&self, ino: Ino) -> u64 {
        match self.vol_ids(ino) {
            (_, 0) => ino,
            (_, h) => h,
        }
    }

    /// Records `ino` as the mount point (path `/`, host inode number `hino`) of volume `id`.
    fn vol_register(
        &mut self,
        host: Arc<dyn VolumeHost>,
        id: u32,
        read_only: bool,
        ino: Ino,
        hino: u32,
    ) -> Result<(), Errno> {
        let path = copy(b"/")?;
        self.vols.hosts.insert(id, host);
        self.vols.read_only.insert(id, read_only);
        self.vols.nodes.insert(ino, VolNode::new(id, path, hino));
        Ok(())
    }

    /// One call to the host for volume `vol`.
    fn vol_call(&self, vol: u32, req: &Req<'_>, buf: Buf<'_>) -> Result<(u64, HostfsEntry), Errno> {
        self.vols.hosts.get(&vol).ok_or(EIO)?.call(vol, req, buf)
    }

    /// The volume and path of volume inode `ino`.
    fn vol_of(&self, ino: Ino) -> Option<(u32, &[u8])> {
        self.vols
            .nodes
            .get(&ino)
            .map(|n| (n.vol, n.path.as_slice()))
    }

    /// `EROFS` if `vol` is read-only.
    fn vol_writable(&self, vol: u32) -> Result<(), Errno> {
        match self.vols.read_only.get(&vol) {
            Some(true) => Err(EROFS),
            _ => Ok(()),
        }
    }

    /// Whether `ino` is in a read-only volume.
    pub(super) fn vol_read_only(&self, ino: Ino) -> bool {
        self.vol_of(ino)
            .is_some_and(|(v, _)| self.vol_writable(v).is_err())
    }

    /// Sets an inode's metadata from a host stat.
    fn vol_apply(&mut self, ino: Ino, st: &HostfsEntry) {
        if let Some(i) = self.inodes.get_mut(&ino) {
            (i.perm, i.uid, i.gid) = (st.perm & 0o7777, st.uid, st.gid);
            (i.atime, i.mtime, i.ctime) = (st.mtime_ns, st.mtime_ns, st.mtime_ns);
            if let Node::File { size, .. } = &mut i.node {
                *size = st.size.min(MAX_FILE_SIZE);
            }
            Self::apply_links(i, st);
        }
    }

    /// A non-directory's link count from a host stat that states one.
    fn apply_links(i: &mut super::inode::Inode, st: &HostfsEntry) {
        if st.links != 0 && !matches!(i.node, Node::Dir(_)) {
            i.nlink = u32::from(st.links);
        }
    }

    /// The known inode that host entry `st` of volume `vol` is another name of (same host
    /// inode number, same kind), if any.
    fn vol_known(&self, vol: u32, st: &HostfsEntry) -> Option<Ino> {
        if st.ino == 0 || st.kind == abi::kind::DIR {
            return None;
        }
        let &ino = self.vols.by_hino.get(&(vol, st.ino))?;
        let same_kind = matches!(
            (&self.inodes.get(&ino)?.node, st.kind),
            (Node::File { .. }, abi::kind::REG) | (Node::Symlink(_), abi::kind::SYMLINK)
        );
        (same_kind && self.vols.nodes.get(&ino)?.vol == vol).then_some(ino)
    }

    /// Adds a volume inode for host entry `st` named `name` in volume directory `dir`
    /// (path `path`); symbolic links get `target`.
    fn vol_add(
        &mut self,
        dir: Ino,
        vol: u32,
        path: Vec<u8>,
        name: &[u8],
        st: &HostfsEntry,
        target: &[u8],
    ) -> Result<Option<Ino>, Errno> {
        if let Some(known) = self.vol_known(vol, st) {
            // Another name of a file the guest knows: the same inode.
            crate::mm::heap::charge(2 * name.len() + 2 * 64)?;
            let name = copy(name)?;
            let n = self.vols.nodes.get_mut(&known).ok_or(EIO)?;
            n.others.try_reserve(1).map_err(|_| ENOMEM)?;
            if n.path != path && !n.others.contains(&path) {
                n.others.push(path);
            }
            self.dir_mut(dir)?.insert(name, known);
            if let Ok(i) = self.inode_mut(known) {
                Self::apply_links(i, st);
            }
            return Ok(Some(known));
        }
        let node = match st.kind {
            abi::kind::DIR => {
                let mut d = Dir::new(dir);
                d.host = Some(Vec::new());
                Node::Dir(d)
            }
            abi::kind::REG => Node::File {
                data: Data::empty(),
                size: st.size.min(MAX_FILE_SIZE),
            },
            abi::kind::SYMLINK if !target.is_empty() && target.len() <= PATH_MAX => {
                Node::Symlink(copy(target)?)
            }
            _ => return Ok(None),
        };
        let is_dir = matches!(node, Node::Dir(_));
        let ino =
            self.new_uncounted_inode(node, st.perm, if is_dir { 2 } else { 1 }, name.len())?;
        self.vol_apply(ino, st);
        self.vols.put(ino, VolNode::new(vol, path, st.ino), is_dir);
        self.dir_mut(dir)?.insert(copy(name)?, ino);
        if is_dir {
            self.inode_mut(dir)?.nlink += 1;
        }
        Ok(Some(ino))
    }

    /// Lists a lazy volume directory from the host (see [`Fs::load`]); false if `ino` is
    /// not a volume directory.
    pub(super) fn vol_load(&mut self, ino: Ino) -> Result<bool, Errno> {
        let Some((vol, path)) = self.vol_of(ino) else {
            return Ok(false);
        };
        match &self.inode(ino)?.node {
            Node::Dir(Dir { host: Some(_), .. }) => {}
            _ => return Ok(true),
        }
        let path = copy(path)?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(LIST_BUF).map_err(|_| ENOMEM)?;
        buf.resize(LIST_BUF, 0);
        let mut cookie = 0;
        'calls: while cookie < DIR_MAX {
            let req = Req {
                op: op::LIST,
                path: &path,
                offset: cookie,
                ..Req::default()
            };
            let n = self.vol_call(vol, &req, Buf::Out(&mut buf))?.0 as usize;
            if n == 0 {
                break;
            }
            let recs = buf.get(..n).ok_or(EIO)?;
            let mut pos = 0;
            while pos < recs.len() {
                let (rec, len) = parse_record(&recs[pos..]).ok_or(EIO)?;
                pos += len;
                cookie += 1;
                let name = rec.name;
                let ok = !name.is_empty()
                    && name != b"."
                    && name != b".."
                    && !name.contains(&b'/')
                    && !name.contains(&0);
                if ok && self.dir(ino)?.get(name).is_none() {
                    let child = join(&path, name)?;
                    self.vol_add(ino, vol, child, name, &rec.entry, rec.target)?;
                }
                if cookie >= DIR_MAX {
                    break 'calls;
                }
            }
        }
        self.dir_mut(ino)?.host = None;
        Ok(true)
    }

    /// A name volume directory `dir` (already listed) does not hold: asks the host whether it
    /// has it now (made on the host behind the guest's back since the listing) and adds it if
    /// so. `Ok(None)` if the host has no such entry, or `dir` is not a listed volume
    /// directory. A volume is a live host directory, so a miss is never remembered.
    pub(super) fn vol_lookup_new(&mut self, dir: Ino, name: &[u8]) -> Result<Option<Ino>, Errno> {
        let Some((vol, path)) = self.vol_of(dir) else {
            return Ok(None);
        };
        match &self.inode(dir)?.node {
            Node::Dir(Dir { host: None, .. }) => {}
            _ => return Ok(None),
        }
        if name.is_empty()
            || name == b"."
            || name == b".."
            || name.contains(&b'/')
            || name.contains(&0)
            || name.len() > abi::NAME_MAX
        {
            return Ok(None);
        }
        let child = join(path, name)?;
        let req = Req {
            op: op::LOOKUP,
            path: &child,
            ..Req::default()
        };
        let st = match self.vol_call(vol, &req, Buf::None) {
            Ok((_, st)) => st,
            Err(ENOENT | ENOTDIR) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut target = Vec::new();
        if st.kind == abi::kind::SYMLINK {
            target
                .try_reserve_exact(abi::PATH_MAX as usize)
                .map_err(|_| ENOMEM)?;
            target.resize(abi::PATH_MAX as usize, 0);
            let req = Req {
                op: op::READLINK,
                path: &child,
                ..Req::default()
            };
            let (n, _) = self.vol_call(vol, &req, Buf::Out(&mut target))?;
            target.truncate((n as usize).min(abi::PATH_MAX as usize));
        }
        self.vol_add(dir, vol, child, name, &st, &target)
    }

    /// Creates `name` in volume directory `dir` on the host, then here (see
    /// [`Fs::create_at`], which checked the name is free); `None` if `dir` is not a
    /// volume's.
    pub(super) fn vol_create(
        &mut self,
        dir: Ino,
        name: &[u8],
        node: &Node,
        perm: u32,
    ) -> Result<Option<Ino>, Errno> {
        let Some((vol, dpath)) = self.vol_of(dir) else {
            return Ok(None);
        };
        self.vol_writable(vol)?;
        let path = join(dpath, name)?;
        let (req, target) = match node {
            Node::File { .. } => (
                Req {
                    op: op::CREATE,
                    mode: perm,
                    flags: flag::EXCL,
                    ..Req::default()
                },
                &[][..],
            ),
            Node::Dir(_) => (
                Req {
                    op: op::MKDIR,
                    mode: perm,
                    ..Req::default()
                },
                &[][..],
            ),
            Node::Symlink(t) => (
                Req {
                    op: op::SYMLINK,
                    path2: t,
                    ..Req::default()
                },
                t.as_slice(),
            ),
            // The host op set makes no sockets (nor device nodes or FIFOs) in a volume.
            Node::Socket => return Err(EPERM),
        };
        let owner = self.cred.as_ref().map(|c| (c.uid, c.gid));
        let req = Req {
            path: &path,
            owner,
            ..req
        };
        crate::mm::heap::charge(super::inode::inode_cost(name.len()))?;
        let (_, st) = self.vol_call(vol, &req, Buf::None)?;
        let target = copy(target)?;
        let ino = self
            .vol_add(dir, vol, path, name, &st, &target)?
            .ok_or(EIO)?;
        // A new directory is empty: nothing to list.
        if let Ok(d) = self.dir_mut(ino) {
            d.host = None;
        }
        self.touch_dir(dir);
        Ok(Some(ino))
    }

    /// Before `unlink`/`rmdir` removes `name` (inode `ino`) from `dir`: the host removes it
    /// first. `EBUSY` for a mount point; an open file is copied into guest memory first.
    pub(super) fn vol_remove(
        &mut self,
        dir: Ino,
        name: &[u8],
        ino: Ino,
        rmdir: bool,
    ) -> Result<(), Errno> {
        if self.vol_of(ino).is_some_and(|(_, p)| p == b"/") {
            return Err(EBUSY);
        }
        let Some((vol, dpath)) = self.vol_of(dir) else {
            return Ok(());
        };
        self.vol_writable(vol)?;
        let path = join(dpath, name)?;
        let o = if rmdir { op::RMDIR } else { op::UNLINK };
        let req = Req {
            op: o,
            path: &path,
            ..Req::default()
        };
        if self.vol_has_other_names(ino) {
            // One name of several: the file stays, reached by its other names.
            self.vol_call(vol, &req, Buf::None)?;
            if let Some(n) = self.vols.nodes.get_mut(&ino) {
                n.drop_name(&path);
            }
            return Ok(());
        }
        let nlink = self.vol_last_name(ino);
        let saved = self.vol_detach(ino);
        if let Err(e) = self.vol_call(vol, &req, Buf::None) {
            self.vol_undetach(ino, saved);
            if let Ok(i) = self.inode_mut(ino) {
                i.nlink = nlink;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Whether volume inode `ino` has names other than its path that the guest knows.
    fn vol_has_other_names(&self, ino: Ino) -> bool {
        self.vols
            .nodes
            .get(&ino)
            .is_some_and(|n| !n.others.is_empty())
    }

    /// Before the last name the guest knows of `ino` goes: the inode leaves the volume with
    /// that name (another name the host has, in a directory the guest has not listed, is a
    /// new inode when listed), so its count drops to one here, for the caller's decrement.
    /// Returns the count before, to restore if the host refuses.
    fn vol_last_name(&mut self, ino: Ino) -> u32 {
        match self.inode_mut(ino) {
            Ok(i) => {
                let before = i.nlink;
                if !matches!(i.node, Node::Dir(_)) {
                    i.nlink = i.nlink.min(1);
                }
                before
            }
            Err(_) => 0,
        }
    }

    /// Takes `ino` out of its volume before the host removes or replaces its name: a file
    /// still open with no other name keeps its bytes, copied into guest memory now (as far
    /// as they fit). Returns what [`Fs::vol_undetach`] needs if the host then fails.
    fn vol_detach(&mut self, ino: Ino) -> Option<Detached> {
        let keep =
            self.is_volume_file(ino) && self.inode(ino).is_ok_and(|i| i.open > 0 && i.nlink <= 1);
        let mapped = self.vols.maps.remove(&ino);
        let node = self.vols.take(ino)?;
        let size = match self.inode(ino).map(|i| &i.node) {
            Ok(Node::File { size, .. }) => *size,
            _ => 0,
        };
        // A directory outside its volume has nothing to list; [`Fs::vol_undetach`] makes an
        // unlisted one lazy again.
        let lazy = match self.dir_mut(ino) {
            Ok(d) => d.host.take().is_some(),
            Err(_) => false,
        };
        // A mapped file: its cache holds every byte and becomes its data (the mappings keep
        // sharing it).
        if let Some(obj) = &mapped {
            let held = obj.page_count();
            if let Ok(i) = self.inode_mut(ino) {
                if let Node::File { data, .. } = &mut i.node {
                    *data = Data::Pages(obj.clone());
                }
            }
            self.data_pages += held;
            return Some((node, size, lazy, mapped));
        }
        if !keep {
            return Some((node, size, lazy, None));
        }
        let mut chunk = Vec::new();
        if chunk.try_reserve_exact(64 << 10).is_err() {
            return Some((node, size, lazy, None));
        }
        chunk.resize(64 << 10, 0);
        let mut off = 0;
        while off < size {
            let want = ((size - off) as usize).min(chunk.len());
            let req = Req {
                op: op::READ,
                path: &node.path,
                offset: off,
                ..Req::default()
            };
            let n = match self.vol_call(node.vol, &req, Buf::Out(&mut chunk[..want])) {
                Ok((n, _)) if n > 0 => (n as usize).min(want),
                _ => break,
            };
            if self.write_at(ino, off, &chunk[..n]).is_err() {
                break;
            }
            off += n as u64;
        }
        if let Ok(i) = self.inode_mut(ino) {
            if let Node::File { size, .. } = &mut i.node {
                *size = off;
            }
        }
        Some((node, size, lazy, None))
    }

    /// Puts an inode [`Fs::vol_detach`] took out back into its volume (its copy dropped).
    fn vol_undetach(&mut self, ino: Ino, saved: Option<Detached>) {
        let Some((node, old, lazy, mapped)) = saved else {
            return;
        };
        if let Some(obj) = mapped {
            self.vols.maps.insert(ino, obj);
        }
        if lazy {
            if let Ok(d) = self.dir_mut(ino) {
                d.host = Some(Vec::new());
            }
        }
        let mut dropped = 0;
        if let Some(i) = self.inodes.get_mut(&ino) {
            if let Node::File { data, size } = &mut i.node {
                dropped = data.pages_held();
                *data = Data::empty();
                *size = old;
            }
        }
        self.data_pages -= dropped;
        let dir = self.is_dir(ino);
        self.vols.put(ino, node, dir);
    }

    /// Before `rename` moves `src` from `odir/oname` to `ndir/nname` (replacing `dst`): the
    /// host renames first. `EXDEV` across a volume's edge, `EBUSY` for a mount point. Returns
    /// the old and new paths to give `src`'s subtree afterwards ([`Fs::vol_repath`]).
    pub(super) fn vol_rename(
        &mut self,
        odir: Ino,
        oname: &[u8],
        ndir: Ino,
        nname: &[u8],
        src: Ino,
        dst: Option<Ino>,
    ) -> Result<Option<Renamed>, Errno> {
        let is_root = |fs: &Self, i: Ino| fs.vol_of(i).is_some_and(|(_, p)| p == b"/");
        if is_root(self, src) || dst.is_some_and(|d| is_root(self, d)) {
            return Err(EBUSY);
        }
        let (o, n) = (self.vol_of(odir), self.vol_of(ndir));
        let (vol, opath, npath) = match (o, n) {
            (None, None) => return Ok(None),
            (Some((a, op_)), Some((b, np))) if a == b => (a, join(op_, oname)?, join(np, nname)?),
            _ => return Err(EXDEV),
        };
        self.vol_writable(vol)?;
        let req = Req {
            op: op::RENAME,
            path: &opath,
            path2: &npath,
            ..Req::default()
        };
        // A replaced file with other names keeps them (and its place in the volume).
        let dst_other = dst.filter(|&d| self.vol_has_other_names(d));
        let mut dst_nlink = None;
        let saved = match dst {
            Some(d) if dst_other.is_none() => {
                dst_nlink = Some(self.vol_last_name(d));
                self.vol_detach(d)
            }
            _ => None,
        };
        if let Err(e) = self.vol_call(vol, &req, Buf::None) {
            if let (Some(d), None) = (dst, dst_other) {
                self.vol_undetach(d, saved);
                if let (Ok(i), Some(n)) = (self.inode_mut(d), dst_nlink) {
                    i.nlink = n;
                }
            }
            return Err(e);
        }
        if let Some(n) = dst_other.and_then(|d| self.vols.nodes.get_mut(&d)) {
            n.drop_name(&npath);
        }
        Ok(Some((opath, npath)))
    }

    /// After a rename of `old` to `new` (paths in the volume): gives `ino` and every volume
    /// inode below it their names under `new` (names outside, other hard links, stay).
    pub(super) fn vol_repath(&mut self, ino: Ino, old: &[u8], new: &[u8]) -> Result<(), Errno> {
        let moved = |p: &[u8]| -> Result<Option<Vec<u8>>, Errno> {
            let rest = match p.strip_prefix(old) {
                Some(r) if r.is_empty() || r.starts_with(b"/") => r,
                _ => return Ok(None),
            };
            let mut v = Vec::new();
            v.try_reserve_exact(new.len() + rest.len())
                .map_err(|_| ENOMEM)?;
            v.extend_from_slice(new);
            v.extend_from_slice(rest);
            Ok(Some(v))
        };
        let mut stack = alloc::vec![ino];
        while let Some(i) = stack.pop() {
            if let Node::Dir(d) = &self.inode(i)?.node {
                for &(child, _) in d.entries.values() {
                    if self.vols.nodes.contains_key(&child) {
                        stack.try_reserve(1).map_err(|_| ENOMEM)?;
                        stack.push(child);
                    }
                }
            }
            if let Some(n) = self.vols.nodes.get_mut(&i) {
                if let Some(p) = moved(&n.path)? {
                    n.path = p;
                }
                for o in n.others.iter_mut() {
                    if let Some(p) = moved(o)? {
                        *o = p;
                    }
                }
            }
        }
        Ok(())
    }

    /// `link(2)`'s checks at a volume, before anything changes: `EROFS` for a new name in a
    /// read-only volume, `EXDEV` between a volume and elsewhere (or two volumes).
    pub(super) fn vol_may_link(&self, ino: Ino, dir: Ino) -> Result<(), Errno> {
        if let Some((b, _)) = self.vol_of(dir) {
            self.vol_writable(b)?;
        }
        match (self.vol_of(ino), self.vol_of(dir)) {
            (None, None) => Ok(()),
            (Some((a, _)), Some((b, _))) if a == b => Ok(()),
            _ => Err(EXDEV),
        }
    }

    /// A hard link `dir/name` to volume inode `ino`, made on the host (which counts the
    /// links: the inode's count becomes the host's): false if `ino` is not a volume's (the
    /// caller links it in the tree alone). The caller adds the directory entry, and undoes
    /// the host's link with [`Fs::vol_unlink_new`] if it cannot.
    pub(super) fn vol_link(&mut self, ino: Ino, dir: Ino, name: &[u8]) -> Result<bool, Errno> {
        self.vol_may_link(ino, dir)?;
        let Some((vol, from)) = self.vol_of(ino) else {
            return Ok(false);
        };
        let from = copy(from)?;
        let (_, dpath) = self.vol_of(dir).ok_or(EXDEV)?;
        let to = join(dpath, name)?;
        self.vols
            .nodes
            .get_mut(&ino)
            .ok_or(EIO)?
            .others
            .try_reserve(1)
            .map_err(|_| ENOMEM)?;
        let st = self
            .vols
            .hosts
            .get(&vol)
            .ok_or(EIO)?
            .link(vol, &from, &to)?;
        if let Some(n) = self.vols.nodes.get_mut(&ino) {
            n.others.push(to);
        }
        if let Ok(i) = self.inode_mut(ino) {
            if st.links != 0 {
                Self::apply_links(i, &st);
            } else {
                i.nlink = i.nlink.saturating_add(1);
            }
        }
        Ok(true)
    }

    /// Undoes [`Fs::vol_link`]'s `dir/name` of `ino` on the host (the tree could not take
    /// the name).
    pub(super) fn vol_unlink_new(&mut self, ino: Ino, dir: Ino, name: &[u8]) {
        let (Some((vol, _)), Some((_, dpath))) = (self.vol_of(ino), self.vol_of(dir)) else {
            return;
        };
        let Ok(path) = join(dpath, name) else { return };
        let req = Req {
            op: op::UNLINK,
            path: &path,
            ..Req::default()
        };
        if self.vol_call(vol, &req, Buf::None).is_ok() {
            if let Some(n) = self.vols.nodes.get_mut(&ino) {
                n.drop_name(&path);
            }
            if let Ok(i) = self.inode_mut(ino) {
                i.nlink = i.nlink.saturating_sub(1).max(1);
            }
        }
    }

    /// `chmod` of a volume inode: the host's resulting permission bits (set-id bits
    /// cleared), or `perm` unchanged for other inodes.
    pub(super) fn vol_chmod(&mut self, ino: Ino, perm: u32) -> Result<u32, Errno> {
        let Some((vol, path)) = self.vol_of(ino) else {
            return Ok(perm);
        };
        if matches!(self.inode(ino)?.node, Node::Symlink(_)) {
            return Ok(perm);
        }
        self.vol_writable(vol)?;
        let path = copy(path)?;
        let req = Req {
            op: op::CHMOD,
            path: &path,
            mode: perm,
            ..Req::default()
        };
        let (_, st) = self.vol_call(vol, &req, Buf::None)?;
        Ok(st.perm & 0o7777)
    }

    /// `chown` of a volume inode on its host, if the host keeps owners (a disk's ext2);
    /// nothing for other inodes.
    pub(super) fn vol_chown(&mut self, ino: Ino, uid: u32, gid: u32) -> Result<(), Errno> {
        let Some((vol, path)) = self.vol_of(ino) else {
            return Ok(());
        };
        self.vol_writable(vol)?;
        let path = copy(path)?;
        self.vols
            .hosts
            .get(&vol)
            .ok_or(EIO)?
            .chown(vol, &path, uid, gid)?;
        Ok(())
    }

    /// Sets a volume inode's times on the host (`None`: not a volume inode).
    pub(super) fn vol_utimes(&mut self, ino: Ino, atime: u64, mtime: u64) -> Result<bool, Errno> {
        let Some((vol, path)) = self.vol_of(ino) else {
            return Ok(false);
        };
        self.vol_writable(vol)?;
        let path = copy(path)?;
        let req = Req {
            op: op::UTIMES,
            path: &path,
            atime,
            mtime,
            ..Req::default()
        };
        let (_, st) = self.vol_call(vol, &req, Buf::None)?;
        if let Ok(i) = self.inode_mut(ino) {
            i.atime = if atime == UTIME_OMIT { i.atime } else { atime };
            i.mtime = st.mtime_ns;
        }
        Ok(true)
    }

    /// Sets a volume file's size on the host (false: not a volume file).
    pub(super) fn vol_truncate(&mut self, ino: Ino, len: u64) -> Result<bool, Errno> {
        if !self.is_volume_file(ino) {
            return Ok(false);
        }
        let Some((vol, path)) = self.vol_of(ino) else {
            return Ok(false);
        };
        self.vol_writable(vol)?;
        let path = copy(path)?;
        let req = Req {
            op: op::TRUNCATE,
            path: &path,
            offset: len,
            ..Req::default()
        };
        let (_, st) = self.vol_call(vol, &req, Buf::None)?;
        self.vol_apply(ino, &st);
        self.vol_cache_truncate(ino, len);
        Ok(true)
    }

    /// Reads a volume file at `off` from the host (`None`: not a volume file).
    pub(super) fn vol_read(
        &mut self,
        ino: Ino,
        off: u64,
        buf: &mut [u8],
    ) -> Option<Result<usize, Errno>> {
        if !self.is_volume_file(ino) {
            return None;
        }
        if let Some(r) = self.vol_cache_read(ino, off, buf) {
            return Some(r);
        }
        let (vol, path) = self.vol_of(ino)?;
        let path = match copy(path) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        let mut done = 0;
        while done < buf.len() {
            let want = (buf.len() - done).min(IO_MAX as usize);
            let req = Req {
                op: op::READ,
                path: &path,
                offset: off + done as u64,
                ..Req::default()
            };
            match self.vol_call(vol, &req, Buf::Out(&mut buf[done..done + want])) {
                Ok((0, _)) => break,
                Ok((n, _)) => done += (n as usize).min(want),
                Err(e) if done == 0 => return Some(Err(e)),
                Err(_) => break,
            }
        }
        Some(Ok(done))
    }

    /// Writes a volume file at `off` through to the host (`None`: not a volume file).
    pub(super) fn vol_write(
        &mut self,
        ino: Ino,
        off: u64,
        buf: &[u8],
    ) -> Option<Result<usize, Errno>> {
        if !self.is_volume_file(ino) {
            return None;
        }
        let (vol, path) = self.vol_of(ino)?;
        if let Err(e) = self.vol_writable(vol) {
            return Some(Err(e));
        }
        let path = match copy(path) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        let mut done = 0;
        let mut last = None;
        while done < buf.len() {
            let want = (buf.len() - done).min(IO_MAX as usize);
            let req = Req {
                op: op::WRITE,
                path: &path,
                offset: off + done as u64,
                ..Req::default()
            };
            match self.vol_call(vol, &req, Buf::In(&buf[done..done + want])) {
                Ok((0, _)) => break,
                Ok((n, st)) => {
                    done += (n as usize).min(want);
                    last = Some(st);
                }
                Err(e) if done == 0 => return Some(Err(e)),
                Err(_) => break,
            }
        }
        self.vol_cache_write(ino, off, &buf[..done]);
        if let Some(st) = last {
            let now = self.now();
            if let Ok(i) = self.inode_mut(ino) {
                if let Node::File { size, .. } = &mut i.node {
                    *size = st.size.max(off + done as u64).min(MAX_FILE_SIZE);
                }
                (i.mtime, i.ctime) = (now, now);
            }
        }
        Some(Ok(done))
    }

    /// On `open` of a volume file: its size and metadata from the host now (best effort;
    /// the host file may have changed since it was listed).
    pub(super) fn vol_refresh(&mut self, ino: Ino) {
        if !self.is_volume_file(ino) {
            return;
        }
        // While mappings share its cache, the cache is the guest's view of the file.
        self.vol_release_unmapped();
        if self.vol_cache(ino).is_some() {
            return;
        }
        let Some((vol, path)) = self.vol_of(ino) else {
            return;
        };
        let Ok(path) = copy(path) else { return };
        let req = Req {
            op: op::LOOKUP,
            path: &path,
            ..Req::default()
        };
        if let Ok((_, st)) = self.vol_call(vol, &req, Buf::None) {
            if st.kind == abi::kind::REG {
                self.vol_apply(ino, &st);
            }
        }
    }

    /// `fsync` of inode `ino`: the host flushes a volume file or directory.
    pub(crate) fn fsync(&mut self, ino: Ino) -> Result<(), Errno> {
        let Some((vol, path)) = self.vol_of(ino) else {
            self.inode(ino)?;
            return Ok(());
        };
        if matches!(self.inode(ino)?.node, Node::Symlink(_)) {
            return Ok(());
        }
        let path = copy(path)?;
        self.vol_writeback(ino, 0, u64::MAX)?;
        let req = Req {
            op: op::FSYNC,
            path: &path,
            ..Req::default()
        };
        self.vol_call(vol, &req, Buf::None)?;
        Ok(())
    }
}
