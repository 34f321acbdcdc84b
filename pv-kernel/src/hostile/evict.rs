//! `hostile=evict-in-entry`: stub entries that change the shadow while running on the
//! caller's stack. `prefault` one page at a time until the stub's mapping budget is used up
//! (the eviction of the whole window then happens inside the entry), `tlb_flush` of the page
//! the caller's stack is on, `tlb_flush_all` and `load_root` of the current root: each one
//! unmaps the caller's stack while the stub holds its shadow lock. The entries must return
//! (the stub runs them on its own stack) and the evictions be counted.

use core::sync::atomic::Ordering;

use pvmux_hypercalls::vcpu::stat;
use pvmux_hypercalls::PAGE_SIZE;

use crate::irq::IrqGuard;
use crate::{println, stub};

/// A word of this kernel's data (its page is prefaulted).
static PROBE: u64 = 0;

/// More single-page `prefault`s than the stub's mapping budget (30,000 mappings).
const PREFAULTS: u32 = 40_000;

pub(crate) fn evict_in_entry() -> bool {
    let _irq = IrqGuard::new();
    let evictions = || stub::vcpu_self().stats[stat::EVICTIONS].load(Ordering::Relaxed);
    let before = evictions();
    let old = stub::set_fault_around(1);
    let page = (&raw const PROBE as u64) & !(PAGE_SIZE - 1);
    let mut failed = 0u32;
    for _ in 0..PREFAULTS {
        if stub::prefault(page, PAGE_SIZE, false) < 0 {
            failed += 1;
        }
    }
    let restored = stub::set_fault_around(old.max(1) as u64);
    let after_prefaults = evictions();
    let table = super::stub_table();
    let sp: u64;
    // SAFETY: reads rsp.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack)) };
    let flush = stub::tlb_flush(sp & !(PAGE_SIZE - 1), PAGE_SIZE);
    type FlushAll = extern "sysv64" fn() -> i64;
    type LoadRoot = extern "sysv64" fn(u64) -> i64;
    // SAFETY: the table's `tlb_flush_all` and `load_root` entries have these signatures.
    let (flush_all, load_root) = unsafe {
        (
            core::mem::transmute::<u64, FlushAll>(table.tlb_flush_all),
            core::mem::transmute::<u64, LoadRoot>(table.load_root),
        )
    };
    let all = flush_all();
    let root = load_root(crate::boot::info().page_table_root);
    println!(
        "hostile: evict-in-entry: {PREFAULTS} prefaults ({failed} failed), evictions {before} -> \
         {after_prefaults}; fault-around restored ({restored}); tlb_flush of the own stack page \
         -> {flush}, tlb_flush_all -> {all}, load_root -> {root}"
    );
    failed == 0 && after_prefaults > before && restored == 1 && flush == 0 && all == 0 && root == 0
}
