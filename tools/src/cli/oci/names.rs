//! Named tenants: `pvmux run --name NAME [--detach]`, `pvmux ps` (no ID), `pvmux stop`,
//! `pvmux logs`. A named tenant is an OCI container without a bundle: the same state
//! directory `ROOT/NAME/` and the same monitor (`pvmux oci-monitor`, given `pvmux run`'s own
//! arguments), so `list`, `state`, `kill`, `exec`, `pause`, `events` and `delete` reach it too,
//! and `ps`, `stop`, `logs` and `stats` reach OCI containers (one mechanism, not two).
//!
//! Attached, the tenant lives as long as this `pvmux run` (the monitor dies with it), its
//! stdio is this process's and its state is removed at the end. Detached, the monitor's
//! stdout and stderr go to `ROOT/NAME/console.log`; the tenant stays listed as `stopped`
//! after its program ended (its log readable) until `pvmux stop` or `pvmux delete`.

use std::ffi::OsString;
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use super::control::{self, Request};
use super::state::{check_name, now_ms, now_rfc3339, Named, Record, StateDir, Status};
use super::{Format, GlobalArgs};

/// `pvmux stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short = 't', long = "time", value_name = "SECS", default_value_t = 10)]
    pub time: u64,
    /// The tenant's name (or a container's id).
    pub name: String,
}

/// `pvmux logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the tenant ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The tenant's name.
    pub name: String,
}

/// The global options that take a value as the next argument (skipped when looking for
/// the subcommand on the command line).
const GLOBALS_WITH_VALUE: [&str; 4] = ["--root", "--log", "--log-format", "--criu"];

/// The arguments after the `run` subcommand of command line `argv` (program name first).
fn run_tail(argv: &[OsString]) -> Option<&[OsString]> {
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].to_str()?;
        if GLOBALS_WITH_VALUE.contains(&a) {
            i += 2;
            continue;
        }
        if a.starts_with('-') {
            i += 1;
            continue;
        }
        return (a == "run").then(|| &argv[i + 1..]);
    }
    None
}

/// `pvmux run --name NAME [--detach] [OPTIONS] [-- PROGRAM ...]`.
pub(crate) fn run(
    g: &GlobalArgs,
    args: &crate::cli::RunArgs,
    name: &str,
    level: &str,
) -> anyhow::Result<u8> {
    check_name(name)?;
    if args.container_id.is_some() {
        bail!("--name and a container ID exclude each other");
    }
    let o = &args.oci;
    if o.create.bundle.is_some()
        || o.create.pid_file.is_some()
        || o.create.console_socket.is_some()
        || o.keep
    {
        bail!("--bundle, --pid-file, --console-socket and --keep are for OCI containers (an ID), not --name");
    }
    if args.restart != pvmux_host::RestartPolicy::never() {
        bail!("--restart does not apply to a named tenant (its monitor runs the guest once)");
    }
    if args.exec_socket.is_some() {
        bail!(
            "--exec-socket: a named tenant has its exec socket already (pvmux exec {name} -- CMD)"
        );
    }
    let argv: Vec<OsString> = std::env::args_os().collect();
    let tail = run_tail(&argv)
        .context("cannot find the run arguments on the command line")?
        .to_vec();
    let root = std::path::absolute(&g.root)?;
    let sd = match StateDir::create(&root, name) {
        Ok(sd) => sd,
        Err(_) if root.join(name).exists() => bail!(
            "the name {name:?} is in use (pvmux ps lists it; pvmux stop {name} or pvmux delete \
             {name} frees it)"
        ),
        Err(e) => return Err(e),
    };
    let detach = o.detach;
    let result = start(&sd, &root, g, name, detach, level, &tail);
    let (mut child, pid) = match result {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&sd.dir);
            return Err(e);
        }
    };
    if detach {
        println!("{name}");
        // The monitor runs on; it was told not to die with this process.
        return Ok(0);
    }
    // The guest edits lines and echoes: the host terminal passes keys through raw meanwhile
    // (as an anonymous `pvmux run` does).
    let ttys = pvmux_host::console_input::host_terminals();
    let _raw = (!args.program.is_empty() && ttys.stdin && (ttys.stdout || ttys.stderr))
        .then(crate::cli::terminal::RawTerminal::enable)
        .flatten();
    let mut forward = signal_hook::iterator::Signals::new(super::monitor::FORWARDED)
        .context("cannot handle signals")?;
    let handle = forward.handle();
    let thread = std::thread::spawn(move || {
        for s in forward.forever() {
            let _ = super::send_signal(pid, s);
        }
    });
    let status = child.wait().context("cannot wait for the tenant");
    handle.close();
    let _ = thread.join();
    let _ = std::fs::remove_dir_all(&sd.dir);
    use std::os::unix::process::ExitStatusExt;
    let status = status?;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(s)) => 128u8.wrapping_add(s as u8),
        _ => 255,
    })
}

