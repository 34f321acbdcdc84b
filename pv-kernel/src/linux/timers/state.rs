//! A timer's state and its transitions — arming, expiry, a signal taken or discarded, what
//! `timer_gettime` reads — as pure functions of the clock's time, unit-tested on the host.
//! `timer.rs` keeps one [`State`] per timer behind a lock and does what the transitions
//! say (send a signal, wake readers).

use super::spec::{self, Setting};

/// The shortest period of a periodic timer whose signal is discarded (Linux: one jiffy).
pub(crate) const IGNORED_MIN_INTERVAL: u64 = 4_000_000;

/// What an expiry does, as far as the state is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `SIGEV_NONE`: nothing; read back arithmetically.
    Silent,
    /// An interval timer: a signal that merges; moves on at once.
    Itimer,
    /// A timerfd: counts expirations; moves on at once.
    Counter,
    /// A POSIX timer with a signal: stops until its signal is taken.
    Posix,
}

/// An expiry to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Expiry {
    /// The expiry time (clock base).
    pub(crate) at: u64,
    /// The arm it belongs to.
    pub(crate) key: u64,
}

/// A timer's changing state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct State {
    /// The next expiry, in the clock's base (`None`: not armed).
    pub(crate) next: Option<u64>,
    /// The reload interval (0: one-shot).
    pub(crate) interval: u64,
    /// A periodic POSIX timer whose signal is queued: the expiry it was queued for, to move
    /// on from when the signal is taken.
    pub(crate) waiting_since: Option<u64>,
    /// Expirations not signalled since the last signal was taken.
    pub(crate) overrun: u64,
    /// The overrun of the last signal taken (`timer_getoverrun`).
    pub(crate) last_overrun: i32,
    /// The key of the current arm (changes with every `settime`).
    pub(crate) key: u64,
    /// Expirations not yet read (timerfd).
    pub(crate) ticks: u64,
}

impl State {
    /// True if armed (a periodic POSIX timer waiting for its signal to be taken counts).
    pub(crate) fn is_armed(&self) -> bool {
        self.next.is_some() || self.waiting_since.is_some()
    }

    /// Arms (or, with `next` `None`, disarms) as arm `key`: the overruns and the count of
    /// expirations start again (Linux's `common_timer_set` clears `it_overrun_last` too).
    pub(crate) fn arm(&mut self, next: Option<u64>, interval: u64, key: u64) {
        *self = State {
            next,
            interval,
            key,
            ..State::default()
        };
    }

    /// Disarms, keeping what `timer_getoverrun` reports.
    pub(crate) fn disarm(&mut self) {
        self.next = None;
        self.waiting_since = None;
    }

    /// What `timer_gettime` (and friends) read at `now`: the time to the next expiry (0 if
    /// disarmed) and the interval. An expired signal timer waiting for its signal to be
    /// taken reads as 1 ns, as Linux; a `SIGEV_NONE` timer moves on arithmetically.
    pub(crate) fn setting(&self, now: u64, kind: Kind) -> Setting {
        if !self.is_armed() {
            return Setting::default();
        }
        let value = match self.next {
            Some(next) if next > now => next - now,
            Some(next) if kind == Kind::Silent && self.interval != 0 => {
                spec::forward(next, self.interval, now).1 - now
            }
            Some(_) if kind == Kind::Silent => 0,
            _ => 1,
        };
        Setting {
            value,
            interval: self.interval,
        }
    }

    /// The timer looked at `now`: the expiry to act on, if it is due. A periodic timer moves
    /// past the expirations missed meanwhile (a timerfd counts them all); a POSIX timer
    /// stops until [`State::taken`].
    pub(crate) fn expire(&mut self, now: u64, kind: Kind) -> Option<Expiry> {
        let at = self.next.filter(|&n| n <= now)?;
        let (missed, next) = if self.interval != 0 {
            let (m, n) = spec::forward(at, self.interval, now);
            (m, Some(n))
        } else {
            (0, None)
        };
        match kind {
            Kind::Counter => {
                self.ticks = self.ticks.saturating_add(missed.saturating_add(1));
                self.next = next;
            }
            Kind::Itimer | Kind::Silent => self.next = next,
            Kind::Posix => {
                self.next = None;
                self.waiting_since = (self.interval != 0).then_some(at);
            }
        }
        Some(Expiry { at, key: self.key })
    }

    /// The signal of expiry `e` was not queued (ignored, or its target is gone) at `now`: a
    /// periodic timer goes on, no faster than [`IGNORED_MIN_INTERVAL`], counting what it
    /// skips as overruns.
    pub(crate) fn discarded(&mut self, e: Expiry, now: u64) {
        if self.key != e.key || self.waiting_since.is_none() {
            return;
        }
        let from = now.saturating_add(IGNORED_MIN_INTERVAL.saturating_sub(self.interval));
        let (missed, next) = spec::forward(e.at, self.interval, from);
        self.overrun = self.overrun.saturating_add(missed);
        self.waiting_since = None;
        self.next = Some(next);
    }

