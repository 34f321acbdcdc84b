//! Hard links and symbolic links: link counts, `readlink`, following rules, loops (`ELOOP`).

use super::super::path::{PATH_MAX, SYMLOOP_MAX};
use super::*;
use crate::fs::errno::Errno::*;

#[test]
fn hard_links_share_the_inode_and_count_names() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"data");
    fs.mkdir(d, b"sub", 0o755).unwrap();
    fs.link(d, b"f", b"g").unwrap();
    fs.link(d, b"g", b"sub/h").unwrap();
    let (f, g) = (fs.stat(d, b"f").unwrap(), fs.stat(d, b"sub/h").unwrap());
    assert_eq!(f.ino, g.ino);
    assert_eq!(g.nlink, 3);
    assert_eq!(
        fs.stat(d, b"sub").unwrap().nlink,
        2,
        "a file link does not count in the directory's links"
    );
    fs.unlink(d, b"f").unwrap();
    assert_eq!(fs.stat(d, b"g").unwrap().nlink, 2);
    assert_eq!(get(&mut fs, d, b"sub/h").unwrap(), b"data");
    // Writes through one name show through the others.
    let h = fs.open(d, b"g", O_WRONLY | O_APPEND, 0).unwrap();
    fs.write(h, b"!").unwrap();
    fs.close(h).unwrap();
    assert_eq!(get(&mut fs, d, b"sub/h").unwrap(), b"data!");
    let before = fs.inode_count();
    fs.unlink(d, b"g").unwrap();
    fs.unlink(d, b"sub/h").unwrap();
    assert_eq!(fs.inode_count(), before - 1, "freed with its last name");
}

#[test]
fn link_errors() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"");
    put(&mut fs, d, b"g", b"");
    fs.mkdir(d, b"dir", 0o755).unwrap();
    assert_eq!(fs.link(d, b"f", b"g"), Err(EEXIST));
    assert_eq!(fs.link(d, b"f", b"dir"), Err(EEXIST));
    assert_eq!(fs.link(d, b"f", b"."), Err(EEXIST));
    assert_eq!(fs.link(d, b"dir", b"dir2"), Err(EPERM));
    assert_eq!(fs.link(d, b"missing", b"h"), Err(ENOENT));
    assert_eq!(fs.link(d, b"f", b"missing/h"), Err(ENOENT));
    assert_eq!(fs.link(d, b"f", b"g/h"), Err(ENOTDIR));
    assert_eq!(fs.stat(d, b"f").unwrap().nlink, 1);
}

#[test]
fn link_does_not_follow_a_symbolic_link() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"");
    fs.symlink(d, b"f", b"sl").unwrap();
    fs.link(d, b"sl", b"sl2").unwrap();
    let st = fs.lstat(d, b"sl2").unwrap();
    assert_eq!(st.mode, 0o120_777);
    assert_eq!(st.nlink, 2);
    assert_eq!(fs.stat(d, b"f").unwrap().nlink, 1);
    // A link to a symbolic link to a directory is fine (it is not a directory).
    fs.mkdir(d, b"dir", 0o755).unwrap();
    fs.symlink(d, b"dir", b"dl").unwrap();
    fs.link(d, b"dl", b"dl2").unwrap();
}

#[test]
fn link_ino_adds_names_for_archive_hard_links() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"x");
    let ino = fs.lookup(d, b"f", true).unwrap();
    fs.link_ino(d, b"g", ino).unwrap();
    assert_eq!(fs.stat(d, b"g").unwrap().ino, ino);
    assert_eq!(fs.stat_ino(ino).unwrap().nlink, 2);
    assert_eq!(fs.link_ino(d, b"g", ino), Err(EEXIST));
    assert_eq!(fs.link_ino(d, b"..", ino), Err(EEXIST));
    assert_eq!(fs.link_ino(d, b"h", d), Err(EPERM));
    assert_eq!(fs.link_ino(d, b"h", 9999), Err(ENOENT));
    assert_eq!(names(&mut fs, d), ["f", "g"], "a failed link adds no name");
}

#[test]
fn symbolic_links_store_their_target_and_are_followed() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"target", b"T");
    fs.symlink(d, b"target", b"link").unwrap();
    assert_eq!(fs.readlink(d, b"link").unwrap(), b"target");
    let l = fs.lstat(d, b"link").unwrap();
    assert_eq!((l.mode, l.size, l.nlink), (0o120_777, 6, 1));
    assert_eq!(
        fs.stat(d, b"link").unwrap().ino,
        fs.stat(d, b"target").unwrap().ino
    );
    assert_eq!(get(&mut fs, d, b"link").unwrap(), b"T");
    assert_eq!(fs.lookup(d, b"link", false), Ok(l.ino));
    // The target is stored as given, not resolved: it may name anything, even later.
    fs.symlink(d, b"later/../x//y", b"odd").unwrap();
    assert_eq!(fs.readlink(d, b"odd").unwrap(), b"later/../x//y");
}

