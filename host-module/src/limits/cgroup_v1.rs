//! cgroup v1 (and the v1 half of a hybrid layout): where each controller's hierarchy is
//! mounted (`/proc/self/mountinfo`), where the host's own cgroup is in it (the
//! `ID:CONTROLLERS:PATH` lines of `/proc/self/cgroup`), and whether that directory is
//! writable. The tenant's cgroup is created under the host's own, per controller.

use std::path::{Path, PathBuf};

use super::plan::V1Parents;

/// The controllers a tenant cgroup uses.
pub const CONTROLLERS: [&str; 4] = ["cpu", "cpuacct", "memory", "pids"];

/// One cgroup v1 mount: its mount point, the hierarchy path mounted there, its controllers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V1Mount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The hierarchy path mounted there (`/` for a whole hierarchy).
    pub root: String,
    /// Its controllers (from the super options).
    pub controllers: Vec<String>,
}

/// The cgroup v1 mounts in the text of `/proc/self/mountinfo`.
pub fn parse_mounts(mountinfo: &str) -> Vec<V1Mount> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let mut post = post.split(' ');
            if post.next()? != "cgroup" {
                return None;
            }
            let _source = post.next()?;
            let opts = post.next()?;
            Some(V1Mount {
                mount_point: PathBuf::from(unescape(pre.get(4)?)),
                root: unescape(pre.get(3)?),
                controllers: opts
                    .split(',')
                    .filter(|o| CONTROLLERS.contains(o))
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .filter(|m| !m.controllers.is_empty())
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let d = |k: usize| u32::from(b[i + k] - b'0');
            let v = d(1) * 64 + d(2) * 8 + d(3);
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The host's own cgroup path for `controller` in the text of `/proc/self/cgroup`.
pub fn own_path<'a>(proc_self_cgroup: &'a str, controller: &str) -> Option<&'a str> {
    proc_self_cgroup.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_id, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then_some(path.trim())
    })
}

/// The directory of the host's own cgroup for `controller`, or why there is none.
pub fn own_dir(
    mounts: &[V1Mount],
    proc_self_cgroup: &str,
    controller: &str,
) -> Result<PathBuf, String> {
    let m = mounts
        .iter()
        .find(|m| m.controllers.iter().any(|c| c == controller))
        .ok_or_else(|| format!("{controller}: not mounted"))?;
    let path = own_path(proc_self_cgroup, controller)
        .ok_or_else(|| format!("{controller}: not in /proc/self/cgroup"))?;
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(format!("{controller}: unusable cgroup path {path:?}"));
    }
    // A mount of a sub-tree (a container's view): the path is relative to the hierarchy.
    let rel = if m.root == "/" {
        path
    } else {
        path.strip_prefix(m.root.as_str())
            .filter(|r| r.is_empty() || r.starts_with('/'))
            .ok_or_else(|| format!("{controller}: {path} is outside the mounted {}", m.root))?
    };
    Ok(m.mount_point.join(rel.trim_start_matches('/')))
}

/// Probes this host: every controller of [`CONTROLLERS`] whose host cgroup directory
/// exists and is writable. `Err` when there is no cgroup v1 mount at all.
pub fn detect() -> Result<V1Parents, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let mounts = parse_mounts(&mountinfo);
    if mounts.is_empty() {
        return Err("no cgroup v1 mount".into());
    }
    let cg = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let usable = |c: &str| {
        let d = own_dir(&mounts, &cg, c).ok()?;
        writable(&d).then_some(d)
    };
    Ok(V1Parents {
        cpu: usable("cpu"),
        cpuacct: usable("cpuacct"),
        memory: usable("memory"),
        pids: usable("pids"),
    })
}

fn writable(dir: &Path) -> bool {
    rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).is_ok()
        && dir.join("cgroup.procs").exists()
}

/// CPU time used by the cgroup `dir` of the `cpuacct` hierarchy (`cpuacct.usage`), in ns.
pub fn usage_ns(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join("cpuacct.usage"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 /sub /sys/fs/cgroup/pids rw,relatime shared:5 - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const CGROUP: &str = "\
9:name=systemd:/
8:pids:/sub/x
4:memory:/process_api/abc
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn finds_the_hosts_cgroups() {
        let m = parse_mounts(MOUNTINFO);
        assert_eq!(m.len(), 4, "{m:?}");
        assert_eq!(m[0].controllers, ["cpu"]);
        assert_eq!(m[3].root, "/sub");
        assert_eq!(
            own_dir(&m, CGROUP, "cpu"),
            Ok(PathBuf::from("/sys/fs/cgroup/cpu"))
        );
        assert_eq!(
            own_dir(&m, CGROUP, "memory"),
            Ok(PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"))
        );
        // A sub-tree mount: the path is relative to its root.
        assert_eq!(
            own_dir(&m, CGROUP, "pids"),
            Ok(PathBuf::from("/sys/fs/cgroup/pids/x"))
        );
        assert!(own_dir(&m, CGROUP, "blkio").is_err());
        assert!(own_dir(&m, "1:cpu:/../x\n", "cpu").is_err());
        assert!(own_dir(&m, "8:pids:/other\n", "pids").is_err());
    }

    #[test]
    fn co_mounted_controllers() {
        let mi = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let m = parse_mounts(mi);
        let cg = "3:cpu,cpuacct:/a\n";
        assert_eq!(
            own_dir(&m, cg, "cpuacct"),
            Ok(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/a"))
        );
        assert_eq!(own_dir(&m, cg, "cpu"), own_dir(&m, cg, "cpuacct"));
        assert_eq!(unescape("/a\\040b"), "/a b");
    }
}
