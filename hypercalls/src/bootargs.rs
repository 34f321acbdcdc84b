//! The boot arguments: what the host asks the guest kernel to do, as a typed, versioned,
//! length-checked structure in guest pages of their own, at [`crate::BootInfo::boot_args_gpa`]
//! (docs/ABI.md §5.1).
//!
//! They replace a kernel command line of text words. The host builds them (from `pvmux run`'s
//! options, its `--cmdline` words and the program to run) with [`Encoder`] or
//! [`BootArgsBuf::new`]; the kernel decodes them once at boot with [`BootArgs::decode`] into
//! one [`BootArgs`] value that everything reads. Both sides use the functions of this module,
//! so the layout lives in one place. [`words`] is the text form users type
//! (`pvmux run --cmdline "exit=3"`), parsed by the host only.
//!
//! ```text
//! BootArgsHeader (48 bytes)
//! canary        canary_len bytes of UTF-8 (hostile cases only)
//! commands      nr_commands records: RecordHeader { kind, len }, then len payload bytes
//! argv          nr_args records: u16 length, then that many bytes (any bytes, empty allowed)
//! ```
//!
//! Everything is little endian and unaligned (records follow each other without padding);
//! `total_len` is the exact length. The decoder is total: any byte string gives either a
//! [`BootArgs`] or a [`DecodeError`], in time linear in its length, without allocating.

use core::fmt;
use core::mem::{offset_of, size_of};
use core::num::NonZeroU16;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub mod words;

/// "PVBA" in little endian: the first four bytes of the boot arguments.
pub const BOOT_ARGS_MAGIC: u32 = u32::from_le_bytes(*b"PVBA");
/// Version of the boot-argument layout. Bumped on any incompatible change.
pub const BOOT_ARGS_VERSION: u16 = 1;
/// Largest encoded size in bytes: 64 KiB (ABI version 4 had 2 KiB inside `BootInfo`). The
/// encoding lives in guest pages of its own, so the ABI could take more; the bound is the
/// host's [`BootArgsBuf`], an inline buffer (this crate does not allocate), which host code
/// moves on its stack.
pub const BOOT_ARGS_MAX: usize = 64 << 10;

/// The fixed start of the boot arguments: the options and the sizes of what follows.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct BootArgsHeader {
    /// [`BOOT_ARGS_MAGIC`].
    pub magic: u32,
    /// [`BOOT_ARGS_VERSION`].
    pub version: u16,
    /// `size_of::<BootArgsHeader>()` (48).
    pub header_len: u16,
    /// Length of the whole encoding, header included.
    pub total_len: u32,
    /// Option bits, [`flag`].
    pub flags: u32,
    /// Host pid for hostile cases to attack, if [`flag::HOST_PID`]; else 0.
    pub host_pid: u64,
    /// Seed for randomised hostile cases, if [`flag::SEED`]; else 0.
    pub seed: u64,
    /// Columns of the stdout terminal; 0 (with `console_rows` 0) = not given.
    pub console_cols: u16,
    /// Rows of the stdout terminal; 0 (with `console_cols` 0) = not given.
    pub console_rows: u16,
    /// Which host streams are terminals, [`tty`] bits.
    pub terminals: u8,
    /// Zero.
    pub _reserved0: u8,
    /// Length of the canary path after the header (0 = none).
    pub canary_len: u16,
    /// Number of command records.
    pub nr_commands: u16,
    /// Number of init argument records (0 = no init program).
    pub nr_args: u16,
    /// Zero.
    pub _reserved1: u32,
}

/// Size of [`BootArgsHeader`].
pub const HEADER_LEN: usize = size_of::<BootArgsHeader>();

const _: () = assert!(HEADER_LEN == 48);
const _: () = assert!(offset_of!(BootArgsHeader, flags) == 12);
const _: () = assert!(offset_of!(BootArgsHeader, host_pid) == 16);
const _: () = assert!(offset_of!(BootArgsHeader, seed) == 24);
const _: () = assert!(offset_of!(BootArgsHeader, console_cols) == 32);
const _: () = assert!(offset_of!(BootArgsHeader, terminals) == 36);
const _: () = assert!(offset_of!(BootArgsHeader, canary_len) == 38);
const _: () = assert!(offset_of!(BootArgsHeader, nr_commands) == 40);
const _: () = assert!(offset_of!(BootArgsHeader, nr_args) == 42);

/// The header of one command record.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RecordHeader {
    /// A [`command`] kind.
    pub kind: u16,
    /// Length of the payload that follows.
    pub len: u16,
}

/// Size of [`RecordHeader`].
pub const RECORD_HEADER_LEN: usize = size_of::<RecordHeader>();
const _: () = assert!(RECORD_HEADER_LEN == 4);

/// [`BootArgsHeader::flags`] bits.
pub mod flag {
    /// Report the system calls the kernel does not implement when init ends.
    pub const SYSCALL_REPORT: u32 = 1 << 0;
    /// No start-up banner on the kernel log.
    pub const QUIET: u32 = 1 << 1;
    /// Show the host's directory share (`--rootfs`) as the root filesystem.
    pub const HOSTFS: u32 = 1 << 2;
    /// Fewer repetitions for the in-guest benchmarks.
    pub const BENCH_QUICK: u32 = 1 << 3;
    /// [`super::BootArgsHeader::host_pid`] is given.
    pub const HOST_PID: u32 = 1 << 4;
    /// [`super::BootArgsHeader::seed`] is given.
    pub const SEED: u32 = 1 << 5;
    /// Every bit this version defines; others must be zero.
    pub const ALL: u32 = (1 << 6) - 1;
}

/// [`BootArgsHeader::terminals`] bits: which of the host's streams are terminals.
pub mod tty {
    /// Standard input.
    pub const STDIN: u8 = 1 << 0;
    /// Standard output.
    pub const STDOUT: u8 = 1 << 1;
    /// Standard error.
    pub const STDERR: u8 = 1 << 2;
    /// Every bit this version defines; others must be zero.
    pub const ALL: u8 = STDIN | STDOUT | STDERR;
}

/// [`RecordHeader::kind`] values and their payloads.
pub mod command {
    /// Run the kernel self-tests and exit with the number of failures. No payload.
    pub const SELFTEST: u16 = 1;
    /// Check every filesystem operation and exit with the number of failures. No payload.
    pub const FS_SELFTEST: u16 = 2;
    /// Shut down with an exit code: payload u64.
    pub const EXIT: u16 = 3;
    /// Sleep, then go on with the next command: payload u64 milliseconds.
    pub const SLEEP: u16 = 4;
    /// Panic on purpose. No payload.
    pub const PANIC: u16 = 5;
    /// Execute raw Linux system calls and show they are trapped. No payload.
    pub const SYSCALL: u16 = 6;
    /// Make exception delivery itself fault. No payload.
    pub const CRASH_DOUBLE_FAULT: u16 = 7;
    /// Jump onto a `syscall` instruction inside stub code. No payload.
    pub const CRASH_STUB_SYSCALL: u16 = 8;
    /// Run in-guest benchmarks: payload UTF-8 text, `all` or names separated by `,`.
    pub const BENCH: u16 = 9;
    /// Run one adversarial case: payload UTF-8 text, the case's name.
    pub const HOSTILE: u16 = 10;
    /// List a directory of the in-guest filesystem: payload UTF-8 text, the path.
    pub const LS: u16 = 11;
    /// Print a file of the in-guest filesystem: payload UTF-8 text, the path.
    pub const CAT: u16 = 12;
    /// One variable of the init program's environment: payload `NAME=VALUE` bytes (see
    /// [`super::env_entry_ok`]). Not run: the entries, in order, are init's whole envp.
    pub const ENV: u16 = 13;
    /// The init program's working directory: payload an absolute path (bytes, no NUL). Not
    /// run; the last one counts.
    pub const WORKDIR: u16 = 14;
    /// One resource limit of the init program (`pvmux run --ulimit`): payload 20 bytes, u32
    /// resource (Linux's `RLIMIT_*` number, below [`super::RLIMIT_RESOURCES`]), u64 soft and
    /// u64 hard limit (`u64::MAX` = unlimited; soft <= hard). Not run; the last one of a
    /// resource counts.
    pub const RLIMIT: u16 = 15;
    /// The init program's user and group ids (`pvmux run --user`): payload 8 bytes, u32 uid
    /// and u32 gid (real, effective and saved ids alike; the supplementary groups are
    /// [`GROUPS`]). Not run; the last one counts.
    pub const USER: u16 = 16;
    /// A writable host directory to mount (`pvmux run --volume`): payload a
    /// [`super::VolumeMount`] — u32 volume id, u32 flags ([`super::volume_flag`]), then the
    /// guest directory, an absolute path (bytes, no NUL). Not run: the kernel mounts every
    /// volume when it sets up its filesystem.
    pub const VOLUME: u16 = 17;
    /// The init program's supplementary groups (`pvmux run --user NAME`, `--group-add`):
    /// payload a [`super::Gids`] list, u32 group ids in strictly ascending order, at most
    /// [`super::GROUPS_MAX`] (ABI v6). Not run; the last one counts.
    pub const GROUPS: u16 = 19;
    /// The guest's host name (`uname`'s nodename, `/proc/sys/kernel/hostname`; an OCI
    /// container's `hostname`): payload 1..=64 bytes, no NUL ([`super::hostname_ok`]). Not
    /// run; the last one counts.
    pub const HOSTNAME: u16 = 20;
    /// The most guest tasks (processes and threads) at once (an OCI container's
    /// `linux.resources.pids.limit`): payload u32, at least 1. `fork`/`clone` beyond it fail
    /// with `EAGAIN`. Not run; the last one counts.
    pub const TASK_LIMIT: u16 = 21;
    /// The init program's capability sets (`pvmux run --cap-drop`/`--cap-add`, an OCI
    /// container's `process.capabilities`): payload 40 bytes, five u64 masks — effective,
    /// permitted, inheritable, bounding, ambient — of bits `0..=`[`super::CAP_LAST_CAP`]
    /// ([`super::CapSets`], ABI v6). Without it init holds every capability (as root). Not
    /// run; the last one counts.
    pub const CAPS: u16 = 24;
    /// Run the tenant's programs in the kernel sandbox itself (`pvmux run --user-isolation
    /// none`, the *trusted in-process mode*, ABI v6): init's address space, and what it
    /// `execve`s, runs on the vCPU threads of the kernel sandbox instead of in a user sandbox
    /// (docs/ARCHITECTURE.md, "Trusted in-process mode"). No payload. Not run.
    pub const USER_ISOLATION_NONE: u16 = 27;
    /// Do not rewrite system-call sites of guest programs (`pvmux run --no-patch`; ABI v6):
    /// every guest system call traps. No payload. Not run.
    pub const NO_PATCH: u16 = 26;
    /// Do not map `--rootfs` programs and libraries from host file windows (`pvmux run
    /// --no-file-windows`; [`crate::window`]): the guest kernel copies them into guest
    /// memory. No payload. Not run.
    pub const NO_FILE_WINDOWS: u16 = 35;
    /// A channel between kernels (`pvmux run --channel NAME`; ABI v6): payload the name,
    /// [`crate::channel::name_ok`]. The `i`-th `CHANNEL` record is channel index `i` of the
    /// channel hypercalls; the guest shows it as `/dev/pvmux/NAME`. Not run.
    pub const CHANNEL: u16 = 28;
    /// Adopt the hand-over record the host offers (`pvmux upgrade`; docs/ABI.md
    /// §handover): payload a [`crate::handover::AdoptArgs`] (32 bytes). The kernel fetches
    /// the record (`HandoverFetch`), checks it, reports its verdict (`HandoverAdopted`) and,
    /// with [`crate::handover::adopt_flags::CHECK`], shuts down. Runs before every other
    /// command.
    pub const ADOPT: u16 = 31;
    /// Refuse every hand-over record offered ([`ADOPT`]): tests of the refusal path (word
    /// `adopt-refuse`, e.g. `pvmux upgrade --cmdline adopt-refuse`). No payload.
    pub const ADOPT_REFUSE: u16 = 32;
    /// Refuse a hand-over record offered for a real adoption (a switch), not the pre-flight's
    /// check ([`ADOPT`] with `CHECK`): tests of the host's fallback to the old kernel (word
    /// `adopt-refuse-switch`). No payload.
    pub const ADOPT_REFUSE_SWITCH: u16 = 33;
    /// Test kernel: from then on, a process whose last thread has ended waits this long
    /// before its exit goes on (its descriptors closed, its memory freed, its parent told):
    /// tests of the hand-over's freeze, which must wait for exits in flight (word
    /// `slow-exit=MS`). Payload u64 milliseconds.
    pub const SLOW_EXIT: u16 = 34;
}

