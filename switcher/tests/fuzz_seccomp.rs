//! Property tests of the kernel sandbox's seccomp filter, run through the filter's own
//! evaluator ([`evaluate`], which executes the BPF program like the kernel does) on arbitrary
//! `(nr, arch, ip, args)` and arbitrary (valid) stub code ranges.
//!
//! The properties are those of docs/SECURITY.md, checked against an independent model of the
//! policy written here from that document:
//! * an instruction pointer outside `[text_start + 2, text_end]` gets `RET_TRAP`, whatever else
//!   (seccomp reports the address after the 2-byte `syscall`: a `syscall` that ends the code
//!   reports `text_end`, one that starts it reports `text_start + 2`);
//! * from stub code a non-native architecture gets `RET_KILL_PROCESS`;
//! * from stub code the result is `RET_ALLOW` or `RET_REFUSE`, and `RET_ALLOW` exactly when the
//!   call is in the allow-list with its argument constraints met; an allowed `mmap`/`munmap`
//!   stays inside the window and its never-mapped guard (`addr + len <= GUARD_END`).
//!
//! Case counts are bounded (`PROPTEST_CASES` raises them).

use proptest::prelude::*;
use pvmux_hypercalls::layout::{GUARD_END, WINDOW_BASE, WINDOW_END, WINDOW_SIZE};
use pvmux_switcher::seccomp::{
    build_kernel_filter, evaluate, nr, FilterParams, SockFilter, AUDIT_ARCH_X86_64, MAX_FILTER_LEN,
    RET_ALLOW, RET_KILL_PROCESS, RET_REFUSE, RET_TRAP,
};

/// The policy of docs/SECURITY.md for a native call from stub code: allowed or not.
fn model_allows(p: &FilterParams, nr: u32, a: [u64; 6]) -> bool {
    let in_window = |addr: u64| (WINDOW_BASE..WINDOW_END).contains(&addr);
    match nr {
        nr::RT_SIGRETURN | nr::EXIT_GROUP | nr::SCHED_YIELD | nr::TIMER_SETTIME => true,
        // The kernel reads the op as a 32-bit int; PRIVATE (128) and CLOCK_REALTIME (256).
        nr::FUTEX => matches!((a[1] as u32) & !0x180, 0 | 1),
        nr::MMAP => in_window(a[0]) && a[1] <= WINDOW_SIZE && a[3] == 0x11 && a[4] == 3,
        nr::MUNMAP | nr::MINCORE => in_window(a[0]) && a[1] <= WINDOW_SIZE,
        nr::TGKILL => a[0] == u64::from(p.pid) && a[2] == u64::from(p.event_signal),
        _ => false,
    }
}

fn program(p: &FilterParams) -> Vec<SockFilter> {
    let mut out = [SockFilter::default(); MAX_FILTER_LEN];
    let n = build_kernel_filter(p, &mut out).expect("valid parameters build");
    out[..n].to_vec()
}

/// Valid filter parameters: a code range that does not cross a 4 GiB boundary.
fn params() -> impl Strategy<Value = FilterParams> {
    (
        0u64..0x8000,
        0u32..0xffff_f000,
        2u32..0x10_0000,
        any::<u32>(),
        1u32..65,
    )
        .prop_map(|(hi, lo, len, pid, sig)| {
            let start = (hi << 32) | u64::from(lo);
            let end = (hi << 32) | u64::from(lo.saturating_add(len));
            FilterParams {
                text_start: start,
                text_end: end,
                pid,
                event_signal: sig,
            }
        })
}

/// Syscall numbers: mostly the interesting ones, sometimes anything.
fn syscall_nr() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => prop::sample::select(vec![
            nr::MMAP, nr::MUNMAP, nr::MINCORE, nr::RT_SIGRETURN, nr::SCHED_YIELD, nr::EXIT, nr::FUTEX,
            nr::TIMER_SETTIME, nr::EXIT_GROUP, nr::TGKILL, 0, 1, 2, 10, 25, 56, 57, 59, 62, 157,
            200, 317, 425, 0x4000_0009, 0x4000_000b,
        ]),
        1 => any::<u32>(),
    ]
}

/// Argument values biased to the boundaries the filter compares against.
fn arg(p: FilterParams) -> impl Strategy<Value = u64> {
    let edges = vec![
        0,
        1,
        3,
        0x11,
        0x180,
        0x81,
        WINDOW_BASE,
        WINDOW_BASE - 1,
        WINDOW_END,
        WINDOW_END - 1,
        WINDOW_END - 4096,
        WINDOW_SIZE,
        WINDOW_SIZE + 1,
        WINDOW_SIZE + (4 << 30) - 1,
        WINDOW_SIZE + (4 << 30),
        u64::from(p.pid),
        u64::from(p.pid) | (1 << 32),
        u64::from(p.event_signal),
        u64::from(p.event_signal) | (1 << 32),
        3 | (1 << 32),
        0x11 | (1 << 32),
        u64::MAX,
        1 << 63,
    ];
    prop_oneof![
        2 => prop::sample::select(edges.clone()),
        2 => (prop::sample::select(edges), -4096i64..4096).prop_map(|(e, d)| e.wrapping_add_signed(d)),
        1 => any::<u64>(),
    ]
}

