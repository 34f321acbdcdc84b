//! The pure decisions behind a tenant's limits: which cgroup mechanism the host offers
//! (v2, v1 or none), what is written into the tenant's cgroup, and how CPU is accounted and
//! rate-limited. Everything here is a function of probed facts passed in, so every branch
//! is unit-tested without touching the host.

use std::path::{Path, PathBuf};

use crate::space::MAX_PROCESSES;

/// CFS period (`cpu.max` / `cpu.cfs_period_us`), in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Most sandbox processes of one tenant: the kernel sandbox and [`MAX_PROCESSES`] user
/// sandboxes (spares included).
pub const MAX_SANDBOXES: u64 = 1 + MAX_PROCESSES as u64;

/// Fixed host memory per sandbox charged to the tenant's memory cgroup: the stub's image and
/// mappings of the control region, the kernel's per-process and per-thread structures, VMAs.
pub const SANDBOX_FIXED_BYTES: u64 = 2 << 20;

/// Host memory per vCPU thread of a sandbox: the stub's per-vCPU areas (parking and signal
/// stacks, `StubCpu`) and the host kernel's thread stack and timers.
pub const SANDBOX_PER_VCPU_BYTES: u64 = 512 << 10;

/// What the tenant's configuration asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Request {
    /// `--cpus`: a rate in CPUs.
    pub cpus: Option<f64>,
    /// `--cpu-seconds`: a budget for the whole tenant.
    pub cpu_seconds: Option<u64>,
    /// `--mem` in bytes.
    pub mem_bytes: u64,
    /// `--vcpus`.
    pub vcpus: u32,
    /// `--cpu-shares`: a scheduling weight in cgroup v1 `cpu.shares` units (1024 = one
    /// thread's default); `None`: the weight follows `vcpus`.
    pub cpu_shares: Option<u64>,
}

impl Request {
    /// The rate, if it is a usable one (finite and positive).
    pub fn rate(&self) -> Option<f64> {
        self.cpus.filter(|c| c.is_finite() && *c > 0.0)
    }
}

/// The parent directories a cgroup v1 tenant cgroup is created under, per controller (the
/// host's own cgroup in that controller's hierarchy); `None`: the controller is not mounted,
/// the host has no cgroup in it, or the directory is not writable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct V1Parents {
    /// `cpu` (`cpu.cfs_quota_us`).
    pub cpu: Option<PathBuf>,
    /// `cpuacct` (`cpuacct.usage`).
    pub cpuacct: Option<PathBuf>,
    /// `memory` (`memory.limit_in_bytes`).
    pub memory: Option<PathBuf>,
    /// `pids` (`pids.max`).
    pub pids: Option<PathBuf>,
}

impl V1Parents {
    /// Whether no controller is usable.
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.cpuacct.is_none() && self.memory.is_none() && self.pids.is_none()
    }

    /// The same controllers, each with `name` appended (the tenant's directories).
    pub fn join(&self, name: &str) -> Self {
        let j = |p: &Option<PathBuf>| p.as_ref().map(|p| p.join(name));
        Self {
            cpu: j(&self.cpu),
            cpuacct: j(&self.cpuacct),
            memory: j(&self.memory),
            pids: j(&self.pids),
        }
    }

    /// The distinct directories (co-mounted controllers share one), in a fixed order.
    pub fn dirs(&self) -> Vec<&Path> {
        let mut v: Vec<&Path> = Vec::new();
        for p in [&self.cpu, &self.cpuacct, &self.memory, &self.pids]
            .into_iter()
            .flatten()
        {
            if !v.contains(&p.as_path()) {
                v.push(p);
            }
        }
        v
    }
}

/// What the host offers for tenant cgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Support {
    /// A writable cgroup v2 directory (the host's own) with the `cpu` controller.
    V2 {
        /// The host's own cgroup directory.
        parent: PathBuf,
    },
    /// Writable cgroup v1 hierarchies.
    V1(V1Parents),
    /// Nothing usable.
    None {
        /// Why (v2's reason and v1's, joined).
        reason: String,
    },
}

