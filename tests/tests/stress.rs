//! The process-lifecycle stress family (`tests/programs/c/stress_*.c`, built by
//! `tests/build.rs` as static glibc and musl programs), each run as the guest's init with
//! `pvmux run --rootfs-pack DIR -- /PROGRAM` on 1 and on 4 vCPUs, and natively:
//!
//! * `stress-fork`: a tight `fork`/`_exit`/`waitpid` loop (it died with SIGSEGV after about
//!   ten iterations: the fault-loop guard counted every copy-on-write fault at the parent's
//!   stack slot as a repeat);
//! * `stress-vfork-exec`: four threads `vfork` and `execve` a small static program;
//! * `stress-fork-fault`: fork while another thread faults in fresh pages; each child checks
//!   that its memory is a consistent, stable snapshot (it was not: the parent's write
//!   protection was applied after the child could run, and operations of different threads
//!   could be applied out of order);
//! * `stress-exit-fork`: a process exits (`exit_group`) while another of its threads forks;
//!   every grandchild must be reparented and reaped;
//! * `stress-signals`: fork + kill + `sigsuspend`/`sigwaitinfo`/`pause` + `waitpid` patterns
//!   (seven, 200 rounds each): a child killing its parent, a parent its child, SIGCHLD, a
//!   fatal SIGTERM from a grandchild, ping-pong. A task's link to its kernel thread (what a
//!   signal wakes) was set only after the thread could run: a process whose creator's vCPU
//!   the host preempted in that window could block in `sigsuspend` before a signal that then
//!   woke no one, and slept for ever (CI: `fatal term-child` hung once in a loaded run).
//!
//! 1,000 iterations each (`stress-signals`: 200 rounds of each pattern). Every program checks its own results (each child reaped with its
//! own status, counts matching) and prints one line and exits 0 only if all was right; the
//! guest's output and status must be the native run's.

use std::process::Command;
use std::time::Duration;

use pvmux_tests::{prog, run_with_timeout, Run, TempDir};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Longest one run may take (a run takes a few seconds; this machine may be loaded).
const TIMEOUT: Duration = Duration::from_secs(180);
/// The vCPU counts every program runs with.
const VCPUS: [u32; 2] = [1, 4];

/// Runs `cmd` with null stdin and a clean environment, killing it after [`TIMEOUT`].
fn run(mut cmd: Command) -> Run {
    let what = format!("{cmd:?}");
    cmd.env_clear();
    run_with_timeout(cmd, &what, TIMEOUT, Duration::from_millis(20), |_| {})
}

/// Runs `name` natively, then as the guest's init on each of [`VCPUS`]: every run must exit 0
/// and print exactly `expected`.
fn stress(name: &str, expected: &str) {
    let path = prog(name);
    let native = run(Command::new(&path));
    assert_eq!(
        (native.code(), native.stdout.as_str()),
        (Some(0), expected),
        "{name}, native run: {}",
        native.context()
    );
    // The packed root holds the program alone (it is the guest's initial RAM disk).
    let root = TempDir::unique("pvmux-stress", name);
    std::fs::copy(&path, root.0.join(name)).expect("copy the program");
    for vcpus in VCPUS {
        let mut cmd = Command::new(PVMUX);
        cmd.arg("run")
            .arg("--vcpus")
            .arg(vcpus.to_string())
            .arg("--rootfs-pack")
            .arg(&root.0)
            .arg("--")
            .arg(format!("/{name}"));
        let guest = run(cmd);
        assert_eq!(
            (guest.code(), guest.stdout.as_str()),
            (native.code(), native.stdout.as_str()),
            "{name} on {vcpus} vCPU(s) differs from the native run: {}",
            guest.context()
        );
    }
}

/// The glibc build of `name` (required: the other C tests need static glibc too).
fn glibc(name: &str, expected: &str) {
    assert!(
        prog(name).exists(),
        "{name} was not built: the host has no static glibc (see the build warning)"
    );
    stress(name, expected);
}

/// The musl build of `name` (built when musl-gcc is installed: `have_musl`).
fn musl(name: &str, expected: &str) {
    stress(&format!("{name}-musl"), expected);
}

const FORK: &str = "stress-fork: 1000 children forked, each reaped with its own status\n";
const VFORK_EXEC: &str =
    "stress-vfork-exec: 1000 vfork+exec children in 4 threads, each reaped with its own status\n";
const FORK_FAULT: &str = "stress-fork-fault: 1000 children saw consistent snapshots of a \
                          faulting thread's memory; no write lost\n";
const EXIT_FORK: &str = "stress-exit-fork: 1000 children exited while forking; every \
                         grandchild reparented and reaped\n";
const SIGNALS: &str = "child-kills-parent: 200 rounds
sigwait-sender: 200 rounds
parent-kills-child: 200 rounds
sigchld-suspend: 200 rounds
fatal-to-middle: 200 rounds
ping-pong: 200 rounds of 20 exchanges
pause-child: 200 rounds
";

#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn tight_fork_exit_wait_loop_glibc() {
    glibc("stress-fork", FORK);
}

#[test]
#[cfg_attr(not(have_musl), ignore = "needs musl-gcc: apt-get install musl-tools")]
fn tight_fork_exit_wait_loop_musl() {
    musl("stress-fork", FORK);
}

#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn vfork_exec_storm_glibc() {
    glibc("stress-vfork-exec", VFORK_EXEC);
}

#[test]
#[cfg_attr(not(have_musl), ignore = "needs musl-gcc: apt-get install musl-tools")]
fn vfork_exec_storm_musl() {
    musl("stress-vfork-exec", VFORK_EXEC);
}

#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn fork_while_another_thread_faults_glibc() {
    glibc("stress-fork-fault", FORK_FAULT);
}

#[test]
#[cfg_attr(not(have_musl), ignore = "needs musl-gcc: apt-get install musl-tools")]
fn fork_while_another_thread_faults_musl() {
    musl("stress-fork-fault", FORK_FAULT);
}

#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn exit_while_another_thread_forks_glibc() {
    glibc("stress-exit-fork", EXIT_FORK);
}

#[test]
#[cfg_attr(not(have_musl), ignore = "needs musl-gcc: apt-get install musl-tools")]
fn exit_while_another_thread_forks_musl() {
    musl("stress-exit-fork", EXIT_FORK);
}

#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn fork_kill_and_signal_waits_glibc() {
    glibc("stress-signals", SIGNALS);
}

#[test]
#[cfg_attr(not(have_musl), ignore = "needs musl-gcc: apt-get install musl-tools")]
fn fork_kill_and_signal_waits_musl() {
    musl("stress-signals", SIGNALS);
}
