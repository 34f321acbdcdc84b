//! Exec sessions (`Tenant::exec`, docs/ABI.md §exec): new programs in a running guest whose
//! init (`cat`, from the host's root shared with `--rootfs /`) waits on its console input.
//! Outputs are compared with the same programs run natively where that means something.

use std::io::{Read, Write};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pvmux_host::exec::ExecSession;
use pvmux_host::{ExecExit, ExecHandle, ExecSpec, Tenant, TenantConfig, TenantOutcome};
use pvmux_hypercalls::bootargs::Options;
use pvmux_hypercalls::exec::OUTPUT_BUFFER;
use pvmux_hypercalls::BootArgsBuf;
use pvmux_tests::{config, default_kernel, host, Capture, Gate};

/// A guest running `cat` as init from the host's root, until the gate opens.
fn guest(name: &str) -> (pvmux_host::Host, Tenant, Capture, Gate) {
    let host = host();
    let (input, gate) = std::io::pipe().expect("pipe for the console input");
    let options = Options {
        hostfs: true,
        ..Default::default()
    };
    let share = pvmux_host::hostfs::HostFs::open(std::path::Path::new("/")).expect("share /");
    let console = Capture::default();
    let cfg = TenantConfig {
        kernel: default_kernel(),
        mem_size: 512 << 20,
        console: Box::new(console.clone()),
        console_stderr: Box::new(console.clone()),
        kernel_log: pvmux_host::KernelLog::Hidden,
        boot_args: BootArgsBuf::new(&options, [], ["/bin/cat"]).expect("boot arguments fit"),
        console_input: Some(pvmux_host::ConsoleInput::Reader(Box::new(input))),
        hostfs: Some(Arc::new(share)),
        ..config(name, "", 2)
    };
    let tenant = host.launch(cfg).expect("tenant launches");
    assert!(tenant.wait_started(Duration::from_secs(10)));
    (host, tenant, console, Gate::new(gate))
}

/// What a finished session gave.
#[derive(Debug)]
struct Done {
    pid: Result<u32, ExecExit>,
    exit: ExecExit,
    out: Vec<u8>,
    err: Vec<u8>,
}

impl Done {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }
    fn err(&self) -> String {
        String::from_utf8_lossy(&self.err).into_owned()
    }
}

/// Runs `spec` with `input` on its stdin, reading both outputs in threads of their own.
fn run(h: &ExecHandle, spec: &ExecSpec, input: &[u8]) -> Done {
    let s = h.exec(spec).expect("exec queued");
    finish(s, input)
}

fn finish(mut s: ExecSession, input: &[u8]) -> Done {
    let mut so = s.stdout().expect("stdout");
    let mut se = s.stderr().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        so.read_to_end(&mut v).expect("read stdout");
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        se.read_to_end(&mut v).expect("read stderr");
        v
    });
    let mut stdin = s.stdin().expect("stdin");
    // A program that does not read its input ends the session: a broken pipe is fine.
    let _ = stdin.write_all(input);
    drop(stdin);
    let pid = s.wait_started();
    let exit = s.wait();
    Done {
        pid,
        exit,
        out: t_out.join().expect("stdout reader"),
        err: t_err.join().expect("stderr reader"),
    }
}

fn native(argv: &[&str]) -> std::process::Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .current_dir("/")
        .output()
        .expect("native run")
}

fn end(tenant: Tenant, mut gate: Gate) -> TenantOutcome {
    gate.open();
    tenant.wait()
}

#[test]
fn programs_run_in_a_running_guest_as_natively() {
    let (_host, tenant, _console, gate) = guest("exec-basic");
    let h = tenant.exec_handle();
    for argv in [
        &["/bin/echo", "hello", "from exec"][..],
        &["/bin/sh", "-c", "echo out; echo err >&2; exit 7"],
        &["/bin/ls", "/usr/bin/env", "/bin/sh"],
        &["/bin/sh", "-c", "kill -TERM $$"],
    ] {
        let d = run(&h, &ExecSpec::new(argv.iter().copied()), b"");
        let n = native(argv);
        assert!(d.pid.is_ok(), "{argv:?}: {d:?}");
        assert_eq!(d.out(), String::from_utf8_lossy(&n.stdout), "{argv:?}");
        assert_eq!(d.err(), String::from_utf8_lossy(&n.stderr), "{argv:?}");
        let code = n.status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&n.status).unwrap_or(0)
        });
        assert_eq!(d.exit.code(), code, "{argv:?}: {d:?}");
    }
    let d = run(&h, &ExecSpec::new(["sh", "-c", "exit 7"]), b"");
    assert_eq!(d.exit, ExecExit::Exited(7));
    let d = run(&h, &ExecSpec::new(["sh", "-c", "kill -9 $$"]), b"");
    assert_eq!((d.exit, d.exit.code()), (ExecExit::Signaled(9), 137));
    // A program reading its input: 200 KiB (more than every buffer on the way) comes back.
    let input: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .take(200 * 1024)
        .collect();
    let d = run(&h, &ExecSpec::new(["/bin/cat"]), &input);
    assert_eq!(d.exit, ExecExit::Exited(0));
    assert!(
        d.out == input,
        "cat returned {} of {} bytes",
        d.out.len(),
        input.len()
    );
    let d = run(&h, &ExecSpec::new(["/usr/bin/wc", "-l"]), b"a\nb\nc\n");
    assert_eq!((d.out().trim(), d.exit), ("3", ExecExit::Exited(0)));
    assert_eq!(end(tenant, gate).exit_code(), Some(0));
}

