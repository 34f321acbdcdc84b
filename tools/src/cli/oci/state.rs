//! A container's state directory, `ROOT/ID/`: `state.json` (written atomically under an
//! exclusive `flock` of the directory), the monitor's control socket `ctl.sock` and, while
//! `create` runs, its hand-shake socket `nfy.sock`. The directory outlives every CLI
//! invocation; `delete` removes it.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};

/// The status a monitor records (the OCI statuses; `stopped` also when the monitor is gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    /// `create` has made the directory; the monitor is not ready yet.
    Creating,
    /// The monitor waits for `start`.
    Created,
    /// The guest kernel runs the container's program.
    Running,
    /// The guest is stopped (`pvmux pause`) until `pvmux resume`.
    Paused,
    /// The program ended (or the monitor is gone).
    Stopped,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
        }
    }
}

/// What `state.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The container id.
    pub(crate) id: String,
    /// The absolute bundle directory.
    pub(crate) bundle: PathBuf,
    /// The status the monitor last recorded.
    pub(crate) status: Status,
    /// The monitor's pid (the container's pid), once it runs.
    pub(crate) pid: Option<i32>,
    /// The monitor's start time (`/proc/PID/stat` field 22), to tell it from a later process
    /// that reuses its pid.
    pub(crate) start_time: Option<u64>,
    /// config.json's annotations.
    pub(crate) annotations: std::collections::BTreeMap<String, String>,
    /// Creation time, RFC 3339 (UTC).
    pub(crate) created: String,
    /// The guest program's exit status, once known.
    pub(crate) exit_status: Option<i32>,
    /// config.json's hooks (`poststart` and `poststop` run after `create` returned).
    #[serde(default)]
    pub(crate) hooks: Option<oci_spec::runtime::Hooks>,
    /// The guest the monitor prepared (`pvmux ps`).
    #[serde(default)]
    pub(crate) tenant: Option<TenantInfo>,
    /// When the guest kernel started (milliseconds since the Unix epoch; `pvmux ps`'s uptime).
    #[serde(default)]
    pub(crate) started_ms: Option<u64>,
    /// Made by `pvmux run --name` (not from a bundle); `detached`: its console goes to
    /// `console.log` (`pvmux logs`).
    #[serde(default)]
    pub(crate) named: Option<Named>,
}

/// The guest of a container or named tenant, as `pvmux ps` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TenantInfo {
    /// The kernel image (`embedded`, or the path of `--kernel`).
    pub(crate) kernel: String,
    /// Its vCPUs.
    pub(crate) vcpus: u32,
    /// Its memory size in bytes.
    pub(crate) mem: u64,
}

/// How a named tenant (`pvmux run --name`) runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Named {
    /// `--detach`: the console goes to `console.log`.
    pub(crate) detached: bool,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Checks a tenant name (`pvmux run --name`) as container engines do:
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 253 bytes.
pub(crate) fn check_name(name: &str) -> anyhow::Result<()> {
    let mut bytes = name.bytes();
    let ok = name.len() <= 253
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        bail!(
            "invalid name {name:?}: a name starts with a letter or digit, then letters, \
             digits, '_', '.' and '-' ([a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 253 bytes)"
        );
    }
    Ok(())
}

/// Checks a container id as runc does: letters, digits, `_`, `+`, `-` and `.`, not `.` or `..`.
pub(crate) fn check_id(id: &str) -> anyhow::Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if !ok {
        bail!("invalid container id {id:?}: use letters, digits, '_', '+', '-' and '.'");
    }
    Ok(())
}

/// The directory of container `id` under `root`.
pub(crate) struct StateDir {
    pub(crate) dir: PathBuf,
}

