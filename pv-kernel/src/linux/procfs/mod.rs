//! `/proc` and `/sys`: synthetic filesystems shown over the ramfs directories of the mount
//! table ([`crate::fs::mount`]). A path that enters a mount point ([`crate::fs::Fs::find_mount`])
//! is resolved here, component by component ([`tree::classify`]); symbolic links inside
//! (`/proc/self`, `thread-self`, `mounts`) are followed here, links that leave (`exe`, `cwd`,
//! `fd/N` to a named file) hand an absolute path back to the ramfs lookup, and `fd/N` of a
//! pipe, socket or other object opens that very object (Linux's "magic links").
//!
//! Files are generated when opened ([`object::SynthFile`], a snapshot, read-only) and
//! directories listed when opened ([`object::SynthDir`]). The texts are formatted by pure,
//! unit-tested code ([`text`]) from snapshots of the kernel's state ([`snap`]).

#![forbid(unsafe_code)]

pub(crate) mod object;
pub(crate) mod snap;
pub(crate) use snap::mem as mem_figures;
pub(crate) use snap::mem_free_bytes;
pub(crate) mod text;
pub(crate) mod tree;

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::fs::mount::MountKind;
use crate::fs::ramfs::{mode, oflag, Ino, ROOT_INO, SYMLOOP_MAX};
use crate::fs::{self, Errno};
use crate::linux::files::file::{fstat, KStat, Kind, OpenFile};
use crate::linux::files::object::open_object;
use object::{node_stat, SynthDir, SynthFile};
use tree::Node;

/// What a path that involves a synthetic filesystem leads to.
pub(crate) enum Found {
    /// A synthetic node.
    Node {
        /// Its filesystem.
        kind: MountKind,
        /// Its components after the mount point.
        comps: Vec<Vec<u8>>,
        /// What it is.
        node: Node,
    },
    /// The open file a followed `/proc/PID/fd/N` link stands for.
    Open(Arc<OpenFile>),
    /// An absolute path of the ramfs to go on with (a link led out of the mount).
    Path(Vec<u8>),
}

/// Splits `path` into its non-empty components.
fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Resolves `rest` from directory `start` of `kind`; `links` counts links followed.
fn resolve(
    kind: MountKind,
    start: Vec<Vec<u8>>,
    rest: Vec<Vec<u8>>,
    follow: bool,
    must_dir: bool,
    links: &mut u32,
) -> Result<Found, Errno> {
    let mut cur = start;
    let mut stack: Vec<Vec<u8>> = rest;
    stack.reverse();
    let follow = follow || must_dir;
    while let Some(c) = stack.pop() {
        match c.as_slice() {
            b"." => continue,
            b".." => {
                if cur.pop().is_none() {
                    // Above the mount point: its parent directory in the ramfs.
                    let mut p = kind.path().to_vec();
                    p.extend_from_slice(b"/..");
                    append(&mut p, stack);
                    return Ok(Found::Path(p));
                }
                continue;
            }
            _ => {}
        }
        cur.push(c);
        let last = stack.is_empty();
        match tree::classify(kind, &cur)? {
            Node::Link(t) if !last || follow => {
                *links += 1;
                if *links > SYMLOOP_MAX {
                    return Err(Errno::ELOOP);
                }
                cur.pop();
                if t.first() == Some(&b'/') {
                    let mut p = t;
                    append(&mut p, stack);
                    return Ok(Found::Path(p));
                }
                for c in components(&t).into_iter().rev() {
                    stack.push(c);
                }
            }
            Node::FdLink(f) if !last || follow => {
                // A directory or named file: go on by its path (a fresh open, as Linux).
                if let Some(p) = file_path(&f) {
                    let mut p = p;
                    append(&mut p, stack);
                    return Ok(Found::Path(p));
                }
                if last {
                    return Ok(Found::Open(f));
                }
                return Err(Errno::ENOTDIR);
            }
            Node::File if !last => return Err(Errno::ENOTDIR),
            _ => {}
        }
    }
    let node = tree::classify(kind, &cur)?;
    if must_dir && !matches!(node, Node::Dir) {
        return Err(Errno::ENOTDIR);
    }
    Ok(Found::Node {
        kind,
        comps: cur,
        node,
    })
}

/// Appends the components left on `stack` (last first) to path `p`.
fn append(p: &mut Vec<u8>, mut stack: Vec<Vec<u8>>) {
    while let Some(c) = stack.pop() {
        p.push(b'/');
        p.extend_from_slice(&c);
    }
}

