//! `*.oci.*`: pvmux as podman's OCI runtime, next to runc (podman's own) and gVisor's runsc,
//! in one run on one image built from the host's static busybox:
//!
//! - `podman_run_true`: the wall time of `podman run --rm IMAGE true`, spawn to exit
//!   (create, start, exit, delete, podman's own work included); the runtimes take turns, so
//!   that a change of load touches all of them alike.
//! - `idle_container_pss`: host memory of one idle container (`sleep`): the sum of `Pss` of
//!   `/proc/PID/smaps_rollup` over every descendant of the container's conmon (runc: the
//!   container's processes; runsc: its sandbox and gofer; pvmux: the monitor and its
//!   sandboxes). PSS shares a page among the processes that map it, so a guest's memory
//!   (one memfd mapped by the monitor and its sandboxes) counts once.
//!
//! runsc runs with `--network=none --platform=ptrace` (in podman's network namespace it
//! refuses to start otherwise; ptrace is its platform that needs no KVM). Without podman (or
//! busybox-static for the image) every figure is unavailable and says why.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::progress::Progress;
use super::stats::Summary;
use super::user::RUNSC_ENV;
use super::Unit;

/// An OCI runtime podman runs the containers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// runc (podman's default here).
    Runc,
    /// gVisor's runsc.
    Gvisor,
    /// This pvmux.
    Pvmux,
}

impl Runtime {
    /// Every runtime, in table order.
    pub const ALL: [Runtime; 3] = [Runtime::Runc, Runtime::Gvisor, Runtime::Pvmux];

    /// The prefix of its figures' names.
    pub fn prefix(self) -> &'static str {
        match self {
            Runtime::Runc => "runc",
            Runtime::Gvisor => "gvisor",
            Runtime::Pvmux => "pvmux",
        }
    }
}

/// The figures (after `PREFIX.oci.`) and their units.
pub const FIGURES: [(&str, Unit); 2] = [
    ("podman_run_true", Unit::Ns),
    ("idle_container_pss", Unit::Bytes),
];

/// The host's static busybox, the image's only program.
const BUSYBOX: &str = "/bin/busybox";
/// Longest one podman command may take.
const LIMIT: Duration = Duration::from_secs(120);
/// Time given to idle containers to settle before their memory is read.
const SETTLE: Duration = Duration::from_millis(500);

/// The runtime and figure of an `*.oci.*` name.
pub fn split(name: &str) -> Option<(Runtime, &str)> {
    let (prefix, figure) = name.split_once(".oci.")?;
    let rt = Runtime::ALL.into_iter().find(|r| r.prefix() == prefix)?;
    FIGURES
        .iter()
        .any(|(f, _)| *f == figure)
        .then_some((rt, figure))
}

/// podman with a configuration of its own and an image imported for this run; the image
/// and the directory are removed on drop.
struct Engine {
    dir: PathBuf,
    image: String,
    pvmux: PathBuf,
}

impl Engine {
    fn new() -> Result<Self, String> {
        let ok = Command::new("podman")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err("podman is not installed (apt-get install podman)".into());
        }
        if !Path::new(BUSYBOX).is_file() {
            return Err(format!(
                "the image needs {BUSYBOX} (apt-get install busybox-static)"
            ));
        }
        let pvmux =
            std::env::current_exe().map_err(|e| format!("cannot find pvmux itself: {e}"))?;
        let dir = std::env::temp_dir().join(format!("pvmux-oci-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let e = Self {
            image: format!("localhost/pvmux-oci-bench:{}", std::process::id()),
            dir,
            pvmux,
        };
        e.build_image()?;
        Ok(e)
    }

