//! Writable host directories (`pvmux run --volume HOSTDIR:GUESTDIR[:ro|rw]`), served by
//! [`crate::Hypercall::VolumeOp`] (docs/ABI.md §volumes).
//!
//! The host opens each volume's directory once; the boot arguments' `VOLUME` records
//! ([`crate::bootargs::command::VOLUME`]) tell the kernel the volume ids, where to mount them
//! and which are read-only. Paths are byte strings relative to the volume's root (a leading
//! `/` is optional; `/` alone or the empty path is the root); the host resolves every path
//! inside the root (`..` and symbolic links cannot leave it) and never follows a final
//! symbolic link.
//!
//! `VolumeOp(req_gpa, resp_gpa) -> 0`: the host reads one [`VolumeRequest`] at `req_gpa`,
//! performs [`VolumeRequest::op`] ([`op`]) and writes one [`VolumeResponse`] at `resp_gpa`.
//! A failure of the operation itself (no such file, not empty, read-only volume, ...) is a
//! Linux errno in [`VolumeResponse::errno`]; the hypercall's own errors are only for a
//! request the host cannot take: `UnknownCall` (the tenant has no volumes), `BadAddress`
//! (a request, response, path or buffer outside guest memory), `TooLarge` (a path longer
//! than [`crate::hostfs::PATH_MAX`], a transfer longer than [`IO_MAX`] or a list buffer
//! longer than [`crate::hostfs::LIST_MAX_BUF`]) and `InvalidArgument` (an unknown op or
//! volume id, a flag the op does not take, a non-zero reserved field, an owner where the op
//! takes none or one that is [`NO_ID`]).
//!
//! Writes never create anything but regular files, directories and symbolic links; the
//! set-user-id and set-group-id bits are always cleared ([`PERM_MASK`]); a read-only volume
//! refuses every change with `EROFS`.

