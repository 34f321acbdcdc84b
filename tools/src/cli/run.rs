//! `pvmux run`: boot one guest and run it to completion.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pvmux_host::console_input::terminal_size;
use pvmux_host::hostfs::HostFs;
use pvmux_host::initramfs::{self, DEFAULT_MAX_SIZE};
use pvmux_host::{
    run_with_restarts, ConsoleInput, Host, HostTerminals, KernelImage, KernelLog, RestartPolicy,
    TenantConfig, TenantOutcome,
};
use pvmux_hypercalls::boot::CMDLINE_MAX;

use super::exit::EXIT_GUEST_CRASH;
use super::size::{format_size, parse_mem_size, parse_size};
use super::terminal::RawTerminal;
use crate::images;

/// Text for `pvmux run --help` after the options: running programs.
pub const RUN_AFTER_HELP: &str = "\
Running a program:
  pvmux run [OPTIONS] -- PROGRAM [ARGS...] runs PROGRAM (a static Linux x86-64 binary, e.g.
  busybox) as the guest's init process, with ARGS. With --rootfs DIR, DIR is shared
  read-only with the guest and PROGRAM is a path inside it; with --initrd FILE, inside the
  archive. Without PROGRAM, --initrd/--rootfs run /init. The program's stdout and stderr are
  pvmux's, host stdin feeds its console input (a host terminal is put into raw mode while the
  program runs, and restored: the guest kernel echoes and edits lines, and ^C interrupts the
  guest's foreground programs), and the kernel's own log is hidden (shown on
  stderr with --log debug, which also reports unknown system calls). PROGRAM and ARGS are
  passed on the kernel command line after the word --, percent-encoded; the whole command
  line is limited to 2048 bytes.

Exit status:
  0-255    the guest's exit status: the program's exit code, or 128+N when it was killed
           by signal N (from the kernel's shutdown; a guest should not use 124 or 125).
           A program killed by a signal other than SIGINT or SIGPIPE, or for memory, gets
           one line on stderr saying how (e.g. `pvmux: /bin/prog (pid 1) killed by
           SIGSEGV: segfault at 0x0 ip 0x401136 sp 0x7ffc3b5f10 error 6`)
  124      the guest kernel crashed; a crash report is printed on stderr
  125      host-side error (bad flag, unusable kernel image or rootfs, command line too
           long, sandbox spawn failure)";

/// Arguments of `pvmux run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Guest kernel image (an x86-64 static-pie ELF built for the pvmux ABI) [default: the
    /// kernel embedded in pvmux].
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,

    /// Guest memory size: a multiple of 2M from 16M up, with an optional K/M/G/T suffix
    /// (e.g. 64M, 1G, 1048576).
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_mem_size)]
    pub mem: u64,

    /// Number of virtual CPUs (1..=64).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 2,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(pvmux_hypercalls::MAX_VCPUS))
    )]
    pub vcpus: u32,

    /// Kernel command line (at most 2048 bytes in all) [default: `selftest`, or empty when a
    /// PROGRAM, --initrd or --rootfs is given]. With a PROGRAM, pvmux appends its own words
    /// (console-tty=N, console-size=CxR, -- PROGRAM ARGS...).
    #[arg(long, value_name = "STR")]
    pub cmdline: Option<String>,

    /// Liveness watchdog: a guest with a vCPU that takes no events (timer, kick, host
    /// heartbeat) for SECS seconds is killed and reported as crashed. 0 disables it.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_watchdog)]
    // Fully qualified: clap treats a plain `Option` field as an optional flag of `Duration`,
    // while here the parser itself yields `None` for 0.
    pub watchdog: std::option::Option<Duration>,

    /// Console output limit in bytes per second, with a K/M/G suffix (burst: one second's
    /// worth). Excess output is dropped and a line `[pvmux: console output throttled, N
    /// bytes dropped]` says so. 0 disables the limit.
    #[arg(long, value_name = "BYTES", default_value = "1M", value_parser = parse_size)]
    pub console_rate: u64,

    /// CPU rate limit in CPUs (e.g. 0.5), enforced with a cgroup v2 `cpu.max` when the
    /// host's cgroup is writable; otherwise it cannot be enforced (use --cpu-seconds).
    #[arg(long, value_name = "FRACTION", value_parser = parse_cpus)]
    pub cpus: Option<f64>,

    /// Total CPU-time budget of the sandbox in seconds (RLIMIT_CPU): beyond it the guest is
    /// killed and reported as crashed.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub cpu_seconds: Option<u64>,

    /// Restart a crashed guest: `no`, `on-crash` (up to 3 times) or `on-crash:N`, with
    /// backoff 100 ms, 200 ms, 400 ms ... (at most 5 s). A clean exit is never restarted;
    /// the exit status is that of the last run.
    #[arg(long, value_name = "POLICY", default_value = "no")]
    pub restart: RestartPolicy,

    /// Initial RAM disk: a cpio "newc" archive, plain or gzip-compressed. It is checked
    /// before boot and handed to the guest uncompressed, page aligned just below the user pool
    /// (the upper half of guest memory; BootInfo.initrd_gpa/initrd_len); at most 1 GiB
    /// uncompressed, and it must fit in the lower half of --mem.
    #[arg(long, value_name = "FILE", conflicts_with = "rootfs_pack")]
    pub initrd: Option<PathBuf>,

    /// Host directory shared read-only with the guest as its root filesystem, read lazily
    /// (nothing is copied up front, so `--rootfs /` works): paths cannot leave DIR, host
    /// pseudo filesystems (/proc, /sys, ...) show empty, devices, FIFOs and sockets are not
    /// shown; the guest's writes stay in guest memory. An --initrd overlays it.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,

    /// Host directory packed on the fly into the guest's initial RAM disk (cpio newc):
    /// regular files, directories and symbolic links (not followed), owned by root, with
    /// their permissions and mtimes; sockets, FIFOs and devices are skipped.
    #[arg(long, value_name = "DIR")]
    pub rootfs_pack: Option<PathBuf>,

    /// Write a crash dump for each crash to `DIR/<tenant>-<unix time>-<n>/`: report.txt,
    /// registers.json, guest-memory.bin (sparse) and console.txt. DIR is created if missing.
    #[arg(long, value_name = "DIR")]
    pub crash_dump: Option<PathBuf>,

    /// The program to run as init, and its arguments (after `--`; see below).
    #[arg(last = true, value_name = "PROGRAM [ARGS]")]
    pub program: Vec<OsString>,
}

