//! pvmux under real container engines beyond podman's basics (tests/tests/oci.rs): a
//! private containerd whose runc shim (`containerd-shim-runc-v2`) calls pvmux as its runc,
//! podman's resource flags as the guest sees them, and many containers at once. Every
//! comparison is with the engine's own runc on the same image.
//!
//! Ignored without busybox-static and podman (and containerd for its test).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pvmux_tests::oci::{alive, children, wait_for, Podman, TIMEOUT};
use pvmux_tests::{run_with_timeout, run_with_timeout_stdin, Run, TempDir};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");

/// runc, the engines' own runtime, for comparison.
const RUNC: &str = "/usr/sbin/runc";

/// A containerd of this test's own: its configuration, root and state directories and its
/// socket in a temporary directory (the host's containerd, if any, is not touched); killed
/// and removed on drop.
struct Containerd {
    dir: TempDir,
    daemon: Child,
    /// The namespace the test's containers live in.
    namespace: String,
}

impl Containerd {
    /// Starts containerd and waits until it answers.
    fn start() -> Self {
        let dir = TempDir::unique("pvmux-oci", "containerd");
        let d = dir.0.display();
        // Only the plugins `ctr run` needs; no CRI (it would listen on a TCP port).
        let config = format!(
            "version = 2\n\
             root = \"{d}/root\"\n\
             state = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
             [debug]\n  address = \"\"\n\
             [metrics]\n  address = \"\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
        );
        std::fs::write(dir.0.join("config.toml"), config).expect("write config.toml");
        let log = std::fs::File::create(dir.0.join("containerd.log")).expect("log");
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(dir.0.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("run containerd");
        let c = Self {
            dir,
            daemon,
            namespace: format!("pvmux-test-{}", std::process::id()),
        };
        wait_for("containerd answers", || {
            c.ctr(&["version"]).code() == Some(0)
        });
        c
    }

    /// A containerd with podman's test image imported (`podman save --format oci-archive`,
    /// `ctr image import`), under the same name.
    fn with_image(p: &Podman) -> Self {
        let c = Self::start();
        let archive = c.path("image.tar");
        let s = p.podman(
            None,
            &[
                "save",
                "--format",
                "oci-archive",
                "-o",
                archive.to_str().unwrap(),
                &p.image,
            ],
        );
        assert_eq!(s.code(), Some(0), "podman save: {}", s.context());
        let base = p.image.split(':').next().unwrap();
        let i = c.ctr(&[
            "image",
            "import",
            "--base-name",
            base,
            archive.to_str().unwrap(),
        ]);
        assert_eq!(i.code(), Some(0), "ctr image import: {}", i.context());
        let ls = c.ctr(&["image", "ls", "-q"]);
        assert!(ls.has_line(&p.image), "{}", ls.context());
        c
    }

    /// `ctr -a SOCKET -n NAMESPACE ARGS...` (`run` with its I/O fifos in the test's
    /// directory).
    fn ctr(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new("ctr");
        cmd.arg("-a")
            .arg(self.dir.0.join("containerd.sock"))
            .arg("-n")
            .arg(&self.namespace);
        match args.split_first() {
            Some((&"run", rest)) => {
                cmd.arg("run")
                    .arg("--fifo-dir")
                    .arg(self.dir.0.join("fifo"))
                    .args(rest);
            }
            _ => {
                cmd.args(args);
            }
        }
        let what = format!("{cmd:?}");
        run_with_timeout(cmd, &what, TIMEOUT, Duration::from_millis(10), |_| {})
    }

    /// A directory of the test's own.
    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// The status `ctr task ls` shows for `id` (`RUNNING`, `STOPPED`, ...), and its pid.
    fn task(&self, id: &str) -> Option<(String, i32)> {
        let r = self.ctr(&["task", "ls"]);
        r.stdout.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| (f[2].to_owned(), f[1].parse().unwrap_or(0)))
        })
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Best effort: the daemon is this test's own child.
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.daemon),
            rustix::process::Signal::TERM,
        );
        let _ = self.daemon.wait();
        // The containers' parent cgroup, named after the namespace, which runc makes with
        // each container's path and leaves when it removes the container's own (on cgroup
        // v1 one per hierarchy, on v2 one). Only an empty cgroup can be removed: a
        // container still in one keeps it.
        let cgroups = Path::new("/sys/fs/cgroup");
        let _ = std::fs::remove_dir(cgroups.join(&self.namespace));
        if let Ok(hierarchies) = std::fs::read_dir(cgroups) {
            for h in hierarchies.flatten() {
                let _ = std::fs::remove_dir(h.path().join(&self.namespace));
            }
        }
    }
}

