//! `*.user.*`: one static Linux program, `pvmux-user-bench` ([`images::USER_BENCH`]), run
//! natively, as init of User-Mode Linux, under gVisor and as init of a pvmux guest, so the
//! four systems are compared on the same code in the same run.
//!
//! The workload prints `@ready` first, then the guest protocol (`@bench user.NAME ...`,
//! `@bench-unavailable ...`, `@bench-done`, see [`super::guest`]). Each peer is a child
//! process (or, for pvmux, a tenant) with a deadline for `@ready` and one for the whole run;
//! it is killed (its whole process group) once it has said what we need. `boot_to_init` is
//! the time from the spawn (or launch) call to the `@ready` line.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pvmux_host::clock::monotonic_ns;
use pvmux_host::{initramfs, Host, KernelImage, Tenant, TenantState};
use pvmux_hypercalls::bootargs::{BootArgsBuf, Options};

use super::guest::{GuestFigure, Parser, MALFORMED, MISSING};
use super::progress::Progress;
use super::stats::Summary;
use super::tenants::{self, GUEST_MEM};
use crate::images;

/// The figures the workload measures, as it names them (after `user.`).
pub const WORKLOAD: [&str; 8] = [
    "syscall_getppid",
    "page_fault",
    "fork_exit_wait",
    "pipe_pingpong",
    "clock_gettime",
    "read_4k_cached",
    "open_read_close",
    "fork_exec_wait",
];
/// The figures that read [`DATA_FILE`].
const FILE_FIGURES: [&str; 2] = ["read_4k_cached", "open_read_close"];
/// The figure measured from outside: launch to the `@ready` line.
pub const BOOT: &str = "boot_to_init";
/// Environment variable naming the User-Mode Linux kernel (default `linux.uml`).
pub const UML_ENV: &str = "PVMUX_BENCH_UML";
/// Environment variable naming the gVisor runtime (default `runsc`).
pub const RUNSC_ENV: &str = "PVMUX_BENCH_RUNSC";
/// Environment variable: `1` runs the pvmux guest with `--no-patch` (every system call
/// traps), to compare syscall-site patching with the trap path in the same session.
pub const NO_PATCH_ENV: &str = "PVMUX_BENCH_NO_PATCH";
/// Name of the workload inside a root filesystem.
const WORKLOAD_FILE: &str = "pvmux-user-bench";
/// Name of the file the file figures read, next to the workload (for pvmux: in the host
/// share, `--rootfs`, not in the initramfs, so reads go through the page cache).
const DATA_FILE: &str = "pvmux-user-bench.data";
/// Its size.
const DATA_LEN: usize = 64 << 10;
/// Guest memory of User-Mode Linux.
const UML_MEM: &str = "mem=128M";
/// How often a running peer is looked at.
const POLL: Duration = Duration::from_millis(1);

/// A system the workload runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Directly on the host.
    Native,
    /// As init of Debian's User-Mode Linux (`linux.uml`, hostfs root).
    Uml,
    /// Under gVisor (`runsc --platform=ptrace do`).
    Gvisor,
    /// As init of a pvmux guest (initramfs root).
    Pvmux,
    /// As init of a pvmux guest in the trusted in-process mode (`--user-isolation none`,
    /// [`super::trusted`]).
    PvmuxTrusted,
}

impl Peer {
    /// Every peer, in table order.
    pub const ALL: [Peer; 5] = [
        Peer::Native,
        Peer::Uml,
        Peer::Gvisor,
        Peer::Pvmux,
        Peer::PvmuxTrusted,
    ];

