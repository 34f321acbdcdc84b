//! The domain builder: loads a kernel into a tenant's guest memory, builds its initial page
//! tables, boot information and boot stack, like a Xen PV domain builder.
//!
//! Guest-physical layout (all page aligned):
//!
//! ```text
//!  0x0000            page 0, never used (Boot region)
//!  0x1000            BootInfo                          (Boot)
//!  0x2000..0x12000   boot stack, 64 KiB                (Boot)
//!  0x12000..         page-table pages                  (Boot)
//!  ..2 MiB aligned   slack                             (Usable)
//!  kernel_phys_base  kernel image (span bytes)         (Kernel)
//!  ..                the kernel's free memory          (Usable)
//!  boot_args_gpa     the boot arguments, page padded   (Boot)
//!  initrd_gpa        initial RAM disk, if any, up to   (Initrd)
//!    ..pool_base     the end of the kernel part
//!  pool_base         the user pool, up to mem_size     (UserPool)
//! ```
//!
//! The **user pool** is the upper three quarters of guest memory (half for guests of
//! 128 MiB or less, the kernel part between 64 MiB and 1 GiB; rounded to 2 MiB; see
//! [`user_pool_size`]): the only guest-physical memory a user sandbox may map, so the kernel
//! keeps none of its own data there. Program memory and file contents (the page cache) live
//! in it; the kernel part holds the kernel's heap, page tables and the initial RAM disk, and
//! the kernel can always tell from its memory map where the pool starts. The boot
//! structures, the kernel, its free memory and the initial RAM disk all lie below
//! `pool_base`.
//!
//! The initial RAM disk (a validated plain cpio newc archive, see [`crate::initramfs`]) sits
//! page aligned at the top of the kernel part (just below the user pool), so the kernel's
//! free memory below it stays one region; its last page is zero-padded. The guest reads it
//! through the direct map. The boot arguments (at most `BOOT_ARGS_MAX` bytes, docs/ABI.md
//! §5.1) get pages of their own just below it, a `Boot` region of their own.
//!
//! Guest-virtual layout at entry: the direct map of all guest memory at `DIRECT_MAP_BASE`
//! (read-write, no-execute, 2 MiB pages); the kernel at a random 2 MiB-aligned base in the
//! kernel region (4 KiB pages with the segments' permissions); the boot info page read-only at
//! [`BOOT_INFO_GVA`]; the boot stack (read-write) at [`BOOT_STACK_BOTTOM_GVA`], with an unmapped
//! guard page below it.

use pvmux_hypercalls::boot::{BootInfo, MemRegion, MemRegionKind, MAX_MEM_REGIONS};
use pvmux_hypercalls::layout::{
    vcpu_shared_addr, DIRECT_MAP_BASE, KERNEL_REGION_BASE, KERNEL_REGION_SIZE,
};
use pvmux_hypercalls::BootArgsBuf;
use pvmux_hypercalls::{ABI_MAGIC, ABI_VERSION, PAGE_SIZE};
use rand::Rng;
use zerocopy::{FromZeros, IntoBytes};

use crate::clock::ClockParams;
use crate::kernel_image::KERNEL_ALIGN;
use crate::memory::MEM_SIZE_ALIGN;
use crate::page_table::{tables_needed, MapFlags, PageTableBuilder};
use crate::{GuestMemory, HostError, KernelImage};

/// Guest-physical address of the boot info page.
pub const BOOT_INFO_GPA: u64 = 0x1000;
/// Guest-physical address of the boot stack's lowest byte.
pub const BOOT_STACK_GPA: u64 = 0x2000;
/// Size of the boot stack.
pub const BOOT_STACK_SIZE: u64 = 64 * 1024;
/// First page-table page (the PML4).
pub const PAGE_TABLE_GPA: u64 = BOOT_STACK_GPA + BOOT_STACK_SIZE;
/// Guest-virtual address of the (read-only) boot info page: 1 GiB below the kernel region.
pub const BOOT_INFO_GVA: u64 = KERNEL_REGION_BASE - (1 << 30);
/// Guest-virtual address of the boot stack's lowest byte; the page below it is never mapped.
pub const BOOT_STACK_BOTTOM_GVA: u64 = BOOT_INFO_GVA + 0x10000;
/// Guest-virtual top of the boot stack.
pub const BOOT_STACK_TOP_GVA: u64 = BOOT_STACK_BOTTOM_GVA + BOOT_STACK_SIZE;
/// Free memory a tenant must have beyond the boot structures and the kernel.
pub const MIN_FREE_MEM: u64 = 2 << 20;

/// Least memory the kernel part gets once guest memory is large enough (below
/// `2 * KERNEL_PART_MIN` it is half of memory, as for small guests).
pub const KERNEL_PART_MIN: u64 = 64 << 20;
/// Most memory the kernel part gets (larger guests give everything else to the pool).
pub const KERNEL_PART_MAX: u64 = 1 << 30;

