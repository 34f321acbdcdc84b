//! Per-tenant resource limits on the host: the tenant cgroup (CPU rate, memory, tasks) and
//! the CPU budget of the whole tenant.
//!
//! **Tenant cgroup.** Where the host allows it, every tenant gets one cgroup holding all of
//! its sandboxes (the kernel sandbox, user sandboxes, spares): cgroup v2 (one directory under
//! the host's own cgroup, [`cgroup_v2`]) or, when the unified hierarchy is not usable
//! (v1 or hybrid layout), cgroup v1 (one directory per controller `cpu`, `cpuacct`,
//! `memory`, `pids` under the host's own cgroup in that hierarchy, [`cgroup_v1`]). It is
//! named `pvmux-<host pid>-<n>-<tenant>`, carries the CFS quota for `--cpus`, a memory limit
//! and a task limit derived from `--mem` and `--vcpus` ([`plan::memory_limit`],
//! [`plan::pids_limit`]), is joined by each sandbox right after it is spawned (a sandbox
//! that cannot join is killed), and is removed when the tenant ends ([`TenantCgroup`]).
//!
//! **CPU budget** (`--cpu-seconds`, [`budget`]): the tenant's monitor thread samples the
//! whole tenant's CPU time every [`budget::SAMPLE_PERIOD`] — the cgroup's counter, or
//! without one the sum over its processes (live: `/proc/PID/stat`; reaped: `wait4`) — plus
//! the host work done on its behalf (the host threads that serve only this tenant charge
//! their own thread CPU time), and ends the tenant when the budget is spent. `RLIMIT_CPU`
//! of budget + 1 s on every sandbox stays as a backstop.
//!
//! **CPU rate** (`--cpus`): the cgroup's CFS quota on the sandboxes; host work is throttled
//! to the same rate over the whole tenant's CPU time (a host thread waits before serving the
//! next request while the tenant is over its rate). Without a `cpu` controller only host
//! work is throttled and the budget applies. The decision logic is [`plan::plan`]; the
//! mechanism in force is logged at info level.

pub mod budget;
pub mod cgroup_v1;
pub mod cgroup_v2;
pub mod plan;
pub mod tenant_cgroup;

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

pub use cgroup_v2::{check_parent, CgroupProbe, CGROUP_ROOT};
pub use plan::{cgroup_name, Accounting, Plan, Rate, Request, Support, CPU_PERIOD_US};
pub use tenant_cgroup::{shares_to_weight, CpuUpdate, TenantCgroup};

use crate::sandbox::{self, SandboxExit};
use crate::HostError;
use budget::TenantCpu;

/// Sets `RLIMIT_CPU` of `pid` to `seconds` (soft: SIGXCPU, which ends the sandbox; hard one
/// second later: SIGKILL).
pub fn set_cpu_rlimit(pid: u32, seconds: u64) -> io::Result<()> {
    let pid = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    let lim = rustix::process::Rlimit {
        current: Some(seconds),
        maximum: Some(seconds.saturating_add(1)),
    };
    match rustix::process::prlimit(Some(pid), rustix::process::Resource::Cpu, lim) {
        Ok(_) => Ok(()),
        // A sandbox under another uid, and no CAP_SYS_RESOURCE: the jail set the backstop in
        // the child already (`crate::jail`); fine if /proc shows exactly that value.
        Err(rustix::io::Errno::PERM)
            if cpu_rlimit_of(pid.as_raw_nonzero().get()) == Some(seconds) =>
        {
            Ok(())
        }
        Err(e) => Err(io::Error::from(e)),
    }
}

/// The soft `RLIMIT_CPU` of process `pid` in seconds, from `/proc/PID/limits`.
fn cpu_rlimit_of(pid: i32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max cpu time"))?;
    line["Max cpu time".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether an error means "cgroups are not usable here" (as opposed to a surprise).
pub fn is_unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EACCES | libc::EPERM | libc::EROFS | libc::ENOENT | libc::EBUSY | libc::ENOTSUP)
    )
}

