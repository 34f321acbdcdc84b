//! x86-64 4-level page tables in guest memory: the domain builder's mapper, and the host's
//! reads through the guest's tables (crash backtraces) with the ABI's one walker
//! (`pvmux_hypercalls::paging`, the same the stub's shadow paging uses), reading guest memory
//! through the host's bounds-checked copies.

use pvmux_hypercalls::paging::{self, pte, Level, TableReader};
use x86_64::structures::paging::{PageSize, PageTableFlags as F, Size1GiB, Size2MiB, Size4KiB};
use x86_64::VirtAddr;

use crate::{GuestMemory, HostError};

const SIZE_4K: u64 = Size4KiB::SIZE;
const SIZE_2M: u64 = Size2MiB::SIZE;
const SIZE_1G: u64 = Size1GiB::SIZE;

/// Flags of a leaf mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapFlags {
    /// Writable.
    pub write: bool,
    /// Executable (otherwise NO_EXECUTE).
    pub exec: bool,
}

impl MapFlags {
    /// Read-only, not executable.
    pub const RO: Self = Self {
        write: false,
        exec: false,
    };
    /// Read-write, not executable.
    pub const RW: Self = Self {
        write: true,
        exec: false,
    };

    fn bits(self) -> F {
        let mut f = F::PRESENT;
        if self.write {
            f |= F::WRITABLE;
        }
        if !self.exec {
            f |= F::NO_EXECUTE;
        }
        f
    }
}

/// Byte offset of `va`'s entry in its table at `level`.
fn slot_offset(va: u64, level: Level) -> u64 {
    level.index(va) * 8
}

/// Builds page tables in guest memory, taking table pages from a fixed gpa pool.
#[derive(Debug)]
pub struct PageTableBuilder<'m> {
    mem: &'m GuestMemory,
    root: u64,
    next: u64,
    end: u64,
}

impl<'m> PageTableBuilder<'m> {
    /// Starts a builder whose tables come from `[pool_start, pool_end)` (page aligned,
    /// zeroed); the first page becomes the PML4.
    pub fn new(mem: &'m GuestMemory, pool_start: u64, pool_end: u64) -> Result<Self, HostError> {
        let mut b = Self {
            mem,
            root: 0,
            next: pool_start,
            end: pool_end,
        };
        b.root = b.alloc()?;
        Ok(b)
    }

    /// Guest-physical address of the PML4.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// First pool page not used.
    pub fn pool_used_end(&self) -> u64 {
        self.next
    }

    fn alloc(&mut self) -> Result<u64, HostError> {
        if self.next.checked_add(SIZE_4K).is_none_or(|e| e > self.end) {
            return Err(HostError::InvalidConfig("page-table pool exhausted".into()));
        }
        let p = self.next;
        self.mem.zero(p, SIZE_4K)?;
        self.next += SIZE_4K;
        Ok(p)
    }

    /// Returns the table for `va` at `level` (PDPT, PD or PT), creating intermediate
    /// tables as needed.
    fn table_for(&mut self, va: u64, level: Level) -> Result<u64, HostError> {
        let mut table = self.root;
        let mut l = Level::Pml4;
        while l != level {
            let slot = table + slot_offset(va, l);
            let e = self.mem.read_u64(slot)?;
            if e & F::PRESENT.bits() != 0 {
                if e & F::HUGE_PAGE.bits() != 0 {
                    return Err(HostError::InvalidConfig(format!(
                        "mapping {va:#x} collides with a huge page"
                    )));
                }
                table = e & pte::ADDR_MASK;
            } else {
                let t = self.alloc()?;
                self.mem
                    .write_u64(slot, t | (F::PRESENT | F::WRITABLE).bits())?;
                table = t;
            }
            l = match l.next_lower() {
                Some(next) => next,
                None => unreachable!("a page table is never above another level"),
            };
        }
        Ok(table)
    }

