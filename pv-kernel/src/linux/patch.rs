//! Syscall-site patching (docs/ARCHITECTURE.md, "Syscall-site patching"; the byte forms and
//! the table layout are `pvmux_hypercalls::user::patch`).
//!
//! After a system call *trapped* (`SIGSYS` in the user sandbox, ~2 µs) at a site of the form
//! `mov $nr, %eax; syscall`, [`after_trap`] rewrites that process's copy of the site to jump
//! through a cell of the space's patch table into the user stub's patch entry, which hands the
//! call over with no signal. The rewrite is the process's own: the page's copy-on-write
//! sharing (with the image cache, or a parent after `fork`) is broken first, so the cached
//! program image and every other process keep the original bytes (and the cache's integrity
//! check never sees a patch); children forked afterwards inherit the patched page like any
//! other. The table (`PATCH_TABLE_BASE`, 64 KiB, read and execute, an ordinary anonymous
//! region of the process) is created at the first patch if that range is free; its header
//! word holds the entry the cells jump to — [`USER_PATCH_ENTRY`] in a user sandbox — chosen
//! here per address space.
//!
//! A live site is written in the order `patch_steps` gives, so another thread executing it
//! meanwhile runs either the old code, or the old `mov` into byte 5 of the patch (`0x06`,
//! invalid: `#UD`, which [`race_restart`] turns into a restart at the site), or the jump.
//! In the trusted in-process mode the table's header names the kernel sandbox's syscall entry
//! instead ([`entry_of`]), and a `fork` child (always in a user sandbox) gets the user stub's
//! ([`after_fork`]). `pvmux run --no-patch` (boot command `NO_PATCH`) turns all of it off.

use core::sync::atomic::{fence, AtomicU8, Ordering};

use pvmux_hypercalls::user::patch::{
    cell_addr, cell_bytes, is_race_restart, patch_steps, patchable_nr, site_patch, CELLS,
    PATCH_TABLE_BASE, PATCH_TABLE_LEN, SITE_LEN, USER_PATCH_ENTRY,
};
use pvmux_hypercalls::user::{in_user_window, prot};
use pvmux_hypercalls::{TrapFrame, PAGE_SIZE};

use super::space::{Mm, Space};
use crate::mm::pool_mem;

/// Size of a space's cache of unpatchable sites ([`Space::patch_skip`]).
pub(crate) const SKIP_SLOTS: usize = 32;

/// The slot of return address `rip` in [`Space::patch_skip`].
fn skip_slot(rip: u64) -> usize {
    ((rip ^ (rip >> 5) ^ (rip >> 13)) as usize) % SKIP_SLOTS
}

/// 0: not yet read from the boot arguments; 1: patching on; 2: off (`--no-patch`).
static STATE: AtomicU8 = AtomicU8::new(0);

/// Whether sites are patched (not with `--no-patch`).
fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        0 => {
            let on = !crate::boot::args().no_patch();
            STATE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
            on
        }
        s => s == 1,
    }
}

/// The `N` bytes at `va` of present pages of `mm` (not across a page), copied.
fn read_bytes<const N: usize>(mm: &Mm, va: u64) -> Option<[u8; N]> {
    if !in_user_window(va, N as u64) || (va & (PAGE_SIZE - 1)) + N as u64 > PAGE_SIZE {
        return None;
    }
    let gpa = mm.frame_of(va)? + (va & (PAGE_SIZE - 1));
    let mut b = [0u8; N];
    pool_mem::read(gpa, &mut b);
    Some(b)
}

/// Writes `data` at `va` of a private region of `mm` (one page), whatever its protection.
fn write_bytes(mm: &mut Mm, va: u64, data: &[u8]) -> Option<()> {
    if (va & (PAGE_SIZE - 1)) + data.len() as u64 > PAGE_SIZE {
        return None;
    }
    let gpa = mm.private_frame(va)? + (va & (PAGE_SIZE - 1));
    pool_mem::write(gpa, data);
    Some(())
}

