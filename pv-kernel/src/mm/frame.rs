//! The physical frame allocator over the boot memory map's usable regions.
//!
//! A bump pointer per region plus a free list threaded through the free frames themselves
//! (via the direct map). Frame 0 is never handed out.
//!
//! Frames taken on a program's behalf — heap growth through
//! `heap::charge` — leave [`reserve_frames`] frames free (1/32 of the kernel's frames, at
//! least 1 MiB), so page tables, kernel stacks and the heap's own growth still find memory
//! when a program has used everything it may.

use pvmux_hypercalls::{boot::MAX_MEM_REGIONS, PAGE_SIZE};
use x86_64::structures::paging::{PhysFrame, Size4KiB};
use x86_64::PhysAddr;

use crate::irq::IrqLock;

/// Allocator state.
struct Frames {
    /// Usable ranges `(start, end)`, page aligned.
    regions: [(u64, u64); MAX_MEM_REGIONS],
    nr_regions: usize,
    /// Region the bump pointer is in.
    cur: usize,
    /// Next never-allocated frame in `regions[cur]`.
    next: u64,
    /// First frame of the free list (0 = empty); each free frame holds the next one's address.
    free_head: u64,
    /// Frames currently allocated.
    used: u64,
    /// Frames managed in total.
    total: u64,
}

static FRAMES: IrqLock<Frames> = IrqLock::new(Frames {
    regions: [(0, 0); MAX_MEM_REGIONS],
    nr_regions: 0,
    cur: 0,
    next: 0,
    free_head: 0,
    used: 0,
    total: 0,
});

/// Takes over the usable regions of the boot memory map.
pub(crate) fn init() {
    let mut f = FRAMES.lock();
    for (start, end) in crate::boot::usable_ranges() {
        if f.nr_regions == MAX_MEM_REGIONS {
            break;
        }
        let i = f.nr_regions;
        f.regions[i] = (start, end);
        f.nr_regions += 1;
        f.total += (end - start) / PAGE_SIZE;
    }
    f.cur = 0;
    f.next = f.regions[0].0;
}

/// Frames `(used, total)`.
pub(crate) fn stats() -> (u64, u64) {
    let f = FRAMES.lock();
    (f.used, f.total)
}

/// Frames not allocated (a contiguous request may still fail: only the bump area is
/// contiguous).
pub(crate) fn free_frames() -> u64 {
    let f = FRAMES.lock();
    f.total - f.used
}

/// Frames kept free from allocations on a program's behalf: 1/32 of all, at least 256 (1 MiB).
#[cfg_attr(test, allow(dead_code))]
pub(crate) fn reserve_frames() -> u64 {
    let total = FRAMES.lock().total;
    (total / 32).max(256)
}

impl Frames {
    /// Bump-allocates `pages` contiguous frames; returns the first one's address.
    fn bump(&mut self, pages: u64) -> Option<u64> {
        let len = pages.checked_mul(PAGE_SIZE)?;
        while self.cur < self.nr_regions {
            let (_, end) = self.regions[self.cur];
            if end - self.next >= len {
                let gpa = self.next;
                self.next += len;
                self.used += pages;
                return Some(gpa);
            }
            if pages > 1 {
                // Do not waste a region's tail on a contiguous request: try later regions
                // without moving the bump pointer.
                return self.regions[self.cur + 1..self.nr_regions]
                    .iter()
                    .position(|&(s, e)| e - s >= len)
                    .map(|i| {
                        let idx = self.cur + 1 + i;
                        let gpa = self.regions[idx].0;
                        self.regions[idx].0 += len;
                        self.used += pages;
                        gpa
                    });
            }
            self.cur += 1;
            if self.cur < self.nr_regions {
                self.next = self.regions[self.cur].0;
            }
        }
        None
    }

    /// Allocates one frame (contents undefined).
    fn alloc(&mut self) -> Option<u64> {
        if self.free_head != 0 {
            let gpa = self.free_head;
            let link = crate::boot::phys_to_virt(gpa) as *const u64;
            // SAFETY: `gpa` is a free frame owned by the allocator; it lies in guest memory,
            // which the direct map covers, and its first word holds the next free frame.
            self.free_head = unsafe { link.read() };
            self.used += 1;
            return Some(gpa);
        }
        self.bump(1)
    }
}

/// Allocates one frame (contents undefined).
pub(crate) fn alloc() -> Option<PhysFrame<Size4KiB>> {
    let gpa = FRAMES.lock().alloc()?;
    Some(PhysFrame::containing_address(PhysAddr::new(gpa)))
}

/// Allocates one zero-filled frame.
pub(crate) fn alloc_zeroed() -> Option<PhysFrame<Size4KiB>> {
    let frame = alloc()?;
    let va = crate::boot::phys_to_virt(frame.start_address().as_u64()) as *mut u8;
    // SAFETY: the frame was just allocated, so nothing else refers to it, and the direct map
    // covers it (read-write).
    unsafe { va.write_bytes(0, PAGE_SIZE as usize) };
    Some(frame)
}

/// Allocates `pages` physically contiguous frames; returns the guest-physical address.
pub(crate) fn alloc_contiguous(pages: u64) -> Option<u64> {
    FRAMES.lock().bump(pages)
}

/// `len` zeroed values of `T` for the kernel's whole life, in frames never handed out since
/// the kernel was entered: those read as zero (docs/ABI.md §5, "Zero at entry": the host
/// builds the domain in fresh or punched memory), so nothing writes them here, and neither
/// the kernel nor the host touches one of their pages until a value on it is written. A
/// table sized by guest memory (the user pool's reference counts, 2 bytes a frame: 15.5 MiB
/// for a 32 GiB guest) then costs boot nothing. `None` without that much contiguous memory.
/// Never freed.
#[cfg(not(test))]
pub(crate) fn boot_zeroed<T: zerocopy::FromZeros>(len: usize) -> Option<&'static mut [T]> {
    const { assert!(core::mem::align_of::<T>() <= PAGE_SIZE as usize) };
    let bytes = len.checked_mul(core::mem::size_of::<T>())? as u64;
    let gpa = alloc_contiguous(bytes.div_ceil(PAGE_SIZE).max(1))?;
    let va = crate::boot::phys_to_virt(gpa) as *mut T;
    // SAFETY: the frames were just bump-allocated (`alloc_contiguous` takes only frames never
    // handed out before), so nothing else refers to them, and they read as zero (the entry
    // contract above), which `FromZeros` makes a valid `[T]`; the direct map covers them
    // read-write; page alignment satisfies `T`'s (asserted); they are never freed, so the
    // slice lives as long as the kernel.
    Some(unsafe { core::slice::from_raw_parts_mut(va, len) })
}

/// Returns a frame to the allocator.
///
/// # Safety
/// `frame` must have come from this allocator and must no longer be mapped or used.
pub(crate) unsafe fn free(frame: PhysFrame<Size4KiB>) {
    let gpa = frame.start_address().as_u64();
    let mut f = FRAMES.lock();
    let link = crate::boot::phys_to_virt(gpa) as *mut u64;
    // SAFETY: the caller gives the unused frame back; the direct map covers it.
    unsafe { link.write(f.free_head) };
    f.free_head = gpa;
    f.used -= 1;
}

/// The allocator as seen by the `x86_64` crate's mappers (zeroed frames for page tables).
pub(crate) struct KernelFrames;

// SAFETY: `alloc_zeroed` returns frames that are unused and owned by the caller from then on.
unsafe impl x86_64::structures::paging::FrameAllocator<Size4KiB> for KernelFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        alloc_zeroed()
    }
}
