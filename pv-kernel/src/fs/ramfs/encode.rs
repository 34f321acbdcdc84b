//! The Linux encodings of file metadata: `st_mode` bits, `d_type` values, the x86-64
//! `struct stat` and `linux_dirent64` records.

use alloc::vec::Vec;

use super::inode::{FileType, Ino, Node};
use super::Fs;
use crate::fs::errno::Errno;

/// Reported block size.
const BLKSIZE: u64 = 4096;

/// `st_mode` type and permission bits (Linux values).
pub(crate) mod mode {
    /// Mask of the type bits.
    pub(crate) const S_IFMT: u32 = 0o170_000;
    /// Regular file.
    pub(crate) const S_IFREG: u32 = 0o100_000;
    /// Directory.
    pub(crate) const S_IFDIR: u32 = 0o040_000;
    /// Symbolic link.
    pub(crate) const S_IFLNK: u32 = 0o120_000;
    /// Socket (an `AF_UNIX` socket bound to a path).
    pub(crate) const S_IFSOCK: u32 = 0o140_000;
    /// Mask of the permission bits (incl. set-id and sticky).
    pub(crate) const PERM: u32 = 0o7777;
}

/// `linux_dirent64::d_type` values.
pub(crate) mod dt {
    /// Directory.
    pub(crate) const DT_DIR: u8 = 4;
    /// Regular file.
    pub(crate) const DT_REG: u8 = 8;
    /// Symbolic link.
    pub(crate) const DT_LNK: u8 = 10;
    /// Socket.
    pub(crate) const DT_SOCK: u8 = 12;
}

/// Size of the fixed part of a `linux_dirent64` (d_ino, d_off, d_reclen, d_type).
pub(crate) const DIRENT64_HEADER: usize = 19;

/// `stat` results (the fields of Linux `struct stat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Device (always 0 for this filesystem).
    pub(crate) dev: u64,
    /// Inode number.
    pub(crate) ino: Ino,
    /// Type and permission bits.
    pub(crate) mode: u32,
    /// Link count.
    pub(crate) nlink: u32,
    /// Owner.
    pub(crate) uid: u32,
    /// Group.
    pub(crate) gid: u32,
    /// Size in bytes.
    pub(crate) size: u64,
    /// 512-byte blocks actually stored.
    pub(crate) blocks: u64,
    /// Preferred I/O size.
    pub(crate) blksize: u64,
    /// Access time, ns since the epoch.
    pub(crate) atime_ns: u64,
    /// Modification time, ns since the epoch.
    pub(crate) mtime_ns: u64,
    /// Status change time, ns since the epoch.
    pub(crate) ctime_ns: u64,
    /// The inode number its own filesystem gives it (a disk's ext2), which programs see
    /// instead of `ino` (0: none; `ino` is the kernel's handle either way).
    pub(crate) host_ino: u64,
}

impl Stat {
    /// The inode number programs see (`st_ino`, `stx_ino`).
    pub(crate) fn shown_ino(&self) -> u64 {
        if self.host_ino != 0 {
            self.host_ino
        } else {
            self.ino
        }
    }

    /// The file type.
    pub(crate) fn file_type(&self) -> FileType {
        match self.mode & mode::S_IFMT {
            mode::S_IFDIR => FileType::Directory,
            mode::S_IFLNK => FileType::Symlink,
            mode::S_IFSOCK => FileType::Socket,
            _ => FileType::Regular,
        }
    }

    /// The x86-64 Linux `struct stat` (144 bytes) for a `stat` system call.
    pub(crate) fn to_linux(self) -> [u8; 144] {
        let mut b = [0u8; 144];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        let ts = |ns: u64| {
            (
                (ns / 1_000_000_000).to_le_bytes(),
                (ns % 1_000_000_000).to_le_bytes(),
            )
        };
        put(0, &self.dev.to_le_bytes());
        put(8, &self.shown_ino().to_le_bytes());
        put(16, &u64::from(self.nlink).to_le_bytes());
        put(24, &self.mode.to_le_bytes());
        put(28, &self.uid.to_le_bytes());
        put(32, &self.gid.to_le_bytes());
        put(48, &self.size.to_le_bytes());
        put(56, &self.blksize.to_le_bytes());
        put(64, &self.blocks.to_le_bytes());
        for (off, ns) in [
            (72, self.atime_ns),
            (88, self.mtime_ns),
            (104, self.ctime_ns),
        ] {
            let (s, n) = ts(ns);
            put(off, &s);
            put(off + 8, &n);
        }
        b
    }
}

/// A directory entry as listed by [`Fs::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DirEntry {
    /// The name.
    pub(crate) name: Vec<u8>,
    /// Its inode.
    pub(crate) ino: Ino,
    /// Its type.
    pub(crate) file_type: FileType,
}

/// Appends one `linux_dirent64` record at `buf[*pos..]`; false if it does not fit.
pub(super) fn put_dirent(
    buf: &mut [u8],
    pos: &mut usize,
    ino: Ino,
    off: u64,
    dtype: u8,
    name: &[u8],
) -> bool {
    let reclen = (DIRENT64_HEADER + name.len() + 1 + 7) & !7;
    let Some(rec) = buf.get_mut(*pos..*pos + reclen) else {
        return false;
    };
    rec.fill(0);
    rec[0..8].copy_from_slice(&ino.to_le_bytes());
    rec[8..16].copy_from_slice(&off.to_le_bytes());
    rec[16..18].copy_from_slice(&(reclen as u16).to_le_bytes());
    rec[18] = dtype;
    rec[DIRENT64_HEADER..DIRENT64_HEADER + name.len()].copy_from_slice(name);
    *pos += reclen;
    true
}

impl Fs {
    /// Whether a descriptor holds inode `ino` open.
    pub(crate) fn is_open(&self, ino: Ino) -> bool {
        self.inodes.get(&ino).is_some_and(|i| i.open > 0)
    }

    /// `stat` of an inode.
    pub(crate) fn stat_ino(&self, ino: Ino) -> Result<Stat, Errno> {
        let i = self.inode(ino)?;
        let stored = match &i.node {
            // A volume file's bytes are on the host: count them all (`du`).
            Node::File { size, .. } if self.is_volume_file(ino) => *size,
            Node::File { data, .. } => data.stored_bytes(),
            _ => i.size(),
        };
        let (dev, host_ino) = self.vol_ids(ino);
        Ok(Stat {
            dev,
            ino,
            host_ino,
            mode: i.file_type().mode_bits() | i.perm,
            nlink: i.nlink,
            uid: i.uid,
            gid: i.gid,
            size: i.size(),
            blocks: stored.div_ceil(BLKSIZE) * (BLKSIZE / 512),
            blksize: BLKSIZE,
            atime_ns: i.atime,
            mtime_ns: i.mtime,
            ctime_ns: i.ctime,
        })
    }
}
