//! A tenant's console: the host-side sink of `console_write` plus a tail of recent lines for
//! crash reports.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Mutex;

/// Lines of console output kept for crash reports.
pub const CONSOLE_TAIL_LINES: usize = 20;
/// Longest line kept in the tail (longer lines are cut).
const TAIL_LINE_MAX: usize = 512;

struct Inner {
    sink: Box<dyn Write + Send>,
    tail: VecDeque<String>,
    partial: Vec<u8>,
    failed: bool,
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
    pub(crate) fn new(sink: Box<dyn Write + Send>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                sink,
                tail: VecDeque::new(),
                partial: Vec::new(),
                failed: false,
            }),
        }
    }

    /// Writes guest output to the sink (errors are logged once, then ignored: a closed
    /// stdout must not take the tenant down) and records complete lines in the tail.
    pub(crate) fn write(&self, bytes: &[u8]) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *g;
        if !inner.failed {
            if let Err(e) = inner
                .sink
                .write_all(bytes)
                .and_then(|()| inner.sink.flush())
            {
                tracing::warn!("console sink failed, dropping further output: {e}");
                inner.failed = true;
            }
        }
        for &b in bytes {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&inner.partial).into_owned();
                inner.partial.clear();
                if inner.tail.len() == CONSOLE_TAIL_LINES {
                    inner.tail.pop_front();
                }
                inner.tail.push_back(line);
            } else if inner.partial.len() < TAIL_LINE_MAX {
                inner.partial.push(b);
            }
        }
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
        let c = Console::new(Box::new(std::io::sink()));
        for i in 0..30 {
            c.write(format!("line {i}\n").as_bytes());
        }
        c.write(b"partial \xff");
        let t = c.tail();
        assert_eq!(t.len(), CONSOLE_TAIL_LINES);
        assert_eq!(t[0], "line 11");
        assert_eq!(t.last().unwrap(), "partial \u{fffd}");
    }
}
