//! The memory map of a guest address space ([`Mm`]): its regions ([`Vma`]), its user pages
//! (a pool frame each, possibly copy-on-write), and the queue of operations ([`UserOp`]) that
//! tell the user sandbox to realise changes, taken in numbered batches. Pure bookkeeping over
//! the pool allocator: it runs unchanged in the host unit tests (`tests.rs`).
//!
//! Every change queues an operation and bumps the map's generation ([`MapGeneration`]); a
//! frame whose mapping is removed is released only once the operations taken up to then have
//! been applied ([`Mm::take_batch`] hands such frames out with the last batch). After `fork`
//! ([`Mm::fork_into`]) the private pages of both spaces are copy-on-write; shared anonymous
//! regions map the same object's frames in both.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;

use pvmux_hypercalls::frame::pf;
use pvmux_hypercalls::user::{in_user_window, op, prot, UserOp, USER_OPS_MAX};
use pvmux_hypercalls::PAGE_SIZE;

use super::graveyard::alloc_reclaiming;
use crate::linux::imagecache::{CachedFile, READ_AHEAD_CHUNKS, TAG_CHUNK};
use crate::linux::shmem::ShmRef;
use crate::linux::{pool, Errno};
use crate::mm::pool_mem;

/// Pages mapped around an anonymous fault (aligned block, inside the region).
const FAULT_AROUND: u64 = 16;
/// Pages mapped from the start of a fault's aligned block when the page just before that
/// block is resident already (private memory filled in order, as a fresh buffer or a growing
/// heap is): fewer faults and host `mmap` calls per page, at most 48 pages ahead of the
/// program's writes.
const FAULT_AROUND_SEQUENTIAL: u64 = 64;
/// Lowest address `mmap` places a mapping at by itself.
const MMAP_FLOOR: u64 = 0x1000_0000;

/// `v` rounded up to a page (`None` on overflow).
fn page_up(v: u64) -> Option<u64> {
    v.checked_add(PAGE_SIZE - 1).map(|x| x & !(PAGE_SIZE - 1))
}

/// A mapped region `[start, end)`.
#[derive(Clone, Debug)]
pub(crate) struct Vma {
    /// End (exclusive).
    pub(crate) end: u64,
    /// `PROT_*` bits.
    pub(crate) prot: u32,
    /// `MAP_SHARED` anonymous memory: the object whose pages the region maps, shared (not
    /// copy-on-write) with every other region of it, in this space or another.
    pub(crate) shm: Option<ShmRef>,
    /// The file the region maps, if any (what `/proc/PID/maps` names).
    pub(crate) file: Option<MapFile>,
    /// What `fork` does with it (`madvise`).
    pub(crate) on_fork: OnFork,
}

/// What `fork` does with a region: `MADV_DONTFORK` leaves it out of the child (`skip`),
/// `MADV_WIPEONFORK` gives the child the region with none of its pages (`wipe`: zeros, for
/// private anonymous memory only). `skip` wins when both are set, as on Linux.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct OnFork {
    /// Not copied into a `fork` child.
    pub(crate) skip: bool,
    /// Copied empty.
    pub(crate) wipe: bool,
}

/// The file a region maps, as `/proc/PID/maps` shows it.
#[derive(Clone, Debug)]
pub(crate) struct MapFile {
    /// The path it was mapped by (or a name such as `/memfd:x (deleted)`).
    pub(crate) path: Arc<[u8]>,
    /// Its inode number.
    pub(crate) ino: u64,
    /// The file offset of the region's first byte.
    pub(crate) offset: u64,
    /// A `mmap` of a regular file: touching a page wholly past the file's end is `SIGBUS`
    /// (`BUS_ADRERR`), as on Linux (`linux/fault.rs`). Not a program's segments, whose
    /// `.bss` pages past the file's end are the loader's zero pages.
    pub(crate) bus_past_eof: bool,
    /// The program image the region's untouched pages come from, if any (a program's
    /// segments, a host ELF file's private mappings): see [`ImageMap`].
    pub(crate) image: Option<ImageMap>,
}

/// Where the pages of a region of a private file mapping come from while the map does not
/// hold them: the file's cached image ([`CachedFile`]), read lazily. A page of the region
/// at file offset `fo` (the region's [`MapFile::offset`] plus its distance from the
/// region's start) with `lo <= fo < hi` is, at its first touch, the image's frame for `fo`,
/// copy-on-write, its 64 KiB chunk read (or checked, for a space created at `since`) first
/// ([`CachedFile::ensure`]); other pages are demand-zero.
#[derive(Clone)]
pub(crate) struct ImageMap {
    /// The image.
    pub(crate) file: Arc<CachedFile>,
    /// First file offset backed (page aligned).
    pub(crate) lo: u64,
    /// End of the file offsets backed (page aligned, whole pages of the file only).
    pub(crate) hi: u64,
    /// Creation time of the space the mapping was made for (`Space::created_ns`).
    pub(crate) since: u64,
}

impl core::fmt::Debug for ImageMap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ImageMap")
            .field("ino", &self.file.ino())
            .field("lo", &self.lo)
            .field("hi", &self.hi)
            .finish()
    }
}

impl MapFile {
    /// The same file seen `by` bytes further on.
    pub(crate) fn advanced(&self, by: u64) -> Self {
        Self {
            offset: self.offset.saturating_add(by),
            ..self.clone()
        }
    }
}

impl Vma {
    /// The part of this region (which starts at `start`) from `at` on.
    fn tail(&self, start: u64, at: u64) -> Self {
        Self {
            end: self.end,
            prot: self.prot,
            shm: self.shm.as_ref().map(|s| s.advanced(at - start)),
            file: self.file.as_ref().map(|f| f.advanced(at - start)),
            on_fork: self.on_fork,
        }
    }

    /// The shared object seen from `va` of this region (which starts at `start`), if any.
    pub(crate) fn shm_at(&self, start: u64, va: u64) -> Option<ShmRef> {
        self.shm.as_ref().map(|s| s.advanced(va - start))
    }

    /// True if `next`, which starts at `next_start` where this region (starting at `start`)
    /// ends, continues it as Linux's `vma_merge` would join the two: the same rights, and
    /// the same shared object, or file and program image, at contiguous offsets (or neither).
    fn continued_by(&self, start: u64, next: &Vma, next_start: u64) -> bool {
        let by = next_start - start;
        let shm = match (&self.shm, &next.shm) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                Arc::ptr_eq(&a.obj, &b.obj) && a.pgoff + by / PAGE_SIZE == b.pgoff
            }
            _ => false,
        };
        let file = match (&self.file, &next.file) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                let image = match (&a.image, &b.image) {
                    (None, None) => true,
                    (Some(x), Some(y)) => {
                        Arc::ptr_eq(&x.file, &y.file)
                            && (x.lo, x.hi, x.since) == (y.lo, y.hi, y.since)
                    }
                    _ => false,
                };
                image
                    && a.ino == b.ino
                    && a.path == b.path
                    && a.bus_past_eof == b.bus_past_eof
                    && a.offset.checked_add(by) == Some(b.offset)
            }
            _ => false,
        };
        self.end == next_start
            && self.prot == next.prot
            && self.on_fork == next.on_fork
            && shm
            && file
    }

    /// The program image and file offset page `va` of this region (which starts at `start`)
    /// comes from while the map does not hold it ([`ImageMap`]), if any.
    fn image_at(&self, start: u64, va: u64) -> Option<(&ImageMap, u64)> {
        if self.shm.is_some() {
            return None;
        }
        let f = self.file.as_ref()?;
        let img = f.image.as_ref()?;
        let fo = f.offset.checked_add(va - start)?;
        (img.lo <= fo && fo < img.hi).then_some((img, fo))
    }
}

