//! The images embedded at build time (see `build.rs`).

/// Bytes placed at a page-aligned address: the ELF parsers read an image's headers in place
/// (no copy of a multi-megabyte image at every launch), which needs them aligned.
#[repr(C, align(4096))]
struct PageAligned<B: ?Sized>(B);

/// The sandbox stub executable (`pvmux-stub`, a static ELF).
pub static STUB: &[u8] = &PageAligned(*include_bytes!(concat!(env!("OUT_DIR"), "/pvmux-stub"))).0;

/// The default guest kernel (`pvmux-kernel`, a static-pie ELF).
pub static KERNEL: &[u8] =
    &PageAligned(*include_bytes!(concat!(env!("OUT_DIR"), "/pvmux-kernel"))).0;

/// The test kernel: the same kernel with its `diagnostics` feature (self-tests, hostile cases,
/// in-guest benchmarks, crash commands). Chosen when the command line asks for one of those.
pub static KERNEL_TEST: &[u8] = &PageAligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/pvmux-kernel-test"
)))
.0;

/// The user-mode benchmark workload (`pvmux-user-bench`, a static x86-64 Linux executable),
/// run natively, under UML and gVisor, and as the init of a pvmux guest by `pvmux bench`.
pub static USER_BENCH: &[u8] = &PageAligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/pvmux-user-bench"
)))
.0;