/// The highest capability number the guest knows (Linux 6.1's `CAP_LAST_CAP`,
/// `CAP_CHECKPOINT_RESTORE`).
pub const CAP_LAST_CAP: u32 = 40;

/// Every capability: bits `0..=`[`CAP_LAST_CAP`].
pub const CAP_FULL_SET: u64 = (1 << (CAP_LAST_CAP + 1)) - 1;

/// A process's five capability sets ([`command::CAPS`]), each a mask of capability numbers
/// (bit `n` for capability `n`, Linux's numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CapSets {
    /// The capabilities checked.
    pub effective: u64,
    /// The capabilities the process may make effective.
    pub permitted: u64,
    /// The capabilities kept across `execve` for programs with file capabilities.
    pub inheritable: u64,
    /// The limit of what `execve` may grant.
    pub bounding: u64,
    /// The capabilities kept across `execve` of an unprivileged program.
    pub ambient: u64,
}

impl CapSets {
    /// Every capability in every set but the ambient one: root's sets on Linux.
    pub const FULL: Self = Self {
        effective: CAP_FULL_SET,
        permitted: CAP_FULL_SET,
        inheritable: 0,
        bounding: CAP_FULL_SET,
        ambient: 0,
    };

    /// Whether the sets are valid: no bit above [`CAP_LAST_CAP`]; the effective set within
    /// the permitted one, and the ambient set within both the permitted and inheritable ones
    /// (Linux's invariants; an OCI config that breaks them is refused by the host).
    pub const fn ok(&self) -> bool {
        let all = self.effective | self.permitted | self.inheritable | self.bounding | self.ambient;
        all & !CAP_FULL_SET == 0
            && self.effective & !self.permitted == 0
            && self.ambient & !(self.permitted & self.inheritable) == 0
    }

    /// The 40-byte payload.
    pub fn to_le_bytes(&self) -> [u8; 40] {
        let mut b = [0u8; 40];
        let sets = [
            self.effective,
            self.permitted,
            self.inheritable,
            self.bounding,
            self.ambient,
        ];
        for (chunk, v) in b.chunks_exact_mut(8).zip(sets) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Parses a 40-byte payload; `None` if its length is wrong or it is not [`Self::ok`].
    pub fn from_le_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 40 {
            return None;
        }
        let w = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[8 * i..8 * i + 8]);
            u64::from_le_bytes(x)
        };
        let c = Self {
            effective: w(0),
            permitted: w(1),
            inheritable: w(2),
            bounding: w(3),
            ambient: w(4),
        };
        c.ok().then_some(c)
    }
}

/// The longest host name ([`command::HOSTNAME`]), Linux's `HOST_NAME_MAX`.
pub const HOSTNAME_MAX: usize = 64;

/// Whether `name` is a valid [`Command::Hostname`]: 1..=[`HOSTNAME_MAX`] bytes, no NUL.
pub fn hostname_ok(name: &[u8]) -> bool {
    (1..=HOSTNAME_MAX).contains(&name.len()) && !name.contains(&0)
}

/// [`VolumeMount`] flag bits.
pub mod volume_flag {
    /// The volume is read-only: every change is `EROFS`.
    pub const READ_ONLY: u32 = 1 << 0;
    /// Every bit this version defines; others must be zero.
    pub const ALL: u32 = READ_ONLY;
}

/// Bytes of a `VOLUME` record's payload before the guest path.
pub const VOLUME_HEAD_LEN: usize = 8;

/// A volume to mount: the host's volume id, where in the guest and whether read-only
/// ([`Command::Volume`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeMount<'a> {
    /// The volume id `VolumeOp` takes (below `volume::MAX_VOLUMES`).
    pub id: u32,
    /// Refuse every change (`EROFS`).
    pub read_only: bool,
    /// The guest directory: an absolute path without NUL ([`workdir_ok`]).
    pub path: &'a [u8],
}

impl<'a> VolumeMount<'a> {
    /// Decodes a `VOLUME` payload; `None` if malformed (short, unknown flags, an id of
    /// `volume::MAX_VOLUMES` or more, a path that is not absolute or has a NUL).
    pub fn decode(payload: &'a [u8]) -> Option<Self> {
        let (head, path) = payload.split_at_checked(VOLUME_HEAD_LEN)?;
        let id = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let flags = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if flags & !volume_flag::ALL != 0 || id >= crate::volume::MAX_VOLUMES || !workdir_ok(path) {
            return None;
        }
        Some(Self {
            id,
            read_only: flags & volume_flag::READ_ONLY != 0,
            path,
        })
    }

    /// The payload's fixed head (id, flags).
    pub fn head(&self) -> [u8; VOLUME_HEAD_LEN] {
        let mut h = [0u8; VOLUME_HEAD_LEN];
        h[..4].copy_from_slice(&self.id.to_le_bytes());
        let flags = if self.read_only {
            volume_flag::READ_ONLY
        } else {
            0
        };
        h[4..].copy_from_slice(&flags.to_le_bytes());
        h
    }

    /// Whether the encoder accepts it.
    pub fn ok(&self) -> bool {
        self.id < crate::volume::MAX_VOLUMES && workdir_ok(self.path)
    }
}

/// The most supplementary groups a [`command::GROUPS`] record carries: 4096, well below
/// Linux's `NGROUPS_MAX` (65536, the guest's `setgroups` limit) and within one record's
/// 65535 payload bytes. Users are in a handful of groups; runc and podman have no smaller
/// limit than the kernel's.
pub const GROUPS_MAX: usize = 4096;

/// A list of supplementary group ids ([`Command::Groups`]): at most [`GROUPS_MAX`], strictly
/// ascending (sorted, no duplicates: the set Linux keeps, in the order `getgroups` returns
/// it), so each set has one encoding. Borrowed either from a record's payload (u32 little
/// endian each) or from the text form (`1,2,3`), both checked; it never allocates.
#[derive(Clone, Copy)]
pub struct Gids<'a>(GidSource<'a>);

#[derive(Clone, Copy)]
enum GidSource<'a> {
    /// u32 little endian each.
    Le(&'a [u8]),
    /// Decimal ids separated by `,` (empty: none).
    Text(&'a str),
}

/// The ids of a [`Gids`], in order.
#[derive(Clone, Debug)]
pub struct GidIter<'a>(GidIterSource<'a>);

#[derive(Clone, Debug)]
enum GidIterSource<'a> {
    Le(core::slice::ChunksExact<'a, u8>),
    Text(Option<core::str::Split<'a, char>>),
}

impl Iterator for GidIter<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        match &mut self.0 {
            GidIterSource::Le(c) => c
                .next()
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            // Checked when the `Gids` was made: every part is a number.
            GidIterSource::Text(s) => s.as_mut()?.next().and_then(|p| p.parse().ok()),
        }
    }
}

/// Whether `ids` is a valid list: at most [`GROUPS_MAX`], strictly ascending.
fn gids_ok(ids: impl Iterator<Item = Option<u32>>) -> bool {
    let mut last: Option<u32> = None;
    let mut n = 0;
    for id in ids {
        let Some(id) = id else { return false };
        n += 1;
        if n > GROUPS_MAX || last.is_some_and(|l| l >= id) {
            return false;
        }
        last = Some(id);
    }
    true
}

