//! The lazy host share (`--rootfs DIR`, `TenantConfig::hostfs` + the boot option `hostfs`):
//! the guest lists and reads a host tree with `ls=`/`cat=` byte for byte, cannot reach a file
//! outside the root through symbolic links, runs `fs-selftest` (writes stay in the guest) on
//! top of it, sees an initramfs overlay it, and boots quickly with the whole host root `/`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pvmux_host::hostfs::HostFs;
use pvmux_host::{initramfs, TenantConfig, TenantOutcome};
use pvmux_tests::{args, cat_bytes, host, kernel, ls_lines, Capture, TempDir};

/// Exit code of a failed `ls=`/`cat=`: 64 + the Linux errno (pv-kernel `commands::fs`).
const EXIT_ENOENT: i32 = 64 + 2;

/// Boots the embedded kernel with `cmdline`, sharing `share` and placing `initrd`.
fn boot(cmdline: &str, share: Option<&Path>, initrd: Option<Vec<u8>>) -> (TenantOutcome, Capture) {
    let console = Capture::default();
    let mut cfg = TenantConfig::new(
        "hostfs",
        kernel(),
        64 << 20,
        2,
        args(cmdline),
        Box::new(console.clone()),
    );
    cfg.hostfs = share.map(|d| Arc::new(HostFs::open(d).expect("share opens")));
    cfg.initrd = initrd.map(Arc::new);
    let tenant = host().launch(cfg).expect("tenant launches");
    assert!(
        tenant.wait_started(Duration::from_secs(10)),
        "tenant did not start"
    );
    (tenant.wait(), console)
}

