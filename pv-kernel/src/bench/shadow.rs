//! `shadow_fill.*`: amortised cost per page of the first touch of a large guest mapping.

use alloc::format;
use alloc::vec::Vec;

use pvmux_hypercalls::PAGE_SIZE;
use x86_64::structures::paging::{PageTableFlags, PhysFrame, Size4KiB};
use x86_64::PhysAddr;

use super::clock::{elapsed_ps, rdtsc};
use super::{collect, BenchError, Mode};
use crate::irq::IrqGuard;
use crate::mm::{demand, frame, paging};
use crate::stub;

/// Alignment of the mapped range: a whole 2 MiB page-table span, so fault-around blocks are
/// aligned and the range starts a fresh page table.
const AREA_ALIGN: u64 = 2 << 20;

/// A range of fresh 4 KiB guest mappings (read-write, no-execute) over frames it owns.
struct Area {
    /// First page (2 MiB aligned).
    base: u64,
    /// Frames, one per page, in address order.
    frames: Vec<PhysFrame<Size4KiB>>,
    /// Pages mapped so far (all of them once built).
    mapped: usize,
}

impl Area {
    /// Maps `pages` pages over physically contiguous frames if available (so one fault-around
    /// block is one host `mmap`), else over single frames.
    fn new(pages: usize) -> Result<Self, BenchError> {
        let oom = || BenchError::Unavailable(format!("out of memory for {pages} pages"));
        let len = pages as u64 * PAGE_SIZE;
        let reserved = demand::reserve(len + AREA_ALIGN).ok_or_else(oom)?;
        let base = reserved.next_multiple_of(AREA_ALIGN);
        let mut frames = Vec::new();
        frames.try_reserve_exact(pages).map_err(|_| oom())?;
        let mut area = Self {
            base,
            frames,
            mapped: 0,
        };
        if let Some(gpa) = frame::alloc_contiguous(pages as u64) {
            area.frames.extend(
                (0..pages as u64)
                    .map(|i| PhysFrame::containing_address(PhysAddr::new(gpa + i * PAGE_SIZE))),
            );
        } else {
            for _ in 0..pages {
                // On failure `area` is dropped, which frees the frames taken so far.
                area.frames.push(frame::alloc().ok_or_else(oom)?);
            }
        }
        let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
        for i in 0..pages {
            let va = base + i as u64 * PAGE_SIZE;
            // SAFETY: the frame belongs to this area alone and `va` to its own reservation.
            unsafe { paging::map_page(va, area.frames[i], flags) }
                .map_err(|e| BenchError::Unavailable(format!("cannot map page {i}: {e:?}")))?;
            area.mapped += 1;
        }
        Ok(area)
    }

    /// Length in bytes.
    fn len(&self) -> u64 {
        self.frames.len() as u64 * PAGE_SIZE
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        for i in 0..self.mapped {
            paging::unmap_page(self.base + i as u64 * PAGE_SIZE);
        }
        for &f in &self.frames {
            // SAFETY: the frame came from the allocator for this area and is unmapped now.
            unsafe { frame::free(f) };
        }
    }
}

/// Shared body: `fault_around` is the block to set for the run (`None` = leave the default).
///
/// Each sample invalidates the shadow of the whole area (`tlb_flush`, outside the timing),
/// then writes one byte per page in address order with events disabled; the sample is the
/// elapsed time divided by the number of pages (each write that misses is a SIGSEGV, a walk
/// of the guest tables and an `mmap`; with fault-around, one miss maps a whole block).
fn fill(mode: Mode, fault_around: Option<u64>) -> Result<Vec<u64>, BenchError> {
    let pages = mode.pick(512, 2048);
    let area = Area::new(pages)?;
    let previous = match fault_around {
        Some(n) => {
            let prev = stub::set_fault_around(n);
            if prev < 0 {
                return Err(BenchError::Failed(format!(
                    "set_fault_around({n}) returned {prev}"
                )));
            }
            Some(prev as u64)
        }
        None => None,
    };
    let base = area.base;
    let res = collect(2, mode.pick(30, 100), || {
        stub::tlb_flush(base, area.len());
        let _irq = IrqGuard::new();
        let t0 = rdtsc();
        for i in 0..pages {
            let p = (base + i as u64 * PAGE_SIZE) as *mut u8;
            // SAFETY: `p` is in a page this area mapped writable; nothing else uses it.
            unsafe { p.write_volatile(i as u8) };
        }
        let t1 = rdtsc();
        Ok(elapsed_ps(t0, t1) / pages as u64)
    });
    if let Some(prev) = previous {
        stub::set_fault_around(prev);
    }
    drop(area);
    res
}

/// `shadow_fill.page`: see [`fill`]; default fault-around (16 pages unless the host says
/// otherwise); 2048 pages per sample (512 in quick mode).
pub(super) fn fill_page(mode: Mode) -> Result<Vec<u64>, BenchError> {
    fill(mode, None)
}

/// `shadow_fill.page_nofaultaround`: as [`fill_page`] with `set_fault_around(1)` (every page
/// is its own miss); the previous block size is restored afterwards.
pub(super) fn fill_page_nofaultaround(mode: Mode) -> Result<Vec<u64>, BenchError> {
    fill(mode, Some(1))
}
