//! Spawn and lifecycle tests with the hand-assembled stub of [`crate::test_stub`].

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::test_elf::TestElf;
use crate::test_stub::{stub, Behaviour};
use crate::{CrashCause, Host, KernelImage, TenantConfig, TenantOutcome, TenantState};
use core::mem::offset_of;
use pvmux_hypercalls::user::{UserCtxHeader, UserSlot};
use pvmux_hypercalls::Hypercall;

/// A console sink the test can read back.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn config(name: &str, vcpus: u32, console: Capture) -> TenantConfig {
    TenantConfig::new(
        name,
        Arc::new(KernelImage::parse(TestElf::default().build()).unwrap()),
        16 << 20,
        vcpus,
        pvmux_hypercalls::BootArgsBuf::default(),
        Box::new(console),
    )
}

fn run(stub_elf: Vec<u8>, vcpus: u32) -> (TenantOutcome, String) {
    let host = Host::new(&stub_elf).unwrap();
    let cap = Capture::default();
    let t = host.launch(config("t", vcpus, cap.clone())).unwrap();
    assert!(t.sandbox_pid() > 0);
    assert_ne!(t.state(), TenantState::Created);
    let out = t.wait();
    let console = String::from_utf8_lossy(&cap.0.lock().unwrap()).into_owned();
    (out, console)
}

fn crash(out: TenantOutcome) -> Box<crate::CrashReport> {
    match out {
        TenantOutcome::Crashed(r) => r,
        other => panic!("expected a crash, got {other:?}"),
    }
}

#[test]
fn setup_failure_is_reported() {
    let r = crash(run(stub(Behaviour::Exit(125)), 1).0);
    assert!(matches!(r.cause, CrashCause::SetupFailed { .. }), "{r}");
    assert!(
        r.to_string().contains("sandbox start-up failed at step 0"),
        "{r}"
    );
}

#[test]
fn unexpected_exit_is_reported() {
    let r = crash(run(stub(Behaviour::Exit(3)), 2).0);
    assert_eq!(r.cause, CrashCause::UnexpectedExit { status: 3 }, "{r}");
}

#[test]
fn stub_crash_record_is_reported() {
    let r = crash(run(stub(Behaviour::Crash), 2).0);
    let s = r.to_string();
    assert!(
        matches!(
            r.cause,
            CrashCause::Stub {
                reason: 1,
                vector: 14,
                ..
            }
        ),
        "{s}"
    );
    assert!(
        s.contains("#PF, error code 0x6, fault address 0xdead000"),
        "{s}"
    );
    assert!(s.contains("<_start+0x4>"), "{s}");
    assert_eq!(r.vcpu, Some(0));
}

#[test]
fn hypercalls_console_and_shutdown() {
    let (out, console) = run(
        stub(Behaviour::Hypercalls {
            then: Hypercall::Shutdown,
            arg: 0x12a,
        }),
        1,
    );
    assert_eq!(out, TenantOutcome::Exited(42));
    assert_eq!(console, "hello from stub\n");
}

#[test]
fn guest_panic_is_reported() {
    let (out, _) = run(
        stub(Behaviour::Hypercalls {
            then: Hypercall::Panic,
            arg: 0x100000,
        }),
        1,
    );
    let r = crash(out);
    let s = r.to_string();
    assert!(s.contains("guest kernel panicked: hello from stub"), "{s}");
    assert!(s.contains("| hello from stub"), "{s}");
}

#[test]
fn kill_and_drop() {
    let host = Host::new(&stub(Behaviour::Hypercalls {
        then: Hypercall::Nop,
        arg: 0,
    }))
    .unwrap();
    // nr2 = Nop: the stub spins forever after two calls.
    let t = host.launch(config("k", 2, Capture::default())).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(t.state(), TenantState::Running);
    t.kill();
    let r = crash(t.wait());
    assert_eq!(r.cause, CrashCause::KilledByHost);
    // Dropping a running tenant kills and reaps it.
    let t = host.launch(config("d", 1, Capture::default())).unwrap();
    let pid = t.sandbox_pid();
    drop(t);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

/// `Cpus_allowed_list` of process `pid`, from procfs.
fn cpus_allowed(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_owned()
}

/// The kernel sandbox of a tenant launched by a thread confined to one CPU may run on every
/// CPU of the host process (the launch places its spawning thread on another CPU than the
/// caller's, and a sandbox takes the process's CPUs back, `cpu_spread`).
#[test]
fn a_sandbox_runs_on_the_processs_cpus_whoever_launched_it() {
    use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};
    crate::host::warm_up();
    let home = cpus_allowed(std::process::id());
    let host = Host::new(&stub(Behaviour::Hypercalls {
        then: Hypercall::Nop,
        arg: 0,
    }))
    .unwrap();
    let (pid, tenant) = std::thread::spawn(move || {
        let all = sched_getaffinity(None).unwrap();
        let first = (0..CpuSet::MAX_CPU).find(|&c| all.is_set(c)).unwrap();
        let mut one = CpuSet::new();
        one.set(first);
        sched_setaffinity(None, &one).unwrap();
        let t = host.launch(config("cpus", 1, Capture::default())).unwrap();
        (t.sandbox_pid(), t)
    })
    .join()
    .unwrap();
    assert_eq!(cpus_allowed(pid), home);
    tenant.kill();
    let _ = tenant.wait();
}

