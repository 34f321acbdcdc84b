//! Regression tests for what a new user hit first (issue 9): shared anonymous memory across
//! `fork`, how a program's death is reported, signal information, CPU-time accounting,
//! `ppoll`/`pselect6` signal masks, the rules of `sigaltstack` and `sigaction`, `futex`
//! operations, `execve`'s rules, the path calls' rules, `poll`/`select`, and the random
//! sources. Each runs a static C program of `tests/programs/c/` (glibc, and musl where
//! built) under `pvmux run --rootfs`, and compares with the native run of the same program
//! where the behaviour is Linux's.

use std::process::Command;
use std::time::Duration;

use pvmux_tests::{prog, run_clean, run_native, variants, Run, TempDir};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Longest any single run may take (generous: the machine is loaded).
const TIMEOUT: Duration = Duration::from_secs(120);

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
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
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

/// `kill`, `tgkill`/`tkill`, `sigqueue`, `SIGCHLD`, `sigwaitinfo`/`sigtimedwait` and
/// `waitid` fill in `si_pid`, `si_uid`, `si_code`, `si_status` and `si_value` as Linux does;
/// real-time signals queue, standard ones merge; `rt_sigqueueinfo` cannot forge `SI_USER`.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn siginfo_names_the_sender() {
    same_as_native("siginfo");
}

/// `ppoll`, `pselect` and `sigsuspend` apply their signal mask for the duration of the wait
/// and restore it after, the handler of a signal they let through running first.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn ppoll_pselect_and_sigsuspend_apply_their_mask() {
    same_as_native("sigmask-wait");
}

/// `sigaltstack` (what it reports and refuses, `SS_AUTODISARM`, inheritance by `fork` but
/// not threads), handlers on the alternate stack, `SA_RESETHAND`, `SA_NODEFER`, the masks
/// `sigaction` and `sigprocmask` store and the frame's `uc_stack`/`uc_sigmask`/`oldmask` are
/// Linux's.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn sigaltstack_and_sigaction_follow_linux_rules() {
    same_as_native("signal-rules");
}

/// `futex` called directly: `FUTEX_WAKE_OP` performs its operation on the second word and
/// wakes there only when the comparison passes, with Linux's errors; a wake count of 0 wakes
/// one; stray bits and misplaced `FUTEX_CLOCK_REALTIME` are `ENOSYS`; private and shared
/// keys of shared memory differ.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn futex_operations_follow_linux() {
    same_as_native("futex-ops");
}

/// `execve`: an empty argv, `MAX_ARG_STRLEN`, malformed executables (`ENOEXEC`), `#!` lines
/// split as Linux splits them, and the auxiliary vector the new program finds.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn execve_follows_linux_rules() {
    same_as_native("exec-rules");
}

/// The `*at` calls' conventions (absolute paths, bad or non-directory `dirfd`,
/// `AT_EMPTY_PATH`), `open`'s flags (access mode 3, `O_RDONLY|O_TRUNC`, `O_PATH`,
/// `O_TMPFILE`) and the errnos of `mknod`, `unlinkat`, `linkat`, `renameat2`, `utimensat`.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn path_calls_follow_linux_rules() {
    same_as_native("path-rules");
}

/// `poll` and `select` on pipes and closed descriptors, `select`'s timeout and `nfds`.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn poll_and_select_follow_linux_rules() {
    same_as_native("poll-rules");
}

/// `getrusage` (self, children, thread), `wait4`'s rusage, `times`, `SIGCHLD`'s `si_utime` and
/// the CPU-time clocks report real, consistent CPU time.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn cpu_time_is_accounted() {
    same_as_native("cputime");
}

/// `getrandom`, `/dev/urandom`, `/dev/random` and `AT_RANDOM` give fresh random bytes, and
/// `AT_RANDOM` differs on every exec.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn random_sources_are_random() {
    same_as_native("random-sources");
}

/// What `fatal --report MODE` printed: `signal N code C addr A ip I err E trapno T`, parsed.
#[derive(Debug, PartialEq, Eq)]
struct Reported {
    signal: i32,
    code: i32,
    addr: u64,
    ip: u64,
    err: u64,
    trapno: u64,
}

