//! The monitor's answers to the control requests of a running container: `pause`, `resume`
//! (the host library's [`pvmux_host::TenantHandle::pause`]), `stats` (`pvmux events`) and
//! `update`. The CLI side is in `pause.rs`, `events.rs` and `update.rs`.

use std::os::unix::net::UnixStream;

use anyhow::{bail, Context};
use pvmux_host::{TaskLimit, TenantHandle};

use super::control::{self, Request, UpdateRequest};
use super::state::{StateDir, Status};

/// Answers request `req` of a running (or paused) container on `stream`.
pub(crate) fn answer(req: &Request, stream: &UnixStream, handle: &TenantHandle, sd: &StateDir) {
    let result = match req {
        Request::Start => Err(anyhow::anyhow!("the container is already running")),
        Request::Pause => pause(handle, sd).map(|()| String::new()),
        Request::Resume => resume(handle, sd).map(|()| String::new()),
        Request::Stats => stats(handle).map(|v| v.to_string()),
        Request::Update(u) => update(handle, u).map(|()| String::new()),
        Request::VcpuStats => vcpu_stats(handle).and_then(|a| Ok(serde_json::to_string(&a)?)),
        Request::Mem(m) => super::mem::answer(handle, *m),
        // The monitor answers it itself (it keeps the run arguments).
        Request::Snapshot(_) => Err(anyhow::anyhow!("snapshot: not through this path")),
        Request::Disk(d) => crate::cli::disk::answer(handle, d),
        Request::Upgrade(u) => super::upgrade::answer(handle, u, sd),
    };
    if let Err(e) = &result {
        tracing::warn!("{}", crate::cli::error_text::Chain(e));
    }
    control::answer_with(stream, &result);
}

fn pause(h: &TenantHandle, sd: &StateDir) -> anyhow::Result<()> {
    h.pause().map_err(|e| match e {
        pvmux_host::PauseError::AlreadyPaused => anyhow::anyhow!("container already paused"),
        pvmux_host::PauseError::NotRunning => anyhow::anyhow!("container not running"),
        e => anyhow::anyhow!("cannot pause the container: {e}"),
    })?;
    sd.update(|r| r.status = Status::Paused)?;
    Ok(())
}

fn resume(h: &TenantHandle, sd: &StateDir) -> anyhow::Result<()> {
    h.resume().map_err(|e| match e {
        pvmux_host::PauseError::NotPaused => anyhow::anyhow!("container not paused"),
        e => anyhow::anyhow!("cannot resume the container: {e}"),
    })?;
    sd.update(|r| r.status = Status::Running)?;
    Ok(())
}

/// This process's own CPU time (ns): the monitor's threads serve only this container.
fn own_cpu_ns() -> u64 {
    pvmux_host::limits::budget::proc_cpu_ns(std::process::id()).unwrap_or(0)
}

/// runc's `stats` data: the tenant's CPU time (its sandboxes and this monitor, host side),
/// the guest's memory in use and its tasks (the guest's own figures).
fn stats(h: &TenantHandle) -> anyhow::Result<serde_json::Value> {
    let g = h.guest_stats().context("cannot read the guest's figures")?;
    let cpu = h.cpu_time().context("container not running")?;
    let total = cpu.sandboxes.as_nanos() as u64 + own_cpu_ns();
    Ok(serde_json::json!({
        "cpu": { "usage": { "total": total } },
        "memory": {
            "usage": { "usage": g.mem_used(), "limit": g.mem_total },
            "raw": { "guest_total": g.mem_total, "guest_free": g.mem_free },
        },
        "pids": { "current": g.tasks, "limit": g.task_limit },
    }))
}

/// `pvmux stats`: every vCPU's figures now, and the guest's memory in use (none if the guest
/// did not answer in time: the vCPU figures do not depend on it).
fn vcpu_stats(h: &TenantHandle) -> anyhow::Result<control::VcpuStatsAnswer> {
    static EPOCH: std::sync::LazyLock<std::time::Instant> =
        std::sync::LazyLock::new(std::time::Instant::now);
    let at_ns = EPOCH.elapsed().as_nanos() as u64;
    let figures = h.vcpu_figures().context("container not running")?;
    let mem_used = h.guest_stats().ok().map(|g| g.mem_used());
    Ok(control::VcpuStatsAnswer {
        at_ns,
        vcpus: figures
            .iter()
            .map(|f| control::VcpuCounters {
                index: f.index,
                run_ns: f.run_time.as_nanos() as u64,
                hypercalls: f.hypercalls,
                syscalls: f.syscalls,
                faults: f.faults,
            })
            .collect(),
        mem_used,
        mem_total: h.mem_size(),
    })
}

