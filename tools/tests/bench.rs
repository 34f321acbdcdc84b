//! `pvmux bench --quick --json`: the schema, every pvmux figure present, positive and finite,
//! every documented name exactly once, unavailable peers reported as such; the user-mode
//! figures (`*.user.*`): native ones measured, peers measured or unavailable with a reason.

use std::process::Command;

use serde_json::Value;

/// The documented names (docs/BENCHMARKS.md), in output order.
const NAMES: [&str; 104] = [
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
    "native.user.syscall_getppid",
    "uml.user.syscall_getppid",
    "gvisor.user.syscall_getppid",
    "pvmux.user.syscall_getppid",
    "native.user.page_fault",
    "uml.user.page_fault",
    "gvisor.user.page_fault",
    "pvmux.user.page_fault",
    "native.user.fork_exit_wait",
    "uml.user.fork_exit_wait",
    "gvisor.user.fork_exit_wait",
    "pvmux.user.fork_exit_wait",
    "native.user.pipe_pingpong",
    "uml.user.pipe_pingpong",
    "gvisor.user.pipe_pingpong",
    "pvmux.user.pipe_pingpong",
    "native.user.clock_gettime",
    "uml.user.clock_gettime",
    "gvisor.user.clock_gettime",
    "pvmux.user.clock_gettime",
    "native.user.read_4k_cached",
    "uml.user.read_4k_cached",
    "gvisor.user.read_4k_cached",
    "pvmux.user.read_4k_cached",
    "native.user.open_read_close",
    "uml.user.open_read_close",
    "gvisor.user.open_read_close",
    "pvmux.user.open_read_close",
    "native.user.fork_exec_wait",
    "uml.user.fork_exec_wait",
    "gvisor.user.fork_exec_wait",
    "pvmux.user.fork_exec_wait",
    "native.user.boot_to_init",
    "uml.user.boot_to_init",
    "gvisor.user.boot_to_init",
    "pvmux.user.boot_to_init",
    "pvmux-trusted.user.syscall_getppid",
    "pvmux-trusted.user.page_fault",
    "pvmux-trusted.user.fork_exit_wait",
    "pvmux-trusted.user.pipe_pingpong",
    "pvmux-trusted.user.clock_gettime",
    "pvmux-trusted.user.read_4k_cached",
    "pvmux-trusted.user.open_read_close",
    "pvmux-trusted.user.fork_exec_wait",
    "pvmux-trusted.user.boot_to_init",
    "native.app.python3_pass",
    "uml.app.python3_pass",
    "gvisor.app.python3_pass",
    "pvmux.app.python3_pass",
    "native.app.bash_true",
    "uml.app.bash_true",
    "gvisor.app.bash_true",
    "pvmux.app.bash_true",
    "native.app.gcc_hello",
    "uml.app.gcc_hello",
    "gvisor.app.gcc_hello",
    "pvmux.app.gcc_hello",
    "runc.oci.podman_run_true",
    "gvisor.oci.podman_run_true",
    "pvmux.oci.podman_run_true",
    "runc.oci.idle_container_pss",
    "gvisor.oci.idle_container_pss",
    "pvmux.oci.idle_container_pss",
    "native.user.syscall_getppid.contended",
    "gvisor.user.syscall_getppid.contended",
    "pvmux.user.syscall_getppid.contended",
    "pvmux-trusted.user.syscall_getppid.contended",
    "native.user.page_fault.contended",
    "gvisor.user.page_fault.contended",
    "pvmux.user.page_fault.contended",
    "pvmux-trusted.user.page_fault.contended",
    "native.user.fork_exit_wait.contended",
    "gvisor.user.fork_exit_wait.contended",
    "pvmux.user.fork_exit_wait.contended",
    "pvmux-trusted.user.fork_exit_wait.contended",
    "native.user.pipe_pingpong.contended",
    "gvisor.user.pipe_pingpong.contended",
    "pvmux.user.pipe_pingpong.contended",
    "pvmux-trusted.user.pipe_pingpong.contended",
    "pvmux.hypercall.spin.contended",
    "pvmux.hypercall.block.contended",
    "native.channel.roundtrip",
    "native.channel.throughput",
    "pvmux.channel.roundtrip",
    "pvmux.channel.throughput",
];

/// The user-mode figures of `peer` in `NAMES`.
fn user_names(peer: &str) -> Vec<&'static str> {
    NAMES
        .iter()
        .copied()
        .filter(|n| n.starts_with(&format!("{peer}.user.")))
        .collect()
}

fn bench(args: &[&str]) -> (Value, String) {
    bench_env(args, &[])
}

