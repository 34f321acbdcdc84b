//! The user-page pool: the frames of the boot memory map's `UserPool` region, the only
//! guest memory a user sandbox can map. Reference counted (copy-on-write sharing after
//! `fork`); kernel data never lives here. This module only keeps the books: the frames'
//! bytes are reached through the framework's copies (`crate::mm::pool_mem`).

use alloc::vec::Vec;
use pvmux_hypercalls::balloon::{kind, BalloonRange};
use pvmux_hypercalls::{MemRegionKind, PAGE_SIZE};

use super::Errno;
use crate::irq::IrqLock;
use crate::mm::pool_mem;

/// Pool state.
struct Pool {
    /// First guest-physical address of the pool.
    base: u64,
    /// Reference count per frame (0 = free).
    refs: Table<u16>,
    /// Free frame indices (a stack) below [`Self::fresh`]. May also hold *stale* entries, frames a contiguous allocation took without searching the
    /// stack for them (see [`alloc_contiguous`]): an entry is only used if its frame's
    /// reference count is 0 when it is popped, and the stack is rebuilt from the reference
    /// counts when stale entries pile up ([`Pool::compact`]).
    free: Vec<u32>,
    /// The frames from this index up were never on the stack: each is free if its reference
    /// count is 0, and handed out in ascending order once the stack is empty. Boot then
    /// writes no stack of every frame (a 768 MiB pool's was 768 KiB of fresh kernel heap,
    /// ~1–4 ms of host page faults in a nested VM, before init could start).
    fresh: u32,
    /// Free frames (the stack's entries and the frames from `fresh` up, minus the stale
    /// ones).
    nfree: usize,
    /// Per frame: ever handed out since boot. Frames never used still hold the zeros the
    /// host's fresh memfd pages start with, so zero-filled allocations can skip clearing
    /// them (and skip touching the page at all, which in a nested VM is a host page fault).
    used: Table<u64>,
    /// Frames in the balloon (reference count [`BALLOONED`]): given to the host
    /// (`pvmux mem`), neither free nor handed out until the host gives them back.
    ballooned: usize,
}

/// The reference count of a frame in the balloon: never free (so never popped off the free
/// stack nor taken by a contiguous allocation), never a valid count of mappings.
const BALLOONED: u16 = u16::MAX;

/// Where a balloon operation that takes several reports goes on (one per operation).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BalloonCursor {
    /// Inflating: 0 while taking frames used before (their memfd pages hold host memory),
    /// then 1 for the others.
    pass: u8,
    /// Frames looked at so far in this pass (from the top when inflating, from the bottom
    /// when deflating).
    done: usize,
}

/// Adds frame `gpa` to the runs in `out[..*n]` (extending the last run when it is adjacent).
/// `false` when `out` is full and the frame starts no run.
fn push_run(out: &mut [BalloonRange], n: &mut usize, gpa: u64, k: u32) -> bool {
    if let Some(last) = out[..*n].last_mut() {
        if last.kind == k && last.pages < u32::MAX {
            if last.gpa == gpa + PAGE_SIZE {
                last.gpa = gpa;
                last.pages += 1;
                return true;
            }
            if last.gpa + u64::from(last.pages) * PAGE_SIZE == gpa {
                last.pages += 1;
                return true;
            }
        }
    }
    if *n == out.len() {
        return false;
    }
    out[*n] = BalloonRange {
        gpa,
        pages: 1,
        kind: k,
    };
    *n += 1;
    true
}

/// A per-frame table of a pool, all zero when made: on the kernel heap, or, for the live
/// pool, in frames that read as zero untouched (`mm::frame::boot_zeroed`), so that boot
/// writes none of it and its pages cost the host nothing until frames they count are used.
/// Zeroing a heap table took 11 ms of a 32 GiB guest's boot (15.5 MiB of counts: fresh host
/// pages, at ~2.4 µs each in a nested VM).
enum Table<T: 'static> {
    Heap(Vec<T>),
    #[cfg_attr(test, allow(dead_code))]
    Boot(&'static mut [T]),
}

