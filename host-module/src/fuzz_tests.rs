//! Property tests (proptest) of the host's handling of guest-controlled inputs that only the
//! crate itself can reach: hypercall arguments ([`crate::hypercall::handle`]), crash records
//! and caller registers from the shared page turned into a crash report (cause, symbols,
//! frame-pointer backtrace through guest memory), and the kernel image parser plus domain
//! builder on mutations of the unit tests' small ELF.
//!
//! Case counts are bounded so the whole file runs in a few seconds (`PROPTEST_CASES` raises
//! them). The public-API walker properties are in `tests/fuzz_page_table.rs`; mutations of the
//! real embedded kernel are in `tools/tests/fuzz_kernel_image.rs`.

use std::sync::atomic::Ordering::Relaxed;

use proptest::prelude::*;
use pvmux_hypercalls::hypercall::{CONSOLE_WRITE_MAX, HC_NR_MASK, PANIC_MSG_MAX};
use pvmux_hypercalls::{HcError, Hypercall, TrapFrame, VcpuShared, PAGE_SIZE};
use zerocopy::FromBytes;

use crate::clock::ClockParams;
use crate::crash::{CrashCause, CrashReport, Symbolizer, MAX_BACKTRACE_FRAMES};
use crate::domain_builder::{
    build, BuildParams, DomainLayout, BOOT_STACK_BOTTOM_GVA, BOOT_STACK_TOP_GVA,
};
use crate::hypercall::{handle, HcAction, TestEnv};
use crate::kernel_image::KERNEL_ALIGN;
use crate::page_table::translate;
use crate::test_elf::TestElf;
use crate::{GuestMemory, KernelImage};
use pvmux_hypercalls::layout::{KERNEL_REGION_BASE, KERNEL_REGION_SIZE};

const MEM: u64 = 16 << 20;

fn clock() -> ClockParams {
    ClockParams::test_1ghz()
}

/// Guest-physical addresses biased to the edges of 16 MiB of guest memory and of `u64`.
fn gpa() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => 0..MEM,
        2 => (0u64..=CONSOLE_WRITE_MAX + 2).prop_map(|d| MEM.wrapping_sub(d)),
        1 => (0u64..4096).prop_map(|d| MEM + d),
        1 => (0u64..4096).prop_map(|d| u64::MAX - d),
        1 => any::<u64>(),
    ]
}

/// Lengths biased to the per-call limits and to overflowing sums.
fn len() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..=PANIC_MSG_MAX + 2,
        1 => prop::sample::select(vec![
            CONSOLE_WRITE_MAX - 1, CONSOLE_WRITE_MAX, CONSOLE_WRITE_MAX + 1, MEM, MEM + 1,
            u64::MAX, u64::MAX - 1, 1 << 63, (1 << 32) + 1,
        ]),
        1 => 0u64..=CONSOLE_WRITE_MAX + 1,
        1 => any::<u64>(),
    ]
}

/// Call numbers: mostly defined ones, with random flag bits in the high half.
fn call_nr() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0u64..8, any::<u32>()).prop_map(|(n, f)| n | (u64::from(f) << 32)),
        1 => any::<u64>(),
    ]
}

