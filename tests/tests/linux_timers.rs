//! Timers and signals (issue 11, items 3 and 6): `alarm` + `pause`, `setitimer`/`getitimer`
//! on the three clocks, POSIX timers (`SIGEV_SIGNAL` with overruns, `SIGEV_THREAD_ID`,
//! `SIGEV_NONE`, absolute times, CPU clocks), `clock_nanosleep`, what `fork` and `execve` do
//! to timers (`tests/programs/c/timers.c`); timerfd and signalfd with `poll`/`select`,
//! `signalfd_siginfo` fields, `sigqueue` values in a handler and through `sigtimedwait`,
//! `sigtimedwait`'s timeout, the order of queued real-time signals
//! (`tests/programs/c/sigfd_timerfd.c`). Each program runs natively and in a guest (glibc
//! and musl, 1 and 2 vCPUs) and the outputs must be the same. Then bash's `sleep 0.1 & wait`
//! and coreutils' `timeout` (which uses `timer_create`) from the host's root. Sleeps entered
//! while events land on the vCPU all end (`tests/programs/c/sleep_storm.c`, 4 vCPUs).

use std::process::Command;
use std::time::Duration;

use pvmux_tests::{prog, run_clean, run_native, variants, Run, TempDir};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Longest any single run may take (generous: the machine is loaded).
const TIMEOUT: Duration = Duration::from_secs(180);

/// A rootfs holding the given test programs at `/NAME`.
fn rootfs(names: &[String]) -> TempDir {
    let dir = TempDir::unique("pvmux-linux-timers", "rootfs");
    for name in names {
        std::fs::copy(prog(name), dir.0.join(name)).expect("copy program");
    }
    dir
}

/// Runs `/program` under pvmux with `root` as its rootfs and `vcpus` vCPUs.
fn guest(root: &TempDir, vcpus: u32, program: &str) -> Run {
    let mut cmd = Command::new(PVMUX);
    cmd.arg("run")
        .arg(format!("--vcpus={vcpus}"))
        .arg("--rootfs")
        .arg(&root.0)
        .arg("--")
        .arg(format!("/{program}"));
    run_clean(cmd, TIMEOUT)
}

/// A program that checks its own behaviour ("NAME: ok" lines, the failures as exit status)
/// prints and returns under pvmux what it does natively, with glibc and musl, on 1 and 2
/// vCPUs.
fn same_as_native(program: &str) {
    let names = variants(program);
    let root = rootfs(&names);
    for name in &names {
        let n = run_native(name, &[], TIMEOUT);
        assert_eq!(n.code(), Some(0), "native {name}:\n{}", n.stdout);
        assert!(n.has_line("failures: 0"), "native {name}:\n{}", n.stdout);
        for vcpus in [1, 2] {
            let g = guest(&root, vcpus, name);
            assert_eq!(
                g.stdout, n.stdout,
                "{name} on {vcpus} vCPUs: guest stdout differs from the native run (guest \
                 stderr:\n{})",
                g.stderr
            );
            assert_eq!(g.code(), n.code(), "{name} on {vcpus} vCPUs: exit status");
        }
    }
}

/// `alarm` wakes `pause`, interval timers count, POSIX timers signal with `SI_TIMER`, their
/// value, id and overruns, to a thread too; CPU-time timers and sleeps; timers across
/// `fork` and `execve`; 4,096 periodic 1 ns timers with ignored signals do not stop the
/// program.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn alarm_itimers_and_posix_timers() {
    same_as_native("timers");
}

/// timerfd and signalfd as files (`read`, `poll`, `select`), their records and errors;
/// `sigqueue` values through a handler and `sigtimedwait`; `sigtimedwait`'s timeout; queued
/// real-time signals in order, standard ones merged.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn timerfd_signalfd_and_sigtimedwait() {
    same_as_native("sigfd-timerfd");
}

