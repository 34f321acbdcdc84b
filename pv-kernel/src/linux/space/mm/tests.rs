//! The address-space bookkeeping on the host: regions, pages, copy-on-write, shared memory,
//! the operation queue and its batches, over the test pool (`pool::init_for_tests`, heap
//! memory standing in for the user pool).

use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::linux::shmem::ShmRef;

const RW: u32 = prot::READ | prot::WRITE;
const P: u64 = PAGE_SIZE;
/// A region base aligned to the fault-around block.
const BASE: u64 = 0x40_0000;

fn mm() -> Mm {
    pool::init_for_tests();
    Mm::new()
}

/// The regions as `(start, end, prot)`.
fn regions(m: &Mm) -> Vec<(u64, u64, u32)> {
    m.vmas().map(|(s, v)| (s, v.end, v.prot)).collect()
}

/// Every queued operation, taking them all.
fn drain(m: &mut Mm) -> Vec<UserOp> {
    let mut all = Vec::new();
    loop {
        let b = m.take_batch();
        all.extend(b.ops);
        for f in b.freed {
            pool::put(f);
        }
        if !b.more {
            return all;
        }
    }
}

fn map(addr: u64, len: u64, prot_bits: u32, offset: u64) -> UserOp {
    UserOp {
        kind: op::MAP,
        prot: prot_bits,
        addr,
        len,
        offset,
    }
}

/// A fault's mapping: [`op::MAP_POPULATE`].
fn map_populated(addr: u64, len: u64, prot_bits: u32, offset: u64) -> UserOp {
    UserOp {
        kind: op::MAP_POPULATE,
        ..map(addr, len, prot_bits, offset)
    }
}

fn protect_op(addr: u64, len: u64, prot_bits: u32) -> UserOp {
    UserOp {
        kind: op::PROTECT,
        prot: prot_bits,
        addr,
        len,
        offset: 0,
    }
}

fn unmap_op(addr: u64, len: u64) -> UserOp {
    UserOp {
        kind: op::UNMAP,
        prot: 0,
        addr,
        len,
        offset: 0,
    }
}

/// The pages `MAP` (and `MAP_POPULATE`) operations map: `(address, frame, prot)` each.
fn pages_mapped(ops: &[UserOp]) -> Vec<(u64, u64, u32)> {
    ops.iter()
        .filter(|o| o.kind == op::MAP || o.kind == op::MAP_POPULATE)
        .flat_map(|o| (0..o.len / P).map(move |k| (o.addr + k * P, o.offset + k * P, o.prot)))
        .collect()
}

/// The bytes of a frame.
fn frame_bytes(gpa: u64) -> Vec<u8> {
    let mut b = vec![0u8; P as usize];
    pool_mem::read(gpa, &mut b);
    b
}

/// Releases everything `m` holds (the test pool is shared by all tests).
fn release(mut m: Mm) {
    drain(&mut m);
    for f in m.take_frames() {
        pool::put(f);
    }
}

#[test]
fn unmap_trims_and_splits_regions_and_queues_one_unmap() {
    let mut m = mm();
    m.add_vma(BASE, BASE + 8 * P, RW, None);
    m.add_vma(BASE + 10 * P, BASE + 12 * P, prot::READ, None);
    assert!(m.is_free(BASE + 8 * P, BASE + 10 * P));
    assert!(!m.is_free(BASE + 7 * P, BASE + 9 * P));
    // A hole in the middle of the first region, then the end of the first and the start
    // of the second in one call.
    m.unmap(BASE + 2 * P, BASE + 3 * P);
    m.unmap(BASE + 6 * P, BASE + 11 * P);
    assert_eq!(
        regions(&m),
        [
            (BASE, BASE + 2 * P, RW),
            (BASE + 3 * P, BASE + 6 * P, RW),
            (BASE + 11 * P, BASE + 12 * P, prot::READ),
        ]
    );
    assert_eq!(m.vma_at(BASE + 2 * P).map(|(s, _)| s), None);
    assert_eq!(m.vma_at(BASE + 4 * P).map(|(s, _)| s), Some(BASE + 3 * P));
    assert_eq!(
        drain(&mut m),
        [unmap_op(BASE + 2 * P, P), unmap_op(BASE + 6 * P, 5 * P)]
    );
    // Nothing mapped there: no operation.
    m.unmap(BASE + 20 * P, BASE + 30 * P);
    assert!(drain(&mut m).is_empty());
    release(m);
}

#[test]
fn protect_splits_regions_and_needs_them_mapped() {
    let mut m = mm();
    m.add_vma(BASE, BASE + 4 * P, RW, None);
    m.add_vma(BASE + 5 * P, BASE + 6 * P, RW, None);
    // Not fully mapped: nothing changes.
    assert_eq!(
        m.protect(BASE + 3 * P, BASE + 6 * P, prot::READ),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        regions(&m),
        [(BASE, BASE + 4 * P, RW), (BASE + 5 * P, BASE + 6 * P, RW)]
    );
    m.protect(BASE + P, BASE + 3 * P, prot::READ).unwrap();
    assert_eq!(
        regions(&m),
        [
            (BASE, BASE + P, RW),
            (BASE + P, BASE + 3 * P, prot::READ),
            (BASE + 3 * P, BASE + 4 * P, RW),
            (BASE + 5 * P, BASE + 6 * P, RW),
        ]
    );
    // No pages yet: nothing to tell the sandbox.
    assert!(drain(&mut m).is_empty());
    release(m);
}

