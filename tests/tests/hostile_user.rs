//! Hostile guest user programs: `tests/programs/src/bin/hostile.rs` run as guest processes
//! with `pvmux run --rootfs DIR -- /hostile SUBCOMMAND`, each in its own user sandbox.
//!
//! Every test asserts what the program reports (one line per attempt), the tenant's exit
//! status, that the user sandboxes the tenant spawned are all gone once `pvmux` has exited,
//! and that a normal program still runs in a new tenant afterwards. The security model these
//! tests back is docs/SECURITY.md, "User sandboxes (guest user mode)".

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use pvmux_tests::{prog, run_with_timeout, TempDir};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Longest any single run may take.
const TIMEOUT: Duration = Duration::from_secs(60);
/// `argv[0]` of every sandbox process.
const SANDBOX_ARGV0: &[u8] = b"pvmux-sandbox";
/// Guest memory of most runs, in bytes (`--mem 64M`).
const MEM: u64 = 64 << 20;

/// A rootfs with `/hostile`, `/hello`, `/stress-fork` and an empty `/tmp`.
fn rootfs() -> TempDir {
    let dir = TempDir::unique("pvmux-hostile-user", "rootfs");
    for name in ["hostile", "hello", "stress-fork"] {
        std::fs::copy(prog(name), dir.0.join(name)).expect("copy program");
    }
    std::fs::create_dir(dir.0.join("tmp")).expect("mkdir tmp");
    dir
}

/// What a finished `pvmux run` left (status, stdout and stderr through `Deref`).
struct Run {
    run: pvmux_tests::Run,
    /// Every sandbox the host spawned for the tenant (kernel, user and spare sandboxes), as
    /// its log names them.
    sandboxes: BTreeSet<u32>,
    /// The user sandboxes guest processes ran in (spawned for a process, or a spare given to
    /// one): one per guest process.
    user_processes: BTreeSet<u32>,
}

impl std::ops::Deref for Run {
    type Target = pvmux_tests::Run;

    fn deref(&self) -> &pvmux_tests::Run {
        &self.run
    }
}

/// The host's log filter of every run: warnings, plus the lines in which `pvmux-host` names
/// each sandbox it spawns (`tenant started`, `user sandbox spawned`, `spare user sandbox
/// spawned`, `spare user sandbox assigned`, each with `pid=N`). Reading them is exact where
/// sampling `/proc` misses short-lived sandboxes.
const SANDBOX_LOG: &str = "warn,pvmux_host::tenant=info,pvmux_host::space=debug";

/// The sandboxes named in `pvmux`'s log on `stderr`: `(all, user processes)`.
fn logged_sandboxes(stderr: &str) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let pid = |line: &str| -> Option<u32> {
        let rest = &line[line.find(" pid=")? + 5..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    let (mut all, mut user) = (BTreeSet::new(), BTreeSet::new());
    for line in stderr.lines() {
        let Some(p) = pid(line) else { continue };
        let spare_spawned = line.contains("spare user sandbox spawned");
        if (line.contains("user sandbox spawned") && !spare_spawned)
            || line.contains("spare user sandbox assigned")
        {
            user.insert(p);
        }
        if line.contains("sandbox spawned")
            || line.contains("spare user sandbox assigned")
            || line.contains("tenant started")
        {
            all.insert(p);
        }
    }
    (all, user)
}

/// `argv[0]` of process `pid`, if it exists.
fn argv0(pid: u32) -> Option<Vec<u8>> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(cmdline.split(|&b| b == 0).next().unwrap_or(&[]).to_vec())
}

/// Runs `pvmux run [--mem 64M] [EXTRA...] --rootfs ROOT -- PROGRAM ARGS...` with a clean
/// environment (but for the log filter [`SANDBOX_LOG`]), killing it after [`TIMEOUT`]; the
/// sandboxes it spawned are read from its log.
fn guest(root: &TempDir, extra: &[&str], program: &str, args: &[&str]) -> Run {
    guest_sampled(root, extra, program, args, |_| {})
}

