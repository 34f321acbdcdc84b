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
//! and hands it over with `HandoverRecord(gpa, len)`. Version 1 is an **inventory**: the
//! kernel lists its processes, threads, memory areas and open files, and names in
//! [`section::BLOCKER`] entries everything a new kernel could not adopt. Version 2 adds what
//! adoption needs of each live process — its threads' full registers, FPU areas and signal
//! state ([`ThreadStateEntry`]), every resident page and the guest-physical frame it maps
//! ([`PageRunEntry`]; the frames stay where they are in the user pool), credentials, paths
//! and limits ([`ProcessStateEntry`]), signal dispositions ([`SigActionEntry`]) and a byte
//! blob those entries point into ([`BlobRef`]), its interval and POSIX timers
//! ([`TimerEntry`]) — and blockers for what it still does not carry. Every reader checks a record with [`Record::parse`] and then its values with
//! [`Record::check`] against its own [`Bounds`]: the record is untrusted input to the host
//! and to an adopting kernel alike.

use core::mem::size_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

mod events;
pub use events::{
    check_inotify_events, epoll_bits, epoll_item_flags, eventfd_flags, inotify_bits,
    EpollItemEntry, InotifyEntry, InotifyWatchEntry, TimerFdEntry, EVENT_STATUS_FLAGS,
    INOTIFY_EVENT_HEADER, MAX_EPOLL_NESTS, MAX_EVENTFD_COUNT, MAX_INOTIFY_EVENTS,
    MAX_INOTIFY_NAME_FIELD, MAX_INOTIFY_WATCHES, MAX_NESTED_EPOLL_ITEMS, SIGNALFD_NEVER,
};
mod fs;
pub use fs::{
    fs_node, fs_node_flags, FsDirentEntry, FsNodeEntry, FsPagesEntry, MAX_FS_COUNTER,
    MAX_FS_FILE_SIZE, MAX_FS_PATH,
};

/// Name of the ELF section holding a kernel image's [`HandoverNote`].
pub const NOTE_SECTION: &str = ".pvmux_handover";

/// [`HandoverNote::magic`]: "PVHOVNOT".
pub const NOTE_MAGIC: u64 = u64::from_le_bytes(*b"PVHOVNOT");

/// [`RecordHeader::magic`]: "PVHNDOVR".
pub const RECORD_MAGIC: u64 = u64::from_le_bytes(*b"PVHNDOVR");

/// The highest record version this crate defines (and the one a kernel of this source
/// writes when both sides support it). Version 3 is version 2 with the advisory file locks
/// (section [`section::LOCK`]), which a version-2 adopter would not know to take: a writer
/// asked for version 2 names held locks as a blocker instead. Version 4 adds the relays of
/// `--publish` connections (section [`section::RELAY`]); a writer asked for an older version
/// names live relays as a blocker. Version 5 adds the disks attached to the kernel and where
/// they are mounted (section [`section::DISK`]); a writer asked for an older version names
/// attached disks as a blocker. Version 6 adds the exec sessions in progress (section
/// [`section::EXEC_SESSION`]); a writer asked for an older version names them as a blocker.
pub const RECORD_VERSION: u32 = 6;

/// The lowest record version this crate still reads and writes (version 1: the inventory
/// alone).
pub const MIN_RECORD_VERSION: u32 = 1;

/// The largest record a host accepts (bytes).
pub const MAX_RECORD_LEN: u64 = 4 << 20;

/// The largest process or thread id a record may name (Linux's `PID_MAX_LIMIT`).
pub const MAX_PID: i32 = 4 << 20;

/// Length of a release string ([`HandoverNote::release`]), NUL padded.
pub const RELEASE_LEN: usize = 64;

/// The longest reason an adopting kernel gives with `HandoverAdopted` (bytes of text).
pub const MAX_ADOPT_REASON: u64 = 256;

/// `HandoverAdopted`'s `status`.
pub mod adopt_status {
    /// The kernel adopts the record (with [`super::adopt_flags::CHECK`]: would adopt it).
    pub const ADOPTS: u64 = 0;
    /// The kernel refuses it; the reason follows.
    pub const REFUSES: u64 = 1;
}

/// [`AdoptArgs::flags`].
pub mod adopt_flags {
    /// Check the record only (every check an adoption makes, and the plan of what it would
    /// rebuild), report the verdict with `HandoverAdopted`, and shut down: the host's
    /// pre-flight, in a scratch tenant of its own, before the running kernel is stopped.
    pub const CHECK: u32 = 1 << 0;
    /// Every flag this ABI defines.
    pub const ALL: u32 = CHECK;
}

/// The payload of boot command [`crate::bootargs::command::ADOPT`]: the hand-over record the
/// host offers (fetched with `HandoverFetch`) and the bounds its page frames are checked
/// against (the user pool of the tenant whose record it is).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct AdoptArgs {
    /// The record version offered.
    pub version: u32,
    /// [`adopt_flags`].
    pub flags: u32,
    /// The record's length in bytes (at most [`MAX_RECORD_LEN`]).
    pub record_len: u64,
    /// First byte of the user pool the record's frames lie in.
    pub pool_start: u64,
    /// End of that pool.
    pub pool_end: u64,
}

const _: () = assert!(size_of::<AdoptArgs>() == 32);
const _: () = assert!(core::mem::offset_of!(AdoptArgs, record_len) == 8);
const _: () = assert!(core::mem::offset_of!(AdoptArgs, pool_end) == 24);

impl AdoptArgs {
    /// Whether the values are ones a host sends: a known version, known flags, a record
    /// length in bounds and a page-aligned, non-empty pool.
    pub const fn ok(&self) -> bool {
        self.version >= MIN_RECORD_VERSION
            && self.version <= RECORD_VERSION
            && self.flags & !adopt_flags::ALL == 0
            && self.record_len > 0
            && self.record_len <= MAX_RECORD_LEN
            && self.pool_start.is_multiple_of(crate::PAGE_SIZE)
            && self.pool_end.is_multiple_of(crate::PAGE_SIZE)
            && self.pool_start < self.pool_end
    }
}

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
            min_version: MIN_RECORD_VERSION,
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
    /// Version 2: [`super::ThreadStateEntry`]s (what a thread resumes with).
    pub const THREAD_STATE: u32 = 6;
    /// Version 2: [`super::PageRunEntry`]s (every resident user page and its frame).
    pub const PAGES: u32 = 7;
    /// Version 2: [`super::ProcessStateEntry`]s (credentials, cwd, exe, break, signals).
    pub const PROCESS_STATE: u32 = 8;
    /// Version 2: [`super::SigActionEntry`]s (dispositions other than the default).
    pub const SIGACTION: u32 = 9;
    /// Version 2: bytes (entry size 1) that [`super::BlobRef`]s point into: FPU images,
    /// paths. At most one per record.
    pub const BLOB: u32 = 10;
    /// Version 2: [`super::FdStateEntry`]s (the descriptors it carries).
    pub const FD_STATE: u32 = 11;
    /// Version 2: [`super::PipeEntry`]s (pipes with their buffered bytes).
    pub const PIPE: u32 = 12;
    /// Version 2: [`super::FileAreaEntry`]s (private mappings of host and volume files).
    pub const FILE_AREA: u32 = 13;
    /// Version 2: [`super::ZombieEntry`]s (the wait status of each process not reaped).
    pub const ZOMBIE: u32 = 14;
    /// Version 2 (optional: a reader that does not know it skips it):
    /// [`super::FileImageEntry`]s (where each file area's pages not in a page run come from).
    pub const FILE_IMAGE: u32 = 15;
    /// Version 2: [`super::TimerEntry`]s (every interval and POSIX timer of each live
    /// process). An adopter of this source checks and re-creates them; see docs/ABI.md
    /// §handover for what an older adopter (which skips kinds it does not know) would do.
    pub const TIMER: u32 = 16;
    /// Version 2 (optional: a reader that does not know it skips it, and then refuses the
    /// descriptors that name its sockets): [`super::SocketEntry`]s (`AF_UNIX` sockets).
    pub const SOCKET: u32 = 17;
    /// Version 2 (optional, as [`SOCKET`]): [`super::SocketMsgEntry`]s (what is queued on
    /// each `AF_UNIX` socket, oldest first).
    pub const SOCKET_MSG: u32 = 19;
    /// Version 2 (optional, as [`SOCKET`]): [`super::InetSocketEntry`]s (the guest's
    /// loopback `AF_INET`/`AF_INET6` sockets).
    pub const INET_SOCKET: u32 = 18;
    /// Version 2 (optional, as [`SOCKET`]): [`super::InetMsgEntry`]s (what is queued on
    /// each loopback internet socket, oldest first).
    pub const INET_MSG: u32 = 20;
    /// Version 2 (optional, as [`SOCKET`]): [`super::TimerFdEntry`]s (the timer of each
    /// carried timerfd).
    pub const TIMERFD: u32 = 24;
    /// Version 2 (optional, as [`SOCKET`]): [`super::EpollItemEntry`]s (every registration
    /// of each carried epoll's interest list).
    pub const EPOLL_ITEM: u32 = 25;
    /// Version 2 (optional: a reader that does not know it skips it, and the processes show
    /// an empty `/proc/PID/cmdline` and `environ` until their next `execve`):
    /// [`super::ProcessArgsEntry`]s.
    pub const PROCESS_ARGS: u32 = 26;
    /// Version 2 (optional: a reader that does not know it skips it, and such a thread's
    /// sleep then starts over when it is re-issued, as before): [`super::RestartEntry`]s.
    pub const RESTART: u32 = 27;
    /// Version 2 (optional: a reader that does not know it skips it, and the processes' CPU
    /// times then start again from zero): [`super::CpuTimesEntry`]s.
    pub const CPU_TIMES: u32 = 28;
    /// Version 2 (optional: a reader that does not know it skips it, and then refuses the
    /// `MAP_SHARED` memory areas it describes): [`super::ShmAreaEntry`]s (the shared object
    /// each `MAP_SHARED` area maps).
    pub const SHM_AREA: u32 = 29;
    /// Version 2 (optional, as [`SHM_AREA`]): [`super::ShmPagesEntry`]s (the pages of each
    /// anonymous shared object, by index).
    pub const SHM_PAGES: u32 = 30;
    /// Version 2 (optional: a reader that does not know it skips it, and then refuses the
    /// descriptors of a terminal console): the [`super::ConsoleEntry`] (at most one).
    pub const CONSOLE: u32 = 31;
    /// Version 2 (optional: a reader that does not know it skips it, and every pending
    /// signal is then as the kernel sent it): [`super::SigQueueEntry`]s (each pending
    /// signal's information, in the order sent).
    pub const SIG_QUEUE: u32 = 32;
    /// Version 2 (optional, as [`SOCKET`]): [`super::InotifyEntry`]s (each carried inotify
    /// instance and its queued events).
    pub const INOTIFY: u32 = 33;
    /// Version 2 (optional, as [`SOCKET`]): [`super::InotifyWatchEntry`]s (every watch of
    /// each carried inotify instance).
    pub const INOTIFY_WATCH: u32 = 34;
    /// Version 2 (optional: a reader that does not know it skips it, and a generated file
    /// read in part is then generated again for the rest of its read):
    /// [`super::SynthDataEntry`]s.
    pub const SYNTH_DATA: u32 = 35;
    /// Version 2 (optional: a reader that does not know it skips it, and the processes then
    /// have no parent-death signal, no-new-privs or subreaper flag): [`super::PrctlEntry`]s.
    pub const PRCTL: u32 = 36;
    /// Version 2 (optional: a reader that does not know it skips it, and the threads are then
    /// named after their programs): [`super::ThreadNameEntry`]s.
    pub const THREAD_NAME: u32 = 37;
    /// Version 2 (optional: a reader that does not know it skips it, and such a timer is
    /// then armed again beside its pending signal, which reports no overrun):
    /// [`super::TimerWaitEntry`]s.
    pub const TIMER_WAIT: u32 = 38;
    /// Version 2 (optional: a reader that does not know it skips it, and then finds such a
    /// process's working directory path, [`super::UNREACHABLE_CWD`], nowhere and refuses
    /// the record): [`super::WorkdirEntry`]s.
    pub const WORKDIR: u32 = 39;
    /// Version 2 (optional: a reader that does not know it skips it, but then finds the
    /// descriptions in flight as [`super::FdStateEntry`]s of pid 0, [`super::IN_FLIGHT_PID`],
    /// which no process has, and refuses the record): [`super::InFlightEntry`]s.
    pub const IN_FLIGHT: u32 = 40;
    /// Version 2 (optional, but an inet socket flagged [`super::inet_flags::HOST`] needs
    /// its entry): [`super::HostSocketEntry`]s.
    pub const HOST_SOCKET: u32 = 41;
    /// Version 2 (optional, but a file area flagged both [`super::file_area_flags::IMAGE`]
    /// and [`super::file_area_flags::REMOVED`] needs its entry): [`super::FileAreaInodeEntry`]s.
    pub const FILE_AREA_INODE: u32 = 42;
    /// Version 3: the advisory file locks held ([`super::LockEntry`]s).
    pub const LOCK: u32 = 43;
    /// Version 3 (optional: a reader that does not know it skips it, and robust mutexes a
    /// carried thread holds when it ends are then not released): [`super::RobustListEntry`]s.
    pub const ROBUST_LIST: u32 = 44;
    /// Version 3 (optional: a reader that does not know it skips it, and the threads then
    /// have nice 0 and every vCPU in their affinity): [`super::ThreadSchedEntry`]s.
    pub const THREAD_SCHED: u32 = 45;
    /// Version 4: the kernel's relays of `--publish` connections and UDP flows
    /// ([`super::RelayEntry`]s).
    pub const RELAY: u32 = 46;
    /// Version 5: the disks attached to the kernel (`--disk`, `pvmux disk move`) and where
    /// each is mounted ([`super::DiskEntry`]s).
    pub const DISK: u32 = 47;
    /// Version 6: the exec sessions in progress (`pvmux exec`, `runc exec`) and what their
    /// relays hold ([`super::ExecSessionEntry`]s).
    pub const EXEC_SESSION: u32 = 48;
    /// The highest section number.
    pub const LAST: u32 = EXEC_SESSION;
    /// Version 2: the in-memory filesystem's inodes ([`super::FsNodeEntry`]; first the
    /// filesystem itself).
    pub const FS_NODE: u32 = 21;
    /// Version 2: the names in its directories ([`super::FsDirentEntry`]).
    pub const FS_DIRENT: u32 = 22;
    /// Version 2: its regular files' stored pages, by frame ([`super::FsPagesEntry`]).
    pub const FS_PAGES: u32 = 23;
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
    /// Its address space runs in the kernel sandbox (the trusted in-process mode, `pvmux
    /// run --user-isolation none`; a live process). An adopter without that mode refuses
    /// the record.
    pub const IN_PROCESS: u32 = 1 << 1;
    /// Every flag.
    pub const ALL: u32 = ZOMBIE | IN_PROCESS;
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
    /// Left out of a `fork` child (`MADV_DONTFORK`).
    pub const DONT_FORK: u32 = 1 << 4;
    /// Given to a `fork` child empty (`MADV_WIPEONFORK`).
    pub const WIPE_ON_FORK: u32 = 1 << 5;
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

/// A byte range of the record's [`section::BLOB`] section (`len` 0: none).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct BlobRef {
    /// Offset in the blob.
    pub off: u32,
    /// Bytes.
    pub len: u32,
}

/// Version 2: what a thread resumes with under the adopting kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ThreadStateEntry {
    /// Thread id (a [`ThreadEntry`] of the same record names it).
    pub tid: i32,
    /// Its process.
    pub pid: i32,
    /// A [`thread_state`] ([`thread_state::USER`]: `regs` are the thread's user registers
    /// at its safe point; otherwise only what the kernel knows of a blocked thread, and
    /// `restart_nr` is [`NO_RESTART`]).
    pub state: u32,
    /// Zero.
    pub _reserved: u32,
    /// User registers (`vector`, `error_code`, `fault_addr` zero).
    pub regs: crate::TrapFrame,
    /// FS base (TLS).
    pub fs_base: u64,
    /// The `set_tid_address` / `CLONE_CHILD_CLEARTID` word (0: none).
    pub clear_child_tid: u64,
    /// The signal mask.
    pub sigmask: u64,
    /// Signals pending for this thread alone.
    pub pending: u64,
    /// The system call to re-issue when the thread resumes ([`NO_RESTART`]: none; the
    /// registers then resume user code as they are).
    pub restart_nr: u64,
    /// The thread's saved FPU area (an XSAVE image) in the blob; `len` 0: the initial state.
    pub fpu: BlobRef,
    /// The alternate signal stack: base.
    pub altstack_sp: u64,
    /// Its size.
    pub altstack_size: u64,
    /// Its flags as last set (`SS_DISABLE` 2, `SS_AUTODISARM` 1 << 31).
    pub altstack_flags: u32,
    /// Zero.
    pub _reserved2: u32,
}

const _: () = assert!(size_of::<ThreadStateEntry>() == 16 + 168 + 48 + 24);

/// [`ThreadStateEntry::restart_nr`]: nothing to restart.
pub const NO_RESTART: u64 = u64::MAX;

/// The largest FPU area a record carries for one thread (bytes).
pub const MAX_FPU_LEN: u32 = 16 << 10;

/// Version 2: a run of resident user pages of one process that map consecutive frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct PageRunEntry {
    /// The process.
    pub pid: i32,
    /// [`page_flags`].
    pub flags: u32,
    /// First page's user address (page aligned).
    pub va: u64,
    /// Its guest-physical frame (page aligned, in the user pool).
    pub gpa: u64,
    /// Pages in the run (at least 1).
    pub pages: u64,
}

const _: () = assert!(size_of::<PageRunEntry>() == 32);

/// [`PageRunEntry::flags`].
pub mod page_flags {
    /// Copy-on-write: shared with another space since a `fork` (the first write copies it).
    pub const COW: u32 = 1 << 0;
    /// In a `MAP_SHARED` region.
    pub const SHARED: u32 = 1 << 1;
}

/// Version 2: a process's state beyond its [`ProcessEntry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ProcessStateEntry {
    /// The process.
    pub pid: i32,
    /// Its file mode creation mask.
    pub umask: u32,
    /// Real, effective, saved and filesystem user ids.
    pub uids: [u32; 4],
    /// Real, effective, saved and filesystem group ids.
    pub gids: [u32; 4],
    /// Signals pending for the whole process.
    pub shared_pending: u64,
    /// Start of the heap.
    pub brk_base: u64,
    /// The program break.
    pub brk: u64,
    /// Its working directory's path (in the blob).
    pub cwd: BlobRef,
    /// Its program's path (in the blob).
    pub exe: BlobRef,
    /// Capability sets: effective, permitted, inheritable, bounding, ambient.
    pub caps: [u64; 5],
    /// Bit 0: keep the permitted set when every uid leaves 0 (`PR_SET_KEEPCAPS`).
    pub cap_flags: u32,
    /// The signal its parent gets when it ends (`SIGCHLD` for a process made by `fork`).
    pub exit_signal: u32,
    /// Supplementary groups (u32 each, in the blob).
    pub groups: BlobRef,
    /// Resource limits: [`NR_RLIMITS`] pairs of u64 (soft, hard), in the blob.
    pub rlimits: BlobRef,
}

const _: () = assert!(size_of::<ProcessStateEntry>() == 144);

/// Resource limits a [`ProcessStateEntry`] carries (x86-64 Linux's `RLIM_NLIMITS`).
pub const NR_RLIMITS: usize = 16;

/// The most supplementary groups a process carries (Linux's `NGROUPS_MAX`).
pub const MAX_GROUPS: usize = 65536;

/// Version 2: a signal disposition other than the default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SigActionEntry {
    /// The process.
    pub pid: i32,
    /// The signal (1..=64).
    pub signo: u32,
    /// Handler address, or `SIG_IGN` (1).
    pub handler: u64,
    /// `SA_*` flags.
    pub flags: u64,
    /// The return trampoline (`SA_RESTORER`).
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: u64,
}

const _: () = assert!(size_of::<SigActionEntry>() == 40);

/// Version 2: an open file descriptor the record carries (the others are blockers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct FdStateEntry {
    /// The process.
    pub pid: i32,
    /// The descriptor.
    pub fd: i32,
    /// An [`fd_state`] kind.
    pub kind: u32,
    /// Bit 0: close-on-exec.
    pub fd_flags: u32,
    /// Access mode and status flags (`F_GETFL`).
    pub status_flags: u32,
    /// [`fd_state::CONSOLE`]: bit 0, the host stream is a terminal.
    pub aux: u32,
    /// The same for every descriptor, of any process, that shares one open file description
    /// (and so its offset and status flags).
    pub description: u64,
    /// The file offset (files).
    pub pos: u64,
    /// A pipe end: its pipe's [`PipeEntry::id`]; the console: the host stream it writes
    /// (0 stdout, 2 stderr).
    pub object: u64,
    /// A file: the absolute path it was opened by; a device or the console: its `/dev` path
    /// (in the blob).
    pub path: BlobRef,
}

const _: () = assert!(size_of::<FdStateEntry>() == 56);

/// [`FdStateEntry::kind`].
pub mod fd_state {
    /// A `--rootfs` host file whose bytes are all the host's (reopened by path).
    pub const HOST_FILE: u32 = 1;
    /// A `--volume` file (its bytes are on the host; reopened by path).
    pub const VOLUME_FILE: u32 = 2;
    /// The read end of a pipe.
    pub const PIPE_READ: u32 = 3;
    /// The write end of a pipe.
    pub const PIPE_WRITE: u32 = 4;
    /// The console.
    pub const CONSOLE: u32 = 5;
    /// A memory-like device (`/dev/null`, `zero`, `full`, `random`, `urandom`, `tty`).
    pub const DEVICE: u32 = 6;
    /// An `AF_UNIX` socket: [`super::FdStateEntry::object`] is its [`super::SocketEntry::id`].
    pub const UNIX_SOCKET: u32 = 7;
    /// A loopback internet socket: [`super::FdStateEntry::object`] is its
    /// [`super::InetSocketEntry::id`].
    pub const INET_SOCKET: u32 = 8;
    /// An `eventfd`: [`super::FdStateEntry::object`] is its counter, `aux` its
    /// [`super::eventfd_flags`].
    pub const EVENTFD: u32 = 10;
    /// A `timerfd`: its timer is the [`super::TimerFdEntry`] of its description.
    pub const TIMERFD: u32 = 11;
    /// A `signalfd`: [`super::FdStateEntry::object`] is its signal mask.
    pub const SIGNALFD: u32 = 12;
    /// An `epoll`: its interest list is the [`super::EpollItemEntry`]s of its description.
    pub const EPOLL: u32 = 13;
    /// An `inotify` instance: its queue is the [`super::InotifyEntry`] of its description,
    /// its watches the [`super::InotifyWatchEntry`]s.
    pub const INOTIFY: u32 = 14;
    /// A file or directory of a generated filesystem (`/proc`, `/sys`), by its path: `aux`
    /// [`super::synth_flags`], `pos` a file's offset or a directory's entry index; a file
    /// read in part has its snapshot in a [`super::SynthDataEntry`].
    pub const SYNTHETIC: u32 = 15;
    /// A file or directory of the in-memory filesystem (sections 21-23), by inode:
    /// [`super::FdStateEntry::object`] is its [`super::FsNodeEntry::ino`], `pos` a file's
    /// offset or a directory's `getdents64` cookie, `path` the name it was opened by (what
    /// `/proc/PID/fd` shows; empty: none). Also a host or volume file whose path no longer
    /// names it (renamed or removed while open).
    pub const MEMORY_FILE: u32 = 9;
}

/// [`fd_state::SYNTHETIC`]'s [`FdStateEntry::aux`] bits.
pub mod synth_flags {
    /// A directory (else a file).
    pub const DIRECTORY: u32 = 1 << 0;
    /// Every flag.
    pub const ALL: u32 = DIRECTORY;
}

/// The largest snapshot of a generated file a record carries ([`SynthDataEntry::data`]).
pub const MAX_SYNTH_DATA: u32 = 1 << 20;

/// Version 2 (section [`section::SYNTH_DATA`]): the contents a generated file's reads go on
/// from (a [`fd_state::SYNTHETIC`] file read in part: generated again, the rest of its read
/// would not be the snapshot it began).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SynthDataEntry {
    /// Its open file description (entries in increasing order of it).
    pub description: u64,
    /// The snapshot (in the blob; at most [`MAX_SYNTH_DATA`] bytes).
    pub data: BlobRef,
}

const _: () = assert!(size_of::<SynthDataEntry>() == 16);

/// Version 2 (section [`section::PRCTL`]): a live process's `prctl` state, for a process
/// with any (the others have none).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PrctlEntry {
    /// A live process (entries in increasing pid order).
    pub pid: i32,
    /// The signal it gets when its parent ends (`PR_SET_PDEATHSIG`; 0..=64, 0: none).
    pub pdeath_signal: u32,
    /// [`prctl_flags`].
    pub flags: u32,
    /// Zero.
    pub _reserved: u32,
}

const _: () = assert!(size_of::<PrctlEntry>() == 16);

/// [`PrctlEntry::flags`].
pub mod prctl_flags {
    /// `PR_SET_NO_NEW_PRIVS`.
    pub const NO_NEW_PRIVS: u32 = 1 << 0;
    /// `PR_SET_CHILD_SUBREAPER`.
    pub const CHILD_SUBREAPER: u32 = 1 << 1;
    /// `PR_SET_DUMPABLE` 0.
    pub const NOT_DUMPABLE: u32 = 1 << 2;
    /// `PR_SET_THP_DISABLE`.
    pub const THP_DISABLE: u32 = 1 << 3;
    /// Every flag.
    pub const ALL: u32 = NO_NEW_PRIVS | CHILD_SUBREAPER | NOT_DUMPABLE | THP_DISABLE;
}

/// Version 2 (section [`section::THREAD_NAME`]): the name `PR_SET_NAME` gave a live thread
/// (a thread without one is named after its process's program).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ThreadNameEntry {
    /// A thread with its state (entries in increasing tid order).
    pub tid: i32,
    /// Bytes of `name` used (at most 15).
    pub len: u32,
    /// The name: `len` bytes without a NUL, then zeros.
    pub name: [u8; 16],
}

const _: () = assert!(size_of::<ThreadNameEntry>() == 24);

