//! `hostile=net`: malformed arguments to the host network calls (hypercalls 11..=24). Each
//! must get its documented error and the host must survive; the case also exhausts the
//! per-tenant socket limit and checks that closing frees it. Without host networking every
//! call must be `UnknownCall`. With only a `--publish .../udp` rule (the test sends
//! datagrams to it), the host-only calls are `UnknownCall` and a flow handle takes no
//! malformed argument, answers its client once (`echo:` and the first datagram) and closes.

use pvmux_hypercalls::net::{NetAddr, NetPublish, DEFAULT_MAX_SOCKETS, PUBLISH_UDP};
use pvmux_hypercalls::{HcError, Hypercall};
use zerocopy::{FromBytes, IntoBytes};

use super::args::{eq, expect};
use crate::hcall;

const INVAL: i64 = HcError::InvalidArgument.to_ret();
const BADADDR: i64 = HcError::BadAddress.to_ret();
const UNKNOWN: i64 = HcError::UnknownCall.to_ret();
const NORES: i64 = HcError::NoResources.to_ret();
const BUSY: i64 = HcError::Busy.to_ret();

fn hc(nr: Hypercall, a: [u64; 5]) -> i64 {
    hcall::raw(nr as u64, a)
}

/// The guest-physical address of a kernel buffer.
fn gpa(b: &[u8]) -> u64 {
    crate::boot::virt_to_phys(b.as_ptr() as u64, b.len() as u64).unwrap_or(0)
}

