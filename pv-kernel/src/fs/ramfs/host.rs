//! The host share: lazy directories listed from the host on first use, regular files read
//! through to it ([`HostShare`]).

use alloc::sync::Arc;
use alloc::vec::Vec;

use pvmux_hypercalls::hostfs::{self as abi, parse_record};

use super::contents::{Data, MAX_FILE_SIZE};
use super::inode::{Dir, Ino, Node, ROOT_INO};
use super::path::PATH_MAX;
use super::Fs;
use crate::fs::errno::Errno::{self, *};

/// Size of the buffer a lazy directory is listed into.
const HOST_LIST_BUF: usize = 64 << 10;
/// Most entries taken from one host directory (the rest are not shown).
pub(crate) const HOST_DIR_MAX: u64 = 1 << 16;

/// The host share behind lazy nodes (`pvmux run --rootfs DIR`). The kernel's implementation
/// makes hypercalls (`fs::hostfs`); tests pass fakes. Paths are absolute within the share.
pub(crate) trait HostShare: Send + Sync {
    /// Lists directory `path` from entry number `cookie` into `buf` as packed
    /// `pvmux_hypercalls::hostfs` records: the bytes used, 0 at the end.
    fn list(&self, path: &[u8], cookie: u64, buf: &mut [u8]) -> Result<usize, Errno>;
    /// Reads regular file `path` at `off` into `buf`: the bytes read (may be short), 0 at
    /// the end.
    fn read(&self, path: &[u8], off: u64, buf: &mut [u8]) -> Result<usize, Errno>;
    /// Looks up the last component of `path` in its host directory: the bytes of its one
    /// listing record in `buf`, 0 when there is no such entry. `ENOSYS` (the default): the
    /// host cannot, and callers list the whole directory instead.
    fn lookup(&self, path: &[u8], buf: &mut [u8]) -> Result<usize, Errno> {
        let _ = (path, buf);
        Err(ENOSYS)
    }
    /// Reads regular file `path` at `off` into `copy` and the same bytes into the pool frames
    /// at `frames_gpa` (contiguous, at least `copy.len()` bytes): the bytes read (may be
    /// short), 0 at the end. The default reads into `copy` and copies it to the frames; the
    /// host share has the host write both at once, so the kernel never faults the frames
    /// in to copy them.
    fn read_frames(
        &self,
        path: &[u8],
        off: u64,
        frames_gpa: u64,
        copy: &mut [u8],
    ) -> Result<usize, Errno> {
        let n = self.read(path, off, copy)?;
        crate::mm::pool_mem::write(frames_gpa, &copy[..n.min(copy.len())]);
        Ok(n)
    }
}

/// Fills `buf` from host file `path` at `off`; bytes the host no longer has read as zeros.
/// As [`host_read_full`], but a read that ends early (the host file shrank under the
/// guest) is `EIO`: for the bytes of programs (`read_ino_uncached`), where zeros in place of
/// the file's bytes would run as code.
pub(super) fn host_read_exact(
    host: &dyn HostShare,
    path: &[u8],
    off: u64,
    buf: &mut [u8],
) -> Result<(), Errno> {
    let mut done = 0;
    while done < buf.len() {
        let n = host.read(path, off + done as u64, &mut buf[done..])?;
        if n == 0 || n > buf.len() - done {
            return Err(Errno::EIO);
        }
        done += n;
    }
    Ok(())
}

pub(super) fn host_read_full(
    host: &dyn HostShare,
    path: &[u8],
    off: u64,
    buf: &mut [u8],
) -> Result<(), Errno> {
    let mut done = 0;
    while done < buf.len() {
        let n = host.read(path, off + done as u64, &mut buf[done..])?;
        if n == 0 || n > buf.len() - done {
            break;
        }
        done += n;
    }
    buf[done..].fill(0);
    Ok(())
}