/// Environment variable that turns tenant cgroups off when set to `0` (for hosts that
/// manage cgroups themselves, and to test the accounting without them).
pub const NO_CGROUP_ENV: &str = "PVMUX_TENANT_CGROUP";

/// Probes what this host offers for tenant cgroups (v2, else v1, else none).
pub fn detect_support() -> Support {
    if std::env::var_os(NO_CGROUP_ENV).is_some_and(|v| v == "0") {
        return Support::None {
            reason: format!("{NO_CGROUP_ENV}=0"),
        };
    }
    plan::choose(CgroupProbe::detect().usable_dir(), cgroup_v1::detect)
}

/// A tenant's CPU time ([`crate::TenantHandle::cpu_time`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// Its sandboxes' (guest code, and the host kernel's work for them).
    pub sandboxes: std::time::Duration,
    /// The host threads' work on its behalf, as counted for a CPU rate or budget (zero
    /// without one).
    pub host_work: std::time::Duration,
}

/// The limits in force for one tenant (held by its monitor thread; the cgroup is removed
/// when this is dropped, after every sandbox was reaped).
#[derive(Debug)]
pub(crate) struct TenantLimits {
    pub(crate) cgroup: Option<TenantCgroup>,
    pub(crate) cpu: Arc<TenantCpu>,
    pub(crate) accounting: Accounting,
    /// The per-sandbox `RLIMIT_CPU` backstop, in seconds.
    pub(crate) rlimit_secs: Option<u64>,
}

/// What each user sandbox of the tenant joins: the cgroup's directories, the backstop, and
/// the account its CPU time goes to.
#[derive(Clone, Debug)]
pub(crate) struct SpaceCpu {
    name: String,
    cgroup_dirs: Vec<PathBuf>,
    rlimit_secs: Option<u64>,
    cpu: Arc<TenantCpu>,
    count_reaped: bool,
    /// The tenant's CPU time is the cgroup's counter ([`Accounting::Cgroup`]).
    usage_in_cgroup: bool,
    /// The cgroup has a `cpu` controller directory (a rate or a weight): no host thread may
    /// join it ([`Self::join_thread`]).
    throttles: bool,
}

impl TenantLimits {
    /// What user sandboxes of the tenant get.
    pub(crate) fn for_spaces(&self, name: &str) -> SpaceCpu {
        SpaceCpu {
            name: name.to_owned(),
            cgroup_dirs: self
                .cgroup
                .as_ref()
                .map(|c| c.dirs().to_vec())
                .unwrap_or_default(),
            rlimit_secs: self.rlimit_secs,
            cpu: Arc::clone(&self.cpu),
            count_reaped: self.accounting == Accounting::Processes && self.cpu.active(),
            usage_in_cgroup: self.accounting == Accounting::Cgroup,
            throttles: self.cgroup.as_ref().is_some_and(TenantCgroup::has_cpu),
        }
    }

    /// Samples the sandboxes' CPU time into the account: the cgroup's counter, or the sum
    /// of the kernel sandbox `kernel_pid` and every user sandbox (live and reaped).
    pub(crate) fn sample(&self, kernel_pid: u32, spaces: &crate::space::Spaces) {
        self.cpu
            .set_sandboxes(self.sandboxes_ns(kernel_pid, spaces));
    }

    /// The sandboxes' CPU time so far (ns): the cgroup's counter, or the sum over the kernel
    /// sandbox `kernel_pid` and every user sandbox (live, and reaped when counted).
    pub(crate) fn sandboxes_ns(&self, kernel_pid: u32, spaces: &crate::space::Spaces) -> u64 {
        let ns = match (&self.cgroup, self.accounting) {
            (Some(cg), Accounting::Cgroup) => cg.usage_ns(),
            _ => None,
        };
        ns.unwrap_or_else(|| {
            let users = spaces.with_pids(|pids| {
                self.cpu.reaped_ns()
                    + pids
                        .map(|p| budget::proc_cpu_ns(p).unwrap_or(0))
                        .sum::<u64>()
            });
            users + budget::proc_cpu_ns(kernel_pid).unwrap_or(0)
        })
    }
}

