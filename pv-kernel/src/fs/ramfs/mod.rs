//! An in-memory filesystem: inodes, path resolution and Linux-errno-returning operations.
//!
//! * Inodes live in a map by inode number; numbers are never reused, so a stale number (a
//!   removed working directory, say) just fails with `ENOENT`.
//! * A regular file's bytes are either borrowed from the initramfs (zero copy, `'static`) or
//!   owned; the first write or growing truncate copies them. Bytes between the stored data
//!   and `size` read as zeros (a growing truncate allocates nothing).
//! * A directory maps names to inodes (sorted) and gives each entry a stable cookie used as
//!   the `getdents64` offset, so listing resumes correctly even if entries come and go.
//! * Link counts follow Linux: a file has one per name; a directory has 2 plus one per
//!   subdirectory. An unlinked inode lives on while handles are open.
//! * Open files are [`Handle`]s into a table of open file descriptions (inode, offset,
//!   flags). A process layer maps its file descriptors onto them.
//!
//! * With a host share attached ([`Fs::attach_host`]), directories and regular files can be
//!   *lazy*: a lazy directory lists its host directory (through [`HostOps::list`]) the
//!   first time its entries are needed (lookup, listing, emptiness check), creating lazy
//!   children; a lazy regular file has its size and metadata from the listing and reads go
//!   through to the host ([`HostOps::read`]) — no file data is cached, so memory use is
//!   bounded by what the guest writes. The first write copies the host bytes up into an
//!   owned buffer; the host is never written. A failed host call is `EIO` (the directory
//!   stays lazy and is retried next time). Host entries that are neither directories,
//!   regular files nor symbolic links are not shown.
//!
//! There are no permission checks (everything runs as root) and no device nodes.
//!
//! Pure code (`alloc` only; the clock is a function pointer), so the host tests compile it too.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use pvmux_hypercalls::hostfs::{self as abi, parse_record};

use super::errno::Errno::{self, *};

/// An inode number.
pub(crate) type Ino = u64;

/// Inode number of the root directory.
pub(crate) const ROOT_INO: Ino = 1;
/// Longest path in bytes (`PATH_MAX` without the NUL).
pub(crate) const PATH_MAX: usize = 4095;
/// Longest path component (`NAME_MAX`).
pub(crate) const NAME_MAX: usize = 255;
/// Symbolic links followed in one lookup before `ELOOP` (Linux's limit).
pub(crate) const SYMLOOP_MAX: u32 = 40;
/// Largest file size accepted (`EFBIG` above).
pub(crate) const MAX_FILE_SIZE: u64 = 1 << 40;
/// Most simultaneously open handles (`EMFILE` above).
pub(crate) const MAX_HANDLES: usize = 1 << 16;
/// Reported block size.
const BLKSIZE: u64 = 4096;
/// Size of the buffer a lazy directory is listed into.
const HOST_LIST_BUF: usize = 16 << 10;
/// Most entries taken from one host directory (the rest are not shown).
pub(crate) const HOST_DIR_MAX: u64 = 1 << 16;

/// `HostOps::list` / `HostOps::read`: `(path, cookie or offset, buffer) -> bytes`.
pub(crate) type HostFn = fn(&[u8], u64, &mut [u8]) -> Result<usize, Errno>;

/// The host share behind lazy nodes: plain functions so this module stays pure (the kernel
/// passes hypercall wrappers, tests pass fakes). Paths are absolute within the share.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HostOps {
    /// Lists directory `path` from entry number `cookie` into `buf` as packed
    /// `pvmux_hypercalls::hostfs` records: the bytes used, 0 at the end.
    pub(crate) list: HostFn,
    /// Reads regular file `path` at `off` into `buf`: the bytes read (may be short), 0 at
    /// the end.
    pub(crate) read: HostFn,
}

/// Fills `buf` from host file `path` at `off`; bytes the host no longer has read as zeros.
fn host_read_full(ops: &HostOps, path: &[u8], off: u64, buf: &mut [u8]) -> Result<(), Errno> {
    let mut done = 0;
    while done < buf.len() {
        let n = (ops.read)(path, off + done as u64, &mut buf[done..])?;
        if n == 0 || n > buf.len() - done {
            break;
        }
        done += n;
    }
    buf[done..].fill(0);
    Ok(())
}

/// `st_mode` type and permission bits (Linux values).
pub(crate) mod mode {
    /// Mask of the type bits.
    pub(crate) const S_IFMT: u32 = 0o170_000;
    /// Regular file.
    pub(crate) const S_IFREG: u32 = 0o100_000;
    /// Directory.
    pub(crate) const S_IFDIR: u32 = 0o040_000;
    /// Symbolic link.
    pub(crate) const S_IFLNK: u32 = 0o120_000;
    /// Mask of the permission bits (incl. set-id and sticky).
    pub(crate) const PERM: u32 = 0o7777;
}

/// `open` flags (Linux x86-64 values).
pub(crate) mod oflag {
    /// Read only.
    pub(crate) const O_RDONLY: u32 = 0;
    /// Write only.
    pub(crate) const O_WRONLY: u32 = 1;
    /// Read and write.
    pub(crate) const O_RDWR: u32 = 2;
    /// Access mode mask.
    pub(crate) const O_ACCMODE: u32 = 3;
    /// Create if missing.
    pub(crate) const O_CREAT: u32 = 0o100;
    /// With `O_CREAT`: fail if it exists.
    pub(crate) const O_EXCL: u32 = 0o200;
    /// Truncate to zero on open.
    pub(crate) const O_TRUNC: u32 = 0o1000;
    /// Every write appends.
    pub(crate) const O_APPEND: u32 = 0o2000;
    /// Fail unless a directory.
    pub(crate) const O_DIRECTORY: u32 = 0o200_000;
    /// Do not follow a final symbolic link.
    pub(crate) const O_NOFOLLOW: u32 = 0o400_000;
}

/// `lseek` whence values.
pub(crate) mod whence {
    /// From the start.
    pub(crate) const SEEK_SET: u32 = 0;
    /// From the current offset.
    pub(crate) const SEEK_CUR: u32 = 1;
    /// From the end.
    pub(crate) const SEEK_END: u32 = 2;
}

