//! Per-tenant resource limits on the host: CPU (cgroup v2 `cpu.max`, or `RLIMIT_CPU`).
//!
//! Memory needs nothing here: the guest-memory memfd has a sealed size, and the sandbox can
//! map nothing else. Threads need nothing either: the stub creates one thread per vCPU before
//! its seccomp filter is installed, and the filter has no `clone`.
//!
//! CPU: if the host process sits in a writable cgroup v2 hierarchy, each tenant with a CPU
//! limit gets a child cgroup `pvmux-<host pid>-<tenant>` of the host's own cgroup, with
//! `cpu.max` set from the limit, and the sandbox is moved into it; the cgroup is removed when
//! the tenant ends. Otherwise (cgroup v1 or hybrid, read-only, no permission, no `cpu`
//! controller) the rate limit cannot be enforced, and only a total CPU-seconds budget
//! (`RLIMIT_CPU`, set with `prlimit` on the sandbox) is available. The budget applies in
//! both cases when configured. The mechanism used is logged at info level.

use std::io;
use std::path::{Path, PathBuf};

/// Root of the cgroup v2 hierarchy.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// `cpu.max` period, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;
/// `statfs` magic of a cgroup v2 file system.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The host process's cgroup situation, as probed (see [`CgroupProbe::detect`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupProbe {
    /// The unified-hierarchy path from the `0::` line of `/proc/self/cgroup`, if any.
    pub v2_path: Option<String>,
    /// Whether [`CGROUP_ROOT`] is a cgroup v2 mount (not the tmpfs of a v1/hybrid layout).
    pub root_is_v2: bool,
}

impl CgroupProbe {
    /// Probes `/proc/self/cgroup` and the file system type of [`CGROUP_ROOT`].
    pub fn detect() -> Self {
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let root_is_v2 =
            rustix::fs::statfs(CGROUP_ROOT).is_ok_and(|s| s.f_type == CGROUP2_SUPER_MAGIC);
        Self {
            v2_path: parse_v2_path(&text).map(str::to_owned),
            root_is_v2,
        }
    }

    /// The host's own cgroup directory if the unified hierarchy is usable at all.
    pub fn own_dir(&self) -> Result<PathBuf, String> {
        let Some(path) = &self.v2_path else {
            return Err("no cgroup v2 entry in /proc/self/cgroup (cgroup v1)".into());
        };
        if !self.root_is_v2 {
            return Err(format!(
                "{CGROUP_ROOT} is not a cgroup v2 mount (cgroup v1 or hybrid layout)"
            ));
        }
        if path.split('/').any(|c| c == "..") {
            return Err(format!("unusable cgroup path {path:?}"));
        }
        Ok(Path::new(CGROUP_ROOT).join(path.trim_start_matches('/')))
    }
}

/// The unified-hierarchy path in the text of `/proc/self/cgroup` (the `0::PATH` line).
pub fn parse_v2_path(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim)
        .filter(|p| p.starts_with('/'))
}

/// How a tenant's CPU use is limited.
#[derive(Clone, Debug, PartialEq)]
pub enum CpuPlan {
    /// No CPU limit was asked for.
    Unlimited,
    /// A rate limit with cgroup v2 `cpu.max` in this cgroup directory (created for the
    /// tenant), plus a CPU-seconds budget if one was asked for.
    Cgroup {
        /// The tenant's cgroup directory.
        dir: PathBuf,
        /// `cpu.max` quota per [`CPU_PERIOD_US`].
        quota_us: u64,
        /// CPU-seconds budget (`RLIMIT_CPU`), if any.
        cpu_seconds: Option<u64>,
    },
    /// Only a total CPU-seconds budget with `RLIMIT_CPU` (cgroups unusable or not needed).
    Rlimit {
        /// Budget in CPU seconds.
        cpu_seconds: u64,
        /// Why a requested rate limit is not enforced, if one was requested.
        rate_unenforced: Option<String>,
    },
    /// A rate limit was asked for, cgroups are unusable and no CPU-seconds budget was given:
    /// nothing enforces it.
    Unenforced {
        /// Why.
        reason: String,
    },
}

/// The `cpu.max` quota for `cpus` CPUs (at least 1 ms per period).
pub fn quota_us(cpus: f64) -> u64 {
    ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000)
}

/// A tenant's cgroup name: `pvmux-<host pid>-<tenant>` with the name reduced to
/// `[A-Za-z0-9_.-]` (at most 64 characters).
pub fn cgroup_name(host_pid: u32, tenant: &str) -> String {
    let clean: String = tenant
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("pvmux-{host_pid}-{clean}")
}

