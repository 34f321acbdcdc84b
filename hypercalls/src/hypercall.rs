//! Host hypercall numbers and error codes.
//!
//! A host hypercall is made through the stub's `hypercall` entry (see [`crate::StubTable`]):
//! `rdi` = number (low 32 bits) | flags (high 32 bits), `rsi, rdx, rcx, r8, r9` = arguments
//! 0..4. It returns in `rax` a non-negative result or a negative [`HcError`]. Guest buffers are
//! named by **guest-physical** address and length; the host checks every range against guest
//! memory before copying, and copies before it looks.

/// `ConsoleWrite` streams (argument 2).
pub mod stream {
    /// The program's standard output (the host's stdout).
    pub const STDOUT: u64 = 0;
    /// Kernel messages (the host routes them: stdout by default, hidden or stderr when a
    /// program runs).
    pub const KERNEL_LOG: u64 = 1;
    /// The program's standard error (the host's stderr).
    pub const STDERR: u64 = 2;
}

/// Flag (in the number's high half): do not spin waiting for the host; block at once.
pub const HC_FLAG_NOSPIN: u64 = 1 << 32;
/// Mask of the call number in the first argument.
pub const HC_NR_MASK: u64 = 0xffff_ffff;
/// Largest buffer one console write may pass (longer writes return [`HcError::TooLarge`]).
pub const CONSOLE_WRITE_MAX: u64 = 64 * 1024;
/// Largest panic message the host reads.
pub const PANIC_MSG_MAX: u64 = 4096;

