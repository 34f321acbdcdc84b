//! Internet sockets in the guest (issue 11): TCP and UDP over the guest's loopback, IPv4,
//! IPv6 and v4-mapped, blocking and not, the errors, resets and options — each case a Python
//! script (`tests/tests/net/inet.py CASE`) run natively and in a guest (`--rootfs /`) with
//! stdout and exit status compared; real software (`http.server` with `urllib`) on the
//! guest's loopback; and the isolation of `--net none` (the default): a server on the host's
//! 127.0.0.1 is not reachable from the guest.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pvmux_tests::{run_with_timeout, Run, TempDir};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Longest one run may take (Python reads its modules through the host share).
const TIMEOUT: Duration = Duration::from_secs(300);

/// The case script.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/net/inet.py")
}

fn run(cmd: Command) -> Run {
    let what = format!("{cmd:?}");
    run_with_timeout(cmd, &what, TIMEOUT, Duration::from_millis(20), |_| {})
}

/// `python3 inet.py ARGS...` natively.
fn native(args: &[&str]) -> Run {
    let mut c = Command::new("/usr/bin/python3");
    c.env_clear().env("LC_ALL", "C").arg(script()).args(args);
    run(c)
}

/// `python3 inet.py ARGS...` in a guest with the extra `pvmux run` options `opts`.
fn guest(opts: &[&str], args: &[&str]) -> Run {
    let mut c = Command::new(PVMUX);
    c.env_clear()
        .args(["run", "--rootfs", "/", "--vcpus", "2", "--mem", "1G"])
        .args(opts)
        .args(["--env", "LC_ALL=C", "--", "/usr/bin/python3"])
        .arg(script())
        .args(args);
    run(c)
}

/// Runs case `args` natively and in a guest and asserts the same output and status.
fn same_as_native(args: &[&str]) -> Run {
    let n = native(args);
    assert_eq!(
        n.code(),
        Some(0),
        "{args:?}: native run failed\n{}",
        n.context()
    );
    let g = guest(&[], args);
    assert_eq!(
        g.stdout,
        n.stdout,
        "{args:?}: guest and native differ\n{}",
        g.context()
    );
    assert_eq!(g.code(), n.code(), "{args:?}: exit status\n{}", g.context());
    g
}

#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn tcp_echo_shutdown_options() {
    same_as_native(&["tcp"]);
}

#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn bind_conflicts_reuseaddr_reuseport() {
    same_as_native(&["bind_rules"]);
}

#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn connect_refused() {
    same_as_native(&["refused"]);
}

#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn nonblocking_connect_poll_fionread() {
    same_as_native(&["nonblocking"]);
}

#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn close_with_unread_data_resets() {
    same_as_native(&["reset"]);
}

#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn udp_datagrams() {
    same_as_native(&["udp"]);
}

#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn ipv6_loopback_and_v4_mapped() {
    same_as_native(&["ipv6"]);
}

#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn http_server_and_client_in_the_guest() {
    let www = TempDir::unique("pvmux-net", "www");
    let body: String = (1..=2000).map(|i| format!("{i}\n")).collect();
    std::fs::write(www.0.join("file.txt"), body).expect("write file.txt");
    let dir = www.0.to_str().expect("utf-8 temp path");
    same_as_native(&["http", dir]);
}

/// A host HTTP server on 127.0.0.1 answering `n` requests with `body`.
fn host_server(n: usize, body: &'static str) -> (String, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("host listener");
    let url = format!("http://{}/", l.local_addr().expect("address"));
    let t = std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut c, _)) = l.accept() else { return };
            let mut req = [0u8; 4096];
            let _ = c.read(&mut req);
            let resp = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = c.write_all(resp.as_bytes());
        }
    });
    (url, t)
}

/// `--net none` (the default): the guest's 127.0.0.1 is its own; a server on the host's
/// loopback is not there (`ECONNREFUSED`), while a native client reaches it.
#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn net_none_does_not_reach_the_host() {
    let (url, t) = host_server(1, "from the host");
    let n = native(&["fetch", &url]);
    assert!(
        n.has_line("fetched b'from the host'"),
        "native\n{}",
        n.context()
    );
    t.join().expect("server thread");
    let g = guest(&[], &["fetch", &url]);
    assert!(
        g.has_line("fetch failed ECONNREFUSED"),
        "guest\n{}",
        g.context()
    );
    let g = guest(&["--net", "none"], &["fetch", &url]);
    assert!(
        g.has_line("fetch failed ECONNREFUSED"),
        "guest --net none\n{}",
        g.context()
    );
}

