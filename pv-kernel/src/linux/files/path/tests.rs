//! Host unit tests of the Linux layer's path calls over a fresh ramfs: `open`'s flags as
//! Linux decodes them and what they do to files, directories and symbolic links, and the
//! name operations with their errnos.

use super::at::*;
use super::names::*;
use super::open::{open_node, OpenHow};
use crate::fs::ramfs::{oflag::*, FileType, Ino, ROOT_INO};
use crate::fs::{Errno, Errno::*, Fs};
use crate::linux::files::file::fl;

fn clock() -> u64 {
    1_700_000_000_000_000_000
}

/// A filesystem with `/d` holding a file `f` ("data"), a directory `sub`, a symbolic link
/// `lf` to `f` and a dangling one `ln` to `missing`.
fn fs() -> (Fs, Ino) {
    let mut fs = Fs::new(clock);
    let d = fs.mkdir(ROOT_INO, b"/d", 0o755).unwrap();
    let h = fs.open(d, b"f", O_CREAT | O_WRONLY, 0o644).unwrap();
    fs.write(h, b"data").unwrap();
    fs.close(h).unwrap();
    fs.mkdir(d, b"sub", 0o755).unwrap();
    fs.symlink(d, b"f", b"lf").unwrap();
    fs.symlink(d, b"missing", b"ln").unwrap();
    (fs, d)
}

/// Opens with `open(2)` flags and closes again: the type of what was opened.
fn open(fs: &mut Fs, d: Ino, path: &[u8], flags: i32) -> Result<FileType, Errno> {
    let how = OpenHow::decode(flags as u32, 0o666, 0o022)?;
    let (h, st) = open_node(fs, d, path, &how)?;
    fs.close(h).unwrap();
    Ok(st.file_type())
}

fn size(fs: &mut Fs, d: Ino, path: &[u8]) -> u64 {
    fs.stat(d, path).unwrap().size
}

#[test]
fn open_flags_match_the_host_linux() {
    assert_eq!(fl::O_PATH, libc::O_PATH as u32);
    assert_eq!(fl::O_CLOEXEC, libc::O_CLOEXEC as u32);
    assert_eq!(fl::O_TMPFILE_BIT | O_DIRECTORY, libc::O_TMPFILE as u32);
    assert_eq!(O_DIRECTORY, libc::O_DIRECTORY as u32);
    assert_eq!(O_NOFOLLOW, libc::O_NOFOLLOW as u32);
    assert_eq!(
        O_CREAT | O_EXCL | O_TRUNC,
        (libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC) as u32
    );
    assert_eq!(RENAME_NOREPLACE, libc::RENAME_NOREPLACE as u64);
    assert_eq!(RENAME_EXCHANGE, libc::RENAME_EXCHANGE as u64);
    assert_eq!(RENAME_WHITEOUT, libc::RENAME_WHITEOUT as u64);
    assert_eq!(UTIME_NOW, libc::UTIME_NOW);
    assert_eq!(UTIME_OMIT, libc::UTIME_OMIT);
}

#[test]
fn open_flags_decode_like_linux() {
    let d = |f: i32| OpenHow::decode(f as u32, 0o4777, 0o022);
    // O_CREAT | O_DIRECTORY is refused, before anything else.
    assert_eq!(d(libc::O_CREAT | libc::O_DIRECTORY), Err(EINVAL));
    // O_TMPFILE: needs O_DIRECTORY (it is part of O_TMPFILE) and write access; then it is
    // not supported by this filesystem.
    assert_eq!(d(libc::O_TMPFILE | libc::O_RDONLY), Err(EINVAL));
    assert_eq!(d(fl::O_TMPFILE_BIT as i32 | libc::O_RDWR), Err(EINVAL));
    assert_eq!(d(libc::O_TMPFILE | libc::O_RDWR), Err(ENOTSUP));
    assert_eq!(
        d(libc::O_TMPFILE | libc::O_CREAT | libc::O_RDWR),
        Err(EINVAL)
    );
    // O_PATH keeps only O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC, before the checks.
    let p = d(libc::O_PATH | libc::O_CREAT | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_RDWR)
        .unwrap();
    assert!(p.path_only && p.cloexec);
    assert_eq!(p.fs_flags, O_DIRECTORY);
    assert_eq!(p.file_flags, fl::O_PATH | fl::O_CLOEXEC);
    assert!(d(libc::O_PATH | libc::O_TMPFILE).is_ok());
    // The mode loses the umask's bits and anything beyond the permissions.
    let c = d(libc::O_CREAT | libc::O_WRONLY | libc::O_APPEND).unwrap();
    assert_eq!(c.perm, 0o4755);
    assert_eq!(c.fs_flags, O_CREAT | O_WRONLY);
    assert_eq!(c.file_flags & (O_APPEND | O_ACCMODE), O_APPEND | O_WRONLY);
    assert!(!c.cloexec && !c.path_only);
    // Access mode 3: checked as read-write, kept as neither.
    let three = d(3).unwrap();
    assert_eq!(three.fs_flags & O_ACCMODE, O_RDWR);
    assert_eq!(three.file_flags & O_ACCMODE, 3);
}

