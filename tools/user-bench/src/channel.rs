//! The channel figures (`pvmux bench`'s `*.channel.*`): `--channel-echo ENDPOINT` serves,
//! `--channel-client ENDPOINT` measures and prints
//!
//! ```text
//! @bench channel.roundtrip median_ns=F p99_ns=F samples=N     (one byte there and back)
//! @bench channel.throughput median_ns=F p99_ns=F samples=N    (ns per MiB sent one way)
//! @bench-done
//! ```
//!
//! ENDPOINT is a file opened read-write (a pvmux guest's `/dev/pvmux/NAME`), `unix:PATH` (a
//! UNIX stream socket to connect to) or `unix-listen:PATH` (one to listen on and accept
//! one connection from). The protocol: the client sends `p`, the server answers `p`; the
//! client sends `t` and a little-endian u64 length L, then L bytes, the server reads them
//! and answers `k`; the client's end of stream ends the server.

use std::io::{Read, Write};
use std::process::ExitCode;

use super::{now_ns, summarize, MIN_SAMPLES};

/// Round trips per `channel.roundtrip` sample.
const RT_BATCH: u32 = 10;
/// Bytes per `channel.throughput` sample.
const TP_BYTES: usize = 8 << 20;
/// Bytes per write (and read) of the throughput figure.
const CHUNK: usize = 256 << 10;

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn open(endpoint: &str) -> Result<Box<dyn Stream>, String> {
    if let Some(p) = endpoint.strip_prefix("unix-listen:") {
        let l = std::os::unix::net::UnixListener::bind(p).map_err(|e| format!("bind {p}: {e}"))?;
        let (s, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
        return Ok(Box::new(s));
    }
    if let Some(p) = endpoint.strip_prefix("unix:") {
        let t0 = now_ns();
        loop {
            match std::os::unix::net::UnixStream::connect(p) {
                Ok(s) => return Ok(Box::new(s)),
                Err(_) if now_ns() - t0 < 10_000_000_000 => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => return Err(format!("connect {p}: {e}")),
            }
        }
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(endpoint)
        .map(|f| Box::new(f) as Box<dyn Stream>)
        .map_err(|e| format!("open {endpoint}: {e}"))
}

fn echo(s: &mut dyn Stream) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let mut cmd = [0u8; 1];
        if s.read(&mut cmd).map_err(io)? == 0 {
            return Ok(());
        }
        match cmd[0] {
            b'p' => s.write_all(b"p").map_err(io)?,
            b't' => {
                let mut len = [0u8; 8];
                s.read_exact(&mut len).map_err(io)?;
                let mut left = u64::from_le_bytes(len) as usize;
                while left > 0 {
                    let want = left.min(buf.len());
                    let n = s.read(&mut buf[..want]).map_err(io)?;
                    if n == 0 {
                        return Err("end of stream in a transfer".into());
                    }
                    left -= n;
                }
                s.write_all(b"k").map_err(io)?;
            }
            c => return Err(format!("unknown command byte {c:#x}")),
        }
    }
}

fn measure(
    warmup: usize,
    samples: usize,
    budget_ns: u64,
    mut sample: impl FnMut() -> Result<f64, String>,
) -> Result<Vec<f64>, String> {
    for _ in 0..warmup {
        sample()?;
    }
    let t0 = now_ns();
    let mut v = Vec::new();
    while v.len() < samples {
        v.push(sample()?);
        if v.len() >= MIN_SAMPLES && now_ns() - t0 > budget_ns {
            break;
        }
    }
    Ok(v)
}

fn client(s: &mut dyn Stream, quick: bool) -> Vec<(&'static str, Result<Vec<f64>, String>)> {
    let io = |e: std::io::Error| e.to_string();
    let (rt_n, tp_n, budget) = if quick {
        (200, MIN_SAMPLES, 1_000_000_000)
    } else {
        (2000, 30, 5_000_000_000)
    };
    let rt = measure(5, rt_n, budget, || {
        let mut b = [0u8; 1];
        let t0 = now_ns();
        for _ in 0..RT_BATCH {
            s.write_all(b"p").map_err(io)?;
            s.read_exact(&mut b).map_err(io)?;
        }
        Ok((now_ns() - t0) as f64 / f64::from(RT_BATCH))
    });
    let data = vec![0x5au8; CHUNK];
    let tp = measure(1, tp_n, budget, || {
        let t0 = now_ns();
        s.write_all(b"t").map_err(io)?;
        s.write_all(&(TP_BYTES as u64).to_le_bytes()).map_err(io)?;
        let mut left = TP_BYTES;
        while left > 0 {
            let n = left.min(CHUNK);
            s.write_all(&data[..n]).map_err(io)?;
            left -= n;
        }
        let mut k = [0u8; 1];
        s.read_exact(&mut k).map_err(io)?;
        if k[0] != b'k' {
            return Err("bad acknowledgement".into());
        }
        Ok((now_ns() - t0) as f64 / (TP_BYTES as f64 / f64::from(1u32 << 20)))
    });
    vec![("channel.roundtrip", rt), ("channel.throughput", tp)]
}

/// Runs a channel mode if `args` (without the program name) asks for one.
pub(crate) fn main(args: &[String]) -> Option<ExitCode> {
    let mode = args.first()?.as_str();
    if mode != "--channel-echo" && mode != "--channel-client" {
        return None;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let Some(endpoint) = args.get(1) else {
        eprintln!("pvmux-user-bench: {mode} needs an endpoint");
        return Some(ExitCode::from(2));
    };
    let mut s = match open(endpoint) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pvmux-user-bench: {e}");
            super::say(&format!("@bench-unavailable channel.roundtrip {e}"));
            super::say(&format!("@bench-unavailable channel.throughput {e}"));
            super::say("@bench-done");
            return Some(ExitCode::from(1));
        }
    };
    if mode == "--channel-echo" {
        return Some(match echo(&mut *s) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pvmux-user-bench: echo: {e}");
                ExitCode::from(1)
            }
        });
    }
    let mut ok = true;
    for (name, r) in client(&mut *s, quick) {
        match r.and_then(|mut v| {
            let n = v.len();
            summarize(&mut v)
                .map(|s| (s, n))
                .ok_or_else(|| "no samples".to_owned())
        }) {
            Ok(((median, p99), n)) => super::say(&format!(
                "@bench {name} median_ns={median:.3} p99_ns={p99:.3} samples={n}"
            )),
            Err(why) => {
                ok = false;
                super::say(&format!("@bench-unavailable {name} {why}"));
            }
        }
    }
    drop(s);
    super::say("@bench-done");
    Some(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
