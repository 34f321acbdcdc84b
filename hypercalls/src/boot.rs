//! The boot information page the domain builder writes into guest memory.
//!
//! At the guest entry point `rdi` holds the guest-virtual address of a [`BootInfo`] (mapped
//! read-only) and `rsi` the address of the stub's [`crate::StubTable`]. The guest must check
//! [`BootInfo::magic`] and [`BootInfo::abi_version`] before using anything else.

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Maximum number of entries in [`BootInfo::mem_map`].
pub const MAX_MEM_REGIONS: usize = 32;
pub use crate::bootargs::BOOT_ARGS_MAX;

/// What a region of guest-physical memory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[repr(u32)]
pub enum MemRegionKind {
    /// Free memory the guest may allocate.
    Usable = 1,
    /// The kernel image (all its loaded segments).
    Kernel = 2,
    /// Initial page tables, boot information and the boot stack.
    Boot = 3,
    /// The initial RAM disk.
    Initrd = 4,
    /// Guest memory reserved for user pages: the only guest-physical range a user sandbox
    /// may map (the kernel must not keep its own data there).
    UserPool = 5,
}

impl MemRegionKind {
    /// Decodes a raw kind; `None` for values this ABI version does not know.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => Self::Usable,
            2 => Self::Kernel,
            3 => Self::Boot,
            4 => Self::Initrd,
            5 => Self::UserPool,
            _ => return None,
        })
    }
}

/// One range of guest-physical memory.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct MemRegion {
    /// Guest-physical start (page aligned).
    pub base: u64,
    /// Length in bytes (page aligned).
    pub len: u64,
    /// A [`MemRegionKind`] as `u32`.
    pub kind: u32,
    /// Reserved, zero.
    pub _reserved: u32,
}

/// Bits of [`BootInfo::flags`].
pub mod boot_flags {
    /// The memory is a snapshot's (docs/ABI.md §snapshot): the kernel resumes the contexts
    /// it parked instead of booting. The host set `tsc_base` so that guest time continues
    /// from the snapshot's and `wall_clock_epoch_ns` to the host's wall clock now less it.
    pub const RESUME: u32 = 1 << 0;
}

/// Boot information: everything the guest learns from the host at start of day.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BootInfo {
    /// [`crate::ABI_MAGIC`].
    pub magic: u64,
    /// [`crate::ABI_VERSION`].
    pub abi_version: u32,
    /// Number of vCPUs (1..=[`crate::MAX_VCPUS`]); vCPU 0 runs the entry point.
    pub nr_vcpus: u32,
    /// Size of guest-physical memory in bytes.
    pub mem_size: u64,
    /// Number of valid entries in `mem_map`.
    pub nr_mem_regions: u32,
    /// Length of the boot arguments at `boot_args_gpa` (at most [`BOOT_ARGS_MAX`]).
    pub boot_args_len: u32,
    /// Guest-physical memory map, sorted by base, non-overlapping.
    pub mem_map: [MemRegion; MAX_MEM_REGIONS],
    /// Guest-physical address of the boot arguments (`boot_args_len` bytes, page aligned,
    /// inside a [`MemRegionKind::Boot`] region of their own): what the kernel is asked to do,
    /// encoded as [`crate::bootargs`] describes (decode with
    /// [`crate::bootargs::BootArgs::decode`]). ABI version 5 moved them out of this page.
    pub boot_args_gpa: u64,
    /// Reserved, zero (where the boot arguments were before ABI version 5).
    pub _reserved_args: [u64; 255],
    /// Guest-physical address of the initial RAM disk, 0 if none.
    pub initrd_gpa: u64,
    /// Length of the initial RAM disk in bytes, 0 if none.
    pub initrd_len: u64,
    /// TSC frequency in kHz.
    pub tsc_khz: u64,
    /// Guest time: `ns = ((rdtsc - tsc_base) * clock_mult) >> clock_shift`.
    pub tsc_base: u64,
    /// Multiplier for TSC ticks to nanoseconds.
    pub clock_mult: u64,
    /// Shift for TSC ticks to nanoseconds.
    pub clock_shift: u32,
    /// [`boot_flags`]: how the guest starts (0: a cold boot).
    pub flags: u32,
    /// Wall-clock time (ns since the Unix epoch) at guest time 0.
    pub wall_clock_epoch_ns: u64,
    /// Guest-physical address the kernel image was loaded at.
    pub kernel_phys_base: u64,
    /// Guest-virtual address the kernel image was linked to (its randomised base).
    pub kernel_virt_base: u64,
    /// Size of the kernel image's memory footprint in bytes.
    pub kernel_size: u64,
    /// Guest-virtual base of the direct map of all guest-physical memory.
    pub direct_map_base: u64,
    /// Guest-physical address of the root (PML4) page table in use at entry.
    pub page_table_root: u64,
    /// Guest-virtual top of the boot stack vCPU 0 starts on.
    pub boot_stack_top: u64,
    /// Size of the boot stack in bytes.
    pub boot_stack_size: u64,
    /// First guest-physical byte not used by the host's boot structures.
    pub first_free_gpa: u64,
    /// Guest-virtual address of vCPU 0's [`crate::VcpuShared`] page; vCPU `i` is at
    /// `vcpu_shared_base + i * PAGE_SIZE`.
    pub vcpu_shared_base: u64,
    /// Random bytes from the host's own generator (`getrandom`), to seed the guest's random
    /// number generator together with what the CPU offers (`rdseed`, `rdrand`). Zero from a
    /// host that predates the field: a guest must not rely on it alone.
    pub entropy: [u8; 32],
    /// Reserved for future use, zero.
    pub _reserved: [u64; 4],
}

impl BootInfo {
    /// Where the boot arguments are, `(gpa, len)`, if they are where the ABI allows: at
    /// most [`BOOT_ARGS_MAX`] bytes, page aligned, entirely inside one `Boot` region of the
    /// memory map that does not start at 0 (page 0 and `BootInfo` are in the first one).
    pub fn boot_args_range(&self) -> Option<(u64, usize)> {
        let (gpa, len) = (self.boot_args_gpa, self.boot_args_len as usize);
        if len > BOOT_ARGS_MAX || gpa == 0 || !gpa.is_multiple_of(crate::PAGE_SIZE) {
            return None;
        }
        let end = gpa.checked_add(len as u64)?;
        self.mem_regions()
            .iter()
            .any(|r| {
                r.kind == MemRegionKind::Boot as u32
                    && r.base != 0
                    && r.base <= gpa
                    && end <= r.base.saturating_add(r.len)
            })
            .then_some((gpa, len))
    }

    /// The valid entries of the memory map.
    pub fn mem_regions(&self) -> &[MemRegion] {
        let n = (self.nr_mem_regions as usize).min(MAX_MEM_REGIONS);
        &self.mem_map[..n]
    }
}

const _: () = assert!(size_of::<MemRegion>() == 24);
const _: () = assert!(offset_of!(BootInfo, mem_map) == 32);
const _: () = assert!(offset_of!(BootInfo, boot_args_len) == 28);
const _: () = assert!(offset_of!(BootInfo, boot_args_gpa) == 32 + 24 * MAX_MEM_REGIONS);
const _: () = assert!(offset_of!(BootInfo, initrd_gpa) == 32 + 24 * MAX_MEM_REGIONS + 2048);
const _: () = assert!(offset_of!(BootInfo, entropy) == 2976);
const _: () = assert!(offset_of!(BootInfo, flags) == 2892);
const _: () = assert!(size_of::<BootInfo>() == 3040);
const _: () = assert!(size_of::<BootInfo>() <= crate::PAGE_SIZE as usize);
