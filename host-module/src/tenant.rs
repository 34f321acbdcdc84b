//! Tenants: one guest kernel in one sandbox process, its vCPU service threads and its
//! lifecycle (Created -> Running -> Exited | Crashed).

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pvmux_hypercalls::resources::GuestStats;
use pvmux_hypercalls::sandbox::{STUB_EXIT_CRASH, STUB_EXIT_SETUP};
use pvmux_hypercalls::{BootArgsBuf, HcError, TrapFrame};

use crate::clock::ClockParams;
use crate::console::{Console, KernelLog, Stream};
use crate::console_input::{ConsoleInput, InputBuffer};
use crate::control::ControlRegion;
use crate::crash::{CrashCause, CrashReport, Symbolizer};
use crate::domain_builder::DomainLayout;
use crate::hypercall::{handle, HcAction, HcEnv};
use crate::jail::{ChildJail, SandboxUser};
use crate::program_end::ProgramDeath;
use crate::sandbox::{self, SandboxExit, Stub};
use crate::space::{SpaceConfig, Spaces};
use crate::vcpu::{Vcpu, VcpuExit};
use crate::watchdog::{Action as WatchAction, VcpuSnapshot, Watchdog};
use crate::{GuestMemory, HostError, KernelImage};

/// What to run in a tenant.
pub struct TenantConfig {
    /// Name used in logs and crash reports.
    pub name: String,
    /// The kernel image.
    pub kernel: Arc<KernelImage>,
    /// Guest memory size (a multiple of 2 MiB, at least 16 MiB): the tenant's maximum.
    pub mem_size: u64,
    /// The memory the guest starts with, if less than `mem_size` (`pvmux run --mem-max`):
    /// the rest starts in its balloon, and [`TenantHandle::set_memory`] grows it up to
    /// `mem_size`. At least [`crate::balloon::min_mem_size`] of `mem_size`, whole pages.
    pub mem_initial: Option<u64>,
    /// Number of vCPUs (1..=`MAX_VCPUS`).
    pub vcpus: u32,
    /// The boot arguments: what the kernel is asked to do (options, commands, the init
    /// program). Build them typed ([`BootArgsBuf::new`]) or from the words of a command line
    /// ([`BootArgsBuf::from_words`]).
    pub boot_args: BootArgsBuf,
    /// Where the guest console's standard output goes (`ConsoleWrite` stream 0).
    pub console: Box<dyn Write + Send>,
    /// Where the guest console's standard error goes (stream 2); default: the host's stderr.
    pub console_stderr: Box<dyn Write + Send>,
    /// Where the kernel log (stream 1) goes; default: with standard output.
    pub kernel_log: KernelLog,
    /// Console input for `ConsoleRead`; `None`: the guest sees the end of input at once.
    pub console_input: Option<ConsoleInput>,
    /// Liveness watchdog: a tenant with a vCPU that takes no events for this long is
    /// killed and reported as crashed (see [`crate::watchdog`]); `None` disables it.
    pub watchdog: Option<Duration>,
    /// Console rate limit in bytes per second (burst: one second's worth); excess output is
    /// dropped and counted. `None` = unlimited.
    pub console_rate: Option<u64>,
    /// CPU rate limit of the whole tenant in CPUs (e.g. 0.5): the tenant cgroup's CFS
    /// quota where the host allows one, and host work on its behalf throttled to it (see
    /// [`crate::limits`]); `None` = unlimited.
    pub cpu_limit: Option<f64>,
    /// CPU-time budget of the whole tenant in seconds (all its sandboxes and host work on its
    /// behalf, see [`crate::limits`]); `None` = unlimited.
    pub cpu_seconds: Option<u64>,
    /// Relative CPU weight of the whole tenant in cgroup v1 `cpu.shares` units (1024 = one
    /// thread's default, 2..=262144): the tenant cgroup's `cpu.shares`, or on cgroup v2 its
    /// `cpu.weight` converted as runc converts it, where the host has a `cpu` controller
    /// (see [`crate::limits`]); `None` = the weight follows the vCPU count.
    pub cpu_shares: Option<u64>,
    /// Directory for crash dumps (see [`crate::dump`]); `None` = no dumps.
    pub crash_dump: Option<PathBuf>,
    /// Initial RAM disk: a plain cpio newc archive, already checked with
    /// [`crate::initramfs::validate`] (see [`crate::initramfs::prepare`]); placed at the top
    /// of guest memory. `None` = no initial RAM disk.
    pub initrd: Option<Arc<Vec<u8>>>,
    /// Host directory shared read-only with the guest (`--rootfs`, see [`crate::hostfs`]);
    /// the guest uses it when its boot arguments have the `hostfs` option. `None` = no share.
    pub hostfs: Option<Arc<crate::hostfs::HostFs>>,
    /// Host directories the guest may write (`--volume`, see [`crate::volume`]), by volume
    /// id (the index); the boot arguments' `VOLUME` records say where the guest mounts them.
    pub volumes: Vec<Arc<crate::volume::Volume>>,
    /// Block devices given at start (`--disk`, see [`crate::disk`]), in slot order; the
    /// guest mounts each at boot.
    pub disks: Vec<crate::disk::Disk>,
    /// The uid and gid the tenant's sandboxes run as when pvmux runs as root (else ignored:
    /// they keep pvmux's own uid); default [`SandboxUser::DEFAULT`] (see [`crate::jail`]).
    pub sandbox_user: SandboxUser,
    /// Host networking (`--net host`, `--publish`, see [`crate::net`]); default: none (the
    /// guest has only its own loopback).
    pub net: crate::net::NetConfig,
    /// Channels to other tenants (`--channel`, see [`crate::channel`]), by channel index
    /// (the order of the boot arguments' `CHANNEL` records).
    pub channels: Vec<Arc<crate::channel::ChannelEnd>>,
}

impl TenantConfig {
    /// A configuration with the given essentials and no limits, watchdog or dumps.
    pub fn new(
        name: impl Into<String>,
        kernel: Arc<KernelImage>,
        mem_size: u64,
        vcpus: u32,
        boot_args: BootArgsBuf,
        console: Box<dyn Write + Send>,
    ) -> Self {
        Self {
            name: name.into(),
            kernel,
            mem_size,
            mem_initial: None,
            vcpus,
            boot_args,
            console,
            console_stderr: Box::new(std::io::stderr()),
            kernel_log: KernelLog::Stdout,
            console_input: None,
            watchdog: None,
            console_rate: None,
            cpu_limit: None,
            cpu_seconds: None,
            cpu_shares: None,
            crash_dump: None,
            initrd: None,
            hostfs: None,
            volumes: Vec::new(),
            disks: Vec::new(),
            sandbox_user: SandboxUser::DEFAULT,
            net: crate::net::NetConfig::default(),
            channels: Vec::new(),
        }
    }
}

impl std::fmt::Debug for TenantConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantConfig")
            .field("name", &self.name)
            .field("mem_size", &self.mem_size)
            .field("mem_initial", &self.mem_initial)
            .field("vcpus", &self.vcpus)
            .field("boot_args", &self.boot_args)
            .field("kernel_log", &self.kernel_log)
            .field("console_input", &self.console_input)
            .field("watchdog", &self.watchdog)
            .field("console_rate", &self.console_rate)
            .field("cpu_limit", &self.cpu_limit)
            .field("cpu_seconds", &self.cpu_seconds)
            .field("cpu_shares", &self.cpu_shares)
            .field("crash_dump", &self.crash_dump)
            .field("initrd_len", &self.initrd.as_ref().map(|i| i.len()))
            .field("hostfs", &self.hostfs.as_ref().map(|h| h.path()))
            .field("volumes", &self.volumes.len())
            .field("disks", &self.disks.len())
            .field("sandbox_user", &self.sandbox_user)
            .field("net", &self.net)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

/// Lifecycle state of a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TenantState {
    /// Built, sandbox not started yet.
    Created,
    /// The sandbox is running.
    Running,
    /// The guest shut down with this exit code.
    Exited(i32),
    /// The tenant crashed (see [`TenantOutcome::Crashed`]).
    Crashed,
}

/// How a tenant ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantOutcome {
    /// The guest shut down with this exit code (0..=255).
    Exited(i32),
    /// The guest shut down because the program it ran as init was killed — by a signal or
    /// for memory — and said how (its exit code is [`ProgramDeath::code`], 128 + the signal).
    ProgramKilled(Box<ProgramDeath>),
    /// The tenant crashed.
    Crashed(Box<CrashReport>),
}

impl TenantOutcome {
    /// The guest's exit code, unless the tenant crashed.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Self::Exited(c) => Some(*c),
            Self::ProgramKilled(d) => Some(d.code),
            Self::Crashed(_) => None,
        }
    }
}

/// Start-up timestamps reported by the stub, in ns of guest time (since launch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootTimes {
    /// When the stub started executing.
    pub stub_start_ns: Option<u64>,
    /// When vCPU 0 entered the guest.
    pub first_insn_ns: Option<u64>,
}

/// State shared by the tenant handle, its monitor thread and its vCPU threads.
struct Shared {
    name: String,
    mem: Arc<GuestMemory>,
    ctl: Arc<ControlRegion>,
    /// The kernel that runs now and where it was built (a hand-over replaces both).
    gen: std::sync::RwLock<KernelGen>,
    /// What a kernel of this tenant is built from (a hand-over builds the next one).
    boot: BootInputs,
    clock: ClockParams,
    console: Console,
    stop: Arc<AtomicBool>,
    killed_by_host: AtomicBool,
    /// The running kernel sandbox's pidfd (replaced by a hand-over).
    pidfd: Mutex<Option<Arc<OwnedFd>>>,
    status: Mutex<(TenantState, Option<TenantOutcome>)>,
    /// vCPU that is reporting a guest-initiated end, to keep the first one.
    ending: AtomicU32,
    /// Per vCPU: the host is serving one of its hypercalls (host-owned; read by the watchdog).
    in_host: Vec<AtomicBool>,
    /// Per vCPU: hypercalls its service thread served (host-counted; `pvmux stats`).
    hypercalls: Vec<AtomicU64>,
    limits: Limits,
    /// The guest's user sandboxes.
    spaces: Spaces,
    /// The namespaces all of the tenant's sandboxes share (`crate::jail`).
    namespaces: Arc<crate::jail::SharedNamespaces>,
    /// Console input waiting for `ConsoleRead`.
    input: Arc<InputBuffer>,
    /// Signals for the guest's init not yet taken by `SignalTake` (bit `n - 1`: signal `n`).
    host_signals: AtomicU64,
    /// The console's size as last set by [`TenantHandle::resize_console`], `(rows << 16) |
    /// cols` (0: never set).
    console_winsize: AtomicU32,
    /// The kernel sandbox's pid while it may be signalled (it has not exited yet, so its pid
    /// cannot be reused); threads other than the monitor signal only under this lock.
    signal_gate: Mutex<Option<u32>>,
    /// The host directory shared with `--rootfs`.
    hostfs: Option<Arc<crate::hostfs::HostFs>>,
    /// Its host file windows (with a share), [`crate::window`].
    windows: Option<Arc<crate::window::Windows>>,
    /// The `--volume` directories, by volume id.
    volumes: Vec<Arc<crate::volume::Volume>>,
    /// Its block devices (`crate::disk`).
    disks: crate::disk::Disks,
    /// The tenant's CPU account (set by the monitor before the vCPU threads start).
    cpu: OnceLock<Arc<crate::limits::budget::TenantCpu>>,
    /// Host networking, when the tenant has some.
    net: OnceLock<Arc<crate::net::HostNet>>,
    /// Channels to other tenants, by index.
    channels: Vec<Arc<crate::channel::ChannelEnd>>,
    /// Exec sessions (`Tenant::exec`).
    exec: Arc<crate::exec::ExecTable>,
    /// Whether the tenant is paused (`crate::pause`); the lock orders pauses and resumes.
    pause: Mutex<bool>,
    /// The same, for the watchdog (which does not look while the tenant is paused).
    paused: AtomicBool,
    /// The guest's figures and task limit (`crate::resources`).
    resources: crate::resources::Resources,
    /// The guest's balloon (`crate::balloon`, `pvmux mem`).
    balloon: crate::balloon::Balloon,
    /// The kernel hand-over exchange (`crate::upgrade`, `pvmux upgrade`).
    handover: crate::upgrade::Handover,
    /// The limits in force while the sandbox runs (set and cleared by the monitor thread).
    live_limits: Mutex<Option<Arc<crate::limits::TenantLimits>>>,
    /// Snapshots: the park rendezvous (`crate::snapshot`).
    parking: crate::snapshot::Parking,
    /// Why this tenant cannot be snapshotted whatever it does, if so.
    snapshot_refusal: Option<String>,
    /// Why an upgrade can never be taken (host state a switch cannot carry), if so.
    upgrade_refusal: Option<String>,
    /// The hand-over record offered to its kernel, if any (`HandoverFetch`).
    adoption: Mutex<Option<Arc<crate::upgrade::Adoption>>>,
    /// A hand-over's next kernel, asked for and not yet started (`crate::upgrade`).
    switch: Mutex<Option<crate::upgrade::Next>>,
    /// The vCPU service threads of the running kernel, and the flag that stops them.
    vcpu_threads: Mutex<Vec<JoinHandle<()>>>,
    vcpu_stop: Mutex<Arc<AtomicBool>>,
    /// An upgrade (`TenantHandle::upgrade`) is under way: pauses are refused meanwhile.
    upgrading: AtomicBool,
    /// The stubs its sandboxes run (a hand-over's pre-flight runs the same).
    stubs: (Arc<Stub>, Arc<Stub>),
}

