//! Leak test at scale: 200 tenants booted and ended in sequence, every way a tenant can end
//! (clean exit, guest panic, double fault, killed after start). Afterwards the host's fds,
//! threads and child processes are exactly back to their level after a 10-tenant warm-up,
//! guest-memory/control mappings are back to 0, and RSS is within +8 MiB of the warm-up
//! level (glibc keeps some freed memory cached; a per-tenant leak of even 64 KiB would add
//! 12 MiB over 190 tenants). (Its own test binary, so no other test disturbs the counts.)

use std::io::Write;
use std::time::{Duration, Instant};

use pvmux_host::{Host, TenantConfig, TenantOutcome};
use pvmux_tests::procfs::{children, count, memfd_mappings};
use pvmux_tests::{host, kernel};

/// RSS may grow by at most this much over the warm-up level.
const RSS_SLACK_KIB: u64 = 8 * 1024;
/// Tenants in total (including the warm-up).
const TENANTS: usize = 200;
/// Warm-up tenants before the baseline is taken.
const WARMUP: usize = 10;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn one(host: &Host, kernel: &std::sync::Arc<pvmux_host::KernelImage>, i: usize) {
    let (cmdline, kill) = match i % 4 {
        0 => ("exit=3", false),
        1 => ("panic", false),
        2 => ("crash=double-fault", false),
        _ => ("sleep=10000 exit=0", true),
    };
    let mut cfg = TenantConfig::new(
        format!("leak{i}"),
        std::sync::Arc::clone(kernel),
        16 << 20,
        1,
        pvmux_tests::args(cmdline),
        Box::new(std::io::sink()) as Box<dyn Write + Send>,
    );
    cfg.watchdog = Some(Duration::from_secs(10));
    cfg.console_rate = Some(1 << 20);
    let t = host.launch(cfg).expect("launch");
    if kill {
        assert!(t.wait_started(Duration::from_secs(10)));
        t.kill();
    }
    match (i % 4, t.wait()) {
        (0, TenantOutcome::Exited(3)) => {}
        (0, other) => panic!("exit=3 ended as {other:?}"),
        (_, TenantOutcome::Crashed(_)) => {}
        (_, other) => panic!("{cmdline} ended as {other:?}"),
    }
}

#[test]
fn two_hundred_tenants_leave_nothing_behind() {
    let start = Instant::now();
    let host = host();
    let kernel = kernel();
    for i in 0..WARMUP {
        one(&host, &kernel, i);
    }
    let (fds, threads, rss) = (count("/proc/self/fd"), count("/proc/self/task"), rss_kib());
    assert_eq!(memfd_mappings(), 0);
    for i in WARMUP..TENANTS {
        one(&host, &kernel, i);
    }
    assert_eq!(count("/proc/self/fd"), fds, "fds leaked");
    assert_eq!(count("/proc/self/task"), threads, "threads leaked");
    assert_eq!(children(), 0, "child processes left");
    assert_eq!(
        memfd_mappings(),
        0,
        "guest memory / control mappings leaked"
    );
    let now = rss_kib();
    assert!(
        now <= rss + RSS_SLACK_KIB,
        "RSS grew from {rss} KiB to {now} KiB"
    );
    eprintln!(
        "{TENANTS} tenants in {:?}; RSS {rss} -> {now} KiB",
        start.elapsed()
    );
}
