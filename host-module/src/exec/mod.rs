//! Exec sessions: a new process in a running tenant's guest kernel (`runc exec`,
//! `pvmux exec`), with its own standard input, output and error (docs/ABI.md §exec).
//!
//! [`crate::Tenant::exec`] (or an [`ExecHandle`] from [`crate::Tenant::exec_handle`], which
//! other threads may use while the tenant runs) queues an [`ExecSpec`]; the guest kernel
//! fetches it, starts the program as a process whose parent is outside the guest (its
//! `getppid()` is 0, as for `runc exec`), and reports its pid and, at the end, its wait
//! status. The returned [`ExecSession`] gives the program's input ([`ExecStdin`], a
//! [`Write`]) and outputs ([`ExecOutput`], [`Read`]) — bounded buffers on the host: a writer
//! blocks while the guest has not taken its input, a guest whose output is not read is
//! told to wait — and [`ExecSession::wait`] its [`ExecExit`].
//!
//! The protocol of the `--exec-socket` control socket (`pvmux run` / `pvmux exec`) is in
//! [`socket`].

pub mod socket;
mod table;

use std::io::{Read, Write};
use std::sync::Arc;

use pvmux_hypercalls::bootargs::CapSets;
use pvmux_hypercalls::exec::RequestError;

pub(crate) use table::{hc, ExecTable};
use table::{Phase, QueueError, Session};

/// What to run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecSpec {
    /// The program and its arguments (`argv[0]` is looked up like init's: a name without `/`
    /// in `/usr/local/bin`, `/usr/bin`, `/bin`, `/usr/sbin`, `/sbin`).
    pub argv: Vec<Vec<u8>>,
    /// `NAME=VALUE` entries; empty: the guest kernel's default environment.
    pub env: Vec<Vec<u8>>,
    /// The working directory (absolute); `None`: `/`.
    pub cwd: Option<Vec<u8>>,
    /// User and group id; `None`: those of the guest's init program.
    pub user: Option<(u32, u32)>,
    /// A terminal: the program's fds 0, 1 and 2 are a pseudo-terminal in the guest, and its
    /// standard error arrives on [`ExecSession::stdout`] (as `runc exec --tty`).
    pub tty: bool,
    /// With `tty`: the terminal's (rows, columns); `None`: 24 x 80.
    pub tty_size: Option<(u16, u16)>,
    /// Resource limits replacing those inherited from init (strictly increasing resources,
    /// `soft <= hard`); empty: init's.
    pub rlimits: Vec<pvmux_hypercalls::exec::ExecRlimit>,
    /// Supplementary groups, strictly ascending (at most
    /// [`pvmux_hypercalls::bootargs::GROUPS_MAX`]); `None`: none with `user`, else init's
    /// (`runc exec`'s `process.user.additionalGids`).
    pub groups: Option<Vec<u32>>,
    /// The capability sets the program runs with ([`CapSets::ok`]); `None`: the container's
    /// (`runc exec`'s `process.capabilities`).
    pub caps: Option<CapSets>,
}

impl ExecSpec {
    /// Runs `argv` with the defaults.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Vec<u8>>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// How an exec session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecExit {
    /// The program exited with this code (0..=255).
    Exited(i32),
    /// The program was killed by this signal.
    Signaled(i32),
    /// The program could not be started: the guest's Linux errno (`ENOENT` 2: no such
    /// program; `EACCES` 13: not executable; ...). The guest wrote a message on the session's
    /// standard error.
    NotStarted {
        /// The Linux errno.
        errno: i32,
    },
    /// The tenant ended first (its program was killed with it).
    TenantEnded,
}

impl ExecExit {
    /// From a Linux wait status the guest reported.
    pub(crate) fn from_wait_status(ws: i32) -> Self {
        if ws & 0x7f == 0 {
            Self::Exited((ws >> 8) & 0xff)
        } else {
            Self::Signaled(ws & 0x7f)
        }
    }

