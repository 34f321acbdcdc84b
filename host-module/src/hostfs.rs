//! The host side of the read-only host filesystem share (`--rootfs DIR`; docs/ABI.md §hostfs).
//!
//! [`HostFs::open`] opens DIR once (`O_PATH | O_DIRECTORY`). Every guest path is then opened
//! with `openat2(root, path, ..., RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so `..`, absolute
//! symbolic links and links pointing out of DIR all resolve inside DIR, and `/proc` magic
//! links are refused; a final symbolic link is never followed (`O_NOFOLLOW`: the guest
//! resolves links itself from the listed targets). Nothing is ever opened for writing.
//! Directories are opened with `O_DIRECTORY`, so a device is never opened by a list; a read
//! first checks the file through an `O_PATH` descriptor and opens it only if it is regular
//! (with `O_NONBLOCK | O_NOCTTY`), then checks again that the opened file is the same
//! regular file. Files on host pseudo filesystems (procfs, sysfs, debugfs, ...) are refused:
//! such directories list as empty and their files cannot be read.
//!
//! **Descriptor cache** (the `--rootfs` share, [`HostFs::open_cached`]): the checked read
//! descriptors of the last [`FILE_CACHE`] files read stay open, so a file read in many pieces
//! (a program's image chunk by chunk) costs one `pread` a piece after the first, not two path
//! walks, two `fstat`s and a filesystem check. A cached descriptor is the file it was when
//! first read: a file the host replaces (a rename over it) is read from its old inode until
//! its descriptor leaves the cache, consistent with the size and times the guest already
//! holds for it; a file changed in place is read as it is now, as without the cache. Only
//! opened regular files are kept (never directories, so nothing a host `mv` takes out of DIR
//! can be walked through), and never for a writable volume ([`crate::volume`], whose files
//! the guest itself renames and truncates). `HostfsRead` reads straight into guest memory (no
//! host bounce buffer).
//!
//! **Listing snapshot** (the same cached shares): a listing that does not fit in one call
//! keeps its sorted names (`Listing`) for the calls that go on from a cookie, so each page
//! of a large directory costs the statting of its own entries, not another read and sort of
//! the whole directory (18,008 entries in 64 KiB pages: 17 reads of all of them), and the
//! entry numbers of one listing stay those of one read of the directory (a name created
//! between two pages neither shifts nor repeats an entry). The names are only names: each
//! page opens the directory again (confined, checked) and states its entries as they are
//! now.
//!
//! Guest arguments are validated before any host work: path length (at most
//! [`hostfs::PATH_MAX`]) and guest ranges; paths are copied out of guest memory first.

use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pvmux_hypercalls::hostfs::{
    self, kind, put_record, HostfsEntry, LIST_MAX_BUF, NAME_MAX, READ_MAX, TARGET_MAX,
};
use pvmux_hypercalls::HcError;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

use crate::GuestMemory;

/// Most entries of one directory the share lists (the rest are not listed).
pub const MAX_DIR_ENTRIES: usize = 1 << 20;

/// Why a directory cannot be shared.
#[derive(Debug, thiserror::Error)]
pub enum HostfsError {
    /// The path is not a directory.
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// A volume's path is neither a directory nor a regular file (a device node, FIFO,
    /// socket), or is on a host pseudo filesystem.
    #[error("{} is neither a directory nor a regular file", .0.display())]
    NotAFileOrDirectory(PathBuf),
    /// Opening it failed.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Read descriptors a cached share keeps open (see the module's "Descriptor cache").
pub const FILE_CACHE: usize = 64;

/// Checked read descriptors of regular files, by guest path, least recently used first out.
type FileCache = lru::LruCache<Vec<u8>, Arc<OwnedFd>>;

/// A cache of the share (its descriptors, its listing), locked (a panic while it was held
/// leaves nothing half done).
fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A host directory shared read-only with a guest.
pub struct HostFs {
    root: OwnedFd,
    path: PathBuf,
    /// `Some` for a share the guest cannot change ([`HostFs::open_cached`]).
    files: Option<Mutex<FileCache>>,
    /// The listing under way, for a share the guest cannot change (the module's "Listing
    /// snapshot").
    listing: Option<Mutex<Option<Listing>>>,
}

/// The sorted names of a listing that did not fit in one call, by the guest path it was
/// asked for.
struct Listing {
    path: Vec<u8>,
    names: Arc<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for HostFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostFs")
            .field("path", &self.path)
            .field("cached", &self.files.is_some())
            .finish()
    }
}

/// Filesystem magic numbers (`statfs.f_type`) of pseudo filesystems whose files are never
/// shared: process and kernel state, not files (`/proc/self/mem` would expose the host).
const DENIED_FS: &[u64] = &[
    0x9fa0,      // proc
    0x6265_6572, // sysfs
    0x6462_6720, // debugfs
    0x7472_6163, // tracefs
    0x7363_6673, // securityfs
    0xcafe_4a11, // bpf
    0x0027_e0eb, // cgroup
    0x6367_7270, // cgroup2
    0xde5e_81e4, // efivarfs
    0x6265_6570, // configfs
    0x6165_676c, // pstore
    0x6573_5543, // fusectl
    0x4249_4e4d, // binfmt_misc
    0x6e73_6673, // nsfs
];

pub(crate) fn denied_fs(fd: BorrowedFd<'_>) -> bool {
    match rfs::fstatfs(fd) {
        Ok(s) => DENIED_FS.contains(&(s.f_type as u64)),
        Err(_) => true,
    }
}

