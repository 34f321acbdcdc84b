//! Kernel hand-over (`pvmux upgrade NAME --kernel NEW`, issue 14 item 5): the versioned,
//! self-describing, checksummed **hand-over record** a running kernel writes of its state, and
//! the note by which a kernel image declares the record versions it writes and adopts.
//!
//! The format is defined once, here, for both sides: the guest kernel writes it with
//! [`RecordWriter`], the host (and a kernel that adopts it) reads it with [`Record::parse`],
//! which checks everything before anything is believed: magic, version, lengths, the CRC-32 of
//! the body, every section's bounds and entry size.
//!
//! ```text
//! RecordHeader     96 bytes: magic "PVHNDOVR", version, header_len, total_len, crc32 of
//!                  the whole record (this field zero), nr_sections, the writer's release
//! nr_sections ×    SectionHeader { kind, entry_size, count } then count × entry_size bytes
//!                  (entries are #[repr(C)] structs below; a reader skips kinds it does not
//!                  know — that is what makes the record self-describing — but a section it
//!                  knows must have exactly its entry size)
//! ```
//!
//! Why fixed `#[repr(C)]` zerocopy entries and not a general serializer (`postcard` +
//! `serde`): the record is an ABI between two kernels and the host, like every other shared
//! structure of this crate (one source of truth, size/offset asserts, a C header could mirror
//! it); it never needs to be allocated to be read (the host reads it out of guest memory and
//! checks it in place), and `zerocopy` is already the one dependency both no_std sides share.
//! The checksum is CRC-32/ISO-HDLC (the zlib/Ethernet CRC-32) from the `crc` crate (no_std,
//! without a `std` feature that a workspace build could switch on for the stub).
//!
//! Protocol (docs/ABI.md §handover): the host raises [`crate::vcpu::pending::HANDOVER`]; the
//! guest calls `HandoverTake` for the record version to write (the highest version both the
//! running and the new image declare; 0: nothing asked), writes the record in kernel memory
//! and hands it over with `HandoverRecord(gpa, len)`. With this version of pvmux the record
//! is an **inventory**: the kernel lists its processes, memory areas, open files and timers,
//! and names in [`section::BLOCKER`] entries everything the new kernel could not adopt; the
//! host refuses the upgrade naming them and the running kernel is never stopped.

use core::mem::size_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Name of the ELF section holding a kernel image's [`HandoverNote`].
pub const NOTE_SECTION: &str = ".pvmux_handover";

/// [`HandoverNote::magic`]: "PVHOVNOT".
pub const NOTE_MAGIC: u64 = u64::from_le_bytes(*b"PVHOVNOT");

/// [`RecordHeader::magic`]: "PVHNDOVR".
pub const RECORD_MAGIC: u64 = u64::from_le_bytes(*b"PVHNDOVR");

/// The record version this crate defines.
pub const RECORD_VERSION: u32 = 1;

/// The largest record a host accepts (bytes).
pub const MAX_RECORD_LEN: u64 = 4 << 20;

/// Length of a release string ([`HandoverNote::release`]), NUL padded.
pub const RELEASE_LEN: usize = 64;

/// What a kernel image declares about hand-over (section [`NOTE_SECTION`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HandoverNote {
    /// [`NOTE_MAGIC`].
    pub magic: u64,
    /// Lowest record version the kernel writes and adopts.
    pub min_version: u32,
    /// Highest record version the kernel writes and adopts (0 with `min_version` 0: none).
    pub max_version: u32,
    /// The kernel's release (`uname -r`), NUL padded.
    pub release: [u8; RELEASE_LEN],
}

const _: () = assert!(size_of::<HandoverNote>() == 80);

impl HandoverNote {
    /// A note for `release` (cut to [`RELEASE_LEN`] bytes) and the versions of this crate.
    pub const fn new(release: &str) -> Self {
        let mut r = [0u8; RELEASE_LEN];
        let b = release.as_bytes();
        let mut i = 0;
        while i < b.len() && i < RELEASE_LEN {
            r[i] = b[i];
            i += 1;
        }
        Self {
            magic: NOTE_MAGIC,
            min_version: RECORD_VERSION,
            max_version: RECORD_VERSION,
            release: r,
        }
    }

    /// The release without its padding.
    pub fn release(&self) -> &[u8] {
        until_nul(&self.release)
    }

