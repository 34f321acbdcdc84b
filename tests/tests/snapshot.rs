//! Snapshot and restore (issue 14 item 4) with real guests, as an unprivileged user under a
//! temporary `--root`: a tenant running a shell loop that appends a counter to a file in
//! its `/tmp` every 10 ms, a pipeline whose writer and reader keep a pipe busy, and a
//! `sleep` (a timer) is snapshotted, restored twice from the one snapshot under new names,
//! and each restored tenant continues where it stopped: the same processes (pids), the
//! counter file intact and still growing by one with no restart, the pipe still connected.
//! The snapshot is sparse on disk; corrupted, truncated and foreign snapshots and a tenant
//! with host sockets are refused with a clear error, leaving nothing behind. A thread whose
//! FPU image the snapshot caught unfinished goes on with the initial FPU state.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pvmux_tests::oci::{wait_for, wait_for_success};
use pvmux_tests::state_root::StateRoot;
use pvmux_tests::TempDir;

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");

/// The guest's workload: a counter every 10 ms, a pipe kept busy, a sleeping process, and
/// the pids of all three recorded.
const SCRIPT: &str = "(while :; do echo tick; sleep 0.05; done) | \
     (while read l; do echo \"$l\" >> /tmp/pipe.log; done) & \
     echo $! > /tmp/reader.pid; sleep 1000 & echo $! > /tmp/sleep.pid; echo $$ > /tmp/loop.pid; \
     i=0; while :; do i=$((i+1)); echo $i >> /tmp/c; sleep 0.01; done";

/// A state root, and a directory for snapshots outside it.
struct Root(StateRoot, TempDir);

impl std::ops::Deref for Root {
    type Target = StateRoot;
    fn deref(&self) -> &StateRoot {
        &self.0
    }
}

impl Root {
    fn new(tag: &str) -> Self {
        Self(
            StateRoot::new(PVMUX, "pvmux-snapshot", tag),
            TempDir::unique("pvmux-snapshots", tag),
        )
    }