/// The names of directory `fd` (not `.` and `..`, at most [`MAX_DIR_ENTRIES`]), sorted.
fn read_names(fd: OwnedFd) -> Result<Vec<Vec<u8>>, HcError> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    let dir = rfs::Dir::new(fd).map_err(map_errno)?;
    for e in dir {
        let e = e.map_err(map_errno)?;
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." || name.is_empty() || name.len() > NAME_MAX {
            continue;
        }
        if names.len() >= MAX_DIR_ENTRIES {
            break;
        }
        names.push(name.to_vec());
    }
    names.sort_unstable();
    Ok(names)
}

/// Maps a host error: "no such file / not allowed / wrong type" is `InvalidArgument`,
/// anything else (I/O errors, descriptor or memory exhaustion) `NoResources`.
fn map_errno(e: Errno) -> HcError {
    match e {
        Errno::NOENT
        | Errno::NOTDIR
        | Errno::LOOP
        | Errno::XDEV
        | Errno::ACCESS
        | Errno::PERM
        | Errno::ISDIR
        | Errno::NAMETOOLONG
        | Errno::INVAL
        | Errno::NXIO
        | Errno::NODEV => HcError::InvalidArgument,
        _ => HcError::NoResources,
    }
}

/// The path relative to the root: leading slashes dropped, empty means the root itself.
pub(crate) fn rel_path(path: &[u8]) -> Result<&Path, HcError> {
    use std::os::unix::ffi::OsStrExt;
    if path.len() as u64 > hostfs::PATH_MAX {
        return Err(HcError::TooLarge);
    }
    if path.contains(&0) {
        return Err(HcError::InvalidArgument);
    }
    let start = path.iter().position(|&b| b != b'/').unwrap_or(path.len());
    let rel = &path[start..];
    Ok(Path::new(std::ffi::OsStr::from_bytes(if rel.is_empty() {
        b"."
    } else {
        rel
    })))
}

pub(crate) fn is_type(st: &Stat, ft: FileType) -> bool {
    FileType::from_raw_mode(st.st_mode) == ft
}

/// The listing record header for a `stat` result.
pub(crate) fn entry_of(st: &Stat, kind: u8) -> HostfsEntry {
    let mtime_ns = u64::try_from(st.st_mtime)
        .ok()
        .and_then(|s| s.checked_mul(1_000_000_000))
        .and_then(|ns| ns.checked_add(st.st_mtime_nsec % 1_000_000_000))
        .unwrap_or(0);
    HostfsEntry {
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime_ns,
        perm: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        kind,
        ..HostfsEntry::default()
    }
}