#[test]
fn open_creates_truncates_and_checks_types() {
    let (mut fs, d) = fs();
    assert_eq!(
        open(&mut fs, d, b"f", libc::O_RDONLY),
        Ok(FileType::Regular)
    );
    assert_eq!(open(&mut fs, d, b"new", libc::O_RDONLY), Err(ENOENT));
    assert_eq!(
        open(&mut fs, d, b"new", libc::O_CREAT | libc::O_WRONLY),
        Ok(FileType::Regular)
    );
    assert_eq!(
        fs.stat(d, b"new").unwrap().mode & 0o777,
        0o644,
        "umask applied"
    );
    // O_EXCL: an existing name, even a dangling symbolic link, is EEXIST.
    assert_eq!(
        open(
            &mut fs,
            d,
            b"f",
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY
        ),
        Err(EEXIST)
    );
    assert_eq!(
        open(
            &mut fs,
            d,
            b"ln",
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY
        ),
        Err(EEXIST)
    );
    // Without O_EXCL, O_CREAT through a dangling link creates its target.
    assert_eq!(
        open(&mut fs, d, b"ln", libc::O_CREAT | libc::O_WRONLY),
        Ok(FileType::Regular)
    );
    assert!(fs.stat(d, b"missing").is_ok());
    // O_EXCL without O_CREAT means nothing.
    assert_eq!(
        open(&mut fs, d, b"f", libc::O_EXCL | libc::O_RDONLY),
        Ok(FileType::Regular)
    );
    // O_TRUNC truncates whatever the access mode (Linux truncates even read-only opens),
    // but not without O_TRUNC.
    assert_eq!(open(&mut fs, d, b"f", libc::O_RDWR), Ok(FileType::Regular));
    assert_eq!(size(&mut fs, d, b"f"), 4);
    assert_eq!(
        open(&mut fs, d, b"f", libc::O_RDONLY | libc::O_TRUNC),
        Ok(FileType::Regular)
    );
    assert_eq!(size(&mut fs, d, b"f"), 0);
    let h = fs.open(d, b"f", O_WRONLY, 0).unwrap();
    fs.write(h, b"again").unwrap();
    fs.close(h).unwrap();
    assert_eq!(
        open(&mut fs, d, b"f", 3 | libc::O_TRUNC),
        Ok(FileType::Regular)
    );
    assert_eq!(size(&mut fs, d, b"f"), 0);
    let ro = OpenHow::decode((libc::O_RDONLY | libc::O_TRUNC) as u32, 0, 0).unwrap();
    assert_eq!(
        ro.file_flags & O_ACCMODE,
        O_RDONLY,
        "still read-only afterwards"
    );
    // Directories: read-only only; O_DIRECTORY refuses anything else.
    assert_eq!(
        open(&mut fs, d, b"sub", libc::O_RDONLY),
        Ok(FileType::Directory)
    );
    assert_eq!(
        open(&mut fs, d, b"sub", libc::O_RDONLY | libc::O_DIRECTORY),
        Ok(FileType::Directory)
    );
    assert_eq!(open(&mut fs, d, b"sub", libc::O_WRONLY), Err(EISDIR));
    assert_eq!(
        open(&mut fs, d, b"sub", 3),
        Err(EISDIR),
        "access mode 3 is checked as O_RDWR"
    );
    assert_eq!(
        open(&mut fs, d, b"sub", libc::O_CREAT | libc::O_RDONLY),
        Err(EISDIR)
    );
    assert_eq!(open(&mut fs, d, b"f", libc::O_DIRECTORY), Err(ENOTDIR));
    assert_eq!(open(&mut fs, d, b"f/", libc::O_RDONLY), Err(ENOTDIR));
    assert_eq!(
        open(&mut fs, d, b"nodir/", libc::O_CREAT | libc::O_WRONLY),
        Err(EISDIR)
    );
    // Symbolic links: followed unless O_NOFOLLOW (ELOOP).
    assert_eq!(
        open(&mut fs, d, b"lf", libc::O_RDONLY),
        Ok(FileType::Regular)
    );
    assert_eq!(
        open(&mut fs, d, b"lf", libc::O_RDONLY | libc::O_NOFOLLOW),
        Err(ELOOP)
    );
    // O_PATH: no access, no truncation, no creation.
    assert_eq!(
        open(&mut fs, d, b"sub", libc::O_PATH | libc::O_WRONLY),
        Ok(FileType::Directory)
    );
    fs.truncate(d, b"f", 3).unwrap();
    assert_eq!(
        open(
            &mut fs,
            d,
            b"f",
            libc::O_PATH | libc::O_TRUNC | libc::O_WRONLY
        ),
        Ok(FileType::Regular)
    );
    assert_eq!(size(&mut fs, d, b"f"), 3);
    assert_eq!(
        open(&mut fs, d, b"gone", libc::O_PATH | libc::O_CREAT),
        Err(ENOENT)
    );
    assert_eq!(fs.handle_count(), 0, "every open was closed");
}