impl Fs {
    /// Attaches a host share: the root directory lists the host's `/` (now), its
    /// subdirectories and files are lazy. Entries already in the root stay and win over
    /// host entries of the same name.
    pub(crate) fn attach_host(&mut self, share: Arc<dyn HostShare>) -> Result<(), Errno> {
        self.host = Some(share);
        let mut root = Vec::new();
        root.try_reserve_exact(1).map_err(|_| ENOMEM)?;
        root.push(b'/');
        self.dir_mut(ROOT_INO)?.host = Some(root);
        // The root is needed at once anyway; loading it now keeps inode counts taken after
        // boot stable (fs-selftest's leak check).
        self.load(ROOT_INO)
    }

    /// The inode `name` names in directory `dir`. In a lazy host directory a name not seen
    /// yet is looked up on the host alone (`HostShare::lookup`), so a path walk costs one
    /// host call per new component instead of a listing of every directory on the way (a
    /// listing stats every entry: /usr/bin has a thousand). Anything else, or a host that
    /// cannot look up, loads the whole directory first. A volume directory, a live host
    /// directory, asks its host about a name it does not hold (`Fs::vol_lookup_new`).
    pub(super) fn lookup_child(&mut self, dir: Ino, name: &[u8]) -> Result<Option<Ino>, Errno> {
        if let Some(ino) = self.dir(dir)?.get(name) {
            return Ok(Some(ino));
        }
        if !self.lookup_host_entry(dir, name)? {
            self.load(dir)?;
        }
        match self.dir(dir)?.get(name) {
            None if self.is_volume_node(dir) => self.vol_lookup_new(dir, name),
            found => Ok(found),
        }
    }

