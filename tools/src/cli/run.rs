//! `pvmux run`: boot one guest and run it to completion.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

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

/// The guest console: stdout, flushed after every write so output appears promptly.
struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut out = std::io::stdout().lock();
        out.write_all(buf)?;
        out.flush()?;
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
    let tenant = host
        .launch(TenantConfig {
            name: "guest".to_owned(),
            kernel: Arc::new(kernel),
            mem_size: args.mem,
            vcpus: args.vcpus,
            cmdline: args.cmdline.clone(),
            console: Box::new(Stdout),
        })
        .context("cannot launch the guest")?;
    eprintln!(
        "pvmux {}: ABI v{}, {} vCPU{}, {}, kernel {label}, sandbox pid {}",
        env!("CARGO_PKG_VERSION"),
        pvmux_hypercalls::ABI_VERSION,
        args.vcpus,
        if args.vcpus == 1 { "" } else { "s" },
        format_size(args.mem),
        tenant.sandbox_pid()
    );
    match tenant.wait() {
        TenantOutcome::Exited(code) => Ok(u8::try_from(code & 0xff).unwrap_or(u8::MAX)),
        TenantOutcome::Crashed(report) => {
            eprint!("{report}");
            Ok(EXIT_GUEST_CRASH)
        }
    }
}
