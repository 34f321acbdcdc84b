//! User threads run only on a granted vCPU (docs/SECURITY.md, "User threads run only on a
//! granted vCPU"): `tests/programs/c/grant_attack.c` run as a guest program.
//!
//! * Forged run requests: children write complete `RUN` requests into the idle slots of
//!   their own context regions and wake the slot threads, then sleep. The guest kernel grants
//!   nothing while everything sleeps, so the tenant's sandboxes may use no more than the
//!   audit slack: measured from the host (`/proc/PID/task/TID/stat` of every sandbox of the
//!   tenant) over a window while the attack is in place.
//! * Forged exit: a child hands its own slot back as a `pause` and keeps spinning. The host's
//!   CPU audit must kill its sandbox once its CPU time exceeds its grants plus slack, the
//!   guest kernel must then kill the process (SIGKILL) and log why, and the tenant goes on.
//! * Garbage exit: the same forged exit with a reason that is no valid one. The guest kernel
//!   gives up on the sandbox at once, kills the process and says why on the console's
//!   stderr (not only in the kernel log, which is hidden without `--log debug`).
//!
//! Every run: all sandboxes the tenant spawned are gone afterwards, and the guest forks a
//! normal child after the attack.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pvmux_hypercalls::user::grant::{AUDIT_PERIOD_NS, AUDIT_SLACK_NS};
use pvmux_tests::TempDir;

const PROG_DIR: &str = env!("PVMUX_PROG_DIR");
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// `argv[0]` of every sandbox process.
const SANDBOX_ARGV0: &[u8] = b"pvmux-sandbox";
/// Longest any run may take.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Clock ticks of `/proc/.../stat` (`USER_HZ`).
const USER_HZ: f64 = 100.0;

fn rootfs() -> TempDir {
    let dir = TempDir::unique("pvmux-hostile-grant", "rootfs");
    std::fs::copy(
        Path::new(PROG_DIR).join("grant-attack"),
        dir.0.join("grant-attack"),
    )
    .expect("copy program");
    dir
}

fn argv0(pid: u32) -> Option<Vec<u8>> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(cmdline.split(|&b| b == 0).next().unwrap_or(&[]).to_vec())
}

/// The sandboxes of pvmux process `parent`: its children whose `argv[0]` is the sandbox's,
/// and theirs (the sandboxes forked from the tenant's user sandbox template).
fn sandboxes_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let ppid = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = &s[s.rfind(')')? + 1..];
                rest.split_ascii_whitespace().nth(1)?.parse::<u32>().ok()
            })
    };
    let all: Vec<(u32, u32)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| argv0(pid).is_some_and(|a| a == SANDBOX_ARGV0))
        .filter_map(|pid| Some((pid, ppid(pid)?)))
        .collect();
    let direct: Vec<u32> = all
        .iter()
        .filter(|&&(_, pp)| pp == parent)
        .map(|&(p, _)| p)
        .collect();
    let forked = all
        .iter()
        .filter(|&&(_, pp)| direct.contains(&pp))
        .map(|&(p, _)| p);
    direct.iter().copied().chain(forked).collect()
}

/// CPU seconds (user + system) of every thread of every sandbox of `parent`, by (pid, tid).
fn thread_cpu(parent: u32) -> BTreeMap<(u32, u32), f64> {
    let mut out = BTreeMap::new();
    for pid in sandboxes_of(parent) {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) else {
                continue;
            };
            let Some(close) = s.rfind(')') else { continue };
            let f: Vec<&str> = s[close + 1..].split_ascii_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            out.insert((pid, tid), (ticks(11) + ticks(12)) as f64 / USER_HZ);
        }
    }
    out
}

/// A `pvmux run` in progress: stdout lines as they come, every sandbox pid seen.
struct Live {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    seen: BTreeSet<u32>,
    start: Instant,
}

