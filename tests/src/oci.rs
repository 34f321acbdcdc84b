//! OCI runtime test scaffolding, shared by the `oci*` integration tests: bundles built from
//! the host's static busybox, runc's commands run as an engine runs them, a child-subreaper
//! test process that reaps the monitors `create` leaves behind, and podman with a private
//! configuration and a locally imported image.
//!
//! The `pvmux` command line is only known to integration tests
//! (`env!("CARGO_BIN_EXE_pvmux-cli")`), so the constructors take it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use rustix::process::{Pid, WaitOptions};

use crate::{run_with_timeout, Run, TempDir};

/// The host's busybox (a static build, e.g. Debian's busybox-static).
pub const BUSYBOX: &str = "/bin/busybox";

/// Longest any command, or any container, may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The applets the bundles link to busybox.
pub const APPLETS: [&str; 11] = [
    "sh", "echo", "cat", "sleep", "touch", "ls", "hostname", "id", "free", "pwd", "nc",
];

/// Makes this process the subreaper of the monitors `create` leaves behind (once).
pub fn subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .expect("become a child subreaper");
    });
}

/// A bundle: `rootfs/` (busybox and its applets), `config.json`, a host directory `out/`
/// bind-mounted read-write at `/out`, and the state root `root/`.
pub struct Bundle {
    /// The bundle directory.
    pub dir: TempDir,
    /// The `pvmux` command line.
    pvmux: &'static str,
}

impl Bundle {
    /// `pvmux --root ROOT create --console-socket S --bundle B --pid-file F ID`, as an
    /// engine runs it for a `process.terminal` container: the container's pid and the
    /// terminal master `create` sends.
    pub fn create_with_terminal(&self, id: &str) -> (i32, File) {
        let sock = self.path().join(format!("console-{id}.sock"));
        let listener =
            std::os::unix::net::UnixListener::bind(&sock).expect("bind the console socket");
        let pid_file = self.path().join(format!("pid-{id}"));
        let mut child = Command::new(self.pvmux)
            .arg("--root")
            .arg(self.root())
            .args(["create", "--console-socket"])
            .arg(&sock)
            .arg("--bundle")
            .arg(self.path())
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdin(Stdio::null())
            .spawn()
            .expect("run pvmux create");
        let master = receive_master(&listener);
        assert_eq!(wait_child(&mut child), 0, "create");
        let pid = std::fs::read_to_string(&pid_file)
            .expect("pid file")
            .trim()
            .parse()
            .expect("a pid");
        (pid, master)
    }

