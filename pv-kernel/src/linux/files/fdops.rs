//! System calls on file descriptors: I/O, seeking, descriptor management, `fcntl`, `ioctl`,
//! pipes, `fstat`, directory listing and the `f*` metadata calls.

use super::dev;
use super::file::{
    fl, fstat, kbuf, read_kernel, read_user, write_kernel, write_user, Kind, OpenFile, UserBuf,
    MAX_RW,
};
use super::locks::LockCmd;
use super::pipe::{Pipe, PIPE_SIZE};
use super::tty::{self, ioc};
use super::{fd_file, wall_now};
use crate::fs::ramfs::{dt, oflag, whence, Ino, DIRENT64_HEADER};
use crate::fs::{self, Errno};
use crate::linux::rlimit::nofile;
use crate::linux::task::current_process;
use crate::linux::uaccess::{copy_to_user, read_val, write_val};
use crate::linux::SysResult;

/// `fcntl` commands.
mod fcntl_cmd {
    pub(super) const F_DUPFD: u64 = 0;
    pub(super) const F_GETFD: u64 = 1;
    pub(super) const F_SETFD: u64 = 2;
    pub(super) const F_GETFL: u64 = 3;
    pub(super) const F_SETFL: u64 = 4;
    pub(super) const F_GETLK: u64 = 5;
    pub(super) const F_SETLK: u64 = 6;
    pub(super) const F_SETLKW: u64 = 7;
    pub(super) const F_SETOWN: u64 = 8;
    pub(super) const F_GETOWN: u64 = 9;
    pub(super) const F_SETSIG: u64 = 10;
    pub(super) const F_GETSIG: u64 = 11;
    pub(super) const F_OFD_GETLK: u64 = 36;
    pub(super) const F_OFD_SETLK: u64 = 37;
    pub(super) const F_OFD_SETLKW: u64 = 38;
    pub(super) const F_SETLEASE: u64 = 1024;
    pub(super) const F_GETLEASE: u64 = 1025;
    pub(super) const F_DUPFD_CLOEXEC: u64 = 1030;
    pub(super) const F_SETPIPE_SZ: u64 = 1031;
    pub(super) const F_GETPIPE_SZ: u64 = 1032;
    pub(super) const F_ADD_SEALS: u64 = 1033;
    pub(super) const F_GET_SEALS: u64 = 1034;
}

/// `FD_CLOEXEC`.
const FD_CLOEXEC: u64 = 1;
/// `F_UNLCK` (`struct flock::l_type`).
const F_UNLCK: i16 = 2;
/// `DT_CHR`.
const DT_CHR: u8 = 2;
/// `DT_BLK`.
const DT_BLK: u8 = 6;
/// `SEEK_DATA` and `SEEK_HOLE`.
const SEEK_DATA: u32 = 3;
const SEEK_HOLE: u32 = 4;

/// The fd argument of a system call (C `int`).
pub(crate) fn fd_arg(a: u64) -> i32 {
    a as i32
}

/// A file offset argument: `EINVAL` if negative.
fn offset_arg(a: u64) -> Result<u64, Errno> {
    if (a as i64) < 0 {
        Err(Errno::EINVAL)
    } else {
        Ok(a)
    }
}

/// `read(fd, buf, count)`.
pub(crate) fn sys_read(fd: u64, buf: u64, count: u64) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    read_user(&f, &UserBuf::single(buf, count), None)
}

/// `write(fd, buf, count)`.
pub(crate) fn sys_write(fd: u64, buf: u64, count: u64) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    write_user(&f, &UserBuf::single(buf, count), None)
}

/// `readv(fd, iov, iovcnt)`.
pub(crate) fn sys_readv(fd: u64, iov: u64, cnt: u64) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    read_user(&f, &UserBuf::iovec(iov, cnt)?, None)
}

/// `writev(fd, iov, iovcnt)`.
pub(crate) fn sys_writev(fd: u64, iov: u64, cnt: u64) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    write_user(&f, &UserBuf::iovec(iov, cnt)?, None)
}