fn parse_report(run: &Run) -> Reported {
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("signal "))
        .unwrap_or_else(|| panic!("no report line:\n{}{}", run.stdout, run.stderr));
    let w: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize| {
        let s = w[i];
        match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).expect("hex"),
            None => s.parse().expect("number"),
        }
    };
    Reported {
        signal: num(1) as i32,
        code: num(3) as i32,
        addr: num(5),
        ip: num(7),
        err: num(9),
        trapno: num(11),
    }
}

/// A fatal fault gets Linux's siginfo and sigcontext (compared with the native run), Linux's
/// kernel log line (`--log debug`), and one line on `pvmux run`'s stderr naming the program,
/// the signal and the fault — with the exit status 128 + the signal.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn fatal_faults_are_reported_like_linux() {
    let names = variants("fatal");
    let root = rootfs(&names);
    let name = &names[0];
    for (mode, signal, what) in [
        ("segv-write", 11, "segfault"),
        ("segv-read", 11, "segfault"),
        ("segv-ro", 11, "segfault"),
        ("segv-mprotect", 11, "segfault"),
        ("segv-fork-ro", 11, "segfault"),
        ("gp", 11, "general protection fault"),
        ("ud", 4, "invalid opcode"),
        ("div", 8, "divide error"),
    ] {
        // What the program sees: the same as natively (an mmap'ed page's address aside).
        let n = parse_report(&native(name, &["--report", mode]));
        let mut g = parse_report(&guest(&root, 2, &[], name, &["--report", mode]));
        assert_eq!(n.signal, signal, "{mode}: native signal");
        if mode.starts_with("segv-") && mode != "segv-write" && mode != "segv-read" {
            g.addr = n.addr;
        }
        assert_eq!(g, n, "{mode}: siginfo and sigcontext under pvmux vs native");

        // How its death is reported.
        let nd = native(name, &[mode]);
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&nd.status),
            Some(signal),
            "{mode}: native death"
        );
        let gd = guest(&root, 2, &[], name, &[mode]);
        assert_eq!(gd.code(), Some(128 + signal), "{mode}: {}", gd.stderr);
        assert_eq!(gd.stdout, nd.stdout, "{mode}: stdout");
        let signame = match signal {
            11 => "SIGSEGV",
            4 => "SIGILL",
            _ => "SIGFPE",
        };
        let lines: Vec<&str> = gd.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{mode}: one line on stderr:\n{}", gd.stderr);
        let prefix = format!("pvmux: /{name} (pid 1) killed by {signame}: {what}");
        assert!(lines[0].starts_with(&prefix), "{mode}: {:?}", lines[0]);
        assert!(
            lines[0].contains(&format!(" ip {:#x} ", n.ip)),
            "{mode}: {:?} (native ip {:#x})",
            lines[0],
            n.ip
        );
        if what == "segfault" {
            assert!(
                lines[0].ends_with(&format!(" error {:x}", n.err)),
                "{mode}: {:?} (native error {})",
                lines[0],
                n.err
            );
        }
        if mode == "segv-write" || mode == "segv-read" {
            assert!(
                lines[0].contains(&format!("{what} at {:#x} ", n.addr)) || what != "segfault",
                "{mode}: {:?}",
                lines[0]
            );
        }

        // The kernel log says it the way Linux does.
        let dbg = guest(&root, 2, &["--log=debug"], name, &[mode]);
        let want = match mode {
            "gp" => format!("traps: {name}[1] general protection fault ip:{:x} ", n.ip),
            "ud" => format!("traps: {name}[1] trap invalid opcode ip:{:x} ", n.ip),
            "div" => format!("traps: {name}[1] trap divide error ip:{:x} ", n.ip),
            "segv-ro" | "segv-mprotect" | "segv-fork-ro" => format!("{name}[1]: segfault at "),
            _ => format!("{name}[1]: segfault at {:x} ip {:016x} sp ", n.addr, n.ip),
        };
        assert!(
            dbg.stderr.lines().any(|l| l.starts_with(&want)),
            "{mode}: no kernel log line starting {want:?} in:\n{}",
            dbg.stderr
        );
    }
}

/// A program killed by a signal another process (or itself) sent: the line says who.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn deaths_by_sent_signals_name_the_sender() {
    let names = variants("fatal");
    let root = rootfs(&names);
    let name = &names[0];
    let g = guest(&root, 2, &[], name, &["abort"]);
    assert_eq!(g.code(), Some(128 + 6), "{}", g.stderr);
    assert_eq!(
        g.stderr,
        format!("pvmux: /{name} (pid 1) killed by SIGABRT (sent by itself)\n")
    );
    let g = guest(&root, 2, &[], name, &["term-child"]);
    assert_eq!(g.code(), Some(128 + 15), "{}", g.stderr);
    let child = g
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("child "))
        .unwrap_or_else(|| panic!("no child pid:\n{}", g.stdout));
    assert_eq!(
        g.stderr,
        format!("pvmux: /{name} (pid 1) killed by SIGTERM (sent by pid {child})\n")
    );
}

