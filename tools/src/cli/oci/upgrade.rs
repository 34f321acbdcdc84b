//! `pvmux upgrade NAME --kernel NEW`: kernel hand-over (issue 14 item 5;
//! [`pvmux_host::TenantHandle::upgrade`], docs/MULTIKERNEL.md "Kernel hand-over"). The CLI
//! sends an `upgrade JSON` request ([`UpgradeRequest`]: the image's absolute path) to the
//! tenant's monitor (`ctl.sock`); the monitor checks the image and the record versions, asks
//! the guest for its hand-over record, checks it, has the new kernel check it, and switches
//! kernels; it answers with what the record holds and how it went ([`answer`]). Until the
//! switch the running kernel keeps running whatever the answer; after it, the new kernel
//! runs the same processes (or, if it did not adopt them, the old kernel again).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use pvmux_host::upgrade::{self, Inventory, UpgradeError};
use pvmux_host::TenantHandle;
use pvmux_hypercalls::handover::{
    fd_kind, fd_state, inet_flags, inet_state, process_flags, shm_area_flags, socket_flags,
    socket_state, thread_state, timer_clock, timer_kind, timer_notify, until_nul, TimerEntry,
    NO_RESTART,
};

use super::control::{self, Request};
use super::state::{StateDir, Status};
use super::{Format, GlobalArgs};

/// `pvmux upgrade`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// Output format: the decision and what the running kernel's hand-over record holds
    /// (`json`: every process, memory area and descriptor it lists, and with record
    /// version 2 what it carries of each: threads, pages, descriptors, pipes, mappings).
    #[arg(short = 'f', long, value_enum, default_value = "table")]
    pub format: Format,
    /// The new kernel image (an ELF file, as `pvmux run --kernel`). It is checked first; a
    /// bad image, or one whose hand-over record versions do not meet the running kernel's,
    /// is refused before the running kernel is asked anything.
    #[arg(long, value_name = "FILE")]
    pub kernel: PathBuf,
    /// Kernel words for the new kernel's boot (as `pvmux run --cmdline`), e.g.
    /// `adopt-refuse`: the new kernel then refuses the record (the refusal path).
    #[arg(long, value_name = "WORDS")]
    pub cmdline: Option<String>,
    /// The tenant (its name or container id in --root).
    pub id: String,
}

/// The request: where the new image is (the monitor reads it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct UpgradeRequest {
    /// Absolute path of the new kernel image.
    pub(crate) kernel: PathBuf,
    /// Kernel words for the new kernel's boot.
    #[serde(default)]
    pub(crate) cmdline: Option<String>,
}

/// The monitor's answer once the guest's record was checked.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct UpgradeAnswer {
    /// Whether the new kernel runs now.
    upgraded: bool,
    /// Why not.
    refusal: Option<String>,
    /// The running kernel's release.
    running: String,
    /// The new kernel's release.
    new: String,
    /// The record version used.
    version: u32,
    /// From asking the guest to the checked record (ms).
    record_ms: f64,
    /// How long the guest's user threads were stopped (ms): for the switch, from the old
    /// kernel's freeze to the adopting kernel's verdict; without one, while the record was
    /// written (`UpgradeReport::pause`).
    pause_ms: f64,
    /// The switch, when every check passed.
    #[serde(default)]
    switch: Option<SwitchJson>,
    /// What the record holds.
    record: RecordSummary,
    /// The new kernel's own check of the record (booted in a scratch tenant), when the
    /// record names no blocker.
    #[serde(default)]
    adopt_check: Option<AdoptCheckJson>,
}

/// How the switch went.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SwitchJson {
    /// The release of the kernel that adopted the record (`None`: none did).
    adopted_by: Option<String>,
    /// Why the new kernel did not adopt it, when the old one did.
    fell_back: Option<String>,
    /// Why no kernel adopted it (the tenant ended).
    failed: Option<String>,
    /// From the old kernel's freeze to the adopting kernel's verdict (ms).
    pause_ms: f64,
    /// From the record to the verdict (ms): the old kernel stopped, the new one built,
    /// booted and adopting.
    switch_ms: f64,
    /// The switch's record (bytes).
    record_bytes: usize,
    /// Where the switch's time went: each step with its time since the one before (ms).
    #[serde(default)]
    steps: Vec<(String, f64)>,
}