/// The offset of a positional call: pipes and the console cannot seek.
fn positional(f: &OpenFile, off: u64) -> Result<Option<u64>, Errno> {
    let off = offset_arg(off)?;
    if f.is_stream() {
        return Err(Errno::ESPIPE);
    }
    Ok(Some(off))
}

/// `pread64(fd, buf, count, offset)`.
pub(crate) fn sys_pread64(fd: u64, buf: u64, count: u64, off: u64) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    if !f.readable() {
        return Err(Errno::EBADF);
    }
    read_user(&f, &UserBuf::single(buf, count), positional(&f, off)?)
}

/// `pwrite64(fd, buf, count, offset)`.
pub(crate) fn sys_pwrite64(fd: u64, buf: u64, count: u64, off: u64) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    if !f.writable() {
        return Err(Errno::EBADF);
    }
    write_user(&f, &UserBuf::single(buf, count), positional(&f, off)?)
}

/// `preadv(fd, iov, iovcnt, offset)` (and `preadv2`: offset -1 = the file offset).
pub(crate) fn sys_preadv(fd: u64, iov: u64, cnt: u64, off: u64, v2: bool) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    if !f.readable() {
        return Err(Errno::EBADF);
    }
    let ub = UserBuf::iovec(iov, cnt)?;
    let off = if v2 && off as i64 == -1 {
        None
    } else {
        positional(&f, off)?
    };
    read_user(&f, &ub, off)
}

/// `pwritev(fd, iov, iovcnt, offset)` (and `pwritev2`: offset -1 = the file offset).
pub(crate) fn sys_pwritev(fd: u64, iov: u64, cnt: u64, off: u64, v2: bool) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    if !f.writable() {
        return Err(Errno::EBADF);
    }
    let ub = UserBuf::iovec(iov, cnt)?;
    let off = if v2 && off as i64 == -1 {
        None
    } else {
        positional(&f, off)?
    };
    write_user(&f, &ub, off)
}

/// `lseek(fd, offset, whence)`.
pub(crate) fn sys_lseek(fd: u64, off: u64, wh: u64) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    let off = off as i64;
    let wh = u32::try_from(wh).map_err(|_| Errno::EINVAL)?;
    match &f.kind {
        Kind::Node { h, dir: true, .. } => {
            let h = *h;
            fs::with(|fs| fs.lseek(h, off, wh))
        }
        Kind::Node { h, .. } => {
            let h = *h;
            let mut pos = f.pos();
            let size = fs::with(|fs| fs.fstat(h))?.size;
            let base = match wh {
                whence::SEEK_SET => 0,
                whence::SEEK_CUR => *pos,
                whence::SEEK_END => size,
                SEEK_DATA | SEEK_HOLE => {
                    if off < 0 || off as u64 >= size {
                        return Err(Errno::ENXIO);
                    }
                    let new = if wh == SEEK_DATA { off as u64 } else { size };
                    *pos = new;
                    return Ok(new);
                }
                _ => return Err(Errno::EINVAL),
            };
            // Beyond i64::MAX is EINVAL, as on Linux (where the sum wraps negative).
            let new = i64::try_from(base)
                .ok()
                .and_then(|b| b.checked_add(off))
                .ok_or(Errno::EINVAL)?;
            if new < 0 {
                return Err(Errno::EINVAL);
            }
            *pos = new as u64;
            Ok(new as u64)
        }
        Kind::PipeRead(_) | Kind::PipeWrite(_) | Kind::Console { .. } => Err(Errno::ESPIPE),
        Kind::Object(o) => o.lseek(&f, off, wh),
        Kind::Dev { .. } => {
            if wh > whence::SEEK_END {
                return Err(Errno::EINVAL);
            }
            Ok(0)
        }
    }
}

/// `close(fd)`.
pub(crate) fn sys_close(fd: u64) -> SysResult {
    let f = current_process().files.lock().take(fd_arg(fd))?;
    // The description closes (if this was its last descriptor) after the table lock.
    drop(f);
    Ok(0)
}