    /// The prefix of its figures' names (`native`, `uml`, `gvisor`, `pvmux`).
    pub fn prefix(self) -> &'static str {
        match self {
            Peer::Native => "native",
            Peer::Uml => "uml",
            Peer::Gvisor => "gvisor",
            Peer::Pvmux => "pvmux",
            Peer::PvmuxTrusted => super::trusted::PREFIX,
        }
    }

    /// Deadlines of one run: for the `@ready` line and for the whole run.
    fn limits(self, quick: bool) -> (Duration, Duration) {
        let ready = match self {
            Peer::Native | Peer::Pvmux | Peer::PvmuxTrusted => Duration::from_secs(5),
            Peer::Uml | Peer::Gvisor => Duration::from_secs(20),
        };
        (ready, Duration::from_secs(if quick { 30 } else { 300 }))
    }

    /// Boot samples wanted for `boot_to_init` (the workload run counts as one). A pvmux
    /// launch takes ~10–20 ms with its teardown: the median of 9 (25) instead of 2 (5) costs
    /// a tenth of a second (half a second), and one slow launch (±0.5 ms on a nested host)
    /// no longer decides a `--quick` figure. UML and gVisor boots take 0.1–1 s each.
    fn boots(self, quick: bool) -> usize {
        match (self, quick) {
            (Peer::Native, true) => 10,
            (Peer::Native, false) => 50,
            (Peer::Pvmux | Peer::PvmuxTrusted, true) => 9,
            (Peer::Pvmux | Peer::PvmuxTrusted, false) => 25,
            (Peer::Uml | Peer::Gvisor, true) => 2,
            (Peer::Uml | Peer::Gvisor, false) => 5,
        }
    }
}

/// `PEER.user.FIGURE` split into its peer and figure (one of [`WORKLOAD`] or [`BOOT`]).
pub fn split(name: &str) -> Option<(Peer, &str)> {
    let (prefix, figure) = name.split_once(".user.")?;
    let peer = Peer::ALL.into_iter().find(|p| p.prefix() == prefix)?;
    (WORKLOAD.contains(&figure) || figure == BOOT).then_some((peer, figure))
}

/// The pvmux kernel boot arguments running `argv` as init.
pub fn program_args(argv: &[String]) -> Result<BootArgsBuf, String> {
    BootArgsBuf::new(&Options::default(), [], argv)
        .map_err(|e| format!("cannot encode the boot arguments: {e}"))
}

/// The workload's arguments: `--ready`, `--quick` if quick, then the figures.
pub fn workload_args(figures: &[&str], quick: bool) -> Vec<String> {
    let mut v = vec!["--ready".to_owned()];
    if quick {
        v.push("--quick".to_owned());
    }
    v.extend(figures.iter().map(|f| (*f).to_owned()));
    v
}

/// A private temporary directory holding `root/pvmux-user-bench` (mode 0755) and scratch
/// space for the peers; removed when dropped.
struct Staging {
    dir: PathBuf,
}

impl Staging {
    fn new() -> Result<Self, String> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pvmux-user-bench-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let s = Self { dir };
        let fail = |what: &str, e: std::io::Error| format!("{what}: {e}");
        std::fs::create_dir_all(s.root()).map_err(|e| fail("cannot create a temp dir", e))?;
        std::fs::create_dir_all(s.scratch()).map_err(|e| fail("cannot create a temp dir", e))?;
        std::fs::write(s.workload(), images::USER_BENCH)
            .map_err(|e| fail("cannot write the workload", e))?;
        std::fs::set_permissions(s.workload(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| fail("cannot make the workload executable", e))?;
        let data: Vec<u8> = (0..DATA_LEN).map(|i| (i % 251) as u8).collect();
        std::fs::write(s.data(), data).map_err(|e| fail("cannot write the data file", e))?;
        // pvmux's initramfs: the workload only (the data file comes from the share).
        std::fs::create_dir_all(s.initrd_root())
            .map_err(|e| fail("cannot create a temp dir", e))?;
        std::fs::copy(s.workload(), s.initrd_root().join(WORKLOAD_FILE))
            .map_err(|e| fail("cannot copy the workload", e))?;
        Ok(s)
    }

    /// The root filesystem: the workload and the data file.
    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// What pvmux's initramfs holds: the workload.
    fn initrd_root(&self) -> PathBuf {
        self.dir.join("initrd")
    }