    /// The highest record version both `self` (the writer) and `new` (the adopter) support.
    pub fn common_version(&self, new: &Self) -> Option<u32> {
        let lo = self.min_version.max(new.min_version).max(1);
        let hi = self.max_version.min(new.max_version);
        (lo <= hi).then_some(hi)
    }
}

/// The bytes of `b` before its first NUL.
pub fn until_nul(b: &[u8]) -> &[u8] {
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..n]
}

/// The record's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct RecordHeader {
    /// [`RECORD_MAGIC`].
    pub magic: u64,
    /// The record version ([`RECORD_VERSION`]).
    pub version: u32,
    /// `size_of::<RecordHeader>()`.
    pub header_len: u32,
    /// Bytes of the whole record, header included.
    pub total_len: u64,
    /// CRC-32 (IEEE) of the whole record with this field zero.
    pub crc32: u32,
    /// Sections that follow.
    pub nr_sections: u32,
    /// The writer's release, NUL padded.
    pub release: [u8; RELEASE_LEN],
}

/// Size of [`RecordHeader`].
pub const RECORD_HEADER_LEN: usize = 96;
const _: () = assert!(size_of::<RecordHeader>() == RECORD_HEADER_LEN);

/// A section's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SectionHeader {
    /// A [`section`] kind.
    pub kind: u32,
    /// Bytes per entry.
    pub entry_size: u32,
    /// Entries that follow.
    pub count: u32,
    /// Zero.
    pub _reserved: u32,
}

const _: () = assert!(size_of::<SectionHeader>() == 16);

/// Section kinds and their entries.
pub mod section {
    /// [`super::ProcessEntry`]s.
    pub const PROCESS: u32 = 1;
    /// [`super::VmaEntry`]s.
    pub const VMA: u32 = 2;
    /// [`super::FdEntry`]s.
    pub const FD: u32 = 3;
    /// [`super::BlockerEntry`]s: state the adopting kernel could not take over.
    pub const BLOCKER: u32 = 4;
    /// [`super::ThreadEntry`]s.
    pub const THREAD: u32 = 5;
}

/// One process.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ProcessEntry {
    /// Process id.
    pub pid: i32,
    /// Parent's process id (0 for init).
    pub ppid: i32,
    /// Process group.
    pub pgid: i32,
    /// Session.
    pub sid: i32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Threads.
    pub nr_threads: u32,
    /// [`process_flags`].
    pub flags: u32,
    /// Resident user pages (pool frames its address space maps).
    pub resident_pages: u64,
    /// The command name, NUL padded.
    pub comm: [u8; 16],
}

const _: () = assert!(size_of::<ProcessEntry>() == 56);

/// [`ProcessEntry::flags`].
pub mod process_flags {
    /// Exited, not reaped yet.
    pub const ZOMBIE: u32 = 1 << 0;
}

/// One thread, as the writer stopped it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ThreadEntry {
    /// Thread id.
    pub tid: i32,
    /// Its process.
    pub pid: i32,
    /// A [`thread_state`].
    pub state: u32,
    /// Zero.
    pub _reserved: u32,
    /// User-mode instruction pointer (0 unless [`thread_state::USER`]).
    pub rip: u64,
    /// User-mode stack pointer (0 unless [`thread_state::USER`]).
    pub rsp: u64,
    /// FS base (0 unless [`thread_state::USER`]).
    pub fs_base: u64,
}

const _: () = assert!(size_of::<ThreadEntry>() == 40);

/// [`ThreadEntry::state`].
pub mod thread_state {
    /// Stopped at its safe point, in user mode (its registers are the entry's).
    pub const USER: u32 = 1;
    /// Blocked in a system call (restartable at its boundary).
    pub const SYSCALL: u32 = 2;
    /// Did not reach a safe point in time.
    pub const RUNNING: u32 = 3;
}

/// One memory area of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct VmaEntry {
    /// The process.
    pub pid: i32,
    /// [`vma_flags`].
    pub flags: u32,
    /// First byte.
    pub start: u64,
    /// End (exclusive).
    pub end: u64,
    /// What backs it (`[heap]`, a path, empty for anonymous), NUL padded (cut).
    pub name: [u8; 40],
}

const _: () = assert!(size_of::<VmaEntry>() == 64);

