//! The liveness watchdog: detects a tenant whose vCPUs stop taking events.
//!
//! Every `timeout / 4` the tenant's monitor thread calls [`Watchdog::tick`]. For each online
//! vCPU that has not taken an event since the previous tick, the watchdog sends a heartbeat:
//! it sets [`pending::HOST`] in the vCPU's `pending` word and wakes the vCPU (`futex_wake` if
//! it is halted, else `tgkill` with the stub's event signal). A vCPU takes the heartbeat when
//! its `stats[EVENTS]` counter advances (the stub counts every event delivery) or the HOST bit
//! is cleared. A vCPU that leaves a heartbeat pending for longer than `timeout` has stopped
//! responding: the tenant is reported stuck.
//!
//! Every value read here is guest-controlled. A hostile guest can fake progress (bump the
//! counter, clear the bit): that only defeats its own liveness check, which CPU limits bound.
//! It cannot make the host signal anything but threads of its own sandbox: `tgkill` checks
//! that the thread id belongs to the sandbox's thread group, and the monitor thread (the only
//! thread that signals and the only one that reaps) never signals after reaping.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::{Duration, Instant};

use pvmux_hypercalls::vcpu::{pending, stat};
use pvmux_hypercalls::VcpuShared;
use rustix::thread::futex;

/// Shortest watchdog timeout accepted (shorter values are raised to it).
pub const MIN_TIMEOUT: Duration = Duration::from_millis(40);
/// The stub's event signal (the kernel's `SIGRTMIN + 2`).
pub const EVENT_SIGNAL: i32 = 34;

/// What the host sees of one vCPU at one instant (each field one load).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSnapshot {
    /// `online != 0`.
    pub online: bool,
    /// `stats[EVENTS]`.
    pub events: u64,
    /// `pending` bits.
    pub pending: u32,
    /// `irq_enabled`.
    pub irq_enabled: u32,
    /// `halted`.
    pub halted: u32,
    /// `tid`.
    pub tid: u32,
    /// `hc_caller_rip`: return address of the last hypercall.
    pub hc_caller_rip: u64,
    /// `hc_caller_rbp`.
    pub hc_caller_rbp: u64,
    /// The host is serving a hypercall of this vCPU right now (host-owned, trustworthy): the
    /// vCPU is waiting for the host, not stuck.
    pub in_host: bool,
}

impl VcpuSnapshot {
    /// Copies the watchdog's view of `s` out, one load per field.
    pub fn read(s: &VcpuShared, in_host: bool) -> Self {
        Self {
            online: s.online.load(SeqCst) != 0,
            events: s.stats[stat::EVENTS].load(SeqCst),
            pending: s.pending.load(SeqCst),
            irq_enabled: s.irq_enabled.load(Relaxed),
            halted: s.halted.load(Relaxed),
            tid: s.tid.load(Relaxed),
            hc_caller_rip: s.hc_caller_rip.load(Relaxed),
            hc_caller_rbp: s.hc_caller_rbp.load(Relaxed),
            in_host,
        }
    }
}

/// What the watchdog asks its caller to do for one vCPU after a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing: the vCPU made progress (or is offline, or is being served by the host).
    None,
    /// Set `pending::HOST` and wake the vCPU.
    Heartbeat,
    /// The vCPU left a heartbeat pending for longer than the timeout.
    Stuck {
        /// How long the heartbeat has been pending.
        since: Duration,
    },
}

#[derive(Clone, Copy, Debug, Default)]
struct PerVcpu {
    last_events: Option<u64>,
    heartbeat_since: Option<Instant>,
}

/// Watchdog state of one tenant (pure logic; see [`Watchdog::tick`]).
#[derive(Debug)]
pub struct Watchdog {
    timeout: Duration,
    vcpus: Vec<PerVcpu>,
}