/// The path of a ramfs file behind `f`, when it has one to reopen by: an open directory
/// (its path), a regular file opened by name (the name it was opened with, if that name
/// still leads to it; a removed or renamed file opens the description itself).
fn file_path(f: &OpenFile) -> Option<Vec<u8>> {
    match &f.kind {
        Kind::Node { ino, dir: true, .. } => crate::linux::files::path::dir_path(*ino).ok(),
        Kind::Node { ino, .. } => {
            let p = f.path()?;
            let now = fs::with(|fs| fs.lookup(ROOT_INO, p, true)).ok()?;
            (now == *ino).then(|| p.to_vec())
        }
        Kind::Object(_) => object::dir_of(f).map(|d| d.path.clone()),
        _ => None,
    }
}

/// Resolves `(dirfd, path)` if it involves a synthetic filesystem (`None`: an ordinary
/// ramfs path; resolve it as usual). `base` gives the ramfs directory a relative path starts
/// from (called only when `dirfd` is not a synthetic directory).
pub(crate) fn lookup(
    dirfd: i32,
    path: &[u8],
    follow: bool,
    base: impl FnOnce() -> Result<Ino, Errno>,
) -> Result<Option<Found>, Errno> {
    let must_dir = path.ends_with(b"/");
    let mut links = 0u32;
    let relative = path.first() != Some(&b'/') && !path.is_empty();
    let synth_cwd = if relative && dirfd == crate::linux::files::path::AT_FDCWD {
        crate::linux::task::try_current_task().and_then(|t| t.process.fs.lock().synth.clone())
    } else {
        None
    };
    let first = if let Some((kind, comps)) = synth_cwd {
        Some(resolve(
            kind,
            comps,
            components(path),
            follow,
            must_dir,
            &mut links,
        )?)
    } else if path.first() != Some(&b'/') && dirfd != crate::linux::files::path::AT_FDCWD {
        let f = crate::linux::files::fd_file(dirfd)?;
        match object::dir_of(&f) {
            Some(d) => Some(resolve(
                d.kind,
                d.comps.clone(),
                components(path),
                follow,
                must_dir,
                &mut links,
            )?),
            None => None,
        }
    } else {
        None
    };
    let mut found = match first {
        Some(f) => f,
        None => {
            if path.is_empty() {
                return Ok(None);
            }
            let b = base()?;
            let Some(c) = fs::with(|fs| fs.find_mount(b, path, follow)) else {
                return Ok(None);
            };
            resolve(c.kind, Vec::new(), c.rest, follow, must_dir, &mut links)?
        }
    };
    // A link led out of the mount: the new path may enter a mount again.
    while let Found::Path(p) = &found {
        let Some(c) = fs::with(|fs| fs.find_mount(ROOT_INO, p, follow)) else {
            break;
        };
        links += 1;
        if links > SYMLOOP_MAX {
            return Err(Errno::ELOOP);
        }
        let must_dir = p.ends_with(b"/");
        found = resolve(c.kind, Vec::new(), c.rest, follow, must_dir, &mut links)?;
    }
    Ok(Some(found))
}

/// The `stat` of a synthetic node.
pub(crate) fn stat_node(kind: MountKind, comps: &[Vec<u8>], node: &Node) -> KStat {
    let ino = tree::ino_of(kind, comps);
    if kind == MountKind::DevPts && matches!(node, Node::File) {
        let (num, perm) = match comps.first().map(Vec::as_slice) {
            Some(b"ptmx") => ((5, 2), 0o666),
            Some(n) => ((136, tree::parse_fd(n).unwrap_or(0) as u32), 0o620),
            None => ((0, 0), 0),
        };
        let mut k = node_stat(kind, crate::linux::files::file::S_IFCHR | perm, ino, 0);
        k.rdev = crate::linux::files::dev::encode_dev(num);
        return k;
    }
    match node {
        Node::Dir => node_stat(kind, mode::S_IFDIR | 0o555, ino, 0),
        Node::File => node_stat(kind, mode::S_IFREG | 0o444, ino, 0),
        Node::Link(t) => node_stat(kind, mode::S_IFLNK | 0o777, ino, t.len() as u64),
        Node::FdLink(f) => node_stat(kind, mode::S_IFLNK | 0o700, ino, link_name(f).len() as u64),
    }
}

/// `stat` of what `found` names.
pub(crate) fn stat_found(found: &Found) -> Result<Option<KStat>, Errno> {
    match found {
        Found::Node { kind, comps, node } => Ok(Some(stat_node(*kind, comps, node))),
        Found::Open(f) => fstat(f).map(Some),
        Found::Path(_) => Ok(None),
    }
}