/// A test that fails (a panic) while pvmux still runs ends it: its sandboxes go with it
/// instead of outliving the test (seen once after a timeout: the tenant kept running).
impl Drop for Live {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Live {
    fn start(root: &TempDir, vcpus: u32, log_debug: bool, args: &[&str]) -> Self {
        let mut cmd = Command::new(PVMUX);
        cmd.args(["run", "--mem", "128M", "--vcpus", &vcpus.to_string()]);
        cmd.env_clear();
        if log_debug {
            // Kernel messages too (a RUST_LOG filter would hide them).
            cmd.arg("--log=debug");
        } else {
            cmd.env("RUST_LOG", "warn");
        }
        cmd.arg("--rootfs")
            .arg(&root.0)
            .arg("--")
            .arg("/grant-attack")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run pvmux");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(l);
                }
            });
        }
        {
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = err.read_to_end(&mut v);
                *stderr.lock().unwrap() = String::from_utf8_lossy(&v).into_owned();
            });
        }
        Self {
            child,
            lines,
            stderr,
            seen: BTreeSet::new(),
            start: Instant::now(),
        }
    }

    fn note_sandboxes(&mut self) {
        self.seen.extend(sandboxes_of(self.child.id()));
    }

    fn stdout(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until stdout has a line starting with `prefix`.
    fn wait_line(&mut self, prefix: &str) {
        loop {
            self.note_sandboxes();
            if self
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.starts_with(prefix))
            {
                return;
            }
            if let Some(st) = self.child.try_wait().expect("wait") {
                panic!("pvmux ended ({st}) before {prefix:?}\n{}", self.context());
            }
            if self.start.elapsed() >= TIMEOUT {
                self.end_with_dump();
                panic!("no {prefix:?} in time\n{}", self.context());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A guest that seems stuck: asks its kernel for a dump of its tasks (`SIGQUIT`), then
    /// ends it, so that the failure shows what each task was doing.
    fn end_with_dump(&mut self) {
        pvmux_tests::dump_then_kill(&mut self.child);
        let _ = self.child.wait();
        // The stderr reader has the whole output once it sees the end.
        for _ in 0..100 {
            if !self.stderr.lock().unwrap().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the end; returns the exit code.
    fn finish(&mut self) -> Option<i32> {
        let st = loop {
            self.note_sandboxes();
            if let Some(st) = self.child.try_wait().expect("wait") {
                break st;
            }
            if self.start.elapsed() > TIMEOUT {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("pvmux did not finish in time\n{}", self.context());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Let the readers drain.
        std::thread::sleep(Duration::from_millis(200));
        st.code()
    }

    fn context(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr.lock().unwrap()
        )
    }

    /// Every sandbox seen is gone (a grace period covers the host's bookkeeping).
    fn assert_all_reaped(&self) {
        assert!(!self.seen.is_empty(), "no sandbox was ever seen");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let alive: Vec<u32> = self
                .seen
                .iter()
                .copied()
                .filter(|&p| argv0(p).is_some_and(|a| a == SANDBOX_ARGV0))
                .collect();
            if alive.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sandboxes {alive:?} outlived pvmux"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The measurement window, seconds.
const WINDOW: f64 = 3.0;

fn fake_runs_are_not_served(vcpus: u32) {
    let root = rootfs();
    // 3 attackers: with every idle slot hijacked this would be 3 × (vcpus - 1) busy threads.
    let mut run = Live::start(&root, vcpus, false, &["fake-runs", "3", "6"]);
    run.wait_line("attack in place");
    // Let the attackers' own threads finish their turn (they sleep in pause() now).
    std::thread::sleep(Duration::from_millis(500));
    let pvmux = run.child.id();
    let before = thread_cpu(pvmux);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(WINDOW));
    let after = thread_cpu(pvmux);
    let window = t0.elapsed().as_secs_f64();
    run.note_sandboxes();
    let mut total = 0.0;
    let mut busiest = (0.0f64, (0, 0));
    for (k, &c1) in &after {
        let d = c1 - before.get(k).copied().unwrap_or(0.0);
        total += d;
        if d > busiest.0 {
            busiest = (d, *k);
        }
    }
    let code = run.finish();
    let ctx = run.context();
    assert_eq!(code, Some(0), "grant-attack fake-runs\n{ctx}");
    assert!(
        ctx.contains("attack in place: 3 children forged run requests"),
        "every child forged requests\n{ctx}"
    );
    assert!(ctx.contains("a normal child ran afterwards"), "{ctx}");
    // Everything sleeps, so the guest kernel grants nothing: the tenant may use only the
    // slack (SECURITY.md: CPU ≤ granted + 1/32 + AUDIT_SLACK per sandbox); here, while the
    // kernel itself idles, far less. Before grants: ≥ 1 CPU per hijacked thread (2 cores).
    let slack = AUDIT_SLACK_NS as f64 / 1e9;
    assert!(
        total <= slack,
        "the tenant's {} sandbox threads used {total:.2} s of CPU in {window:.1} s while every \
         guest process slept (busiest: {:.2} s, pid/tid {:?}); bound {slack} s\n{ctx}",
        after.len(),
        busiest.0,
        busiest.1
    );
    assert!(
        busiest.0 <= 0.1 * window,
        "a sandbox thread ran {:.2} s of {window:.1} s without a grant\n{ctx}",
        busiest.0
    );
    assert!(
        after.len() >= (3 * vcpus) as usize,
        "the attackers' sandboxes were measured: {} threads\n{ctx}",
        after.len()
    );
    run.assert_all_reaped();
}

#[test]
fn forged_run_requests_do_not_run_threads_on_2_vcpus() {
    fake_runs_are_not_served(2);
}

#[test]
fn forged_run_requests_do_not_run_threads_on_4_vcpus() {
    fake_runs_are_not_served(4);
}

/// `cpu_ms`, `bound_ms` of the host's audit warning.
fn audit_line(stderr: &str) -> Option<(u64, u64)> {
    let l = stderr
        .lines()
        .find(|l| l.contains("user sandbox used CPU time its guest kernel never granted"))?;
    let field = |name: &str| -> Option<u64> {
        let rest = &l[l.find(&format!("{name}="))? + name.len() + 1..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    Some((field("cpu_ms")?, field("bound_ms")?))
}

/// `grant-attack MODE 60` (`forged-exit`, `garbage-exit`) on `vcpus` vCPUs, run to its end:
/// the forging child was killed by SIGKILL and a normal child ran afterwards. The run (its
/// sandboxes to check) and its output.
fn forging_child_killed(vcpus: u32, log_debug: bool, mode: &str) -> (Live, String) {
    let root = rootfs();
    let mut run = Live::start(&root, vcpus, log_debug, &[mode, "60"]);
    let code = run.finish();
    let ctx = run.context();
    assert_eq!(code, Some(0), "grant-attack {mode}\n{ctx}");
    assert!(
        ctx.contains("the forged-exit child was killed by SIGKILL"),
        "{ctx}"
    );
    assert!(ctx.contains("a normal child ran afterwards"), "{ctx}");
    (run, ctx)
}

fn forged_exit_is_killed(vcpus: u32) {
    let (run, ctx) = forging_child_killed(vcpus, true, "forged-exit");
    // The host's audit killed it, at most one audit period of all its threads (plus a
    // generous allowance for a loaded machine) beyond the bound.
    let (cpu, bound) = audit_line(&ctx).unwrap_or_else(|| panic!("no audit verdict\n{ctx}"));
    let period_ms = AUDIT_PERIOD_NS / 1_000_000;
    assert!(
        cpu > bound && cpu <= bound + u64::from(vcpus) * period_ms + 2_000,
        "audit verdict cpu {cpu} ms, bound {bound} ms\n{ctx}"
    );
    // The guest kernel says why it killed the process.
    assert!(
        ctx.contains("(grant-attack): its user sandbox used")
            && ctx.contains("a thread ran without a grant"),
        "kernel log line\n{ctx}"
    );
    run.assert_all_reaped();
}

/// A sandbox that hands its slot back with an exit reason that is no valid one: the guest
/// kernel gives up on it at once, kills the process with SIGKILL and says why on the
/// console's stderr (without `--log debug`, where the kernel log is hidden); the host's
/// audit has nothing to do, and the next process works.
#[test]
fn a_garbage_exit_kills_the_process_and_says_why() {
    let (run, ctx) = forging_child_killed(2, false, "garbage-exit");
    let said = run.stderr.lock().unwrap().clone();
    assert!(
        said.lines().any(|l| l.starts_with("pvmux: killed process ")
            && l.contains(" (grant-attack): its user sandbox failed: ")),
        "{ctx}"
    );
    assert!(audit_line(&ctx).is_none(), "{ctx}");
    run.assert_all_reaped();
}

#[test]
fn a_forged_exit_is_caught_by_the_cpu_audit_on_2_vcpus() {
    forged_exit_is_killed(2);
}

#[test]
fn a_forged_exit_is_caught_by_the_cpu_audit_on_4_vcpus() {
    forged_exit_is_killed(4);
}
