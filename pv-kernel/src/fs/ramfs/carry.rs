//! A kernel hand-over of the whole filesystem (`pvmux upgrade`, record sections 21-23,
//! `pvmux_hypercalls::handover::FsNodeEntry`): [`Fs::carry_out`] describes every named inode
//! — its number, metadata, names with their `getdents64` cookies, and what backs it: pool
//! frames (a written file's pages, carried by frame), the initramfs's bytes (by their
//! CRC-32), the `--rootfs` share (by path), a volume (by volume and path) — and
//! [`Fs::adopt_carried`] makes an adopting kernel's tree that one, so the programs see the
//! same files, numbers and contents. An inode without a name is carried only as a regular
//! file or a removed directory held open (its descriptors are carried by inode; a removed
//! directory becomes its own parent); one mapped only is not carried: its mapping is named
//! as a blocker by the record's writer. A volume file mapped `MAP_SHARED` carries the cache
//! its mappings share (`fs_node_flags::MAPPED`, `volume/maps.rs`) as its pages, with what
//! the programs stored that the host has not been written yet.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use pvmux_hypercalls::handover::{
    fs_node, fs_node_flags, BlobRef, FsDirentEntry, FsNodeEntry, FsPagesEntry,
};
use pvmux_hypercalls::PAGE_SIZE;

use super::contents::Data;
use super::inode::{Dir, Ino, Inode, Node, ROOT_INO};
use super::Fs;
use crate::fs::pagecache::PageObject;

/// CRC-32 of a borrowed file's bytes (the initramfs's), to find them in an adopter's.
fn crc(b: &[u8]) -> u32 {
    pvmux_hypercalls::handover::crc32(b)
}

/// [`FsNodeEntry::aux`] of a borrowed file: its length and CRC-32.
fn static_key(b: &[u8]) -> u64 {
    ((b.len() as u64) << 32) | u64::from(crc(b))
}

/// Adds the stored pages of file `ino`, whose page object is `obj`, to `pages` by runs of
/// consecutive frames.
fn push_runs(pages: &mut Vec<FsPagesEntry>, ino: Ino, obj: &PageObject) {
    for (index, gpa) in obj.frames() {
        if let Some(r) = pages.last_mut().filter(|r| {
            r.ino == ino && r.index + r.pages == index && r.gpa + r.pages * PAGE_SIZE == gpa
        }) {
            r.pages += 1;
            continue;
        }
        pages.push(FsPagesEntry {
            ino,
            index,
            gpa,
            pages: 1,
        });
    }
}

/// The filesystem as sections 21-23 carry it.
#[derive(Clone, Default, Debug)]
pub(crate) struct Carried {
    /// The filesystem entry, then every named inode in increasing order.
    pub(crate) nodes: Vec<FsNodeEntry>,
    /// Every name, in (directory, cookie) order.
    pub(crate) dirents: Vec<FsDirentEntry>,
    /// Every stored page of a regular file, by runs of frames.
    pub(crate) pages: Vec<FsPagesEntry>,
}

impl Carried {
    /// Bytes of its entries.
    pub(crate) fn size(&self) -> usize {
        use core::mem::size_of;
        self.nodes.len() * size_of::<FsNodeEntry>()
            + self.dirents.len() * size_of::<FsDirentEntry>()
            + self.pages.len() * size_of::<FsPagesEntry>()
    }
}

/// Why a carried filesystem cannot be taken.
pub(crate) type Refused = &'static str;