/// `--net host`: the guest's sockets are host sockets, so a guest client reaches a server on
/// the host's 127.0.0.1, printing what a native client prints.
#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn net_host_reaches_a_host_server() {
    let (url, t) = host_server(2, "from the host");
    let n = native(&["fetch", &url]);
    let g = guest(&["--net", "host"], &["fetch", &url]);
    t.join().expect("server thread");
    assert!(
        n.has_line("fetched b'from the host'"),
        "native\n{}",
        n.context()
    );
    assert_eq!(g.stdout, n.stdout, "guest --net host\n{}", g.context());
}

/// `--net host` carries the loopback cases too (through host sockets): same as native.
#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn tcp_and_udp_over_host_sockets() {
    for case in ["tcp", "udp"] {
        let n = native(&[case]);
        let g = guest(&["--net", "host"], &[case]);
        assert_eq!(
            g.stdout,
            n.stdout,
            "{case} with --net host\n{}",
            g.context()
        );
    }
}

/// A free TCP port on the host's 127.0.0.1 (bound then released).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("probe listener");
    l.local_addr().expect("address").port()
}

/// `GET /path` on 127.0.0.1:`port` from the host: the whole response, or `None` while
/// nothing answers (the guest's server is not up yet: the published connection is closed).
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    c.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    c.read_to_string(&mut resp).ok()?;
    (!resp.is_empty()).then_some(resp)
}

/// `--publish`: `python3 -m http.server`'s handler in the guest, fetched from the host
/// through a published port: the file's bytes, and a 404 for a missing one.
#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn http_server_in_the_guest_published_to_the_host() {
    let www = TempDir::unique("pvmux-net", "publish");
    let body: String = (1..=3000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(www.0.join("file.txt"), &body).expect("write file.txt");
    let dir = www.0.to_str().expect("utf-8 temp path").to_owned();
    let port = free_port();
    let publish = format!("{port}:8000");
    let g =
        std::thread::spawn(move || guest(&["--publish", &publish], &["serve", &dir, "8000", "2"]));
    let deadline = std::time::Instant::now() + TIMEOUT;
    let resp = loop {
        if let Some(r) = http_get(port, "/file.txt") {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the published server never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let missing = http_get(port, "/missing").expect("second request");
    let g = g.join().expect("guest thread");
    assert!(resp.starts_with("HTTP/1.0 200"), "{resp:.200}");
    assert!(resp.ends_with(&body), "body differs\n{}", g.context());
    assert!(missing.starts_with("HTTP/1.0 404"), "{missing:.200}");
    assert_eq!(g.stdout, "serving\nserved 2\n", "{}", g.context());
    assert_eq!(g.code(), Some(0), "{}", g.context());
}

/// A port free for UDP and TCP on the host's 127.0.0.1 (bound then released).
fn free_udp_port() -> u16 {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").expect("probe socket");
        let port = s.local_addr().expect("address").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The sizes of the datagrams [`udp_clients`] sends from each client (an empty one too).
const UDP_SIZES: [usize; 6] = [5, 0, 1, 1000, 8192, 60000];

/// Two host clients (two sockets, so two source ports) talk to the UDP echo server on
/// 127.0.0.1:`port`: probes until it answers, then each sends the [`UDP_SIZES`] datagrams in
/// turn and reads each echo, which must be the datagram sent, whole.
fn udp_clients(port: u16) {
    let dest = ("127.0.0.1", port);
    let a = UdpSocket::bind("127.0.0.1:0").expect("client a");
    let b = UdpSocket::bind("127.0.0.1:0").expect("client b");
    let mut buf = vec![0u8; 65536];
    a.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        a.send_to(b"probe", dest).expect("probe");
        if matches!(a.recv(&mut buf), Ok(5) if &buf[..5] == b"probe") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the UDP server never answered"
        );
    }
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
    }
    for (i, size) in UDP_SIZES.iter().enumerate() {
        for (k, s) in [&a, &b].into_iter().enumerate() {
            let data: Vec<u8> = (0..*size).map(|j| ((i + j * 7 + k) % 251) as u8).collect();
            s.send_to(&data, dest).expect("send");
            let got = loop {
                let n = s.recv(&mut buf).expect("an echo (datagram lost)");
                // A late echo of a probe sent before the server was up.
                if &buf[..n] != b"probe" || data == b"probe" {
                    break buf[..n].to_vec();
                }
            };
            assert_eq!(got.len(), data.len(), "client {k}: datagram {i} not whole");
            assert!(got == data, "client {k}: datagram {i} differs");
        }
    }
}

