//! The device registry: `/dev/null`, `/dev/zero`, `/dev/full`, `/dev/random`,
//! `/dev/urandom`, `/dev/tty` and `/dev/console`, and the reads and writes of the memory-like
//! ones. The last two open the console terminal ([`super::tty`]). The channels to other
//! kernels the host gave (`/dev/pvmux/NAME`) open as [`super::channel`] files, the disks
//! attached to this kernel (`/dev/vda`, ... made and removed as disks come and go) as
//! [`super::blockdev`] files.
//!
//! The ramfs has no device inodes, so [`init`] creates empty regular files at the `/dev`
//! paths and records their inode numbers: opening one of those inodes (by any path) gives the
//! device, and `stat` reports it as a character device with the Linux device number.

use alloc::vec::Vec;

use crate::fs::ramfs::{oflag, FileType, Ino};
use crate::fs::Errno;
use crate::irq::IrqLock;

/// The device kinds backed by a `/dev` node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dev {
    /// `/dev/null`: reads end at once, writes vanish.
    Null,
    /// `/dev/zero`: reads give zeros, writes vanish.
    Zero,
    /// `/dev/full`: reads give zeros, writes fail with `ENOSPC`.
    Full,
    /// `/dev/random`: random bytes (never blocks, like Linux since 5.6 once seeded).
    Random,
    /// `/dev/urandom`: random bytes.
    URandom,
    /// `/dev/tty`: the controlling terminal (the console).
    Tty,
    /// `/dev/console`: the console.
    Console,
    /// `/dev/pvmux/NAME`: channel `index` to another kernel ([`super::channel`]).
    Channel(u8),
    /// `/dev/vdX`: the disk in slot `n` (a block device, [`super::blockdev`]).
    Disk(u8),
}

/// Linux's virtio-blk major number as most distribution kernels get it (the block major is
/// dynamic: 254 on a machine with no device-mapper loaded first, 253 otherwise), and the
/// minors each disk takes (a whole disk and 15 partitions: `vdb` is minor 16).
pub(crate) const VIRTBLK_MAJOR: u32 = 254;
/// Minors per disk.
pub(crate) const VIRTBLK_MINORS: u32 = 16;

impl Dev {
    /// Every device, with its name under `/dev`.
    const ALL: [(Dev, &'static [u8]); 7] = [
        (Dev::Null, b"null"),
        (Dev::Zero, b"zero"),
        (Dev::Full, b"full"),
        (Dev::Random, b"random"),
        (Dev::URandom, b"urandom"),
        (Dev::Tty, b"tty"),
        (Dev::Console, b"console"),
    ];

    /// Linux (major, minor).
    pub(crate) const fn number(self) -> (u32, u32) {
        match self {
            Self::Null => (1, 3),
            Self::Zero => (1, 5),
            Self::Full => (1, 7),
            Self::Random => (1, 8),
            Self::URandom => (1, 9),
            Self::Tty => (5, 0),
            Self::Console => (5, 1),
            // Linux's range for local use.
            Self::Channel(i) => (240, i as u32),
            Self::Disk(n) => (VIRTBLK_MAJOR, n as u32 * VIRTBLK_MINORS),
        }
    }

    /// True for a block device (`S_IFBLK`), false for a character device.
    pub(crate) const fn is_block(self) -> bool {
        matches!(self, Self::Disk(_))
    }

    /// Permission bits of the node.
    const fn perm(self) -> u32 {
        match self {
            Self::Console => 0o600,
            Self::Disk(_) => 0o660,
            _ => 0o666,
        }
    }
}

/// `st_rdev` encoding of (major, minor) (Linux `new_encode_dev`).
pub(crate) fn encode_dev((major, minor): (u32, u32)) -> u64 {
    u64::from(minor & 0xff) | (u64::from(major) << 8) | (u64::from(minor & !0xff) << 12)
}

/// The name of `dev` under `/dev`.
pub(crate) fn name(dev: Dev) -> &'static [u8] {
    Dev::ALL
        .iter()
        .find(|(d, _)| *d == dev)
        .map_or(&b"null"[..], |(_, n)| n)
}

/// The memory-like device or console `/dev/NAME` names (a hand-over record's descriptor).
pub(crate) fn by_path(path: &[u8]) -> Option<Dev> {
    let name = path.strip_prefix(b"/dev/")?;
    Dev::ALL.iter().find(|(_, n)| *n == name).map(|(d, _)| *d)
}