    /// Maps the 4 KiB page at `va` to `gpa`.
    pub fn map_4k(&mut self, va: u64, gpa: u64, flags: MapFlags) -> Result<(), HostError> {
        debug_assert!(va.is_multiple_of(SIZE_4K) && gpa.is_multiple_of(SIZE_4K));
        let pt = self.table_for(va, Level::Pt)?;
        self.mem
            .write_u64(pt + slot_offset(va, Level::Pt), gpa | flags.bits().bits())?;
        Ok(())
    }

    /// Maps the 2 MiB page at `va` to `gpa`.
    pub fn map_2m(&mut self, va: u64, gpa: u64, flags: MapFlags) -> Result<(), HostError> {
        debug_assert!(va.is_multiple_of(SIZE_2M) && gpa.is_multiple_of(SIZE_2M));
        let pd = self.table_for(va, Level::Pd)?;
        self.mem.write_u64(
            pd + slot_offset(va, Level::Pd),
            gpa | (flags.bits() | F::HUGE_PAGE).bits(),
        )?;
        Ok(())
    }
}

/// Page-table pages needed to map `len` bytes at one place with pages of `page` bytes,
/// an upper bound (the range may straddle table boundaries).
pub fn tables_needed(len: u64, leaf_page: u64) -> u64 {
    let span = |unit: u64| len.div_ceil(unit) + 1;
    match leaf_page {
        SIZE_4K => span(SIZE_2M) + span(SIZE_1G) + span(512 * SIZE_1G),
        _ => span(SIZE_1G) + span(512 * SIZE_1G),
    }
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Guest-physical address.
    pub gpa: u64,
    /// Writable at every level.
    pub writable: bool,
    /// Executable at every level.
    pub executable: bool,
    /// Size of the leaf page.
    pub page_size: u64,
}

/// The host reads page-table entries with its bounds-checked copies out of the mapping.
impl TableReader for GuestMemory {
    fn read_entry(&self, gpa: u64) -> Option<u64> {
        self.read_u64(gpa).ok()
    }

    fn mem_size(&self) -> u64 {
        self.size()
    }
}

/// Translates `gva` by walking the guest's page tables rooted at `root` (a gpa), as the stub
/// does (ABI §9: 1 GiB, 2 MiB and 4 KiB pages). Returns `None` for anything the stub would
/// not map (and a non-canonical address): a non-present entry, an unaligned root, a table
/// or page outside guest memory. The tables are the guest's: every entry is copied once and
/// nothing else is trusted (a walk reads at most four entries).
pub fn translate(mem: &GuestMemory, root: u64, gva: u64) -> Option<Translation> {
    VirtAddr::try_new(gva).ok()?;
    let leaf = paging::walk(mem, root, gva).ok()?;
    Some(Translation {
        gpa: leaf.gpa_of(gva),
        writable: leaf.writable,
        executable: leaf.executable,
        page_size: leaf.size.bytes(),
    })
}

/// Reads an aligned `u64` at guest-virtual `gva`.
pub fn read_virt_u64(mem: &GuestMemory, root: u64, gva: u64) -> Option<u64> {
    if !gva.is_multiple_of(8) {
        return None;
    }
    let t = translate(mem, root, gva)?;
    mem.read_u64(t.gpa).ok()
}

