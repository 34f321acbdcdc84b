//! A strict parser for cpio "newc" archives (magic `070701`, and `070702` with checksums).
//!
//! `070702` checksums are verified for regular files, as Linux does.
//!
//! The archive comes from the host, which validated it, but the guest does not rely on that:
//! every field is bounds-checked with checked arithmetic, names must be NUL-terminated,
//! relative after normalisation and free of `..`, and nothing here can panic on garbage.
//! Concatenated archives (each ending in `TRAILER!!!`, separated by zero padding) are
//! accepted, as Linux does.
//!
//! Pure code (only `core`), unit-tested on the host (`cargo test -p pvmux-kernel`).

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
            // The checksum covers a regular file's data only (Linux's unpacker checks nothing
            // else, and GNU `cpio -H crc` writes 0 for symbolic links).
            if with_crc && kind(mode) == Some(Kind::Regular) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::testdata::{self, Header, Newc, CHR, DIR, FIFO, LNK, REG};

    /// All members, or the first error.
    fn parse(buf: &[u8]) -> Result<Vec<Entry<'_>>, Error> {
        Parser::new(buf).collect()
    }

    /// The error kind of a bad archive (and that the parser then stops).
    fn kind_of(buf: &[u8]) -> ErrorKind {
        let mut p = Parser::new(buf);
        let e = loop {
            match p.next() {
                Some(Ok(_)) => continue,
                Some(Err(e)) => break e,
                None => panic!("archive accepted"),
            }
        };
        assert!(p.next().is_none(), "the parser goes on after {e}");
        e.kind
    }

    fn names<'a>(entries: &[Entry<'a>]) -> Vec<&'a [u8]> {
        entries.iter().map(|e| e.name).collect()
    }

    #[test]
    fn gnu_cpio_newc_archive_parses_member_by_member() {
        let entries = parse(testdata::GNU_NEWC).unwrap();
        assert_eq!(
            names(&entries),
            [
                &b"."[..],
                b"dir",
                b"dir/file",
                b"dir/sub",
                b"dir/sub/deep.txt",
                b"empty",
                b"fifo",
                b"hard1",
                b"hard2",
                b"link",
                b"top.txt"
            ]
        );
        let by = |n: &[u8]| *entries.iter().find(|e| e.name == n).unwrap();
        for e in &entries {
            assert_eq!((e.uid, e.gid, e.mtime), (1000, 1000, testdata::GNU_MTIME));
        }
        assert_eq!(by(b".").mode, DIR | 0o755);
        assert_eq!(by(b"dir").mode, DIR | 0o700);
        assert_eq!(by(b"dir/file").mode, REG | 0o644);
        assert_eq!(by(b"dir/file").data, testdata::gnu_file_bytes());
        assert_eq!(by(b"dir/sub/deep.txt").data, b"deep\n");
        assert_eq!(
            (by(b"empty").mode, by(b"empty").data),
            (REG | 0o600, &b""[..])
        );
        assert_eq!(by(b"fifo").mode, FIFO | 0o640);
        assert_eq!(kind(by(b"fifo").mode), Some(Kind::Special));
        assert_eq!(
            (by(b"link").mode, by(b"link").data),
            (LNK | 0o777, &b"dir/file"[..])
        );
        assert_eq!(by(b"top.txt").data, b"hello\n");
        // GNU cpio stores a hard-linked file's data once, on its last name.
        let (h1, h2) = (by(b"hard1"), by(b"hard2"));
        assert_eq!((h1.nlink, h2.nlink), (2, 2));
        assert_eq!((h1.ino, h1.dev), (h2.ino, h2.dev));
        assert_eq!((h1.data, h2.data), (&b""[..], &b"linked\n"[..]));
        // Offsets point at each header, in order, 4-aligned.
        assert_eq!(entries[0].offset, 0);
        assert!(entries.windows(2).all(|w| w[0].offset < w[1].offset));
        assert!(entries.iter().all(|e| e.offset % 4 == 0));
    }

    #[test]
    fn gnu_cpio_crc_archive_parses_and_checksums_are_checked() {
        let plain = parse(testdata::GNU_NEWC).unwrap();
        let crc = parse(testdata::GNU_CRC).unwrap();
        assert_eq!(plain.len(), crc.len());
        for (a, b) in plain.iter().zip(&crc) {
            assert_eq!((a.name, a.mode, a.data), (b.name, b.mode, b.data));
        }
        // Flip one byte of dir/file's data: the sum no longer matches.
        let file = crc.iter().find(|e| e.name == b"dir/file").unwrap();
        let at = file.data.as_ptr() as usize - testdata::GNU_CRC.as_ptr() as usize;
        let mut bad = testdata::GNU_CRC.to_vec();
        bad[at] ^= 1;
        assert_eq!(
            parse(&bad).unwrap_err(),
            Error {
                offset: file.offset,
                kind: ErrorKind::Checksum
            }
        );
    }

    #[test]
    fn the_host_packers_archives_parse_back() {
        let dir = std::env::temp_dir().join(format!("pvmux-kernel-cpio-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/f"), b"packed\n").unwrap();
        std::fs::write(dir.join("top"), vec![9u8; 5000]).unwrap();
        std::os::unix::fs::symlink("a/b/f", dir.join("l")).unwrap();
        let archive = pvmux_host::initramfs::pack_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let entries = parse(&archive).unwrap();
        assert_eq!(names(&entries), [&b"a"[..], b"a/b", b"a/b/f", b"l", b"top"]);
        assert_eq!(entries[2].data, b"packed\n");
        assert_eq!(kind(entries[3].mode), Some(Kind::Symlink));
        assert_eq!(entries[3].data, b"a/b/f");
        assert_eq!(entries[4].data, vec![9u8; 5000]);
        assert_eq!(kind(entries[0].mode), Some(Kind::Directory));
    }

    #[test]
    fn mutants_never_panic_and_whatever_the_host_accepts_parses() {
        // xorshift: deterministic mutations (bit flips, truncations, digit splices, cuts).
        let base = testdata::GNU_NEWC;
        pvmux_host::initramfs::validate(base).expect("the host accepts the GNU archive");
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut host_accepted, mut guest_accepted) = (0, 0);
        for _ in 0..20_000 {
            let mut m = base.to_vec();
            let i = (next() as usize) % m.len();
            match next() % 4 {
                0 => m[i] ^= 1 << (next() % 8),
                1 => m.truncate(i),
                2 => m[i] = b"0123456789abcdefABCDEFxyz/.\0"[(next() % 28) as usize],
                _ => {
                    let len = (next() as usize % 16).min(m.len() - i);
                    m.drain(i..i + len);
                }
            }
            let guest = parse(&m); // must not panic
            if pvmux_host::initramfs::validate(&m).is_ok() {
                host_accepted += 1;
                assert!(guest.is_ok(), "a host-valid archive refused: {guest:?}");
            }
            guest_accepted += usize::from(guest.is_ok());
        }
        assert!(
            host_accepted > 100,
            "too few valid mutants ({host_accepted})"
        );
        assert!(guest_accepted >= host_accepted);
    }

    #[test]
    fn an_archive_of_only_a_trailer_is_empty_and_nothing_is_no_archive() {
        assert_eq!(parse(&Newc::new().finish()), Ok(vec![]));
        assert_eq!(
            parse(b""),
            Err(Error {
                offset: 0,
                kind: ErrorKind::NoTrailer
            })
        );
        let no_trailer = Newc::new().file(b"f", b"x").bytes();
        assert_eq!(kind_of(&no_trailer), ErrorKind::NoTrailer);
        let mut p = Parser::new(&no_trailer);
        assert!(
            matches!(p.next(), Some(Ok(e)) if e.name == b"f"),
            "members come first"
        );
    }

    #[test]
    fn every_truncation_is_an_error_and_never_a_panic() {
        let archive = Newc::new()
            .dir(b"d")
            .file(b"d/some file", b"0123456789abcdef")
            .symlink(b"l", b"d/some file")
            .finish();
        for cut in 0..archive.len() {
            let k = parse(&archive[..cut]).map(|_| ());
            assert!(
                matches!(
                    k,
                    Err(Error {
                        kind: ErrorKind::Truncated | ErrorKind::NoTrailer,
                        ..
                    })
                ),
                "cut at {cut}: {k:?}"
            );
        }
        assert_eq!(parse(&archive).unwrap().len(), 3);
    }

    #[test]
    fn the_magic_must_be_newc() {
        let good = Newc::new().file(b"f", b"x").finish();
        for magic in [
            &b"070707"[..],
            b"070700",
            b"070703",
            b"\x1f\x8b\x08\x00\x00\x00",
        ] {
            let mut bad = good.clone();
            bad[..6].copy_from_slice(magic);
            assert_eq!(
                parse(&bad).unwrap_err(),
                Error {
                    offset: 0,
                    kind: ErrorKind::BadMagic
                }
            );
        }
        // A second member with a bad magic is reported at its own offset.
        let two = Newc::new().file(b"f", b"x").file(b"g", b"y").finish();
        let second = parse(&two).unwrap()[1].offset;
        let mut bad = two.clone();
        bad[second] = b'1';
        assert_eq!(
            parse(&bad).unwrap_err(),
            Error {
                offset: second,
                kind: ErrorKind::BadMagic
            }
        );
        // Garbage shorter than a header is garbage, not a truncation.
        assert_eq!(kind_of(b"hello"), ErrorKind::BadMagic);
        assert_eq!(kind_of(b"0707"), ErrorKind::Truncated);
    }

    #[test]
    fn header_fields_must_be_eight_hex_digits_in_either_case() {
        let good = Newc::new().file(b"f", b"x").finish();
        let mut lower = good.clone();
        lower[6..HEADER_LEN].make_ascii_lowercase();
        assert_eq!(parse(&lower).unwrap().len(), 1);
        for (field, at) in [
            ("ino", 6),
            ("mode", 14),
            ("filesize", 6 + 6 * 8),
            ("check", 6 + 12 * 8 + 7),
        ] {
            for junk in [b'g', b' ', b'-', b'+', 0] {
                let mut bad = good.clone();
                bad[at] = junk;
                let offset = at - (at - 6) % 8;
                assert_eq!(
                    parse(&bad).unwrap_err(),
                    Error {
                        offset,
                        kind: ErrorKind::BadField(field)
                    },
                    "{field} with {junk:?}"
                );
            }
        }
        let e = parse(&{
            let mut b = good.clone();
            b[14] = b'x';
            b
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "bad mode field at offset 14");
    }

    #[test]
    fn names_must_be_nul_terminated_and_sized() {
        let h = Header::new(2, REG | 0o644);
        for namesize in [0, 1] {
            let a = Newc::new()
                .member(
                    Header {
                        namesize: Some(namesize),
                        ..h
                    },
                    b"",
                    b"",
                )
                .finish();
            assert_eq!(kind_of(&a), ErrorKind::BadName, "namesize {namesize}");
        }
        let a = Newc::new()
            .member(
                Header {
                    namesize: Some(NAME_MAX_LEN as u32 + 2),
                    ..h
                },
                b"x",
                b"",
            )
            .finish();
        assert_eq!(kind_of(&a), ErrorKind::BadName);
        // namesize one short: the last name byte is not a NUL.
        let a = Newc::new()
            .member(
                Header {
                    namesize: Some(2),
                    ..h
                },
                b"ab",
                b"",
            )
            .finish();
        assert_eq!(kind_of(&a), ErrorKind::BadName);
        let a = Newc::new().file(b"a\0b", b"").finish();
        assert_eq!(kind_of(&a), ErrorKind::BadName, "a NUL inside the name");
        // The longest name: NAME_MAX_LEN bytes of short components.
        let mut long = b"d/".repeat(NAME_MAX_LEN / 2);
        long.push(b'f');
        assert_eq!(long.len(), NAME_MAX_LEN);
        let a = Newc::new().file(&long, b"x").finish();
        assert_eq!(parse(&a).unwrap()[0].name, long);
    }

    #[test]
    fn names_must_not_climb_or_have_overlong_components() {
        for name in [&b".."[..], b"../x", b"a/../b", b"a/..", b"/.."] {
            let a = Newc::new().file(name, b"").finish();
            assert_eq!(kind_of(&a), ErrorKind::DotDot, "{name:?}");
        }
        for name in [&b"..."[..], b"..a", b"a..", b"./a", b"/abs/x"] {
            let a = Newc::new().file(name, b"").finish();
            assert!(parse(&a).is_ok(), "{name:?}");
        }
        let ok = [b'n'; COMPONENT_MAX_LEN];
        assert!(parse(&Newc::new().file(&ok, b"").finish()).is_ok());
        let long = [b'n'; COMPONENT_MAX_LEN + 1];
        let a = Newc::new()
            .dir(b"d")
            .file(&[&b"d/"[..], &long].concat(), b"")
            .finish();
        let e = parse(&a).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ComponentTooLong);
        assert_eq!(
            e.offset,
            Newc::new().dir(b"d").bytes().len(),
            "the second member"
        );
    }

    #[test]
    fn sizes_must_fit_the_type() {
        let a = Newc::new()
            .member(Header::new(2, DIR | 0o755), b"d", b"x")
            .finish();
        assert_eq!(kind_of(&a), ErrorKind::BadSize, "a directory with data");
        let a = Newc::new()
            .member(Header::new(2, CHR | 0o600), b"c", b"x")
            .finish();
        assert_eq!(kind_of(&a), ErrorKind::BadSize, "a device with data");
        let a = Newc::new().symlink(b"l", b"").finish();
        assert_eq!(kind_of(&a), ErrorKind::BadSize, "an empty link target");
        let a = Newc::new().symlink(b"l", b"a\0b").finish();
        assert_eq!(kind_of(&a), ErrorKind::BadSize, "a NUL in a link target");
        let a = Newc::new()
            .symlink(b"l", &vec![b't'; NAME_MAX_LEN + 1])
            .finish();
        assert_eq!(kind_of(&a), ErrorKind::BadSize, "an overlong link target");
        let a = Newc::new()
            .symlink(b"l", &vec![b't'; NAME_MAX_LEN])
            .finish();
        assert!(parse(&a).is_ok());
        let a = Newc::new()
            .member(Header::new(2, CHR | 0o600), b"c", b"")
            .finish();
        assert_eq!(kind(parse(&a).unwrap()[0].mode), Some(Kind::Special));
    }

    #[test]
    fn unknown_file_types_are_refused() {
        for mode in [0, 0o644, 0o030_644, 0o070_000, 0o170_000] {
            let a = Newc::new().member(Header::new(2, mode), b"x", b"").finish();
            assert_eq!(kind_of(&a), ErrorKind::BadType, "{mode:o}");
        }
        for (mode, k) in [
            (REG, Kind::Regular),
            (DIR, Kind::Directory),
            (LNK, Kind::Symlink),
            (CHR, Kind::Special),
            (0o060_000, Kind::Special),
            (FIFO, Kind::Special),
            (0o140_000, Kind::Special),
        ] {
            assert_eq!(kind(mode | 0o7777), Some(k));
        }
    }

    #[test]
    fn checksums_count_only_with_the_crc_magic() {
        let h = Header {
            check: Some(12345),
            ..Header::new(2, REG | 0o644)
        };
        assert!(parse(&Newc::new().member(h, b"f", b"abc").finish()).is_ok());
        let a = Newc::crc().member(h, b"f", b"abc").finish();
        assert_eq!(kind_of(&a), ErrorKind::Checksum);
        let a = Newc::crc().file(b"f", &[0xff; 1000]).finish();
        assert_eq!(parse(&a).unwrap()[0].data.len(), 1000);
        // Only a regular file's data is summed: links and directories carry any check value
        // (GNU cpio writes 0 for a link).
        let l = Header {
            check: Some(0),
            ..Header::new(3, LNK | 0o777)
        };
        let d = Header {
            check: Some(99),
            ..Header::new(4, DIR | 0o755)
        };
        let a = Newc::crc()
            .member(l, b"l", b"target")
            .member(d, b"d", b"")
            .finish();
        assert_eq!(parse(&a).unwrap().len(), 2);
    }

    #[test]
    fn after_the_trailer_only_zero_padding_or_another_archive() {
        let one = Newc::new().file(b"a", b"1").finish();
        let padded = Newc::new()
            .file(b"a", b"1")
            .trailer()
            .raw(&[0; 512])
            .bytes();
        assert_eq!(parse(&padded).unwrap().len(), 1);
        // Concatenated archives (as the kernel's early-userspace loaders allow).
        let two = Newc::new()
            .file(b"a", b"1")
            .trailer()
            .raw(&[0; 8])
            .file(b"b", b"2")
            .finish();
        assert_eq!(names(&parse(&two).unwrap()), [&b"a"[..], b"b"]);
        for tail in [&b"x"[..], b"\0\0\0\0junk", b"\x00\x00070701"] {
            let bad = [&one[..], tail].concat();
            assert_eq!(kind_of(&bad), ErrorKind::Garbage, "{tail:?}");
        }
        let e = parse(&[&one[..], b"junk"].concat()).unwrap_err();
        assert_eq!(e.offset, one.len());
    }

    #[test]
    fn hostile_sizes_are_truncation_not_allocation_or_overflow() {
        let h = Header {
            filesize: Some(u32::MAX),
            ..Header::new(2, REG | 0o644)
        };
        let a = Newc::new().member(h, b"f", b"").finish();
        assert_eq!(kind_of(&a), ErrorKind::Truncated);
        let h = Header {
            namesize: Some(u32::MAX),
            ..Header::new(2, REG | 0o644)
        };
        assert_eq!(
            kind_of(&Newc::new().member(h, b"f", b"").finish()),
            ErrorKind::BadName
        );
        let h = Header {
            namesize: Some(4000),
            ..Header::new(2, REG | 0o644)
        };
        assert_eq!(
            kind_of(&Newc::new().member(h, b"f", b"").finish()),
            ErrorKind::Truncated
        );
        // A file size that runs exactly to the end of the input, with no trailer after.
        let h = Header {
            filesize: Some(8),
            ..Header::new(2, REG | 0o644)
        };
        let a = Newc::new().member(h, b"f", b"").raw(b"12345678").bytes();
        assert_eq!(kind_of(&a), ErrorKind::NoTrailer);
    }

    #[test]
    fn data_starts_4_aligned_whatever_the_name_length() {
        let mut a = Newc::new();
        for len in 1..=9 {
            a = a.file(&vec![b'a' + len as u8; len], &vec![len as u8; len]);
        }
        let archive = a.finish();
        let entries = parse(&archive).unwrap();
        for (i, e) in entries.iter().enumerate() {
            let len = i + 1;
            assert_eq!(e.name.len(), len);
            assert_eq!(e.data, vec![len as u8; len]);
        }
    }

    #[test]
    fn components_are_normalised() {
        let c = |n: &'static [u8]| components(n).collect::<Vec<_>>();
        assert_eq!(c(b"./a//b/."), [&b"a"[..], b"b"]);
        assert_eq!(c(b"/abs/x/"), [&b"abs"[..], b"x"]);
        assert!(c(b".").is_empty());
        assert!(c(b"/").is_empty());
        assert!(c(b"").is_empty());
        assert_eq!(
            c(b"a/../b"),
            [&b"a"[..], b"..", b"b"],
            "'..' is kept (and refused)"
        );
    }

    #[test]
    fn errors_read_well() {
        let e = |kind| Error { offset: 7, kind }.to_string();
        assert_eq!(e(ErrorKind::Truncated), "truncated archive at offset 7");
        assert_eq!(e(ErrorKind::DotDot), "name contains '..' at offset 7");
        assert_eq!(e(ErrorKind::NoTrailer), "no TRAILER!!! entry at offset 7");
        assert_eq!(e(ErrorKind::BadField("gid")), "bad gid field at offset 7");
    }
}