/// `linux_dirent64::d_type` values.
pub(crate) mod dt {
    /// Directory.
    pub(crate) const DT_DIR: u8 = 4;
    /// Regular file.
    pub(crate) const DT_REG: u8 = 8;
    /// Symbolic link.
    pub(crate) const DT_LNK: u8 = 10;
}

/// Size of the fixed part of a `linux_dirent64` (d_ino, d_off, d_reclen, d_type).
pub(crate) const DIRENT64_HEADER: usize = 19;

/// The three kinds of inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileType {
    /// Regular file.
    Regular,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
}

impl FileType {
    /// The `st_mode` type bits.
    pub(crate) const fn mode_bits(self) -> u32 {
        match self {
            Self::Regular => mode::S_IFREG,
            Self::Directory => mode::S_IFDIR,
            Self::Symlink => mode::S_IFLNK,
        }
    }

    /// The `d_type` value.
    pub(crate) const fn dtype(self) -> u8 {
        match self {
            Self::Regular => dt::DT_REG,
            Self::Directory => dt::DT_DIR,
            Self::Symlink => dt::DT_LNK,
        }
    }

    /// The `ls -l` type character.
    pub(crate) const fn ls_char(self) -> char {
        match self {
            Self::Regular => '-',
            Self::Directory => 'd',
            Self::Symlink => 'l',
        }
    }
}

/// The bytes of a regular file.
enum Data {
    /// Borrowed from memory that outlives the filesystem (the initramfs).
    Static(&'static [u8]),
    /// Owned by the filesystem.
    Owned(Vec<u8>),
    /// The first `len` bytes of host file `path` (read through, never cached).
    Host { path: Vec<u8>, len: u64 },
}

impl Data {
    /// Bytes stored (or backed by the host); the rest up to the size reads as zeros.
    fn stored_len(&self) -> u64 {
        match self {
            Self::Static(s) => s.len() as u64,
            Self::Owned(v) => v.len() as u64,
            Self::Host { len, .. } => *len,
        }
    }

    /// The bytes as an owned vector (copying borrowed or host bytes once).
    fn owned(&mut self, host: Option<&HostOps>) -> Result<&mut Vec<u8>, Errno> {
        match self {
            Self::Owned(_) => {}
            Self::Static(s) => {
                let mut v = Vec::new();
                v.try_reserve_exact(s.len()).map_err(|_| ENOSPC)?;
                v.extend_from_slice(s);
                *self = Self::Owned(v);
            }
            Self::Host { path, len } => {
                let ops = host.ok_or(EIO)?;
                let len = usize::try_from(*len).map_err(|_| ENOSPC)?;
                let mut v = Vec::new();
                v.try_reserve_exact(len).map_err(|_| ENOSPC)?;
                v.resize(len, 0);
                host_read_full(ops, path, 0, &mut v)?;
                *self = Self::Owned(v);
            }
        }
        match self {
            Self::Owned(v) => Ok(v),
            _ => Err(EIO),
        }
    }
}

/// A directory's entries.
struct Dir {
    /// Name → (inode, cookie).
    entries: BTreeMap<Vec<u8>, (Ino, u64)>,
    /// Cookie → name: the `getdents64` order.
    by_cookie: BTreeMap<u64, Vec<u8>>,
    /// Next cookie (1 and 2 are `.` and `..`).
    next_cookie: u64,
    /// The parent directory (the root is its own parent).
    parent: Ino,
    /// Lazy: the host directory whose entries have not been loaded yet.
    host: Option<Vec<u8>>,
}

impl Dir {
    fn new(parent: Ino) -> Self {
        Self {
            entries: BTreeMap::new(),
            by_cookie: BTreeMap::new(),
            next_cookie: 3,
            parent,
            host: None,
        }
    }

    fn get(&self, name: &[u8]) -> Option<Ino> {
        self.entries.get(name).map(|&(ino, _)| ino)
    }

    fn insert(&mut self, name: Vec<u8>, ino: Ino) {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        self.by_cookie.insert(cookie, name.clone());
        self.entries.insert(name, (ino, cookie));
    }

    fn remove(&mut self, name: &[u8]) -> Option<Ino> {
        let (ino, cookie) = self.entries.remove(name)?;
        self.by_cookie.remove(&cookie);
        Some(ino)
    }
}

/// What an inode holds.
enum Node {
    File { data: Data, size: u64 },
    Dir(Dir),
    Symlink(Vec<u8>),
}

/// One inode.
struct Inode {
    node: Node,
    /// Permission bits only (the type comes from `node`).
    perm: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    atime: u64,
    mtime: u64,
    ctime: u64,
    /// Open handles referring to it.
    open: u32,
}

impl Inode {
    fn file_type(&self) -> FileType {
        match self.node {
            Node::File { .. } => FileType::Regular,
            Node::Dir(_) => FileType::Directory,
            Node::Symlink(_) => FileType::Symlink,
        }
    }

    fn size(&self) -> u64 {
        match &self.node {
            Node::File { size, .. } => *size,
            Node::Dir(d) => (d.entries.len() as u64 + 2) * 32,
            Node::Symlink(t) => t.len() as u64,
        }
    }
}

/// `stat` results (the fields of Linux `struct stat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Device (always 0 for this filesystem).
    pub(crate) dev: u64,
    /// Inode number.
    pub(crate) ino: Ino,
    /// Type and permission bits.
    pub(crate) mode: u32,
    /// Link count.
    pub(crate) nlink: u32,
    /// Owner.
    pub(crate) uid: u32,
    /// Group.
    pub(crate) gid: u32,
    /// Size in bytes.
    pub(crate) size: u64,
    /// 512-byte blocks actually stored.
    pub(crate) blocks: u64,
    /// Preferred I/O size.
    pub(crate) blksize: u64,
    /// Access time, ns since the epoch.
    pub(crate) atime_ns: u64,
    /// Modification time, ns since the epoch.
    pub(crate) mtime_ns: u64,
    /// Status change time, ns since the epoch.
    pub(crate) ctime_ns: u64,
}

impl Stat {
    /// The file type.
    pub(crate) fn file_type(&self) -> FileType {
        match self.mode & mode::S_IFMT {
            mode::S_IFDIR => FileType::Directory,
            mode::S_IFLNK => FileType::Symlink,
            _ => FileType::Regular,
        }
    }