impl Fs {
    /// The filesystem as the record carries it, its byte strings added with `blob`; or what
    /// it cannot carry and how many (a volume file with several names: its other names are
    /// the host's hard links, which only a disk keeps).
    pub(crate) fn carry_out(
        &self,
        blob: &mut dyn FnMut(&[u8]) -> BlobRef,
    ) -> Result<Carried, (&'static [u8], u32)> {
        let mut c = Carried::default();
        c.nodes.push(FsNodeEntry {
            kind: fs_node::FS,
            size: self.next_ino,
            ..Default::default()
        });
        let mut several = 0u32;
        for (&ino, i) in &self.inodes {
            // An inode without a name is carried only as a regular file or a removed (so
            // empty) directory held open (its descriptors are carried by inode,
            // `fd_state::MEMORY_FILE`).
            let removed_dir =
                i.nlink == 0 && matches!(&i.node, Node::Dir(d) if d.entries.is_empty());
            if i.nlink == 0 && !(i.open > 0 && (matches!(i.node, Node::File { .. }) || removed_dir))
            {
                continue;
            }
            let mut e = FsNodeEntry {
                ino,
                flags: if i.counted { fs_node_flags::COUNTED } else { 0 },
                perm: i.perm,
                uid: i.uid,
                gid: i.gid,
                nlink: i.nlink,
                atime: i.atime,
                mtime: i.mtime,
                ctime: i.ctime,
                ..Default::default()
            };
            if let Some((vol, path, others, hino)) = self.vol_node_parts(ino) {
                several += u32::from(others);
                e.flags |= fs_node_flags::VOLUME;
                e.aux = u64::from(vol) | (u64::from(hino) << 32);
                e.vol_path = blob(path);
            }
            match &i.node {
                Node::File { data, size } => {
                    e.kind = fs_node::REGULAR;
                    e.size = *size;
                    match data {
                        Data::Static(s) => {
                            e.flags |= fs_node_flags::STATIC;
                            e.aux = static_key(s);
                        }
                        Data::Host { path, len, .. } => {
                            e.flags |= fs_node_flags::HOST;
                            e.aux = *len;
                            e.path = blob(path);
                        }
                        // A mapped volume file: the cache its mappings share.
                        Data::Pages(_) if self.vol_cache(ino).is_some() => {
                            e.flags |= fs_node_flags::MAPPED;
                            if let Some(cache) = self.vol_cache(ino) {
                                push_runs(&mut c.pages, ino, cache);
                            }
                        }
                        Data::Pages(p) => push_runs(&mut c.pages, ino, p),
                    }
                }
                // A removed directory is its own parent (the old one may be gone too).
                Node::Dir(d) if removed_dir => {
                    e.kind = fs_node::DIRECTORY;
                    e.flags |= fs_node_flags::REMOVED;
                    e.parent = ino;
                    e.next_cookie = d.next_cookie;
                }
                Node::Dir(d) => {
                    e.kind = fs_node::DIRECTORY;
                    e.parent = d.parent;
                    e.next_cookie = d.next_cookie;
                    if let Some(p) = &d.host {
                        e.flags |= fs_node_flags::LAZY;
                        e.path = blob(p);
                    }
                    for (&cookie, name) in &d.by_cookie {
                        let Some(&(child, _)) = d.entries.get(name) else {
                            continue;
                        };
                        c.dirents.push(FsDirentEntry {
                            dir: ino,
                            cookie,
                            ino: child,
                            name: blob(name),
                        });
                    }
                }
                Node::Symlink(t) => {
                    e.kind = fs_node::SYMLINK;
                    e.path = blob(t);
                }
                Node::Socket => e.kind = fs_node::SOCKET,
            }
            c.nodes.push(e);
        }
        if several > 0 {
            return Err((b"volume files with several names", several));
        }
        Ok(c)
    }

