//! Initial RAM disks: cpio "newc" archives for the guest's in-memory filesystem.
//!
//! The guest always receives a plain (uncompressed) newc archive that the host has checked
//! with [`validate`]; see `docs/ABI.md` ("Initial RAM disk"). This module
//!
//! - packs a host directory tree into such an archive ([`pack_dir`], for `pvmux run
//!   --rootfs DIR`),
//! - checks an archive strictly before boot ([`validate`]), so that a malformed archive is a
//!   clear host error and never guest confusion, and
//! - turns the bytes of an `--initrd` file, plain or gzip-compressed, into a validated plain
//!   archive ([`prepare`], [`load_file`]).
//!
//! # Format (cpio newc)
//!
//! Each entry is a 110-byte ASCII header — the magic `070701` and thirteen 8-digit hex fields
//! (`ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize
//! check`) — followed by the name (`namesize` bytes including its NUL), zero padding to a
//! multiple of 4 bytes (counted from the start of the archive), the data (`filesize` bytes)
//! and zero padding to a multiple of 4 again. The last entry is named `TRAILER!!!`.

use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Default limit on the size of an archive, packed or decompressed: 1 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;
/// Magic of a newc header.
pub const NEWC_MAGIC: &[u8; 6] = b"070701";
/// Magic of a newc header with a checksum (`check` = the byte sum of a regular file's data).
pub const NEWC_CRC_MAGIC: &[u8; 6] = b"070702";
/// Length of a newc header.
pub const HEADER_LEN: usize = 110;
/// Name of the entry that ends an archive.
pub const TRAILER_NAME: &[u8] = b"TRAILER!!!";
/// Largest `namesize` (name bytes including the NUL) accepted: `PATH_MAX`.
pub const MAX_NAME_SIZE: usize = 4096;
/// Longest path component accepted, in bytes (`NAME_MAX`).
pub const MAX_COMPONENT_LEN: usize = 255;
/// Largest symlink target accepted, in bytes.
pub const MAX_SYMLINK_LEN: usize = 4095;
/// The two magic bytes that start gzip data.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// File-type bits of a mode.
pub const S_IFMT: u32 = 0o170_000;
/// Regular file.
pub const S_IFREG: u32 = 0o100_000;
/// Directory.
pub const S_IFDIR: u32 = 0o040_000;
/// Symbolic link (the data is the target).
pub const S_IFLNK: u32 = 0o120_000;
/// Character device.
pub const S_IFCHR: u32 = 0o020_000;
/// Block device.
pub const S_IFBLK: u32 = 0o060_000;
/// FIFO.
pub const S_IFIFO: u32 = 0o010_000;
/// Socket.
pub const S_IFSOCK: u32 = 0o140_000;

/// Names of the thirteen header fields, in order.
const FIELDS: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];

