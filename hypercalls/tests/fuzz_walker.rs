//! Property tests of the ABI's page-table walker (`pvmux_hypercalls::paging::walk`) over a
//! reader that records every entry it is asked for, on hostile tables (random words, entries
//! aimed at the tables themselves, at the end of memory and past it, huge bits anywhere):
//! * every walk ends after at most four reads, one per level, each 8-aligned;
//! * a leaf lies wholly inside memory, its page contains the address, its entry is the last
//!   entry read, and its rights are the AND of the rights read on the way;
//! * an error is `NotPresent` exactly when the last entry read has no present bit.
//!
//! `host-module/tests/fuzz_page_table.rs` compares the same walker with an independent
//! reference walk over real guest memory.

use std::cell::RefCell;

use proptest::prelude::*;
use pvmux_hypercalls::paging::{pte, walk, TableReader, WalkError};

const MEM: u64 = 4 << 20;
const PAGE: u64 = 4096;

/// Sparse guest memory: a few table pages of random entries, zero elsewhere.
struct Recorder {
    pages: Vec<(u64, Vec<u64>)>,
    reads: RefCell<Vec<(u64, u64)>>,
}

impl TableReader for Recorder {
    fn read_entry(&self, gpa: u64) -> Option<u64> {
        assert!(gpa.is_multiple_of(8), "unaligned read {gpa:#x}");
        if gpa + 8 > MEM {
            return None;
        }
        let v = self
            .pages
            .iter()
            .find(|(base, _)| (*base..*base + PAGE).contains(&gpa))
            .map_or(0, |(base, words)| words[((gpa - base) / 8) as usize]);
        self.reads.borrow_mut().push((gpa, v));
        Some(v)
    }

    fn mem_size(&self) -> u64 {
        MEM
    }
}

fn entry(bits: u64, pick: u64, tables: &[u64]) -> u64 {
    let addr = match pick % 6 {
        0..=2 => tables[(pick / 8) as usize % tables.len()],
        3 => MEM - PAGE,
        4 => MEM + (pick % 4) * PAGE,
        _ => bits,
    };
    (addr & pte::ADDR_MASK) | (bits & !pte::ADDR_MASK) | u64::from(!pick.is_multiple_of(5))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn walks_are_bounded_and_consistent(
        table_picks in proptest::collection::vec(0u64..(MEM / PAGE), 1..6),
        words in proptest::collection::vec((any::<u64>(), any::<u64>()), 64),
        queries in proptest::collection::vec((any::<u64>(), any::<u64>()), 32),
    ) {
        let tables: Vec<u64> = table_picks.iter().map(|p| p * PAGE).collect();
        let pages = tables
            .iter()
            .enumerate()
            .map(|(t, &base)| {
                let ws = (0..512)
                    .map(|i| {
                        let (bits, pick) = words[(t * 512 + i) % words.len()];
                        entry(bits.rotate_left(i as u32), pick.wrapping_add(i as u64), &tables)
                    })
                    .collect();
                (base, ws)
            })
            .collect();
        let mem = Recorder { pages, reads: RefCell::new(Vec::new()) };
        for (r, v) in queries {
            let root = tables[(r % tables.len() as u64) as usize];
            let va = v;
            mem.reads.borrow_mut().clear();
            let got = walk(&mem, root, va);
            let reads = mem.reads.borrow().clone();
            prop_assert!(reads.len() <= 4, "{} reads", reads.len());
            match got {
                Ok(leaf) => {
                    let size = leaf.size.bytes();
                    prop_assert!(leaf.frame_gpa + size <= MEM);
                    prop_assert!(leaf.frame_gpa.is_multiple_of(size));
                    prop_assert_eq!(leaf.page_va, va & !(size - 1));
                    prop_assert_eq!(leaf.gpa_of(va), leaf.frame_gpa + va % size);
                    let &(last_gpa, _) = reads.last().expect("a leaf was read");
                    prop_assert_eq!(leaf.entry_gpa, last_gpa);
                    let w = reads.iter().all(|&(_, e)| e & pte::WRITABLE != 0);
                    let x = reads.iter().all(|&(_, e)| e & pte::NO_EXECUTE == 0);
                    prop_assert_eq!((leaf.writable, leaf.executable), (w, x));
                }
                Err(WalkError::NotPresent) => {
                    let &(_, e) = reads.last().expect("an entry was read");
                    prop_assert_eq!(e & pte::PRESENT, 0);
                }
                Err(WalkError::OutsideMemory) => {
                    prop_assert!(reads.iter().all(|&(_, e)| e & pte::PRESENT != 0));
                }
                Err(WalkError::BadRoot) => prop_assert!(false, "aligned roots only"),
            }
        }
    }
}
