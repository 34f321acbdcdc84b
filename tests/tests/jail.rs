//! The jail of every sandbox kind (docs/SECURITY.md, "Layers"): `pvmux run` is started with a
//! guest program that waits for the end of its input, and while it waits the test reads, from
//! `/proc`, every sandbox process that pvmux spawned — the kernel sandbox, the program's user
//! sandbox and the spare user sandboxes waiting for a `fork` — and checks capabilities,
//! uid/gid, `no_new_privs`, seccomp, namespaces, file descriptors, root and working directory
//! and resource limits. What the host allows is detected explicitly (`jail::layers()`, the
//! same detection pvmux runs, printed and compared with pvmux's own log line), and each
//! namespace is asserted against it: never skipped silently. Then a normal multi-process
//! program still runs, with the same output as natively.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pvmux_host::jail::{
    layers, Layers, SandboxUser, DEFAULT_SANDBOX_ID, NAMESPACES, RLIMITS, SANDBOX_FDS,
};
use pvmux_hypercalls::window::{MAX_WINDOWS, WINDOW_FD_BASE};
use pvmux_tests::{run_with_timeout, TempDir};

/// The directory holding the static test programs (shared as the guest's root).
const PROG_DIR: &str = env!("PVMUX_PROG_DIR");
/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// `argv[0]` of every sandbox process.
const SANDBOX_ARGV0: &[u8] = b"pvmux-sandbox";
/// The log lines naming sandboxes (kernel: `tenant started`, user: `space` at debug) and the
/// jail's layers (info).
const LOG: &str = "warn,pvmux_host::tenant=info,pvmux_host::jail=info,pvmux_host::space=debug";
/// How long a sandbox may take to appear or reach its steady state on a loaded machine.
const SETTLE: Duration = Duration::from_secs(60);

/// What kind of sandbox a process is, from pvmux's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Kernel,
    User,
    Spare,
    /// A user sandbox template, which forks spares (docs/SECURITY.md, "Templates").
    Template,
}

/// A `pvmux run` whose guest program waits for the end of its stdin.
struct Waiting {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    log: PathBuf,
    _dir: TempDir,
}

impl Waiting {
    /// `pvmux run` (run through `prefix`, e.g. `setpriv ...`, if not empty).
    fn start(prefix: &[&str], extra: &[&str]) -> Self {
        let dir = TempDir::unique("jail", "log");
        let log = dir.0.join("stderr");
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(PVMUX);
                c
            }
            None => Command::new(PVMUX),
        };
        let mut child = cmd
            .arg("run")
            .args(["--mem", "64M", "--vcpus", "2"])
            .args(extra)
            .args(["--rootfs", PROG_DIR, "--", "/toolbox", "wait-eof", "0"])
            .env_clear()
            .env("RUST_LOG", LOG)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("pvmux runs");
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The live sandboxes by pid, once pvmux's log names a kernel sandbox, a user sandbox
    /// and a spare, and every one of them is a child of pvmux (or of its template) with
    /// `argv[0]` = `pvmux-sandbox` whose seccomp filter is in force (start-up is over).
    fn sandboxes(&mut self) -> BTreeMap<u32, Kind> {
        let deadline = Instant::now() + SETTLE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                panic!("pvmux ended early ({status}):\n{}", self.log());
            }
            let found = kinds(&self.log());
            let pvmux = self.child.id();
            let live: BTreeMap<u32, Kind> = found
                .into_iter()
                .filter(|(pid, _)| argv0(*pid).as_deref() == Some(SANDBOX_ARGV0))
                .collect();
            let have = |k: Kind| live.values().any(|&v| v == k);
            let template = live
                .iter()
                .find(|(_, &k)| k == Kind::Template)
                .map(|(&p, _)| p.to_string());
            let settled = live.keys().all(|&pid| {
                // (setpriv execs pvmux: same pid.)
                let parent = status_field(pid, "PPid");
                (parent.as_deref() == Some(&pvmux.to_string()) || parent == template)
                    && status_field(pid, "Seccomp").as_deref() == Some("2")
            });
            if have(Kind::Kernel) && have(Kind::User) && have(Kind::Spare) && settled {
                return live;
            }
            assert!(
                Instant::now() < deadline,
                "no settled kernel, user and spare sandboxes within {SETTLE:?}: {live:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ends the guest program and returns pvmux's exit status.
    fn finish(mut self) -> Option<i32> {
        self.stdin.take();
        let deadline = Instant::now() + SETTLE;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("pvmux did not exit:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sandboxes named by pvmux's log: `tenant started ... pid=N` (kernel), `user sandbox
/// spawned`/`spare user sandbox assigned ... pid=N` (user), `spare user sandbox spawned ...
/// pid=N` (a spare until assigned), `user sandbox template spawned ... pid=N` (a template).
fn kinds(log: &str) -> BTreeMap<u32, Kind> {
    let mut m = BTreeMap::new();
    for line in log.lines() {
        let Some(pid) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("pid="))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let kind = if line.contains("tenant started") {
            Kind::Kernel
        } else if line.contains("user sandbox template spawned") {
            Kind::Template
        } else if line.contains("spare user sandbox spawned") {
            Kind::Spare
        } else if line.contains("spare user sandbox assigned")
            || line.contains("user sandbox spawned")
        {
            Kind::User
        } else {
            continue;
        };
        m.insert(pid, kind);
    }
    m
}

fn argv0(pid: u32) -> Option<Vec<u8>> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(cmdline.split(|&b| b == 0).next().unwrap_or(&[]).to_vec())
}

/// The value of `Field:` in `/proc/PID/status`, whitespace-normalised.
fn status_field(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == field).then(|| v.split_whitespace().collect::<Vec<_>>().join(" "))
    })
}