/// The runtime's short name, for directories.
fn short(runtime: &str) -> &str {
    Path::new(runtime)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("rt")
}

#[test]
#[cfg_attr(
    not(all(have_busybox, have_podman, have_containerd)),
    ignore = "needs /bin/busybox, podman and containerd: apt-get install busybox-static podman containerd"
)]
fn containerd_runs_containers_with_pvmux_as_runc_does() {
    let p = Podman::new(PVMUX);
    let c = Containerd::with_image(&p);

    // `ctr run --rm`: the shim creates, starts, waits for and deletes the container; the
    // output and exit status are runc's.
    // `ctr run --rm` of `cmd` as container `id` with `runtime` (its state under its own root).
    let run_rm = |runtime: &str, id: &str, cmd: &[&str]| {
        let root = c.path(&format!("root-{}", short(runtime)));
        let root = root.to_str().unwrap();
        let mut args = vec![
            "run",
            "--rm",
            "--runc-binary",
            runtime,
            "--runc-root",
            root,
            &p.image,
            id,
        ];
        args.extend_from_slice(cmd);
        c.ctr(&args)
    };
    let script = ["sh", "-c", "echo $((6 * 7)); echo to-stderr >&2; exit 3"];
    let pvmux = run_rm(PVMUX, "rm-pvmux", &script);
    let native = run_rm(RUNC, "rm-runc", &script);
    assert_eq!(pvmux.code(), Some(3), "{}", pvmux.context());
    assert_eq!(pvmux.code(), native.code(), "{}", native.context());
    assert_eq!(pvmux.stdout, native.stdout);
    assert_eq!(pvmux.stdout, "42\n");
    assert!(pvmux.stderr.contains("to-stderr"), "{}", pvmux.context());
    // The guest kernel ran it, not the host's.
    let v = run_rm(PVMUX, "version", &["cat", "/proc/version"]);
    assert!(v.stdout.contains("pvmux"), "{}", v.context());

    // A failed create: the shim reads pvmux's `--log-format json` log and ctr says why, as
    // with runc; nothing is left in the runtime's root.
    let fail = |runtime: &str| {
        let root = c.path(&format!("root-{}", short(runtime)));
        let id = format!("fail-{}", short(runtime));
        let r = run_rm(runtime, &id, &["nosuch"]);
        let _ = c.ctr(&["container", "rm", &id]);
        assert!(!root.join(&c.namespace).join(&id).exists());
        r
    };
    let pvmux = fail(PVMUX);
    let native = fail(RUNC);
    assert_eq!(pvmux.code(), Some(1), "{}", pvmux.context());
    assert_eq!(pvmux.code(), native.code(), "{}", native.context());
    assert!(
        pvmux.stderr.contains("OCI runtime create failed")
            && pvmux.stderr.contains("\"nosuch\" not found"),
        "{}",
        pvmux.context()
    );

    // `ctr run -d`, `task kill` (SIGTERM reaches init's trap), `task delete`: the lifecycle
    // through the shim, with the container's output in a log file.
    let trap = "trap 'echo bye; exit 9' TERM; echo up; sleep 100 & wait";
    let detached = |runtime: &str| {
        let id = format!("d-{}", short(runtime));
        let root = c.path(&format!("root-{}", short(runtime)));
        let log = c.path(&format!("{id}.log"));
        let uri = format!("file://{}", log.display());
        let r = c.ctr(&[
            "run",
            "-d",
            "--log-uri",
            &uri,
            "--runc-binary",
            runtime,
            "--runc-root",
            root.to_str().unwrap(),
            &p.image,
            &id,
            "sh",
            "-c",
            trap,
        ]);
        assert_eq!(r.code(), Some(0), "ctr run -d: {}", r.context());
        let read = || std::fs::read_to_string(&log).unwrap_or_default();
        wait_for("the container is up", || read() == "up\n");
        let (status, pid) = c.task(&id).expect("ctr task ls lists the task");
        assert_eq!(status, "RUNNING");
        // `ctr task exec`: a new process in the running container through the shim (runc's
        // `exec --detach --pid-file`), its output and exit status ctr's.
        let e = c.ctr(&[
            "task",
            "exec",
            "--exec-id",
            "x1",
            &id,
            "sh",
            "-c",
            "echo exec $((6 * 7)); exit 3",
        ]);
        let exec = (e.code(), e.stdout.clone());
        let k = c.ctr(&["task", "kill", &id]);
        assert_eq!(k.code(), Some(0), "ctr task kill: {}", k.context());
        wait_for("the task stops", || {
            c.task(&id).is_some_and(|(s, _)| s == "STOPPED")
        });
        let d = c.ctr(&["task", "delete", &id]);
        assert_eq!(d.code(), Some(0), "ctr task delete: {}", d.context());
        let rm = c.ctr(&["container", "rm", &id]);
        assert_eq!(rm.code(), Some(0), "ctr container rm: {}", rm.context());
        // The runtime's state of the container is gone, and so is its process.
        let state = root.join(&c.namespace).join(&id);
        assert!(!state.exists(), "{} is left behind", state.display());
        wait_for("the container's process is gone", || !alive(pid));
        (read(), d.stderr, exec)
    };
    let (pvmux_out, pvmux_err, pvmux_exec) = detached(PVMUX);
    let (native_out, native_err, native_exec) = detached(RUNC);
    assert_eq!(pvmux_out, "up\nbye\n");
    assert_eq!(pvmux_out, native_out);
    assert_eq!(pvmux_exec, (Some(3), "exec 42\n".to_owned()));
    // ctr showed no output of runc's exec'd process in this setup (its stdio fifos), so only
    // the exit status is compared with runc.
    assert_eq!(pvmux_exec.0, native_exec.0);
    // `task delete` reports the exit status (as a warning when it is not 0).
    assert!(pvmux_err.contains("exit code 9"), "{pvmux_err}");
    assert!(native_err.contains("exit code 9"), "{native_err}");
    assert!(c.ctr(&["task", "ls", "-q"]).stdout.trim().is_empty());
}