impl<T: Copy + Default> Table<T> {
    /// `n` zeroed values on the kernel heap.
    fn heap(n: usize) -> Self {
        Self::Heap(alloc::vec![T::default(); n])
    }
}

impl<T> core::ops::Deref for Table<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Self::Heap(v) => v,
            Self::Boot(s) => s,
        }
    }
}

impl<T> core::ops::DerefMut for Table<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Self::Heap(v) => v,
            Self::Boot(s) => s,
        }
    }
}

impl Pool {
    /// A pool of the `n` frames from `base`, its tables on the kernel heap (a shadow pool of
    /// an adoption check, the unit tests).
    fn with_frames(base: u64, n: usize) -> Self {
        Self::with_tables(base, n, Table::heap(n), Table::heap(n.div_ceil(64)))
    }

    /// [`Pool::with_frames`] for the kernel's own pool: its tables in frames that read as
    /// zero ([`Table`]), on the heap if the kernel's memory has no room for them so.
    #[cfg(not(test))]
    fn for_boot(base: u64, n: usize) -> Self {
        let refs =
            crate::mm::frame::boot_zeroed::<u16>(n).map_or_else(|| Table::heap(n), Table::Boot);
        let words = n.div_ceil(64);
        let used = crate::mm::frame::boot_zeroed::<u64>(words)
            .map_or_else(|| Table::heap(words), Table::Boot);
        Self::with_tables(base, n, refs, used)
    }

    fn with_tables(base: u64, n: usize, refs: Table<u16>, used: Table<u64>) -> Self {
        Self {
            base,
            refs,
            nfree: n,
            free: Vec::new(),
            fresh: 0,
            used,
            ballooned: 0,
        }
    }

    fn was_used(&self, i: usize) -> bool {
        self.used[i / 64] & (1 << (i % 64)) != 0
    }

    /// Takes up to `want` free frames into the balloon, leaving at least `reserve` free,
    /// as runs of [`kind::RELEASED`] in `out`: frames used before first (giving them back
    /// lowers the host's memory), then the others, from the top of the pool. Returns the
    /// runs written and the frames taken; `cur` says where the next call goes on.
    fn inflate(
        &mut self,
        want: u64,
        reserve: u64,
        cur: &mut BalloonCursor,
        out: &mut [BalloonRange],
    ) -> (usize, u64) {
        let n = self.refs.len();
        let mut runs = 0;
        let mut taken = 0u64;
        let limit = want.min((self.nfree as u64).saturating_sub(reserve));
        while taken < limit && cur.pass < 2 {
            if cur.done == n {
                cur.pass += 1;
                cur.done = 0;
                continue;
            }
            let i = n - 1 - cur.done;
            if self.refs[i] == 0 && (cur.pass == 1 || self.was_used(i)) {
                let gpa = self.base + i as u64 * PAGE_SIZE;
                if !push_run(out, &mut runs, gpa, kind::RELEASED) {
                    break;
                }
                self.refs[i] = BALLOONED;
                self.nfree -= 1;
                self.ballooned += 1;
                taken += 1;
            }
            cur.done += 1;
        }
        (runs, taken)
    }

    /// Gives up to `want` frames of the balloon back to the pool (free again), as runs of
    /// [`kind::RECLAIMED`] in `out`, from the bottom. Returns the runs and the frames.
    fn deflate(
        &mut self,
        want: u64,
        cur: &mut BalloonCursor,
        out: &mut [BalloonRange],
    ) -> (usize, u64) {
        let n = self.refs.len();
        let mut runs = 0;
        let mut given = 0u64;
        while given < want && cur.done < n {
            let i = cur.done;
            if self.refs[i] == BALLOONED {
                let gpa = self.base + i as u64 * PAGE_SIZE;
                if !push_run(out, &mut runs, gpa, kind::RECLAIMED) {
                    break;
                }
                self.release_to_free(i);
                given += 1;
            }
            cur.done += 1;
        }
        (runs, given)
    }