/// [`VmaEntry::flags`].
pub mod vma_flags {
    /// Readable.
    pub const READ: u32 = 1 << 0;
    /// Writable.
    pub const WRITE: u32 = 1 << 1;
    /// Executable.
    pub const EXEC: u32 = 1 << 2;
    /// Shared (else private).
    pub const SHARED: u32 = 1 << 3;
}

/// One open file descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct FdEntry {
    /// The process.
    pub pid: i32,
    /// The descriptor.
    pub fd: i32,
    /// A [`fd_kind`].
    pub kind: u32,
    /// Zero.
    pub _reserved: u32,
    /// What it names (a path, `pipe:[N]`, ...), NUL padded (cut).
    pub name: [u8; 48],
}

const _: () = assert!(size_of::<FdEntry>() == 64);

/// [`FdEntry::kind`].
pub mod fd_kind {
    /// A file or directory of a filesystem.
    pub const FILE: u32 = 1;
    /// A pipe end.
    pub const PIPE: u32 = 2;
    /// A socket.
    pub const SOCKET: u32 = 3;
    /// The console or a terminal.
    pub const TTY: u32 = 4;
    /// Anything else (eventfd, epoll, timerfd, signalfd, inotify, `/proc` files ...).
    pub const OTHER: u32 = 5;
}

/// State the adopting kernel could not take over: the upgrade is refused naming it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BlockerEntry {
    /// A [`blocker`] kind.
    pub kind: u32,
    /// The process it belongs to (0: the kernel's own).
    pub pid: i32,
    /// How many of it.
    pub count: u32,
    /// Zero.
    pub _reserved: u32,
    /// What it is, in words, NUL padded (cut).
    pub what: [u8; 48],
}

const _: () = assert!(size_of::<BlockerEntry>() == 64);

/// [`BlockerEntry::kind`].
pub mod blocker {
    /// A process: its threads' registers, memory and files cannot be adopted yet.
    pub const PROCESS: u32 = 1;
    /// Open files, pipes, sockets of a process.
    pub const FILES: u32 = 2;
    /// Armed timers of a process (itimers, `timer_create`, `alarm`).
    pub const TIMERS: u32 = 3;
    /// Kernel state (exec sessions, host sockets, the page cache ...).
    pub const KERNEL: u32 = 4;
}

/// A fixed-size record entry.
pub trait Entry: FromBytes + IntoBytes + Immutable + KnownLayout + Copy {
    /// Its [`section`] kind.
    const KIND: u32;
}

impl Entry for ProcessEntry {
    const KIND: u32 = section::PROCESS;
}
impl Entry for VmaEntry {
    const KIND: u32 = section::VMA;
}
impl Entry for FdEntry {
    const KIND: u32 = section::FD;
}
impl Entry for BlockerEntry {
    const KIND: u32 = section::BLOCKER;
}
impl Entry for ThreadEntry {
    const KIND: u32 = section::THREAD;
}

/// Copies `s` into a NUL-padded field (cut to its size).
pub fn fill_name(dst: &mut [u8], s: &[u8]) {
    let n = s.len().min(dst.len());
    dst[..n].copy_from_slice(&s[..n]);
    dst[n..].fill(0);
}

/// Why a record was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Shorter than its header, or its header's lengths disagree with the bytes.
    Truncated,
    /// Not a hand-over record.
    BadMagic,
    /// A version the reader does not adopt.
    Version(u32),
    /// The body's CRC-32 does not match the header's.
    Checksum,
    /// A section runs past the end, or a known kind has the wrong entry size.
    BadSection(u32),
    /// Bytes left after the last section.
    TrailingBytes,
    /// Longer than [`MAX_RECORD_LEN`].
    TooLong(u64),
}

impl core::fmt::Display for RecordError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated => write!(f, "the record is truncated"),
            Self::BadMagic => write!(f, "not a hand-over record (bad magic)"),
            Self::Version(v) => write!(f, "record version {v} is not supported"),
            Self::Checksum => write!(f, "the record's checksum does not match"),
            Self::BadSection(k) => write!(f, "section of kind {k} is malformed"),
            Self::TrailingBytes => write!(f, "bytes after the last section"),
            Self::TooLong(n) => write!(f, "the record is too long ({n} bytes)"),
        }
    }
}

/// A checked record (borrowing its bytes).
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// Its header.
    pub header: RecordHeader,
    body: &'a [u8],
}