/// `mprotect` of present pages changes their rights in place (the sandbox keeps them
/// present, as Linux keeps the program's page-table entries: a write after `mprotect
/// (PROT_READ)` is a protection fault, error 7); PROT_NONE unmaps them, and leaving
/// PROT_NONE maps them again. Copy-on-write pages never become writable.
#[test]
fn protect_changes_present_pages_in_place() {
    let mut m = mm();
    m.add_vma(BASE, BASE + 16 * P, RW, None);
    let a = m.populate(BASE).unwrap();
    let b = m.populate(BASE + P).unwrap();
    drain(&mut m);
    m.protect(BASE, BASE + 16 * P, prot::READ).unwrap();
    assert_eq!(drain(&mut m), [protect_op(BASE, 2 * P, prot::READ)]);
    m.protect(BASE, BASE + 16 * P, 0).unwrap();
    assert_eq!(
        drain(&mut m),
        [unmap_op(BASE, 2 * P)],
        "PROT_NONE: gone from the sandbox"
    );
    assert_eq!(m.frame_of(BASE), Some(a), "but kept");
    m.protect(BASE, BASE + 16 * P, RW).unwrap();
    assert_eq!(
        pages_mapped(&drain(&mut m)),
        [(BASE, a, RW), (BASE + P, b, RW)],
        "mapped again"
    );
    // After a fork the pages are copy-on-write: making them writable keeps them read-only.
    let mut child = Mm::new();
    m.fork_into(&mut child, &[]);
    drain(&mut m);
    m.protect(BASE, BASE + 16 * P, prot::ALL).unwrap();
    assert_eq!(
        drain(&mut m),
        [protect_op(BASE, 2 * P, prot::READ | prot::EXEC)]
    );
    release(m);
    release(child);
}

/// ELF segments sharing a page: the parts already mapped get the union of both rights, the
/// gaps become regions of their own.
#[test]
fn overlapping_segments_merge_their_rights() {
    let mut m = mm();
    m.add_region_merging(BASE, BASE + 2 * P, prot::READ | prot::EXEC);
    m.add_region_merging(BASE + P, BASE + 4 * P, RW);
    assert_eq!(
        regions(&m),
        [
            (BASE, BASE + P, prot::READ | prot::EXEC),
            (BASE + P, BASE + 2 * P, prot::ALL),
            (BASE + 2 * P, BASE + 4 * P, RW),
        ]
    );
    release(m);
}

#[test]
fn brk_grows_and_shrinks_the_heap() {
    let mut m = mm();
    let heap = 0x60_0000;
    m.brk_base = heap;
    m.brk = heap;
    assert_eq!(m.set_brk(0), heap, "brk(0) asks");
    assert_eq!(m.set_brk(heap - 1), heap, "not below the start");
    assert_eq!(m.set_brk(heap + 5000), heap + 5000);
    assert_eq!(regions(&m), [(heap, heap + 2 * P, RW)]);
    assert_eq!(m.set_brk(heap + 3 * P), heap + 3 * P);
    assert_eq!(
        regions(&m),
        [(heap, heap + 3 * P, RW)],
        "grown as one region"
    );
    assert_eq!(m.set_brk(heap + 10), heap + 10);
    assert_eq!(
        regions(&m),
        [(heap, heap + P, RW)],
        "shrunk to the page of the break"
    );
    // Something in the way: the break stays.
    m.add_vma(heap + 4 * P, heap + 5 * P, prot::READ, None);
    assert_eq!(m.set_brk(heap + 6 * P), heap + 10);
    assert_eq!(m.brk, heap + 10);
    release(m);
}

#[test]
fn mmap_places_top_down_and_skips_what_is_in_the_way() {
    let mut m = mm();
    let top = m.mmap_top;
    let a = m.find_free(3 * P).unwrap();
    assert_eq!(a, top - 3 * P);
    m.add_vma(a, a + 3 * P, RW, None);
    // Something mapped just below the hint (MAP_FIXED): the next placement goes below it.
    m.add_vma(a - 2 * P, a - P, RW, None);
    let b = m.find_free(2 * P).unwrap();
    assert_eq!(b, a - 4 * P);
    // Above the heap only.
    m.brk = b - 3 * P;
    assert_eq!(m.find_free(4 * P), Err(Errno::ENOMEM));
    assert_eq!(m.find_free(u64::MAX), Err(Errno::ENOMEM));
    release(m);
}

/// A first touch populates the aligned fault-around block inside the region with zeroed
/// frames, queued as mappings (one operation per contiguous run).
#[test]
fn demand_zero_populates_the_fault_around_block() {
    let mut m = mm();
    // The region starts mid-block: the block is clipped to it.
    m.add_vma(BASE + 3 * P, BASE + 40 * P, RW, None);
    let gen = m.generation;
    let gpa = m.touch(BASE + 5 * P + 12, true, false).unwrap();
    assert_eq!(m.frame_of(BASE + 5 * P), Some(gpa));
    assert_eq!(m.resident_pages(), 13, "pages 3..16 of the first block");
    assert!(m.frame_of(BASE + 2 * P).is_none() && m.frame_of(BASE + 16 * P).is_none());
    assert!(m.generation > gen);
    assert!(frame_bytes(gpa).iter().all(|&b| b == 0));
    let ops = drain(&mut m);
    let mapped: u64 = ops.iter().map(|o| o.len).sum();
    assert_eq!(mapped, 13 * P);
    for o in &ops {
        assert_eq!((o.kind, o.prot), (op::MAP_POPULATE, RW));
        // Each run maps the frames the map holds.
        for k in 0..o.len / P {
            assert_eq!(m.frame_of(o.addr + k * P), Some(o.offset + k * P));
        }
    }
    release(m);
}

