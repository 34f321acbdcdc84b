//! Walking a guest's x86-64 page tables, as docs/ABI.md §9 defines it: the one walker the
//! stub (shadow paging, through its physmap), the host (crash backtraces, through its mapping
//! of guest memory) and the guest kernel (through its direct map) all use.
//!
//! Rules (ABI §9):
//! * 4 levels; [`pte::PRESENT`], [`pte::WRITABLE`], [`pte::HUGE_PAGE`] (at the PDPT → 1 GiB
//!   and PD → 2 MiB levels only; ignored in a PML4 entry) and [`pte::NO_EXECUTE`] are
//!   honoured. Writable = `WRITABLE` at every level, executable = `NO_EXECUTE` clear at every
//!   level. User/supervisor, caching bits, global, PAT and the available bits are ignored;
//!   reserved bits are not checked (a large page's frame is its entry's address aligned down
//!   to the page size).
//! * A table or a leaf page that does not lie entirely inside guest memory is an error
//!   ([`WalkError::OutsideMemory`]: the guest sees #PF with `RESERVED | PRESENT`).
//! * Bits 48..63 of the virtual address are not looked at: callers that take arbitrary
//!   addresses check the canonical form themselves (the stub only walks window addresses).
//!
//! A walk reads at most four entries, one per level, each *once into a value* through a
//! [`TableReader`]: the tables live in memory the guest can change at any time, so no reader
//! may hand out a reference into it, and nothing here trusts an entry beyond the value read.
//! Every address computation is checked: hostile tables (self-references, addresses past the
//! end of memory or of the physical address space, huge bits anywhere) end in an error, never
//! in a panic or a loop.
//!
//! The entry bits are the architectural ones; the host and the pvmux kernel use the `x86_64`
//! crate's `PageTableFlags` for them, and a test checks both agree. (This crate itself does
//! not depend on `x86_64`: the stub shares it, and in a workspace-wide build the host's
//! `rustix` turns on `bitflags/std`, which a no_std binary with its own panic handler cannot
//! link.)

use crate::frame::pf;
use crate::PAGE_SIZE;

/// Page-table entry bits (x86-64; the same values as `x86_64::structures::paging::PageTableFlags`).
pub mod pte {
    /// The entry is present.
    pub const PRESENT: u64 = 1 << 0;
    /// Writes are allowed (at every level of a walk).
    pub const WRITABLE: u64 = 1 << 1;
    /// Set by the stub in a leaf it maps (ABI §9 Accessed/Dirty).
    pub const ACCESSED: u64 = 1 << 5;
    /// Set by the stub in a leaf it maps writable.
    pub const DIRTY: u64 = 1 << 6;
    /// A large page (PDPT: 1 GiB, PD: 2 MiB).
    pub const HUGE_PAGE: u64 = 1 << 7;
    /// Instruction fetches are not allowed.
    pub const NO_EXECUTE: u64 = 1 << 63;
    /// Physical-address bits of an entry (bits 12..52).
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
}

/// Bytes of one page-table entry.
const ENTRY_SIZE: u64 = 8;

/// A page-table level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Page table (4 KiB pages).
    Pt = 1,
    /// Page directory (2 MiB pages, or a PT).
    Pd = 2,
    /// Page-directory pointer table (1 GiB pages, or a PD).
    Pdpt = 3,
    /// The root.
    Pml4 = 4,
}

impl Level {
    /// The level below, `None` for a page table.
    pub const fn next_lower(self) -> Option<Self> {
        match self {
            Self::Pml4 => Some(Self::Pdpt),
            Self::Pdpt => Some(Self::Pd),
            Self::Pd => Some(Self::Pt),
            Self::Pt => None,
        }
    }

    /// Index of `va`'s entry in its table at this level.
    pub const fn index(self, va: u64) -> u64 {
        (va >> (12 + 9 * (self as u64 - 1))) & 0x1ff
    }
}

/// How a walker reads page-table entries from guest-physical memory.
pub trait TableReader {
    /// The 8-byte entry at guest-physical `gpa` (8-aligned), copied once into a value (a
    /// volatile or atomic read; never a reference into guest memory); `None` if it does not
    /// lie inside guest memory.
    fn read_entry(&self, gpa: u64) -> Option<u64>;

