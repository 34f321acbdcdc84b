//! Memory that moves between kernels (`pvmux mem NAME SIZE`, docs/MULTIKERNEL.md): a running
//! container's guest memory shrinks (its balloon takes free frames, the host punches them out
//! of the tenant's memfd, so the memfd's allocated blocks really drop) and grows again up to
//! the maximum it started with; the guest's `/proc/meminfo` shows each change; two kernels
//! trade memory back and forth while a program in each keeps allocating; a shrink the guest
//! cannot meet with free memory is refused, its programs untouched; runc's `update --memory`
//! is the same balloon. Ignored (`needs
//! /bin/busybox`) without busybox-static.

use pvmux_tests::oci::{alive, children, reap, wait_for, Bundle};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");

const MIB: u64 = 1 << 20;

/// A bundle with 256 MiB of guest memory (its maximum), the test programs `names` in
/// `/bin`, running `script` with `sh -c`.
fn bundle(script: &str, programs: &[&str]) -> Bundle {
    let b = Bundle::new(
        PVMUX,
        &["sh", "-c", script],
        serde_json::json!({
            "linux": { "resources": { "memory": { "limit": 256 * MIB } } },
        }),
    );
    for p in programs {
        std::fs::copy(pvmux_tests::prog(p), b.path().join("rootfs/bin").join(p))
            .expect("copy a test program");
    }
    b
}

/// Creates and starts container `id`: the monitor's pid.
fn start(b: &Bundle, id: &str) -> i32 {
    let (code, err, pid) = b.create(id, None);
    assert_eq!(code, 0, "create {id}: {err}");
    let r = b.oci(&["start", id]);
    assert_eq!(r.code(), Some(0), "start {id}: {}", r.context());
    pid.expect("pid file")
}

/// The allocated bytes of the tenant's guest memory memfd (`st_blocks` of the monitor's
/// descriptor, or of its sandboxes').
fn memfd_bytes(monitor: i32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    for pid in std::iter::once(monitor).chain(children(monitor)) {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            if target.to_string_lossy().starts_with("/memfd:pvmux-guest") {
                let m = std::fs::metadata(fd.path()).expect("stat the memfd");
                return m.blocks() * 512;
            }
        }
    }
    panic!("no guest memory memfd in process {monitor} or its children");
}

/// The guest's `MemTotal` (bytes), read in the guest by `pvmux exec`.
fn mem_total(b: &Bundle, id: &str) -> u64 {
    let r = b.oci(&["exec", id, "cat", "/proc/meminfo"]);
    assert_eq!(r.code(), Some(0), "exec cat: {}", r.context());
    let kib: u64 = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no MemTotal in {}", r.stdout));
    kib * 1024
}

/// `pvmux mem ID SIZE --format json`: the figures after (it must succeed).
fn mem(b: &Bundle, id: &str, size: &str) -> serde_json::Value {
    let r = b.oci(&["mem", "--format", "json", id, size]);
    assert_eq!(r.code(), Some(0), "mem {id} {size}: {}", r.context());
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("mem JSON");
    v["after"].clone()
}

