//! The region accounting of the memory calls, as Linux's: how many regions a call adds by
//! splitting, and whether the count allows it (`vm.max_map_count`). Pure functions over
//! the regions around the call's range, unit-tested on the host.

/// Most regions a process may have (Linux's default `vm.max_map_count`).
pub(crate) const MAX_MAP_COUNT: usize = 65530;

/// Regions Linux's `mremap` wants room for before moving one (`move_vma`).
pub(crate) const MREMAP_MOVE_REGIONS: usize = 3;

/// True if a process with `count` regions may get `added` more: a call that splits
/// regions (`strict`) needs `count + added <= MAX_MAP_COUNT` (Linux's `split_vma` wants
/// `map_count < max` before each split; `munmap` of a region's middle the same), and one
/// that adds a new region needs `count <= MAX_MAP_COUNT` (Linux's `do_mmap`, which lets the
/// count reach one more than the maximum).
pub(crate) const fn map_count_allows(count: usize, added: usize, strict: bool) -> bool {
    if strict {
        count + added <= MAX_MAP_COUNT
    } else {
        count <= MAX_MAP_COUNT
    }
}

/// Regions `munmap(start, end)` adds: one if the region around `start` (`region`, its
/// `(start, end)`) extends past both ends — it is cut in two — else none.
pub(crate) fn splits_for_munmap(region: Option<(u64, u64)>, start: u64, end: u64) -> usize {
    usize::from(region.is_some_and(|(s, e)| s < start && e > end))
}

/// Regions `mprotect(start, end)` adds: one for the region around `start` if it starts
/// before it (`at_start`), one for the region around `end` if it starts before it
/// (`at_end`) — two if one region holds the range strictly inside.
pub(crate) fn splits_for_protect(
    at_start: Option<(u64, u64)>,
    at_end: Option<(u64, u64)>,
    start: u64,
    end: u64,
) -> usize {
    usize::from(at_start.is_some_and(|(s, _)| s < start))
        + usize::from(at_end.is_some_and(|(s, _)| s < end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmap_may_reach_one_past_the_maximum_and_splits_may_not() {
        assert!(
            map_count_allows(MAX_MAP_COUNT, 1, false),
            "Linux's `>` check"
        );
        assert!(!map_count_allows(MAX_MAP_COUNT + 1, 1, false));
        assert!(map_count_allows(MAX_MAP_COUNT - 2, 2, true));
        assert!(!map_count_allows(MAX_MAP_COUNT - 1, 2, true));
        assert!(!map_count_allows(MAX_MAP_COUNT, 1, true));
    }

    #[test]
    fn splits_are_counted_like_linux() {
        let r = Some((0x1000, 0x9000));
        // munmap: the middle splits, an end trims, the whole removes.
        assert_eq!(splits_for_munmap(r, 0x2000, 0x3000), 1);
        assert_eq!(splits_for_munmap(r, 0x1000, 0x3000), 0);
        assert_eq!(splits_for_munmap(r, 0x8000, 0x9000), 0);
        assert_eq!(splits_for_munmap(None, 0x2000, 0x3000), 0);
        // mprotect: each cut inside a region is one more.
        assert_eq!(splits_for_protect(r, r, 0x2000, 0x3000), 2);
        assert_eq!(splits_for_protect(r, r, 0x1000, 0x3000), 1);
        assert_eq!(splits_for_protect(r, None, 0x2000, 0x9000), 1);
        assert_eq!(
            splits_for_protect(r, Some((0x9000, 0xa000)), 0x1000, 0x9000),
            0
        );
    }

    #[test]
    fn the_count_is_the_maps_length() {
        use crate::linux::space::Mm;
        let mut mm = Mm::new();
        for i in 0..10u64 {
            mm.add_vma(0x10_0000 + i * 0x2000, 0x10_1000 + i * 0x2000, 3, None);
        }
        mm.unmap(0x10_0000, 0x10_1000);
        assert_eq!(super::super::map_count(&mm), 9);
        assert_eq!(super::super::map_count(&mm), mm.vmas().count());
    }
}
