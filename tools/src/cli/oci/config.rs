//! A bundle's `config.json` (read with the `oci-spec` crate) mapped onto `pvmux run`'s flags:
//! the container runs exactly as `pvmux run FLAGS -- ARGS` would (the monitor's command line
//! shows them). docs/OCI.md lists every field and what becomes of it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use oci_spec::runtime::{Mount, Spec};

/// Annotation: the guest's vCPU count (`--vcpus`).
pub(crate) const ANNOTATION_VCPUS: &str = "io.pvmux.vcpus";
/// Annotation: the guest kernel image (`--kernel`).
pub(crate) const ANNOTATION_KERNEL: &str = "io.pvmux.kernel";
/// Annotation: `"true"` leaves system-call sites unpatched (`--no-patch`).
pub(crate) const ANNOTATION_NO_PATCH: &str = "io.pvmux.no-patch";
/// Annotation: channels to other tenants, comma-separated names (`pvmux run --channel`).
pub(crate) const ANNOTATION_CHANNEL: &str = "io.pvmux.channel";

/// The smallest guest memory (`--mem`).
const MIN_MEM: u64 = 16 << 20;
/// Guest memory is a multiple of this.
const MEM_ALIGN: u64 = 2 << 20;
/// The guest memory a `memory.limit` of `limit` bytes gives (rounded up to 2 MiB, at least
/// 16 MiB).
pub(crate) fn guest_mem_for_limit(limit: u64) -> u64 {
    limit.next_multiple_of(MEM_ALIGN).max(MIN_MEM)
}

/// PATH when config.json's environment has none (runc's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The mount types the guest kernel provides itself.
const GUEST_OWN_TYPES: [&str; 8] = [
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "shm",
];

/// What `create` and `run` take from a bundle.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The absolute bundle directory.
    pub(crate) bundle: PathBuf,
    /// `pvmux run`'s arguments (after `run`), ending with `-- ARGS`.
    pub(crate) run_args: Vec<OsString>,
    /// config.json's annotations.
    pub(crate) annotations: BTreeMap<String, String>,
    /// Fields pvmux cannot honour, each one line for the log.
    pub(crate) warnings: Vec<String>,
    /// `process.terminal`: the container's stdio is a terminal (`--console-socket`).
    pub(crate) terminal: bool,
    /// The network namespace the engine made for the container (`linux.namespaces`, type
    /// `network`, with a path): the monitor joins it and the guest's sockets are host
    /// sockets there (`--net host`).
    pub(crate) netns: Option<PathBuf>,
    /// config.json's hooks.
    pub(crate) hooks: Option<oci_spec::runtime::Hooks>,
}

/// `process.capabilities` as the five masks. An effective capability that is not permitted
/// is an error (runc's `capset` fails so); an ambient one that is not both permitted and
/// inheritable is left out with a warning (runc ignores a failed raise). For config.json's
/// init and for `exec --process`.
pub(crate) fn cap_sets(
    caps: &oci_spec::runtime::LinuxCapabilities,
    warnings: &mut Vec<String>,
) -> anyhow::Result<pvmux_hypercalls::bootargs::CapSets> {
    let mask = |set: &Option<oci_spec::runtime::Capabilities>| -> anyhow::Result<u64> {
        let mut m = 0u64;
        for c in set.iter().flatten() {
            m |= 1 << super::super::caps::number(&c.to_string())?;
        }
        Ok(m)
    };
    let mut sets = pvmux_hypercalls::bootargs::CapSets {
        effective: mask(caps.effective())?,
        permitted: mask(caps.permitted())?,
        inheritable: mask(caps.inheritable())?,
        bounding: mask(caps.bounding())?,
        ambient: mask(caps.ambient())?,
    };
    let stray = sets.effective & !sets.permitted;
    if stray != 0 {
        bail!(
            "process.capabilities: effective {} not in the permitted set",
            super::super::caps::names(stray)
        );
    }
    let stray = sets.ambient & !(sets.permitted & sets.inheritable);
    if stray != 0 {
        warnings.push(format!(
            "process.capabilities: ambient {} not both permitted and inheritable: left out",
            super::super::caps::names(stray)
        ));
        sets.ambient &= !stray;
    }
    Ok(sets)
}