/// Guest memory whose bytes are a function of their address (so any read can be checked).
fn patterned_memory() -> GuestMemory {
    let mem = GuestMemory::new(MEM).expect("guest memory");
    let pattern = |base: u64, len: u64| -> Vec<u8> {
        (base..base + len)
            .map(|a| (a ^ (a >> 8) ^ (a >> 16)) as u8)
            .collect()
    };
    let edge = 2 * CONSOLE_WRITE_MAX;
    mem.write(0, &pattern(0, edge)).expect("in bounds");
    mem.write(MEM - edge, &pattern(MEM - edge, edge))
        .expect("in bounds");
    mem
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// For any `(nr, args)` the handler's answer is in the documented set, it reads only
    /// inside guest memory, and `ConsoleWrite`/`Panic` follow their model exactly:
    /// `ConsoleWrite` returns `len` (and writes exactly the guest's bytes) iff
    /// `len <= CONSOLE_WRITE_MAX` and `gpa + len <= mem_size` without overflow (so a zero
    /// length is fine at any `gpa <= mem_size`), else `TooLarge` (checked first) or
    /// `BadAddress`, writing nothing; `Panic` reads at most `PANIC_MSG_MAX` bytes, or gives a
    /// placeholder when that range is outside memory.
    #[test]
    fn hypercalls_follow_their_model(nr in call_nr(), a0 in gpa(), a1 in len(), rest in any::<[u64; 4]>()) {
        let mem = patterned_memory();
        // Half the cases use a valid console stream (0..=2) or just past them.
        let stream = if rest[0] & 1 == 0 { (rest[0] >> 1) % 4 } else { rest[0] };
        let args = [a0, a1, stream, rest[1], rest[2], rest[3]];
        let env = TestEnv::default();
        let action = handle(&mem, &env, nr, args);
        let writes: Vec<Vec<u8>> = env.out.borrow().iter().map(|(_, b)| b.clone()).collect();
        let in_mem = |gpa: u64, len: u64| gpa.checked_add(len).is_some_and(|e| e <= MEM);
        let call = u32::try_from(nr & HC_NR_MASK).ok().and_then(Hypercall::from_raw);
        if let HcAction::Return(v) = action {
            prop_assert!(v >= 0 || HcError::from_ret(v).is_some(), "undocumented return {}", v);
        }
        match call {
            Some(Hypercall::Nop) => prop_assert_eq!(action, HcAction::Return(0)),
            Some(Hypercall::ConsoleWrite) => {
                let want = if stream > 2 {
                    HcError::InvalidArgument.to_ret()
                } else if a1 > CONSOLE_WRITE_MAX {
                    HcError::TooLarge.to_ret()
                } else if !in_mem(a0, a1) {
                    HcError::BadAddress.to_ret()
                } else {
                    a1 as i64
                };
                prop_assert_eq!(&action, &HcAction::Return(want));
                if want >= 0 {
                    prop_assert_eq!(writes.len(), 1);
                    prop_assert_eq!(&writes[0], &mem.read_vec(a0, a1 as usize).unwrap());
                } else {
                    prop_assert!(writes.is_empty());
                }
            }
            Some(Hypercall::Shutdown) => {
                let HcAction::Shutdown(code, _) = action else {
                    return Err(TestCaseError::fail("shutdown call must end in Shutdown"));
                };
                prop_assert_eq!(code, (a0 & 0xff) as i32);
            }
            Some(Hypercall::Panic) => {
                let HcAction::Panic(msg) = action else {
                    return Err(TestCaseError::fail("panic call must end in Panic"));
                };
                let n = a1.min(PANIC_MSG_MAX);
                if in_mem(a0, n) {
                    let bytes = mem.read_vec(a0, n as usize).unwrap();
                    prop_assert_eq!(
                        msg,
                        crate::escape::escape_guest(&bytes, crate::escape::Mode::Text)
                    );
                } else {
                    prop_assert!(msg.contains("invalid address"), "{}", msg);
                    prop_assert!(msg.len() < 128);
                }
            }
            Some(Hypercall::WallClock) => {
                prop_assert!(matches!(action, HcAction::Return(v) if v > 0));
            }
            // The fake tenant has no input: end of input, for any valid range.
            Some(Hypercall::ConsoleRead) => {
                let want = if in_mem(a0, a1.min(CONSOLE_WRITE_MAX)) {
                    0
                } else {
                    HcError::BadAddress.to_ret()
                };
                prop_assert_eq!(action, HcAction::Return(want));
            }
            Some(Hypercall::SpaceCreate) => prop_assert_eq!(action, HcAction::Return(7)),
            Some(Hypercall::SpaceDestroy) => {
                let want = if a0 == 7 { 0 } else { HcError::InvalidArgument.to_ret() };
                prop_assert_eq!(action, HcAction::Return(want));
            }
            _ => prop_assert_eq!(action, HcAction::Return(HcError::UnknownCall.to_ret())),
        }
        if call != Some(Hypercall::ConsoleWrite) {
            prop_assert!(writes.is_empty());
        }
    }
}

