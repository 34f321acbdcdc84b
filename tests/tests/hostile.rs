//! The adversarial guest suite (`hostile=<case>` on the pv-kernel command line).
//!
//! Every case runs next to a healthy neighbour tenant in the same host and asserts: the host
//! (this test process) stays up with its signal state, tracer and fd count unchanged; the
//! neighbour finishes with its own exit code in bounded time; the hostile tenant is either
//! contained (the kernel prints `hostile: <case> CONTAINED` and exits 0) or ends with a crash
//! report saying why; and nothing outside the sandbox is touched: the canary file in a fresh
//! temporary directory is never created, the directory's existing file is unchanged, no new
//! file appears. Hostile calls aimed at the host use this process's real pid.
//!
//! The tests are serialised (one lock) so the fd count of this process is meaningful; inside a
//! test the tenants run in parallel.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pvmux_host::{Host, Tenant, TenantConfig, TenantOutcome, TenantState};
use pvmux_hypercalls::bootargs::words::Words;
use pvmux_tests::{host, kernel, Capture};

static SERIAL: Mutex<()> = Mutex::new(());

/// What a hostile case must end with.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Exit code 0 and `hostile: <case> CONTAINED` on the console.
    Contained,
    /// A crash report containing every one of these strings.
    Report(&'static [&'static str]),
    /// Some crash report (not a kill by this test after a timeout).
    AnyReport,
    /// Any reported end (an exit with any code, or a crash report), but no hang.
    AnyEnd,
}

struct Case {
    name: String,
    cmdline: String,
    vcpus: u32,
    expect: Expect,
    watchdog: Option<Duration>,
    /// Extra console text that must appear.
    console: Vec<String>,
}

fn case(name: &str, cmdline: &str, vcpus: u32, expect: Expect) -> Case {
    Case {
        name: name.to_owned(),
        cmdline: cmdline.to_owned(),
        vcpus,
        expect,
        watchdog: None,
        console: Vec::new(),
    }
}

impl Case {
    /// The case with console text that must appear too.
    fn console(mut self, text: &str) -> Self {
        self.console.push(text.to_owned());
        self
    }
}

/// The parts of this process's state a hostile guest must not be able to change.
#[derive(Debug, PartialEq, Eq)]
struct HostState {
    /// Open descriptors: number and what each names.
    fds: BTreeSet<(String, String)>,
    status: Vec<String>,
}

impl HostState {
    /// Whether `later` holds nothing this state did not: no descriptor opened since is still
    /// open, and the status lines are the same. A descriptor closed since is no leak (the
    /// previous suite's threads may have been closing it when this one started).
    fn kept_by(&self, later: &HostState) -> bool {
        later.fds.is_subset(&self.fds) && later.status == self.status
    }
}