#[test]
fn symlink_and_readlink_errors() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"target", b"T");
    fs.symlink(d, b"target", b"link").unwrap();
    fs.mkdir(d, b"dir", 0o755).unwrap();
    assert_eq!(fs.readlink(d, b"target"), Err(EINVAL));
    assert_eq!(fs.readlink(d, b"dir"), Err(EINVAL));
    assert_eq!(fs.readlink(d, b"missing"), Err(ENOENT));
    assert_eq!(fs.symlink(d, b"x", b"link"), Err(EEXIST));
    assert_eq!(fs.symlink(d, b"x", b"dir"), Err(EEXIST));
    assert_eq!(fs.symlink(d, b"x", b"."), Err(EEXIST));
    assert_eq!(fs.symlink(d, b"", b"empty"), Err(ENOENT));
    assert_eq!(fs.symlink(d, b"x", b"new/"), Err(ENOENT));
    assert_eq!(fs.symlink(d, b"x", b"missing/new"), Err(ENOENT));
    // Targets up to PATH_MAX bytes (4096 with the NUL, as Linux counts).
    let longest = vec![b'a'; PATH_MAX];
    fs.symlink(d, &longest, b"long").unwrap();
    assert_eq!(fs.readlink(d, b"long").unwrap(), longest);
    assert_eq!(
        fs.symlink(d, &vec![b'a'; PATH_MAX + 1], b"toolong"),
        Err(ENAMETOOLONG)
    );
}

#[test]
fn symbolic_link_loops_are_eloop() {
    let (mut fs, d) = fs_with_dir();
    fs.symlink(d, b"loop2", b"loop1").unwrap();
    fs.symlink(d, b"loop1", b"loop2").unwrap();
    fs.symlink(d, b"self", b"self").unwrap();
    fs.symlink(d, b"self/x", b"via").unwrap();
    assert_eq!(fs.stat(d, b"loop1"), Err(ELOOP));
    assert_eq!(fs.open(d, b"loop1", O_RDONLY, 0), Err(ELOOP));
    assert_eq!(fs.open(d, b"loop1/x", O_RDONLY, 0), Err(ELOOP));
    assert_eq!(fs.open(d, b"loop1", O_CREAT | O_WRONLY, 0o644), Err(ELOOP));
    assert_eq!(fs.stat(d, b"self"), Err(ELOOP));
    assert_eq!(fs.stat(d, b"via"), Err(ELOOP));
    assert_eq!(fs.mkdir(d, b"self/x", 0o755), Err(ELOOP));
    assert_eq!(fs.lookup_dir(d, b"self"), Err(ELOOP));
    assert_eq!(fs.stat(d, b"self/"), Err(ELOOP));
    // The links themselves are fine.
    assert!(fs.lstat(d, b"self").is_ok());
    assert_eq!(fs.readlink(d, b"loop1").unwrap(), b"loop2");
    fs.unlink(d, b"loop1").unwrap();
    assert_eq!(fs.stat(d, b"loop2"), Err(ENOENT), "now just dangling");
}

#[test]
fn a_chain_of_symloop_max_links_resolves_and_one_more_is_eloop() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"target", b"T");
    fs.symlink(d, b"target", b"c1").unwrap();
    for i in 2..=SYMLOOP_MAX + 1 {
        let (from, to) = (format!("c{}", i - 1), format!("c{i}"));
        fs.symlink(d, from.as_bytes(), to.as_bytes()).unwrap();
    }
    let last_ok = format!("c{SYMLOOP_MAX}");
    let first_bad = format!("c{}", SYMLOOP_MAX + 1);
    assert_eq!(get(&mut fs, d, last_ok.as_bytes()).unwrap(), b"T");
    assert_eq!(fs.stat(d, first_bad.as_bytes()), Err(ELOOP));
    // Links followed on the way count too: a directory link in front adds one.
    fs.mkdir(d, b"dir", 0o755).unwrap();
    fs.symlink(d, b"..", b"dir/up").unwrap();
    let via = format!("dir/up/c{}", SYMLOOP_MAX - 1);
    assert!(fs.stat(d, via.as_bytes()).is_ok());
    let via = format!("dir/up/{last_ok}");
    assert_eq!(fs.stat(d, via.as_bytes()), Err(ELOOP));
    // Only links in the middle of the path: SYMLOOP_MAX of them resolve, one more does not.
    let ups = |n: u32| {
        let mut p = b"dir/up/".repeat(n as usize);
        p.extend_from_slice(b"target");
        p
    };
    assert_eq!(get(&mut fs, d, &ups(SYMLOOP_MAX)).unwrap(), b"T");
    assert_eq!(fs.stat(d, &ups(SYMLOOP_MAX + 1)), Err(ELOOP));
}

