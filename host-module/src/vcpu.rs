//! The host half of a vCPU's hypercall doorbell.
//!
//! The protocol (states, sequence numbers, spin-then-futex rules) is defined once, for both
//! halves, in `pvmux_hypercalls::doorbell`; the stub's `hypercall` entry is the guest half.
//! [`Vcpu`] runs the host half ([`HostDoorbell`]) on one vCPU's page with the host's clock and
//! shared futexes (the words live in a `MAP_SHARED` memfd), and adds the stop flag: a waiting
//! thread re-checks it at least every [`WAIT_TIMEOUT`].

use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use pvmux_hypercalls::doorbell::{HostDoorbell, Request, Waiter};
use pvmux_hypercalls::VcpuShared;
use rustix::thread::futex;

use crate::control::ControlRegion;

/// Futex wait timeout: how often a waiting vCPU thread checks for a stop request.
pub const WAIT_TIMEOUT: Duration = Duration::from_millis(50);

/// The host's clock and shared futexes, for the doorbell protocol.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HostWaiter;

impl Waiter for HostWaiter {
    fn now_ns(&self) -> u64 {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        (t.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec as u64)
    }

    fn wait(&self, word: &AtomicU32, expected: u32, timeout_ns: Option<u64>) {
        let ts = timeout_ns.map(|ns| futex::Timespec {
            tv_sec: (ns / 1_000_000_000) as _,
            tv_nsec: (ns % 1_000_000_000) as _,
        });
        // EAGAIN (value changed), ETIMEDOUT and EINTR all just mean "look again".
        let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
    }

    fn wake(&self, word: &AtomicU32, count: u32) {
        let _ = futex::wake(word, futex::Flags::empty(), count);
    }

    fn cpu(&self) -> u32 {
        // `getcpu` through the vDSO; CPU numbers beyond u32 do not exist.
        u32::try_from(rustix::thread::sched_getcpu()).map_or(0, |c| c.saturating_add(1))
    }
}

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
    doorbell: HostDoorbell,
}

impl Vcpu {
    /// The host side of vCPU `index`; `None` if out of range. `stop` ends [`Vcpu::run`].
    pub fn new(ctl: Arc<ControlRegion>, index: u32, stop: Arc<AtomicBool>) -> Option<Self> {
        ctl.vcpu(index)?;
        Some(Self {
            ctl,
            index,
            stop,
            doorbell: HostDoorbell::new(),
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
        let ctl = Arc::clone(&self.ctl);
        let Some(s) = ctl.vcpu(self.index) else {
            return VcpuExit::Stopped;
        };
        let stop = &self.stop;
        match self
            .doorbell
            .next(s, &HostWaiter, WAIT_TIMEOUT.as_nanos() as u64, || {
                stop.load(Relaxed)
            }) {
            Some(Request { nr, args, .. }) => VcpuExit::Hypercall { nr, args },
            None => VcpuExit::Stopped,
        }
    }

    /// Answers the request returned by the last [`Vcpu::run`] with `ret`.
    pub fn complete(&mut self, ret: i64) {
        let ctl = Arc::clone(&self.ctl);
        if let Some(s) = ctl.vcpu(self.index) {
            self.doorbell.complete(s, &HostWaiter, ret);
        }
    }

    /// Wakes a host thread blocked in [`Vcpu::run`] on this vCPU (after setting the stop flag).
    pub fn wake(ctl: &ControlRegion, index: u32) {
        if let Some(s) = ctl.vcpu(index) {
            HostDoorbell::wake_host(s, &HostWaiter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::HeaderInit;
    use pvmux_hypercalls::doorbell::GuestDoorbell;
    use pvmux_hypercalls::HC_FLAG_NOSPIN;
    use std::sync::atomic::Ordering::SeqCst;

    /// The guest half of the protocol, exactly as the stub runs it, from another thread
    /// with the host's futexes.
    fn guest_call(s: &VcpuShared, nr: u64, a0: u64) -> u64 {
        GuestDoorbell::new(s).call(&HostWaiter, nr, [a0, 0, 0, 0, 0, 0]) as u64
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
