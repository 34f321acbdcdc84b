//! Disks owned by one kernel at a time (`pvmux run --disk`, `pvmux disk move`; issue 14
//! item 6) with real guests and real ext2 images made by the host's `mkfs.ext2`: files and
//! directories written in one named tenant are read in another after `disk move` (checksums
//! compared with the host's own file), `e2fsck -fn` finds the image clean when the guests
//! are done and `debugfs` reads the bytes back; a second tenant cannot take a disk a running
//! one owns; a move is refused, nothing changed, while a file is open on the disk; a
//! read-only disk refuses writes with EROFS and its image does not change; a corrupted image
//! is an error in the guest (EUCLEAN, or a refused mount), never a host problem.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pvmux_tests::ext2::{debugfs_cat, fsck, mkfs, E2FS_PATH};
use pvmux_tests::oci::TIMEOUT;
use pvmux_tests::state_root::StateRoot;
use pvmux_tests::{run_with_timeout, Run};

const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");

/// A state root of its own per test (its tenants' logs are printed if the test fails).
struct Root(StateRoot);

impl std::ops::Deref for Root {
    type Target = StateRoot;
    fn deref(&self) -> &StateRoot {
        &self.0
    }
}

impl Root {
    fn new(tag: &str) -> Self {
        Self(StateRoot::new(PVMUX, "pvmux-disk", tag))
    }

    /// Starts a detached tenant `name` idling, with the host's root as its files and `extra`
    /// flags.
    fn detached(&self, name: &str, extra: &[&str]) -> Run {
        let mut a = vec!["run", "--name", name, "--detach", "--rootfs", "/"];
        a.extend_from_slice(extra);
        a.extend_from_slice(&["--", "/bin/sh", "-c", "while :; do sleep 1; done"]);
        self.pvmux(&a)
    }
}