/// Regression-style edges of the console model: empty writes at and past the end of memory,
/// sums that overflow, and the exact limit.
#[test]
fn console_write_edges() {
    let mem = patterned_memory();
    let call = |gpa: u64, len: u64| {
        let env = TestEnv::default();
        let a = handle(&mem, &env, 1, [gpa, len, 0, 0, 0, 0]);
        let n: usize = env.out.borrow().iter().map(|(_, b)| b.len()).sum();
        (a, n)
    };
    let bad = HcAction::Return(HcError::BadAddress.to_ret());
    let big = HcAction::Return(HcError::TooLarge.to_ret());
    assert_eq!(call(MEM, 0), (HcAction::Return(0), 0));
    assert_eq!(call(MEM + 1, 0), (bad.clone(), 0));
    assert_eq!(call(u64::MAX, 0), (bad.clone(), 0));
    assert_eq!(call(u64::MAX - 1, 2), (bad.clone(), 0));
    assert_eq!(call(u64::MAX, CONSOLE_WRITE_MAX), (bad, 0));
    assert_eq!(call(u64::MAX, CONSOLE_WRITE_MAX + 1), (big, 0));
    let max = CONSOLE_WRITE_MAX;
    assert_eq!(
        call(MEM - max, max),
        (HcAction::Return(max as i64), max as usize)
    );
}

/// A built domain of the test ELF at a random base, and its symbolizer inputs.
fn test_domain(base_slot: u64) -> (KernelImage, GuestMemory, DomainLayout) {
    let kernel = KernelImage::parse(TestElf::default().build()).expect("test ELF parses");
    let mem = GuestMemory::new(MEM).expect("guest memory");
    let slots = KERNEL_REGION_SIZE / KERNEL_ALIGN - 1;
    let base = KERNEL_REGION_BASE + (base_slot % slots) * KERNEL_ALIGN;
    let c = clock();
    let p = BuildParams {
        nr_vcpus: 1,
        boot_args: &pvmux_hypercalls::BootArgsBuf::default(),
        clock: Some(&c),
        initrd: None,
    };
    let layout = build(&mem, &kernel, &p, base).expect("test ELF builds");
    (kernel, mem, layout)
}

/// A word as the guest might leave it on its stack, derived from `s`: biased to stack and
/// kernel addresses.
fn stack_word(s: u64, kernel_base: u64) -> u64 {
    let span = BOOT_STACK_TOP_GVA - BOOT_STACK_BOTTOM_GVA + 128;
    match s % 5 {
        0 | 1 => BOOT_STACK_BOTTOM_GVA - 64 + (s >> 8) % span,
        2 => kernel_base + (s >> 8) % 0x6000,
        3 => 0,
        _ => s,
    }
}

/// Builds the crash report the host builds from a stub crash record (the steps of
/// `tenant.rs`'s `stub_crash_report`) and renders it.
fn stub_report(sym: &Symbolizer<'_>, shared: &VcpuShared) -> CrashReport {
    let c = shared.read_crash();
    let mut r = CrashReport::new(
        "fuzz",
        CrashCause::Stub {
            reason: c.reason,
            vector: c.vector,
            error_code: c.error_code,
            fault_addr: c.fault_addr,
            detail: c.detail,
        },
    );
    r.vcpu = Some(0);
    r.regs = Some(c.regs);
    r.backtrace = sym.backtrace(c.regs.rip, c.regs.rbp);
    for (what, addr) in [("detail", c.detail), ("fault address", c.fault_addr)] {
        if let Some(s) = sym.symbol(addr) {
            r.notes.push(format!("{what} {addr:#x} is <{s}>"));
        }
    }
    r
}