impl<'a> Gids<'a> {
    /// The list in a record's payload (u32 little endian each); `None` if its length is not
    /// a multiple of 4, it has more than [`GROUPS_MAX`] ids, or they are not strictly
    /// ascending.
    pub fn from_le_bytes(payload: &'a [u8]) -> Option<Self> {
        if !payload.len().is_multiple_of(4) {
            return None;
        }
        let g = Self(GidSource::Le(payload));
        gids_ok(g.iter().map(Some)).then_some(g)
    }

    /// The list in text form, decimal ids separated by `,` (empty: none); `None` if one is
    /// not a number or the list breaks the rules of [`Gids::from_le_bytes`].
    pub fn from_text(text: &'a str) -> Option<Self> {
        let ok = text.is_empty()
            || gids_ok(text.split(',').map(|p| {
                p.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| p.parse().ok())
                    .flatten()
            }));
        ok.then_some(Self(GidSource::Text(text)))
    }

    /// The ids, ascending.
    pub fn iter(&self) -> GidIter<'a> {
        GidIter(match self.0 {
            GidSource::Le(b) => GidIterSource::Le(b.chunks_exact(4)),
            GidSource::Text("") => GidIterSource::Text(None),
            GidSource::Text(t) => GidIterSource::Text(Some(t.split(','))),
        })
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        match self.0 {
            GidSource::Le(b) => b.len() / 4,
            GidSource::Text(_) => self.iter().count(),
        }
    }

    /// No ids.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PartialEq for Gids<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Gids<'_> {}

impl fmt::Debug for Gids<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl fmt::Display for Gids<'_> {
    /// The text form: `1,2,3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{g}")?;
        }
        Ok(())
    }
}

/// Number of Linux resource limits (`RLIMIT_NLIMITS`): [`Command::Rlimit`]'s resource is
/// below it.
pub const RLIMIT_RESOURCES: u32 = 16;

/// Whether `entry` is a valid environment entry for [`Command::Env`]: `NAME=VALUE` with a
/// non-empty `NAME` without whitespace (`=` ends it), and no NUL byte anywhere.
pub fn env_entry_ok(entry: &[u8]) -> bool {
    match entry.iter().position(|&b| b == b'=') {
        Some(eq) if eq > 0 => {
            !entry.contains(&0) && !entry[..eq].iter().any(|b| b.is_ascii_whitespace())
        }
        _ => false,
    }
}

/// Whether `path` is a valid [`Command::Workdir`]: absolute, without a NUL byte.
pub fn workdir_ok(path: &[u8]) -> bool {
    path.first() == Some(&b'/') && !path.contains(&0)
}

/// Which of the host's standard streams are terminals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Terminals {
    /// Standard input is a terminal.
    pub stdin: bool,
    /// Standard output is a terminal.
    pub stdout: bool,
    /// Standard error is a terminal.
    pub stderr: bool,
}

impl Terminals {
    /// The [`tty`] bits.
    pub fn bits(self) -> u8 {
        let bit = |on: bool, bit: u8| if on { bit } else { 0 };
        bit(self.stdin, tty::STDIN) | bit(self.stdout, tty::STDOUT) | bit(self.stderr, tty::STDERR)
    }

    /// Decodes [`tty`] bits; `None` if an undefined bit is set.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        if bits & !tty::ALL != 0 {
            return None;
        }
        Some(Self {
            stdin: bits & tty::STDIN != 0,
            stdout: bits & tty::STDOUT != 0,
            stderr: bits & tty::STDERR != 0,
        })
    }
}

/// The size of the stdout terminal in character cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleSize {
    /// Columns.
    pub cols: NonZeroU16,
    /// Rows.
    pub rows: NonZeroU16,
}

impl ConsoleSize {
    /// `cols` x `rows`; `None` if either is 0.
    pub const fn new(cols: u16, rows: u16) -> Option<Self> {
        match (NonZeroU16::new(cols), NonZeroU16::new(rows)) {
            (Some(cols), Some(rows)) => Some(Self { cols, rows }),
            _ => None,
        }
    }
}

/// The options: settings that hold for the whole boot, wherever they were given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options<'a> {
    /// Which host streams are terminals (the console's fds 0, 1 and 2 follow them).
    pub terminals: Terminals,
    /// The stdout terminal's size, if known (the kernel assumes 80x24 otherwise).
    pub console_size: Option<ConsoleSize>,
    /// Report the unimplemented system calls programs made when init ends.
    pub syscall_report: bool,
    /// No start-up banner on the kernel log.
    pub quiet: bool,
    /// Show the host's directory share as the root filesystem.
    pub hostfs: bool,
    /// Fewer repetitions for [`Command::Bench`].
    pub bench_quick: bool,
    /// Hostile cases: the host pid to attack (the kernel uses 1 if not given).
    pub host_pid: Option<u64>,
    /// Hostile cases: the seed of randomised cases (each case has its own default).
    pub seed: Option<u64>,
    /// Hostile cases: a host file that must never be created.
    pub canary: Option<&'a str>,
}

