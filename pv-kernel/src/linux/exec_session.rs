//! Exec sessions: programs the host starts in the running guest (`pvmux exec`, `runc exec`;
//! docs/ABI.md §exec).
//!
//! A kernel thread, `execd` (started with init), takes each request the host queued
//! (`ExecFetch`, woken by `pending::EXEC`) and starts a kernel thread per session, which
//! starts the program ([`super::task::spawn_exec`]: a process whose parent is outside the
//! guest) with three pipes as fds 0, 1 and 2 (or, for a terminal session, a pseudo-terminal
//! it leads, whose master the relay holds; stderr then goes to stdout), reports its pid (or why it could not start:
//! an errno, after a message on the session's standard error), then relays: host input
//! (`ExecRead`) into the stdin pipe, the stdout and stderr pipes to the host (`ExecWrite`),
//! until the program has ended and both output pipes are closed by everyone; then it
//! reports the wait status. The relay never blocks on the host: a `Busy` answer waits for
//! the next `pending::EXEC` event or pipe change ([`poll::notify`]).
//!
//! **Hand-over.** A session's relay keeps its state in [`SESSIONS`] and changes it only
//! inside a kernel step ([`crate::linux::handover::kernel_step`]), and so does `execd`
//! from taking a request to the program's start: a record (section 48) sees each session
//! between two steps — its program, the three pipes whose other ends the relay holds, the
//! bytes it holds each way, which streams ended ([`carry`]). An adopter makes the relays
//! again ([`adopt`]) and starts them once the adoption is done ([`start_adopted`]); the
//! host keeps the session itself.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pvmux_hypercalls::exec::{self, status, ExecRequest, IO_MAX, REQUEST_MAX};
use pvmux_hypercalls::handover::{exec_session_flags, BlobRef, ExecSessionEntry};
use pvmux_hypercalls::HcError;

use super::files::file::Kind;
use super::files::pipe::Pipe;
use super::files::tty::pty::KernelPty;
use super::files::{poll, FdTable, OpenFile};
use crate::fs::ramfs::oflag;
use crate::fs::Errno;
use crate::hcall;
use crate::irq::IrqLock;
use crate::sched::wait::WaitQueue;

/// Bumped by every `pending::EXEC` event.
static EXEC_SEQ: AtomicU64 = AtomicU64::new(0);
/// `execd` waits here for requests.
static EXEC_WQ: WaitQueue = WaitQueue::new();
/// Wait statuses of ended exec processes, by pid, until their relay takes them.
static EXITED: IrqLock<BTreeMap<i32, i32>> = IrqLock::new(BTreeMap::new());
/// `execd` runs.
static STARTED: AtomicBool = AtomicBool::new(false);
/// Kernel heap one session may use at most: the relay's buffer and its two pending
/// copies, three pipes' contents.
const SESSION_HEAP: usize = 7 * IO_MAX as usize;

/// The `pending::EXEC` event: a request, input, or room for output. Safe in event context.
pub(crate) fn event() {
    EXEC_SEQ.fetch_add(1, Ordering::AcqRel);
    EXEC_WQ.wake_all();
    poll::notify();
}

/// An exec session's process ended with wait status `status`.
pub(crate) fn exited(pid: i32, status: i32) {
    EXITED.lock().insert(pid, status);
    poll::notify();
}

/// Starts `execd` (once).
pub(crate) fn start_daemon() {
    if STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    if crate::sched::spawn("execd", None, daemon).is_err() {
        crate::println!("pvmux-kernel: cannot start execd: the host cannot start programs");
    }
}

/// Guest-physical address of a kernel buffer (heap blocks are physically contiguous).
fn gpa_of(bytes: &[u8]) -> Option<u64> {
    crate::boot::virt_to_phys(bytes.as_ptr() as u64, bytes.len() as u64)
}

