//! Host memory a sandbox may take: the address-space limit (`RLIMIT_AS`) the stub sets on
//! itself before it installs its filter, and the worst-case host page tables a process can
//! build under that limit.
//!
//! The stub, the host tests and docs/SECURITY.md ("Host memory per tenant") all use these
//! functions, so the figure the documentation states is the figure the stub enforces and the
//! tests measure against.
//!
//! A sandbox can map only its tenant's memfd (and the stub's few private pages), so every byte
//! of host memory it causes beyond `--mem` is either the stub's own anonymous memory
//! ([`stub_private_bound`]) or kernel memory that grows with its mappings: page tables (the
//! only part that can grow large; [`page_table_bound`]) and VMA structures (one per mapping,
//! at most `vm.max_map_count`).

use pvmux_hypercalls::layout::ctl_size;
use pvmux_hypercalls::user::user_ctx_size;
use pvmux_hypercalls::PAGE_SIZE;

/// Size (and alignment) of one per-vCPU (kernel) or per-slot (user) stub area: its state,
/// its start-up / parking stack and its signal stack. Private anonymous memory.
pub const STUB_AREA_SIZE: u64 = 128 * 1024;

/// Room for the stub's own image and the host kernel's special mappings (`[vdso]`,
/// `[vvar]`): the stub is a ~60 KiB static-pie; 2 MiB leaves a wide margin.
pub const STUB_FIXED: u64 = 2 << 20;

/// Shadow mappings the kernel sandbox may hold beyond one view of guest memory (its direct
/// map): the kernel image and stacks mapped a second time, and slack. More is evicted.
pub const SHADOW_SLACK: u64 = 64 << 20;

/// The host's default `vm.max_map_count`: most mappings (VMAs) one process can hold.
pub const DEFAULT_MAX_MAP_COUNT: u64 = 65_530;

/// Virtual bytes one page-table page maps at each level (x86-64, 4-level paging).
const PTE_SPAN: u64 = 2 << 20;
const PMD_SPAN: u64 = 1 << 30;
/// Top-level (PML4) entries of the lower half: user space has at most this many PUD pages.
const USER_PML4_ENTRIES: u64 = 256;
/// PMD pages of the lower half (128 TiB / 1 GiB).
const USER_PMD_PAGES: u64 = 1 << 17;

/// The user-mapping budget of a user sandbox: the tenant's user pool once over. An honest
/// process maps each pool page it uses once (aliases of shared memory are the exception);
/// a process that maps more — aliases, or a program calling stub code — gets `ENOMEM`, and
/// the stub evicts its whole user window and lets the guest kernel re-send mappings on
/// demand, so honest programs only get slower.
pub const fn user_mapping_budget(mem_size: u64, user_pool_base: u64) -> u64 {
    mem_size.saturating_sub(user_pool_base)
}

/// `RLIMIT_AS` of a user sandbox with `nr_vcpus` slots: stub image and special mappings,
/// the slot areas, the context region, the grant page, and [`user_mapping_budget`].
pub const fn user_address_space_limit(mem_size: u64, user_pool_base: u64, nr_vcpus: u32) -> u64 {
    STUB_FIXED
        + nr_vcpus as u64 * STUB_AREA_SIZE
        + user_ctx_size(nr_vcpus)
        + pvmux_hypercalls::PAGE_SIZE
        + user_mapping_budget(mem_size, user_pool_base)
}

/// The shadow budget of a kernel sandbox: guest memory once (the direct map) plus
/// [`SHADOW_SLACK`]. When the host refuses a shadow mapping, the stub evicts the whole shadow
/// and refills lazily (as for the VMA budget).
pub const fn shadow_budget(mem_size: u64) -> u64 {
    mem_size + SHADOW_SLACK
}

/// `RLIMIT_AS` of a kernel sandbox: stub image and special mappings, the vCPU areas (plus one
/// for alignment), the control region, the physmap (guest memory once) and [`shadow_budget`].
pub const fn kernel_address_space_limit(mem_size: u64, nr_vcpus: u32) -> u64 {
    STUB_FIXED
        + (nr_vcpus as u64 + 1) * STUB_AREA_SIZE
        + ctl_size(nr_vcpus)
        + mem_size
        + shadow_budget(mem_size)
}

/// Private anonymous memory of a sandbox's stub: its areas and the image's data (bounded by
/// [`STUB_FIXED`]). `kernel` adds the kernel sandbox's alignment area.
pub const fn stub_private_bound(nr_vcpus: u32, kernel: bool) -> u64 {
    STUB_FIXED + (nr_vcpus as u64 + kernel as u64) * STUB_AREA_SIZE
}