#[test]
fn exec_process_is_a_guest_process_next_to_init() {
    let (_host, tenant, _console, gate) = guest("exec-proc");
    let h = tenant.exec_handle();
    let d = run(
        &h,
        &ExecSpec::new([
            "/bin/sh",
            "-c",
            "echo $$ $PPID; ls /proc; cat /proc/1/cmdline",
        ]),
        b"",
    );
    assert_eq!(d.exit, ExecExit::Exited(0), "{d:?}");
    let pid = d.pid.expect("started");
    let out = d.out();
    let mut lines = out.lines();
    // Its pid is the one reported, its parent is outside the guest (as with runc exec).
    assert_eq!(lines.next(), Some(format!("{pid} 0").as_str()));
    let entries: Vec<&str> = out.lines().skip(1).collect();
    assert!(entries.contains(&"1"), "init in /proc: {out}");
    assert!(
        entries.contains(&pid.to_string().as_str()),
        "itself in /proc: {out}"
    );
    assert!(out.ends_with("/bin/cat\0"), "init's command line: {out:?}");
    assert_eq!(end(tenant, gate).exit_code(), Some(0));
}

#[test]
fn environment_directory_and_user_are_honoured() {
    let (_host, tenant, _console, gate) = guest("exec-env");
    let h = tenant.exec_handle();
    let spec = ExecSpec {
        env: vec![
            b"GREETING=hi there".to_vec(),
            b"PATH=/usr/bin:/bin".to_vec(),
        ],
        cwd: Some(b"/usr/share".to_vec()),
        user: Some((1234, 2345)),
        ..ExecSpec::new([
            "sh",
            "-c",
            "echo \"$GREETING\"; pwd; echo $(id -u) $(id -g); env | sort",
        ])
    };
    let d = run(&h, &spec, b"");
    assert_eq!(d.exit, ExecExit::Exited(0), "{d:?}");
    let native = Command::new("/bin/sh")
        .args(["-c", "env | sort"])
        .env_clear()
        .env("GREETING", "hi there")
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/usr/share")
        .output()
        .expect("native env");
    let want = format!(
        "hi there\n/usr/share\n1234 2345\n{}",
        String::from_utf8_lossy(&native.stdout)
    );
    assert_eq!(d.out(), want);
    // Without a user: init's (root here, as `pvmux run` without --user).
    let d = run(
        &h,
        &ExecSpec::new(["sh", "-c", "echo $(id -u) $(id -g); pwd"]),
        b"",
    );
    assert_eq!(d.out(), "0 0\n/\n");
    assert_eq!(end(tenant, gate).exit_code(), Some(0));
}

#[test]
fn programs_that_cannot_start_are_126_or_127_with_a_message() {
    let (_host, tenant, _console, gate) = guest("exec-missing");
    let h = tenant.exec_handle();
    let d = run(&h, &ExecSpec::new(["/no/such/program"]), b"");
    assert_eq!(d.exit, ExecExit::NotStarted { errno: 2 });
    assert_eq!(d.exit.code(), 127);
    assert!(d.pid.is_err());
    assert_eq!(
        d.err(),
        "pvmux: cannot run /no/such/program: No such file or directory\n"
    );
    let d = run(&h, &ExecSpec::new(["no-such-command-anywhere"]), b"");
    assert_eq!(d.exit.code(), 127, "{d:?}");
    // Not executable: 126, as a shell says.
    let d = run(&h, &ExecSpec::new(["/etc/passwd"]), b"");
    assert_eq!(d.exit.code(), 126, "{d:?}");
    assert!(
        d.err().starts_with("pvmux: cannot run /etc/passwd: "),
        "{d:?}"
    );
    let native = Command::new("/bin/sh")
        .args(["-c", "/etc/passwd"])
        .output()
        .expect("sh");
    assert_eq!(native.status.code(), Some(126));
    // A directory that does not exist.
    let spec = ExecSpec {
        cwd: Some(b"/no/such/dir".to_vec()),
        ..ExecSpec::new(["/bin/true"])
    };
    let d = run(&h, &spec, b"");
    assert!(matches!(d.exit, ExecExit::NotStarted { .. }), "{d:?}");
    assert!(d.err().contains("/no/such/dir"), "{d:?}");
    // The guest goes on: init is still there, and the next exec works.
    let d = run(&h, &ExecSpec::new(["/bin/echo", "still here"]), b"");
    assert_eq!(d.out(), "still here\n");
    assert_eq!(end(tenant, gate).exit_code(), Some(0));
}

