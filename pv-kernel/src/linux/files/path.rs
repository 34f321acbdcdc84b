//! System calls on path names: `open`, `stat`, directory and link manipulation, metadata,
//! the working directory. Relative paths resolve against the working directory or, for the
//! `*at` calls, the directory a descriptor refers to.

#![deny(unsafe_code)]

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use pvmux_hypercalls::bootargs::Terminals;
use pvmux_hypercalls::hypercall::stream;

use super::dev::{self, Dev};
use super::fdops::fd_arg;
use super::file::{fstat, KStat, Kind, OpenFile};
use super::{cwd, fd_file, wall_now};
use crate::fs::perm::Times;
use crate::fs::ramfs::{mode, oflag, FileType, Ino, PATH_MAX, ROOT_INO};
use crate::fs::{self, Errno};
use crate::linux::procfs;
use crate::linux::task::current_process;
use crate::linux::uaccess::{copy_to_user, read_cstr, read_path, read_val, write_val};
use crate::linux::SysResult;

mod at;
mod mount;
pub(crate) mod names;
mod open;
#[cfg(test)]
mod tests;

use at::{AT_EACCESS, AT_EMPTY_PATH, AT_SYMLINK_FOLLOW, FSTATAT_FLAGS};
pub(crate) use at::{AT_FDCWD, AT_REMOVEDIR, AT_SYMLINK_NOFOLLOW};
pub(crate) use mount::{sys_mount, sys_umount2};
use names::time_arg;
use open::OpenHow;

/// Where a path argument resolves from (see [`at::start`]).
fn base(dirfd: u64, path: &[u8]) -> Result<Ino, Errno> {
    at::start(fd_arg(dirfd), path, cwd(), |fd| {
        fd_file(fd)?.dir_ino().ok_or(Errno::ENOTDIR)
    })
}

/// A path argument that may be empty with `AT_EMPTY_PATH` (`None` then; also for a null
/// pointer, as Linux 6.11+ accepts).
fn path_or_empty(va: u64, flags: u64) -> Result<Option<Vec<u8>>, Errno> {
    let p = if va == 0 && flags & AT_EMPTY_PATH != 0 {
        Vec::new()
    } else {
        read_cstr(va, PATH_MAX)?
    };
    Ok(at::path_or_dirfd(&p, flags)?.map(<[u8]>::to_vec))
}

/// The file `dirfd` refers to, for an empty path (`None` for `AT_FDCWD`: the working
/// directory).
fn dirfd_file(dirfd: u64) -> Result<Option<alloc::sync::Arc<OpenFile>>, Errno> {
    let fd = fd_arg(dirfd);
    if fd == AT_FDCWD {
        return Ok(None);
    }
    fd_file(fd).map(Some)
}

/// What `execveat(dirfd, path, ..., flags)` runs (see [`exec_at`]).
pub(crate) struct ExecAt {
    /// The directory `path` is looked up from.
    pub(crate) base: Ino,
    /// The path to look up; empty for the file `dirfd` itself (`AT_EMPTY_PATH`).
    pub(crate) path: Vec<u8>,
    /// The file `dirfd` refers to, for an empty path.
    pub(crate) ino: Option<Ino>,
    /// The program's name for `AT_EXECFN` and a script's interpreter: `path` as given if it
    /// is absolute or `dirfd` is `AT_FDCWD`, else `/dev/fd/N` or `/dev/fd/N/path`, as Linux.
    pub(crate) name: Vec<u8>,
    /// What `/proc/self/exe` names for a program run from a descriptor: the path it was
    /// opened by.
    pub(crate) exe: Option<Vec<u8>>,
    /// False when the name goes through a close-on-exec descriptor: a script cannot be run
    /// so (its interpreter could not open it: `ENOENT`, as Linux).
    pub(crate) script_ok: bool,
}

impl ExecAt {
    /// `execve`'s `path`, looked up from `cwd`.
    pub(crate) fn plain(cwd: Ino, path: &[u8]) -> Self {
        Self {
            base: cwd,
            path: path.to_vec(),
            ino: None,
            name: path.to_vec(),
            exe: None,
            script_ok: true,
        }
    }
}

