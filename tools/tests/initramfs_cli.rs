//! `pvmux run --initrd FILE | --rootfs-pack DIR` (and `--rootfs DIR`, the lazy share): a usable archive boots, and a missing, malformed
//! or too large one is a clear host error (exit status 125) before the guest starts.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};

fn pvmux(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pvmux"))
        .args(args)
        .output()
        .expect("pvmux runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_host_error(args: &[&str], needles: &[&str]) {
    let o = pvmux(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
    for needle in needles {
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in: {err}"
        );
    }
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    // Each cause once (an error that prints its source and returns it was said twice).
    assert!(
        err.matches("(os error").count() <= 1,
        "{args:?}: an OS error said twice: {err}"
    );
    assert!(
        !err.contains("sandbox pid"),
        "the guest must not start: {err}"
    );
}

/// A fresh temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let d =
            std::env::temp_dir().join(format!("pvmux-initramfs-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create temp dir");
        Self(d)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().expect("utf-8 path").to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small root filesystem tree.
fn rootfs(t: &TempDir) -> String {
    let root = t.path("root");
    std::fs::create_dir_all(format!("{root}/bin")).expect("mkdir");
    std::fs::create_dir_all(format!("{root}/etc")).expect("mkdir");
    std::fs::write(format!("{root}/etc/motd"), b"hello from the initramfs\n").expect("write");
    std::fs::write(format!("{root}/bin/init"), b"#!/bin/sh\n").expect("write");
    std::os::unix::fs::symlink("init", format!("{root}/bin/sh")).expect("symlink");
    root
}

#[test]
fn missing_initrd_is_a_clear_error() {
    assert_host_error(
        &["run", "--initrd", "/nonexistent/initrd.cpio"],
        &[
            "--initrd /nonexistent/initrd.cpio",
            "cannot read",
            "No such file",
        ],
    );
}

#[test]
fn text_file_initrd_is_not_a_cpio_archive() {
    let t = TempDir::new("text");
    let path = t.path("notes.txt");
    std::fs::write(&path, b"these are not the files you are looking for\n").expect("write");
    assert_host_error(&["run", "--initrd", &path], &["not a cpio newc archive"]);
}

#[test]
fn truncated_and_corrupt_initrds_are_refused() {
    let t = TempDir::new("trunc");
    let archive = pvmux_host::initramfs::pack_dir(rootfs(&t)).expect("pack");
    let path = t.path("cut.cpio");
    std::fs::write(&path, &archive[..archive.len() - 40]).expect("write");
    assert_host_error(&["run", "--initrd", &path], &["truncated cpio archive"]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&archive).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let path = t.path("cut.cpio.gz");
    std::fs::write(&path, &gz[..gz.len() / 2]).expect("write");
    assert_host_error(&["run", "--initrd", &path], &["corrupt gzip data"]);
    let path = t.path("empty");
    std::fs::write(&path, b"").expect("write");
    assert_host_error(&["run", "--initrd", &path], &["empty file"]);
}

#[test]
fn initrd_and_rootfs_pack_are_mutually_exclusive() {
    let t = TempDir::new("both");
    let root = rootfs(&t);
    assert_host_error(
        &["run", "--initrd", "/tmp/x.cpio", "--rootfs-pack", &root],
        &["--initrd", "--rootfs-pack", "cannot be used with"],
    );
}

#[test]
fn rootfs_must_be_a_directory() {
    let t = TempDir::new("notdir");
    let path = t.path("file");
    std::fs::write(&path, b"x").expect("write");
    assert_host_error(
        &["run", "--rootfs", &path],
        &["--rootfs", "is not a directory"],
    );
    assert_host_error(
        &["run", "--rootfs", "/nonexistent/root"],
        &["--rootfs /nonexistent/root is not usable", "No such file"],
    );
    assert_host_error(
        &["run", "--disk", "/nonexistent/disk.img", "--", "/bin/true"],
        &[
            "--disk /nonexistent/disk.img is not usable: cannot open disk image",
            "No such file",
        ],
    );
    assert_host_error(
        &["run", "--rootfs-pack", &path],
        &["--rootfs-pack", "is not a directory"],
    );
    assert_host_error(
        &["run", "--rootfs-pack", "/nonexistent/root"],
        &[
            "cannot pack --rootfs-pack /nonexistent/root",
            "No such file",
        ],
    );
}

#[test]
fn initrd_too_big_for_mem_says_how_much_is_needed() {
    let t = TempDir::new("big");
    let root = t.path("root");
    std::fs::create_dir_all(&root).expect("mkdir");
    // Incompressible-ish data so the test does not depend on anything but sizes.
    let data: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(format!("{root}/blob"), data).expect("write");
    assert_host_error(
        &["run", "--mem", "16M", "--rootfs-pack", &root],
        &["does not fit in guest memory of 16 MiB", "at least"],
    );
}

#[test]
fn rootfs_and_rootfs_pack_boot_and_exit() {
    let t = TempDir::new("boot");
    let root = rootfs(&t);
    for (flag, banner) in [
        ("--rootfs-pack", format!("rootfs {root} (5 entries")),
        ("--rootfs", format!("rootfs {root} (shared read-only)")),
    ] {
        let o = pvmux(&[
            "run",
            "--vcpus",
            "1",
            "--mem",
            "32M",
            flag,
            &root,
            "--cmdline",
            "exit=0",
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{flag}: {err}");
        assert!(err.contains(&banner), "{flag}: banner: {err}");
    }
}

#[test]
fn plain_and_gzip_initrds_boot() {
    let t = TempDir::new("files");
    let archive = pvmux_host::initramfs::pack_dir(rootfs(&t)).expect("pack");
    let plain = t.path("root.cpio");
    std::fs::write(&plain, &archive).expect("write");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&archive).expect("gzip");
    let gzipped = t.path("root.cpio.gz");
    std::fs::write(&gzipped, gz.finish().expect("gzip")).expect("write");
    for path in [plain, gzipped] {
        let o = pvmux(&[
            "run",
            "--vcpus",
            "1",
            "--mem",
            "32M",
            "--initrd",
            &path,
            "--cmdline",
            "exit=7",
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(7), "{path}: {err}");
        assert!(
            err.contains(&format!("initrd {path} (5 entries")),
            "banner: {err}"
        );
    }
}

#[test]
fn help_documents_the_initrd_flags() {
    let o = pvmux(&["run", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "--initrd <FILE>",
        "--rootfs <DIR>",
        "--rootfs-pack <DIR>",
        "newc",
        "gzip",
    ] {
        assert!(out.contains(needle), "help lacks {needle}: {out}");
    }
}
