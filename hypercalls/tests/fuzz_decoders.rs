//! Property tests of the ABI decoders the host applies to guest-controlled numbers.
//!
//! Every `from_raw`/`from_ret` must round-trip the values this ABI version defines and return
//! `None` for everything else: exhaustively over small ranges (where all defined values live),
//! and with proptest over the whole input type. `VcpuShared::read_crash` must copy any bit
//! pattern of the shared page out faithfully, field by field. The boot-argument decoder must
//! be total on any bytes (and on mutations of valid encodings), accept exactly what the
//! encoder writes, and give back what was encoded; the word parser must be total too.
//!
//! Case counts are bounded (`PROPTEST_CASES` raises them).

use proptest::prelude::*;
use pvmux_hypercalls::boot::MemRegionKind;
use pvmux_hypercalls::bootargs::words::Words;
use pvmux_hypercalls::bootargs::{
    env_entry_ok, workdir_ok, BootArgs, BootArgsBuf, Command, ConsoleSize, EncodeError, Gids,
    Options, Terminals, BOOT_ARGS_MAX,
};
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
const KNOWN_CALLS: [Hypercall; 53] = [
    Hypercall::Nop,
    Hypercall::DiskTake,
    Hypercall::DiskSubmit,
    Hypercall::DiskReport,
    Hypercall::ConsoleWrite,
    Hypercall::Shutdown,
    Hypercall::Panic,
    Hypercall::WallClock,
    Hypercall::SpaceCreate,
    Hypercall::SpaceDestroy,
    Hypercall::ConsoleRead,
    Hypercall::HostfsList,
    Hypercall::HostfsRead,
    Hypercall::VolumeOp,
    Hypercall::NetSocket,
    Hypercall::NetBind,
    Hypercall::NetListen,
    Hypercall::NetAccept,
    Hypercall::NetConnect,
    Hypercall::NetSend,
    Hypercall::NetRecv,
    Hypercall::NetShutdown,
    Hypercall::NetClose,
    Hypercall::NetPoll,
    Hypercall::NetName,
    Hypercall::NetSetOpt,
    Hypercall::NetGetOpt,
    Hypercall::NetPublished,
    Hypercall::ExecFetch,
    Hypercall::ExecStatus,
    Hypercall::ExecWrite,
    Hypercall::ExecRead,
    Hypercall::ExecTermSize,
    Hypercall::HostfsLookup,
    Hypercall::SignalTake,
    Hypercall::ConsoleWinsize,
    Hypercall::ExecSignalTake,
    Hypercall::TaskLimitTake,
    Hypercall::StatsReport,
    Hypercall::ChannelSend,
    Hypercall::ChannelRecv,
    Hypercall::ChannelCtl,
    Hypercall::BalloonTake,
    Hypercall::BalloonReport,
    Hypercall::SnapshotPark,
    Hypercall::SnapshotResumed,
    Hypercall::HandoverTake,
    Hypercall::HandoverRecord,
    Hypercall::HandoverAdopted,
    Hypercall::HandoverFetch,
    Hypercall::DiskMounted,
    Hypercall::WindowOpen,
    Hypercall::WindowRead,
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

/// A command from generated parts: `kind` picks the variant, `n`, `text` and `gids` (a
/// valid little-endian group list) its payload.
fn command<'a>(kind: u8, n: u64, text: &'a str, gids: &'a [u8]) -> Command<'a> {
    let t = text.as_bytes();
    match kind % 16 {
        15 => Command::SlowExit(n),
        14 => Command::Groups(Gids::from_le_bytes(gids).expect("generated ascending")),
        0 => Command::Selftest,
        1 => Command::FsSelftest,
        2 => Command::Exit(n),
        3 => Command::Sleep(n),
        4 => Command::Panic,
        5 => Command::Syscall,
        6 => Command::CrashDoubleFault,
        7 => Command::CrashStubSyscall,
        8 => Command::Bench(text),
        9 => Command::Hostile(text),
        10 => Command::Ls(text),
        12 if env_entry_ok(t) => Command::Env(t),
        13 if workdir_ok(t) => Command::Workdir(t),
        11 if workdir_ok(t) => Command::Volume(pvmux_hypercalls::bootargs::VolumeMount {
            id: (n % 64) as u32,
            read_only: n & 64 != 0,
            path: t,
        }),
        _ => Command::Cat(text),
    }
}

/// Options from generated parts.
fn options(bits: u16, size: (u16, u16), pid: u64, seed: u64, canary: &str) -> Options<'_> {
    let on = |b: u16| bits & (1 << b) != 0;
    Options {
        terminals: Terminals {
            stdin: on(0),
            stdout: on(1),
            stderr: on(2),
        },
        console_size: ConsoleSize::new(size.0, size.1),
        syscall_report: on(3),
        quiet: on(4),
        hostfs: on(5),
        bench_quick: on(6),
        host_pid: on(7).then_some(pid),
        seed: on(8).then_some(seed),
        canary: (on(9) && !canary.is_empty()).then_some(canary),
    }
}