    /// The exit status a shell (and `runc exec`, `podman exec`) reports: the code; 128 + the
    /// signal; 127 for a program that does not exist (`ENOENT`, `ENOTDIR`), 126 for one that
    /// cannot be run; 137 (killed) when the tenant ended.
    pub fn code(&self) -> i32 {
        match *self {
            Self::Exited(c) => c,
            Self::Signaled(s) => 128 + s,
            Self::NotStarted { errno: 2 | 20 } => 127,
            Self::NotStarted { .. } => 126,
            Self::TenantEnded => 137,
        }
    }
}

impl std::fmt::Display for ExecExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Exited(c) => write!(f, "exited with {c}"),
            Self::Signaled(s) => write!(f, "killed by signal {s}"),
            Self::NotStarted { errno } => write!(f, "not started (errno {errno})"),
            Self::TenantEnded => f.write_str("ended with its tenant"),
        }
    }
}

/// Why an exec request was refused before it reached the guest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExecError {
    /// The tenant has ended.
    #[error("the tenant is not running")]
    NotRunning,
    /// The tenant already has the most sessions it may have.
    #[error("the tenant already has {max} exec sessions", max = pvmux_hypercalls::exec::MAX_SESSIONS)]
    TooManySessions,
    /// No program given.
    #[error("no program to run")]
    NoProgram,
    /// An argument, environment entry or the directory holds a NUL byte, or the directory is
    /// not absolute.
    #[error("an argument, environment entry or the working directory is malformed (NUL byte, or a relative directory)")]
    Malformed,
    /// A resource limit is out of order, repeated, unknown, or its soft limit is above its
    /// hard one.
    #[error(
        "a resource limit is malformed (unknown, repeated or out of order, or soft above hard)"
    )]
    BadRlimit,
    /// The supplementary groups are not strictly ascending, or more than
    /// [`pvmux_hypercalls::bootargs::GROUPS_MAX`].
    #[error(
        "the supplementary groups are malformed (not strictly ascending, or more than {max})",
        max = pvmux_hypercalls::bootargs::GROUPS_MAX
    )]
    BadGroups,
    /// The capability sets name an unknown capability, or break Linux's rules (effective
    /// within permitted, ambient within permitted and inheritable).
    #[error("the capability sets are malformed (an unknown capability, an effective one not permitted, or an ambient one not permitted and inheritable)")]
    BadCaps,
    /// The arguments and environment are too long.
    #[error("the arguments and environment are longer than {max} bytes", max = pvmux_hypercalls::exec::REQUEST_MAX)]
    TooLong,
}

impl From<RequestError> for ExecError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Empty => Self::NoProgram,
            RequestError::BadRlimit => Self::BadRlimit,
            RequestError::BadGroups => Self::BadGroups,
            RequestError::BadCaps => Self::BadCaps,
            RequestError::BadLength | RequestError::Truncated => Self::TooLong,
            _ => Self::Malformed,
        }
    }
}

/// A terminal session's rows when none are given.
pub const DEFAULT_ROWS: u16 = 24;
/// A terminal session's columns when none are given.
pub const DEFAULT_COLS: u16 = 80;

/// Starts exec sessions in one tenant, from any thread, while it runs (cheap to clone).
#[derive(Clone, Debug)]
pub struct ExecHandle {
    pub(crate) table: Arc<ExecTable>,
}