#[test]
fn unlinkat_removes_files_or_with_at_removedir_directories() {
    let (mut fs, d) = fs();
    assert_eq!(
        unlink_at(&mut fs, d, b"f", AT_SYMLINK_NOFOLLOW),
        Err(EINVAL)
    );
    assert_eq!(unlink_at(&mut fs, d, b"sub", 0), Err(EISDIR));
    assert_eq!(unlink_at(&mut fs, d, b"f", AT_REMOVEDIR), Err(ENOTDIR));
    unlink_at(&mut fs, d, b"sub", AT_REMOVEDIR).unwrap();
    unlink_at(&mut fs, d, b"f", 0).unwrap();
    // A symbolic link is removed, not its target.
    unlink_at(&mut fs, d, b"ln", 0).unwrap();
    assert_eq!(fs.lstat(d, b"lf").unwrap().file_type(), FileType::Symlink);
    assert_eq!(unlink_at(&mut fs, d, b"f", 0), Err(ENOENT));
}

#[test]
fn linkat_names_an_inode_again() {
    let (mut fs, d) = fs();
    let f = fs.lookup(d, b"f", false).unwrap();
    let sub = fs.lookup(d, b"sub", false).unwrap();
    link_at(&mut fs, f, sub, b"g").unwrap();
    assert_eq!(fs.stat(d, b"sub/g").unwrap().ino, f);
    assert_eq!(fs.stat_ino(f).unwrap().nlink, 2);
    assert_eq!(
        link_at(&mut fs, f, d, b"lf"),
        Err(EEXIST),
        "an existing name, not followed"
    );
    assert_eq!(link_at(&mut fs, sub, d, b"sub2"), Err(EPERM), "a directory");
    assert_eq!(
        link_at(&mut fs, f, d, b"h/"),
        Err(ENOENT),
        "trailing slash, no such name"
    );
    assert_eq!(
        link_at(&mut fs, f, d, b"sub/"),
        Err(EEXIST),
        "trailing slash, existing"
    );
    // The link itself, not its target (linkat without AT_SYMLINK_FOLLOW).
    let lf = fs.lookup(d, b"lf", false).unwrap();
    link_at(&mut fs, lf, d, b"lf2").unwrap();
    assert_eq!(fs.lstat(d, b"lf2").unwrap().file_type(), FileType::Symlink);
    // An inode whose last name is gone (unlinked while open) cannot be linked back.
    let h = fs.open(d, b"sub/g", O_RDONLY, 0).unwrap();
    fs.unlink(d, b"f").unwrap();
    fs.unlink(d, b"sub/g").unwrap();
    assert_eq!(link_at(&mut fs, f, d, b"back"), Err(ENOENT));
    fs.close(h).unwrap();
}