/// The running kernel's image and layout.
#[derive(Clone, Debug)]
struct KernelGen {
    kernel: Arc<KernelImage>,
    layout: DomainLayout,
}

/// What the domain builder needs to build a kernel of this tenant again.
#[derive(Clone, Debug)]
pub(crate) struct BootInputs {
    pub(crate) boot_args: BootArgsBuf,
    pub(crate) initrd: Option<Arc<Vec<u8>>>,
}

/// The options of [`TenantConfig`] the monitor thread applies.
#[derive(Clone, Debug, Default)]
pub(crate) struct Limits {
    pub(crate) watchdog: Option<Duration>,
    pub(crate) cpu_limit: Option<f64>,
    pub(crate) cpu_seconds: Option<u64>,
    pub(crate) cpu_shares: Option<u64>,
    pub(crate) crash_dump: Option<PathBuf>,
    pub(crate) sandbox_user: SandboxUser,
}

impl Shared {
    /// The limits in force while the sandbox runs. The monitor thread sets them up once the
    /// guest has started (moving the sandbox into the tenant cgroup waits for an RCU grace
    /// period, tens of milliseconds on a loaded host): a query in that window (`pvmux
    /// events --stats` right after `start`) waits for them, at most [`LIMITS_WAIT`], where
    /// it used to find none and answer "container not running".
    fn limits_in_force(&self) -> Option<Arc<crate::limits::TenantLimits>> {
        let deadline = Instant::now() + LIMITS_WAIT;
        loop {
            if let Some(l) = self
                .live_limits
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                return Some(l);
            }
            let running = self
                .signal_gate
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some();
            if !running || self.stop.load(SeqCst) || Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Records the outcome unless one is already recorded.
    fn finish(&self, outcome: TenantOutcome) {
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if st.1.is_some() {
            return;
        }
        st.0 = match &outcome {
            TenantOutcome::Exited(c) => TenantState::Exited(*c),
            TenantOutcome::ProgramKilled(d) => TenantState::Exited(d.code),
            TenantOutcome::Crashed(_) => TenantState::Crashed,
        };
        match &outcome {
            TenantOutcome::Exited(c) => tracing::info!(tenant = %self.name, code = c, "exited"),
            TenantOutcome::ProgramKilled(d) => tracing::info!(
                tenant = %self.name,
                code = d.code,
                program = %d.program,
                "exited: {d}"
            ),
            TenantOutcome::Crashed(r) => {
                tracing::info!(tenant = %self.name, cause = %r.cause, "crashed")
            }
        }
        st.1 = Some(outcome);
        drop(st);
        // The peers of its channels read the end of the stream; their sends fail.
        for c in &self.channels {
            c.close();
        }
    }

    fn has_outcome(&self) -> bool {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .is_some()
    }

    fn kill(&self) {
        if let Some(fd) = self.pidfd() {
            sandbox::kill(&fd);
        }
    }

    /// The running kernel sandbox's pidfd.
    fn pidfd(&self) -> Option<Arc<OwnedFd>> {
        self.pidfd.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The running kernel's image and layout.
    fn gen(&self) -> KernelGen {
        self.gen.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `f` with the symbolizer of the running kernel.
    fn with_symbolizer<R>(&self, f: impl FnOnce(Symbolizer<'_>) -> R) -> R {
        let g = self.gen();
        f(Symbolizer {
            kernel: &g.kernel,
            kernel_base: g.layout.kernel_base,
            mem: &self.mem,
            root: g.layout.page_table_root,
        })
    }

    /// Whether the running kernel was booted to adopt a hand-over record and has not said it
    /// adopted it: its end is then not the tenant's (the monitor falls back).
    fn adopting(&self) -> bool {
        self.adoption
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|a| a.is_switch() && !a.adopted_ok())
    }

    fn report(&self, cause: CrashCause) -> CrashReport {
        let mut r = CrashReport::new(&self.name, cause);
        r.console_tail = self.console.tail();
        r
    }

    /// Crash report from the records the stub left in the vCPU pages.
    fn stub_crash_report(&self) -> CrashReport {
        for i in 0..self.ctl.nr_vcpus() {
            let Some(v) = self.ctl.vcpu(i) else { continue };
            let c = v.read_crash();
            if c.reason == 0 {
                continue;
            }
            let mut r = self.report(CrashCause::Stub {
                reason: c.reason,
                vector: c.vector,
                error_code: c.error_code,
                fault_addr: c.fault_addr,
                detail: c.detail,
            });
            r.vcpu = Some(i);
            r.regs = Some(c.regs);
            self.with_symbolizer(|sym| {
                r.backtrace = sym.backtrace(c.regs.rip, c.regs.rbp);
                for (what, addr) in [("detail", c.detail), ("fault address", c.fault_addr)] {
                    if let Some(name) = sym.symbol(addr) {
                        r.notes.push(format!("{what} {addr:#x} is <{name}>"));
                    }
                }
            });
            return r;
        }
        self.report(CrashCause::CrashWithoutRecord)
    }

    /// Handles the end of the sandbox process.
    fn sandbox_ended(&self, exit: SandboxExit) {
        tracing::debug!(tenant = %self.name, ?exit, "sandbox ended");
        if self.has_outcome() {
            return;
        }
        let cause = match exit {
            _ if self.killed_by_host.load(SeqCst) => CrashCause::KilledByHost,
            SandboxExit::Exited(STUB_EXIT_CRASH) => {
                let r = self.stub_crash_report();
                self.finish(TenantOutcome::Crashed(Box::new(r)));
                return;
            }
            SandboxExit::Exited(STUB_EXIT_SETUP) => CrashCause::SetupFailed {
                step: self.ctl.stub_step().load(Relaxed),
                errno: self.ctl.stub_error().load(Relaxed),
            },
            SandboxExit::Exited(status) => CrashCause::UnexpectedExit { status },
            SandboxExit::Signaled(signo) => CrashCause::Signal { signo },
        };
        self.finish(TenantOutcome::Crashed(Box::new(self.report(cause))));
    }

    /// Console input arrived (or ended): raises `pending::INPUT` on vCPU 0 and wakes it, the
    /// way the watchdog's heartbeat does, unless the sandbox has already exited.
    fn raise_input(&self) {
        self.raise(pvmux_hypercalls::vcpu::pending::INPUT);
    }

    /// The exec sessions in progress, which neither a snapshot nor a switch carries (their
    /// streams are host connections), if any.
    fn exec_in_progress(&self) -> Option<String> {
        let live = self.exec.live();
        (live > 0).then(|| {
            format!("{live} exec session(s) in progress (their host streams cannot be carried)")
        })
    }

    /// Raises pending `bit` on vCPU 0 and wakes it, unless the sandbox has already exited.
    fn raise(&self, bit: u32) {
        let gate = self.signal_gate.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(pid), Some(v)) = (*gate, self.ctl.vcpu(0)) else {
            return;
        };
        if v.pending.fetch_or(bit, SeqCst) & bit == 0 {
            crate::watchdog::wake_vcpu(v, pid);
        }
    }

    /// Starts the vCPU service threads of the kernel about to run (with a stop flag of
    /// their own, which [`Shared::stop_vcpus`] sets).
    fn spawn_vcpus(self: &Arc<Self>) -> Result<(), HostError> {
        let stop = Arc::new(AtomicBool::new(false));
        *self.vcpu_stop.lock().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&stop);
        let mut threads = self.vcpu_threads.lock().unwrap_or_else(|e| e.into_inner());
        for i in 0..self.ctl.nr_vcpus() {
            let s = Arc::clone(self);
            let stop = Arc::clone(&stop);
            let h = std::thread::Builder::new()
                .name(format!("pvmux-vcpu{i}-{}", self.name))
                .spawn(move || s.vcpu_thread(i, stop))
                .map_err(|e| HostError::os("spawning a vCPU thread", e))?;
            threads.push(h);
        }
        Ok(())
    }

    /// Stops the vCPU service threads and waits for them.
    fn stop_vcpus(&self) {
        self.vcpu_stop
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .store(true, SeqCst);
        for i in 0..self.ctl.nr_vcpus() {
            Vcpu::wake(&self.ctl, i);
        }
        let threads =
            std::mem::take(&mut *self.vcpu_threads.lock().unwrap_or_else(|e| e.into_inner()));
        for h in threads {
            let _ = h.join();
        }
    }

    /// One vCPU service thread.
    fn vcpu_thread(self: Arc<Self>, index: u32, stop: Arc<AtomicBool>) {
        let Some(mut vcpu) = Vcpu::new(Arc::clone(&self.ctl), index, stop) else {
            return;
        };
        // This thread serves only this tenant: its CPU time (waiting for and serving
        // hypercalls: console, hostfs reads, spawning user sandboxes) is the tenant's.
        // The account exists once the monitor has set the limits, which it does while the
        // guest boots: until then `None`, and the time meanwhile is charged at the first
        // charge after.
        let mut account: Option<Option<Arc<crate::limits::budget::TenantCpu>>> = None;
        let mut meter = crate::limits::budget::HostMeter::start();
        loop {
            let (nr, args) = match vcpu.run() {
                VcpuExit::Hypercall { nr, args } => (nr, args),
                _ => return,
            };
            if account.is_none() {
                account = self
                    .cpu
                    .get()
                    .map(|c| Some(Arc::clone(c)).filter(|c| c.active()));
            }
            let cpu = account.as_ref().and_then(|c| c.as_ref());
            let flag = &self.in_host[index as usize];
            flag.store(true, SeqCst);
            self.hypercalls[index as usize].fetch_add(1, Relaxed);
            if let Some(cpu) = &cpu {
                // Over its rate, the tenant waits for its next request to be served.
                meter.charge(cpu);
                cpu.throttle(&self.stop);
            }
            let action = match pvmux_hypercalls::Hypercall::from_raw(
                (nr & pvmux_hypercalls::hypercall::HC_NR_MASK) as u32,
            ) {
                Some(pvmux_hypercalls::Hypercall::SnapshotPark) => {
                    HcAction::Return(self.parking.park(args[0], self.ctl.nr_vcpus(), &self.stop))
                }
                Some(pvmux_hypercalls::Hypercall::SnapshotResumed) => {
                    self.parking.resumed();
                    HcAction::Return(0)
                }
                _ => handle(&self.mem, &*self, nr, args),
            };
            if let Some(cpu) = &cpu {
                meter.charge(cpu);
                if cpu.check_budget() {
                    flag.store(false, SeqCst);
                    self.end_cpu_budget(cpu);
                    return;
                }
            }
            flag.store(false, SeqCst);
            match action {
                HcAction::Return(ret) => vcpu.complete(ret),
                HcAction::Shutdown(code, death) => {
                    self.end_from_guest(match death {
                        Some(d) => TenantOutcome::ProgramKilled(d),
                        None => TenantOutcome::Exited(code),
                    });
                    return;
                }
                HcAction::Panic(message) => {
                    let s = vcpu.shared();
                    let regs = TrapFrame {
                        rip: s.hc_caller_rip.load(Relaxed),
                        rsp: s.hc_caller_rsp.load(Relaxed),
                        rbp: s.hc_caller_rbp.load(Relaxed),
                        ..Default::default()
                    };
                    let mut r = self.report(CrashCause::GuestPanic { message });
                    r.vcpu = Some(index);
                    r.regs = Some(regs);
                    r.backtrace = self.with_symbolizer(|sym| sym.backtrace(regs.rip, regs.rbp));
                    self.end_from_guest(TenantOutcome::Crashed(Box::new(r)));
                    return;
                }
            }
        }
    }

    /// The watchdog's crash report for stuck vCPU `index` (what the host can see of it).
    fn watchdog_report(&self, index: u32, snap: &VcpuSnapshot, since: Duration) -> CrashReport {
        let timeout = self.limits.watchdog.unwrap_or(since);
        let mut r = self.report(CrashCause::Watchdog {
            vcpu: index,
            timeout,
        });
        r.vcpu = Some(index);
        r.notes.push(format!(
            "heartbeat pending for {}; irq_enabled {}, halted {}, pending bits {:#x} ({})",
            crate::watchdog::format_secs(Duration::from_millis(since.as_millis() as u64)),
            snap.irq_enabled,
            snap.halted,
            snap.pending,
            pending_names(snap.pending)
        ));
        r.notes
            .push(format!("events taken so far: {}", snap.events));
        let sym = self.with_symbolizer(|sym| sym.symbol(snap.hc_caller_rip));
        r.notes.push(format!(
            "last hypercall caller rip {:#x}{}",
            snap.hc_caller_rip,
            sym.map(|s| format!(" <{s}>")).unwrap_or_default()
        ));
        if snap.hc_caller_rip != 0 {
            r.backtrace =
                self.with_symbolizer(|sym| sym.backtrace(snap.hc_caller_rip, snap.hc_caller_rbp));
            if !r.backtrace.is_empty() {
                r.notes
                    .push("backtrace: from the last hypercall (not the stuck instruction)".into());
            }
        }
        r
    }

    /// After the sandbox is gone: writes the crash dump, if configured, and notes it (or its
    /// failure) in the stored report.
    fn write_dump(&self) {
        let Some(dir) = &self.limits.crash_dump else {
            return;
        };
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let Some(TenantOutcome::Crashed(report)) = st.1.as_mut() else {
            return;
        };
        match crate::dump::write_crash_dump(dir, report, &self.mem) {
            Ok(path) => {
                tracing::info!(tenant = %self.name, "crash dump written to {}", path.display());
                report
                    .notes
                    .push(format!("crash dump written to {}", path.display()));
            }
            Err(e) => {
                tracing::error!(tenant = %self.name, "cannot write the crash dump: {e}");
                report
                    .notes
                    .push(format!("crash dump to {} failed: {e}", dir.display()));
            }
        }
    }

    /// Ends the tenant because its CPU-time budget is spent (the first caller reports it).
    fn end_cpu_budget(&self, cpu: &crate::limits::budget::TenantCpu) {
        if self.ending.swap(1, SeqCst) == 0 {
            tracing::warn!(tenant = %self.name, used = ?cpu.used(), "CPU-time budget exhausted");
            let cause = CrashCause::CpuBudget {
                used: cpu.used(),
                host: cpu.host_work(),
                budget: cpu.budget().unwrap_or_default(),
            };
            self.finish(TenantOutcome::Crashed(Box::new(self.report(cause))));
        }
        self.kill();
    }

    fn end_from_guest(&self, outcome: TenantOutcome) {
        if self.adopting() {
            // A kernel booted to adopt a hand-over record ended (refused, panicked) before
            // adopting it: not the tenant's end, the monitor boots the old kernel again to
            // adopt the same record.
            tracing::warn!(tenant = %self.name, ?outcome, "the adopting kernel ended before adopting");
            self.kill();
            return;
        }
        if self.ending.swap(1, SeqCst) == 0 {
            self.finish(outcome);
        }
        self.kill();
    }
}

impl HcEnv for Shared {
    fn console_write(&self, stream: Stream, bytes: &[u8]) {
        self.console.write_stream(stream, bytes);
    }