    fn build_image(&self) -> Result<(), String> {
        let io = |what: &str, e: std::io::Error| format!("cannot {what}: {e}");
        let bin = self.dir.join("rootfs/bin");
        std::fs::create_dir_all(&bin).map_err(|e| io("create the image's rootfs", e))?;
        std::fs::create_dir_all(self.dir.join("rootfs/tmp"))
            .map_err(|e| io("create the image's rootfs", e))?;
        std::fs::copy(BUSYBOX, bin.join("busybox")).map_err(|e| io("copy busybox", e))?;
        for applet in ["sh", "true", "sleep"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet))
                .map_err(|e| io("link an applet", e))?;
        }
        // podman's default ulimits can be above the host's hard limits (see docs/OCI.md).
        std::fs::write(
            self.dir.join("containers.conf"),
            "[containers]\ndefault_ulimits = []\n",
        )
        .map_err(|e| io("write containers.conf", e))?;
        let tar = self.dir.join("rootfs.tar");
        let mut t = Command::new("tar");
        t.arg("-C")
            .arg(self.dir.join("rootfs"))
            .arg("-cf")
            .arg(&tar)
            .arg(".");
        run(t, "tar")?;
        let mut import = self.podman(None);
        import.arg("import").arg(&tar).arg(&self.image);
        run(import, "podman import").map(|_| ())
    }

    /// `podman [--runtime ...]` with this engine's configuration.
    fn podman(&self, rt: Option<Runtime>) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"));
        match rt {
            None => {}
            Some(Runtime::Runc) => {
                c.args(["--runtime", "runc"]);
            }
            Some(Runtime::Gvisor) => {
                let runsc = std::env::var_os(RUNSC_ENV)
                    .or_else(|| which("runsc"))
                    .unwrap_or_else(|| "runsc".into());
                c.arg("--runtime").arg(runsc).args([
                    "--runtime-flag",
                    "network=none",
                    "--runtime-flag",
                    "platform=ptrace",
                ]);
            }
            Some(Runtime::Pvmux) => {
                c.arg("--runtime").arg(&self.pvmux);
            }
        }
        c
    }

    /// `podman run --rm IMAGE true` once: its wall time in nanoseconds.
    fn run_true(&self, rt: Runtime) -> Result<f64, String> {
        let mut c = self.podman(Some(rt));
        c.args(["run", "--rm", &self.image, "true"]);
        let start = Instant::now();
        run(c, "podman run --rm IMAGE true")?;
        Ok(start.elapsed().as_nanos() as f64)
    }

    /// Starts `n` idle containers with `rt`, and returns the PSS in bytes of each one's host
    /// processes; the containers are removed.
    fn idle_pss(&self, rt: Runtime, n: usize) -> Result<Vec<f64>, String> {
        let mut ids = Vec::new();
        let result = (|| {
            for _ in 0..n {
                let mut c = self.podman(Some(rt));
                c.args(["run", "-d", &self.image, "sleep", "100000"]);
                ids.push(run(c, "podman run -d")?.trim().to_owned());
            }
            std::thread::sleep(SETTLE);
            let mut pss = Vec::new();
            for id in &ids {
                let mut c = self.podman(Some(rt));
                c.args([
                    "inspect",
                    "-f",
                    "{{.State.Running}} {{.State.ConmonPid}}",
                    id,
                ]);
                let out = run(c, "podman inspect")?;
                let conmon: i32 = match out.split_whitespace().collect::<Vec<_>>()[..] {
                    ["true", pid] => pid.parse().map_err(|_| format!("conmon pid {pid:?}"))?,
                    _ => return Err(format!("the idle container is not running: {out}")),
                };
                let procs = descendants(conmon);
                if procs.is_empty() {
                    return Err("the idle container has no processes".into());
                }
                pss.push(procs.iter().map(|&p| pss_bytes(p)).sum::<u64>() as f64);
            }
            Ok(pss)
        })();
        for id in &ids {
            let mut c = self.podman(Some(rt));
            c.args(["rm", "-f", "-t", "0", id]);
            let _ = run(c, "podman rm");
        }
        result
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let mut c = self.podman(None);
        c.args(["rmi", "-f", &self.image]);
        let _ = run(c, "podman rmi");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `program` as found in `PATH`.
fn which(program: &str) -> Option<OsString> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .map(PathBuf::into_os_string)
}

/// Runs `cmd` (at most [`LIMIT`]): its stdout, or why it failed.
fn run(mut cmd: Command, what: &str) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} did not finish within {LIMIT:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(format!("cannot wait for {what}: {e}")),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("cannot wait for {what}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Err(format!("{what} failed ({}): {}", out.status, last.trim()))
    }
}

