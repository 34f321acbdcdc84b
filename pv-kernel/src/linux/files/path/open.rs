//! `open`'s flags as Linux reads them (`build_open_how`, `build_open_flags`), and opening a
//! node of the filesystem with them.

use crate::fs::ramfs::{mode, oflag, Handle, Ino, Stat};
use crate::fs::{Errno, Fs};
use crate::linux::files::file::fl;

/// The flags `O_PATH` keeps (Linux's `O_PATH_FLAGS`).
const O_PATH_FLAGS: u32 = oflag::O_DIRECTORY | oflag::O_NOFOLLOW | fl::O_PATH | fl::O_CLOEXEC;

/// How to open, decoded from `open`'s flags and mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OpenHow {
    /// The flags for the filesystem's `open`.
    pub(crate) fs_flags: u32,
    /// The flags the open file description keeps (access mode and status flags).
    pub(crate) file_flags: u32,
    /// `O_PATH`: a descriptor that only names the file.
    pub(crate) path_only: bool,
    /// `O_CLOEXEC`.
    pub(crate) cloexec: bool,
    /// Permissions of a created file (the mode without the umask's bits).
    pub(crate) perm: u32,
}

impl OpenHow {
    /// Decodes `open(path, flags, mode)` for a process whose umask is `umask`:
    /// * `O_PATH` keeps only `O_DIRECTORY`, `O_NOFOLLOW` and `O_CLOEXEC` (before anything is
    ///   checked);
    /// * `O_CREAT | O_DIRECTORY` is `EINVAL`;
    /// * `O_TMPFILE` needs `O_DIRECTORY` and write access (`EINVAL`), and is then not
    ///   supported (`EOPNOTSUPP`);
    /// * access mode 3 opens for neither reading nor writing, but is checked like
    ///   `O_RDWR` (a directory is `EISDIR`);
    /// * `O_TRUNC` truncates whatever the access mode, even `O_RDONLY` (as Linux).
    pub(crate) const fn decode(flags: u32, mode_arg: u32, umask: u32) -> Result<Self, Errno> {
        let path_only = flags & fl::O_PATH != 0;
        let flags = if path_only {
            flags & O_PATH_FLAGS
        } else {
            flags
        };
        if flags & (oflag::O_CREAT | oflag::O_DIRECTORY) == oflag::O_CREAT | oflag::O_DIRECTORY {
            return Err(Errno::EINVAL);
        }
        let acc = flags & oflag::O_ACCMODE;
        if flags & fl::O_TMPFILE_BIT != 0 {
            if flags & oflag::O_DIRECTORY == 0 || acc == oflag::O_RDONLY {
                return Err(Errno::EINVAL);
            }
            return Err(Errno::ENOTSUP);
        }
        let fs_flags = if path_only {
            flags & (oflag::O_DIRECTORY | oflag::O_NOFOLLOW)
        } else {
            // Checked (and truncated) as Linux does: like O_RDWR for access mode 3 and for
            // O_TRUNC, whatever the access mode.
            let fs_acc = if acc == oflag::O_ACCMODE || flags & oflag::O_TRUNC != 0 {
                oflag::O_RDWR
            } else {
                acc
            };
            fs_acc
                | (flags
                    & (oflag::O_CREAT
                        | oflag::O_EXCL
                        | oflag::O_TRUNC
                        | oflag::O_DIRECTORY
                        | oflag::O_NOFOLLOW))
        };
        Ok(Self {
            fs_flags,
            file_flags: if path_only {
                fl::O_PATH | (flags & fl::O_CLOEXEC)
            } else {
                flags
            },
            path_only,
            cloexec: flags & fl::O_CLOEXEC != 0,
            perm: mode_arg & mode::PERM & !umask,
        })
    }
}

/// Opens `path` (from directory `base`) in `fs` as `how` says: a handle and the file's
/// `stat`.
pub(crate) fn open_node(
    fs: &mut Fs,
    base: Ino,
    path: &[u8],
    how: &OpenHow,
) -> Result<(Handle, Stat), Errno> {
    // `O_PATH` names the file without its permission being checked.
    let flags = if how.path_only {
        how.fs_flags | oflag::O_PATH
    } else {
        how.fs_flags
    };
    let h = fs.open(base, path, flags, how.perm)?;
    match fs.fstat(h) {
        Ok(st) => Ok((h, st)),
        Err(e) => {
            let _ = fs.close(h);
            Err(e)
        }
    }
}