/// The space's next free cell, creating the table (with `entry` in its header) at the first
/// call. `None` when the table is full or its range is not free.
fn take_cell(mm: &mut Mm, entry: u64) -> Option<u64> {
    if mm.patch_next == 0 {
        let end = PATCH_TABLE_BASE + PATCH_TABLE_LEN;
        if !mm.is_free(PATCH_TABLE_BASE, end) {
            mm.patch_next = u32::MAX;
            return None;
        }
        mm.add_vma(PATCH_TABLE_BASE, end, prot::READ | prot::EXEC, None);
        mm.populate(PATCH_TABLE_BASE).ok()?;
        write_bytes(mm, PATCH_TABLE_BASE, &entry.to_le_bytes())?;
        mm.patch_next = 1;
    }
    if mm.patch_next >= CELLS {
        return None;
    }
    let cell = cell_addr(mm.patch_next);
    mm.patch_next += 1;
    Some(cell)
}

/// After an adoption (`handover::adopt`, the map rebuilt from a hand-over record, which does
/// not carry the next free cell): the space's next free cell, read from its table — an
/// anonymous read+execute area at [`PATCH_TABLE_BASE`] whose header names
/// [`USER_PATCH_ENTRY`], or, in an in-process space (`inproc`), the old kernel sandbox's
/// syscall entry, which moved with the sandbox: the header then names this one's. Cells are
/// taken in order, the first one still zero (or on a page never touched) is the next. No
/// table: none yet if its range is free, none possible if the program mapped something
/// there (as [`take_cell`] decides).
pub(crate) fn adopted(mm: &mut Mm, inproc: bool) {
    let end = PATCH_TABLE_BASE + PATCH_TABLE_LEN;
    let shaped = mm.vma_at(PATCH_TABLE_BASE).is_some_and(|(s, v)| {
        s == PATCH_TABLE_BASE
            && v.end == end
            && v.prot == prot::READ | prot::EXEC
            && v.shm.is_none()
            && v.file.is_none()
    });
    let header = read_bytes::<8>(mm, PATCH_TABLE_BASE).map(u64::from_le_bytes);
    let table = shaped
        && match header {
            Some(USER_PATCH_ENTRY) => !inproc,
            Some(0) | None => false,
            Some(_) => {
                inproc && write_bytes(mm, PATCH_TABLE_BASE, &entry_of(true).to_le_bytes()).is_some()
            }
        };
    mm.patch_next = if table {
        (1..CELLS)
            .find(|&i| read_bytes::<8>(mm, cell_addr(i)).is_none_or(|b| b == [0; 8]))
            .unwrap_or(CELLS)
    } else if mm.is_free(PATCH_TABLE_BASE, end) {
        0
    } else {
        u32::MAX
    };
}

/// The entry a space's patched sites jump to (its table's header word): the user stub's
/// [`USER_PATCH_ENTRY`] in a user sandbox; in the trusted in-process mode the kernel
/// sandbox's own syscall entry (stub table entry `inproc_syscall`), so that a patched call
/// is a jump into the stub and a return from `inproc_run`, with no signal.
fn entry_of(inproc: bool) -> u64 {
    if inproc {
        crate::stub::inproc_syscall_entry()
    } else {
        USER_PATCH_ENTRY
    }
}

/// A snapshot resumed an in-process space in a new kernel sandbox, whose syscall entry is
/// elsewhere: the space's table, if it has one, names this one.
pub(crate) fn sandbox_moved(mm: &mut Mm) {
    if mm.patch_next != 0 && mm.patch_next != u32::MAX {
        let _ = write_bytes(mm, PATCH_TABLE_BASE, &entry_of(true).to_le_bytes());
    }
}

/// After `fork` copied a space with a patch table into `child` (which runs in a user
/// sandbox): points the child's copy of the table at the user stub's entry if the parent's
/// named another (an in-process parent's). The child's table page becomes its own.
pub(crate) fn after_fork(parent_inproc: bool, child: &mut Mm) {
    if !parent_inproc || child.patch_next == 0 || child.patch_next == u32::MAX {
        return;
    }
    // Nothing to write if the program unmapped the table's first page: its patched sites
    // then fault there, as they would in the parent.
    let _ = write_bytes(child, PATCH_TABLE_BASE, &USER_PATCH_ENTRY.to_le_bytes());
}