    fn console_read(&self, max: usize) -> Result<Vec<u8>, HcError> {
        self.input.take(max)
    }

    fn take_signals(&self) -> u64 {
        self.host_signals.swap(0, SeqCst)
    }

    fn console_winsize(&self) -> u32 {
        self.console_winsize.load(SeqCst)
    }

    fn space_create(&self, ctx_gpa: u64, reaped_gpa: u64) -> Result<u64, HcError> {
        self.spaces.create_reporting(ctx_gpa, reaped_gpa)
    }

    fn space_destroy(&self, handle: u64) -> Result<(), HcError> {
        self.spaces.destroy(handle)
    }

    fn hostfs(&self) -> Option<&crate::hostfs::HostFs> {
        self.hostfs.as_deref()
    }

    fn windows(&self) -> Option<&crate::window::Windows> {
        self.windows.as_deref()
    }

    fn net(&self) -> Option<&crate::net::HostNet> {
        self.net.get().map(|n| &**n)
    }

    fn volumes(&self) -> &[Arc<crate::volume::Volume>] {
        &self.volumes
    }

    fn channels(&self) -> &[Arc<crate::channel::ChannelEnd>] {
        &self.channels
    }

    fn exec(&self) -> Option<&crate::exec::ExecTable> {
        Some(&self.exec)
    }

    fn take_task_limit(&self) -> u32 {
        self.resources.take_task_limit()
    }

    fn stats_report(&self, stats: pvmux_hypercalls::resources::GuestStats) {
        self.resources.report(stats);
    }

    fn adoption(&self) -> Option<Arc<crate::upgrade::Adoption>> {
        self.adoption
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn handover(&self) -> Option<&crate::upgrade::Handover> {
        Some(&self.handover)
    }

    fn balloon(&self) -> Option<&crate::balloon::Balloon> {
        Some(&self.balloon)
    }

    fn disks(&self) -> Option<&crate::disk::Disks> {
        Some(&self.disks)
    }
}

/// What other threads may do to a running tenant (see [`Tenant::handle`]); it does nothing
/// once the tenant has ended.
#[derive(Clone)]
pub struct TenantHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TenantHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantHandle")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl TenantHandle {
    /// As [`Tenant::kill`].
    pub fn kill(&self) {
        self.shared.killed_by_host.store(true, SeqCst);
        self.shared.kill();
    }

    /// Sends signal `signo` (1..=63) to the guest's init: the guest takes it with
    /// `SignalTake` after `pending::SIGNAL`, and delivers it as Linux delivers a signal from
    /// outside a pid namespace to its init. Signals sent before the guest took them merge, as
    /// standard signals do. [`HostError::InvalidSignal`] outside 1..=63.
    pub fn signal(&self, signo: u32) -> Result<(), HostError> {
        if !(1..=MAX_HOST_SIGNAL).contains(&signo) {
            return Err(HostError::InvalidSignal(signo));
        }
        self.shared.host_signals.fetch_or(1 << (signo - 1), SeqCst);
        self.shared.raise(pvmux_hypercalls::vcpu::pending::SIGNAL);
        Ok(())
    }

    /// Asks the guest kernel for a dump of its tasks (`pending::DUMP`): the pvmux kernel
    /// writes what each vCPU runs, its run queue, its timed sleepers and every process's
    /// threads to the console's standard error, and goes on. A diagnostic for a guest that
    /// seems stuck (`pvmux run` does it on `SIGQUIT`).
    pub fn request_dump(&self) {
        self.shared.raise(pvmux_hypercalls::vcpu::pending::DUMP);
    }

