//! The sockets between the CLI and a container's monitor, one request or report per
//! connection, one line each way:
//!
//! - hand-shake (`nfy.sock`, bound by `create` while it waits): the monitor connects and
//!   writes `ok` once the container is `created`, or `error: MESSAGE` (e.g. an unusable
//!   rootfs or kernel image) and exits.
//! - control (`ctl.sock`, bound by the monitor): the CLI writes a request line, the monitor
//!   answers `ok` or `error: MESSAGE`. Requests: `start` (boot the guest and run the program).
//!   `exec` will come here: the request line names the process (a JSON `process` object as
//!   runc's `--process` file) and its stdin/stdout/stderr travel with it as SCM_RIGHTS
//!   descriptors; the monitor hands them to the host library's process-start call and answers
//!   with the new process's id. Signals are not requests: `kill` sends host signals to the
//!   monitor's pid, which forwards them (docs/OCI.md).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use anyhow::{bail, Context};

/// A request on the control socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// Boot the guest and run the container's program.
    Start,
}

impl Request {
    fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
        }
    }

    pub(crate) fn parse(line: &str) -> Option<Self> {
        match line.trim_end() {
            "start" => Some(Self::Start),
            _ => None,
        }
    }
}

/// Reads one answer line: `Ok` for `ok`, the message of `error: MESSAGE`.
pub(crate) fn read_answer(stream: &UnixStream) -> anyhow::Result<()> {
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    match line.trim_end() {
        "ok" => Ok(()),
        l => match l.strip_prefix("error: ") {
            Some(msg) => bail!("{msg}"),
            None if l.is_empty() => bail!("the container's monitor ended without an answer"),
            None => bail!("unexpected answer from the container's monitor: {l:?}"),
        },
    }
}

/// Writes an answer line.
pub(crate) fn answer(mut stream: &UnixStream, result: &anyhow::Result<()>) {
    let line = match result {
        Ok(()) => "ok\n".to_owned(),
        Err(e) => format!("error: {}\n", format!("{e:#}").replace('\n', " ")),
    };
    let _ = stream.write_all(line.as_bytes());
}

/// Sends `req` to the monitor listening on `path` and waits for its answer.
pub(crate) fn request(path: &Path, req: Request) -> anyhow::Result<()> {
    let mut s = UnixStream::connect(path)
        .with_context(|| format!("cannot reach the container's monitor at {}", path.display()))?;
    s.write_all(format!("{}\n", req.as_str()).as_bytes())?;
    read_answer(&s)
}

/// Waits until the monitor `child` reports on `listener`, or dies first.
pub(crate) fn await_ready(
    listener: &UnixListener,
    child: &std::process::Child,
) -> anyhow::Result<()> {
    use rustix::event::{poll, PollFd, PollFlags};
    let pid = rustix::process::Pid::from_raw(child.id() as i32).context("bad pid")?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .context("cannot watch the container's monitor")?;
    loop {
        let mut fds = [
            PollFd::new(listener, PollFlags::IN),
            PollFd::new(&pidfd, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e).context("cannot wait for the container's monitor"),
            Ok(_) => {}
        }
        if !fds[0].revents().is_empty() {
            let (stream, _) = listener.accept()?;
            return read_answer(&stream);
        }
        if !fds[1].revents().is_empty() {
            bail!("the container's monitor exited before the container was created");
        }
    }
}

/// The monitor's report on the hand-shake socket at `path`.
pub(crate) fn report(path: &Path, result: &anyhow::Result<()>) -> anyhow::Result<()> {
    let s = UnixStream::connect(path)
        .with_context(|| format!("cannot reach pvmux create at {}", path.display()))?;
    answer(&s, result);
    Ok(())
}
