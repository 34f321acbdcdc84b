//! The pvmux guest <-> host ABI.
//!
//! Everything a pvmux guest kernel, the sandbox stub and the host runtime share lives here and
//! nowhere else: address-space layout, the boot information page, the per-vCPU shared page
//! (interrupt state, hypercall doorbell, crash record), the boot arguments, the trap frame,
//! the stub's entry table, hypercall numbers and error codes, the shutdown record — and, where
//! the no_std code of both sides can share them, the protocols themselves: the boot-argument
//! encoder and decoder ([`bootargs`]), the hypercall doorbell ([`doorbell`]) and the guest
//! page-table walk ([`paging`]). Every shared struct is `#[repr(C)]`, has zerocopy derives
//! and compile-time size/offset assertions; the ABI is versioned by [`ABI_MAGIC`] and
//! [`ABI_VERSION`], checked at boot by both sides. `docs/ABI.md` is the prose specification.
#![no_std]
#![forbid(unsafe_code)]

pub mod balloon;
pub mod boot;
pub mod bootargs;
pub mod channel;
pub mod disk;
pub mod doorbell;
pub mod exec;
pub mod frame;
pub mod handover;
pub mod hostfs;
pub mod hypercall;
pub mod image;
pub mod layout;
pub mod net;
pub mod paging;
pub mod resources;
pub mod sandbox;
pub mod shutdown;
pub mod snapshot;
pub mod stub;
pub mod user;
pub mod vcpu;
pub mod volume;
pub mod window;

pub use boot::{BootInfo, MemRegion, MemRegionKind};
pub use bootargs::{BootArgs, BootArgsBuf};
pub use frame::{TrapFrame, Vector};
pub use hypercall::{HcError, Hypercall, HC_FLAG_NOSPIN};
pub use image::KernelAbiHeader;
pub use sandbox::SandboxHeader;
pub use shutdown::{ProgramEnd, ShutdownRecord};
pub use stub::StubTable;
pub use vcpu::{CrashInfo, CrashReason, VcpuShared};

/// Magic value that starts every versioned ABI structure: "PVMUXABI" in little endian.
pub const ABI_MAGIC: u64 = u64::from_le_bytes(*b"PVMUXABI");

/// ABI version. Bumped on any incompatible change; both sides refuse a mismatch at boot.
pub const ABI_VERSION: u32 = 6;

/// Size of a guest page (and of a host page: pvmux requires 4 KiB host pages).
pub const PAGE_SIZE: u64 = 4096;

/// The largest number of vCPUs a tenant may have.
pub const MAX_VCPUS: u32 = 64;
