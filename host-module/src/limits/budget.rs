//! The whole tenant's CPU time: its sandboxes (the cgroup's counter, or the sum over its
//! processes) plus the host work done on its behalf (each host thread that serves only this
//! tenant charges its own thread CPU time), checked against `--cpu-seconds` and, for host
//! work, rate-limited to `--cpus` with a token bucket.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::process::Pid;

use crate::sandbox::SandboxExit;
use crate::HostError;

/// How often the monitor samples the sandboxes' CPU time.
pub const SAMPLE_PERIOD: Duration = Duration::from_millis(25);

/// Burst of the host-work rate limit, in seconds of wall time at the rate.
const BURST_SECS: f64 = 0.2;

/// Longest single wait of a throttled host thread before it looks at its stop flag again.
const MAX_WAIT: Duration = Duration::from_millis(50);

/// One tenant's CPU account.
#[derive(Debug)]
pub(crate) struct TenantCpu {
    /// `--cpu-seconds`, in ns.
    budget_ns: Option<u64>,
    /// `--cpus`.
    rate: Option<f64>,
    /// The sandboxes' CPU time, as last sampled (the cgroup, or live + reaped processes).
    sandboxes_ns: AtomicU64,
    /// Without a cgroup counter: the CPU time of reaped sandboxes (`wait4`).
    reaped_ns: AtomicU64,
    /// Host work on the tenant's behalf.
    host_ns: AtomicU64,
    /// The budget was found spent.
    exhausted: AtomicBool,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    at: Instant,
    /// Tokens in ns of CPU time (negative: in debt).
    tokens: f64,
    /// The total seen at `at`.
    seen_ns: u64,
}

impl TenantCpu {
    /// An account for a tenant with these limits.
    pub(crate) fn new(cpu_seconds: Option<u64>, rate: Option<f64>) -> Self {
        Self {
            budget_ns: cpu_seconds.map(|s| s.saturating_mul(1_000_000_000)),
            rate: rate.filter(|r| r.is_finite() && *r > 0.0),
            sandboxes_ns: AtomicU64::new(0),
            reaped_ns: AtomicU64::new(0),
            host_ns: AtomicU64::new(0),
            exhausted: AtomicBool::new(false),
            bucket: Mutex::new(Bucket {
                at: Instant::now(),
                tokens: 0.0,
                seen_ns: 0,
            }),
        }
    }

    /// Whether anything is counted at all (a budget or a rate).
    pub(crate) fn active(&self) -> bool {
        self.budget_ns.is_some() || self.rate.is_some()
    }

    /// The budget, if any.
    pub(crate) fn budget(&self) -> Option<Duration> {
        self.budget_ns.map(Duration::from_nanos)
    }

    /// The whole tenant's CPU time so far: sandboxes + host work.
    pub(crate) fn used(&self) -> Duration {
        Duration::from_nanos(self.used_ns())
    }

    fn used_ns(&self) -> u64 {
        self.sandboxes_ns
            .load(Relaxed)
            .saturating_add(self.host_ns.load(Relaxed))
    }

    /// Host work on the tenant's behalf so far.
    pub(crate) fn host_work(&self) -> Duration {
        Duration::from_nanos(self.host_ns.load(Relaxed))
    }

    /// Records a new sample of the sandboxes' CPU time (monotonic: a smaller sample, e.g.
    /// a process's last ticks not yet in the reaped sum, is ignored).
    pub(crate) fn set_sandboxes(&self, ns: u64) {
        self.sandboxes_ns.fetch_max(ns, Relaxed);
    }

    /// Adds the CPU time of a reaped sandbox (process accounting).
    pub(crate) fn add_reaped(&self, ns: u64) {
        self.reaped_ns.fetch_add(ns, Relaxed);
    }

    /// The CPU time of reaped sandboxes so far (process accounting).
    pub(crate) fn reaped_ns(&self) -> u64 {
        self.reaped_ns.load(Relaxed)
    }

    /// Charges `ns` of host work.
    pub(crate) fn charge_host(&self, ns: u64) {
        self.host_ns.fetch_add(ns, Relaxed);
    }

    /// Whether the budget is spent (and records it: true once, then always).
    pub(crate) fn check_budget(&self) -> bool {
        if self.exhausted.load(SeqCst) {
            return true;
        }
        let over = self.budget_ns.is_some_and(|b| self.used_ns() >= b);
        if over {
            self.exhausted.store(true, SeqCst);
        }
        over
    }

    /// Whether the budget was found spent.
    pub(crate) fn exhausted(&self) -> bool {
        self.exhausted.load(SeqCst)
    }

