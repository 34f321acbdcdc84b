//! The trusted in-process mode (`pvmux run --user-isolation none`, issue 13 item 2): init's
//! address space runs in the kernel sandbox. The same programs that check Linux's behaviour
//! elsewhere — signals and their information, signal masks, futexes, `execve`'s rules,
//! `fork`/`wait`, threads, shared memory across `fork`, a busybox shell script with pipes,
//! subshells and redirections — print and return exactly what they do natively and in the
//! default (isolated) mode, on 1 and 2 vCPUs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pvmux_tests::{prog, run_clean, run_native, variants, Run, TempDir};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Longest any single run may take (generous: the machine is loaded).
const TIMEOUT: Duration = Duration::from_secs(120);
/// The flag under test.
const TRUSTED: &str = "--user-isolation=none";

/// A rootfs holding the given test programs at `/NAME`.
fn rootfs(names: &[String]) -> TempDir {
    let dir = TempDir::unique("pvmux-trusted", "rootfs");
    for name in names {
        std::fs::copy(prog(name), dir.0.join(name)).expect("copy program");
    }
    dir
}

/// Runs `/program args...` under pvmux with `root` as its rootfs, `vcpus` vCPUs and the
/// extra options `opts`.
fn guest(root: &Path, vcpus: u32, opts: &[&str], program: &str, args: &[&str]) -> Run {
    let mut cmd = Command::new(PVMUX);
    cmd.arg("run")
        .arg(format!("--vcpus={vcpus}"))
        .args(opts)
        .arg("--rootfs")
        .arg(root)
        .arg("--")
        .arg(program)
        .args(args);
    run_clean(cmd, TIMEOUT)
}

/// Asserts that `got` printed and returned exactly what `want` did.
fn assert_same(what: &str, want: &Run, got: &Run) {
    assert_eq!(
        got.stdout, want.stdout,
        "{what}: stdout differs (stderr:\n{})",
        got.stderr
    );
    assert_eq!(
        got.code(),
        want.code(),
        "{what}: exit status ({})",
        got.stderr
    );
}

/// Program `name` (glibc and musl) in the trusted mode prints and returns what it does
/// natively and in the default mode, on 1 and 2 vCPUs.
fn same_in_both_modes(program: &str, args: &[&str]) {
    same_for(&variants(program), args);
}

/// Programs `names` in the trusted mode print and return what they do natively and in the
/// default mode, on 1 and 2 vCPUs.
fn same_for(names: &[String], args: &[&str]) {
    let root = rootfs(names);
    for name in names {
        let n = run_native(name, args, TIMEOUT);
        assert_eq!(
            n.code(),
            Some(0),
            "native {name}:\n{}{}",
            n.stdout,
            n.stderr
        );
        for vcpus in [1, 2] {
            let path = format!("/{name}");
            let isolated = guest(&root.0, vcpus, &[], &path, args);
            assert_same(&format!("{name}, isolated, {vcpus} vCPUs"), &n, &isolated);
            let trusted = guest(&root.0, vcpus, &[TRUSTED], &path, args);
            assert_same(&format!("{name}, trusted, {vcpus} vCPUs"), &n, &trusted);
        }
    }
}

/// Plain static programs (also position-independent): system calls, `malloc` (page
/// faults), `getppid`; and a Rust program's threads (`clone(CLONE_THREAD)` on both vCPUs,
/// futexes, thread exit and join).
#[test]
fn programs_and_threads_run_in_process() {
    let names: Vec<String> = ["hello-c", "hello-c-pie", "threads"]
        .iter()
        .map(|n| (*n).to_owned())
        .collect();
    same_for(&names, &[]);
}

/// Signal information: `kill`, `tgkill`, `sigqueue`, `SIGCHLD` of forked children, waits.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn signals_and_fork_in_process() {
    same_in_both_modes("siginfo", &[]);
    same_in_both_modes("sigmask-wait", &[]);
    same_in_both_modes("signal-rules", &[]);
}