    /// Adds `name` of lazy host directory `dir` from the host if it has it. False (nothing
    /// done) when `dir` is not a lazy directory of the `--rootfs` share or the host cannot
    /// look up single names.
    fn lookup_host_entry(&mut self, dir: Ino, name: &[u8]) -> Result<bool, Errno> {
        // A lazy `--volume` directory is another host's: `vol_load` lists it.
        if self.is_volume_node(dir) {
            return Ok(false);
        }
        let path = match &self.inode(dir)?.node {
            Node::Dir(Dir { host: Some(p), .. }) => p.clone(),
            _ => return Ok(false),
        };
        if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
            return Ok(true);
        }
        if name.len() > abi::NAME_MAX || path.len() + 1 + name.len() > abi::PATH_MAX as usize {
            // Never listed (too long a name), or a path the host refuses: the listing
            // decides what such entries look like.
            return Ok(false);
        }
        let Some(host) = self.host.clone() else {
            return Ok(false);
        };
        let mut child = Vec::new();
        child
            .try_reserve_exact(path.len() + 1 + name.len())
            .map_err(|_| ENOMEM)?;
        child.extend_from_slice(&path);
        if !path.ends_with(b"/") {
            child.push(b'/');
        }
        child.extend_from_slice(name);
        if self.host_misses.contains(&child) {
            return Ok(true);
        }
        let mut buf = Vec::new();
        buf.try_reserve_exact(abi::LIST_MIN_BUF as usize)
            .map_err(|_| ENOMEM)?;
        buf.resize(abi::LIST_MIN_BUF as usize, 0);
        let n = match host.lookup(&child, &mut buf) {
            Ok(n) => n,
            Err(ENOSYS) => return Ok(false),
            Err(e) => return Err(e),
        };
        if n == 0 {
            self.host_misses.insert(child);
            return Ok(true);
        }
        let (rec, len) = parse_record(buf.get(..n).ok_or(EIO)?).ok_or(EIO)?;
        if len != n || rec.name != name {
            return Err(EIO);
        }
        self.add_host_entry(dir, &path, &rec)?;
        if self.dir(dir)?.get(name).is_none() {
            // An entry the guest does not show (a device node, a socket, an over-long
            // symbolic link): missing to the guest, as in a listing, so the host is not
            // asked again (boot's `/dev` set-up asked 4 times for each of the host's nodes).
            self.host_misses.insert(child);
        }
        Ok(true)
    }

    /// Loads a lazy directory's entries from the host (a no-op for anything else). On
    /// failure (`EIO`, `ENOMEM`) the directory stays lazy; entries already added stay (a
    /// retry skips names that exist).
    pub(super) fn load(&mut self, ino: Ino) -> Result<(), Errno> {
        if self.vol_load(ino)? {
            return Ok(());
        }
        let path = match &self.inode(ino)?.node {
            Node::Dir(Dir { host: Some(p), .. }) => p.clone(),
            _ => return Ok(()),
        };
        let host = self.host.clone().ok_or(EIO)?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(HOST_LIST_BUF).map_err(|_| ENOMEM)?;
        buf.resize(HOST_LIST_BUF, 0);
        let mut cookie = 0;
        'calls: while cookie < HOST_DIR_MAX {
            let n = host.list(&path, cookie, &mut buf)?;
            if n == 0 {
                break;
            }
            // Room for one more record of any size left over: that was the last (the host
            // fills the buffer), no call to hear it.
            let last = n + abi::LIST_MIN_BUF as usize <= buf.len();
            let recs = buf.get(..n).ok_or(EIO)?;
            let mut pos = 0;
            while pos < recs.len() {
                let (rec, len) = parse_record(&recs[pos..]).ok_or(EIO)?;
                pos += len;
                cookie += 1;
                self.add_host_entry(ino, &path, &rec)?;
                if cookie >= HOST_DIR_MAX {
                    break 'calls;
                }
            }
            if last {
                break;
            }
        }
        self.dir_mut(ino)?.host = None;
        Ok(())
    }

    /// Adds one listed host entry to lazy directory `dir` (host path `path`) unless the
    /// name exists or the entry cannot be shown.
    pub(super) fn add_host_entry(
        &mut self,
        dir: Ino,
        path: &[u8],
        rec: &abi::Record<'_>,
    ) -> Result<(), Errno> {
        let name = rec.name;
        if name.is_empty()
            || name == b"."
            || name == b".."
            || name.contains(&b'/')
            || name.contains(&0)
            || self.dir(dir)?.get(name).is_some()
        {
            return Ok(());
        }
        let e = &rec.entry;
        let child_path = || -> Result<Vec<u8>, Errno> {
            let mut p = Vec::new();
            p.try_reserve_exact(path.len() + 1 + name.len())
                .map_err(|_| ENOMEM)?;
            p.extend_from_slice(path);
            if !path.ends_with(b"/") {
                p.push(b'/');
            }
            p.extend_from_slice(name);
            Ok(p)
        };
        let too_long = path.len() + 1 + name.len() > abi::PATH_MAX as usize;
        let node = match e.kind {
            abi::kind::DIR if !too_long => {
                let mut d = Dir::new(dir);
                d.host = Some(child_path()?);
                Node::Dir(d)
            }
            abi::kind::REG if !too_long && e.size <= MAX_FILE_SIZE => Node::File {
                data: Data::Host {
                    path: child_path()?,
                    len: e.size,
                    cache: None,
                },
                size: e.size,
            },
            abi::kind::SYMLINK if !rec.target.is_empty() && rec.target.len() <= PATH_MAX => {
                let mut t = Vec::new();
                t.try_reserve_exact(rec.target.len()).map_err(|_| ENOMEM)?;
                t.extend_from_slice(rec.target);
                Node::Symlink(t)
            }
            _ => return Ok(()),
        };
        let mut key = Vec::new();
        key.try_reserve_exact(name.len()).map_err(|_| ENOMEM)?;
        key.extend_from_slice(name);
        let is_dir = matches!(node, Node::Dir(_));
        let ino = self.new_uncounted_inode(node, e.perm, if is_dir { 2 } else { 1 }, name.len())?;
        if let Ok(i) = self.inode_mut(ino) {
            (i.uid, i.gid) = (e.uid, e.gid);
            (i.atime, i.mtime, i.ctime) = (e.mtime_ns, e.mtime_ns, e.mtime_ns);
        }
        self.dir_mut(dir)?.insert(key, ino);
        if is_dir {
            self.inode_mut(dir)?.nlink += 1;
        }
        Ok(())
    }
}
