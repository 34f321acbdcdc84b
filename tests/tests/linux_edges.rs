//! Linux edge cases a guest program can run into (issue 9): `lseek` offsets that overflow,
//! `open` with access mode 3, `RLIMIT_CORE`, `clone` with unwritable thread-id pointers, and
//! `clone` racing `exit_group` in another thread; the scheduling-policy calls, `personality`,
//! `mincore` and System V shared memory. `tests/programs/c/edge_cases.c` checks each
//! one; it runs natively and under `pvmux run --rootfs` (glibc, and musl where built; 1 and 4
//! vCPUs), and both runs must print the same lines and exit 0.
//!
//! pvmux never writes a core dump, so it reports `RLIMIT_CORE` as 0/0: the native run is
//! started with `ulimit -c 0` (soft and hard) to be the Linux it is compared with.

use std::process::Command;
use std::time::Duration;

use pvmux_tests::{prog, run_clean, Run, TempDir};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Longest any single run may take (generous: the machine is loaded).
const TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `cmd` with null stdin and a clean environment, killing it after [`TIMEOUT`].
fn run(cmd: Command) -> Run {
    run_clean(cmd, TIMEOUT)
}

/// The program `base` (glibc) and `base-musl` (where built), copied into a fresh root.
fn programs(base: &str) -> (Vec<String>, TempDir) {
    let mut names = vec![base.to_owned()];
    if cfg!(have_musl) {
        names.push(format!("{base}-musl"));
    }
    let root = TempDir::unique("pvmux-linux-edges", base);
    for name in &names {
        std::fs::copy(prog(name), root.0.join(name)).expect("copy program");
    }
    (names, root)
}

/// Runs `/name` under `pvmux run --rootfs root` on each of `vcpus` with `extra` options, and
/// checks that it printed what the native run `native` printed and exited 0.
fn guest_matches_native(name: &str, root: &TempDir, native: &Run, vcpus: &[u32], extra: &[&str]) {
    for vcpus in vcpus {
        let mut cmd = Command::new(PVMUX);
        cmd.arg("run")
            .arg(format!("--vcpus={vcpus}"))
            .args(extra)
            .arg("--rootfs")
            .arg(&root.0)
            .arg("--")
            .arg(format!("/{name}"));
        let g = run(cmd);
        assert_eq!(
            g.stdout, native.stdout,
            "{name} on {vcpus} vCPUs {extra:?}: guest stdout differs from the native run \
             (guest stderr:\n{})",
            g.stderr
        );
        assert_eq!(g.code(), Some(0), "{name} on {vcpus} vCPUs:\n{}", g.stderr);
    }
}

/// Runs each build of program `base` ([`programs`]) natively, which must exit 0 having
/// printed the line `marker` (the reference is what it means to be), then in the guest on
/// 1 and 2 vCPUs ([`guest_matches_native`]). Returns the root holding the builds.
fn each_build_matches_native(base: &str, marker: &str) -> TempDir {
    let (names, root) = programs(base);
    for name in &names {
        let n = run(Command::new(prog(name)));
        assert_eq!(n.code(), Some(0), "native {name}:\n{}", n.context());
        assert!(n.has_line(marker), "native {name}:\n{}", n.stdout);
        guest_matches_native(name, &root, &n, &[1, 2], &[]);
    }
    root
}

#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn lseek_open_rlimit_and_clone_edge_cases_behave_as_on_linux() {
    let (names, root) = programs("edge-cases");
    for name in &names {
        let mut native = Command::new("/bin/sh");
        native
            .arg("-c")
            .arg("ulimit -c 0 && exec \"$0\"")
            .arg(prog(name));
        let n = run(native);
        assert_eq!(n.code(), Some(0), "native {name}:\n{}", n.context());
        assert!(n.has_line("failures: 0"), "native {name}:\n{}", n.stdout);
        guest_matches_native(name, &root, &n, &[1, 4], &[]);
    }
}

