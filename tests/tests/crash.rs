//! A crashing or misbehaving guest is reported and contained; its neighbour carries on.

use pvmux_host::TenantOutcome;
use pvmux_tests::{host, launch, launch_waiting};

#[test]
fn guest_panic_is_reported_and_neighbour_completes() {
    let host = host();
    let (bad, bad_out) = launch(&host, "panicker", "panic", 2);
    let (good, good_out) = launch(&host, "healthy", "sleep=200 exit=5", 2);
    let report = match bad.wait() {
        TenantOutcome::Crashed(r) => r,
        other => panic!(
            "panicking guest did not crash: {other:?}\n{}",
            bad_out.text()
        ),
    };
    let text = report.to_string();
    assert!(
        text.contains("requested panic"),
        "report lacks the message:\n{text}"
    );
    assert!(
        text.contains("pv-kernel/src/"),
        "report lacks the panic location:\n{text}"
    );
    assert!(text.contains("rip"), "report lacks registers:\n{text}");
    assert!(
        text.contains("requested_panic"),
        "backtrace lacks the panicking function:\n{text}"
    );
    assert_eq!(good.wait(), TenantOutcome::Exited(5), "{}", good_out.text());
}

#[test]
fn raw_host_syscalls_from_the_guest_are_trapped() {
    let host = host();
    let (t, out) = launch(&host, "syscaller", "syscall", 1);
    let outcome = t.wait();
    let text = out.text();
    // The guest saw every raw syscall as an exception: nothing was opened, read or written.
    assert!(text.contains("raw syscall open trapped: nr=2"), "{text}");
    assert!(text.contains("raw syscall write trapped: nr=1"), "{text}");
    assert!(!text.contains("root:"), "guest read a host file:\n{text}");
    assert_eq!(outcome, TenantOutcome::Exited(0), "{text}");
}

/// The kernel sandbox holds its guest memory and control memfds and, read-only, the file of
/// its kernel image (this executable, into which the image is built): it maps the image's
/// read-only pages from there (docs/ARCHITECTURE.md, "The kernel image's shared pages").
#[test]
fn sandbox_is_seccomp_locked_with_its_two_memfds_and_its_kernel_image_file() {
    let host = host();
    // The guest program waits for the end of its console input: the sandbox cannot end
    // while the test looks at it.
    let (t, out, mut gate) = launch_waiting(&host, "inspect", 3, 0);
    let pid = t.sandbox_pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .count();
    assert_eq!(threads, 3, "one thread per vCPU");
    let mut fds: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .map(|e| {
            let e = e.expect("fd entry");
            let target = std::fs::read_link(e.path()).expect("fd link");
            (
                e.file_name().to_string_lossy().into_owned(),
                target.to_string_lossy().into_owned(),
            )
        })
        .collect();
    fds.sort();
    assert_eq!(fds.len(), 3, "unexpected fds: {fds:?}");
    assert_eq!(fds[0].0, "3");
    assert!(fds[0].1.starts_with("/memfd:pvmux-guest"), "{fds:?}");
    assert_eq!(fds[1].0, "4");
    assert!(fds[1].1.starts_with("/memfd:pvmux-ctl"), "{fds:?}");
    assert_eq!(fds[2].0, "5");
    let exe = std::fs::read_link("/proc/self/exe").expect("exe");
    assert_eq!(fds[2].1, exe.to_string_lossy(), "{fds:?}");
    // Opened read-only (`flags:` is octal; the access mode is its low two bits).
    let (flags, info) = pvmux_tests::procfs::fd_flags(pid, 5);
    assert_eq!(flags & 3, 0, "O_RDONLY: {info}");
    // The image's pages mapped from it, read-only: never writable.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let image_maps: Vec<&str> = maps
        .lines()
        .filter(|l| l.ends_with(&*exe.to_string_lossy()))
        .collect();
    assert!(!image_maps.is_empty(), "{maps}");
    assert!(
        image_maps.iter().all(|l| l
            .split_whitespace()
            .nth(1)
            .is_some_and(|p| !p.contains('w'))),
        "{image_maps:?}"
    );
    gate.open();
    assert_eq!(t.wait(), TenantOutcome::Exited(0), "{}", out.text());
}

#[test]
fn fault_during_exception_delivery_is_reported_as_double_fault() {
    let host = host();
    let (t, out) = launch(&host, "double-fault", "crash=double-fault", 1);
    let report = match t.wait() {
        TenantOutcome::Crashed(r) => r.to_string(),
        other => panic!("expected a crash, got {other:?}\n{}", out.text()),
    };
    assert!(report.contains("double fault"), "{report}");
    assert!(report.contains("#UD"), "{report}");
    assert!(
        report.contains("pvmux_kernel::commands::crash::double_fault"),
        "{report}"
    );
}

#[test]
fn guest_jumping_onto_a_stub_syscall_is_refused_and_stopped() {
    let host = host();
    let (bad, bad_out) = launch(&host, "hostile", "crash=stub-syscall", 1);
    let (good, good_out) = launch(&host, "healthy", "sleep=100 exit=9", 1);
    let report = match bad.wait() {
        TenantOutcome::Crashed(r) => r.to_string(),
        other => panic!("expected a crash, got {other:?}\n{}", bad_out.text()),
    };
    assert!(
        bad_out.text().contains("jumping into stub code"),
        "{}",
        bad_out.text()
    );
    assert!(report.contains("ABI violation"), "{report}");
    assert!(
        report.contains("detail 0x2"),
        "the refused call (open = 2) is named: {report}"
    );
    assert_eq!(good.wait(), TenantOutcome::Exited(9), "{}", good_out.text());
}