/// Has a program in tenant `name` open `path` (run detached, so no pipe of the host process
/// stays open) and keep it open until `release` exists; returns once the guest's `/proc`
/// shows a descriptor whose link contains `link`.
fn hold_open(root: &Root, name: &str, path: &str, link: &str, release: &str) {
    let hold = Command::new(PVMUX)
        .arg("--root")
        .arg(root.dir())
        .args(["exec", "-d", name, "--", "/bin/sh", "-c"])
        .arg(format!(
            "exec 3<{path}; until [ -e {release} ]; do sleep 0.1; done"
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("pvmux exec -d runs");
    assert!(hold.success());
    let opened = root.sh(
        name,
        &format!(
            "for i in $(seq 200); do ls -l /proc/[0-9]*/fd/ 2>/dev/null | grep -q {link} && exit 0; \
             sleep 0.05; done; exit 1"
        ),
    );
    assert_eq!(
        opened.code(),
        Some(0),
        "the holder opened {path}: {}",
        opened.context()
    );
}

/// `cksum FILE` on the host: "CRC SIZE".
fn host_cksum(p: &Path) -> String {
    let out = Command::new("cksum").arg(p).output().expect("cksum runs");
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// The first two fields of each line (cksum's CRC and size).
fn crc_fields(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
#[cfg_attr(
    not(have_mke2fs),
    ignore = "needs e2fsprogs: apt-get install e2fsprogs"
)]
fn a_disk_moves_between_kernels_with_its_files_and_fsck_finds_it_clean() {
    let root = Root::new("move");
    let img = mkfs(root.dir(), "data.img", 32);
    let img_s = img.to_str().unwrap();
    // A file bigger than the direct and single-indirect blocks of 1 KiB blocks (3 MiB: its
    // double-indirect blocks too), in the host's root that the guests share.
    let big = root.dir().join("big.bin");
    let bytes: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&big, &bytes).unwrap();
    let big_s = big.to_str().unwrap();
    let r = root.detached("one", &["--disk", &format!("{img_s},mount=/data")]);
    assert_eq!(r.code(), Some(0), "{}", r.context());
    let r = root.detached("two", &[]);
    assert_eq!(r.code(), Some(0), "{}", r.context());

    // Another kernel cannot take a disk a running one owns.
    let r = root.detached("three", &["--disk", img_s]);
    assert_ne!(r.code(), Some(0), "{}", r.context());
    assert!(
        r.stderr.contains("is in use by another kernel"),
        "{}",
        r.context()
    );

    // Write in one: directories, a small file, a big one, a rename, a removal.
    let w = root.sh(
        "one",
        &format!(
            "set -e; mkdir -p /data/a/b; echo hello-from-one > /data/a/b/note; \
             dd if={big_s} of=/data/a/big bs=64k; echo tmp > /data/gone; \
             rm /data/gone; mv /data/a/b /data/a/c; cksum /data/a/big; ls /data /data/a"
        ),
    );
    assert_eq!(w.code(), Some(0), "{}", w.context());
    let want = host_cksum(&big);
    assert_eq!(crc_fields(&w.stdout)[0], want, "{}", w.context());
    let ls = root.pvmux(&["disk", "ls", "--format", "json", "one"]);
    let v: serde_json::Value = serde_json::from_str(&ls.stdout).expect("disk ls JSON");
    assert_eq!(v[0]["name"], "vda", "{v}");
    assert_eq!(v[0]["mount"], "/data", "{v}");
    assert_eq!(v[0]["state"], "mounted", "{v}");

    // A file open on the disk: the move is refused and nothing changes.
    // (Its host process keeps stdout open while the program runs: no pipes to it.)
    hold_open(&root, "one", "/data/a/c/note", "note", "/data/release");
    let refused = root.pvmux(&["disk", "move", "one", "two"]);
    assert_eq!(refused.code(), Some(1), "{}", refused.context());
    assert!(
        refused.stderr.contains("files are open"),
        "{}",
        refused.context()
    );
    let still = root.sh("one", "cat /data/a/c/note");
    assert_eq!(still.stdout, "hello-from-one\n", "{}", still.context());
    // Once the holder is gone, the move goes through.
    let closed = root.sh(
        "one",
        "touch /data/release; for i in $(seq 200); do ls -l /proc/[0-9]*/fd/ 2>/dev/null | grep -q note || exit 0; \
         sleep 0.05; done; exit 1",
    );
    assert_eq!(closed.code(), Some(0), "{}", closed.context());
    assert_eq!(root.sh("one", "rm /data/release").code(), Some(0));

    // The move: one's guest writes back and unmounts, two's mounts.
    let mv = root.pvmux(&["disk", "move", "one", "two"]);
    assert_eq!(mv.code(), Some(0), "{}", mv.context());
    assert!(
        mv.stdout.contains("moved from one to two"),
        "{}",
        mv.context()
    );
    let gone = root.sh("one", "ls -A /data");
    assert_eq!(
        gone.stdout,
        "",
        "one no longer has the disk: {}",
        gone.context()
    );
    let ls = root.pvmux(&["disk", "ls", "--format", "json", "one"]);
    assert_eq!(ls.stdout.trim(), "[]", "{}", ls.context());
    let r = root.sh("two", "cat /data/a/c/note; cksum /data/a/big; ls -A /data");
    assert_eq!(r.code(), Some(0), "{}", r.context());
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "hello-from-one", "{}", r.context());
    assert_eq!(crc_fields(lines[1])[0], want, "{}", r.context());
    assert_eq!(&lines[2..], ["a", "lost+found"], "{}", r.context());
    // A snapshot does not carry a disk's image: refused for a disk that came later too,
    // and the tenant goes on with it.
    let snap = root.dir().join("snap");
    let r = root.pvmux(&["snapshot", "two", snap.to_str().unwrap()]);
    assert_eq!(r.code(), Some(1), "{}", r.context());
    assert!(r.stderr.contains("it has disks"), "{}", r.context());
    // Two writes too, then gives it to nobody: stopping it writes the disk back.
    let r = root.sh("two", "echo from-two >> /data/a/c/note");
    assert_eq!(r.code(), Some(0), "{}", r.context());
    for n in ["one", "two"] {
        let s = root.pvmux(&["stop", n]);
        assert_eq!(s.code(), Some(0), "{}", s.context());
    }
    let (code, out) = fsck(&img);
    assert_eq!(code, 0, "e2fsck -fn:\n{out}");
    assert_eq!(
        debugfs_cat(&img, "/a/c/note"),
        b"hello-from-one\nfrom-two\n"
    );
    assert_eq!(debugfs_cat(&img, "/a/big"), std::fs::read(&big).unwrap());
}