/// `execd`: fetches requests and starts each session's program, then a relay thread for
/// it; from the fetch to the start, one kernel step.
fn daemon() {
    let mut buf = alloc::vec![0u8; REQUEST_MAX];
    let Some(gpa) = gpa_of(&buf) else { return };
    loop {
        let seq = EXEC_SEQ.load(Ordering::Acquire);
        loop {
            let Some(_step) = crate::linux::handover::kernel_step() else {
                continue;
            };
            match hcall::exec_fetch(gpa, buf.len() as u64) {
                Ok(n) => {
                    let req = buf[..(n as usize).min(buf.len())].to_vec();
                    let id = ExecRequest::parse(&req).map_or(0, |r| r.params().session);
                    // A session's buffers (the relay's and the pipes') come from the kernel
                    // heap: refused, not crashed, when it cannot afford them.
                    if super::alloc_guard::reserve(SESSION_HEAP).is_err() {
                        fail(
                            id,
                            "pvmux: exec: the guest kernel has no memory for another session\n",
                            Errno::ENOMEM,
                        );
                        continue;
                    }
                    if let Some(relay) = session(&req) {
                        run_new(relay);
                    }
                }
                Err(HcError::UnknownCall) => return,
                Err(_) => break,
            }
        }
        EXEC_WQ.wait_until(|| EXEC_SEQ.load(Ordering::Acquire) != seq);
        buf.fill(0);
    }
}

/// Every session whose program runs (or ended with output still to relay), by id.
static SESSIONS: IrqLock<BTreeMap<u64, Arc<spin::Mutex<Relay>>>> = IrqLock::new(BTreeMap::new());

/// Registers `relay` and starts its thread (none: the program is killed and the session
/// ends as killed).
fn run_new(relay: Relay) {
    let id = relay.id;
    let r = Arc::new(spin::Mutex::new(relay));
    SESSIONS.lock().insert(id, Arc::clone(&r));
    let mine = Arc::clone(&r);
    if crate::sched::spawn("exec", None, move || run(&mine)).is_err() {
        crate::println!("pvmux-kernel: exec: no thread for session {id}'s relay");
        SESSIONS.lock().remove(&id);
        let mut relay = r.lock();
        // The program is killed and the session ends as killed (`SIGKILL`'s wait status).
        const SIGKILL: u32 = 9;
        deliver_signals(relay.pid, 1 << (SIGKILL - 1));
        relay.close();
        let _ = hcall::exec_status(id, status::EXITED, u64::from(SIGKILL));
    }
}

/// A relay's thread: one step after another, each inside a kernel step; reports the
/// program's end.
fn run(r: &Arc<spin::Mutex<Relay>>) {
    let mut buf = alloc::vec![0u8; IO_MAX as usize];
    loop {
        let (gen, seq) = (poll::generation(), EXEC_SEQ.load(Ordering::Acquire));
        let step = {
            let Some(_step) = crate::linux::handover::kernel_step() else {
                continue;
            };
            let mut relay = r.lock();
            let step = relay.step(&mut buf, seq);
            if let Step::Done(status) = step {
                SESSIONS.lock().remove(&relay.id);
                relay.close();
                let _ = hcall::exec_status(relay.id, status::EXITED, status as u64);
            }
            step
        };
        match step {
            Step::Moved => {}
            Step::Idle => {
                let _ = poll::wait_for(None, || {
                    poll::generation() != gen || EXEC_SEQ.load(Ordering::Acquire) != seq
                });
            }
            Step::Done(_) => return,
        }
    }
}

/// Writes `msg` to the session's standard error, waiting for room (best effort).
fn write_all(session: u64, stream: u64, mut msg: &[u8]) {
    let bounce = msg.to_vec();
    let Some(mut gpa) = gpa_of(&bounce) else {
        return;
    };
    while !msg.is_empty() {
        let seq = EXEC_SEQ.load(Ordering::Acquire);
        match hcall::exec_write(session, stream, gpa, msg.len() as u64) {
            Ok(n) => {
                let n = (n as usize).min(msg.len());
                msg = &msg[n..];
                gpa += n as u64;
            }
            Err(HcError::Busy) => {
                EXEC_WQ.wait_until(|| EXEC_SEQ.load(Ordering::Acquire) != seq);
            }
            Err(_) => return,
        }
    }
}