/// The new kernel's verdict on the record.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct AdoptCheckJson {
    /// It would adopt it.
    adopts: bool,
    /// Why not.
    reason: Option<String>,
    /// From booting it to its verdict (ms).
    ms: f64,
}

/// A hand-over record, as JSON.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RecordSummary {
    release: String,
    bytes: usize,
    processes: Vec<ProcessJson>,
    threads: Vec<ThreadJson>,
    vmas: usize,
    fds: Vec<FdJson>,
    blockers: Vec<String>,
    /// Record version 2: what it carries of each live process.
    #[serde(default)]
    carried: Vec<CarriedJson>,
    /// Record version 2: pipes, by id, with the bytes buffered in each.
    #[serde(default)]
    pipes: Vec<PipeJson>,
    /// Record version 2: processes not reaped, with their wait status.
    #[serde(default)]
    zombies: Vec<ZombieJson>,
    /// Record version 2: `AF_UNIX` sockets, by id.
    #[serde(default)]
    sockets: Vec<SocketJson>,
    /// Record version 2: the host sockets (`--net host`) it names, by handle; the host
    /// keeps them across the switch.
    #[serde(default)]
    host_sockets: Vec<u64>,
    /// Record version 2: the guest's loopback `AF_INET`/`AF_INET6` sockets, by id.
    #[serde(default)]
    inet_sockets: Vec<InetSocketJson>,
    /// Record version 2: the in-memory filesystem (sections 21-23), if carried.
    #[serde(default)]
    files: Option<FilesJson>,
    /// Record version 2: pages of anonymous shared memory carried by frame (section 30).
    #[serde(default)]
    shared_pages: u64,
    /// Record version 3: the advisory file locks held (section 43).
    #[serde(default)]
    locks: Vec<LockJson>,
    /// Record version 4: the kernel's relays of `--publish` connections (section 46).
    #[serde(default)]
    relays: Vec<RelayJson>,
    /// Record version 5: the disks attached to the kernel (section 47).
    #[serde(default)]
    disks: Vec<DiskJson>,
    /// Record version 6: the exec sessions in progress (section 48).
    #[serde(default)]
    exec_sessions: Vec<ExecSessionJson>,
}

/// An exec session a version 6 record carries (the host keeps the session itself).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ExecSessionJson {
    /// The host's session id.
    session: u64,
    /// The program's guest pid.
    pid: i32,
    /// Its wait status, if it ended (its output is still being relayed).
    exited: Option<i32>,
    /// Bytes the relay holds: input not yet given to the program, and its standard output
    /// and standard error not yet given to the host.
    to_guest: u32,
    to_stdout: u32,
    to_stderr: u32,
}

/// A disk a version 5 record carries (its image stays the host's, in the same slot).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct DiskJson {
    /// Its name in the guest (`vda`, ...).
    name: String,
    /// Size in bytes.
    size: u64,
    /// The host opened it read-only.
    read_only: bool,
    /// Where it is mounted (empty: not mounted).
    mounted_at: String,
    /// `pvmux` (the kernel, at the path the host named) or `guest` (a program's
    /// `mount(2)`); empty when not mounted.
    mounted_by: String,
    /// The mount is read-only.
    mount_read_only: bool,
}

/// A relay of a published connection or UDP flow a version 4 record carries.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RelayJson {
    /// The host's handle of the connection or flow (kept across the switch).
    handle: u64,
    /// `tcp` or `udp`.
    proto: String,
    /// The guest port it relays to.
    port: u16,
    /// Its loopback socket (an `inet_sockets` id), if it has one yet.
    socket: Option<u64>,
    /// Bytes read from the host not yet given to the guest.
    to_guest: u32,
    /// Bytes read from the guest not yet sent to the host.
    to_host: u32,
    /// Which sides ended their sending (`host`, `guest`).
    ended: Vec<String>,
}

/// An advisory lock a version 3 record carries.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct LockJson {
    /// `posix`, `ofd` or `flock`.
    kind: String,
    /// `read` or `write`.
    mode: String,
    /// A POSIX lock's process.
    pid: Option<i32>,
    /// The open file description it names (the holder, or one of a POSIX holder's).
    description: u64,
    start: u64,
    /// The last byte; `None`: to the end of the file.
    end: Option<u64>,
}