    /// Sets the console terminal's size (an OCI container's terminal the engine resized):
    /// the guest takes it with `ConsoleWinsize` after `pending::CONSOLE_SIZE`, and its
    /// console's foreground process group gets `SIGWINCH` when it changed.
    pub fn resize_console(&self, size: pvmux_hypercalls::bootargs::ConsoleSize) {
        let v = (u32::from(size.rows.get()) << 16) | u32::from(size.cols.get());
        if self.shared.console_winsize.swap(v, SeqCst) != v {
            self.shared
                .raise(pvmux_hypercalls::vcpu::pending::CONSOLE_SIZE);
        }
    }
}

impl TenantHandle {
    /// Takes a snapshot of the running tenant into `dir` (created; must not exist or be
    /// empty): the guest parks every vCPU with its whole context in its memory, the host
    /// writes the memory sparsely and the state with a versioned, checksummed manifest
    /// (`crate::snapshot`). Then the tenant stops (`leave_running` false: as `podman
    /// container checkpoint`) or goes on. `extra` is the caller's own data, kept in the
    /// state section. State a snapshot cannot carry is refused before the guest is asked.
    pub fn snapshot(
        &self,
        dir: &std::path::Path,
        leave_running: bool,
        extra: &str,
    ) -> Result<crate::snapshot::SnapshotFigures, crate::snapshot::SnapshotError> {
        use crate::snapshot::SnapshotError;
        let s = &self.shared;
        if !self.running() {
            return Err(SnapshotError::NotRunning);
        }
        if self.is_paused() {
            return Err(SnapshotError::Paused);
        }
        if let Some(why) = &s.snapshot_refusal {
            return Err(SnapshotError::Refused(why.clone()));
        }
        // No disk comes in (`pvmux disk move`) while the snapshot is taken.
        let held = s.disks.hold();
        let _disks_held = DisksHeld(&s.disks);
        if held.is_err() || !s.disks.list().is_empty() {
            return Err(SnapshotError::Refused(crate::disk::SNAPSHOT_REFUSAL.into()));
        }
        if let Some(why) = s.exec_in_progress() {
            return Err(SnapshotError::Refused(format!(
                "{why}; wait for them to end"
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| SnapshotError::Io {
            what: "creating",
            path: dir.to_owned(),
            source: e,
        })?;
        if std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
        {
            return Err(SnapshotError::Refused(format!(
                "{} is not empty",
                dir.display()
            )));
        }
        if !s.parking.begin() {
            return Err(SnapshotError::Refused("a snapshot is under way".into()));
        }
        let t0 = Instant::now();
        self.shared.raise(pvmux_hypercalls::vcpu::pending::SNAPSHOT);
        let parked = match s.parking.wait_parked(crate::snapshot::PARK_TIMEOUT) {
            Ok(n) => n,
            Err((parked, expected)) => {
                s.parking.end();
                return Err(SnapshotError::NotParked {
                    parked,
                    expected: expected.max(s.ctl.nr_vcpus()),
                    timeout: crate::snapshot::PARK_TIMEOUT,
                });
            }
        };
        let park = t0.elapsed();
        // `--publish` connections the guest took are host sockets: the parked guest takes
        // no new one, so the count holds until it goes on.
        // Nor an exec session that started since the check above.
        let open = s.net().map_or(0, crate::net::HostNet::taken_published);
        let why = (open > 0)
            .then(|| {
                format!(
                    "{open} published connection(s) are open (--publish): their host \
                     sockets cannot be carried"
                )
            })
            .or_else(|| s.exec_in_progress());
        if let Some(why) = why {
            s.parking.end();
            let _ = std::fs::remove_dir(dir);
            return Err(SnapshotError::Refused(format!(
                "{why}; no snapshot taken, it goes on running"
            )));
        }
        let t1 = Instant::now();
        let written = self.write_snapshot(dir, parked, extra);
        let write = t1.elapsed();
        if written.is_ok() && !leave_running {
            // Stopped with its vCPUs still parked: nothing runs after the memory was read.
            // A clean end (exit status 0), as a checkpointed container's, not a crash.
            s.finish(TenantOutcome::Exited(0));
            s.kill();
        }
        s.parking.end();
        let (data_bytes, _) = written.inspect_err(|_| {
            let _ = std::fs::remove_dir_all(dir);
        })?;
        Ok(crate::snapshot::SnapshotFigures {
            mem_size: s.mem.size(),
            data_bytes,
            disk_bytes: crate::snapshot::disk_usage(dir),
            vcpus: parked,
            park,
            write,
        })
    }

    /// Writes the snapshot directory of the parked tenant.
    fn write_snapshot(
        &self,
        dir: &std::path::Path,
        parked: u32,
        extra: &str,
    ) -> Result<(u64, u32), crate::snapshot::SnapshotError> {
        use crate::snapshot::format::{self, Manifest, Region, State};
        let s = &self.shared;
        let guest_ns = s.clock.tsc_to_ns(crate::clock::rdtsc());
        let gen = s.gen();
        let l = &gen.layout;
        let (balloon_target, balloon_runs) = s.balloon.carried();
        let state = State {
            name: s.name.clone(),
            mem_size: s.mem.size(),
            nr_vcpus: s.ctl.nr_vcpus(),
            parked_vcpus: parked,
            guest_ns,
            tsc_khz: s.clock.tsc_khz,
            clock_mult: s.clock.mult,
            clock_shift: s.clock.shift,
            kernel_base: l.kernel_base,
            kernel_phys: l.kernel_phys,
            kernel_span: l.kernel_span,
            entry_rip: l.entry_rip,
            entry_rsp: l.entry_rsp,
            entry_rdi: l.entry_rdi,
            page_table_root: l.page_table_root,
            first_free_gpa: l.first_free_gpa,
            mem_map: l
                .mem_map
                .iter()
                .map(|r| Region {
                    base: r.base,
                    len: r.len,
                    kind: r.kind,
                })
                .collect(),
            initrd_gpa: l.initrd_gpa,
            initrd_len: l.initrd_len,
            pool_base: l.pool_base,
            balloon_pages: balloon_runs.iter().map(|r| r.1).sum(),
            balloon_target,
            balloon_released: balloon_runs.iter().map(|&(g, n)| [g, n]).collect(),
            console_winsize: s.console_winsize.load(SeqCst),
            taken_unix_ms: crate::clock::realtime_ns() / 1_000_000,
            extra: extra.to_owned(),
        };
        let bytes = serde_json::to_vec_pretty(&state)
            .map_err(|e| crate::snapshot::SnapshotError::Invalid(e.to_string()))?;
        let st = format::write_small(dir, "state", format::STATE, &bytes)?;
        let (data, crc) = format::write_memory(&s.mem, &dir.join(format::MEMORY))?;
        let mut windows = Vec::new();
        if let Some(w) = &s.windows {
            for (slot, (fd, size)) in w.files().into_iter().enumerate() {
                windows.push(format::write_window(dir, slot as u32, fd.as_fd(), size)?);
            }
        }
        let manifest = Manifest {
            magic: format::MAGIC.into(),
            format: format::FORMAT_VERSION,
            abi: pvmux_hypercalls::ABI_VERSION,
            kernel: crate::snapshot::kernel_digest(&s.gen().kernel),
            sections: vec![
                st,
                format::Section {
                    name: "memory".into(),
                    file: format::MEMORY.into(),
                    bytes: s.mem.size(),
                    data_bytes: data,
                    crc32: crc,
                },
            ]
            .into_iter()
            .chain(windows)
            .collect(),
        };
        let m = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| crate::snapshot::SnapshotError::Invalid(e.to_string()))?;
        // The manifest last: a directory without one is no snapshot.
        format::write_small(dir, "manifest", format::MANIFEST, &m)?;
        Ok((data, crc))
    }

    /// Waits at most `timeout` until a restored guest says it runs again
    /// (`SnapshotResumed`); false if it did not.
    pub fn wait_restored(&self, timeout: Duration) -> bool {
        self.shared.parking.wait_resumed(timeout)
    }
}

impl TenantHandle {
    /// Pauses the running tenant: every one of its sandbox processes is stopped, and this
    /// returns once all their threads are (see [`crate::pause`]): no guest instruction runs
    /// and the tenant uses no CPU until [`TenantHandle::resume`]. Killing a paused tenant
    /// ends it at once. A sandbox that does not stop within [`crate::pause::STOP_TIMEOUT`]
    /// is an error, and the tenant is resumed.
    pub fn pause(&self) -> Result<(), crate::pause::PauseError> {
        use crate::pause::{self, Direction, PauseError};
        let s = &self.shared;
        let mut paused = s.pause.lock().unwrap_or_else(|e| e.into_inner());
        if s.upgrading.load(SeqCst) {
            return Err(PauseError::Upgrading);
        }
        let gate = s.signal_gate.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(kernel_pid), Some(fd), false) = (*gate, s.pidfd(), s.has_outcome()) else {
            return Err(PauseError::NotRunning);
        };
        drop(gate);
        if *paused {
            return Err(PauseError::AlreadyPaused);
        }
        // The watchdog stops looking first: a stopped vCPU takes no heartbeat.
        s.paused.store(true, SeqCst);
        let stopped = s
            .spaces
            .set_paused(Direction::Stop)
            .and_then(|()| pause::signal(&fd, Direction::Stop))
            .and_then(|()| {
                pause::wait_all_stopped(|| {
                    let mut pids = s.spaces.with_pids(|p| p.collect::<Vec<_>>());
                    pids.push(kernel_pid);
                    pids
                })
            });
        match stopped {
            Ok(()) => {
                *paused = true;
                tracing::info!(tenant = %s.name, "paused");
                Ok(())
            }
            Err(e) => {
                let _ = s.spaces.set_paused(Direction::Continue);
                let _ = pause::signal(&fd, Direction::Continue);
                s.paused.store(false, SeqCst);
                Err(e)
            }
        }
    }

    /// Resumes a paused tenant: its sandboxes continue where they stopped.
    pub fn resume(&self) -> Result<(), crate::pause::PauseError> {
        use crate::pause::{self, Direction, PauseError};
        let s = &self.shared;
        let mut paused = s.pause.lock().unwrap_or_else(|e| e.into_inner());
        if !*paused {
            return Err(PauseError::NotPaused);
        }
        let kernel = s
            .pidfd()
            .map_or(Ok(()), |fd| pause::signal(&fd, Direction::Continue));
        let users = s.spaces.set_paused(Direction::Continue);
        *paused = false;
        s.paused.store(false, SeqCst);
        tracing::info!(tenant = %s.name, "resumed");
        kernel.and(users)
    }

    /// Whether the tenant is paused.
    pub fn is_paused(&self) -> bool {
        *self.shared.pause.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the kernel sandbox runs (started, not ended).
    fn running(&self) -> bool {
        let s = &self.shared;
        s.signal_gate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
            && !s.has_outcome()
    }

    /// The guest's figures, asked for now (`pending::RESOURCES`, answered with
    /// `StatsReport`), at most [`crate::resources::ANSWER_TIMEOUT`]. A paused guest cannot
    /// answer: its last report is returned (an error if it never reported).
    pub fn guest_stats(&self) -> Result<GuestStats, crate::resources::ResourceError> {
        use crate::resources::{ResourceError, ANSWER_TIMEOUT};
        let s = &self.shared;
        if !self.running() {
            return Err(ResourceError::NotRunning);
        }
        if self.is_paused() {
            return s.resources.last().ok_or(ResourceError::PausedNoFigures);
        }
        let n = s.resources.reports();
        s.raise(pvmux_hypercalls::vcpu::pending::RESOURCES);
        s.resources
            .wait_report(n, ANSWER_TIMEOUT)
            .ok_or(ResourceError::NoAnswer(ANSWER_TIMEOUT))
    }

    /// Sets the guest's task limit (`pvmux update --pids-limit`): the guest takes it
    /// (`TaskLimitTake`) and reports its figures with the limit in force, which this returns
    /// (at most [`crate::resources::ANSWER_TIMEOUT`]). Of a paused tenant, the guest takes
    /// it when resumed, and this returns `None` at once.
    pub fn set_task_limit(
        &self,
        limit: crate::resources::TaskLimit,
    ) -> Result<Option<GuestStats>, crate::resources::ResourceError> {
        use crate::resources::{ResourceError, ANSWER_TIMEOUT};
        let s = &self.shared;
        if !self.running() {
            return Err(ResourceError::NotRunning);
        }
        let taken = s.resources.set_task_limit(limit)?;
        s.raise(pvmux_hypercalls::vcpu::pending::RESOURCES);
        if self.is_paused() {
            return Ok(None);
        }
        s.resources
            .wait_taken(taken, ANSWER_TIMEOUT)
            .map(Some)
            .ok_or(ResourceError::NoAnswer(ANSWER_TIMEOUT))
    }

    /// The tenant's CPU time so far: its sandboxes' (the tenant cgroup's counter, or the sum
    /// over its processes: live ones, and reaped ones when the tenant has a CPU rate or
    /// budget) and the host work counted on its behalf (counted when it has a CPU rate or
    /// budget). `None` before the sandbox runs or after it ended.
    pub fn cpu_time(&self) -> Option<crate::limits::CpuTime> {
        let s = &self.shared;
        let limits = s.limits_in_force()?;
        let pid = (*s.signal_gate.lock().unwrap_or_else(|e| e.into_inner()))?;
        Some(crate::limits::CpuTime {
            sandboxes: Duration::from_nanos(limits.sandboxes_ns(pid, &s.spaces)),
            host_work: limits.cpu.host_work(),
        })
    }

    /// Changes the tenant cgroup's CPU rate and weight (`pvmux update --cpu-quota`, ...).
    /// Without a tenant cgroup that has the `cpu` controller nothing changes:
    /// [`crate::resources::ResourceError::NoCpuCgroup`].
    pub fn update_cpu(
        &self,
        u: &crate::limits::CpuUpdate,
    ) -> Result<(), crate::resources::ResourceError> {
        use crate::resources::ResourceError;
        let limits = self
            .shared
            .limits_in_force()
            .ok_or(ResourceError::NotRunning)?;
        let cg = limits
            .cgroup
            .as_ref()
            .filter(|c| c.has_cpu())
            .ok_or(ResourceError::NoCpuCgroup)?;
        cg.update_cpu(u)
            .map_err(|e| ResourceError::Cgroup(e.to_string()))?;
        tracing::info!(tenant = %self.shared.name, update = ?u, "CPU controls changed");
        Ok(())
    }

    /// Whether the tenant has a cgroup whose CPU controls [`TenantHandle::update_cpu`]
    /// changes, and the CFS quota and period in force there.
    pub fn cpu_controls(&self) -> Option<(Option<u64>, u64)> {
        let limits = self.shared.limits_in_force()?;
        limits.cgroup.as_ref()?.cpu_max()
    }

    /// The guest's memory size in bytes (its maximum: see [`TenantHandle::memory`]).
    pub fn mem_size(&self) -> u64 {
        self.shared.mem.size()
    }

    /// Every vCPU's figures so far ([`crate::vcpu_figures`]); `None` before the kernel
    /// sandbox runs or after it ended.
    pub fn vcpu_figures(&self) -> Option<Vec<crate::vcpu_figures::VcpuFigures>> {
        let s = &self.shared;
        let gate = s.signal_gate.lock().unwrap_or_else(|e| e.into_inner());
        let kernel_pid = (*gate).filter(|_| !s.has_outcome())?;
        // Under the gate: the kernel sandbox has not been reaped, its pid is its own.
        let users = s.spaces.pids();
        Some(crate::vcpu_figures::collect(
            &s.ctl,
            &s.hypercalls,
            kernel_pid,
            &users,
        ))
    }

    /// The tenant's memory figures: its maximum, the memory its guest may use now (the
    /// maximum less the balloon), the smallest it may be asked for, the host memory its
    /// memfd holds.
    pub fn memory(&self) -> crate::balloon::MemoryFigures {
        use pvmux_hypercalls::PAGE_SIZE;
        let s = &self.shared;
        let max = s.mem.size();
        let b = &s.balloon;
        crate::balloon::MemoryFigures {
            max,
            size: max - b.released_pages() * PAGE_SIZE,
            min: crate::balloon::min_mem_size(max),
            host_allocated: crate::balloon::host_allocated(&s.mem),
        }
    }

    /// Grows or shrinks the memory the guest may use to `size` bytes (`pvmux mem`): the
    /// guest's balloon gives back or takes the difference, and the pages it takes are
    /// punched out of the memfd. Waits for the guest (at most
    /// [`crate::balloon::ANSWER_TIMEOUT`]) and returns the figures then. A shrink the guest
    /// cannot meet with free memory is refused ([`crate::BalloonError::CannotFree`]); the
    /// guest's programs are never starved for it.
    pub fn set_memory(
        &self,
        size: u64,
    ) -> Result<crate::balloon::MemoryFigures, crate::balloon::BalloonError> {
        use crate::balloon::{BalloonError, ANSWER_TIMEOUT};
        use pvmux_hypercalls::PAGE_SIZE;
        let s = &self.shared;
        if !self.running() {
            return Err(BalloonError::NotRunning);
        }
        if self.is_paused() {
            return Err(BalloonError::Paused);
        }
        let fig = self.memory();
        if !size.is_multiple_of(PAGE_SIZE) {
            return Err(BalloonError::BadSize { size });
        }
        if size > fig.max {
            return Err(BalloonError::AboveMax { size, max: fig.max });
        }
        if size < fig.min {
            return Err(BalloonError::BelowMin { size, min: fig.min });
        }
        let asked = s.balloon.set_target((fig.max - size) / PAGE_SIZE);
        s.raise(pvmux_hypercalls::vcpu::pending::BALLOON);
        let (_, short) = s
            .balloon
            .wait_answer(asked, ANSWER_TIMEOUT)
            .ok_or(BalloonError::NoAnswer(ANSWER_TIMEOUT))?;
        let now = self.memory();
        if short {
            return Err(BalloonError::CannotFree {
                size,
                now: now.size,
            });
        }
        tracing::info!(tenant = %s.name, size, host = now.host_allocated, "guest memory changed");
        Ok(now)
    }
}

impl TenantHandle {
    /// The tenant's disks (`pvmux disk ls`).
    pub fn disks(&self) -> Vec<crate::disk::DiskInfo> {
        self.shared.disks.list()
    }

    /// Gives `disk` to the running guest (`pvmux disk move`, the receiving side): waits
    /// until the guest has mounted it, or returns why it could not (the disk is closed then,
    /// its lock released).
    pub fn disk_attach(
        &self,
        disk: crate::disk::Disk,
    ) -> Result<crate::disk::DiskInfo, crate::disk::DiskError> {
        if !self.running() || self.is_paused() {
            return Err(crate::disk::DiskError::NotRunning);
        }
        let s = &self.shared;
        s.disks
            .attach(disk, || s.raise(pvmux_hypercalls::vcpu::pending::DISK))
    }

    /// Takes disk `which` (its name `vdX` or image path; `None`: the only one) back from the
    /// running guest (`pvmux disk move`, the giving side): the guest writes its changes and
    /// unmounts it, then the host closes the image (its lock is released). Refused, nothing
    /// changed, when the guest has files open on it.
    pub fn disk_detach(
        &self,
        which: Option<&str>,
    ) -> Result<crate::disk::DiskInfo, crate::disk::DiskError> {
        if !self.running() || self.is_paused() {
            return Err(crate::disk::DiskError::NotRunning);
        }
        let s = &self.shared;
        s.disks
            .detach(which, || s.raise(pvmux_hypercalls::vcpu::pending::DISK))
    }

    /// Upgrades the running kernel to `image` (`pvmux upgrade`; [`crate::upgrade`]): checks
    /// the image and the record versions first (a refusal there never reaches the guest), then
    /// asks the guest for its hand-over record and checks it; a record without blockers is
    /// then offered to the new image itself, booted in a scratch tenant to check it
    /// (`upgrade::preflight`, with the kernel words `words` if given). When it would adopt
    /// it, the switch: the guest writes its record again and stays held (its user threads
    /// stopped); its kernel sandbox and user sandboxes are killed, the kernel part of its
    /// memory is rebuilt with the new image, which boots with `ADOPT` and adopts the record
    /// (the old image does the same if the new one does not). `Ok` is the report (records,
    /// verdict, switch); the caller applies [`crate::upgrade::decide`].
    pub fn upgrade(
        &self,
        image: Vec<u8>,
        words: Option<&str>,
    ) -> Result<crate::upgrade::UpgradeReport, crate::upgrade::UpgradeError> {
        use crate::upgrade::{self, UpgradeError};
        let s = &self.shared;
        if !self.running() {
            return Err(UpgradeError::NotRunning);
        }
        // Pauses and resumes are refused while an upgrade runs (a switch changes the
        // sandboxes they stop).
        let _upgrading = {
            let paused = s.pause.lock().unwrap_or_else(|e| e.into_inner());
            if *paused {
                return Err(UpgradeError::Paused);
            }
            if s.upgrading.swap(true, SeqCst) {
                return Err(UpgradeError::Busy);
            }
            UpgradingGuard(&s.upgrading)
        };
        // The disks stay as they are until the upgrade is done: no `disk move` starts
        // (the switch carries the disks the guest has, in their slots).
        let disks_held = s.disks.hold();
        let _disks_held = DisksHeld(&s.disks);
        // What the switch would have to leave behind on the host's side: refused before
        // the guest is asked anything.
        let host_state = s.upgrade_refusal.clone().or(disks_held.err());
        let running = s.gen().kernel;
        let (plan, new) = upgrade::prepare_image(&running, image)?;
        let new = Arc::new(new);
        let bounds = upgrade::bounds(s.gen().layout.pool_base, s.mem.size());
        let raise = || s.raise(pvmux_hypercalls::vcpu::pending::HANDOVER);
        let (mut report, record, _) =
            upgrade::run(&s.handover, plan.clone(), &bounds, false, raise)?;
        if !report.inventory.blockers.is_empty() {
            return Ok(report);
        }
        if let Some(why) = host_state {
            return Err(UpgradeError::HostState(why));
        }
        let check = upgrade::preflight(
            Arc::clone(&new),
            upgrade::PreflightInput {
                name: &s.name,
                stubs: (Arc::clone(&s.stubs.0), Arc::clone(&s.stubs.1)),
                record,
                version: report.plan.version,
                bounds,
                words,
            },
        )?;
        let adopts = check.verdict.is_ok();
        report.adopt_check = Some(check);
        if !adopts {
            return Ok(report);
        }
        // The switch. The record it adopts is taken again, with the guest held: from its
        // `HandoverTake` on, nothing of the old kernel runs again.
        let (mut held, record, frozen) =
            upgrade::run(&s.handover, plan.clone(), &bounds, true, raise)?;
        if !held.inventory.blockers.is_empty() {
            // Something the record cannot carry appeared since the first one.
            s.handover.release(upgrade::Release::Thaw);
            held.adopt_check = report.adopt_check;
            return Ok(held);
        }
        // The exec sessions whose programs run must be the record's, each with its pid:
        // their streams go on with the new kernel's relays.
        let sessions: Vec<(u64, i32)> = held
            .inventory
            .exec_sessions
            .iter()
            .map(|e| (e.session, e.pid))
            .collect();
        if let Err(why) = s.exec.check_carried(&sessions) {
            s.handover.release(upgrade::Release::Thaw);
            return Err(UpgradeError::HostState(why));
        }
        // The disks the record names must be the tenant's, all of them, as they are.
        let carried: Vec<(u32, u64, bool)> = held
            .inventory
            .disks
            .iter()
            .map(|(d, _)| {
                let ro = d.flags & pvmux_hypercalls::handover::disk_flags::READ_ONLY != 0;
                (d.slot, d.sectors, ro)
            })
            .collect();
        if let Err(why) = s.disks.check_carried(&carried) {
            s.handover.release(upgrade::Release::Thaw);
            return Err(UpgradeError::HostState(why));
        }
        // The host sockets the record names must be the tenant's own, each once; so must
        // the published connections its relays serve.
        let inv = &held.inventory;
        let relays: Vec<u64> = inv.relays.iter().map(|r| r.handle).collect();
        let named: std::collections::HashSet<u64> =
            inv.host_sockets.iter().chain(&relays).copied().collect();
        let bad = inv
            .host_sockets
            .iter()
            .find(|&&h| !s.net().is_some_and(|n| n.holds(h)))
            .or(relays
                .iter()
                .find(|&&h| !s.net().is_some_and(|n| n.relays(h))))
            .copied()
            .or((named.len() != inv.host_sockets.len() + relays.len()).then_some(0));
        if let Some(h) = bad {
            s.handover.release(upgrade::Release::Thaw);
            return Err(UpgradeError::HostState(format!(
                "its kernel's record names host socket {h}, which is not one of the tenant's \
                 own (or names one twice)"
            )));
        }
        let record_len = record.len();
        let result = Arc::new(upgrade::SwitchWait::default());
        let next = upgrade::Next::switch(
            new,
            plan.new.clone(),
            record,
            plan.version,
            (running, plan.running.clone()),
            words.map(str::to_owned),
            Arc::clone(&result),
        );
        let fd = match s.pidfd() {
            Some(fd) if !s.stop.load(SeqCst) && !s.killed_by_host.load(SeqCst) => fd,
            _ => {
                s.handover.release(upgrade::Release::Thaw);
                return Err(UpgradeError::NotRunning);
            }
        };
        // From here the switch goes on: the guest must still be held (not thawed by its
        // hold's deadline), and now stays held until its sandbox is gone.
        if !s.handover.commit() {
            return Err(UpgradeError::HoldLost);
        }
        *s.switch.lock().unwrap_or_else(|e| e.into_inner()) = Some(next);
        let recorded = Instant::now();
        // The old kernel goes (its monitor thread takes the switch when its sandbox is
        // reaped); only then is the host thread that holds it in `HandoverRecord` freed.
        sandbox::kill(&fd);
        sandbox::wait_exited(&fd, Some(Duration::from_secs(5)));
        // The host sockets of the old kernel that the record does not name would stay open
        // for good.
        if let Some(n) = s.net() {
            n.keep_only(&named);
        }
        s.handover.release(upgrade::Release::Switch);
        let outcome = self.wait_switch(&result);
        let (outcome, at) = outcome.unwrap_or_else(|| {
            (
                upgrade::SwitchOutcome::Failed {
                    reason: "no kernel gave its verdict".to_owned(),
                },
                Instant::now(),
            )
        });
        // An adopted record is not offered again (and its memory goes).
        {
            let mut cur = s.adoption.lock().unwrap_or_else(|e| e.into_inner());
            if cur.as_ref().is_some_and(|a| a.adopted_ok()) {
                cur.take();
            }
        }
        held.adopt_check = report.adopt_check;
        let mut steps = result.steps(recorded);
        let last = steps.iter().fold(recorded, |t, (_, d)| t + *d);
        steps.push((
            "kernel booted and adopted".to_owned(),
            at.saturating_duration_since(last),
        ));
        held.switch = Some(upgrade::SwitchReport {
            steps,
            outcome,
            pause: at.saturating_duration_since(frozen),
            switch_time: at.saturating_duration_since(recorded),
            record_len,
        });
        tracing::info!(tenant = %s.name, switch = ?held.switch, "kernel switch");
        Ok(held)
    }

    /// Waits for a switch's outcome: each kernel (the new one, then the old one again) gets
    /// [`crate::upgrade::ADOPT_TIMEOUT`] to adopt the record, after which it is stopped
    /// (unless it adopted meanwhile); the wait ends early when the tenant ends.
    fn wait_switch(
        &self,
        result: &crate::upgrade::SwitchWait,
    ) -> Option<(crate::upgrade::SwitchOutcome, Instant)> {
        let s = &self.shared;
        let slice = Duration::from_millis(50);
        for _ in 0..2 {
            let deadline = Instant::now() + crate::upgrade::ADOPT_TIMEOUT;
            while Instant::now() < deadline {
                if let Some(o) = result.wait(slice) {
                    return Some(o);
                }
                if s.stop.load(SeqCst) {
                    return result.wait(slice).or_else(|| {
                        Some((
                            crate::upgrade::SwitchOutcome::Failed {
                                reason: "the tenant ended during the switch".to_owned(),
                            },
                            Instant::now(),
                        ))
                    });
                }
            }
            tracing::warn!(tenant = %s.name, "no hand-over verdict in time: stopping that kernel");
            let cur = s.adoption.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(a) = cur {
                a.give_up(|| s.kill());
            }
        }
        result.wait(Duration::from_secs(5))
    }
}

/// Clears the tenant's "upgrading" flag when an upgrade ends, however it ends.
struct UpgradingGuard<'a>(&'a AtomicBool);

/// Ends a kernel switch's hold of the disks ([`crate::disk::Disks::hold`]) when dropped.
struct DisksHeld<'a>(&'a crate::disk::Disks);

impl Drop for DisksHeld<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl Drop for UpgradingGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, SeqCst);
    }
}