/// The CFS period when an update gives a quota only.
const DEFAULT_PERIOD_US: u64 = 100_000;

/// Checks every change of `u` first, then applies them: a change that cannot apply is an
/// error naming its flag, and then nothing changed.
fn update(h: &TenantHandle, u: &UpdateRequest) -> anyhow::Result<()> {
    // The memory: the guest's balloon (`pvmux mem`), within the maximum it was created with;
    // -1 (unlimited) is the maximum.
    let memory = match u.memory.filter(|m| *m != 0) {
        None => None,
        Some(m) => {
            let f = h.memory();
            let want = u64::try_from(m).map_or(f.max, super::config::guest_mem_for_limit);
            if want > f.max {
                bail!(
                    "--memory: {m} is above the container's maximum, {} bytes (its memory when \
                     it was created)",
                    f.max
                );
            }
            if want < f.min {
                bail!(
                    "--memory: {m} is below the container's minimum, {} bytes",
                    f.min
                );
            }
            (want != f.size).then_some(want)
        }
    };
    let cpu = cpu_update(h, u)?;
    let pids = match u.pids_limit {
        None | Some(0) => None,
        Some(n) if n < 0 => Some(TaskLimit::KernelCeiling),
        Some(n) => {
            Some(TaskLimit::Max(u32::try_from(n).map_err(|_| {
                anyhow::anyhow!("--pids-limit: {n} is out of range")
            })?))
        }
    };
    if let Some(m) = memory {
        // First: a shrink the guest cannot meet leaves everything as it was.
        let f = h.set_memory(m).context("--memory")?;
        tracing::info!(size = f.size, "guest memory");
    }
    if let Some(c) = &cpu {
        h.update_cpu(c)
            .context("--cpu-quota/--cpu-period/--cpu-shares")?;
    }
    if let Some(p) = pids {
        match h.set_task_limit(p).context("--pids-limit")? {
            Some(s) => tracing::info!(limit = s.task_limit, tasks = s.tasks, "guest task limit"),
            None => tracing::info!("guest task limit: applies when resumed"),
        }
    }
    Ok(())
}

/// The CPU part of an update, checked; `None` when it changes nothing.
fn cpu_update(
    h: &TenantHandle,
    u: &UpdateRequest,
) -> anyhow::Result<Option<pvmux_host::limits::CpuUpdate>> {
    let quota = u.cpu_quota.filter(|q| *q != 0);
    let period = u.cpu_period.filter(|p| *p != 0);
    let shares = u.cpu_shares.filter(|s| *s != 0);
    if quota.is_none() && period.is_none() && shares.is_none() {
        return Ok(None);
    }
    let flag = match (quota, period) {
        (Some(_), _) => "--cpu-quota",
        (None, Some(_)) => "--cpu-period",
        _ => "--cpu-shares",
    };
    let Some((cur_quota, cur_period)) = h.cpu_controls() else {
        bail!(
            "{flag}: this container has no host cgroup with the cpu controller (pvmux limits its \
             CPU with the tenant cgroup where the host allows one; see pvmux run --cpus)"
        );
    };
    if let Some(p) = period {
        if !(1_000..=1_000_000).contains(&p) {
            bail!("--cpu-period: {p} is outside 1000..=1000000 µs");
        }
    }
    if let Some(q) = quota.filter(|q| *q > 0) {
        if q < 1_000 {
            bail!("--cpu-quota: {q} is below 1000 µs");
        }
    }
    if let Some(s) = shares {
        if !(2..=262_144).contains(&s) {
            bail!("--cpu-shares: {s} is outside 2..=262144");
        }
    }
    let max = (quota.is_some() || period.is_some()).then(|| {
        let q = match quota {
            Some(q) => u64::try_from(q).ok(),
            None => cur_quota,
        };
        let p = period.unwrap_or(if cur_period > 0 {
            cur_period
        } else {
            DEFAULT_PERIOD_US
        });
        (q, p)
    });
    Ok(Some(pvmux_host::limits::CpuUpdate { max, shares }))
}
