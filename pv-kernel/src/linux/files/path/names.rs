//! The name operations of the `*at` calls over the filesystem, with the checks Linux makes
//! before or around the filesystem's own: `unlinkat`, `linkat`, `renameat2`, `mknodat`'s
//! file types, the path of a directory (`getcwd`), ownership changes and timestamps.

use alloc::vec::Vec;

use super::at::AT_REMOVEDIR;
use crate::fs::ramfs::{mode, FileType, Ino, PATH_MAX, ROOT_INO, SYMLOOP_MAX};
use crate::fs::{Errno, Fs};

/// `renameat2`: fail if the target exists.
pub(crate) const RENAME_NOREPLACE: u64 = 1;
/// `renameat2`: swap the two names (not supported by this filesystem).
pub(crate) const RENAME_EXCHANGE: u64 = 2;
/// `renameat2`: leave a whiteout (overlay filesystems only).
pub(crate) const RENAME_WHITEOUT: u64 = 4;

/// `unlinkat(base, path, flags)`: `rmdir` with `AT_REMOVEDIR`, else `unlink`; any other
/// flag is `EINVAL`.
pub(crate) fn unlink_at(fs: &mut Fs, base: Ino, path: &[u8], flags: u64) -> Result<(), Errno> {
    super::at::only(flags, AT_REMOVEDIR)?;
    if flags & AT_REMOVEDIR != 0 {
        fs.rmdir(base, path)
    } else {
        fs.unlink(base, path)
    }
}

/// `linkat` once the source inode `ino` is known: a new name `new` (from `new_base`) for
/// it. An existing name is `EEXIST` (a new name with a trailing slash is `EEXIST` if it
/// exists, else `ENOENT`); then, as Linux: `EROFS` for a new name on a read-only mount,
/// `EXDEV` across filesystems, `EPERM` for a directory, `ENOENT` for an inode with no name
/// left (unlinked while open), `EMLINK` at the most links ([`Fs::link_ino`]).
pub(crate) fn link_at(fs: &mut Fs, ino: Ino, new_base: Ino, new: &[u8]) -> Result<(), Errno> {
    if new.ends_with(b"/") {
        let exists = fs.lookup(new_base, new, false).is_ok();
        return Err(if exists { Errno::EEXIST } else { Errno::ENOENT });
    }
    if fs.lookup(new_base, new, false).is_ok() {
        return Err(Errno::EEXIST);
    }
    fs.link_ino(new_base, new, ino)
}

/// The absolute path of directory `ino` (`ENOENT` if it was removed, `ENAMETOOLONG` past
/// `PATH_MAX`).
pub(crate) fn dir_path(fs: &mut Fs, ino: Ino) -> Result<Vec<u8>, Errno> {
    // The kernel's own walk up the tree: not checked (`getcwd` needs no permission), and
    // up to `/` whatever the caller's root.
    fs.at_real_root(|fs| fs.unchecked(|fs| dir_path_unchecked(fs, ino)))
}

/// The path of directory `ino` as a process whose root is directory `root` sees it
/// (`getcwd`): from its root, or — a directory outside it (a working directory kept across
/// `chroot`) — the whole path after `(unreachable)`, as Linux's `getcwd`.
pub(crate) fn dir_path_in_root(fs: &mut Fs, ino: Ino, root: Ino) -> Result<Vec<u8>, Errno> {
    let path = dir_path(fs, ino)?;
    if root == ROOT_INO {
        return Ok(path);
    }
    let top = dir_path(fs, root)?;
    let mut out = Vec::new();
    match path.strip_prefix(top.as_slice()) {
        Some([]) => out.push(b'/'),
        Some(rest) if rest.first() == Some(&b'/') => out.extend_from_slice(rest),
        _ => {
            out.extend_from_slice(b"(unreachable)");
            out.extend_from_slice(&path);
        }
    }
    Ok(out)
}

