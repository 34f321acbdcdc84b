//! Property tests of the host's reads through guest page tables (`page_table::translate`,
//! `read_virt`, `read_virt_u64`), which backtraces use on memory the guest fully controls.
//! `translate` is the ABI's one walker (`pvmux_hypercalls::paging::walk`, also the stub's and
//! the kernel's) over the host's bounds-checked reads of guest memory.
//!
//! Guest memory gets a handful of pages of random page-table entries, biased so that walks go
//! deep: entries point at the other random table pages, at the last pages of memory, just
//! past its end, far outside it, with random huge-page, no-execute and reserved bits. Roots and
//! addresses are random or aimed at those entries. For every walk:
//! * nothing panics and every walk ends (at most four levels, one walk per 4 KiB read);
//! * a translation's gpa is below the memory size, and its whole leaf page is inside memory;
//! * it agrees with an independent reference walker written from the documented rules;
//! * `read_virt`/`read_virt_u64` return exactly the bytes at the translated addresses, and
//!   fail exactly when some page of the range does not translate.
//!
//! Case counts are bounded (`PROPTEST_CASES` raises them).

use proptest::prelude::*;
use pvmux_host::page_table::{read_virt, read_virt_u64, translate, Translation};
use pvmux_host::GuestMemory;

const MEM: u64 = 16 << 20;
const PAGE: u64 = 4096;

/// SplitMix64: a small deterministic generator, so a case is reproducible from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random page-table entry aimed at one of `tables` (or at trouble).
fn entry(rng: &mut Rng, tables: &[u64]) -> u64 {
    let addr = match rng.below(10) {
        0..=4 => tables[rng.below(tables.len() as u64) as usize],
        5 => rng.below(MEM / PAGE) * PAGE,
        6 => [MEM - PAGE, MEM - (2 << 20), MEM, MEM + PAGE, 0][rng.below(5) as usize],
        7 => rng.below(MEM / (2 << 20)) * (2 << 20) + rng.below(2) * PAGE,
        8 => rng.next() & 0x000f_ffff_ffff_f000,
        _ => rng.next(),
    };
    let mut flags = rng.next() & 0xfff0_0000_0000_0fff;
    if rng.below(8) != 0 {
        flags |= 1; // present
    }
    if rng.below(3) != 0 {
        flags &= !0x80; // mostly not huge
    }
    if rng.below(2) != 0 {
        flags &= !0x7ff0_0000_0000_0000; // mostly no high ignored bits
    }
    (addr & 0x000f_ffff_ffff_f000) | flags | if rng.below(16) == 0 { addr } else { 0 }
}

/// Guest memory with `n` random table pages; returns the memory and the table gpas.
fn random_tables(seed: u64, n: usize) -> (GuestMemory, Vec<u64>) {
    let mem = GuestMemory::new(MEM).expect("guest memory");
    let mut rng = Rng(seed);
    let mut tables: Vec<u64> = (0..n)
        .map(|i| match i {
            0 => 0,
            1 => MEM - PAGE,
            _ => rng.below(MEM / PAGE) * PAGE,
        })
        .collect();
    tables.dedup();
    for &t in &tables {
        let mut page = vec![0u8; PAGE as usize];
        for slot in page.chunks_exact_mut(8) {
            let e = if rng.below(4) == 0 {
                0
            } else {
                entry(&mut rng, &tables)
            };
            slot.copy_from_slice(&e.to_le_bytes());
        }
        mem.write(t, &page).expect("in bounds");
    }
    (mem, tables)
}

