//! runc's `pause`, `resume`, `update` and `events` of pvmux containers with real guests:
//! a paused guest runs no instruction and its processes use no CPU, a killed or force-deleted
//! paused container leaves no process, podman pauses and unpauses through pvmux, an update of
//! the task limit reaches the guest (a fork loop stops there) while one that cannot apply
//! changes nothing, and `events --stats` reports the tenant's real figures. Ignored (`needs
//! /bin/busybox`) without busybox-static.

use std::time::Duration;

use std::sync::Arc;

use pvmux_host::{PauseError, ResourceError, TaskLimit, TenantConfig, TenantOutcome};
use pvmux_hypercalls::BootArgsBuf;
use pvmux_tests::oci::{alive, children, reap, wait_for, Bundle, Podman};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");

/// The host library's pause, without the OCI layer: a tenant with a watchdog far shorter than
/// the pause survives it (the watchdog does not look while it is paused), its guest answers
/// nothing while paused, a task limit set meanwhile is taken when it resumes, and it then
/// ends as it would have.
#[test]
fn a_paused_tenant_outlives_its_watchdog_and_ends_normally() {
    let host = pvmux_tests::host();
    let (input, gate) = std::io::pipe().expect("pipe");
    let options = pvmux_hypercalls::bootargs::Options {
        hostfs: true,
        ..Default::default()
    };
    let share = pvmux_host::hostfs::HostFs::open(std::path::Path::new(env!("PVMUX_PROG_DIR")))
        .expect("share the test programs");
    let cfg = TenantConfig {
        boot_args: BootArgsBuf::new(&options, [], ["/toolbox", "wait-eof", "5"]).unwrap(),
        console_input: Some(pvmux_host::ConsoleInput::Reader(Box::new(input))),
        hostfs: Some(Arc::new(share)),
        watchdog: Some(Duration::from_millis(200)),
        ..pvmux_tests::config("paused", "", 2)
    };
    let t = host.launch(cfg).expect("launch");
    assert!(t.wait_started(Duration::from_secs(10)));
    let h = t.handle();
    assert_eq!(h.resume(), Err(PauseError::NotPaused));
    // Running: the guest answers, once its program runs with its own task.
    wait_for("the program runs", || {
        h.guest_stats().expect("figures").tasks >= 1
    });
    let before = h.guest_stats().expect("figures");
    assert_eq!(before.mem_total, 64 << 20, "{before:?}");
    assert!(before.mem_free < before.mem_total, "{before:?}");
    h.pause().expect("pause");
    assert!(h.is_paused());
    assert_eq!(h.pause(), Err(PauseError::AlreadyPaused));
    // Paused: the last figures stand in; a task limit waits for the resume.
    assert_eq!(h.set_task_limit(TaskLimit::Max(9)), Ok(None));
    let paused = h.guest_stats().expect("the last figures");
    assert_eq!(paused.task_limit, before.task_limit);
    // Five watchdog periods.
    std::thread::sleep(Duration::from_secs(1));
    h.resume().expect("resume");
    wait_for("the guest takes the limit", || {
        h.guest_stats().is_ok_and(|s| s.task_limit == 9)
    });
    drop(gate);
    assert_eq!(t.wait(), TenantOutcome::Exited(5));
    assert_eq!(h.pause(), Err(PauseError::NotRunning));
    assert_eq!(h.guest_stats(), Err(ResourceError::NotRunning));
}

/// A guest that counts as fast as it can into `/out/c`.
const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo $i > /out/c; done";

/// CPU time (clock ticks) of process `pid` and its children (the monitor and its sandboxes).
fn ticks(pid: i32) -> u64 {
    let one = |p: i32| {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .ok()
            .and_then(|s| {
                let f: Vec<u64> = s[s.rfind(')')? + 1..]
                    .split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|x| x.parse().ok())
                    .collect();
                Some(f.iter().sum::<u64>())
            })
            .unwrap_or(0)
    };
    one(pid) + children(pid).into_iter().map(one).sum::<u64>()
}

