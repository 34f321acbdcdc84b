//! A strict parser for cpio "newc" archives (magic `070701`, and `070702` with checksums).
//!
//! The archive comes from the host, which validated it, but the guest does not rely on that:
//! every field is bounds-checked with checked arithmetic, names must be NUL-terminated,
//! relative after normalisation and free of `..`, and nothing here can panic on garbage.
//! Concatenated archives (each ending in `TRAILER!!!`, separated by zero padding) are
//! accepted, as Linux does.
//!
//! Pure code (only `core`), so the host tests compile it too.

use core::fmt;

/// Length of a newc header.
pub(crate) const HEADER_LEN: usize = 110;
/// Longest accepted name (bytes, without the NUL), like `PATH_MAX - 1`.
pub(crate) const NAME_MAX_LEN: usize = 4095;
/// Longest accepted path component.
pub(crate) const COMPONENT_MAX_LEN: usize = 255;
/// The name of the end-of-archive entry.
const TRAILER: &[u8] = b"TRAILER!!!";

/// File type bits of `mode`.
pub(crate) const S_IFMT: u32 = 0o170_000;

/// One archive member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    /// Offset of the header in the archive.
    pub(crate) offset: usize,
    /// The name as stored (without the NUL); see [`components`] for the normalised path.
    pub(crate) name: &'a [u8],
    /// Inode number in the archive (hard links share it).
    pub(crate) ino: u32,
    /// Type and permission bits.
    pub(crate) mode: u32,
    /// Owner.
    pub(crate) uid: u32,
    /// Group.
    pub(crate) gid: u32,
    /// Number of links.
    pub(crate) nlink: u32,
    /// Modification time (seconds since the epoch).
    pub(crate) mtime: u32,
    /// Device of the original file `(major, minor)` (hard links share it).
    pub(crate) dev: (u32, u32),
    /// Device number for device nodes `(major, minor)`.
    pub(crate) rdev: (u32, u32),
    /// The file data (the link target for symbolic links).
    pub(crate) data: &'a [u8],
}

/// What is wrong with an archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The archive ends inside a header, name or data.
    Truncated,
    /// A header does not start with `070701`/`070702`.
    BadMagic,
    /// A header field is not 8 hexadecimal digits.
    BadField(&'static str),
    /// `namesize` is 0, 1 or over [`NAME_MAX_LEN`] + 1, or the name has no/an early NUL.
    BadName,
    /// A name contains a `..` component.
    DotDot,
    /// A component is longer than [`COMPONENT_MAX_LEN`].
    ComponentTooLong,
    /// A `070702` entry's checksum does not match its data.
    Checksum,
    /// Directories and device nodes must have no data; symlinks need a target without NULs.
    BadSize,
    /// The type bits are not a known file type.
    BadType,
    /// The archive has no `TRAILER!!!` entry.
    NoTrailer,
    /// Bytes after the trailer are neither zero padding nor another archive.
    Garbage,
}

/// A parse error and where it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Error {
    /// Byte offset in the archive.
    pub(crate) offset: usize,
    /// What is wrong.
    pub(crate) kind: ErrorKind,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::Truncated => "truncated archive",
            ErrorKind::BadMagic => "bad header magic (not cpio newc)",
            ErrorKind::BadField(field) => {
                return write!(f, "bad {field} field at offset {}", self.offset)
            }
            ErrorKind::BadName => "bad name",
            ErrorKind::DotDot => "name contains '..'",
            ErrorKind::ComponentTooLong => "name component too long",
            ErrorKind::Checksum => "checksum mismatch",
            ErrorKind::BadSize => "bad size for the entry's type",
            ErrorKind::BadType => "unknown file type",
            ErrorKind::NoTrailer => "no TRAILER!!! entry",
            ErrorKind::Garbage => "garbage after the trailer",
        };
        write!(f, "{what} at offset {}", self.offset)
    }
}

