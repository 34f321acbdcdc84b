//! The container's monitor (`pvmux oci-monitor`, started by `create`): the container's host
//! process, the pid engines wait on. It prepares the guest (files opened, kernel parsed),
//! reports `created`, waits on the control socket for `start`, boots the guest kernel, passes
//! on the signals it receives to the guest, and exits with the guest program's status.
//!
//! It dies with its parent until it has reported (a `create` killed half-way leaves no
//! process), and with `run`'s CLI when attached (`run ID` without `--detach`). Its sandboxes
//! die with it (the host library's parent-death signal), so `kill -9` of a monitor leaves no
//! process behind.

use std::ffi::OsString;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::Context;
use clap::{Args, Parser};
use signal_hook::consts::{SIGALRM, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};

use super::control::{self, Request};
use super::state::{process_start_time, StateDir, Status};
use super::GlobalArgs;

/// The signals a monitor passes on to the guest (SIGKILL cannot be caught: it kills the
/// monitor, and so the container, at once).
pub(crate) const FORWARDED: [i32; 7] =
    [SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGTERM];

/// `pvmux oci-monitor` (internal; started by `create` and `run ID`).
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// The pid of the `create` that started this monitor.
    #[arg(long)]
    pub parent: u32,
    /// The hand-shake socket of `create`.
    #[arg(long)]
    pub notify: PathBuf,
    /// Die with the parent for good (`run ID` without `--detach`).
    #[arg(long)]
    pub attached: bool,
    /// The container has a terminal: its master goes to this socket.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// The network namespace to join (the engine's for the container).
    #[arg(long)]
    pub netns: Option<PathBuf>,
    /// Keep the working directory (`pvmux run --name`: its paths may be relative); an OCI
    /// container's are absolute and the monitor moves to `/`.
    #[arg(long)]
    pub keep_cwd: bool,
    /// The container id.
    pub id: String,
    /// `pvmux run`'s arguments for the container.
    #[arg(last = true)]
    pub run_args: Vec<OsString>,
}

/// Wraps `pvmux run`'s arguments to parse them.
#[derive(Debug, Parser)]
struct RunLine {
    #[command(flatten)]
    run: super::super::RunArgs,
    /// `pvmux run --name`'s line may carry the global options too (ignored here).
    #[command(flatten)]
    _globals: GlobalArgs,
    #[arg(long = "log")]
    #[allow(dead_code)]
    log_ignored: Option<String>,
}

/// What reaches the monitor's main thread.
enum Event {
    Signal(i32),
    Control(Request, UnixStream),
}