/// [`guest`], calling `sample` with `pvmux`'s pid every 10 ms while it runs.
fn guest_sampled(
    root: &TempDir,
    extra: &[&str],
    program: &str,
    args: &[&str],
    sample: impl FnMut(u32),
) -> Run {
    let mut cmd = Command::new(PVMUX);
    cmd.arg("run");
    if !extra.contains(&"--mem") {
        cmd.args(["--mem", "64M"]);
    }
    cmd.args(extra)
        .arg("--rootfs")
        .arg(&root.0)
        .arg("--")
        .arg(program)
        .args(args);
    let what = format!("{cmd:?}");
    cmd.env_clear().env("RUST_LOG", SANDBOX_LOG);
    let run = run_with_timeout(cmd, &what, TIMEOUT, Duration::from_millis(10), sample);
    let (sandboxes, user_processes) = logged_sandboxes(&run.stderr);
    let run = Run {
        run,
        sandboxes,
        user_processes,
    };
    assert!(
        !run.sandboxes.is_empty(),
        "the log names no sandbox (did pvmux-host's log lines change?)\n{}",
        run.context()
    );
    assert_no_leftover_sandboxes(&run);
    run
}

/// Every sandbox the run spawned is gone (a pid that still exists but is no sandbox any
/// more was reused). A grace period covers the host kernel's own bookkeeping.
fn assert_no_leftover_sandboxes(run: &Run) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<u32> = run
            .sandboxes
            .iter()
            .copied()
            .filter(|&p| argv0(p).is_some_and(|a| a == SANDBOX_ARGV0))
            .collect();
        if alive.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sandboxes {alive:?} outlived their pvmux process\n{}",
            run.context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A normal program runs in a new tenant after a hostile one.
fn assert_new_tenant_works(root: &TempDir) {
    let run = guest(root, &[], "/hello", &["0", "after"]);
    assert_eq!(
        run.code(),
        Some(0),
        "hello after a hostile run\n{}",
        run.context()
    );
    assert!(
        run.has_line("hello from a guest program") && run.has_line("argv[2]: \"after\""),
        "hello output\n{}",
        run.context()
    );
}

/// Runs `/hostile ARGS` and asserts it ended with `hostile: contained`, exit 0, having run
/// at least `min_processes` guest processes, each in its own user sandbox.
fn contained(root: &TempDir, extra: &[&str], args: &[&str], min_processes: usize) -> Run {
    let run = guest(root, extra, "/hostile", args);
    assert!(
        run.has_line("hostile: contained") && run.code() == Some(0),
        "/hostile {args:?}: status {:?}\n{}",
        run.status,
        run.context()
    );
    assert!(
        run.user_processes.len() >= min_processes,
        "/hostile {args:?}: {} user sandbox(es), expected at least {min_processes}\n{}",
        run.user_processes.len(),
        run.context()
    );
    run
}

#[test]
fn host_syscalls_from_a_user_program_are_refused_and_the_canary_is_untouched() {
    let root = rootfs();
    let host = TempDir::unique("pvmux-hostile-user", "canary");
    let canary = host.0.join("canary");
    std::fs::write(&canary, b"host secret\n").expect("write canary");
    let canary_str = canary.to_str().expect("utf-8 temp path");
    let me = std::process::id().to_string();
    let run = contained(&root, &[], &["host-syscalls", canary_str, &me], 1);
    for call in [
        "socket(AF_INET, SOCK_RAW)",
        "ptrace(ATTACH host pid)",
        "kill(host pid, SIGKILL)",
        "open(canary)",
        "open(/../..canary)",
        "open(canary, O_CREAT|O_WRONLY|O_TRUNC)",
        "execve(canary)",
        "userfaultfd",
        "perf_event_open",
        "io_uring_setup",
        "bpf",
        "mount(tmpfs)",
        "reboot(POWER_OFF)",
        "unshare(NEWUSER|NEWNET)",
        "setns(0, 0)",
        "process_vm_readv(host pid)",
        "personality(PER_LINUX32)",
        "x32 getpid",
    ] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(&format!("{call}: refused (errno "))),
            "{call} was not refused\n{}",
            run.context()
        );
    }
    // The 32-bit entry kills the child's sandbox (seccomp), or #GPs without ia32 emulation.
    assert!(
        run.has_line("int 0x80: child killed by signal 9")
            || run.has_line("int 0x80: child killed by signal 11"),
        "{}",
        run.context()
    );
    assert!(!run.stdout.contains("SUCCEEDED") && !run.stdout.contains("host secret"));
    assert_eq!(
        std::fs::read(&canary).expect("canary still there"),
        b"host secret\n"
    );
    assert_eq!(
        std::fs::read_dir(&host.0).expect("canary dir").count(),
        1,
        "nothing was created next to the canary"
    );
    assert_new_tenant_works(&root);
}