/// The largest signal number [`TenantHandle::signal`] sends (the set is returned in a
/// hypercall's non-negative `i64`).
pub const MAX_HOST_SIGNAL: u32 = 63;

/// Longest a query of the tenant's limits waits for the monitor to set them up after the
/// guest started ([`Shared::limits_in_force`]).
const LIMITS_WAIT: Duration = Duration::from_secs(5);

/// A running guest kernel. Dropping it kills the sandbox and releases everything.
pub struct Tenant {
    shared: Arc<Shared>,
    pid: u32,
    monitor: Option<JoinHandle<()>>,
    input: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("name", &self.shared.name)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// Everything [`Tenant::start`] needs.
pub(crate) struct TenantParts {
    pub(crate) name: String,
    pub(crate) mem: GuestMemory,
    pub(crate) ctl: ControlRegion,
    pub(crate) kernel: Arc<KernelImage>,
    pub(crate) layout: DomainLayout,
    pub(crate) clock: ClockParams,
    pub(crate) console: Box<dyn Write + Send>,
    pub(crate) console_stderr: Box<dyn Write + Send>,
    pub(crate) kernel_log: KernelLog,
    pub(crate) console_input: Option<ConsoleInput>,
    pub(crate) console_rate: Option<u64>,
    pub(crate) limits: Limits,
    pub(crate) fault_around_pages: u32,
    pub(crate) hostfs: Option<Arc<crate::hostfs::HostFs>>,
    pub(crate) net: crate::net::NetConfig,
    pub(crate) volumes: Vec<Arc<crate::volume::Volume>>,
    pub(crate) channels: Vec<Arc<crate::channel::ChannelEnd>>,
    pub(crate) disks: crate::disk::Disks,
    /// Pages the guest's balloon starts with (`TenantConfig::mem_initial`).
    pub(crate) initial_balloon: u64,
    /// A restored tenant's balloon: its target and released runs `(gpa, pages)`, which the
    /// resumed guest kernel knows it released (`initial_balloon` is then 0).
    pub(crate) restored_balloon: Option<(u64, Vec<(u64, u64)>)>,
    /// A restored tenant's host file windows (their bytes, from the snapshot), by slot.
    pub(crate) restored_windows: Vec<OwnedFd>,
    /// Why this tenant cannot be snapshotted, if so (its configuration).
    pub(crate) snapshot_refusal: Option<String>,
    /// Why an upgrade can never be taken, if so.
    pub(crate) upgrade_refusal: Option<String>,
    /// The hand-over record offered to its kernel (a pre-flight's scratch tenant).
    pub(crate) adoption: Option<Arc<crate::upgrade::Adoption>>,
    /// The kernel sandbox [`crate::Host::launch`] already started while it built the domain
    /// ([`Prelaunch`]); `None`: the monitor spawns it.
    pub(crate) prelaunch: Option<Prelaunch>,
    /// What its kernel was built from.
    pub(crate) boot: BootInputs,
}

impl Tenant {
    /// Spawns the sandbox and the service threads of a built tenant.
    pub(crate) fn start(
        mut parts: TenantParts,
        stub: Arc<Stub>,
        user_stub: Arc<Stub>,
    ) -> Result<Self, HostError> {
        let nr_vcpus = parts.ctl.nr_vcpus();
        let stubs = (Arc::clone(&stub), Arc::clone(&user_stub));
        let mem = Arc::new(parts.mem);
        let (prespawned, namespaces, seat) = match parts.prelaunch {
            Some(p) => (Some(p.child), p.namespaces, Some(p.seat)),
            None => (
                None,
                Arc::new(crate::jail::SharedNamespaces::default()),
                None,
            ),
        };
        // Host file windows: for a share, with pvmux's own user stub (which asks for them).
        let windows = match &parts.hostfs {
            _ if !parts.restored_windows.is_empty() => {
                let w = crate::window::Windows::new(&parts.name).ok_or_else(|| {
                    HostError::InvalidConfig(
                        "the snapshot's host file windows cannot be given to sandboxes on this \
                         host (Linux 5.9 or later is needed)"
                            .into(),
                    )
                })?;
                w.restore(std::mem::take(&mut parts.restored_windows))
                    .map_err(|e| {
                        HostError::InvalidConfig(format!("restoring host file windows: {e:?}"))
                    })?;
                Some(w)
            }
            Some(_) if Arc::ptr_eq(&stub, &user_stub) => crate::window::Windows::new(&parts.name),
            _ => None,
        };
        let spaces = Spaces::new(
            SpaceConfig {
                name: parts.name.clone(),
                nr_vcpus,
                pool_base: parts.layout.pool_base,
                clock: parts.clock,
                fault_around_pages: parts.fault_around_pages,
                sandbox_user: parts.limits.sandbox_user,
                cpu_seconds: parts.limits.cpu_seconds,
                namespaces: Arc::clone(&namespaces),
                // pvmux's own stub serves templates (a test's own user stub may not).
                templates: Arc::ptr_eq(&stub, &user_stub),
                windows: windows.clone(),
            },
            Arc::clone(&mem),
            user_stub,
        );
        let input = Arc::new(match parts.console_input {
            Some(_) => InputBuffer::default(),
            None => InputBuffer::without_source(),
        });
        let balloon = crate::balloon::Balloon::new(parts.layout.pool_base, mem.size());
        if parts.initial_balloon > 0 {
            // The guest takes it at boot, before its first program.
            balloon.set_target(parts.initial_balloon);
        }
        if let Some((target, runs)) = &parts.restored_balloon {
            balloon.restore(*target, runs).map_err(|e| {
                HostError::InvalidConfig(format!("the snapshot's balloon is refused: {e:?}"))
            })?;
        }
        let shared = Arc::new_cyclic(|weak: &std::sync::Weak<Shared>| {
            let exec_weak = weak.clone();
            Shared {
                name: parts.name,
                mem,
                ctl: Arc::new(parts.ctl),
                gen: std::sync::RwLock::new(KernelGen {
                    kernel: parts.kernel,
                    layout: parts.layout.clone(),
                }),
                boot: parts.boot,
                clock: parts.clock,
                console: Console::with_streams(
                    parts.console,
                    parts.console_stderr,
                    parts.kernel_log,
                    parts.console_rate,
                ),
                stop: Arc::new(AtomicBool::new(false)),
                killed_by_host: AtomicBool::new(false),
                pidfd: Mutex::new(None),
                status: Mutex::new((TenantState::Created, None)),
                ending: AtomicU32::new(0),
                in_host: (0..nr_vcpus).map(|_| AtomicBool::new(false)).collect(),
                hypercalls: (0..nr_vcpus).map(|_| AtomicU64::new(0)).collect(),
                limits: parts.limits,
                spaces,
                namespaces,
                input,
                host_signals: AtomicU64::new(0),
                console_winsize: AtomicU32::new(0),
                signal_gate: Mutex::new(None),
                hostfs: parts.hostfs,
                windows,
                volumes: parts.volumes,
                disks: parts.disks,
                cpu: OnceLock::new(),
                net: OnceLock::new(),
                channels: parts.channels,
                exec: Arc::new(crate::exec::ExecTable::new(Box::new(move || {
                    if let Some(s) = exec_weak.upgrade() {
                        s.raise(pvmux_hypercalls::vcpu::pending::EXEC);
                    }
                }))),
                pause: Mutex::new(false),
                paused: AtomicBool::new(false),
                resources: crate::resources::Resources::default(),
                balloon,
                handover: crate::upgrade::Handover::default(),
                live_limits: Mutex::new(None),
                parking: crate::snapshot::Parking::default(),
                snapshot_refusal: parts.snapshot_refusal,
                upgrade_refusal: parts.upgrade_refusal,
                adoption: Mutex::new(parts.adoption),
                switch: Mutex::new(None),
                vcpu_threads: Mutex::new(Vec::new()),
                vcpu_stop: Mutex::new(Arc::new(AtomicBool::new(false))),
                upgrading: AtomicBool::new(false),
                stubs,
            }
        });
        if parts.net.enabled() {
            let weak = Arc::downgrade(&shared);
            let raise = Arc::new(move || {
                if let Some(s) = weak.upgrade() {
                    s.raise(pvmux_hypercalls::vcpu::pending::NET);
                }
            });
            let net = crate::net::HostNet::start(parts.net, raise)
                .map_err(|e| HostError::os("opening the --publish listeners", e))?;
            let _ = shared.net.set(net);
        }
        for c in &shared.channels {
            let weak = Arc::downgrade(&shared);
            c.set_raise(Arc::new(move || {
                if let Some(s) = weak.upgrade() {
                    s.raise(pvmux_hypercalls::vcpu::pending::CHANNEL);
                }
            }));
        }
        let (tx, rx) = mpsc::channel();
        let s = Arc::clone(&shared);
        // The sandbox the launch started goes with the job: if the job never runs (a failure
        // below), it is dropped, so killed and reaped.
        let job = move || monitor_thread(&s, &stub, prespawned, &tx);
        let monitor = match seat {
            // The thread that spawned the sandbox (its parent-death signal is tied to it).
            Some(seat) => seat.run(Box::new(job))?,
            None => std::thread::Builder::new()
                .name(format!("pvmux-mon-{}", shared.name))
                .spawn(job)
                .map_err(|e| HostError::os("spawning the monitor thread", e))?,
        };
        let pid = match rx.recv() {
            Ok(Ok(pid)) => pid,
            Ok(Err(e)) => {
                let _ = monitor.join();
                return Err(e);
            }
            Err(_) => {
                let _ = monitor.join();
                return Err(HostError::BadStub("monitor thread died before spawning"));
            }
        };
        let mut tenant = Self {
            shared: Arc::clone(&shared),
            pid,
            monitor: Some(monitor),
            input: None,
        };
        if let Some(source) = parts.console_input {
            let weak = Arc::downgrade(&shared);
            tenant.input = crate::console_input::start_reader(
                &shared.name,
                source,
                Arc::clone(&shared.input),
                Box::new(move || {
                    if let Some(s) = weak.upgrade() {
                        s.raise_input();
                    }
                }),
            )?;
        }
        shared.spawn_vcpus()?;
        tracing::info!(tenant = %shared.name, pid, vcpus = nr_vcpus, "tenant started");
        Ok(tenant)
    }

