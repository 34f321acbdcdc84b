//! `rename`: Linux's replacement rules, link counts, `..` of moved directories.

use super::*;
use crate::fs::errno::Errno::*;

#[test]
fn a_file_replaces_a_file_atomically() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"a", b"AAA");
    put(&mut fs, d, b"b", b"BB");
    let a = fs.stat(d, b"a").unwrap().ino;
    let hb = fs.open(d, b"b", O_RDONLY, 0).unwrap();
    fs.rename(d, b"a", b"b").unwrap();
    assert_eq!(fs.stat(d, b"a"), Err(ENOENT));
    let st = fs.stat(d, b"b").unwrap();
    assert_eq!((st.ino, st.nlink), (a, 1));
    assert_eq!(get(&mut fs, d, b"b").unwrap(), b"AAA");
    // The replaced file lives on for its open handle.
    assert_eq!(fs.fstat(hb).unwrap().nlink, 0);
    let mut buf = [0u8; 4];
    assert_eq!(fs.read(hb, &mut buf), Ok(2));
    assert_eq!(&buf[..2], b"BB");
    fs.close(hb).unwrap();
    assert_eq!(names(&mut fs, d), ["b"]);
}

#[test]
fn renaming_onto_itself_or_another_link_of_it_does_nothing() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"b", b"x");
    let ino = fs.stat(d, b"b").unwrap().ino;
    fs.rename(d, b"b", b"b").unwrap();
    assert_eq!(fs.stat(d, b"b").unwrap().ino, ino);
    fs.link(d, b"b", b"b2").unwrap();
    // Linux: if both names are links to the same file, rename does nothing.
    fs.rename(d, b"b", b"b2").unwrap();
    assert_eq!(names(&mut fs, d), ["b", "b2"]);
    assert_eq!(fs.stat(d, b"b").unwrap().nlink, 2);
    fs.mkdir(d, b"dir", 0o755).unwrap();
    fs.rename(d, b"dir", b"dir").unwrap();
    fs.rename(d, b"dir", b"./dir/").unwrap();
    assert!(fs.stat(d, b"dir").is_ok());
}

#[test]
fn rename_type_errors() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"");
    fs.mkdir(d, b"dir", 0o755).unwrap();
    fs.mkdir(d, b"full", 0o755).unwrap();
    put(&mut fs, d, b"full/x", b"");
    assert_eq!(fs.rename(d, b"f", b"dir"), Err(EISDIR));
    assert_eq!(fs.rename(d, b"dir", b"f"), Err(ENOTDIR));
    assert_eq!(fs.rename(d, b"dir", b"full"), Err(ENOTEMPTY));
    assert_eq!(fs.rename(d, b"f/", b"g"), Err(ENOTDIR));
    assert_eq!(fs.rename(d, b"f", b"g/"), Err(ENOTDIR));
    assert_eq!(fs.rename(d, b"missing", b"g"), Err(ENOENT));
    assert_eq!(fs.rename(d, b"f", b"nope/g"), Err(ENOENT));
    assert_eq!(fs.rename(d, b"f", b"f/g"), Err(ENOTDIR));
    // ".", ".." and "/" cannot be renamed or be the new name: EBUSY.
    assert_eq!(fs.rename(d, b".", b"c"), Err(EBUSY));
    assert_eq!(fs.rename(d, b"dir/..", b"c"), Err(EBUSY));
    assert_eq!(fs.rename(d, b"f", b"."), Err(EBUSY));
    assert_eq!(fs.rename(ROOT_INO, b"/", b"/x"), Err(EBUSY));
    // Nothing changed.
    assert_eq!(names(&mut fs, d), ["dir", "f", "full"]);
}

#[test]
fn a_directory_cannot_move_into_its_own_subtree() {
    let (mut fs, d) = fs_with_dir();
    fs.mkdir(d, b"x", 0o755).unwrap();
    fs.mkdir(d, b"x/y", 0o755).unwrap();
    fs.symlink(d, b"x/y", b"ylink").unwrap();
    assert_eq!(fs.rename(d, b"x", b"x/y/x"), Err(EINVAL));
    assert_eq!(fs.rename(d, b"x", b"x/new"), Err(EINVAL));
    assert_eq!(
        fs.rename(d, b"x", b"ylink/new"),
        Err(EINVAL),
        "through a link"
    );
    assert_eq!(fs.rename(ROOT_INO, b"/d", b"/d/x/z"), Err(EINVAL));
    assert!(fs.stat(d, b"x/y").is_ok());
}

#[test]
fn a_directory_replaces_an_empty_directory() {
    let (mut fs, d) = fs_with_dir();
    fs.mkdir(d, b"x", 0o755).unwrap();
    fs.mkdir(d, b"x/y", 0o755).unwrap();
    let z = fs.mkdir(d, b"z", 0o755).unwrap();
    let x = fs.lookup(d, b"x", true).unwrap();
    assert_eq!(fs.stat_ino(d).unwrap().nlink, 4);
    fs.rename(d, b"x/y", b"z").unwrap();
    assert_eq!(fs.stat(d, b"x/y"), Err(ENOENT));
    assert_eq!(
        fs.stat_ino(z),
        Err(ENOENT),
        "the replaced directory is freed"
    );
    assert_eq!(fs.stat_ino(x).unwrap().nlink, 2, "x lost its subdirectory");
    assert_eq!(fs.stat_ino(d).unwrap().nlink, 4, "d: x and z (the moved y)");
    assert_eq!(fs.lookup(d, b"z/..", true), Ok(d));
}