    fn start(&self, name: &str, mem: &str, extra: &[&str]) {
        let mut args = vec![
            "run", "--name", name, "--detach", "--vcpus", "2", "--mem", mem,
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--rootfs", "/", "--", "/bin/sh", "-c", SCRIPT]);
        let r = self.ok(&args);
        assert_eq!(r.stdout.trim(), name, "{}", r.context());
    }

    /// `sh -c CMD` in tenant `name`: its output.
    fn exec(&self, name: &str, cmd: &str) -> String {
        self.ok(&["exec", name, "--", "/bin/sh", "-c", cmd]).stdout
    }

    fn state(&self, name: &str) -> Option<String> {
        self.row(name)
            .map(|r| r["state"].as_str().unwrap_or("").to_owned())
    }

    /// A directory for a snapshot (outside the state root).
    fn dir(&self, sub: &str) -> PathBuf {
        self.1 .0.join(sub)
    }
}

/// The counter file's values, checked to be 1, 2, 3, ... with nothing lost or repeated.
fn counter(text: &str) -> u64 {
    let vals: Vec<u64> = text
        .lines()
        .map(|l| {
            l.trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad line {l:?}"))
        })
        .collect();
    for (i, v) in vals.iter().enumerate() {
        assert_eq!(
            *v,
            i as u64 + 1,
            "the counter restarted or lost a value: {vals:?}"
        );
    }
    vals.len() as u64
}

/// Waits until the tenant's counter passes `n`; returns it.
fn counter_past(root: &Root, name: &str, n: u64) -> u64 {
    let mut c = 0;
    wait_for(&format!("{name}'s counter to pass {n}"), || {
        // (Not there yet right after the start.)
        c = counter(&root.exec(name, "cat /tmp/c 2>/dev/null; true"));
        c > n
    });
    c
}

fn lines(s: &str) -> usize {
    s.lines().count()
}

#[test]
fn a_tenant_continues_where_it_stopped_twice_from_one_snapshot() {
    let root = Root::new("continue");
    root.start("src", "1G", &[]);
    // Long enough for the counter to count and the pipe to carry lines.
    std::thread::sleep(Duration::from_millis(1500));
    let snap = root.dir("snap");
    let s = root.ok(&["snapshot", "src", snap.to_str().unwrap()]);
    assert!(s.stdout.contains("2 vCPUs parked"), "{}", s.context());
    // Stopped afterwards (as `podman container checkpoint`).
    wait_for("the source to stop", || {
        root.state("src").as_deref() == Some("stopped")
    });
    // Sparse: a 1 GiB guest's snapshot takes a small part of it on disk.
    let on_disk: u64 = std::fs::read_dir(&snap)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
        .sum();
    assert!(on_disk < 64 << 20, "{on_disk} bytes on disk for 1 GiB");
    assert_eq!(
        std::fs::metadata(snap.join("memory.img")).unwrap().len(),
        1 << 30
    );

    for name in ["r1", "r2"] {
        let r = root.ok(&["restore", snap.to_str().unwrap(), "--name", name]);
        assert_eq!(r.stdout.trim(), name, "{}", r.context());
    }
    for name in ["r1", "r2"] {
        assert_eq!(root.state(name).as_deref(), Some("running"));
        // The same processes: the loop's shell is pid 1, the reader and the sleep are
        // alive under their old pids.
        let pids = root.exec(
            name,
            "for f in loop reader sleep; do p=$(cat /tmp/$f.pid); \
             test -d /proc/$p && echo $f=$p:alive; done",
        );
        assert!(pids.contains("loop=1:alive"), "{name}: {pids}");
        assert!(
            pids.contains("reader=") && pids.matches(":alive").count() == 3,
            "{name}: {pids}"
        );
        // The counter: intact and continuing (never back to 1).
        let a = counter(&root.exec(name, "cat /tmp/c"));
        let b = counter_past(&root, name, a + 20);
        assert!(b > a, "{name}: {a} -> {b}");
        // The pipe still carries lines from the writer to the reader.
        let p1 = lines(&root.exec(name, "cat /tmp/pipe.log"));
        wait_for(&format!("{name}'s pipe to carry more lines"), || {
            lines(&root.exec(name, "cat /tmp/pipe.log")) > p1 + 3
        });
    }
    // Two restores of one snapshot are independent tenants from the same instant: the same
    // counter prefix, each going on on its own.
    root.ok(&["stop", "-t", "1", "r1"]);
    let c2 = counter(&root.exec("r2", "cat /tmp/c"));
    assert!(c2 > 20);
    // A restored tenant is snapshotted and restored again (its park stacks, its new user
    // sandboxes), and goes on itself with --leave-running.
    let again = root.dir("again");
    root.ok(&["snapshot", "--leave-running", "r2", again.to_str().unwrap()]);
    root.ok(&["restore", again.to_str().unwrap(), "--name", "r3"]);
    let c3 = counter(&root.exec("r3", "cat /tmp/c"));
    assert!(c3 >= c2, "{c2} -> {c3}");
    counter_past(&root, "r3", c3 + 10);
    counter_past(&root, "r2", c3 + 10);
    root.ok(&["stop", "-t", "1", "r3"]);
    root.ok(&["stop", "-t", "1", "r2"]);
    root.ok(&["rm", "src"]);
    assert!(root.ps().is_empty());
}

/// The trusted in-process mode (`--user-isolation none`): init's address space runs in the
/// kernel sandbox. A restored tenant gets a new kernel sandbox in the same mode, whose user
/// window is empty and whose syscall entry is elsewhere: init maps its pages again and its
/// patched call sites jump to the new entry. The loop goes on counting, with the same pids.
#[test]
fn a_trusted_in_process_tenant_continues_after_a_restore() {
    let root = Root::new("trusted");
    root.start("src", "256M", &["--user-isolation", "none"]);
    counter_past(&root, "src", 20);
    let snap = root.dir("snap");
    root.ok(&["snapshot", "src", snap.to_str().unwrap()]);
    wait_for("the source to stop", || {
        root.state("src").as_deref() == Some("stopped")
    });
    root.ok(&["restore", snap.to_str().unwrap(), "--name", "r"]);
    let pids = root.exec(
        "r",
        "for f in loop reader sleep; do p=$(cat /tmp/$f.pid); \
         test -d /proc/$p && echo $f=$p:alive; done",
    );
    assert!(
        pids.contains("loop=1:alive") && pids.matches(":alive").count() == 3,
        "{pids}"
    );
    let a = counter(&root.exec("r", "cat /tmp/c"));
    counter_past(&root, "r", a + 20);
    root.ok(&["stop", "-t", "1", "r"]);
    root.ok(&["rm", "src"]);
}

/// An FPU image a snapshot caught unfinished — its slot's `fp_pending` word still set,
/// which the program forges on its own slot before it waits (a program can write its slots)
/// — is not read at the restore: the thread goes on with the initial FPU state, not with the
/// registers the new sandbox's thread happens to hold. The same program woken without a
/// snapshot keeps its registers across its wait (its slot still holds its exit), so the
/// reset is the restore's doing (`tests/programs/c/fp_lost_snapshot.c`).
#[test]
fn an_fpu_image_a_snapshot_caught_unfinished_comes_back_as_the_initial_state() {
    use pvmux_hypercalls::user::{UserSlot, USER_CTX_BASE, USER_SLOT_OFFSET};
    let root = Root::new("fplost");
    let prog = pvmux_tests::prog("fp-lost-snapshot");
    let prog = prog.to_str().unwrap();
    // Slot 0: the tenant has one vCPU.
    let pending = format!(
        "{:#x}",
        USER_CTX_BASE + USER_SLOT_OFFSET + std::mem::offset_of!(UserSlot, fp_pending) as u64
    );
    for name in ["ctl", "src"] {
        let r = root.ok(&[
            "run",
            "--name",
            name,
            "--detach",
            "--vcpus",
            "1",
            "--no-patch",
            "--mem",
            "256M",
            "--rootfs",
            "/",
            "--",
            prog,
            &pending,
            "/tmp",
        ]);
        assert_eq!(r.stdout.trim(), name, "{}", r.context());
    }
    let file = |name: &str, f: &str| root.exec(name, &format!("cat /tmp/{f} 2>/dev/null; true"));
    for name in ["ctl", "src"] {
        wait_for(&format!("{name} to arm"), || file(name, "armed") == "1\n");
    }
    let snap = root.dir("snap");
    root.ok(&["snapshot", "src", snap.to_str().unwrap()]);
    wait_for("the source to stop", || {
        root.state("src").as_deref() == Some("stopped")
    });
    root.ok(&["restore", snap.to_str().unwrap(), "--name", "r"]);
    let mut results = Vec::new();
    for name in ["ctl", "r"] {
        // The program's child ends once this file exists, and the program goes on.
        root.exec(name, "touch /tmp/go");
        wait_for(&format!("{name}'s result"), || {
            !file(name, "result").is_empty()
        });
        results.push(file(name, "result"));
    }
    assert!(
        results[0].starts_with("mxcsr=7f80 pattern=16 zero=0 wait=1"),
        "without a snapshot the registers are kept: {}",
        results[0]
    );
    assert!(
        results[1].starts_with("mxcsr=1f80 pattern=0 zero=16 wait=1"),
        "after the restore the state is the initial one: {}",
        results[1]
    );
    for name in ["ctl", "r"] {
        root.ok(&["stop", "-t", "1", name]);
    }
    root.ok(&["rm", "src"]);
}

/// `MemTotal` of tenant `name`'s `/proc/meminfo`, in KiB.
fn mem_total_kib(root: &Root, name: &str) -> u64 {
    let m = root.exec(name, "grep MemTotal: /proc/meminfo");
    m.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("MemTotal in {m:?}"))
}