/// `close_range(first, last, flags)`.
pub(crate) fn sys_close_range(first: u64, last: u64, flags: u64) -> SysResult {
    const UNSHARE: u64 = 2;
    const CLOEXEC: u64 = 4;
    let (first, last) = (first as u32, last as u32);
    if flags & !(UNSHARE | CLOEXEC) != 0 || first > last {
        return Err(Errno::EINVAL);
    }
    let closed = current_process().files.lock().close_range(
        first as usize,
        last as usize,
        flags & CLOEXEC != 0,
    );
    drop(closed);
    Ok(0)
}

/// `dup(fd)`.
pub(crate) fn sys_dup(fd: u64) -> SysResult {
    let p = current_process();
    let mut t = p.files.lock();
    let f = t.get(fd_arg(fd))?;
    t.alloc(f, false, 0, nofile(&p)).map(|fd| fd as u64)
}

/// `dup2(old, new)` and `dup3(old, new, flags)`.
pub(crate) fn sys_dup3(old: u64, new: u64, flags: u64, three: bool) -> SysResult {
    let (old, new) = (fd_arg(old), fd_arg(new));
    if three && (flags & !u64::from(fl::O_CLOEXEC) != 0 || old == new) {
        return Err(Errno::EINVAL);
    }
    let p = current_process();
    let mut t = p.files.lock();
    let f = t.get(old)?;
    if old == new {
        return Ok(new as u64);
    }
    let new_idx = usize::try_from(new).map_err(|_| Errno::EBADF)?;
    let prev = t.put(
        new_idx,
        f,
        flags & u64::from(fl::O_CLOEXEC) != 0,
        nofile(&p),
    )?;
    drop(t);
    drop(prev);
    Ok(new as u64)
}

/// `fcntl(fd, cmd, arg)`.
pub(crate) fn sys_fcntl(fd: u64, cmd: u64, arg: u64) -> SysResult {
    use fcntl_cmd::*;
    let fd = fd_arg(fd);
    let p = current_process();
    let f = p.files.lock().get(fd)?;
    match cmd {
        F_DUPFD | F_DUPFD_CLOEXEC => {
            let min = usize::try_from(arg as i32).map_err(|_| Errno::EINVAL)?;
            let limit = nofile(&p);
            if min >= limit {
                return Err(Errno::EINVAL);
            }
            let r = p.files.lock().alloc(f, cmd == F_DUPFD_CLOEXEC, min, limit);
            r.map(|fd| fd as u64)
        }
        F_GETFD => Ok(if p.files.lock().cloexec(fd)? {
            FD_CLOEXEC
        } else {
            0
        }),
        F_SETFD => {
            p.files.lock().set_cloexec(fd, arg & FD_CLOEXEC != 0)?;
            Ok(0)
        }
        F_GETFL => Ok(u64::from(f.flags())),
        F_SETFL => {
            f.set_status_flags(arg as u32);
            Ok(0)
        }
        F_GETLK => super::locks::fcntl(&f, LockCmd::Get, false, arg),
        F_SETLK => super::locks::fcntl(&f, LockCmd::Set, false, arg),
        F_SETLKW => super::locks::fcntl(&f, LockCmd::SetWait, false, arg),
        F_OFD_GETLK => super::locks::fcntl(&f, LockCmd::Get, true, arg),
        F_OFD_SETLK => super::locks::fcntl(&f, LockCmd::Set, true, arg),
        F_OFD_SETLKW => super::locks::fcntl(&f, LockCmd::SetWait, true, arg),
        F_SETOWN | F_SETSIG | F_SETLEASE => Ok(0),
        F_GETOWN | F_GETSIG => Ok(0),
        F_GETLEASE => Ok(F_UNLCK as u64),
        F_SETPIPE_SZ | F_GETPIPE_SZ => match f.kind {
            Kind::PipeRead(_) | Kind::PipeWrite(_) => {
                if cmd == F_SETPIPE_SZ && arg > 1024 * 1024 {
                    return Err(Errno::EPERM);
                }
                Ok(PIPE_SIZE as u64)
            }
            _ => Err(Errno::EBADF),
        },
        F_ADD_SEALS => super::memfd::add_seals(&f, arg),
        F_GET_SEALS => super::memfd::get_seals(&f),
        _ => Err(Errno::EINVAL),
    }
}

