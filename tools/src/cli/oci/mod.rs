//! pvmux as an OCI runtime: runc's command line (`create`, `start`, `state`, `kill`, `delete`,
//! `list`, `features`, `run ID`, ...) over one monitor process per container.
//!
//! `create` checks the bundle, makes the state directory `ROOT/ID/` and starts the monitor
//! (`pvmux oci-monitor`, hidden), the container's host process: it opens everything the guest
//! needs, reports back through the hand-shake socket, then waits on its control socket. `start`
//! asks it to boot the guest kernel, which runs the container's program; the monitor's exit
//! status is the program's. See docs/OCI.md.

pub(crate) mod config;
pub(crate) mod console;
pub(crate) mod control;
mod hooks;
mod live;
mod live_cli;
mod mem;
pub(crate) mod monitor;
pub(crate) mod names;
pub(crate) mod names_stats;
mod signal;
mod state;
mod upgrade;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

pub(crate) use live_cli::{events, pause, resume, update};
pub use live_cli::{EventsArgs, UpdateArgs};
pub(crate) use mem::mem;
mod snapshot;
pub use mem::MemArgs;
pub(crate) use monitor::MonitorArgs;
pub use names::{LogsArgs, StopArgs};
pub use names_stats::StatsArgs;
pub(crate) use snapshot::{restore, snapshot};
pub use snapshot::{RestoreArgs, SnapshotArgs};
pub(crate) use state::now_rfc3339;
use state::Record;
pub(crate) use state::{StateDir, Status};
pub(crate) use upgrade::upgrade;
pub(crate) use upgrade::UpgradeArgs;

/// The options of runc's that apply to every command (global: before or after the command).
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// OCI commands: the directory of the containers' state.
    #[arg(long, global = true, value_name = "DIR", default_value = "/run/pvmux")]
    pub root: PathBuf,

    /// OCI commands: the format of the `--log` file.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub log_format: super::logging::LogFormat,

    /// OCI commands: log debug messages.
    #[arg(long, global = true)]
    pub debug: bool,

    /// OCI commands: accepted and ignored (pvmux's limits are its own, not a systemd unit's).
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,

    /// OCI commands: accepted and ignored (pvmux never needs root).
    #[arg(
        long,
        global = true,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub rootless: Option<String>,

    /// OCI commands: accepted and ignored (no checkpointing).
    #[arg(long, global = true, value_name = "PATH", hide = true)]
    pub criu: Option<String>,
}

/// The flags of runc's `create` (and of `run ID`).
#[derive(Debug, Args, Default)]
pub struct CreateFlags {
    /// The bundle directory (with config.json) [default: the current directory].
    #[arg(short = 'b', long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,

    /// Write the container's pid (its monitor process) to FILE.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,

    /// Unix socket to send the terminal's master to (with process.terminal).
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,

    /// Accepted and ignored (there is no host mount namespace to pivot).
    #[arg(long)]
    pub no_pivot: bool,

    /// Accepted and ignored (the guest kernel has no keyrings).
    #[arg(long)]
    pub no_new_keyring: bool,

    /// Accepted; must be 0 (no host descriptors are passed to the guest).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
}

/// The exec control socket of running container `id` (`pvmux exec ID`).
pub(crate) fn exec_socket(g: &GlobalArgs, id: &str) -> anyhow::Result<PathBuf> {
    let root = std::path::absolute(&g.root)?;
    let sd = StateDir::open(&root, id)?;
    let r = sd.read()?;
    if r.effective_status() == state::Status::Paused {
        anyhow::bail!("cannot exec in a paused container: {id} (pvmux resume {id} first)");
    }
    if r.effective_status() != state::Status::Running {
        anyhow::bail!(
            "cannot exec in a container that is not running: {id} is {}",
            r.effective_status().as_str()
        );
    }
    Ok(sd.exec_socket())
}

/// `pvmux create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The flags.
    #[command(flatten)]
    pub flags: CreateFlags,
    /// The container id.
    pub id: String,
}

/// Commands that take just an id.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// The container id.
    pub id: String,
}

/// `pvmux kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Accepted: the signal goes to the guest's init, whose kernel is the whole container.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// The container id.
    pub id: String,
    /// The signal, a name (TERM, SIGTERM) or number (1..=31).
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

/// `pvmux delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Kill the container first if it runs (and succeed if it does not exist).
    #[arg(short = 'f', long)]
    pub force: bool,
    /// The container id.
    pub id: String,
}

/// Output formats of `list` and `ps`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table.
    #[default]
    Table,
    /// JSON.
    Json,
}

