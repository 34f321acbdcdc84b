//! Leak test for guest user mode: 40 tenants each run workspace test programs
//! (`tests/programs`) that fork, pipe and exec (every guest process is a user-sandbox process
//! on the host); a third of them are killed by the host while their programs fork and exec,
//! a third end with their program killed by a signal. Afterwards the host's fds, threads,
//! child processes and guest-memory mappings are exactly back to their warm-up level and no
//! user sandbox is left. (Its own test binary, so no other test disturbs the counts.)

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use pvmux_host::hostfs::HostFs;
use pvmux_host::{Host, TenantConfig, TenantOutcome};
use pvmux_hypercalls::bootargs::{BootArgsBuf, Options};
use pvmux_tests::procfs::{children, count, memfd_mappings};
use pvmux_tests::{host, kernel, Capture};

const TENANTS: usize = 40;
const WARMUP: usize = 4;
/// The directory holding the static test programs (the guest's root).
const PROG_DIR: &str = env!("PVMUX_PROG_DIR");

/// What `spawn /hello` prints (natively, the same as in the guest).
fn spawn_transcript() -> String {
    let o = Command::new(format!("{PROG_DIR}/spawn"))
        .arg(format!("{PROG_DIR}/hello"))
        .output()
        .expect("spawn runs natively");
    assert!(o.status.success(), "native spawn: {o:?}");
    String::from_utf8(o.stdout).expect("UTF-8 transcript")
}

fn one(host: &Host, share: &Arc<HostFs>, spawn_out: &str, i: usize) {
    let argv = match i % 3 {
        // Children with arguments, captured output, pipes between them.
        0 => "/spawn /hello",
        // Killed by the host while it forks, execs and reaps.
        1 => "/toolbox respawn",
        // Killed by a signal: 128 + SIGSEGV.
        _ => "/segv",
    };
    let out = Capture::default();
    let options = Options {
        hostfs: true,
        ..Options::default()
    };
    let mut cfg = TenantConfig::new(
        format!("leak{i}"),
        kernel(),
        64 << 20,
        2,
        BootArgsBuf::new(&options, [], argv.split(' ')).expect("boot arguments fit"),
        Box::new(out.clone()),
    );
    cfg.console_stderr = Box::new(out.clone());
    cfg.kernel_log = pvmux_host::KernelLog::Hidden;
    cfg.hostfs = Some(share.clone());
    let tenant = host.launch(cfg).expect("tenant launches");
    if i % 3 == 1 {
        assert!(tenant.wait_started(Duration::from_secs(10)));
        // Let the loop fork a few processes first.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while tenant.user_sandbox_pids().len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        tenant.kill();
        assert!(matches!(tenant.wait(), TenantOutcome::Crashed(_)));
        return;
    }
    let outcome = tenant.wait();
    let text = out.text();
    let want = if i.is_multiple_of(3) { 0 } else { 128 + 11 };
    assert!(
        outcome.exit_code() == Some(want),
        "tenant {i}: {outcome:?}, output {text:?}"
    );
    if i.is_multiple_of(3) {
        assert_eq!(text, spawn_out, "tenant {i}");
    } else {
        assert!(
            text.starts_with("segv: writing to 0x10\n"),
            "tenant {i}: {text:?}"
        );
    }
}

#[test]
fn user_mode_tenants_leak_nothing() {
    let share = Arc::new(HostFs::open(Path::new(PROG_DIR)).expect("share opens"));
    let spawn_out = spawn_transcript();
    let host = host();
    for i in 0..WARMUP {
        one(&host, &share, &spawn_out, i);
    }
    let (fds, threads, kids, maps) = (
        count("/proc/self/fd"),
        count("/proc/self/task"),
        children(),
        memfd_mappings(),
    );
    for i in WARMUP..TENANTS {
        one(&host, &share, &spawn_out, i);
    }
    // Reaper and console threads end asynchronously right after a tenant ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while (count("/proc/self/task") > threads || children() > kids)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(count("/proc/self/fd"), fds, "fds");
    assert_eq!(count("/proc/self/task"), threads, "threads");
    assert_eq!(children(), kids, "child processes (user sandboxes)");
    assert_eq!(memfd_mappings(), maps, "guest memory mappings");
    assert_eq!(maps, 0, "no guest memory stays mapped");
}
