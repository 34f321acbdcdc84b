//! In-kernel copies between descriptors: `copy_file_range`, `splice`, `tee`, `vmsplice`
//! (`sendfile` is in [`super::fdops`]).
//!
//! Everything is a copy through a kernel bounce buffer (there are no page references to move
//! between pipes and files): `splice` file→pipe reads the file and writes the pipe, giving
//! back (not advancing over) what the pipe did not take; pipe→file and pipe→pipe read the pipe
//! and write the rest; `tee` copies what a pipe holds without taking it; `vmsplice` is
//! `writev`/`readv` on the pipe.

#![deny(unsafe_code)]

use alloc::sync::Arc;

use super::fdops::fd_arg;
use super::file::{kbuf, read_kernel, read_user, write_kernel, write_user, Kind, OpenFile};
use super::file::{UserBuf, MAX_RW};
use super::pipe::Pipe;
use super::poll::{self, Waited};
use crate::fs::ramfs::oflag;
use crate::fs::Errno;
use crate::linux::uaccess::{read_val, write_val};
use crate::linux::SysResult;

/// Bounce-buffer size.
const CHUNK: usize = 64 * 1024;
/// `splice` flags.
const SPLICE_F_NONBLOCK: u64 = 2;
const SPLICE_F_ALL: u64 = 0xf;

/// Reads the offset at `va` (if non-zero): `EINVAL` if negative.
fn read_off(va: u64) -> Result<Option<u64>, Errno> {
    if va == 0 {
        return Ok(None);
    }
    let o: i64 = read_val(va)?;
    if o < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(Some(o as u64))
}

/// True for a regular file.
fn is_regular(f: &OpenFile) -> bool {
    matches!(f.kind, Kind::Node { dir: false, .. })
}

/// `copy_file_range(fd_in, off_in, fd_out, off_out, len, flags)`.
pub(crate) fn sys_copy_file_range(a: [u64; 6]) -> SysResult {
    let [in_fd, off_in_va, out_fd, off_out_va, len, flags] = a;
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    let fin = super::fd_file(fd_arg(in_fd))?;
    let fout = super::fd_file(fd_arg(out_fd))?;
    if !fin.readable() || !fout.writable() || fout.flags() & oflag::O_APPEND != 0 {
        return Err(Errno::EBADF);
    }
    if matches!(fin.kind, Kind::Node { dir: true, .. })
        || matches!(fout.kind, Kind::Node { dir: true, .. })
    {
        return Err(Errno::EISDIR);
    }
    if !is_regular(&fin) || !is_regular(&fout) {
        return Err(Errno::EINVAL);
    }
    let off_in = read_off(off_in_va)?;
    let off_out = read_off(off_out_va)?;
    let mut pos_in = off_in.unwrap_or_else(|| *fin.pos());
    let mut pos_out = off_out.unwrap_or_else(|| *fout.pos());
    let len = usize::try_from(len).unwrap_or(MAX_RW).min(MAX_RW);
    if fin.ino() == fout.ino() {
        // The same file: overlapping ranges are EINVAL.
        let (a0, b0) = (pos_in, pos_out);
        let l = len as u64;
        if a0 < b0.saturating_add(l) && b0 < a0.saturating_add(l) {
            return Err(Errno::EINVAL);
        }
    }
    let mut buf = kbuf(len.min(CHUNK))?;
    let mut done = 0usize;
    let mut failure = None;
    while done < len {
        let want = (len - done).min(buf.len());
        let n = match read_kernel(&fin, &mut buf[..want], Some(pos_in)) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        let w = match write_kernel(&fout, &buf[..n], Some(pos_out), false) {
            Ok(w) => w,
            Err(e) => {
                failure = Some(e);
                0
            }
        };
        pos_in += w as u64;
        pos_out += w as u64;
        done += w;
        if w < n {
            break;
        }
    }
    if done == 0 {
        if let Some(e) = failure {
            return Err(e);
        }
    }
    match off_in {
        Some(_) => write_val(off_in_va, &(pos_in as i64))?,
        None => *fin.pos() = pos_in,
    }
    match off_out {
        Some(_) => write_val(off_out_va, &(pos_out as i64))?,
        None => *fout.pos() = pos_out,
    }
    Ok(done as u64)
}