#[test]
fn stub_code_can_map_the_user_pool_but_mapping_kernel_memory_kills_only_that_process() {
    let root = rootfs();
    let mem = MEM.to_string();
    let run = contained(&root, &[], &["stub-jump", &mem], 4);
    // The documented weakness: any page of the user pool (here the last page of memory).
    assert!(
        run.stdout.lines().any(|l| l.starts_with(&format!(
            "stub-jump: mmap of pool page {:#x} from stub code mapped it",
            MEM - 4096
        ))),
        "{}",
        run.context()
    );
    // Kernel memory (below the pool): the filter kills the sandbox, the guest kernel
    // reports SIGKILL, and the next fork works.
    for off in ["0x0", "0x200000"] {
        assert!(
            run.has_line(&format!(
                "stub-jump: kernel-memory child (offset {off}) killed by signal 9"
            )),
            "{}",
            run.context()
        );
    }
    // What a template's child may do before its lock filter, and tgkill: killed, from a
    // spawned sandbox and from a template's child alike.
    for name in [
        "clone-fork",
        "clone-thread",
        "close-ctl",
        "mmap-ctl",
        "timer_create",
        "sigaltstack",
        "gettid",
        "getpid",
        "wait4",
        "arch_prctl-set-gs",
        "tgkill",
    ] {
        assert!(
            run.has_line(&format!("stub-jump: {name} child killed by signal 9")),
            "{name}\n{}",
            run.context()
        );
    }
    // A fault in stub code: the sandbox ends with the stub's crash record, which the host
    // logs with where the fault was (the child printed where it sent the stub).
    assert!(
        run.has_line("stub-jump: stub-fault child killed by signal 9"),
        "{}",
        run.context()
    );
    let (rip, rsp) = run
        .stdout
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("stub-jump: stub-fault jumps to ")?;
            let (rip, rsp) = rest.split_once(" with rsp ")?;
            Some((rip.to_owned(), rsp.to_owned()))
        })
        .unwrap_or_else(|| panic!("no stub-fault line\n{}", run.context()));
    let logged = format!(
        "; its stub's crash record: a signal raised in stub code: signal 11 (si_code 1) at rip {rip}, \
         rsp {rsp}, address {rsp}, slot "
    );
    assert!(
        run.stderr.lines().any(|l| l.contains("user sandbox ended")
            && l.contains("Exited(124)")
            && l.contains(&logged)),
        "{logged}\n{}",
        run.context()
    );
    assert!(run.has_line("stub-jump: normal child exited 0"));
    assert!(!run.stdout.contains("RETURNED"));
    assert!(
        !run.stderr.contains("crashed"),
        "the tenant is not hurt\n{}",
        run.context()
    );
    assert_new_tenant_works(&root);
}