/// Decodes `bytes`; when they decode, re-encoding the result must give the same bytes (the
/// encoding is canonical: nothing the decoder accepts is lost or ignored).
fn decode_is_canonical(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(args) = BootArgs::decode(bytes) {
        let again = BootArgsBuf::new(&args.options, args.commands(), args.argv())
            .map_err(|e| TestCaseError::fail(format!("re-encoding failed: {e}")))?;
        prop_assert_eq!(again.as_bytes(), bytes);
        prop_assert!(args.commands().count() <= bytes.len() / 4);
        prop_assert!(args.argv().count() <= bytes.len() / 2);
        // Display never panics.
        let _ = args.to_string();
    }
    Ok(())
}

/// A strategy for generated commands: (kind, number, text, group list).
#[allow(clippy::type_complexity)]
fn commands() -> impl Strategy<Value = Vec<(u8, u64, String, Vec<u8>)>> {
    let gids = proptest::collection::btree_set(any::<u32>(), 0..6).prop_map(|s| {
        s.into_iter()
            .flat_map(u32::to_le_bytes)
            .collect::<Vec<u8>>()
    });
    proptest::collection::vec(
        (any::<u8>(), any::<u64>(), "[a-z0-9/,._é= -]{1,24}", gids),
        0..12,
    )
}

