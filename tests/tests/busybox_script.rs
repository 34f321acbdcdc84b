//! A busybox shell script (`tests/scripts/busybox.sh`: pipes, redirections, subshells,
//! loops, functions, command substitution, exit statuses and the common applets) run
//! natively with the host's static `/bin/busybox` as the reference, and as a pvmux guest
//! (`pvmux run --rootfs DIR -- /bin/busybox sh /script.sh`), where stdout and exit status
//! must be identical. Ignored (`needs /bin/busybox`) when the host has no busybox-static.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pvmux_tests::{run_with_timeout, Run, TempDir};

/// The host's busybox (a static build, e.g. Debian's busybox-static).
const BUSYBOX: &str = "/bin/busybox";
/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Longest any single run may take.
const TIMEOUT: Duration = Duration::from_secs(60);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/busybox.sh")
}

/// Runs `cmd` with null stdin, killing it after [`TIMEOUT`]. The environment is cleared
/// except for `env`.
fn run(mut cmd: Command, env: &[(&str, &Path)]) -> Run {
    cmd.env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let what = format!("{cmd:?}");
    run_with_timeout(cmd, &what, TIMEOUT, Duration::from_millis(10), |_| {})
}

/// Runs the script natively in a fresh directory (cwd and `TMPDIR`).
fn native_script() -> Run {
    let dir = TempDir::unique("pvmux-busybox", "native");
    let mut cmd = Command::new(BUSYBOX);
    cmd.arg("sh").arg(script()).current_dir(&dir.0);
    run(cmd, &[("TMPDIR", &dir.0)])
}

/// A rootfs holding `/bin/busybox`, `/script.sh` and an empty `/tmp`.
fn rootfs() -> TempDir {
    let root = TempDir::unique("pvmux-busybox", "rootfs");
    std::fs::create_dir(root.0.join("bin")).expect("mkdir bin");
    std::fs::create_dir(root.0.join("tmp")).expect("mkdir tmp");
    std::fs::copy(BUSYBOX, root.0.join("bin/busybox")).expect("copy busybox");
    std::fs::copy(script(), root.0.join("script.sh")).expect("copy script");
    root
}

/// Runs `/bin/busybox ARGS...` under pvmux with `root` as its rootfs.
fn guest(root: &TempDir, args: &[&str]) -> Run {
    let mut cmd = Command::new(PVMUX);
    cmd.arg("run")
        .arg("--rootfs")
        .arg(&root.0)
        .arg("--")
        .arg("/bin/busybox")
        .args(args);
    run(cmd, &[])
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn busybox_script_native_reference() {
    let first = native_script();
    assert_eq!(
        first.status.code(),
        Some(0),
        "failed checks:\n{}\nstderr:\n{}",
        first.stdout,
        first.stderr
    );
    assert!(!first.stdout.contains("FAIL"), "{}", first.stdout);
    assert!(
        first.stdout.ends_with("ok removed\nfailed checks: 0\n"),
        "{}",
        first.stdout
    );
    for section in [
        "setup",
        "redirections",
        "pipes",
        "subshells",
        "loops",
        "case",
        "functions",
        "exit statuses",
        "files",
        "sleep",
        "cleanup",
    ] {
        assert!(
            first.stdout.contains(&format!("== {section}\n")),
            "section {section} missing:\n{}",
            first.stdout
        );
    }
    // Deterministic: another run (other directory, other pids) prints the same bytes.
    let second = native_script();
    assert_eq!(first.stdout, second.stdout);
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn busybox_pipe_native_reference() {
    let mut cmd = Command::new(BUSYBOX);
    cmd.args(["sh", "-c", "echo hello | wc -c"]);
    let r = run(cmd, &[]);
    assert_eq!(r.stdout, "6\n");
    assert_eq!(r.status.code(), Some(0));
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn busybox_script_under_pvmux() {
    let native = native_script();
    let root = rootfs();
    let g = guest(&root, &["sh", "/script.sh"]);
    assert_eq!(
        g.stdout, native.stdout,
        "guest stdout differs from the native run (guest stderr:\n{})",
        g.stderr
    );
    assert_eq!(g.status.code(), native.status.code(), "{}", g.stderr);
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn busybox_pipe_and_exit_status_under_pvmux() {
    let root = rootfs();
    let g = guest(&root, &["sh", "-c", "echo hello | wc -c"]);
    assert_eq!(g.stdout, "6\n", "stderr:\n{}", g.stderr);
    assert_eq!(g.status.code(), Some(0));
    let g = guest(&root, &["sh", "-c", "echo out; exit 9"]);
    assert_eq!(g.stdout, "out\n", "stderr:\n{}", g.stderr);
    assert_eq!(g.status.code(), Some(9));
}
