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

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pvmux_hypercalls::exec::{self, status, ExecRequest, IO_MAX, REQUEST_MAX};
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

/// `execd`: fetches requests and starts a session thread for each.
fn daemon() {
    let mut buf = alloc::vec![0u8; REQUEST_MAX];
    let Some(gpa) = gpa_of(&buf) else { return };
    loop {
        let seq = EXEC_SEQ.load(Ordering::Acquire);
        loop {
            match hcall::exec_fetch(gpa, buf.len() as u64) {
                Ok(n) => {
                    let req = buf[..(n as usize).min(buf.len())].to_vec();
                    let id = ExecRequest::parse(&req).map_or(0, |r| r.params().session);
                    // A session's buffers (the relay's and the pipes') come from the kernel
                    // heap: refused, not crashed, when it cannot afford them.
                    let started = super::alloc_guard::reserve(SESSION_HEAP).is_ok()
                        && crate::sched::spawn("exec", None, move || session(&req)).is_ok();
                    if !started {
                        fail(
                            id,
                            "pvmux: exec: the guest kernel has no memory for another session\n",
                            Errno::ENOMEM,
                        );
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

/// One session: start the program, relay, report the end.
fn session(req: &[u8]) {
    let Ok(r) = ExecRequest::parse(req) else {
        crate::println!("pvmux-kernel: exec: malformed request from the host");
        return;
    };
    let p = r.params();
    let id = p.session;
    let argv: Vec<Vec<u8>> = r.args().map(<[u8]>::to_vec).collect();
    let env: Vec<Vec<u8>> = r.env().map(<[u8]>::to_vec).collect();
    let name = alloc::string::String::from_utf8_lossy(&argv[0]).into_owned();
    let cwd = match p.cwd {
        None => crate::fs::ramfs::ROOT_INO,
        Some(dir) => match crate::fs::with(|fs| fs.lookup_dir(crate::fs::ramfs::ROOT_INO, dir)) {
            Ok(ino) => ino,
            Err(e) => {
                let dir = alloc::string::String::from_utf8_lossy(dir);
                let msg = alloc::format!(
                    "pvmux: exec: workdir \"{}\" does not exist in the guest: {}\n",
                    dir.escape_debug(),
                    e.message()
                );
                fail(id, &msg, e);
                return;
            }
        },
    };
    let (io, stdio) = match Stdio::open(p.tty, p.tty_size) {
        Ok(x) => x,
        Err(e) => {
            let msg = alloc::format!(
                "pvmux: exec: cannot open the program's stdio: {}\n",
                e.message()
            );
            fail(id, &msg, e);
            return;
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
            return;
        }
    };
    if let Stdio::Tty(t) = &io {
        // The program leads its own session and process group: `^C` goes to it.
        t.set_foreground(pid);
    }
    if hcall::exec_status(id, status::STARTED, pid as u64).is_err() {
        crate::println!("pvmux-kernel: exec: the host refused session {id}");
    }
    let status = relay(id, pid, &io);
    io.close();
    let _ = hcall::exec_status(id, status::EXITED, status as u64);
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
        }
    }

    /// Input for the program: the bytes taken, `EAGAIN` when full, another error when
    /// nobody reads.
    fn write_in(&self, data: &[u8]) -> Result<usize, Errno> {
        match self {
            Self::Pipes { stdin, .. } => stdin.write(data, true, false),
            Self::Tty(t) => t.write(data),
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
        }
    }

    /// Releases the relay's ends (the input's, if still open, is closed by `relay`).
    fn close(self) {
        match self {
            Self::Pipes { outs, .. } => {
                for o in outs {
                    o.close_reader();
                }
            }
            Self::Tty(t) => drop(t),
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

/// Relays session `id`'s streams until process `pid` has ended and its outputs are closed
/// by every writer; returns its wait status.
fn relay(id: u64, pid: i32, io: &Stdio) -> i32 {
    let mut buf = alloc::vec![0u8; IO_MAX as usize];
    let streams = [exec::stream::STDOUT, exec::stream::STDERR];
    let mut to_guest = Pending::new();
    let mut to_host = [Pending::new(), Pending::new()];
    let mut host_eof = false;
    let mut stdin_open = true;
    let mut out_open = [true, io.nr_outputs() > 1];
    // The host stopped taking a stream (it refused a write): its output is dropped.
    let mut discard = [false, false];
    let mut status = None;
    // The `EXEC_SEQ` at the host's last `Busy` for input and for each output: the host is not
    // asked again before it raised `pending::EXEC` (pipe changes wake this loop far more
    // often than the host has news).
    let mut input_busy_at = None;
    let mut output_busy_at = [None, None];
    // A terminal's size, and the signals for the program, are asked again after each
    // `pending::EXEC`.
    let mut size_seen_at = None;
    let mut signals_seen_at = None;
    loop {
        let (gen, seq) = (poll::generation(), EXEC_SEQ.load(Ordering::Acquire));
        let mut moved = false;
        if signals_seen_at != Some(seq) && status.is_none() {
            signals_seen_at = Some(seq);
            if let Ok(set) = hcall::exec_signal_take(id) {
                deliver_signals(pid, set);
            }
        }
        if let Stdio::Tty(t) = io {
            if size_seen_at != Some(seq) {
                size_seen_at = Some(seq);
                if let Ok(v) = hcall::exec_term_size(id) {
                    t.resize((v >> 16) as u16, v as u16);
                }
            }
        }
        if stdin_open {
            if to_guest.is_empty() && !host_eof && input_busy_at != Some(seq) {
                input_busy_at = None;
                match gpa_of(&buf).map(|g| hcall::exec_read(id, g, buf.len() as u64)) {
                    Some(Ok(0)) | Some(Err(HcError::InvalidArgument)) | None => host_eof = true,
                    Some(Ok(n)) => {
                        let n = (n as usize).min(buf.len());
                        to_guest.set(&buf[..n]);
                        moved = true;
                    }
                    Some(Err(_)) => input_busy_at = Some(seq),
                }
            }
            if !to_guest.is_empty() {
                match io.write_in(to_guest.rest()) {
                    Ok(n) => {
                        to_guest.take(n);
                        moved = true;
                    }
                    Err(Errno::EAGAIN) => {}
                    Err(_) => to_guest = Pending::new(), // no reader left
                }
            }
            if host_eof && to_guest.is_empty() {
                io.close_in();
                stdin_open = false;
                moved = true;
            }
        }
        for i in 0..2 {
            if out_open[i] && to_host[i].is_empty() {
                match io.read_out(i, &mut buf) {
                    Ok(0) => {
                        out_open[i] = false;
                        moved = true;
                    }
                    Ok(n) => {
                        if !discard[i] {
                            to_host[i].set(&buf[..n]);
                        }
                        moved = true;
                    }
                    Err(_) => {}
                }
            }
            if !to_host[i].is_empty() && output_busy_at[i] != Some(seq) {
                output_busy_at[i] = None;
                let rest = to_host[i].rest();
                match gpa_of(rest).map(|g| hcall::exec_write(id, streams[i], g, rest.len() as u64))
                {
                    Some(Ok(n)) => {
                        to_host[i].take(n as usize);
                        moved = true;
                    }
                    Some(Err(HcError::Busy)) => output_busy_at[i] = Some(seq),
                    _ => {
                        discard[i] = true;
                        to_host[i] = Pending::new();
                    }
                }
            }
        }
        if status.is_none() {
            status = EXITED.lock().remove(&pid);
            if status.is_some() {
                moved = true;
            }
        }
        if let Some(s) = status {
            if out_open == [false, false] && to_host[0].is_empty() && to_host[1].is_empty() {
                if stdin_open {
                    io.close_in();
                }
                return s;
            }
        }
        if !moved {
            let _ = poll::wait_for(None, || {
                poll::generation() != gen || EXEC_SEQ.load(Ordering::Acquire) != seq
            });
        }
    }
}