/// `v` rounded down to [`MEM_SIZE_ALIGN`].
const fn align_down(v: u64) -> u64 {
    v / MEM_SIZE_ALIGN * MEM_SIZE_ALIGN
}

/// Bytes of the user pool of a guest with `mem_size` bytes of memory: three quarters of it,
/// leaving the kernel part a quarter — but at least [`KERNEL_PART_MIN`] (up to half of
/// memory: small guests split half and half) and at most [`KERNEL_PART_MAX`] — rounded to
/// 2 MiB, at least 2 MiB (and never more than `mem_size`).
///
/// The kernel part holds the kernel, its heap (process and file bookkeeping: about 64 bytes
/// per resident user page), page tables and the initial RAM disk; file contents and the
/// page cache live in the pool with program memory. 256 MiB of memory gives the kernel
/// 64 MiB and the pool 192 MiB; 1 GiB gives 256 MiB and 768 MiB; 8 GiB gives 1 GiB and
/// 7 GiB.
pub const fn user_pool_size(mem_size: u64) -> u64 {
    let half = align_down(mem_size / 2);
    let half = if half < MEM_SIZE_ALIGN {
        MEM_SIZE_ALIGN
    } else {
        half
    };
    let three_quarters = align_down(mem_size - mem_size / 4);
    let above_min = align_down(mem_size.saturating_sub(KERNEL_PART_MIN));
    let above_max = mem_size.saturating_sub(KERNEL_PART_MAX);
    let mut pool = if three_quarters < above_min {
        three_quarters
    } else {
        above_min
    };
    if pool < half {
        pool = half;
    }
    if pool < above_max {
        pool = above_max;
    }
    if pool > mem_size {
        mem_size
    } else {
        pool
    }
}

/// First guest-physical byte of the user pool of a guest with `mem_size` bytes of memory.
pub const fn user_pool_base(mem_size: u64) -> u64 {
    mem_size - user_pool_size(mem_size)
}

/// The smallest guest memory size (a multiple of 2 MiB, at least 16 MiB) whose kernel part
/// (everything below the user pool) holds `kernel_part` bytes (the largest multiple of
/// 2 MiB if none does: the kernel part is at most [`KERNEL_PART_MAX`]).
pub fn mem_size_for(kernel_part: u64) -> u64 {
    // The kernel part grows with memory: search the multiples of 2 MiB.
    let (mut lo, mut hi) = (
        crate::memory::MIN_MEM_SIZE / MEM_SIZE_ALIGN,
        u64::MAX / MEM_SIZE_ALIGN,
    );
    if user_pool_base(hi * MEM_SIZE_ALIGN) < kernel_part {
        return hi * MEM_SIZE_ALIGN;
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if user_pool_base(mid * MEM_SIZE_ALIGN) >= kernel_part {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo * MEM_SIZE_ALIGN
}

/// What the domain builder produced: the entry state and where things are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainLayout {
    /// Randomised guest-virtual base of the kernel.
    pub kernel_base: u64,
    /// Guest-physical address of the kernel image.
    pub kernel_phys: u64,
    /// Kernel footprint in bytes.
    pub kernel_span: u64,
    /// Entry point (guest virtual).
    pub entry_rip: u64,
    /// Initial stack pointer (≡ 8 mod 16).
    pub entry_rsp: u64,
    /// Initial `rdi`: guest-virtual address of the boot info.
    pub entry_rdi: u64,
    /// Guest-physical address of the PML4.
    pub page_table_root: u64,
    /// First guest-physical byte not used by boot structures or the kernel.
    pub first_free_gpa: u64,
    /// The memory map given to the guest.
    pub mem_map: Vec<MemRegion>,
    /// Guest-physical address of the initial RAM disk, 0 if none.
    pub initrd_gpa: u64,
    /// Length of the initial RAM disk in bytes, 0 if none.
    pub initrd_len: u64,
    /// First guest-physical byte of the user pool (a `UserPool` region up to the end of
    /// guest memory; see [`user_pool_size`]).
    pub pool_base: u64,
}

/// Inputs of the domain builder besides memory and kernel.
#[derive(Clone, Copy, Debug)]
pub struct BuildParams<'a> {
    /// Number of vCPUs.
    pub nr_vcpus: u32,
    /// The boot arguments (encoded: at most `BOOT_ARGS_MAX` bytes).
    pub boot_args: &'a BootArgsBuf,
    /// Guest clock origin; `None`: written afterwards with [`write_clock`] (a launch
    /// builds the domain while the TSC is still being calibrated).
    pub clock: Option<&'a ClockParams>,
    /// Initial RAM disk: a plain cpio newc archive the caller has checked with
    /// [`crate::initramfs::validate`]; `None` (or empty) for none.
    pub initrd: Option<&'a [u8]>,
}