    /// Frame `i` of the balloon is free again. Its `used` bit stays: if the host did not
    /// punch it, it still holds old bytes, which a zero-filled allocation clears.
    fn release_to_free(&mut self, i: usize) {
        self.refs[i] = 0;
        self.ballooned -= 1;
        self.free.push(i as u32);
        self.nfree += 1;
        self.compact();
    }

    /// Undoes an inflation the host refused: the released runs' frames are free again.
    fn undo(&mut self, ranges: &[BalloonRange]) {
        for r in ranges.iter().filter(|r| r.kind == kind::RELEASED) {
            let first = ((r.gpa - self.base) / PAGE_SIZE) as usize;
            for i in first..first + r.pages as usize {
                if self.refs.get(i) == Some(&BALLOONED) {
                    self.release_to_free(i);
                }
            }
        }
    }

    /// Pops a free frame off the stack, skipping stale entries, or else takes the next free
    /// frame from [`Self::fresh`] up.
    fn pop_free(&mut self) -> Option<u32> {
        while let Some(i) = self.free.pop() {
            if self.refs[i as usize] == 0 {
                self.nfree -= 1;
                return Some(i);
            }
        }
        while (self.fresh as usize) < self.refs.len() {
            let i = self.fresh;
            self.fresh += 1;
            if self.refs[i as usize] == 0 {
                self.nfree -= 1;
                return Some(i);
            }
        }
        None
    }

    /// Rebuilds the free stack from the reference counts below [`Self::fresh`] (dropping
    /// stale and duplicate entries) once it holds more than twice as many entries as there
    /// are frames: linear time, amortised over at least as many contiguous allocations'
    /// frames.
    fn compact(&mut self) {
        if self.free.len() <= 2 * self.refs.len() {
            return;
        }
        self.free.clear();
        let refs = &self.refs;
        self.free
            .extend((0..self.fresh).rev().filter(|&i| refs[i as usize] == 0));
        self.nfree = self.free.len()
            + refs[self.fresh as usize..]
                .iter()
                .filter(|&&r| r == 0)
                .count();
    }

    /// Adoption of a hand-over record (`linux/handover/adopt.rs`): each of `frames` (page
    /// aligned, in the pool, free, not in the balloon; checked first, nothing changes on an
    /// error, which names the frame) gets its count of references — one per page of the
    /// adopted address spaces that maps it. Every frame of the pool then counts as used:
    /// the kernel that used it before may have left its bytes there, so none may be handed
    /// out as a frame known to be zero.
    fn adopt(&mut self, frames: &alloc::collections::BTreeMap<u64, u32>) -> Result<(), u64> {
        let n = self.refs.len();
        for (&gpa, &k) in frames {
            let i = gpa.wrapping_sub(self.base) / PAGE_SIZE;
            let ok = gpa >= self.base
                && gpa.is_multiple_of(PAGE_SIZE)
                && (i as usize) < n
                && self.refs[i as usize] == 0
                && k > 0
                && k < u32::from(BALLOONED);
            if !ok {
                return Err(gpa);
            }
        }
        for (&gpa, &k) in frames {
            let i = ((gpa - self.base) / PAGE_SIZE) as usize;
            self.refs[i] = k as u16;
            self.nfree -= 1;
        }
        // Their free-stack entries stay, stale (skipped when popped, as for contiguous
        // allocations).
        self.used.fill(u64::MAX);
        Ok(())
    }

    /// Drops a reference to frame `gpa`; pushes it on the free stack when the last one goes
    /// (the caller compacts).
    fn drop_ref(&mut self, gpa: u64) {
        let i = index(self, gpa);
        assert!(self.refs[i] > 0, "double free of pool frame {gpa:#x}");
        self.refs[i] -= 1;
        if self.refs[i] == 0 {
            self.free.push(i as u32);
            self.nfree += 1;
        }
    }