#[test]
fn dangling_links_and_o_creat() {
    let (mut fs, d) = fs_with_dir();
    fs.symlink(d, b"nowhere", b"dangling").unwrap();
    assert_eq!(fs.stat(d, b"dangling"), Err(ENOENT));
    assert!(fs.lstat(d, b"dangling").is_ok());
    // O_CREAT|O_EXCL does not follow; O_NOFOLLOW refuses a final link.
    assert_eq!(
        fs.open(d, b"dangling", O_CREAT | O_EXCL | O_WRONLY, 0o644),
        Err(EEXIST)
    );
    assert_eq!(
        fs.open(d, b"dangling", O_RDONLY | O_NOFOLLOW, 0),
        Err(ELOOP)
    );
    // O_CREAT through a dangling link creates its target.
    let h = fs.open(d, b"dangling", O_CREAT | O_WRONLY, 0o600).unwrap();
    fs.write(h, b"made").unwrap();
    fs.close(h).unwrap();
    assert_eq!(get(&mut fs, d, b"nowhere").unwrap(), b"made");
    assert_eq!(fs.stat(d, b"nowhere").unwrap().mode, 0o100_600);
    // A link into a missing directory: O_CREAT cannot help.
    fs.symlink(d, b"nodir/file", b"deep").unwrap();
    assert_eq!(fs.open(d, b"deep", O_CREAT | O_WRONLY, 0o644), Err(ENOENT));
}

#[test]
fn o_nofollow_only_concerns_the_last_component() {
    let (mut fs, d) = fs_with_dir();
    fs.mkdir(d, b"dir", 0o755).unwrap();
    put(&mut fs, d, b"dir/f", b"F");
    fs.symlink(d, b"dir", b"dl").unwrap();
    let h = fs.open(d, b"dl/f", O_RDONLY | O_NOFOLLOW, 0).unwrap();
    fs.close(h).unwrap();
    assert_eq!(fs.open(d, b"dl", O_RDONLY | O_NOFOLLOW, 0), Err(ELOOP));
}

#[test]
fn directory_links_absolute_targets_and_relative_targets() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"target", b"T");
    fs.symlink(d, b"target", b"link").unwrap();
    fs.mkdir(d, b"dir", 0o755).unwrap();
    put(&mut fs, d, b"dir/inner", b"I");
    fs.symlink(d, b"dir", b"dlink").unwrap();
    assert_eq!(get(&mut fs, d, b"dlink/inner").unwrap(), b"I");
    assert_eq!(
        fs.stat(d, b"dlink/").unwrap().file_type(),
        super::super::FileType::Directory,
        "a trailing slash follows"
    );
    assert_eq!(
        fs.lstat(d, b"dlink/").unwrap().file_type(),
        super::super::FileType::Directory,
        "even for lstat"
    );
    assert_eq!(fs.stat(d, b"link/"), Err(ENOTDIR));
    assert_eq!(fs.rmdir(d, b"dlink"), Err(ENOTDIR));
    fs.symlink(d, b"/d/dir", b"alink").unwrap();
    assert_eq!(get(&mut fs, d, b"alink/../dir/inner").unwrap(), b"I");
    // A relative target is relative to the link's directory, not the caller's.
    fs.symlink(d, b"../target", b"dir/rel").unwrap();
    assert_eq!(get(&mut fs, d, b"dir/rel").unwrap(), b"T");
    let dir = fs.lookup(d, b"dir", true).unwrap();
    assert_eq!(get(&mut fs, dir, b"rel").unwrap(), b"T");
    // ".." after a directory link goes to the target's parent (physical, as in Linux).
    fs.mkdir(d, b"a", 0o755).unwrap();
    fs.mkdir(d, b"a/b", 0o755).unwrap();
    fs.symlink(d, b"a/b", b"ab").unwrap();
    let a = fs.lookup(d, b"a", true).unwrap();
    assert_eq!(fs.lookup(d, b"ab/..", true), Ok(a));
    // unlink removes the link, not the target.
    fs.unlink(d, b"link").unwrap();
    fs.unlink(d, b"dlink").unwrap();
    assert!(fs.stat(d, b"target").is_ok());
    assert!(fs.stat(d, b"dir/inner").is_ok());
}

#[test]
fn a_symbolic_link_to_a_file_in_the_middle_of_a_path_is_enotdir() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"");
    fs.symlink(d, b"f", b"fl").unwrap();
    assert_eq!(fs.stat(d, b"fl/x"), Err(ENOTDIR));
    assert_eq!(fs.mkdir(d, b"fl/x", 0o755), Err(ENOTDIR));
    assert_eq!(fs.lookup_dir(d, b"fl"), Err(ENOTDIR));
}