/// Chooses the mechanism: cgroup v2 if usable, else cgroup v1 if any controller is usable,
/// else none. `v1` is only probed when v2 is not usable.
pub fn choose(
    v2: Result<PathBuf, String>,
    v1: impl FnOnce() -> Result<V1Parents, String>,
) -> Support {
    match v2 {
        Ok(parent) => Support::V2 { parent },
        Err(why2) => match v1() {
            Ok(p) if !p.is_empty() => Support::V1(p),
            Ok(_) => Support::None {
                reason: format!("cgroup v2: {why2}; cgroup v1: no usable controller"),
            },
            Err(why1) => Support::None {
                reason: format!("cgroup v2: {why2}; cgroup v1: {why1}"),
            },
        },
    }
}

/// The tenant's cgroup: where, and what is written into it.
#[derive(Clone, Debug, PartialEq)]
pub struct CgroupPlan {
    /// The directories to create.
    pub kind: CgroupKind,
    /// CFS quota per [`CPU_PERIOD_US`] (when a rate was asked for and `cpu` is available).
    pub quota_us: Option<u64>,
    /// Memory limit (when `memory` is available), see [`memory_limit`].
    pub memory_bytes: u64,
    /// Task limit (when `pids` is available), see [`pids_limit`].
    pub pids: u64,
    /// `cpu.shares` asked for (v1: written as it is; v2: [`shares_to_weight`]); `None`:
    /// [`CgroupPlan::weight`] applies.
    pub shares: Option<u64>,
    /// Scheduling weight in units of one thread's default weight: `vcpus` (the tenant
    /// competes for the host's CPUs like its vCPU threads did as separate threads).
    pub weight: u32,
}

/// Which hierarchy the tenant's cgroup lives in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupKind {
    /// One cgroup v2 directory.
    V2(PathBuf),
    /// One directory per v1 controller (co-mounted controllers share one).
    V1(V1Parents),
}

/// How the whole tenant's CPU time is counted for `--cpu-seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accounting {
    /// The cgroup's counter (v2 `cpu.stat usage_usec`, v1 `cpuacct.usage`).
    Cgroup,
    /// The sum over the tenant's processes (live: `/proc/PID/stat`; reaped: `wait4`).
    Processes,
}

/// How `--cpus` is enforced.
#[derive(Clone, Debug, PartialEq)]
pub enum Rate {
    /// No rate asked for.
    None,
    /// The cgroup's CFS quota on the sandboxes, plus throttled host serving.
    Cgroup,
    /// No `cpu` controller: only host serving is throttled; the sandboxes' own rate is not
    /// limited (the budget still is).
    HostOnly {
        /// Why the sandboxes' rate is not limited.
        reason: String,
    },
}

/// Everything decided for one tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The tenant cgroup, if the host allows one.
    pub cgroup: Option<CgroupPlan>,
    /// Why there is no tenant cgroup.
    pub no_cgroup: Option<String>,
    /// How CPU time is counted.
    pub accounting: Accounting,
    /// How the rate is enforced.
    pub rate: Rate,
}

/// The range of cgroup v1 `cpu.shares`.
pub const SHARES_RANGE: std::ops::RangeInclusive<u64> = 2..=262_144;

/// cgroup v2 `cpu.weight` (1..=10000, 100 the default) for cgroup v1 `cpu.shares`
/// (2..=262144, 1024 the default), converted as runc and crun convert them.
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(*SHARES_RANGE.start(), *SHARES_RANGE.end());
    1 + ((s - 2) * 9999) / 262_142
}

/// The CFS quota for `cpus` CPUs (at least 1 ms per period).
pub fn quota_us(cpus: f64) -> u64 {
    ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000)
}