/// 1.5 MiB of varied bytes (more than one host read and many `cat` chunks).
fn big_bytes() -> Vec<u8> {
    (0..3u32 << 19)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// `tmp/root`: `/a` (hello), `/big`, `/dir/sub/deep.txt`, `/link -> dir/sub/deep.txt`,
/// `/esc -> ../outside`, `/escfile -> ../outside/secret`, `/abs -> /../../outside/secret`,
/// `/fifo`; and `tmp/outside/secret`.
fn tree(tag: &str) -> TempDir {
    let t = TempDir::per_process("pvmux-hostfs", tag);
    let root = t.0.join("root");
    std::fs::create_dir_all(root.join("dir/sub")).expect("mkdir");
    std::fs::create_dir_all(t.0.join("outside")).expect("mkdir");
    std::fs::write(t.0.join("outside/secret"), b"TOP-SECRET\n").expect("write");
    std::fs::write(root.join("a"), b"hello\n").expect("write");
    std::fs::write(root.join("big"), big_bytes()).expect("write");
    std::fs::write(root.join("dir/sub/deep.txt"), b"deep\n").expect("write");
    for (target, name) in [
        ("dir/sub/deep.txt", "link"),
        ("../outside", "esc"),
        ("../outside/secret", "escfile"),
        ("/../../outside/secret", "abs"),
    ] {
        std::os::unix::fs::symlink(target, root.join(name)).expect("symlink");
    }
    for (p, mode) in [
        ("a", 0o640),
        ("big", 0o644),
        ("dir", 0o755),
        ("dir/sub/deep.txt", 0o644),
    ] {
        std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
    }
    let status = std::process::Command::new("mkfifo")
        .arg(root.join("fifo"))
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo");
    t
}

#[test]
fn lists_and_reads_a_host_tree_lazily() {
    let t = tree("read");
    let root = t.0.join("root");
    let (outcome, console) = boot(
        "hostfs ls=/ ls=/dir/sub cat=/a cat=/big cat=/link exit=0",
        Some(&root),
        None,
    );
    let out = console.text();
    assert_eq!(outcome, TenantOutcome::Exited(0), "{out}");
    assert!(
        out.contains("hostfs: host directory shared read-only at /"),
        "{out}"
    );
    let top = ls_lines(&out, "/");
    assert_eq!(
        top,
        [
            "- 0640 6 a",
            "l 0777 21 abs -> /../../outside/secret",
            &format!("- 0644 {} big", 3 << 19),
            "d 0755 64 dir",
            "l 0777 10 esc -> ../outside",
            "l 0777 17 escfile -> ../outside/secret",
            "l 0777 16 link -> dir/sub/deep.txt",
        ],
        "the FIFO is not shown:\n{out}"
    );
    assert_eq!(ls_lines(&out, "/dir/sub"), ["- 0644 5 deep.txt"]);
    let bytes = console.bytes();
    assert_eq!(cat_bytes(&bytes, "/a"), b"hello\n");
    assert_eq!(cat_bytes(&bytes, "/big"), big_bytes());
    assert_eq!(cat_bytes(&bytes, "/link"), b"deep\n");
}

#[test]
fn symlinks_cannot_reach_outside_the_root() {
    let t = tree("escape");
    let root = t.0.join("root");
    for path in [
        "/esc/secret",
        "/escfile",
        "/abs",
        "/../outside/secret",
        "/dir/../../outside/secret",
    ] {
        let (outcome, console) = boot(&format!("hostfs cat={path}"), Some(&root), None);
        let out = console.text();
        assert_eq!(outcome, TenantOutcome::Exited(EXIT_ENOENT), "{path}: {out}");
        assert!(!out.contains("TOP-SECRET"), "{path}: {out}");
        assert!(
            out.contains(&format!("cat {path}: ENOENT")),
            "{path}: {out}"
        );
    }
}

#[test]
fn fs_selftest_passes_on_the_share_and_the_host_is_not_written() {
    let t = tree("selftest");
    let root = t.0.join("root");
    let before = std::fs::read_dir(&root).expect("list").count();
    let (outcome, console) = boot("hostfs fs-selftest", Some(&root), None);
    let out = console.text();
    assert_eq!(outcome, TenantOutcome::Exited(0), "{out}");
    let summary = out
        .lines()
        .find_map(|l| l.strip_prefix("fs-selftest: "))
        .and_then(|l| l.strip_suffix(" checks passed"))
        .unwrap_or_else(|| panic!("no summary:\n{out}"));
    let (passed, total) = summary.split_once('/').expect("X/Y");
    assert_eq!(passed, total, "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert_eq!(std::fs::read_dir(&root).expect("list").count(), before);
    assert!(!root.join(".fs-selftest").exists());
}

#[test]
fn the_share_needs_the_kernel_word_and_the_word_needs_a_share() {
    let t = tree("word");
    let root = t.0.join("root");
    let (outcome, console) = boot("ls=/ exit=0", Some(&root), None);
    let out = console.text();
    assert_eq!(outcome, TenantOutcome::Exited(0), "{out}");
    assert!(
        ls_lines(&out, "/").is_empty(),
        "no `hostfs` word, no share:\n{out}"
    );
    let (outcome, console) = boot("hostfs ls=/ exit=0", None, None);
    let out = console.text();
    assert_eq!(outcome, TenantOutcome::Exited(0), "{out}");
    assert!(out.contains("the host shares no directory"), "{out}");
    assert!(ls_lines(&out, "/").is_empty(), "{out}");
}

#[test]
fn an_initramfs_overlays_the_share() {
    let t = tree("overlay");
    let root = t.0.join("root");
    let over = t.0.join("over");
    std::fs::create_dir_all(over.join("dir")).expect("mkdir");
    std::fs::write(over.join("a"), b"from the initrd\n").expect("write");
    std::fs::write(over.join("dir/new"), b"new\n").expect("write");
    let archive = initramfs::pack_dir(&over).expect("pack");
    let (outcome, console) = boot(
        "hostfs cat=/a cat=/dir/new cat=/dir/sub/deep.txt exit=0",
        Some(&root),
        Some(archive),
    );
    let bytes = console.bytes();
    assert_eq!(outcome, TenantOutcome::Exited(0), "{}", console.text());
    assert_eq!(cat_bytes(&bytes, "/a"), b"from the initrd\n");
    assert_eq!(cat_bytes(&bytes, "/dir/new"), b"new\n");
    assert_eq!(cat_bytes(&bytes, "/dir/sub/deep.txt"), b"deep\n");
}

#[test]
fn sharing_the_whole_host_root_boots_fast() {
    let t = tree("slash");
    let a = t.0.join("root/a");
    let a = a.to_str().expect("utf-8 temp path");
    let start = Instant::now();
    let (outcome, console) = boot(
        &format!("hostfs ls=/ ls=/proc cat={a} exit=0"),
        Some(Path::new("/")),
        None,
    );
    let took = start.elapsed();
    let out = console.text();
    assert_eq!(outcome, TenantOutcome::Exited(0), "{out}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        ls_lines(&out, "/")
            .iter()
            .any(|l| l.ends_with(" tmp") || l.contains(" tmp ")),
        "{out}"
    );
    assert!(
        ls_lines(&out, "/proc").is_empty(),
        "procfs is not shared:\n{out}"
    );
    assert_eq!(cat_bytes(&console.bytes(), a), b"hello\n");
}