/// The guest's view of podman's `--memory`, `--cpus` and `--pids-limit`, and `--cpu-shares`
/// on the host.
#[test]
#[cfg_attr(
    not(all(have_busybox, have_podman)),
    ignore = "needs /bin/busybox and podman: apt-get install busybox-static podman"
)]
fn podman_resource_flags_are_visible_in_the_guest() {
    let p = Podman::new(PVMUX);
    let run = |runtime: Option<&str>, flags: &[&str], script: &str| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[&p.image, "sh", "-c", script]);
        let r = p.podman(runtime, &args);
        assert_eq!(r.code(), Some(0), "{args:?}: {}", r.context());
        r.stdout
    };
    let mem_total_kib = |out: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no MemTotal in {out:?}"))
    };
    // --memory: the guest's memory is the limit (runc's container sees the host's).
    let meminfo = "cat /proc/meminfo";
    let limited = mem_total_kib(&run(Some(PVMUX), &["--memory", "128m"], meminfo));
    let default = mem_total_kib(&run(Some(PVMUX), &[], meminfo));
    assert!(
        limited <= 128 * 1024,
        "MemTotal {limited} kB with --memory 128m"
    );
    assert!(
        limited >= 64 * 1024,
        "MemTotal {limited} kB with --memory 128m"
    );
    assert!(
        default > 128 * 1024,
        "MemTotal {default} kB without --memory"
    );
    let free = run(Some(PVMUX), &["--memory", "128m"], "free -k");
    let free_total: u64 = free
        .lines()
        .find_map(|l| l.strip_prefix("Mem:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("free: {free:?}"));
    // busybox's `free` reads sysinfo(2): the same total as /proc/meminfo.
    assert_eq!(free_total, limited, "{free}");

    // --cpus: the guest has that many vCPUs (rounded up; at most the host's CPUs). runc's
    // container sees every host CPU (its quota is a rate, not a CPU count).
    let nproc = |flags: &[&str]| -> u32 {
        let out = run(Some(PVMUX), flags, "nproc");
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("nproc: {out:?}"))
    };
    assert_eq!(nproc(&["--cpus", "1"]), 1);
    assert_eq!(nproc(&["--cpus", "0.5"]), 1);
    let host = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    assert_eq!(nproc(&["--cpus", "2"]), host.min(2));
    // The annotation overrides it.
    assert_eq!(
        nproc(&["--cpus", "1", "--annotation", "io.pvmux.vcpus=3"]),
        3
    );

    // --cpu-shares: the weight of the tenant's cgroup (its sandboxes'), as runc's
    // container's.
    let weight = |runtime: Option<&str>| -> String {
        let d = p.podman(
            runtime,
            &[
                "run",
                "-d",
                "--cpu-shares",
                "512",
                &p.image,
                "sleep",
                "1000",
            ],
        );
        assert_eq!(d.code(), Some(0), "{}", d.context());
        let id = d.stdout.trim().to_owned();
        let r = p.podman(runtime, &["inspect", "-f", "{{.State.Pid}}", &id]);
        let pid: i32 = r.stdout.trim().parse().expect("a pid");
        let weight = if runtime.is_some() {
            // The monitor's sandboxes are in the tenant cgroup.
            let mut sandboxes = Vec::new();
            wait_for("the guest runs", || {
                sandboxes = children(pid);
                !sandboxes.is_empty()
            });
            cpu_weight(sandboxes[0])
        } else {
            cpu_weight(pid)
        };
        let rm = p.podman(runtime, &["rm", "-f", "-t", "0", &id]);
        assert_eq!(rm.code(), Some(0), "{}", rm.context());
        weight
    };
    let pvmux = weight(Some(PVMUX));
    assert_eq!(pvmux, weight(None));
    assert!(
        pvmux == "512" || pvmux == "20",
        "cpu.shares 512 became {pvmux}"
    );

    // --pids-limit: a fork loop stops where runc's does (the shell counts too).
    let forks = "n=0; while [ $n -lt 100 ]; do sleep 1000 & n=$((n+1)); echo $n; done";
    let started = |runtime: Option<&str>, limit: &str| -> u32 {
        let mut cmd = vec!["run", "--rm", "--pids-limit", limit, &p.image];
        cmd.extend_from_slice(&["sh", "-c", forks]);
        let r = p.podman(runtime, &cmd);
        r.stdout
            .lines()
            .last()
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| panic!("{}", r.context()))
    };
    let pvmux = started(Some(PVMUX), "20");
    let native = started(None, "20");
    assert_eq!(pvmux, native);
    assert!(pvmux < 20, "{pvmux} processes started with --pids-limit 20");
    // Without the limit all of them start.
    assert_eq!(started(Some(PVMUX), "0"), 100);
}

