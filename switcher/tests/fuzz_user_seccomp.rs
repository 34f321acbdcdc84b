//! Property tests of the user sandbox's seccomp filters — the base filter alone
//! ([`build_user_base_filter`]) and the stack it runs user code under (the lock filter,
//! [`build_user_lock_filter`], on top) — run through the filters' own evaluator on arbitrary
//! `(nr, arch, ip, args)` and arbitrary valid parameters, against an independent model of the
//! policy in the `seccomp` module docs:
//! * a non-native architecture gets `RET_KILL_PROCESS`, from anywhere;
//! * an IP outside `[text_start + 2, text_end]` gets `RET_TRAP`;
//! * from stub code the result is `RET_ALLOW` exactly when the call is in the allow-list with
//!   its argument constraints met, else `RET_KILL_PROCESS`; an allowed `mmap`, `munmap` or
//!   `mprotect` stays below `USER_CTX_BASE`, and an allowed `mmap` maps only the user pool.

use proptest::prelude::*;
use pvmux_hypercalls::layout::CTL_BASE;
use pvmux_hypercalls::user::grant::USER_GRANT_BASE;
use pvmux_hypercalls::user::user_ctx_size;
use pvmux_hypercalls::user::{USER_BASE, USER_CTX_BASE, USER_END};
use pvmux_hypercalls::{MAX_VCPUS, PAGE_SIZE};
use pvmux_switcher::seccomp::{
    build_user_base_filter, build_user_lock_filter, build_user_template_filter, evaluate,
    evaluate_stack, nr, FilterParams, SockFilter, UserFilterParams, ARCH_SET_GS, AUDIT_ARCH_X86_64,
    MAX_FILTER_LEN, RET_ALLOW, RET_KILL_PROCESS, RET_TRAP, SLOT_THREAD_FLAGS, TEMPLATE_FORK_FLAGS,
    USER_LEN_MAX,
};

/// The documented policy for a native call from stub code.
fn model_allows(p: &UserFilterParams, nr: u32, a: [u64; 6]) -> bool {
    let range = |addr: u64, len: u64| (USER_BASE..USER_END).contains(&addr) && len <= USER_LEN_MAX;
    let rwx = |prot: u64| prot & !7 == 0;
    match nr {
        nr::RT_SIGRETURN
        | nr::EXIT_GROUP
        | nr::SCHED_YIELD
        | nr::TIMER_SETTIME
        | nr::TIMER_GETTIME => true,
        nr::FUTEX => matches!((a[1] as u32) & !0x180, 0 | 1),
        nr::ARCH_PRCTL => a[0] == 0x1002 || a[0] == 0x1003,
        nr::MMAP => {
            range(a[0], a[1])
                && rwx(a[2])
                && (a[3] == 0x11 || a[3] == 0x8011)
                && a[4] == 3
                && (p.pool_base..p.mem_size).contains(&a[5])
        }
        nr::MUNMAP => range(a[0], a[1]),
        nr::MPROTECT => range(a[0], a[1]) && rwx(a[2]),
        _ => false,
    }
}

/// The documented base filter (spares, and every user sandbox before its context region is
/// mapped): the user policy plus the second filter's installation and the context mapping.
fn model_base_allows(p: &UserFilterParams, nr: u32, a: [u64; 6]) -> bool {
    model_allows(p, nr, a)
        || (nr == nr::SECCOMP && a[0] == 1 && a[1] == 1)
        || (nr == nr::MMAP
            && a[0] == USER_CTX_BASE
            && a[1] <= user_ctx_size(MAX_VCPUS)
            && a[2] == 3
            && a[3] == 0x10_0001
            && a[4] == 3
            && (p.pool_base..p.mem_size).contains(&a[5]))
        || (nr == nr::MMAP
            && a[0] == USER_GRANT_BASE
            && a[1] <= PAGE_SIZE
            && a[2] == 1
            && a[3] == 0x10_0001
            && a[4] == 3
            && a[5] < p.pool_base)
}

fn params() -> impl Strategy<Value = UserFilterParams> {
    (
        0x5555u64..0x7fff,
        0u32..0xffff_f000,
        2u32..0x10_0000,
        any::<u32>(),
        1u32..65,
        0u64..(1 << 28),
        1u64..(1 << 28),
    )
        .prop_map(|(hi, lo, len, pid, sig, pool_pages, extra_pages)| {
            let pool_base = pool_pages * 4096;
            UserFilterParams {
                common: FilterParams {
                    text_start: (hi << 32) | u64::from(lo),
                    text_end: (hi << 32) | u64::from(lo.saturating_add(len)),
                    pid,
                    event_signal: sig,
                },
                pool_base,
                mem_size: pool_base + extra_pages * 4096,
            }
        })
}

fn syscall_nr() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => prop::sample::select(vec![
            nr::MMAP, nr::MPROTECT, nr::MUNMAP, nr::RT_SIGRETURN, nr::SCHED_YIELD, nr::EXIT,
            nr::FUTEX, nr::ARCH_PRCTL, nr::TIMER_SETTIME, nr::TIMER_GETTIME, nr::EXIT_GROUP,
            nr::TGKILL, nr::CLOSE, nr::GETPID, nr::GETTID, nr::WAIT4, 0, 1, 2, 14, 56, 57, 59, 62, 131,
            157, 222, 317, 0x4000_0009,
        ]),
        1 => any::<u32>(),
    ]
}

