//! Named tenants (`pvmux run --name NAME [--detach]`, issue 14 item 1) with real guests, as
//! an unprivileged user under a temporary `--root`: `ps` lists them with their state, vCPUs
//! and memory, `logs` shows their console, `exec` runs a command in one, `stats` counts a
//! busy guest's system calls, `stop` ends one and leaves no process and no state, a name in
//! use or a malformed one is refused, an attached named run relays its output and exit
//! status, and `kill -9` of a detached tenant's monitor leaves no process behind.

use pvmux_tests::oci::{alive, wait_for};
use pvmux_tests::prog;
use pvmux_tests::state_root::StateRoot;

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");

/// A state root of its own per test.
struct Root(StateRoot);

impl std::ops::Deref for Root {
    type Target = StateRoot;
    fn deref(&self) -> &StateRoot {
        &self.0
    }
}

impl Root {
    fn new(tag: &str) -> Self {
        Self(StateRoot::new(PVMUX, "pvmux-names", tag))
    }

    /// Starts a detached named tenant running `sh -c SCRIPT` with the host's root as its
    /// files, and checks that `run` printed its name.
    fn detached(&self, name: &str, vcpus: &str, mem: &str, script: &str) {
        let r = self.pvmux(&[
            "run", "--name", name, "--detach", "--vcpus", vcpus, "--mem", mem, "--rootfs", "/",
            "--", "/bin/sh", "-c", script,
        ]);
        assert_eq!(r.code(), Some(0), "run {name}: {}", r.context());
        assert_eq!(r.stdout.trim(), name, "{}", r.context());
    }

    /// Tenant `name`'s `ps` row (it must be listed).
    fn row(&self, name: &str) -> serde_json::Value {
        self.0
            .row(name)
            .unwrap_or_else(|| panic!("ps does not list {name}"))
    }

    fn state_dir(&self, name: &str) -> std::path::PathBuf {
        self.dir().join(name)
    }

    /// `r`'s output and, for an assertion message, tenant `name`'s console log: a guest
    /// that ended early says why there (e.g. the kernel's "killed process N (...): its user
    /// sandbox failed: ..." line on its stderr).
    fn with_console(&self, r: &pvmux_tests::Run, name: &str) -> String {
        format!("{}\n{}", r.context(), self.console(name))
    }

    /// Tenant `name`'s console log, for an assertion message.
    fn console(&self, name: &str) -> String {
        format!(
            "{name}'s console:\n{}",
            self.pvmux(&["logs", name]).context()
        )
    }
}

