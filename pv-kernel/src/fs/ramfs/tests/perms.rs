//! Permission checks for a process that is not root ([`Fs::set_cred`]): search on every
//! directory walked, open's read/write checks, write+search on the parent for new and
//! removed names, the sticky-directory rule, owner-only metadata. Root (no credentials)
//! is never refused.

use super::*;
use crate::fs::errno::Errno::*;
use crate::fs::perm::{Cred, Times};

fn user() -> Option<Cred> {
    Cred::checked(1000, 1000, &[], 0)
}

/// `/root` 0700, `/etc` 0755 with `shadow` 0600 and `passwd` 0644, `/tmp` 1777 holding
/// another user's file `other` — all made by root.
fn tree() -> Fs {
    let mut fs = new_fs();
    fs.mkdir(ROOT_INO, b"/root", 0o700).unwrap();
    put(&mut fs, ROOT_INO, b"/root/secret", b"s");
    fs.mkdir(ROOT_INO, b"/etc", 0o755).unwrap();
    put(&mut fs, ROOT_INO, b"/etc/passwd", b"p");
    put(&mut fs, ROOT_INO, b"/etc/shadow", b"x");
    fs.chmod(ROOT_INO, b"/etc/shadow", 0o600).unwrap();
    fs.mkdir(ROOT_INO, b"/tmp", 0o1777).unwrap();
    put(&mut fs, ROOT_INO, b"/tmp/other", b"o");
    fs.chmod(ROOT_INO, b"/tmp/other", 0o666).unwrap();
    let other = fs.lookup(ROOT_INO, b"/tmp/other", false).unwrap();
    fs.set_meta(other, 0o666, Some((2000, 2000)), None).unwrap();
    fs
}

#[test]
fn search_and_open_need_their_bits() {
    let mut fs = tree();
    fs.set_cred(user());
    assert_eq!(fs.lookup(ROOT_INO, b"/root/secret", true), Err(EACCES));
    assert_eq!(fs.open(ROOT_INO, b"/root", O_RDONLY, 0), Err(EACCES));
    assert_eq!(fs.open(ROOT_INO, b"/etc/shadow", O_RDONLY, 0), Err(EACCES));
    assert_eq!(fs.open(ROOT_INO, b"/etc/passwd", O_WRONLY, 0), Err(EACCES));
    assert_eq!(fs.truncate(ROOT_INO, b"/etc/passwd", 0), Err(EACCES));
    let h = fs.open(ROOT_INO, b"/etc/passwd", O_RDONLY, 0).unwrap();
    fs.close(h).unwrap();
    // O_PATH names the file without its permission.
    let h = fs.open(ROOT_INO, b"/etc/shadow", O_PATH, 0).unwrap();
    fs.close(h).unwrap();
    // A file's own mode does not stop the open that creates it.
    let h = fs
        .open(ROOT_INO, b"/tmp/mine", O_CREAT | O_RDWR, 0)
        .unwrap();
    fs.close(h).unwrap();
    // Root is never refused.
    fs.set_cred(None);
    assert!(fs.lookup(ROOT_INO, b"/root/secret", true).is_ok());
}

#[test]
fn names_need_write_on_the_parent_and_the_sticky_rule() {
    let mut fs = tree();
    fs.set_cred(user());
    assert_eq!(fs.mkdir(ROOT_INO, b"/etc/d", 0o755), Err(EACCES));
    assert_eq!(fs.mkdir(ROOT_INO, b"/etc/passwd", 0o755), Err(EEXIST));
    assert_eq!(
        fs.open(ROOT_INO, b"/etc/new", O_CREAT | O_WRONLY, 0o644),
        Err(EACCES)
    );
    assert_eq!(fs.symlink(ROOT_INO, b"x", b"/etc/l"), Err(EACCES));
    assert_eq!(fs.unlink(ROOT_INO, b"/etc/passwd"), Err(EACCES));
    assert_eq!(fs.unlink(ROOT_INO, b"/etc/missing"), Err(ENOENT));
    assert_eq!(fs.rename(ROOT_INO, b"/etc/passwd", b"/tmp/p"), Err(EACCES));
    // /tmp: another user's file cannot be removed, replaced or renamed; one's own can.
    assert_eq!(fs.unlink(ROOT_INO, b"/tmp/other"), Err(EPERM));
    assert_eq!(fs.rename(ROOT_INO, b"/tmp/other", b"/tmp/x"), Err(EPERM));
    fs.set_owner(|| (1000, 1000));
    fs.mkdir(ROOT_INO, b"/tmp/mine", 0o755).unwrap();
    fs.rmdir(ROOT_INO, b"/tmp/mine").unwrap();
    let mine = fs
        .open(ROOT_INO, b"/tmp/f", O_CREAT | O_WRONLY, 0o600)
        .unwrap();
    fs.close(mine).unwrap();
    assert_eq!(fs.rename(ROOT_INO, b"/tmp/f", b"/tmp/other"), Err(EPERM));
    fs.rename(ROOT_INO, b"/tmp/f", b"/tmp/g").unwrap();
    fs.unlink(ROOT_INO, b"/tmp/g").unwrap();
    // Hard links to a file one may not read and write: EPERM (protected_hardlinks).
    let shadow = fs.lookup(ROOT_INO, b"/etc/shadow", false).unwrap();
    assert_eq!(fs.link_ino(ROOT_INO, b"/tmp/h", shadow), Err(EPERM));
}

#[test]
fn metadata_is_the_owners() {
    let mut fs = tree();
    fs.set_cred(user());
    assert_eq!(fs.chmod(ROOT_INO, b"/etc/passwd", 0o777), Err(EPERM));
    let passwd = fs.lookup(ROOT_INO, b"/etc/passwd", false).unwrap();
    assert_eq!(fs.may_chown(passwd, 1000, u32::MAX), Err(EPERM));
    assert_eq!(fs.may_set_times(passwd, Times::Explicit), Err(EPERM));
    assert_eq!(fs.may_set_times(passwd, Times::Now), Err(EACCES));
    let other = fs.lookup(ROOT_INO, b"/tmp/other", false).unwrap();
    assert_eq!(fs.may_set_times(other, Times::Now), Ok(()));
    fs.set_cred(None);
    fs.set_meta(passwd, 0o644, Some((1000, 5)), None).unwrap();
    fs.set_cred(user());
    // The owner may chmod, but not set set-group-id for a group it is not in.
    fs.chmod(ROOT_INO, b"/etc/passwd", 0o2755).unwrap();
    assert_eq!(
        fs.stat(ROOT_INO, b"/etc/passwd").unwrap().mode & 0o7777,
        0o755
    );
    assert_eq!(fs.may_chown(passwd, u32::MAX, 1000), Ok(()));
    assert_eq!(fs.may_chown(passwd, u32::MAX, 7), Err(EPERM));
    // Unchecked: the kernel's own walks.
    assert!(fs
        .unchecked(|fs| fs.lookup(ROOT_INO, b"/root/secret", true))
        .is_ok());
}
