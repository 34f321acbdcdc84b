//! Per-vCPU figures of a running tenant (`pvmux stats`): what the host measures itself — the
//! CPU time of the threads that run each vCPU, the hypercalls its service thread served —
//! and what only the guest knows — its programs' system calls and faults, counters it keeps
//! in the vCPU's shared page ([`pvmux_hypercalls::vcpu::stat`]).
//!
//! Every guest-written number is untrusted: a counter is clamped to [`GUEST_COUNT_MAX`], and
//! the thread id a vCPU page names is used only if it is a thread of the tenant's own kernel
//! sandbox (a lying guest can at most move CPU time between its own vCPUs).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use pvmux_hypercalls::vcpu::stat;

use crate::control::ControlRegion;

/// The largest guest-reported count passed on (2^52: exact as a JSON number).
pub const GUEST_COUNT_MAX: u64 = 1 << 52;

/// One vCPU's figures, cumulative since the guest booted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuFigures {
    /// The vCPU's index.
    pub index: u32,
    /// Host CPU time of the threads that ran this vCPU: its kernel sandbox thread and, in each
    /// live user sandbox, the thread of its slot (host-measured).
    pub run_time: Duration,
    /// Hypercalls the host's service thread of this vCPU served (host-counted).
    pub hypercalls: u64,
    /// System calls of the guest's programs the guest kernel served on it (guest-reported).
    pub syscalls: u64,
    /// Exceptions (page faults and others) of the guest's programs the guest kernel handled
    /// on it (guest-reported).
    pub faults: u64,
}

/// The figures of every vCPU: `hypercalls[i]` is the host's count for vCPU `i`,
/// `kernel_pid` the kernel sandbox, `user_pids` the live user sandboxes.
pub(crate) fn collect(
    ctl: &ControlRegion,
    hypercalls: &[std::sync::atomic::AtomicU64],
    kernel_pid: u32,
    user_pids: &[u32],
) -> Vec<VcpuFigures> {
    let tick = crate::limits::budget::tick_ns();
    let user_threads: Vec<Vec<u32>> = user_pids.iter().map(|&p| threads(p)).collect();
    (0..ctl.nr_vcpus())
        .map(|i| {
            let mut f = VcpuFigures {
                index: i,
                hypercalls: hypercalls.get(i as usize).map_or(0, |c| c.load(Relaxed)),
                ..VcpuFigures::default()
            };
            let mut ticks = 0u64;
            if let Some(s) = ctl.vcpu(i) {
                f.syscalls = s.stats[stat::GUEST_SYSCALLS]
                    .load(Relaxed)
                    .min(GUEST_COUNT_MAX);
                f.faults = s.stats[stat::GUEST_FAULTS]
                    .load(Relaxed)
                    .min(GUEST_COUNT_MAX);
                let tid = s.tid.load(Relaxed);
                if tid != 0 {
                    ticks += thread_ticks(kernel_pid, tid).unwrap_or(0);
                }
            }
            // A user sandbox's threads are its slots, created in order: thread `i` runs vCPU
            // `i`'s user code.
            for (pid, tids) in user_pids.iter().zip(&user_threads) {
                if let Some(&tid) = tids.get(i as usize) {
                    ticks += thread_ticks(*pid, tid).unwrap_or(0);
                }
            }
            f.run_time = Duration::from_nanos(ticks.saturating_mul(tick));
            f
        })
        .collect()
}

/// The threads of process `pid` in creation order (`/proc/PID/task` lists them so).
fn threads(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// utime + stime of thread `tid` of process `pid` in clock ticks; `None` if it is not one of
/// `pid`'s threads (the path `/proc/PID/task/TID` exists only for `pid`'s own threads).
fn thread_ticks(pid: u32, tid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    crate::limits::budget::stat_ticks(&stat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_threads_are_found_and_others_refused() {
        let me = std::process::id();
        let t = threads(me);
        assert!(t.contains(&me));
        assert!(thread_ticks(me, me).is_some());
        // pid 1's main thread is not one of this process's threads.
        assert_eq!(thread_ticks(me, 1), None);
    }
}