#[test]
#[cfg_attr(
    not(have_mke2fs),
    ignore = "needs e2fsprogs: apt-get install e2fsprogs"
)]
fn a_read_only_disk_refuses_writes_and_its_image_stays_the_same() {
    let root = Root::new("ro");
    let img = mkfs(root.dir(), "ro.img", 8);
    let before = std::fs::read(&img).unwrap();
    let mut cmd = Command::new(PVMUX);
    cmd.args(["run", "--rootfs", "/", "--disk"])
        .arg(format!("{}:ro,mount=/mnt/vda", img.display()))
        .args([
            "--",
            "/bin/sh",
            "-c",
            "ls -A /mnt/vda; echo x > /mnt/vda/new; mkdir /mnt/vda/d; touch /mnt/vda/lost+found/t; echo done",
        ]);
    let r = run_with_timeout(cmd, "run ro", TIMEOUT, Duration::from_millis(10), |_| {});
    assert_eq!(r.code(), Some(0), "{}", r.context());
    assert_eq!(r.stdout, "lost+found\ndone\n", "{}", r.context());
    assert_eq!(
        r.stderr.matches("Read-only file system").count(),
        3,
        "{}",
        r.context()
    );
    assert!(
        std::fs::read(&img).unwrap() == before,
        "a read-only image changed"
    );
}

#[test]
#[cfg_attr(
    not(have_mke2fs),
    ignore = "needs e2fsprogs: apt-get install e2fsprogs"
)]
fn a_corrupted_image_is_an_error_in_the_guest_never_a_host_problem() {
    let root = Root::new("bad");
    let run = |img: &Path, script: &str| {
        let mut cmd = Command::new(PVMUX);
        cmd.args(["run", "--rootfs", "/", "--disk"])
            .arg(format!("{},mount=/mnt/vda", img.display()))
            .args(["--", "/bin/sh", "-c", script]);
        run_with_timeout(cmd, "run", TIMEOUT, Duration::from_millis(10), |_| {})
    };
    // Not ext2 at all: the mount is refused, the run ends with 126 and says why.
    let zero = root.dir().join("zero.img");
    std::fs::write(&zero, vec![0u8; 4 << 20]).unwrap();
    let r = run(&zero, "echo should-not-run");
    assert_eq!(r.code(), Some(126), "{}", r.context());
    assert!(
        r.stderr.contains("not an ext2 filesystem"),
        "{}",
        r.context()
    );
    assert!(!r.stdout.contains("should-not-run"), "{}", r.context());

    // A directory block overwritten with garbage: EUCLEAN ("Structure needs cleaning") in
    // the guest for that directory, the rest of the disk still usable.
    let img = mkfs(root.dir(), "bad.img", 8);
    let r = run(
        &img,
        "mkdir /mnt/vda/d && echo ok > /mnt/vda/d/f && echo fine > /mnt/vda/top",
    );
    assert_eq!(r.code(), Some(0), "{}", r.context());
    let out = Command::new("debugfs")
        .args(["-R", "blocks /d"])
        .arg(&img)
        .env("PATH", E2FS_PATH)
        .output()
        .unwrap();
    let blk: u64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|b| b.parse().ok())
        .expect("debugfs names /d's block");
    let mut bytes = std::fs::read(&img).unwrap();
    let at = (blk * 1024) as usize;
    bytes[at..at + 1024].fill(0xa5);
    std::fs::write(&img, &bytes).unwrap();
    let r = run(
        &img,
        "cat /mnt/vda/top; ls /mnt/vda/d; cat /mnt/vda/d/f; echo status=$?",
    );
    assert_eq!(r.code(), Some(0), "{}", r.context());
    assert!(r.stdout.starts_with("fine\n"), "{}", r.context());
    assert!(r.stdout.contains("status=1"), "{}", r.context());
    assert!(
        r.stderr.contains("Structure needs cleaning"),
        "{}",
        r.context()
    );
    // The host's tool agrees that the image is damaged.
    assert_ne!(fsck(&img).0, 0);
}

