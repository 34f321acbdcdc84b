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
//! Pure code (`alloc` only), unit-tested on the host (`cargo test -p pvmux-kernel`).

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

impl Error {
    /// The filesystem ran out of room for the archive (its limits or the kernel's memory).
    pub(crate) const fn out_of_space(&self) -> bool {
        matches!(
            self,
            Self::Fs {
                errno: Errno::ENOSPC | Errno::ENOMEM,
                ..
            }
        )
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::ramfs::{FileType, Stat};
    use crate::fs::testdata::{self, leak, Header, Newc, CHR, DIR, FIFO, REG};

    /// A fixed clock, so unpacked times are distinguishable from "now".
    fn clock() -> u64 {
        7
    }

    fn unpacked(archive: Vec<u8>) -> (Fs, Result<Summary, Error>) {
        let mut fs = Fs::new(clock);
        let r = unpack(&mut fs, leak(archive));
        (fs, r)
    }

    fn read(fs: &mut Fs, path: &str) -> Vec<u8> {
        let h = fs
            .open(ROOT_INO, path.as_bytes(), oflag::O_RDONLY, 0)
            .unwrap();
        let size = fs.fstat(h).unwrap().size as usize;
        let mut buf = vec![0u8; size + 1];
        let n = fs.read(h, &mut buf).unwrap();
        fs.close(h).unwrap();
        buf.truncate(n);
        buf
    }

    fn stat(fs: &mut Fs, path: &str) -> Stat {
        fs.lstat(ROOT_INO, path.as_bytes())
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn list(fs: &mut Fs, path: &str) -> Vec<String> {
        let ino = fs.lookup(ROOT_INO, path.as_bytes(), true).unwrap();
        fs.list(ino)
            .unwrap()
            .into_iter()
            .map(|e| String::from_utf8(e.name).unwrap())
            .collect()
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn the_gnu_cpio_tree_unpacks_exactly() {
        let (mut fs, r) = unpacked(testdata::GNU_NEWC.to_vec());
        let s = r.unwrap();
        assert_eq!(s.entries, 10, "11 members but the FIFO");
        assert_eq!(s.skipped, 1);
        assert_eq!(s.data_bytes, 259 + 5 + 7 + 6);
        assert_eq!(
            list(&mut fs, "/"),
            ["dir", "empty", "hard1", "hard2", "link", "top.txt"]
        );
        assert_eq!(list(&mut fs, "/dir"), ["file", "sub"]);
        assert_eq!(read(&mut fs, "/dir/file"), testdata::gnu_file_bytes());
        assert_eq!(read(&mut fs, "/dir/sub/deep.txt"), b"deep\n");
        assert_eq!(read(&mut fs, "/link"), testdata::gnu_file_bytes());
        assert_eq!(fs.readlink(ROOT_INO, b"/link").unwrap(), b"dir/file");
        assert_eq!(read(&mut fs, "/empty"), b"");
        // The hard links are one inode with the data of the member that carried it.
        let (h1, h2) = (stat(&mut fs, "/hard1"), stat(&mut fs, "/hard2"));
        assert_eq!((h1.ino, h1.nlink), (h2.ino, 2));
        assert_eq!(read(&mut fs, "/hard1"), b"linked\n");
        // Modes, owners and times come from the archive, for directories too (and ".").
        let mtime = u64::from(testdata::GNU_MTIME) * S;
        for (path, mode) in [
            ("/", 0o040_755),
            ("/dir", 0o040_700),
            ("/dir/sub", 0o040_755),
            ("/dir/file", 0o100_644),
            ("/empty", 0o100_600),
            ("/link", 0o120_777),
        ] {
            let st = stat(&mut fs, path);
            assert_eq!(st.mode, mode, "{path}");
            assert_eq!((st.uid, st.gid), (1000, 1000), "{path}");
            assert_eq!(
                st.mtime_ns, mtime,
                "{path}: directory times are applied last"
            );
        }
        assert_eq!(stat(&mut fs, "/dir").nlink, 3);
    }

    #[test]
    fn the_gnu_cpio_crc_tree_unpacks_the_same() {
        let (mut a, ra) = unpacked(testdata::GNU_NEWC.to_vec());
        let (mut b, rb) = unpacked(testdata::GNU_CRC.to_vec());
        assert_eq!(ra.unwrap(), rb.unwrap());
        for path in ["/dir/file", "/dir/sub/deep.txt", "/hard2", "/top.txt"] {
            assert_eq!(read(&mut a, path), read(&mut b, path), "{path}");
        }
    }

    #[test]
    fn a_host_packed_tree_unpacks_to_the_same_tree() {
        let dir = std::env::temp_dir().join(format!("pvmux-kernel-unpack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc/sub")).unwrap();
        std::fs::write(dir.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
        std::fs::write(dir.join("etc/sub/big"), vec![3u8; 70_000]).unwrap();
        std::fs::create_dir(dir.join("empty")).unwrap();
        std::os::unix::fs::symlink("/etc/hosts", dir.join("abs")).unwrap();
        let archive = pvmux_host::initramfs::pack_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let (mut fs, r) = unpacked(archive);
        assert_eq!(r.unwrap().entries, 6);
        assert_eq!(list(&mut fs, "/"), ["abs", "empty", "etc"]);
        assert_eq!(read(&mut fs, "/abs"), b"127.0.0.1 localhost\n");
        assert_eq!(read(&mut fs, "/etc/sub/big"), vec![3u8; 70_000]);
        assert!(list(&mut fs, "/empty").is_empty());
    }

    #[test]
    fn an_archive_past_the_inode_limit_is_out_of_space_not_a_panic() {
        let mut a = Newc::new();
        for i in 0..100 {
            a = a.file(format!("d/f{i}").as_bytes(), b"x");
        }
        let mut fs = Fs::new(clock);
        fs.set_limits(crate::fs::ramfs::Limits {
            max_pages: u64::MAX,
            max_inodes: 50,
        });
        let e = unpack(&mut fs, leak(a.finish())).unwrap_err();
        assert!(e.out_of_space(), "{e}");
        assert!(e.to_string().contains("ENOSPC"), "{e}");
        assert_eq!(fs.inode_count(), 50, "root, d and 48 files");
        // A malformed archive is not "out of space".
        let bad = cpio::Error {
            offset: 0,
            kind: cpio::ErrorKind::Truncated,
        };
        assert!(!Error::Cpio(bad).out_of_space());
    }

    #[test]
    fn missing_parents_are_created_and_names_are_normalised() {
        let a = Newc::new()
            .file(b"a/b/c/f", b"deep")
            .file(b"./x", b"dot")
            .file(b"/y", b"slash")
            .file(b"a//b/./g", b"odd")
            .finish();
        let (mut fs, r) = unpacked(a);
        assert_eq!(r.unwrap().entries, 4);
        assert_eq!(read(&mut fs, "/a/b/c/f"), b"deep");
        assert_eq!(read(&mut fs, "/x"), b"dot");
        assert_eq!(read(&mut fs, "/y"), b"slash");
        assert_eq!(read(&mut fs, "/a/b/g"), b"odd");
        let st = stat(&mut fs, "/a/b");
        assert_eq!(
            (st.mode, st.uid, st.mtime_ns),
            (0o040_755, 0, 7),
            "made up, at 'now'"
        );
    }

    #[test]
    fn a_later_member_replaces_an_earlier_one() {
        let h = |ino, mode, uid| Header {
            uid,
            ..Header::new(ino, mode)
        };
        let a = Newc::new()
            .file(b"f", b"first")
            .file(b"f", b"second")
            .dir(b"d")
            .file(b"d/child", b"c")
            .member(h(50, DIR | 0o700, 5), b"d", b"")
            .file(b"was-file", b"x")
            .dir(b"was-file")
            .dir(b"was-dir")
            .file(b"was-dir", b"now a file")
            .symlink(b"l", b"f")
            .file(b"l", b"not a link")
            .finish();
        let (mut fs, r) = unpacked(a);
        r.unwrap();
        assert_eq!(read(&mut fs, "/f"), b"second");
        // A directory over a directory keeps its children and takes the new metadata.
        assert_eq!(list(&mut fs, "/d"), ["child"]);
        let d = stat(&mut fs, "/d");
        assert_eq!((d.mode, d.uid), (0o040_700, 5));
        assert_eq!(stat(&mut fs, "/was-file").file_type(), FileType::Directory);
        assert_eq!(read(&mut fs, "/was-dir"), b"now a file");
        assert_eq!(read(&mut fs, "/l"), b"not a link");
        assert_eq!(stat(&mut fs, "/l").file_type(), FileType::Regular);
        assert_eq!(
            fs.inode_count(),
            1 + 6,
            "replaced members leave nothing behind"
        );
    }

    #[test]
    fn a_file_cannot_replace_a_non_empty_directory() {
        let a = Newc::new()
            .dir(b"d")
            .file(b"d/x", b"")
            .file(b"d", b"file")
            .finish();
        let offset = Newc::new().dir(b"d").file(b"d/x", b"").bytes().len();
        let (_, r) = unpacked(a);
        assert_eq!(
            r,
            Err(Error::Fs {
                offset,
                errno: Errno::ENOTEMPTY
            })
        );
    }

    #[test]
    fn members_under_a_file_are_errors() {
        let a = Newc::new().file(b"f", b"").file(b"f/x", b"").finish();
        let (_, r) = unpacked(a);
        assert!(
            matches!(
                r,
                Err(Error::Fs {
                    errno: Errno::ENOTDIR,
                    ..
                })
            ),
            "{r:?}"
        );
        let a = Newc::new().file(b"f", b"").dir(b"f/d").finish();
        let (_, r) = unpacked(a);
        assert!(
            matches!(
                r,
                Err(Error::Fs {
                    errno: Errno::ENOTDIR,
                    ..
                })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn the_root_entry_must_be_a_directory() {
        let a = Newc::new().file(b".", b"x").finish();
        assert_eq!(
            unpacked(a).1,
            Err(Error::Fs {
                offset: 0,
                errno: Errno::EEXIST
            })
        );
        let a = Newc::new()
            .member(
                Header {
                    uid: 9,
                    ..Header::new(2, DIR | 0o711)
                },
                b"/",
                b"",
            )
            .finish();
        let (mut fs, r) = unpacked(a);
        assert_eq!(r.unwrap().entries, 1);
        let st = stat(&mut fs, "/");
        assert_eq!((st.mode, st.uid), (0o040_711, 9));
    }

    #[test]
    fn devices_fifos_and_sockets_are_skipped_and_counted() {
        let a = Newc::new()
            .member(
                Header {
                    rdev: (1, 3),
                    ..Header::new(2, CHR | 0o666)
                },
                b"dev/null",
                b"",
            )
            .member(Header::new(3, 0o060_660), b"dev/sda", b"")
            .member(Header::new(4, FIFO | 0o600), b"pipe", b"")
            .member(Header::new(5, 0o140_755), b"sock", b"")
            .file(b"f", b"")
            .finish();
        let (mut fs, r) = unpacked(a);
        let s = r.unwrap();
        assert_eq!((s.entries, s.skipped), (1, 4));
        assert_eq!(list(&mut fs, "/"), ["f"], "not even their parent is made");
    }

    #[test]
    fn hard_links_need_nlink_above_one_and_the_same_device_and_inode() {
        let h = |ino, dev, nlink| Header {
            dev,
            nlink,
            ..Header::new(ino, REG | 0o644)
        };
        let a = Newc::new()
            // Data on the first member (not GNU's style): the later names share it.
            .member(h(10, (0, 1), 3), b"a1", b"shared")
            .member(h(10, (0, 1), 3), b"a2", b"")
            .member(h(10, (0, 1), 3), b"a3", b"")
            // Same inode, other device: another file.
            .member(h(10, (0, 2), 2), b"b", b"other dev")
            // Same inode and device but nlink 1: not a link.
            .member(h(11, (0, 1), 1), b"c1", b"c1")
            .member(h(11, (0, 1), 1), b"c2", b"c2")
            .finish();
        let (mut fs, r) = unpacked(a);
        assert_eq!(r.unwrap().entries, 6);
        let a1 = stat(&mut fs, "/a1");
        assert_eq!(a1.nlink, 3);
        assert_eq!(stat(&mut fs, "/a3").ino, a1.ino);
        assert_eq!(read(&mut fs, "/a3"), b"shared");
        assert_ne!(stat(&mut fs, "/b").ino, a1.ino);
        assert_eq!(read(&mut fs, "/b"), b"other dev");
        assert_ne!(stat(&mut fs, "/c1").ino, stat(&mut fs, "/c2").ino);
        assert_eq!(read(&mut fs, "/c2"), b"c2");
    }

    #[test]
    fn file_bytes_stay_in_the_archive() {
        let archive = leak(Newc::new().file(b"f", b"zero copy").finish());
        let mut fs = Fs::new(clock);
        let s = unpack(&mut fs, archive).unwrap();
        assert_eq!(s.data_bytes, 9);
        let before = fs.stat(ROOT_INO, b"/f").unwrap();
        assert_eq!(before.size, 9);
        assert_eq!(read(&mut fs, "/f"), b"zero copy");
        // Writing copies; the archive is untouched.
        let h = fs.open(ROOT_INO, b"/f", oflag::O_WRONLY, 0).unwrap();
        fs.pwrite(h, b"ZERO", 0).unwrap();
        fs.close(h).unwrap();
        assert_eq!(read(&mut fs, "/f"), b"ZERO copy");
        assert!(archive.windows(9).any(|w| w == b"zero copy"));
    }

    #[test]
    fn a_malformed_archive_is_a_cpio_error_with_a_partial_tree() {
        let mut a = Newc::new().file(b"ok", b"1").file(b"bad", b"2").finish();
        let second = Newc::new().file(b"ok", b"1").bytes().len();
        a[second] = b'X';
        let (mut fs, r) = unpacked(a);
        let Err(Error::Cpio(e)) = r else {
            panic!("{r:?}")
        };
        assert_eq!((e.offset, e.kind), (second, cpio::ErrorKind::BadMagic));
        assert_eq!(read(&mut fs, "/ok"), b"1", "members before the error stay");
        assert_eq!(
            Error::Cpio(e).to_string(),
            format!("bad header magic (not cpio newc) at offset {second}")
        );
        assert_eq!(
            Error::Fs {
                offset: 3,
                errno: Errno::ENOTDIR
            }
            .to_string(),
            "cannot create the member at offset 3: ENOTDIR (Not a directory)"
        );
    }
}