#[test]
fn concurrent_sessions_keep_their_outputs_apart() {
    let (_host, tenant, _console, gate) = guest("exec-two");
    let h = tenant.exec_handle();
    let script = |tag: &str| {
        ExecSpec::new([
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            format!("for i in $(seq 1 3000); do echo {tag}$i; echo e{tag}$i >&2; done"),
        ])
    };
    let a = h.exec(&script("A")).expect("exec A");
    let b = h.exec(&script("B")).expect("exec B");
    let (ta, tb) = (
        std::thread::spawn(move || finish(a, b"")),
        std::thread::spawn(move || finish(b, b"")),
    );
    let (da, db) = (ta.join().expect("A"), tb.join().expect("B"));
    for (tag, d) in [("A", da), ("B", db)] {
        let want: String = (1..=3000).map(|i| format!("{tag}{i}\n")).collect();
        let want_err: String = (1..=3000).map(|i| format!("e{tag}{i}\n")).collect();
        assert_eq!(d.exit, ExecExit::Exited(0));
        assert!(
            d.out() == want,
            "{tag}: stdout differs ({} bytes)",
            d.out.len()
        );
        assert!(
            d.err() == want_err,
            "{tag}: stderr differs ({} bytes)",
            d.err.len()
        );
    }
    assert_eq!(end(tenant, gate).exit_code(), Some(0));
}

#[test]
fn a_flooding_program_is_held_at_the_host_buffer() {
    let (_host, tenant, _console, gate) = guest("exec-flood");
    let h = tenant.exec_handle();
    const TOTAL: usize = 8 << 20;
    let mut s = h
        .exec(&ExecSpec::new([
            "/usr/bin/head".to_owned(),
            "-c".to_owned(),
            TOTAL.to_string(),
            "/dev/zero".to_owned(),
        ]))
        .expect("exec");
    // Nobody reads: the host holds one buffer's worth, the program waits.
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.peak_buffered().0 < OUTPUT_BUFFER {
        assert!(Instant::now() < deadline, "the buffer never filled");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.try_wait(), None, "the program waits for its reader");
    let mut out = s.stdout().expect("stdout");
    let mut total = 0usize;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = out.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|&b| b == 0));
        total += n;
    }
    assert_eq!(total, TOTAL);
    assert_eq!(s.wait(), ExecExit::Exited(0));
    assert_eq!(
        s.peak_buffered(),
        (OUTPUT_BUFFER, 0),
        "host memory stayed bounded"
    );
    assert_eq!(end(tenant, gate).exit_code(), Some(0));
}

#[test]
fn a_session_ends_cleanly_when_init_exits() {
    let (_host, tenant, _console, gate) = guest("exec-init-ends");
    let h = tenant.exec_handle();
    let mut s = h
        .exec(&ExecSpec::new(["/bin/sleep", "1000"]))
        .expect("exec");
    let pid = s.wait_started().expect("started");
    assert!(pid > 1);
    let mut out = s.stdout().expect("stdout");
    let mut stdin = s.stdin().expect("stdin");
    // Init reads the end of its input and exits: the guest shuts down.
    assert_eq!(end(tenant, gate).exit_code(), Some(0));
    assert_eq!(s.wait(), ExecExit::TenantEnded);
    let mut v = Vec::new();
    assert_eq!(out.read_to_end(&mut v).expect("read"), 0);
    assert_eq!(
        stdin.write(b"x").expect_err("input is closed").kind(),
        std::io::ErrorKind::BrokenPipe
    );
    assert_eq!(
        h.exec(&ExecSpec::new(["/bin/true"])).unwrap_err(),
        pvmux_host::ExecError::NotRunning
    );
}

