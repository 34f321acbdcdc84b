//! `exec` and terminals as container engines drive them: `podman exec` (conmon's `exec
//! --detach --pid-file F --process P.json [--tty --console-socket S] ID`) compared with
//! podman's own runtime (runc), the host process `exec --detach` leaves for the engine to wait
//! on, terminals sent to a console socket for exec sessions, resizes of the container's
//! terminal and of an exec session's reaching the guest (`stty size`, a `trap ... WINCH`),
//! and an exec'd program's resource limits. Ignored without busybox-static (and podman,
//! script where used).

use std::fs::File;
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use pvmux_tests::oci::{
    alive, reap, receive_master, resize, wait_child, wait_for, Bundle, Podman, Screen,
};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");

/// The busybox script of the resize tests: prints its terminal's size at the start and at
/// every `SIGWINCH` (a trap), after `start` and `winch`.
const SIZE_REPORTER: &str =
    "trap 'echo \"winch $(stty size)\"' WINCH; echo \"start $(stty size)\"; while :; do sleep 1; done";

fn read_pid(f: &Path) -> i32 {
    std::fs::read_to_string(f)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid")
}

/// A busybox container `id` running `sleep 1000`, started; its pid.
fn running(b: &Bundle, id: &str) -> i32 {
    let (code, err, pid) = b.create(id, None);
    assert_eq!(code, 0, "create: {err}");
    assert_eq!(b.oci(&["start", id]).code(), Some(0));
    pid.expect("pid file")
}

/// Ends container `id` (pid `pid`) with SIGKILL and deletes it.
fn end(b: &Bundle, id: &str, pid: i32) {
    assert_eq!(b.oci(&["kill", id, "KILL"]).code(), Some(0));
    assert_eq!(reap(pid), 137);
    assert_eq!(b.oci(&["delete", id]).code(), Some(0));
}

/// `pvmux exec --detach --pid-file F ARGS...` as conmon runs it: its stdin a pipe (returned),
/// its stdout and stderr files. Returns the exec's exit code, the pipe, and the pid file.
fn exec_detached(b: &Bundle, tag: &str, args: &[&str]) -> (i32, ChildStdin, std::path::PathBuf) {
    let pid_file = b.path().join(format!("exec-pid-{tag}"));
    let _ = std::fs::remove_file(&pid_file);
    let out = File::create(b.path().join(format!("exec-out-{tag}"))).expect("stdout");
    let err = File::create(b.path().join(format!("exec-err-{tag}"))).expect("stderr");
    let mut child = Command::new(PVMUX)
        .arg("--root")
        .arg(b.root())
        .args(["exec", "--detach", "--pid-file"])
        .arg(&pid_file)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("run pvmux exec");
    let stdin = child.stdin.take().expect("stdin");
    let code = wait_child(&mut child);
    (code, stdin, pid_file)
}

