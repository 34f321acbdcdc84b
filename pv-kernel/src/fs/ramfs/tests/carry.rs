//! A kernel hand-over of the whole filesystem (`carry`): what one filesystem carries out,
//! another booted the same way takes, and shows the same tree — inode numbers, names in
//! their `getdents64` order, metadata, contents (pages by frame, initramfs bytes, the host
//! share's), the overlay's state over the share — and a malformed carry is refused with
//! nothing changed.

use pvmux_hypercalls::handover::{fs_node, fs_node_flags, BlobRef};

use super::super::carry::Carried;
use super::super::FileType;
use super::host::{attached, Fake, Node as HostNode};
use super::*;

static INIT: &[u8] = b"#!/bin/sh\necho initramfs\n";

/// A filesystem booted like the kernel's: the share attached, an initramfs file.
fn booted() -> Fs {
    let mut fake = Fake::new();
    fake.add(b"/etc", HostNode::Dir, 0o755);
    fake.add(
        b"/etc/hosts",
        HostNode::File(b"127.0.0.1 localhost\n".to_vec()),
        0o644,
    );
    fake.add(b"/etc/motd", HostNode::File(b"hello\n".to_vec()), 0o644);
    fake.add(b"/etc/gone", HostNode::File(b"bye\n".to_vec()), 0o644);
    fake.add(b"/bin", HostNode::Dir, 0o755);
    let (mut fs, _) = attached(fake);
    let h = fs
        .open(ROOT_INO, b"/init", O_CREAT | O_WRONLY, 0o755)
        .unwrap();
    fs.close(h).unwrap();
    let ino = fs.lookup(ROOT_INO, b"/init", false).unwrap();
    fs.set_static_data(ino, INIT).unwrap();
    fs.mkdir(ROOT_INO, b"/tmp", 0o1777).unwrap();
    fs
}

/// Every path under the root (not into lazy directories), depth first in listing order,
/// with its `lstat`.
fn tree(fs: &mut Fs) -> Vec<(String, super::super::Stat)> {
    let mut out = Vec::new();
    let mut todo = vec![(String::new(), ROOT_INO)];
    while let Some((path, dir)) = todo.pop() {
        for e in fs.list(dir).unwrap() {
            let p = format!("{path}/{}", String::from_utf8(e.name).unwrap());
            let st = fs.lstat(ROOT_INO, p.as_bytes()).unwrap();
            out.push((p.clone(), st));
            if e.file_type == FileType::Directory {
                todo.push((p, e.ino));
            }
        }
    }
    out
}

/// What `fs` carries, with its blob.
fn carry(fs: &Fs) -> (Carried, Vec<u8>) {
    let mut blob = Vec::new();
    let c = fs
        .carry_out(&mut |b| {
            let r = BlobRef {
                off: blob.len() as u32,
                len: b.len() as u32,
            };
            blob.extend_from_slice(b);
            r
        })
        .unwrap();
    (c, blob)
}

fn resolve(blob: &[u8]) -> impl Fn(BlobRef) -> Option<Vec<u8>> + '_ {
    move |r: BlobRef| {
        blob.get(r.off as usize..(r.off as usize).checked_add(r.len as usize)?)
            .map(<[u8]>::to_vec)
    }
}

/// The references an adopting kernel's pool gives the carried frames.
fn take_frames(c: &Carried) {
    for p in &c.pages {
        for k in 0..p.pages {
            crate::linux::pool::get(p.gpa + k * 4096);
        }
    }
}