impl Watchdog {
    /// A watchdog for `nr_vcpus` vCPUs that declares a vCPU stuck after `timeout` (at least
    /// [`MIN_TIMEOUT`]).
    pub fn new(timeout: Duration, nr_vcpus: u32) -> Self {
        Self {
            timeout: timeout.max(MIN_TIMEOUT),
            vcpus: vec![PerVcpu::default(); nr_vcpus as usize],
        }
    }

    /// The timeout in effect.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How often [`Watchdog::tick`] should run: a quarter of the timeout.
    pub fn period(&self) -> Duration {
        self.timeout / 4
    }

    /// Decides, for vCPU `index` observed as `snap` at `now`, what to do.
    pub fn tick(&mut self, index: usize, snap: &VcpuSnapshot, now: Instant) -> Action {
        let Some(v) = self.vcpus.get_mut(index) else {
            return Action::None;
        };
        if !snap.online || snap.in_host {
            // Not started, or waiting for the host: nothing to check. Start afresh.
            *v = PerVcpu {
                last_events: Some(snap.events),
                heartbeat_since: None,
            };
            return Action::None;
        }
        let progressed = v.last_events.is_some_and(|e| e != snap.events)
            || (v.heartbeat_since.is_some() && snap.pending & pending::HOST == 0);
        let first = v.last_events.is_none();
        v.last_events = Some(snap.events);
        if progressed {
            v.heartbeat_since = None;
            return Action::None;
        }
        if first {
            // First look at this vCPU: no baseline yet, but ping it so the next tick can judge.
            v.heartbeat_since = Some(now);
            return Action::Heartbeat;
        }
        match v.heartbeat_since {
            None => {
                v.heartbeat_since = Some(now);
                Action::Heartbeat
            }
            Some(t) => {
                let since = now.saturating_duration_since(t);
                if since > self.timeout {
                    Action::Stuck { since }
                } else {
                    Action::Heartbeat
                }
            }
        }
    }
}

/// Sends a heartbeat to vCPU page `s` of the sandbox `pid`: sets [`pending::HOST`] and wakes
/// the vCPU. The thread id is guest-written; `tgkill` refuses any thread outside `pid`'s
/// thread group, so a forged value can only reach the tenant's own threads.
///
/// The caller must guarantee that `pid` has not been reaped yet (so it cannot be reused).
pub(crate) fn heartbeat(s: &VcpuShared, pid: u32) {
    s.pending.fetch_or(pending::HOST, SeqCst);
    wake_vcpu(s, pid);
}

/// Wakes the vCPU of page `s` of the sandbox `pid` to look at its pending bits: `futex_wake`
/// if it is halted, else `tgkill` with the event signal (see [`heartbeat`] for why a forged
/// thread id is harmless). The caller must guarantee that `pid` has not been reaped yet.
pub(crate) fn wake_vcpu(s: &VcpuShared, pid: u32) {
    if s.halted.load(SeqCst) != 0 {
        let _ = futex::wake(&s.pending, futex::Flags::empty(), 1);
        return;
    }
    // The stub publishes the tid of its own pid namespace; signal the host's number for it.
    let Some(tid) = crate::jail::host_tid(pid, s.tid.load(Relaxed)) else {
        return;
    };
    let (Ok(pid), Ok(tid)) = (i32::try_from(pid), i32::try_from(tid)) else {
        return;
    };
    if pid <= 0 || tid <= 0 {
        return;
    }
    // SAFETY: tgkill takes plain integers; it signals only a thread of thread group `pid`
    // (the caller's unreaped sandbox), with the signal the stub handles as its event signal.
    let _ = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, EVENT_SIGNAL) };
}