/// What a version 2 record carries of the in-memory filesystem.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct FilesJson {
    /// Inodes (directories, files, links, socket names), with their numbers.
    inodes: usize,
    /// Names in directories.
    names: usize,
    /// Stored pages of files, carried by frame.
    pages: u64,
}

/// A loopback internet socket a version 2 record carries.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct InetSocketJson {
    id: u64,
    /// `tcp` or `udp`.
    proto: String,
    /// `inet` or `inet6`.
    family: String,
    /// `closed`, `listening` or `established`.
    state: String,
    /// The bound address and port (`[addr]:port`; IPv4 as mapped), if bound.
    local: Option<String>,
    /// The peer's address and port (TCP established, UDP `connect`ed).
    remote: Option<String>,
    /// The other end of an open TCP connection.
    peer: Option<u64>,
    /// A connection not accepted yet: its listener.
    listener: Option<u64>,
    /// Bit 0: receiving shut down; bit 1: sending shut down.
    shutdown: u32,
    /// Messages queued on it (a TCP socket's unread bytes count as one), and their bytes.
    queued: usize,
    queued_bytes: usize,
}

/// `[addr]:port` of an address as a record carries it (IPv6, IPv4 as mapped).
fn inet_ep(ip: [u8; 16], port: u16) -> String {
    format!("[{}]:{port}", std::net::Ipv6Addr::from(ip))
}

/// An `AF_UNIX` socket a version 2 record carries.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SocketJson {
    id: u64,
    /// `stream`, `dgram` or `seqpacket`.
    #[serde(rename = "type")]
    ty: String,
    /// `unconnected`, `listening` or `connected`.
    state: String,
    /// The connected peer (a datagram socket's default destination).
    peer: Option<u64>,
    /// A connection not accepted yet: its listener.
    listener: Option<u64>,
    /// The bound address's name (escaped; an abstract one starts with `\x00`).
    name: String,
    /// It holds that name (`bind`), rather than showing its listener's.
    bound: bool,
    /// Its last descriptor is closed (kept as a peer that is gone).
    closed: bool,
    /// Bit 0: receiving shut down; bit 1: sending shut down.
    shutdown: u32,
    /// Messages queued on it, and their bytes.
    queued: usize,
    queued_bytes: usize,
}

/// A process not reaped, as a version 2 record carries it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ZombieJson {
    pid: i32,
    status: i32,
}

/// A pipe a version 2 record carries.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct PipeJson {
    id: u64,
    buffered: usize,
}

/// A descriptor a version 2 record carries.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CarriedFdJson {
    fd: i32,
    /// `host-file`, `volume-file`, `pipe-read`, `pipe-write`, `console`, `device`,
    /// `unix-socket`, `inet-socket`, `eventfd`, `timerfd`, `signalfd`, `epoll` or
    /// `memory-file` (an in-memory file or directory, by inode: `inode`).
    kind: String,
    cloexec: bool,
    /// `F_GETFL`.
    flags: u32,
    pos: u64,
    /// The same for descriptors sharing an open file description.
    description: u64,
    /// A pipe end's pipe.
    pipe: Option<u64>,
    /// A socket's id (`sockets`, or `inet_sockets` for an `inet-socket`).
    #[serde(default)]
    socket: Option<u64>,
    /// An eventfd's counter, a signalfd's signal mask.
    #[serde(default)]
    event: Option<u64>,
    /// A `memory-file`'s inode number.
    #[serde(default)]
    inode: Option<u64>,
    path: String,
}

/// What a version 2 record carries of a live process.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CarriedJson {
    pid: i32,
    /// Real, effective, saved, filesystem.
    uids: [u32; 4],
    /// Real, effective, saved, filesystem.
    gids: [u32; 4],
    umask: u32,
    cwd: String,
    exe: String,
    brk: u64,
    /// Resident pages carried (their frames).
    pages: u64,
    /// In runs of consecutive frames.
    page_runs: usize,
    /// Signal dispositions other than the default.
    sigactions: usize,
    threads: Vec<CarriedThreadJson>,
    fds: Vec<CarriedFdJson>,
    /// Private mappings of host and volume files: the paths, by area.
    file_areas: Vec<String>,
    /// Its `MAP_SHARED` areas (record section 29).
    #[serde(default)]
    shared_areas: Vec<SharedAreaJson>,
    /// Its timers (record section 16).
    #[serde(default)]
    timers: Vec<CarriedTimerJson>,
}