/// The CPU weight process `pid` runs under: its cgroup's `cpu.shares` (cgroup v1), else its
/// `cpu.weight` (cgroup v2).
fn cpu_weight(pid: i32) -> String {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let v1 = cgroups.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        controllers
            .split(',')
            .any(|c| c == "cpu")
            .then(|| format!("/sys/fs/cgroup/{controllers}{path}/cpu.shares"))
    });
    let file = v1.unwrap_or_else(|| {
        let path = cgroups
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("a cgroup v2 line");
        format!("/sys/fs/cgroup{path}/cpu.weight")
    });
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .trim()
        .to_owned()
}

/// The state directory pvmux keeps for a container podman started (podman passes no
/// `--root`: pvmux's default).
fn pvmux_state(id: &str) -> PathBuf {
    Path::new("/run/pvmux").join(id)
}

#[test]
#[cfg_attr(
    not(all(have_busybox, have_podman)),
    ignore = "needs /bin/busybox and podman: apt-get install busybox-static podman"
)]
fn eight_podman_containers_run_at_once() {
    const N: usize = 8;
    let p = Podman::new(PVMUX);
    // Started concurrently, as an engine starts a pod's containers.
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let p = &p;
                s.spawn(move || {
                    let script = format!(
                        "trap 'echo pong-{i}' USR1; trap 'echo bye-{i}; exit 0' TERM; \
                         echo up-{i}; while true; do sleep 1000 & wait; done"
                    );
                    let r = p.podman(Some(PVMUX), &["run", "-d", &p.image, "sh", "-c", &script]);
                    assert_eq!(r.code(), Some(0), "run -d {i}: {}", r.context());
                    r.stdout.trim().to_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Each is a guest of its own: it answers a signal with its own number, and its pid is
    // a process of its own.
    let mut pids = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let up = format!("up-{i}\n");
        wait_for("the container is up", || {
            p.podman(Some(PVMUX), &["logs", id]).stdout == up
        });
        let k = p.podman(Some(PVMUX), &["kill", "-s", "USR1", id]);
        assert_eq!(k.code(), Some(0), "kill -s USR1: {}", k.context());
        let pong = format!("up-{i}\npong-{i}\n");
        wait_for("the container answers", || {
            p.podman(Some(PVMUX), &["logs", id]).stdout == pong
        });
        let r = p.podman(Some(PVMUX), &["inspect", "-f", "{{.State.Pid}}", id]);
        let pid: i32 = r.stdout.trim().parse().expect("a pid");
        assert!(alive(pid), "container {i}'s process");
        assert!(pvmux_state(id).is_dir(), "container {i}'s state");
        pids.push(pid);
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), N, "one process per container");
    // All stop at once (SIGTERM reaches each init's trap), and nothing is left.
    std::thread::scope(|s| {
        for id in &ids {
            let p = &p;
            s.spawn(move || {
                let r = p.podman(Some(PVMUX), &["stop", "-t", "30", id]);
                assert_eq!(r.code(), Some(0), "stop: {}", r.context());
            });
        }
    });
    for (i, id) in ids.iter().enumerate() {
        let w = p.podman(Some(PVMUX), &["wait", id]);
        assert_eq!(w.stdout.trim(), "0", "{}", w.context());
        let logs = p.podman(Some(PVMUX), &["logs", id]);
        assert_eq!(logs.stdout, format!("up-{i}\npong-{i}\nbye-{i}\n"));
        let rm = p.podman(Some(PVMUX), &["rm", id]);
        assert_eq!(rm.code(), Some(0), "rm: {}", rm.context());
        assert!(!pvmux_state(id).exists(), "container {i}'s state is left");
    }
    for pid in pids {
        wait_for("the container's process is gone", || !alive(pid));
    }
}

