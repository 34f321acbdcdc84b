//! Property tests of the kernel image parser and the domain builder on the real embedded
//! kernel (`pvmux::images::KERNEL`): its truncations, random mutations of it (biased to the ELF
//! header, program headers, dynamic table, relocations, `.pvmux_abi`, symbol and string tables
//! and section headers) and arbitrary bytes.
//!
//! Properties: `KernelImage::parse` never panics; when it accepts an image, symbolisation of
//! any address works, and the domain builder at a random kernel base in 16 MiB of guest memory
//! either errors or builds a layout whose every page-table entry points inside guest memory,
//! with the entry point (executable, inside the kernel's physical range) and the stack
//! (writable, not executable) translating inside it through the host walker.
//!
//! This lives in `tools/` because the kernel is embedded by this crate (`pvmux-host` cannot
//! depend on it). Case counts are bounded (`PROPTEST_CASES` raises them).

use proptest::prelude::*;
use pvmux::images::KERNEL;
use pvmux_host::clock::ClockParams;
use pvmux_host::domain_builder::{build, BuildParams, DomainLayout};
use pvmux_host::page_table::translate;
use pvmux_host::{GuestMemory, KernelImage};
use pvmux_hypercalls::layout::{KERNEL_REGION_BASE, KERNEL_REGION_SIZE};

const MEM: u64 = 16 << 20;
const PAGE: u64 = 4096;
const ALIGN: u64 = 2 << 20;