/// One thing for the kernel to do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command<'a> {
    /// Run the self-tests and exit with the number of failures.
    Selftest,
    /// Check every filesystem operation and exit with the number of failures.
    FsSelftest,
    /// Shut down with this exit code.
    Exit(u64),
    /// Sleep this many milliseconds.
    Sleep(u64),
    /// Panic on purpose.
    Panic,
    /// Execute raw Linux system calls and show they are trapped.
    Syscall,
    /// Make exception delivery itself fault.
    CrashDoubleFault,
    /// Jump onto a `syscall` instruction inside stub code with crafted registers.
    CrashStubSyscall,
    /// Run the in-guest benchmarks named (`all`, or names separated by `,`).
    Bench(&'a str),
    /// Run the adversarial case named.
    Hostile(&'a str),
    /// List a directory of the in-guest filesystem.
    Ls(&'a str),
    /// Print a file of the in-guest filesystem.
    Cat(&'a str),
    /// A variable of the init program's environment, `NAME=VALUE` ([`env_entry_ok`]); not
    /// run: [`BootArgs::env`] lists them.
    Env(&'a [u8]),
    /// The init program's working directory, an absolute path ([`workdir_ok`]); not run:
    /// [`BootArgs::workdir`] gives the last one.
    Workdir(&'a [u8]),
    /// A writable host directory to mount ([`VolumeMount`]); not run:
    /// [`BootArgs::volumes`] lists them.
    Volume(VolumeMount<'a>),
    /// A resource limit of the init program; not run: [`BootArgs::rlimits`] lists them.
    Rlimit {
        /// Linux's `RLIMIT_*` number (below [`RLIMIT_RESOURCES`]).
        resource: u32,
        /// Soft limit (`u64::MAX`: unlimited).
        soft: u64,
        /// Hard limit (at least `soft`).
        hard: u64,
    },
    /// The init program's uid and gid; not run: [`BootArgs::user`] gives the last one.
    User {
        /// User id.
        uid: u32,
        /// Group id.
        gid: u32,
    },
    /// The init program's supplementary groups; not run: [`BootArgs::groups`] gives the
    /// last one.
    Groups(Gids<'a>),
    /// The guest's host name ([`hostname_ok`]); not run: [`BootArgs::hostname`] gives the
    /// last one.
    Hostname(&'a [u8]),
    /// The most guest tasks at once (at least 1); not run: [`BootArgs::task_limit`] gives
    /// the last one.
    TaskLimit(u32),
    /// The init program's capability sets ([`CapSets::ok`]); not run: [`BootArgs::caps`]
    /// gives the last one.
    Caps(CapSets),
    /// The trusted in-process mode ([`command::USER_ISOLATION_NONE`]); not run:
    /// [`BootArgs::user_isolation_none`] says whether it is present.
    UserIsolationNone,
    /// Leave guest programs' system-call sites as they are ([`command::NO_PATCH`]); not run:
    /// [`BootArgs::no_patch`] says whether there is one.
    NoPatch,
    /// Copy host programs into guest memory instead of mapping host file windows
    /// ([`command::NO_FILE_WINDOWS`]); not run: [`BootArgs::no_file_windows`].
    NoFileWindows,
    /// A channel between kernels ([`command::CHANNEL`]); not run: [`BootArgs::channels`]
    /// lists them in index order.
    Channel(&'a [u8]),
    /// Adopt the host's hand-over record ([`command::ADOPT`]); [`BootArgs::adopt`] gives
    /// the first one.
    Adopt(crate::handover::AdoptArgs),
    /// Refuse every hand-over record ([`command::ADOPT_REFUSE`]); not run:
    /// [`BootArgs::adopt_refuse`] says whether there is one.
    AdoptRefuse,
    /// Refuse a record offered for a switch, not for a check
    /// ([`command::ADOPT_REFUSE_SWITCH`]); not run: [`BootArgs::adopt_refuse_switch`].
    AdoptRefuseSwitch,
    /// Test kernel: each process's exit waits this many milliseconds after its last thread
    /// ends ([`command::SLOW_EXIT`]).
    SlowExit(u64),
}

impl Command<'_> {
    /// True for the commands only the test kernel (built with its `diagnostics` feature) has:
    /// self-tests, crash commands, benchmarks and hostile cases.
    pub const fn needs_diagnostics(&self) -> bool {
        !matches!(
            self,
            Self::Exit(_)
                | Self::Sleep(_)
                | Self::Ls(_)
                | Self::Cat(_)
                | Self::Env(_)
                | Self::Workdir(_)
                | Self::Volume(_)
                | Self::Rlimit { .. }
                | Self::User { .. }
                | Self::Groups(_)
                | Self::Hostname(_)
                | Self::TaskLimit(_)
                | Self::Caps(_)
                | Self::UserIsolationNone
                | Self::NoPatch
                | Self::NoFileWindows
                | Self::Channel(_)
                | Self::Adopt(_)
                | Self::AdoptRefuse
                | Self::AdoptRefuseSwitch
        )
    }

    /// The record kind ([`command`]).
    const fn kind(&self) -> u16 {
        match self {
            Self::Selftest => command::SELFTEST,
            Self::FsSelftest => command::FS_SELFTEST,
            Self::Exit(_) => command::EXIT,
            Self::Sleep(_) => command::SLEEP,
            Self::Panic => command::PANIC,
            Self::Syscall => command::SYSCALL,
            Self::CrashDoubleFault => command::CRASH_DOUBLE_FAULT,
            Self::CrashStubSyscall => command::CRASH_STUB_SYSCALL,
            Self::Bench(_) => command::BENCH,
            Self::Hostile(_) => command::HOSTILE,
            Self::Ls(_) => command::LS,
            Self::Cat(_) => command::CAT,
            Self::Env(_) => command::ENV,
            Self::Workdir(_) => command::WORKDIR,
            Self::Volume(_) => command::VOLUME,
            Self::Rlimit { .. } => command::RLIMIT,
            Self::User { .. } => command::USER,
            Self::Groups(_) => command::GROUPS,
            Self::Hostname(_) => command::HOSTNAME,
            Self::TaskLimit(_) => command::TASK_LIMIT,
            Self::Caps(_) => command::CAPS,
            Self::UserIsolationNone => command::USER_ISOLATION_NONE,
            Self::NoPatch => command::NO_PATCH,
            Self::NoFileWindows => command::NO_FILE_WINDOWS,
            Self::Channel(_) => command::CHANNEL,
            Self::Adopt(_) => command::ADOPT,
            Self::AdoptRefuse => command::ADOPT_REFUSE,
            Self::AdoptRefuseSwitch => command::ADOPT_REFUSE_SWITCH,
            Self::SlowExit(_) => command::SLOW_EXIT,
        }
    }
}

/// Why bytes are not valid boot arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the header, or longer than [`BOOT_ARGS_MAX`].
    Size(usize),
    /// Not [`BOOT_ARGS_MAGIC`].
    Magic(u32),
    /// Another [`BOOT_ARGS_VERSION`] or header length.
    Version(u16, u16),
    /// `total_len` is not the length given.
    Length {
        /// `total_len`.
        declared: u32,
        /// The length given.
        actual: usize,
    },
    /// An undefined option, terminal bit, or a non-zero reserved field or absent value.
    Options,
    /// A console size with one dimension 0.
    ConsoleSize,
    /// The canary, a record or an argument runs past the end.
    Truncated,
    /// A record of an unknown kind.
    UnknownCommand(u16),
    /// A record whose payload does not fit its kind (wrong length, empty or not UTF-8 text).
    Payload(u16),
    /// Bytes after the last argument, or text (the canary) that is not UTF-8.
    Malformed,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Size(n) => write!(
                f,
                "{n} bytes: boot arguments are {HEADER_LEN}..={BOOT_ARGS_MAX} bytes"
            ),
            Self::Magic(m) => write!(f, "bad magic {m:#x}"),
            Self::Version(v, h) => write!(
                f,
                "version {v} with a {h}-byte header (this side knows version \
                 {BOOT_ARGS_VERSION}, {HEADER_LEN} bytes)"
            ),
            Self::Length { declared, actual } => {
                write!(f, "declared length {declared}, actual {actual}")
            }
            Self::Options => f.write_str("undefined option bits or non-zero reserved fields"),
            Self::ConsoleSize => f.write_str("console size with a zero dimension"),
            Self::Truncated => f.write_str("a record runs past the end"),
            Self::UnknownCommand(k) => write!(f, "unknown command kind {k}"),
            Self::Payload(k) => write!(f, "bad payload for command kind {k}"),
            Self::Malformed => f.write_str("trailing bytes or non-UTF-8 text"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why boot arguments cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// They need more than the buffer (at most [`BOOT_ARGS_MAX`] bytes).
    TooLong {
        /// Bytes needed so far (at least).
        needed: usize,
        /// Bytes available.
        limit: usize,
    },
    /// A command's text (a path, a name) is empty.
    EmptyText,
    /// A command was added after an init argument (commands come first).
    CommandAfterArgs,
    /// An environment entry is not `NAME=VALUE` ([`env_entry_ok`]).
    BadEnv,
    /// A working directory is not an absolute path without NUL ([`workdir_ok`]).
    BadWorkdir,
    /// A volume's id is too large or its guest path not absolute ([`VolumeMount::ok`]).
    BadVolume,
    /// A resource limit names no resource or has its soft limit above the hard one.
    BadRlimit,
    /// A host name is empty, longer than [`HOSTNAME_MAX`] or has a NUL byte.
    BadHostname,
    /// A task limit of 0.
    BadTaskLimit,
    /// A channel name that [`crate::channel::name_ok`] refuses.
    BadChannel,
    /// Capability sets with a bit above [`CAP_LAST_CAP`] or that break Linux's invariants
    /// ([`CapSets::ok`]).
    BadCaps,
    /// An adoption's arguments that [`crate::handover::AdoptArgs::ok`] refuses.
    BadAdopt,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { needed, limit } => write!(
                f,
                "the boot arguments need at least {needed} bytes, more than the limit of {limit}"
            ),
            Self::EmptyText => f.write_str("a command's path or name is empty"),
            Self::CommandAfterArgs => f.write_str("a command follows the init arguments"),
            Self::BadEnv => f.write_str(
                "an environment entry is not NAME=VALUE (a non-empty name without \
                 whitespace, no NUL byte)",
            ),
            Self::BadWorkdir => {
                f.write_str("a working directory is not an absolute path without NUL bytes")
            }
            Self::BadVolume => f.write_str(
                "a volume's id is too large or its guest directory is not an absolute path \
                 without NUL bytes",
            ),
            Self::BadRlimit => f.write_str(
                "a resource limit names no resource or has a soft limit above its hard limit",
            ),
            Self::BadHostname => write!(
                f,
                "a host name is empty, longer than {HOSTNAME_MAX} bytes or has a NUL byte"
            ),
            Self::BadTaskLimit => f.write_str("a task limit is 0"),
            Self::BadChannel => f.write_str(
                "a channel name is not 1 to 64 letters, digits, '_', '.' or '-' starting with a \
                 letter or digit",
            ),
            Self::BadAdopt => f.write_str(
                "an adoption names an unknown record version or flag, a record length out of \
                 bounds or a pool that is empty or not page aligned",
            ),
            Self::BadCaps => write!(
                f,
                "capability sets name a capability above {CAP_LAST_CAP}, or the effective set \
                 is not within the permitted one, or the ambient set not within the permitted \
                 and inheritable ones"
            ),
        }
    }
}

impl core::error::Error for EncodeError {}

/// A list of validated records inside the encoding (commands or arguments).
#[derive(Clone, Copy, Debug, Default)]
struct Records<'a> {
    bytes: &'a [u8],
    count: u16,
}

/// Decoded boot arguments: the options, the commands in order, and the init program's
/// arguments. Borrowed from the encoding, which [`BootArgs::decode`] checked in full, so the
/// iterators never fail.
#[derive(Clone, Copy, Default)]
pub struct BootArgs<'a> {
    /// The options.
    pub options: Options<'a>,
    commands: Records<'a>,
    argv: Records<'a>,
}

impl<'a> BootArgs<'a> {
    /// Decodes and checks `bytes` (exactly the encoding: the `boot_args_len` bytes at
    /// [`crate::BootInfo::boot_args_gpa`]).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() > BOOT_ARGS_MAX {
            return Err(DecodeError::Size(bytes.len()));
        }
        let Ok((h, rest)) = BootArgsHeader::read_from_prefix(bytes) else {
            return Err(DecodeError::Size(bytes.len()));
        };
        if h.magic != BOOT_ARGS_MAGIC {
            return Err(DecodeError::Magic(h.magic));
        }
        if h.version != BOOT_ARGS_VERSION || usize::from(h.header_len) != HEADER_LEN {
            return Err(DecodeError::Version(h.version, h.header_len));
        }
        if h.total_len as usize != bytes.len() {
            return Err(DecodeError::Length {
                declared: h.total_len,
                actual: bytes.len(),
            });
        }
        let options = decode_options(&h)?;
        let (canary, rest) = split(rest, usize::from(h.canary_len))?;
        let canary = match canary {
            [] => None,
            c => Some(core::str::from_utf8(c).map_err(|_| DecodeError::Malformed)?),
        };
        let mut pos = 0;
        for _ in 0..h.nr_commands {
            let (_, len) = read_command(&rest[pos..])?;
            pos += len;
        }
        let (commands, rest) = rest.split_at(pos);
        let mut pos = 0;
        for _ in 0..h.nr_args {
            let (_, len) = read_arg(&rest[pos..])?;
            pos += len;
        }
        if pos != rest.len() {
            return Err(DecodeError::Malformed);
        }
        Ok(Self {
            options: Options { canary, ..options },
            commands: Records {
                bytes: commands,
                count: h.nr_commands,
            },
            argv: Records {
                bytes: rest,
                count: h.nr_args,
            },
        })
    }

    /// The commands, in order.
    pub fn commands(&self) -> Commands<'a> {
        Commands(self.commands)
    }

    /// The init program's arguments (`argv[0]` first); empty if no program runs.
    pub fn argv(&self) -> Argv<'a> {
        Argv(self.argv)
    }

    /// The init program's environment (`NAME=VALUE` entries, in order), from the
    /// [`Command::Env`] records. Empty: none given (the kernel then uses its own default).
    pub fn env(&self) -> impl Iterator<Item = &'a [u8]> + Clone {
        self.commands().filter_map(|c| match c {
            Command::Env(e) => Some(e),
            _ => None,
        })
    }

    /// The init program's working directory: the last [`Command::Workdir`], if any.
    pub fn workdir(&self) -> Option<&'a [u8]> {
        self.commands()
            .filter_map(|c| match c {
                Command::Workdir(w) => Some(w),
                _ => None,
            })
            .last()
    }

    /// The volumes to mount, in order ([`Command::Volume`] records).
    pub fn volumes(&self) -> impl Iterator<Item = VolumeMount<'a>> + Clone {
        self.commands().filter_map(|c| match c {
            Command::Volume(v) => Some(v),
            _ => None,
        })
    }

    /// The init program's resource limits `(resource, soft, hard)`, from the
    /// [`Command::Rlimit`] records in order (a later one of a resource overrides).
    pub fn rlimits(&self) -> impl Iterator<Item = (u32, u64, u64)> + Clone + 'a {
        self.commands().filter_map(|c| match c {
            Command::Rlimit {
                resource,
                soft,
                hard,
            } => Some((resource, soft, hard)),
            _ => None,
        })
    }

    /// The init program's `(uid, gid)`: the last [`Command::User`], if any (else root).
    pub fn user(&self) -> Option<(u32, u32)> {
        self.commands()
            .filter_map(|c| match c {
                Command::User { uid, gid } => Some((uid, gid)),
                _ => None,
            })
            .last()
    }

    /// The init program's supplementary groups: the last [`Command::Groups`], if any (else
    /// none).
    pub fn groups(&self) -> Option<Gids<'a>> {
        self.commands()
            .filter_map(|c| match c {
                Command::Groups(g) => Some(g),
                _ => None,
            })
            .last()
    }

    /// The channels between kernels ([`Command::Channel`]), in index order.
    pub fn channels(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.commands().filter_map(|c| match c {
            Command::Channel(n) => Some(n),
            _ => None,
        })
    }

    /// The guest's host name: the last [`Command::Hostname`], if any.
    pub fn hostname(&self) -> Option<&'a [u8]> {
        self.commands()
            .filter_map(|c| match c {
                Command::Hostname(h) => Some(h),
                _ => None,
            })
            .last()
    }

    /// The init program's capability sets: the last [`Command::Caps`], if any (else every
    /// capability, [`CapSets::FULL`], is the kernel's default).
    pub fn caps(&self) -> Option<CapSets> {
        self.commands()
            .filter_map(|c| match c {
                Command::Caps(c) => Some(c),
                _ => None,
            })
            .last()
    }

    /// The most guest tasks at once: the last [`Command::TaskLimit`], if any.
    pub fn task_limit(&self) -> Option<u32> {
        self.commands()
            .filter_map(|c| match c {
                Command::TaskLimit(n) => Some(n),
                _ => None,
            })
            .last()
    }

    /// Whether the tenant runs its programs in the kernel sandbox (the trusted in-process
    /// mode, [`Command::UserIsolationNone`]).
    pub fn user_isolation_none(&self) -> bool {
        self.commands()
            .any(|c| matches!(c, Command::UserIsolationNone))
    }

    /// The hand-over record to adopt ([`Command::Adopt`]), the first one.
    pub fn adopt(&self) -> Option<crate::handover::AdoptArgs> {
        self.commands().find_map(|c| match c {
            Command::Adopt(a) => Some(a),
            _ => None,
        })
    }

    /// Whether the commands refuse every hand-over record ([`Command::AdoptRefuse`]).
    pub fn adopt_refuse(&self) -> bool {
        self.commands().any(|c| matches!(c, Command::AdoptRefuse))
    }

    /// Whether the commands refuse a record offered for a switch
    /// ([`Command::AdoptRefuseSwitch`]).
    pub fn adopt_refuse_switch(&self) -> bool {
        self.commands()
            .any(|c| matches!(c, Command::AdoptRefuseSwitch))
    }

    /// Whether the commands ask to leave system-call sites unpatched ([`Command::NoPatch`]).
    pub fn no_patch(&self) -> bool {
        self.commands().any(|c| matches!(c, Command::NoPatch))
    }

    /// Whether the commands ask not to use host file windows ([`Command::NoFileWindows`]).
    pub fn no_file_windows(&self) -> bool {
        self.commands().any(|c| matches!(c, Command::NoFileWindows))
    }

    /// True if a command needs the test kernel ([`Command::needs_diagnostics`]).
    pub fn needs_diagnostics(&self) -> bool {
        self.commands().any(|c| c.needs_diagnostics())
    }
}