/// Resolves `execveat`'s `(dirfd, path, flags)` (`AT_EMPTY_PATH`, `AT_SYMLINK_NOFOLLOW`:
/// `ELOOP` if the last component is a symbolic link; other flags `EINVAL`).
pub(crate) fn exec_at(dirfd: u64, path: Vec<u8>, flags: u64) -> Result<ExecAt, Errno> {
    at::only(flags, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)?;
    let fd = fd_arg(dirfd);
    if path.is_empty() {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        let p = current_process();
        let (f, cloexec) = {
            let files = p.files.lock();
            (files.get(fd)?, files.cloexec(fd)?)
        };
        return Ok(ExecAt {
            base: cwd(),
            path,
            ino: Some(f.ino().ok_or(Errno::EACCES)?),
            name: alloc::format!("/dev/fd/{fd}").into_bytes(),
            exe: f.path().map(<[u8]>::to_vec),
            script_ok: !cloexec,
        });
    }
    let base = base(dirfd, &path)?;
    if flags & AT_SYMLINK_NOFOLLOW != 0 {
        let ino = fs::with(|fs| fs.lookup(base, &path, false))?;
        if fs::with(|fs| fs.stat_ino(ino))?.mode & 0o170_000 == 0o120_000 {
            return Err(Errno::ELOOP);
        }
    }
    let (name, script_ok) = if path.starts_with(b"/") || fd == AT_FDCWD {
        (path.clone(), true)
    } else {
        let mut n = alloc::format!("/dev/fd/{fd}/").into_bytes();
        n.extend_from_slice(&path);
        (n, !current_process().files.lock().cloexec(fd)?)
    };
    Ok(ExecAt {
        base,
        path,
        ino: None,
        name,
        exe: None,
        script_ok,
    })
}

/// `stat` of a path.
fn stat_path(base: Ino, path: &[u8], follow: bool) -> Result<KStat, Errno> {
    let st = fs::with(|fs| {
        let ino = fs.lookup(base, path, follow)?;
        fs.stat_ino(ino)
    })?;
    Ok(KStat::of(st))
}

/// `stat` of what `(dirfd, path, flags)` names (`AT_EMPTY_PATH`, `AT_SYMLINK_NOFOLLOW`).
fn stat_at(dirfd: u64, path_va: u64, flags: u64) -> Result<KStat, Errno> {
    match path_or_empty(path_va, flags)? {
        Some(path) => {
            let follow = flags & AT_SYMLINK_NOFOLLOW == 0;
            match procfs::lookup(fd_arg(dirfd), &path, follow, || base(dirfd, &path))? {
                None => stat_path(base(dirfd, &path)?, &path, follow),
                Some(found) => match procfs::stat_found(&found)? {
                    Some(st) => Ok(st),
                    None => match found {
                        procfs::Found::Path(p) => stat_path(ROOT_INO, &p, follow),
                        _ => Err(Errno::ENOENT),
                    },
                },
            }
        }
        None => match dirfd_file(dirfd)? {
            Some(f) => fstat(&f),
            None => {
                let c = cwd();
                Ok(KStat::of(fs::with(|fs| fs.stat_ino(c))?))
            }
        },
    }
}

/// The inode `(dirfd, path, flags)` names.
fn ino_at(dirfd: u64, path_va: u64, flags: u64, follow: bool) -> Result<Option<Ino>, Errno> {
    match path_or_empty(path_va, flags)? {
        Some(path) => {
            let b = base(dirfd, &path)?;
            Ok(Some(fs::with(|fs| fs.lookup(b, &path, follow))?))
        }
        None => match dirfd_file(dirfd)? {
            Some(f) => Ok(f.ino()),
            None => Ok(Some(cwd())),
        },
    }
}

// ---------------------------------------------------------------------------------------
// open.

/// `openat(dirfd, path, flags, mode)` (`open` and `creat` too); see [`OpenHow::decode`].
pub(crate) fn sys_openat(dirfd: u64, path_va: u64, flags: u64, mode: u64) -> SysResult {
    let path = read_path(path_va)?;
    let umask = current_process().umask.load(Ordering::Relaxed);
    let how = OpenHow::decode(flags as u32, mode as u32, umask)?;
    open_path(dirfd, path, &how, Resolve::default())
}

/// `openat2(dirfd, path, how, size)`: `openat` with its flags checked strictly and the
/// lookup restricted by `how.resolve` ([`open::decode_open_how`]).
pub(crate) fn sys_openat2(dirfd: u64, path_va: u64, how_va: u64, size: u64) -> SysResult {
    let raw = crate::linux::uaccess::copy_sized_struct(how_va, size, open::OPEN_HOW_SIZE_VER0)?;
    let (flags, mode, resolve) = open::decode_open_how(&raw)?;
    let path = read_path(path_va)?;
    let umask = current_process().umask.load(Ordering::Relaxed);
    let how = OpenHow::decode(flags, mode, umask)?;
    open_path(dirfd, path, &how, resolve)
}

/// `openat2`'s lookup restrictions (`RESOLVE_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Resolve {
    /// What the walk in the file system may not do.
    pub(crate) rules: fs::ramfs::WalkRules,
    /// `RESOLVE_IN_ROOT`: the starting directory is the walk's root.
    pub(crate) in_root: bool,
    /// `RESOLVE_NO_MAGICLINKS`: a `/proc` link to a file (`/proc/PID/fd/N`, `cwd`, `exe`,
    /// `root`) is `ELOOP`.
    pub(crate) no_magiclinks: bool,
}

impl Resolve {
    /// A walk that stays in this file system: it neither goes through `/proc`'s layer nor
    /// enters a mount point (`EXDEV`).
    fn confined(&self) -> bool {
        self.in_root || self.rules.beneath || self.rules.no_mounts
    }
}

