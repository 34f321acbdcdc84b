//! Property tests of the ABI decoders the host applies to guest-controlled numbers.
//!
//! Every `from_raw`/`from_ret` must round-trip the values this ABI version defines and return
//! `None` for everything else: exhaustively over small ranges (where all defined values live),
//! and with proptest over the whole input type. `VcpuShared::read_crash` must copy any bit
//! pattern of the shared page out faithfully, field by field.
//!
//! Case counts are bounded (`PROPTEST_CASES` raises them).

use proptest::prelude::*;
use pvmux_hypercalls::boot::MemRegionKind;
use pvmux_hypercalls::{CrashReason, HcError, Hypercall, ProgramEnd, VcpuShared, Vector};
use zerocopy::FromBytes;

const KNOWN_VECTORS: [Vector; 12] = [
    Vector::DivideError,
    Vector::Debug,
    Vector::Breakpoint,
    Vector::Overflow,
    Vector::InvalidOpcode,
    Vector::GeneralProtection,
    Vector::PageFault,
    Vector::X87Fp,
    Vector::AlignmentCheck,
    Vector::SimdFp,
    Vector::Event,
    Vector::Syscall,
];
const KNOWN_CALLS: [Hypercall; 10] = [
    Hypercall::Nop,
    Hypercall::ConsoleWrite,
    Hypercall::Shutdown,
    Hypercall::Panic,
    Hypercall::WallClock,
    Hypercall::SpaceCreate,
    Hypercall::SpaceDestroy,
    Hypercall::ConsoleRead,
    Hypercall::HostfsList,
    Hypercall::HostfsRead,
];
const KNOWN_ERRORS: [HcError; 6] = [
    HcError::UnknownCall,
    HcError::InvalidArgument,
    HcError::BadAddress,
    HcError::TooLarge,
    HcError::Busy,
    HcError::NoResources,
];
const KNOWN_REASONS: [CrashReason; 6] = [
    CrashReason::UnhandledException,
    CrashReason::DoubleFault,
    CrashReason::StubFault,
    CrashReason::AbiViolation,
    CrashReason::OutOfHostMappings,
    CrashReason::StubSyscallFailed,
];
const KNOWN_KINDS: [MemRegionKind; 5] = [
    MemRegionKind::Usable,
    MemRegionKind::Kernel,
    MemRegionKind::Boot,
    MemRegionKind::Initrd,
    MemRegionKind::UserPool,
];

const KNOWN_ENDS: [ProgramEnd; 2] = [ProgramEnd::Signaled, ProgramEnd::OutOfMemory];

fn end_ok(raw: u32) {
    match ProgramEnd::from_raw(raw) {
        Some(e) => {
            assert_eq!(e as u32, raw);
            assert!(KNOWN_ENDS.contains(&e));
        }
        None => assert!(KNOWN_ENDS.iter().all(|&e| e as u32 != raw), "{raw}"),
    }
}

fn vector_ok(raw: u64) {
    match Vector::from_raw(raw) {
        Some(v) => {
            assert_eq!(v as u64, raw);
            assert!(KNOWN_VECTORS.contains(&v));
            assert!(!v.name().is_empty());
        }
        None => assert!(KNOWN_VECTORS.iter().all(|&v| v as u64 != raw), "{raw}"),
    }
}

fn call_ok(raw: u32) {
    match Hypercall::from_raw(raw) {
        Some(c) => {
            assert_eq!(c as u32, raw);
            assert!(KNOWN_CALLS.contains(&c));
        }
        None => assert!(KNOWN_CALLS.iter().all(|&c| c as u32 != raw), "{raw}"),
    }
}

fn error_ok(ret: i64) {
    match HcError::from_ret(ret) {
        Some(e) => {
            assert_eq!(e.to_ret(), ret);
            assert!(ret < 0);
            assert!(KNOWN_ERRORS.contains(&e));
        }
        None => assert!(KNOWN_ERRORS.iter().all(|e| e.to_ret() != ret), "{ret}"),
    }
}

fn reason_ok(raw: u32) {
    match CrashReason::from_raw(raw) {
        Some(r) => {
            assert_eq!(r as u32, raw);
            assert!(KNOWN_REASONS.contains(&r));
            assert!(!r.describe().is_empty());
        }
        None => assert!(KNOWN_REASONS.iter().all(|&r| r as u32 != raw), "{raw}"),
    }
}