/// Decides the CPU limit mechanism (pure: `cgroup_dir` is the host's own cgroup directory
/// or why the unified hierarchy is unusable, and `parent_writable` whether a child could be
/// created there — `Err` carries the reason).
pub fn plan_cpu(
    cpus: Option<f64>,
    cpu_seconds: Option<u64>,
    cgroup_dir: Result<PathBuf, String>,
    parent_writable: impl FnOnce(&Path) -> Result<(), String>,
    name: &str,
) -> CpuPlan {
    let Some(cpus) = cpus.filter(|c| c.is_finite() && *c > 0.0) else {
        return match cpu_seconds {
            Some(s) => CpuPlan::Rlimit {
                cpu_seconds: s,
                rate_unenforced: None,
            },
            None => CpuPlan::Unlimited,
        };
    };
    let usable = cgroup_dir.and_then(|d| parent_writable(&d).map(|()| d));
    match (usable, cpu_seconds) {
        (Ok(parent), _) => CpuPlan::Cgroup {
            dir: parent.join(name),
            quota_us: quota_us(cpus),
            cpu_seconds,
        },
        (Err(reason), Some(s)) => CpuPlan::Rlimit {
            cpu_seconds: s,
            rate_unenforced: Some(reason),
        },
        (Err(reason), None) => CpuPlan::Unenforced { reason },
    }
}

/// Whether the host may create a child cgroup with the `cpu` controller in `parent`:
/// `cpu` is listed in its `cgroup.controllers`, enabled (or enableable) in its
/// `cgroup.subtree_control`, and the directory is writable.
pub fn check_parent(parent: &Path) -> Result<(), String> {
    let controllers = std::fs::read_to_string(parent.join("cgroup.controllers"))
        .map_err(|e| format!("{}: {e}", parent.join("cgroup.controllers").display()))?;
    if !controllers.split_whitespace().any(|c| c == "cpu") {
        return Err(format!(
            "the cpu controller is not available in {}",
            parent.display()
        ));
    }
    let sc = parent.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&sc).map_err(|e| format!("{}: {e}", sc.display()))?;
    if !enabled.split_whitespace().any(|c| c == "cpu") {
        std::fs::write(&sc, "+cpu")
            .map_err(|e| format!("enabling cpu in {}: {e}", sc.display()))?;
    }
    rustix::fs::access(parent, rustix::fs::Access::WRITE_OK)
        .map_err(|e| format!("{}: {}", parent.display(), io::Error::from(e)))
}

/// Whether an error means "cgroups are not usable here" (as opposed to a surprise).
pub fn is_unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EACCES | libc::EPERM | libc::EROFS | libc::ENOENT | libc::EBUSY | libc::ENOTSUP)
    )
}

/// A tenant's cgroup; removed on drop (after the sandbox has been reaped).
#[derive(Debug)]
pub struct TenantCgroup {
    dir: PathBuf,
}

impl TenantCgroup {
    /// Creates `dir`, writes `cpu.max` and moves `pid` into it. On failure nothing is left.
    pub fn create(dir: &Path, quota_us: u64, pid: u32) -> io::Result<Self> {
        std::fs::create_dir(dir)?;
        let cg = Self {
            dir: dir.to_owned(),
        };
        std::fs::write(dir.join("cpu.max"), format!("{quota_us} {CPU_PERIOD_US}"))?;
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        Ok(cg)
    }

