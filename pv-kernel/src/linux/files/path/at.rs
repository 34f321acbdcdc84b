//! The `*at` conventions: where a path argument starts (`/`, the working directory for
//! `AT_FDCWD`, or the directory a descriptor refers to), `AT_EMPTY_PATH`, and each call's
//! set of allowed flags.

use crate::fs::ramfs::{Ino, ROOT_INO};
use crate::fs::Errno;

/// `dirfd` meaning the working directory.
pub(crate) const AT_FDCWD: i32 = -100;
/// Do not follow a final symbolic link.
pub(crate) const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
/// `unlinkat`: remove a directory.
pub(crate) const AT_REMOVEDIR: u64 = 0x200;
/// `faccessat2`: check with the effective ids.
pub(crate) const AT_EACCESS: u64 = 0x200;
/// `linkat`: follow a final symbolic link of the source.
pub(crate) const AT_SYMLINK_FOLLOW: u64 = 0x400;
/// `statx`/`fstatat`: do not trigger automounts (ignored).
pub(crate) const AT_NO_AUTOMOUNT: u64 = 0x800;
/// An empty path means `dirfd` itself.
pub(crate) const AT_EMPTY_PATH: u64 = 0x1000;
/// `statx` sync flags (ignored; both bits together are invalid).
pub(crate) const AT_STATX_SYNC_TYPE: u64 = 0x6000;

/// Where `path` starts: `/` for an absolute path (`dirfd` is not even looked at, as
/// Linux), the working directory `cwd` for `AT_FDCWD`, else the directory descriptor
/// `dirfd` refers to, which `dir_of` finds (`EBADF` if none, `ENOTDIR` if not a directory).
pub(crate) fn start(
    dirfd: i32,
    path: &[u8],
    cwd: Ino,
    dir_of: impl FnOnce(i32) -> Result<Ino, Errno>,
) -> Result<Ino, Errno> {
    if path.first() == Some(&b'/') {
        Ok(ROOT_INO)
    } else if dirfd == AT_FDCWD {
        Ok(cwd)
    } else {
        dir_of(dirfd)
    }
}

/// What an `*at` call with `AT_EMPTY_PATH` support acts on: `Some(path)`, or `None` for
/// `dirfd` itself (an empty path with `AT_EMPTY_PATH`). An empty path without the flag is
/// `ENOENT`.
pub(crate) fn path_or_dirfd(path: &[u8], flags: u64) -> Result<Option<&[u8]>, Errno> {
    match (path.is_empty(), flags & AT_EMPTY_PATH != 0) {
        (false, _) => Ok(Some(path)),
        (true, true) => Ok(None),
        (true, false) => Err(Errno::ENOENT),
    }
}

/// `EINVAL` unless `flags` has only bits of `allowed`.
pub(crate) const fn only(flags: u64, allowed: u64) -> Result<(), Errno> {
    if flags & !allowed != 0 {
        Err(Errno::EINVAL)
    } else {
        Ok(())
    }
}

/// The flags `newfstatat` accepts.
pub(crate) const FSTATAT_FLAGS: u64 = AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT;

/// Checks `statx`'s flags: the `fstatat` ones and one sync type.
pub(crate) const fn statx_flags(flags: u64) -> Result<(), Errno> {
    if flags & !(FSTATAT_FLAGS | AT_STATX_SYNC_TYPE) != 0
        || flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE
    {
        Err(Errno::EINVAL)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_the_host_linux() {
        assert_eq!(AT_FDCWD, libc::AT_FDCWD);
        assert_eq!(AT_SYMLINK_NOFOLLOW, libc::AT_SYMLINK_NOFOLLOW as u64);
        assert_eq!(AT_REMOVEDIR, libc::AT_REMOVEDIR as u64);
        assert_eq!(AT_EACCESS, libc::AT_EACCESS as u64);
        assert_eq!(AT_SYMLINK_FOLLOW, libc::AT_SYMLINK_FOLLOW as u64);
        assert_eq!(AT_NO_AUTOMOUNT, libc::AT_NO_AUTOMOUNT as u64);
        assert_eq!(AT_EMPTY_PATH, libc::AT_EMPTY_PATH as u64);
        assert_eq!(AT_STATX_SYNC_TYPE, libc::AT_STATX_SYNC_TYPE as u64);
    }

    #[test]
    fn where_a_path_starts() {
        let cwd = 7;
        let no_fd = |_| -> Result<Ino, Errno> { Err(Errno::EBADF) };
        let dir = |fd| -> Result<Ino, Errno> {
            if fd == 3 {
                Ok(42)
            } else {
                Err(Errno::ENOTDIR)
            }
        };
        // Absolute paths ignore dirfd, even a bad one.
        assert_eq!(start(9999, b"/etc", cwd, no_fd), Ok(ROOT_INO));
        assert_eq!(start(AT_FDCWD, b"/", cwd, no_fd), Ok(ROOT_INO));
        assert_eq!(start(AT_FDCWD, b"a/b", cwd, no_fd), Ok(cwd));
        assert_eq!(start(3, b"a/b", cwd, dir), Ok(42));
        assert_eq!(start(4, b"a", cwd, dir), Err(Errno::ENOTDIR));
        assert_eq!(start(9999, b"a", cwd, no_fd), Err(Errno::EBADF));
        // A negative descriptor other than AT_FDCWD is a bad descriptor, not the cwd.
        assert_eq!(start(-1, b"a", cwd, no_fd), Err(Errno::EBADF));
    }

    #[test]
    fn empty_paths_need_at_empty_path() {
        assert_eq!(path_or_dirfd(b"x", 0), Ok(Some(&b"x"[..])));
        assert_eq!(path_or_dirfd(b"x", AT_EMPTY_PATH), Ok(Some(&b"x"[..])));
        assert_eq!(path_or_dirfd(b"", AT_EMPTY_PATH), Ok(None));
        assert_eq!(path_or_dirfd(b"", 0), Err(Errno::ENOENT));
    }

    #[test]
    fn flag_sets() {
        assert_eq!(only(AT_REMOVEDIR, AT_REMOVEDIR), Ok(()));
        assert_eq!(only(AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR), Err(Errno::EINVAL));
        assert_eq!(only(0, 0), Ok(()));
        assert_eq!(statx_flags(AT_SYMLINK_NOFOLLOW | 0x2000), Ok(()));
        assert_eq!(statx_flags(AT_STATX_SYNC_TYPE), Err(Errno::EINVAL));
        assert_eq!(statx_flags(AT_EACCESS), Err(Errno::EINVAL));
        assert_eq!(only(AT_EMPTY_PATH | AT_NO_AUTOMOUNT, FSTATAT_FLAGS), Ok(()));
    }
}
