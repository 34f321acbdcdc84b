//! Volumes through a fake [`VolumeHost`]: mounting, lazy listing, write-through, name
//! operations made on the host first, `EXDEV`/`EBUSY` at the mount point, `EROFS` for a
//! read-only volume, set-id bits as the host reports them, an open file that is unlinked.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use pvmux_hypercalls::hostfs::{kind, put_record, HostfsEntry};
use pvmux_hypercalls::volume::{op, PERM_MASK};

use super::super::{VolumeBuf, VolumeHost, VolumeReq};
use super::*;
use crate::fs::errno::Errno::{self, *};

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Dir,
    File(Vec<u8>),
    Link(Vec<u8>),
}

/// A fake host volume: absolute paths → (node, permission bits).
#[derive(Default)]
struct Fake {
    tree: Mutex<BTreeMap<Vec<u8>, (Node, u32)>>,
    calls: Mutex<Vec<u32>>,
}

fn parent(p: &[u8]) -> Vec<u8> {
    match p.iter().rposition(|&b| b == b'/') {
        Some(0) => b"/".to_vec(),
        Some(i) => p[..i].to_vec(),
        None => b"/".to_vec(),
    }
}

impl Fake {
    fn new() -> Arc<Self> {
        let f = Self::default();
        f.tree
            .lock()
            .unwrap()
            .insert(b"/".to_vec(), (Node::Dir, 0o755));
        Arc::new(f)
    }

    fn add(&self, p: &[u8], n: Node) {
        self.tree.lock().unwrap().insert(p.to_vec(), (n, 0o644));
    }

    fn get(&self, p: &[u8]) -> Option<(Node, u32)> {
        self.tree.lock().unwrap().get(p).cloned()
    }

    fn stat(n: &Node, perm: u32) -> HostfsEntry {
        let (k, size) = match n {
            Node::Dir => (kind::DIR, 0),
            Node::File(b) => (kind::REG, b.len() as u64),
            Node::Link(t) => (kind::SYMLINK, t.len() as u64),
        };
        HostfsEntry {
            size,
            perm,
            kind: k,
            mtime_ns: 5,
            ..Default::default()
        }
    }
}