/// One user page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pte {
    /// Pool frame.
    gpa: u64,
    /// Shared with another space after `fork`: the first write copies it.
    cow: bool,
    /// In the map but not yet mapped in the sandbox: a `fork` child's copy of its parent's
    /// page, mapped (with the other such pages of its block) at its first fault
    /// ([`Mm::map_lazy_around`]) rather than all at once before the child first runs.
    lazy: bool,
}

/// The memory map of a space (under its lock).
pub(crate) struct Mm {
    vmas: BTreeMap<u64, Vma>,
    pages: BTreeMap<u64, Pte>,
    ops: Vec<UserOp>,
    /// Frames to release once the queued operations have been applied.
    deferred: Vec<u64>,
    /// Start of the heap (`brk` cannot go below).
    pub(crate) brk_base: u64,
    /// Current program break.
    pub(crate) brk: u64,
    /// Next top-down `mmap` placement hint.
    pub(crate) mmap_top: u64,
    /// Bumped by every change to the page map or the regions (each one queues an op), not
    /// by a fault that only re-sends a mapping the sandbox should already have: see
    /// [`MapGeneration`].
    generation: u64,
    /// Number of the last batch of operations taken from `ops` (`UserSlot::ops_seq`).
    ops_seq: u64,
    /// The next free cell of the space's syscall-site patch table (`linux/patch.rs`): 0 no
    /// table yet, `u32::MAX` none possible (the program mapped something there).
    pub(crate) patch_next: u32,
}

/// Operations taken from a space's queue for one request.
#[derive(Debug)]
pub(crate) struct Batch {
    /// The operations (at most a slot's worth, [`USER_OPS_MAX`]).
    pub(crate) ops: Vec<UserOp>,
    /// Its number, or with no operations the number of the last batch taken before.
    pub(crate) seq: u64,
    /// More operations are queued after these.
    pub(crate) more: bool,
    /// Frames to release once the request has come back (with the last batch only).
    pub(crate) freed: Vec<u64>,
}

/// A version of a space's memory map, returned by [`Mm::fault`]: two faults of a thread at
/// one address that come back with the same generation mean nothing at all changed in the
/// address space in between — the handler found the page already resolved both times and
/// only re-sent its mapping — so the sandbox is not honouring that mapping (a fault loop).
/// A fault that repeats *with* changes in between is progress: e.g. a parent that forks in a
/// loop write-faults at the same stack slot after every `fork` (each time a new
/// copy-on-write break).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct MapGeneration(u64);

/// Memory use of a space (for the out-of-memory killer and `getrusage`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MemUsage {
    /// Bytes mapped (all regions).
    pub(crate) mapped: u64,
    /// Resident pages of private memory.
    pub(crate) private_pages: usize,
    /// Resident pages of shared memory.
    pub(crate) shared_pages: usize,
}

impl Mm {
    /// An empty map.
    pub(crate) fn new() -> Self {
        Self {
            vmas: BTreeMap::new(),
            pages: BTreeMap::new(),
            ops: Vec::new(),
            deferred: Vec::new(),
            brk_base: 0,
            brk: 0,
            mmap_top: crate::linux::exec::MMAP_TOP,
            generation: 0,
            ops_seq: 0,
            patch_next: 0,
        }
    }

    /// Takes the next batch of queued operations (at most a slot's worth).
    pub(crate) fn take_batch(&mut self) -> Batch {
        let n = self.ops.len().min(USER_OPS_MAX);
        let ops: Vec<UserOp> = self.ops.drain(..n).collect();
        if n > 0 {
            self.ops_seq += 1;
        }
        let more = !self.ops.is_empty();
        // The frames queued for release so far are unmapped by the operations taken up to
        // now: once this batch (and so every earlier one) is applied, they are unused.
        let freed = if more {
            Vec::new()
        } else {
            core::mem::take(&mut self.deferred)
        };
        Batch {
            ops,
            seq: self.ops_seq,
            more,
            freed,
        }
    }

    /// The region containing `va`.
    pub(crate) fn vma_at(&self, va: u64) -> Option<(u64, Vma)> {
        let (&s, v) = self.vmas.range(..=va).next_back()?;
        (va < v.end).then(|| (s, v.clone()))
    }

    /// Whether the page at `va` is mapped from a host file window (`linux/window.rs`).
    pub(crate) fn maps_window_page(&self, va: u64) -> bool {
        self.pages
            .get(&(va & !(PAGE_SIZE - 1)))
            .is_some_and(|p| pvmux_hypercalls::window::slot_of(p.gpa).is_some())
    }

    /// For a fault at `va` on a page the map does not hold, inside a `mmap` of a file
    /// ([`MapFile::bus_past_eof`]): the file's inode and the page's file offset.
    pub(crate) fn file_page_to_fill(&self, va: u64) -> Option<(u64, u64)> {
        let page = va & !(PAGE_SIZE - 1);
        if self.pages.contains_key(&page) {
            return None;
        }
        let (&s, v) = self.vmas.range(..=page).next_back()?;
        let f = v.file.as_ref().filter(|f| page < v.end && f.bus_past_eof)?;
        Some((f.ino, f.offset.saturating_add(page - s)))
    }

    /// The program image and file offset that page `va` comes from at its first touch
    /// ([`ImageMap`]), if the map does not hold it yet and its region takes it from one.
    pub(crate) fn image_source(&self, va: u64) -> Option<(&Arc<CachedFile>, u64)> {
        let page = va & !(PAGE_SIZE - 1);
        if self.pages.contains_key(&page) {
            return None;
        }
        let (&s, v) = self.vmas.range(..=page).next_back()?;
        if page >= v.end {
            return None;
        }
        v.image_at(s, page).map(|(img, fo)| (&img.file, fo))
    }

    /// Makes the pages of `[start, end)` that the map does not hold come from `image` at
    /// their first touch: the regions there (named files, made by one `mmap`) get it as
    /// their [`MapFile::image`]. False (nothing changed) if a region there has no file name.
    pub(crate) fn set_image(&mut self, start: u64, end: u64, image: &ImageMap) -> bool {
        let named = self
            .vmas
            .range(..end)
            .filter(|(_, v)| v.end > start)
            .all(|(_, v)| v.file.is_some() && v.shm.is_none());
        if !named {
            return false;
        }
        for (_, v) in self.vmas.range_mut(..end) {
            if v.end > start {
                if let Some(f) = v.file.as_mut() {
                    f.image = Some(image.clone());
                }
            }
        }
        true
    }

    /// True if `[start, end)` overlaps no region.
    pub(crate) fn is_free(&self, start: u64, end: u64) -> bool {
        if let Some((_, v)) = self.vmas.range(..end).next_back() {
            if v.end > start {
                return false;
            }
        }
        true
    }

    /// Queues a change of the sandbox's mappings (a new [`MapGeneration`]).
    fn push_op(&mut self, kind: u32, prot_bits: u32, addr: u64, len: u64, offset: u64) {
        self.generation += 1;
        self.push_op_again(kind, prot_bits, addr, len, offset);
    }

    /// Queues an operation that changes nothing in the map: it re-sends what the sandbox
    /// should already have (see [`Mm::fault`]).
    fn push_op_again(&mut self, kind: u32, prot_bits: u32, addr: u64, len: u64, offset: u64) {
        if let Some(last) = self.ops.last_mut() {
            let contiguous = last.kind == kind
                && last.prot == prot_bits
                && last.addr + last.len == addr
                && (kind == op::UNMAP || kind == op::PROTECT || last.offset + last.len == offset);
            if contiguous {
                last.len += len;
                return;
            }
        }
        self.ops.push(UserOp {
            kind,
            prot: prot_bits,
            addr,
            len,
            offset,
        });
    }

