//! The exec control socket: a UNIX stream socket on which a running `pvmux run
//! --exec-socket PATH` takes exec requests from `pvmux exec --socket PATH -- CMD...` (and
//! from the OCI runtime's `exec` later). Host-internal: both ends are this module.
//!
//! One connection is one session. Every message is a **frame**: a kind byte, a `u32`
//! little-endian payload length (at most [`FRAME_MAX`]), the payload.
//!
//! | dir | kind | payload |
//! |---|---|---|
//! | client → server | 1 `SPEC` (first frame, once) | an exec request in the ABI's encoding (`pvmux_hypercalls::exec::encode`; its session id is ignored, use 1) |
//! | client → server | 2 `STDIN` | bytes for the program's standard input |
//! | client → server | 3 `STDIN_EOF` | empty: the end of its input |
//! | client → server | 4 `RESIZE` | `u16` rows, `u16` columns: a terminal session's new size |
//! | client → server | 5 `SIGNAL` | `u8` signal number, 1..=63: sent to the program (`ExecSignalTake`) |
//! | client → server | 6 `TIE` | empty: if the connection closes before the session ends, the program gets `SIGKILL` |
//! | server → client | 16 `STARTED` | `u32` guest pid |
//! | server → client | 17 `STDOUT`, 18 `STDERR` | the program's output |
//! | server → client | 19 `EXIT` (last) | `u32` kind (1 exited, 2 killed by a signal, 3 not started, 4 the tenant ended), `i32` value (code, signal, errno, 0), `i32` the shell's exit status ([`super::ExecExit::code`]) |
//! | server → client | 20 `ERROR` (last) | UTF-8 text: the request was refused ([`super::ExecError`]) or malformed |
//!
//! The server sends every `STDOUT`/`STDERR` frame before `EXIT`. A client that goes away
//! closes the program's input; its output is then discarded (and after `TIE`, the program
//! is killed).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use pvmux_hypercalls::exec::{ExecRequest, REQUEST_MAX};

use super::{ExecExit, ExecHandle, ExecSpec};

/// Largest frame payload.
pub const FRAME_MAX: usize = REQUEST_MAX;

/// Frame kinds.
pub mod kind {
    /// The request (client).
    pub const SPEC: u8 = 1;
    /// Input bytes (client).
    pub const STDIN: u8 = 2;
    /// End of input (client).
    pub const STDIN_EOF: u8 = 3;
    /// A terminal's new size (client).
    pub const RESIZE: u8 = 4;
    /// Client → server: `u8` signal number (1..=63) for the program.
    pub const SIGNAL: u8 = 5;
    /// Client → server, empty: the client stands for the program (`exec --detach`'s
    /// holder): when its connection closes before the end, the program gets `SIGKILL`.
    pub const TIE: u8 = 6;
    /// The program runs (server).
    pub const STARTED: u8 = 16;
    /// Standard output (server).
    pub const STDOUT: u8 = 17;
    /// Standard error (server).
    pub const STDERR: u8 = 18;
    /// The end (server).
    pub const EXIT: u8 = 19;
    /// A refusal (server).
    pub const ERROR: u8 = 20;
}

/// Errors of the control socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketError {
    /// Connecting, reading or writing failed.
    #[error("exec socket {path}: {source}")]
    Io {
        /// The socket's path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The server refused the request.
    #[error("{0}")]
    Refused(String),
    /// The other side broke the protocol.
    #[error("exec socket: {0}")]
    Protocol(&'static str),
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l as usize <= FRAME_MAX)
        .ok_or(std::io::ErrorKind::InvalidInput)?;
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..].copy_from_slice(&len.to_le_bytes());
    w.write_all(&head)?;
    w.write_all(payload)
}

/// Reads one frame; `None` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[1..])?;
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > FRAME_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame too long",
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

/// The `EXIT` payload of `how`.
fn exit_payload(how: ExecExit) -> [u8; 12] {
    let (k, v): (u32, i32) = match how {
        ExecExit::Exited(c) => (1, c),
        ExecExit::Signaled(s) => (2, s),
        ExecExit::NotStarted { errno } => (3, errno),
        ExecExit::TenantEnded => (4, 0),
    };
    let mut p = [0u8; 12];
    p[..4].copy_from_slice(&k.to_le_bytes());
    p[4..8].copy_from_slice(&v.to_le_bytes());
    p[8..].copy_from_slice(&how.code().to_le_bytes());
    p
}