impl VolumeHost for Fake {
    fn call(
        &self,
        vol: u32,
        r: &VolumeReq<'_>,
        buf: VolumeBuf<'_>,
    ) -> Result<(u64, HostfsEntry), Errno> {
        assert_eq!(vol, 3);
        self.calls.lock().unwrap().push(r.op);
        let mut t = self.tree.lock().unwrap();
        let p = r.path.to_vec();
        let exists = t.contains_key(&p);
        let parent_is_dir = matches!(t.get(&parent(&p)), Some((Node::Dir, _)));
        let ok = |n: &Node, perm| Ok((0, Fake::stat(n, perm)));
        match r.op {
            op::LOOKUP => t.get(&p).map(|(n, m)| (0, Fake::stat(n, *m))).ok_or(ENOENT),
            op::LIST => {
                let VolumeBuf::Out(out) = buf else {
                    return Err(EINVAL);
                };
                let prefix = if p == b"/" {
                    p.clone()
                } else {
                    [&p[..], b"/"].concat()
                };
                let mut pos = 0;
                let mut n = 0u64;
                for (k, (node, perm)) in t.iter() {
                    let Some(name) = k.strip_prefix(&prefix[..]) else {
                        continue;
                    };
                    if name.is_empty() || name.contains(&b'/') || k == b"/" {
                        continue;
                    }
                    n += 1;
                    if n <= r.offset {
                        continue;
                    }
                    let target = match node {
                        Node::Link(t) => t.clone(),
                        _ => vec![],
                    };
                    let mut e = Fake::stat(node, *perm);
                    e.name_len = name.len() as u16;
                    e.target_len = target.len() as u16;
                    if !put_record(out, &mut pos, &e, name, &target) {
                        break;
                    }
                }
                Ok((pos as u64, HostfsEntry::default()))
            }
            op::READLINK => match (t.get(&p), buf) {
                (Some((Node::Link(target), _)), VolumeBuf::Out(out)) => {
                    let n = target.len().min(out.len());
                    out[..n].copy_from_slice(&target[..n]);
                    Ok((target.len() as u64, HostfsEntry::default()))
                }
                (Some(_), _) => Err(EINVAL),
                (None, _) => Err(ENOENT),
            },
            op::READ => match (t.get(&p), buf) {
                (Some((Node::File(b), _)), VolumeBuf::Out(out)) => {
                    let s = (r.offset as usize).min(b.len());
                    let n = (b.len() - s).min(out.len());
                    out[..n].copy_from_slice(&b[s..s + n]);
                    Ok((n as u64, HostfsEntry::default()))
                }
                _ => Err(ENOENT),
            },
            op::WRITE => match (t.get_mut(&p), buf) {
                (Some((Node::File(b), perm)), VolumeBuf::In(data)) => {
                    let end = r.offset as usize + data.len();
                    if b.len() < end {
                        b.resize(end, 0);
                    }
                    b[r.offset as usize..end].copy_from_slice(data);
                    Ok((data.len() as u64, Fake::stat(&Node::File(b.clone()), *perm)))
                }
                _ => Err(ENOENT),
            },
            op::CREATE | op::MKDIR | op::SYMLINK => {
                if exists {
                    return Err(EEXIST);
                }
                if !parent_is_dir {
                    return Err(ENOENT);
                }
                let (n, perm) = match r.op {
                    op::CREATE => (Node::File(vec![]), r.mode & PERM_MASK),
                    op::MKDIR => (Node::Dir, r.mode & PERM_MASK),
                    _ => (Node::Link(r.path2.to_vec()), 0o777),
                };
                t.insert(p, (n.clone(), perm));
                ok(&n, perm)
            }
            op::UNLINK | op::RMDIR => {
                let is_dir = matches!(t.get(&p), Some((Node::Dir, _)));
                match (exists, is_dir, r.op == op::RMDIR) {
                    (false, ..) => Err(ENOENT),
                    (true, true, false) => Err(EISDIR),
                    (true, false, true) => Err(ENOTDIR),
                    _ => {
                        let pre = [&p[..], b"/"].concat();
                        if t.keys().any(|k| k.starts_with(&pre)) {
                            return Err(ENOTEMPTY);
                        }
                        t.remove(&p);
                        Ok((0, HostfsEntry::default()))
                    }
                }
            }
            op::RENAME => {
                let to = r.path2.to_vec();
                let pre = [&p[..], b"/"].concat();
                let moved: Vec<_> = t
                    .keys()
                    .filter(|k| **k == p || k.starts_with(&pre))
                    .cloned()
                    .collect();
                if moved.is_empty() {
                    return Err(ENOENT);
                }
                for k in moved {
                    let v = t.remove(&k).unwrap();
                    let mut nk = to.clone();
                    nk.extend_from_slice(&k[p.len()..]);
                    t.insert(nk, v);
                }
                Ok((0, HostfsEntry::default()))
            }
            op::TRUNCATE => match t.get_mut(&p) {
                Some((Node::File(b), perm)) => {
                    b.resize(r.offset as usize, 0);
                    ok(&Node::File(b.clone()), *perm)
                }
                _ => Err(EINVAL),
            },
            op::CHMOD => match t.get_mut(&p) {
                Some((n, perm)) => {
                    *perm = r.mode & PERM_MASK;
                    ok(&n.clone(), *perm)
                }
                None => Err(ENOENT),
            },
            op::UTIMES | op::FSYNC => t.get(&p).map(|(n, m)| (0, Fake::stat(n, *m))).ok_or(ENOENT),
            _ => Err(EINVAL),
        }
    }
}

/// A filesystem with `/tmp` and volume 3 (`fake`) at `/mnt/vol`.
fn mounted(fake: &Arc<Fake>, ro: bool) -> Fs {
    let mut fs = new_fs();
    fs.mkdir(ROOT_INO, b"/tmp", 0o777).unwrap();
    fs.mount_volume(fake.clone(), 3, ro, b"/mnt/vol").unwrap();
    fs
}