impl Default for SpaceCpu {
    /// No cgroup, no budget (tests of spaces alone).
    fn default() -> Self {
        Self {
            name: String::new(),
            cgroup_dirs: Vec::new(),
            rlimit_secs: None,
            cpu: Arc::new(TenantCpu::new(None, None)),
            count_reaped: false,
            usage_in_cgroup: false,
            throttles: false,
        }
    }
}

impl SpaceCpu {
    /// Puts freshly spawned user sandbox `pid` (not reaped: its pid is ours) into the
    /// tenant's cgroup and sets its backstop. A sandbox that cannot join is killed: it would
    /// escape the tenant's limits.
    pub(crate) fn apply(&self, pid: u32) {
        let name = &self.name;
        for d in &self.cgroup_dirs {
            if let Err(e) = std::fs::write(d.join("cgroup.procs"), pid.to_string()) {
                tracing::error!(tenant = %name, pid, "cannot move a user sandbox into {}: {e}; killing it", d.display());
                if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                }
                return;
            }
        }
        self.apply_born_inside(pid);
    }

    /// Sets the backstop of user sandbox `pid`, born inside the tenant's cgroup (spawned by
    /// a thread that [joined](Self::join_thread) it): what [`Self::apply`] does but the move.
    pub(crate) fn apply_born_inside(&self, pid: u32) {
        if let Some(secs) = self.rlimit_secs {
            if let Err(e) = set_cpu_rlimit(pid, secs) {
                tracing::error!(tenant = %self.name, pid, "cannot set RLIMIT_CPU of a user sandbox: {e}");
            }
        }
    }

    /// Moves the calling thread alone into every directory of the tenant's cgroup, which
    /// only cgroup v1 allows (its `tasks` file), so that the processes it spawns are born
    /// there: [`Self::apply`]'s move of each one waits for an RCU grace period (87 µs on
    /// average, up to 16 ms, on the path of every `fork`'s spare: docs/BENCHMARKS.md).
    /// True when the thread is now in every one of them; false without a cgroup, on cgroup
    /// v2, when the cgroup has a `cpu` directory (a host thread must not be throttled by
    /// the tenant's rate while it holds locks other tenants' threads take), or when a move
    /// fails (spawned processes are then moved one by one, as before). The thread's CPU
    /// time then counts in the cgroup's, as its work is the tenant's; docs/SECURITY.md,
    /// "Tenant cgroup", says why the memory controller is safe to join.
    pub(crate) fn join_thread(&self) -> bool {
        if self.cgroup_dirs.is_empty() || self.throttles {
            return false;
        }
        let tid = rustix::thread::gettid().as_raw_nonzero().get().to_string();
        for d in &self.cgroup_dirs {
            let tasks = d.join("tasks");
            if !tasks.exists() {
                return false;
            }
            if let Err(e) = std::fs::write(&tasks, &tid) {
                tracing::debug!(tenant = %self.name, "cannot move the spawning thread into {}: {e}", d.display());
                return false;
            }
        }
        true
    }

    /// Whether the tenant's CPU time is the cgroup's counter (a thread in the cgroup must
    /// not also charge its time as host work).
    pub(crate) fn usage_in_cgroup(&self) -> bool {
        self.usage_in_cgroup
    }

    /// Whether the tenant's CPU time is counted over the processes the host reaps (no
    /// cgroup counts it): then every user sandbox must be the host's child.
    pub(crate) fn counts_reaped(&self) -> bool {
        self.count_reaped
    }

    /// Reaps user sandbox `pid`, adding its CPU time to the account when the tenant's CPU
    /// time is counted over processes.
    pub(crate) fn reap(&self, pid: rustix::process::Pid) -> Result<SandboxExit, HostError> {
        if !self.count_reaped {
            return sandbox::reap(pid);
        }
        let (exit, ns) = budget::reap_counting(pid)?;
        self.cpu.add_reaped(ns);
        Ok(exit)
    }

    /// The tenant's CPU account.
    pub(crate) fn account(&self) -> &Arc<TenantCpu> {
        &self.cpu
    }
}