/// What `readlink` of `found` gives (`None`: a ramfs path to read the link of).
pub(crate) fn readlink_found(found: &Found) -> Result<Option<Vec<u8>>, Errno> {
    match found {
        Found::Node {
            node: Node::Link(t),
            ..
        } => Ok(Some(t.clone())),
        Found::Node {
            node: Node::FdLink(f),
            ..
        } => Ok(Some(link_name(f))),
        Found::Node { .. } | Found::Open(_) => Err(Errno::EINVAL),
        Found::Path(_) => Ok(None),
    }
}

/// What `/proc/PID/fd/N` shows for an open file.
pub(crate) fn link_name(f: &OpenFile) -> Vec<u8> {
    use alloc::format;
    match &f.kind {
        Kind::Node { ino, dir: true, .. } => {
            crate::linux::files::path::dir_path(*ino).unwrap_or_else(|_| b"/".to_vec())
        }
        Kind::Node { ino, .. } => f
            .path()
            .map_or_else(|| format!("/[ino {ino}]").into_bytes(), <[u8]>::to_vec),
        Kind::PipeRead(p) | Kind::PipeWrite(p) => format!("pipe:[{}]", p.id).into_bytes(),
        Kind::Dev { dev, .. } | Kind::Console { dev, .. } => {
            let mut p = b"/dev/".to_vec();
            p.extend_from_slice(crate::linux::files::dev::name(*dev));
            p
        }
        Kind::Object(o) => o.link_name(),
    }
}

/// What `open` of `found` gives: an open file to install, or a ramfs path to open.
pub(crate) enum Opened {
    /// Install this.
    File(Arc<OpenFile>),
    /// Open this absolute ramfs path instead.
    Path(Vec<u8>),
}

/// `open` of what `found` names with `flags` (the description's flags) and `fs_flags`
/// (`O_CREAT`, `O_EXCL`, `O_DIRECTORY`, access mode as the filesystem sees them).
pub(crate) fn open_found(found: Found, flags: u32, fs_flags: u32) -> Result<Opened, Errno> {
    let (kind, comps, node) = match found {
        Found::Path(p) => return Ok(Opened::Path(p)),
        Found::Open(f) => return Ok(Opened::File(f)),
        Found::Node { kind, comps, node } => (kind, comps, node),
    };
    let path_only = flags & crate::linux::files::file::fl::O_PATH != 0;
    if fs_flags & (oflag::O_CREAT | oflag::O_EXCL) == oflag::O_CREAT | oflag::O_EXCL {
        return Err(Errno::EEXIST);
    }
    let ino = tree::ino_of(kind, &comps);
    let path = tree::abs_path(kind, &comps);
    if kind == MountKind::DevPts && matches!(node, Node::File) && !path_only {
        use crate::linux::files::tty::pty;
        let f = match comps.first().map(Vec::as_slice) {
            Some(b"ptmx") => pty::open_master(flags)?,
            Some(n) => pty::open_slave(tree::parse_fd(n)? as u32, flags)?,
            None => return Err(Errno::EISDIR),
        };
        return Ok(Opened::File(f));
    }
    match node {
        Node::Dir => {
            if fs_flags & oflag::O_ACCMODE != oflag::O_RDONLY && !path_only {
                return Err(Errno::EISDIR);
            }
            let d = SynthDir {
                path,
                kind,
                comps,
                entries: spin::Once::new(),
                ino,
            };
            Ok(Opened::File(open_object(Arc::new(d), flags)))
        }
        Node::File => {
            if fs_flags & oflag::O_DIRECTORY != 0 {
                return Err(Errno::ENOTDIR);
            }
            if fs_flags & oflag::O_ACCMODE != oflag::O_RDONLY && !path_only {
                return Err(Errno::EACCES);
            }
            let f = SynthFile {
                path,
                kind,
                comps,
                data: spin::Once::new(),
                ino,
            };
            Ok(Opened::File(open_object(Arc::new(f), flags)))
        }
        // Not followed (O_NOFOLLOW): Linux's ELOOP.
        Node::Link(_) | Node::FdLink(_) => Err(Errno::ELOOP),
    }
}

/// `chdir` to what `found` names (a synthetic directory; a followed `fd/N` link is
/// `ENOTDIR`).
pub(crate) fn chdir_found(found: Found) -> crate::linux::SysResult {
    match found {
        Found::Node {
            kind,
            comps,
            node: Node::Dir,
        } => chdir_synthetic(kind, comps),
        Found::Node { .. } | Found::Open(_) => Err(Errno::ENOTDIR),
        Found::Path(_) => Err(Errno::ENOENT),
    }
}