impl HostFs {
    /// Opens `dir` for sharing; fails unless it is a directory.
    pub fn open(dir: &Path) -> Result<Self, HostfsError> {
        let fd = rfs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::NOTDIR => HostfsError::NotADirectory(dir.to_owned()),
            e => HostfsError::Open {
                path: dir.to_owned(),
                source: e.into(),
            },
        })?;
        Ok(Self {
            root: fd,
            path: dir.to_owned(),
            files: None,
            listing: None,
        })
    }

    /// [`HostFs::open`] for a share only the host may change (`--rootfs`): read descriptors
    /// are cached (see the module's "Descriptor cache").
    pub fn open_cached(dir: &Path) -> Result<Self, HostfsError> {
        let mut fs = Self::open(dir)?;
        let cap = NonZeroUsize::new(FILE_CACHE).expect("FILE_CACHE is not zero");
        fs.files = Some(Mutex::new(FileCache::new(cap)));
        fs.listing = Some(Mutex::new(None));
        Ok(fs)
    }

    /// The shared directory as given to [`HostFs::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shared directory's `O_PATH` descriptor (for [`crate::volume`]).
    pub(crate) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Opens `rel` inside the root (retrying the rare `EAGAIN` of a concurrent rename).
    fn open_in_root(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd, HcError> {
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        // openat2 refuses O_PATH with anything but O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC.
        let extra = if flags.contains(OFlags::PATH) {
            OFlags::empty()
        } else {
            OFlags::NOCTTY
        };
        let flags = flags | extra | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut tries = 0;
        loop {
            match rfs::openat2(&self.root, rel, flags, Mode::empty(), resolve) {
                Ok(fd) => return Ok(fd),
                Err(Errno::AGAIN | Errno::INTR) if tries < 8 => tries += 1,
                Err(e) => return Err(map_errno(e)),
            }
        }
    }

    /// Lists directory `path` from entry number `cookie` into `buf` (docs/ABI.md §hostfs):
    /// the bytes used, 0 when no entries remain, `TooLarge` if one record does not fit.
    pub fn list(&self, path: &[u8], cookie: u64, buf: &mut [u8]) -> Result<usize, HcError> {
        let rel = rel_path(path)?;
        let fd = self.open_in_root(rel, OFlags::RDONLY | OFlags::DIRECTORY)?;
        if denied_fs(fd.as_fd()) {
            return Ok(0);
        }
        let names = match self.listing_from(path, cookie) {
            Some(names) => names,
            None => {
                let dirfd = fd.try_clone().map_err(|_| HcError::NoResources)?;
                Arc::new(read_names(dirfd)?)
            }
        };
        let start = usize::try_from(cookie).unwrap_or(usize::MAX);
        let mut pos = 0;
        let mut end = start;
        for name in names.iter().skip(start) {
            let (entry, target) = self.describe(fd.as_fd(), name);
            let mut entry = entry;
            entry.name_len = name.len() as u16;
            entry.target_len = target.len() as u16;
            if !put_record(buf, &mut pos, &entry, name, &target) {
                if pos == 0 {
                    return Err(HcError::TooLarge);
                }
                break;
            }
            end += 1;
        }
        if let Some(l) = &self.listing {
            // Kept while the guest calls again: entries remain, or this page left no room
            // for one more record (docs/ABI.md §hostfs: only a page that does is the last).
            // (One listing at a time is kept: another path's, under way on another vCPU, is
            // replaced only by a listing that needs keeping, not by one that fits a call.)
            let again = end < names.len() || pos + hostfs::LIST_MIN_BUF as usize > buf.len();
            let mut held = locked(l);
            if again {
                *held = Some(Listing {
                    path: path.to_vec(),
                    names,
                });
            } else if held.as_ref().is_some_and(|h| h.path == path) {
                *held = None;
            }
        }
        Ok(pos)
    }

    /// The names of the listing of `path` under way, for a call that goes on from `cookie`
    /// (not 0: a new listing reads the directory again).
    fn listing_from(&self, path: &[u8], cookie: u64) -> Option<Arc<Vec<Vec<u8>>>> {
        let l = self.listing.as_ref()?;
        let held = locked(l);
        held.as_ref()
            .filter(|h| cookie != 0 && h.path == path)
            .map(|h| Arc::clone(&h.names))
    }

    /// Looks up the last component of `path` in its parent directory (docs/ABI.md §hostfs,
    /// `HostfsLookup`): the bytes of its one record in `buf`, 0 if the directory has no
    /// such entry (or lies on a pseudo filesystem, which lists as empty), `TooLarge` if
    /// the record does not fit. A final symbolic link is not followed.
    pub fn lookup(&self, path: &[u8], buf: &mut [u8]) -> Result<usize, HcError> {
        let rel = rel_path(path)?;
        let bytes = {
            use std::os::unix::ffi::OsStrExt;
            rel.as_os_str().as_bytes()
        };
        let trimmed = bytes.strip_suffix(b"/").unwrap_or(bytes);
        let (parent, name) = match trimmed.iter().rposition(|&b| b == b'/') {
            Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
            None => (&b"."[..], trimmed),
        };
        if name.is_empty() || name == b"." || name == b".." || name.len() > NAME_MAX {
            return Err(HcError::InvalidArgument);
        }
        let dirfd = self.open_in_root(rel_path(parent)?, OFlags::PATH | OFlags::DIRECTORY)?;
        if denied_fs(dirfd.as_fd()) {
            return Ok(0);
        }
        let (mut entry, target) = match self.stat_entry(dirfd.as_fd(), name) {
            Ok(e) => e,
            Err(Errno::NOENT) => return Ok(0),
            Err(_) => Self::other(),
        };
        entry.name_len = name.len() as u16;
        entry.target_len = target.len() as u16;
        let mut pos = 0;
        if !put_record(buf, &mut pos, &entry, name, &target) {
            return Err(HcError::TooLarge);
        }
        Ok(pos)
    }

    /// The record of an entry that vanished or cannot be examined.
    fn other() -> (HostfsEntry, Vec<u8>) {
        (
            HostfsEntry {
                kind: kind::OTHER,
                ..Default::default()
            },
            Vec::new(),
        )
    }

    /// The record header (without lengths) and link target of `name` in `dirfd`; entries
    /// that vanished or cannot be examined are `OTHER` (so entry numbers stay stable).
    fn describe(&self, dirfd: BorrowedFd<'_>, name: &[u8]) -> (HostfsEntry, Vec<u8>) {
        self.stat_entry(dirfd, name)
            .unwrap_or_else(|_| Self::other())
    }

    /// [`Self::describe`], with the error of an entry that cannot be examined.
    fn stat_entry(
        &self,
        dirfd: BorrowedFd<'_>,
        name: &[u8],
    ) -> Result<(HostfsEntry, Vec<u8>), Errno> {
        use std::os::unix::ffi::OsStrExt;
        let p = std::ffi::OsStr::from_bytes(name);
        let st = rfs::statat(dirfd, p, AtFlags::SYMLINK_NOFOLLOW)?;
        let ft = FileType::from_raw_mode(st.st_mode);
        let k = match ft {
            FileType::Directory => kind::DIR,
            FileType::RegularFile => kind::REG,
            FileType::Symlink => kind::SYMLINK,
            _ => kind::OTHER,
        };
        if k == kind::SYMLINK {
            let mut other = entry_of(&st, kind::OTHER);
            other.size = 0;
            match rfs::readlinkat(dirfd, p, Vec::new()) {
                Ok(t) if !t.as_bytes().is_empty() && t.as_bytes().len() <= TARGET_MAX => {
                    let t = t.into_bytes();
                    let mut e = entry_of(&st, k);
                    e.size = t.len() as u64;
                    return Ok((e, t));
                }
                _ => return Ok((other, Vec::new())),
            }
        }
        let mut e = entry_of(&st, k);
        if k == kind::OTHER {
            e.size = 0;
        }
        Ok((e, Vec::new()))
    }

    /// Reads regular file `path` at `offset` into `buf` (at most [`READ_MAX`] bytes): the
    /// bytes read, 0 at or past the end.
    pub fn read(&self, path: &[u8], offset: u64, buf: &mut [u8]) -> Result<usize, HcError> {
        let fd = self.file(path)?;
        let want = buf.len().min(READ_MAX as usize);
        let mut done = 0;
        while done < want {
            let at = offset
                .checked_add(done as u64)
                .ok_or(HcError::InvalidArgument)?;
            match rustix::io::pread(&*fd, &mut buf[done..want], at) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(Errno::INTR) => {}
                Err(e) if done == 0 => return Err(map_errno(e)),
                Err(_) => break,
            }
        }
        Ok(done)
    }

    /// Reads regular file `path` at `offset` into guest memory `[gpa, gpa + len)` and, with
    /// a `copy`, `[copy, copy + len)` too (`len` at most [`READ_MAX`]; the ranges checked
    /// by the caller): the bytes read, 0 at or past the end.
    fn read_into(
        &self,
        path: &[u8],
        offset: u64,
        mem: &GuestMemory,
        gpa: u64,
        len: u64,
        copy: Option<u64>,
    ) -> Result<usize, HcError> {
        let fd = self.file(path)?;
        offset.checked_add(len).ok_or(HcError::InvalidArgument)?;
        mem.read_file(fd.as_fd(), offset, len, &[Some(gpa), copy])
            .map_err(map_errno)
    }

    /// How many read descriptors the cache holds (0 without one).
    #[cfg(test)]
    fn cached_files(&self) -> usize {
        self.files.as_ref().map_or(0, |f| locked(f).len())
    }

    /// The checked read descriptor of regular file `path`: from the cache, or opened (and
    /// cached, if this share caches).
    pub(crate) fn file(&self, path: &[u8]) -> Result<Arc<OwnedFd>, HcError> {
        // Keyed by the path as resolved in the root (`/a` and `a` are one file).
        let path = {
            use std::os::unix::ffi::OsStrExt;
            rel_path(path)?.as_os_str().as_bytes()
        };
        if let Some(fd) = self
            .files
            .as_ref()
            .and_then(|f| locked(f).get(path).cloned())
        {
            return Ok(fd);
        }
        let fd = Arc::new(self.open_file(path)?);
        if let Some(files) = &self.files {
            locked(files).put(path.to_vec(), Arc::clone(&fd));
        }
        Ok(fd)
    }

    /// Opens regular file `path` for reading, checked: only a regular file not on a pseudo
    /// filesystem is ever opened, and the opened descriptor is that same file (so on the
    /// same filesystem: one filesystem check covers both).
    fn open_file(&self, path: &[u8]) -> Result<OwnedFd, HcError> {
        let rel = rel_path(path)?;
        // Look before opening for reading: only a regular file is ever opened.
        let probe = self.open_in_root(rel, OFlags::PATH)?;
        let st = rfs::fstat(&probe).map_err(map_errno)?;
        if !is_type(&st, FileType::RegularFile) || denied_fs(probe.as_fd()) {
            return Err(HcError::InvalidArgument);
        }
        let fd = self.open_in_root(rel, OFlags::RDONLY | OFlags::NONBLOCK)?;
        let st2 = rfs::fstat(&fd).map_err(map_errno)?;
        if !is_type(&st2, FileType::RegularFile)
            || (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino)
        {
            return Err(HcError::InvalidArgument);
        }
        Ok(fd)
    }
}