    fn map_prot(vma: &Vma, pte: &Pte) -> u32 {
        let mut p = vma.prot & prot::ALL;
        if pte.cow {
            p &= !prot::WRITE;
        }
        if p != 0 {
            p |= prot::READ;
        }
        p
    }

    /// Queues a mapping of the page at `va` with the rights `vma` and `pte` allow.
    fn queue_map(&mut self, va: u64, vma: &Vma, pte: &Pte) {
        let p = Self::map_prot(vma, pte);
        self.push_op(op::MAP, p, va, PAGE_SIZE, pte.gpa);
    }

    /// As [`Mm::queue_map`], for a page a fault resolves (the program touches it next, or
    /// its block): `MAP_POPULATE`, so the host fills the page-table entries of the whole
    /// run in the one `mmap` instead of taking a host page fault per page when the program
    /// touches them (≈2.8 µs each in a nested VM, ≈1 µs per page populated in blocks of 16;
    /// tools' micro-benchmark in docs/BENCHMARKS.md).
    fn queue_map_populated(&mut self, va: u64, vma: &Vma, pte: &Pte) {
        let p = Self::map_prot(vma, pte);
        self.push_op(op::MAP_POPULATE, p, va, PAGE_SIZE, pte.gpa);
    }

    /// Queues a change of the rights of the page at `va`, which the sandbox maps already (to
    /// the same frame), to those `vma` and `pte` allow.
    fn queue_protect(&mut self, va: u64, vma: &Vma, pte: &Pte) {
        let p = Self::map_prot(vma, pte);
        self.push_op(op::PROTECT, p, va, PAGE_SIZE, 0);
    }

    /// Adds a region (the range must be free), mapping the shared object `shm` if given.
    /// Pages are populated on demand.
    pub(crate) fn add_vma(&mut self, start: u64, end: u64, prot_bits: u32, shm: Option<ShmRef>) {
        self.vmas.insert(
            start,
            Vma {
                end,
                prot: prot_bits,
                shm,
                file: None,
                on_fork: OnFork::default(),
            },
        );
    }

    /// Joins the regions that cover `[start, end)` into one where Linux's map would hold one
    /// region (it merges neighbours that continue each other, [`Vma::continued_by`]; this
    /// map keeps each `mmap`'s, `brk`'s or split's region apart). True if `[start, end)`
    /// then lies in a single region. Bookkeeping only: no page or mapping changes.
    pub(crate) fn coalesce(&mut self, start: u64, end: u64) -> bool {
        let Some((first, _)) = self.vma_at(start) else {
            return false;
        };
        loop {
            let here = &self.vmas[&first];
            if here.end >= end {
                return true;
            }
            let next_start = here.end;
            match self.vmas.get(&next_start) {
                Some(next) if here.continued_by(first, next, next_start) => {}
                _ => return false,
            }
            let next = self.vmas.remove(&next_start).expect("region");
            self.vmas.get_mut(&first).expect("region").end = next.end;
        }
    }

    /// Moves the end of the region that starts at `start` to `end`, further on (the range
    /// between must be free): its pages there come as its others do, on demand.
    pub(crate) fn extend_vma(&mut self, start: u64, end: u64) {
        let v = self.vmas.get_mut(&start).expect("region");
        debug_assert!(v.end <= end);
        v.end = end;
    }

    /// Names the file behind the regions that start in `[s, e)` and have no name yet:
    /// `file.offset` is the file offset at `s`.
    pub(crate) fn name_file(&mut self, s: u64, e: u64, file: &MapFile) {
        for (&start, v) in self.vmas.range_mut(s..e) {
            if v.file.is_none() {
                v.file = Some(file.advanced(start - s));
            }
        }
    }

    /// Removes `[start, end)` from the map: regions are trimmed or split, pages released
    /// (after the sandbox has unmapped them).
    pub(crate) fn unmap(&mut self, start: u64, end: u64) {
        let keys: Vec<u64> = self
            .vmas
            .range(..end)
            .filter(|(_, v)| v.end > start)
            .map(|(&s, _)| s)
            .collect();
        if keys.is_empty() {
            return;
        }
        for s in keys {
            let v = self.vmas.remove(&s).expect("region");
            if s < start {
                self.vmas.insert(
                    s,
                    Vma {
                        end: start,
                        ..v.clone()
                    },
                );
            }
            if v.end > end {
                self.vmas.insert(end, v.tail(s, end));
            }
        }
        let pages: Vec<u64> = self.pages.range(start..end).map(|(&va, _)| va).collect();
        for va in pages {
            if let Some(p) = self.pages.remove(&va) {
                self.deferred.push(p.gpa);
            }
        }
        self.push_op(op::UNMAP, 0, start, end - start, 0);
    }

    /// Changes the protection of `[start, end)` (which must be fully mapped).
    pub(crate) fn protect(&mut self, start: u64, end: u64, prot_bits: u32) -> Result<(), Errno> {
        // Check coverage first.
        let mut at = start;
        while at < end {
            let (_, v) = self.vma_at(at).ok_or(Errno::ENOMEM)?;
            at = v.end;
        }
        // The present pages, and whether the sandbox maps them now (it does unless their
        // region was PROT_NONE).
        // (Lazy pages are not in the sandbox: their first fault maps them with the new
        // rights.)
        let present: Vec<(u64, Pte)> = self
            .pages
            .range(start..end)
            .filter(|(_, p)| !p.lazy)
            .map(|(&va, &p)| (va, p))
            .collect();
        let pages: Vec<(u64, Pte, bool)> = present
            .into_iter()
            .map(|(va, p)| {
                let mapped = self
                    .vma_at(va)
                    .is_some_and(|(_, v)| v.prot & prot::ALL != 0);
                (va, p, mapped)
            })
            .collect();
        self.change_regions(start, end, |v| v.prot = prot_bits);
        // The present pages get the new rights: changed in place where the sandbox maps them
        // (`mprotect` keeps the host's page-table entries, as Linux keeps the program's: a
        // write to a page made read-only is then a protection fault on a present page, error
        // code 7, not 6 as after a fresh mapping), mapped again where it does not, unmapped
        // for PROT_NONE.
        for (va, pte, mapped) in pages {
            let (_, v) = self.vma_at(va).expect("covered");
            if v.prot & prot::ALL == 0 {
                self.push_op(op::UNMAP, 0, va, PAGE_SIZE, 0);
            } else if mapped {
                self.queue_protect(va, &v, &pte);
            } else {
                self.queue_map(va, &v, &pte);
            }
        }
        Ok(())
    }

    /// `madvise`'s `MADV_DONTFORK`/`DOFORK`/`WIPEONFORK`/`KEEPONFORK` over `[start, end)`:
    /// `change` applied to what `fork` does with each region there (split at the range's
    /// ends; holes are the caller's `ENOMEM`). `EINVAL` (nothing changed) if
    /// `wipe_only_anon` and a region there is shared or maps a file, as Linux allows
    /// `MADV_WIPEONFORK` on private anonymous memory only.
    pub(crate) fn advise_fork(
        &mut self,
        start: u64,
        end: u64,
        wipe_only_anon: bool,
        change: impl Fn(&mut OnFork),
    ) -> Result<(), Errno> {
        let anon_only = self
            .vmas
            .range(..end)
            .filter(|(_, v)| v.end > start)
            .all(|(_, v)| v.shm.is_none() && v.file.is_none());
        if wipe_only_anon && !anon_only {
            return Err(Errno::EINVAL);
        }
        self.change_regions(start, end, |v| change(&mut v.on_fork));
        Ok(())
    }