use core::mem::{offset_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::hostfs::HostfsEntry;

/// Largest `READ` or `WRITE` transfer (longer ones are `TooLarge`).
pub const IO_MAX: u64 = 1 << 20;
/// Most volumes one tenant may have.
pub const MAX_VOLUMES: u32 = 64;
/// Permission bits a volume keeps: the set-id bits are cleared on every create, mkdir and
/// chmod.
pub const PERM_MASK: u32 = 0o1777;
/// `UTIMES`: leave this time unchanged.
pub const UTIME_OMIT: u64 = u64::MAX;
/// `(uid_t)-1`, which `chown(2)` takes as "unchanged": never an owner in a request (the
/// kernel resolves it first).
pub const NO_ID: u32 = u32::MAX;

/// [`VolumeRequest::op`] values. Paths name the object the op acts on (`path`), its new
/// name (`path2` for `RENAME`) or a symbolic link's target (`path2` for `SYMLINK`).
pub mod op {
    /// `lstat(path)`: `stat` describes it.
    pub const LOOKUP: u32 = 1;
    /// Lists directory `path` from entry number `offset` into `buf` as `HostfsList` records
    /// (docs/ABI.md §hostfs): `value` = bytes used, 0 at the end.
    pub const LIST: u32 = 2;
    /// Reads regular file `path` at `offset` into `buf` (`len` bytes at most): `value` =
    /// bytes read, 0 at or past the end.
    pub const READ: u32 = 3;
    /// Writes `len` bytes from `buf` into regular file `path` at `offset`: `value` = bytes
    /// written; `stat` describes the file after.
    pub const WRITE: u32 = 4;
    /// Creates regular file `path` with permissions `mode` ([`super::flag::EXCL`]: fail if
    /// it exists; else an existing regular file is opened as is): `stat` describes it.
    pub const CREATE: u32 = 5;
    /// Creates directory `path` with permissions `mode`: `stat` describes it.
    pub const MKDIR: u32 = 6;
    /// Removes the non-directory `path`.
    pub const UNLINK: u32 = 7;
    /// Removes the empty directory `path`.
    pub const RMDIR: u32 = 8;
    /// Renames `path` to `path2` (both in this volume; [`super::flag::NOREPLACE`]: fail if
    /// `path2` exists).
    pub const RENAME: u32 = 9;
    /// Sets regular file `path`'s size to `offset`: `stat` describes it.
    pub const TRUNCATE: u32 = 10;
    /// Creates symbolic link `path` pointing at `path2` (stored as given, never followed by
    /// the host): `stat` describes it.
    pub const SYMLINK: u32 = 11;
    /// Reads symbolic link `path`'s target into `buf`: `value` = its length (the target is
    /// cut at `len`).
    pub const READLINK: u32 = 12;
    /// Sets `path`'s permissions to `mode & PERM_MASK`: `stat` describes it.
    pub const CHMOD: u32 = 13;
    /// Sets `path`'s access and modification times (`atime_ns`, `mtime_ns`; [`UTIME_OMIT`]
    /// leaves one) without following a final symbolic link: `stat` describes it.
    ///
    /// [`UTIME_OMIT`]: super::UTIME_OMIT
    pub const UTIMES: u32 = 14;
    /// Flushes regular file or directory `path` to the host's disk (`fsync`).
    pub const FSYNC: u32 = 15;
    /// Sets `path`'s owner to `uid`, `gid` without following a final symbolic link (the
    /// volume's root too): `stat` describes it. A host that keeps no owners (it may not
    /// change a file's owner: not root, or no `CAP_CHOWN`) answers `EOPNOTSUPP`; the
    /// kernel then keeps the owner in its memory only.
    pub const CHOWN: u32 = 16;
    /// The highest op number this version defines.
    pub const LAST: u32 = CHOWN;
}

/// [`VolumeRequest::flags`] bits.
pub mod flag {
    /// `CREATE`: fail with `EEXIST` if the name exists.
    pub const EXCL: u32 = 1 << 0;
    /// `RENAME`: fail with `EEXIST` if the new name exists.
    pub const NOREPLACE: u32 = 1 << 1;
    /// `CREATE`, `MKDIR`, `SYMLINK`: the new object's owner is `uid`, `gid` (the creator's
    /// filesystem ids), as natively; a host that keeps no owners leaves it its own.
    pub const OWNER: u32 = 1 << 2;
}

/// One `VolumeOp` request (read once by the host, then validated).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VolumeRequest {
    /// The operation ([`op`]).
    pub op: u32,
    /// The volume (an id from a `VOLUME` boot record).
    pub volume: u32,
    /// Guest-physical address of the path.
    pub path_gpa: u64,
    /// Length of the path (at most `hostfs::PATH_MAX`).
    pub path_len: u64,
    /// Guest-physical address of the second path (`RENAME`'s new name, `SYMLINK`'s target).
    pub path2_gpa: u64,
    /// Length of the second path (0 if the op takes none).
    pub path2_len: u64,
    /// Guest-physical address of the data buffer (`READ`, `WRITE`, `LIST`, `READLINK`).
    pub buf_gpa: u64,
    /// Length of the data buffer.
    pub buf_len: u64,
    /// File offset (`READ`, `WRITE`), new size (`TRUNCATE`) or cookie (`LIST`).
    pub offset: u64,
    /// Permission bits (`CREATE`, `MKDIR`, `CHMOD`).
    pub mode: u32,
    /// [`flag`] bits the op takes; others must be zero.
    pub flags: u32,
    /// `UTIMES`: access time in ns since the epoch, or [`UTIME_OMIT`].
    pub atime_ns: u64,
    /// `UTIMES`: modification time in ns since the epoch, or [`UTIME_OMIT`].
    pub mtime_ns: u64,
    /// `CHOWN`'s new owner, or the new object's with [`flag::OWNER`]; zero otherwise.
    /// Never [`NO_ID`].
    pub uid: u32,
    /// The group that goes with `uid`.
    pub gid: u32,
}

const _: () = assert!(size_of::<VolumeRequest>() == 96);
const _: () = assert!(offset_of!(VolumeRequest, uid) == 88);
const _: () = assert!(offset_of!(VolumeRequest, path_gpa) == 8);
const _: () = assert!(offset_of!(VolumeRequest, buf_gpa) == 40);
const _: () = assert!(offset_of!(VolumeRequest, offset) == 56);
const _: () = assert!(offset_of!(VolumeRequest, mode) == 64);
const _: () = assert!(offset_of!(VolumeRequest, atime_ns) == 72);

/// One `VolumeOp` response, written by the host when the call returns 0.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VolumeResponse {
    /// 0, or the Linux errno the operation failed with (positive).
    pub errno: u32,
    /// Zero.
    pub reserved: u32,
    /// Bytes read, written or listed, or a link target's length (see [`op`]).
    pub value: u64,
    /// The object after the operation, for the ops that say so (`name_len` and
    /// `target_len` are 0; `size` of a symbolic link is its target's length).
    pub stat: HostfsEntry,
}

