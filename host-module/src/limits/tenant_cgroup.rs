//! A tenant's cgroup (v1: one directory per controller; v2: one directory): created with its
//! limits before the first sandbox joins, joined by every sandbox of the tenant right after
//! it is spawned, read for the tenant's CPU time, removed when the tenant ends. Directories
//! left by a host that died (named `pvmux-<pid>-...` with a pid that no longer runs) are
//! removed when a new one is created next to them.

use std::io;
use std::path::{Path, PathBuf};

use super::plan::{cgroup_owner, CgroupKind, CgroupPlan, CPU_PERIOD_US, SHARES_RANGE};
use super::{cgroup_v1, cgroup_v2};

/// Where the tenant's CPU time is read.
#[derive(Clone, Debug)]
enum Usage {
    V2(PathBuf),
    V1(PathBuf),
}

/// Where the tenant's CPU rate and weight are set.
#[derive(Clone, Debug)]
enum CpuFiles {
    /// `cpu.max`, `cpu.weight`.
    V2(PathBuf),
    /// `cpu.cfs_quota_us`, `cpu.cfs_period_us`, `cpu.shares`.
    V1(PathBuf),
}

/// A change of a live tenant's CPU controls ([`TenantCgroup::update_cpu`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuUpdate {
    /// CFS quota and period in µs; a quota of `None` is no limit.
    pub max: Option<(Option<u64>, u64)>,
    /// Weight as runc's `cpu.shares` (2..=262144; v2 converts it as runc does).
    pub shares: Option<u64>,
}

/// runc's conversion of `cpu.shares` (2..=262144) to cgroup v2's `cpu.weight` (1..=10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// A tenant's cgroup; removed on drop (after every sandbox in it was reaped).
#[derive(Debug)]
pub struct TenantCgroup {
    /// The directories created, in creation order.
    dirs: Vec<PathBuf>,
    /// Where its CPU controls are, if it has the `cpu` controller.
    cpu: Option<CpuFiles>,
    usage: Option<Usage>,
    /// The memory controller's peak-usage file, if any (logged when the tenant ends).
    peak: Option<PathBuf>,
    /// What is in force, for the log.
    desc: String,
}

impl TenantCgroup {
    /// Creates the directories of `plan` and writes its limits. On failure nothing is left.
    pub fn create(plan: &CgroupPlan) -> io::Result<Self> {
        let mut cg = Self {
            dirs: Vec::new(),
            cpu: None,
            usage: None,
            peak: None,
            desc: String::new(),
        };
        let mut desc = Vec::new();
        match &plan.kind {
            CgroupKind::V2(dir) => {
                cg.mkdir(dir)?;
                cg.usage = Some(Usage::V2(dir.clone()));
                cg.cpu = Some(CpuFiles::V2(dir.clone()));
                // cpu.weight: 100 is one thread's default (range 1..=10000).
                let w = plan.shares.map_or_else(
                    || (u64::from(plan.weight) * 100).clamp(1, 10_000),
                    super::plan::shares_to_weight,
                );
                std::fs::write(dir.join("cpu.weight"), w.to_string())?;
                desc.push(format!("cpu.weight {w}"));
                if let Some(q) = plan.quota_us {
                    std::fs::write(dir.join("cpu.max"), format!("{q} {CPU_PERIOD_US}"))?;
                    desc.push(format!("cpu.max {q} {CPU_PERIOD_US}"));
                }
                for (file, v) in [("memory.max", plan.memory_bytes), ("pids.max", plan.pids)] {
                    if dir.join(file).exists() {
                        std::fs::write(dir.join(file), v.to_string())?;
                        desc.push(format!("{file} {v}"));
                    }
                }
                cg.peak = Some(dir.join("memory.peak")).filter(|p| p.exists());
                cg.desc = format!("cgroup v2 {} ({})", dir.display(), desc.join(", "));
            }
            CgroupKind::V1(p) => {
                for d in p.dirs() {
                    cg.mkdir(d)?;
                }
                if let Some(d) = &p.cpu {
                    cg.cpu = Some(CpuFiles::V1(d.clone()));
                    // cpu.shares: 1024 is one thread's default.
                    let w = plan
                        .shares
                        .unwrap_or(u64::from(plan.weight) * 1024)
                        .clamp(*SHARES_RANGE.start(), *SHARES_RANGE.end());
                    std::fs::write(d.join("cpu.shares"), w.to_string())?;
                    desc.push(format!("cpu.shares {w}"));
                }
                if let (Some(d), Some(q)) = (&p.cpu, plan.quota_us) {
                    std::fs::write(d.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())?;
                    std::fs::write(d.join("cpu.cfs_quota_us"), q.to_string())?;
                    desc.push(format!("cpu.cfs_quota_us {q}/{CPU_PERIOD_US}"));
                }
                if let Some(d) = &p.cpuacct {
                    cg.usage = Some(Usage::V1(d.clone()));
                    desc.push("cpuacct".into());
                }
                if let Some(d) = &p.memory {
                    std::fs::write(
                        d.join("memory.limit_in_bytes"),
                        plan.memory_bytes.to_string(),
                    )?;
                    desc.push(format!("memory.limit_in_bytes {}", plan.memory_bytes));
                    cg.peak = Some(d.join("memory.max_usage_in_bytes"));
                }
                if let Some(d) = &p.pids {
                    std::fs::write(d.join("pids.max"), plan.pids.to_string())?;
                    desc.push(format!("pids.max {}", plan.pids));
                }
                let names: Vec<String> = p.dirs().iter().map(|d| d.display().to_string()).collect();
                cg.desc = format!("cgroup v1 {} ({})", names.join(" "), desc.join(", "));
            }
        }
        Ok(cg)
    }