/// `tests/programs/c/sched_persona.c`: the scheduling-policy calls (`sched_setscheduler`
/// and friends, with `SCHED_RESET_ON_FORK` and their errors), `personality` (kept across
/// `fork` and `execve`), `mincore` (a touched page, an untouched one, a dropped one, and
/// the errors) and `mlockall`'s flags, against the native run. (musl's wrappers of the
/// policy calls are `ENOSYS` stubs natively and in the guest alike.) Then, in the guest
/// only: the real-time policies are `EPERM` (no real-time scheduling in the guest),
/// `mlockall` succeeds, personalities the guest does not emulate are `EINVAL`, and
/// `sethostname`/`setdomainname` rename the guest (`uname`, `/proc/sys/kernel/hostname`),
/// within 64 bytes and with `CAP_SYS_ADMIN`.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn scheduling_policies_personality_and_mincore_behave_as_on_linux() {
    let root = each_build_matches_native("sched-persona", "touched page: 1");
    let mut cmd = Command::new(PVMUX);
    cmd.args(["run", "--rootfs"])
        .arg(&root.0)
        .args(["--", "/sched-persona", "guest"]);
    let g = run(cmd);
    assert_eq!(
        (g.code(), g.stdout.as_str()),
        (
            Some(0),
            "set fifo: -1 EPERM\nset rr: -1 EPERM\npolicy: 0\nmlockall: 0\nmunlockall: 0\n\
             set linux32: -1 EINVAL\nset read-implies-exec: -1 EINVAL\npersonality: 0\n\
             sethostname: 0\nnodename: pvmux-test\nproc hostname: pvmux-test\n\
             sethostname 65 bytes: -1 EINVAL\nsetdomainname: 0\ndomainname: example\n\
             unprivileged sethostname: -1 EPERM\n"
        ),
        "{}",
        g.context()
    );
}

/// `tests/programs/c/sysv_shm.c`: System V shared memory (a private segment shared with a
/// `fork` child, keys with `IPC_CREAT`/`IPC_EXCL`, `IPC_STAT`'s sizes, attach counts and
/// modes, `IPC_SET`, detaching, `SHM_RDONLY`, `SHM_REMAP`, `SHM_RND`, removal while
/// attached, `IPC_INFO`, the errors, and `/proc/self/maps` naming the segment), against the
/// native run. Before, every call was `ENOSYS` (PostgreSQL could not start).
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn system_v_shared_memory_behaves_as_on_linux() {
    each_build_matches_native("sysv-shm", "parent sees: from the child");
}

/// `tests/programs/c/chroot_rules.c`: `chroot` — absolute paths, absolute and relative
/// links and `..` stay in the new root, the working directory is left outside
/// (`getcwd`'s `(unreachable)`), a descriptor opened before still leads out, a child inherits
/// the root, a second `chroot` relative to the first, and the errors (`ENOENT`, `ENOTDIR`,
/// `EPERM` without `CAP_SYS_CHROOT`, `EACCES` first for an unsearchable directory) — against
/// the native run. Before, `chroot` was `ENOSYS` (`chroot DIR CMD`, build chroots, sshd's
/// privilege separation).
#[test]
#[cfg_attr(
    not(all(have_static_glibc, have_root, have_user_nobody)),
    ignore = "needs a static glibc, root and the user nobody for the native run"
)]
fn chroot_confines_paths_as_on_linux() {
    each_build_matches_native("chroot-rules", "chroot done: 1");
}

/// `tests/programs/c/sysv_sem.c`: System V semaphores — keys and sizes, `SETVAL`/`SETALL`
/// and the `GET*` commands, the status, `IPC_SET`, `IPC_INFO`/`SEM_INFO`, atomic operations
/// (a step that would block leaves the others undone), `IPC_NOWAIT`, the range and size
/// errors, waiters counted by `GETNCNT`/`GETZCNT` and released by another process,
/// `semtimedop`'s timeout, `SEM_UNDO` applied at exit (clamped, cleared by `SETVAL`),
/// `EINTR` despite `SA_RESTART`, `EIDRM` for a waiter whose set is removed, another user's
/// rights — against the native run. Before, every call was `ENOSYS` (`ipcmk -S`, Perl's
/// `IPC::Semaphore`, PHP's and Apache's `sysvsem` failed).
#[test]
#[cfg_attr(
    not(all(have_static_glibc, have_root, have_user_nobody)),
    ignore = "needs a static glibc, root and the user nobody for the native run"
)]
fn system_v_semaphores_behave_as_on_linux() {
    each_build_matches_native("sysv-sem", "semaphores done: 1");
}

/// `tests/programs/c/sysv_msg.c`: System V message queues — keys, the selection rules of
/// `msgrcv` (any, a type, `MSG_EXCEPT`, the lowest type up to a bound), `E2BIG` and
/// `MSG_NOERROR`, empty messages, the size limits, the status, `IPC_SET` of the byte limit
/// (a full queue: `EAGAIN`, a sender waiting for room), `IPC_INFO`/`MSG_INFO`, a receiver
/// waiting for its type, `EINTR` despite `SA_RESTART`, `EIDRM`, another user's rights —
/// against the native run. Before, every call was `ENOSYS` (`ipcmk -Q`, Perl's `IPC::Msg`).
#[test]
#[cfg_attr(
    not(all(have_static_glibc, have_root, have_user_nobody)),
    ignore = "needs a static glibc, root and the user nobody for the native run"
)]
fn system_v_message_queues_behave_as_on_linux() {
    each_build_matches_native("sysv-msg", "queues done: 1");
}

