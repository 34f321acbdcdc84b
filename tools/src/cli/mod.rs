//! Command-line parsing and dispatch.

mod bench;
mod caps;
mod death;
pub(crate) mod disk;
mod environ;
mod error_text;
mod exec;
mod exit;
mod limits;
mod logging;
mod net;
mod oci;
mod passwd;
mod run;
mod signals;
mod size;
mod terminal;
mod volume;
mod winsize;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

pub use bench::BenchArgs;
pub use environ::Environment;
pub use exit::{EXIT_CODES_HELP, EXIT_GUEST_CRASH, EXIT_HOST_ERROR, EXIT_OCI_ERROR};
pub use logging::LogFormat;
pub use oci::{
    CreateArgs, CreateFlags, DeleteArgs, EventsArgs, Format, GlobalArgs, IdArgs, KillArgs,
    ListArgs, LogsArgs, MemArgs, PsArgs, RestoreArgs, SnapshotArgs, StatsArgs, StopArgs,
    UpdateArgs,
};
pub use run::{boot_args, ConsoleSetup, InitSetup, OciRunFlags, RunArgs, RUN_AFTER_HELP};
pub use size::{format_size, parse_mem_size, parse_size};

/// `pvmux --version`: runc's lines (engines log them).
static VERSION_TEXT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "version {}\nspec: {}\nabi: {}",
        env!("CARGO_PKG_VERSION"),
        oci_spec::runtime::VERSION,
        pvmux_hypercalls::ABI_VERSION
    )
});

/// pvmux: run paravirtual guest kernels in unprivileged sandbox processes.
#[derive(Debug, Parser)]
#[command(
    name = "pvmux",
    version = VERSION_TEXT.as_str(),
    about = "Run paravirtual guest kernels in unprivileged sandbox processes",
    long_about = "pvmux runs paravirtual guest kernels (\"tenants\") side by side in unprivileged \
                  sandbox processes on an x86-64 Linux host, with no KVM, VT-x or kernel module. \
                  It is also an OCI runtime with runc's command line (create, start, state, kill, \
                  delete, list, features, run ID): each container is one guest kernel \
                  (docs/OCI.md).",
    after_help = EXIT_CODES_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,

    /// `run` without an ID and `bench`: the host log level or filter (e.g. warn, info, debug,
    /// pvmux_host=trace) [default: warn]. OCI commands (and `run ID`): runc's log FILE,
    /// appended to [default: stderr]. RUST_LOG, if set, sets the level.
    #[arg(long, global = true, value_name = "LEVEL|FILE")]
    pub log: Option<String>,

    /// runc's global options.
    #[command(flatten)]
    pub oci: GlobalArgs,
}

