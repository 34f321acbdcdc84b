//! Open file descriptions: [`Handle`]s with an offset and `open` flags; `open`, `close`,
//! reads and writes at the offset, `lseek`, `ftruncate`, `fstat` and `getdents64`.

use super::contents::Data;
use super::encode::{dt, put_dirent, Stat};
use super::inode::{FileType, Ino, Node};
use super::Fs;
use crate::fs::errno::Errno::{self, *};

/// Most simultaneously open handles (`EMFILE` above).
pub(crate) const MAX_HANDLES: usize = 1 << 16;

/// `open` flags (Linux x86-64 values).
pub(crate) mod oflag {
    /// Read only.
    pub(crate) const O_RDONLY: u32 = 0;
    /// Write only.
    pub(crate) const O_WRONLY: u32 = 1;
    /// Read and write.
    pub(crate) const O_RDWR: u32 = 2;
    /// Access mode mask.
    pub(crate) const O_ACCMODE: u32 = 3;
    /// Create if missing.
    pub(crate) const O_CREAT: u32 = 0o100;
    /// With `O_CREAT`: fail if it exists.
    pub(crate) const O_EXCL: u32 = 0o200;
    /// Truncate to zero on open.
    pub(crate) const O_TRUNC: u32 = 0o1000;
    /// Every write appends.
    pub(crate) const O_APPEND: u32 = 0o2000;
    /// Fail unless a directory.
    pub(crate) const O_DIRECTORY: u32 = 0o200_000;
    /// Do not follow a final symbolic link.
    pub(crate) const O_NOFOLLOW: u32 = 0o400_000;
    /// Only name the file (Linux's `O_PATH`): the file's own permission is not checked.
    pub(crate) const O_PATH: u32 = 0o10_000_000;
}

/// `lseek` whence values.
pub(crate) mod whence {
    /// From the start.
    pub(crate) const SEEK_SET: u32 = 0;
    /// From the current offset.
    pub(crate) const SEEK_CUR: u32 = 1;
    /// From the end.
    pub(crate) const SEEK_END: u32 = 2;
}

/// An open file description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Handle(u32);

/// State of one open file description.
pub(super) struct OpenFile {
    pub(super) ino: Ino,
    /// Byte offset (files) or directory cookie (directories).
    pub(super) offset: u64,
    pub(super) flags: u32,
}

impl OpenFile {
    pub(super) fn readable(&self) -> bool {
        matches!(
            self.flags & oflag::O_ACCMODE,
            oflag::O_RDONLY | oflag::O_RDWR
        )
    }
    pub(super) fn writable(&self) -> bool {
        matches!(
            self.flags & oflag::O_ACCMODE,
            oflag::O_WRONLY | oflag::O_RDWR
        )
    }
}

impl Fs {
    #[cfg(any(test, feature = "diagnostics"))]
    /// Number of open handles.
    pub(crate) fn handle_count(&self) -> usize {
        self.handles.len()
    }

    /// Opens `path` with Linux `open` flags ([`oflag`]); `perm` is the mode of a created file.
    pub(crate) fn open(
        &mut self,
        cwd: Ino,
        path: &[u8],
        flags: u32,
        perm: u32,
    ) -> Result<Handle, Errno> {
        use oflag::*;
        // Access mode 3 (`O_ACCMODE`) is allowed, as on Linux: it asks for read and write
        // permission and opens for neither (ioctl only; a directory is EISDIR below).
        let acc = flags & O_ACCMODE;
        if self.handles.len() >= MAX_HANDLES {
            return Err(EMFILE);
        }
        // The handle's map entry (a created file's inode asks for itself).
        crate::mm::heap::charge(64)?;
        let creat = flags & O_CREAT != 0;
        let excl = creat && flags & O_EXCL != 0;
        let follow = !excl && flags & O_NOFOLLOW == 0;
        let r = self.resolve_full(cwd, path, follow)?;
        // A file this open creates is not checked against its own mode (Linux).
        let checked = r.ino.is_some() && flags & O_PATH == 0;
        let ino = match r.ino {
            Some(_) if excl => return Err(EEXIST),
            Some(ino) => ino,
            None if !creat => return Err(ENOENT),
            None if r.walk.must_dir => return Err(EISDIR),
            None => self.create_at(
                r.walk,
                Node::File {
                    data: Data::empty(),
                    size: 0,
                },
                perm,
            )?,
        };
        let writes = acc != O_RDONLY || flags & O_TRUNC != 0;
        if writes && !self.is_dir(ino) && self.vol_read_only(ino) {
            return Err(EROFS);
        }
        self.vol_refresh(ino);
        let ft = self.inode(ino)?.file_type();
        match ft {
            // `O_PATH | O_NOFOLLOW` names the link itself, as Linux.
            FileType::Symlink if flags & O_PATH != 0 => {}
            FileType::Symlink => return Err(ELOOP),
            // A socket is reached with `connect`, not `open` (Linux: `ENXIO`).
            FileType::Socket => return Err(ENXIO),
            FileType::Directory if acc != O_RDONLY || creat || flags & O_TRUNC != 0 => {
                return Err(EISDIR)
            }
            FileType::Regular if flags & O_DIRECTORY != 0 => return Err(ENOTDIR),
            _ => {}
        }
        if checked {
            let want = crate::fs::perm::open_access(acc, flags & O_TRUNC != 0);
            self.may(ino, want)?;
        }
        if ft == FileType::Regular && flags & O_TRUNC != 0 && acc != O_RDONLY {
            self.truncate_ino(ino, 0)?;
        }
        self.new_handle(ino, flags)
    }