impl PartialEq for BootArgs<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.options == other.options
            && self.commands().eq(other.commands())
            && self.argv().eq(other.argv())
    }
}

impl Eq for BootArgs<'_> {}

impl fmt::Debug for BootArgs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct List<I>(I);
        impl<I: Iterator<Item = T> + Clone, T: fmt::Debug> fmt::Debug for List<I> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(self.0.clone()).finish()
            }
        }
        f.debug_struct("BootArgs")
            .field("options", &self.options)
            .field("commands", &List(self.commands()))
            .field("argv", &List(self.argv().map(<[u8]>::escape_ascii)))
            .finish()
    }
}

fn decode_options(h: &BootArgsHeader) -> Result<Options<'static>, DecodeError> {
    let given = |bit: u32, v: u64| match (h.flags & bit != 0, v) {
        (true, v) => Ok(Some(v)),
        (false, 0) => Ok(None),
        (false, _) => Err(DecodeError::Options),
    };
    if h.flags & !flag::ALL != 0 || h._reserved0 != 0 || h._reserved1 != 0 {
        return Err(DecodeError::Options);
    }
    let terminals = Terminals::from_bits(h.terminals).ok_or(DecodeError::Options)?;
    let console_size = match (h.console_cols, h.console_rows) {
        (0, 0) => None,
        (c, r) => Some(ConsoleSize::new(c, r).ok_or(DecodeError::ConsoleSize)?),
    };
    Ok(Options {
        terminals,
        console_size,
        syscall_report: h.flags & flag::SYSCALL_REPORT != 0,
        quiet: h.flags & flag::QUIET != 0,
        hostfs: h.flags & flag::HOSTFS != 0,
        bench_quick: h.flags & flag::BENCH_QUICK != 0,
        host_pid: given(flag::HOST_PID, h.host_pid)?,
        seed: given(flag::SEED, h.seed)?,
        canary: None,
    })
}

/// `(bytes[..n], bytes[n..])`, or `Truncated`.
fn split(bytes: &[u8], n: usize) -> Result<(&[u8], &[u8]), DecodeError> {
    bytes.split_at_checked(n).ok_or(DecodeError::Truncated)
}

/// The command record at the start of `bytes` and its length.
fn read_command(bytes: &[u8]) -> Result<(Command<'_>, usize), DecodeError> {
    let (h, rest) = RecordHeader::read_from_prefix(bytes).map_err(|_| DecodeError::Truncated)?;
    let (payload, _) = split(rest, usize::from(h.len))?;
    let bad = DecodeError::Payload(h.kind);
    let none = |c: Command<'static>| if payload.is_empty() { Ok(c) } else { Err(bad) };
    let number = || {
        <[u8; 8]>::try_from(payload)
            .map(u64::from_le_bytes)
            .map_err(|_| bad)
    };
    let text = || match core::str::from_utf8(payload) {
        Ok(s) if !s.is_empty() => Ok(s),
        _ => Err(bad),
    };
    let c = match h.kind {
        command::SELFTEST => none(Command::Selftest)?,
        command::FS_SELFTEST => none(Command::FsSelftest)?,
        command::EXIT => Command::Exit(number()?),
        command::SLEEP => Command::Sleep(number()?),
        command::PANIC => none(Command::Panic)?,
        command::SYSCALL => none(Command::Syscall)?,
        command::CRASH_DOUBLE_FAULT => none(Command::CrashDoubleFault)?,
        command::CRASH_STUB_SYSCALL => none(Command::CrashStubSyscall)?,
        command::BENCH => Command::Bench(text()?),
        command::HOSTILE => Command::Hostile(text()?),
        command::LS => Command::Ls(text()?),
        command::CAT => Command::Cat(text()?),
        command::ENV if env_entry_ok(payload) => Command::Env(payload),
        command::WORKDIR if workdir_ok(payload) => Command::Workdir(payload),
        command::ENV | command::WORKDIR => return Err(bad),
        command::VOLUME => Command::Volume(VolumeMount::decode(payload).ok_or(bad)?),
        command::RLIMIT => {
            let b: [u8; 20] = payload.try_into().map_err(|_| bad)?;
            let resource = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let soft = u64::from_le_bytes([b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11]]);
            let hard = u64::from_le_bytes([b[12], b[13], b[14], b[15], b[16], b[17], b[18], b[19]]);
            if resource >= RLIMIT_RESOURCES || soft > hard {
                return Err(bad);
            }
            Command::Rlimit {
                resource,
                soft,
                hard,
            }
        }
        command::HOSTNAME if hostname_ok(payload) => Command::Hostname(payload),
        command::HOSTNAME => return Err(bad),
        command::TASK_LIMIT => {
            let b: [u8; 4] = payload.try_into().map_err(|_| bad)?;
            match u32::from_le_bytes(b) {
                0 => return Err(bad),
                n => Command::TaskLimit(n),
            }
        }
        command::USER => {
            let b: [u8; 8] = payload.try_into().map_err(|_| bad)?;
            Command::User {
                uid: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                gid: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            }
        }
        command::GROUPS => Command::Groups(Gids::from_le_bytes(payload).ok_or(bad)?),
        command::CAPS => Command::Caps(CapSets::from_le_bytes(payload).ok_or(bad)?),
        command::USER_ISOLATION_NONE => none(Command::UserIsolationNone)?,
        command::NO_PATCH => none(Command::NoPatch)?,
        command::NO_FILE_WINDOWS => none(Command::NoFileWindows)?,
        command::CHANNEL if crate::channel::name_ok(payload) => Command::Channel(payload),
        command::CHANNEL => return Err(bad),
        command::ADOPT => {
            let a = crate::handover::AdoptArgs::read_from_bytes(payload).map_err(|_| bad)?;
            if !a.ok() {
                return Err(bad);
            }
            Command::Adopt(a)
        }
        command::ADOPT_REFUSE => none(Command::AdoptRefuse)?,
        command::ADOPT_REFUSE_SWITCH => none(Command::AdoptRefuseSwitch)?,
        command::SLOW_EXIT => Command::SlowExit(number()?),
        k => return Err(DecodeError::UnknownCommand(k)),
    };
    Ok((c, RECORD_HEADER_LEN + payload.len()))
}