/// `pipe2(fds, flags)` (and `pipe`: flags 0).
pub(crate) fn sys_pipe2(fds: u64, flags: u64) -> SysResult {
    let allowed = fl::O_CLOEXEC | fl::O_NONBLOCK | fl::O_DIRECT;
    let flags = u32::try_from(flags).map_err(|_| Errno::EINVAL)?;
    if flags & !allowed != 0 {
        return Err(Errno::EINVAL);
    }
    let pipe = Pipe::new(wall_now());
    let status = flags & fl::O_NONBLOCK;
    let r = OpenFile::new(Kind::PipeRead(pipe.clone()), oflag::O_RDONLY | status);
    let w = OpenFile::new(Kind::PipeWrite(pipe), oflag::O_WRONLY | status);
    let cloexec = flags & fl::O_CLOEXEC != 0;
    let p = current_process();
    let limit = nofile(&p);
    let (rfd, wfd) = {
        let mut t = p.files.lock();
        let rfd = t.alloc(r, cloexec, 0, limit)?;
        match t.alloc(w, cloexec, 0, limit) {
            Ok(wfd) => (rfd, wfd),
            Err(e) => {
                let r = t.take(rfd);
                drop(t);
                drop(r);
                return Err(e);
            }
        }
    };
    if let Err(e) = write_val(fds, &[rfd, wfd]) {
        let (r, w) = {
            let mut t = p.files.lock();
            (t.take(rfd), t.take(wfd))
        };
        drop((r, w));
        return Err(e);
    }
    Ok(0)
}

/// `ioctl(fd, cmd, arg)`.
pub(crate) fn sys_ioctl(fd: u64, cmd: u64, arg: u64) -> SysResult {
    let fd = fd_arg(fd);
    let p = current_process();
    let f = p.files.lock().get(fd)?;
    let cmd = cmd & 0xffff_ffff;
    match cmd {
        ioc::FIOCLEX | ioc::FIONCLEX => {
            p.files.lock().set_cloexec(fd, cmd == ioc::FIOCLEX)?;
            Ok(0)
        }
        ioc::FIONBIO => {
            let on: i32 = read_val(arg)?;
            let flags = f.flags();
            let new = if on != 0 {
                flags | fl::O_NONBLOCK
            } else {
                flags & !fl::O_NONBLOCK
            };
            f.set_status_flags(new);
            Ok(0)
        }
        ioc::FIOASYNC => {
            let _on: i32 = read_val(arg)?;
            Ok(0)
        }
        ioc::FIONREAD => {
            let n: usize = match &f.kind {
                Kind::PipeRead(pipe) => pipe.available(),
                Kind::Console { .. } => tty::console_available(),
                Kind::Node { h, dir: false, .. } => {
                    let h = *h;
                    let pos = *f.pos();
                    let size = fs::with(|fs| fs.fstat(h))?.size;
                    usize::try_from(size.saturating_sub(pos)).unwrap_or(i32::MAX as usize)
                }
                Kind::Object(o) => o.available().ok_or(Errno::ENOTTY)?,
                _ => return Err(Errno::ENOTTY),
            };
            write_val(arg, &(n.min(i32::MAX as usize) as i32))?;
            Ok(0)
        }
        _ => match &f.kind {
            Kind::Console { tty: true, .. } => tty::tty_ioctl(cmd, arg),
            Kind::Object(o) => o.ioctl(&f, cmd, arg),
            _ => Err(Errno::ENOTTY),
        },
    }
}

/// `fstat(fd, buf)`.
pub(crate) fn sys_fstat(fd: u64, buf: u64) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    write_val(buf, &fstat(&f)?.to_linux())?;
    Ok(0)
}