/// `tests/programs/c/sched_attr.c`: `sched_setattr` and `sched_getattr` with the normal
/// policies — the struct read back, a nice value and `SCHED_BATCH` with
/// `SCHED_FLAG_RESET_ON_FORK` seen by `getpriority` and `sched_getscheduler`,
/// `SCHED_FLAG_KEEP_POLICY` and `KEEP_PARAMS` (which keeps the policy too, as Linux), the size
/// rules (`E2BIG` with the kernel's size written back) and the errors — against the native
/// run (`ENOSYS` before).
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn sched_setattr_and_getattr_behave_as_on_linux() {
    each_build_matches_native("sched-attr", "sched attr done: 1");
}

/// `tests/programs/c/openat2_rules.c`: `openat2` — `struct open_how`'s checks (sizes,
/// trailing bytes, unknown flags, a mode without `O_CREAT`, `O_PATH`'s flags, conflicting
/// and cached resolves) and the lookup restrictions in a tree under `/tmp`:
/// `RESOLVE_BENEATH` (`..`, absolute paths, escaping links: `EXDEV`), `RESOLVE_IN_ROOT` (the
/// same paths resolved inside), `RESOLVE_NO_SYMLINKS` (`O_PATH | O_NOFOLLOW` of a link
/// itself), `RESOLVE_NO_MAGICLINKS` (`/proc/self/fd/N`) and `RESOLVE_NO_XDEV` (`/proc`) —
/// against the native run (`ENOSYS` before).
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn openat2_resolves_as_on_linux() {
    each_build_matches_native("openat2-rules", "openat2 done: 1");
}

/// `tests/programs/c/exec_at.c`: `execveat` — the program re-executed through a descriptor
/// (`AT_EMPTY_PATH`, glibc's `fexecve`), relative to a directory descriptor and to
/// `AT_FDCWD` (each new image's `AT_EXECFN` and `/proc/self/exe`), a script through a
/// descriptor (`ENOENT` when it is close-on-exec) and the errors — against the native run
/// (`ENOSYS` before).
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn execveat_behaves_as_on_linux() {
    each_build_matches_native("exec-at", "exec at done: 1");
}

/// `tests/programs/c/madvise_fork.c`: what `fork` copies after `madvise` — a
/// `MADV_WIPEONFORK` region empty in the child (the parent keeps its bytes), a
/// `MADV_DONTFORK` one absent (`SIGSEGV`, no `/proc/self/maps` line), each undone by
/// `MADV_KEEPONFORK`/`MADV_DOFORK`, parts of a region — and the errors, against the native
/// run (all accepted and ignored before: a child saw its parent's bytes).
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn what_fork_copies_follows_madvise_as_on_linux() {
    each_build_matches_native("madvise-fork", "madvise fork done: 1");
}

/// `tests/programs/c/pidfd_ops.c`: process file descriptors and `clone3` — `pidfd_open` and
/// its errors, `poll`/`epoll` readiness at a child's exit and after its reaping,
/// `pidfd_send_signal`, `waitid(P_PIDFD)` (blocking, `WNOHANG`, a non-blocking pidfd's
/// `EAGAIN`), fdinfo's `Pid:` line, `pidfd_getfd`, `CLONE_PIDFD` through `clone` and `clone3`
/// (close-on-exec, not in the child's table), `CLONE_CLEAR_SIGHAND` and `clone3`'s argument
/// checks — against the native run (all `ENOSYS` before).
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn pidfds_and_clone3_behave_as_on_linux() {
    each_build_matches_native("pidfd-ops", "pidfd done: 1");
}

/// `tests/programs/c/file_map_refill.c`: pages of a private file mapping that its `mmap`
/// did not fill come from the file at their first touch — grown by `mremap` (in place and
/// moved), dropped by `MADV_DONTNEED` after a private write, past the file's end when mapped
/// and inside it after the file grew — for a memfd, a file in `/tmp` and the program's own
/// executable (a host ELF file: the image cache's region, grown as data and as code); pages
/// wholly past the end stay `SIGBUS`. Against the native run (the guest gave zeros before).
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn private_file_pages_not_filled_by_mmap_come_from_the_file() {
    each_build_matches_native("file-map-refill", "refill done: 1");
}

