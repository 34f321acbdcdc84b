//! A tenant's console: the host-side sink of `console_write` plus a tail of recent lines for
//! crash reports.
//!
//! The program's standard output and standard error pass to the host's unchanged (they are
//! its fds 1 and 2, as for a native run); the tail, which crash reports print, and the kernel
//! log when it goes to the host's standard error are escaped with
//! [`crate::escape::escape_guest`], so a guest cannot send terminal control sequences through
//! a host message.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use crate::escape::{escape_guest, Mode};

/// Lines of console output kept for crash reports.
pub const CONSOLE_TAIL_LINES: usize = 20;
/// Longest line kept in the tail (longer lines are cut).
const TAIL_LINE_MAX: usize = 512;

/// A token bucket on console bytes: `rate` bytes per second, at most `burst` at once.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` bytes/s holding one second's worth (at least 4 KiB).
    pub fn new(rate: u64, now: Instant) -> Self {
        let burst = rate.max(4096);
        Self {
            rate,
            burst,
            tokens: burst as f64,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate as f64).min(self.burst as f64);
    }

    /// Takes up to `n` tokens at `now`; returns how many were available.
    pub fn take(&mut self, n: u64, now: Instant) -> u64 {
        self.refill(now);
        let got = (self.tokens.floor() as u64).min(n);
        self.tokens -= got as f64;
        got
    }

    /// Whether at least half the burst is available at `now` (throttled output resumes then,
    /// so a flood produces at most one notice per half second).
    pub fn half_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= (self.burst / 2) as f64
    }
}

/// Where the guest kernel's log (`ConsoleWrite` stream 1) goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelLog {
    /// To the console's standard output, interleaved with program output (the default).
    #[default]
    Stdout,
    /// Nowhere: kept only in the console tail, for crash reports.
    Hidden,
    /// To the console's standard error.
    Stderr,
}

/// A console output stream, decoded from the `ConsoleWrite` stream argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    /// The program's standard output.
    Stdout,
    /// The kernel log (routed by [`KernelLog`]).
    KernelLog,
    /// The program's standard error.
    Stderr,
}

impl Stream {
    /// Decodes a guest-supplied stream number; `None` for unknown streams.
    pub(crate) fn from_raw(raw: u64) -> Option<Self> {
        use pvmux_hypercalls::hypercall::stream;
        match raw {
            stream::STDOUT => Some(Self::Stdout),
            stream::KERNEL_LOG => Some(Self::KernelLog),
            stream::STDERR => Some(Self::Stderr),
            _ => None,
        }
    }
}

/// One output of the console: a sink (or none: hidden) and its line state.
struct Out {
    sink: Option<Box<dyn Write + Send>>,
    failed: bool,
    /// The current unterminated line (for the tail).
    partial: Vec<u8>,
    /// The last byte written was a newline (or nothing was written yet).
    at_line_start: bool,
}

impl Out {
    fn new(sink: Option<Box<dyn Write + Send>>) -> Self {
        Self {
            sink,
            failed: false,
            partial: Vec::new(),
            at_line_start: true,
        }
    }
}

/// Index of the hidden output in [`Inner::outs`] (stdout is 0, stderr 2).
const HIDDEN: usize = 1;

struct Inner {
    /// Standard output, hidden (kernel log kept for the tail only), standard error.
    outs: [Out; 3],
    kernel_log: KernelLog,
    tail: VecDeque<String>,
    bucket: Option<TokenBucket>,
    /// Bytes dropped since output was last let through.
    dropped: u64,
}

impl Inner {
    /// Index into `outs` of `stream`.
    fn out_index(&self, stream: Stream) -> usize {
        match (stream, self.kernel_log) {
            (Stream::Stdout, _) | (Stream::KernelLog, KernelLog::Stdout) => 0,
            (Stream::KernelLog, KernelLog::Hidden) => HIDDEN,
            (Stream::Stderr, _) | (Stream::KernelLog, KernelLog::Stderr) => 2,
        }
    }