/// Every descendant of `pid` (a monitor's sandboxes).
fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in pvmux_tests::oci::children(p) {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

#[test]
fn two_named_tenants_are_listed_logged_reached_and_stopped() {
    let root = Root::new("two");
    let busy = prog("cpu-read-loop");
    let busy = busy.to_str().expect("UTF-8 path");
    root.detached(
        "alpha",
        "2",
        "128M",
        &format!("echo hello-alpha; exec {busy} /etc/passwd 600"),
    );
    root.detached(
        "beta",
        "3",
        "64M",
        "echo hello-beta; while :; do sleep 1; done",
    );

    // ps: both, running, with their vCPUs, memory and kernel.
    let rows = root.ps();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (name, vcpus, mem) in [("alpha", 2, 128u64 << 20), ("beta", 3, 64 << 20)] {
        let r = root.row(name);
        assert_eq!(r["state"], "running", "{r}\n{}", root.console(name));
        assert_eq!(r["vcpus"], vcpus, "{r}");
        assert_eq!(r["memory"], mem, "{r}");
        assert_eq!(r["kernel"], "embedded", "{r}");
        assert_eq!(r["kind"], "named", "{r}");
        assert!(r["uptime_s"].as_f64().is_some(), "{r}");
    }
    let table = root.pvmux(&["ps"]);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with("alpha ") && l.contains(" running ") && l.contains("128 MiB")),
        "{}",
        table.context()
    );
    // The OCI commands see them too.
    let state = root.pvmux(&["state", "beta"]);
    assert!(state.stdout.contains("\"running\""), "{}", state.context());

    // logs: each tenant's own console output.
    for (name, line) in [("alpha", "hello-alpha"), ("beta", "hello-beta")] {
        wait_for("the console output reaches the log", || {
            root.pvmux(&["logs", name]).has_line(line)
        });
    }
    let other = root.pvmux(&["logs", "alpha"]);
    assert!(!other.stdout.contains("hello-beta"), "{}", other.context());

    // exec: a command in one of them.
    let e = root.pvmux(&["exec", "beta", "--", "/bin/echo", "from-exec"]);
    assert_eq!(e.code(), Some(0), "{}", e.context());
    assert_eq!(e.stdout, "from-exec\n");

    // stats: the busy guest makes system calls; the host counted its hypercalls and time.
    let s = root.pvmux(&["stats", "--no-stream", "--format", "json", "alpha"]);
    assert_eq!(s.code(), Some(0), "{}", root.with_console(&s, "alpha"));
    let v: serde_json::Value = serde_json::from_str(s.stdout.trim()).expect("stats JSON");
    let vcpus = v["vcpus"].as_array().expect("per-vCPU figures");
    assert_eq!(vcpus.len(), 2, "{v}");
    let sum = |k: &str| vcpus.iter().map(|c| c[k].as_f64().unwrap()).sum::<f64>();
    assert!(sum("syscalls_per_s") > 0.0, "{v}");
    assert!(sum("syscalls") > 0.0, "{v}");
    assert!(sum("hypercalls") > 0.0, "{v}");
    assert!(sum("run_time_s") > 0.0, "{v}");
    assert!(v["memory_used"].as_u64().is_some_and(|m| m > 0), "{v}");
    assert_eq!(v["memory_total"], 128u64 << 20, "{v}");
    let t = root.pvmux(&["stats", "--no-stream", "alpha"]);
    assert!(
        t.stdout.contains("SYSCALLS/S"),
        "{}",
        root.with_console(&t, "alpha")
    );

    // stop: the tenant and all its processes end, its state goes; the other runs on.
    let pid = root.monitor_pid("alpha");
    let family = descendants(pid);
    assert!(!family.is_empty(), "the monitor has its sandboxes");
    let st = root.pvmux(&["stop", "--time", "1", "alpha"]);
    assert_eq!(st.code(), Some(0), "{}", root.with_console(&st, "alpha"));
    for p in std::iter::once(pid).chain(family) {
        assert!(!alive(p), "process {p} of the stopped tenant is left");
    }
    assert!(!root.state_dir("alpha").exists());
    let rows = root.ps();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["name"], "beta");
    assert_eq!(rows[0]["state"], "running");
    let gone = root.pvmux(&["logs", "alpha"]);
    assert_ne!(gone.code(), Some(0), "{}", gone.context());

    let st = root.pvmux(&["stop", "-t", "1", "beta"]);
    assert_eq!(st.code(), Some(0), "{}", st.context());
    assert!(root.ps().is_empty());
}

#[test]
fn a_name_in_use_or_malformed_is_refused() {
    let root = Root::new("refused");
    root.detached("dup", "1", "32M", "while :; do sleep 1; done");
    let pid = root.monitor_pid("dup");
    let again = root.pvmux(&[
        "run",
        "--name",
        "dup",
        "--detach",
        "--rootfs",
        "/",
        "--",
        "/bin/true",
    ]);
    assert_eq!(again.code(), Some(125), "{}", again.context());
    assert!(again.stderr.contains("in use"), "{}", again.context());
    // The first one is untouched.
    assert!(alive(pid));
    assert_eq!(root.row("dup")["state"], "running");

    for bad in ["-x", ".hidden", "a/b", "a b", "a+b", ""] {
        let r = root.pvmux(&["run", &format!("--name={bad}"), "--", "/bin/true"]);
        assert_eq!(r.code(), Some(125), "{bad:?}: {}", r.context());
        assert!(
            r.stderr.contains("invalid name"),
            "{bad:?}: {}",
            r.context()
        );
    }
    assert_eq!(root.ps().len(), 1);
    assert_eq!(root.pvmux(&["stop", "-t", "1", "dup"]).code(), Some(0));
    assert!(!alive(pid));
}

#[test]
fn an_attached_named_run_relays_its_output_and_status_and_frees_its_name() {
    let root = Root::new("attached");
    let r = root.pvmux(&[
        "run",
        "--name",
        "att",
        "--rootfs",
        "/",
        "--",
        "/bin/sh",
        "-c",
        "echo attached-out; echo attached-err >&2; exit 7",
    ]);
    assert_eq!(r.code(), Some(7), "{}", r.context());
    assert!(r.has_line("attached-out"), "{}", r.context());
    assert!(r.stderr.contains("attached-err"), "{}", r.context());
    assert!(!root.state_dir("att").exists());
    assert!(root.ps().is_empty());
}