/// Runs `/program args` in a guest with `vcpus` vCPUs; if it has not ended within `limit`,
/// asks the guest kernel for a dump of its tasks (`SIGQUIT`), ends it and fails with the dump:
/// a lost wake-up then names the call the thread waits in.
fn guest_or_dump(root: &TempDir, vcpus: u32, program: &str, args: &[&str], limit: Duration) -> Run {
    let mut cmd = Command::new(PVMUX);
    cmd.env_clear()
        .arg("run")
        .arg(format!("--vcpus={vcpus}"))
        .arg("--rootfs")
        .arg(&root.0)
        .arg("--")
        .arg(format!("/{program}"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("pvmux run");
    let start = std::time::Instant::now();
    let mut dumped = false;
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if !dumped && start.elapsed() > limit {
            pvmux_tests::dump_then_kill(&mut child);
            dumped = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    let run = Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !dumped,
        "/{program} {args:?} on {vcpus} vCPUs did not end within {limit:?}\n{}",
        run.context()
    );
    run
}

/// Threads on their way into a sleep while timer events, wake-ups and slice ends land on
/// their vCPU (six threads alternating spins of 0-60 µs with sleeps of 10-130 µs, on four
/// vCPUs). The guest kernel's event handler used to switch such a thread out between its
/// `prepare_block` and the registration of its deadline: the sleep then never ended (this
/// program hung in three of five runs; `hostile_grant`'s 4-vCPU attack in one of ~50). Each
/// run must end and print what it prints natively.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn sleeps_entered_while_events_land_all_end() {
    let args = ["6", "1000"];
    let names = variants("sleep-storm");
    let root = rootfs(&names);
    for name in &names {
        let n = run_native(name, &args, TIMEOUT);
        assert_eq!(n.code(), Some(0), "native {name}:\n{}", n.context());
        for round in 0..3 {
            let g = guest_or_dump(&root, 4, name, &args, Duration::from_secs(60));
            assert_eq!(g.code(), Some(0), "{name}, round {round}:\n{}", g.context());
            assert_eq!(
                g.stdout,
                n.stdout,
                "{name}, round {round}:\n{}",
                g.context()
            );
        }
    }
}

/// Runs `script` with the host's `/bin/bash` natively and in a guest with `--rootfs /`, and
/// asserts the same stdout and exit status.
fn bash_same_as_native(script: &str) {
    let mut native = Command::new("/bin/bash");
    native.args(["-c", script]).env("PATH", "/usr/bin:/bin");
    let native = run_clean_keep_env(native);
    let mut guest = Command::new(PVMUX);
    guest
        .args(["run", "--rootfs", "/", "--vcpus", "2", "--mem", "1G"])
        .args([
            "--env",
            "PATH=/usr/bin:/bin",
            "--",
            "/bin/bash",
            "-c",
            script,
        ]);
    let guest = run_clean(guest, TIMEOUT);
    assert_eq!(
        guest.stdout,
        native.stdout,
        "guest and native differ\nguest:\n{}\nnative stderr:\n{}",
        guest.context(),
        native.stderr
    );
    assert_eq!(
        guest.code(),
        native.code(),
        "exit status\n{}",
        guest.context()
    );
}

/// [`run_clean`], but with the environment the caller set (`run_clean` clears it first).
fn run_clean_keep_env(cmd: Command) -> Run {
    let what = format!("{cmd:?}");
    pvmux_tests::run_with_timeout(cmd, &what, TIMEOUT, Duration::from_millis(10), |_| {})
}

/// bash's background job and `wait`, and coreutils' `timeout` killing a sleep when its
/// POSIX timer fires (status 124), and not killing a command that ends in time.
#[test]
#[cfg_attr(
    not(have_timeout),
    ignore = "needs /usr/bin/timeout: apt-get install coreutils"
)]
fn bash_wait_and_coreutils_timeout() {
    bash_same_as_native(
        "sleep 0.1 & wait; echo \"waited: $?\"\n\
         timeout 1 sleep 5; echo \"timeout: $?\"\n\
         timeout 5 sleep 0.1; echo \"in time: $?\"\n\
         timeout -s INT 0.2 sleep 5; echo \"SIGINT: $?\"",
    );
}
