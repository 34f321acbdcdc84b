//! The guest half of the initramfs and the in-guest filesystem: `fs-selftest`, an archive
//! packed from a host tree listed and read back byte for byte with `ls=`/`cat=`, clean errors
//! (`cat=` of a missing file exits with 64 + ENOENT = 66), hard links from an archive, and
//! malformed archives placed directly in guest memory (bypassing host validation), which the
//! kernel reports and then boots on with an empty filesystem.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pvmux_host::{initramfs, TenantConfig, TenantOutcome};
use pvmux_tests::{args, cat_bytes, host, kernel, ls_lines, Capture, TempDir};

/// Exit code of a failed `ls=`/`cat=`: 64 + the Linux errno (pv-kernel `commands::fs`).
const EXIT_FS_ERROR_BASE: i32 = 64;
/// Linux errno values.
const ENOENT: i32 = 2;
const ENOTDIR: i32 = 20;
const EISDIR: i32 = 21;

/// Boots the embedded kernel with `cmdline` and `initrd` (placed as is, not validated) and
/// runs it to completion.
fn boot(cmdline: &str, initrd: Option<Vec<u8>>) -> (TenantOutcome, Capture) {
    let host = host();
    let console = Capture::default();
    let mut cfg = TenantConfig::new(
        "initramfs",
        kernel(),
        64 << 20,
        2,
        args(cmdline),
        Box::new(console.clone()),
    );
    cfg.initrd = initrd.map(Arc::new);
    let tenant = host.launch(cfg).expect("tenant launches");
    assert!(
        tenant.wait_started(Duration::from_secs(10)),
        "tenant did not start: {:?}",
        tenant.state()
    );
    (tenant.wait(), console)
}