/// Picks a random 2 MiB-aligned kernel base such that an image of `span` bytes fits in the
/// kernel region.
pub fn random_kernel_base(span: u64) -> u64 {
    let span = span.next_multiple_of(KERNEL_ALIGN);
    let slots = (KERNEL_REGION_SIZE.saturating_sub(span) / KERNEL_ALIGN).max(1);
    KERNEL_REGION_BASE + rand::rng().random_range(0..slots) * KERNEL_ALIGN
}

/// Builds the domain again in the memory of a running tenant whose kernel was stopped, for
/// a kernel hand-over's switch (docs/MULTIKERNEL.md, "Kernel hand-over"): the kernel part,
/// everything below the user pool, is punched out of the memfd (the host gets its pages
/// back; they read as zeros, as in a fresh memfd), then built exactly as [`build`] does;
/// the user pool — the programs' pages the new kernel adopts — is not touched.
pub fn rebuild_kernel_part(
    mem: &GuestMemory,
    kernel: &KernelImage,
    params: &BuildParams<'_>,
    base: u64,
) -> Result<DomainLayout, HostError> {
    use rustix::fs::FallocateFlags;
    let pool_base = user_pool_base(mem.size());
    if rustix::fs::fallocate(
        mem.fd(),
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        0,
        pool_base,
    )
    .is_err()
    {
        // A memfd punches; zeroing is the same for the guest.
        mem.zero(0, pool_base)?;
    }
    build(mem, kernel, params, base)
}

/// Builds the domain in `mem` with the kernel at guest-virtual `base` (2 MiB aligned, from
/// [`random_kernel_base`]). `mem` must be freshly zeroed.
pub fn build(
    mem: &GuestMemory,
    kernel: &KernelImage,
    params: &BuildParams<'_>,
    base: u64,
) -> Result<DomainLayout, HostError> {
    if !base.is_multiple_of(KERNEL_ALIGN)
        || base < KERNEL_REGION_BASE
        || base + kernel.span() > KERNEL_REGION_BASE + KERNEL_REGION_SIZE
    {
        return Err(HostError::InvalidConfig(format!(
            "bad kernel base {base:#x}"
        )));
    }
    let mem_size = mem.size();
    let span = kernel.span();
    let pool_pages = 1
        + tables_needed(mem_size, 2 << 20)
        + tables_needed(span, PAGE_SIZE)
        + tables_needed(BOOT_STACK_TOP_GVA - BOOT_INFO_GVA, PAGE_SIZE);
    let pool_end = PAGE_TABLE_GPA + pool_pages * PAGE_SIZE;
    let kernel_phys = pool_end.next_multiple_of(KERNEL_ALIGN);
    let kernel_end = kernel_phys + span;
    let pool_base = user_pool_base(mem_size);
    let needed = kernel_end + MIN_FREE_MEM;
    if needed > pool_base {
        return Err(HostError::MemoryTooSmall {
            mem_size,
            needed: mem_size_for(needed),
        });
    }
    // The boot arguments: their own pages below the initial RAM disk (a `Boot` region).
    let boot_args = params.boot_args.as_bytes();
    let args_span = (boot_args.len() as u64).next_multiple_of(PAGE_SIZE);
    let needed = needed + args_span;
    if needed > pool_base {
        return Err(HostError::MemoryTooSmall {
            mem_size,
            needed: mem_size_for(needed),
        });
    }
    let initrd = params.initrd.unwrap_or_default();
    let initrd_len = initrd.len() as u64;
    let initrd_span = initrd_len.next_multiple_of(PAGE_SIZE);
    if initrd_span > pool_base - needed {
        return Err(HostError::InitrdTooBig {
            initrd_len,
            mem_size,
            needed: mem_size_for(needed.saturating_add(initrd_span)),
        });
    }
    let initrd_gpa = if initrd.is_empty() {
        0
    } else {
        pool_base - initrd_span
    };
    let args_gpa = pool_base - initrd_span - args_span;
    let usable_end = args_gpa;

    // Kernel image and initial RAM disk. The image's shared runs, when its sandbox maps them
    // from the image's file, are not written: the memfd keeps holes there.
    let shared = kernel.shared_image_at(kernel_phys);
    let skip: &[crate::kernel_image::SharedRun] = match shared {
        Some(_) => kernel.shared_runs(),
        None => &[],
    };
    kernel.relocated_chunks(base, skip, |off, chunk| {
        write_outside(off, chunk, skip, |at, part| {
            mem.write_bulk(kernel_phys + at, part)
        })
    })?;
    mem.set_shared_image(shared.map(std::sync::Arc::new));
    if !initrd.is_empty() {
        mem.write_bulk(initrd_gpa, initrd)?;
    }
    mem.write(args_gpa, boot_args)?;

    // Page tables.
    let mut pt = PageTableBuilder::new(mem, PAGE_TABLE_GPA, pool_end)?;
    for (i, flags) in kernel.page_flags().iter().enumerate() {
        if let Some(f) = flags {
            let off = i as u64 * PAGE_SIZE;
            pt.map_4k(base + off, kernel_phys + off, *f)?;
        }
    }
    let mut gpa = 0;
    while gpa < mem_size {
        pt.map_2m(DIRECT_MAP_BASE + gpa, gpa, MapFlags::RW)?;
        gpa += 2 << 20;
    }
    pt.map_4k(BOOT_INFO_GVA, BOOT_INFO_GPA, MapFlags::RO)?;
    for off in (0..BOOT_STACK_SIZE).step_by(PAGE_SIZE as usize) {
        pt.map_4k(
            BOOT_STACK_BOTTOM_GVA + off,
            BOOT_STACK_GPA + off,
            MapFlags::RW,
        )?;
    }
    let root = pt.root();

    // Memory map.
    let mut mem_map = vec![MemRegion {
        base: 0,
        len: pool_end,
        kind: MemRegionKind::Boot as u32,
        _reserved: 0,
    }];
    if kernel_phys > pool_end {
        mem_map.push(region(
            pool_end,
            kernel_phys - pool_end,
            MemRegionKind::Usable,
        ));
    }
    mem_map.push(region(kernel_phys, span, MemRegionKind::Kernel));
    mem_map.push(region(
        kernel_end,
        usable_end - kernel_end,
        MemRegionKind::Usable,
    ));
    if args_span > 0 {
        mem_map.push(region(args_gpa, args_span, MemRegionKind::Boot));
    }
    if initrd_span > 0 {
        mem_map.push(region(initrd_gpa, initrd_span, MemRegionKind::Initrd));
    }
    mem_map.push(region(
        pool_base,
        mem_size - pool_base,
        MemRegionKind::UserPool,
    ));
    debug_assert!(mem_map.len() <= MAX_MEM_REGIONS);

    // Boot info.
    let mut info = BootInfo::new_zeroed();
    info.magic = ABI_MAGIC;
    info.abi_version = ABI_VERSION;
    info.nr_vcpus = params.nr_vcpus;
    info.mem_size = mem_size;
    info.nr_mem_regions = mem_map.len() as u32;
    info.mem_map[..mem_map.len()].copy_from_slice(&mem_map);
    info.boot_args_len = boot_args.len() as u32;
    info.boot_args_gpa = args_gpa;
    if let Some(clock) = params.clock {
        set_clock(&mut info, clock);
    }
    info.kernel_phys_base = kernel_phys;
    info.kernel_virt_base = base;
    info.kernel_size = span;
    info.direct_map_base = DIRECT_MAP_BASE;
    info.page_table_root = root;
    info.boot_stack_top = BOOT_STACK_TOP_GVA;
    info.boot_stack_size = BOOT_STACK_SIZE;
    info.first_free_gpa = kernel_end;
    info.vcpu_shared_base = vcpu_shared_addr(0);
    info.initrd_gpa = initrd_gpa;
    info.initrd_len = initrd_len;
    rand::fill(&mut info.entropy);
    mem.write(BOOT_INFO_GPA, info.as_bytes())?;

    let layout = DomainLayout {
        kernel_base: base,
        kernel_phys,
        kernel_span: span,
        entry_rip: base + kernel.entry(),
        entry_rsp: BOOT_STACK_TOP_GVA - 8,
        entry_rdi: BOOT_INFO_GVA,
        page_table_root: root,
        first_free_gpa: kernel_end,
        mem_map,
        initrd_gpa,
        initrd_len,
        pool_base,
    };
    tracing::debug!(?layout, "domain built");
    Ok(layout)
}

