//! The host side of writable volumes (`pvmux run --volume HOSTDIR:GUESTDIR[:ro|rw]`;
//! docs/ABI.md §volumes, [`pvmux_hypercalls::volume`]).
//!
//! Confinement is the `--rootfs` share's ([`crate::hostfs`]): [`Volume::open`] opens HOSTDIR
//! once (`O_PATH | O_DIRECTORY`) and every guest path is resolved inside it with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, never following a final symbolic
//! link, so `..`, absolute links and links pointing out of HOSTDIR all stay inside. An
//! operation on a name (create, mkdir, unlink, rmdir, rename, symlink, readlink, utimes)
//! resolves the *parent* that way and then acts on one validated component (no `/`, not `.`
//! or `..`) with the `*at` call relative to the parent's descriptor, which cannot follow
//! anything. On top of that:
//!
//! * only regular files, directories and symbolic links are ever created (no device nodes,
//!   FIFOs or sockets: there is no op for them); files are created with `O_NOFOLLOW`, so a
//!   dangling link is never created through;
//! * a file is opened for reading or writing only if an `O_PATH` look shows a regular file,
//!   and the opened descriptor is checked again to be that same regular file (`O_NONBLOCK |
//!   O_NOCTTY`); files and directories on host pseudo filesystems (procfs, sysfs, ...) are
//!   refused, so a volume of `/` cannot reach `/proc/PID/mem`;
//! * the set-user-id and set-group-id bits are cleared on every create, mkdir and chmod
//!   ([`PERM_MASK`]); the created object gets exactly the guest's permission bits (an
//!   `fchmod` after creation, whatever pvmux's umask);
//! * a read-only volume refuses every change with `EROFS` before touching the host;
//! * owners are the guest's when the host may set them (root with `CAP_CHOWN`, as runc
//!   without a user namespace): a new object gets its creator's ids and `CHOWN` changes
//!   them (`fchown`/`fchownat(AT_SYMLINK_NOFOLLOW)` on what the steps above resolved); a host
//!   that may not (`EPERM`) keeps its own owner and answers `CHOWN` with `EOPNOTSUPP`;
//! * requests are bounded: paths [`hostfs::PATH_MAX`], transfers [`IO_MAX`], list buffers
//!   [`hostfs::LIST_MAX_BUF`]; host errors become Linux errnos in the response.
//!
//! A **file volume** (`--volume HOSTFILE:GUESTFILE`, and the OCI bind mounts of files) is
//! rooted at one regular file (`FileRoot`): [`Volume::open`] resolves the user's path once
//! (its symbolic links, as `mount --bind` does), opens the result with `O_NOFOLLOW`, checks
//! it is a regular file not on a pseudo filesystem, and keeps that descriptor. No path is ever
//! resolved again: the only object is `/`, and only `LOOKUP`, `READ`, `WRITE`, `TRUNCATE`,
//! `CHMOD`, `UTIMES` and `FSYNC` of it act (on the descriptor); a longer path is `ENOTDIR`,
//! every other op `ENOTDIR` (names) or `EINVAL`. The same policy holds: set-id bits are
//! never set, a read-only volume refuses changes with `EROFS`.
//!
//! Guest arguments are validated and copied out of guest memory before any host work.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use pvmux_hypercalls::hostfs::{self, kind, HostfsEntry, LIST_MAX_BUF, NAME_MAX};
use pvmux_hypercalls::volume::{
    allowed_flags, errno, flag, op, takes_owner, writes, VolumeRequest, VolumeResponse, IO_MAX,
    MAX_VOLUMES, NO_ID, PERM_MASK, REQUEST_LEN, UTIME_OMIT,
};
use pvmux_hypercalls::HcError;
use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags, Stat, Timespec,
    Timestamps,
};
use rustix::io::Errno;
use zerocopy::{FromBytes, IntoBytes};

use crate::hostfs::{denied_fs, entry_of, is_type, rel_path, HostFs, HostfsError};
use crate::GuestMemory;

/// A host directory or file the guest may write (or only read, if read-only).
#[derive(Debug)]
pub struct Volume {
    root: Root,
    read_only: bool,
}

/// What a volume is rooted at.
#[derive(Debug)]
enum Root {
    /// A directory, every path resolved inside it.
    Dir(HostFs),
    /// One regular file.
    File(FileRoot),
}

/// The root of a file volume: the file, opened once.
#[derive(Debug)]
struct FileRoot {
    /// Opened for reading and writing (for reading only if read-only or if the host
    /// refuses writing: then writes are `EACCES`, as on a native bind mount).
    fd: OwnedFd,
    /// The path as given.
    path: std::path::PathBuf,
    /// Whether `fd` was opened for writing.
    writable: bool,
}

impl FileRoot {
    /// Opens regular file `path` (its links resolved once; the result never followed).
    fn open(path: &Path, read_only: bool) -> Result<Self, HostfsError> {
        let open_err = |e: std::io::Error| HostfsError::Open {
            path: path.to_owned(),
            source: e,
        };
        let real = std::fs::canonicalize(path).map_err(open_err)?;
        let not_file = || HostfsError::NotAFileOrDirectory(path.to_owned());
        let probe = rfs::open(
            &real,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| open_err(e.into()))?;
        let st = rfs::fstat(&probe).map_err(|e| open_err(e.into()))?;
        if !is_type(&st, FileType::RegularFile) || denied_fs(probe.as_fd()) {
            return Err(not_file());
        }
        let base = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let open = |f: OFlags| rfs::open(&real, base | f, Mode::empty());
        let (fd, writable) = match read_only {
            true => (open(OFlags::RDONLY), false),
            false => match open(OFlags::RDWR) {
                Err(Errno::ACCESS | Errno::ROFS | Errno::PERM) => (open(OFlags::RDONLY), false),
                r => (r, true),
            },
        };
        let fd = fd.map_err(|e| open_err(e.into()))?;
        let st2 = rfs::fstat(&fd).map_err(|e| open_err(e.into()))?;
        if !is_type(&st2, FileType::RegularFile)
            || (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino)
            || denied_fs(fd.as_fd())
        {
            return Err(not_file());
        }
        Ok(Self {
            fd,
            path: path.to_owned(),
            writable,
        })
    }

