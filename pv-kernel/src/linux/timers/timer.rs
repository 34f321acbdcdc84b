//! One timer — an interval timer of `setitimer`/`alarm`, a POSIX timer or a timerfd's — and
//! what its expiry does.
//!
//! A timer keeps its next expiry in its clock's base ([`Clock`]) and is watched by the timer
//! daemon ([`super::daemon`]) while armed. Its state and transitions are pure
//! ([`super::state`]); here they are applied under the timer's lock and acted on:
//! * an interval timer (`ITIMER_*`) sends its signal from the kernel (`SI_KERNEL`) and
//!   moves on at once (standard signals merge, so nothing is counted);
//! * a timerfd adds the expirations to its count and wakes its readers and pollers;
//! * a POSIX timer with a signal queues one `SI_TIMER` signal and — if periodic — waits
//!   until that signal is taken (delivered, `sigtimedwait`, a signalfd read): then the
//!   expirations missed meanwhile become the signal's `si_overrun` and the timer goes on
//!   (Linux's `posixtimer_rearm`), so a blocked timer signal costs nothing however short
//!   the interval. A signal that is discarded (ignored) or has no target leaves a periodic
//!   timer running, at most every [`state::IGNORED_MIN_INTERVAL`], as Linux does for
//!   ignored timer signals.

use alloc::sync::{Arc, Weak};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::clock::Clock;
use super::spec::Setting;
use super::state::{self, Kind, State};
use crate::irq::IrqLock;
use crate::linux::signal::{self, SigInfo};
use crate::linux::task::{Process, Task};
use crate::sched::wait::WaitQueue;

/// Unique keys of timer arms, so a queued `SI_TIMER` signal finds the arm it came from.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// How often the daemon looks at a CPU-time timer at most (its clock advances in steps of
/// the scheduler's accounting anyway).
const CPU_POLL_NS: u64 = 1_000_000;

/// Where a POSIX timer's signal goes.
pub(crate) enum Target {
    /// The process (`SIGEV_SIGNAL`).
    Process(Weak<Process>),
    /// One thread (`SIGEV_THREAD_ID`).
    Thread(Weak<Task>),
}

/// What an expiry does.
pub(crate) enum Event {
    /// Nothing (`SIGEV_NONE`): the timer is only read back.
    None,
    /// An interval timer's signal from the kernel to the process.
    Itimer { process: Weak<Process>, signo: u32 },
    /// A POSIX timer's `SI_TIMER` signal.
    Posix {
        target: Target,
        signo: u32,
        timerid: i32,
        value: u64,
    },
    /// A timerfd: count, wake readers and pollers.
    Fd(WaitQueue),
}

impl Event {
    /// What the state machine needs to know of it.
    fn kind(&self) -> Kind {
        match self {
            Self::None => Kind::Silent,
            Self::Itimer { .. } => Kind::Itimer,
            Self::Posix { .. } => Kind::Posix,
            Self::Fd(_) => Kind::Counter,
        }
    }
}

/// A timer.
pub(crate) struct Timer {
    /// Its clock.
    pub(crate) clock: Clock,
    /// What an expiry does.
    pub(crate) event: Event,
    st: IrqLock<State>,
    /// True while the daemon watches it.
    pub(super) listed: AtomicBool,
}

/// What the daemon should do with a timer after looking at it.
pub(super) enum Check {
    /// Not armed (or its clock's owner is gone): stop watching.
    Idle,
    /// Look again at guest time `at` (ns).
    At(u64),
}

/// What the daemon's look at a timer found.
pub(super) struct Looked {
    /// When to look again.
    pub(super) check: Check,
    /// True if the timer fired.
    pub(super) fired: bool,
}

impl Timer {
    /// A disarmed timer.
    pub(crate) fn new(clock: Clock, event: Event) -> Arc<Self> {
        Arc::new(Self {
            clock,
            event,
            st: IrqLock::new(State::default()),
            listed: AtomicBool::new(false),
        })
    }

    /// True if armed (a periodic POSIX timer waiting for its signal to be taken counts).
    pub(crate) fn is_armed(&self) -> bool {
        self.st.lock().is_armed()
    }