/// A strategy for generated arguments (any bytes, empty ones included).
fn arguments() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Any bytes: decoding never panics; what decodes is canonical.
    #[test]
    fn boot_args_decode_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2100)) {
        decode_is_canonical(&bytes)?;
    }

    /// A well-formed header over garbage records: kinds around the defined ones, payloads
    /// of any bytes and lengths, counts that may be off.
    #[test]
    fn boot_args_decode_garbage_records(
        flags in 0u32..64,
        records in proptest::collection::vec((0u16..22, proptest::collection::vec(any::<u8>(), 0..12)), 0..10),
        args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..6),
        skew in (-1i32..=1, -1i32..=1),
    ) {
        let mut body = Vec::new();
        for (kind, payload) in &records {
            body.extend_from_slice(&kind.to_le_bytes());
            body.extend_from_slice(&(payload.len() as u16).to_le_bytes());
            body.extend_from_slice(payload);
        }
        for a in &args {
            body.extend_from_slice(&(a.len() as u16).to_le_bytes());
            body.extend_from_slice(a);
        }
        let header = pvmux_hypercalls::bootargs::BootArgsHeader {
            magic: pvmux_hypercalls::bootargs::BOOT_ARGS_MAGIC,
            version: pvmux_hypercalls::bootargs::BOOT_ARGS_VERSION,
            header_len: 48,
            total_len: 48 + body.len() as u32,
            flags: flags & !0x30,
            nr_commands: (records.len() as i32 + skew.0).max(0) as u16,
            nr_args: (args.len() as i32 + skew.1).max(0) as u16,
            ..Default::default()
        };
        let mut bytes = zerocopy::IntoBytes::as_bytes(&header).to_vec();
        bytes.extend_from_slice(&body);
        decode_is_canonical(&bytes)?;
        if skew == (0, 0) && records.iter().all(|(k, p)| match k {
            1 | 2 | 5..=8 => p.is_empty(),
            3 | 4 => p.len() == 8,
            9..=12 => std::str::from_utf8(p).is_ok_and(|s| !s.is_empty()),
            13 => env_entry_ok(p),
            14 => workdir_ok(p),
            19 => p.len() % 4 == 0
                && p.chunks(4)
                    .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                    .collect::<Vec<_>>()
                    .windows(2)
                    .all(|w| w[0] < w[1]),
            _ => false,
        }) {
            prop_assert!(BootArgs::decode(&bytes).is_ok());
        }
    }

    /// Valid encodings with a few bytes changed, or cut short: never a panic; what still
    /// decodes is canonical.
    #[test]
    fn boot_args_decode_mutated(
        bits in any::<u16>(),
        size in any::<(u16, u16)>(),
        pid in any::<u64>(),
        seed in any::<u64>(),
        canary in "[a-z/]{0,12}",
        cmds in commands(),
        argv in arguments(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let o = options(bits, size, pid, seed, &canary);
        let cmds = cmds.iter().map(|(k, n, t, g)| command(*k, *n, t, g));
        let Ok(buf) = BootArgsBuf::new(&o, cmds, &argv) else {
            return Ok(());
        };
        let mut bytes = buf.as_bytes().to_vec();
        for (at, v) in flips {
            let at = at % bytes.len();
            bytes[at] ^= v | 1;
        }
        decode_is_canonical(&bytes)?;
        decode_is_canonical(&bytes[..cut % bytes.len()])?;
        decode_is_canonical(&buf.as_bytes()[..cut % buf.as_bytes().len()])?;
    }

    /// Any typed value round-trips through the encoding, or is refused as too long.
    #[test]
    fn boot_args_round_trip(
        bits in any::<u16>(),
        size in any::<(u16, u16)>(),
        pid in any::<u64>(),
        seed in any::<u64>(),
        canary in "[a-z/é]{0,300}",
        cmds in commands(),
        argv in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 0..12),
    ) {
        let o = options(bits, size, pid, seed, &canary);
        let cmds: Vec<Command<'_>> = cmds.iter().map(|(k, n, t, g)| command(*k, *n, t, g)).collect();
        let need = 48
            + o.canary.map_or(0, str::len)
            + cmds.iter().map(|c| 4 + match c {
                Command::Exit(_) | Command::Sleep(_) | Command::SlowExit(_) => 8,
                Command::Bench(t) | Command::Hostile(t) | Command::Ls(t) | Command::Cat(t) => {
                    t.len()
                }
                Command::Env(t) | Command::Workdir(t) => t.len(),
                Command::Volume(v) => 8 + v.path.len(),
                Command::Groups(g) => 4 * g.len(),
                _ => 0,
            }).sum::<usize>()
            + argv.iter().map(|a| 2 + a.len()).sum::<usize>();
        match BootArgsBuf::new(&o, cmds.iter().copied(), &argv) {
            Ok(buf) => {
                prop_assert_eq!(buf.as_bytes().len(), need);
                let args = BootArgs::decode(buf.as_bytes()).expect("decodes");
                prop_assert_eq!(args.options, o);
                prop_assert!(args.commands().eq(cmds.iter().copied()));
                prop_assert!(args.argv().eq(argv.iter().map(Vec::as_slice)));
                prop_assert_eq!(
                    args.needs_diagnostics(),
                    cmds.iter().any(|c| !matches!(
                        c,
                        Command::Exit(_)
                            | Command::Sleep(_)
                            | Command::Ls(_)
                            | Command::Cat(_)
                            | Command::Env(_)
                            | Command::Workdir(_)
                            | Command::Volume(_)
                            | Command::Groups(_)
                    ))
                );
            }
            Err(EncodeError::TooLong { limit, .. }) => {
                prop_assert_eq!(limit, BOOT_ARGS_MAX);
                prop_assert!(need > BOOT_ARGS_MAX);
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }

    /// Any text: the word parser never panics; what it accepts encodes (or is too long), and
    /// the encoding's words parse back to the same arguments when its arguments are plain.
    #[test]
    fn words_parse_any_text(line in "(( |[a-z_=x/,-]{1,8}|exit=[0-9]{1,3}|--|console-size=[0-9x]{1,6}|console-tty=[0-9])){0,16}") {
        if let Ok(w) = Words::parse(&line) {
            if let Ok(buf) = w.encode() {
                let text = buf.to_string();
                let again = BootArgsBuf::from_words(&text).expect("display parses");
                prop_assert_eq!(again.args(), buf.args());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes: an exec request is refused or parses into strings that re-encode to the
    /// same bytes (the encoding is canonical).
    #[test]
    fn exec_request_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        exec_request_canonical(&bytes)?;
    }

    /// Valid requests with one byte changed: refused, or canonical again.
    #[test]
    fn exec_request_mutated(
        args in proptest::collection::vec(proptest::collection::vec(1u8..=255, 0..12), 1..4),
        env in proptest::collection::vec(proptest::collection::vec(1u8..=255, 0..12), 0..3),
        session in 1u64..,
        at in any::<usize>(),
        byte in any::<u8>(),
        groups in proptest::option::of(proptest::collection::btree_set(any::<u32>(), 0..5)),
    ) {
        use pvmux_hypercalls::bootargs::{CapSets, Gids};
        use pvmux_hypercalls::exec::{encode, encoded_len, ExecParams};
        let a: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let e: Vec<&[u8]> = env.iter().map(Vec::as_slice).collect();
        let tty = session % 2 == 0;
        let gid_bytes: Option<Vec<u8>> =
            groups.map(|g| g.iter().flat_map(|id| id.to_le_bytes()).collect());
        let p = ExecParams {
            session,
            tty,
            tty_size: if tty { (24, 80) } else { (0, 0) },
            user: None,
            cwd: Some(b"/x"),
            rlimits: Default::default(),
            groups: gid_bytes.as_deref().map(|b| Gids::from_le_bytes(b).unwrap()),
            caps: (session % 3 == 0).then_some(CapSets::FULL),
        };
        let mut buf = vec![0u8; encoded_len(&p, &a, &e).unwrap()];
        let n = encode(&mut buf, &p, &a, &e).unwrap();
        prop_assert_eq!(n, buf.len());
        let r = pvmux_hypercalls::exec::ExecRequest::parse(&buf).unwrap();
        prop_assert_eq!(r.params(), p);
        prop_assert!(r.args().eq(a.iter().copied()));
        prop_assert!(r.env().eq(e.iter().copied()));
        let i = at % buf.len();
        buf[i] = byte;
        exec_request_canonical(&buf)?;
    }
}

fn exec_request_canonical(bytes: &[u8]) -> Result<(), TestCaseError> {
    use pvmux_hypercalls::exec::{encode, ExecRequest};
    if let Ok(r) = ExecRequest::parse(bytes) {
        let a: Vec<&[u8]> = r.args().collect();
        let e: Vec<&[u8]> = r.env().collect();
        let mut out = vec![0u8; bytes.len()];
        let n = encode(&mut out, &r.params(), &a, &e);
        prop_assert_eq!(n, Ok(bytes.len()));
        prop_assert_eq!(&out[..], bytes);
    }
    Ok(())
}