#[test]
fn renameat2_flags_and_directories() {
    let (mut fs, d) = fs();
    let sub = fs.lookup(d, b"sub", false).unwrap();
    assert_eq!(
        rename_at(&mut fs, d, b"f", d, b"g", 8),
        Err(EINVAL),
        "unknown flag"
    );
    assert_eq!(
        rename_at(&mut fs, d, b"f", d, b"lf", RENAME_EXCHANGE),
        Err(EINVAL)
    );
    assert_eq!(
        rename_at(
            &mut fs,
            d,
            b"f",
            d,
            b"lf",
            RENAME_NOREPLACE | RENAME_EXCHANGE
        ),
        Err(EINVAL)
    );
    assert_eq!(
        rename_at(&mut fs, d, b"f", d, b"g", RENAME_WHITEOUT),
        Err(EINVAL)
    );
    // NOREPLACE: an existing target (even a dangling link) is EEXIST and nothing moves.
    assert_eq!(
        rename_at(&mut fs, d, b"f", d, b"ln", RENAME_NOREPLACE),
        Err(EEXIST)
    );
    assert!(fs.stat(d, b"f").is_ok());
    rename_at(&mut fs, d, b"f", d, b"g", RENAME_NOREPLACE).unwrap();
    // Between two starting directories (relative paths from each).
    rename_at(&mut fs, d, b"g", sub, b"moved", 0).unwrap();
    assert_eq!(fs.stat(d, b"sub/moved").unwrap().size, 4);
    rename_at(&mut fs, sub, b"moved", ROOT_INO, b"/top", 0).unwrap();
    assert!(fs.stat(ROOT_INO, b"/top").is_ok());
    // Replacing is the default.
    rename_at(&mut fs, ROOT_INO, b"/top", d, b"lf", 0).unwrap();
    assert_eq!(fs.lstat(d, b"lf").unwrap().file_type(), FileType::Regular);
    // A starting directory that was removed cannot be named.
    let gone = fs.mkdir(d, b"gone", 0o755).unwrap();
    fs.rmdir(d, b"gone").unwrap();
    assert_eq!(rename_at(&mut fs, gone, b"x", d, b"y", 0), Err(ENOENT));
}

#[test]
fn directory_paths_for_getcwd() {
    let (mut fs, d) = fs();
    assert_eq!(dir_path(&mut fs, ROOT_INO).unwrap(), b"/");
    assert_eq!(dir_path(&mut fs, d).unwrap(), b"/d");
    let deep = fs.mkdir(d, b"sub/deeper", 0o755).unwrap();
    assert_eq!(dir_path(&mut fs, deep).unwrap(), b"/d/sub/deeper");
    fs.rename(d, b"sub", b"renamed").unwrap();
    assert_eq!(dir_path(&mut fs, deep).unwrap(), b"/d/renamed/deeper");
    fs.rmdir(d, b"renamed/deeper").unwrap();
    assert_eq!(dir_path(&mut fs, deep), Err(ENOENT), "removed");
    // Past PATH_MAX.
    let mut cur = d;
    for _ in 0..20 {
        cur = fs.mkdir(cur, &[b'n'; 250], 0o755).unwrap();
    }
    assert_eq!(dir_path(&mut fs, cur), Err(ENAMETOOLONG));
}

/// `/proc/PID/exe`'s path: every link on the way and at the end resolved, `.` and `..`
/// applied after the links before them (`/bin/sub/..` is `/d` when `/bin` links to `d`).
#[test]
fn real_paths_resolve_every_link_as_proc_pid_exe() {
    let (mut fs, d) = fs();
    let deep = fs.mkdir(d, b"sub/deep", 0o755).unwrap();
    let h = fs.open(deep, b"prog", O_CREAT | O_WRONLY, 0o755).unwrap();
    fs.close(h).unwrap();
    fs.symlink(ROOT_INO, b"d", b"/bin").unwrap();
    fs.symlink(d, b"deep/prog", b"sub/alias").unwrap();
    fs.symlink(ROOT_INO, b"/bin/sub/alias", b"/abs").unwrap();
    fs.symlink(d, b"loop", b"loop").unwrap();
    let cases: [(Ino, &[u8]); 9] = [
        (ROOT_INO, b"/d/sub/deep/prog"),
        (ROOT_INO, b"/bin/sub/alias"),
        (ROOT_INO, b"/abs"),
        (ROOT_INO, b"abs"),
        (deep, b"prog"),
        (deep, b"./prog"),
        (deep, b"../../../bin/sub/deep/prog"),
        (d, b"sub/../sub/alias"),
        (ROOT_INO, b"//bin//sub/./alias"),
    ];
    for (cwd, path) in cases {
        assert_eq!(
            real_path(&mut fs, cwd, path).as_deref(),
            Ok(&b"/d/sub/deep/prog"[..]),
            "{}",
            String::from_utf8_lossy(path)
        );
    }
    assert_eq!(real_path(&mut fs, ROOT_INO, b"/bin/sub/..").unwrap(), b"/d");
    assert_eq!(real_path(&mut fs, d, b"lf").unwrap(), b"/d/f");
    assert_eq!(real_path(&mut fs, ROOT_INO, b"/").unwrap(), b"/");
    assert_eq!(real_path(&mut fs, d, b"ln"), Err(ENOENT), "dangling");
    assert_eq!(real_path(&mut fs, d, b"loop"), Err(ELOOP));
}

