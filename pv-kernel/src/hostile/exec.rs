//! `hostile=exec`: a guest kernel that lies to the host about exec sessions (hypercalls
//! 25..=29). Malformed calls get their documented errors; then, for the one request the host
//! test queued, the case fetches it, reports `STARTED` twice and impossible statuses, floods
//! the session's stdout (the host takes at most its buffer and answers `Busy`), reads input
//! that is not there, and ends it with a made-up exit code 42, after which the session is
//! unknown. The host must survive, hold no more than its buffer, and report 42.

use pvmux_hypercalls::exec::{status, stream, ExecRequest, IO_MAX, OUTPUT_BUFFER, REQUEST_MAX};
use pvmux_hypercalls::{HcError, Hypercall};

use super::args::{eq, expect};
use crate::hcall;

const INVAL: i64 = HcError::InvalidArgument.to_ret();
const BADADDR: i64 = HcError::BadAddress.to_ret();
const TOOLARGE: i64 = HcError::TooLarge.to_ret();
const BUSY: i64 = HcError::Busy.to_ret();

/// One result that must be `want`.
fn is(what: &str, got: i64, want: i64) -> bool {
    expect(what, got, eq(want), &alloc::format!("{want}"))
}

fn hc(nr: Hypercall, a: [u64; 5]) -> i64 {
    hcall::raw(nr as u64, a)
}

/// Runs the case; true if every result was as documented.
pub(crate) fn run() -> bool {
    let mem = crate::boot::info().mem_size;
    let buf = alloc::vec![0u8; REQUEST_MAX];
    let gpa = crate::boot::virt_to_phys(buf.as_ptr() as u64, buf.len() as u64).unwrap_or(0);
    let mut ok = true;
    for (what, a) in [
        ("ExecFetch past memory", [mem - 8, 4096, 0, 0, 0]),
        ("ExecFetch wrapping", [u64::MAX - 16, u64::MAX, 0, 0, 0]),
    ] {
        ok &= is(what, hc(Hypercall::ExecFetch, a), BADADDR);
    }
    for s in [0, 1000, u64::MAX] {
        ok &= is(
            "ExecStatus of an unknown session",
            hc(Hypercall::ExecStatus, [s, status::STARTED, 5, 0, 0]),
            INVAL,
        );
        ok &= is(
            "ExecRead of an unknown session",
            hc(Hypercall::ExecRead, [s, gpa, 16, 0, 0]),
            INVAL,
        );
    }
    // The host test queues one request; wait for it (bounded).
    let mut got = BUSY;
    for _ in 0..10_000 {
        got = hc(Hypercall::ExecFetch, [gpa, buf.len() as u64, 0, 0, 0]);
        if got != BUSY {
            break;
        }
        crate::time::sleep_ms(1);
    }
    if !expect(
        "ExecFetch of the queued request",
        got,
        |v| v > 0,
        "its length",
    ) {
        return false;
    }
    let Ok(req) = ExecRequest::parse(&buf[..got as usize]) else {
        crate::println!("hostile: the host's request does not parse: MISMATCH");
        return false;
    };
    let id = req.params().session;
    ok &= is(
        "ExecFetch with nothing queued",
        hc(Hypercall::ExecFetch, [gpa, 4096, 0, 0, 0]),
        BUSY,
    );
    ok &= is(
        "ExecStatus EXITED before STARTED",
        hc(Hypercall::ExecStatus, [id, status::EXITED, 0, 0, 0]),
        INVAL,
    );
    for (what, kind, value) in [
        ("pid 0", status::STARTED, 0),
        ("pid 2^31", status::STARTED, 1 << 31),
        ("errno 0", status::FAILED, 0),
        ("unknown kind", 77, 1),
    ] {
        ok &= is(
            what,
            hc(Hypercall::ExecStatus, [id, kind, value, 0, 0]),
            INVAL,
        );
    }
    ok &= is(
        "ExecStatus STARTED",
        hc(Hypercall::ExecStatus, [id, status::STARTED, 4242, 0, 0]),
        0,
    );
    ok &= is(
        "ExecStatus STARTED twice",
        hc(Hypercall::ExecStatus, [id, status::STARTED, 4243, 0, 0]),
        INVAL,
    );
    for ws in [0x7f, 65, 1 << 16, u64::MAX] {
        ok &= is(
            "ExecStatus EXITED with an impossible wait status",
            hc(Hypercall::ExecStatus, [id, status::EXITED, ws, 0, 0]),
            INVAL,
        );
    }
    for (what, nr, a, want) in [
        (
            "ExecWrite stream 0",
            Hypercall::ExecWrite,
            [id, 0, gpa, 1, 0],
            INVAL,
        ),
        (
            "ExecWrite stream 3",
            Hypercall::ExecWrite,
            [id, 3, gpa, 1, 0],
            INVAL,
        ),
        (
            "ExecWrite too long",
            Hypercall::ExecWrite,
            [id, stream::STDOUT, gpa, IO_MAX + 1, 0],
            TOOLARGE,
        ),
        (
            "ExecWrite past memory",
            Hypercall::ExecWrite,
            [id, stream::STDOUT, mem - 1, 2, 0],
            BADADDR,
        ),
        (
            "ExecRead past memory",
            Hypercall::ExecRead,
            [id, mem - 1, 2, 0, 0],
            BADADDR,
        ),
        (
            "ExecRead with no input yet",
            Hypercall::ExecRead,
            [id, gpa, 16, 0, 0],
            BUSY,
        ),
        (
            "ExecTermSize of a session without a terminal",
            Hypercall::ExecTermSize,
            [id, 0, 0, 0, 0],
            INVAL,
        ),
        (
            "ExecTermSize of an unknown session",
            Hypercall::ExecTermSize,
            [u64::MAX, 0, 0, 0, 0],
            INVAL,
        ),
    ] {
        ok &= is(what, hc(nr, a), want);
    }
    // Flood: the host takes one buffer's worth, then says Busy.
    let mut taken = 0i64;
    let mut busy = 0;
    for _ in 0..64 {
        match hc(Hypercall::ExecWrite, [id, stream::STDOUT, gpa, IO_MAX, 0]) {
            n if n > 0 => taken += n,
            BUSY => busy += 1,
            other => ok &= is("ExecWrite while flooding", other, BUSY),
        }
    }
    ok &= is(
        "bytes the host took from the flood",
        taken,
        OUTPUT_BUFFER as i64,
    );
    ok &= expect("Busy answers to the flood", busy, |b| b >= 62, ">= 62");
    ok &= is(
        "ExecStatus EXITED 42 (a lie the host believes)",
        hc(Hypercall::ExecStatus, [id, status::EXITED, 42 << 8, 0, 0]),
        0,
    );
    ok &= is(
        "ExecWrite after the end",
        hc(Hypercall::ExecWrite, [id, stream::STDOUT, gpa, 1, 0]),
        INVAL,
    );
    ok &= is(
        "ExecStatus after the end",
        hc(Hypercall::ExecStatus, [id, status::EXITED, 0, 0, 0]),
        INVAL,
    );
    ok
}
