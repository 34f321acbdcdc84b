//! x86-64 4-level page tables in guest memory: the domain builder's mapper and the host-side
//! walker used for backtraces.

use x86_64::structures::paging::PageTableFlags as F;

use crate::{GuestMemory, HostError};

/// Physical-address bits of a page-table entry (bits 12..52).
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const SIZE_4K: u64 = 1 << 12;
const SIZE_2M: u64 = 1 << 21;
const SIZE_1G: u64 = 1 << 30;

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

fn index(va: u64, level: u32) -> u64 {
    (va >> (12 + 9 * (level - 1))) & 0x1ff
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

    /// Returns the table for `va` at `level` (3 = PDPT, 2 = PD, 1 = PT), creating
    /// intermediate tables as needed.
    fn table_for(&mut self, va: u64, level: u32) -> Result<u64, HostError> {
        let mut table = self.root;
        for l in (level + 1..=4).rev() {
            let slot = table + index(va, l) * 8;
            let e = self.mem.read_u64(slot)?;
            if e & F::PRESENT.bits() != 0 {
                if e & F::HUGE_PAGE.bits() != 0 {
                    return Err(HostError::InvalidConfig(format!(
                        "mapping {va:#x} collides with a huge page"
                    )));
                }
                table = e & ADDR_MASK;
            } else {
                let t = self.alloc()?;
                self.mem
                    .write_u64(slot, t | (F::PRESENT | F::WRITABLE).bits())?;
                table = t;
            }
        }
        Ok(table)
    }

    /// Maps the 4 KiB page at `va` to `gpa`.
    pub fn map_4k(&mut self, va: u64, gpa: u64, flags: MapFlags) -> Result<(), HostError> {
        debug_assert!(va.is_multiple_of(SIZE_4K) && gpa.is_multiple_of(SIZE_4K));
        let pt = self.table_for(va, 1)?;
        self.mem
            .write_u64(pt + index(va, 1) * 8, gpa | flags.bits().bits())?;
        Ok(())
    }

    /// Maps the 2 MiB page at `va` to `gpa`.
    pub fn map_2m(&mut self, va: u64, gpa: u64, flags: MapFlags) -> Result<(), HostError> {
        debug_assert!(va.is_multiple_of(SIZE_2M) && gpa.is_multiple_of(SIZE_2M));
        let pd = self.table_for(va, 2)?;
        self.mem.write_u64(
            pd + index(va, 2) * 8,
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

/// Translates `gva` by walking the guest's page tables rooted at `root` (a gpa). Supports
/// 1 GiB, 2 MiB and 4 KiB pages. Returns `None` for anything odd: non-canonical address,
/// non-present entry, table or page outside guest memory, reserved bits.
pub fn translate(mem: &GuestMemory, root: u64, gva: u64) -> Option<Translation> {
    // Canonical 48-bit address.
    if ((gva as i64) << 16 >> 16) as u64 != gva || !root.is_multiple_of(SIZE_4K) {
        return None;
    }
    let mut table = root;
    let mut writable = true;
    let mut executable = true;
    for level in (1..=4u32).rev() {
        let e = mem.read_u64(table + index(gva, level) * 8).ok()?;
        if e & F::PRESENT.bits() == 0 {
            return None;
        }
        writable &= e & F::WRITABLE.bits() != 0;
        executable &= e & F::NO_EXECUTE.bits() == 0;
        let addr = e & ADDR_MASK;
        let huge = e & F::HUGE_PAGE.bits() != 0;
        let page_size = match (level, huge) {
            (1, _) => SIZE_4K,
            (2, true) => SIZE_2M,
            (3, true) => SIZE_1G,
            (4, true) => return None,
            _ => {
                table = addr;
                continue;
            }
        };
        if !addr.is_multiple_of(page_size) {
            return None; // reserved bits set in a huge entry
        }
        let gpa = addr | (gva & (page_size - 1));
        mem.check_range(addr, page_size).ok()?;
        return Some(Translation {
            gpa,
            writable,
            executable,
            page_size,
        });
    }
    None
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
        // PML4 entry pointing outside memory, huge PML4 entry, 1 GiB page beyond memory.
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
}
