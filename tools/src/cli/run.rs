//! `pvmux run`: boot one guest and run it to completion.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pvmux_host::initramfs::{self, DEFAULT_MAX_SIZE};
use pvmux_host::{
    run_with_restarts, Host, KernelImage, RestartPolicy, TenantConfig, TenantOutcome,
};

use super::exit::EXIT_GUEST_CRASH;
use super::size::{format_size, parse_mem_size, parse_size};
use crate::images;

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

    /// Kernel command line.
    #[arg(long, value_name = "STR", default_value = "selftest")]
    pub cmdline: String,

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
    /// before boot and handed to the guest uncompressed, page aligned at the top of guest
    /// memory (BootInfo.initrd_gpa/initrd_len); at most 1 GiB uncompressed, and it must fit in
    /// --mem.
    #[arg(long, value_name = "FILE", conflicts_with = "rootfs")]
    pub initrd: Option<PathBuf>,

    /// Host directory packed on the fly into the guest's initial RAM disk (cpio newc):
    /// regular files, directories and symbolic links (not followed), owned by root, with
    /// their permissions and mtimes; sockets, FIFOs and devices are skipped.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,

    /// Write a crash dump for each crash to DIR/<tenant>-<unix time>-<n>/: report.txt,
    /// registers.json, guest-memory.bin (sparse) and console.txt. DIR is created if missing.
    #[arg(long, value_name = "DIR")]
    pub crash_dump: Option<PathBuf>,
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

/// Runs a guest; returns pvmux's exit code.
pub(crate) fn run(args: &RunArgs) -> anyhow::Result<u8> {
    let (bytes, label) = match &args.kernel {
        Some(path) => (
            std::fs::read(path)
                .with_context(|| format!("cannot read kernel image {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (images::KERNEL.to_vec(), "embedded".to_owned()),
    };
    let kernel =
        KernelImage::parse(bytes).with_context(|| format!("kernel image {label} is not usable"))?;
    let initrd = load_initrd(args)?;
    let host = Host::new(images::STUB).context("cannot prepare the sandbox stub")?;
    let kernel = Arc::new(kernel);
    let outcome = run_with_restarts(
        &args.restart,
        |_| run_once(&host, &kernel, initrd.as_ref(), args, &label),
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

/// Reads `--initrd` or packs `--rootfs` into a validated plain newc archive.
fn load_initrd(args: &RunArgs) -> anyhow::Result<Option<Initrd>> {
    let (bytes, summary, what) = if let Some(path) = &args.initrd {
        let (bytes, summary) = initramfs::load_file(path, DEFAULT_MAX_SIZE)
            .with_context(|| format!("--initrd {} is not usable", path.display()))?;
        (bytes, summary, format!("initrd {}", path.display()))
    } else if let Some(dir) = &args.rootfs {
        let bytes = initramfs::pack_dir(dir)
            .with_context(|| format!("cannot pack --rootfs {}", dir.display()))?;
        // Packing writes well-formed archives; checking anyway keeps one rule: the guest
        // only ever receives what `validate` accepted.
        let summary = initramfs::validate(&bytes)
            .with_context(|| format!("packed --rootfs {} is not a valid archive", dir.display()))?;
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
    label: &str,
) -> anyhow::Result<TenantOutcome> {
    let console = Console::held();
    let tenant = host
        .launch(TenantConfig {
            name: "guest".to_owned(),
            kernel: Arc::clone(kernel),
            mem_size: args.mem,
            vcpus: args.vcpus,
            cmdline: args.cmdline.clone(),
            console: Box::new(console.clone()),
            watchdog: args.watchdog,
            console_rate: (args.console_rate > 0).then_some(args.console_rate),
            cpu_limit: args.cpus,
            cpu_seconds: args.cpu_seconds,
            crash_dump: args.crash_dump.clone(),
            initrd: initrd.map(|i| Arc::clone(&i.bytes)),
        })
        .context("cannot launch the guest")?;
    // The banner names the running sandbox; guest output held until then follows it.
    tenant.wait_started(Duration::from_secs(10));
    eprintln!(
        "pvmux {}: ABI v{}, {} vCPU{}, {}, kernel {label}{}, sandbox pid {}",
        env!("CARGO_PKG_VERSION"),
        pvmux_hypercalls::ABI_VERSION,
        args.vcpus,
        if args.vcpus == 1 { "" } else { "s" },
        format_size(args.mem),
        initrd.map(|i| format!(", {}", i.label)).unwrap_or_default(),
        tenant.sandbox_pid()
    );
    console
        .open()
        .context("cannot write the guest console to stdout")?;
    let outcome = tenant.wait();
    console
        .open()
        .context("cannot write the guest console to stdout")?;
    Ok(outcome)
}
