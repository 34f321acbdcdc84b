//! Path walking: absolute and relative paths, `.`/`..`, slashes, the root, length limits.

use super::super::path::{push_components, NAME_MAX, PATH_MAX};
use super::*;
use crate::fs::errno::Errno::*;

/// A tree `/d/a/b/f` ("F"); returns `(fs, d, inode of f)`.
fn tree() -> (Fs, Ino, Ino) {
    let (mut fs, d) = fs_with_dir();
    fs.mkdir(d, b"a", 0o755).unwrap();
    fs.mkdir(d, b"a/b", 0o755).unwrap();
    put(&mut fs, d, b"a/b/f", b"F");
    let f = fs.stat(d, b"a/b/f").unwrap().ino;
    (fs, d, f)
}

#[test]
fn components_are_pushed_last_first_without_empty_ones() {
    let mut stack = Vec::new();
    push_components(&mut stack, b"//a/./b//c/").unwrap();
    assert_eq!(stack, [&b"c"[..], b"b", b".", b"a"]);
    // Pushing more (a symbolic link's target) puts its components on top, in order.
    push_components(&mut stack, b"x/y").unwrap();
    assert_eq!(stack.pop().as_deref(), Some(&b"x"[..]));
    assert_eq!(stack.pop().as_deref(), Some(&b"y"[..]));
    let mut empty = Vec::new();
    push_components(&mut empty, b"///").unwrap();
    assert!(empty.is_empty());
    assert_eq!(
        push_components(&mut empty, &[b'n'; NAME_MAX + 1]),
        Err(ENAMETOOLONG)
    );
}

#[test]
fn absolute_relative_and_oddly_written_paths_name_the_same_file() {
    let (mut fs, d, f) = tree();
    for p in [
        &b"a/b/f"[..],
        b"/d/a/b/f",
        b"a//b///f",
        b"./a/./b/../b/f",
        b"../d/a/b/f",
        b"a/b/../../a/b/f",
        b"//d//a//b//f",
    ] {
        assert_eq!(
            fs.lookup(d, p, true),
            Ok(f),
            "{}",
            String::from_utf8_lossy(p)
        );
    }
    let b = fs.lookup(d, b"a/b", true).unwrap();
    assert_eq!(fs.lookup(d, b"a/b/", true), Ok(b));
    assert_eq!(fs.lookup(d, b"a/b/.", true), Ok(b));
    assert_eq!(fs.lookup(b, b"f", true), Ok(f), "relative to another cwd");
    assert_eq!(fs.lookup(b, b"..", true), fs.lookup(d, b"a", true));
    assert_eq!(fs.lookup(b, b".", true), Ok(b));
}

#[test]
fn dotdot_at_the_root_stays_at_the_root() {
    let (mut fs, d, _) = tree();
    assert_eq!(fs.lookup(d, b"/..", true), Ok(ROOT_INO));
    assert_eq!(fs.lookup(d, b"/../../.", true), Ok(ROOT_INO));
    assert_eq!(fs.lookup(d, b"../../..", true), Ok(ROOT_INO));
    assert_eq!(fs.lookup(ROOT_INO, b"..", true), Ok(ROOT_INO));
    assert_eq!(fs.lookup(d, b"/../d", true), Ok(d));
    assert_eq!(fs.lookup(d, b"///", true), Ok(ROOT_INO));
    assert_eq!(fs.lookup(d, b"/", true), Ok(ROOT_INO));
}

#[test]
fn walking_errors() {
    let (mut fs, d, _) = tree();
    assert_eq!(fs.stat(d, b""), Err(ENOENT));
    assert_eq!(fs.stat(d, b"a/b/f/"), Err(ENOTDIR));
    assert_eq!(fs.stat(d, b"a/b/f/."), Err(ENOTDIR));
    assert_eq!(fs.stat(d, b"a/b/f/x"), Err(ENOTDIR));
    assert_eq!(fs.stat(d, b"a/b/f/.."), Err(ENOTDIR));
    assert_eq!(fs.stat(d, b"a/missing/f"), Err(ENOENT));
    assert_eq!(fs.stat(d, b"missing"), Err(ENOENT));
    assert_eq!(fs.stat(d, b"missing/"), Err(ENOENT));
    // A working directory that is not a directory, or no longer exists.
    let f = fs.lookup(d, b"a/b/f", true).unwrap();
    assert_eq!(fs.stat(f, b"x"), Err(ENOTDIR));
    assert_eq!(fs.stat(f, b"/d"), Ok(fs.stat_ino(d).unwrap()));
    assert_eq!(fs.stat(123_456, b"x"), Err(ENOENT));
}