/// The walk as docs/ABI.md §9 describes it (the stub's shadow paging), written independently.
fn reference(mem: &GuestMemory, root: u64, gva: u64) -> Option<Translation> {
    let canonical = if gva >> 47 == 0 {
        true
    } else {
        gva >> 47 == (1 << 17) - 1
    };
    if !canonical || !root.is_multiple_of(PAGE) {
        return None;
    }
    let (mut table, mut w, mut x) = (root, true, true);
    for level in [4u32, 3, 2, 1] {
        let idx = (gva >> (12 + 9 * (level - 1))) & 511;
        let slot = table.checked_add(idx * 8)?;
        if slot.checked_add(8)? > mem.size() {
            return None;
        }
        let e = mem.read_u64(slot).ok()?;
        if e & 1 == 0 {
            return None;
        }
        w &= e & 2 != 0;
        x &= e >> 63 == 0;
        let addr = e & 0x000f_ffff_ffff_f000;
        // The huge bit counts at the PDPT and PD levels only (ignored in a PML4 entry).
        let size = match (level, e & 0x80 != 0) {
            (1, _) => PAGE,
            (2, true) => 2 << 20,
            (3, true) => 1 << 30,
            _ => {
                table = addr;
                continue;
            }
        };
        // A large page's frame: the address aligned down (PAT, reserved bits not checked).
        let frame = addr - addr % size;
        if frame + size > mem.size() {
            return None;
        }
        return Some(Translation {
            gpa: frame + (gva % size),
            writable: w,
            executable: x,
            page_size: size,
        });
    }
    None
}

/// A gva whose indices at each level are `idx` (sign-extended), plus an offset.
fn gva_from(idx: [u64; 4], off: u64) -> u64 {
    let va = (idx[0] << 39) | (idx[1] << 30) | (idx[2] << 21) | (idx[3] << 12) | (off & 0xfff);
    ((va as i64) << 16 >> 16) as u64
}

