//! A regular file's contents: bytes borrowed from the initramfs, owned, or read through
//! from the host share; reads, writes (copying borrowed or host bytes up on the first
//! write) and truncation.

use alloc::vec::Vec;

use super::host::{host_read_full, HostShare};
use super::inode::{Ino, Node};
use super::Fs;
use crate::fs::errno::Errno::{self, *};

/// Largest file size accepted (`EFBIG` above).
pub(crate) const MAX_FILE_SIZE: u64 = 1 << 40;

/// The bytes of a regular file.
pub(super) enum Data {
    /// Borrowed from memory that outlives the filesystem (the initramfs).
    Static(&'static [u8]),
    /// Owned by the filesystem.
    Owned(Vec<u8>),
    /// The first `len` bytes of host file `path` (read through, never cached).
    Host {
        /// The path within the share.
        path: Vec<u8>,
        /// Bytes the host backs (a truncate may lower it).
        len: u64,
    },
}

impl Data {
    /// Bytes stored (or backed by the host); the rest up to the size reads as zeros.
    pub(super) fn stored_len(&self) -> u64 {
        match self {
            Self::Static(s) => s.len() as u64,
            Self::Owned(v) => v.len() as u64,
            Self::Host { len, .. } => *len,
        }
    }

    /// The bytes as an owned vector (copying borrowed or host bytes once).
    pub(super) fn owned(&mut self, host: Option<&dyn HostShare>) -> Result<&mut Vec<u8>, Errno> {
        match self {
            Self::Owned(_) => {}
            Self::Static(s) => {
                let mut v = Vec::new();
                v.try_reserve_exact(s.len()).map_err(|_| ENOSPC)?;
                v.extend_from_slice(s);
                *self = Self::Owned(v);
            }
            Self::Host { path, len } => {
                let ops = host.ok_or(EIO)?;
                let len = usize::try_from(*len).map_err(|_| ENOSPC)?;
                let mut v = Vec::new();
                v.try_reserve_exact(len).map_err(|_| ENOSPC)?;
                v.resize(len, 0);
                host_read_full(ops, path, 0, &mut v)?;
                *self = Self::Owned(v);
            }
        }
        match self {
            Self::Owned(v) => Ok(v),
            _ => Err(EIO),
        }
    }
}

impl Fs {
    /// Reads at `off` from a regular file's inode.
    pub(super) fn read_at(&mut self, ino: Ino, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let now = self.now();
        let host = self.host.as_deref();
        let i = self.inodes.get_mut(&ino).ok_or(ENOENT)?;
        let Node::File { data, size } = &i.node else {
            return Err(EISDIR);
        };
        if off >= *size {
            return Ok(0);
        }
        let n = buf.len().min((*size - off).min(usize::MAX as u64) as usize);
        let start = off.min(data.stored_len());
        let stored = (data.stored_len() - start).min(n as u64) as usize;
        match data {
            Data::Static(b) => buf[..stored].copy_from_slice(&b[start as usize..][..stored]),
            Data::Owned(b) => buf[..stored].copy_from_slice(&b[start as usize..][..stored]),
            Data::Host { path, .. } => {
                host_read_full(host.ok_or(EIO)?, path, start, &mut buf[..stored])?
            }
        }
        buf[stored..n].fill(0);
        i.atime = now;
        Ok(n)
    }

    /// Writes at `off` into a regular file's inode (zero-filling any gap).
    pub(super) fn write_at(&mut self, ino: Ino, off: u64, buf: &[u8]) -> Result<usize, Errno> {
        let now = self.now();
        let end = off.checked_add(buf.len() as u64).ok_or(EFBIG)?;
        if end > MAX_FILE_SIZE {
            return Err(EFBIG);
        }
        let host = self.host.as_deref();
        let i = self.inodes.get_mut(&ino).ok_or(ENOENT)?;
        let Node::File { data, size } = &mut i.node else {
            return Err(EISDIR);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let v = data.owned(host)?;
        let (off, end) = (off as usize, end as usize);
        if v.len() < end {
            v.try_reserve(end - v.len()).map_err(|_| ENOSPC)?;
            v.resize(end, 0);
        }
        v[off..end].copy_from_slice(buf);
        *size = (*size).max(end as u64);
        i.mtime = now;
        i.ctime = now;
        Ok(buf.len())
    }

    /// Sets a regular file's size: shrinking drops bytes, growing adds zeros (not stored).
    pub(super) fn truncate_ino(&mut self, ino: Ino, len: u64) -> Result<(), Errno> {
        if len > MAX_FILE_SIZE {
            return Err(EFBIG);
        }
        let now = self.now();
        let i = self.inode_mut(ino)?;
        let Node::File { data, size } = &mut i.node else {
            return Err(EISDIR);
        };
        if len < data.stored_len() {
            match data {
                Data::Static(s) => *s = &s[..len as usize],
                Data::Owned(v) => {
                    v.truncate(len as usize);
                    v.shrink_to_fit();
                }
                Data::Host { len: l, .. } => *l = len,
            }
        }
        *size = len;
        i.mtime = now;
        i.ctime = now;
        Ok(())
    }

    /// Makes a regular file's contents `bytes` without copying them (initramfs files).
    pub(crate) fn set_static_data(&mut self, ino: Ino, bytes: &'static [u8]) -> Result<(), Errno> {
        let i = self.inode_mut(ino)?;
        let Node::File { data, size } = &mut i.node else {
            return Err(EISDIR);
        };
        *data = Data::Static(bytes);
        *size = bytes.len() as u64;
        Ok(())
    }
}
