//! Issue 10, "the guest kernel survives any program", the process half: attacks by one
//! unprivileged program that used to exhaust the fixed kernel heap and end the whole tenant
//! (exit 124) are now bounded the way Linux bounds them, and the tenant goes on. Each runs a
//! static C program of `tests/programs/c/` (glibc, and musl where built) under
//! `pvmux run --rootfs` and compares with the native run where Linux behaves the same
//! (docs/SECURITY.md, "The guest kernel survives any program — processes").

use std::process::Command;
use std::time::Duration;

use pvmux_tests::{prog, run_clean, run_native, variants, Run, TempDir};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Longest any single run may take (generous: the machine is loaded).
const TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `cmd` with null stdin and a clean environment, killing it after [`TIMEOUT`].
fn run(cmd: Command) -> Run {
    run_clean(cmd, TIMEOUT)
}

/// Runs test program `name` natively with `args`.
fn native(name: &str, args: &[&str]) -> Run {
    run_native(name, args, TIMEOUT)
}

/// A rootfs holding the given test programs at `/NAME`.
fn rootfs(names: &[String]) -> TempDir {
    let dir = TempDir::unique("pvmux-kernel-survives", "rootfs");
    for name in names {
        std::fs::copy(prog(name), dir.0.join(name)).expect("copy program");
    }
    dir
}

/// Runs `/program args...` under pvmux with `root` as its rootfs, 2 vCPUs and the extra
/// `pvmux run` options `opts`.
fn guest(root: &TempDir, opts: &[&str], program: &str, args: &[&str]) -> Run {
    let mut cmd = Command::new(PVMUX);
    cmd.arg("run")
        .arg("--vcpus=2")
        .args(opts)
        .arg("--rootfs")
        .arg(&root.0)
        .arg("--")
        .arg(format!("/{program}"))
        .args(args);
    run(cmd)
}

/// Runs `name args` natively and in a guest and asserts the same stdout and exit status 0.
fn same_as_native(name: &str, args: &[&str]) -> Run {
    let n = native(name, args);
    assert_eq!(
        n.code(),
        Some(0),
        "native {name}:\n{}{}",
        n.stdout,
        n.stderr
    );
    let root = rootfs(&[name.to_owned()]);
    let g = guest(&root, &[], name, args);
    assert_eq!(
        g.stdout, n.stdout,
        "{name}: guest stdout differs from the native run (guest stderr:\n{})",
        g.stderr
    );
    assert_eq!(
        g.code(),
        Some(0),
        "{name}: guest exit status:\n{}",
        g.stderr
    );
    g
}

/// 50,000 SIGSEGVs each left with `siglongjmp` (no `rt_sigreturn`): the kernel keeps
/// nothing per signal frame — the FPU state is in the user frame, as Linux — so the program
/// ends normally (it used to panic the kernel heap after ~13,000). The handler finds the
/// interrupted FPU state in `uc_mcontext.fpregs`, an edit of it is what `rt_sigreturn`
/// restores, and a frame (FPU state included) fits an alternate stack of `AT_MINSIGSTKSZ`
/// bytes (or of `MINSIGSTKSZ`, the least `sigaltstack` takes, where that is more: a host
/// without AVX-512): the same as natively.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn signal_frames_left_by_siglongjmp_cost_the_kernel_nothing() {
    for name in variants("klimits-siglongjmp") {
        let g = same_as_native(&name, &["50000"]);
        assert_eq!(
            g.stdout,
            "caught 50000 of 50000\nhandler saw rounding 1, after return 3\n\
             handler on an alternate stack of AT_MINSIGSTKSZ bytes: ok\n"
        );
    }
}

