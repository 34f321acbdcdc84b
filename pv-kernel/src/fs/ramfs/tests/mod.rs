//! Host unit tests of the ramfs (`cargo test -p pvmux-kernel`): every operation's Linux
//! semantics and errnos, on a fresh [`Fs`] per test with a fake clock, and the host share
//! through a fake [`super::HostShare`].

use std::sync::atomic::{AtomicU64, Ordering};

use super::handle::oflag::*;
use super::{Fs, Ino, ROOT_INO};
use crate::fs::errno::Errno;

mod carry;
mod dirents;
mod dirs;
mod files;
mod host;
mod limits;
mod links;
mod paths;
mod perms;
mod rename;
mod sockets;
mod volume;

/// A clock that moves forward by 1 ns at every reading (shared by all tests, so only
/// "later than" is meaningful).
fn ticking_clock() -> u64 {
    static NOW: AtomicU64 = AtomicU64::new(1_700_000_000_000_000_000);
    NOW.fetch_add(1, Ordering::Relaxed)
}

/// A fresh filesystem (just `/`) with a ticking clock.
fn new_fs() -> Fs {
    Fs::new(ticking_clock)
}

/// Writes a whole new file `name` (relative to `dir`).
fn put(fs: &mut Fs, dir: Ino, name: &[u8], bytes: &[u8]) {
    let h = fs
        .open(dir, name, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
        .unwrap_or_else(|e| panic!("create {}: {e}", String::from_utf8_lossy(name)));
    assert_eq!(fs.write(h, bytes), Ok(bytes.len()));
    fs.close(h).unwrap();
}

/// Reads a whole file, in 512-byte reads.
fn get(fs: &mut Fs, dir: Ino, name: &[u8]) -> Result<Vec<u8>, Errno> {
    let h = fs.open(dir, name, O_RDONLY, 0)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    let r = loop {
        match fs.read(h, &mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    fs.close(h).unwrap();
    r.map(|()| out)
}

/// A filesystem with directory `/d` (returned) to work in.
fn fs_with_dir() -> (Fs, Ino) {
    let mut fs = new_fs();
    let d = fs.mkdir(ROOT_INO, b"/d", 0o755).unwrap();
    (fs, d)
}

/// The names in directory `ino`, in listing order.
fn names(fs: &mut Fs, ino: Ino) -> Vec<String> {
    fs.list(ino)
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect()
}

/// `rm -r` of everything in the root, then the inode and handle counts (a leak check: an
/// empty filesystem with no open handles has exactly the root).
fn counts_after_emptying(fs: &mut Fs) -> (usize, usize) {
    fn remove(fs: &mut Fs, dir: Ino, name: &[u8]) {
        let st = fs.lstat(dir, name).unwrap();
        if st.file_type() == super::FileType::Directory {
            for e in fs.list(st.ino).unwrap() {
                remove(fs, st.ino, &e.name);
            }
            fs.rmdir(dir, name).unwrap();
        } else {
            fs.unlink(dir, name).unwrap();
        }
    }
    for e in fs.list(ROOT_INO).unwrap() {
        remove(fs, ROOT_INO, &e.name);
    }
    (fs.inode_count(), fs.handle_count())
}
