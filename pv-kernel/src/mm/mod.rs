//! Memory management: frames, page tables, the kernel heap, demand-mapped areas.

pub(crate) mod demand;
pub(crate) mod frame;
pub(crate) mod heap;
pub(crate) mod initrd;
pub(crate) mod paging;
