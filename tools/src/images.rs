//! The images embedded at build time (see `build.rs`).

/// The sandbox stub executable (`pvmux-stub`, a static ELF).
pub static STUB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pvmux-stub"));

/// The default guest kernel (`pvmux-kernel`, a static-pie ELF).
pub static KERNEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pvmux-kernel"));
