//! The host half of a vCPU's hypercall doorbell.
//!
//! Protocol (the stub implements the guest half identically): the guest writes `hc_nr` and
//! `hc_args`, stores `hc_req = seq` and futex-wakes `hc_req` if `host_waiting` is set, then
//! waits for `hc_resp == seq`. The host waits for `hc_req != last` (a bounded adaptive spin,
//! then `host_waiting = 1` and a futex wait with a timeout), copies the request out once,
//! handles it, stores `hc_ret`, then `hc_resp = seq`, and futex-wakes `hc_resp` if
//! `guest_waiting` is set. Futexes are shared (the words live in a `MAP_SHARED` memfd).

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;
use pvmux_hypercalls::{VcpuShared, HC_FLAG_NOSPIN};
use rustix::thread::futex;

use crate::control::ControlRegion;

/// Longest the host spins waiting for the next request.
pub const SPIN_BUDGET: Duration = Duration::from_micros(30);
/// The host spins only if the previous request completed at most this long ago.
pub const SPIN_RECENCY: Duration = Duration::from_micros(500);
/// Futex wait timeout: how often a waiting vCPU thread checks for a stop request.
pub const WAIT_TIMEOUT: Duration = Duration::from_millis(50);

/// Why [`Vcpu::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VcpuExit {
    /// The guest made a hypercall; answer it with [`Vcpu::complete`] (except for calls that
    /// do not return).
    Hypercall {
        /// Number and flags (copied once).
        nr: u64,
        /// Arguments (copied once).
        args: [u64; 6],
    },
    /// The tenant is stopping (sandbox gone or host request).
    Stopped,
}

/// The host side of one vCPU.
#[derive(Debug)]
pub struct Vcpu {
    ctl: Arc<ControlRegion>,
    index: u32,
    stop: Arc<AtomicBool>,
    last: u32,
    pending: Option<u32>,
    last_done: Option<Instant>,
    last_nospin: bool,
}

impl Vcpu {
    /// The host side of vCPU `index`; `None` if out of range. `stop` ends [`Vcpu::run`].
    pub fn new(ctl: Arc<ControlRegion>, index: u32, stop: Arc<AtomicBool>) -> Option<Self> {
        ctl.vcpu(index)?;
        Some(Self {
            ctl,
            index,
            stop,
            last: 0,
            pending: None,
            last_done: None,
            last_nospin: false,
        })
    }

    /// This vCPU's index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The shared page (all atomics).
    pub fn shared(&self) -> &VcpuShared {
        // `new` checked the index.
        self.ctl.vcpu(self.index).unwrap_or_else(|| unreachable!())
    }

    /// Waits for the next hypercall or a stop request. Never blocks longer than
    /// [`WAIT_TIMEOUT`] without checking the stop flag.
    pub fn run(&mut self) -> VcpuExit {
        if let Some(seq) = self.pending.take() {
            // The previous request was not completed (a call that does not return).
            self.last = seq;
        }
        let ctl = Arc::clone(&self.ctl);
        let Some(s) = ctl.vcpu(self.index) else {
            return VcpuExit::Stopped;
        };
        let spin = !self.last_nospin && self.last_done.is_some_and(|t| t.elapsed() < SPIN_RECENCY);
        if spin {
            // On timeout, fall through to blocking.
            let _ = self.spin_wait(s);
        }
        loop {
            if s.hc_req.load(Acquire) != self.last {
                break;
            }
            if self.stop.load(Relaxed) {
                return VcpuExit::Stopped;
            }
            s.host_waiting.store(1, SeqCst);
            if s.hc_req.load(SeqCst) == self.last {
                let ts = futex::Timespec {
                    tv_sec: 0,
                    tv_nsec: WAIT_TIMEOUT.as_nanos() as _,
                };
                // EAGAIN (value changed), ETIMEDOUT and EINTR all just mean "look again".
                let _ = futex::wait(&s.hc_req, futex::Flags::empty(), self.last, Some(&ts));
            }
            s.host_waiting.store(0, SeqCst);
        }
        let seq = s.hc_req.load(Acquire);
        let nr = s.hc_nr.load(Relaxed);
        let args: [u64; 6] = std::array::from_fn(|i| s.hc_args[i].load(Relaxed));
        self.pending = Some(seq);
        self.last_nospin = nr & HC_FLAG_NOSPIN != 0;
        VcpuExit::Hypercall { nr, args }
    }

