//! Block devices owned by one kernel at a time (`pvmux run --disk FILE[:ro][,mount=PATH]`,
//! `pvmux disk move`; docs/ABI.md §disks, docs/MULTIKERNEL.md "Devices and who owns them").
//!
//! The host opens each disk's image file (locked, so that one kernel owns it) and puts it in
//! a *slot* (`0..MAX_DISKS`). The guest learns of disks through events: the host raises
//! `pending::DISK`, the guest takes each event (`DiskTake`: attach slot S, mounted at PATH;
//! or detach slot S) and answers it (`DiskReport`, with the event's generation and 0 or a
//! Linux errno). Data moves through a ring of [`DiskDesc`] descriptors in guest memory and
//! the `DiskSubmit` doorbell: the host copies the descriptors out of guest memory, checks
//! each one (op, sector range inside the disk, buffer inside guest memory, transfer size)
//! and performs it, then writes each descriptor's `status` back. The doorbell returns when
//! every descriptor it was given is complete, so completion needs no interrupt.
//!
//! - `DiskTake(event_gpa) -> 1 | 0`: writes the next [`DiskEvent`] at `event_gpa` (1), or
//!   nothing when none is waiting (0). `UnknownCall` if the tenant has no disk support.
//! - `DiskSubmit(slot, ring_gpa, count) -> count`: performs `count` (1..=[`RING_MAX`])
//!   descriptors at `ring_gpa`. `InvalidArgument` for a slot without a disk or a bad count;
//!   `BadAddress` for a ring outside guest memory. A bad descriptor fails alone (its status
//!   is an errno), the others still run.
//! - `DiskReport(slot, generation, errno) -> 0`: the answer to the event of that slot and
//!   generation: for an attach, 0 once the filesystem is mounted, else why not (`EINVAL`:
//!   not a filesystem the kernel knows, `EUCLEAN`: corrupted, `EBUSY`: the mount point is
//!   taken, ...); for a detach, 0 once every change is written and the disk unmounted, or
//!   `EBUSY` (files open on it) and the disk stays, or `EAGAIN` (a guest program unmounted
//!   it lazily and files of it are still open: it is released when they are closed). A
//!   report for another generation is `InvalidArgument`.
//! - `DiskMounted(slot, path_gpa, path_len, flags) -> 0`: where disk `slot` is mounted in
//!   the guest now, sent by the guest after every mount and unmount (the kernel's, for an
//!   event's path, and its programs' `mount(2)`/`umount2(2)`): `path_len` bytes at
//!   `path_gpa` (at most [`MOUNTED_PATH_MAX`]), [`mounted`] flags; `path_len` 0 and `flags`
//!   0 when it is not mounted. For display only (`pvmux disk ls`): the host checks the slot,
//!   the flags and the path (absolute, printable UTF-8) and keeps nothing else of it.
//!   `InvalidArgument` for a slot without a disk, unknown flags, flags without a path, a
//!   path that is not absolute printable UTF-8 (the host then shows the mount with the path
//!   `?`); `TooLarge` for a longer path (shown as `?` too); `BadAddress` for a path outside
//!   guest memory (nothing changes).

use core::mem::{offset_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Bytes per sector.
pub const SECTOR_SIZE: u64 = 512;
/// Most disks one tenant has at once.
pub const MAX_DISKS: u32 = 8;
/// Most descriptors one `DiskSubmit` takes.
pub const RING_MAX: u64 = 64;
/// Largest transfer of one descriptor (bytes).
pub const IO_MAX: u64 = 1 << 20;
/// Longest mount path in an event.
pub const PATH_MAX: usize = 256;

/// [`DiskDesc::op`] values.
pub mod op {
    /// Reads `count` sectors from `sector` into the buffer.
    pub const READ: u32 = 1;
    /// Writes `count` sectors at `sector` from the buffer (`EROFS` on a read-only disk).
    pub const WRITE: u32 = 2;
    /// Makes every write so far durable (`fdatasync`); `sector`, `count`, `buf_gpa` are 0.
    pub const FLUSH: u32 = 3;
}

/// One ring descriptor (read once by the host, then checked; only `status` is written).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DiskDesc {
    /// [`op`].
    pub op: u32,
    /// Written by the host: 0, or the Linux errno the request failed with (`EIO`: the
    /// host's I/O failed; `EROFS`: a write to a read-only disk; `EINVAL`: a bad op, a
    /// range outside the disk, a transfer over [`IO_MAX`]; `EFAULT`: a buffer outside guest
    /// memory).
    pub status: u32,
    /// First sector.
    pub sector: u64,
    /// Sectors (`READ`, `WRITE`: at least 1).
    pub count: u32,
    /// Zero.
    pub reserved: u32,
    /// Guest-physical address of the data buffer (`count * 512` bytes).
    pub buf_gpa: u64,
}

