//! The open files of the synthetic filesystems: a file whose contents were generated when it
//! was opened ([`SynthFile`], read-only, seekable) and a directory whose entries were listed
//! when it was opened ([`SynthDir`], for `getdents64` and as a `dirfd`).

use alloc::vec::Vec;
use core::any::Any;

use crate::fs::mount::MountKind;
use crate::fs::ramfs::{dt, mode, whence};
use crate::fs::Errno;
use crate::linux::files::file::{synthetic_stat, KStat, OpenFile};
use crate::linux::files::object::FileObject;
use crate::linux::files::poll::ev;

/// A generated read-only file. Like Linux's `seq_file`s, the contents are generated at the
/// first read (a redirection opened between `fork` and `execve` shows the new program), then
/// kept for the description's life (reads at any offset see one consistent snapshot).
pub(crate) struct SynthFile {
    /// Its path (what `/proc/PID/fd` shows).
    pub(crate) path: Vec<u8>,
    /// Which filesystem.
    pub(crate) kind: MountKind,
    /// Its components after the mount point.
    pub(crate) comps: Vec<Vec<u8>>,
    /// The contents, once generated.
    pub(crate) data: spin::Once<Result<Vec<u8>, Errno>>,
    /// Its inode number.
    pub(crate) ino: u64,
}

impl SynthFile {
    /// The contents (generated on first use).
    fn data(&self) -> Result<&[u8], Errno> {
        self.data
            .call_once(|| super::tree::contents(self.kind, &self.comps))
            .as_ref()
            .map(Vec::as_slice)
            .map_err(|e| *e)
    }
}

/// A listed directory: `(name, d_type, inode)` entries, `.` and `..` first.
pub(crate) struct SynthDir {
    /// Its path.
    pub(crate) path: Vec<u8>,
    /// Which filesystem.
    pub(crate) kind: MountKind,
    /// The components after the mount point.
    pub(crate) comps: Vec<Vec<u8>>,
    /// The entries, listed at the first `getdents` (so a listing of `/proc/self/fd` shows
    /// the descriptor it is read through, as on Linux).
    pub(crate) entries: spin::Once<Vec<(Vec<u8>, u8, u64)>>,
    /// Its inode number.
    pub(crate) ino: u64,
}

/// Clamped seek on a file of `len` bytes whose offset is `cur` (Linux `generic_file_llseek`
/// for the offsets a generated file can have).
pub(crate) fn seek(cur: u64, len: u64, off: i64, wh: u32) -> Result<u64, Errno> {
    let base = match wh {
        whence::SEEK_SET => 0,
        whence::SEEK_CUR => cur as i64,
        whence::SEEK_END => len as i64,
        _ => return Err(Errno::EINVAL),
    };
    let n = base.checked_add(off).ok_or(Errno::EINVAL)?;
    u64::try_from(n).map_err(|_| Errno::EINVAL)
}

/// The stat of a synthetic node.
pub(crate) fn node_stat(kind: MountKind, m: u32, ino: u64, size: u64) -> KStat {
    let mut st = synthetic_stat(m, ino, crate::time::realtime_ns());
    st.dev = kind.dev();
    st.size = size;
    if m & mode::S_IFMT == mode::S_IFDIR {
        st.nlink = 2;
    }
    KStat::plain(st)
}

impl FileObject for SynthFile {
    fn read(&self, f: &OpenFile, buf: &mut [u8], off: Option<u64>) -> Result<usize, Errno> {
        let data = self.data()?;
        let mut pos = f.pos();
        let at = off.unwrap_or(*pos);
        let start = usize::try_from(at).unwrap_or(usize::MAX).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        if off.is_none() {
            *pos = (start + n) as u64;
        }
        Ok(n)
    }