#[test]
fn killing_a_detached_monitor_leaves_no_process() {
    let root = Root::new("kill9");
    root.detached("victim", "2", "64M", "while :; do sleep 1; done");
    let pid = root.monitor_pid("victim");
    let family = descendants(pid);
    assert!(!family.is_empty(), "the monitor has its sandboxes");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).expect("pid"),
        rustix::process::Signal::KILL,
    )
    .expect("kill -9 the monitor");
    for p in std::iter::once(pid).chain(family) {
        wait_for(&format!("process {p} ends with its monitor"), || !alive(p));
    }
    // Listed as stopped until removed.
    assert_eq!(root.row("victim")["state"], "stopped");
    assert_eq!(root.pvmux(&["stop", "victim"]).code(), Some(0));
    assert!(!root.state_dir("victim").exists());
}

/// One mechanism: an OCI container and a named tenant under one root are listed together by
/// `ps`, and `stats` and `stop` reach the container as `state` reaches the tenant.
#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn ps_stats_and_stop_reach_oci_containers_too() {
    use pvmux_tests::oci::Bundle;
    let b = Bundle::new(
        PVMUX,
        &["sh", "-c", "while :; do sleep 1; done"],
        serde_json::json!({}),
    );
    let (code, err, pid) = b.create("box", None);
    assert_eq!(code, 0, "create: {err}");
    let pid = pid.expect("pid file");
    let r = b.oci(&["start", "box"]);
    assert_eq!(r.code(), Some(0), "start: {}", r.context());
    let r = b.oci(&[
        "run",
        "--name",
        "tenant",
        "-d",
        "--vcpus",
        "1",
        "--mem",
        "32M",
        "--rootfs",
        "/",
        "--",
        "/bin/sh",
        "-c",
        "while :; do sleep 1; done",
    ]);
    assert_eq!(r.code(), Some(0), "run --name: {}", r.context());

    let ps = b.oci(&["ps", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&ps.stdout).expect("ps JSON");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let find = |n: &str| rows.iter().find(|r| r["name"] == n).cloned().expect(n);
    let (boxed, tenant) = (find("box"), find("tenant"));
    assert_eq!(
        (boxed["kind"].clone(), boxed["state"].clone()),
        ("oci".into(), "running".into())
    );
    assert_eq!(boxed["pid"], pid);
    assert!(boxed["vcpus"].as_u64().is_some_and(|v| v >= 1), "{boxed}");
    assert_eq!(tenant["kind"], "named");
    assert_eq!(tenant["vcpus"], 1);
    // runc's `ps ID` is unchanged: the container's host process.
    let ps_id = b.oci(&["ps", "--format", "json", "box"]);
    assert_eq!(
        ps_id.stdout.trim(),
        format!("[{pid}]"),
        "{}",
        ps_id.context()
    );
    let state = b.oci(&["state", "tenant"]);
    assert!(state.stdout.contains("\"running\""), "{}", state.context());
    let s = b.oci(&["stats", "--no-stream", "--format", "json", "box"]);
    assert_eq!(s.code(), Some(0), "{}", s.context());

    for name in ["box", "tenant"] {
        let r = b.oci(&["stop", "-t", "1", name]);
        assert_eq!(r.code(), Some(0), "stop {name}: {}", r.context());
    }
    assert!(!alive(pid));
    let left = b.oci(&["ps", "--format", "json"]);
    assert_eq!(left.stdout.trim(), "[]", "{}", left.context());
}

/// `logs -f` follows a detached tenant to its end; a tenant whose program ended stays listed
/// as stopped with its exit status, its log readable, until `stop` removes it.
#[test]
fn logs_follow_a_tenant_to_its_end_and_it_stays_listed_until_stopped() {
    let root = Root::new("follow");
    root.detached(
        "short",
        "1",
        "32M",
        "echo first; read x < /dev/null; /bin/sleep 1; echo second; exit 3",
    );
    let f = root.pvmux(&["logs", "-f", "short"]);
    assert_eq!(f.code(), Some(0), "{}", f.context());
    assert!(
        f.has_line("first") && f.has_line("second"),
        "{}",
        f.context()
    );
    let r = root.row("short");
    assert_eq!(r["state"], "stopped", "{r}");
    assert_eq!(r["exit_status"], 3, "{r}");
    assert!(root.pvmux(&["logs", "short"]).has_line("second"));
    let s = root.pvmux(&["stats", "--no-stream", "short"]);
    assert_ne!(s.code(), Some(0), "{}", s.context());
    assert!(s.stderr.contains("not running"), "{}", s.context());
    assert_eq!(root.pvmux(&["stop", "short"]).code(), Some(0));
    assert!(!root.state_dir("short").exists());
}
