//! A tenant's exec sessions, as the host keeps them: the queue of requests the guest has not
//! fetched yet, and per session its phase and its bounded buffers (input for the guest,
//! standard output and standard error from it). The guest half is [`hc`] (hypercalls
//! 25..=29, docs/ABI.md §exec); the caller half is [`super::ExecSession`].
//!
//! Nothing the guest does grows host memory past [`MAX_SESSIONS`] sessions of
//! [`OUTPUT_BUFFER`] bytes per output stream and [`INPUT_BUFFER`] bytes of input: the guest
//! can only name sessions the host created, a full buffer answers `Busy`, and a session
//! whose reader is gone discards its output.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use pvmux_hypercalls::exec::{
    self, status, stream, wait_status_valid, IO_MAX, MAX_SESSIONS, OUTPUT_BUFFER, REQUEST_MAX,
};
use pvmux_hypercalls::{HcError, Hypercall};

use super::ExecExit;
use crate::GuestMemory;

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Queued; the guest has not fetched it.
    Queued,
    /// Fetched; the guest has not said whether it started.
    Fetched,
    /// The program runs with this guest pid.
    Running(u32),
    /// Over.
    Ended(ExecExit),
}

/// One output stream's buffer.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub(crate) buf: VecDeque<u8>,
    /// The reader is gone: output is discarded.
    pub(crate) detached: bool,
    /// The guest was told `Busy`: raise `pending::EXEC` when room frees.
    pub(crate) guest_blocked: bool,
    /// The most bytes ever buffered.
    pub(crate) peak: usize,
}

/// A session's state (under [`Session::lock`]).
#[derive(Debug)]
pub(crate) struct SessionState {
    pub(crate) phase: Phase,
    pub(crate) stdin: VecDeque<u8>,
    /// The caller closed the input.
    pub(crate) stdin_eof: bool,
    /// Standard output, standard error.
    pub(crate) out: [Output; 2],
    /// A terminal session's (rows, columns).
    pub(crate) tty_size: Option<(u16, u16)>,
    /// The guest pid, once the program started (kept after it ended).
    pub(crate) pid: Option<u32>,
    /// Signals sent to the program and not yet taken by the guest (bit `n - 1`: signal `n`).
    pub(crate) signals: u64,
}

/// One session, shared by the table (the guest's side) and the caller's handles.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: u64,
    state: Mutex<SessionState>,
    /// Signalled on every change.
    pub(crate) changed: Condvar,
}

impl Session {
    pub(crate) fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a change.
    pub(crate) fn wait<'a>(&self, g: MutexGuard<'a, SessionState>) -> MutexGuard<'a, SessionState> {
        self.changed.wait(g).unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the session (once) and wakes everybody.
    fn end(&self, how: ExecExit) {
        let mut st = self.lock();
        if !matches!(st.phase, Phase::Ended(_)) {
            st.phase = Phase::Ended(how);
        }
        drop(st);
        self.changed.notify_all();
    }
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Requests not fetched yet, oldest first.
    queue: VecDeque<(Arc<Session>, Vec<u8>)>,
    /// Sessions the guest may name (fetched and not ended, or queued).
    live: BTreeMap<u64, Arc<Session>>,
    /// The tenant has ended.
    closed: bool,
}

/// Why [`ExecTable::queue`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QueueError {
    Closed,
    Full,
}

/// The exec sessions of one tenant.
pub(crate) struct ExecTable {
    state: Mutex<State>,
    /// Raises `pending::EXEC` on the guest's vCPU 0.
    raise: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for ExecTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecTable").finish_non_exhaustive()
    }
}