/// Ends the UDP echo server on 127.0.0.1:`port`.
fn udp_quit(port: u16) {
    let q = UdpSocket::bind("127.0.0.1:0").expect("quit client");
    q.send_to(b"quit", ("127.0.0.1", port)).expect("quit");
}

/// `--publish 127.0.0.1:PORT:9999/udp`: a Python UDP echo server in the guest answers two
/// host clients, each datagram whole and back to its own client; the server sees what the
/// same server run natively sees (the datagrams' sizes, two senders). The same port is
/// published for TCP too (the host listens there as well). A guest server bound on ::1 only
/// gets them too (the relay falls back from 127.0.0.1) and sees the same.
#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn udp_echo_server_in_the_guest_published_to_the_host() {
    let port = free_udp_port();
    let p = port.to_string();
    let n = std::thread::spawn(move || native(&["udpserve", "127.0.0.1", &p]));
    udp_clients(port);
    udp_quit(port);
    let n = n.join().expect("native thread");
    assert_eq!(n.code(), Some(0), "native\n{}", n.context());
    let port = free_udp_port();
    let udp = format!("127.0.0.1:{port}:9999/udp");
    let tcp = format!("127.0.0.1:{port}:9999/tcp");
    let g = std::thread::spawn(move || {
        guest(
            &["--publish", &udp, "--publish", &tcp],
            &["udpserve", "0.0.0.0", "9999"],
        )
    });
    udp_clients(port);
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port));
    udp_quit(port);
    assert!(tcp.is_ok(), "the TCP rule on the same port: {tcp:?}");
    let g = g.join().expect("guest thread");
    assert_eq!(
        g.stdout,
        n.stdout,
        "guest and native differ\n{}",
        g.context()
    );
    assert_eq!(g.code(), Some(0), "{}", g.context());
    let port = free_udp_port();
    let udp = format!("127.0.0.1:{port}:9999/udp");
    let g = std::thread::spawn(move || guest(&["--publish", &udp], &["udpserve", "::1", "9999"]));
    udp_clients(port);
    udp_quit(port);
    let g = g.join().expect("guest thread");
    assert_eq!(
        g.stdout,
        n.stdout,
        "guest (::1) and native differ\n{}",
        g.context()
    );
    assert_eq!(g.code(), Some(0), "{}", g.context());
}

/// A bad `--publish` is a clear host-side error (exit status 125): an unknown protocol, port
/// 0, a port range (UDP too), a missing port, a bad address.
#[test]
fn bad_publish_values_are_refused() {
    for bad in [
        "53:53/sctp",
        "0:53/udp",
        "53:0/udp",
        "5000-5001:5000-5001/udp",
        "80",
        "0:80",
        "x:1:2",
    ] {
        let mut c = Command::new(PVMUX);
        c.args(["run", "--publish", bad, "--", "/bin/true"]);
        let r = run(c);
        assert_eq!(r.code(), Some(125), "{bad}: {}", r.context());
        assert!(r.stderr.contains("--publish"), "{bad}: {}", r.context());
    }
    let mut c = Command::new(PVMUX);
    c.args([
        "run",
        "--net",
        "host",
        "--publish",
        "8080:80",
        "--",
        "/bin/true",
    ]);
    let r = run(c);
    assert_eq!(r.code(), Some(125), "{}", r.context());
    assert!(r.stderr.contains("--net host"), "{}", r.context());
}

/// A host server that answers each connection's first read, upper-cased, after a pause.
fn slow_echo(n: usize) -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("host listener");
    let port = l.local_addr().expect("address").port();
    let t = std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut c, _)) = l.accept() else { return };
            let mut b = [0u8; 16];
            let k = c.read(&mut b).unwrap_or(0);
            std::thread::sleep(Duration::from_millis(300));
            let _ = c.write_all(&b[..k].to_ascii_uppercase());
        }
    });
    (port, t)
}

/// `--net host`: a poller (epoll, through `selectors`) waiting for input on a host socket
/// that is already writable is woken when the input comes.
#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn epoll_wakes_for_input_on_a_writable_host_socket() {
    let (port, t) = slow_echo(2);
    let port = port.to_string();
    let n = native(&["selector", "127.0.0.1", &port]);
    let g = guest(&["--net", "host"], &["selector", "127.0.0.1", &port]);
    t.join().expect("server thread");
    assert!(
        n.has_line("ready [True] b'PING'"),
        "native\n{}",
        n.context()
    );
    assert_eq!(g.stdout, n.stdout, "guest --net host\n{}", g.context());
}