impl<'a> Record<'a> {
    /// Checks `bytes` as a record of a version in `versions` (inclusive range).
    pub fn parse(bytes: &'a [u8], versions: (u32, u32)) -> Result<Self, RecordError> {
        if bytes.len() as u64 > MAX_RECORD_LEN {
            return Err(RecordError::TooLong(bytes.len() as u64));
        }
        let (header, _) =
            RecordHeader::read_from_prefix(bytes).map_err(|_| RecordError::Truncated)?;
        if header.magic != RECORD_MAGIC {
            return Err(RecordError::BadMagic);
        }
        if header.version < versions.0 || header.version > versions.1 || header.version == 0 {
            return Err(RecordError::Version(header.version));
        }
        if header.header_len as usize != RECORD_HEADER_LEN || header.total_len != bytes.len() as u64
        {
            return Err(RecordError::Truncated);
        }
        let body = &bytes[RECORD_HEADER_LEN..];
        if checksum(bytes) != header.crc32 {
            return Err(RecordError::Checksum);
        }
        let r = Self { header, body };
        // Walk every section once: bounds and entry sizes.
        let mut n = 0u32;
        let mut rest = body;
        while let Some((h, payload, tail)) = split_section(rest)? {
            let known = match h.kind {
                section::PROCESS => Some(size_of::<ProcessEntry>()),
                section::VMA => Some(size_of::<VmaEntry>()),
                section::FD => Some(size_of::<FdEntry>()),
                section::BLOCKER => Some(size_of::<BlockerEntry>()),
                section::THREAD => Some(size_of::<ThreadEntry>()),
                _ => None,
            };
            if known.is_some_and(|s| s != h.entry_size as usize)
                || payload.is_empty() && h.count > 0
            {
                return Err(RecordError::BadSection(h.kind));
            }
            n += 1;
            rest = tail;
        }
        if n != header.nr_sections {
            return Err(RecordError::TrailingBytes);
        }
        Ok(r)
    }

    /// The entries of every section of `T`'s kind.
    pub fn entries<T: Entry>(&self) -> impl Iterator<Item = T> + 'a {
        let mut rest = self.body;
        core::iter::from_fn(move || loop {
            let (h, payload, tail) = split_section(rest).ok()??;
            rest = tail;
            if h.kind == T::KIND {
                return Some((h, payload));
            }
        })
        .flat_map(|(h, payload)| {
            payload
                .chunks_exact(h.entry_size as usize)
                .filter_map(|c| T::read_from_bytes(c).ok())
        })
    }

    /// The writer's release.
    pub fn release(&self) -> &[u8] {
        until_nul(&self.header.release)
    }
}

/// CRC-32 of a whole record (at least a header long) with its `crc32` field taken as zero.
fn checksum(bytes: &[u8]) -> u32 {
    const CRC_AT: usize = core::mem::offset_of!(RecordHeader, crc32);
    const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let mut h = CRC32.digest();
    h.update(&bytes[..CRC_AT]);
    h.update(&[0; 4]);
    h.update(&bytes[CRC_AT + 4..]);
    h.finalize()
}

/// The first section of `b`: its header, its entries' bytes and what follows; `None` at the end.
#[allow(clippy::type_complexity)]
fn split_section(b: &[u8]) -> Result<Option<(SectionHeader, &[u8], &[u8])>, RecordError> {
    if b.is_empty() {
        return Ok(None);
    }
    let (h, rest) = SectionHeader::read_from_prefix(b).map_err(|_| RecordError::TrailingBytes)?;
    if h.entry_size == 0 {
        return Err(RecordError::BadSection(h.kind));
    }
    let len = (h.entry_size as usize)
        .checked_mul(h.count as usize)
        .filter(|&l| l <= rest.len())
        .ok_or(RecordError::BadSection(h.kind))?;
    Ok(Some((h, &rest[..len], &rest[len..])))
}

/// Builds a record into a caller-provided byte vector (the guest's heap, the host's tests).
pub struct RecordWriter<'v, V: Extend<u8> + AsRef<[u8]> + AsMut<[u8]>> {
    out: &'v mut V,
    nr_sections: u32,
}

