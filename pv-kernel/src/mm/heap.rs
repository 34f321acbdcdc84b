//! The kernel heap: `linked_list_allocator` arenas over contiguous frames in the direct map,
//! growing on demand from the frame allocator up to a bound, with a headroom gate for
//! allocations made on a program's behalf.
//!
//! # Layout and growth
//!
//! The first arena is carved at boot ([`init`], mem/8 clamped to 4–64 MiB, as before). When
//! no arena can satisfy an allocation, the heap takes another physically contiguous block of
//! frames ([`GROW_STEP`] or more) from the frame allocator and adds it as a new arena, up to
//! [`max_size`] in total (3/4 of the kernel's own memory, the frames below the user pool).
//! Arenas live in the direct map, so every heap block is physically contiguous and has a
//! guest-physical address (hypercall buffers and kernel stacks rely on that). The heap never
//! shrinks: memory freed inside it is reused by later kernel allocations, not given back to
//! the frame allocator. Growth for an allocation that did not ask through [`charge`] may use
//! the frame allocator's reserve if it is small (under [`GROW_STEP`]: kernel bookkeeping), not
//! if it is large. Contiguous blocks come only from the frame allocator's bump area (its free
//! list holds single frames), so once file pages used the bump area up, the heap stays at its
//! size even if frames are free again, and the gate refuses program-driven allocations.
//!
//! # The headroom gate: [`charge`] / [`has_headroom`]
//!
//! Rust's collections allocate infallibly (a failed allocation is `handle_alloc_error`, a
//! panic that ends the tenant), and much kernel bookkeeping has no way to fail gracefully.
//! So the heap keeps a *reserve* ([`reserve`]: 1/16 of the first arena, at least 512 KiB)
//! for itself, and anything a program can make the kernel allocate asks first:
//!
//! ```text
//! crate::mm::heap::charge(bytes)?; // Err(OutOfMemory) → ENOMEM / ENOSPC / EAGAIN to the program
//! let v = Vec::with_capacity(n);    // now cannot exhaust the heap
//! ```
//!
//! `charge(bytes)` succeeds iff, after `bytes` more, at least [`reserve`] bytes of the heap
//! stay free, growing the heap if needed and possible. Growth on a program's behalf keeps the
//! frame allocator's own reserve (`frame::RESERVE`) free, so page tables and kernel stacks
//! still find frames. It is a *gate*, not an account: nothing is "uncharged" later, the
//! memory comes back when the objects are dropped. Call it once per operation with a generous
//! estimate (`size_of` the objects plus names and ~64 bytes per map entry), right before the
//! allocations, and prefer `try_reserve` where a collection grows by a program-chosen amount.
//! Kernel-internal allocations that do not ask (and cannot fail) still succeed below the
//! watermark: the reserve is theirs. `OutOfMemory` converts to `Errno::ENOMEM`.
//!
//! # Small blocks
//!
//! `linked_list_allocator` is first fit over one list of holes: every allocation and free
//! walks it, so a heap holding many small blocks with holes between them (tens of thousands
//! of inodes, names and map nodes) made each operation linear and creating N files
//! quadratic. Blocks of at most [`SMALL_MAX`] bytes (alignment at most [`SMALL_ALIGN`]) are
//! therefore kept in per-size bins ([`Bins`], a segregated free list as a slab allocator's):
//! freeing one pushes it on its size class's list and allocating pops one, both O(1); only a
//! bin miss goes to the arenas. Binned blocks count as free for [`charge`] and [`stats`], and
//! an allocation the arenas cannot satisfy first gives every binned block back to them
//! ([`Arenas::drain_bins`]) before growing, so bins never make an allocation fail.
//!
//! The heap lock is an [`IrqLock`], so allocating from event handlers is allowed (an event
//! cannot interrupt a holder on the same vCPU). The heap is never touched by the page-fault
//! path, so exceptions cannot re-enter it either. Lock order: heap, then frames.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use linked_list_allocator::Heap;
use pvmux_hypercalls::PAGE_SIZE;

use crate::irq::IrqLock;

/// The most arenas (the first one and the grown ones).
const MAX_ARENAS: usize = 64;
/// Smallest growth step.
pub(crate) const GROW_STEP: usize = 2 << 20;
/// Smallest headroom reserve.
const MIN_RESERVE: usize = 512 << 10;

/// The heap does not have `bytes` to spare above its reserve (and cannot grow enough).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutOfMemory {
    /// The bytes asked for.
    pub(crate) bytes: usize,
}

impl core::fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "kernel heap: no headroom for {} bytes", self.bytes)
    }
}