    /// Marks frame `i` used; returns whether it had never been used (still all zeros).
    fn first_use(&mut self, i: usize) -> bool {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        let fresh = self.used[w] & b == 0;
        self.used[w] |= b;
        fresh
    }
}

static POOL: IrqLock<Option<Pool>> = IrqLock::new(None);

/// Takes over the `UserPool` region of the memory map (the largest one, if several); once
/// (a later call changes nothing).
pub(crate) fn init() {
    if POOL.lock().is_some() {
        return;
    }
    let bi = crate::boot::info();
    let region = bi
        .mem_regions()
        .iter()
        .filter(|r| MemRegionKind::from_raw(r.kind) == Some(MemRegionKind::UserPool))
        .filter(|r| {
            r.base % PAGE_SIZE == 0 && r.base.checked_add(r.len).is_some_and(|e| e <= bi.mem_size)
        })
        .max_by_key(|r| r.len);
    let Some(r) = region else {
        return;
    };
    take_over(r.base, r.len / PAGE_SIZE);
}

/// Makes the `pages` frames from `base` the pool.
fn take_over(base: u64, pages: u64) {
    pool_mem::init(base, pages * PAGE_SIZE);
    #[cfg(not(test))]
    let pool = Pool::for_boot(base, pages as usize);
    #[cfg(test)]
    let pool = Pool::with_frames(base, pages as usize);
    *POOL.lock() = Some(pool);
}

/// The check of an adoption (`linux/handover/adopt.rs`): [`Pool::adopt`] of `frames` on a
/// fresh pool `[start, end)` (the adopted tenant's, not necessarily this kernel's). `Err`
/// names a frame that is not a free frame of it. The switch adopts on the live pool.
pub(crate) fn check_adoption(
    start: u64,
    end: u64,
    frames: &alloc::collections::BTreeMap<u64, u32>,
) -> Result<(), u64> {
    let pages = end.saturating_sub(start) / PAGE_SIZE;
    let mut shadow = Pool::with_frames(start, usize::try_from(pages).map_err(|_| start)?);
    shadow.adopt(frames)
}

/// The switch's adoption (`linux/handover/adopt.rs`, boot command `ADOPT` without `CHECK`):
/// [`Pool::adopt`] of `frames` on this kernel's own pool, which must be the adopted tenant's
/// `[start, end)` and must not have handed out any frame yet (called right after [`init`]).
/// `Err` names a frame that is not a free frame of it (`start` when the pool is another
/// one, or none); nothing changes then.
pub(crate) fn adopt_live(
    start: u64,
    end: u64,
    frames: &alloc::collections::BTreeMap<u64, u32>,
) -> Result<(), u64> {
    adopt_on(&mut POOL.lock(), start, end, frames)
}

/// [`adopt_live`] on `pool`.
fn adopt_on(
    pool: &mut Option<Pool>,
    start: u64,
    end: u64,
    frames: &alloc::collections::BTreeMap<u64, u32>,
) -> Result<(), u64> {
    match pool {
        Some(p)
            if p.base == start
                && Some(end) == p.base.checked_add(p.refs.len() as u64 * PAGE_SIZE) =>
        {
            p.adopt(frames)
        }
        _ => Err(start),
    }
}

/// Host unit tests: a pool of 8192 frames at a made-up guest-physical address, in heap memory
/// (`pool_mem`), set up once for the whole test process.
#[cfg(test)]
pub(crate) fn init_for_tests() {
    static ONCE: spin::Once<()> = spin::Once::new();
    ONCE.call_once(|| take_over(TEST_POOL_BASE, 8192));
}

/// Where the host unit tests' pool starts.
#[cfg(test)]
pub(crate) const TEST_POOL_BASE: u64 = 0x4000_0000;

/// `(base, len)` of the pool, if there is one.
pub(crate) fn range() -> Option<(u64, u64)> {
    POOL.lock()
        .as_ref()
        .map(|p| (p.base, p.refs.len() as u64 * PAGE_SIZE))
}

