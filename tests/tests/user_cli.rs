//! `pvmux run -- PROGRAM ARGS...` end to end: real static programs as the guest's init.
//! They run the `pvmux` CLI as a user would, with the workspace's static test programs
//! (`tests/programs`) as the guest programs.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The `pvmux` CLI built with this test crate (`tests/src/bin/pvmux-cli.rs`).
fn pvmux_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pvmux-cli"))
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(pvmux_bin());
    cmd.args(args);
    output(cmd, stdin)
}

/// Runs `cmd` with `stdin` written by another thread (the program may write more than a pipe
/// holds before it has read everything) and its output captured.
fn output(mut cmd: Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let bytes = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&bytes));
    let out = child.wait_with_output().expect("wait for the program");
    writer.join().expect("stdin writer").expect("write stdin");
    out
}

/// The workspace's static test program `name` (`tests/programs`); with `--rootfs /` the
/// guest finds it at the same path as the host.
fn prog(name: &str) -> String {
    format!("{}/{name}", env!("PVMUX_PROG_DIR"))
}

/// Runs test program `name` natively with `args` and `stdin`.
fn native(name: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(prog(name));
    cmd.args(args);
    output(cmd, stdin)
}

/// `pvmux run --rootfs / -- PROGRAM ARGS...` with test program `name`.
fn guest(name: &str, args: &[&str], stdin: &[u8]) -> Output {
    let program = prog(name);
    let mut argv = vec!["run", "--rootfs", "/", "--", &program];
    argv.extend_from_slice(args);
    run(&argv, stdin)
}

#[test]
fn program_output_and_exit_status() {
    // The kernel log is hidden: stdout is the program's output, byte for byte as natively.
    let args = ["42", "hello  world"];
    let o = guest("hello", &args, b"");
    let n = native("hello", &args, b"");
    assert_eq!(
        o.status.code(),
        Some(42),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.stdout, n.stdout);
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("argc: 3\nargv[1]: \"42\"\nargv[2]: \"hello  world\"\n"),
        "one argument with two spaces: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = guest("exitcode", &["0"], b"");
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{o:?}");
    let o = guest("toolbox", &["stderr", "to stderr", "3"], b"");
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(
        o.stderr, b"to stderr\n",
        "program stderr goes to pvmux's stderr"
    );
    assert!(o.stdout.is_empty(), "{o:?}");
    // Killed by a signal: 128 + SIGSEGV.
    let o = guest("segv", &[], b"");
    assert_eq!(o.status.code(), Some(128 + 11), "{o:?}");
    assert_eq!(o.stdout, b"segv: writing to 0x10\n");
    // ... and pvmux says so in one line on stderr, as Linux's kernel log would.
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("pvmux: ")
            && err.contains("(pid 1) killed by SIGSEGV: segfault at 0x10 ip "),
        "{err}"
    );
}

#[test]
fn stdin_feeds_the_program() {
    // Every byte value, lines of every length, more than a pipe buffer in all.
    let input: Vec<u8> = (0..70_000u32)
        .map(|i| u8::try_from((i * 7 + i / 300) % 256).expect("byte"))
        .collect();
    let o = guest("toolbox", &["cat"], &input);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.stdout == input,
        "stdin reaches the program byte for byte ({} bytes back)",
        o.stdout.len()
    );
    let o = guest("toolbox", &["cat"], b"");
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty(), "end of file at once: {o:?}");
}

#[test]
fn arguments_pass_unchanged() {
    // Spaces, tabs, `%`, quotes, non-ASCII and an empty argument reach the program as they
    // are, as natively.
    let weird = ["100% tab\there \u{e9}", "%41", "%20", "a=b;c", "'\"\\", ""];
    let o = guest("hello", &weird, b"");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&native("hello", &weird, b"").stdout)
    );
    for (i, w) in weird.iter().enumerate() {
        let line = format!("argv[{}]: {w:?}\n", i + 1);
        assert!(String::from_utf8_lossy(&o.stdout).contains(&line), "{line}");
    }
}