#[test]
fn a_carried_filesystem_is_the_same_tree_with_the_same_contents() {
    crate::linux::pool::init_for_tests();
    let mut old = booted();
    // /tmp: files of several sizes, a sparse one, a tree, a link, a symbolic link, a
    // socket's name, modes and owners.
    let big: Vec<u8> = (0..3 * 4096 + 100).map(|i| (i * 7 % 251) as u8).collect();
    put(&mut old, ROOT_INO, b"/tmp/small", b"small\n");
    put(&mut old, ROOT_INO, b"/tmp/big", &big);
    let h = old
        .open(ROOT_INO, b"/tmp/sparse", O_CREAT | O_WRONLY, 0o600)
        .unwrap();
    old.pwrite(h, b"end", 5 << 20).unwrap();
    old.close(h).unwrap();
    put(&mut old, ROOT_INO, b"/tmp/empty", b"");
    old.mkdir(ROOT_INO, b"/tmp/a", 0o755).unwrap();
    old.mkdir(ROOT_INO, b"/tmp/a/b", 0o700).unwrap();
    put(&mut old, ROOT_INO, b"/tmp/a/b/c", b"deep\n");
    old.symlink(ROOT_INO, b"../small", b"/tmp/a/ln").unwrap();
    old.link(ROOT_INO, b"/tmp/small", b"/tmp/a/hard").unwrap();
    old.mksock(ROOT_INO, b"/tmp/sock", 0o755).unwrap();
    old.chmod(ROOT_INO, b"/tmp/big", 0o640).unwrap();
    put(&mut old, ROOT_INO, b"/tmp/x", b"x");
    old.rename(ROOT_INO, b"/tmp/x", b"/tmp/a/y").unwrap();
    put(&mut old, ROOT_INO, b"/tmp/gone", b"gone");
    old.unlink(ROOT_INO, b"/tmp/gone").unwrap();
    // The overlay: a share file written over, one removed, one truncated, one kept.
    put(&mut old, ROOT_INO, b"/etc/hosts", b"10.0.0.1 other\n");
    old.unlink(ROOT_INO, b"/etc/gone").unwrap();
    old.truncate(ROOT_INO, b"/etc/motd", 2).unwrap();
    old.truncate(ROOT_INO, b"/init", 9).unwrap();
    let before = tree(&mut old);

    let (c, blob) = carry(&old);
    assert_eq!(c.nodes[0].kind, fs_node::FS);
    // small 1, big 4, sparse its last page only, c 1, y 1, the copied-up hosts 1.
    assert_eq!(c.pages.iter().map(|p| p.pages).sum::<u64>(), 9);
    assert_eq!(
        c.pages.iter().map(|p| p.pages).sum::<u64>(),
        old.usage().pages
    );
    let mut new = booted();
    take_frames(&c);
    new.adopt_carried(&c, &resolve(&blob)).unwrap();
    assert_eq!(
        tree(&mut new),
        before,
        "same numbers, names, order and metadata"
    );
    for p in [
        &b"/tmp/small"[..],
        b"/tmp/big",
        b"/tmp/sparse",
        b"/tmp/empty",
        b"/tmp/a/b/c",
        b"/tmp/a/ln",
        b"/tmp/a/hard",
        b"/tmp/a/y",
        b"/etc/hosts",
        b"/etc/motd",
        b"/init",
    ] {
        assert_eq!(
            get(&mut new, ROOT_INO, p),
            get(&mut old, ROOT_INO, p),
            "{p:?}"
        );
    }
    assert_eq!(get(&mut new, ROOT_INO, b"/tmp/big").unwrap(), big);
    assert_eq!(get(&mut new, ROOT_INO, b"/init").unwrap(), &INIT[..9]);
    assert_eq!(get(&mut new, ROOT_INO, b"/etc/motd").unwrap(), b"he");
    // A name removed from the share stays removed; the rest of the share is still there.
    assert_eq!(new.lstat(ROOT_INO, b"/etc/gone").err(), Some(Errno::ENOENT));
    assert_eq!(names(&mut new, ROOT_INO), names(&mut old, ROOT_INO));
    assert!(new.lstat(ROOT_INO, b"/bin").is_ok());
    // Numbers go on where they were; the old one and the new one write apart (the old
    // kernel is gone in a real switch: here each file keeps its own pages from now on).
    put(&mut old, ROOT_INO, b"/tmp/next", b"1");
    put(&mut new, ROOT_INO, b"/tmp/next", b"2");
    assert_eq!(
        old.lstat(ROOT_INO, b"/tmp/next").unwrap().ino,
        new.lstat(ROOT_INO, b"/tmp/next").unwrap().ino
    );
    assert_eq!(new.usage().pages, old.usage().pages);
    assert_eq!(new.usage().inodes, old.usage().inodes);
}