impl Cli {
    /// The `--log` level of `run` and `bench`.
    fn level(&self) -> &str {
        self.log.as_deref().unwrap_or("warn")
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a guest kernel (and optionally run a program in it: `-- PROGRAM [ARGS...]`) to
    /// completion; its console goes to stdout and its exit code becomes pvmux's. With an ID:
    /// runc's `run` of an OCI bundle.
    #[command(after_help = run::RUN_AFTER_HELP.as_str())]
    Run(Box<RunArgs>),
    /// Measure pvmux's transitions (in a real guest and on the host) next to peers measured
    /// on the same host in the same run: native system calls, seccomp traps, ptrace, futexes
    /// and KVM exits.
    #[command(after_help = bench::BENCH_AFTER_HELP.as_str())]
    Bench(BenchArgs),
    /// OCI: create a container from a bundle (its program waits for `start`).
    Create(CreateArgs),
    /// OCI: run a created container's program.
    Start(IdArgs),
    /// OCI: print a container's state (JSON).
    State(IdArgs),
    /// OCI: send a signal to a container's init (default SIGTERM).
    Kill(KillArgs),
    /// OCI: delete a stopped (or, with --force, any) container or named tenant.
    #[command(visible_alias = "rm")]
    Delete(DeleteArgs),
    /// OCI: list the containers under --root.
    List(ListArgs),
    /// Without an ID: the tenants (`run --name`) and containers under --root, with state,
    /// kernel, vCPUs, memory and uptime. With an ID (runc's): the container's host processes.
    Ps(PsArgs),
    /// Stop a named tenant (or container): SIGTERM to its init, SIGKILL after --time
    /// seconds, then its state is removed.
    Stop(StopArgs),
    /// A detached named tenant's console output (`run --name NAME --detach`).
    Logs(LogsArgs),
    /// A running tenant's figures per vCPU (run time, hypercalls/s, faults/s, syscalls/s)
    /// and its memory in use.
    Stats(StatsArgs),
    /// OCI: print the runtime's features (JSON).
    Features,
    /// OCI (runc's exec): run a program as a new process in a running container's guest
    /// (or, with --socket, one started with `pvmux run --exec-socket PATH`): its stdin,
    /// stdout and stderr are pvmux's, its exit status pvmux's (127: no such program, 126:
    /// not executable, 137: the guest ended).
    Exec(Box<exec::ExecArgs>),
    /// OCI: pause a running container (its guest stops: no instruction runs, no CPU used).
    Pause(IdArgs),
    /// OCI: resume a paused container.
    Resume(IdArgs),
    /// OCI: change a running container's resources (CPU quota, period and shares, the
    /// guest's task limit); what cannot change is refused and nothing changes.
    Update(UpdateArgs),
    /// OCI: the container's figures as runc's stats events (JSON lines): CPU time, guest
    /// memory in use, guest tasks.
    Events(EventsArgs),
    /// Grow or shrink a running container's guest memory (its balloon): SIZE (512M, 1G) or
    /// a change (+64M, -64M), at most the maximum it started with; a shrink below what the
    /// guest can free is refused and nothing changes.
    Mem(MemArgs),
    /// Snapshot a running named tenant into DIR: processes, pipes, open files and timers
    /// continue where they stopped when it is restored; memory is saved sparsely. The
    /// tenant stops afterwards unless --leave-running.
    Snapshot(SnapshotArgs),
    /// Restore a snapshot as a new named tenant (detached; --name NEW, default the
    /// snapshot's name). A corrupted, truncated or foreign snapshot is refused first.
    Restore(RestoreArgs),
    /// Disks owned by one tenant at a time: `disk ls NAME`, `disk move FROM TO` (FROM's
    /// guest writes back and unmounts the disk, TO's mounts it).
    Disk(disk::DiskArgs),
    /// Hand a running tenant over to a new kernel image without stopping its programs
    /// (kernel hand-over): the image is checked, the running kernel writes its hand-over
    /// record (processes, threads, memory by frame, descriptors, pipes, sockets, timers,
    /// event objects, the in-memory files), the host and the new image check it, then the
    /// new kernel replaces the old one and adopts it: the programs keep their pids, memory
    /// and open files after a pause of ~20 ms. State the record cannot carry refuses the
    /// upgrade, naming it, and the running kernel keeps running; a new kernel that fails
    /// at the switch gives way to the old one again (docs/MULTIKERNEL.md).
    Upgrade(oci::UpgradeArgs),
    /// Internal: a container's monitor process (started by `create`).
    #[command(hide = true, name = "oci-monitor")]
    OciMonitor(oci::MonitorArgs),
}

impl Command {
    /// Whether this is an OCI command (runc's `--log FILE`, exit status 1 on errors).
    fn is_oci(&self) -> bool {
        match self {
            Self::Run(a) => a.container_id.is_some() && a.name.is_none(),
            Self::Bench(_) => false,
            Self::Exec(a) => a.is_oci(),
            _ => true,
        }
    }
}

/// Parses the command line, runs the command, and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => EXIT_HOST_ERROR,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let oci = cli.command.is_oci();
    let log_file = oci
        .then(|| cli.log.as_deref().map(std::path::Path::new))
        .flatten();
    let logging = if oci {
        let monitor = matches!(cli.command, Command::OciMonitor(_));
        logging::init_oci(log_file, cli.oci.log_format, cli.oci.debug, !monitor)
    } else {
        logging::init(cli.level())
    };
    if let Err(e) = logging {
        eprintln!("pvmux: error: {}", error_text::Chain(&e));
        return ExitCode::from(if oci { EXIT_OCI_ERROR } else { EXIT_HOST_ERROR });
    }
    let g = &cli.oci;
    let result = match &cli.command {
        Command::Run(args) => match &args.container_id {
            _ if args.name.is_some() => {
                oci::names::run(g, args, args.name.as_deref().unwrap_or(""), cli.level())
            }
            Some(id) => {
                if !args.program.is_empty() {
                    Err(anyhow::anyhow!(
                        "run ID takes the program from the bundle's config.json, not after --"
                    ))
                } else {
                    oci::run(g, log_file, id, &args.oci)
                }
            }
            None if args.oci.any() => Err(anyhow::anyhow!(
                "--bundle, --pid-file, --console-socket, --detach, --keep, ... need a container ID \
                 (pvmux run [OPTIONS] ID)"
            )),
            None => run::run(args, cli.level(), &g.root),
        },
        Command::Bench(args) => bench::run(args),
        Command::Create(a) => oci::create(g, log_file, a),
        Command::Start(a) => oci::start(g, &a.id),
        Command::State(a) => oci::state(g, &a.id),
        Command::Kill(a) => oci::kill(g, a),
        Command::Delete(a) => oci::delete(g, a),
        Command::List(a) => oci::list(g, a),
        Command::Ps(a) => oci::ps(g, a),
        Command::Stop(a) => oci::names::stop(g, a),
        Command::Logs(a) => oci::names::logs(g, a),
        Command::Stats(a) => oci::names_stats::stats(g, a),
        Command::Features => oci::features(),
        Command::Exec(args) => exec::run(g, log_file, args),
        Command::Pause(a) => oci::pause(g, &a.id),
        Command::Resume(a) => oci::resume(g, &a.id),
        Command::Update(a) => oci::update(g, a),
        Command::Events(a) => oci::events(g, a),
        Command::Mem(a) => oci::mem(g, a),
        Command::Snapshot(a) => oci::snapshot(g, a),
        Command::Restore(a) => oci::restore(g, a, cli.level()),
        Command::Disk(a) => disk::disk(g, a),
        Command::Upgrade(a) => oci::upgrade(g, a),
        Command::OciMonitor(m) => oci::monitor::run(g, m),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if oci {
                // runc's users read the message from the log file (containerd) or stderr.
                if log_file.is_some() {
                    tracing::error!("{}", error_text::Chain(&e));
                }
                eprintln!("pvmux: error: {}", error_text::Chain(&e));
                ExitCode::from(EXIT_OCI_ERROR)
            } else {
                eprintln!("pvmux: error: {}", error_text::Chain(&e));
                ExitCode::from(EXIT_HOST_ERROR)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_bench() {
        let cli =
            Cli::try_parse_from(["pvmux", "bench", "--quick", "--json", "--only", "native.*"])
                .unwrap();
        let Command::Bench(a) = cli.command else {
            panic!("not bench")
        };
        assert!(a.quick && a.json);
        assert_eq!(a.only, ["native.*"]);
        let d = Cli::try_parse_from(["pvmux", "bench"]).unwrap();
        let Command::Bench(a) = d.command else {
            panic!("not bench")
        };
        assert!(!a.quick && !a.json && a.only.is_empty());
        assert!(Cli::try_parse_from(["pvmux", "bench", "--from-json", "f.json"]).is_err());
        let h = Cli::try_parse_from(["pvmux", "bench", "--html", "b.html", "--from-json", "f"])
            .unwrap();
        let Command::Bench(a) = h.command else {
            panic!("not bench")
        };
        assert_eq!(
            (a.html.unwrap(), a.from_json.unwrap()),
            ("b.html".into(), "f".into())
        );
    }

    #[test]
    fn parses_run() {
        let cli = Cli::try_parse_from(["pvmux", "run", "--mem", "64M", "--vcpus", "4"]).unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        assert_eq!(a.mem, 64 << 20);
        assert_eq!(a.vcpus, 4);
        assert_eq!(a.cmdline, None);
        assert!(a.program.is_empty());
        assert!(a.kernel.is_none());
        let d = Cli::try_parse_from(["pvmux", "run"]).unwrap();
        let Command::Run(a) = d.command else {
            panic!("not run")
        };
        assert_eq!((a.mem, a.vcpus), (1 << 30, 2));
        assert_eq!(a.watchdog, Some(std::time::Duration::from_secs(10)));
        assert_eq!(a.console_rate, 1 << 20);
        assert_eq!(
            (a.cpus, a.cpu_seconds, a.crash_dump.as_ref()),
            (None, None, None)
        );
        assert_eq!(a.restart, pvmux_host::RestartPolicy::never());
        let cli = Cli::try_parse_from([
            "pvmux",
            "run",
            "--watchdog",
            "0",
            "--console-rate",
            "64K",
            "--cpus",
            "0.25",
            "--cpu-seconds",
            "3",
            "--restart",
            "on-crash:2",
            "--crash-dump",
            "/tmp/d",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        assert_eq!(a.watchdog, None);
        assert_eq!(a.console_rate, 64 << 10);
        assert_eq!((a.cpus, a.cpu_seconds), (Some(0.25), Some(3)));
        assert_eq!(a.restart, pvmux_host::RestartPolicy::on_crash(2));
        assert_eq!(a.crash_dump, Some("/tmp/d".into()));
        let p = Cli::try_parse_from(["pvmux", "run", "--mem", "64M", "--", "/bin/sh", "-c", "--x"])
            .unwrap();
        let Command::Run(a) = p.command else {
            panic!("not run")
        };
        assert_eq!(a.program, ["/bin/sh", "-c", "--x"]);
        assert_eq!(a.mem, 64 << 20);
        let half = Cli::try_parse_from(["pvmux", "run", "--watchdog", "0.5"]).unwrap();
        let Command::Run(a) = half.command else {
            panic!("not run")
        };
        assert_eq!(a.watchdog, Some(std::time::Duration::from_millis(500)));
        for bad in [
            &["pvmux", "run", "--vcpus", "0"][..],
            &["pvmux", "run", "--vcpus", "65"],
            &["pvmux", "run", "--mem", "garbage"],
            &["pvmux", "run", "--mem", "0"],
            &["pvmux", "run", "--mem", "17M"],
            &["pvmux", "frobnicate"],
            &["pvmux", "run", "--watchdog", "-1"],
            &["pvmux", "run", "--watchdog", "soon"],
            &["pvmux", "run", "--cpus", "0"],
            &["pvmux", "run", "--cpus", "lots"],
            &["pvmux", "run", "--cpu-seconds", "0"],
            &["pvmux", "run", "--restart", "always"],
            &["pvmux", "run", "--console-rate", "fast"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_runc_command_lines() {
        // As containerd's shim and conmon call runc.
        let cli = Cli::try_parse_from([
            "pvmux",
            "--root",
            "/run/x",
            "--log",
            "/tmp/l.json",
            "--log-format",
            "json",
            "--systemd-cgroup",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/p",
            "--no-pivot",
            "--no-new-keyring",
            "abc",
        ])
        .unwrap();
        assert_eq!(cli.oci.root, std::path::Path::new("/run/x"));
        assert_eq!(cli.oci.log_format, LogFormat::Json);
        assert_eq!(cli.log.as_deref(), Some("/tmp/l.json"));
        assert!(cli.command.is_oci());
        let Command::Create(c) = cli.command else {
            panic!("not create")
        };
        assert_eq!(c.id, "abc");
        assert_eq!(c.flags.bundle.as_deref(), Some(std::path::Path::new("/b")));
        let d = Cli::try_parse_from(["pvmux", "kill", "abc"]).unwrap();
        assert_eq!(d.oci.root, std::path::Path::new("/run/pvmux"));
        let Command::Kill(k) = d.command else {
            panic!("not kill")
        };
        assert_eq!((k.id.as_str(), k.signal.as_str()), ("abc", "SIGTERM"));
        // `run ID` is the OCI run; `run -- PROGRAM` stays pvmux's.
        let r = Cli::try_parse_from(["pvmux", "run", "-d", "-b", "/b", "abc"]).unwrap();
        assert!(r.command.is_oci());
        let Command::Run(a) = r.command else {
            panic!("not run")
        };
        assert_eq!(a.container_id.as_deref(), Some("abc"));
        assert!(a.oci.detach && a.oci.any());
        let p = Cli::try_parse_from(["pvmux", "run", "--", "/bin/sh", "-c", "x"]).unwrap();
        assert!(!p.command.is_oci());
        let Command::Run(a) = p.command else {
            panic!("not run")
        };
        assert_eq!((a.container_id, a.program.len()), (None, 3));
        for ok in [
            &["pvmux", "delete", "--force", "x"][..],
            &["pvmux", "list", "--format", "json", "-q"],
            &["pvmux", "state", "x"],
            &["pvmux", "start", "x"],
            &["pvmux", "features"],
            &["pvmux", "exec", "--tty", "--process", "/p", "x", "ls", "-l"],
            &["pvmux", "--debug", "ps", "--format", "json", "x"],
            &["pvmux", "--rootless", "state", "x"],
            &["pvmux", "--rootless=false", "--criu", "/c", "state", "x"],
        ] {
            assert!(Cli::try_parse_from(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            &["pvmux", "create"][..],
            &["pvmux", "list", "--format", "yaml"],
            &["pvmux", "--log-format", "xml", "list"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