/// Opens `path` from `dirfd` as `how` says, the lookup restricted by `resolve`.
fn open_path(dirfd: u64, mut path: Vec<u8>, how: &OpenHow, resolve: Resolve) -> SysResult {
    let mut dirfd = dirfd;
    let p = current_process();
    let path_only = how.path_only;
    let follow = how.fs_flags & oflag::O_NOFOLLOW == 0;
    let found = if resolve.confined() {
        None
    } else {
        procfs::lookup(fd_arg(dirfd), &path, follow, || base(dirfd, &path))?
    };
    if let Some(found) = found {
        match procfs::open_found(found, how.file_flags, how.fs_flags)? {
            procfs::Opened::File(file) => {
                let limit = crate::linux::rlimit::nofile(&p);
                let r = p.files.lock().alloc(file, how.cloexec, 0, limit);
                return r.map(|fd| fd as u64);
            }
            procfs::Opened::Path(_) if resolve.no_magiclinks => return Err(Errno::ELOOP),
            procfs::Opened::Path(np) => {
                path = np;
                dirfd = AT_FDCWD as i64 as u64;
            }
        }
    }
    let b = base(dirfd, &path)?;
    // The directory `dirfd` names, the root of a `RESOLVE_IN_ROOT` or `RESOLVE_BENEATH` walk.
    let root = if resolve.in_root || resolve.rules.beneath {
        Some(base(dirfd, b".")?)
    } else {
        None
    };
    let b = root.unwrap_or(b);
    let watch = super::inotify::target(b, &path);
    let (h, st) = fs::with(|fs| {
        fs.with_walk_rules(root, resolve.rules, |fs| open::open_node(fs, b, &path, how))
    })?;
    let mut named = None;
    let kind = match dev::node(st.ino) {
        None => {
            let dir = st.file_type() == FileType::Directory;
            if !dir {
                named = Some(opened_path(dirfd, &path));
            }
            Kind::Node {
                h,
                ino: st.ino,
                dir,
            }
        }
        Some(d) => {
            let _ = fs::with(|fs| fs.close(h));
            match d {
                Dev::Tty | Dev::Console => {
                    let t = super::tty::terminals();
                    if d == Dev::Tty && t == Terminals::default() && !path_only {
                        // No controlling terminal.
                        return Err(Errno::ENXIO);
                    }
                    Kind::Console {
                        out: stream::STDOUT,
                        tty: t.stdin || t.stdout,
                        dev: d,
                    }
                }
                Dev::Channel(i) if !path_only => {
                    let file = super::channel::open(
                        i,
                        dev::channel_name(i),
                        KStat::of(st),
                        how.file_flags,
                    );
                    let limit = crate::linux::rlimit::nofile(&p);
                    let r = p.files.lock().alloc(file, how.cloexec, 0, limit);
                    return r.map(|fd| fd as u64);
                }
                Dev::Disk(n) if !path_only => {
                    let mut node_path = b"/dev/".to_vec();
                    node_path.extend_from_slice(&dev::disk_name(u32::from(n)));
                    let file = super::blockdev::open(
                        u32::from(n),
                        &node_path,
                        KStat::of(st),
                        how.file_flags,
                    )?;
                    let limit = crate::linux::rlimit::nofile(&p);
                    let r = p.files.lock().alloc(file, how.cloexec, 0, limit);
                    return r.map(|fd| fd as u64);
                }
                _ => Kind::Dev {
                    dev: d,
                    ino: st.ino,
                },
            }
        }
    };
    let file = OpenFile::new(kind, how.file_flags);
    if let Some(n) = named {
        file.set_path(n);
    }
    let limit = crate::linux::rlimit::nofile(&p);
    let r = p.files.lock().alloc(file, how.cloexec, 0, limit);
    if r.is_ok() && !path_only {
        let dir = st.file_type() == FileType::Directory;
        let truncated = how.file_flags & oflag::O_TRUNC != 0;
        if truncated && st.file_type() == FileType::Regular {
            crate::linux::memory::file_shrunk(st.ino);
        }
        super::inotify::opened(watch, st.ino, dir, truncated);
    }
    r.map(|fd| fd as u64)
}

/// Opens again, for an adopted hand-over record's descriptor (`handover::adopt`), the
/// `--rootfs` host file (`volume` false) or `--volume` file (`volume` true) at absolute
/// `path` with the open file description's flags `status_flags` — never creating nor
/// truncating it (`O_CREAT`, `O_EXCL`, `O_TRUNC` and `O_TMPFILE` are dropped). The caller
/// sets the offset. `ENOENT` if it is gone, `EINVAL` if it is no longer such a file.
pub(crate) fn reopen(
    path: &[u8],
    status_flags: u32,
    volume: bool,
) -> Result<alloc::sync::Arc<OpenFile>, Errno> {
    let (h, ino, file_flags) = fs::with(|fs| reopen_node(fs, path, status_flags, volume))?;
    let file = OpenFile::new(Kind::Node { h, ino, dir: false }, file_flags);
    file.set_path(path.to_vec());
    Ok(file)
}