/// `ctr run -t`: the shim hands pvmux a console socket, and the container's stdio is the
/// terminal whose master pvmux sends there; ctr itself needs a terminal (`script`).
#[test]
#[cfg_attr(
    not(all(have_busybox, have_podman, have_containerd, have_script)),
    ignore = "needs /bin/busybox, podman, containerd and script: apt-get install busybox-static podman containerd bsdutils"
)]
fn containerd_gives_the_container_a_terminal() {
    let p = Podman::new(PVMUX);
    let c = Containerd::with_image(&p);
    let run = |runtime: &str, id: &str| {
        let ctr = format!(
            "ctr -a {} -n {} run --fifo-dir {} --rm -t --runc-binary {runtime} --runc-root {} \
             {} {id} sh -c '[ -t 0 ] && [ -t 1 ] && echo ttys; exit 4'",
            c.path("containerd.sock").display(),
            c.namespace,
            c.path("fifo").display(),
            c.path(&format!("root-{}", short(runtime))).display(),
            p.image,
        );
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &ctr, "/dev/null"]);
        let what = format!("{cmd:?}");
        // script's stdin stays open: at its end, script would type ^D into the session, and
        // ctr (raw by then or not) passes it, or the NUL a canonical ^D leaves, to the
        // container, whose terminal echoes it ("^@").
        let stdin = Stdio::piped();
        run_with_timeout_stdin(
            cmd,
            stdin,
            &what,
            TIMEOUT,
            Duration::from_millis(10),
            |_| {},
        )
    };
    let pvmux = run(PVMUX, "tty-pvmux");
    let native = run(RUNC, "tty-runc");
    assert_eq!(pvmux.code(), Some(4), "{}", pvmux.context());
    assert_eq!(pvmux.code(), native.code(), "{}", native.context());
    // The terminals on the way (the container's, script's) turn its newline into "\r\r\n".
    assert!(pvmux.stdout.contains("ttys\r"), "{}", pvmux.context());
    assert_eq!(pvmux.stdout, native.stdout);
}
