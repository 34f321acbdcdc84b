//! Shared memory (`MAP_SHARED|MAP_ANONYMOUS`, and `MAP_SHARED` mappings of files): the object
//! that owns its pages (the page cache's [`ShmObject`], `fs::pagecache`).
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

use alloc::sync::Arc;

use pvmux_hypercalls::PAGE_SIZE;

/// The object behind shared memory: the page cache's page object (a file's pages, or pages
/// no file names for anonymous shared memory).
pub(crate) use crate::fs::pagecache::PageObject as ShmObject;

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
            obj: ShmObject::new_owned(),
            pgoff: 0,
        }
    }

    /// A view of `obj` from its page `pgoff` (a `MAP_SHARED` mapping of a file).
    pub(crate) fn of(obj: Arc<ShmObject>, pgoff: u64) -> Self {
        Self { obj, pgoff }
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
