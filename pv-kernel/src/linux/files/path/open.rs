//! `open`'s flags as Linux reads them (`build_open_how`, `build_open_flags`), and opening a
//! node of the filesystem with them.

use crate::fs::ramfs::{mode, oflag, Handle, Ino, Stat};
use crate::fs::{Errno, Fs};
use crate::linux::files::file::fl;

/// The flags `O_PATH` keeps (Linux's `O_PATH_FLAGS`).
const O_PATH_FLAGS: u32 = oflag::O_DIRECTORY | oflag::O_NOFOLLOW | fl::O_PATH | fl::O_CLOEXEC;

/// `struct open_how`'s first version's size (`openat2`).
pub(crate) const OPEN_HOW_SIZE_VER0: usize = 24;

/// Every `open` flag Linux knows (`VALID_OPEN_FLAGS`): `openat2` refuses others.
const VALID_OPEN_FLAGS: u64 = 0o37_777_703;

/// `RESOLVE_*` flags of `openat2`.
mod resolve {
    pub(super) const NO_XDEV: u64 = 0x01;
    pub(super) const NO_MAGICLINKS: u64 = 0x02;
    pub(super) const NO_SYMLINKS: u64 = 0x04;
    pub(super) const BENEATH: u64 = 0x08;
    pub(super) const IN_ROOT: u64 = 0x10;
    pub(super) const CACHED: u64 = 0x20;
    pub(super) const ALL: u64 = 0x3f;
}

/// Decodes `openat2`'s `struct open_how` (`raw`: the caller's `size` bytes, at least
/// [`OPEN_HOW_SIZE_VER0`]) as Linux's `build_open_flags` checks it: the flags (only known
/// ones; `O_PATH` with no others but `O_DIRECTORY`, `O_NOFOLLOW`, `O_CLOEXEC`), a mode only
/// with `O_CREAT` or `O_TMPFILE` and only permission bits, known `RESOLVE_*` flags, not
/// both `RESOLVE_BENEATH` and `RESOLVE_IN_ROOT` (all `EINVAL`); bytes past the known fields
/// must be zero (`E2BIG`); `RESOLVE_CACHED` with `O_CREAT`/`O_TRUNC`/`O_TMPFILE` is `EAGAIN`
/// (otherwise the lookup simply happens). Returns the flags, the mode and the restrictions.
pub(crate) fn decode_open_how(
    raw: &[u8],
) -> Result<(u32, u32, crate::linux::files::path::Resolve), Errno> {
    if raw.len() < OPEN_HOW_SIZE_VER0 {
        return Err(Errno::EINVAL);
    }
    if raw[OPEN_HOW_SIZE_VER0..].iter().any(|&b| b != 0) {
        return Err(Errno::E2BIG);
    }
    let field = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    let (flags, mode, res) = (field(0), field(1), field(2));
    let creates = flags & u64::from(oflag::O_CREAT | fl::O_TMPFILE_BIT) != 0;
    let bad = flags & !VALID_OPEN_FLAGS != 0
        || (flags & u64::from(fl::O_PATH) != 0 && flags & !u64::from(O_PATH_FLAGS) != 0)
        || (creates && mode & !0o7777 != 0)
        || (!creates && mode != 0)
        || res & !resolve::ALL != 0
        || res & (resolve::BENEATH | resolve::IN_ROOT) == resolve::BENEATH | resolve::IN_ROOT;
    if bad {
        return Err(Errno::EINVAL);
    }
    if res & resolve::CACHED != 0
        && flags & u64::from(oflag::O_CREAT | oflag::O_TRUNC | fl::O_TMPFILE_BIT) != 0
    {
        return Err(Errno::EAGAIN);
    }
    let r = crate::linux::files::path::Resolve {
        rules: crate::fs::ramfs::WalkRules {
            beneath: res & resolve::BENEATH != 0,
            no_symlinks: res & resolve::NO_SYMLINKS != 0,
            no_mounts: res & (resolve::NO_XDEV | resolve::BENEATH | resolve::IN_ROOT) != 0,
        },
        in_root: res & resolve::IN_ROOT != 0,
        no_magiclinks: res & (resolve::NO_MAGICLINKS | resolve::NO_SYMLINKS) != 0,
    };
    Ok((flags as u32, mode as u32, r))
}

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