/// Records the tenant, starts its monitor with `tail` (`pvmux run`'s arguments), waits until
/// it is ready and boots the guest: the monitor and its pid.
pub(crate) fn start(
    sd: &StateDir,
    root: &Path,
    g: &GlobalArgs,
    name: &str,
    detach: bool,
    level: &str,
    tail: &[OsString],
) -> anyhow::Result<(std::process::Child, i32)> {
    {
        let lock = sd.lock()?;
        sd.write(
            &Record {
                id: name.to_owned(),
                bundle: std::path::PathBuf::new(),
                status: Status::Creating,
                pid: None,
                start_time: None,
                annotations: Default::default(),
                created: now_rfc3339(),
                exit_status: None,
                hooks: None,
                tenant: None,
                started_ms: None,
                named: Some(Named { detached: detach }),
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
    if g.debug || level.contains("debug") || level.contains("trace") {
        cmd.arg("--debug");
    }
    cmd.arg("oci-monitor")
        .arg("--parent")
        .arg(std::process::id().to_string())
        .arg("--notify")
        .arg(&notify_path)
        .arg("--keep-cwd");
    if !detach {
        cmd.arg("--attached");
    }
    cmd.arg(name).arg("--").args(tail);
    if detach {
        use std::os::unix::fs::OpenOptionsExt;
        let log = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(sd.console_log())
            .with_context(|| format!("cannot create {}", sd.console_log().display()))?;
        cmd.stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
    }
    tracing::debug!(?cmd, "starting the tenant's monitor");
    let mut child = cmd.spawn().context("cannot start the tenant's monitor")?;
    let pid = child.id() as i32;
    let ready = control::await_ready(&notify, &child)
        .map_err(|e| error_with_log(e, sd))
        .and_then(|()| {
            let _ = std::fs::remove_file(&notify_path);
            control::request(&sd.control_socket(), &Request::Start).map(drop)
        });
    if let Err(e) = ready {
        let _ = child.kill();
        let _ = child.wait();
        return Err(error_with_log(e, sd));
    }
    Ok((child, pid))
}

/// `e`, with the end of the console log when the monitor wrote there (a detached tenant's
/// monitor reports its errors on its stderr too).
fn error_with_log(e: anyhow::Error, sd: &StateDir) -> anyhow::Error {
    match std::fs::read_to_string(sd.console_log()) {
        Ok(log)
            if !log.trim().is_empty() && !crate::cli::error_text::text(&e).contains(log.trim()) =>
        {
            e.context(format!("the tenant's log says: {}", log.trim()))
        }
        _ => e,
    }
}

/// `pvmux stop NAME`: SIGTERM to the guest's init (through the monitor), SIGKILL after
/// `--time` seconds, then the state is removed. The monitor's sandboxes are waited for: when
/// this returns, no process of the tenant is left. A tenant that has stopped already is just
/// removed.
pub(crate) fn stop(g: &GlobalArgs, a: &StopArgs) -> anyhow::Result<u8> {
    let sd = StateDir::open(&g.root, &a.name)
        .map_err(|_| anyhow::anyhow!("no tenant or container named {:?}", a.name))?;
    let r = sd.read()?;
    if let (Some(pid), true) = (r.pid, r.monitor_alive()) {
        let family = descendants(pid);
        let p = rustix::process::Pid::from_raw(pid).context("bad pid")?;
        match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => {
                let _ =
                    rustix::process::pidfd_send_signal(fd.as_fd(), rustix::process::Signal::TERM);
                if !wait_exit(&fd, Some(Duration::from_secs(a.time)))? {
                    tracing::info!(name = %a.name, "still running after SIGTERM: SIGKILL");
                }
            }
            Err(rustix::io::Errno::SRCH) => {}
            Err(e) => return Err(e).context("cannot watch the tenant's monitor"),
        }
        super::kill_and_wait(pid)?;
        // Its sandboxes die with it (parent-death signal): wait until they are gone.
        for p in family {
            wait_gone(p);
        }
    }
    let lock = sd.lock()?;
    std::fs::remove_dir_all(&sd.dir)
        .with_context(|| format!("cannot remove {}", sd.dir.display()))?;
    drop(lock);
    if r.named.is_none() {
        super::poststop(&r);
    }
    Ok(0)
}

/// Waits until the process of `fd` exits, at most `timeout`: whether it did.
fn wait_exit(fd: &impl AsFd, timeout: Option<Duration>) -> anyhow::Result<bool> {
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let ts = left.map(|l| rustix::time::Timespec {
            tv_sec: l.as_secs() as i64,
            tv_nsec: i64::from(l.subsec_nanos()),
        });
        let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e).context("cannot wait for the tenant's monitor"),
        }
    }
}

/// Waits until process `pid` has exited (it was killed).
fn wait_gone(pid: i32) {
    let Some(p) = rustix::process::Pid::from_raw(pid) else {
        return;
    };
    if let Ok(fd) = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
        let _ = wait_exit(&fd, Some(Duration::from_secs(10)));
    }
}

