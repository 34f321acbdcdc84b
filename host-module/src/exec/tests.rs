//! The host half of exec sessions against a guest that lies: garbage hypercall arguments,
//! unknown sessions, wrong phases, floods.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use pvmux_hypercalls::exec::{
    status, stream, ExecRequest, MAX_SESSIONS, OUTPUT_BUFFER, REQUEST_MAX,
};
use pvmux_hypercalls::{HcError, Hypercall};

use super::*;
use crate::GuestMemory;

fn setup() -> (GuestMemory, ExecHandle, Arc<AtomicUsize>) {
    let raised = Arc::new(AtomicUsize::new(0));
    let r2 = Arc::clone(&raised);
    let table = Arc::new(ExecTable::new(Box::new(move || {
        r2.fetch_add(1, SeqCst);
    })));
    (
        GuestMemory::new(16 << 20).unwrap(),
        ExecHandle { table },
        raised,
    )
}

fn call(mem: &GuestMemory, h: &ExecHandle, c: Hypercall, a: [u64; 4]) -> Result<u64, HcError> {
    hc(mem, Some(&h.table), c, [a[0], a[1], a[2], a[3], 0, 0])
}

const BUF: u64 = 0x10_0000;

/// Fetches the next request and returns its session id.
fn fetch(mem: &GuestMemory, h: &ExecHandle) -> u64 {
    let n = call(
        mem,
        h,
        Hypercall::ExecFetch,
        [BUF, REQUEST_MAX as u64, 0, 0],
    )
    .unwrap();
    let bytes = mem.read_vec(BUF, n as usize).unwrap();
    ExecRequest::parse(&bytes).unwrap().params().session
}

#[test]
fn a_session_from_request_to_exit() {
    let (mem, h, raised) = setup();
    let spec = ExecSpec {
        cwd: Some(b"/tmp".to_vec()),
        env: vec![b"A=b".to_vec()],
        user: Some((5, 6)),
        groups: Some(vec![10, 20]),
        caps: Some(CapSets {
            effective: 1 << 5,
            permitted: 1 << 5,
            inheritable: 0,
            bounding: 1 << 5,
            ambient: 0,
        }),
        ..ExecSpec::new(["cat", "-n"])
    };
    let mut s = h.exec(&spec).unwrap();
    assert_eq!(raised.load(SeqCst), 1);
    assert_eq!(s.try_wait(), None);
    // The request the guest reads is the spec.
    let n = call(&mem, &h, Hypercall::ExecFetch, [BUF, 4096, 0, 0]).unwrap();
    let bytes = mem.read_vec(BUF, n as usize).unwrap();
    let r = ExecRequest::parse(&bytes).unwrap();
    assert_eq!(r.params().session, s.id());
    assert_eq!(r.params().cwd, Some(&b"/tmp"[..]));
    assert_eq!(r.params().user, Some((5, 6)));
    assert!(r.params().groups.unwrap().iter().eq([10, 20]));
    assert_eq!(r.params().caps, spec.caps);
    assert!(r.args().eq([&b"cat"[..], b"-n"]));
    assert!(r.env().eq([&b"A=b"[..]]));
    assert_eq!(
        call(&mem, &h, Hypercall::ExecFetch, [BUF, 4096, 0, 0]),
        Err(HcError::Busy)
    );
    let id = s.id();
    call(
        &mem,
        &h,
        Hypercall::ExecStatus,
        [id, status::STARTED, 42, 0],
    )
    .unwrap();
    assert_eq!(s.wait_started(), Ok(42));
    // Input: busy, then bytes, then the end.
    assert_eq!(
        call(&mem, &h, Hypercall::ExecRead, [id, BUF, 100, 0]),
        Err(HcError::Busy)
    );
    let mut stdin = s.stdin().unwrap();
    stdin.write_all(b"hello").unwrap();
    assert_eq!(call(&mem, &h, Hypercall::ExecRead, [id, BUF, 3, 0]), Ok(3));
    assert_eq!(mem.read_vec(BUF, 3).unwrap(), b"hel");
    drop(stdin);
    assert_eq!(
        call(&mem, &h, Hypercall::ExecRead, [id, BUF, 100, 0]),
        Ok(2)
    );
    assert_eq!(
        call(&mem, &h, Hypercall::ExecRead, [id, BUF, 100, 0]),
        Ok(0)
    );
    // Output on both streams.
    mem.write(BUF, b"out!err!").unwrap();
    assert_eq!(
        call(&mem, &h, Hypercall::ExecWrite, [id, stream::STDOUT, BUF, 4]),
        Ok(4)
    );
    assert_eq!(
        call(
            &mem,
            &h,
            Hypercall::ExecWrite,
            [id, stream::STDERR, BUF + 4, 4]
        ),
        Ok(4)
    );
    call(
        &mem,
        &h,
        Hypercall::ExecStatus,
        [id, status::EXITED, 7 << 8, 0],
    )
    .unwrap();
    assert_eq!(s.wait(), ExecExit::Exited(7));
    assert_eq!(
        s.wait_started(),
        Ok(42),
        "the pid stays known after the end"
    );
    let (mut out, mut err) = (String::new(), String::new());
    s.stdout().unwrap().read_to_string(&mut out).unwrap();
    s.stderr().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!((out.as_str(), err.as_str()), ("out!", "err!"));
    // The ended session is unknown to the guest.
    assert_eq!(
        call(&mem, &h, Hypercall::ExecWrite, [id, stream::STDOUT, BUF, 1]),
        Err(HcError::InvalidArgument)
    );
    assert_eq!(h.table.live(), 0);
}