#[test]
fn debug_log_shows_the_kernel_log_on_stderr() {
    let program = prog("exitcode");
    let o = run(
        &[
            "run", "--log", "debug", "--rootfs", "/", "--", &program, "0",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty(), "kernel log is not on stdout");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("pvmux-kernel"), "{err}");
}

#[test]
fn a_missing_or_dynamic_program_is_explained_with_127_or_126() {
    let o = run(
        &["run", "--rootfs", "/", "--", "/no/such/program", "arg"],
        b"",
    );
    assert_eq!(o.status.code(), Some(127));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot run /no/such/program: No such file or directory"),
        "{err}"
    );
    // A directory is not executable.
    let o = run(&["run", "--rootfs", "/", "--", "/etc"], b"");
    assert_eq!(o.status.code(), Some(126));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Four tenants at once, each running programs that fork, exec and pipe (`spawn`) or exit
/// with their own status (`hello`): each gets its own output and status.
#[test]
fn several_tenants_run_programs_at_once() {
    let (spawn, hello) = (prog("spawn"), prog("hello"));
    let native_spawn = native("spawn", &[&hello], b"");
    assert_eq!(native_spawn.status.code(), Some(0));
    let children: Vec<_> = (1..=4)
        .map(|i| {
            let tag = format!("tenant-{i}");
            let args: Vec<&str> = if i % 2 == 0 {
                vec![&spawn, &hello]
            } else {
                vec![&hello, if i == 1 { "1" } else { "3" }, &tag]
            };
            Command::new(pvmux_bin())
                .args(["run", "--rootfs", "/", "--"])
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("pvmux runs")
        })
        .collect();
    for (i, c) in (1..=4).zip(children) {
        let o = c.wait_with_output().expect("pvmux ends");
        if i % 2 == 0 {
            assert_eq!(o.status.code(), Some(0), "tenant {i}: {o:?}");
            assert_eq!(o.stdout, native_spawn.stdout, "tenant {i}");
        } else {
            let code = if i == 1 { "1" } else { "3" };
            let n = native("hello", &[code, &format!("tenant-{i}")], b"");
            assert_eq!(o.status.code(), n.status.code(), "tenant {i}: {o:?}");
            assert_eq!(o.stdout, n.stdout, "tenant {i}");
        }
    }
}

/// `kill -QUIT` of `pvmux run` asks the guest kernel what its tasks are doing, as a JVM prints
/// its threads: on standard error, the sleeping init as a blocked thread in its
/// `clock_nanosleep` that is a timed sleeper due before its sleep ends; the guest goes on and
/// ends as it would have.
#[test]
fn sigquit_dumps_the_guests_tasks_and_the_guest_goes_on() {
    let child = Command::new(pvmux_bin())
        .args(["run", "--rootfs", "/", "--", "/bin/sleep", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pvmux run");
    // Well into the sleep (a boot and the program's start take milliseconds).
    std::thread::sleep(std::time::Duration::from_millis(800));
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::QUIT).expect("SIGQUIT");
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{err}", out.status);
    let dump: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix("pvmux: dump: "))
        .collect();
    assert!(
        dump.iter().any(|l| l.trim() == "process 1 (sleep)"),
        "{err}"
    );
    // Blocked in its sleep: the thread's line names the call (coreutils `sleep`:
    // `clock_nanosleep(CLOCK_REALTIME, ...)`).
    assert!(
        dump.iter().any(|l| l.trim().starts_with("thread 1: ")
            && l.contains("tid 1 blocked")
            && l.ends_with(", in clock_nanosleep(0x0, ...)")),
        "{err}"
    );
    // A timed sleeper, due in less than the 2 s it slept for (and not overdue).
    let due_ms: f64 = dump
        .iter()
        .find(|l| l.contains("tid 1 blocked") && l.contains(" due in "))
        .and_then(|l| l.split(" due in ").nth(1))
        .and_then(|d| d.strip_suffix(" ms"))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no timed sleeper for init\n{err}"));
    assert!(due_ms > 0.0 && due_ms < 2000.0, "due in {due_ms} ms\n{err}");
    assert!(dump.iter().any(|l| l.starts_with("vCPU 0: ")), "{err}");
}