/// Host hypercalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[repr(u32)]
pub enum Hypercall {
    /// Does nothing and returns 0 (round-trip benchmark).
    Nop = 0,
    /// `console_write(gpa, len, stream) -> len`: write bytes to the tenant's console.
    /// `stream` ([`stream`]): 0 = standard output, 1 = kernel log, 2 = standard error.
    ConsoleWrite = 1,
    /// `shutdown(code, record) -> !`: the tenant exits with `code & 0xff`. `record` is 0 or
    /// the guest-physical address of a [`crate::ShutdownRecord`] saying how the program the
    /// guest ran as init ended when it was killed (by a signal or for memory).
    Shutdown = 2,
    /// `panic(gpa, len) -> !`: the guest kernel panicked with the UTF-8 message at `gpa`; the
    /// host records a crash report with the caller's registers.
    Panic = 3,
    /// `wall_clock() -> ns`: nanoseconds since the Unix epoch, now.
    WallClock = 4,
    /// Creates a user sandbox for a new guest address space (docs/ABI.md §user mode):
    /// `a0` = guest-physical address of its context region (page aligned, inside the user
    /// pool, `user_ctx_size(nr_vcpus)` bytes, header filled in); `a1` = guest-physical
    /// address of a 32-bit word *below* the user pool (4-byte aligned; 0 = none) that the host
    /// sets to 1 once the sandbox process is gone — the only proof of death a guest kernel
    /// may trust before reusing the space's memory (the context region is writable by the
    /// sandbox). Returns a space handle (>= 0). The sandbox starts asynchronously; its slots
    /// take requests once it is up.
    SpaceCreate = 5,
    /// Ends the user sandbox `a0` (a handle from `SpaceCreate`): the host kills and reaps it.
    SpaceDestroy = 6,
    /// Reads console input: up to `a1` bytes into guest-physical `a0`. Returns the count,
    /// 0 at end of input, or `Busy` when nothing is buffered (the host raises
    /// `pending::INPUT` when input arrives).
    ConsoleRead = 7,
    /// Lists a directory of the host root shared with `--rootfs` (docs/ABI.md §hostfs).
    HostfsList = 8,
    /// Reads a regular file of the host root shared with `--rootfs` (docs/ABI.md §hostfs).
    HostfsRead = 9,
    /// `volume_op(req_gpa, resp_gpa) -> 0`: one operation on a writable host directory
    /// (`--volume`; docs/ABI.md §volumes, `crate::volume`).
    VolumeOp = 10,
    /// `NetSocket(domain, type) -> handle`: a host socket (docs/ABI.md §net, [`crate::net`]).
    NetSocket = 11,
    /// `NetBind(h, addr_gpa)`.
    NetBind = 12,
    /// `NetListen(h, backlog)`.
    NetListen = 13,
    /// `NetAccept(h, addr_gpa) -> handle`.
    NetAccept = 14,
    /// `NetConnect(h, addr_gpa)`.
    NetConnect = 15,
    /// `NetSend(h, buf_gpa, len, addr_gpa) -> bytes`.
    NetSend = 16,
    /// `NetRecv(h, buf_gpa, len, addr_gpa, flags) -> bytes`.
    NetRecv = 17,
    /// `NetShutdown(h, how)`.
    NetShutdown = 18,
    /// `NetClose(h)`.
    NetClose = 19,
    /// `NetPoll(h, events) -> revents`.
    NetPoll = 20,
    /// `NetName(h, peer, addr_gpa)`.
    NetName = 21,
    /// `NetSetOpt(h, level, name, value)`.
    NetSetOpt = 22,
    /// `NetGetOpt(h, level, name) -> value`.
    NetGetOpt = 23,
    /// `NetPublished(rec_gpa) -> handle`: the next `--publish` connection.
    NetPublished = 24,
    /// `ExecFetch(buf_gpa, buf_len) -> len`: the next queued exec request (docs/ABI.md
    /// §exec, [`crate::exec`]); `Busy` when none.
    ExecFetch = 25,
    /// `ExecStatus(session, kind, value) -> 0`: an exec session's program started, could not
    /// start, or ended ([`crate::exec::status`]).
    ExecStatus = 26,
    /// `ExecWrite(session, stream, buf_gpa, len) -> n`: output of an exec session's program;
    /// `Busy` while the host's buffer is full.
    ExecWrite = 27,
    /// `ExecRead(session, buf_gpa, len) -> n`: input of an exec session's program; 0 at its
    /// end, `Busy` while none is buffered.
    ExecRead = 28,
    /// `ExecTermSize(session) -> (rows << 16) | cols`: the size the host last gave an exec
    /// session's terminal.
    ExecTermSize = 29,
    /// Looks up one entry of the host root shared with `--rootfs` (docs/ABI.md §hostfs;
    /// ABI v6).
    HostfsLookup = 30,
    /// `SignalTake() -> set`: the signals the host sent to the guest's init since the last
    /// call (bit `n - 1`: signal `n`, 1..=63), cleared as they are taken. The host raises
    /// `pending::SIGNAL` when one arrives (docs/ABI.md §signals).
    SignalTake = 31,
    /// `ConsoleWinsize() -> (rows << 16) | cols`: the console terminal's size as the host last
    /// set it (0: never set; the boot arguments' size holds). The host raises
    /// `pending::CONSOLE_SIZE` when it changes (an OCI container's terminal resized by its
    /// engine; docs/ABI.md §12).
    ConsoleWinsize = 32,
    /// `ExecSignalTake(session) -> set`: the signals the host sent to an exec session's
    /// program since the last call (bit `n - 1`: signal `n`, 1..=63), cleared as taken; the
    /// host raises `pending::EXEC` when one arrives (docs/ABI.md §exec; ABI v6).
    ExecSignalTake = 33,
    /// `TaskLimitTake() -> limit`: the task limit the host set since the last call (cleared
    /// as taken): 0 = nothing new, [`crate::resources::TASK_LIMIT_NONE`] = the kernel's own
    /// ceiling only, else the limit. Raised with `pending::RESOURCES` (docs/ABI.md
    /// §resources; ABI v6).
    TaskLimitTake = 34,
    /// `StatsReport(rec_gpa) -> 0`: the guest's figures, a [`crate::resources::GuestStats`]
    /// at `rec_gpa`, asked for with `pending::RESOURCES` (docs/ABI.md §resources; ABI v6).
    StatsReport = 35,
    /// `ChannelSend(index, buf_gpa, len) -> n`: bytes into channel `index`'s ring towards
    /// the peer tenant (docs/ABI.md §channels, [`crate::channel`]).
    ChannelSend = 36,
    /// `ChannelRecv(index, buf_gpa, len) -> n`: bytes from channel `index`'s ring from the
    /// peer tenant; 0 at the end of its stream.
    ChannelRecv = 37,
    /// `ChannelCtl(index, op, arg)`: poll or shut one side of channel `index`
    /// ([`crate::channel::op`]).
    ChannelCtl = 38,
    /// `BalloonTake() -> pages`: the balloon target, how many pages of guest memory the host
    /// wants the guest not to use (not cleared: the same until the host changes it). Raised
    /// with `pending::BALLOON` (docs/ABI.md §balloon; ABI v6).
    BalloonTake = 43,
    /// `DiskTake(event_gpa) -> 1 | 0`: the next disk event (attach or detach a disk),
    /// a [`crate::disk::DiskEvent`] at `event_gpa`; 0 when none waits. Raised with
    /// `pending::DISK` (docs/ABI.md §disks).
    DiskTake = 39,
    /// `DiskSubmit(slot, ring_gpa, count) -> count`: the disk doorbell: performs `count`
    /// [`crate::disk::DiskDesc`]s at `ring_gpa` and writes their status (docs/ABI.md §disks).
    DiskSubmit = 40,
    /// `DiskReport(slot, generation, errno) -> 0`: the guest's answer to a disk event
    /// (docs/ABI.md §disks).
    DiskReport = 41,
    /// `BalloonReport(ranges_gpa, count, status) -> 0`: `count` (at most
    /// [`crate::balloon::MAX_RANGES`]) [`crate::balloon::BalloonRange`]s at `ranges_gpa`,
    /// released or reclaimed pages, and a [`crate::balloon::status`]. The host checks them
    /// all before it applies any (docs/ABI.md §balloon; ABI v6).
    BalloonReport = 44,
    /// `SnapshotPark(online) -> verdict`: this vCPU is parked for a snapshot (docs/ABI.md
    /// §snapshot): every context of the guest is in guest memory and this vCPU runs nothing
    /// until the call returns. `online` is the number of vCPUs the guest runs (the host waits
    /// for that many parks). Returns [`crate::snapshot::verdict::CONTINUE`] when the tenant
    /// goes on in this process; a tenant that is stopped after its snapshot never returns.
    SnapshotPark = 42,
    /// `SnapshotResumed(parked) -> 0`: a restored guest runs again: every vCPU left its park
    /// point and the guest has re-created what lived outside its memory (docs/ABI.md
    /// §snapshot). `parked` is the number of vCPUs resumed.
    SnapshotResumed = 46,
    /// `HandoverTake() -> version`: the hand-over record version the host asks for (the
    /// highest both the running and the new kernel image declare), cleared as taken; 0:
    /// nothing asked. Raised with `pending::HANDOVER` (docs/ABI.md §handover).
    HandoverTake = 47,
    /// `HandoverRecord(gpa, len) -> 0`: the guest's hand-over record
    /// ([`crate::handover::Record`]), `len` bytes at `gpa` in guest memory; `len` 0: the
    /// guest could not write one (`gpa` is then an [`HcError`] code, negated). The host
    /// copies and checks it before it believes anything in it (docs/ABI.md §handover).
    HandoverRecord = 48,
    /// `HandoverAdopted(status, gpa, len) -> 0`: a kernel booted to adopt a hand-over
    /// record (boot command [`crate::bootargs::command::ADOPT`]) says whether it adopts it:
    /// `status` [`crate::handover::adopt_status::ADOPTS`], or
    /// [`crate::handover::adopt_status::REFUSES`] with the reason, `len` (at most
    /// [`crate::handover::MAX_ADOPT_REASON`]) bytes of text at `gpa` (docs/ABI.md
    /// §handover). Once per boot; refused unless the host offered a record.
    HandoverAdopted = 49,
    /// `HandoverFetch(gpa, len) -> record length`: copies the hand-over record the host
    /// offers to an adopting kernel (the running kernel's record, checked whole by the host)
    /// to `gpa`, when `len` holds it; with a smaller `len` copies nothing. Either way the
    /// answer is the record's length. `InvalidArgument`: the host offers none (docs/ABI.md
    /// §handover).
    HandoverFetch = 50,
    /// `DiskMounted(slot, path_gpa, path_len, flags) -> 0`: the guest tells the host where
    /// disk `slot` is mounted now (`path_len` 0 and `flags` 0: not mounted), with
    /// [`crate::disk::mounted`] flags: read-only, by a guest program, lazily detached. The
    /// host checks it all and shows it (`pvmux disk ls`); nothing else depends on it
    /// (docs/ABI.md §disks).
    DiskMounted = 52,
    /// `WindowOpen(path_gpa, path_len, size, mtime_ns) -> slot`: a read-only window on a
    /// regular file of the host share (docs/ABI.md §windows, [`crate::window`]).
    WindowOpen = 53,
    /// `WindowRead(slot, offset, buf_gpa, len) -> bytes`: bytes of a window's file into
    /// guest memory (docs/ABI.md §windows).
    WindowRead = 54,
}

