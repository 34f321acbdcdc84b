//! `*.channel.*`: a channel between two kernels (`pvmux run --channel`) next to a host
//! UNIX socket, measured by `pvmux-user-bench` ([`images::USER_BENCH`]) in its channel
//! modes: a client (`--channel-client`) and an echo server (`--channel-echo`).
//!
//! * `native.channel.*`: two host processes over a UNIX stream socket.
//! * `pvmux.channel.*`: two tenants (two guest kernels, 2 vCPUs each) joined by a channel,
//!   the client the init of one, the echo server the init of the other, through
//!   `/dev/pvmux/bench`.
//!
//! `roundtrip` is one byte there and back (ns); `throughput` is the time to send 1 MiB one
//! way in 256 KiB writes, 8 MiB per sample, acknowledged (ns per MiB: MiB/s = 1e9 / it).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pvmux_host::{initramfs, Host, KernelImage, TenantOutcome, TenantState};
use pvmux_hypercalls::bootargs::{BootArgsBuf, Command as BootCommand, Options};

use super::guest::{GuestFigure, Parser, MALFORMED, MISSING};
use super::progress::Progress;
use super::stats::Summary;
use super::tenants::{self, GUEST_MEM};
use crate::images;

/// The workload's name in its directories.
const WORKLOAD: &str = "pvmux-user-bench";
/// The channel's name.
const CHANNEL: &str = "bench";

/// Whether `name` is a channel figure: its peer (`native`/`pvmux`) and figure name as the
/// workload prints it (`channel.roundtrip`).
pub fn split(name: &str) -> Option<(&str, &str)> {
    let (peer, rest) = name.split_once('.')?;
    (matches!(peer, "native" | "pvmux") && rest.starts_with("channel.")).then_some((peer, rest))
}