#[test]
fn names_up_to_name_max_bytes() {
    let (mut fs, d) = fs_with_dir();
    let name = vec![b'x'; NAME_MAX];
    put(&mut fs, d, &name, b"");
    assert!(fs.stat(d, &name).is_ok());
    let too_long = vec![b'x'; NAME_MAX + 1];
    assert_eq!(
        fs.open(d, &too_long, O_CREAT | O_WRONLY, 0o644),
        Err(ENAMETOOLONG)
    );
    assert_eq!(fs.mkdir(d, &too_long, 0o755), Err(ENAMETOOLONG));
    assert_eq!(fs.stat(d, &too_long), Err(ENAMETOOLONG), "even if missing");
    let mut through = too_long.clone();
    through.extend_from_slice(b"/x");
    assert_eq!(fs.stat(d, &through), Err(ENAMETOOLONG), "in the middle");
    // A symbolic link whose target has a too-long component.
    fs.symlink(d, &too_long, b"link").unwrap();
    assert_eq!(fs.stat(d, b"link"), Err(ENAMETOOLONG));
}

#[test]
fn paths_up_to_path_max_bytes() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"a", b"");
    // "././.../a": exactly PATH_MAX bytes resolves, one more byte is ENAMETOOLONG.
    let mut path = b"./".repeat((PATH_MAX - 1) / 2);
    path.push(b'a');
    assert_eq!(path.len(), PATH_MAX);
    assert!(fs.stat(d, &path).is_ok());
    let mut longer = b"/".to_vec();
    longer.extend_from_slice(&path);
    assert_eq!(longer.len(), PATH_MAX + 1);
    assert_eq!(fs.stat(d, &longer), Err(ENAMETOOLONG));
    assert_eq!(fs.mkdir(d, &longer, 0o755), Err(ENAMETOOLONG));
    assert_eq!(fs.unlink(d, &longer), Err(ENAMETOOLONG));
}

#[test]
fn lookup_follows_the_final_link_only_when_asked() {
    let (mut fs, d, f) = tree();
    fs.symlink(d, b"a/b/f", b"l").unwrap();
    let l = fs.lstat(d, b"l").unwrap().ino;
    assert_eq!(fs.lookup(d, b"l", true), Ok(f));
    assert_eq!(fs.lookup(d, b"l", false), Ok(l));
    // A trailing slash forces following (and then a directory is required).
    assert_eq!(fs.lookup(d, b"l/", false), Err(ENOTDIR));
    fs.symlink(d, b"a", b"dl").unwrap();
    let a = fs.lookup(d, b"a", true).unwrap();
    assert_eq!(fs.lookup(d, b"dl/", false), Ok(a));
}

#[test]
fn a_walk_root_confines_absolute_paths_links_and_dotdot() {
    let (mut fs, d, f) = tree();
    fs.symlink(d, b"/a/b/f", b"abs").unwrap();
    fs.symlink(d, b"../../..", b"a/up").unwrap();
    let a = fs.lookup(ROOT_INO, b"/d/a", true).unwrap();
    fs.set_walk_root(d);
    assert_eq!(
        fs.lookup(ROOT_INO, b"/a/b/f", true),
        Ok(f),
        "absolute from the root"
    );
    assert_eq!(
        fs.lookup(ROOT_INO, b"/../../a/b/f", true),
        Ok(f),
        "`..` stops at it"
    );
    assert_eq!(
        fs.lookup(d, b"abs", true),
        Ok(f),
        "an absolute link starts there"
    );
    assert_eq!(
        fs.lookup(a, b"up/a/b/f", true),
        Ok(f),
        "a climbing link stops there"
    );
    assert_eq!(fs.lookup(d, b"..", true), Ok(d));
    assert_eq!(fs.lookup(ROOT_INO, b"/", true), Ok(d));
    assert_eq!(fs.lookup(ROOT_INO, b"/d", true), Err(ENOENT));
    // A walk that starts outside (a working directory kept across chroot) is not confined.
    assert_eq!(fs.lookup(ROOT_INO, b"d/a/b/f", true), Ok(f));
    assert_eq!(
        fs.at_real_root(|fs| fs.lookup(ROOT_INO, b"/d/a/b/f", true)),
        Ok(f)
    );
    assert_eq!(fs.walk_root(), d, "restored after");
    fs.set_walk_root(ROOT_INO);
    assert_eq!(fs.lookup(d, b"..", true), Ok(ROOT_INO));
}