    fn mkdir(&mut self, dir: &Path) -> io::Result<()> {
        if let Some(parent) = dir.parent() {
            sweep_stale(parent);
        }
        std::fs::create_dir(dir)?;
        self.dirs.push(dir.to_owned());
        Ok(())
    }

    /// What is in force (for the log).
    pub fn describe(&self) -> &str {
        &self.desc
    }

    /// The directories (tests check they are gone after the tenant).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Whether the tenant's CPU time can be read here.
    pub fn has_usage(&self) -> bool {
        self.usage.is_some()
    }

    /// Moves process `pid` (all its threads) into every directory of the cgroup.
    pub fn join(&self, pid: u32) -> io::Result<()> {
        for d in &self.dirs {
            std::fs::write(d.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    /// Whether its CPU rate and weight can be changed ([`TenantCgroup::update_cpu`]).
    pub fn has_cpu(&self) -> bool {
        self.cpu.is_some()
    }

    /// Changes the CPU rate and weight of the live tenant (`pvmux update`). Without the
    /// `cpu` controller: `ENOTSUP`, and nothing changes.
    pub fn update_cpu(&self, u: &CpuUpdate) -> io::Result<()> {
        let Some(cpu) = &self.cpu else {
            return Err(io::Error::from_raw_os_error(libc::ENOTSUP));
        };
        match cpu {
            CpuFiles::V2(d) => {
                if let Some((quota, period)) = u.max {
                    let q = quota.map_or("max".to_owned(), |q| q.to_string());
                    std::fs::write(d.join("cpu.max"), format!("{q} {period}"))?;
                }
                if let Some(s) = u.shares {
                    std::fs::write(d.join("cpu.weight"), shares_to_weight(s).to_string())?;
                }
            }
            CpuFiles::V1(d) => {
                if let Some((quota, period)) = u.max {
                    // Lift the quota first: the new period never meets the old quota
                    // (v1 checks each write against the hierarchy's rates).
                    std::fs::write(d.join("cpu.cfs_quota_us"), "-1")?;
                    std::fs::write(d.join("cpu.cfs_period_us"), period.to_string())?;
                    if let Some(q) = quota {
                        std::fs::write(d.join("cpu.cfs_quota_us"), q.to_string())?;
                    }
                }
                if let Some(s) = u.shares {
                    std::fs::write(d.join("cpu.shares"), s.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// The CFS quota and period in force (µs; quota `None`: no limit), if it has `cpu`.
    pub fn cpu_max(&self) -> Option<(Option<u64>, u64)> {
        match self.cpu.as_ref()? {
            CpuFiles::V2(d) => {
                let s = std::fs::read_to_string(d.join("cpu.max")).ok()?;
                let mut it = s.split_whitespace();
                let q = it.next()?;
                let p = it.next()?.parse().ok()?;
                Some((q.parse().ok(), p))
            }
            CpuFiles::V1(d) => {
                let read = |f: &str| std::fs::read_to_string(d.join(f)).ok();
                let q: i64 = read("cpu.cfs_quota_us")?.trim().parse().ok()?;
                let p = read("cpu.cfs_period_us")?.trim().parse().ok()?;
                Some((u64::try_from(q).ok(), p))
            }
        }
    }

    /// The CPU time of every process in the cgroup so far, in nanoseconds.
    pub fn usage_ns(&self) -> Option<u64> {
        match self.usage.as_ref()? {
            Usage::V2(d) => cgroup_v2::usage_ns(d),
            Usage::V1(d) => cgroup_v1::usage_ns(d),
        }
    }
}

impl Drop for TenantCgroup {
    fn drop(&mut self) {
        if let Some(peak) = self
            .peak
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
        {
            let dir = self.dirs.first().map(|d| d.display().to_string());
            tracing::info!(
                "tenant cgroup {}: peak memory {} bytes",
                dir.unwrap_or_default(),
                peak.trim()
            );
        }
        for d in self.dirs.iter().rev() {
            remove(d);
        }
    }
}

/// Removes an (emptied) cgroup directory: an emptied cgroup can be busy for a moment after
/// its last process was reaped; anything still in it is moved to the parent first.
fn remove(dir: &Path) {
    for i in 0..100 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                if i == 50 {
                    evacuate(dir);
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(e) => {
                tracing::warn!("cannot remove cgroup {}: {e}", dir.display());
                return;
            }
        }
    }
    tracing::warn!("cannot remove cgroup {}: still busy", dir.display());
}

/// Moves whatever is left in `dir` into its parent, but never this host process: on cgroup
/// v1 one of its threads (a tenant's reaper, `SpaceCpu::join_thread`) lists it there until
/// the thread has fully exited.
fn evacuate(dir: &Path) {
    let (Some(parent), Ok(procs)) = (
        dir.parent(),
        std::fs::read_to_string(dir.join("cgroup.procs")),
    ) else {
        return;
    };
    let me = std::process::id().to_string();
    for pid in procs.split_whitespace().filter(|p| *p != me) {
        let _ = std::fs::write(parent.join("cgroup.procs"), pid);
    }
}

/// Removes the tenant cgroups a host that is no longer running left in `parent` (empty
/// ones only: `rmdir` refuses a cgroup with processes).
fn sweep_stale(parent: &Path) {
    let Ok(rd) = std::fs::read_dir(parent) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(owner) = name.to_str().and_then(cgroup_owner) else {
            continue;
        };
        if owner != std::process::id() && !Path::new(&format!("/proc/{owner}")).exists() {
            tracing::info!("removing the stale tenant cgroup {}", e.path().display());
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::plan::{plan, Request};
    use crate::limits::{detect_support, Support};

    /// On a host that offers tenant cgroups: created with its limits, joined by a process
    /// whose CPU time it then counts, and removed (every directory) once that process is
    /// reaped.
    #[test]
    fn a_real_tenant_cgroup_counts_and_is_removed() {
        let support = detect_support();
        if matches!(support, Support::None { .. }) {
            eprintln!("no tenant cgroups on this host: {support:?}");
            return;
        }
        let req = Request {
            cpus: Some(0.5),
            cpu_seconds: Some(1),
            mem_bytes: 32 << 20,
            vcpus: 1,
            cpu_shares: Some(512),
        };
        let name = format!("pvmux-{}-unit-test", std::process::id());
        let p = plan(&req, support, &name);
        let cg = TenantCgroup::create(p.cgroup.as_ref().expect("a cgroup plan")).unwrap();
        assert!(cg.describe().contains(&name), "{}", cg.describe());
        let dirs = cg.dirs().to_vec();
        assert!(!dirs.is_empty());
        // The weight asked for is the one in force (v2: runc's conversion of 512 shares).
        let weight = dirs.iter().find_map(|d| {
            std::fs::read_to_string(d.join("cpu.shares"))
                .or_else(|_| std::fs::read_to_string(d.join("cpu.weight")))
                .ok()
        });
        if let Some(w) = weight {
            let want = if cg.describe().starts_with("cgroup v2") {
                super::super::plan::shares_to_weight(512)
            } else {
                512
            };
            assert_eq!(w.trim(), want.to_string(), "{}", cg.describe());
        }
        // A busy child: `sh` spinning until killed.
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        cg.join(child.id()).unwrap();
        for d in &dirs {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap();
            assert!(procs
                .split_whitespace()
                .any(|p| p == child.id().to_string()));
        }
        if cg.has_usage() {
            let start = std::time::Instant::now();
            while cg.usage_ns().unwrap_or(0) < 10_000_000 {
                assert!(start.elapsed().as_secs() < 30, "no CPU time counted");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        drop(cg);
        for d in &dirs {
            assert!(!d.exists(), "{} left behind", d.display());
        }
    }
}
