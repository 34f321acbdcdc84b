//! Tenant lifecycle with real guests: whatever way a tenant ends (exit, panic, double fault,
//! refused stub syscall, killed by the host), the host gets back every fd, thread, child
//! process and mapping. (Its own test binary, so no other test disturbs the counts.)

use pvmux_host::TenantOutcome;
use pvmux_tests::procfs::count;
use pvmux_tests::{host, launch};

/// (all mappings, mappings of pvmux memfds: guest memory and control regions)
fn maps() -> (usize, usize) {
    let text = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let ours = text.lines().filter(|l| l.contains("memfd:pvmux")).count();
    (text.lines().count(), ours)
}

#[test]
fn ended_tenants_leave_nothing_behind() {
    // One malloc arena per thread at most as many as exist now: glibc otherwise makes a new
    // arena (two mappings) whenever two threads contend — a launch builds the domain while
    // its monitor thread spawns the sandbox — up to 8 per CPU, at moments that depend on
    // the host's timing, and the mapping count below would measure that instead of leaks.
    // SAFETY: mallopt with a plain integer option; only changes how new threads pick arenas.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let host = host();
    let round = |host: &pvmux_host::Host| {
        let cases = [
            "exit=3",
            "panic",
            "crash=double-fault",
            "crash=stub-syscall",
            "sleep=10000 exit=0",
        ];
        let tenants: Vec<_> = cases.iter().map(|c| (c, launch(host, c, c, 2).0)).collect();
        for (case, t) in tenants {
            if case.starts_with("sleep") {
                t.kill();
            }
            match (*case, t.wait()) {
                ("exit=3", TenantOutcome::Exited(3)) => {}
                ("exit=3", other) => panic!("exit=3 ended as {other:?}"),
                (_, TenantOutcome::Crashed(_)) => {}
                (case, other) => panic!("{case} ended as {other:?}"),
            }
        }
    };
    round(&host); // warm-up: lazily created host state (stub memfd, TSC calibration, ...)
    let (fds, threads, mappings) = (count("/proc/self/fd"), count("/proc/self/task"), maps());
    for _ in 0..6 {
        round(&host);
    }
    assert_eq!(count("/proc/self/fd"), fds, "fds leaked");
    assert_eq!(count("/proc/self/task"), threads, "threads leaked");
    let (all, ours) = maps();
    // Every tenant's guest-memory and control mappings are gone...
    assert_eq!(ours, mappings.1, "memfd mappings leaked");
    // ...and the rest stays bounded (no new malloc arenas, above; glibc's cache of exited
    // threads' stacks may still vary; a per-tenant leak would add 30+ here).
    assert!(
        all <= mappings.0 + 24,
        "mappings leaked: {} -> {all}",
        mappings.0
    );
    // Every sandbox was reaped: no thread of this process has a child left, zombie or not.
    for task in std::fs::read_dir("/proc/self/task").expect("tasks") {
        let path = task.expect("task").path().join("children");
        let children = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            children.trim().is_empty(),
            "{}: children left: {children}",
            path.display()
        );
    }
}