/// Device nodes created by [`init`]: (inode, device).
static NODES: IrqLock<Vec<(Ino, Dev)>> = IrqLock::new(Vec::new());

/// Creates `/dev`, `/dev/shm` and the device nodes (keeping any that exist as regular files),
/// and records their inodes. Idempotent; call after the initramfs is unpacked.
pub(crate) fn init() {
    use crate::fs::ramfs::ROOT_INO;
    let nodes = crate::fs::with_real_root(|fs| {
        let _ = fs.mkdir(ROOT_INO, b"/dev", 0o755);
        let _ = fs.mkdir(ROOT_INO, b"/dev/shm", 0o1777);
        let mut nodes = Vec::new();
        for (dev, name) in Dev::ALL {
            let mut path = b"/dev/".to_vec();
            path.extend_from_slice(name);
            let ino = match fs.lookup(ROOT_INO, &path, false) {
                Ok(ino) => ino,
                Err(_) => {
                    let flags = oflag::O_CREAT | oflag::O_EXCL | oflag::O_WRONLY;
                    match fs.open(ROOT_INO, &path, flags, dev.perm()) {
                        Ok(h) => {
                            let ino = fs.fstat(h).map(|st| st.ino);
                            let _ = fs.close(h);
                            match ino {
                                Ok(ino) => ino,
                                Err(_) => continue,
                            }
                        }
                        Err(_) => continue,
                    }
                }
            };
            match fs.stat_ino(ino) {
                Ok(st) if st.file_type() == FileType::Regular && st.size == 0 => {
                    let _ = fs.set_meta(ino, dev.perm(), None, None);
                    nodes.push((ino, dev));
                }
                _ => {}
            }
        }
        for (i, name) in channel_names().enumerate() {
            if let Some(ino) = channel_node(fs, name) {
                nodes.push((ino, Dev::Channel(i as u8)));
            }
        }
        nodes
    });
    // The disks' nodes come and go with the disks (`add_disk_node`), maybe before this.
    let mut all = NODES.lock();
    all.retain(|&(_, d)| matches!(d, Dev::Disk(_)));
    all.extend(nodes);
}

/// The channels the host gave, in index order (at most `MAX_CHANNELS`).
fn channel_names() -> impl Iterator<Item = &'static [u8]> {
    crate::boot::try_args()
        .into_iter()
        .flat_map(|a| a.channels())
        .take(pvmux_hypercalls::channel::MAX_CHANNELS as usize)
}

/// The name of channel `index` (empty if there is none).
pub(crate) fn channel_name(index: u8) -> &'static [u8] {
    channel_names().nth(usize::from(index)).unwrap_or(b"")
}

/// Makes `/dev/pvmux/NAME` (an empty regular file recorded as the device node; an existing
/// empty regular file of that name is taken over, anything else left alone).
fn channel_node(fs: &mut crate::fs::Fs, name: &[u8]) -> Option<Ino> {
    use crate::fs::ramfs::ROOT_INO;
    let _ = fs.mkdir(ROOT_INO, b"/dev/pvmux", 0o755);
    let mut path = b"/dev/pvmux/".to_vec();
    path.extend_from_slice(name);
    let ino = match fs.lookup(ROOT_INO, &path, false) {
        Ok(ino) => ino,
        Err(_) => {
            let flags = oflag::O_CREAT | oflag::O_EXCL | oflag::O_WRONLY;
            let h = fs.open(ROOT_INO, &path, flags, 0o666).ok()?;
            let ino = fs.fstat(h).map(|st| st.ino);
            let _ = fs.close(h);
            ino.ok()?
        }
    };
    match fs.stat_ino(ino) {
        Ok(st) if st.file_type() == FileType::Regular && st.size == 0 => {
            let _ = fs.set_meta(ino, 0o666, None, None);
            Some(ino)
        }
        _ => None,
    }
}

/// The name of disk `slot` (`vda`, `vdb`, ...).
pub(crate) fn disk_name(slot: u32) -> [u8; 3] {
    [b'v', b'd', b'a' + (slot % 26) as u8]
}

