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
        crate::cpu_spread::remember_home();
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

/// The layout recorded in a snapshot, checked as the domain builder would have made it for
/// a kernel of `span` bytes (a snapshot is guest-controlled data).
fn restored_layout(
    st: &crate::snapshot::format::State,
    span: u64,
) -> Result<crate::domain_builder::DomainLayout, String> {
    use pvmux_hypercalls::layout::{KERNEL_REGION_BASE, KERNEL_REGION_SIZE};
    let page = pvmux_hypercalls::PAGE_SIZE;
    let in_region =
        |v: u64| (KERNEL_REGION_BASE..KERNEL_REGION_BASE + KERNEL_REGION_SIZE).contains(&v);
    let ok = st.kernel_span == span
        && in_region(st.kernel_base)
        && in_region(st.kernel_base.saturating_add(span).saturating_sub(1))
        && st.entry_rip >= st.kernel_base
        && st.entry_rip < st.kernel_base + span
        && st.entry_rdi == domain_builder::BOOT_INFO_GVA
        && st.entry_rsp == domain_builder::BOOT_STACK_TOP_GVA - 8
        && st.page_table_root.is_multiple_of(page)
        && st.page_table_root < st.mem_size
        && st.kernel_phys.is_multiple_of(page)
        && st.kernel_phys.saturating_add(span) <= st.mem_size
        && st.pool_base.is_multiple_of(page)
        && st.pool_base < st.mem_size
        && st.first_free_gpa <= st.mem_size
        && st.initrd_gpa.saturating_add(st.initrd_len) <= st.mem_size
        && st.mem_map.len() <= pvmux_hypercalls::boot::MAX_MEM_REGIONS
        && st
            .mem_map
            .iter()
            .all(|r| r.base.checked_add(r.len).is_some_and(|e| e <= st.mem_size));
    if !ok {
        return Err("its layout is not one this host builds for this kernel".into());
    }
    Ok(crate::domain_builder::DomainLayout {
        kernel_base: st.kernel_base,
        kernel_phys: st.kernel_phys,
        kernel_span: st.kernel_span,
        entry_rip: st.entry_rip,
        entry_rsp: st.entry_rsp,
        entry_rdi: st.entry_rdi,
        page_table_root: st.page_table_root,
        first_free_gpa: st.first_free_gpa,
        mem_map: st
            .mem_map
            .iter()
            .map(|r| pvmux_hypercalls::MemRegion {
                base: r.base,
                len: r.len,
                kind: r.kind,
                _reserved: 0,
            })
            .collect(),
        initrd_gpa: st.initrd_gpa,
        initrd_len: st.initrd_len,
        pool_base: st.pool_base,
    })
}

/// The user isolation of a tenant booted with `args` (the header's
/// [`pvmux_hypercalls::sandbox::user_isolation`]): the trusted in-process mode is the boot
/// arguments' (`USER_ISOLATION_NONE`); the stub widens its filter for it, the kernel runs
/// init in-process. Always from the host's copy of the arguments, never from the
/// guest-writable header.
pub(crate) fn isolation_of(args: &pvmux_hypercalls::bootargs::BootArgsBuf) -> u32 {
    if args.args().user_isolation_none() {
        pvmux_hypercalls::sandbox::user_isolation::NONE
    } else {
        pvmux_hypercalls::sandbox::user_isolation::PROCESS
    }
}

/// Why a tenant of `cfg` can never be snapshotted (state a snapshot cannot carry), if so.
/// `--publish` alone is not a reason: a restored tenant listens again from its own
/// arguments; the connections open at the snapshot are (`TenantHandle::snapshot`). Disks
/// given later (`pvmux disk move`) are refused when the snapshot is asked for.
fn snapshot_refusal(cfg: &TenantConfig) -> Option<String> {
    if cfg.net.host {
        Some("it has host sockets (--net host), which cannot be carried".into())
    } else if !cfg.disks.is_empty() {
        Some(crate::disk::SNAPSHOT_REFUSAL.into())
    } else if !cfg.channels.is_empty() {
        Some("it has channels to other kernels (--channel): the peer's side of each ring lives in the other tenant".into())
    } else {
        None
    }
}

