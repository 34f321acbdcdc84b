//! Leak test for guest user mode: 40 tenants each run a busybox shell that forks, pipes and
//! execs (every guest process is a user-sandbox process on the host); a third of them are
//! killed by the host while their programs run, a third end with a program killed by a
//! signal. Afterwards the host's fds, threads, child processes and guest-memory mappings are
//! exactly back to their warm-up level and no user sandbox is left. (Its own test binary, so
//! no other test disturbs the counts.)

use std::sync::Arc;
use std::time::Duration;

use pvmux_host::hostfs::HostFs;
use pvmux_host::{Host, TenantConfig, TenantOutcome};
use pvmux_tests::procfs::{children, count, memfd_mappings};
use pvmux_tests::{host, kernel, Capture};

const TENANTS: usize = 40;
const WARMUP: usize = 4;

fn one(host: &Host, share: &Arc<HostFs>, i: usize) {
    let script = match i % 3 {
        // Pipes, subshells, command substitution: several processes at once.
        0 => "for i in 1 2 3; do echo $i | wc -c; done; x=$(echo a b | wc -w); (exit $x)",
        // Killed by the host while programs run.
        1 => "while true; do /bin/busybox true; done",
        // A program killed by a signal ends the shell with 128+9.
        _ => "/bin/busybox sleep 5 & kill -9 $!; wait $!",
    };
    let enc: String = script
        .bytes()
        .map(|b| {
            if (0x21..=0x7e).contains(&b) && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let out = Capture::default();
    let mut cfg = TenantConfig::new(
        format!("leak{i}"),
        kernel(),
        64 << 20,
        2,
        format!("hostfs -- /bin/busybox sh -c {enc}"),
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
    let want = if i.is_multiple_of(3) { 2 } else { 128 + 9 };
    assert!(
        outcome.exit_code() == Some(want),
        "tenant {i}: {outcome:?}, output {text:?}"
    );
    if i.is_multiple_of(3) {
        assert_eq!(text, "2\n2\n2\n", "tenant {i}");
    }
}

#[test]
fn user_mode_tenants_leak_nothing() {
    if !std::path::Path::new("/bin/busybox").exists() {
        eprintln!("skipped: /bin/busybox (busybox-static) is not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("pvmux-leaks-user-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("copy busybox");
    let share = Arc::new(HostFs::open(&dir).expect("share opens"));
    let host = host();
    for i in 0..WARMUP {
        one(&host, &share, i);
    }
    let (fds, threads, kids, maps) = (
        count("/proc/self/fd"),
        count("/proc/self/task"),
        children(),
        memfd_mappings(),
    );
    for i in WARMUP..TENANTS {
        one(&host, &share, i);
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
    let _ = std::fs::remove_dir_all(&dir);
}