/// Checks a backtrace's shape: bounded, starts at `rip`, strictly climbing frame pointers.
fn check_backtrace(r: &CrashReport, rip: u64) -> Result<(), TestCaseError> {
    prop_assert!(!r.backtrace.is_empty() && r.backtrace.len() <= MAX_BACKTRACE_FRAMES);
    prop_assert_eq!(r.backtrace[0].addr, rip);
    prop_assert!(r.backtrace[1..].iter().all(|f| f.addr != 0));
    let text = r.to_string();
    prop_assert!(text.starts_with("tenant \"fuzz\" crashed: "));
    prop_assert!(text.lines().count() < 64 + MAX_BACKTRACE_FRAMES);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// A shared page of arbitrary bytes plus a boot stack (and random other guest pages,
    /// including page tables) full of arbitrary, stack-biased words: building the crash
    /// report (cause, registers, symbols of rip/detail/fault address, the frame-pointer
    /// backtrace through the guest's own page tables) never panics, ends, keeps the
    /// backtrace within `MAX_BACKTRACE_FRAMES`, and renders. The panic path (caller
    /// registers from `hc_caller_*`) likewise.
    #[test]
    fn crash_reports_from_arbitrary_shared_pages(
        base_slot in any::<u64>(),
        mut page in proptest::collection::vec(any::<u8>(), 4096),
        stack_seed in proptest::collection::vec(any::<u64>(), 64),
        scribbles in proptest::collection::vec((any::<u64>(), any::<u64>()), 0..16),
        pick in any::<[u8; 4]>(),
    ) {
        let (kernel, mem, l) = test_domain(base_slot);
        let sym = Symbolizer { kernel: &kernel, kernel_base: l.kernel_base, mem: &mem, root: l.page_table_root };
        // The stack: words biased to stack/kernel addresses.
        for s in &stack_seed {
            let gva = BOOT_STACK_TOP_GVA - 8 * (1 + (s.rotate_left(17) % 512));
            let t = translate(&mem, l.page_table_root, gva).expect("stack is mapped");
            mem.write_u64(t.gpa, stack_word(*s, l.kernel_base)).unwrap();
        }
        // Random words anywhere in guest memory (page tables included).
        for (at, v) in scribbles {
            let _ = mem.write_u64((at % MEM) & !7, v);
        }
        // Aim rip/rbp at the kernel and the stack part of the time.
        let rip = match pick[0] % 3 {
            0 => l.kernel_base + 0x1000 + u64::from(pick[1] % 0x20),
            _ => u64::from_le_bytes(page[0x120 + 18 * 8..0x120 + 19 * 8].try_into().unwrap()),
        };
        let rbp = match pick[2] % 3 {
            0 => BOOT_STACK_TOP_GVA - 8 * (1 + u64::from(pick[3])),
            _ => u64::from_le_bytes(page[0x120 + 6 * 8..0x120 + 7 * 8].try_into().unwrap()),
        };
        page[0x120 + 18 * 8..0x120 + 19 * 8].copy_from_slice(&rip.to_le_bytes());
        page[0x120 + 6 * 8..0x120 + 7 * 8].copy_from_slice(&rbp.to_le_bytes());
        let shared = VcpuShared::read_from_bytes(&page).expect("one page");

        let r = stub_report(&sym, &shared);
        check_backtrace(&r, rip)?;

        // The panic path: only rip/rsp/rbp, from the hypercall caller fields.
        let regs = TrapFrame {
            rip: shared.hc_caller_rip.load(Relaxed),
            rsp: shared.hc_caller_rsp.load(Relaxed),
            rbp: shared.hc_caller_rbp.load(Relaxed),
            ..Default::default()
        };
        let mut p = CrashReport::new("fuzz", CrashCause::GuestPanic { message: "x".into() });
        p.regs = Some(regs);
        p.backtrace = sym.backtrace(regs.rip, regs.rbp);
        check_backtrace(&p, regs.rip)?;
    }

    /// Every other cause built from guest- or sandbox-controlled numbers renders.
    #[test]
    fn crash_causes_render(a in any::<u32>(), b in any::<u32>(), s in any::<i32>()) {
        for cause in [
            CrashCause::SetupFailed { step: a, errno: b },
            CrashCause::Signal { signo: s },
            CrashCause::UnexpectedExit { status: s },
            CrashCause::Stub { reason: a, vector: b, error_code: 0, fault_addr: 0, detail: 0 },
        ] {
            let text = CrashReport::new("t", cause).to_string();
            prop_assert!(text.starts_with("tenant \"t\" crashed: "));
        }
    }
}