#[test]
fn a_volume_lists_reads_and_writes_through_to_the_host() {
    let fake = Fake::new();
    fake.add(b"/hello", Node::File(b"hi\n".to_vec()));
    fake.add(b"/sub", Node::Dir);
    fake.add(b"/sub/f", Node::File(b"deep".to_vec()));
    fake.add(b"/sub/l", Node::Link(b"f".to_vec()));
    let mut fs = mounted(&fake, false);
    let v = fs.lookup(ROOT_INO, b"/mnt/vol", true).unwrap();
    assert!(fs.is_volume_node(v) && !fs.is_volume_file(v));
    assert_eq!(names(&mut fs, v), ["hello", "sub"]);
    assert_eq!(get(&mut fs, v, b"sub/l").unwrap(), b"deep");
    let f = fs.lookup(v, b"hello", true).unwrap();
    assert!(fs.is_volume_file(f));
    // Write-through, no bytes kept in the guest.
    put(&mut fs, v, b"sub/new", b"written");
    assert_eq!(
        fake.get(b"/sub/new").unwrap().0,
        Node::File(b"written".to_vec())
    );
    assert_eq!(fs.usage().pages, 0);
    fs.mkdir(v, b"sub/d", 0o755).unwrap();
    put(&mut fs, v, b"sub/d/x", b"x");
    // Renaming a directory moves its subtree's host paths.
    fs.rename(v, b"sub", b"moved").unwrap();
    put(&mut fs, v, b"moved/d/x", b"again");
    assert_eq!(
        fake.get(b"/moved/d/x").unwrap().0,
        Node::File(b"again".to_vec())
    );
    assert!(fake.get(b"/sub").is_none());
    fs.truncate(v, b"moved/d/x", 2).unwrap();
    assert_eq!(get(&mut fs, v, b"moved/d/x").unwrap(), b"ag");
    fs.unlink(v, b"moved/d/x").unwrap();
    fs.rmdir(v, b"moved/d").unwrap();
    assert!(fake.get(b"/moved/d").is_none());
    assert_eq!(fs.rmdir(v, b"moved"), Err(ENOTEMPTY));
    // A directory made and removed at once (never listed).
    fs.mkdir(v, b"gone", 0o755).unwrap();
    fs.rmdir(v, b"gone").unwrap();
    assert!(fake.get(b"/gone").is_none());
    // A failed host removal leaves the directory in the volume, still listable.
    fake.add(b"/moved/keep", Node::File(vec![]));
    let calls = fake.calls.lock().unwrap().len();
    assert_eq!(fs.rmdir(v, b"moved"), Err(ENOTEMPTY));
    assert!(fake.calls.lock().unwrap().len() > calls);
    // chmod: the host's bits (set-id cleared) are what the guest sees.
    fs.chmod(v, b"hello", 0o6755).unwrap();
    assert_eq!(fs.stat(v, b"hello").unwrap().mode & 0o7777, 0o755);
    assert_eq!(fake.get(b"/hello").unwrap().1, 0o755);
    // Its bytes are on the host, and `st_blocks` counts them.
    assert_eq!(fs.stat(v, b"hello").unwrap().blocks, 8);
    fs.symlink(v, b"/tmp", b"ln").unwrap();
    assert_eq!(fake.get(b"/ln").unwrap().0, Node::Link(b"/tmp".to_vec()));
    let ino = fs.lookup(v, b"hello", true).unwrap();
    assert_eq!(fs.fsync(ino), Ok(()));
}

/// Names the host makes behind the guest's back in a directory the guest has listed are
/// found by name (files, directories, links), and listed from then on; a name the host does
/// not have is asked for again each time (a volume is live), and creating over a host name
/// the guest never saw is `EEXIST`.
#[test]
fn names_made_on_the_host_after_a_listing_are_found() {
    let fake = Fake::new();
    fake.add(b"/old", Node::File(b"o".to_vec()));
    let mut fs = mounted(&fake, false);
    let v = fs.lookup(ROOT_INO, b"/mnt/vol", true).unwrap();
    assert_eq!(names(&mut fs, v), ["old"]);
    assert_eq!(fs.stat(v, b"go"), Err(ENOENT));
    fake.add(b"/go", Node::File(b"now\n".to_vec()));
    fake.add(b"/d", Node::Dir);
    fake.add(b"/d/inner", Node::File(b"in".to_vec()));
    fake.add(b"/l", Node::Link(b"go".to_vec()));
    assert_eq!(get(&mut fs, v, b"go").unwrap(), b"now\n");
    assert_eq!(get(&mut fs, v, b"d/inner").unwrap(), b"in");
    assert_eq!(get(&mut fs, v, b"l").unwrap(), b"now\n");
    assert_eq!(names(&mut fs, v), ["d", "go", "l", "old"]);
    let mut calls = fake.calls.lock().unwrap().len();
    for _ in 0..2 {
        assert_eq!(fs.stat(v, b"nothing"), Err(ENOENT));
        let now = fake.calls.lock().unwrap().len();
        assert!(now > calls, "a miss is asked of the host every time");
        calls = now;
    }
    fake.add(b"/late", Node::Dir);
    assert_eq!(fs.mkdir(v, b"late", 0o755), Err(EEXIST));
}