/// Opens in-memory file or directory `ino` again by its inode, with `status_flags` (never
/// creating nor truncating it), at `pos` — a file's offset, a directory's `getdents64`
/// cookie — named `path` (what `/proc/PID/fd` shows; empty: none): a kernel hand-over's
/// descriptor of kind `MEMORY_FILE` (the adopted tree has the old numbers). A device node
/// is `EINVAL` (devices are carried as such).
pub(crate) fn reopen_ino(
    ino: Ino,
    status_flags: u32,
    pos: u64,
    path: &[u8],
) -> Result<alloc::sync::Arc<OpenFile>, Errno> {
    let how = reopen_how(status_flags)?;
    if dev::node(ino).is_some() {
        return Err(Errno::EINVAL);
    }
    let (h, dir) = fs::with(|fs| {
        let h = fs.open_ino(ino, how.fs_flags)?;
        let dir = fs.fstat(h).map(|st| st.file_type() == FileType::Directory);
        let seek = match dir {
            Ok(true) => i64::try_from(pos)
                .map_err(|_| Errno::EINVAL)
                .and_then(|p| fs.lseek(h, p, crate::fs::ramfs::whence::SEEK_SET))
                .map(|_| true),
            other => other,
        };
        match seek {
            Ok(dir) => Ok((h, dir)),
            Err(e) => {
                let _ = fs.close(h);
                Err(e)
            }
        }
    })?;
    let file = OpenFile::new(Kind::Node { h, ino, dir }, how.file_flags);
    if !dir {
        *file.pos() = pos;
    }
    if !path.is_empty() {
        file.set_path(path.to_vec());
    }
    Ok(file)
}

/// How a carried descriptor with `status_flags` is opened again: its access mode and
/// status flags, nothing created, truncated or required to be a directory.
fn reopen_how(status_flags: u32) -> Result<open::OpenHow, Errno> {
    let flags = status_flags
        & !(oflag::O_CREAT
            | oflag::O_EXCL
            | oflag::O_TRUNC
            | oflag::O_DIRECTORY
            | super::file::fl::O_TMPFILE_BIT);
    open::OpenHow::decode(flags, 0, 0)
}

/// [`reopen`] in `fs`: the handle, the inode and the open file description's flags.
fn reopen_node(
    fs: &mut fs::Fs,
    path: &[u8],
    status_flags: u32,
    volume: bool,
) -> Result<(fs::ramfs::Handle, Ino, u32), Errno> {
    let how = reopen_how(status_flags)?;
    let (h, st) = open::open_node(fs, ROOT_INO, path, &how)?;
    let kind_ok = if volume {
        fs.is_volume_file(st.ino)
    } else {
        fs.is_host_file(st.ino)
    };
    if st.file_type() != FileType::Regular || !kind_ok || dev::node(st.ino).is_some() {
        let _ = fs.close(h);
        return Err(Errno::EINVAL);
    }
    Ok((h, st.ino, how.file_flags))
}

/// The absolute path `(dirfd, path)` names, `.` and `..` taken lexically (what
/// `/proc/PID/fd/N` shows for a file opened by that name).
fn opened_path(dirfd: u64, path: &[u8]) -> Vec<u8> {
    let mut full = if path.first() == Some(&b'/') {
        Vec::new()
    } else {
        let dir = match dirfd_file(dirfd) {
            Ok(Some(f)) => f.dir_ino(),
            _ => Some(cwd()),
        };
        dir.and_then(|d| dir_path(d).ok()).unwrap_or_default()
    };
    full.push(b'/');
    full.extend_from_slice(path);
    normalize(&full)
}

/// `path` with `.`, `..` and repeated slashes taken out lexically (absolute result).
pub(crate) fn normalize(path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    names::joined(&parts)
}

// ---------------------------------------------------------------------------------------
// stat.

/// `newfstatat(dirfd, path, buf, flags)` (`stat` and `lstat` too).
pub(crate) fn sys_newfstatat(dirfd: u64, path_va: u64, buf: u64, flags: u64) -> SysResult {
    at::only(flags, FSTATAT_FLAGS)?;
    let st = stat_at(dirfd, path_va, flags)?;
    write_val(buf, &st.to_linux())?;
    Ok(0)
}

/// `statx(dirfd, path, flags, mask, buf)`.
pub(crate) fn sys_statx(dirfd: u64, path_va: u64, flags: u64, _mask: u64, buf: u64) -> SysResult {
    at::statx_flags(flags)?;
    let st = stat_at(dirfd, path_va, flags)?;
    write_val(buf, &st.to_statx())?;
    Ok(0)
}