/// Why an archive could not be packed, read or accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitramfsError {
    /// A host file or directory could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The directory to pack is not a directory.
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// Packing would exceed the size limit.
    #[error("the packed archive would exceed the limit of {limit} bytes (at {})", path.display())]
    PackTooBig {
        /// The limit in bytes.
        limit: u64,
        /// The file being added when the limit was reached.
        path: PathBuf,
    },
    /// A file is too large for a newc entry (4 GiB - 1 at most).
    #[error("{} is too large for a cpio newc entry ({size} bytes, at most 4294967295)", path.display())]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// A path inside the packed directory is too long for an archive name.
    #[error("{} has a name of {len} bytes inside the archive, at most {max} are allowed", path.display())]
    NameTooLong {
        /// The file.
        path: PathBuf,
        /// Length of its archive name in bytes.
        len: usize,
        /// The largest allowed length.
        max: usize,
    },
    /// The data is empty.
    #[error("empty file: not a cpio newc archive")]
    Empty,
    /// An entry does not start with the newc magic.
    #[error(
        "{}bad cpio magic \"{found}\" at offset {offset} (expected \"070701\" or \"070702\", cpio newc{})",
        if *offset == 0 { "not a cpio newc archive: " } else { "" },
        if *offset == 0 { " or gzip-compressed newc" } else { "" }
    )]
    BadMagic {
        /// Offset of the entry.
        offset: usize,
        /// The six bytes found, escaped.
        found: String,
    },
    /// The archive ends inside an entry.
    #[error("truncated cpio archive: the {what} at offset {offset} needs {needed} bytes, only {available} remain")]
    Truncated {
        /// Which part of the entry is cut off.
        what: &'static str,
        /// Where that part starts.
        offset: usize,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left in the archive.
        available: u64,
    },
    /// A header field or entry is malformed.
    #[error("malformed cpio archive: entry at offset {offset}: {what}")]
    Malformed {
        /// Offset of the entry.
        offset: usize,
        /// What is wrong.
        what: String,
    },
    /// A name is not acceptable (`..` component, NUL byte, empty).
    #[error("unsafe name {name:?} in the cpio archive (entry at offset {offset}): {why}")]
    BadName {
        /// Offset of the entry.
        offset: usize,
        /// The name, lossily decoded.
        name: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// The archive ends without a `TRAILER!!!` entry.
    #[error("cpio archive has no TRAILER!!! entry (truncated?)")]
    NoTrailer,
    /// Bytes after a trailer that are neither zero padding nor another archive.
    #[error("cpio archive has garbage after its TRAILER!!! entry at offset {offset}")]
    TrailingData {
        /// Offset of the first non-zero byte after the trailer.
        offset: usize,
    },
    /// The archive is larger than allowed.
    #[error("the archive is {size} bytes, more than the limit of {limit}")]
    TooBig {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// gzip data could not be decompressed.
    #[error("corrupt gzip data")]
    Gzip(#[source] io::Error),
    /// gzip data decompresses to more than the limit.
    #[error("gzip data decompresses to more than the limit of {limit} bytes")]
    DecompressedTooBig {
        /// The limit.
        limit: u64,
    },
}

/// What [`validate`] found in an archive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Entries, not counting the trailer.
    pub entries: u64,
    /// Regular files (hard links included).
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Character and block devices, FIFOs and sockets.
    pub special: u64,
    /// Total size of the regular files' data.
    pub file_bytes: u64,
    /// Concatenated archives (each ending in `TRAILER!!!`), at least 1.
    pub archives: u64,
    /// Length of the archive up to the end of the last trailer entry (any zero padding after
    /// it is not counted).
    pub archive_len: u64,
}

/// Rounds `n` up to a multiple of 4.
const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Escapes bytes for an error message.
fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

// ---------------------------------------------------------------------------------------------
// Packing

/// Packs the directory tree at `root` into a newc archive, with the [`DEFAULT_MAX_SIZE`]
/// limit. See [`pack_dir_with_limit`].
pub fn pack_dir(root: impl AsRef<Path>) -> Result<Vec<u8>, InitramfsError> {
    pack_dir_with_limit(root, DEFAULT_MAX_SIZE)
}

/// Packs the directory tree at `root` into a newc archive of at most `limit` bytes.
///
/// Entries are the regular files (with their contents), directories and symbolic links (with
/// their target as data) below `root`, named relative to it without a leading `/` (`bin`,
/// `bin/busybox`; the root itself is not emitted), in sorted order, each directory before
/// its contents. Modes keep the permission bits; owners are 0:0, `mtime` is the file's,
/// `nlink` is 1 (2 for directories) and inode numbers count up from 1. Symbolic links below
/// `root` are not followed (`root` itself may be one). Sockets, FIFOs and devices are
/// skipped. The result is deterministic for a given tree.
pub fn pack_dir_with_limit(root: impl AsRef<Path>, limit: u64) -> Result<Vec<u8>, InitramfsError> {
    let root = root.as_ref();
    let meta = fs::metadata(root).map_err(|source| InitramfsError::Io {
        path: root.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(InitramfsError::NotADirectory(root.to_owned()));
    }
    let mut w = Writer {
        buf: Vec::new(),
        ino: 0,
        limit,
    };
    w.pack_tree(root, &[])?;
    w.trailer(root)?;
    Ok(w.buf)
}

/// Appends newc entries to a buffer.
struct Writer {
    buf: Vec<u8>,
    ino: u32,
    limit: u64,
}

/// Length of the trailer entry.
const TRAILER_ENTRY_LEN: usize = align4(HEADER_LEN + TRAILER_NAME.len() + 1);

impl Writer {
    /// Bytes left for entries, keeping room for the trailer.
    fn room(&self) -> u64 {
        self.limit
            .saturating_sub(self.buf.len() as u64)
            .saturating_sub(TRAILER_ENTRY_LEN as u64)
    }

    /// Adds the entries below `dir`, whose archive name is `prefix` (empty for the root).
    fn pack_tree(&mut self, dir: &Path, prefix: &[u8]) -> Result<(), InitramfsError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| InitramfsError::Io { path, source }
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            names.push(entry.map_err(io_err(dir))?.file_name());
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let path = dir.join(&name);
            let mut arc_name = prefix.to_vec();
            if !arc_name.is_empty() {
                arc_name.push(b'/');
            }
            arc_name.extend_from_slice(name.as_bytes());
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            let perm = meta.mode() & 0o7777;
            let mtime = u32::try_from(meta.mtime().max(0)).unwrap_or(u32::MAX);
            let ft = meta.file_type();
            if ft.is_dir() {
                self.entry(&path, &arc_name, S_IFDIR | perm, 2, mtime, &[])?;
                self.pack_tree(&path, &arc_name)?;
            } else if ft.is_file() {
                let data = self.read_file(&path, &arc_name, meta.len())?;
                self.entry(&path, &arc_name, S_IFREG | perm, 1, mtime, &data)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(io_err(&path))?;
                let target = target.as_os_str().as_bytes();
                if target.len() > MAX_SYMLINK_LEN {
                    return Err(InitramfsError::FileTooLarge {
                        path,
                        size: target.len() as u64,
                    });
                }
                self.entry(&path, &arc_name, S_IFLNK | perm, 1, mtime, target)?;
            } else {
                tracing::debug!(
                    path = %path.display(),
                    "initramfs: skipping a socket, FIFO or device"
                );
            }
        }
        Ok(())
    }

    /// Reads a regular file, refusing to read past the room left in the archive.
    fn read_file(
        &self,
        path: &Path,
        arc_name: &[u8],
        size_hint: u64,
    ) -> Result<Vec<u8>, InitramfsError> {
        let header = align4(HEADER_LEN + arc_name.len() + 1) as u64;
        let room = self.room().saturating_sub(header);
        let max = room.min(u64::from(u32::MAX));
        let too_big = |size: u64| {
            if size > u64::from(u32::MAX) && room > u64::from(u32::MAX) {
                InitramfsError::FileTooLarge {
                    path: path.to_owned(),
                    size,
                }
            } else {
                InitramfsError::PackTooBig {
                    limit: self.limit,
                    path: path.to_owned(),
                }
            }
        };
        if size_hint > max {
            return Err(too_big(size_hint));
        }
        let file = fs::File::open(path).map_err(|source| InitramfsError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut data = Vec::with_capacity(usize::try_from(size_hint).unwrap_or(0));
        file.take(max + 1)
            .read_to_end(&mut data)
            .map_err(|source| InitramfsError::Io {
                path: path.to_owned(),
                source,
            })?;
        if data.len() as u64 > max {
            return Err(too_big(data.len() as u64));
        }
        Ok(data)
    }

    /// Appends one entry.
    fn entry(
        &mut self,
        path: &Path,
        name: &[u8],
        mode: u32,
        nlink: u32,
        mtime: u32,
        data: &[u8],
    ) -> Result<(), InitramfsError> {
        if name.len() + 1 > MAX_NAME_SIZE {
            return Err(InitramfsError::NameTooLong {
                path: path.to_owned(),
                len: name.len(),
                max: MAX_NAME_SIZE - 1,
            });
        }
        let len = align4(HEADER_LEN + name.len() + 1) + align4(data.len());
        if len as u64 > self.room() {
            return Err(InitramfsError::PackTooBig {
                limit: self.limit,
                path: path.to_owned(),
            });
        }
        self.ino += 1;
        let ino = self.ino;
        self.raw_entry(ino, mode, nlink, mtime, name, data);
        Ok(())
    }

    /// Appends the trailer.
    fn trailer(&mut self, root: &Path) -> Result<(), InitramfsError> {
        if self.buf.len() + TRAILER_ENTRY_LEN > usize::try_from(self.limit).unwrap_or(usize::MAX) {
            return Err(InitramfsError::PackTooBig {
                limit: self.limit,
                path: root.to_owned(),
            });
        }
        self.raw_entry(0, 0, 1, 0, TRAILER_NAME, &[]);
        Ok(())
    }

    /// Appends a header, the name, the data and the padding; no checks.
    fn raw_entry(&mut self, ino: u32, mode: u32, nlink: u32, mtime: u32, name: &[u8], data: &[u8]) {
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            mtime,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        let buf = &mut self.buf;
        buf.extend_from_slice(NEWC_MAGIC);
        for f in fields {
            buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        buf.extend_from_slice(name);
        buf.push(0);
        buf.resize(align4(buf.len()), 0);
        buf.extend_from_slice(data);
        buf.resize(align4(buf.len()), 0);
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

/// Parses one 8-digit hex field.
fn hex_field(bytes: &[u8], offset: usize, field: usize) -> Result<u32, InitramfsError> {
    let raw = &bytes[6 + field * 8..6 + field * 8 + 8];
    let mut v: u32 = 0;
    for &b in raw {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => {
                return Err(InitramfsError::Malformed {
                    offset,
                    what: format!(
                        "header field {} is not 8 hex digits: \"{}\"",
                        FIELDS[field],
                        escape(raw)
                    ),
                })
            }
        };
        v = (v << 4) | u32::from(d);
    }
    Ok(v)
}

/// Checks that `bytes[from..to]` exists and is zero (alignment padding).
fn check_padding(
    bytes: &[u8],
    offset: usize,
    from: usize,
    to: usize,
    what: &'static str,
) -> Result<(), InitramfsError> {
    let pad = bytes.get(from..to).ok_or(InitramfsError::Truncated {
        what,
        offset: from,
        needed: (to - from) as u64,
        available: bytes.len().saturating_sub(from) as u64,
    })?;
    if pad.iter().any(|&b| b != 0) {
        return Err(InitramfsError::Malformed {
            offset,
            what: format!("non-zero {what} at offset {from}"),
        });
    }
    Ok(())
}

/// Checks an archive name: no NUL, not empty, no `..` component.
fn check_name(name: &[u8], offset: usize) -> Result<(), InitramfsError> {
    let bad = |why| {
        Err(InitramfsError::BadName {
            offset,
            name: String::from_utf8_lossy(name).into_owned(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty name");
    }
    if name.contains(&0) {
        return bad("the name contains a NUL byte");
    }
    if name.split(|&b| b == b'/').any(|c| c == b"..") {
        return bad("a `..` component would leave the archive's root");
    }
    if name
        .split(|&b| b == b'/')
        .any(|c| c.len() > MAX_COMPONENT_LEN)
    {
        return bad("a path component is longer than 255 bytes");
    }
    Ok(())
}

/// Checks a newc archive strictly and counts its entries.
///
/// Every entry must have the `070701` magic (or `070702`, whose checksum is then verified for
/// regular files, as Linux does), 8-digit hex fields (either case), a `namesize` of
/// 2..=[`MAX_NAME_SIZE`] that counts the name's terminating NUL, a name without NUL bytes,
/// `..` components or components longer than [`MAX_COMPONENT_LEN`], a known file type, zero
/// padding to 4-byte alignment, and name
/// and data inside the archive; directories, devices, FIFOs and sockets carry no data and
/// symbolic link targets are 1..=[`MAX_SYMLINK_LEN`] bytes without NUL. The archive must end
/// with a `TRAILER!!!` entry, after which only zero bytes may follow, or zero padding (a
/// multiple of 4 bytes) and another such archive, as Linux accepts. Names may start with `/`
/// or `./`; `.` is the root. Never panics, whatever the input.
pub fn validate(bytes: &[u8]) -> Result<Summary, InitramfsError> {
    if bytes.is_empty() {
        return Err(InitramfsError::Empty);
    }
    let mut s = Summary::default();
    let mut off = 0usize;
    loop {
        if off >= bytes.len() {
            return Err(InitramfsError::NoTrailer);
        }
        let magic = &bytes[off..bytes.len().min(off + 6)];
        if !NEWC_MAGIC.starts_with(magic) && !NEWC_CRC_MAGIC.starts_with(magic) {
            return Err(InitramfsError::BadMagic {
                offset: off,
                found: escape(magic),
            });
        }
        let header = bytes
            .get(off..off + HEADER_LEN)
            .ok_or(InitramfsError::Truncated {
                what: "entry header",
                offset: off,
                needed: HEADER_LEN as u64,
                available: (bytes.len() - off) as u64,
            })?;
        let mut f = [0u32; 13];
        for (i, v) in f.iter_mut().enumerate() {
            *v = hex_field(header, off, i)?;
        }
        let [_ino, mode, _uid, _gid, _nlink, _mtime, filesize, _, _, _, _, namesize, check] = f;
        let namesize = namesize as usize;
        if namesize == 0 {
            return Err(InitramfsError::Malformed {
                offset: off,
                what: "namesize is 0 (it counts the name's terminating NUL)".into(),
            });
        }
        if namesize > MAX_NAME_SIZE {
            return Err(InitramfsError::Malformed {
                offset: off,
                what: format!("namesize {namesize} is more than {MAX_NAME_SIZE}"),
            });
        }
        let name_at = off + HEADER_LEN;
        let name_nul = bytes
            .get(name_at..name_at + namesize)
            .ok_or(InitramfsError::Truncated {
                what: "entry name",
                offset: name_at,
                needed: namesize as u64,
                available: (bytes.len() - name_at) as u64,
            })?;
        let (name, nul) = name_nul.split_at(namesize - 1);
        if nul != [0] {
            return Err(InitramfsError::Malformed {
                offset: off,
                what: format!(
                    "name \"{}\" is not NUL-terminated within namesize",
                    escape(name)
                ),
            });
        }
        check_name(name, off)?;
        let data_at = align4(name_at + namesize);
        check_padding(bytes, off, name_at + namesize, data_at, "name padding")?;
        let filesize = filesize as usize;
        let available = bytes.len().saturating_sub(data_at);
        if filesize > available {
            return Err(InitramfsError::Truncated {
                what: "entry data",
                offset: data_at,
                needed: filesize as u64,
                available: available as u64,
            });
        }
        let data = &bytes[data_at..data_at + filesize];
        let end = align4(data_at + filesize);
        check_padding(bytes, off, data_at + filesize, end, "data padding")?;
        // The checksum covers a regular file's data only: Linux's unpacker checks nothing
        // else, and GNU `cpio -H crc` writes 0 for symbolic links (whose data is the target).
        if &header[..6] == NEWC_CRC_MAGIC && mode & S_IFMT == S_IFREG {
            let sum = data.iter().fold(0u32, |s, &b| s.wrapping_add(u32::from(b)));
            if sum != check {
                return Err(InitramfsError::Malformed {
                    offset: off,
                    what: format!(
                        "checksum mismatch for \"{}\": header {check:#x}, data {sum:#x}",
                        escape(name)
                    ),
                });
            }
        }

        if name == TRAILER_NAME {
            if filesize != 0 {
                return Err(InitramfsError::Malformed {
                    offset: off,
                    what: "the TRAILER!!! entry has data".into(),
                });
            }
            s.archives += 1;
            s.archive_len = end as u64;
            let rest = &bytes[end..];
            let zeros = rest.iter().take_while(|&&b| b == 0).count();
            if zeros == rest.len() {
                return Ok(s);
            }
            // Another archive may follow, 4-byte aligned.
            if !zeros.is_multiple_of(4) || !rest[zeros..].starts_with(b"07070") {
                return Err(InitramfsError::TrailingData {
                    offset: end + zeros,
                });
            }
            off = end + zeros;
            continue;
        }
        let no_data = |kind: &str| {
            if filesize == 0 {
                Ok(())
            } else {
                Err(InitramfsError::Malformed {
                    offset: off,
                    what: format!("{kind} \"{}\" has {filesize} bytes of data", escape(name)),
                })
            }
        };
        match mode & S_IFMT {
            S_IFREG => {
                s.files += 1;
                s.file_bytes += filesize as u64;
            }
            S_IFDIR => {
                no_data("directory")?;
                s.dirs += 1;
            }
            S_IFLNK => {
                if filesize == 0 || filesize > MAX_SYMLINK_LEN || data.contains(&0) {
                    return Err(InitramfsError::Malformed {
                        offset: off,
                        what: format!(
                            "symbolic link \"{}\" has a bad target ({filesize} bytes; 1..={MAX_SYMLINK_LEN} without NUL allowed)",
                            escape(name)
                        ),
                    });
                }
                s.symlinks += 1;
            }
            S_IFCHR | S_IFBLK | S_IFIFO | S_IFSOCK => {
                no_data("special file")?;
                s.special += 1;
            }
            _ => {
                return Err(InitramfsError::Malformed {
                    offset: off,
                    what: format!("unknown file type in mode {mode:o} of \"{}\"", escape(name)),
                })
            }
        }
        s.entries += 1;
        off = end;
    }
}

// ---------------------------------------------------------------------------------------------
// Loading

/// Whether `bytes` start with the gzip magic.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Decompresses gzip data (one or more members) into at most `limit` bytes.
pub fn gunzip(bytes: &[u8], limit: u64) -> Result<Vec<u8>, InitramfsError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(InitramfsError::Gzip)?;
    if out.len() as u64 > limit {
        return Err(InitramfsError::DecompressedTooBig { limit });
    }
    Ok(out)
}

/// Turns the bytes of an initial RAM disk — a newc archive, plain or gzip-compressed — into a
/// validated plain newc archive of at most `limit` bytes, as the guest receives it.
pub fn prepare(bytes: Vec<u8>, limit: u64) -> Result<(Vec<u8>, Summary), InitramfsError> {
    let plain = if is_gzip(&bytes) {
        gunzip(&bytes, limit)?
    } else {
        if bytes.len() as u64 > limit {
            return Err(InitramfsError::TooBig {
                size: bytes.len() as u64,
                limit,
            });
        }
        bytes
    };
    let summary = validate(&plain)?;
    Ok((plain, summary))
}

/// Reads an initial RAM disk file (plain or gzip-compressed newc) and [`prepare`]s it. The
/// file itself may be at most `limit` bytes too.
pub fn load_file(path: impl AsRef<Path>, limit: u64) -> Result<(Vec<u8>, Summary), InitramfsError> {
    let path = path.as_ref();
    let io_err = |source| InitramfsError::Io {
        path: path.to_owned(),
        source,
    };
    let file = fs::File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if meta.is_dir() {
        return Err(io_err(io::Error::from(io::ErrorKind::IsADirectory)));
    }
    if meta.len() > limit {
        return Err(InitramfsError::TooBig {
            size: meta.len(),
            limit,
        });
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > limit {
        return Err(InitramfsError::TooBig {
            size: bytes.len() as u64,
            limit,
        });
    }
    prepare(bytes, limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// One entry as the test reader sees it.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Entry {
        name: String,
        ino: u32,
        mode: u32,
        uid: u32,
        gid: u32,
        nlink: u32,
        mtime: u32,
        data: Vec<u8>,
    }

    /// A minimal newc reader, independent of [`validate`] (assumes a well-formed archive).
    fn read_all(bytes: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut off = 0;
        loop {
            let h = &bytes[off..off + HEADER_LEN];
            assert_eq!(&h[..6], NEWC_MAGIC);
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&h[6 + i * 8..14 + i * 8]).unwrap(), 16)
                    .unwrap()
            };
            let namesize = field(11) as usize;
            let filesize = field(6) as usize;
            let name = &bytes[off + HEADER_LEN..off + HEADER_LEN + namesize - 1];
            let data_at = align4(off + HEADER_LEN + namesize);
            let data = bytes[data_at..data_at + filesize].to_vec();
            off = align4(data_at + filesize);
            if name == TRAILER_NAME {
                assert_eq!(off, bytes.len());
                return out;
            }
            out.push(Entry {
                name: String::from_utf8(name.to_vec()).unwrap(),
                ino: field(0),
                mode: field(1),
                uid: field(2),
                gid: field(3),
                nlink: field(4),
                mtime: field(5),
                data,
            });
        }
    }

    /// A fresh empty temporary directory.
    fn tmpdir(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "pvmux-initramfs-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// A tree with nested directories, an empty file, a 1 MiB file, a symlink, odd-length
    /// names and a FIFO (skipped).
    fn sample_tree() -> PathBuf {
        let d = tmpdir("tree");
        fs::create_dir_all(d.join("bin")).unwrap();
        fs::create_dir_all(d.join("etc/deep/er")).unwrap();
        fs::write(d.join("bin/busybox"), b"#!busybox\n").unwrap();
        fs::set_permissions(d.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(d.join("empty"), b"").unwrap();
        let big: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        fs::write(d.join("etc/deep/er/big.bin"), &big).unwrap();
        fs::write(d.join("etc/a"), b"x").unwrap();
        fs::write(d.join("etc/abc"), b"yz").unwrap();
        fs::write(d.join("etc/abcde"), b"12345").unwrap();
        fs::set_permissions(d.join("etc/abcde"), fs::Permissions::from_mode(0o600)).unwrap();
        symlink("bin/busybox", d.join("sh")).unwrap();
        symlink("/nonexistent/target", d.join("dangling")).unwrap();
        let fifo = std::ffi::CString::new(d.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: `fifo` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        d
    }

    #[test]
    fn pack_then_validate_round_trips() {
        let d = sample_tree();
        let archive = pack_dir(&d).unwrap();
        assert_eq!(archive.len() % 4, 0);
        let s = validate(&archive).unwrap();
        assert_eq!(s.archive_len, archive.len() as u64);
        let entries = read_all(&archive);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/busybox",
                "dangling",
                "empty",
                "etc",
                "etc/a",
                "etc/abc",
                "etc/abcde",
                "etc/deep",
                "etc/deep/er",
                "etc/deep/er/big.bin",
                "sh",
            ]
        );
        assert_eq!(
            s,
            Summary {
                entries: 12,
                files: 6,
                dirs: 4,
                symlinks: 2,
                special: 0,
                archives: 1,
                file_bytes: 10 + 1 + 2 + 5 + (1 << 20),
                archive_len: archive.len() as u64,
            }
        );
        let by = |n: &str| entries.iter().find(|e| e.name == n).unwrap();
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.ino, i as u32 + 1);
            assert_eq!((e.uid, e.gid), (0, 0));
            let meta = fs::symlink_metadata(d.join(&e.name)).unwrap();
            assert_eq!(e.mode, meta.mode(), "{}", e.name);
            assert_eq!(e.mtime as i64, meta.mtime());
            let dir = e.mode & S_IFMT == S_IFDIR;
            assert_eq!(e.nlink, if dir { 2 } else { 1 });
            if dir {
                assert!(e.data.is_empty());
            }
        }
        assert_eq!(by("bin").mode & S_IFMT, S_IFDIR);
        assert_eq!(by("bin/busybox").mode, S_IFREG | 0o755);
        assert_eq!(by("bin/busybox").data, b"#!busybox\n");
        assert_eq!(by("etc/abcde").mode, S_IFREG | 0o600);
        assert_eq!(by("etc/abcde").data, b"12345");
        assert!(by("empty").data.is_empty());
        assert_eq!(
            by("etc/deep/er/big.bin").data,
            fs::read(d.join("etc/deep/er/big.bin")).unwrap()
        );
        assert_eq!(by("sh").mode & S_IFMT, S_IFLNK);
        assert_eq!(by("sh").data, b"bin/busybox");
        assert_eq!(by("dangling").data, b"/nonexistent/target");

        // Deterministic.
        assert_eq!(pack_dir(&d).unwrap(), archive);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn empty_dir_packs_to_a_lone_trailer() {
        let d = tmpdir("empty");
        let archive = pack_dir(&d).unwrap();
        assert_eq!(archive.len(), TRAILER_ENTRY_LEN);
        assert_eq!(validate(&archive).unwrap().entries, 0);
        assert!(read_all(&archive).is_empty());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn pack_errors_name_the_path() {
        let d = tmpdir("errs");
        let missing = d.join("missing");
        let e = pack_dir(&missing).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        fs::write(d.join("file"), b"abc").unwrap();
        assert!(matches!(
            pack_dir(d.join("file")),
            Err(InitramfsError::NotADirectory(_))
        ));
        // Too big for the limit.
        fs::write(d.join("big"), vec![1u8; 4096]).unwrap();
        let e = pack_dir_with_limit(&d, 2048).unwrap_err();
        assert!(
            matches!(e, InitramfsError::PackTooBig { limit: 2048, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("2048"), "{e}");
        assert!(pack_dir_with_limit(&d, 8192).is_ok());
        // Unreadable file (root can read anything, so only check when the open fails).
        let secret = d.join("secret");
        fs::write(&secret, b"s").unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
        if fs::File::open(&secret).is_err() {
            let e = pack_dir(&d).unwrap_err();
            assert!(matches!(e, InitramfsError::Io { .. }), "{e}");
            assert!(e.to_string().contains("secret"), "{e}");
        }
        fs::remove_dir_all(&d).unwrap();
    }

    /// A small valid archive built by hand: a directory, a file and a symlink.
    fn small_archive() -> Vec<u8> {
        let mut w = Writer {
            buf: Vec::new(),
            ino: 0,
            limit: DEFAULT_MAX_SIZE,
        };
        let p = Path::new("x");
        w.entry(p, b"dir", S_IFDIR | 0o755, 2, 1, &[]).unwrap();
        w.entry(p, b"dir/file", S_IFREG | 0o644, 1, 2, b"hello")
            .unwrap();
        w.entry(p, b"link", S_IFLNK | 0o777, 1, 3, b"dir/file")
            .unwrap();
        w.trailer(p).unwrap();
        w.buf
    }

    /// Rewrites header field `i` of the entry at `off`.
    fn set_field(a: &mut [u8], off: usize, i: usize, text: &[u8; 8]) {
        a[off + 6 + i * 8..off + 14 + i * 8].copy_from_slice(text);
    }

    /// An archive GNU cpio 2.13 made with `-H crc` (magic `070702`): the kernel's test data,
    /// described in `pv-kernel/src/fs/testdata/mod.rs` (directories, regular files, hard
    /// links, a FIFO and the symbolic link `link -> dir/file`).
    const GNU_CRC: &[u8] = include_bytes!("../../pv-kernel/src/fs/testdata/gnu-crc.cpio");

    /// Offset of the header of the member named `name` in `a`.
    fn member_at(a: &[u8], name: &[u8]) -> usize {
        let mut nul = name.to_vec();
        nul.push(0);
        let at = a
            .windows(nul.len())
            .position(|w| w == nul.as_slice())
            .expect("member name");
        at - HEADER_LEN
    }

    /// Field `i` of the header at `off`.
    fn field(a: &[u8], off: usize, i: usize) -> u32 {
        let text = std::str::from_utf8(&a[off + 6 + i * 8..off + 14 + i * 8]).unwrap();
        u32::from_str_radix(text, 16).unwrap()
    }

    #[test]
    fn gnu_cpio_crc_archive_with_a_symlink_validates() {
        // GNU cpio writes checksum 0 for the symbolic link (not the sum of its target's
        // bytes); Linux checks regular files only, and so does the host.
        let link = member_at(GNU_CRC, b"link");
        assert_eq!(&GNU_CRC[link..link + 6], NEWC_CRC_MAGIC);
        assert_eq!(field(GNU_CRC, link, 1) & S_IFMT, S_IFLNK);
        assert_eq!(
            field(GNU_CRC, link, 12),
            0,
            "the fixture's symlink has checksum 0"
        );
        let s = validate(GNU_CRC).unwrap();
        assert_eq!((s.files, s.dirs, s.symlinks, s.special), (6, 3, 1, 1));
        // Any checksum on a symbolic link is ignored...
        let mut a = GNU_CRC.to_vec();
        set_field(&mut a, link, 12, b"DEADBEEF");
        assert_eq!(validate(&a).unwrap().symlinks, 1);
        // ... but a regular file's data must still match its checksum.
        let file = member_at(GNU_CRC, b"dir/file");
        let data = align4(file + HEADER_LEN + field(GNU_CRC, file, 11) as usize);
        let mut a = GNU_CRC.to_vec();
        a[data] ^= 1;
        let e = validate(&a).unwrap_err().to_string();
        assert!(e.contains("checksum mismatch for \"dir/file\""), "{e}");
    }

    #[test]
    fn hand_built_archive_validates() {
        let a = small_archive();
        let s = validate(&a).unwrap();
        assert_eq!((s.entries, s.files, s.dirs, s.symlinks), (3, 1, 1, 1));
        assert_eq!(s.file_bytes, 5);
        assert_eq!(s.archives, 1);
        // Zero padding after the trailer (as in 512-byte blocked archives) is fine.
        let mut padded = a.clone();
        padded.resize(1024, 0);
        assert_eq!(validate(&padded).unwrap().archive_len, a.len() as u64);
        // So are concatenated archives, with or without padding between them.
        let mut cat = padded.clone();
        cat.extend_from_slice(&a);
        cat.extend_from_slice(&a);
        cat.extend_from_slice(&[0; 8]);
        let c = validate(&cat).unwrap();
        assert_eq!((c.archives, c.entries, c.files), (3, 9, 3));
        assert_eq!(c.archive_len, cat.len() as u64 - 8);
        // 070702 entries with the right checksum.
        let mut crc = a.clone();
        let second = align4(HEADER_LEN + 4);
        crc[second..second + 6].copy_from_slice(NEWC_CRC_MAGIC);
        let sum: u32 = b"hello".iter().map(|&b| u32::from(b)).sum();
        set_field(
            &mut crc,
            second,
            12,
            format!("{sum:08x}").as_bytes().try_into().unwrap(),
        );
        assert_eq!(validate(&crc).unwrap().files, 1);
        // Lower-case hex and names with "./" and "." (as `find . | cpio` writes) are fine.
        let mut w = Writer {
            buf: Vec::new(),
            ino: 0,
            limit: DEFAULT_MAX_SIZE,
        };
        let p = Path::new("x");
        w.entry(p, b".", S_IFDIR | 0o755, 2, 0, &[]).unwrap();
        w.entry(p, b"./a.b/..c", S_IFREG | 0o644, 1, 0, b"abc")
            .unwrap();
        w.trailer(p).unwrap();
        let lower = w.buf.to_ascii_lowercase();
        assert!(validate(&w.buf).is_ok());
        assert!(
            validate(&lower).is_err(),
            "lower-cases the trailer name too"
        );
        let mut b = w.buf.clone();
        b[6..6 + 12 * 8].make_ascii_lowercase();
        assert!(validate(&b).is_ok());
    }

    #[test]
    fn every_malformation_is_an_error() {
        let good = small_archive();
        let second = align4(HEADER_LEN + 4); // offset of "dir/file"
        let check = |a: &[u8], want: &str| {
            let e = validate(a).expect_err(want);
            assert!(e.to_string().contains(want), "{e} lacks {want:?}");
        };
        check(&[], "empty");
        check(b"hello, world\n", "not a cpio newc archive");
        let mut a = good.clone();
        a[second..second + 6].copy_from_slice(b"070707");
        check(&a, &format!("bad cpio magic \"070707\" at offset {second}"));
        let mut a = good.clone();
        set_field(&mut a, 0, 6, b"0000000g");
        check(&a, "filesize is not 8 hex digits");
        let mut a = good.clone();
        set_field(&mut a, 0, 1, b" 41ED000");
        check(&a, "mode is not 8 hex digits");
        check(&good[..50], "entry header");
        check(&good[..HEADER_LEN + 2], "entry name");
        check(&good[..second + HEADER_LEN + 9 + 2], "entry data");
        check(&good[..second], "no TRAILER!!!");
        let mut a = good.clone();
        set_field(&mut a, 0, 11, b"00000000");
        check(&a, "namesize is 0");
        let mut a = good.clone();
        set_field(&mut a, 0, 11, b"FFFFFFFF");
        check(&a, "namesize 4294967295");
        let mut a = good.clone();
        set_field(&mut a, second, 6, b"FFFFFFF0");
        check(&a, "truncated");
        let mut a = good.clone();
        set_field(&mut a, second, 6, b"00000009"); // the next header is misaligned
        assert!(validate(&a).is_err());
        let mut a = good.clone();
        set_field(&mut a, 0, 11, b"00000003"); // "di" + 'r' where the NUL should be
        check(&a, "not NUL-terminated");
        let mut a = good.clone();
        a[second + HEADER_LEN..second + HEADER_LEN + 8].copy_from_slice(b"../x/abc");
        check(&a, "`..` component");
        let mut a = good.clone();
        a[second + HEADER_LEN + 3] = 0; // "dir\0file"
        check(&a, "NUL byte");
        let mut a = good.clone();
        set_field(&mut a, 0, 1, b"000F01ED");
        check(&a, "unknown file type");
        let mut a = good.clone();
        set_field(&mut a, second, 1, b"000041A4"); // the file becomes a directory with data
        check(&a, "directory \"dir/file\" has 5 bytes");
        let mut a = good.clone();
        a.extend_from_slice(b"garbage!");
        check(&a, "garbage after its TRAILER!!!");
        let mut a = good.clone();
        a.extend_from_slice(&[0, 0]);
        a.extend_from_slice(&good);
        check(
            &a,
            &format!(
                "garbage after its TRAILER!!! entry at offset {}",
                good.len() + 2
            ),
        );
        let mut w = Writer {
            buf: Vec::new(),
            ino: 0,
            limit: DEFAULT_MAX_SIZE,
        };
        w.entry(Path::new("x"), &[b'n'; 256], S_IFREG, 1, 0, b"")
            .unwrap();
        w.trailer(Path::new("x")).unwrap();
        check(&w.buf, "longer than 255 bytes");
        let mut crc = good.clone();
        crc[second..second + 6].copy_from_slice(NEWC_CRC_MAGIC);
        check(&crc, "checksum mismatch for \"dir/file\"");
        let mut a = good.clone();
        let n = a.len();
        a[n - 1] = 1; // trailer's name padding
        check(&a, "non-zero name padding");
        let mut a = good.clone();
        set_field(&mut a, 0, 11, b"00000002"); // name "d"
        check(&a, "");
        // Missing trailer, archive otherwise intact.
        let trailer_at = good.len() - TRAILER_ENTRY_LEN;
        check(&good[..trailer_at], "no TRAILER!!!");
    }

    #[test]
    fn gzip_is_decompressed_then_validated() {
        let plain = small_archive();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&plain).unwrap();
        let gz = enc.finish().unwrap();
        assert!(is_gzip(&gz) && !is_gzip(&plain));
        let (out, s) = prepare(gz.clone(), DEFAULT_MAX_SIZE).unwrap();
        assert_eq!(out, plain);
        assert_eq!(s.entries, 3);
        assert_eq!(prepare(plain.clone(), DEFAULT_MAX_SIZE).unwrap().0, plain);
        // Decompressed-size cap.
        assert!(matches!(
            prepare(gz.clone(), 100),
            Err(InitramfsError::DecompressedTooBig { limit: 100 })
        ));
        assert!(matches!(
            prepare(plain.clone(), 100),
            Err(InitramfsError::TooBig { limit: 100, .. })
        ));
        // Corrupt and truncated gzip.
        let e = prepare(gz[..gz.len() / 2].to_vec(), DEFAULT_MAX_SIZE).unwrap_err();
        assert!(matches!(e, InitramfsError::Gzip(_)), "{e}");
        let mut bad = gz.clone();
        bad[12] ^= 0xff;
        assert!(prepare(bad, DEFAULT_MAX_SIZE).is_err());
        // gzip of something that is not a cpio archive.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"just text").unwrap();
        let e = prepare(enc.finish().unwrap(), DEFAULT_MAX_SIZE).unwrap_err();
        assert!(
            matches!(e, InitramfsError::BadMagic { offset: 0, .. }),
            "{e}"
        );
    }

    #[test]
    fn load_file_reads_plain_and_gzip_files() {
        let d = tmpdir("load");
        let plain = small_archive();
        fs::write(d.join("a.cpio"), &plain).unwrap();
        assert_eq!(
            load_file(d.join("a.cpio"), DEFAULT_MAX_SIZE).unwrap().0,
            plain
        );
        let e = load_file(d.join("nope"), DEFAULT_MAX_SIZE).unwrap_err();
        assert!(
            e.to_string().contains("cannot read") && e.to_string().contains("nope"),
            "{e}"
        );
        assert!(load_file(&d, DEFAULT_MAX_SIZE).is_err());
        assert!(matches!(
            load_file(d.join("a.cpio"), 16),
            Err(InitramfsError::TooBig { .. })
        ));
        fs::remove_dir_all(&d).unwrap();
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// One edit of an archive.
        #[derive(Clone, Debug)]
        enum Mutation {
            Set(usize, u8),
            HexDigit(usize, u8),
            Truncate(usize),
            Insert(usize, Vec<u8>),
            Remove(usize, usize),
        }

        fn mutation() -> impl Strategy<Value = Mutation> {
            prop_oneof![
                3 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
                3 => (any::<usize>(), 0u8..16).prop_map(|(i, d)| Mutation::HexDigit(i, d)),
                1 => any::<usize>().prop_map(Mutation::Truncate),
                1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
                    .prop_map(|(i, v)| Mutation::Insert(i, v)),
                1 => (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
            ]
        }

        fn apply(a: &mut Vec<u8>, m: &Mutation) {
            if a.is_empty() {
                return;
            }
            match *m {
                Mutation::Set(i, b) => {
                    let n = a.len();
                    a[i % n] = b;
                }
                Mutation::HexDigit(i, d) => {
                    let n = a.len();
                    a[i % n] = b"0123456789ABCDEF"[d as usize];
                }
                Mutation::Truncate(i) => a.truncate(i % a.len()),
                Mutation::Insert(i, ref v) => {
                    let at = i % a.len();
                    a.splice(at..at, v.iter().copied());
                }
                Mutation::Remove(i, n) => {
                    let at = i % a.len();
                    let end = (at + n).min(a.len());
                    a.drain(at..end);
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Arbitrary bytes never panic the validator (or the gzip path).
            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
                let _ = validate(&bytes);
                let mut magic = NEWC_MAGIC.to_vec();
                magic.extend_from_slice(&bytes);
                let _ = validate(&magic);
                let mut gz = GZIP_MAGIC.to_vec();
                gz.extend_from_slice(&bytes);
                let _ = prepare(gz, 1 << 20);
            }

            /// Mutations of a valid archive never panic, and whatever is still accepted is
            /// readable by a simple reader within bounds.
            #[test]
            fn mutated_archives_never_panic(ms in prop::collection::vec(mutation(), 1..6)) {
                let mut a = small_archive();
                for m in &ms {
                    apply(&mut a, m);
                }
                if let Ok(s) = validate(&a) {
                    prop_assert!(s.archive_len as usize <= a.len());
                    prop_assert!(s.entries <= a.len() as u64 / HEADER_LEN as u64);
                }
            }
        }
    }
}