/// The counter the container's loop writes to `/out/n`.
fn count(b: &Bundle) -> u64 {
    std::fs::read_to_string(b.out("n"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the loop of `b` went round `more` more times (it keeps allocating).
fn keeps_allocating(b: &Bundle, more: u64) {
    let n = count(b);
    wait_for("the program keeps allocating", || count(b) >= n + more);
}

/// A loop that allocates, touches and frees 16 MiB, counting its rounds in `/out/n`.
const CHURN: &str =
    "i=0; while :; do big-alloc 16 > /dev/null || exit 9; i=$((i+1)); echo $i > /out/n; done";

fn kill_all(list: &[(&Bundle, &str, i32)]) {
    for (b, id, pid) in list {
        assert!(alive(*pid), "container {id} still runs");
        let k = b.oci(&["kill", id, "KILL"]);
        assert_eq!(k.code(), Some(0), "kill {id}: {}", k.context());
        reap(*pid);
        assert_eq!(b.oci(&["delete", id]).code(), Some(0));
    }
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn memory_moves_between_two_kernels_while_their_programs_allocate() {
    let (a, b) = (bundle(CHURN, &["big-alloc"]), bundle(CHURN, &["big-alloc"]));
    let (pa, pb) = (start(&a, "a"), start(&b, "b"));
    keeps_allocating(&a, 2);
    keeps_allocating(&b, 2);
    assert_eq!(mem_total(&a, "a"), 256 * MIB);
    assert_eq!(mem_total(&b, "b"), 256 * MIB);

    // B's program touched 150 MiB and freed it: the memfd holds it.
    let r = b.oci(&["exec", "b", "big-alloc", "150"]);
    assert_eq!(r.code(), Some(0), "{}", r.context());
    assert!(r.stdout.starts_with("touched 150 MiB"), "{}", r.context());
    let before = memfd_bytes(pb);
    assert!(before >= 150 * MIB, "memfd holds {before} bytes");

    // Shrink B by 128 MiB: the frames it freed go first, and host memory really drops.
    let after = mem(&b, "b", "128M");
    assert_eq!(after["size"], 128 * MIB);
    assert_eq!(after["max"], 256 * MIB);
    let now = memfd_bytes(pb);
    assert!(
        now + 96 * MIB <= before,
        "host memory of b: {} MiB -> {} MiB",
        before / MIB,
        now / MIB
    );
    // `pvmux mem` reports the drop too (its program may have touched pages since).
    let reported = after["host_allocated"].as_u64().expect("host_allocated");
    assert!(reported + 96 * MIB <= before, "{reported} reported");
    assert_eq!(mem_total(&b, "b"), 128 * MIB);
    keeps_allocating(&b, 2);

    // Trade: A gives 128 MiB, B takes it back, and the other way round, relative sizes too.
    for round in 0..2 {
        assert_eq!(mem(&a, "a", "-128M")["size"], 128 * MIB, "round {round}");
        assert_eq!(mem_total(&a, "a"), 128 * MIB);
        assert_eq!(mem(&b, "b", "256M")["size"], 256 * MIB, "round {round}");
        assert_eq!(mem_total(&b, "b"), 256 * MIB);
        keeps_allocating(&a, 2);
        keeps_allocating(&b, 2);
        // B uses the memory it got back.
        let r = b.oci(&["exec", "b", "big-alloc", "150"]);
        assert!(r.stdout.starts_with("touched 150 MiB"), "{}", r.context());
        assert_eq!(mem(&b, "b", "-128M")["size"], 128 * MIB, "round {round}");
        assert_eq!(mem_total(&b, "b"), 128 * MIB);
        assert_eq!(mem(&a, "a", "+128M")["size"], 256 * MIB, "round {round}");
        assert_eq!(mem_total(&a, "a"), 256 * MIB);
        keeps_allocating(&a, 2);
        keeps_allocating(&b, 2);
    }
    // Both kernels' host memory stays within their maxima all along.
    assert!(memfd_bytes(pa) <= 256 * MIB && memfd_bytes(pb) <= 256 * MIB);
    kill_all(&[(&a, "a", pa), (&b, "b", pb)]);
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn a_shrink_the_guest_cannot_meet_is_refused_and_bad_sizes_are_errors() {
    let b = bundle("hold-mem 100; echo unexpected", &["hold-mem"]);
    let pid = start(&b, "h");
    wait_for("the program holds its memory", || {
        b.stdout("h").starts_with("held 100 MiB")
    });
    let err = |size: &str, what: &str| {
        let r = b.oci(&["mem", "h", size]);
        assert_eq!(r.code(), Some(1), "mem h {size}: {}", r.context());
        assert!(r.stderr.contains(what), "mem h {size}: {}", r.context());
        assert!(r.stdout.is_empty(), "{}", r.context());
    };
    // 128 MiB would leave the guest less free memory than its program holds.
    err("128M", "cannot free enough memory to shrink to 128 MiB");
    assert_eq!(mem_total(&b, "h"), 256 * MIB, "nothing changed");
    err("300M", "above the tenant's maximum, 256 MiB");
    err("+1M", "above the tenant's maximum");
    err("8M", "below the tenant's minimum");
    err("-1G", "cannot shrink by 1 GiB");
    err("lots", "invalid size");
    err("1000", "not a whole number of 4 KiB pages");
    // What it can free, it gives; the table says what changed.
    let r = b.oci(&["mem", "h", "200M"]);
    assert_eq!(r.code(), Some(0), "{}", r.context());
    assert!(
        r.stdout
            .starts_with("h: memory 200 MiB (was 256 MiB; max 256 MiB"),
        "{}",
        r.context()
    );
    assert_eq!(mem_total(&b, "h"), 200 * MIB);
    // runc's update --memory is the same balloon.
    let r = b.oci(&["update", "--memory", "240m", "h"]);
    assert_eq!(r.code(), Some(0), "{}", r.context());
    assert_eq!(mem_total(&b, "h"), 240 * MIB);
    let r = b.oci(&["update", "--memory", "64m", "h"]);
    assert_eq!(r.code(), Some(1), "{}", r.context());
    assert!(r.stderr.contains("--memory"), "{}", r.context());
    assert_eq!(mem_total(&b, "h"), 240 * MIB, "nothing changed");
    // The program was never touched for it.
    assert!(alive(pid));
    assert_eq!(b.stdout("h"), "held 100 MiB\n");
    let none = b.oci(&["mem", "nosuch", "128M"]);
    assert_eq!(none.code(), Some(1), "{}", none.context());
    assert!(!none.stderr.is_empty(), "{}", none.context());
    let k = b.oci(&["kill", "h", "KILL"]);
    assert_eq!(k.code(), Some(0), "kill: {}", k.context());
    reap(pid);
    let gone = b.oci(&["mem", "h", "128M"]);
    assert_eq!(gone.code(), Some(1), "{}", gone.context());
    assert!(gone.stderr.contains("not running"), "{}", gone.context());
    assert_eq!(b.oci(&["delete", "h"]).code(), Some(0));
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn a_container_starts_at_its_reservation_and_grows_to_its_limit() {
    let b = Bundle::new(
        PVMUX,
        &["sh", "-c", CHURN],
        serde_json::json!({
            "linux": { "resources": { "memory": {
                "limit": 256 * MIB, "reservation": 96 * MIB } } },
        }),
    );
    std::fs::copy(
        pvmux_tests::prog("big-alloc"),
        b.path().join("rootfs/bin/big-alloc"),
    )
    .expect("copy big-alloc");
    let pid = start(&b, "r");
    keeps_allocating(&b, 2);
    assert_eq!(mem_total(&b, "r"), 96 * MIB);
    let before = memfd_bytes(pid);
    assert!(before < 96 * MIB, "memfd holds {before} bytes");
    let after = mem(&b, "r", "+160M");
    assert_eq!(after["size"], 256 * MIB);
    assert_eq!(after["max"], 256 * MIB);
    assert_eq!(mem_total(&b, "r"), 256 * MIB);
    // It uses what it got.
    let r = b.oci(&["exec", "r", "big-alloc", "150"]);
    assert!(r.stdout.starts_with("touched 150 MiB"), "{}", r.context());
    assert!(memfd_bytes(pid) >= 150 * MIB);
    keeps_allocating(&b, 2);
    let r = b.oci(&["mem", "r", "+2M"]);
    assert_eq!(r.code(), Some(1), "{}", r.context());
    assert!(
        r.stderr.contains("above the tenant's maximum"),
        "{}",
        r.context()
    );
    kill_all(&[(&b, "r", pid)]);

    // A reservation below what the kernel needs for itself is refused at create.
    let small = Bundle::new(
        PVMUX,
        &["sh", "-c", "exit 0"],
        serde_json::json!({
            "linux": { "resources": { "memory": {
                "limit": 1024 * MIB, "reservation": 64 * MIB } } },
        }),
    );
    let (code, err, _) = small.create("s", None);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("the initial memory, 64 MiB, is below"),
        "{err}"
    );
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn pvmux_run_starts_at_mem_below_mem_max() {
    let b = bundle("exit 0", &[]);
    let rootfs = b.path().join("rootfs");
    let run = |mem: &str| {
        let mut cmd = std::process::Command::new(PVMUX);
        cmd.args(["run", "--mem", mem, "--mem-max", "256M", "--rootfs"])
            .arg(&rootfs)
            .args(["--", "/bin/cat", "/proc/meminfo"]);
        pvmux_tests::run_clean(cmd, pvmux_tests::oci::TIMEOUT)
    };
    let r = run("96M");
    assert_eq!(r.code(), Some(0), "{}", r.context());
    assert!(r.has_line("MemTotal:          98304 kB"), "{}", r.context());
    let r = run("64M");
    assert_ne!(r.code(), Some(0), "{}", r.context());
    assert!(
        r.stderr
            .contains("the initial memory, 64 MiB, is below the smallest a guest of 256 MiB"),
        "{}",
        r.context()
    );
}
