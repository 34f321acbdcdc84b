//! Socket inodes (the names `AF_UNIX` sockets bind to): created once, `S_IFSOCK`, listed as
//! `DT_SOCK`, not openable, removed by `unlink`.

use super::super::encode::{dt, mode};
use super::super::FileType;
use super::*;
use crate::fs::errno::Errno::*;

#[test]
fn a_socket_name_is_created_once_and_is_a_socket() {
    let (mut fs, d) = fs_with_dir();
    let ino = fs.mksock(d, b"s", 0o755).unwrap();
    let st = fs.stat(d, b"s").unwrap();
    assert_eq!(st.ino, ino);
    assert_eq!(st.mode, mode::S_IFSOCK | 0o755);
    assert_eq!(st.file_type(), FileType::Socket);
    assert_eq!(st.size, 0);
    assert_eq!(FileType::Socket.dtype(), dt::DT_SOCK);
    assert_eq!(fs.mksock(d, b"s", 0o755), Err(EEXIST), "bind: EADDRINUSE");
    put(&mut fs, d, b"f", b"x");
    assert_eq!(fs.mksock(d, b"f", 0o755), Err(EEXIST));
    assert_eq!(fs.mksock(d, b"missing/s", 0o755), Err(ENOENT));
    assert_eq!(fs.mksock(d, b"f/s", 0o755), Err(ENOTDIR));
    // A dangling symbolic link is not followed: the name is taken.
    fs.symlink(ROOT_INO, b"nowhere", b"/d/l").unwrap();
    assert_eq!(fs.mksock(d, b"l", 0o755), Err(EEXIST));
}

#[test]
fn a_socket_is_not_opened_nor_walked_through_and_unlinks_like_a_file() {
    let (mut fs, d) = fs_with_dir();
    fs.mksock(d, b"s", 0o700).unwrap();
    assert_eq!(fs.open(d, b"s", O_RDWR, 0), Err(ENXIO));
    assert_eq!(fs.open(d, b"s", O_CREAT | O_RDWR, 0o644), Err(ENXIO));
    assert_eq!(
        fs.open(d, b"s", O_CREAT | O_EXCL | O_RDWR, 0o644),
        Err(EEXIST)
    );
    assert_eq!(fs.stat(d, b"s/x").map(|_| ()), Err(ENOTDIR));
    let listed = fs.list(d).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].file_type, FileType::Socket);
    let before = fs.inode_count();
    fs.unlink(d, b"s").unwrap();
    assert_eq!(fs.inode_count(), before - 1, "the inode is freed");
    assert_eq!(fs.stat(d, b"s").map(|_| ()), Err(ENOENT));
    fs.mksock(d, b"s", 0o700).unwrap();
}