    /// With a rate: waits until the tenant is within its rate again (a token bucket over
    /// the whole tenant's CPU time, filled at `rate` CPU-seconds per second, at most
    /// [`BURST_SECS`] worth), or until `stop` is set. Host threads call it before serving
    /// a request, so host work is delayed, never dropped.
    pub(crate) fn throttle(&self, stop: &AtomicBool) {
        let Some(rate) = self.rate else { return };
        loop {
            let wait = {
                let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let used = self.used_ns();
                let burst = rate * BURST_SECS * 1e9;
                let fill = now.duration_since(b.at).as_nanos() as f64 * rate;
                let spent = used.saturating_sub(b.seen_ns) as f64;
                b.tokens = (b.tokens + fill).min(burst) - spent;
                b.at = now;
                b.seen_ns = used;
                deficit_wait(b.tokens, rate)
            };
            match wait {
                None => return,
                Some(_) if stop.load(SeqCst) || self.exhausted() => return,
                Some(w) => std::thread::sleep(w.min(MAX_WAIT)),
            }
        }
    }
}

/// How long to wait at `rate` to pay a `tokens` debt (ns; `None`: not in debt).
fn deficit_wait(tokens: f64, rate: f64) -> Option<Duration> {
    (tokens < 0.0).then(|| Duration::from_nanos((-tokens / rate) as u64 + 1))
}

/// Measures the CPU time of the calling host thread and charges it to a tenant.
#[derive(Debug)]
pub(crate) struct HostMeter {
    last_ns: u64,
}

impl HostMeter {
    /// Starts measuring the calling thread (its CPU time before is not charged).
    pub(crate) fn start() -> Self {
        Self {
            last_ns: thread_cpu_ns(),
        }
    }

    /// Charges the calling thread's CPU time since the last charge to `cpu`.
    pub(crate) fn charge(&mut self, cpu: &TenantCpu) {
        let now = thread_cpu_ns();
        cpu.charge_host(now.saturating_sub(self.last_ns));
        self.last_ns = now;
    }
}

/// The calling thread's CPU time, in nanoseconds.
pub(crate) fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

/// The CPU time (user + system, all threads) of live or exited-but-unreaped process `pid`
/// from `/proc/PID/stat`, in nanoseconds (clock-tick resolution).
pub fn proc_cpu_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat_ticks(&stat)?.saturating_mul(tick_ns()))
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line, in clock ticks.
pub(crate) fn stat_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command name, the state is field 3: utime (14) is index 11.
    let u: u64 = f.get(11)?.parse().ok()?;
    let s: u64 = f.get(12)?.parse().ok()?;
    Some(u + s)
}

pub(crate) fn tick_ns() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1_000_000_000 / (hz.max(1) as u64)
}

/// Reaps `pid` (blocking) like [`crate::sandbox::reap`] and returns its CPU time from
/// `wait4`'s resource usage (user + system, microsecond resolution) with its exit.
pub(crate) fn reap_counting(pid: Pid) -> Result<(SandboxExit, u64), HostError> {
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `status` and `ru` are valid for writes for the duration of the call.
        let r = unsafe { libc::wait4(pid.as_raw_nonzero().get(), &mut status, 0, &mut ru) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(HostError::os("wait4", e));
        }
        let tv = |t: libc::timeval| (t.tv_sec as u64) * 1_000_000_000 + (t.tv_usec as u64) * 1000;
        let ns = tv(ru.ru_utime) + tv(ru.ru_stime);
        if libc::WIFEXITED(status) {
            return Ok((SandboxExit::Exited(libc::WEXITSTATUS(status)), ns));
        }
        if libc::WIFSIGNALED(status) {
            return Ok((SandboxExit::Signaled(libc::WTERMSIG(status)), ns));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_whole_tenant() {
        let c = TenantCpu::new(Some(1), None);
        assert!(c.active());
        c.set_sandboxes(600_000_000);
        c.set_sandboxes(500_000_000); // not backwards
        c.charge_host(300_000_000);
        assert_eq!(c.used(), Duration::from_millis(900));
        assert!(!c.check_budget());
        c.charge_host(100_000_000);
        assert!(c.check_budget());
        assert!(c.exhausted());
        assert!(!TenantCpu::new(None, None).active());
        assert!(TenantCpu::new(None, Some(0.5)).active());
    }

    #[test]
    fn throttles_only_in_debt() {
        assert_eq!(deficit_wait(1.0, 0.1), None);
        assert_eq!(deficit_wait(0.0, 0.1), None);
        // 10 ms of debt at 0.1 CPUs: 100 ms to pay back.
        assert_eq!(
            deficit_wait(-10_000_000.0, 0.1),
            Some(Duration::from_nanos(100_000_001))
        );
        // Without a rate, never waits.
        let c = TenantCpu::new(Some(1), None);
        c.charge_host(10_000_000_000);
        c.throttle(&AtomicBool::new(false));
        // With one, a tenant in debt waits until it is stopped.
        let c = TenantCpu::new(None, Some(0.01));
        c.charge_host(10_000_000_000);
        let stop = AtomicBool::new(true);
        c.throttle(&stop);
    }

    #[test]
    fn reads_proc_stat() {
        let line = "42 (a) b) c) R 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 100";
        assert_eq!(stat_ticks(line), Some(300));
        assert_eq!(stat_ticks("garbage"), None);
        assert!(proc_cpu_ns(std::process::id()).is_some());
        let a = thread_cpu_ns();
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu_ns() > a);
    }
}