/// Makes directory `comps` of `kind` the working directory.
pub(crate) fn chdir_synthetic(kind: MountKind, comps: Vec<Vec<u8>>) -> crate::linux::SysResult {
    let mp = fs::with(|fs| fs.lookup(ROOT_INO, kind.path(), true))?;
    let p = crate::linux::task::current_process();
    let mut c = p.fs.lock();
    c.cwd = mp;
    c.synth = if comps.is_empty() {
        None
    } else {
        Some((kind, comps))
    };
    Ok(0)
}

/// The working directory's path when it is inside a synthetic filesystem.
pub(crate) fn synthetic_cwd() -> Option<Vec<u8>> {
    let t = crate::linux::task::try_current_task()?;
    let s = t.process.fs.lock().synth.clone();
    s.map(|(kind, comps)| tree::abs_path(kind, &comps))
}

/// `statfs` bytes for filesystem `kind`.
pub(crate) fn statfs_bytes(kind: MountKind) -> [u8; 120] {
    let mut b = [0u8; 120];
    let mut put = |off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put(0, kind.magic());
    put(8, 4096);
    put(64, 255);
    put(72, 4096);
    put(80, 0x20 | 0x1 | 0x2 | 0x4 | 0x8); // ST_VALID | ST_RDONLY | NOSUID | NODEV | NOEXEC
    b
}

/// `EACCES` if `(dirfd, path)` names something inside a synthetic filesystem (for the
/// calls that create, remove or change names: the synthetic filesystems are read-only).
pub(crate) fn deny(
    dirfd: i32,
    path: &[u8],
    base: impl FnOnce() -> Result<Ino, Errno>,
) -> Result<(), Errno> {
    if path.first() != Some(&b'/') && dirfd != crate::linux::files::path::AT_FDCWD {
        let f = crate::linux::files::fd_file(dirfd)?;
        if object::dir_of(&f).is_some() {
            return Err(Errno::EACCES);
        }
    }
    let b = base()?;
    match fs::with(|fs| fs.find_mount(b, path, false)) {
        Some(_) => Err(Errno::EACCES),
        None => Ok(()),
    }
}

/// Mounts `/proc` and `/sys` and creates the `/dev` links to `/proc/self/fd` (idempotent;
/// call after the initramfs is unpacked).
pub(crate) fn init() {
    fs::with(|fs| {
        for k in MountKind::ALL {
            if fs.mount(k.path(), k).is_err() {
                crate::println!("pvmux-kernel: procfs: cannot mount {:?}", k);
            }
        }
        let _ = fs.mkdir(ROOT_INO, b"/dev", 0o755);
        for (link, target) in [
            (&b"/dev/fd"[..], &b"/proc/self/fd"[..]),
            (b"/dev/stdin", b"/proc/self/fd/0"),
            (b"/dev/stdout", b"/proc/self/fd/1"),
            (b"/dev/stderr", b"/proc/self/fd/2"),
            (b"/dev/ptmx", b"pts/ptmx"),
        ] {
            if fs.lookup(ROOT_INO, link, false).is_err() {
                let _ = fs.symlink(ROOT_INO, target, link);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opened_names_are_normalized_lexically() {
        use crate::linux::files::path::normalize;
        assert_eq!(normalize(b"/tmp//a/./b/../c"), b"/tmp/a/c");
        assert_eq!(normalize(b"/../.."), b"/");
        assert_eq!(normalize(b"/"), b"/");
    }

    #[test]
    fn components_drop_empty_ones() {
        assert_eq!(components(b"/a//b/"), [b"a".to_vec(), b"b".to_vec()]);
        assert!(components(b"///").is_empty());
    }

    #[test]
    fn appending_the_rest_of_a_walk() {
        let mut p = b"/proc/..".to_vec();
        append(&mut p, alloc::vec![b"c".to_vec(), b"b".to_vec()]);
        assert_eq!(p, b"/proc/../b/c");
    }

    #[test]
    fn statfs_reports_the_magic_read_only() {
        let b = statfs_bytes(MountKind::Proc);
        assert_eq!(u64::from_le_bytes(b[0..8].try_into().unwrap()), 0x9fa0);
        let flags = u64::from_le_bytes(b[80..88].try_into().unwrap());
        assert_ne!(flags & 1, 0, "ST_RDONLY");
        let b = statfs_bytes(MountKind::DevPts);
        assert_eq!(u64::from_le_bytes(b[0..8].try_into().unwrap()), 0x1cd1);
    }
}
