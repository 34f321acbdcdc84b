//! `exec --process FILE` (runc's process JSON, as engines pass it) gives the exec'd program
//! the supplementary groups of `user.additionalGids` and the capability sets of
//! `capabilities` (exec request flags `GROUPS` and `CAPS`): `id -G` and the `Cap*` lines of
//! `/proc/self/status` in the guest, against what Linux's rules make of the JSON and, with
//! runc, against runc running the same bundle and process JSON. Ignored without
//! busybox-static (and runc and root for the comparison).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pvmux_tests::oci::{reap, Bundle, TIMEOUT};
use pvmux_tests::{run_with_timeout, Run};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");

/// What the exec'd program prints: its groups (`id -G`) and its capability sets.
const REPORT: &str = "id -G; busybox grep '^Cap' /proc/self/status";

/// A process JSON running [`REPORT`] as `user`, with `capabilities` if given.
fn process(user: serde_json::Value, caps: Option<serde_json::Value>) -> serde_json::Value {
    let mut p = serde_json::json!({
        "args": ["sh", "-c", REPORT],
        "cwd": "/",
        "env": ["PATH=/bin"],
        "user": user,
    });
    if let Some(c) = caps {
        p["capabilities"] = c;
    }
    p
}

/// The reduced sets the tests ask for: a bounding set of three, two permitted, one
/// effective, inheritable and ambient (capabilities 0, 5, 13).
fn reduced_caps() -> serde_json::Value {
    serde_json::json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "permitted": ["CAP_CHOWN", "CAP_KILL"],
        "effective": ["CAP_KILL"],
        "inheritable": ["CAP_KILL"],
        "ambient": ["CAP_KILL"],
    })
}

/// The mask of a JSON list of capability names (the few the tests use).
fn mask(names: &serde_json::Value) -> u64 {
    names
        .as_array()
        .expect("a list of capabilities")
        .iter()
        .map(|n| match n.as_str().expect("a name") {
            "CAP_CHOWN" => 1 << 0,
            "CAP_KILL" => 1 << 5,
            "CAP_NET_RAW" => 1 << 13,
            other => panic!("no number for {other} in this test"),
        })
        .fold(0, |m, b| m | b)
}

/// The `Cap*` lines Linux shows for a program started with `caps` (the sets before its
/// `execve`, as runc sets them) as user `uid`: root gets its bounding and inheritable sets
/// (and the ambient one) as permitted and effective, anyone else its ambient set only.
fn caps_after_exec(caps: &serde_json::Value, uid: u32) -> String {
    let (bnd, inh, amb) = (
        mask(&caps["bounding"]),
        mask(&caps["inheritable"]),
        mask(&caps["ambient"]),
    );
    let (prm, eff) = if uid == 0 {
        (bnd | inh | amb, bnd | inh | amb)
    } else {
        (amb, amb)
    };
    format!(
        "CapInh:\t{inh:016x}\nCapPrm:\t{prm:016x}\nCapEff:\t{eff:016x}\nCapBnd:\t{bnd:016x}\n\
         CapAmb:\t{amb:016x}\n"
    )
}

/// Splits a [`REPORT`] into the `id -G` line and the `Cap*` lines.
fn split(report: &str) -> (&str, String) {
    let (ids, caps) = report
        .split_once('\n')
        .unwrap_or_else(|| panic!("no id -G line: {report:?}"));
    (ids, caps.to_owned())
}

/// A pvmux container running `sleep 1000` in bundle `b`, started.
struct Container<'a> {
    b: &'a Bundle,
    id: &'a str,
    pid: i32,
}

impl<'a> Container<'a> {
    fn start(b: &'a Bundle, id: &'a str) -> Self {
        let (code, err, pid) = b.create(id, None);
        assert_eq!(code, 0, "create: {err}");
        let pid = pid.expect("pid file");
        let c = Self { b, id, pid };
        assert_eq!(b.oci(&["start", id]).code(), Some(0));
        c
    }

    /// `pvmux exec --process FILE ID` with `p` as the file.
    fn exec(&self, tag: &str, p: &serde_json::Value) -> Run {
        let f = self.b.path().join(format!("process-{tag}.json"));
        std::fs::write(&f, p.to_string()).expect("write process.json");
        self.b
            .oci(&["exec", "--process", f.to_str().unwrap(), self.id])
    }