    /// Makes this filesystem (booted, its initramfs unpacked, volumes mounted, share
    /// attached) the carried one `c`, whose strings `blob` resolves: every inode, name and
    /// cookie as carried, a written file's pages in its frames (each frame's reference is
    /// handed over: the caller took it), a borrowed file's bytes this kernel's initramfs
    /// file of the same length and CRC-32, the mounts at their paths again. Nothing changes
    /// on a refusal (the frames' references are then the caller's). Open files of this
    /// kernel's (none after a boot) refuse it.
    pub(crate) fn adopt_carried(
        &mut self,
        c: &Carried,
        blob: &dyn Fn(BlobRef) -> Option<Vec<u8>>,
    ) -> Result<(), Refused> {
        // Checked first without taking a frame, then built for good.
        let (inodes, _) = build(c, blob, &|ino| self.static_bytes(ino), false)?;
        if !self.handles.is_empty() {
            return Err("the new kernel has open files of its own");
        }
        // Volume inodes: this kernel's volumes (the same arguments) must be there.
        let mut vols = Vec::new();
        for n in c
            .nodes
            .iter()
            .filter(|n| n.flags & fs_node_flags::VOLUME != 0)
        {
            let vol = n.aux as u32;
            if !self.vols.has_volume(vol) {
                return Err("a volume inode of no volume mounted here");
            }
            let path = blob(n.vol_path).ok_or("a volume path outside the blob")?;
            vols.push((
                n.ino,
                vol,
                path,
                (n.aux >> 32) as u32,
                n.kind == fs_node::DIRECTORY,
            ));
        }
        // The mounts, at their paths in the carried tree.
        let mut mounts = BTreeMap::new();
        for (&ino, &kind) in &self.mounts {
            let path = self
                .path_of(&self.inodes, ino)
                .ok_or("a mount point without a path")?;
            let to = lookup_in(&inodes, &path).ok_or("a mount point missing from the tree")?;
            mounts.insert(to, kind);
        }
        drop(inodes);
        let (mut inodes, next_ino) = build(c, blob, &|ino| self.static_bytes(ino), true)?;
        // A mapped volume file's pages are its mappings' cache, not its data (it has none:
        // its bytes are the host's).
        let mut maps = Vec::new();
        for n in c
            .nodes
            .iter()
            .filter(|n| n.flags & fs_node_flags::MAPPED != 0)
        {
            if let Some(Inode {
                node: Node::File { data, .. },
                ..
            }) = inodes.get_mut(&n.ino)
            {
                if let Data::Pages(cache) =
                    core::mem::replace(data, Data::Pages(PageObject::new_owned()))
                {
                    maps.push((n.ino, cache));
                }
            }
        }
        let pages: u64 = inodes
            .values()
            .map(|i| match &i.node {
                Node::File { data, .. } => data.pages_held(),
                _ => 0,
            })
            .sum();
        self.counted_inodes = inodes.values().filter(|i| i.counted).count() as u64;
        self.data_pages = pages;
        self.inodes = inodes;
        self.next_ino = next_ino;
        self.mounts = mounts;
        self.vols.replace_nodes(vols, maps);
        Ok(())
    }

    /// Frees every inode without a name that nothing holds open: after an adoption, the
    /// carried files whose descriptors were not opened again.
    pub(crate) fn forget_unheld(&mut self) {
        let unheld: Vec<Ino> = self
            .inodes
            .iter()
            .filter(|(_, i)| i.nlink == 0 && i.open == 0)
            .map(|(&ino, _)| ino)
            .collect();
        for ino in unheld {
            self.maybe_free(ino);
        }
    }

    /// The bytes of borrowed file `ino`, if it is one.
    fn static_bytes(&self, ino: Ino) -> Option<&'static [u8]> {
        match self.inodes.get(&ino).map(|i| &i.node) {
            Some(Node::File {
                data: Data::Static(s),
                ..
            }) => Some(s),
            _ => None,
        }
    }

    /// The names from the root to directory `ino` in `inodes`.
    fn path_of(&self, inodes: &BTreeMap<Ino, Inode>, mut ino: Ino) -> Option<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        while ino != ROOT_INO {
            let Some(Inode {
                node: Node::Dir(d), ..
            }) = inodes.get(&ino)
            else {
                return None;
            };
            let Some(Inode {
                node: Node::Dir(p), ..
            }) = inodes.get(&d.parent)
            else {
                return None;
            };
            let name = p.entries.iter().find(|(_, &(i, _))| i == ino)?.0;
            names.push(name.clone());
            ino = d.parent;
            if names.len() > 4096 {
                return None;
            }
        }
        names.reverse();
        Some(names)
    }
}