/// The argument record at the start of `bytes` and its length.
fn read_arg(bytes: &[u8]) -> Result<(&[u8], usize), DecodeError> {
    let (len, rest) = split(bytes, 2)?;
    let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
    let (arg, _) = split(rest, len)?;
    Ok((arg, 2 + len))
}

/// The commands of [`BootArgs`], in order.
#[derive(Clone, Debug)]
pub struct Commands<'a>(Records<'a>);

impl<'a> Iterator for Commands<'a> {
    type Item = Command<'a>;

    fn next(&mut self) -> Option<Command<'a>> {
        if self.0.count == 0 {
            return None;
        }
        // Checked by `decode`: cannot fail (and ends the iteration if it did).
        let (c, len) = read_command(self.0.bytes).ok()?;
        self.0.bytes = &self.0.bytes[len..];
        self.0.count -= 1;
        Some(c)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.0.count)))
    }
}

/// The init arguments of [`BootArgs`], in order.
#[derive(Clone, Debug)]
pub struct Argv<'a>(Records<'a>);

impl<'a> Iterator for Argv<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.0.count == 0 {
            return None;
        }
        // Checked by `decode`: cannot fail (and ends the iteration if it did).
        let (arg, len) = read_arg(self.0.bytes).ok()?;
        self.0.bytes = &self.0.bytes[len..];
        self.0.count -= 1;
        Some(arg)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.0.count)))
    }
}

/// Writes boot arguments into a buffer: the options first ([`Encoder::new`]), then the
/// commands in order, then the init arguments; [`Encoder::finish`] completes the header.
pub struct Encoder<'b> {
    out: &'b mut [u8],
    pos: usize,
    header: BootArgsHeader,
}

impl<'b> Encoder<'b> {
    /// Starts an encoding of `options` in `out` (at most [`BOOT_ARGS_MAX`] bytes of it are
    /// used).
    pub fn new(out: &'b mut [u8], options: &Options<'_>) -> Result<Self, EncodeError> {
        let limit = out.len().min(BOOT_ARGS_MAX);
        let out = &mut out[..limit];
        let canary = options.canary.unwrap_or("").as_bytes();
        let mut flags = 0;
        for (on, bit) in [
            (options.syscall_report, flag::SYSCALL_REPORT),
            (options.quiet, flag::QUIET),
            (options.hostfs, flag::HOSTFS),
            (options.bench_quick, flag::BENCH_QUICK),
            (options.host_pid.is_some(), flag::HOST_PID),
            (options.seed.is_some(), flag::SEED),
        ] {
            if on {
                flags |= bit;
            }
        }
        let (console_cols, console_rows) = options
            .console_size
            .map_or((0, 0), |s| (s.cols.get(), s.rows.get()));
        let header = BootArgsHeader {
            magic: BOOT_ARGS_MAGIC,
            version: BOOT_ARGS_VERSION,
            header_len: HEADER_LEN as u16,
            total_len: 0,
            flags,
            host_pid: options.host_pid.unwrap_or(0),
            seed: options.seed.unwrap_or(0),
            console_cols,
            console_rows,
            terminals: options.terminals.bits(),
            _reserved0: 0,
            canary_len: 0,
            nr_commands: 0,
            nr_args: 0,
            _reserved1: 0,
        };
        let mut enc = Self {
            out,
            pos: HEADER_LEN,
            header,
        };
        if enc.out.len() < HEADER_LEN {
            return Err(enc.too_long(0));
        }
        enc.put(&[canary])?;
        // `put` succeeded: the canary is shorter than the buffer, so it fits a u16.
        enc.header.canary_len = canary.len() as u16;
        Ok(enc)
    }

    /// Appends a command.
    pub fn command(&mut self, c: &Command<'_>) -> Result<(), EncodeError> {
        if self.header.nr_args != 0 {
            return Err(EncodeError::CommandAfterArgs);
        }
        if let Command::Volume(v) = c {
            if !v.ok() {
                return Err(EncodeError::BadVolume);
            }
            let head = v.head();
            let len = u16::try_from(head.len() + v.path.len())
                .map_err(|_| self.too_long(head.len() + v.path.len()))?;
            let rec = RecordHeader {
                kind: c.kind(),
                len,
            };
            self.put(&[rec.as_bytes(), &head, v.path])?;
            self.header.nr_commands += 1;
            return Ok(());
        }
        if let Command::Groups(g) = c {
            // A `Gids` is valid by construction: at most GROUPS_MAX ids, 4 bytes each.
            let len = g.len() * 4;
            let rec = RecordHeader {
                kind: c.kind(),
                len: u16::try_from(len).map_err(|_| self.too_long(len))?,
            };
            // All or nothing: check the room first, then every piece fits.
            if self.pos + RECORD_HEADER_LEN + len > self.out.len() {
                return Err(self.too_long(RECORD_HEADER_LEN + len));
            }
            self.put(&[rec.as_bytes()])?;
            for id in g.iter() {
                self.put(&[&id.to_le_bytes()])?;
            }
            self.header.nr_commands += 1;
            return Ok(());
        }
        let number;
        let mut record = [0u8; 40];
        let payload: &[u8] = match c {
            Command::Exit(n) | Command::Sleep(n) | Command::SlowExit(n) => {
                number = n.to_le_bytes();
                &number
            }
            Command::Rlimit {
                resource,
                soft,
                hard,
            } => {
                if *resource >= RLIMIT_RESOURCES || soft > hard {
                    return Err(EncodeError::BadRlimit);
                }
                record[..4].copy_from_slice(&resource.to_le_bytes());
                record[4..12].copy_from_slice(&soft.to_le_bytes());
                record[12..20].copy_from_slice(&hard.to_le_bytes());
                &record[..20]
            }
            Command::User { uid, gid } => {
                record[..4].copy_from_slice(&uid.to_le_bytes());
                record[4..8].copy_from_slice(&gid.to_le_bytes());
                &record[..8]
            }
            Command::Bench(s) | Command::Hostile(s) | Command::Ls(s) | Command::Cat(s) => {
                if s.is_empty() {
                    return Err(EncodeError::EmptyText);
                }
                s.as_bytes()
            }
            Command::Env(e) if env_entry_ok(e) => e,
            Command::Env(_) => return Err(EncodeError::BadEnv),
            Command::Workdir(w) if workdir_ok(w) => w,
            Command::Workdir(_) => return Err(EncodeError::BadWorkdir),
            Command::Hostname(h) if hostname_ok(h) => h,
            Command::Hostname(_) => return Err(EncodeError::BadHostname),
            Command::Channel(n) if crate::channel::name_ok(n) => n,
            Command::Channel(_) => return Err(EncodeError::BadChannel),
            Command::TaskLimit(0) => return Err(EncodeError::BadTaskLimit),
            Command::TaskLimit(n) => {
                record[..4].copy_from_slice(&n.to_le_bytes());
                &record[..4]
            }
            Command::Caps(c) if c.ok() => {
                record = c.to_le_bytes();
                &record
            }
            Command::Caps(_) => return Err(EncodeError::BadCaps),
            Command::Adopt(a) if a.ok() => {
                record[..32].copy_from_slice(a.as_bytes());
                &record[..32]
            }
            Command::Adopt(_) => return Err(EncodeError::BadAdopt),
            _ => &[],
        };
        let len = self.len_u16(payload)?;
        let rec = RecordHeader {
            kind: c.kind(),
            len,
        };
        self.put(&[rec.as_bytes(), payload])?;
        self.header.nr_commands += 1;
        Ok(())
    }

    /// Appends an init argument (`argv[0]` first).
    pub fn arg(&mut self, arg: &[u8]) -> Result<(), EncodeError> {
        let len = self.len_u16(arg)?;
        self.put(&[&len.to_le_bytes(), arg])?;
        self.header.nr_args += 1;
        Ok(())
    }

    /// Completes the header; returns the length of the encoding (the start of the buffer).
    pub fn finish(mut self) -> usize {
        // `pos` never exceeds the buffer, at most BOOT_ARGS_MAX bytes.
        self.header.total_len = self.pos as u32;
        self.out[..HEADER_LEN].copy_from_slice(self.header.as_bytes());
        self.pos
    }

    fn too_long(&self, extra: usize) -> EncodeError {
        EncodeError::TooLong {
            needed: self.pos.saturating_add(extra).max(HEADER_LEN),
            limit: self.out.len(),
        }
    }

    /// `data.len()` as u16 if it is shorter than the buffer.
    fn len_u16(&self, data: &[u8]) -> Result<u16, EncodeError> {
        match u16::try_from(data.len()) {
            Ok(n) if data.len() <= self.out.len() => Ok(n),
            _ => Err(self.too_long(data.len())),
        }
    }

    /// Appends `pieces`, all or nothing.
    fn put(&mut self, pieces: &[&[u8]]) -> Result<(), EncodeError> {
        let total = pieces.iter().map(|p| p.len()).sum::<usize>();
        let end = self
            .pos
            .checked_add(total)
            .filter(|&e| e <= self.out.len())
            .ok_or_else(|| self.too_long(total))?;
        for p in pieces {
            self.out[self.pos..self.pos + p.len()].copy_from_slice(p);
            self.pos += p.len();
        }
        debug_assert_eq!(self.pos, end);
        Ok(())
    }
}

/// Encoded boot arguments, owned: what the host hands to the domain builder. Built only by
/// the encoder, so [`BootArgsBuf::args`] always decodes.
#[derive(Clone, PartialEq, Eq)]
pub struct BootArgsBuf {
    bytes: [u8; BOOT_ARGS_MAX],
    len: usize,
}