/// Deaths a user causes on purpose (^C's SIGINT, SIGPIPE), handled faults, normal exits and
/// the death of a child other than init print nothing; the exit status is as natively.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn expected_ends_stay_quiet() {
    let names = variants("fatal");
    let root = rootfs(&names);
    let name = &names[0];
    for (args, code) in [
        (&["int"][..], 128 + 2),
        (&["pipe"], 128 + 13),
        (&["handled"], 3),
        (&["exit", "4"], 4),
        (&["child-segv"], 0),
    ] {
        let n = native(name, args);
        let g = guest(&root, 2, &[], name, args);
        let native_code = n
            .code()
            .or_else(|| std::os::unix::process::ExitStatusExt::signal(&n.status).map(|s| 128 + s));
        assert_eq!(native_code, Some(code), "{args:?}: native");
        assert_eq!(g.code(), Some(code), "{args:?}: {}", g.stderr);
        assert_eq!(g.stdout, n.stdout, "{args:?}");
        assert_eq!(g.stderr, "", "{args:?}: stderr");
    }
}

/// A program that eats all memory is killed by the out-of-memory killer, which logs Linux's
/// line; `pvmux run` says so and suggests a larger `--mem`. When the hog is a child, it is the
/// one killed (the largest), and init carries on.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn out_of_memory_kills_are_reported() {
    let names = variants("oom");
    let root = rootfs(&names);
    let name = &names[0];
    let g = guest(&root, 2, &["--mem=64M"], name, &[]);
    assert_eq!(g.code(), Some(128 + 9), "{}", g.stderr);
    let line = g.stderr.trim_end();
    assert!(
        line.starts_with(&format!(
            "pvmux: /{name} (pid 1) killed: out of memory (it had "
        )) && line.ends_with(" resident; guest memory 64 MiB, try a larger --mem)")
            && !line.contains('\n'),
        "{:?}",
        g.stderr
    );
    let dbg = guest(&root, 2, &["--mem=64M", "--log=debug"], name, &[]);
    let want = format!("Out of memory: Killed process 1 ({name}) total-vm:");
    assert!(
        dbg.stderr
            .lines()
            .any(|l| l.starts_with(&want) && l.contains(" anon-rss:")),
        "no {want:?} in:\n{}",
        dbg.stderr
    );

    let g = guest(&root, 2, &["--mem=64M"], name, &["child"]);
    assert_eq!(g.code(), Some(0), "{}", g.stderr);
    assert_eq!(g.stdout, "child killed by signal 9\n");
    assert_eq!(g.stderr, "");
    let dbg = guest(&root, 2, &["--mem=64M", "--log=debug"], name, &["child"]);
    assert!(
        dbg.stderr
            .lines()
            .any(|l| l.starts_with(&format!("Out of memory: Killed process 2 ({name}) "))),
        "the child is the victim:\n{}",
        dbg.stderr
    );
}

/// Signals sent to a process (`kill`, not `tgkill`) are pending process-wide, as on Linux:
/// taken by a thread that unblocks them after they were sent, seen in every thread's
/// `sigpending` and taken by `sigwaitinfo` in any, kept when the thread that was running
/// exits; a `tgkill`ed signal stays its thread's; a `read` blocked in one thread fails with
/// `EINTR` only if the handler ran in that thread, and goes on when a thread making system
/// calls took the signal (in a guest the other thread takes it in some rounds). The same
/// output as natively, on 1 and 2 vCPUs (the kernel used to queue a process's signal on one
/// thread, chosen when it was sent).
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn process_signals_are_pending_process_wide() {
    let names = variants("signal-shared");
    let root = rootfs(&names);
    for name in &names {
        let n = native(name, &[]);
        assert_eq!(n.code(), Some(0), "{name}: native run: {}", n.stderr);
        for vcpus in [1, 2] {
            let g = guest(&root, vcpus, &[], name, &[]);
            assert_same(&format!("{name} on {vcpus} vCPUs"), &n, &g);
        }
    }
}