    /// The data file the file figures read.
    fn data(&self) -> PathBuf {
        self.root().join(DATA_FILE)
    }

    /// Scratch space (UML's memory file and umid directory, gVisor's state).
    fn scratch(&self) -> PathBuf {
        self.dir.join("scratch")
    }

    fn workload(&self) -> PathBuf {
        self.root().join(WORKLOAD_FILE)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What to wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Until {
    /// The `@ready` line.
    Ready,
    /// The `@bench-done` line.
    Done,
}

/// A running peer.
trait Running {
    /// How it ended, once it has.
    fn ended(&mut self) -> Option<String>;
    /// Ends it if it still runs (killing everything it started) and reaps it.
    fn stop(self: Box<Self>);
}

/// What one run produced.
struct Run {
    parser: Parser,
    start_ns: u64,
    /// `Ok` if what was waited for arrived.
    end: Result<(), String>,
}

impl Run {
    fn failed(why: String) -> Self {
        Self {
            parser: Parser::default(),
            start_ns: 0,
            end: Err(why),
        }
    }

    /// The boot sample: ns from the launch to `@ready`.
    fn boot_ns(&self) -> Option<f64> {
        self.parser
            .ready_ns()
            .map(|r| r.saturating_sub(self.start_ns) as f64)
    }
}

/// Shared console state fed by a reader thread or a tenant's console.
#[derive(Clone, Default)]
struct Console(Arc<Mutex<Parser>>);

impl Console {
    fn with<R>(&self, f: impl FnOnce(&mut Parser) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn reached(&self, until: Until) -> bool {
        self.with(|p| match until {
            Until::Ready => p.ready_ns().is_some(),
            Until::Done => p.done(),
        })
    }
}

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.with(|p| p.feed(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Watches `running` until `until` is reached, it ends, or a deadline passes; then lingers up
/// to `linger` for it to end by itself, and stops it.
fn watch(
    mut running: Box<dyn Running>,
    console: &Console,
    start_ns: u64,
    until: Until,
    (ready_limit, total_limit): (Duration, Duration),
    linger: Duration,
) -> Run {
    let t0 = Instant::now();
    let end = loop {
        if console.reached(until) {
            break Ok(());
        }
        if let Some(how) = running.ended() {
            // Let the reader drain what was written just before the end.
            std::thread::sleep(Duration::from_millis(20));
            if console.reached(until) {
                break Ok(());
            }
            let what = if console.reached(Until::Ready) {
                "@bench-done"
            } else {
                "@ready"
            };
            let last = console.with(|p| p.last_line().to_owned());
            break Err(if last.is_empty() {
                format!("{how} before {what}")
            } else {
                format!("{how} before {what} (last output: {last})")
            });
        }
        let ready = console.reached(Until::Ready);
        let elapsed = t0.elapsed();
        if !ready && elapsed > ready_limit {
            break Err(format!(
                "no @ready within {} s (killed)",
                ready_limit.as_secs_f64()
            ));
        }
        if elapsed > total_limit {
            break Err(format!(
                "did not finish within {} s (killed)",
                total_limit.as_secs_f64()
            ));
        }
        std::thread::sleep(POLL);
    };
    if end.is_ok() {
        let deadline = Instant::now() + linger;
        while running.ended().is_none() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
    }
    running.stop();
    Run {
        parser: console.with(|p| p.clone()),
        start_ns,
        end,
    }
}

/// A child process in its own process group, its stdout fed to a [`Console`].
struct Process {
    child: Child,
    program: String,
    stderr_tail: Arc<Mutex<String>>,
    /// Set by the stderr reader at end of file.
    stderr_eof: Arc<std::sync::atomic::AtomicBool>,
    exited: Option<String>,
}

impl Running for Process {
    fn ended(&mut self) -> Option<String> {
        if self.exited.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader take what the child wrote last (bounded: a helper process
                // left in the group may keep the pipe open).
                let deadline = Instant::now() + Duration::from_millis(200);
                while !self.stderr_eof.load(std::sync::atomic::Ordering::Acquire)
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let tail = self
                    .stderr_tail
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                self.exited = Some(if tail.is_empty() {
                    format!("{} ended ({status})", self.program)
                } else {
                    format!("{} ended ({status}; stderr: {tail})", self.program)
                });
            }
        }
        self.exited.clone()
    }

    fn stop(mut self: Box<Self>) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            // The whole group: UML's and runsc's helper processes too.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` (stdin null, stdout to `console`, stderr's last line kept) in a new process
/// group, so that [`Running::stop`] can kill everything it starts.
fn spawn(mut cmd: Command, console: &Console) -> Result<(Box<dyn Running>, u64), String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let start_ns = monotonic_ns();
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("{program} is not installed (not found)")
        } else {
            format!("cannot run {program}: {e}")
        }
    })?;
    if let Some(mut out) = child.stdout.take() {
        let mut console = console.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = out.read(&mut buf) {
                let _ = console.write(&buf[..n]);
            }
        });
    }
    let stderr_tail = Arc::new(Mutex::new(String::new()));
    let stderr_eof = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(mut err) = child.stderr.take() {
        let tail = Arc::clone(&stderr_tail);
        let eof = Arc::clone(&stderr_eof);
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                text.extend_from_slice(&buf[..n]);
                let keep = text.len().saturating_sub(4096);
                text.drain(..keep);
                let s = String::from_utf8_lossy(&text);
                let last = s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
                *tail.lock().unwrap_or_else(|e| e.into_inner()) =
                    last.trim().chars().take(200).collect();
            }
            eof.store(true, std::sync::atomic::Ordering::Release);
        });
    } else {
        stderr_eof.store(true, std::sync::atomic::Ordering::Release);
    }
    Ok((
        Box::new(Process {
            child,
            program,
            stderr_tail,
            stderr_eof,
            exited: None,
        }),
        start_ns,
    ))
}

