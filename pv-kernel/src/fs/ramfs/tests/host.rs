//! The host share through a fake [`HostShare`]: lazy listing on first use, read-through,
//! copy-up on write (the host is never written), `EIO` and retry, hidden entries.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pvmux_hypercalls::hostfs::{kind, put_record, HostfsEntry};

use super::super::contents::MAX_FILE_SIZE;
use super::super::host::HOST_DIR_MAX;
use super::super::{FileType, HostShare};
use super::*;
use crate::fs::errno::Errno::{self, *};

/// One node of the fake host tree.
#[derive(Clone)]
pub(super) enum Node {
    Dir,
    File(Vec<u8>),
    Link(Vec<u8>),
    /// A FIFO, device or socket (`kind::OTHER`).
    Other,
}

/// A fake host directory tree, keyed by absolute path.
pub(super) struct Fake {
    tree: Mutex<BTreeMap<Vec<u8>, (Node, HostfsEntry)>>,
    /// Bytes per `read` call (to exercise short reads).
    per_read: usize,
    /// When set, every call fails with `EIO`.
    failing: AtomicBool,
    lists: AtomicUsize,
    reads: AtomicUsize,
    /// Whether it answers `lookup` (else the default: `ENOSYS`, callers list instead).
    looks_up: bool,
    lookups: AtomicUsize,
    /// Paths listed or read, in order.
    seen: Mutex<Vec<Vec<u8>>>,
}

impl Fake {
    pub(super) fn new() -> Self {
        let mut f = Self {
            tree: Mutex::new(BTreeMap::new()),
            per_read: usize::MAX,
            failing: AtomicBool::new(false),
            lists: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
            looks_up: false,
            lookups: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        };
        f.add(b"/", Node::Dir, 0o755);
        f
    }

    /// Adds `path` (absolute) with mode `perm`, owner 1000:1000 and mtime 5 s.
    pub(super) fn add(&mut self, path: &[u8], node: Node, perm: u32) {
        let (k, size) = match &node {
            Node::Dir => (kind::DIR, 4096),
            Node::File(b) => (kind::REG, b.len() as u64),
            Node::Link(t) => (kind::SYMLINK, t.len() as u64),
            Node::Other => (kind::OTHER, 0),
        };
        let e = HostfsEntry {
            size,
            mtime_ns: 5_000_000_001,
            perm,
            uid: 1000,
            gid: 1000,
            kind: k,
            ..Default::default()
        };
        self.tree
            .get_mut()
            .unwrap()
            .insert(path.to_vec(), (node, e));
    }

    /// The standard tree: `/etc/{hosts,passwd}`, `/bin/sh -> busybox`, `/bin/busybox`,
    /// `/empty/`, `/top.txt`, `/fifo`.
    fn standard() -> Self {
        let mut f = Self::new();
        f.add(b"/etc", Node::Dir, 0o755);
        f.add(
            b"/etc/hosts",
            Node::File(b"127.0.0.1 localhost\n".to_vec()),
            0o644,
        );
        f.add(
            b"/etc/passwd",
            Node::File(b"root:x:0:0::/:/bin/sh\n".to_vec()),
            0o600,
        );
        f.add(b"/bin", Node::Dir, 0o755);
        f.add(b"/bin/busybox", Node::File(vec![0x7f; 10_000]), 0o755);
        f.add(b"/bin/sh", Node::Link(b"busybox".to_vec()), 0o777);
        f.add(b"/empty", Node::Dir, 0o700);
        f.add(b"/top.txt", Node::File(b"top\n".to_vec()), 0o644);
        f.add(b"/fifo", Node::Other, 0o644);
        f
    }

    fn check(&self, path: &[u8]) -> Result<(), Errno> {
        self.seen.lock().unwrap().push(path.to_vec());
        if self.failing.load(Ordering::Relaxed) {
            return Err(EIO);
        }
        Ok(())
    }