/// Version 3 (section [`section::ROBUST_LIST`]): the robust futex list a live thread
/// registered (`set_robust_list`), which its end walks to release the robust mutexes it
/// still holds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RobustListEntry {
    /// A thread with its state (entries in increasing tid order).
    pub tid: i32,
    /// Zero.
    pub _reserved: u32,
    /// The user address of its `struct robust_list_head` (not 0).
    pub head: u64,
}

const _: () = assert!(size_of::<RobustListEntry>() == 16);

/// Version 3 (section [`section::THREAD_SCHED`]): a live thread's scheduling parameters
/// other than the defaults (nice 0, every vCPU).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ThreadSchedEntry {
    /// A thread with its state (entries in increasing tid order).
    pub tid: i32,
    /// Its nice value (-20..=19).
    pub nice: i32,
    /// Its CPU affinity, a bit per vCPU (not 0).
    pub affinity: u64,
}

const _: () = assert!(size_of::<ThreadSchedEntry>() == 16);

/// Version 4 (section [`section::RELAY`]): a relay of the kernel's own between a
/// `--publish` connection or UDP flow the host accepted (its handle, which the host keeps
/// across a switch) and the guest's loopback socket the relay uses to reach the published
/// port. A relay that has not reached the guest's listener yet names no socket: the
/// adopter connects it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RelayEntry {
    /// The host's handle of the connection or flow (`NetPublished`; not zero, each once:
    /// the host checks it is one of the tenant's).
    pub handle: u64,
    /// The [`InetSocketEntry::id`] of the relay's loopback socket (of the same protocol,
    /// not in a listener's queue, not a host socket, named by no descriptor; entries in
    /// increasing order of it, those without one first); 0: none yet.
    pub socket: u64,
    /// The guest port it relays to (not 0).
    pub port: u16,
    /// [`crate::net::PUBLISH_TCP`] or [`crate::net::PUBLISH_UDP`].
    pub proto: u8,
    /// [`relay_flags`] (a UDP flow has none).
    pub flags: u8,
    /// Zero.
    pub _reserved: u32,
    /// TCP: bytes read from the host connection not yet queued on the guest's socket (at
    /// most [`MAX_RELAY_BYTES`]); UDP: empty.
    pub to_guest: BlobRef,
    /// TCP: bytes read from the guest not yet sent to the host (at most
    /// [`MAX_RELAY_BYTES`]); UDP: empty.
    pub to_host: BlobRef,
}

const _: () = assert!(size_of::<RelayEntry>() == 40);

/// The most bytes a relay holds in one direction ([`RelayEntry::to_guest`],
/// [`RelayEntry::to_host`]).
pub const MAX_RELAY_BYTES: u32 = 64 << 10;

/// [`RelayEntry::flags`].
pub mod relay_flags {
    /// The relay's socket is connected to the guest's listener.
    pub const CONNECTED: u8 = 1 << 0;
    /// The host connection ended its sending (the relay shut the guest socket's writing).
    pub const HOST_EOF: u8 = 1 << 1;
    /// The guest ended its sending (the relay shut the host connection's writing).
    pub const GUEST_EOF: u8 = 1 << 2;
    /// Every flag.
    pub const ALL: u8 = CONNECTED | HOST_EOF | GUEST_EOF;
}

/// Version 5 (section [`section::DISK`]): a disk attached to the kernel. Its image stays
/// the host's (open and locked in the same slot across a switch); the writer wrote every
/// change it cached back to the image before the record was taken, and the adopter attaches
/// the disk again (its `/dev/vdX` node) and mounts its filesystem where it was. The host
/// checks that the entries are exactly its attached disks (slot, size, read-only).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DiskEntry {
    /// Its slot (below [`crate::disk::MAX_DISKS`]; entries in increasing order of it).
    pub slot: u32,
    /// [`disk_flags`].
    pub flags: u32,
    /// Its size in sectors (not 0).
    pub sectors: u64,
    /// Where it is mounted: an absolute path without NUL, shorter than
    /// [`crate::disk::PATH_MAX`]; empty when it is not mounted ([`disk_flags::MOUNTED`]).
    pub path: BlobRef,
}

const _: () = assert!(size_of::<DiskEntry>() == 24);

/// [`DiskEntry::flags`].
pub mod disk_flags {
    /// The host opened the disk read-only.
    pub const READ_ONLY: u32 = 1 << 0;
    /// Its filesystem is mounted at [`super::DiskEntry::path`].
    pub const MOUNTED: u32 = 1 << 1;
    /// The mount is read-only (always so for a read-only disk).
    pub const MOUNT_READ_ONLY: u32 = 1 << 2;
    /// A guest program mounted it (`mount(2)`); without it, the kernel did (at the path
    /// the host named).
    pub const BY_PROGRAM: u32 = 1 << 3;
    /// Every flag.
    pub const ALL: u32 = READ_ONLY | MOUNTED | MOUNT_READ_ONLY | BY_PROGRAM;
}

/// Version 6 (section [`section::EXEC_SESSION`]): an exec session in progress (`pvmux
/// exec`, `runc exec`; docs/ABI.md §exec) whose program the host started and whose end
/// it has not been told yet. The host keeps the session (its id, buffers, signals); the
/// kernel's relay between it and the program's standard streams — three pipes whose
/// other ends no descriptor of the relay holds — goes on in the adopter where it was.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ExecSessionEntry {
    /// The host's session id (not 0; entries in increasing order of it; the host checks
    /// they are exactly its sessions whose program runs, each with this pid).
    pub session: u64,
    /// The program's process: a live process of the record whose parent is outside the
    /// guest (ppid 0), or with [`exec_session_flags::EXITED`] one that ended.
    pub pid: i32,
    /// With [`exec_session_flags::EXITED`]: its wait status (a valid one); else 0.
    pub status: i32,
    /// [`exec_session_flags`].
    pub flags: u32,
    /// Zero.
    pub _reserved: u32,
    /// The pipe (a [`PipeEntry::id`]) of the program's standard input whose write end the
    /// relay holds; 0: the relay closed it.
    pub stdin: u64,
    /// The pipe of the program's standard output whose read end the relay holds; 0: every
    /// writer closed it and the relay read it to its end.
    pub stdout: u64,
    /// The same for standard error.
    pub stderr: u64,
    /// Input the relay took from the host and has not written to the stdin pipe yet (at
    /// most [`crate::exec::IO_MAX`]; empty without a stdin pipe).
    pub to_guest: BlobRef,
    /// Output read from the stdout pipe not yet taken by the host (at most
    /// [`crate::exec::IO_MAX`]).
    pub to_stdout: BlobRef,
    /// The same for standard error.
    pub to_stderr: BlobRef,
}

const _: () = assert!(size_of::<ExecSessionEntry>() == 72);

/// [`ExecSessionEntry::flags`].
pub mod exec_session_flags {
    /// The host's input has ended (the relay closes the stdin pipe once `to_guest` is
    /// written).
    pub const HOST_EOF: u32 = 1 << 0;
    /// The program ended with [`super::ExecSessionEntry::status`] (the relay reports it
    /// once its outputs are closed and given to the host).
    pub const EXITED: u32 = 1 << 1;
    /// The host stopped taking standard output: the relay drops it.
    pub const DISCARD_STDOUT: u32 = 1 << 2;
    /// The same for standard error.
    pub const DISCARD_STDERR: u32 = 1 << 3;
    /// Every flag.
    pub const ALL: u32 = HOST_EOF | EXITED | DISCARD_STDOUT | DISCARD_STDERR;
}

/// Version 2: a pipe, named by the [`FdStateEntry::object`] of both its ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct PipeEntry {
    /// Its id (unique in the record; in increasing order).
    pub id: u64,
    /// The bytes buffered in it, oldest first (in the blob).
    pub data: BlobRef,
    /// Zero.
    pub _reserved: u64,
}

const _: () = assert!(size_of::<PipeEntry>() == 24);

/// Version 2 (section [`section::SOCKET`]): an `AF_UNIX` socket. Both ends of a connection
/// are entries naming each other ([`SocketEntry::peer`]); a connection a listener has not
/// accepted yet is an entry with no descriptor naming its listener
/// ([`SocketEntry::listener`]). What is queued on it is in [`SocketMsgEntry`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SocketEntry {
    /// Its id (not zero, unique in the record; in increasing order).
    pub id: u64,
    /// The connected peer (datagrams: the default destination); 0: none.
    pub peer: u64,
    /// A connection not accepted yet: the listener whose queue holds it; 0: none.
    pub listener: u64,
    /// `SOCK_STREAM` (1), `SOCK_DGRAM` (2) or `SOCK_SEQPACKET` (5).
    pub ty: u32,
    /// A [`socket_state`].
    pub state: u32,
    /// [`socket_flags`].
    pub flags: u32,
    /// Bit 0: receiving shut down; bit 1: sending shut down.
    pub shutdown: u32,
    /// A listener: its backlog; a connection not accepted yet: its place in its listener's
    /// queue (0 first).
    pub backlog: u32,
    /// The pending error (`SO_ERROR`, a positive errno); 0: none.
    pub err: u32,
    /// `SO_SNDBUF` (bytes).
    pub sndbuf: u32,
    /// `SO_RCVBUF` (bytes).
    pub rcvbuf: u32,
    /// `SO_PEERCRED` ([`socket_flags::PEERCRED`]): pid, uid, gid.
    pub peercred: [u32; 3],
    /// A name in the filesystem ([`SocketEntry::path`]): its permission bits.
    pub mode: u32,
    /// A name in the filesystem: its owner and group.
    pub owner: [u32; 2],
    /// The bound address (a `sockaddr_un`: family, then the name; empty: unbound), in the
    /// blob.
    pub addr: BlobRef,
    /// Options kept as set (`SO_RCVTIMEO`, …): a sequence of (name `i32`, length `u32`,
    /// bytes), little-endian, in the blob.
    pub opts: BlobRef,
    /// A socket holding a name in the filesystem ([`socket_flags::NAMED`], `addr` a path):
    /// the absolute path of its socket file, in the blob (empty: none).
    pub path: BlobRef,
}

const _: () = assert!(size_of::<SocketEntry>() == 104);

/// [`SocketEntry::state`].
pub mod socket_state {
    /// Neither listening nor connected (datagram sockets).
    pub const UNCONNECTED: u32 = 0;
    /// Listening: its connections not accepted yet name it.
    pub const LISTENING: u32 = 1;
    /// A connected stream or seqpacket socket (also after its peer closed).
    pub const CONNECTED: u32 = 2;
}

/// [`SocketEntry::flags`].
pub mod socket_flags {
    /// `SO_PASSCRED`.
    pub const PASSCRED: u32 = 1 << 0;
    /// [`super::SocketEntry::peercred`] holds `SO_PEERCRED`.
    pub const PEERCRED: u32 = 1 << 1;
    /// Released (its last descriptor closed; kept as a peer that is gone).
    pub const DEAD: u32 = 1 << 2;
    /// Holds its name [`super::SocketEntry::addr`] in the name table: `bind` (an accepted
    /// connection only shows its listener's name); a path name is the socket file at
    /// [`super::SocketEntry::path`].
    pub const NAMED: u32 = 1 << 3;
    /// Every flag.
    pub const ALL: u32 = PASSCRED | PEERCRED | DEAD | NAMED;
}

/// `SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_SEQPACKET`: the [`SocketEntry::ty`] values.
pub const SOCKET_TYPES: [u32; 3] = [1, 2, 5];

/// The longest `sockaddr_un` (`sizeof(struct sockaddr_un)`).
pub const MAX_UNIX_ADDR: u32 = 110;

/// The most option bytes a [`SocketEntry`] may carry.
pub const MAX_SOCKET_OPTS: u32 = 4096;

/// The most bytes queued on one socket a record may carry (a socket's largest forced
/// receive buffer).
pub const MAX_SOCKET_BYTES: u64 = 8 << 20;

/// Version 2 (section [`section::SOCKET_MSG`]): a message queued on an `AF_UNIX` socket
/// (a stream's bytes not read yet, a datagram or a record), in the order it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SocketMsgEntry {
    /// The socket it is queued on (entries in non-decreasing order of it).
    pub socket: u64,
    /// The socket whose send buffer it is charged to; 0: none.
    pub sender: u64,
    /// The sender's credentials (`SCM_CREDENTIALS`): pid, uid, gid.
    pub cred: [u32; 3],
    /// Zero.
    pub _reserved: u32,
    /// The bytes not read yet, in the blob.
    pub data: BlobRef,
    /// The sender's address (empty: unbound), in the blob.
    pub from: BlobRef,
}

const _: () = assert!(size_of::<SocketMsgEntry>() == 48);

/// Version 2 (section [`section::INET_SOCKET`]): a loopback `AF_INET`/`AF_INET6` socket of
/// the guest's stack (TCP or UDP). Both ends of an open TCP connection are entries naming
/// each other ([`InetSocketEntry::peer`]); a connection a listener has not accepted yet is
/// an entry with no descriptor naming its listener ([`InetSocketEntry::listener`]). What is
/// queued on it is in [`InetMsgEntry`]s. Addresses are IPv6, IPv4 as IPv4-mapped
/// (`::ffff:a.b.c.d`), whatever the socket's family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct InetSocketEntry {
    /// Its id (not zero, unique in the record; in increasing order).
    pub id: u64,
    /// An established TCP connection: the other end while it is open; 0: none (closed).
    pub peer: u64,
    /// A connection not accepted yet: the listener whose queue holds it; 0: none.
    pub listener: u64,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
    /// `IPPROTO_TCP` (6) or `IPPROTO_UDP` (17).
    pub proto: u16,
    /// An [`inet_state`].
    pub state: u32,
    /// [`inet_flags`].
    pub flags: u32,
    /// Bit 0: receiving shut down; bit 1: sending shut down.
    pub shutdown: u32,
    /// A listener: its backlog; a connection not accepted yet: its place in its listener's
    /// queue (0 first).
    pub backlog: u32,
    /// The pending error (`SO_ERROR`, a positive errno); 0: none.
    pub err: u32,
    /// `SO_SNDBUF` as reported (bytes).
    pub sndbuf: u32,
    /// `SO_RCVBUF` as reported (bytes).
    pub rcvbuf: u32,
    /// The bound address ([`inet_flags::BOUND`]; may be the wildcard `::`/`0.0.0.0`).
    pub local: [u8; 16],
    /// TCP established: the connection's own address (its port is
    /// [`InetSocketEntry::local_port`]); otherwise zero.
    pub conn: [u8; 16],
    /// The peer's address (TCP established, or UDP with [`inet_flags::CONNECTED_UDP`]).
    pub remote: [u8; 16],
    /// The bound port.
    pub local_port: u16,
    /// The peer's port.
    pub remote_port: u16,
    /// `SO_LINGER`'s `l_linger` (seconds; [`inet_flags::LINGER`] is `l_onoff`).
    pub linger: u32,
    /// Options kept as set: a sequence of (level `i32`, name `i32`, length `u32`, bytes),
    /// little-endian, in the blob.
    pub opts: BlobRef,
}

const _: () = assert!(size_of::<InetSocketEntry>() == 120);

/// [`InetSocketEntry::state`].
pub mod inet_state {
    /// Not listening, not connected (a new TCP socket, one whose connect failed; UDP).
    pub const CLOSED: u32 = 0;
    /// TCP listening: its connections not accepted yet name it.
    pub const LISTENING: u32 = 1;
    /// TCP established (also half-closed or reset).
    pub const ESTABLISHED: u32 = 2;
}

/// [`InetSocketEntry::flags`].
pub mod inet_flags {
    /// Holds [`super::InetSocketEntry::local`]:`local_port` in the port table.
    pub const BOUND: u32 = 1 << 0;
    /// UDP: `connect`ed to [`super::InetSocketEntry::remote`].
    pub const CONNECTED_UDP: u32 = 1 << 1;
    /// TCP: the peer sent FIN (shut down writing or closed).
    pub const RX_FIN: u32 = 1 << 2;
    /// TCP: the connection was reset.
    pub const RESET: u32 = 1 << 3;
    /// `SO_LINGER`'s `l_onoff`.
    pub const LINGER: u32 = 1 << 4;
    /// `--net host`: a host socket carries it, by the handle its
    /// [`super::HostSocketEntry`] names (the entry holds only its options: not bound,
    /// closed, nothing queued). An adopter that does not know the flag refuses the record.
    pub const HOST: u32 = 1 << 5;
    /// Every flag.
    pub const ALL: u32 = BOUND | CONNECTED_UDP | RX_FIN | RESET | LINGER | HOST;
}

/// `IPPROTO_TCP`, `IPPROTO_UDP`: the [`InetSocketEntry::proto`] values.
pub const INET_PROTOS: [u16; 2] = [6, 17];

/// Version 2 (section [`section::INET_MSG`]): what is queued on a loopback internet socket,
/// in the order it is read: a TCP socket's bytes not read yet (one entry), or a UDP
/// datagram (one entry each) and its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct InetMsgEntry {
    /// The socket it is queued on (entries in non-decreasing order of it).
    pub socket: u64,
    /// UDP: the sender's address (IPv4 as IPv4-mapped); TCP: zero.
    pub from: [u8; 16],
    /// UDP: the sender's port; TCP: zero.
    pub from_port: u16,
    /// Zero.
    pub _reserved: [u8; 6],
    /// The bytes not read yet, in the blob.
    pub data: BlobRef,
}

const _: () = assert!(size_of::<InetMsgEntry>() == 40);

/// Version 2: a private mapping of a host or volume file: the memory area of the same
/// process and start, whose pages not in a [`PageRunEntry`] come from the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct FileAreaEntry {
    /// The process.
    pub pid: i32,
    /// [`file_area_flags`].
    pub flags: u32,
    /// The area's first byte (a [`VmaEntry::start`] of the same process).
    pub start: u64,
    /// The file offset of that byte (page aligned).
    pub offset: u64,
    /// The file's path (in the blob).
    pub path: BlobRef,
}

const _: () = assert!(size_of::<FileAreaEntry>() == 32);

/// [`FileAreaEntry::flags`].
pub mod file_area_flags {
    /// A `--volume` file (else a `--rootfs` host file).
    pub const VOLUME: u32 = 1 << 0;
    /// A program's segment (filled from the program's image, its `.bss` past the file's end
    /// zero); else an `mmap` of a file (touching a page past the file's end is `SIGBUS`).
    pub const IMAGE: u32 = 1 << 1;
    /// A file of the in-memory filesystem (sections 21-23), by its path: every page the
    /// mapping has is a page run (copy-on-write of the file's frames, or its own); the
    /// others are demand-zero, as they were.
    pub const MEMORY: u32 = 1 << 2;
    /// A file with no name left (removed since it was mapped; `path` is the name it had):
    /// the adopter looks up no path. Of an area that is not [`IMAGE`], every page the
    /// mapping has is a page run, the others demand-zero, so no file is needed (an adopter
    /// that does not know the flag looks the path up and backs the area the same way). Of
    /// an [`IMAGE`] area, the file is a carried inode held open, named by the area's
    /// [`super::FileAreaInodeEntry`] (an adopter that does not know it finds no file at
    /// the path and refuses the record).
    pub const REMOVED: u32 = 1 << 3;
}

/// Version 2 (section [`section::FILE_IMAGE`]): where the pages of a file area (the
/// [`FileAreaEntry`] of the same process and start) that no page run holds come from: the
/// file offsets `lo..hi` of its image (whole pages of file data: a program segment's
/// `.bss` past them, and its partial edges, are not from the file), the others zero —
/// exactly as the writer's own loader backed the area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct FileImageEntry {
    /// The process.
    pub pid: i32,
    /// [`file_image_flags`].
    pub flags: u32,
    /// The area's first byte (a [`FileAreaEntry::start`] of the same process).
    pub start: u64,
    /// First file offset backed by the file (page aligned).
    pub lo: u64,
    /// End of the file offsets backed (page aligned, at least `lo`; equal: none).
    pub hi: u64,
}

const _: () = assert!(size_of::<FileImageEntry>() == 32);

/// [`FileImageEntry::flags`].
pub mod file_image_flags {
    /// Touching a page wholly past the file's end is `SIGBUS` (an `mmap` of a file; not a
    /// program's segment).
    pub const BUS_PAST_EOF: u32 = 1 << 0;
}

/// Version 2: a process that ended and is not reaped yet ([`process_flags::ZOMBIE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ZombieEntry {
    /// The process.
    pub pid: i32,
    /// The wait status its parent's `wait4` returns.
    pub status: i32,
}

const _: () = assert!(size_of::<ZombieEntry>() == 8);

/// Version 2 (section [`section::PROCESS_ARGS`]): what `/proc/PID/cmdline` and
/// `/proc/PID/environ` show of a live process — its last `execve`'s arguments and
/// environment, each string NUL-terminated, at most [`MAX_PROCESS_ARGS`] bytes each. In
/// increasing pid order, one per process at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ProcessArgsEntry {
    /// The process (live).
    pub pid: i32,
    /// Zero.
    pub reserved: u32,
    /// Its arguments (in the blob).
    pub cmdline: BlobRef,
    /// Its environment (in the blob).
    pub environ: BlobRef,
}

const _: () = assert!(size_of::<ProcessArgsEntry>() == 24);

/// The most bytes a [`ProcessArgsEntry`] carries of each of its two lists.
pub const MAX_PROCESS_ARGS: u32 = 64 << 10;

/// Linux's `restart_syscall` number.
pub const RESTART_SYSCALL_NR: u64 = 219;

/// The calls a [`RestartEntry`] continues (x86-64 numbers): the sleeps `nanosleep`,
/// `clock_nanosleep` and `restart_syscall` itself, and the waits with a timeout `poll`,
/// `select`, `futex` (a relative `FUTEX_WAIT`), `epoll_wait`, `pselect6`, `ppoll`,
/// `epoll_pwait` and `epoll_pwait2`.
pub const CONTINUED_SLEEPS: [u64; 11] = [
    35,
    230,
    RESTART_SYSCALL_NR,
    7,
    23,
    202,
    232,
    270,
    271,
    281,
    441,
];

/// Version 2 (section [`section::RESTART`]): a relative sleep (`nanosleep`, a relative
/// `clock_nanosleep` on a wall clock) or a wait with a timeout (`poll`, `select`, the
/// `epoll` waits, ...) the freeze stopped, which its thread goes on with when it re-issues
/// the call (its `restart_nr`, `nr`, returning to `ret_rip`, a patched site's too): a sleep
/// sleeps until `target_ns`, a wait waits until then at most — the time it had left, as
/// Linux continues a sleep a stop interrupted — not the whole time again. In increasing tid
/// order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct RestartEntry {
    /// The thread (state [`thread_state::USER`]).
    pub tid: i32,
    /// Zero.
    pub reserved: u32,
    /// The call it re-issues (one of [`CONTINUED_SLEEPS`]; its `restart_nr`).
    pub nr: u64,
    /// The call's return address (in the user window).
    pub ret_rip: u64,
    /// When the sleep ends, or the wait times out: guest monotonic ns (the tenant's clock,
    /// which a switch keeps).
    pub target_ns: u64,
    /// Where a signal's interruption of a sleep writes the time left (`rem`; 0: nowhere; 0
    /// for a wait).
    pub rem: u64,
}

const _: () = assert!(size_of::<RestartEntry>() == 40);

/// Version 2 (section [`section::SHM_AREA`]): the `MAP_SHARED` memory area of the same
/// process and start maps the pages of a shared object from page `pgoff` on: every region
/// naming the same object, in any process, maps the same frames (a page first touched after
/// the switch too). The area's resident pages are page runs with [`page_flags::SHARED`],
/// each the object's frame at its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ShmAreaEntry {
    /// The process.
    pub pid: i32,
    /// [`shm_area_flags`].
    pub flags: u32,
    /// The area's first byte (a [`VmaEntry::start`] of the same process, a shared area).
    pub start: u64,
    /// The object: an anonymous object's number in the record (its pages are the
    /// [`ShmPagesEntry`]s of that number), or with [`shm_area_flags::FILE`] the inode of a
    /// regular file of the carried in-memory filesystem (its pages are the file's).
    pub object: u64,
    /// The object's page at the area's first byte.
    pub pgoff: u64,
    /// With [`shm_area_flags::FILE`]: the path the file was mapped by (what
    /// `/proc/PID/maps` names); else empty.
    pub path: BlobRef,
}

const _: () = assert!(size_of::<ShmAreaEntry>() == 40);

/// [`ShmAreaEntry::flags`].
pub mod shm_area_flags {
    /// The object is a file of the in-memory filesystem (`/tmp`, `/dev/shm`), by inode;
    /// else anonymous shared memory (`MAP_SHARED|MAP_ANONYMOUS`, shared since by `fork`).
    pub const FILE: u32 = 1 << 0;
}

/// Version 2 (section [`section::SHM_PAGES`]): `pages` pages of anonymous shared object
/// `object` (its number in [`ShmAreaEntry::object`]) from page index `index` on, in the
/// consecutive frames from `gpa` (the object's own reference on each). Pages of the object
/// not in any entry read as zero, as they did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ShmPagesEntry {
    /// The object.
    pub object: u64,
    /// First page index.
    pub index: u64,
    /// Its frame (page aligned, in the user pool).
    pub gpa: u64,
    /// Pages in the run (at least 1).
    pub pages: u64,
}

const _: () = assert!(size_of::<ShmPagesEntry>() == 32);

/// Most pages a shared object may have by index in a record (2^36: 256 TiB of pages).
pub const MAX_SHM_PAGES: u64 = 1 << 36;

/// Version 2 (section [`section::CONSOLE`]): the console's state — what programs have not
/// read of its input and, when the host's stdin is a terminal (the console is then the line
/// discipline), the terminal's settings, size, foreground process group and the line being
/// typed. At most one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ConsoleEntry {
    /// Linux's `struct termios2` (x86-64): `c_iflag`, `c_oflag`, `c_cflag`, `c_lflag` (u32
    /// each), `c_line`, `c_cc[19]`, `c_ispeed`, `c_ospeed`.
    pub termios: [u8; 44],
    /// [`console_flags`].
    pub flags: u32,
    /// `struct winsize`: rows, columns, x and y pixels (rows 0: not set, the boot's size).
    pub winsize: [u16; 4],
    /// The foreground process group (0: not set, init's).
    pub fg_pgrp: i32,
    /// 0.
    pub reserved: u32,
    /// The input ready for programs, oldest first (at most [`MAX_CONSOLE_INPUT`] bytes).
    pub input: BlobRef,
    /// Canonical mode: the length of each completed line in `input`, in order (u32
    /// little-endian each; 0: an end of file typed at the start of a line).
    pub lines: BlobRef,
    /// Canonical mode: the line being typed (less than [`MAX_CONSOLE_LINE`] bytes).
    pub edit: BlobRef,
}