/// Reads `bundle/config.json` and maps it.
pub(crate) fn load(bundle: &Path) -> anyhow::Result<Plan> {
    let bundle = std::fs::canonicalize(bundle)
        .with_context(|| format!("bundle {} is not usable", bundle.display()))?;
    let path = bundle.join("config.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let spec: Spec = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid OCI runtime config", path.display()))?;
    map(&spec, &bundle)
}

/// Maps a parsed config (paths relative to `bundle`).
pub(crate) fn map(spec: &Spec, bundle: &Path) -> anyhow::Result<Plan> {
    let mut warnings = Vec::new();
    let mut a: Vec<OsString> = Vec::new();
    let mut flag = |name: &str, value: OsString| {
        a.push(name.into());
        a.push(value);
    };

    let root = spec
        .root()
        .as_ref()
        .context("config.json has no root: pvmux needs root.path")?;
    let rootfs = bundle.join(root.path());
    if !rootfs.is_dir() {
        bail!("root.path {} is not a directory", rootfs.display());
    }
    flag("--rootfs", rootfs.clone().into());

    let process = spec
        .process()
        .as_ref()
        .context("config.json has no process")?;
    let args = process.args().as_deref().unwrap_or_default();
    if args.is_empty() {
        bail!("process.args must not be empty");
    }
    let env = process.env().as_deref().unwrap_or_default();
    let mut path_var = DEFAULT_PATH.to_owned();
    for e in env {
        match e.split_once('=') {
            Some((name, value)) if !name.is_empty() => {
                if name == "PATH" {
                    path_var = value.to_owned();
                }
                flag("--env", e.into());
            }
            _ => warnings.push(format!("process.env: {e:?} is not NAME=VALUE: ignored")),
        }
    }
    let cwd = process.cwd();
    if cwd != Path::new("/") && !cwd.as_os_str().is_empty() {
        flag("--workdir", cwd.clone().into());
    }
    let user = process.user();
    flag("--user", format!("{}:{}", user.uid(), user.gid()).into());
    // The guest's supplementary groups (boot command 19), as runc sets them: these, not
    // those /etc/group lists for the uid.
    for gid in user.additional_gids().as_deref().unwrap_or_default() {
        flag("--group-add", gid.to_string().into());
    }
    for r in process.rlimits().as_deref().unwrap_or_default() {
        flag("--ulimit", ulimit(r, &mut warnings).into());
    }
    // The guest's capability sets (boot command 24), as runc leaves them: after its
    // `execve`, the process holds exactly these. No `capabilities`: runc leaves root's.
    if let Some(caps) = process.capabilities() {
        let sets = cap_sets(caps, &mut warnings)?;
        flag("--cap-sets", super::super::caps::sets_flag(&sets).into());
    }

    let mut volumes = 0usize;
    for m in spec.mounts().as_deref().unwrap_or_default() {
        match mount_volume(m, bundle) {
            Ok(Some(v)) => {
                volumes += 1;
                flag("--volume", v);
            }
            Ok(None) => {}
            Err(w) => warnings.push(w),
        }
    }
    tracing::debug!(volumes, "config.json mounts mapped");

    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        if pvmux_hypercalls::bootargs::hostname_ok(h.as_bytes()) {
            flag("--hostname", h.into());
        } else {
            bail!("hostname {h:?} is longer than 64 bytes");
        }
    }

    // The guest's vCPUs follow a CPU quota (as gVisor's `--cpu-num-from-quota`), so that
    // `nproc` in the container shows what it may use; the annotation overrides it.
    let mut quota_vcpus = None;
    if let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        if let Some(limit) = res.memory().as_ref().and_then(|m| m.limit()) {
            if limit > 0 {
                let mem = guest_mem_for_limit(limit as u64);
                // A smaller reservation is the memory the guest starts with; it grows up
                // to the limit (`pvmux mem`, `update --memory`).
                let start = res
                    .memory()
                    .as_ref()
                    .and_then(|m| m.reservation())
                    .filter(|&r| r > 0)
                    .map(|r| guest_mem_for_limit(r as u64))
                    .filter(|&r| r < mem);
                match start {
                    Some(r) => {
                        pvmux_host::balloon::initial_balloon(mem, Some(r))
                            .context("memory.reservation")?;
                        flag("--mem", r.to_string().into());
                        flag("--mem-max", mem.to_string().into());
                    }
                    None => flag("--mem", mem.to_string().into()),
                }
            }
        }
        if let Some(cpu) = res.cpu() {
            // 0 is "unset" in engines' configs; the range is cgroup v1's.
            if let Some(shares) = cpu.shares().filter(|&s| s > 0) {
                flag("--cpu-shares", shares.clamp(2, 262_144).to_string().into());
            }
            if let (Some(q), Some(p)) = (cpu.quota(), cpu.period()) {
                if q > 0 && p > 0 {
                    flag("--cpus", format!("{}", q as f64 / p as f64).into());
                    quota_vcpus = Some(vcpus_for_quota(q.unsigned_abs(), p, host_cpus()));
                }
            }
        }
        if let Some(p) = res.pids().as_ref().filter(|p| p.limit() > 0) {
            let n = u32::try_from(p.limit()).unwrap_or(u32::MAX);
            flag("--pids-limit", n.to_string().into());
        }
    }

    if let Some(h) = spec.hooks() {
        let inside = [h.create_container(), h.start_container()];
        if inside
            .iter()
            .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()))
        {
            warnings.push(
                "hooks.createContainer and hooks.startContainer run inside the container's \
                 namespaces, which here are a guest kernel's: not run"
                    .to_owned(),
            );
        }
    }
    let netns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|ns| {
            ns.iter()
                .find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network)
        })
        .and_then(|n| n.path().clone());
    if netns.is_some() {
        flag("--net", "host".into());
    }

    let annotations: BTreeMap<String, String> = spec
        .annotations()
        .as_ref()
        .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    if let Some(v) = annotations.get(ANNOTATION_VCPUS) {
        flag("--vcpus", v.into());
    } else if let Some(n) = quota_vcpus {
        flag("--vcpus", n.to_string().into());
    }
    if let Some(k) = annotations.get(ANNOTATION_KERNEL) {
        flag("--kernel", bundle.join(k).into());
    }
    match annotations.get(ANNOTATION_NO_PATCH).map(String::as_str) {
        Some("true") => a.push("--no-patch".into()),
        Some("false") | None => {}
        Some(v) => bail!("annotation {ANNOTATION_NO_PATCH}: {v:?} is not \"true\" or \"false\""),
    }

    if let Some(list) = annotations.get(ANNOTATION_CHANNEL) {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            pvmux_host::channel::check_name(name)
                .map_err(|e| anyhow::anyhow!("annotation {ANNOTATION_CHANNEL}: {e}"))?;
            a.push("--channel".into());
            a.push(name.into());
        }
    }

    a.push("--".into());
    a.push(resolve_program(&args[0], &path_var, &rootfs)?.into());
    a.extend(args[1..].iter().map(OsString::from));
    Ok(Plan {
        bundle: bundle.to_owned(),
        run_args: a,
        annotations,
        warnings,
        terminal: process.terminal() == Some(true),
        netns,
        hooks: spec.hooks().clone(),
    })
}