fn exec_output(b: &Bundle, tag: &str, stream: &str) -> String {
    std::fs::read_to_string(b.path().join(format!("exec-{stream}-{tag}"))).unwrap_or_default()
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn exec_detach_leaves_a_host_process_with_the_programs_status() {
    let b = Bundle::new(PVMUX, &["sleep", "1000"], serde_json::json!({}));
    let pid = running(&b, "d1");
    // The program reads the stdin `exec` was given and writes to its stdout, after `exec`
    // returned: the pid file names the host process holding it, whose status is the
    // program's.
    let (code, mut stdin, pid_file) = exec_detached(
        &b,
        "read",
        &[
            "d1",
            "sh",
            "-c",
            "read x; echo got $x; echo to-stderr >&2; exit 7",
        ],
    );
    assert_eq!(code, 0, "exec: {}", exec_output(&b, "read", "err"));
    let holder = read_pid(&pid_file);
    assert!(alive(holder), "the holder runs after exec returned");
    stdin
        .write_all(b"hello\n")
        .expect("write the program's input");
    drop(stdin);
    assert_eq!(reap(holder), 7);
    assert_eq!(exec_output(&b, "read", "out"), "got hello\n");
    assert_eq!(exec_output(&b, "read", "err"), "to-stderr\n");
    // Killed by a signal: 128 + N, as a shell reports it.
    let (code, _, pid_file) = exec_detached(&b, "sig", &["d1", "sh", "-c", "kill -USR1 $$"]);
    assert_eq!(code, 0);
    assert_eq!(reap(read_pid(&pid_file)), 128 + 10);
    // Signals to the holder reach the program (it stands for it, as runc's exec'd process):
    // SIGTERM runs the program's trap, whose exit status is the holder's.
    // (Its background sleep must not hold the session's output open: the session ends when
    // every writer of its output is gone.)
    let trap = "trap 'echo got TERM; exit 9' TERM; echo $$ > /out/exec-pid; \
                sleep 1000 >/dev/null 2>&1 </dev/null & wait";
    let (code, _, pid_file) = exec_detached(&b, "term", &["d1", "sh", "-c", trap]);
    assert_eq!(code, 0);
    let holder = read_pid(&pid_file);
    wait_for("the program is up", || b.out("exec-pid").exists());
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(holder).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("signal the holder");
    assert_eq!(reap(holder), 9);
    assert_eq!(exec_output(&b, "term", "out"), "got TERM\n");
    // SIGKILL of the holder (which cannot pass it on) kills the program in the guest too.
    let (code, _, pid_file) = exec_detached(
        &b,
        "kill",
        &[
            "d1",
            "sh",
            "-c",
            "echo $$ > /out/exec-pid2; exec sleep 1000",
        ],
    );
    assert_eq!(code, 0);
    let holder = read_pid(&pid_file);
    wait_for("the program is up", || {
        std::fs::read_to_string(b.out("exec-pid2")).is_ok_and(|s| s.ends_with('\n'))
    });
    let guest_pid = std::fs::read_to_string(b.out("exec-pid2")).expect("the program's pid");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(holder).expect("pid"),
        rustix::process::Signal::KILL,
    )
    .expect("kill the holder");
    assert_eq!(reap(holder), 128 + 9);
    let probe = format!("kill -0 {}", guest_pid.trim());
    wait_for("the program is gone from the guest", || {
        b.oci(&["exec", "d1", "sh", "-c", &probe]).code() == Some(1)
    });
    // A program that is not there: exec fails (runc's status 1) with the guest's reason,
    // and leaves no pid file and no process.
    let (code, _, pid_file) = exec_detached(&b, "nosuch", &["d1", "nosuch"]);
    assert_eq!(code, 1);
    let err = exec_output(&b, "nosuch", "err");
    assert!(
        err.contains("nosuch") && err.contains("No such file"),
        "{err}"
    );
    assert!(!pid_file.exists());
    // The container stops while a detached program runs: the holder ends (137, as the
    // program was killed with the guest), nothing is left.
    let (code, _, pid_file) = exec_detached(&b, "long", &["d1", "sleep", "1000"]);
    assert_eq!(code, 0);
    let holder = read_pid(&pid_file);
    end(&b, "d1", pid);
    assert_eq!(reap(holder), 137);
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn the_containers_terminal_follows_resizes() {
    let b = Bundle::new(
        PVMUX,
        &[],
        serde_json::json!({
            "process": {
                "terminal": true,
                "cwd": "/",
                "args": ["sh", "-c", SIZE_REPORTER],
                "env": ["PATH=/bin"],
                "user": { "uid": 0, "gid": 0 },
            },
        }),
    );
    let (pid, master) = b.create_with_terminal("r1");
    // Sized before the start, as engines do: the guest boots with it.
    resize(&master, 30, 90);
    let screen = Screen::read(master.try_clone().expect("dup the master"));
    assert_eq!(b.oci(&["start", "r1"]).code(), Some(0));
    screen.expect("start 30 90\r\n");
    // Resized while it runs: the guest's terminal follows and its program gets SIGWINCH.
    resize(&master, 41, 123);
    screen.expect("winch 41 123\r\n");
    resize(&master, 12, 50);
    screen.expect("winch 12 50\r\n");
    end(&b, "r1", pid);
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn an_exec_terminal_goes_to_the_console_socket_and_follows_resizes() {
    let b = Bundle::new(PVMUX, &["sleep", "1000"], serde_json::json!({}));
    let pid = running(&b, "t1");
    let sock = b.path().join("exec-console.sock");
    let listener = UnixListener::bind(&sock).expect("bind the console socket");
    let pid_file = b.path().join("exec-pid-tty");
    // Without a console socket a detached terminal has nowhere to go: runc's error.
    let (code, _, _) = exec_detached(&b, "nosock", &["--tty", "t1", "true"]);
    assert_eq!(code, 1);
    assert!(
        exec_output(&b, "nosock", "err").contains("--console-socket"),
        "{}",
        exec_output(&b, "nosock", "err")
    );
    let mut exec = Command::new(PVMUX)
        .arg("--root")
        .arg(b.root())
        .args(["exec", "--detach", "--tty", "--console-socket"])
        .arg(&sock)
        .arg("--pid-file")
        .arg(&pid_file)
        .args(["t1", "sh", "-c", SIZE_REPORTER])
        .stdin(Stdio::null())
        .spawn()
        .expect("run pvmux exec");
    let master = receive_master(&listener);
    let screen = Screen::read(master.try_clone().expect("dup the master"));
    assert_eq!(wait_child(&mut exec), 0, "exec");
    let holder = read_pid(&pid_file);
    // A terminal the engine has not sized yet: the guest's default size.
    screen.expect("start 24 80\r\n");
    resize(&master, 33, 101);
    screen.expect("winch 33 101\r\n");
    resize(&master, 20, 70);
    screen.expect("winch 20 70\r\n");
    end(&b, "t1", pid);
    assert_eq!(reap(holder), 137);
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn an_exec_processes_rlimits_apply_to_it() {
    let b = Bundle::new(PVMUX, &["sleep", "1000"], serde_json::json!({}));
    let pid = running(&b, "l1");
    let process = |rlimits: serde_json::Value| {
        let f = b.path().join("process.json");
        let p = serde_json::json!({
            "args": ["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c; cat /proc/self/limits"],
            "cwd": "/",
            "env": ["PATH=/bin"],
            "user": { "uid": 0, "gid": 0 },
            "rlimits": rlimits,
        });
        std::fs::write(&f, p.to_string()).expect("write process.json");
        let r = b.oci(&["exec", "--process", f.to_str().unwrap(), "l1"]);
        assert_eq!(r.code(), Some(0), "{}", r.context());
        r.stdout
    };
    // Without limits: init's (the guest kernel's defaults, nofile 1024:4096).
    let init = process(serde_json::json!([]));
    assert!(init.starts_with("1024\n4096\n"), "{init}");
    let own = process(serde_json::json!([
        {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
    ]));
    assert!(own.starts_with("100\n200\n0\n"), "{own}");
    let row = own
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open-files row in /proc/self/limits: {own}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>()[3..5],
        ["100", "200"]
    );
    // An engine's 1048576 is lowered to the guest kernel's ceiling, as for init.
    let lowered = process(serde_json::json!([
        {"type": "RLIMIT_NOFILE", "soft": 1048576, "hard": 1048576},
    ]));
    assert!(lowered.starts_with("4096\n4096\n"), "{lowered}");
    // Soft above hard is refused before anything runs.
    let f = b.path().join("bad.json");
    std::fs::write(
        &f,
        serde_json::json!({
            "args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0},
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 300, "hard": 200}],
        })
        .to_string(),
    )
    .unwrap();
    let r = b.oci(&["exec", "--process", f.to_str().unwrap(), "l1"]);
    assert_eq!(r.code(), Some(1), "{}", r.context());
    assert!(r.stderr.contains("soft limit is above"), "{}", r.context());
    end(&b, "l1", pid);
}

/// `script` running `cmd` on a new pseudo-terminal of `rows` x `cols`, its input piped.
struct Terminal {
    child: Child,
    stdin: Option<ChildStdin>,
    screen: Screen,
}

impl Terminal {
    fn start(cmd: &str, rows: u16, cols: u16, conf: &Path) -> Self {
        let mut child = Command::new("script")
            .args([
                "-qfec",
                &format!("stty rows {rows} cols {cols}; {cmd}"),
                "/dev/null",
            ])
            .env("SHELL", "/bin/sh")
            .env("CONTAINERS_CONF", conf)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("script runs");
        let stdin = child.stdin.take();
        let screen = Screen::read(child.stdout.take().expect("stdout"));
        Self {
            child,
            stdin,
            screen,
        }
    }

    fn type_line(&mut self, line: &str) {
        let s = self.stdin.as_mut().expect("stdin");
        s.write_all(line.as_bytes()).expect("type");
        s.write_all(b"\n").expect("type");
        s.flush().expect("flush");
    }

    fn finish(mut self) -> (i32, String) {
        let code = wait_child(&mut self.child);
        drop(self.stdin.take());
        (code, self.screen.text())
    }
}

#[test]
#[cfg_attr(
    not(all(have_busybox, have_podman, have_script)),
    ignore = "needs /bin/busybox, podman and script: apt-get install busybox-static podman util-linux"
)]
fn podman_exec_behaves_as_with_runc() {
    let p = Podman::new(PVMUX);
    let conf = p.conf();
    let mut ids = Vec::new();
    for runtime in [Some(PVMUX), None] {
        let d = p.podman(runtime, &["run", "-d", &p.image, "sleep", "1000"]);
        assert_eq!(d.code(), Some(0), "{}", d.context());
        ids.push(d.stdout.trim().to_owned());
    }
    let (pvmux_id, runc_id) = (ids[0].as_str(), ids[1].as_str());
    // Output, exit status, the environment and directory podman asks for, a signal, a
    // missing program.
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &[],
            &["sh", "-c", "echo $((6 * 7)); echo to-stderr >&2; exit 3"],
        ),
        (
            &["-e", "GREETING=hi", "-w", "/bin"],
            &["sh", "-c", "echo $GREETING; pwd"],
        ),
        (&[], &["sh", "-c", "[ -t 0 ] || echo no-tty; kill -TERM $$"]),
        (&[], &["nosuch"]),
    ];
    for (opts, prog) in cases {
        let run = |runtime: Option<&str>, id: &str| {
            let mut a = vec!["exec"];
            a.extend_from_slice(opts);
            a.push(id);
            a.extend_from_slice(prog);
            p.podman(runtime, &a)
        };
        let pv = run(Some(PVMUX), pvmux_id);
        let native = run(None, runc_id);
        assert_eq!(pv.code(), native.code(), "{prog:?}: {}", pv.context());
        assert_eq!(pv.stdout, native.stdout, "{prog:?}: {}", pv.context());
    }
    let e = p.podman(
        Some(PVMUX),
        &[
            "exec",
            pvmux_id,
            "sh",
            "-c",
            "echo out; echo to-stderr >&2; exit 3",
        ],
    );
    assert_eq!(e.code(), Some(3), "{}", e.context());
    assert_eq!(e.stdout, "out\n");
    assert!(e.stderr.contains("to-stderr"), "{}", e.context());
    // `exec -t` (a terminal through conmon's console socket) of the size of podman's, and
    // `exec -it` an interactive shell: the same with either runtime.
    let mut seen = Vec::new();
    for id in [pvmux_id, runc_id] {
        let runtime = if id == pvmux_id {
            format!("--runtime {PVMUX}")
        } else {
            String::new()
        };
        let t = Terminal::start(
            &format!("podman {runtime} exec -t {id} sh -c \"stty size\""),
            33,
            101,
            &conf,
        );
        let (code, text) = t.finish();
        assert_eq!(code, 0, "{text}");
        let mut sh = Terminal::start(
            &format!("podman {runtime} exec -it {id} sh"),
            33,
            101,
            &conf,
        );
        sh.screen.expect("/ # ");
        sh.type_line("echo $((6 * 7)); stty size");
        // The guest shell's terminal is podman's size.
        sh.screen.expect("42\r\n33 101\r\n");
        sh.type_line("exit 5");
        let (status, _) = sh.finish();
        seen.push((text, status));
    }
    assert_eq!(seen[0].0, "33 101\r\n");
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0].1, 5);
    // `run -it`: an interactive shell in a new container, through a pty, as with runc.
    let mut runs = Vec::new();
    for runtime in [format!("--runtime {PVMUX}"), String::new()] {
        let mut sh = Terminal::start(
            &format!("podman {runtime} run -it --rm {} sh", p.image),
            27,
            88,
            &conf,
        );
        sh.screen.expect("/ # ");
        sh.type_line("echo $((6 * 7)); stty size");
        sh.screen.expect("42\r\n27 88\r\n");
        sh.type_line("exit 4");
        let (status, _) = sh.finish();
        runs.push(status);
    }
    assert_eq!(runs, [4, 4]);
    for id in ids {
        let rm = p.podman(Some(PVMUX), &["rm", "-f", "-t", "0", &id]);
        assert_eq!(rm.code(), Some(0), "{}", rm.context());
    }
}