/// The pipe behind a read end.
fn read_pipe(f: &OpenFile) -> Option<&Arc<Pipe>> {
    match &f.kind {
        Kind::PipeRead(p) => Some(p),
        _ => None,
    }
}

/// The pipe behind a write end.
fn write_pipe(f: &OpenFile) -> Option<&Arc<Pipe>> {
    match &f.kind {
        Kind::PipeWrite(p) => Some(p),
        _ => None,
    }
}

/// True for either end of a pipe.
fn is_pipe(f: &OpenFile) -> bool {
    matches!(f.kind, Kind::PipeRead(_) | Kind::PipeWrite(_))
}

/// `splice(fd_in, off_in, fd_out, off_out, len, flags)`: one side must be a pipe.
pub(crate) fn sys_splice(a: [u64; 6]) -> SysResult {
    let [in_fd, off_in_va, out_fd, off_out_va, len, flags] = a;
    if flags & !SPLICE_F_ALL != 0 {
        return Err(Errno::EINVAL);
    }
    let fin = super::fd_file(fd_arg(in_fd))?;
    let fout = super::fd_file(fd_arg(out_fd))?;
    if !fin.readable() || !fout.writable() {
        return Err(Errno::EBADF);
    }
    let nonblock_flag = flags & SPLICE_F_NONBLOCK != 0;
    let len = usize::try_from(len).unwrap_or(MAX_RW).min(MAX_RW);
    match (read_pipe(&fin), write_pipe(&fout)) {
        (Some(pin), Some(pout)) => {
            if off_in_va != 0 || off_out_va != 0 {
                return Err(Errno::ESPIPE);
            }
            if Arc::ptr_eq(pin, pout) {
                return Err(Errno::EINVAL);
            }
            if len == 0 {
                return Ok(0);
            }
            // Take at most what the output can hold now, so nothing read is lost.
            let room = wait_room(pout, nonblock_flag || fout.nonblock())?;
            let mut buf = kbuf(len.min(CHUNK).min(room))?;
            let n = pin.read(&mut buf, nonblock_flag || fin.nonblock())?;
            put_all(pout, &buf[..n], nonblock_flag || fout.nonblock())?;
            Ok(n as u64)
        }
        (Some(pin), None) => {
            if off_in_va != 0 {
                return Err(Errno::ESPIPE);
            }
            if fout.flags() & oflag::O_APPEND != 0 && off_out_va != 0 {
                return Err(Errno::EINVAL);
            }
            if !is_regular(&fout) && is_pipe(&fout) {
                return Err(Errno::EINVAL);
            }
            let off_out = read_off(off_out_va)?;
            if off_out.is_some() && fout.is_stream() {
                return Err(Errno::ESPIPE);
            }
            if len == 0 {
                return Ok(0);
            }
            let mut buf = kbuf(len.min(CHUNK))?;
            let n = pin.read(&mut buf, nonblock_flag || fin.nonblock())?;
            let mut w = 0;
            while w < n {
                let at = off_out.map(|o| o + w as u64);
                match write_kernel(&fout, &buf[w..n], at, false) {
                    Ok(0) => break,
                    Ok(k) => w += k,
                    Err(e) if w == 0 => return Err(e),
                    Err(_) => break,
                }
            }
            if let Some(o) = off_out {
                write_val(off_out_va, &((o + w as u64) as i64))?;
            }
            Ok(w as u64)
        }
        (None, Some(pout)) => {
            if off_out_va != 0 {
                return Err(Errno::ESPIPE);
            }
            let off_in = read_off(off_in_va)?;
            if off_in.is_some() && fin.is_stream() {
                return Err(Errno::ESPIPE);
            }
            if len == 0 {
                return Ok(0);
            }
            let nonblock = nonblock_flag || fout.nonblock();
            let room = wait_room(pout, nonblock)?;
            let mut buf = kbuf(len.min(CHUNK).min(room))?;
            let n = read_kernel(&fin, &mut buf, off_in)?;
            if n == 0 {
                return Ok(0);
            }
            let w = match pout.write(&buf[..n], nonblock, false) {
                Ok(w) => w,
                Err(e) => {
                    if off_in.is_none() {
                        fin.rewind(n);
                    }
                    return Err(e);
                }
            };
            match off_in {
                Some(o) => write_val(off_in_va, &((o + w as u64) as i64))?,
                None => fin.rewind(n - w),
            }
            Ok(w as u64)
        }
        (None, None) => Err(Errno::EINVAL),
    }
}