#[test]
fn mknod_types_as_linux() {
    assert_eq!(mknod_type(0o644), Ok(()));
    assert_eq!(mknod_type(libc::S_IFREG | 0o644), Ok(()));
    assert_eq!(mknod_type(libc::S_IFDIR | 0o755), Err(EPERM), "mkdir's job");
    for unsupported in [libc::S_IFIFO, libc::S_IFCHR, libc::S_IFBLK, libc::S_IFSOCK] {
        assert_eq!(mknod_type(unsupported | 0o644), Err(EPERM));
    }
    assert_eq!(mknod_type(libc::S_IFLNK | 0o777), Err(EINVAL));
    assert_eq!(mknod_type(libc::S_IFMT), Err(EINVAL));
}

#[test]
fn chown_clears_set_ids_of_non_directories() {
    let keep = u32::MAX;
    assert_eq!(perm_after_chown(FileType::Regular, 0o6755, 0, keep), 0o755);
    assert_eq!(
        perm_after_chown(FileType::Regular, 0o6745, keep, 5),
        0o2745,
        "no group x"
    );
    assert_eq!(
        perm_after_chown(FileType::Regular, 0o6755, keep, keep),
        0o6755,
        "no change"
    );
    assert_eq!(perm_after_chown(FileType::Directory, 0o3755, 0, 0), 0o3755);
}

#[test]
fn utimensat_time_arguments() {
    let now = 1_234_000_000_000;
    assert_eq!(time_arg(now, 5, UTIME_NOW), Ok(Some(now)));
    assert_eq!(time_arg(now, 5, UTIME_OMIT), Ok(None));
    assert_eq!(time_arg(now, 5, 7), Ok(Some(5_000_000_007)));
    assert_eq!(time_arg(now, -5, 7), Ok(Some(7)), "before the epoch");
    assert_eq!(time_arg(now, i64::MAX, 0), Ok(Some(u64::MAX)), "saturates");
    assert_eq!(time_arg(now, 0, 1_000_000_000), Err(EINVAL));
    assert_eq!(time_arg(now, 0, -1), Err(EINVAL));
}

#[test]
fn an_adopted_descriptor_is_opened_again_without_creating_or_truncating() {
    let (mut fs, _) = fs();
    let flags = O_WRONLY | O_TRUNC | O_CREAT | O_EXCL;
    // A file of the guest's memory is neither a host nor a volume file: refused, untouched.
    for volume in [false, true] {
        assert_eq!(
            super::reopen_node(&mut fs, b"/d/f", flags, volume).map(|_| ()),
            Err(EINVAL)
        );
    }
    assert_eq!(size(&mut fs, ROOT_INO, b"/d/f"), 4, "not truncated");
    // A file that is gone is not created again.
    assert_eq!(
        super::reopen_node(&mut fs, b"/d/gone", flags, false).map(|_| ()),
        Err(ENOENT)
    );
    assert_eq!(fs.stat(ROOT_INO, b"/d/gone").map(|_| ()), Err(ENOENT));
    // Nor is a directory a file.
    assert_eq!(
        super::reopen_node(&mut fs, b"/d/sub", O_RDONLY, false).map(|_| ()),
        Err(EINVAL)
    );
}