/// Reads `buf.len()` bytes at guest-virtual `gva`, page by page.
pub fn read_virt(mem: &GuestMemory, root: u64, gva: u64, buf: &mut [u8]) -> Option<()> {
    let mut done = 0usize;
    while done < buf.len() {
        let va = gva.checked_add(done as u64)?;
        let t = translate(mem, root, va)?;
        let in_page = (SIZE_4K - (va % SIZE_4K)) as usize;
        let n = in_page.min(buf.len() - done);
        mem.read(t.gpa, &mut buf[done..done + n]).ok()?;
        done += n;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        let mut b = PageTableBuilder::new(&mem, 0x1000, 0x40000).unwrap();
        let va = 0x0000_1200_0020_0000u64;
        b.map_4k(
            va,
            0x0080_0000,
            MapFlags {
                write: false,
                exec: true,
            },
        )
        .unwrap();
        b.map_4k(va + 0x1000, 0x0080_3000, MapFlags::RW).unwrap();
        b.map_2m(0x0000_1000_0000_0000, 0, MapFlags::RW).unwrap();
        b.map_2m(0x0000_1000_0020_0000, 0x20_0000, MapFlags::RW)
            .unwrap();
        let root = b.root();

        let t = translate(&mem, root, va + 0x123).unwrap();
        assert_eq!(t.gpa, 0x0080_0123);
        assert!(!t.writable && t.executable && t.page_size == 4096);
        let t = translate(&mem, root, va + 0x1ff8).unwrap();
        assert_eq!(t.gpa, 0x0080_3ff8);
        assert!(t.writable && !t.executable);
        assert!(translate(&mem, root, va + 0x2000).is_none());
        let t = translate(&mem, root, 0x0000_1000_0031_2345).unwrap();
        assert_eq!(t.gpa, 0x31_2345);
        assert_eq!(t.page_size, 2 << 20);
        assert!(translate(&mem, root, 0x0000_1000_0040_0000).is_none());
        assert!(translate(&mem, root, 0xffff_0000_0000_0000).is_none());
        assert!(translate(&mem, root + 1, va).is_none());
        assert!(translate(&mem, !0xfff, va).is_none());

        mem.write_u64(0x0080_0010, 0xdead_beef).unwrap();
        assert_eq!(read_virt_u64(&mem, root, va + 0x10), Some(0xdead_beef));
        assert_eq!(read_virt_u64(&mem, root, va + 0x11), None);
        let mut buf = [0u8; 16];
        assert!(read_virt(&mem, root, va + 0xff8, &mut buf).is_some());
        assert!(read_virt(&mem, root, va + 0x1ff8, &mut buf).is_none());
    }

    #[test]
    fn walker_survives_garbage() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        // PML4 entry pointing outside memory, a PML4 entry with the huge bit (ignored: its
        // PDPT is empty), 1 GiB pages beyond memory.
        mem.write_u64(0, 0x7fff_ffff_f000 | 1).unwrap();
        mem.write_u64(8, 0x1000 | 0x81).unwrap();
        mem.write_u64(16, 0x2000 | 1).unwrap();
        mem.write_u64(0x2000, 0x4000_0000 | 0x81).unwrap();
        mem.write_u64(0x2008, 0x1234_5000 | 0x81).unwrap();
        for va in [0u64, 1 << 39, 2 << 39, (2 << 39) + (1 << 30), u64::MAX] {
            assert!(translate(&mem, 0, va).is_none(), "{va:#x}");
        }
        // A self-referencing PML4 stays bounded (4 levels at most).
        mem.write_u64(24 * 8, 3).unwrap();
        let _ = translate(&mem, 0, 24 << 39);
    }

    /// The host reads through the tables exactly as the stub maps them (ABI §9): the huge bit
    /// of a PML4 entry is ignored, and a large page's frame is its address aligned down (PAT
    /// and reserved low bits are not checked).
    #[test]
    fn walker_follows_the_abi_like_the_stub() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        let (p, w, ps) = (F::PRESENT.bits(), F::WRITABLE.bits(), F::HUGE_PAGE.bits());
        mem.write_u64(0, 0x1000 | p | w | ps).unwrap();
        mem.write_u64(0x1000, 0x2000 | p | w).unwrap();
        mem.write_u64(0x2000 + 8, 0x40_0000 | 0x1000 | p | ps)
            .unwrap();
        let t = translate(&mem, 0, (1 << 21) + 0x1234).unwrap();
        assert_eq!(t.gpa, 0x40_1234);
        assert_eq!(t.page_size, SIZE_2M);
        assert!(!t.writable && t.executable);
    }
}