/// Frames freed together come back off the pool's free stack in reverse; the fault-around
/// hands them to the pages in ascending order, so a run unmapped and touched again is mapped
/// as one run (one host `mmap`), not one per page.
#[test]
fn a_refilled_block_gets_its_frames_in_ascending_order() {
    let mut m = mm();
    m.add_vma(BASE, BASE + 16 * P, RW, None);
    m.touch(BASE, true, false).unwrap();
    drain(&mut m);
    // The frames go back in ascending order (as a munmap's batch frees them), so the free
    // stack pops them in descending order.
    m.unmap(BASE, BASE + 16 * P);
    drain(&mut m);
    m.add_vma(BASE, BASE + 16 * P, RW, None);
    m.touch(BASE + 7 * P, true, false).unwrap();
    let frames: Vec<u64> = (0..16).map(|i| m.frame_of(BASE + i * P).unwrap()).collect();
    assert!(
        frames.windows(2).all(|w| w[0] < w[1]),
        "frames along the block: {frames:x?}"
    );
    release(m);
}

/// The copies a copy-on-write break makes for its block go to the pages in ascending frame
/// order (runs the sandbox maps at once), whatever order the pool hands the frames out in.
#[test]
fn a_copy_on_write_block_gets_its_new_frames_in_ascending_order() {
    let mut parent = mm();
    parent.add_vma(BASE, BASE + FAULT_AROUND * P, RW, None);
    parent.touch(BASE, true, false).unwrap();
    drain(&mut parent);
    let mut child = Mm::new();
    parent.fork_into(&mut child, &[]);
    drain(&mut parent);
    drain(&mut child);
    // Frames put back in ascending order: the free stack pops them in descending order.
    let mut spare: Vec<u64> = (0..FAULT_AROUND).map(|_| pool::alloc().unwrap()).collect();
    spare.sort_unstable();
    for f in spare {
        pool::put(f);
    }
    child.touch(BASE + 5 * P, true, false).unwrap();
    let frames: Vec<u64> = (0..FAULT_AROUND)
        .map(|i| child.frame_of(BASE + i * P).unwrap())
        .collect();
    assert!(
        frames.windows(2).all(|w| w[0] < w[1]),
        "the child's copies along the block: {frames:x?}"
    );
    drain(&mut child);
    release(child);
    drain(&mut parent);
    release(parent);
}

#[test]
fn accesses_the_region_does_not_allow_fault() {
    let mut m = mm();
    m.add_vma(BASE, BASE + P, prot::READ, None);
    m.add_vma(BASE + P, BASE + 2 * P, prot::READ | prot::EXEC, None);
    m.add_vma(BASE + 2 * P, BASE + 3 * P, 0, None);
    assert_eq!(
        m.touch(BASE, true, false),
        Err(Errno::EFAULT),
        "write to read-only"
    );
    assert_eq!(
        m.touch(BASE, false, true),
        Err(Errno::EFAULT),
        "exec of data"
    );
    assert_eq!(
        m.touch(BASE + 2 * P, false, false),
        Err(Errno::EFAULT),
        "PROT_NONE"
    );
    assert_eq!(
        m.touch(BASE + 3 * P, false, false),
        Err(Errno::EFAULT),
        "unmapped"
    );
    assert!(m.touch(BASE + P, false, true).is_ok());
    assert_eq!(
        m.fault(0x10, pf::WRITE | pf::USER),
        Err(Errno::EFAULT),
        "below the user window"
    );
    release(m);
}

/// `fork`: private pages become copy-on-write in both maps with one reference each; a write
/// in the child copies, a write in the parent (then alone) takes the frame back writable.
#[test]
fn memory_written_in_order_takes_longer_blocks() {
    let mut m = mm();
    m.add_vma(BASE, BASE + 200 * P, RW, None);
    // A first fault maps its 16-page block; the next one, right after it, maps 64 pages
    // from its block's start; a fault away from resident pages maps 16 again.
    m.touch(BASE, true, false).unwrap();
    assert_eq!(m.resident_pages(), 16);
    m.touch(BASE + 16 * P, true, false).unwrap();
    assert_eq!(m.resident_pages(), 16 + 64);
    assert!(m.frame_of(BASE + 79 * P).is_some() && m.frame_of(BASE + 80 * P).is_none());
    m.touch(BASE + 160 * P, true, false).unwrap();
    assert_eq!(m.resident_pages(), 16 + 64 + 16);
    // Clipped to the region's end.
    m.touch(BASE + 176 * P, true, false).unwrap();
    assert_eq!(m.resident_pages(), 16 + 64 + 16 + 24);
    let ops = drain(&mut m);
    assert!(ops.iter().all(|o| o.kind == op::MAP_POPULATE));
    assert_eq!(pages_mapped(&ops).len(), 120);
    release(m);
}

