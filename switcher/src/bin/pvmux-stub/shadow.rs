//! Shadow paging: the guest's own x86-64 page tables, realised as `mmap`s of the guest memfd.
//!
//! A miss (SIGSEGV in the window) walks the guest's tables through the physmap; if the guest
//! allows the access, the page and its present neighbours in the same fault-around block are
//! mapped with one `mmap` per physically contiguous run (a 2 MiB or 1 GiB guest page with one
//! `mmap`), and the faulting access is retried. TLB flushes `munmap`. When the host refuses a
//! mapping (VMA budget) or the stub's count reaches [`VMA_BUDGET`], the whole shadow is
//! evicted and refilled lazily: never a failure.

use core::sync::atomic::{AtomicU64, Ordering::*};
use pvmux_hypercalls::frame::pf;
use pvmux_hypercalls::layout::{PHYSMAP_BASE, WINDOW_BASE, WINDOW_END, WINDOW_SIZE};
use pvmux_hypercalls::sandbox::GUEST_MEM_FD;
use pvmux_hypercalls::vcpu::stat;
use pvmux_hypercalls::{VcpuShared, PAGE_SIZE};

use crate::state::G;
use crate::sys;

const PTE_P: u64 = 1 << 0;
const PTE_W: u64 = 1 << 1;
const PTE_A: u64 = 1 << 5;
const PTE_D: u64 = 1 << 6;
const PTE_PS: u64 = 1 << 7;
const PTE_NX: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

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

/// A translated guest-virtual address.
#[derive(Clone, Copy)]
pub(crate) struct Leaf {
    /// Guest-virtual start of the (possibly large) page.
    pub(crate) va: u64,
    /// Guest-physical start of the page.
    pub(crate) gpa: u64,
    /// Page size: 4 KiB, 2 MiB or 1 GiB.
    pub(crate) size: u64,
    /// Writable at every level.
    pub(crate) writable: bool,
    /// Executable at every level.
    pub(crate) exec: bool,
    /// Guest-physical address of the leaf entry.
    pub(crate) pte_gpa: u64,
}

/// Why a translation failed: the #PF error-code bits the guest should see.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Refused(pub(crate) u64);

/// Reads a page-table entry through the physmap.
fn entry_at(gpa: u64) -> Option<&'static AtomicU64> {
    if !gpa.is_multiple_of(8) || gpa.checked_add(8)? > G.mem_size.load(Relaxed) {
        return None;
    }
    // SAFETY: the physmap maps all `mem_size` bytes of guest memory for the life of the
    // process, and gpa is 8-aligned and in range. The guest may change the entry at any time;
    // every access is a single atomic operation.
    Some(unsafe { &*((PHYSMAP_BASE + gpa) as *const AtomicU64) })
}

/// Walks the guest tables from the current root for `va`.
pub(crate) fn walk(va: u64) -> Result<Leaf, Refused> {
    let mut table = G.root.load(Acquire);
    let (mut writable, mut exec) = (true, true);
    for level in (1..=4u32).rev() {
        let shift = 12 + 9 * (level - 1);
        let idx = (va >> shift) & 511;
        let slot = table + idx * 8;
        let e = entry_at(slot)
            .ok_or(Refused(pf::RESERVED | pf::PRESENT))?
            .load(Relaxed);
        if e & PTE_P == 0 {
            return Err(Refused(0));
        }
        writable &= e & PTE_W != 0;
        exec &= e & PTE_NX == 0;
        let leaf_size = match level {
            1 => Some(PAGE_SIZE),
            2 | 3 if e & PTE_PS != 0 => Some(1u64 << shift),
            _ => None,
        };
        if let Some(size) = leaf_size {
            let gpa = e & ADDR_MASK & !(size - 1);
            if gpa
                .checked_add(size)
                .is_none_or(|end| end > G.mem_size.load(Relaxed))
            {
                return Err(Refused(pf::RESERVED | pf::PRESENT));
            }
            return Ok(Leaf {
                va: va & !(size - 1),
                gpa,
                size,
                writable,
                exec,
                pte_gpa: slot,
            });
        }
        table = e & ADDR_MASK;
    }
    Err(Refused(0))
}

/// Checks an access (#PF error-code bits `access`: WRITE, FETCH) against a leaf.
fn permits(leaf: &Leaf, access: u64) -> Result<(), Refused> {
    if access & pf::WRITE != 0 && !leaf.writable {
        return Err(Refused(pf::PRESENT | (access & (pf::WRITE | pf::FETCH))));
    }
    if access & pf::FETCH != 0 && !leaf.exec {
        return Err(Refused(pf::PRESENT | (access & (pf::WRITE | pf::FETCH))));
    }
    Ok(())
}

/// Translates `va` for an access, returning the guest-physical address.
pub(crate) fn translate(va: u64, access: u64) -> Result<u64, Refused> {
    let leaf = walk(va)?;
    permits(&leaf, access)?;
    Ok(leaf.gpa + (va - leaf.va))
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
    if let Some(e) = entry_at(leaf.pte_gpa) {
        e.fetch_or(PTE_A | if leaf.writable { PTE_D } else { 0 }, Relaxed);
    }
}

fn map_run(va: u64, len: u64, gpa: u64, w: bool, x: bool, shared: &VcpuShared) -> Result<(), u32> {
    if G.vma_count.fetch_add(1, Relaxed) >= VMA_BUDGET {
        evict_all_locked(shared);
    }
    for attempt in 0..2 {
        // SAFETY: the range lies in the guest window, which holds nothing but shadow mappings.
        match unsafe { sys::mmap(va, len, prot(w, x), MAP_SHARED_FIXED, GUEST_MEM_FD, gpa) } {
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
    crate::state::count(shared, stat::SHADOW_FILLS);
    if leaf.size > PAGE_SIZE {
        mark(&leaf);
        map_run(
            leaf.va,
            leaf.size,
            leaf.gpa,
            leaf.writable,
            leaf.exec,
            shared,
        )
        .map_err(FillError::Host)?;
        shared.stats[stat::SHADOW_PAGES].fetch_add(leaf.size / PAGE_SIZE, Relaxed);
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
        let this = if pva == leaf.va {
            Some(leaf)
        } else {
            walk(pva).ok().filter(|l| l.size == PAGE_SIZE)
        };
        let extend = match (&mut run, &this) {
            (Some((rva, rgpa, rlen, w, x)), Some(l)) => {
                *rva + *rlen == pva && *rgpa + *rlen == l.gpa && *w == l.writable && *x == l.exec
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
                covered |= (rva..rva + rlen).contains(&leaf.va);
            }
            run = this.map(|l| (pva, l.gpa, PAGE_SIZE, l.writable, l.exec));
        }
        if let Some(l) = this {
            mark(&l);
            pages += 1;
        }
    }
    if let Some((rva, rgpa, rlen, w, x)) = run.take() {
        map_run(rva, rlen, rgpa, w, x, shared).map_err(FillError::Host)?;
        covered |= (rva..rva + rlen).contains(&leaf.va);
    }
    if !covered {
        map_run(
            leaf.va,
            PAGE_SIZE,
            leaf.gpa,
            leaf.writable,
            leaf.exec,
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
        entry_at(gpa_page + (a - page_va))
            .ok_or(Refused(pf::RESERVED))?
            .store(*w, Relaxed);
    }
    Ok(())
}