/// The page tables that map `bytes` with 4 KiB pages (one 8-byte entry per page, plus the
/// upper levels, rounded up to whole pages at each level).
pub fn page_table_bytes(bytes: u64) -> u64 {
    let mut total = 0;
    let mut entries = bytes.div_ceil(4096);
    for _ in 0..4 {
        let tables = entries.div_ceil(512).max(1);
        total += tables * 4096;
        entries = tables;
    }
    total
}

/// The tenant's memory-cgroup limit:
/// `mem + MAX_SANDBOXES × (SANDBOX_FIXED + vcpus × SANDBOX_PER_VCPU + 2 × page_tables(mem))`.
///
/// Guest memory (a shared memfd) is charged at most once, to whoever touches a page first;
/// each sandbox adds its fixed and per-vCPU host memory and page tables for mapping all of
/// guest memory twice (the kernel sandbox: the physmap and the shadow window; a user
/// sandbox: its pool mappings, with room for aliases). A tenant within its limits — every
/// page of `--mem` touched, every process the guest kernel allows — stays below it.
pub fn memory_limit(mem_bytes: u64, vcpus: u32) -> u64 {
    let per = SANDBOX_FIXED_BYTES
        + u64::from(vcpus) * SANDBOX_PER_VCPU_BYTES
        + 2 * page_table_bytes(mem_bytes);
    mem_bytes.saturating_add(MAX_SANDBOXES.saturating_mul(per))
}

/// The tenant's `pids` limit: `MAX_SANDBOXES × (vcpus + 1)` (a sandbox has one thread per
/// vCPU; one more for a user sandbox's start-up thread).
pub fn pids_limit(vcpus: u32) -> u64 {
    MAX_SANDBOXES * (u64::from(vcpus) + 1)
}