#[test]
fn fork_copies_every_page_and_maps_runs_in_one_operation() {
    let mut parent = mm();
    parent.add_vma(BASE, BASE + 64 * P, RW, None);
    parent.add_vma(BASE + 64 * P, BASE + 96 * P, prot::READ | prot::EXEC, None);
    // A run of contiguous frames installed copy-on-write (as an exec's program image).
    let image = pool::alloc_contiguous(32).unwrap();
    parent.install_cow_run(BASE + 64 * P, image, 32);
    for k in 0..64 {
        parent.touch(BASE + k * P, true, false).unwrap();
    }
    drain(&mut parent);
    let mut child = Mm::new();
    parent.fork_into(&mut child, &[]);
    assert_eq!(child.resident_pages(), 96);
    for k in 0..96 {
        let va = BASE + k * P;
        let gpa = parent.frame_of(va).unwrap();
        assert_eq!(
            child.pages[&va],
            Pte {
                gpa,
                cow: true,
                lazy: true
            }
        );
        assert_eq!(
            parent.pages[&va],
            Pte {
                gpa,
                cow: true,
                lazy: false
            }
        );
        assert_eq!(pool::refs(gpa), 2, "page {k}");
    }
    // Nothing is mapped in the child before it faults; a fault in the image maps its run
    // in one operation, the image pages' rights; the parent's writable pages are
    // write-protected, the image pages (copy-on-write already) left alone.
    assert_eq!(drain(&mut child), []);
    child.fault(BASE + 70 * P, pf::USER | pf::FETCH).unwrap();
    assert_eq!(
        drain(&mut child),
        [map(BASE + 64 * P, 32 * P, prot::READ | prot::EXEC, image)]
    );
    // A write fault in the data copies the page and its block's copy-on-write pages.
    child.fault(BASE + 3 * P, pf::USER | pf::WRITE).unwrap();
    let copies = pages_mapped(&drain(&mut child));
    assert_eq!(copies.len(), 16);
    assert!(copies.iter().all(|&(_, _, p)| p == RW));
    let parent_ops = drain(&mut parent);
    assert!(parent_ops
        .iter()
        .all(|o| o.kind == op::PROTECT && o.prot == prot::READ));
    assert_eq!(parent_ops.iter().map(|o| o.len).sum::<u64>(), 64 * P);
    release(parent);
    release(child);
    for k in 0..32 {
        assert_eq!(pool::refs(image + k * P), 0);
    }
}

#[test]
fn fork_leaves_out_dontfork_regions_and_copies_wipeonfork_ones_empty() {
    let mut parent = mm();
    parent.add_vma(BASE, BASE + 12 * P, RW, None);
    for k in 0..12 {
        parent.touch(BASE + k * P, true, false).unwrap();
    }
    drain(&mut parent);
    // Pages 0-3 wiped, 8-11 left out: the region splits in three.
    parent
        .advise_fork(BASE, BASE + 4 * P, true, |f| f.wipe = true)
        .unwrap();
    parent
        .advise_fork(BASE + 8 * P, BASE + 12 * P, false, |f| f.skip = true)
        .unwrap();
    assert_eq!(
        regions(&parent),
        [
            (BASE, BASE + 4 * P, RW),
            (BASE + 4 * P, BASE + 8 * P, RW),
            (BASE + 8 * P, BASE + 12 * P, RW)
        ]
    );
    // Wiping a shared region is EINVAL, nothing changed.
    parent.add_vma(BASE + 20 * P, BASE + 21 * P, RW, Some(ShmRef::new_object()));
    assert_eq!(
        parent.advise_fork(BASE + 20 * P, BASE + 21 * P, true, |f| f.wipe = true),
        Err(Errno::EINVAL)
    );
    let mut child = Mm::new();
    parent.fork_into(&mut child, &[]);
    assert_eq!(
        regions(&child),
        [
            (BASE, BASE + 4 * P, RW),
            (BASE + 4 * P, BASE + 8 * P, RW),
            (BASE + 20 * P, BASE + 21 * P, RW)
        ]
    );
    assert_eq!(
        child.resident_pages(),
        4,
        "only the middle pages are copied"
    );
    for k in 4..8 {
        let va = BASE + k * P;
        assert_eq!(child.frame_of(va), parent.frame_of(va));
    }
    // The wiped pages fault in fresh (zeroed) frames of the child's own.
    let fresh = child.touch(BASE, false, false).unwrap();
    assert_ne!(Some(fresh), parent.frame_of(BASE));
    // Undone, the next child gets everything again.
    parent
        .advise_fork(BASE, BASE + 12 * P, false, |f| *f = OnFork::default())
        .unwrap();
    let mut again = Mm::new();
    parent.fork_into(&mut again, &[]);
    assert_eq!(again.resident_pages(), 12);
    release(parent);
    release(child);
    release(again);
}

#[test]
fn fork_copies_the_pages_it_is_told_the_parent_holds_alone() {
    let mut parent = mm();
    // Two regions far apart: a copy-on-write break in one does not reach the other.
    let far = BASE + 64 * P;
    parent.add_vma(BASE, BASE + P, RW, None);
    parent.add_vma(far, far + P, RW, None);
    parent.touch(BASE, true, false).unwrap();
    let shared = parent.touch(far, true, false).unwrap();
    drain(&mut parent);
    // A first child shares both pages copy-on-write; the parent then writes the first one
    // again, which gives it a frame of its own.
    let mut first = Mm::new();
    parent.fork_into(&mut first, &[]);
    let stack = parent.touch(BASE, true, false).unwrap();
    pool_mem::write(stack, b"stack");
    drain(&mut parent);
    drain(&mut first);
    assert_eq!((pool::refs(stack), pool::refs(shared)), (1, 2));

    let mut child = Mm::new();
    parent.fork_into(&mut child, &[BASE, far]);
    // The page the parent holds alone stays its own, writable, not write-protected.
    assert_eq!(
        parent.pages[&BASE],
        Pte {
            gpa: stack,
            cow: false,
            lazy: false
        }
    );
    assert_eq!(pool::refs(stack), 1);
    // The child has a copy with the same bytes, mapped writable with its first run.
    let copy = child.pages[&BASE];
    assert!(!copy.cow && !copy.lazy && copy.gpa != stack);
    assert_eq!(pool::refs(copy.gpa), 1);
    assert_eq!(&frame_bytes(copy.gpa)[..5], b"stack");
    assert_eq!(pages_mapped(&drain(&mut child)), [(BASE, copy.gpa, RW)]);
    // The page shared with the first child is shared with this one too, copy-on-write.
    assert_eq!(
        child.pages[&far],
        Pte {
            gpa: shared,
            cow: true,
            lazy: true
        }
    );
    assert_eq!(pool::refs(shared), 3);
    assert_eq!(
        drain(&mut parent),
        [],
        "nothing of the parent's is protected"
    );
    release(child);
    release(first);
    release(parent);
}