#[test]
fn the_mount_point_is_an_edge() {
    let fake = Fake::new();
    fake.add(b"/f", Node::File(b"f".to_vec()));
    let mut fs = mounted(&fake, false);
    put(&mut fs, ROOT_INO, b"/tmp/g", b"g");
    assert_eq!(fs.rename(ROOT_INO, b"/tmp/g", b"/mnt/vol/g"), Err(EXDEV));
    assert_eq!(fs.rename(ROOT_INO, b"/mnt/vol/f", b"/tmp/f"), Err(EXDEV));
    let f = fs.lookup(ROOT_INO, b"/mnt/vol/f", true).unwrap();
    assert_eq!(fs.link_ino(ROOT_INO, b"/tmp/f", f), Err(EXDEV));
    assert_eq!(fs.link_ino(ROOT_INO, b"/mnt/vol/f2", f), Err(EPERM));
    let g = fs.lookup(ROOT_INO, b"/tmp/g", true).unwrap();
    assert_eq!(fs.link_ino(ROOT_INO, b"/mnt/vol/g", g), Err(EXDEV));
    assert_eq!(fs.rmdir(ROOT_INO, b"/mnt/vol"), Err(EBUSY));
    assert_eq!(fs.rename(ROOT_INO, b"/mnt/vol", b"/mnt/x"), Err(EBUSY));
    // Nothing changed on either side.
    assert_eq!(get(&mut fs, ROOT_INO, b"/tmp/g").unwrap(), b"g");
    assert_eq!(fake.get(b"/f").unwrap().0, Node::File(b"f".to_vec()));
    // A volume cannot be mounted twice, nor inside itself.
    assert_eq!(
        fs.mount_volume(fake.clone(), 3, false, b"/other"),
        Err(EBUSY)
    );
}

#[test]
fn a_read_only_volume_refuses_changes_without_asking_the_host() {
    let fake = Fake::new();
    fake.add(b"/f", Node::File(b"ro".to_vec()));
    fake.add(b"/d", Node::Dir);
    let mut fs = mounted(&fake, true);
    let v = fs.lookup(ROOT_INO, b"/mnt/vol", true).unwrap();
    let before = fake.calls.lock().unwrap().len();
    assert_eq!(fs.open(v, b"new", O_CREAT | O_WRONLY, 0o644), Err(EROFS));
    assert_eq!(fs.open(v, b"f", O_WRONLY, 0), Err(EROFS));
    assert_eq!(fs.open(v, b"f", O_RDWR | O_TRUNC, 0), Err(EROFS));
    assert_eq!(fs.mkdir(v, b"x", 0o755), Err(EROFS));
    assert_eq!(fs.unlink(v, b"f"), Err(EROFS));
    assert_eq!(fs.rmdir(v, b"d"), Err(EROFS));
    assert_eq!(fs.rename(v, b"f", b"g"), Err(EROFS));
    assert_eq!(fs.symlink(v, b"f", b"l"), Err(EROFS));
    assert_eq!(fs.chmod(v, b"f", 0o600), Err(EROFS));
    assert_eq!(fs.truncate(v, b"f", 0), Err(EROFS));
    let f = fs.lookup(v, b"f", true).unwrap();
    assert_eq!(fs.set_mtime(f, 9), Err(EROFS));
    let writes = fake.calls.lock().unwrap()[before..]
        .iter()
        .filter(|&&o| pvmux_hypercalls::volume::writes(o))
        .count();
    assert_eq!(writes, 0, "no changing call reached the host");
    assert_eq!(get(&mut fs, v, b"f").unwrap(), b"ro");
    assert!(fs.open(v, b"d", O_RDONLY, 0).is_ok());
}