    /// Performs `req` on the file: `path` must name the root (`/`).
    fn perform(&self, req: &VolumeRequest, path: &[u8], data: &mut [u8]) -> OpResult {
        let rel = rel_path(path).map_err(|_| errno::ENAMETOOLONG)?;
        let is_root = rel == Path::new(".");
        let stat = || -> OpResult {
            let st = rfs::fstat(&self.fd).map_err(linux_errno)?;
            Ok((0, Some(entry(&st))))
        };
        match req.op {
            // Any name below a file.
            _ if !is_root => Err(errno::ENOTDIR),
            op::LOOKUP => stat(),
            op::READ => {
                let n = loop {
                    match rustix::io::pread(&self.fd, &mut *data, req.offset) {
                        Err(Errno::INTR) => {}
                        r => break r.map_err(linux_errno)?,
                    }
                };
                Ok((n as u64, None))
            }
            op::WRITE => {
                if !self.writable {
                    return Err(errno::EACCES);
                }
                write_all_at(&self.fd, req.offset, data)
            }
            op::TRUNCATE => {
                if !self.writable {
                    return Err(errno::EACCES);
                }
                if req.offset > i64::MAX as u64 {
                    return Err(errno::EINVAL);
                }
                rfs::ftruncate(&self.fd, req.offset).map_err(linux_errno)?;
                stat()
            }
            op::CHMOD => {
                rfs::fchmod(&self.fd, Mode::from_raw_mode(req.mode & PERM_MASK))
                    .map_err(linux_errno)?;
                stat()
            }
            op::UTIMES => {
                rfs::futimens(&self.fd, &timestamps(req)).map_err(linux_errno)?;
                stat()
            }
            op::FSYNC => {
                rfs::fsync(&self.fd).map_err(linux_errno)?;
                Ok((0, None))
            }
            // One host file the operator named: its owner stays the host's.
            op::CHOWN => Err(errno::EOPNOTSUPP),
            op::LIST
            | op::CREATE
            | op::MKDIR
            | op::UNLINK
            | op::RMDIR
            | op::RENAME
            | op::SYMLINK => Err(errno::ENOTDIR),
            _ => Err(errno::EINVAL),
        }
    }
}

/// The owner a request names (`CHOWN`, or a create with `OWNER`), as host ids.
fn owner_ids(req: &VolumeRequest) -> (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) {
    (
        Some(rustix::fs::Uid::from_raw(req.uid)),
        Some(rustix::fs::Gid::from_raw(req.gid)),
    )
}

/// Gives a just-made object the owner `req` names with `OWNER` (`chown` does it). A host
/// that may not change owners (`EPERM`: not root, or no `CAP_CHOWN`) keeps its own, as any
/// other refusal: the object exists, so the create succeeded either way.
fn give_owner(
    req: &VolumeRequest,
    chown: impl FnOnce(Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) -> rustix::io::Result<()>,
) {
    if req.flags & flag::OWNER != 0 {
        let (u, g) = owner_ids(req);
        if let Err(e) = chown(u, g) {
            tracing::debug!(
                uid = req.uid,
                gid = req.gid,
                "volume: the host keeps its owner for a new object: {e}"
            );
        }
    }
}

/// A failed `CHOWN`: the host may not change owners (`EPERM`) is `EOPNOTSUPP`, which tells
/// the kernel to keep the owner in its memory; other errors as they are.
fn chown_errno(e: Errno) -> u32 {
    match e {
        Errno::PERM => errno::EOPNOTSUPP,
        e => linux_errno(e),
    }
}

/// `WRITE` of `data` at `offset` to `fd`: the bytes written and the file's stat after.
fn write_all_at(fd: &OwnedFd, offset: u64, data: &[u8]) -> OpResult {
    offset
        .checked_add(data.len() as u64)
        .filter(|&end| end <= i64::MAX as u64)
        .ok_or(errno::EFBIG)?;
    let mut done = 0;
    while done < data.len() {
        match rustix::io::pwrite(fd, &data[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) if done == 0 => return Err(linux_errno(e)),
            Err(_) => break,
        }
    }
    let st = rfs::fstat(fd).map_err(linux_errno)?;
    Ok((done as u64, Some(entry(&st))))
}

/// `UTIMES`' times as `utimensat` takes them.
fn timestamps(req: &VolumeRequest) -> Timestamps {
    let ts = |ns: u64| match ns {
        UTIME_OMIT => Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_OMIT,
        },
        ns => Timespec {
            tv_sec: (ns / 1_000_000_000).min(i64::MAX as u64) as i64,
            tv_nsec: (ns % 1_000_000_000) as _,
        },
    };
    Timestamps {
        last_access: ts(req.atime_ns),
        last_modification: ts(req.mtime_ns),
    }
}

/// An operation's result: the response's `value` and `stat`, or a Linux errno.
type OpResult = Result<(u64, Option<HostfsEntry>), u32>;

/// The Linux errno of a host error (the host is x86-64 Linux: the same numbers).
fn linux_errno(e: Errno) -> u32 {
    match u32::try_from(e.raw_os_error()) {
        Ok(0) | Err(_) => errno::EIO,
        Ok(n) => n,
    }
}

/// The listing `kind` of a `stat` result.
fn kind_of(st: &Stat) -> u8 {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => kind::DIR,
        FileType::RegularFile => kind::REG,
        FileType::Symlink => kind::SYMLINK,
        _ => kind::OTHER,
    }
}

fn entry(st: &Stat) -> HostfsEntry {
    entry_of(st, kind_of(st))
}

/// Splits a volume path into its parent (relative to the root) and its last component,
/// which must be a real name (not empty, `.` or `..`; at most `NAME_MAX` bytes).
fn split_name(path: &[u8]) -> Result<(&Path, &OsStr), u32> {
    if path.contains(&0) {
        return Err(errno::EINVAL);
    }
    let trimmed = {
        let end = path.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
        &path[..end]
    };
    let (parent, name) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    if name.is_empty() || name == b"." || name == b".." {
        return Err(errno::EINVAL);
    }
    if name.len() > NAME_MAX {
        return Err(errno::ENAMETOOLONG);
    }
    let parent = rel_path(parent).map_err(|_| errno::ENAMETOOLONG)?;
    Ok((parent, OsStr::from_bytes(name)))
}