#[test]
fn a_fork_childs_hot_blocks_are_mapped_with_its_first_run() {
    let mut parent = mm();
    parent.add_vma(BASE, BASE + 2 * P, prot::READ | prot::EXEC, None);
    let code = parent.touch(BASE, false, false).unwrap();
    drain(&mut parent);
    let mut child = Mm::new();
    parent.fork_into(&mut child, &[]);
    assert!(child.pages[&BASE].lazy);
    // Its code's block is sent now (read-only as the fault would); an address in no region
    // is skipped.
    child.map_hot(&[BASE + 0x123, 0x7000_0000]);
    assert!(!child.pages[&BASE].lazy);
    // (The parent's fault populated the whole region: both pages are in the block.)
    let next = child.pages[&(BASE + P)].gpa;
    let rx = prot::READ | prot::EXEC;
    assert_eq!(
        pages_mapped(&drain(&mut child)),
        [(BASE, code, rx), (BASE + P, next, rx)]
    );
    release(child);
    release(parent);
}

#[test]
fn fork_marks_private_pages_copy_on_write() {
    let mut parent = mm();
    parent.add_vma(BASE, BASE + P, RW, None);
    parent.add_vma(BASE + P, BASE + 2 * P, prot::READ, None);
    let data = parent.touch(BASE, true, false).unwrap();
    let ro = parent.touch(BASE + P, false, false).unwrap();
    pool_mem::write(data, b"parent");
    drain(&mut parent);
    let mut child = Mm::new();
    parent.fork_into(&mut child, &[]);
    assert_eq!(regions(&child), regions(&parent));
    for (va, gpa) in [(BASE, data), (BASE + P, ro)] {
        assert_eq!(pool::refs(gpa), 2);
        assert_eq!(
            parent.pages[&va],
            Pte {
                gpa,
                cow: true,
                lazy: false
            }
        );
        assert_eq!(
            child.pages[&va],
            Pte {
                gpa,
                cow: true,
                lazy: true
            }
        );
    }
    // The parent's writable page is made read-only in place; the child maps nothing
    // before it faults.
    assert_eq!(drain(&mut parent), [protect_op(BASE, P, prot::READ)]);
    assert_eq!(drain(&mut child), []);
    // A read fault maps the lazy pages of its block in its region, read-only; a new
    // generation.
    let gen = child.generation;
    assert_ne!(child.fault(BASE + P, pf::USER).unwrap(), MapGeneration(gen));
    assert_eq!(
        pages_mapped(&drain(&mut child)),
        [(BASE + P, ro, prot::READ)]
    );
    assert!(child.pages[&BASE].lazy && !child.pages[&(BASE + P)].lazy);
    // Writing the read-only region is refused (SIGSEGV), lazy or not.
    assert_eq!(
        child.fault(BASE + P, pf::USER | pf::WRITE),
        Err(Errno::EFAULT)
    );

    // The child writes: a copy with the same bytes, mapped writable; the shared frame is
    // released once the child's sandbox has the new mapping.
    let gen = child.generation;
    let copy = child.touch(BASE + 3, true, false).unwrap();
    assert_ne!(copy, data);
    assert!(child.generation > gen);
    assert_eq!(&frame_bytes(copy)[..6], b"parent");
    assert_eq!(
        child.pages[&BASE],
        Pte {
            gpa: copy,
            cow: false,
            lazy: false
        }
    );
    assert_eq!(pool::refs(data), 2, "released only after the batch");
    let b = child.take_batch();
    assert_eq!(b.ops, [map_populated(BASE, P, RW, copy)]);
    assert_eq!(b.freed, [data]);
    for f in b.freed {
        pool::put(f);
    }
    assert_eq!(pool::refs(data), 1);
    // The parent is the last user: its write keeps the frame, now writable.
    assert_eq!(parent.touch(BASE, true, false), Ok(data));
    assert_eq!(
        parent.pages[&BASE],
        Pte {
            gpa: data,
            cow: false,
            lazy: false
        }
    );
    assert_eq!(drain(&mut parent), [map_populated(BASE, P, RW, data)]);
    assert_eq!(&frame_bytes(data)[..6], b"parent");
    release(parent);
    release(child);
    assert_eq!(pool::refs(ro), 0);
}

/// Shared anonymous memory stays shared across `fork`, also for pages neither side touched
/// before it: both get the object's one frame, not copies.
#[test]
fn shared_regions_share_frames_across_fork() {
    let mut parent = mm();
    parent.add_vma(BASE, BASE + 4 * P, RW, Some(ShmRef::new_object()));
    let first = parent.touch(BASE, true, false).unwrap();
    let mut child = Mm::new();
    parent.fork_into(&mut child, &[]);
    assert_eq!(
        child.pages[&BASE],
        Pte {
            gpa: first,
            cow: false,
            lazy: true
        }
    );
    assert_eq!(
        parent.pages[&BASE],
        Pte {
            gpa: first,
            cow: false,
            lazy: false
        }
    );
    // Writable in both, no copy-on-write mapping queued for the parent.
    assert!(drain(&mut parent).iter().all(|o| o.prot == RW));
    assert!(drain(&mut child).iter().all(|o| o.prot == RW));
    // A page touched first after the fork, by the child, is the parent's too.
    let later = child.touch(BASE + 3 * P, true, false).unwrap();
    pool_mem::write(later, b"shared");
    assert_eq!(parent.touch(BASE + 3 * P, false, false), Ok(later));
    assert_eq!(&frame_bytes(later)[..6], b"shared");
    let usage = parent.usage();
    assert_eq!(usage.mapped, 4 * P);
    assert_eq!(
        (usage.private_pages, usage.shared_pages),
        (0, parent.resident_pages())
    );
    release(parent);
    release(child);
}