    /// The current setting (see [`State::setting`]).
    pub(crate) fn get(&self) -> Setting {
        let now = self.clock.now().unwrap_or(0);
        self.st.lock().setting(now, self.event.kind())
    }

    /// Arms the timer with `s` (`absolute`: `s.value` is a time of the clock, else relative to
    /// now; a value of 0 disarms), returning the previous setting. Resets the overruns and a
    /// timerfd's count; the daemon is told.
    pub(crate) fn set(self: &Arc<Self>, s: Setting, absolute: bool) -> Setting {
        let now = self.clock.now().unwrap_or(0);
        let next = if s.value == 0 {
            None
        } else if absolute {
            Some(self.clock.absolute_to_base(s.value))
        } else {
            Some(now.saturating_add(s.value))
        };
        let old = {
            let mut st = self.st.lock();
            let old = st.setting(now, self.event.kind());
            st.arm(next, s.interval, NEXT_KEY.fetch_add(1, Ordering::Relaxed));
            old
        };
        if next.is_some() && !matches!(self.event, Event::None) {
            super::daemon::watch(self);
        }
        old
    }

    /// The timer as a hand-over record carries it: its next expiry, interval
    /// ([`super::carry::carried_times`]) and `timer_getoverrun`'s report.
    pub(crate) fn carried(&self) -> (u64, u64, i32) {
        let Some(now) = self.clock.now() else {
            return (0, 0, 0);
        };
        let st = self.st.lock();
        let (next, interval) = super::carry::carried_times(&st, now, self.clock.is_cpu());
        (next, interval, st.last_overrun)
    }

    /// [`Timer::carried`], and for a periodic POSIX timer waiting for its queued signal to
    /// be taken the expirations missed since the one the signal was queued for (up to the
    /// same now) and not reported yet — the carried next expiry is the first after now
    /// ([`super::carry::carried_times`]), so the one it waits for is an interval before it.
    pub(crate) fn carried_waiting(&self) -> ((u64, u64, i32), Option<u64>) {
        let Some(now) = self.clock.now() else {
            return ((0, 0, 0), None);
        };
        let st = self.st.lock();
        let (next, interval) = super::carry::carried_times(&st, now, self.clock.is_cpu());
        let pending = st.waiting_since.filter(|_| st.interval != 0).map(|at| {
            let (missed, _) = super::spec::forward(at, st.interval, now);
            st.overrun.saturating_add(missed)
        });
        ((next, interval, st.last_overrun), pending)
    }

    /// A key for an adopted timer's arm, given before it is armed so its pending signal can
    /// name it ([`Timer::adopted_waiting`]).
    pub(crate) fn new_key() -> u64 {
        NEXT_KEY.fetch_add(1, Ordering::Relaxed)
    }

    /// An adopted periodic POSIX timer that waits, as arm `key`, for its pending signal
    /// (whose information names `key`): the expiry it waits for is an interval before the
    /// carried `next` (a wall clock's time, or the CPU time to it), `pending` the
    /// expirations missed and not reported yet; `overrun` what `timer_getoverrun` reports.
    /// It is armed again when the signal is taken ([`Timer::taken`]).
    pub(crate) fn adopted_waiting(
        self: &Arc<Self>,
        (next, interval): (u64, u64),
        overrun: i32,
        key: u64,
        pending: u64,
    ) {
        let next = if self.clock.is_cpu() {
            self.clock.now().unwrap_or(0).saturating_add(next)
        } else {
            next
        };
        let mut st = self.st.lock();
        st.arm(None, interval, key);
        st.waiting_since = Some(next.saturating_sub(interval));
        st.overrun = pending;
        st.last_overrun = overrun;
    }

