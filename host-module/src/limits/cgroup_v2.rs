//! cgroup v2: is the unified hierarchy usable for tenant cgroups (the host's own cgroup from
//! the `0::` line of `/proc/self/cgroup`, a cgroup2 mount at [`CGROUP_ROOT`], the `cpu`
//! controller available and enabled for children, the directory writable)?

use std::io;
use std::path::{Path, PathBuf};

/// Root of the cgroup v2 hierarchy.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// `statfs` magic of a cgroup v2 file system.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The host process's cgroup v2 situation, as probed (see [`CgroupProbe::detect`]).
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

    /// The host's own cgroup directory if a tenant cgroup can be created under it
    /// ([`check_parent`]).
    pub fn usable_dir(&self) -> Result<PathBuf, String> {
        let d = self.own_dir()?;
        check_parent(&d)?;
        Ok(d)
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

/// Whether the host may create a child cgroup with the `cpu` controller in `parent`:
/// `cpu` is listed in its `cgroup.controllers`, enabled (or enableable) in its
/// `cgroup.subtree_control`, and the directory is writable. `memory` and `pids` are enabled
/// too when available (best effort: the tenant cgroup writes their limits only if their
/// files exist).
pub fn check_parent(parent: &Path) -> Result<(), String> {
    let controllers = std::fs::read_to_string(parent.join("cgroup.controllers"))
        .map_err(|e| format!("{}: {e}", parent.join("cgroup.controllers").display()))?;
    let available: Vec<&str> = controllers.split_whitespace().collect();
    if !available.contains(&"cpu") {
        return Err(format!(
            "the cpu controller is not available in {}",
            parent.display()
        ));
    }
    let sc = parent.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&sc).map_err(|e| format!("{}: {e}", sc.display()))?;
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    if !enabled.contains(&"cpu") {
        std::fs::write(&sc, "+cpu")
            .map_err(|e| format!("enabling cpu in {}: {e}", sc.display()))?;
    }
    for c in ["memory", "pids"] {
        if available.contains(&c) && !enabled.contains(&c) {
            // Best effort: without it, the tenant cgroup just has no such limit.
            let _ = std::fs::write(&sc, format!("+{c}"));
        }
    }
    rustix::fs::access(parent, rustix::fs::Access::WRITE_OK)
        .map_err(|e| format!("{}: {}", parent.display(), io::Error::from(e)))
}

/// CPU time used by the cgroup `dir` so far (`usage_usec` of `cpu.stat`), in nanoseconds.
pub fn usage_ns(dir: &Path) -> Option<u64> {
    let s = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|us| us.saturating_mul(1000))
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
    fn this_machine_probe_is_consistent() {
        // Whatever this host offers, detection does not fail and explains itself.
        let p = CgroupProbe::detect();
        match p.own_dir() {
            Ok(d) => assert!(d.starts_with(CGROUP_ROOT)),
            Err(why) => assert!(!why.is_empty()),
        }
    }
}
