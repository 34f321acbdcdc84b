//! An in-memory filesystem with Linux semantics and [`Errno`](crate::fs::Errno) errors, in small parts:
//!
//! * [`inode`]: inodes and the inode table. Inodes live in a map by inode number; numbers
//!   are never reused, so a stale number (a removed working directory, say) just fails with
//!   `ENOENT`. Link counts follow Linux: a file has one per name; a directory has 2 plus one
//!   per subdirectory. An unlinked inode lives on while handles are open. A directory maps
//!   names to inodes (sorted) and gives each entry a stable cookie used as the `getdents64`
//!   offset, so listing resumes correctly even if entries come and go.
//! * [`contents`]: a regular file's bytes, either borrowed from the initramfs (zero copy,
//!   `'static`), owned in kernel frames (one `mm::frame::Page` per written 4 KiB page; holes
//!   unstored), or read through from the host share; the first write copies borrowed or host
//!   bytes up. Bytes not stored read as zeros (a growing truncate allocates nothing).
//! * Limits ([`Limits`], like tmpfs's `size=` and `nr_inodes=`; the kernel sets tmpfs's
//!   defaults for its memory): file pages past the size limit, or when the kernel can spare
//!   no frame, are `ENOSPC` (a short write if some bytes fit); inodes created in the guest
//!   past the inode limit are `ENOSPC` (host-share inodes do not count); whatever a program
//!   makes the filesystem allocate on the kernel heap asks `mm::heap::charge` first and is
//!   `ENOMEM` without headroom. Nothing is half done on failure. Walking, removal and listing
//!   are iterative (inodes live in one flat map), so any depth or width is safe on a small
//!   kernel stack.
//! * [`path`]: path walking (`.`, `..`, symbolic links, `ELOOP`, length limits).
//! * [`names`]: the operations on names: create, link, unlink, rename, `stat`, ...
//! * [`handle`]: open files are [`Handle`]s into a table of open file descriptions (inode,
//!   offset, flags); read, write, seek, `getdents64`. A process layer maps its file
//!   descriptors onto them.
//! * [`host`]: the host share. With one attached ([`Fs::attach_host`]), directories and
//!   regular files can be *lazy*: a lazy directory lists its host directory (through
//!   [`HostShare::list`]) the first time its entries are needed (lookup, listing, emptiness
//!   check), creating lazy children; a lazy regular file has its size and metadata from the
//!   listing and reads go through to the host ([`HostShare::read`]) — no file data is
//!   cached, so memory use is bounded by what the guest writes. The first write copies the
//!   host bytes up into an owned buffer; the host is never written. A failed host call is
//!   `EIO` (the directory stays lazy and is retried next time). Host entries that are
//!   neither directories, regular files nor symbolic links are not shown.
//! * [`host_misses`]: host paths a single-name lookup found missing, so probing them again
//!   costs no host call (bounded).
//! * [`encode`]: the Linux encodings (`st_mode` bits, `struct stat`, `linux_dirent64`).
//!
//! * [`access`]: Linux's permission checks (search, open, create, delete, metadata) for
//!   the credentials set with [`Fs::set_cred`]; none for root (the default).
//!
//! There are no device nodes.
//!
//! Pure code (`alloc` only; the clock is a function pointer and the host share a
//! [`HostShare`] object), so `cargo test` runs it on the host: see `tests`.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;

mod access;
pub(crate) mod carry;
mod contents;
mod encode;
mod handle;
mod host;
mod host_misses;
mod inode;
mod mounts;
mod names;
mod path;
#[cfg(test)]
mod tests;
mod volume;

pub(crate) use encode::{dt, mode, Stat, DIRENT64_HEADER};
pub(crate) use handle::{oflag, whence, Handle};
pub(crate) use host::HostShare;
pub(crate) use inode::{FileType, Ino, ROOT_INO};
#[allow(unused_imports)] // the crossing's type, for callers that name it
pub(crate) use mounts::Crossing;
pub(crate) use path::WalkRules;
#[cfg(feature = "diagnostics")]
pub(crate) use path::NAME_MAX;
pub(crate) use path::PATH_MAX;
pub(crate) use path::SYMLOOP_MAX;
pub(crate) use volume::{Buf as VolumeBuf, Req as VolumeReq, VolumeHost};

use handle::OpenFile;
use inode::{Dir, Inode, Node};

/// Size and inode limits, like tmpfs's `size=` and `nr_inodes=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most pages of file contents held in kernel frames (`ENOSPC` above).
    pub(crate) max_pages: u64,
    /// Most inodes created in the guest (files, directories, symlinks; `ENOSPC` above).
    /// Inodes listed from the host share do not count.
    pub(crate) max_inodes: u64,
}

impl Limits {
    /// No limits (but memory's).
    pub(crate) const UNLIMITED: Self = Self {
        max_pages: u64::MAX,
        max_inodes: u64::MAX,
    };