impl BootArgsBuf {
    /// Encodes `options`, then `commands` in order, then the init program's `argv` (empty:
    /// no program).
    pub fn new<'c, A: AsRef<[u8]>>(
        options: &Options<'_>,
        commands: impl IntoIterator<Item = Command<'c>>,
        argv: impl IntoIterator<Item = A>,
    ) -> Result<Self, EncodeError> {
        let mut bytes = [0; BOOT_ARGS_MAX];
        let mut enc = Encoder::new(&mut bytes, options)?;
        for c in commands {
            enc.command(&c)?;
        }
        for a in argv {
            enc.arg(a.as_ref())?;
        }
        let len = enc.finish();
        Ok(Self { bytes, len })
    }

    /// Parses the text form ([`words::Words::parse`]) and encodes it.
    pub fn from_words(line: &str) -> Result<Self, words::Error<'_>> {
        words::Words::parse(line)?
            .encode()
            .map_err(words::Error::Encode)
    }

    /// The encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The decoded boot arguments.
    pub fn args(&self) -> BootArgs<'_> {
        // The encoder only writes valid encodings; the fallback is never taken.
        BootArgs::decode(self.as_bytes()).unwrap_or_default()
    }
}

impl Default for BootArgsBuf {
    /// No options, no commands, no program.
    fn default() -> Self {
        let mut bytes = [0; BOOT_ARGS_MAX];
        let len = match Encoder::new(&mut bytes, &Options::default()) {
            Ok(enc) => enc.finish(),
            Err(_) => 0,
        };
        Self { bytes, len }
    }
}

impl fmt::Debug for BootArgsBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootArgsBuf({})", self.args())
    }
}

impl fmt::Display for BootArgsBuf {
    /// The text form of the arguments.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.args(), f)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use super::*;