/// The `struct statfs` (120 bytes) reported for every file: a tmpfs-like memory filesystem,
/// with its size and inode limits and what it holds (`fs::Limits`, `ramfs::Usage`).
pub(crate) fn statfs_bytes() -> [u8; 120] {
    let mut b = [0u8; 120];
    let mut put = |off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    let u = fs::with(|fs| fs.usage());
    let blocks = u.limits.max_pages;
    let files = u.limits.max_inodes;
    let free = blocks.saturating_sub(u.pages);
    put(0, crate::fs::mount::TMPFS_MAGIC);
    put(8, 4096);
    put(16, blocks);
    put(24, free);
    put(32, free);
    put(40, files);
    put(48, files.saturating_sub(u.inodes));
    put(64, 255);
    put(72, 4096);
    put(80, 0x20); // ST_VALID
    b
}

/// The extended-attribute calls on a path: no filesystem here keeps extended attributes,
/// so an existing file answers `ENOTSUP` (what `ls -l` and `cp -a` expect of such a
/// filesystem); a missing one the lookup's error.
pub(crate) fn sys_xattr_unsupported(path_va: u64, flags: u64) -> SysResult {
    stat_at(AT_FDCWD as i64 as u64, path_va, flags)?;
    Err(Errno::ENOTSUP)
}

/// `statfs(path, buf)`.
pub(crate) fn sys_statfs(path_va: u64, buf: u64) -> SysResult {
    let path = read_path(path_va)?;
    let cwd_fd = AT_FDCWD as i64 as u64;
    match procfs::lookup(AT_FDCWD, &path, true, || base(cwd_fd, &path))? {
        Some(procfs::Found::Node { kind, .. }) => {
            write_val(buf, &procfs::statfs_bytes(kind))?;
            return Ok(0);
        }
        Some(procfs::Found::Open(f)) => {
            let b = procfs::object::kind_of(&f).map_or_else(statfs_bytes, procfs::statfs_bytes);
            write_val(buf, &b)?;
            return Ok(0);
        }
        Some(procfs::Found::Path(p)) => {
            stat_path(ROOT_INO, &p, true)?;
        }
        None => {
            stat_path(base(cwd_fd, &path)?, &path, true)?;
        }
    }
    write_val(buf, &statfs_bytes())?;
    Ok(0)
}

// ---------------------------------------------------------------------------------------
// Creating and removing names.

/// `mkdirat(dirfd, path, mode)`.
pub(crate) fn sys_mkdirat(dirfd: u64, path_va: u64, mode: u64) -> SysResult {
    let path = read_path(path_va)?;
    procfs::deny(fd_arg(dirfd), &path, || base(dirfd, &path))?;
    let b = base(dirfd, &path)?;
    let umask = current_process().umask.load(Ordering::Relaxed);
    let perm = mode as u32 & 0o1777 & !umask;
    let watch = super::inotify::target(b, &path);
    fs::with(|fs| fs.mkdir(b, &path, perm))?;
    super::inotify::created(watch, true);
    Ok(0)
}

/// `mknodat(dirfd, path, mode, dev)`: regular files only (no device nodes or FIFOs; see
/// [`names::mknod_type`]).
pub(crate) fn sys_mknodat(dirfd: u64, path_va: u64, mode: u64, _dev: u64) -> SysResult {
    names::mknod_type(mode as u32)?;
    let path = read_path(path_va)?;
    procfs::deny(fd_arg(dirfd), &path, || base(dirfd, &path))?;
    let b = base(dirfd, &path)?;
    let umask = current_process().umask.load(Ordering::Relaxed);
    let perm = mode as u32 & mode::PERM & !umask;
    let watch = super::inotify::target(b, &path);
    fs::with(|fs| {
        let h = fs.open(
            b,
            &path,
            oflag::O_CREAT | oflag::O_EXCL | oflag::O_WRONLY,
            perm,
        )?;
        fs.close(h)
    })?;
    super::inotify::created(watch, false);
    Ok(0)
}

/// `unlinkat(dirfd, path, flags)` (`unlink` and `rmdir` too).
pub(crate) fn sys_unlinkat(dirfd: u64, path_va: u64, flags: u64) -> SysResult {
    at::only(flags, AT_REMOVEDIR)?;
    let path = read_path(path_va)?;
    procfs::deny(fd_arg(dirfd), &path, || base(dirfd, &path))?;
    let b = base(dirfd, &path)?;
    let watch = super::inotify::target(b, &path);
    fs::with(|fs| names::unlink_at(fs, b, &path, flags))?;
    super::inotify::removed(watch);
    Ok(0)
}

/// `linkat(olddirfd, old, newdirfd, new, flags)` (`link` too).
pub(crate) fn sys_linkat(od: u64, old_va: u64, nd: u64, new_va: u64, flags: u64) -> SysResult {
    at::only(flags, AT_SYMLINK_FOLLOW | AT_EMPTY_PATH)?;
    let follow = flags & AT_SYMLINK_FOLLOW != 0;
    let ino = ino_at(od, old_va, flags, follow)?.ok_or(Errno::ENOENT)?;
    let new = read_path(new_va)?;
    procfs::deny(fd_arg(nd), &new, || base(nd, &new))?;
    let nb = base(nd, &new)?;
    let watch = super::inotify::target(nb, &new);
    fs::with(|fs| names::link_at(fs, ino, nb, &new))?;
    super::inotify::on_inode(ino, super::inotify::inm::IN_ATTRIB, false);
    super::inotify::created(watch, false);
    Ok(0)
}