impl ExecTable {
    pub(crate) fn new(raise: Box<dyn Fn() + Send + Sync>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            raise,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the guest there is something for it.
    pub(crate) fn raise(&self) {
        (self.raise)();
    }

    /// Queues a request; `encode` builds it for the session id it is given.
    pub(crate) fn queue(
        &self,
        tty_size: Option<(u16, u16)>,
        encode: impl FnOnce(u64) -> Vec<u8>,
    ) -> Result<Arc<Session>, QueueError> {
        let mut st = self.lock();
        if st.closed {
            return Err(QueueError::Closed);
        }
        if st.live.len() >= MAX_SESSIONS {
            return Err(QueueError::Full);
        }
        st.next_id += 1;
        let id = st.next_id;
        let s = Arc::new(Session {
            id,
            state: Mutex::new(SessionState {
                phase: Phase::Queued,
                stdin: VecDeque::new(),
                stdin_eof: false,
                out: Default::default(),
                tty_size,
                pid: None,
                signals: 0,
            }),
            changed: Condvar::new(),
        });
        st.queue.push_back((Arc::clone(&s), encode(id)));
        st.live.insert(id, Arc::clone(&s));
        drop(st);
        self.raise();
        Ok(s)
    }

    /// The tenant ended: every session ends ([`ExecExit::TenantEnded`]), nothing more is
    /// queued.
    pub(crate) fn close(&self) {
        let live = {
            let mut st = self.lock();
            st.closed = true;
            st.queue.clear();
            core::mem::take(&mut st.live)
        };
        for s in live.values() {
            s.end(ExecExit::TenantEnded);
        }
    }

    /// Sessions the guest may still name (a snapshot refuses while there are any).
    pub(crate) fn live(&self) -> usize {
        self.lock().live.len()
    }

    /// Whether the sessions a kernel's hand-over record names — (session, pid) — are
    /// exactly those whose program runs, with their pids; else why not, in words. A
    /// session fetched but not yet started is never carried (a kernel takes a request and
    /// starts its program in one step), so one refuses too. Queued sessions stay queued
    /// for the new kernel.
    pub(crate) fn check_carried(&self, carried: &[(u64, i32)]) -> Result<(), String> {
        let st = self.lock();
        let mut running = Vec::new();
        for (&id, s) in &st.live {
            match s.lock().phase {
                Phase::Running(pid) => running.push((id, pid as i32)),
                Phase::Fetched => {
                    return Err(format!("exec session {id} is starting: try again"));
                }
                Phase::Queued | Phase::Ended(_) => {}
            }
        }
        if running == carried {
            return Ok(());
        }
        Err(format!(
            "its kernel's record names exec sessions {carried:?} (session, pid), the tenant \
             runs {running:?}"
        ))
    }

    fn session(&self, id: u64) -> Result<Arc<Session>, HcError> {
        self.lock()
            .live
            .get(&id)
            .cloned()
            .ok_or(HcError::InvalidArgument)
    }

    fn forget(&self, id: u64) {
        self.lock().live.remove(&id);
    }

    /// `ExecFetch(buf_gpa, buf_len)`.
    fn fetch(&self, mem: &GuestMemory, gpa: u64, len: u64) -> Result<u64, HcError> {
        let cap = len.min(REQUEST_MAX as u64);
        mem.check_range(gpa, cap).map_err(|_| HcError::BadAddress)?;
        let mut st = self.lock();
        let Some((_, bytes)) = st.queue.front() else {
            return Err(HcError::Busy);
        };
        if bytes.len() as u64 > cap {
            return Err(HcError::TooLarge);
        }
        mem.write(gpa, bytes).map_err(|_| HcError::BadAddress)?;
        let n = bytes.len() as u64;
        if let Some((s, _)) = st.queue.pop_front() {
            drop(st);
            s.lock().phase = Phase::Fetched;
            s.changed.notify_all();
        }
        Ok(n)
    }

    /// `ExecStatus(session, kind, value)`.
    fn status(&self, id: u64, kind: u64, value: u64) -> Result<u64, HcError> {
        let s = self.session(id)?;
        let mut st = s.lock();
        let next = match (kind, st.phase) {
            (status::STARTED, Phase::Fetched) if (1..=i32::MAX as u64).contains(&value) => {
                Phase::Running(value as u32)
            }
            (status::FAILED, Phase::Fetched) if (1..=4095).contains(&value) => {
                Phase::Ended(ExecExit::NotStarted {
                    errno: value as i32,
                })
            }
            (status::EXITED, Phase::Running(_)) if wait_status_valid(value) => {
                Phase::Ended(ExecExit::from_wait_status(value as i32))
            }
            _ => return Err(HcError::InvalidArgument),
        };
        if let Phase::Running(pid) = next {
            st.pid = Some(pid);
        }
        st.phase = next;
        drop(st);
        s.changed.notify_all();
        if matches!(next, Phase::Ended(_)) {
            self.forget(id);
        }
        Ok(0)
    }

    /// `ExecWrite(session, stream, buf_gpa, len)`.
    fn write(
        &self,
        mem: &GuestMemory,
        id: u64,
        which: u64,
        gpa: u64,
        len: u64,
    ) -> Result<u64, HcError> {
        let index = match which {
            stream::STDOUT => 0,
            stream::STDERR => 1,
            _ => return Err(HcError::InvalidArgument),
        };
        if len > IO_MAX {
            return Err(HcError::TooLarge);
        }
        mem.check_range(gpa, len).map_err(|_| HcError::BadAddress)?;
        let s = self.session(id)?;
        let mut st = s.lock();
        if !matches!(st.phase, Phase::Fetched | Phase::Running(_)) {
            return Err(HcError::InvalidArgument);
        }
        if len == 0 {
            return Ok(0);
        }
        let out = &mut st.out[index];
        if out.detached {
            return Ok(len);
        }
        let room = OUTPUT_BUFFER - out.buf.len();
        if room == 0 {
            out.guest_blocked = true;
            return Err(HcError::Busy);
        }
        let n = room.min(len as usize);
        let bytes = mem.read_vec(gpa, n).map_err(|_| HcError::BadAddress)?;
        out.buf.extend(&bytes[..]);
        out.peak = out.peak.max(out.buf.len());
        drop(st);
        s.changed.notify_all();
        Ok(n as u64)
    }

    /// `ExecTermSize(session)`.
    fn term_size(&self, id: u64) -> Result<u64, HcError> {
        let s = self.session(id)?;
        let st = s.lock();
        match (st.phase, st.tty_size) {
            (Phase::Fetched | Phase::Running(_), Some((rows, cols))) => {
                Ok(u64::from(rows) << 16 | u64::from(cols))
            }
            _ => Err(HcError::InvalidArgument),
        }
    }

    /// `ExecSignalTake(session)`.
    fn signal_take(&self, id: u64) -> Result<u64, HcError> {
        let s = self.session(id)?;
        let mut st = s.lock();
        match st.phase {
            Phase::Fetched | Phase::Running(_) => Ok(core::mem::take(&mut st.signals)),
            _ => Err(HcError::InvalidArgument),
        }
    }

    /// `ExecRead(session, buf_gpa, len)`.
    fn read(&self, mem: &GuestMemory, id: u64, gpa: u64, len: u64) -> Result<u64, HcError> {
        let len = len.min(IO_MAX);
        mem.check_range(gpa, len).map_err(|_| HcError::BadAddress)?;
        let s = self.session(id)?;
        let mut st = s.lock();
        if !matches!(st.phase, Phase::Fetched | Phase::Running(_)) {
            return Err(HcError::InvalidArgument);
        }
        if st.stdin.is_empty() {
            return if st.stdin_eof || len == 0 {
                Ok(0)
            } else {
                Err(HcError::Busy)
            };
        }
        let n = st.stdin.len().min(len as usize);
        let mut bytes = vec![0u8; n];
        take_front(&mut st.stdin, &mut bytes);
        mem.write(gpa, &bytes).map_err(|_| HcError::BadAddress)?;
        drop(st);
        s.changed.notify_all();
        Ok(n as u64)
    }
}

/// Moves the first `out.len()` bytes of `q` (which has at least that many) into `out`, a
/// slice copy at a time.
pub(crate) fn take_front(q: &mut VecDeque<u8>, out: &mut [u8]) {
    let n = out.len();
    let (a, b) = q.as_slices();
    let from_a = a.len().min(n);
    out[..from_a].copy_from_slice(&a[..from_a]);
    out[from_a..].copy_from_slice(&b[..n - from_a]);
    q.drain(..n);
}

/// Hypercalls 25..=29 and 33 for a tenant whose exec table is `table` (`None`: `UnknownCall`).
pub(crate) fn hc(
    mem: &GuestMemory,
    table: Option<&ExecTable>,
    call: Hypercall,
    a: [u64; 6],
) -> Result<u64, HcError> {
    let t = table.ok_or(HcError::UnknownCall)?;
    match call {
        Hypercall::ExecFetch => t.fetch(mem, a[0], a[1]),
        Hypercall::ExecStatus => t.status(a[0], a[1], a[2]),
        Hypercall::ExecWrite => t.write(mem, a[0], a[1], a[2], a[3]),
        Hypercall::ExecRead => t.read(mem, a[0], a[1], a[2]),
        Hypercall::ExecTermSize => t.term_size(a[0]),
        Hypercall::ExecSignalTake => t.signal_take(a[0]),
        _ => Err(HcError::UnknownCall),
    }
}

/// The encoded request for `spec` as session `id` (already checked by [`super::ExecSpec`]).
pub(crate) fn encode_request(
    spec: &super::ExecSpec,
    id: u64,
) -> Result<Vec<u8>, exec::RequestError> {
    let args: Vec<&[u8]> = spec.argv.iter().map(Vec::as_slice).collect();
    let env: Vec<&[u8]> = spec.env.iter().map(Vec::as_slice).collect();
    let group_bytes: Option<Vec<u8>> = spec
        .groups
        .as_ref()
        .map(|g| g.iter().flat_map(|id| id.to_le_bytes()).collect());
    let groups = match &group_bytes {
        Some(b) => Some(
            pvmux_hypercalls::bootargs::Gids::from_le_bytes(b)
                .ok_or(exec::RequestError::BadGroups)?,
        ),
        None => None,
    };
    let params = exec::ExecParams {
        session: id,
        tty: spec.tty,
        tty_size: if spec.tty {
            spec.tty_size.unwrap_or_default()
        } else {
            (0, 0)
        },
        user: spec.user,
        cwd: spec.cwd.as_deref(),
        rlimits: exec::ExecRlimits::new(&spec.rlimits),
        groups,
        caps: spec.caps,
    };
    let len = exec::encoded_len(&params, &args, &env).ok_or(exec::RequestError::BadLength)?;
    let mut out = vec![0u8; len];
    exec::encode(&mut out, &params, &args, &env)?;
    Ok(out)
}
