//! Booting the embedded guest kernel: the self-test on 1 and 4 vCPUs, exit codes, and two
//! tenants side by side in one host.

use pvmux_host::{TenantOutcome, TenantState};
use pvmux_tests::{host, launch, launch_waiting};

/// Runs the self-test on `vcpus` vCPUs, checks it passed, and returns the console.
fn run_selftest(vcpus: u32) -> String {
    let host = host();
    let (tenant, console) = launch(&host, "selftest", "selftest", vcpus);
    let outcome = tenant.wait();
    let out = console.text();
    assert_eq!(
        outcome,
        TenantOutcome::Exited(0),
        "selftest on {vcpus} vCPUs failed:\n{out}"
    );
    assert!(out.contains("PASS smp_online"), "{out}");
    for check in [
        "demand_paging",
        "exception_breakpoint",
        "exception_invalid_opcode",
        "exception_divide_error",
        "exception_general_protection",
        "exception_page_fault_unmapped",
        "exception_raw_syscall",
        "preemption",
        "timer_accuracy",
        "shadow_vma_budget",
        "kernel_threads",
        "memfd_write",
    ] {
        assert!(
            out.contains(&format!("PASS {check}")),
            "check {check} did not pass on {vcpus} vCPUs:\n{out}"
        );
    }
    assert!(!out.contains("FAIL"), "{out}");
    if vcpus > 1 {
        assert!(out.contains("PASS cross_vcpu_wakeup"), "{out}");
    }
    out
}

#[test]
fn selftest_passes_on_one_vcpu() {
    run_selftest(1);
}

#[test]
fn selftest_passes_on_four_vcpus() {
    run_selftest(4);
}

/// The most vCPUs a tenant may have (64), far more than the host's CPUs: the self-test
/// passes, and every secondary vCPU's "online" line reaches the console exactly once, after
/// the kernel's first line — many vCPUs printing at once, none of the lines lost or
/// reordered against the boot's, while the kernel writes the console out without holding
/// the lock the others append under.
#[test]
fn selftest_passes_on_the_most_vcpus_and_every_line_arrives_once() {
    let out = run_selftest(64);
    let first = out
        .find("pvmux-kernel: ABI v")
        .unwrap_or_else(|| panic!("no first line:\n{out}"));
    for id in 1..64 {
        let line = format!("pvmux-kernel: vCPU {id} online\n");
        assert_eq!(out.matches(&line).count(), 1, "{line:?}:\n{out}");
        assert!(
            out.find(&line).is_some_and(|at| at > first),
            "{line:?}:\n{out}"
        );
    }
}

#[test]
fn two_tenants_run_concurrently_with_their_own_exit_codes() {
    let host = host();
    // Each guest program waits for the end of its console input: neither tenant can end
    // before the test has seen both sandboxes.
    let (a, out_a, mut gate_a) = launch_waiting(&host, "a", 2, 3);
    let (b, out_b, mut gate_b) = launch_waiting(&host, "b", 1, 7);
    // Both sandboxes are alive at the same time.
    for t in [&a, &b] {
        let status = std::fs::read_to_string(format!("/proc/{}/status", t.sandbox_pid()))
            .expect("sandbox is running");
        assert!(status.contains("Seccomp:\t2"), "{status}");
    }
    assert_ne!(a.sandbox_pid(), b.sandbox_pid());
    gate_b.open();
    assert_eq!(b.wait(), TenantOutcome::Exited(7), "{}", out_b.text());
    assert_eq!(a.state(), TenantState::Running, "{}", out_a.text());
    gate_a.open();
    assert_eq!(a.wait(), TenantOutcome::Exited(3), "{}", out_a.text());
}

/// The default kernel (what `pvmux run` boots for programs) has no test commands: asked for
/// one, it says so and exits 123 instead of pretending; ordinary words still work.
#[test]
fn default_kernel_refuses_test_commands_and_runs_the_rest() {
    let host = host();
    for (word, code, says) in [
        ("selftest", 123, "is a command of the test kernel"),
        ("hostile=ipi-storm", 123, "is a command of the test kernel"),
        ("sleep=10 exit=9", 9, "exiting with 9"),
    ] {
        let console = pvmux_tests::Capture::default();
        let cfg = pvmux_host::TenantConfig {
            kernel: pvmux_tests::default_kernel(),
            console: Box::new(console.clone()),
            ..pvmux_tests::config("default", word, 1)
        };
        let outcome = host.launch(cfg).expect("tenant launches").wait();
        let out = console.text();
        assert_eq!(outcome, TenantOutcome::Exited(code), "{word}: {out}");
        assert!(out.contains(says), "{word}: {out}");
    }
}