/// `pvmux run --rootfs / --disk ... -- /bin/sh -c SCRIPT` to its end.
fn run_sh(disks: &[String], script: &str) -> Run {
    let mut cmd = Command::new(PVMUX);
    cmd.args(["run", "--rootfs", "/"]);
    for d in disks {
        cmd.arg("--disk").arg(d);
    }
    cmd.args(["--", "/bin/sh", "-c", script]);
    run_with_timeout(cmd, "run", TIMEOUT, Duration::from_millis(10), |_| {})
}

#[test]
#[cfg_attr(
    not(all(have_mke2fs, have_busybox)),
    ignore = "needs e2fsprogs and busybox-static: apt-get install e2fsprogs busybox-static"
)]
fn a_disk_is_a_block_device_that_guest_programs_read_write_mount_and_unmount() {
    let root = Root::new("blk");
    let img = mkfs(root.dir(), "fs.img", 16);
    // vdb: 1 MiB of a pattern, no filesystem.
    let raw = root.dir().join("raw.img");
    let pattern: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + i / 511) as u8).collect();
    std::fs::write(&raw, &pattern).unwrap();
    let first = root.dir().join("first-block");
    std::fs::write(&first, &std::fs::read(&img).unwrap()[..4096]).unwrap();
    let script = "
        bb=/bin/busybox
        stat -c '%F %t:%T %a' /dev/vda /dev/vdb
        cat /proc/partitions /sys/block/vda/size /sys/block/vdb/size /sys/block/vdb/dev
        grep -c /dev/vd /proc/mounts
        dd if=/dev/vda bs=4096 count=1 2>/dev/null | cksum
        dd if=/dev/vda bs=1 skip=1080 count=2 2>/dev/null | od -An -tx1
        printf hello | dd of=/dev/vdb bs=1 seek=4097 conv=notrunc 2>/dev/null
        dd if=/dev/vdb bs=1 skip=4095 count=9 2>/dev/null | od -An -c
        mkdir -p /mnt/a /mnt/b
        $bb mount -t ext2 /dev/vda /mnt/a && echo mounted
        grep /dev/vda /proc/mounts
        $bb mount -t ext2 /dev/vda /mnt/b 2>&1 | grep -o 'busy'
        $bb mount -t nosuchfs /dev/vda /mnt/b 2>&1 | grep -o 'No such device'
        $bb mount -t ext2 /dev/null /mnt/b 2>&1 | grep -o 'Block device required'
        $bb mount -t ext2 /dev/vdb /mnt/b 2>&1 | grep -o 'Invalid argument'
        mkdir /mnt/a/dir && echo from-guest > /mnt/a/dir/f
        chmod 1777 /mnt/a
        setpriv --reuid 1000 --regid 1001 --clear-groups /bin/sh -c 'echo u > /mnt/a/owned'
        exec 3</mnt/a/dir/f
        $bb umount /mnt/a 2>&1 | grep -o 'busy'
        exec 3<&-
        $bb umount /mnt/b 2>&1 | grep -o 'Invalid argument'
        $bb umount /mnt/a && echo unmounted
        ls -A /mnt/a | wc -l
        grep -c /dev/vd /proc/mounts
        $bb mount -r -t ext2 /dev/vda /mnt/b && cat /mnt/b/dir/f
        grep /dev/vda /proc/mounts
        touch /mnt/b/new 2>&1 | grep -o 'Read-only file system'
        $bb umount /mnt/b && echo done
    ";
    let r = run_sh(
        &[img.display().to_string(), raw.display().to_string()],
        script,
    );
    assert_eq!(r.code(), Some(0), "{}", r.context());
    let want_first = host_cksum(&first);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let pat = |off: usize| pattern[off];
    assert_eq!(lines[0], "block special file fe:0 660", "{}", r.context());
    assert_eq!(lines[1], "block special file fe:10 660", "{}", r.context());
    assert_eq!(
        &lines[2..6],
        [
            "major minor  #blocks  name",
            "",
            " 254        0      16384 vda",
            " 254       16       1024 vdb"
        ],
        "{}",
        r.context()
    );
    assert_eq!(&lines[6..9], ["32768", "2048", "254:16"], "{}", r.context());
    assert_eq!(lines[9], "0", "no disk is mounted at boot: {}", r.context());
    assert_eq!(crc_fields(lines[10])[0], want_first, "{}", r.context());
    assert_eq!(lines[11].trim(), "53 ef", "ext2's magic: {}", r.context());
    // The pattern's two bytes before the write, then the write.
    let od: Vec<&str> = lines[12].split_whitespace().collect();
    assert_eq!(od.len(), 9, "{}", r.context());
    assert_eq!(&od[2..7], ["h", "e", "l", "l", "o"], "{}", r.context());
    assert_eq!(
        &lines[13..],
        [
            "mounted",
            "/dev/vda /mnt/a ext2 rw,relatime 0 0",
            "busy",
            "No such device",
            "Block device required",
            "Invalid argument",
            "busy",
            "Invalid argument",
            "unmounted",
            "0",
            "0",
            "from-guest",
            "/dev/vda /mnt/b ext2 ro,relatime 0 0",
            "Read-only file system",
            "done",
        ],
        "{}",
        r.context()
    );
    // The host sees the raw write, and nothing else of vdb changed.
    let after = std::fs::read(&raw).unwrap();
    assert_eq!(&after[4097..4102], b"hello");
    assert_eq!(after[4096], pat(4096));
    assert_eq!(after[4102], pat(4102));
    assert!(after[..4097] == pattern[..4097] && after[4102..] == pattern[4102..]);
    // And the file written through the guest's mount, in a clean filesystem.
    let (code, out) = fsck(&img);
    assert_eq!(code, 0, "e2fsck -fn:\n{out}");
    assert_eq!(debugfs_cat(&img, "/dir/f"), b"from-guest\n");
    // A file keeps the owner its creator gave it.
    let out = Command::new("debugfs")
        .args(["-R", "stat /owned"])
        .arg(&img)
        .env("PATH", E2FS_PATH)
        .output()
        .unwrap();
    let st = String::from_utf8_lossy(&out.stdout);
    assert!(
        st.contains("User:  1000") && st.contains("Group:  1001"),
        "debugfs stat /owned:\n{st}"
    );
}

