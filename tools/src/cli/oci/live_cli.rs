//! The CLI side of runc's `pause`, `resume`, `update` and `events`: checks the container's
//! state, sends the request to its monitor (`ctl.sock`) and prints what runc prints. The
//! monitor's side is `live.rs`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use super::control::{self, Request, UpdateRequest};
use super::state::{StateDir, Status};
use super::GlobalArgs;

/// `pvmux update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// runc's resources JSON (`linux.resources` of config.json: memory.limit, cpu.quota,
    /// cpu.period, cpu.shares, pids.limit); `-` reads it from stdin. Flags override it.
    #[arg(short = 'r', long, value_name = "FILE")]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes (k, m, g suffixes): the guest's memory grows or shrinks to it
    /// (its balloon, as `pvmux mem`), at most the memory it was created with.
    #[arg(long, value_name = "BYTES")]
    pub memory: Option<String>,
    /// CFS quota in µs per period (-1: none).
    #[arg(long, value_name = "US", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CFS period in µs.
    #[arg(long, value_name = "US")]
    pub cpu_period: Option<u64>,
    /// CPU weight (runc's shares, 2..=262144).
    #[arg(long, value_name = "N")]
    pub cpu_shares: Option<u64>,
    /// The guest's task limit (-1: the guest kernel's own ceiling only).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Accepted and ignored (runc's other update flags: no host block I/O, cpusets, ...).
    #[arg(long, value_name = "V")]
    pub blkio_weight: Option<String>,
    /// Accepted and ignored.
    #[arg(long, value_name = "V")]
    pub cpuset_cpus: Option<String>,
    /// Accepted and ignored.
    #[arg(long, value_name = "V")]
    pub cpuset_mems: Option<String>,
    /// Accepted only as the memory itself or -1 (no swap in the guest).
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Accepted and ignored.
    #[arg(long, value_name = "BYTES")]
    pub memory_reservation: Option<String>,
    /// The container id.
    pub id: String,
}

/// `pvmux events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Print the figures once and exit.
    #[arg(long)]
    pub stats: bool,
    /// How often to print them (Go's durations: 500ms, 5s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub interval: Duration,
    /// The container id.
    pub id: String,
}

/// A Go duration (`1h2m3.5s`, `500ms`, `10us`, `5ns`) or plain seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"));
    }
    if s.is_empty() {
        return Err("an empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{s:?}: a duration needs a unit (ns, us, ms, s, m, h)"))?;
        let v: f64 = rest[..n]
            .parse()
            .map_err(|_| format!("{s:?} is not a duration"))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("{s:?}: unknown unit {other:?}")),
        };
        total += v * scale;
        rest = &rest[u..];
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("{s:?}: {e}"))
}

/// The container `id`'s directory and effective status.
fn open(g: &GlobalArgs, id: &str) -> anyhow::Result<(StateDir, Status)> {
    let sd = StateDir::open(&g.root, id)?;
    let status = sd.read()?.effective_status();
    Ok((sd, status))
}

/// `pvmux pause`.
pub(crate) fn pause(g: &GlobalArgs, id: &str) -> anyhow::Result<u8> {
    let (sd, status) = open(g, id)?;
    match status {
        Status::Running => {}
        Status::Paused => bail!("container already paused"),
        _ => bail!("container not running"),
    }
    control::request(&sd.control_socket(), &Request::Pause)?;
    Ok(0)
}

/// `pvmux resume`.
pub(crate) fn resume(g: &GlobalArgs, id: &str) -> anyhow::Result<u8> {
    let (sd, status) = open(g, id)?;
    if status != Status::Paused {
        bail!("container not paused");
    }
    control::request(&sd.control_socket(), &Request::Resume)?;
    Ok(0)
}