/// `--watchdog SECS`: seconds (fractions allowed); 0 = disabled.
fn parse_watchdog(s: &str) -> Result<Option<Duration>, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid watchdog timeout {s:?}: expected seconds, e.g. 10 or 0.5"))?;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("watchdog timeout {s} is outside 0..=86400 seconds"));
    }
    Ok((secs > 0.0).then(|| Duration::from_secs_f64(secs)))
}

/// `--cpus FRACTION`: a positive number of CPUs.
fn parse_cpus(s: &str) -> Result<f64, String> {
    let c: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid CPU limit {s:?}: expected a number of CPUs, e.g. 0.5"))?;
    if !c.is_finite() || c <= 0.0 || c > 1024.0 {
        return Err(format!("CPU limit {s} is outside (0, 1024]"));
    }
    Ok(c)
}

/// Percent-encodes one argument for the kernel command line: every byte that is not
/// printable ASCII (0x21..=0x7e), and `%` itself, becomes `%XX` (uppercase hex).
pub fn percent_encode(arg: &[u8]) -> String {
    let mut out = String::with_capacity(arg.len());
    for &b in arg {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How the guest's console is set up when a program runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsoleWords {
    /// Which host streams are terminals.
    pub ttys: HostTerminals,
    /// Size of the stdout terminal (columns, rows), if it is one.
    pub size: Option<(u16, u16)>,
    /// Ask the kernel to report the system calls it does not implement.
    pub syscall_report: bool,
}

/// The kernel command line for `--cmdline` (`None`: not given), `program` (with its
/// arguments; empty: none) and whether an initial RAM disk or root is given. Returns the
/// command line and whether a program (PROGRAM, or /init) runs.
pub fn build_cmdline(
    cmdline: Option<&str>,
    program: &[OsString],
    has_root: bool,
    words: &ConsoleWords,
) -> anyhow::Result<(String, bool)> {
    let argv: Vec<&[u8]> = if !program.is_empty() {
        if cmdline.is_some_and(|c| c.split_ascii_whitespace().any(|w| w == "--")) {
            anyhow::bail!("--cmdline must not contain the word -- when a PROGRAM is given");
        }
        program.iter().map(|a| a.as_bytes()).collect()
    } else if has_root && cmdline.is_none() {
        vec![b"/init"]
    } else {
        let line = cmdline.unwrap_or("selftest").to_owned();
        check_len(&line)?;
        return Ok((line, false));
    };
    if let Some(i) = argv.iter().position(|a| a.is_empty()) {
        anyhow::bail!(
            "argument {i} after -- is empty; the kernel command line cannot carry empty arguments"
        );
    }
    let mut line = cmdline.unwrap_or("").trim().to_owned();
    let mut push = |w: &str| {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    };
    push(&format!("console-tty={}", words.ttys.mask()));
    if let Some((cols, rows)) = words.size {
        push(&format!("console-size={cols}x{rows}"));
    }
    if words.syscall_report {
        push("syscall-report");
    }
    push("--");
    for a in argv {
        push(&percent_encode(a));
    }
    check_len(&line)?;
    Ok((line, true))
}

/// True if the kernel words of `cmdline` (before `--`) ask for a command only the test kernel
/// has (self-tests, hostile cases, benchmarks, crash commands): the embedded test kernel then
/// boots instead of the default one.
pub(crate) fn needs_test_kernel(cmdline: &str) -> bool {
    cmdline
        .split_ascii_whitespace()
        .take_while(|w| *w != "--")
        .any(|w| {
            matches!(
                w,
                "selftest" | "fs-selftest" | "panic" | "syscall" | "bench_quick"
            ) || ["crash=", "bench=", "hostile="]
                .iter()
                .any(|p| w.starts_with(p))
        })
}

fn check_len(line: &str) -> anyhow::Result<()> {
    if line.len() > CMDLINE_MAX {
        anyhow::bail!(
            "the kernel command line is {} bytes, more than the limit of {CMDLINE_MAX} \
             (arguments after -- count percent-encoded)",
            line.len()
        );
    }
    Ok(())
}

/// Whether the effective log filter (RUST_LOG if set, else `--log`) enables debug output.
fn debug_logging(log: &str) -> bool {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => v,
        _ => log.to_owned(),
    };
    tracing_subscriber::EnvFilter::try_new(filter)
        .ok()
        .and_then(|f| f.max_level_hint())
        .is_some_and(|l| l >= tracing_subscriber::filter::LevelFilter::DEBUG)
}