/// Every descendant of `pid` (not `pid` itself).
fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let list = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in list.split_whitespace().filter_map(|c| c.parse().ok()) {
                if !out.contains(&c) {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
    }
    out
}

/// `Pss` of `/proc/PID/smaps_rollup` in bytes (0 if the process is gone).
fn pss_bytes(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map(|t| parse_pss(&t))
        .unwrap_or(0)
}

/// The `Pss:` line of a `smaps_rollup` text, in bytes.
fn parse_pss(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Runs the wanted `*.oci.*` figures (full catalogue names) and returns one result each.
pub fn run_figures(
    wanted: &[&'static str],
    quick: bool,
    progress: &Progress,
) -> Vec<(&'static str, Result<Summary, String>)> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let engine = match Engine::new() {
        Ok(e) => e,
        Err(why) => {
            for _ in wanted {
                progress.inc();
            }
            return wanted.iter().map(|&n| (n, Err(why.clone()))).collect();
        }
    };
    let mut out = Vec::new();
    // Wall time: the runtimes take turns, after one warm-up run each.
    let timed: Vec<(&'static str, Runtime)> = wanted
        .iter()
        .filter_map(|&n| {
            split(n)
                .filter(|(_, f)| *f == "podman_run_true")
                .map(|(r, _)| (n, r))
        })
        .collect();
    if !timed.is_empty() {
        progress.start("*.oci.podman_run_true (runtimes in turn)");
        let runs = if quick { 3 } else { 10 };
        let mut samples: Vec<Result<Vec<f64>, String>> =
            timed.iter().map(|_| Ok(Vec::new())).collect();
        for round in 0..=runs {
            for (i, &(_, rt)) in timed.iter().enumerate() {
                let Ok(s) = &mut samples[i] else { continue };
                match engine.run_true(rt) {
                    Ok(ns) if round > 0 => s.push(ns),
                    Ok(_) => {}
                    Err(why) => samples[i] = Err(why),
                }
            }
        }
        for ((name, _), s) in timed.iter().zip(samples) {
            let r = s.and_then(|mut v| Summary::of(&mut v).ok_or_else(|| "no samples".into()));
            out.push((*name, r));
            progress.inc();
        }
    }
    for &name in wanted {
        let Some((rt, "idle_container_pss")) = split(name) else {
            continue;
        };
        progress.start(name);
        let n = if quick { 2 } else { 4 };
        let r = engine
            .idle_pss(rt, n)
            .and_then(|mut v| Summary::of(&mut v).ok_or_else(|| "no samples".into()));
        out.push((name, r));
        progress.inc();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_runtime_and_figure() {
        assert_eq!(
            split("pvmux.oci.podman_run_true"),
            Some((Runtime::Pvmux, "podman_run_true"))
        );
        assert_eq!(
            split("gvisor.oci.idle_container_pss"),
            Some((Runtime::Gvisor, "idle_container_pss"))
        );
        assert_eq!(split("uml.oci.podman_run_true"), None);
        assert_eq!(split("runc.oci.nothing"), None);
        assert_eq!(split("pvmux.app.bash_true"), None);
    }

    #[test]
    fn pss_and_descendants_are_read() {
        assert_eq!(
            parse_pss("Rss:  100 kB\nPss:   42 kB\nPss_Anon: 1 kB\n"),
            42 * 1024
        );
        assert_eq!(parse_pss("nothing"), 0);
        // This process has a PSS; a child of ours is our descendant.
        assert!(pss_bytes(std::process::id() as i32) > 0);
        let mut child = Command::new("sleep").arg("10").spawn().unwrap();
        let me = std::process::id() as i32;
        // `children` files are a snapshot the kernel may take while other tests' children
        // come and go (proc(5): reliable only for stopped tasks): a few looks, not one.
        let found = (0..50).any(|_| {
            let seen = descendants(me).contains(&(child.id() as i32));
            if !seen {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            seen
        });
        assert!(found, "the child is not among our descendants");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