/// Worst-case bytes of host page tables of one process whose address space is limited to
/// `as_limit` bytes and which can hold at most `max_map_count` mappings.
///
/// Page tables are allocated only where a page was touched, one page-table page per 2 MiB
/// (PTE page), 1 GiB (PMD page) and 512 GiB (PUD page) region that holds a touched page, plus
/// the one PML4 page. Each such region needs at least one mapped page of its own, so there are
/// at most `as_limit / 4 KiB` of each; and a mapping of `s` bytes meets at most
/// `s / span + 2` regions of a level, so there are at most `as_limit / span + 2 × maps`.
/// Dense (one huge alias touched every 2 MiB) stays near `as_limit / 512`; sparse (one 4 KiB
/// mapping per 1 GiB) reaches one PTE and one PMD page per mapping.
pub const fn page_table_bound(as_limit: u64, max_map_count: u64) -> u64 {
    let pages = as_limit / PAGE_SIZE;
    let pte = min(pages, as_limit / PTE_SPAN + 2 * max_map_count);
    let pmd = min(
        min(pages, as_limit / PMD_SPAN + 2 * max_map_count),
        USER_PMD_PAGES,
    );
    let pud = min(pages, USER_PML4_ENTRIES);
    (pte + pmd + pud + 1) * PAGE_SIZE
}

const fn min(a: u64, b: u64) -> u64 {
    if a < b {
        a
    } else {
        b
    }
}

/// The largest `n <= max` for which `fits(n)` holds, for a `fits` that holds for every
/// number up to some bound and for none above it (`fits(0)` is taken to hold): a galloping
/// search, then a binary one, so about `2 log2(n)` calls. The stub finds the extent of its
/// initial stack with it — `fits(n)`: the `n` pages below the stack pointer are all mapped,
/// one `mincore` each — in about a dozen calls instead of one per page.
pub fn largest_fitting(max: u64, mut fits: impl FnMut(u64) -> bool) -> u64 {
    // `ok` fits; `bad` does not, or is past `max`.
    let (mut ok, mut bad) = (0u64, 1u64);
    while bad <= max && fits(bad) {
        ok = bad;
        bad = bad.saturating_mul(2);
    }
    if bad > max {
        if ok == max || fits(max) {
            return max;
        }
        bad = max;
    }
    while bad - ok > 1 {
        let mid = ok + (bad - ok) / 2;
        if fits(mid) {
            ok = mid;
        } else {
            bad = mid;
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_fitting_finds_the_bound_in_few_calls() {
        for max in [0u64, 1, 2, 3, 7, 64, 4096] {
            for bound in 0..=max.min(300) + 2 {
                let mut calls = 0;
                let got = largest_fitting(max, |n| {
                    calls += 1;
                    assert!((1..=max).contains(&n), "asked {n} with max {max}");
                    n <= bound
                });
                assert_eq!(got, bound.min(max), "max {max} bound {bound}");
                assert!(calls <= 2 * (64 - max.leading_zeros()) + 2, "{calls} calls");
            }
        }
        // The initial stack's case: 33 pages below the stack pointer, 4096 at most.
        let mut calls = 0;
        assert_eq!(
            largest_fitting(4096, |n| {
                calls += 1;
                n <= 33
            }),
            33
        );
        assert!(calls <= 12, "{calls}");
    }

    #[test]
    fn dense_and_sparse_cases() {
        // 256 MiB tenant, 128 MiB pool, 2 vCPUs: the limit is the pool plus a few MiB.
        let l = user_address_space_limit(256 << 20, 128 << 20, 2);
        assert!(l > 128 << 20 && l < 140 << 20);
        // Sparse: at most one PTE and one PMD page per 4 KiB of address space.
        let pt = page_table_bound(l, DEFAULT_MAX_MAP_COUNT);
        assert!(pt <= 2 * l + (USER_PML4_ENTRIES + 1) * PAGE_SIZE);
        // A huge address space is bounded by the mapping count instead (~512 MiB + 1 MiB).
        let big = page_table_bound(1 << 46, DEFAULT_MAX_MAP_COUNT);
        assert_eq!(
            big,
            ((1u64 << 46) / PTE_SPAN
                + 2 * DEFAULT_MAX_MAP_COUNT
                + USER_PMD_PAGES
                + USER_PML4_ENTRIES
                + 1)
                * PAGE_SIZE
        );
        // One mapping of a few pages: at most one page per level.
        assert_eq!(page_table_bound(3 * PAGE_SIZE, 1), 8 * PAGE_SIZE);
    }

    #[test]
    fn kernel_limit_covers_physmap_and_shadow() {
        let l = kernel_address_space_limit(256 << 20, 2);
        assert!(l >= 2 * (256 << 20) + SHADOW_SLACK);
    }
}