/// `symlinkat(target, newdirfd, linkpath)` (`symlink` too).
pub(crate) fn sys_symlinkat(target_va: u64, nd: u64, link_va: u64) -> SysResult {
    let target = read_path(target_va)?;
    let link = read_path(link_va)?;
    procfs::deny(fd_arg(nd), &link, || base(nd, &link))?;
    let b = base(nd, &link)?;
    let watch = super::inotify::target(b, &link);
    fs::with(|fs| fs.symlink(b, &target, &link))?;
    super::inotify::created(watch, false);
    Ok(0)
}

/// `readlinkat(dirfd, path, buf, bufsiz)` (`readlink` too).
pub(crate) fn sys_readlinkat(dirfd: u64, path_va: u64, buf: u64, size: u64) -> SysResult {
    let size = size as i32;
    if size <= 0 {
        return Err(Errno::EINVAL);
    }
    let path = read_path(path_va)?;
    let target = match procfs::lookup(fd_arg(dirfd), &path, false, || base(dirfd, &path))? {
        None => {
            let b = base(dirfd, &path)?;
            fs::with(|fs| fs.readlink(b, &path))?
        }
        Some(found) => match procfs::readlink_found(&found)? {
            Some(t) => t,
            None => match found {
                procfs::Found::Path(p) => fs::with(|fs| fs.readlink(ROOT_INO, &p))?,
                _ => return Err(Errno::EINVAL),
            },
        },
    };
    let n = target.len().min(size as usize);
    copy_to_user(buf, &target[..n])?;
    Ok(n as u64)
}

/// The absolute path of directory `ino` (`ENOENT` if it was removed).
pub(crate) fn dir_path(ino: Ino) -> Result<Vec<u8>, Errno> {
    fs::with(|fs| names::dir_path(fs, ino))
}

/// The canonical absolute path of `path` from directory `cwd` (see [`names::real_path`]).
pub(crate) fn real_path(cwd: Ino, path: &[u8]) -> Result<Vec<u8>, Errno> {
    fs::with(|fs| names::real_path(fs, cwd, path))
}

/// `renameat2(olddirfd, old, newdirfd, new, flags)` (`rename` and `renameat` too).
pub(crate) fn sys_renameat2(od: u64, old_va: u64, nd: u64, new_va: u64, flags: u64) -> SysResult {
    let old = read_path(old_va)?;
    let new = read_path(new_va)?;
    procfs::deny(fd_arg(od), &old, || base(od, &old))?;
    procfs::deny(fd_arg(nd), &new, || base(nd, &new))?;
    let ob = base(od, &old)?;
    let nb = base(nd, &new)?;
    let (wo, wn) = (
        super::inotify::target(ob, &old),
        super::inotify::target(nb, &new),
    );
    fs::with(|fs| names::rename_at(fs, ob, &old, nb, &new, flags))?;
    super::inotify::renamed(wo, wn);
    Ok(0)
}

// ---------------------------------------------------------------------------------------
// Metadata.

/// `truncate(path, length)`.
pub(crate) fn sys_truncate(path_va: u64, len: u64) -> SysResult {
    let path = read_path(path_va)?;
    let len = len as i64;
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    let b = base(AT_FDCWD as u64, &path)?;
    let st = stat_path(b, &path, true)?;
    match st.st.mode & mode::S_IFMT {
        mode::S_IFDIR => return Err(Errno::EISDIR),
        mode::S_IFREG => {}
        _ => return Err(Errno::EINVAL),
    }
    fs::with(|fs| fs.truncate(b, &path, len))?;
    crate::linux::memory::file_shrunk(st.st.ino);
    super::inotify::on_path(
        super::inotify::target(b, &path),
        super::inotify::inm::IN_MODIFY,
    );
    Ok(0)
}

/// `faccessat2(dirfd, path, mode, flags)` (`access` and `faccessat` too): Linux's DAC rule
/// (`creds::permitted`) for the real ids, or the filesystem ids with `AT_EACCESS`. As
/// Linux, the real-id check uses the permitted capabilities for a real uid 0, none for any
/// other; `AT_EACCESS` the effective ones.
pub(crate) fn sys_faccessat2(dirfd: u64, path_va: u64, amode: u64, flags: u64) -> SysResult {
    if amode & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    at::only(flags, AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)?;
    let st = stat_at(dirfd, path_va, flags)?.st;
    let c = crate::linux::creds::current();
    let (uid, gid, caps) = if flags & AT_EACCESS != 0 {
        (c.fsuid, c.fsgid, c.caps.sets.effective)
    } else if c.uid == 0 {
        (c.uid, c.gid, c.caps.sets.permitted)
    } else {
        (c.uid, c.gid, 0)
    };
    let dir = st.file_type() == FileType::Directory;
    if !crate::linux::creds::permitted(
        (uid, gid, &c.groups, caps),
        (st.mode & 0o7777, st.uid, st.gid, dir),
        amode as u32,
    ) {
        return Err(Errno::EACCES);
    }
    Ok(0)
}