#[test]
#[cfg_attr(
    not(all(have_busybox, have_script)),
    ignore = "needs /bin/busybox and util-linux's setsid: apt-get install busybox-static util-linux"
)]
fn pvmux_run_in_a_terminal_follows_resizes() {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let b = Bundle::new(PVMUX, &["true"], serde_json::json!({}));
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname(&master, Vec::new()).expect("ptsname");
    let slave = File::options()
        .read(true)
        .write(true)
        .open(name.to_str().expect("a UTF-8 name"))
        .expect("open the slave");
    let master = File::from(master);
    resize(&master, 30, 90);
    // `setsid -c`: pvmux leads a session whose controlling terminal is this one, as a shell's
    // foreground job would be in it.
    let mut child = Command::new("setsid")
        .arg("-c")
        .arg(PVMUX)
        .args(["run", "--rootfs"])
        .arg(b.path().join("rootfs"))
        .args(["--", "/bin/sh", "-c", SIZE_REPORTER])
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave)
        .spawn()
        .expect("run pvmux run");
    let screen = Screen::read(master.try_clone().expect("dup the master"));
    screen.expect("start 30 90\r\n");
    resize(&master, 41, 123);
    screen.expect("winch 41 123\r\n");
    // ^C: the guest's line discipline interrupts the program, which ends pvmux (130).
    (&master).write_all(b"\x03").expect("type ^C");
    assert_eq!(wait_child(&mut child), 130, "{}", screen.text());
}
