//! Console input: a reader thread moves bytes from the tenant's input source into a bounded
//! buffer, raises `pending::INPUT` on vCPU 0 when input (or its end) arrives, and the guest
//! drains the buffer with the `ConsoleRead` hypercall. Also: which host standard streams are
//! terminals, and the terminal size (for the boot arguments' console options).

use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use pvmux_hypercalls::bootargs::{ConsoleSize, Terminals};

use pvmux_hypercalls::HcError;

use crate::HostError;

/// Bytes of console input buffered on the host; the reader stops reading while it is full.
pub const INPUT_BUFFER_SIZE: usize = 64 * 1024;
/// Largest read from the source at once.
const READ_CHUNK: usize = 4096;
/// How often the host-stdin reader checks whether the tenant has ended.
const STDIN_POLL: Duration = Duration::from_millis(100);

/// Where a tenant's console input comes from.
pub enum ConsoleInput {
    /// The host's standard input, read with `poll` so that the reader thread ends (and is
    /// joined) with the tenant.
    HostStdin,
    /// Any reader. Its thread cannot be interrupted in `read`: it is detached and ends at the
    /// end of input, on an error, or at the first read that returns after the tenant ended.
    Reader(Box<dyn Read + Send>),
}

impl std::fmt::Debug for ConsoleInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::HostStdin => f.write_str("HostStdin"),
            Self::Reader(_) => f.write_str("Reader(..)"),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    buf: VecDeque<u8>,
    eof: bool,
    /// The tenant ended: the reader stops.
    closed: bool,
}

/// The buffer between the reader thread and `ConsoleRead`.
#[derive(Debug, Default)]
pub(crate) struct InputBuffer {
    state: Mutex<State>,
    /// Signalled when space frees up or the tenant ends.
    space: Condvar,
}

impl InputBuffer {
    /// A buffer with no source: reads see the end of input at once.
    pub(crate) fn without_source() -> Self {
        let b = Self::default();
        b.lock().eof = true;
        b
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes up to `max` buffered bytes: `Ok` with at least one byte, `Ok(empty)` at the end of
    /// input (nothing buffered), `Err(Busy)` when nothing is buffered yet.
    pub(crate) fn take(&self, max: usize) -> Result<Vec<u8>, HcError> {
        let mut st = self.lock();
        if st.buf.is_empty() {
            return if st.eof || max == 0 {
                Ok(Vec::new())
            } else {
                Err(HcError::Busy)
            };
        }
        let n = max.min(st.buf.len());
        let out: Vec<u8> = st.buf.drain(..n).collect();
        drop(st);
        self.space.notify_all();
        Ok(out)
    }

    /// The tenant ended: wakes and stops the reader.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.space.notify_all();
    }

    /// Free space, waiting while the buffer is full; `None` once closed.
    fn wait_space(&self) -> Option<usize> {
        let mut st = self.lock();
        loop {
            if st.closed {
                return None;
            }
            let free = INPUT_BUFFER_SIZE - st.buf.len();
            if free > 0 {
                return Some(free);
            }
            st = self.space.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Appends bytes read from the source.
    fn push(&self, bytes: &[u8]) {
        self.lock().buf.extend(bytes);
    }

    /// Records the end of input.
    fn set_eof(&self) {
        self.lock().eof = true;
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// Starts the reader thread of `input`; `notify` raises `pending::INPUT` in the guest. Returns
/// the thread to join at the end of the tenant, if it can be joined (host stdin).
pub(crate) fn start_reader(
    name: &str,
    input: ConsoleInput,
    buf: Arc<InputBuffer>,
    notify: Box<dyn Fn() + Send>,
) -> Result<Option<JoinHandle<()>>, HostError> {
    let builder = std::thread::Builder::new().name(format!("pvmux-input-{name}"));
    match input {
        ConsoleInput::HostStdin => builder
            .spawn(move || stdin_reader(&buf, &*notify))
            .map(Some)
            .map_err(|e| HostError::os("spawning the console input thread", e)),
        ConsoleInput::Reader(mut r) => builder
            .spawn(move || generic_reader(&mut *r, &buf, &*notify))
            .map(|_detached| None)
            .map_err(|e| HostError::os("spawning the console input thread", e)),
    }
}

fn generic_reader(r: &mut dyn Read, buf: &InputBuffer, notify: &dyn Fn()) {
    let mut chunk = [0u8; READ_CHUNK];
    while let Some(free) = buf.wait_space() {
        let want = free.min(READ_CHUNK);
        match r.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => {
                if buf.is_closed() {
                    return;
                }
                buf.push(&chunk[..n]);
                notify();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("console input failed, treating it as ended: {e}");
                break;
            }
        }
    }
    if !buf.is_closed() {
        buf.set_eof();
        notify();
    }
}

fn stdin_reader(buf: &InputBuffer, notify: &dyn Fn()) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    let ts = Timespec {
        tv_sec: 0,
        tv_nsec: STDIN_POLL.as_nanos() as _,
    };
    let mut chunk = [0u8; READ_CHUNK];
    while let Some(free) = buf.wait_space() {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("poll(stdin) failed, treating console input as ended: {e}");
                break;
            }
        }
        match rustix::io::read(fd, &mut chunk[..free.min(READ_CHUNK)]) {
            Ok(0) => break,
            Ok(n) => {
                buf.push(&chunk[..n]);
                notify();
            }
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(e) => {
                tracing::warn!("reading stdin failed, treating console input as ended: {e}");
                break;
            }
        }
    }
    if !buf.is_closed() {
        buf.set_eof();
        notify();
    }
}

