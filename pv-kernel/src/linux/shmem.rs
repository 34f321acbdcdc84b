//! Shared anonymous memory (`MAP_SHARED|MAP_ANONYMOUS`): the object that owns its pages.
//!
//! Like Linux's shmem file behind such a mapping, a [`ShmObject`] holds the pool frames of the
//! memory by page index, created on first touch. Every region ([`super::space::mm::Vma`]) that maps
//! it — in any address space: the `fork` child's copy, an `mremap`ed or split part — refers to
//! the object and its page offset ([`ShmRef`]), so a page first touched after the `fork`, by
//! either side, is the same frame for both. The object holds one reference on each of its
//! frames and each address space that maps a frame holds another; the frames go back to the
//! pool when the last region referring to the object is gone and every space has released its
//! mappings.
//!
//! Lock order: an address space's memory-map lock, then the object's lock.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;

use pvmux_hypercalls::PAGE_SIZE;

use super::{pool, Errno};
use crate::irq::IrqLock;

/// The pages of one shared anonymous memory object.
pub(crate) struct ShmObject {
    /// Page index → pool frame (the object's own reference).
    pages: IrqLock<BTreeMap<u64, u64>>,
}

impl ShmObject {
    /// An empty object: every page reads as zero until first written.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            pages: IrqLock::new(BTreeMap::new()),
        })
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
}

impl Drop for ShmObject {
    fn drop(&mut self) {
        // No region refers to the object any more; the address spaces that mapped its frames
        // hold references of their own until their sandboxes have unmapped them.
        for (_, gpa) in core::mem::take(self.pages.get_mut()) {
            pool::put(gpa);
        }
    }
}

/// A region's view of a shared object: the object and the page index of the region's start.
#[derive(Clone)]
pub(crate) struct ShmRef {
    /// The object.
    pub(crate) obj: Arc<ShmObject>,
    /// Page index in the object of the region's first page.
    pub(crate) pgoff: u64,
}

impl ShmRef {
    /// A view of a new object from its first page.
    pub(crate) fn new_object() -> Self {
        Self {
            obj: ShmObject::new(),
            pgoff: 0,
        }
    }

    /// The same object seen from `bytes` further into the region (page aligned).
    pub(crate) fn advanced(&self, bytes: u64) -> Self {
        Self {
            obj: self.obj.clone(),
            pgoff: self.pgoff + bytes / PAGE_SIZE,
        }
    }

    /// The page index in the object of `va`, in a region starting at `start`.
    pub(crate) fn index(&self, start: u64, va: u64) -> u64 {
        self.pgoff + (va - start) / PAGE_SIZE
    }
}

impl core::fmt::Debug for ShmRef {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ShmRef")
            .field("obj", &Arc::as_ptr(&self.obj))
            .field("pgoff", &self.pgoff)
            .finish()
    }
}
