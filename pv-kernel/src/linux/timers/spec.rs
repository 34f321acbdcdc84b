//! The pure arithmetic of timers: the user encodings (`timespec`, `timeval`, `itimerspec`,
//! `itimerval`), how an interval timer moves past missed expirations, and what
//! `alarm`/`getitimer` report. Unit-tested on the host.

use crate::fs::Errno;

/// Nanoseconds per second.
pub(crate) const NSEC: u64 = 1_000_000_000;

/// A timer's setting: the time to the next expiry (0: disarmed) and the reload interval (0:
/// one-shot), both in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Setting {
    /// Time to the next expiry (relative or absolute, as the call says); 0 disarms.
    pub(crate) value: u64,
    /// Reload interval; 0 for a one-shot timer.
    pub(crate) interval: u64,
}

/// Decodes a `struct timespec` (`[tv_sec, tv_nsec]`): `EINVAL` if negative or `tv_nsec` is
/// out of range, as Linux's `timespec64_valid`.
pub(crate) fn timespec_ns(ts: [i64; 2]) -> Result<u64, Errno> {
    if ts[0] < 0 || !(0..NSEC as i64).contains(&ts[1]) {
        return Err(Errno::EINVAL);
    }
    Ok((ts[0] as u64)
        .saturating_mul(NSEC)
        .saturating_add(ts[1] as u64))
}

/// Decodes a `struct timeval` (`[tv_sec, tv_usec]`): `EINVAL` if negative or `tv_usec` is
/// out of range.
pub(crate) fn timeval_ns(tv: [i64; 2]) -> Result<u64, Errno> {
    if tv[0] < 0 || !(0..1_000_000).contains(&tv[1]) {
        return Err(Errno::EINVAL);
    }
    Ok((tv[0] as u64)
        .saturating_mul(NSEC)
        .saturating_add(tv[1] as u64 * 1000))
}

/// Encodes nanoseconds as a `struct timespec`.
pub(crate) fn ns_timespec(ns: u64) -> [i64; 2] {
    [(ns / NSEC) as i64, (ns % NSEC) as i64]
}

/// Encodes nanoseconds as a `struct timeval`, rounding up to the next microsecond (so an
/// armed timer never reads as 0, as Linux's `getitimer`).
pub(crate) fn ns_timeval(ns: u64) -> [i64; 2] {
    let us = ns.div_ceil(1000);
    [(us / 1_000_000) as i64, (us % 1_000_000) as i64]
}

/// Decodes a `struct itimerspec` (`[interval, value]`, each a timespec).
pub(crate) fn itimerspec(raw: [i64; 4]) -> Result<Setting, Errno> {
    Ok(Setting {
        interval: timespec_ns([raw[0], raw[1]])?,
        value: timespec_ns([raw[2], raw[3]])?,
    })
}

/// Encodes a `struct itimerspec`.
pub(crate) fn to_itimerspec(s: Setting) -> [i64; 4] {
    let i = ns_timespec(s.interval);
    let v = ns_timespec(s.value);
    [i[0], i[1], v[0], v[1]]
}

/// Decodes a `struct itimerval` (`[interval, value]`, each a timeval).
pub(crate) fn itimerval(raw: [i64; 4]) -> Result<Setting, Errno> {
    Ok(Setting {
        interval: timeval_ns([raw[0], raw[1]])?,
        value: timeval_ns([raw[2], raw[3]])?,
    })
}

/// Encodes a `struct itimerval`.
pub(crate) fn to_itimerval(s: Setting) -> [i64; 4] {
    let i = ns_timeval(s.interval);
    let v = ns_timeval(s.value);
    [i[0], i[1], v[0], v[1]]
}

/// An interval timer that expired at `expired` (and fired for it), looked at again at `now`:
/// how many further expirations were missed (at or before `now`), and the next expiry after
/// `now` (Linux's `hrtimer_forward`). `interval` must not be 0.
pub(crate) fn forward(expired: u64, interval: u64, now: u64) -> (u64, u64) {
    debug_assert!(interval != 0);
    if now < expired.saturating_add(interval) {
        return (0, expired.saturating_add(interval));
    }
    let missed = (now - expired) / interval;
    let next = expired.saturating_add(missed.saturating_add(1).saturating_mul(interval));
    (missed, next)
}