/// Runs the case; true if every result was as documented.
pub(crate) fn run() -> bool {
    let mem = crate::boot::info().mem_size;
    let probe = hc(Hypercall::NetSocket, [2, 1, 0, 0, 0]);
    if probe == UNKNOWN && hc(Hypercall::NetPublished, [u64::MAX, 0, 0, 0, 0]) == BADADDR {
        return publish_udp(mem);
    }
    if probe == UNKNOWN {
        // No host networking: every network call is unknown.
        let mut ok = true;
        for nr in 11..=24u64 {
            let got = hcall::raw(nr, [1, 0, 0, 0, 0]);
            ok &= expect(
                &alloc::format!("net call {nr} without networking"),
                got,
                eq(UNKNOWN),
                "UnknownCall",
            );
        }
        return ok;
    }
    let mut ok = expect("NetSocket(AF_INET, STREAM)", probe, |v| v >= 1, "a handle");
    let h = probe as u64;
    let mut check = |what: &str, got: i64, want: i64| {
        ok &= expect(what, got, eq(want), &alloc::format!("{want}"));
    };
    check(
        "NetSocket raw",
        hc(Hypercall::NetSocket, [2, 3, 0, 0, 0]),
        INVAL,
    );
    check(
        "NetSocket AF_UNIX",
        hc(Hypercall::NetSocket, [1, 1, 0, 0, 0]),
        INVAL,
    );
    check(
        "NetSocket AF_PACKET",
        hc(Hypercall::NetSocket, [17, 3, 0, 0, 0]),
        INVAL,
    );
    check(
        "NetSocket type with flags",
        hc(Hypercall::NetSocket, [2, 1 | 0o4000, 0, 0, 0]),
        INVAL,
    );
    check(
        "NetBind unknown handle",
        hc(Hypercall::NetBind, [h + 1000, 0, 0, 0, 0]),
        INVAL,
    );
    check(
        "NetBind address past memory",
        hc(Hypercall::NetBind, [h, mem - 8, 0, 0, 0]),
        BADADDR,
    );
    check(
        "NetBind address u64::MAX",
        hc(Hypercall::NetBind, [h, u64::MAX, 0, 0, 0]),
        BADADDR,
    );
    let bad = NetAddr {
        family: 1,
        ..NetAddr::default()
    };
    let bad = alloc::vec::Vec::from(bad.as_bytes());
    check(
        "NetBind AF_UNIX address",
        hc(Hypercall::NetBind, [h, gpa(&bad), 0, 0, 0]),
        INVAL,
    );
    let mut junk4 = NetAddr {
        family: 2,
        ..NetAddr::default()
    };
    junk4.addr[10] = 1;
    let junk4 = alloc::vec::Vec::from(junk4.as_bytes());
    check(
        "NetBind IPv4 with junk",
        hc(Hypercall::NetBind, [h, gpa(&junk4), 0, 0, 0]),
        INVAL,
    );
    check(
        "NetSend buffer past memory",
        hc(Hypercall::NetSend, [h, mem - 4, u64::MAX, 0, 0]),
        BADADDR,
    );
    let buf = alloc::vec![0u8; 64];
    check(
        "NetRecv bad flags",
        hc(Hypercall::NetRecv, [h, gpa(&buf), 64, 0, 0xff]),
        INVAL,
    );
    check(
        "NetRecv buffer past memory",
        hc(Hypercall::NetRecv, [h, mem, 16, 0, 0]),
        BADADDR,
    );
    check(
        "NetShutdown how 7",
        hc(Hypercall::NetShutdown, [h, 7, 0, 0, 0]),
        INVAL,
    );
    check(
        "NetPoll events too wide",
        hc(Hypercall::NetPoll, [h, 1 << 20, 0, 0, 0]),
        INVAL,
    );
    check(
        "NetName which 5",
        hc(Hypercall::NetName, [h, 5, gpa(&buf), 0, 0]),
        INVAL,
    );
    check(
        "NetSetOpt IP_HDRINCL",
        hc(Hypercall::NetSetOpt, [h, 0, 3, 1, 0]),
        INVAL,
    );
    check(
        "NetSetOpt SO_ERROR",
        hc(Hypercall::NetSetOpt, [h, 1, 4, 0, 0]),
        INVAL,
    );
    check(
        "NetGetOpt level u64::MAX",
        hc(Hypercall::NetGetOpt, [h, u64::MAX, 1, 0, 0]),
        INVAL,
    );
    check(
        "NetSetOpt SO_BINDTODEVICE",
        hc(Hypercall::NetSetOpt, [h, 1, 25, 0, 0]),
        INVAL,
    );
    check(
        "NetPublished record past memory",
        hc(Hypercall::NetPublished, [mem - 8, 0, 0, 0, 0]),
        BADADDR,
    );
    check(
        "NetListen unknown handle",
        hc(Hypercall::NetListen, [0, 1, 0, 0, 0]),
        INVAL,
    );
    // The per-tenant limit: sockets until NoResources, then closing frees them.
    let mut handles = alloc::vec::Vec::new();
    let mut last = 0;
    for _ in 0..DEFAULT_MAX_SOCKETS + 8 {
        last = hc(Hypercall::NetSocket, [10, 2, 0, 0, 0]);
        if last < 0 {
            break;
        }
        handles.push(last as u64);
    }
    check("NetSocket past the limit", last, NORES);
    for x in &handles {
        hc(Hypercall::NetClose, [*x, 0, 0, 0, 0]);
    }
    let again = hc(Hypercall::NetSocket, [2, 2, 0, 0, 0]);
    let again_ok = expect("NetSocket after closing", again, |v| v >= 1, "a handle");
    check("NetClose", hc(Hypercall::NetClose, [h, 0, 0, 0, 0]), 0);
    check(
        "NetClose twice",
        hc(Hypercall::NetClose, [h, 0, 0, 0, 0]),
        INVAL,
    );
    check(
        "NetPoll closed handle",
        hc(Hypercall::NetPoll, [h, 1, 0, 0, 0]),
        INVAL,
    );
    hc(Hypercall::NetClose, [again as u64, 0, 0, 0, 0]);
    ok && again_ok
}