/// A pvmux tenant (`None` once it ended and was reaped).
struct Guest {
    tenant: Option<Tenant>,
    ended: Option<String>,
}

impl Running for Guest {
    fn ended(&mut self) -> Option<String> {
        let over = self
            .tenant
            .as_ref()
            .is_some_and(|t| !matches!(t.state(), TenantState::Created | TenantState::Running));
        if over {
            if let Some(t) = self.tenant.take() {
                self.ended = Some(super::boot::describe(&t.wait()));
            }
        }
        self.ended.clone()
    }

    fn stop(mut self: Box<Self>) {
        if let Some(t) = self.tenant.take() {
            t.kill();
            let _ = t.wait();
        }
    }
}

/// How to run the workload on one peer.
struct Launcher<'a> {
    peer: Peer,
    staging: &'a Staging,
    host: &'a Host,
    kernel: &'a Arc<KernelImage>,
    initrd: Option<Arc<Vec<u8>>>,
    quick: bool,
}

impl Launcher<'_> {
    /// The command running the workload with `args` on a process-based peer.
    fn command(&self, args: &[String]) -> Command {
        let workload = self.staging.workload();
        let scratch = self.staging.scratch();
        match self.peer {
            Peer::Native => {
                let mut c = Command::new(&workload);
                c.args(args).current_dir(&scratch);
                c
            }
            Peer::Uml => {
                let uml = std::env::var_os(UML_ENV).unwrap_or_else(|| "linux.uml".into());
                let mut c = Command::new(uml);
                c.arg(UML_MEM)
                    .arg("quiet")
                    .arg(format!("uml_dir={}", scratch.display()))
                    .arg("umid=pvmux-bench")
                    .arg("rootfstype=hostfs")
                    .arg(format!("rootflags={}", self.staging.root().display()))
                    .arg(format!("init=/{WORKLOAD_FILE}"))
                    .arg("con0=null,fd:1")
                    .arg("con=null")
                    .arg("--")
                    .args(args)
                    // UML's memory file is created in TMPDIR, which must allow exec mappings.
                    .env("TMPDIR", &scratch)
                    .current_dir(&scratch);
                c
            }
            Peer::Gvisor => {
                let runsc = std::env::var_os(RUNSC_ENV).unwrap_or_else(|| "runsc".into());
                let mut c = Command::new(runsc);
                c.arg(format!("--root={}", scratch.join("runsc").display()))
                    .args(["--platform=ptrace", "--network=none", "--ignore-cgroups"]);
                if !rustix::process::geteuid().is_root() {
                    c.arg("--rootless");
                }
                c.arg("do").arg(&workload).args(args).current_dir(&scratch);
                c
            }
            Peer::Pvmux | Peer::PvmuxTrusted => unreachable!("pvmux runs in-process"),
        }
    }

    /// Runs the workload with `args` until `until`.
    fn run(&self, args: &[String], until: Until) -> Run {
        let console = Console::default();
        let limits = self.peer.limits(self.quick);
        // After the lines we need: UML panics when init exits (kill it at once); the others
        // get a moment to end cleanly (runsc removes its container state).
        let linger = match self.peer {
            Peer::Uml => Duration::ZERO,
            _ => Duration::from_secs(2),
        };
        let started = match self.peer {
            Peer::Pvmux | Peer::PvmuxTrusted => self.launch_guest(args, &console),
            _ => spawn(self.command(args), &console),
        };
        match started {
            Ok((running, start_ns)) => watch(running, &console, start_ns, until, limits, linger),
            Err(why) => Run::failed(why),
        }
    }

    fn launch_guest(
        &self,
        args: &[String],
        console: &Console,
    ) -> Result<(Box<dyn Running>, u64), String> {
        let initrd = self
            .initrd
            .clone()
            .ok_or_else(|| "no initramfs".to_owned())?;
        let mut argv = vec![format!("/{WORKLOAD_FILE}")];
        argv.extend_from_slice(args);
        // The file figures read the data file from a host share (`--rootfs`) of the root;
        // the workload itself comes from the initramfs, which wins over the share.
        let share = if args.iter().any(|a| a == "--file") {
            let fs = pvmux_host::hostfs::HostFs::open(&self.staging.root())
                .map_err(|e| format!("cannot share the root: {e}"))?;
            Some(Arc::new(fs))
        } else {
            None
        };
        let options = Options {
            hostfs: share.is_some(),
            ..Options::default()
        };
        let no_patch = std::env::var_os(NO_PATCH_ENV).is_some_and(|v| v == "1");
        let mut commands = super::trusted::commands(self.peer);
        commands.extend(no_patch.then_some(pvmux_hypercalls::bootargs::Command::NoPatch));
        let boot_args = BootArgsBuf::new(&options, commands, &argv)
            .map_err(|e| format!("cannot encode the boot arguments: {e}"))?;
        let l = tenants::launch_with_share(
            self.host,
            self.kernel,
            "user-bench",
            GUEST_MEM,
            boot_args,
            Box::new(console.clone()),
            Some(initrd),
            share,
        )
        .map_err(|e| format!("cannot launch the guest: {e}"))?;
        Ok((
            Box::new(Guest {
                tenant: Some(l.tenant),
                ended: None,
            }),
            l.start_mono_ns,
        ))
    }
}