fn host_state() -> HostState {
    let fds = std::fs::read_dir("/proc/self/fd")
        .expect("fd dir")
        .filter_map(Result::ok)
        .map(|e| {
            let target = std::fs::read_link(e.path())
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), target)
        })
        // The directory handle `read_dir` itself holds.
        .filter(|(_, target)| !(target.starts_with("/proc/") && target.ends_with("/fd")))
        .collect();
    let status = std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .filter(|l| {
            [
                "SigIgn",
                "SigCgt",
                "ShdPnd",
                "TracerPid",
                "NoNewPrivs",
                "Seccomp:",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .map(str::to_owned)
        .collect();
    HostState { fds, status }
}

/// A fresh directory holding one file (`existing`) that must stay as it is; hostile guests
/// aim at `canary` in it.
struct Canary {
    dir: PathBuf,
}

const EXISTING: &str = "pvmux hostile suite: this file must not change\n";

impl Canary {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pvmux-hostile-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("existing"), EXISTING).expect("existing file");
        Self { dir }
    }
    fn path(&self) -> String {
        self.dir.join("canary").to_string_lossy().into_owned()
    }
    fn check(&self) {
        let names: Vec<String> = std::fs::read_dir(&self.dir)
            .expect("temp dir still exists")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["existing"], "files appeared in {:?}", self.dir);
        assert_eq!(
            std::fs::read_to_string(self.dir.join("existing")).expect("existing file"),
            EXISTING
        );
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn launch(host: &Host, c: &Case, canary: &Canary) -> (Tenant, Capture) {
    let console = Capture::default();
    // The case's words, with the host's pid and the canary as typed options.
    let mut words = Words::parse(&c.cmdline).expect("case words parse");
    words.options.host_pid = Some(u64::from(std::process::id()));
    let path = canary.path();
    words.options.canary = Some(&path);
    let mut cfg = TenantConfig::new(
        c.name.clone(),
        kernel(),
        32 << 20,
        c.vcpus,
        words.encode().expect("boot arguments fit"),
        Box::new(console.clone()),
    );
    cfg.watchdog = c.watchdog;
    let tenant = host.launch(cfg).expect("tenant launches");
    (tenant, console)
}

/// Waits for `t` at most `timeout`, killing it after that; returns the outcome and whether
/// this test had to kill it.
fn finish(t: Tenant, timeout: Duration) -> (TenantOutcome, bool) {
    let deadline = Instant::now() + timeout;
    let mut killed = false;
    while matches!(t.state(), TenantState::Created | TenantState::Running) {
        if Instant::now() >= deadline {
            t.kill();
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (t.wait(), killed)
}

/// Runs `cases` in parallel next to a healthy neighbour and checks everything.
fn run_suite(test: &str, cases: Vec<Case>) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = host_state();
    let canary = Canary::new(test);
    {
        let host = host();
        let t0 = Instant::now();
        let neighbour = case("neighbour", "sleep=200 exit=7", 1, Expect::Contained);
        let (good, good_out) = launch(&host, &neighbour, &canary);
        let tenants: Vec<_> = cases
            .iter()
            .map(|c| {
                let (t, out) = launch(&host, c, &canary);
                (c, t, out)
            })
            .collect();
        let (good_outcome, good_killed) = finish(good, Duration::from_secs(20));
        let good_time = t0.elapsed();
        assert!(!good_killed, "the neighbour hung:\n{}", good_out.text());
        assert_eq!(
            good_outcome,
            TenantOutcome::Exited(7),
            "neighbour:\n{}",
            good_out.text()
        );
        assert!(
            good_time < Duration::from_secs(10),
            "the neighbour took {good_time:?}"
        );
        let mut failures = Vec::new();
        for (c, t, out) in tenants {
            let (outcome, killed) = finish(t, Duration::from_secs(20));
            let text = out.text();
            let summary = match &outcome {
                TenantOutcome::Exited(code) => format!("exited {code}"),
                TenantOutcome::ProgramKilled(d) => format!("exited {}: {d}", d.code),
                TenantOutcome::Crashed(r) => {
                    format!("crashed: {}", r.cause)
                }
            };
            println!(
                "{:<40} {summary}{}",
                c.name,
                if killed {
                    " (killed after timeout)"
                } else {
                    ""
                }
            );
            let report = match &outcome {
                TenantOutcome::Crashed(r) => Some(r.to_string()),
                TenantOutcome::Exited(_) | TenantOutcome::ProgramKilled(_) => None,
            };
            let ok = !killed
                && match c.expect {
                    Expect::Contained => {
                        outcome == TenantOutcome::Exited(0)
                            && text.contains(&format!(
                                "hostile: {} CONTAINED",
                                c.cmdline
                                    .split_whitespace()
                                    .find_map(|w| w.strip_prefix("hostile="))
                                    .unwrap_or("")
                            ))
                    }
                    Expect::Report(needles) => report
                        .as_ref()
                        .is_some_and(|r| needles.iter().all(|n| r.contains(n))),
                    Expect::AnyReport => report.is_some(),
                    Expect::AnyEnd => true,
                }
                && c.console.iter().all(|s| text.contains(s.as_str()));
            if !ok {
                failures.push(format!(
                    "case {} ({}): expected {:?}{}, got {summary}{}\n--- report ---\n{}\n--- console ---\n{}",
                    c.name,
                    c.cmdline,
                    c.expect,
                    if c.console.is_empty() { String::new() } else { format!(" with console {:?}", c.console) },
                    if killed { " (hung: killed by the test)" } else { "" },
                    report.unwrap_or_default(),
                    text
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
    canary.check();
    // Threads of the dropped host (a tenant's reaper, its monitor) may still be closing
    // what they held: a leak is what is still open after they had time to finish.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = host_state();
    while !before.kept_by(&after) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        after = host_state();
    }
    assert!(
        before.kept_by(&after),
        "the host process's state changed:\nbefore: {before:#?}\nafter: {after:#?}"
    );
}

#[test]
fn raw_host_syscalls_from_guest_code_are_all_trapped() {
    let mut c = case("syscalls", "hostile=syscalls", 1, Expect::Contained);
    for s in [
        "open(canary, O_CREAT) (nr 2) trapped",
        "openat(AT_FDCWD, canary, O_CREAT) (nr 257) trapped",
        "socket(AF_INET, SOCK_STREAM) (nr 41) trapped",
        "execve(/bin/sh -c 'echo pwned > canary') (nr 59) trapped",
        "ptrace(PTRACE_ATTACH, host) (nr 101) trapped",
        "kill(host, SIGKILL) (nr 62) trapped",
        "mmap(anonymous, RWX) (nr 9) trapped",
        "mprotect(stub text, RWX) (nr 10) trapped",
        "prctl(PR_SET_PDEATHSIG, 0) (nr 157) trapped",
        "seccomp(SET_MODE_STRICT) (nr 317) trapped",
        "clone(SIGCHLD) (a new process) (nr 56) trapped",
        "fork (nr 57) trapped",
        "memfd_create (nr 319) trapped",
        "io_uring_setup (nr 425) trapped",
        "int 0x80 open(canary, O_CREAT) (nr 5) trapped",
        "int 0x80 kill(host, SIGKILL) (nr 37) trapped",
        "raw syscalls all trapped",
    ] {
        c.console.push(s.to_owned());
    }
    run_suite(
        "syscalls",
        vec![c, case("int80", "hostile=int80", 2, Expect::Contained)],
    );
}

#[test]
fn refused_calls_made_from_stub_code_end_the_tenant_with_an_abi_violation() {
    let calls: &[(&str, u64)] = &[
        ("open", 2),
        ("openat", 257),
        ("socket", 41),
        ("execve", 59),
        ("kill", 62),
        ("tgkill", 234),
        ("ptrace", 101),
        ("mmap-anon", 9),
        ("mmap-anon-window", 9),
        ("mmap-ctl-fd", 9),
        ("mmap-over-stub", 9),
        ("mprotect", 10),
        ("pwrite-ctl-fd", 18),
        ("munmap-stub", 11),
        ("clone", 56),
        ("clone-thread", 56),
        ("fork", 57),
        ("io_uring", 425),
        ("memfd", 319),
        ("prctl", 157),
        ("seccomp", 317),
        ("futex-requeue", 202),
    ];
    let mut cases: Vec<Case> = calls
        .iter()
        .map(|&(call, nr)| {
            let needles: &'static [&'static str] = Box::leak(Box::new([
                "ABI violation",
                Box::leak(format!("detail {nr:#x}").into_boxed_str()) as &str,
            ]));
            let mut c = case(
                &format!("stub-syscall:{call}"),
                &format!("hostile=stub-syscall:{call}"),
                1,
                Expect::Report(needles),
            );
            c.console.push("jumping onto the stub syscall".to_owned());
            c
        })
        .collect();
    // exit_group is allowed from stub code: the tenant ends, but not as a clean exit.
    cases.push(case(
        "stub-syscall:exit_group",
        "hostile=stub-syscall:exit_group",
        1,
        Expect::Report(&["exited unexpectedly (status 0)"]),
    ));
    run_suite("stub-syscall", cases);
}

#[test]
fn forged_sigreturn_frames_through_the_stub_restorer_are_contained() {
    let mut cases = vec![
        // All signals blocked, then a refused call: the kernel kills the sandbox (SIGSYS).
        case(
            "sigreturn-mask",
            "hostile=sigreturn-mask",
            1,
            Expect::Report(&["SIGSYS"]),
        ),
        case(
            "sigreturn-bogus-rip",
            "hostile=sigreturn-bogus-rip",
            1,
            Expect::AnyReport,
        ),
        case(
            "sigreturn-bad-stack",
            "hostile=sigreturn-bad-stack",
            1,
            Expect::Report(&["double fault"]),
        ),
        case(
            "sigreturn-cs32",
            "hostile=sigreturn-cs32",
            1,
            Expect::AnyReport,
        ),
        case(
            "sigreturn-no-altstack",
            "hostile=sigreturn-no-altstack",
            1,
            Expect::AnyReport,
        ),
    ];
    for c in &mut cases {
        c.console
            .push("jumping into the stub's signal restorer".to_owned());
    }
    run_suite("sigreturn", cases);
}

#[test]
fn random_jumps_into_stub_entries_are_contained() {
    let cases = (1..=24)
        .map(|seed| {
            let mut c = case(
                &format!("stub-random seed={seed}"),
                &format!("hostile=stub-random seed={seed}"),
                1,
                Expect::AnyEnd,
            );
            // A jump can park the vCPU forever (e.g. in `halt` with events disabled): the
            // watchdog must then end it with a report.
            c.watchdog = Some(Duration::from_secs(1));
            c
        })
        .collect();
    run_suite("stub-random", cases);
}

#[test]
fn bad_hypercall_and_stub_entry_arguments_get_the_documented_errors() {
    let mut args = case("args", "hostile=args", 2, Expect::AnyEnd);
    args.console
        .push("hostile: args all as documented".to_owned());
    let cases = vec![
        args,
        case("extra-vcpus", "hostile=extra-vcpus", 2, Expect::Contained),
        case(
            "panic-bad-address",
            "hostile=panic-bad-address",
            1,
            Expect::Report(&["guest kernel panicked", "invalid address"]),
        ),
        case(
            "iret-bad-frame",
            "hostile=iret-bad-frame",
            1,
            Expect::Report(&["ABI violation", "detail 0x1000"]),
        ),
        case(
            "iret-unaligned-frame",
            "hostile=iret-unaligned-frame",
            1,
            Expect::Report(&["ABI violation"]),
        ),
        case(
            "iret-bad-rip",
            "hostile=iret-bad-rip",
            1,
            Expect::Report(&["ABI violation", "detail 0x4000"]),
        ),
        case(
            "iret-bad-rsp",
            "hostile=iret-bad-rsp",
            1,
            Expect::Report(&["ABI violation"]),
        ),
    ];
    run_suite("args", cases);
}

#[test]
fn shared_page_scribbling_and_hypercall_storms_do_not_hurt_the_host() {
    run_suite(
        "shared",
        vec![
            case("scribble", "hostile=scribble", 3, Expect::AnyEnd),
            case(
                "scribble seed=99",
                "hostile=scribble seed=99",
                2,
                Expect::AnyEnd,
            ),
            case("storm", "hostile=storm", 4, Expect::Contained),
        ],
    );
}

#[test]
fn memory_abuse_is_contained_or_reported() {
    run_suite(
        "memory",
        vec![
            case(
                "double-fault",
                "hostile=double-fault",
                1,
                Expect::Report(&["double fault"]),
            ),
            case(
                "stack-overflow",
                "hostile=stack-overflow",
                1,
                Expect::AnyReport,
            ),
            case("corrupt-pt", "hostile=corrupt-pt", 1, Expect::AnyReport),
            case("map-beyond", "hostile=map-beyond", 1, Expect::Contained),
            // The built-in kernel's read-only pages are shared with every tenant (mapped from
            // the executable): a write through the direct map is the guest's #PF.
            case(
                "write-kernel-text",
                "hostile=write-kernel-text",
                2,
                Expect::Contained,
            )
            .console("the kernel image's pages are read-only (#PF error code 0x3"),
            case("vma-flood", "hostile=vma-flood", 1, Expect::Contained),
            case(
                "oom",
                "hostile=oom",
                1,
                Expect::Report(&["guest kernel panicked", "out of memory"]),
            ),
        ],
    );
}

#[test]
fn a_guest_spinning_with_events_masked_is_ended_by_the_watchdog() {
    let mut c = case(
        "spin-masked",
        "hostile=spin-masked",
        1,
        Expect::Report(&["watchdog"]),
    );
    c.watchdog = Some(Duration::from_millis(300));
    run_suite("spin-masked", vec![c]);
}

/// A kernel running with the alignment-check flag (AC) set calls every stub entry (and takes
/// an event through `irq_enable`), then `iret`s to a stack that is not 8-aligned: stub code
/// runs with AC cleared, so it does not fault on its own unaligned accesses (the `iret` used
/// to end the tenant with a stub fault), and each entry gives the caller its flags back.
#[test]
fn a_kernel_with_the_alignment_check_flag_set_can_call_every_stub_entry() {
    let mut c = case("ac-entries", "hostile=ac-entries", 2, Expect::Contained);
    c.console = vec![
        "hostile: AC set before the calls: true".to_owned(),
        "hostile: irq_enable with a pending event with AC set -> 0 (ok, AC still set on return)"
            .to_owned(),
        "hostile: iret with AC set to an unaligned stack -> landed 1, AC clear (ok)".to_owned(),
    ];
    run_suite("ac-entries", vec![c]);
}

/// Stub entries that change the shadow (`prefault` past the stub's mapping budget, so the
/// whole window is evicted inside the entry; `tlb_flush` of the caller's own stack page;
/// `tlb_flush_all`; `load_root`) unmap the caller's stack while the stub holds its shadow
/// lock: they run on the stub's own stack, so they return instead of deadlocking the vCPU
/// (which used to end the tenant by the watchdog).
#[test]
fn shadow_changing_entries_do_not_deadlock_on_the_callers_stack() {
    let cases = [1, 2]
        .into_iter()
        .map(|vcpus| {
            let mut c = case(
                &format!("evict-in-entry-{vcpus}"),
                "hostile=evict-in-entry",
                vcpus,
                Expect::Contained,
            );
            c.console = vec![
                "tlb_flush of the own stack page -> 0, tlb_flush_all -> 0, load_root -> 0"
                    .to_owned(),
            ];
            c
        })
        .collect();
    run_suite("evict-in-entry", cases);
}
