//! Pausing a running tenant ([`crate::TenantHandle::pause`]): every sandbox process of the
//! tenant — the kernel sandbox, its user sandboxes and spares — is stopped with `SIGSTOP`
//! (through its pidfd) and the pause returns once every thread of every one of them is in
//! the stopped state (`/proc/PID/task/TID/stat` state `T`): from then on no guest
//! instruction runs and the tenant uses no CPU. Resuming sends `SIGCONT`.
//!
//! Why stopping and not the cgroup freezer: `SIGSTOP` works the same on every host (cgroup
//! v1, v2 or none; a sandbox under another uid is still the host's child, and a sandbox is
//! the init of its own pid namespace, to which `SIGSTOP` and `SIGKILL` from the parent
//! namespace are always delivered), it stops a sandbox spinning in user code as well as one
//! waiting for the host, and `SIGKILL` ends a stopped process at once. The v1 freezer
//! (this host's layout) holds a `SIGKILL` until the cgroup is thawed: a monitor killed with
//! `kill -9` while its tenant is frozen would leave frozen sandboxes that nothing thaws.
//!
//! While paused the host keeps serving what was in flight (a hypercall a vCPU thread was
//! answering completes; the stub sees the answer when it continues), events raised for the
//! guest stay pending, a user sandbox spawned by a hypercall in flight is stopped as soon as
//! it exists, and the watchdog does not look (a stopped vCPU takes no events).
//!
//! The guest's clocks read the TSC: across a pause, guest `CLOCK_MONOTONIC` and
//! `CLOCK_REALTIME` jump forward by the paused time, and timers that expired meanwhile fire
//! at once when it resumes (as with runc's freezer).

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// How long a pause waits for every thread to stop before it gives up (and resumes).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a pause or resume did not happen.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PauseError {
    /// The tenant is not running (not started yet, or ended).
    #[error("the tenant is not running")]
    NotRunning,
    /// `pause` of a paused tenant.
    #[error("the tenant is already paused")]
    AlreadyPaused,
    /// An upgrade of the tenant's kernel is under way (`pvmux upgrade`).
    #[error("an upgrade of the tenant's kernel is under way")]
    Upgrading,
    /// `resume` of a tenant that is not paused.
    #[error("the tenant is not paused")]
    NotPaused,
    /// A sandbox did not stop in time (the tenant was resumed again).
    #[error("sandbox process {pid} did not stop within {timeout:?}")]
    DidNotStop {
        /// The sandbox's host pid.
        pid: u32,
        /// How long the pause waited.
        timeout: Duration,
    },
    /// Signalling a sandbox failed.
    #[error("cannot signal sandbox process: {0}")]
    Signal(rustix::io::Errno),
}

/// Which way a sandbox goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// `SIGSTOP`.
    Stop,
    /// `SIGCONT`.
    Continue,
}

/// Sends `SIGSTOP` or `SIGCONT` to the sandbox of `pidfd`; a sandbox that has already exited
/// is not an error (it uses no CPU either).
pub(crate) fn signal(pidfd: &OwnedFd, dir: Direction) -> Result<(), PauseError> {
    let sig = match dir {
        Direction::Stop => rustix::process::Signal::STOP,
        Direction::Continue => rustix::process::Signal::CONT,
    };
    match rustix::process::pidfd_send_signal(pidfd, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(PauseError::Signal(e)),
    }
}

/// Whether every thread of process `pid` is stopped (or gone: an exited process runs
/// nothing either).
pub(crate) fn all_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.flatten().all(|t| {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            return true;
        };
        matches!(thread_state(&stat), Some('T' | 't' | 'Z' | 'X') | None)
    })
}

/// The state letter (field 3) of a `/proc/.../stat` line.
fn thread_state(stat: &str) -> Option<char> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// Waits until every process of `pids()` is stopped, at most [`STOP_TIMEOUT`]; returns the
/// first that is not, if any. `pids` is asked again each round (a sandbox spawned meanwhile
/// is stopped by its spawner and counted too).
pub(crate) fn wait_all_stopped(mut pids: impl FnMut() -> Vec<u32>) -> Result<(), PauseError> {
    let start = Instant::now();
    let mut nap = Duration::from_micros(50);
    loop {
        match pids().into_iter().find(|p| !all_stopped(*p)) {
            None => return Ok(()),
            Some(pid) if start.elapsed() >= STOP_TIMEOUT => {
                return Err(PauseError::DidNotStop {
                    pid,
                    timeout: STOP_TIMEOUT,
                })
            }
            Some(_) => {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_of_stat_lines() {
        assert_eq!(thread_state("12 (a b) c) T 1 2"), Some('T'));
        assert_eq!(thread_state("12 (sh) R 1 2"), Some('R'));
        assert_eq!(thread_state("garbage"), None);
    }

    /// A real process spinning in user code: stopped through its pidfd it is seen stopped,
    /// uses no CPU while stopped, runs again once continued, and SIGKILL ends it while
    /// stopped.
    #[test]
    fn a_spinning_process_stops_and_continues() {
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let p = rustix::process::Pid::from_raw(pid as i32).unwrap();
        let fd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).unwrap();
        assert!(!all_stopped(pid));
        signal(&fd, Direction::Stop).unwrap();
        wait_all_stopped(|| vec![pid]).unwrap();
        let before = crate::limits::budget::proc_cpu_ns(pid).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(crate::limits::budget::proc_cpu_ns(pid), Some(before));
        signal(&fd, Direction::Continue).unwrap();
        let start = Instant::now();
        while crate::limits::budget::proc_cpu_ns(pid).unwrap() == before {
            assert!(start.elapsed() < Duration::from_secs(30), "never ran again");
            std::thread::sleep(Duration::from_millis(10));
        }
        signal(&fd, Direction::Stop).unwrap();
        wait_all_stopped(|| vec![pid]).unwrap();
        child.kill().unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // Gone: nothing left to stop.
        assert!(all_stopped(pid));
        assert_eq!(signal(&fd, Direction::Continue), Ok(()));
    }
}