const _: () = assert!(size_of::<ConsoleEntry>() == 88);

/// Version 2 (section [`section::SIG_QUEUE`]): one pending signal instance with its
/// information (what the `siginfo_t` of its delivery says), in the order sent: a live
/// thread's own queue ([`sig_queue_kind::THREAD`]) or a live process's shared one
/// ([`sig_queue_kind::PROCESS`]). A standard signal is pending at most once; a real-time
/// one once per instance. A signal pending without its information (merged beyond the
/// queue's limit) is in the thread's or process's pending set only. In (kind, owner) order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SigQueueEntry {
    /// The thread's tid or the process's pid.
    pub owner: i32,
    /// [`sig_queue_kind`].
    pub kind: u32,
    /// The signal (1..=64).
    pub signo: u32,
    /// `si_code`.
    pub code: i32,
    /// [`sig_detail`]: which of the fields below say what.
    pub detail: u32,
    /// Sender or child: its pid; queued: `si_errno`; fault: the exception vector; timer:
    /// `si_timerid`.
    pub a: i32,
    /// Sender or child: its uid; timer: `si_overrun`.
    pub b: u32,
    /// Child: its exit code or killing signal.
    pub c: i32,
    /// Child: user and system time (clock ticks); fault: `si_addr`, the error code, the
    /// instruction and stack pointers; timer: `si_value`.
    pub v: [u64; 4],
    /// Queued (`rt_sigqueueinfo`): the 112 bytes of the sender's `siginfo_t` after its
    /// header; else empty.
    pub rest: BlobRef,
}

const _: () = assert!(size_of::<SigQueueEntry>() == 72);

/// [`SigQueueEntry::kind`].
pub mod sig_queue_kind {
    /// A thread's own pending signals.
    pub const THREAD: u32 = 0;
    /// A process's shared pending signals.
    pub const PROCESS: u32 = 1;
}

/// [`SigQueueEntry::detail`].
pub mod sig_detail {
    /// Sent by a process (`kill`, `tgkill`) or the kernel (pid 0).
    pub const SENDER: u32 = 0;
    /// `rt_sigqueueinfo`: the sender's own `siginfo_t`.
    pub const QUEUED: u32 = 1;
    /// A child's state change (`SIGCHLD`).
    pub const CHILD: u32 = 2;
    /// A fault of the program.
    pub const FAULT: u32 = 3;
    /// A POSIX timer's expiry.
    pub const TIMER: u32 = 4;
}

/// Bytes of a queued signal's `siginfo_t` after its 16-byte header.
pub const SIGINFO_REST: u32 = 112;
/// Most signal instances a record carries per queue (a thread's or a process's).
pub const MAX_SIG_QUEUE: usize = 512;

/// [`ConsoleEntry::flags`].
pub mod console_flags {
    /// The host reported the end of the input: the next read returns 0 (once).
    pub const EOF: u32 = 1 << 0;
}

/// Most bytes of console input a record carries (the console buffers at most 64 KiB).
pub const MAX_CONSOLE_INPUT: u32 = 64 << 10;
/// A line being typed is shorter than this (Linux's `N_TTY_BUF_SIZE`).
pub const MAX_CONSOLE_LINE: u32 = 4096;

/// [`CpuTimesEntry::kind`].
pub mod cpu_times_kind {
    /// A live thread (`id` its tid): what it has used so far.
    pub const THREAD: u32 = 0;
    /// A process (`id` its pid; a zombie's is all it used, what its parent's `wait4`
    /// reports): what its ended threads used, its largest resident set and the page faults
    /// it took.
    pub const ENDED: u32 = 1;
    /// A process (`id` its pid, live or a zombie): what its reaped children used
    /// (`RUSAGE_CHILDREN`).
    pub const CHILDREN: u32 = 2;
}

/// Version 2 (section [`section::CPU_TIMES`]): CPU times and faults the adopting kernel goes
/// on counting from (`times`, `getrusage`, `/proc/PID/stat`, CPU-time clocks and timers), in
/// increasing order of (`kind`, `id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct CpuTimesEntry {
    /// The thread's tid ([`cpu_times_kind::THREAD`]) or the process's pid.
    pub id: i32,
    /// One of [`cpu_times_kind`].
    pub kind: u32,
    /// User CPU time (ns).
    pub user_ns: u64,
    /// System CPU time (ns).
    pub system_ns: u64,
    /// Largest resident set in KiB (0 for a thread).
    pub maxrss_kib: u64,
    /// Page faults served (0 for a thread).
    pub minflt: u64,
}

const _: () = assert!(size_of::<CpuTimesEntry>() == 40);

/// The most CPU time an entry may carry, per field (ns): about 292 years, so that sums of
/// many never overflow.
pub const MAX_CPU_NS: u64 = 1 << 63 >> 10;

/// Version 2 (section [`section::TIMER`]): one timer of a live process — an interval timer
/// (`setitimer`, `alarm`) or a POSIX timer (`timer_create`) — armed or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct TimerEntry {
    /// Its process.
    pub pid: i32,
    /// [`timer_kind`].
    pub kind: u32,
    /// A POSIX timer's id (`timer_create`'s); 0 for an interval timer.
    pub id: i32,
    /// [`timer_clock`].
    pub clock: u32,
    /// [`timer_notify`] (an interval timer: [`timer_notify::SIGNAL`]).
    pub notify: u32,
    /// The signal an expiry sends (1..=64; 0 with [`timer_notify::NONE`]). An interval
    /// timer's is its kind's (`SIGALRM`, `SIGVTALRM`, `SIGPROF`).
    pub signo: u32,
    /// [`timer_notify::THREAD`]: the thread (of the process) its signal goes to; else 0.
    pub tid: i32,
    /// What `timer_getoverrun` reports (0..=`i32::MAX`).
    pub overrun: i32,
    /// The signal's `sigev_value` (`si_value`; a POSIX timer's).
    pub value: u64,
    /// The next expiry (0: not armed): a wall clock's is an absolute time of the tenant's
    /// guest clock in ns (the same across a switch: the host keeps its clock parameters); a
    /// CPU-time clock's is the CPU time in ns left until it (at least 1).
    pub next: u64,
    /// The reload interval in ns (0: one-shot).
    pub interval: u64,
    /// Reserved (0).
    pub _reserved: u64,
}

const _: () = assert!(size_of::<TimerEntry>() == 64);
const _: () = assert!(core::mem::offset_of!(TimerEntry, value) == 32);
const _: () = assert!(core::mem::offset_of!(TimerEntry, next) == 40);

/// Version 2 (section [`section::TIMER_WAIT`]): a periodic POSIX timer whose signal is
/// queued and not taken yet, which waits for it as on Linux (it is armed again, counting the
/// expirations missed as the signal's `si_overrun`, when the signal is taken).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct TimerWaitEntry {
    /// Its process (a [`TimerEntry`]'s; entries in (pid, id) order).
    pub pid: i32,
    /// Its id: a [`timer_kind::POSIX`] [`TimerEntry`] of the process with an interval and a
    /// next expiry (the first after the freeze; the expiry before it is the one the signal
    /// now waits for).
    pub id: i32,
    /// The expirations missed up to that expiry and not reported yet (what the pending
    /// signal's `si_overrun` starts from; at most `i32::MAX`).
    pub overrun: u64,
}

const _: () = assert!(size_of::<TimerWaitEntry>() == 16);

/// The [`ProcessStateEntry::cwd`] of a process whose working directory has no path of the
/// in-memory filesystem (Linux's `getcwd` says `(unreachable)` of such a directory): a
/// relative path an adopter that does not know [`section::WORKDIR`] does not find, so it
/// refuses the record rather than moving the process to `/`.
pub const UNREACHABLE_CWD: &[u8] = b"(unreachable)";

/// Version 2 (section [`section::WORKDIR`]): a live process's working directory that has no
/// path of the in-memory filesystem (its [`ProcessStateEntry::cwd`] is
/// [`UNREACHABLE_CWD`]).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct WorkdirEntry {
    /// A live process (entries in increasing pid order).
    pub pid: i32,
    /// [`workdir_kind`].
    pub kind: u32,
    /// [`workdir_kind::REMOVED`]: the directory's inode (a carried `REMOVED` directory, or
    /// one gone since: the process then stays in a directory no lookup finds); else 0.
    pub ino: u64,
    /// [`workdir_kind::SYNTHETIC`]: the directory's absolute path in `/proc` or `/sys`;
    /// else empty.
    pub path: BlobRef,
}

const _: () = assert!(size_of::<WorkdirEntry>() == 24);

/// The [`FdStateEntry::pid`] of an open file description in flight: passed with
/// `SCM_RIGHTS` on an `AF_UNIX` socket and not received yet ([`InFlightEntry`]). Every such
/// description has one entry of this pid (whether or not a process holds it too), its
/// [`FdStateEntry::fd`] numbering them from 0 in increasing description order.
pub const IN_FLIGHT_PID: i32 = 0;

/// [`LockEntry::kind`].
pub mod lock_kind {
    /// A POSIX record lock (`fcntl` `F_SETLK`), held by process [`super::LockEntry::owner`].
    pub const POSIX: u32 = 1;
    /// An open file description lock (`F_OFD_SETLK`), held by the description.
    pub const OFD: u32 = 2;
    /// A `flock` lock (the whole file), held by the description.
    pub const FLOCK: u32 = 3;
}

/// [`LockEntry::mode`].
pub mod lock_mode {
    /// Shared (`F_RDLCK`, `LOCK_SH`).
    pub const READ: u32 = 0;
    /// Exclusive (`F_WRLCK`, `LOCK_EX`).
    pub const WRITE: u32 = 1;
}

/// The last byte of a lock "to the end of the file" ([`LockEntry::end`]; Linux's
/// `OFFSET_MAX`).
pub const LOCK_OFFSET_MAX: u64 = i64::MAX as u64;

/// Version 3 (section [`section::LOCK`]): an advisory lock held on a file. The file is the
/// one open file description [`LockEntry::description`] names (an adopter's inode numbers
/// of host files may differ from the writer's).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct LockEntry {
    /// A [`lock_kind`].
    pub kind: u32,
    /// A [`lock_mode`].
    pub mode: u32,
    /// [`lock_kind::POSIX`]: the process holding it (a process of the record); 0 otherwise.
    pub owner: i32,
    /// Zero.
    pub _reserved: u32,
    /// An [`FdStateEntry::description`] of a file: for [`lock_kind::OFD`] and
    /// [`lock_kind::FLOCK`] the description holding the lock; for [`lock_kind::POSIX`] one
    /// of the owner's descriptions of the file (closing its last one would have dropped the
    /// lock).
    pub description: u64,
    /// The first byte locked (0 for `flock`).
    pub start: u64,
    /// The last byte locked, at least `start` ([`LOCK_OFFSET_MAX`]: to the end of the file
    /// however long; always for `flock`).
    pub end: u64,
}

const _: () = assert!(size_of::<LockEntry>() == 40);

/// The most descriptors one message may pass (Linux's `SCM_MAX_FD`).
pub const MAX_RIGHTS_PER_MSG: u32 = 253;

/// Version 2 (section [`section::IN_FLIGHT`]): a descriptor passed with a message queued on
/// an `AF_UNIX` socket (`SCM_RIGHTS`), which the first read reaching the message receives.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct InFlightEntry {
    /// The message: its index among the record's [`SocketMsgEntry`]s (entries in
    /// increasing (message, slot) order).
    pub message: u32,
    /// Its place among the message's descriptors: 0, 1, ... (at most
    /// [`MAX_RIGHTS_PER_MSG`] a message).
    pub slot: u32,
    /// The open file description passed: an [`FdStateEntry::description`] of an entry of
    /// pid [`IN_FLIGHT_PID`].
    pub description: u64,
}

const _: () = assert!(size_of::<InFlightEntry>() == 16);

/// Version 2 (section [`section::HOST_SOCKET`]): the host socket (`--net host`) that
/// carries an internet socket of the guest. The host keeps its sockets across a switch;
/// it checks that each handle is one of the tenant's.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HostSocketEntry {
    /// The [`InetSocketEntry::id`] of a socket flagged [`inet_flags::HOST`] (entries in
    /// increasing order of it, one per such socket).
    pub socket: u64,
    /// The host's handle of the socket (`NetSocket`, `NetAccept`; docs/ABI.md §net).
    pub handle: u64,
}

const _: () = assert!(size_of::<HostSocketEntry>() == 16);

/// Version 2 (section [`section::FILE_AREA_INODE`]): the file of a program's or library's
/// image area whose file has no name left (its [`FileAreaEntry`] flagged `IMAGE` and
/// `REMOVED`): a host file's inode of the carried filesystem, held open by the writer's
/// image cache.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct FileAreaInodeEntry {
    /// The process (entries in (pid, start) order, one per such area).
    pub pid: i32,
    /// Zero.
    pub _reserved: u32,
    /// The area's first byte (its [`FileAreaEntry::start`]).
    pub start: u64,
    /// The file's inode (a [`FsNodeEntry::ino`] when the record carries the filesystem).
    pub ino: u64,
}

const _: () = assert!(size_of::<FileAreaInodeEntry>() == 24);

/// [`WorkdirEntry::kind`].
pub mod workdir_kind {
    /// A directory removed while it was the working directory.
    pub const REMOVED: u32 = 1;
    /// A directory of a generated filesystem (`/proc/self`, say).
    pub const SYNTHETIC: u32 = 2;
}

/// [`TimerEntry::kind`].
pub mod timer_kind {
    /// `ITIMER_REAL` (and `alarm`): [`super::timer_clock::REALTIME`], `SIGALRM`.
    pub const ITIMER_REAL: u32 = 1;
    /// `ITIMER_VIRTUAL`: [`super::timer_clock::PROCESS_CPU_USER`], `SIGVTALRM`.
    pub const ITIMER_VIRTUAL: u32 = 2;
    /// `ITIMER_PROF`: [`super::timer_clock::PROCESS_CPU`], `SIGPROF`.
    pub const ITIMER_PROF: u32 = 3;
    /// A POSIX timer.
    pub const POSIX: u32 = 4;
}

/// [`TimerEntry::clock`].
pub mod timer_clock {
    /// `CLOCK_REALTIME` and its kin (absolute settings are wall-clock times).
    pub const REALTIME: u32 = 1;
    /// `CLOCK_MONOTONIC` and its kin (`CLOCK_BOOTTIME`, ...).
    pub const MONOTONIC: u32 = 2;
    /// The process's own CPU time, user + system (`CLOCK_PROCESS_CPUTIME_ID`).
    pub const PROCESS_CPU: u32 = 3;
    /// The process's own user CPU time.
    pub const PROCESS_CPU_USER: u32 = 4;
}

/// [`TimerEntry::notify`].
pub mod timer_notify {
    /// `SIGEV_NONE`: nothing; the timer is only read back.
    pub const NONE: u32 = 0;
    /// A signal to the process (`SIGEV_SIGNAL`, `SIGEV_THREAD`; an interval timer).
    pub const SIGNAL: u32 = 1;
    /// A signal to one thread (`SIGEV_THREAD_ID`).
    pub const THREAD: u32 = 2;
}

/// The most timers a record may carry for one process (interval timers included).
pub const MAX_TIMERS_PER_PROCESS: usize = 4096 + 3;

/// The most bytes a [`PipeEntry`] may hold (Linux's largest pipe, `pipe-max-size`).
pub const MAX_PIPE_BYTES: u32 = 1 << 20;

/// The highest descriptor number a record may name.
pub const MAX_FD: i32 = 1 << 20;

/// What an adopting kernel (or the host) checks a version 2 record's values against
/// ([`Record::check`]): the record is untrusted input to every reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// User addresses are in `[USER_BASE, user_end)` ([`crate::user`]).
    pub user_end: u64,
    /// Guest-physical frames of user pages are in `[pool_start, pool_end)`.
    pub pool_start: u64,
    /// End of the user pool (exclusive).
    pub pool_end: u64,
    /// Process and thread ids are in `1..=max_pid`.
    pub max_pid: i32,
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
impl Entry for ThreadStateEntry {
    const KIND: u32 = section::THREAD_STATE;
}
impl Entry for PageRunEntry {
    const KIND: u32 = section::PAGES;
}
impl Entry for ProcessStateEntry {
    const KIND: u32 = section::PROCESS_STATE;
}
impl Entry for SigActionEntry {
    const KIND: u32 = section::SIGACTION;
}
impl Entry for FdStateEntry {
    const KIND: u32 = section::FD_STATE;
}
impl Entry for PipeEntry {
    const KIND: u32 = section::PIPE;
}
impl Entry for SocketEntry {
    const KIND: u32 = section::SOCKET;
}
impl Entry for SocketMsgEntry {
    const KIND: u32 = section::SOCKET_MSG;
}
impl Entry for InetSocketEntry {
    const KIND: u32 = section::INET_SOCKET;
}
impl Entry for InetMsgEntry {
    const KIND: u32 = section::INET_MSG;
}
impl Entry for FileAreaEntry {
    const KIND: u32 = section::FILE_AREA;
}
impl Entry for ZombieEntry {
    const KIND: u32 = section::ZOMBIE;
}
impl Entry for FileImageEntry {
    const KIND: u32 = section::FILE_IMAGE;
}
impl Entry for TimerEntry {
    const KIND: u32 = section::TIMER;
}
impl Entry for TimerFdEntry {
    const KIND: u32 = section::TIMERFD;
}
impl Entry for EpollItemEntry {
    const KIND: u32 = section::EPOLL_ITEM;
}

impl Entry for ProcessArgsEntry {
    const KIND: u32 = section::PROCESS_ARGS;
}

impl Entry for RestartEntry {
    const KIND: u32 = section::RESTART;
}

impl Entry for CpuTimesEntry {
    const KIND: u32 = section::CPU_TIMES;
}

impl Entry for ShmAreaEntry {
    const KIND: u32 = section::SHM_AREA;
}

impl Entry for ShmPagesEntry {
    const KIND: u32 = section::SHM_PAGES;
}

impl Entry for ConsoleEntry {
    const KIND: u32 = section::CONSOLE;
}

impl Entry for SigQueueEntry {
    const KIND: u32 = section::SIG_QUEUE;
}

impl Entry for InotifyEntry {
    const KIND: u32 = section::INOTIFY;
}

impl Entry for InotifyWatchEntry {
    const KIND: u32 = section::INOTIFY_WATCH;
}

impl Entry for SynthDataEntry {
    const KIND: u32 = section::SYNTH_DATA;
}

impl Entry for PrctlEntry {
    const KIND: u32 = section::PRCTL;
}

impl Entry for ThreadNameEntry {
    const KIND: u32 = section::THREAD_NAME;
}

impl Entry for TimerWaitEntry {
    const KIND: u32 = section::TIMER_WAIT;
}

impl Entry for WorkdirEntry {
    const KIND: u32 = section::WORKDIR;
}

impl Entry for InFlightEntry {
    const KIND: u32 = section::IN_FLIGHT;
}

impl Entry for HostSocketEntry {
    const KIND: u32 = section::HOST_SOCKET;
}

impl Entry for FileAreaInodeEntry {
    const KIND: u32 = section::FILE_AREA_INODE;
}

impl Entry for LockEntry {
    const KIND: u32 = section::LOCK;
}

impl Entry for RobustListEntry {
    const KIND: u32 = section::ROBUST_LIST;
}

impl Entry for ThreadSchedEntry {
    const KIND: u32 = section::THREAD_SCHED;
}

impl Entry for RelayEntry {
    const KIND: u32 = section::RELAY;
}

impl Entry for DiskEntry {
    const KIND: u32 = section::DISK;
}

impl Entry for ExecSessionEntry {
    const KIND: u32 = section::EXEC_SESSION;
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
    /// A value out of its bounds ([`Record::check`]): what, and the value.
    OutOfBounds(&'static str, u64),
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
            Self::OutOfBounds(what, v) => write!(f, "{what} out of bounds ({v:#x})"),
        }
    }
}