/// The guest's vCPU count for a CFS quota of `quota` µs per `period` µs: the CPUs the
/// quota amounts to, rounded up, at least 1 and at most `host_cpus` (and the ABI's
/// [`pvmux_hypercalls::MAX_VCPUS`]).
pub(crate) fn vcpus_for_quota(quota: u64, period: u64, host_cpus: u32) -> u32 {
    let max = host_cpus.clamp(1, pvmux_hypercalls::MAX_VCPUS);
    let n = quota.div_ceil(period.max(1));
    u32::try_from(n).unwrap_or(u32::MAX).clamp(1, max)
}

/// The CPUs this process may run on.
fn host_cpus() -> u32 {
    std::thread::available_parallelism()
        .ok()
        .and_then(|n| u32::try_from(n.get()).ok())
        .unwrap_or(1)
}

/// `process.rlimits` entry `r` as a `--ulimit` value (`name=soft:hard`): `RLIMIT_NOFILE`
/// above the guest kernel's ceiling is lowered to it, with a warning (engines pass 1048576).
/// The same for init's limits and an exec'd program's.
pub(crate) fn ulimit(r: &oci_spec::runtime::PosixRlimit, warnings: &mut Vec<String>) -> String {
    let kind = r.typ().to_string();
    let name = kind.trim_start_matches("RLIMIT_").to_ascii_lowercase();
    let limit = |v: u64| {
        if v == u64::MAX {
            "unlimited".to_owned()
        } else {
            v.to_string()
        }
    };
    let (mut soft, mut hard) = (r.soft(), r.hard());
    if name == "nofile" && hard > super::super::limits::NR_OPEN {
        let max = super::super::limits::NR_OPEN;
        warnings.push(format!(
            "process.rlimits {kind} {soft}:{hard} lowered to at most {max} (the guest \
             kernel's ceiling)"
        ));
        hard = max;
        soft = soft.min(max);
    }
    format!("{name}={}:{}", limit(soft), limit(hard))
}