const _: () = assert!(size_of::<DiskDesc>() == 32);
const _: () = assert!(offset_of!(DiskDesc, status) == 4);
const _: () = assert!(offset_of!(DiskDesc, sector) == 8);
const _: () = assert!(offset_of!(DiskDesc, buf_gpa) == 24);

/// Size of [`DiskDesc`].
pub const DESC_LEN: u64 = size_of::<DiskDesc>() as u64;
/// Offset of [`DiskDesc::status`] in a descriptor.
pub const STATUS_OFFSET: u64 = offset_of!(DiskDesc, status) as u64;

/// [`DiskEvent::kind`] values.
pub mod event {
    /// A disk was given to this kernel: mount it at the event's path.
    pub const ATTACH: u32 = 1;
    /// The host asks for the disk back: write everything, unmount, report.
    pub const DETACH: u32 = 2;
}

/// Longest mount path `DiskMounted` takes (a longer one is shown as `?`).
pub const MOUNTED_PATH_MAX: u64 = 1024;

/// `DiskMounted` flags.
pub mod mounted {
    /// The mount is read-only.
    pub const READ_ONLY: u64 = 1 << 0;
    /// A guest program mounted it (`mount(2)`); without it, the guest kernel did, at the
    /// path an `ATTACH` event named (`--disk FILE,mount=PATH`, `disk move --mount`).
    pub const BY_PROGRAM: u64 = 1 << 1;
    /// Unmounted lazily (`umount2(MNT_DETACH)`): gone from the guest's tree, the path is
    /// where it was, and files of it are still open; released when they are closed.
    pub const DETACHED: u64 = 1 << 2;
    /// Every flag.
    pub const ALL: u64 = READ_ONLY | BY_PROGRAM | DETACHED;
}

/// [`DiskEvent::flags`] bits.
pub mod flag {
    /// The disk is read-only (writes are `EROFS`; mount it read-only).
    pub const READ_ONLY: u32 = 1 << 0;
}

/// One disk event (`DiskTake`), written by the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct DiskEvent {
    /// The slot (below [`MAX_DISKS`]).
    pub slot: u32,
    /// [`event`].
    pub kind: u32,
    /// [`flag`] bits.
    pub flags: u32,
    /// Bytes of `path` used.
    pub path_len: u32,
    /// The disk's size in sectors.
    pub sectors: u64,
    /// This attachment's generation (a `DiskReport` names it).
    pub generation: u64,
    /// `ATTACH`: the absolute guest path to mount at (no NUL).
    pub path: [u8; PATH_MAX],
}

const _: () = assert!(size_of::<DiskEvent>() == 32 + PATH_MAX);
const _: () = assert!(offset_of!(DiskEvent, generation) == 24);

/// Size of [`DiskEvent`].
pub const EVENT_LEN: u64 = size_of::<DiskEvent>() as u64;

impl Default for DiskEvent {
    fn default() -> Self {
        Self {
            slot: 0,
            kind: 0,
            flags: 0,
            path_len: 0,
            sectors: 0,
            generation: 0,
            path: [0; PATH_MAX],
        }
    }
}

impl DiskEvent {
    /// The mount path, if the event's fields are consistent.
    pub fn mount_path(&self) -> Option<&[u8]> {
        let p = self.path.get(..self.path_len as usize)?;
        (p.first() == Some(&b'/') && !p.contains(&0)).then_some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_and_paths() {
        assert_eq!(DESC_LEN, 32);
        assert_eq!(EVENT_LEN, 288);
        let mut e = DiskEvent::default();
        assert_eq!(e.mount_path(), None);
        e.path[..4].copy_from_slice(b"/mnt");
        e.path_len = 4;
        assert_eq!(e.mount_path(), Some(&b"/mnt"[..]));
        e.path_len = 300;
        assert_eq!(e.mount_path(), None);
        e.path[0] = b'm';
        e.path_len = 4;
        assert_eq!(e.mount_path(), None);
    }
}