#[test]
fn context_region_scribbling_kills_only_the_scribbler() {
    let root = rootfs();
    for mode in ["slots", "all"] {
        let run = contained(&root, &["--vcpus", "2"], &["ctx-scribble", mode], 2);
        assert!(
            run.has_line(
                "ctx-scribble: 2 slot(s), writing garbage over 0x480000001000..0x480000009000"
            ) || run.has_line(
                "ctx-scribble: 2 slot(s), writing garbage over 0x480000000000..0x480000009000"
            ),
            "{}",
            run.context()
        );
        assert!(
            run.has_line("ctx-scribble: scribbling child killed by signal 9")
                || run.has_line("ctx-scribble: scribbling child exited 7"),
            "{}",
            run.context()
        );
        assert!(run.has_line("ctx-scribble: normal child exited 0"));
        assert!(!run.stderr.contains("crashed"), "{}", run.context());
    }
    assert_new_tenant_works(&root);
}

#[test]
fn guest_kernel_addresses_are_unmapped_in_a_user_sandbox() {
    let root = rootfs();
    let run = contained(&root, &[], &["read-kernel"], 7);
    for addr in [
        "0x100000000000",
        "0x100000100000",
        "0x120000000000",
        "0x120000200000",
        "0x0",
        "0x400000000000",
        "0x47fffffff000",
    ] {
        assert!(
            run.stdout.lines().any(|l| l.starts_with("read-kernel: ")
                && l.ends_with(&format!(" {addr}: child killed by signal 11"))),
            "reading {addr}\n{}",
            run.context()
        );
    }
    for addr in ["0x100000000000", "0x120000000000"] {
        assert!(run.has_line(&format!(
            "read-kernel: anonymous mapping at {addr}: 0 non-zero word(s) sampled"
        )));
    }
    assert!(!run.stdout.contains("READ"));
    assert_new_tenant_works(&root);
}

/// The fork bomb's first lines: `N children, then fork failed with errno E`, all N reaped.
fn fork_bomb(root: &TempDir, mem: &str) -> (Run, usize) {
    let run = guest(root, &["--mem", mem], "/hostile", &["fork-bomb", "3000"]);
    let n = run
        .stdout
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("fork-bomb: ")?;
            let (n, tail) = rest.split_once(" children, then fork failed with errno ")?;
            matches!(tail, "11" | "12").then(|| n.parse::<usize>().ok())?
        })
        .unwrap_or_else(|| panic!("fork never failed with EAGAIN/ENOMEM\n{}", run.context()));
    (run, n)
}

#[test]
fn a_fork_bomb_is_stopped_cleanly_and_its_sandboxes_are_reaped() {
    let root = rootfs();
    let (run, n) = fork_bomb(&root, "64M");
    assert!(n >= 10, "only {n} children\n{}", run.context());
    assert!(
        run.has_line(&format!("fork-bomb: {n} children killed and reaped")),
        "{}",
        run.context()
    );
    // The bomb itself, its n children and the child forked after the cleanup.
    assert!(
        run.user_processes.len() >= n + 2,
        "{} user sandboxes for {n} children",
        run.user_processes.len()
    );
    // The tenant ends normally (no crash), whatever the final verdict (see the next test).
    assert!(matches!(run.code(), Some(0 | 1)), "{}", run.context());
    assert!(!run.stderr.contains("crashed"), "{}", run.context());
    assert_new_tenant_works(&root);
}

#[test]
fn after_a_fork_bomb_fork_works_again() {
    let root = rootfs();
    let (run, _) = fork_bomb(&root, "64M");
    assert!(
        run.has_line("fork-bomb: fork after cleanup: child exited 0")
            && run.has_line("hostile: contained")
            && run.code() == Some(0),
        "{}",
        run.context()
    );
}

#[test]
fn a_fork_bomb_with_a_large_pool_does_not_panic_the_guest_kernel() {
    // With 256 MiB the task limit (from the kernel heap size) stops the bomb with EAGAIN
    // before the pool or the heap runs out; afterwards fork works again.
    let root = rootfs();
    let (run, _) = fork_bomb(&root, "256M");
    assert!(!run.stderr.contains("crashed"), "{}", run.context());
    assert!(
        run.has_line("fork-bomb: fork after cleanup: child exited 0") && run.code() == Some(0),
        "{}",
        run.context()
    );
}