    /// Size of guest memory in bytes: a leaf page must end at or below it.
    fn mem_size(&self) -> u64;
}

/// Size of a leaf page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafSize {
    /// A 4 KiB page (a PT entry).
    Size4KiB,
    /// A 2 MiB page (a PD entry with `HUGE_PAGE`).
    Size2MiB,
    /// A 1 GiB page (a PDPT entry with `HUGE_PAGE`).
    Size1GiB,
}

impl LeafSize {
    /// Bytes of the page.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Size4KiB => PAGE_SIZE,
            Self::Size2MiB => 2 << 20,
            Self::Size1GiB => 1 << 30,
        }
    }

    /// The leaf size an entry at `level` maps, if it is a leaf (`huge`: its `HUGE_PAGE` bit).
    const fn of(level: Level, huge: bool) -> Option<Self> {
        match (level, huge) {
            (Level::Pt, _) => Some(Self::Size4KiB),
            (Level::Pd, true) => Some(Self::Size2MiB),
            (Level::Pdpt, true) => Some(Self::Size1GiB),
            _ => None,
        }
    }
}

/// A successful walk: the leaf mapping that contains the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Guest-virtual start of the (possibly large) page.
    pub page_va: u64,
    /// Guest-physical start of the page; the whole page lies inside guest memory.
    pub frame_gpa: u64,
    /// Page size.
    pub size: LeafSize,
    /// Writable at every level.
    pub writable: bool,
    /// Executable at every level.
    pub executable: bool,
    /// Guest-physical address of the leaf entry (for the Accessed/Dirty bits).
    pub entry_gpa: u64,
}

impl Leaf {
    /// Guest-physical address of `va`, which must lie in this leaf's page (the offset is taken
    /// modulo the page size).
    pub const fn gpa_of(&self, va: u64) -> u64 {
        self.frame_gpa + (va & (self.size.bytes() - 1))
    }

    /// Checks an access (#PF error-code bits `pf::WRITE`, `pf::FETCH`) against the leaf's
    /// permissions; on refusal, the #PF error code the guest sees.
    pub const fn permits(&self, access: u64) -> Result<(), u64> {
        let access = access & (pf::WRITE | pf::FETCH);
        if (access & pf::WRITE != 0 && !self.writable)
            || (access & pf::FETCH != 0 && !self.executable)
        {
            return Err(pf::PRESENT | access);
        }
        Ok(())
    }
}

/// Why a walk failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// The root is not page aligned.
    BadRoot,
    /// An entry on the way is not present.
    NotPresent,
    /// A table or the leaf page does not lie inside guest memory.
    OutsideMemory,
}

impl WalkError {
    /// The #PF error-code bits the guest sees for this failure (ABI §8.2, §9).
    pub const fn pf_bits(self) -> u64 {
        match self {
            Self::NotPresent => 0,
            Self::BadRoot | Self::OutsideMemory => pf::RESERVED | pf::PRESENT,
        }
    }
}