/// One mount: `Ok(Some(--volume value))` for a bind mount of a directory or a regular file
/// (a file volume), `Ok(None)` for the
/// file systems the guest kernel has itself, `Err(warning)` for what is ignored.
fn mount_volume(m: &Mount, bundle: &Path) -> Result<Option<OsString>, String> {
    let dest = m.destination();
    let typ = m.typ().as_deref().unwrap_or("");
    let options = m.options().as_deref().unwrap_or_default();
    let bind = typ == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
    if !bind {
        if GUEST_OWN_TYPES.contains(&typ) {
            return Ok(None);
        }
        return Err(format!(
            "mount {} of type {typ:?}: not supported, ignored",
            dest.display()
        ));
    }
    // The guest kernel's own /dev/shm (podman binds a host one into every container). Its
    // other default binds (/etc/hosts, /etc/resolv.conf, /etc/hostname, /run/.containerenv)
    // are files: file volumes, below.
    if dest == Path::new("/dev/shm") {
        tracing::info!(
            "bind mount of {}: the guest kernel has its own, not given to the guest",
            dest.display()
        );
        return Ok(None);
    }
    let Some(source) = m.source() else {
        return Err(format!(
            "bind mount {} has no source: ignored",
            dest.display()
        ));
    };
    let source = bundle.join(source);
    if ["/proc", "/sys", "/dev"]
        .iter()
        .any(|p| dest.starts_with(p))
    {
        return Err(format!(
            "bind mount {} -> {}: the guest kernel provides {} itself, ignored",
            source.display(),
            dest.display(),
            dest.display()
        ));
    }
    if !source.is_dir() && !source.is_file() {
        return Err(format!(
            "bind mount {} -> {}: only directories and regular files can be shared with the guest, ignored",
            source.display(),
            dest.display()
        ));
    }
    let (s, d) = (source.to_string_lossy(), dest.to_string_lossy());
    if s.contains(':') || d.contains(':') {
        return Err(format!(
            "bind mount {s} -> {d}: paths with ':' cannot be shared, ignored"
        ));
    }
    let ro = options.iter().any(|o| o == "ro");
    Ok(Some(
        format!("{s}:{d}:{}", if ro { "ro" } else { "rw" }).into(),
    ))
}