/// `tests/programs/c/mremap_regions.c`: `mremap` over what Linux holds as one region — a
/// mapping grown a page at a time (APT's package cache; the second grow was `EFAULT`, and
/// `apt-get` stopped with "Dynamic MMap ran out of room"), neighbours made by separate `mmap`
/// calls, a range split by `mprotect` and joined again — and over neighbours that differ
/// (rights, private against shared, file offsets that do not follow: `EFAULT`), growing in
/// place and back, and the heap after 50 `brk` calls (one `[heap]` line in
/// `/proc/self/maps`), against the native run.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn mremap_joins_regions_as_linux_merges_them() {
    each_build_matches_native("mremap-regions", "two neighbours grown: 0");
}

/// `tests/programs/c/io_priority.c`: `ioprio_set`/`ioprio_get` (both `ENOSYS` before:
/// `ionice` failed) — the classes and levels, the real-time class as root and not as
/// another user, the errors, inheritance by a child and a thread, a process group's best and
/// a group set, another user's process — against the native run.
#[test]
#[cfg_attr(
    not(all(have_static_glibc, have_root, have_user_nobody)),
    ignore = "needs a static glibc (apt-get install libc6-dev), to run as root, and a user nobody"
)]
fn io_priorities_behave_as_on_linux() {
    each_build_matches_native("io-priority", "root's after: 16386");
}

/// `tests/programs/c/net_devices.c`: the loopback device as glibc's and musl's
/// `if_nametoindex`, `if_indextoname`, `if_nameindex` and `getifaddrs` report it, the
/// `SIOCGIF*` ioctls on `AF_INET` and `AF_UNIX` sockets (`SIOCGIFCONF` among them), and a
/// `NETLINK_ROUTE` socket used by hand (port ids, a link by index with its acknowledgement,
/// lengths peeked with `MSG_PEEK|MSG_TRUNC`, address dumps, errors, a change refused to
/// `nobody`), against the native run; only what is about `lo` is printed. Before, netlink
/// sockets were `EAFNOSUPPORT` and the ioctls `ENOTTY`.
#[test]
#[cfg_attr(
    not(all(have_static_glibc, have_root, have_user_nobody)),
    ignore = "needs a static glibc (apt-get install libc6-dev), to run as root, and a user nobody"
)]
fn network_devices_are_reported_as_on_linux() {
    each_build_matches_native("net-devices", "SIOCSIFMTU by nobody: -1 EPERM");
}

/// `tests/programs/c/process_vm.c`: `process_vm_readv`/`process_vm_writev` (`ENOSYS`
/// before) between a parent and its child — scattered iovecs on both sides, a write into a
/// page the two share copy-on-write (the parent's copy unchanged), the caller itself, a
/// transfer stopped by an unmapped range (the bytes before it, or `EFAULT`), bad flags, a
/// reaped pid, and `nobody` refused root's process — against the native run.
#[test]
#[cfg_attr(
    not(all(have_static_glibc, have_root, have_user_nobody)),
    ignore = "needs a static glibc (apt-get install libc6-dev), to run as root, and a user nobody"
)]
fn process_vm_reads_and_writes_behave_as_on_linux() {
    each_build_matches_native(
        "process-vm",
        "child sees: written by the parent / second page / also written",
    );
}

/// `tests/programs/c/chmod_mlock2.c`: `fchmodat2` (a file's mode through a link and not,
/// a link's own mode `EOPNOTSUPP`, `AT_EMPTY_PATH`, an unknown flag) and `mlock2`'s flags,
/// the calls newer C libraries make (both `ENOSYS` before), against the native run.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn fchmodat2_and_mlock2_behave_as_on_linux() {
    each_build_matches_native("chmod-mlock2", "the link itself: -1 EOPNOTSUPP");
}

/// `tests/programs/c/thread_rounds.c` under a task limit with room for init, one child and
/// its six threads and no more: a child's threads leave the count when they exit, before its
/// parent's `waitpid` returns, so every round's threads start (natively, and in the guest on
/// 1 and 2 vCPUs). Before the fix, a thread counted until its kernel thread was freed, later:
/// 34 of 300 rounds failed, and `clone racing exit_group` above failed now and then.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn a_waited_for_child_s_threads_no_longer_count_against_the_task_limit() {
    let (names, root) = programs("thread-rounds");
    for name in &names {
        let n = run(Command::new(prog(name)));
        assert_eq!(n.code(), Some(0), "native {name}:\n{}", n.context());
        assert!(
            n.has_line("300 rounds of 6 threads: 0 failed"),
            "native {name}:\n{}",
            n.stdout
        );
        guest_matches_native(name, &root, &n, &[1, 2], &["--pids-limit=8"]);
    }
}