/// Why a tenant of `cfg` can never be upgraded (`pvmux upgrade`: host state a kernel switch
/// cannot carry), if so: nothing now. What lives in this host process stays where it is
/// across a switch: the host sockets of `--net host` (the record names them, section 41),
/// the `--publish` listeners and the connections the kernel's relays serve (section 46),
/// the channels' rings (the adopter opens their nodes again) and the disks' images (open
/// and locked in their slots; the record names them, section 47).
fn upgrade_refusal(_cfg: &TenantConfig) -> Option<String> {
    None
}

/// The control region's header of a tenant with `nr_vcpus` vCPUs and `mem_size` bytes whose
/// kernel enters as `layout` says, on `clock`.
pub(crate) fn header_init(
    nr_vcpus: u32,
    mem: &GuestMemory,
    layout: &domain_builder::DomainLayout,
    clock: &ClockParams,
    user_isolation: u32,
) -> HeaderInit {
    HeaderInit {
        nr_vcpus,
        mem_size: mem.size(),
        shared_image: mem.shared_image().map(|s| s.ranges()).unwrap_or_default(),
        entry_rip: layout.entry_rip,
        entry_rsp: layout.entry_rsp,
        entry_rdi: layout.entry_rdi,
        page_table_root: layout.page_table_root,
        tsc_base: clock.tsc_base,
        mono_base_ns: clock.mono_base_ns,
        clock_mult: clock.mult,
        clock_shift: clock.shift,
        fault_around_pages: DEFAULT_FAULT_AROUND,
        user_isolation,
        ..HeaderInit::default()
    }
}

/// The parts of a tenant built from `cfg` and its memory, control region, layout and clock:
/// one place for what [`Host::launch`] and [`Host::restore`] take from the configuration
/// (a field added to either is added to both). `InvalidConfig` if a disk cannot be opened.
fn tenant_parts(
    cfg: TenantConfig,
    mem: GuestMemory,
    ctl: ControlRegion,
    layout: domain_builder::DomainLayout,
    clock: ClockParams,
    initial_balloon: u64,
) -> Result<TenantParts, HostError> {
    let snapshot_refusal = snapshot_refusal(&cfg);
    let upgrade_refusal = upgrade_refusal(&cfg);
    let boot = crate::tenant::BootInputs {
        boot_args: cfg.boot_args.clone(),
        initrd: cfg.initrd.clone(),
    };
    Ok(TenantParts {
        boot,
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
        channels: cfg.channels,
        disks: crate::disk::Disks::with(cfg.disks)
            .map_err(|e| HostError::InvalidConfig(e.to_string()))?,
        initial_balloon,
        restored_balloon: None,
        restored_windows: Vec::new(),
        snapshot_refusal,
        upgrade_refusal,
        adoption: None,
        prelaunch: None,
        limits: Limits {
            watchdog: cfg.watchdog,
            cpu_limit: cfg.cpu_limit,
            cpu_seconds: cfg.cpu_seconds,
            cpu_shares: cfg.cpu_shares,
            crash_dump: cfg.crash_dump,
            sandbox_user: cfg.sandbox_user,
        },
    })
}

/// The pvmux host runtime. Launches any number of independent tenants.
#[derive(Debug)]
pub struct Host {
    stub: Arc<Stub>,
    /// The stub user sandboxes run (the same as `stub` except in tests).
    user_stub: Arc<Stub>,
}