/// A checked record (borrowing its bytes).
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// Its header.
    pub header: RecordHeader,
    body: &'a [u8],
    /// The payload of its [`section::BLOB`] (empty if none).
    blob: &'a [u8],
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
        let mut r = Self {
            header,
            body,
            blob: &[],
        };
        // Walk every section once: bounds and entry sizes.
        let mut n = 0u32;
        let mut blobs = 0u32;
        let mut seen = 0u64;
        let mut rest = body;
        while let Some((h, payload, tail)) = split_section(rest)? {
            let known = match h.kind {
                section::PROCESS => Some(size_of::<ProcessEntry>()),
                section::VMA => Some(size_of::<VmaEntry>()),
                section::FD => Some(size_of::<FdEntry>()),
                section::BLOCKER => Some(size_of::<BlockerEntry>()),
                section::THREAD => Some(size_of::<ThreadEntry>()),
                section::THREAD_STATE => Some(size_of::<ThreadStateEntry>()),
                section::PAGES => Some(size_of::<PageRunEntry>()),
                section::PROCESS_STATE => Some(size_of::<ProcessStateEntry>()),
                section::SIGACTION => Some(size_of::<SigActionEntry>()),
                section::BLOB => Some(1),
                section::FD_STATE => Some(size_of::<FdStateEntry>()),
                section::PIPE => Some(size_of::<PipeEntry>()),
                section::FILE_AREA => Some(size_of::<FileAreaEntry>()),
                section::ZOMBIE => Some(size_of::<ZombieEntry>()),
                section::FILE_IMAGE => Some(size_of::<FileImageEntry>()),
                section::TIMER => Some(size_of::<TimerEntry>()),
                section::SOCKET => Some(size_of::<SocketEntry>()),
                section::SOCKET_MSG => Some(size_of::<SocketMsgEntry>()),
                section::INET_SOCKET => Some(size_of::<InetSocketEntry>()),
                section::INET_MSG => Some(size_of::<InetMsgEntry>()),
                section::TIMERFD => Some(size_of::<TimerFdEntry>()),
                section::EPOLL_ITEM => Some(size_of::<EpollItemEntry>()),
                section::PROCESS_ARGS => Some(size_of::<ProcessArgsEntry>()),
                section::RESTART => Some(size_of::<RestartEntry>()),
                section::CPU_TIMES => Some(size_of::<CpuTimesEntry>()),
                section::SHM_AREA => Some(size_of::<ShmAreaEntry>()),
                section::SHM_PAGES => Some(size_of::<ShmPagesEntry>()),
                section::CONSOLE => Some(size_of::<ConsoleEntry>()),
                section::SIG_QUEUE => Some(size_of::<SigQueueEntry>()),
                section::INOTIFY => Some(size_of::<InotifyEntry>()),
                section::INOTIFY_WATCH => Some(size_of::<InotifyWatchEntry>()),
                section::SYNTH_DATA => Some(size_of::<SynthDataEntry>()),
                section::PRCTL => Some(size_of::<PrctlEntry>()),
                section::THREAD_NAME => Some(size_of::<ThreadNameEntry>()),
                section::TIMER_WAIT => Some(size_of::<TimerWaitEntry>()),
                section::WORKDIR => Some(size_of::<WorkdirEntry>()),
                section::IN_FLIGHT => Some(size_of::<InFlightEntry>()),
                section::HOST_SOCKET => Some(size_of::<HostSocketEntry>()),
                section::FILE_AREA_INODE => Some(size_of::<FileAreaInodeEntry>()),
                section::LOCK => Some(size_of::<LockEntry>()),
                section::ROBUST_LIST => Some(size_of::<RobustListEntry>()),
                section::THREAD_SCHED => Some(size_of::<ThreadSchedEntry>()),
                section::RELAY => Some(size_of::<RelayEntry>()),
                section::DISK => Some(size_of::<DiskEntry>()),
                section::EXEC_SESSION => Some(size_of::<ExecSessionEntry>()),
                section::FS_NODE => Some(size_of::<FsNodeEntry>()),
                section::FS_DIRENT => Some(size_of::<FsDirentEntry>()),
                section::FS_PAGES => Some(size_of::<FsPagesEntry>()),
                _ => None,
            };
            if header.version >= 2 && h.kind < 64 {
                if seen & (1 << h.kind) != 0 {
                    return Err(RecordError::BadSection(h.kind));
                }
                seen |= 1 << h.kind;
            }
            if h.kind == section::BLOB {
                blobs += 1;
                r.blob = payload;
            }
            // Version 1 has none of version 2's sections.
            if header.version < 2
                && ((section::THREAD_STATE..=section::SOCKET_MSG).contains(&h.kind)
                    || (section::FS_NODE..=section::LAST).contains(&h.kind))
            {
                return Err(RecordError::BadSection(h.kind));
            }
            // Nor version 2 of version 3's, nor any later version's of an earlier one.
            if header.version < 3 && (section::LOCK..=section::LAST).contains(&h.kind)
                || header.version < 4 && (section::RELAY..=section::LAST).contains(&h.kind)
                || header.version < 5 && (section::DISK..=section::LAST).contains(&h.kind)
                || header.version < 6 && (section::EXEC_SESSION..=section::LAST).contains(&h.kind)
            {
                return Err(RecordError::BadSection(h.kind));
            }
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
        if blobs > 1 {
            return Err(RecordError::BadSection(section::BLOB));
        }
        Ok(r)
    }

    /// The bytes of the record's [`section::BLOB`] (empty if none).
    pub fn blob(&self) -> &'a [u8] {
        self.blob
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

    /// The bytes `r` names in the blob (`None`: outside it).
    pub fn blob_bytes(&self, r: BlobRef) -> Option<&'a [u8]> {
        let b = self.blob();
        let end = (r.off as usize).checked_add(r.len as usize)?;
        b.get(r.off as usize..end)
    }

    /// Checks every value a reader would act on against `b` (after [`Record::parse`]), in
    /// time linear in the record (plus a binary search per reference): ids in range;
    /// processes in increasing pid order and threads in increasing tid order; every thread,
    /// thread state, page run, process state, disposition and descriptor naming a process
    /// of the record; memory areas and page runs in (pid, address) order, areas disjoint,
    /// runs disjoint and each inside an area of its process; user addresses inside the user
    /// window; frames page aligned inside the user pool; blob references inside the blob;
    /// FPU areas at most [`MAX_FPU_LEN`]. A version 1 record (an inventory, which nobody
    /// adopts) is checked for its ids only.
    pub fn check(&self, b: &Bounds) -> Result<(), RecordError> {
        use crate::user::USER_BASE;
        use crate::PAGE_SIZE;
        let id_ok = |id: i32| (1..=b.max_pid).contains(&id);
        let procs = Table::<ProcessEntry>::of(self);
        let threads = Table::<ThreadEntry>::of(self);
        if self.header.version < 2 {
            if let Some(p) = self.entries::<ProcessEntry>().find(|p| !id_ok(p.pid)) {
                return oob("process id", p.pid as u64);
            }
            if let Some(t) = self.entries::<ThreadEntry>().find(|t| !id_ok(t.tid)) {
                return oob("thread id", t.tid as u64);
            }
            return Ok(());
        }
        let mut last = 0;
        for p in procs.iter() {
            if !id_ok(p.pid) || p.pid <= last {
                return oob("process id (in increasing order)", p.pid as u64);
            }
            if p.flags & !process_flags::ALL != 0
                || p.flags == process_flags::ZOMBIE | process_flags::IN_PROCESS
            {
                return oob("process flags", p.pid as u64);
            }
            last = p.pid;
        }
        let known = |pid: i32| procs.find(pid, |p| p.pid).is_some();
        last = 0;
        for t in threads.iter() {
            if !id_ok(t.tid) || t.tid <= last || !known(t.pid) {
                return oob(
                    "thread id (in increasing order, of a process)",
                    t.tid as u64,
                );
            }
            last = t.tid;
        }
        let user = |a: u64| (USER_BASE..b.user_end).contains(&a);
        for t in self.entries::<ThreadStateEntry>() {
            if threads
                .find(t.tid, |u| u.tid)
                .is_none_or(|u| u.pid != t.pid)
            {
                return oob("thread state of an unknown thread", t.tid as u64);
            }
            if t.state == thread_state::USER && !user(t.regs.rip) {
                return oob("thread rip", t.regs.rip);
            }
            if t.fpu.len > MAX_FPU_LEN || self.blob_bytes(t.fpu).is_none() {
                return oob("thread FPU area", u64::from(t.fpu.off));
            }
            if t.clear_child_tid != 0 && !user(t.clear_child_tid) {
                return oob("thread clear_child_tid", t.clear_child_tid);
            }
        }
        let vmas = Table::<VmaEntry>::of(self);
        let mut prev = (0i32, 0u64);
        for a in vmas.iter() {
            if !known(a.pid) || a.start >= a.end || (a.pid, a.start) < prev || a.end > b.user_end {
                return oob("memory area (in (pid, address) order, disjoint)", a.start);
            }
            prev = (a.pid, a.end);
        }
        let mut vi = 0usize;
        let mut prev = (0i32, 0u64);
        for r in self.entries::<PageRunEntry>() {
            if !known(r.pid) {
                return oob("page run of an unknown process", r.pid as u64);
            }
            let Some(len) = r.pages.checked_mul(PAGE_SIZE).filter(|&l| l > 0) else {
                return oob("page run length", r.pages);
            };
            let va_end = r.va.saturating_add(len);
            if r.va % PAGE_SIZE != 0 || !user(r.va) || va_end > b.user_end {
                return oob("page run address", r.va);
            }
            if (r.pid, r.va) < prev {
                return oob("page run (in (pid, address) order, disjoint)", r.va);
            }
            prev = (r.pid, va_end);
            let gpa_end = r.gpa.saturating_add(len);
            // A host file window's pages (`crate::window`): copy-on-write, private, in one
            // slot; or pool frames.
            let window = crate::window::range_of(r.gpa, len).is_some()
                && r.flags & page_flags::COW != 0
                && r.flags & page_flags::SHARED == 0;
            if r.gpa % PAGE_SIZE != 0 || (!window && (r.gpa < b.pool_start || gpa_end > b.pool_end))
            {
                return oob("page frame", r.gpa);
            }
            while vmas
                .get(vi)
                .is_some_and(|a| (a.pid, a.end) <= (r.pid, r.va))
            {
                vi += 1;
            }
            if !vmas
                .get(vi)
                .is_some_and(|a| a.pid == r.pid && a.start <= r.va && va_end <= a.end)
            {
                return oob("page run outside its process's memory areas", r.va);
            }
            // A shared page exactly in a shared area (the adopter maps it as the object's).
            if vmas.get(vi).is_some_and(|a| {
                (a.flags & vma_flags::SHARED != 0) != (r.flags & page_flags::SHARED != 0)
            }) {
                return oob(
                    "page run shared in a private area, or private in a shared one",
                    r.va,
                );
            }
        }
        let workdirs = Table::<WorkdirEntry>::of(self);
        for s in self.entries::<ProcessStateEntry>() {
            if !known(s.pid) {
                return oob("process state of an unknown process", s.pid as u64);
            }
            if self.blob_bytes(s.cwd).is_none() || self.blob_bytes(s.exe).is_none() {
                return oob("process path", s.pid as u64);
            }
            // A working directory is absolute (empty: `/`), or has no path and is
            // described by a section 39 entry.
            let cwd_ok = match self.blob_bytes(s.cwd) {
                Some(c) if c == UNREACHABLE_CWD => workdirs.find(s.pid, |w| w.pid).is_some(),
                Some(c) => c.is_empty() || c.starts_with(b"/"),
                None => false,
            };
            if !cwd_ok {
                return oob("working directory (absolute, or described)", s.pid as u64);
            }
            let groups = self.blob_bytes(s.groups).map(<[u8]>::len);
            if groups.is_none_or(|n| n % 4 != 0 || n / 4 > MAX_GROUPS) {
                return oob("supplementary groups", u64::from(s.groups.len));
            }
            let rl = self.blob_bytes(s.rlimits).map(<[u8]>::len);
            if rl.is_none_or(|n| n != 0 && n != NR_RLIMITS * 16) {
                return oob("resource limits", u64::from(s.rlimits.len));
            }
            for a in [s.brk_base, s.brk] {
                if a != 0 && !(USER_BASE..=b.user_end).contains(&a) {
                    return oob("program break", a);
                }
            }
        }
        for a in self.entries::<SigActionEntry>() {
            if !known(a.pid) || !(1..=64).contains(&a.signo) {
                return oob("signal disposition", u64::from(a.signo));
            }
            if a.handler > 1 && !user(a.handler) {
                return oob("signal handler", a.handler);
            }
        }
        for f in self.entries::<FdEntry>() {
            if !known(f.pid) || f.fd < 0 {
                return oob("file descriptor", f.fd as u64);
            }
        }
        let mut prev = (0i32, 0u64);
        let by_inode = Table::<FileAreaInodeEntry>::of(self);
        let mut removed_images = 0usize;
        for a in self.entries::<FileAreaEntry>() {
            if vmas.find((a.pid, a.start), |v| (v.pid, v.start)).is_none()
                || (a.pid, a.start) < prev
            {
                return oob(
                    "file area of no memory area (in (pid, address) order)",
                    a.start,
                );
            }
            prev = (a.pid, a.start.saturating_add(1));
            let removed_image =
                a.flags & file_area_flags::REMOVED != 0 && a.flags & file_area_flags::IMAGE != 0;
            if removed_image {
                removed_images += 1;
            }
            if a.offset % PAGE_SIZE != 0
                || self.blob_bytes(a.path).is_none_or(<[u8]>::is_empty)
                || (removed_image
                    && by_inode
                        .find((a.pid, a.start), |e| (e.pid, e.start))
                        .is_none())
            {
                return oob("file area offset, path or flags", a.offset);
            }
        }
        // One inode per removed image area, of a carried regular file (when the record
        // carries the filesystem), in (pid, start) order.
        let fs_nodes = Table::<FsNodeEntry>::of(self);
        let areas = Table::<FileAreaEntry>::of(self);
        let mut prev = (0i32, 0u64);
        for e in by_inode.iter() {
            let area_ok = areas
                .find((e.pid, e.start), |a| (a.pid, a.start))
                .is_some_and(|a| {
                    a.flags & file_area_flags::REMOVED != 0 && a.flags & file_area_flags::IMAGE != 0
                });
            let ino_ok = e.ino != 0
                && (fs_nodes.len() == 0
                    || fs_nodes
                        .find(e.ino, |n| n.ino)
                        .is_some_and(|n| n.kind == fs_node::REGULAR));
            if (e.pid, e.start) <= prev && prev != (0, 0) || !area_ok || !ino_ok || e._reserved != 0
            {
                return oob(
                    "file area inode (of a removed image area, in order)",
                    e.start,
                );
            }
            prev = (e.pid, e.start);
        }
        if by_inode.len() != removed_images {
            return oob("removed image area without its inode", 0);
        }
        let areas = Table::<FileAreaEntry>::of(self);
        let mut prev = (0i32, 0u64);
        for i in self.entries::<FileImageEntry>() {
            let ok = areas.find((i.pid, i.start), |a| (a.pid, a.start)).is_some()
                && (i.pid, i.start) >= prev
                && i.lo.is_multiple_of(PAGE_SIZE)
                && i.hi.is_multiple_of(PAGE_SIZE)
                && i.lo <= i.hi;
            if !ok {
                return oob(
                    "file image range (of a file area, in order, page aligned)",
                    i.start,
                );
            }
            prev = (i.pid, i.start.saturating_add(1));
        }
        let thread_states = Table::<ThreadStateEntry>::of(self);
        let mut last_restart = 0;
        for e in self.entries::<RestartEntry>() {
            let ok = e.tid > last_restart
                && e.reserved == 0
                && CONTINUED_SLEEPS.contains(&e.nr)
                && user(e.ret_rip)
                && (e.rem == 0 || user(e.rem))
                && thread_states
                    .find(e.tid, |t| t.tid)
                    .is_some_and(|t| t.state == thread_state::USER && t.restart_nr == e.nr);
            if !ok {
                return oob(
                    "sleep to continue of no thread re-issuing it (in tid order)",
                    e.tid as u64,
                );
            }
            last_restart = e.tid;
        }
        let mut last_times = None;
        for e in self.entries::<CpuTimesEntry>() {
            let of_live = match e.kind {
                cpu_times_kind::THREAD => {
                    e.maxrss_kib == 0
                        && e.minflt == 0
                        && thread_states.find(e.id, |t| t.tid).is_some()
                }
                cpu_times_kind::ENDED | cpu_times_kind::CHILDREN => {
                    procs.find(e.id, |p| p.pid).is_some()
                }
                _ => false,
            };
            let ok = of_live
                && last_times < Some((e.kind, e.id))
                && [e.user_ns, e.system_ns, e.maxrss_kib, e.minflt]
                    .iter()
                    .all(|&v| v <= MAX_CPU_NS);
            if !ok {
                return oob(
                    "CPU times of no live thread or process (in kind and id order, bounded)",
                    e.id as u64,
                );
            }
            last_times = Some((e.kind, e.id));
        }
        let mut last_args = 0;
        for a in self.entries::<ProcessArgsEntry>() {
            let live = procs
                .find(a.pid, |p| p.pid)
                .is_some_and(|p| p.flags & process_flags::ZOMBIE == 0);
            if !live || a.pid <= last_args || a.reserved != 0 {
                return oob(
                    "arguments of no live process (in increasing pid order)",
                    a.pid as u64,
                );
            }
            last_args = a.pid;
            for list in [a.cmdline, a.environ] {
                let ok = list.len <= MAX_PROCESS_ARGS
                    && self
                        .blob_bytes(list)
                        .is_some_and(|b| b.last().is_none_or(|&c| c == 0));
                if !ok {
                    return oob(
                        "arguments or environment (NUL-terminated, within the limit)",
                        u64::from(list.len),
                    );
                }
            }
        }
        for z in self.entries::<ZombieEntry>() {
            if procs
                .find(z.pid, |p| p.pid)
                .is_none_or(|p| p.flags & process_flags::ZOMBIE == 0)
            {
                return oob("wait status of a process not ended", z.pid as u64);
            }
        }
        let pipes = Table::<PipeEntry>::of(self);
        let mut last = None;
        for p in pipes.iter() {
            if last.is_some_and(|l| p.id <= l) {
                return oob("pipe id (in increasing order)", p.id);
            }
            last = Some(p.id);
            if p.data.len > MAX_PIPE_BYTES || self.blob_bytes(p.data).is_none() {
                return oob("pipe contents", p.id);
            }
        }
        let sockets = Table::<SocketEntry>::of(self);
        self.check_sockets(&sockets)?;
        let inets = Table::<InetSocketEntry>::of(self);
        self.check_inet_sockets(&inets)?;
        self.check_relays(&inets)?;
        self.check_disks()?;
        self.check_exec_sessions(&procs, &pipes)?;
        let fs_nodes = Table::<FsNodeEntry>::of(self);
        self.check_shm(b, &vmas, &fs_nodes)?;
        self.check_console(b)?;
        self.check_sig_queues(&procs, &thread_states)?;
        self.check_prctl(&procs, &thread_states)?;
        self.check_workdirs(&procs)?;
        let mut prev = (IN_FLIGHT_PID, -1i32);
        let mut in_flight = 0usize;
        let mut last_in_flight = 0u64;
        for f in self.entries::<FdStateEntry>() {
            let ok = if f.pid == IN_FLIGHT_PID {
                // Numbered from 0, in increasing description order.
                let ok = f.fd as usize == in_flight
                    && (in_flight == 0 || f.description > last_in_flight);
                in_flight += 1;
                last_in_flight = f.description;
                ok
            } else {
                known(f.pid) && (f.pid, f.fd) > prev
            };
            if !ok || !(0..MAX_FD).contains(&f.fd) {
                return oob("carried descriptor (in (pid, fd) order)", f.fd as u64);
            }
            prev = (f.pid, f.fd);
            if self.blob_bytes(f.path).is_none() {
                return oob("descriptor path", f.fd as u64);
            }
            match f.kind {
                fd_state::PIPE_READ | fd_state::PIPE_WRITE => {
                    if pipes.find(f.object, |p| p.id).is_none() {
                        return oob("descriptor of an unknown pipe", f.object);
                    }
                }
                fd_state::UNIX_SOCKET => {
                    if sockets
                        .find(f.object, |s| s.id)
                        .is_none_or(|s| s.listener != 0 || s.flags & socket_flags::DEAD != 0)
                    {
                        return oob("descriptor of an unknown socket", f.object);
                    }
                }
                fd_state::INET_SOCKET => {
                    if inets
                        .find(f.object, |s| s.id)
                        .is_none_or(|s| s.listener != 0)
                    {
                        return oob("descriptor of an unknown inet socket", f.object);
                    }
                }
                fd_state::MEMORY_FILE => {
                    // Checked against the filesystem's inodes when the record carries it
                    // (a record that does not is refused by its adopter, and names why).
                    if fs_nodes.len() > 0
                        && fs_nodes.find(f.object, |n| n.ino).is_none_or(|n| {
                            n.ino == 0
                                || !(n.kind == fs_node::REGULAR
                                    || n.kind == fs_node::DIRECTORY
                                        && (n.nlink > 0 || n.flags & fs_node_flags::REMOVED != 0))
                        })
                    {
                        return oob("descriptor of an unknown in-memory file", f.object);
                    }
                }
                fd_state::HOST_FILE
                | fd_state::VOLUME_FILE
                | fd_state::CONSOLE
                | fd_state::DEVICE => {}
                fd_state::EVENTFD
                | fd_state::TIMERFD
                | fd_state::SIGNALFD
                | fd_state::EPOLL
                | fd_state::INOTIFY => {}
                fd_state::SYNTHETIC => {
                    let path = self.blob_bytes(f.path).unwrap_or_default();
                    if f.aux & !synth_flags::ALL != 0
                        || f.object != 0
                        || !path.starts_with(b"/")
                        || path.contains(&0)
                    {
                        return oob("generated file (path, flags)", f.fd as u64);
                    }
                }
                k => return oob("descriptor kind", u64::from(k)),
            }
        }
        self.check_in_flight(in_flight)?;
        self.check_locks(&procs)?;
        self.check_events()?;
        self.check_synth_data()?;
        self.check_fs((b.pool_start, b.pool_end))?;
        self.check_timers(&procs, &threads)?;
        self.check_timer_waits()
    }

    /// Advisory locks (section 43): known kinds and modes, a range within the file
    /// (`flock`: the whole file), a POSIX lock's owner a process of the record, no owner for
    /// the others. That the description is carried (and held by a POSIX lock's owner), and
    /// that no two locks conflict, an adopter checks as it takes them (by its own tables:
    /// descriptors are not in description order here).
    fn check_locks(&self, procs: &Table<'_, ProcessEntry>) -> Result<(), RecordError> {
        for e in self.entries::<LockEntry>() {
            let range_ok = e.start <= e.end && e.end <= LOCK_OFFSET_MAX;
            let kind_ok = match e.kind {
                lock_kind::POSIX => procs.find(e.owner, |p| p.pid).is_some(),
                lock_kind::OFD => e.owner == 0,
                lock_kind::FLOCK => e.owner == 0 && e.start == 0 && e.end == LOCK_OFFSET_MAX,
                _ => false,
            };
            if !range_ok || !kind_ok || e.mode > lock_mode::WRITE || e._reserved != 0 {
                return oob(
                    "advisory lock (kind, mode, range, owner, description)",
                    e.start,
                );
            }
        }
        Ok(())
    }

    /// Descriptors in flight (section 40): in (message, slot) order, each message's slots
    /// 0, 1, ... (at most [`MAX_RIGHTS_PER_MSG`]), each of a message of the record and of
    /// a description that has an entry of pid [`IN_FLIGHT_PID`] (the first `described`
    /// [`FdStateEntry`]s, in description order: [`Record::check`] checked that).
    fn check_in_flight(&self, described: usize) -> Result<(), RecordError> {
        let fds = Table::<FdStateEntry>::of(self);
        let msgs = Table::<SocketMsgEntry>::of(self).len();
        let has = |d: u64| {
            let (mut lo, mut hi) = (0, described);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match fds.get(mid).map(|f| f.description.cmp(&d)) {
                    Some(core::cmp::Ordering::Less) => lo = mid + 1,
                    Some(core::cmp::Ordering::Greater) => hi = mid,
                    Some(core::cmp::Ordering::Equal) => return true,
                    None => return false,
                }
            }
            false
        };
        let mut prev: Option<(u32, u32)> = None;
        for e in self.entries::<InFlightEntry>() {
            let next_slot = match prev {
                Some((m, s)) if m == e.message => s + 1,
                Some((m, _)) if m > e.message => u32::MAX,
                _ => 0,
            };
            if e.slot != next_slot
                || e.slot >= MAX_RIGHTS_PER_MSG
                || e.message as usize >= msgs
                || !has(e.description)
            {
                return oob(
                    "descriptor in flight (in (message, slot) order, of a carried message and description)",
                    u64::from(e.message),
                );
            }
            prev = Some((e.message, e.slot));
        }
        Ok(())
    }

    /// Timers waiting for their signal (section 38): in (pid, id) order (so unique), each a
    /// periodic POSIX timer of the record with a next expiry, an overrun of at most
    /// `i32::MAX`. That its signal is pending, an adopter checks (and arms the timer as
    /// usual when it is not).
    fn check_timer_waits(&self) -> Result<(), RecordError> {
        // The POSIX timers in (pid, id) order (`check_timers` checked the (pid, kind, id)
        // order), walked alongside the waits: linear.
        let mut posix = self
            .entries::<TimerEntry>()
            .filter(|t| t.kind == timer_kind::POSIX)
            .peekable();
        let mut prev = (i32::MIN, i32::MIN);
        for w in self.entries::<TimerWaitEntry>() {
            while posix.next_if(|t| (t.pid, t.id) < (w.pid, w.id)).is_some() {}
            let periodic = posix
                .peek()
                .is_some_and(|t| (t.pid, t.id) == (w.pid, w.id) && t.interval != 0 && t.next != 0);
            if (w.pid, w.id) <= prev || !periodic || w.overrun > i32::MAX as u64 {
                return oob(
                    "timer waiting for its signal (in order, a periodic timer of the record)",
                    w.id as u64,
                );
            }
            prev = (w.pid, w.id);
        }
        Ok(())
    }

    /// [`Record::check`] of the [`TimerEntry`]s: in (pid, kind, id) order (so unique), each
    /// of a live process of the record, at most [`MAX_TIMERS_PER_PROCESS`] a process; an
    /// interval timer with id 0, its kind's clock and signal, notifying the process; a
    /// POSIX timer with a known clock and notification, a signal in 1..=64 (0 for
    /// [`timer_notify::NONE`]), a target thread of its process; times and the overrun
    /// non-negative as a `timespec` and an `int` (a disarmed timer, `next` 0, with no
    /// interval); the reserved field 0.
    fn check_timers(
        &self,
        procs: &Table<'_, ProcessEntry>,
        threads: &Table<'_, ThreadEntry>,
    ) -> Result<(), RecordError> {
        let mut prev: Option<(i32, u32, i32)> = None;
        let mut per_process = 0usize;
        for t in self.entries::<TimerEntry>() {
            let key = (t.pid, t.kind, t.id);
            if prev.is_some_and(|p| key <= p) {
                return oob("timer (in (pid, kind, id) order, unique)", t.id as u64);
            }
            per_process = if prev.is_some_and(|p| p.0 == t.pid) {
                per_process + 1
            } else {
                1
            };
            prev = Some(key);
            if per_process > MAX_TIMERS_PER_PROCESS {
                return oob("timers of one process", per_process as u64);
            }
            if procs
                .find(t.pid, |p| p.pid)
                .is_none_or(|p| p.flags & process_flags::ZOMBIE != 0)
            {
                return oob("timer of no live process", t.pid as u64);
            }
            let itimer = |clock, signo| {
                t.id == 0
                    && t.clock == clock
                    && t.notify == timer_notify::SIGNAL
                    && t.signo == signo
                    && t.tid == 0
                    && t.value == 0
            };
            let ok = match t.kind {
                timer_kind::ITIMER_REAL => itimer(timer_clock::REALTIME, 14),
                timer_kind::ITIMER_VIRTUAL => itimer(timer_clock::PROCESS_CPU_USER, 26),
                timer_kind::ITIMER_PROF => itimer(timer_clock::PROCESS_CPU, 27),
                timer_kind::POSIX => {
                    let target = match t.notify {
                        timer_notify::NONE => t.signo == 0 && t.tid == 0,
                        timer_notify::SIGNAL => (1..=64).contains(&t.signo) && t.tid == 0,
                        timer_notify::THREAD => {
                            (1..=64).contains(&t.signo)
                                && threads
                                    .find(t.tid, |u| u.tid)
                                    .is_some_and(|u| u.pid == t.pid)
                        }
                        _ => false,
                    };
                    t.id >= 0
                        && (timer_clock::REALTIME..=timer_clock::PROCESS_CPU_USER)
                            .contains(&t.clock)
                        && target
                }
                _ => false,
            };
            if !ok {
                return oob(
                    "timer (kind, clock, notification, signal or thread)",
                    u64::from(t.kind),
                );
            }
            if t.overrun < 0 || t._reserved != 0 {
                return oob("timer overrun", t.overrun as u64);
            }
            // A disarmed timer has no interval either.
            if t.next > i64::MAX as u64
                || t.interval > i64::MAX as u64
                || t.next == 0 && t.interval != 0
            {
                return oob("timer expiry or interval", t.next);
            }
        }
        Ok(())
    }

    /// [`Record::check`] of the sockets and their queues: ids in increasing order; types,
    /// states, shutdown and flags known; both ends of a live connection naming each other,
    /// of one type; a connection not accepted yet naming a listener, connected; addresses
    /// and options in the blob and of their sizes (options well formed); messages on known
    /// sockets, in order, charged to known sockets, their bytes in the blob and at most
    /// [`MAX_SOCKET_BYTES`] per socket; nothing queued on a listener.
    /// `MAP_SHARED` areas (section 29) and anonymous objects' pages (section 30): each area
    /// names a shared memory area of its process, in (pid, address) order, its page indexes
    /// bounded by [`MAX_SHM_PAGES`]; a file object is a regular file (not a volume's) of the
    /// carried filesystem when the record carries one, with its path in the blob; an
    /// anonymous object's number is at most the number of areas, and its page runs are in
    /// (object, index) order, disjoint, bounded, their frames in the user pool.
    fn check_shm(
        &self,
        b: &Bounds,
        vmas: &Table<'_, VmaEntry>,
        fs_nodes: &Table<'_, FsNodeEntry>,
    ) -> Result<(), RecordError> {
        use crate::PAGE_SIZE;
        let areas = Table::<ShmAreaEntry>::of(self);
        let nr_areas = areas.len() as u64;
        let mut prev = (0i32, 0u64);
        for a in areas.iter() {
            let vma = vmas
                .find((a.pid, a.start), |v| (v.pid, v.start))
                .filter(|v| v.flags & vma_flags::SHARED != 0);
            let Some(v) = vma.filter(|_| (a.pid, a.start) >= prev) else {
                return oob(
                    "shared area of no shared memory area (in (pid, address) order)",
                    a.start,
                );
            };
            prev = (a.pid, a.start.saturating_add(1));
            let pages = (v.end - v.start) / PAGE_SIZE;
            if a.flags & !shm_area_flags::FILE != 0
                || a.pgoff.checked_add(pages).is_none_or(|e| e > MAX_SHM_PAGES)
            {
                return oob("shared area flags or page offset", a.pgoff);
            }
            let object_ok = if a.flags & shm_area_flags::FILE != 0 {
                self.blob_bytes(a.path).is_some_and(|p| !p.is_empty())
                    && (fs_nodes.len() == 0
                        || fs_nodes.find(a.object, |n| n.ino).is_some_and(|n| {
                            n.ino != 0
                                && n.kind == fs_node::REGULAR
                                // A volume file's pages are its mappings' cache.
                                && (n.flags & fs_node_flags::VOLUME == 0
                                    || n.flags & fs_node_flags::MAPPED != 0)
                        }))
            } else {
                a.path.len == 0 && (1..=nr_areas).contains(&a.object)
            };
            if !object_ok {
                return oob("shared area's object", a.object);
            }
        }
        let mut prev = (0u64, 0u64);
        for r in self.entries::<ShmPagesEntry>() {
            let end = r.index.checked_add(r.pages).filter(|&e| e <= MAX_SHM_PAGES);
            let len = r.pages.checked_mul(PAGE_SIZE);
            let gpa_end = len.and_then(|l| r.gpa.checked_add(l));
            let ok = (1..=nr_areas).contains(&r.object)
                && r.pages > 0
                && end.is_some()
                && (r.object, r.index) >= prev
                && r.gpa % PAGE_SIZE == 0
                && r.gpa >= b.pool_start
                && gpa_end.is_some_and(|e| e <= b.pool_end);
            if !ok {
                return oob(
                    "shared object's pages (in (object, index) order, disjoint, in the pool)",
                    r.index,
                );
            }
            prev = (r.object, end.unwrap_or(u64::MAX));
        }
        Ok(())
    }

    /// The console (section 31): at most one entry; known flags; the foreground group an id
    /// (or 0); the input, the completed lines' lengths (adding up to at most the input) and
    /// the line being typed within their bounds and inside the blob.
    fn check_console(&self, b: &Bounds) -> Result<(), RecordError> {
        let consoles = Table::<ConsoleEntry>::of(self);
        if consoles.len() > 1 {
            return oob("console entries", consoles.len() as u64);
        }
        let Some(c) = consoles.get(0) else {
            return Ok(());
        };
        let lines = self.blob_bytes(c.lines);
        let total = lines.map(|l| {
            l.chunks_exact(4)
                .map(|w| u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
                .sum::<u64>()
        });
        let ok = c.flags & !console_flags::EOF == 0
            && c.reserved == 0
            && (0..=b.max_pid).contains(&c.fg_pgrp)
            && c.input.len <= MAX_CONSOLE_INPUT
            && self.blob_bytes(c.input).is_some()
            && lines.is_some_and(|l| l.len() % 4 == 0)
            && total.is_some_and(|t| t <= u64::from(c.input.len))
            && c.edit.len < MAX_CONSOLE_LINE
            && self.blob_bytes(c.edit).is_some();
        if !ok {
            return oob("console state", u64::from(c.input.len));
        }
        Ok(())
    }

    /// `prctl` state (sections 36 and 37): each entry of a live process, in increasing pid
    /// order, a signal in 0..=64, known flags, the reserved field 0; each name of a thread with
    /// its state, in increasing tid order, at most 15 bytes without a NUL, zeros after them.
    fn check_prctl(
        &self,
        procs: &Table<'_, ProcessEntry>,
        thread_states: &Table<'_, ThreadStateEntry>,
    ) -> Result<(), RecordError> {
        let mut last = 0;
        for e in self.entries::<PrctlEntry>() {
            let live = procs
                .find(e.pid, |p| p.pid)
                .is_some_and(|p| p.flags & process_flags::ZOMBIE == 0);
            if e.pid <= last
                || !live
                || e.pdeath_signal > 64
                || e.flags & !prctl_flags::ALL != 0
                || e._reserved != 0
            {
                return oob(
                    "prctl state (of a live process, in order, known values)",
                    e.pid as u64,
                );
            }
            last = e.pid;
        }
        let mut last = 0;
        for e in self.entries::<ThreadNameEntry>() {
            let len = e.len as usize;
            let ok = e.tid > last
                && thread_states.find(e.tid, |t| t.tid).is_some()
                && len < e.name.len()
                && !e.name[..len].contains(&0)
                && e.name[len..].iter().all(|&b| b == 0);
            if !ok {
                return oob(
                    "thread name (of a thread, in order, at most 15 bytes)",
                    e.tid as u64,
                );
            }
            last = e.tid;
        }
        // Robust lists (section 44): of a thread with its state, in increasing tid order.
        let mut last = 0;
        for e in self.entries::<RobustListEntry>() {
            if e.tid <= last
                || thread_states.find(e.tid, |t| t.tid).is_none()
                || e.head == 0
                || e._reserved != 0
            {
                return oob(
                    "robust list (of a thread, in order, not at 0)",
                    e.tid as u64,
                );
            }
            last = e.tid;
        }
        // Scheduling parameters (section 45): likewise, a nice value Linux allows, some vCPU.
        let mut last = 0;
        for e in self.entries::<ThreadSchedEntry>() {
            if e.tid <= last
                || thread_states.find(e.tid, |t| t.tid).is_none()
                || !(-20..=19).contains(&e.nice)
                || e.affinity == 0
            {
                return oob(
                    "thread scheduling parameters (of a thread, in order, nice -20..=19, a vCPU)",
                    e.tid as u64,
                );
            }
            last = e.tid;
        }
        Ok(())
    }

    /// Working directories without a path (section 39): each of a live process whose
    /// [`ProcessStateEntry::cwd`] is [`UNREACHABLE_CWD`], in increasing pid order; a removed
    /// one by a non-zero inode below the filesystem's next, with no path; a generated one by
    /// an absolute path without NUL, with inode 0.
    fn check_workdirs(&self, procs: &Table<'_, ProcessEntry>) -> Result<(), RecordError> {
        let states = Table::<ProcessStateEntry>::of(self);
        let next_ino = self
            .entries::<FsNodeEntry>()
            .next()
            .filter(|n| n.kind == fs_node::FS)
            .map_or(0, |n| n.size);
        let mut last = 0;
        for w in self.entries::<WorkdirEntry>() {
            let live = procs
                .find(w.pid, |p| p.pid)
                .is_some_and(|p| p.flags & process_flags::ZOMBIE == 0);
            let unreachable = states
                .find(w.pid, |s| s.pid)
                .is_some_and(|s| self.blob_bytes(s.cwd) == Some(UNREACHABLE_CWD));
            let path = self.blob_bytes(w.path);
            let ok = match w.kind {
                workdir_kind::REMOVED => {
                    w.ino != 0 && w.ino < next_ino && path.is_some_and(<[u8]>::is_empty)
                }
                workdir_kind::SYNTHETIC => {
                    w.ino == 0 && path.is_some_and(|p| p.starts_with(b"/") && !p.contains(&0))
                }
                _ => false,
            };
            if w.pid <= last || !live || !unreachable || !ok {
                return oob(
                    "working directory without a path (of a live process, in order, known kind)",
                    w.pid as u64,
                );
            }
            last = w.pid;
        }
        Ok(())
    }

    /// Generated files' snapshots (section 35): in increasing description order, each in
    /// the blob and at most [`MAX_SYNTH_DATA`] bytes. That each is a generated file's, an
    /// adopter checks with its own tables.
    fn check_synth_data(&self) -> Result<(), RecordError> {
        let mut last = 0;
        for e in self.entries::<SynthDataEntry>() {
            if e.description <= last
                || e.data.len > MAX_SYNTH_DATA
                || self.blob_bytes(e.data).is_none()
            {
                return oob(
                    "generated file's snapshot (in order, in the blob, bounded)",
                    e.description,
                );
            }
            last = e.description;
        }
        Ok(())
    }

    /// Pending signals' information (section 32): each of a live thread (with its state)
    /// or a live process, in (kind, owner) order, at most [`MAX_SIG_QUEUE`] per queue, a
    /// signal number, a known detail, and a queued one's `siginfo_t` rest in the blob.
    fn check_sig_queues(
        &self,
        procs: &Table<'_, ProcessEntry>,
        thread_states: &Table<'_, ThreadStateEntry>,
    ) -> Result<(), RecordError> {
        let mut prev = (0u32, 0i32);
        let mut in_queue = 0usize;
        for e in self.entries::<SigQueueEntry>() {
            let owner_ok = match e.kind {
                sig_queue_kind::THREAD => thread_states
                    .find(e.owner, |t| t.tid)
                    .is_some_and(|t| t.state == thread_state::USER),
                sig_queue_kind::PROCESS => procs
                    .find(e.owner, |p| p.pid)
                    .is_some_and(|p| p.flags & process_flags::ZOMBIE == 0),
                _ => false,
            };
            in_queue = if (e.kind, e.owner) == prev {
                in_queue + 1
            } else {
                1
            };
            let rest_ok = if e.detail == sig_detail::QUEUED {
                e.rest.len == SIGINFO_REST && self.blob_bytes(e.rest).is_some()
            } else {
                e.rest.len == 0
            };
            let ok = owner_ok
                && (e.kind, e.owner) >= prev
                && in_queue <= MAX_SIG_QUEUE
                && (1..=64).contains(&e.signo)
                && e.detail <= sig_detail::TIMER
                && rest_ok;
            if !ok {
                return oob(
                    "pending signal of no live thread or process (in order, bounded)",
                    u64::from(e.signo),
                );
            }
            prev = (e.kind, e.owner);
        }
        Ok(())
    }

    fn check_sockets(&self, sockets: &Table<'_, SocketEntry>) -> Result<(), RecordError> {
        let mut last = 0;
        for s in sockets.iter() {
            if s.id <= last {
                return oob("socket id (in increasing order, not zero)", s.id);
            }
            last = s.id;
            let stream = s.ty != 2;
            let ok = SOCKET_TYPES.contains(&s.ty)
                && s.state <= socket_state::CONNECTED
                && (s.state == socket_state::UNCONNECTED || stream)
                && s.shutdown <= 3
                && s.flags & !socket_flags::ALL == 0
                && s.peer != s.id
                && s.err < 4096
                && s.mode <= 0o7777;
            if !ok {
                return oob("socket type, state, flags or shutdown", s.id);
            }
            if s.peer != 0 {
                let Some(p) = sockets.find(s.peer, |p| p.id) else {
                    return oob("socket peer", s.peer);
                };
                let live = s.flags & socket_flags::DEAD == 0 && p.flags & socket_flags::DEAD == 0;
                if stream && (p.ty != s.ty || (live && p.peer != s.id)) {
                    return oob("socket peer (both ends, one type)", s.peer);
                }
                if !stream && p.ty != s.ty {
                    return oob("socket peer (one type)", s.peer);
                }
            }
            if s.state == socket_state::LISTENING && s.peer != 0 {
                return oob("listening socket with a peer", s.id);
            }
            if s.listener != 0
                && (s.state != socket_state::CONNECTED
                    || sockets
                        .find(s.listener, |l| l.id)
                        .is_none_or(|l| l.state != socket_state::LISTENING))
            {
                return oob("connection of an unknown listener", s.listener);
            }
            let addr = self.blob_bytes(s.addr);
            if addr.is_none_or(|a| a.len() > MAX_UNIX_ADDR as usize || (a.len() == 1)) {
                return oob("socket address", s.id);
            }
            let path = self.blob_bytes(s.path);
            let abstract_name = addr.is_some_and(|a| a.get(2) == Some(&0));
            let path_ok = path.is_some_and(|p| {
                p.is_empty()
                    || (p.starts_with(b"/") && p.len() <= 4096 && !p.contains(&0) && !abstract_name)
            });
            let named_ok = s.flags & socket_flags::NAMED == 0
                || abstract_name
                || path.is_some_and(|p| !p.is_empty());
            if !path_ok || !named_ok {
                return oob("socket name (abstract, or an absolute path)", s.id);
            }
            let Some(mut opts) = self
                .blob_bytes(s.opts)
                .filter(|o| o.len() <= MAX_SOCKET_OPTS as usize)
            else {
                return oob("socket options", s.id);
            };
            while !opts.is_empty() {
                let len = opts
                    .get(4..8)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
                match len.and_then(|l| opts.get(8 + l..)) {
                    Some(rest) => opts = rest,
                    None => return oob("socket options", s.id),
                }
            }
        }
        let (mut prev, mut bytes) = (0u64, 0u64);
        for m in self.entries::<SocketMsgEntry>() {
            let Some(s) = sockets.find(m.socket, |s| s.id) else {
                return oob("message of an unknown socket", m.socket);
            };
            if m.socket < prev || s.state == socket_state::LISTENING {
                return oob(
                    "socket message (in socket order, not on a listener)",
                    m.socket,
                );
            }
            if m.socket != prev {
                bytes = 0;
            }
            prev = m.socket;
            bytes += u64::from(m.data.len);
            if m.sender != 0 && sockets.find(m.sender, |s| s.id).is_none() {
                return oob("message of an unknown sender", m.sender);
            }
            if bytes > MAX_SOCKET_BYTES
                || self.blob_bytes(m.data).is_none()
                || self
                    .blob_bytes(m.from)
                    .is_none_or(|a| a.len() > MAX_UNIX_ADDR as usize)
                || m._reserved != 0
            {
                return oob("socket message bytes or sender address", m.socket);
            }
        }
        Ok(())
    }
}

