//! Per-tenant limits and liveness with real guests: the watchdog stops a tenant whose vCPUs
//! stop taking events and leaves healthy ones alone; a sandbox never has more threads than
//! vCPUs; ordinary console output is not throttled.

use std::io::Write;
use std::time::{Duration, Instant};

use pvmux_host::{CrashCause, Host, TenantConfig, TenantOutcome};
use pvmux_tests::{args, host, kernel, Capture};

fn config(name: &str, cmdline: &str, vcpus: u32, console: Capture) -> TenantConfig {
    TenantConfig::new(
        name,
        kernel(),
        32 << 20,
        vcpus,
        args(cmdline),
        Box::new(console) as Box<dyn Write + Send>,
    )
}

fn launch(host: &Host, cfg: TenantConfig) -> pvmux_host::Tenant {
    let name = cfg.name.clone();
    let t = host.launch(cfg).expect("tenant launches");
    assert!(
        t.wait_started(Duration::from_secs(10)),
        "{name} did not start"
    );
    t
}

#[test]
fn watchdog_leaves_idle_and_busy_guests_alone() {
    let host = host();
    // Idle (halted, sleeping) guest: it takes the heartbeats, for six watchdog periods.
    // (The periods leave room for a loaded host, where a woken vCPU thread may wait a while
    // for a CPU: the watchdog must not fire for that.)
    let mut c = config("idle", "sleep=3000 exit=7", 2, Capture::default());
    c.watchdog = Some(Duration::from_millis(500));
    assert_eq!(launch(&host, c).wait(), TenantOutcome::Exited(7));
    // The selftest (threads, preemption, exceptions, SMP) under a tight watchdog.
    let cap = Capture::default();
    let mut c = config("selftest", "selftest", 2, cap.clone());
    c.watchdog = Some(Duration::from_millis(1000));
    let out = launch(&host, c).wait();
    assert_eq!(out, TenantOutcome::Exited(0), "{}", cap.text());
}

#[test]
fn watchdog_stops_a_tenant_that_takes_no_events() {
    let host = host();
    let mut c = config("stuck", "sleep=30000 exit=0", 2, Capture::default());
    c.watchdog = Some(Duration::from_millis(400));
    let t = launch(&host, c);
    std::thread::sleep(Duration::from_millis(100));
    // Freeze the whole sandbox: from the host's view its vCPUs stop taking events, exactly
    // like a guest spinning with events masked.
    let pid = t.sandbox_pid() as i32;
    assert_eq!(
        std::process::Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .expect("kill runs")
            .code(),
        Some(0)
    );
    let start = Instant::now();
    let out = t.wait();
    let waited = start.elapsed();
    let TenantOutcome::Crashed(r) = out else {
        panic!("expected a watchdog crash, got {out:?}")
    };
    assert!(matches!(r.cause, CrashCause::Watchdog { .. }), "{r}");
    let s = r.to_string();
    assert!(s.contains("did not take events for 0.4 s"), "{s}");
    assert!(s.contains("pending bits"), "{s}");
    assert!(s.contains("last hypercall caller rip"), "{s}");
    // Detected (the report says after 0.4 s); the bound only catches a watchdog that never
    // fires, with room for a loaded host.
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

/// Threads are fixed at start (the stub creates one per vCPU before seccomp; there is no
/// `clone`): sampled throughout a selftest run, the sandbox never has more than `vcpus`.
#[test]
fn sandbox_threads_never_exceed_vcpus() {
    let host = host();
    for vcpus in [1u32, 2, 3] {
        let t = launch(
            &host,
            config("threads", "selftest", vcpus, Capture::default()),
        );
        let dir = format!("/proc/{}/task", t.sandbox_pid());
        let mut max = 0;
        let mut samples = 0;
        while t.state() == pvmux_host::TenantState::Running {
            if let Ok(d) = std::fs::read_dir(&dir) {
                max = max.max(d.count());
                samples += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let out = t.wait();
        assert_eq!(out, TenantOutcome::Exited(0), "{vcpus} vCPUs");
        assert!(samples > 0);
        assert!(max <= vcpus as usize, "{max} threads with {vcpus} vCPUs");
    }
}

/// Ordinary output stays well below the default limit (1 MiB/s): nothing is dropped. (The
/// throttling itself is tested on the console with a simulated clock in `pvmux-host`.)
#[test]
fn ordinary_output_is_not_throttled() {
    let host = host();
    let cap = Capture::default();
    let mut c = config("chatty", "selftest", 2, cap.clone());
    c.console_rate = Some(1 << 20);
    assert_eq!(launch(&host, c).wait(), TenantOutcome::Exited(0));
    let text = cap.text();
    assert!(text.contains("checks passed"), "{text}");
    assert!(!text.contains("throttled"), "{text}");
}