    /// The tenant's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Process id of the kernel sandbox (the running kernel's, after a hand-over).
    pub fn sandbox_pid(&self) -> u32 {
        self.shared
            .signal_gate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or(self.pid)
    }

    /// What the host sees of each vCPU now (pending events, halted, last hypercall), for a
    /// diagnosis of a guest that stopped making progress.
    pub fn vcpu_snapshots(&self) -> Vec<VcpuSnapshot> {
        let s = &self.shared;
        (0..s.ctl.nr_vcpus())
            .filter_map(|i| {
                let v = s.ctl.vcpu(i)?;
                let in_host = s.in_host.get(i as usize).is_some_and(|f| f.load(SeqCst));
                Some(VcpuSnapshot::read(v, in_host))
            })
            .collect()
    }

    /// Current lifecycle state.
    pub fn state(&self) -> TenantState {
        self.shared
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
    }

    /// Starts `spec` as a new process in the running guest (see [`crate::exec`]).
    pub fn exec(
        &self,
        spec: &crate::exec::ExecSpec,
    ) -> Result<crate::exec::ExecSession, crate::exec::ExecError> {
        self.exec_handle().exec(spec)
    }

    /// A handle that starts exec sessions in this tenant from any thread, also while another
    /// thread waits for the tenant ([`Tenant::wait`]); once the tenant has ended, it refuses
    /// with [`crate::exec::ExecError::NotRunning`].
    pub fn exec_handle(&self) -> crate::exec::ExecHandle {
        crate::exec::ExecHandle {
            table: Arc::clone(&self.shared.exec),
        }
    }