fn check_walk(mem: &GuestMemory, root: u64, gva: u64) -> Option<Translation> {
    let t = translate(mem, root, gva);
    assert_eq!(t, reference(mem, root, gva), "root {root:#x} gva {gva:#x}");
    if let Some(t) = t {
        let ps = t.page_size;
        assert!([PAGE, 2 << 20, 1 << 30].contains(&ps));
        assert!(t.gpa < mem.size(), "{t:?}");
        assert_eq!(t.gpa % ps, gva % ps);
        assert!(t.gpa - t.gpa % ps + ps <= mem.size(), "{t:?}");
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random tables, random roots, random and aimed addresses: the walker is total, stays in
    /// guest memory, agrees with the reference walk, and the virtual reads read what it says.
    #[test]
    fn walker_on_random_tables(
        seed in any::<u64>(),
        nr_tables in 1usize..10,
        picks in proptest::collection::vec((any::<u64>(), any::<[u16; 4]>(), any::<u64>()), 48),
    ) {
        let (mem, tables) = random_tables(seed, nr_tables);
        for (i, &(r, idx, raw)) in picks.iter().enumerate() {
            let root = match r % 8 {
                0 => r,
                1 => r & 0x000f_ffff_ffff_f000,
                2 => tables[(r >> 8) as usize % tables.len()] + 8,
                _ => tables[(r >> 8) as usize % tables.len()],
            };
            // Aim at present entries: pick indices from the tables' contents half the time.
            let gva = match i % 3 {
                0 => raw,
                1 => gva_from(idx.map(|v| u64::from(v) & 511), raw),
                _ => {
                    let mut ix = [0u64; 4];
                    let mut t = root;
                    for (level, slot) in ix.iter_mut().enumerate() {
                        // Prefer a present entry of the current table, if it is in memory.
                        let pick = u64::from(idx[level]) & 511;
                        *slot = (0..512u64)
                            .map(|k| (pick + k) & 511)
                            .find(|&k| mem.read_u64(t.wrapping_add(k * 8)).is_ok_and(|e| e & 1 != 0))
                            .unwrap_or(pick);
                        t = mem.read_u64(t.wrapping_add(*slot * 8)).map_or(u64::MAX, |e| e & 0x000f_ffff_ffff_f000);
                    }
                    gva_from(ix, raw)
                }
            };
            check_walk(&mem, root, gva);
            check_walk(&mem, root, gva ^ 0xfff);

            let u = read_virt_u64(&mem, root, gva);
            match translate(&mem, root, gva) {
                Some(t) if gva % 8 == 0 => prop_assert_eq!(u, mem.read_u64(t.gpa).ok()),
                _ => prop_assert_eq!(u, None),
            }

            let len = (raw >> 40) as usize % (3 * PAGE as usize);
            let mut buf = vec![0u8; len];
            let got = read_virt(&mem, root, gva, &mut buf);
            // Expected: every byte translates (4 KiB steps), and then equals memory.
            let mut expect = Some(());
            let mut want = vec![0u8; len];
            let mut done = 0usize;
            while done < len {
                let Some(va) = gva.checked_add(done as u64) else { expect = None; break };
                let Some(t) = translate(&mem, root, va) else { expect = None; break };
                let n = ((PAGE - va % PAGE) as usize).min(len - done);
                mem.read(t.gpa, &mut want[done..done + n]).expect("translation is in memory");
                done += n;
            }
            prop_assert_eq!(got, expect);
            if got.is_some() {
                prop_assert_eq!(&buf, &want);
            }
        }
    }

    /// Arbitrary 64-bit roots and addresses over memory whose first and last pages are random
    /// words: no panic, and any translation stays inside memory.
    #[test]
    fn walker_on_random_words(
        seed in any::<u64>(),
        queries in proptest::collection::vec((any::<u64>(), any::<u64>()), 64),
    ) {
        let mem = GuestMemory::new(MEM).expect("guest memory");
        let mut rng = Rng(seed);
        for base in [0, MEM - 2 * PAGE] {
            let words: Vec<u8> = (0..2 * PAGE / 8).flat_map(|_| rng.next().to_le_bytes()).collect();
            mem.write(base, &words).expect("in bounds");
        }
        for (root, gva) in queries {
            for root in [root, root & !0xfff, (root % MEM) & !0xfff, MEM - PAGE, 0] {
                check_walk(&mem, root, gva);
                let mut buf = [0u8; 16];
                let _ = read_virt(&mem, root, gva, &mut buf);
                let _ = read_virt_u64(&mem, root, gva & !7);
            }
        }
    }
}

/// Regression-style edge cases: a root at the last page, slot reads at the end of memory, a
/// self-referencing table (walks are four levels at most), and reads wrapping around the top
/// of the address space.
#[test]
fn walker_edges() {
    let mem = GuestMemory::new(MEM).expect("guest memory");
    let last = MEM - PAGE;
    // Every entry of the last page points at itself: a 4-level self map.
    let page: Vec<u8> = (0..512).flat_map(|_| (last | 3).to_le_bytes()).collect();
    mem.write(last, &page).unwrap();
    for gva in [0, u64::MAX, 0x7fff_ffff_f000, 0xffff_8000_0000_0000] {
        let t = check_walk(&mem, last, gva);
        if let Some(t) = t {
            assert_eq!(t.gpa, last + gva % PAGE);
        }
    }
    // Reads that would wrap past u64::MAX stop cleanly.
    let mut buf = [0u8; 32];
    assert_eq!(read_virt(&mem, last, u64::MAX - 7, &mut buf), None);
    assert_eq!(read_virt(&mem, last, u64::MAX - 7, &mut buf[..8]), Some(()));
    assert_eq!(read_virt_u64(&mem, last, u64::MAX - 7), Some(last | 3));
    // Roots beyond memory, unaligned, or at the very top.
    for root in [MEM, MEM + PAGE, !0xfff, 1, last + 8] {
        assert_eq!(translate(&mem, root, 0), None, "{root:#x}");
    }
    // An empty read always succeeds.
    assert_eq!(read_virt(&mem, u64::MAX, u64::MAX, &mut []), Some(()));
}