/// `pvmux update`.
pub(crate) fn update(g: &GlobalArgs, a: &UpdateArgs) -> anyhow::Result<u8> {
    let (sd, status) = open(g, &a.id)?;
    if !matches!(status, Status::Running | Status::Paused) {
        bail!("container not running");
    }
    let mut u = match &a.resources {
        Some(f) => from_resources(f)?,
        None => UpdateRequest::default(),
    };
    if let Some(m) = &a.memory {
        u.memory = Some(parse_bytes("--memory", m)?);
    }
    if let Some(s) = &a.memory_swap {
        let swap = parse_bytes("--memory-swap", s)?;
        if swap != -1 && Some(swap) != u.memory {
            bail!("--memory-swap: the guest has no swap (only -1 or the memory itself)");
        }
    }
    u.cpu_quota = a.cpu_quota.or(u.cpu_quota);
    u.cpu_period = a.cpu_period.or(u.cpu_period);
    u.cpu_shares = a.cpu_shares.or(u.cpu_shares);
    u.pids_limit = a.pids_limit.or(u.pids_limit);
    control::request(&sd.control_socket(), &Request::Update(u))?;
    Ok(0)
}

/// A size with runc's suffixes (`k`, `m`, `g`, `t`, with or without `b`), or -1.
fn parse_bytes(flag: &str, s: &str) -> anyhow::Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.to_ascii_lowercase();
    let t = lower.trim_end_matches('b');
    let (num, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("{flag}: {s:?} is not a size"))?;
    n.checked_mul(1 << shift)
        .filter(|v| *v > 0)
        .ok_or_else(|| anyhow::anyhow!("{flag}: {s:?} is out of range"))
}

/// runc's `--resources` JSON (`-`: stdin).
fn from_resources(path: &std::path::Path) -> anyhow::Result<UpdateRequest> {
    let text = if path == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read the resources on stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    let r: oci_spec::runtime::LinuxResources =
        serde_json::from_str(&text).context("bad resources JSON")?;
    let cpu = r.cpu().as_ref();
    Ok(UpdateRequest {
        memory: r.memory().as_ref().and_then(|m| m.limit()),
        cpu_quota: cpu.and_then(|c| c.quota()),
        cpu_period: cpu.and_then(|c| c.period()),
        cpu_shares: cpu.and_then(|c| c.shares()),
        pids_limit: r.pids().as_ref().map(|p| p.limit()),
    })
}

/// `pvmux events`: runc's `{"type":"stats","id":...,"data":...}` lines, once with
/// `--stats`, else every `--interval` until the container stops.
pub(crate) fn events(g: &GlobalArgs, a: &EventsArgs) -> anyhow::Result<u8> {
    let (sd, status) = open(g, &a.id)?;
    if !matches!(status, Status::Running | Status::Paused) {
        bail!("container not running");
    }
    loop {
        let data = match control::request(&sd.control_socket(), &Request::Stats) {
            Ok(d) => d,
            // It stopped meanwhile (its monitor records that as it ends): the stream ends,
            // as runc's does.
            Err(_) if !a.stats && stops_soon(&sd) => return Ok(0),
            Err(e) => return Err(e),
        };
        let data: serde_json::Value =
            serde_json::from_str(&data).context("bad figures from the monitor")?;
        let line = serde_json::json!({ "type": "stats", "id": a.id, "data": data });
        println!("{line}");
        if a.stats {
            return Ok(0);
        }
        std::thread::sleep(a.interval);
        if !running(&sd) {
            return Ok(0);
        }
    }
}

/// Whether the container is stopped, or stops within a second (its guest ended and the
/// monitor is finishing).
fn stops_soon(sd: &StateDir) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while running(sd) {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

fn running(sd: &StateDir) -> bool {
    sd.read()
        .is_ok_and(|r| matches!(r.effective_status(), Status::Running | Status::Paused))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        for bad in ["", "x", "5parsecs", "-1s", "s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("--memory", "64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("--memory", "1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("--memory", "1024").unwrap(), 1024);
        assert_eq!(parse_bytes("--memory", "-1").unwrap(), -1);
        assert!(parse_bytes("--memory", "lots").is_err());
        assert!(parse_bytes("--memory", "0").is_err());
    }
}