fn write_file(p: &Path, bytes: &[u8], mode: u32) {
    std::fs::write(p, bytes).expect("write file");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn make_dir(p: &Path, mode: u32) {
    std::fs::create_dir(p).expect("mkdir");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The binary test file: every byte value, then a tail without a newline.
fn binary_bytes() -> Vec<u8> {
    let mut v: Vec<u8> = (0..=255u8).collect();
    v.extend_from_slice(b"end");
    v
}

/// Packs the test tree:
/// `/dir/{file (binary), empty, sub/deep.txt}`, `/link -> dir/file`, `/top.txt`.
fn test_tree_archive() -> Vec<u8> {
    let tmp = TempDir::unique("pvmux-initramfs", "tree");
    let root = &tmp.0;
    make_dir(&root.join("dir"), 0o755);
    write_file(&root.join("dir/file"), &binary_bytes(), 0o644);
    write_file(&root.join("dir/empty"), b"", 0o600);
    make_dir(&root.join("dir/sub"), 0o700);
    write_file(&root.join("dir/sub/deep.txt"), b"deep\n", 0o644);
    std::os::unix::fs::symlink("dir/file", root.join("link")).expect("symlink");
    write_file(&root.join("top.txt"), b"hello\n", 0o644);
    initramfs::pack_dir(root).expect("pack the tree")
}

/// A minimal newc writer for archives the host packer would not produce.
struct Newc(Vec<u8>);

impl Newc {
    fn new() -> Self {
        Self(Vec::new())
    }

    fn entry(mut self, name: &[u8], mode: u32, ino: u32, nlink: u32, data: &[u8]) -> Self {
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            1_700_000_000,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        self.0.extend_from_slice(b"070701");
        for f in fields {
            self.0.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.0.extend_from_slice(name);
        self.0.push(0);
        self.pad();
        self.0.extend_from_slice(data);
        self.pad();
        self
    }

    fn pad(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }

    fn finish(self) -> Vec<u8> {
        self.entry(b"TRAILER!!!", 0, 0, 1, b"").0
    }
}

#[test]
fn fs_selftest_passes_without_an_initrd() {
    let (outcome, console) = boot("fs-selftest", None);
    let out = console.text();
    assert_eq!(outcome, TenantOutcome::Exited(0), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(
        !out.contains("initramfs"),
        "no initrd, no initramfs line:\n{out}"
    );
    // The in-guest smoke pass; every operation's edge cases are the kernel's host unit
    // tests (`cargo test -p pvmux-kernel`).
    for check in [
        "write_read",
        "unlink_open_file",
        "mkdir_rmdir",
        "rename",
        "symlinks",
        "getdents64_layout",
        "stat_times",
        "cleanup_no_leaks",
    ] {
        assert!(out.contains(&format!("PASS {check}\n")), "{check}:\n{out}");
    }
    assert!(out.contains("fs-selftest: 8/8 checks passed"), "{out}");
}

#[test]
fn packed_tree_is_listed_and_read_back_exactly() {
    let archive = test_tree_archive();
    let summary = initramfs::validate(&archive).expect("the packed archive is valid");
    let cmdline = "ls=/ ls=/dir ls=/dir/sub cat=/dir/file cat=/link cat=/dir/empty cat=/top.txt";
    let (outcome, console) = boot(cmdline, Some(archive.clone()));
    let raw = console.bytes();
    let out = console.text();
    assert_eq!(outcome, TenantOutcome::Exited(0), "{out}");
    assert!(
        out.contains(&format!(
            "pvmux-kernel: initramfs: {} entries, {} bytes\n",
            summary.entries,
            archive.len()
        )),
        "{out}"
    );
    // Directory sizes are (entries + 2) * 32; a symlink's size is its target's length.
    assert_eq!(
        ls_lines(&out, "/"),
        [
            "d 0755 160 dir",
            "l 0777 8 link -> dir/file",
            "- 0644 6 top.txt"
        ],
        "{out}"
    );
    assert_eq!(
        ls_lines(&out, "/dir"),
        ["- 0600 0 empty", "- 0644 259 file", "d 0700 96 sub"],
        "{out}"
    );
    assert_eq!(ls_lines(&out, "/dir/sub"), ["- 0644 5 deep.txt"], "{out}");
    assert_eq!(cat_bytes(&raw, "/dir/file"), binary_bytes());
    assert_eq!(cat_bytes(&raw, "/link"), binary_bytes());
    assert_eq!(cat_bytes(&raw, "/dir/empty"), b"");
    assert_eq!(cat_bytes(&raw, "/top.txt"), b"hello\n");
}

#[test]
fn fs_selftest_passes_next_to_initramfs_contents() {
    // The checks work under /.fs-selftest and must not trip over the unpacked tree.
    let (outcome, console) = boot("fs-selftest", Some(test_tree_archive()));
    let out = console.text();
    assert_eq!(outcome, TenantOutcome::Exited(0), "{out}");
    assert!(out.contains("pvmux-kernel: initramfs: 7 entries"), "{out}");
    assert!(out.contains("fs-selftest: 8/8 checks passed"), "{out}");
}

#[test]
fn missing_file_is_a_clean_enoent_exit() {
    let cases = [
        ("cat=/missing", "cat /missing", ENOENT),
        ("cat=/dir", "cat /dir", EISDIR),
        ("ls=/top.txt/x", "ls /top.txt/x", ENOTDIR),
    ];
    for (cmdline, what, errno) in cases {
        let (outcome, console) = boot(cmdline, Some(test_tree_archive()));
        let out = console.text();
        assert_eq!(
            outcome,
            TenantOutcome::Exited(EXIT_FS_ERROR_BASE + errno),
            "{cmdline}:\n{out}"
        );
        assert!(out.contains(&format!("pvmux-kernel: {what}: E")), "{out}");
        assert!(!out.contains("panic"), "{out}");
    }
    let (_, console) = boot("cat=/missing", Some(test_tree_archive()));
    assert!(
        console
            .text()
            .contains("pvmux-kernel: cat /missing: ENOENT (No such file or directory)\n"),
        "{}",
        console.text()
    );
}

#[test]
fn archive_hard_links_share_one_inode() {
    // newc stores a hard-linked file's data once, on its last member.
    let archive = Newc::new()
        .entry(b"bin", 0o040_755, 1, 2, b"")
        .entry(b"bin/a", 0o100_755, 7, 2, b"")
        .entry(b"./bin/b", 0o100_755, 7, 2, b"shared!")
        .entry(b"implicit/parent/f", 0o100_644, 8, 1, b"x")
        .finish();
    let (outcome, console) = boot(
        "ls=/bin cat=/bin/a ls=/implicit/parent",
        Some(archive.clone()),
    );
    let out = console.text();
    assert_eq!(outcome, TenantOutcome::Exited(0), "{out}");
    assert!(
        out.contains(&format!(
            "pvmux-kernel: initramfs: 4 entries, {} bytes",
            archive.len()
        )),
        "{out}"
    );
    assert_eq!(
        ls_lines(&out, "/bin"),
        ["- 0755 7 a", "- 0755 7 b"],
        "{out}"
    );
    assert_eq!(cat_bytes(&console.bytes(), "/bin/a"), b"shared!");
    assert_eq!(ls_lines(&out, "/implicit/parent"), ["- 0644 1 f"], "{out}");
}

#[test]
fn malformed_initrd_is_reported_and_boot_continues_empty() {
    let good = Newc::new().entry(b"a", 0o100_644, 1, 1, b"A");
    let mut bad_magic = good.0.clone();
    bad_magic.extend_from_slice(b"not a cpio header at all, just text........................................................................");
    let mut truncated = Newc::new().entry(b"a", 0o100_644, 1, 1, b"AAAA").finish();
    truncated.truncate(120);
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("garbage", b"hello, world\n".repeat(20), "bad header magic"),
        (
            "bad magic after a good entry",
            bad_magic,
            "bad header magic",
        ),
        ("truncated", truncated, "truncated archive"),
        (
            "dot-dot",
            Newc::new()
                .entry(b"x/../../etc", 0o100_644, 1, 1, b"")
                .finish(),
            "name contains '..'",
        ),
        (
            "no trailer",
            Newc::new().entry(b"a", 0o100_644, 1, 1, b"A").0,
            "no TRAILER!!! entry",
        ),
    ];
    for (what, initrd, reason) in cases {
        assert!(
            initramfs::validate(&initrd).is_err(),
            "{what}: the host would have refused it"
        );
        let (outcome, console) = boot("ls=/ exit=7", Some(initrd));
        let out = console.text();
        assert_eq!(outcome, TenantOutcome::Exited(7), "{what}:\n{out}");
        assert!(
            out.contains("pvmux-kernel: initramfs: error: ")
                && out.contains(reason)
                && out.contains("continuing with an empty filesystem"),
            "{what}:\n{out}"
        );
        assert!(ls_lines(&out, "/").is_empty(), "{what}: not empty:\n{out}");
    }
}