/// Reports that the session's program could not start: a message on its standard error,
/// then `FAILED` with the errno.
fn fail(session: u64, msg: &str, e: Errno) {
    write_all(session, exec::stream::STDERR, msg.as_bytes());
    let _ = hcall::exec_status(session, status::FAILED, e.code() as u64);
}

/// Starts one session's program: its relay, or `None` when it could not start (the host
/// was told why).
fn session(req: &[u8]) -> Option<Relay> {
    let Ok(r) = ExecRequest::parse(req) else {
        crate::println!("pvmux-kernel: exec: malformed request from the host");
        return None;
    };
    let p = r.params();
    let id = p.session;
    let argv: Vec<Vec<u8>> = r.args().map(<[u8]>::to_vec).collect();
    let env: Vec<Vec<u8>> = r.env().map(<[u8]>::to_vec).collect();
    let name = alloc::string::String::from_utf8_lossy(&argv[0]).into_owned();
    let cwd = match crate::fs::workdir(p.cwd) {
        Ok(ino) => ino,
        Err((dir, e)) => {
            let dir = alloc::string::String::from_utf8_lossy(dir);
            let msg = alloc::format!(
                "pvmux: exec: workdir \"{}\" does not exist in the guest: {}\n",
                dir.escape_debug(),
                e.message()
            );
            fail(id, &msg, e);
            return None;
        }
    };
    let (mut io, stdio) = match Stdio::open(p.tty, p.tty_size) {
        Ok(x) => x,
        Err(e) => {
            let msg = alloc::format!(
                "pvmux: exec: cannot open the program's stdio: {}\n",
                e.message()
            );
            fail(id, &msg, e);
            return None;
        }
    };
    let exe = argv[0].clone();
    let env = (!env.is_empty()).then_some(env);
    let ids = super::creds::ExecIds {
        user: p.user,
        groups: p.groups,
        caps: p.caps,
    };
    let pid = match super::task::spawn_exec(argv, env, cwd, ids, p.rlimits, stdio) {
        Ok(pid) => pid,
        Err(e) => {
            io.close();
            let msg = match super::exec::missing_interpreter(cwd, &super::task::resolve_init(&exe))
            {
                Some(interp) if e == Errno::ENOENT => alloc::format!(
                    "pvmux: cannot run {name}: its program interpreter {} was not found\n",
                    alloc::string::String::from_utf8_lossy(&interp)
                ),
                _ => alloc::format!("pvmux: cannot run {name}: {}\n", e.message()),
            };
            fail(id, &msg, e);
            return None;
        }
    };
    if let Stdio::Tty(t) = &io {
        // The program leads its own session and process group: `^C` goes to it.
        t.set_foreground(pid);
    }
    if hcall::exec_status(id, status::STARTED, pid as u64).is_err() {
        crate::println!("pvmux-kernel: exec: the host refused session {id}");
    }
    Some(Relay::new(id, pid, io))
}

/// The relay's ends of a session's standard streams.
enum Stdio {
    /// Three pipes: the write end of stdin, the read ends of stdout and stderr.
    Pipes {
        stdin: Arc<Pipe>,
        outs: [Arc<Pipe>; 2],
    },
    /// A pseudo-terminal's master: stdin and stdout (stderr goes there too).
    Tty(KernelPty),
    /// Released ([`Self::close`]).
    Closed,
}

impl Stdio {
    /// The relay's ends, and the program's fds 0, 1, 2.
    fn open(tty: bool, (rows, cols): (u16, u16)) -> Result<(Self, FdTable), Errno> {
        if tty {
            let rows = if rows == 0 { 24 } else { rows };
            let cols = if cols == 0 { 80 } else { cols };
            let (master, slave) = KernelPty::open(rows, cols, oflag::O_RDWR)?;
            let fds = FdTable::with_stdio([slave.clone(), slave.clone(), slave]);
            return Ok((Self::Tty(master), fds));
        }
        let now = crate::time::realtime_ns();
        let (stdin, stdout, stderr) = (Pipe::new(now), Pipe::new(now), Pipe::new(now));
        let fds = FdTable::with_stdio([
            OpenFile::new(Kind::PipeRead(stdin.clone()), oflag::O_RDONLY),
            OpenFile::new(Kind::PipeWrite(stdout.clone()), oflag::O_WRONLY),
            OpenFile::new(Kind::PipeWrite(stderr.clone()), oflag::O_WRONLY),
        ]);
        Ok((
            Self::Pipes {
                stdin,
                outs: [stdout, stderr],
            },
            fds,
        ))
    }

