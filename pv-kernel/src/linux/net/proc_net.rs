//! `/proc/net`: the files `ss`, `netstat`, `lsof -i`, `ifconfig`, psutil and Java read about
//! the guest's network — `dev` and `if_inet6` (the devices, [`super::device`]), `route`
//! (the main table: empty, as on a Linux with only its loopback), and `tcp`, `tcp6`, `udp`,
//! `udp6` (the guest's own internet sockets, their file inodes matching
//! `/proc/PID/fd`'s `socket:[INO]` links), in Linux's layouts. Counters the guest does not
//! keep (per-device traffic, timers, retransmissions) are zero. The formatting is pure and
//! unit-tested; with `--net host` the sockets are the host's and are not listed.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use super::af;
use super::device::lo;
use super::inet::ip::Ep;
use super::inet::stack::{Proto, Row};

/// Linux pads `tcp` and `route` lines to this width (`TMPSZ - 1`), `udp`'s to 127.
const TCP_WIDTH: usize = 149;
const UDP_WIDTH: usize = 127;

/// `line` padded with spaces to `width`, and a newline.
fn padded(out: &mut String, line: &str, width: usize) {
    out.push_str(line);
    for _ in line.len()..width {
        out.push(' ');
    }
    out.push('\n');
}

/// An IPv4 address as `/proc/net/tcp` prints it: the `__be32` read as a little-endian word.
fn hex4(ip: &[u8]) -> String {
    format!("{:08X}", u32::from_le_bytes([ip[0], ip[1], ip[2], ip[3]]))
}

/// An IPv6 address as `/proc/net/tcp6` prints it: four such words.
fn hex16(ip: &[u8; 16]) -> String {
    ip.chunks(4).map(hex4).collect()
}

/// `ADDR:PORT` of an endpoint in family `family`'s form (`None`: unconnected, zeros).
fn endpoint(family: u16, ep: Option<Ep>) -> String {
    let (ip, port) = ep.map_or(([0u8; 16], 0), |e| (e.ip, e.port));
    let addr = if family == af::AF_INET {
        hex4(&ip[12..])
    } else {
        hex16(&ip)
    };
    format!("{addr}:{port:04X}")
}

/// A socket table of `family`: its header (`head4` or `head6`), then `lines`; IPv4's lines
/// are padded to `width` as Linux pads them, IPv6's are not.
fn table(
    family: u16,
    head4: &str,
    head6: &str,
    width: usize,
    lines: impl Iterator<Item = String>,
) -> Vec<u8> {
    let mut out = String::new();
    let v4 = family == af::AF_INET;
    let mut put = |l: &str| {
        if v4 {
            padded(&mut out, l, width);
        } else {
            out.push_str(l);
            out.push('\n');
        }
    };
    put(if v4 { head4 } else { head6 });
    for l in lines {
        put(&l);
    }
    out.into_bytes()
}

/// The fields every socket table's line starts with, up to the inode: its number (`width`
/// wide), addresses, state, queues, timer, retransmissions, uid, timeout.
fn row_start(family: u16, width: usize, i: usize, r: &Row) -> String {
    format!(
        "{i:width$}: {} {} {:02X} {:08X}:{:08X} 00:00000000 00000000 {:5} {:8} {}",
        endpoint(family, Some(r.local)),
        endpoint(family, r.peer),
        r.state,
        0,
        r.rx,
        r.uid,
        0,
        r.ino,
    )
}

/// `/proc/net/tcp` (`family` `AF_INET`) or `tcp6` (`AF_INET6`) of `rows`.
fn tcp_text(family: u16, rows: &[Row]) -> Vec<u8> {
    let lines = rows.iter().enumerate().map(|(i, r)| {
        let listen = r.state == 10;
        // After the inode: refcount, pointer (hidden), rto, ato, quick/pingpong, congestion
        // window, slow-start threshold (a listener's: its fast-open queue).
        format!(
            "{} {} 0000000000000000 20 {} 0 10 {}",
            row_start(family, 4, i, r),
            if listen { 1 } else { 2 },
            if listen { 0 } else { 4 },
            if listen { 0 } else { -1 },
        )
    });
    table(
        family,
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
        "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
        TCP_WIDTH,
        lines,
    )
}

/// `/proc/net/udp` or `udp6` of `rows`.
fn udp_text(family: u16, rows: &[Row]) -> Vec<u8> {
    // After the inode: refcount, pointer (hidden), drops.
    let lines = rows
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{} 2 0000000000000000 0", row_start(family, 5, i, r)));
    table(
        family,
        "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops",
        "   sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops",
        UDP_WIDTH,
        lines,
    )
}

