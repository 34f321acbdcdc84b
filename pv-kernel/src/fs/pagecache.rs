//! The page cache: file contents in user-pool frames.
//!
//! A [`PageObject`] holds the pages of one file by page index (one pool frame each, with one
//! reference of the object's own; holes unstored). It is the one currency of file memory:
//!
//! * a guest-written file's contents (`ramfs` `Data::Pages`): read and write copy to and
//!   from its frames;
//! * the cached bytes of a `--rootfs` host file (`Data::Host`): *clean* pages, filled from
//!   the host on the first read (with read-ahead) and dropped again under memory pressure
//!   ([`shrink`]);
//! * shared memory: a `MAP_SHARED` mapping of a file maps the object's frames themselves
//!   (`linux::shmem::ShmRef` names an object and a page offset), so the mapping, `read` and
//!   `write` all see the same bytes — `msync` has nothing to do and `munmap` keeps the data;
//!   anonymous shared memory is an object no file names;
//! * private file mappings and program images map the object's frames copy-on-write.
//!
//! Because the frames are pool frames, file data scales with the pool (three quarters of
//! guest memory), not with the kernel's heap or frames; the filesystem's tmpfs-like limit
//! (`ramfs::Limits`, half of memory) bounds guest-written contents, and clean host pages are
//! bounded to half of the pool and reclaimable.
//!
//! The frames are user-pool memory a hostile program can map (docs/SECURITY.md): the kernel
//! only ever copies them (`mm::pool_mem`) and never parses file data in place.
//!
//! Lock order: the filesystem lock, or an address space's memory-map lock, then an object's
//! lock, then the pool's. [`shrink`] (called when the pool is short, with any of those locks
//! possibly held) only *tries* object locks, so it never waits for one its caller holds.
//!
//! Other kinds of file (a writable `--volume` file, a `memfd`) can keep their contents in a
//! [`PageObject`] too: `new_owned` for data the guest owns, `new_clean` for a cache of data
//! held elsewhere; a write-through file calls [`PageObject::write`] and its own backend.

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pvmux_hypercalls::PAGE_SIZE;

use crate::fs::errno::Errno;
use crate::irq::IrqLock;
use crate::linux::pool;
use crate::mm::pool_mem;

/// Bytes per page.
const PAGE: usize = PAGE_SIZE as usize;

/// Pages held by objects that own their data (guest-written files, shared memory).
static OWNED_PAGES: AtomicU64 = AtomicU64::new(0);
/// Clean pages cached from elsewhere (the host share), reclaimable.
static CLEAN_PAGES: AtomicU64 = AtomicU64::new(0);
/// Clean pages dropped under memory pressure since boot.
static RECLAIMED: AtomicU64 = AtomicU64::new(0);
/// Cache lookups that found their page / that had to fill it.
static HITS: AtomicU64 = AtomicU64::new(0);
static MISSES: AtomicU64 = AtomicU64::new(0);

/// The page cache's figures, for `/proc/meminfo` and the like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Pages of data the guest owns (written files, shared memory): `Shmem` in meminfo.
    pub(crate) owned_pages: u64,
    /// Clean cached pages of host files (reclaimable): part of `Cached`.
    pub(crate) clean_pages: u64,
    /// Clean pages dropped under memory pressure since boot.
    pub(crate) reclaimed_pages: u64,
    /// Reads served from cached pages / reads that filled pages.
    pub(crate) hits: u64,
    /// See `hits`.
    pub(crate) misses: u64,
    /// Free and total frames of the user pool.
    pub(crate) pool_free: u64,
    /// See `pool_free`.
    pub(crate) pool_total: u64,
}

/// The cache's figures now.
pub(crate) fn stats() -> Stats {
    let (free, total) = pool::stats();
    Stats {
        owned_pages: OWNED_PAGES.load(Ordering::Relaxed),
        clean_pages: CLEAN_PAGES.load(Ordering::Relaxed),
        reclaimed_pages: RECLAIMED.load(Ordering::Relaxed),
        hits: HITS.load(Ordering::Relaxed),
        misses: MISSES.load(Ordering::Relaxed),
        pool_free: free as u64,
        pool_total: total as u64,
    }
}

/// Counts a lookup (`hit`: served from the cache).
pub(crate) fn count_lookup(hit: bool) {
    let c = if hit { &HITS } else { &MISSES };
    c.fetch_add(1, Ordering::Relaxed);
}

/// The pages of one file (or shared memory object).
pub(crate) struct PageObject {
    /// Page index → pool frame (the object's own reference).
    pages: IrqLock<BTreeMap<u64, u64>>,
    /// A clean cache of data kept elsewhere: its pages may be dropped at any time.
    clean: AtomicBool,
}

