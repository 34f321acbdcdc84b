//! The block-device layer: [`BlockDev`] (512-byte sectors; the kernel's is the disk ring,
//! `fs::disk`; tests use memory) and a small write-back buffer cache of filesystem blocks
//! ([`Cache`]). Metadata goes through the cache; file data of whole, uncached block runs goes
//! straight to the device ([`Cache::read_direct`], [`Cache::write_direct`]).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::fs::errno::Errno::{self, *};

/// Bytes per sector.
pub(crate) const SECTOR: u64 = 512;

/// A block device of 512-byte sectors. Every error is the device's (an I/O error, `EIO`;
/// a write to a read-only disk, `EROFS`).
pub(crate) trait BlockDev: Send {
    /// Its size in sectors.
    fn sectors(&self) -> u64;
    /// Reads `buf.len() / 512` sectors from `sector`.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Writes `buf.len() / 512` sectors at `sector`.
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), Errno>;
    /// Makes everything written so far durable.
    fn flush(&mut self) -> Result<(), Errno>;
}

/// One cached block.
struct Buf {
    data: Vec<u8>,
    dirty: bool,
    used: u64,
}

/// A write-back cache of `bs`-byte blocks over a [`BlockDev`]: at most `cap` blocks; the least
/// recently used is written back (if dirty) and dropped to make room.
pub(crate) struct Cache<D: BlockDev> {
    pub(crate) dev: D,
    bs: usize,
    cap: usize,
    clock: u64,
    bufs: BTreeMap<u64, Buf>,
}

impl<D: BlockDev> Cache<D> {
    /// A cache of `cap` blocks of `bs` bytes.
    pub(crate) fn new(dev: D, bs: usize, cap: usize) -> Self {
        Self {
            dev,
            bs,
            cap: cap.max(8),
            clock: 0,
            bufs: BTreeMap::new(),
        }
    }

    fn sector_of(&self, blk: u64) -> u64 {
        blk * (self.bs as u64 / SECTOR)
    }

    /// Whether block `blk` is inside the device.
    fn check(&self, blk: u64, n: u64) -> Result<(), Errno> {
        let end = blk
            .checked_add(n)
            .and_then(|e| e.checked_mul(self.bs as u64 / SECTOR))
            .ok_or(EUCLEAN)?;
        if end > self.dev.sectors() {
            return Err(EUCLEAN);
        }
        Ok(())
    }

    fn evict(&mut self) -> Result<(), Errno> {
        while self.bufs.len() >= self.cap {
            let Some((&victim, _)) = self.bufs.iter().min_by_key(|(_, b)| b.used) else {
                break;
            };
            if let Some(b) = self.bufs.remove(&victim) {
                if b.dirty {
                    let s = self.sector_of(victim);
                    self.dev.write(s, &b.data)?;
                }
            }
        }
        Ok(())
    }

    fn load(&mut self, blk: u64, zero: bool) -> Result<&mut Buf, Errno> {
        self.clock += 1;
        let now = self.clock;
        if !self.bufs.contains_key(&blk) {
            self.check(blk, 1)?;
            self.evict()?;
            let mut data = Vec::new();
            data.try_reserve_exact(self.bs).map_err(|_| ENOMEM)?;
            data.resize(self.bs, 0);
            if !zero {
                let s = self.sector_of(blk);
                self.dev.read(s, &mut data)?;
            }
            self.bufs.insert(
                blk,
                Buf {
                    data,
                    dirty: zero,
                    used: now,
                },
            );
        }
        let b = self.bufs.get_mut(&blk).ok_or(EIO)?;
        b.used = now;
        Ok(b)
    }

    /// Block `blk`'s bytes.
    pub(crate) fn get(&mut self, blk: u64) -> Result<&[u8], Errno> {
        Ok(&self.load(blk, false)?.data)
    }

    /// Block `blk`'s bytes, to change (written back later).
    pub(crate) fn get_mut(&mut self, blk: u64) -> Result<&mut [u8], Errno> {
        let b = self.load(blk, false)?;
        b.dirty = true;
        Ok(&mut b.data)
    }

    /// Block `blk` zeroed (not read), to change.
    pub(crate) fn zeroed(&mut self, blk: u64) -> Result<&mut [u8], Errno> {
        let b = self.load(blk, true)?;
        b.data.fill(0);
        b.dirty = true;
        Ok(&mut b.data)
    }

    /// Forgets block `blk` (freed: its bytes no longer matter).
    pub(crate) fn forget(&mut self, blk: u64) {
        self.bufs.remove(&blk);
    }

    /// Reads `n` blocks from `blk` into `out` (`n * bs` bytes): cached blocks from the
    /// cache, the rest in one device request when none of them is cached.
    pub(crate) fn read_direct(&mut self, blk: u64, n: u64, out: &mut [u8]) -> Result<(), Errno> {
        self.check(blk, n)?;
        let cached = self.bufs.range(blk..blk + n).next().is_some();
        if !cached {
            let s = self.sector_of(blk);
            return self.dev.read(s, out);
        }
        for (i, chunk) in out.chunks_mut(self.bs).enumerate() {
            let b = self.get(blk + i as u64)?;
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        Ok(())
    }

    /// Writes `n` whole blocks from `blk` (`data` is `n * bs` bytes) straight to the device;
    /// cached copies are updated.
    pub(crate) fn write_direct(&mut self, blk: u64, n: u64, data: &[u8]) -> Result<(), Errno> {
        self.check(blk, n)?;
        let bs = self.bs;
        for (i, chunk) in data.chunks(bs).enumerate() {
            if let Some(b) = self.bufs.get_mut(&(blk + i as u64)) {
                b.data.copy_from_slice(chunk);
                b.dirty = false;
            }
        }
        let s = self.sector_of(blk);
        self.dev.write(s, data)
    }

    /// Writes every dirty block back (in block order) and flushes the device.
    pub(crate) fn sync(&mut self) -> Result<(), Errno> {
        let mut first_err = None;
        let ratio = self.bs as u64 / SECTOR;
        for (&blk, b) in self.bufs.iter_mut() {
            if b.dirty {
                match self.dev.write(blk * ratio, &b.data) {
                    Ok(()) => b.dirty = false,
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        self.dev.flush()
    }

    /// Drops every clean block (after an error, so that nothing stale is trusted).
    pub(crate) fn drop_clean(&mut self) {
        self.bufs.retain(|_, b| b.dirty);
    }
}
