//! Directories: mkdir, rmdir, unlink of directories, link counts, removed directories,
//! listing.

use super::*;
use crate::fs::errno::Errno::*;

#[test]
fn mkdir_creates_an_empty_directory_and_counts_links() {
    let (mut fs, d) = fs_with_dir();
    assert_eq!(fs.stat_ino(d).unwrap().nlink, 2);
    assert_eq!(fs.stat_ino(ROOT_INO).unwrap().nlink, 3);
    let sub = fs.mkdir(d, b"sub", 0o750).unwrap();
    let st = fs.stat(d, b"sub").unwrap();
    assert_eq!((st.ino, st.mode, st.nlink), (sub, 0o040_750, 2));
    assert_eq!(st.size, 64, "two entries of 32 bytes: . and ..");
    assert_eq!(fs.stat_ino(d).unwrap().nlink, 3);
    fs.mkdir(d, b"sub/inner/", 0o755).unwrap();
    assert_eq!(fs.stat_ino(sub).unwrap().nlink, 3);
    // Files do not count.
    put(&mut fs, d, b"sub/file", b"");
    assert_eq!(fs.stat_ino(sub).unwrap().nlink, 3);
    assert_eq!(fs.stat_ino(sub).unwrap().size, 4 * 32);
}

#[test]
fn mkdir_errors() {
    let (mut fs, d) = fs_with_dir();
    fs.mkdir(d, b"sub", 0o755).unwrap();
    put(&mut fs, d, b"file", b"");
    fs.symlink(d, b"sub", b"link").unwrap();
    fs.symlink(d, b"nowhere", b"dangling").unwrap();
    assert_eq!(fs.mkdir(d, b"sub", 0o755), Err(EEXIST));
    assert_eq!(fs.mkdir(d, b"sub/", 0o755), Err(EEXIST));
    assert_eq!(fs.mkdir(d, b"file", 0o755), Err(EEXIST));
    assert_eq!(fs.mkdir(d, b"link", 0o755), Err(EEXIST));
    assert_eq!(
        fs.mkdir(d, b"dangling", 0o755),
        Err(EEXIST),
        "mkdir does not follow a final symbolic link"
    );
    assert_eq!(fs.mkdir(d, b".", 0o755), Err(EEXIST));
    assert_eq!(fs.mkdir(d, b"..", 0o755), Err(EEXIST));
    assert_eq!(fs.mkdir(ROOT_INO, b"/", 0o755), Err(EEXIST));
    assert_eq!(fs.mkdir(d, b"nope/x", 0o755), Err(ENOENT));
    assert_eq!(fs.mkdir(d, b"file/x", 0o755), Err(ENOTDIR));
    assert_eq!(fs.mkdir(d, b"", 0o755), Err(ENOENT));
    // Through a symbolic link to a directory.
    fs.mkdir(d, b"link/viaLink", 0o755).unwrap();
    assert!(fs.stat(d, b"sub/viaLink").is_ok());
}

#[test]
fn rmdir_removes_only_empty_directories() {
    let (mut fs, d) = fs_with_dir();
    let before = fs.inode_count();
    fs.mkdir(d, b"sub", 0o755).unwrap();
    fs.mkdir(d, b"sub/inner", 0o755).unwrap();
    assert_eq!(fs.rmdir(d, b"sub"), Err(ENOTEMPTY));
    put(&mut fs, d, b"sub/inner/f", b"");
    assert_eq!(fs.rmdir(d, b"sub/inner"), Err(ENOTEMPTY));
    fs.unlink(d, b"sub/inner/f").unwrap();
    fs.rmdir(d, b"sub/inner/").unwrap();
    assert_eq!(fs.stat(d, b"sub").unwrap().nlink, 2);
    fs.rmdir(d, b"sub").unwrap();
    assert_eq!(fs.stat(d, b"sub"), Err(ENOENT));
    assert_eq!(fs.stat_ino(d).unwrap().nlink, 2);
    assert_eq!(fs.inode_count(), before);
}

#[test]
fn rmdir_errors() {
    let (mut fs, d) = fs_with_dir();
    fs.mkdir(d, b"sub", 0o755).unwrap();
    fs.mkdir(d, b"sub/inner", 0o755).unwrap();
    put(&mut fs, d, b"file", b"");
    fs.symlink(d, b"sub", b"link").unwrap();
    assert_eq!(fs.rmdir(d, b"file"), Err(ENOTDIR));
    assert_eq!(fs.rmdir(d, b"link"), Err(ENOTDIR), "rmdir does not follow");
    assert_eq!(fs.rmdir(d, b"missing"), Err(ENOENT));
    assert_eq!(fs.rmdir(d, b"missing/x"), Err(ENOENT));
    assert_eq!(fs.rmdir(d, b"file/x"), Err(ENOTDIR));
    // Linux: "." is EINVAL, ".." ENOTEMPTY, "/" EBUSY.
    assert_eq!(fs.rmdir(d, b"sub/inner/."), Err(EINVAL));
    assert_eq!(fs.rmdir(d, b"."), Err(EINVAL));
    assert_eq!(fs.rmdir(d, b"sub/inner/.."), Err(ENOTEMPTY));
    assert_eq!(fs.rmdir(ROOT_INO, b"/"), Err(EBUSY));
    assert_eq!(fs.rmdir(ROOT_INO, b"///"), Err(EBUSY));
    assert!(fs.stat(d, b"sub/inner").is_ok());
}