/// The detection the assertions rest on, printed so a run shows what was checked.
fn detected() -> Layers {
    let l = layers();
    eprintln!("jail layers on this host: {l:?}: {}", l.describe());
    l
}

/// The template a sandbox was forked from (its parent, if that is a sandbox too).
fn forked_from(pid: u32) -> Option<u32> {
    let parent: u32 = status_field(pid, "PPid")?.parse().ok()?;
    (argv0(parent).as_deref() == Some(SANDBOX_ARGV0)).then_some(parent)
}

/// Every check of one sandbox jailed with layers `l`, running as `user`.
fn check_sandbox(pid: u32, kind: Kind, l: &Layers, user: SandboxUser) {
    let what = format!("{kind:?} sandbox {pid}");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(
            status_field(pid, cap).as_deref(),
            Some("0000000000000000"),
            "{what}: {cap}"
        );
    }
    let bnd = status_field(pid, "CapBnd");
    if l.drop_bounding {
        assert_eq!(bnd.as_deref(), Some("0000000000000000"), "{what}: CapBnd");
    } else {
        eprintln!("{what}: bounding set kept (the host gives no CAP_SETPCAP): {bnd:?}");
    }
    assert_eq!(
        status_field(pid, "NoNewPrivs").as_deref(),
        Some("1"),
        "{what}"
    );
    assert_eq!(status_field(pid, "Seccomp").as_deref(), Some("2"), "{what}");
    let (uid, gid) = (user.uid, user.gid);
    let ids = |v: u32| format!("{v} {v} {v} {v}");
    assert_eq!(status_field(pid, "Uid"), Some(ids(uid)), "{what}: Uid");
    assert_eq!(status_field(pid, "Gid"), Some(ids(gid)), "{what}: Gid");
    assert_eq!(status_field(pid, "Groups").as_deref(), Some(""), "{what}");
    // Namespaces: different from the host's exactly where the host allows a new one.
    for (flag, name) in NAMESPACES {
        let own = std::fs::read_link(format!("/proc/{pid}/ns/{name}")).expect("sandbox ns");
        let host = std::fs::read_link(format!("/proc/self/ns/{name}")).expect("host ns");
        if l.namespaces & flag != 0 {
            assert_ne!(own, host, "{what}: {name} namespace is the host's");
        } else {
            assert_eq!(own, host, "{what}: {name} namespace not expected");
        }
    }
    let template = forked_from(pid);
    if l.pid_namespace() {
        let nspid = status_field(pid, "NSpid").expect("NSpid");
        match template {
            None => assert_eq!(
                nspid,
                format!("{pid} 1"),
                "{what}: pid 1 of its own pid namespace"
            ),
            // Forked: in its template's pid namespace (the template is its pid 1).
            Some(t) => {
                let inner: u32 = nspid
                    .strip_prefix(&format!("{pid} "))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{what}: NSpid {nspid}"));
                assert!(inner > 1, "{what}: NSpid {nspid}");
                assert_eq!(
                    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok(),
                    std::fs::read_link(format!("/proc/{t}/ns/pid")).ok(),
                    "{what}: its template's pid namespace"
                );
            }
        }
    }
    // File descriptors: exactly the documented set.
    let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .map(|e| {
            e.expect("fd")
                .file_name()
                .to_string_lossy()
                .parse()
                .expect("fd number")
        })
        .collect();
    fds.sort_unstable();
    if kind != Kind::Kernel {
        // Host file windows the host installed (`--rootfs` programs): read-only regular
        // files at their fixed numbers; and a spawned user sandbox's own seccomp listener,
        // which the host took (`host-module/src/window.rs`).
        fds.retain(|&fd| {
            let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).expect("fd link");
            let window = (WINDOW_FD_BASE..WINDOW_FD_BASE + MAX_WINDOWS as i32).contains(&fd);
            if window {
                let (flags, info) = pvmux_tests::procfs::fd_flags(pid, fd);
                assert_eq!(flags & 3, 0, "{what}: window fd {fd} is read-only: {info}");
                let st = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).expect("window");
                assert!(st.is_file(), "{what}: window fd {fd} is {link:?}");
                return false;
            }
            let listener = link == Path::new("anon_inode:seccomp notify");
            assert!(
                !listener || (matches!(kind, Kind::User | Kind::Spare) && template.is_none()),
                "{what}: a listener at fd {fd}"
            );
            !listener
        });
    }
    if template.is_some() {
        // A forked sandbox closed its template's control memfd (fd 4).
        assert_eq!(fds, [SANDBOX_FDS[0]], "{what}: fds");
    } else if kind == Kind::Template {
        // At most one more: the pidfd of the child it forked last (the host took a copy).
        let extra: Vec<i32> = fds
            .iter()
            .copied()
            .filter(|fd| !SANDBOX_FDS.contains(fd))
            .collect();
        assert!(extra.len() <= 1, "{what}: fds {fds:?}");
        for fd in extra {
            let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).expect("fd link");
            assert_eq!(link, Path::new("anon_inode:[pidfd]"), "{what}: fd {fd}");
        }
    } else if kind == Kind::Kernel {
        // And the built-in kernel image's file: the pvmux executable, read-only.
        let image = pvmux_hypercalls::sandbox::KERNEL_IMAGE_FD;
        let mut want = SANDBOX_FDS.to_vec();
        want.push(image);
        assert_eq!(fds, want, "{what}: fds");
        let link = std::fs::read_link(format!("/proc/{pid}/fd/{image}")).expect("fd link");
        assert_eq!(
            std::fs::canonicalize(&link).ok(),
            std::fs::canonicalize(PVMUX).ok(),
            "{what}: fd {image} is {link:?}"
        );
        let (flags, info) = pvmux_tests::procfs::fd_flags(pid, image);
        assert_eq!(flags & 3, 0, "{what}: fd {image} is read-only: {info}");
    } else {
        assert_eq!(fds, SANDBOX_FDS, "{what}: fds");
    }
    // Root and working directory.
    let root = Path::new("/proc").join(pid.to_string()).join("root");
    let cwd = Path::new("/proc").join(pid.to_string()).join("cwd");
    let (rm, cm) = (
        std::fs::metadata(&root).expect("root"),
        std::fs::metadata(&cwd).expect("cwd"),
    );
    assert_eq!(
        (rm.dev(), rm.ino()),
        (cm.dev(), cm.ino()),
        "{what}: cwd is /"
    );
    if l.empty_root {
        let entries: Vec<_> = std::fs::read_dir(&root).expect("root dir").collect();
        assert!(entries.is_empty(), "{what}: root not empty: {entries:?}");
        let host_root = std::fs::metadata("/").expect("/");
        assert_ne!(rm.dev(), host_root.dev(), "{what}: root is the host's");
        assert!(
            std::fs::write(root.join("x"), b"x").is_err(),
            "{what}: root is writable"
        );
    } else {
        assert_eq!(std::fs::read_link(&cwd).expect("cwd link"), Path::new("/"));
    }
    // Resource limits. A kernel sandbox may write its guest memory (the 64 MiB of
    // `Waiting`) through the memfd, and no more.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    for r in RLIMITS {
        let (name, mut v) = (r.proc_name, r.value);
        if matches!(kind, Kind::Kernel) && r.resource == libc::RLIMIT_FSIZE {
            v = 64 << 20;
        }
        let line = limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{what}: no {name} in {limits}"));
        let words: Vec<&str> = line[name.len()..].split_whitespace().collect();
        assert_eq!(
            &words[..2],
            &[v.to_string().as_str(), v.to_string().as_str()],
            "{what}: {line}"
        );
    }
}