    /// Like [`Container::exec`]; the program's output, which must succeed.
    fn report(&self, tag: &str, p: &serde_json::Value) -> String {
        let r = self.exec(tag, p);
        assert_eq!(r.code(), Some(0), "{}", r.context());
        r.stdout
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let killed = self.b.oci(&["kill", self.id, "KILL"]).code();
        let status = reap(self.pid);
        let deleted = self.b.oci(&["delete", self.id]).code();
        if !std::thread::panicking() {
            assert_eq!((killed, status, deleted), (Some(0), 137, Some(0)));
        }
    }
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn exec_process_gives_its_groups_and_capabilities() {
    let b = Bundle::new(PVMUX, &["sleep", "1000"], serde_json::json!({}));
    let c = Container::start(&b, "ids1");

    // Root with groups (unsorted, one twice: the set) and reduced sets.
    let caps = reduced_caps();
    let root = c.report(
        "root",
        &process(
            serde_json::json!({"uid": 0, "gid": 0, "additionalGids": [20, 3, 10, 3]}),
            Some(caps.clone()),
        ),
    );
    let (ids, sets) = split(&root);
    assert_eq!(ids, "0 3 10 20", "{root}");
    assert_eq!(sets, caps_after_exec(&caps, 0), "{root}");

    // Another user keeps only its ambient set, and has exactly its groups.
    let user = c.report(
        "user",
        &process(
            serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [5]}),
            Some(caps.clone()),
        ),
    );
    let (ids, sets) = split(&user);
    assert_eq!(ids, "1000 5", "{user}");
    assert_eq!(sets, caps_after_exec(&caps, 1000), "{user}");

    // Without them: no supplementary groups, the container's sets (root's: every one).
    let plain = c.report(
        "plain",
        &process(serde_json::json!({"uid": 0, "gid": 0}), None),
    );
    let (ids, sets) = split(&plain);
    assert_eq!(ids, "0", "{plain}");
    let full = format!("{:016x}", (1u64 << 41) - 1);
    for set in ["CapPrm", "CapEff", "CapBnd"] {
        assert!(
            sets.contains(&format!("{set}:\t{full}\n")),
            "{set} is not full: {plain}"
        );
    }

    // The reduced sets hold in the guest: without CAP_CHOWN (not in the bounding set of
    // this one) root cannot give a file away; with it, it can.
    let chown = |tag: &str, bounding: serde_json::Value| {
        let mut p = process(
            serde_json::json!({"uid": 0, "gid": 0}),
            Some(serde_json::json!({
                "bounding": bounding, "permitted": [], "effective": [],
                "inheritable": [], "ambient": [],
            })),
        );
        p["args"] = serde_json::json!(["sh", "-c", "touch /tmp/f-$$ && busybox chown 7 /tmp/f-$$"]);
        c.exec(tag, &p)
    };
    let denied = chown("nochown", serde_json::json!(["CAP_KILL"]));
    assert_eq!(denied.code(), Some(1), "{}", denied.context());
    assert!(
        denied.stderr.contains("Operation not permitted"),
        "{}",
        denied.context()
    );
    let allowed = chown("chown", serde_json::json!(["CAP_CHOWN"]));
    assert_eq!(allowed.code(), Some(0), "{}", allowed.context());

    // Sets Linux cannot hold are refused before anything runs (runc's `capset` fails).
    let bad = c.exec(
        "bad",
        &process(
            serde_json::json!({"uid": 0, "gid": 0}),
            Some(serde_json::json!({
                "bounding": ["CAP_KILL"], "permitted": [], "effective": ["CAP_KILL"],
            })),
        ),
    );
    assert_eq!(bad.code(), Some(1), "{}", bad.context());
    assert!(
        bad.stderr.contains("not in the permitted set"),
        "{}",
        bad.context()
    );
}

/// runc running a bundle, for comparison: its own state root; killed and deleted on drop.
struct Runc {
    root: PathBuf,
    bundle: PathBuf,
    id: &'static str,
}

/// runc, for comparison.
const RUNC: &str = "/usr/sbin/runc";