    /// Splits the regions that overlap `[start, end)` at its ends and applies `change` to
    /// each part inside it (bookkeeping only: no page or mapping changes).
    fn change_regions(&mut self, start: u64, end: u64, change: impl Fn(&mut Vma)) {
        let keys: Vec<u64> = self
            .vmas
            .range(..end)
            .filter(|(_, v)| v.end > start)
            .map(|(&s, _)| s)
            .collect();
        for s in keys {
            let v = self.vmas.remove(&s).expect("region");
            if s < start {
                self.vmas.insert(
                    s,
                    Vma {
                        end: start,
                        ..v.clone()
                    },
                );
            }
            let ns = s.max(start);
            let mut mid = v.tail(s, ns);
            mid.end = v.end.min(end);
            change(&mut mid);
            self.vmas.insert(ns, mid);
            if v.end > end {
                self.vmas.insert(end, v.tail(s, end));
            }
        }
    }

    /// Resolves a user access to `va`, populating or copying the page as a fault would.
    /// Returns the frame. `Err(EFAULT)` if the access is not allowed.
    pub(crate) fn touch(&mut self, va: u64, write: bool, exec: bool) -> Result<u64, Errno> {
        let page = va & !(PAGE_SIZE - 1);
        let (vstart, vma) = self.vma_at(page).ok_or(Errno::EFAULT)?;
        let p = vma.prot;
        if p & prot::ALL == 0 || (write && p & prot::WRITE == 0) || (exec && p & prot::EXEC == 0) {
            return Err(Errno::EFAULT);
        }
        if let Some(pte) = self.pages.get(&page).copied() {
            if write && pte.cow {
                return self.break_cow_block(page, vstart, &vma, pte);
            }
            return Ok(pte.gpa);
        }
        if let Some((img, fo)) = vma.image_at(vstart, page) {
            let img = img.clone();
            let gpa = self.map_image_chunk(page, vstart, &vma, &img, fo, true)?;
            // The chunks after it that the image holds (a read of a host file brings up to
            // three more): mapped now, not at a fault each, as a first run touches them next.
            let chunk = TAG_CHUNK as u64;
            let next = page + (chunk - fo % chunk);
            let end = next
                .saturating_add((READ_AHEAD_CHUNKS as u64 - 1) * chunk)
                .min(vma.end);
            if next < end {
                self.map_image_filled(next, end);
            }
            if write {
                let pte = self.pages.get(&page).copied().ok_or(Errno::EFAULT)?;
                return self.break_cow_block(page, vstart, &vma, pte);
            }
            return Ok(gpa);
        }
        // A private file mapping's page the `mmap` did not fill (grown by `mremap`, dropped
        // by `MADV_DONTNEED`, past the file's end then): the file's bytes (`refill.rs`).
        if let Some(gpa) = self.fill_from_file(page, vstart, &vma)? {
            return match self.pages.get(&page).copied() {
                Some(pte) if write && pte.cow => self.break_cow_block(page, vstart, &vma, pte),
                _ => Ok(gpa),
            };
        }
        if vma.shm.is_none() && vma.file.as_ref().is_some_and(|f| f.bus_past_eof) {
            // Its neighbours may be the file's too: this page alone, zeroed.
            return self.populate(page);
        }
        // Populate: this page and, for anonymous memory, an aligned block around it — a
        // longer one from the block's start if the page before the block is resident
        // (private memory written in order).
        let block = FAULT_AROUND * PAGE_SIZE;
        let base = page & !(block - 1);
        let lo = base.max(vstart);
        let sequential =
            vma.shm.is_none() && base > vstart && self.pages.contains_key(&(base - PAGE_SIZE));
        let span = if sequential {
            FAULT_AROUND_SEQUENTIAL * PAGE_SIZE
        } else {
            block
        };
        let hi = base.saturating_add(span).min(vma.end);
        if vma.shm.is_none() {
            return self.zero_fill_around(page, lo, hi, vstart, &vma);
        }
        let mut first = 0;
        let mut va_i = lo;
        while va_i < hi {
            // Pages a program image provides stay for their own first touch.
            let from_image = va_i != page && vma.image_at(vstart, va_i).is_some();
            if let (false, alloc::collections::btree_map::Entry::Vacant(slot)) =
                (from_image, self.pages.entry(va_i))
            {
                let gpa = if va_i == page {
                    Some(Self::fresh_frame(&vma, vstart, va_i)?)
                } else {
                    Self::around_frame(&vma, vstart, va_i)
                };
                if let Some(gpa) = gpa {
                    let pte = *slot.insert(Pte {
                        gpa,
                        cow: false,
                        lazy: false,
                    });
                    self.queue_map_populated(va_i, &vma, &pte);
                    if va_i == page {
                        first = gpa;
                    }
                }
            }
            va_i += PAGE_SIZE;
        }
        Ok(first)
    }

    /// The demand-zero fault-around of private memory: fresh zeroed frames for `page` and the
    /// other vacant pages of `[lo, hi)` in `vma` (starting at `vstart`) that no program image
    /// provides, as many as the pool spares (at least `page`'s, reclaiming for it). The
    /// frames go to the pages in ascending order: frames freed together come back off the
    /// pool's free stack together but in reverse, and sorted they are runs the sandbox maps
    /// with one `mmap` each (in the order popped, a page-touch loop took one host `mmap` per
    /// 3.6 pages, each a host VMA of its own). Returns `page`'s frame.
    fn zero_fill_around(
        &mut self,
        page: u64,
        lo: u64,
        hi: u64,
        vstart: u64,
        vma: &Vma,
    ) -> Result<u64, Errno> {
        const MAX: usize = FAULT_AROUND_SEQUENTIAL as usize;
        let mut vas = [0u64; MAX];
        let mut n = 0;
        let mut va = lo;
        while va < hi && n < MAX {
            let vacant = !self.pages.contains_key(&va);
            if va == page || (vacant && vma.image_at(vstart, va).is_none()) {
                vas[n] = va;
                n += 1;
            }
            va += PAGE_SIZE;
        }
        let mut frames = [0u64; MAX];
        frames[0] = alloc_reclaiming(pool::alloc_zeroed)?;
        let mut got = 1;
        while got < n {
            let Some(f) = Self::spare_zeroed_frame() else {
                break;
            };
            frames[got] = f;
            got += 1;
        }
        let frames = &mut frames[..got];
        frames.sort_unstable();
        // Short of frames: `page` and the vacant pages after it, as far as they go.
        let at = vas[..n].iter().position(|&v| v == page).unwrap_or(0);
        let from = at.min(n - got);
        let mut first = 0;
        for (&va, &gpa) in vas[from..from + got].iter().zip(frames.iter()) {
            let pte = Pte {
                gpa,
                cow: false,
                lazy: false,
            };
            self.pages.insert(va, pte);
            self.queue_map_populated(va, vma, &pte);
            if va == page {
                first = gpa;
            }
        }
        Ok(first)
    }