    /// Direct children of `dir`, in name order.
    fn children(&self, dir: &[u8]) -> Vec<(Vec<u8>, Node, HostfsEntry)> {
        let tree = self.tree.lock().unwrap();
        let prefix = if dir == b"/" {
            b"/".to_vec()
        } else {
            [dir, b"/"].concat()
        };
        tree.iter()
            .filter_map(|(p, (n, e))| {
                let name = p.strip_prefix(prefix.as_slice())?;
                (!name.is_empty() && !name.contains(&b'/')).then(|| (name.to_vec(), n.clone(), *e))
            })
            .collect()
    }
}

impl HostShare for Fake {
    fn list(&self, path: &[u8], cookie: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        self.lists.fetch_add(1, Ordering::Relaxed);
        self.check(path)?;
        let mut pos = 0;
        for (name, node, mut e) in self.children(path).into_iter().skip(cookie as usize) {
            let target = match &node {
                Node::Link(t) => t.clone(),
                _ => Vec::new(),
            };
            e.name_len = name.len() as u16;
            e.target_len = target.len() as u16;
            if !put_record(buf, &mut pos, &e, &name, &target) {
                break;
            }
        }
        Ok(pos)
    }

    fn lookup(&self, path: &[u8], buf: &mut [u8]) -> Result<usize, Errno> {
        if !self.looks_up {
            return Err(ENOSYS);
        }
        self.lookups.fetch_add(1, Ordering::Relaxed);
        self.check(path)?;
        let tree = self.tree.lock().unwrap();
        let Some((node, e)) = tree.get(path) else {
            return Ok(0);
        };
        let name = path.rsplit(|&b| b == b'/').next().unwrap();
        let target = match node {
            Node::Link(t) => t.clone(),
            _ => Vec::new(),
        };
        let mut e = *e;
        e.name_len = name.len() as u16;
        e.target_len = target.len() as u16;
        let mut pos = 0;
        assert!(put_record(buf, &mut pos, &e, name, &target));
        Ok(pos)
    }

    fn read(&self, path: &[u8], off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.check(path)?;
        let tree = self.tree.lock().unwrap();
        let Some((Node::File(bytes), _)) = tree.get(path) else {
            return Err(EIO);
        };
        let off = usize::try_from(off).unwrap().min(bytes.len());
        let n = (bytes.len() - off).min(buf.len()).min(self.per_read);
        buf[..n].copy_from_slice(&bytes[off..off + n]);
        Ok(n)
    }
}

/// A filesystem with `fake` attached.
pub(super) fn attached(fake: Fake) -> (Fs, Arc<Fake>) {
    let fake = Arc::new(fake);
    let mut fs = new_fs();
    fs.attach_host(fake.clone()).unwrap();
    (fs, fake)
}

#[test]
fn attaching_lists_the_root_at_once_and_subdirectories_on_first_use() {
    let (mut fs, fake) = attached(Fake::standard());
    assert_eq!(
        fake.lists.load(Ordering::Relaxed),
        1,
        "one call, with room left: no call to hear the end"
    );
    assert_eq!(names(&mut fs, ROOT_INO), ["bin", "empty", "etc", "top.txt"]);
    assert_eq!(
        fake.lists.load(Ordering::Relaxed),
        1,
        "the root is not listed again"
    );
    let etc = fs.lookup(ROOT_INO, b"/etc", true).unwrap();
    assert_eq!(
        fake.lists.load(Ordering::Relaxed),
        1,
        "looking up /etc does not list it"
    );
    assert_eq!(names(&mut fs, etc), ["hosts", "passwd"]);
    assert_eq!(fake.lists.load(Ordering::Relaxed), 2);
    assert!(fake.seen.lock().unwrap().iter().any(|p| p == b"/etc"));
    // A lookup inside a lazy directory lists it too (once).
    assert!(fs.stat(ROOT_INO, b"/bin/busybox").is_ok());
    assert!(fs.stat(ROOT_INO, b"/bin/sh").is_ok());
    assert_eq!(fake.lists.load(Ordering::Relaxed), 3);
}

