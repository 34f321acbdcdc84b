//! Version 2, sections 21-23: the guest's **in-memory filesystem** (`ramfs`: `/tmp`, the
//! overlay over the `--rootfs` share, the initramfs's files, the nodes of `--volume`s as the
//! guest knows them, socket names), carried whole so that an adopting kernel shows the
//! programs the same tree: the same inode numbers, names, `getdents64` cookies, metadata and
//! contents.
//!
//! * [`FsNodeEntry`] (section [`super::section::FS_NODE`]): the filesystem itself first
//!   ([`fs_node::FS`], inode 0: the next inode number), then every named inode in
//!   increasing inode order, with its metadata and what backs it: a regular file's bytes
//!   are in pool frames ([`FsPagesEntry`]: carried by frame, never copied), borrowed from
//!   the initramfs (the adopter's own initramfs must hold the same bytes at the same inode:
//!   [`fs_node_flags::STATIC`], with their CRC-32), or the `--rootfs` share's
//!   ([`fs_node_flags::HOST`]: read from the host again); a directory still to be listed
//!   from the host (the overlay's state: a listed directory is never listed again, so a
//!   name removed from it stays removed) names its host path ([`fs_node_flags::LAZY`]); a
//!   volume inode names its volume and its path in it ([`fs_node_flags::VOLUME`]).
//! * [`FsDirentEntry`] (section [`super::section::FS_DIRENT`]): every name of every
//!   directory with its cookie (the `getdents64` offset), in (directory, cookie) order.
//! * [`FsPagesEntry`] (section [`super::section::FS_PAGES`]): the stored pages of the
//!   regular files, as runs of frames of the user pool, in (inode, page) order; each frame
//!   gets one reference (the file's). Pages not stored read as zeros (holes).

use core::mem::size_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{oob, BlobRef, Entry, Record, RecordError, Table};
use crate::PAGE_SIZE;

/// Version 2 (section [`super::section::FS_NODE`]): one inode of the in-memory filesystem,
/// or (first, inode 0) the filesystem itself.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct FsNodeEntry {
    /// Its inode number (`st_ino`; 0 for [`fs_node::FS`]).
    pub ino: u64,
    /// An [`fs_node`] kind.
    pub kind: u32,
    /// [`fs_node_flags`].
    pub flags: u32,
    /// Permission bits (at most `0o7777`).
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Link count: at least 1 (a named inode), or 0 for a regular file that descriptors of
    /// kind [`super::fd_state::MEMORY_FILE`] hold open after its last name went.
    pub nlink: u32,
    /// Access time (ns since the epoch).
    pub atime: u64,
    /// Modification time.
    pub mtime: u64,
    /// Status change time.
    pub ctime: u64,
    /// A regular file's size; [`fs_node::FS`]: the next inode number (above every carried
    /// one: numbers are never reused).
    pub size: u64,
    /// A directory: its parent (the root is its own).
    pub parent: u64,
    /// A directory: the cookie its next name gets (above every cookie it has given).
    pub next_cookie: u64,
    /// [`fs_node_flags::HOST`]: the bytes the host backs (at most `size`);
    /// [`fs_node_flags::STATIC`]: the CRC-32 of the bytes; [`fs_node_flags::VOLUME`]: the
    /// volume (low 32 bits) and the host's inode number (high 32 bits).
    pub aux: u64,
    /// A symbolic link's target; a lazy directory's or a host file's path in the share.
    pub path: BlobRef,
    /// [`fs_node_flags::VOLUME`]: its path in its volume (`/`: the mount point).
    pub vol_path: BlobRef,
}

const _: () = assert!(size_of::<FsNodeEntry>() == 104);

/// [`FsNodeEntry::kind`].
pub mod fs_node {
    /// The filesystem itself (the first entry, inode 0).
    pub const FS: u32 = 0;
    /// A regular file.
    pub const REGULAR: u32 = 1;
    /// A directory.
    pub const DIRECTORY: u32 = 2;
    /// A symbolic link.
    pub const SYMLINK: u32 = 3;
    /// A socket's name (the socket itself is in section 17).
    pub const SOCKET: u32 = 4;
}