fn parse_exit(p: &[u8]) -> Option<ExecExit> {
    let word = |i: usize| p.get(i..i + 4).map(|b| [b[0], b[1], b[2], b[3]]);
    let k = u32::from_le_bytes(word(0)?);
    let v = i32::from_le_bytes(word(4)?);
    Some(match k {
        1 => ExecExit::Exited(v),
        2 => ExecExit::Signaled(v),
        3 => ExecExit::NotStarted { errno: v },
        4 => ExecExit::TenantEnded,
        _ => return None,
    })
}

/// The `SPEC` payload of `spec` (the ABI's encoding of an exec request, session 1).
pub fn encode_spec(spec: &ExecSpec) -> Result<Vec<u8>, super::ExecError> {
    super::table::encode_request(spec, 1).map_err(super::ExecError::from)
}

/// The spec a `SPEC` payload asks for (`None`: malformed).
pub fn parse_spec(p: &[u8]) -> Option<ExecSpec> {
    let r = ExecRequest::parse(p).ok()?;
    let params = r.params();
    Some(ExecSpec {
        argv: r.args().map(<[u8]>::to_vec).collect(),
        env: r.env().map(<[u8]>::to_vec).collect(),
        cwd: params.cwd.map(<[u8]>::to_vec),
        user: params.user,
        tty: params.tty,
        tty_size: (params.tty && params.tty_size != (0, 0)).then_some(params.tty_size),
        rlimits: params.rlimits.iter().collect(),
        groups: params.groups.map(|g| g.iter().collect()),
        caps: params.caps,
    })
}

