//! Memory abuse: page-table entries pointing outside guest memory, garbage in the live page
//! tables, a flood of aliases beyond the host's VMA budget, stack overflow, exhaustion.

use core::sync::atomic::{AtomicU64, Ordering};

use pvmux_hypercalls::frame::pf;
use pvmux_hypercalls::paging::pte;
use pvmux_hypercalls::PAGE_SIZE;

use crate::irq::IrqGuard;
use crate::mm::{demand, frame};
use crate::{boot, println};

const P: u64 = pte::PRESENT;
const W: u64 = pte::WRITABLE;
const PS: u64 = pte::HUGE_PAGE;
const NX: u64 = pte::NO_EXECUTE;

/// The live PML4 through the direct map.
fn pml4() -> *mut u64 {
    boot::phys_to_virt(boot::info().page_table_root) as *mut u64
}

/// A zeroed frame's gpa.
fn zeroed_frame() -> u64 {
    match frame::alloc_zeroed() {
        Some(f) => f.start_address().as_u64(),
        None => panic!("hostile: out of frames"),
    }
}

/// Writes entry `idx` of the table at `table_gpa`.
fn set_entry(table_gpa: u64, idx: u64, value: u64) {
    let e = (boot::phys_to_virt(table_gpa) + idx * 8) as *mut u64;
    // SAFETY: a page-table frame of ours, reached through the direct map; 8-aligned entry.
    unsafe { e.write_volatile(value) };
}

/// Reads `va` with a #PF fixup; returns the delivered (error code, fault address), or None if
/// the read worked.
fn read_fault(va: u64) -> Option<(u64, u64)> {
    crate::trap::read_u64_or_fault(va)
        .err()
        .map(|f| (f.error_code, f.fault_addr))
}

/// `hostile=write-kernel-text`: writes a word of the kernel's own text through the direct
/// map (read-write there). When the host shares the image's read-only pages between tenants
/// (mapped from its file), the store must be a #PF with `PRESENT | WRITE` and leave the text
/// as it was (contained); when this tenant's image lies in its own memory, the store works
/// and changes only this tenant's copy (restored at once). Any other outcome, or a text that
/// changed although the store faulted: not contained.
pub(crate) fn write_kernel_text() -> bool {
    let text_va = write_kernel_text as *const () as u64 & !7;
    let Some(gpa) = boot::virt_to_phys(text_va, 8) else {
        println!("hostile: the kernel's text is not in its image");
        return false;
    };
    let alias = boot::phys_to_virt(gpa);
    // SAFETY: reading our own text (mapped, 8-aligned) through the kernel's mapping.
    let before = unsafe { (text_va as *const u64).read_volatile() };
    match crate::trap::write_u64_or_fault(alias, !before) {
        Err(f) => {
            // SAFETY: as above.
            let after = unsafe { (text_va as *const u64).read_volatile() };
            let want = pf::PRESENT | pf::WRITE;
            let ok = f.error_code & want == want && f.fault_addr == alias && after == before;
            println!(
                "hostile: write-kernel-text: the kernel image's pages are read-only (#PF error \
                 code {:#x} at {:#x}; text unchanged: {})",
                f.error_code,
                f.fault_addr,
                after == before
            );
            ok
        }
        Ok(()) => {
            // SAFETY: as above.
            let after = unsafe { (text_va as *const u64).read_volatile() };
            let changed = after == !before;
            // Put it back (our own copy) before anything runs this code again.
            let restored = crate::trap::write_u64_or_fault(alias, before).is_ok();
            println!(
                "hostile: write-kernel-text: the kernel image's pages are this tenant's own \
                 (the store changed them: {changed}; restored: {restored})"
            );
            changed && restored
        }
    }
}

/// `hostile=map-beyond`: entries that point past the end of guest memory (1 GiB, 2 MiB and
/// 4 KiB leaves, a table pointer, the largest physical address). Every access must be a #PF
/// with `RESERVED` that the kernel's handler sees (contained); a control page must work.
pub(crate) fn map_beyond() -> bool {
    let mem = boot::info().mem_size;
    const SLOT: u64 = 62;
    let base = SLOT << 39;
    // SAFETY: reading our own live PML4 through the direct map.
    let old = unsafe { pml4().add(SLOT as usize).read_volatile() };
    if old != 0 {
        println!("hostile: PML4 slot {SLOT} already in use");
        return false;
    }
    let pdpt = zeroed_frame();
    let pd = zeroed_frame();
    let pt = zeroed_frame();
    let data = zeroed_frame();
    set_entry(pdpt, 0, P | W | PS); // 1 GiB page at gpa 0: ends beyond a small memory
    set_entry(pdpt, 1, pd | P | W);
    set_entry(pdpt, 2, (mem + PAGE_SIZE) | P | W); // a PD beyond memory
    set_entry(pd, 0, pt | P | W);
    set_entry(pd, 1, (mem & !0x1f_ffff) | P | W | PS | NX); // 2 MiB page at mem_size
    set_entry(pt, 0, mem | P | W | NX);
    set_entry(pt, 1, pte::ADDR_MASK | P | W | NX);
    set_entry(pt, 2, (mem - PAGE_SIZE) | P | W | NX); // the last page: fine
    set_entry(pt, 3, data | P | W | NX); // control
                                         // SAFETY: installs our own table in an unused slot of our own PML4.
    unsafe { pml4().add(SLOT as usize).write_volatile(pdpt | P | W) };
    crate::stub::tlb_flush(base, 1 << 39);
    let gib = 1u64 << 30;
    let mib2 = 2u64 << 20;
    let mut ok = true;
    for (what, va, bad) in [
        (
            "1 GiB page at gpa 0 (past the end)",
            base + (gib >> 1),
            mem < gib,
        ),
        ("PDPT entry to a PD beyond memory", base + 2 * gib, true),
        ("2 MiB page at mem_size", base + gib + mib2, true),
        ("4 KiB page at mem_size", base + gib, true),
        (
            "4 KiB page at the top physical address",
            base + gib + PAGE_SIZE,
            true,
        ),
        (
            "4 KiB page at mem_size - 4096",
            base + gib + 2 * PAGE_SIZE,
            false,
        ),
        ("control page", base + gib + 3 * PAGE_SIZE, false),
    ] {
        let r = read_fault(va + 8);
        let good = match (bad, r) {
            (true, Some((err, addr))) => err & pf::RESERVED != 0 && addr == va + 8,
            (false, None) => true,
            _ => false,
        };
        println!(
            "hostile: map-beyond {what}: {} ({})",
            match r {
                Some((e, a)) => alloc::format!("#PF error {e:#x} at {a:#x}"),
                None => "read ok".into(),
            },
            if good { "as expected" } else { "UNEXPECTED" }
        );
        ok &= good;
    }
    // SAFETY: removes our slot again.
    unsafe { pml4().add(SLOT as usize).write_volatile(0) };
    crate::stub::tlb_flush(base, 1 << 39);
    ok
}