#[test]
fn bad_stub_and_config() {
    assert!(Host::new(b"nope").is_err());
    let host = Host::new(&stub(Behaviour::Exit(0))).unwrap();
    let mut c = config("x", 0, Capture::default());
    assert!(host.launch(c).is_err());
    c = config("x", 65, Capture::default());
    assert!(host.launch(c).is_err());
    c = config("x", 1, Capture::default());
    c.mem_size = (16 << 20) + 4096;
    assert!(host.launch(c).is_err());
}

/// CPU seconds (user + system) a process has used so far, from `/proc/PID/stat`.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based).
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// The CPU limit is enforced by whatever this host supports: a tenant cgroup's CFS quota
/// (v2 `cpu.max` or v1 `cpu.cfs_quota_us`) of 0.2 CPUs keeps a busy loop to <= ~0.35 s of
/// CPU in 1 s of wall time; without a `cpu` controller, a 1 s budget ends the busy tenant
/// (the monitor's account, or the `RLIMIT_CPU` backstop).
#[test]
fn cpu_limit_is_enforced_by_the_available_mechanism() {
    use crate::limits::{detect_support, Support};
    let host = Host::new(&stub(Behaviour::Hypercalls {
        then: Hypercall::Nop,
        arg: 0,
    }))
    .unwrap(); // spins forever after two calls
    let cpu_controller = match detect_support() {
        Support::V2 { .. } => Ok(()),
        Support::V1(p) if p.cpu.is_some() => Ok(()),
        other => Err(format!("{other:?}")),
    };
    match cpu_controller {
        Ok(()) => {
            let mut c = config("cpu", 1, Capture::default());
            c.cpu_limit = Some(0.2);
            let t = host.launch(c).unwrap();
            let pid = t.sandbox_pid();
            std::thread::sleep(std::time::Duration::from_secs(1));
            let used = cpu_secs(pid);
            t.kill();
            let _ = t.wait();
            eprintln!("tenant cgroup: busy loop used {used:.2} s of CPU in 1 s at --cpus 0.2");
            assert!(used <= 0.35, "{used} s of CPU");
        }
        Err(why) => {
            eprintln!("no cgroup cpu controller here ({why}); testing the budget");
            let mut c = config("cpu", 1, Capture::default());
            c.cpu_limit = Some(0.2);
            c.cpu_seconds = Some(1);
            let start = std::time::Instant::now();
            let t = host.launch(c).unwrap();
            let r = crash(t.wait());
            let elapsed = start.elapsed();
            assert!(
                matches!(r.cause, CrashCause::CpuBudget { .. })
                    || matches!(r.cause, CrashCause::Signal { signo } if signo == libc::SIGXCPU || signo == libc::SIGKILL),
                "{r}"
            );
            assert!(
                elapsed >= std::time::Duration::from_millis(900)
                    && elapsed < std::time::Duration::from_secs(20),
                "{elapsed:?}"
            );
        }
    }
}

/// The watchdog leaves a sandbox that has not started a vCPU (the test stub never marks one
/// online) alone, and a tenant with it still ends normally.
#[test]
fn watchdog_ignores_offline_vcpus() {
    let host = Host::new(&stub(Behaviour::Hypercalls {
        then: Hypercall::Shutdown,
        arg: 0x105,
    }))
    .unwrap();
    let mut c = config("w", 2, Capture::default());
    c.watchdog = Some(std::time::Duration::from_millis(40));
    let t = host.launch(c).unwrap();
    assert_eq!(t.wait(), TenantOutcome::Exited(5));
    let host = Host::new(&stub(Behaviour::Hypercalls {
        then: Hypercall::Nop,
        arg: 0,
    }))
    .unwrap();
    let mut c = config("w", 1, Capture::default());
    c.watchdog = Some(std::time::Duration::from_millis(40));
    let t = host.launch(c).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(t.state(), TenantState::Running);
    t.kill();
    assert_eq!(crash(t.wait()).cause, CrashCause::KilledByHost);
}

/// A crash dump that cannot be written is noted in the report; the crash is still reported.
#[test]
fn failing_crash_dump_never_masks_the_crash() {
    let host = Host::new(&stub(Behaviour::Hypercalls {
        then: Hypercall::Panic,
        arg: 0x100000,
    }))
    .unwrap();
    let mut c = config("dumpfail", 1, Capture::default());
    c.crash_dump = Some("/proc/self/pvmux-cannot-create-this".into());
    let r = crash(host.launch(c).unwrap().wait());
    let s = r.to_string();
    assert!(s.contains("guest kernel panicked: hello from stub"), "{s}");
    assert!(
        s.contains("crash dump to /proc/self/pvmux-cannot-create-this failed"),
        "{s}"
    );
}