#[test]
fn coalesce_joins_the_regions_linux_would_hold_as_one() {
    let mut m = mm();
    // Anonymous private neighbours alike, and a third with other rights.
    m.add_vma(BASE, BASE + 2 * P, RW, None);
    m.add_vma(BASE + 2 * P, BASE + 3 * P, RW, None);
    m.add_vma(BASE + 3 * P, BASE + 4 * P, prot::READ, None);
    assert!(m.coalesce(BASE + P, BASE + 3 * P));
    assert!(!m.coalesce(BASE, BASE + 4 * P), "other rights");
    assert_eq!(
        regions(&m),
        [
            (BASE, BASE + 3 * P, RW),
            (BASE + 3 * P, BASE + 4 * P, prot::READ)
        ]
    );
    assert!(
        !m.coalesce(BASE + 5 * P, BASE + 6 * P),
        "nothing mapped there"
    );
    // A gap between two regions.
    let far = BASE + 16 * P;
    m.add_vma(far, far + P, RW, None);
    m.add_vma(far + 2 * P, far + 3 * P, RW, None);
    assert!(!m.coalesce(far, far + 3 * P));
    // One shared object at offsets that follow, then one that does not follow.
    let shm = ShmRef::new_object();
    let s = BASE + 32 * P;
    m.add_vma(s, s + P, RW, Some(shm.clone()));
    m.add_vma(s + P, s + 2 * P, RW, Some(shm.advanced(P)));
    m.add_vma(s + 2 * P, s + 3 * P, RW, Some(shm.advanced(5 * P)));
    assert!(m.coalesce(s, s + 2 * P));
    assert!(
        !m.coalesce(s, s + 3 * P),
        "object offsets that do not follow"
    );
    // A private region next to a shared one.
    m.add_vma(s + 3 * P, s + 4 * P, RW, None);
    assert!(!m.coalesce(s + 2 * P, s + 4 * P));
    // A file at offsets that follow, and then another file.
    let file = |ino, offset| MapFile {
        path: alloc::sync::Arc::from(&b"/f"[..]),
        ino,
        offset,
        bus_past_eof: true,
        image: None,
    };
    let f = BASE + 48 * P;
    for (i, (ino, off)) in [(7, 0), (7, P), (8, 2 * P)].into_iter().enumerate() {
        let at = f + i as u64 * P;
        m.add_vma(at, at + P, prot::READ, None);
        m.name_file(at, at + 1, &file(ino, off));
    }
    assert!(!m.coalesce(f, f + 3 * P), "another file");
    assert!(m.coalesce(f, f + 2 * P));
    assert_eq!(m.vma_at(f).map(|(s, v)| (s, v.end)), Some((f, f + 2 * P)));
    release(m);
}

/// Operations are coalesced when contiguous, taken a slot's worth at a time in numbered
/// batches, and frames to release come with the last batch.
#[test]
fn the_queue_is_taken_in_numbered_batches() {
    let mut m = mm();
    assert_eq!(m.take_batch().seq, 0, "nothing taken yet");
    m.add_vma(BASE, BASE + 1000 * P, RW, None);
    // Every other page: no two mappings coalesce.
    for i in 0..(USER_OPS_MAX as u64 + 50) {
        m.populate(BASE + 2 * i * P).unwrap();
    }
    m.discard(BASE, BASE + P);
    let b1 = m.take_batch();
    assert_eq!((b1.ops.len(), b1.seq, b1.more), (USER_OPS_MAX, 1, true));
    assert!(b1.freed.is_empty(), "not before the last batch is applied");
    let b2 = m.take_batch();
    assert_eq!((b2.ops.len(), b2.seq, b2.more), (51, 2, false));
    assert_eq!(b2.ops[50], unmap_op(BASE, P));
    assert_eq!(b2.freed.len(), 1);
    for f in b2.freed {
        pool::put(f);
    }
    // Empty: the number of the last batch taken, for ordering.
    let b3 = m.take_batch();
    assert_eq!((b3.ops.len(), b3.seq, b3.more), (0, 2, false));
    // Contiguous unmaps of contiguous pages coalesce.
    m.discard(BASE + 2 * P, BASE + 2 * P * 4);
    let ops = drain(&mut m);
    assert_eq!(
        ops,
        [
            unmap_op(BASE + 2 * P, P),
            unmap_op(BASE + 4 * P, P),
            unmap_op(BASE + 6 * P, P)
        ]
    );
    release(m);
}

/// A fault on a page that is already resolved re-sends its mapping without a new
/// generation (a repeat means the sandbox ignores it); a real change is a new generation.
#[test]
fn map_generation_tells_a_fault_loop_from_progress() {
    let mut m = mm();
    m.add_vma(BASE, BASE + P, RW, None);
    let g1 = m.fault(BASE, pf::WRITE | pf::USER).unwrap();
    let gpa = m.frame_of(BASE).unwrap();
    drain(&mut m);
    let g2 = m.fault(BASE, pf::WRITE | pf::USER).unwrap();
    assert_eq!(g1, g2, "nothing changed");
    assert_eq!(
        drain(&mut m),
        [map_populated(BASE, P, RW, gpa)],
        "the mapping is sent again"
    );
    // After a fork, the same write is a copy-on-write break: progress.
    let mut child = Mm::new();
    m.fork_into(&mut child, &[]);
    let g3 = m.fault(BASE, pf::WRITE | pf::USER).unwrap();
    assert_ne!(g3, g2);
    release(m);
    release(child);
}