    /// Maps `page` (at file offset `fo` of `img`, in `vma` starting at `vstart`, not in the
    /// map) and the other pages of its image chunk that the region takes from the image and
    /// the map does not hold: the image's frames, copy-on-write, the chunk read or checked
    /// first ([`CachedFile::ensure`]; `EIO` if the file changed: `SIGBUS`). Returns the
    /// frame of `page`. `populate`: the sandbox fills the page-table entries at once (a
    /// fault's chunk, touched next) rather than at the program's first access.
    fn map_image_chunk(
        &mut self,
        page: u64,
        vstart: u64,
        vma: &Vma,
        img: &ImageMap,
        fo: u64,
        populate: bool,
    ) -> Result<u64, Errno> {
        let chunk = TAG_CHUNK as u64;
        let i = fo / chunk;
        img.file.ensure(i as usize, img.since)?;
        // The chunk's pages inside both the region and the backed range.
        let lo_fo = (i * chunk).max(img.lo);
        let hi_fo = ((i + 1) * chunk).min(img.hi);
        let lo = (page - (fo - lo_fo)).max(vstart);
        let hi = (page + (hi_fo - fo)).min(vma.end);
        let mut frames = Vec::new();
        let mut va = lo;
        while va < hi {
            if !self.pages.contains_key(&va) {
                frames.push((va, img.file.frame_at(fo + va - page)));
            }
            va += PAGE_SIZE;
        }
        let all: Vec<u64> = frames.iter().map(|&(_, f)| f).collect();
        pool::get_many(&all);
        for (va, gpa) in frames {
            let pte = Pte {
                gpa,
                cow: true,
                lazy: false,
            };
            self.pages.insert(va, pte);
            if populate {
                self.queue_map_populated(va, vma, &pte);
            } else {
                self.queue_map(va, vma, &pte);
            }
        }
        Ok(img.file.frame_at(fo))
    }

    /// Maps now the pages of `[start, end)` that come from a program image
    /// ([`ImageMap`]) and whose chunk the image holds already (read by an earlier use: a
    /// previous run's working set), each chunk checked for this space first: a repeated
    /// exec then takes no fault for them, and only never-touched chunks wait for their
    /// first touch. Best effort: a chunk that cannot be checked is left to its fault.
    pub(crate) fn map_image_filled(&mut self, start: u64, end: u64) {
        let chunk = TAG_CHUNK as u64;
        let mut va = start & !(PAGE_SIZE - 1);
        while va < end {
            let Some((vstart, vma)) = self.vma_at(va) else {
                va += PAGE_SIZE;
                continue;
            };
            let Some((img, fo)) = vma.image_at(vstart, va).map(|(i, f)| (i.clone(), f)) else {
                va += PAGE_SIZE;
                continue;
            };
            if img.file.is_filled((fo / chunk) as usize) && !self.pages.contains_key(&va) {
                let _ = self.map_image_chunk(va, vstart, &vma, &img, fo, false);
            }
            // On to the next chunk (a chunk's absent pages were all mapped, or all wait).
            va = (va + (chunk - fo % chunk)).min(vma.end);
        }
    }

    /// Makes the copy-on-write page at `page` (mapped `pte` in `vma`) private: the frame
    /// itself if this space holds its last reference, else a copy in a frame from `alloc`.
    /// Returns the page's frame.
    fn break_cow(
        &mut self,
        page: u64,
        vma: &Vma,
        pte: Pte,
        alloc: impl FnOnce() -> Result<u64, Errno>,
    ) -> Result<u64, Errno> {
        let mut copies = Vec::new();
        let r = self.break_cow_copying(page, vma, pte, alloc, &mut copies);
        pool_mem::copy_pages(&copies);
        r
    }

    /// [`Mm::break_cow`], its page's copy left in `copies` (`(new frame, old frame)`) for
    /// the caller to make ([`pool_mem::copy_pages`]: a block's copies in one go, which for
    /// a host file window's pages is one host read instead of one per page).
    fn break_cow_copying(
        &mut self,
        page: u64,
        vma: &Vma,
        pte: Pte,
        alloc: impl FnOnce() -> Result<u64, Errno>,
        copies: &mut Vec<(u64, u64)>,
    ) -> Result<u64, Errno> {
        let npte = if pool::refs(pte.gpa) == 1 {
            Pte {
                gpa: pte.gpa,
                cow: false,
                lazy: false,
            }
        } else {
            let new = alloc()?;
            copies.push((new, pte.gpa));
            self.deferred.push(pte.gpa);
            Pte {
                gpa: new,
                cow: false,
                lazy: false,
            }
        };
        self.pages.insert(page, npte);
        self.queue_map_populated(page, vma, &npte);
        Ok(npte.gpa)
    }

    /// A write to copy-on-write `page` (its `pte`; in `vma`, starting at `vstart`): breaks its
    /// sharing and, in a private writable region, that of the other copy-on-write pages of
    /// its aligned [`FAULT_AROUND`] block, while the pool has frames for all of them (never
    /// reclaiming for those; short of frames, only `page`). A program writing its data
    /// segment or, after `fork`, its heap and stack, then takes one fault per block instead
    /// of one per page: a fault is a round trip through the guest kernel (microseconds), a
    /// page copy a fraction of one. Nothing a program can see changes (the copies hold the
    /// same bytes). The new frames are taken first and given to the pages in ascending
    /// order, so that they are runs the sandbox maps with one `mmap` each (in the order the
    /// pool's free stack pops them, a `fork` child's copies were one `mmap` per page).
    /// Returns `page`'s frame.
    fn break_cow_block(
        &mut self,
        page: u64,
        vstart: u64,
        vma: &Vma,
        pte: Pte,
    ) -> Result<u64, Errno> {
        const MAX: usize = FAULT_AROUND as usize;
        if vma.shm.is_some() || vma.prot & prot::WRITE == 0 {
            return self.break_cow(page, vma, pte, || alloc_reclaiming(pool::alloc));
        }
        let block = FAULT_AROUND * PAGE_SIZE;
        let lo = (page & !(block - 1)).max(vstart);
        let hi = ((page & !(block - 1)) + block).min(vma.end);
        // The block's copy-on-write pages, and how many of them still share their frame.
        let mut cow = [(0u64, pte); MAX];
        let (mut n, mut shared) = (0, 0);
        let mut va = lo;
        while va < hi {
            if let Some(p) = self.pages.get(&va).copied().filter(|p| p.cow) {
                cow[n] = (va, p);
                n += 1;
                shared += usize::from(pool::refs(p.gpa) != 1);
            }
            va += PAGE_SIZE;
        }
        let mut frames = [0u64; MAX];
        // `frames[0]` is `page`'s copy if it needs one.
        let own = usize::from(pool::refs(pte.gpa) != 1);
        if own == 1 {
            frames[0] = alloc_reclaiming(pool::alloc)?;
        }
        let mut got = own;
        while got < shared {
            let Ok(f) = pool::alloc() else { break };
            frames[got] = f;
            got += 1;
        }
        if got < shared {
            // Short of frames: `page` alone, with its own frame (if it still needs it).
            for &f in &frames[own..got] {
                pool::put(f);
            }
            let mut mine = (own == 1).then_some(frames[0]);
            let gpa = self.break_cow(page, vma, pte, || mine.take().ok_or(Errno::ENOMEM));
            if let Some(f) = mine {
                pool::put(f);
            }
            return gpa;
        }
        frames[..got].sort_unstable();
        let mut next = frames[..got].iter().copied();
        let mut first = Err(Errno::ENOMEM);
        let mut copies = Vec::with_capacity(n);
        for &(va, p) in &cow[..n] {
            // (A frame shared when counted may have lost its other users since: then it
            // is this page's own, and one new frame is left over.)
            let gpa = self.break_cow_copying(
                va,
                vma,
                p,
                || next.next().ok_or(Errno::ENOMEM),
                &mut copies,
            );
            if va == page {
                first = gpa;
            }
        }
        pool_mem::copy_pages(&copies);
        for f in next {
            pool::put(f);
        }
        first
    }