/// With a host that looks up single names, a path walk lists no directory on the way; a
/// listing, a removal or a rename lists the whole directory, and the guest's view is the
/// same as with listings only.
#[test]
fn walks_look_up_single_names_and_listings_stay_consistent() {
    let mut fake = Fake::standard();
    fake.looks_up = true;
    let (mut fs, fake) = attached(fake);
    let lists0 = fake.lists.load(Ordering::Relaxed);
    // Through a symbolic link in a lazy directory, to a file in the same directory.
    assert_eq!(fs.stat(ROOT_INO, b"/bin/sh").unwrap().size, 10_000);
    assert_eq!(fs.stat(ROOT_INO, b"/etc/passwd").unwrap().mode, 0o100_600);
    assert_eq!(fs.stat(ROOT_INO, b"/etc/nothing"), Err(ENOENT));
    assert_eq!(fs.stat(ROOT_INO, b"/etc/nothing/x"), Err(ENOENT));
    assert_eq!(fs.stat(ROOT_INO, b"/etc/hosts/x"), Err(ENOTDIR));
    assert_eq!(fake.lists.load(Ordering::Relaxed), lists0, "no listing");
    assert!(fake.lookups.load(Ordering::Relaxed) >= 5);
    // A special file is not shown, looked up or listed.
    assert_eq!(fs.stat(ROOT_INO, b"/fifo"), Err(ENOENT));
    // A new name in a lazy directory, then the listing: host entries and the new one, once.
    put(&mut fs, ROOT_INO, b"/etc/new", b"guest");
    let etc = fs.lookup(ROOT_INO, b"/etc", true).unwrap();
    assert_eq!(names(&mut fs, etc), ["hosts", "new", "passwd"]);
    // A removal from a lazy directory: the name does not come back with the listing.
    fs.unlink(ROOT_INO, b"/bin/busybox").unwrap();
    let bin = fs.lookup(ROOT_INO, b"/bin", true).unwrap();
    assert_eq!(names(&mut fs, bin), ["sh"]);
    // A rename out of a lazy directory into another.
    let mut fake2 = Fake::standard();
    fake2.looks_up = true;
    let (mut fs2, _) = attached(fake2);
    fs2.rename(ROOT_INO, b"/etc/hosts", b"/bin/hosts").unwrap();
    let etc2 = fs2.lookup(ROOT_INO, b"/etc", true).unwrap();
    let bin2 = fs2.lookup(ROOT_INO, b"/bin", true).unwrap();
    assert_eq!(names(&mut fs2, etc2), ["passwd"]);
    assert_eq!(names(&mut fs2, bin2), ["busybox", "hosts", "sh"]);
    assert_eq!(
        get(&mut fs2, ROOT_INO, b"/bin/hosts").unwrap(),
        b"127.0.0.1 localhost\n"
    );
    // Creating over a host name that was never listed finds it.
    assert_eq!(fs2.mkdir(ROOT_INO, b"/bin/sh", 0o755), Err(EEXIST));
}

/// A name the host does not have is asked for once: probing it again (a `PATH` search, a
/// library search) costs no host call; a name the guest creates there afterwards is found,
/// and a listing still shows exactly the host's entries and the guest's.
#[test]
fn a_missing_host_name_is_looked_up_once() {
    let mut fake = Fake::standard();
    fake.looks_up = true;
    let (mut fs, fake) = attached(fake);
    assert_eq!(fs.stat(ROOT_INO, b"/etc/nothing"), Err(ENOENT));
    let lookups = fake.lookups.load(Ordering::Relaxed);
    for _ in 0..3 {
        assert_eq!(fs.stat(ROOT_INO, b"/etc/nothing"), Err(ENOENT));
        assert_eq!(fs.stat(ROOT_INO, b"/etc/nothing/x"), Err(ENOENT));
    }
    assert_eq!(
        fake.lookups.load(Ordering::Relaxed),
        lookups,
        "no new host call"
    );
    // Another missing name is asked for.
    assert_eq!(fs.stat(ROOT_INO, b"/etc/other"), Err(ENOENT));
    assert_eq!(fake.lookups.load(Ordering::Relaxed), lookups + 1);
    // The guest makes the missing name: it is there.
    put(&mut fs, ROOT_INO, b"/etc/nothing", b"guest");
    assert_eq!(get(&mut fs, ROOT_INO, b"/etc/nothing").unwrap(), b"guest");
    let etc = fs.lookup(ROOT_INO, b"/etc", true).unwrap();
    assert_eq!(names(&mut fs, etc), ["hosts", "nothing", "passwd"]);
    fs.unlink(ROOT_INO, b"/etc/nothing").unwrap();
    assert_eq!(fs.stat(ROOT_INO, b"/etc/nothing"), Err(ENOENT));
}

