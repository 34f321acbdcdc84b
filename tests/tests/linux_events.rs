//! The event and file-copy calls of issue 11: epoll (level- and edge-triggered, one-shot,
//! nested, timeouts, signal masks, waiters woken by threads and children), inotify on a
//! directory and a file, memfd with seals and mappings, and copy_file_range, sendfile,
//! splice, tee and vmsplice between files and pipes.
//!
//! Each C program (`tests/programs/c/{epoll_events,inotify_dir,memfd_copy}.c`) prints what
//! every call returned; it runs natively and under `pvmux run --rootfs /` (glibc, and musl
//! where built; 1 and 2 vCPUs), and both runs must print the same lines and exit 0.

use std::process::Command;
use std::time::Duration;

use pvmux_tests::{prog, run_clean, run_native, variants, Run};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Longest any single run may take (generous: the machine is loaded).
const TIMEOUT: Duration = Duration::from_secs(300);

/// Runs program `name` in a guest with `vcpus` vCPUs, the host's root as its root.
fn guest(name: &str, vcpus: u32) -> Run {
    let mut cmd = Command::new(PVMUX);
    cmd.arg("run")
        .arg(format!("--vcpus={vcpus}"))
        .args(["--rootfs", "/", "--"])
        .arg(prog(name));
    run_clean(cmd, TIMEOUT)
}

/// Asserts that every build of `program` prints the same in a guest as natively.
fn same_as_native(program: &str) {
    for name in variants(program) {
        let n = run_native(&name, &[], TIMEOUT);
        assert_eq!(n.code(), Some(0), "native {name}:\n{}", n.context());
        assert!(n.has_line("done"), "native {name}:\n{}", n.stdout);
        for vcpus in [1, 2] {
            let g = guest(&name, vcpus);
            assert_eq!(
                g.stdout, n.stdout,
                "{name} on {vcpus} vCPUs: guest stdout differs from the native run (guest \
                 stderr:\n{})",
                g.stderr
            );
            assert_eq!(g.code(), Some(0), "{name} on {vcpus} vCPUs:\n{}", g.stderr);
        }
    }
}

#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn epoll_level_edge_oneshot_nested_timeouts_and_errors_as_on_linux() {
    same_as_native("epoll-events");
}

#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn inotify_directory_and_file_events_as_on_linux() {
    same_as_native("inotify-dir");
}

#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn memfd_seals_and_file_copies_as_on_linux() {
    same_as_native("memfd-copy");
}