/// Memory moved out of a kernel (`pvmux mem`: its balloon) is carried by a snapshot: the
/// host's record of the released pages goes with it, so the restored tenant has the size
/// it had — in the guest's `/proc/meminfo` and `pvmux mem`'s figures — and grows and
/// shrinks from there.
#[test]
fn a_tenant_with_memory_in_its_balloon_is_restored_with_it() {
    let root = Root::new("balloon");
    root.start("src", "384M", &["--mem-max", "384M"]);
    counter_past(&root, "src", 20);
    root.ok(&["mem", "src", "200M"]);
    assert_eq!(mem_total_kib(&root, "src"), 200 << 10);
    let snap = root.dir("snap");
    root.ok(&["snapshot", "src", snap.to_str().unwrap()]);
    wait_for("the source to stop", || {
        root.state("src").as_deref() == Some("stopped")
    });
    root.ok(&["restore", snap.to_str().unwrap(), "--name", "r"]);
    assert_eq!(mem_total_kib(&root, "r"), 200 << 10);
    // The host's figures before any change are the snapshot's.
    let figures = root.ok(&["mem", "--format", "json", "r", "+0M"]);
    let v: serde_json::Value = serde_json::from_str(figures.stdout.trim()).expect("mem JSON");
    assert_eq!(v["before"]["size"], 200u64 << 20, "{v}");
    let a = counter(&root.exec("r", "cat /tmp/c"));
    counter_past(&root, "r", a + 20);
    // It grows back and shrinks again: the released pages are the host's to give.
    root.ok(&["mem", "r", "320M"]);
    assert_eq!(mem_total_kib(&root, "r"), 320 << 10);
    root.ok(&["mem", "r", "160M"]);
    assert_eq!(mem_total_kib(&root, "r"), 160 << 10);
    root.ok(&["stop", "-t", "1", "r"]);
    root.ok(&["rm", "src"]);
}