/// `chdir(path)`.
pub(crate) fn sys_chdir(path_va: u64) -> SysResult {
    let path = read_path(path_va)?;
    let cwd_fd = AT_FDCWD as i64 as u64;
    let path = match procfs::lookup(AT_FDCWD, &path, true, || base(cwd_fd, &path))? {
        None => path,
        Some(procfs::Found::Path(p)) => p,
        Some(found) => return procfs::chdir_found(found),
    };
    let b = base(cwd_fd, &path)?;
    let ino = fs::with(|fs| {
        let ino = fs.lookup_dir(b, &path)?;
        fs.may(ino, crate::fs::perm::access::X)?;
        Ok::<_, Errno>(ino)
    })?;
    current_process().fs.lock().set(ino);
    Ok(0)
}

/// `chroot(path)`: the calling process's root directory becomes the directory `path`
/// names (searchable, else `EACCES`; `CAP_SYS_CHROOT`, else `EPERM`), for it and the
/// processes it creates from now on. Its working directory stays where it is (possibly
/// outside the new root, as on Linux).
pub(crate) fn sys_chroot(path_va: u64) -> SysResult {
    let path = read_path(path_va)?;
    let b = base(AT_FDCWD as i64 as u64, &path)?;
    let ino = fs::with(|fs| {
        let ino = fs.lookup_dir(b, &path)?;
        fs.may(ino, crate::fs::perm::access::X)?;
        Ok::<_, Errno>(ino)
    })?;
    let p = current_process();
    if !p.creds.lock().capable(crate::linux::caps::cap::SYS_CHROOT) {
        return Err(Errno::EPERM);
    }
    p.fs.lock().root = ino;
    Ok(0)
}

/// `getcwd(buf, size)`: returns the length including the NUL.
pub(crate) fn sys_getcwd(buf: u64, size: u64) -> SysResult {
    let root = super::fs_root();
    let mut p = match procfs::synthetic_cwd() {
        Some(p) => p,
        None => fs::with(|fs| names::dir_path_in_root(fs, cwd(), root))?,
    };
    p.push(0);
    if (size as usize) < p.len() {
        return Err(Errno::ERANGE);
    }
    copy_to_user(buf, &p)?;
    Ok(p.len() as u64)
}

/// `fchmodat(dirfd, path, mode)` (`chmod` too).
pub(crate) fn sys_fchmodat(dirfd: u64, path_va: u64, m: u64) -> SysResult {
    let path = read_path(path_va)?;
    let b = base(dirfd, &path)?;
    fs::with(|fs| fs.chmod(b, &path, m as u32 & mode::PERM))?;
    super::inotify::on_path(
        super::inotify::target(b, &path),
        super::inotify::inm::IN_ATTRIB,
    );
    Ok(0)
}

/// `fchmodat2(dirfd, path, mode, flags)`: `fchmodat` with `AT_SYMLINK_NOFOLLOW` (a
/// symbolic link's own mode cannot change: `EOPNOTSUPP`, as Linux) and `AT_EMPTY_PATH`.
pub(crate) fn sys_fchmodat2(dirfd: u64, path_va: u64, m: u64, flags: u64) -> SysResult {
    at::only(flags, AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)?;
    if flags == 0 {
        return sys_fchmodat(dirfd, path_va, m);
    }
    let follow = flags & AT_SYMLINK_NOFOLLOW == 0;
    let Some(ino) = ino_at(dirfd, path_va, flags, follow)? else {
        return Ok(0);
    };
    let kind = fs::with(|fs| fs.stat_ino(ino))?.file_type();
    if kind == FileType::Symlink {
        return Err(Errno::EOPNOTSUPP);
    }
    fs::with(|fs| fs.chmod_ino(ino, m as u32 & mode::PERM))?;
    super::inotify::on_inode(
        ino,
        super::inotify::inm::IN_ATTRIB,
        kind == FileType::Directory,
    );
    Ok(0)
}

/// Changes the owner of `ino` (`u32::MAX` keeps a value): root only, but the owner may
/// change the group to one of its own (`EPERM`, `fs::perm::chown`); like Linux, clears
/// set-user-id and group-executable set-group-id bits of non-directories.
pub(crate) fn chown_ino(ino: Ino, uid: u32, gid: u32) -> Result<(), Errno> {
    fs::with(|fs| {
        fs.may_chown(ino, uid, gid)?;
        let st = fs.stat_ino(ino)?;
        let perm = names::perm_after_chown(st.file_type(), st.mode & mode::PERM, uid, gid);
        let uid = if uid == u32::MAX { st.uid } else { uid };
        let gid = if gid == u32::MAX { st.gid } else { gid };
        fs.set_meta(ino, perm, Some((uid, gid)), None)
    })?;
    super::inotify::on_inode(ino, super::inotify::inm::IN_ATTRIB, false);
    Ok(())
}