/// Free and total frames.
pub(crate) fn stats() -> (usize, usize) {
    POOL.lock()
        .as_ref()
        .map_or((0, 0), |p| (p.nfree, p.refs.len()))
}

/// Frames in the balloon.
pub(crate) fn ballooned() -> usize {
    POOL.lock().as_ref().map_or(0, |p| p.ballooned)
}

/// Takes up to `want` free frames into the balloon, leaving `reserve` free (see
/// [`Pool::inflate`]): the runs written to `out` and the frames taken.
pub(crate) fn balloon_inflate(
    want: u64,
    reserve: u64,
    cur: &mut BalloonCursor,
    out: &mut [BalloonRange],
) -> (usize, u64) {
    POOL.lock()
        .as_mut()
        .map_or((0, 0), |p| p.inflate(want, reserve, cur, out))
}

/// Gives up to `want` frames of the balloon back (see [`Pool::deflate`]).
pub(crate) fn balloon_deflate(
    want: u64,
    cur: &mut BalloonCursor,
    out: &mut [BalloonRange],
) -> (usize, u64) {
    POOL.lock()
        .as_mut()
        .map_or((0, 0), |p| p.deflate(want, cur, out))
}

/// Undoes an inflation the host refused.
pub(crate) fn balloon_undo(ranges: &[BalloonRange]) {
    if let Some(p) = POOL.lock().as_mut() {
        p.undo(ranges);
    }
}

/// Allocates one frame (reference count 1), contents undefined.
pub(crate) fn alloc() -> Result<u64, Errno> {
    alloc_inner().map(|(gpa, _)| gpa)
}

/// One frame: `(gpa, never used before)`.
fn alloc_inner() -> Result<(u64, bool), Errno> {
    let mut g = POOL.lock();
    let p = g.as_mut().ok_or(Errno::ENOMEM)?;
    let i = p.pop_free().ok_or(Errno::ENOMEM)?;
    p.refs[i as usize] = 1;
    let fresh = p.first_use(i as usize);
    Ok((p.base + u64::from(i) * PAGE_SIZE, fresh))
}

/// Allocates one zero-filled frame (cleared only if it was used before).
pub(crate) fn alloc_zeroed() -> Result<u64, Errno> {
    let (gpa, fresh) = alloc_inner()?;
    if !fresh {
        pool_mem::zero(gpa, PAGE_SIZE as usize);
    }
    Ok(gpa)
}

fn index(p: &Pool, gpa: u64) -> usize {
    let i = ((gpa - p.base) / PAGE_SIZE) as usize;
    assert!(
        gpa >= p.base && i < p.refs.len(),
        "frame {gpa:#x} is not a pool frame"
    );
    i
}

/// Whether `gpa` is a host file window's page (`linux/window.rs`): not a pool frame, never
/// counted, never freed.
fn is_window(gpa: u64) -> bool {
    pvmux_hypercalls::window::slot_of(gpa).is_some()
}

/// Adds a reference (a second mapping after `fork`).
pub(crate) fn get(gpa: u64) {
    if is_window(gpa) {
        return;
    }
    let mut g = POOL.lock();
    let p = g.as_mut().expect("user pool");
    let i = index(p, gpa);
    p.refs[i] = p.refs[i].checked_add(1).expect("pool refcount overflow");
}

/// Adds a reference to each of `frames` (a `fork`'s page map) under one lock.
pub(crate) fn get_many(frames: &[u64]) {
    let mut g = POOL.lock();
    let p = g.as_mut().expect("user pool");
    for &gpa in frames.iter().filter(|&&g| !is_window(g)) {
        let i = index(p, gpa);
        p.refs[i] = p.refs[i].checked_add(1).expect("pool refcount overflow");
    }
}