    /// The x86-64 Linux `struct stat` (144 bytes) for a `stat` system call.
    pub(crate) fn to_linux(self) -> [u8; 144] {
        let mut b = [0u8; 144];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        let ts = |ns: u64| {
            (
                (ns / 1_000_000_000).to_le_bytes(),
                (ns % 1_000_000_000).to_le_bytes(),
            )
        };
        put(0, &self.dev.to_le_bytes());
        put(8, &self.ino.to_le_bytes());
        put(16, &u64::from(self.nlink).to_le_bytes());
        put(24, &self.mode.to_le_bytes());
        put(28, &self.uid.to_le_bytes());
        put(32, &self.gid.to_le_bytes());
        put(48, &self.size.to_le_bytes());
        put(56, &self.blksize.to_le_bytes());
        put(64, &self.blocks.to_le_bytes());
        for (off, ns) in [
            (72, self.atime_ns),
            (88, self.mtime_ns),
            (104, self.ctime_ns),
        ] {
            let (s, n) = ts(ns);
            put(off, &s);
            put(off + 8, &n);
        }
        b
    }
}

/// A directory entry as listed by [`Fs::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DirEntry {
    /// The name.
    pub(crate) name: Vec<u8>,
    /// Its inode.
    pub(crate) ino: Ino,
    /// Its type.
    pub(crate) file_type: FileType,
}

/// An open file description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Handle(u32);

/// State of one open file description.
struct OpenFile {
    ino: Ino,
    /// Byte offset (files) or directory cookie (directories).
    offset: u64,
    flags: u32,
}

impl OpenFile {
    fn readable(&self) -> bool {
        self.flags & oflag::O_ACCMODE != oflag::O_WRONLY
    }
    fn writable(&self) -> bool {
        matches!(
            self.flags & oflag::O_ACCMODE,
            oflag::O_WRONLY | oflag::O_RDWR
        )
    }
}

/// The final component of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Last {
    /// A name to look up.
    Name(Vec<u8>),
    /// `.`
    Dot,
    /// `..`
    DotDot,
    /// The path was only slashes.
    Root,
}

/// A path resolved up to its last component.
struct Walk {
    /// The directory holding the last component.
    dir: Ino,
    last: Last,
    /// The path ended in `/`: the result must be a directory (and symlinks are followed).
    must_dir: bool,
}

/// A fully resolved path.
struct Resolved {
    walk: Walk,
    /// The inode, or `None` if the last component does not exist in `walk.dir`.
    ino: Option<Ino>,
}

/// The filesystem.
pub(crate) struct Fs {
    inodes: BTreeMap<Ino, Inode>,
    next_ino: Ino,
    handles: BTreeMap<Handle, OpenFile>,
    next_handle: u32,
    /// Wall-clock time in ns since the epoch.
    clock: fn() -> u64,
    /// The host share behind lazy nodes, if attached.
    host: Option<HostOps>,
}

/// Splits a path into its non-empty components, last first (a stack).
fn push_components(stack: &mut Vec<Vec<u8>>, path: &[u8]) -> Result<(), Errno> {
    let start = stack.len();
    for c in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        if c.len() > NAME_MAX {
            return Err(ENAMETOOLONG);
        }
        stack.try_reserve(1).map_err(|_| ENOMEM)?;
        stack.push(c.to_vec());
    }
    stack[start..].reverse();
    Ok(())
}

/// Appends one `linux_dirent64` record at `buf[*pos..]`; false if it does not fit.
fn put_dirent(buf: &mut [u8], pos: &mut usize, ino: Ino, off: u64, dtype: u8, name: &[u8]) -> bool {
    let reclen = (DIRENT64_HEADER + name.len() + 1 + 7) & !7;
    let Some(rec) = buf.get_mut(*pos..*pos + reclen) else {
        return false;
    };
    rec.fill(0);
    rec[0..8].copy_from_slice(&ino.to_le_bytes());
    rec[8..16].copy_from_slice(&off.to_le_bytes());
    rec[16..18].copy_from_slice(&(reclen as u16).to_le_bytes());
    rec[18] = dtype;
    rec[DIRENT64_HEADER..DIRENT64_HEADER + name.len()].copy_from_slice(name);
    *pos += reclen;
    true
}

impl Fs {
    /// An empty filesystem (just `/`, mode 0755) whose timestamps come from `clock`.
    pub(crate) fn new(clock: fn() -> u64) -> Self {
        let now = clock();
        let mut inodes = BTreeMap::new();
        inodes.insert(
            ROOT_INO,
            Inode {
                node: Node::Dir(Dir::new(ROOT_INO)),
                perm: 0o755,
                uid: 0,
                gid: 0,
                nlink: 2,
                atime: now,
                mtime: now,
                ctime: now,
                open: 0,
            },
        );
        Self {
            inodes,
            next_ino: ROOT_INO + 1,
            handles: BTreeMap::new(),
            next_handle: 0,
            clock,
            host: None,
        }
    }

    /// Attaches a host share: the root directory lists the host's `/` (now), its
    /// subdirectories and files are lazy. Entries already in the root stay and win over
    /// host entries of the same name.
    pub(crate) fn attach_host(&mut self, ops: HostOps) -> Result<(), Errno> {
        self.host = Some(ops);
        let mut root = Vec::new();
        root.try_reserve_exact(1).map_err(|_| ENOMEM)?;
        root.push(b'/');
        self.dir_mut(ROOT_INO)?.host = Some(root);
        // The root is needed at once anyway; loading it now keeps inode counts taken after
        // boot stable (fs-selftest's leak check).
        self.load(ROOT_INO)
    }