/// [`FsNodeEntry::flags`].
pub mod fs_node_flags {
    /// Counted against the filesystem's inode limit (made in the guest).
    pub const COUNTED: u32 = 1 << 0;
    /// A directory whose host directory (`path`) has not been listed yet.
    pub const LAZY: u32 = 1 << 1;
    /// A regular file whose first `aux` bytes are the host share's file `path`.
    pub const HOST: u32 = 1 << 2;
    /// A regular file whose bytes are the initramfs's (`aux`: their CRC-32).
    pub const STATIC: u32 = 1 << 3;
    /// A volume's inode.
    pub const VOLUME: u32 = 1 << 4;
    /// A directory removed while a descriptor held it open: no link, no names, no entries,
    /// its own parent.
    pub const REMOVED: u32 = 1 << 5;
    /// A volume's regular file mapped `MAP_SHARED`: its page runs (section
    /// [`super::super::section::FS_PAGES`]) are the cache its mappings share, which holds
    /// every page of the file and what programs stored through the mappings that has not
    /// reached the host yet. Only with [`VOLUME`]; a volume file without it has no pages.
    pub const MAPPED: u32 = 1 << 6;
    /// Every flag.
    pub const ALL: u32 = COUNTED | LAZY | HOST | STATIC | VOLUME | REMOVED | MAPPED;
}

/// Version 2 (section [`super::section::FS_DIRENT`]): one name in a directory.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct FsDirentEntry {
    /// The directory.
    pub dir: u64,
    /// Its `getdents64` cookie (3 or more: 1 and 2 are `.` and `..`).
    pub cookie: u64,
    /// The inode it names.
    pub ino: u64,
    /// The name (1..=255 bytes, neither `/` nor NUL, not `.` or `..`).
    pub name: BlobRef,
}

const _: () = assert!(size_of::<FsDirentEntry>() == 32);

/// Version 2 (section [`super::section::FS_PAGES`]): a run of stored pages of a regular
/// file, in consecutive frames of the user pool.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct FsPagesEntry {
    /// The file.
    pub ino: u64,
    /// Its first page's index in the file.
    pub index: u64,
    /// Its first page's guest-physical frame.
    pub gpa: u64,
    /// Pages in the run (at least 1).
    pub pages: u64,
}

const _: () = assert!(size_of::<FsPagesEntry>() == 32);

impl Entry for FsNodeEntry {
    const KIND: u32 = super::section::FS_NODE;
}
impl Entry for FsDirentEntry {
    const KIND: u32 = super::section::FS_DIRENT;
}
impl Entry for FsPagesEntry {
    const KIND: u32 = super::section::FS_PAGES;
}

/// The largest file a record may carry (the filesystem's own limit, 1 TiB).
pub const MAX_FS_FILE_SIZE: u64 = 1 << 40;

/// Inode numbers and directory cookies stay below this (they count up from there).
pub const MAX_FS_COUNTER: u64 = 1 << 62;

/// The longest symbolic link target or path a node may name (`PATH_MAX`).
pub const MAX_FS_PATH: u32 = 4096;