/// A perfect frame chain longer than the limit is cut at exactly `MAX_BACKTRACE_FRAMES`.
#[test]
fn long_frame_chains_are_cut() {
    let (kernel, mem, l) = test_domain(7);
    let sym = Symbolizer {
        kernel: &kernel,
        kernel_base: l.kernel_base,
        mem: &mem,
        root: l.page_table_root,
    };
    let bottom = BOOT_STACK_TOP_GVA - 0x1000;
    for i in 0..100u64 {
        let fp = bottom + 16 * i;
        let w = |gva: u64, v: u64| {
            let t = translate(&mem, l.page_table_root, gva).unwrap();
            mem.write_u64(t.gpa, v).unwrap();
        };
        w(fp, fp + 16);
        w(fp + 8, l.kernel_base + 0x1004);
    }
    let bt = sym.backtrace(l.kernel_base + 0x1000, bottom);
    assert_eq!(bt.len(), MAX_BACKTRACE_FRAMES);
    assert!(bt[1..]
        .iter()
        .all(|f| f.symbol.as_deref() == Some("_start+0x4")));
}

/// Offsets in the test ELF worth mutating: ELF header, program headers, dynamic table,
/// relocations, `.pvmux_abi`, symbols, section headers.
fn elf_offset() -> impl Strategy<Value = usize> {
    prop_oneof![
        2 => 0usize..64,
        3 => 64usize..64 + 3 * 56,
        2 => 0x2000usize..0x2040,
        2 => 0x2080usize..0x20b0,
        1 => 0x3000usize..0x3010,
        1 => 0x3010usize..0x30d0,
        2 => 0x3100usize..0x3240,
        1 => 0usize..0x3240,
    ]
}

/// A mutation: overwrite with a random byte, an interesting little-endian word, or flip bits.
fn mutation() -> impl Strategy<Value = (usize, u8, u64)> {
    (elf_offset(), 0u8..3, any::<u64>())
}

fn interesting(v: u64) -> u64 {
    const WORDS: [u64; 12] = [
        0,
        1,
        8,
        0x1000,
        0x2000,
        0x3fe0_0000,
        0x3fe0_0001,
        0x4000_0000,
        u64::MAX,
        u64::MAX - 7,
        1 << 63,
        0x7fff_ffff,
    ];
    WORDS[(v % WORDS.len() as u64) as usize].wrapping_add((v >> 60) & 7)
}

fn mutate(elf: &mut [u8], muts: &[(usize, u8, u64)]) {
    for &(off, kind, v) in muts {
        let off = off.min(elf.len() - 1);
        match kind {
            0 => elf[off] = v as u8,
            1 => {
                let w = interesting(v).to_le_bytes();
                let n = (elf.len() - off).min(8 >> (v & 3).min(3));
                elf[off..off + n].copy_from_slice(&w[..n]);
            }
            _ => elf[off] ^= 1 << (v % 8),
        }
    }
}

