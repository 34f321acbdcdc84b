//! The host filesystem share (`pvmux run --rootfs DIR`): a read-only, lazily read view of a
//! host directory, served by [`crate::Hypercall::HostfsList`] and
//! [`crate::Hypercall::HostfsRead`], with [`crate::Hypercall::HostfsLookup`] for one entry
//! (docs/ABI.md §hostfs).
//!
//! Paths are byte strings naming a file relative to the shared root; a leading `/` is
//! optional and `/` alone (or the empty path) is the root. The host resolves every path
//! inside the root (`..` and symbolic links cannot leave it), never follows a final symbolic
//! link, and never writes.
//!
//! * `HostfsList(path_gpa, path_len, buf_gpa, buf_len, cookie) -> bytes`: fills the buffer
//!   with packed records (a [`HostfsEntry`], the name, a symbolic link's target, zero padding
//!   to [`ENTRY_ALIGN`]) for the directory's entries in byte order of their names, starting
//!   with entry number `cookie` (0 = the first; `.` and `..` are never listed). Returns the
//!   bytes used; 0 means no entries from `cookie` on. The next cookie is `cookie` plus the
//!   number of records returned. `TooLarge` if not even one record fits in `buf_len` (a
//!   buffer of [`LIST_MIN_BUF`] bytes always fits one). The host puts in as many records as
//!   fit, so a reply leaving [`LIST_MIN_BUF`] bytes or more unused ends the listing.
//! * `HostfsRead(path_gpa, path_len, offset, buf_gpa, len, copy_gpa) -> bytes`: reads up to
//!   `min(len, READ_MAX)` bytes of a regular file at `offset`; 0 at or past its end. With
//!   `copy_gpa` not 0, the same bytes also go to `copy_gpa` (both ranges checked before any
//!   host work): the guest reads a program chunk into its frames and, in the same call, into
//!   a buffer of its own memory it hashes (the frames are memory its programs can write, its
//!   own buffer is not).
//! * `HostfsLookup(path_gpa, path_len, buf_gpa, buf_len) -> bytes` (ABI v6): the one record
//!   `HostfsList` of the parent directory would give for the path's last component (a
//!   final symbolic link is not followed), or 0 when the directory has no such entry (or
//!   lies on a host pseudo filesystem, which lists as empty). The parent must be a
//!   directory; the last component a name (not `.` or `..`, at most [`NAME_MAX`] bytes).
//!   `TooLarge` if the record does not fit in `buf_len` (at most [`LIST_MAX_BUF`]).
//!
//! Errors: `UnknownCall` when the tenant has no share; `BadAddress` for a path or buffer
//! range outside guest memory; `TooLarge` for a path longer than [`PATH_MAX`] or a list
//! buffer larger than [`LIST_MAX_BUF`]; `InvalidArgument` when the path does not exist, is
//! not inside the root, has the wrong type (not a directory for a list, not a regular file
//! for a read; special files are never read), contains a NUL byte, or lies on a host
//! pseudo filesystem (`/proc`, `/sys`, ...); `NoResources` for a host I/O error.

use core::mem::{offset_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Longest path accepted, in bytes.
pub const PATH_MAX: u64 = 4096;
/// Largest `HostfsRead` transfer: longer reads are short.
pub const READ_MAX: u64 = 1 << 20;
/// Largest `HostfsList` buffer accepted.
pub const LIST_MAX_BUF: u64 = 1 << 20;
/// A `HostfsList` buffer of this size always holds at least one record.
pub const LIST_MIN_BUF: u64 = record_len(NAME_MAX, TARGET_MAX) as u64;
/// Longest name of a listed entry (longer names are not listed).
pub const NAME_MAX: usize = 255;
/// Longest symbolic link target listed (longer links are listed as [`kind::OTHER`]).
pub const TARGET_MAX: usize = 4095;
/// Records start at multiples of this.
pub const ENTRY_ALIGN: usize = 8;

/// [`HostfsEntry::kind`] values.
pub mod kind {
    /// A directory.
    pub const DIR: u8 = 1;
    /// A regular file.
    pub const REG: u8 = 2;
    /// A symbolic link (its target follows the name).
    pub const SYMLINK: u8 = 3;
    /// Anything else (device, FIFO, socket): listed, never read.
    pub const OTHER: u8 = 4;
}

/// The fixed header of one `HostfsList` record.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HostfsEntry {
    /// Size in bytes (`st_size`; for a symbolic link the target's length).
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 if before it).
    pub mtime_ns: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Length of the name that follows the header (1..=[`NAME_MAX`]).
    pub name_len: u16,
    /// Length of the symbolic link target that follows the name (0 for other kinds).
    pub target_len: u16,
    /// One of [`kind`].
    pub kind: u8,
    /// Zero.
    pub reserved: u8,
    /// Link count (`st_nlink`) when the server keeps one it can state (the guest kernel's
    /// ext2 of a disk); 0 = not given (the host's servers: the host share and volumes).
    pub links: u16,
    /// The object's inode number in its filesystem when the server has stable ones (the
    /// guest kernel's ext2 of a disk: two names with the same number are hard links of one
    /// file); 0 = not given (the host's servers).
    pub ino: u32,
}