    /// A handle on `ino` at offset 0 with `flags`: the next free number, counted as an
    /// opener of the inode.
    fn new_handle(&mut self, ino: Ino, flags: u32) -> Result<Handle, Errno> {
        let mut h = Handle(self.next_handle);
        while self.handles.contains_key(&h) {
            h = Handle(h.0.wrapping_add(1));
        }
        self.next_handle = h.0.wrapping_add(1);
        self.handles.insert(
            h,
            OpenFile {
                ino,
                offset: 0,
                flags,
            },
        );
        self.inode_mut(ino)?.open += 1;
        Ok(h)
    }

    /// Opens inode `ino` itself (a regular file or a directory; a directory read-only) with
    /// `flags` (access mode and status flags; nothing is created, truncated or checked):
    /// a kernel hand-over's descriptors of in-memory files, reopened by inode. A directory's
    /// cookie is set with `lseek` afterwards.
    pub(crate) fn open_ino(&mut self, ino: Ino, flags: u32) -> Result<Handle, Errno> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(EMFILE);
        }
        let i = self.inode(ino)?;
        match i.file_type() {
            FileType::Regular => {}
            FileType::Directory if flags & oflag::O_ACCMODE == oflag::O_RDONLY => {}
            FileType::Directory => return Err(EISDIR),
            _ => return Err(EINVAL),
        }
        self.new_handle(
            ino,
            flags & !(oflag::O_CREAT | oflag::O_EXCL | oflag::O_TRUNC),
        )
    }

    /// Creates a regular file with no name, open read-write (`memfd_create`): it is freed
    /// with its last handle. Returns the handle and the inode.
    pub(crate) fn open_unnamed(&mut self, perm: u32) -> Result<(Handle, Ino), Errno> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(EMFILE);
        }
        crate::mm::heap::charge(64)?;
        let node = Node::File {
            data: Data::empty(),
            size: 0,
        };
        let ino = self.new_inode(node, perm, 0, 0)?;
        let mut h = Handle(self.next_handle);
        while self.handles.contains_key(&h) {
            h = Handle(h.0.wrapping_add(1));
        }
        self.next_handle = h.0.wrapping_add(1);
        self.handles.insert(
            h,
            OpenFile {
                ino,
                offset: 0,
                flags: oflag::O_RDWR,
            },
        );
        self.inode_mut(ino)?.open += 1;
        Ok((h, ino))
    }

    /// Closes a handle; an unlinked inode is freed with its last handle.
    pub(crate) fn close(&mut self, h: Handle) -> Result<(), Errno> {
        let f = self.handles.remove(&h).ok_or(EBADF)?;
        if let Ok(i) = self.inode_mut(f.ino) {
            i.open = i.open.saturating_sub(1);
        }
        self.maybe_free(f.ino);
        Ok(())
    }

    pub(super) fn handle(&self, h: Handle) -> Result<&OpenFile, Errno> {
        self.handles.get(&h).ok_or(EBADF)
    }

    /// `read(handle, buf)`: reads at the handle's offset and advances it.
    pub(crate) fn read(&mut self, h: Handle, buf: &mut [u8]) -> Result<usize, Errno> {
        let f = self.handle(h)?;
        if !f.readable() {
            return Err(EBADF);
        }
        let (ino, off) = (f.ino, f.offset);
        let n = self.read_at(ino, off, buf)?;
        if let Some(f) = self.handles.get_mut(&h) {
            f.offset += n as u64;
        }
        Ok(n)
    }

    /// `pread(handle, buf, off)`: reads at `off`; the handle's offset is unchanged.
    pub(crate) fn pread(&mut self, h: Handle, buf: &mut [u8], off: u64) -> Result<usize, Errno> {
        let f = self.handle(h)?;
        if !f.readable() {
            return Err(EBADF);
        }
        self.read_at(f.ino, off, buf)
    }

    #[cfg(any(test, feature = "diagnostics"))]
    /// `write(handle, buf)`: writes at the handle's offset (at the end with `O_APPEND`) and
    /// advances it.
    pub(crate) fn write(&mut self, h: Handle, buf: &[u8]) -> Result<usize, Errno> {
        let f = self.handle(h)?;
        if !f.writable() {
            return Err(EBADF);
        }
        let ino = f.ino;
        let off = if f.flags & oflag::O_APPEND != 0 {
            self.inode(ino)?.size()
        } else {
            f.offset
        };
        let n = self.write_at(ino, off, buf)?;
        if let Some(f) = self.handles.get_mut(&h) {
            f.offset = off + n as u64;
        }
        Ok(n)
    }

    /// `pwrite(handle, buf, off)`: writes at `off`; the handle's offset is unchanged.
    pub(crate) fn pwrite(&mut self, h: Handle, buf: &[u8], off: u64) -> Result<usize, Errno> {
        let f = self.handle(h)?;
        if !f.writable() {
            return Err(EBADF);
        }
        self.write_at(f.ino, off, buf)
    }

    /// `lseek(handle, off, whence)` ([`whence`]); returns the new offset. Seeking past the
    /// end is allowed (a later write leaves a hole of zeros). On a directory the offset is a
    /// `getdents64` cookie (`SEEK_SET`/`SEEK_CUR` only).
    pub(crate) fn lseek(&mut self, h: Handle, off: i64, wh: u32) -> Result<u64, Errno> {
        let f = self.handle(h)?;
        let inode = self.inode(f.ino)?;
        let is_dir = matches!(inode.node, Node::Dir(_));
        let base = match wh {
            whence::SEEK_SET => 0,
            whence::SEEK_CUR => f.offset,
            whence::SEEK_END if !is_dir => inode.size(),
            _ => return Err(EINVAL),
        };
        // An offset beyond i64::MAX is EINVAL, as on Linux (where the sum wraps negative).
        let new = i64::try_from(base)
            .ok()
            .and_then(|b| b.checked_add(off))
            .ok_or(EINVAL)?;
        if new < 0 {
            return Err(EINVAL);
        }
        if let Some(f) = self.handles.get_mut(&h) {
            f.offset = new as u64;
        }
        Ok(new as u64)
    }

    /// `ftruncate(handle, len)`: the handle must be open for writing on a regular file.
    pub(crate) fn ftruncate(&mut self, h: Handle, len: i64) -> Result<(), Errno> {
        let len = u64::try_from(len).map_err(|_| EINVAL)?;
        let f = self.handle(h)?;
        if !f.writable() || self.is_dir(f.ino) {
            return Err(EINVAL);
        }
        self.truncate_ino(f.ino, len)
    }

    /// `fstat(handle)`.
    pub(crate) fn fstat(&self, h: Handle) -> Result<Stat, Errno> {
        self.stat_ino(self.handles.get(&h).ok_or(EBADF)?.ino)
    }

    /// `getdents64(handle, buf)`: fills `buf` with `linux_dirent64` records from the
    /// handle's offset (a cookie: 0 = start, 1 = after `.`, 2 = after `..`, then each
    /// entry's own cookie) and advances it. Returns the bytes used, 0 at the end, `EINVAL`
    /// if not even one record fits. A removed directory lists nothing.
    pub(crate) fn getdents64(&mut self, h: Handle, buf: &mut [u8]) -> Result<usize, Errno> {
        let f = self.handle(h)?;
        let (ino, mut cookie) = (f.ino, f.offset);
        self.load(ino)?;
        let inode = self.inode(ino)?;
        let Node::Dir(d) = &inode.node else {
            return Err(ENOTDIR);
        };
        let mut pos = 0;
        let mut full = false;
        if inode.nlink > 0 {
            if cookie == 0 {
                full = !put_dirent(buf, &mut pos, self.shown_ino(ino), 1, dt::DT_DIR, b".");
                if !full {
                    cookie = 1;
                }
            }
            if cookie == 1 && !full {
                full = !put_dirent(
                    buf,
                    &mut pos,
                    self.shown_ino(d.parent),
                    2,
                    dt::DT_DIR,
                    b"..",
                );
                if !full {
                    cookie = 2;
                }
            }
            if !full {
                for (&c, name) in d.by_cookie.range(cookie.saturating_add(1).max(3)..) {
                    let Some(child) = d.get(name) else { continue };
                    let dtype = self.inode(child).map_or(0, |i| i.file_type().dtype());
                    if !put_dirent(buf, &mut pos, self.shown_ino(child), c, dtype, name) {
                        full = true;
                        break;
                    }
                    cookie = c;
                }
            }
        }
        if pos == 0 && full {
            return Err(EINVAL);
        }
        if let Some(f) = self.handles.get_mut(&h) {
            f.offset = cookie;
        }
        Ok(pos)
    }
}