/// Every present entry of the tables rooted at `table` (a gpa) points inside guest memory:
/// tables and whole leaf pages. Returns the number of leaf entries.
fn check_tables(mem: &GuestMemory, table: u64, level: u32) -> Result<usize, TestCaseError> {
    let mut leaves = 0;
    for i in 0..512 {
        let e = mem.read_u64(table + i * 8).unwrap();
        if e & 1 == 0 {
            continue;
        }
        let addr = e & 0x000f_ffff_ffff_f000;
        let huge = e & 0x80 != 0;
        let size = match (level, huge) {
            (1, _) => PAGE_SIZE,
            (2, true) => 2 << 20,
            (3, true) => 1 << 30,
            (4, true) => return Err(TestCaseError::fail("huge PML4 entry")),
            _ => {
                prop_assert!(addr + PAGE_SIZE <= mem.size(), "table {:#x}", addr);
                leaves += check_tables(mem, addr, level - 1)?;
                continue;
            }
        };
        prop_assert!(
            addr.is_multiple_of(size) && addr + size <= mem.size(),
            "leaf {:#x}",
            e
        );
        leaves += 1;
    }
    Ok(leaves)
}

/// After a successful build: every page-table entry points inside guest memory, and the
/// entry point, stack and boot info translate into it with the right permissions; the
/// kernel's pages translate into the kernel's physical range.
fn check_layout(
    mem: &GuestMemory,
    img: &KernelImage,
    l: &DomainLayout,
) -> Result<(), TestCaseError> {
    prop_assert!(check_tables(mem, l.page_table_root, 4)? > 0);
    let root = l.page_table_root;
    let entry = translate(mem, root, l.entry_rip).ok_or_else(|| TestCaseError::fail("entry"))?;
    prop_assert!(entry.executable && entry.gpa < mem.size());
    prop_assert!((l.kernel_phys..l.kernel_phys + l.kernel_span).contains(&entry.gpa));
    let stack = translate(mem, root, l.entry_rsp).ok_or_else(|| TestCaseError::fail("stack"))?;
    prop_assert!(stack.writable && !stack.executable && stack.gpa < mem.size());
    prop_assert!(translate(mem, root, l.entry_rdi).is_some_and(|t| !t.writable));
    prop_assert!(l.kernel_phys + img.span() <= mem.size());
    for (i, f) in img.page_flags().iter().enumerate() {
        let va = l.kernel_base + i as u64 * PAGE_SIZE;
        let t = translate(mem, root, va);
        prop_assert_eq!(t.is_some(), f.is_some());
        if let Some(t) = t {
            prop_assert_eq!(t.gpa, l.kernel_phys + i as u64 * PAGE_SIZE);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Mutations of the small test ELF (biased to its headers, dynamic table, relocations,
    /// ABI section and symbols) never make the parser panic; when it accepts the result, the
    /// domain builder at a random base either errors or builds a layout whose page tables
    /// point only inside guest memory, with the entry and stack mapped, and symbolisation of
    /// any address works.
    #[test]
    fn test_elf_mutations(
        muts in proptest::collection::vec(mutation(), 1..6),
        base_slot in any::<u64>(),
        probe in any::<u64>(),
    ) {
        let mut elf = TestElf::default().build();
        mutate(&mut elf, &muts);
        let Ok(img) = KernelImage::parse(elf) else { return Ok(()) };
        let _ = img.symbolize(probe);
        let _ = img.symbolize(probe % img.span());
        let mem = GuestMemory::new(MEM).expect("guest memory");
        let c = clock();
        let p = BuildParams { nr_vcpus: 1, boot_args: &pvmux_hypercalls::BootArgsBuf::default(), clock: Some(&c), initrd: None };
        let slots = KERNEL_REGION_SIZE / KERNEL_ALIGN;
        let base = KERNEL_REGION_BASE + (base_slot % slots) * KERNEL_ALIGN;
        if let Ok(l) = build(&mem, &img, &p, base) {
            check_layout(&mem, &img, &l)?;
        }
    }
}