const _: () = assert!(size_of::<VolumeResponse>() == 56);
const _: () = assert!(offset_of!(VolumeResponse, value) == 8);
const _: () = assert!(offset_of!(VolumeResponse, stat) == 16);

/// Size of [`VolumeRequest`].
pub const REQUEST_LEN: usize = size_of::<VolumeRequest>();
/// Size of [`VolumeResponse`].
pub const RESPONSE_LEN: usize = size_of::<VolumeResponse>();

/// The [`flag`] bits `op` takes (any other bit is `InvalidArgument`).
pub const fn allowed_flags(op: u32) -> u32 {
    match op {
        op::CREATE => flag::EXCL | flag::OWNER,
        op::MKDIR | op::SYMLINK => flag::OWNER,
        op::RENAME => flag::NOREPLACE,
        _ => 0,
    }
}

/// Whether a request of `op` with `flags` names an owner (`uid`, `gid`).
pub const fn takes_owner(op: u32, flags: u32) -> bool {
    op == op::CHOWN || (flags & flag::OWNER != 0 && allowed_flags(op) & flag::OWNER != 0)
}

/// Whether `op` changes the volume (refused with `EROFS` on a read-only one).
pub const fn writes(op: u32) -> bool {
    matches!(
        op,
        op::WRITE
            | op::CREATE
            | op::MKDIR
            | op::UNLINK
            | op::RMDIR
            | op::RENAME
            | op::TRUNCATE
            | op::SYMLINK
            | op::CHMOD
            | op::UTIMES
            | op::CHOWN
    )
}

/// Linux errno values used by volumes (x86-64).
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: u32 = 1;
    /// No such file or directory.
    pub const ENOENT: u32 = 2;
    /// I/O error.
    pub const EIO: u32 = 5;
    /// Try again (the object changed while the host looked at it).
    pub const EAGAIN: u32 = 11;
    /// Bad file descriptor.
    pub const EBADF: u32 = 9;
    /// Out of memory.
    pub const ENOMEM: u32 = 12;
    /// Permission denied.
    pub const EACCES: u32 = 13;
    /// Busy.
    pub const EBUSY: u32 = 16;
    /// File exists.
    pub const EEXIST: u32 = 17;
    /// Cross-device link.
    pub const EXDEV: u32 = 18;
    /// Not a directory.
    pub const ENOTDIR: u32 = 20;
    /// Is a directory.
    pub const EISDIR: u32 = 21;
    /// Invalid argument.
    pub const EINVAL: u32 = 22;
    /// Too many open files.
    pub const EMFILE: u32 = 24;
    /// File too large.
    pub const EFBIG: u32 = 27;
    /// No space left on device.
    pub const ENOSPC: u32 = 28;
    /// Read-only file system.
    pub const EROFS: u32 = 30;
    /// Too many links.
    pub const EMLINK: u32 = 31;
    /// File name too long.
    pub const ENAMETOOLONG: u32 = 36;
    /// Directory not empty.
    pub const ENOTEMPTY: u32 = 39;
    /// Too many levels of symbolic links.
    pub const ELOOP: u32 = 40;
    /// Operation not supported.
    pub const EOPNOTSUPP: u32 = 95;
    /// Disk quota exceeded.
    pub const EDQUOT: u32 = 122;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_writes() {
        assert_eq!(allowed_flags(op::CREATE), flag::EXCL | flag::OWNER);
        assert_eq!(allowed_flags(op::MKDIR), flag::OWNER);
        assert_eq!(allowed_flags(op::RENAME), flag::NOREPLACE);
        assert_eq!(allowed_flags(op::READ), 0);
        let w: u32 = (1..=op::LAST).filter(|&o| writes(o)).count() as u32;
        assert_eq!(w, 11);
        assert!(!writes(op::READ) && !writes(op::FSYNC) && !writes(op::LIST));
        assert!(writes(op::CHOWN));
        assert!(takes_owner(op::CHOWN, 0) && takes_owner(op::SYMLINK, flag::OWNER));
        assert!(!takes_owner(op::MKDIR, 0) && !takes_owner(op::WRITE, flag::OWNER));
        assert_eq!(REQUEST_LEN, 96);
        assert_eq!(RESPONSE_LEN, 56);
    }
}