/// Largest block kept in a size bin.
const SMALL_MAX: usize = 1024;
/// Largest alignment a binned block satisfies (every class is a multiple of it).
const SMALL_ALIGN: usize = 16;
/// The size classes, ascending (multiples of [`SMALL_ALIGN`]).
const CLASSES: [usize; 12] = [16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024];

/// The size class of `layout`, if it is binned.
fn class_of(layout: Layout) -> Option<usize> {
    if layout.align() > SMALL_ALIGN || layout.size() > SMALL_MAX {
        return None;
    }
    CLASSES.iter().position(|&c| c >= layout.size().max(1))
}

/// Free small blocks by size class: each list is threaded through the blocks themselves
/// (their first 8 bytes hold the next block's address, 0 at the end).
struct Bins {
    heads: [usize; CLASSES.len()],
    /// Bytes held in all lists.
    bytes: usize,
}

/// The arenas and their bounds.
struct Arenas {
    heaps: [Heap; MAX_ARENAS],
    bins: Bins,
    /// `[start, end)` of each arena's memory.
    ranges: [(usize, usize); MAX_ARENAS],
    /// Arenas in use.
    n: usize,
    /// Largest total size.
    max: usize,
    /// Bytes kept free for allocations that do not ask ([`charge`]).
    reserve: usize,
    /// Growth step (so that `MAX_ARENAS` arenas reach `max`).
    step: usize,
}

impl Arenas {
    const fn new() -> Self {
        Self {
            heaps: [const { Heap::empty() }; MAX_ARENAS],
            bins: Bins {
                heads: [0; CLASSES.len()],
                bytes: 0,
            },
            ranges: [(0, 0); MAX_ARENAS],
            n: 0,
            max: 0,
            reserve: 0,
            step: GROW_STEP,
        }
    }

    fn size(&self) -> usize {
        self.ranges[..self.n].iter().map(|(s, e)| e - s).sum()
    }

    /// Bytes in live blocks (binned free blocks do not count).
    fn used(&self) -> usize {
        self.heaps[..self.n]
            .iter()
            .map(Heap::used)
            .sum::<usize>()
            .saturating_sub(self.bins.bytes)
    }

    /// A block for `layout`: from its size bin, else first fit in the arenas (a binned
    /// layout is allocated at its class's size, so it can be binned when freed).
    fn allocate(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        let layout = match class_of(layout) {
            Some(c) => {
                let head = self.bins.heads[c];
                if head != 0 {
                    // SAFETY: `head` is a free block of class `c` pushed by `free_small`,
                    // at least 16 bytes, 16-aligned, owned by the bins: its first word is the
                    // next block's address.
                    self.bins.heads[c] = unsafe { (head as *const usize).read() };
                    self.bins.bytes -= CLASSES[c];
                    return NonNull::new(head as *mut u8);
                }
                Layout::from_size_align(CLASSES[c], SMALL_ALIGN).ok()?
            }
            None => layout,
        };
        self.heaps[..self.n]
            .iter_mut()
            .find_map(|h| h.allocate_first_fit(layout).ok())
    }

