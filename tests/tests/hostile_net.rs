//! The host network calls against a hostile guest (`hostile=net`, hypercalls 11..=24): with
//! `--net host` every malformed call (raw or unix sockets, unknown or closed handles,
//! addresses and buffers outside guest memory, malformed addresses, unknown flags, options
//! outside the fixed list) gets its documented error, the per-tenant socket limit holds and
//! closing frees it; without networking every call is `UnknownCall`; with only a
//! `--publish .../udp` rule the host-only calls are `UnknownCall` and a UDP flow's handle
//! refuses every malformed argument and carries the reply to its client. The host (this process)
//! survives, and the tenant's host sockets are all closed when it ends (the process's
//! descriptor count is back where it was).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use pvmux_host::net::{NetConfig, Publish, PublishProto};
use pvmux_host::{TenantConfig, TenantOutcome, TenantState};
use pvmux_tests::{config, host, Capture};

/// One case at a time, so the descriptor count of this process is meaningful.
static SERIAL: Mutex<()> = Mutex::new(());

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("fd dir").count()
}

/// Runs `hostile=net` with `net`; returns the outcome and the console.
fn run(name: &str, net: NetConfig) -> (TenantOutcome, String) {
    let console = Capture::default();
    let mut cfg = TenantConfig {
        console: Box::new(console.clone()),
        ..config(name, "hostile=net", 1)
    };
    cfg.net = net;
    let t = host().launch(cfg).expect("tenant launches");
    let deadline = Instant::now() + Duration::from_secs(60);
    while matches!(t.state(), TenantState::Created | TenantState::Running) {
        if Instant::now() > deadline {
            t.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (t.wait(), console.text())
}

#[test]
fn bad_net_call_arguments_get_errors_and_the_host_survives() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _ = host();
    let before = fds();
    let net = NetConfig {
        host: true,
        ..NetConfig::default()
    };
    let (outcome, out) = run("hostile-net", net);
    assert!(!out.contains("MISMATCH"), "{out}");
    assert!(out.contains("hostile: net CONTAINED"), "{out}");
    assert_eq!(outcome.exit_code(), Some(0), "{out}");
    assert_eq!(fds(), before, "host sockets left open\n{out}");
}

#[test]
fn without_networking_every_net_call_is_unknown() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (outcome, out) = run("hostile-net-none", NetConfig::default());
    assert!(out.contains("without networking"), "{out}");
    assert!(out.contains("hostile: net CONTAINED"), "{out}");
    assert_eq!(outcome.exit_code(), Some(0), "{out}");
}

#[test]
fn a_published_udp_flow_takes_no_bad_argument_and_answers_its_client() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _ = host();
    let before = fds();
    // The client's port first: a probe's port, freed, may be the next one the host hands out
    // (seen once in CI: the client took it, and the published port could not be bound).
    let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("client");
    let client_port = client.local_addr().expect("address").port();
    let port = loop {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe socket");
        let p = s.local_addr().expect("address").port();
        if p != client_port {
            break p;
        }
    };
    let net = NetConfig {
        publish: vec![Publish {
            host: ([127, 0, 0, 1], port).into(),
            guest_port: 7777,
            proto: PublishProto::Udp,
        }],
        ..NetConfig::default()
    };
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let c = client.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let _ = c.send_to(b"hostile", ("127.0.0.1", port));
            if let Ok(n) = c.recv(&mut buf) {
                return Some(buf[..n].to_vec());
            }
        }
        None
    });
    let (outcome, out) = run("hostile-net-udp", net);
    let reply = sender.join().expect("client thread");
    assert!(!out.contains("MISMATCH"), "{out}");
    assert!(out.contains("hostile: net CONTAINED"), "{out}");
    assert_eq!(outcome.exit_code(), Some(0), "{out}");
    assert_eq!(reply.as_deref(), Some(&b"echo:hostile"[..]), "{out}");
    drop(client);
    assert_eq!(fds(), before, "host sockets left open\n{out}");
}
