//! The guest side of the host share (`pvmux run --rootfs DIR`, docs/ABI.md §hostfs): the
//! `HostfsList` / `HostfsRead` / `HostfsLookup` hypercalls as the [`HostShare`] behind the lazy nodes of
//! [`super::ramfs`]. Every failure of the host is `EIO` to the filesystem.
//!
//! The calls run under the filesystem lock (events disabled, like every hypercall); one
//! call moves at most `HostfsRead`'s limit, so the time is bounded per call.

use alloc::vec::Vec;

use pvmux_hypercalls::hostfs::{LIST_MAX_BUF, PATH_MAX, READ_MAX};
use pvmux_hypercalls::HcError;

use super::ramfs::HostShare;
use super::Errno;
use crate::hcall;

/// The host's share, reached by hypercalls.
pub(crate) struct Share;

impl HostShare for Share {
    fn list(&self, path: &[u8], cookie: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        list(path, cookie, buf)
    }

    fn read(&self, path: &[u8], off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        read(path, off, buf)
    }

    fn read_frames(
        &self,
        path: &[u8],
        off: u64,
        frames_gpa: u64,
        copy: &mut [u8],
    ) -> Result<usize, Errno> {
        read_frames(path, off, frames_gpa, copy)
    }

    fn lookup(&self, path: &[u8], buf: &mut [u8]) -> Result<usize, Errno> {
        lookup(path, buf)
    }
}

/// Largest bounce buffer used when the caller's buffer is not in the direct map.
const BOUNCE_MAX: usize = 64 << 10;

/// Guest-physical address of `bytes` (heap and image memory are in the direct map or the
/// image; anything else is not passed to the host).
fn gpa_of(bytes: &[u8]) -> Option<u64> {
    crate::boot::virt_to_phys(bytes.as_ptr() as u64, bytes.len() as u64)
}

/// The path as a buffer the host can read (a heap copy if `path` is elsewhere).
pub(crate) fn with_path<R>(
    path: &[u8],
    f: impl FnOnce(u64) -> Result<R, Errno>,
) -> Result<R, Errno> {
    if path.len() as u64 > PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if let Some(gpa) = gpa_of(path) {
        return f(gpa);
    }
    let mut copy = Vec::new();
    copy.try_reserve_exact(path.len())
        .map_err(|_| Errno::ENOMEM)?;
    copy.extend_from_slice(path);
    f(gpa_of(&copy).ok_or(Errno::EIO)?)
}

fn result(ret: Result<u64, HcError>) -> Result<usize, Errno> {
    ret.ok()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or(Errno::EIO)
}

/// `HostfsList(path, cookie)` into `buf` (at most `LIST_MAX_BUF` bytes of it are used).
fn list(path: &[u8], cookie: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    let len = buf.len().min(LIST_MAX_BUF as usize);
    let buf = &mut buf[..len];
    let bgpa = gpa_of(buf).ok_or(Errno::EIO)?;
    with_path(path, |pgpa| {
        let n = result(hcall::hostfs_list(
            pgpa,
            path.len() as u64,
            bgpa,
            len as u64,
            cookie,
        ))?;
        if n > len {
            return Err(Errno::EIO);
        }
        Ok(n)
    })
}

/// `HostfsLookup(path)` into `buf` (at most `LIST_MAX_BUF` bytes of it are used): the
/// record's bytes, 0 for no such entry; `ENOSYS` from a host without the call.
fn lookup(path: &[u8], buf: &mut [u8]) -> Result<usize, Errno> {
    let len = buf.len().min(LIST_MAX_BUF as usize);
    let buf = &mut buf[..len];
    let bgpa = gpa_of(buf).ok_or(Errno::EIO)?;
    with_path(path, |pgpa| {
        let n = match hcall::hostfs_lookup(pgpa, path.len() as u64, bgpa, len as u64) {
            Err(HcError::UnknownCall) => return Err(Errno::ENOSYS),
            r => result(r)?,
        };
        if n > len {
            return Err(Errno::EIO);
        }
        Ok(n)
    })
}

/// `HostfsRead(path, off)` into `buf`: one call (a short read is possible).
fn read(path: &[u8], off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    let len = buf.len().min(READ_MAX as usize);
    if len == 0 {
        return Ok(0);
    }
    if let Some(bgpa) = gpa_of(&buf[..len]) {
        return read_gpa(path, off, (bgpa, len), 0);
    }
    // A buffer outside the direct map (a kernel stack, say): bounce through the heap.
    let len = len.min(BOUNCE_MAX);
    let mut bounce = Vec::new();
    bounce.try_reserve_exact(len).map_err(|_| Errno::ENOMEM)?;
    bounce.resize(len, 0);
    let n = read_gpa(path, off, (gpa_of(&bounce).ok_or(Errno::EIO)?, len), 0)?;
    buf[..n].copy_from_slice(&bounce[..n]);
    Ok(n)
}

/// `HostfsRead(path, off)` into the pool frames at `frames_gpa` and `copy` (its copy
/// argument) in one call: the host writes both (a short read is possible).
fn read_frames(path: &[u8], off: u64, frames_gpa: u64, copy: &mut [u8]) -> Result<usize, Errno> {
    let len = copy.len().min(READ_MAX as usize);
    if len == 0 {
        return Ok(0);
    }
    match gpa_of(&copy[..len]) {
        Some(cgpa) => read_gpa(path, off, (frames_gpa, len), cgpa),
        None => {
            let n = read(path, off, copy)?;
            crate::mm::pool_mem::write(frames_gpa, &copy[..n]);
            Ok(n)
        }
    }
}

/// `HostfsRead(path, off)` into guest memory `(gpa, len)` (and `copy_gpa` if not 0).
fn read_gpa(
    path: &[u8],
    off: u64,
    (gpa, len): (u64, usize),
    copy_gpa: u64,
) -> Result<usize, Errno> {
    with_path(path, |pgpa| {
        let n = result(hcall::hostfs_read(
            pgpa,
            path.len() as u64,
            off,
            (gpa, len as u64),
            copy_gpa,
        ))?;
        if n > len {
            return Err(Errno::EIO);
        }
        Ok(n)
    })
}

/// Whether the host has a share for this tenant (a list call past the end of `/`).
pub(crate) fn present() -> bool {
    let mut buf = alloc::vec![0u8; 64];
    list(b"/", u64::MAX, &mut buf).is_ok()
}
