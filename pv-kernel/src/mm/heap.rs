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

/// The arenas and their bounds.
struct Arenas {
    heaps: [Heap; MAX_ARENAS],
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

    fn used(&self) -> usize {
        self.heaps[..self.n].iter().map(Heap::used).sum()
    }

    fn allocate(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.heaps[..self.n]
            .iter_mut()
            .find_map(|h| h.allocate_first_fit(layout).ok())
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
        // Grow for an allocation that did not ask: a small one (kernel bookkeeping) may use
        // the frame reserve too; a large one (a buffer sized by a program, say) may not.
        let want = layout.size().saturating_add(layout.align());
        let keep = if want >= GROW_STEP {
            crate::mm::frame::reserve_frames()
        } else {
            0
        };
        if a.grow(want, keep) {
            let last = a.n - 1;
            if let Ok(p) = a.heaps[last].allocate_first_fit(layout) {
                return p.as_ptr();
            }
        }
        core::ptr::null_mut()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(p) = NonNull::new(ptr) else { return };
        let mut a = self.0.lock();
        let addr = ptr as usize;
        let n = a.n;
        if let Some(i) = a.ranges[..n]
            .iter()
            .position(|&(s, e)| addr >= s && addr < e)
        {
            // SAFETY: the caller passes a block this allocator returned for `layout`, and
            // it came from arena `i` (the one containing it).
            unsafe { a.heaps[i].deallocate(p, layout) };
        }
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