#[test]
fn unlink_refuses_directories_and_removes_one_name() {
    let (mut fs, d) = fs_with_dir();
    fs.mkdir(d, b"sub", 0o755).unwrap();
    put(&mut fs, d, b"f", b"");
    assert_eq!(fs.unlink(d, b"sub"), Err(EISDIR));
    assert_eq!(fs.unlink(d, b"sub/"), Err(EISDIR));
    assert_eq!(fs.unlink(d, b"."), Err(EISDIR));
    assert_eq!(fs.unlink(ROOT_INO, b"/"), Err(EISDIR));
    assert_eq!(fs.unlink(d, b"f/"), Err(ENOTDIR));
    assert_eq!(fs.unlink(d, b"missing"), Err(ENOENT));
    let d0 = fs.stat_ino(d).unwrap();
    fs.unlink(d, b"f").unwrap();
    let d1 = fs.stat_ino(d).unwrap();
    assert!(d1.mtime_ns > d0.mtime_ns, "the directory's mtime moves");
    assert_eq!(names(&mut fs, d), ["sub"]);
}

#[test]
fn a_removed_directory_lists_nothing_and_takes_no_new_entries() {
    let (mut fs, d) = fs_with_dir();
    let gone = fs.mkdir(d, b"gone", 0o755).unwrap();
    let h = fs.open(d, b"gone", O_RDONLY | O_DIRECTORY, 0).unwrap();
    fs.rmdir(d, b"gone").unwrap();
    assert_eq!(fs.fstat(h).unwrap().nlink, 0);
    assert_eq!(fs.getdents64(h, &mut [0u8; 256]), Ok(0));
    // As a working directory: nothing can be created in it.
    assert_eq!(fs.mkdir(gone, b"x", 0o755), Err(ENOENT));
    assert_eq!(fs.open(gone, b"f", O_CREAT | O_WRONLY, 0o644), Err(ENOENT));
    assert_eq!(fs.symlink(gone, b"t", b"l"), Err(ENOENT));
    assert_eq!(fs.stat(gone, b"x"), Err(ENOENT));
    fs.close(h).unwrap();
    // Once freed, its number is stale: ENOENT, even for ".".
    assert_eq!(fs.stat_ino(gone), Err(ENOENT));
    assert_eq!(fs.stat(gone, b"."), Err(ENOENT));
    assert_eq!(fs.lookup(gone, b"..", true), Err(ENOENT));
    // Absolute paths do not depend on the working directory.
    assert_eq!(fs.lookup(gone, b"/d", true), Ok(d));
}

#[test]
fn list_is_sorted_by_name_without_dot_entries() {
    let (mut fs, d) = fs_with_dir();
    for name in ["zeta", "Alpha", "beta", "_x", "0"] {
        put(&mut fs, d, name.as_bytes(), b"");
    }
    fs.mkdir(d, b"mid", 0o755).unwrap();
    assert_eq!(
        names(&mut fs, d),
        ["0", "Alpha", "_x", "beta", "mid", "zeta"]
    );
    let entries = fs.list(d).unwrap();
    let mid = entries.iter().find(|e| e.name == b"mid").unwrap();
    assert_eq!(mid.file_type, super::super::FileType::Directory);
    assert_eq!(mid.ino, fs.lookup(d, b"mid", true).unwrap());
    let f = fs.lookup(d, b"zeta", true).unwrap();
    assert_eq!(fs.list(f), Err(ENOTDIR));
    assert_eq!(fs.list(9999), Err(ENOENT));
}

#[test]
fn lookup_dir_is_for_chdir() {
    let (mut fs, d) = fs_with_dir();
    fs.mkdir(d, b"sub", 0o755).unwrap();
    put(&mut fs, d, b"f", b"");
    fs.symlink(d, b"sub", b"link").unwrap();
    let sub = fs.lookup(d, b"sub", true).unwrap();
    assert_eq!(fs.lookup_dir(d, b"sub"), Ok(sub));
    assert_eq!(fs.lookup_dir(d, b"link"), Ok(sub));
    assert_eq!(fs.lookup_dir(d, b"f"), Err(ENOTDIR));
    assert_eq!(fs.lookup_dir(d, b"missing"), Err(ENOENT));
    assert_eq!(fs.lookup_dir(sub, b".."), Ok(d));
}

#[test]
fn the_root_cannot_be_freed() {
    let mut fs = new_fs();
    assert_eq!(fs.inode_count(), 1);
    let st = fs.stat(ROOT_INO, b"/").unwrap();
    assert_eq!((st.ino, st.mode, st.nlink), (ROOT_INO, 0o040_755, 2));
    assert_eq!(fs.rmdir(ROOT_INO, b"/"), Err(EBUSY));
    assert_eq!(fs.rename(ROOT_INO, b"/", b"/x"), Err(EBUSY));
    assert_eq!(fs.inode_count(), 1);
}
