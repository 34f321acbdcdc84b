//! Memory management — the framework part that owns raw memory access: frames, page tables,
//! the kernel heap, demand-mapped areas, the initrd, the user pool's bytes ([`pool_mem`], by
//! copying only) and the context regions shared with user sandboxes ([`user_ctx`]). The
//! Linux layer (`crate::linux`) is safe code on top of these.

pub(crate) mod bootargs;
pub(crate) mod demand;
pub(crate) mod frame;
pub(crate) mod heap;
pub(crate) mod initrd;
pub(crate) mod paging;
pub(crate) mod pool_mem;
pub(crate) mod user_ctx;