const _: () = assert!(size_of::<HostfsEntry>() == 40);
const _: () = assert!(offset_of!(HostfsEntry, perm) == 16);
const _: () = assert!(offset_of!(HostfsEntry, name_len) == 28);
const _: () = assert!(offset_of!(HostfsEntry, kind) == 32);
const _: () = assert!(offset_of!(HostfsEntry, links) == 34);
const _: () = assert!(offset_of!(HostfsEntry, ino) == 36);

/// Size of the fixed header.
pub const ENTRY_HEADER: usize = size_of::<HostfsEntry>();

/// Total length of a record with a `name_len`-byte name and a `target_len`-byte target.
pub const fn record_len(name_len: usize, target_len: usize) -> usize {
    (ENTRY_HEADER + name_len + target_len).next_multiple_of(ENTRY_ALIGN)
}

/// One record parsed from a `HostfsList` buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The header.
    pub entry: HostfsEntry,
    /// The name.
    pub name: &'a [u8],
    /// A symbolic link's target (empty otherwise).
    pub target: &'a [u8],
}

/// Parses the record at the start of `buf`: the record and its length, or `None` if `buf`
/// does not start with a complete, well-formed record (zero-length name, a target on a
/// non-link, padding past the end).
pub fn parse_record(buf: &[u8]) -> Option<(Record<'_>, usize)> {
    let (entry, rest) = HostfsEntry::read_from_prefix(buf).ok()?;
    let (nl, tl) = (usize::from(entry.name_len), usize::from(entry.target_len));
    if nl == 0 || nl > NAME_MAX || (tl != 0 && entry.kind != kind::SYMLINK) {
        return None;
    }
    let len = record_len(nl, tl);
    if len > buf.len() {
        return None;
    }
    let name = rest.get(..nl)?;
    let target = rest.get(nl..nl + tl)?;
    Some((
        Record {
            entry,
            name,
            target,
        },
        len,
    ))
}

/// Appends one record to `buf` at `*pos`; false (and nothing written) if it does not fit.
pub fn put_record(
    buf: &mut [u8],
    pos: &mut usize,
    entry: &HostfsEntry,
    name: &[u8],
    target: &[u8],
) -> bool {
    let len = record_len(name.len(), target.len());
    let Some(rec) = pos.checked_add(len).and_then(|end| buf.get_mut(*pos..end)) else {
        return false;
    };
    rec.fill(0);
    rec[..ENTRY_HEADER].copy_from_slice(entry.as_bytes());
    rec[ENTRY_HEADER..ENTRY_HEADER + name.len()].copy_from_slice(name);
    rec[ENTRY_HEADER + name.len()..ENTRY_HEADER + name.len() + target.len()]
        .copy_from_slice(target);
    *pos += len;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let mut buf = [0xaau8; 256];
        let mut pos = 0;
        let e = HostfsEntry {
            size: 5,
            kind: kind::SYMLINK,
            name_len: 3,
            target_len: 5,
            ..Default::default()
        };
        assert!(put_record(&mut buf, &mut pos, &e, b"abc", b"/x/yz"));
        assert_eq!(pos, 48);
        let f = HostfsEntry {
            kind: kind::REG,
            name_len: 1,
            ..Default::default()
        };
        assert!(put_record(&mut buf, &mut pos, &f, b"f", b""));
        assert_eq!(pos, 96);
        let (r, n) = parse_record(&buf).unwrap();
        assert_eq!((r.name, r.target, n), (&b"abc"[..], &b"/x/yz"[..], 48));
        let (r, n) = parse_record(&buf[48..]).unwrap();
        assert_eq!(
            (r.name, r.target, r.entry.kind, n),
            (&b"f"[..], &b""[..], kind::REG, 48)
        );
        // Truncated, empty name, target on a regular file.
        assert!(parse_record(&buf[..47]).is_none());
        let mut bad = buf;
        bad[28] = 0;
        assert!(parse_record(&bad).is_none());
        let mut bad = buf;
        bad[32] = kind::REG;
        assert!(parse_record(&bad).is_none());
        // Does not fit: nothing written.
        let mut small = [0u8; 47];
        let mut p = 0;
        assert!(!put_record(&mut small, &mut p, &e, b"abc", b"/x/yz"));
        assert_eq!(p, 0);
        assert_eq!(LIST_MIN_BUF, 4392);
    }
}