    /// The frame for a first access to `va` in `vma` (starting at `vstart`), with one
    /// reference for this space: the shared object's page (created zeroed if it has none)
    /// for shared memory, else a fresh zeroed frame.
    fn fresh_frame(vma: &Vma, vstart: u64, va: u64) -> Result<u64, Errno> {
        match &vma.shm {
            Some(shm) => shm.obj.frame(shm.index(vstart, va), || {
                alloc_reclaiming(pool::alloc_zeroed)
            }),
            None => alloc_reclaiming(pool::alloc_zeroed),
        }
    }

    /// A frame to map ahead at `va` around a fault: for shared memory only a page the object
    /// already has; for private memory a fresh zeroed frame while the pool is not short.
    fn around_frame(vma: &Vma, vstart: u64, va: u64) -> Option<u64> {
        match &vma.shm {
            Some(shm) => shm.obj.existing(shm.index(vstart, va)),
            None => Self::spare_zeroed_frame(),
        }
    }

    /// A fresh zeroed frame to map ahead of a fault, while the pool is not short.
    fn spare_zeroed_frame() -> Option<u64> {
        (pool::stats().0 > 64)
            .then(|| alloc_reclaiming(pool::alloc_zeroed).ok())
            .flatten()
    }

    /// The frame at `va`, allocating a zero page if none (kernel use: ignores protection;
    /// the page must be inside a region).
    pub(crate) fn populate(&mut self, va: u64) -> Result<u64, Errno> {
        let page = va & !(PAGE_SIZE - 1);
        if let Some(p) = self.pages.get(&page) {
            return Ok(p.gpa);
        }
        let (vstart, vma) = self.vma_at(page).ok_or(Errno::EFAULT)?;
        if let Some((img, fo)) = vma.image_at(vstart, page) {
            let img = img.clone();
            return self.map_image_chunk(page, vstart, &vma, &img, fo, true);
        }
        let gpa = Self::fresh_frame(&vma, vstart, page)?;
        let pte = Pte {
            gpa,
            cow: false,
            lazy: false,
        };
        self.pages.insert(page, pte);
        self.queue_map(page, &vma, &pte);
        Ok(gpa)
    }

    /// The private frame at `va` for the kernel to write into: allocated (zeroed) if absent,
    /// copied first if shared copy-on-write. Ignores protection (exec, signal frames).
    pub(crate) fn populate_private(&mut self, va: u64) -> Result<u64, Errno> {
        let page = va & !(PAGE_SIZE - 1);
        match self.pages.get(&page).copied() {
            Some(p) if p.cow => {
                let new = alloc_reclaiming(pool::alloc)?;
                pool_mem::copy(new, p.gpa, PAGE_SIZE as usize);
                self.deferred.push(p.gpa);
                let npte = Pte {
                    gpa: new,
                    cow: false,
                    lazy: false,
                };
                self.pages.insert(page, npte);
                if let Some((_, v)) = self.vma_at(page) {
                    self.queue_map(page, &v, &npte);
                }
                Ok(new)
            }
            Some(_) => self.populate(va),
            // A page of a program image comes in copy-on-write: copied then.
            None => {
                let gpa = self.populate(va)?;
                match self.pages.get(&page) {
                    Some(p) if p.cow => self.populate_private(va),
                    _ => Ok(gpa),
                }
            }
        }
    }

    /// Maps pool frame `gpa` (the caller gave this space one reference) at `va` copy-on-write:
    /// shared read-only until the first write copies it. `va` must be in a region and
    /// unpopulated.
    pub(crate) fn install_cow(&mut self, va: u64, gpa: u64) {
        self.install(va, gpa, true);
    }

    /// Maps pool frame `gpa` (one reference the caller gives this space) at `va`, its own
    /// page or (`cow`) shared copy-on-write; a page the map held there is released.
    fn install(&mut self, va: u64, gpa: u64, cow: bool) {
        let page = va & !(PAGE_SIZE - 1);
        let pte = Pte {
            gpa,
            cow,
            lazy: false,
        };
        if let Some(old) = self.pages.insert(page, pte) {
            self.deferred.push(old.gpa);
        }
        if let Some((_, v)) = self.vma_at(page) {
            self.queue_map(page, &v, &pte);
        }
    }

    /// Maps the `n` pool frames from `gpa` (the caller gave this space one reference to
    /// each) at the `n` pages from `va` copy-on-write, as [`Mm::install_cow`] does page by
    /// page, with one region look-up per region crossed (tests: a program image's frames).
    #[cfg(test)]
    pub(crate) fn install_cow_run(&mut self, va: u64, gpa: u64, n: u64) {
        let mut vma: Option<(u64, Vma)> = None;
        for k in 0..n {
            let page = (va & !(PAGE_SIZE - 1)) + k * PAGE_SIZE;
            let pte = Pte {
                gpa: gpa + k * PAGE_SIZE,
                cow: true,
                lazy: false,
            };
            if let Some(old) = self.pages.insert(page, pte) {
                self.deferred.push(old.gpa);
            }
            if !vma
                .as_ref()
                .is_some_and(|(s, v)| *s <= page && page < v.end)
            {
                vma = self.vma_at(page);
            }
            if let Some((_, v)) = &vma {
                let p = Self::map_prot(v, &pte);
                self.push_op(op::MAP, p, page, PAGE_SIZE, pte.gpa);
            }
        }
    }

    /// Adds `[s, e)` with `prot_bits`; parts already mapped get the union of both rights
    /// (ELF segments sharing a page).
    pub(crate) fn add_region_merging(&mut self, s: u64, e: u64, prot_bits: u32) {
        let mut at = s;
        while at < e {
            if let Some((_, v)) = self.vma_at(at) {
                let end = v.end.min(e);
                let _ = self.protect(at, end, v.prot | prot_bits);
                at = end;
            } else {
                let next = self.vmas.range(at..).next().map_or(e, |(&k, _)| k).min(e);
                self.add_vma(at, next, prot_bits, None);
                at = next;
            }
        }
    }

    /// The frame of the present page at `va` of a private region, made this space's own
    /// whatever the region's protection (copy-on-write broken: a copy if another space or the
    /// image cache shares it), for the kernel to rewrite: syscall-site patching
    /// (`linux/patch.rs`) writes a process's own code and patch table. `None` for a page not
    /// present, in a shared region, or not privately held.
    pub(crate) fn private_frame(&mut self, va: u64) -> Option<u64> {
        let page = va & !(PAGE_SIZE - 1);
        let (_, vma) = self.vma_at(page)?;
        if vma.shm.is_some() {
            return None;
        }
        let pte = self.pages.get(&page).copied()?;
        if pte.cow {
            return self
                .break_cow(page, &vma, pte, || alloc_reclaiming(pool::alloc))
                .ok();
        }
        (pool::refs(pte.gpa) == 1).then_some(pte.gpa)
    }

    /// Frame of a present page (no population).
    pub(crate) fn frame_of(&self, va: u64) -> Option<u64> {
        self.pages.get(&(va & !(PAGE_SIZE - 1))).map(|p| p.gpa)
    }

    /// Discards the pages of `[start, end)` (MADV_DONTNEED: they read as zero again).
    pub(crate) fn discard(&mut self, start: u64, end: u64) {
        let pages: Vec<u64> = self.pages.range(start..end).map(|(&va, _)| va).collect();
        for va in pages {
            if let Some(p) = self.pages.remove(&va) {
                self.deferred.push(p.gpa);
                self.push_op(op::UNMAP, 0, va, PAGE_SIZE, 0);
            }
        }
    }