/// What a version 2 record carries of a `MAP_SHARED` area.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SharedAreaJson {
    /// The area's first byte.
    start: u64,
    /// Anonymous shared memory: the object's number in the record (the same in every
    /// process sharing it); `None` for a file's.
    object: Option<u64>,
    /// An in-memory file's: its inode and the path it was mapped by.
    inode: Option<u64>,
    path: Option<String>,
    /// The object's page at `start`.
    pgoff: u64,
}

/// What a version 2 record carries of a timer.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CarriedTimerJson {
    /// `real` (`ITIMER_REAL`, `alarm`), `virtual`, `prof` or `posix`.
    kind: String,
    /// A POSIX timer's id (0 for an interval timer).
    id: i32,
    /// `realtime`, `monotonic`, `process-cpu` or `process-cpu-user`.
    clock: String,
    /// `none`, `signal` (to the process) or `thread`.
    notify: String,
    /// The signal an expiry sends (0: none).
    signo: u32,
    /// `notify` `thread`: the thread.
    tid: Option<i32>,
    /// `sigev_value`.
    value: u64,
    /// The next expiry (none: disarmed): a wall clock's in guest monotonic ns, a CPU
    /// clock's as CPU ns left.
    next_ns: Option<u64>,
    interval_ns: u64,
    /// What `timer_getoverrun` reports.
    overrun: i32,
}