/// Small mappings without end (a million asked for) stop at `vm.max_map_count` (65,530
/// regions per process) with `ENOMEM`, as natively; at the limit, the `munmap` and
/// `mprotect` that would split a region fail with `ENOMEM`, and work again once mappings are
/// freed. The program reports the count of successful mmaps in units of 64 (the exact count
/// depends on the regions a program starts with, a few more natively than in the guest).
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn small_mmaps_stop_at_max_map_count() {
    for name in variants("klimits-mmaps") {
        let g = same_as_native(&name, &[]);
        assert!(
            g.stdout.starts_with("mmaps 1023 stopped by ENOMEM\n"),
            "{}",
            g.stdout
        );
        let exact: u64 = g
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("exact mmaps: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no count in {:?}", g.stderr));
        // 65,530 + 1 regions at most (Linux's `do_mmap` lets the count reach one more), less
        // the program's own few.
        assert!((65_500..=65_531).contains(&exact), "{exact}");
    }
}

/// `setrlimit`/`getrlimit`/`prlimit` keep a process's limits and enforce `RLIMIT_NOFILE`
/// (`open`/`pipe` `EMFILE`, `dup2` `EBADF`, `F_DUPFD` `EINVAL`, `poll` `EINVAL`), and
/// `fork` inherits them: the same as natively.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn rlimit_nofile_is_kept_enforced_and_inherited() {
    for name in variants("klimits-rlimits") {
        let g = same_as_native(&name, &[]);
        for line in [
            "opened 197, last fd 199, then EMFILE",
            "child NOFILE: soft 10 hard 400",
            "child opened 7 then EMFILE",
        ] {
            assert!(g.has_line(line), "no {line:?} in:\n{}", g.stdout);
        }
    }
}

/// `RLIMIT_NPROC` bounds the tenant's tasks: with a limit of 8, init forks 7 children and
/// the 8th `fork` fails with `EAGAIN`; once they are gone, `fork` works again. Linux exempts
/// root from the limit (the native run as root forks all 64), the guest kernel does not:
/// every guest program runs as uid 0.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn rlimit_nproc_bounds_fork() {
    let names = variants("klimits-rlimits");
    let root = rootfs(&names);
    for name in &names {
        let g = guest(&root, &[], name, &["nproc"]);
        assert_eq!(g.code(), Some(0), "{}", g.stderr);
        assert_eq!(
            g.stdout,
            "NPROC: soft 8 hard 8\nforked 7 then EAGAIN\n\
             fork after the children ended: ok, status 7\n"
        );
    }
}

/// One small tenant (64 MiB: an 8 MiB kernel heap) runs the attacks one after the other in
/// child processes — the signal frames, the mappings (stopped by the limit or the heap's
/// headroom, whichever comes first, never by a panic), the descriptors, a memory hog the
/// out-of-memory killer ends and names — then a normal program, and exits 0.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn the_tenant_goes_on_after_every_attack() {
    let names: Vec<String> = [
        "klimits-spawn",
        "klimits-siglongjmp",
        "klimits-mmaps",
        "klimits-rlimits",
        "oom",
        "hello-c",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let root = rootfs(&names);
    let args = [
        "/klimits-siglongjmp",
        "20000",
        "--",
        "/klimits-mmaps",
        "--",
        "/klimits-rlimits",
        "--",
        "/oom",
        "--",
        "/klimits-mmaps",
        "--",
        "/hello-c",
    ];
    let g = guest(&root, &["--mem=64M", "--log=debug"], "klimits-spawn", &args);
    assert_eq!(g.code(), Some(0), "{}\n{}", g.stdout, g.stderr);
    for line in [
        "caught 20000 of 20000",
        "/klimits-siglongjmp: exited 0",
        "/klimits-mmaps: exited 0",
        "/klimits-rlimits: exited 0",
        "/oom: killed by signal 9",
        "/hello-c: exited 0",
    ] {
        assert!(g.has_line(line), "no {line:?} in:\n{}", g.stdout);
    }
    let mmaps = g.stdout.lines().filter(|l| l.starts_with("mmaps ")).count();
    assert_eq!(mmaps, 2, "{}", g.stdout);
    assert!(
        g.stdout
            .lines()
            .filter(|l| l.starts_with("mmaps "))
            .all(|l| l.ends_with(" stopped by ENOMEM")),
        "{}",
        g.stdout
    );
    assert!(
        g.stderr
            .lines()
            .any(|l| l.starts_with("Out of memory: Killed process ") && l.contains("(oom)")),
        "the hog is named:\n{}",
        g.stderr
    );
}

