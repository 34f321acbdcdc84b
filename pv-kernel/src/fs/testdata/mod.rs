//! Test archives for the host unit tests of [`super::cpio`] and [`super::initramfs`]: a
//! newc builder with full control over every header field, and two archives made by GNU
//! cpio 2.13 from the same small tree:
//!
//! ```text
//! .  dir/ (0700)  dir/file (259 bytes: (i * 7 + 3) % 256)  dir/sub/ (0755)
//! dir/sub/deep.txt ("deep\n")  empty (0600)  fifo (FIFO, 0640)  hard1 = hard2 ("linked\n",
//! hard links)  link -> dir/file  top.txt ("hello\n")
//! ```
//!
//! every mtime 1600000000, made with (the `-R` sets uid and gid 1000 in the archive):
//!
//! ```text
//! find . | LC_ALL=C sort | cpio -o -H newc --reproducible -R 1000:1000 > gnu-newc.cpio
//! find . | LC_ALL=C sort | cpio -o -H crc  --reproducible -R 1000:1000 > gnu-crc.cpio
//! ```

/// The `-H newc` archive.
pub(crate) const GNU_NEWC: &[u8] = include_bytes!("gnu-newc.cpio");
/// The `-H crc` archive (magic `070702`, byte-sum checksums).
pub(crate) const GNU_CRC: &[u8] = include_bytes!("gnu-crc.cpio");
/// The mtime of every member of the GNU archives.
pub(crate) const GNU_MTIME: u32 = 1_600_000_000;
/// The contents of `dir/file` in the GNU archives.
pub(crate) fn gnu_file_bytes() -> Vec<u8> {
    (0..259u32).map(|i| ((i * 7 + 3) % 256) as u8).collect()
}

/// `st_mode` type bits used by the tests.
pub(crate) const REG: u32 = 0o100_000;
/// Directory.
pub(crate) const DIR: u32 = 0o040_000;
/// Symbolic link.
pub(crate) const LNK: u32 = 0o120_000;
/// FIFO.
pub(crate) const FIFO: u32 = 0o010_000;
/// Character device.
pub(crate) const CHR: u32 = 0o020_000;

/// The header fields of one member; `None` fields are computed (sizes, checksum).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub(crate) ino: u32,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) nlink: u32,
    pub(crate) mtime: u32,
    pub(crate) filesize: Option<u32>,
    pub(crate) dev: (u32, u32),
    pub(crate) rdev: (u32, u32),
    pub(crate) namesize: Option<u32>,
    pub(crate) check: Option<u32>,
}

impl Header {
    /// A member of type and mode `mode`, inode `ino`, one link, owned by root, mtime 0.
    pub(crate) fn new(ino: u32, mode: u32) -> Self {
        Self {
            ino,
            mode,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            filesize: None,
            dev: (0, 0),
            rdev: (0, 0),
            namesize: None,
            check: None,
        }
    }

    /// The 13 fields in header order.
    fn fields(&self, name: &[u8], data: &[u8]) -> [u32; 13] {
        let sum = data.iter().fold(0u32, |s, &b| s.wrapping_add(u32::from(b)));
        [
            self.ino,
            self.mode,
            self.uid,
            self.gid,
            self.nlink,
            self.mtime,
            self.filesize.unwrap_or(data.len() as u32),
            self.dev.0,
            self.dev.1,
            self.rdev.0,
            self.rdev.1,
            self.namesize.unwrap_or(name.len() as u32 + 1),
            self.check.unwrap_or(sum),
        ]
    }
}

/// Builds newc archives member by member.
pub(crate) struct Newc {
    buf: Vec<u8>,
    magic: &'static [u8; 6],
    next_ino: u32,
}

impl Newc {
    /// An archive of `070701` members.
    pub(crate) fn new() -> Self {
        Self {
            buf: Vec::new(),
            magic: b"070701",
            next_ino: 1,
        }
    }

    /// An archive of `070702` members (with checksums).
    pub(crate) fn crc() -> Self {
        Self {
            magic: b"070702",
            ..Self::new()
        }
    }

    /// Appends a member with header `h`, name `name` (the NUL is added) and `data`.
    pub(crate) fn member(mut self, h: Header, name: &[u8], data: &[u8]) -> Self {
        self.buf.extend_from_slice(self.magic);
        for f in h.fields(name, data) {
            self.buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.buf.extend_from_slice(name);
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    fn next(&mut self, mode: u32) -> Header {
        self.next_ino += 1;
        Header::new(self.next_ino, mode)
    }

    /// A regular file with mode 0644.
    pub(crate) fn file(mut self, name: &[u8], data: &[u8]) -> Self {
        let h = self.next(REG | 0o644);
        self.member(h, name, data)
    }

    /// A directory with mode 0755.
    pub(crate) fn dir(mut self, name: &[u8]) -> Self {
        let h = self.next(DIR | 0o755);
        self.member(h, name, b"")
    }

    /// A symbolic link.
    pub(crate) fn symlink(mut self, name: &[u8], target: &[u8]) -> Self {
        let h = self.next(LNK | 0o777);
        self.member(h, name, target)
    }

    /// The `TRAILER!!!` member.
    pub(crate) fn trailer(self) -> Self {
        self.member(Header::new(0, 0), b"TRAILER!!!", b"")
    }

    /// Appends raw bytes.
    pub(crate) fn raw(mut self, bytes: &[u8]) -> Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// The bytes so far.
    pub(crate) fn bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The bytes with a trailer.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.trailer().buf
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

/// `bytes` as a `'static` slice (archives are `'static` in the kernel; leaked in tests).
pub(crate) fn leak(bytes: Vec<u8>) -> &'static [u8] {
    bytes.leak()
}