#[test]
#[cfg_attr(
    not(all(have_mke2fs, have_busybox)),
    ignore = "needs e2fsprogs and busybox-static: apt-get install e2fsprogs busybox-static"
)]
fn a_disk_a_guest_program_mounted_moves_once_unmounted_by_the_move() {
    let root = Root::new("gmove");
    let img = mkfs(root.dir(), "g.img", 8);
    let img_s = img.to_str().unwrap();
    let r = root.detached("one", &["--disk", img_s]);
    assert_eq!(r.code(), Some(0), "{}", r.context());
    let r = root.detached("two", &[]);
    assert_eq!(r.code(), Some(0), "{}", r.context());
    let ls = root.pvmux(&["disk", "ls", "--format", "json", "one"]);
    let v: serde_json::Value = serde_json::from_str(&ls.stdout).expect("disk ls JSON");
    assert_eq!(v[0]["mount"], "", "{v}");
    assert_eq!(v[0]["state"], "attached", "{v}");
    let w = root.sh(
        "one",
        "set -e; mkdir -p /mnt/g; /bin/busybox mount -t ext2 /dev/vda /mnt/g; \
         echo one-wrote > /mnt/g/f; grep -c '^/dev/vda /mnt/g ext2 rw' /proc/mounts",
    );
    assert_eq!(
        (w.code(), w.stdout.as_str()),
        (Some(0), "1\n"),
        "{}",
        w.context()
    );
    // A description of /dev/vda open: the move is refused, nothing changes.
    hold_open(&root, "one", "/dev/vda", "/dev/vda", "/tmp/release");
    let refused = root.pvmux(&["disk", "move", "one", "two"]);
    assert_eq!(refused.code(), Some(1), "{}", refused.context());
    let r = root.sh(
        "one",
        "touch /tmp/release; for i in $(seq 200); do ls -l /proc/[0-9]*/fd/ 2>/dev/null | grep -q /dev/vda || exit 0; \
         sleep 0.05; done; exit 1",
    );
    assert_eq!(r.code(), Some(0), "{}", r.context());
    // The move unmounts the guest's own mount (written back, clean) and takes the node.
    let mv = root.pvmux(&["disk", "move", "one", "two"]);
    assert_eq!(mv.code(), Some(0), "{}", mv.context());
    assert!(mv.stdout.contains("not mounted"), "{}", mv.context());
    let r = root.sh(
        "one",
        "grep -c /dev/vd /proc/mounts; ls -A /mnt/g | wc -l; test -b /dev/vda || echo no-node",
    );
    assert_eq!(r.stdout, "0\n0\nno-node\n", "{}", r.context());
    let r = root.sh(
        "two",
        "set -e; mkdir -p /m; /bin/busybox mount -t ext2 /dev/vda /m; cat /m/f; \
         echo two-wrote >> /m/f; /bin/busybox umount /m; echo ok",
    );
    assert_eq!(r.stdout, "one-wrote\nok\n", "{}", r.context());
    for n in ["one", "two"] {
        let s = root.pvmux(&["stop", n]);
        assert_eq!(s.code(), Some(0), "{}", s.context());
    }
    let (code, out) = fsck(&img);
    assert_eq!(code, 0, "e2fsck -fn:\n{out}");
    assert_eq!(debugfs_cat(&img, "/f"), b"one-wrote\ntwo-wrote\n");
}