    /// Frees a block this allocator returned for `layout`: a binned layout goes on its
    /// class's list, any other back to the arena that holds it.
    ///
    /// # Safety
    /// `ptr` must have been returned by [`Arenas::allocate`] for `layout` and not freed since.
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        if let Some(c) = class_of(layout) {
            // SAFETY: the block is at least `CLASSES[c]` >= 16 bytes, 16-aligned and now
            // free: the bins own it and keep the list link in its first word.
            unsafe { (ptr.as_ptr() as *mut usize).write(self.bins.heads[c]) };
            self.bins.heads[c] = ptr.as_ptr() as usize;
            self.bins.bytes += CLASSES[c];
            return;
        }
        // SAFETY: forwarded from the caller; the block is not binned.
        unsafe { self.arena_free(ptr, layout) };
    }

    /// Gives a block back to the arena containing it.
    ///
    /// # Safety
    /// `ptr` must be a live block of one of the arenas, allocated there with `layout`.
    unsafe fn arena_free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        let addr = ptr.as_ptr() as usize;
        let n = self.n;
        if let Some(i) = self.ranges[..n]
            .iter()
            .position(|&(s, e)| addr >= s && addr < e)
        {
            // SAFETY: the caller's block came from arena `i` (the one containing it).
            unsafe { self.heaps[i].deallocate(ptr, layout) };
        }
    }

    /// Gives every binned block back to its arena (so the holes can merge for a larger
    /// allocation); true if there were any.
    fn drain_bins(&mut self) -> bool {
        let any = self.bins.bytes != 0;
        for (c, &size) in CLASSES.iter().enumerate() {
            let mut at = core::mem::take(&mut self.bins.heads[c]);
            while at != 0 {
                // SAFETY: `at` is a binned block of class `c` (see `free`): its first word
                // is the next one's address; it was allocated from an arena at `size`
                // bytes with `SMALL_ALIGN`.
                let next = unsafe { (at as *const usize).read() };
                let layout = Layout::from_size_align(size, SMALL_ALIGN).expect("class layout");
                // SAFETY: as above: a live arena block of that layout, owned by the bins.
                unsafe { self.arena_free(NonNull::new(at as *mut u8).expect("non-null"), layout) };
                at = next;
            }
        }
        self.bins.bytes = 0;
        any
    }

    /// Adds an arena of at least `want` bytes; `keep_frames`: frames the frame allocator must
    /// keep free afterwards. False if the bound, the arena table or memory says no.
    fn grow(&mut self, want: usize, keep_frames: u64) -> bool {
        if self.n == MAX_ARENAS || self.n == 0 {
            return false;
        }
        let room = self.max.saturating_sub(self.size());
        // Room for the block's own hole bookkeeping and alignment slack.
        let bytes = want
            .saturating_add(PAGE_SIZE as usize)
            .max(self.step)
            .min(room)
            .next_multiple_of(PAGE_SIZE as usize);
        if bytes < want || bytes == 0 || bytes > room {
            return false;
        }
        let pages = (bytes / PAGE_SIZE as usize) as u64;
        if crate::mm::frame::free_frames() < pages.saturating_add(keep_frames) {
            return false;
        }
        let Some(gpa) = crate::mm::frame::alloc_contiguous(pages) else {
            return false;
        };
        let va = crate::boot::phys_to_virt(gpa) as usize;
        let i = self.n;
        // SAFETY: the frames were just allocated for this arena alone, the direct map covers
        // them read-write, and they are never freed.
        unsafe { self.heaps[i].init(va as *mut u8, bytes) };
        self.ranges[i] = (va, va + bytes);
        self.n += 1;
        true
    }
}

/// The global allocator.
struct KernelHeap(IrqLock<Arenas>);

#[cfg_attr(not(test), global_allocator)]
static HEAP: KernelHeap = KernelHeap(IrqLock::new(Arenas::new()));

// SAFETY: each `Heap` hands out non-overlapping blocks of at least the requested layout from
// memory it owns exclusively (see `init` and `Arenas::grow`); the arenas do not overlap; all
// access is serialised by the lock.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut a = self.0.lock();
        if let Some(p) = a.allocate(layout) {
            return p.as_ptr();
        }
        // Binned free blocks may be what is missing: give them back and try again.
        if a.drain_bins() {
            if let Some(p) = a.allocate(layout) {
                return p.as_ptr();
            }
        }
        // Grow for an allocation that did not ask: a small one (kernel bookkeeping) may use
        // the frame reserve too; a large one (a buffer sized by a program, say) may not.
        let want = layout.size().saturating_add(layout.align());
        let keep = if want >= GROW_STEP {
            crate::mm::frame::reserve_frames()
        } else {
            0
        };
        if a.grow(want, keep) {
            if let Some(p) = a.allocate(layout) {
                return p.as_ptr();
            }
        }
        core::ptr::null_mut()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(p) = NonNull::new(ptr) else { return };
        let mut a = self.0.lock();
        // SAFETY: the caller passes a block this allocator returned for `layout`.
        unsafe { a.free(p, layout) };
    }
}

/// Heap size for `mem_size` bytes of guest memory: mem/8, at least 4 MiB if memory allows,
/// at most 64 MiB.
fn heap_size(mem_size: u64) -> u64 {
    let want = (mem_size / 8).clamp(4 << 20, 64 << 20);
    want.min(mem_size / 2) & !(PAGE_SIZE - 1)
}

/// The reserve for a first arena of `first` bytes: 1/16 of it, at least 512 KiB.
const fn reserve_for(first: usize) -> usize {
    let r = first / 16;
    if r < MIN_RESERVE {
        MIN_RESERVE
    } else {
        r
    }
}

/// Carves the first arena out of contiguous frames and sets the growth bound (3/4 of the
/// kernel's frames, at least the first arena). Returns the first arena's size in bytes.
pub(crate) fn init() -> u64 {
    let mut size = heap_size(crate::boot::info().mem_size);
    let gpa = loop {
        if let Some(gpa) = crate::mm::frame::alloc_contiguous(size / PAGE_SIZE) {
            break gpa;
        }
        size /= 2;
        if size < (256 << 10) {
            panic!("no memory for the kernel heap");
        }
    };
    let va = crate::boot::phys_to_virt(gpa);
    let (_, total_frames) = crate::mm::frame::stats();
    let mut a = HEAP.0.lock();
    // SAFETY: the frames were just allocated for the heap alone and the direct map covers
    // them read-write; they are never freed.
    unsafe { a.heaps[0].init(va as *mut u8, size as usize) };
    a.ranges[0] = (va as usize, (va + size) as usize);
    a.n = 1;
    a.max = ((total_frames * PAGE_SIZE / 4 * 3) as usize).max(size as usize);
    a.reserve = reserve_for(size as usize);
    a.step = GROW_STEP.max((a.max / (MAX_ARENAS - 1)).next_multiple_of(PAGE_SIZE as usize));
    size
}

