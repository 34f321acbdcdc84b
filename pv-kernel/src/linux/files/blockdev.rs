//! `/dev/vdX`: a disk attached to this kernel as a block device (docs/MULTIKERNEL.md
//! "Devices and who owns them"). Reads and writes go to the disk's sectors through the
//! host's ring (`crate::fs::disk::raw_read`/`raw_write`, any offset and length: partial
//! sectors are read, changed and written back); `lseek(SEEK_END)` and the `BLKGETSIZE64`,
//! `BLKGETSIZE`, `BLKSSZGET`, `BLKROGET` ioctls give its size; `fsync` flushes the host's
//! image. Nothing is cached: a raw read while the disk is mounted sees what the
//! filesystem has written back (`sync` first), as with `O_DIRECT` on Linux.
//!
//! While a description of the node is open the disk cannot leave this kernel (`pvmux disk
//! move` is refused with `EBUSY`, as for an open file of its filesystem).

#![forbid(unsafe_code)]

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;

use super::file::{KStat, OpenFile};
use super::object::{open_object, FileObject};
use super::poll::ev;
use crate::fs::disk;
use crate::fs::ramfs::oflag;
use crate::fs::Errno;
use crate::linux::procfs::object::seek;
use crate::linux::uaccess::write_val;
use crate::linux::SysResult;

/// Block-device ioctls (`linux/fs.h`).
pub(crate) mod ioc {
    /// `BLKROGET`: int, 1 if read-only.
    pub(crate) const BLKROGET: u64 = 0x125e;
    /// `BLKGETSIZE`: unsigned long, size in 512-byte sectors.
    pub(crate) const BLKGETSIZE: u64 = 0x1260;
    /// `BLKSSZGET`: int, logical sector size.
    pub(crate) const BLKSSZGET: u64 = 0x1268;
    /// `BLKGETSIZE64`: u64, size in bytes.
    pub(crate) const BLKGETSIZE64: u64 = 0x8008_1272;
}

/// An open `/dev/vdX`.
pub(crate) struct BlockFile {
    slot: u32,
    /// The node's stat (a block device).
    st: KStat,
    path: Vec<u8>,
}

/// Opens disk `slot` (its node has stat `st`, path `path`) with `flags`: `ENXIO` if it is
/// not attached (any more), `EROFS` for write access to a read-only disk.
pub(crate) fn open(slot: u32, path: &[u8], st: KStat, flags: u32) -> Result<Arc<OpenFile>, Errno> {
    let (_, ro) = disk::geometry(slot)?;
    if ro && flags & oflag::O_ACCMODE != oflag::O_RDONLY {
        return Err(Errno::EROFS);
    }
    disk::raw_opened(slot, true);
    Ok(open_object(
        Arc::new(BlockFile {
            slot,
            st,
            path: path.to_vec(),
        }),
        flags,
    ))
}

impl BlockFile {
    /// Hand-over: the path of the node, if `f` is an open disk (carried as a device by
    /// that path and its offset: the disk itself is carried in its slot, section 47).
    pub(crate) fn carried_path(f: &OpenFile) -> Option<Vec<u8>> {
        super::object::downcast::<BlockFile>(f).map(|b| b.path.clone())
    }

    /// `fsync`: the host flushes the image.
    pub(crate) fn flush(&self) -> Result<(), Errno> {
        disk::raw_flush(self.slot)
    }

    fn size(&self) -> Result<u64, Errno> {
        Ok(disk::geometry(self.slot)?.0 * pvmux_hypercalls::disk::SECTOR_SIZE)
    }
}

impl Drop for BlockFile {
    fn drop(&mut self) {
        disk::raw_opened(self.slot, false);
    }
}

impl FileObject for BlockFile {
    fn read(&self, f: &OpenFile, buf: &mut [u8], off: Option<u64>) -> Result<usize, Errno> {
        match off {
            Some(o) => disk::raw_read(self.slot, o, buf),
            None => {
                let at = *f.pos();
                let n = disk::raw_read(self.slot, at, buf)?;
                *f.pos() = at + n as u64;
                Ok(n)
            }
        }
    }

    fn write(&self, f: &OpenFile, data: &[u8], off: Option<u64>) -> Result<usize, Errno> {
        match off {
            Some(o) => disk::raw_write(self.slot, o, data),
            None => {
                let at = *f.pos();
                let n = disk::raw_write(self.slot, at, data)?;
                *f.pos() = at + n as u64;
                Ok(n)
            }
        }
    }

    fn poll(&self, _f: &OpenFile) -> u16 {
        ev::POLLIN | ev::POLLRDNORM | ev::POLLOUT | ev::POLLWRNORM
    }

    fn ioctl(&self, _f: &OpenFile, cmd: u64, arg: u64) -> SysResult {
        let (sectors, ro) = disk::geometry(self.slot)?;
        match cmd {
            ioc::BLKGETSIZE64 => write_val(arg, &self.size()?)?,
            ioc::BLKGETSIZE => write_val(arg, &sectors)?,
            ioc::BLKSSZGET => write_val(arg, &(pvmux_hypercalls::disk::SECTOR_SIZE as i32))?,
            ioc::BLKROGET => write_val(arg, &i32::from(ro))?,
            _ => return Err(Errno::ENOTTY),
        }
        Ok(0)
    }

    fn lseek(&self, f: &OpenFile, off: i64, wh: u32) -> SysResult {
        let size = self.size()?;
        let mut pos = f.pos();
        *pos = seek(*pos, size, off, wh)?;
        Ok(*pos)
    }

    fn stat(&self) -> KStat {
        self.st
    }

    fn is_stream(&self) -> bool {
        false
    }

    fn link_name(&self) -> Vec<u8> {
        self.path.clone()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::ioc;

    /// `_IO(0x12, nr)` and `_IOR(0x12, nr, size)` of `linux/fs.h`.
    const fn io(nr: u64) -> u64 {
        (0x12 << 8) | nr
    }
    const fn ior(nr: u64, size: u64) -> u64 {
        (2 << 30) | (size << 16) | io(nr)
    }

    #[test]
    fn ioctl_numbers_are_linux() {
        assert_eq!(ioc::BLKROGET, io(94));
        assert_eq!(ioc::BLKGETSIZE, io(96));
        assert_eq!(ioc::BLKSSZGET, io(104));
        assert_eq!(ioc::BLKSSZGET, libc::BLKSSZGET);
        assert_eq!(ioc::BLKGETSIZE64, ior(114, 8));
    }
}
