//! The user-page pool: the frames of the boot memory map's `UserPool` region, the only
//! guest memory a user sandbox can map. Reference counted (copy-on-write sharing after
//! `fork`); kernel data never lives here. This module only keeps the books: the frames'
//! bytes are reached through the framework's copies (`crate::mm::pool_mem`).

use alloc::vec::Vec;
use pvmux_hypercalls::{MemRegionKind, PAGE_SIZE};

use super::Errno;
use crate::irq::IrqLock;
use crate::mm::pool_mem;

/// Pool state.
struct Pool {
    /// First guest-physical address of the pool.
    base: u64,
    /// Reference count per frame (0 = free).
    refs: Vec<u16>,
    /// Free frame indices (a stack; pushed in reverse so fresh allocations ascend). May
    /// also hold *stale* entries, frames a contiguous allocation took without searching the
    /// stack for them (see [`alloc_contiguous`]): an entry is only used if its frame's
    /// reference count is 0 when it is popped, and the stack is rebuilt from the reference
    /// counts when stale entries pile up ([`Pool::compact`]).
    free: Vec<u32>,
    /// Free frames (the stack's length minus its stale entries).
    nfree: usize,
    /// Per frame: ever handed out since boot. Frames never used still hold the zeros the
    /// host's fresh memfd pages start with, so zero-filled allocations can skip clearing
    /// them (and skip touching the page at all, which in a nested VM is a host page fault).
    used: Vec<u64>,
}

impl Pool {
    /// Pops a free frame off the stack, skipping stale entries.
    fn pop_free(&mut self) -> Option<u32> {
        while let Some(i) = self.free.pop() {
            if self.refs[i as usize] == 0 {
                self.nfree -= 1;
                return Some(i);
            }
        }
        None
    }

    /// Rebuilds the free stack from the reference counts (dropping stale and duplicate
    /// entries) once it holds more than twice as many entries as there are frames: linear
    /// time, amortised over at least as many contiguous allocations' frames.
    fn compact(&mut self) {
        if self.free.len() <= 2 * self.refs.len() {
            return;
        }
        self.free.clear();
        let refs = &self.refs;
        self.free.extend(
            (0..refs.len() as u32)
                .rev()
                .filter(|&i| refs[i as usize] == 0),
        );
        self.nfree = self.free.len();
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
    let n = pages as usize;
    let mut free = Vec::with_capacity(n);
    free.extend((0..n as u32).rev());
    *POOL.lock() = Some(Pool {
        base,
        refs: alloc::vec![0; n],
        nfree: n,
        free,
        used: alloc::vec![0; n.div_ceil(64)],
    });
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

/// Adds a reference (a second mapping after `fork`).
pub(crate) fn get(gpa: u64) {
    let mut g = POOL.lock();
    let p = g.as_mut().expect("user pool");
    let i = index(p, gpa);
    p.refs[i] = p.refs[i].checked_add(1).expect("pool refcount overflow");
}

/// Adds a reference to each of `frames` (a `fork`'s page map) under one lock.
pub(crate) fn get_many(frames: &[u64]) {
    let mut g = POOL.lock();
    let p = g.as_mut().expect("user pool");
    for &gpa in frames {
        let i = index(p, gpa);
        p.refs[i] = p.refs[i].checked_add(1).expect("pool refcount overflow");
    }
}

/// Adds a reference to each of the `n` frames from `gpa` under one lock.
pub(crate) fn get_run(gpa: u64, n: u64) {
    let mut g = POOL.lock();
    let p = g.as_mut().expect("user pool");
    for k in 0..n {
        let i = index(p, gpa + k * PAGE_SIZE);
        p.refs[i] = p.refs[i].checked_add(1).expect("pool refcount overflow");
    }
}

/// Drops a reference; the frame is free when the last one goes.
pub(crate) fn put(gpa: u64) {
    let mut g = POOL.lock();
    let p = g.as_mut().expect("user pool");
    let i = index(p, gpa);
    assert!(p.refs[i] > 0, "double free of pool frame {gpa:#x}");
    p.refs[i] -= 1;
    if p.refs[i] == 0 {
        p.free.push(i as u32);
        p.nfree += 1;
        p.compact();
    }
}

/// The frame's reference count.
pub(crate) fn refs(gpa: u64) -> u16 {
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