#[test]
fn a_malformed_carry_is_refused_and_changes_nothing() {
    crate::linux::pool::init_for_tests();
    let mut old = booted();
    put(&mut old, ROOT_INO, b"/tmp/f", b"f");
    old.mkdir(ROOT_INO, b"/tmp/d", 0o755).unwrap();
    let (c, blob) = carry(&old);
    let tmp = old.lookup(ROOT_INO, b"/tmp", false).unwrap();
    let d = old.lookup(ROOT_INO, b"/tmp/d", false).unwrap();
    type Edit = fn(&mut Carried, u64, u64);
    let cases: &[(&str, Edit)] = &[
        ("a name twice", |c, tmp, _| {
            let e = *c.dirents.iter().find(|e| e.dir == tmp).unwrap();
            c.dirents.push(pvmux_hypercalls::handover::FsDirentEntry {
                cookie: e.cookie + 100,
                ..e
            });
            let n = c.nodes.iter_mut().find(|n| n.ino == tmp).unwrap();
            n.next_cookie += 200;
        }),
        ("a directory named twice", |c, tmp, d| {
            let e = *c.dirents.iter().find(|e| e.ino == d).unwrap();
            c.dirents.push(pvmux_hypercalls::handover::FsDirentEntry {
                cookie: e.cookie + 100,
                name: BlobRef { off: 0, len: 1 },
                ..e
            });
            let n = c.nodes.iter_mut().find(|n| n.ino == tmp).unwrap();
            n.next_cookie += 200;
        }),
        ("an inode not named", |c, _, d| {
            c.dirents.retain(|e| e.ino != d)
        }),
        ("a file's link count above its names", |c, tmp, _| {
            let f = c.dirents.iter().find(|e| e.dir == tmp).unwrap().ino;
            let n = c
                .nodes
                .iter_mut()
                .find(|n| n.ino == f && n.kind != fs_node::DIRECTORY);
            n.unwrap().nlink = 5;
        }),
        (
            "a directory's link count below its subdirectories",
            |c, tmp, _| {
                c.nodes.iter_mut().find(|n| n.ino == tmp).unwrap().nlink = 2;
            },
        ),
        ("a directory under another parent", |c, _, d| {
            c.nodes.iter_mut().find(|n| n.ino == d).unwrap().parent = 1;
        }),
        ("an initramfs file this kernel does not have", |c, _, _| {
            let n = c
                .nodes
                .iter_mut()
                .find(|n| n.flags & pvmux_hypercalls::handover::fs_node_flags::STATIC != 0)
                .unwrap();
            n.aux ^= 1;
        }),
        ("a frame twice", |c, _, _| {
            let p = c.pages[0];
            c.pages.push(pvmux_hypercalls::handover::FsPagesEntry {
                index: p.index + 1,
                ..p
            });
        }),
        ("no filesystem entry", |c, _, _| {
            c.nodes.remove(0);
        }),
    ];
    for (what, edit) in cases {
        let mut c2 = Carried {
            nodes: c.nodes.clone(),
            dirents: c.dirents.clone(),
            pages: c.pages.clone(),
        };
        edit(&mut c2, tmp, d);
        let mut new = booted();
        // (A first walk lists the share's directories.)
        tree(&mut new);
        let before = tree(&mut new);
        let e = new.adopt_carried(&c2, &resolve(&blob));
        assert!(e.is_err(), "{what}: {e:?}");
        assert_eq!(tree(&mut new), before, "{what}: nothing changed");
    }
    // Open files of the adopter's own refuse it.
    let mut new = booted();
    let h = new.open(ROOT_INO, b"/init", O_RDONLY, 0).unwrap();
    assert!(new.adopt_carried(&c, &resolve(&blob)).is_err());
    new.close(h).unwrap();
}