impl Volume {
    /// Opens `path` as a volume: a directory volume, or a file volume if `path` is (or
    /// links to) a regular file; fails for anything else.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, HostfsError> {
        let root = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => Root::File(FileRoot::open(path, read_only)?),
            Ok(m) if !m.is_dir() => return Err(HostfsError::NotAFileOrDirectory(path.to_owned())),
            _ => Root::Dir(HostFs::open(path)?),
        };
        Ok(Self { root, read_only })
    }

    /// The host directory or file.
    pub fn path(&self) -> &Path {
        match &self.root {
            Root::Dir(share) => share.path(),
            Root::File(f) => &f.path,
        }
    }

    /// Whether the volume is one file.
    pub fn is_file(&self) -> bool {
        matches!(self.root, Root::File(_))
    }

    /// The directory share (`ENOTDIR` for a file volume, which never resolves a path).
    fn share(&self) -> Result<&HostFs, u32> {
        match &self.root {
            Root::Dir(share) => Ok(share),
            Root::File(_) => Err(errno::ENOTDIR),
        }
    }

    /// Whether every change is refused.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    fn root(&self) -> Result<BorrowedFd<'_>, u32> {
        Ok(self.share()?.root())
    }

    /// Opens `rel` inside the root without following a final symbolic link (retrying the
    /// rare `EAGAIN` of a concurrent rename).
    fn resolve(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd, u32> {
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let extra = if flags.contains(OFlags::PATH) {
            OFlags::empty()
        } else {
            OFlags::NOCTTY | OFlags::NONBLOCK
        };
        let flags = flags | extra | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut tries = 0;
        loop {
            match rfs::openat2(self.root()?, rel, flags, Mode::empty(), resolve) {
                Ok(fd) => return Ok(fd),
                Err(Errno::AGAIN | Errno::INTR) if tries < 8 => tries += 1,
                Err(e) => return Err(linux_errno(e)),
            }
        }
    }

    /// The parent directory of `path` (an `O_PATH` descriptor, not on a pseudo filesystem)
    /// and its last component.
    fn parent<'p>(&self, path: &'p [u8]) -> Result<(OwnedFd, &'p OsStr), u32> {
        let (parent, name) = split_name(path)?;
        let fd = self.resolve(parent, OFlags::PATH | OFlags::DIRECTORY)?;
        if denied_fs(fd.as_fd()) {
            return Err(errno::EACCES);
        }
        Ok((fd, name))
    }

    /// Opens the regular file or directory `path` (`write`: a regular file for writing),
    /// after an `O_PATH` look, and checks the result is that same object.
    fn open_node(&self, path: &[u8], write: bool) -> Result<(OwnedFd, Stat), u32> {
        let rel = rel_path(path).map_err(|e| match e {
            HcError::TooLarge => errno::ENAMETOOLONG,
            _ => errno::EINVAL,
        })?;
        let probe = self.resolve(rel, OFlags::PATH)?;
        let st = rfs::fstat(&probe).map_err(linux_errno)?;
        if denied_fs(probe.as_fd()) {
            return Err(errno::EACCES);
        }
        let flags = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile if write => OFlags::WRONLY,
            FileType::RegularFile => OFlags::RDONLY,
            FileType::Directory if write => return Err(errno::EISDIR),
            FileType::Directory => OFlags::RDONLY | OFlags::DIRECTORY,
            FileType::Symlink => return Err(errno::ELOOP),
            _ => return Err(errno::EACCES),
        };
        let fd = self.resolve(rel, flags)?;
        let st2 = rfs::fstat(&fd).map_err(linux_errno)?;
        if FileType::from_raw_mode(st2.st_mode) != FileType::from_raw_mode(st.st_mode)
            || (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino)
            || denied_fs(fd.as_fd())
        {
            return Err(errno::EAGAIN);
        }
        Ok((fd, st2))
    }

    /// Performs one validated request; `path`, `path2` and `data` are copies of the guest's
    /// (`data`: the bytes to write, or a buffer of `buf_len` bytes to fill).
    pub fn perform(
        &self,
        req: &VolumeRequest,
        path: &[u8],
        path2: &[u8],
        data: &mut [u8],
    ) -> OpResult {
        if self.read_only && writes(req.op) {
            return Err(errno::EROFS);
        }
        if let Root::File(f) = &self.root {
            return f.perform(req, path, data);
        }
        let with_stat = |fd: &OwnedFd| -> OpResult {
            let st = rfs::fstat(fd).map_err(linux_errno)?;
            Ok((0, Some(entry(&st))))
        };
        match req.op {
            op::LOOKUP => {
                let rel = rel_path(path).map_err(|_| errno::ENAMETOOLONG)?;
                let fd = self.resolve(rel, OFlags::PATH)?;
                let st = rfs::fstat(&fd).map_err(linux_errno)?;
                let mut e = entry(&st);
                if kind_of(&st) == kind::SYMLINK {
                    // The target's length, read relative to the parent (never followed).
                    let (parent, name) = self.parent(path)?;
                    let t = rfs::readlinkat(&parent, name, Vec::new()).map_err(linux_errno)?;
                    e.size = t.as_bytes().len() as u64;
                }
                Ok((0, Some(e)))
            }
            op::LIST => {
                let n = self
                    .share()?
                    .list(path, req.offset, data)
                    .map_err(hc_errno)?;
                Ok((n as u64, None))
            }
            op::READ => {
                let n = self
                    .share()?
                    .read(path, req.offset, data)
                    .map_err(hc_errno)?;
                Ok((n as u64, None))
            }
            op::WRITE => {
                let (fd, _) = self.open_node(path, true)?;
                write_all_at(&fd, req.offset, data)
            }
            op::CREATE => self.create(req, path),
            op::MKDIR => {
                let (parent, name) = self.parent(path)?;
                let perm = req.mode & PERM_MASK;
                rfs::mkdirat(&parent, name, Mode::from_raw_mode(perm & 0o700))
                    .map_err(linux_errno)?;
                let fd = rfs::openat(
                    &parent,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(linux_errno)?;
                rfs::fchmod(&fd, Mode::from_raw_mode(perm)).map_err(linux_errno)?;
                give_owner(req, |u, g| rfs::fchown(&fd, u, g));
                with_stat(&fd)
            }
            op::UNLINK | op::RMDIR => {
                let (parent, name) = self.parent(path)?;
                let flags = if req.op == op::RMDIR {
                    AtFlags::REMOVEDIR
                } else {
                    AtFlags::empty()
                };
                rfs::unlinkat(&parent, name, flags).map_err(linux_errno)?;
                Ok((0, None))
            }
            op::RENAME => {
                let (op_, on) = self.parent(path)?;
                let (np, nn) = self.parent(path2)?;
                let flags = if req.flags & flag::NOREPLACE != 0 {
                    RenameFlags::NOREPLACE
                } else {
                    RenameFlags::empty()
                };
                rfs::renameat_with(&op_, on, &np, nn, flags).map_err(linux_errno)?;
                Ok((0, None))
            }
            op::TRUNCATE => {
                let (fd, _) = self.open_node(path, true)?;
                if req.offset > i64::MAX as u64 {
                    return Err(errno::EINVAL);
                }
                rfs::ftruncate(&fd, req.offset).map_err(linux_errno)?;
                with_stat(&fd)
            }
            op::SYMLINK => {
                if path2.is_empty() {
                    return Err(errno::ENOENT);
                }
                if path2.contains(&0) {
                    return Err(errno::EINVAL);
                }
                let (parent, name) = self.parent(path)?;
                rfs::symlinkat(OsStr::from_bytes(path2), &parent, name).map_err(linux_errno)?;
                give_owner(req, |u, g| {
                    rfs::chownat(&parent, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
                });
                let st =
                    rfs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW).map_err(linux_errno)?;
                let mut e = entry(&st);
                e.size = path2.len() as u64;
                Ok((0, Some(e)))
            }
            op::READLINK => {
                let (parent, name) = self.parent(path)?;
                let t = rfs::readlinkat(&parent, name, Vec::new()).map_err(linux_errno)?;
                let t = t.as_bytes();
                let n = t.len().min(data.len());
                data[..n].copy_from_slice(&t[..n]);
                Ok((t.len() as u64, None))
            }
            op::CHMOD => {
                let (fd, _) = self.open_node(path, false)?;
                rfs::fchmod(&fd, Mode::from_raw_mode(req.mode & PERM_MASK)).map_err(linux_errno)?;
                with_stat(&fd)
            }
            op::UTIMES if rel_path(path).is_ok_and(|r| r == Path::new(".")) => {
                // The root itself (a mount point's `touch`): it has no parent to act from.
                let (fd, _) = self.open_node(path, false)?;
                rfs::futimens(&fd, &timestamps(req)).map_err(linux_errno)?;
                with_stat(&fd)
            }
            op::UTIMES => {
                let (parent, name) = self.parent(path)?;
                let times = timestamps(req);
                rfs::utimensat(&parent, name, &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(linux_errno)?;
                let st =
                    rfs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW).map_err(linux_errno)?;
                Ok((0, Some(entry(&st))))
            }
            op::FSYNC => {
                let (fd, _) = self.open_node(path, false)?;
                rfs::fsync(&fd).map_err(linux_errno)?;
                Ok((0, None))
            }
            op::CHOWN if rel_path(path).is_ok_and(|r| r == Path::new(".")) => {
                // The root itself (an entrypoint's `chown` of its data directory).
                let (fd, _) = self.open_node(path, false)?;
                let (u, g) = owner_ids(req);
                rfs::fchown(&fd, u, g).map_err(chown_errno)?;
                with_stat(&fd)
            }
            op::CHOWN => {
                let (parent, name) = self.parent(path)?;
                let (u, g) = owner_ids(req);
                rfs::chownat(&parent, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(chown_errno)?;
                let st =
                    rfs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW).map_err(linux_errno)?;
                Ok((0, Some(entry(&st))))
            }
            _ => Err(errno::EINVAL),
        }
    }

    /// `CREATE`: a new regular file (never through a symbolic link) with exactly `mode`'s
    /// permission bits (set-id bits cleared) and, with `OWNER`, the creator's ids; or
    /// without `EXCL` an existing regular file (its owner unchanged).
    fn create(&self, req: &VolumeRequest, path: &[u8]) -> OpResult {
        let excl = req.flags & flag::EXCL != 0;
        let (parent, name) = self.parent(path)?;
        let perm = req.mode & PERM_MASK;
        let base = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
        let base = base | OFlags::CLOEXEC;
        match rfs::openat(
            &parent,
            name,
            base | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(perm & 0o600),
        ) {
            Ok(fd) => {
                rfs::fchmod(&fd, Mode::from_raw_mode(perm)).map_err(linux_errno)?;
                give_owner(req, |u, g| rfs::fchown(&fd, u, g));
                let st = rfs::fstat(&fd).map_err(linux_errno)?;
                Ok((0, Some(entry(&st))))
            }
            Err(Errno::EXIST) if !excl => {
                // Look before opening: only an existing regular file is opened.
                let st =
                    rfs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW).map_err(linux_errno)?;
                match FileType::from_raw_mode(st.st_mode) {
                    FileType::RegularFile => {}
                    FileType::Directory => return Err(errno::EISDIR),
                    FileType::Symlink => return Err(errno::ELOOP),
                    _ => return Err(errno::EACCES),
                }
                let fd = rfs::openat(&parent, name, base, Mode::empty()).map_err(linux_errno)?;
                let st2 = rfs::fstat(&fd).map_err(linux_errno)?;
                if !is_type(&st2, FileType::RegularFile)
                    || (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino)
                {
                    return Err(errno::EAGAIN);
                }
                Ok((0, Some(entry(&st2))))
            }
            Err(e) => Err(linux_errno(e)),
        }
    }
}

