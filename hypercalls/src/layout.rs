//! Fixed virtual-address layout of a kernel sandbox process.
//!
//! ```text
//!  CTL_BASE        control region (ctl memfd): page 0 = SandboxHeader, page 1+i = VcpuShared i
//!  PHYSMAP_BASE    the stub's private linear map of all guest-physical memory
//!  WINDOW_BASE     the guest window: guest virtual addresses == sandbox virtual addresses,
//!  ..WINDOW_END    realised lazily by the stub from the guest's own page tables
//!  ..GUARD_END     guard: never mapped, so a window address plus a window length stays harmless
//! ```
//! Inside the window the domain builder places the direct map at [`DIRECT_MAP_BASE`] and the
//! kernel image at a randomised, 2 MiB-aligned base in
//! [`KERNEL_REGION_BASE`]..[`KERNEL_REGION_BASE`]+[`KERNEL_REGION_SIZE`]. The guest is free to
//! use the rest of the window (heap, vmalloc-style areas, stacks).

/// Base of the control region shared with the host (mapped from the ctl memfd).
pub const CTL_BASE: u64 = 0x0000_0800_0000_0000;
/// Offset in the control region of the [`crate::SandboxHeader`] page.
pub const CTL_HEADER_OFFSET: u64 = 0;
/// Offset in the control region of vCPU 0's [`crate::VcpuShared`] page; vCPU `i` is at
/// `CTL_VCPU_OFFSET + i * PAGE_SIZE`.
pub const CTL_VCPU_OFFSET: u64 = crate::PAGE_SIZE;
/// Size of the control memfd for `n` vCPUs.
pub const fn ctl_size(nr_vcpus: u32) -> u64 {
    CTL_VCPU_OFFSET + nr_vcpus as u64 * crate::PAGE_SIZE
}
/// Guest-virtual address of vCPU `i`'s shared page.
pub const fn vcpu_shared_addr(i: u32) -> u64 {
    CTL_BASE + CTL_VCPU_OFFSET + i as u64 * crate::PAGE_SIZE
}

/// Base of the stub's linear map of guest-physical memory (the whole guest memfd).
pub const PHYSMAP_BASE: u64 = 0x0000_0c00_0000_0000;
/// Largest guest memory a tenant may have (the physmap's size).
pub const MAX_GUEST_MEM: u64 = 0x0000_0100_0000_0000; // 1 TiB

/// First address of the guest window.
pub const WINDOW_BASE: u64 = 0x0000_1000_0000_0000;
/// Size of the guest window (16 TiB: PML4 slots 32..64).
pub const WINDOW_SIZE: u64 = 0x0000_1000_0000_0000;
/// One past the last address of the guest window.
pub const WINDOW_END: u64 = WINDOW_BASE + WINDOW_SIZE;
/// One past the last address of the guard area after the window (never mapped).
pub const GUARD_END: u64 = WINDOW_END + WINDOW_SIZE;

/// Where the domain builder puts the direct map: guest-physical `p` is at `DIRECT_MAP_BASE + p`.
pub const DIRECT_MAP_BASE: u64 = WINDOW_BASE;
/// Region in which the kernel image is placed at a randomised base.
pub const KERNEL_REGION_BASE: u64 = WINDOW_BASE + 0x0000_0200_0000_0000;
/// Size of the kernel placement region (the randomisation range plus the image).
pub const KERNEL_REGION_SIZE: u64 = 0x0000_0000_4000_0000; // 1 GiB
/// Start of the window area left entirely to the guest (heaps, stacks, demand-mapped areas).
pub const GUEST_FREE_BASE: u64 = WINDOW_BASE + 0x0000_0400_0000_0000;

/// True if `[addr, addr + len)` lies inside the guest window.
pub const fn in_window(addr: u64, len: u64) -> bool {
    addr >= WINDOW_BASE && len <= WINDOW_SIZE && addr - WINDOW_BASE <= WINDOW_SIZE - len
}

const _: () = assert!(CTL_BASE + ctl_size(crate::MAX_VCPUS) <= PHYSMAP_BASE);
const _: () = assert!(PHYSMAP_BASE + MAX_GUEST_MEM <= WINDOW_BASE);
const _: () = assert!(GUARD_END <= 0x0000_5000_0000_0000);
const _: () = assert!(DIRECT_MAP_BASE + MAX_GUEST_MEM <= KERNEL_REGION_BASE);
const _: () = assert!(KERNEL_REGION_BASE + KERNEL_REGION_SIZE <= GUEST_FREE_BASE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bounds() {
        assert!(in_window(WINDOW_BASE, 0));
        assert!(in_window(WINDOW_BASE, WINDOW_SIZE));
        assert!(!in_window(WINDOW_BASE, WINDOW_SIZE + 1));
        assert!(!in_window(WINDOW_BASE - 1, 1));
        assert!(!in_window(WINDOW_END - 4096, 8192));
        assert!(!in_window(u64::MAX, 2));
    }
}
