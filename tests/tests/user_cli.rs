//! `pvmux run -- PROGRAM ARGS...` end to end: real static programs as the guest's init.
//! They run the `pvmux` CLI as a user would, with busybox-static (skipped when absent).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The `pvmux` CLI built with this test crate (`tests/src/bin/pvmux-cli.rs`).
fn pvmux_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pvmux-cli"))
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(pvmux_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pvmux runs");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("pvmux ends")
}

/// A busybox-static binary on the host, if installed.
fn busybox() -> Option<&'static str> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

#[test]
fn program_output_and_exit_status() {
    let Some(bb) = busybox() else {
        eprintln!("busybox not installed; skipping");
        return;
    };
    let o = run(
        &["run", "--rootfs", "/", "--", bb, "echo", "hello  world"],
        b"",
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.stdout, b"hello  world\n", "one argument with two spaces");
    // The kernel log is hidden: nothing but the program's output.
    let o = run(
        &["run", "--rootfs", "/", "--", bb, "sh", "-c", "exit 42"],
        b"",
    );
    assert_eq!(o.status.code(), Some(42));
    let o = run(
        &[
            "run",
            "--rootfs",
            "/",
            "--",
            bb,
            "sh",
            "-c",
            "echo err >&2; kill -9 $$",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(128 + 9));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!("err\npvmux: {bb} (pid 1) killed by SIGKILL (sent by itself)\n"),
        "program stderr goes to pvmux's stderr, then pvmux says how the program died"
    );
}

#[test]
fn stdin_feeds_the_program() {
    let Some(bb) = busybox() else {
        eprintln!("busybox not installed; skipping");
        return;
    };
    let o = run(&["run", "--rootfs", "/", "--", bb, "wc", "-c"], b"12345\n");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "6");
}

#[test]
fn arguments_survive_percent_encoding() {
    let Some(bb) = busybox() else {
        eprintln!("busybox not installed; skipping");
        return;
    };
    let weird = "100% tab\there é";
    let o = run(
        &[
            "run", "--rootfs", "/", "--", bb, "printf", "%s|", weird, "x",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{weird}|x|"));
}

#[test]
fn debug_log_shows_the_kernel_log_on_stderr() {
    let Some(bb) = busybox() else {
        eprintln!("busybox not installed; skipping");
        return;
    };
    let o = run(
        &["run", "--log", "debug", "--rootfs", "/", "--", bb, "true"],
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

#[test]
fn several_tenants_run_programs_at_once() {
    let Some(bb) = busybox() else {
        eprintln!("busybox not installed; skipping");
        return;
    };
    let children: Vec<_> = (1..=4)
        .map(|i| {
            let script =
                format!("for j in 1 2 3 4 5; do echo t{i}-$j | wc -c; done | sort -u; exit {i}");
            Command::new(pvmux_bin())
                .args(["run", "--rootfs", "/", "--", bb, "sh", "-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("pvmux runs")
        })
        .collect();
    for (i, c) in (1..=4).zip(children) {
        let o = c.wait_with_output().expect("pvmux ends");
        assert_eq!(o.status.code(), Some(i), "tenant {i}: {o:?}");
        assert_eq!(o.stdout, b"5\n", "tenant {i}: each line is 5 bytes");
    }
}