#[test]
fn a_memory_hog_is_stopped_and_the_kernel_survives() {
    let root = rootfs();
    let run = contained(&root, &[], &["memory-hog"], 2);
    assert!(
        run.has_line("memory-hog: hog child killed by signal 11")
            || run.has_line("memory-hog: hog child killed by signal 9")
            || run.has_line("memory-hog: hog child exited 0"),
        "{}",
        run.context()
    );
    assert!(
        run.has_line("memory-hog: the parent then touched 4 MiB (mmap result 0)"),
        "{}",
        run.context()
    );
    assert_new_tenant_works(&root);
}

#[test]
fn a_spinning_process_does_not_starve_its_siblings() {
    let root = rootfs();
    for vcpus in ["1", "2"] {
        let run = contained(&root, &["--vcpus", vcpus], &["spin-and-check"], 2);
        assert!(
            run.has_line("spin-and-check: spinning child killed by signal 9"),
            "{}",
            run.context()
        );
    }
    assert_new_tenant_works(&root);
}

/// The parent pid of every process whose `argv[0]` is [`SANDBOX_ARGV0`], by pid.
fn sandbox_parents() -> std::collections::BTreeMap<u32, u32> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if argv0(pid).as_deref() != Some(SANDBOX_ARGV0) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        if let Some(ppid) = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse().ok())
        {
            out.insert(pid, ppid);
        }
    }
    out
}

/// Killing a tenant's user sandbox template (an operator's `kill -9`, the OOM killer) kills
/// the sandboxes forked from it with it, as if each were killed: the guest kernel reports
/// those processes killed by SIGKILL, the host says what happened and spawns the spares from
/// then on, the guest's `fork` loop runs to its end, and no sandbox is left behind.
#[test]
fn a_killed_template_takes_its_children_with_it_and_forks_go_on() {
    let root = rootfs();
    let mut killed = None;
    let start = Instant::now();
    let run = guest_sampled(&root, &[], "/stress-fork", &["3000"], |pvmux| {
        if killed.is_some() || start.elapsed() < Duration::from_millis(500) {
            return;
        }
        // The template: a sandbox of this pvmux that is the parent of other sandboxes.
        let parents = sandbox_parents();
        let template = parents
            .iter()
            .find(|&(&p, &pp)| pp == pvmux && parents.values().any(|&q| q == p));
        if let Some((&p, _)) = template {
            // SAFETY: kill(2) on a pid we just found as a sandbox of our own child.
            unsafe { libc::kill(p as i32, libc::SIGKILL) };
            killed = Some(p);
        }
    });
    let spawned = run.stderr.contains("user sandbox template spawned");
    if !spawned {
        eprintln!(
            "no user sandbox template on this host (it needs Linux 6.15 and a tenant whose CPU \
             a cgroup counts): not checked"
        );
        return;
    }
    assert!(
        killed.is_some(),
        "the template was never found\n{}",
        run.context()
    );
    // Seen by the reaper's watch of the template, or by a fork it was asked for.
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("user sandbox template") && l.contains("spares are spawned")),
        "{}",
        run.context()
    );
    // A child whose sandbox died with the template: the host says a sandbox ended that the
    // guest had not destroyed (once).
    if run.stderr.contains("status 0x9") {
        let warned = run
            .stderr
            .matches("a user sandbox ended that its guest kernel had not destroyed")
            .count();
        assert_eq!(warned, 1, "{}", run.context());
    }
    // The loop ran to its end: every child reaped with its own status, but for children
    // whose sandbox died with the template (SIGKILL).
    for line in run
        .stderr
        .lines()
        .filter(|l| l.starts_with("stress-fork: "))
    {
        assert!(
            line.starts_with("stress-fork: child ") && line.ends_with("status 0x9"),
            "{line}\n{}",
            run.context()
        );
    }
    assert!(
        run.has_line("stress-fork: 3000 children forked, each reaped with its own status")
            || (run.code() == Some(1) && run.stderr.contains("status 0x9")),
        "{}",
        run.context()
    );
    assert_new_tenant_works(&root);
}