    /// Discards the pages of the file mappings of inode `ino` (`mmap`s of it,
    /// [`MapFile::bus_past_eof`]) at file offsets `eof` (page aligned) and beyond: the file
    /// shrank, and touching them again is `SIGBUS`, as after Linux's truncate (private copies
    /// included).
    pub(crate) fn discard_file_past(&mut self, ino: u64, eof: u64) {
        let ranges: Vec<(u64, u64)> = self
            .vmas
            .iter()
            .filter_map(|(&s, v)| {
                let f = v.file.as_ref().filter(|f| f.bus_past_eof && f.ino == ino)?;
                let from = s.saturating_add(eof.saturating_sub(f.offset));
                (from < v.end).then_some((from, v.end))
            })
            .collect();
        for (start, end) in ranges {
            self.discard(start, end);
        }
    }

    /// Resident pages of `[start, end)` in address order: user address, frame,
    /// copy-on-write (the hand-over record's page runs).
    pub(crate) fn resident(
        &self,
        start: u64,
        end: u64,
    ) -> impl Iterator<Item = (u64, u64, bool)> + '_ {
        self.pages
            .range(start..end)
            .map(|(&va, p)| (va, p.gpa, p.cow))
    }

    /// Number of resident pages.
    pub(crate) fn resident_pages(&self) -> usize {
        self.pages.len()
    }

    /// What the space uses: mapped bytes and resident pages, private and shared.
    pub(crate) fn usage(&self) -> MemUsage {
        let mut u = MemUsage {
            mapped: self.vmas.iter().map(|(&s, v)| v.end - s).sum(),
            ..MemUsage::default()
        };
        for (&s, v) in &self.vmas {
            let n = self.pages.range(s..v.end).count();
            if v.shm.is_some() {
                u.shared_pages += n;
            } else {
                u.private_pages += n;
            }
        }
        u
    }

    /// Regions, for `/proc`-like listings and `mremap`.
    pub(crate) fn vmas(&self) -> impl Iterator<Item = (u64, &Vma)> + '_ {
        self.vmas.iter().map(|(&s, v)| (s, v))
    }

    /// Moves the pages of `[old, old+len)` to `[new, new+len)` (mremap with a move).
    pub(crate) fn move_pages(&mut self, old: u64, new: u64, len: u64) {
        let pages: Vec<(u64, Pte)> = self
            .pages
            .range(old..old + len)
            .map(|(&va, &p)| (va, p))
            .collect();
        for (va, pte) in pages {
            self.pages.remove(&va);
            self.push_op(op::UNMAP, 0, va, PAGE_SIZE, 0);
            let nva = va - old + new;
            let pte = Pte { lazy: false, ..pte };
            self.pages.insert(nva, pte);
            if let Some((_, v)) = self.vma_at(nva) {
                self.queue_map(nva, &v, &pte);
            }
        }
    }

    /// `brk(addr)`: moves the program break to `addr` if it is at or above the heap's start
    /// and the heap can grow there (inside the user window, over free space, below the
    /// `mmap` area); returns the break in force afterwards (the old one on failure).
    pub(crate) fn set_brk(&mut self, addr: u64) -> u64 {
        let cur = self.brk;
        if addr == 0 || addr < self.brk_base {
            return cur;
        }
        let (Some(new_end), Some(old_end)) = (page_up(addr), page_up(cur)) else {
            return cur;
        };
        if new_end > old_end {
            if !in_user_window(old_end, new_end - old_end)
                || !self.is_free(old_end, new_end)
                || new_end > self.mmap_top
            {
                return cur;
            }
            let rw = prot::READ | prot::WRITE;
            // The heap's last region grows (one region, as Linux's `brk` keeps it).
            match self.vma_at(old_end.wrapping_sub(1)) {
                Some((s, v))
                    if s >= self.brk_base
                        && v.end == old_end
                        && v.prot == rw
                        && v.shm.is_none()
                        && v.file.is_none() =>
                {
                    self.extend_vma(s, new_end);
                }
                _ => self.add_vma(old_end, new_end, rw, None),
            }
        } else if new_end < old_end {
            self.unmap(new_end, old_end);
        }
        self.brk = addr;
        addr
    }

    /// Finds a free range of `len` bytes for `mmap` below the placement hint (top-down, above
    /// the heap and 256 MiB) and moves the hint to it.
    pub(crate) fn find_free(&mut self, len: u64) -> Result<u64, Errno> {
        let mut top = self.mmap_top;
        loop {
            let start = top.checked_sub(len).ok_or(Errno::ENOMEM)?;
            if start < self.brk.max(MMAP_FLOOR) {
                return Err(Errno::ENOMEM);
            }
            if self.is_free(start, top) {
                self.mmap_top = start;
                return Ok(start);
            }
            // Skip below the region in the way.
            let mut lowest = start;
            for (s, v) in self.vmas() {
                if s < top && v.end > start {
                    lowest = lowest.min(s);
                }
            }
            top = lowest;
        }
    }

    /// Handles a user page fault at `addr` with x86 `error_code`: populates or copies the
    /// page as [`Mm::touch`] does; `Err` means SIGSEGV (or `ENOMEM`). Returns the map's
    /// generation afterwards (see [`MapGeneration`]).
    pub(crate) fn fault(&mut self, addr: u64, error_code: u64) -> Result<MapGeneration, Errno> {
        if !in_user_window(addr, 1) {
            return Err(Errno::EFAULT);
        }
        let write = error_code & pf::WRITE != 0;
        let exec = error_code & pf::FETCH != 0;
        let page = addr & !(PAGE_SIZE - 1);
        let before = self.pages.get(&page).copied();
        // A page of the map the sandbox does not map yet (a `fork` child's): mapped with
        // its block, unless the access is a write that must copy it first.
        if let Some(pte) = before.filter(|p| p.lazy && !(write && p.cow)) {
            let (vstart, vma) = self.vma_at(page).ok_or(Errno::EFAULT)?;
            let p = vma.prot;
            if p & prot::ALL == 0
                || (write && p & prot::WRITE == 0)
                || (exec && p & prot::EXEC == 0)
            {
                return Err(Errno::EFAULT);
            }
            debug_assert!(pte.lazy);
            self.map_lazy_around(page, vstart, &vma);
            return Ok(MapGeneration(self.generation));
        }
        self.touch(addr, write, exec)?;
        let after = self.pages.get(&page).copied();
        // A present page that did not change (no copy-on-write break) faulted because the
        // sandbox does not map it (yet): send its mapping again, without a new generation.
        if let (Some(b), Some(a)) = (before, after) {
            if b == a {
                if let Some((_, v)) = self.vma_at(page) {
                    let p = Self::map_prot(&v, &a);
                    self.push_op_again(op::MAP_POPULATE, p, page, PAGE_SIZE, a.gpa);
                }
            }
        }
        Ok(MapGeneration(self.generation))
    }

    /// Makes `child` (an empty map) a copy of this one for `fork`: the same regions, heap and
    /// placement hints, and every page with a reference of its own — private pages
    /// copy-on-write in both maps (this map's writable ones are queued read-only again),
    /// pages of shared regions shared as they are. The child's pages are *lazy*: its sandbox
    /// maps them at their first fault, a block at a time ([`Mm::map_lazy_around`]), instead
    /// of one host `mmap` per run of frames before the child first runs (the largest cost
    /// of a `fork` in the sandboxes: 13% of all CPU time in a `fork`/`_exit`/`wait` loop).
    /// One pass over the regions and their pages, the references taken under one pool lock.
    ///
    /// `own`: pages (page-aligned addresses) the child gets a private copy of at once, mapped
    /// writable with its first run — the forking thread's stack top and TLS, which both
    /// processes write as soon as `fork` returns. Each is copied only if it is a private,
    /// writable page this map holds alone; this map then keeps it writable as it was. That
    /// saves a copy-on-write fault (a hand-over there and back) in the parent and one or two
    /// in the child per `fork`. The caller passes pages only while no other thread can write
    /// them (a single-threaded parent, stopped in `fork`): the copy is a snapshot.
    pub(crate) fn fork_into(&mut self, child: &mut Mm, own: &[u64]) {
        // `MADV_DONTFORK` regions stay out of the child; `MADV_WIPEONFORK` ones go in empty.
        child.vmas = self
            .vmas
            .iter()
            .filter(|(_, v)| !v.on_fork.skip)
            .map(|(&s, v)| (s, v.clone()))
            .collect();
        child.brk_base = self.brk_base;
        child.brk = self.brk;
        child.mmap_top = self.mmap_top;
        child.patch_next = self.patch_next;
        let mut frames = Vec::with_capacity(self.pages.len());
        let mut copied = Vec::with_capacity(self.pages.len());
        let mut protect = Vec::new();
        for (&s, vma) in &self.vmas {
            if vma.on_fork.skip || vma.on_fork.wipe {
                continue;
            }
            let share = vma.shm.is_some();
            for (&va, pte) in self.pages.range_mut(s..vma.end) {
                if !share
                    && !pte.cow
                    && !pte.lazy
                    && vma.prot & prot::WRITE != 0
                    && own.contains(&va)
                    && pool::refs(pte.gpa) == 1
                {
                    if let Ok(new) = pool::alloc() {
                        pool_mem::copy(new, pte.gpa, PAGE_SIZE as usize);
                        let npte = Pte {
                            gpa: new,
                            cow: false,
                            lazy: false,
                        };
                        child.queue_map_populated(va, vma, &npte);
                        copied.push((va, npte));
                        continue;
                    }
                }
                frames.push(pte.gpa);
                if !share && !pte.cow {
                    pte.cow = true;
                    if vma.prot & prot::WRITE != 0 && !pte.lazy {
                        // Write-protected in place: the page stays present for the program.
                        protect.push((va, Self::map_prot(vma, pte)));
                    }
                }
                let npte = Pte {
                    gpa: pte.gpa,
                    cow: !share,
                    lazy: true,
                };
                copied.push((va, npte));
            }
        }
        pool::get_many(&frames);
        child.pages = copied.into_iter().collect();
        for (va, p) in protect {
            self.push_op(op::PROTECT, p, va, PAGE_SIZE, 0);
        }
        // The child's pages are mapped in its sandbox as it faults them
        // ([`Mm::map_lazy_around`]): a child that runs a little and exits or execs (most
        // do) never pays a host `mmap` for the runs it does not touch.
    }

    /// Maps the blocks around `addrs` now, as their first faults would ([`Mm::map_lazy_around`]):
    /// for a `fork` child, the pages it touches first (its code at `rip`, its stack, its
    /// thread's TLS), sent with its first run instead of one fault — a hand-over there and back
    /// — each. Addresses outside every region, or whose page is not lazy, are skipped.
    pub(crate) fn map_hot(&mut self, addrs: &[u64]) {
        for &a in addrs {
            let page = a & !(PAGE_SIZE - 1);
            if !self.pages.get(&page).is_some_and(|p| p.lazy) {
                continue;
            }
            let Some((vstart, vma)) = self.vma_at(page) else {
                continue;
            };
            if vma.prot & prot::ALL != 0 {
                self.map_lazy_around(page, vstart, &vma);
            }
        }
    }

    /// Maps the lazy pages ([`Pte::lazy`]) of the aligned [`FAULT_AROUND_SEQUENTIAL`]-page
    /// block around `page` inside `vma` (which starts at `vstart`) in the sandbox, with the
    /// rights the region and each page allow: one operation per run of contiguous frames.
    fn map_lazy_around(&mut self, page: u64, vstart: u64, vma: &Vma) {
        let block = FAULT_AROUND_SEQUENTIAL * PAGE_SIZE;
        let lo = (page & !(block - 1)).max(vstart);
        let hi = ((page & !(block - 1)) + block).min(vma.end);
        let lazy: Vec<(u64, Pte)> = self
            .pages
            .range_mut(lo..hi)
            .filter(|(_, p)| p.lazy)
            .map(|(&va, p)| {
                p.lazy = false;
                (va, *p)
            })
            .collect();
        for (va, pte) in lazy {
            self.queue_map(va, vma, &pte);
        }
    }

    /// Forgets the sandbox that realised this map (a snapshot resumed in a new host process,
    /// `Space::revive`): every page is mapped again at its first fault, the queued operations
    /// and batch numbers start afresh, and the frames that waited for an unmap are returned
    /// (nothing maps them in the new sandbox).
    pub(crate) fn forget_sandbox(&mut self) -> Vec<u64> {
        for p in self.pages.values_mut() {
            p.lazy = true;
        }
        self.ops.clear();
        self.ops_seq = 0;
        self.generation += 1;
        core::mem::take(&mut self.deferred)
    }

    /// Adoption of a hand-over record (`linux/handover/adopt.rs`): adds the region
    /// `[start, end)` (page aligned, free) with `prot_bits`, backed by `file` if given, mapping
    /// the shared object `shm` if given (a `MAP_SHARED` area).
    /// `false` (nothing changed) if it is not.
    pub(crate) fn adopt_region(
        &mut self,
        start: u64,
        end: u64,
        prot_bits: u32,
        file: Option<MapFile>,
        shm: Option<ShmRef>,
        on_fork: OnFork,
    ) -> bool {
        let aligned =
            start.is_multiple_of(PAGE_SIZE) && end.is_multiple_of(PAGE_SIZE) && start < end;
        if !aligned || !in_user_window(start, end - start) || !self.is_free(start, end) {
            return false;
        }
        self.vmas.insert(
            start,
            Vma {
                end,
                prot: prot_bits,
                shm,
                file,
                on_fork,
            },
        );
        true
    }

    /// Adoption: the `n` pages from `va` map the `n` frames from `gpa` (the pool gave this
    /// space one reference to each: `pool::adopt`), copy-on-write if `cow`, *lazy* — the new
    /// sandbox maps them at their first fault, as after a snapshot's resume
    /// ([`Mm::forget_sandbox`]). `false` (nothing changed) unless every page is inside one
    /// region and not in the map yet.
    pub(crate) fn adopt_pages(&mut self, va: u64, gpa: u64, n: u64, cow: bool) -> bool {
        let Some(len) = n.checked_mul(PAGE_SIZE).filter(|&l| l > 0) else {
            return false;
        };
        let inside = va.is_multiple_of(PAGE_SIZE)
            && gpa.is_multiple_of(PAGE_SIZE)
            && self
                .vma_at(va)
                .is_some_and(|(_, v)| va.checked_add(len).is_some_and(|e| e <= v.end));
        if !inside || self.pages.range(va..va + len).next().is_some() {
            return false;
        }
        for k in 0..n {
            self.pages.insert(
                va + k * PAGE_SIZE,
                Pte {
                    gpa: gpa + k * PAGE_SIZE,
                    cow,
                    lazy: true,
                },
            );
        }
        true
    }

    /// Frames to release once the operations queued so far are applied (a request that
    /// took them came back without saying they were).
    pub(crate) fn defer(&mut self, frames: Vec<u64>) {
        self.deferred.extend(frames);
    }

    /// Empties the map of pages, returning every frame it holds a reference to (its pages
    /// and those waiting for release), for a space being destroyed.
    pub(crate) fn take_frames(&mut self) -> Vec<u64> {
        let mut frames: Vec<u64> = self.pages.values().map(|p| p.gpa).collect();
        frames.append(&mut self.deferred);
        self.pages.clear();
        frames
    }
}

mod refill;
#[cfg(test)]
mod tests;