/// `/proc/net/{tcp,tcp6,udp,udp6}`: the guest's sockets of `family` and `proto`.
fn sockets(family: u16, proto: Proto) -> Vec<u8> {
    let rows = super::inet::proc_rows(family, proto);
    match proto {
        Proto::Tcp => tcp_text(family, &rows),
        Proto::Udp => udp_text(family, &rows),
    }
}

/// `/proc/net/tcp`.
pub(crate) fn tcp() -> Vec<u8> {
    sockets(af::AF_INET, Proto::Tcp)
}

/// `/proc/net/tcp6`.
pub(crate) fn tcp6() -> Vec<u8> {
    sockets(af::AF_INET6, Proto::Tcp)
}

/// `/proc/net/udp`.
pub(crate) fn udp() -> Vec<u8> {
    sockets(af::AF_INET, Proto::Udp)
}

/// `/proc/net/udp6`.
pub(crate) fn udp6() -> Vec<u8> {
    sockets(af::AF_INET6, Proto::Udp)
}

/// `/proc/net/dev`: the loopback's line, its counters zero.
pub(crate) fn dev() -> Vec<u8> {
    let mut out = String::from(
        "Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n",
    );
    let name = core::str::from_utf8(lo::NAME).unwrap_or("lo");
    let _ = writeln!(
        out,
        "{name:>6}: {:7} {:7} {:4} {:4} {:4} {:5} {:10} {:9} {:8} {:7} {:4} {:4} {:4} {:5} {:7} {:10}",
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
    );
    out.into_bytes()
}

/// `/proc/net/if_inet6`: the loopback's IPv6 address (index, prefix, scope host, permanent).
pub(crate) fn if_inet6() -> Vec<u8> {
    let addr: String = lo::V6.iter().map(|b| format!("{b:02x}")).collect();
    let name = core::str::from_utf8(lo::NAME).unwrap_or("lo");
    format!(
        "{addr} {:02x} {:02x} {:02x} {:02x} {name:>8}\n",
        lo::INDEX,
        lo::V6_PREFIX,
        0x10,
        0x80
    )
    .into_bytes()
}

/// `/proc/net/route`: the header of an empty main table.
pub(crate) fn route() -> Vec<u8> {
    let mut out = String::new();
    padded(
        &mut out,
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT",
        127,
    );
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::net::inet::ip::LOOPBACK6;

    fn mapped(v4: [u8; 4]) -> [u8; 16] {
        let mut ip = [0u8; 16];
        ip[10] = 0xff;
        ip[11] = 0xff;
        ip[12..].copy_from_slice(&v4);
        ip
    }

    #[test]
    fn tcp_lines_are_linuxs() {
        let listen = Row {
            local: Ep::new(mapped([127, 0, 0, 1]), 8000),
            peer: None,
            state: 10,
            rx: 0,
            ino: 4242,
            uid: 0,
        };
        let t = String::from_utf8(tcp_text(af::AF_INET, &[listen])).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == TCP_WIDTH), "{t}");
        assert!(
            lines[1].starts_with(
                "   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 0 0 10 0"
            ),
            "{}",
            lines[1]
        );
        let est = Row {
            local: Ep::new(LOOPBACK6, 443),
            peer: Some(Ep::new(LOOPBACK6, 40000)),
            state: 1,
            rx: 3,
            ino: 7,
            uid: 1000,
        };
        let t = String::from_utf8(tcp_text(af::AF_INET6, &[est])).unwrap();
        assert_eq!(
            t.lines().nth(1),
            Some(
                "   0: 00000000000000000000000001000000:01BB 00000000000000000000000001000000:9C40 01 00000000:00000003 00:00000000 00000000  1000        0 7 2 0000000000000000 20 4 0 10 -1"
            )
        );
    }

    #[test]
    fn udp_dev_if_inet6_and_route() {
        let r = Row {
            local: Ep::new(mapped([0, 0, 0, 0]), 53),
            peer: None,
            state: 7,
            rx: 0,
            ino: 9,
            uid: 0,
        };
        let t = String::from_utf8(udp_text(af::AF_INET, &[r])).unwrap();
        assert!(t.lines().all(|l| l.len() == UDP_WIDTH), "{t}");
        assert!(t.lines().nth(1).unwrap().starts_with(
            "    0: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 9 2 0000000000000000 0"
        ));
        let d = String::from_utf8(dev()).unwrap();
        assert_eq!(
            d.lines().nth(2),
            Some("    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0")
        );
        assert_eq!(
            if_inet6(),
            b"00000000000000000000000000000001 01 80 10 80       lo\n"
        );
        assert_eq!(route().len(), 128);
    }
}