/// `pvmux list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "table")]
    pub format: Format,
    /// Only the ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `pvmux ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "table")]
    pub format: Format,
    /// The container id (runc's `ps ID`: its host processes). Without one: every tenant and
    /// container under --root (name, state, kernel, vCPUs, memory, uptime).
    pub id: Option<String>,
    /// `ps` options (ignored).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// `pvmux create`.
pub(crate) fn create(g: &GlobalArgs, log: Option<&Path>, a: &CreateArgs) -> anyhow::Result<u8> {
    let root = std::path::absolute(&g.root)?;
    let mut monitor = spawn(&root, g, log, &a.id, &a.flags, false)?;
    // The monitor outlives this process: its parent becomes the engine's subreaper.
    monitor.forget();
    Ok(0)
}

/// A monitor started by `create` or `run`.
struct Spawned {
    child: Option<std::process::Child>,
    pid: i32,
}

impl Spawned {
    /// Lets the monitor run on without this process waiting for it.
    fn forget(&mut self) {
        self.child.take();
    }
}

/// The bundle directory of `flags` (default: the current directory).
fn bundle_dir(flags: &CreateFlags) -> PathBuf {
    flags.bundle.clone().unwrap_or_else(|| PathBuf::from("."))
}

/// Checks the bundle, makes the state directory and starts the monitor; returns once it is
/// ready (`created`) or failed. `attached`: the monitor dies with this process (`run`).
fn spawn(
    root: &Path,
    g: &GlobalArgs,
    log: Option<&Path>,
    id: &str,
    flags: &CreateFlags,
    attached: bool,
) -> anyhow::Result<Spawned> {
    state::check_id(id)?;
    if flags.preserve_fds != 0 {
        bail!("--preserve-fds is not supported: no host descriptors reach the guest");
    }
    let plan = config::load(&bundle_dir(flags))?;
    for w in &plan.warnings {
        tracing::warn!("{w}");
    }
    match (plan.terminal, &flags.console_socket) {
        (true, None) => bail!("process.terminal needs --console-socket"),
        (false, Some(_)) => {
            tracing::info!("--console-socket: unused, the container has no terminal")
        }
        _ => {}
    }
    let sd = StateDir::create(root, id)?;
    let result = spawn_in(&sd, root, g, log, id, flags, attached, plan);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&sd.dir);
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn spawn_in(
    sd: &StateDir,
    root: &Path,
    g: &GlobalArgs,
    log: Option<&Path>,
    id: &str,
    flags: &CreateFlags,
    attached: bool,
    plan: config::Plan,
) -> anyhow::Result<Spawned> {
    {
        let lock = sd.lock()?;
        sd.write(
            &Record {
                id: id.to_owned(),
                bundle: plan.bundle.clone(),
                status: Status::Creating,
                pid: None,
                start_time: None,
                annotations: plan.annotations.clone(),
                created: now_rfc3339(),
                exit_status: None,
                hooks: plan.hooks.clone(),
                tenant: None,
                started_ms: None,
                named: None,
            },
            &lock,
        )?;
    }
    let notify_path = sd.notify_socket();
    let notify = std::os::unix::net::UnixListener::bind(&notify_path)
        .with_context(|| format!("cannot listen on {}", notify_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the pvmux executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--root").arg(root);
    if let Some(log) = log {
        cmd.arg("--log").arg(std::path::absolute(log)?);
    }
    cmd.arg("--log-format").arg(match g.log_format {
        super::logging::LogFormat::Text => "text",
        super::logging::LogFormat::Json => "json",
    });
    if g.debug {
        cmd.arg("--debug");
    }
    cmd.arg("oci-monitor")
        .arg("--parent")
        .arg(std::process::id().to_string())
        .arg("--notify")
        .arg(&notify_path);
    if attached {
        cmd.arg("--attached");
    }
    if let Some(ns) = &plan.netns {
        cmd.arg("--netns").arg(ns);
    }
    if let (true, Some(s)) = (plan.terminal, &flags.console_socket) {
        cmd.arg("--console-socket").arg(std::path::absolute(s)?);
    }
    cmd.arg(id).arg("--").args(&plan.run_args);
    tracing::debug!(?cmd, "starting the monitor");
    let mut child = cmd
        .spawn()
        .context("cannot start the container's monitor")?;
    let pid = child.id() as i32;
    match control::await_ready(&notify, &child) {
        Ok(()) => {}
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    }
    let _ = std::fs::remove_file(&notify_path);
    let created = || -> anyhow::Result<()> {
        if let Some(h) = &plan.hooks {
            let state = sd.read()?.oci_state();
            for (kind, list) in [
                ("prestart", h.prestart()),
                ("createRuntime", h.create_runtime()),
            ] {
                hooks::run(kind, list.as_deref().unwrap_or_default(), &state)?;
            }
        }
        if let Some(f) = &flags.pid_file {
            write_pid_file(f, pid)?;
        }
        Ok(())
    };
    if let Err(e) = created() {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok(Spawned {
        child: Some(child),
        pid,
    })
}

/// Writes `pid` to `path` atomically (a temporary file renamed over it), as runc does.
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> anyhow::Result<()> {
    let path = std::path::absolute(path)?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, pid.to_string())
        .with_context(|| format!("cannot write the pid file {}", tmp.display()))?;
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("cannot write the pid file {}", path.display()))
}

/// `pvmux start`.
pub(crate) fn start(g: &GlobalArgs, id: &str) -> anyhow::Result<u8> {
    let sd = StateDir::open(&g.root, id)?;
    let r = sd.read()?;
    match r.effective_status() {
        Status::Created => {}
        Status::Creating => bail!("container {id} is still being created"),
        Status::Running | Status::Paused => bail!("cannot start an already running container"),
        Status::Stopped => bail!("cannot start a container that has stopped"),
    }
    control::request(&sd.control_socket(), &control::Request::Start)?;
    poststart(&sd);
    Ok(0)
}

/// Runs the container's `poststart` hooks (a failure is logged, as runc's).
fn poststart(sd: &StateDir) {
    if let Ok(r) = sd.read() {
        if let Some(list) = r.hooks.as_ref().and_then(|h| h.poststart().clone()) {
            if let Err(e) = hooks::run("poststart", &list, &r.oci_state()) {
                tracing::warn!("{}", crate::cli::error_text::Chain(&e));
            }
        }
    }
}

/// Runs the `poststop` hooks of a deleted container (a failure is logged, as runc's).
fn poststop(r: &Record) {
    if let Some(list) = r.hooks.as_ref().and_then(|h| h.poststop().clone()) {
        let mut state = r.oci_state();
        state["status"] = "stopped".into();
        state["pid"] = 0.into();
        if let Err(e) = hooks::run("poststop", &list, &state) {
            tracing::warn!("{}", crate::cli::error_text::Chain(&e));
        }
    }
}

/// `pvmux state`.
pub(crate) fn state(g: &GlobalArgs, id: &str) -> anyhow::Result<u8> {
    let r = StateDir::open(&g.root, id)?.read()?;
    println!("{}", serde_json::to_string_pretty(&r.oci_state())?);
    Ok(0)
}

/// `pvmux kill`.
pub(crate) fn kill(g: &GlobalArgs, a: &KillArgs) -> anyhow::Result<u8> {
    let signo = signal::parse(&a.signal)?;
    let r = StateDir::open(&g.root, &a.id)?.read()?;
    let (Some(pid), true) = (r.pid, r.effective_status() != Status::Stopped) else {
        bail!("container not running");
    };
    send_signal(pid, signo)
        .with_context(|| format!("cannot send {} to container {}", signal::name(signo), a.id))?;
    Ok(0)
}

fn send_signal(pid: i32, signo: i32) -> anyhow::Result<()> {
    let pid = rustix::process::Pid::from_raw(pid).context("bad pid")?;
    let sig = rustix::process::Signal::from_named_raw(signo).context("bad signal")?;
    rustix::process::kill_process(pid, sig)?;
    Ok(())
}

/// `pvmux delete`.
pub(crate) fn delete(g: &GlobalArgs, a: &DeleteArgs) -> anyhow::Result<u8> {
    let sd = match StateDir::open(&g.root, &a.id) {
        Ok(sd) => sd,
        Err(_) if a.force && state::check_id(&a.id).is_ok() => return Ok(0),
        Err(e) => return Err(e),
    };
    let lock = sd.lock()?;
    let r = sd.read()?;
    let status = r.effective_status();
    if matches!(status, Status::Running | Status::Paused) && !a.force {
        bail!(
            "cannot delete container {} that is not stopped: {}",
            a.id,
            status.as_str()
        );
    }
    if let (Some(pid), true) = (r.pid, r.monitor_alive()) {
        kill_and_wait(pid)?;
    }
    std::fs::remove_dir_all(&sd.dir)
        .with_context(|| format!("cannot remove {}", sd.dir.display()))?;
    drop(lock);
    poststop(&r);
    Ok(0)
}

/// SIGKILLs monitor `pid` (its sandboxes die with it) and waits until it has exited.
fn kill_and_wait(pid: i32) -> anyhow::Result<()> {
    let p = rustix::process::Pid::from_raw(pid).context("bad pid")?;
    let fd = match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Ok(()),
        Err(e) => return Err(e).context("cannot watch the container's monitor"),
    };
    rustix::process::pidfd_send_signal(fd.as_fd(), rustix::process::Signal::KILL)
        .or_else(|e| {
            if e == rustix::io::Errno::SRCH {
                Ok(())
            } else {
                Err(e)
            }
        })
        .context("cannot kill the container's monitor")?;
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    loop {
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e).context("cannot wait for the container's monitor"),
        }
    }
}

