//! Running a measurement in a forked child process with a timeout.
//!
//! The child reports lines of text over a pipe as it goes; the parent collects them until the
//! pipe closes or the timeout passes, then kills (if needed) and reaps the child. A child that
//! hangs (e.g. in `KVM_RUN`) or crashes therefore costs at most the timeout.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::pipe::{pipe_with, PipeFlags};

use crate::PeerError;

/// The write end of the report pipe, as seen by the child.
pub(crate) struct Reporter(std::fs::File);

impl Reporter {
    /// Sends `text` to the parent at once (errors are ignored: the parent may be gone).
    pub(crate) fn send(&mut self, text: &str) {
        let _ = self.0.write_all(text.as_bytes());
    }
}

/// What a child reported and how it ended.
#[derive(Debug)]
pub(crate) struct ChildReport {
    /// Everything the child sent.
    pub(crate) text: String,
    /// `Ok` if it exited with status 0 before the timeout.
    pub(crate) end: Result<(), PeerError>,
}

/// Forks; the child sets `PR_SET_PDEATHSIG` to `SIGKILL`, runs `f`, and exits with status 0
/// (`f` may exit or die on its own). Returns what it reported.
///
/// `f` runs in a copy of a possibly multi-threaded process: it may allocate (glibc's `fork`
/// leaves the allocator usable in the child) but must not take other locks another thread may
/// have held at the fork (no stdio, no `tracing`).
pub(crate) fn run(timeout: Duration, f: impl FnOnce(&mut Reporter)) -> ChildReport {
    let (rd, wr) = match pipe_with(PipeFlags::CLOEXEC) {
        Ok(p) => p,
        Err(e) => return failed(PeerError::failed("pipe", e)),
    };
    // SAFETY: the child only runs `f` (whose contract above forbids locks other threads may
    // hold) and then `_exit`s; it never returns into the caller's stack frames.
    match unsafe { fork() } {
        Err(e) => failed(PeerError::failed("fork", e)),
        Ok(ForkResult::Child) => {
            drop(rd);
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            let mut reporter = Reporter(std::fs::File::from(wr));
            f(&mut reporter);
            drop(reporter);
            exit_child(0)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(wr);
            collect(child, rd, timeout)
        }
    }
}

/// Ends a forked child without running any exit handlers of the parent's copy.
pub(crate) fn exit_child(status: i32) -> ! {
    // SAFETY: `_exit` only ends the process; skipping atexit handlers and stdio flushing is
    // what a forked child must do.
    unsafe { libc::_exit(status) }
}

fn failed(e: PeerError) -> ChildReport {
    ChildReport {
        text: String::new(),
        end: Err(e),
    }
}

fn collect(child: Pid, rd: OwnedFd, timeout: Duration) -> ChildReport {
    let deadline = Instant::now() + timeout;
    let mut bytes = Vec::new();
    let mut file = std::fs::File::from(rd);
    let mut buf = [0u8; 16384];
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        let ts = Timespec {
            tv_sec: left.as_secs() as _,
            tv_nsec: left.subsec_nanos() as _,
        };
        let mut fds = [PollFd::new(&file, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let end = if timed_out {
        let _ = kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
        Err(PeerError::TimedOut(timeout))
    } else {
        reap(
            child,
            deadline.max(Instant::now() + Duration::from_secs(1)),
            timeout,
        )
    };
    ChildReport { text, end }
}

/// Waits for `child` until `deadline`, then kills it.
fn reap(child: Pid, deadline: Instant, timeout: Duration) -> Result<(), PeerError> {
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
            Ok(WaitStatus::Exited(_, code)) => {
                return Err(PeerError::ChildDied(format!("exited with status {code}")))
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Err(PeerError::ChildDied(format!("was killed by {sig}")))
            }
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Ok(_) => {
                let _ = kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                return Err(PeerError::TimedOut(timeout));
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(PeerError::failed("waitpid", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_and_exit_status() {
        let r = run(Duration::from_secs(5), |p| p.send("hello\nworld\n"));
        assert_eq!(r.text, "hello\nworld\n");
        assert_eq!(r.end, Ok(()));
        let r = run(Duration::from_secs(5), |p| {
            p.send("partial");
            exit_child(3)
        });
        assert_eq!(r.text, "partial");
        assert_eq!(
            r.end,
            Err(PeerError::ChildDied("exited with status 3".into()))
        );
    }

    #[test]
    fn a_hung_child_is_killed() {
        let t0 = Instant::now();
        let r = run(Duration::from_millis(200), |p| {
            p.send("started\n");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        assert_eq!(r.text, "started\n");
        assert_eq!(r.end, Err(PeerError::TimedOut(Duration::from_millis(200))));
        assert!(t0.elapsed() < Duration::from_secs(3));
    }
}
