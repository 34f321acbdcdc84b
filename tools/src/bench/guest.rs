//! The in-guest micro-benchmarks: boot the embedded kernel with `bench=...`, collect the
//! `@bench` lines it prints, and turn them into figures.
//!
//! The guest prints, one line each:
//!
//! ```text
//! @bench NAME median_ns=F p99_ns=F samples=N
//! @bench-unavailable NAME REASON TEXT...
//! @bench-done
//! ```
//!
//! (NAME without the `pvmux.` prefix) and then shuts down with exit code 0. The user-mode
//! workload (`user.rs`) speaks the same protocol and also prints `@ready` when it starts.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pvmux_host::{Host, KernelImage, TenantOutcome};
use pvmux_hypercalls::bootargs::{BootArgsBuf, Command, Options};

use super::progress::Progress;
use super::stats::Summary;
use super::tenants::{self, GUEST_MEM};

/// The benchmarks the guest runs, as it names them (the full name has a `pvmux.` prefix).
pub const GUEST_NAMES: [&str; 9] = [
    "call.in_sandbox",
    "hypercall.spin",
    "hypercall.block",
    "exception.int3",
    "interrupt.timer",
    "shadow_fill.page",
    "shadow_fill.page_nofaultaround",
    "halt_wake",
    "thread_switch",
];

/// Reason given for a figure whose line could not be parsed.
pub const MALFORMED: &str = "guest reported malformed line";
/// Reason given for a figure the guest never reported.
pub const MISSING: &str = "guest did not report it";

/// Longest partial line kept while waiting for its newline.
const MAX_LINE: usize = 4096;

/// What the guest said about one benchmark.
#[derive(Clone, Debug, PartialEq)]
pub enum GuestFigure {
    /// Measured.
    Measured(Summary),
    /// The guest could not measure it, and said why.
    Unavailable(String),
    /// The line about it was malformed.
    Malformed,
}

/// Parses the guest console: buffers partial lines and records every `@bench` line.
#[derive(Clone, Debug, Default)]
pub struct Parser {
    partial: Vec<u8>,
    figures: BTreeMap<String, GuestFigure>,
    done: bool,
    ready_ns: Option<u64>,
    last_line: String,
}

impl Parser {
    /// Feeds console output; returns how many benchmark lines it completed.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let mut completed = 0;
        for &b in bytes {
            if b == b'\n' {
                let line = std::mem::take(&mut self.partial);
                completed += usize::from(self.line(&String::from_utf8_lossy(&line)));
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(b);
            }
        }
        completed
    }

    /// Whether the guest printed `@bench-done`.
    pub fn done(&self) -> bool {
        self.done
    }

    /// CLOCK_MONOTONIC (ns) when the first `@ready` line was complete, if one was.
    pub fn ready_ns(&self) -> Option<u64> {
        self.ready_ns
    }

    /// The last non-empty line that was not a protocol line (`@...`), trimmed, for error
    /// messages; empty if there was none.
    pub fn last_line(&self) -> &str {
        &self.last_line
    }

    /// The figures reported so far, by guest name.
    pub fn figures(&self) -> &BTreeMap<String, GuestFigure> {
        &self.figures
    }

    /// Handles one complete line; returns whether it was about a benchmark.
    fn line(&mut self, line: &str) -> bool {
        let mut words = line.split_whitespace();
        let (Some(tag), name) = (words.next(), words.next()) else {
            return false;
        };
        if !tag.starts_with('@') {
            self.last_line = line.trim().chars().take(200).collect();
        }
        let figure = match tag {
            "@ready" => {
                if self.ready_ns.is_none() {
                    self.ready_ns = Some(pvmux_host::clock::monotonic_ns());
                }
                return false;
            }
            "@bench-done" => {
                self.done = true;
                return false;
            }
            "@bench" => parse_figure(words).map_or(GuestFigure::Malformed, GuestFigure::Measured),
            "@bench-unavailable" => {
                let reason = words.collect::<Vec<_>>().join(" ");
                GuestFigure::Unavailable(if reason.is_empty() {
                    "guest gave no reason".to_owned()
                } else {
                    reason
                })
            }
            _ => return false,
        };
        let Some(name) = name else { return false };
        self.figures.insert(name.to_owned(), figure);
        true
    }
}

