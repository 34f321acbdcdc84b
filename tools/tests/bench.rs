//! `pvmux bench --quick --json`: the schema, every pvmux figure present, positive and finite,
//! every documented name exactly once, unavailable peers reported as such.

use std::process::Command;

use serde_json::Value;

/// The documented names (docs/BENCHMARKS.md), in output order.
const NAMES: [&str; 19] = [
    "pvmux.call.in_sandbox",
    "pvmux.hypercall.spin",
    "pvmux.hypercall.block",
    "pvmux.exception.int3",
    "pvmux.interrupt.timer",
    "pvmux.shadow_fill.page",
    "pvmux.shadow_fill.page_nofaultaround",
    "pvmux.halt_wake",
    "pvmux.thread_switch",
    "pvmux.boot.first_instruction",
    "pvmux.boot.selftest_done",
    "pvmux.host_rss_per_tenant",
    "native.syscall.getppid",
    "native.seccomp_trap",
    "native.ptrace_sysemu",
    "native.futex_pingpong.same_core",
    "native.futex_pingpong.cross_core",
    "kvm.exit_to_user",
    "kvm.exit_in_kernel",
];

fn bench(args: &[&str]) -> (Value, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_pvmux"))
        .arg("bench")
        .args(args)
        .output()
        .expect("pvmux runs");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    (v, err)
}

fn positive_finite(r: &Value, key: &str) -> f64 {
    let x = r[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {r}"));
    assert!(x.is_finite() && x > 0.0, "{key} of {r}");
    x
}

#[test]
fn quick_json_run_reports_every_documented_figure() {
    let (v, err) = bench(&["--quick", "--json"]);
    assert!(!err.contains("panicked"), "{err}");
    let host = &v["host"];
    for key in ["cpu_model", "kernel"] {
        assert!(host[key].is_string(), "host.{key} in {host}");
    }
    for key in ["vmx", "svm", "hypervisor", "quick"] {
        assert!(host[key].is_boolean(), "host.{key} in {host}");
    }
    assert!(host["nr_cpus"].as_u64().is_some_and(|n| n >= 1), "{host}");
    assert!(host["kvm"]["works"].is_boolean(), "{host}");
    assert!(host["kvm"]["dev_kvm_opens"].is_boolean(), "{host}");

    let results = v["results"].as_array().expect("results array");
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, NAMES, "every documented name exactly once, in order");
    for r in results {
        let name = r["name"].as_str().unwrap();
        let unit = r["unit"].as_str().expect("unit");
        let expected_unit = if name == "pvmux.host_rss_per_tenant" {
            "bytes"
        } else {
            "ns"
        };
        assert_eq!(unit, expected_unit, "{r}");
        match r.get("unavailable") {
            Some(why) => {
                let why = why.as_str().expect("reason is a string");
                assert!(!why.is_empty(), "{r}");
                assert!(r.get("median_ns").is_none(), "{r}");
                assert!(
                    !name.starts_with("pvmux."),
                    "pvmux figure {name} is unavailable: {why}"
                );
            }
            None => {
                let median = positive_finite(r, "median_ns");
                let p99 = positive_finite(r, "p99_ns");
                assert!(p99 >= median, "{r}");
                assert!(r["samples"].as_u64().is_some_and(|n| n > 0), "{r}");
            }
        }
    }
}

#[test]
fn only_selects_by_glob_and_substring() {
    let (v, _) = bench(&["--quick", "--json", "--only", "native.*"]);
    let names: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, &NAMES[12..17]);
    let (v, _) = bench(&["--quick", "--json", "--only", "getppid"]);
    assert_eq!(v["results"][0]["name"], "native.syscall.getppid");
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
}

#[test]
fn no_match_is_a_host_error() {
    let o = Command::new(env!("CARGO_BIN_EXE_pvmux"))
        .args(["bench", "--only", "no-such-benchmark"])
        .output()
        .expect("pvmux runs");
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no benchmark matches"));
}
