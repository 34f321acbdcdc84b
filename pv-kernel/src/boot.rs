//! The boot information page: validation, a private copy, the decoded boot arguments, and
//! address conversions.

use pvmux_hypercalls::bootargs::DecodeError;
use pvmux_hypercalls::{BootArgs, BootInfo, MemRegionKind, ABI_MAGIC, ABI_VERSION, MAX_VCPUS};

/// The kernel's copy of the boot information (the original is mapped read-only).
static BOOT: spin::Once<BootInfo> = spin::Once::new();
/// The boot arguments, decoded once from their pages (`BootInfo.boot_args_gpa`): what
/// everything in the kernel reads.
static ARGS: spin::Once<BootArgs<'static>> = spin::Once::new();

/// Why a boot information page was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BootError {
    /// Wrong magic or ABI version.
    Version,
    /// Inconsistent contents (vCPU count, memory map, kernel placement).
    Contents,
    /// Malformed boot arguments.
    Args(DecodeError),
}

/// Checks `bi`, keeps a copy of it and decodes its boot arguments.
pub(crate) fn install(bi: &BootInfo) -> Result<&'static BootInfo, BootError> {
    if bi.magic != ABI_MAGIC || bi.abi_version != ABI_VERSION {
        return Err(BootError::Version);
    }
    if bi.nr_vcpus == 0 || bi.nr_vcpus > MAX_VCPUS || bi.mem_size == 0 || bi.kernel_size == 0 {
        return Err(BootError::Contents);
    }
    let bi: &'static BootInfo = BOOT.call_once(|| *bi);
    // The boot arguments are in pages of their own (ABI version 5), reserved in the memory
    // map: decoded in place (`mm::bootargs`).
    let bytes = crate::mm::bootargs::bytes(bi).ok_or(BootError::Contents)?;
    let args = BootArgs::decode(bytes).map_err(BootError::Args)?;
    ARGS.call_once(|| args);
    Ok(bi)
}

/// The boot information (after [`install`]).
pub(crate) fn info() -> &'static BootInfo {
    match BOOT.get() {
        Some(bi) => bi,
        None => crate::arch::die(),
    }
}

/// Number of vCPUs.
pub(crate) fn nr_vcpus() -> u32 {
    info().nr_vcpus
}

/// Guest-virtual address of guest-physical `gpa` in the direct map.
pub(crate) fn phys_to_virt(gpa: u64) -> u64 {
    info().direct_map_base + gpa
}

/// Guest-physical address of `[va, va + len)` if the range lies entirely in the kernel image
/// or in the direct map (both are physically contiguous); `None` otherwise.
pub(crate) fn virt_to_phys(va: u64, len: u64) -> Option<u64> {
    let bi = info();
    let end = va.checked_add(len)?;
    if va >= bi.kernel_virt_base && end <= bi.kernel_virt_base.checked_add(bi.kernel_size)? {
        return Some(va - bi.kernel_virt_base + bi.kernel_phys_base);
    }
    if va >= bi.direct_map_base && end <= bi.direct_map_base.checked_add(bi.mem_size)? {
        return Some(va - bi.direct_map_base);
    }
    None
}

/// The boot arguments if [`install`] ran (`None` in host unit tests).
pub(crate) fn try_args() -> Option<&'static BootArgs<'static>> {
    ARGS.get()
}

/// The boot arguments (after [`install`]): the options, the commands, the init program.
pub(crate) fn args() -> &'static BootArgs<'static> {
    match ARGS.get() {
        Some(args) => args,
        None => crate::arch::die(),
    }
}

/// Iterates over the usable guest-physical ranges `(start, end)` at or above
/// `first_free_gpa`, page aligned.
pub(crate) fn usable_ranges() -> impl Iterator<Item = (u64, u64)> {
    let bi = info();
    let floor = bi.first_free_gpa.max(pvmux_hypercalls::PAGE_SIZE);
    bi.mem_regions().iter().filter_map(move |r| {
        if MemRegionKind::from_raw(r.kind) != Some(MemRegionKind::Usable) {
            return None;
        }
        let page = pvmux_hypercalls::PAGE_SIZE;
        let start = r.base.max(floor).checked_add(page - 1)? & !(page - 1);
        let end = r.base.checked_add(r.len)?.min(bi.mem_size) & !(page - 1);
        (start < end).then_some((start, end))
    })
}