/// Rewrites `linux_dirent64` records in place: device nodes get `DT_CHR`, and with `old`
/// the records become the old `linux_dirent` layout (same sizes).
fn fix_dirents(buf: &mut [u8], old: bool) {
    let mut pos = 0;
    while pos + DIRENT64_HEADER <= buf.len() {
        let ino = u64::from_le_bytes(buf[pos..pos + 8].try_into().unwrap_or([0; 8]));
        let reclen = usize::from(u16::from_le_bytes([buf[pos + 16], buf[pos + 17]]));
        if reclen < DIRENT64_HEADER + 1 || pos + reclen > buf.len() {
            break;
        }
        let rec = &mut buf[pos..pos + reclen];
        let mut ty = rec[18];
        if ty == dt::DT_REG {
            match dev::node(ino) {
                Some(d) if d.is_block() => ty = DT_BLK,
                Some(_) => ty = DT_CHR,
                None => {}
            }
        }
        if old {
            // linux_dirent: ino, off, reclen, name (NUL-terminated), padding, type last.
            let name_len = rec[DIRENT64_HEADER..]
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(0);
            rec.copy_within(DIRENT64_HEADER..DIRENT64_HEADER + name_len, 18);
            rec[18 + name_len..].fill(0);
            rec[reclen - 1] = ty;
        } else {
            rec[18] = ty;
        }
        pos += reclen;
    }
}

/// `getdents64(fd, buf, count)` (and `getdents` with `old`).
pub(crate) fn sys_getdents(fd: u64, buf: u64, count: u64, old: bool) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    if let Some(d) = crate::linux::procfs::object::dir_of(&f) {
        let cap = (count as u32 as usize).min(64 * 1024);
        let mut kb = kbuf(cap)?;
        let n = d.getdents(&f, &mut kb)?;
        fix_dirents(&mut kb[..n], old);
        copy_to_user(buf, &kb[..n])?;
        return Ok(n as u64);
    }
    let Kind::Node { h, dir, .. } = f.kind else {
        return Err(Errno::ENOTDIR);
    };
    if !dir {
        return Err(Errno::ENOTDIR);
    }
    let cap = (count as u32 as usize).min(64 * 1024);
    let mut kb = kbuf(cap)?;
    let (n, cookie) = {
        // Serializes listings that share this description.
        let _pos = f.pos();
        fs::with(|fs| {
            let cookie = fs.lseek(h, 0, whence::SEEK_CUR)?;
            Ok::<_, Errno>((fs.getdents64(h, &mut kb)?, cookie))
        })?
    };
    fix_dirents(&mut kb[..n], old);
    if let Err(e) = copy_to_user(buf, &kb[..n]) {
        let _ = fs::with(|fs| fs.lseek(h, cookie as i64, whence::SEEK_SET));
        return Err(e);
    }
    Ok(n as u64)
}

/// `ftruncate(fd, length)`.
pub(crate) fn sys_ftruncate(fd: u64, len: u64) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    let len = offset_arg(len)? as i64;
    match f.kind {
        Kind::Node {
            h, ino, dir: false, ..
        } if f.writable() => {
            fs::with(|fs| {
                super::memfd::check_resize(ino, fs.fstat(h)?.size, len as u64)?;
                fs.ftruncate(h, len)
            })?;
            crate::linux::memory::file_shrunk(ino);
            super::inotify::on_inode(ino, super::inotify::inm::IN_MODIFY, false);
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// `fallocate(fd, mode, offset, len)`: mode 0 only (extends the file with zeros).
pub(crate) fn sys_fallocate(fd: u64, mode: u64, off: u64, len: u64) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    if !f.writable() {
        return Err(Errno::EBADF);
    }
    let (off, len) = (off as i64, len as i64);
    if off < 0 || len <= 0 {
        return Err(Errno::EINVAL);
    }
    if mode != 0 {
        return Err(Errno::ENOTSUP);
    }
    let end = off.checked_add(len).ok_or(Errno::EFBIG)?;
    match f.kind {
        Kind::Node {
            h, ino, dir: false, ..
        } => {
            fs::with(|fs| {
                let size = fs.fstat(h)?.size;
                if size < end as u64 {
                    super::memfd::check_resize(ino, size, end as u64)?;
                    fs.ftruncate(h, end)?;
                }
                Ok::<_, Errno>(())
            })?;
            Ok(0)
        }
        Kind::Node { dir: true, .. } => Err(Errno::EISDIR),
        Kind::PipeRead(_) | Kind::PipeWrite(_) => Err(Errno::ESPIPE),
        _ => Err(Errno::ENODEV),
    }
}

/// `fsync`, `fdatasync`, `syncfs`, `flock`-like calls that only need a valid descriptor.
pub(crate) fn sys_fd_noop(fd: u64) -> SysResult {
    fd_file(fd_arg(fd))?;
    Ok(0)
}

/// `fsync(fd)` and `fdatasync(fd)`: a volume file or directory is flushed on the host
/// (other files live in guest memory: nothing to do).
pub(crate) fn sys_fsync(fd: u64) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    match &f.kind {
        Kind::Node { ino, .. } => fs::with(|fs| fs.fsync(*ino))?,
        Kind::Object(o) => {
            if let Some(b) = o.as_any().downcast_ref::<super::blockdev::BlockFile>() {
                b.flush()?;
            }
        }
        _ => {}
    }
    Ok(0)
}