    fn sample_options() -> Options<'static> {
        Options {
            terminals: Terminals {
                stdin: true,
                stdout: false,
                stderr: true,
            },
            console_size: ConsoleSize::new(132, 43),
            syscall_report: true,
            quiet: false,
            hostfs: true,
            bench_quick: false,
            host_pid: Some(4242),
            seed: Some(0),
            canary: Some("/tmp/c"),
        }
    }

    #[test]
    fn round_trip() {
        let cmds = [
            Command::Selftest,
            Command::Exit(u64::MAX),
            Command::Sleep(5),
            Command::Hostile("stub-random"),
            Command::Ls("/dir"),
            Command::Cat("/é"),
            Command::Bench("all"),
            Command::CrashStubSyscall,
        ];
        let argv: [&[u8]; 4] = [b"/bin/sh", b"", b"a b\x00\xff", b"%20"];
        let buf = BootArgsBuf::new(&sample_options(), cmds, argv).unwrap();
        let args = BootArgs::decode(buf.as_bytes()).unwrap();
        assert_eq!(args.options, sample_options());
        assert!(args.commands().eq(cmds));
        assert!(args.argv().eq(argv));
        assert!(args.needs_diagnostics());
        assert_eq!(buf.args(), args);
        // Header, canary, 8 record headers and their payloads, 4 length prefixes and args.
        let expect = 48 + 6 + 8 * 4 + (8 + 8 + 11 + 4 + 3 + 3) + 4 * 2 + (7 + 5 + 3);
        assert_eq!(buf.as_bytes().len(), expect);
    }

    #[test]
    fn env_and_workdir() {
        let cmds = [
            Command::Env(b"PATH=/bin"),
            Command::Workdir(b"/tmp"),
            Command::Exit(1),
            Command::Env(b"A=b c=\xff\n"),
            Command::Env(b"EMPTY="),
            Command::Workdir(b"/w\xfe"),
        ];
        let buf = BootArgsBuf::new(&Options::default(), cmds, [b"/p"]).unwrap();
        let args = buf.args();
        assert!(args.commands().eq(cmds));
        assert!(args
            .env()
            .eq([&b"PATH=/bin"[..], b"A=b c=\xff\n", b"EMPTY="]));
        assert_eq!(args.workdir(), Some(&b"/w\xfe"[..]));
        assert!(!args.needs_diagnostics());
        let none = BootArgsBuf::new(&Options::default(), [], [b"/p"]).unwrap();
        assert_eq!(
            (none.args().env().count(), none.args().workdir()),
            (0, None)
        );
        // The encoder refuses what the decoder would.
        for bad in [&b"=x"[..], b"NOEQ", b"A B=1", b"A=\0", b"\tA=1", b""] {
            assert!(!env_entry_ok(bad));
            assert_eq!(
                BootArgsBuf::new(&Options::default(), [Command::Env(bad)], [b"/p"]),
                Err(EncodeError::BadEnv)
            );
        }
        for bad in [&b"rel"[..], b"", b"/a\0b"] {
            assert_eq!(
                BootArgsBuf::new(&Options::default(), [Command::Workdir(bad)], [b"/p"]),
                Err(EncodeError::BadWorkdir)
            );
        }
        // The decoder refuses a bad payload under either kind.
        let good =
            BootArgsBuf::new(&Options::default(), [Command::Env(b"AB=1")], [b""; 0]).unwrap();
        let mut b = good.as_bytes().to_vec();
        b[HEADER_LEN + RECORD_HEADER_LEN + 2] = b'x';
        assert_eq!(
            BootArgs::decode(&b),
            Err(DecodeError::Payload(command::ENV))
        );
        let mut b = good.as_bytes().to_vec();
        b[HEADER_LEN] = command::WORKDIR as u8;
        assert_eq!(
            BootArgs::decode(&b),
            Err(DecodeError::Payload(command::WORKDIR))
        );
        b[HEADER_LEN + RECORD_HEADER_LEN] = b'/';
        assert_eq!(BootArgs::decode(&b).unwrap().workdir(), Some(&b"/B=1"[..]));
    }

    #[test]
    fn hostname_and_task_limit() {
        let cmds = [
            Command::Hostname(b"first"),
            Command::TaskLimit(100),
            Command::Hostname(b"box-1.example"),
            Command::TaskLimit(1),
        ];
        let buf = BootArgsBuf::new(&Options::default(), cmds, [b"/p"]).unwrap();
        let args = BootArgs::decode(buf.as_bytes()).unwrap();
        assert!(args.commands().eq(cmds));
        assert_eq!(args.hostname(), Some(&b"box-1.example"[..]));
        assert_eq!(args.task_limit(), Some(1));
        assert!(!args.needs_diagnostics());
        let none = BootArgsBuf::new(&Options::default(), [], [b"/p"]).unwrap();
        assert_eq!(
            (none.args().hostname(), none.args().task_limit()),
            (None, None)
        );
        let long = [b'h'; HOSTNAME_MAX + 1];
        for bad in [&b""[..], b"a\0b", &long] {
            assert_eq!(
                BootArgsBuf::new(&Options::default(), [Command::Hostname(bad)], [b"/p"]),
                Err(EncodeError::BadHostname)
            );
        }
        assert!(hostname_ok(&long[1..]));
        assert_eq!(
            BootArgsBuf::new(&Options::default(), [Command::TaskLimit(0)], [b"/p"]),
            Err(EncodeError::BadTaskLimit)
        );
        // The decoder refuses a zero limit and a NUL in a name.
        let good =
            BootArgsBuf::new(&Options::default(), [Command::TaskLimit(2)], [b""; 0]).unwrap();
        let mut b = good.as_bytes().to_vec();
        b[HEADER_LEN + RECORD_HEADER_LEN] = 0;
        assert_eq!(
            BootArgs::decode(&b),
            Err(DecodeError::Payload(command::TASK_LIMIT))
        );
        let good =
            BootArgsBuf::new(&Options::default(), [Command::Hostname(b"ab")], [b""; 0]).unwrap();
        let mut b = good.as_bytes().to_vec();
        b[HEADER_LEN + RECORD_HEADER_LEN] = 0;
        assert_eq!(
            BootArgs::decode(&b),
            Err(DecodeError::Payload(command::HOSTNAME))
        );
    }

    #[test]
    fn default_is_empty() {
        let buf = BootArgsBuf::default();
        let args = buf.args();
        assert_eq!(buf.as_bytes().len(), HEADER_LEN);
        assert_eq!(args.options, Options::default());
        assert_eq!((args.commands().count(), args.argv().count()), (0, 0));
        assert!(!args.needs_diagnostics());
        let exit = BootArgsBuf::new(&Options::default(), [Command::Exit(3)], [b"x"]).unwrap();
        assert!(!exit.args().needs_diagnostics());
    }

    #[test]
    fn rlimit_and_user_records() {
        let cmds = [
            Command::Rlimit {
                resource: 7,
                soft: 64,
                hard: u64::MAX,
            },
            Command::User {
                uid: 1000,
                gid: 100,
            },
            Command::User { uid: 5, gid: 6 },
        ];
        let buf = BootArgsBuf::new(&Options::default(), cmds, [b"/p"]).unwrap();
        let args = buf.args();
        assert!(args.commands().eq(cmds));
        assert!(args.rlimits().eq([(7, 64, u64::MAX)]));
        assert_eq!(args.user(), Some((5, 6)), "the last one counts");
        assert!(!args.needs_diagnostics());
        for bad in [
            Command::Rlimit {
                resource: RLIMIT_RESOURCES,
                soft: 0,
                hard: 0,
            },
            Command::Rlimit {
                resource: 0,
                soft: 2,
                hard: 1,
            },
        ] {
            assert_eq!(
                BootArgsBuf::new(&Options::default(), [bad], [b"/p"]),
                Err(EncodeError::BadRlimit)
            );
        }
        // The decoder refuses the same (soft above hard), and a short payload.
        let good = BootArgsBuf::new(&Options::default(), [cmds[0]], [b""; 0]).unwrap();
        let mut b = good.as_bytes().to_vec();
        // Hard limit 1, below the soft limit 64.
        b[HEADER_LEN + 4 + 12..HEADER_LEN + 4 + 20].copy_from_slice(&1u64.to_le_bytes());
        assert_eq!(
            BootArgs::decode(&b).err(),
            Some(DecodeError::Payload(command::RLIMIT))
        );
        // Text form round trip.
        let words = std::format!("{}", buf.args());
        assert!(
            words.contains("rlimit=7:64:18446744073709551615"),
            "{words}"
        );
        assert!(words.contains("user=5:6"), "{words}");
    }

    #[test]
    fn caps_records() {
        let c = CapSets {
            effective: 1 << 0,
            permitted: (1 << 0) | (1 << CAP_LAST_CAP),
            inheritable: 1 << CAP_LAST_CAP,
            bounding: CAP_FULL_SET,
            ambient: 1 << CAP_LAST_CAP,
        };
        let buf = BootArgsBuf::new(
            &Options::default(),
            [Command::Caps(CapSets::FULL), Command::Caps(c)],
            [b"/p"],
        )
        .unwrap();
        let args = buf.args();
        assert_eq!(args.caps(), Some(c), "the last one counts");
        let words = std::format!("{args}");
        assert!(
            words.contains("caps=1ffffffffff:1ffffffffff:0:1ffffffffff:0 caps=1:10000000001:"),
            "{words}"
        );
        assert_eq!(BootArgsBuf::from_words(&words).unwrap().args(), args);
        assert!(!args.needs_diagnostics());
        // A bit above CAP_LAST_CAP, or broken invariants, are refused by the encoder...
        for bad in [
            CapSets {
                bounding: 1 << (CAP_LAST_CAP + 1),
                ..CapSets::default()
            },
            CapSets {
                effective: 1,
                ..CapSets::default()
            },
            CapSets {
                ambient: 1,
                permitted: 1,
                ..CapSets::default()
            },
        ] {
            assert_eq!(
                BootArgsBuf::new(&Options::default(), [Command::Caps(bad)], [b"/p"]).map(|_| ()),
                Err(EncodeError::BadCaps)
            );
            assert_eq!(CapSets::from_le_bytes(&bad.to_le_bytes()), None);
        }
        // ... and by the decoder (a payload of the wrong length too).
        assert_eq!(CapSets::from_le_bytes(&[0; 39]), None);
        for bad in [
            "caps=1:0:0:0:0",
            "caps=0:0:0:20000000000:0",
            "caps=0:0:0:0",
            "caps=0:0:0:0:0:0",
        ] {
            assert!(BootArgsBuf::from_words(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn groups_records() {
        let le: Vec<u8> = [3u32, 50, 1000]
            .iter()
            .flat_map(|g| g.to_le_bytes())
            .collect();
        let g = Gids::from_le_bytes(&le).unwrap();
        assert_eq!(g, Gids::from_text("3,50,1000").unwrap());
        assert_eq!(std::format!("{g}"), "3,50,1000");
        let none = Gids::from_text("").unwrap();
        assert!(none.is_empty() && none.iter().next().is_none());
        let cmds = [Command::Groups(none), Command::Groups(g)];
        let buf = BootArgsBuf::new(&Options::default(), cmds, [b"/p"]).unwrap();
        let args = buf.args();
        assert!(args.commands().eq(cmds));
        assert_eq!(args.groups(), Some(g), "the last one counts");
        assert!(args.groups().unwrap().iter().eq([3, 50, 1000]));
        assert!(!args.needs_diagnostics());
        let words = std::format!("{}", buf.args());
        assert!(words.contains("groups= groups=3,50,1000"), "{words}");
        assert_eq!(BootArgsBuf::from_words(&words).unwrap().args(), args);
        // Not ascending, duplicated, not numbers, too many, a partial id: refused.
        for bad in ["2,1", "1,1", "1,x", "1,,2", ",", "-1", "+1", "4294967296"] {
            assert!(Gids::from_text(bad).is_none(), "{bad}");
        }
        let dup: Vec<u8> = [7u32, 7].iter().flat_map(|g| g.to_le_bytes()).collect();
        assert!(Gids::from_le_bytes(&dup).is_none());
        assert!(Gids::from_le_bytes(&le[..5]).is_none());
        let many: Vec<u8> = (0..=GROUPS_MAX as u32).flat_map(u32::to_le_bytes).collect();
        assert!(Gids::from_le_bytes(&many).is_none());
        assert!(Gids::from_le_bytes(&many[..GROUPS_MAX * 4]).is_some());
        // The decoder refuses an unordered payload.
        let mut b = buf.as_bytes().to_vec();
        let at = HEADER_LEN + 2 * RECORD_HEADER_LEN;
        b[at..at + 4].copy_from_slice(&60u32.to_le_bytes());
        assert_eq!(
            BootArgs::decode(&b).err(),
            Some(DecodeError::Payload(command::GROUPS))
        );
    }

    #[test]
    fn encoder_limits() {
        // Exactly full (arguments of at most u16::MAX bytes each, 2 more for each length),
        // then one byte too many.
        let fill = |total: usize| {
            let mut left = total - HEADER_LEN;
            let mut args = Vec::new();
            while left > 0 {
                let n = (left - 2).min(60_000);
                args.push(vec![b'a'; n]);
                left -= n + 2;
            }
            args
        };
        let full = BootArgsBuf::new(&Options::default(), [], fill(BOOT_ARGS_MAX)).unwrap();
        assert_eq!(full.as_bytes().len(), BOOT_ARGS_MAX);
        let mut more = fill(BOOT_ARGS_MAX);
        more.last_mut().unwrap().push(b'a');
        assert_eq!(
            BootArgsBuf::new(&Options::default(), [], more),
            Err(EncodeError::TooLong {
                needed: BOOT_ARGS_MAX + 1,
                limit: BOOT_ARGS_MAX
            })
        );
        assert_eq!(
            BootArgsBuf::new(&Options::default(), [Command::Ls("")], [b""; 0]),
            Err(EncodeError::EmptyText)
        );
        let mut small = [0u8; 10];
        assert!(Encoder::new(&mut small, &Options::default()).is_err());
        let mut out = [0u8; 100];
        let mut enc = Encoder::new(&mut out, &Options::default()).unwrap();
        enc.arg(b"x").unwrap();
        assert_eq!(
            enc.command(&Command::Panic),
            Err(EncodeError::CommandAfterArgs)
        );
        // A failed append leaves the encoding as it was.
        assert!(enc.arg(&[0; 60]).is_err());
        let n = enc.finish();
        let args = BootArgs::decode(&out[..n]).unwrap();
        assert!(args.argv().eq([&b"x"[..]]));
        assert_eq!(args.commands().count(), 0);
    }

    #[test]
    fn decoder_rejects_bad_headers() {
        let good = BootArgsBuf::new(&sample_options(), [Command::Exit(1)], [b"/x"]).unwrap();
        let good = good.as_bytes();
        let mut b = [0u8; BOOT_ARGS_MAX];
        let mut patched = |off: usize, val: &[u8]| {
            b[..good.len()].copy_from_slice(good);
            b[off..off + val.len()].copy_from_slice(val);
            // The kind of the first command.
            BootArgs::decode(&b[..good.len()]).map(|a| a.commands().next().map(|c| c.kind()))
        };
        assert_eq!(BootArgs::decode(&good[..47]), Err(DecodeError::Size(47)));
        assert_eq!(
            BootArgs::decode(&good[..good.len() - 1]),
            Err(DecodeError::Length {
                declared: good.len() as u32,
                actual: good.len() - 1
            })
        );
        assert!(matches!(patched(0, b"PVBB"), Err(DecodeError::Magic(_))));
        assert_eq!(patched(4, &[2, 0]), Err(DecodeError::Version(2, 48)));
        assert_eq!(patched(6, &[40, 0]), Err(DecodeError::Version(1, 48 - 8)));
        assert_eq!(patched(14, &[1]), Err(DecodeError::Options));
        assert_eq!(patched(36, &[8]), Err(DecodeError::Options));
        assert_eq!(patched(37, &[1]), Err(DecodeError::Options));
        assert_eq!(patched(44, &[1]), Err(DecodeError::Options));
        assert_eq!(patched(32, &[0, 0]), Err(DecodeError::ConsoleSize));
        // A value without its flag: seed flag (bit 5) cleared while seed = 0 is fine, host
        // pid flag (bit 4) cleared while host_pid != 0 is not.
        let flags = u32::from_le_bytes(good[12..16].try_into().unwrap());
        assert_eq!(
            patched(12, &(flags & !flag::SEED).to_le_bytes()),
            Ok(Some(command::EXIT))
        );
        assert_eq!(
            patched(12, &(flags & !flag::HOST_PID).to_le_bytes()),
            Err(DecodeError::Options)
        );
        // Canary not UTF-8; counts that run past the end; a leftover byte.
        assert_eq!(patched(48, &[0xff]), Err(DecodeError::Malformed));
        assert_eq!(patched(40, &[2, 0]), Err(DecodeError::Truncated));
        assert_eq!(patched(42, &[2, 0]), Err(DecodeError::Truncated));
        assert_eq!(patched(42, &[0, 0]), Err(DecodeError::Malformed));
        // Records: unknown kind, wrong payload length.
        let rec = 48 + 6;
        assert_eq!(patched(rec, &[99, 0]), Err(DecodeError::UnknownCommand(99)));
        assert_eq!(
            patched(rec, &[command::PANIC as u8, 0]),
            Err(DecodeError::Payload(command::PANIC))
        );
        // The exit code's 8 bytes read as a path: any UTF-8 text is one.
        assert_eq!(patched(rec, &[command::LS as u8, 0]), Ok(Some(command::LS)));
        let mut copy = [0u8; BOOT_ARGS_MAX];
        let c = &mut copy[..good.len()];
        c.copy_from_slice(good);
        c[rec] = command::LS as u8;
        assert_eq!(
            BootArgs::decode(c).unwrap().commands().next(),
            Some(Command::Ls("\u{1}\0\0\0\0\0\0\0"))
        );
        c[rec + 4] = 0xff;
        assert_eq!(BootArgs::decode(c), Err(DecodeError::Payload(command::LS)));
        assert!(BootArgs::decode(&[0; BOOT_ARGS_MAX + 1]).is_err());
    }
}
