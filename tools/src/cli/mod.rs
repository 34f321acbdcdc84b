//! Command-line parsing and dispatch.

mod bench;
mod death;
mod environ;
mod exec;
mod exit;
mod limits;
mod logging;
mod net;
mod passwd;
mod run;
mod size;
mod terminal;
mod volume;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

pub use bench::BenchArgs;
pub use environ::Environment;
pub use exit::{EXIT_CODES_HELP, EXIT_GUEST_CRASH, EXIT_HOST_ERROR};
pub use run::{boot_args, ConsoleSetup, InitSetup, RunArgs, RUN_AFTER_HELP};
pub use size::{format_size, parse_mem_size, parse_size};

/// pvmux: run paravirtual guest kernels in unprivileged sandbox processes.
#[derive(Debug, Parser)]
#[command(
    name = "pvmux",
    version,
    about = "Run paravirtual guest kernels in unprivileged sandbox processes",
    long_about = "pvmux runs paravirtual guest kernels (\"tenants\") side by side in unprivileged \
                  sandbox processes on an x86-64 Linux host, with no KVM, VT-x or kernel module.",
    after_help = EXIT_CODES_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,

    /// Host log level or filter (e.g. warn, info, debug, pvmux_host=trace); RUST_LOG, if set,
    /// takes precedence.
    #[arg(long, global = true, value_name = "LEVEL", default_value = "warn")]
    pub log: String,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a guest kernel (and optionally run a program in it: `-- PROGRAM [ARGS...]`) to
    /// completion; its console goes to stdout and its exit code becomes pvmux's.
    #[command(after_help = run::RUN_AFTER_HELP.as_str())]
    Run(Box<RunArgs>),
    /// Measure pvmux's transitions (in a real guest and on the host) next to peers measured
    /// on the same host in the same run: native system calls, seccomp traps, ptrace, futexes
    /// and KVM exits.
    #[command(after_help = bench::BENCH_AFTER_HELP.as_str())]
    Bench(BenchArgs),
    /// Run a program as a new process in a running guest (one started with `pvmux run
    /// --exec-socket PATH`): its stdin, stdout and stderr are pvmux's, its exit status
    /// pvmux's (127: no such program, 126: not executable, 137: the guest ended).
    Exec(exec::ExecArgs),
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
    if let Err(e) = logging::init(&cli.log) {
        eprintln!("pvmux: error: {e:#}");
        return ExitCode::from(EXIT_HOST_ERROR);
    }
    let result = match cli.command {
        Command::Run(args) => run::run(&args, &cli.log),
        Command::Bench(args) => bench::run(&args),
        Command::Exec(args) => exec::run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("pvmux: error: {e:#}");
            ExitCode::from(EXIT_HOST_ERROR)
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
}