/// `openat2`'s walk restrictions over the same tree: `RESOLVE_BENEATH` stops `..` and
/// absolute paths at the starting directory (`EXDEV`), `RESOLVE_IN_ROOT` makes it the root,
/// `RESOLVE_NO_SYMLINKS` refuses every link it would follow, and a mount point is `EXDEV`
/// for a walk that stays in this file system.
#[test]
fn walk_rules_restrict_lookups_as_openat2s_resolve_flags() {
    use crate::fs::ramfs::WalkRules;
    let (mut fs, d) = fs();
    let beneath = WalkRules {
        beneath: true,
        ..WalkRules::default()
    };
    let sub = fs.lookup(d, b"sub", true).unwrap();
    let under = |fs: &mut Fs, root: Ino, rules: WalkRules, path: &[u8]| {
        fs.with_walk_rules(Some(root), rules, |fs| fs.lookup(root, path, true))
    };
    assert_eq!(under(&mut fs, d, beneath, b"f"), fs.lookup(d, b"f", true));
    assert_eq!(
        under(&mut fs, d, beneath, b"sub/../f"),
        fs.lookup(d, b"f", true)
    );
    assert_eq!(under(&mut fs, sub, beneath, b".."), Err(EXDEV));
    assert_eq!(under(&mut fs, d, beneath, b"/d/f"), Err(EXDEV));
    // As a root: `..` stays, absolute paths start there.
    let in_root = WalkRules::default();
    assert_eq!(under(&mut fs, sub, in_root, b".."), Ok(sub));
    assert_eq!(under(&mut fs, d, in_root, b"/f"), fs.lookup(d, b"f", true));
    // No symbolic links followed; the link itself is still named without following.
    let no_links = WalkRules {
        no_symlinks: true,
        ..WalkRules::default()
    };
    assert_eq!(under(&mut fs, d, no_links, b"lf"), Err(ELOOP));
    let link = fs.with_walk_rules(None, no_links, |fs| fs.lookup(d, b"lf", false));
    assert_eq!(link, fs.lookup(d, b"lf", false));
    // The rules end with the call.
    assert_eq!(fs.lookup(sub, b"../f", true), fs.lookup(d, b"f", true));
    // A mount point is another file system.
    fs.mount(b"/d/sub", crate::fs::mount::MountKind::Proc)
        .unwrap();
    let no_mounts = WalkRules {
        no_mounts: true,
        ..WalkRules::default()
    };
    assert_eq!(under(&mut fs, d, no_mounts, b"sub"), Err(EXDEV));
    assert_eq!(under(&mut fs, d, no_mounts, b"sub/x"), Err(EXDEV));
    assert_eq!(under(&mut fs, d, no_mounts, b"f"), fs.lookup(d, b"f", true));
}

/// `openat2`'s `struct open_how` as Linux's `build_open_flags` checks it.
#[test]
fn open_how_is_checked_as_linux() {
    use super::open::decode_open_how;
    let how = |flags: u64, mode: u64, resolve: u64| {
        let mut raw = alloc::vec::Vec::new();
        for v in [flags, mode, resolve] {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        raw
    };
    let (f, m, r) = decode_open_how(&how(u64::from(O_CREAT | O_RDWR), 0o640, 0x08)).unwrap();
    assert_eq!((f, m), (O_CREAT | O_RDWR, 0o640));
    assert!(r.rules.beneath && r.rules.no_mounts && !r.in_root);
    assert_eq!(decode_open_how(&how(0, 0, 0)[..16]).err(), Some(EINVAL));
    let mut long = how(0, 0, 0);
    long.extend_from_slice(&[0; 8]);
    assert!(decode_open_how(&long).is_ok());
    long[30] = 1;
    assert_eq!(decode_open_how(&long).err(), Some(E2BIG));
    for bad in [
        how(0o10, 0, 0),                           // not an open flag
        how(1 << 33, 0, 0),                        // above 32 bits
        how(0, 0o644, 0),                          // a mode without O_CREAT
        how(u64::from(O_CREAT), 0o10000, 0),       // a mode past the permission bits
        how(u64::from(fl::O_PATH | O_RDWR), 0, 0), // O_PATH's flags only
        how(0, 0, 0x40),                           // an unknown RESOLVE_ flag
        how(0, 0, 0x18),                           // BENEATH and IN_ROOT
    ] {
        assert_eq!(decode_open_how(&bad).err(), Some(EINVAL));
    }
    assert_eq!(
        decode_open_how(&how(u64::from(O_CREAT), 0, 0x20)).err(),
        Some(EAGAIN)
    );
}