/// A private temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self, String> {
        let d = std::env::temp_dir().join(format!("pvmux-bench-channel-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let s = Self(d);
        let fail = |e: std::io::Error| format!("cannot prepare {}: {e}", s.0.display());
        std::fs::create_dir_all(s.0.join("initrd")).map_err(fail)?;
        let w = s.0.join("initrd").join(WORKLOAD);
        std::fs::write(&w, images::USER_BENCH).map_err(fail)?;
        std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o755)).map_err(fail)?;
        Ok(s)
    }

    fn workload(&self) -> PathBuf {
        self.0.join("initrd").join(WORKLOAD)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The figures `parser` holds for `wanted` (full names, `peer` prefix).
fn results(
    wanted: &[&'static str],
    parser: &Parser,
    end: &Result<(), String>,
) -> Vec<(&'static str, Result<Summary, String>)> {
    wanted
        .iter()
        .map(|&n| {
            let short = split(n).map_or("", |(_, f)| f);
            let r = match (end, parser.figures().get(short)) {
                (_, Some(GuestFigure::Measured(s))) => Ok(*s),
                (_, Some(GuestFigure::Unavailable(why))) => Err(why.clone()),
                (_, Some(GuestFigure::Malformed)) => Err(MALFORMED.to_owned()),
                (Err(e), None) => Err(e.clone()),
                (Ok(()), None) => Err(MISSING.to_owned()),
            };
            (n, r)
        })
        .collect()
}

/// Two host processes over a UNIX stream socket.
fn native(s: &Scratch, quick: bool) -> (Parser, Result<(), String>) {
    let sock = s.0.join("sock");
    let mut parser = Parser::default();
    let server = Command::new(s.workload())
        .arg("--channel-echo")
        .arg(format!("unix-listen:{}", sock.display()))
        .stdout(Stdio::null())
        .spawn();
    let mut server = match server {
        Ok(c) => c,
        Err(e) => return (parser, Err(format!("cannot start the echo server: {e}"))),
    };
    let mut client = Command::new(s.workload());
    client
        .arg("--channel-client")
        .arg(format!("unix:{}", sock.display()));
    if quick {
        client.arg("--quick");
    }
    let out = client.output();
    let _ = server.kill();
    let _ = server.wait();
    match out {
        Ok(o) => {
            parser.feed(&o.stdout);
            (parser, Ok(()))
        }
        Err(e) => (parser, Err(format!("cannot run the client: {e}"))),
    }
}

/// The console of the client guest.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Parser>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).feed(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The last bytes of the echo guest's console (its errors, if it failed).
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<Vec<u8>>>);

impl Write for Tail {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        t.extend_from_slice(buf);
        let over = t.len().saturating_sub(TAIL_BYTES);
        t.drain(..over);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How much of the echo guest's console a timeout report shows.
const TAIL_BYTES: usize = 512;

/// What a timed-out run saw: both ends of the channel, each guest's vCPUs, the echo
/// guest's last console output.
fn diagnosis(
    ends: &[Arc<pvmux_host::channel::ChannelEnd>; 2],
    client: &pvmux_host::Tenant,
    server: &pvmux_host::Tenant,
    echo_log: &Tail,
) -> String {
    let vcpus = |t: &pvmux_host::Tenant| {
        t.vcpu_snapshots()
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    "vCPU {i}: events {}, pending {:#x}, halted {}, in host {}",
                    v.events, v.pending, v.halted, v.in_host
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let log = echo_log.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    format!(
        "client end: {}; echo end: {}; client {:?}: {}; echo {:?}: {}; echo console: {:?}",
        ends[0].describe(),
        ends[1].describe(),
        client.state(),
        vcpus(client),
        server.state(),
        vcpus(server),
        String::from_utf8_lossy(&log)
    )
}

/// Two tenants joined by a channel.
fn pvmux(
    host: &Host,
    kernel: &Arc<KernelImage>,
    s: &Scratch,
    quick: bool,
    timeout: Duration,
) -> (Parser, Result<(), String>) {
    let sink = Sink::default();
    let echo_log = Tail::default();
    let end = (|| {
        let archive = initramfs::pack_dir(s.0.join("initrd"))
            .map_err(|e| format!("cannot pack the initramfs: {e}"))?;
        initramfs::validate(&archive).map_err(|e| format!("bad initramfs: {e}"))?;
        let initrd = Arc::new(archive);
        let dir = s.0.join("channels");
        let join = || pvmux_host::channel::ChannelEnd::join(&dir, CHANNEL).map(Arc::new);
        let ends = [join(), join()];
        let [Ok(a), Ok(b)] = ends else {
            return Err("cannot open the channel".to_owned());
        };
        let ends = [a, b];
        let device = format!("/dev/pvmux/{CHANNEL}");
        let args = |mode: &str| -> Result<BootArgsBuf, String> {
            let mut argv = vec![format!("/{WORKLOAD}"), mode.to_owned(), device.clone()];
            if quick {
                argv.push("--quick".to_owned());
            }
            BootArgsBuf::new(
                &Options::default(),
                [
                    BootCommand::Channel(CHANNEL.as_bytes()),
                    BootCommand::NoPatch,
                ],
                &argv,
            )
            .map_err(|e| format!("cannot encode the boot arguments: {e}"))
        };
        let server = tenants::launch_with_channels(
            host,
            kernel,
            "chan-echo",
            GUEST_MEM,
            args("--channel-echo")?,
            Box::new(echo_log.clone()),
            Some(Arc::clone(&initrd)),
            None,
            vec![Arc::clone(&ends[1])],
        )
        .map_err(|e| format!("cannot launch the echo guest: {e}"))?;
        let client = tenants::launch_with_channels(
            host,
            kernel,
            "chan-client",
            GUEST_MEM,
            args("--channel-client")?,
            Box::new(sink.clone()),
            Some(initrd),
            None,
            vec![Arc::clone(&ends[0])],
        )
        .map_err(|e| format!("cannot launch the client guest: {e}"))?;
        let deadline = std::time::Instant::now() + timeout;
        while matches!(
            client.tenant.state(),
            TenantState::Created | TenantState::Running
        ) && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        // A guest that stopped making progress: what each side saw, for the report.
        let stuck = matches!(
            client.tenant.state(),
            TenantState::Created | TenantState::Running
        )
        .then(|| diagnosis(&ends, &client.tenant, &server.tenant, &echo_log));
        drop(ends);
        let r = match tenants::wait(client.tenant, Duration::ZERO) {
            (_, None) => Err(format!(
                "guest timed out after {} s ({})",
                timeout.as_secs(),
                stuck.unwrap_or_default()
            )),
            (TenantOutcome::Crashed(r), _) => Err(format!("guest crashed: {}", r.cause)),
            _ => Ok(()),
        };
        // The client's end closed: the echo server reads the end of the stream and exits.
        let _ = tenants::wait(server.tenant, Duration::from_secs(10));
        r
    })();
    let parser = sink.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (parser, end)
}

/// Runs the wanted `*.channel.*` figures (full catalogue names).
pub fn run(
    host: &Host,
    kernel: &Arc<KernelImage>,
    wanted: &[&'static str],
    quick: bool,
    timeout: Duration,
    progress: &Progress,
) -> Vec<(&'static str, Result<Summary, String>)> {
    let mut out = Vec::new();
    let scratch = Scratch::new();
    for peer in ["native", "pvmux"] {
        let mine: Vec<&'static str> = wanted
            .iter()
            .copied()
            .filter(|n| split(n).is_some_and(|(p, _)| p == peer))
            .collect();
        if mine.is_empty() {
            continue;
        }
        progress.start(&format!("{peer}.channel.*"));
        let (parser, end) = match &scratch {
            Err(e) => (Parser::default(), Err(e.clone())),
            Ok(s) if peer == "native" => native(s, quick),
            Ok(s) => pvmux(host, kernel, s, quick, timeout),
        };
        out.extend(results(&mine, &parser, &end));
        progress.inc();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            split("pvmux.channel.roundtrip"),
            Some(("pvmux", "channel.roundtrip"))
        );
        assert_eq!(
            split("native.channel.throughput"),
            Some(("native", "channel.throughput"))
        );
        assert_eq!(split("pvmux.user.pipe_pingpong"), None);
        assert_eq!(split("gvisor.channel.roundtrip"), None);
    }
}
