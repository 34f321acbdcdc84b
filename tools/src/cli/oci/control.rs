//! The sockets between the CLI and a container's monitor, one request or report per
//! connection, one line each way:
//!
//! - hand-shake (`nfy.sock`, bound by `create` while it waits): the monitor connects and
//!   writes `ok` once the container is `created`, or `error: MESSAGE` (e.g. an unusable
//!   rootfs or kernel image) and exits.
//! - control (`ctl.sock`, bound by the monitor): the CLI writes a request line, the monitor
//!   answers `ok` (or `ok JSON` with a one-line payload) or `error: MESSAGE`. Requests:
//!   `start` (boot the guest and run the program), `pause`, `resume`, `stats` (answered with
//!   the figures of `pvmux events`), `update JSON` (an [`UpdateRequest`]), `vcpu-stats`
//!   (answered with a [`VcpuStatsAnswer`]: `pvmux stats`), `mem JSON` (a
//!   [`super::mem::MemRequest`], answered with the memory figures before and after: `pvmux
//!   mem`), `disk JSON` (a [`crate::cli::disk::DiskRequest`]: list, give back or take a
//!   disk, answered with JSON: `pvmux disk`), `upgrade JSON` (a
//!   [`super::upgrade::UpgradeRequest`], answered with the decision and the guest's hand-over
//!   record: `pvmux upgrade`). Every request is one variant of
//!   [`Request`]: a new one adds a variant, its line, and its answer in `live.rs`.
//!   `exec` is not a request here: exec sessions have a socket of their own,
//!   `ROOT/ID/exec.sock` (docs/ARCHITECTURE.md, "Exec sessions"). Signals are not requests
//!   either: `kill` sends host signals to the monitor's pid, which forwards them
//!   (docs/OCI.md).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use anyhow::{bail, Context};

/// A change of a running container's resources (`pvmux update`), as runc's flags say it:
/// `None` leaves a value as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct UpdateRequest {
    /// `--memory` (bytes; -1: unlimited).
    pub(crate) memory: Option<i64>,
    /// `--cpu-quota` (µs per period; -1: unlimited).
    pub(crate) cpu_quota: Option<i64>,
    /// `--cpu-period` (µs).
    pub(crate) cpu_period: Option<u64>,
    /// `--cpu-shares`.
    pub(crate) cpu_shares: Option<u64>,
    /// `--pids-limit` (-1: unlimited).
    pub(crate) pids_limit: Option<i64>,
}

/// A request on the control socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// Boot the guest and run the container's program.
    Start,
    /// Stop the guest (`pvmux pause`).
    Pause,
    /// Let it continue (`pvmux resume`).
    Resume,
    /// The container's figures (`pvmux events`), answered as `ok JSON`.
    Stats,
    /// Change its resources (`pvmux update`).
    Update(UpdateRequest),
    /// Grow or shrink its guest memory (`pvmux mem`), answered as `ok JSON`.
    Mem(super::mem::MemRequest),
    /// Take a snapshot (`pvmux snapshot`), answered as `ok JSON`.
    Snapshot(super::snapshot::SnapshotRequest),
    /// Per-vCPU figures and memory in use (`pvmux stats`), answered as `ok JSON` (a
    /// [`VcpuStatsAnswer`]).
    VcpuStats,
    /// List, give back or take a disk (`pvmux disk`), answered as `ok JSON`.
    Disk(crate::cli::disk::DiskRequest),
    /// Hand the tenant over to a new kernel image (`pvmux upgrade`), answered as `ok JSON`
    /// (the decision and the guest's hand-over record).
    Upgrade(super::upgrade::UpgradeRequest),
}

/// The answer to [`Request::VcpuStats`]: cumulative figures at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct VcpuStatsAnswer {
    /// When they were read (the monitor's monotonic clock, ns): rates divide by its change.
    pub(crate) at_ns: u64,
    /// Per vCPU.
    pub(crate) vcpus: Vec<VcpuCounters>,
    /// The guest's memory in use (its own figure), if it answered.
    pub(crate) mem_used: Option<u64>,
    /// The guest's memory size.
    pub(crate) mem_total: u64,
}

/// One vCPU's cumulative figures (see `pvmux_host::vcpu_figures`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct VcpuCounters {
    pub(crate) index: u32,
    /// Host CPU time of its threads (ns, host-measured).
    pub(crate) run_ns: u64,
    /// Hypercalls served (host-counted).
    pub(crate) hypercalls: u64,
    /// Its programs' system calls (guest-reported, clamped).
    pub(crate) syscalls: u64,
    /// Its programs' faults (guest-reported, clamped).
    pub(crate) faults: u64,
}

impl Request {
    fn line(&self) -> String {
        match self {
            Self::Start => "start".into(),
            Self::Pause => "pause".into(),
            Self::Resume => "resume".into(),
            Self::Stats => "stats".into(),
            Self::VcpuStats => "vcpu-stats".into(),
            Self::Update(u) => format!(
                "update {}",
                serde_json::to_string(u).unwrap_or_else(|_| "{}".into())
            ),
            Self::Snapshot(r) => format!(
                "snapshot {}",
                serde_json::to_string(r).unwrap_or_else(|_| "{}".into())
            ),
            Self::Mem(m) => format!(
                "mem {}",
                serde_json::to_string(m).unwrap_or_else(|_| "{}".into())
            ),
            Self::Disk(d) => format!(
                "disk {}",
                serde_json::to_string(d).unwrap_or_else(|_| "{}".into())
            ),
            Self::Upgrade(u) => format!(
                "upgrade {}",
                serde_json::to_string(u).unwrap_or_else(|_| "{}".into())
            ),
        }
    }

