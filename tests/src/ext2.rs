//! ext2 images made and checked by the host's e2fsprogs (`mkfs.ext2`, `e2fsck`, `debugfs`),
//! for the disk tests (`pvmux run --disk`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// `PATH` for e2fsprogs (in `sbin`).
pub const E2FS_PATH: &str = "/usr/sbin:/sbin:/usr/bin:/bin";

/// A fresh ext2 image of `size_m` MiB with 1 KiB blocks.
pub fn mkfs(dir: &Path, name: &str, size_m: u32) -> PathBuf {
    let p = dir.join(name);
    let out = Command::new("mkfs.ext2")
        .args(["-q", "-F", "-b", "1024"])
        .arg(&p)
        .arg(format!("{size_m}M"))
        .env("PATH", E2FS_PATH)
        .output()
        .expect("mkfs.ext2 runs");
    assert!(out.status.success(), "mkfs.ext2: {out:?}");
    p
}

/// `e2fsck -fn IMAGE`: exit status and output.
pub fn fsck(img: &Path) -> (i32, String) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(img)
        .env("PATH", E2FS_PATH)
        .output()
        .expect("e2fsck runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `debugfs -R "cat PATH" IMAGE`: the file's bytes as e2fsprogs reads them.
pub fn debugfs_cat(img: &Path, path: &str) -> Vec<u8> {
    let out = Command::new("debugfs")
        .args(["-R", &format!("cat {path}")])
        .arg(img)
        .env("PATH", E2FS_PATH)
        .output()
        .expect("debugfs runs");
    out.stdout
}