    /// Output streams relayed: stdout and stderr, or the terminal alone.
    fn nr_outputs(&self) -> usize {
        match self {
            Self::Pipes { .. } => 2,
            Self::Tty(_) => 1,
            Self::Closed => 0,
        }
    }

    /// Input for the program: the bytes taken, `EAGAIN` when full, another error when
    /// nobody reads.
    fn write_in(&self, data: &[u8]) -> Result<usize, Errno> {
        match self {
            Self::Pipes { stdin, .. } => stdin.write(data, true, false),
            Self::Tty(t) => t.write(data),
            Self::Closed => Err(Errno::EPIPE),
        }
    }

    /// The end of the host's input: a pipe's write end closes (a terminal has no end of
    /// input: a program reading it waits, as with `runc exec --tty`).
    fn close_in(&self) {
        if let Self::Pipes { stdin, .. } = self {
            stdin.close_writer();
        }
    }

    /// Output `i`: `Ok(0)` once every writer is gone, `EAGAIN` when there is none yet.
    fn read_out(&self, i: usize, buf: &mut [u8]) -> Result<usize, Errno> {
        match self {
            Self::Pipes { outs, .. } => outs[i].read(buf, true),
            Self::Tty(t) => t.read(buf),
            Self::Closed => Ok(0),
        }
    }

    /// Releases the relay's ends (the input's, if still open, is closed by
    /// [`Relay::close`]).
    fn close(&mut self) {
        match core::mem::replace(self, Self::Closed) {
            Self::Pipes { outs, .. } => {
                for o in outs {
                    o.close_reader();
                }
            }
            Self::Tty(t) => drop(t),
            Self::Closed => {}
        }
    }
}

/// Bytes waiting to go one way.
struct Pending {
    buf: Vec<u8>,
    /// Where the next bytes start.
    at: usize,
}

impl Pending {
    fn new() -> Self {
        Self {
            buf: Vec::new(),
            at: 0,
        }
    }
    fn is_empty(&self) -> bool {
        self.at >= self.buf.len()
    }
    fn rest(&self) -> &[u8] {
        &self.buf[self.at..]
    }
    fn take(&mut self, n: usize) {
        self.at = (self.at + n).min(self.buf.len());
    }
    fn set(&mut self, bytes: &[u8]) {
        self.buf.clear();
        self.buf.extend_from_slice(bytes);
        self.at = 0;
    }
}

/// Delivers the signals in `set` (bit `n - 1`: signal `n`) that the host sent to an exec
/// session's program, process `pid`: as signals from outside its pid namespace (`SI_USER`
/// from pid 0), like those the host sends to init. Nothing happens once it is gone.
fn deliver_signals(pid: i32, set: u64) {
    if set == 0 {
        return;
    }
    let Some(p) = super::task::find_process(pid) else {
        return;
    };
    for signo in 1..=63u32 {
        if set & (1 << (signo - 1)) != 0 {
            let info = super::signal::SigInfo::from_process(signo, super::signal::code::SI_USER, 0);
            let _ = super::signal::send_info_to_process(&p, info);
        }
    }
}

/// What a relay step did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Moved something: look again at once.
    Moved,
    /// Nothing to do: wait for the host or a pipe.
    Idle,
    /// The program ended with this wait status and its outputs are relayed.
    Done(i32),
}