/// `debugfs -R "stat PATH" IMAGE`: the inode's `Links:` count and inode number.
fn debugfs_links(img: &Path, path: &str) -> (u32, u32) {
    let out = Command::new("debugfs")
        .args(["-R", &format!("stat {path}")])
        .arg(img)
        .env("PATH", E2FS_PATH)
        .output()
        .expect("debugfs runs");
    let st = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |key: &str| -> u32 {
        st.split(key)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("debugfs stat {path}: no {key}\n{st}"))
    };
    (field("Links: "), field("Inode: "))
}

#[test]
#[cfg_attr(
    not(all(have_mke2fs, have_busybox)),
    ignore = "needs e2fsprogs and busybox-static: apt-get install e2fsprogs busybox-static"
)]
fn hard_links_on_a_disk_count_like_linux_and_fsck_finds_them_clean() {
    let root = Root::new("links");
    let img = mkfs(root.dir(), "l.img", 8);
    let ro = mkfs(root.dir(), "r.img", 2);
    let ro_before = std::fs::read(&ro).unwrap();
    let script = "
        ln() { /bin/busybox ln \"$@\" 2>&1 | sed 's/.*: //'; }
        cd /mnt/d
        echo data > a
        mkdir sub
        ln a sub/b
        stat -c '%h %i %D' a sub/b
        ln a sub/b
        ln sub dirlink
        ln a /tmp/x
        ln /bin/busybox here
        ln /mnt/r/lost+found /mnt/r/x
        echo more >> sub/b
        cat a
        ln a c
        exec 3<a
        rm a
        stat -c '%h' sub/b c
        cat - c <&3
        exec 3<&-
        mv c sub/c
        stat -c '%h' sub/c
        rm sub/c
        stat -c '%h' sub/b
        ls
        ln sub/b top
    ";
    let r = run_sh(
        &[
            format!("{},mount=/mnt/d", img.display()),
            format!("{}:ro,mount=/mnt/r", ro.display()),
        ],
        script,
    );
    assert_eq!(r.code(), Some(0), "{}", r.context());
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines.len() >= 2, "{}", r.context());
    let (a, b) = (lines[0], lines[1]);
    assert_eq!(a, b, "two names, one inode: {}", r.context());
    let f: Vec<&str> = a.split(' ').collect();
    assert_eq!(
        (f[0], f.get(2).copied()),
        ("2", Some("fe00")),
        "two links, on /dev/vda (254:0): {}",
        r.context()
    );
    assert_eq!(
        &lines[2..],
        [
            "File exists",
            "Operation not permitted",
            "Invalid cross-device link",
            "Invalid cross-device link",
            "Read-only file system",
            "data",
            "more",
            "2",
            "2",
            "data",
            "more",
            "data",
            "more",
            "2",
            "1",
            "lost+found",
            "sub",
        ],
        "{}",
        r.context()
    );
    // The host's tools read what the guest did: one inode with two names, clean.
    let (code, out) = fsck(&img);
    assert_eq!(code, 0, "e2fsck -fn:\n{out}");
    let (links, ino) = debugfs_links(&img, "/sub/b");
    assert_eq!(debugfs_links(&img, "/top"), (links, ino));
    assert_eq!(links, 2);
    assert_eq!(
        f[1],
        ino.to_string(),
        "the guest's st_ino is ext2's inode number"
    );
    assert_eq!(debugfs_cat(&img, "/top"), b"data\nmore\n");
    assert!(
        std::fs::read(&ro).unwrap() == ro_before,
        "a read-only image changed"
    );
}