/// An exclusive lock of a state directory (released on drop).
pub(crate) struct Lock(#[allow(dead_code)] File);

impl StateDir {
    pub(crate) fn new(root: &Path, id: &str) -> anyhow::Result<Self> {
        check_id(id)?;
        Ok(Self { dir: root.join(id) })
    }

    /// Makes the directory; an error if the container exists.
    pub(crate) fn create(root: &Path, id: &str) -> anyhow::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let s = Self::new(root, id)?;
        // Owner only, as runc's: the control sockets inside start and stop containers.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    " (as an unprivileged user, give a state root you may write: --root DIR, \
                     e.g. --root \"$XDG_RUNTIME_DIR/pvmux\")"
                } else {
                    ""
                };
                anyhow::anyhow!("cannot create the state root {}: {e}{hint}", root.display())
            })?;
        match std::fs::DirBuilder::new().mode(0o700).create(&s.dir) {
            Ok(()) => Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                bail!("container with id exists: {id}")
            }
            Err(e) => Err(e).with_context(|| format!("cannot create {}", s.dir.display())),
        }
    }

    /// An existing container's directory; "container does not exist" otherwise.
    pub(crate) fn open(root: &Path, id: &str) -> anyhow::Result<Self> {
        let s = Self::new(root, id)?;
        if !s.dir.join("state.json").exists() {
            bail!("container does not exist: {id}");
        }
        Ok(s)
    }

    pub(crate) fn control_socket(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }

    /// The running guest's exec control socket (`pvmux exec ID`).
    pub(crate) fn exec_socket(&self) -> PathBuf {
        self.dir.join("exec.sock")
    }

    /// A detached named tenant's console output (`pvmux logs`).
    pub(crate) fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    pub(crate) fn notify_socket(&self) -> PathBuf {
        self.dir.join("nfy.sock")
    }

    /// Takes the directory's exclusive lock (waiting for other pvmux processes).
    pub(crate) fn lock(&self) -> anyhow::Result<Lock> {
        let f =
            File::open(&self.dir).with_context(|| format!("cannot open {}", self.dir.display()))?;
        flock(f.as_fd(), FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock {}", self.dir.display()))?;
        Ok(Lock(f))
    }

    /// Reads `state.json`.
    pub(crate) fn read(&self) -> anyhow::Result<Record> {
        let path = self.dir.join("state.json");
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", path.display()))
    }

    /// Writes `state.json` atomically (a temporary file renamed over it); hold [`Lock`].
    pub(crate) fn write(&self, r: &Record, _lock: &Lock) -> anyhow::Result<()> {
        let tmp = self.dir.join("state.json.tmp");
        let mut f =
            File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        serde_json::to_writer(&mut f, r)?;
        f.flush()?;
        std::fs::rename(&tmp, self.dir.join("state.json"))
            .with_context(|| format!("cannot replace {}/state.json", self.dir.display()))
    }

    /// Applies `f` to the record under the lock.
    pub(crate) fn update(&self, f: impl FnOnce(&mut Record)) -> anyhow::Result<Record> {
        let lock = self.lock()?;
        let mut r = self.read()?;
        f(&mut r);
        self.write(&r, &lock)?;
        Ok(r)
    }
}

/// The start time of process `pid` (`/proc/PID/stat` field 22), `None` if it is gone or a
/// zombie (it has exited; its parent has not reaped it yet).
pub(crate) fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields after it
    // follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // Fields 3 (state) .. 22 (starttime): starttime is the 20th after the ')'.
    fields.nth(18)?.parse().ok()
}

impl Record {
    /// Whether the monitor recorded here still runs.
    pub(crate) fn monitor_alive(&self) -> bool {
        match (self.pid, self.start_time) {
            (Some(pid), Some(t)) => process_start_time(pid) == Some(t),
            _ => false,
        }
    }

    /// The status as `state` reports it: `stopped` once the monitor is gone.
    pub(crate) fn effective_status(&self) -> Status {
        match self.status {
            Status::Creating | Status::Created | Status::Running | Status::Paused
                if !self.monitor_alive() =>
            {
                Status::Stopped
            }
            s => s,
        }
    }

    /// The OCI state JSON.
    pub(crate) fn oci_state(&self) -> serde_json::Value {
        let status = self.effective_status();
        let mut v = serde_json::json!({
            "ociVersion": oci_spec::runtime::VERSION,
            "id": self.id,
            "status": status.as_str(),
            "bundle": self.bundle,
        });
        // runc reports pid 0 for a stopped container.
        v["pid"] = match (status, self.pid) {
            (Status::Stopped, _) | (_, None) => 0.into(),
            (_, Some(p)) => p.into(),
        };
        if !self.annotations.is_empty() {
            v["annotations"] = serde_json::to_value(&self.annotations).unwrap_or_default();
        }
        v
    }
}

/// Now as RFC 3339 UTC with nanoseconds, as runc's `created`.
pub(crate) fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "abc-1.2_x+y", &"f".repeat(64)] {
            check_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "é"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names() {
        for ok in ["a", "web-1", "db_2.x", "9lives", &"n".repeat(253)] {
            check_name(ok).unwrap();
        }
        for bad in [
            "",
            "-a",
            ".a",
            "_a",
            "a+b",
            "a/b",
            "a b",
            "é",
            &"n".repeat(254),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn own_start_time_is_stable() {
        let me = std::process::id() as i32;
        let t = process_start_time(me).unwrap();
        assert_eq!(process_start_time(me), Some(t));
    }
}