/// `hostile=vma-flood`: 100 000 aliases of one frame (far beyond the host's VMA budget), read
/// twice: the stub must evict and refill, never fail.
pub(crate) fn vma_flood() -> bool {
    use x86_64::structures::paging::PageTableFlags as F;
    const PAGES: u64 = 100_000;
    const PATTERN: u64 = 0x686f_7374_696c_6521;
    let Some(base) = demand::reserve(PAGES * PAGE_SIZE) else {
        return false;
    };
    let Some(f) = frame::alloc_zeroed() else {
        return false;
    };
    let dm = boot::phys_to_virt(f.start_address().as_u64()) as *mut u64;
    // SAFETY: a fresh frame of ours through the direct map.
    unsafe { dm.write_volatile(PATTERN) };
    for i in 0..PAGES {
        // SAFETY: read-only aliases of a frame we own, in our own reservation.
        if unsafe { crate::mm::paging::map_page(base + i * PAGE_SIZE, f, F::NO_EXECUTE) }.is_err() {
            println!("hostile: vma-flood: mapping page {i} failed");
            return false;
        }
    }
    let ev0 = crate::stub::vcpu_self().stats[pvmux_hypercalls::vcpu::stat::EVICTIONS]
        .load(Ordering::Relaxed);
    let mut bad = 0u64;
    for _ in 0..2 {
        for i in 0..PAGES {
            // SAFETY: mapped above, read-only, 8-aligned.
            if unsafe { ((base + i * PAGE_SIZE) as *const u64).read_volatile() } != PATTERN {
                bad += 1;
            }
        }
    }
    let ev = crate::stub::vcpu_self().stats[pvmux_hypercalls::vcpu::stat::EVICTIONS]
        .load(Ordering::Relaxed)
        - ev0;
    println!("hostile: vma-flood: {PAGES} aliases read twice, {ev} evictions, {bad} bad reads");
    bad == 0 && ev > 0
}

/// Depth reached by [`recurse`].
static DEPTH: AtomicU64 = AtomicU64::new(0);

#[inline(never)]
#[allow(unconditional_recursion)] // deliberately unbounded
fn recurse(n: u64) -> u64 {
    let mut buf = [0u8; 1024];
    buf[0] = n as u8;
    DEPTH.store(n, Ordering::Relaxed);
    let b = core::hint::black_box(&mut buf);
    let r = recurse(n + 1);
    r.wrapping_add(u64::from(b[(n % 1024) as usize]))
}

/// `hostile=stack-overflow`: unbounded recursion on a kernel thread's (guard-less) stack.
pub(crate) fn stack_overflow() -> bool {
    println!("hostile: recursing without bound on a kernel thread stack");
    match crate::sched::spawn("overflow", None, || {
        core::hint::black_box(recurse(0));
    }) {
        Ok(h) => h.join(),
        Err(e) => println!("hostile: spawn failed: {e:?}"),
    }
    println!(
        "hostile: recursion returned (depth {})",
        DEPTH.load(Ordering::Relaxed)
    );
    false
}

/// `hostile=corrupt-pt`: garbage into every window slot of the live PML4 and a flush; the next
/// access cannot even be delivered as an exception.
pub(crate) fn corrupt_page_tables() -> bool {
    println!("hostile: writing garbage into the live PML4, then flushing the shadow");
    let _irq = IrqGuard::new();
    let p = pml4();
    for i in 32..64 {
        // SAFETY: our own live PML4 through the direct map: deliberately corrupted.
        unsafe { p.add(i).write_volatile(0xdead_beef_dead_b00f) };
    }
    crate::stub::tlb_flush(
        pvmux_hypercalls::layout::WINDOW_BASE,
        pvmux_hypercalls::layout::WINDOW_SIZE,
    );
    // Nothing in the window is reachable any more: the next instruction fetch faults.
    println!("hostile: still running after corrupting the page tables?");
    false
}

/// `hostile=oom`: take every frame, then touch fresh demand memory: the kernel must panic
/// with an out-of-memory message (reported by the host).
pub(crate) fn oom() -> bool {
    let mut n = 0u64;
    while frame::alloc().is_some() {
        n += 1;
    }
    println!("hostile: took {n} frames; touching fresh demand memory");
    let Some(va) = demand::reserve(PAGE_SIZE) else {
        return false;
    };
    // SAFETY: a demand page: the fault handler maps it or panics (out of memory).
    unsafe { (va as *mut u64).write_volatile(1) };
    println!("hostile: demand page mapped without memory?");
    false
}