/// A host entry the guest does not show (a device node, a FIFO) is missing to the guest and
/// asked for once, like a name the host does not have; the guest may make the name itself
/// (as boot does for `/dev/null` over the host's `/dev`).
#[test]
fn an_unshown_host_entry_is_looked_up_once() {
    let mut fake = Fake::standard();
    fake.looks_up = true;
    fake.add(b"/etc/fifo", Node::Other, 0o644);
    let (mut fs, fake) = attached(fake);
    assert_eq!(fs.stat(ROOT_INO, b"/etc/fifo"), Err(ENOENT));
    let lookups = fake.lookups.load(Ordering::Relaxed);
    for _ in 0..3 {
        assert_eq!(fs.lookup(ROOT_INO, b"/etc/fifo", false), Err(ENOENT));
    }
    assert_eq!(
        fake.lookups.load(Ordering::Relaxed),
        lookups,
        "no new host call"
    );
    put(&mut fs, ROOT_INO, b"/etc/fifo", b"guest");
    assert_eq!(get(&mut fs, ROOT_INO, b"/etc/fifo").unwrap(), b"guest");
}

#[test]
fn host_metadata_shows_in_stat() {
    let (mut fs, _) = attached(Fake::standard());
    let st = fs.stat(ROOT_INO, b"/etc/passwd").unwrap();
    assert_eq!(st.mode, 0o100_600);
    assert_eq!((st.uid, st.gid, st.nlink), (1000, 1000, 1));
    assert_eq!(st.size, 22);
    assert_eq!(
        (st.mtime_ns, st.atime_ns, st.ctime_ns),
        (5_000_000_001, 5_000_000_001, 5_000_000_001)
    );
    let l = fs.lstat(ROOT_INO, b"/bin/sh").unwrap();
    assert_eq!((l.mode, l.size), (0o120_777, 7));
    assert_eq!(fs.readlink(ROOT_INO, b"/bin/sh").unwrap(), b"busybox");
    let e = fs.stat(ROOT_INO, b"/empty").unwrap();
    assert_eq!((e.mode, e.nlink), (0o040_700, 2));
    // The root counts its host subdirectories.
    assert_eq!(fs.stat_ino(ROOT_INO).unwrap().nlink, 2 + 3);
}

#[test]
fn reads_are_cached_after_the_first_and_read_again_once_reclaimed() {
    let (mut fs, fake) = attached(Fake::standard());
    assert_eq!(
        get(&mut fs, ROOT_INO, b"/etc/hosts").unwrap(),
        b"127.0.0.1 localhost\n"
    );
    let r0 = fake.reads.load(Ordering::Relaxed);
    assert_eq!(
        get(&mut fs, ROOT_INO, b"/etc/hosts").unwrap(),
        b"127.0.0.1 localhost\n"
    );
    assert_eq!(
        fake.reads.load(Ordering::Relaxed),
        r0,
        "served from the cache"
    );
    assert!(fake.seen.lock().unwrap().iter().any(|p| p == b"/etc/hosts"));
    // Memory pressure drops clean pages: the next read asks the host again.
    crate::fs::pagecache::shrink(u64::MAX);
    assert_eq!(
        get(&mut fs, ROOT_INO, b"/etc/hosts").unwrap(),
        b"127.0.0.1 localhost\n"
    );
    assert!(fake.reads.load(Ordering::Relaxed) > r0, "read again");
    // Through the symbolic link, from the middle.
    let h = fs.open(ROOT_INO, b"/bin/sh", O_RDONLY, 0).unwrap();
    let mut buf = [0u8; 100];
    assert_eq!(fs.pread(h, &mut buf, 9_950), Ok(50));
    assert!(buf[..50].iter().all(|&b| b == 0x7f));
    assert_eq!(fs.pread(h, &mut buf, 10_000), Ok(0));
    fs.close(h).unwrap();
}