/// A private mapping of a file larger than the whole kernel heap (40 MiB; the heap of a
/// 256 MiB guest is 32 MiB) is read through one 64 KiB kernel buffer, not a buffer of its
/// size (which panicked the heap): the program sees the file's bytes, as natively.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn a_file_mapping_larger_than_the_kernel_heap_is_read_in_chunks() {
    let names = variants("klimits-mmaps");
    let root = rootfs(&names);
    let page: Vec<u8> = (0..1usize << 20)
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    let mut bytes = page.repeat(40);
    bytes.extend_from_slice(&page[..12_345]);
    let big = root.0.join("big");
    std::fs::write(&big, &bytes).expect("write the file");
    for name in &names {
        let n = native(name, &["file", big.to_str().expect("utf-8 path")]);
        assert_eq!(
            n.code(),
            Some(0),
            "native {name}:\n{}{}",
            n.stdout,
            n.stderr
        );
        assert!(
            n.stdout.starts_with("mapped 41955385 bytes, hash "),
            "{}",
            n.stdout
        );
        let g = guest(&root, &[], name, &["file", "/big"]);
        assert_eq!(g.stdout, n.stdout, "{name}: guest stderr:\n{}", g.stderr);
        assert_eq!(g.code(), Some(0), "{}", g.stderr);
    }
}

/// `RLIMIT_SIGPENDING` bounds queued signals: with a limit of 100, `sigqueue` of a blocked
/// real-time signal fails with `EAGAIN` after 100, and all 100 come back in order. Natively
/// the limit counts every signal queued for the user (root) on the whole host, so the count
/// there is at most 100; the guest's is exactly 100.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn rlimit_sigpending_bounds_queued_signals() {
    let names = variants("klimits-rlimits");
    let root = rootfs(&names);
    for name in &names {
        let n = native(name, &["sigpending"]);
        assert_eq!(n.code(), Some(0), "native {name}:\n{}", n.stderr);
        let queued: u32 = n
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("queued ")?.strip_suffix(" then EAGAIN"))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("native {name}: {:?}", n.stdout));
        assert!(queued <= 100, "{}", n.stdout);
        let g = guest(&root, &[], name, &["sigpending"]);
        assert_eq!(g.code(), Some(0), "{}", g.stderr);
        assert_eq!(
            g.stdout,
            "queued 100 then EAGAIN\ntaken back 100, in order: yes\nsigqueue after: ok\n"
        );
    }
}

/// Eight processes of a 64 MiB tenant map small regions at once, together more than the
/// kernel heap can hold even when it has grown to its most (3/4 of the kernel's 32 MiB): each is stopped with `ENOMEM` — by the heap's
/// headroom (`linux/alloc_guard.rs`) before `vm.max_map_count` — never by a panic; they all
/// exit 0 and the parent maps and touches 1 MiB afterwards. Natively each stops at
/// `vm.max_map_count`, and the program's report is the same.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn processes_mapping_at_once_are_stopped_by_the_heap_headroom() {
    let names = variants("klimits-mmaps");
    let root = rootfs(&names);
    for name in &names {
        let n = native(name, &["procs", "8"]);
        assert_eq!(n.code(), Some(0), "native {name}:\n{}", n.stderr);
        let g = guest(&root, &["--mem=64M"], name, &["procs", "8"]);
        assert_eq!(g.code(), Some(0), "{}", g.stderr);
        assert_eq!(g.stdout, n.stdout, "guest stderr:\n{}", g.stderr);
        assert_eq!(
            g.stdout,
            "8 processes, 8 stopped by ENOMEM, 8 exited 0\nmmap after: ok\n"
        );
        let total: u64 = g
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("total mmaps: "))
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("no total in {:?}", g.stderr));
        // 8 × 65,530 regions do not fit the heap: the headroom check stopped them.
        assert!(total < 8 * 65_000, "{total}");
    }
}