/// Waits until pipe `p` has room (`EAGAIN` if `nonblock`, `EINTR` on a signal; `EPIPE`
/// and `SIGPIPE` once every reader is gone), returning how many bytes fit.
fn wait_room(p: &Pipe, nonblock: bool) -> Result<usize, Errno> {
    let ready = || {
        let (room, no_readers) = p.room();
        room > 0 || no_readers
    };
    if !ready() {
        if nonblock {
            return Err(Errno::EAGAIN);
        }
        poll::wait_for(None, ready)?;
    }
    match p.room() {
        (_, true) => {
            crate::linux::signal::raise_current(crate::linux::signal::sig::SIGPIPE);
            Err(Errno::EPIPE)
        }
        (room, false) => Ok(room),
    }
}

/// True if the pipe's write end is ready (room for an atomic write, or no reader left).
fn pipe_has_room(p: &Pipe) -> bool {
    let (room, no_readers) = p.write_ready();
    room || no_readers
}

/// Writes all of `data` into `p` (blocking unless `nonblock`; a short count then).
fn put_all(p: &Pipe, data: &[u8], nonblock: bool) -> Result<usize, Errno> {
    p.write(data, nonblock, false)
}

/// `tee(fd_in, fd_out, len, flags)`: copies what pipe `fd_in` holds into pipe `fd_out`
/// without taking it.
pub(crate) fn sys_tee(in_fd: u64, out_fd: u64, len: u64, flags: u64) -> SysResult {
    if flags & !SPLICE_F_ALL != 0 {
        return Err(Errno::EINVAL);
    }
    let fin = super::fd_file(fd_arg(in_fd))?;
    let fout = super::fd_file(fd_arg(out_fd))?;
    if !fin.readable() || !fout.writable() {
        return Err(Errno::EBADF);
    }
    let (Some(pin), Some(pout)) = (read_pipe(&fin), write_pipe(&fout)) else {
        return Err(Errno::EINVAL);
    };
    if Arc::ptr_eq(pin, pout) {
        return Err(Errno::EINVAL);
    }
    let len = usize::try_from(len).unwrap_or(MAX_RW).min(MAX_RW);
    if len == 0 {
        return Ok(0);
    }
    let nonblock = flags & SPLICE_F_NONBLOCK != 0;
    // Wait for data (or the last writer leaving: 0).
    let has_data = || {
        let (data, no_writers) = pin.read_ready();
        data || no_writers
    };
    if !has_data() {
        if nonblock {
            return Err(Errno::EAGAIN);
        }
        if let Waited::Timeout = poll::wait_for(None, has_data)? {
            return Ok(0);
        }
    }
    let mut buf = kbuf(len.min(CHUNK))?;
    let n = pin.peek(&mut buf);
    if n == 0 {
        return Ok(0);
    }
    if nonblock && !pipe_has_room(pout) {
        return Err(Errno::EAGAIN);
    }
    let w = put_all(pout, &buf[..n], nonblock)?;
    Ok(w as u64)
}

/// `vmsplice(fd, iov, nr_segs, flags)`: a copy (`writev` into a pipe's write end, `readv`
/// from its read end).
pub(crate) fn sys_vmsplice(fd: u64, iov: u64, nr: u64, flags: u64) -> SysResult {
    if flags & !SPLICE_F_ALL != 0 {
        return Err(Errno::EINVAL);
    }
    let f = super::fd_file(fd_arg(fd))?;
    let ub = UserBuf::iovec(iov, nr)?;
    match f.kind {
        Kind::PipeWrite(_) => write_user(&f, &ub, None),
        Kind::PipeRead(_) => read_user(&f, &ub, None),
        _ => Err(Errno::EBADF),
    }
}