    /// Writes to output `i`'s sink (escaped if `escape`) and records lines in the tail.
    fn emit(&mut self, i: usize, bytes: &[u8], escape: bool) {
        if bytes.is_empty() {
            return;
        }
        let out = &mut self.outs[i];
        if let (Some(sink), false) = (out.sink.as_mut(), out.failed) {
            let escaped;
            let shown = if escape {
                escaped = escape_guest(bytes, Mode::Text);
                escaped.as_bytes()
            } else {
                bytes
            };
            if let Err(e) = sink.write_all(shown).and_then(|()| sink.flush()) {
                tracing::warn!("console sink failed, dropping further output: {e}");
                out.failed = true;
            }
        }
        out.at_line_start = bytes.last() == Some(&b'\n');
        for &b in bytes {
            if b == b'\n' {
                let line = escape_guest(&out.partial, Mode::Line);
                out.partial.clear();
                if self.tail.len() == CONSOLE_TAIL_LINES {
                    self.tail.pop_front();
                }
                self.tail.push_back(line);
            } else if out.partial.len() < TAIL_LINE_MAX {
                out.partial.push(b);
            }
        }
    }

    /// Emits the throttling notice on output `i` if bytes were dropped.
    fn notice(&mut self, i: usize) {
        if self.dropped == 0 {
            return;
        }
        let nl = if self.outs[i].at_line_start { "" } else { "\n" };
        let text = format!(
            "{nl}[pvmux: console output throttled, {} bytes dropped]\n",
            self.dropped
        );
        self.dropped = 0;
        self.emit(i, text.as_bytes(), false);
    }
}

/// The console of one tenant: standard output, standard error and the kernel log.
pub(crate) struct Console {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

impl Console {
    /// A console writing standard output to `sink` (and the kernel log too), standard error
    /// to the host's stderr, limited to `rate` bytes/s if given.
    #[cfg(test)]
    pub(crate) fn new(sink: Box<dyn Write + Send>, rate: Option<u64>) -> Self {
        Self::with_streams(sink, Box::new(std::io::stderr()), KernelLog::Stdout, rate)
    }

    /// A console writing standard output to `stdout`, standard error to `stderr` and the
    /// kernel log as `kernel_log` says, all streams together limited to `rate` bytes/s if
    /// given.
    pub(crate) fn with_streams(
        stdout: Box<dyn Write + Send>,
        stderr: Box<dyn Write + Send>,
        kernel_log: KernelLog,
        rate: Option<u64>,
    ) -> Self {
        Self {
            inner: Mutex::new(Inner {
                outs: [
                    Out::new(Some(stdout)),
                    Out::new(None),
                    Out::new(Some(stderr)),
                ],
                kernel_log,
                tail: VecDeque::new(),
                bucket: rate
                    .filter(|&r| r > 0)
                    .map(|r| TokenBucket::new(r, Instant::now())),
                dropped: 0,
            }),
        }
    }

    /// Writes guest output to standard output (see [`Console::write_stream`]).
    #[cfg(test)]
    pub(crate) fn write(&self, bytes: &[u8]) {
        self.write_at(Stream::Stdout, bytes, Instant::now());
    }

    /// Writes guest output to `stream`'s sink (errors are logged once, then ignored: a closed
    /// stdout must not take the tenant down) and records complete lines in the tail. Beyond
    /// the rate limit (shared by all streams), bytes are dropped and counted; when output
    /// resumes (the bucket is half full again) a single notice line says how many were
    /// dropped, on the stream that resumes.
    pub(crate) fn write_stream(&self, stream: Stream, bytes: &[u8]) {
        self.write_at(stream, bytes, Instant::now());
    }