fn dir_path_unchecked(fs: &mut Fs, ino: Ino) -> Result<Vec<u8>, Errno> {
    if fs.stat_ino(ino)?.nlink == 0 {
        return Err(Errno::ENOENT);
    }
    let mut names: Vec<Vec<u8>> = Vec::new();
    let mut cur = ino;
    let mut len = 0;
    while cur != ROOT_INO {
        let parent = fs.lookup(cur, b"..", false)?;
        let name = fs
            .list(parent)?
            .into_iter()
            .find(|e| e.ino == cur)
            .ok_or(Errno::ENOENT)?
            .name;
        len += name.len() + 1;
        if len > PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        names.push(name);
        cur = parent;
    }
    let mut out = Vec::with_capacity(len.max(1));
    for n in names.iter().rev() {
        out.push(b'/');
        out.extend_from_slice(n);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

/// The canonical absolute path of `path` (relative to directory `cwd` unless absolute):
/// every symbolic link on the way and at its end followed, `.` and `..` resolved, as
/// Linux's `/proc/PID/exe` names a program (and as glibc's and musl's loaders take
/// `$ORIGIN` from it): `/usr/bin/java` run through `/etc/alternatives` is
/// `/usr/lib/jvm/.../bin/java`, whose `$ORIGIN/../lib` holds its libraries. `ELOOP` past
/// [`SYMLOOP_MAX`] links, the lookup's error for a name that is not there.
pub(crate) fn real_path(fs: &mut Fs, cwd: Ino, path: &[u8]) -> Result<Vec<u8>, Errno> {
    let names = |p: &[u8]| -> Vec<Vec<u8>> {
        p.split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    };
    // The caller's root (`chroot`), where its absolute paths and links start: the result is
    // the whole path from `/`.
    let root = fs.walk_root();
    let top = match root {
        ROOT_INO => Vec::new(),
        r => names(&dir_path(fs, r)?),
    };
    // The kernel's own walk, like `dir_path`'s: the program was found already.
    fs.at_real_root(|fs| {
        fs.unchecked(|fs| {
            let mut done: Vec<Vec<u8>> = if path.first() == Some(&b'/') {
                top.clone()
            } else {
                names(&dir_path_unchecked(fs, cwd)?)
            };
            // Still to walk, the next name last.
            let mut todo: Vec<Vec<u8>> = names(path).into_iter().rev().collect();
            let mut links = 0;
            while let Some(name) = todo.pop() {
                match name.as_slice() {
                    b"." => continue,
                    b".." => {
                        if done.len() > top.len() {
                            done.pop();
                        }
                        continue;
                    }
                    _ => done.push(name),
                }
                let at = joined(&done);
                if at.len() > PATH_MAX {
                    return Err(Errno::ENAMETOOLONG);
                }
                let ino = fs.lookup(ROOT_INO, &at, false)?;
                if fs.stat_ino(ino)?.file_type() != FileType::Symlink {
                    continue;
                }
                links += 1;
                if links > SYMLOOP_MAX {
                    return Err(Errno::ELOOP);
                }
                let target = fs.readlink(ROOT_INO, &at)?;
                done.pop();
                if target.first() == Some(&b'/') {
                    done.clone_from(&top);
                }
                todo.extend(names(&target).into_iter().rev());
            }
            Ok(joined(&done))
        })
    })
}

/// `/` followed by `names` joined with `/` (`/` for none).
pub(crate) fn joined<T: AsRef<[u8]>>(names: &[T]) -> Vec<u8> {
    let mut out = Vec::new();
    for n in names {
        out.push(b'/');
        out.extend_from_slice(n.as_ref());
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// `path` made absolute against directory `base`.
fn absolute(fs: &mut Fs, base: Ino, path: &[u8]) -> Result<Vec<u8>, Errno> {
    if path.first() == Some(&b'/') {
        return Ok(path.to_vec());
    }
    let mut p = dir_path(fs, base)?;
    if p != b"/" {
        p.push(b'/');
    }
    p.extend_from_slice(path);
    if p.len() > PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(p)
}

/// `renameat2(old_base, old, new_base, new, flags)`. `RENAME_NOREPLACE` makes an existing
/// target `EEXIST`; unknown flags and `RENAME_NOREPLACE` with `RENAME_EXCHANGE` are
/// `EINVAL`, as are `RENAME_EXCHANGE` and `RENAME_WHITEOUT` (this filesystem has neither).
pub(crate) fn rename_at(
    fs: &mut Fs,
    old_base: Ino,
    old: &[u8],
    new_base: Ino,
    new: &[u8],
    flags: u64,
) -> Result<(), Errno> {
    super::at::only(flags, RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)?;
    if flags & (RENAME_EXCHANGE | RENAME_WHITEOUT) != 0 {
        return Err(Errno::EINVAL);
    }
    // The filesystem renames within one starting directory: paths from two different
    // ones are made absolute.
    let (base, old, new) = if old_base == new_base {
        (old_base, old.to_vec(), new.to_vec())
    } else {
        (
            ROOT_INO,
            absolute(fs, old_base, old)?,
            absolute(fs, new_base, new)?,
        )
    };
    if flags & RENAME_NOREPLACE != 0 && fs.lookup(base, &new, false).is_ok() {
        return Err(Errno::EEXIST);
    }
    fs.rename(base, &old, &new)
}

/// The file type bits `mknod` may be given (Linux's `may_mknod`): a regular file (or no
/// type) is created; a directory is `EPERM`; FIFOs, devices and sockets are `EPERM` here
/// (this filesystem has none; Linux creates them for root); anything else `EINVAL`.
pub(crate) const fn mknod_type(m: u32) -> Result<(), Errno> {
    const S_IFIFO: u32 = 0o010_000;
    const S_IFCHR: u32 = 0o020_000;
    const S_IFBLK: u32 = 0o060_000;
    const S_IFSOCK: u32 = 0o140_000;
    match m & mode::S_IFMT {
        0 | mode::S_IFREG => Ok(()),
        mode::S_IFDIR | S_IFIFO | S_IFCHR | S_IFBLK | S_IFSOCK => Err(Errno::EPERM),
        _ => Err(Errno::EINVAL),
    }
}

/// The permission bits after a change of owner to `uid`/`gid` (`u32::MAX` keeps one):
/// like Linux for root, a non-directory loses set-user-id, and set-group-id if it is
/// group-executable.
pub(crate) const fn perm_after_chown(ty: FileType, perm: u32, uid: u32, gid: u32) -> u32 {
    let mut perm = perm;
    if !matches!(ty, FileType::Directory) && (uid != u32::MAX || gid != u32::MAX) {
        perm &= !0o4000;
        if perm & 0o010 != 0 {
            perm &= !0o2000;
        }
    }
    perm
}

/// `UTIME_NOW` and `UTIME_OMIT` (`tv_nsec` values).
pub(crate) const UTIME_NOW: i64 = (1 << 30) - 1;
pub(crate) const UTIME_OMIT: i64 = (1 << 30) - 2;

/// One timestamp argument of `utimensat` at wall-clock time `now`: `None` to leave it,
/// else ns since the epoch (a time before the epoch is the epoch).
pub(crate) const fn time_arg(now: u64, sec: i64, nsec: i64) -> Result<Option<u64>, Errno> {
    match nsec {
        UTIME_NOW => Ok(Some(now)),
        UTIME_OMIT => Ok(None),
        0..=999_999_999 => {
            let s = if sec < 0 { 0 } else { sec as u64 };
            Ok(Some(
                s.saturating_mul(1_000_000_000).saturating_add(nsec as u64),
            ))
        }
        _ => Err(Errno::EINVAL),
    }
}