    /// The cgroup directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// CPU time used by the cgroup so far (`usage_usec` of `cpu.stat`), in microseconds.
    pub fn usage_usec(&self) -> Option<u64> {
        let s = std::fs::read_to_string(self.dir.join("cpu.stat")).ok()?;
        s.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for TenantCgroup {
    fn drop(&mut self) {
        // An emptied cgroup can be busy for a moment after its last process was reaped.
        for _ in 0..50 {
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(e) => {
                    tracing::warn!("cannot remove cgroup {}: {e}", self.dir.display());
                    return;
                }
            }
        }
        tracing::warn!("cannot remove cgroup {}: still busy", self.dir.display());
    }
}

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
        // A sandbox under another uid, and no CAP_SYS_RESOURCE: the jail set the budget in
        // the child already (`crate::jail`); fine if /proc shows exactly that budget.
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

/// The CPU limits applied to a tenant's kernel sandbox, to apply to its user sandboxes too.
#[derive(Debug, Default)]
pub(crate) struct AppliedCpu {
    /// The tenant's cgroup (removed on drop, once every sandbox in it was reaped).
    pub(crate) cgroup: Option<TenantCgroup>,
    /// The `RLIMIT_CPU` budget set, in seconds.
    pub(crate) rlimit_secs: Option<u64>,
}

/// What a user sandbox of the tenant gets: the same cgroup, the same `RLIMIT_CPU` budget
/// (per process: each sandbox has its own budget of that many seconds).
#[derive(Clone, Debug, Default)]
pub(crate) struct SpaceCpu {
    pub(crate) cgroup_dir: Option<PathBuf>,
    pub(crate) rlimit_secs: Option<u64>,
}

impl AppliedCpu {
    /// What user sandboxes of the tenant get.
    pub(crate) fn for_spaces(&self) -> SpaceCpu {
        SpaceCpu {
            cgroup_dir: self.cgroup.as_ref().map(|c| c.dir().to_owned()),
            rlimit_secs: self.rlimit_secs,
        }
    }
}

impl SpaceCpu {
    /// Puts user sandbox `pid` into the tenant's cgroup and sets its budget. Failures are
    /// logged.
    pub(crate) fn apply(&self, name: &str, pid: u32) {
        if let Some(dir) = &self.cgroup_dir {
            if let Err(e) = std::fs::write(dir.join("cgroup.procs"), pid.to_string()) {
                tracing::error!(tenant = %name, pid, "cannot move a user sandbox into {}: {e}", dir.display());
            }
        }
        if let Some(secs) = self.rlimit_secs {
            if let Err(e) = set_cpu_rlimit(pid, secs) {
                tracing::error!(tenant = %name, pid, "cannot set RLIMIT_CPU of a user sandbox: {e}");
            }
        }
    }
}

/// Applies the CPU limits to a freshly spawned sandbox `pid` of tenant `name`; returns the
/// cgroup to remove when the tenant ends, if one was created, and the budget set. Failures
/// are logged: a tenant whose limit cannot be applied still runs (a budget that cannot be set
/// is an error log).
pub(crate) fn apply_cpu(
    name: &str,
    pid: u32,
    cpus: Option<f64>,
    cpu_seconds: Option<u64>,
) -> AppliedCpu {
    let mut applied = AppliedCpu::default();
    applied.cgroup = apply_cpu_inner(name, pid, cpus, cpu_seconds, &mut applied.rlimit_secs);
    applied
}

fn apply_cpu_inner(
    name: &str,
    pid: u32,
    cpus: Option<f64>,
    cpu_seconds: Option<u64>,
    rlimit_set: &mut Option<u64>,
) -> Option<TenantCgroup> {
    if cpus.is_none() && cpu_seconds.is_none() {
        return None;
    }
    let probe = CgroupProbe::detect();
    let plan = plan_cpu(
        cpus,
        cpu_seconds,
        probe.own_dir(),
        check_parent,
        &cgroup_name(std::process::id(), name),
    );
    let mut rlimit = |secs: u64| match set_cpu_rlimit(pid, secs) {
        Ok(()) => {
            *rlimit_set = Some(secs);
            tracing::info!(tenant = %name, pid, "CPU budget: RLIMIT_CPU {secs} s")
        }
        Err(e) => tracing::error!(tenant = %name, pid, "cannot set RLIMIT_CPU: {e}"),
    };
    match plan {
        CpuPlan::Unlimited => None,
        CpuPlan::Cgroup {
            dir,
            quota_us,
            cpu_seconds,
        } => {
            if let Some(s) = cpu_seconds {
                rlimit(s);
            }
            match TenantCgroup::create(&dir, quota_us, pid) {
                Ok(cg) => {
                    tracing::info!(
                        tenant = %name, pid,
                        "CPU limit: cgroup v2 {} cpu.max {quota_us} {CPU_PERIOD_US}",
                        dir.display()
                    );
                    Some(cg)
                }
                Err(e) => {
                    let how = if is_unavailable(&e) {
                        "unavailable"
                    } else {
                        "failed"
                    };
                    tracing::warn!(
                        tenant = %name,
                        "CPU rate limit not enforced: cgroup {} {how}: {e}",
                        dir.display()
                    );
                    None
                }
            }
        }
        CpuPlan::Rlimit {
            cpu_seconds,
            rate_unenforced,
        } => {
            if let Some(reason) = rate_unenforced {
                tracing::info!(
                    tenant = %name,
                    "CPU rate limit not enforceable ({reason}); falling back to a CPU-seconds \
                     budget"
                );
            }
            rlimit(cpu_seconds);
            None
        }
        CpuPlan::Unenforced { reason } => {
            tracing::warn!(
                tenant = %name,
                "CPU rate limit not enforceable ({reason}) and no CPU-seconds budget given"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_self_cgroup() {
        assert_eq!(
            parse_v2_path("0::/user.slice/a.scope\n"),
            Some("/user.slice/a.scope")
        );
        let hybrid = "9:name=systemd:/\n4:memory:/x\n1:cpu:/\n0::/\n";
        assert_eq!(parse_v2_path(hybrid), Some("/"));
        assert_eq!(parse_v2_path("4:memory:/x\n1:cpu:/\n"), None);
        assert_eq!(parse_v2_path(""), None);
        let p = CgroupProbe {
            v2_path: Some("/a/b".into()),
            root_is_v2: true,
        };
        assert_eq!(p.own_dir(), Ok(PathBuf::from("/sys/fs/cgroup/a/b")));
        let hybrid = CgroupProbe {
            v2_path: Some("/".into()),
            root_is_v2: false,
        };
        assert!(hybrid
            .own_dir()
            .unwrap_err()
            .contains("not a cgroup v2 mount"));
        let v1 = CgroupProbe {
            v2_path: None,
            root_is_v2: false,
        };
        assert!(v1.own_dir().unwrap_err().contains("cgroup v1"));
        let evil = CgroupProbe {
            v2_path: Some("/../etc".into()),
            root_is_v2: true,
        };
        assert!(evil.own_dir().is_err());
    }

    #[test]
    fn plans_the_cpu_mechanism() {
        let ok = |_: &Path| Ok(());
        let denied = |_: &Path| Err::<(), _>("EACCES".to_owned());
        let dir = || Ok(PathBuf::from("/sys/fs/cgroup/h"));
        let v1 = || Err("cgroup v1".to_owned());
        assert_eq!(plan_cpu(None, None, dir(), ok, "n"), CpuPlan::Unlimited);
        assert_eq!(
            plan_cpu(Some(0.5), None, dir(), ok, "n"),
            CpuPlan::Cgroup {
                dir: "/sys/fs/cgroup/h/n".into(),
                quota_us: 50_000,
                cpu_seconds: None
            }
        );
        assert_eq!(
            plan_cpu(Some(0.2), Some(5), dir(), ok, "n"),
            CpuPlan::Cgroup {
                dir: "/sys/fs/cgroup/h/n".into(),
                quota_us: 20_000,
                cpu_seconds: Some(5)
            }
        );
        // Fallbacks: not writable, or v1.
        assert_eq!(
            plan_cpu(Some(0.5), Some(3), dir(), denied, "n"),
            CpuPlan::Rlimit {
                cpu_seconds: 3,
                rate_unenforced: Some("EACCES".into())
            }
        );
        assert_eq!(
            plan_cpu(Some(0.5), Some(3), v1(), ok, "n"),
            CpuPlan::Rlimit {
                cpu_seconds: 3,
                rate_unenforced: Some("cgroup v1".into())
            }
        );
        assert_eq!(
            plan_cpu(Some(0.5), None, v1(), ok, "n"),
            CpuPlan::Unenforced {
                reason: "cgroup v1".into()
            }
        );
        // A budget alone never needs cgroups.
        assert_eq!(
            plan_cpu(None, Some(2), v1(), |_: &Path| panic!("not probed"), "n"),
            CpuPlan::Rlimit {
                cpu_seconds: 2,
                rate_unenforced: None
            }
        );
        // Nonsense rates are no rate.
        assert_eq!(
            plan_cpu(Some(0.0), None, dir(), ok, "n"),
            CpuPlan::Unlimited
        );
        assert_eq!(
            plan_cpu(Some(f64::NAN), None, dir(), ok, "n"),
            CpuPlan::Unlimited
        );
        assert_eq!(quota_us(0.001), 1000);
        assert_eq!(quota_us(2.0), 200_000);
        assert_eq!(cgroup_name(42, "a b/../c"), "pvmux-42-a_b_.._c");
        let e = io::Error::from_raw_os_error(libc::EROFS);
        assert!(is_unavailable(&e));
        assert!(!is_unavailable(&io::Error::from_raw_os_error(libc::EIO)));
    }

    #[test]
    fn this_machine_probe_is_consistent() {
        // Whatever this host offers, detection does not fail and explains itself.
        let p = CgroupProbe::detect();
        match p.own_dir() {
            Ok(d) => assert!(d.starts_with(CGROUP_ROOT)),
            Err(why) => assert!(!why.is_empty()),
        }
    }
}