/// The guest server of [`published_ports_listen_again_after_a_restore`]: answers each
/// connection's first bytes with its number (counted since start) and them, then waits for
/// the client to close.
const NUMBERED_SERVER: &str = r#"import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', 8000))
s.listen(8)
n = 0
while True:
    c, _ = s.accept()
    n += 1
    c.sendall(b'%d %s' % (n, c.recv(100)))
    while c.recv(100):
        pass
    c.close()
"#;

/// `--publish`: a snapshot while a published connection is open is refused (its host
/// socket cannot be carried) and the tenant goes on; once it is closed the snapshot is
/// taken, and the restored tenant — listening again on the published port from its own
/// arguments — serves the next connection with the count it had.
#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn published_ports_listen_again_after_a_restore() {
    use std::io::{Read, Write};
    let root = Root::new("publish");
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = free.local_addr().expect("port").port();
    drop(free);
    let rule = format!("127.0.0.1:{port}:8000");
    root.ok(&[
        "run",
        "--name",
        "p",
        "--detach",
        "--publish",
        &rule,
        "--rootfs",
        "/",
        "--",
        "/usr/bin/python3",
        "-c",
        NUMBERED_SERVER,
    ]);
    // A connection's answer: its number (None: closed unanswered, the guest not listening).
    let ask = |c: &mut std::net::TcpStream, what: &str| -> Option<u64> {
        c.write_all(what.as_bytes()).ok()?;
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).ok().filter(|&n| n > 0)?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let (num, rest) = text.split_once(' ')?;
        assert_eq!(rest, what, "{text}");
        num.parse().ok()
    };
    let mut last = 0;
    wait_for("the published server answers", || {
        let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        ask(&mut c, "probe").inspect(|&n| last = n).is_some()
    });
    let mut open = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    assert_eq!(ask(&mut open, "held"), Some(last + 1));
    let snap = root.dir("snap");
    let r = root.pvmux(&["snapshot", "p", snap.to_str().unwrap()]);
    assert_eq!(r.code(), Some(1), "{}", r.context());
    assert!(
        r.stderr.contains("1 published connection(s) are open"),
        "{}",
        r.context()
    );
    assert_eq!(root.state("p").as_deref(), Some("running"));
    assert!(!snap.join("manifest.json").exists());
    drop(open);
    // Once the guest has closed it, the snapshot is taken (the tenant stops).
    wait_for_success("a snapshot without open connections", || {
        root.pvmux(&["snapshot", "p", snap.to_str().unwrap()])
    });
    wait_for("the source to stop", || {
        root.state("p").as_deref() == Some("stopped")
    });
    // Its monitor may hold the published port a moment after it says it stopped.
    wait_for_success("the restored tenant to listen", || {
        root.pvmux(&["restore", snap.to_str().unwrap(), "--name", "r"])
    });
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    assert_eq!(ask(&mut c, "again"), Some(last + 2), "the count goes on");
    drop(c);
    root.ok(&["stop", "-t", "1", "r"]);
    root.ok(&["rm", "p"]);
}