/// After a system call `nr` trapped with the return address `rip`: patches the site before it
/// if it has the patchable form (and was not patched meanwhile by another thread).
pub(crate) fn after_trap(space: &Space, rip: u64, nr: u64) {
    if !enabled() {
        return;
    }
    let Ok(nr) = u32::try_from(nr) else {
        return;
    };
    let skip = &space.patch_skip[skip_slot(rip)];
    if skip.load(Ordering::Relaxed) == rip {
        return;
    }
    let site = rip.wrapping_sub(SITE_LEN as u64);
    let mut mm = space.mm.lock();
    let patchable = mm.patch_next < CELLS
        && read_bytes::<SITE_LEN>(&mm, site).and_then(|b| patchable_nr(&b)) == Some(nr)
        && matches!(mm.vma_at(site), Some((_, v)) if v.prot & prot::EXEC != 0 && v.shm.is_none());
    if !patchable {
        skip.store(rip, Ordering::Relaxed);
        return;
    }
    let Some(cell) = take_cell(&mut mm, entry_of(space.is_inproc())) else {
        return;
    };
    // The cell's table page, one page at a time (demand-zero, private).
    if mm.populate(cell).is_err() {
        return;
    }
    if write_bytes(&mut mm, cell, &cell_bytes(cell, site, nr)).is_none() {
        return;
    }
    // The site's page becomes this process's own (a copy if shared), then the patch goes in
    // step by step, each write visible before the next.
    let Some(gpa) = mm.private_frame(site) else {
        return;
    };
    let gpa = gpa + (site & (PAGE_SIZE - 1));
    let patch = site_patch(cell);
    for (off, part) in patch_steps(&patch) {
        pool_mem::write(gpa + off as u64, part);
        fence(Ordering::SeqCst);
    }
}

/// After a `#UD` at `regs.rip`: if it is byte 5 of a patch (a thread ran the old `mov` while
/// the site was rewritten), restarts the thread at the site and returns true.
pub(crate) fn race_restart(space: &Space, regs: &mut TrapFrame) -> bool {
    let site = regs.rip.wrapping_sub(5);
    let mm = space.mm.lock();
    match read_bytes::<SITE_LEN>(&mm, site) {
        Some(b) if is_race_restart(&b, mm.patch_next) => {
            regs.rip = site;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::pool;

    #[test]
    fn an_adopted_table_goes_on_at_its_first_free_cell() {
        pool::init_for_tests();
        let end = PATCH_TABLE_BASE + PATCH_TABLE_LEN;
        // No table, its range free: one is made at the first patch.
        let mut mm = Mm::new();
        adopted(&mut mm, false);
        assert_eq!(mm.patch_next, 0);
        // Something else there: no table possible.
        assert!(mm.adopt_region(
            PATCH_TABLE_BASE,
            end,
            prot::READ,
            None,
            None,
            Default::default()
        ));
        adopted(&mut mm, false);
        assert_eq!(mm.patch_next, u32::MAX);
        // A table whose cells 1..=3 are taken, its first page carried.
        let frame = pool::alloc_zeroed().expect("frame");
        pool_mem::write(frame, &USER_PATCH_ENTRY.to_le_bytes());
        for i in 1..=3 {
            let cell = cell_addr(i);
            let bytes = cell_bytes(cell, 0x40_1000 + u64::from(i) * 16, 1);
            pool_mem::write(frame + (cell - PATCH_TABLE_BASE), &bytes);
        }
        let mut mm = Mm::new();
        assert!(mm.adopt_region(
            PATCH_TABLE_BASE,
            end,
            prot::READ | prot::EXEC,
            None,
            None,
            Default::default()
        ));
        assert!(mm.adopt_pages(PATCH_TABLE_BASE, frame, 1, false));
        adopted(&mut mm, false);
        assert_eq!(mm.patch_next, 4);
        // The user stub's entry in an in-process space: not its table (whose header names
        // the kernel sandbox's entry; rewritten there, which needs the stub: tested by
        // tests/tests/upgrade.rs `a_trusted_in_process_tenant_switches_kernels`).
        adopted(&mut mm, true);
        assert_eq!(mm.patch_next, u32::MAX);
        // Its header naming another entry: not a table of a user sandbox.
        pool_mem::write(frame, &0u64.to_le_bytes());
        adopted(&mut mm, false);
        assert_eq!(mm.patch_next, u32::MAX);
        mm.take_frames();
        pool::put(frame);
    }
}
