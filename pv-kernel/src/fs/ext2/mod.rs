//! An ext2 filesystem, read and write, over a [`BlockDev`] (`pvmux run --disk`,
//! docs/MULTIKERNEL.md "Devices and who owns them").
//!
//! The filesystem answers the volume protocol's path operations ([`Ext2Volume`] is a
//! [`VolumeHost`]): a disk is mounted like a `--volume`, and the guest's VFS (lazy directory
//! listing, Linux's rules at mount points, open-file semantics) is the volumes'. Paths are
//! walked from the root inode on every operation (symbolic links are never followed here;
//! the VFS resolves them).
//!
//! What it does: regular files (direct, indirect, double and triple indirect blocks; sparse
//! files; sizes past 2 GiB with `large_file`), directories (linear; an htree index is
//! dropped on the first change, as Linux's ext2 does), fast and slow symbolic links, create,
//! unlink, hard links, rename (across directories, replacing), mkdir, rmdir, truncate, chmod,
//! utimes; block and inode bitmaps and the group and superblock counters. What it refuses: images
//! with incompatible features other than `filetype` (`EINVAL` at mount), and writes to
//! images with read-only-compatible features other than `sparse_super` and `large_file`
//! (mounted read-only). Owners are kept: a new file, directory or symbolic link gets its
//! creator's filesystem ids ([`VolumeReq::owner`]), `chown` changes them
//! ([`Ext2::set_owner`]). Hard links ([`Ext2::link`]) count in the inode's links; every stat
//! states the link count and the inode number (`HostfsEntry::links`, `ino`), from which the
//! VFS knows two names of one file.
//!
//! Nothing read from the image is trusted: every block number must lie inside the
//! filesystem, every inode number inside the inode table, every directory record inside its
//! block; a violation is `EUCLEAN` (Linux's `EFSCORRUPTED`), a device error `EIO`. Neither
//! ever panics or loops: walks are bounded by the sizes the image states, themselves checked.
//!
//! Metadata is written back from the cache ([`cache::Cache`]) on `FSYNC`, on [`Ext2::sync`]
//! (unmount, `disk move`) and when the cache evicts; file data of whole blocks goes to the
//! device at once. A clean unmount sets the superblock's "clean" state; a read-write mount
//! clears it (so `e2fsck` checks an image a dead guest left).

pub(crate) mod cache;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;

use pvmux_hypercalls::hostfs::{self as abi, HostfsEntry};
use pvmux_hypercalls::volume::{flag, op, PERM_MASK, UTIME_OMIT};

use self::cache::{BlockDev, Cache, SECTOR};
use super::errno::Errno::{self, *};
use super::ramfs::{VolumeBuf, VolumeHost, VolumeReq};

const MAGIC: u16 = 0xef53;
const ROOT: u32 = 2;
const LINK_MAX: u16 = 32000;
const NDIR: usize = 12;
/// `i_flags`: the directory has an htree index.
const INDEX_FL: u32 = 0x1000;
/// Incompatible features understood: `filetype`.
const INCOMPAT_FILETYPE: u32 = 0x2;
/// Read-only-compatible features understood for writing: `sparse_super`, `large_file`.
const RO_COMPAT_OK: u32 = 0x1 | 0x2;
const RO_COMPAT_LARGE_FILE: u32 = 0x2;
/// Mode type bits.
const S_IFMT: u16 = 0o170000;
const S_IFREG: u16 = 0o100000;
const S_IFDIR: u16 = 0o040000;
const S_IFLNK: u16 = 0o120000;
/// Blocks the cache keeps.
const CACHE_BLOCKS: usize = 256;
/// Longest file this implementation writes (the triple-indirect limit of 1 KiB blocks is
/// about 16 GiB; larger blocks are capped here).
const MAX_SIZE: u64 = 1 << 40;

