//! Demand-mapped kernel memory: a region of the guest-free window area whose pages get a
//! zeroed frame on first touch (from the page-fault handler).

use core::sync::atomic::{AtomicU64, Ordering};

use pvmux_hypercalls::{frame::pf, layout::GUEST_FREE_BASE};
use x86_64::structures::paging::mapper::MapToError;
use x86_64::structures::paging::PageTableFlags;

/// Start of the demand-mapped area.
pub(crate) const DEMAND_BASE: u64 = GUEST_FREE_BASE;
#[cfg(feature = "diagnostics")]
/// Size of the demand-mapped area (1 TiB).
pub(crate) const DEMAND_SIZE: u64 = 1 << 40;

/// Next unreserved address in the area.
static NEXT: AtomicU64 = AtomicU64::new(DEMAND_BASE);
/// Page faults resolved by mapping a page.
static FAULTS: AtomicU64 = AtomicU64::new(0);

#[cfg(feature = "diagnostics")]
/// Reserves `len` bytes (rounded up to pages) of the area; pages are mapped on first touch.
/// Reservations are never returned.
pub(crate) fn reserve(len: u64) -> Option<u64> {
    let len =
        len.checked_add(pvmux_hypercalls::PAGE_SIZE - 1)? & !(pvmux_hypercalls::PAGE_SIZE - 1);
    let va = NEXT.fetch_add(len, Ordering::Relaxed);
    (va.checked_add(len)? <= DEMAND_BASE + DEMAND_SIZE).then_some(va)
}

#[cfg(feature = "diagnostics")]
/// Number of demand faults resolved so far.
pub(crate) fn faults() -> u64 {
    FAULTS.load(Ordering::Relaxed)
}

/// Handles a #PF at `addr`: if it is a not-present fault inside a reservation, maps a zeroed
/// frame (read-write, no-execute) and returns true; the access is then retried.
pub(crate) fn handle_fault(addr: u64, error_code: u64) -> bool {
    if addr < DEMAND_BASE || addr >= NEXT.load(Ordering::Relaxed) {
        return false;
    }
    if error_code & (pf::PRESENT | pf::RESERVED | pf::FETCH) != 0 {
        return false;
    }
    let Some(frame) = crate::mm::frame::alloc_zeroed() else {
        panic!("out of memory mapping demand page {addr:#x}");
    };
    let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    // SAFETY: the frame was just allocated and is used for this page only.
    match unsafe { crate::mm::paging::map_page(addr, frame, flags) } {
        Ok(()) => {
            FAULTS.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(MapToError::PageAlreadyMapped(_)) => {
            // Another vCPU mapped it first: give the frame back and retry the access.
            // SAFETY: the frame was never mapped.
            unsafe { crate::mm::frame::free(frame) };
            true
        }
        Err(e) => panic!("demand mapping {addr:#x} failed: {e:?}"),
    }
}