/// The CLI: `pvmux run --exec-socket PATH -- cat` and `pvmux exec --socket PATH -- CMD`.
#[test]
fn the_cli_runs_programs_in_a_running_guest() {
    use std::process::Stdio;
    let bin = env!("CARGO_BIN_EXE_pvmux-cli");
    let dir = pvmux_tests::TempDir::unique("pvmux-exec-cli", "socket");
    let sock = dir.0.join("exec.sock");
    let sock_arg = sock.to_str().expect("UTF-8 path").to_owned();
    let mut guest = Command::new(bin)
        .args([
            "run",
            "--mem",
            "512M",
            "--rootfs",
            "/",
            "--exec-socket",
            &sock_arg,
        ])
        .args(["--", "/bin/cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pvmux run");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "no exec socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let exec = |args: &[&str], input: &[u8]| {
        let mut child = Command::new(bin)
            .args(["exec", "--socket", &sock_arg])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pvmux exec");
        let mut i = child.stdin.take().expect("stdin");
        let bytes = input.to_vec();
        let w = std::thread::spawn(move || {
            let _ = i.write_all(&bytes);
        });
        let out = child.wait_with_output().expect("pvmux exec ends");
        w.join().expect("writer");
        out
    };
    let o = exec(
        &["--", "/bin/sh", "-c", "echo hi; echo oops >&2; exit 3"],
        b"",
    );
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert_eq!(
        (&o.stdout[..], &o.stderr[..]),
        (&b"hi\n"[..], &b"oops\n"[..])
    );
    let o = exec(
        &[
            "-e",
            "X=1",
            "-w",
            "/usr",
            "-u",
            "7:8",
            "--",
            "/bin/sh",
            "-c",
            "echo $X $(pwd) $(id -u):$(id -g)",
        ],
        b"",
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1 /usr 7:8\n", "{o:?}");
    let o = exec(&["--", "/usr/bin/tr", "a-z", "A-Z"], b"hello guest\n");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "HELLO GUEST\n", "{o:?}");
    let o = exec(&["--", "/no/such"], b"");
    assert_eq!(o.status.code(), Some(127), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "pvmux: cannot run /no/such: No such file or directory\n"
    );
    let o = exec(&["-d", "--", "/bin/sleep", "1000"], b"");
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let pid: u32 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("a pid");
    let o = exec(
        &["--", "/bin/sh", "-c", &format!("cat /proc/{pid}/cmdline")],
        b"",
    );
    assert_eq!(&o.stdout[..], b"/bin/sleep\x001000\x00", "{o:?}");
    // The guest ends with its init; the socket goes with it.
    drop(guest.stdin.take());
    let o = guest.wait_with_output().expect("pvmux run ends");
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(!sock.exists());
    let o = exec(&["--", "/bin/true"], b"");
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("exec socket"),
        "{o:?}"
    );
}