/// Iterates over the members of a newc archive (without the trailers). After the first error
/// the iterator yields that error and then ends.
pub(crate) struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Parser<'a> {
    /// A parser over `buf`.
    pub(crate) const fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            done: false,
        }
    }

    /// `buf[start..start + len]`, or a truncation error.
    fn slice(&self, start: usize, len: usize) -> Result<&'a [u8], Error> {
        let err = Error {
            offset: start,
            kind: ErrorKind::Truncated,
        };
        let end = start.checked_add(len).ok_or(err)?;
        self.buf.get(start..end).ok_or(err)
    }

    /// Parses the member at `self.pos`; `Ok(None)` at a trailer that ends the input.
    fn parse_one(&mut self) -> Result<Option<Entry<'a>>, Error> {
        loop {
            let at = self.pos;
            // The magic first (as far as present), so garbage is not reported as truncation.
            let magic = &self.buf[at..self.buf.len().min(at + 6)];
            if !b"070701".starts_with(magic) && !b"070702".starts_with(magic) {
                return Err(Error {
                    offset: at,
                    kind: ErrorKind::BadMagic,
                });
            }
            let header = self.slice(at, HEADER_LEN)?;
            let with_crc = &header[..6] == b"070702";
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
            let mut f = [0u32; 13];
            for (i, name) in FIELDS.iter().enumerate() {
                let start = 6 + 8 * i;
                f[i] = hex8(&header[start..start + 8]).ok_or(Error {
                    offset: at + start,
                    kind: ErrorKind::BadField(name),
                })?;
            }
            let [ino, mode, uid, gid, nlink, mtime, filesize, dmaj, dmin, rmaj, rmin, namesize, check] =
                f;
            let bad_name = Error {
                offset: at,
                kind: ErrorKind::BadName,
            };
            let namesize = namesize as usize;
            if !(2..=NAME_MAX_LEN + 1).contains(&namesize) {
                return Err(bad_name);
            }
            let name_at = at + HEADER_LEN;
            let raw_name = self.slice(name_at, namesize)?;
            let (last, name) = raw_name.split_last().ok_or(bad_name)?;
            if *last != 0 || name.contains(&0) {
                return Err(bad_name);
            }
            let data_at = align4(name_at.checked_add(namesize).ok_or(bad_name)?).ok_or(bad_name)?;
            let data = self.slice(data_at, filesize as usize)?;
            let next = data_at
                .checked_add(data.len())
                .and_then(align4)
                .ok_or(Error {
                    offset: at,
                    kind: ErrorKind::Truncated,
                })?;
            if with_crc {
                let sum = data.iter().fold(0u32, |s, &b| s.wrapping_add(u32::from(b)));
                if sum != check {
                    return Err(Error {
                        offset: at,
                        kind: ErrorKind::Checksum,
                    });
                }
            }
            // Padding after the last member may be missing when the input is cut exactly.
            self.pos = next.min(self.buf.len());
            if name == TRAILER {
                // Zero padding, then either the end or another archive.
                let rest = &self.buf[self.pos..];
                let zeros = rest.iter().take_while(|&&b| b == 0).count();
                if zeros == rest.len() {
                    return Ok(None);
                }
                let resume = self.pos + zeros;
                if zeros % 4 != 0 || !rest[zeros..].starts_with(b"07070") {
                    return Err(Error {
                        offset: resume,
                        kind: ErrorKind::Garbage,
                    });
                }
                self.pos = resume;
                continue;
            }
            let entry = Entry {
                offset: at,
                name,
                ino,
                mode,
                uid,
                gid,
                nlink,
                mtime,
                dev: (dmaj, dmin),
                rdev: (rmaj, rmin),
                data,
            };
            check_entry(&entry)?;
            return Ok(Some(entry));
        }
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.pos >= self.buf.len() {
            self.done = true;
            return Some(Err(Error {
                offset: self.pos,
                kind: ErrorKind::NoTrailer,
            }));
        }
        match self.parse_one() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// File types a newc archive may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link (data = target).
    Symlink,
    /// A character or block device, FIFO or socket.
    Special,
}

/// The kind of `mode`, or `None` for unknown type bits.
pub(crate) const fn kind(mode: u32) -> Option<Kind> {
    Some(match mode & S_IFMT {
        0o100_000 => Kind::Regular,
        0o040_000 => Kind::Directory,
        0o120_000 => Kind::Symlink,
        0o020_000 | 0o060_000 | 0o010_000 | 0o140_000 => Kind::Special,
        _ => return None,
    })
}

/// Type-dependent and name checks of a member.
fn check_entry(e: &Entry<'_>) -> Result<(), Error> {
    let err = |kind| Error {
        offset: e.offset,
        kind,
    };
    let Some(k) = kind(e.mode) else {
        return Err(err(ErrorKind::BadType));
    };
    match k {
        Kind::Directory | Kind::Special if !e.data.is_empty() => {
            return Err(err(ErrorKind::BadSize));
        }
        Kind::Symlink
            if e.data.is_empty() || e.data.len() > NAME_MAX_LEN || e.data.contains(&0) =>
        {
            return Err(err(ErrorKind::BadSize));
        }
        _ => {}
    }
    for c in components(e.name) {
        if c == b".." {
            return Err(err(ErrorKind::DotDot));
        }
        if c.len() > COMPONENT_MAX_LEN {
            return Err(err(ErrorKind::ComponentTooLong));
        }
    }
    Ok(())
}

/// The normalised components of a member name: leading `/` and `./`, empty components and
/// `.` are dropped (so `.` and `/` name the root, with no components).
pub(crate) fn components(name: &[u8]) -> impl Iterator<Item = &[u8]> {
    name.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// Parses 8 hexadecimal digits (either case).
fn hex8(digits: &[u8]) -> Option<u32> {
    if digits.len() != 8 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        Some((acc << 4) | u32::from(v))
    })
}

/// `n` rounded up to a multiple of 4.
fn align4(n: usize) -> Option<usize> {
    Some(n.checked_add(3)? & !3)
}
