//! `pvmux snapshot NAME DIR` and `pvmux restore DIR [--name NEW]` (docs/MULTIKERNEL.md,
//! "Snapshot and restore"). `snapshot` sends a `snapshot JSON` request to the tenant's
//! monitor (`ctl.sock`), which takes it with the host library
//! ([`pvmux_host::TenantHandle::snapshot`]) and keeps `pvmux run`'s own arguments in it;
//! `restore` starts a new named tenant (a monitor, as `pvmux run --name NAME --detach`) with
//! those arguments and `--restore DIR`, so its devices (`--rootfs`, `--volume`s, limits) are
//! the original's, and the host library checks the snapshot whole before anything starts.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

use super::control::{self, Request};
use super::state::{check_name, StateDir};
use super::GlobalArgs;

/// `pvmux snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Let the tenant go on running after the snapshot (default: it stops, as `podman
    /// container checkpoint` does).
    #[arg(long)]
    pub leave_running: bool,
    /// The tenant's name.
    pub name: String,
    /// The snapshot directory (created; must not exist or be empty).
    pub dir: PathBuf,
}

/// `pvmux restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The restored tenant's name (default: the snapshot's).
    #[arg(long)]
    pub name: Option<String>,
    /// The snapshot directory.
    pub dir: PathBuf,
}

/// The `snapshot` request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SnapshotRequest {
    /// Where (absolute).
    pub(crate) dir: PathBuf,
    /// Go on afterwards.
    pub(crate) leave_running: bool,
}

/// The monitor's answer.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SnapshotAnswer {
    mem_bytes: u64,
    data_bytes: u64,
    disk_bytes: u64,
    vcpus: u32,
    park_ms: f64,
    write_ms: f64,
}

/// What the CLI keeps in the snapshot (the state section's `extra`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Extra {
    /// The tenant's name.
    name: String,
    /// `pvmux run`'s arguments (lossy UTF-8 is refused when taking).
    run_args: Vec<String>,
}

/// The monitor's side: takes the snapshot of `handle` with `run_args` kept in it.
pub(crate) fn answer(
    handle: &pvmux_host::TenantHandle,
    req: &SnapshotRequest,
    name: &str,
    run_args: &[OsString],
) -> anyhow::Result<String> {
    let args: Option<Vec<String>> = run_args
        .iter()
        .map(|a| a.to_str().map(str::to_owned))
        .collect();
    let mut run_args = args.context("the tenant's arguments are not UTF-8: cannot keep them")?;
    // A restored tenant's arguments start with `--restore DIR` (see `restore`): what is kept
    // is the original's.
    if run_args.first().map(String::as_str) == Some("--restore") {
        run_args.drain(..2.min(run_args.len()));
    }
    let extra = serde_json::to_string(&Extra {
        name: name.to_owned(),
        run_args,
    })?;
    let f = handle.snapshot(&req.dir, req.leave_running, &extra)?;
    Ok(serde_json::to_string(&SnapshotAnswer {
        mem_bytes: f.mem_size,
        data_bytes: f.data_bytes,
        disk_bytes: f.disk_bytes,
        vcpus: f.vcpus,
        park_ms: f.park.as_secs_f64() * 1e3,
        write_ms: f.write.as_secs_f64() * 1e3,
    })?)
}

/// `pvmux snapshot NAME DIR`.
pub(crate) fn snapshot(g: &GlobalArgs, a: &SnapshotArgs) -> anyhow::Result<u8> {
    let sd = StateDir::open(&g.root, &a.name)
        .map_err(|_| anyhow::anyhow!("no tenant named {:?}", a.name))?;
    let dir = std::path::absolute(&a.dir)?;
    let req = SnapshotRequest {
        dir,
        leave_running: a.leave_running,
    };
    let out = control::request(&sd.control_socket(), &Request::Snapshot(req))?;
    let ans: SnapshotAnswer =
        serde_json::from_str(out.trim()).context("malformed answer from the monitor")?;
    println!(
        "{}: snapshot of {} MiB memory: {:.1} MiB of data, {:.1} MiB on disk; {} vCPUs parked in {:.1} ms, written in {:.1} ms",
        a.name,
        ans.mem_bytes >> 20,
        ans.data_bytes as f64 / 1048576.0,
        ans.disk_bytes as f64 / 1048576.0,
        ans.vcpus,
        ans.park_ms,
        ans.write_ms
    );
    Ok(0)
}

/// The state section's name and `extra`, read for the CLI only (the host library checks
/// the whole snapshot when it restores).
fn saved(dir: &Path) -> anyhow::Result<Extra> {
    #[derive(serde::Deserialize)]
    struct Peek {
        extra: String,
    }
    let path = dir.join(pvmux_host::snapshot::format::STATE);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "{} is not a snapshot: cannot read {}",
            dir.display(),
            path.display()
        )
    })?;
    let p: Peek = serde_json::from_slice(&bytes)
        .with_context(|| format!("invalid snapshot: {} is malformed", path.display()))?;
    serde_json::from_str(&p.extra).context("invalid snapshot: it was not taken by pvmux snapshot")
}

/// `pvmux restore DIR [--name NEW]`: a new detached named tenant.
pub(crate) fn restore(g: &GlobalArgs, a: &RestoreArgs, level: &str) -> anyhow::Result<u8> {
    let dir = std::path::absolute(&a.dir)?;
    let extra = saved(&dir)?;
    let name = a.name.clone().unwrap_or(extra.name);
    check_name(&name)?;
    let mut tail: Vec<OsString> = vec!["--restore".into(), dir.clone().into()];
    tail.extend(extra.run_args.into_iter().map(OsString::from));
    let root = std::path::absolute(&g.root)?;
    let sd = match StateDir::create(&root, &name) {
        Ok(sd) => sd,
        Err(_) if root.join(&name).exists() => {
            bail!("the name {name:?} is in use (restore --name NEW gives another)")
        }
        Err(e) => return Err(e),
    };
    match super::names::start(&sd, &root, g, &name, true, level, &tail) {
        Ok(_) => {
            println!("{name}");
            Ok(0)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&sd.dir);
            Err(e)
        }
    }
}