impl Host {
    /// Restores the snapshot in `dir` as a new tenant of `cfg` (which must describe the same
    /// tenant: memory size, vCPUs and kernel image; its devices — console, `--rootfs`,
    /// `--volume`s — are this host process's). Everything is checked before anything
    /// starts: the manifest's magic, format and ABI versions, the kernel digest, each
    /// section's length and CRC, the layout. Returns once the sandbox runs; the guest says
    /// it resumed with `SnapshotResumed` ([`crate::TenantHandle::wait_restored`]).
    pub fn restore(
        &self,
        cfg: TenantConfig,
        dir: &std::path::Path,
    ) -> Result<Tenant, crate::snapshot::SnapshotError> {
        use crate::snapshot::{format, SnapshotError};
        let bad = |why: String| SnapshotError::Invalid(why);
        let m = format::read_manifest(dir, &crate::snapshot::kernel_digest(&cfg.kernel))?;
        let st = format::read_state(dir, format::section(&m, "state"))?;
        if st.mem_size != cfg.mem_size || st.nr_vcpus != cfg.vcpus {
            return Err(SnapshotError::Foreign(format!(
                "it has {} MiB and {} vCPUs, the restore asks for {} MiB and {}",
                st.mem_size >> 20,
                st.nr_vcpus,
                cfg.mem_size >> 20,
                cfg.vcpus
            )));
        }
        validate_mem_size(st.mem_size)?;
        if st.nr_vcpus == 0
            || st.nr_vcpus > MAX_VCPUS
            || st.parked_vcpus == 0
            || st.parked_vcpus > st.nr_vcpus
        {
            return Err(bad(format!(
                "{} vCPUs, {} parked",
                st.nr_vcpus, st.parked_vcpus
            )));
        }
        let released: Vec<(u64, u64)> = st.balloon_released.iter().map(|r| (r[0], r[1])).collect();
        if released.iter().map(|r| r.1).sum::<u64>() != st.balloon_pages {
            return Err(bad(
                "the balloon's released pages and their count disagree".into()
            ));
        }
        let layout = restored_layout(&st, cfg.kernel.span()).map_err(bad)?;
        let mem = GuestMemory::new(st.mem_size)?;
        format::read_memory(
            &mem,
            &dir.join(format::MEMORY),
            format::section(&m, "memory"),
        )?;
        // Guest time continues from the snapshot's; the wall clock is this host's.
        let now = ClockParams::now();
        let mult = if st.tsc_khz == 0 {
            now.mult
        } else {
            crate::clock::mult_for(st.tsc_khz)
        };
        let ticks = (u128::from(st.guest_ns) * u128::from(st.tsc_khz.max(1)) / 1_000_000) as u64;
        let clock = ClockParams {
            tsc_khz: st.tsc_khz.max(1),
            tsc_base: now.tsc_base.saturating_sub(ticks),
            mono_base_ns: now.mono_base_ns.saturating_sub(st.guest_ns),
            wall_base_ns: now.wall_base_ns.saturating_sub(st.guest_ns),
            mult,
            shift: crate::clock::CLOCK_SHIFT,
        };
        // The boot information: the kernel's own, with the resume flag and the new clock.
        let gpa = domain_builder::BOOT_INFO_GPA;
        let mut raw = vec![0u8; std::mem::size_of::<pvmux_hypercalls::BootInfo>()];
        mem.read(gpa, &mut raw).map_err(|e| bad(e.to_string()))?;
        let mut bi = <pvmux_hypercalls::BootInfo as zerocopy::FromBytes>::read_from_bytes(&raw)
            .map_err(|_| bad("boot information".into()))?;
        if bi.magic != pvmux_hypercalls::ABI_MAGIC
            || bi.abi_version != pvmux_hypercalls::ABI_VERSION
        {
            return Err(bad("the boot information page is not this ABI's".into()));
        }
        bi.flags = pvmux_hypercalls::boot::boot_flags::RESUME;
        bi.tsc_base = clock.tsc_base;
        bi.clock_mult = clock.mult;
        bi.clock_shift = clock.shift;
        bi.wall_clock_epoch_ns = clock.wall_base_ns;
        bi.nr_vcpus = st.nr_vcpus;
        bi.mem_size = st.mem_size;
        rand::fill(&mut bi.entropy);
        mem.write(gpa, zerocopy::IntoBytes::as_bytes(&bi))
            .map_err(|e| bad(e.to_string()))?;
        let ctl = ControlRegion::new(&header_init(
            st.nr_vcpus,
            &mem,
            &layout,
            &clock,
            isolation_of(&cfg.boot_args),
        ))?;
        let winsize = st.console_winsize;
        let mut parts = tenant_parts(cfg, mem, ctl, layout, clock, 0)
            .map_err(|e| SnapshotError::Invalid(e.to_string()))?;
        parts.restored_balloon = Some((st.balloon_target, released));
        parts.restored_windows = format::read_windows(dir, &m)?;
        let tenant = Tenant::start(parts, Arc::clone(&self.stub), Arc::clone(&self.user_stub))?;
        if winsize != 0 {
            if let Some(size) = pvmux_hypercalls::bootargs::ConsoleSize::new(
                (winsize & 0xffff) as u16,
                (winsize >> 16) as u16,
            ) {
                tenant.handle().resize_console(size);
            }
        }
        Ok(tenant)
    }

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
        self.launch_with(cfg, None)
    }

    /// A host that runs the same stubs (a scratch tenant of a running one: the hand-over's
    /// pre-flight, [`crate::upgrade::preflight`]).
    pub(crate) fn from_stubs(stub: Arc<Stub>, user_stub: Arc<Stub>) -> Self {
        Self { stub, user_stub }
    }

    /// As [`Host::launch`], offering the guest the hand-over record of `adoption`
    /// (`HandoverFetch`, `HandoverAdopted`) when there is one.
    pub(crate) fn launch_with(
        &self,
        cfg: TenantConfig,
        adoption: Option<Arc<crate::upgrade::Adoption>>,
    ) -> Result<Tenant, HostError> {
        if cfg.vcpus == 0 || cfg.vcpus > MAX_VCPUS {
            return Err(HostError::InvalidConfig(format!(
                "{} vCPUs requested; the range is 1..={MAX_VCPUS}",
                cfg.vcpus
            )));
        }
        validate_mem_size(cfg.mem_size)?;
        let initial_balloon = crate::balloon::initial_balloon(cfg.mem_size, cfg.mem_initial)?;
        let mem = GuestMemory::new(cfg.mem_size)?;
        let isolation = isolation_of(&cfg.boot_args);
        // The header without what the build gives: the sandbox starts (namespaces, exec,
        // its threads and filter) while this thread builds the domain, and waits for the
        // rest (`entry_held`).
        let ctl = ControlRegion::new(&HeaderInit {
            nr_vcpus: cfg.vcpus,
            mem_size: cfg.mem_size,
            fault_around_pages: DEFAULT_FAULT_AROUND,
            user_isolation: isolation,
            entry_held: true,
            ..HeaderInit::default()
        })?;
        let namespaces = Arc::new(crate::jail::SharedNamespaces::default());
        let jail = crate::jail::ChildJail::for_kernel_sandbox(
            cfg.sandbox_user,
            cfg.cpu_seconds,
            &namespaces,
            cfg.mem_size,
        );
        let params = BuildParams {
            nr_vcpus: cfg.vcpus,
            boot_args: &cfg.boot_args,
            clock: None,
            initrd: cfg.initrd.as_deref().map(Vec::as_slice),
        };
        let base = domain_builder::random_kernel_base(cfg.kernel.span());
        // The kernel image's file, if its read-only pages are mapped from it (the build
        // leaves them out of guest memory then: `KernelImage::shared_image_at`).
        let image_fd = cfg
            .kernel
            .file()
            .map(|f| std::os::fd::AsRawFd::as_raw_fd(&f.file));
        let spawn = crate::tenant::Prelaunch::start(
            &cfg.name,
            Arc::clone(&self.stub),
            [mem.raw_fd(), ctl.raw_fd()],
            image_fd,
            jail,
            namespaces,
        )?;
        let layout = domain_builder::build(&mem, &cfg.kernel, &params, base);
        // Waited for whatever the build gave (the spawn uses `mem` and `ctl`); a failure of
        // either kills and reaps a sandbox already started.
        let prelaunch = spawn.wait()?;
        let layout = layout?;
        // The clock last: the first launch's TSC calibration ([`warm_up`]) overlaps the build.
        let clock = ClockParams::now();
        domain_builder::write_clock(&mem, &clock)?;
        let entry = header_init(cfg.vcpus, &mem, &layout, &clock, isolation);
        // Everything that can still refuse the configuration (a disk that does not open)
        // before the guest may run.
        let mut parts = tenant_parts(cfg, mem, ctl, layout, clock, initial_balloon)?;
        parts.ctl.release_entry(&entry);
        parts.adoption = adoption;
        parts.prelaunch = Some(prelaunch);
        Tenant::start(parts, Arc::clone(&self.stub), Arc::clone(&self.user_stub))
    }
}
