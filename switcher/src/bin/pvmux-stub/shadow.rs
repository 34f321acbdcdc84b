//! Shadow paging: the guest's own x86-64 page tables, realised as `mmap`s of the guest memfd.
//!
//! A miss (SIGSEGV in the window) walks the guest's tables through the physmap (the ABI's one
//! walker, `pvmux_hypercalls::paging`, reading each entry with one volatile load); if the guest
//! allows the access, the page and its present neighbours in the same fault-around block are
//! mapped with one `mmap` per physically contiguous run (a 2 MiB or 1 GiB guest page with one
//! `mmap`), and the faulting access is retried. TLB flushes `munmap`. When the host refuses a
//! mapping (VMA budget) or the stub's count reaches [`VMA_BUDGET`], the whole shadow is
//! evicted and refilled lazily: never a failure.
//!
//! Guest-physical pages in the header's shared image ranges are mapped read-only from the
//! kernel image's file ([`KERNEL_IMAGE_FD`]) instead of the memfd (one copy in the host's
//! page cache for every tenant of that image); a write to them through any guest mapping is
//! refused as a page fault of the guest.

use core::sync::atomic::{AtomicU64, Ordering::*};
use pvmux_hypercalls::frame::pf;
use pvmux_hypercalls::layout::{PHYSMAP_BASE, WINDOW_BASE, WINDOW_END, WINDOW_SIZE};
use pvmux_hypercalls::paging::{self, pte, LeafSize, TableReader};
use pvmux_hypercalls::sandbox::{GUEST_MEM_FD, KERNEL_IMAGE_FD, MAX_SHARED_IMAGE_RANGES};
use pvmux_hypercalls::vcpu::stat;
use pvmux_hypercalls::{VcpuShared, PAGE_SIZE};

use crate::state::G;
use crate::sys;

/// Mappings the stub makes before it evicts the whole shadow (the host default
/// `vm.max_map_count` is 65530 per process).
pub(crate) const VMA_BUDGET: u32 = 30_000;
/// Largest fault-around block in pages.
pub(crate) const MAX_FAULT_AROUND: u32 = 512;

const PROT_READ: u32 = 1;
const PROT_WRITE: u32 = 2;
const PROT_EXEC: u32 = 4;
const MAP_SHARED_FIXED: u32 = 0x11;
const ENOMEM: u32 = 12;

/// A translated guest-virtual address: the leaf mapping that contains it.
pub(crate) type Leaf = paging::Leaf;

/// Why a translation failed: the #PF error-code bits the guest should see.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Refused(pub(crate) u64);

/// Guest memory through the physmap.
struct Physmap;

impl Physmap {
    /// Address of the 8-byte word at `gpa` in the physmap, if `gpa` is 8-aligned and the
    /// word lies inside guest memory.
    fn word(gpa: u64) -> Option<*mut u64> {
        if !gpa.is_multiple_of(8) || !crate::entries::in_guest_memory(gpa, 8) {
            return None;
        }
        Some((PHYSMAP_BASE + gpa) as *mut u64)
    }
}

impl TableReader for Physmap {
    fn read_entry(&self, gpa: u64) -> Option<u64> {
        let p = Self::word(gpa)?;
        // SAFETY: the physmap maps all `mem_size` bytes of guest memory for the life of the
        // process, and the word is 8-aligned and in range. The guest may change it at any
        // time: it is copied with one volatile (single `mov`) load, no reference is formed.
        Some(unsafe { p.read_volatile() })
    }

    fn mem_size(&self) -> u64 {
        G.mem_size.load(Relaxed)
    }
}

/// Walks the guest tables from the current root (page aligned and inside guest memory: the
/// stub checks it when it takes it) for `va` (a window address, so canonical).
pub(crate) fn walk(va: u64) -> Result<Leaf, Refused> {
    paging::walk(&Physmap, G.root.load(Acquire), va).map_err(|e| Refused(e.pf_bits()))
}

/// Checks an access (#PF error-code bits `access`: WRITE, FETCH) against a leaf.
fn permits(leaf: &Leaf, access: u64) -> Result<(), Refused> {
    leaf.permits(access).map_err(Refused)
}

/// Translates `va` for an access, returning the guest-physical address.
pub(crate) fn translate(va: u64, access: u64) -> Result<u64, Refused> {
    let leaf = walk(va)?;
    permits(&leaf, access)?;
    Ok(leaf.gpa_of(va))
}

/// Tenant-wide lock ordering fills against invalidations.
struct ShadowLock;

impl ShadowLock {
    fn take() -> Self {
        let mut spins = 0u32;
        while G
            .shadow_lock
            .compare_exchange_weak(0, 1, Acquire, Relaxed)
            .is_err()
        {
            spins += 1;
            if spins.is_multiple_of(64) {
                sys::sched_yield();
            } else {
                core::hint::spin_loop();
            }
        }
        ShadowLock
    }
}

impl Drop for ShadowLock {
    fn drop(&mut self) {
        G.shadow_lock.store(0, Release);
    }
}