/// Which of the host's standard streams (fds 0, 1 and 2) are terminals: the boot
/// arguments' [`Terminals`].
pub fn host_terminals() -> Terminals {
    use std::io::IsTerminal;
    Terminals {
        stdin: std::io::stdin().is_terminal(),
        stdout: std::io::stdout().is_terminal(),
        stderr: std::io::stderr().is_terminal(),
    }
}

/// The size of the terminal `fd` refers to; `None` if it is not a terminal or reports a zero
/// size.
pub fn terminal_size(fd: impl AsFd) -> Option<ConsoleSize> {
    let ws = rustix::termios::tcgetwinsize(fd).ok()?;
    ConsoleSize::new(ws.ws_col, ws.ws_row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    #[test]
    fn without_a_source_input_has_ended() {
        let b = InputBuffer::without_source();
        assert_eq!(b.take(10), Ok(vec![]));
        let b = InputBuffer::default();
        assert_eq!(b.take(10), Err(HcError::Busy));
        assert_eq!(b.take(0), Ok(vec![]), "zero-length reads return 0");
    }

    /// A reader delivers everything in order through a full buffer (it blocks while full),
    /// notifies, and records the end of input.
    #[test]
    fn reader_fills_a_bounded_buffer_and_records_eof() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let buf = Arc::new(InputBuffer::default());
        let notes = Arc::new(AtomicUsize::new(0));
        let n2 = Arc::clone(&notes);
        let h = start_reader(
            "t",
            ConsoleInput::Reader(Box::new(std::io::Cursor::new(data.clone()))),
            Arc::clone(&buf),
            Box::new(move || {
                n2.fetch_add(1, SeqCst);
            }),
        )
        .unwrap();
        assert!(h.is_none(), "generic readers are detached");
        let mut got = Vec::new();
        let start = std::time::Instant::now();
        loop {
            match buf.take(30_000) {
                Ok(v) if v.is_empty() => break,
                Ok(v) => {
                    assert!(v.len() <= 30_000);
                    assert!(buf.lock().buf.len() <= INPUT_BUFFER_SIZE);
                    got.extend(v);
                }
                Err(HcError::Busy) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("{e:?}"),
            }
            assert!(start.elapsed() < Duration::from_secs(10));
        }
        assert_eq!(got, data);
        assert!(notes.load(SeqCst) >= 200_000 / READ_CHUNK);
        assert_eq!(buf.take(5), Ok(vec![]), "EOF stays");
    }

    #[test]
    fn a_closed_buffer_stops_a_blocked_reader() {
        let buf = Arc::new(InputBuffer::default());
        buf.push(&vec![0; INPUT_BUFFER_SIZE]);
        let (tx, rx) = std::sync::mpsc::channel();
        let b2 = Arc::clone(&buf);
        std::thread::spawn(move || {
            let r = b2.wait_space();
            let _ = tx.send(r);
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "blocks while full"
        );
        buf.close();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), None);
    }

    #[test]
    fn a_pipe_is_not_a_terminal() {
        let (r, _w) = rustix::pipe::pipe().unwrap();
        assert_eq!(terminal_size(&r), None);
    }
}
