//! How a guest kernel image declares the ABI it was built for.
//!
//! A pvmux kernel is an x86-64 ELF64 `ET_DYN` (static-pie) image. It must contain a section
//! named [`ABI_SECTION`] holding a [`KernelAbiHeader`]; the domain builder refuses an image
//! without one or with a different [`crate::ABI_VERSION`]. The only dynamic relocations
//! allowed are `R_X86_64_RELATIVE` (and `R_X86_64_NONE`); the builder applies them for the
//! randomised base. The entry point is entered on vCPU 0 with `rdi` = boot info address,
//! `rsi` = stub table address, `rsp` ≡ 8 (mod 16) on a mapped boot stack, events disabled.

use core::mem::size_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Name of the ELF section holding the [`KernelAbiHeader`].
pub const ABI_SECTION: &str = ".pvmux_abi";

/// The ABI declaration a kernel image carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct KernelAbiHeader {
    /// [`crate::ABI_MAGIC`].
    pub magic: u64,
    /// [`crate::ABI_VERSION`] the kernel was built against.
    pub abi_version: u32,
    /// Reserved, zero.
    pub flags: u32,
}

impl KernelAbiHeader {
    /// The header for this ABI version.
    pub const CURRENT: Self = Self {
        magic: crate::ABI_MAGIC,
        abi_version: crate::ABI_VERSION,
        flags: 0,
    };
}

const _: () = assert!(size_of::<KernelAbiHeader>() == 16);