#[test]
fn a_file_held_open_after_its_last_name_is_carried_and_reopened_by_inode() {
    crate::linux::pool::init_for_tests();
    let mut old = booted();
    put(&mut old, ROOT_INO, b"/tmp/open", b"still here");
    put(&mut old, ROOT_INO, b"/tmp/closed", b"gone");
    let h = old.open(ROOT_INO, b"/tmp/open", O_RDWR, 0).unwrap();
    let h2 = old.open(ROOT_INO, b"/tmp/closed", O_RDONLY, 0).unwrap();
    let ino = old.fstat(h).unwrap().ino;
    let gone = old.fstat(h2).unwrap().ino;
    old.unlink(ROOT_INO, b"/tmp/open").unwrap();
    old.unlink(ROOT_INO, b"/tmp/closed").unwrap();
    let (c, blob) = carry(&old);
    let carried = |i| c.nodes.iter().find(|n| n.ino == i).map(|n| n.nlink);
    assert_eq!(carried(ino), Some(0), "held open: carried with no link");
    assert_eq!(carried(gone), Some(0));
    let mut new = booted();
    take_frames(&c);
    new.adopt_carried(&c, &resolve(&blob)).unwrap();
    // Its descriptor opens it again by inode; the other one has none and goes.
    let h = new.open_ino(ino, O_RDWR).unwrap();
    new.forget_unheld();
    let mut buf = [0u8; 32];
    let n = new.pread(h, &mut buf, 0).unwrap();
    assert_eq!(&buf[..n], b"still here");
    assert_eq!(new.stat_ino(gone).err(), Some(Errno::ENOENT));
    assert_eq!(new.stat_ino(ino).unwrap().nlink, 0);
    assert!(new.lstat(ROOT_INO, b"/tmp/open").is_err());
    // Closed, it is freed as on Linux.
    new.close(h).unwrap();
    assert_eq!(new.stat_ino(ino).err(), Some(Errno::ENOENT));
    // A directory opens read-only only.
    let tmp = new.lookup(ROOT_INO, b"/tmp", false).unwrap();
    assert_eq!(new.open_ino(tmp, O_RDWR).err(), Some(Errno::EISDIR));
    let d = new.open_ino(tmp, O_RDONLY).unwrap();
    new.close(d).unwrap();
}

#[test]
fn a_directory_removed_while_open_is_carried_empty_and_its_own_parent() {
    crate::linux::pool::init_for_tests();
    let mut old = booted();
    old.mkdir(ROOT_INO, b"/tmp/d", 0o755).unwrap();
    put(&mut old, ROOT_INO, b"/tmp/d/f", b"x");
    let h = old.open(ROOT_INO, b"/tmp/d", O_RDONLY, 0).unwrap();
    let ino = old.fstat(h).unwrap().ino;
    old.unlink(ROOT_INO, b"/tmp/d/f").unwrap();
    old.rmdir(ROOT_INO, b"/tmp/d").unwrap();
    let (c, blob) = carry(&old);
    let n = c.nodes.iter().find(|n| n.ino == ino).expect("carried");
    assert_eq!((n.nlink, n.parent), (0, ino));
    assert_ne!(n.flags & fs_node_flags::REMOVED, 0);
    assert!(c.dirents.iter().all(|d| d.dir != ino && d.ino != ino));
    let mut new = booted();
    take_frames(&c);
    new.adopt_carried(&c, &resolve(&blob)).unwrap();
    let h = new.open_ino(ino, O_RDONLY).unwrap();
    new.forget_unheld();
    assert_eq!(new.stat_ino(ino).unwrap().nlink, 0);
    assert!(new.lookup(ino, b"f", false).is_err(), "empty");
    assert!(new.lstat(ROOT_INO, b"/tmp/d").is_err(), "no name");
    new.close(h).unwrap();
    assert_eq!(
        new.stat_ino(ino).err(),
        Some(Errno::ENOENT),
        "freed at its close"
    );
    // A removed directory with an entry, or named, is refused.
    let mut bad = c.clone();
    if let Some(n) = bad.nodes.iter_mut().find(|n| n.ino == ino) {
        n.parent = ROOT_INO;
    }
    let mut again = booted();
    assert!(again.adopt_carried(&bad, &resolve(&blob)).is_err());
}