/// What a version 2 record carries of a thread.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CarriedThreadJson {
    tid: i32,
    state: String,
    rip: u64,
    rsp: u64,
    rax: u64,
    rflags: u64,
    fs_base: u64,
    clear_child_tid: u64,
    sigmask: u64,
    /// The system call it re-issues on resuming, if any.
    restart: Option<u64>,
    /// For a sleep it re-issues: when it ends (guest monotonic ns): it goes on with the
    /// time it had left.
    sleeps_until_ns: Option<u64>,
    /// Bytes of its FPU area (0: the initial state).
    fpu_bytes: u32,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ProcessJson {
    pid: i32,
    ppid: i32,
    pgid: i32,
    sid: i32,
    uid: u32,
    gid: u32,
    threads: u32,
    zombie: bool,
    /// Its address space runs in the kernel sandbox (`--user-isolation none`).
    #[serde(default)]
    in_process: bool,
    resident_pages: u64,
    comm: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ThreadJson {
    tid: i32,
    pid: i32,
    /// `user` (stopped in user mode: `rip`, `rsp`, `fs_base` are its registers), `syscall`
    /// (blocked in a system call) or `running` (did not stop in time).
    state: String,
    rip: u64,
    rsp: u64,
    fs_base: u64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct FdJson {
    pid: i32,
    fd: i32,
    kind: String,
    name: String,
}

/// A carried timer (checked by `Record::check`) in words.
fn timer_json(t: &TimerEntry) -> CarriedTimerJson {
    CarriedTimerJson {
        kind: match t.kind {
            timer_kind::ITIMER_REAL => "real",
            timer_kind::ITIMER_VIRTUAL => "virtual",
            timer_kind::ITIMER_PROF => "prof",
            _ => "posix",
        }
        .to_owned(),
        id: t.id,
        clock: match t.clock {
            timer_clock::REALTIME => "realtime",
            timer_clock::MONOTONIC => "monotonic",
            timer_clock::PROCESS_CPU => "process-cpu",
            _ => "process-cpu-user",
        }
        .to_owned(),
        notify: match t.notify {
            timer_notify::NONE => "none",
            timer_notify::SIGNAL => "signal",
            _ => "thread",
        }
        .to_owned(),
        signo: t.signo,
        tid: (t.notify == timer_notify::THREAD).then_some(t.tid),
        value: t.value,
        next_ns: (t.next != 0).then_some(t.next),
        interval_ns: t.interval,
        overrun: t.overrun,
    }
}

/// Guest text, escaped for a terminal.
fn text(b: &[u8]) -> String {
    pvmux_host::escape::escape_guest(until_nul(b), pvmux_host::escape::Mode::Line)
}

impl From<&Inventory> for RecordSummary {
    fn from(i: &Inventory) -> Self {
        Self {
            release: i.release.clone(),
            bytes: i.len,
            processes: i
                .processes
                .iter()
                .map(|p| ProcessJson {
                    pid: p.pid,
                    ppid: p.ppid,
                    pgid: p.pgid,
                    sid: p.sid,
                    uid: p.uid,
                    gid: p.gid,
                    threads: p.nr_threads,
                    zombie: p.flags & process_flags::ZOMBIE != 0,
                    in_process: p.flags & process_flags::IN_PROCESS != 0,
                    resident_pages: p.resident_pages,
                    comm: text(&p.comm),
                })
                .collect(),
            threads: i
                .threads
                .iter()
                .map(|t| ThreadJson {
                    tid: t.tid,
                    pid: t.pid,
                    state: state_name(t.state).to_owned(),
                    rip: t.rip,
                    rsp: t.rsp,
                    fs_base: t.fs_base,
                })
                .collect(),
            vmas: i.vmas.len(),
            fds: i
                .fds
                .iter()
                .map(|f| FdJson {
                    pid: f.pid,
                    fd: f.fd,
                    kind: match f.kind {
                        fd_kind::FILE => "file",
                        fd_kind::PIPE => "pipe",
                        fd_kind::SOCKET => "socket",
                        fd_kind::TTY => "tty",
                        _ => "other",
                    }
                    .to_owned(),
                    name: text(&f.name),
                })
                .collect(),
            blockers: i.blocker_texts(),
            host_sockets: i.host_sockets.clone(),
            relays: i
                .relays
                .iter()
                .map(|r| {
                    use pvmux_hypercalls::handover::relay_flags;
                    let ended = [
                        (relay_flags::HOST_EOF, "host"),
                        (relay_flags::GUEST_EOF, "guest"),
                    ];
                    RelayJson {
                        handle: r.handle,
                        proto: if r.proto == pvmux_hypercalls::net::PUBLISH_UDP {
                            "udp"
                        } else {
                            "tcp"
                        }
                        .to_owned(),
                        port: r.port,
                        socket: (r.socket != 0).then_some(r.socket),
                        to_guest: r.to_guest.len,
                        to_host: r.to_host.len,
                        ended: ended
                            .iter()
                            .filter(|(f, _)| r.flags & f != 0)
                            .map(|(_, s)| (*s).to_owned())
                            .collect(),
                    }
                })
                .collect(),
            exec_sessions: i
                .exec_sessions
                .iter()
                .map(|e| ExecSessionJson {
                    session: e.session,
                    pid: e.pid,
                    exited: (e.flags & pvmux_hypercalls::handover::exec_session_flags::EXITED != 0)
                        .then_some(e.status),
                    to_guest: e.to_guest.len,
                    to_stdout: e.to_stdout.len,
                    to_stderr: e.to_stderr.len,
                })
                .collect(),
            disks: i
                .disks
                .iter()
                .map(|(d, path)| {
                    use pvmux_hypercalls::handover::disk_flags;
                    let mounted = d.flags & disk_flags::MOUNTED != 0;
                    DiskJson {
                        name: format!("vd{}", char::from(b'a' + (d.slot % 26) as u8)),
                        size: d.sectors * pvmux_hypercalls::disk::SECTOR_SIZE,
                        read_only: d.flags & disk_flags::READ_ONLY != 0,
                        mounted_at: path.clone(),
                        mounted_by: match (mounted, d.flags & disk_flags::BY_PROGRAM != 0) {
                            (false, _) => "",
                            (true, false) => "pvmux",
                            (true, true) => "guest",
                        }
                        .to_owned(),
                        mount_read_only: d.flags & disk_flags::MOUNT_READ_ONLY != 0,
                    }
                })
                .collect(),
            locks: i
                .locks
                .iter()
                .map(|l| {
                    use pvmux_hypercalls::handover::{lock_kind, lock_mode, LOCK_OFFSET_MAX};
                    LockJson {
                        kind: match l.kind {
                            lock_kind::POSIX => "posix",
                            lock_kind::OFD => "ofd",
                            _ => "flock",
                        }
                        .to_owned(),
                        mode: if l.mode == lock_mode::WRITE {
                            "write"
                        } else {
                            "read"
                        }
                        .to_owned(),
                        pid: (l.kind == lock_kind::POSIX).then_some(l.owner),
                        description: l.description,
                        start: l.start,
                        end: (l.end != LOCK_OFFSET_MAX).then_some(l.end),
                    }
                })
                .collect(),
            carried: i
                .states
                .iter()
                .map(|(st, cwd, exe)| {
                    let runs = i.pages.iter().filter(|r| r.pid == st.pid);
                    CarriedJson {
                        pid: st.pid,
                        uids: st.uids,
                        gids: st.gids,
                        umask: st.umask,
                        cwd: cwd.clone(),
                        exe: exe.clone(),
                        brk: st.brk,
                        pages: runs.clone().map(|r| r.pages).sum(),
                        page_runs: runs.count(),
                        sigactions: i.sigactions.iter().filter(|a| a.pid == st.pid).count(),
                        threads: i
                            .thread_states
                            .iter()
                            .filter(|t| t.pid == st.pid)
                            .map(|t| CarriedThreadJson {
                                tid: t.tid,
                                state: state_name(t.state).to_owned(),
                                rip: t.regs.rip,
                                rsp: t.regs.rsp,
                                rax: t.regs.rax,
                                rflags: t.regs.rflags,
                                fs_base: t.fs_base,
                                clear_child_tid: t.clear_child_tid,
                                sigmask: t.sigmask,
                                restart: (t.restart_nr != NO_RESTART).then_some(t.restart_nr),
                                sleeps_until_ns: i
                                    .restarts
                                    .iter()
                                    .find(|r| r.tid == t.tid)
                                    .map(|r| r.target_ns),
                                fpu_bytes: t.fpu.len,
                            })
                            .collect(),
                        fds: i
                            .fd_states
                            .iter()
                            .filter(|(f, _)| f.pid == st.pid)
                            .map(|(f, path)| {
                                let pipe =
                                    matches!(f.kind, fd_state::PIPE_READ | fd_state::PIPE_WRITE);
                                let socket =
                                    matches!(f.kind, fd_state::UNIX_SOCKET | fd_state::INET_SOCKET);
                                CarriedFdJson {
                                    fd: f.fd,
                                    kind: match f.kind {
                                        fd_state::HOST_FILE => "host-file",
                                        fd_state::VOLUME_FILE => "volume-file",
                                        fd_state::PIPE_READ => "pipe-read",
                                        fd_state::PIPE_WRITE => "pipe-write",
                                        fd_state::CONSOLE => "console",
                                        fd_state::UNIX_SOCKET => "unix-socket",
                                        fd_state::INET_SOCKET => "inet-socket",
                                        fd_state::EVENTFD => "eventfd",
                                        fd_state::TIMERFD => "timerfd",
                                        fd_state::SIGNALFD => "signalfd",
                                        fd_state::EPOLL => "epoll",
                                        fd_state::INOTIFY => "inotify",
                                        fd_state::SYNTHETIC => "generated",
                                        fd_state::MEMORY_FILE => "memory-file",
                                        _ => "device",
                                    }
                                    .to_owned(),
                                    cloexec: f.fd_flags & 1 != 0,
                                    flags: f.status_flags,
                                    pos: f.pos,
                                    description: f.description,
                                    pipe: pipe.then_some(f.object),
                                    socket: socket.then_some(f.object),
                                    event: matches!(f.kind, fd_state::EVENTFD | fd_state::SIGNALFD)
                                        .then_some(f.object),
                                    inode: (f.kind == fd_state::MEMORY_FILE).then_some(f.object),
                                    path: path.clone(),
                                }
                            })
                            .collect(),
                        file_areas: i
                            .file_areas
                            .iter()
                            .filter(|(a, _)| a.pid == st.pid)
                            .map(|(_, path)| path.clone())
                            .collect(),
                        shared_areas: i
                            .shared_areas
                            .iter()
                            .filter(|(a, _)| a.pid == st.pid)
                            .map(|(a, path)| {
                                let file = a.flags & shm_area_flags::FILE != 0;
                                SharedAreaJson {
                                    start: a.start,
                                    object: (!file).then_some(a.object),
                                    inode: file.then_some(a.object),
                                    path: file.then(|| path.clone()),
                                    pgoff: a.pgoff,
                                }
                            })
                            .collect(),
                        timers: i
                            .timers
                            .iter()
                            .filter(|t| t.pid == st.pid)
                            .map(timer_json)
                            .collect(),
                    }
                })
                .collect(),
            zombies: i
                .zombies
                .iter()
                .map(|z| ZombieJson {
                    pid: z.pid,
                    status: z.status,
                })
                .collect(),
            pipes: i
                .pipes
                .iter()
                .map(|(p, n)| PipeJson {
                    id: p.id,
                    buffered: *n,
                })
                .collect(),
            sockets: i
                .sockets
                .iter()
                .map(|(s, name, queued, bytes)| SocketJson {
                    id: s.id,
                    ty: match s.ty {
                        1 => "stream",
                        2 => "dgram",
                        _ => "seqpacket",
                    }
                    .to_owned(),
                    state: match s.state {
                        socket_state::LISTENING => "listening",
                        socket_state::CONNECTED => "connected",
                        _ => "unconnected",
                    }
                    .to_owned(),
                    peer: (s.peer != 0).then_some(s.peer),
                    listener: (s.listener != 0).then_some(s.listener),
                    name: name.clone(),
                    bound: s.flags & socket_flags::NAMED != 0,
                    closed: s.flags & socket_flags::DEAD != 0,
                    shutdown: s.shutdown,
                    queued: *queued,
                    queued_bytes: *bytes,
                })
                .collect(),
            inet_sockets: i
                .inet_sockets
                .iter()
                .map(|(s, queued, bytes)| InetSocketJson {
                    id: s.id,
                    proto: if s.proto == 6 { "tcp" } else { "udp" }.to_owned(),
                    family: if s.family == 2 { "inet" } else { "inet6" }.to_owned(),
                    state: match s.state {
                        inet_state::LISTENING => "listening",
                        inet_state::ESTABLISHED => "established",
                        _ => "closed",
                    }
                    .to_owned(),
                    local: (s.flags & inet_flags::BOUND != 0)
                        .then(|| inet_ep(s.local, s.local_port)),
                    remote: (s.state == inet_state::ESTABLISHED
                        || s.flags & inet_flags::CONNECTED_UDP != 0)
                        .then(|| inet_ep(s.remote, s.remote_port)),
                    peer: (s.peer != 0).then_some(s.peer),
                    listener: (s.listener != 0).then_some(s.listener),
                    shutdown: s.shutdown,
                    queued: *queued,
                    queued_bytes: *bytes,
                })
                .collect(),
            files: i.files.map(|f| FilesJson {
                inodes: f.inodes,
                names: f.names,
                pages: f.pages,
            }),
            shared_pages: i.shared_pages,
        }
    }
}

/// A [`thread_state`] in words.
fn state_name(s: u32) -> &'static str {
    match s {
        thread_state::USER => "user",
        thread_state::SYSCALL => "syscall",
        _ => "running",
    }
}

/// The monitor's side: reads the image, asks the host library, answers (JSON). Refusals
/// before the guest's record (a bad image, incompatible versions, no answer) are errors.
pub(crate) fn answer(
    h: &TenantHandle,
    req: &UpgradeRequest,
    sd: &StateDir,
) -> anyhow::Result<String> {
    let image = std::fs::read(&req.kernel)
        .with_context(|| format!("reading the new kernel image {}", req.kernel.display()))?;
    let report = h.upgrade(image, req.cmdline.as_deref())?;
    let refusal = match upgrade::decide(&report) {
        Ok(()) => None,
        Err(
            e @ (UpgradeError::CannotCarry(_)
            | UpgradeError::SwitchFellBack { .. }
            | UpgradeError::SwitchFailed(_)
            | UpgradeError::NewRefuses { .. }),
        ) => Some(e.to_string()),
        Err(e) => return Err(e.into()),
    };
    // A kernel that took over is the one `pvmux ps` names from now on.
    if let Some(upgrade::SwitchOutcome::Adopted {
        fell_back: None, ..
    }) = report.switch.as_ref().map(|s| &s.outcome)
    {
        let kernel = req.kernel.display().to_string();
        sd.update(|r| {
            if let Some(t) = r.tenant.as_mut() {
                t.kernel = kernel;
            }
        })?;
    }
    let switch = report.switch.as_ref().map(|s| {
        let (adopted_by, fell_back, failed) = match &s.outcome {
            upgrade::SwitchOutcome::Adopted { release, fell_back } => {
                (Some(release.clone()), fell_back.clone(), None)
            }
            upgrade::SwitchOutcome::Failed { reason } => (None, None, Some(reason.clone())),
        };
        SwitchJson {
            adopted_by,
            fell_back,
            failed,
            pause_ms: s.pause.as_secs_f64() * 1e3,
            switch_ms: s.switch_time.as_secs_f64() * 1e3,
            record_bytes: s.record_len,
            steps: s
                .steps
                .iter()
                .map(|(n, d)| (n.clone(), d.as_secs_f64() * 1e3))
                .collect(),
        }
    });
    let a = UpgradeAnswer {
        upgraded: refusal.is_none(),
        refusal,
        running: report.plan.running.clone(),
        new: report.plan.new.clone(),
        version: report.plan.version,
        record_ms: report.record_time.as_secs_f64() * 1e3,
        pause_ms: switch
            .as_ref()
            .map_or(report.pause.as_secs_f64() * 1e3, |s| s.pause_ms),
        switch,
        record: (&report.inventory).into(),
        adopt_check: report.adopt_check.as_ref().map(|c| AdoptCheckJson {
            adopts: c.verdict.is_ok(),
            reason: c.verdict.as_ref().err().cloned(),
            ms: c.time.as_secs_f64() * 1e3,
        }),
    };
    tracing::info!(upgraded = a.upgraded, "upgrade answered");
    Ok(serde_json::to_string(&a)?)
}

/// `pvmux upgrade`.
pub(crate) fn upgrade(g: &GlobalArgs, a: &UpgradeArgs) -> anyhow::Result<u8> {
    let kernel = std::fs::canonicalize(&a.kernel)
        .with_context(|| format!("the new kernel image {}", a.kernel.display()))?;
    let sd = StateDir::open(&g.root, &a.id)?;
    match sd.read()?.effective_status() {
        Status::Running => {}
        Status::Paused => bail!("{} is paused: resume it first", a.id),
        _ => bail!("{} is not running", a.id),
    }
    let payload = control::request(
        &sd.control_socket(),
        &Request::Upgrade(UpgradeRequest {
            kernel,
            cmdline: a.cmdline.clone(),
        }),
    )?;
    let ans: UpgradeAnswer =
        serde_json::from_str(&payload).context("bad answer from the monitor")?;
    if a.format == super::Format::Json {
        println!("{payload}");
    } else {
        let r = &ans.record;
        println!(
            "{}: hand-over record v{} from {} ({} bytes, {:.1} ms, user threads stopped {:.1} ms): {} processes, {} threads, {} memory areas, {} descriptors{}",
            a.id,
            ans.version,
            r.release,
            r.bytes,
            ans.record_ms,
            ans.pause_ms,
            r.processes.len(),
            r.threads.len(),
            r.vmas,
            r.fds.len(),
            if ans.version >= 2 {
                format!(
                    "; carries {} resident pages by frame{}",
                    r.carried.iter().map(|c| c.pages).sum::<u64>(),
                    r.files.as_ref().map_or(String::new(), |f| format!(
                        ", {} in-memory inodes and {} file pages by frame",
                        f.inodes, f.pages
                    ))
                )
            } else {
                String::new()
            }
        );
        if let Some(c) = &ans.adopt_check {
            match &c.reason {
                None => println!(
                    "{}: {} checked the record in {:.1} ms and would adopt it",
                    a.id, ans.new, c.ms
                ),
                Some(why) => println!(
                    "{}: {} refused the record in {:.1} ms: {why}",
                    a.id, ans.new, c.ms
                ),
            }
        }
    }
    if let Some(s) = &ans.switch {
        if a.format != super::Format::Json {
            match (&s.adopted_by, &s.fell_back) {
                (Some(k), None) => println!(
                    "{}: upgraded from {} to {k}: programs paused {:.1} ms ({})",
                    a.id,
                    ans.running,
                    s.pause_ms,
                    s.steps
                        .iter()
                        .map(|(n, ms)| format!("{n} {ms:.1} ms"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                (Some(k), Some(_)) => println!(
                    "{}: {k} adopted the record again after the new kernel did not; programs paused {:.1} ms",
                    a.id, s.pause_ms
                ),
                (None, _) => {}
            }
        }
        if let Some(why) = &s.failed {
            bail!(
                "cannot upgrade {} from {} to {}: {why}; the tenant ended (its crash report says why)",
                a.id,
                ans.running,
                ans.new
            );
        }
    }
    match ans.refusal {
        None => Ok(0),
        Some(why) => bail!(
            "cannot upgrade {} from {} to {}: {why}; {} keeps running",
            a.id,
            ans.running,
            ans.new,
            ans.running
        ),
    }
}
