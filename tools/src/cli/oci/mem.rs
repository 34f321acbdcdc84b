//! `pvmux mem NAME SIZE`: grows or shrinks a running container's guest memory (the balloon,
//! [`pvmux_host::TenantHandle::set_memory`]; docs/MULTIKERNEL.md). The CLI sends a `mem JSON`
//! request ([`MemRequest`]) to the container's monitor (`ctl.sock`), which answers with the
//! figures before and after ([`answer`]).

use anyhow::{bail, Context};
use clap::Args;
use pvmux_host::{MemoryFigures, TenantHandle};

use super::control::{self, Request};
use super::state::{StateDir, Status};
use super::{Format, GlobalArgs};
use crate::cli::size::{format_size, parse_size};

/// `pvmux mem`.
#[derive(Debug, Args)]
pub struct MemArgs {
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "table")]
    pub format: Format,
    /// The container (its id or name in --root).
    pub id: String,
    /// The new memory size (256M, 1G, ...), or a change of it (+64M, -64M): at most the
    /// maximum the container started with, at least its kernel's own memory plus 8 MiB.
    #[arg(allow_hyphen_values = true)]
    pub size: String,
}

/// The size a `mem` request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MemRequest {
    /// This many bytes.
    Set(u64),
    /// The size now plus this many bytes.
    Grow(u64),
    /// The size now less this many bytes.
    Shrink(u64),
}

impl MemRequest {
    /// `512M`, `+64M` or `-64M`.
    fn parse(s: &str) -> anyhow::Result<Self> {
        let (ctor, rest): (fn(u64) -> Self, &str) = match s.as_bytes().first() {
            Some(b'+') => (Self::Grow, &s[1..]),
            Some(b'-') => (Self::Shrink, &s[1..]),
            _ => (Self::Set, s),
        };
        let n = parse_size(rest).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(ctor(n))
    }

    /// The size asked for, from the size now.
    fn size(self, now: u64) -> anyhow::Result<u64> {
        match self {
            Self::Set(n) => Ok(n),
            Self::Grow(n) => now
                .checked_add(n)
                .ok_or_else(|| anyhow::anyhow!("the size is out of range")),
            Self::Shrink(n) => now.checked_sub(n).ok_or_else(|| {
                anyhow::anyhow!(
                    "cannot shrink by {}: the memory is {}",
                    format_size(n),
                    format_size(now)
                )
            }),
        }
    }
}

/// The monitor's answer: the figures before and after.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct MemAnswer {
    before: Figures,
    after: Figures,
}

/// [`MemoryFigures`] on the wire.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Figures {
    max: u64,
    size: u64,
    min: u64,
    host_allocated: u64,
}

impl From<MemoryFigures> for Figures {
    fn from(f: MemoryFigures) -> Self {
        Self {
            max: f.max,
            size: f.size,
            min: f.min,
            host_allocated: f.host_allocated,
        }
    }
}

/// The monitor's side: changes the guest's memory and answers with the figures (JSON).
pub(crate) fn answer(h: &TenantHandle, req: MemRequest) -> anyhow::Result<String> {
    let before = h.memory();
    let size = req.size(before.size)?;
    let start = std::time::Instant::now();
    let after = h.set_memory(size)?;
    tracing::info!(
        size,
        ms = start.elapsed().as_secs_f64() * 1e3,
        "memory changed"
    );
    let a = MemAnswer {
        before: before.into(),
        after: after.into(),
    };
    Ok(serde_json::to_string(&a)?)
}

/// `pvmux mem`.
pub(crate) fn mem(g: &GlobalArgs, a: &MemArgs) -> anyhow::Result<u8> {
    let req = MemRequest::parse(&a.size).with_context(|| format!("SIZE {:?}", a.size))?;
    let sd = StateDir::open(&g.root, &a.id)?;
    match sd.read()?.effective_status() {
        Status::Running => {}
        Status::Paused => bail!("container paused: resume it first"),
        _ => bail!("container not running"),
    }
    let payload = control::request(&sd.control_socket(), &Request::Mem(req))?;
    let ans: MemAnswer = serde_json::from_str(&payload).context("bad answer from the monitor")?;
    match a.format {
        Format::Json => println!("{payload}"),
        Format::Table => {
            let (b, n) = (&ans.before, &ans.after);
            println!(
                "{}: memory {} (was {}; max {}, min {}); host memory {} (was {})",
                a.id,
                format_size(n.size),
                format_size(b.size),
                format_size(n.max),
                format_size(n.min),
                mib(n.host_allocated),
                mib(b.host_allocated),
            );
        }
    }
    Ok(0)
}

/// Host memory in MiB (one decimal).
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(
            MemRequest::parse("512M").unwrap(),
            MemRequest::Set(512 << 20)
        );
        assert_eq!(
            MemRequest::parse("+64M").unwrap(),
            MemRequest::Grow(64 << 20)
        );
        assert_eq!(
            MemRequest::parse("-1G").unwrap(),
            MemRequest::Shrink(1 << 30)
        );
        assert!(MemRequest::parse("lots").is_err());
        assert!(MemRequest::parse("-").is_err());
        assert_eq!(MemRequest::Grow(2).size(3).unwrap(), 5);
        assert_eq!(MemRequest::Shrink(2).size(3).unwrap(), 1);
        assert!(MemRequest::Shrink(4).size(3).is_err());
    }
}
