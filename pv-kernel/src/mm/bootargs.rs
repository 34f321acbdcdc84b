//! The boot arguments' bytes: pages of their own the host placed in guest memory (ABI
//! version 5, docs/ABI.md §5.1), handed to the decoder as a shared `'static` slice once the
//! memory map is checked to reserve them — like the initrd ([`super::initrd`]).
//!
//! This module owns the raw memory access; the check is a pure function ([`check`]) with host
//! tests.

use pvmux_hypercalls::{BootInfo, MemRegion, MemRegionKind};

/// Checks that `[gpa, gpa + len)` is where the ABI allows ([`BootInfo::boot_args_range`]:
/// page aligned, at most `BOOT_ARGS_MAX` bytes, inside one `Boot` region that does not start
/// at 0), inside guest memory of `mem_size` bytes, and touches no region of another kind (the
/// map is not trusted to be non-overlapping). Returns the range.
pub(crate) fn check(bi: &BootInfo) -> Option<(u64, usize)> {
    let (gpa, len) = bi.boot_args_range()?;
    let end = gpa.checked_add(len as u64)?;
    let is_boot = |r: &MemRegion| MemRegionKind::from_raw(r.kind) == Some(MemRegionKind::Boot);
    let overlaps = bi
        .mem_regions()
        .iter()
        .any(|r| !is_boot(r) && r.base < end && r.base.saturating_add(r.len) > gpa);
    (end <= bi.mem_size && !overlaps).then_some((gpa, len))
}

/// The boot arguments' bytes, `None` if [`check`] refuses where the host put them.
pub(crate) fn bytes(bi: &BootInfo) -> Option<&'static [u8]> {
    let (gpa, len) = check(bi)?;
    let va = bi.direct_map_base.checked_add(gpa)?;
    // SAFETY: `check` proved `[gpa, gpa + len)` lies inside guest memory, which the host's
    // direct map covers read-write for the kernel's lifetime (the kernel keeps that mapping),
    // and inside a `Boot` region no other region touches: the frame allocator never hands out
    // `Boot` memory, nothing in the kernel writes it, and user sandboxes cannot map it (it is
    // below the user pool). A shared `'static` slice is sound.
    Some(unsafe { core::slice::from_raw_parts(va as *const u8, len) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    fn region(base: u64, len: u64, kind: MemRegionKind) -> MemRegion {
        MemRegion {
            base,
            len,
            kind: kind as u32,
            _reserved: 0,
        }
    }

    fn info(gpa: u64, len: u32, map: &[MemRegion]) -> BootInfo {
        let mut bi = BootInfo::new_zeroed();
        bi.mem_size = 64 << 20;
        bi.boot_args_gpa = gpa;
        bi.boot_args_len = len;
        bi.nr_mem_regions = map.len() as u32;
        bi.mem_map[..map.len()].copy_from_slice(map);
        bi
    }

    #[test]
    fn only_a_boot_region_of_their_own_is_accepted() {
        let good = [
            region(0, 1 << 20, MemRegionKind::Boot),
            region(1 << 20, 31 << 20, MemRegionKind::Usable),
            region(32 << 20, 1 << 20, MemRegionKind::Boot),
            region(33 << 20, 31 << 20, MemRegionKind::UserPool),
        ];
        assert_eq!(check(&info(32 << 20, 100, &good)), Some((32 << 20, 100)));
        // Not page aligned, too long, in usable memory, in the first Boot region (BootInfo's),
        // running past its region.
        assert_eq!(check(&info((32 << 20) + 8, 100, &good)), None);
        assert_eq!(check(&info(32 << 20, 256 << 10, &good)), None);
        assert_eq!(check(&info(2 << 20, 100, &good)), None);
        assert_eq!(check(&info(0x1000, 100, &good)), None);
        assert_eq!(check(&info((33 << 20) - 4096, 8192, &good)), None);
        // A Boot region that another region overlaps.
        let mut bad = good;
        bad[1].len = 32 << 20;
        assert_eq!(check(&info(32 << 20, 100, &bad)), None);
    }
}