impl Record<'_> {
    /// [`Record::check`] of sections 21-23 (`pool`: the user pool's frames, `[start,
    /// end)`): the filesystem entry first and only once, every inode after it in increasing
    /// order and below its next number, the root a directory, known kinds and flags, a
    /// directory's parent a directory, blob references inside the blob; names in
    /// (directory, cookie) order, each of a carried directory, naming a carried inode, with
    /// a cookie the directory has given, a valid name; page runs in (inode, page) order,
    /// disjoint, of a regular file stored in frames, inside its size, frames in the pool.
    pub(super) fn check_fs(&self, pool: (u64, u64)) -> Result<(), RecordError> {
        let nodes = Table::<FsNodeEntry>::of(self);
        let dirents = Table::<FsDirentEntry>::of(self);
        let pages = Table::<FsPagesEntry>::of(self);
        let Some(fs) = nodes.get(0) else {
            if dirents.len() > 0 || pages.len() > 0 {
                return oob("filesystem names or pages without its nodes", 0);
            }
            return Ok(());
        };
        if fs.ino != 0 || fs.kind != super::fs_node::FS {
            return oob("filesystem entry (first, inode 0)", fs.ino);
        }
        let next_ino = fs.size;
        if next_ino >= MAX_FS_COUNTER {
            return oob("filesystem's next inode number", next_ino);
        }
        let mut last = 0u64;
        for n in nodes.iter().skip(1) {
            if n.ino <= last || n.ino >= next_ino {
                return oob(
                    "filesystem inode (in increasing order, below the next)",
                    n.ino,
                );
            }
            last = n.ino;
            let f = n.flags;
            let path = self.blob_bytes(n.path);
            let vol_path = self.blob_bytes(n.vol_path);
            if f & !super::fs_node_flags::ALL != 0
                || n.perm > 0o7777
                || (n.nlink == 0
                    && n.kind != fs_node::REGULAR
                    && f & super::fs_node_flags::REMOVED == 0)
                || (f & super::fs_node_flags::REMOVED != 0
                    && (n.kind != fs_node::DIRECTORY || n.nlink != 0 || n.parent != n.ino))
                || path.is_none_or(|p| p.len() > MAX_FS_PATH as usize)
                || vol_path.is_none_or(|p| p.len() > MAX_FS_PATH as usize)
                || (f & super::fs_node_flags::VOLUME != 0) == vol_path.is_none_or(<[u8]>::is_empty)
            {
                return oob("filesystem inode's flags, mode or paths", n.ino);
            }
            use super::fs_node_flags::*;
            use fs_node::*;
            let ok = match n.kind {
                REGULAR => {
                    let backing = f & (HOST | STATIC);
                    let mapped_ok = f & MAPPED == 0 || f & VOLUME != 0;
                    n.size <= MAX_FS_FILE_SIZE
                        && mapped_ok
                        && f & LAZY == 0
                        && backing != HOST | STATIC
                        && (f & HOST == 0
                            || (n.aux <= n.size && path.is_some_and(|p| !p.is_empty())))
                }
                DIRECTORY => {
                    f & (LAZY | REMOVED) != LAZY | REMOVED
                        && f & MAPPED == 0
                        && nodes
                        .find(n.parent, |d| d.ino)
                        .is_some_and(|d| d.kind == DIRECTORY && d.ino != 0)
                        && (3..MAX_FS_COUNTER).contains(&n.next_cookie)
                        && f & (HOST | STATIC) == 0
                        // Still to be listed: from the share, by absolute path; a volume's
                        // from its volume (`vol_path`), with no share path.
                        && (f & LAZY == 0
                            || path.is_some_and(|p| {
                                if f & VOLUME != 0 {
                                    p.is_empty()
                                } else {
                                    p.starts_with(b"/")
                                }
                            }))
                }
                SYMLINK => {
                    f & (LAZY | HOST | STATIC | MAPPED) == 0 && path.is_some_and(|p| !p.is_empty())
                }
                SOCKET => f & (LAZY | HOST | STATIC | MAPPED) == 0,
                _ => false,
            };
            if !ok {
                return oob("filesystem inode's kind or backing", n.ino);
            }
        }
        if nodes
            .find(1, |n| n.ino)
            .is_none_or(|r| r.kind != super::fs_node::DIRECTORY)
        {
            return oob("filesystem root (inode 1, a directory)", 1);
        }
        let mut prev = (0u64, 0u64);
        for d in dirents.iter() {
            if (d.dir, d.cookie) <= prev {
                return oob("filesystem name (in (directory, cookie) order)", d.dir);
            }
            prev = (d.dir, d.cookie);
            let dir = nodes.find(d.dir, |n| n.ino);
            if dir.is_none_or(|n| {
                n.ino == 0
                    || n.kind != super::fs_node::DIRECTORY
                    || d.cookie < 3
                    || d.cookie >= n.next_cookie
            }) || d.ino == 0
                || nodes.find(d.ino, |n| n.ino).is_none()
            {
                return oob("filesystem name of no directory or inode", d.ino);
            }
            let name = self.blob_bytes(d.name).unwrap_or_default();
            if name.is_empty()
                || name.len() > 255
                || name == b"."
                || name == b".."
                || name.iter().any(|&c| c == b'/' || c == 0)
            {
                return oob("filesystem name", d.dir);
            }
        }
        let mut prev = (0u64, 0u64);
        for p in pages.iter() {
            let file = nodes.find(p.ino, |n| n.ino);
            let Some(len) = p.pages.checked_mul(PAGE_SIZE).filter(|&l| l > 0) else {
                return oob("file page run length", p.pages);
            };
            let end = p.index.checked_add(p.pages);
            // A file whose bytes are the guest's, or a mapped volume file's cache.
            let ok = file.is_some_and(|f| {
                use super::fs_node_flags::{HOST, MAPPED, STATIC, VOLUME};
                f.ino != 0
                    && f.kind == super::fs_node::REGULAR
                    && f.flags & (HOST | STATIC) == 0
                    && (f.flags & VOLUME == 0 || f.flags & MAPPED != 0)
                    && end.is_some_and(|e| e <= f.size.div_ceil(PAGE_SIZE))
            }) && (p.ino, p.index) >= prev;
            if !ok {
                return oob(
                    "file page run (in (inode, page) order, of a stored file)",
                    p.ino,
                );
            }
            prev = (p.ino, p.index + p.pages);
            let gpa_end = p.gpa.saturating_add(len);
            if !p.gpa.is_multiple_of(PAGE_SIZE) || p.gpa < pool.0 || gpa_end > pool.1 {
                return oob("file page frame", p.gpa);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::super::*;
    use std::vec::Vec;

    const BOUNDS: Bounds = Bounds {
        user_end: crate::user::USER_END,
        pool_start: 16 << 20,
        pool_end: 64 << 20,
        max_pid: MAX_PID,
    };

    /// A tree: `/` (1) holding `tmp` (2), which holds `f` (3, two pages, one stored), and
    /// `l` (4, a link to `f`); blob: "tmp", "f", "l", "tmp/f".
    fn tree() -> (Vec<FsNodeEntry>, Vec<FsDirentEntry>, Vec<FsPagesEntry>) {
        let dir = |ino, parent, next_cookie| FsNodeEntry {
            ino,
            kind: fs_node::DIRECTORY,
            perm: 0o755,
            nlink: 2,
            parent,
            next_cookie,
            ..Default::default()
        };
        let nodes = std::vec![
            FsNodeEntry {
                kind: fs_node::FS,
                size: 9,
                ..Default::default()
            },
            dir(1, 1, 4),
            dir(2, 1, 5),
            FsNodeEntry {
                ino: 3,
                kind: fs_node::REGULAR,
                flags: fs_node_flags::COUNTED,
                perm: 0o644,
                nlink: 1,
                size: 5000,
                ..Default::default()
            },
            FsNodeEntry {
                ino: 4,
                kind: fs_node::SYMLINK,
                perm: 0o777,
                nlink: 1,
                path: BlobRef { off: 6, len: 5 },
                ..Default::default()
            },
        ];
        let dirents = std::vec![
            FsDirentEntry {
                dir: 1,
                cookie: 3,
                ino: 2,
                name: BlobRef { off: 0, len: 3 },
            },
            FsDirentEntry {
                dir: 2,
                cookie: 3,
                ino: 3,
                name: BlobRef { off: 3, len: 1 },
            },
            FsDirentEntry {
                dir: 2,
                cookie: 4,
                ino: 4,
                name: BlobRef { off: 4, len: 1 },
            },
        ];
        let pages = std::vec![FsPagesEntry {
            ino: 3,
            index: 1,
            gpa: 20 << 20,
            pages: 1,
        }];
        (nodes, dirents, pages)
    }

    fn write(n: &[FsNodeEntry], d: &[FsDirentEntry], p: &[FsPagesEntry]) -> Vec<u8> {
        let mut v = Vec::new();
        let mut w = RecordWriter::new(&mut v, 2, b"6.1.0-pvmux");
        w.section(n);
        w.section(d);
        w.section(p);
        w.blob(b"tmpfl\0/tmp/f");
        w.finish();
        v
    }

    fn checked(
        n: &[FsNodeEntry],
        d: &[FsDirentEntry],
        p: &[FsPagesEntry],
    ) -> Result<(), RecordError> {
        let v = write(n, d, p);
        Record::parse(&v, (2, 2))?.check(&BOUNDS)
    }

    #[test]
    fn a_carried_tree_round_trips() {
        let (n, d, p) = tree();
        let v = write(&n, &d, &p);
        let r = Record::parse(&v, (2, 2)).unwrap();
        r.check(&BOUNDS).unwrap();
        assert_eq!(r.entries::<FsNodeEntry>().collect::<Vec<_>>(), n);
        assert_eq!(r.entries::<FsDirentEntry>().collect::<Vec<_>>(), d);
        assert_eq!(r.entries::<FsPagesEntry>().collect::<Vec<_>>(), p);
        // Version 1 has no filesystem sections.
        let mut v1 = Vec::new();
        let mut w = RecordWriter::new(&mut v1, 1, b"x");
        w.section(&n);
        w.finish();
        assert_eq!(
            Record::parse(&v1, (1, 1)).err(),
            Some(RecordError::BadSection(section::FS_NODE))
        );
    }

    #[test]
    fn a_mapped_volume_file_carries_its_cache_pages() {
        // `f` (3) as a volume's file mapped `MAP_SHARED`: its stored page is the cache.
        let (mut n, d, p) = tree();
        n[3].flags = fs_node_flags::VOLUME | fs_node_flags::MAPPED;
        n[3].vol_path = BlobRef { off: 6, len: 1 };
        assert_eq!(checked(&n, &d, &p), Ok(()));
        // Mapped with no page stored (an empty file) is fine too.
        assert_eq!(checked(&n, &d, &[]), Ok(()));
    }

    #[test]
    fn a_volume_directory_not_listed_yet_is_carried() {
        // As a volume mounted at /out that no program has looked into: its listing comes
        // from the volume, so it has no share path.
        let (mut n, d, p) = tree();
        n[2].flags = fs_node_flags::LAZY | fs_node_flags::VOLUME;
        n[2].vol_path = BlobRef { off: 6, len: 1 };
        assert_eq!(checked(&n, &d, &p), Ok(()));
        // With a share path it is not a volume's.
        n[2].path = BlobRef { off: 6, len: 6 };
        assert!(checked(&n, &d, &p).is_err());
    }

    #[test]
    fn malformed_filesystem_sections_are_refused() {
        type Edit = fn(&mut Vec<FsNodeEntry>, &mut Vec<FsDirentEntry>, &mut Vec<FsPagesEntry>);
        let cases: &[(&str, Edit)] = &[
            ("no filesystem entry first", |n, _, _| {
                n.remove(0);
            }),
            ("names without nodes", |n, _, _| n.clear()),
            ("inode past the next number", |n, _, _| n[0].size = 4),
            ("no room for more inodes", |n, _, _| {
                n[0].size = MAX_FS_COUNTER
            }),
            ("no room for more names", |n, _, _| {
                n[2].next_cookie = u64::MAX
            }),
            ("inodes out of order", |n, _, _| n.swap(3, 4)),
            ("unknown kind", |n, _, _| n[3].kind = 9),
            ("unknown flag", |n, _, _| n[3].flags = 1 << 20),
            ("mode past 07777", |n, _, _| n[3].perm = 0o10000),
            ("no link count on a directory", |n, _, _| n[2].nlink = 0),
            ("no root", |n, d, _| {
                n[1].kind = fs_node::SOCKET;
                d.clear();
            }),
            ("parent not a directory", |n, _, _| n[2].parent = 3),
            ("symlink without target", |n, _, _| {
                n[4].path = BlobRef::default()
            }),
            ("path outside the blob", |n, _, _| {
                n[4].path = BlobRef { off: 6, len: 99 }
            }),
            ("host file with more host bytes than its size", |n, _, p| {
                n[3].flags = fs_node_flags::HOST;
                n[3].path = BlobRef { off: 6, len: 6 };
                n[3].aux = 5001;
                p.clear();
            }),
            ("lazy directory with a relative path", |n, _, _| {
                n[2].flags = fs_node_flags::LAZY;
                n[2].path = BlobRef { off: 0, len: 3 };
            }),
            ("volume inode without its path", |n, _, _| {
                n[3].flags = fs_node_flags::VOLUME
            }),
            ("file too large", |n, _, _| n[3].size = MAX_FS_FILE_SIZE + 1),
            ("names out of order", |_, d, _| d.swap(1, 2)),
            ("name of a file", |_, d, _| d[2].dir = 3),
            ("name of an unknown inode", |_, d, _| d[2].ino = 8),
            ("cookie not given yet", |_, d, _| d[2].cookie = 5),
            ("cookie of `..`", |_, d, _| {
                d[1].cookie = 2;
            }),
            ("name with a slash", |_, d, _| {
                d[0].name = BlobRef { off: 6, len: 5 }
            }),
            ("empty name", |_, d, _| d[0].name = BlobRef::default()),
            ("pages past the size", |_, _, p| p[0].index = 2),
            ("pages of a directory", |_, _, p| p[0].ino = 2),
            ("pages of a host file", |n, _, _| {
                n[3].flags = fs_node_flags::STATIC;
            }),
            ("pages of a volume file not mapped", |n, _, _| {
                n[3].flags = fs_node_flags::VOLUME;
                n[3].vol_path = BlobRef { off: 6, len: 1 };
            }),
            ("mapped flag on a file of no volume", |n, _, _| {
                n[3].flags = fs_node_flags::MAPPED
            }),
            ("mapped flag on a volume directory", |n, _, _| {
                n[2].flags = fs_node_flags::VOLUME | fs_node_flags::MAPPED;
                n[2].vol_path = BlobRef { off: 0, len: 3 };
            }),
            ("no pages", |_, _, p| p[0].pages = 0),
            ("frame outside the pool", |_, _, p| p[0].gpa = 4096),
            ("frame not aligned", |_, _, p| p[0].gpa += 1),
            ("runs overlap", |_, _, p| {
                let q = p[0];
                p.push(q);
            }),
        ];
        for (what, edit) in cases {
            let (mut n, mut d, mut p) = tree();
            edit(&mut n, &mut d, &mut p);
            let e = checked(&n, &d, &p);
            assert!(
                matches!(e, Err(RecordError::OutOfBounds(..))),
                "{what}: {e:?}"
            );
        }
    }

    #[test]
    fn descriptors_of_in_memory_files_name_a_carried_file_or_directory() {
        let (n, d, p) = tree();
        let fd = |object| FdStateEntry {
            pid: 1,
            fd: 3,
            kind: fd_state::MEMORY_FILE,
            fd_flags: 0,
            status_flags: 0,
            aux: 0,
            description: 1,
            pos: 0,
            object,
            path: BlobRef::default(),
        };
        let check = |n: &[FsNodeEntry], f: FdStateEntry| {
            let mut v = Vec::new();
            let mut w = RecordWriter::new(&mut v, 2, b"6.1.0-pvmux");
            w.section(&[ProcessEntry {
                pid: 1,
                ..Default::default()
            }]);
            w.section(&[f]);
            w.section(n);
            w.section(&d);
            w.section(&p);
            w.blob(b"tmpfl\0/tmp/f");
            w.finish();
            Record::parse(&v, (2, 2)).unwrap().check(&BOUNDS)
        };
        assert_eq!(check(&n, fd(3)), Ok(()), "a file");
        assert_eq!(check(&n, fd(2)), Ok(()), "a directory");
        // A file held open after its last name went: carried with no link.
        let mut open = n.clone();
        open.push(FsNodeEntry {
            ino: 5,
            nlink: 0,
            ..n[3]
        });
        open[0].size = 9;
        assert_eq!(check(&open, fd(5)), Ok(()), "an unlinked file");
        // A directory removed while open: no link, its own parent.
        let mut removed = n.clone();
        removed.push(FsNodeEntry {
            ino: 5,
            nlink: 0,
            flags: fs_node_flags::REMOVED,
            parent: 5,
            ..n[2]
        });
        removed[0].size = 9;
        assert_eq!(check(&removed, fd(5)), Ok(()), "a removed directory");
        for bad in [
            FsNodeEntry {
                parent: 2,
                ..removed[5]
            },
            FsNodeEntry {
                nlink: 2,
                ..removed[5]
            },
            FsNodeEntry {
                flags: fs_node_flags::REMOVED | fs_node_flags::LAZY,
                path: BlobRef { off: 6, len: 5 },
                ..removed[5]
            },
        ] {
            let mut v = removed.clone();
            v[5] = bad;
            assert!(check(&v, fd(5)).is_err(), "{bad:?}");
        }
        for (what, object) in [
            ("unknown", 7),
            ("a symbolic link", 4),
            ("the filesystem", 0),
        ] {
            assert!(
                matches!(check(&n, fd(object)), Err(RecordError::OutOfBounds(..))),
                "{what}"
            );
        }
    }
}