#[test]
fn a_replaced_directory_that_is_open_lists_nothing() {
    let (mut fs, d) = fs_with_dir();
    fs.mkdir(d, b"src", 0o755).unwrap();
    put(&mut fs, d, b"src/f", b"");
    fs.mkdir(d, b"dst", 0o755).unwrap();
    let h = fs.open(d, b"dst", O_RDONLY | O_DIRECTORY, 0).unwrap();
    fs.rename(d, b"src", b"dst").unwrap();
    assert_eq!(fs.fstat(h).unwrap().nlink, 0);
    assert_eq!(fs.getdents64(h, &mut [0u8; 256]), Ok(0));
    fs.close(h).unwrap();
    assert_eq!(names(&mut fs, d), ["dst"]);
    assert_eq!(get(&mut fs, d, b"dst/f").unwrap(), b"");
}

#[test]
fn moving_a_directory_across_parents_moves_its_dotdot_and_link_counts() {
    let (mut fs, d) = fs_with_dir();
    let x = fs.mkdir(d, b"x", 0o755).unwrap();
    let z = fs.mkdir(d, b"z", 0o755).unwrap();
    fs.mkdir(d, b"z/inner", 0o755).unwrap();
    fs.rename(d, b"z", b"x/z2").unwrap();
    assert_eq!(fs.lookup(d, b"x/z2", true), Ok(z));
    assert_eq!(fs.lookup(d, b"x/z2/..", true), Ok(x));
    assert_eq!(fs.lookup(d, b"x/z2/inner/../..", true), Ok(x));
    assert_eq!(fs.stat_ino(x).unwrap().nlink, 3);
    assert_eq!(fs.stat_ino(d).unwrap().nlink, 3);
    assert_eq!(
        fs.stat_ino(z).unwrap().nlink,
        3,
        "its own count is unchanged"
    );
    fs.rename(d, b"x/", b"w/").unwrap();
    assert_eq!(fs.lookup(d, b"w/z2/../..", true), Ok(d));
    assert_eq!(names(&mut fs, d), ["w"]);
}

#[test]
fn moving_a_file_across_directories_keeps_its_inode() {
    let (mut fs, d) = fs_with_dir();
    fs.mkdir(d, b"a", 0o755).unwrap();
    fs.mkdir(d, b"b", 0o755).unwrap();
    put(&mut fs, d, b"a/f", b"data");
    let ino = fs.stat(d, b"a/f").unwrap().ino;
    let (a0, b0) = (
        fs.stat(d, b"a").unwrap().mtime_ns,
        fs.stat(d, b"b").unwrap().mtime_ns,
    );
    fs.rename(d, b"a/f", b"b/g").unwrap();
    assert_eq!(fs.stat(d, b"b/g").unwrap().ino, ino);
    assert_eq!(get(&mut fs, d, b"b/g").unwrap(), b"data");
    assert!(fs.stat(d, b"a").unwrap().mtime_ns > a0);
    assert!(fs.stat(d, b"b").unwrap().mtime_ns > b0);
    assert_eq!(fs.stat(d, b"a").unwrap().nlink, 2);
}

#[test]
fn rename_does_not_follow_symbolic_links() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"target", b"T");
    fs.symlink(d, b"target", b"link").unwrap();
    fs.rename(d, b"link", b"moved").unwrap();
    assert_eq!(fs.readlink(d, b"moved").unwrap(), b"target");
    put(&mut fs, d, b"f", b"F");
    fs.rename(d, b"f", b"moved").unwrap();
    assert_eq!(
        get(&mut fs, d, b"target").unwrap(),
        b"T",
        "the link was replaced, not its target"
    );
    assert_eq!(fs.lstat(d, b"moved").unwrap().mode & 0o170_000, 0o100_000);
}

#[test]
fn renaming_into_a_removed_directory_fails() {
    let (mut fs, d) = fs_with_dir();
    let gone = fs.mkdir(d, b"gone", 0o755).unwrap();
    let h = fs.open(d, b"gone", O_RDONLY, 0).unwrap();
    fs.rmdir(d, b"gone").unwrap();
    put(&mut fs, d, b"f", b"");
    assert_eq!(fs.rename(ROOT_INO, b"/d/f", b"x"), Ok(()), "relative to /");
    assert_eq!(fs.rename(gone, b"/x", b"f"), Err(ENOENT));
    assert!(fs.stat(ROOT_INO, b"/x").is_ok());
    fs.close(h).unwrap();
}

#[test]
fn a_renamed_file_is_found_by_its_new_name_and_a_removed_one_by_none() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"a", b"x");
    fs.mkdir(d, b"sub", 0o755).unwrap();
    let ino = fs.stat(d, b"a").unwrap().ino;
    let sub = fs.stat(d, b"sub").unwrap().ino;
    assert_eq!(fs.a_name_of(ino), Some((d, b"a".to_vec())));
    fs.rename(d, b"a", b"sub/b").unwrap();
    assert_eq!(fs.a_name_of(ino), Some((sub, b"b".to_vec())));
    fs.unlink(d, b"sub/b").unwrap();
    assert_eq!(fs.a_name_of(ino), None);
}
