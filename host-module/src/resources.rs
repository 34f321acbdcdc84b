//! A running tenant's resources, live: the guest's figures (tasks, memory) and its task
//! limit, through `pending::RESOURCES`, `TaskLimitTake` and `StatsReport` (docs/ABI.md
//! §resources), and the host's side (CPU time, the tenant cgroup's CPU controls). Used by
//! [`crate::TenantHandle::guest_stats`], [`crate::TenantHandle::set_task_limit`],
//! [`crate::TenantHandle::cpu_time`] and [`crate::TenantHandle::update_cpu`].

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use pvmux_hypercalls::resources::{GuestStats, GUEST_STATS_SIZE, TASK_LIMIT_NONE};
use pvmux_hypercalls::HcError;
use zerocopy::FromBytes;

use crate::GuestMemory;

/// How long the host waits for the guest to answer `pending::RESOURCES`.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a resource request failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResourceError {
    /// The tenant is not running.
    #[error("the tenant is not running")]
    NotRunning,
    /// The guest did not answer in time (a kernel without ABI v6's resources, or busy).
    #[error("the guest kernel did not report its figures within {0:?}")]
    NoAnswer(Duration),
    /// The tenant is paused and the guest has not reported yet.
    #[error("the tenant is paused and the guest has not reported its figures yet")]
    PausedNoFigures,
    /// A task limit of 0.
    #[error("a task limit must be at least 1")]
    BadTaskLimit,
    /// The tenant has no cgroup with the `cpu` controller.
    #[error("the tenant has no host cgroup with the cpu controller")]
    NoCpuCgroup,
    /// Writing the cgroup failed.
    #[error("cannot change the tenant cgroup: {0}")]
    Cgroup(String),
}

/// A task limit the host sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskLimit {
    /// At most this many tasks (at least 1; the guest kernel's own ceiling still applies).
    Max(u32),
    /// No limit but the guest kernel's own ceiling.
    KernelCeiling,
}

impl TaskLimit {
    fn raw(self) -> Result<u32, ResourceError> {
        match self {
            Self::Max(0) => Err(ResourceError::BadTaskLimit),
            Self::Max(n) => Ok(n.min(TASK_LIMIT_NONE - 1)),
            Self::KernelCeiling => Ok(TASK_LIMIT_NONE),
        }
    }
}

#[derive(Debug, Default)]
struct Board {
    /// The task limit set and not taken yet (0: none).
    pending_limit: u32,
    /// Task limits taken so far.
    taken: u64,
    /// `reports` when the last limit was taken.
    taken_at: u64,
    /// Reports so far.
    reports: u64,
    /// The last report.
    last: Option<GuestStats>,
}

/// The host's end of the exchange, one per tenant.
#[derive(Debug, Default)]
pub(crate) struct Resources {
    board: Mutex<Board>,
    changed: Condvar,
}

impl Resources {
    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `TaskLimitTake`.
    pub(crate) fn take_task_limit(&self) -> u32 {
        let mut b = self.lock();
        let l = std::mem::take(&mut b.pending_limit);
        if l != 0 {
            b.taken += 1;
            b.taken_at = b.reports;
        }
        l
    }

    /// `StatsReport` (checked).
    pub(crate) fn report(&self, stats: GuestStats) {
        let mut b = self.lock();
        b.reports += 1;
        b.last = Some(stats);
        self.changed.notify_all();
    }

    /// The last report, if any.
    pub(crate) fn last(&self) -> Option<GuestStats> {
        self.lock().last
    }

    /// The number of reports so far.
    pub(crate) fn reports(&self) -> u64 {
        self.lock().reports
    }

    /// Sets a task limit for the guest to take; returns the number of limits taken so far.
    pub(crate) fn set_task_limit(&self, limit: TaskLimit) -> Result<u64, ResourceError> {
        let raw = limit.raw()?;
        let mut b = self.lock();
        b.pending_limit = raw;
        Ok(b.taken)
    }

    /// Waits at most `timeout` for a report after report number `after`.
    pub(crate) fn wait_report(&self, after: u64, timeout: Duration) -> Option<GuestStats> {
        self.wait(timeout, |b| b.reports > after)
    }

    /// Waits at most `timeout` until a limit was taken after `taken` and reported on.
    pub(crate) fn wait_taken(&self, taken: u64, timeout: Duration) -> Option<GuestStats> {
        self.wait(timeout, |b| b.taken > taken && b.reports > b.taken_at)
    }

    fn wait(&self, timeout: Duration, done: impl Fn(&Board) -> bool) -> Option<GuestStats> {
        let deadline = Instant::now() + timeout;
        let mut b = self.lock();
        loop {
            if done(&b) {
                return b.last;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            b = self
                .changed
                .wait_timeout(b, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// `StatsReport(rec_gpa)`: copies the record once and checks it.
pub(crate) fn read_report(mem: &GuestMemory, gpa: u64) -> Result<GuestStats, HcError> {
    let bytes = mem
        .read_vec(gpa, GUEST_STATS_SIZE)
        .map_err(|_| HcError::BadAddress)?;
    let stats = GuestStats::read_from_bytes(&bytes).map_err(|_| HcError::InvalidArgument)?;
    stats
        .check(mem.size())
        .map_err(|_| HcError::InvalidArgument)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(tasks: u32) -> GuestStats {
        GuestStats {
            tasks,
            task_limit: 64,
            processes: 1,
            _reserved: 0,
            mem_total: 16 << 20,
            mem_free: 8 << 20,
        }
    }

    #[test]
    fn a_limit_is_taken_once_and_waited_for() {
        let r = Resources::default();
        assert_eq!(r.take_task_limit(), 0);
        assert_eq!(
            r.set_task_limit(TaskLimit::Max(0)),
            Err(ResourceError::BadTaskLimit)
        );
        let taken = r.set_task_limit(TaskLimit::Max(7)).unwrap();
        // A report before the take does not answer the limit.
        r.report(stats(3));
        assert_eq!(r.wait_taken(taken, Duration::ZERO), None);
        assert_eq!(r.take_task_limit(), 7);
        assert_eq!(r.take_task_limit(), 0);
        assert_eq!(r.wait_taken(taken, Duration::ZERO), None);
        r.report(stats(4));
        assert_eq!(r.wait_taken(taken, Duration::ZERO), Some(stats(4)));
        r.set_task_limit(TaskLimit::KernelCeiling).unwrap();
        assert_eq!(r.take_task_limit(), TASK_LIMIT_NONE);
    }

    #[test]
    fn reports_wake_waiters() {
        let r = std::sync::Arc::new(Resources::default());
        let n = r.reports();
        let r2 = std::sync::Arc::clone(&r);
        let t = std::thread::spawn(move || r2.wait_report(n, Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        r.report(stats(5));
        assert_eq!(t.join().unwrap(), Some(stats(5)));
        assert_eq!(r.last(), Some(stats(5)));
    }

    #[test]
    fn reports_are_checked() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        use zerocopy::IntoBytes;
        mem.write(0x1000, stats(2).as_bytes()).unwrap();
        assert_eq!(read_report(&mem, 0x1000), Ok(stats(2)));
        let bad = GuestStats {
            mem_free: 17 << 20,
            ..stats(2)
        };
        mem.write(0x2000, bad.as_bytes()).unwrap();
        assert_eq!(read_report(&mem, 0x2000), Err(HcError::InvalidArgument));
        assert_eq!(read_report(&mem, 16 << 20), Err(HcError::BadAddress));
    }
}
