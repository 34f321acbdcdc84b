//! pvmux as an OCI runtime, driven as runc's users (conmon, containerd's shim) drive runc:
//! bundles built from the host's static busybox in temporary directories, `create` with a
//! pid file and the container's stdout/stderr in files, the container's exit status read by
//! `waitpid` on the pid of the pid file (this test process is a child subreaper, as conmon
//! and the shim are), `state`, `start`, `kill`, `delete`, `run ID`, and the errors runc
//! gives with exit status 1. Ignored (`needs /bin/busybox`) without busybox-static.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use pvmux_tests::oci::{
    alive, children, reap, receive_master, run_bundle, wait_child, wait_for, Bundle, Podman,
    BUSYBOX, TIMEOUT,
};
use pvmux_tests::{run_with_timeout, Run, TempDir};
use rustix::process::Pid;

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn create_waits_for_start_and_the_exit_status_is_the_programs() {
    let b = Bundle::new(
        PVMUX,
        &[
            "sh",
            "-c",
            "echo $GREETING from the container; touch /out/ran; exit 7",
        ],
        serde_json::json!({}),
    );
    let (code, err, pid) = b.create("c1", None);
    assert_eq!(code, 0, "create: {err}");
    let pid = pid.expect("create wrote the pid file");
    // Created: the monitor runs, the guest does not (no sandbox, no output, no marker).
    assert_eq!(b.state("c1"), ("created".to_owned(), i64::from(pid)));
    assert!(alive(pid));
    // The monitor's only child before start is its short-lived jail probe (the host's
    // warm-up): it ends, and no sandbox takes its place.
    wait_for("no guest kernel before start", || children(pid).is_empty());
    assert!(!b.out("ran").exists());
    assert_eq!(b.stdout("c1"), "");
    let r = b.oci(&["start", "c1"]);
    assert_eq!(r.code(), Some(0), "start: {}", r.context());
    // The exit status of the pid engines wait on is the program's.
    assert_eq!(reap(pid), 7);
    assert_eq!(b.stdout("c1"), "hello from the container\n");
    assert!(b.out("ran").exists(), "the bind mount reached the host");
    assert_eq!(b.state("c1"), ("stopped".to_owned(), 0));
    // Starting it again is an error, as runc's.
    let again = b.oci(&["start", "c1"]);
    assert_eq!(again.code(), Some(1), "{}", again.context());
    assert!(again.stderr.contains("stopped"), "{}", again.context());
    let d = b.oci(&["delete", "c1"]);
    assert_eq!(d.code(), Some(0), "{}", d.context());
    assert!(!b.root().join("c1").exists(), "delete leaves no state");
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn kill_reaches_the_guests_init() {
    let b = Bundle::new(
        PVMUX,
        &[
            "sh",
            "-c",
            "trap 'echo got TERM; exit 3' TERM; echo ready; sleep 100 & wait",
        ],
        serde_json::json!({}),
    );
    let (code, err, pid) = b.create("k1", None);
    assert_eq!(code, 0, "create: {err}");
    let pid = pid.expect("pid file");
    let r = b.oci(&["start", "k1"]);
    assert_eq!(r.code(), Some(0), "start: {}", r.context());
    assert_eq!(b.state("k1").0, "running");
    assert!(!children(pid).is_empty(), "the guest kernel runs");
    wait_for("the trap is set", || b.stdout("k1") == "ready\n");
    // runc's exec: a new process in the running guest, its output and exit status ours.
    let e = b.oci(&["exec", "k1", "/bin/sh", "-c", "echo in the guest; exit 5"]);
    assert_eq!(e.code(), Some(5), "exec: {}", e.context());
    assert_eq!(e.stdout, "in the guest\n", "{}", e.context());
    // ... and from a process.json, as engines pass it.
    let process = b.dir.0.join("process.json");
    std::fs::write(
        &process,
        serde_json::json!({
            "args": ["/bin/sh", "-c", "echo $GREETING $(id -u) $PWD; exit 4"],
            "env": ["PATH=/bin", "GREETING=hi"],
            "cwd": "/bin",
            "user": { "uid": 7, "gid": 7 },
        })
        .to_string(),
    )
    .expect("write process.json");
    let e = b.oci(&["exec", "--process", process.to_str().unwrap(), "k1"]);
    assert_eq!(e.code(), Some(4), "exec --process: {}", e.context());
    assert_eq!(e.stdout, "hi 7 /bin\n", "{}", e.context());
    let k = b.oci(&["kill", "k1", "TERM"]);
    assert_eq!(k.code(), Some(0), "kill: {}", k.context());
    assert_eq!(reap(pid), 3, "init's trap decides the exit status");
    assert_eq!(b.stdout("k1"), "ready\ngot TERM\n");
    // Killing a stopped container is runc's error.
    let k = b.oci(&["kill", "k1", "KILL"]);
    assert_eq!(k.code(), Some(1), "{}", k.context());
    assert!(k.stderr.contains("not running"), "{}", k.context());
    let e = b.oci(&["exec", "k1", "/bin/true"]);
    assert_eq!(e.code(), Some(1), "{}", e.context());
    assert!(e.stderr.contains("not running"), "{}", e.context());
    assert_eq!(b.oci(&["delete", "k1"]).code(), Some(0));
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn delete_leaves_no_process_and_no_state() {
    let b = Bundle::new(PVMUX, &["sleep", "100"], serde_json::json!({}));
    // A created container is deleted without --force (runc's rule): its monitor dies.
    let (code, err, pid) = b.create("d1", None);
    assert_eq!(code, 0, "create: {err}");
    let pid = pid.expect("pid file");
    assert_eq!(b.oci(&["delete", "d1"]).code(), Some(0));
    assert_eq!(reap(pid), 128 + 9);
    assert!(!b.root().join("d1").exists());
    // A running one needs --force; its sandboxes die with its monitor.
    let (code, err, pid) = b.create("d2", None);
    assert_eq!(code, 0, "create: {err}");
    let pid = pid.expect("pid file");
    assert_eq!(b.oci(&["start", "d2"]).code(), Some(0));
    let sandboxes = children(pid);
    assert!(!sandboxes.is_empty(), "the guest kernel runs");
    let d = b.oci(&["delete", "d2"]);
    assert_eq!(d.code(), Some(1), "{}", d.context());
    assert!(d.stderr.contains("not stopped"), "{}", d.context());
    assert_eq!(b.state("d2").0, "running");
    let d = b.oci(&["delete", "--force", "d2"]);
    assert_eq!(d.code(), Some(0), "{}", d.context());
    assert!(!b.root().join("d2").exists());
    assert_eq!(reap(pid), 128 + 9);
    // The sandboxes were re-parented to this subreaper: each ends.
    for s in sandboxes {
        reap(s);
    }
    // Deleting what does not exist: an error, but not with --force.
    let d = b.oci(&["delete", "d2"]);
    assert_eq!(d.code(), Some(1), "{}", d.context());
    assert!(d.stderr.contains("does not exist"), "{}", d.context());
    assert_eq!(b.oci(&["delete", "--force", "d2"]).code(), Some(0));
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn run_with_an_id_runs_the_bundle_to_completion() {
    let b = Bundle::new(
        PVMUX,
        &[
            "sh",
            "-c",
            "echo $GREETING; cat /proc/self/status >/dev/null; exit 5",
        ],
        serde_json::json!({}),
    );
    let mut cmd = Command::new(PVMUX);
    cmd.arg("--root")
        .arg(b.root())
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg("r1");
    let r = run_with_timeout(cmd, "run r1", TIMEOUT, Duration::from_millis(10), |_| {});
    assert_eq!(r.code(), Some(5), "{}", r.context());
    assert_eq!(r.stdout, "hello\n");
    assert!(!b.root().join("r1").exists(), "run deletes the container");
    // pvmux run's own form still runs a program.
    let mut cmd = Command::new(PVMUX);
    cmd.args(["run", "--rootfs"])
        .arg(b.path().join("rootfs"))
        .args(["--", "/bin/sh", "-c", "exit 4"]);
    let r = run_with_timeout(cmd, "run", TIMEOUT, Duration::from_millis(10), |_| {});
    assert_eq!(r.code(), Some(4), "{}", r.context());
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn kill_9_of_run_leaves_no_container_behind() {
    let b = Bundle::new(PVMUX, &["sleep", "100"], serde_json::json!({}));
    let pid_file = b.path().join("pid-o1");
    let mut run = Command::new(PVMUX)
        .arg("--root")
        .arg(b.root())
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("o1")
        .stdin(Stdio::null())
        .spawn()
        .expect("run pvmux run");
    wait_for("the container runs", || {
        std::fs::read_to_string(b.root().join("o1/state.json"))
            .is_ok_and(|s| s.contains("\"running\""))
    });
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .parse()
        .expect("pid");
    let sandboxes = children(pid);
    assert!(!sandboxes.is_empty(), "the guest kernel runs");
    run.kill().expect("kill -9 pvmux run");
    assert_eq!(wait_child(&mut run), 128 + 9);
    // The monitor (re-parented to this subreaper) dies with run, its sandboxes with it.
    assert_eq!(reap(pid), 128 + 9);
    for s in sandboxes {
        reap(s);
    }
    assert_eq!(b.state("o1").0, "stopped");
    assert_eq!(b.oci(&["delete", "o1"]).code(), Some(0));
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn a_crashed_guest_is_stopped_with_its_report_in_the_log() {
    let b = Bundle::new(PVMUX, &["sleep", "100"], serde_json::json!({}));
    let log = b.path().join("log.json");
    let (code, err, pid) = b.create("x1", Some(&log));
    assert_eq!(code, 0, "create: {err}");
    let pid = pid.expect("pid file");
    assert_eq!(b.oci(&["start", "x1"]).code(), Some(0));
    // The guest kernel's sandbox is the monitor's first child; killing it crashes the guest.
    let kernel = *children(pid).first().expect("a sandbox");
    rustix::process::kill_process(
        Pid::from_raw(kernel).expect("pid"),
        rustix::process::Signal::KILL,
    )
    .expect("kill the sandbox");
    assert_eq!(reap(pid), 124, "pvmux's crash status");
    assert_eq!(b.state("x1").0, "stopped");
    let text = std::fs::read_to_string(&log).expect("the log file");
    assert!(text.contains("crashed"), "{text}");
    assert!(
        text.contains("SIGKILL") || text.contains("signal 9"),
        "{text}"
    );
    assert_eq!(b.oci(&["delete", "x1"]).code(), Some(0));
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn bad_bundles_and_ids_are_runcs_errors() {
    let b = Bundle::new(PVMUX, &["sleep", "100"], serde_json::json!({}));
    let expect_err = |r: Run, text: &str| {
        assert_eq!(r.code(), Some(1), "{}", r.context());
        assert!(r.stderr.contains(text), "want {text:?}: {}", r.context());
    };
    // Unknown ids.
    for cmd in ["state", "start", "kill", "delete"] {
        expect_err(b.oci(&[cmd, "nosuch"]), "container does not exist: nosuch");
    }
    expect_err(b.oci(&["state", "a/b"]), "invalid container id");
    // A directory without config.json, a config.json that is not JSON or not a config, a
    // program that is not there: nothing is left behind.
    let empty = TempDir::unique("pvmux-oci", "empty");
    let create = |bundle: &Path, id: &str| {
        let mut cmd = Command::new(PVMUX);
        cmd.arg("--root")
            .arg(b.root())
            .arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg(id);
        run_with_timeout(cmd, "create", TIMEOUT, Duration::from_millis(10), |_| {})
    };
    expect_err(create(&empty.0, "e1"), "config.json");
    std::fs::write(empty.0.join("config.json"), "{not json").unwrap();
    expect_err(create(&empty.0, "e2"), "not a valid OCI runtime config");
    std::fs::write(empty.0.join("config.json"), r#"{"ociVersion":"1.0.2"}"#).unwrap();
    expect_err(create(&empty.0, "e3"), "no root");
    let missing = Bundle::new(PVMUX, &["nosuch-program"], serde_json::json!({}));
    expect_err(create(missing.path(), "e4"), "not found in $PATH");
    for id in ["e1", "e2", "e3", "e4"] {
        assert!(!b.root().join(id).exists(), "{id} left state behind");
    }
    // A duplicate id.
    let (code, err, pid) = b.create("dup", None);
    assert_eq!(code, 0, "create: {err}");
    let (code, err, _) = b.create("dup", None);
    assert_eq!(code, 1);
    assert!(err.contains("container with id exists: dup"), "{err}");
    // `list` shows it; unsupported commands say so.
    let l = b.oci(&["list", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&l.stdout).expect("list is JSON");
    assert_eq!(v[0]["id"], "dup");
    assert_eq!(v[0]["status"], "created");
    assert_eq!(b.oci(&["list", "-q"]).stdout, "dup\n");
    expect_err(b.oci(&["exec", "dup", "ls"]), "not running: dup is created");
    assert_eq!(b.oci(&["delete", "dup"]).code(), Some(0));
    reap(pid.expect("pid file"));
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn config_settings_reach_the_guest() {
    // process.user/cwd/env, hostname, and the memory limit as the guest sees them.
    let show = "id -u; id -g; pwd; echo $GREETING; hostname; cat /proc/sys/kernel/hostname; \
                free | while read name total rest; do [ $name = Mem: ] && echo $total; done; \
                grep ^Groups: /proc/self/status | while read k a b; do echo $a $b; done; true";
    let config = |mem: u64| {
        serde_json::json!({
            "hostname": "oci-box",
            "process": {
                "cwd": "/tmp",
                "args": ["sh", "-c", show],
                "env": ["PATH=/bin", "GREETING=hi"],
                "user": { "uid": 1000, "gid": 100, "additionalGids": [20, 5] },
            },
            "linux": { "resources": { "memory": { "limit": mem } } },
        })
    };
    let small = Bundle::new(PVMUX, &[], config(256 << 20));
    let r = run_bundle(&small, "s1");
    assert_eq!(r.code(), Some(0), "{}", r.context());
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines[..6],
        ["1000", "100", "/tmp", "hi", "oci-box", "oci-box"],
        "{}",
        r.context()
    );
    // process.user.additionalGids: init's supplementary groups, sorted as Linux keeps them.
    assert_eq!(lines.get(7), Some(&"5 20"), "{}", r.context());
    let big = Bundle::new(PVMUX, &[], config(512 << 20));
    let r2 = run_bundle(&big, "s2");
    assert_eq!(r2.code(), Some(0), "{}", r2.context());
    let total = |r: &Run| -> u64 {
        r.stdout
            .lines()
            .nth(6)
            .expect("total")
            .parse()
            .expect("KiB")
    };
    assert_eq!(
        total(&r2),
        2 * total(&r),
        "twice the memory limit, twice the memory"
    );
    // pids.limit: a fork beyond it fails in the guest; without it, it does not.
    let forks = "for i in 1 2 3 4 5 6; do sleep 1 & done; wait; echo forked";
    let limited = Bundle::new(
        PVMUX,
        &["sh", "-c", forks],
        serde_json::json!({ "linux": { "resources": { "pids": { "limit": 4 } } } }),
    );
    let r = run_bundle(&limited, "p1");
    assert_ne!(r.code(), Some(0), "{}", r.context());
    assert!(r.stderr.contains("can't fork"), "{}", r.context());
    let free = Bundle::new(PVMUX, &["sh", "-c", forks], serde_json::json!({}));
    let r = run_bundle(&free, "p2");
    assert_eq!(r.code(), Some(0), "{}", r.context());
    assert_eq!(r.stdout, "forked\n");
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn hooks_run_on_the_host_with_the_state_on_stdin() {
    let out = TempDir::unique("pvmux-oci", "hooks");
    // Each hook saves its stdin (the state) and its environment's HOOK as KIND.json.
    let hook = |kind: &str| {
        serde_json::json!({
            "path": BUSYBOX,
            "args": ["sh", "-c", format!("{{ cat; echo; echo $HOOK; }} > {}/{kind}.json",
                                         out.0.display())],
            "env": [format!("HOOK={kind}")],
            "timeout": 30,
        })
    };
    let b = Bundle::new(
        PVMUX,
        &["sleep", "100"],
        serde_json::json!({ "hooks": {
            "createRuntime": [hook("createRuntime")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        }}),
    );
    let read = |kind: &str| -> (serde_json::Value, String) {
        let text = std::fs::read_to_string(out.0.join(format!("{kind}.json")))
            .unwrap_or_else(|e| panic!("{kind} hook did not run: {e}"));
        let (json, env) = text.trim_end().rsplit_once('\n').expect("state, then HOOK");
        (
            serde_json::from_str(json).expect("state JSON"),
            env.to_owned(),
        )
    };
    let (code, err, pid) = b.create("h1", None);
    assert_eq!(code, 0, "create: {err}");
    let pid = pid.expect("pid file");
    let (state, env) = read("createRuntime");
    assert_eq!(
        (state["id"].as_str(), state["status"].as_str()),
        (Some("h1"), Some("created"))
    );
    assert_eq!(state["pid"], pid);
    assert_eq!(env, "createRuntime");
    assert!(!out.0.join("poststart.json").exists());
    assert_eq!(b.oci(&["start", "h1"]).code(), Some(0));
    assert_eq!(read("poststart").0["status"], "running");
    assert_eq!(b.oci(&["delete", "--force", "h1"]).code(), Some(0));
    reap(pid);
    assert_eq!(read("poststop").0["status"], "stopped");
    // A failing createRuntime hook fails the create and leaves nothing behind.
    let failing = Bundle::new(
        PVMUX,
        &["sleep", "100"],
        serde_json::json!({ "hooks": { "createRuntime": [
            { "path": BUSYBOX, "args": ["sh", "-c", "echo no way >&2; exit 3"] }
        ]}}),
    );
    let (code, err, pid) = failing.create("h2", None);
    assert_eq!(code, 1);
    assert!(
        err.contains("createRuntime hook") && err.contains("no way"),
        "{err}"
    );
    assert_eq!(pid, None, "no pid file");
    assert!(!failing.root().join("h2").exists());
}

#[test]
fn version_and_features() {
    let out = Command::new(PVMUX).arg("--version").output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("pvmux version "), "{text}");
    assert!(text.lines().any(|l| l.starts_with("spec: 1.")), "{text}");
    let out = Command::new(PVMUX).arg("features").output().expect("run");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("features is JSON");
    assert_eq!(v["ociVersionMin"], "1.0.0");
    assert!(v["mountOptions"]
        .as_array()
        .is_some_and(|o| o.iter().any(|x| x == "bind")));
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn a_terminal_goes_to_the_console_socket() {
    use std::io::{Read, Write};
    let b = Bundle::new(
        PVMUX,
        &[],
        serde_json::json!({
            "process": {
                "terminal": true,
                "cwd": "/",
                "args": ["sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo ttys; read line; echo got $line"],
                "env": ["PATH=/bin"],
                "user": { "uid": 0, "gid": 0 },
            },
        }),
    );
    // Without a console socket: runc's error.
    let (code, err, _) = b.create("t0", None);
    assert_eq!(code, 1);
    assert!(err.contains("needs --console-socket"), "{err}");
    let sock = b.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let mut cmd = Command::new(PVMUX);
    cmd.arg("--root")
        .arg(b.root())
        .args(["create", "--console-socket"])
        .arg(&sock)
        .arg("--bundle")
        .arg(b.path())
        .arg("--pid-file")
        .arg(b.path().join("pid-t1"))
        .arg("t1")
        .stdin(Stdio::null());
    let mut child = cmd.spawn().expect("run pvmux create");
    let mut master = receive_master(&listener);
    assert_eq!(wait_child(&mut child), 0, "create");
    let pid: i32 = std::fs::read_to_string(b.path().join("pid-t1"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert_eq!(b.oci(&["start", "t1"]).code(), Some(0));
    master.write_all(b"hello\n").expect("type a line");
    // Everything the terminal shows until the container ends (then reads fail with EIO).
    let mut shown = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n @ 1..) = master.read(&mut buf) {
        shown.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&shown);
    assert!(text.contains("ttys\r\n"), "{text:?}");
    assert!(text.contains("got hello\r\n"), "{text:?}");
    assert_eq!(reap(pid), 0);
    assert_eq!(b.oci(&["delete", "t1"]).code(), Some(0));
}

#[test]
#[cfg_attr(
    not(all(have_busybox, have_podman)),
    ignore = "needs /bin/busybox and podman: apt-get install busybox-static podman"
)]
fn podman_runs_containers_with_pvmux_as_runc_does() {
    let p = Podman::new(PVMUX);
    // `podman run --rm`: the output and exit status are those of podman's own runtime.
    let script = "echo $((6 * 7)); echo to-stderr >&2; exit 3";
    let pvmux = p.podman(Some(PVMUX), &["run", "--rm", &p.image, "sh", "-c", script]);
    let native = p.podman(None, &["run", "--rm", &p.image, "sh", "-c", script]);
    assert_eq!(pvmux.code(), Some(3), "{}", pvmux.context());
    assert_eq!(pvmux.code(), native.code());
    assert_eq!(pvmux.stdout, native.stdout);
    assert_eq!(pvmux.stdout, "42\n");
    assert!(pvmux.stderr.contains("to-stderr"), "{}", pvmux.context());
    // `run -t`: the container's stdio is a terminal (the console socket).
    let t = p.podman(
        Some(PVMUX),
        &[
            "run",
            "-t",
            "--rm",
            &p.image,
            "sh",
            "-c",
            "[ -t 0 ] && [ -t 1 ] && echo ttys",
        ],
    );
    assert_eq!(t.code(), Some(0), "{}", t.context());
    assert_eq!(t.stdout, "ttys\r\n");
    // `run -d`, `stop` (SIGTERM reaches init's trap), `logs`, `wait`.
    let trap = "trap 'echo bye; exit 9' TERM; echo up; sleep 100 & wait";
    let d = p.podman(Some(PVMUX), &["run", "-d", &p.image, "sh", "-c", trap]);
    assert_eq!(d.code(), Some(0), "{}", d.context());
    let id = d.stdout.trim().to_owned();
    wait_for("the container is up", || {
        p.podman(Some(PVMUX), &["logs", &id]).stdout == "up\n"
    });
    let s = p.podman(Some(PVMUX), &["stop", "-t", "30", &id]);
    assert_eq!(s.code(), Some(0), "{}", s.context());
    let w = p.podman(Some(PVMUX), &["wait", &id]);
    assert_eq!(w.stdout.trim(), "9", "{}", w.context());
    assert_eq!(p.podman(Some(PVMUX), &["logs", &id]).stdout, "up\nbye\n");
    let rm = p.podman(Some(PVMUX), &["rm", &id]);
    assert_eq!(rm.code(), Some(0), "{}", rm.context());
    // The engine's network: the guest's sockets live in the container's network namespace,
    // so a published port reaches the guest's listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let publish = format!("127.0.0.1:{port}:8000");
    let d = p.podman(
        Some(PVMUX),
        &[
            "run",
            "-d",
            "-p",
            &publish,
            &p.image,
            "sh",
            "-c",
            "echo served | nc -l -p 8000",
        ],
    );
    assert_eq!(d.code(), Some(0), "{}", d.context());
    let id = d.stdout.trim().to_owned();
    let mut got = String::new();
    wait_for("the guest serves on the published port", || {
        use std::io::Read;
        got.clear();
        std::net::TcpStream::connect(("127.0.0.1", port))
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.read_to_string(&mut got)
            })
            .is_ok()
            && got == "served\n"
    });
    let w = p.podman(Some(PVMUX), &["wait", &id]);
    assert_eq!(w.stdout.trim(), "0", "{}", w.context());
    assert_eq!(p.podman(Some(PVMUX), &["rm", &id]).code(), Some(0));
    // A program that is not in the image is podman's error, as with runc.
    let r = p.podman(Some(PVMUX), &["run", "--rm", &p.image, "nosuch"]);
    assert_ne!(r.code(), Some(0), "{}", r.context());
    assert!(r.stderr.contains("nosuch"), "{}", r.context());
}