    /// Pids of the tenant's user sandboxes that have not been reaped yet.
    pub fn user_sandbox_pids(&self) -> Vec<u32> {
        self.shared.spaces.pids()
    }

    /// The tenant's guest memory (tests read what the host wrote there).
    #[cfg(test)]
    pub(crate) fn guest_memory(&self) -> &GuestMemory {
        &self.shared.mem
    }

    /// The tenant's control region (tests look at the vCPU pages).
    #[cfg(test)]
    pub(crate) fn control(&self) -> &ControlRegion {
        &self.shared.ctl
    }

    /// The domain layout of the tenant's running kernel.
    pub fn layout(&self) -> DomainLayout {
        self.shared.gen().layout
    }

    /// The tenant's clock: guest time 0 is the instant these parameters were sampled during
    /// [`crate::Host::launch`] (after guest memory was created, before the domain was built).
    /// `mono_base_ns` puts guest time on the host's CLOCK_MONOTONIC, e.g. to time a boot from
    /// a [`crate::clock::monotonic_ns`] taken before the launch.
    pub fn clock(&self) -> ClockParams {
        self.shared.clock
    }

    /// Start-up timestamps the stub reported so far.
    pub fn boot_times(&self) -> BootTimes {
        let conv = |t: u64| (t != 0).then(|| self.shared.clock.tsc_to_ns(t));
        BootTimes {
            stub_start_ns: conv(self.shared.ctl.stub_start_tsc().load(Relaxed)),
            first_insn_ns: conv(self.shared.ctl.first_insn_tsc().load(Relaxed)),
        }
    }

    /// Kills the sandbox; the outcome becomes a crash "killed by the host" unless the tenant
    /// had already ended.
    pub fn kill(&self) {
        self.shared.killed_by_host.store(true, SeqCst);
        self.shared.kill();
    }

    /// As [`TenantHandle::pause`].
    pub fn pause(&self) -> Result<(), crate::pause::PauseError> {
        self.handle().pause()
    }

    /// As [`TenantHandle::resume`].
    pub fn resume(&self) -> Result<(), crate::pause::PauseError> {
        self.handle().resume()
    }

    /// A handle that other threads keep to kill the tenant while one waits for it.
    pub fn handle(&self) -> TenantHandle {
        TenantHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Waits until the sandbox's stub has entered the guest (seccomp installed, vCPU 0
    /// running), start-up failed, or the tenant already ended; at most `timeout`.
    ///
    /// Returns `true` if the guest is running (or ran). A `false` return means start-up
    /// failed or timed out; [`Tenant::wait`] then reports why.
    pub fn wait_started(&self, timeout: std::time::Duration) -> bool {
        use pvmux_hypercalls::sandbox::status;
        use rustix::thread::futex;
        let word = self.shared.ctl.stub_status();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match word.load(SeqCst) {
                status::RUNNING => return true,
                status::FAILED => return false,
                _ => {}
            }
            let now = std::time::Instant::now();
            if now >= deadline || self.shared.has_outcome() {
                return false;
            }
            // Short slices: the stub wakes this futex, but a dead sandbox cannot.
            let left = (deadline - now).min(std::time::Duration::from_millis(10));
            let ts = futex::Timespec {
                tv_sec: 0,
                tv_nsec: left.as_nanos() as _,
            };
            let seen = word.load(SeqCst);
            if seen == status::STARTING || seen == status::READY {
                let _ = futex::wait(word, futex::Flags::empty(), seen, Some(&ts));
            }
        }
    }

    /// Waits for the tenant to end and releases everything it holds.
    pub fn wait(mut self) -> TenantOutcome {
        self.join();
        let st = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
        st.1.clone().unwrap_or_else(|| {
            TenantOutcome::Crashed(Box::new(CrashReport::new(
                &self.shared.name,
                CrashCause::KilledByHost,
            )))
        })
    }

    fn join(&mut self) {
        if let Some(m) = self.monitor.take() {
            let _ = m.join();
        }
        self.shared.stop.store(true, SeqCst);
        self.shared.stop_vcpus();
        self.shared.input.close();
        if let Some(h) = self.input.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Tenant {
    fn drop(&mut self) {
        if self.monitor.is_some() {
            self.kill();
            self.join();
        }
    }
}

/// What a launch started before its tenant existed: the kernel sandbox, spawned while the
/// domain was built, the namespaces its jail was made for, and the thread that spawned it,
/// which becomes the tenant's monitor (the sandbox's parent-death signal belongs to that
/// thread: it must live as long as the sandbox). Dropped unused, the sandbox is killed and
/// reaped and the thread ends.
pub(crate) struct Prelaunch {
    child: sandbox::Prespawned,
    namespaces: Arc<crate::jail::SharedNamespaces>,
    seat: MonitorSeat,
}

impl Prelaunch {
    /// Starts tenant `name`'s monitor thread and has it spawn the kernel sandbox (`stub`,
    /// guest memory and control region `[guest_fd, ctl_fd]`, whose header holds the entry
    /// back: `entry_held`; the kernel image's file `image_fd` if its pages are mapped from
    /// it) at once; [`PrelaunchSpawn::wait`] gives the result. The fds must stay open until
    /// then.
    pub(crate) fn start(
        name: &str,
        stub: Arc<Stub>,
        [guest_fd, ctl_fd]: [std::os::fd::RawFd; 2],
        image_fd: Option<std::os::fd::RawFd>,
        jail: crate::jail::ChildJail,
        namespaces: Arc<crate::jail::SharedNamespaces>,
    ) -> Result<PrelaunchSpawn, HostError> {
        let (child_tx, child_rx) = mpsc::sync_channel(1);
        let (job_tx, job_rx) = mpsc::channel::<MonitorJob>();
        // On another CPU: the spawn runs while the caller builds the domain.
        let builder = std::thread::Builder::new().name(format!("pvmux-mon-{name}"));
        let thread = crate::cpu_spread::spawn_elsewhere(builder, move || {
            let spawned = sandbox::spawn(&stub, guest_fd, ctl_fd, image_fd, &jail);
            let ok = spawned.is_ok();
            if child_tx.send(spawned).is_err() || !ok {
                return;
            }
            // The tenant's monitor from here on; no job: the launch failed (the sandbox
            // is killed and reaped by its `Prespawned`).
            if let Ok(job) = job_rx.recv() {
                job();
            }
        })
        .map_err(|e| HostError::os("spawning the monitor thread", e))?;
        Ok(PrelaunchSpawn {
            seat: MonitorSeat { thread, job_tx },
            child_rx,
            namespaces,
        })
    }
}

/// A [`Prelaunch`] whose sandbox spawn may still be under way.
pub(crate) struct PrelaunchSpawn {
    seat: MonitorSeat,
    child_rx: mpsc::Receiver<Result<sandbox::Child, HostError>>,
    namespaces: Arc<crate::jail::SharedNamespaces>,
}

impl PrelaunchSpawn {
    /// Waits for the spawn.
    pub(crate) fn wait(self) -> Result<Prelaunch, HostError> {
        let child = self
            .child_rx
            .recv()
            .map_err(|_| HostError::BadStub("the monitor thread died before spawning"))??;
        Ok(Prelaunch {
            child: sandbox::Prespawned::new(child),
            namespaces: self.namespaces,
            seat: self.seat,
        })
    }
}

/// What a monitor thread started early runs once its tenant exists.
type MonitorJob = Box<dyn FnOnce() + Send>;

/// A monitor thread started before its tenant, waiting for its job.
struct MonitorSeat {
    thread: JoinHandle<()>,
    job_tx: mpsc::Sender<MonitorJob>,
}

impl MonitorSeat {
    /// Hands the thread its job; its handle.
    fn run(self, job: MonitorJob) -> Result<JoinHandle<()>, HostError> {
        self.job_tx
            .send(job)
            .map_err(|_| HostError::BadStub("the monitor thread ended before its tenant"))?;
        Ok(self.thread)
    }
}

/// The monitor of tenant `s`: takes `prespawned` (the kernel sandbox the launch started) or
/// spawns the sandbox, sends its pid on `tx`, then watches it until it ends.
fn monitor_thread(
    s: &Arc<Shared>,
    stub: &Stub,
    prespawned: Option<sandbox::Prespawned>,
    tx: &mpsc::Sender<Result<u32, HostError>>,
) {
    let spawned = match prespawned {
        Some(p) => Ok(p.take()),
        None => s.spawn_kernel_sandbox(stub),
    };
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send(Err(e));
            return;
        }
    };
    let mut pid = child.pid;
    let mut raw_pid = pid.as_raw_nonzero().get() as u32;
    // Its net, ipc, uts and mount namespaces become the tenant's: user sandboxes join them.
    s.namespaces.adopt(raw_pid);
    s.set_sandbox(raw_pid, child.pidfd);
    {
        let mut st = s.status.lock().unwrap_or_else(|e| e.into_inner());
        if st.0 == TenantState::Created {
            st.0 = TenantState::Running;
        }
    }
    // The vCPU threads start now; the limits are set while the guest boots: moving the
    // sandbox into the tenant's cgroup waits for an RCU grace period (~10 ms on a quiet VM),
    // which would otherwise come before the guest's first hypercall. Until then the sandbox
    // runs as the host's other processes do (its first milliseconds, once per tenant; the
    // user sandboxes made before `set_cpu` below — the first spares, started now, and those
    // the kernel asks for — `set_cpu` moves in too).
    let _ = tx.send(Ok(raw_pid));
    s.spaces.prewarm();
    let limits = Arc::new(crate::limits::apply(
        &s.name,
        raw_pid,
        crate::limits::Request {
            cpus: s.limits.cpu_limit,
            cpu_seconds: s.limits.cpu_seconds,
            mem_bytes: s.mem.size(),
            vcpus: s.ctl.nr_vcpus(),
            cpu_shares: s.limits.cpu_shares,
        },
    ));
    *s.live_limits.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&limits));
    let _ = s.cpu.set(Arc::clone(&limits.cpu));
    s.spaces.set_cpu(limits.for_spaces(&s.name));
    let exit = loop {
        watch(s, raw_pid, &limits);
        if let Some(fd) = s.pidfd() {
            sandbox::wait_exited(&fd, None);
        }
        // The sandbox has exited: nothing signals it from now on (the gate), so nothing can
        // hit its pid once it is reaped and recycled.
        *s.signal_gate.lock().unwrap_or_else(|e| e.into_inner()) = None;
        // Only this thread reaps the kernel sandbox (its CPU time stays the tenant's).
        let exit = match limits.for_spaces(&s.name).reap(pid) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(tenant = %s.name, "{e}");
                SandboxExit::Signaled(0)
            }
        };
        // Every user sandbox goes with the kernel sandbox, before the cgroup they share.
        s.spaces.shutdown();
        // A kernel hand-over: the next kernel (or the fallback) in the same memory.
        let next = match s.next_kernel() {
            None => break exit,
            Some(Ok(n)) => n,
            Some(Err(why)) => {
                s.end_switch(&why);
                break exit;
            }
        };
        match s.start_kernel(stub, &limits, next) {
            Ok(p) => {
                pid = p;
                raw_pid = pid.as_raw_nonzero().get() as u32;
            }
            Err(e) => {
                // Whatever was offered cannot be booted: the fallback, if any, else the end.
                tracing::error!(tenant = %s.name, "cannot start the next kernel: {e}");
                match s.next_kernel() {
                    Some(Ok(n)) => match s.start_kernel(stub, &limits, n) {
                        Ok(p) => {
                            pid = p;
                            raw_pid = pid.as_raw_nonzero().get() as u32;
                        }
                        Err(e2) => {
                            s.end_switch(&format!("{e}; the old kernel: {e2}"));
                            break exit;
                        }
                    },
                    Some(Err(why)) => {
                        s.end_switch(&format!("{e}; {why}"));
                        break exit;
                    }
                    None => {
                        s.end_switch(&e.to_string());
                        break exit;
                    }
                }
            }
        }
    };
    // A switch that was under way ends with the tenant (its end is then the tenant's).
    {
        let mut cur = s.adoption.lock().unwrap_or_else(|e| e.into_inner());
        if cur
            .as_ref()
            .is_some_and(|a| a.is_switch() && !a.adopted_ok())
        {
            if let Some(a) = cur.take() {
                a.abandoned("the tenant ended during the switch");
            }
        }
    }
    if let Some(n) = s.switch.lock().unwrap_or_else(|e| e.into_inner()).take() {
        n.adoption.abandoned("the tenant ended before the switch");
    }
    // Exec sessions end with it (their programs were in it).
    s.exec.close();
    // The cgroup goes once the last user of the limits is done with them.
    s.live_limits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    drop(limits);
    s.stop.store(true, SeqCst);
    s.sandbox_ended(exit);
    s.console.finish();
    s.write_dump();
    s.vcpu_stop
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .store(true, SeqCst);
    for i in 0..s.ctl.nr_vcpus() {
        Vcpu::wake(&s.ctl, i);
    }
}

