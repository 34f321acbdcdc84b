//! The host runtime: owns the sandbox stub and launches tenants.

use std::sync::Arc;

use pvmux_hypercalls::MAX_VCPUS;

use crate::clock::ClockParams;
use crate::control::{ControlRegion, HeaderInit};
use crate::domain_builder::{self, BuildParams};
use crate::memory::validate_mem_size;
use crate::sandbox::Stub;
use crate::tenant::{Limits, TenantParts};
use crate::{GuestMemory, HostError, Tenant, TenantConfig};

/// Pages the stub maps around a shadow-paging miss by default.
pub const DEFAULT_FAULT_AROUND: u32 = 16;

/// Starts the host's one-time detection on background threads, so that it overlaps the
/// caller's own start-up work (reading and parsing a kernel image, opening a root) instead
/// of delaying the first sandbox: which jail layers this host allows (probe children,
/// [`crate::jail::layers`]) and the TSC frequency (a 2 ms calibration where CPUID does not
/// give it, [`crate::clock::tsc_khz`]). Both are computed once per process; a launch that
/// needs one before it is ready waits for it. Idempotent; [`Host::new`] calls it too.
pub fn warm_up() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let jobs: [(&str, fn()); 2] = [
            ("pvmux-warm-jail", || {
                crate::jail::layers();
            }),
            ("pvmux-warm-tsc", || {
                crate::clock::tsc_khz();
            }),
        ];
        for (name, job) in jobs {
            // Without a thread, the first launch computes it itself.
            let _ = std::thread::Builder::new().name(name.into()).spawn(job);
        }
    });
}

/// The pvmux host runtime. Launches any number of independent tenants.
#[derive(Debug)]
pub struct Host {
    stub: Arc<Stub>,
    /// The stub user sandboxes run (the same as `stub` except in tests).
    user_stub: Arc<Stub>,
}

impl Host {
    /// Creates a host that runs sandboxes from the stub executable `stub_elf`.
    pub fn new(stub_elf: &[u8]) -> Result<Self, HostError> {
        warm_up();
        let stub = Arc::new(Stub::new(stub_elf)?);
        Ok(Self {
            user_stub: Arc::clone(&stub),
            stub,
        })
    }

    /// A host whose user sandboxes run another executable (tests).
    #[cfg(test)]
    pub(crate) fn with_user_stub(stub_elf: &[u8], user_elf: &[u8]) -> Result<Self, HostError> {
        Ok(Self {
            stub: Arc::new(Stub::new(stub_elf)?),
            user_stub: Arc::new(Stub::new(user_elf)?),
        })
    }

    /// Builds a tenant from `cfg` and starts its sandbox.
    pub fn launch(&self, cfg: TenantConfig) -> Result<Tenant, HostError> {
        if cfg.vcpus == 0 || cfg.vcpus > MAX_VCPUS {
            return Err(HostError::InvalidConfig(format!(
                "{} vCPUs requested; the range is 1..={MAX_VCPUS}",
                cfg.vcpus
            )));
        }
        validate_mem_size(cfg.mem_size)?;
        let initial_balloon = crate::balloon::initial_balloon(cfg.mem_size, cfg.mem_initial)?;
        let mem = GuestMemory::new(cfg.mem_size)?;
        let clock = ClockParams::now();
        let params = BuildParams {
            nr_vcpus: cfg.vcpus,
            boot_args: &cfg.boot_args,
            clock: &clock,
            initrd: cfg.initrd.as_deref().map(Vec::as_slice),
        };
        let base = domain_builder::random_kernel_base(cfg.kernel.span());
        let layout = domain_builder::build(&mem, &cfg.kernel, &params, base)?;
        let ctl = ControlRegion::new(&HeaderInit {
            nr_vcpus: cfg.vcpus,
            mem_size: cfg.mem_size,
            entry_rip: layout.entry_rip,
            entry_rsp: layout.entry_rsp,
            entry_rdi: layout.entry_rdi,
            page_table_root: layout.page_table_root,
            tsc_base: clock.tsc_base,
            mono_base_ns: clock.mono_base_ns,
            clock_mult: clock.mult,
            clock_shift: clock.shift,
            fault_around_pages: DEFAULT_FAULT_AROUND,
            // The trusted in-process mode is the boot arguments' (`USER_ISOLATION_NONE`):
            // the stub widens its filter for it, the kernel runs init in-process.
            user_isolation: if cfg.boot_args.args().user_isolation_none() {
                pvmux_hypercalls::sandbox::user_isolation::NONE
            } else {
                pvmux_hypercalls::sandbox::user_isolation::PROCESS
            },
            ..HeaderInit::default()
        })?;
        Tenant::start(
            TenantParts {
                name: cfg.name,
                mem,
                ctl,
                kernel: cfg.kernel,
                layout,
                clock,
                console: cfg.console,
                console_stderr: cfg.console_stderr,
                kernel_log: cfg.kernel_log,
                console_input: cfg.console_input,
                console_rate: cfg.console_rate,
                fault_around_pages: DEFAULT_FAULT_AROUND,
                hostfs: cfg.hostfs,
                net: cfg.net,
                volumes: cfg.volumes,
                disks: crate::disk::Disks::with(cfg.disks)
                    .map_err(|e| HostError::InvalidConfig(e.to_string()))?,
                initial_balloon,
                limits: Limits {
                    watchdog: cfg.watchdog,
                    cpu_limit: cfg.cpu_limit,
                    cpu_seconds: cfg.cpu_seconds,
                    cpu_shares: cfg.cpu_shares,
                    crash_dump: cfg.crash_dump,
                    sandbox_user: cfg.sandbox_user,
                },
            },
            Arc::clone(&self.stub),
            Arc::clone(&self.user_stub),
        )
    }
}