/// Drops a reference; the frame is free when the last one goes.
pub(crate) fn put(gpa: u64) {
    if is_window(gpa) {
        return;
    }
    let mut g = POOL.lock();
    let p = g.as_mut().expect("user pool");
    p.drop_ref(gpa);
    p.compact();
}

/// Drops a reference to each of `frames` ([`put`]), in reverse order, under one lock: the
/// free stack hands out the frame pushed last first, so frames released in ascending order
/// (an address space's pages, a run unmapped) come back in ascending order, as runs a user
/// sandbox maps with one operation.
pub(crate) fn put_all(frames: Vec<u64>) {
    let mut g = POOL.lock();
    let p = g.as_mut().expect("user pool");
    for gpa in frames.into_iter().rev().filter(|&g| !is_window(g)) {
        p.drop_ref(gpa);
    }
    p.compact();
}

/// The frame's reference count (a window's page: `u16::MAX`, shared by everyone: a write
/// always copies it).
pub(crate) fn refs(gpa: u64) -> u16 {
    if is_window(gpa) {
        return u16::MAX;
    }
    let g = POOL.lock();
    let p = g.as_ref().expect("user pool");
    p.refs[index(p, gpa)]
}

/// Allocates `pages` physically contiguous frames (for context regions), zero-filled.
pub(crate) fn alloc_contiguous_zeroed(pages: usize) -> Result<u64, Errno> {
    let gpa = alloc_contiguous(pages)?;
    pool_mem::zero(gpa, pages * PAGE_SIZE as usize);
    Ok(gpa)
}