/// A session's relay between its program's standard streams and the host, between two
/// steps: what a hand-over record carries of it (section 48).
pub(crate) struct Relay {
    id: u64,
    /// The program's process.
    pid: i32,
    io: Stdio,
    to_guest: Pending,
    to_host: [Pending; 2],
    host_eof: bool,
    stdin_open: bool,
    out_open: [bool; 2],
    /// The host stopped taking a stream (it refused a write): its output is dropped.
    discard: [bool; 2],
    /// The program's wait status, once it ended.
    status: Option<i32>,
    /// The `EXEC_SEQ` at the host's last `Busy` for input and for each output: the host is
    /// not asked again before it raised `pending::EXEC` (pipe changes wake the relay far
    /// more often than the host has news). Not carried: an adopter asks again.
    input_busy_at: Option<u64>,
    output_busy_at: [Option<u64>; 2],
    /// A terminal's size, and the signals for the program, are asked again after each
    /// `pending::EXEC`.
    size_seen_at: Option<u64>,
    signals_seen_at: Option<u64>,
}

impl Relay {
    fn new(id: u64, pid: i32, io: Stdio) -> Self {
        let outputs = io.nr_outputs();
        Self {
            id,
            pid,
            io,
            to_guest: Pending::new(),
            to_host: [Pending::new(), Pending::new()],
            host_eof: false,
            stdin_open: true,
            out_open: [true, outputs > 1],
            discard: [false, false],
            status: None,
            input_busy_at: None,
            output_busy_at: [None, None],
            size_seen_at: None,
            signals_seen_at: None,
        }
    }

    /// Releases the relay's ends of the streams.
    fn close(&mut self) {
        if self.stdin_open {
            self.io.close_in();
            self.stdin_open = false;
        }
        self.io.close();
    }

    /// Moves what can be moved now (`seq`: the `EXEC_SEQ` it looked at first).
    fn step(&mut self, buf: &mut [u8], seq: u64) -> Step {
        let id = self.id;
        let streams = [exec::stream::STDOUT, exec::stream::STDERR];
        let mut moved = false;
        if self.signals_seen_at != Some(seq) && self.status.is_none() {
            self.signals_seen_at = Some(seq);
            if let Ok(set) = hcall::exec_signal_take(id) {
                deliver_signals(self.pid, set);
            }
        }
        if let Stdio::Tty(t) = &self.io {
            if self.size_seen_at != Some(seq) {
                self.size_seen_at = Some(seq);
                if let Ok(v) = hcall::exec_term_size(id) {
                    t.resize((v >> 16) as u16, v as u16);
                }
            }
        }
        if self.stdin_open {
            if self.to_guest.is_empty() && !self.host_eof && self.input_busy_at != Some(seq) {
                self.input_busy_at = None;
                match gpa_of(buf).map(|g| hcall::exec_read(id, g, buf.len() as u64)) {
                    Some(Ok(0)) | Some(Err(HcError::InvalidArgument)) | None => {
                        self.host_eof = true
                    }
                    Some(Ok(n)) => {
                        let n = (n as usize).min(buf.len());
                        self.to_guest.set(&buf[..n]);
                        moved = true;
                    }
                    Some(Err(_)) => self.input_busy_at = Some(seq),
                }
            }
            if !self.to_guest.is_empty() {
                match self.io.write_in(self.to_guest.rest()) {
                    Ok(n) => {
                        self.to_guest.take(n);
                        moved = true;
                    }
                    Err(Errno::EAGAIN) => {}
                    Err(_) => self.to_guest = Pending::new(), // no reader left
                }
            }
            if self.host_eof && self.to_guest.is_empty() {
                self.io.close_in();
                self.stdin_open = false;
                moved = true;
            }
        }
        for (i, &stream) in streams.iter().enumerate() {
            if self.out_open[i] && self.to_host[i].is_empty() {
                match self.io.read_out(i, buf) {
                    Ok(0) => {
                        self.out_open[i] = false;
                        moved = true;
                    }
                    Ok(n) => {
                        if !self.discard[i] {
                            self.to_host[i].set(&buf[..n]);
                        }
                        moved = true;
                    }
                    Err(_) => {}
                }
            }
            if !self.to_host[i].is_empty() && self.output_busy_at[i] != Some(seq) {
                self.output_busy_at[i] = None;
                let rest = self.to_host[i].rest();
                match gpa_of(rest).map(|g| hcall::exec_write(id, stream, g, rest.len() as u64)) {
                    Some(Ok(n)) => {
                        self.to_host[i].take(n as usize);
                        moved = true;
                    }
                    Some(Err(HcError::Busy)) => self.output_busy_at[i] = Some(seq),
                    _ => {
                        self.discard[i] = true;
                        self.to_host[i] = Pending::new();
                    }
                }
            }
        }
        if self.status.is_none() {
            self.status = EXITED.lock().remove(&self.pid);
            if self.status.is_some() {
                moved = true;
            }
        }
        if let Some(s) = self.status {
            if self.out_open == [false, false]
                && self.to_host[0].is_empty()
                && self.to_host[1].is_empty()
            {
                return Step::Done(s);
            }
        }
        if moved {
            Step::Moved
        } else {
            Step::Idle
        }
    }
}