/// As root, a tenant's user sandboxes (spares included) live in its kernel sandbox's net,
/// ipc and uts namespaces and, with the empty root, its mount namespace (made once per
/// tenant, joined with `setns`); each keeps a pid namespace of its own.
fn check_shared_namespaces(sandboxes: &BTreeMap<u32, Kind>, l: &Layers) {
    let ns = |pid: u32, name: &str| {
        std::fs::read_link(format!("/proc/{pid}/ns/{name}")).expect("sandbox ns")
    };
    let kernel = sandboxes
        .iter()
        .find(|(_, &k)| k == Kind::Kernel)
        .map(|(&p, _)| p)
        .expect("a kernel sandbox");
    let mut shared = vec!["net", "ipc", "uts"];
    if l.empty_root {
        shared.push("mnt");
    }
    let users: Vec<u32> = sandboxes
        .iter()
        .filter(|(_, &k)| k != Kind::Kernel)
        .map(|(&p, _)| p)
        .collect();
    assert!(!users.is_empty(), "no user sandbox to compare");
    for pid in users {
        for name in &shared {
            assert_eq!(
                ns(pid, name),
                ns(kernel, name),
                "user sandbox {pid}: its {name} namespace is not the tenant's"
            );
        }
        if l.pid_namespace() {
            // Its own, or its template's (not shared with the kernel sandbox either way).
            assert_ne!(
                ns(pid, "pid"),
                ns(kernel, "pid"),
                "user sandbox {pid}: pid namespace"
            );
        }
    }
}