    fn write_at(&self, stream: Stream, bytes: &[u8], now: Instant) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *g;
        let i = inner.out_index(stream);
        let throttled = inner.dropped > 0;
        let allowed = match inner.bucket.as_mut() {
            None => bytes.len(),
            Some(b) => {
                if throttled && !b.half_full(now) {
                    0
                } else {
                    b.take(bytes.len() as u64, now) as usize
                }
            }
        };
        if allowed > 0 {
            inner.notice(i);
        }
        // The kernel log on the host's stderr is a host message about the guest (it names
        // programs the guest's users chose); the program's own streams pass unchanged.
        let escape = stream == Stream::KernelLog && i == 2;
        inner.emit(i, &bytes[..allowed], escape);
        inner.dropped += (bytes.len() - allowed) as u64;
    }

    /// Bytes dropped by the rate limit and not yet reported.
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).dropped
    }

    /// At the end of the tenant: reports bytes still dropped (on standard output).
    pub(crate) fn finish(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .notice(0);
    }

    /// The last lines of output of every stream (unterminated last lines included).
    pub(crate) fn tail(&self) -> Vec<String> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<String> = g.tail.iter().cloned().collect();
        for out in &g.outs {
            if !out.partial.is_empty() {
                v.push(escape_guest(&out.partial, Mode::Line));
            }
        }
        let extra = v.len().saturating_sub(CONSOLE_TAIL_LINES);
        v.drain(..extra);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines() {
        let c = Console::new(Box::new(std::io::sink()), None);
        for i in 0..30 {
            c.write(format!("line {i}\n").as_bytes());
        }
        c.write(b"partial \xff");
        let t = c.tail();
        assert_eq!(t.len(), CONSOLE_TAIL_LINES);
        assert_eq!(t[0], "line 11");
        assert_eq!(t.last().unwrap(), "partial \\xff");
    }

    #[derive(Clone, Default)]
    struct Cap(std::sync::Arc<Mutex<Vec<u8>>>);
    impl Write for Cap {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn token_bucket_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10_000, t0);
        assert_eq!(b.take(25_000, t0), 10_000);
        assert_eq!(b.take(1, t0), 0);
        assert!(!b.half_full(t0));
        let t1 = t0 + std::time::Duration::from_millis(100);
        assert_eq!(b.take(5_000, t1), 1_000);
        assert!(b.half_full(t0 + std::time::Duration::from_secs(1)));
        // Never more than the burst.
        assert_eq!(
            b.take(u64::MAX, t0 + std::time::Duration::from_secs(100)),
            10_000
        );
        // Small rates still allow a 4 KiB line at once.
        assert_eq!(TokenBucket::new(1, t0).take(10_000, t0), 4096);
    }

    #[test]
    fn throttled_output_is_dropped_and_reported_once() {
        let cap = Cap::default();
        let c = Console::new(Box::new(cap.clone()), Some(8192));
        let t0 = Instant::now();
        let ms = std::time::Duration::from_millis;
        // A flood: 100 x 1000 bytes at once; only the burst gets through.
        let line = [b'x'; 999];
        for _ in 0..100 {
            let mut l = line.to_vec();
            l.push(b'\n');
            c.write_at(Stream::Stdout, &l, t0);
        }
        assert_eq!(cap.0.lock().unwrap().len(), 8192);
        assert_eq!(c.dropped(), 100_000 - 8192);
        // Shortly after: still throttled (bucket not half full), more is dropped silently.
        c.write_at(Stream::Stdout, b"more\n", t0 + ms(100));
        assert_eq!(c.dropped(), 100_000 - 8192 + 5);
        assert_eq!(cap.0.lock().unwrap().len(), 8192);
        // After it refilled: one notice line, then the output.
        c.write_at(Stream::Stdout, b"resumed\n", t0 + ms(1000));
        let text = String::from_utf8_lossy(&cap.0.lock().unwrap()).into_owned();
        let tail: Vec<_> = text.lines().rev().take(2).collect();
        assert_eq!(tail[0], "resumed");
        assert_eq!(
            tail[1],
            format!(
                "[pvmux: console output throttled, {} bytes dropped]",
                100_000 - 8192 + 5
            )
        );
        assert_eq!(text.matches("throttled").count(), 1);
        assert_eq!(c.dropped(), 0);
        // Dropped at exit: reported by finish(), on a line of its own.
        c.write_at(Stream::Stdout, &[b'y'; 9000], t0 + ms(1000));
        c.finish();
        let text = String::from_utf8_lossy(&cap.0.lock().unwrap()).into_owned();
        // 8192 tokens minus "resumed\n" were left: 816 of the 9000 bytes are dropped.
        assert!(
            text.ends_with("y\n[pvmux: console output throttled, 816 bytes dropped]\n"),
            "{text}"
        );
        assert_eq!(text.matches("throttled").count(), 2);
        assert!(c.tail().last().unwrap().contains("bytes dropped"));
        // Unlimited consoles never drop.
        let u = Console::new(Box::new(std::io::sink()), None);
        u.write_at(Stream::Stdout, &[0; 100_000], t0);
        assert_eq!(u.dropped(), 0);
    }

    #[test]
    fn streams_are_routed_and_all_reach_the_tail() {
        for (log, want_out, want_err) in [
            (KernelLog::Stdout, "out\nklog\n", "err\n"),
            (KernelLog::Hidden, "out\n", "err\n"),
            (KernelLog::Stderr, "out\n", "err\nklog\n"),
        ] {
            let (out, err) = (Cap::default(), Cap::default());
            let c = Console::with_streams(Box::new(out.clone()), Box::new(err.clone()), log, None);
            c.write_stream(Stream::Stdout, b"out\n");
            c.write_stream(Stream::Stderr, b"err\n");
            c.write_stream(Stream::KernelLog, b"klog\n");
            c.write_stream(Stream::Stderr, b"partial-err");
            c.write_stream(Stream::Stdout, b"partial-out");
            let text = |c: &Cap| String::from_utf8(c.0.lock().unwrap().clone()).unwrap();
            assert_eq!(text(&out), format!("{want_out}partial-out"), "{log:?}");
            assert_eq!(text(&err), format!("{want_err}partial-err"), "{log:?}");
            // Lines of separate streams do not run together in the tail.
            assert_eq!(
                c.tail(),
                ["out", "err", "klog", "partial-out", "partial-err"],
                "{log:?}"
            );
        }
        assert_eq!(Stream::from_raw(0), Some(Stream::Stdout));
        assert_eq!(Stream::from_raw(1), Some(Stream::KernelLog));
        assert_eq!(Stream::from_raw(2), Some(Stream::Stderr));
        for bad in [3, 4, u64::MAX, 1 << 32] {
            assert_eq!(Stream::from_raw(bad), None);
        }
    }

    #[test]
    fn program_streams_pass_unchanged_but_the_tail_and_kernel_log_on_stderr_are_escaped() {
        let (out, err) = (Cap::default(), Cap::default());
        let c = Console::with_streams(
            Box::new(out.clone()),
            Box::new(err.clone()),
            KernelLog::Stderr,
            None,
        );
        c.write_stream(Stream::Stdout, b"\x1b]0;title\x07out\n");
        c.write_stream(Stream::Stderr, b"\x1b[2Jerr\n");
        c.write_stream(Stream::KernelLog, b"prog\x1b]52;c;eA==\x07[1]: segfault\n");
        assert_eq!(*out.0.lock().unwrap(), b"\x1b]0;title\x07out\n");
        assert_eq!(
            String::from_utf8(err.0.lock().unwrap().clone()).unwrap(),
            "\x1b[2Jerr\nprog\\x1b]52;c;eA==\\x07[1]: segfault\n"
        );
        assert_eq!(
            c.tail(),
            [
                "\\x1b]0;title\\x07out",
                "\\x1b[2Jerr",
                "prog\\x1b]52;c;eA==\\x07[1]: segfault"
            ]
        );
        // The kernel log as the console's standard output (a guest without a program) is
        // the guest's output and passes unchanged.
        let out = Cap::default();
        let c = Console::new(Box::new(out.clone()), None);
        c.write_stream(Stream::KernelLog, b"\x1b[1mbold\n");
        assert_eq!(*out.0.lock().unwrap(), b"\x1b[1mbold\n");
    }
}
