//! One timer — an interval timer of `setitimer`/`alarm`, a POSIX timer or a timerfd's — and
//! what its expiry does.
//!
//! A timer keeps its next expiry in its clock's base ([`Clock`]) and is watched by the timer
//! daemon ([`super::daemon`]) while armed. An expiry:
//! * of an interval timer (`ITIMER_*`) sends its signal from the kernel (`SI_KERNEL`) and
//!   moves the timer on at once (standard signals merge, so nothing is counted);
//! * of a timerfd adds the expirations to its count and wakes its readers and pollers;
//! * of a POSIX timer with a signal queues one `SI_TIMER` signal and — if periodic — leaves
//!   the timer waiting until that signal is taken (delivered, `sigtimedwait`, a signalfd
//!   read): then the expirations missed meanwhile become the signal's `si_overrun` and the
//!   timer is armed again (Linux's `posixtimer_rearm`), so a blocked timer signal costs
//!   nothing however short the interval. A signal that is discarded (ignored) or has no
//!   target leaves a periodic timer running, at least [`IGNORED_MIN_INTERVAL`] apart, as
//!   Linux does for ignored timer signals.

use alloc::sync::{Arc, Weak};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::clock::Clock;
use super::spec::{self, Setting};
use crate::irq::IrqLock;
use crate::linux::signal::{self, SigInfo};
use crate::linux::task::{Process, Task};
use crate::sched::wait::WaitQueue;

/// The shortest period of a periodic timer whose signal is discarded (Linux: one jiffy).
pub(crate) const IGNORED_MIN_INTERVAL: u64 = 4_000_000;

/// Unique keys of timer arms, so a queued `SI_TIMER` signal finds the arm it came from.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

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