fn check_run(extra: &[&str], user: SandboxUser) {
    let l = detected();
    assert!(l.root, "the test runs as root (as CI does)");
    let mut run = Waiting::start(&[], extra);
    let sandboxes = run.sandboxes();
    let log = run.log();
    assert!(
        log.contains(&format!("sandbox jail: {}", l.describe())),
        "pvmux's detection differs from the test's ({}):\n{log}",
        l.describe()
    );
    for (&pid, &kind) in &sandboxes {
        check_sandbox(pid, kind, &l, user);
    }
    check_shared_namespaces(&sandboxes, &l);
    assert_eq!(run.finish(), Some(0), "{log}");
}

#[test]
fn every_sandbox_kind_is_jailed_with_the_default_user() {
    check_run(&[], SandboxUser::DEFAULT);
    assert_eq!(SandboxUser::DEFAULT.uid, DEFAULT_SANDBOX_ID);
}

#[test]
fn a_configured_sandbox_user_is_used_by_every_sandbox() {
    check_run(
        &["--sandbox-user", "2000000123:2000000456"],
        SandboxUser {
            uid: 2_000_000_123,
            gid: 2_000_000_456,
        },
    );
    // UID alone: the group is the same number (podman's --user takes UID[:GID] too).
    check_run(
        &["--sandbox-user", "4242"],
        SandboxUser {
            uid: 4242,
            gid: 4242,
        },
    );
}

#[test]
fn a_bad_sandbox_user_is_a_host_error() {
    for bad in ["root", "1:", "-5", "4294967295"] {
        let mut cmd = Command::new(PVMUX);
        cmd.args([
            "run",
            &format!("--sandbox-user={bad}"),
            "--",
            "/toolbox",
            "true",
        ]);
        let run = run_with_timeout(
            cmd,
            "pvmux run --sandbox-user",
            SETTLE,
            Duration::from_millis(10),
            |_| {},
        );
        assert_eq!(run.code(), Some(125), "{bad}: {}", run.context());
        assert!(run.stderr.contains("--sandbox-user"), "{}", run.context());
    }
}