    fn write(&self, _f: &OpenFile, _data: &[u8], _off: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EACCES)
    }

    fn poll(&self, _f: &OpenFile) -> u16 {
        ev::POLLIN | ev::POLLOUT
    }

    fn lseek(&self, f: &OpenFile, off: i64, wh: u32) -> crate::linux::SysResult {
        let len = if wh == whence::SEEK_END {
            self.data()?.len() as u64
        } else {
            0
        };
        let mut pos = f.pos();
        *pos = seek(*pos, len, off, wh)?;
        Ok(*pos)
    }

    fn stat(&self) -> KStat {
        // Like Linux, generated files report size 0 (readers read to the end).
        node_stat(self.kind, mode::S_IFREG | 0o444, self.ino, 0)
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

impl SynthDir {
    /// The entries, `.` and `..` first (listed on first use).
    fn entries(&self) -> &[(Vec<u8>, u8, u64)] {
        self.entries.call_once(|| {
            let mut out = alloc::vec![
                (b".".to_vec(), dt::DT_DIR, self.ino),
                (b"..".to_vec(), dt::DT_DIR, 1),
            ];
            for (name, ty) in super::tree::list(self.kind, &self.comps).unwrap_or_default() {
                let mut c = self.comps.clone();
                c.push(name.clone());
                out.push((name, ty, super::tree::ino_of(self.kind, &c)));
            }
            out
        })
    }

    /// `getdents64` from the entry at the description's offset (an entry index).
    pub(crate) fn getdents(&self, f: &OpenFile, buf: &mut [u8]) -> Result<usize, Errno> {
        let entries = self.entries();
        let mut pos = f.pos();
        let mut used = 0;
        let mut i = usize::try_from(*pos).unwrap_or(usize::MAX);
        while let Some((name, ty, ino)) = entries.get(i) {
            let reclen = (19 + name.len() + 1).next_multiple_of(8);
            if used + reclen > buf.len() {
                if used == 0 {
                    return Err(Errno::EINVAL);
                }
                break;
            }
            let r = &mut buf[used..used + reclen];
            r.fill(0);
            r[0..8].copy_from_slice(&ino.to_le_bytes());
            r[8..16].copy_from_slice(&((i + 1) as u64).to_le_bytes());
            r[16..18].copy_from_slice(&(reclen as u16).to_le_bytes());
            r[18] = *ty;
            r[19..19 + name.len()].copy_from_slice(name);
            used += reclen;
            i += 1;
        }
        *pos = i as u64;
        Ok(used)
    }
}

impl FileObject for SynthDir {
    fn read(&self, _f: &OpenFile, _buf: &mut [u8], _off: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EISDIR)
    }

    fn write(&self, _f: &OpenFile, _data: &[u8], _off: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EISDIR)
    }

    fn poll(&self, _f: &OpenFile) -> u16 {
        ev::POLLIN | ev::POLLOUT
    }

    fn lseek(&self, f: &OpenFile, off: i64, wh: u32) -> crate::linux::SysResult {
        let len = if wh == whence::SEEK_END {
            self.entries().len() as u64
        } else {
            0
        };
        let mut pos = f.pos();
        *pos = seek(*pos, len, off, wh)?;
        Ok(*pos)
    }

    fn stat(&self) -> KStat {
        node_stat(self.kind, mode::S_IFDIR | 0o555, self.ino, 0)
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

/// The synthetic directory behind `f`, if it is one.
pub(crate) fn dir_of(f: &OpenFile) -> Option<&SynthDir> {
    crate::linux::files::object::downcast::<SynthDir>(f)
}

/// The filesystem of a synthetic open file, if `f` is one.
pub(crate) fn kind_of(f: &OpenFile) -> Option<MountKind> {
    if let Some(d) = dir_of(f) {
        return Some(d.kind);
    }
    crate::linux::files::object::downcast::<SynthFile>(f).map(|s| s.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeks_clamp_like_linux() {
        assert_eq!(seek(5, 10, 0, whence::SEEK_END), Ok(10));
        assert_eq!(seek(5, 10, -2, whence::SEEK_CUR), Ok(3));
        assert_eq!(seek(5, 10, 20, whence::SEEK_SET), Ok(20));
        assert_eq!(seek(5, 10, -20, whence::SEEK_CUR), Err(Errno::EINVAL));
        assert_eq!(seek(5, 10, 0, 9), Err(Errno::EINVAL));
    }
}
