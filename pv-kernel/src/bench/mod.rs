//! Guest-side micro-benchmarks of the pvmux transitions (`bench=...` on the command line).
//!
//! `bench=all` runs every benchmark of [`BENCHMARKS`] in table order; `bench=NAME[,NAME...]`
//! runs the named ones (an optional `pvmux.` prefix is accepted). `bench_quick` anywhere on
//! the command line selects fewer repetitions. The benchmarks run in a kernel thread pinned to
//! vCPU 0 (so per-vCPU state such as the doorbell and the timer stays put), then the kernel
//! shuts down with exit code 0, or 1 if a benchmark failed unexpectedly.
//!
//! Console protocol (parsed by the host's `pvmux bench`; no other line starts with `@bench`):
//!
//! ```text
//! @bench NAME median_ns=F p99_ns=F samples=N
//! @bench-unavailable NAME REASON TEXT...
//! @bench-done
//! ```
//!
//! `F` has three fractional digits. A benchmark that cannot run here (one vCPU, no memory, a
//! name this kernel does not know) is `@bench-unavailable`; one that failed unexpectedly is
//! `@bench-unavailable NAME failed: ...` and makes the exit code 1.
//!
//! Every time is taken with `rdtsc` and converted with the boot information's clock
//! calibration ([`clock`]); warm-up samples are discarded; the statistics are in [`stats`].

pub(crate) mod clock;
mod shadow;
mod stats;
mod threads;
mod timer;
mod transitions;

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

pub(crate) use timer::{on_event, timer_deadline};

use crate::{hcall, println, sched};
use stats::Summary;

/// Repetition choice: `bench_quick` or the full run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mode {
    /// `bench_quick` was given.
    quick: bool,
}

impl Mode {
    /// `quick` in quick mode, `full` otherwise.
    fn pick<T>(self, quick: T, full: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

/// Why a benchmark produced no numbers.
#[derive(Debug)]
pub(crate) enum BenchError {
    /// It cannot run in this configuration (reported, not a failure).
    Unavailable(String),
    /// It failed unexpectedly (reported; the exit code becomes 1).
    Failed(String),
}

/// A benchmark: returns its samples in picoseconds.
type BenchFn = fn(Mode) -> Result<Vec<u64>, BenchError>;

/// Every benchmark, in the order `bench=all` runs them.
const BENCHMARKS: &[(&str, BenchFn)] = &[
    ("call.in_sandbox", transitions::call_in_sandbox),
    ("hypercall.spin", transitions::hypercall_spin),
    ("hypercall.block", transitions::hypercall_block),
    ("exception.int3", transitions::exception_int3),
    ("interrupt.timer", timer::interrupt_timer),
    ("shadow_fill.page", shadow::fill_page),
    (
        "shadow_fill.page_nofaultaround",
        shadow::fill_page_nofaultaround,
    ),
    ("halt_wake", threads::halt_wake),
    ("thread_switch", threads::thread_switch),
];

/// Collects `warmup + samples` samples from `sample`, keeping the last `samples`.
fn collect(
    warmup: usize,
    samples: usize,
    mut sample: impl FnMut() -> Result<u64, BenchError>,
) -> Result<Vec<u64>, BenchError> {
    let mut out = Vec::new();
    if out.try_reserve_exact(samples).is_err() {
        return Err(BenchError::Unavailable(format!(
            "out of memory for {samples} samples"
        )));
    }
    for _ in 0..warmup {
        sample()?;
    }
    for _ in 0..samples {
        out.push(sample()?);
    }
    Ok(out)
}

/// The benchmark names `list` selects, in order (`all` expands to the whole table).
fn selected(list: &str) -> Vec<&str> {
    let mut names = Vec::new();
    for name in list.split(',').filter(|n| !n.is_empty()) {
        let name = name.strip_prefix("pvmux.").unwrap_or(name);
        if name == "all" {
            names.extend(BENCHMARKS.iter().map(|&(n, _)| n));
        } else {
            names.push(name);
        }
    }
    names
}

/// Runs one benchmark and prints its line; returns false if it failed unexpectedly.
fn run_one(name: &str, mode: Mode) -> bool {
    let Some(&(_, bench)) = BENCHMARKS.iter().find(|&&(n, _)| n == name) else {
        println!("@bench-unavailable {name} unknown benchmark");
        return true;
    };
    match bench(mode) {
        Ok(mut samples) => match Summary::of(&mut samples) {
            Some(s) => {
                println!(
                    "@bench {name} median_ns={} p99_ns={} samples={}",
                    s.median, s.p99, s.samples
                );
                true
            }
            None => {
                println!("@bench-unavailable {name} failed: no samples");
                false
            }
        },
        Err(BenchError::Unavailable(why)) => {
            println!("@bench-unavailable {name} {why}");
            true
        }
        Err(BenchError::Failed(why)) => {
            println!("@bench-unavailable {name} failed: {why}");
            false
        }
    }
}

/// `bench=LIST`: runs the selected benchmarks on a thread pinned to vCPU 0, prints
/// `@bench-done` and shuts down (exit code 1 if any failed unexpectedly).
pub(crate) fn run(list: &'static str, quick: bool) -> ! {
    let mode = Mode { quick };
    let names = selected(list);
    println!(
        "pvmux-kernel: running {} benchmark(s){}",
        names.len(),
        if quick { " (quick)" } else { "" }
    );
    let failures = Arc::new(AtomicU64::new(0));
    let runner = {
        let failures = failures.clone();
        let names = names.clone();
        sched::spawn("bench", Some(0), move || {
            for name in names {
                if !run_one(name, mode) {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    match runner {
        Ok(h) => h.join(),
        Err(e) => {
            for name in names {
                println!(
                    "@bench-unavailable {name} failed: cannot start the benchmark thread ({e:?})"
                );
            }
            failures.fetch_add(1, Ordering::Relaxed);
        }
    }
    println!("@bench-done");
    hcall::shutdown(u64::from(failures.load(Ordering::Relaxed) > 0))
}