/// A multi-process program (children, pipes between them, exit statuses) runs in the jailed
/// sandboxes exactly as natively.
#[test]
fn a_multi_process_program_runs_as_natively() {
    let prog = |n: &str| Path::new(PROG_DIR).join(n);
    let native = Command::new(prog("spawn"))
        .arg(prog("hello"))
        .output()
        .expect("native spawn");
    assert!(native.status.success(), "{native:?}");
    let mut cmd = Command::new(PVMUX);
    cmd.args([
        "run", "--mem", "128M", "--rootfs", PROG_DIR, "--", "/spawn", "/hello",
    ]);
    let run = run_with_timeout(
        cmd,
        "pvmux run /spawn",
        SETTLE,
        Duration::from_millis(10),
        |_| {},
    );
    assert_eq!(run.code(), Some(0), "{}", run.context());
    assert_eq!(
        run.stdout,
        String::from_utf8_lossy(&native.stdout),
        "{}",
        run.context()
    );
    let _ = std::io::stderr().flush();
}

/// The same checks with pvmux started as an unprivileged user (`nobody`, through `setpriv`):
/// the sandboxes keep that uid, and get every namespace (a user namespace mapping only that
/// uid first) exactly when the host lets an unprivileged user make a user namespace — which
/// the test detects itself by running `unshare -U` as that user.
#[test]
fn without_root_the_sandboxes_keep_the_uid_and_use_a_user_namespace() {
    const NOBODY: u32 = 65534;
    let ids = NOBODY.to_string();
    let setpriv = [
        "setpriv",
        "--reuid",
        ids.as_str(),
        "--regid",
        ids.as_str(),
        "--clear-groups",
        "--inh-caps=-all",
    ];
    let userns = Command::new(setpriv[0])
        .args(&setpriv[1..])
        .args(["unshare", "-U", "true"])
        .status()
        .expect("setpriv (util-linux) runs")
        .success();
    let root = detected();
    eprintln!("unprivileged user namespaces on this host: {userns}");
    let l = if userns {
        Layers {
            root: false,
            namespaces: root.namespaces | NAMESPACES[0].0,
            empty_root: root.empty_root,
            drop_bounding: true,
        }
    } else {
        Layers {
            root: false,
            namespaces: 0,
            empty_root: false,
            drop_bounding: false,
        }
    };
    let mut run = Waiting::start(&setpriv, &[]);
    let sandboxes = run.sandboxes();
    let log = run.log();
    assert!(
        log.contains(&format!("sandbox jail: {}", l.describe())),
        "pvmux as uid {NOBODY} did not detect {}:\n{log}",
        l.describe()
    );
    let user = SandboxUser {
        uid: NOBODY,
        gid: NOBODY,
    };
    for (&pid, &kind) in &sandboxes {
        check_sandbox(pid, kind, &l, user);
    }
    assert_eq!(run.finish(), Some(0), "{log}");
}

/// A pvmux that ends while one of its threads is starting a jailed child (here: a CLI error
/// right after the jail detection began on a background thread, 40 times) leaves no process
/// behind. The child shares the host's memory until it execs; its credential change once
/// went through glibc's `setresuid`, which waits for the host's other threads to take the
/// change too — forever, when the host ended or a thread was being created or ending at that
/// moment — and the child stayed, asleep, holding the host's memory and files.
#[test]
fn a_host_ending_while_it_jails_a_child_leaves_no_process() {
    let token = format!("pvmux-jail-exit-{}", std::process::id());
    let missing = format!("/{token}");
    for _ in 0..40 {
        // Not `output()`: a child left behind would hold the pipes open.
        let status = Command::new(PVMUX)
            .args(["run", "-e", "=bad", "--", &missing])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run pvmux");
        assert_eq!(status.code(), Some(125));
    }
    // Children that share the host's memory show its command line, token included.
    let with_token = || -> Vec<u32> {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.windows(token.len()).any(|w| w == token.as_bytes()))
            })
            .collect()
    };
    let deadline = Instant::now() + SETTLE;
    let mut left = with_token();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left = with_token();
    }
    for pid in &left {
        // Do not leave them to the next test run.
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