/// After `fork`, each side writes its stack and TLS at once (pages the child gets a copy of
/// at the fork when the parent is single-threaded): the child sees the fork instant, and
/// neither sees the other's writes.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn fork_gives_each_side_its_own_stack_and_tls() {
    same_in_both_modes("fork-copies", &[]);
}

/// Futexes (shared and private, with threads), `execve`'s rules (fork + exec + wait).
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn futexes_threads_and_exec_in_process() {
    same_in_both_modes("futex-ops", &[]);
    same_in_both_modes("exec-rules", &[]);
    same_in_both_modes("shared-anon", &[]);
}

/// The FPU state a system call keeps in the vCPU's registers (no `xsave` per call in the
/// trusted mode): every register — xmm/ymm/zmm, opmasks, MXCSR, the x87 control word — is
/// unchanged after patched calls on several threads, calls that block and switch threads,
/// signals whose handler changes every register, and `fork` (in the child too).
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn fpu_state_survives_calls_switches_signals_and_fork() {
    same_in_both_modes("fpu-kept", &[]);
}

/// The host's busybox.
const BUSYBOX: &str = "/bin/busybox";

/// The busybox script of `busybox_script.rs` (pipes, redirections, subshells, applets).
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/busybox.sh")
}

/// A busybox shell script (init execs nothing; its children run in user sandboxes) and a
/// pipeline: the same output and status as natively, in both modes.
#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn busybox_script_in_process() {
    let native_dir = TempDir::unique("pvmux-trusted", "native");
    let mut cmd = Command::new(BUSYBOX);
    cmd.arg("sh")
        .arg(script())
        .current_dir(&native_dir.0)
        .env("TMPDIR", &native_dir.0);
    let native = run_clean(cmd, TIMEOUT);
    let root = TempDir::unique("pvmux-trusted", "busybox");
    std::fs::create_dir(root.0.join("bin")).expect("mkdir bin");
    std::fs::create_dir(root.0.join("tmp")).expect("mkdir tmp");
    std::fs::copy(BUSYBOX, root.0.join("bin/busybox")).expect("copy busybox");
    std::fs::copy(script(), root.0.join("script.sh")).expect("copy script");
    for opts in [&[][..], &[TRUSTED][..]] {
        let g = guest(&root.0, 2, opts, "/bin/busybox", &["sh", "/script.sh"]);
        assert_same(&format!("busybox script {opts:?}"), &native, &g);
        let pipe = [
            "sh",
            "-c",
            "echo hello | wc -c; exec /bin/busybox sh -c 'exit 9'",
        ];
        let g = guest(&root.0, 2, opts, "/bin/busybox", &pipe);
        assert_eq!(g.stdout, "6\n", "{opts:?}: stderr:\n{}", g.stderr);
        assert_eq!(g.code(), Some(9), "{opts:?}: {}", g.stderr);
    }
}

/// A busy in-process init is preempted by the slice timer (on 1 vCPU its child gets to run)
/// and interrupted by a signal sent from another vCPU (on 2): it takes the signal as it does
/// natively and in the default mode.
#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn busy_init_is_preempted_and_signalled() {
    let busy = [
        "sh",
        "-c",
        "trap 'echo got; exit 3' ALRM; (sleep 0.3; kill -ALRM $$) & while :; do :; done",
    ];
    let mut cmd = Command::new(BUSYBOX);
    cmd.args(busy);
    let native = run_clean(cmd, TIMEOUT);
    assert_eq!((native.stdout.as_str(), native.code()), ("got\n", Some(3)));
    let root = TempDir::unique("pvmux-trusted", "busy");
    std::fs::create_dir(root.0.join("bin")).expect("mkdir bin");
    std::fs::copy(BUSYBOX, root.0.join("bin/busybox")).expect("copy busybox");
    for vcpus in [1, 2] {
        for opts in [&[][..], &[TRUSTED][..]] {
            let g = guest(&root.0, vcpus, opts, "/bin/busybox", &busy);
            assert_same(&format!("busy init, {vcpus} vCPUs, {opts:?}"), &native, &g);
        }
    }
}
