//! The `pvmux` command line: defaults boot the embedded kernel, exit codes carry through, and
//! bad input gets a clear error and exit status 125, never a panic.

use std::process::{Command, Output};

fn pvmux(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pvmux"))
        .args(args)
        .output()
        .expect("pvmux runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn assert_host_error(args: &[&str], needle: &str) {
    let o = pvmux(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in: {err}"
    );
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

#[test]
fn default_run_boots_the_embedded_kernel_and_passes_its_selftest() {
    let o = pvmux(&["run"]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains(&format!(
            "ABI v{}, 2 vCPUs, 1 GiB",
            pvmux_hypercalls::ABI_VERSION
        )),
        "banner: {err}"
    );
    assert!(err.contains("sandbox pid"), "banner: {err}");
    let summary = out
        .lines()
        .find(|l| l.starts_with("selftest: ") && l.ends_with(" checks passed"));
    let (passed, total) = summary
        .and_then(|l| {
            l.trim_start_matches("selftest: ")
                .trim_end_matches(" checks passed")
                .split_once('/')
        })
        .unwrap_or_else(|| panic!("no selftest summary in:\n{out}"));
    assert_eq!(passed, total, "{out}");
    assert!(total.parse::<u32>().expect("count") >= 13, "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn guest_exit_code_becomes_the_exit_status() {
    let o = pvmux(&[
        "run",
        "--vcpus",
        "1",
        "--mem",
        "32M",
        "--cmdline",
        "exit=42",
    ]);
    assert_eq!(o.status.code(), Some(42), "{}", stderr(&o));
    assert!(stdout(&o).contains("exiting with 42"));
}

#[test]
fn crashed_guest_exits_124_with_a_report() {
    let o = pvmux(&["run", "--cmdline", "panic"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(124), "{err}");
    assert!(err.contains("requested panic"), "{err}");
    assert!(
        err.contains("pvmux_kernel::commands::crash::requested_panic"),
        "backtrace names the function: {err}"
    );
}

#[test]
fn missing_kernel_file_is_a_clear_error() {
    assert_host_error(
        &["run", "--kernel", "/nonexistent/kernel.elf"],
        "cannot read kernel image",
    );
}

#[test]
fn non_elf_kernel_is_refused() {
    let path = std::env::temp_dir().join(format!("pvmux-not-elf-{}", std::process::id()));
    std::fs::write(&path, b"#!/bin/sh\necho not a kernel\n").expect("write temp file");
    assert_host_error(
        &["run", "--kernel", path.to_str().expect("utf-8 path")],
        "not an ELF",
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn elf_that_is_not_a_pvmux_kernel_is_refused() {
    assert_host_error(
        &["run", "--kernel", env!("CARGO_BIN_EXE_pvmux")],
        "not a pvmux kernel",
    );
}

#[test]
fn kernel_with_another_abi_version_is_refused() {
    let mut image = pvmux::images::KERNEL.to_vec();
    let mut marker = pvmux_hypercalls::ABI_MAGIC.to_le_bytes().to_vec();
    marker.extend_from_slice(&pvmux_hypercalls::ABI_VERSION.to_le_bytes());
    let at = image
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("ABI header in image");
    image[at + 8..at + 12].copy_from_slice(&99u32.to_le_bytes());
    let path = std::env::temp_dir().join(format!("pvmux-abi99-{}", std::process::id()));
    std::fs::write(&path, image).expect("write temp file");
    assert_host_error(
        &["run", "--kernel", path.to_str().expect("utf-8 path")],
        "ABI v99",
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn bad_flags_are_clear_errors() {
    assert_host_error(&["run", "--vcpus", "65"], "1..=64");
    assert_host_error(&["run", "--vcpus", "0"], "--vcpus");
    assert_host_error(&["run", "--mem", "3M"], "multiple of 2M");
    assert_host_error(&["run", "--mem", "lots"], "invalid size");
    assert_host_error(&["run", "--bogus"], "unexpected argument");
}

#[test]
fn help_explains_exit_codes() {
    let o = pvmux(&["run", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for needle in [
        "--kernel",
        "--mem",
        "--vcpus",
        "--cmdline",
        "--log",
        "124",
        "125",
        "-- PROGRAM [ARGS...]",
        "0-255",
        "128+N",
        "shared\n  read-only",
        "limited to 65536",
        "Kernel command line (--cmdline",
        "exit=N",
        "hostile=CASE",
        "crash=stub-syscall",
        "unknown --cmdline word",
    ] {
        assert!(out.contains(needle), "help lacks {needle}: {out}");
    }
}

#[test]
fn boot_arguments_are_checked_before_boot() {
    // 80,000 bytes of arguments plus the header and prefixes exceed the 65536-byte limit.
    let long = "x".repeat(40_000);
    assert_host_error(
        &["run", "--", "/bin/sh", "-c", &long, &long],
        "beyond the limit of 65536",
    );
    assert_host_error(
        &["run", "--cmdline", &"ls=/ ".repeat(14_000)],
        "beyond the limit of 65536",
    );
    assert_host_error(
        &["run", "--cmdline", "selftest -- /x", "--", "/bin/true"],
        "must not contain the word --",
    );
    // An unknown or malformed word is refused, naming it, before anything boots.
    assert_host_error(
        &["run", "--cmdline", "exit=3 bogus"],
        "unknown kernel command-line word \"bogus\"",
    );
    assert_host_error(
        &["run", "--cmdline", "console-size=80"],
        "\"console-size=80\": expected COLSxROWS",
    );
    assert_host_error(
        &["run", "--cmdline", "crash=sideways", "--", "/bin/true"],
        "unknown kernel command-line word \"crash=sideways\"",
    );
}

#[test]
fn quiet_hides_the_kernel_banner() {
    let o = pvmux(&["run", "--mem", "32M", "--vcpus", "1", "--cmdline", "exit=7"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(stdout(&o).contains("pvmux-kernel: ABI v"), "{}", stdout(&o));
    let o = pvmux(&[
        "run",
        "--mem",
        "32M",
        "--vcpus",
        "1",
        "--cmdline",
        "quiet exit=7",
    ]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!out.contains("pvmux-kernel: ABI v"), "{out}");
    assert!(!out.contains("pvmux-kernel: heap"), "{out}");
    assert!(out.contains("exiting with 7"), "{out}");
}

#[test]
fn crash_dump_writes_report_registers_memory_and_console() {
    let dir = std::env::temp_dir().join(format!("pvmux-cli-dump-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let target = dir.join("not/yet/there");
    let o = pvmux(&[
        "run",
        "--mem",
        "32M",
        "--cmdline",
        "panic",
        "--crash-dump",
        target.to_str().expect("utf-8 path"),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(124), "{err}");
    assert!(err.contains("crash dump written to"), "{err}");
    let dumps: Vec<_> = std::fs::read_dir(&target)
        .expect("dump dir created")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let d = &dumps[0];
    assert!(
        d.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("guest-")),
        "{d:?}"
    );
    let report = std::fs::read_to_string(d.join("report.txt")).expect("report.txt");
    assert!(report.contains("requested panic"), "{report}");
    assert!(report.contains("requested_panic"), "symbolised: {report}");
    let regs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("registers.json")).expect("registers.json"))
            .expect("registers.json parses");
    assert_eq!(regs["kind"], "guest_panic");
    assert!(
        regs["registers"]["rip"].as_u64().is_some_and(|r| r != 0),
        "{regs}"
    );
    assert!(
        regs["backtrace"].as_array().is_some_and(|b| !b.is_empty()),
        "{regs}"
    );
    let mem = std::fs::metadata(d.join("guest-memory.bin")).expect("guest-memory.bin");
    assert_eq!(mem.len(), 32 << 20);
    let console = std::fs::read_to_string(d.join("console.txt")).expect("console.txt");
    assert!(console.contains("pvmux-kernel"), "{console}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn crashed_guest_is_restarted_then_reported() {
    let o = pvmux(&[
        "run",
        "--mem",
        "32M",
        "--cmdline",
        "panic",
        "--restart",
        "on-crash:2",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(124), "{err}");
    assert_eq!(err.matches("guest kernel panicked").count(), 3, "{err}");
    assert!(err.contains("pvmux: restart 1/2 after crash"), "{err}");
    assert!(err.contains("pvmux: restart 2/2 after crash"), "{err}");
    assert!(!err.contains("restart 3/"), "{err}");
    // Each crash report comes before its restart line.
    let first_crash = err.find("guest kernel panicked").expect("crash");
    assert!(first_crash < err.find("restart 1/2").expect("restart"));
}

#[test]
fn clean_exit_is_never_restarted() {
    let o = pvmux(&[
        "run",
        "--mem",
        "32M",
        "--cmdline",
        "exit=5",
        "--restart",
        "on-crash",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(!err.contains("restart"), "{err}");
    assert_eq!(err.matches("sandbox pid").count(), 1, "{err}");
}

#[test]
fn limit_flags_are_accepted_and_documented() {
    let o = pvmux(&[
        "run",
        "--mem",
        "32M",
        "--cmdline",
        "exit=0",
        "--watchdog",
        "2",
        "--console-rate",
        "64K",
        "--cpus",
        "0.5",
        "--cpu-seconds",
        "30",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let help = stdout(&pvmux(&["run", "--help"]));
    for flag in [
        "--watchdog",
        "--console-rate",
        "--cpus",
        "--cpu-seconds",
        "--restart",
        "--crash-dump",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn environment_flags_are_checked_before_boot() {
    assert_host_error(
        &["run", "--env", "=x", "--", "/bin/true"],
        "invalid environment variable: the name is empty",
    );
    assert_host_error(
        &["run", "-e", "A B=1", "--", "/bin/true"],
        "contains whitespace",
    );
    assert_host_error(
        &[
            "run",
            "--env-file",
            "/nonexistent/pvmux.env",
            "--",
            "/bin/true",
        ],
        "--env-file /nonexistent/pvmux.env: cannot read it",
    );
    let file = std::env::temp_dir().join(format!("pvmux-cli-env-{}", std::process::id()));
    std::fs::write(&file, "# ok\nGOOD=1\n\n=bad\n").expect("write env file");
    let path = file.to_str().expect("utf-8 temp path");
    assert_host_error(
        &["run", "--env-file", path, "--", "/bin/true"],
        &format!("--env-file {path}, line 4"),
    );
    let _ = std::fs::remove_file(&file);
    assert_host_error(
        &["run", "-w", "relative/dir", "--", "/bin/true"],
        "must be an absolute path",
    );
    assert_host_error(&["run", "--workdir"], "--workdir");
    assert_host_error(
        &["run", "--env", "A=1", "--cmdline", "exit=0"],
        "apply to a program",
    );
    // The environment shares the boot arguments' limit.
    let big = format!("BIG={}", "v".repeat(40_000));
    let bigger = format!("BIGGER={}", "v".repeat(40_000));
    assert_host_error(
        &["run", "--env", &big, "--env", &bigger, "--", "/bin/true"],
        "each environment variable its length plus 4",
    );
}

#[test]
fn help_documents_the_environment() {
    let o = pvmux(&["run", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for needle in [
        "-e, --env <NAME[=VALUE]>",
        "--env-file <FILE>",
        "-w, --workdir <DIR>",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/root",
        "HOSTNAME=pvmux",
        "TERM=xterm",
        "does not exist\n  in the guest",
        "126/127",
        "env=NAME=VALUE",
        "workdir=DIR",
    ] {
        assert!(out.contains(needle), "help lacks {needle}: {out}");
    }
}