/// Walks the tables rooted at `root` (the PML4's guest-physical address) for `va`.
pub fn walk<R: TableReader + ?Sized>(mem: &R, root: u64, va: u64) -> Result<Leaf, WalkError> {
    if !root.is_multiple_of(PAGE_SIZE) {
        return Err(WalkError::BadRoot);
    }
    let mut table = root;
    let (mut writable, mut executable) = (true, true);
    let mut level = Level::Pml4;
    loop {
        // `table` is page aligned, so the slot stays inside its page (no overflow).
        let slot = table + level.index(va) * ENTRY_SIZE;
        let e = mem.read_entry(slot).ok_or(WalkError::OutsideMemory)?;
        if e & pte::PRESENT == 0 {
            return Err(WalkError::NotPresent);
        }
        writable &= e & pte::WRITABLE != 0;
        executable &= e & pte::NO_EXECUTE == 0;
        let addr = e & pte::ADDR_MASK;
        if let Some(size) = LeafSize::of(level, e & pte::HUGE_PAGE != 0) {
            let bytes = size.bytes();
            let frame_gpa = addr & !(bytes - 1);
            if frame_gpa
                .checked_add(bytes)
                .is_none_or(|end| end > mem.mem_size())
            {
                return Err(WalkError::OutsideMemory);
            }
            return Ok(Leaf {
                page_va: va & !(bytes - 1),
                frame_gpa,
                size,
                writable,
                executable,
                entry_gpa: slot,
            });
        }
        table = addr;
        level = match level.next_lower() {
            Some(l) => l,
            // A page-table entry is always a leaf (handled above).
            None => return Err(WalkError::NotPresent),
        };
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::pte::*;
    use super::*;
    use x86_64::structures::paging::PageTableFlags as F;

    /// Guest memory as a vector of words.
    struct Words(Vec<u64>);

    impl TableReader for Words {
        fn read_entry(&self, gpa: u64) -> Option<u64> {
            if !gpa.is_multiple_of(8) {
                return None;
            }
            self.0.get(usize::try_from(gpa / 8).ok()?).copied()
        }
        fn mem_size(&self) -> u64 {
            self.0.len() as u64 * 8
        }
    }

    const P: u64 = PRESENT;
    const W: u64 = WRITABLE;
    const PS: u64 = HUGE_PAGE;
    const NX: u64 = NO_EXECUTE;

    fn mem(mib: u64) -> Words {
        Words(std::vec![0; (mib << 20) as usize / 8])
    }

    fn set(m: &mut Words, gpa: u64, v: u64) {
        m.0[gpa as usize / 8] = v;
    }

    fn va(idx: [u64; 4], off: u64) -> u64 {
        (idx[0] << 39) | (idx[1] << 30) | (idx[2] << 21) | (idx[3] << 12) | off
    }

    /// The ABI's entry bits and indices are the architectural ones the `x86_64` crate (used by
    /// the host and the pvmux kernel) has.
    #[test]
    fn bits_and_indices_match_the_x86_64_crate() {
        use x86_64::structures::paging::page_table::PageTableLevel as L;
        assert_eq!(PRESENT, F::PRESENT.bits());
        assert_eq!(WRITABLE, F::WRITABLE.bits());
        assert_eq!(ACCESSED, F::ACCESSED.bits());
        assert_eq!(DIRTY, F::DIRTY.bits());
        assert_eq!(HUGE_PAGE, F::HUGE_PAGE.bits());
        assert_eq!(NO_EXECUTE, F::NO_EXECUTE.bits());
        // Physical addresses have 52 bits; entries keep bits 12..52 of them.
        assert_eq!(
            x86_64::PhysAddr::new_truncate(u64::MAX).as_u64() & !0xfff,
            ADDR_MASK
        );
        for v in [
            0u64,
            0x1234_5678_9abc,
            0x7fff_ffff_f000,
            0x0000_1200_0020_0000,
        ] {
            let va = x86_64::VirtAddr::new_truncate(v);
            for (ours, theirs) in [
                (Level::Pt, L::One),
                (Level::Pd, L::Two),
                (Level::Pdpt, L::Three),
                (Level::Pml4, L::Four),
            ] {
                assert_eq!(
                    ours.index(v),
                    u64::from(u16::from(va.page_table_index(theirs))),
                    "{v:#x} {ours:?}"
                );
            }
        }
        assert_eq!(LeafSize::Size2MiB.bytes(), 1 << 21);
    }

    #[test]
    fn four_levels_and_large_pages() {
        let mut m = mem(8);
        let root = 0x1000;
        set(&mut m, 0x1000 + 2 * 8, 0x2000 | P | W);
        set(&mut m, 0x2000 + 3 * 8, 0x3000 | P | W);
        set(&mut m, 0x3000 + 4 * 8, 0x4000 | P);
        set(&mut m, 0x4000 + 5 * 8, 0x7000 | P | W | NX);
        set(&mut m, 0x3000 + 6 * 8, 0x20_0000 | P | W | PS);
        // A 2 MiB leaf with PAT (bit 12) set: aligned down (ABI §9).
        set(&mut m, 0x3000 + 7 * 8, 0x40_0000 | 0x1000 | P | PS);

        let l = walk(&m, root, va([2, 3, 4, 5], 0x123)).unwrap();
        assert_eq!(l.frame_gpa, 0x7000);
        assert_eq!(l.size, LeafSize::Size4KiB);
        assert!(!l.writable && !l.executable);
        assert_eq!(l.entry_gpa, 0x4000 + 5 * 8);
        assert_eq!(l.gpa_of(va([2, 3, 4, 5], 0x123)), 0x7123);
        assert_eq!(l.permits(pf::WRITE), Err(pf::PRESENT | pf::WRITE));
        assert_eq!(l.permits(pf::FETCH), Err(pf::PRESENT | pf::FETCH));
        assert_eq!(l.permits(0), Ok(()));

        let l = walk(&m, root, va([2, 3, 6, 17], 0x10)).unwrap();
        assert_eq!(l.size, LeafSize::Size2MiB);
        assert_eq!(l.page_va, va([2, 3, 6, 0], 0));
        assert_eq!(
            l.gpa_of(va([2, 3, 6, 17], 0x10)),
            0x20_0000 + 17 * 4096 + 0x10
        );
        assert!(l.writable && l.executable);
        assert_eq!(l.permits(pf::WRITE | pf::FETCH), Ok(()));

        let l = walk(&m, root, va([2, 3, 7, 1], 0)).unwrap();
        assert_eq!(l.frame_gpa, 0x40_0000);

        assert_eq!(
            walk(&m, root, va([2, 3, 4, 6], 0)),
            Err(WalkError::NotPresent)
        );
        assert_eq!(
            walk(&m, root, va([1, 0, 0, 0], 0)),
            Err(WalkError::NotPresent)
        );
        assert_eq!(
            walk(&m, 0x1008, va([2, 3, 4, 5], 0)),
            Err(WalkError::BadRoot)
        );
        // Bits 48..63 are not looked at.
        let high = walk(&m, root, va([2, 3, 4, 5], 0x123) | 0xffff << 48).unwrap();
        assert_eq!(high.frame_gpa, 0x7000);
    }

    #[test]
    fn outside_memory_and_pml4_huge_bit() {
        let mut m = mem(4);
        // A PML4 entry with the huge bit is a table pointer (PS ignored at level 4).
        set(&mut m, 0, 0x1000 | P | W | PS);
        // 1 GiB page at 0: does not fit in 4 MiB.
        set(&mut m, 0x1000, P | W | PS);
        // A PD beyond memory.
        set(&mut m, 0x1000 + 8, (4 << 20) | P | W);
        // A PD inside, with a 2 MiB page that ends exactly at the end and one past it.
        set(&mut m, 0x1000 + 16, 0x2000 | P | W);
        set(&mut m, 0x2000, (2 << 20) | P | PS);
        set(&mut m, 0x2000 + 8, (4 << 20) | P | PS);
        // The largest physical address.
        set(&mut m, 0x2000 + 16, 0x3000 | P);
        set(&mut m, 0x3000, ADDR_MASK | P);
        assert_eq!(
            walk(&m, 0, va([0, 0, 0, 0], 0)),
            Err(WalkError::OutsideMemory)
        );
        assert_eq!(
            walk(&m, 0, va([0, 1, 0, 0], 0)),
            Err(WalkError::OutsideMemory)
        );
        assert_eq!(walk(&m, 0, va([0, 2, 0, 3], 0)).unwrap().frame_gpa, 2 << 20);
        assert_eq!(
            walk(&m, 0, va([0, 2, 1, 0], 0)),
            Err(WalkError::OutsideMemory)
        );
        assert_eq!(
            walk(&m, 0, va([0, 2, 2, 0], 0)),
            Err(WalkError::OutsideMemory)
        );
        // A root at the top of the address space cannot overflow.
        assert_eq!(walk(&m, !0xfff, u64::MAX), Err(WalkError::OutsideMemory));
        assert_eq!(
            WalkError::OutsideMemory.pf_bits(),
            pf::RESERVED | pf::PRESENT
        );
        assert_eq!(WalkError::NotPresent.pf_bits(), 0);
    }

    #[test]
    fn self_map_ends_after_four_reads() {
        let mut m = mem(1);
        for i in 0..512 {
            set(&mut m, i * 8, P | W);
        }
        let l = walk(&m, 0, va([5, 6, 7, 8], 0x9)).unwrap();
        assert_eq!(l.frame_gpa, 0);
        assert_eq!(l.size, LeafSize::Size4KiB);
    }
}
