//! `pvmux exec --detach` as engines call it (conmon: `exec --pid-file F --process P.json
//! --detach [--tty --console-socket S] ID`): as with runc, the pid in `--pid-file` is a host
//! process standing for the exec'd program, which the engine (a child subreaper) waits on.
//!
//! `exec --detach` starts that process, the **holder** (`pvmux exec --holder NFY --socket
//! EXEC.SOCK [--console-socket S]`, hidden), with its own stdin, stdout and stderr (the
//! engine's pipes), and hands it the program's spec over a hand-shake socket `NFY` in the
//! container's state directory. The holder opens the exec session on the container's
//! `exec.sock` (with a terminal: it first makes a pseudo-terminal, sends the master to the
//! console socket and makes the slave its controlling terminal and stdio), answers `ok` once
//! the program runs (or `error: MESSAGE`, the guest's message, when it could not start), and
//! then relays the stdio it holds to the session until the program ends; its exit status is
//! the program's (128+N for a signal; 137 when the container stopped first). `exec` writes
//! the holder's pid to `--pid-file` and exits; the holder is re-parented to the engine's
//! subreaper.
//!
//! No orphans: the holder dies with `exec` until it has answered (`PR_SET_PDEATHSIG`), and
//! ends with the session, which ends with the container (its monitor's socket closes). With
//! a terminal, `SIGWINCH` (the engine resized the master) passes the new size on to the
//! guest's terminal of the session.
//!
//! Signals: the holder stands for the program, so the signals an engine sends it (SIGHUP,
//! SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGTERM: `ctr task kill --exec-id`, a probe's
//! timeout) are passed on to the program in the guest (ABI `ExecSignalTake`), and the session
//! is tied to the holder: if the holder dies (SIGKILL cannot be caught), the program is
//! killed too, as runc's exec'd process would be.

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use pvmux_host::exec::socket::{
    encode_spec, parse_spec, read_frame, write_frame, Client, ClientEvent, SocketError,
};
use pvmux_host::{ExecExit, ExecSpec};

use super::super::oci::{console, control};
use super::super::winsize;