impl Runc {
    fn cmd(&self) -> Command {
        let mut cmd = Command::new(RUNC);
        cmd.arg("--root").arg(&self.root);
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut cmd = self.cmd();
        cmd.args(args).current_dir(&self.bundle);
        let what = format!("{cmd:?}");
        run_with_timeout(cmd, &what, TIMEOUT, Duration::from_millis(10), |_| {})
    }

    /// `runc run --detach` of the bundle's `config.json`.
    fn start(bundle: &Path, id: &'static str) -> Self {
        let r = Self {
            root: bundle.join("runc-root"),
            bundle: bundle.to_owned(),
            id,
        };
        let status = r
            .cmd()
            .args(["run", "--detach", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run runc");
        assert!(status.success(), "runc run --detach: {status}");
        r
    }

    fn report(&self, file: &Path) -> String {
        let r = self.run(&["exec", "--process", file.to_str().unwrap(), self.id]);
        assert_eq!(r.code(), Some(0), "{}", r.context());
        r.stdout
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        let _ = self.run(&["delete", "--force", self.id]);
    }
}

#[test]
#[cfg_attr(
    not(all(have_busybox, have_runc, have_root)),
    ignore = "needs /bin/busybox, runc and root: apt-get install busybox-static runc"
)]
fn exec_process_ids_match_runc() {
    // The namespaces runc needs for a root of its own; pvmux's guest kernel is all of them.
    let b = Bundle::new(
        PVMUX,
        &["sleep", "1000"],
        serde_json::json!({"linux": {"namespaces": [
            {"type": "mount"}, {"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
        ]}}),
    );
    let c = Container::start(&b, "ids2");
    let native = Runc::start(b.path(), "ids2-runc");
    let all_sets = serde_json::json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "inheritable": [],
        "ambient": [],
    });
    let cases = [
        (
            "root",
            serde_json::json!({"uid": 0, "gid": 0, "additionalGids": [20, 3, 10]}),
            Some(reduced_caps()),
        ),
        (
            "user",
            serde_json::json!({"uid": 1000, "gid": 100, "additionalGids": [5, 7]}),
            Some(reduced_caps()),
        ),
        (
            "user-no-ambient",
            serde_json::json!({"uid": 1000, "gid": 100}),
            Some(all_sets),
        ),
    ];
    for (tag, user, caps) in cases {
        let p = process(user, caps);
        let pvmux = c.report(tag, &p);
        let file = b.path().join(format!("process-{tag}.json"));
        let runc = native.report(&file);
        assert_eq!(pvmux, runc, "{tag}: pvmux (left) and runc (right) differ");
    }
}

#[test]
#[cfg_attr(
    not(all(have_busybox, have_runc, have_root)),
    ignore = "needs /bin/busybox, runc and root: apt-get install busybox-static runc"
)]
fn init_capabilities_match_runc() {
    // The container's own process (init): config.json's sets are those it holds when it
    // calls execve, as runc's capset leaves them; Linux's execve rules then apply.
    let cases = [
        ("root", serde_json::json!({"uid": 0, "gid": 0})),
        ("user", serde_json::json!({"uid": 1000, "gid": 100})),
    ];
    for (tag, user) in cases {
        let b = Bundle::new(
            PVMUX,
            &["busybox", "grep", "^Cap", "/proc/self/status"],
            serde_json::json!({"linux": {"namespaces": [
                {"type": "mount"}, {"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
            ]}}),
        );
        let config = b.path().join("config.json");
        let mut c: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        c["process"]["user"] = user;
        c["process"]["capabilities"] = reduced_caps();
        std::fs::write(&config, c.to_string()).unwrap();
        let id = format!("init-{tag}");
        let pvmux = pvmux_tests::oci::run_bundle(&b, &id);
        assert_eq!(pvmux.code(), Some(0), "{}", pvmux.context());
        let mut cmd = Command::new(RUNC);
        cmd.arg("--root")
            .arg(b.path().join("runc-root"))
            .args(["run", "--bundle"])
            .arg(b.path())
            .arg(format!("{id}-runc"))
            .stdin(Stdio::null());
        let native = run_with_timeout(cmd, "runc run", TIMEOUT, Duration::from_millis(10), |_| {});
        assert_eq!(native.code(), Some(0), "{}", native.context());
        assert_eq!(
            pvmux.stdout, native.stdout,
            "{tag}: pvmux (left) and runc (right) differ"
        );
    }
}