#[test]
fn short_host_reads_are_completed() {
    let mut fake = Fake::standard();
    fake.per_read = 3;
    let (mut fs, fake) = attached(fake);
    let data = get(&mut fs, ROOT_INO, b"/bin/busybox").unwrap();
    assert_eq!(data, vec![0x7f; 10_000]);
    assert!(fake.reads.load(Ordering::Relaxed) >= 10_000 / 3);
}

#[test]
fn bytes_the_host_no_longer_has_read_as_zeros() {
    let (mut fs, fake) = attached(Fake::standard());
    // The host file shrinks after it was listed: the listed size stays, the rest is zeros.
    fs.stat(ROOT_INO, b"/top.txt").unwrap();
    fake.tree
        .lock()
        .unwrap()
        .get_mut(&b"/top.txt"[..])
        .unwrap()
        .0 = Node::File(b"to".to_vec());
    assert_eq!(get(&mut fs, ROOT_INO, b"/top.txt").unwrap(), b"to\0\0");
}

#[test]
fn the_first_write_copies_up_and_the_host_is_never_written() {
    let (mut fs, fake) = attached(Fake::standard());
    let h = fs.open(ROOT_INO, b"/etc/hosts", O_WRONLY, 0).unwrap();
    fs.pwrite(h, b"::1", 0).unwrap();
    fs.close(h).unwrap();
    let r0 = fake.reads.load(Ordering::Relaxed);
    assert_eq!(
        get(&mut fs, ROOT_INO, b"/etc/hosts").unwrap(),
        b"::1.0.0.1 localhost\n"
    );
    assert_eq!(
        fake.reads.load(Ordering::Relaxed),
        r0,
        "served from the copy"
    );
    let tree = fake.tree.lock().unwrap();
    assert!(matches!(&tree[&b"/etc/hosts"[..]].0, Node::File(b) if b == b"127.0.0.1 localhost\n"));
}

#[test]
fn truncating_a_host_file_needs_no_copy() {
    let (mut fs, fake) = attached(Fake::standard());
    fs.truncate(ROOT_INO, b"/etc/hosts", 4).unwrap();
    assert_eq!(get(&mut fs, ROOT_INO, b"/etc/hosts").unwrap(), b"127.");
    fs.truncate(ROOT_INO, b"/etc/hosts", 6).unwrap();
    assert_eq!(get(&mut fs, ROOT_INO, b"/etc/hosts").unwrap(), b"127.\0\0");
    assert_eq!(fs.stat(ROOT_INO, b"/etc/hosts").unwrap().blocks, 8);
    let h = fs
        .open(ROOT_INO, b"/etc/hosts", O_WRONLY | O_TRUNC, 0)
        .unwrap();
    fs.close(h).unwrap();
    assert_eq!(get(&mut fs, ROOT_INO, b"/etc/hosts").unwrap(), b"");
    assert!(fake.reads.load(Ordering::Relaxed) > 0);
}

