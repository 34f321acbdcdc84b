//! `pvmux bench` with its user-mode peers installed: with gVisor's `runsc`, every
//! `gvisor.user.*` figure is measured; with User-Mode Linux, every `uml.user.*` figure is run
//! (measured, or unavailable with the reason the run failed — never "not installed").
//! Without the peer, `tools/tests/bench.rs` checks the "not installed" report.

use std::process::Command;

use serde_json::Value;

/// The user-mode figures of each peer (docs/BENCHMARKS.md).
const FIGURES: [&str; 9] = [
    "syscall_getppid",
    "page_fault",
    "fork_exit_wait",
    "pipe_pingpong",
    "clock_gettime",
    "read_4k_cached",
    "open_read_close",
    "fork_exec_wait",
    "boot_to_init",
];

/// The figures measured again next to two CPU-bound host processes (`*.contended`).
const CONTENDED: [&str; 4] = [
    "syscall_getppid",
    "page_fault",
    "fork_exit_wait",
    "pipe_pingpong",
];

/// `pvmux bench --quick --json --only PEER.user.*`: the results, in order, each checked to
/// name the next figure of `peer`.
fn peer_results(peer: &str) -> Vec<Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_pvmux-cli"))
        .args(["bench", "--quick", "--json", "--only"])
        .arg(format!("{peer}.user.*"))
        // The installed peers, not another binary named by the environment.
        .env_remove("PVMUX_BENCH_UML")
        .env_remove("PVMUX_BENCH_RUNSC")
        .output()
        .expect("pvmux runs");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    let results = v["results"].as_array().expect("results array").clone();
    let names: Vec<&str> = results.iter().filter_map(|r| r["name"].as_str()).collect();
    let mut want: Vec<String> = FIGURES.iter().map(|f| format!("{peer}.user.{f}")).collect();
    // The figures next to two CPU hogs come last (gVisor has them, UML not).
    if peer == "gvisor" {
        want.extend(
            CONTENDED
                .iter()
                .map(|f| format!("{peer}.user.{f}.contended")),
        );
    }
    assert_eq!(names, want, "{out}");
    results
}

/// Asserts that `r` is a measurement: positive finite median, p99 at least the median,
/// samples.
fn assert_measured(r: &Value) {
    assert!(r.get("unavailable").is_none(), "{r}");
    let median = r["median_ns"].as_f64().unwrap_or(f64::NAN);
    let p99 = r["p99_ns"].as_f64().unwrap_or(f64::NAN);
    assert!(median.is_finite() && median > 0.0, "{r}");
    assert!(p99 >= median, "{r}");
    assert!(r["samples"].as_u64().is_some_and(|n| n > 0), "{r}");
}

#[test]
#[cfg_attr(not(have_runsc), ignore = "needs runsc: apt-get install runsc")]
fn gvisor_figures_are_measured() {
    for r in peer_results("gvisor") {
        assert_measured(&r);
    }
}

/// User-Mode Linux does not start on every host (Debian's 6.1 build aborts with "ptrace set
/// fp regs failed" on some CPUs): its figures must be measured or name the failure.
#[test]
#[cfg_attr(
    not(have_uml),
    ignore = "needs linux.uml: apt-get install user-mode-linux"
)]
fn uml_figures_are_run() {
    for r in peer_results("uml") {
        match r.get("unavailable").and_then(Value::as_str) {
            Some(why) => {
                assert!(!why.contains("not installed"), "{r}");
                assert!(why.contains("linux.uml"), "{r}");
                assert!(r.get("median_ns").is_none(), "{r}");
            }
            None => assert_measured(&r),
        }
    }
}