impl Record<'_> {
    /// [`Record::check`] of the loopback internet sockets and their queues: ids in
    /// increasing order; family, protocol, state, flags and shutdown known and consistent
    /// (only TCP listens or is established; only UDP is `connect`ed without a connection; a
    /// listener or an established socket is bound); buffer sizes at most
    /// [`MAX_SOCKET_BYTES`]; both ends of an open connection naming
    /// each other, TCP, with crossed addresses; a connection not accepted yet naming a TCP
    /// listener, established, bound to its listener's port; an `AF_INET` socket's addresses
    /// IPv4-mapped; options in the blob and well formed; reserved bytes zero; messages on
    /// known sockets, in order, at most one on a TCP socket, none on a listener, senders
    /// only on UDP, their bytes in the blob and at most [`MAX_SOCKET_BYTES`] per socket.
    /// The relays (section 46): their protocol, port, flags and bytes; the socket of each
    /// (if any) one of the loopback's of its protocol, not a host socket or in a
    /// listener's queue, that no descriptor and no other relay names. Their handles are
    /// the host's to check (each one of the tenant's published connections, once).
    fn check_relays(&self, inets: &Table<'_, InetSocketEntry>) -> Result<(), RecordError> {
        use crate::net::{PUBLISH_TCP, PUBLISH_UDP};
        let mut last = 0;
        for e in self.entries::<RelayEntry>() {
            let tcp = e.proto == PUBLISH_TCP;
            let bytes = |b: BlobRef| {
                b.len <= MAX_RELAY_BYTES && self.blob_bytes(b).is_some() && (tcp || b.len == 0)
            };
            let ok = (tcp || e.proto == PUBLISH_UDP)
                && e.handle != 0
                && e.port != 0
                && e.flags & !relay_flags::ALL == 0
                && (tcp || e.flags == 0)
                && (e.socket != 0 || e.flags & relay_flags::CONNECTED == 0)
                && e._reserved == 0
                && bytes(e.to_guest)
                && bytes(e.to_host);
            if !ok {
                return oob("relay (handle, protocol, port, flags or bytes)", e.handle);
            }
            if e.socket == 0 && last == 0 {
                continue;
            }
            let proto = if tcp { 6 } else { 17 };
            let fits = inets.find(e.socket, |s| s.id).is_some_and(|s| {
                s.proto == proto && s.listener == 0 && s.flags & inet_flags::HOST == 0
            });
            if e.socket <= last || !fits {
                return oob(
                    "relay socket (in increasing order after those without, a loopback \
                     socket of the relay's protocol)",
                    e.socket,
                );
            }
            last = e.socket;
        }
        let relays = Table::<RelayEntry>::of(self);
        for f in self.entries::<FdStateEntry>() {
            if f.kind == fd_state::INET_SOCKET
                && f.object != 0
                && relays.find(f.object, |r| r.socket).is_some()
            {
                return oob("descriptor of a relay's socket", f.object);
            }
        }
        Ok(())
    }

    /// The disks (section 47): in increasing slot order below [`crate::disk::MAX_DISKS`],
    /// a size, known flags; a mount path (absolute, no NUL, shorter than
    /// [`crate::disk::PATH_MAX`]) exactly when mounted, the mount's flags only then, and a
    /// read-only disk mounted read-only. That they are the host's disks is the host's to
    /// check.
    fn check_disks(&self) -> Result<(), RecordError> {
        let mut next = 0;
        for d in self.entries::<DiskEntry>() {
            let mounted = d.flags & disk_flags::MOUNTED != 0;
            let path = self.blob_bytes(d.path);
            let path_ok = match path {
                Some(p) if mounted => {
                    p.first() == Some(&b'/')
                        && p.len() > 1
                        && p.len() < crate::disk::PATH_MAX
                        && !p.contains(&0)
                }
                Some(p) => p.is_empty(),
                None => false,
            };
            let ok = d.slot >= next
                && d.slot < crate::disk::MAX_DISKS
                && d.sectors > 0
                && d.flags & !disk_flags::ALL == 0
                && (mounted
                    || d.flags & (disk_flags::MOUNT_READ_ONLY | disk_flags::BY_PROGRAM) == 0)
                && (!mounted
                    || d.flags & disk_flags::READ_ONLY == 0
                    || d.flags & disk_flags::MOUNT_READ_ONLY != 0)
                && path_ok;
            if !ok {
                return oob(
                    "disk (slot in increasing order, size, flags or mount path)",
                    u64::from(d.slot),
                );
            }
            next = d.slot + 1;
        }
        Ok(())
    }

    /// The exec sessions (section 48): in increasing session order, each program a live
    /// process whose parent is outside the guest (ppid 0, not init) or, ended, with a
    /// valid wait status and not live; its pipes known, distinct, named by no other session;
    /// the bytes held in the blob, at most [`crate::exec::IO_MAX`] each, none for a closed
    /// input; known flags, reserved zero. That the sessions are the host's is the host's to
    /// check.
    fn check_exec_sessions(
        &self,
        procs: &Table<'_, ProcessEntry>,
        pipes: &Table<'_, PipeEntry>,
    ) -> Result<(), RecordError> {
        use crate::exec::{wait_status_valid, IO_MAX, MAX_SESSIONS};
        let sessions = Table::<ExecSessionEntry>::of(self);
        if sessions.len() > MAX_SESSIONS {
            return oob(
                "exec sessions (more than a tenant has)",
                sessions.len() as u64,
            );
        }
        let mut last = 0;
        for (k, e) in sessions.iter().enumerate() {
            let exited = e.flags & exec_session_flags::EXITED != 0;
            let live = procs
                .find(e.pid, |p| p.pid)
                .filter(|p| p.flags & process_flags::ZOMBIE == 0);
            let program_ok = e.pid > 1
                && if exited {
                    wait_status_valid(e.status as u32 as u64) && live.is_none()
                } else {
                    e.status == 0 && live.is_some_and(|p| p.ppid == 0)
                };
            let bytes = |b: BlobRef| u64::from(b.len) <= IO_MAX && self.blob_bytes(b).is_some();
            let ok = e.session > last
                && program_ok
                && e.flags & !exec_session_flags::ALL == 0
                && e._reserved == 0
                && bytes(e.to_guest)
                && bytes(e.to_stdout)
                && bytes(e.to_stderr)
                && (e.stdin != 0 || e.to_guest.len == 0);
            if !ok {
                return oob(
                    "exec session (in increasing order; its program, status, flags or bytes)",
                    e.session,
                );
            }
            last = e.session;
            let own = [e.stdin, e.stdout, e.stderr];
            for (i, &p) in own.iter().enumerate().filter(|(_, &p)| p != 0) {
                let twice = own[..i].contains(&p)
                    || sessions
                        .iter()
                        .take(k)
                        .any(|o| [o.stdin, o.stdout, o.stderr].contains(&p));
                if pipes.find(p, |x| x.id).is_none() || twice {
                    return oob("exec session pipe (unknown, or named twice)", p);
                }
            }
        }
        Ok(())
    }

    fn check_inet_sockets(&self, inets: &Table<'_, InetSocketEntry>) -> Result<(), RecordError> {
        const MAPPED: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        let mut last = 0;
        for s in inets.iter() {
            if s.id <= last {
                return oob("inet socket id (in increasing order, not zero)", s.id);
            }
            last = s.id;
            let tcp = s.proto == 6;
            let bound = s.flags & inet_flags::BOUND != 0;
            let udp_peer = s.flags & inet_flags::CONNECTED_UDP != 0;
            let host = s.flags & inet_flags::HOST != 0;
            let ok = (s.family == 2 || s.family == 10)
                && INET_PROTOS.contains(&s.proto)
                && (!host
                    || (s.flags == inet_flags::HOST | (s.flags & inet_flags::LINGER)
                        && s.state == inet_state::CLOSED
                        && s.peer == 0
                        && s.listener == 0))
                && s.state <= inet_state::ESTABLISHED
                && (s.state == inet_state::CLOSED || (tcp && bound))
                && s.flags & !inet_flags::ALL == 0
                && (!udp_peer || !tcp)
                && (tcp || s.flags & (inet_flags::RX_FIN | inet_flags::RESET) == 0)
                && s.shutdown <= 3
                && s.peer != s.id
                && (s.peer == 0 || s.state == inet_state::ESTABLISHED)
                && s.err < 4096
                && u64::from(s.sndbuf.max(s.rcvbuf)) <= MAX_SOCKET_BYTES
                && (s.linger as i32) >= 0;
            if !ok {
                return oob(
                    "inet socket family, protocol, state, flags, shutdown or buffers",
                    s.id,
                );
            }
            let v4 = |a: &[u8; 16]| a[..12] == MAPPED;
            let remote = s.state == inet_state::ESTABLISHED || udp_peer;
            let est = s.state == inet_state::ESTABLISHED;
            let addrs_ok = if s.family == 2 {
                (!bound || v4(&s.local)) && (!remote || v4(&s.remote)) && (!est || v4(&s.conn))
            } else {
                true
            };
            if !addrs_ok || (!est && s.conn != [0; 16]) {
                return oob("inet socket address (IPv4-mapped on AF_INET)", s.id);
            }
            if s.peer != 0 {
                let Some(p) = inets.find(s.peer, |p| p.id) else {
                    return oob("inet socket peer", s.peer);
                };
                let crossed = p.conn == s.remote
                    && p.local_port == s.remote_port
                    && p.remote == s.conn
                    && p.remote_port == s.local_port;
                if p.proto != 6 || p.peer != s.id || !crossed {
                    return oob("inet socket peer (both ends, crossed addresses)", s.peer);
                }
            }
            if s.listener != 0
                && (s.state != inet_state::ESTABLISHED
                    || inets.find(s.listener, |l| l.id).is_none_or(|l| {
                        l.state != inet_state::LISTENING || l.local_port != s.local_port
                    }))
            {
                return oob("connection of an unknown inet listener", s.listener);
            }
            let Some(mut opts) = self
                .blob_bytes(s.opts)
                .filter(|o| o.len() <= MAX_SOCKET_OPTS as usize)
            else {
                return oob("inet socket options", s.id);
            };
            while !opts.is_empty() {
                let len = opts
                    .get(8..12)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
                match len.and_then(|l| opts.get(12 + l..)) {
                    Some(rest) => opts = rest,
                    None => return oob("inet socket options", s.id),
                }
            }
        }
        let (mut prev, mut bytes, mut count) = (0u64, 0u64, 0u32);
        for m in self.entries::<InetMsgEntry>() {
            let Some(s) = inets.find(m.socket, |s| s.id) else {
                return oob("message of an unknown inet socket", m.socket);
            };
            if m.socket < prev
                || s.state == inet_state::LISTENING
                || s.flags & inet_flags::HOST != 0
            {
                return oob(
                    "inet socket message (in socket order, not on a listener or host socket)",
                    m.socket,
                );
            }
            if m.socket != prev {
                (bytes, count) = (0, 0);
            }
            prev = m.socket;
            bytes += u64::from(m.data.len);
            count += 1;
            let tcp = s.proto == 6;
            if (tcp && (count > 1 || m.from != [0; 16] || m.from_port != 0))
                || bytes > MAX_SOCKET_BYTES
                || self.blob_bytes(m.data).is_none()
                || m._reserved != [0; 6]
            {
                return oob("inet socket message bytes or sender", m.socket);
            }
        }
        // Host sockets: one entry per socket flagged `HOST`, in its order.
        let mut last = 0;
        for h in self.entries::<HostSocketEntry>() {
            let flagged = inets
                .find(h.socket, |s| s.id)
                .is_some_and(|s| s.flags & inet_flags::HOST != 0);
            if h.socket <= last || !flagged || h.handle == 0 {
                return oob(
                    "host socket (in increasing order, of an inet socket flagged HOST)",
                    h.socket,
                );
            }
            last = h.socket;
        }
        let flagged = inets
            .iter()
            .filter(|s| s.flags & inet_flags::HOST != 0)
            .count();
        if flagged != Table::<HostSocketEntry>::of(self).len() {
            return oob("inet socket flagged HOST without its host socket", 0);
        }
        Ok(())
    }
}

/// [`RecordError::OutOfBounds`].
fn oob(what: &'static str, v: u64) -> Result<(), RecordError> {
    Err(RecordError::OutOfBounds(what, v))
}

/// The entries of a record's (first) section of `T`'s kind, by index.
struct Table<'a, T> {
    bytes: &'a [u8],
    _t: core::marker::PhantomData<T>,
}

impl<'a, T: Entry> Table<'a, T> {
    fn of(r: &Record<'a>) -> Self {
        let mut rest = r.body;
        let mut bytes: &[u8] = &[];
        while let Ok(Some((h, payload, tail))) = split_section(rest) {
            if h.kind == T::KIND {
                bytes = payload;
                break;
            }
            rest = tail;
        }
        Self {
            bytes,
            _t: core::marker::PhantomData,
        }
    }

    fn len(&self) -> usize {
        self.bytes.len() / size_of::<T>()
    }

    fn get(&self, i: usize) -> Option<T> {
        let n = size_of::<T>();
        T::read_from_bytes(self.bytes.get(i * n..(i + 1) * n)?).ok()
    }

    fn iter(&self) -> impl Iterator<Item = T> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// The entry whose `key` is `k` (entries in increasing key order).
    fn find<K: Ord>(&self, k: K, key: impl Fn(&T) -> K) -> Option<T> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let e = self.get(mid)?;
            match key(&e).cmp(&k) {
                core::cmp::Ordering::Equal => return Some(e),
                core::cmp::Ordering::Less => lo = mid + 1,
                core::cmp::Ordering::Greater => hi = mid,
            }
        }
        None
    }
}

