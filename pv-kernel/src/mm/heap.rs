//! The kernel heap: `linked_list_allocator` over contiguous frames in the direct map.
//!
//! The heap lock is an [`IrqLock`], so allocating from event handlers is allowed (an event
//! cannot interrupt a holder on the same vCPU). The heap is never touched by the page-fault
//! path, so exceptions cannot re-enter it either.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use linked_list_allocator::Heap;
use pvmux_hypercalls::PAGE_SIZE;

use crate::irq::IrqLock;

/// The global allocator.
struct KernelHeap(IrqLock<Heap>);

#[cfg_attr(not(test), global_allocator)]
static HEAP: KernelHeap = KernelHeap(IrqLock::new(Heap::empty()));

// SAFETY: `Heap` hands out non-overlapping blocks of at least the requested layout from memory
// it owns exclusively (see `init`); all access is serialised by the lock.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: the caller passes a block this allocator returned for `layout`.
            unsafe { self.0.lock().deallocate(p, layout) };
        }
    }
}

/// Heap size for `mem_size` bytes of guest memory: mem/8, at least 4 MiB if memory allows,
/// at most 64 MiB.
fn heap_size(mem_size: u64) -> u64 {
    let want = (mem_size / 8).clamp(4 << 20, 64 << 20);
    want.min(mem_size / 2) & !(PAGE_SIZE - 1)
}

/// Carves the heap out of contiguous frames. Returns its size in bytes.
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
    // SAFETY: the frames were just allocated for the heap alone and the direct map covers
    // them read-write; they are never freed.
    unsafe { HEAP.0.lock().init(va as *mut u8, size as usize) };
    size
}

/// Heap bytes `(used, size)`.
pub(crate) fn stats() -> (usize, usize) {
    let h = HEAP.0.lock();
    (h.used(), h.size())
}
