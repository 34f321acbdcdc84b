//! The initrd: the archive the host placed in guest memory for the initramfs, handed to the
//! filesystem as a shared `'static` slice once the memory map is checked to reserve it.
//!
//! This module owns the one raw memory access the filesystem needs (a slice over the direct
//! map), so `fs` stays safe code. The check is a pure function ([`check`]) with host tests.

use pvmux_hypercalls::{MemRegion, MemRegionKind};

/// Why the initrd was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InitrdError {
    /// Its range overflows or is not inside guest memory.
    OutOfMemory,
    /// It is not covered by one `Initrd` region of the memory map, or overlaps memory the
    /// kernel allocates from.
    NotReserved,
}

impl InitrdError {
    /// What went wrong, for the boot log.
    pub(crate) const fn reason(self) -> &'static str {
        match self {
            Self::OutOfMemory => "the initrd lies outside guest memory",
            Self::NotReserved => "the initrd is not reserved in the memory map",
        }
    }
}

/// Checks that `[gpa, gpa + len)` (`len > 0`) lies inside guest memory of `mem_size` bytes,
/// inside one `Initrd` region of `regions`, and touches no other region (the map is not
/// trusted to be non-overlapping).
pub(crate) fn check(
    gpa: u64,
    len: u64,
    mem_size: u64,
    regions: &[MemRegion],
) -> Result<(), InitrdError> {
    let end = gpa.checked_add(len).ok_or(InitrdError::OutOfMemory)?;
    if gpa == 0 || end > mem_size || usize::try_from(len).is_err() {
        return Err(InitrdError::OutOfMemory);
    }
    let is_initrd = |r: &MemRegion| MemRegionKind::from_raw(r.kind) == Some(MemRegionKind::Initrd);
    let covered = regions.iter().any(|r| {
        is_initrd(r) && r.base <= gpa && r.base.checked_add(r.len).is_some_and(|e| end <= e)
    });
    let overlaps = regions
        .iter()
        .any(|r| !is_initrd(r) && r.base < end && r.base.saturating_add(r.len) > gpa);
    if !covered || overlaps {
        return Err(InitrdError::NotReserved);
    }
    Ok(())
}

/// The initrd bytes (`None` if the host gave none), after [`check`]ing that the host's
/// memory map reserves them.
pub(crate) fn bytes() -> Result<Option<&'static [u8]>, InitrdError> {
    let bi = crate::boot::info();
    let (gpa, len) = (bi.initrd_gpa, bi.initrd_len);
    if len == 0 {
        return Ok(None);
    }
    check(gpa, len, bi.mem_size, bi.mem_regions())?;
    let va = crate::boot::phys_to_virt(gpa);
    // SAFETY: `check` proved `[gpa, gpa + len)` lies inside guest memory, which the direct
    // map covers read-write for the kernel's lifetime, and that `len` fits a `usize`. The
    // memory map reserves the range as the initrd and no other region touches it, so neither
    // the frame allocator nor anything else in the guest ever writes or frees it (and no
    // user program can map it): a shared `'static` slice is sound.
    Ok(Some(unsafe {
        core::slice::from_raw_parts(va as *const u8, len as usize)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn region(base: u64, len: u64, kind: MemRegionKind) -> MemRegion {
        MemRegion {
            base,
            len,
            kind: kind as u32,
            _reserved: 0,
        }
    }

    /// 64 MiB of memory: usable, then the initrd at 32 MiB (4 MiB), then usable again.
    fn map() -> [MemRegion; 3] {
        [
            region(0, 32 * MIB, MemRegionKind::Usable),
            region(32 * MIB, 4 * MIB, MemRegionKind::Initrd),
            region(36 * MIB, 28 * MIB, MemRegionKind::Usable),
        ]
    }

    #[test]
    fn an_initrd_inside_its_reserved_region_is_accepted() {
        assert_eq!(check(32 * MIB, 4 * MIB, 64 * MIB, &map()), Ok(()));
        assert_eq!(check(33 * MIB, 100, 64 * MIB, &map()), Ok(()));
    }

    #[test]
    fn an_initrd_outside_guest_memory_or_overflowing_is_refused() {
        let m = map();
        assert_eq!(
            check(0, 4 * MIB, 64 * MIB, &m),
            Err(InitrdError::OutOfMemory)
        );
        assert_eq!(
            check(62 * MIB, 4 * MIB, 64 * MIB, &m),
            Err(InitrdError::OutOfMemory)
        );
        assert_eq!(
            check(u64::MAX - 10, 100, u64::MAX, &m),
            Err(InitrdError::OutOfMemory)
        );
    }

    #[test]
    fn an_initrd_not_covered_by_one_initrd_region_is_refused() {
        let m = map();
        // Starts in usable memory.
        assert_eq!(
            check(31 * MIB, 2 * MIB, 64 * MIB, &m),
            Err(InitrdError::NotReserved)
        );
        // Runs past the end of its region.
        assert_eq!(
            check(32 * MIB, 5 * MIB, 64 * MIB, &m),
            Err(InitrdError::NotReserved)
        );
        // No initrd region at all.
        assert_eq!(
            check(32 * MIB, MIB, 64 * MIB, &m[..1]),
            Err(InitrdError::NotReserved)
        );
    }

    #[test]
    fn an_overlapping_usable_region_is_refused_even_if_an_initrd_region_covers_it() {
        let mut m = map().to_vec();
        m.push(region(34 * MIB, MIB, MemRegionKind::Usable));
        assert_eq!(
            check(32 * MIB, 4 * MIB, 64 * MIB, &m),
            Err(InitrdError::NotReserved)
        );
        // A region ending exactly where the initrd starts does not touch it.
        let m = [
            region(0, 32 * MIB, MemRegionKind::Usable),
            region(32 * MIB, 4 * MIB, MemRegionKind::Initrd),
        ];
        assert_eq!(check(32 * MIB, 4 * MIB, 64 * MIB, &m), Ok(()));
    }
}