/// Heap bytes `(used, size)` (size: all arenas so far).
pub(crate) fn stats() -> (usize, usize) {
    let a = HEAP.0.lock();
    (a.used(), a.size())
}

/// The most the heap may grow to, in bytes.
pub(crate) fn max_size() -> usize {
    HEAP.0.lock().max
}

/// The bytes the heap keeps free for allocations that do not ask ([`charge`]).
pub(crate) fn reserve() -> usize {
    HEAP.0.lock().reserve
}

/// Admits `bytes` of allocations made on a program's behalf: `Ok` if, after them, at least
/// [`reserve`] bytes of the heap stay free (growing the heap now if needed and possible,
/// keeping the frame allocator's reserve free); `Err(OutOfMemory)` otherwise — the caller
/// fails the operation (ENOMEM, ENOSPC, EAGAIN as Linux would) and allocates nothing. A gate,
/// not an account: see the module documentation.
#[cfg(not(test))]
pub(crate) fn charge(bytes: usize) -> Result<(), OutOfMemory> {
    let mut a = HEAP.0.lock();
    let need = bytes.saturating_add(a.reserve);
    loop {
        let free = a.size() - a.used();
        if free >= need {
            return Ok(());
        }
        if !a.grow(need - free, crate::mm::frame::reserve_frames()) {
            return Err(OutOfMemory { bytes });
        }
    }
}

/// Whether [`charge`]`(bytes)` would succeed now (it may grow the heap).
#[allow(dead_code, reason = "API next to `charge`; callers use `charge` today")]
pub(crate) fn has_headroom(bytes: usize) -> bool {
    charge(bytes).is_ok()
}

#[cfg(test)]
std::thread_local! {
    /// Host unit tests: the headroom `charge` sees on this thread (`None`: unlimited).
    static TEST_HEADROOM: core::cell::Cell<Option<usize>> = const { core::cell::Cell::new(None) };
}

/// Host unit tests: `charge` fails for more than the headroom set by [`set_test_headroom`]
/// (per test thread; unlimited by default). Nothing is subtracted: a gate, as in the kernel.
#[cfg(test)]
pub(crate) fn charge(bytes: usize) -> Result<(), OutOfMemory> {
    match TEST_HEADROOM.with(core::cell::Cell::get) {
        Some(h) if bytes > h => Err(OutOfMemory { bytes }),
        _ => Ok(()),
    }
}

/// Host unit tests: sets the headroom [`charge`] sees on this thread (`None`: unlimited).
#[cfg(test)]
pub(crate) fn set_test_headroom(bytes: Option<usize>) {
    TEST_HEADROOM.with(|h| h.set(bytes));
}

#[cfg(test)]
mod tests {
    #[test]
    fn small_layouts_get_the_smallest_class_that_holds_them() {
        use core::alloc::Layout;
        let l = |s, a| Layout::from_size_align(s, a).unwrap();
        assert_eq!(super::class_of(l(1, 1)), Some(0));
        assert_eq!(super::class_of(l(16, 16)), Some(0));
        assert_eq!(super::class_of(l(17, 8)), Some(1));
        assert_eq!(super::class_of(l(200, 8)), Some(7));
        assert_eq!(super::class_of(l(1024, 16)), Some(11));
        assert_eq!(super::class_of(l(1025, 8)), None);
        assert_eq!(super::class_of(l(64, 32)), None);
        for c in super::CLASSES {
            assert_eq!(c % super::SMALL_ALIGN, 0);
        }
    }

    #[test]
    fn the_reserve_is_a_sixteenth_of_the_first_arena_and_at_least_512_kib() {
        assert_eq!(super::reserve_for(32 << 20), 2 << 20);
        assert_eq!(super::reserve_for(4 << 20), 512 << 10);
    }

    #[test]
    fn the_test_gate_refuses_more_than_the_headroom() {
        super::set_test_headroom(Some(100));
        assert!(super::charge(100).is_ok());
        assert_eq!(super::charge(101), Err(super::OutOfMemory { bytes: 101 }));
        super::set_test_headroom(None);
        assert!(super::has_headroom(1 << 40));
    }
}
