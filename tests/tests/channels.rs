//! Channels between kernels (`pvmux run --channel NAME`, issue 14 item 3) with real guests,
//! as an unprivileged user under a temporary `--root`: two tenants named with the same
//! channel pass several MiB each way through `/dev/pvmux/NAME` with the guests' own `cat`
//! (the bytes land in a `--volume` and are compared with the host's originals), a reader
//! sees the end of the stream when the writing tenant is stopped while it still holds the
//! device open, a third tenant is refused while two hold the channel, a malformed name is
//! refused before anything starts, and no channel file is left once both tenants are gone.
//! (Garbage in the shared ring's indices is `host-module`'s unit tests' part:
//! `channel::tests::garbage_indices_break_the_channel_not_the_host`.)

use std::time::Duration;

use pvmux_tests::oci::wait_for;
use pvmux_tests::state_root::StateRoot;
use pvmux_tests::{Run, TempDir};

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
        Self(StateRoot::new(PVMUX, "pvmux-channels", tag))
    }

    /// `pvmux run --name NAME [-d] --channel CHANNEL -v OUT:/out --rootfs / -- sh -c SCRIPT`.
    fn run(&self, name: &str, detach: bool, channel: &str, out: &TempDir, script: &str) -> Run {
        let vol = format!("{}:/out", out.0.display());
        let mut args = vec!["run", "--name", name];
        if detach {
            args.push("--detach");
        }
        args.extend([
            "--mem",
            "256M",
            "--channel",
            channel,
            "-v",
            &vol,
            "--rootfs",
            "/",
            "--",
            "/bin/sh",
            "-c",
            script,
        ]);
        self.pvmux(&args)
    }

    fn channel_file(&self, name: &str) -> std::path::PathBuf {
        self.dir().join(".channels").join(name)
    }

    fn stop(&self, name: &str) {
        let r = self.pvmux(&["stop", "--time", "2", name]);
        assert_eq!(r.code(), Some(0), "stop {name}: {}", r.context());
    }
}

/// `len` bytes no two runs of which repeat soon (a stream that a lost, doubled or reordered
/// block cannot pass).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Where the first difference is, for a readable failure.
fn same(what: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: {} bytes, expected {}; first difference at {at:?}",
            got.len(),
            want.len()
        );
    }
}

#[test]
fn megabytes_cross_both_ways_between_two_kernels() {
    let root = Root::new("both");
    let files = TempDir::unique("pvmux-channels-data", "both");
    let out = TempDir::unique("pvmux-channels-out", "both");
    // Not multiples of any buffer size: 6 MiB + 12345 one way, 3 MiB + 777 the other.
    let to_b = pattern((6 << 20) + 12_345, 1);
    let to_a = pattern((3 << 20) + 777, 2);
    let (fa, fb) = (files.0.join("to-b"), files.0.join("to-a"));
    std::fs::write(&fa, &to_b).unwrap();
    std::fs::write(&fb, &to_a).unwrap();

    // B reads A's stream to its end, then answers with its own.
    let r = root.run(
        "b",
        true,
        "pair",
        &out,
        &format!(
            "cat /dev/pvmux/pair > /out/b-got && cat {} > /dev/pvmux/pair && echo b-done",
            fb.display()
        ),
    );
    assert_eq!(r.code(), Some(0), "run b: {}", r.context());
    assert!(root.channel_file("pair").exists());
    // A (attached) sends, closes, then reads B's answer to its end.
    let r = root.run(
        "a",
        false,
        "pair",
        &out,
        &format!(
            "cat {} > /dev/pvmux/pair && cat /dev/pvmux/pair > /out/a-got && ls -l /dev/pvmux \
             && echo a-done",
            fa.display()
        ),
    );
    assert_eq!(r.code(), Some(0), "run a: {}", r.context());
    assert!(r.stdout.contains("a-done"), "{}", r.context());
    // The device is a character device under /dev/pvmux.
    assert!(r.stdout.contains("crw-rw-rw-"), "{}", r.context());
    same(
        "A to B",
        &std::fs::read(out.0.join("b-got")).unwrap(),
        &to_b,
    );
    same(
        "B to A",
        &std::fs::read(out.0.join("a-got")).unwrap(),
        &to_a,
    );
    wait_for("b prints b-done", || {
        root.pvmux(&["logs", "b"]).stdout.contains("b-done")
    });
    root.stop("b");
    // Both ends gone: the channel file is removed.
    assert!(!root.channel_file("pair").exists());
}

#[test]
fn a_stopped_writer_ends_the_stream_and_a_third_tenant_is_refused() {
    let root = Root::new("eof");
    let out = TempDir::unique("pvmux-channels-out", "eof");
    // W writes, then keeps the device open (sleeps) until it is stopped.
    let r = root.run(
        "w",
        true,
        "c2",
        &out,
        "exec 3>/dev/pvmux/c2; echo partial-line >&3; echo w-wrote; sleep 1000",
    );
    assert_eq!(r.code(), Some(0), "run w: {}", r.context());
    // R reads until the end of the stream, then says so.
    let r = root.run(
        "r",
        true,
        "c2",
        &out,
        "cat /dev/pvmux/c2 > /out/r-got; echo status=$? > /out/r-end",
    );
    assert_eq!(r.code(), Some(0), "run r: {}", r.context());
    wait_for("r receives the line", || {
        std::fs::read(out.0.join("r-got")).is_ok_and(|b| b == b"partial-line\n")
    });
    // A third tenant naming the channel is refused, with no state left behind.
    let r = root.run("third", true, "c2", &out, "true");
    assert_ne!(r.code(), Some(0), "{}", r.context());
    assert!(
        r.stderr.contains("already connects two tenants"),
        "{}",
        r.context()
    );
    assert!(!root.dir().join("third").exists());
    // The stream has not ended: W still holds it open.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!out.0.join("r-end").exists());
    // Stopping W (its guest never closes the descriptor) ends R's stream.
    root.stop("w");
    wait_for("r sees the end of the stream", || {
        std::fs::read_to_string(out.0.join("r-end")).is_ok_and(|s| s == "status=0\n")
    });
    assert_eq!(
        std::fs::read(out.0.join("r-got")).unwrap(),
        b"partial-line\n"
    );
    root.stop("r");
    assert!(!root.channel_file("c2").exists());
}

#[test]
fn a_bad_channel_name_is_refused_before_anything_starts() {
    let root = Root::new("bad");
    let out = TempDir::unique("pvmux-channels-out", "bad");
    for bad in ["../x", "a/b", ".hidden", "", "sp ace"] {
        let r = root.run("t", false, bad, &out, "true");
        assert_ne!(r.code(), Some(0), "{bad:?}: {}", r.context());
        assert!(
            r.stderr.contains("channel name"),
            "{bad:?}: {}",
            r.context()
        );
        assert!(!root.dir().join("t").exists(), "{bad:?}");
    }
    // Nothing was created under the root.
    assert!(!root.dir().join(".channels").join("x").exists());
    assert!(!root.dir().join("x").exists());
}