/// A listening control socket; dropping it stops accepting and removes the socket file
/// (sessions already connected run to their end).
#[derive(Debug)]
pub struct ExecServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ExecServer {
    /// Listens at `path` (which must not exist) and serves every connection with `handle`.
    pub fn bind(path: &Path, handle: ExecHandle) -> Result<Self, SocketError> {
        let io = |source| SocketError::Io {
            path: path.to_owned(),
            source,
        };
        let listener = UnixListener::bind(path).map_err(io)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("pvmux-exec-socket".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let h = handle.clone();
                    let _ = std::thread::Builder::new()
                        .name("pvmux-exec-conn".into())
                        .spawn(move || serve_one(conn, &h));
                }
            })
            .map_err(io)?;
        Ok(Self {
            path: path.to_owned(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ExecServer {
    fn drop(&mut self) {
        // A connection of our own wakes the accept loop, which then sees the flag.
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            if UnixStream::connect(&self.path).is_ok() {
                let _ = t.join();
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Linux's `SIGKILL`.
const SIGKILL: u8 = 9;

/// One connection: one session.
fn serve_one(conn: UnixStream, handle: &ExecHandle) {
    let (Ok(mut reader), Ok(writer)) = (conn.try_clone(), conn.try_clone()) else {
        return;
    };
    let writer = Arc::new(Mutex::new(writer));
    let send = |k: u8, p: &[u8]| {
        let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
        write_frame(&mut *w, k, p)
    };
    let spec = match read_frame(&mut reader) {
        Ok(Some((kind::SPEC, p))) => parse_spec(&p),
        _ => None,
    };
    let Some(spec) = spec else {
        let _ = send(kind::ERROR, b"malformed exec request");
        return;
    };
    let mut session = match handle.exec(&spec) {
        Ok(s) => s,
        Err(e) => {
            let _ = send(kind::ERROR, e.to_string().as_bytes());
            return;
        }
    };
    // The client's frames until it goes away (or the session ends and the connection is
    // shut down): input to the program until its end, resizes, signals.
    let mut stdin = session.stdin();
    let resizer = session.resizer();
    let signaller = session.signaller();
    let _ = std::thread::Builder::new()
        .name("pvmux-exec-in".into())
        .spawn(move || {
            let mut tied = false;
            while let Ok(Some((k, p))) = read_frame(&mut reader) {
                match (k, &p[..]) {
                    (kind::STDIN, _) => {
                        if stdin.as_mut().is_some_and(|s| s.write_all(&p).is_err()) {
                            stdin = None; // the program's input is gone
                        }
                    }
                    (kind::STDIN_EOF, []) => stdin = None,
                    (kind::RESIZE, &[r0, r1, c0, c1]) => {
                        resizer.resize(u16::from_le_bytes([r0, r1]), u16::from_le_bytes([c0, c1]))
                    }
                    (kind::SIGNAL, &[signo]) => signaller.signal(signo),
                    (kind::TIE, []) => tied = true,
                    _ => break,
                }
            }
            if tied {
                // The client that stands for the program is gone: so is the program
                // (nothing happens if it already ended).
                signaller.signal(SIGKILL);
            }
        });
    let pumps: Vec<_> = [
        (session.stdout(), kind::STDOUT),
        (session.stderr(), kind::STDERR),
    ]
    .into_iter()
    .filter_map(|(out, k)| {
        let mut out = out?;
        let w = Arc::clone(&writer);
        std::thread::Builder::new()
            .name("pvmux-exec-out".into())
            .spawn(move || {
                let mut buf = vec![0u8; FRAME_MAX];
                while let Ok(n @ 1..) = out.read(&mut buf) {
                    let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
                    if write_frame(&mut *w, k, &buf[..n]).is_err() {
                        break; // the client is gone: `out` drops, output is discarded
                    }
                }
            })
            .ok()
    })
    .collect();
    if let Ok(pid) = session.wait_started() {
        let _ = send(kind::STARTED, &pid.to_le_bytes());
    }
    let how = session.wait();
    for p in pumps {
        let _ = p.join();
    }
    let _ = send(kind::EXIT, &exit_payload(how));
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

/// What a client saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientEnd {
    /// The guest pid, if the program started.
    pub pid: Option<u32>,
    /// How the session ended.
    pub exit: ExecExit,
}

/// What the server sent a [`Client`] (one frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The program runs, with this guest pid.
    Started(u32),
    /// Bytes of its standard output.
    Stdout(Vec<u8>),
    /// Bytes of its standard error.
    Stderr(Vec<u8>),
    /// The session ended (the last event).
    End(ExecExit),
}

/// One session over the control socket, driven by its user: [`Client::next_event`] reads what
/// the server sends, a [`ClientWriter`] (from any thread) sends input and resizes.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    conn: UnixStream,
    writer: ClientWriter,
}

/// The sending half of a [`Client`] (cheap to clone; frames from several threads do not
/// interleave).
#[derive(Clone, Debug)]
pub struct ClientWriter {
    conn: Arc<Mutex<UnixStream>>,
}

impl ClientWriter {
    fn send(&self, k: u8, p: &[u8]) -> std::io::Result<()> {
        let mut w = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        write_frame(&mut *w, k, p)
    }

    /// Input for the program (in frames of at most [`FRAME_MAX`] bytes).
    pub fn stdin(&self, bytes: &[u8]) -> std::io::Result<()> {
        for chunk in bytes.chunks(FRAME_MAX) {
            self.send(kind::STDIN, chunk)?;
        }
        Ok(())
    }

    /// The end of the program's input.
    pub fn close_stdin(&self) -> std::io::Result<()> {
        self.send(kind::STDIN_EOF, &[])
    }

    /// A signal for the program (1..=63).
    pub fn signal(&self, signo: u8) -> std::io::Result<()> {
        self.send(kind::SIGNAL, &[signo])
    }

    /// Ties the program to this client: when the connection closes before the session
    /// ends (the client died), the program gets `SIGKILL`.
    pub fn tie(&self) -> std::io::Result<()> {
        self.send(kind::TIE, &[])
    }

    /// A terminal session's new size (the program gets `SIGWINCH`).
    pub fn resize(&self, rows: u16, cols: u16) -> std::io::Result<()> {
        let mut p = [0u8; 4];
        p[..2].copy_from_slice(&rows.to_le_bytes());
        p[2..].copy_from_slice(&cols.to_le_bytes());
        self.send(kind::RESIZE, &p)
    }

    /// Copies `src` to the program's input in a thread of its own (detached: it may stay
    /// blocked in a read after the end), then closes the input.
    pub fn spawn_stdin(&self, mut src: Box<dyn Read + Send>) {
        let w = self.clone();
        let _ = std::thread::Builder::new()
            .name("pvmux-exec-stdin".into())
            .spawn(move || {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match src.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if w.stdin(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = w.close_stdin();
            });
    }
}

impl Client {
    /// Connects to the control socket at `path` and asks for `spec`.
    pub fn connect(path: &Path, spec: &ExecSpec) -> Result<Self, SocketError> {
        let io = |source| SocketError::Io {
            path: path.to_owned(),
            source,
        };
        let request = super::table::encode_request(spec, 1)
            .map_err(|e| SocketError::Refused(super::ExecError::from(e).to_string()))?;
        let mut conn = UnixStream::connect(path).map_err(io)?;
        write_frame(&mut conn, kind::SPEC, &request).map_err(io)?;
        let writer = ClientWriter {
            conn: Arc::new(Mutex::new(conn.try_clone().map_err(io)?)),
        };
        Ok(Self {
            path: path.to_owned(),
            conn,
            writer,
        })
    }

    /// The sending half.
    pub fn writer(&self) -> ClientWriter {
        self.writer.clone()
    }

    /// The next event; after [`ClientEvent::End`] there is none. A refusal is
    /// [`SocketError::Refused`]; the server (the container) going away first is
    /// [`SocketError::Protocol`].
    pub fn next_event(&mut self) -> Result<ClientEvent, SocketError> {
        let Some((k, p)) = read_frame(&mut self.conn).map_err(|source| SocketError::Io {
            path: self.path.clone(),
            source,
        })?
        else {
            return Err(SocketError::Protocol(
                "the server closed the connection early",
            ));
        };
        Ok(match k {
            kind::STARTED => ClientEvent::Started(
                p.get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or(SocketError::Protocol("malformed STARTED frame"))?,
            ),
            kind::STDOUT => ClientEvent::Stdout(p),
            kind::STDERR => ClientEvent::Stderr(p),
            kind::EXIT => ClientEvent::End(
                parse_exit(&p).ok_or(SocketError::Protocol("malformed EXIT frame"))?,
            ),
            kind::ERROR => {
                return Err(SocketError::Refused(
                    String::from_utf8_lossy(&p).into_owned(),
                ))
            }
            _ => return Err(SocketError::Protocol("unknown frame kind")),
        })
    }
}

/// Runs `spec` through the control socket at `path`: copies `stdin` to the program (in a
/// thread of its own, detached: it may stay blocked in a read after the end) and its
/// outputs to `stdout` and `stderr` until the end. With `detach`, returns as soon as the
/// program runs (or could not start): the connection closes, so its input ends and its
/// output is discarded; the returned exit is then [`ExecExit::Exited`]`(0)` if it started.
pub fn run_client(
    path: &Path,
    spec: &ExecSpec,
    stdin: Option<Box<dyn Read + Send>>,
    detach: bool,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<ClientEnd, SocketError> {
    let io = |source| SocketError::Io {
        path: path.to_owned(),
        source,
    };
    let mut client = Client::connect(path, spec)?;
    match stdin {
        Some(src) => client.writer().spawn_stdin(src),
        None => client.writer().close_stdin().map_err(io)?,
    }
    let mut pid = None;
    loop {
        match client.next_event()? {
            ClientEvent::Started(p) => {
                pid = Some(p);
                if detach {
                    return Ok(ClientEnd {
                        pid,
                        exit: ExecExit::Exited(0),
                    });
                }
            }
            ClientEvent::Stdout(b) => {
                stdout.write_all(&b).map_err(io)?;
                stdout.flush().map_err(io)?;
            }
            ClientEvent::Stderr(b) => {
                stderr.write_all(&b).map_err(io)?;
                stderr.flush().map_err(io)?;
            }
            ClientEvent::End(exit) => return Ok(ClientEnd { pid, exit }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_exits_round_trip() {
        let mut v = Vec::new();
        write_frame(&mut v, kind::STDOUT, b"abc").unwrap();
        write_frame(&mut v, kind::STDIN_EOF, b"").unwrap();
        let mut r = &v[..];
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((kind::STDOUT, b"abc".to_vec()))
        );
        assert_eq!(read_frame(&mut r).unwrap(), Some((kind::STDIN_EOF, vec![])));
        assert_eq!(read_frame(&mut r).unwrap(), None);
        let mut r = &[kind::STDOUT, 0xff, 0xff, 0xff, 0xff][..];
        assert!(read_frame(&mut r).is_err());
        assert!(write_frame(&mut Vec::new(), 1, &vec![0; FRAME_MAX + 1]).is_err());
        for how in [
            ExecExit::Exited(3),
            ExecExit::Signaled(9),
            ExecExit::NotStarted { errno: 2 },
            ExecExit::TenantEnded,
        ] {
            assert_eq!(parse_exit(&exit_payload(how)), Some(how));
        }
        assert_eq!(parse_exit(&[9; 12]), None);
        assert_eq!(parse_exit(&[1, 0]), None);
        let spec = ExecSpec {
            cwd: Some(b"/w".to_vec()),
            user: Some((1, 2)),
            tty: true,
            tty_size: Some((30, 100)),
            env: vec![b"K=V".to_vec()],
            rlimits: vec![pvmux_hypercalls::exec::ExecRlimit {
                resource: 7,
                reserved: 0,
                soft: 64,
                hard: 128,
            }],
            groups: Some(vec![4, 27, 1000]),
            caps: Some(pvmux_hypercalls::bootargs::CapSets {
                effective: 1,
                permitted: 1,
                inheritable: 0,
                bounding: 3,
                ambient: 0,
            }),
            ..ExecSpec::new(["ls", "-l"])
        };
        let p = super::super::table::encode_request(&spec, 1).unwrap();
        assert_eq!(parse_spec(&p), Some(spec));
        assert_eq!(parse_spec(b"junk"), None);
    }
}