/// Copies `from` to `to` keeping only the non-zero pages (a sparse copy).
fn sparse_copy(from: &Path, to: &Path) {
    let f = std::fs::File::open(from).unwrap();
    let len = f.metadata().unwrap().len();
    let t = std::fs::File::create(to).unwrap();
    t.set_len(len).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < len {
        let n = ((len - off) as usize).min(buf.len());
        f.read_exact_at(&mut buf[..n], off).unwrap();
        for (i, page) in buf[..n].chunks(4096).enumerate() {
            if page.iter().any(|&b| b != 0) {
                t.write_all_at(page, off + (i * 4096) as u64).unwrap();
            }
        }
        off += n as u64;
    }
}

/// A copy of snapshot `src` at `dst`, then `edit` applied.
fn variant(src: &Path, dst: &Path, edit: impl FnOnce(&Path)) {
    std::fs::create_dir_all(dst).unwrap();
    for f in ["manifest.json", "state.json"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    // The host file windows' bytes (the programs of a `--rootfs` tenant).
    for e in std::fs::read_dir(src).unwrap() {
        let name = e.unwrap().file_name();
        if name.to_string_lossy().starts_with("window-") {
            std::fs::copy(src.join(&name), dst.join(&name)).unwrap();
        }
    }
    sparse_copy(&src.join("memory.img"), &dst.join("memory.img"));
    edit(dst);
}

/// The first non-zero page's offset in `path`.
fn first_data_page(path: &Path) -> u64 {
    let f = std::fs::File::open(path).unwrap();
    let mut page = vec![0u8; 4096];
    let mut off = 0;
    loop {
        f.read_exact_at(&mut page, off).unwrap();
        if page.iter().any(|&b| b != 0) {
            return off;
        }
        off += 4096;
    }
}

fn edit_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("manifest.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn corrupted_truncated_and_foreign_snapshots_are_refused() {
    let root = Root::new("refused");
    root.start("src", "256M", &[]);
    std::thread::sleep(Duration::from_millis(500));
    let snap = root.dir("snap");
    let t = Instant::now();
    root.ok(&["snapshot", "--leave-running", "src", snap.to_str().unwrap()]);
    eprintln!("snapshot with --leave-running: {:?}", t.elapsed());
    // It goes on running, its counter intact.
    assert_eq!(root.state("src").as_deref(), Some("running"));
    let a = counter(&root.exec("src", "cat /tmp/c"));
    counter_past(&root, "src", a + 10);
    // A snapshot directory that is not empty is refused.
    let again = root.pvmux(&["snapshot", "--leave-running", "src", snap.to_str().unwrap()]);
    assert_eq!(again.code(), Some(1), "{}", again.context());
    assert!(again.stderr.contains("not empty"), "{}", again.context());

    // Its programs came from the host through windows: their bytes are in the snapshot.
    assert!(snap.join("window-0.img").exists(), "no window saved");
    type Edit = Box<dyn FnOnce(&Path)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "corrupt-window",
            Box::new(|d: &Path| {
                let w = d.join("window-0.img");
                let mut b = std::fs::read(&w).unwrap();
                b[100] ^= 0x40;
                std::fs::write(&w, b).unwrap();
            }),
            "window-0.img is corrupted",
        ),
        (
            "missing-window",
            Box::new(|d: &Path| std::fs::remove_file(d.join("window-0.img")).unwrap()),
            "window-0.img",
        ),
        (
            "corrupt-memory",
            Box::new(|d: &Path| {
                let m = d.join("memory.img");
                let at = first_data_page(&m) + 100;
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&m)
                    .unwrap();
                let mut b = [0u8; 1];
                f.read_exact_at(&mut b, at).unwrap();
                f.write_all_at(&[b[0] ^ 0x5a], at).unwrap();
            }),
            "memory.img is corrupted",
        ),
        (
            "corrupt-state",
            Box::new(|d: &Path| {
                let p = d.join("state.json");
                let s = std::fs::read_to_string(&p).unwrap();
                std::fs::write(&p, s.replacen("\"nr_vcpus\": 2", "\"nr_vcpus\": 3", 1)).unwrap();
            }),
            "state.json is corrupted",
        ),
        (
            "truncated",
            Box::new(|d: &Path| {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("memory.img"))
                    .unwrap();
                f.set_len(64 << 20).unwrap();
            }),
            "truncated",
        ),
        (
            "other-abi",
            Box::new(|d: &Path| edit_manifest(d, |v| v["abi"] = 5.into())),
            "foreign snapshot: guest ABI version 5",
        ),
        (
            "other-format",
            Box::new(|d: &Path| edit_manifest(d, |v| v["format"] = 99.into())),
            "foreign snapshot: snapshot format version 99",
        ),
        (
            "other-kernel",
            Box::new(|d: &Path| edit_manifest(d, |v| v["kernel"] = "crc32:00000000:len:1".into())),
            "foreign snapshot: it was taken with kernel image crc32:00000000",
        ),
        (
            "no-manifest",
            Box::new(|d: &Path| std::fs::remove_file(d.join("manifest.json")).unwrap()),
            "manifest.json",
        ),
    ];
    for (tag, edit, want) in cases {
        let d = root.dir(tag);
        variant(&snap, &d, edit);
        let r = root.pvmux(&["restore", d.to_str().unwrap(), "--name", tag]);
        assert_eq!(r.code(), Some(1), "{tag}: {}", r.context());
        assert!(
            r.stderr.contains(want),
            "{tag}: want {want:?}: {}",
            r.context()
        );
        // Nothing started, nothing left.
        assert_eq!(root.state(tag), None, "{tag}");
        assert!(!root.0.dir().join(tag).join("state.json").exists(), "{tag}");
    }
    // The untouched snapshot restores.
    let good = root.dir("good");
    variant(&snap, &good, |_| {});
    root.ok(&["restore", good.to_str().unwrap(), "--name", "good"]);
    let c = counter(&root.exec("good", "cat /tmp/c"));
    counter_past(&root, "good", c + 10);
    root.ok(&["stop", "-t", "1", "good"]);
    root.ok(&["stop", "-t", "1", "src"]);
}

#[test]
fn host_sockets_are_refused_before_the_guest_is_asked() {
    let root = Root::new("net");
    root.start("n", "256M", &["--net", "host"]);
    let snap = root.dir("snap");
    let r = root.pvmux(&["snapshot", "n", snap.to_str().unwrap()]);
    assert_eq!(r.code(), Some(1), "{}", r.context());
    assert!(r.stderr.contains("host sockets"), "{}", r.context());
    // It goes on running; no snapshot was written.
    assert_eq!(root.state("n").as_deref(), Some("running"));
    assert!(!snap.join("manifest.json").exists());
    root.ok(&["stop", "-t", "1", "n"]);
}