/// The clock fields of a boot information block.
/// Hands `put` the parts of `chunk` (the image's bytes at link offset `off`) that lie
/// outside every run of `skip` (sorted by address), with their link offsets.
fn write_outside<E>(
    off: u64,
    chunk: &[u8],
    skip: &[crate::kernel_image::SharedRun],
    mut put: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let end = off + chunk.len() as u64;
    let mut at = off;
    for r in skip {
        let (lo, hi) = (r.vaddr.max(at), (r.vaddr + r.len).min(end));
        if lo >= hi {
            continue;
        }
        if at < lo {
            put(at, &chunk[(at - off) as usize..(lo - off) as usize])?;
        }
        at = hi;
    }
    if at < end {
        put(at, &chunk[(at - off) as usize..])?;
    }
    Ok(())
}

fn set_clock(info: &mut BootInfo, clock: &ClockParams) {
    info.tsc_khz = clock.tsc_khz;
    info.tsc_base = clock.tsc_base;
    info.clock_mult = clock.mult;
    info.clock_shift = clock.shift;
    info.wall_clock_epoch_ns = clock.wall_base_ns;
}

/// Writes the guest clock's origin into the boot information block of a domain built
/// without one ([`BuildParams::clock`] `None`), before its kernel first runs.
pub fn write_clock(mem: &GuestMemory, clock: &ClockParams) -> Result<(), HostError> {
    let mut info = BootInfo::new_zeroed();
    mem.read(BOOT_INFO_GPA, info.as_mut_bytes())?;
    set_clock(&mut info, clock);
    mem.write(BOOT_INFO_GPA, info.as_bytes())?;
    Ok(())
}