/// What `alarm` returns for a timer that had `remaining_ns` left: whole seconds rounded to
/// the nearest, but at least 1 if it was armed at all (Linux's `alarm_setitimer`).
pub(crate) fn alarm_seconds(remaining_ns: u64) -> u64 {
    if remaining_ns == 0 {
        return 0;
    }
    let us = remaining_ns.div_ceil(1000);
    let (s, frac) = (us / 1_000_000, us % 1_000_000);
    if s == 0 || frac >= 500_000 {
        s + 1
    } else {
        s
    }
}

/// The expirations an overrun counter reports (`timer_getoverrun`, `si_overrun`): saturated
/// at `DELAYTIMER_MAX` (`INT_MAX`).
pub(crate) fn overrun_report(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespecs_and_timevals_are_checked_like_linux() {
        assert_eq!(timespec_ns([1, 5]), Ok(NSEC + 5));
        assert_eq!(timespec_ns([-1, 0]), Err(Errno::EINVAL));
        assert_eq!(timespec_ns([0, NSEC as i64]), Err(Errno::EINVAL));
        assert_eq!(timespec_ns([0, -1]), Err(Errno::EINVAL));
        assert_eq!(timespec_ns([i64::MAX, 0]), Ok(u64::MAX), "saturates");
        assert_eq!(timeval_ns([2, 999_999]), Ok(2 * NSEC + 999_999_000));
        assert_eq!(timeval_ns([0, 1_000_000]), Err(Errno::EINVAL));
        assert_eq!(ns_timespec(3 * NSEC + 7), [3, 7]);
        assert_eq!(ns_timeval(1), [0, 1], "rounded up");
        assert_eq!(ns_timeval(NSEC), [1, 0]);
        assert_eq!(ns_timeval(0), [0, 0]);
    }

    #[test]
    fn itimer_structures_round_trip() {
        let s = Setting {
            value: 1_500_000_000,
            interval: 250_000_000,
        };
        assert_eq!(to_itimerspec(s), [0, 250_000_000, 1, 500_000_000]);
        assert_eq!(itimerspec(to_itimerspec(s)), Ok(s));
        assert_eq!(to_itimerval(s), [0, 250_000, 1, 500_000]);
        assert_eq!(itimerval(to_itimerval(s)), Ok(s));
        assert_eq!(itimerspec([0, 0, 0, -5]), Err(Errno::EINVAL));
        assert_eq!(itimerval([0, 2_000_000, 0, 0]), Err(Errno::EINVAL));
    }

    #[test]
    fn forward_counts_the_missed_expirations() {
        // Looked at before the next expiry: nothing missed.
        assert_eq!(forward(100, 10, 100), (0, 110));
        assert_eq!(forward(100, 10, 109), (0, 110));
        // Exactly at the next expiry: that one is missed too.
        assert_eq!(forward(100, 10, 110), (1, 120));
        assert_eq!(forward(100, 10, 155), (5, 160));
        // A huge gap does not overflow.
        assert_eq!(forward(0, 1, u64::MAX - 1), (u64::MAX - 1, u64::MAX));
        assert_eq!(forward(u64::MAX - 5, 10, u64::MAX - 5), (0, u64::MAX));
    }

    #[test]
    fn alarm_rounds_to_the_nearest_second_but_never_to_zero() {
        assert_eq!(alarm_seconds(0), 0);
        assert_eq!(alarm_seconds(1), 1);
        assert_eq!(alarm_seconds(499_999_999), 1);
        assert_eq!(alarm_seconds(1_499_999_000), 1);
        assert_eq!(alarm_seconds(1_500_000_000), 2);
        assert_eq!(alarm_seconds(5 * NSEC), 5);
    }

    #[test]
    fn overruns_saturate_at_int_max() {
        assert_eq!(overrun_report(0), 0);
        assert_eq!(overrun_report(7), 7);
        assert_eq!(overrun_report(u64::MAX), i32::MAX);
    }
}