/// Most bytes of the program's output held back until it runs (its standard error before
/// `STARTED` is the guest's reason when it could not start).
const HELD_MAX: usize = 64 * 1024;
/// Longest an exec session with a terminal and no `consoleSize` waits for the engine to size
/// the terminal before its program starts (runc's own exec takes longer than this).
const ENGINE_SIZE_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Removes the hand-shake socket when `exec` returns.
struct Remove(PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `exec --detach` (runc's form): starts the holder of `spec` on the container's exec socket
/// `socket`, waits until the program runs, writes the holder's pid to `pid_file`.
pub(super) fn start(
    socket: &Path,
    spec: &ExecSpec,
    console_socket: Option<&Path>,
    pid_file: Option<&Path>,
    log: Option<&Path>,
) -> anyhow::Result<u8> {
    if spec.tty && console_socket.is_none() {
        bail!("cannot allocate a terminal if exec detaches without --console-socket");
    }
    let request = encode_spec(spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Short: a socket's path has at most 107 bytes, and containerd's state directories are
    // long (`/run/containerd/runc/k8s.io/<64 hex digits>/`).
    let nfy = socket.with_file_name(format!("e{}", std::process::id()));
    let listener =
        UnixListener::bind(&nfy).with_context(|| format!("cannot listen on {}", nfy.display()))?;
    let _remove = Remove(nfy.clone());
    let exe = std::env::current_exe().context("cannot find the pvmux executable")?;
    let mut cmd = Command::new(exe);
    // The holder's messages go to the engine's log, not the program's stderr.
    if let Some(log) = log {
        cmd.arg("--log").arg(std::path::absolute(log)?);
    }
    cmd.arg("exec")
        .arg("--holder")
        .arg(&nfy)
        .arg("--socket")
        .arg(socket);
    if let (true, Some(c)) = (spec.tty, console_socket) {
        cmd.arg("--console-socket").arg(std::path::absolute(c)?);
    }
    tracing::debug!(?cmd, "starting the exec holder");
    let mut child = cmd.spawn().context("cannot start the exec holder")?;
    let answered = handshake(&listener, &child, &request);
    if let Err(e) = answered {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    if let Some(f) = pid_file {
        if let Err(e) = super::super::oci::write_pid_file(f, child.id() as i32) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    }
    // The holder outlives this process: its parent becomes the engine's subreaper.
    drop(child);
    Ok(0)
}

/// Sends the request to the holder once it connects and reads its answer (or notices it
/// died first).
fn handshake(
    listener: &UnixListener,
    child: &std::process::Child,
    request: &[u8],
) -> anyhow::Result<()> {
    match control::accept_from(listener, child, "the exec holder")? {
        Some(mut stream) => {
            write_frame(&mut stream, pvmux_host::exec::socket::kind::SPEC, request)
                .context("cannot reach the exec holder")?;
            control::read_answer(&stream).map(drop)
        }
        None => bail!("the exec holder ended before the program ran"),
    }
}

/// The holder (`pvmux exec --holder NFY --socket S [--console-socket C]`): returns the
/// program's exit status.
pub(super) fn hold(nfy: &Path, socket: &Path, console_socket: Option<&Path>) -> anyhow::Result<u8> {
    use rustix::process::{set_parent_process_death_signal, Signal};
    set_parent_process_death_signal(Some(Signal::KILL))
        .context("cannot tie the exec holder to pvmux exec")?;
    // `exec` gone before this point: its listener is closed, the connection is refused.
    let mut hs = UnixStream::connect(nfy)
        .with_context(|| format!("cannot reach pvmux exec at {}", nfy.display()))?;
    let spec = match read_frame(&mut hs) {
        Ok(Some((pvmux_host::exec::socket::kind::SPEC, p))) => parse_spec(&p),
        _ => None,
    };
    let Some(spec) = spec else {
        bail!("pvmux exec sent no exec request");
    };
    match open(spec, socket, console_socket) {
        Ok(session) => session.relay(&hs),
        // `exec` reports it (the holder's stderr is the same as `exec`'s: said once).
        Err(e) => {
            control::answer(&hs, &Err(crate::cli::error_text::flat(&e)));
            Ok(1)
        }
    }
}

/// An open session, not yet started.
struct Opened {
    client: Client,
    tty: Option<(u16, u16)>,
}

/// Sets up the terminal (if any) and opens the session.
fn open(
    mut spec: ExecSpec,
    socket: &Path,
    console_socket: Option<&Path>,
) -> anyhow::Result<Opened> {
    let mut resized = None;
    if spec.tty {
        let Some(c) = console_socket else {
            bail!("a terminal needs --console-socket");
        };
        let (tx, rx) = std::sync::mpsc::channel();
        // Lives as long as the holder.
        std::mem::forget(winsize::watch(move || {
            if let Some(size) = winsize::stdin() {
                let _ = tx.send(size);
            }
        })?);
        // Fully raw: the guest's terminal already turned `\n` into `\r\n`.
        console::attach(c, console::Output::Raw)?;
        // The engine may have sized the master already; else the process's consoleSize.
        // Without either, the engine sizes it once it has the master, asynchronously
        // (conmon: right after it receives it, for `podman exec -t`): wait a little for that
        // size rather than start the program on an unsized terminal that a resize corrects
        // only after the program has read it.
        if let Some(size) = winsize::stdin().or_else(|| {
            spec.tty_size
                .is_none()
                .then(|| winsize::stdin_within(ENGINE_SIZE_WAIT))
                .flatten()
        }) {
            spec.tty_size = Some(size);
        }
        resized = Some(rx);
    }
    let client = Client::connect(socket, &spec).map_err(refused)?;
    let w = client.writer();
    match w.tie() {
        Ok(()) => {}
        // The session ended before the tie arrived (a program that could not start): its
        // end and its output are still to be read.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) => {}
        Err(e) => return Err(e).context("cannot tie the exec session to its holder"),
    }
    let mut signals = signal_hook::iterator::Signals::new(super::super::oci::monitor::FORWARDED)
        .context("cannot handle signals")?;
    std::thread::Builder::new()
        .name("pvmux-exec-signals".into())
        .spawn(move || {
            for s in signals.forever() {
                let Ok(signo) = u8::try_from(s) else { continue };
                if w.signal(signo).is_err() {
                    break;
                }
            }
        })
        .context("cannot start the signal thread")?;
    if let Some(rx) = resized {
        let w = client.writer();
        std::thread::Builder::new()
            .name("pvmux-exec-resize".into())
            .spawn(move || {
                for (r, c) in rx {
                    if w.resize(r, c).is_err() {
                        break;
                    }
                }
            })
            .context("cannot start the resize thread")?;
    }
    Ok(Opened {
        client,
        tty: spec.tty.then(|| spec.tty_size.unwrap_or_default()),
    })
}

fn refused(e: SocketError) -> anyhow::Error {
    match e {
        SocketError::Refused(msg) => anyhow::anyhow!("the guest refused to run the program: {msg}"),
        e => anyhow::Error::new(e).context("cannot run the program in the guest"),
    }
}

impl Opened {
    /// Answers `exec` once the program runs (or could not), then relays until its end.
    fn relay(mut self, hs: &UnixStream) -> anyhow::Result<u8> {
        let mut held: [Vec<u8>; 2] = Default::default();
        let answered = loop {
            match self.client.next_event() {
                Ok(ClientEvent::Started(_)) => break Ok(()),
                Ok(ClientEvent::Stdout(b)) => keep(&mut held[0], &b),
                Ok(ClientEvent::Stderr(b)) => keep(&mut held[1], &b),
                Ok(ClientEvent::End(how)) => {
                    let why = String::from_utf8_lossy(&held[1]).trim().to_owned();
                    let msg = match how {
                        ExecExit::NotStarted { .. } if !why.is_empty() => why,
                        how => format!("the program did not start: {how}"),
                    };
                    break Err((anyhow::anyhow!("{msg}"), how.code()));
                }
                Err(e) => break Err((refused(e), 1)),
            }
        };
        let code = match answered {
            Ok(()) => {
                // From here on the holder is the engine's: it outlives `exec`.
                rustix::process::set_parent_process_death_signal(None)
                    .context("cannot detach the exec holder")?;
                control::answer(hs, &Ok(()));
                self.run(held)
            }
            Err((e, code)) => {
                control::answer(hs, &Err(e));
                code
            }
        };
        Ok(u8::try_from(code & 0xff).unwrap_or(u8::MAX))
    }

    /// Relays the holder's stdio until the session ends; the program's exit status.
    fn run(mut self, held: [Vec<u8>; 2]) -> i32 {
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        // Output nobody reads any more (the engine went away) is dropped; the holder still
        // waits for the program's end.
        let _ = out.write_all(&held[0]).and_then(|()| out.flush());
        let _ = err.write_all(&held[1]).and_then(|()| err.flush());
        let w = self.client.writer();
        w.spawn_stdin(Box::new(std::io::stdin()));
        if let (Some(asked), Some(now)) = (self.tty, winsize::stdin()) {
            if asked != now {
                let _ = w.resize(now.0, now.1);
            }
        }
        loop {
            match self.client.next_event() {
                Ok(ClientEvent::Started(_)) => {}
                Ok(ClientEvent::Stdout(b)) => {
                    let _ = out.write_all(&b).and_then(|()| out.flush());
                }
                Ok(ClientEvent::Stderr(b)) => {
                    let _ = err.write_all(&b).and_then(|()| err.flush());
                }
                Ok(ClientEvent::End(how)) => return how.code(),
                // The container's monitor went away: the program ended with it.
                Err(e) => {
                    tracing::info!("the exec session ended with the container: {e}");
                    return ExecExit::TenantEnded.code();
                }
            }
        }
    }
}

/// Appends `b` to `held`, up to [`HELD_MAX`] bytes.
fn keep(held: &mut Vec<u8>, b: &[u8]) {
    let room = HELD_MAX.saturating_sub(held.len());
    held.extend_from_slice(&b[..b.len().min(room)]);
}