    /// Loads a lazy directory's entries from the host (a no-op for anything else). On
    /// failure (`EIO`, `ENOMEM`) the directory stays lazy; entries already added stay (a
    /// retry skips names that exist).
    fn load(&mut self, ino: Ino) -> Result<(), Errno> {
        let path = match &self.inode(ino)?.node {
            Node::Dir(Dir { host: Some(p), .. }) => p.clone(),
            _ => return Ok(()),
        };
        let ops = self.host.ok_or(EIO)?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(HOST_LIST_BUF).map_err(|_| ENOMEM)?;
        buf.resize(HOST_LIST_BUF, 0);
        let mut cookie = 0;
        'calls: while cookie < HOST_DIR_MAX {
            let n = (ops.list)(&path, cookie, &mut buf)?;
            if n == 0 {
                break;
            }
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
        }
        self.dir_mut(ino)?.host = None;
        Ok(())
    }

    /// Adds one listed host entry to lazy directory `dir` (host path `path`) unless the
    /// name exists or the entry cannot be shown.
    fn add_host_entry(
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
        let ino = self.new_inode(node, e.perm, if is_dir { 2 } else { 1 });
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

    /// Number of live inodes (for tests and statistics).
    pub(crate) fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    #[cfg(any(test, feature = "diagnostics"))]
    /// Number of open handles.
    pub(crate) fn handle_count(&self) -> usize {
        self.handles.len()
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    fn inode(&self, ino: Ino) -> Result<&Inode, Errno> {
        self.inodes.get(&ino).ok_or(ENOENT)
    }

    fn inode_mut(&mut self, ino: Ino) -> Result<&mut Inode, Errno> {
        self.inodes.get_mut(&ino).ok_or(ENOENT)
    }

    fn dir(&self, ino: Ino) -> Result<&Dir, Errno> {
        match &self.inode(ino)?.node {
            Node::Dir(d) => Ok(d),
            _ => Err(ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut Dir, Errno> {
        match &mut self.inode_mut(ino)?.node {
            Node::Dir(d) => Ok(d),
            _ => Err(ENOTDIR),
        }
    }

    fn is_dir(&self, ino: Ino) -> bool {
        matches!(self.inodes.get(&ino).map(|i| &i.node), Some(Node::Dir(_)))
    }

    /// Frees `ino` if it has neither names nor open handles.
    fn maybe_free(&mut self, ino: Ino) {
        if let Some(i) = self.inodes.get(&ino) {
            if i.nlink == 0 && i.open == 0 && ino != ROOT_INO {
                self.inodes.remove(&ino);
            }
        }
    }

    /// Updates a directory's mtime and ctime.
    fn touch_dir(&mut self, ino: Ino) {
        let now = self.now();
        if let Ok(i) = self.inode_mut(ino) {
            i.mtime = now;
            i.ctime = now;
        }
    }

    /// Allocates a new inode.
    fn new_inode(&mut self, node: Node, perm: u32, nlink: u32) -> Ino {
        let now = self.now();
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(
            ino,
            Inode {
                node,
                perm: perm & mode::PERM,
                uid: 0,
                gid: 0,
                nlink,
                atime: now,
                mtime: now,
                ctime: now,
                open: 0,
            },
        );
        ino
    }

    /// Resolves `path` (relative to `cwd` unless absolute) up to its last component,
    /// following symbolic links on the way; `links` counts links followed.
    /// The directory it ends in is loaded (see [`Fs::load`]).
    fn walk_parent(&mut self, cwd: Ino, path: &[u8], links: &mut u32) -> Result<Walk, Errno> {
        if path.is_empty() {
            return Err(ENOENT);
        }
        if path.len() > PATH_MAX {
            return Err(ENAMETOOLONG);
        }
        let mut dir = if path[0] == b'/' { ROOT_INO } else { cwd };
        self.dir(dir)?;
        let must_dir = path.ends_with(b"/");
        let mut stack = Vec::new();
        push_components(&mut stack, path)?;
        if stack.is_empty() {
            self.load(ROOT_INO)?;
            return Ok(Walk {
                dir: ROOT_INO,
                last: Last::Root,
                must_dir: true,
            });
        }
        while stack.len() > 1 {
            let Some(comp) = stack.pop() else { break };
            match comp.as_slice() {
                b"." => {}
                b".." => dir = self.dir(dir)?.parent,
                name => {
                    self.load(dir)?;
                    let child = self.dir(dir)?.get(name).ok_or(ENOENT)?;
                    match &self.inode(child)?.node {
                        Node::Dir(_) => dir = child,
                        Node::Symlink(target) => {
                            *links += 1;
                            if *links > SYMLOOP_MAX {
                                return Err(ELOOP);
                            }
                            if target.first() == Some(&b'/') {
                                dir = ROOT_INO;
                            }
                            push_components(&mut stack, target)?;
                        }
                        Node::File { .. } => return Err(ENOTDIR),
                    }
                }
            }
        }
        // The directory we ended in must still be one (a symlink may have led elsewhere).
        self.dir(dir)?;
        self.load(dir)?;
        let last = match stack.pop() {
            Some(c) if c == b"." => Last::Dot,
            Some(c) if c == b".." => Last::DotDot,
            Some(c) => Last::Name(c),
            None => Last::Dot,
        };
        Ok(Walk {
            dir,
            last,
            must_dir,
        })
    }

    /// Looks up the last component of a walk.
    fn lookup_last(&mut self, w: &Walk) -> Result<Option<Ino>, Errno> {
        self.load(w.dir)?;
        Ok(match &w.last {
            Last::Root => Some(ROOT_INO),
            Last::Dot => Some(w.dir),
            Last::DotDot => Some(self.dir(w.dir)?.parent),
            Last::Name(n) => self.dir(w.dir)?.get(n),
        })
    }

    /// Resolves a whole path; a final symbolic link is followed if `follow` (or if the path
    /// ends in `/`). A missing last component is `ino: None`, not an error.
    fn resolve_full(&mut self, cwd: Ino, path: &[u8], follow: bool) -> Result<Resolved, Errno> {
        let mut links = 0;
        let mut walk = self.walk_parent(cwd, path, &mut links)?;
        loop {
            let Some(ino) = self.lookup_last(&walk)? else {
                return Ok(Resolved { walk, ino: None });
            };
            let target = match &self.inode(ino)?.node {
                Node::Symlink(t) if follow || walk.must_dir => Some(t.clone()),
                _ => None,
            };
            if let Some(target) = target {
                links += 1;
                if links > SYMLOOP_MAX {
                    return Err(ELOOP);
                }
                let must_dir = walk.must_dir;
                walk = self.walk_parent(walk.dir, &target, &mut links)?;
                walk.must_dir |= must_dir;
                continue;
            }
            if walk.must_dir && !self.is_dir(ino) {
                return Err(ENOTDIR);
            }
            return Ok(Resolved {
                walk,
                ino: Some(ino),
            });
        }
    }

    /// The inode `path` names, following a final symbolic link if `follow`.
    pub(crate) fn lookup(&mut self, cwd: Ino, path: &[u8], follow: bool) -> Result<Ino, Errno> {
        self.resolve_full(cwd, path, follow)?.ino.ok_or(ENOENT)
    }

    /// The directory `path` names (for `chdir`): `ENOTDIR` if it is something else.
    pub(crate) fn lookup_dir(&mut self, cwd: Ino, path: &[u8]) -> Result<Ino, Errno> {
        let ino = self.lookup(cwd, path, true)?;
        self.dir(ino)?;
        Ok(ino)
    }

    /// `stat` of an inode.
    pub(crate) fn stat_ino(&self, ino: Ino) -> Result<Stat, Errno> {
        let i = self.inode(ino)?;
        let stored = match &i.node {
            Node::File { data, .. } => data.stored_len(),
            _ => i.size(),
        };
        Ok(Stat {
            dev: 0,
            ino,
            mode: i.file_type().mode_bits() | i.perm,
            nlink: i.nlink,
            uid: i.uid,
            gid: i.gid,
            size: i.size(),
            blocks: stored.div_ceil(BLKSIZE) * (BLKSIZE / 512),
            blksize: BLKSIZE,
            atime_ns: i.atime,
            mtime_ns: i.mtime,
            ctime_ns: i.ctime,
        })
    }

    /// `stat(path)`: follows symbolic links.
    pub(crate) fn stat(&mut self, cwd: Ino, path: &[u8]) -> Result<Stat, Errno> {
        let ino = self.lookup(cwd, path, true)?;
        self.stat_ino(ino)
    }

    /// `lstat(path)`: does not follow a final symbolic link.
    pub(crate) fn lstat(&mut self, cwd: Ino, path: &[u8]) -> Result<Stat, Errno> {
        let ino = self.lookup(cwd, path, false)?;
        self.stat_ino(ino)
    }

    /// `fstat(handle)`.
    pub(crate) fn fstat(&self, h: Handle) -> Result<Stat, Errno> {
        self.stat_ino(self.handles.get(&h).ok_or(EBADF)?.ino)
    }

    /// Adds `name → ino` to directory `dir` (which must still be linked).
    fn link_into(&mut self, dir: Ino, name: Vec<u8>, ino: Ino) -> Result<(), Errno> {
        if self.inode(dir)?.nlink == 0 {
            return Err(ENOENT);
        }
        let d = self.dir_mut(dir)?;
        if d.entries.contains_key(&name) {
            return Err(EEXIST);
        }
        d.insert(name, ino);
        self.touch_dir(dir);
        Ok(())
    }

    /// Creates a new inode named by the walk's last component.
    fn create_at(&mut self, walk: Walk, node: Node, perm: u32) -> Result<Ino, Errno> {
        let Last::Name(name) = walk.last else {
            return Err(EEXIST);
        };
        if self.inode(walk.dir)?.nlink == 0 {
            return Err(ENOENT);
        }
        if self.dir(walk.dir)?.get(&name).is_some() {
            return Err(EEXIST);
        }
        let is_dir = matches!(node, Node::Dir(_));
        let ino = self.new_inode(node, perm, if is_dir { 2 } else { 1 });
        self.link_into(walk.dir, name, ino)?;
        if is_dir {
            self.inode_mut(walk.dir)?.nlink += 1;
        }
        Ok(ino)
    }

    /// Opens `path` with Linux `open` flags ([`oflag`]); `perm` is the mode of a created file.
    pub(crate) fn open(
        &mut self,
        cwd: Ino,
        path: &[u8],
        flags: u32,
        perm: u32,
    ) -> Result<Handle, Errno> {
        use oflag::*;
        let acc = flags & O_ACCMODE;
        if acc == O_ACCMODE {
            return Err(EINVAL);
        }
        if self.handles.len() >= MAX_HANDLES {
            return Err(EMFILE);
        }
        let creat = flags & O_CREAT != 0;
        let excl = creat && flags & O_EXCL != 0;
        let follow = !excl && flags & O_NOFOLLOW == 0;
        let r = self.resolve_full(cwd, path, follow)?;
        let ino = match r.ino {
            Some(_) if excl => return Err(EEXIST),
            Some(ino) => ino,
            None if !creat => return Err(ENOENT),
            None if r.walk.must_dir => return Err(EISDIR),
            None => self.create_at(
                r.walk,
                Node::File {
                    data: Data::Owned(Vec::new()),
                    size: 0,
                },
                perm,
            )?,
        };
        let ft = self.inode(ino)?.file_type();
        match ft {
            FileType::Symlink => return Err(ELOOP),
            FileType::Directory if acc != O_RDONLY || creat || flags & O_TRUNC != 0 => {
                return Err(EISDIR)
            }
            FileType::Regular if flags & O_DIRECTORY != 0 => return Err(ENOTDIR),
            FileType::Regular if flags & O_TRUNC != 0 && acc != O_RDONLY => {
                self.truncate_ino(ino, 0)?;
            }
            _ => {}
        }
        let mut h = Handle(self.next_handle);
        while self.handles.contains_key(&h) {
            h = Handle(h.0.wrapping_add(1));
        }
        self.next_handle = h.0.wrapping_add(1);
        self.handles.insert(
            h,
            OpenFile {
                ino,
                offset: 0,
                flags,
            },
        );
        self.inode_mut(ino)?.open += 1;
        Ok(h)
    }

    /// Closes a handle; an unlinked inode is freed with its last handle.
    pub(crate) fn close(&mut self, h: Handle) -> Result<(), Errno> {
        let f = self.handles.remove(&h).ok_or(EBADF)?;
        if let Ok(i) = self.inode_mut(f.ino) {
            i.open = i.open.saturating_sub(1);
        }
        self.maybe_free(f.ino);
        Ok(())
    }

    /// Reads at `off` from a regular file's inode.
    fn read_at(&mut self, ino: Ino, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let now = self.now();
        let host = self.host;
        let i = self.inode_mut(ino)?;
        let Node::File { data, size } = &i.node else {
            return Err(EISDIR);
        };
        if off >= *size {
            return Ok(0);
        }
        let n = buf.len().min((*size - off).min(usize::MAX as u64) as usize);
        let start = off.min(data.stored_len());
        let stored = (data.stored_len() - start).min(n as u64) as usize;
        match data {
            Data::Static(b) => buf[..stored].copy_from_slice(&b[start as usize..][..stored]),
            Data::Owned(b) => buf[..stored].copy_from_slice(&b[start as usize..][..stored]),
            Data::Host { path, .. } => {
                host_read_full(host.as_ref().ok_or(EIO)?, path, start, &mut buf[..stored])?
            }
        }
        buf[stored..n].fill(0);
        i.atime = now;
        Ok(n)
    }

    /// Writes at `off` into a regular file's inode (zero-filling any gap).
    fn write_at(&mut self, ino: Ino, off: u64, buf: &[u8]) -> Result<usize, Errno> {
        let now = self.now();
        let end = off.checked_add(buf.len() as u64).ok_or(EFBIG)?;
        if end > MAX_FILE_SIZE {
            return Err(EFBIG);
        }
        let host = self.host;
        let i = self.inode_mut(ino)?;
        let Node::File { data, size } = &mut i.node else {
            return Err(EISDIR);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let v = data.owned(host.as_ref())?;
        let (off, end) = (off as usize, end as usize);
        if v.len() < end {
            v.try_reserve(end - v.len()).map_err(|_| ENOSPC)?;
            v.resize(end, 0);
        }
        v[off..end].copy_from_slice(buf);
        *size = (*size).max(end as u64);
        i.mtime = now;
        i.ctime = now;
        Ok(buf.len())
    }

    /// Sets a regular file's size: shrinking drops bytes, growing adds zeros (not stored).
    fn truncate_ino(&mut self, ino: Ino, len: u64) -> Result<(), Errno> {
        if len > MAX_FILE_SIZE {
            return Err(EFBIG);
        }
        let now = self.now();
        let i = self.inode_mut(ino)?;
        let Node::File { data, size } = &mut i.node else {
            return Err(EISDIR);
        };
        if len < data.stored_len() {
            match data {
                Data::Static(s) => *s = &s[..len as usize],
                Data::Owned(v) => {
                    v.truncate(len as usize);
                    v.shrink_to_fit();
                }
                Data::Host { len: l, .. } => *l = len,
            }
        }
        *size = len;
        i.mtime = now;
        i.ctime = now;
        Ok(())
    }

    fn handle(&self, h: Handle) -> Result<&OpenFile, Errno> {
        self.handles.get(&h).ok_or(EBADF)
    }

    /// `read(handle, buf)`: reads at the handle's offset and advances it.
    pub(crate) fn read(&mut self, h: Handle, buf: &mut [u8]) -> Result<usize, Errno> {
        let f = self.handle(h)?;
        if !f.readable() {
            return Err(EBADF);
        }
        let (ino, off) = (f.ino, f.offset);
        let n = self.read_at(ino, off, buf)?;
        if let Some(f) = self.handles.get_mut(&h) {
            f.offset += n as u64;
        }
        Ok(n)
    }

    /// `pread(handle, buf, off)`: reads at `off`; the handle's offset is unchanged.
    pub(crate) fn pread(&mut self, h: Handle, buf: &mut [u8], off: u64) -> Result<usize, Errno> {
        let f = self.handle(h)?;
        if !f.readable() {
            return Err(EBADF);
        }
        self.read_at(f.ino, off, buf)
    }

    #[cfg(any(test, feature = "diagnostics"))]
    /// `write(handle, buf)`: writes at the handle's offset (at the end with `O_APPEND`) and
    /// advances it.
    pub(crate) fn write(&mut self, h: Handle, buf: &[u8]) -> Result<usize, Errno> {
        let f = self.handle(h)?;
        if !f.writable() {
            return Err(EBADF);
        }
        let ino = f.ino;
        let off = if f.flags & oflag::O_APPEND != 0 {
            self.inode(ino)?.size()
        } else {
            f.offset
        };
        let n = self.write_at(ino, off, buf)?;
        if let Some(f) = self.handles.get_mut(&h) {
            f.offset = off + n as u64;
        }
        Ok(n)
    }

    /// `pwrite(handle, buf, off)`: writes at `off`; the handle's offset is unchanged.
    pub(crate) fn pwrite(&mut self, h: Handle, buf: &[u8], off: u64) -> Result<usize, Errno> {
        let f = self.handle(h)?;
        if !f.writable() {
            return Err(EBADF);
        }
        self.write_at(f.ino, off, buf)
    }

    /// `lseek(handle, off, whence)` ([`whence`]); returns the new offset. Seeking past the
    /// end is allowed (a later write leaves a hole of zeros). On a directory the offset is a
    /// `getdents64` cookie (`SEEK_SET`/`SEEK_CUR` only).
    pub(crate) fn lseek(&mut self, h: Handle, off: i64, wh: u32) -> Result<u64, Errno> {
        let f = self.handle(h)?;
        let inode = self.inode(f.ino)?;
        let is_dir = matches!(inode.node, Node::Dir(_));
        let base = match wh {
            whence::SEEK_SET => 0,
            whence::SEEK_CUR => f.offset,
            whence::SEEK_END if !is_dir => inode.size(),
            _ => return Err(EINVAL),
        };
        let new = i64::try_from(base)
            .ok()
            .and_then(|b| b.checked_add(off))
            .ok_or(EOVERFLOW)?;
        if new < 0 {
            return Err(EINVAL);
        }
        if let Some(f) = self.handles.get_mut(&h) {
            f.offset = new as u64;
        }
        Ok(new as u64)
    }

    /// `truncate(path, len)`.
    pub(crate) fn truncate(&mut self, cwd: Ino, path: &[u8], len: i64) -> Result<(), Errno> {
        let len = u64::try_from(len).map_err(|_| EINVAL)?;
        let ino = self.lookup(cwd, path, true)?;
        self.truncate_ino(ino, len)
    }

    /// `ftruncate(handle, len)`: the handle must be open for writing on a regular file.
    pub(crate) fn ftruncate(&mut self, h: Handle, len: i64) -> Result<(), Errno> {
        let len = u64::try_from(len).map_err(|_| EINVAL)?;
        let f = self.handle(h)?;
        if !f.writable() || self.is_dir(f.ino) {
            return Err(EINVAL);
        }
        self.truncate_ino(f.ino, len)
    }

    /// `mkdir(path, perm)`.
    pub(crate) fn mkdir(&mut self, cwd: Ino, path: &[u8], perm: u32) -> Result<Ino, Errno> {
        let walk = self.walk_parent(cwd, path, &mut 0)?;
        if self.lookup_last(&walk)?.is_some() {
            return Err(EEXIST);
        }
        let dir = walk.dir;
        self.create_at(walk, Node::Dir(Dir::new(dir)), perm)
    }

    /// `rmdir(path)`: the directory must be empty.
    pub(crate) fn rmdir(&mut self, cwd: Ino, path: &[u8]) -> Result<(), Errno> {
        let walk = self.walk_parent(cwd, path, &mut 0)?;
        let name = match walk.last {
            Last::Name(n) => n,
            Last::Dot => return Err(EINVAL),
            Last::DotDot => return Err(ENOTEMPTY),
            Last::Root => return Err(EBUSY),
        };
        let ino = self.dir(walk.dir)?.get(&name).ok_or(ENOENT)?;
        self.load(ino)?;
        if !self.dir(ino)?.entries.is_empty() {
            return Err(ENOTEMPTY);
        }
        self.dir_mut(walk.dir)?.remove(&name);
        self.inode_mut(walk.dir)?.nlink -= 1;
        self.touch_dir(walk.dir);
        self.inode_mut(ino)?.nlink = 0;
        self.maybe_free(ino);
        Ok(())
    }

    /// `unlink(path)`: removes a name of a non-directory.
    pub(crate) fn unlink(&mut self, cwd: Ino, path: &[u8]) -> Result<(), Errno> {
        let walk = self.walk_parent(cwd, path, &mut 0)?;
        let Last::Name(name) = walk.last else {
            return Err(EISDIR);
        };
        let ino = self.dir(walk.dir)?.get(&name).ok_or(ENOENT)?;
        if self.is_dir(ino) {
            return Err(EISDIR);
        }
        if walk.must_dir {
            return Err(ENOTDIR);
        }
        self.dir_mut(walk.dir)?.remove(&name);
        self.touch_dir(walk.dir);
        let now = self.now();
        let i = self.inode_mut(ino)?;
        i.nlink = i.nlink.saturating_sub(1);
        i.ctime = now;
        self.maybe_free(ino);
        Ok(())
    }

    #[cfg(any(test, feature = "diagnostics"))]
    /// `link(old, new)`: a new name for a non-directory (`old` is not followed).
    pub(crate) fn link(&mut self, cwd: Ino, old: &[u8], new: &[u8]) -> Result<(), Errno> {
        let ino = self.lookup(cwd, old, false)?;
        if self.is_dir(ino) {
            return Err(EPERM);
        }
        let walk = self.walk_parent(cwd, new, &mut 0)?;
        let Last::Name(name) = walk.last else {
            return Err(EEXIST);
        };
        if self.dir(walk.dir)?.get(&name).is_some() {
            return Err(EEXIST);
        }
        if walk.must_dir {
            return Err(ENOENT);
        }
        let i = self.inode(ino)?;
        if i.nlink == u32::MAX {
            return Err(EMLINK);
        }
        self.link_into(walk.dir, name, ino)?;
        let now = self.now();
        let i = self.inode_mut(ino)?;
        i.nlink += 1;
        i.ctime = now;
        Ok(())
    }

    /// Adds the name `path` for the non-directory inode `ino` (used for archive hard links).
    pub(crate) fn link_ino(&mut self, cwd: Ino, path: &[u8], ino: Ino) -> Result<(), Errno> {
        if self.is_dir(ino) {
            return Err(EPERM);
        }
        let walk = self.walk_parent(cwd, path, &mut 0)?;
        let Last::Name(name) = walk.last else {
            return Err(EEXIST);
        };
        self.link_into(walk.dir, name, ino)?;
        let i = self.inode_mut(ino)?;
        i.nlink = i.nlink.checked_add(1).ok_or(EMLINK)?;
        Ok(())
    }

    /// Sets an inode's modification (and access) time in ns since the epoch.
    pub(crate) fn set_mtime(&mut self, ino: Ino, t: u64) -> Result<(), Errno> {
        let i = self.inode_mut(ino)?;
        i.mtime = t;
        i.atime = t;
        Ok(())
    }

    /// `symlink(target, linkpath)`.
    pub(crate) fn symlink(
        &mut self,
        cwd: Ino,
        target: &[u8],
        linkpath: &[u8],
    ) -> Result<Ino, Errno> {
        if target.is_empty() {
            return Err(ENOENT);
        }
        if target.len() > PATH_MAX {
            return Err(ENAMETOOLONG);
        }
        let walk = self.walk_parent(cwd, linkpath, &mut 0)?;
        if self.lookup_last(&walk)?.is_some() {
            return Err(EEXIST);
        }
        if walk.must_dir {
            return Err(ENOENT);
        }
        let mut t = Vec::new();
        t.try_reserve_exact(target.len()).map_err(|_| ENOMEM)?;
        t.extend_from_slice(target);
        self.create_at(walk, Node::Symlink(t), 0o777)
    }

    /// `readlink(path)`: the target of a symbolic link (`EINVAL` for anything else).
    pub(crate) fn readlink(&mut self, cwd: Ino, path: &[u8]) -> Result<Vec<u8>, Errno> {
        let ino = self.lookup(cwd, path, false)?;
        match &self.inode(ino)?.node {
            Node::Symlink(t) => Ok(t.clone()),
            _ => Err(EINVAL),
        }
    }

    /// `rename(old, new)` with Linux's replacement rules: a file may replace a file, a
    /// directory an empty directory; a directory cannot move into its own subtree.
    pub(crate) fn rename(&mut self, cwd: Ino, old: &[u8], new: &[u8]) -> Result<(), Errno> {
        let wo = self.walk_parent(cwd, old, &mut 0)?;
        let wn = self.walk_parent(cwd, new, &mut 0)?;
        let (Last::Name(oname), Last::Name(nname)) = (&wo.last, &wn.last) else {
            return Err(EBUSY);
        };
        let src = self.dir(wo.dir)?.get(oname).ok_or(ENOENT)?;
        let src_dir = self.is_dir(src);
        if (wo.must_dir || wn.must_dir) && !src_dir {
            return Err(ENOTDIR);
        }
        let dst = self.dir(wn.dir)?.get(nname);
        if let Some(dst) = dst {
            if dst == src {
                return Ok(());
            }
            self.load(dst)?;
            match (src_dir, self.is_dir(dst)) {
                (false, true) => return Err(EISDIR),
                (true, false) => return Err(ENOTDIR),
                (true, true) if !self.dir(dst)?.entries.is_empty() => return Err(ENOTEMPTY),
                _ => {}
            }
        }
        if src_dir {
            // The new parent must not be the source or inside it.
            let mut p = wn.dir;
            loop {
                if p == src {
                    return Err(EINVAL);
                }
                if p == ROOT_INO {
                    break;
                }
                p = self.dir(p)?.parent;
            }
        }
        if self.inode(wn.dir)?.nlink == 0 {
            return Err(ENOENT);
        }
        let (odir, ndir, oname, nname) = (wo.dir, wn.dir, oname.clone(), nname.clone());
        if let Some(dst) = dst {
            self.dir_mut(ndir)?.remove(&nname);
            let dst_is_dir = self.is_dir(dst);
            let d = self.inode_mut(dst)?;
            if dst_is_dir {
                d.nlink = 0;
            } else {
                d.nlink = d.nlink.saturating_sub(1);
            }
            if dst_is_dir {
                self.inode_mut(ndir)?.nlink -= 1;
            }
            self.maybe_free(dst);
        }
        self.dir_mut(odir)?.remove(&oname);
        self.dir_mut(ndir)?.insert(nname, src);
        if src_dir && odir != ndir {
            self.dir_mut(src)?.parent = ndir;
            self.inode_mut(odir)?.nlink -= 1;
            self.inode_mut(ndir)?.nlink += 1;
        }
        self.touch_dir(odir);
        self.touch_dir(ndir);
        let now = self.now();
        self.inode_mut(src)?.ctime = now;
        Ok(())
    }

    /// `chmod(path, perm)`.
    pub(crate) fn chmod(&mut self, cwd: Ino, path: &[u8], perm: u32) -> Result<(), Errno> {
        let ino = self.lookup(cwd, path, true)?;
        self.set_meta(ino, perm, None, None)
    }

    /// Sets permission bits, and optionally owner and mtime (ns) — used when unpacking.
    pub(crate) fn set_meta(
        &mut self,
        ino: Ino,
        perm: u32,
        owner: Option<(u32, u32)>,
        mtime: Option<u64>,
    ) -> Result<(), Errno> {
        let now = self.now();
        let i = self.inode_mut(ino)?;
        i.perm = perm & mode::PERM;
        if let Some((uid, gid)) = owner {
            i.uid = uid;
            i.gid = gid;
        }
        if let Some(t) = mtime {
            i.mtime = t;
            i.atime = t;
        }
        i.ctime = now;
        Ok(())
    }

    /// Makes a regular file's contents `bytes` without copying them (initramfs files).
    pub(crate) fn set_static_data(&mut self, ino: Ino, bytes: &'static [u8]) -> Result<(), Errno> {
        let i = self.inode_mut(ino)?;
        let Node::File { data, size } = &mut i.node else {
            return Err(EISDIR);
        };
        *data = Data::Static(bytes);
        *size = bytes.len() as u64;
        Ok(())
    }

    /// The entries of directory `ino` (without `.` and `..`), sorted by name.
    pub(crate) fn list(&mut self, ino: Ino) -> Result<Vec<DirEntry>, Errno> {
        self.load(ino)?;
        let d = self.dir(ino)?;
        let mut out = Vec::new();
        out.try_reserve_exact(d.entries.len()).map_err(|_| ENOMEM)?;
        for (name, &(child, _)) in &d.entries {
            out.push(DirEntry {
                name: name.clone(),
                ino: child,
                file_type: self.inode(child)?.file_type(),
            });
        }
        Ok(out)
    }

    /// `getdents64(handle, buf)`: fills `buf` with `linux_dirent64` records from the
    /// handle's offset (a cookie: 0 = start, 1 = after `.`, 2 = after `..`, then each
    /// entry's own cookie) and advances it. Returns the bytes used, 0 at the end, `EINVAL`
    /// if not even one record fits. A removed directory lists nothing.
    pub(crate) fn getdents64(&mut self, h: Handle, buf: &mut [u8]) -> Result<usize, Errno> {
        let f = self.handle(h)?;
        let (ino, mut cookie) = (f.ino, f.offset);
        self.load(ino)?;
        let inode = self.inode(ino)?;
        let Node::Dir(d) = &inode.node else {
            return Err(ENOTDIR);
        };
        let mut pos = 0;
        let mut full = false;
        if inode.nlink > 0 {
            if cookie == 0 {
                full = !put_dirent(buf, &mut pos, ino, 1, dt::DT_DIR, b".");
                if !full {
                    cookie = 1;
                }
            }
            if cookie == 1 && !full {
                full = !put_dirent(buf, &mut pos, d.parent, 2, dt::DT_DIR, b"..");
                if !full {
                    cookie = 2;
                }
            }
            if !full {
                for (&c, name) in d.by_cookie.range(cookie.saturating_add(1).max(3)..) {
                    let Some(child) = d.get(name) else { continue };
                    let dtype = self.inode(child).map_or(0, |i| i.file_type().dtype());
                    if !put_dirent(buf, &mut pos, child, c, dtype, name) {
                        full = true;
                        break;
                    }
                    cookie = c;
                }
            }
        }
        if pos == 0 && full {
            return Err(EINVAL);
        }
        if let Some(f) = self.handles.get_mut(&h) {
            f.offset = cookie;
        }
        Ok(pos)
    }
}