/// A timer's changing state.
#[derive(Default)]
struct State {
    /// The next expiry, in the clock's base (`None`: not armed).
    next: Option<u64>,
    /// The reload interval (0: one-shot).
    interval: u64,
    /// A periodic POSIX timer whose signal is queued: the expiry it was queued for, to move
    /// on from when the signal is taken.
    waiting_since: Option<u64>,
    /// Expirations not signalled since the last signal was taken.
    overrun: u64,
    /// The overrun of the last signal taken (`timer_getoverrun`).
    last_overrun: i32,
    /// The key of the current arm (changes with every `settime`).
    key: u64,
    /// Expirations not yet read (timerfd).
    ticks: u64,
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
        let st = self.st.lock();
        st.next.is_some() || st.waiting_since.is_some()
    }

    /// The current setting: time to the next expiry (0 if disarmed) and the interval. An
    /// expired timer that still waits for its signal to be taken reads as 1 ns, as Linux.
    pub(crate) fn get(&self) -> Setting {
        let now = self.clock.now().unwrap_or(0);
        let st = self.st.lock();
        let value = match (st.next, st.waiting_since) {
            (Some(next), _) if next > now => next - now,
            (Some(next), _) if st.interval != 0 && matches!(self.event, Event::None) => {
                // SIGEV_NONE never fires: move on arithmetically.
                spec::forward(next, st.interval, now).1 - now
            }
            (Some(_), _) => {
                if matches!(self.event, Event::None) {
                    0
                } else {
                    1
                }
            }
            (None, Some(_)) => 1,
            (None, None) => 0,
        };
        Setting {
            value,
            interval: if st.next.is_some() || st.waiting_since.is_some() {
                st.interval
            } else {
                0
            },
        }
    }

    /// Arms the timer with `s` (`absolute`: `s.value` is a time of the clock, else relative to
    /// now; a value of 0 disarms), returning the previous setting. Resets the overrun and a
    /// timerfd's count; the daemon is told.
    pub(crate) fn set(self: &Arc<Self>, s: Setting, absolute: bool) -> Setting {
        let old = self.get();
        let now = self.clock.now().unwrap_or(0);
        let next = if s.value == 0 {
            None
        } else if absolute {
            Some(self.clock.absolute_to_base(s.value))
        } else {
            Some(now.saturating_add(s.value))
        };
        {
            let mut st = self.st.lock();
            st.next = next;
            st.interval = s.interval;
            st.waiting_since = None;
            st.overrun = 0;
            st.ticks = 0;
            st.key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        }
        if next.is_some() && !matches!(self.event, Event::None) {
            super::daemon::watch(self);
        }
        old
    }

    /// Disarms the timer.
    pub(crate) fn disarm(&self) {
        let mut st = self.st.lock();
        st.next = None;
        st.waiting_since = None;
    }

    /// `timer_getoverrun`.
    pub(crate) fn last_overrun(&self) -> i32 {
        self.st.lock().last_overrun
    }

    /// Takes a timerfd's count of expirations (0 if none yet).
    pub(crate) fn take_ticks(&self) -> u64 {
        core::mem::take(&mut self.st.lock().ticks)
    }

    /// A timerfd's count of expirations not read yet.
    pub(crate) fn ticks(&self) -> u64 {
        self.st.lock().ticks
    }

    /// Looks at the timer (the daemon, at guest time `wall_now`): fires it if due.
    pub(super) fn check(self: &Arc<Self>, wall_now: u64) -> Check {
        let Some(now) = self.clock.now() else {
            self.disarm();
            return Check::Idle;
        };
        let next = {
            let st = self.st.lock();
            match st.next {
                Some(n) => n,
                None => return Check::Idle,
            }
        };
        let fired = next <= now;
        if fired {
            self.fire(now);
        }
        // A timer that just fired is looked at again no sooner than MIN_PERIOD_NS later
        // (its count of expirations stays exact: it is computed from the time).
        let floor = if fired {
            wall_now.saturating_add(MIN_PERIOD_NS)
        } else {
            0
        };
        let st = self.st.lock();
        match st.next {
            None => Check::Idle,
            Some(n) if !self.clock.is_cpu() => Check::At(n.max(floor)),
            Some(n) => {
                // CPU time runs at most as fast as all vCPUs together: no expiry before this.
                let vcpus = u64::from(crate::boot::nr_vcpus().max(1));
                let lower_bound = n.saturating_sub(now) / vcpus;
                Check::At(wall_now.saturating_add(lower_bound.max(CPU_POLL_NS)))
            }
        }
    }

    /// Handles an expiry noticed at `now` (clock base).
    fn fire(self: &Arc<Self>, now: u64) {
        let (expired, interval, key) = {
            let mut st = self.st.lock();
            let Some(expired) = st.next else { return };
            let interval = st.interval;
            let (missed, next) = if interval != 0 {
                let (m, n) = spec::forward(expired, interval, now);
                (m, Some(n))
            } else {
                (0, None)
            };
            match &self.event {
                Event::Fd(_) => {
                    st.ticks = st.ticks.saturating_add(missed + 1);
                    st.next = next;
                }
                Event::Itimer { .. } | Event::None => st.next = next,
                Event::Posix { .. } => {
                    // Moved on when the signal is taken (see `taken`).
                    st.next = None;
                    st.waiting_since = (interval != 0).then_some(expired);
                }
            }
            (expired, interval, st.key)
        };
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
                let info = SigInfo::timer(*signo, *timerid, *value, key);
                let queued = match target {
                    Target::Process(p) => p.upgrade().is_some_and(|p| {
                        signal::send_info_to_process(&p, info).is_ok()
                            && signal::timer_signal_queued(&p, key)
                    }),
                    Target::Thread(t) => t.upgrade().is_some_and(|t| {
                        t.send_signal(info).is_ok() && signal::timer_signal_queued(&t.process, key)
                    }),
                };
                if !queued && interval != 0 {
                    // Discarded: keep running, not faster than a jiffy.
                    let mut st = self.st.lock();
                    if st.key == key && st.waiting_since.is_some() {
                        let from =
                            now.saturating_add(interval.max(IGNORED_MIN_INTERVAL) - interval);
                        let (missed, next) = spec::forward(expired, interval, from);
                        st.overrun = st.overrun.saturating_add(missed);
                        st.waiting_since = None;
                        st.next = Some(next);
                    }
                }
            }
        }
    }

    /// The signal queued for arm `key` is being taken: returns its `si_overrun` and arms a
    /// periodic timer again after the expirations missed meanwhile.
    pub(crate) fn taken(self: &Arc<Self>, key: u64) -> i32 {
        let rearmed = {
            let mut st = self.st.lock();
            if st.key != key {
                // Set again since: the old arm's signal reports nothing.
                return 0;
            }
            let mut rearmed = false;
            if let Some(expired) = st.waiting_since.take() {
                if let Some(now) = self.clock.now() {
                    let (missed, next) = spec::forward(expired, st.interval, now);
                    st.overrun = st.overrun.saturating_add(missed);
                    st.next = Some(next);
                    rearmed = true;
                }
            }
            let n = spec::overrun_report(st.overrun);
            st.overrun = 0;
            st.last_overrun = n;
            (rearmed, n)
        };
        if rearmed.0 {
            super::daemon::watch(self);
        }
        rearmed.1
    }
}

/// The shortest time between two looks at a timer that fired: a periodic timer with a
/// shorter interval (a timerfd or `setitimer` of 1 ns) cannot keep the daemon busy.
const MIN_PERIOD_NS: u64 = 50_000;

/// How often the daemon looks at a CPU-time timer at most (its clock advances in steps of
/// the scheduler's accounting anyway).
const CPU_POLL_NS: u64 = 1_000_000;