#[test]
fn an_open_file_keeps_its_bytes_when_unlinked_or_replaced() {
    let fake = Fake::new();
    fake.add(b"/f", Node::File(b"first".to_vec()));
    fake.add(b"/g", Node::File(b"second".to_vec()));
    let mut fs = mounted(&fake, false);
    let v = fs.lookup(ROOT_INO, b"/mnt/vol", true).unwrap();
    let hf = fs.open(v, b"f", O_RDONLY, 0).unwrap();
    let hg = fs.open(v, b"g", O_RDONLY, 0).unwrap();
    fs.unlink(v, b"f").unwrap();
    assert!(fake.get(b"/f").is_none());
    put(&mut fs, v, b"new", b"new");
    fs.rename(v, b"new", b"g").unwrap();
    let mut buf = [0u8; 16];
    let n = fs.read(hf, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"first");
    let n = fs.read(hg, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"second");
    assert_eq!(fake.get(b"/g").unwrap().0, Node::File(b"new".to_vec()));
    fs.close(hf).unwrap();
    fs.close(hg).unwrap();
}

#[test]
fn a_mapped_volume_file_shares_a_cache_written_back_on_demand() {
    let fake = Fake::new();
    fake.add(b"/m", Node::File(b"0123456789".to_vec()));
    let mut fs = mounted(&fake, false);
    let v = fs.lookup(ROOT_INO, b"/mnt/vol", true).unwrap();
    let ino = fs.lookup(v, b"m", true).unwrap();
    let host = |f: &Arc<Fake>| match f.get(b"/m") {
        Some((Node::File(b), _)) => b,
        other => panic!("{other:?}"),
    };
    // The first shared mapping reads the file into a cache of its own.
    let obj = fs.shared_pages(ino).unwrap();
    let mut b = [0u8; 10];
    obj.read(0, &mut b);
    assert_eq!(&b, b"0123456789");
    assert!(
        Arc::ptr_eq(&obj, &fs.shared_pages(ino).unwrap()),
        "one cache"
    );
    // A store through the mapping (into the cache's frame) is what `read` sees; the host
    // has it once written back.
    obj.write(2, b"AB", &mut crate::fs::pagecache::alloc_frame)
        .unwrap();
    assert_eq!(get(&mut fs, v, b"m").unwrap(), b"01AB456789");
    assert_eq!(host(&fake), b"0123456789");
    // `write` goes to the host and into the cache.
    assert_eq!(fs.write_at(ino, 4, b"CD"), Ok(2));
    assert_eq!(host(&fake), b"0123CD6789");
    obj.read(0, &mut b);
    assert_eq!(&b, b"01ABCD6789");
    fs.vol_writeback(ino, 0, u64::MAX).unwrap();
    assert_eq!(host(&fake), b"01ABCD6789");
    // A truncate cuts both.
    fs.truncate(v, b"m", 3).unwrap();
    assert_eq!(host(&fake), b"01A");
    assert_eq!(get(&mut fs, v, b"m").unwrap(), b"01A");
    // fsync writes the stores back too.
    obj.write(0, b"z", &mut crate::fs::pagecache::alloc_frame)
        .unwrap();
    fs.fsync(ino).unwrap();
    assert_eq!(host(&fake), b"z1A");
    // Without mappings the cache goes (written back first); reads are the host's again.
    obj.write(1, b"y", &mut crate::fs::pagecache::alloc_frame)
        .unwrap();
    drop(obj);
    fs.vol_release_unmapped();
    assert!(fs.vol_cache(ino).is_none());
    assert_eq!(host(&fake), b"zyA");
    // A file removed while mapped keeps the cache as its data.
    let obj = fs.shared_pages(ino).unwrap();
    let h = fs.open(v, b"m", O_RDONLY, 0).unwrap();
    fs.unlink(v, b"m").unwrap();
    assert!(fake.get(b"/m").is_none());
    obj.write(0, b"Q", &mut crate::fs::pagecache::alloc_frame)
        .unwrap();
    let n = fs.read(h, &mut b).unwrap();
    assert_eq!(&b[..n], b"QyA");
    fs.close(h).unwrap();
    // A read-only volume's file maps (read-only) and its write-back asks the host nothing.
    let fake = Fake::new();
    fake.add(b"/r", Node::File(b"ro".to_vec()));
    let mut fs = mounted(&fake, true);
    let v = fs.lookup(ROOT_INO, b"/mnt/vol", true).unwrap();
    let ino = fs.lookup(v, b"r", true).unwrap();
    let _obj = fs.shared_pages(ino).unwrap();
    let calls = fake.calls.lock().unwrap().len();
    assert_eq!(fs.vol_writeback(ino, 0, u64::MAX), Ok(()));
    assert_eq!(fake.calls.lock().unwrap().len(), calls);
}

