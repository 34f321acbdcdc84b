//! Progress on stderr: an `indicatif` bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Reports progress through the benchmark steps. Cheap to clone (shared state).
#[derive(Clone, Debug)]
pub struct Progress {
    inner: Arc<Inner>,
}

#[derive(Debug)]
enum Mode {
    Bar(ProgressBar),
    Lines,
    Silent,
}

#[derive(Debug)]
struct Inner {
    mode: Mode,
    pos: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    /// A progress bar if stderr is a terminal, plain lines otherwise; nothing if `!enabled`.
    pub fn stderr(enabled: bool) -> Self {
        let mode = if !enabled {
            Mode::Silent
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} pvmux bench [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            Mode::Bar(bar)
        } else {
            Mode::Lines
        };
        Self {
            inner: Arc::new(Inner {
                mode,
                pos: AtomicU64::new(0),
                total: AtomicU64::new(0),
            }),
        }
    }

    /// Sets the number of steps.
    pub fn set_total(&self, total: u64) {
        self.inner.total.store(total, Relaxed);
        if let Mode::Bar(b) = &self.inner.mode {
            b.set_length(total);
        }
    }

    /// Announces what runs next.
    pub fn start(&self, what: &str) {
        match &self.inner.mode {
            Mode::Bar(b) => b.set_message(what.to_owned()),
            Mode::Lines => eprintln!(
                "pvmux bench: [{}/{}] {what}",
                self.inner.pos.load(Relaxed),
                self.inner.total.load(Relaxed)
            ),
            Mode::Silent => {}
        }
    }

    /// One step done.
    pub fn inc(&self) {
        self.inner.pos.fetch_add(1, Relaxed);
        if let Mode::Bar(b) = &self.inner.mode {
            b.inc(1);
        }
    }

    /// Removes the bar (before the results are printed).
    pub fn finish(&self) {
        if let Mode::Bar(b) = &self.inner.mode {
            b.finish_and_clear();
        }
    }
}