/// Decides the tenant's limits from what it asks for and what the host offers. `name` is
/// the tenant cgroup's directory name ([`cgroup_name`]).
pub fn plan(req: &Request, support: Support, name: &str) -> Plan {
    let quota = req.rate().map(quota_us);
    let (cgroup, no_cgroup) = match support {
        Support::V2 { parent } => (
            Some(CgroupPlan {
                kind: CgroupKind::V2(parent.join(name)),
                quota_us: quota,
                shares: req.cpu_shares,
                memory_bytes: memory_limit(req.mem_bytes, req.vcpus),
                pids: pids_limit(req.vcpus),
                weight: req.vcpus.max(1),
            }),
            None,
        ),
        Support::V1(parents) => (
            Some(CgroupPlan {
                quota_us: quota.filter(|_| parents.cpu.is_some()),
                shares: req.cpu_shares.filter(|_| parents.cpu.is_some()),
                // The `cpu` hierarchy only for a rate or a weight: a group there is a
                // scheduling entity of its own, which would change how the tenant competes
                // for the host's CPUs when nothing asked for it (`cpuacct` counts without
                // scheduling).
                kind: CgroupKind::V1(
                    V1Parents {
                        cpu: parents
                            .cpu
                            .clone()
                            .filter(|_| quota.is_some() || req.cpu_shares.is_some()),
                        ..parents.clone()
                    }
                    .join(name),
                ),
                memory_bytes: memory_limit(req.mem_bytes, req.vcpus),
                pids: pids_limit(req.vcpus),
                weight: req.vcpus.max(1),
            }),
            None,
        ),
        Support::None { reason } => (None, Some(reason)),
    };
    let (accounting, has_cpu) = match cgroup.as_ref() {
        Some(CgroupPlan {
            kind: CgroupKind::V2(_),
            ..
        }) => (Accounting::Cgroup, true),
        Some(CgroupPlan {
            kind: CgroupKind::V1(p),
            quota_us,
            ..
        }) => (
            if p.cpuacct.is_some() {
                Accounting::Cgroup
            } else {
                Accounting::Processes
            },
            quota_us.is_some(),
        ),
        None => (Accounting::Processes, false),
    };
    let rate = match (req.rate(), has_cpu) {
        (None, _) => Rate::None,
        (Some(_), true) => Rate::Cgroup,
        (Some(_), false) => Rate::HostOnly {
            reason: no_cgroup
                .clone()
                .unwrap_or_else(|| "no cgroup v1 cpu controller".into()),
        },
    };
    Plan {
        cgroup,
        no_cgroup,
        accounting,
        rate,
    }
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

/// The host pid in a tenant cgroup's name (for removing those a dead host left behind).
pub fn cgroup_owner(name: &str) -> Option<u32> {
    name.strip_prefix("pvmux-")?.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cpus: Option<f64>, cpu_seconds: Option<u64>) -> Request {
        Request {
            cpus,
            cpu_seconds,
            mem_bytes: 64 << 20,
            vcpus: 2,
            cpu_shares: None,
        }
    }

    fn v1_all() -> V1Parents {
        V1Parents {
            cpu: Some("/cg/cpu/h".into()),
            cpuacct: Some("/cg/cpuacct/h".into()),
            memory: Some("/cg/memory/h".into()),
            pids: Some("/cg/pids/h".into()),
        }
    }

    #[test]
    fn chooses_v2_then_v1_then_none() {
        let v2 = || Ok::<_, String>(PathBuf::from("/sys/fs/cgroup/h"));
        let no_v2 = || Err::<PathBuf, _>("hybrid".to_owned());
        assert_eq!(
            choose(v2(), || panic!("v1 not probed when v2 works")),
            Support::V2 {
                parent: "/sys/fs/cgroup/h".into()
            }
        );
        assert_eq!(choose(no_v2(), || Ok(v1_all())), Support::V1(v1_all()));
        let Support::None { reason } = choose(no_v2(), || Ok(V1Parents::default())) else {
            panic!()
        };
        assert!(reason.contains("hybrid") && reason.contains("no usable controller"));
        let Support::None { reason } = choose(no_v2(), || Err("EACCES".into())) else {
            panic!()
        };
        assert!(reason.contains("EACCES"));
    }

    #[test]
    fn plans_v2() {
        let s = Support::V2 {
            parent: "/sys/fs/cgroup/h".into(),
        };
        let p = plan(&req(Some(0.5), Some(3)), s.clone(), "n");
        let cg = p.cgroup.unwrap();
        assert_eq!(cg.kind, CgroupKind::V2("/sys/fs/cgroup/h/n".into()));
        assert_eq!(cg.quota_us, Some(50_000));
        assert_eq!(cg.memory_bytes, memory_limit(64 << 20, 2));
        assert_eq!(cg.pids, pids_limit(2));
        assert_eq!(cg.weight, 2);
        assert_eq!((p.accounting, p.rate), (Accounting::Cgroup, Rate::Cgroup));
        // A cgroup even without CPU flags (memory and pids bound the tenant).
        let p = plan(&req(None, None), s, "n");
        assert_eq!(p.cgroup.unwrap().quota_us, None);
        assert_eq!(p.rate, Rate::None);
    }

    #[test]
    fn plans_v1() {
        let p = plan(&req(Some(0.2), Some(5)), Support::V1(v1_all()), "n");
        let cg = p.cgroup.unwrap();
        assert_eq!(cg.kind, CgroupKind::V1(v1_all().join("n")));
        assert_eq!(cg.quota_us, Some(20_000));
        assert_eq!((p.accounting, p.rate), (Accounting::Cgroup, Rate::Cgroup));
        // Without a rate, no group in the `cpu` hierarchy (it would change scheduling).
        let p = plan(&req(None, Some(5)), Support::V1(v1_all()), "n");
        let CgroupKind::V1(dirs) = p.cgroup.unwrap().kind else {
            panic!()
        };
        assert_eq!(dirs.cpu, None);
        assert_eq!(dirs.cpuacct, Some("/cg/cpuacct/h/n".into()));
        assert_eq!((p.accounting, p.rate), (Accounting::Cgroup, Rate::None));
        // Without cpuacct the budget counts processes; without cpu the rate is host-only.
        let partial = V1Parents {
            cpu: None,
            cpuacct: None,
            ..v1_all()
        };
        let p = plan(&req(Some(0.2), Some(5)), Support::V1(partial), "n");
        assert_eq!(p.cgroup.as_ref().unwrap().quota_us, None);
        assert_eq!(p.accounting, Accounting::Processes);
        assert!(matches!(p.rate, Rate::HostOnly { .. }));
        // Co-mounted controllers share a directory.
        let co = V1Parents {
            cpu: Some("/cg/cpu,cpuacct/h".into()),
            cpuacct: Some("/cg/cpu,cpuacct/h".into()),
            memory: None,
            pids: None,
        };
        assert_eq!(co.join("n").dirs(), vec![Path::new("/cg/cpu,cpuacct/h/n")]);
        assert_eq!(v1_all().dirs().len(), 4);
    }

    #[test]
    fn cpu_shares_set_the_weight() {
        let shares = Request {
            cpu_shares: Some(512),
            ..req(None, None)
        };
        let p = plan(&shares, Support::V1(v1_all()), "n");
        let cg = p.cgroup.unwrap();
        assert_eq!(cg.shares, Some(512));
        // A weight puts the tenant in the `cpu` hierarchy, without a rate.
        let CgroupKind::V1(dirs) = cg.kind else {
            panic!()
        };
        assert_eq!(dirs.cpu, Some("/cg/cpu/h/n".into()));
        assert_eq!((cg.quota_us, p.rate), (None, Rate::None));
        let v2 = Support::V2 {
            parent: "/sys/fs/cgroup/h".into(),
        };
        assert_eq!(plan(&shares, v2, "n").cgroup.unwrap().shares, Some(512));
        // Without a `cpu` controller there is nothing to write it to.
        let no_cpu = V1Parents {
            cpu: None,
            ..v1_all()
        };
        let p = plan(&shares, Support::V1(no_cpu), "n");
        assert_eq!(p.cgroup.unwrap().shares, None);
        // runc's conversion to cgroup v2's cpu.weight.
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(u64::MAX), 10_000);
    }

    #[test]
    fn plans_without_cgroups() {
        let none = || Support::None {
            reason: "read-only".into(),
        };
        let p = plan(&req(Some(0.5), Some(3)), none(), "n");
        assert_eq!(p.cgroup, None);
        assert_eq!(p.no_cgroup.as_deref(), Some("read-only"));
        assert_eq!(p.accounting, Accounting::Processes);
        assert_eq!(
            p.rate,
            Rate::HostOnly {
                reason: "read-only".into()
            }
        );
        assert_eq!(plan(&req(None, Some(3)), none(), "n").rate, Rate::None);
        // Nonsense rates are no rate.
        assert_eq!(plan(&req(Some(0.0), None), none(), "n").rate, Rate::None);
        assert_eq!(
            plan(&req(Some(f64::NAN), None), none(), "n").rate,
            Rate::None
        );
    }

    #[test]
    fn formulas() {
        assert_eq!(quota_us(0.001), 1000);
        assert_eq!(quota_us(2.0), 200_000);
        // 64 MiB: 16384 PTEs = 32 page tables, + 1 page each above.
        assert_eq!(page_table_bytes(64 << 20), (32 + 3) * 4096);
        let m = memory_limit(64 << 20, 2);
        assert_eq!(
            m,
            (64 << 20) + MAX_SANDBOXES * ((2 << 20) + 2 * (512 << 10) + 2 * 35 * 4096)
        );
        assert_eq!(pids_limit(2), MAX_SANDBOXES * 3);
        assert_eq!(cgroup_name(42, "a b/../c"), "pvmux-42-a_b_.._c");
        assert_eq!(cgroup_owner("pvmux-42-a_b"), Some(42));
        assert_eq!(cgroup_owner("pvmux-x-a"), None);
        assert_eq!(cgroup_owner("other"), None);
    }
}
