//! The images embedded at build time (see `build.rs`).

/// The sandbox stub executable (`pvmux-stub`, a static ELF).
pub static STUB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pvmux-stub"));

/// The default guest kernel (`pvmux-kernel`, a static-pie ELF).
pub static KERNEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pvmux-kernel"));

/// The user-mode benchmark workload (`pvmux-user-bench`, a static x86-64 Linux executable),
/// run natively, under UML and gVisor, and as the init of a pvmux guest by `pvmux bench`.
pub static USER_BENCH: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pvmux-user-bench"));