/// Instruction pointers: inside, at the edges of, and far from the stub code.
fn ip(p: FilterParams) -> impl Strategy<Value = u64> {
    let (s, e) = (p.text_start, p.text_end);
    prop_oneof![
        3 => s..=e,
        2 => prop::sample::select(vec![
            s, s + 1, s + 2, e, s.wrapping_sub(1), e + 1, s ^ (1 << 32), e ^ (1 << 32), s + (1 << 32),
            s.wrapping_sub(1 << 32), WINDOW_BASE, WINDOW_BASE + 0x1000, 0, u64::MAX,
        ]),
        1 => any::<u64>(),
    ]
}

fn arch() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => Just(AUDIT_ARCH_X86_64),
        1 => prop::sample::select(vec![0x4000_0003u32, 0xc000_003f, AUDIT_ARCH_X86_64 ^ 1, 0]),
        1 => any::<u32>(),
    ]
}

/// A whole input: parameters, then a call shaped by them.
fn input() -> impl Strategy<Value = (FilterParams, u32, u32, u64, [u64; 6])> {
    params().prop_flat_map(|p| {
        (
            Just(p),
            syscall_nr(),
            arch(),
            ip(p),
            [arg(p), arg(p), arg(p), arg(p), arg(p), arg(p)],
        )
    })
}

/// Checks one call against the documented policy; returns the filter's verdict.
fn check(p: &FilterParams, prog: &[SockFilter], nr: u32, arch: u32, ip: u64, a: [u64; 6]) -> u32 {
    let ret = evaluate(prog, nr, arch, ip, a);
    let from_stub = (p.text_start + 2..=p.text_end).contains(&ip);
    if !from_stub {
        assert_eq!(
            ret, RET_TRAP,
            "guest-code call must trap: nr {nr} ip {ip:#x}"
        );
        return ret;
    }
    if arch != AUDIT_ARCH_X86_64 {
        assert_eq!(ret, RET_KILL_PROCESS, "non-native arch {arch:#x} from stub");
        return ret;
    }
    assert!(
        ret == RET_ALLOW || ret == RET_REFUSE,
        "stub call gives {ret:#x}"
    );
    let allowed = ret == RET_ALLOW;
    assert_eq!(
        allowed,
        model_allows(p, nr, a),
        "nr {nr} args {a:#x?} params {p:?}"
    );
    if allowed && (nr == nr::MMAP || nr == nr::MUNMAP) {
        // The stated reason for the length check: addr + len stays in the window and guard.
        assert!(
            a[0].checked_add(a[1]).is_some_and(|end| end <= GUARD_END),
            "{a:#x?}"
        );
    }
    ret
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// Arbitrary calls against arbitrary valid code ranges obey the documented policy.
    #[test]
    fn filter_matches_policy((p, nr, arch, ip, a) in input()) {
        let prog = program(&p);
        check(&p, &prog, nr, arch, ip, a);
    }
}

/// The filter fits its buffer and every jump lands inside the program, for every range
/// shape the builder accepts (so `evaluate` never falls off the end).
#[test]
fn programs_are_well_formed() {
    for hi in [0u64, 1, 0x7f12, 0x7fff] {
        for (lo, len) in [(0u32, 2u32), (0x1000, 0x8000), (0xffff_0000, 0xffff)] {
            let p = FilterParams {
                text_start: (hi << 32) | u64::from(lo),
                text_end: (hi << 32) | u64::from(lo + len),
                pid: 1,
                event_signal: 34,
            };
            let prog = program(&p);
            let last = prog.last().unwrap();
            assert_eq!(last.code, 0x06, "ends with a return");
            for (i, insn) in prog.iter().enumerate() {
                if insn.code & 0x07 == 0x05 {
                    assert!(i + 1 + usize::from(insn.jt.max(insn.jf)) < prog.len());
                }
            }
        }
    }
}

/// Regression: a whole-window `munmap` must stay allowed (the stub's eviction), and a length
/// beyond the window (so that `addr + len` reaches past the guard area) must be refused.
#[test]
fn window_length_edges() {
    let p = FilterParams {
        text_start: 0x7f12_3400_0000,
        text_end: 0x7f12_3400_8000,
        pid: 7,
        event_signal: 34,
    };
    let prog = program(&p);
    let ip = p.text_start + 0x10;
    let x86 = AUDIT_ARCH_X86_64;
    let munmap = |addr, len| evaluate(&prog, nr::MUNMAP, x86, ip, [addr, len, 0, 0, 0, 0]);
    let mmap = |addr, len| evaluate(&prog, nr::MMAP, x86, ip, [addr, len, 3, 0x11, 3, 0]);
    assert_eq!(munmap(WINDOW_BASE, WINDOW_SIZE), RET_ALLOW);
    assert_eq!(munmap(WINDOW_END - 4096, WINDOW_SIZE), RET_ALLOW);
    assert_eq!(munmap(WINDOW_END - 4096, WINDOW_SIZE + 1), RET_REFUSE);
    assert_eq!(
        munmap(WINDOW_END - 4096, WINDOW_SIZE + (4 << 30) - 1),
        RET_REFUSE
    );
    assert_eq!(mmap(WINDOW_END - 4096, WINDOW_SIZE), RET_ALLOW);
    assert_eq!(mmap(WINDOW_END - 4096, WINDOW_SIZE + 0x1000), RET_REFUSE);
    assert_eq!(mmap(WINDOW_BASE, 0x1000), RET_ALLOW);
}