/// `pvmux disk ls --format json NAME`, as JSON.
fn disk_ls(root: &Root, name: &str) -> serde_json::Value {
    let ls = root.pvmux(&["disk", "ls", "--format", "json", name]);
    assert_eq!(ls.code(), Some(0), "{}", ls.context());
    serde_json::from_str(&ls.stdout).expect("disk ls JSON")
}

/// The fields of `disk ls` that say where a disk is mounted: (mounted_at, mounted_by,
/// mount_read_only, state).
fn mount_fields(v: &serde_json::Value) -> (String, String, bool, String) {
    (
        v["mounted_at"].as_str().unwrap_or("?").to_owned(),
        v["mounted_by"].as_str().unwrap_or("?").to_owned(),
        v["mount_read_only"].as_bool().unwrap_or(false),
        v["state"].as_str().unwrap_or("?").to_owned(),
    )
}

#[test]
#[cfg_attr(
    not(all(have_mke2fs, have_busybox)),
    ignore = "needs e2fsprogs and busybox-static: apt-get install e2fsprogs busybox-static"
)]
fn disk_ls_shows_the_guests_own_mounts_and_a_lazy_umount_waits_for_its_last_file() {
    let root = Root::new("lazy");
    let a = mkfs(root.dir(), "a.img", 8);
    let b = mkfs(root.dir(), "b.img", 8);
    let a_disk = format!("{},mount=/data", a.display());
    let r = root.detached("one", &["--disk", &a_disk, "--disk", b.to_str().unwrap()]);
    assert_eq!(r.code(), Some(0), "{}", r.context());
    let r = root.detached("two", &[]);
    assert_eq!(r.code(), Some(0), "{}", r.context());
    let v = disk_ls(&root, "one");
    let f = |s: &str| s.to_owned();
    assert_eq!(
        mount_fields(&v[0]),
        (f("/data"), f("pvmux"), false, f("mounted")),
        "{v}"
    );
    assert_eq!(
        mount_fields(&v[1]),
        (f(""), f(""), false, f("attached")),
        "{v}"
    );
    // A guest program mounts vdb read-only and unmounts the kernel's mount of vda.
    let w = root.sh(
        "one",
        "set -e; mkdir -p /mnt/g; /bin/busybox mount -r -t ext2 /dev/vdb /mnt/g; \
         /bin/busybox umount /data; echo ok",
    );
    assert_eq!(w.stdout, "ok\n", "{}", w.context());
    let v = disk_ls(&root, "one");
    assert_eq!(
        mount_fields(&v[0]),
        (f(""), f(""), false, f("attached")),
        "{v}"
    );
    assert_eq!(v[0]["mount"], "/data", "the path pvmux gave stays: {v}");
    assert_eq!(
        mount_fields(&v[1]),
        (f("/mnt/g"), f("guest"), true, f("mounted")),
        "{v}"
    );
    let t = root.pvmux(&["disk", "ls", "one"]);
    let row: Vec<&str> = t
        .stdout
        .lines()
        .find(|l| l.starts_with("vdb"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(
        row.get(4..8),
        Some(&["/mnt/g", "(ro)", "guest", "mounted"][..]),
        "{}",
        t.context()
    );
    // Read-write again, a file written, and a program keeps it open (appending later).
    let w = root.sh(
        "one",
        "set -e; /bin/busybox umount /mnt/g; /bin/busybox mount -t ext2 /dev/vdb /mnt/g; \
         echo first > /mnt/g/f; (cd /mnt/g && /bin/busybox umount /mnt/g 2>&1 | grep -o busy); \
         echo ok",
    );
    assert_eq!(
        w.stdout,
        "busy\nok\n",
        "a working directory in it: {}",
        w.context()
    );
    let hold = Command::new(PVMUX)
        .arg("--root")
        .arg(root.dir())
        .args(["exec", "-d", "one", "--", "/bin/sh", "-c"])
        .arg("exec 3>>/mnt/g/f; until [ -e /tmp/release ]; do sleep 0.1; done; echo late >&3")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("pvmux exec -d runs");
    assert!(hold.success());
    let opened = root.sh(
        "one",
        "for i in $(seq 200); do ls -l /proc/[0-9]*/fd/ 2>/dev/null | grep -q /mnt/g/f && exit 0; \
         sleep 0.05; done; exit 1",
    );
    assert_eq!(opened.code(), Some(0), "{}", opened.context());
    // A plain umount is refused; umount -l detaches it from the tree at once.
    let w = root.sh(
        "one",
        "/bin/busybox umount /mnt/g 2>&1 | grep -o busy; /bin/busybox umount -l /mnt/g && echo detached; \
         grep -c vdb /proc/mounts; ls -A /mnt/g | wc -l; cat /mnt/g/f 2>&1 | grep -o 'No such file'",
    );
    assert_eq!(
        w.stdout,
        "busy\ndetached\n0\n0\nNo such file\n",
        "{}",
        w.context()
    );
    let v = disk_ls(&root, "one");
    assert_eq!(
        mount_fields(&v[1]),
        (f("/mnt/g"), f("guest"), false, f("unmounting")),
        "{v}"
    );
    // Meanwhile it does not move, and says why; the guest cannot mount it again either.
    let mv = root.pvmux(&["disk", "move", "--disk", "vdb", "one", "two"]);
    assert_eq!(mv.code(), Some(1), "{}", mv.context());
    assert!(mv.stderr.contains("umount -l"), "{}", mv.context());
    let w = root.sh(
        "one",
        "/bin/busybox mount -t ext2 /dev/vdb /mnt/g 2>&1 | grep -o busy",
    );
    assert_eq!(w.stdout, "busy\n", "{}", w.context());
    // The last file closes (after a write through it): the kernel releases the disk.
    let r = root.sh("one", "touch /tmp/release");
    assert_eq!(r.code(), Some(0), "{}", r.context());
    let mut last = serde_json::Value::Null;
    for _ in 0..200 {
        last = disk_ls(&root, "one");
        if last[1]["state"] == "attached" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        mount_fields(&last[1]),
        (f(""), f(""), false, f("attached")),
        "{last}"
    );
    let mv = root.pvmux(&["disk", "move", "--disk", "vdb", "one", "two"]);
    assert_eq!(mv.code(), Some(0), "{}", mv.context());
    let w = root.sh(
        "two",
        "set -e; mkdir -p /m; /bin/busybox mount -t ext2 /dev/vda /m; cat /m/f; \
         /bin/busybox umount /m",
    );
    assert_eq!(w.stdout, "first\nlate\n", "{}", w.context());
    for n in ["one", "two"] {
        let s = root.pvmux(&["stop", n]);
        assert_eq!(s.code(), Some(0), "{}", s.context());
    }
    for img in [&a, &b] {
        let (code, out) = fsck(img);
        assert_eq!(code, 0, "e2fsck -fn {}:\n{out}", img.display());
    }
    assert_eq!(debugfs_cat(&b, "/f"), b"first\nlate\n");
}