/// Outcome of [`fill`].
pub(crate) enum FillError {
    /// The guest's tables refuse the access: deliver #PF with these error bits.
    Guest(Refused),
    /// The host refused the mapping even after evicting everything.
    Host(u32),
}

fn prot(writable: bool, exec: bool) -> u32 {
    PROT_READ | if writable { PROT_WRITE } else { 0 } | if exec { PROT_EXEC } else { 0 }
}

/// Marks a leaf accessed (and dirty if it is mapped writable: the stub cannot see later writes).
fn mark(leaf: &Leaf) {
    let bits = pte::ACCESSED | if leaf.writable { pte::DIRTY } else { 0 };
    if let Some(p) = Physmap::word(leaf.entry_gpa) {
        // SAFETY: an 8-aligned word of the physmap (mapped for the life of the process). The
        // guest may write the entry concurrently, so the bits are set with one atomic RMW; the
        // `AtomicU64` view lives only for this operation.
        unsafe { AtomicU64::from_ptr(p) }.fetch_or(bits, Relaxed);
    }
}

/// The first piece of guest-physical `[gpa, gpa + len)` that lies wholly inside one shared
/// image range or wholly outside all of them: its length, and its offset in the image's file
/// if inside.
fn image_piece(gpa: u64, len: u64) -> (u64, Option<u64>) {
    let mut piece = len;
    for i in 0..MAX_SHARED_IMAGE_RANGES {
        let (start, n) = (
            G.shared_image[3 * i].load(Relaxed),
            G.shared_image[3 * i + 1].load(Relaxed),
        );
        if n == 0 {
            continue;
        }
        // (Checked at start-up: `start + n` does not overflow.)
        if (start..start + n).contains(&gpa) {
            let off = G.shared_image[3 * i + 2].load(Relaxed);
            return ((start + n - gpa).min(len), Some(off + (gpa - start)));
        }
        if start > gpa {
            piece = piece.min(start - gpa);
        }
    }
    (piece, None)
}

/// Maps guest-physical `[gpa, gpa + len)` at `va`: the memfd, and the shared image's pages
/// from its file, read-only (one `mmap` per piece).
fn map_run(va: u64, len: u64, gpa: u64, w: bool, x: bool, shared: &VcpuShared) -> Result<(), u32> {
    let mut done = 0;
    while done < len {
        let (n, image) = image_piece(gpa + done, len - done);
        match image {
            Some(off) => map_piece(va + done, n, KERNEL_IMAGE_FD, off, prot(false, x), shared)?,
            None => map_piece(va + done, n, GUEST_MEM_FD, gpa + done, prot(w, x), shared)?,
        }
        done += n;
    }
    Ok(())
}

fn map_piece(
    va: u64,
    len: u64,
    fd: i32,
    off: u64,
    prot: u32,
    shared: &VcpuShared,
) -> Result<(), u32> {
    if G.vma_count.fetch_add(1, Relaxed) >= VMA_BUDGET {
        evict_all_locked(shared);
    }
    for attempt in 0..2 {
        // SAFETY: the range lies in the guest window, which holds nothing but shadow mappings.
        match unsafe { sys::mmap(va, len, prot, MAP_SHARED_FIXED, fd, off) } {
            Ok(_) => return Ok(()),
            Err(ENOMEM) if attempt == 0 => evict_all_locked(shared),
            Err(e) => return Err(e),
        }
    }
    Err(ENOMEM)
}