/// Calls 16..=23 with the `--publish .../udp` flow the test's datagrams open.
fn publish_udp(mem: u64) -> bool {
    let mut ok = true;
    let mut check = |what: &str, got: i64, want: i64| {
        ok &= expect(what, got, eq(want), &alloc::format!("{want}"));
    };
    for nr in 11..=15u64 {
        check(
            &alloc::format!("net call {nr} with only --publish"),
            hcall::raw(nr, [1, 0, 0, 0, 0]),
            UNKNOWN,
        );
    }
    // The test keeps sending until it hears back.
    let rec = alloc::vec![0u8; 32];
    let mut h = BUSY;
    for _ in 0..50_000_000u64 {
        h = hc(Hypercall::NetPublished, [gpa(&rec), 0, 0, 0, 0]);
        if h != BUSY {
            break;
        }
        core::hint::spin_loop();
    }
    let flow_ok = expect("NetPublished a flow", h, |v| v >= 1, "a handle");
    let p = NetPublish::read_from_bytes(&rec[..]).unwrap_or_default();
    check("flow proto", i64::from(p.proto), i64::from(PUBLISH_UDP));
    check("flow guest port", i64::from(p.guest_port), 7777);
    let h = h as u64;
    check(
        "NetBind on a flow",
        hc(Hypercall::NetBind, [h, 0, 0, 0, 0]),
        UNKNOWN,
    );
    let buf = alloc::vec![0u8; 64];
    let addr = alloc::vec![0u8; 24];
    check(
        "NetSend flow with a destination",
        hc(Hypercall::NetSend, [h, gpa(&buf), 4, gpa(&addr), 0]),
        INVAL,
    );
    check(
        "NetSend flow buffer past memory",
        hc(Hypercall::NetSend, [h, mem - 4, u64::MAX, 0, 0]),
        BADADDR,
    );
    check(
        "NetRecv flow bad flags",
        hc(Hypercall::NetRecv, [h, gpa(&buf), 64, 0, 0xff]),
        INVAL,
    );
    check(
        "NetRecv flow buffer past memory",
        hc(Hypercall::NetRecv, [h, mem, 16, 0, 0]),
        BADADDR,
    );
    check(
        "NetRecv flow address past memory",
        hc(Hypercall::NetRecv, [h, gpa(&buf), 64, mem - 8, 0]),
        BADADDR,
    );
    check(
        "NetShutdown flow how 7",
        hc(Hypercall::NetShutdown, [h, 7, 0, 0, 0]),
        INVAL,
    );
    check(
        "NetPoll flow events too wide",
        hc(Hypercall::NetPoll, [h, 1 << 20, 0, 0, 0]),
        INVAL,
    );
    check(
        "NetName flow which 5",
        hc(Hypercall::NetName, [h, 5, gpa(&addr), 0, 0]),
        INVAL,
    );
    check(
        "NetName flow address past memory",
        hc(Hypercall::NetName, [h, 1, mem - 8, 0, 0]),
        BADADDR,
    );
    check(
        "NetSetOpt flow IP_HDRINCL",
        hc(Hypercall::NetSetOpt, [h, 0, 3, 1, 0]),
        INVAL,
    );
    check(
        "NetSetOpt flow SO_ERROR",
        hc(Hypercall::NetSetOpt, [h, 1, 4, 0, 0]),
        INVAL,
    );
    // The first datagram (queued before NetPublished answered), whole.
    let data = alloc::vec![0u8; 64];
    let got = hc(Hypercall::NetRecv, [h, gpa(&data), 64, 0, 0]);
    check("NetRecv flow datagram", got, 7);
    let mut reply = alloc::vec::Vec::from(&b"echo:"[..]);
    reply.extend_from_slice(&data[..got.clamp(0, 64) as usize]);
    check(
        "NetSend flow reply",
        hc(
            Hypercall::NetSend,
            [h, gpa(&reply), reply.len() as u64, 0, 0],
        ),
        reply.len() as i64,
    );
    check("NetClose flow", hc(Hypercall::NetClose, [h, 0, 0, 0, 0]), 0);
    check(
        "NetClose flow twice",
        hc(Hypercall::NetClose, [h, 0, 0, 0, 0]),
        INVAL,
    );
    check(
        "NetRecv closed flow",
        hc(Hypercall::NetRecv, [h, gpa(&buf), 64, 0, 0]),
        INVAL,
    );
    ok && flow_ok
}