#[test]
fn guest_changes_stay_in_the_guest() {
    let (mut fs, fake) = attached(Fake::standard());
    fs.unlink(ROOT_INO, b"/etc/passwd").unwrap();
    fs.rename(ROOT_INO, b"/top.txt", b"/etc/top").unwrap();
    fs.mkdir(ROOT_INO, b"/etc/new", 0o755).unwrap();
    put(&mut fs, ROOT_INO, b"/etc/new/f", b"guest");
    let etc = fs.lookup(ROOT_INO, b"/etc", true).unwrap();
    assert_eq!(names(&mut fs, etc), ["hosts", "new", "top"]);
    assert_eq!(get(&mut fs, ROOT_INO, b"/etc/top").unwrap(), b"top\n");
    assert_eq!(
        fs.mkdir(ROOT_INO, b"/etc/hosts", 0o755),
        Err(EEXIST),
        "host names exist"
    );
    let tree = fake.tree.lock().unwrap();
    assert!(tree.contains_key(&b"/etc/passwd"[..]));
    assert!(tree.contains_key(&b"/top.txt"[..]));
    assert!(!tree.contains_key(&b"/etc/new"[..]));
}

#[test]
fn rmdir_of_a_lazy_directory_sees_its_host_entries() {
    let (mut fs, _) = attached(Fake::standard());
    assert_eq!(fs.rmdir(ROOT_INO, b"/etc"), Err(ENOTEMPTY));
    fs.rmdir(ROOT_INO, b"/empty").unwrap();
    assert_eq!(fs.stat(ROOT_INO, b"/empty"), Err(ENOENT));
    // rename over a lazy non-empty directory too.
    fs.mkdir(ROOT_INO, b"/mine", 0o755).unwrap();
    assert_eq!(fs.rename(ROOT_INO, b"/mine", b"/bin"), Err(ENOTEMPTY));
}

#[test]
fn getdents64_of_a_lazy_directory_lists_the_host_entries() {
    let (mut fs, _) = attached(Fake::standard());
    let h = fs
        .open(ROOT_INO, b"/bin", O_RDONLY | O_DIRECTORY, 0)
        .unwrap();
    let mut buf = [0u8; 512];
    let n = fs.getdents64(h, &mut buf).unwrap();
    fs.close(h).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.contains("busybox") && text.contains("sh"), "{text}");
}

#[test]
fn a_failing_host_is_eio_and_the_directory_is_retried_later() {
    let (mut fs, fake) = attached(Fake::standard());
    fake.failing.store(true, Ordering::Relaxed);
    assert_eq!(fs.stat(ROOT_INO, b"/etc/hosts"), Err(EIO));
    let etc = fs.lookup(ROOT_INO, b"/etc", true).unwrap();
    assert_eq!(fs.list(etc), Err(EIO));
    assert_eq!(fs.rmdir(ROOT_INO, b"/empty"), Err(EIO));
    fake.failing.store(false, Ordering::Relaxed);
    assert!(fs.stat(ROOT_INO, b"/etc/hosts").is_ok(), "listed on retry");
    // A read that fails is EIO too; the file stays readable afterwards.
    let h = fs.open(ROOT_INO, b"/etc/hosts", O_RDONLY, 0).unwrap();
    fake.failing.store(true, Ordering::Relaxed);
    let mut buf = [0u8; 8];
    assert_eq!(fs.read(h, &mut buf), Err(EIO));
    assert_eq!(
        fs.lseek(h, 0, super::super::whence::SEEK_CUR),
        Ok(0),
        "no progress"
    );
    // A copy-up needs the host bytes: a failing host fails the write, changing nothing.
    let w = fs.open(ROOT_INO, b"/etc/hosts", O_WRONLY, 0).unwrap();
    assert_eq!(fs.write(w, b"x"), Err(EIO));
    fake.failing.store(false, Ordering::Relaxed);
    assert_eq!(fs.read(h, &mut buf), Ok(8));
    assert_eq!(&buf, b"127.0.0.");
    fs.close(w).unwrap();
    fs.close(h).unwrap();
}

#[test]
fn attaching_to_a_failing_host_fails() {
    let fake = Fake::standard();
    fake.failing.store(true, Ordering::Relaxed);
    let mut fs = new_fs();
    assert_eq!(fs.attach_host(Arc::new(fake)), Err(EIO));
}