/// A fake host volume rooted at one file holding `bytes`.
fn file_fake(bytes: &[u8]) -> Arc<Fake> {
    let f = Fake::default();
    f.add(b"/", Node::File(bytes.to_vec()));
    Arc::new(f)
}

fn host_bytes(f: &Arc<Fake>) -> Vec<u8> {
    match f.get(b"/") {
        Some((Node::File(b), _)) => b,
        other => panic!("{other:?}"),
    }
}

/// A file volume mounted over a file of the image: the name leads to the host's file
/// (reads, writes, truncate, chmod go through), another hard link of the old file keeps the
/// old bytes, and the mount point can be neither removed nor renamed nor replaced (`EBUSY`).
#[test]
fn a_file_volume_replaces_the_file_it_is_mounted_over() {
    let fake = file_fake(b"nameserver 10.0.2.3\n");
    let mut fs = new_fs();
    fs.mkdir(ROOT_INO, b"/etc", 0o755).unwrap();
    fs.mkdir(ROOT_INO, b"/tmp", 0o777).unwrap();
    put(&mut fs, ROOT_INO, b"/etc/resolv.conf", b"image's");
    let old = fs.lookup(ROOT_INO, b"/etc/resolv.conf", true).unwrap();
    fs.link_ino(ROOT_INO, b"/tmp/other-name", old).unwrap();
    fs.mount_volume(fake.clone(), 3, false, b"/etc/resolv.conf")
        .unwrap();
    let f = fs.lookup(ROOT_INO, b"/etc/resolv.conf", true).unwrap();
    assert!(fs.is_volume_file(f) && f != old);
    assert_eq!(
        get(&mut fs, ROOT_INO, b"/etc/resolv.conf").unwrap(),
        b"nameserver 10.0.2.3\n"
    );
    assert_eq!(
        get(&mut fs, ROOT_INO, b"/tmp/other-name").unwrap(),
        b"image's"
    );
    assert_eq!(fs.stat(ROOT_INO, b"/tmp/other-name").unwrap().nlink, 1);
    // Listed once, under its name.
    let etc = fs.lookup(ROOT_INO, b"/etc", true).unwrap();
    assert_eq!(names(&mut fs, etc), ["resolv.conf"]);
    // Writes go to the host.
    put(
        &mut fs,
        ROOT_INO,
        b"/etc/resolv.conf",
        b"nameserver 1.1.1.1\n",
    );
    assert_eq!(host_bytes(&fake), b"nameserver 1.1.1.1\n");
    fs.truncate(ROOT_INO, b"/etc/resolv.conf", 10).unwrap();
    assert_eq!(host_bytes(&fake), b"nameserver");
    assert_eq!(fs.stat(ROOT_INO, b"/etc/resolv.conf").unwrap().size, 10);
    fs.chmod(ROOT_INO, b"/etc/resolv.conf", 0o4600).unwrap();
    assert_eq!(fake.get(b"/").unwrap().1, 0o600);
    // The host changes the file: the next open sees its size.
    fake.add(b"/", Node::File(b"from the host".to_vec()));
    assert_eq!(
        get(&mut fs, ROOT_INO, b"/etc/resolv.conf").unwrap(),
        b"from the host"
    );
    // The mount point is busy.
    put(&mut fs, ROOT_INO, b"/tmp/g", b"g");
    assert_eq!(fs.unlink(ROOT_INO, b"/etc/resolv.conf"), Err(EBUSY));
    assert_eq!(
        fs.rename(ROOT_INO, b"/etc/resolv.conf", b"/etc/x"),
        Err(EBUSY)
    );
    assert_eq!(
        fs.rename(ROOT_INO, b"/tmp/g", b"/etc/resolv.conf"),
        Err(EBUSY)
    );
    assert_eq!(fs.link_ino(ROOT_INO, b"/tmp/h", f), Err(EXDEV));
    assert_eq!(fs.rmdir(ROOT_INO, b"/etc/resolv.conf"), Err(ENOTDIR));
    assert_eq!(
        fs.mkdir(ROOT_INO, b"/etc/resolv.conf/x", 0o755),
        Err(ENOTDIR)
    );
    assert_eq!(host_bytes(&fake), b"from the host");
    // The directory holding it can go only empty.
    assert_eq!(fs.rmdir(ROOT_INO, b"/etc"), Err(ENOTEMPTY));
    // MAP_SHARED: a cache of the host's bytes, written back on fsync.
    let obj = fs.shared_pages(f).unwrap();
    let mut b = [0u8; 4];
    obj.read(0, &mut b);
    assert_eq!(&b, b"from");
    obj.write(0, b"FROM", &mut crate::fs::pagecache::alloc_frame)
        .unwrap();
    assert_eq!(fs.fsync(f), Ok(()));
    assert_eq!(host_bytes(&fake), b"FROM the host");
}