impl ExecHandle {
    /// Queues `spec` for the guest and returns its session at once (the guest starts it
    /// asynchronously: [`ExecSession::wait_started`]).
    pub fn exec(&self, spec: &ExecSpec) -> Result<ExecSession, ExecError> {
        // Checked once here: the same strings encode for every session id.
        table::encode_request(spec, 1)?;
        let (rows, cols) = spec.tty_size.unwrap_or_default();
        let size = spec.tty.then_some((
            if rows == 0 { DEFAULT_ROWS } else { rows },
            if cols == 0 { DEFAULT_COLS } else { cols },
        ));
        let session = self
            .table
            .queue(size, |id| {
                table::encode_request(spec, id).unwrap_or_default()
            })
            .map_err(|e| match e {
                QueueError::Closed => ExecError::NotRunning,
                QueueError::Full => ExecError::TooManySessions,
            })?;
        Ok(ExecSession {
            stdin: Some(ExecStdin {
                session: Arc::clone(&session),
                table: Arc::clone(&self.table),
            }),
            stdout: Some(ExecOutput {
                session: Arc::clone(&session),
                table: Arc::clone(&self.table),
                index: 0,
            }),
            stderr: Some(ExecOutput {
                session: Arc::clone(&session),
                table: Arc::clone(&self.table),
                index: 1,
            }),
            session,
            table: Arc::clone(&self.table),
        })
    }
}

/// Resizes a terminal session's terminal ([`ExecSession::resizer`]).
#[derive(Clone, Debug)]
pub struct ExecResizer {
    session: Arc<Session>,
    table: Arc<ExecTable>,
}

impl ExecResizer {
    /// Sets the terminal's size (a zero is kept as it was): the program gets `SIGWINCH`.
    /// Nothing happens for a session without a terminal.
    pub fn resize(&self, rows: u16, cols: u16) {
        let mut st = self.session.lock();
        let Some(size) = st.tty_size.as_mut() else {
            return;
        };
        let new = (
            if rows == 0 { size.0 } else { rows },
            if cols == 0 { size.1 } else { cols },
        );
        if new == *size {
            return;
        }
        *size = new;
        drop(st);
        self.table.raise();
    }
}

/// Sends signals to a session's program ([`ExecSession::signaller`]).
#[derive(Clone, Debug)]
pub struct ExecSignaller {
    session: Arc<Session>,
    table: Arc<ExecTable>,
}

impl ExecSignaller {
    /// Sends signal `signo` (1..=63; anything else is ignored) to the program, as a signal
    /// from outside the guest (`SI_USER` from pid 0). One not yet taken by the guest is
    /// delivered once however often it was sent, as Linux's standard signals; one sent
    /// before the program runs is delivered once it does; nothing happens once it ended.
    pub fn signal(&self, signo: u8) {
        if !(1..=63).contains(&signo) {
            return;
        }
        let mut st = self.session.lock();
        if matches!(st.phase, Phase::Ended(_)) {
            return;
        }
        st.signals |= 1 << (signo - 1);
        drop(st);
        self.table.raise();
    }
}

/// One program started by [`ExecHandle::exec`]. Its input and outputs can be taken and used
/// from other threads; dropping an output discards what the program writes there from then
/// on, dropping the input closes it (the program reads end of file).
#[derive(Debug)]
pub struct ExecSession {
    session: Arc<Session>,
    table: Arc<ExecTable>,
    stdin: Option<ExecStdin>,
    stdout: Option<ExecOutput>,
    stderr: Option<ExecOutput>,
}

impl ExecSession {
    /// The session id (unique within the tenant).
    pub fn id(&self) -> u64 {
        self.session.id
    }

    /// Takes the program's standard input (once).
    pub fn stdin(&mut self) -> Option<ExecStdin> {
        self.stdin.take()
    }

    /// Takes the program's standard output (once).
    pub fn stdout(&mut self) -> Option<ExecOutput> {
        self.stdout.take()
    }

    /// Takes the program's standard error (once).
    pub fn stderr(&mut self) -> Option<ExecOutput> {
        self.stderr.take()
    }

    /// Waits until the program has started (its guest pid, also if it has ended since) or
    /// the session ended without it running.
    pub fn wait_started(&self) -> Result<u32, ExecExit> {
        let mut st = self.session.lock();
        loop {
            if let Some(pid) = st.pid {
                return Ok(pid);
            }
            match st.phase {
                Phase::Ended(how) => return Err(how),
                _ => st = self.session.wait(st),
            }
        }
    }