/// A terminal session: the program's fds are one pseudo-terminal of the asked size, which
/// echoes and translates what is typed, and whose output carries stderr too.
#[test]
fn a_terminal_session_has_a_pty() {
    let (_host, tenant, _console, gate) = guest("exec-tty");
    let h = tenant.exec_handle();
    let spec = ExecSpec {
        tty: true,
        tty_size: Some((33, 101)),
        ..ExecSpec::new([
            "/bin/sh",
            "-c",
            "test -t 0 && test -t 1 && test -t 2 && echo terminal; stty size; echo err >&2; \
             read line; echo \"got $line\"",
        ])
    };
    let mut s = h.exec(&spec).expect("exec");
    let mut out = s.stdout().expect("stdout");
    let mut stdin = s.stdin().expect("stdin");
    // Typed once the prompt-less script waits for its line (type-ahead would be echoed
    // first, as on any terminal).
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !seen.ends_with(b"err\r\n") {
        let n = out.read(&mut buf).expect("read");
        assert!(n > 0, "ended early: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    stdin.write_all(b"typed\r").expect("type");
    out.read_to_end(&mut seen).expect("read the rest");
    assert_eq!(s.wait(), ExecExit::Exited(0));
    let mut err = Vec::new();
    s.stderr()
        .expect("stderr")
        .read_to_end(&mut err)
        .expect("stderr");
    assert_eq!(err, b"");
    // Output processing (\n -> \r\n) and the echo of the typed line are the terminal's.
    assert_eq!(
        String::from_utf8_lossy(&seen),
        "terminal\r\n33 101\r\nerr\r\ntyped\r\ngot typed\r\n"
    );
    // A resize reaches the terminal and the program gets SIGWINCH.
    let mut s = h
        .exec(&ExecSpec {
            tty: true,
            ..ExecSpec::new([
                "/bin/sh",
                "-c",
                "trap 'echo winch' WINCH; stty size; \
                 while [ \"$(stty size)\" = \"24 80\" ]; do sleep 0.05; done; stty size",
            ])
        })
        .expect("exec");
    let mut out = s.stdout().expect("stdout");
    let mut seen = Vec::new();
    while !seen.ends_with(b"24 80\r\n") {
        let n = out.read(&mut buf).expect("read");
        assert!(n > 0, "ended early: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    s.resizer().resize(50, 132);
    out.read_to_end(&mut seen).expect("read the rest");
    assert_eq!(s.wait(), ExecExit::Exited(0));
    assert_eq!(
        String::from_utf8_lossy(&seen),
        "24 80\r\nwinch\r\n50 132\r\n"
    );
    // ^C typed at the terminal interrupts the program (its own foreground group).
    let mut s = h
        .exec(&ExecSpec {
            tty: true,
            ..ExecSpec::new(["/bin/sleep", "1000"])
        })
        .expect("exec");
    s.wait_started().expect("started");
    let mut out = s.stdout().expect("stdout");
    s.stdin()
        .expect("stdin")
        .write_all(b"\x03")
        .expect("type ^C");
    assert_eq!(s.wait(), ExecExit::Signaled(2));
    let mut seen = String::new();
    out.read_to_string(&mut seen).expect("read");
    assert_eq!(seen, "^C\r\n");
    assert_eq!(end(tenant, gate).exit_code(), Some(0));
}

/// A guest kernel that lies about exec sessions (`hostile=exec`, the test kernel): its
/// malformed calls get errors, its flood is held at the host's buffer, its made-up exit code
/// is what the session reports, and the host carries on.
#[test]
fn a_lying_guest_kernel_cannot_hurt_the_host() {
    let host = host();
    let console = Capture::default();
    let cfg = TenantConfig {
        console: Box::new(console.clone()),
        ..config("exec-hostile", "hostile=exec", 1)
    };
    let tenant = host.launch(cfg).expect("tenant launches");
    let s = tenant
        .exec(&ExecSpec::new(["/bin/anything"]))
        .expect("exec queued");
    assert_eq!(s.wait_started(), Ok(4242));
    assert_eq!(s.wait(), ExecExit::Exited(42));
    assert_eq!(s.peak_buffered(), (OUTPUT_BUFFER, 0));
    let outcome = tenant.wait();
    let out = console.text();
    assert!(!out.contains("MISMATCH"), "{out}");
    assert!(out.contains("hostile: exec CONTAINED"), "{out}");
    assert_eq!(outcome.exit_code(), Some(0), "{out}");
    // The host serves the next tenant.
    let (_h, tenant, _c, gate) = guest("exec-after-hostile");
    let d = run(
        &tenant.exec_handle(),
        &ExecSpec::new(["/bin/echo", "ok"]),
        b"",
    );
    assert_eq!(d.out(), "ok\n");
    assert_eq!(end(tenant, gate).exit_code(), Some(0));
}

/// Many sessions at once, then none: the guest has only init again, and its sandboxes are
/// init's and the last program's only.
#[test]
fn many_sessions_leave_nothing_behind() {
    let (_host, tenant, _console, gate) = guest("exec-many");
    let h = tenant.exec_handle();
    let sessions: Vec<ExecSession> = (0..32)
        .map(|i| {
            h.exec(&ExecSpec::new([
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                format!("echo {i}; exit {}", i % 7),
            ]))
            .expect("exec")
        })
        .collect();
    let threads: Vec<_> = sessions
        .into_iter()
        .map(|s| std::thread::spawn(move || finish(s, b"")))
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let d = t.join().expect("session");
        assert_eq!(d.out(), format!("{i}\n"));
        assert_eq!(d.exit, ExecExit::Exited((i % 7) as i32));
    }
    let d = run(&h, &ExecSpec::new(["/bin/ls", "/proc"]), b"");
    let pid = d.pid.expect("started").to_string();
    let pids: Vec<&str> = d
        .out
        .split(|&b| b == b'\n')
        .filter_map(|l| std::str::from_utf8(l).ok())
        .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert_eq!(pids, ["1", pid.as_str()], "{}", d.out());
    // Every ended program's user sandbox is reaped (init's stays).
    let deadline = Instant::now() + Duration::from_secs(30);
    while tenant.user_sandbox_pids().len() > 1 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            tenant.user_sandbox_pids()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(end(tenant, gate).exit_code(), Some(0));
}