    /// A bundle whose process runs `args` (with PATH=/bin); `extra` is merged into the
    /// config's top level.
    pub fn new(pvmux: &'static str, args: &[&str], extra: serde_json::Value) -> Self {
        subreaper();
        let dir = TempDir::unique("pvmux-oci", "bundle");
        let bin = dir.0.join("rootfs/bin");
        std::fs::create_dir_all(&bin).expect("mkdir rootfs/bin");
        std::fs::create_dir(dir.0.join("rootfs/tmp")).expect("mkdir rootfs/tmp");
        std::fs::create_dir(dir.0.join("out")).expect("mkdir out");
        std::fs::copy(BUSYBOX, bin.join("busybox")).expect("copy busybox");
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", bin.join(a)).expect("link applet");
        }
        let mut config = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": { "path": "rootfs" },
            "process": {
                "cwd": "/",
                "args": args,
                "env": ["PATH=/bin", "GREETING=hello"],
                "user": { "uid": 0, "gid": 0 },
            },
            "mounts": [
                { "destination": "/proc", "type": "proc", "source": "proc" },
                { "destination": "/out", "type": "bind", "source": "out",
                  "options": ["rbind", "rw"] },
            ],
        });
        if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        std::fs::write(dir.0.join("config.json"), config.to_string()).expect("write config");
        Self { dir, pvmux }
    }

    /// The bundle directory.
    pub fn path(&self) -> &Path {
        &self.dir.0
    }

    /// The state root (`--root`).
    pub fn root(&self) -> PathBuf {
        self.dir.0.join("root")
    }

    /// File `name` of the host directory bind-mounted at `/out`.
    pub fn out(&self, name: &str) -> PathBuf {
        self.dir.0.join("out").join(name)
    }

    /// `pvmux --root ROOT ARGS...` (not for `create`: see [`Bundle::create`]).
    pub fn oci(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(self.pvmux);
        cmd.arg("--root").arg(self.root()).args(args);
        let what = format!("{cmd:?}");
        run_with_timeout(cmd, &what, TIMEOUT, Duration::from_millis(10), |_| {})
    }

    /// `pvmux create --bundle DIR --pid-file F ID` with the container's stdout and stderr in
    /// `stdout-ID` and `stderr-ID` (the monitor keeps them open, as conmon's pipes): the
    /// create's exit code and stderr, and the pid of the pid file.
    pub fn create(&self, id: &str, log: Option<&Path>) -> (i32, String, Option<i32>) {
        let pid_file = self.dir.0.join(format!("pid-{id}"));
        let stdout = File::create(self.dir.0.join(format!("stdout-{id}"))).expect("stdout");
        let stderr_path = self.dir.0.join(format!("stderr-{id}"));
        let stderr = File::create(&stderr_path).expect("stderr");
        let mut cmd = Command::new(self.pvmux);
        cmd.arg("--root").arg(self.root());
        if let Some(log) = log {
            cmd.arg("--log").arg(log);
        }
        cmd.arg("create")
            .arg("--bundle")
            .arg(self.path())
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let mut child = cmd.spawn().expect("run pvmux create");
        let status = wait_child(&mut child);
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .map(|s| s.trim().parse().expect("pid file holds a pid"));
        let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        (status, err, pid)
    }

    /// What container `id` wrote to its stdout so far.
    pub fn stdout(&self, id: &str) -> String {
        std::fs::read_to_string(self.dir.0.join(format!("stdout-{id}"))).unwrap_or_default()
    }

    /// What container `id` wrote to its stderr so far.
    pub fn stderr(&self, id: &str) -> String {
        std::fs::read_to_string(self.dir.0.join(format!("stderr-{id}"))).unwrap_or_default()
    }

    /// The status `state ID` reports, and its pid.
    pub fn state(&self, id: &str) -> (String, i64) {
        let r = self.oci(&["state", id]);
        assert_eq!(r.code(), Some(0), "state {id}: {}", r.context());
        let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("state is JSON");
        assert_eq!(v["id"], id);
        assert_eq!(
            v["bundle"],
            self.path().canonicalize().unwrap().to_str().unwrap()
        );
        assert!(
            v["ociVersion"]
                .as_str()
                .is_some_and(|s| s.starts_with("1.")),
            "{v}"
        );
        (
            v["status"].as_str().expect("status").to_owned(),
            v["pid"].as_i64().expect("pid"),
        )
    }
}