/// CRC-32/ISO-HDLC of `bytes` (what [`fs_node_flags::STATIC`] files are known by).
pub fn crc32(bytes: &[u8]) -> u32 {
    const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    CRC32.checksum(bytes)
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

    /// Appends the [`section::BLOB`] (nothing for none; at most once per record).
    pub fn blob(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let h = SectionHeader {
            kind: section::BLOB,
            entry_size: 1,
            count: bytes.len() as u32,
            _reserved: 0,
        };
        self.out.extend(h.as_bytes().iter().copied());
        self.out.extend(bytes.iter().copied());
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
        let mut w = RecordWriter::new(&mut v, 1, b"6.1.0-pvmux");
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

    const BOUNDS: Bounds = Bounds {
        user_end: crate::user::USER_END,
        pool_start: 16 << 20,
        pool_end: 64 << 20,
        max_pid: MAX_PID,
    };

    /// A version 2 record of one process (pid 1, thread 1) with one memory area and the
    /// page runs `runs`, changed by `edit` before it is written.
    fn v2(runs: &[PageRunEntry], edit: impl FnOnce(&mut ThreadStateEntry)) -> Vec<u8> {
        v2_plus(runs, edit, b"", |_| {})
    }

    /// [`v2`] with `more` bytes at the end of the blob (from offset 521) and the sections
    /// `extra` writes before it.
    fn v2_plus(
        runs: &[PageRunEntry],
        edit: impl FnOnce(&mut ThreadStateEntry),
        more: &[u8],
        extra: impl FnOnce(&mut RecordWriter<'_, Vec<u8>>),
    ) -> Vec<u8> {
        v2_cwd(BlobRef { off: 512, len: 1 }, runs, edit, more, extra)
    }

    /// [`v2_plus`] with the process's working directory at `cwd` in the blob.
    fn v2_cwd(
        cwd: BlobRef,
        runs: &[PageRunEntry],
        edit: impl FnOnce(&mut ThreadStateEntry),
        more: &[u8],
        extra: impl FnOnce(&mut RecordWriter<'_, Vec<u8>>),
    ) -> Vec<u8> {
        let mut v = Vec::new();
        let mut w = RecordWriter::new(&mut v, 2, b"6.1.0-pvmux");
        w.section(&[ProcessEntry {
            pid: 1,
            nr_threads: 1,
            ..Default::default()
        }]);
        w.section(&[ThreadEntry {
            tid: 1,
            pid: 1,
            state: thread_state::USER,
            ..Default::default()
        }]);
        w.section(&[VmaEntry {
            pid: 1,
            flags: vma_flags::READ | vma_flags::WRITE,
            start: 0x40_0000,
            end: 0x41_0000,
            name: [0; 40],
        }]);
        let mut t = ThreadStateEntry {
            tid: 1,
            pid: 1,
            state: thread_state::USER,
            _reserved: 0,
            regs: crate::TrapFrame {
                rip: 0x40_0100,
                rsp: 0x40_f000,
                ..Default::default()
            },
            fs_base: 0,
            clear_child_tid: 0,
            sigmask: 0,
            pending: 0,
            restart_nr: NO_RESTART,
            fpu: BlobRef { off: 0, len: 512 },
            altstack_sp: 0,
            altstack_size: 0,
            altstack_flags: 2,
            _reserved2: 0,
        };
        edit(&mut t);
        w.section(&[t]);
        w.section(runs);
        w.section(&[ProcessStateEntry {
            pid: 1,
            umask: 0o22,
            uids: [0; 4],
            gids: [0; 4],
            shared_pending: 0,
            brk_base: 0,
            brk: 0,
            cwd,
            exe: BlobRef { off: 513, len: 8 },
            caps: [0; 5],
            cap_flags: 0,
            exit_signal: 17,
            groups: BlobRef { off: 0, len: 8 },
            rlimits: BlobRef {
                off: 0,
                len: (NR_RLIMITS * 16) as u32,
            },
        }]);
        extra(&mut w);
        let mut blob = std::vec![0u8; 512];
        blob.extend_from_slice(b"//bin/app");
        blob.extend_from_slice(more);
        w.blob(&blob);
        w.finish();
        v
    }

    #[test]
    fn working_directories_without_a_path_are_checked() {
        // The blob past 521: "(unreachable)", "/proc/1", "tmp".
        let more = b"(unreachable)/proc/1tmp";
        let unreachable = BlobRef { off: 521, len: 13 };
        let proc1 = BlobRef { off: 534, len: 7 };
        let check = |cwd: BlobRef, workdirs: &[WorkdirEntry]| {
            let v = v2_cwd(cwd, &[], |_| {}, more, |w| w.section(workdirs));
            Record::parse(&v, (2, 2)).expect("parses").check(&BOUNDS)
        };
        let synthetic = WorkdirEntry {
            pid: 1,
            kind: workdir_kind::SYNTHETIC,
            ino: 0,
            path: proc1,
        };
        assert_eq!(check(unreachable, &[synthetic]), Ok(()));
        assert_eq!(section::WORKDIR, 39);
        for (cwd, workdirs, what) in [
            (unreachable, &[][..], "unreachable without its entry"),
            (BlobRef { off: 541, len: 3 }, &[][..], "a relative path"),
            (
                BlobRef { off: 512, len: 1 },
                &[synthetic][..],
                "an entry for a path",
            ),
            (
                unreachable,
                &[WorkdirEntry {
                    kind: workdir_kind::REMOVED,
                    ..synthetic
                }][..],
                "a removed one by path, with no filesystem",
            ),
            (
                unreachable,
                &[WorkdirEntry {
                    kind: 3,
                    ..synthetic
                }][..],
                "an unknown kind",
            ),
            (
                unreachable,
                &[WorkdirEntry {
                    path: BlobRef { off: 541, len: 3 },
                    ..synthetic
                }][..],
                "a relative generated path",
            ),
        ] {
            assert!(check(cwd, workdirs).is_err(), "{what}");
        }
    }

    #[test]
    fn timers_waiting_for_their_signal_are_checked() {
        let timer = |id: i32, interval: u64| TimerEntry {
            pid: 1,
            kind: timer_kind::POSIX,
            id,
            clock: timer_clock::MONOTONIC,
            notify: timer_notify::SIGNAL,
            signo: 34,
            tid: 0,
            overrun: 0,
            value: 0,
            next: 5_000_000_000,
            interval,
            _reserved: 0,
        };
        let timers = [timer(0, 20_000_000), timer(1, 0), timer(2, 20_000_000)];
        let wait = |id: i32| TimerWaitEntry {
            pid: 1,
            id,
            overrun: 12,
        };
        let check = |waits: &[TimerWaitEntry]| {
            let v = v2_plus(
                &[],
                |_| {},
                &[],
                |w| {
                    w.section(&timers);
                    w.section(waits);
                },
            );
            let r = Record::parse(&v, (2, 2)).expect("parses");
            r.check(&BOUNDS)
        };
        assert_eq!(check(&[wait(0), wait(2)]), Ok(()));
        assert_eq!(section::TIMER_WAIT, 38);
        for bad in [
            std::vec![wait(2), wait(0)],
            std::vec![wait(1)],
            std::vec![wait(3)],
            std::vec![TimerWaitEntry { pid: 2, ..wait(0) }],
            std::vec![TimerWaitEntry {
                overrun: 1 << 31,
                ..wait(0)
            }],
        ] {
            assert!(check(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prctl_state_and_thread_names_are_checked() {
        let state = PrctlEntry {
            pid: 1,
            pdeath_signal: 15,
            flags: prctl_flags::ALL,
            _reserved: 0,
        };
        let mut name = ThreadNameEntry {
            tid: 1,
            len: 6,
            name: [0; 16],
        };
        name.name[..6].copy_from_slice(b"worker");
        let check = |states: &[PrctlEntry], names: &[ThreadNameEntry]| {
            let v = v2_plus(
                &[],
                |_| {},
                &[],
                |w| {
                    w.section(states);
                    w.section(names);
                },
            );
            let r = Record::parse(&v, (2, 2)).expect("parses");
            r.check(&BOUNDS)
        };
        assert_eq!(check(&[state], &[name]), Ok(()));
        assert_eq!((section::PRCTL, section::THREAD_NAME), (36, 37));
        let mut nul = name;
        nul.name[2] = 0;
        let mut trailing = name;
        trailing.name[10] = b'x';
        for (states, names) in [
            ([PrctlEntry { pid: 2, ..state }], [name]),
            (
                [PrctlEntry {
                    pdeath_signal: 65,
                    ..state
                }],
                [name],
            ),
            (
                [PrctlEntry {
                    flags: 1 << 4,
                    ..state
                }],
                [name],
            ),
            (
                [PrctlEntry {
                    _reserved: 1,
                    ..state
                }],
                [name],
            ),
            ([state], [ThreadNameEntry { tid: 2, ..name }]),
            ([state], [ThreadNameEntry { len: 16, ..name }]),
            ([state], [nul]),
            ([state], [trailing]),
        ] {
            assert!(check(&states, &names).is_err(), "{states:?} {names:?}");
        }
        assert!(check(&[state, state], &[]).is_err(), "twice");
    }

    #[test]
    fn generated_files_and_their_snapshots_are_checked() {
        // The blob past 521: the path, then a snapshot.
        let more = b"/proc/1/statusName:";
        let file = FdStateEntry {
            pid: 1,
            fd: 3,
            kind: fd_state::SYNTHETIC,
            fd_flags: 0,
            status_flags: 0,
            aux: 0,
            description: 4,
            pos: 3,
            object: 0,
            path: BlobRef { off: 521, len: 14 },
        };
        let dir = FdStateEntry {
            fd: 4,
            aux: synth_flags::DIRECTORY,
            description: 5,
            path: BlobRef { off: 521, len: 7 },
            ..file
        };
        let snap = SynthDataEntry {
            description: 4,
            data: BlobRef { off: 535, len: 5 },
        };
        let check = |fds: &[FdStateEntry], snaps: &[SynthDataEntry]| {
            let v = v2_plus(
                &[],
                |_| {},
                more,
                |w| {
                    w.section(fds);
                    w.section(snaps);
                },
            );
            let r = Record::parse(&v, (2, 2)).expect("parses");
            r.check(&BOUNDS)
        };
        assert_eq!(check(&[file, dir], &[snap]), Ok(()));
        assert_eq!(section::SYNTH_DATA, 35);
        for (fds, snaps) in [
            ([FdStateEntry { aux: 2, ..file }, dir], [snap]),
            ([FdStateEntry { object: 1, ..file }, dir], [snap]),
            (
                [
                    FdStateEntry {
                        path: BlobRef { off: 522, len: 4 }, // "proc": relative
                        ..file
                    },
                    dir,
                ],
                [snap],
            ),
            (
                [file, dir],
                [SynthDataEntry {
                    data: BlobRef { off: 535, len: 6 },
                    ..snap
                }],
            ),
            (
                [file, dir],
                [SynthDataEntry {
                    description: 0,
                    ..snap
                }],
            ),
        ] {
            assert!(check(&fds, &snaps).is_err(), "{fds:?} {snaps:?}");
        }
        assert!(
            check(&[file, dir], &[snap, snap]).is_err(),
            "two snapshots of one description"
        );
    }

    #[test]
    fn a_sleep_to_continue_is_checked() {
        let entry = RestartEntry {
            tid: 1,
            reserved: 0,
            nr: 230,
            ret_rip: 0x40_0102,
            target_ns: 5_000_000_000,
            rem: 0x40_0800,
        };
        let check = |entries: &[RestartEntry], restarting: bool| {
            let v = v2_plus(
                &[],
                |t| {
                    if restarting {
                        t.restart_nr = 230;
                    }
                },
                b"",
                |w| w.section(entries),
            );
            let r = Record::parse(&v, (1, 2)).expect("parses");
            r.check(&BOUNDS)
                .map(|()| r.entries::<RestartEntry>().collect::<Vec<_>>())
        };
        assert_eq!(check(&[entry], true), Ok(std::vec![entry]));
        assert!(check(&[RestartEntry { rem: 0, ..entry }], true).is_ok());
        // The thread does not re-issue the call.
        assert!(check(&[entry], false).is_err());
        for bad in [
            RestartEntry { tid: 2, ..entry },
            RestartEntry { nr: 0, ..entry },
            RestartEntry {
                ret_rip: 4,
                ..entry
            },
            RestartEntry {
                reserved: 1,
                ..entry
            },
            RestartEntry { rem: 8, ..entry },
            RestartEntry {
                rem: BOUNDS.user_end,
                ..entry
            },
        ] {
            assert!(check(&[bad], true).is_err(), "{bad:?}");
        }
        assert!(check(&[entry, entry], true).is_err());
    }

    #[test]
    fn shared_areas_and_their_objects_pages_are_checked() {
        let shared = VmaEntry {
            pid: 1,
            flags: vma_flags::READ | vma_flags::WRITE | vma_flags::SHARED,
            start: 0x50_0000,
            end: 0x50_4000,
            name: [0; 40],
        };
        let private = VmaEntry {
            flags: vma_flags::READ,
            start: 0x60_0000,
            end: 0x60_1000,
            ..shared
        };
        let area = ShmAreaEntry {
            pid: 1,
            flags: 0,
            start: 0x50_0000,
            object: 1,
            pgoff: 2,
            path: BlobRef::default(),
        };
        let pages = ShmPagesEntry {
            object: 1,
            index: 2,
            gpa: 20 << 20,
            pages: 2,
        };
        let run = PageRunEntry {
            pid: 1,
            flags: page_flags::SHARED,
            va: 0x50_0000,
            gpa: 20 << 20,
            pages: 1,
        };
        let check = |areas: &[ShmAreaEntry], objects: &[ShmPagesEntry], runs: &[PageRunEntry]| {
            let mut v = Vec::new();
            let mut w = RecordWriter::new(&mut v, 2, b"6.1.0-pvmux");
            w.section(&[ProcessEntry {
                pid: 1,
                nr_threads: 1,
                ..Default::default()
            }]);
            w.section(&[shared, private]);
            w.section(runs);
            w.section(areas);
            w.section(objects);
            w.blob(b"/dev/shm/x");
            w.finish();
            let r = Record::parse(&v, (2, 2)).expect("parses");
            r.check(&BOUNDS)
        };
        assert_eq!(check(&[area], &[pages], &[run]), Ok(()));
        // A file's area: its path in the blob (no filesystem carried: checked by the adopter).
        let file = ShmAreaEntry {
            flags: shm_area_flags::FILE,
            object: 42,
            path: BlobRef { off: 0, len: 10 },
            ..area
        };
        assert_eq!(check(&[file], &[], &[run]), Ok(()));
        for bad in [
            // Of a private area, of no area, unknown flags, past the page limit.
            ShmAreaEntry {
                start: 0x60_0000,
                ..area
            },
            ShmAreaEntry {
                start: 0x50_1000,
                ..area
            },
            ShmAreaEntry { flags: 2, ..area },
            ShmAreaEntry {
                pgoff: MAX_SHM_PAGES - 1,
                ..area
            },
            // An anonymous object's number past the areas, or with a path; a file's without.
            ShmAreaEntry { object: 2, ..area },
            ShmAreaEntry {
                path: BlobRef { off: 0, len: 10 },
                ..area
            },
            ShmAreaEntry {
                path: BlobRef::default(),
                ..file
            },
        ] {
            assert!(check(&[bad], &[pages], &[run]).is_err(), "{bad:?}");
        }
        for bad in [
            ShmPagesEntry { object: 2, ..pages },
            ShmPagesEntry { pages: 0, ..pages },
            ShmPagesEntry {
                gpa: (20 << 20) + 1,
                ..pages
            },
            ShmPagesEntry {
                gpa: 64 << 20,
                ..pages
            },
            ShmPagesEntry {
                index: MAX_SHM_PAGES - 1,
                ..pages
            },
        ] {
            assert!(check(&[area], &[bad], &[run]).is_err(), "{bad:?}");
        }
        // Runs overlapping, out of order.
        let next = ShmPagesEntry {
            index: 3,
            gpa: 21 << 20,
            pages: 1,
            ..pages
        };
        assert!(check(&[area], &[pages, next], &[run]).is_err());
        assert!(check(&[area], &[next, pages], &[run]).is_err());
        // A shared page in a private area, a private page in a shared one.
        let in_private = PageRunEntry {
            va: 0x60_0000,
            ..run
        };
        assert!(check(&[area], &[pages], &[in_private]).is_err());
        let unshared = PageRunEntry { flags: 0, ..run };
        assert!(check(&[area], &[pages], &[unshared]).is_err());
    }

    #[test]
    fn pending_signals_information_is_checked() {
        let thread = SigQueueEntry {
            owner: 1,
            kind: sig_queue_kind::THREAD,
            signo: 35,
            code: 0,
            detail: sig_detail::SENDER,
            a: 2,
            b: 0,
            c: 0,
            v: [0; 4],
            rest: BlobRef::default(),
        };
        let queued = SigQueueEntry {
            kind: sig_queue_kind::PROCESS,
            detail: sig_detail::QUEUED,
            rest: BlobRef {
                off: 521,
                len: SIGINFO_REST,
            },
            ..thread
        };
        let check = |entries: &[SigQueueEntry]| {
            let v = v2_plus(&[], |_| {}, &[0u8; 112], |w| w.section(entries));
            let r = Record::parse(&v, (2, 2)).expect("parses");
            r.check(&BOUNDS)
        };
        assert_eq!(check(&[thread, thread, queued]), Ok(()));
        for bad in [
            SigQueueEntry { owner: 2, ..thread },
            SigQueueEntry { kind: 2, ..thread },
            SigQueueEntry { signo: 0, ..thread },
            SigQueueEntry {
                signo: 65,
                ..thread
            },
            SigQueueEntry {
                detail: 5,
                ..thread
            },
            SigQueueEntry {
                rest: BlobRef { off: 0, len: 8 },
                ..thread
            },
            SigQueueEntry {
                rest: BlobRef::default(),
                ..queued
            },
            SigQueueEntry {
                rest: BlobRef {
                    off: 600,
                    len: SIGINFO_REST,
                },
                ..queued
            },
        ] {
            assert!(check(&[bad]).is_err(), "{bad:?}");
        }
        // Out of (kind, owner) order; too many in one queue.
        assert!(check(&[queued, thread]).is_err());
        assert!(check(&[thread; MAX_SIG_QUEUE + 1]).is_err());
    }

    #[test]
    fn the_console_state_is_checked() {
        let good = ConsoleEntry {
            termios: [0; 44],
            flags: console_flags::EOF,
            winsize: [24, 80, 0, 0],
            fg_pgrp: 1,
            reserved: 0,
            input: BlobRef { off: 0, len: 6 },
            lines: BlobRef { off: 6, len: 8 },
            edit: BlobRef { off: 14, len: 2 },
        };
        // "ab\ncd" then two line lengths (3 and 0) then "ef".
        let mut blob = b"ab\ncd\n".to_vec();
        blob.truncate(6);
        blob.extend_from_slice(&3u32.to_le_bytes());
        blob.extend_from_slice(&0u32.to_le_bytes());
        blob.extend_from_slice(b"ef");
        let check = |entries: &[ConsoleEntry]| {
            let mut v = Vec::new();
            let mut w = RecordWriter::new(&mut v, 2, b"6.1.0-pvmux");
            w.section(entries);
            w.blob(&blob);
            w.finish();
            let r = Record::parse(&v, (2, 2)).expect("parses");
            r.check(&BOUNDS)
                .map(|()| r.entries::<ConsoleEntry>().collect::<Vec<_>>())
        };
        assert_eq!(check(&[good]), Ok(Vec::from([good])));
        assert!(check(&[]).is_ok());
        assert!(check(&[good, good]).is_err(), "two consoles");
        for bad in [
            ConsoleEntry { flags: 2, ..good },
            ConsoleEntry {
                reserved: 1,
                ..good
            },
            ConsoleEntry {
                fg_pgrp: -1,
                ..good
            },
            ConsoleEntry {
                fg_pgrp: MAX_PID + 1,
                ..good
            },
            ConsoleEntry {
                input: BlobRef { off: 10, len: 7 },
                ..good
            },
            ConsoleEntry {
                input: BlobRef { off: 0, len: 2 },
                ..good
            },
            ConsoleEntry {
                lines: BlobRef { off: 6, len: 7 },
                ..good
            },
            ConsoleEntry {
                edit: BlobRef {
                    off: 0,
                    len: MAX_CONSOLE_LINE,
                },
                ..good
            },
        ] {
            assert!(check(&[bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cpu_times_are_checked() {
        let thread = CpuTimesEntry {
            id: 1,
            kind: cpu_times_kind::THREAD,
            user_ns: 3_000_000,
            system_ns: 1_000_000,
            maxrss_kib: 0,
            minflt: 0,
        };
        let ended = CpuTimesEntry {
            kind: cpu_times_kind::ENDED,
            maxrss_kib: 4096,
            minflt: 300,
            ..thread
        };
        let children = CpuTimesEntry {
            kind: cpu_times_kind::CHILDREN,
            ..ended
        };
        let check = |entries: &[CpuTimesEntry]| {
            let v = v2_plus(&[], |_| {}, b"", |w| w.section(entries));
            let r = Record::parse(&v, (1, 2)).expect("parses");
            r.check(&BOUNDS)
                .map(|()| r.entries::<CpuTimesEntry>().collect::<Vec<_>>())
        };
        let all = [thread, ended, children];
        assert_eq!(check(&all), Ok(all.to_vec()));
        assert!(check(&[]).is_ok());
        for bad in [
            CpuTimesEntry { id: 2, ..thread },
            CpuTimesEntry { id: 2, ..ended },
            CpuTimesEntry { kind: 3, ..ended },
            CpuTimesEntry {
                minflt: 1,
                ..thread
            },
            CpuTimesEntry {
                maxrss_kib: 1,
                ..thread
            },
            CpuTimesEntry {
                user_ns: MAX_CPU_NS + 1,
                ..thread
            },
            CpuTimesEntry {
                system_ns: u64::MAX,
                ..children
            },
        ] {
            assert!(check(&[bad]).is_err(), "{bad:?}");
        }
        // Out of order, twice.
        assert!(check(&[ended, thread]).is_err());
        assert!(check(&[thread, thread]).is_err());
    }

    #[test]
    fn arguments_and_environment_are_checked() {
        let more = b"app\0-v\0HOME=/\0";
        let good = ProcessArgsEntry {
            pid: 1,
            reserved: 0,
            cmdline: BlobRef { off: 521, len: 7 },
            environ: BlobRef { off: 528, len: 7 },
        };
        let check = |entries: &[ProcessArgsEntry]| {
            let v = v2_plus(&[], |_| {}, more, |w| w.section(entries));
            let r = Record::parse(&v, (1, 2)).expect("parses");
            r.check(&BOUNDS).map(|()| {
                r.entries::<ProcessArgsEntry>()
                    .map(|a| (r.blob_bytes(a.cmdline), r.blob_bytes(a.environ)))
                    .map(|(c, e)| {
                        (
                            c.unwrap_or_default().to_vec(),
                            e.unwrap_or_default().to_vec(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            check(&[good]),
            Ok(std::vec![(b"app\0-v\0".to_vec(), b"HOME=/\0".to_vec())])
        );
        // Empty lists are fine (a process that never ran `execve`).
        let empty = BlobRef { off: 0, len: 0 };
        assert!(check(&[ProcessArgsEntry {
            cmdline: empty,
            environ: empty,
            ..good
        }])
        .is_ok());
        let bad = [
            // Not NUL-terminated.
            ProcessArgsEntry {
                cmdline: BlobRef { off: 521, len: 6 },
                ..good
            },
            // Outside the blob.
            ProcessArgsEntry {
                environ: BlobRef { off: 530, len: 70 },
                ..good
            },
            // Over the limit (the blob is not that large either way).
            ProcessArgsEntry {
                environ: BlobRef {
                    off: 0,
                    len: MAX_PROCESS_ARGS + 1,
                },
                ..good
            },
            // No such process.
            ProcessArgsEntry { pid: 2, ..good },
            ProcessArgsEntry {
                reserved: 1,
                ..good
            },
        ];
        for b in bad {
            assert!(check(&[b]).is_err(), "{b:?}");
        }
        // Twice for one process.
        assert!(check(&[good, good]).is_err());
    }

    fn run(va: u64, gpa: u64, pages: u64) -> PageRunEntry {
        PageRunEntry {
            pid: 1,
            flags: 0,
            va,
            gpa,
            pages,
        }
    }

    #[test]
    fn a_version_2_record_carries_threads_pages_and_paths() {
        let v = v2(
            &[run(0x40_0000, 16 << 20, 2), run(0x40_4000, 20 << 20, 1)],
            |_| {},
        );
        let r = Record::parse(&v, (1, 2)).expect("valid");
        r.check(&BOUNDS).expect("in bounds");
        let t: Vec<ThreadStateEntry> = r.entries().collect();
        assert_eq!(t[0].regs.rip, 0x40_0100);
        assert_eq!(r.blob_bytes(t[0].fpu).map(<[u8]>::len), Some(512));
        let s: Vec<ProcessStateEntry> = r.entries().collect();
        assert_eq!(r.blob_bytes(s[0].cwd), Some(&b"/"[..]));
        assert_eq!(r.blob_bytes(s[0].exe), Some(&b"/bin/app"[..]));
        let pages: u64 = r.entries::<PageRunEntry>().map(|p| p.pages).sum();
        assert_eq!(pages, 3);
        // A version 1 reader refuses it; version 2 sections in a version 1 record too.
        assert_eq!(
            Record::parse(&v, (1, 1)).err(),
            Some(RecordError::Version(2))
        );
        let mut v1 = Vec::new();
        let mut w = RecordWriter::new(&mut v1, 1, b"x");
        w.blob(b"abc");
        w.finish();
        assert_eq!(
            Record::parse(&v1, (1, 2)).err(),
            Some(RecordError::BadSection(section::BLOB))
        );
    }

    #[test]
    fn out_of_bounds_values_are_refused() {
        let bad = |runs: &[PageRunEntry], edit: fn(&mut ThreadStateEntry), what: &str| {
            let v = v2(runs, edit);
            let r = Record::parse(&v, (2, 2)).expect("well formed");
            match r.check(&BOUNDS) {
                Err(RecordError::OutOfBounds(w, _)) => assert!(w.contains(what), "{w}"),
                e => panic!("{what}: {e:?}"),
            }
        };
        let ok = run(0x40_0000, 16 << 20, 1);
        let none: fn(&mut ThreadStateEntry) = |_| {};
        // Frames outside the pool, unaligned, or running past its end.
        bad(&[run(0x40_0000, 8 << 20, 1)], none, "frame");
        bad(&[run(0x40_0000, (16 << 20) + 1, 1)], none, "frame");
        bad(&[run(0x40_0000, (64 << 20) - 4096, 2)], none, "frame");
        bad(&[run(0x40_0000, 16 << 20, 1 << 60)], none, "length");
        bad(&[run(0x40_0000, 16 << 20, 0)], none, "length");
        // Pages outside the process's memory areas, unordered or overlapping runs.
        bad(&[run(0x41_0000, 16 << 20, 1)], none, "memory areas");
        bad(&[run(0x40_f000, 16 << 20, 2)], none, "memory areas");
        bad(&[run(0x40_2000, 16 << 20, 1), ok], none, "order");
        bad(&[ok, run(0x40_0000, 17 << 20, 1)], none, "order");
        bad(&[run(0xffff_8000_0000_0000, 16 << 20, 1)], none, "address");
        bad(&[PageRunEntry { pid: 2, ..ok }], none, "unknown process");
        // Threads: a kernel rip, an FPU area outside the blob or too long, a stray tid.
        bad(&[ok], |t| t.regs.rip = 0xffff_ffff_8000_0000, "rip");
        bad(&[ok], |t| t.fpu = BlobRef { off: 500, len: 100 }, "FPU");
        bad(&[ok], |t| t.fpu.len = MAX_FPU_LEN + 1, "FPU");
        bad(&[ok], |t| t.tid = 9, "unknown thread");
        bad(&[ok], |t| t.clear_child_tid = 8, "clear_child_tid");
        // Tighter bounds: the same record's frames fall outside.
        let v = v2(&[ok], none);
        let r = Record::parse(&v, (2, 2)).expect("valid");
        r.check(&BOUNDS).expect("in bounds");
        let small = Bounds {
            pool_start: 32 << 20,
            ..BOUNDS
        };
        assert!(matches!(
            r.check(&small),
            Err(RecordError::OutOfBounds("page frame", _))
        ));
    }

    #[test]
    fn file_areas_name_a_memory_area() {
        let rec = |areas: &[FileAreaEntry]| {
            let mut v = Vec::new();
            let mut w = RecordWriter::new(&mut v, 2, b"x");
            w.section(&[ProcessEntry {
                pid: 1,
                ..Default::default()
            }]);
            let vma = |start: u64| VmaEntry {
                pid: 1,
                flags: vma_flags::READ,
                start,
                end: start + 0x1000,
                name: [0; 40],
            };
            w.section(&[vma(0x40_0000), vma(0x50_0000)]);
            w.section(areas);
            w.blob(b"/bin/app");
            w.finish();
            v
        };
        let area = |start: u64, offset: u64| FileAreaEntry {
            pid: 1,
            flags: file_area_flags::IMAGE,
            start,
            offset,
            path: BlobRef { off: 0, len: 8 },
        };
        let check = |v: &[u8]| {
            Record::parse(v, (2, 2))
                .expect("well formed")
                .check(&BOUNDS)
        };
        check(&rec(&[area(0x40_0000, 0), area(0x50_0000, 0x1000)])).expect("in bounds");
        for (v, what) in [
            (rec(&[area(0x40_1000, 0)]), "no memory area"),
            (rec(&[area(0x50_0000, 0), area(0x40_0000, 0)]), "order"),
            (rec(&[area(0x40_0000, 0x10)]), "offset"),
            (
                rec(&[FileAreaEntry {
                    path: BlobRef { off: 0, len: 0 },
                    ..area(0x40_0000, 0)
                }]),
                "path",
            ),
        ] {
            match check(&v) {
                Err(RecordError::OutOfBounds(w, _)) => assert!(w.contains(what), "{w}"),
                e => panic!("{what}: {e:?}"),
            }
        }
    }

    #[test]
    fn a_removed_image_area_names_its_inode() {
        let rec = |areas: &[FileAreaEntry], inodes: &[FileAreaInodeEntry]| {
            let mut v = Vec::new();
            let mut w = RecordWriter::new(&mut v, 2, b"x");
            w.section(&[ProcessEntry {
                pid: 1,
                ..Default::default()
            }]);
            let vma = |start: u64| VmaEntry {
                pid: 1,
                flags: vma_flags::READ,
                start,
                end: start + 0x1000,
                name: [0; 40],
            };
            w.section(&[vma(0x40_0000), vma(0x50_0000)]);
            w.section(areas);
            w.section(inodes);
            w.blob(b"/lib/gone.so");
            w.finish();
            Record::parse(&v, (2, 2))
                .expect("well formed")
                .check(&BOUNDS)
                .map_err(|e| match e {
                    RecordError::OutOfBounds(what, _) => what,
                    _ => "other",
                })
        };
        let area = |start: u64, flags: u32| FileAreaEntry {
            pid: 1,
            flags,
            start,
            offset: 0,
            path: BlobRef { off: 0, len: 12 },
        };
        let ino = |start: u64, ino: u64| FileAreaInodeEntry {
            pid: 1,
            _reserved: 0,
            start,
            ino,
        };
        let image = file_area_flags::IMAGE;
        let removed = file_area_flags::REMOVED;
        assert_eq!(section::FILE_AREA_INODE, 42);
        // A removed non-image area needs no inode; a removed image area needs exactly one.
        assert_eq!(rec(&[area(0x40_0000, removed)], &[]), Ok(()));
        assert_eq!(
            rec(
                &[area(0x40_0000, image | removed), area(0x50_0000, image)],
                &[ino(0x40_0000, 9)]
            ),
            Ok(())
        );
        for (areas, inodes) in [
            (&[area(0x40_0000, image | removed)][..], &[][..]),
            (&[area(0x40_0000, image)][..], &[ino(0x40_0000, 9)][..]),
            (
                &[area(0x40_0000, image | removed)][..],
                &[ino(0x40_0000, 0)][..],
            ),
            (
                &[area(0x40_0000, image | removed)][..],
                &[ino(0x50_0000, 9)][..],
            ),
            (
                &[
                    area(0x40_0000, image | removed),
                    area(0x50_0000, image | removed),
                ][..],
                &[ino(0x50_0000, 9), ino(0x40_0000, 9)][..],
            ),
        ] {
            assert!(rec(areas, inodes).is_err(), "{areas:?} {inodes:?}");
        }
    }

    /// `v` (a finished record) as a record of `version`: the header's version changed and
    /// its CRC computed again.
    fn as_version(mut v: Vec<u8>, version: u32) -> Vec<u8> {
        v[8..12].copy_from_slice(&version.to_le_bytes());
        v[24..28].fill(0);
        let c = crc32(&v);
        v[24..28].copy_from_slice(&c.to_le_bytes());
        v
    }

    #[test]
    fn robust_lists_are_version_3_and_checked() {
        let entry = |tid: i32, head: u64| RobustListEntry {
            tid,
            _reserved: 0,
            head,
        };
        let record = |lists: &[RobustListEntry]| v2_plus(&[], |_| {}, &[], |w| w.section(lists));
        let check = |lists: &[RobustListEntry]| {
            let v = as_version(record(lists), 3);
            Record::parse(&v, (3, 3)).expect("parses").check(&BOUNDS)
        };
        assert_eq!(check(&[entry(1, 0x7000_0010)]), Ok(()));
        assert_eq!(section::ROBUST_LIST, 44);
        for bad in [
            entry(2, 0x1000),
            entry(1, 0),
            RobustListEntry {
                _reserved: 1,
                ..entry(1, 0x10)
            },
        ] {
            assert!(check(&[bad]).is_err(), "{bad:?}");
        }
        assert!(check(&[entry(1, 0x10), entry(1, 0x20)]).is_err(), "twice");
        // Scheduling parameters (section 45), checked alike.
        let sched = |tid: i32, nice: i32, affinity: u64| ThreadSchedEntry {
            tid,
            nice,
            affinity,
        };
        let check_sched = |e: ThreadSchedEntry| {
            let v = as_version(v2_plus(&[], |_| {}, &[], |w| w.section(&[e])), 3);
            Record::parse(&v, (3, 3)).expect("parses").check(&BOUNDS)
        };
        assert_eq!(check_sched(sched(1, -5, 0b10)), Ok(()));
        assert_eq!(section::THREAD_SCHED, 45);
        for bad in [
            sched(2, 0, 1),
            sched(1, 20, 1),
            sched(1, -21, 1),
            sched(1, 0, 0),
        ] {
            assert!(check_sched(bad).is_err(), "{bad:?}");
        }
        // Not in a version-2 record.
        assert_eq!(
            Record::parse(&record(&[entry(1, 0x10)]), (2, 3)).err(),
            Some(RecordError::BadSection(section::ROBUST_LIST))
        );
    }

    #[test]
    fn advisory_locks_are_version_3_and_checked() {
        let lock = |kind: u32, mode: u32, owner: i32, start: u64, end: u64| LockEntry {
            kind,
            mode,
            owner,
            _reserved: 0,
            description: 1,
            start,
            end,
        };
        let record = |version: u32, locks: &[LockEntry]| {
            let mut v = Vec::new();
            let mut w = RecordWriter::new(&mut v, version, b"x");
            w.section(&[ProcessEntry {
                pid: 1,
                ..Default::default()
            }]);
            w.section(locks);
            w.finish();
            v
        };
        let check = |locks: &[LockEntry]| {
            let v = record(3, locks);
            Record::parse(&v, (3, 3))
                .expect("well formed")
                .check(&BOUNDS)
                .map_err(|e| match e {
                    RecordError::OutOfBounds(what, _) => what,
                    _ => "other",
                })
        };
        let good = [
            lock(lock_kind::POSIX, lock_mode::WRITE, 1, 0, 9),
            lock(lock_kind::OFD, lock_mode::READ, 0, 10, LOCK_OFFSET_MAX),
            lock(lock_kind::FLOCK, lock_mode::WRITE, 0, 0, LOCK_OFFSET_MAX),
        ];
        assert_eq!(check(&good), Ok(()));
        assert_eq!(section::LOCK, 43);
        // A version-2 record has no locks: its adopter would drop them.
        let v2 = record(2, &good);
        assert_eq!(
            Record::parse(&v2, (2, 3)).err(),
            Some(RecordError::BadSection(section::LOCK))
        );
        for bad in [
            lock(9, lock_mode::READ, 0, 0, 1),
            lock(lock_kind::POSIX, 2, 1, 0, 1),
            lock(lock_kind::POSIX, lock_mode::READ, 2, 0, 1),
            lock(lock_kind::POSIX, lock_mode::READ, 1, 5, 4),
            lock(lock_kind::POSIX, lock_mode::READ, 1, 0, LOCK_OFFSET_MAX + 1),
            lock(lock_kind::OFD, lock_mode::READ, 1, 0, 1),
            lock(lock_kind::FLOCK, lock_mode::READ, 0, 0, 1),
            LockEntry {
                _reserved: 1,
                ..good[0]
            },
        ] {
            let e = check(&[bad]).expect_err("refused");
            assert!(e.contains("advisory lock"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn descriptors_in_flight_name_a_carried_message_and_description() {
        // Process 1 holds a socket pair's end (description 1); a message queued on the other
        // end passes a pipe's read end (description 2, held by no process) and that same
        // socket (description 1, held by process 1 too).
        let sock = |id: u64, peer: u64| SocketEntry {
            id,
            peer,
            listener: 0,
            ty: 1,
            state: socket_state::CONNECTED,
            flags: 0,
            shutdown: 0,
            backlog: 0,
            err: 0,
            sndbuf: 212_992,
            rcvbuf: 212_992,
            peercred: [0; 3],
            mode: 0,
            owner: [0; 2],
            addr: BlobRef::default(),
            opts: BlobRef::default(),
            path: BlobRef::default(),
        };
        let fd = |pid: i32, fd: i32, kind: u32, description: u64, object: u64| FdStateEntry {
            pid,
            fd,
            kind,
            fd_flags: 0,
            status_flags: 2,
            aux: 0,
            description,
            pos: 0,
            object,
            path: BlobRef::default(),
        };
        let held = fd(1, 3, fd_state::UNIX_SOCKET, 1, 1);
        let socket_end = fd(IN_FLIGHT_PID, 0, fd_state::UNIX_SOCKET, 1, 1);
        let pipe_end = fd(IN_FLIGHT_PID, 1, fd_state::PIPE_READ, 2, 7);
        let msg = SocketMsgEntry {
            socket: 2,
            sender: 1,
            cred: [1, 0, 0],
            _reserved: 0,
            data: BlobRef { off: 0, len: 1 },
            from: BlobRef::default(),
        };
        let slot = |message: u32, slot: u32, description: u64| InFlightEntry {
            message,
            slot,
            description,
        };
        let check = |fds: &[FdStateEntry], in_flight: &[InFlightEntry]| {
            let mut v = Vec::new();
            let mut w = RecordWriter::new(&mut v, 2, b"x");
            w.section(&[ProcessEntry {
                pid: 1,
                ..Default::default()
            }]);
            w.section(fds);
            w.section(&[PipeEntry {
                id: 7,
                data: BlobRef::default(),
                _reserved: 0,
            }]);
            w.section(&[sock(1, 2), sock(2, 1)]);
            w.section(&[msg]);
            w.section(in_flight);
            w.blob(b"x");
            w.finish();
            Record::parse(&v, (2, 2))
                .expect("well formed")
                .check(&BOUNDS)
                .map_err(|e| match e {
                    RecordError::OutOfBounds(what, _) => what,
                    _ => "other",
                })
        };
        let good = [slot(0, 0, 2), slot(0, 1, 1)];
        assert_eq!(check(&[socket_end, pipe_end, held], &good), Ok(()));
        assert_eq!(section::IN_FLIGHT, 40);
        // Refused: a description in flight with no entry of pid 0 (held only by process 1);
        // a message the record does not have; slots out of order or not from 0; the
        // in-flight entries not numbered from 0 in description order.
        let bad_slots: [&[InFlightEntry]; 5] = [
            &[slot(0, 0, 2), slot(0, 1, 3)],
            &[slot(1, 0, 2)],
            &[slot(0, 1, 2)],
            &[slot(0, 0, 2), slot(0, 0, 1)],
            &[slot(0, 0, 2), slot(0, 2, 1)],
        ];
        for bad in bad_slots {
            let e = check(&[socket_end, pipe_end, held], bad).expect_err("refused");
            assert!(e.contains("descriptor in flight"), "{e}");
        }
        for fds in [
            [
                FdStateEntry { fd: 0, ..pipe_end },
                FdStateEntry {
                    fd: 1,
                    ..socket_end
                },
                held,
            ],
            [
                FdStateEntry {
                    fd: 1,
                    ..socket_end
                },
                FdStateEntry { fd: 2, ..pipe_end },
                held,
            ],
        ] {
            let e = check(&fds, &good).expect_err("refused");
            assert!(e.contains("carried descriptor"), "{e}");
        }
    }

    #[test]
    fn carried_sockets_name_both_ends_and_their_queues() {
        // Blob: "\x01\x00\x00srv" (an abstract address), "hello", options (20, 16 bytes).
        let mut blob = b"\x01\x00\x00srvhello".to_vec();
        let opts_at = blob.len() as u32;
        blob.extend_from_slice(&20i32.to_le_bytes());
        blob.extend_from_slice(&16u32.to_le_bytes());
        blob.extend_from_slice(&[0; 16]);
        let rec = |fds: &[FdStateEntry], socks: &[SocketEntry], msgs: &[SocketMsgEntry]| {
            let mut v = Vec::new();
            let mut w = RecordWriter::new(&mut v, 2, b"x");
            w.section(&[ProcessEntry {
                pid: 1,
                ..Default::default()
            }]);
            w.section(fds);
            w.section(socks);
            w.section(msgs);
            w.blob(&blob);
            w.finish();
            v
        };
        let fd = |fd: i32, object: u64| FdStateEntry {
            pid: 1,
            fd,
            kind: fd_state::UNIX_SOCKET,
            fd_flags: 0,
            status_flags: 2,
            aux: 0,
            description: fd as u64 + 1,
            pos: 0,
            object,
            path: BlobRef::default(),
        };
        let sock = |id: u64, peer: u64, state: u32| SocketEntry {
            id,
            peer,
            listener: 0,
            ty: 1,
            state,
            flags: 0,
            shutdown: 0,
            backlog: 0,
            err: 0,
            sndbuf: 212_992,
            rcvbuf: 212_992,
            peercred: [0; 3],
            mode: 0,
            owner: [0; 2],
            addr: BlobRef::default(),
            opts: BlobRef::default(),
            path: BlobRef::default(),
        };
        let msg = |socket: u64, len: u32| SocketMsgEntry {
            socket,
            sender: 1,
            cred: [1, 0, 0],
            _reserved: 0,
            data: BlobRef { off: 6, len },
            from: BlobRef::default(),
        };
        let check = |v: &[u8]| {
            Record::parse(v, (2, 2))
                .expect("well formed")
                .check(&BOUNDS)
        };
        let c = socket_state::CONNECTED;
        let listener = SocketEntry {
            state: socket_state::LISTENING,
            flags: socket_flags::NAMED,
            backlog: 5,
            addr: BlobRef { off: 0, len: 6 },
            opts: BlobRef {
                off: opts_at,
                len: 24,
            },
            ..sock(3, 0, 0)
        };
        let embryo = SocketEntry {
            listener: 3,
            ..sock(5, 4, c)
        };
        let socks = [
            sock(1, 2, c),
            sock(2, 1, c),
            listener,
            sock(4, 5, c),
            embryo,
        ];
        let fds = [fd(0, 1), fd(1, 2), fd(2, 3), fd(3, 4)];
        let ok = rec(&fds, &socks, &[msg(1, 5), msg(1, 2), msg(5, 1)]);
        check(&ok).expect("in bounds");
        let r = Record::parse(&ok, (2, 2)).expect("valid");
        let s: Vec<SocketEntry> = r.entries().collect();
        assert_eq!(s, socks);
        assert_eq!(r.blob_bytes(s[2].addr), Some(&b"\x01\x00\x00srv"[..]));
        let m: Vec<SocketMsgEntry> = r.entries().collect();
        assert_eq!(r.blob_bytes(m[0].data), Some(&b"hello"[..]));
        // A version 1 record has no socket sections.
        let mut v1 = Vec::new();
        let mut w = RecordWriter::new(&mut v1, 1, b"x");
        w.section(&socks);
        w.finish();
        assert_eq!(
            Record::parse(&v1, (1, 2)).err(),
            Some(RecordError::BadSection(section::SOCKET))
        );
        let half = [sock(1, 2, c), sock(2, 4, c), sock(4, 2, c)];
        for (v, what) in [
            (rec(&[fd(0, 9)], &socks, &[]), "unknown socket"),
            (rec(&[fd(0, 5)], &socks, &[]), "unknown socket"),
            (rec(&[], &[sock(2, 0, 0), sock(1, 0, 0)], &[]), "socket id"),
            (rec(&[], &half, &[]), "both ends"),
            (rec(&[], &[sock(1, 7, c)], &[]), "socket peer"),
            (
                rec(
                    &[],
                    &[SocketEntry {
                        ty: 3,
                        ..sock(1, 0, 0)
                    }],
                    &[],
                ),
                "socket type",
            ),
            (
                rec(
                    &[],
                    &[SocketEntry {
                        ty: 2,
                        ..sock(1, 0, c)
                    }],
                    &[],
                ),
                "socket type",
            ),
            (
                rec(
                    &[],
                    &[
                        SocketEntry {
                            listener: 2,
                            ..sock(1, 0, c)
                        },
                        sock(2, 0, 0),
                    ],
                    &[],
                ),
                "listener",
            ),
            (
                rec(
                    &[],
                    &[SocketEntry {
                        addr: BlobRef { off: 20, len: 100 },
                        ..sock(1, 0, 0)
                    }],
                    &[],
                ),
                "socket address",
            ),
            (
                rec(
                    &[],
                    &[SocketEntry {
                        opts: BlobRef {
                            off: opts_at,
                            len: 20,
                        },
                        ..sock(1, 0, 0)
                    }],
                    &[],
                ),
                "socket options",
            ),
            (
                rec(
                    &[],
                    &[SocketEntry {
                        flags: socket_flags::NAMED,
                        addr: BlobRef { off: 6, len: 5 },
                        ..sock(1, 0, 0)
                    }],
                    &[],
                ),
                "socket name",
            ),
            (
                rec(
                    &[],
                    &[SocketEntry {
                        path: BlobRef { off: 6, len: 5 },
                        ..sock(1, 0, 0)
                    }],
                    &[],
                ),
                "socket name",
            ),
            (rec(&[], &socks, &[msg(5, 1), msg(1, 1)]), "socket order"),
            (rec(&[], &socks, &[msg(3, 1)]), "listener"),
            (rec(&[], &socks, &[msg(8, 1)]), "unknown socket"),
            (rec(&[], &socks, &[msg(1, 500)]), "message bytes"),
            (
                rec(
                    &[],
                    &socks,
                    &[SocketMsgEntry {
                        sender: 8,
                        ..msg(1, 1)
                    }],
                ),
                "unknown sender",
            ),
        ] {
            match check(&v) {
                Err(RecordError::OutOfBounds(w, _)) => assert!(w.contains(what), "{what}: {w}"),
                e => panic!("{what}: {e:?}"),
            }
        }
    }

    #[test]
    fn process_flags_are_known_ones() {
        let check = |flags: u32| {
            let mut v = Vec::new();
            let mut w = RecordWriter::new(&mut v, 2, b"x");
            w.section(&[ProcessEntry {
                pid: 1,
                flags,
                ..Default::default()
            }]);
            w.blob(b"");
            w.finish();
            Record::parse(&v, (2, 2))
                .expect("well formed")
                .check(&BOUNDS)
        };
        assert!(check(0).is_ok());
        assert!(check(process_flags::IN_PROCESS).is_ok());
        assert!(check(process_flags::ZOMBIE | process_flags::IN_PROCESS).is_err());
        assert!(check(1 << 2).is_err());
    }

    #[test]
    fn relays_are_version_4_and_checked() {
        use crate::net::{PUBLISH_TCP, PUBLISH_UDP};
        let sock = |id: u64, proto: u16, listener: u64, flags: u32| InetSocketEntry {
            id,
            peer: 0,
            listener,
            family: 2,
            proto,
            state: inet_state::CLOSED,
            flags,
            shutdown: 0,
            backlog: 0,
            err: 0,
            sndbuf: 16_384,
            rcvbuf: 131_072,
            local: [0; 16],
            conn: [0; 16],
            remote: [0; 16],
            local_port: 0,
            remote_port: 0,
            linger: 0,
            opts: BlobRef::default(),
        };
        let relay = |handle: u64, socket: u64, proto: u8, flags: u8| RelayEntry {
            handle,
            socket,
            port: 8000,
            proto,
            flags,
            _reserved: 0,
            to_guest: BlobRef { off: 0, len: 3 },
            to_host: BlobRef::default(),
        };
        let record = |version: u32, socks: &[InetSocketEntry], relays: &[RelayEntry]| {
            let mut v = Vec::new();
            let mut w = RecordWriter::new(&mut v, version, b"x");
            w.section(&[ProcessEntry {
                pid: 1,
                ..Default::default()
            }]);
            w.section(&[FdStateEntry {
                pid: 1,
                fd: 3,
                kind: fd_state::INET_SOCKET,
                fd_flags: 0,
                status_flags: 2,
                aux: 0,
                description: 1,
                pos: 0,
                object: 1,
                path: BlobRef::default(),
            }]);
            w.section(socks);
            w.section(relays);
            w.blob(b"abc");
            w.finish();
            v
        };
        let check = |socks: &[InetSocketEntry], relays: &[RelayEntry]| {
            Record::parse(&record(4, socks, relays), (4, 4))
                .expect("well formed")
                .check(&BOUNDS)
                .map_err(|e| match e {
                    RecordError::OutOfBounds(what, _) => what,
                    _ => "other",
                })
        };
        assert_eq!(section::RELAY, 46);
        assert_eq!(size_of::<RelayEntry>(), 40);
        // Version 3 has no relays.
        let socks = [sock(1, 6, 0, 0), sock(2, 6, 0, 0), sock(3, 17, 0, 0)];
        let tcp = relay(7, 2, PUBLISH_TCP, relay_flags::CONNECTED);
        assert!(matches!(
            Record::parse(&record(3, &socks, &[tcp]), (3, 4)),
            Err(RecordError::BadSection(46))
        ));
        let udp = RelayEntry {
            to_guest: BlobRef::default(),
            ..relay(5, 3, PUBLISH_UDP, 0)
        };
        let unconnected = relay(9, 0, PUBLISH_TCP, 0);
        assert_eq!(check(&socks, &[unconnected, tcp, udp]), Ok(()));
        let bad: [&[RelayEntry]; 13] = [
            // A descriptor's socket; one of the other protocol; an unknown one.
            &[relay(7, 1, PUBLISH_TCP, 0)],
            &[relay(7, 3, PUBLISH_TCP, 0)],
            &[relay(7, 4, PUBLISH_TCP, 0)],
            // Two relays of one socket; sockets out of order; one without after one with.
            &[tcp, relay(8, 2, PUBLISH_TCP, 0)],
            &[udp, tcp],
            &[tcp, unconnected],
            // Handle 0, port 0, an unknown protocol or flag, connected without a socket.
            &[relay(0, 2, PUBLISH_TCP, 0)],
            &[RelayEntry { port: 0, ..tcp }],
            &[relay(7, 2, 1, 0)],
            &[relay(7, 2, PUBLISH_TCP, 1 << 5)],
            &[relay(7, 0, PUBLISH_TCP, relay_flags::CONNECTED)],
            // UDP with bytes or flags.
            &[relay(5, 3, PUBLISH_UDP, 0)],
            // Bytes outside the blob.
            &[RelayEntry {
                to_host: BlobRef { off: 2, len: 5 },
                ..tcp
            }],
        ];
        for relays in bad {
            assert!(check(&socks, relays).is_err(), "{relays:?}");
        }
        // A socket in a listener's queue, or a host socket.
        let queued = [sock(1, 6, 0, 0), sock(2, 6, 9, 0), sock(9, 6, 0, 0)];
        assert!(check(&queued, &[tcp]).is_err());
    }

    #[test]
    fn disks_are_version_5_and_checked() {
        let record = |version: u32, disks: &[DiskEntry]| {
            let mut v = Vec::new();
            let mut w = RecordWriter::new(&mut v, version, b"x");
            w.section(&[ProcessEntry {
                pid: 1,
                ..Default::default()
            }]);
            w.section(disks);
            w.blob(b"/data/mnt\0x");
            w.finish();
            v
        };
        let check = |disks: &[DiskEntry]| {
            Record::parse(&record(5, disks), (5, 5))
                .expect("well formed")
                .check(&BOUNDS)
                .map_err(|e| match e {
                    RecordError::OutOfBounds(what, _) => what,
                    _ => "other",
                })
        };
        assert_eq!(section::DISK, 47);
        assert_eq!(size_of::<DiskEntry>(), 24);
        let data = BlobRef { off: 0, len: 5 };
        let mounted = DiskEntry {
            slot: 0,
            flags: disk_flags::MOUNTED,
            sectors: 2048,
            path: data,
        };
        let raw = DiskEntry {
            slot: 3,
            flags: disk_flags::READ_ONLY,
            sectors: 8,
            path: BlobRef::default(),
        };
        // Version 4 has no disks.
        assert!(matches!(
            Record::parse(&record(4, &[mounted]), (4, 5)),
            Err(RecordError::BadSection(47))
        ));
        let by_program = DiskEntry {
            slot: 1,
            flags: disk_flags::READ_ONLY
                | disk_flags::MOUNTED
                | disk_flags::MOUNT_READ_ONLY
                | disk_flags::BY_PROGRAM,
            path: BlobRef { off: 0, len: 9 },
            ..mounted
        };
        assert_eq!(check(&[mounted, by_program, raw]), Ok(()));
        let bad: [&[DiskEntry]; 11] = [
            // Slots twice, out of order, too high; no size; an unknown flag.
            &[mounted, mounted],
            &[raw, mounted],
            &[DiskEntry { slot: 8, ..raw }],
            &[DiskEntry { sectors: 0, ..raw }],
            &[DiskEntry {
                flags: 1 << 4,
                ..raw
            }],
            // Mounted without a path, a path without the mount, mount flags unmounted.
            &[DiskEntry {
                path: BlobRef::default(),
                ..mounted
            }],
            &[DiskEntry { path: data, ..raw }],
            &[DiskEntry {
                flags: disk_flags::BY_PROGRAM,
                ..raw
            }],
            // A read-only disk mounted for writing.
            &[DiskEntry {
                flags: disk_flags::READ_ONLY | disk_flags::MOUNTED,
                ..mounted
            }],
            // A path with a NUL, or outside the blob.
            &[DiskEntry {
                path: BlobRef { off: 0, len: 11 },
                ..mounted
            }],
            &[DiskEntry {
                path: BlobRef { off: 8, len: 9 },
                ..mounted
            }],
        ];
        for disks in bad {
            assert!(check(disks).is_err(), "{disks:?}");
        }
        // "/" alone is no mount path.
        let root_only = DiskEntry {
            path: BlobRef { off: 0, len: 1 },
            ..mounted
        };
        assert!(check(&[root_only]).is_err());
    }

    #[test]
    fn exec_sessions_are_version_6_and_checked() {
        let proc_ = |pid: i32, ppid: i32, flags: u32| ProcessEntry {
            pid,
            ppid,
            flags,
            ..Default::default()
        };
        let pipe = |id: u64| PipeEntry {
            id,
            data: BlobRef::default(),
            _reserved: 0,
        };
        let record = |version: u32, sessions: &[ExecSessionEntry]| {
            let mut v = Vec::new();
            let mut w = RecordWriter::new(&mut v, version, b"x");
            w.section(&[proc_(1, 0, 0), proc_(5, 0, 0), proc_(6, 1, 0)]);
            w.section(&[pipe(1), pipe(2), pipe(3), pipe(4)]);
            w.section(sessions);
            w.blob(b"abc");
            w.finish();
            v
        };
        let check = |sessions: &[ExecSessionEntry]| {
            Record::parse(&record(6, sessions), (6, 6))
                .expect("well formed")
                .check(&BOUNDS)
                .map_err(|e| match e {
                    RecordError::OutOfBounds(what, _) => what,
                    _ => "other",
                })
        };
        assert_eq!(section::EXEC_SESSION, 48);
        assert_eq!(size_of::<ExecSessionEntry>(), 72);
        let running = ExecSessionEntry {
            session: 3,
            pid: 5,
            stdin: 1,
            stdout: 2,
            stderr: 3,
            to_guest: BlobRef { off: 0, len: 3 },
            ..Default::default()
        };
        // Version 5 has no exec sessions.
        assert!(matches!(
            Record::parse(&record(5, &[running]), (5, 6)),
            Err(RecordError::BadSection(48))
        ));
        // A program that ended (its pid gone), its output still relayed.
        let ended = ExecSessionEntry {
            session: 4,
            pid: 9,
            status: 7 << 8,
            flags: exec_session_flags::EXITED | exec_session_flags::HOST_EOF,
            stdin: 0,
            stdout: 4,
            stderr: 0,
            to_stdout: BlobRef { off: 1, len: 2 },
            ..Default::default()
        };
        assert_eq!(check(&[running, ended]), Ok(()));
        let bad: [&[ExecSessionEntry]; 12] = [
            // Sessions out of order, or 0.
            &[ended, running],
            &[ExecSessionEntry {
                session: 0,
                ..running
            }],
            // Not a program of an exec session: init, a child of init, unknown, a live pid
            // said to have ended, an invalid status.
            &[ExecSessionEntry { pid: 1, ..running }],
            &[ExecSessionEntry { pid: 6, ..running }],
            &[ExecSessionEntry { pid: 8, ..running }],
            &[ExecSessionEntry { pid: 5, ..ended }],
            &[ExecSessionEntry {
                status: 0x7f,
                ..ended
            }],
            // A status without the flag, an unknown flag.
            &[ExecSessionEntry {
                status: 1,
                ..running
            }],
            &[ExecSessionEntry {
                flags: 1 << 4,
                ..running
            }],
            // A pipe unknown, twice in one session, in two sessions.
            &[ExecSessionEntry {
                stdin: 9,
                ..running
            }],
            &[ExecSessionEntry {
                stderr: 2,
                ..running
            }],
            &[running, ExecSessionEntry { stdout: 1, ..ended }],
        ];
        for sessions in bad {
            assert!(check(sessions).is_err(), "{sessions:?}");
        }
        // Bytes for a closed input, or outside the blob.
        assert!(check(&[ExecSessionEntry {
            stdin: 0,
            ..running
        }])
        .is_err());
        assert!(check(&[ExecSessionEntry {
            to_stderr: BlobRef { off: 2, len: 5 },
            ..running
        }])
        .is_err());
    }

    #[test]
    fn host_sockets_are_named_by_handle_for_sockets_flagged_host() {
        let closed = |id: u64, flags: u32| InetSocketEntry {
            id,
            peer: 0,
            listener: 0,
            family: 2,
            proto: 6,
            state: inet_state::CLOSED,
            flags,
            shutdown: 0,
            backlog: 0,
            err: 0,
            sndbuf: 16_384,
            rcvbuf: 131_072,
            local: [0; 16],
            conn: [0; 16],
            remote: [0; 16],
            local_port: 0,
            remote_port: 0,
            linger: 0,
            opts: BlobRef::default(),
        };
        let check =
            |socks: &[InetSocketEntry], msgs: &[InetMsgEntry], hosts: &[HostSocketEntry]| {
                let mut v = Vec::new();
                let mut w = RecordWriter::new(&mut v, 2, b"x");
                w.section(&[ProcessEntry {
                    pid: 1,
                    ..Default::default()
                }]);
                w.section(&[FdStateEntry {
                    pid: 1,
                    fd: 3,
                    kind: fd_state::INET_SOCKET,
                    fd_flags: 0,
                    status_flags: 2,
                    aux: 0,
                    description: 1,
                    pos: 0,
                    object: 1,
                    path: BlobRef::default(),
                }]);
                w.section(socks);
                w.section(msgs);
                w.section(hosts);
                w.blob(b"x");
                w.finish();
                Record::parse(&v, (2, 2))
                    .expect("well formed")
                    .check(&BOUNDS)
                    .map_err(|e| match e {
                        RecordError::OutOfBounds(what, _) => what,
                        _ => "other",
                    })
            };
        let host = inet_flags::HOST;
        let h = |socket: u64, handle: u64| HostSocketEntry { socket, handle };
        assert_eq!(section::HOST_SOCKET, 41);
        assert_eq!(
            check(&[closed(1, host), closed(2, 0)], &[], &[h(1, 7)]),
            Ok(())
        );
        assert_eq!(
            check(&[closed(1, host | inet_flags::LINGER)], &[], &[h(1, 7)]),
            Ok(()),
            "SO_LINGER lives in the options holder"
        );
        // A flagged socket without its host socket; one for a socket not flagged, or with
        // handle 0; out of order.
        for (socks, hosts) in [
            (&[closed(1, host)][..], &[][..]),
            (&[closed(1, 0)][..], &[h(1, 7)][..]),
            (&[closed(1, host)][..], &[h(1, 0)][..]),
            (
                &[closed(1, host), closed(2, host)][..],
                &[h(2, 8), h(1, 7)][..],
            ),
        ] {
            assert!(check(socks, &[], hosts).is_err(), "{socks:?} {hosts:?}");
        }
        // A host socket's entry holds only its options: not bound, not connected, nothing
        // queued.
        let bound = InetSocketEntry {
            local: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1],
            local_port: 80,
            ..closed(1, host | inet_flags::BOUND)
        };
        assert!(check(&[bound], &[], &[h(1, 7)]).is_err());
        let queued = InetMsgEntry {
            socket: 1,
            from: [0; 16],
            from_port: 0,
            _reserved: [0; 6],
            data: BlobRef { off: 0, len: 1 },
        };
        assert!(check(&[closed(1, host)], &[queued], &[h(1, 7)]).is_err());
    }

    #[test]
    fn carried_inet_sockets_name_both_ends_and_their_queues() {
        // Blob: "hello", then options (IPPROTO_TCP, TCP_NODELAY, 4 bytes).
        let mut blob = b"hello".to_vec();
        let opts_at = blob.len() as u32;
        blob.extend_from_slice(&6i32.to_le_bytes());
        blob.extend_from_slice(&1i32.to_le_bytes());
        blob.extend_from_slice(&4u32.to_le_bytes());
        blob.extend_from_slice(&1i32.to_le_bytes());
        let rec = |fds: &[FdStateEntry], socks: &[InetSocketEntry], msgs: &[InetMsgEntry]| {
            let mut v = Vec::new();
            let mut w = RecordWriter::new(&mut v, 2, b"x");
            w.section(&[ProcessEntry {
                pid: 1,
                ..Default::default()
            }]);
            w.section(fds);
            w.section(socks);
            w.section(msgs);
            w.blob(&blob);
            w.finish();
            v
        };
        let fd = |fd: i32, object: u64| FdStateEntry {
            pid: 1,
            fd,
            kind: fd_state::INET_SOCKET,
            fd_flags: 0,
            status_flags: 2,
            aux: 0,
            description: fd as u64 + 1,
            pos: 0,
            object,
            path: BlobRef::default(),
        };
        let lo = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1];
        let est = inet_state::ESTABLISHED;
        let bound = inet_flags::BOUND;
        // Socket `id` at 127.0.0.1:`port`, connected to 127.0.0.1:`rport` (socket `peer`).
        let tcp = |id: u64, peer: u64, port: u16, rport: u16| InetSocketEntry {
            id,
            peer,
            listener: 0,
            family: 2,
            proto: 6,
            state: est,
            flags: bound,
            shutdown: 0,
            backlog: 0,
            err: 0,
            sndbuf: 16_384,
            rcvbuf: 131_072,
            local: lo,
            conn: lo,
            remote: lo,
            local_port: port,
            remote_port: rport,
            linger: 0,
            opts: BlobRef::default(),
        };
        let udp = |id: u64| InetSocketEntry {
            proto: 17,
            state: inet_state::CLOSED,
            conn: [0; 16],
            remote: [0; 16],
            remote_port: 0,
            ..tcp(id, 0, 5000 + id as u16, 0)
        };
        let msg = |socket: u64, len: u32| InetMsgEntry {
            socket,
            from: [0; 16],
            from_port: 0,
            _reserved: [0; 6],
            data: BlobRef { off: 0, len },
        };
        let check = |v: &[u8]| {
            Record::parse(v, (2, 2))
                .expect("well formed")
                .check(&BOUNDS)
        };
        let listener = InetSocketEntry {
            state: inet_state::LISTENING,
            backlog: 5,
            conn: [0; 16],
            remote: [0; 16],
            remote_port: 0,
            opts: BlobRef {
                off: opts_at,
                len: 16,
            },
            ..tcp(3, 0, 8000, 0)
        };
        let embryo = InetSocketEntry {
            listener: 3,
            ..tcp(5, 4, 8000, 40000)
        };
        let socks = [
            tcp(1, 2, 40001, 40002),
            InetSocketEntry {
                shutdown: 2,
                ..tcp(2, 1, 40002, 40001)
            },
            listener,
            tcp(4, 5, 40000, 8000),
            embryo,
            udp(6),
        ];
        let dgram = InetMsgEntry {
            from: lo,
            from_port: 5006,
            ..msg(6, 3)
        };
        let fds = [fd(0, 1), fd(1, 2), fd(2, 3), fd(3, 4), fd(4, 6)];
        let ok = rec(&fds, &socks, &[msg(1, 5), msg(5, 1), dgram, dgram]);
        check(&ok).expect("in bounds");
        let r = Record::parse(&ok, (2, 2)).expect("valid");
        let s: Vec<InetSocketEntry> = r.entries().collect();
        assert_eq!(s, socks);
        let m: Vec<InetMsgEntry> = r.entries().collect();
        assert_eq!(r.blob_bytes(m[0].data), Some(&b"hello"[..]));
        assert_eq!(m[2].from_port, 5006);
        // A version 1 record has no inet socket sections.
        let mut v1 = Vec::new();
        let mut w = RecordWriter::new(&mut v1, 1, b"x");
        w.section(&socks);
        w.finish();
        assert_eq!(
            Record::parse(&v1, (1, 2)).err(),
            Some(RecordError::BadSection(section::INET_SOCKET))
        );
        let with = |e: InetSocketEntry| rec(&[], &[e], &[]);
        for (v, what) in [
            (rec(&[fd(0, 9)], &socks, &[]), "unknown inet socket"),
            (rec(&[fd(0, 5)], &socks, &[]), "unknown inet socket"),
            (rec(&[], &[udp(2), udp(1)], &[]), "inet socket id"),
            (
                rec(&[], &[tcp(1, 2, 1, 2), tcp(2, 1, 2, 3)], &[]),
                "crossed addresses",
            ),
            (rec(&[], &[tcp(1, 7, 1, 2)], &[]), "inet socket peer"),
            (with(InetSocketEntry { proto: 1, ..udp(1) }), "protocol"),
            (
                with(InetSocketEntry {
                    family: 1,
                    ..udp(1)
                }),
                "family",
            ),
            (
                with(InetSocketEntry {
                    state: est,
                    ..udp(1)
                }),
                "state",
            ),
            (
                with(InetSocketEntry {
                    flags: 0,
                    ..tcp(1, 0, 1, 2)
                }),
                "state",
            ),
            (
                with(InetSocketEntry {
                    flags: bound | inet_flags::CONNECTED_UDP,
                    ..tcp(1, 0, 1, 2)
                }),
                "flags",
            ),
            (
                with(InetSocketEntry {
                    flags: bound | inet_flags::RESET,
                    ..udp(1)
                }),
                "flags",
            ),
            (
                with(InetSocketEntry {
                    shutdown: 4,
                    ..udp(1)
                }),
                "shutdown",
            ),
            (
                with(InetSocketEntry {
                    rcvbuf: u32::MAX,
                    ..udp(1)
                }),
                "buffers",
            ),
            (with(InetSocketEntry { conn: lo, ..udp(1) }), "IPv4-mapped"),
            (
                with(InetSocketEntry {
                    local: [0; 16],
                    ..udp(1)
                }),
                "IPv4-mapped",
            ),
            (
                rec(
                    &[],
                    &[
                        InetSocketEntry {
                            listener: 2,
                            ..tcp(1, 0, 1, 2)
                        },
                        udp(2),
                    ],
                    &[],
                ),
                "listener",
            ),
            (
                rec(
                    &[],
                    &[
                        listener,
                        InetSocketEntry {
                            listener: 3,
                            ..tcp(4, 0, 8001, 2)
                        },
                    ],
                    &[],
                ),
                "listener",
            ),
            (
                with(InetSocketEntry {
                    opts: BlobRef {
                        off: opts_at,
                        len: 15,
                    },
                    ..udp(1)
                }),
                "inet socket options",
            ),
            (rec(&[], &socks, &[msg(5, 1), msg(1, 1)]), "socket order"),
            (rec(&[], &socks, &[msg(3, 1)]), "listener"),
            (rec(&[], &socks, &[msg(8, 1)]), "unknown inet socket"),
            (rec(&[], &socks, &[msg(1, 500)]), "bytes"),
            (rec(&[], &socks, &[msg(1, 1), msg(1, 1)]), "bytes"),
            (
                rec(
                    &[],
                    &socks,
                    &[InetMsgEntry {
                        from_port: 1,
                        ..msg(1, 1)
                    }],
                ),
                "sender",
            ),
            (
                rec(
                    &[],
                    &socks,
                    &[InetMsgEntry {
                        _reserved: [1, 0, 0, 0, 0, 0],
                        ..msg(6, 1)
                    }],
                ),
                "sender",
            ),
        ] {
            match check(&v) {
                Err(RecordError::OutOfBounds(w, _)) => assert!(w.contains(what), "{what}: {w}"),
                e => panic!("{what}: {e:?}"),
            }
        }
    }

    #[test]
    fn carried_descriptors_name_their_pipes() {
        let rec = |fds: &[FdStateEntry], pipes: &[PipeEntry]| {
            let mut v = Vec::new();
            let mut w = RecordWriter::new(&mut v, 2, b"x");
            w.section(&[ProcessEntry {
                pid: 1,
                ..Default::default()
            }]);
            w.section(fds);
            w.section(pipes);
            w.blob(b"/out/c");
            w.finish();
            v
        };
        let fd = |fd: i32, kind: u32, object: u64| FdStateEntry {
            pid: 1,
            fd,
            kind,
            fd_flags: 0,
            status_flags: 0,
            aux: 0,
            description: u64::from(fd.unsigned_abs()) + 1,
            pos: 0,
            object,
            path: BlobRef::default(),
        };
        let pipe = |id: u64, len: u32| PipeEntry {
            id,
            data: BlobRef { off: 0, len },
            _reserved: 0,
        };
        let check = |v: &[u8]| {
            Record::parse(v, (2, 2))
                .expect("well formed")
                .check(&BOUNDS)
        };
        let file = FdStateEntry {
            path: BlobRef { off: 0, len: 6 },
            pos: 12,
            ..fd(3, fd_state::VOLUME_FILE, 0)
        };
        let ok = rec(
            &[
                fd(0, fd_state::PIPE_READ, 7),
                fd(1, fd_state::PIPE_WRITE, 7),
                fd(2, fd_state::CONSOLE, 2),
                file,
            ],
            &[pipe(5, 0), pipe(7, 3)],
        );
        check(&ok).expect("in bounds");
        let r = Record::parse(&ok, (2, 2)).expect("valid");
        let f: Vec<FdStateEntry> = r.entries().collect();
        assert_eq!(r.blob_bytes(f[3].path), Some(&b"/out/c"[..]));
        let p: Vec<PipeEntry> = r.entries().collect();
        assert_eq!(r.blob_bytes(p[1].data), Some(&b"/ou"[..]));
        for (v, what) in [
            (
                rec(&[fd(0, fd_state::PIPE_READ, 8)], &[pipe(7, 0)]),
                "unknown pipe",
            ),
            (
                rec(&[fd(0, fd_state::PIPE_READ, 7)], &[pipe(7, 7)]),
                "pipe contents",
            ),
            (rec(&[], &[pipe(7, 0), pipe(7, 0)]), "pipe id"),
            (rec(&[fd(1, 5, 0), fd(0, 5, 0)], &[]), "order"),
            (rec(&[fd(-1, 5, 0)], &[]), "descriptor"),
            (rec(&[fd(0, 99, 0)], &[]), "kind"),
            (
                rec(
                    &[FdStateEntry {
                        path: BlobRef { off: 4, len: 6 },
                        ..file
                    }],
                    &[],
                ),
                "path",
            ),
        ] {
            match check(&v) {
                Err(RecordError::OutOfBounds(w, _)) => assert!(w.contains(what), "{w}"),
                e => panic!("{what}: {e:?}"),
            }
        }
    }

    #[test]
    fn timers_round_trip_and_are_checked() {
        // Process 1 (threads 1 and 2), process 2 a zombie.
        let rec = |timers: &[TimerEntry]| {
            let mut v = Vec::new();
            let mut w = RecordWriter::new(&mut v, 2, b"x");
            w.section(&[
                ProcessEntry {
                    pid: 1,
                    nr_threads: 2,
                    ..Default::default()
                },
                ProcessEntry {
                    pid: 2,
                    ppid: 1,
                    flags: process_flags::ZOMBIE,
                    ..Default::default()
                },
            ]);
            w.section(&[
                ThreadEntry {
                    tid: 1,
                    pid: 1,
                    ..Default::default()
                },
                ThreadEntry {
                    tid: 3,
                    pid: 1,
                    ..Default::default()
                },
            ]);
            w.section(timers);
            w.finish();
            v
        };
        let real = TimerEntry {
            pid: 1,
            kind: timer_kind::ITIMER_REAL,
            id: 0,
            clock: timer_clock::REALTIME,
            notify: timer_notify::SIGNAL,
            signo: 14,
            tid: 0,
            overrun: 0,
            value: 0,
            next: 3_000_000_000,
            interval: 0,
            _reserved: 0,
        };
        let prof = TimerEntry {
            kind: timer_kind::ITIMER_PROF,
            clock: timer_clock::PROCESS_CPU,
            signo: 27,
            next: 5_000,
            interval: 10_000,
            ..real
        };
        let posix = |id: i32| TimerEntry {
            kind: timer_kind::POSIX,
            id,
            clock: timer_clock::MONOTONIC,
            notify: timer_notify::THREAD,
            signo: 35,
            tid: 3,
            overrun: 4,
            value: 0xdead_beef,
            ..real
        };
        let silent = TimerEntry {
            notify: timer_notify::NONE,
            signo: 0,
            tid: 0,
            next: 0,
            interval: 0,
            ..posix(9)
        };
        let ok = rec(&[real, prof, posix(0), posix(7), silent]);
        let r = Record::parse(&ok, (2, 2)).expect("well formed");
        r.check(&BOUNDS).expect("in bounds");
        let t: Vec<TimerEntry> = r.entries().collect();
        assert_eq!(t, [real, prof, posix(0), posix(7), silent]);
        // Version 1 has no timers.
        let mut v1 = Vec::new();
        let mut w = RecordWriter::new(&mut v1, 1, b"x");
        w.section(&[real]);
        w.finish();
        assert_eq!(
            Record::parse(&v1, (1, 2)).map(|_| ()),
            Err(RecordError::BadSection(section::TIMER))
        );
        for (timers, what) in [
            (std::vec![posix(7), posix(0)], "order"),
            (std::vec![posix(7), posix(7)], "unique"),
            (std::vec![TimerEntry { pid: 2, ..real }], "no live process"),
            (std::vec![TimerEntry { pid: 5, ..real }], "no live process"),
            (std::vec![TimerEntry { signo: 10, ..real }], "signal"),
            (std::vec![TimerEntry { id: 1, ..real }], "signal"),
            (
                std::vec![TimerEntry {
                    clock: timer_clock::MONOTONIC,
                    ..real
                }],
                "clock",
            ),
            (
                std::vec![TimerEntry {
                    signo: 65,
                    ..posix(0)
                }],
                "signal",
            ),
            (
                std::vec![TimerEntry {
                    signo: 0,
                    ..posix(0)
                }],
                "signal",
            ),
            (std::vec![TimerEntry { tid: 2, ..posix(0) }], "thread"),
            (
                std::vec![TimerEntry {
                    clock: 9,
                    ..posix(0)
                }],
                "clock",
            ),
            (
                std::vec![TimerEntry {
                    notify: 3,
                    ..posix(0)
                }],
                "notification",
            ),
            (std::vec![TimerEntry { kind: 5, ..real }], "kind"),
            (std::vec![TimerEntry { id: -1, ..posix(0) }], "kind"),
            (
                std::vec![TimerEntry {
                    overrun: -1,
                    ..posix(0)
                }],
                "overrun",
            ),
            (
                std::vec![TimerEntry {
                    _reserved: 1,
                    ..real
                }],
                "overrun",
            ),
            (
                std::vec![TimerEntry {
                    next: u64::MAX,
                    ..real
                }],
                "expiry",
            ),
            (
                std::vec![TimerEntry {
                    interval: 1 << 63,
                    ..real
                }],
                "expiry",
            ),
            (
                std::vec![TimerEntry {
                    interval: 5,
                    ..silent
                }],
                "expiry",
            ),
        ] {
            match Record::parse(&rec(&timers), (2, 2))
                .expect("well formed")
                .check(&BOUNDS)
            {
                Err(RecordError::OutOfBounds(w, _)) => assert!(w.contains(what), "{what}: {w}"),
                e => panic!("{what}: {e:?}"),
            }
        }
        let many: std::vec::Vec<TimerEntry> =
            (0..=MAX_TIMERS_PER_PROCESS as i32).map(posix).collect();
        assert!(matches!(
            Record::parse(&rec(&many), (2, 2)).expect("well formed").check(&BOUNDS),
            Err(RecordError::OutOfBounds(w, _)) if w.contains("timers of one process")
        ));
    }

    #[test]
    fn a_section_twice_is_refused_in_version_2() {
        let mut v = Vec::new();
        let mut w = RecordWriter::new(&mut v, 2, b"x");
        let p = ProcessEntry {
            pid: 1,
            ..Default::default()
        };
        w.section(&[p]);
        w.section(&[ProcessEntry { pid: 2, ..p }]);
        w.finish();
        assert_eq!(
            Record::parse(&v, (2, 2)).err(),
            Some(RecordError::BadSection(section::PROCESS))
        );
        // Process ids out of order are refused by the check.
        let mut v = Vec::new();
        let mut w = RecordWriter::new(&mut v, 2, b"x");
        w.section(&[ProcessEntry { pid: 2, ..p }, p]);
        w.finish();
        let r = Record::parse(&v, (2, 2)).expect("well formed");
        assert!(matches!(
            r.check(&BOUNDS),
            Err(RecordError::OutOfBounds(..))
        ));
    }

    #[test]
    fn versions_meet_or_not() {
        let a = HandoverNote::new("a");
        let mut b = HandoverNote::new("b");
        assert_eq!(a.common_version(&b), Some(RECORD_VERSION));
        b.max_version = 1;
        assert_eq!(a.common_version(&b), Some(1), "an older adopter: version 1");
        b.min_version = RECORD_VERSION + 1;
        b.max_version = RECORD_VERSION + 1;
        assert_eq!(a.common_version(&b), None);
        b.min_version = 0;
        b.max_version = 0;
        assert_eq!(a.common_version(&b), None);
        assert_eq!(HandoverNote::new("6.1.0-pvmux").release(), b"6.1.0-pvmux");
    }
}