/// Formats a duration as seconds for reports: `10 s`, `0.4 s`.
pub fn format_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if d.subsec_millis() == 0 && d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        let t = format!("{s:.3}");
        let t = t.trim_end_matches('0').trim_end_matches('.');
        format!("{t} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(events: u64, pending: u32) -> VcpuSnapshot {
        VcpuSnapshot {
            online: true,
            events,
            pending,
            ..Default::default()
        }
    }

    #[test]
    fn healthy_vcpu_is_never_stuck() {
        let mut w = Watchdog::new(Duration::from_millis(400), 1);
        let t0 = Instant::now();
        let step = w.period();
        // First look: ping.
        assert_eq!(w.tick(0, &snap(0, 0), t0), Action::Heartbeat);
        // It takes each heartbeat (counter advances): nothing to do, ever.
        for i in 1..100u32 {
            assert_eq!(
                w.tick(0, &snap(u64::from(i), pending::HOST), t0 + step * i),
                Action::None
            );
        }
    }

    #[test]
    fn idle_vcpu_taking_heartbeats_is_not_stuck() {
        let mut w = Watchdog::new(Duration::from_millis(400), 1);
        let t0 = Instant::now();
        let step = w.period();
        let mut events = 0;
        assert_eq!(w.tick(0, &snap(events, 0), t0), Action::Heartbeat);
        for i in 1..50u32 {
            // Odd ticks: the previous heartbeat was taken (one event) -> nothing to do.
            // Even ticks: nothing happened since -> ping again.
            let a = w.tick(0, &snap(events, 0), t0 + step * i);
            if a == Action::Heartbeat {
                events += 1;
            } else {
                assert_eq!(a, Action::None, "tick {i}");
            }
        }
    }

    #[test]
    fn masked_vcpu_is_stuck_after_the_timeout() {
        let mut w = Watchdog::new(Duration::from_millis(400), 2);
        let t0 = Instant::now();
        let step = w.period();
        // vCPU 1 is offline: never pinged.
        let off = VcpuSnapshot::default();
        let mut stuck_at = None;
        for i in 0..20u32 {
            assert_eq!(w.tick(1, &off, t0 + step * i), Action::None);
            match w.tick(0, &snap(7, pending::HOST), t0 + step * i) {
                Action::Heartbeat => {}
                Action::Stuck { since } => {
                    assert!(since > Duration::from_millis(400));
                    stuck_at = Some(i);
                    break;
                }
                Action::None => panic!("no progress was made"),
            }
        }
        // Detected after more than 4 and at most 5 periods.
        assert_eq!(stuck_at, Some(5));
    }

    #[test]
    fn clearing_the_host_bit_or_host_service_counts_as_progress() {
        let mut w = Watchdog::new(Duration::from_millis(400), 1);
        let t0 = Instant::now();
        let step = w.period();
        assert_eq!(w.tick(0, &snap(3, 0), t0), Action::Heartbeat);
        // The guest took the bit without the counter moving.
        assert_eq!(w.tick(0, &snap(3, 0), t0 + step), Action::None);
        assert_eq!(w.tick(0, &snap(3, 0), t0 + step * 2), Action::Heartbeat);
        // A long host-side hypercall resets the clock.
        for i in 3..30u32 {
            let mut s = snap(3, pending::HOST);
            s.in_host = true;
            assert_eq!(w.tick(0, &s, t0 + step * i), Action::None);
        }
        assert_eq!(
            w.tick(0, &snap(3, pending::HOST), t0 + step * 30),
            Action::Heartbeat
        );
        // Out-of-range vCPUs are ignored.
        assert_eq!(w.tick(9, &snap(0, 0), t0), Action::None);
    }

    #[test]
    fn timeouts_and_formatting() {
        assert_eq!(
            Watchdog::new(Duration::from_millis(1), 1).timeout(),
            MIN_TIMEOUT
        );
        assert_eq!(
            Watchdog::new(Duration::from_secs(10), 1).period(),
            Duration::from_millis(2500)
        );
        assert_eq!(format_secs(Duration::from_secs(10)), "10 s");
        assert_eq!(format_secs(Duration::from_millis(400)), "0.4 s");
        assert_eq!(format_secs(Duration::from_millis(1250)), "1.25 s");
    }
}
