//! Regression tests for what a new user hit first (issue 9): shared anonymous memory across
//! `fork`, how a program's death is reported, signal information, CPU-time accounting,
//! `ppoll`/`pselect6` signal masks and the random sources. Each runs a static C program of
//! `tests/programs/c/` (glibc, and musl where built) under `pvmux run --rootfs`, and compares
//! with the native run of the same program where the behaviour is Linux's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pvmux_tests::{run_with_timeout, Run, TempDir};

/// The directory holding the static test programs.
const PROG_DIR: &str = env!("PVMUX_PROG_DIR");
/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Longest any single run may take (generous: the machine is loaded).
const TIMEOUT: Duration = Duration::from_secs(120);

fn prog(name: &str) -> PathBuf {
    Path::new(PROG_DIR).join(name)
}

/// The glibc build of C program `name`, and the musl build when musl-gcc was there.
fn variants(name: &str) -> Vec<String> {
    assert!(
        prog(name).exists(),
        "{name} was not built: the host has no static glibc (see the build warning)"
    );
    let musl = format!("{name}-musl");
    if prog(&musl).exists() {
        vec![name.to_owned(), musl]
    } else {
        println!("skipped {musl}: musl-gcc is not installed (see the build warning)");
        vec![name.to_owned()]
    }
}

/// Runs `cmd` with null stdin and a clean environment, killing it after [`TIMEOUT`].
fn run(mut cmd: Command) -> Run {
    let what = format!("{cmd:?}");
    cmd.env_clear();
    run_with_timeout(cmd, &what, TIMEOUT, Duration::from_millis(10), |_| {})
}

/// Runs test program `name` natively with `args`.
fn native(name: &str, args: &[&str]) -> Run {
    let mut cmd = Command::new(prog(name));
    cmd.args(args);
    run(cmd)
}

/// A rootfs holding the given test programs at `/NAME`.
fn rootfs(names: &[String]) -> TempDir {
    let dir = TempDir::unique("pvmux-signals-memory", "rootfs");
    for name in names {
        std::fs::copy(prog(name), dir.0.join(name)).expect("copy program");
    }
    dir
}

/// Runs `/program args...` under pvmux with `root` as its rootfs, `vcpus` vCPUs and the
/// extra `pvmux run` options `opts`.
fn guest(root: &TempDir, vcpus: u32, opts: &[&str], program: &str, args: &[&str]) -> Run {
    let mut cmd = Command::new(PVMUX);
    cmd.arg("run")
        .arg(format!("--vcpus={vcpus}"))
        .args(opts)
        .arg("--rootfs")
        .arg(&root.0)
        .arg("--")
        .arg(format!("/{program}"))
        .args(args);
    run(cmd)
}

/// Asserts that a guest run printed and returned exactly what the native run did.
fn assert_same(what: &str, native: &Run, guest: &Run) {
    assert_eq!(
        guest.stdout, native.stdout,
        "{what}: guest stdout differs from the native run (guest stderr:\n{})",
        guest.stderr
    );
    assert_eq!(
        guest.code(),
        native.code(),
        "{what}: exit status (guest stderr:\n{})",
        guest.stderr
    );
}

/// `MAP_SHARED|MAP_ANONYMOUS` memory stays shared across fork in both directions, touched
/// or not before the fork, through mremap/munmap/mprotect/MADV_DONTNEED, with threads, shared
/// futexes and mutexes, and after another sharer's exec: the same output as natively.
#[test]
fn shared_anonymous_memory_stays_shared() {
    let names = variants("shared-anon");
    let root = rootfs(&names);
    for name in &names {
        let n = native(name, &[]);
        assert_eq!(n.code(), Some(0), "native {name}:\n{}", n.stdout);
        assert!(n.has_line("failures: 0"), "native {name}:\n{}", n.stdout);
        for vcpus in [1, 4] {
            let g = guest(&root, vcpus, &[], name, &[]);
            assert_same(&format!("{name} on {vcpus} vCPUs"), &n, &g);
        }
    }
}

/// A program that checks its own behaviour ("NAME: ok" lines, the failures as exit status)
/// prints and returns under pvmux what it does natively, with glibc and musl, on 1 and 2
/// vCPUs.
fn same_as_native(program: &str) {
    let names = variants(program);
    let root = rootfs(&names);
    for name in &names {
        let n = native(name, &[]);
        assert_eq!(n.code(), Some(0), "native {name}:\n{}", n.stdout);
        assert!(n.has_line("failures: 0"), "native {name}:\n{}", n.stdout);
        for vcpus in [1, 2] {
            let g = guest(&root, vcpus, &[], name, &[]);
            assert_same(&format!("{name} on {vcpus} vCPUs"), &n, &g);
        }
    }
}

/// `getrandom`, `/dev/urandom`, `/dev/random` and `AT_RANDOM` give fresh random bytes, and
/// `AT_RANDOM` differs on every exec.
#[test]
fn random_sources_are_random() {
    same_as_native("random-sources");
}