fn region(base: u64, len: u64, kind: MemRegionKind) -> MemRegion {
    MemRegion {
        base,
        len,
        kind: kind as u32,
        _reserved: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page_table::{read_virt, read_virt_u64, translate};
    use crate::test_elf::TestElf;
    use zerocopy::FromBytes;

    fn clock() -> ClockParams {
        ClockParams {
            tsc_khz: 1_000_000,
            tsc_base: 5,
            mono_base_ns: 6,
            wall_base_ns: 7,
            mult: 1 << 32,
            shift: 32,
        }
    }

    #[test]
    fn builds_a_bootable_layout() {
        let kernel = KernelImage::parse(TestElf::default().build()).unwrap();
        let mem = GuestMemory::new(32 << 20).unwrap();
        let base = random_kernel_base(kernel.span());
        assert_eq!(base % (2 << 20), 0);
        let c = clock();
        let params = BuildParams {
            nr_vcpus: 2,
            boot_args: &BootArgsBuf::from_words("selftest exit=3").unwrap(),
            clock: Some(&c),
            initrd: None,
        };
        let l = build(&mem, &kernel, &params, base).unwrap();
        let root = l.page_table_root;
        assert_eq!(l.entry_rip, base + 0x1000);
        assert_eq!(l.entry_rsp % 16, 8);

        // Entry is executable, read-only, and holds the kernel's bytes.
        let t = translate(&mem, root, l.entry_rip).unwrap();
        assert!(t.executable && !t.writable);
        assert_eq!(t.gpa, l.kernel_phys + 0x1000);
        assert_eq!(mem.read_vec(t.gpa, 4).unwrap(), vec![0xcc; 4]);
        // Data is RW NX and relocated; bss is mapped; beyond the image is not.
        let t = translate(&mem, root, base + 0x2000).unwrap();
        assert!(t.writable && !t.executable);
        assert_eq!(
            read_virt_u64(&mem, root, base + 0x20c0),
            Some(base + 0x1008)
        );
        assert!(translate(&mem, root, base + 0x5ff8).is_some());
        assert!(translate(&mem, root, base + 0x6000).is_none());
        assert!(translate(&mem, root, base).is_none());

        // Stack: mapped RW below rsp, guard page below the bottom unmapped.
        let t = translate(&mem, root, l.entry_rsp).unwrap();
        assert!(t.writable && !t.executable);
        assert!(translate(&mem, root, BOOT_STACK_BOTTOM_GVA).is_some());
        assert!(translate(&mem, root, BOOT_STACK_BOTTOM_GVA - 1).is_none());
        assert!(translate(&mem, root, BOOT_STACK_TOP_GVA).is_none());

        // Boot info through rdi: read-only, valid.
        let t = translate(&mem, root, l.entry_rdi).unwrap();
        assert!(!t.writable && !t.executable);
        let mut buf = vec![0u8; size_of::<BootInfo>()];
        read_virt(&mem, root, l.entry_rdi, &mut buf).unwrap();
        let info = BootInfo::read_from_bytes(&buf).unwrap();
        assert_eq!(info.magic, ABI_MAGIC);
        assert_eq!(info.nr_vcpus, 2);
        let (args_gpa, args_len) = info
            .boot_args_range()
            .expect("boot arguments in a Boot region");
        let args_bytes = mem.read_vec(args_gpa, args_len).unwrap();
        let args = pvmux_hypercalls::BootArgs::decode(&args_bytes).unwrap();
        assert!(args.commands().eq([
            pvmux_hypercalls::bootargs::Command::Selftest,
            pvmux_hypercalls::bootargs::Command::Exit(3)
        ]));
        assert_eq!(info.kernel_virt_base, base);
        assert_eq!(info.page_table_root, root);
        assert_eq!(info.wall_clock_epoch_ns, 7);
        assert_eq!(info.vcpu_shared_base, vcpu_shared_addr(0));

        // Memory map: sorted, contiguous, covering all memory.
        let regions = info.mem_regions();
        let mut next = 0;
        for r in regions {
            assert_eq!(r.base, next);
            assert!(r.len > 0 && r.base % PAGE_SIZE == 0 && r.len % PAGE_SIZE == 0);
            next = r.base + r.len;
        }
        assert_eq!(next, mem.size());
        let (pool, rest) = regions.split_last().unwrap();
        assert_eq!(
            *pool,
            region(16 << 20, 16 << 20, MemRegionKind::UserPool),
            "the upper half is the user pool"
        );
        assert_eq!(l.pool_base, 16 << 20);
        let (args, rest) = rest.split_last().unwrap();
        assert_eq!(
            (args.kind, args.base + args.len),
            (MemRegionKind::Boot as u32, l.pool_base),
            "the boot arguments' pages, right below the pool without an initrd"
        );
        assert_eq!(rest.last().unwrap().kind, MemRegionKind::Usable as u32);
        assert!(l.first_free_gpa + MIN_FREE_MEM + args.len <= l.pool_base);

        // Direct map covers every byte RW NX.
        let t = translate(&mem, root, DIRECT_MAP_BASE + mem.size() - 1).unwrap();
        assert_eq!(t.gpa, mem.size() - 1);
        assert!(t.writable && !t.executable);
        assert!(translate(&mem, root, DIRECT_MAP_BASE + mem.size()).is_none());
    }

    #[test]
    fn a_rebuild_replaces_the_kernel_part_and_leaves_the_user_pool_alone() {
        let kernel = KernelImage::parse(TestElf::default().build()).unwrap();
        let mem = GuestMemory::new(32 << 20).unwrap();
        let c = clock();
        let params = BuildParams {
            nr_vcpus: 1,
            boot_args: &BootArgsBuf::from_words("exit=3").unwrap(),
            clock: Some(&c),
            initrd: None,
        };
        let first = build(&mem, &kernel, &params, random_kernel_base(kernel.span())).unwrap();
        // The old kernel's leftovers in its free memory, and programs' pages in the pool.
        let pool = user_pool_base(mem.size());
        let usable = first.kernel_phys + first.kernel_span + PAGE_SIZE;
        mem.write(usable, &[0x5a; 64]).unwrap();
        let pages: Vec<u8> = (0..(mem.size() - pool) as usize)
            .map(|i| (i % 251) as u8)
            .collect();
        mem.write(pool, &pages).unwrap();
        let words = BootArgsBuf::from_words("exit=4").unwrap();
        let params = BuildParams {
            boot_args: &words,
            ..params
        };
        let base = random_kernel_base(kernel.span());
        let l = rebuild_kernel_part(&mem, &kernel, &params, base).unwrap();
        assert_eq!(l.pool_base, pool);
        assert_eq!(l.entry_rip, base + 0x1000);
        assert_eq!(
            mem.read_vec(usable, 64).unwrap(),
            vec![0; 64],
            "old bytes gone"
        );
        assert_eq!(
            mem.read_vec(pool, pages.len()).unwrap(),
            pages,
            "the pool untouched"
        );
        // The new boot information and arguments.
        let t = translate(&mem, l.page_table_root, l.entry_rip).unwrap();
        assert_eq!(mem.read_vec(t.gpa, 4).unwrap(), vec![0xcc; 4]);
        let bi =
            BootInfo::read_from_bytes(&mem.read_vec(BOOT_INFO_GPA, size_of::<BootInfo>()).unwrap())
                .unwrap();
        let (gpa, len) = bi.boot_args_range().unwrap();
        assert_eq!(mem.read_vec(gpa, len).unwrap(), words.as_bytes());
    }

    #[test]
    fn places_the_initrd_at_the_top_of_the_kernel_part() {
        let kernel = KernelImage::parse(TestElf::default().build()).unwrap();
        let mem = GuestMemory::new(32 << 20).unwrap();
        let base = random_kernel_base(kernel.span());
        let c = clock();
        // Not a multiple of the page size: the last page is zero-padded.
        let initrd: Vec<u8> = (0..3 * PAGE_SIZE as usize + 123)
            .map(|i| (i % 253) as u8 | 1)
            .collect();
        let params = BuildParams {
            nr_vcpus: 1,
            boot_args: &BootArgsBuf::default(),
            clock: Some(&c),
            initrd: Some(&initrd),
        };
        let l = build(&mem, &kernel, &params, base).unwrap();
        let span = 4 * PAGE_SIZE;
        assert_eq!(l.pool_base, user_pool_base(mem.size()));
        assert_eq!(l.initrd_gpa, l.pool_base - span);
        assert_eq!(l.initrd_len, initrd.len() as u64);
        assert_eq!(l.initrd_gpa % PAGE_SIZE, 0);
        assert!(l.initrd_gpa >= l.first_free_gpa + MIN_FREE_MEM);
        assert_eq!(mem.read_vec(l.initrd_gpa, initrd.len()).unwrap(), initrd);
        assert_eq!(
            mem.read_vec(l.initrd_gpa + initrd.len() as u64, 4096 - 123)
                .unwrap(),
            vec![0; 4096 - 123]
        );

        let mut buf = vec![0u8; size_of::<BootInfo>()];
        mem.read(BOOT_INFO_GPA, &mut buf).unwrap();
        let info = BootInfo::read_from_bytes(&buf).unwrap();
        assert_eq!(info.initrd_gpa, l.initrd_gpa);
        assert_eq!(info.initrd_len, initrd.len() as u64);
        let regions = info.mem_regions();
        assert_eq!(regions, &l.mem_map[..]);
        let (pool, rest) = regions.split_last().unwrap();
        assert_eq!(pool.kind, MemRegionKind::UserPool as u32);
        let (last, rest) = rest.split_last().unwrap();
        assert_eq!(*last, region(l.initrd_gpa, span, MemRegionKind::Initrd));
        let (args, rest) = rest.split_last().unwrap();
        assert_eq!(args.kind, MemRegionKind::Boot as u32);
        assert_eq!(args.base + args.len, l.initrd_gpa);
        assert_eq!(info.boot_args_range().map(|r| r.0), Some(args.base));
        let below = rest.last().unwrap();
        assert_eq!(below.kind, MemRegionKind::Usable as u32);
        assert_eq!(below.base + below.len, args.base);
        let mut next = 0;
        for r in regions {
            assert_eq!(r.base, next);
            assert!(r.len > 0 && r.base % PAGE_SIZE == 0 && r.len % PAGE_SIZE == 0);
            next = r.base + r.len;
        }
        assert_eq!(next, mem.size());
        assert_eq!(
            regions
                .iter()
                .filter(|r| r.kind == MemRegionKind::Usable as u32)
                .filter(|r| r.base < l.initrd_gpa + span && l.initrd_gpa < r.base + r.len)
                .count(),
            0,
            "no usable region overlaps the initrd"
        );
        // Readable through the direct map.
        let t = translate(&mem, l.page_table_root, DIRECT_MAP_BASE + l.initrd_gpa).unwrap();
        assert_eq!(t.gpa, l.initrd_gpa);

        // Without an initrd (or an empty one) the fields are zero and there is no region.
        for none in [None, Some(&[][..])] {
            let mem = GuestMemory::new(32 << 20).unwrap();
            let p = BuildParams {
                initrd: none,
                ..params
            };
            let l = build(&mem, &kernel, &p, base).unwrap();
            assert_eq!((l.initrd_gpa, l.initrd_len), (0, 0));
            assert!(l
                .mem_map
                .iter()
                .all(|r| r.kind != MemRegionKind::Initrd as u32));
        }
    }

    #[test]
    fn an_initrd_too_big_for_memory_says_how_much_is_needed() {
        let kernel = KernelImage::parse(TestElf::default().build()).unwrap();
        let mem = GuestMemory::new(16 << 20).unwrap();
        let base = random_kernel_base(kernel.span());
        let c = clock();
        let initrd = vec![1u8; 15 << 20];
        let params = BuildParams {
            nr_vcpus: 1,
            boot_args: &BootArgsBuf::default(),
            clock: Some(&c),
            initrd: Some(&initrd),
        };
        let e = build(&mem, &kernel, &params, base).unwrap_err();
        let HostError::InitrdTooBig {
            initrd_len,
            mem_size,
            needed,
        } = e
        else {
            panic!("{e}")
        };
        assert_eq!((initrd_len, mem_size), (15 << 20, 16 << 20));
        assert_eq!(needed % (2 << 20), 0);
        assert!(needed > (15 << 20) + MIN_FREE_MEM);
        let msg = e.to_string();
        assert!(
            msg.contains("does not fit in guest memory of 16 MiB"),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("at least {} MiB", needed >> 20)),
            "{msg}"
        );
        // With the memory it asked for, it fits.
        let mem = GuestMemory::new(needed).unwrap();
        let l = build(&mem, &kernel, &params, base).unwrap();
        assert_eq!(l.initrd_len, 15 << 20);
        // The largest initrd that fits in 16 MiB fits, one page more does not.
        let mem = GuestMemory::new(16 << 20).unwrap();
        let free = user_pool_base(mem.size()) - l.first_free_gpa - MIN_FREE_MEM - PAGE_SIZE;
        let fits = vec![1u8; free as usize];
        let p = BuildParams {
            initrd: Some(&fits),
            ..params
        };
        assert!(build(&mem, &kernel, &p, base).is_ok());
        let too_big = vec![1u8; free as usize + 1];
        let p = BuildParams {
            initrd: Some(&too_big),
            ..params
        };
        assert!(matches!(
            build(&mem, &kernel, &p, base),
            Err(HostError::InitrdTooBig { .. })
        ));
    }

    #[test]
    fn pool_sizes_and_the_memory_they_need() {
        assert_eq!(user_pool_size(16 << 20), 8 << 20);
        assert_eq!(user_pool_size(18 << 20), 8 << 20);
        assert_eq!(user_pool_base(18 << 20), 10 << 20);
        assert_eq!(user_pool_size(128 << 20), 64 << 20);
        assert_eq!(user_pool_size(256 << 20), 192 << 20);
        assert_eq!(user_pool_size(1 << 30), 768 << 20);
        assert_eq!(user_pool_size(8 << 30), 7 << 30);
        assert_eq!(user_pool_size(2 << 20), 2 << 20);
        assert_eq!(user_pool_size(1 << 20), 1 << 20);
        // The kernel part never shrinks as memory grows.
        let mut last = 0;
        for m in (16u64..20_000).map(|k| k * MEM_SIZE_ALIGN / 2) {
            let m = m / MEM_SIZE_ALIGN * MEM_SIZE_ALIGN;
            assert!(user_pool_base(m) >= last, "{m:#x}");
            last = user_pool_base(m);
        }
        assert_eq!(mem_size_for(KERNEL_PART_MAX + 1) % MEM_SIZE_ALIGN, 0);
        for part in [
            1,
            4096,
            8 << 20,
            (8 << 20) + 1,
            (9 << 20) + 5,
            100 << 20,
            KERNEL_PART_MAX,
        ] {
            let m = mem_size_for(part);
            assert_eq!(m % MEM_SIZE_ALIGN, 0);
            assert!(user_pool_base(m) >= part, "{part:#x}: {m:#x}");
            if m > crate::memory::MIN_MEM_SIZE {
                assert!(
                    user_pool_base(m - MEM_SIZE_ALIGN) < part,
                    "{part:#x} minimal"
                );
            }
        }
    }

    /// Only the user pool lies at or above `pool_base`, no other region overlaps it, and the
    /// kernel's own memory (boot, kernel, usable, initrd) lies entirely below it, for many
    /// memory sizes and initrd lengths.
    #[test]
    fn no_other_region_overlaps_the_user_pool() {
        let kernel = KernelImage::parse(TestElf::default().build()).unwrap();
        let c = clock();
        for (mem_mib, initrd_len) in [(16, 0), (16, 5000), (18, 1 << 20), (64, 20 << 20), (34, 1)] {
            let mem = GuestMemory::new(mem_mib << 20).unwrap();
            let initrd = vec![7u8; initrd_len];
            let params = BuildParams {
                nr_vcpus: 1,
                boot_args: &BootArgsBuf::default(),
                clock: Some(&c),
                initrd: Some(&initrd),
            };
            let base = random_kernel_base(kernel.span());
            let l = build(&mem, &kernel, &params, base).unwrap();
            let pools: Vec<_> = l
                .mem_map
                .iter()
                .filter(|r| r.kind == MemRegionKind::UserPool as u32)
                .collect();
            assert_eq!(pools.len(), 1);
            assert_eq!(
                (pools[0].base, pools[0].len),
                (l.pool_base, mem.size() - l.pool_base)
            );
            assert_eq!(l.pool_base, user_pool_base(mem.size()));
            for r in l
                .mem_map
                .iter()
                .filter(|r| r.kind != MemRegionKind::UserPool as u32)
            {
                assert!(r.base + r.len <= l.pool_base, "{r:?} overlaps the pool");
            }
            assert!(l.initrd_gpa + l.initrd_len <= l.pool_base);
            assert!(l.kernel_phys + l.kernel_span <= l.pool_base);
            if initrd_len > 0 {
                assert_eq!(
                    l.initrd_gpa + (initrd_len as u64).next_multiple_of(PAGE_SIZE),
                    l.pool_base
                );
            }
        }
    }

    /// The parts of a chunk outside the shared runs are written, with their offsets.
    #[test]
    fn write_outside_leaves_the_shared_runs_out() {
        use crate::kernel_image::SharedRun;
        let chunk: Vec<u8> = (0..0x5000u32).map(|i| i as u8).collect();
        let skip = [
            SharedRun {
                vaddr: 0x10_0000,
                len: 0x1000,
                file_off: 0,
            },
            SharedRun {
                vaddr: 0x10_2000,
                len: 0x2000,
                file_off: 0,
            },
        ];
        let mut parts = Vec::new();
        write_outside::<()>(0x10_0000, &chunk, &skip, |at, b| {
            assert_eq!(b, &chunk[(at - 0x10_0000) as usize..][..b.len()]);
            parts.push((at, b.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(parts, [(0x10_1000, 0x1000), (0x10_4000, 0x1000)]);
        // No runs: the whole chunk.
        parts.clear();
        write_outside::<()>(0x10_0000, &chunk, &[], |at, b| {
            parts.push((at, b.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(parts, [(0x10_0000, 0x5000)]);
    }

    #[test]
    fn errors() {
        let c = clock();
        let kernel = KernelImage::parse(TestElf::default().build()).unwrap();
        let mem = GuestMemory::new(16 << 20).unwrap();
        let p = BuildParams {
            nr_vcpus: 1,
            boot_args: &BootArgsBuf::default(),
            clock: Some(&c),
            initrd: None,
        };
        let base = random_kernel_base(kernel.span());
        assert!(build(&mem, &kernel, &p, base + 4096).is_err());
        let big = KernelImage::parse(
            TestElf {
                bss: 20 << 20,
                ..Default::default()
            }
            .build(),
        )
        .unwrap();
        // A base drawn for the small kernel can leave too little of the region for the big
        // one (then the base, not the memory, is the error): draw one that fits.
        let big_base = random_kernel_base(big.span());
        assert!(matches!(
            build(&mem, &big, &p, big_base),
            Err(HostError::MemoryTooSmall { .. })
        ));
    }
}