#[test]
fn mremap_moves_pages_and_discard_drops_them() {
    let mut m = mm();
    m.add_vma(BASE, BASE + 2 * P, RW, None);
    let a = m.populate(BASE).unwrap();
    let b = m.populate(BASE + P).unwrap();
    drain(&mut m);
    let to = BASE + 64 * P;
    m.add_vma(to, to + 2 * P, RW, None);
    m.move_pages(BASE, to, 2 * P);
    m.unmap(BASE, BASE + 2 * P);
    assert_eq!((m.frame_of(to), m.frame_of(to + P)), (Some(a), Some(b)));
    assert_eq!(m.frame_of(BASE), None);
    let ops = drain(&mut m);
    assert_eq!(pages_mapped(&ops), [(to, a, RW), (to + P, b, RW)]);
    assert_eq!(pool::refs(a), 1, "moved, not released");
    m.discard(to, to + 2 * P);
    assert_eq!(m.resident_pages(), 0);
    drain(&mut m);
    assert_eq!((pool::refs(a), pool::refs(b)), (0, 0));
    release(m);
}

#[test]
fn file_pages_past_a_shrunk_end_are_dropped_and_found_unfilled() {
    let mut m = mm();
    m.add_vma(BASE, BASE + 4 * P, RW, None);
    let file = |bus| MapFile {
        path: alloc::sync::Arc::from(&b"/f"[..]),
        ino: 7,
        offset: 2 * P,
        bus_past_eof: bus,
        image: None,
    };
    m.name_file(BASE, BASE + 1, &file(true));
    for i in 0..4 {
        m.populate(BASE + i * P).unwrap();
    }
    drain(&mut m);
    assert_eq!(m.file_page_to_fill(BASE + P + 5), None, "present");
    // The file shrank to 3 pages + 1 byte: file pages 4 and 5 (the region's last two) go.
    m.discard_file_past(7, 4 * P);
    m.discard_file_past(8, 0);
    assert_eq!(m.resident_pages(), 2);
    assert_eq!(m.file_page_to_fill(BASE + 2 * P + 9), Some((7, 4 * P)));
    assert_eq!(
        m.file_page_to_fill(BASE + 4 * P),
        None,
        "outside the region"
    );
    drain(&mut m);
    // A program's segment is not a mapping that SIGBUS applies to.
    let seg = BASE + 16 * P;
    m.add_vma(seg, seg + P, RW, None);
    m.name_file(seg, seg + 1, &file(false));
    assert_eq!(m.file_page_to_fill(seg), None);
    release(m);
}

#[test]
fn destroying_a_map_returns_every_frame_once() {
    let mut m = mm();
    m.add_vma(BASE, BASE + 32 * P, RW, None);
    m.touch(BASE, true, false).unwrap();
    m.discard(BASE, BASE + P);
    let resident = m.resident_pages();
    let frames = m.take_frames();
    assert_eq!(frames.len(), resident + 1, "pages and the deferred one");
    let mut sorted = frames.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), frames.len());
    for f in frames {
        pool::put(f);
    }
    assert_eq!(m.resident_pages(), 0);
}

/// A write to one copy-on-write page of a writable private region makes the other
/// copy-on-write pages of its fault-around block private too (same bytes, one fault), and
/// leaves pages outside the block and read-only regions shared.
#[test]
fn a_copy_on_write_break_takes_its_block_along() {
    let mut parent = mm();
    let n = FAULT_AROUND + 2;
    parent.add_vma(BASE, BASE + n * P, RW, None);
    parent.add_vma(BASE + n * P, BASE + (n + 1) * P, prot::READ, None);
    let frames: Vec<u64> = (0..=n)
        .map(|i| {
            let gpa = parent.touch(BASE + i * P, i < n, false).unwrap();
            pool_mem::write(gpa, &i.to_le_bytes());
            gpa
        })
        .collect();
    drain(&mut parent);
    let mut child = Mm::new();
    parent.fork_into(&mut child, &[]);
    drain(&mut parent);
    drain(&mut child);
    // The child writes page 3: pages 0..FAULT_AROUND become private copies, with their
    // bytes; the pages of the next block and the read-only page stay shared.
    child.touch(BASE + 3 * P, true, false).unwrap();
    for i in 0..=n {
        let pte = child.pages[&(BASE + i * P)];
        let private = i < FAULT_AROUND;
        assert_eq!(!pte.cow, private, "page {i}");
        assert_eq!(pte.gpa != frames[i as usize], private, "page {i}");
        assert_eq!(&frame_bytes(pte.gpa)[..8], &i.to_le_bytes(), "page {i}");
    }
    drain(&mut child);
    release(child);
    // The parent is now the frames' last user: its write takes them back without copies.
    parent.touch(BASE, true, false).unwrap();
    for i in 0..FAULT_AROUND {
        assert_eq!(
            parent.pages[&(BASE + i * P)],
            Pte {
                gpa: frames[i as usize],
                cow: false,
                lazy: false
            }
        );
    }
    drain(&mut parent);
    release(parent);
}