/// `flock(fd, operation)` (`locks.rs`).
pub(crate) fn sys_flock(fd: u64, op: u64) -> SysResult {
    super::locks::flock(&*fd_file(fd_arg(fd))?, op)
}

/// `fadvise64(fd, offset, len, advice)`: validated and ignored.
pub(crate) fn sys_fadvise64(fd: u64, advice: u64) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    if matches!(f.kind, Kind::PipeRead(_) | Kind::PipeWrite(_)) {
        return Err(Errno::ESPIPE);
    }
    if advice > 5 {
        return Err(Errno::EINVAL);
    }
    Ok(0)
}

/// The inode an fd-based metadata call acts on (`None` for pipes).
fn meta_ino(f: &OpenFile) -> Result<Option<Ino>, Errno> {
    if f.is_path() {
        return Err(Errno::EBADF);
    }
    Ok(f.ino())
}

/// `fchmod(fd, mode)`.
pub(crate) fn sys_fchmod(fd: u64, mode: u64) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    if let Some(ino) = meta_ino(&f)? {
        fs::with(|fs| fs.chmod_ino(ino, mode as u32 & 0o7777))?;
        let dir = f.dir_ino().is_some();
        super::inotify::on_inode(ino, super::inotify::inm::IN_ATTRIB, dir);
    }
    Ok(0)
}

/// `fchown(fd, uid, gid)`.
pub(crate) fn sys_fchown(fd: u64, uid: u64, gid: u64) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    if let Some(ino) = meta_ino(&f)? {
        super::path::chown_ino(ino, uid as u32, gid as u32)?;
    }
    Ok(0)
}

/// `fchdir(fd)`.
pub(crate) fn sys_fchdir(fd: u64) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    if let Some(d) = crate::linux::procfs::object::dir_of(&f) {
        return crate::linux::procfs::chdir_synthetic(d.kind, d.comps.clone());
    }
    let ino = f.dir_ino().ok_or(Errno::ENOTDIR)?;
    fs::with(|fs| fs.may(ino, crate::fs::perm::access::X))?;
    current_process().fs.lock().set(ino);
    Ok(0)
}

/// `fstatfs(fd, buf)`.
pub(crate) fn sys_fstatfs(fd: u64, buf: u64) -> SysResult {
    let f = fd_file(fd_arg(fd))?;
    let b = crate::linux::procfs::object::kind_of(&f).map_or_else(
        super::path::statfs_bytes,
        crate::linux::procfs::statfs_bytes,
    );
    write_val(buf, &b)?;
    Ok(0)
}