/// Runs the wanted `*.user.*` figures (full catalogue names) and returns one result each.
pub fn run(
    host: &Host,
    kernel: &Arc<KernelImage>,
    wanted: &[&'static str],
    quick: bool,
    progress: &Progress,
) -> Vec<(&'static str, Result<Summary, String>)> {
    let mut out = Vec::new();
    let staging = Staging::new();
    for peer in Peer::ALL {
        let mine: Vec<(&'static str, &str)> = wanted
            .iter()
            .filter_map(|&n| split(n).filter(|(p, _)| *p == peer).map(|(_, f)| (n, f)))
            .collect();
        if mine.is_empty() {
            continue;
        }
        progress.start(&format!(
            "{}.user.* ({} figure(s))",
            peer.prefix(),
            mine.len()
        ));
        let results = match &staging {
            Err(why) => mine.iter().map(|&(n, _)| (n, Err(why.clone()))).collect(),
            Ok(staging) => run_peer(host, kernel, staging, peer, &mine, quick),
        };
        out.extend(results);
        progress.inc();
    }
    out
}

fn run_peer(
    host: &Host,
    kernel: &Arc<KernelImage>,
    staging: &Staging,
    peer: Peer,
    mine: &[(&'static str, &str)],
    quick: bool,
) -> Vec<(&'static str, Result<Summary, String>)> {
    let initrd = if matches!(peer, Peer::Pvmux | Peer::PvmuxTrusted) {
        match initramfs::pack_dir(staging.initrd_root()).map(|b| (initramfs::validate(&b), b)) {
            Ok((Ok(_), bytes)) => Some(Arc::new(bytes)),
            Ok((Err(e), _)) | Err(e) => {
                let why = format!("cannot pack the initramfs: {e}");
                return mine.iter().map(|&(n, _)| (n, Err(why.clone()))).collect();
            }
        }
    } else {
        None
    };
    let launcher = Launcher {
        peer,
        staging,
        host,
        kernel,
        initrd,
        quick,
    };
    let figures: Vec<&str> = mine
        .iter()
        .map(|&(_, f)| f)
        .filter(|f| *f != BOOT)
        .collect();
    let mut boots = Vec::new();
    let mut boot_err = None;
    let workload_run = (!figures.is_empty()).then(|| {
        let mut args = workload_args(&figures, quick);
        if figures.iter().any(|f| FILE_FIGURES.contains(f)) {
            // Natively and in gVisor the host's path; UML and pvmux see the root as `/`.
            let path = match peer {
                Peer::Native | Peer::Gvisor => staging.data().display().to_string(),
                Peer::Uml | Peer::Pvmux | Peer::PvmuxTrusted => format!("/{DATA_FILE}"),
            };
            args.extend(["--file".to_owned(), path]);
        }
        let r = launcher.run(&args, Until::Done);
        boots.extend(r.boot_ns());
        r
    });
    if mine.iter().any(|&(_, f)| f == BOOT) {
        let ready_only = ["--ready".to_owned()];
        while boots.len() < peer.boots(quick) {
            let r = launcher.run(&ready_only, Until::Ready);
            match (r.end.clone(), r.boot_ns()) {
                (Ok(()), Some(ns)) => boots.push(ns),
                (Err(why), _) => {
                    boot_err = Some(why);
                    break;
                }
                (Ok(()), None) => {
                    boot_err = Some("no @ready".to_owned());
                    break;
                }
            }
        }
    }
    mine.iter()
        .map(|&(name, figure)| {
            let r = if figure == BOOT {
                match boot_err.take() {
                    Some(why) => Err(why),
                    None => Summary::of(&mut boots).ok_or_else(|| "no boot samples".to_owned()),
                }
            } else {
                match &workload_run {
                    Some(run) => figure_result(run, figure),
                    None => Err(MISSING.to_owned()),
                }
            };
            (name, r)
        })
        .collect()
}

/// The result of workload figure `figure` in `run`: what it reported, or why it did not.
fn figure_result(run: &Run, figure: &str) -> Result<Summary, String> {
    match (
        run.parser.figures().get(&format!("user.{figure}")),
        &run.end,
    ) {
        (Some(GuestFigure::Measured(s)), _) => Ok(*s),
        (Some(GuestFigure::Unavailable(why)), _) => Err(why.clone()),
        (Some(GuestFigure::Malformed), _) => Err(MALFORMED.to_owned()),
        (None, Err(why)) => Err(why.clone()),
        (None, Ok(())) => Err(MISSING.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_peer_and_figure() {
        assert_eq!(
            split("uml.user.page_fault"),
            Some((Peer::Uml, "page_fault"))
        );
        assert_eq!(
            split("pvmux.user.boot_to_init"),
            Some((Peer::Pvmux, "boot_to_init"))
        );
        assert_eq!(split("native.syscall.getppid"), None);
        assert_eq!(split("qemu.user.page_fault"), None);
        assert_eq!(split("native.user.nothing"), None);
    }

    #[test]
    fn program_arguments_pass_unchanged() {
        let argv = ["/x".to_owned(), "a b%c\u{e9}".to_owned(), "".to_owned()];
        let args = program_args(&argv).unwrap();
        assert!(args.args().argv().eq(argv.iter().map(|a| a.as_bytes())));
        assert_eq!(args.args().commands().count(), 0);
        assert_eq!(
            workload_args(&["page_fault"], true),
            ["--ready", "--quick", "page_fault"]
        );
    }

    fn sh(script: &str, until: Until, limits: (Duration, Duration)) -> (Run, Duration) {
        let console = Console::default();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        let t0 = Instant::now();
        let (running, start) = spawn(cmd, &console).unwrap();
        let run = watch(running, &console, start, until, limits, Duration::ZERO);
        (run, t0.elapsed())
    }

    const LIMITS: (Duration, Duration) = (Duration::from_millis(300), Duration::from_secs(3));

    #[test]
    fn a_silent_peer_is_killed_at_the_ready_deadline() {
        let (run, took) = sh("sleep 20", Until::Ready, LIMITS);
        assert_eq!(run.end, Err("no @ready within 0.3 s (killed)".to_owned()));
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn a_peer_that_ends_early_says_how() {
        let (run, took) = sh("echo starting; echo >&2 oops; exit 3", Until::Done, LIMITS);
        let why = run.end.unwrap_err();
        assert!(why.starts_with("sh ended (exit status: 3"), "{why}");
        assert!(why.contains("stderr: oops"), "{why}");
        assert!(
            why.ends_with("before @ready (last output: starting)"),
            "{why}"
        );
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn the_whole_process_group_is_killed_once_ready() {
        let (run, _) = sh(
            "sleep 30 & echo $!; echo @ready; wait",
            Until::Ready,
            LIMITS,
        );
        assert_eq!(run.end, Ok(()));
        let boot = run.boot_ns().unwrap();
        assert!(boot > 0.0 && boot < 3e9, "{boot}");
        let pid: u32 = run.parser.last_line().parse().unwrap();
        // The background sleep was in the group: killed, then reaped by whoever adopted it.
        let t0 = Instant::now();
        let gone = loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                break true;
            }
            if t0.elapsed() > Duration::from_secs(2) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(gone, "process {pid} survived");
    }

    #[test]
    fn workload_figures_come_from_the_protocol_lines() {
        let (run, _) = sh(
            "echo @ready; echo '@bench user.page_fault median_ns=5 p99_ns=9 samples=3'; \
             echo '@bench-unavailable user.fork_exit_wait fork: ENOSYS'; echo @bench-done",
            Until::Done,
            LIMITS,
        );
        assert_eq!(run.end, Ok(()));
        assert_eq!(
            figure_result(&run, "page_fault"),
            Ok(Summary {
                median: 5.0,
                p99: 9.0,
                samples: 3
            })
        );
        assert_eq!(
            figure_result(&run, "fork_exit_wait"),
            Err("fork: ENOSYS".to_owned())
        );
        assert_eq!(
            figure_result(&run, "pipe_pingpong"),
            Err(MISSING.to_owned())
        );
        let failed = Run::failed("boom".to_owned());
        assert_eq!(figure_result(&failed, "page_fault"), Err("boom".to_owned()));
    }

    #[test]
    fn staging_holds_an_executable_workload_and_is_removed() {
        let s = Staging::new().unwrap();
        let dir = s.dir.clone();
        let meta = std::fs::metadata(s.workload()).unwrap();
        assert_eq!(meta.len(), images::USER_BENCH.len() as u64);
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        assert!(s.scratch().is_dir());
        drop(s);
        assert!(!dir.exists());
    }
}
