//! A tenant's console: the host-side sink of `console_write` plus a tail of recent lines for
//! crash reports.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

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

struct Inner {
    sink: Box<dyn Write + Send>,
    tail: VecDeque<String>,
    partial: Vec<u8>,
    failed: bool,
    bucket: Option<TokenBucket>,
    /// Bytes dropped since output was last let through.
    dropped: u64,
    /// The last byte written to the sink was a newline (or nothing was written yet).
    at_line_start: bool,
}

impl Inner {
    /// Writes to the sink and records lines in the tail.
    fn emit(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if !self.failed {
            if let Err(e) = self.sink.write_all(bytes).and_then(|()| self.sink.flush()) {
                tracing::warn!("console sink failed, dropping further output: {e}");
                self.failed = true;
            }
        }
        self.at_line_start = bytes.last() == Some(&b'\n');
        for &b in bytes {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                if self.tail.len() == CONSOLE_TAIL_LINES {
                    self.tail.pop_front();
                }
                self.tail.push_back(line);
            } else if self.partial.len() < TAIL_LINE_MAX {
                self.partial.push(b);
            }
        }
    }

    /// Emits the throttling notice if bytes were dropped.
    fn notice(&mut self) {
        if self.dropped == 0 {
            return;
        }
        let nl = if self.at_line_start { "" } else { "\n" };
        let text = format!(
            "{nl}[pvmux: console output throttled, {} bytes dropped]\n",
            self.dropped
        );
        self.dropped = 0;
        self.emit(text.as_bytes());
    }
}

/// The console of one tenant.
pub(crate) struct Console {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

impl Console {
    /// A console writing to `sink`, limited to `rate` bytes/s if given.
    pub(crate) fn new(sink: Box<dyn Write + Send>, rate: Option<u64>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                sink,
                tail: VecDeque::new(),
                partial: Vec::new(),
                failed: false,
                bucket: rate
                    .filter(|&r| r > 0)
                    .map(|r| TokenBucket::new(r, Instant::now())),
                dropped: 0,
                at_line_start: true,
            }),
        }
    }

    /// Writes guest output to the sink (errors are logged once, then ignored: a closed
    /// stdout must not take the tenant down) and records complete lines in the tail. Beyond
    /// the rate limit, bytes are dropped and counted; when output resumes (the bucket is half
    /// full again) a single notice line says how many were dropped.
    pub(crate) fn write(&self, bytes: &[u8]) {
        self.write_at(bytes, Instant::now());
    }

    fn write_at(&self, bytes: &[u8], now: Instant) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *g;
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
            inner.notice();
        }
        inner.emit(&bytes[..allowed]);
        inner.dropped += (bytes.len() - allowed) as u64;
    }

    /// Bytes dropped by the rate limit and not yet reported.
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).dropped
    }

    /// At the end of the tenant: reports bytes still dropped.
    pub(crate) fn finish(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .notice();
    }

    /// The last lines of output (an unterminated last line included).
    pub(crate) fn tail(&self) -> Vec<String> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<String> = g.tail.iter().cloned().collect();
        if !g.partial.is_empty() {
            v.push(String::from_utf8_lossy(&g.partial).into_owned());
            if v.len() > CONSOLE_TAIL_LINES {
                v.remove(0);
            }
        }
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
        assert_eq!(t.last().unwrap(), "partial \u{fffd}");
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
            c.write_at(&l, t0);
        }
        assert_eq!(cap.0.lock().unwrap().len(), 8192);
        assert_eq!(c.dropped(), 100_000 - 8192);
        // Shortly after: still throttled (bucket not half full), more is dropped silently.
        c.write_at(b"more\n", t0 + ms(100));
        assert_eq!(c.dropped(), 100_000 - 8192 + 5);
        assert_eq!(cap.0.lock().unwrap().len(), 8192);
        // After it refilled: one notice line, then the output.
        c.write_at(b"resumed\n", t0 + ms(1000));
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
        c.write_at(&[b'y'; 9000], t0 + ms(1000));
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
        u.write_at(&[0; 100_000], t0);
        assert_eq!(u.dropped(), 0);
    }
}