fn arg(p: UserFilterParams) -> impl Strategy<Value = u64> {
    let edges = vec![
        0,
        1,
        3,
        5,
        7,
        8,
        0x11,
        0x81,
        0x8011,
        0x8001,
        0x1002,
        0x1003,
        USER_BASE,
        USER_END,
        USER_LEN_MAX,
        USER_CTX_BASE,
        USER_GRANT_BASE,
        CTL_BASE,
        u64::from(TEMPLATE_FORK_FLAGS),
        u64::from(SLOT_THREAD_FLAGS),
        u64::from(ARCH_SET_GS),
        p.pool_base,
        p.mem_size,
        u64::from(p.common.pid),
        u64::from(p.common.event_signal),
        3 | (1 << 32),
        u64::MAX,
        1 << 63,
    ];
    prop_oneof![
        2 => prop::sample::select(edges.clone()),
        2 => (prop::sample::select(edges), -4096i64..4096).prop_map(|(e, d)| e.wrapping_add_signed(d)),
        1 => (prop::sample::select(vec![p.pool_base, p.mem_size, USER_END, USER_LEN_MAX]), 0u32..2)
            .prop_map(|(e, flip)| e ^ (u64::from(flip) << 32)),
        1 => any::<u64>(),
    ]
}

fn input() -> impl Strategy<Value = (UserFilterParams, u32, u32, u64, [u64; 6])> {
    params().prop_flat_map(|p| {
        let (s, e) = (p.common.text_start, p.common.text_end);
        (
            Just(p),
            syscall_nr(),
            prop_oneof![
                4 => Just(AUDIT_ARCH_X86_64),
                1 => prop::sample::select(vec![0x4000_0003u32, 0xc000_003f, 0]),
            ],
            prop_oneof![
                3 => s..=e,
                1 => prop::sample::select(vec![s, s + 1, s + 2, e, e + 1, 0x40_0000, s ^ (1 << 32)]),
                1 => any::<u64>(),
            ],
            [arg(p), arg(p), arg(p), arg(p), arg(p), arg(p)],
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// Arbitrary calls against arbitrary valid parameters obey the documented policy, under
    /// the stack a user sandbox runs user code with: the lock filter on the base filter.
    #[test]
    fn user_filter_stack_matches_policy((p, nr, arch, ip, a) in input(), template in any::<bool>()) {
        // A spawned sandbox's stack has the base filter under the lock filter, a template's
        // child the template filter: both enforce the same policy.
        let mut base = [SockFilter::default(); MAX_FILTER_LEN];
        let nb = if template {
            build_user_template_filter(&p, &mut base)
        } else {
            build_user_base_filter(&p, &mut base)
        }
        .expect("valid parameters build");
        let mut lock = [SockFilter::default(); MAX_FILTER_LEN];
        let nl = build_user_lock_filter(&p.common, &mut lock).expect("valid parameters build");
        let ret = evaluate_stack(&[&lock[..nl], &base[..nb]], nr, arch, ip, a);
        let from_stub = (p.common.text_start + 2..=p.common.text_end).contains(&ip);
        if arch != AUDIT_ARCH_X86_64 {
            prop_assert_eq!(ret, RET_KILL_PROCESS);
        } else if !from_stub {
            prop_assert_eq!(ret, RET_TRAP);
        } else {
            let allowed = model_allows(&p, nr, a);
            prop_assert_eq!(ret, if allowed { RET_ALLOW } else { RET_KILL_PROCESS },
                "nr {} args {:#x?}", nr, a);
            if allowed && matches!(nr, nr::MMAP | nr::MUNMAP | nr::MPROTECT) {
                prop_assert!(a[0].checked_add(a[1]).is_some_and(|end| end <= USER_CTX_BASE));
            }
        }
    }

    /// The base filter obeys its documented policy: the user policy plus the three start-up
    /// calls, which the lock filter on top takes away again (the test above).
    #[test]
    fn base_filter_matches_policy((p, nr, arch, ip, a) in input()) {
        let mut out = [SockFilter::default(); MAX_FILTER_LEN];
        let n = build_user_base_filter(&p, &mut out).expect("valid parameters build");
        let ret = evaluate(&out[..n], nr, arch, ip, a);
        let from_stub = (p.common.text_start + 2..=p.common.text_end).contains(&ip);
        if arch != AUDIT_ARCH_X86_64 {
            prop_assert_eq!(ret, RET_KILL_PROCESS);
        } else if !from_stub {
            prop_assert_eq!(ret, RET_TRAP);
        } else {
            let allowed = model_base_allows(&p, nr, a);
            prop_assert_eq!(ret, if allowed { RET_ALLOW } else { RET_KILL_PROCESS },
                "nr {} args {:#x?}", nr, a);
        }
    }
}