#[test]
fn failed_starts_give_shell_codes() {
    let (mem, h, _) = setup();
    for (errno, code) in [(2, 127), (20, 127), (13, 126), (8, 126)] {
        let s = h.exec(&ExecSpec::new(["nope"])).unwrap();
        let id = fetch(&mem, &h);
        assert_eq!(
            call(
                &mem,
                &h,
                Hypercall::ExecStatus,
                [id, status::FAILED, errno, 0]
            ),
            Ok(0)
        );
        assert_eq!(
            s.wait_started(),
            Err(ExecExit::NotStarted {
                errno: errno as i32
            })
        );
        assert_eq!(s.wait().code(), code);
    }
    assert_eq!(ExecExit::from_wait_status(9).code(), 137);
    assert_eq!(ExecExit::from_wait_status(3 << 8), ExecExit::Exited(3));
}

#[test]
fn lies_are_refused_and_change_nothing() {
    let (mem, h, _) = setup();
    let s = h.exec(&ExecSpec::new(["x"])).unwrap();
    let id = s.id();
    let inval = Err(HcError::InvalidArgument);
    // Before the fetch the session cannot start, write or read.
    assert_eq!(
        call(&mem, &h, Hypercall::ExecStatus, [id, status::STARTED, 5, 0]),
        inval
    );
    assert_eq!(
        call(&mem, &h, Hypercall::ExecWrite, [id, stream::STDOUT, BUF, 1]),
        inval
    );
    // A fetch into a bad or small buffer takes nothing.
    let size = mem.size();
    assert_eq!(
        call(&mem, &h, Hypercall::ExecFetch, [size - 10, 4096, 0, 0]),
        Err(HcError::BadAddress)
    );
    assert_eq!(
        call(&mem, &h, Hypercall::ExecFetch, [u64::MAX, u64::MAX, 0, 0]),
        Err(HcError::BadAddress)
    );
    assert_eq!(
        call(&mem, &h, Hypercall::ExecFetch, [BUF, 10, 0, 0]),
        Err(HcError::TooLarge)
    );
    assert_eq!(fetch(&mem, &h), id);
    for (kind, value) in [
        (status::EXITED, 0),        // not started yet
        (status::STARTED, 0),       // pid 0
        (status::STARTED, 1 << 31), // pid out of range
        (status::FAILED, 0),        // errno 0
        (status::FAILED, 5000),     // errno out of range
        (0, 1),
        (99, 1),
        (u64::MAX, u64::MAX),
    ] {
        assert_eq!(
            call(&mem, &h, Hypercall::ExecStatus, [id, kind, value, 0]),
            inval,
            "{kind} {value}"
        );
    }
    for other in [0, id + 1, u64::MAX] {
        assert_eq!(
            call(
                &mem,
                &h,
                Hypercall::ExecStatus,
                [other, status::STARTED, 1, 0]
            ),
            inval
        );
        assert_eq!(
            call(&mem, &h, Hypercall::ExecRead, [other, BUF, 1, 0]),
            inval
        );
    }
    for bad_stream in [0, 3, u64::MAX] {
        assert_eq!(
            call(&mem, &h, Hypercall::ExecWrite, [id, bad_stream, BUF, 1]),
            inval
        );
    }
    assert_eq!(
        call(
            &mem,
            &h,
            Hypercall::ExecWrite,
            [id, stream::STDOUT, BUF, 1 << 20]
        ),
        Err(HcError::TooLarge)
    );
    assert_eq!(
        call(
            &mem,
            &h,
            Hypercall::ExecWrite,
            [id, stream::STDOUT, size - 1, 2]
        ),
        Err(HcError::BadAddress)
    );
    assert_eq!(
        call(&mem, &h, Hypercall::ExecRead, [id, u64::MAX - 1, 4, 0]),
        Err(HcError::BadAddress)
    );
    assert_eq!(s.try_wait(), None);
    call(&mem, &h, Hypercall::ExecStatus, [id, status::STARTED, 9, 0]).unwrap();
    // Started once only; invalid wait statuses refused.
    assert_eq!(
        call(&mem, &h, Hypercall::ExecStatus, [id, status::STARTED, 9, 0]),
        inval
    );
    for ws in [0x7f, 65, 1 << 16, 0x107] {
        assert_eq!(
            call(&mem, &h, Hypercall::ExecStatus, [id, status::EXITED, ws, 0]),
            inval
        );
    }
    assert_eq!(s.try_wait(), None);
    // Without a table every call is unknown.
    assert_eq!(
        hc(&mem, None, Hypercall::ExecFetch, [BUF, 4096, 0, 0, 0, 0]),
        Err(HcError::UnknownCall)
    );
}