/// The guest path of `program`: as it is when it has a `/`, else the first directory of
/// `path` (the container's PATH) holding it in the root file system, as runc looks it up.
fn resolve_program(program: &str, path: &str, rootfs: &Path) -> anyhow::Result<String> {
    if program.contains('/') {
        return Ok(program.to_owned());
    }
    for dir in path.split(':').filter(|d| d.starts_with('/')) {
        let candidate = format!("{}/{program}", dir.trim_end_matches('/'));
        if rootfs
            .join(candidate.trim_start_matches('/'))
            .symlink_metadata()
            .is_ok()
        {
            return Ok(candidate);
        }
    }
    bail!("executable file {program:?} not found in $PATH ({path}) of the container's root")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn maps_capabilities_to_the_five_sets() {
        let caps =
            |json: &str| -> anyhow::Result<(pvmux_hypercalls::bootargs::CapSets, Vec<String>)> {
                let c: oci_spec::runtime::LinuxCapabilities = serde_json::from_str(json).unwrap();
                let mut w = Vec::new();
                cap_sets(&c, &mut w).map(|s| (s, w))
            };
        let (s, w) = caps(
            r#"{"bounding":["CAP_CHOWN","CAP_KILL","CAP_NET_RAW"],
                "effective":["CAP_KILL"],"permitted":["CAP_KILL","CAP_CHOWN"],
                "inheritable":["CAP_KILL"],"ambient":["CAP_KILL","CAP_CHOWN"]}"#,
        )
        .unwrap();
        assert_eq!(s.bounding, 1 | 1 << 5 | 1 << 13);
        assert_eq!(
            (s.effective, s.permitted, s.inheritable),
            (1 << 5, 1 | 1 << 5, 1 << 5)
        );
        assert_eq!(s.ambient, 1 << 5, "CHOWN is not inheritable: left out");
        assert_eq!(w.len(), 1, "{w:?}");
        // Missing sets are empty; an effective capability must be permitted.
        let (s, _) = caps(r#"{"bounding":["CAP_CHECKPOINT_RESTORE"]}"#).unwrap();
        assert_eq!((s.bounding, s.effective), (1 << 40, 0));
        assert!(caps(r#"{"effective":["CAP_KILL"]}"#).is_err());
    }

    #[test]
    fn maps_the_basics() {
        let dir = std::env::temp_dir().join(format!("pvmux-oci-cfg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rootfs/bin")).unwrap();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("rootfs/bin/sh"), b"").unwrap();
        std::fs::write(dir.join("hosts"), b"127.0.0.1 localhost\n").unwrap();
        std::fs::write(dir.join("config.json"), b"{}").unwrap();
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs","readonly":true},
            "process":{"cwd":"/tmp","args":["sh","-c","echo hi"],
              "env":["PATH=/bin","A=b=c","junk"],
              "user":{"uid":1000,"gid":100,"additionalGids":[5]},
              "rlimits":[{"type":"RLIMIT_NOFILE","hard":1048576,"soft":1048576},
                         {"type":"RLIMIT_CORE","hard":0,"soft":0}]},
            "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
                      {"destination":"/data","type":"bind","source":"data","options":["rbind","ro"]},
                      {"destination":"/etc/hosts","type":"bind","source":"hosts"},
                      {"destination":"/weird","type":"nfs","source":"x"},
                      {"destination":"/mnt/f","type":"bind","source":"config.json","options":["ro"]},
                      {"destination":"/dev/shm","type":"bind","source":"shm"},
                      {"destination":"/gone","type":"bind","source":"missing"}],
            "hostname":"box",
            "annotations":{"io.pvmux.vcpus":"3","other":"x","io.pvmux.channel":"c1, c2"},
            "linux":{"resources":{"memory":{"limit":100000000},"cpu":{"quota":50000,"period":100000,"shares":512},
              "pids":{"limit":10}}}}"#,
        );
        let p = map(&s, &dir).unwrap();
        let args: Vec<String> = p
            .run_args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let root = dir.join("rootfs").display().to_string();
        let data = format!("{}:/data:ro", dir.join("data").display());
        let hosts = format!("{}:/etc/hosts:rw", dir.join("hosts").display());
        let file = format!("{}:/mnt/f:ro", dir.join("config.json").display());
        let expected = [
            "--rootfs",
            &root,
            "--env",
            "PATH=/bin",
            "--env",
            "A=b=c",
            "--workdir",
            "/tmp",
            "--user",
            "1000:100",
            "--group-add",
            "5",
            "--ulimit",
            "nofile=4096:4096",
            "--ulimit",
            "core=0:0",
            "--volume",
            &data,
            "--volume",
            &hosts,
            "--volume",
            &file,
            "--hostname",
            "box",
            "--mem",
            "100663296",
            "--cpu-shares",
            "512",
            "--cpus",
            "0.5",
            "--pids-limit",
            "10",
            "--vcpus",
            "3",
            "--channel",
            "c1",
            "--channel",
            "c2",
            "--",
            "/bin/sh",
            "-c",
            "echo hi",
        ];
        assert_eq!(args, expected);
        // The junk variable, nofile, the nfs mount and the bind mount of a missing source
        // (files are file volumes; /dev/shm is left out quietly).
        assert_eq!(p.warnings.len(), 4, "{:#?}", p.warnings);
        assert!(
            p.warnings.iter().any(|w| w.contains("/gone")),
            "{:#?}",
            p.warnings
        );
        assert_eq!(p.annotations.len(), 3);
        // The flags are pvmux run's.
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(
            ["pvmux", "run"]
                .iter()
                .map(OsString::from)
                .chain(p.run_args),
        );
        assert!(cli.is_ok(), "{cli:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_engines_network_namespace_is_joined() {
        let dir = std::env::temp_dir().join(format!("pvmux-oci-ns-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        let with = |ns: &str| {
            map(
                &spec(&format!(
                    r#"{{"ociVersion":"1","root":{{"path":"rootfs"}},
                    "process":{{"cwd":"/","args":["/x"],"user":{{"uid":0,"gid":0}}}},
                    "linux":{{"namespaces":[{{"type":"pid"}},{ns}]}}}}"#
                )),
                &dir,
            )
            .unwrap()
        };
        let joined = with(r#"{"type":"network","path":"/run/netns/n1"}"#);
        assert_eq!(joined.netns.as_deref(), Some(Path::new("/run/netns/n1")));
        assert!(joined
            .run_args
            .windows(2)
            .any(|w| w[0] == "--net" && w[1] == "host"));
        // A new, empty namespace: the guest's own loopback only.
        let own = with(r#"{"type":"network"}"#);
        assert_eq!(own.netns, None);
        assert!(!own.run_args.iter().any(|a| a == "--net"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cpu_quota_sets_the_vcpus_unless_annotated() {
        assert_eq!(vcpus_for_quota(50_000, 100_000, 8), 1);
        assert_eq!(vcpus_for_quota(100_000, 100_000, 8), 1);
        assert_eq!(vcpus_for_quota(150_000, 100_000, 8), 2);
        assert_eq!(vcpus_for_quota(400_000, 100_000, 2), 2);
        assert_eq!(vcpus_for_quota(1, 100_000, 0), 1);
        assert_eq!(
            vcpus_for_quota(u64::MAX, 1, 1000),
            pvmux_hypercalls::MAX_VCPUS
        );
        let dir = std::env::temp_dir().join(format!("pvmux-oci-quota-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        let vcpus = |extra: &str| {
            let p = map(
                &spec(&format!(
                    r#"{{"ociVersion":"1","root":{{"path":"rootfs"}},
                    "process":{{"cwd":"/","args":["/x"],"user":{{"uid":0,"gid":0}}}}{extra}}}"#
                )),
                &dir,
            )
            .unwrap();
            let v: Vec<_> = p
                .run_args
                .windows(2)
                .filter(|w| w[0] == "--vcpus")
                .map(|w| w[1].to_string_lossy().into_owned())
                .collect();
            v
        };
        let quota = r#","linux":{"resources":{"cpu":{"quota":100000,"period":100000}}}"#;
        assert_eq!(vcpus(quota), ["1"]);
        assert_eq!(
            vcpus(&format!(
                r#"{quota},"annotations":{{"io.pvmux.vcpus":"3"}}"#
            )),
            ["3"]
        );
        // No quota: pvmux run's default.
        assert!(vcpus("").is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_configs() {
        let dir = std::env::temp_dir().join(format!("pvmux-oci-bad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        let err = |json: &str| map(&spec(json), &dir).unwrap_err().to_string();
        assert!(err(
            r#"{"ociVersion":"1","process":{"cwd":"/","args":["x"],"user":{"uid":0,"gid":0}}}"#
        )
        .contains("no root"));
        assert!(err(r#"{"ociVersion":"1","root":{"path":"nope"},"process":{"cwd":"/","args":["x"],"user":{"uid":0,"gid":0}}}"#)
            .contains("not a directory"));
        assert!(err(r#"{"ociVersion":"1","root":{"path":"rootfs"},"process":{"cwd":"/","args":[],"user":{"uid":0,"gid":0}}}"#)
            .contains("must not be empty"));
        assert!(err(r#"{"ociVersion":"1","root":{"path":"rootfs"},"process":{"cwd":"/","args":["nosuch"],"user":{"uid":0,"gid":0}}}"#)
            .contains("not found in $PATH"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