/// `fchownat(dirfd, path, uid, gid, flags)` (`chown` and `lchown` too).
pub(crate) fn sys_fchownat(dirfd: u64, path_va: u64, uid: u64, gid: u64, flags: u64) -> SysResult {
    at::only(flags, AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)?;
    let follow = flags & AT_SYMLINK_NOFOLLOW == 0;
    if let Some(ino) = ino_at(dirfd, path_va, flags, follow)? {
        chown_ino(ino, uid as u32, gid as u32)?;
    }
    Ok(0)
}

/// `umask(mask)`: returns the previous mask.
pub(crate) fn sys_umask(mask: u64) -> SysResult {
    let old = current_process()
        .umask
        .swap(mask as u32 & 0o777, Ordering::Relaxed);
    Ok(u64::from(old))
}

/// Sets the timestamps of `ino`, `how` they were given (both to now, or explicitly: who may
/// is `fs::perm::set_times`). The ramfs keeps access and modification times together:
/// a new modification time sets both; an access time alone changes nothing.
fn set_times(ino: Option<Ino>, how: Times, atime: Option<u64>, mtime: Option<u64>) -> SysResult {
    if let (Some(ino), true) = (ino, atime.is_some() || mtime.is_some()) {
        fs::with(|fs| fs.may_set_times(ino, how))?;
    }
    if let (Some(ino), Some(t)) = (ino, mtime) {
        fs::with(|fs| fs.set_mtime(ino, t))?;
        super::inotify::on_inode(ino, super::inotify::inm::IN_ATTRIB, false);
    }
    Ok(0)
}

/// `utimensat(dirfd, path, times, flags)` (a null path acts on `dirfd`: `futimens`).
pub(crate) fn sys_utimensat(dirfd: u64, path_va: u64, times: u64, flags: u64) -> SysResult {
    at::only(flags, AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)?;
    // A null path acts on the descriptor itself, with no flags (Linux's `do_utimes_fd`).
    if path_va == 0 && fd_arg(dirfd) != AT_FDCWD && flags != 0 {
        return Err(Errno::EINVAL);
    }
    let (how, atime, mtime) = if times == 0 {
        let now = wall_now();
        (Times::Now, Some(now), Some(now))
    } else {
        let t: [i64; 4] = read_val(times)?;
        // Only a time given explicitly (not `UTIME_NOW`, not `UTIME_OMIT`) is the owner's
        // alone (utimensat(2)).
        let given = |n: i64| n != names::UTIME_NOW && n != names::UTIME_OMIT;
        (
            if given(t[1]) || given(t[3]) {
                Times::Explicit
            } else {
                Times::Now
            },
            time_arg(wall_now(), t[0], t[1])?,
            time_arg(wall_now(), t[2], t[3])?,
        )
    };
    let ino = if path_va == 0 {
        match dirfd_file(dirfd)? {
            Some(f) => f.ino(),
            None => return Err(Errno::EFAULT),
        }
    } else {
        ino_at(dirfd, path_va, flags, flags & AT_SYMLINK_NOFOLLOW == 0)?
    };
    set_times(ino, how, atime, mtime)
}

/// `futimesat(dirfd, path, times)` (`utimes` too): `struct timeval[2]`.
pub(crate) fn sys_futimesat(dirfd: u64, path_va: u64, tv: u64) -> SysResult {
    let how = if tv == 0 { Times::Now } else { Times::Explicit };
    let (atime, mtime) = if tv == 0 {
        let now = wall_now();
        (Some(now), Some(now))
    } else {
        let t: [i64; 4] = read_val(tv)?;
        if !(0..1_000_000).contains(&t[1]) || !(0..1_000_000).contains(&t[3]) {
            return Err(Errno::EINVAL);
        }
        (
            time_arg(wall_now(), t[0], t[1] * 1000)?,
            time_arg(wall_now(), t[2], t[3] * 1000)?,
        )
    };
    let ino = if path_va == 0 {
        dirfd_file(dirfd)?.ok_or(Errno::EFAULT)?.ino()
    } else {
        ino_at(dirfd, path_va, 0, true)?
    };
    set_times(ino, how, atime, mtime)
}

/// `utime(path, times)`: `struct utimbuf { actime, modtime }` in seconds.
pub(crate) fn sys_utime(path_va: u64, buf: u64) -> SysResult {
    let how = if buf == 0 {
        Times::Now
    } else {
        Times::Explicit
    };
    let (atime, mtime) = if buf == 0 {
        let now = wall_now();
        (Some(now), Some(now))
    } else {
        let [a, m]: [i64; 2] = read_val(buf)?;
        (time_arg(wall_now(), a, 0)?, time_arg(wall_now(), m, 0)?)
    };
    let ino = ino_at(AT_FDCWD as u64, path_va, 0, true)?;
    set_times(ino, how, atime, mtime)
}