fn le16(b: &[u8], o: usize) -> u16 {
    b.get(o..o + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}
fn le32(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
fn put16(b: &mut [u8], o: usize, v: u16) {
    if let Some(s) = b.get_mut(o..o + 2) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}
fn put32(b: &mut [u8], o: usize, v: u32) {
    if let Some(s) = b.get_mut(o..o + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

fn vec_zeroed(n: usize) -> Result<Vec<u8>, Errno> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| ENOMEM)?;
    v.resize(n, 0);
    Ok(v)
}

/// One block group's descriptor (the fields ext2 uses).
#[derive(Clone, Copy, Debug, Default)]
struct Group {
    block_bitmap: u32,
    inode_bitmap: u32,
    inode_table: u32,
    free_blocks: u16,
    free_inodes: u16,
    used_dirs: u16,
}

/// An inode's on-disk bytes (`inode_size` of them).
#[derive(Clone, Debug)]
struct Inode {
    raw: Vec<u8>,
}

impl Inode {
    fn mode(&self) -> u16 {
        le16(&self.raw, 0)
    }
    fn kind(&self) -> u16 {
        self.mode() & S_IFMT
    }
    fn is_dir(&self) -> bool {
        self.kind() == S_IFDIR
    }
    fn size(&self) -> u64 {
        let hi = if self.kind() == S_IFREG {
            u64::from(le32(&self.raw, 108))
        } else {
            0
        };
        u64::from(le32(&self.raw, 4)) | hi << 32
    }
    fn set_size(&mut self, s: u64) {
        put32(&mut self.raw, 4, s as u32);
        if self.kind() == S_IFREG {
            put32(&mut self.raw, 108, (s >> 32) as u32);
        }
    }
    fn links(&self) -> u16 {
        le16(&self.raw, 26)
    }
    fn set_links(&mut self, n: u16) {
        put16(&mut self.raw, 26, n);
    }
    fn blocks512(&self) -> u32 {
        le32(&self.raw, 28)
    }
    fn set_blocks512(&mut self, n: u32) {
        put32(&mut self.raw, 28, n);
    }
    fn flags(&self) -> u32 {
        le32(&self.raw, 32)
    }
    fn block(&self, i: usize) -> u32 {
        le32(&self.raw, 40 + 4 * i)
    }
    fn set_block(&mut self, i: usize, b: u32) {
        put32(&mut self.raw, 40 + 4 * i, b);
    }
    fn uid(&self) -> u32 {
        u32::from(le16(&self.raw, 2)) | u32::from(le16(&self.raw, 120)) << 16
    }
    fn gid(&self) -> u32 {
        u32::from(le16(&self.raw, 24)) | u32::from(le16(&self.raw, 122)) << 16
    }
    fn mtime(&self) -> u32 {
        le32(&self.raw, 16)
    }
    fn file_acl(&self) -> u32 {
        le32(&self.raw, 104)
    }
    /// A symbolic link whose target is in `i_block` (no data block).
    fn is_fast_symlink(&self) -> bool {
        self.kind() == S_IFLNK && self.blocks512() == 0 && self.size() < 60
    }
}

/// The file type byte of a directory record for inode mode `mode`.
fn dirent_type(mode: u16) -> u8 {
    match mode & S_IFMT {
        S_IFREG => 1,
        S_IFDIR => 2,
        0o020000 => 3,
        0o060000 => 4,
        0o010000 => 5,
        0o140000 => 6,
        S_IFLNK => 7,
        _ => 0,
    }
}

/// The space a directory record with an `n`-byte name needs.
const fn rec_need(n: usize) -> usize {
    (8 + n + 3) & !3
}

/// One directory record found in a block.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// The directory block (filesystem block number) and the record's offset in it.
    blk: u64,
    off: usize,
    /// The previous record in the same block (`None` for the first).
    prev: Option<usize>,
    ino: u32,
}

/// An ext2 filesystem on a block device.
pub(crate) struct Ext2<D: BlockDev> {
    c: Cache<D>,
    sb: Vec<u8>,
    groups: Vec<Group>,
    bs: u64,
    inode_size: usize,
    ipg: u32,
    bpg: u32,
    first_data: u32,
    blocks: u32,
    inodes: u32,
    filetype: bool,
    read_only: bool,
    extra_isize: u16,
    /// The group descriptors or superblock changed since the last write-back.
    meta_dirty: bool,
    /// Seconds since the epoch, for timestamps.
    now: fn() -> u32,
}

impl<D: BlockDev> Ext2<D> {
    /// Mounts the filesystem on `dev` (`read_only`: no change is ever written; forced when
    /// the image has read-only-compatible features this code does not write). `EINVAL` if
    /// `dev` holds no ext2 filesystem this code understands, `EUCLEAN` if its superblock or
    /// group descriptors are inconsistent.
    pub(crate) fn mount(dev: D, read_only: bool, now: fn() -> u32) -> Result<Self, Errno> {
        let mut dev = dev;
        let sectors = dev.sectors();
        if sectors < 4 {
            return Err(EINVAL);
        }
        let mut sb = vec_zeroed(1024)?;
        dev.read(2, &mut sb)?;
        if le16(&sb, 56) != MAGIC {
            return Err(EINVAL);
        }
        let log = le32(&sb, 24);
        if log > 2 {
            return Err(EINVAL);
        }
        let bs = 1024u64 << log;
        let rev = le32(&sb, 76);
        let (inode_size, first_ino) = if rev == 0 {
            (128, 11)
        } else {
            (usize::from(le16(&sb, 88)), le32(&sb, 84))
        };
        let incompat = if rev == 0 { 0 } else { le32(&sb, 96) };
        let ro_compat = if rev == 0 { 0 } else { le32(&sb, 100) };
        if incompat & !INCOMPAT_FILETYPE != 0 {
            return Err(EINVAL);
        }
        let read_only = read_only || ro_compat & !RO_COMPAT_OK != 0;
        let blocks = le32(&sb, 4);
        let inodes = le32(&sb, 0);
        let first_data = le32(&sb, 20);
        let bpg = le32(&sb, 32);
        let ipg = le32(&sb, 40);
        let ok = inode_size >= 128
            && inode_size.is_power_of_two()
            && inode_size as u64 <= bs
            && bpg > 0
            && bpg as u64 <= bs * 8
            && ipg > 0
            && ipg as u64 <= bs * 8
            && first_ino > ROOT
            && first_data == u32::from(bs == 1024)
            && blocks > first_data
            && u64::from(blocks) * (bs / SECTOR) <= sectors;
        if !ok {
            return Err(EUCLEAN);
        }
        let ngroups = (blocks - first_data).div_ceil(bpg);
        if u64::from(ngroups) * u64::from(ipg) < u64::from(inodes)
            || u64::from(inodes) > u64::from(ngroups) * u64::from(ipg)
        {
            return Err(EUCLEAN);
        }
        let mut fs = Self {
            c: Cache::new(dev, bs as usize, CACHE_BLOCKS),
            sb,
            groups: Vec::new(),
            bs,
            inode_size,
            ipg,
            bpg,
            first_data,
            blocks,
            inodes,
            filetype: incompat & INCOMPAT_FILETYPE != 0,
            read_only,
            extra_isize: 0,
            meta_dirty: false,
            now,
        };
        if inode_size > 128 {
            fs.extra_isize = le16(&fs.sb, 0x15e).clamp(4, 32) & !3;
        }
        let itable_blocks = (u64::from(ipg) * inode_size as u64).div_ceil(bs);
        let gdt = u64::from(first_data) + 1;
        for g in 0..u64::from(ngroups) {
            let off = g * 32;
            let blk = gdt + off / bs;
            let b = fs.c.get(blk)?;
            let o = (off % bs) as usize;
            let gr = Group {
                block_bitmap: le32(b, o),
                inode_bitmap: le32(b, o + 4),
                inode_table: le32(b, o + 8),
                free_blocks: le16(b, o + 12),
                free_inodes: le16(b, o + 14),
                used_dirs: le16(b, o + 16),
            };
            let inside =
                |x: u32, n: u64| x >= first_data && u64::from(x) + n <= u64::from(blocks) && x > 0;
            if !inside(gr.block_bitmap, 1)
                || !inside(gr.inode_bitmap, 1)
                || !inside(gr.inode_table, itable_blocks)
            {
                return Err(EUCLEAN);
            }
            fs.groups.push(gr);
        }
        let root = fs.inode(ROOT)?;
        if !root.is_dir() {
            return Err(EUCLEAN);
        }
        if !fs.read_only {
            // Not clean while mounted read-write.
            let st = le16(&fs.sb, 58);
            put16(&mut fs.sb, 58, st & !1);
            let t = (fs.now)();
            put32(&mut fs.sb, 44, t);
            fs.meta_dirty = true;
            fs.sync()?;
        }
        Ok(fs)
    }

    /// Whether changes are refused.
    pub(crate) fn read_only(&self) -> bool {
        self.read_only
    }

    /// The block device (for its owner to take back after [`Self::unmount`]).
    #[cfg(test)]
    pub(crate) fn into_dev(self) -> D {
        self.c.dev
    }

    /// Writes everything back and flushes the device.
    pub(crate) fn sync(&mut self) -> Result<(), Errno> {
        if self.read_only {
            return Ok(());
        }
        if self.meta_dirty {
            self.write_meta()?;
        }
        let r = self.c.sync();
        if r.is_err() {
            self.c.drop_clean();
        }
        r
    }

    /// Syncs and marks the filesystem clean (unmount).
    pub(crate) fn unmount(&mut self) -> Result<(), Errno> {
        if self.read_only {
            return Ok(());
        }
        let st = le16(&self.sb, 58);
        put16(&mut self.sb, 58, st | 1);
        put32(&mut self.sb, 48, (self.now)());
        self.meta_dirty = true;
        self.sync()
    }

    fn write_meta(&mut self) -> Result<(), Errno> {
        let (fb, fi) = self.groups.iter().fold((0u32, 0u32), |(b, i), g| {
            (b + u32::from(g.free_blocks), i + u32::from(g.free_inodes))
        });
        put32(&mut self.sb, 12, fb);
        put32(&mut self.sb, 16, fi);
        put32(&mut self.sb, 48, (self.now)());
        // The superblock lives at byte 1024.
        let (blk, off) = if self.bs == 1024 { (1, 0) } else { (0, 1024) };
        let sb = core::mem::take(&mut self.sb);
        let b = self.c.get_mut(blk);
        if let Ok(b) = b {
            b[off..off + 1024].copy_from_slice(&sb);
        }
        self.sb = sb;
        let gdt = u64::from(self.first_data) + 1;
        for g in 0..self.groups.len() {
            let gr = self.groups[g];
            let off = g as u64 * 32;
            let b = self.c.get_mut(gdt + off / self.bs)?;
            let o = (off % self.bs) as usize;
            put32(b, o, gr.block_bitmap);
            put32(b, o + 4, gr.inode_bitmap);
            put32(b, o + 8, gr.inode_table);
            put16(b, o + 12, gr.free_blocks);
            put16(b, o + 14, gr.free_inodes);
            put16(b, o + 16, gr.used_dirs);
        }
        self.meta_dirty = false;
        Ok(())
    }

    fn writable(&self) -> Result<(), Errno> {
        if self.read_only {
            Err(EROFS)
        } else {
            Ok(())
        }
    }

    // ---- inodes ----

    fn inode_pos(&self, ino: u32) -> Result<(u64, usize), Errno> {
        if ino == 0 || ino > self.inodes {
            return Err(EUCLEAN);
        }
        let g = ((ino - 1) / self.ipg) as usize;
        let idx = u64::from((ino - 1) % self.ipg);
        let gr = self.groups.get(g).ok_or(EUCLEAN)?;
        let off = idx * self.inode_size as u64;
        Ok((
            u64::from(gr.inode_table) + off / self.bs,
            (off % self.bs) as usize,
        ))
    }

    fn inode(&mut self, ino: u32) -> Result<Inode, Errno> {
        let (blk, off) = self.inode_pos(ino)?;
        let n = self.inode_size;
        let b = self.c.get(blk)?;
        let mut raw = Vec::new();
        raw.try_reserve_exact(n).map_err(|_| ENOMEM)?;
        raw.extend_from_slice(b.get(off..off + n).ok_or(EUCLEAN)?);
        Ok(Inode { raw })
    }

    fn put_inode(&mut self, ino: u32, i: &Inode) -> Result<(), Errno> {
        let (blk, off) = self.inode_pos(ino)?;
        let n = self.inode_size;
        let b = self.c.get_mut(blk)?;
        b.get_mut(off..off + n)
            .ok_or(EUCLEAN)?
            .copy_from_slice(&i.raw);
        Ok(())
    }

    /// A live inode (links > 0, a known type).
    fn live(&mut self, ino: u32) -> Result<Inode, Errno> {
        let i = self.inode(ino)?;
        if i.links() == 0 || !matches!(i.kind(), S_IFREG | S_IFDIR | S_IFLNK) && i.mode() == 0 {
            return Err(EUCLEAN);
        }
        if i.is_dir() && !i.size().is_multiple_of(self.bs) {
            return Err(EUCLEAN);
        }
        Ok(i)
    }

    fn stat(&mut self, ino: u32) -> Result<HostfsEntry, Errno> {
        let i = self.live(ino)?;
        Ok(self.entry(ino, &i))
    }

    /// The volume protocol's stat of inode `ino` (with its link count and number).
    fn entry(&self, ino: u32, i: &Inode) -> HostfsEntry {
        HostfsEntry {
            links: i.links(),
            ino,
            size: i.size(),
            mtime_ns: u64::from(i.mtime()) * 1_000_000_000,
            perm: u32::from(i.mode() & 0o7777),
            uid: i.uid(),
            gid: i.gid(),
            kind: match i.kind() {
                S_IFDIR => abi::kind::DIR,
                S_IFREG => abi::kind::REG,
                S_IFLNK => abi::kind::SYMLINK,
                _ => abi::kind::OTHER,
            },
            ..HostfsEntry::default()
        }
    }

    fn touch(&self, i: &mut Inode, m: bool, c: bool) {
        let t = (self.now)();
        if m {
            put32(&mut i.raw, 16, t);
        }
        if c {
            put32(&mut i.raw, 12, t);
        }
    }

    // ---- bitmaps ----

    fn group_blocks(&self, g: usize) -> u32 {
        let start = self.first_data + g as u32 * self.bpg;
        (self.blocks - start).min(self.bpg)
    }

    /// Finds and sets a clear bit of `bitmap` below `limit`, from `goal`.
    fn take_bit(&mut self, bitmap: u64, limit: u32, goal: u32) -> Result<Option<u32>, Errno> {
        let b = self.c.get_mut(bitmap)?;
        let limit = limit.min(b.len() as u32 * 8);
        for k in 0..limit {
            let bit = (goal + k) % limit;
            let (byte, m) = ((bit / 8) as usize, 1u8 << (bit % 8));
            if b[byte] & m == 0 {
                b[byte] |= m;
                return Ok(Some(bit));
            }
        }
        Ok(None)
    }

    fn clear_bit(&mut self, bitmap: u64, bit: u32) -> Result<bool, Errno> {
        let b = self.c.get_mut(bitmap)?;
        let (byte, m) = ((bit / 8) as usize, 1u8 << (bit % 8));
        let cell = b.get_mut(byte).ok_or(EUCLEAN)?;
        let was = *cell & m != 0;
        *cell &= !m;
        Ok(was)
    }

    /// Allocates a block, near `goal` if it can.
    fn alloc_block(&mut self, goal: u64) -> Result<u32, Errno> {
        let n = self.groups.len();
        let goal = goal.clamp(u64::from(self.first_data), u64::from(self.blocks) - 1);
        let g0 = ((goal - u64::from(self.first_data)) / u64::from(self.bpg)) as usize;
        for k in 0..n {
            let g = (g0 + k) % n;
            if self.groups[g].free_blocks == 0 {
                continue;
            }
            let bit_goal = if k == 0 {
                ((goal - u64::from(self.first_data)) % u64::from(self.bpg)) as u32
            } else {
                0
            };
            let limit = self.group_blocks(g);
            let bm = u64::from(self.groups[g].block_bitmap);
            if let Some(bit) = self.take_bit(bm, limit, bit_goal)? {
                self.groups[g].free_blocks -= 1;
                self.meta_dirty = true;
                let blk = self.first_data + g as u32 * self.bpg + bit;
                self.check_block(blk)?;
                return Ok(blk);
            }
        }
        Err(ENOSPC)
    }

    fn free_block(&mut self, blk: u32) -> Result<(), Errno> {
        self.check_block(blk)?;
        let rel = blk - self.first_data;
        let g = (rel / self.bpg) as usize;
        let bm = u64::from(self.groups.get(g).ok_or(EUCLEAN)?.block_bitmap);
        if self.clear_bit(bm, rel % self.bpg)? {
            self.groups[g].free_blocks = self.groups[g].free_blocks.saturating_add(1);
            self.meta_dirty = true;
        }
        self.c.forget(u64::from(blk));
        Ok(())
    }

    fn check_block(&self, blk: u32) -> Result<(), Errno> {
        if blk < self.first_data || blk >= self.blocks {
            return Err(EUCLEAN);
        }
        Ok(())
    }

    fn alloc_inode(&mut self, parent: u32, dir: bool) -> Result<u32, Errno> {
        let n = self.groups.len();
        let pg = ((parent - 1) / self.ipg) as usize;
        let start = if dir {
            // The group with the most free inodes.
            (0..n)
                .max_by_key(|&g| self.groups[g].free_inodes)
                .unwrap_or(0)
        } else {
            pg
        };
        let first_ino = if le32(&self.sb, 76) == 0 {
            11
        } else {
            le32(&self.sb, 84)
        };
        for k in 0..n {
            let g = (start + k) % n;
            if self.groups[g].free_inodes == 0 {
                continue;
            }
            let bm = u64::from(self.groups[g].inode_bitmap);
            let limit = self.ipg.min(self.inodes - g as u32 * self.ipg);
            // Reserved inodes of group 0 are never handed out.
            let goal = if g == 0 { first_ino - 1 } else { 0 };
            if let Some(bit) = self.take_bit(bm, limit, goal)? {
                let ino = g as u32 * self.ipg + bit + 1;
                if ino < first_ino {
                    // Wrapped into the reserved range: give it back.
                    self.clear_bit(bm, bit)?;
                    continue;
                }
                self.groups[g].free_inodes -= 1;
                if dir {
                    self.groups[g].used_dirs = self.groups[g].used_dirs.saturating_add(1);
                }
                self.meta_dirty = true;
                return Ok(ino);
            }
        }
        Err(ENOSPC)
    }

    fn free_inode(&mut self, ino: u32, dir: bool) -> Result<(), Errno> {
        let g = ((ino - 1) / self.ipg) as usize;
        let bm = u64::from(self.groups.get(g).ok_or(EUCLEAN)?.inode_bitmap);
        if self.clear_bit(bm, (ino - 1) % self.ipg)? {
            let gr = &mut self.groups[g];
            gr.free_inodes = gr.free_inodes.saturating_add(1);
            if dir {
                gr.used_dirs = gr.used_dirs.saturating_sub(1);
            }
            self.meta_dirty = true;
        }
        Ok(())
    }

    // ---- block maps ----

    fn per(&self) -> u64 {
        self.bs / 4
    }

    /// The filesystem block of file block `lblk` of `i` (0: a hole). With `alloc`, holes and
    /// missing indirect blocks are allocated (`i` changes; the caller writes it back); a
    /// newly allocated data block is returned with `true` (its bytes are not yet written).
    fn bmap(&mut self, i: &mut Inode, lblk: u64, alloc: bool) -> Result<(u32, bool), Errno> {
        let per = self.per();
        let goal = u64::from(i.block(0)).max(u64::from(self.first_data)) + lblk;
        let (root, path, levels) = if lblk < NDIR as u64 {
            let b = i.block(lblk as usize);
            if b != 0 {
                self.check_block(b)?;
                return Ok((b, false));
            }
            if !alloc {
                return Ok((0, false));
            }
            let nb = self.alloc_block(goal)?;
            i.set_block(lblk as usize, nb);
            i.set_blocks512(i.blocks512() + (self.bs / SECTOR) as u32);
            return Ok((nb, true));
        } else {
            let mut l = lblk - NDIR as u64;
            if l < per {
                (12, [l, 0, 0], 1)
            } else {
                l -= per;
                if l < per * per {
                    (13, [l / per, l % per, 0], 2)
                } else {
                    l -= per * per;
                    if l >= per * per * per {
                        return Err(EFBIG);
                    }
                    (14, [l / (per * per), (l / per) % per, l % per], 3)
                }
            }
        };
        let mut blk = i.block(root);
        let mut fresh = false;
        if blk == 0 {
            if !alloc {
                return Ok((0, false));
            }
            blk = self.alloc_block(goal)?;
            self.c.zeroed(u64::from(blk))?;
            i.set_block(root, blk);
            i.set_blocks512(i.blocks512() + (self.bs / SECTOR) as u32);
        }
        for (lvl, &idx) in path[..levels].iter().enumerate() {
            self.check_block(blk)?;
            let off = idx as usize * 4;
            let next = le32(self.c.get(u64::from(blk))?, off);
            if next != 0 {
                self.check_block(next)?;
                blk = next;
                continue;
            }
            if !alloc {
                return Ok((0, false));
            }
            let nb = self.alloc_block(goal)?;
            let last = lvl + 1 == levels;
            if !last {
                self.c.zeroed(u64::from(nb))?;
            } else {
                fresh = true;
            }
            put32(self.c.get_mut(u64::from(blk))?, off, nb);
            i.set_blocks512(i.blocks512() + (self.bs / SECTOR) as u32);
            blk = nb;
        }
        Ok((blk, fresh))
    }

    /// Frees the blocks of `i` from file block `keep` on (truncate).
    fn free_from(&mut self, i: &mut Inode, keep: u64) -> Result<(), Errno> {
        let bsec = (self.bs / SECTOR) as u32;
        for d in 0..NDIR {
            let b = i.block(d);
            if d as u64 >= keep && b != 0 {
                self.free_block(b)?;
                i.set_block(d, 0);
                i.set_blocks512(i.blocks512().saturating_sub(bsec));
            }
        }
        let per = self.per();
        let mut start = NDIR as u64;
        for (root, level) in [(12usize, 1u32), (13, 2), (14, 3)] {
            let span = per.pow(level);
            let b = i.block(root);
            if b != 0 && start + span > keep {
                let freed = self.free_tree(b, level, start, keep)?;
                i.set_blocks512(i.blocks512().saturating_sub(freed * bsec));
                if start >= keep || self.all_zero(b)? {
                    self.free_block(b)?;
                    i.set_block(root, 0);
                    i.set_blocks512(i.blocks512().saturating_sub(bsec));
                }
            }
            start += span;
        }
        Ok(())
    }

    fn all_zero(&mut self, blk: u32) -> Result<bool, Errno> {
        Ok(self.c.get(u64::from(blk))?.iter().all(|&x| x == 0))
    }

    /// Frees what indirect block `blk` (of `level`, mapping file blocks from `start`) maps
    /// from `keep` on; returns the blocks freed (not counting `blk`).
    fn free_tree(&mut self, blk: u32, level: u32, start: u64, keep: u64) -> Result<u32, Errno> {
        self.check_block(blk)?;
        let per = self.per();
        let span = per.pow(level - 1);
        let mut freed = 0u32;
        for k in 0..per {
            let sub = start + k * span;
            if sub + span <= keep {
                continue;
            }
            let e = le32(self.c.get(u64::from(blk))?, k as usize * 4);
            if e == 0 {
                continue;
            }
            if level > 1 {
                freed += self.free_tree(e, level - 1, sub, keep)?;
                if sub >= keep || self.all_zero(e)? {
                    self.free_block(e)?;
                    freed += 1;
                } else {
                    continue;
                }
            } else {
                self.free_block(e)?;
                freed += 1;
            }
            put32(self.c.get_mut(u64::from(blk))?, k as usize * 4, 0);
        }
        Ok(freed)
    }

    // ---- file data ----

    fn read_data(&mut self, i: &mut Inode, off: u64, out: &mut [u8]) -> Result<usize, Errno> {
        let size = i.size();
        if off >= size {
            return Ok(0);
        }
        let n = ((size - off) as usize).min(out.len());
        let bs = self.bs as usize;
        let mut done = 0;
        while done < n {
            let pos = off + done as u64;
            let lblk = pos / self.bs;
            let in_blk = (pos % self.bs) as usize;
            let (pb, _) = self.bmap(i, lblk, false)?;
            // A run of whole, contiguous blocks goes to the device in one request.
            if in_blk == 0 && n - done >= bs && pb != 0 {
                let mut run = 1u64;
                let max = ((n - done) / bs) as u64;
                while run < max.min(256) {
                    let (nb, _) = self.bmap(i, lblk + run, false)?;
                    if u64::from(nb) != u64::from(pb) + run {
                        break;
                    }
                    run += 1;
                }
                let len = run as usize * bs;
                self.c
                    .read_direct(u64::from(pb), run, &mut out[done..done + len])?;
                done += len;
                continue;
            }
            let take = (bs - in_blk).min(n - done);
            if pb == 0 {
                out[done..done + take].fill(0);
            } else {
                let b = self.c.get(u64::from(pb))?;
                out[done..done + take].copy_from_slice(&b[in_blk..in_blk + take]);
            }
            done += take;
        }
        Ok(n)
    }

    fn write_data(&mut self, i: &mut Inode, off: u64, data: &[u8]) -> Result<usize, Errno> {
        let end = off.checked_add(data.len() as u64).ok_or(EFBIG)?;
        let large = le32(&self.sb, 100) & RO_COMPAT_LARGE_FILE != 0;
        if end > MAX_SIZE || (!large && end > i32::MAX as u64) {
            return Err(EFBIG);
        }
        let bs = self.bs as usize;
        let mut done = 0;
        let mut err = None;
        while done < data.len() {
            let pos = off + done as u64;
            let lblk = pos / self.bs;
            let in_blk = (pos % self.bs) as usize;
            let take = (bs - in_blk).min(data.len() - done);
            let (pb, fresh) = match self.bmap(i, lblk, true) {
                Ok(x) => x,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            };
            let chunk = &data[done..done + take];
            let r = if take == bs {
                self.c.write_direct(u64::from(pb), 1, chunk)
            } else if fresh {
                self.c
                    .zeroed(u64::from(pb))
                    .map(|b| b[in_blk..in_blk + take].copy_from_slice(chunk))
            } else {
                self.c
                    .get_mut(u64::from(pb))
                    .map(|b| b[in_blk..in_blk + take].copy_from_slice(chunk))
            };
            if let Err(e) = r {
                err = Some(e);
                break;
            }
            done += take;
        }
        if off + done as u64 > i.size() {
            i.set_size(off + done as u64);
            if off + done as u64 > i32::MAX as u64 && !large {
                return Err(EFBIG);
            }
        }
        match (done, err) {
            (0, Some(e)) => Err(e),
            _ => Ok(done),
        }
    }

    fn truncate_inode(&mut self, i: &mut Inode, size: u64) -> Result<(), Errno> {
        let large = le32(&self.sb, 100) & RO_COMPAT_LARGE_FILE != 0;
        if size > MAX_SIZE || (!large && size > i32::MAX as u64) {
            return Err(EFBIG);
        }
        let old = i.size();
        if size < old {
            let keep = size.div_ceil(self.bs);
            self.free_from(i, keep)?;
            // Zero the rest of the last kept block, so that growing again reads zeros.
            let tail = (size % self.bs) as usize;
            if tail != 0 {
                let (pb, _) = self.bmap(i, size / self.bs, false)?;
                if pb != 0 {
                    self.c.get_mut(u64::from(pb))?[tail..].fill(0);
                }
            }
        }
        i.set_size(size);
        Ok(())
    }

    // ---- directories ----

    /// Calls `f` on each record of directory `dir` (with its block, offset, previous
    /// offset, inode, name, type) until it returns `Some`.
    fn scan<T>(
        &mut self,
        dir: &mut Inode,
        mut f: impl FnMut(Slot, &[u8], u8) -> Option<T>,
    ) -> Result<Option<T>, Errno> {
        let nblocks = dir.size() / self.bs;
        let bs = self.bs as usize;
        for lb in 0..nblocks {
            let (pb, _) = self.bmap(dir, lb, false)?;
            if pb == 0 {
                return Err(EUCLEAN);
            }
            let b = self.c.get(u64::from(pb))?;
            let mut off = 0usize;
            let mut prev = None;
            while off < bs {
                let ino = le32(b, off);
                let rec = usize::from(le16(b, off + 4));
                let nl = usize::from(b[off + 6]);
                let ty = b[off + 7];
                if rec < 8
                    || !rec.is_multiple_of(4)
                    || off + rec > bs
                    || (ino != 0 && rec_need(nl) > rec)
                {
                    return Err(EUCLEAN);
                }
                if ino != 0 {
                    let name = &b[off + 8..off + 8 + nl];
                    let s = Slot {
                        blk: u64::from(pb),
                        off,
                        prev,
                        ino,
                    };
                    if let Some(t) = f(s, name, ty) {
                        return Ok(Some(t));
                    }
                }
                prev = Some(off);
                off += rec;
            }
        }
        Ok(None)
    }

    fn find(&mut self, dir: &mut Inode, name: &[u8]) -> Result<Option<Slot>, Errno> {
        let r = self.scan(dir, |s, n, _| (n == name).then_some(s))?;
        if let Some(s) = r {
            if s.ino > self.inodes {
                return Err(EUCLEAN);
            }
        }
        Ok(r)
    }

    /// Resolves `path` (components relative to the root): the inode number, its parent's
    /// and the last name (the root is its own parent, with an empty name).
    fn walk(&mut self, path: &[u8]) -> Result<u32, Errno> {
        let mut ino = ROOT;
        for comp in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            let mut d = self.live(ino)?;
            if !d.is_dir() {
                return Err(ENOTDIR);
            }
            if comp.len() > 255 {
                return Err(ENAMETOOLONG);
            }
            ino = self.find(&mut d, comp)?.ok_or(ENOENT)?.ino;
        }
        Ok(ino)
    }

    /// The parent directory of `path` and its last component.
    fn walk_parent<'p>(&mut self, path: &'p [u8]) -> Result<(u32, &'p [u8]), Errno> {
        let trimmed = {
            let mut p = path;
            while let Some(r) = p.strip_suffix(b"/") {
                p = r;
            }
            p
        };
        let (dir, name) = match trimmed.iter().rposition(|&b| b == b'/') {
            Some(k) => (&trimmed[..k], &trimmed[k + 1..]),
            None => (&b""[..], trimmed),
        };
        if name.is_empty() {
            return Err(EBUSY);
        }
        if name == b"." || name == b".." {
            return Err(EINVAL);
        }
        if name.len() > 255 {
            return Err(ENAMETOOLONG);
        }
        let d = self.walk(dir)?;
        if !self.live(d)?.is_dir() {
            return Err(ENOTDIR);
        }
        Ok((d, name))
    }

    /// Adds record `name` -> `ino` (type from `mode`) to directory `dno`.
    fn add_entry(&mut self, dno: u32, name: &[u8], ino: u32, mode: u16) -> Result<(), Errno> {
        let mut d = self.live(dno)?;
        let need = rec_need(name.len());
        let ty = if self.filetype { dirent_type(mode) } else { 0 };
        let bs = self.bs as usize;
        // Room in an existing record?
        let nblocks = d.size() / self.bs;
        for lb in 0..nblocks {
            let (pb, _) = self.bmap(&mut d, lb, false)?;
            if pb == 0 {
                return Err(EUCLEAN);
            }
            let b = self.c.get(u64::from(pb))?;
            let mut off = 0;
            let mut place = None;
            while off < bs {
                let e = le32(b, off);
                let rec = usize::from(le16(b, off + 4));
                let nl = usize::from(b[off + 6]);
                if rec < 8 || !rec.is_multiple_of(4) || off + rec > bs {
                    return Err(EUCLEAN);
                }
                let used = if e == 0 { 0 } else { rec_need(nl) };
                if rec >= used + need {
                    place = Some((off, rec, used));
                    break;
                }
                off += rec;
            }
            if let Some((off, rec, used)) = place {
                let b = self.c.get_mut(u64::from(pb))?;
                let at = if used == 0 {
                    off
                } else {
                    put16(b, off + 4, used as u16);
                    off + used
                };
                let len = if used == 0 { rec } else { rec - used };
                write_rec(b, at, ino, len, name, ty);
                return self.dir_changed(dno, d);
            }
        }
        // A new block.
        let (pb, _) = self.bmap(&mut d, nblocks, true)?;
        let b = self.c.zeroed(u64::from(pb))?;
        write_rec(b, 0, ino, bs, name, ty);
        d.set_size(d.size() + self.bs);
        self.dir_changed(dno, d)
    }

    fn dir_changed(&mut self, dno: u32, mut d: Inode) -> Result<(), Errno> {
        let fl = d.flags();
        if fl & INDEX_FL != 0 {
            put32(&mut d.raw, 32, fl & !INDEX_FL);
        }
        self.touch(&mut d, true, true);
        self.put_inode(dno, &d)
    }

    fn remove_entry(&mut self, dno: u32, s: Slot) -> Result<(), Errno> {
        let d = self.live(dno)?;
        let b = self.c.get_mut(s.blk)?;
        match s.prev {
            Some(p) => {
                let merged = le16(b, p + 4) + le16(b, s.off + 4);
                put16(b, p + 4, merged);
            }
            None => put32(b, s.off, 0),
        }
        self.dir_changed(dno, d)
    }

    /// Points record `s` of directory `dno` at `ino`.
    fn retarget(&mut self, s: Slot, ino: u32, mode: u16) -> Result<(), Errno> {
        let ty = if self.filetype { dirent_type(mode) } else { 0 };
        let b = self.c.get_mut(s.blk)?;
        put32(b, s.off, ino);
        b[s.off + 7] = ty;
        Ok(())
    }

    fn dir_is_empty(&mut self, d: &mut Inode) -> Result<bool, Errno> {
        Ok(self
            .scan(d, |_, n, _| (n != b"." && n != b"..").then_some(()))?
            .is_none())
    }

    /// Drops one link of `ino`; frees it (blocks and inode) at zero.
    fn unlink_inode(&mut self, ino: u32, mut i: Inode) -> Result<(), Errno> {
        let dir = i.is_dir();
        let links = if dir { 0 } else { i.links().saturating_sub(1) };
        i.set_links(links);
        self.touch(&mut i, false, true);
        if links == 0 {
            if !i.is_fast_symlink() {
                self.free_from(&mut i, 0)?;
            }
            let acl = i.file_acl();
            if acl != 0 && self.check_block(acl).is_ok() {
                // A private extended-attribute block (refcount 1) goes with the inode.
                let rc = le32(self.c.get(u64::from(acl))?, 4);
                if rc <= 1 {
                    self.free_block(acl)?;
                    let n = i.blocks512().saturating_sub((self.bs / SECTOR) as u32);
                    i.set_blocks512(n);
                }
                put32(&mut i.raw, 104, 0);
            }
            i.set_size(0);
            put32(&mut i.raw, 20, (self.now)().max(1));
            self.put_inode(ino, &i)?;
            self.free_inode(ino, dir)?;
        } else {
            self.put_inode(ino, &i)?;
        }
        Ok(())
    }

    /// A new inode of `mode` in directory `dno` (not yet linked).
    fn new_inode(&mut self, dno: u32, mode: u16) -> Result<(u32, Inode), Errno> {
        let ino = self.alloc_inode(dno, mode & S_IFMT == S_IFDIR)?;
        let mut i = Inode {
            raw: vec_zeroed(self.inode_size)?,
        };
        put16(&mut i.raw, 0, mode);
        let t = (self.now)();
        put32(&mut i.raw, 8, t);
        put32(&mut i.raw, 12, t);
        put32(&mut i.raw, 16, t);
        i.set_links(1);
        if self.inode_size > 128 {
            put16(&mut i.raw, 128, self.extra_isize);
        }
        // The generation of the old inode, bumped.
        let old = self.inode(ino)?;
        put32(&mut i.raw, 100, le32(&old.raw, 100).wrapping_add(1));
        Ok((ino, i))
    }

    // ---- the operations ----

    fn lookup(&mut self, path: &[u8]) -> Result<HostfsEntry, Errno> {
        let ino = self.walk(path)?;
        self.stat(ino)
    }

    fn list(&mut self, path: &[u8], cookie: u64, buf: &mut [u8]) -> Result<u64, Errno> {
        let ino = self.walk(path)?;
        let mut d = self.live(ino)?;
        if !d.is_dir() {
            return Err(ENOTDIR);
        }
        // The entries first (inode, name), then their stats.
        let mut names: Vec<(u32, Vec<u8>)> = Vec::new();
        let mut k = 0u64;
        self.scan(&mut d, |s, n, _| {
            if n != b"." && n != b".." {
                if k >= cookie {
                    names.push((s.ino, n.to_vec()));
                }
                k += 1;
            }
            None::<()>
        })?;
        let mut pos = 0;
        for (ino, name) in names {
            let mut i = self.live(ino)?;
            let mut e = self.entry(ino, &i);
            let target = if i.kind() == S_IFLNK {
                let mut t = vec_zeroed(i.size().min(abi::TARGET_MAX as u64) as usize)?;
                let n = self.read_link(&mut i, &mut t)?;
                t.truncate(n);
                t
            } else {
                Vec::new()
            };
            e.name_len = name.len() as u16;
            e.target_len = target.len() as u16;
            if !abi::put_record(buf, &mut pos, &e, &name, &target) {
                if pos == 0 {
                    return Err(EINVAL);
                }
                break;
            }
        }
        Ok(pos as u64)
    }

    fn read_link(&mut self, i: &mut Inode, out: &mut [u8]) -> Result<usize, Errno> {
        if i.kind() != S_IFLNK {
            return Err(EINVAL);
        }
        if i.is_fast_symlink() {
            let n = (i.size() as usize).min(out.len());
            out[..n].copy_from_slice(&i.raw[40..40 + n]);
            return Ok(n);
        }
        if i.size() > self.bs {
            return Err(EUCLEAN);
        }
        self.read_data(i, 0, out)
    }

    fn create(&mut self, path: &[u8], mode: u32, excl: bool) -> Result<HostfsEntry, Errno> {
        let (dno, name) = self.walk_parent(path)?;
        let mut d = self.live(dno)?;
        if let Some(s) = self.find(&mut d, name)? {
            if excl {
                return Err(EEXIST);
            }
            let i = self.live(s.ino)?;
            return match i.kind() {
                S_IFREG => Ok(self.entry(s.ino, &i)),
                S_IFDIR => Err(EISDIR),
                _ => Err(EEXIST),
            };
        }
        self.writable()?;
        let m = S_IFREG | (mode & PERM_MASK) as u16;
        let (ino, i) = self.new_inode(dno, m)?;
        self.put_inode(ino, &i)?;
        if let Err(e) = self.add_entry(dno, name, ino, m) {
            self.free_inode(ino, false)?;
            return Err(e);
        }
        Ok(self.entry(ino, &i))
    }

    fn mkdir(&mut self, path: &[u8], mode: u32) -> Result<HostfsEntry, Errno> {
        let (dno, name) = self.walk_parent(path)?;
        let mut d = self.live(dno)?;
        if self.find(&mut d, name)?.is_some() {
            return Err(EEXIST);
        }
        self.writable()?;
        if d.links() >= LINK_MAX {
            return Err(EMLINK);
        }
        let m = S_IFDIR | (mode & PERM_MASK) as u16;
        let (ino, mut i) = self.new_inode(dno, m)?;
        i.set_links(2);
        let blk = match self.bmap(&mut i, 0, true) {
            Ok((b, _)) => b,
            Err(e) => {
                self.free_inode(ino, true)?;
                return Err(e);
            }
        };
        let ty = if self.filetype { 2 } else { 0 };
        let bs = self.bs as usize;
        let b = self.c.zeroed(u64::from(blk))?;
        write_rec(b, 0, ino, 12, b".", ty);
        write_rec(b, 12, dno, bs - 12, b"..", ty);
        i.set_size(self.bs);
        self.put_inode(ino, &i)?;
        if let Err(e) = self.add_entry(dno, name, ino, m) {
            self.free_from(&mut i, 0)?;
            self.free_inode(ino, true)?;
            return Err(e);
        }
        let mut d = self.live(dno)?;
        d.set_links(d.links() + 1);
        self.put_inode(dno, &d)?;
        Ok(self.entry(ino, &i))
    }

    fn symlink(&mut self, path: &[u8], target: &[u8]) -> Result<HostfsEntry, Errno> {
        let (dno, name) = self.walk_parent(path)?;
        let mut d = self.live(dno)?;
        if self.find(&mut d, name)?.is_some() {
            return Err(EEXIST);
        }
        self.writable()?;
        if target.is_empty() {
            return Err(ENOENT);
        }
        if target.len() as u64 >= self.bs {
            return Err(ENAMETOOLONG);
        }
        let m = S_IFLNK | 0o777;
        let (ino, mut i) = self.new_inode(dno, m)?;
        if target.len() < 60 {
            i.raw[40..40 + target.len()].copy_from_slice(target);
            i.set_size(target.len() as u64);
        } else if let Err(e) = self.write_data(&mut i, 0, target) {
            self.free_from(&mut i, 0)?;
            self.free_inode(ino, false)?;
            return Err(e);
        }
        self.put_inode(ino, &i)?;
        if let Err(e) = self.add_entry(dno, name, ino, m) {
            if !i.is_fast_symlink() {
                self.free_from(&mut i, 0)?;
            }
            self.free_inode(ino, false)?;
            return Err(e);
        }
        Ok(self.entry(ino, &i))
    }

    fn unlink(&mut self, path: &[u8], dir: bool) -> Result<(), Errno> {
        let (dno, name) = self.walk_parent(path)?;
        let mut d = self.live(dno)?;
        let s = self.find(&mut d, name)?.ok_or(ENOENT)?;
        let mut i = self.live(s.ino)?;
        match (dir, i.is_dir()) {
            (false, true) => return Err(EISDIR),
            (true, false) => return Err(ENOTDIR),
            (true, true) if !self.dir_is_empty(&mut i)? => return Err(ENOTEMPTY),
            _ => {}
        }
        self.writable()?;
        self.remove_entry(dno, s)?;
        if dir {
            let mut d = self.live(dno)?;
            d.set_links(d.links().saturating_sub(1).max(2));
            self.put_inode(dno, &d)?;
        }
        self.unlink_inode(s.ino, i)
    }

    fn rename(&mut self, from: &[u8], to: &[u8], noreplace: bool) -> Result<(), Errno> {
        let (fdno, fname) = self.walk_parent(from)?;
        let (tdno, tname) = self.walk_parent(to)?;
        let mut fd = self.live(fdno)?;
        let fs = self.find(&mut fd, fname)?.ok_or(ENOENT)?;
        let src = self.live(fs.ino)?;
        let mut td = self.live(tdno)?;
        let ts = self.find(&mut td, tname)?;
        if let Some(t) = ts {
            if t.ino == fs.ino {
                return Ok(());
            }
            if noreplace {
                return Err(EEXIST);
            }
        }
        // A directory cannot move into itself or below.
        if src.is_dir() && fdno != tdno {
            let mut up = tdno;
            for _ in 0..4096 {
                if up == fs.ino {
                    return Err(EINVAL);
                }
                if up == ROOT {
                    break;
                }
                let mut ud = self.live(up)?;
                up = self.find(&mut ud, b"..")?.ok_or(EUCLEAN)?.ino;
            }
        }
        let victim = match ts {
            Some(t) => {
                let mut v = self.live(t.ino)?;
                match (src.is_dir(), v.is_dir()) {
                    (true, false) => return Err(ENOTDIR),
                    (false, true) => return Err(EISDIR),
                    (true, true) if !self.dir_is_empty(&mut v)? => return Err(ENOTEMPTY),
                    _ => {}
                }
                Some((t, v))
            }
            None => None,
        };
        self.writable()?;
        if src.is_dir() && fdno != tdno && victim.is_none() && td.links() >= LINK_MAX {
            return Err(EMLINK);
        }
        // Add the new name (or retarget the old record), then drop the old name.
        match &victim {
            Some((t, _)) => self.retarget(*t, fs.ino, src.mode())?,
            None => self.add_entry(tdno, tname, fs.ino, src.mode())?,
        }
        let mut fd = self.live(fdno)?;
        let fs2 = self.find(&mut fd, fname)?.ok_or(EUCLEAN)?;
        self.remove_entry(fdno, fs2)?;
        if let Some((t, v)) = victim {
            if v.is_dir() {
                let mut d = self.live(tdno)?;
                d.set_links(d.links().saturating_sub(1).max(2));
                self.put_inode(tdno, &d)?;
            }
            self.unlink_inode(t.ino, v)?;
        }
        if src.is_dir() && fdno != tdno {
            let mut s = self.live(fs.ino)?;
            let dd = self.find(&mut s, b"..")?.ok_or(EUCLEAN)?;
            self.retarget(dd, tdno, S_IFDIR)?;
            let mut f = self.live(fdno)?;
            f.set_links(f.links().saturating_sub(1).max(2));
            self.put_inode(fdno, &f)?;
            let mut t = self.live(tdno)?;
            t.set_links(t.links() + 1);
            self.put_inode(tdno, &t)?;
        }
        let mut s = self.live(fs.ino)?;
        self.touch(&mut s, false, true);
        self.put_inode(fs.ino, &s)
    }

    /// A new name `to` for the non-directory `from` (`link(2)`): `EPERM` for a directory,
    /// `EEXIST` if `to` exists, `EMLINK` at ext2's 32000 links, `EROFS` on a read-only
    /// mount. The link count and the inode's change time go up; the new name's directory
    /// changes as for a create. The new stat.
    pub(crate) fn link(&mut self, from: &[u8], to: &[u8]) -> Result<HostfsEntry, Errno> {
        let ino = self.walk(from)?;
        let i = self.live(ino)?;
        if i.is_dir() {
            return Err(EPERM);
        }
        let (dno, name) = self.walk_parent(to)?;
        let mut d = self.live(dno)?;
        if self.find(&mut d, name)?.is_some() {
            return Err(EEXIST);
        }
        self.writable()?;
        if i.links() >= LINK_MAX {
            return Err(EMLINK);
        }
        self.add_entry(dno, name, ino, i.mode())?;
        // Read again: the directory's change may have moved the cache's blocks.
        let mut i = self.live(ino)?;
        i.set_links(i.links() + 1);
        self.touch(&mut i, false, true);
        self.put_inode(ino, &i)?;
        Ok(self.entry(ino, &i))
    }

    /// Performs one volume-protocol request.
    pub(crate) fn call(
        &mut self,
        req: &VolumeReq<'_>,
        buf: VolumeBuf<'_>,
    ) -> Result<(u64, HostfsEntry), Errno> {
        let none = HostfsEntry::default();
        if pvmux_hypercalls::volume::writes(req.op) && self.read_only {
            // Refused before anything is looked at (the VFS checks too).
            return Err(EROFS);
        }
        match req.op {
            op::LOOKUP => Ok((0, self.lookup(req.path)?)),
            op::LIST => match buf {
                VolumeBuf::Out(b) => Ok((self.list(req.path, req.offset, b)?, none)),
                _ => Err(EINVAL),
            },
            op::READ => {
                let ino = self.walk(req.path)?;
                let mut i = self.live(ino)?;
                if i.kind() != S_IFREG {
                    return Err(if i.is_dir() { EISDIR } else { EINVAL });
                }
                match buf {
                    VolumeBuf::Out(b) => Ok((self.read_data(&mut i, req.offset, b)? as u64, none)),
                    _ => Err(EINVAL),
                }
            }
            op::WRITE => {
                let ino = self.walk(req.path)?;
                let mut i = self.live(ino)?;
                if i.kind() != S_IFREG {
                    return Err(if i.is_dir() { EISDIR } else { EINVAL });
                }
                let data = match buf {
                    VolumeBuf::In(b) => b,
                    VolumeBuf::None => &[][..],
                    VolumeBuf::Out(_) => return Err(EINVAL),
                };
                let r = self.write_data(&mut i, req.offset, data);
                self.touch(&mut i, true, true);
                self.put_inode(ino, &i)?;
                let n = r?;
                Ok((n as u64, self.entry(ino, &i)))
            }
            op::CREATE => {
                let excl = req.flags & flag::EXCL != 0;
                let e = self.create(req.path, req.mode, excl)?;
                match req.owner {
                    Some((u, g)) if excl => Ok((0, self.set_owner(req.path, u, g)?)),
                    _ => Ok((0, e)),
                }
            }
            op::MKDIR => {
                let e = self.mkdir(req.path, req.mode)?;
                match req.owner {
                    Some((u, g)) => Ok((0, self.set_owner(req.path, u, g)?)),
                    None => Ok((0, e)),
                }
            }
            op::UNLINK => self.unlink(req.path, false).map(|()| (0, none)),
            op::RMDIR => self.unlink(req.path, true).map(|()| (0, none)),
            op::RENAME => self
                .rename(req.path, req.path2, req.flags & flag::NOREPLACE != 0)
                .map(|()| (0, none)),
            op::TRUNCATE => {
                let ino = self.walk(req.path)?;
                let mut i = self.live(ino)?;
                if i.kind() != S_IFREG {
                    return Err(if i.is_dir() { EISDIR } else { EINVAL });
                }
                self.truncate_inode(&mut i, req.offset)?;
                self.touch(&mut i, true, true);
                self.put_inode(ino, &i)?;
                Ok((0, self.entry(ino, &i)))
            }
            op::SYMLINK => {
                let e = self.symlink(req.path, req.path2)?;
                match req.owner {
                    Some((u, g)) => Ok((0, self.set_owner(req.path, u, g)?)),
                    None => Ok((0, e)),
                }
            }
            op::READLINK => {
                let ino = self.walk(req.path)?;
                let mut i = self.live(ino)?;
                match buf {
                    VolumeBuf::Out(b) => Ok((self.read_link(&mut i, b)? as u64, none)),
                    _ => Err(EINVAL),
                }
            }
            op::CHMOD => {
                let ino = self.walk(req.path)?;
                let mut i = self.live(ino)?;
                let m = (i.mode() & S_IFMT) | (req.mode & PERM_MASK) as u16;
                put16(&mut i.raw, 0, m);
                self.touch(&mut i, false, true);
                self.put_inode(ino, &i)?;
                Ok((0, self.entry(ino, &i)))
            }
            op::UTIMES => {
                let ino = self.walk(req.path)?;
                let mut i = self.live(ino)?;
                if req.atime != UTIME_OMIT {
                    put32(&mut i.raw, 8, (req.atime / 1_000_000_000) as u32);
                }
                if req.mtime != UTIME_OMIT {
                    put32(&mut i.raw, 16, (req.mtime / 1_000_000_000) as u32);
                }
                self.touch(&mut i, false, true);
                self.put_inode(ino, &i)?;
                Ok((0, self.entry(ino, &i)))
            }
            op::FSYNC => {
                self.walk(req.path)?;
                self.sync().map(|()| (0, none))
            }
            _ => Err(EINVAL),
        }
    }
}