/// A file volume at a path that does not exist: parent directories are made; read-only
/// refuses writes with `EROFS` without asking the host; it cannot be mounted at a
/// directory (`EISDIR`) or below a file (`ENOTDIR`).
#[test]
fn a_file_volume_makes_its_path_and_honours_read_only() {
    let fake = file_fake(b"container=pvmux\n");
    let mut fs = new_fs();
    fs.mount_volume(fake.clone(), 3, true, b"/run/.containerenv")
        .unwrap();
    assert!(fs.stat(ROOT_INO, b"/run").unwrap().mode & 0o170000 == 0o040000);
    assert_eq!(
        get(&mut fs, ROOT_INO, b"/run/.containerenv").unwrap(),
        b"container=pvmux\n"
    );
    let before = fake.calls.lock().unwrap().len();
    assert_eq!(
        fs.open(ROOT_INO, b"/run/.containerenv", O_WRONLY, 0),
        Err(EROFS)
    );
    assert_eq!(fs.truncate(ROOT_INO, b"/run/.containerenv", 0), Err(EROFS));
    assert_eq!(fs.chmod(ROOT_INO, b"/run/.containerenv", 0o600), Err(EROFS));
    let writes = fake.calls.lock().unwrap()[before..]
        .iter()
        .filter(|&&o| pvmux_hypercalls::volume::writes(o))
        .count();
    assert_eq!(writes, 0);
    assert_eq!(host_bytes(&fake), b"container=pvmux\n");
    // Not at a directory, not below a file, not twice.
    for (path, want) in [
        (&b"/run"[..], EISDIR),
        (b"/run/.containerenv/x", ENOTDIR),
        (b"/", EBUSY),
    ] {
        let mut fresh = new_fs();
        fresh.mkdir(ROOT_INO, b"/run", 0o755).unwrap();
        put(&mut fresh, ROOT_INO, b"/run/.containerenv", b"");
        assert_eq!(
            fresh.mount_volume(file_fake(b"x"), 3, false, path),
            Err(want),
            "{path:?}"
        );
    }
    assert_eq!(
        fs.mount_volume(fake.clone(), 3, false, b"/elsewhere"),
        Err(EBUSY)
    );
}

#[test]
fn an_unmount_waits_for_open_files_then_frees_the_volume() {
    let fake = Fake::new();
    fake.add(b"/f", Node::File(b"data".to_vec()));
    fake.add(b"/d", Node::Dir);
    fake.add(b"/d/g", Node::File(b"g".to_vec()));
    let mut fs = mounted(&fake, false);
    let v = fs.lookup(ROOT_INO, b"/mnt/vol", true).unwrap();
    assert_eq!(get(&mut fs, v, b"d/g").unwrap(), b"g");
    let h = fs.open(v, b"f", O_RDONLY, 0).unwrap();
    assert!(matches!(fs.unmount_volume(3), Err(EBUSY)));
    // Nothing changed: the file is still read through the volume.
    assert_eq!(get(&mut fs, v, b"f").unwrap(), b"data");
    fs.close(h).unwrap();
    let dir = fs.open(v, b"d", O_RDONLY, 0).unwrap();
    assert!(matches!(fs.unmount_volume(3), Err(EBUSY)));
    fs.close(dir).unwrap();
    assert!(fs.unmount_volume(3).is_ok());
    assert!(matches!(fs.unmount_volume(3), Err(EINVAL)));
    // The mount point is an empty guest directory again; the volume mounts again.
    let m = fs.lookup(ROOT_INO, b"/mnt/vol", true).unwrap();
    assert!(!fs.is_volume_node(m));
    assert!(names(&mut fs, m).is_empty());
    assert_eq!(get(&mut fs, m, b"f"), Err(ENOENT));
    fs.mount_volume(fake.clone(), 3, false, b"/mnt/vol")
        .unwrap();
    let v = fs.lookup(ROOT_INO, b"/mnt/vol", true).unwrap();
    assert_eq!(get(&mut fs, v, b"d/g").unwrap(), b"g");
}