fn bench_env(args: &[&str], env: &[(&str, &str)]) -> (Value, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_pvmux"))
        .arg("bench")
        .args(args)
        .envs(env.iter().copied())
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
        let expected_unit =
            if name == "pvmux.host_rss_per_tenant" || name.ends_with(".oci.idle_container_pss") {
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
                // pvmux's own figures, guest user mode included, are always measurable
                // (those under podman when podman is installed); only peers that may be
                // missing (KVM, User-Mode Linux, gVisor, podman) may not be.
                let no_podman = name.contains(".oci.") && why.contains("podman is not installed");
                assert!(
                    !(name.starts_with("pvmux.") || name.starts_with("pvmux-trusted."))
                        || no_podman,
                    "pvmux figure {name} is unavailable: {why}"
                );
                assert!(
                    !name.starts_with("native.user."),
                    "native figure {name} is unavailable: {why}"
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
    // NAMES is in output order: every native figure, the contended ones last.
    let expected: Vec<&str> = NAMES
        .iter()
        .copied()
        .filter(|n| n.starts_with("native."))
        .collect();
    assert_eq!(names, expected);
    let (v, _) = bench(&["--quick", "--json", "--only", "syscall.getppid"]);
    assert_eq!(v["results"][0]["name"], "native.syscall.getppid");
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
}

#[test]
fn native_user_figures_are_measured_and_ordered() {
    let (v, _) = bench(&["--quick", "--json", "--only", "native.user.*"]);
    let results = v["results"].as_array().unwrap();
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, user_names("native"));
    let median = |name: &str| {
        let r = results.iter().find(|r| r["name"] == name).unwrap();
        assert!(r.get("unavailable").is_none(), "{r}");
        assert!(
            r["p99_ns"].as_f64().unwrap() >= r["median_ns"].as_f64().unwrap(),
            "{r}"
        );
        assert!(r["samples"].as_u64().is_some_and(|n| n >= 10), "{r}");
        positive_finite(r, "median_ns")
    };
    let getppid = median("native.user.syscall_getppid");
    let fork = median("native.user.fork_exit_wait");
    // getppid takes well under 20 µs even nested; a fork and wait takes far longer.
    assert!(getppid < 20_000.0, "getppid {getppid} ns");
    assert!(
        fork > 10.0 * getppid,
        "fork {fork} ns vs getppid {getppid} ns"
    );
    assert!(median("native.user.page_fault") > 0.0);
    assert!(median("native.user.pipe_pingpong") > getppid);
    // A cached 4 KiB read is a system call and a copy; open+read+close adds two calls.
    let read = median("native.user.read_4k_cached");
    assert!(read > 0.0);
    assert!(median("native.user.open_read_close") > read);
    // A fork that also execs a program does more than one that only exits.
    assert!(median("native.user.fork_exec_wait") > fork);
    // Exec of a small static program to its first line: between 10 µs and 1 s.
    let boot = median("native.user.boot_to_init");
    assert!((1e4..1e9).contains(&boot), "boot {boot} ns");
}

#[test]
fn missing_peers_are_unavailable_fast() {
    let t0 = std::time::Instant::now();
    let (v, _) = bench_env(
        &[
            "--quick",
            "--json",
            "--only",
            "uml.user.*",
            "--only",
            "gvisor.user.*",
        ],
        &[
            ("PVMUX_BENCH_UML", "/nonexistent/linux.uml"),
            ("PVMUX_BENCH_RUNSC", "/nonexistent/runsc"),
        ],
    );
    let results = v["results"].as_array().unwrap();
    let mut expected = user_names("uml");
    expected.extend(user_names("gvisor"));
    expected.sort_by_key(|n| NAMES.iter().position(|m| m == n));
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, expected);
    for r in results {
        let why = r["unavailable"].as_str().unwrap_or_else(|| panic!("{r}"));
        assert!(why.contains("is not installed"), "{r}");
        assert!(r.get("median_ns").is_none(), "{r}");
    }
    assert!(t0.elapsed().as_secs() < 20, "{:?}", t0.elapsed());
}

#[test]
fn oci_figures_without_podman_are_unavailable() {
    // No podman in PATH: every `*.oci.*` figure says so, none is left out.
    let (v, _) = bench_env(
        &["--quick", "--json", "--only", "*.oci.*"],
        &[("PATH", "/nonexistent")],
    );
    let results = v["results"].as_array().unwrap();
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = NAMES
        .iter()
        .copied()
        .filter(|n| n.contains(".oci."))
        .collect();
    assert_eq!(names, expected);
    for r in results {
        let why = r["unavailable"].as_str().unwrap_or_else(|| panic!("{r}"));
        assert!(why.contains("podman is not installed"), "{r}");
    }
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

#[test]
fn html_page_of_a_run_and_of_its_saved_json() {
    let dir = std::env::temp_dir().join(format!("pvmux-bench-html-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (page, saved, again) = (
        dir.join("run.html"),
        dir.join("run.json"),
        dir.join("again.html"),
    );
    let (v, err) = bench(&[
        "--quick",
        "--json",
        // Globs match whole names: not the `.contended` twins.
        "--only",
        "native.user.syscall_getppi?",
        "--only",
        "native.user.page_faul?",
        "--html",
        page.to_str().unwrap(),
    ]);
    assert!(err.contains("wrote"), "{err}");
    let html = std::fs::read_to_string(&page).expect("the page is written");
    assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
    assert!(
        !html.contains("<script") && !html.contains("<link"),
        "{html}"
    );
    // The host as the JSON says, and one chart with one bar per measured figure.
    let cpu = v["host"]["cpu_model"].as_str().unwrap();
    assert!(
        html.contains(&cpu.replace('&', "&amp;").replace('<', "&lt;")),
        "{html}"
    );
    assert!(html.contains("<h2>user</h2>"), "{html}");
    for figure in ["user.syscall_getppid", "user.page_fault"] {
        assert!(html.contains(&format!("<h3>{figure}</h3>")), "{html}");
    }
    assert_eq!(
        html.matches("<rect class=\"bar peer\"").count(),
        2,
        "{html}"
    );
    // The saved JSON renders the same page.
    std::fs::write(&saved, v.to_string()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_pvmux"))
        .args(["bench", "--html", again.to_str().unwrap(), "--from-json"])
        .arg(&saved)
        .output()
        .expect("pvmux runs");
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(std::fs::read_to_string(&again).unwrap(), html);
    // Not a saved report: a host error, no page.
    std::fs::write(&saved, "{}").unwrap();
    let _ = std::fs::remove_file(&again);
    let o = Command::new(env!("CARGO_BIN_EXE_pvmux"))
        .args(["bench", "--html", again.to_str().unwrap(), "--from-json"])
        .arg(&saved)
        .output()
        .expect("pvmux runs");
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a `pvmux bench --json` document"));
    assert!(!again.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
