//! The images embedded at build time (see `build.rs`).

/// The sandbox stub executable (`pvmux-stub`, a static ELF).
pub static STUB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pvmux-stub"));

/// The default guest kernel (`pvmux-kernel`, a static-pie ELF).
pub static KERNEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pvmux-kernel"));

/// The test kernel: the same kernel with its `diagnostics` feature (self-tests, hostile cases,
/// in-guest benchmarks, crash commands). Chosen when the command line asks for one of those.
pub static KERNEL_TEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pvmux-kernel-test"));

/// The user-mode benchmark workload (`pvmux-user-bench`, a static x86-64 Linux executable),
/// run natively, under UML and gVisor, and as the init of a pvmux guest by `pvmux bench`.
pub static USER_BENCH: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pvmux-user-bench"));