    /// Bounded spin for a new request; true if one arrived.
    fn spin_wait(&self, s: &VcpuShared) -> bool {
        let start = Instant::now();
        let backoff = Backoff::new();
        loop {
            if s.hc_req.load(Acquire) != self.last {
                return true;
            }
            if start.elapsed() >= SPIN_BUDGET {
                return false;
            }
            backoff.spin();
        }
    }

    /// Answers the request returned by the last [`Vcpu::run`] with `ret`.
    pub fn complete(&mut self, ret: i64) {
        let Some(seq) = self.pending.take() else {
            return;
        };
        let s = self.shared();
        s.hc_ret.store(ret as u64, Relaxed);
        s.hc_resp.store(seq, SeqCst);
        if s.guest_waiting.load(SeqCst) == 1 {
            let _ = futex::wake(&s.hc_resp, futex::Flags::empty(), u32::MAX);
        }
        self.last = seq;
        self.last_done = Some(Instant::now());
    }

    /// Wakes a host thread blocked in [`Vcpu::run`] on this vCPU (after setting the stop flag).
    pub fn wake(ctl: &ControlRegion, index: u32) {
        if let Some(s) = ctl.vcpu(index) {
            let _ = futex::wake(&s.hc_req, futex::Flags::empty(), u32::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::HeaderInit;

    /// Plays the guest side of the protocol from another thread.
    fn guest_call(s: &VcpuShared, nr: u64, a0: u64) -> u64 {
        s.hc_nr.store(nr, Relaxed);
        s.hc_args[0].store(a0, Relaxed);
        let seq = s.hc_req.load(Relaxed).wrapping_add(1);
        s.hc_req.store(seq, SeqCst);
        if s.host_waiting.load(SeqCst) == 1 {
            let _ = futex::wake(&s.hc_req, futex::Flags::empty(), 1);
        }
        loop {
            s.guest_waiting.store(1, SeqCst);
            if s.hc_resp.load(SeqCst) == seq {
                break;
            }
            let ts = futex::Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            };
            let _ = futex::wait(
                &s.hc_resp,
                futex::Flags::empty(),
                seq.wrapping_sub(1),
                Some(&ts),
            );
        }
        s.guest_waiting.store(0, SeqCst);
        s.hc_ret.load(Relaxed)
    }

    #[test]
    fn doorbell_round_trips() {
        let ctl = Arc::new(
            ControlRegion::new(&HeaderInit {
                nr_vcpus: 1,
                ..Default::default()
            })
            .unwrap(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let mut v = Vcpu::new(Arc::clone(&ctl), 0, Arc::clone(&stop)).unwrap();
        assert!(Vcpu::new(Arc::clone(&ctl), 1, Arc::clone(&stop)).is_none());
        let host = std::thread::spawn(move || {
            let mut n = 0;
            loop {
                match v.run() {
                    VcpuExit::Hypercall { nr, args } => {
                        v.complete((nr & 0xff) as i64 + args[0] as i64);
                        n += 1;
                    }
                    VcpuExit::Stopped => return n,
                }
            }
        });
        let s = ctl.vcpu(0).unwrap();
        for i in 0..2000u64 {
            let nr = if i % 3 == 0 { HC_FLAG_NOSPIN | 1 } else { 2 };
            assert_eq!(guest_call(s, nr, i), (nr & 0xff) + i);
            if i % 500 == 0 {
                std::thread::sleep(Duration::from_millis(60)); // exercise the timeout path
            }
        }
        stop.store(true, SeqCst);
        Vcpu::wake(&ctl, 0);
        assert_eq!(host.join().unwrap(), 2000);
    }
}