/// Syscall-site patching's writes (`Mm::private_frame`): a read+execute page shared
/// copy-on-write after `fork` becomes the writer's own copy, mapped read+execute again,
/// while the other space keeps the original frame and bytes; the next call finds it
/// private; a shared region or an address in no region is refused; `fork` carries the next
/// cell.
#[test]
fn private_frame_breaks_sharing_for_one_space_only() {
    const RX: u32 = prot::READ | prot::EXEC;
    let mut parent = mm();
    parent.add_vma(BASE, BASE + 2 * P, RX, None);
    parent.add_vma(BASE + 4 * P, BASE + 5 * P, RW, Some(ShmRef::new_object()));
    let code = parent.touch(BASE, false, false).unwrap();
    pool_mem::write(code, b"\xb8\x27\0\0\0\x0f\x05");
    parent.touch(BASE + 4 * P, true, false).unwrap();
    parent.patch_next = 5;
    drain(&mut parent);
    let mut child = Mm::new();
    parent.fork_into(&mut child, &[]);
    assert_eq!(child.patch_next, 5);
    drain(&mut child);

    let own = child.private_frame(BASE + 3).unwrap();
    assert_ne!(own, code);
    assert_eq!(&frame_bytes(own)[..7], b"\xb8\x27\0\0\0\x0f\x05");
    assert_eq!(pages_mapped(&drain(&mut child)), [(BASE, own, RX)]);
    pool_mem::write(own, b"\xff\x24\x25");
    assert_eq!(
        &frame_bytes(code)[..3],
        b"\xb8\x27\0",
        "the parent's copy is untouched"
    );
    assert_eq!(child.private_frame(BASE), Some(own), "already private");

    assert_eq!(child.private_frame(BASE + 4 * P), None, "shared region");
    assert_eq!(child.private_frame(BASE + 3 * P), None, "no region");
    release(child);
    release(parent);
}

/// A snapshot resumed in a new host process (`Space::revive`): the map keeps every page and
/// region, the new sandbox maps nothing until the program faults, and then the fault maps
/// the page's block again from the same frames, with the same rights; batch numbers start
/// afresh and frames that waited for an unmap are handed back.
#[test]
fn forgetting_the_sandbox_keeps_the_map_and_maps_again_at_faults() {
    let mut m = mm();
    m.add_vma(BASE, BASE + 32 * P, RW, None);
    let frames: Vec<u64> = (0..32)
        .map(|k| m.touch(BASE + k * P, true, false).unwrap())
        .collect();
    drain(&mut m);
    assert!(m.take_batch().seq > 0);
    // An unmap queued but never applied: its frame waits.
    m.unmap(BASE + 31 * P, BASE + 32 * P);
    let freed = m.forget_sandbox();
    assert_eq!(freed, vec![frames[31]]);
    for f in freed {
        pool::put(f);
    }
    let b = m.take_batch();
    assert!(b.ops.is_empty(), "{:?}", b.ops);
    assert_eq!(b.seq, 0);
    assert_eq!(m.resident_pages(), 31);
    // A read fault at page 3 maps the block around it (the fork child's fault-around: here
    // the whole 31-page region, in one operation), from the same frames, writable as before.
    m.fault(BASE + 3 * P + 8, 0).unwrap();
    let ops = drain(&mut m);
    let mapped: u64 = ops
        .iter()
        .filter(|o| o.kind == op::MAP)
        .map(|o| o.len / P)
        .sum();
    assert_eq!(mapped, 31, "{ops:?}");
    for o in &ops {
        assert_eq!(o.prot & prot::WRITE, prot::WRITE, "{o:?}");
        let k = (o.addr - BASE) / P;
        assert_eq!(o.offset, frames[k as usize], "{o:?}");
    }
    for k in 0..31 {
        assert_eq!(m.frame_of(BASE + k * P), Some(frames[k as usize]));
    }
}

/// `fork` of an in-process space (whose patch table names the kernel sandbox's syscall
/// entry): the child, which runs in a user sandbox, gets the user stub's entry in its own
/// copy of the table's header, and the parent keeps its table; the child of a user-sandbox
/// parent keeps the shared copy as it is.
#[test]
fn an_in_process_parents_fork_child_gets_the_user_stubs_entry() {
    use pvmux_hypercalls::user::patch::{PATCH_TABLE_BASE, PATCH_TABLE_LEN, USER_PATCH_ENTRY};
    const RX: u32 = prot::READ | prot::EXEC;
    const INPROC_ENTRY: u64 = 0x1234_5678;
    let mut parent = mm();
    parent.add_vma(
        PATCH_TABLE_BASE,
        PATCH_TABLE_BASE + PATCH_TABLE_LEN,
        RX,
        None,
    );
    let table = parent.touch(PATCH_TABLE_BASE, false, false).unwrap();
    pool_mem::write(table, &INPROC_ENTRY.to_le_bytes());
    parent.patch_next = 2;
    drain(&mut parent);
    for (inproc, want) in [(false, INPROC_ENTRY), (true, USER_PATCH_ENTRY)] {
        let mut child = Mm::new();
        parent.fork_into(&mut child, &[]);
        drain(&mut child);
        crate::linux::patch::after_fork(inproc, &mut child);
        let f = child.frame_of(PATCH_TABLE_BASE).unwrap();
        assert_eq!(&frame_bytes(f)[..8], &want.to_le_bytes(), "inproc {inproc}");
        assert_eq!(
            f != table,
            inproc,
            "the child's own copy only when rewritten"
        );
        assert_eq!(&frame_bytes(table)[..8], &INPROC_ENTRY.to_le_bytes());
        drain(&mut child);
        release(child);
    }
    release(parent);
}
