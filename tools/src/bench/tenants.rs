//! Launching benchmark tenants and waiting for them with a timeout.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pvmux_host::clock::monotonic_ns;
use pvmux_host::{Host, HostError, KernelImage, Tenant, TenantConfig, TenantOutcome, TenantState};
use pvmux_hypercalls::bootargs::{BootArgsBuf, Command, Options};

/// Guest memory of the benchmark guests (256 MiB, as when the figures were first taken;
/// `pvmux run` defaults to 1 GiB, which changes none of them: memory is used on first touch).
pub const GUEST_MEM: u64 = 256 << 20;
/// vCPUs of every benchmark guest (the `pvmux run` default).
pub const GUEST_VCPUS: u32 = 2;
/// How often [`wait`] looks at the tenant's state.
const POLL: Duration = Duration::from_millis(1);

/// A launched tenant and when its launch started.
pub struct Launched {
    /// The tenant.
    pub tenant: Tenant,
    /// CLOCK_MONOTONIC (ns) just before [`Host::launch`] was called.
    pub start_mono_ns: u64,
}

/// Boot arguments that run `commands`, with no options and no program.
pub fn commands(commands: &[Command<'_>]) -> Result<BootArgsBuf, String> {
    BootArgsBuf::new(&Options::default(), commands.iter().copied(), [b""; 0])
        .map_err(|e| format!("cannot encode the boot arguments: {e}"))
}

/// Launches the kernel with `boot_args` and [`GUEST_VCPUS`] vCPUs.
pub fn launch(
    host: &Host,
    kernel: &Arc<KernelImage>,
    name: &str,
    mem_size: u64,
    boot_args: BootArgsBuf,
    console: Box<dyn Write + Send>,
) -> Result<Launched, HostError> {
    launch_with_initrd(host, kernel, name, mem_size, boot_args, console, None)
}

/// [`launch`] with an initial RAM disk (a validated plain newc archive).
pub fn launch_with_initrd(
    host: &Host,
    kernel: &Arc<KernelImage>,
    name: &str,
    mem_size: u64,
    boot_args: BootArgsBuf,
    console: Box<dyn Write + Send>,
    initrd: Option<Arc<Vec<u8>>>,
) -> Result<Launched, HostError> {
    launch_with_share(
        host, kernel, name, mem_size, boot_args, console, initrd, None,
    )
}

/// [`launch_with_initrd`] with a host share too (`--rootfs`; the boot arguments must have
/// the `hostfs` option for the guest to use it).
#[allow(clippy::too_many_arguments)]
pub fn launch_with_share(
    host: &Host,
    kernel: &Arc<KernelImage>,
    name: &str,
    mem_size: u64,
    boot_args: BootArgsBuf,
    console: Box<dyn Write + Send>,
    initrd: Option<Arc<Vec<u8>>>,
    hostfs: Option<Arc<pvmux_host::hostfs::HostFs>>,
) -> Result<Launched, HostError> {
    launch_with_channels(
        host,
        kernel,
        name,
        mem_size,
        boot_args,
        console,
        initrd,
        hostfs,
        Vec::new(),
    )
}

/// [`launch_with_share`] with channels to other tenants (their boot records must be in
/// `boot_args`).
#[allow(clippy::too_many_arguments)]
pub fn launch_with_channels(
    host: &Host,
    kernel: &Arc<KernelImage>,
    name: &str,
    mem_size: u64,
    boot_args: BootArgsBuf,
    console: Box<dyn Write + Send>,
    initrd: Option<Arc<Vec<u8>>>,
    hostfs: Option<Arc<pvmux_host::hostfs::HostFs>>,
    channels: Vec<Arc<pvmux_host::channel::ChannelEnd>>,
) -> Result<Launched, HostError> {
    let cfg = TenantConfig {
        initrd,
        hostfs,
        channels,
        ..TenantConfig::new(
            name,
            Arc::clone(kernel),
            mem_size,
            GUEST_VCPUS,
            boot_args,
            console,
        )
    };
    let start_mono_ns = monotonic_ns();
    let tenant = host.launch(cfg)?;
    Ok(Launched {
        tenant,
        start_mono_ns,
    })
}

/// Waits for the tenant to end, killing it after `timeout`. Returns its outcome and, unless it
/// timed out, CLOCK_MONOTONIC (ns) when its end was first seen (polled every millisecond:
/// the guest's shutdown hypercall sets the state before the sandbox is reaped).
pub fn wait(tenant: Tenant, timeout: Duration) -> (TenantOutcome, Option<u64>) {
    let deadline = Instant::now() + timeout;
    let ended = loop {
        if !matches!(tenant.state(), TenantState::Created | TenantState::Running) {
            break Some(monotonic_ns());
        }
        if Instant::now() >= deadline {
            tenant.kill();
            break None;
        }
        std::thread::sleep(POLL);
    };
    (tenant.wait(), ended)
}