fn counter(b: &Bundle) -> Option<u64> {
    std::fs::read_to_string(b.out("c"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Creates and starts container `id` of `b`; its pid.
fn start(b: &Bundle, id: &str) -> i32 {
    let (code, err, pid) = b.create(id, None);
    assert_eq!(code, 0, "create: {err}");
    let r = b.oci(&["start", id]);
    assert_eq!(r.code(), Some(0), "start: {}", r.context());
    pid.expect("pid file")
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn pause_stops_the_guest_and_resume_continues_it() {
    let b = Bundle::new(PVMUX, &["sh", "-c", COUNTER], serde_json::json!({}));
    let pid = start(&b, "p1");
    wait_for("the guest counts", || counter(&b).is_some_and(|c| c > 10));
    // Not paused: resume is runc's error.
    let r = b.oci(&["resume", "p1"]);
    assert_eq!(r.code(), Some(1), "{}", r.context());
    assert!(r.stderr.contains("not paused"), "{}", r.context());
    // Running, it uses CPU.
    let t0 = ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let running = ticks(pid) - t0;
    let r = b.oci(&["pause", "p1"]);
    assert_eq!(r.code(), Some(0), "pause: {}", r.context());
    assert_eq!(b.state("p1"), ("paused".to_owned(), i64::from(pid)));
    let l = b.oci(&["list", "--format", "json"]);
    assert!(l.stdout.contains(r#""status":"paused""#), "{}", l.context());
    let again = b.oci(&["pause", "p1"]);
    assert_eq!(again.code(), Some(1), "{}", again.context());
    assert!(again.stderr.contains("paused"), "{}", again.context());
    // Paused: the counter stands still and nothing of the container uses CPU.
    let before = std::fs::read(b.out("c")).unwrap();
    let t1 = ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let paused = ticks(pid) - t1;
    assert_eq!(std::fs::read(b.out("c")).unwrap(), before, "the guest ran");
    eprintln!("CPU ticks over 1 s: {running} running, {paused} paused");
    assert!(
        paused <= 1 && running >= 3,
        "CPU ticks over 1 s: {running} running, {paused} paused"
    );
    // exec into it is refused, clearly.
    let e = b.oci(&["exec", "p1", "true"]);
    assert_ne!(e.code(), Some(0), "{}", e.context());
    assert!(e.stderr.contains("paused"), "{}", e.context());
    // Resumed, it counts on from where it stopped.
    let r = b.oci(&["resume", "p1"]);
    assert_eq!(r.code(), Some(0), "resume: {}", r.context());
    assert_eq!(b.state("p1").0, "running");
    let stopped_at: u64 = String::from_utf8_lossy(&before).trim().parse().unwrap_or(0);
    wait_for("the guest counts again", || {
        counter(&b).is_some_and(|c| c > stopped_at + 10)
    });
    // kill -9 of a paused container: it dies at once, sandboxes and all.
    let r = b.oci(&["pause", "p1"]);
    assert_eq!(r.code(), Some(0), "pause: {}", r.context());
    let sandboxes = children(pid);
    assert!(!sandboxes.is_empty());
    let k = b.oci(&["kill", "p1", "KILL"]);
    assert_eq!(k.code(), Some(0), "{}", k.context());
    assert_eq!(reap(pid), 137);
    wait_for("the sandboxes die with it", || {
        sandboxes.iter().all(|p| !alive(*p))
    });
    assert_eq!(b.state("p1").0, "stopped");
    let r = b.oci(&["pause", "p1"]);
    assert_eq!(r.code(), Some(1), "{}", r.context());
    assert!(r.stderr.contains("not running"), "{}", r.context());
    let d = b.oci(&["delete", "p1"]);
    assert_eq!(d.code(), Some(0), "{}", d.context());
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn delete_force_of_a_paused_container_leaves_nothing() {
    let b = Bundle::new(PVMUX, &["sh", "-c", COUNTER], serde_json::json!({}));
    let pid = start(&b, "d1");
    wait_for("the guest counts", || counter(&b).is_some());
    let r = b.oci(&["pause", "d1"]);
    assert_eq!(r.code(), Some(0), "pause: {}", r.context());
    let sandboxes = children(pid);
    let d = b.oci(&["delete", "d1"]);
    assert_eq!(d.code(), Some(1), "{}", d.context());
    assert!(d.stderr.contains("paused"), "{}", d.context());
    let d = b.oci(&["delete", "--force", "d1"]);
    assert_eq!(d.code(), Some(0), "{}", d.context());
    assert!(!alive(pid));
    // The sandboxes die with their monitor (its parent-death signal), stopped or not.
    wait_for("no sandbox is left", || {
        sandboxes.iter().all(|p| !alive(*p))
    });
    assert!(!b.root().join("d1").exists());
    reap(pid);
}

/// `events --stats` of container `id`: its `data`.
#[track_caller]
fn stats(b: &Bundle, id: &str) -> serde_json::Value {
    let r = b.oci(&["events", "--stats", id]);
    assert_eq!(r.code(), Some(0), "events: {}", r.context());
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.context());
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], id);
    v["data"].clone()
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn events_stats_are_the_tenants_real_figures() {
    // It spins (without forking) until SIGUSR1, then starts a `sleep` in the background.
    let script =
        "trap 'go=1' USR1; echo up > /out/up; while [ -z \"$go\" ]; do :; done; sleep 1000 & \
                  echo started > /out/started; wait";
    let mem: u64 = 256 << 20;
    let b = Bundle::new(
        PVMUX,
        &["sh", "-c", script],
        serde_json::json!({ "linux": { "resources": { "memory": { "limit": mem } } } }),
    );
    let pid = start(&b, "e1");
    wait_for("the shell runs", || b.out("up").exists());
    // The CPU figure is the tenant cgroup's counter (where there is one), which counts from
    // the moment the sandboxes joined it, and a running thread's time reaches it at the next
    // scheduler tick: right after start-up it can still read 0 (CI saw it once). The shell
    // spins, so it must become positive: look a few times, 20 ms apart.
    let mut s1 = stats(&b, "e1");
    for _ in 0..50 {
        if s1["cpu"]["usage"]["total"].as_u64() != Some(0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        s1 = stats(&b, "e1");
    }
    // Only the shell runs (it spins, without forking).
    assert_eq!(s1["pids"]["current"], 1, "{s1}");
    assert!(s1["pids"]["limit"].as_u64().unwrap() > 1, "{s1}");
    assert_eq!(s1["memory"]["usage"]["limit"], mem, "{s1}");
    let used = s1["memory"]["usage"]["usage"].as_u64().unwrap();
    assert!(used > 0 && used < mem, "{s1}");
    let cpu1 = s1["cpu"]["usage"]["total"].as_u64().unwrap();
    assert!(cpu1 > 0, "{s1}");
    let r = b.oci(&["kill", "e1", "USR1"]);
    assert_eq!(r.code(), Some(0), "{}", r.context());
    wait_for("the guest forked", || b.out("started").exists());
    let s2 = stats(&b, "e1");
    assert_eq!(s2["pids"]["current"], 2, "sh and its sleep: {s2}");
    assert!(s2["cpu"]["usage"]["total"].as_u64().unwrap() > cpu1, "{s2}");
    // Paused: the guest cannot answer; the figures are its last report.
    let r = b.oci(&["pause", "e1"]);
    assert_eq!(r.code(), Some(0), "pause: {}", r.context());
    let s3 = stats(&b, "e1");
    assert_eq!(s3["pids"], s2["pids"], "{s3}");
    let d = b.oci(&["delete", "--force", "e1"]);
    assert_eq!(d.code(), Some(0), "{}", d.context());
    reap(pid);
    // Of a container that does not run: runc's error.
    let r = b.oci(&["events", "--stats", "e1"]);
    assert_eq!(r.code(), Some(1), "{}", r.context());
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn events_streams_until_the_container_stops() {
    use std::io::BufRead;
    let script = "trap 'go=1' USR1; echo up > /out/up; while [ -z \"$go\" ]; do :; done";
    let b = Bundle::new(PVMUX, &["sh", "-c", script], serde_json::json!({}));
    let pid = start(&b, "s1");
    wait_for("the shell runs", || b.out("up").exists());
    let mut ev = std::process::Command::new(PVMUX)
        .arg("--root")
        .arg(b.root())
        .args(["events", "--interval", "100ms", "s1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run pvmux events");
    let mut lines = std::io::BufReader::new(ev.stdout.take().unwrap()).lines();
    let mut stats = |what: &str| -> Option<serde_json::Value> {
        let line = lines.next()?.unwrap_or_else(|e| panic!("{what}: {e}"));
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(
            (v["type"].as_str(), v["id"].as_str()),
            (Some("stats"), Some("s1"))
        );
        Some(v)
    };
    for i in 0..2 {
        let v = stats("a line").unwrap_or_else(|| panic!("line {i}"));
        assert_eq!(v["data"]["pids"]["current"], 1, "{v}");
    }
    let r = b.oci(&["kill", "s1", "USR1"]);
    assert_eq!(r.code(), Some(0), "{}", r.context());
    assert_eq!(reap(pid), 0);
    // The stream ends with the container.
    while stats("a last line").is_some() {}
    assert_eq!(pvmux_tests::oci::wait_child(&mut ev), 0);
    let d = b.oci(&["delete", "s1"]);
    assert_eq!(d.code(), Some(0), "{}", d.context());
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn update_of_the_task_limit_reaches_the_guest() {
    // After SIGUSR1, fork until a fork fails (busybox sh then exits): /out/n counts the
    // forks.
    let script = "trap 'go=1' USR1; echo up > /out/up; while [ -z \"$go\" ]; do :; done; n=0; \
                  while :; do sleep 100 & n=$((n+1)); echo $n > /out/n; done";
    let b = Bundle::new(
        PVMUX,
        &["sh", "-c", script],
        serde_json::json!({ "linux": { "resources": { "pids": { "limit": 64 } } } }),
    );
    let pid = start(&b, "u1");
    wait_for("the shell runs", || b.out("up").exists());
    assert_eq!(stats(&b, "u1")["pids"]["limit"], 64);
    // What cannot change is refused, naming its flag, and nothing changes.
    let r = b.oci(&["update", "--memory", "4g", "--pids-limit", "3", "u1"]);
    assert_eq!(r.code(), Some(1), "{}", r.context());
    assert!(r.stderr.contains("--memory"), "{}", r.context());
    assert_eq!(stats(&b, "u1")["pids"]["limit"], 64, "nothing changed");
    // The new limit: the guest's own figures show it, and the fork loop stops there.
    let r = b.oci(&["update", "--pids-limit", "5", "u1"]);
    assert_eq!(r.code(), Some(0), "update: {}", r.context());
    assert_eq!(stats(&b, "u1")["pids"]["limit"], 5);
    let r = b.oci(&["kill", "u1", "USR1"]);
    assert_eq!(r.code(), Some(0), "{}", r.context());
    assert_ne!(reap(pid), 0, "the shell ends when a fork fails");
    let n = std::fs::read_to_string(b.out("n")).unwrap_or_default();
    assert_eq!(n.trim(), "4", "sh and 4 sleeps make 5 tasks");
    assert!(b.stderr("u1").contains("can't fork"), "{}", b.stderr("u1"));
    let d = b.oci(&["delete", "u1"]);
    assert_eq!(d.code(), Some(0), "{}", d.context());
}

#[test]
#[cfg_attr(
    not(all(have_busybox, have_podman)),
    ignore = "needs /bin/busybox and podman: apt-get install busybox-static podman"
)]
fn podman_pauses_unpauses_and_updates_through_pvmux() {
    let p = Podman::new(PVMUX);
    let d = p.podman(
        Some(PVMUX),
        &[
            "run",
            "-d",
            "--cpus",
            "0.5",
            &p.image,
            "sh",
            "-c",
            "while :; do :; done",
        ],
    );
    assert_eq!(d.code(), Some(0), "{}", d.context());
    let id = d.stdout.trim().to_owned();
    let inspect = |f: &str| {
        let r = p.podman(Some(PVMUX), &["inspect", "--format", f, &id]);
        r.stdout.trim().to_owned()
    };
    wait_for("the container runs", || {
        inspect("{{.State.Status}}") == "running"
    });
    // podman pauses through the runtime's `pause` and `resume`.
    let r = p.podman(Some(PVMUX), &["pause", &id]);
    assert_eq!(r.code(), Some(0), "{}", r.context());
    assert_eq!(inspect("{{.State.Status}}"), "paused");
    let r = p.podman(Some(PVMUX), &["unpause", &id]);
    assert_eq!(r.code(), Some(0), "{}", r.context());
    assert_eq!(inspect("{{.State.Status}}"), "running");
    // `podman update` passes `update --resources=FILE`: the CPU quota reaches the tenant
    // cgroup of the sandboxes; a memory change is refused.
    let monitor: i32 = inspect("{{.State.Pid}}")
        .parse()
        .expect("the container's pid");
    let sandbox = children(monitor)[0];
    let r = p.podman(
        Some(PVMUX),
        &[
            "update",
            "--cpu-quota",
            "20000",
            "--cpu-period",
            "50000",
            &id,
        ],
    );
    assert_eq!(r.code(), Some(0), "{}", r.context());
    assert_eq!(cpu_max(sandbox), (Some(20_000), 50_000));
    let r = p.podman(Some(PVMUX), &["update", "--memory", "64m", &id]);
    assert_ne!(r.code(), Some(0), "{}", r.context());
    assert!(r.stderr.contains("--memory"), "{}", r.context());
    assert_eq!(cpu_max(sandbox), (Some(20_000), 50_000), "nothing changed");
    let r = p.podman(Some(PVMUX), &["rm", "-f", "-t", "0", &id]);
    assert_eq!(r.code(), Some(0), "{}", r.context());
}

/// The CFS quota (`None`: none) and period of the cgroup of process `pid`: v1's `cpu`
/// hierarchy, else v2's.
fn cpu_max(pid: i32) -> (Option<u64>, u64) {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    for line in cgroups.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if ctl.split(',').any(|c| c == "cpu") {
            let d = format!("/sys/fs/cgroup/{ctl}{path}");
            let read = |n: &str| std::fs::read_to_string(format!("{d}/{n}")).unwrap();
            let q: i64 = read("cpu.cfs_quota_us").trim().parse().unwrap();
            let period = read("cpu.cfs_period_us").trim().parse().unwrap();
            return (u64::try_from(q).ok(), period);
        }
    }
    let path = cgroups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cpu cgroup");
    let max = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/cpu.max")).unwrap();
    let mut it = max.split_whitespace();
    let q = it.next().unwrap().parse().ok();
    (q, it.next().unwrap().parse().unwrap())
}