/// Sets up the limits of tenant `name` with its freshly spawned kernel sandbox `pid`:
/// creates the tenant cgroup where the host allows it and moves `pid` into it, sets the
/// backstop, and logs what is in force. Failures are logged: a tenant whose cgroup cannot be
/// created still runs, counted over its processes.
pub(crate) fn apply(name: &str, pid: u32, req: Request) -> TenantLimits {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let cg_name = cgroup_name(
        std::process::id(),
        &format!("{}-{name}", SEQ.fetch_add(1, Relaxed)),
    );
    let mut p = plan::plan(&req, detect_support(), &cg_name);
    let cgroup = match p.cgroup.as_ref().map(TenantCgroup::create) {
        None => None,
        Some(Ok(cg)) => match cg.join(pid) {
            Ok(()) => Some(cg),
            Err(e) => {
                tracing::warn!(tenant = %name, "cannot move the sandbox into the tenant cgroup: {e}");
                None
            }
        },
        Some(Err(e)) => {
            let how = if is_unavailable(&e) {
                "unavailable"
            } else {
                "failed"
            };
            tracing::warn!(tenant = %name, "tenant cgroup {how}: {e}");
            None
        }
    };
    match &cgroup {
        Some(cg) => tracing::info!(tenant = %name, pid, "tenant cgroup: {}", cg.describe()),
        None => {
            let why = p
                .no_cgroup
                .clone()
                .unwrap_or_else(|| "could not be set up".into());
            tracing::info!(tenant = %name, "no tenant cgroup ({why})");
            p.accounting = Accounting::Processes;
            if req.rate().is_some() {
                p.rate = Rate::HostOnly { reason: why };
            }
        }
    }
    if cgroup.as_ref().is_some_and(|c| !c.has_usage()) {
        p.accounting = Accounting::Processes;
    }
    let cpu = Arc::new(TenantCpu::new(req.cpu_seconds, req.rate()));
    let mut rlimit_secs = None;
    if let Some(s) = req.cpu_seconds {
        let how = match p.accounting {
            Accounting::Cgroup => "the tenant cgroup's CPU counter",
            Accounting::Processes => "the sum over its processes",
        };
        // The backstop fires only if the monitor did not end the tenant first.
        let backstop = s.saturating_add(1);
        match set_cpu_rlimit(pid, backstop) {
            Ok(()) => rlimit_secs = Some(backstop),
            Err(e) => tracing::error!(tenant = %name, pid, "cannot set RLIMIT_CPU: {e}"),
        }
        tracing::info!(
            tenant = %name,
            "CPU budget: {s} s for the whole tenant ({how} plus host work on its behalf); \
             RLIMIT_CPU {backstop} s per sandbox as a backstop"
        );
    }
    match (&p.rate, req.rate()) {
        (Rate::Cgroup, Some(r)) => tracing::info!(
            tenant = %name,
            "CPU rate: {r} CPUs (the tenant cgroup's CFS quota on its sandboxes; host work \
             throttled to the same rate)"
        ),
        (Rate::HostOnly { reason }, Some(r)) if req.cpu_seconds.is_some() => tracing::info!(
            tenant = %name,
            "CPU rate {r} not enforceable on the sandboxes ({reason}): host work throttled, \
             falling back to the CPU-seconds budget"
        ),
        (Rate::HostOnly { reason }, Some(r)) => tracing::warn!(
            tenant = %name,
            "CPU rate {r} not enforceable on the sandboxes ({reason}) and no CPU-seconds \
             budget given: only host work is throttled"
        ),
        _ => {}
    }
    TenantLimits {
        cgroup,
        cpu,
        accounting: p.accounting,
        rlimit_secs,
    }
}