    pub(crate) fn parse(line: &str) -> Option<Self> {
        match line.trim_end() {
            "start" => Some(Self::Start),
            "pause" => Some(Self::Pause),
            "resume" => Some(Self::Resume),
            "stats" => Some(Self::Stats),
            "vcpu-stats" => Some(Self::VcpuStats),
            l if l.starts_with("snapshot ") => {
                serde_json::from_str(&l[9..]).ok().map(Self::Snapshot)
            }
            l if l.starts_with("mem ") => serde_json::from_str(&l[4..]).ok().map(Self::Mem),
            l if l.starts_with("disk ") => serde_json::from_str(&l[5..]).ok().map(Self::Disk),
            l if l.starts_with("upgrade ") => serde_json::from_str(&l[8..]).ok().map(Self::Upgrade),
            l => l
                .strip_prefix("update ")
                .and_then(|j| serde_json::from_str(j).ok())
                .map(Self::Update),
        }
    }
}

/// Reads one answer line: the payload of `ok` or `ok PAYLOAD` (empty for `ok`), the message
/// of `error: MESSAGE`.
pub(crate) fn read_answer(stream: &UnixStream) -> anyhow::Result<String> {
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    match line.trim_end() {
        "ok" => Ok(String::new()),
        l if l.starts_with("ok ") => Ok(l[3..].to_owned()),
        l => match l.strip_prefix("error: ") {
            Some(msg) => bail!("{msg}"),
            None if l.is_empty() => bail!("the container's monitor ended without an answer"),
            None => bail!("unexpected answer from the container's monitor: {l:?}"),
        },
    }
}

/// Writes an answer line.
pub(crate) fn answer(stream: &UnixStream, result: &anyhow::Result<()>) {
    answer_with(
        stream,
        &result
            .as_ref()
            .map(|()| String::new())
            .map_err(crate::cli::error_text::flat),
    );
}

/// Writes an answer line with a payload (one line, e.g. JSON) when it succeeded.
pub(crate) fn answer_with(mut stream: &UnixStream, result: &anyhow::Result<String>) {
    let line = match result {
        Ok(p) if p.is_empty() => "ok\n".to_owned(),
        Ok(p) => format!("ok {}\n", p.replace('\n', " ")),
        Err(e) => format!(
            "error: {}\n",
            crate::cli::error_text::text(e).replace('\n', " ")
        ),
    };
    let _ = stream.write_all(line.as_bytes());
}

/// Sends `req` to the monitor listening on `path` and waits for its answer (its payload).
pub(crate) fn request(path: &Path, req: &Request) -> anyhow::Result<String> {
    let mut s = UnixStream::connect(path)
        .with_context(|| format!("cannot reach the container's monitor at {}", path.display()))?;
    s.write_all(format!("{}\n", req.line()).as_bytes())?;
    read_answer(&s)
}

/// Waits until `child` (a process this one started, `what` in messages) connects to
/// `listener`: its connection, or `None` if it exited first.
pub(crate) fn accept_from(
    listener: &UnixListener,
    child: &std::process::Child,
    what: &str,
) -> anyhow::Result<Option<UnixStream>> {
    use rustix::event::{poll, PollFd, PollFlags};
    let pid = rustix::process::Pid::from_raw(child.id() as i32).context("bad pid")?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .with_context(|| format!("cannot watch {what}"))?;
    loop {
        let mut fds = [
            PollFd::new(listener, PollFlags::IN),
            PollFd::new(&pidfd, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot wait for {what}")),
            Ok(_) => {}
        }
        if !fds[0].revents().is_empty() {
            return Ok(Some(listener.accept()?.0));
        }
        if !fds[1].revents().is_empty() {
            return Ok(None);
        }
    }
}

/// Waits until the monitor `child` reports on `listener`, or dies first.
pub(crate) fn await_ready(
    listener: &UnixListener,
    child: &std::process::Child,
) -> anyhow::Result<()> {
    match accept_from(listener, child, "the container's monitor")? {
        Some(stream) => read_answer(&stream).map(drop),
        None => bail!("the container's monitor exited before the container was created"),
    }
}

/// The monitor's report on the hand-shake socket at `path`.
pub(crate) fn report(path: &Path, result: &anyhow::Result<()>) -> anyhow::Result<()> {
    let s = UnixStream::connect(path)
        .with_context(|| format!("cannot reach pvmux create at {}", path.display()))?;
    answer(&s, result);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let u = UpdateRequest {
            memory: Some(-1),
            pids_limit: Some(7),
            ..UpdateRequest::default()
        };
        for r in [
            Request::Start,
            Request::Pause,
            Request::Resume,
            Request::Stats,
            Request::VcpuStats,
            Request::Update(u),
            Request::Upgrade(super::super::upgrade::UpgradeRequest {
                kernel: "/k/new kernel".into(),
                cmdline: Some("adopt-refuse".into()),
            }),
        ] {
            assert_eq!(Request::parse(&format!("{}\n", r.line())), Some(r));
        }
        assert_eq!(Request::parse("update {bad"), None);
        assert_eq!(Request::parse("frobnicate"), None);
    }
}