impl<D: BlockDev> Ext2<D> {
    /// Sets the owner of `path` (`chown`, and a new object's owner): the new stat.
    pub(crate) fn set_owner(
        &mut self,
        path: &[u8],
        uid: u32,
        gid: u32,
    ) -> Result<HostfsEntry, Errno> {
        self.writable()?;
        let ino = self.walk(path)?;
        let mut i = self.live(ino)?;
        put16(&mut i.raw, 2, uid as u16);
        put16(&mut i.raw, 120, (uid >> 16) as u16);
        put16(&mut i.raw, 24, gid as u16);
        put16(&mut i.raw, 122, (gid >> 16) as u16);
        self.touch(&mut i, false, true);
        self.put_inode(ino, &i)?;
        Ok(self.entry(ino, &i))
    }
}

fn write_rec(b: &mut [u8], off: usize, ino: u32, rec: usize, name: &[u8], ty: u8) {
    put32(b, off, ino);
    put16(b, off + 4, rec as u16);
    b[off + 6] = name.len() as u8;
    b[off + 7] = ty;
    b[off + 8..off + 8 + name.len()].copy_from_slice(name);
}

/// A mounted disk as a volume: its filesystem behind a lock.
pub(crate) struct Ext2Volume<D: BlockDev> {
    pub(crate) fs: spin::Mutex<Ext2<D>>,
}

impl<D: BlockDev> VolumeHost for Ext2Volume<D> {
    fn call(
        &self,
        _vol: u32,
        req: &VolumeReq<'_>,
        buf: VolumeBuf<'_>,
    ) -> Result<(u64, HostfsEntry), Errno> {
        let mut fs = self.fs.lock();
        let r = fs.call(req, buf);
        if matches!(r, Err(EIO)) {
            fs.c.drop_clean();
        }
        r
    }

    fn chown(
        &self,
        _vol: u32,
        path: &[u8],
        uid: u32,
        gid: u32,
    ) -> Result<Option<HostfsEntry>, Errno> {
        self.fs.lock().set_owner(path, uid, gid).map(Some)
    }

    fn link(&self, _vol: u32, from: &[u8], to: &[u8]) -> Result<HostfsEntry, Errno> {
        self.fs.lock().link(from, to)
    }
}