fn kind_ok(raw: u32) {
    match MemRegionKind::from_raw(raw) {
        Some(k) => {
            assert_eq!(k as u32, raw);
            assert!(KNOWN_KINDS.contains(&k));
        }
        None => assert!(KNOWN_KINDS.iter().all(|&k| k as u32 != raw), "{raw}"),
    }
}

/// Every defined value decodes to itself.
#[test]
fn known_values_round_trip() {
    for v in KNOWN_VECTORS {
        assert_eq!(Vector::from_raw(v as u64), Some(v));
    }
    for c in KNOWN_CALLS {
        assert_eq!(Hypercall::from_raw(c as u32), Some(c));
    }
    for e in KNOWN_ERRORS {
        assert_eq!(HcError::from_ret(e.to_ret()), Some(e));
    }
    for r in KNOWN_REASONS {
        assert_eq!(CrashReason::from_raw(r as u32), Some(r));
    }
    for k in KNOWN_KINDS {
        assert_eq!(MemRegionKind::from_raw(k as u32), Some(k));
    }
    for e in KNOWN_ENDS {
        assert_eq!(ProgramEnd::from_raw(e as u32), Some(e));
    }
}

/// Exhaustive over the ranges holding every defined value (and well beyond), plus the
/// extremes: a value decodes iff it is defined, and then to the variant with that value.
#[test]
fn small_ranges_exhaustive() {
    for raw in 0..=0x1_0000u64 {
        vector_ok(raw);
        call_ok(raw as u32);
        reason_ok(raw as u32);
        kind_ok(raw as u32);
        end_ok(raw as u32);
        error_ok(raw as i64);
        error_ok(-(raw as i64));
    }
    for raw in [
        u64::MAX,
        u64::MAX - 1,
        1 << 63,
        128 | (1 << 32),
        14 | (1 << 63),
    ] {
        vector_ok(raw);
    }
    for raw in [u32::MAX, u32::MAX - 1, 1 << 31, 0x8000_0001] {
        call_ok(raw);
        reason_ok(raw);
        kind_ok(raw);
        end_ok(raw);
    }
    for ret in [i64::MIN, i64::MIN + 1, i64::MAX, -1 << 32, (-1 << 32) - 1] {
        error_ok(ret);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// `Vector::from_raw` on any `u64`: `Some` exactly for defined vectors.
    #[test]
    fn vector_from_raw_any(raw in any::<u64>()) {
        vector_ok(raw);
    }

    /// `Hypercall::from_raw`, `CrashReason::from_raw`, `MemRegionKind::from_raw`,
    /// `ProgramEnd::from_raw` on any `u32`.
    #[test]
    fn u32_decoders_any(raw in any::<u32>()) {
        call_ok(raw);
        reason_ok(raw);
        kind_ok(raw);
        end_ok(raw);
    }

    /// `HcError::from_ret` on any `i64`: `Some` exactly for the six defined errors.
    #[test]
    fn hc_error_from_ret_any(ret in any::<i64>()) {
        error_ok(ret);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A `VcpuShared` page holding arbitrary bytes: `read_crash` copies every crash field out
    /// exactly as the bytes say (little endian, at the documented offsets), never panics.
    #[test]
    fn read_crash_copies_arbitrary_pages(page in proptest::collection::vec(any::<u8>(), 4096)) {
        let shared = VcpuShared::read_from_bytes(&page).expect("VcpuShared is one page");
        let c = shared.read_crash();
        let u32_at = |o: usize| u32::from_le_bytes(page[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(page[o..o + 8].try_into().unwrap());
        prop_assert_eq!(c.reason, u32_at(0x100));
        prop_assert_eq!(c.vector, u32_at(0x104));
        prop_assert_eq!(c.error_code, u64_at(0x108));
        prop_assert_eq!(c.fault_addr, u64_at(0x110));
        prop_assert_eq!(c.detail, u64_at(0x118));
        let regs = zerocopy::IntoBytes::as_bytes(&c.regs).to_vec();
        prop_assert_eq!(&regs[..], &page[0x120..0x120 + 21 * 8]);
        // The decoders accept whatever the record holds.
        reason_ok(c.reason);
        vector_ok(u64::from(c.vector));
        vector_ok(c.regs.vector);
    }
}