impl<'v, V: Extend<u8> + AsRef<[u8]> + AsMut<[u8]>> RecordWriter<'v, V> {
    /// Starts a record of `version` by a kernel of `release` in `out` (which must be empty).
    pub fn new(out: &'v mut V, version: u32, release: &[u8]) -> Self {
        let mut h = RecordHeader {
            magic: RECORD_MAGIC,
            version,
            header_len: RECORD_HEADER_LEN as u32,
            total_len: 0,
            crc32: 0,
            nr_sections: 0,
            release: [0; RELEASE_LEN],
        };
        fill_name(&mut h.release, release);
        out.extend(h.as_bytes().iter().copied());
        Self {
            out,
            nr_sections: 0,
        }
    }

    /// Appends a section of `entries` (nothing for none).
    pub fn section<T: Entry>(&mut self, entries: &[T]) {
        if entries.is_empty() {
            return;
        }
        let h = SectionHeader {
            kind: T::KIND,
            entry_size: size_of::<T>() as u32,
            count: entries.len() as u32,
            _reserved: 0,
        };
        self.out.extend(h.as_bytes().iter().copied());
        for e in entries {
            self.out.extend(e.as_bytes().iter().copied());
        }
        self.nr_sections += 1;
    }

    /// Completes the header (length, sections, checksum).
    pub fn finish(self) {
        let bytes = self.out.as_mut();
        let total = bytes.len() as u64;
        if let Ok((h, _)) = RecordHeader::mut_from_prefix(bytes) {
            h.total_len = total;
            h.crc32 = 0;
            h.nr_sections = self.nr_sections;
        }
        let crc = checksum(bytes);
        if let Ok((h, _)) = RecordHeader::mut_from_prefix(bytes) {
            h.crc32 = crc;
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        let mut w = RecordWriter::new(&mut v, RECORD_VERSION, b"6.1.0-pvmux");
        let mut p = ProcessEntry {
            pid: 1,
            nr_threads: 1,
            ..Default::default()
        };
        fill_name(&mut p.comm, b"sh");
        w.section(&[
            p,
            ProcessEntry {
                pid: 7,
                ppid: 1,
                ..p
            },
        ]);
        let mut b = BlockerEntry {
            kind: blocker::PROCESS,
            pid: 1,
            count: 1,
            ..zerocopy::FromZeros::new_zeroed()
        };
        fill_name(&mut b.what, b"process sh");
        w.section(&[b]);
        w.finish();
        v
    }

    #[test]
    fn a_record_round_trips() {
        let v = sample();
        let r = Record::parse(&v, (1, 1)).expect("valid");
        assert_eq!(r.release(), b"6.1.0-pvmux");
        let p: Vec<ProcessEntry> = r.entries().collect();
        assert_eq!(p.iter().map(|p| p.pid).collect::<Vec<_>>(), [1, 7]);
        assert_eq!(until_nul(&p[0].comm), b"sh");
        let b: Vec<BlockerEntry> = r.entries().collect();
        assert_eq!(b.len(), 1);
        assert_eq!(r.entries::<VmaEntry>().count(), 0);
    }

    #[test]
    fn corrupt_records_are_refused() {
        let v = sample();
        // Every single-byte change is caught (the checksum covers the header too).
        for i in 0..v.len() {
            let mut c = v.clone();
            c[i] ^= 0x40;
            let e = Record::parse(&c, (1, 1));
            assert!(e.is_err(), "byte {i}: {e:?}");
        }
        assert_eq!(
            Record::parse(&v[..v.len() - 1], (1, 1)).err(),
            Some(RecordError::Truncated)
        );
        assert_eq!(
            Record::parse(&v, (2, 3)).err(),
            Some(RecordError::Version(1))
        );
        assert_eq!(
            Record::parse(&[], (1, 1)).err(),
            Some(RecordError::Truncated)
        );
    }

    #[test]
    fn versions_meet_or_not() {
        let a = HandoverNote::new("a");
        let mut b = HandoverNote::new("b");
        assert_eq!(a.common_version(&b), Some(RECORD_VERSION));
        b.min_version = RECORD_VERSION + 1;
        b.max_version = RECORD_VERSION + 1;
        assert_eq!(a.common_version(&b), None);
        b.min_version = 0;
        b.max_version = 0;
        assert_eq!(a.common_version(&b), None);
        assert_eq!(HandoverNote::new("6.1.0-pvmux").release(), b"6.1.0-pvmux");
    }
}