/// Reads the guest path argument: `TooLarge` beyond [`hostfs::PATH_MAX`], `BadAddress`
/// outside guest memory.
pub(crate) fn guest_path(mem: &GuestMemory, gpa: u64, len: u64) -> Result<Vec<u8>, HcError> {
    if len > hostfs::PATH_MAX {
        return Err(HcError::TooLarge);
    }
    mem.read_vec(gpa, len as usize)
        .map_err(|_| HcError::BadAddress)
}

/// `HostfsList(path_gpa, path_len, buf_gpa, buf_len, cookie)`.
pub(crate) fn hc_list(
    mem: &GuestMemory,
    share: Option<&HostFs>,
    a: [u64; 6],
) -> Result<u64, HcError> {
    records_call(mem, share, a, |share, path, buf| {
        share.list(path, a[4], buf)
    })
}

/// `HostfsLookup(path_gpa, path_len, buf_gpa, buf_len)`.
pub(crate) fn hc_lookup(
    mem: &GuestMemory,
    share: Option<&HostFs>,
    a: [u64; 6],
) -> Result<u64, HcError> {
    records_call(mem, share, a, |share, path, buf| share.lookup(path, buf))
}

/// A call that fills a guest buffer (`a[2]`, `a[3]`: at most [`LIST_MAX_BUF`]) with records
/// about the path (`a[0]`, `a[1]`): `fill` writes them into a host buffer of that size and
/// returns how many bytes it used; every range is checked before any host work.
fn records_call(
    mem: &GuestMemory,
    share: Option<&HostFs>,
    a: [u64; 6],
    fill: impl FnOnce(&HostFs, &[u8], &mut [u8]) -> Result<usize, HcError>,
) -> Result<u64, HcError> {
    let share = share.ok_or(HcError::UnknownCall)?;
    let (buf_gpa, buf_len) = (a[2], a[3]);
    if buf_len > LIST_MAX_BUF {
        return Err(HcError::TooLarge);
    }
    let path = guest_path(mem, a[0], a[1])?;
    mem.check_range(buf_gpa, buf_len)
        .map_err(|_| HcError::BadAddress)?;
    let mut buf = vec![0u8; buf_len as usize];
    let n = fill(share, &path, &mut buf)?;
    mem.write(buf_gpa, &buf[..n])
        .map_err(|_| HcError::BadAddress)?;
    Ok(n as u64)
}

