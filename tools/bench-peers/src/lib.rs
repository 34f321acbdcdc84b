//! Peer micro-benchmarks for `pvmux bench`: what the same transitions cost with the host's own
//! mechanisms, measured on the same machine in the same run as pvmux's figures.
//!
//! | function | what one operation is |
//! |---|---|
//! | [`getppid`] | a native `getppid` system call |
//! | [`seccomp_trap`] | `getppid` trapped by a `SECCOMP_RET_TRAP` filter into a `SIGSYS` handler that sets the return value and returns |
//! | [`ptrace_sysemu`] | `getppid` in a tracee stopped with `PTRACE_SYSEMU`, its registers read and written by the tracer, and resumed (the User-Mode-Linux way) |
//! | [`futex_pingpong`] | a futex wake/wait round trip between two processes on one CPU or on two |
//! | [`kvm`] | a KVM exit to user space (`out`) and an exit handled in the kernel (`cpuid`) of a tiny guest |
//!
//! [`CpuHogs`] are the CPU-bound processes the `*.contended` figures run next to.
//!
//! Everything that changes process state (signal handlers, seccomp filters, tracing, CPU
//! affinity, KVM) runs in a forked child process with a timeout, so a peer that fails or hangs
//! is reported as a [`PeerError`] and never disturbs the caller. Times come from
//! `CLOCK_MONOTONIC` ([`std::time::Instant`]); very short operations are timed in batches and
//! each sample is the batch time divided by the batch size.
#![deny(unsafe_op_in_unsafe_fn)]

mod child;
mod futex;
mod kvm;
mod load;
mod measure;
mod ptrace;
mod seccomp;
mod syscall;

use std::time::Duration;

pub use futex::{futex_pingpong, Placement};
pub use kvm::{kvm, GuestMode, KvmReport};
pub use load::CpuHogs;
pub use ptrace::ptrace_sysemu;
pub use seccomp::seccomp_trap;
pub use syscall::getppid;

/// Per-operation times in nanoseconds, one entry per sample, in measurement order.
pub type Samples = Vec<f64>;

/// How much to measure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    /// Samples taken and thrown away before measuring (warm-up).
    pub warmup: usize,
    /// Samples to keep.
    pub samples: usize,
    /// Stop early (with at least [`Plan::MIN_SAMPLES`] kept) once measuring took this long.
    pub max_time: Duration,
    /// Kill a peer's child process that has not finished after this long.
    pub timeout: Duration,
}

impl Plan {
    /// Fewest samples kept even when [`Plan::max_time`] is exceeded.
    pub const MIN_SAMPLES: usize = 20;

    /// A plan for `pvmux bench --quick`: a few hundred samples, at most ~0.5 s per peer.
    pub const QUICK: Plan = Plan {
        warmup: 30,
        samples: 400,
        max_time: Duration::from_millis(500),
        timeout: Duration::from_secs(4),
    };

    /// A plan for the full `pvmux bench`: thousands of samples, at most ~3 s per peer.
    pub const FULL: Plan = Plan {
        warmup: 200,
        samples: 5000,
        max_time: Duration::from_secs(3),
        timeout: Duration::from_secs(15),
    };
}

/// Why a peer has no figures.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The host does not offer what the peer needs, or a step failed.
    #[error("{0}")]
    Unavailable(String),
    /// The peer's child process did not finish in time and was killed.
    #[error("timed out after {0:?} (child process killed)")]
    TimedOut(Duration),
    /// The peer's child process died or exited without reporting.
    #[error("child process {0}")]
    ChildDied(String),
}

impl PeerError {
    /// An [`PeerError::Unavailable`] saying what failed: `"{what}: {err}"`.
    pub fn failed(what: &str, err: impl std::fmt::Display) -> Self {
        Self::Unavailable(format!("{what}: {err}"))
    }
}

/// The CPUs this process may run on (its affinity mask), in increasing order.
pub fn allowed_cpus() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| set.is_set(c))
            .collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}