/// `pvmux list`.
pub(crate) fn list(g: &GlobalArgs, a: &ListArgs) -> anyhow::Result<u8> {
    let mut records = Vec::new();
    match std::fs::read_dir(&g.root) {
        Ok(dir) => {
            for e in dir.flatten() {
                let Some(id) = e.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if let Ok(r) = StateDir::open(&g.root, &id).and_then(|s| s.read()) {
                    records.push(r);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", g.root.display())),
    }
    records.sort_by(|a, b| a.id.cmp(&b.id));
    if a.quiet {
        for r in &records {
            println!("{}", r.id);
        }
        return Ok(0);
    }
    match a.format {
        Format::Json => {
            let v: Vec<_> = records
                .iter()
                .map(|r| {
                    let mut s = r.oci_state();
                    s["created"] = r.created.clone().into();
                    s
                })
                .collect();
            println!("{}", serde_json::to_string(&v)?);
        }
        Format::Table => {
            println!(
                "{:<20} {:<10} {:<10} {:<40} CREATED",
                "ID", "PID", "STATUS", "BUNDLE"
            );
            for r in &records {
                let s = r.oci_state();
                println!(
                    "{:<20} {:<10} {:<10} {:<40} {}",
                    r.id,
                    s["pid"].as_i64().unwrap_or(0),
                    r.effective_status().as_str(),
                    r.bundle.display(),
                    r.created
                );
            }
        }
    }
    Ok(0)
}

/// `pvmux ps`: the container's host process (its monitor; the guest's processes live in the
/// guest kernel).
pub(crate) fn ps(g: &GlobalArgs, a: &PsArgs) -> anyhow::Result<u8> {
    let Some(id) = &a.id else {
        return names::list(g, a.format);
    };
    let r = StateDir::open(&g.root, id)?.read()?;
    let pids: Vec<i32> = r.pid.filter(|_| r.monitor_alive()).into_iter().collect();
    match a.format {
        Format::Json => println!("{}", serde_json::to_string(&pids)?),
        Format::Table => {
            println!("PID");
            for p in pids {
                println!("{p}");
            }
        }
    }
    Ok(0)
}

/// `pvmux features`: the OCI features document.
pub(crate) fn features() -> anyhow::Result<u8> {
    let v = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": oci_spec::runtime::VERSION,
        "hooks": ["prestart", "createRuntime", "poststart", "poststop"],
        "mountOptions": ["bind", "rbind", "ro", "rw"],
        "linux": {
            // Joined when given by path; the guest kernel is the others.
            "namespaces": ["network"],
            "capabilities": [],
            "cgroup": { "v1": false, "v2": false, "systemd": false, "systemdUser": false },
            "seccomp": { "enabled": false },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
        },
        "annotations": {
            "io.pvmux.version": env!("CARGO_PKG_VERSION"),
            "io.pvmux.abi": pvmux_hypercalls::ABI_VERSION.to_string(),
        },
        "potentiallyUnsafeConfigAnnotations": [config::ANNOTATION_KERNEL],
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}

/// `pvmux run ID`: create, start, then wait for the container and delete it (unless `--keep`);
/// with `--detach` return once it runs. Signals to this process are passed on to the
/// container.
pub(crate) fn run(
    g: &GlobalArgs,
    log: Option<&Path>,
    id: &str,
    flags: &super::run::OciRunFlags,
) -> anyhow::Result<u8> {
    let root = std::path::absolute(&g.root)?;
    let mut spawned = spawn(&root, g, log, id, &flags.create, !flags.detach)?;
    let sd = StateDir::open(&root, id)?;
    if let Err(e) = control::request(&sd.control_socket(), &control::Request::Start) {
        if let Some(mut c) = spawned.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&sd.dir);
        return Err(e);
    }
    poststart(&sd);
    if flags.detach {
        spawned.forget();
        return Ok(0);
    }
    let pid = spawned.pid;
    let mut forward =
        signal_hook::iterator::Signals::new(monitor::FORWARDED).context("cannot handle signals")?;
    let handle = forward.handle();
    let thread = std::thread::spawn(move || {
        for s in forward.forever() {
            let _ = send_signal(pid, s);
        }
    });
    let status = spawned
        .child
        .take()
        .context("no monitor")?
        .wait()
        .context("cannot wait for the container")?;
    handle.close();
    let _ = thread.join();
    if !flags.keep {
        let record = sd.read();
        let _ = std::fs::remove_dir_all(&sd.dir);
        if let Ok(r) = record {
            poststop(&r);
        }
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(s)) => 128u8.wrapping_add(s as u8),
        _ => 255,
    })
}