/// Runs the monitor; returns its exit status (the guest program's).
pub(crate) fn run(g: &GlobalArgs, m: &MonitorArgs) -> anyhow::Result<u8> {
    use rustix::process::{getppid, set_parent_process_death_signal, Signal};
    set_parent_process_death_signal(Some(Signal::KILL))
        .context("cannot tie the monitor to pvmux create")?;
    if getppid().map(|p| p.as_raw_nonzero().get() as u32) != Some(m.parent) {
        anyhow::bail!("pvmux create is gone");
    }
    // Every path it was given is absolute: it holds no directory of the engine's.
    if !m.keep_cwd {
        std::env::set_current_dir("/").context("cannot change to /")?;
    }
    let sd = StateDir::open(&g.root, &m.id)?;
    // First the network namespace (before any thread: threads and sandboxes started later
    // are in it too), then the terminal, then the guest's files.
    let prepared = m
        .netns
        .as_deref()
        .map_or(Ok(()), join_netns)
        .and_then(|()| match m.console_socket.as_deref() {
            None => Ok(None),
            Some(socket) => {
                // Resizes from now on reach the guest once it runs (the size at `start` is
                // its boot size).
                let (tx, rx) = mpsc::channel();
                // Lives as long as the monitor.
                std::mem::forget(super::super::winsize::watch(move || {
                    if let Some(size) = super::super::winsize::stdin() {
                        let _ = tx.send(size);
                    }
                })?);
                super::console::attach(socket, super::console::Output::Processed)?;
                Ok(Some(rx))
            }
        })
        .and_then(|resized| Ok((resized, prepare(&sd, &g.root, &m.run_args)?)));
    let (resized, (args, prepared, listener)) = match prepared {
        Ok(p) => {
            // Detached before the report: `create` exits as soon as it has it.
            if !m.attached {
                set_parent_process_death_signal(None).context("cannot detach the monitor")?;
            }
            control::report(&m.notify, &Ok(()))?;
            p
        }
        Err(e) => {
            let _ = control::report(&m.notify, &Err(crate::cli::error_text::flat(&e)));
            return Err(e);
        }
    };
    let (tx, rx) = mpsc::channel();
    let mut signals =
        signal_hook::iterator::Signals::new(FORWARDED).context("cannot handle signals")?;
    let stx = tx.clone();
    std::thread::Builder::new()
        .name("pvmux-oci-signals".into())
        .spawn(move || {
            for s in signals.forever() {
                if stx.send(Event::Signal(s)).is_err() {
                    break;
                }
            }
        })?;
    std::thread::Builder::new()
        .name("pvmux-oci-control".into())
        .spawn(move || serve(&listener, &tx))?;

    // `created`: wait for `start` (a signal now ends the container before it ran).
    let start = loop {
        match rx.recv() {
            Ok(Event::Control(Request::Start, stream)) => break stream,
            Ok(Event::Control(_, stream)) => control::answer(
                &stream,
                &Err(anyhow::anyhow!("container not running (it is created)")),
            ),
            Ok(Event::Signal(s)) => {
                tracing::info!(signal = s, "signalled before start: the container ends");
                let code = 128 + s;
                let _ = sd.update(|r| {
                    r.status = Status::Stopped;
                    r.exit_status = Some(code);
                });
                return Ok(code as u8);
            }
            Err(_) => anyhow::bail!("the control socket closed"),
        }
    };
    // The terminal's size now (the engine sizes it after `create`) is the guest's at boot.
    let mut prepared = prepared;
    if let Some(size) = super::super::winsize::stdin()
        .and_then(|(rows, cols)| pvmux_hypercalls::bootargs::ConsoleSize::new(cols, rows))
    {
        if let Err(e) = prepared.set_console_size(size) {
            tracing::warn!("{}", crate::cli::error_text::Chain(&e));
        }
    }
    let tenant = match prepared.launch(&args) {
        Ok(t) => t,
        Err(e) => {
            control::answer(&start, &Err(crate::cli::error_text::flat(&e)));
            let _ = sd.update(|r| r.status = Status::Stopped);
            return Err(e);
        }
    };
    // `pvmux exec ID`: new processes in the running guest (removed when this returns).
    // Listening before the container is said to run: an exec right after `start` (or
    // `run --detach`) returns finds the socket there and accepting, not missing or bound
    // but not yet listening (`ECONNREFUSED`; seen in CI under load).
    let _exec = pvmux_host::exec::socket::ExecServer::bind(&sd.exec_socket(), tenant.exec_handle())
        .map_err(|e| tracing::warn!("no exec into this container: {e}"))
        .ok();
    // `running` once the guest kernel's sandbox exists, before `start` returns.
    let _ = sd.update(|r| {
        r.status = Status::Running;
        r.started_ms = Some(super::state::now_ms());
    });
    control::answer(&start, &Ok(()));
    drop(start);
    let handle = tenant.handle();
    let events_sd = StateDir::open(&g.root, &m.id)?;
    let run_args = m.run_args.clone();
    let id = m.id.clone();
    // Held while a request is answered: a request that ends the tenant (a snapshot that
    // stops it, `kill`) is answered before this process exits, or its client would see
    // the monitor end without an answer and retry into a socket no one listens on.
    let answering = std::sync::Arc::new(std::sync::Mutex::new(()));
    let events_answering = std::sync::Arc::clone(&answering);
    if let Some(sizes) = resized {
        let h = tenant.handle();
        std::thread::Builder::new()
            .name("pvmux-oci-resize".into())
            .spawn(move || {
                // A resize between the boot and this thread: the size now.
                let now = super::super::winsize::stdin().into_iter();
                for (rows, cols) in now.chain(sizes) {
                    if let Some(size) = pvmux_hypercalls::bootargs::ConsoleSize::new(cols, rows) {
                        h.resize_console(size);
                    }
                }
            })?;
    }
    std::thread::Builder::new()
        .name("pvmux-oci-events".into())
        .spawn(move || {
            while let Ok(ev) = rx.recv() {
                match ev {
                    Event::Signal(s) => {
                        tracing::info!(signal = s, "signal for the container");
                        forward(&handle, s);
                    }
                    Event::Control(Request::Snapshot(r), stream) => {
                        let _answering = lock(&events_answering);
                        let result = super::snapshot::answer(&handle, &r, &id, &run_args);
                        if let Err(e) = &result {
                            tracing::warn!("{}", crate::cli::error_text::Chain(e));
                        }
                        control::answer_with(&stream, &result);
                    }
                    Event::Control(req, stream) => {
                        let _answering = lock(&events_answering);
                        super::live::answer(&req, &stream, &handle, &events_sd);
                    }
                }
            }
        })?;
    let outcome = tenant.wait();
    if let pvmux_host::TenantOutcome::Crashed(report) = &outcome {
        tracing::error!("the guest kernel crashed:\n{report}");
    }
    let code = super::super::run::outcome_code(&outcome, args.mem);
    let _ = sd.update(|r| {
        r.status = Status::Stopped;
        r.exit_status = Some(i32::from(code));
    });
    drop(lock(&answering));
    Ok(code)
}