impl Hypercall {
    /// Decodes a call number; `None` for numbers this ABI version does not know.
    pub const fn from_raw(nr: u32) -> Option<Self> {
        Some(match nr {
            0 => Self::Nop,
            1 => Self::ConsoleWrite,
            2 => Self::Shutdown,
            3 => Self::Panic,
            4 => Self::WallClock,
            5 => Self::SpaceCreate,
            6 => Self::SpaceDestroy,
            7 => Self::ConsoleRead,
            8 => Self::HostfsList,
            9 => Self::HostfsRead,
            10 => Self::VolumeOp,
            11 => Self::NetSocket,
            12 => Self::NetBind,
            13 => Self::NetListen,
            14 => Self::NetAccept,
            15 => Self::NetConnect,
            16 => Self::NetSend,
            17 => Self::NetRecv,
            18 => Self::NetShutdown,
            19 => Self::NetClose,
            20 => Self::NetPoll,
            21 => Self::NetName,
            22 => Self::NetSetOpt,
            23 => Self::NetGetOpt,
            24 => Self::NetPublished,
            25 => Self::ExecFetch,
            26 => Self::ExecStatus,
            27 => Self::ExecWrite,
            28 => Self::ExecRead,
            29 => Self::ExecTermSize,
            30 => Self::HostfsLookup,
            31 => Self::SignalTake,
            32 => Self::ConsoleWinsize,
            33 => Self::ExecSignalTake,
            34 => Self::TaskLimitTake,
            35 => Self::StatsReport,
            36 => Self::ChannelSend,
            37 => Self::ChannelRecv,
            38 => Self::ChannelCtl,
            39 => Self::DiskTake,
            40 => Self::DiskSubmit,
            41 => Self::DiskReport,
            43 => Self::BalloonTake,
            44 => Self::BalloonReport,
            42 => Self::SnapshotPark,
            46 => Self::SnapshotResumed,
            47 => Self::HandoverTake,
            48 => Self::HandoverRecord,
            49 => Self::HandoverAdopted,
            50 => Self::HandoverFetch,
            52 => Self::DiskMounted,
            53 => Self::WindowOpen,
            54 => Self::WindowRead,
            _ => return None,
        })
    }
}

/// Errors a hypercall or stub call returns, as negative values in `rax`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[repr(i64)]
pub enum HcError {
    /// No such call.
    UnknownCall = -1,
    /// An argument is out of range or malformed.
    InvalidArgument = -2,
    /// A guest address range lies outside guest memory (or the window).
    BadAddress = -3,
    /// A length exceeds the call's limit.
    TooLarge = -4,
    /// The object is busy (e.g. starting a vCPU that is already running).
    Busy = -5,
    /// The host ran out of a resource (e.g. host mappings) and could not recover.
    NoResources = -6,
}

impl HcError {
    /// Decodes a negative return value; `None` for non-errors and unknown codes.
    pub const fn from_ret(ret: i64) -> Option<Self> {
        Some(match ret {
            -1 => Self::UnknownCall,
            -2 => Self::InvalidArgument,
            -3 => Self::BadAddress,
            -4 => Self::TooLarge,
            -5 => Self::Busy,
            -6 => Self::NoResources,
            _ => return None,
        })
    }

    /// The value placed in `rax`.
    pub const fn to_ret(self) -> i64 {
        self as i64
    }
}
