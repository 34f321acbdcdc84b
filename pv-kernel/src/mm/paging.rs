//! The kernel's page tables: changed through the `x86_64` crate's [`OffsetPageTable`], read
//! (`translate`) with the ABI's walker (`pvmux_hypercalls::paging`), the same one the stub's
//! shadow paging and the host use, so the kernel sees its tables exactly as they are mapped.
//!
//! The root is the one the domain builder made (`BootInfo::page_table_root`); page-table
//! frames are reached through the direct map. No privileged instruction is used: after a live
//! mapping changes, the stub's `tlb_flush` invalidates the shadow.

use x86_64::structures::paging::mapper::MapToError;
use x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB,
};
use x86_64::VirtAddr;

use crate::irq::IrqLock;
use crate::mm::frame::KernelFrames;

static MAPPER: IrqLock<Option<OffsetPageTable<'static>>> = IrqLock::new(None);

/// Takes over the boot page tables.
pub(crate) fn init() {
    let bi = crate::boot::info();
    let root = crate::boot::phys_to_virt(bi.page_table_root) as *mut PageTable;
    // SAFETY: the domain builder's root table lies in guest memory (a Boot region), which the
    // direct map at `direct_map_base` covers read-write; from now on only this mapper (under
    // its lock) modifies the tables.
    let table = unsafe { OffsetPageTable::new(&mut *root, VirtAddr::new(bi.direct_map_base)) };
    *MAPPER.lock() = Some(table);
}

/// Runs `f` with the mapper locked.
fn with_mapper<R>(f: impl FnOnce(&mut OffsetPageTable<'static>) -> R) -> R {
    let mut guard = MAPPER.lock();
    match guard.as_mut() {
        Some(m) => f(m),
        None => panic!("paging used before paging::init"),
    }
}

/// Maps the 4 KiB page at `va` to `frame` with `flags` (PRESENT is added), then flushes it.
///
/// # Safety
/// `frame` must be owned by the caller and not mapped or used anywhere else in a way that
/// this new alias could break.
pub(crate) unsafe fn map_page(
    va: u64,
    frame: PhysFrame<Size4KiB>,
    flags: PageTableFlags,
) -> Result<(), MapToError<Size4KiB>> {
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
    with_mapper(|m| {
        // SAFETY: the caller guarantees the frame is not aliased.
        let flush = unsafe {
            m.map_to(
                page,
                frame,
                flags | PageTableFlags::PRESENT,
                &mut KernelFrames,
            )
        }?;
        flush.ignore();
        Ok::<(), MapToError<Size4KiB>>(())
    })?;
    crate::stub::tlb_flush(page.start_address().as_u64(), 4096);
    Ok(())
}

#[cfg(feature = "diagnostics")]
/// Unmaps the 4 KiB page at `va` and returns its frame (the caller owns it again), then
/// flushes the page. `None` if it was not mapped with a 4 KiB page.
pub(crate) fn unmap_page(va: u64) -> Option<PhysFrame<Size4KiB>> {
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
    let frame = with_mapper(|m| {
        m.unmap(page).ok().map(|(frame, flush)| {
            flush.ignore();
            frame
        })
    })?;
    crate::stub::tlb_flush(page.start_address().as_u64(), 4096);
    Some(frame)
}

/// Guest memory through the direct map, for the ABI's page-table walker.
#[cfg(feature = "diagnostics")]
struct DirectMap;

#[cfg(feature = "diagnostics")]
impl pvmux_hypercalls::paging::TableReader for DirectMap {
    fn read_entry(&self, gpa: u64) -> Option<u64> {
        if !gpa.is_multiple_of(8) || gpa.checked_add(8)? > self.mem_size() {
            return None;
        }
        let p = crate::boot::phys_to_virt(gpa) as *const u64;
        // SAFETY: the direct map covers all of guest memory read-write for the kernel's life;
        // the word is 8-aligned and inside it (checked). One volatile load copies the entry.
        Some(unsafe { p.read_volatile() })
    }

    fn mem_size(&self) -> u64 {
        crate::boot::info().mem_size
    }
}

#[cfg(feature = "diagnostics")]
/// Guest-physical address `va` maps to, if any.
pub(crate) fn translate(va: u64) -> Option<u64> {
    VirtAddr::try_new(va).ok()?;
    let root = crate::boot::info().page_table_root;
    // Under the mapper's lock: no table changes during the walk.
    with_mapper(|_| pvmux_hypercalls::paging::walk(&DirectMap, root, va).ok())
        .map(|leaf| leaf.gpa_of(va))
}