/// Allocates `pages` physically contiguous frames (reference count 1 each), contents
/// undefined.
pub(crate) fn alloc_contiguous(pages: usize) -> Result<u64, Errno> {
    if pages == 0 {
        return Err(Errno::EINVAL);
    }
    let mut g = POOL.lock();
    let p = g.as_mut().ok_or(Errno::ENOMEM)?;
    // Find a run of free frames; the free stack is mostly ordered, so scan the refcounts.
    let n = p.refs.len();
    let mut run = 0usize;
    let mut start = None;
    for i in (0..n).rev() {
        if p.refs[i] == 0 {
            run += 1;
            if run == pages {
                start = Some(i);
                break;
            }
        } else {
            run = 0;
        }
    }
    let s = start.ok_or(Errno::ENOMEM)?;
    for i in s..s + pages {
        p.refs[i] = 1;
        p.first_use(i);
    }
    // The frames' entries stay in the free stack, stale (skipped when popped): removing
    // them would walk the whole stack (≈200 µs with a 1 GiB guest, on every `fork` and
    // `execve`, whose context region is a contiguous allocation).
    p.nfree -= pages;
    Ok(p.base + s as u64 * PAGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of `ranges` (of one kind), in order.
    fn pages(p: &Pool, ranges: &[BalloonRange]) -> Vec<usize> {
        let mut v: Vec<usize> = ranges
            .iter()
            .flat_map(|r| {
                let first = ((r.gpa - p.base) / PAGE_SIZE) as usize;
                first..first + r.pages as usize
            })
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn adopted_frames_keep_their_references_and_no_frame_counts_as_zero_afterwards() {
        let mut p = Pool::with_frames(0x10_0000, 64);
        let a = p.pop_free().unwrap() as usize; // in use: not adoptable
        p.refs[a] = 1;
        let gpa = |i: u64| 0x10_0000 + i * PAGE_SIZE;
        let mut frames = alloc::collections::BTreeMap::new();
        frames.insert(gpa(5), 2);
        frames.insert(gpa(9), 1);
        // Refused whole, naming the frame: in use, outside the pool, unaligned, no reference.
        for (bad, k) in [
            (gpa(a as u64), 1),
            (gpa(64), 1),
            (gpa(3) + 8, 1),
            (gpa(7), 0),
        ] {
            let mut f = frames.clone();
            f.insert(bad, k);
            assert_eq!(p.adopt(&f), Err(bad));
            assert_eq!((p.refs[5], p.nfree), (0, 63), "nothing changed");
        }
        p.adopt(&frames).expect("free frames");
        assert_eq!((p.refs[5], p.refs[9], p.nfree), (2, 1, 61));
        assert!((0..64).all(|i| p.was_used(i)), "old bytes may be anywhere");
        // The adopted frames are never handed out again while referenced.
        let mut got = Vec::new();
        while let Some(i) = p.pop_free() {
            got.push(i as usize);
        }
        assert_eq!(got.len(), 61);
        assert!(!got.contains(&5) && !got.contains(&9) && !got.contains(&a));
    }

    #[test]
    fn the_live_adoption_takes_only_the_tenants_own_pool() {
        let base = 0x10_0000;
        let end = base + 64 * PAGE_SIZE;
        let mut frames = alloc::collections::BTreeMap::new();
        frames.insert(base + 3 * PAGE_SIZE, 1);
        // No pool, or another range than the record's: refused, naming its start.
        assert_eq!(adopt_on(&mut None, base, end, &frames), Err(base));
        let mut pool = Some(Pool::with_frames(base, 64));
        for (s, e) in [(base + PAGE_SIZE, end), (base, end - PAGE_SIZE)] {
            assert_eq!(adopt_on(&mut pool, s, e, &frames), Err(s));
        }
        assert_eq!(pool.as_ref().map(|p| p.nfree), Some(64), "nothing changed");
        adopt_on(&mut pool, base, end, &frames).expect("its own pool");
        let p = pool.as_ref().unwrap();
        assert_eq!((p.refs[3], p.nfree), (1, 63));
    }

    #[test]
    fn the_balloon_takes_used_frames_first_and_never_hands_them_out() {
        let mut p = Pool::with_frames(0x10_0000, 64);
        // Frames 0..8 were used and freed again; frames 8..10 are in use.
        for i in 0..10 {
            p.pop_free().unwrap();
            p.refs[i] = 1;
            p.first_use(i);
        }
        for i in (0..8).rev() {
            p.refs[i] = 0;
            p.free.push(i as u32);
            p.nfree += 1;
        }
        assert_eq!(p.nfree, 62);
        let mut out = [BalloonRange::default(); 4];
        let mut cur = BalloonCursor::default();
        // 12 frames, keeping 8 free: the 8 used ones (one run), then 4 from the top.
        let (n, taken) = p.inflate(12, 8, &mut cur, &mut out);
        assert_eq!((n, taken), (2, 12));
        assert!(out[..n].iter().all(|r| r.kind == kind::RELEASED));
        let got = pages(&p, &out[..n]);
        assert_eq!(got, [0, 1, 2, 3, 4, 5, 6, 7, 60, 61, 62, 63]);
        assert_eq!((p.nfree, p.ballooned), (50, 12));
        // No allocation gets a ballooned frame, and the reserve is never taken.
        let mut handed = Vec::new();
        while let Some(i) = p.pop_free() {
            assert_ne!(
                p.refs[i as usize], BALLOONED,
                "ballooned frame {i} handed out"
            );
            p.refs[i as usize] = 1;
            handed.push(i);
        }
        assert_eq!(handed.len(), 50);
        let (n, taken) = p.inflate(1, 0, &mut BalloonCursor::default(), &mut out);
        assert_eq!((n, taken), (0, 0), "no free frame left");
        for i in handed {
            p.refs[i as usize] = 0;
            p.free.push(i);
            p.nfree += 1;
        }
        // Giving 5 back: from the bottom, free again, in one run.
        let (n, given) = p.deflate(5, &mut BalloonCursor::default(), &mut out);
        assert_eq!((n, given), (1, 5));
        assert_eq!(out[0].kind, kind::RECLAIMED);
        assert_eq!(pages(&p, &out[..1]), [0, 1, 2, 3, 4]);
        assert_eq!((p.nfree, p.ballooned), (55, 7));
        // An inflation the host refused is undone.
        let (n, taken) = p.inflate(3, 0, &mut BalloonCursor::default(), &mut out);
        assert_eq!(taken, 3);
        p.undo(&out[..n]);
        assert_eq!((p.nfree, p.ballooned), (55, 7));
        // Everything back.
        let (_, given) = p.deflate(100, &mut BalloonCursor::default(), &mut out);
        assert_eq!(given, 7);
        assert_eq!((p.nfree, p.ballooned), (62, 0));
    }

    #[test]
    fn a_full_report_stops_the_balloon_where_the_next_one_goes_on() {
        let mut p = Pool::with_frames(0x10_0000, 32);
        // Every other frame in use: every free frame is a run of its own.
        for i in (0..32).step_by(2) {
            p.refs[i] = 1;
            p.nfree -= 1;
        }
        let mut out = [BalloonRange::default(); 3];
        let mut cur = BalloonCursor::default();
        let mut all = Vec::new();
        loop {
            let (n, taken) = p.inflate(100, 0, &mut cur, &mut out);
            assert_eq!(n as u64, taken);
            if taken == 0 {
                break;
            }
            all.extend(pages(&p, &out[..n]));
        }
        all.sort_unstable();
        assert_eq!(all, (1..32).step_by(2).collect::<Vec<_>>());
        assert_eq!((p.nfree, p.ballooned), (0, 16));
    }

    #[test]
    fn the_untouched_top_of_the_pool_is_handed_out_in_order_once() {
        let mut p = Pool::with_frames(0x10_0000, 16);
        assert!(p.free.is_empty(), "no stack is written at boot");
        assert_eq!((p.pop_free(), p.pop_free()), (Some(0), Some(1)));
        p.refs[..2].fill(1);
        // Frames 12..14 taken as a contiguous run (above `fresh`), then freed: on the stack
        // and still above `fresh`.
        for i in 12..14 {
            p.refs[i] = 1;
            p.nfree -= 1;
        }
        for i in 12..14u32 {
            p.refs[i as usize] = 0;
            p.free.push(i);
            p.nfree += 1;
        }
        // Frame 1 freed: reused first.
        p.refs[1] = 0;
        p.free.push(1);
        p.nfree += 1;
        let mut got = Vec::new();
        while let Some(i) = p.pop_free() {
            assert_eq!(p.refs[i as usize], 0, "frame {i} handed out twice");
            p.refs[i as usize] = 1;
            got.push(i);
        }
        assert_eq!(
            got[..3],
            [1, 13, 12],
            "freed frames first, the last freed first"
        );
        got.sort_unstable();
        assert_eq!(got, (1..16).collect::<Vec<_>>(), "every free frame once");
        assert_eq!(p.nfree, 0);
        // A rebuild counts the free frames below and above `fresh` alike.
        for i in [3u32, 15] {
            p.refs[i as usize] = 0;
        }
        p.fresh = 10;
        p.free = alloc::vec![3; 40];
        p.compact();
        assert_eq!((p.free.clone(), p.nfree), (alloc::vec![3], 2));
    }

    #[test]
    fn frames_of_contiguous_allocations_are_never_handed_out_twice() {
        init_for_tests();
        let mut held = Vec::new();
        for round in 0..4 {
            // Contiguous runs leave stale entries in the free stack; freeing them pushes
            // the frames again (duplicates).
            let base = alloc_contiguous(8).unwrap();
            for i in 0..8 {
                assert_eq!(refs(base + i * PAGE_SIZE), 1);
            }
            if round % 2 == 0 {
                for i in 0..8 {
                    put(base + i * PAGE_SIZE);
                }
            } else {
                held.extend((0..8).map(|i| base + i * PAGE_SIZE));
            }
            for _ in 0..64 {
                let f = alloc().unwrap();
                assert_eq!(refs(f), 1, "frame {f:#x} handed out twice");
                held.push(f);
            }
        }
        let mut sorted = held.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), held.len());
        for f in held {
            put(f);
        }
    }
}