/// The errno of a [`HostFs`] failure (`LIST`, `READ`): a path that does not name the right
/// kind of object is `ENOENT`.
fn hc_errno(e: HcError) -> u32 {
    match e {
        HcError::InvalidArgument => errno::ENOENT,
        HcError::TooLarge => errno::EINVAL,
        _ => errno::EIO,
    }
}

/// The largest data buffer `op` takes (`None`: the op takes no buffer).
fn buf_max(o: u32) -> Option<u64> {
    match o {
        op::READ | op::WRITE => Some(IO_MAX),
        op::LIST => Some(LIST_MAX_BUF),
        op::READLINK => Some(hostfs::PATH_MAX),
        _ => None,
    }
}

/// Checks a request's fields before any host work (see docs/ABI.md §volumes).
fn validate(req: &VolumeRequest, volumes: usize) -> Result<(), HcError> {
    if req.op == 0 || req.op > op::LAST || req.volume as usize >= volumes {
        return Err(HcError::InvalidArgument);
    }
    if req.flags & !allowed_flags(req.op) != 0 {
        return Err(HcError::InvalidArgument);
    }
    let owner_ok = match takes_owner(req.op, req.flags) {
        true => req.uid != NO_ID && req.gid != NO_ID,
        false => (req.uid, req.gid) == (0, 0),
    };
    if !owner_ok {
        return Err(HcError::InvalidArgument);
    }
    if req.path_len > hostfs::PATH_MAX || req.path2_len > hostfs::PATH_MAX {
        return Err(HcError::TooLarge);
    }
    let takes_path2 = matches!(req.op, op::RENAME | op::SYMLINK);
    if !takes_path2 && req.path2_len != 0 {
        return Err(HcError::InvalidArgument);
    }
    match buf_max(req.op) {
        Some(max) if req.buf_len > max => Err(HcError::TooLarge),
        None if req.buf_len != 0 => Err(HcError::InvalidArgument),
        _ => Ok(()),
    }
}