#[test]
fn a_flooding_guest_is_held_at_the_buffer_size() {
    let (mem, h, raised) = setup();
    let mut s = h.exec(&ExecSpec::new(["yes"])).unwrap();
    let id = fetch(&mem, &h);
    call(&mem, &h, Hypercall::ExecStatus, [id, status::STARTED, 2, 0]).unwrap();
    let chunk = pvmux_hypercalls::exec::IO_MAX;
    let mut accepted = 0;
    let mut busy = 0;
    for _ in 0..100 {
        match call(
            &mem,
            &h,
            Hypercall::ExecWrite,
            [id, stream::STDOUT, BUF, chunk],
        ) {
            Ok(n) => accepted += n,
            Err(HcError::Busy) => busy += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(accepted, OUTPUT_BUFFER as u64);
    assert_eq!(busy, 99);
    assert_eq!(s.peak_buffered(), (OUTPUT_BUFFER, 0));
    // Reading frees room and tells the guest.
    let before = raised.load(SeqCst);
    let mut out = s.stdout().unwrap();
    let mut buf = vec![0u8; 1000];
    assert_eq!(out.read(&mut buf).unwrap(), 1000);
    assert_eq!(raised.load(SeqCst), before + 1);
    assert_eq!(
        call(
            &mem,
            &h,
            Hypercall::ExecWrite,
            [id, stream::STDOUT, BUF, chunk]
        ),
        Ok(1000)
    );
    // A reader that goes away: output is taken and dropped.
    drop(out);
    for _ in 0..10 {
        assert_eq!(
            call(
                &mem,
                &h,
                Hypercall::ExecWrite,
                [id, stream::STDOUT, BUF, chunk]
            ),
            Ok(chunk)
        );
    }
    assert_eq!(s.peak_buffered().0, OUTPUT_BUFFER);
}

#[test]
fn sessions_are_bounded_and_end_with_the_tenant() {
    let (mem, h, _) = setup();
    let mut all: Vec<ExecSession> = (0..MAX_SESSIONS)
        .map(|_| h.exec(&ExecSpec::new(["sleep"])).unwrap())
        .collect();
    assert_eq!(
        h.exec(&ExecSpec::new(["one-more"])).unwrap_err(),
        ExecError::TooManySessions
    );
    let id = fetch(&mem, &h);
    call(&mem, &h, Hypercall::ExecStatus, [id, status::STARTED, 3, 0]).unwrap();
    let mut stdin = all[0].stdin().unwrap();
    h.table.close();
    for s in &all {
        assert_eq!(s.wait(), ExecExit::TenantEnded);
    }
    assert_eq!(
        stdin.write(b"x").unwrap_err().kind(),
        std::io::ErrorKind::BrokenPipe
    );
    let mut out = String::new();
    all[0].stdout().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out, "");
    assert_eq!(
        h.exec(&ExecSpec::new(["late"])).unwrap_err(),
        ExecError::NotRunning
    );
    assert_eq!(
        call(&mem, &h, Hypercall::ExecFetch, [BUF, 4096, 0, 0]),
        Err(HcError::Busy)
    );
}

#[test]
fn terminal_sizes_reach_the_guest_on_request() {
    let (mem, h, raised) = setup();
    let plain = h.exec(&ExecSpec::new(["a"])).unwrap();
    let tty = h
        .exec(&ExecSpec {
            tty: true,
            tty_size: Some((0, 100)),
            ..ExecSpec::new(["b"])
        })
        .unwrap();
    let size = |id| call(&mem, &h, Hypercall::ExecTermSize, [id, 0, 0, 0]);
    // Not before the fetch, never for a session without a terminal.
    assert_eq!(size(tty.id()), Err(HcError::InvalidArgument));
    assert_eq!(fetch(&mem, &h), plain.id());
    assert_eq!(fetch(&mem, &h), tty.id());
    assert_eq!(size(plain.id()), Err(HcError::InvalidArgument));
    assert_eq!(size(tty.id()), Ok(24 << 16 | 100));
    let before = raised.load(SeqCst);
    tty.resizer().resize(50, 0);
    assert_eq!(size(tty.id()), Ok(50 << 16 | 100));
    assert_eq!(raised.load(SeqCst), before + 1);
    tty.resizer().resize(50, 100);
    plain.resizer().resize(9, 9);
    assert_eq!(raised.load(SeqCst), before + 1, "no change, no event");
    assert_eq!(size(u64::MAX), Err(HcError::InvalidArgument));
}

/// Signals for a session's program wait for the guest's `ExecSignalTake` (each raising
/// `pending::EXEC`), are taken once, and stop with the session; out-of-range numbers are
/// dropped.
#[test]
fn signals_reach_the_guest_on_request() {
    let (mem, h, raised) = setup();
    let s = h.exec(&ExecSpec::new(["a"])).unwrap();
    let take = |id| call(&mem, &h, Hypercall::ExecSignalTake, [id, 0, 0, 0]);
    let before = raised.load(SeqCst);
    s.signaller().signal(15);
    s.signaller().signal(15);
    s.signaller().signal(2);
    s.signaller().signal(0);
    s.signaller().signal(64);
    assert_eq!(raised.load(SeqCst), before + 3);
    // Not before the fetch; then taken once.
    assert_eq!(take(s.id()), Err(HcError::InvalidArgument));
    assert_eq!(fetch(&mem, &h), s.id());
    assert_eq!(take(s.id()), Ok(1 << 14 | 1 << 1));
    assert_eq!(take(s.id()), Ok(0));
    assert_eq!(take(u64::MAX), Err(HcError::InvalidArgument));
    // Ended: the session is unknown, and signals change nothing.
    assert_eq!(
        call(
            &mem,
            &h,
            Hypercall::ExecStatus,
            [s.id(), pvmux_hypercalls::exec::status::FAILED, 2, 0]
        ),
        Ok(0)
    );
    let after = raised.load(SeqCst);
    s.signaller().signal(9);
    assert_eq!(raised.load(SeqCst), after);
    assert_eq!(take(s.id()), Err(HcError::InvalidArgument));
}

#[test]
fn malformed_specs_are_refused_before_the_guest() {
    let (_, h, raised) = setup();
    let cases = [
        (ExecSpec::default(), ExecError::NoProgram),
        (ExecSpec::new(["a\0b"]), ExecError::Malformed),
        (
            ExecSpec {
                cwd: Some(b"rel".to_vec()),
                ..ExecSpec::new(["a"])
            },
            ExecError::Malformed,
        ),
        (ExecSpec::new([vec![b'a'; REQUEST_MAX]]), ExecError::TooLong),
        (
            ExecSpec {
                groups: Some(vec![20, 10]),
                ..ExecSpec::new(["a"])
            },
            ExecError::BadGroups,
        ),
        (
            ExecSpec {
                groups: Some(vec![10, 10]),
                ..ExecSpec::new(["a"])
            },
            ExecError::BadGroups,
        ),
        (
            ExecSpec {
                groups: Some((0..=pvmux_hypercalls::bootargs::GROUPS_MAX as u32).collect()),
                ..ExecSpec::new(["a"])
            },
            ExecError::BadGroups,
        ),
        (
            ExecSpec {
                caps: Some(CapSets {
                    effective: 1,
                    ..CapSets::default()
                }),
                ..ExecSpec::new(["a"])
            },
            ExecError::BadCaps,
        ),
        (
            ExecSpec {
                caps: Some(CapSets {
                    bounding: 1 << 63,
                    ..CapSets::default()
                }),
                ..ExecSpec::new(["a"])
            },
            ExecError::BadCaps,
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(h.exec(&spec).unwrap_err(), want);
    }
    assert_eq!(raised.load(SeqCst), 0);
}

/// A kernel switch's check of the sessions a record names: exactly those whose program
/// runs, with their pids; one being started refuses; queued ones are left to the next
/// kernel.
#[test]
fn a_record_must_name_exactly_the_running_sessions() {
    let (mem, h, _) = setup();
    let spec = ExecSpec::new(["true"]);
    let (a, b, _queued) = (
        h.exec(&spec).unwrap(),
        h.exec(&spec).unwrap(),
        h.exec(&spec).unwrap(),
    );
    assert_eq!(h.table.check_carried(&[]), Ok(()));
    assert_eq!(fetch(&mem, &h), a.id());
    let starting = h.table.check_carried(&[]).unwrap_err();
    assert!(starting.contains("is starting"), "{starting}");
    let started = |id: u64, pid: u64| {
        call(
            &mem,
            &h,
            Hypercall::ExecStatus,
            [id, status::STARTED, pid, 0],
        )
        .unwrap();
    };
    started(a.id(), 40);
    assert_eq!(fetch(&mem, &h), b.id());
    started(b.id(), 41);
    let (ia, ib) = (a.id(), b.id());
    assert_eq!(h.table.check_carried(&[(ia, 40), (ib, 41)]), Ok(()));
    for bad in [
        &[(ia, 40)][..],
        &[(ia, 40), (ib, 42)],
        &[(ia, 40), (ib, 41), (99, 43)],
        &[(ib, 41), (ia, 40)],
        &[],
    ] {
        assert!(h.table.check_carried(bad).is_err(), "{bad:?}");
    }
    // One ended: the record no longer names it.
    call(&mem, &h, Hypercall::ExecStatus, [ia, status::EXITED, 0, 0]).unwrap();
    assert_eq!(h.table.check_carried(&[(ib, 41)]), Ok(()));
}