/// Checks the carried filesystem `c` as [`Fs::adopt_carried`] would take it, taking
/// nothing (the hand-over's pre-flight: borrowed files are checked at the adoption).
pub(crate) fn check_carried(
    c: &Carried,
    blob: &dyn Fn(BlobRef) -> Option<Vec<u8>>,
) -> Result<(), Refused> {
    build(c, blob, &|_| None, false).map(|_| ())
}

/// The directory `path` (names from the root) leads to in `inodes`.
fn lookup_in(inodes: &BTreeMap<Ino, Inode>, path: &[Vec<u8>]) -> Option<Ino> {
    let mut ino = ROOT_INO;
    for name in path {
        let Some(Inode {
            node: Node::Dir(d), ..
        }) = inodes.get(&ino)
        else {
            return None;
        };
        ino = d.get(name)?;
    }
    matches!(inodes.get(&ino)?.node, Node::Dir(_)).then_some(ino)
}

/// The inodes `c` carries (and the next inode number), checked beyond `Record::check`:
/// names unique in their directory, every inode reachable from the root, a directory named
/// once and by its parent, a link count no larger than its names allow, every frame once,
/// a borrowed file found by `static_of` (the adopter's own initramfs file of that number;
/// with the same length and CRC-32). With `take_frames`, once everything checks, each
/// stored page's frame goes into its file's page object (its reference handed over);
/// without, the files are left empty and nothing is taken (a check).
pub(super) fn build(
    c: &Carried,
    blob: &dyn Fn(BlobRef) -> Option<Vec<u8>>,
    static_of: &dyn Fn(Ino) -> Option<&'static [u8]>,
    take_frames: bool,
) -> Result<(BTreeMap<Ino, Inode>, Ino), Refused> {
    let (fs, nodes) = c.nodes.split_first().ok_or("no filesystem entry")?;
    if fs.ino != 0 || fs.kind != fs_node::FS {
        return Err("no filesystem entry");
    }
    let mut inodes: BTreeMap<Ino, Inode> = BTreeMap::new();
    let blob = |r: BlobRef| blob(r).ok_or("a string outside the blob");
    for n in nodes {
        let node = match n.kind {
            fs_node::REGULAR => {
                let data = if n.flags & fs_node_flags::STATIC != 0 {
                    // Its bytes are the start of that file's (a truncate shortens them).
                    let len = (n.aux >> 32) as usize;
                    match static_of(n.ino).map(|s| s.get(..len)) {
                        Some(Some(s)) if static_key(s) == n.aux => Data::Static(s),
                        // A check without the files: what is taken is checked then.
                        None if !take_frames => Data::Static(&[]),
                        _ => return Err("an initramfs file this kernel does not have"),
                    }
                } else if n.flags & fs_node_flags::HOST != 0 {
                    Data::Host {
                        path: blob(n.path)?,
                        len: n.aux,
                        cache: None,
                    }
                } else {
                    Data::Pages(PageObject::new_owned())
                };
                Node::File { data, size: n.size }
            }
            fs_node::DIRECTORY => {
                let mut d = Dir::new(n.parent);
                d.next_cookie = n.next_cookie;
                if n.flags & fs_node_flags::LAZY != 0 {
                    d.host = Some(blob(n.path)?);
                }
                Node::Dir(d)
            }
            fs_node::SYMLINK => Node::Symlink(blob(n.path)?),
            fs_node::SOCKET => Node::Socket,
            _ => return Err("an inode of an unknown kind"),
        };
        let mut i = Inode::new(node, n.perm, n.nlink, 0);
        i.uid = n.uid;
        i.gid = n.gid;
        i.atime = n.atime;
        i.mtime = n.mtime;
        i.ctime = n.ctime;
        i.counted = n.flags & fs_node_flags::COUNTED != 0;
        if inodes.insert(n.ino, i).is_some() {
            return Err("an inode carried twice");
        }
    }
    // Names.
    let mut named: BTreeMap<Ino, u32> = BTreeMap::new();
    let mut subdirs: BTreeMap<Ino, u32> = BTreeMap::new();
    for d in &c.dirents {
        let name = blob(d.name)?;
        let child_is_dir = matches!(
            inodes.get(&d.ino).ok_or("a name of no inode")?.node,
            Node::Dir(_)
        );
        if child_is_dir
            && !matches!(&inodes.get(&d.ino).map(|i| &i.node), Some(Node::Dir(c)) if c.parent == d.dir)
        {
            return Err("a directory named outside its parent");
        }
        if child_is_dir {
            *subdirs.entry(d.dir).or_default() += 1;
        }
        let Some(Inode {
            node: Node::Dir(dir),
            ..
        }) = inodes.get_mut(&d.dir)
        else {
            return Err("a name in no directory");
        };
        if d.cookie < 3 || d.cookie >= dir.next_cookie || dir.by_cookie.contains_key(&d.cookie) {
            return Err("a name's cookie");
        }
        if dir
            .entries
            .insert(name.clone(), (d.ino, d.cookie))
            .is_some()
        {
            return Err("a name twice in a directory");
        }
        dir.by_cookie.insert(d.cookie, name);
        *named.entry(d.ino).or_default() += 1;
    }
    // Every inode reachable from the root; a directory named once; link counts.
    let mut seen = BTreeSet::new();
    let mut todo = Vec::from([ROOT_INO]);
    while let Some(ino) = todo.pop() {
        if !seen.insert(ino) {
            continue;
        }
        if let Some(Inode {
            node: Node::Dir(d), ..
        }) = inodes.get(&ino)
        {
            todo.extend(d.entries.values().map(|&(i, _)| i));
        }
    }
    // Link counts as the filesystem keeps them (a directory: 2 and one per subdirectory;
    // anything else: one per name), so that removing names never takes one below zero; a
    // volume's inodes may have more (the host's links the guest has not seen).
    let volume = |ino: Ino| {
        nodes
            .binary_search_by_key(&ino, |n| n.ino)
            .is_ok_and(|k| nodes[k].flags & fs_node_flags::VOLUME != 0)
    };
    for (&ino, i) in &inodes {
        let names = named.get(&ino).copied().unwrap_or(0);
        let want = match i.node {
            Node::Dir(_) => 2 + subdirs.get(&ino).copied().unwrap_or(0),
            _ => names,
        };
        let links_ok = if volume(ino) {
            i.nlink >= want
        } else {
            i.nlink == want || i.nlink == 0
        };
        if !links_ok {
            return Err("a link count");
        }
        let ok = if i.nlink == 0 {
            // Held open only (`Fs::forget_unheld` frees it if nothing opens it): a file, or
            // a removed directory, empty and its own parent.
            names == 0
                && match &i.node {
                    Node::File { .. } => true,
                    Node::Dir(d) => d.entries.is_empty() && d.parent == ino && d.host.is_none(),
                    _ => false,
                }
        } else {
            seen.contains(&ino)
                && match &i.node {
                    Node::Dir(_) => {
                        (ino == ROOT_INO && names == 0) || (ino != ROOT_INO && names == 1)
                    }
                    _ => names >= 1,
                }
        };
        if !ok {
            return Err("an inode not in the tree once");
        }
    }
    match inodes.get(&ROOT_INO).map(|i| &i.node) {
        Some(Node::Dir(d)) if d.parent == ROOT_INO => {}
        _ => return Err("no root directory"),
    }
    // Pages: every frame once.
    let mut frames = BTreeSet::new();
    for p in &c.pages {
        for k in 0..p.pages {
            if !frames.insert(p.gpa + k * PAGE_SIZE) {
                return Err("a file frame twice");
            }
        }
        match inodes.get(&p.ino).map(|i| &i.node) {
            Some(Node::File {
                data: Data::Pages(_),
                ..
            }) => {}
            _ => return Err("pages of no stored file"),
        }
    }
    for p in c.pages.iter().filter(|_| take_frames) {
        if let Some(Node::File {
            data: Data::Pages(o),
            ..
        }) = inodes.get(&p.ino).map(|i| &i.node)
        {
            for k in 0..p.pages {
                o.insert(p.index + k, p.gpa + k * PAGE_SIZE);
            }
        }
    }
    Ok((inodes, fs.size))
}