/// `HostfsRead(path_gpa, path_len, offset, buf_gpa, len, copy_gpa)`: `len` is capped at
/// [`READ_MAX`] (a short read); the capped range, and `copy_gpa`'s if not 0, must be guest
/// memory. The bytes read go to `buf_gpa` and, with a `copy_gpa`, there too.
pub(crate) fn hc_read(
    mem: &GuestMemory,
    share: Option<&HostFs>,
    a: [u64; 6],
) -> Result<u64, HcError> {
    let share = share.ok_or(HcError::UnknownCall)?;
    let (offset, buf_gpa, len, copy_gpa) = (a[2], a[3], a[4].min(READ_MAX), a[5]);
    let path = guest_path(mem, a[0], a[1])?;
    let copy = (copy_gpa != 0).then_some(copy_gpa);
    for gpa in [Some(buf_gpa), copy].into_iter().flatten() {
        mem.check_range(gpa, len).map_err(|_| HcError::BadAddress)?;
    }
    let n = share.read_into(&path, offset, mem, buf_gpa, len, copy)?;
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvmux_hypercalls::hostfs::parse_record;
    use std::os::unix::fs::symlink;

    /// `tmp/root` (the share) and `tmp/outside/secret` (must stay unreachable).
    struct Tree {
        tmp: PathBuf,
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }

    fn tree(tag: &str) -> Tree {
        let tmp = std::env::temp_dir().join(format!("pvmux-hostfs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let root = tmp.join("root");
        std::fs::create_dir_all(root.join("d/sub")).unwrap();
        std::fs::create_dir_all(tmp.join("outside")).unwrap();
        std::fs::write(tmp.join("outside/secret"), b"SECRET").unwrap();
        std::fs::write(root.join("a"), b"hello").unwrap();
        std::fs::write(root.join("d/f"), b"in d").unwrap();
        symlink("/d", root.join("abs")).unwrap();
        symlink("../outside", root.join("esc")).unwrap();
        symlink("../outside/secret", root.join("escfile")).unwrap();
        symlink("/proc/self/root", root.join("magic")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        Tree { tmp }
    }

    fn list_all(fs: &HostFs, path: &[u8], bufsize: usize) -> Vec<(Vec<u8>, u8, Vec<u8>, u64)> {
        let mut out = vec![];
        let mut cookie = 0;
        loop {
            let mut buf = vec![0u8; bufsize];
            let n = fs.list(path, cookie, &mut buf).unwrap();
            if n == 0 {
                return out;
            }
            let mut pos = 0;
            while pos < n {
                let (r, len) = parse_record(&buf[pos..n]).expect("well-formed record");
                out.push((
                    r.name.to_vec(),
                    r.entry.kind,
                    r.target.to_vec(),
                    r.entry.size,
                ));
                pos += len;
                cookie += 1;
            }
        }
    }

    fn read(fs: &HostFs, path: &[u8]) -> Result<Vec<u8>, HcError> {
        let mut buf = vec![0u8; 64];
        let n = fs.read(path, 0, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    #[test]
    fn lists_sorted_with_kinds_targets_and_cookies() {
        let t = tree("list");
        let fs = HostFs::open(&t.tmp.join("root")).unwrap();
        let all = list_all(&fs, b"/", 1 << 16);
        let names: Vec<&[u8]> = all.iter().map(|e| e.0.as_slice()).collect();
        assert_eq!(
            names,
            [
                &b"a"[..],
                b"abs",
                b"d",
                b"esc",
                b"escfile",
                b"fifo",
                b"magic"
            ]
        );
        assert_eq!(all[0], (b"a".to_vec(), kind::REG, vec![], 5));
        assert_eq!(all[1], (b"abs".to_vec(), kind::SYMLINK, b"/d".to_vec(), 2));
        assert_eq!(all[2].1, kind::DIR);
        assert_eq!(all[5], (b"fifo".to_vec(), kind::OTHER, vec![], 0));
        // One record per call with the smallest buffer gives the same listing.
        assert_eq!(list_all(&fs, b"", hostfs::LIST_MIN_BUF as usize), all);
        let d: Vec<_> = list_all(&fs, b"//d/", 64)
            .into_iter()
            .map(|(n, k, _, s)| (n, k, if k == kind::REG { s } else { 0 }))
            .collect();
        assert_eq!(
            d,
            [
                (b"f".to_vec(), kind::REG, 4),
                (b"sub".to_vec(), kind::DIR, 0)
            ]
        );
        // A buffer too small for one record; a cookie past the end.
        assert_eq!(fs.list(b"/", 0, &mut [0u8; 40]), Err(HcError::TooLarge));
        assert_eq!(fs.list(b"/", 99, &mut [0u8; 4096]), Ok(0));
        assert_eq!(fs.list(b"/", u64::MAX, &mut [0u8; 4096]), Ok(0));
        // Not directories (a final symlink is not followed), missing.
        for p in [&b"/a"[..], b"/abs", b"/fifo", b"/nope", b"/esc"] {
            assert_eq!(
                fs.list(p, 0, &mut [0u8; 4096]),
                Err(HcError::InvalidArgument),
                "{p:?}"
            );
        }
    }

    /// A lookup gives exactly the record the parent's listing has for the name; missing
    /// names are 0, and a path that leaves the root or names no entry is refused.
    #[test]
    fn lookups_match_the_listing() {
        let t = tree("lookup");
        let fs = HostFs::open(&t.tmp.join("root")).unwrap();
        for (dir, prefix) in [(&b"/"[..], &b"/"[..]), (b"/d", b"/d/"), (b"d/", b"d/")] {
            let mut listed = vec![];
            let mut buf = vec![0u8; LIST_MAX_BUF as usize];
            let n = fs.list(dir, 0, &mut buf).unwrap();
            let mut pos = 0;
            while pos < n {
                let (_, len) = parse_record(&buf[pos..n]).unwrap();
                listed.push(buf[pos..pos + len].to_vec());
                pos += len;
            }
            assert!(!listed.is_empty());
            for rec in listed {
                let (r, _) = parse_record(&rec).unwrap();
                let path = [prefix, r.name].concat();
                let mut one = vec![0u8; hostfs::LIST_MIN_BUF as usize];
                let n = fs.lookup(&path, &mut one).unwrap();
                assert_eq!(&one[..n], &rec[..], "{}", String::from_utf8_lossy(&path));
            }
        }
        let mut one = vec![0u8; hostfs::LIST_MIN_BUF as usize];
        assert_eq!(fs.lookup(b"/nothing", &mut one), Ok(0));
        assert_eq!(fs.lookup(b"/d/nothing", &mut one), Ok(0));
        // A link is not followed, neither last (it is the entry) nor as the parent (which
        // must be a directory, as for a listing: the guest follows links itself).
        let n = fs.lookup(b"/abs", &mut one).unwrap();
        assert_eq!(parse_record(&one[..n]).unwrap().0.entry.kind, kind::SYMLINK);
        assert_eq!(fs.list(b"/abs", 0, &mut one), Err(HcError::InvalidArgument));
        assert_eq!(
            fs.lookup(b"/abs/f", &mut one),
            Err(HcError::InvalidArgument)
        );
        assert_eq!(
            fs.lookup(b"/esc/secret", &mut one),
            Err(HcError::InvalidArgument)
        );
        // `..` stops at the root, where there is no `outside`.
        assert_eq!(
            fs.lookup(b"/../outside/secret", &mut one),
            Err(HcError::InvalidArgument)
        );
        assert_eq!(fs.lookup(b"/../outside", &mut one), Ok(0));
        for bad in [&b"/"[..], b"", b"/d/..", b"/d/.", b"/a/x"] {
            assert_eq!(
                fs.lookup(bad, &mut one),
                Err(HcError::InvalidArgument),
                "{bad:?}"
            );
        }
        assert_eq!(fs.lookup(b"/a", &mut one[..8]), Err(HcError::TooLarge));
    }

    #[test]
    fn paths_stay_inside_the_root() {
        let t = tree("confine");
        let fs = HostFs::open(&t.tmp.join("root")).unwrap();
        assert_eq!(read(&fs, b"/a").unwrap(), b"hello");
        assert_eq!(read(&fs, b"a").unwrap(), b"hello");
        // `..` stops at the root.
        assert_eq!(read(&fs, b"/../../a").unwrap(), b"hello");
        assert_eq!(read(&fs, b"/d/../../a").unwrap(), b"hello");
        let inval = Err(HcError::InvalidArgument);
        assert_eq!(read(&fs, b"/../outside/secret"), inval);
        // An absolute symlink on the way resolves inside the root.
        assert_eq!(read(&fs, b"/abs/f").unwrap(), b"in d");
        // A relative symlink pointing out lands inside the root (where nothing is).
        assert_eq!(read(&fs, b"/esc/secret"), inval);
        // A final symlink is never followed, even to a file inside.
        assert_eq!(read(&fs, b"/escfile"), inval);
        assert_eq!(read(&fs, b"/abs"), inval);
        // With a decoy inside the root, the escaping symlink reaches the decoy.
        std::fs::create_dir(t.tmp.join("root/outside")).unwrap();
        std::fs::write(t.tmp.join("root/outside/secret"), b"decoy").unwrap();
        assert_eq!(read(&fs, b"/esc/secret").unwrap(), b"decoy");
        assert_eq!(read(&fs, b"/../outside/secret").unwrap(), b"decoy");
        // Magic links are refused (and /proc/self/root is not in this root anyway).
        assert_eq!(read(&fs, b"/magic/etc/passwd"), inval);
        // Wrong types and special files.
        assert_eq!(read(&fs, b"/d"), inval);
        assert_eq!(read(&fs, b"/"), inval);
        assert_eq!(read(&fs, b"/fifo"), inval);
        assert_eq!(read(&fs, b"/a\0x"), inval);
        assert_eq!(read(&fs, &[b'a'; 4097]), Err(HcError::TooLarge));
        assert_eq!(
            read(&fs, &[b'/'; 4096]),
            inval,
            "the root itself is a directory"
        );
        // Offsets.
        let mut b = [0u8; 3];
        assert_eq!(fs.read(b"/a", 3, &mut b), Ok(2));
        assert_eq!(&b[..2], b"lo");
        assert_eq!(fs.read(b"/a", 5, &mut b), Ok(0));
        assert_eq!(fs.read(b"/a", 1 << 40, &mut b), Ok(0));
        assert_eq!(
            fs.read(b"/a", u64::MAX, &mut b),
            Err(HcError::InvalidArgument)
        );
    }

    #[test]
    fn magic_links_and_pseudo_filesystems_are_refused_when_sharing_slash() {
        let t = tree("slash");
        let fs = HostFs::open(Path::new("/")).unwrap();
        let inside = t.tmp.join("root/a");
        assert_eq!(
            read(&fs, inside.as_os_str().as_encoded_bytes()).unwrap(),
            b"hello"
        );
        let inval = Err(HcError::InvalidArgument);
        // A magic link on the way.
        let via_magic = format!("/proc/self/root{}", inside.display());
        assert_eq!(read(&fs, via_magic.as_bytes()), inval);
        let magic_in_tree = t.tmp.join("root/magic/etc/passwd");
        assert_eq!(
            read(&fs, magic_in_tree.as_os_str().as_encoded_bytes()),
            inval
        );
        // procfs and sysfs: not listed, not read (/proc/self/mem is the host's memory).
        if Path::new("/proc/self/mem").exists() {
            assert_eq!(fs.list(b"/proc", 0, &mut [0u8; 4096]), Ok(0));
            assert_eq!(fs.list(b"/proc/sys", 0, &mut [0u8; 4096]), Ok(0));
            // A final symlink is never followed.
            assert_eq!(
                fs.list(b"/proc/self", 0, &mut [0u8; 4096]),
                Err(HcError::InvalidArgument)
            );
            for p in [
                "/proc/self/mem",
                "/proc/self/environ",
                "/proc/self/status",
                "/proc/version",
            ] {
                assert_eq!(read(&fs, p.as_bytes()), inval, "{p}");
            }
        }
        if Path::new("/sys/kernel").exists() {
            assert_eq!(fs.list(b"/sys/kernel", 0, &mut [0u8; 4096]), Ok(0));
        }
    }

    #[test]
    fn open_requires_a_directory() {
        let t = tree("open");
        assert!(matches!(
            HostFs::open(&t.tmp.join("root/a")),
            Err(HostfsError::NotADirectory(_))
        ));
        assert!(matches!(
            HostFs::open(&t.tmp.join("nope")),
            Err(HostfsError::Open { .. })
        ));
    }

    /// The records of one `list` call from `cookie` with a `bufsize` buffer: names, in order.
    fn page(fs: &HostFs, path: &[u8], cookie: u64, bufsize: usize) -> Vec<Vec<u8>> {
        let mut buf = vec![0u8; bufsize];
        let n = fs.list(path, cookie, &mut buf).unwrap();
        let mut names = vec![];
        let mut pos = 0;
        while pos < n {
            let (r, len) = parse_record(&buf[pos..n]).expect("well-formed record");
            names.push(r.name.to_vec());
            pos += len;
        }
        names
    }

    /// A cached share's listing in several calls goes on from one read of the directory: a
    /// name created between two pages neither shifts the entries nor repeats one, and the
    /// next listing (cookie 0) shows it.
    #[test]
    fn a_cached_share_lists_from_one_read_of_the_directory() {
        let t = tree("snapshot");
        let root = t.tmp.join("root");
        let fs = HostFs::open_cached(&root).unwrap();
        let whole = page(&fs, b"/", 0, 1 << 16);
        assert_eq!(whole.len(), 7);
        // Two records a call (each is 40 bytes and a short name, padded to 8).
        let first = page(&fs, b"/", 0, 112);
        assert_eq!(first, whole[..2]);
        std::fs::write(root.join("0new"), b"x").unwrap();
        let mut rest = vec![];
        let mut cookie = first.len() as u64;
        loop {
            let p = page(&fs, b"/", cookie, 112);
            if p.is_empty() {
                break;
            }
            cookie += p.len() as u64;
            rest.extend(p);
        }
        assert_eq!([first, rest].concat(), whole, "one read of the directory");
        let again = page(&fs, b"/", 0, 1 << 16);
        assert_eq!(again.len(), 8);
        assert_eq!(again[0], b"0new");
        // A listing of another directory that fits one call, meanwhile, leaves it kept.
        let first = page(&fs, b"/", 0, 112);
        assert_eq!(first, again[..2]);
        assert_eq!(page(&fs, b"/d", 0, 1 << 16), [&b"f"[..], b"sub"]);
        std::fs::write(root.join("00newest"), b"x").unwrap();
        assert_eq!(page(&fs, b"/", 2, 112)[0], again[2]);
        // An uncached share reads the directory at every call: the new name shifts it.
        let plain = HostFs::open(&root).unwrap();
        let first = page(&plain, b"/", 0, 112);
        std::fs::write(root.join("00newer"), b"x").unwrap();
        assert_eq!(page(&plain, b"/", 2, 112)[0], first[1], "shifted by one");
    }

    #[test]
    fn a_cached_share_reads_the_file_it_opened_and_keeps_few_open() {
        let t = tree("cache");
        let root = t.tmp.join("root");
        let cached = HostFs::open_cached(&root).unwrap();
        let plain = HostFs::open(&root).unwrap();
        assert_eq!(read(&cached, b"/a").unwrap(), b"hello");
        assert_eq!(read(&plain, b"/a").unwrap(), b"hello");
        // Replaced on the host (a rename over it): the cached descriptor is the old file, a
        // share without the cache (a volume's) opens the new one.
        std::fs::write(root.join("a.new"), b"HELLO AGAIN").unwrap();
        std::fs::rename(root.join("a.new"), root.join("a")).unwrap();
        assert_eq!(
            read(&cached, b"a").unwrap(),
            b"hello",
            "cached by its guest path"
        );
        assert_eq!(read(&plain, b"/a").unwrap(), b"HELLO AGAIN");
        // Changed in place: read as it is now.
        std::fs::write(root.join("d/f"), b"in d").unwrap();
        assert_eq!(read(&cached, b"/d/f").unwrap(), b"in d");
        std::fs::OpenOptions::new()
            .write(true)
            .open(root.join("d/f"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"IN"))
            .unwrap();
        assert_eq!(read(&cached, b"/d/f").unwrap(), b"IN d");
        // Only checked regular files get in; the cache stays bounded.
        assert_eq!(read(&cached, b"/fifo"), Err(HcError::InvalidArgument));
        assert_eq!(read(&cached, b"/d"), Err(HcError::InvalidArgument));
        assert_eq!(read(&cached, b"/escfile"), Err(HcError::InvalidArgument));
        for i in 0..FILE_CACHE + 10 {
            let name = format!("many{i}");
            std::fs::write(root.join(&name), name.as_bytes()).unwrap();
            assert_eq!(read(&cached, name.as_bytes()).unwrap(), name.as_bytes());
        }
        assert_eq!(cached.cached_files(), FILE_CACHE);
        assert_eq!(plain.cached_files(), 0);
        // The first name left the cache: it is opened again (the new file now).
        assert_eq!(read(&cached, b"/a").unwrap(), b"HELLO AGAIN");
    }

    #[test]
    fn hypercalls_validate_guest_ranges() {
        let t = tree("hc");
        let fs = HostFs::open(&t.tmp.join("root")).unwrap();
        let mem = GuestMemory::new(16 << 20).unwrap();
        let size = mem.size();
        mem.write(0x1000, b"/d/f").unwrap();
        let list = |a: [u64; 6]| hc_list(&mem, Some(&fs), a);
        let rd = |a: [u64; 6]| hc_read(&mem, Some(&fs), a);
        let look = |a: [u64; 6]| hc_lookup(&mem, Some(&fs), a);
        assert_eq!(rd([0x1000, 4, 1, 0x2000, 100, 0]), Ok(3));
        assert_eq!(mem.read_vec(0x2000, 3).unwrap(), b"n d");
        // A copy address gets the same bytes; a bad one is refused before any host work.
        assert_eq!(rd([0x1000, 4, 0, 0x5000, 100, 0x6000]), Ok(4));
        assert_eq!(mem.read_vec(0x5000, 4).unwrap(), b"in d");
        assert_eq!(mem.read_vec(0x6000, 4).unwrap(), b"in d");
        for copy in [size - 2, u64::MAX - 1] {
            assert_eq!(
                rd([0x1000, 4, 0, 0x7000, 4, copy]),
                Err(HcError::BadAddress),
                "{copy:#x}"
            );
            assert_eq!(mem.read_vec(0x7000, 4).unwrap(), [0; 4]);
        }
        let n = look([0x1000, 4, 0x4000, 4096, 0, 0]).unwrap();
        let one = mem.read_vec(0x4000, n as usize).unwrap();
        assert_eq!(parse_record(&one).unwrap().0.name, b"f");
        assert_eq!(
            hc_lookup(&mem, None, [0x1000, 4, 0x2000, 4096, 0, 0]),
            Err(HcError::UnknownCall)
        );
        assert_eq!(mem.read_vec(0x2000, 3).unwrap(), b"n d");
        // No share: the calls do not exist.
        assert_eq!(
            hc_read(&mem, None, [0x1000, 4, 0, 0x2000, 1, 0]),
            Err(HcError::UnknownCall)
        );
        assert_eq!(
            hc_list(&mem, None, [0x1000, 1, 0x2000, 4096, 0, 0]),
            Err(HcError::UnknownCall)
        );
        let bad = Err(HcError::BadAddress);
        let big = Err(HcError::TooLarge);
        // Path ranges.
        for (gpa, len) in [(size, 1), (size - 1, 2), (u64::MAX, 1), (u64::MAX - 1, 4)] {
            assert_eq!(rd([gpa, len, 0, 0x2000, 10, 0]), bad, "{gpa:#x}");
            assert_eq!(list([gpa, len, 0x2000, 4096, 0, 0]), bad, "{gpa:#x}");
            assert_eq!(look([gpa, len, 0x2000, 4096, 0, 0]), bad, "{gpa:#x}");
        }
        assert_eq!(look([0x1000, 4097, 0x2000, 4096, 0, 0]), big);
        assert_eq!(rd([0x1000, 4097, 0, 0x2000, 10, 0]), big);
        assert_eq!(rd([0x1000, u64::MAX, 0, 0x2000, 10, 0]), big);
        assert_eq!(list([0x1000, u64::MAX, 0x2000, 4096, 0, 0]), big);
        // Buffer ranges: checked before any host work, nothing written.
        mem.write(0x1000, b"/a").unwrap();
        for (gpa, len) in [(size, 1), (size - 2, 5), (u64::MAX, 2), (u64::MAX - 1, 4)] {
            assert_eq!(rd([0x1000, 2, 0, gpa, len, 0]), bad, "{gpa:#x}");
            assert_eq!(list([0x1000, 1, gpa, len, 0, 0]), bad, "{gpa:#x}");
            assert_eq!(look([0x1000, 2, gpa, len, 0, 0]), bad, "{gpa:#x}");
        }
        assert_eq!(look([0x1000, 2, 0x2000, LIST_MAX_BUF + 1, 0, 0]), big);
        assert_eq!(list([0x1000, 1, 0x2000, LIST_MAX_BUF + 1, 0, 0]), big);
        assert_eq!(list([0x1000, 1, 0x2000, u64::MAX, 0, 0]), big);
        // A huge read length is capped at READ_MAX (which must be guest memory).
        assert_eq!(rd([0x1000, 2, 0, 0x10_0000, u64::MAX, 0]), Ok(5));
        assert_eq!(mem.read_vec(0x10_0000, 5).unwrap(), b"hello");
        assert_eq!(rd([0x1000, 2, 0, size - 100, u64::MAX, 0]), bad);
        // A listing lands in guest memory.
        let n = list([0x1000, 1, 0x3000, 4096, 2, 0]).unwrap();
        let recs = mem.read_vec(0x3000, n as usize).unwrap();
        let (r, _) = parse_record(&recs).unwrap();
        assert_eq!(r.name, b"d");
        // Argument fuzz: never a panic, errors only from the documented set.
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..2000 {
            let mut a = [0u64; 6];
            for v in &mut a {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *v = match x % 4 {
                    0 => x,
                    1 => x % 8192,
                    2 => size - (x % 64),
                    _ => 0x1000,
                };
            }
            for r in [rd(a), list(a), look(a)] {
                if let Err(e) = r {
                    assert!(
                        matches!(
                            e,
                            HcError::BadAddress | HcError::TooLarge | HcError::InvalidArgument
                        ),
                        "{e:?} for {a:x?}"
                    );
                }
            }
        }
    }
}
