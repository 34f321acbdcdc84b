//! `pvmux run`: boot one guest and run it to completion.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pvmux_host::{Host, KernelImage, TenantConfig, TenantOutcome};

use super::exit::EXIT_GUEST_CRASH;
use super::size::{format_size, parse_mem_size};
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
    let host = Host::new(images::STUB).context("cannot prepare the sandbox stub")?;
    let console = Console::held();
    let tenant = host
        .launch(TenantConfig {
            name: "guest".to_owned(),
            kernel: Arc::new(kernel),
            mem_size: args.mem,
            vcpus: args.vcpus,
            cmdline: args.cmdline.clone(),
            console: Box::new(console.clone()),
        })
        .context("cannot launch the guest")?;
    // The banner names the running sandbox; guest output held until then follows it.
    tenant.wait_started(Duration::from_secs(10));
    eprintln!(
        "pvmux {}: ABI v{}, {} vCPU{}, {}, kernel {label}, sandbox pid {}",
        env!("CARGO_PKG_VERSION"),
        pvmux_hypercalls::ABI_VERSION,
        args.vcpus,
        if args.vcpus == 1 { "" } else { "s" },
        format_size(args.mem),
        tenant.sandbox_pid()
    );
    console
        .open()
        .context("cannot write the guest console to stdout")?;
    let outcome = tenant.wait();
    console
        .open()
        .context("cannot write the guest console to stdout")?;
    match outcome {
        TenantOutcome::Exited(code) => Ok(u8::try_from(code & 0xff).unwrap_or(u8::MAX)),
        TenantOutcome::Crashed(report) => {
            eprint!("{report}");
            Ok(EXIT_GUEST_CRASH)
        }
    }
}