/// Makes `/dev/vdX` for disk `slot` (group `disk`, mode 0660, as udev does). The name is
/// this kernel's: whatever held it (an empty file of an initramfs, or the host's own node
/// seen through `--rootfs /`, which stays untouched on the host) is replaced. Call outside
/// the VFS lock.
pub(crate) fn add_disk_node(slot: u32) {
    use crate::fs::ramfs::ROOT_INO;
    let dev = Dev::Disk(slot as u8);
    if node_ino(dev).is_some() {
        return;
    }
    let mut path = b"/dev/".to_vec();
    path.extend_from_slice(&disk_name(slot));
    let ino = crate::fs::with_real_root(|fs| {
        let _ = fs.mkdir(ROOT_INO, b"/dev", 0o755);
        let reuse = match fs.lookup(ROOT_INO, &path, false) {
            Ok(ino) => match fs.stat_ino(ino) {
                Ok(st) if st.file_type() == FileType::Regular && st.size == 0 => Some(ino),
                _ => {
                    fs.unlink(ROOT_INO, &path).ok()?;
                    None
                }
            },
            Err(_) => None,
        };
        let ino = match reuse {
            Some(ino) => ino,
            None => {
                let flags = oflag::O_CREAT | oflag::O_EXCL | oflag::O_WRONLY;
                let h = fs.open(ROOT_INO, &path, flags, dev.perm()).ok()?;
                let ino = fs.fstat(h).map(|st| st.ino);
                let _ = fs.close(h);
                ino.ok()?
            }
        };
        // Group 6 is `disk` on Debian-like systems.
        let _ = fs.set_meta(ino, dev.perm(), Some((0, 6)), None);
        Some(ino)
    });
    if let Some(ino) = ino {
        NODES.lock().push((ino, dev));
    }
}

/// Forgets which inode is disk `slot`'s node (a hand-over's carried tree has its own), so
/// that [`add_disk_node`] finds it again.
pub(crate) fn forget_disk_node(slot: u32) {
    let dev = Dev::Disk(slot as u8);
    NODES.lock().retain(|&(_, d)| d != dev);
}

/// Removes disk `slot`'s `/dev/vdX` (the disk left this kernel). Call outside the VFS
/// lock.
pub(crate) fn remove_disk_node(slot: u32) {
    use crate::fs::ramfs::ROOT_INO;
    let dev = Dev::Disk(slot as u8);
    let Some(ino) = node_ino(dev) else {
        return;
    };
    NODES.lock().retain(|&(_, d)| d != dev);
    let mut path = b"/dev/".to_vec();
    path.extend_from_slice(&disk_name(slot));
    crate::fs::with_real_root(|fs| {
        if fs.lookup(ROOT_INO, &path, false) == Ok(ino) {
            let _ = fs.unlink(ROOT_INO, &path);
        }
    });
}

/// The device behind inode `ino`, if it is one of the `/dev` nodes.
pub(crate) fn node(ino: Ino) -> Option<Dev> {
    NODES
        .lock()
        .iter()
        .find(|&&(i, _)| i == ino)
        .map(|&(_, d)| d)
}

/// The inode of device `dev`'s node, if it exists.
pub(crate) fn node_ino(dev: Dev) -> Option<Ino> {
    NODES
        .lock()
        .iter()
        .find(|&&(_, d)| d == dev)
        .map(|&(i, _)| i)
}

/// Reads `buf.len()` bytes from a memory-like device.
pub(crate) fn read(dev: Dev, buf: &mut [u8]) -> usize {
    match dev {
        Dev::Null => 0,
        Dev::Zero | Dev::Full => {
            buf.fill(0);
            buf.len()
        }
        Dev::Random | Dev::URandom => {
            super::random::fill(buf);
            buf.len()
        }
        // Never reached: terminals open as console files, channels as channel files,
        // disks as block files (an `O_PATH` descriptor cannot read).
        Dev::Tty | Dev::Console | Dev::Channel(_) | Dev::Disk(_) => 0,
    }
}

/// Writes to a memory-like device: the count written.
pub(crate) fn write(dev: Dev, len: usize) -> Result<usize, Errno> {
    match dev {
        Dev::Full => Err(Errno::ENOSPC),
        // Never reached (an `O_PATH` descriptor cannot write).
        Dev::Channel(_) | Dev::Disk(_) => Err(Errno::EBADF),
        _ => Ok(len),
    }
}
