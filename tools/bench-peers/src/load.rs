//! CPU-bound host processes: the load under which `pvmux bench` measures its `*.contended`
//! figures.
//!
//! Each hog is a forked child that does nothing but compute (no system call, no memory beyond
//! its copy of the parent's) at the nice value it inherits. It dies with its parent: the
//! child asks for `SIGKILL` when the forking thread ends (`PR_SET_PDEATHSIG`, checked against
//! a parent that died before the request), so a panic that aborts, a `SIGKILL` or a Ctrl-C
//! (which also reaches the hogs directly: they stay in the caller's process group) leave no
//! orphan behind; dropping [`CpuHogs`] kills and reaps them.

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, getpid, getppid, ForkResult, Pid};

use crate::child::exit_child;
use crate::PeerError;

/// Running CPU hogs; killed and reaped when dropped.
#[derive(Debug)]
pub struct CpuHogs {
    pids: Vec<Pid>,
}

impl CpuHogs {
    /// Starts `n` hogs. Call it from the thread that will outlive them (the main thread): a
    /// hog dies when the thread that forked it ends.
    pub fn start(n: usize) -> Result<Self, PeerError> {
        let parent = getpid();
        let mut hogs = Self {
            pids: Vec::with_capacity(n),
        };
        for _ in 0..n {
            // SAFETY: the child only makes `prctl`/`getppid` calls and computes until it is
            // killed; it never returns into the caller's frames, takes no lock and allocates
            // nothing.
            match unsafe { fork() } {
                // The hogs started so far are killed by the drop.
                Err(e) => return Err(PeerError::failed("fork", e)),
                Ok(ForkResult::Child) => {
                    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err()
                        || getppid() != parent
                    {
                        exit_child(0);
                    }
                    spin()
                }
                Ok(ForkResult::Parent { child }) => hogs.pids.push(child),
            }
        }
        Ok(hogs)
    }

    /// Their process ids.
    pub fn pids(&self) -> Vec<i32> {
        self.pids.iter().map(|p| p.as_raw()).collect()
    }
}

impl Drop for CpuHogs {
    fn drop(&mut self) {
        for &pid in &self.pids {
            let _ = kill(pid, Signal::SIGKILL);
        }
        for &pid in &self.pids {
            let _ = waitpid(pid, None);
        }
    }
}

/// Computes forever (an xorshift, kept observable so it is not optimised away).
fn spin() -> ! {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    loop {
        for _ in 0..1_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        std::hint::black_box(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hogs run (they use CPU time) and are gone after the drop.
    #[test]
    fn hogs_burn_cpu_and_die() {
        let hogs = CpuHogs::start(2).unwrap();
        let pids = hogs.pids();
        assert_eq!(pids.len(), 2);
        let utime = |pid: i32| -> u64 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            // utime is field 14 (the 12th after the parenthesised comm).
            let after = stat.rsplit_once(')').unwrap().1;
            after.split_whitespace().nth(11).unwrap().parse().unwrap()
        };
        // Each hog gets CPU time (however busy the host is: up to 30 s).
        let t0 = std::time::Instant::now();
        while pids.iter().any(|&p| utime(p) == 0) {
            assert!(t0.elapsed().as_secs() < 30, "a hog never ran");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        drop(hogs);
        for pid in &pids {
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "hog {pid} still exists"
            );
        }
    }
}