#[test]
fn long_directories_are_listed_over_several_calls() {
    let mut fake = Fake::new();
    fake.add(b"/d", Node::Dir, 0o755);
    // 300 records of 288 bytes (a 40-byte entry, a 244-byte name, padding): 227 fill the
    // kernel's 64 KiB buffer, the other 73 come in a second call, which leaves room.
    let name = |i: u32| format!("f{i:03}{}", "x".repeat(240));
    for i in 0..300u32 {
        let path = format!("/d/{}", name(i));
        fake.add(path.as_bytes(), Node::File(vec![i as u8]), 0o644);
    }
    let (mut fs, fake) = attached(fake);
    let l0 = fake.lists.load(Ordering::Relaxed);
    let d = fs.lookup(ROOT_INO, b"/d", true).unwrap();
    let all = names(&mut fs, d);
    assert_eq!(all.len(), 300);
    assert_eq!(fake.lists.load(Ordering::Relaxed) - l0, 2, "227, then 73");
    assert_eq!(get(&mut fs, d, name(7).as_bytes()).unwrap(), [7]);
}

#[test]
fn entries_that_cannot_be_shown_are_left_out() {
    let mut fake = Fake::new();
    fake.add(b"/fifo", Node::Other, 0o644);
    fake.add(b"/huge", Node::File(Vec::new()), 0o644);
    fake.tree
        .get_mut()
        .unwrap()
        .get_mut(&b"/huge"[..])
        .unwrap()
        .1
        .size = MAX_FILE_SIZE + 1;
    fake.add(b"/max", Node::File(Vec::new()), 0o644);
    fake.tree
        .get_mut()
        .unwrap()
        .get_mut(&b"/max"[..])
        .unwrap()
        .1
        .size = MAX_FILE_SIZE;
    fake.add(b"/ok", Node::File(b"ok".to_vec()), 0o644);
    fake.add(b"/empty-link", Node::Link(Vec::new()), 0o777);
    let (mut fs, _) = attached(fake);
    assert_eq!(names(&mut fs, ROOT_INO), ["max", "ok"]);
}

/// A share whose root holds entries with names no directory may hold.
struct BadNames;

impl HostShare for BadNames {
    fn list(&self, _: &[u8], cookie: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        if cookie > 0 {
            return Ok(0);
        }
        let mut pos = 0;
        for name in [&b"."[..], b"..", b"a/b", b"nul\0", b"fine"] {
            let e = HostfsEntry {
                kind: kind::REG,
                name_len: name.len() as u16,
                perm: 0o644,
                ..Default::default()
            };
            assert!(put_record(buf, &mut pos, &e, name, b""));
        }
        Ok(pos)
    }

    fn read(&self, _: &[u8], _: u64, _: &mut [u8]) -> Result<usize, Errno> {
        Ok(0)
    }
}

#[test]
fn names_a_directory_cannot_hold_are_left_out() {
    let mut fs = new_fs();
    fs.attach_host(Arc::new(BadNames)).unwrap();
    assert_eq!(names(&mut fs, ROOT_INO), ["fine"]);
}

/// A share that answers with garbage.
struct Garbage {
    overlong: bool,
}

impl HostShare for Garbage {
    fn list(&self, _: &[u8], _: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        if self.overlong {
            return Ok(buf.len() + 1);
        }
        buf[..40].fill(0xff);
        Ok(40)
    }

    fn read(&self, _: &[u8], _: u64, _: &mut [u8]) -> Result<usize, Errno> {
        Ok(0)
    }
}

#[test]
fn a_malformed_listing_is_eio() {
    for overlong in [false, true] {
        let mut fs = new_fs();
        assert_eq!(fs.attach_host(Arc::new(Garbage { overlong })), Err(EIO));
    }
}