/// Every live descendant of process `pid` (from `/proc/*/stat`'s parent pids).
pub(crate) fn descendants(pid: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_ascii_whitespace().nth(1))
                .and_then(|s| s.parse::<i32>().ok());
            if let Some(pp) = ppid {
                parent_of.push((p, pp));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(q) = frontier.pop() {
        for &(c, pp) in &parent_of {
            if pp == q && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// `pvmux logs [-f] NAME`: a detached tenant's console output.
pub(crate) fn logs(g: &GlobalArgs, a: &LogsArgs) -> anyhow::Result<u8> {
    let sd = StateDir::open(&g.root, &a.name)
        .map_err(|_| anyhow::anyhow!("no tenant or container named {:?}", a.name))?;
    let path = sd.console_log();
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} has no log: only a tenant started with pvmux run --name {} --detach has one \
             (an attached tenant's console is its terminal, an OCI container's its engine's)",
            a.name,
            a.name
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n > 0 {
            out.write_all(&buf[..n])?;
            continue;
        }
        out.flush()?;
        if !a.follow {
            return Ok(0);
        }
        // At the end: done once the monitor is gone and nothing more was written.
        let alive = sd.read().map(|r| r.monitor_alive()).unwrap_or(false);
        if !alive {
            let pos = f.stream_position()?;
            if std::fs::metadata(&path).map_or(0, |m| m.len()) <= pos {
                return Ok(0);
            }
            continue;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One row of `pvmux ps`.
#[derive(serde::Serialize)]
struct Row {
    name: String,
    state: &'static str,
    kernel: Option<String>,
    vcpus: Option<u32>,
    memory: Option<u64>,
    /// Seconds since the guest started (running or paused tenants).
    uptime_s: Option<f64>,
    pid: Option<i32>,
    exit_status: Option<i32>,
    /// `named` (pvmux run --name) or `oci` (a bundle's container).
    kind: &'static str,
}

/// `pvmux ps` without an ID: every tenant and container under `--root`.
pub(crate) fn list(g: &GlobalArgs, format: Format) -> anyhow::Result<u8> {
    let mut rows = Vec::new();
    match std::fs::read_dir(&g.root) {
        Ok(dir) => {
            for e in dir.flatten() {
                let Some(id) = e.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if let Ok(r) = StateDir::open(&g.root, &id).and_then(|s| s.read()) {
                    rows.push(row(&r));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", g.root.display())),
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    match format {
        Format::Json => println!("{}", serde_json::to_string(&rows)?),
        Format::Table => {
            println!(
                "{:<20} {:<8} {:<16} {:>5} {:>9} {:>9}",
                "NAME", "STATE", "KERNEL", "VCPUS", "MEMORY", "UPTIME"
            );
            for r in &rows {
                println!(
                    "{:<20} {:<8} {:<16} {:>5} {:>9} {:>9}",
                    r.name,
                    r.state,
                    r.kernel.as_deref().unwrap_or("-"),
                    r.vcpus.map_or("-".into(), |v| v.to_string()),
                    r.memory.map_or("-".into(), crate::cli::format_size),
                    r.uptime_s.map_or("-".into(), uptime),
                );
            }
        }
    }
    Ok(0)
}

fn row(r: &Record) -> Row {
    let status = r.effective_status();
    let live = matches!(status, Status::Running | Status::Paused);
    Row {
        name: r.id.clone(),
        state: status.as_str(),
        kernel: r.tenant.as_ref().map(|t| t.kernel.clone()),
        vcpus: r.tenant.as_ref().map(|t| t.vcpus),
        memory: r.tenant.as_ref().map(|t| t.mem),
        uptime_s: r
            .started_ms
            .filter(|_| live)
            .map(|s| now_ms().saturating_sub(s) as f64 / 1000.0),
        pid: r.pid.filter(|_| live),
        exit_status: r.exit_status,
        kind: if r.named.is_some() { "named" } else { "oci" },
    }
}

/// An uptime as `podman ps` shows it, short: `42s`, `3m4s`, `2h5m`, `3d4h`.
fn uptime(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{}h", s / 86_400, s / 3600 % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn finds_the_run_arguments() {
        let a = v(&["pvmux", "--root", "run", "run", "--name", "x", "--", "run"]);
        assert_eq!(run_tail(&a), Some(&a[4..]));
        let b = v(&["pvmux", "--debug", "run", "-d", "--name=x"]);
        assert_eq!(run_tail(&b), Some(&b[3..]));
        assert_eq!(run_tail(&v(&["pvmux", "ps"])), None);
        assert_eq!(run_tail(&v(&["pvmux"])), None);
    }

    #[test]
    fn uptimes() {
        assert_eq!(uptime(0.4), "0s");
        assert_eq!(uptime(184.0), "3m4s");
        assert_eq!(uptime(7500.0), "2h5m");
        assert_eq!(uptime(273_600.0), "3d4h");
    }
}