impl Shared {
    /// The kernel sandbox `pid` (not reaped) runs now.
    fn set_sandbox(&self, pid: u32, pidfd: OwnedFd) {
        *self.pidfd.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(pidfd));
        *self.signal_gate.lock().unwrap_or_else(|e| e.into_inner()) = Some(pid);
    }

    /// After the kernel sandbox was reaped: the kernel to boot next, if any — a switch
    /// asked for, or, when the kernel that ended was booted to adopt a record and did not,
    /// the fallback (`Err`: none left; the switch failed).
    fn next_kernel(&self) -> Option<Result<crate::upgrade::Next, String>> {
        // Killed by the host (`pvmux stop`, `kill`), or ended by its decision (a CPU budget,
        // the watchdog): the end, switch or not.
        if self.killed_by_host.load(SeqCst) || self.has_outcome() {
            return None;
        }
        if let Some(n) = self.switch.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Some(Ok(n));
        }
        let cur = self
            .adoption
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        if !cur.is_switch() || cur.adopted_ok() {
            return None;
        }
        Some(cur.failed())
    }

    /// A switch failed with no kernel left to adopt the record: the tenant ends with a crash
    /// report saying why.
    fn end_switch(&self, why: &str) {
        tracing::error!(tenant = %self.name, "kernel hand-over failed: {why}");
        let cur = self
            .adoption
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(a) = cur {
            a.abandoned(why);
        }
        let r = self.report(CrashCause::HandoverFailed {
            reason: why.to_owned(),
        });
        self.finish(TenantOutcome::Crashed(Box::new(r)));
    }

    /// Spawns the tenant's kernel sandbox (jailed, running `stub`) over its guest memory and
    /// control region.
    fn spawn_kernel_sandbox(&self, stub: &Stub) -> Result<sandbox::Child, HostError> {
        let jail = ChildJail::for_kernel_sandbox(
            self.limits.sandbox_user,
            self.limits.cpu_seconds,
            &self.namespaces,
            self.mem.size(),
        );
        let shared = self.mem.shared_image();
        let image = shared
            .as_ref()
            .map(|s| std::os::fd::AsRawFd::as_raw_fd(&s.fd()));
        sandbox::spawn(stub, self.mem.raw_fd(), self.ctl.raw_fd(), image, &jail)
    }

    /// Boots `next` in this tenant after its kernel sandbox was reaped (a hand-over): stops
    /// the old vCPU threads, rebuilds the kernel part of guest memory with the next image
    /// and its boot arguments (the user pool, and so every page the record names, is left
    /// as it is), resets the control region, starts a new kernel sandbox in the tenant's
    /// cgroup and its vCPU threads. Returns the new sandbox's pid.
    fn start_kernel(
        self: &Arc<Self>,
        stub: &Stub,
        limits: &crate::limits::TenantLimits,
        next: crate::upgrade::Next,
    ) -> Result<rustix::process::Pid, HostError> {
        let started = Instant::now();
        next.adoption
            .mark("old kernel's sandbox and user sandboxes gone");
        // The record is this kernel's to adopt from now on: whatever fails below, the
        // monitor's next step is the fallback (`next_kernel`).
        let adoption = Arc::clone(&next.adoption);
        *self.adoption.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&adoption));
        self.stop_vcpus();
        let pool_base = self.gen().layout.pool_base;
        let boot_args = next
            .boot_args(&self.boot.boot_args, (pool_base, self.mem.size()))
            .map_err(HostError::InvalidConfig)?;
        let params = crate::domain_builder::BuildParams {
            nr_vcpus: self.ctl.nr_vcpus(),
            boot_args: &boot_args,
            clock: Some(&self.clock),
            initrd: self.boot.initrd.as_deref().map(Vec::as_slice),
        };
        let base = crate::domain_builder::random_kernel_base(next.image.span());
        let layout =
            crate::domain_builder::rebuild_kernel_part(&self.mem, &next.image, &params, base)?;
        if layout.pool_base != pool_base {
            return Err(HostError::InvalidConfig(
                "the new kernel's user pool is not where the old one's was".into(),
            ));
        }
        let built = started.elapsed();
        next.adoption.mark("kernel part rebuilt");
        self.ctl.reset(&crate::host::header_init(
            self.ctl.nr_vcpus(),
            &self.mem,
            &layout,
            &self.clock,
            crate::host::isolation_of(&self.boot.boot_args),
        ));
        *self.gen.write().unwrap_or_else(|e| e.into_inner()) = KernelGen {
            kernel: Arc::clone(&next.image),
            layout,
        };
        // The old kernel's host-side state: its balloon (the new kernel takes the same
        // target at boot), its reported end.
        self.balloon.restart();
        self.ending.store(0, SeqCst);
        self.spaces.reopen();
        let child = self.spawn_kernel_sandbox(stub)?;
        let pid = child.pid;
        let raw = pid.as_raw_nonzero().get() as u32;
        self.set_sandbox(raw, child.pidfd);
        if let Err(e) = self.spawn_vcpus() {
            // No sandbox is left behind: killed, reaped, before the fallback rebuilds.
            self.kill();
            if let Some(fd) = self.pidfd() {
                sandbox::wait_exited(&fd, None);
            }
            *self.signal_gate.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let _ = sandbox::reap(pid);
            self.stop_vcpus();
            return Err(e);
        }
        adoption.mark("new kernel sandbox started");
        // What the host asked of the old kernel and it had not taken yet (its pending bits
        // went with the control region): asked again.
        use pvmux_hypercalls::vcpu::pending;
        if self.host_signals.load(SeqCst) != 0 {
            self.raise(pending::SIGNAL);
        }
        if self.console_winsize.load(SeqCst) != 0 {
            self.raise(pending::CONSOLE_SIZE);
        }
        self.raise(pending::INPUT);
        // Into the tenant's cgroup while the kernel boots (the move waits for an RCU grace
        // period, as at the first boot).
        limits.for_spaces(&self.name).apply(raw);
        tracing::info!(
            tenant = %self.name,
            pid = raw,
            built_ms = built.as_secs_f64() * 1e3,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "next kernel started"
        );
        Ok(pid)
    }
}

/// Runs the watchdog and the CPU accounting until the sandbox `pid` has exited (not reaped
/// yet): polls the pidfd with a period of a quarter of the watchdog's timeout (at most
/// [`crate::limits::budget::SAMPLE_PERIOD`] when CPU is counted); on each period samples
/// the tenant's CPU time and checks its budget, and checks every vCPU.
fn watch(s: &Arc<Shared>, pid: u32, limits: &crate::limits::TenantLimits) {
    use rustix::event::{poll, PollFd, PollFlags};
    let Some(pidfd) = s.pidfd() else { return };
    let counting = limits.cpu.active();
    let mut dog = s
        .limits
        .watchdog
        .map(|timeout| Watchdog::new(timeout, s.ctl.nr_vcpus()));
    let period = match (&dog, counting) {
        (Some(d), true) => d.period().min(crate::limits::budget::SAMPLE_PERIOD),
        (Some(d), false) => d.period(),
        (None, true) => crate::limits::budget::SAMPLE_PERIOD,
        (None, false) => return,
    };
    let ts = rustix::event::Timespec {
        tv_sec: period.as_secs() as _,
        tv_nsec: period.subsec_nanos() as _,
    };
    let mut meter = crate::limits::budget::HostMeter::start();
    let dog_period = dog.as_ref().map(Watchdog::period).unwrap_or_default();
    let mut dog_due = Instant::now();
    let mut fired = false;
    loop {
        let fd = pidfd.as_fd();
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => {}
            // Readable: the process exited. Any other error: stop watching and just reap.
            _ => return,
        }
        if fired {
            continue; // killed; waiting for it to be gone
        }
        if counting {
            limits.sample(pid, &s.spaces);
            meter.charge(&limits.cpu);
            if limits.cpu.check_budget() {
                s.end_cpu_budget(&limits.cpu);
                fired = true;
                continue;
            }
        }
        if s.paused.load(SeqCst) {
            // A stopped vCPU takes no events: the watchdog starts afresh after the resume.
            if let Some(d) = dog.as_mut() {
                *d = Watchdog::new(d.timeout(), s.ctl.nr_vcpus());
            }
            continue;
        }
        let Some(dog) = dog.as_mut() else { continue };
        let now = Instant::now();
        // The watchdog looks at its own period only (each look may send heartbeats).
        if now < dog_due {
            continue;
        }
        dog_due = now + dog_period;
        for i in 0..s.ctl.nr_vcpus() {
            let Some(v) = s.ctl.vcpu(i) else { continue };
            let in_host = s.in_host.get(i as usize).is_some_and(|f| f.load(SeqCst));
            let snap = VcpuSnapshot::read(v, in_host);
            match dog.tick(i as usize, &snap, now) {
                WatchAction::None => {}
                WatchAction::Heartbeat => crate::watchdog::heartbeat(v, pid),
                WatchAction::Stuck { since } => {
                    tracing::warn!(tenant = %s.name, vcpu = i, "watchdog: vCPU not taking events");
                    let r = s.watchdog_report(i, &snap, since);
                    if s.ending.swap(1, SeqCst) == 0 {
                        s.finish(TenantOutcome::Crashed(Box::new(r)));
                    }
                    s.kill();
                    fired = true;
                    break;
                }
            }
        }
    }
}

/// Names of pending bits, e.g. `TIMER|HOST`.
fn pending_names(bits: u32) -> String {
    use pvmux_hypercalls::vcpu::pending;
    let mut v: Vec<String> = [
        (pending::TIMER, "TIMER"),
        (pending::KICK, "KICK"),
        (pending::HOST, "HOST"),
        (pending::INPUT, "INPUT"),
        (pending::NET, "NET"),
        (pending::EXEC, "EXEC"),
        (pending::SIGNAL, "SIGNAL"),
        (pending::CONSOLE_SIZE, "CONSOLE_SIZE"),
        (pending::RESOURCES, "RESOURCES"),
        (pending::CHANNEL, "CHANNEL"),
        (pending::DISK, "DISK"),
        (pending::SNAPSHOT, "SNAPSHOT"),
        (pending::HANDOVER, "HANDOVER"),
        (pending::BALLOON, "BALLOON"),
        (pending::DUMP, "DUMP"),
    ]
    .iter()
    .filter(|(b, _)| bits & b != 0)
    .map(|(_, n)| (*n).to_owned())
    .collect();
    let unknown = bits & !pending::ALL;
    if unknown != 0 {
        v.push(format!("{unknown:#x}"));
    }
    if v.is_empty() {
        "none".into()
    } else {
        v.join("|")
    }
}