fn u16_at(b: &[u8], o: usize) -> usize {
    usize::from(u16::from_le_bytes(b[o..o + 2].try_into().unwrap()))
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> usize {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize
}

/// File ranges of the real kernel worth mutating, found from its own headers.
fn regions() -> Vec<(usize, usize)> {
    let k = KERNEL;
    let (phoff, phnum) = (u64_at(k, 0x20), u16_at(k, 0x38));
    let (shoff, shnum, shstrndx) = (u64_at(k, 0x28), u16_at(k, 0x3c), u16_at(k, 0x3e));
    let mut r = vec![
        (0, 64),
        (phoff, phoff + 56 * phnum),
        (shoff, shoff + 64 * shnum),
    ];
    for i in 0..phnum {
        let ph = phoff + 56 * i;
        if u32_at(k, ph) == 2 {
            // PT_DYNAMIC
            let off = u64_at(k, ph + 8);
            r.push((off, off + u64_at(k, ph + 32)));
        }
    }
    let strs = u64_at(k, shoff + 64 * shstrndx + 24);
    for i in 0..shnum {
        let sh = shoff + 64 * i;
        let name_off = strs + u32_at(k, sh) as usize;
        let name: Vec<u8> = k[name_off..]
            .iter()
            .take_while(|&&c| c != 0)
            .copied()
            .collect();
        let (off, size) = (u64_at(k, sh + 24), u64_at(k, sh + 32));
        let interesting = [
            &b".pvmux_abi"[..],
            b".rela.dyn",
            b".relr.dyn",
            b".dynamic",
            b".symtab",
            b".strtab",
            b".shstrtab",
        ];
        if interesting.contains(&&name[..]) && size > 0 {
            // Big tables: their first and last bytes are the interesting ones.
            r.push((off, off + size.min(512)));
            r.push((off + size - size.min(512), off + size));
        }
    }
    r.retain(|&(a, b)| a < b && b <= k.len());
    assert!(r.len() >= 8, "kernel layout not understood: {r:?}");
    r
}

/// One mutation: where (a region and an offset in it), what kind, which value.
#[derive(Clone, Debug)]
struct Mutation {
    region: usize,
    at: u64,
    kind: u8,
    value: u64,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (any::<usize>(), any::<u64>(), 0u8..4, any::<u64>()).prop_map(|(region, at, kind, value)| {
        Mutation {
            region,
            at,
            kind,
            value,
        }
    })
}

fn interesting(v: u64) -> u64 {
    const WORDS: [u64; 14] = [
        0,
        1,
        8,
        24,
        0x1000,
        0x8730,
        0x3fe0_0000,
        0x3fe0_0001,
        0x4000_0000,
        u64::MAX,
        u64::MAX - 7,
        1 << 63,
        0x7fff_ffff,
        0xffff_ffff,
    ];
    WORDS[(v % WORDS.len() as u64) as usize].wrapping_add((v >> 60) & 7)
}

fn apply(img: &mut [u8], regions: &[(usize, usize)], m: &Mutation) {
    // One in eight mutations lands anywhere in the file.
    let (start, end) = if m.region % 8 == 7 {
        (0, img.len())
    } else {
        regions[m.region % regions.len()]
    };
    let off = start + (m.at % (end - start) as u64) as usize;
    match m.kind {
        0 => img[off] = m.value as u8,
        1 => img[off] ^= 1 << (m.value % 8),
        _ => {
            let w = interesting(m.value).to_le_bytes();
            let width = [8usize, 4, 2, 8][(m.value >> 8) as usize % 4];
            let n = width.min(img.len() - off);
            img[off..off + n].copy_from_slice(&w[..n]);
        }
    }
}

fn clock() -> ClockParams {
    ClockParams {
        tsc_khz: 1_000_000,
        tsc_base: 0,
        mono_base_ns: 0,
        wall_base_ns: 0,
        mult: 1 << 32,
        shift: 32,
    }
}

/// Every present entry of the tables at `table` points inside guest memory (tables and whole
/// leaf pages); returns the number of leaves.
fn check_tables(mem: &GuestMemory, table: u64, level: u32) -> usize {
    let mut leaves = 0;
    for i in 0..512 {
        let e = mem.read_u64(table + i * 8).expect("table inside memory");
        if e & 1 == 0 {
            continue;
        }
        let addr = e & 0x000f_ffff_ffff_f000;
        let size = match (level, e & 0x80 != 0) {
            (1, _) => PAGE,
            (2, true) => 2 << 20,
            (3, true) => 1 << 30,
            (4, true) => panic!("huge PML4 entry {e:#x}"),
            _ => {
                assert!(addr + PAGE <= mem.size(), "table {addr:#x} outside memory");
                leaves += check_tables(mem, addr, level - 1);
                continue;
            }
        };
        assert!(
            addr.is_multiple_of(size) && addr + size <= mem.size(),
            "leaf {e:#x} outside memory"
        );
        leaves += 1;
    }
    leaves
}

fn check_layout(mem: &GuestMemory, img: &KernelImage, l: &DomainLayout) {
    assert!(check_tables(mem, l.page_table_root, 4) > 0);
    let root = l.page_table_root;
    let entry = translate(mem, root, l.entry_rip).expect("entry is mapped");
    assert!(entry.executable && entry.gpa < mem.size());
    assert!((l.kernel_phys..l.kernel_phys + img.span()).contains(&entry.gpa));
    assert_eq!(entry.gpa, l.kernel_phys + img.entry());
    let stack = translate(mem, root, l.entry_rsp).expect("stack is mapped");
    assert!(stack.writable && !stack.executable && stack.gpa < mem.size());
    assert!(translate(mem, root, l.entry_rdi).is_some_and(|t| !t.writable));
}

/// Parses `bytes`; if accepted, symbolizes and builds at a base chosen by `pick`, checking
/// the layout. Returns whether the image was accepted and built.
fn exercise(bytes: Vec<u8>, pick: u64) -> (bool, bool) {
    let words = bytes.len() / 8;
    let Ok(img) = KernelImage::parse(bytes) else {
        return (false, false);
    };
    // No amplification: at most one relocation per 8-byte word of the file.
    assert!(img.nr_relocations() <= words);
    for a in [pick, pick % img.span(), img.entry(), 0, u64::MAX] {
        if let Some((_, off)) = img.symbolize(a) {
            assert!(off <= a, "offset {off:#x} beyond address {a:#x}");
        }
    }
    let mem = GuestMemory::new(MEM).expect("guest memory");
    let c = clock();
    let p = BuildParams {
        nr_vcpus: 1,
        boot_args: &pvmux_hypercalls::BootArgsBuf::default(),
        clock: Some(&c),
        initrd: None,
    };
    let base = KERNEL_REGION_BASE + (pick % (KERNEL_REGION_SIZE / ALIGN)) * ALIGN;
    match build(&mem, &img, &p, base) {
        Ok(l) => {
            check_layout(&mem, &img, &l);
            (true, true)
        }
        Err(_) => (true, false),
    }
}

/// The unmodified kernel parses, names its functions, and builds a valid layout at the lowest
/// and highest kernel bases.
#[test]
fn real_kernel_builds() {
    let img = KernelImage::parse(KERNEL).expect("real kernel parses");
    assert!((0..img.span())
        .step_by(16)
        .any(|a| img.symbolize(a).is_some()));
    let slots = (KERNEL_REGION_SIZE - img.span().next_multiple_of(ALIGN)) / ALIGN;
    for pick in [0, slots - 1] {
        assert_eq!(exercise(KERNEL.to_vec(), pick), (true, true));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Truncations of the real kernel (anywhere, and biased to the headers and the ends of
    /// the interesting sections) never panic the parser.
    #[test]
    fn truncations(which in any::<usize>(), at in any::<u64>(), pick in any::<u64>()) {
        let r = regions();
        let len = if which % 4 == 0 {
            (at % KERNEL.len() as u64) as usize
        } else {
            let (a, b) = r[which % r.len()];
            a + (at % (b - a + 1) as u64) as usize
        };
        exercise(KERNEL[..len.min(KERNEL.len())].to_vec(), pick);
    }

    /// Random byte writes, bit flips and interesting words, biased to the parts of the ELF
    /// the parser reads: never a panic, and any accepted image builds a sound layout.
    #[test]
    fn mutations(muts in proptest::collection::vec(mutation(), 1..8), pick in any::<u64>()) {
        let r = regions();
        let mut img = KERNEL.to_vec();
        for m in &muts {
            apply(&mut img, &r, m);
        }
        exercise(img, pick);
    }

    /// Arbitrary bytes, half of them behind a valid ELF64 x86-64 identification.
    #[test]
    fn arbitrary_bytes(mut bytes in proptest::collection::vec(any::<u8>(), 0..2048), elf in any::<bool>()) {
        if elf && bytes.len() >= 20 {
            bytes[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
            bytes[16..20].copy_from_slice(&[3, 0, 62, 0]);
        }
        exercise(bytes, 0);
    }
}

/// The real kernel with its last `PT_LOAD` grown to almost the largest span (a huge zeroed
/// bss) and its first two dynamic entries replaced by `tag_a` = a table in that bss and
/// `tag_b` = `table_len`.
fn with_table_over_bss(tag_a: u64, tag_b: u64, table_len: u64) -> Vec<u8> {
    let mut k = KERNEL.to_vec();
    let put = |k: &mut Vec<u8>, o: usize, v: u64| k[o..o + 8].copy_from_slice(&v.to_le_bytes());
    let (phoff, phnum) = (u64_at(&k, 0x20), u16_at(&k, 0x38));
    let (mut last_load, mut dynamic) = (None, None);
    for i in 0..phnum {
        let ph = phoff + 56 * i;
        match u32_at(&k, ph) {
            1 => last_load = Some(ph),
            2 => dynamic = Some(u64_at(&k, ph + 8)),
            _ => {}
        }
    }
    let (ph, d) = (last_load.unwrap(), dynamic.unwrap());
    let vaddr = u64_at(&k, ph + 16) as u64;
    let memsz = 0x3f00_0000 - vaddr;
    put(&mut k, ph + 40, memsz);
    let table = (vaddr + u64_at(&k, ph + 32) as u64 + 0x10000).next_multiple_of(8);
    // Neutralise existing entries with these tags (later entries would win).
    let mut e = d;
    while u64_at(&k, e) != 0 {
        if [tag_a, tag_b].contains(&(u64_at(&k, e) as u64)) {
            put(&mut k, e, 21); // DT_DEBUG
        }
        e += 16;
    }
    put(&mut k, d, tag_a);
    put(&mut k, d + 8, table);
    put(&mut k, d + 16, tag_b);
    put(&mut k, d + 24, table_len.min(0x3f00_0000 - table));
    k
}

/// Regression (found by `mutations`' hunt for resource use): a `DT_RELR` table pointed at a
/// huge zeroed bss made every zero word an address entry relocating offset 0 again; a
/// 32-byte change to the real kernel produced 130 million relocations (2 GiB, 14 s). Now an
/// image has at most as many relocations as its file has 8-byte words, and no relocation table
/// larger than the file.
#[test]
fn relocation_tables_over_bss_are_refused() {
    const DT_RELR: u64 = 36;
    const DT_RELRSZ: u64 = 35;
    const DT_RELA: u64 = 7;
    const DT_RELASZ: u64 = 8;
    let t = std::time::Instant::now();
    // Within the file size: at most one relocation per word of the file.
    let relr = with_table_over_bss(DT_RELR, DT_RELRSZ, KERNEL.len() as u64 - 8);
    if let Ok(img) = KernelImage::parse(relr) {
        assert!(img.nr_relocations() <= KERNEL.len() / 8);
    }
    // Larger than the file: refused before reading.
    let relr = with_table_over_bss(DT_RELR, DT_RELRSZ, 0x3e00_0000);
    assert!(KernelImage::parse(relr).is_err());
    let rela = with_table_over_bss(DT_RELA, DT_RELASZ, 0x3e00_0000 / 24 * 24);
    assert!(KernelImage::parse(rela).is_err());
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
}