/// Polls `f` every 2 ms for up to 10 s.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !f() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "timed out: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// The test stub's second hypercall is `SpaceCreate(8 MiB)` (the pool of a 16 MiB guest): the
/// user sandbox (the same test stub) dies of SIGBUS on its first doorbell write (its control
/// memfd has no vCPU pages), and the host marks it dead in guest memory; the kernel sandbox
/// keeps running.
#[test]
fn a_space_that_dies_is_marked_dead_in_guest_memory() {
    const CTX: u64 = 8 << 20;
    let host = Host::new(&stub(Behaviour::Hypercalls {
        then: Hypercall::SpaceCreate,
        arg: CTX,
    }))
    .unwrap();
    let t = host.launch(config("sp", 2, Capture::default())).unwrap();
    assert_eq!(t.layout().pool_base, CTX);
    let mem = t.guest_memory();
    let field = |off: usize| CTX + off as u64;
    wait_for("death mark", || {
        mem.read_u32(field(offset_of!(UserCtxHeader, dead)))
            .unwrap()
            == 1
    });
    assert_eq!(
        mem.read_u32(field(offset_of!(UserCtxHeader, dead_status)))
            .unwrap(),
        0x100 | libc::SIGBUS as u32
    );
    for i in 0..2 {
        let slot = CTX + pvmux_hypercalls::user::user_slot_offset(i);
        assert_eq!(
            mem.read_u32(slot + offset_of!(UserSlot, exit_reason) as u64)
                .unwrap(),
            pvmux_hypercalls::user::UserExit::Dead as u32
        );
    }
    wait_for("reaped", || t.user_sandbox_pids().is_empty());
    assert_eq!(t.state(), TenantState::Running);
    t.kill();
    assert_eq!(crash(t.wait()).cause, CrashCause::KilledByHost);
}

/// Live user sandboxes die with their tenant however it ends: killed by the host, dropped,
/// or its kernel sandbox dying on its own.
#[test]
fn spaces_end_with_their_tenant() {
    let user = crate::test_stub::spin_forever();
    for how in ["kill", "drop", "exit"] {
        let host = Host::with_user_stub(
            &stub(Behaviour::Hypercalls {
                then: Hypercall::SpaceCreate,
                arg: 8 << 20,
            }),
            &user,
        )
        .unwrap();
        let t = host.launch(config(how, 1, Capture::default())).unwrap();
        wait_for("space spawned", || !t.user_sandbox_pids().is_empty());
        let pids = t.user_sandbox_pids();
        assert_eq!(pids.len(), 1);
        match how {
            "kill" => {
                t.kill();
                let _ = t.wait();
            }
            "drop" => drop(t),
            _ => {
                // The kernel sandbox dies by itself (here: a SIGKILL from outside).
                // SAFETY: kill takes plain integers; the pid is our unreaped child.
                unsafe { libc::kill(t.sandbox_pid() as i32, libc::SIGKILL) };
                let r = crash(t.wait());
                assert_eq!(
                    r.cause,
                    CrashCause::Signal {
                        signo: libc::SIGKILL
                    }
                );
            }
        }
        for p in pids {
            assert!(
                !std::path::Path::new(&format!("/proc/{p}")).exists(),
                "{how}: user sandbox {p} left behind"
            );
        }
    }
}

/// Console input raises `pending::INPUT` on vCPU 0 and is served by `ConsoleRead`: the test
/// stub's second call is `ConsoleRead(0x200000, 16)` (made once, so it may come before the
/// input: then it is `Busy`).
#[test]
fn console_input_reaches_the_guest() {
    use pvmux_hypercalls::vcpu::pending;
    let host = Host::new(&stub(Behaviour::Hypercalls {
        then: Hypercall::ConsoleRead,
        arg: 0x20_0000,
    }))
    .unwrap();
    let mut c = config("in", 1, Capture::default());
    c.console_input = Some(crate::ConsoleInput::Reader(Box::new(std::io::Cursor::new(
        b"typed".to_vec(),
    ))));
    let t = host.launch(c).unwrap();
    let v0 = t.control().vcpu(0).unwrap();
    wait_for("INPUT raised", || {
        v0.pending.load(std::sync::atomic::Ordering::SeqCst) & pending::INPUT != 0
    });
    // The stub's ConsoleRead returned either the bytes (copied into guest memory) or Busy
    // (it ran before the input arrived); both are in its hc_ret.
    wait_for("ConsoleRead answered", || {
        v0.hc_resp.load(std::sync::atomic::Ordering::SeqCst) >= 2
    });
    let ret = v0.hc_ret.load(std::sync::atomic::Ordering::SeqCst) as i64;
    if ret == 5 {
        assert_eq!(t.guest_memory().read_vec(0x20_0000, 5).unwrap(), b"typed");
    } else {
        assert_eq!(ret, pvmux_hypercalls::HcError::Busy.to_ret(), "{ret}");
    }
    t.kill();
    let _ = t.wait();
}