    /// The signal queued for arm `key` is taken at `now` (`None`: the clock is gone): returns
    /// its `si_overrun` and whether the timer was armed again (after the expirations missed
    /// meanwhile, which the overrun counts).
    pub(crate) fn taken(&mut self, key: u64, now: Option<u64>) -> (i32, bool) {
        if self.key != key {
            // Set again since: the old arm's signal reports nothing.
            return (0, false);
        }
        let mut rearmed = false;
        if let (Some(at), Some(now)) = (self.waiting_since.take(), now) {
            let (missed, next) = spec::forward(at, self.interval, now);
            self.overrun = self.overrun.saturating_add(missed);
            self.next = Some(next);
            rearmed = true;
        }
        let n = spec::overrun_report(self.overrun);
        self.overrun = 0;
        self.last_overrun = n;
        (n, rearmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn armed(next: u64, interval: u64) -> State {
        let mut s = State::default();
        s.arm(Some(next), interval, 7);
        s
    }

    #[test]
    fn a_timerfd_counts_every_expiration() {
        let mut s = armed(100, 10);
        assert_eq!(s.expire(99, Kind::Counter), None, "not due");
        assert_eq!(
            s.expire(100, Kind::Counter),
            Some(Expiry { at: 100, key: 7 })
        );
        assert_eq!((s.ticks, s.next), (1, Some(110)));
        // Looked at late: 135 covers the expiries at 110, 120 and 130.
        s.expire(135, Kind::Counter);
        assert_eq!((s.ticks, s.next), (4, Some(140)));
        assert_eq!(
            s.setting(135, Kind::Counter),
            Setting {
                value: 5,
                interval: 10
            }
        );
        // A one-shot one disarms.
        let mut o = armed(50, 0);
        o.expire(60, Kind::Counter);
        assert_eq!((o.ticks, o.next, o.is_armed()), (1, None, false));
        assert_eq!(o.setting(60, Kind::Counter), Setting::default());
    }

    #[test]
    fn a_posix_timer_waits_for_its_signal_and_reports_overruns() {
        let mut s = armed(100, 10);
        let e = s.expire(103, Kind::Posix).unwrap();
        assert_eq!((s.next, s.waiting_since), (None, Some(100)));
        assert!(s.is_armed(), "armed while its signal is queued");
        assert_eq!(s.expire(500, Kind::Posix), None, "not looked at meanwhile");
        assert_eq!(
            s.setting(150, Kind::Posix).value,
            1,
            "reads as 1 ns, as Linux"
        );
        // Taken at 155: the expiries at 110..150 (5) were missed.
        assert_eq!(s.taken(e.key, Some(155)), (5, true));
        assert_eq!((s.next, s.last_overrun, s.overrun), (Some(160), 5, 0));
        // The next one is taken in time: no overrun, and timer_getoverrun follows.
        let e = s.expire(160, Kind::Posix).unwrap();
        assert_eq!(s.taken(e.key, Some(161)), (0, true));
        assert_eq!(s.last_overrun, 0);
    }

    #[test]
    fn a_new_setting_forgets_the_old_arm() {
        let mut s = armed(100, 10);
        let e = s.expire(100, Kind::Posix).unwrap();
        s.arm(Some(1000), 0, 8);
        assert_eq!(
            s.taken(e.key, Some(120)),
            (0, false),
            "the old arm's signal"
        );
        assert_eq!(s.next, Some(1000));
        let e = s.expire(1000, Kind::Posix).unwrap();
        assert_eq!(
            s.taken(e.key, Some(1000)),
            (0, false),
            "one-shot: nothing to re-arm"
        );
        assert!(!s.is_armed());
    }

    #[test]
    fn a_discarded_signal_keeps_a_periodic_timer_going_at_most_every_jiffy() {
        let mut s = armed(1000, 10);
        let e = s.expire(1000, Kind::Posix).unwrap();
        s.discarded(e, 1000);
        let next = s.next.unwrap();
        assert!(
            next > 1000 + IGNORED_MIN_INTERVAL - 10,
            "not before a jiffy: {next}"
        );
        assert_eq!((next - 1000) % 10, 0, "still on the timer's grid");
        assert_eq!(s.overrun, (next - 1000) / 10 - 1);
        assert_eq!(s.waiting_since, None);
        // A slow timer keeps its own period.
        let mut slow = armed(0, IGNORED_MIN_INTERVAL * 2);
        let e = slow.expire(0, Kind::Posix).unwrap();
        slow.discarded(e, 0);
        assert_eq!(slow.next, Some(IGNORED_MIN_INTERVAL * 2));
    }

    #[test]
    fn interval_timers_move_on_at_once_and_sigev_none_is_read_arithmetically() {
        let mut s = armed(100, 10);
        s.expire(125, Kind::Itimer);
        assert_eq!(s.next, Some(130));
        let q = armed(100, 10);
        assert_eq!(
            q.setting(125, Kind::Silent),
            Setting {
                value: 5,
                interval: 10
            }
        );
        let one = armed(100, 0);
        assert_eq!(one.setting(125, Kind::Silent).value, 0);
        assert_eq!(one.setting(40, Kind::Silent).value, 60);
    }

    #[test]
    fn disarming_keeps_the_last_overrun() {
        let mut s = armed(100, 10);
        let e = s.expire(100, Kind::Posix).unwrap();
        s.taken(e.key, Some(135));
        s.disarm();
        assert_eq!((s.is_armed(), s.last_overrun), (false, 3));
        s.arm(None, 0, 9);
        assert_eq!(s.last_overrun, 0, "a new setting starts again");
    }
}