/// `VolumeOp(req_gpa, resp_gpa)`: reads and validates the request, copies its paths and
/// buffer, performs it and writes the response. The hypercall's own errors are for a
/// request the host cannot take; the operation's are errnos in the response.
pub(crate) fn hc_volume_op(
    mem: &GuestMemory,
    volumes: &[std::sync::Arc<Volume>],
    a: [u64; 6],
) -> Result<u64, HcError> {
    if volumes.is_empty() {
        return Err(HcError::UnknownCall);
    }
    let (req_gpa, resp_gpa) = (a[0], a[1]);
    let raw = mem
        .read_vec(req_gpa, REQUEST_LEN)
        .map_err(|_| HcError::BadAddress)?;
    let req = VolumeRequest::read_from_bytes(&raw).map_err(|_| HcError::InvalidArgument)?;
    mem.check_range(resp_gpa, core::mem::size_of::<VolumeResponse>() as u64)
        .map_err(|_| HcError::BadAddress)?;
    validate(&req, volumes.len().min(MAX_VOLUMES as usize))?;
    let read = |gpa: u64, len: u64| {
        mem.read_vec(gpa, len as usize)
            .map_err(|_| HcError::BadAddress)
    };
    let path = read(req.path_gpa, req.path_len)?;
    let path2 = read(req.path2_gpa, req.path2_len)?;
    let mut data = if req.op == op::WRITE {
        read(req.buf_gpa, req.buf_len)?
    } else {
        mem.check_range(req.buf_gpa, req.buf_len)
            .map_err(|_| HcError::BadAddress)?;
        vec![0u8; req.buf_len as usize]
    };
    let vol = &volumes[req.volume as usize];
    let mut resp = VolumeResponse::default();
    match vol.perform(&req, &path, &path2, &mut data) {
        Ok((value, stat)) => {
            resp.value = value;
            if let Some(st) = stat {
                resp.stat = st;
            }
            let out = match req.op {
                op::LIST | op::READ => value as usize,
                op::READLINK => (value as usize).min(data.len()),
                _ => 0,
            };
            if out > 0 {
                mem.write(req.buf_gpa, &data[..out.min(data.len())])
                    .map_err(|_| HcError::BadAddress)?;
            }
        }
        Err(e) => resp.errno = e,
    }
    mem.write(resp_gpa, resp.as_bytes())
        .map_err(|_| HcError::BadAddress)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};
    use std::sync::Arc;

    /// `tmp/vol` (the volume) and `tmp/outside/secret` (must stay unreachable).
    struct Tree {
        tmp: std::path::PathBuf,
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }

    fn tree(tag: &str) -> Tree {
        let tmp = std::env::temp_dir().join(format!("pvmux-volume-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("vol/d")).unwrap();
        std::fs::create_dir_all(tmp.join("outside")).unwrap();
        std::fs::write(tmp.join("outside/secret"), b"SECRET").unwrap();
        std::fs::write(tmp.join("vol/a"), b"hello").unwrap();
        symlink("../outside", tmp.join("vol/esc")).unwrap();
        symlink(tmp.join("outside/new"), tmp.join("vol/abs")).unwrap();
        symlink("/proc/self/root", tmp.join("vol/magic")).unwrap();
        Tree { tmp }
    }

    fn r(o: u32) -> VolumeRequest {
        VolumeRequest {
            op: o,
            ..VolumeRequest::default()
        }
    }

    fn run(v: &Volume, req: VolumeRequest, path: &[u8], path2: &[u8], data: &mut [u8]) -> OpResult {
        v.perform(&req, path, path2, data)
    }

    #[test]
    fn operations_act_inside_the_volume() {
        let t = tree("ops");
        let v = Volume::open(&t.tmp.join("vol"), false).unwrap();
        let vol = t.tmp.join("vol");
        let st = run(
            &v,
            VolumeRequest {
                mode: 0o6755,
                ..r(op::CREATE)
            },
            b"/f",
            b"",
            &mut [],
        )
        .unwrap()
        .1
        .unwrap();
        assert_eq!(st.perm, 0o755, "set-id bits cleared");
        assert_eq!(
            std::fs::metadata(vol.join("f")).unwrap().mode() & 0o7777,
            0o755
        );
        // EXCL on an existing name; without it the existing file.
        let excl = VolumeRequest {
            flags: flag::EXCL,
            ..r(op::CREATE)
        };
        assert_eq!(run(&v, excl, b"f", b"", &mut []), Err(errno::EEXIST));
        assert!(run(&v, r(op::CREATE), b"f", b"", &mut []).is_ok());
        let w = VolumeRequest {
            offset: 2,
            ..r(op::WRITE)
        };
        let (n, st) = run(&v, w, b"f", b"", &mut b"xyz".to_vec()).unwrap();
        assert_eq!((n, st.unwrap().size), (3, 5));
        assert_eq!(std::fs::read(vol.join("f")).unwrap(), b"\0\0xyz");
        let mut buf = [0u8; 8];
        let (n, _) = run(
            &v,
            VolumeRequest {
                offset: 1,
                ..r(op::READ)
            },
            b"a",
            b"",
            &mut buf,
        )
        .unwrap();
        assert_eq!(&buf[..n as usize], b"ello");
        let st = run(
            &v,
            VolumeRequest {
                mode: 0o2775,
                ..r(op::MKDIR)
            },
            b"d/e",
            b"",
            &mut [],
        )
        .unwrap()
        .1
        .unwrap();
        assert_eq!((st.kind, st.perm), (kind::DIR, 0o775));
        assert!(run(&v, r(op::RENAME), b"f", b"d/e/g", &mut []).is_ok());
        assert!(vol.join("d/e/g").is_file());
        let nr = VolumeRequest {
            flags: flag::NOREPLACE,
            ..r(op::RENAME)
        };
        assert_eq!(run(&v, nr, b"a", b"d/e/g", &mut []), Err(errno::EEXIST));
        assert_eq!(
            run(&v, r(op::RMDIR), b"d/e", b"", &mut []),
            Err(errno::ENOTEMPTY)
        );
        assert!(run(&v, r(op::UNLINK), b"d/e/g", b"", &mut []).is_ok());
        assert!(run(&v, r(op::RMDIR), b"d/e", b"", &mut []).is_ok());
        let st = run(
            &v,
            VolumeRequest {
                offset: 2,
                ..r(op::TRUNCATE)
            },
            b"a",
            b"",
            &mut [],
        )
        .unwrap()
        .1
        .unwrap();
        assert_eq!(st.size, 2);
        let st = run(&v, r(op::SYMLINK), b"l", b"/x/y", &mut [])
            .unwrap()
            .1
            .unwrap();
        assert_eq!((st.kind, st.size), (kind::SYMLINK, 4));
        let mut t4 = [0u8; 2];
        assert_eq!(run(&v, r(op::READLINK), b"l", b"", &mut t4).unwrap().0, 4);
        assert_eq!(&t4, b"/x");
        let ut = VolumeRequest {
            atime_ns: UTIME_OMIT,
            mtime_ns: 7_000_000_123,
            ..r(op::UTIMES)
        };
        assert_eq!(
            run(&v, ut, b"a", b"", &mut []).unwrap().1.unwrap().mtime_ns,
            7_000_000_123
        );
        assert!(run(&v, r(op::FSYNC), b"a", b"", &mut []).is_ok());
        assert!(run(&v, r(op::FSYNC), b"/", b"", &mut []).is_ok());
        let ut = VolumeRequest {
            atime_ns: UTIME_OMIT,
            mtime_ns: 8_000_000_000,
            ..r(op::UTIMES)
        };
        assert_eq!(
            run(&v, ut, b"/", b"", &mut []).unwrap().1.unwrap().mtime_ns,
            8_000_000_000,
            "the root's times"
        );
        assert_eq!(std::fs::metadata(&vol).unwrap().mtime(), 8);
        assert_eq!(
            run(
                &v,
                VolumeRequest {
                    mode: 0o4777,
                    ..r(op::CHMOD)
                },
                b"a",
                b"",
                &mut []
            )
            .unwrap()
            .1
            .unwrap()
            .perm,
            0o777
        );
        // Errors are Linux errnos.
        assert_eq!(
            run(&v, r(op::UNLINK), b"nope", b"", &mut []),
            Err(errno::ENOENT)
        );
        assert_eq!(
            run(&v, r(op::UNLINK), b"d", b"", &mut []),
            Err(errno::EISDIR)
        );
        assert_eq!(
            run(&v, r(op::MKDIR), b"a", b"", &mut []),
            Err(errno::EEXIST)
        );
        assert_eq!(
            run(&v, r(op::WRITE), b"d", b"", &mut [1]),
            Err(errno::EISDIR)
        );
        assert_eq!(
            run(&v, r(op::UNLINK), b"/", b"", &mut []),
            Err(errno::EINVAL)
        );
        assert_eq!(
            run(&v, r(op::MKDIR), b"x/..", b"", &mut []),
            Err(errno::EINVAL)
        );
        assert_eq!(
            run(&v, r(op::CREATE), &[b'n'; 256], b"", &mut []),
            Err(errno::ENAMETOOLONG)
        );
    }

    #[test]
    fn nothing_leaves_the_volume() {
        let t = tree("confine");
        let v = Volume::open(&t.tmp.join("vol"), false).unwrap();
        let mut buf = [0u8; 16];
        // `..` and links resolve inside: no such file there (a link as the parent of a
        // created name is not followed at all: ENOTDIR).
        for p in [
            &b"../outside/secret"[..],
            b"esc/secret",
            b"/../../outside/secret",
        ] {
            assert_eq!(
                run(&v, r(op::READ), p, b"", &mut buf),
                Err(errno::ENOENT),
                "{p:?}"
            );
            assert_eq!(
                run(&v, r(op::WRITE), p, b"", &mut buf),
                Err(errno::ENOENT),
                "{p:?}"
            );
            let c = run(&v, r(op::CREATE), p, b"", &mut []);
            assert!(
                matches!(c, Err(errno::ENOENT | errno::ENOTDIR)),
                "{p:?}: {c:?}"
            );
        }
        // A final link is never followed: not to write, create, truncate or chmod through.
        for o in [op::WRITE, op::TRUNCATE, op::CHMOD, op::FSYNC] {
            assert_eq!(
                run(&v, r(o), b"abs", b"", &mut buf[..1]),
                Err(errno::ELOOP),
                "{o}"
            );
        }
        assert_eq!(
            run(&v, r(op::CREATE), b"abs", b"", &mut []),
            Err(errno::ELOOP)
        );
        assert_eq!(
            run(
                &v,
                VolumeRequest {
                    flags: flag::EXCL,
                    ..r(op::CREATE)
                },
                b"abs",
                b"",
                &mut []
            ),
            Err(errno::EEXIST)
        );
        // A link to /proc/self/root resolves inside the volume too (no /proc there).
        assert!(run(
            &v,
            r(op::CREATE),
            b"magic/tmp/pvmux-volume-pwned",
            b"",
            &mut []
        )
        .is_err());
        assert!(!std::path::Path::new("/tmp/pvmux-volume-pwned").exists());
        // A rename onto a path through a link lands inside (here: nowhere).
        assert!(run(&v, r(op::RENAME), b"a", b"esc/a", &mut []).is_err());
        assert!(!t.tmp.join("outside/new").exists());
        assert!(!t.tmp.join("outside/a").exists());
        assert_eq!(
            std::fs::read(t.tmp.join("outside/secret")).unwrap(),
            b"SECRET"
        );
        // With a decoy inside, `..` reaches the decoy.
        std::fs::create_dir(t.tmp.join("vol/outside")).unwrap();
        assert!(run(&v, r(op::CREATE), b"../outside/secret", b"", &mut []).is_ok());
        assert!(t.tmp.join("vol/outside/secret").is_file());
        assert_eq!(
            std::fs::read(t.tmp.join("outside/secret")).unwrap(),
            b"SECRET"
        );
    }

    #[test]
    fn a_read_only_volume_refuses_every_change() {
        let t = tree("ro");
        let v = Volume::open(&t.tmp.join("vol"), true).unwrap();
        assert!(v.read_only());
        for o in 1..=op::LAST {
            let res = run(&v, r(o), b"a", b"b", &mut [0u8; 4]);
            if writes(o) {
                assert_eq!(res, Err(errno::EROFS), "{o}");
            }
        }
        assert_eq!(std::fs::read(t.tmp.join("vol/a")).unwrap(), b"hello");
        let mut buf = [0u8; 5];
        assert_eq!(run(&v, r(op::READ), b"a", b"", &mut buf).unwrap().0, 5);
    }

    #[test]
    fn a_file_volume_acts_on_its_one_file_only() {
        let t = tree("file");
        let file = t.tmp.join("vol/a");
        // Reached through a link given by the user: resolved once, as `mount --bind` does.
        symlink(&file, t.tmp.join("link")).unwrap();
        let v = Volume::open(&t.tmp.join("link"), false).unwrap();
        assert!(v.is_file());
        let st = run(&v, r(op::LOOKUP), b"/", b"", &mut [])
            .unwrap()
            .1
            .unwrap();
        assert_eq!((st.kind, st.size), (kind::REG, 5));
        let mut buf = [0u8; 8];
        let rd = VolumeRequest {
            offset: 1,
            ..r(op::READ)
        };
        assert_eq!(run(&v, rd, b"/", b"", &mut buf).unwrap().0, 4);
        assert_eq!(&buf[..4], b"ello");
        let w = VolumeRequest {
            offset: 5,
            ..r(op::WRITE)
        };
        let (n, st) = run(&v, w, b"/", b"", &mut b", world".to_vec()).unwrap();
        assert_eq!((n, st.unwrap().size), (7, 12));
        assert_eq!(std::fs::read(&file).unwrap(), b"hello, world");
        let tr = VolumeRequest {
            offset: 3,
            ..r(op::TRUNCATE)
        };
        assert_eq!(run(&v, tr, b"", b"", &mut []).unwrap().1.unwrap().size, 3);
        let ch = VolumeRequest {
            mode: 0o6640,
            ..r(op::CHMOD)
        };
        assert_eq!(
            run(&v, ch, b"/", b"", &mut []).unwrap().1.unwrap().perm,
            0o640
        );
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o7777, 0o640);
        let ut = VolumeRequest {
            atime_ns: UTIME_OMIT,
            mtime_ns: 9_000_000_001,
            ..r(op::UTIMES)
        };
        assert_eq!(
            run(&v, ut, b"/", b"", &mut []).unwrap().1.unwrap().mtime_ns,
            9_000_000_001
        );
        assert!(run(&v, r(op::FSYNC), b"/", b"", &mut []).is_ok());
        // Nothing but the file: names below it, listing, and name ops are refused.
        for p in [&b"/x"[..], b"../outside/secret", b"/.."] {
            assert_eq!(run(&v, r(op::READ), p, b"", &mut buf), Err(errno::ENOTDIR));
            assert_eq!(
                run(&v, r(op::WRITE), p, b"", &mut buf[..1]),
                Err(errno::ENOTDIR)
            );
        }
        for o in [
            op::LIST,
            op::CREATE,
            op::MKDIR,
            op::UNLINK,
            op::RMDIR,
            op::RENAME,
            op::SYMLINK,
        ] {
            assert_eq!(
                run(&v, r(o), b"/", b"x", &mut []),
                Err(errno::ENOTDIR),
                "{o}"
            );
        }
        assert_eq!(
            run(&v, r(op::READLINK), b"/", b"", &mut buf),
            Err(errno::EINVAL)
        );
        // The file replaced on the host: the volume keeps the file it opened.
        std::fs::rename(&file, t.tmp.join("vol/old")).unwrap();
        std::fs::write(&file, b"new").unwrap();
        assert_eq!(
            run(&v, r(op::LOOKUP), b"/", b"", &mut [])
                .unwrap()
                .1
                .unwrap()
                .size,
            3
        );
        assert_eq!(
            std::fs::read(t.tmp.join("outside/secret")).unwrap(),
            b"SECRET"
        );
        // Read-only: every change is EROFS, reads work.
        let ro = Volume::open(&file, true).unwrap();
        for o in [op::WRITE, op::TRUNCATE, op::CHMOD, op::UTIMES] {
            assert_eq!(
                run(&ro, r(o), b"/", b"", &mut buf[..1]),
                Err(errno::EROFS),
                "{o}"
            );
        }
        assert_eq!(std::fs::read(&file).unwrap(), b"new");
        // Not a regular file or directory: refused at open.
        assert!(matches!(
            Volume::open(Path::new("/dev/null"), false),
            Err(HostfsError::NotAFileOrDirectory(_))
        ));
        assert!(Volume::open(Path::new("/proc/self/status"), true).is_err());
    }

    /// Owners: a host that may change them (root with `CAP_CHOWN`, as in CI) gives new
    /// objects the creator's ids and `CHOWN`s them, root and symbolic links included (the
    /// link itself, never its target); one that may not keeps its own and says
    /// `EOPNOTSUPP`. A file volume keeps no owners.
    #[test]
    fn owners_are_the_guests_where_the_host_may_set_them() {
        let t = tree("owner");
        let vol = t.tmp.join("vol");
        let v = Volume::open(&vol, false).unwrap();
        let may = rustix::thread::capabilities(None)
            .is_ok_and(|c| c.effective.contains(rustix::thread::CapabilitySet::CHOWN));
        let me = (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        );
        let owned = |uid, gid| VolumeRequest {
            flags: flag::OWNER,
            uid,
            gid,
            ..r(0)
        };
        let ids = |p: &str| {
            let m = std::fs::symlink_metadata(vol.join(p)).unwrap();
            (m.uid(), m.gid())
        };
        let want = |ids: (u32, u32)| if may { ids } else { me };
        let new = |o, flags, p: &[u8], p2: &[u8]| {
            let req = VolumeRequest {
                op: o,
                mode: 0o700,
                flags: flags | owned(101, 104).flags,
                ..owned(101, 104)
            };
            run(&v, req, p, p2, &mut []).unwrap().1.unwrap()
        };
        let st = new(op::MKDIR, 0, b"/pgdata", b"");
        assert_eq!((st.uid, st.gid), want((101, 104)));
        assert_eq!(ids("pgdata"), want((101, 104)));
        new(op::CREATE, flag::EXCL, b"/pgdata/f", b"");
        assert_eq!(ids("pgdata/f"), want((101, 104)));
        new(op::SYMLINK, 0, b"/l", b"a");
        assert_eq!(ids("l"), want((101, 104)));
        assert_eq!(ids("a"), me, "the link's target keeps its owner");
        // Without `OWNER`: the host's.
        run(&v, r(op::MKDIR), b"/plain", b"", &mut []).unwrap();
        assert_eq!(ids("plain"), me);
        // CHOWN of a file, a link (itself), the root.
        for (p, path) in [("a", &b"/a"[..]), ("l", b"/l"), (".", b"/")] {
            let req = VolumeRequest {
                op: op::CHOWN,
                uid: 7,
                gid: 8,
                ..r(0)
            };
            let got = run(&v, req, path, b"", &mut []);
            match may {
                true => {
                    let st = got.unwrap().1.unwrap();
                    assert_eq!(((st.uid, st.gid), ids(p)), ((7, 8), (7, 8)), "{p}");
                }
                false => assert_eq!(got, Err(errno::EOPNOTSUPP), "{p}"),
            }
        }
        // Read-only: refused before any host work; a file volume keeps no owners.
        let ro = Volume::open(&vol, true).unwrap();
        let req = VolumeRequest {
            op: op::CHOWN,
            ..r(0)
        };
        assert_eq!(run(&ro, req, b"/a", b"", &mut []), Err(errno::EROFS));
        let f = Volume::open(&vol.join("pgdata/f"), false).unwrap();
        assert_eq!(run(&f, req, b"/", b"", &mut []), Err(errno::EOPNOTSUPP));
    }

    #[test]
    fn requests_are_validated_before_any_host_work() {
        let t = tree("hc");
        let vols = vec![Arc::new(Volume::open(&t.tmp.join("vol"), false).unwrap())];
        let mem = GuestMemory::new(16 << 20).unwrap();
        let size = mem.size();
        let put = |req: &VolumeRequest| mem.write(0x1000, req.as_bytes()).unwrap();
        let call = || hc_volume_op(&mem, &vols, [0x1000, 0x2000, 0, 0, 0, 0]);
        mem.write(0x3000, b"/a").unwrap();
        let base = VolumeRequest {
            path_gpa: 0x3000,
            path_len: 2,
            ..r(op::LOOKUP)
        };
        put(&base);
        assert_eq!(call(), Ok(0));
        let resp = VolumeResponse::read_from_bytes(&mem.read_vec(0x2000, 56).unwrap()).unwrap();
        assert_eq!(
            (resp.errno, resp.stat.size, resp.stat.kind),
            (0, 5, kind::REG)
        );
        assert_eq!(
            hc_volume_op(&mem, &[], [0x1000, 0x2000, 0, 0, 0, 0]),
            Err(HcError::UnknownCall)
        );
        assert_eq!(
            hc_volume_op(&mem, &vols, [size - 8, 0x2000, 0, 0, 0, 0]),
            Err(HcError::BadAddress)
        );
        assert_eq!(
            hc_volume_op(&mem, &vols, [0x1000, size - 8, 0, 0, 0, 0]),
            Err(HcError::BadAddress)
        );
        let cases: [(VolumeRequest, HcError); 12] = [
            (VolumeRequest { op: 0, ..base }, HcError::InvalidArgument),
            (
                VolumeRequest {
                    op: op::LAST + 1,
                    ..base
                },
                HcError::InvalidArgument,
            ),
            (
                VolumeRequest { volume: 1, ..base },
                HcError::InvalidArgument,
            ),
            (
                VolumeRequest {
                    flags: flag::EXCL,
                    ..base
                },
                HcError::InvalidArgument,
            ),
            (
                VolumeRequest {
                    path_len: hostfs::PATH_MAX + 1,
                    ..base
                },
                HcError::TooLarge,
            ),
            (
                VolumeRequest {
                    path_gpa: u64::MAX - 1,
                    ..base
                },
                HcError::BadAddress,
            ),
            (
                VolumeRequest {
                    op: op::READ,
                    buf_len: IO_MAX + 1,
                    ..base
                },
                HcError::TooLarge,
            ),
            (
                VolumeRequest {
                    op: op::READ,
                    buf_gpa: size - 1,
                    buf_len: 2,
                    ..base
                },
                HcError::BadAddress,
            ),
            (
                VolumeRequest { buf_len: 1, ..base },
                HcError::InvalidArgument,
            ),
            // An owner where the op takes none, `OWNER` on an op without it, `(uid_t)-1`.
            (VolumeRequest { gid: 5, ..base }, HcError::InvalidArgument),
            (
                VolumeRequest {
                    op: op::UNLINK,
                    flags: flag::OWNER,
                    ..base
                },
                HcError::InvalidArgument,
            ),
            (
                VolumeRequest {
                    op: op::CHOWN,
                    uid: NO_ID,
                    ..base
                },
                HcError::InvalidArgument,
            ),
        ];
        for (req, want) in cases {
            put(&req);
            assert_eq!(call(), Err(want), "{req:?}");
        }
        // Garbage: never a panic, only documented errors.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..3000 {
            let mut raw = [0u8; REQUEST_LEN];
            for c in raw.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes());
            }
            let mut req = VolumeRequest::read_from_bytes(&raw).unwrap();
            if x.is_multiple_of(3) {
                (req.op, req.volume, req.flags) = ((x % 16) as u32, 0, 0);
                (req.path_gpa, req.path_len, req.path2_len) = (0x3000, x % 8, 0);
                (req.buf_gpa, req.buf_len) = (0x4000, x % 4096);
            }
            put(&req);
            match call() {
                Ok(0) | Err(HcError::InvalidArgument | HcError::BadAddress | HcError::TooLarge) => {
                }
                other => panic!("{other:?} for {req:?}"),
            }
        }
    }
}