/// Parses `median_ns=F p99_ns=F samples=N` (in any order; other keys are ignored).
fn parse_figure<'a>(words: impl Iterator<Item = &'a str>) -> Option<Summary> {
    let (mut median, mut p99, mut samples) = (None, None, None);
    for w in words {
        let (k, v) = w.split_once('=')?;
        let ns = || v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0);
        match k {
            "median_ns" => median = Some(ns()?),
            "p99_ns" => p99 = Some(ns()?),
            "samples" => samples = Some(v.parse::<u64>().ok().filter(|&n| n > 0)?),
            _ => {}
        }
    }
    Some(Summary {
        median: median?,
        p99: p99?,
        samples: samples?,
    })
}

/// The console sink of the benchmark guest: feeds the parser and advances the progress bar.
struct Sink {
    parser: Arc<Mutex<Parser>>,
    progress: Progress,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self
            .parser
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .feed(buf);
        for _ in 0..n {
            self.progress.inc();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The boot arguments that run `wanted` (guest names): `bench=LIST`, and `bench_quick` if
/// quick.
pub fn boot_args(wanted: &[&str], quick: bool) -> Result<BootArgsBuf, String> {
    let list = if GUEST_NAMES.iter().all(|n| wanted.contains(n)) {
        "all".to_owned()
    } else {
        wanted.join(",")
    };
    let options = Options {
        bench_quick: quick,
        ..Options::default()
    };
    BootArgsBuf::new(&options, [Command::Bench(&list)], [b""; 0])
        .map_err(|e| format!("cannot encode the boot arguments: {e}"))
}

/// Turns what the guest said, and how it ended, into one result per wanted benchmark.
pub fn figures(
    wanted: &[&'static str],
    parser: &Parser,
    end: Result<(), String>,
) -> Vec<(&'static str, Result<Summary, String>)> {
    wanted
        .iter()
        .map(|&name| {
            let r = match (&end, parser.figures().get(name)) {
                (Err(e), _) => Err(e.clone()),
                (Ok(()), Some(GuestFigure::Measured(s))) => Ok(*s),
                (Ok(()), Some(GuestFigure::Unavailable(why))) => Err(why.clone()),
                (Ok(()), Some(GuestFigure::Malformed)) => Err(MALFORMED.to_owned()),
                (Ok(()), None) => Err(MISSING.to_owned()),
            };
            (name, r)
        })
        .collect()
}

/// Boots the benchmark guest (2 vCPUs) and returns one result per wanted benchmark.
pub fn run(
    host: &Host,
    kernel: &Arc<KernelImage>,
    wanted: &[&'static str],
    quick: bool,
    timeout: Duration,
    progress: &Progress,
) -> Vec<(&'static str, Result<Summary, String>)> {
    let parser = Arc::new(Mutex::new(Parser::default()));
    let sink = Sink {
        parser: Arc::clone(&parser),
        progress: progress.clone(),
    };
    let launched = boot_args(wanted, quick).and_then(|args| {
        tenants::launch(host, kernel, "bench", GUEST_MEM, args, Box::new(sink))
            .map_err(|e| format!("cannot launch the guest: {e}"))
    });
    let end = match launched {
        Err(e) => Err(e),
        Ok(l) => match tenants::wait(l.tenant, timeout) {
            (_, None) => Err(format!("guest timed out after {} s", timeout.as_secs())),
            (TenantOutcome::Exited(0), _) => Ok(()),
            (TenantOutcome::Exited(code), _) => {
                // A non-zero exit leaves what was reported valid; the rest is missing.
                tracing::warn!(code, "the benchmark guest exited with a non-zero code");
                Ok(())
            }
            (TenantOutcome::ProgramKilled(d), _) => {
                tracing::warn!(code = d.code, "the benchmark guest's program was {d}");
                Ok(())
            }
            (TenantOutcome::Crashed(r), _) => Err(format!("guest crashed: {}", r.cause)),
        },
    };
    let parser = parser.lock().unwrap_or_else(|e| e.into_inner());
    if end.is_ok() && !parser.done() {
        tracing::warn!("the benchmark guest did not print @bench-done");
    }
    figures(wanted, &parser, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "pvmux-kernel: ABI v2, 2 vCPUs\n\
        @bench call.in_sandbox median_ns=12.345 p99_ns=20.000 samples=1000\n\
        @bench hypercall.spin median_ns=310.5 p99_ns=900 samples=500 extra=1\n\
        @bench-unavailable halt_wake needs 2 vCPUs\n\
        @bench exception.int3 median_ns=abc p99_ns=1 samples=3\n\
        @bench interrupt.timer median_ns=1 samples=3\n\
        @bench thread_switch median_ns=1 p99_ns=2 samples=0\n\
        @bench-unavailable shadow_fill.page\r\n\
        @bench-done\n";

    fn parse_in_pieces(text: &str, piece: usize) -> Parser {
        let mut p = Parser::default();
        for chunk in text.as_bytes().chunks(piece) {
            p.feed(chunk);
        }
        p
    }

    #[test]
    fn parses_lines_split_across_writes() {
        for piece in [1, 3, 7, 64, 10_000] {
            let p = parse_in_pieces(SAMPLE, piece);
            assert!(p.done(), "piece {piece}");
            let f = figures(&GUEST_NAMES, &p, Ok(()));
            let get = |n: &str| f.iter().find(|(k, _)| *k == n).unwrap().1.clone();
            assert_eq!(
                get("call.in_sandbox"),
                Ok(Summary {
                    median: 12.345,
                    p99: 20.0,
                    samples: 1000
                })
            );
            assert_eq!(get("hypercall.spin").unwrap().median, 310.5);
            assert_eq!(get("halt_wake"), Err("needs 2 vCPUs".to_owned()));
            assert_eq!(get("exception.int3"), Err(MALFORMED.to_owned()));
            assert_eq!(get("interrupt.timer"), Err(MALFORMED.to_owned()));
            assert_eq!(get("thread_switch"), Err(MALFORMED.to_owned()));
            assert_eq!(
                get("shadow_fill.page"),
                Err("guest gave no reason".to_owned())
            );
            assert_eq!(get("hypercall.block"), Err(MISSING.to_owned()));
            assert_eq!(f.len(), GUEST_NAMES.len());
        }
    }

    #[test]
    fn a_crash_makes_every_figure_unavailable() {
        let p = parse_in_pieces(SAMPLE, 5);
        let f = figures(&GUEST_NAMES, &p, Err("guest crashed: boom".to_owned()));
        assert!(f
            .iter()
            .all(|(_, r)| r == &Err("guest crashed: boom".to_owned())));
    }

    #[test]
    fn incomplete_or_foreign_lines_are_ignored() {
        let p = parse_in_pieces(
            "@benchmark x\nxx @bench call.in_sandbox median_ns=1 p99_ns=1 samples=1\n\
             @bench hypercall.spin median_ns=1 p99_ns=1 samples=1",
            4,
        );
        assert!(p.figures().is_empty());
        assert!(!p.done());
        let mut long = Parser::default();
        long.feed(&vec![b'x'; 100_000]);
        long.feed(b"\n@bench-done\n");
        assert!(long.done());
    }

    #[test]
    fn ready_and_last_line() {
        let before = pvmux_host::clock::monotonic_ns();
        let p = parse_in_pieces(
            "booting\r\n\n@ready\nhello world \n@bench-done\n@ready\n",
            3,
        );
        let ready = p.ready_ns().expect("@ready seen");
        assert!(ready >= before && ready <= pvmux_host::clock::monotonic_ns());
        assert_eq!(p.last_line(), "hello world");
        assert!(p.done());
        assert_eq!(Parser::default().ready_ns(), None);
    }

    #[test]
    fn boot_arguments() {
        let words = |w: &[&str], q| boot_args(w, q).unwrap().to_string();
        assert_eq!(words(&GUEST_NAMES, false), "bench=all");
        assert_eq!(words(&GUEST_NAMES, true), "bench_quick bench=all");
        assert_eq!(
            words(&["hypercall.spin", "halt_wake"], true),
            "bench_quick bench=hypercall.spin,halt_wake"
        );
    }
}