#[test]
fn entries_already_in_the_root_win_over_host_entries() {
    let mut fs = new_fs();
    put(&mut fs, ROOT_INO, b"top.txt", b"mine");
    fs.mkdir(ROOT_INO, b"etc", 0o700).unwrap();
    let fake = Arc::new(Fake::standard());
    fs.attach_host(fake).unwrap();
    assert_eq!(get(&mut fs, ROOT_INO, b"/top.txt").unwrap(), b"mine");
    let etc = fs.lookup(ROOT_INO, b"/etc", true).unwrap();
    assert!(
        names(&mut fs, etc).is_empty(),
        "the guest's /etc, not the host's"
    );
    assert_eq!(names(&mut fs, ROOT_INO), ["bin", "empty", "etc", "top.txt"]);
    assert_eq!(
        fs.stat(ROOT_INO, b"/etc").unwrap().file_type(),
        FileType::Directory
    );
}

/// A share with one directory of more entries than are taken from one host directory.
struct Huge;

impl HostShare for Huge {
    fn list(&self, path: &[u8], cookie: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let total = if path == b"/" { HOST_DIR_MAX + 100 } else { 0 };
        let mut pos = 0;
        for i in cookie..total {
            let name = format!("f{i}");
            let e = HostfsEntry {
                kind: kind::REG,
                name_len: name.len() as u16,
                ..Default::default()
            };
            if !put_record(buf, &mut pos, &e, name.as_bytes(), b"") {
                break;
            }
        }
        Ok(pos)
    }

    fn read(&self, _: &[u8], _: u64, _: &mut [u8]) -> Result<usize, Errno> {
        Ok(0)
    }
}

#[test]
fn at_most_host_dir_max_entries_are_taken_from_one_directory() {
    let mut fs = new_fs();
    fs.attach_host(Arc::new(Huge)).unwrap();
    assert_eq!(fs.list(ROOT_INO).unwrap().len() as u64, HOST_DIR_MAX);
    assert!(fs.stat(ROOT_INO, b"/f0").is_ok());
    assert_eq!(
        fs.stat(ROOT_INO, format!("/f{HOST_DIR_MAX}").as_bytes()),
        Err(ENOENT)
    );
}

#[test]
fn program_bytes_go_to_the_frames_and_the_kernel_buffer_alike() {
    use crate::linux::pool;
    use crate::mm::pool_mem;
    pool::init_for_tests();
    let mut fake = Fake::standard();
    fake.per_read = 4096 - 7; // pieces that do not end on page boundaries
    let (mut fs, _) = attached(fake);
    let ino = fs.lookup(ROOT_INO, b"/bin/busybox", true).unwrap();
    let frames = pool::alloc_contiguous(3).unwrap();
    let mut buf = vec![0u8; 9_000];
    fs.read_ino_uncached_frames(ino, 1_000, frames, &mut buf)
        .unwrap();
    assert_eq!(buf, vec![0x7f; 9_000]);
    let mut back = vec![0u8; 9_000];
    pool_mem::read(frames, &mut back);
    assert_eq!(back, buf, "the frames hold the same bytes");
    // Past the end of the file: EIO (a program's bytes are never zeros in place of the
    // file's), as for `read_ino_uncached` of a file that shrank.
    let mut long = vec![0u8; 9_001];
    assert_eq!(
        fs.read_ino_uncached_frames(ino, 1_000, frames, &mut long),
        Err(EIO)
    );
    // A file the guest wrote (not the host's bytes): the same bytes, copied to the frames.
    put(&mut fs, ROOT_INO, b"mine", b"guest\n");
    let mine = fs.lookup(ROOT_INO, b"/mine", true).unwrap();
    let mut six = [0u8; 6];
    fs.read_ino_uncached_frames(mine, 0, frames, &mut six)
        .unwrap();
    assert_eq!(&six, b"guest\n");
    let mut back = [0u8; 6];
    pool_mem::read(frames, &mut back);
    assert_eq!(&back, b"guest\n");
    for i in 0..3 {
        pool::put(frames + i * pvmux_hypercalls::PAGE_SIZE);
    }
}