/// Objects holding clean pages, oldest first ([`shrink`] drops their pages).
static CLEAN_OBJECTS: IrqLock<Vec<Weak<PageObject>>> = IrqLock::new(Vec::new());

impl PageObject {
    /// An empty object for data the guest owns: every page reads as zero until written.
    pub(crate) fn new_owned() -> Arc<Self> {
        Arc::new(Self {
            pages: IrqLock::new(BTreeMap::new()),
            clean: AtomicBool::new(false),
        })
    }

    /// An empty clean cache of data kept elsewhere (reclaimable pages).
    pub(crate) fn new_clean() -> Arc<Self> {
        let o = Arc::new(Self {
            pages: IrqLock::new(BTreeMap::new()),
            clean: AtomicBool::new(true),
        });
        let mut reg = CLEAN_OBJECTS.lock();
        if reg.len() >= 64 && reg.len().is_power_of_two() {
            reg.retain(|w| w.strong_count() > 0);
        }
        reg.push(Arc::downgrade(&o));
        o
    }

    /// Whether the object is a clean (reclaimable) cache.
    pub(crate) fn is_clean(&self) -> bool {
        self.clean.load(Ordering::Acquire)
    }

    fn counter(clean: bool) -> &'static AtomicU64 {
        if clean {
            &CLEAN_PAGES
        } else {
            &OWNED_PAGES
        }
    }

    /// Makes a clean cache the owner of its data (the file was copied up: its pages are
    /// no longer reclaimable).
    pub(crate) fn make_owned(&self) {
        let pages = self.pages.lock();
        if self.clean.swap(false, Ordering::AcqRel) {
            let n = pages.len() as u64;
            CLEAN_PAGES.fetch_sub(n, Ordering::Relaxed);
            OWNED_PAGES.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Pages held.
    pub(crate) fn page_count(&self) -> u64 {
        self.pages.lock().len() as u64
    }

    /// Every page held: (index, frame), in index order.
    pub(crate) fn frames(&self) -> Vec<(u64, u64)> {
        self.pages.lock().iter().map(|(&i, &g)| (i, g)).collect()
    }

    /// Whether page `index` is present.
    pub(crate) fn has(&self, index: u64) -> bool {
        self.pages.lock().contains_key(&index)
    }

    /// Inserts frame `gpa` (filled by the caller, one reference handed over) as page
    /// `index`; if the page is present already, the new frame is released instead.
    pub(crate) fn insert(&self, index: u64, gpa: u64) {
        let mut pages = self.pages.lock();
        if pages.contains_key(&index) {
            drop(pages);
            pool::put(gpa);
            return;
        }
        pages.insert(index, gpa);
        Self::counter(self.is_clean()).fetch_add(1, Ordering::Relaxed);
    }

    /// The frame of page `index`, allocated with `alloc` (which must return a zero-filled
    /// frame with one reference) if the object has none yet. The caller gets a reference of
    /// its own on the returned frame.
    pub(crate) fn frame(
        &self,
        index: u64,
        alloc: impl FnOnce() -> Result<u64, Errno>,
    ) -> Result<u64, Errno> {
        let mut pages = self.pages.lock();
        let gpa = match pages.get(&index) {
            Some(&gpa) => gpa,
            None => {
                let gpa = alloc()?;
                pages.insert(index, gpa);
                Self::counter(self.is_clean()).fetch_add(1, Ordering::Relaxed);
                gpa
            }
        };
        pool::get(gpa);
        Ok(gpa)
    }

    /// The frame of page `index` if it exists, with a reference taken for the caller.
    pub(crate) fn existing(&self, index: u64) -> Option<u64> {
        let pages = self.pages.lock();
        let gpa = *pages.get(&index)?;
        pool::get(gpa);
        Some(gpa)
    }

    /// Copies the bytes at `off` into `buf`; missing pages read as zeros.
    pub(crate) fn read(&self, off: u64, buf: &mut [u8]) {
        let pages = self.pages.lock();
        let mut done = 0;
        while done < buf.len() {
            let pos = off + done as u64;
            let (idx, in_page) = (pos / PAGE_SIZE, (pos % PAGE_SIZE) as usize);
            let k = (PAGE - in_page).min(buf.len() - done);
            let dst = &mut buf[done..done + k];
            match pages.get(&idx) {
                Some(&gpa) => pool_mem::read(gpa + in_page as u64, dst),
                None => dst.fill(0),
            }
            done += k;
        }
    }

    /// Copies the bytes at `off` into `buf` if every page they lie in is present; false
    /// (with `buf` partly filled) if one is missing.
    pub(crate) fn read_cached(&self, off: u64, buf: &mut [u8]) -> bool {
        let pages = self.pages.lock();
        let mut done = 0;
        while done < buf.len() {
            let pos = off + done as u64;
            let (idx, in_page) = (pos / PAGE_SIZE, (pos % PAGE_SIZE) as usize);
            let k = (PAGE - in_page).min(buf.len() - done);
            let Some(&gpa) = pages.get(&idx) else {
                return false;
            };
            pool_mem::read(gpa + in_page as u64, &mut buf[done..done + k]);
            done += k;
        }
        true
    }

    /// Copies `data` to offset `off`, taking a zeroed frame from `take` for every missing
    /// page. Returns the bytes written: all of them, or fewer if `take` failed after some
    /// (its error if it failed before any).
    pub(crate) fn write(
        &self,
        off: u64,
        data: &[u8],
        take: &mut dyn FnMut() -> Result<u64, Errno>,
    ) -> Result<usize, Errno> {
        let mut pages = self.pages.lock();
        let counter = Self::counter(self.is_clean());
        let mut done = 0;
        while done < data.len() {
            let pos = off + done as u64;
            let (idx, in_page) = (pos / PAGE_SIZE, (pos % PAGE_SIZE) as usize);
            let k = (PAGE - in_page).min(data.len() - done);
            let gpa = match pages.get(&idx) {
                Some(&g) => g,
                None => match take() {
                    Ok(g) => {
                        pages.insert(idx, g);
                        counter.fetch_add(1, Ordering::Relaxed);
                        g
                    }
                    Err(e) if done == 0 => return Err(e),
                    Err(_) => break,
                },
            };
            pool_mem::write(gpa + in_page as u64, &data[done..done + k]);
            done += k;
        }
        Ok(done)
    }

    /// Pages missing among `first..end` (indices).
    pub(crate) fn missing(&self, first: u64, end: u64) -> Vec<u64> {
        let pages = self.pages.lock();
        (first..end).filter(|i| !pages.contains_key(i)).collect()
    }

    /// Cuts the object to `len` bytes: pages past it are released, the tail of the last
    /// one is zeroed (a later growth reads zeros there). Returns the pages released.
    pub(crate) fn truncate(&self, len: u64) -> u64 {
        let mut pages = self.pages.lock();
        let dropped = pages.split_off(&len.div_ceil(PAGE_SIZE));
        let tail = (len % PAGE_SIZE) as usize;
        if tail != 0 {
            if let Some(&gpa) = pages.get(&(len / PAGE_SIZE)) {
                pool_mem::zero(gpa + tail as u64, PAGE - tail);
            }
        }
        let n = dropped.len() as u64;
        Self::counter(self.is_clean()).fetch_sub(n, Ordering::Relaxed);
        drop(pages);
        #[cfg(test)]
        test_budget::give_back(n);
        for gpa in dropped.into_values() {
            pool::put(gpa);
        }
        n
    }

    /// Drops every page of a clean object, if its lock is free now; returns the pages.
    fn evict(&self) -> u64 {
        let Some(mut pages) = self.pages.try_lock() else {
            return 0;
        };
        if !self.is_clean() {
            return 0;
        }
        let all = core::mem::take(&mut *pages);
        let n = all.len() as u64;
        CLEAN_PAGES.fetch_sub(n, Ordering::Relaxed);
        drop(pages);
        for gpa in all.into_values() {
            pool::put(gpa);
        }
        n
    }
}

impl Drop for PageObject {
    fn drop(&mut self) {
        // No file or region refers to the object any more; address spaces that mapped its
        // frames hold references of their own until their sandboxes have unmapped them.
        let all = core::mem::take(self.pages.get_mut());
        Self::counter(*self.clean.get_mut()).fetch_sub(all.len() as u64, Ordering::Relaxed);
        #[cfg(test)]
        test_budget::give_back(all.len() as u64);
        for (_, gpa) in all {
            pool::put(gpa);
        }
    }
}

/// Drops clean cached pages, oldest objects first, until at least `want` pages were
/// released or none are left; returns whether any were. Objects whose lock is busy are
/// skipped (the caller may hold one).
pub(crate) fn shrink(want: u64) -> bool {
    let objs: Vec<Arc<PageObject>> = {
        let mut reg = CLEAN_OBJECTS.lock();
        reg.retain(|w| w.upgrade().is_some_and(|o| o.is_clean()));
        reg.iter().filter_map(Weak::upgrade).collect()
    };
    let mut freed = 0;
    for o in &objs {
        if freed >= want {
            break;
        }
        freed += o.evict();
    }
    RECLAIMED.fetch_add(freed, Ordering::Relaxed);
    // Dropping `objs` may drop the last reference to an object: no lock is held here.
    drop(objs);
    freed > 0
}

/// Most clean pages kept: half of the pool (the rest stays for programs).
pub(crate) fn clean_budget() -> u64 {
    pool::stats().1 as u64 / 2
}

/// Makes room for `pages` more clean pages within [`clean_budget`].
pub(crate) fn make_room_for_clean(pages: u64) {
    let have = CLEAN_PAGES.load(Ordering::Relaxed);
    let budget = clean_budget();
    if have + pages > budget {
        shrink((have + pages - budget).max(budget / 8));
    }
}

/// A zeroed pool frame for file data; when the pool is empty, clean cached pages, dead
/// address spaces' frames and the program image cache are released first.
pub(crate) fn alloc_frame() -> Result<u64, Errno> {
    #[cfg(test)]
    {
        pool::init_for_tests();
        if !test_budget::take() {
            return Err(Errno::ENOMEM);
        }
    }
    pool::alloc_zeroed().or_else(|_| {
        shrink(256);
        crate::linux::space::alloc_reclaiming(pool::alloc_zeroed)
    })
}

/// Host unit tests: a per-thread budget of frames ([`set_test_frame_budget`]).
#[cfg(test)]
mod test_budget {
    std::thread_local! {
        static LEFT: core::cell::Cell<Option<u64>> = const { core::cell::Cell::new(None) };
    }

    /// Takes one frame of the budget; false when it is spent.
    pub(super) fn take() -> bool {
        LEFT.with(|b| match b.get() {
            Some(0) => false,
            Some(n) => {
                b.set(Some(n - 1));
                true
            }
            None => true,
        })
    }

    /// Gives `n` frames back to the budget (they were released).
    pub(super) fn give_back(n: u64) {
        LEFT.with(|b| {
            if let Some(left) = b.get() {
                b.set(Some(left + n));
            }
        });
    }

    /// This thread may allocate `pages` more frames (`None`: unlimited).
    pub(crate) fn set(pages: Option<u64>) {
        LEFT.with(|b| b.set(pages));
    }
}

/// Host unit tests: this thread may allocate `pages` more file frames (`None`: unlimited).
#[cfg(test)]
pub(crate) fn set_test_frame_budget(pages: Option<u64>) {
    test_budget::set(pages);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_writes_holes_read_zero_and_truncate_zeroes_the_tail() {
        let o = PageObject::new_owned();
        let data: Vec<u8> = (0..3 * PAGE + 100).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            o.write(PAGE as u64 * 5 + 7, &data, &mut alloc_frame),
            Ok(data.len())
        );
        assert_eq!(o.page_count(), 4);
        let mut back = alloc::vec![0xAAu8; data.len() + 7 + PAGE];
        o.read(PAGE as u64 * 4, &mut back);
        assert!(back[..PAGE + 7].iter().all(|&b| b == 0), "hole and gap");
        assert_eq!(&back[PAGE + 7..], &data[..]);
        assert_eq!(o.truncate(PAGE as u64 * 6 + 10), 2);
        let mut t = alloc::vec![0xAAu8; PAGE];
        o.read(PAGE as u64 * 6, &mut t);
        assert_eq!(&t[..10], &data[PAGE - 7..PAGE + 3]);
        assert!(t[10..].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_mapping_sees_the_frame_write_changes_and_keeps_it_after_the_object() {
        let o = PageObject::new_owned();
        let gpa = o.frame(2, alloc_frame).unwrap();
        assert_eq!(pool::refs(gpa), 2);
        assert_eq!(
            o.write(2 * PAGE as u64 + 1, b"xyz", &mut alloc_frame),
            Ok(3)
        );
        let mut b = [0u8; 4];
        pool_mem::read(gpa, &mut b);
        assert_eq!(&b, b"\0xyz");
        drop(o);
        assert_eq!(pool::refs(gpa), 1, "the mapping's reference stays");
        pool::put(gpa);
    }

    #[test]
    fn clean_pages_are_reclaimed_owned_ones_are_not() {
        let clean = PageObject::new_clean();
        let owned = PageObject::new_owned();
        clean.write(0, &[1u8; 2 * PAGE], &mut alloc_frame).unwrap();
        owned.write(0, &[2u8; PAGE], &mut alloc_frame).unwrap();
        // (Object by object: a global `shrink` would race with other tests' caches.)
        assert_eq!(clean.evict(), 2);
        assert_eq!(clean.page_count(), 0);
        assert_eq!(owned.evict(), 0);
        assert_eq!(owned.page_count(), 1);
        let c2 = PageObject::new_clean();
        c2.write(0, &[3u8; PAGE], &mut alloc_frame).unwrap();
        c2.make_owned();
        assert_eq!(c2.evict(), 0, "copied up: owned now");
        assert_eq!(c2.page_count(), 1);
        // A busy object is skipped, not waited for.
        let c3 = PageObject::new_clean();
        c3.write(0, &[4u8; PAGE], &mut alloc_frame).unwrap();
        let held = c3.pages.lock();
        assert_eq!(c3.evict(), 0);
        drop(held);
        assert_eq!(c3.evict(), 1);
    }
}