    /// Waits for the end of the session: the program has ended and its outputs are closed
    /// (what is still buffered can be read after this returns).
    pub fn wait(&self) -> ExecExit {
        let mut st = self.session.lock();
        loop {
            if let Phase::Ended(how) = st.phase {
                return how;
            }
            st = self.session.wait(st);
        }
    }

    /// A handle that resizes the session's terminal (from any thread).
    pub fn resizer(&self) -> ExecResizer {
        ExecResizer {
            session: Arc::clone(&self.session),
            table: Arc::clone(&self.table),
        }
    }

    /// A handle that sends the program signals (from any thread).
    pub fn signaller(&self) -> ExecSignaller {
        ExecSignaller {
            session: Arc::clone(&self.session),
            table: Arc::clone(&self.table),
        }
    }

    /// The session's end if it has ended.
    pub fn try_wait(&self) -> Option<ExecExit> {
        match self.session.lock().phase {
            Phase::Ended(how) => Some(how),
            _ => None,
        }
    }

    /// The most bytes the host ever held for (standard output, standard error): at most
    /// [`pvmux_hypercalls::exec::OUTPUT_BUFFER`] each, whatever the guest writes.
    pub fn peak_buffered(&self) -> (usize, usize) {
        let st = self.session.lock();
        (st.out[0].peak, st.out[1].peak)
    }
}

/// The program's standard input. Writes block while the host's buffer
/// ([`pvmux_hypercalls::exec::INPUT_BUFFER`] bytes) is full; they fail with `BrokenPipe`
/// once the session has ended. Dropping it (or [`ExecStdin::close`]) is the end of input.
#[derive(Debug)]
pub struct ExecStdin {
    session: Arc<Session>,
    table: Arc<ExecTable>,
}

impl ExecStdin {
    /// Closes the input: the program reads end of file once it has read what was written.
    pub fn close(self) {}
}

impl Write for ExecStdin {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut st = self.session.lock();
        loop {
            if matches!(st.phase, Phase::Ended(_)) {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            let room = pvmux_hypercalls::exec::INPUT_BUFFER - st.stdin.len();
            if room > 0 {
                let n = room.min(buf.len());
                st.stdin.extend(&buf[..n]);
                drop(st);
                self.table.raise();
                return Ok(n);
            }
            st = self.session.wait(st);
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ExecStdin {
    fn drop(&mut self) {
        self.session.lock().stdin_eof = true;
        self.table.raise();
    }
}

/// The program's standard output or standard error: reads block until bytes arrive, and
/// return 0 once the session has ended and everything was read.
#[derive(Debug)]
pub struct ExecOutput {
    session: Arc<Session>,
    table: Arc<ExecTable>,
    index: usize,
}

impl Read for ExecOutput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut st = self.session.lock();
        loop {
            let out = &mut st.out[self.index];
            if !out.buf.is_empty() {
                let n = out.buf.len().min(buf.len());
                table::take_front(&mut out.buf, &mut buf[..n]);
                let blocked = std::mem::take(&mut out.guest_blocked);
                drop(st);
                self.session.changed.notify_all();
                if blocked {
                    self.table.raise();
                }
                return Ok(n);
            }
            if matches!(st.phase, Phase::Ended(_)) {
                return Ok(0);
            }
            st = self.session.wait(st);
        }
    }
}

impl Drop for ExecOutput {
    fn drop(&mut self) {
        let mut st = self.session.lock();
        let out = &mut st.out[self.index];
        out.detached = true;
        out.buf = Default::default();
        let blocked = std::mem::take(&mut out.guest_blocked);
        drop(st);
        if blocked {
            self.table.raise();
        }
    }
}

#[cfg(test)]
mod tests;