/// `sendfile(out_fd, in_fd, offset, count)`: copies from a file to any writable descriptor.
pub(crate) fn sys_sendfile(out_fd: u64, in_fd: u64, offp: u64, count: u64) -> SysResult {
    let fin = fd_file(fd_arg(in_fd))?;
    let fout = fd_file(fd_arg(out_fd))?;
    if !fin.readable() || !fout.writable() {
        return Err(Errno::EBADF);
    }
    if !matches!(fin.kind, Kind::Node { dir: false, .. } | Kind::Dev { .. }) {
        return Err(Errno::EINVAL);
    }
    if fout.flags() & oflag::O_APPEND != 0 {
        return Err(Errno::EINVAL);
    }
    let mut off = if offp != 0 {
        let o: i64 = read_val(offp)?;
        Some(offset_arg(o as u64)?)
    } else {
        None
    };
    let count = usize::try_from(count).unwrap_or(MAX_RW).min(MAX_RW);
    let mut buf = kbuf(count.min(64 * 1024))?;
    let mut done = 0usize;
    let mut failure = None;
    while done < count {
        let want = (count - done).min(buf.len());
        let n = match read_kernel(&fin, &mut buf[..want], off) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        let mut w = 0;
        while w < n {
            match write_kernel(&fout, &buf[w..n], None, false) {
                Ok(0) => break,
                Ok(k) => w += k,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // Bytes read but not written go back to the input.
        match off.as_mut() {
            Some(o) => *o += w as u64,
            None => fin.rewind(n - w),
        }
        done += w;
        if w < n {
            break;
        }
    }
    if let Some(o) = off {
        write_val(offp, &(o as i64))?;
    }
    match failure {
        Some(e) if done == 0 => Err(e),
        _ => Ok(done as u64),
    }
}

/// True if `fd` is open on `/dev/zero` (whose shared mappings are shared anonymous memory).
pub(crate) fn is_dev_zero(fd: i32) -> bool {
    fd_file(fd).is_ok_and(|f| {
        matches!(
            f.kind,
            Kind::Dev {
                dev: super::dev::Dev::Zero,
                ..
            }
        )
    })
}

/// What a file mapping maps (see [`mmap_file`]).
pub(crate) enum MmapSource {
    /// A regular file of the filesystem (its pages come from the page cache).
    Node(Ino),
    /// A file object whose bytes live in a page-cache object (`FileObject::pages`).
    Pages(alloc::sync::Arc<crate::fs::pagecache::PageObject>),
}

/// What a file mapping of descriptor `fd` maps and whether `fd` is open for writing;
/// `None` for anything a mapping copies through [`read_fd_at`] (devices). `EACCES` unless
/// open for reading, as Linux.
pub(crate) fn mmap_file(fd: i32) -> Result<Option<(MmapSource, bool)>, Errno> {
    let f = fd_file(fd)?;
    let source = match &f.kind {
        Kind::Node {
            ino, dir: false, ..
        } => MmapSource::Node(*ino),
        Kind::Object(o) => match o.pages() {
            Some(p) => MmapSource::Pages(p),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    if !f.readable() {
        return Err(Errno::EACCES);
    }
    Ok(Some((source, f.writable())))
}

/// The name `/proc/PID/maps` shows for a mapping of descriptor `fd`, and the inode number:
/// the path it was opened by (a memfd's `/memfd:NAME (deleted)`), else its link name.
pub(crate) fn map_name(fd: i32) -> Option<(alloc::sync::Arc<[u8]>, u64)> {
    let f = fd_file(fd).ok()?;
    match &f.kind {
        Kind::Node { ino, .. } => {
            let name = super::memfd::link_name(*ino).or_else(|| f.path().map(<[u8]>::to_vec))?;
            Some((name.into(), *ino))
        }
        Kind::Object(o) => Some((o.link_name().into(), o.stat().st.ino)),
        _ => None,
    }
}

/// Reads a regular file's bytes at `off` through descriptor `fd` without moving its offset
/// (for file mappings). `EACCES` unless open for reading, `ENODEV` for pipes and terminals;
/// `/dev/zero` reads zeros.
pub(crate) fn read_fd_at(fd: i32, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    let f = fd_file(fd)?;
    if !f.readable() {
        return Err(Errno::EACCES);
    }
    match f.kind {
        Kind::Node { dir: false, .. } | Kind::Dev { .. } => read_kernel(&f, buf, Some(off)),
        Kind::Node { dir: true, .. } => Err(Errno::ENODEV),
        _ => Err(Errno::ENODEV),
    }
}