    /// tmpfs's defaults for `mem_size` bytes of memory: half of memory for contents, and as
    /// many inodes as half of memory has pages (`nr_inodes` = totalram_pages / 2).
    pub(crate) const fn tmpfs_defaults(mem_size: u64) -> Self {
        let half_pages = mem_size / pvmux_hypercalls::PAGE_SIZE / 2;
        Self {
            max_pages: half_pages,
            max_inodes: half_pages,
        }
    }
}

/// What the filesystem holds, against its [`Limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Pages of file contents held.
    pub(crate) pages: u64,
    /// Inodes counted against the inode limit.
    pub(crate) inodes: u64,
    /// The limits.
    pub(crate) limits: Limits,
}

/// The filesystem.
pub(crate) struct Fs {
    inodes: BTreeMap<Ino, Inode>,
    next_ino: Ino,
    /// Size and inode limits.
    limits: Limits,
    /// Pages of file contents held (against `limits.max_pages`).
    data_pages: u64,
    /// Inodes created in the guest (against `limits.max_inodes`).
    counted_inodes: u64,
    /// Changes made to in-memory contents or names (not a volume's, which are the host's):
    /// a kernel hand-over compares it with its value after boot ([`Fs::changes`]).
    changes: u64,
    handles: BTreeMap<Handle, OpenFile>,
    next_handle: u32,
    /// Wall-clock time in ns since the epoch.
    clock: fn() -> u64,
    /// Owner `(uid, gid)` of an inode created in the guest (the creating process's
    /// filesystem ids; root by default).
    owner: fn() -> (u32, u32),
    /// The host share behind lazy nodes, if attached.
    host: Option<Arc<dyn HostShare>>,
    /// Host paths a single-name lookup found missing ([`host_misses`]).
    host_misses: host_misses::HostMisses,
    /// Mount points: directories a synthetic filesystem is shown over ([`mounts`]).
    mounts: BTreeMap<Ino, crate::fs::mount::MountKind>,
    /// Each kind's own mount point (`/proc`, `/sys`, `/dev/pts`), as [`Fs::mount`] made it;
    /// the other entries of `mounts` are programs' (`mount -t proc proc DIR`).
    own_mounts: alloc::vec::Vec<(crate::fs::mount::MountKind, Ino)>,
    /// The mounted volumes and their inodes (`--volume`).
    vols: volume::Volumes,
    /// The credentials operations are checked against (`None`: root, no checks; see
    /// [`access`]).
    cred: Option<crate::fs::perm::Cred>,
    /// Where absolute paths start and `..` stops: the caller's root directory (`chroot`;
    /// see [`path`]), `/` unless set.
    walk_root: Ino,
    /// `openat2`'s restrictions on the walk in progress (see [`path::WalkRules`]).
    walk_rules: path::WalkRules,
}

impl Fs {
    /// An empty filesystem (just `/`, mode 0755) whose timestamps come from `clock`.
    pub(crate) fn new(clock: fn() -> u64) -> Self {
        let now = clock();
        let mut inodes = BTreeMap::new();
        inodes.insert(
            ROOT_INO,
            Inode::new(Node::Dir(Dir::new(ROOT_INO)), 0o755, 2, now),
        );
        Self {
            inodes,
            next_ino: ROOT_INO + 1,
            limits: Limits::UNLIMITED,
            data_pages: 0,
            counted_inodes: 1,
            handles: BTreeMap::new(),
            next_handle: 0,
            clock,
            owner: || (0, 0),
            host: None,
            host_misses: host_misses::HostMisses::default(),
            mounts: BTreeMap::new(),
            own_mounts: alloc::vec::Vec::new(),
            vols: volume::Volumes::default(),
            cred: None,
            walk_root: ROOT_INO,
            walk_rules: path::WalkRules::default(),
            changes: 0,
        }
    }

    /// Makes inodes created from now on owned by what `owner` returns.
    pub(crate) fn set_owner(&mut self, owner: fn() -> (u32, u32)) {
        self.owner = owner;
    }

    pub(super) fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Number of live inodes (for tests and statistics).
    #[cfg(any(test, feature = "diagnostics"))]
    pub(crate) fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    /// Sets the size and inode limits (what is already held stays).
    pub(crate) fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// How many changes the in-memory filesystem has had (file contents, names, metadata;
    /// a volume's do not count: they are on the host). A kernel hand-over that cannot fit
    /// the tree in its record leaves it out only if the count did not move since boot.
    pub(crate) fn changes(&self) -> u64 {
        self.changes
    }

    /// Counts a change of inode `ino` unless it belongs to a volume.
    pub(super) fn note_change(&mut self, ino: Ino) {
        if !self.is_volume_node(ino) {
            self.changes = self.changes.wrapping_add(1);
        }
    }

    /// What the filesystem holds against its limits (for `statfs`).
    pub(crate) fn usage(&self) -> Usage {
        Usage {
            pages: self.data_pages,
            inodes: self.counted_inodes,
            limits: self.limits,
        }
    }
}