/// Resolves a shadow miss at `va` for `access` (#PF WRITE/FETCH bits).
pub(crate) fn fill(va: u64, access: u64, shared: &VcpuShared) -> Result<(), FillError> {
    let _lock = ShadowLock::take();
    let leaf = walk(va).map_err(FillError::Guest)?;
    permits(&leaf, access).map_err(FillError::Guest)?;
    if access & pf::WRITE != 0 && image_piece(leaf.gpa_of(va), 1).1.is_some() {
        // The shared image's pages are read-only whatever the guest's tables say.
        return Err(FillError::Guest(Refused(pf::PRESENT | pf::WRITE)));
    }
    crate::state::count(shared, stat::SHADOW_FILLS);
    let (leaf_va, leaf_gpa) = (leaf.page_va, leaf.frame_gpa);
    if leaf.size != LeafSize::Size4KiB {
        let size = leaf.size.bytes();
        mark(&leaf);
        map_run(
            leaf_va,
            size,
            leaf_gpa,
            leaf.writable,
            leaf.executable,
            shared,
        )
        .map_err(FillError::Host)?;
        shared.stats[stat::SHADOW_PAGES].fetch_add(size / PAGE_SIZE, Relaxed);
        return Ok(());
    }
    // Fault-around: the aligned block of `fa` pages around va, one mmap per contiguous run
    // of present 4 KiB pages with equal permissions.
    let fa = u64::from(G.fault_around.load(Relaxed).clamp(1, MAX_FAULT_AROUND));
    let block = (va & !(fa * PAGE_SIZE - 1)).max(WINDOW_BASE);
    let mut run: Option<(u64, u64, u64, bool, bool)> = None; // (va, gpa, len, w, x)
    let mut pages = 0u64;
    let mut covered = false;
    for i in 0..fa {
        let pva = block + i * PAGE_SIZE;
        let this = if pva == leaf_va {
            Some(leaf)
        } else {
            walk(pva).ok().filter(|l| l.size == LeafSize::Size4KiB)
        };
        let extend = match (&mut run, &this) {
            (Some((rva, rgpa, rlen, w, x)), Some(l)) => {
                *rva + *rlen == pva
                    && *rgpa + *rlen == l.frame_gpa
                    && *w == l.writable
                    && *x == l.executable
            }
            _ => false,
        };
        if extend {
            if let Some(r) = run.as_mut() {
                r.2 += PAGE_SIZE;
            }
        } else {
            if let Some((rva, rgpa, rlen, w, x)) = run.take() {
                map_run(rva, rlen, rgpa, w, x, shared).map_err(FillError::Host)?;
                covered |= (rva..rva + rlen).contains(&leaf_va);
            }
            run = this.map(|l| (pva, l.frame_gpa, PAGE_SIZE, l.writable, l.executable));
        }
        if let Some(l) = this {
            mark(&l);
            pages += 1;
        }
    }
    if let Some((rva, rgpa, rlen, w, x)) = run.take() {
        map_run(rva, rlen, rgpa, w, x, shared).map_err(FillError::Host)?;
        covered |= (rva..rva + rlen).contains(&leaf_va);
    }
    if !covered {
        map_run(
            leaf_va,
            PAGE_SIZE,
            leaf_gpa,
            leaf.writable,
            leaf.executable,
            shared,
        )
        .map_err(FillError::Host)?;
    }
    shared.stats[stat::SHADOW_PAGES].fetch_add(pages, Relaxed);
    Ok(())
}

fn evict_all_locked(shared: &VcpuShared) {
    // SAFETY: the window holds nothing but shadow mappings, which refill on demand.
    let _ = unsafe { sys::munmap(WINDOW_BASE, WINDOW_SIZE) };
    G.vma_count.store(0, Relaxed);
    crate::state::count(shared, stat::EVICTIONS);
}

/// Whether the shadow maps all of `[va, va + len)` (page aligned, in the window) already:
/// `mincore` over it, 256 pages a call.
pub(crate) fn is_mapped(va: u64, len: u64) -> bool {
    let mut vec = [0u8; 256];
    let (mut page, end) = (va, va.saturating_add(len));
    while page < end {
        let n = ((end - page) / PAGE_SIZE).clamp(1, vec.len() as u64);
        if !sys::all_mapped(page, &mut vec[..n as usize]) {
            return false;
        }
        page += n * PAGE_SIZE;
    }
    true
}

/// Invalidates the shadow of `[va, va + len)` (clipped to the window).
pub(crate) fn flush(va: u64, len: u64) {
    let start = (va & !(PAGE_SIZE - 1)).max(WINDOW_BASE);
    let end = va.saturating_add(len).saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
    let end = end.min(WINDOW_END);
    if start >= end {
        return;
    }
    let _lock = ShadowLock::take();
    // SAFETY: the range lies in the window, which holds nothing but shadow mappings.
    let _ = unsafe { sys::munmap(start, end - start) };
}

/// Invalidates the whole shadow.
pub(crate) fn flush_all() {
    let _lock = ShadowLock::take();
    // SAFETY: the window holds nothing but shadow mappings.
    let _ = unsafe { sys::munmap(WINDOW_BASE, WINDOW_SIZE) };
    G.vma_count.store(0, Relaxed);
}

/// Writes `words` to guest-virtual `va` through the guest's tables and the physmap (never
/// faults). Fails with the #PF bits of the first page the guest's tables refuse.
pub(crate) fn write_guest(va: u64, words: &[u64]) -> Result<(), Refused> {
    if !va.is_multiple_of(8) {
        return Err(Refused(pf::RESERVED));
    }
    // One walk per guest page touched (a frame spans at most two).
    let mut page: Option<(u64, u64)> = None; // (guest page va, its gpa)
    for (i, w) in words.iter().enumerate() {
        let a = va.checked_add(8 * i as u64).ok_or(Refused(0))?;
        let page_va = a & !(PAGE_SIZE - 1);
        let gpa_page = match page {
            Some((pva, gpa)) if pva == page_va => gpa,
            _ => {
                let gpa = translate(page_va, pf::WRITE)?;
                page = Some((page_va, gpa));
                gpa
            }
        };
        let p = Physmap::word(gpa_page + (a - page_va)).ok_or(Refused(pf::RESERVED))?;
        // SAFETY: an 8-aligned word of the physmap inside guest memory (checked by `word`);
        // written with one volatile store, no reference formed.
        unsafe { p.write_volatile(*w) };
    }
    Ok(())
}