/// The guest console: stdout, flushed after every write so output appears promptly. Output
/// is held back until [`Console::open`] so the banner comes first.
#[derive(Clone, Default)]
struct Console(Arc<Mutex<Option<Vec<u8>>>>);

impl Console {
    fn held() -> Self {
        Self(Arc::new(Mutex::new(Some(Vec::new()))))
    }

    /// Writes out what was held back; later writes go straight through.
    fn open(&self) -> std::io::Result<()> {
        let held = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        match held {
            Some(bytes) => Self::emit(&bytes),
            None => Ok(()),
        }
    }

    fn emit(buf: &[u8]) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(buf)?;
        out.flush()
    }
}

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match held.as_mut() {
            Some(pending) => pending.extend_from_slice(buf),
            None => Self::emit(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

/// What `run_once` needs besides the arguments.
struct Plan {
    cmdline: String,
    /// A program (PROGRAM or /init) runs: its console setup applies.
    program: bool,
    kernel_log: KernelLog,
    /// The `--rootfs` share.
    hostfs: Option<Arc<HostFs>>,
}

/// Runs a guest; returns pvmux's exit code. `log` is the `--log` filter.
pub(crate) fn run(args: &RunArgs, log: &str) -> anyhow::Result<u8> {
    let debug = debug_logging(log);
    let ttys = HostTerminals::detect();
    let words = ConsoleWords {
        ttys,
        size: ttys
            .stdout
            .then(|| terminal_size(std::io::stdout()))
            .flatten(),
        syscall_report: debug,
    };
    let has_root = args.initrd.is_some() || args.rootfs.is_some() || args.rootfs_pack.is_some();
    let (cmdline, program) =
        build_cmdline(args.cmdline.as_deref(), &args.program, has_root, &words)?;
    // The share: opened once, before anything boots (fails early if DIR is unusable); the
    // kernel uses it when its command line has the word `hostfs`.
    let hostfs = match &args.rootfs {
        Some(dir) => {
            Some(Arc::new(HostFs::open(dir).with_context(|| {
                format!("--rootfs {} is not usable", dir.display())
            })?))
        }
        None => None,
    };
    let cmdline = match hostfs {
        Some(_) => format!("hostfs {cmdline}"),
        None => cmdline,
    };
    let plan = Plan {
        hostfs,
        cmdline,
        program,
        kernel_log: match (program, debug) {
            (false, _) => KernelLog::Stdout,
            (true, false) => KernelLog::Hidden,
            (true, true) => KernelLog::Stderr,
        },
    };
    tracing::debug!(cmdline = %plan.cmdline, "kernel command line");
    let (bytes, label) = match &args.kernel {
        Some(path) => (
            std::fs::read(path)
                .with_context(|| format!("cannot read kernel image {}", path.display()))?,
            path.display().to_string(),
        ),
        None if needs_test_kernel(&plan.cmdline) => {
            (images::KERNEL_TEST.to_vec(), "embedded (test)".to_owned())
        }
        None => (images::KERNEL.to_vec(), "embedded".to_owned()),
    };
    let kernel =
        KernelImage::parse(bytes).with_context(|| format!("kernel image {label} is not usable"))?;
    let initrd = load_initrd(args)?;
    let host = Host::new(images::STUB).context("cannot prepare the sandbox stub")?;
    let kernel = Arc::new(kernel);
    // The guest kernel does the line editing and echo of a terminal: the host terminal passes
    // keys through raw while the program runs (restored when this guard drops). Only when
    // the guest can echo to a host terminal (stdout or stderr); otherwise the host's own
    // echo is all the user would see.
    let _raw = (program && ttys.stdin && (ttys.stdout || ttys.stderr))
        .then(RawTerminal::enable)
        .flatten();
    let outcome = run_with_restarts(
        &args.restart,
        |_| run_once(&host, &kernel, initrd.as_ref(), args, &plan, &label),
        |r| {
            eprint!("{}", r.report);
            eprintln!(
                "pvmux: restart {}/{} after crash",
                r.restart, r.max_restarts
            );
        },
    )?;
    match outcome {
        TenantOutcome::Exited(code) => Ok(u8::try_from(code & 0xff).unwrap_or(u8::MAX)),
        TenantOutcome::ProgramKilled(death) => {
            if let Some(line) = super::death::killed_line(&death, args.mem) {
                eprintln!("{line}");
            }
            Ok(u8::try_from(death.code & 0xff).unwrap_or(u8::MAX))
        }
        TenantOutcome::Crashed(report) => {
            eprint!("{report}");
            Ok(EXIT_GUEST_CRASH)
        }
    }
}

/// An initial RAM disk ready for the guest, and what to say about it in the banner.
struct Initrd {
    bytes: Arc<Vec<u8>>,
    label: String,
}

/// Reads `--initrd` or packs `--rootfs-pack` into a validated plain newc archive.
fn load_initrd(args: &RunArgs) -> anyhow::Result<Option<Initrd>> {
    let (bytes, summary, what) = if let Some(path) = &args.initrd {
        let (bytes, summary) = initramfs::load_file(path, DEFAULT_MAX_SIZE)
            .with_context(|| format!("--initrd {} is not usable", path.display()))?;
        (bytes, summary, format!("initrd {}", path.display()))
    } else if let Some(dir) = &args.rootfs_pack {
        let bytes = initramfs::pack_dir(dir)
            .with_context(|| format!("cannot pack --rootfs-pack {}", dir.display()))?;
        // Packing writes well-formed archives; checking anyway keeps one rule: the guest
        // only ever receives what `validate` accepted.
        let summary = initramfs::validate(&bytes).with_context(|| {
            format!(
                "packed --rootfs-pack {} is not a valid archive",
                dir.display()
            )
        })?;
        (bytes, summary, format!("rootfs {}", dir.display()))
    } else {
        return Ok(None);
    };
    tracing::info!(?summary, "{what}: initial RAM disk ready");
    let label = format!(
        "{what} ({} entries, {})",
        summary.entries,
        format_size(bytes.len() as u64)
    );
    Ok(Some(Initrd {
        bytes: Arc::new(bytes),
        label,
    }))
}

/// Boots the guest once and waits for it.
fn run_once(
    host: &Host,
    kernel: &Arc<KernelImage>,
    initrd: Option<&Initrd>,
    args: &RunArgs,
    plan: &Plan,
    label: &str,
) -> anyhow::Result<TenantOutcome> {
    // A program's output is not preceded by a banner (unless logging at info or more).
    let banner = !plan.program || tracing::enabled!(tracing::Level::INFO);
    let console = if banner {
        Console::held()
    } else {
        Console::default()
    };
    let tenant = host
        .launch(TenantConfig {
            name: "guest".to_owned(),
            kernel: Arc::clone(kernel),
            mem_size: args.mem,
            vcpus: args.vcpus,
            cmdline: plan.cmdline.clone(),
            console: Box::new(console.clone()),
            console_stderr: Box::new(std::io::stderr()),
            kernel_log: plan.kernel_log,
            console_input: plan.program.then_some(ConsoleInput::HostStdin),
            watchdog: args.watchdog,
            console_rate: (args.console_rate > 0).then_some(args.console_rate),
            cpu_limit: args.cpus,
            cpu_seconds: args.cpu_seconds,
            crash_dump: args.crash_dump.clone(),
            initrd: initrd.map(|i| Arc::clone(&i.bytes)),
            hostfs: plan.hostfs.clone(),
        })
        .context("cannot launch the guest")?;
    // The banner names the running sandbox; guest output held until then follows it.
    if banner {
        tenant.wait_started(Duration::from_secs(10));
        print_banner(args, initrd, label, tenant.sandbox_pid());
    }
    console
        .open()
        .context("cannot write the guest console to stdout")?;
    let outcome = tenant.wait();
    console
        .open()
        .context("cannot write the guest console to stdout")?;
    Ok(outcome)
}

fn print_banner(args: &RunArgs, initrd: Option<&Initrd>, label: &str, pid: u32) {
    eprintln!(
        "pvmux {}: ABI v{}, {} vCPU{}, {}, kernel {label}{}{}, sandbox pid {}",
        env!("CARGO_PKG_VERSION"),
        pvmux_hypercalls::ABI_VERSION,
        args.vcpus,
        if args.vcpus == 1 { "" } else { "s" },
        format_size(args.mem),
        args.rootfs
            .as_ref()
            .map(|d| format!(", rootfs {} (shared read-only)", d.display()))
            .unwrap_or_default(),
        initrd.map(|i| format!(", {}", i.label)).unwrap_or_default(),
        pid
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode(b"/bin/sh"), "/bin/sh");
        assert_eq!(percent_encode(b"a b%c"), "a%20b%25c");
        assert_eq!(percent_encode(b"\t\n\x7f\xff\x00~!"), "%09%0A%7F%FF%00~!");
        assert_eq!(percent_encode("é".as_bytes()), "%C3%A9");
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn command_lines() {
        let plain = ConsoleWords::default();
        let tty = ConsoleWords {
            ttys: HostTerminals {
                stdin: true,
                stdout: true,
                stderr: false,
            },
            size: Some((80, 24)),
            syscall_report: true,
        };
        let b = |c: Option<&str>, p: &[&str], root: bool, w: &ConsoleWords| {
            build_cmdline(c, &os(p), root, w).map_err(|e| e.to_string())
        };
        assert_eq!(b(None, &[], false, &plain), Ok(("selftest".into(), false)));
        assert_eq!(
            b(Some("exit=3"), &[], true, &plain),
            Ok(("exit=3".into(), false))
        );
        assert_eq!(
            b(None, &[], true, &plain),
            Ok(("console-tty=0 -- /init".into(), true))
        );
        assert_eq!(
            b(None, &["/bin/sh", "-c", "echo 100% done"], false, &tty),
            Ok((
                "console-tty=3 console-size=80x24 syscall-report -- /bin/sh -c echo%20100%25%20done"
                    .into(),
                true
            ))
        );
        assert_eq!(
            b(Some(" fs-selftest "), &["/x"], true, &plain),
            Ok(("fs-selftest console-tty=0 -- /x".into(), true))
        );
        assert!(b(Some("a -- b"), &["/x"], false, &plain)
            .unwrap_err()
            .contains("must not contain"));
        assert!(b(None, &["/x", ""], false, &plain)
            .unwrap_err()
            .contains("argument 1 after -- is empty"));
        // Non-UTF-8 arguments are encoded byte by byte.
        let raw = OsString::from(std::ffi::OsStr::from_bytes(b"\xff"));
        assert_eq!(
            build_cmdline(None, &[raw], false, &plain).unwrap().0,
            "console-tty=0 -- %FF"
        );
        // The limit counts the encoded words.
        let fits = "a".repeat(CMDLINE_MAX - "console-tty=0 -- ".len());
        assert_eq!(
            b(None, &[&fits], false, &plain).unwrap().0.len(),
            CMDLINE_MAX
        );
        let long = format!("{fits}a");
        assert!(b(None, &[&long], false, &plain)
            .unwrap_err()
            .contains("more than the limit of 2048"));
        let spaces = " ".repeat(700);
        assert!(
            b(None, &["/x", &spaces], false, &plain).is_err(),
            "3 bytes per space"
        );
        assert!(b(Some(&"x".repeat(2049)), &[], false, &plain).is_err());
    }
}