/// Locks `m`, which guards no data (a panic while holding it leaves nothing half-done).
fn lock(m: &std::sync::Mutex<()>) -> std::sync::MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Moves the monitor into the network namespace at `path` (the engine's `/run/netns/...`).
fn join_netns(path: &Path) -> anyhow::Result<()> {
    use std::os::fd::AsFd;
    let f = std::fs::File::open(path)
        .with_context(|| format!("cannot open the network namespace {}", path.display()))?;
    rustix::thread::move_into_link_name_space(
        f.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .with_context(|| format!("cannot join the network namespace {}", path.display()))
}

/// Passes host signal `signo` on to the guest's init.
fn forward(handle: &pvmux_host::TenantHandle, signo: i32) {
    if let Err(e) = handle.signal(signo as u32) {
        tracing::warn!("cannot pass the signal on to the guest: {e}");
    }
}

/// Parses the run arguments, prepares the guest, binds the control socket and records the
/// container as `created` with this process's pid.
fn prepare(
    sd: &StateDir,
    root: &Path,
    run_args: &[OsString],
) -> anyhow::Result<(
    super::super::RunArgs,
    super::super::run::Prepared,
    UnixListener,
)> {
    let line = RunLine::try_parse_from(
        [OsString::from("pvmux-run")]
            .into_iter()
            .chain(run_args.iter().cloned()),
    )
    .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
    let args = line.run;
    let level = if tracing::enabled!(tracing::Level::DEBUG) {
        "debug"
    } else {
        "warn"
    };
    let prepared = super::super::run::prepare(&args, level, root)?;
    let path = sd.control_socket();
    let listener = bind(&path)?;
    let me = std::process::id() as i32;
    let tenant = super::state::TenantInfo {
        kernel: prepared.label().to_owned(),
        vcpus: args.vcpus,
        mem: args.mem,
    };
    sd.update(|r| {
        r.pid = Some(me);
        r.start_time = process_start_time(me);
        r.status = Status::Created;
        r.tenant = Some(tenant);
    })?;
    Ok((args, prepared, listener))
}

fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))
}

/// Accepts control connections and passes their requests on.
fn serve(listener: &UnixListener, tx: &mpsc::Sender<Event>) {
    use std::io::BufRead;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let mut line = String::new();
        let read = std::io::BufReader::new(&stream).read_line(&mut line);
        match (read, Request::parse(&line)) {
            (Ok(_), Some(req)) => {
                if tx.send(Event::Control(req, stream)).is_err() {
                    return;
                }
            }
            _ => control::answer(
                &stream,
                &Err(anyhow::anyhow!("unknown request {:?}", line.trim_end())),
            ),
        }
    }
}