/// Waits for a child of this process (at most [`TIMEOUT`]); its exit code (128 + N when
/// killed by signal N).
pub fn wait_child(child: &mut std::process::Child) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            use std::os::unix::process::ExitStatusExt;
            return s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0));
        }
        assert!(start.elapsed() < TIMEOUT, "pvmux did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for process `pid`, which this subreaper inherited (at most [`TIMEOUT`]); its exit
/// code (128 + N when killed by signal N).
pub fn reap(pid: i32) -> i32 {
    let p = Pid::from_raw(pid).expect("pid");
    let start = Instant::now();
    loop {
        match rustix::process::waitpid(Some(p), WaitOptions::NOHANG).expect("waitpid") {
            Some((_, s)) => {
                return s
                    .exit_status()
                    .unwrap_or_else(|| 128 + s.terminating_signal().unwrap_or(0));
            }
            None => {
                assert!(start.elapsed() < TIMEOUT, "process {pid} did not end");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Runs `cmd` until it exits with 0 (at most [`TIMEOUT`]) and returns that run; on a timeout
/// the failure shows each distinct output the runs gave, in order, so that a wait that never
/// ends says why, and what changed on the way (a first failure that left the tenant unable
/// to answer the next ones).
pub fn wait_for_success(what: &str, mut cmd: impl FnMut() -> Run) -> Run {
    let start = Instant::now();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let r = cmd();
        if r.code() == Some(0) {
            return r;
        }
        let context = r.context();
        if seen.last() != Some(&context) {
            seen.push(context);
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "{what}: {} distinct failures:\n{}",
            seen.len(),
            seen.join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `cond` holds (at most [`TIMEOUT`]).
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < TIMEOUT, "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The children of process `pid` (its sandboxes, for a monitor).
pub fn children(pid: i32) -> Vec<i32> {
    let mut v = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return v;
    };
    for t in tasks.flatten() {
        let list = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        v.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    v
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s[s.rfind(')').unwrap() + 1..].split_whitespace().next();
        state != Some("Z")
    })
}

/// `pvmux --root ROOT run --bundle DIR ID` to completion.
pub fn run_bundle(b: &Bundle, id: &str) -> Run {
    let mut cmd = Command::new(b.pvmux);
    cmd.arg("--root")
        .arg(b.root())
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg(id);
    run_with_timeout(cmd, id, TIMEOUT, Duration::from_millis(10), |_| {})
}

/// Receives the terminal master `create` sends to `listener` (runc's console socket).
pub fn receive_master(listener: &std::os::unix::net::UnixListener) -> File {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use std::mem::MaybeUninit;
    let (stream, _) = listener.accept().expect("the monitor connects");
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 256];
    let n = recvmsg(
        &stream,
        &mut [std::io::IoSliceMut::new(&mut name)],
        &mut cmsg,
        RecvFlags::empty(),
    )
    .expect("recvmsg")
    .bytes;
    assert!(name[..n].starts_with(b"/dev/pts/"), "the terminal's name");
    let fd = cmsg
        .drain()
        .find_map(|m| match m {
            RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
            _ => None,
        })
        .expect("a descriptor");
    File::from(fd)
}

/// podman with a `containers.conf` of its own (`default_ulimits = []`: podman's default
/// ulimits are above this kind of host's hard limits; `runtime = "runc"`: the native runs
/// the tests compare with are runc's — podman would otherwise pick crun when it is
/// installed, and crun refuses this kind of host's hybrid cgroup layout) and an image
/// imported from a busybox root file system; removed on drop.
pub struct Podman {
    dir: TempDir,
    /// The image's name.
    pub image: String,
}

impl Podman {
    /// podman with its own configuration, and a busybox image imported for this test.
    pub fn new(pvmux: &'static str) -> Self {
        let dir = TempDir::unique("pvmux-oci", "podman");
        std::fs::write(
            dir.0.join("containers.conf"),
            "[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = \"runc\"\n",
        )
        .expect("write containers.conf");
        let b = Bundle::new(pvmux, &["true"], serde_json::json!({}));
        let tar = dir.0.join("rootfs.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(b.path().join("rootfs"))
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .expect("run tar");
        assert!(st.success(), "tar");
        // One image per instance: tests running at once in one test process must not remove
        // each other's image (`rmi -f` removes its containers too).
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = Self {
            dir,
            image: format!("localhost/pvmux-oci-busybox:{}-{n}", std::process::id()),
        };
        let r = p.podman(None, &["import", tar.to_str().unwrap(), &p.image]);
        assert_eq!(r.code(), Some(0), "podman import: {}", r.context());
        p
    }

    /// Its `containers.conf` (for `CONTAINERS_CONF`, when podman runs under another program).
    pub fn conf(&self) -> PathBuf {
        self.dir.0.join("containers.conf")
    }

    /// `podman [--runtime RUNTIME] ARGS...`.
    pub fn podman(&self, runtime: Option<&str>, args: &[&str]) -> Run {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", self.dir.0.join("containers.conf"));
        if let Some(r) = runtime {
            cmd.arg("--runtime").arg(r);
        }
        cmd.args(args);
        let what = format!("{cmd:?}");
        run_with_timeout(cmd, &what, TIMEOUT, Duration::from_millis(10), |_| {})
    }
}

/// A test that fails half way leaves no container behind: every container still in the
/// bundle's state root is deleted by force (its monitor killed, its sandboxes with it).
impl Drop for Bundle {
    fn drop(&mut self) {
        let Ok(ids) = std::fs::read_dir(self.root()) else {
            return;
        };
        for id in ids.flatten() {
            let _ = Command::new(self.pvmux)
                .arg("--root")
                .arg(self.root())
                .args(["delete", "--force"])
                .arg(id.file_name())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Best effort: the image is this test's own.
        let _ = self.podman(None, &["rmi", "-f", &self.image]);
    }
}

/// Everything read from a terminal master (or a pipe) so far, by a thread of its own.
#[derive(Clone, Default)]
pub struct Screen(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Screen {
    /// Starts reading `from` until its end (or EIO: the terminal's last slave closed).
    pub fn read(mut from: impl std::io::Read + Send + 'static) -> Self {
        let s = Self::default();
        let buf = std::sync::Arc::clone(&s.0);
        std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            while let Ok(n @ 1..) = from.read(&mut b) {
                buf.lock().unwrap().extend_from_slice(&b[..n]);
            }
        });
        s
    }

    /// What was shown so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits until the text shown contains `needle` (at most [`TIMEOUT`]).
    pub fn expect(&self, needle: &str) {
        let start = std::time::Instant::now();
        while !self.text().contains(needle) {
            assert!(
                start.elapsed() < TIMEOUT,
                "{needle:?} not shown; the terminal shows {:?}",
                self.text()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Sets the size of the terminal `master` (`TIOCSWINSZ`), as an engine does.
pub fn resize(master: &File, rows: u16, cols: u16) {
    rustix::termios::tcsetwinsize(
        master,
        rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .expect("TIOCSWINSZ on the master");
}