/// A session as a hand-over record carries it (section 48): its entry without its pipes
/// and bytes, which the record's writer adds — the pipes whose ends the relay holds
/// (stdin, stdout, stderr; `None`: closed) and the bytes it holds (to the guest, stdout's
/// and stderr's to the host).
pub(crate) struct Carried {
    pub(crate) entry: ExecSessionEntry,
    pub(crate) pipes: [Option<Arc<Pipe>>; 3],
    pub(crate) bytes: [Vec<u8>; 3],
}

/// A kernel hand-over (record section 48, `pvmux upgrade`): every session in progress,
/// read between two of its relay's steps, in session order. Or what cannot be carried and
/// how many: sessions with a terminal (a pseudo-terminal is not carried).
pub(crate) fn carry() -> Result<Vec<Carried>, (&'static [u8], u32)> {
    let relays: Vec<Arc<spin::Mutex<Relay>>> = SESSIONS.lock().values().cloned().collect();
    let ttys = relays
        .iter()
        .filter(|r| matches!(r.lock().io, Stdio::Tty(_)))
        .count() as u32;
    if ttys > 0 {
        return Err((b"exec sessions with a terminal", ttys));
    }
    let mut out = Vec::new();
    for r in relays {
        let r = r.lock();
        let Stdio::Pipes { stdin, outs } = &r.io else {
            continue;
        };
        // A status in the table is the relay's to take at its next step.
        let status = r.status.or_else(|| EXITED.lock().get(&r.pid).copied());
        let flag = |on: bool, f: u32| if on { f } else { 0 };
        let held = |open: bool, p: &Arc<Pipe>| open.then(|| Arc::clone(p));
        out.push(Carried {
            entry: ExecSessionEntry {
                session: r.id,
                pid: r.pid,
                status: status.unwrap_or(0),
                flags: flag(r.host_eof, exec_session_flags::HOST_EOF)
                    | flag(status.is_some(), exec_session_flags::EXITED)
                    | flag(r.discard[0], exec_session_flags::DISCARD_STDOUT)
                    | flag(r.discard[1], exec_session_flags::DISCARD_STDERR),
                ..ExecSessionEntry::default()
            },
            pipes: [
                held(r.stdin_open, stdin),
                held(r.out_open[0], &outs[0]),
                held(r.out_open[1], &outs[1]),
            ],
            bytes: [
                r.to_guest.rest().to_vec(),
                r.to_host[0].rest().to_vec(),
                r.to_host[1].rest().to_vec(),
            ],
        });
    }
    out.sort_by_key(|c| c.entry.session);
    Ok(out)
}

