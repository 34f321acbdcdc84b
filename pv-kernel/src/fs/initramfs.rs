//! Unpacking a cpio newc initramfs into a [`Fs`].
//!
//! Regular files keep borrowing their bytes from the archive (it lives in memory the kernel
//! never reuses), so unpacking copies only metadata. Missing parent directories are created
//! (mode 0755); a later member replaces an earlier one of the same name (a directory
//! replacing a directory just updates its metadata); hard links (regular files sharing
//! `(dev, ino)` with `nlink > 1`) become real links; device nodes, FIFOs and sockets are
//! skipped and counted. Directory mtimes are applied last, so adding children does not
//! disturb them.
//!
//! Pure code (`alloc` only), so the host tests compile it too.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use super::cpio::{self, Kind};
use super::errno::Errno;
use super::ramfs::{oflag, Fs, Ino, ROOT_INO};

/// What unpacking produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Archive members turned into files, directories, symlinks or links.
    pub(crate) entries: u64,
    /// Members skipped (device nodes, FIFOs, sockets).
    pub(crate) skipped: u64,
    /// Bytes of regular-file data.
    pub(crate) data_bytes: u64,
}

/// Why unpacking failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Error {
    /// The archive is malformed.
    Cpio(cpio::Error),
    /// A member could not be created (e.g. its parent is a file).
    Fs {
        /// Offset of the member in the archive.
        offset: usize,
        /// The filesystem error.
        errno: Errno,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpio(e) => write!(f, "{e}"),
            Self::Fs { offset, errno } => {
                write!(f, "cannot create the member at offset {offset}: {errno}")
            }
        }
    }
}

/// Unpacks `archive` into `fs` (normally a fresh one). On error `fs` holds a partial tree;
/// callers that want all-or-nothing unpack into a scratch filesystem.
pub(crate) fn unpack(fs: &mut Fs, archive: &'static [u8]) -> Result<Summary, Error> {
    let mut summary = Summary::default();
    let mut links: BTreeMap<(u32, u32, u32), Ino> = BTreeMap::new();
    let mut dir_times: Vec<(Ino, u64)> = Vec::new();
    for entry in cpio::Parser::new(archive) {
        let e = entry.map_err(Error::Cpio)?;
        let offset = e.offset;
        let fs_err = |errno| Error::Fs { offset, errno };
        // `check_entry` already refused unknown types.
        let kind = cpio::kind(e.mode).ok_or(fs_err(Errno::EINVAL))?;
        if kind == Kind::Special {
            summary.skipped += 1;
            continue;
        }
        let comps: Vec<&[u8]> = cpio::components(e.name).collect();
        let mtime = u64::from(e.mtime) * 1_000_000_000;
        let owner = Some((e.uid, e.gid));
        let Some((name, parents)) = comps.split_last() else {
            // "." or "/": the root's own metadata.
            if kind != Kind::Directory {
                return Err(fs_err(Errno::EEXIST));
            }
            fs.set_meta(ROOT_INO, e.mode, owner, None).map_err(fs_err)?;
            dir_times.push((ROOT_INO, mtime));
            summary.entries += 1;
            continue;
        };
        let mut dir = ROOT_INO;
        for p in parents {
            dir = match fs.lookup_dir(dir, p) {
                Ok(d) => d,
                Err(Errno::ENOENT) => fs.mkdir(dir, p, 0o755).map_err(fs_err)?,
                Err(errno) => return Err(fs_err(errno)),
            };
        }
        // Replace an earlier member of the same name (but keep a directory for a directory).
        if let Ok(old) = fs.lstat(dir, name) {
            let old_dir = old.file_type() == super::ramfs::FileType::Directory;
            if old_dir && kind == Kind::Directory {
                fs.set_meta(old.ino, e.mode, owner, None).map_err(fs_err)?;
                dir_times.push((old.ino, mtime));
                summary.entries += 1;
                continue;
            }
            let removed = if old_dir {
                fs.rmdir(dir, name)
            } else {
                fs.unlink(dir, name)
            };
            removed.map_err(fs_err)?;
        }
        let ino = match kind {
            Kind::Directory => {
                let ino = fs.mkdir(dir, name, e.mode).map_err(fs_err)?;
                dir_times.push((ino, mtime));
                ino
            }
            Kind::Symlink => fs.symlink(dir, e.data, name).map_err(fs_err)?,
            _ => {
                let key = (e.dev.0, e.dev.1, e.ino);
                let linked = if e.nlink > 1 {
                    links.get(&key).copied()
                } else {
                    None
                };
                let ino = match linked {
                    Some(first) => {
                        fs.link_ino(dir, name, first).map_err(fs_err)?;
                        first
                    }
                    None => {
                        let flags = oflag::O_CREAT | oflag::O_EXCL | oflag::O_WRONLY;
                        let h = fs.open(dir, name, flags, e.mode).map_err(fs_err)?;
                        let st = fs.fstat(h);
                        fs.close(h).map_err(fs_err)?;
                        st.map_err(fs_err)?.ino
                    }
                };
                if e.nlink > 1 {
                    links.insert(key, ino);
                }
                // With hard links, newc stores the data once (on the last member).
                if !e.data.is_empty() || linked.is_none() {
                    fs.set_static_data(ino, e.data).map_err(fs_err)?;
                    summary.data_bytes += e.data.len() as u64;
                }
                ino
            }
        };
        let mtime = (kind != Kind::Directory).then_some(mtime);
        fs.set_meta(ino, e.mode, owner, mtime).map_err(fs_err)?;
        summary.entries += 1;
    }
    for (ino, t) in dir_times {
        let _ = fs.set_mtime(ino, t);
    }
    Ok(summary)
}