    /// An adopted timer armed as carried (`next` 0: disarmed; else a wall clock's expiry, or
    /// the CPU time to it), with its overrun report (a timerfd's count kept); the daemon is
    /// told.
    pub(crate) fn adopted(self: &Arc<Self>, next: u64, interval: u64, overrun: i32) {
        let at = if next == 0 {
            None
        } else if self.clock.is_cpu() {
            Some(self.clock.now().unwrap_or(0).saturating_add(next))
        } else {
            Some(next)
        };
        {
            let mut st = self.st.lock();
            // A timerfd's expirations not read yet ([`Timer::set_ticks`]) are kept.
            let ticks = st.ticks;
            st.arm(at, interval, NEXT_KEY.fetch_add(1, Ordering::Relaxed));
            st.last_overrun = overrun;
            st.ticks = ticks;
        }
        if at.is_some() && !matches!(self.event, Event::None) {
            super::daemon::watch(self);
        }
    }

    /// Disarms the timer.
    pub(crate) fn disarm(&self) {
        self.st.lock().disarm();
    }

    /// `timer_getoverrun`.
    pub(crate) fn last_overrun(&self) -> i32 {
        self.st.lock().last_overrun
    }

    /// Takes a timerfd's count of expirations (0 if none yet).
    pub(crate) fn take_ticks(&self) -> u64 {
        core::mem::take(&mut self.st.lock().ticks)
    }

    /// Sets a timerfd's count of expirations not read yet (an adopted one's).
    pub(crate) fn set_ticks(&self, n: u64) {
        self.st.lock().ticks = n;
    }

    /// A timerfd's count of expirations not read yet.
    pub(crate) fn ticks(&self) -> u64 {
        self.st.lock().ticks
    }

    /// Looks at the timer (the daemon, at guest time `wall_now`): fires it if due.
    pub(super) fn check(self: &Arc<Self>, wall_now: u64) -> Looked {
        let Some(now) = self.clock.now() else {
            self.disarm();
            return Looked {
                check: Check::Idle,
                fired: false,
            };
        };
        let expiry = self.st.lock().expire(now, self.event.kind());
        if let Some(e) = expiry {
            self.fire(e, now);
        }
        let next = self.st.lock().next;
        let check = match next {
            None => Check::Idle,
            Some(n) if !self.clock.is_cpu() => Check::At(n),
            Some(n) => {
                // CPU time runs at most as fast as all vCPUs together: no expiry before this.
                let vcpus = u64::from(crate::boot::nr_vcpus().max(1));
                let lower_bound = n.saturating_sub(now) / vcpus;
                Check::At(wall_now.saturating_add(lower_bound.max(CPU_POLL_NS)))
            }
        };
        Looked {
            check,
            fired: expiry.is_some(),
        }
    }

    /// Acts on expiry `e`, noticed at `now` (clock base).
    fn fire(&self, e: state::Expiry, now: u64) {
        match &self.event {
            Event::None => {}
            Event::Fd(wq) => {
                wq.wake_all();
                crate::linux::files::poll::notify();
            }
            Event::Itimer { process, signo } => match process.upgrade() {
                Some(p) => {
                    let _ = signal::send_info_to_process(&p, SigInfo::kernel(*signo));
                }
                None => self.disarm(),
            },
            Event::Posix {
                target,
                signo,
                timerid,
                value,
            } => {
                let info = SigInfo::timer(*signo, *timerid, *value, e.key);
                let queued = match target {
                    Target::Process(p) => p.upgrade().is_some_and(|p| {
                        signal::send_info_to_process(&p, info).is_ok()
                            && signal::timer_signal_queued(&p, e.key)
                    }),
                    Target::Thread(t) => t.upgrade().is_some_and(|t| {
                        t.send_signal(info).is_ok()
                            && signal::timer_signal_queued(&t.process, e.key)
                    }),
                };
                if !queued {
                    self.st.lock().discarded(e, now);
                }
            }
        }
    }

    /// The signal queued for arm `key` is being taken: returns its `si_overrun` and arms a
    /// periodic timer again after the expirations missed meanwhile.
    pub(crate) fn taken(self: &Arc<Self>, key: u64) -> i32 {
        let now = self.clock.now();
        let (overrun, rearmed) = self.st.lock().taken(key, now);
        if rearmed {
            super::daemon::watch(self);
        }
        overrun
    }
}