/// The relays of a checked record's sessions, made again over the adopted pipes (`pipes`,
/// by record id: each with the relay's end counted), to start once the adoption is done;
/// `blob` resolves the bytes they hold, `now` is the time a pipe made for a closed stream
/// shows. `None` if a pipe or bytes are missing.
pub(crate) fn adopt(
    entries: &[ExecSessionEntry],
    pipes: &BTreeMap<u64, Arc<Pipe>>,
    blob: &dyn Fn(BlobRef) -> Option<Vec<u8>>,
    now: u64,
) -> Option<Vec<Relay>> {
    let mut out = Vec::new();
    for e in entries {
        // A stream the relay had closed gets an unused pipe of its own.
        let end = |id: u64| match id {
            0 => Some(Pipe::new(now)),
            _ => pipes.get(&id).cloned(),
        };
        let io = Stdio::Pipes {
            stdin: end(e.stdin)?,
            outs: [end(e.stdout)?, end(e.stderr)?],
        };
        let mut r = Relay::new(e.session, e.pid, io);
        let has = |f: u32| e.flags & f != 0;
        r.host_eof = has(exec_session_flags::HOST_EOF);
        r.stdin_open = e.stdin != 0;
        r.out_open = [e.stdout != 0, e.stderr != 0];
        r.discard = [
            has(exec_session_flags::DISCARD_STDOUT),
            has(exec_session_flags::DISCARD_STDERR),
        ];
        r.status = has(exec_session_flags::EXITED).then_some(e.status);
        r.to_guest.set(&blob(e.to_guest)?);
        r.to_host[0].set(&blob(e.to_stdout)?);
        r.to_host[1].set(&blob(e.to_stderr)?);
        out.push(r);
    }
    Some(out)
}

/// Starts the adopted relays (the programs run again).
pub(crate) fn start_adopted(relays: Vec<Relay>) {
    for r in relays {
        run_new(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blob of "abcdef" and refs into it.
    fn blob(b: BlobRef) -> Option<Vec<u8>> {
        b"abcdef"
            .get(b.off as usize..(b.off + b.len) as usize)
            .map(<[u8]>::to_vec)
    }

    #[test]
    fn adopted_relays_go_on_with_what_they_held() {
        let pipes: BTreeMap<u64, Arc<Pipe>> = [1u64, 2, 3]
            .into_iter()
            .map(|id| (id, Pipe::adopted(id, 0, b"", 1, 1).expect("pipe")))
            .collect();
        let running = ExecSessionEntry {
            session: 4,
            pid: 9,
            stdin: 1,
            stdout: 2,
            stderr: 3,
            to_guest: BlobRef { off: 0, len: 2 },
            to_stdout: BlobRef { off: 2, len: 3 },
            flags: exec_session_flags::DISCARD_STDERR,
            ..ExecSessionEntry::default()
        };
        let ended = ExecSessionEntry {
            session: 5,
            pid: 10,
            status: 7 << 8,
            flags: exec_session_flags::EXITED | exec_session_flags::HOST_EOF,
            to_stderr: BlobRef { off: 5, len: 1 },
            ..ExecSessionEntry::default()
        };
        let relays = adopt(&[running, ended], &pipes, &blob, 0).expect("adopted");
        let (a, b) = (&relays[0], &relays[1]);
        assert_eq!((a.id, a.pid, a.status), (4, 9, None));
        assert!(a.stdin_open && a.out_open == [true, true] && !a.host_eof);
        assert_eq!(a.discard, [false, true]);
        assert_eq!(
            (a.to_guest.rest(), a.to_host[0].rest(), a.to_host[1].rest()),
            (&b"ab"[..], &b"cde"[..], &b""[..])
        );
        // Its pipes are the adopted ones.
        let Stdio::Pipes { stdin, outs } = &a.io else {
            panic!("pipes");
        };
        assert_eq!((stdin.id, outs[0].id, outs[1].id), (1, 2, 3));
        // Every stream closed: pipes of its own, nothing to read or write.
        assert_eq!((b.id, b.status), (5, Some(7 << 8)));
        assert!(!b.stdin_open && b.out_open == [false, false] && b.host_eof);
        assert_eq!(b.to_host[1].rest(), b"f");
        // A pipe or bytes that are not there: refused.
        let gone = ExecSessionEntry {
            stdout: 8,
            ..running
        };
        assert!(adopt(&[gone], &pipes, &blob, 0).is_none());
        let outside = ExecSessionEntry {
            to_guest: BlobRef { off: 4, len: 9 },
            ..running
        };
        assert!(adopt(&[outside], &pipes, &blob, 0).is_none());
    }
}
