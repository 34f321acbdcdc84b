//! Timers across a kernel hand-over (record section 16, [`TimerEntry`]): what a process's
//! interval and POSIX timers become in the record ([`carry`]), and how an adopting kernel
//! makes them again ([`adopt`], then [`arm`] once the process's threads run).
//!
//! A wall-clock timer's next expiry is a time of the tenant's guest clock, the same in both
//! kernels (the host keeps its clock parameters), so it is carried as it is: a timer due
//! while the tenant was frozen fires as soon as the new kernel arms it. A CPU-time timer
//! carries the CPU time left until its expiry (the adopted process's CPU time starts
//! again). What a timer cannot be carried as — a POSIX timer on another process's or a
//! thread's CPU clock, or aimed at a thread that ended — stays a blocker.
//!
//! [`decode`] (what an entry asks for) and [`carried_times`] (a timer's state as carried)
//! are pure and unit-tested.

use alloc::sync::Arc;
use alloc::vec::Vec;

use pvmux_hypercalls::handover::{
    timer_clock, timer_kind, timer_notify, TimerEntry, TimerWaitEntry,
};

use super::clock::{Clock, CpuKind};
use super::spec;
use super::state::State;
use super::timer::{Event, Target, Timer};
use crate::linux::signal::sig;
use crate::linux::task::{self, Process};

/// Where a carried timer lives in its process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Interval timer `which` (0 `ITIMER_REAL`, 1 `ITIMER_VIRTUAL`, 2 `ITIMER_PROF`).
    Itimer(usize),
    /// POSIX timer `id`.
    Posix(i32),
}

/// What a carried timer's clock measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClockKind {
    /// A wall clock (`realtime`: absolute settings are wall-clock times).
    Wall { realtime: bool },
    /// The process's own CPU time.
    Cpu(CpuKind),
}

/// What a carried timer's expiry does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Notify {
    /// Nothing (`SIGEV_NONE`).
    None,
    /// Signal `signo` to the process.
    Process(u32),
    /// Signal `signo` to thread `tid` of the process.
    Thread(u32, i32),
}

/// A carried timer, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Carried {
    pub(crate) slot: Slot,
    pub(crate) clock: ClockKind,
    pub(crate) notify: Notify,
    /// Its `sigev_value`.
    pub(crate) value: u64,
    /// The next expiry as carried (0: not armed; see [`TimerEntry::next`]).
    pub(crate) next: u64,
    pub(crate) interval: u64,
    pub(crate) overrun: i32,
}

/// Decodes an entry of a checked record (`Record::check` checked every value; this checks
/// again what adoption relies on).
pub(crate) fn decode(e: &TimerEntry) -> Result<Carried, &'static str> {
    let clock = match e.clock {
        timer_clock::REALTIME => ClockKind::Wall { realtime: true },
        timer_clock::MONOTONIC => ClockKind::Wall { realtime: false },
        timer_clock::PROCESS_CPU => ClockKind::Cpu(CpuKind::Total),
        timer_clock::PROCESS_CPU_USER => ClockKind::Cpu(CpuKind::User),
        _ => return Err("a timer's clock is unknown"),
    };
    let signo_ok = |s: u32| (1..=sig::NSIG).contains(&s);
    let notify = match e.notify {
        timer_notify::NONE => Notify::None,
        timer_notify::SIGNAL if signo_ok(e.signo) => Notify::Process(e.signo),
        timer_notify::THREAD if signo_ok(e.signo) => Notify::Thread(e.signo, e.tid),
        _ => return Err("a timer's notification is invalid"),
    };
    let itimer = |which: usize, want: ClockKind, signo: u32| {
        (e.id == 0 && clock == want && notify == Notify::Process(signo))
            .then_some(Slot::Itimer(which))
            .ok_or("an interval timer's clock or signal is not its kind's")
    };
    let slot = match e.kind {
        timer_kind::ITIMER_REAL => itimer(0, ClockKind::Wall { realtime: true }, sig::SIGALRM)?,
        timer_kind::ITIMER_VIRTUAL => itimer(1, ClockKind::Cpu(CpuKind::User), sig::SIGVTALRM)?,
        timer_kind::ITIMER_PROF => itimer(2, ClockKind::Cpu(CpuKind::Total), sig::SIGPROF)?,
        timer_kind::POSIX if e.id >= 0 => Slot::Posix(e.id),
        _ => return Err("a timer's kind or id is invalid"),
    };
    if e.overrun < 0 || e.next > i64::MAX as u64 || e.interval > i64::MAX as u64 {
        return Err("a timer's times are out of range");
    }
    Ok(Carried {
        slot,
        clock,
        notify,
        value: e.value,
        next: e.next,
        interval: if e.next == 0 { 0 } else { e.interval },
        overrun: e.overrun,
    })
}

/// A timer's state `st` at `now` (its clock's base) as carried: the next expiry ([`TimerEntry::next`]:
/// a wall clock's absolute, a CPU clock's left, at least 1; 0: not armed) and the interval.
/// A periodic POSIX timer waiting for its signal to be taken goes on from its next expiry
/// after `now` (the queued signal is carried as a pending signal).
pub(crate) fn carried_times(st: &State, now: u64, cpu: bool) -> (u64, u64) {
    let next = match (st.next, st.waiting_since) {
        (Some(n), _) => n,
        (None, Some(at)) if st.interval != 0 => spec::forward(at, st.interval, now).1,
        _ => return (0, 0),
    };
    let next = if cpu { next.saturating_sub(now) } else { next };
    (next.max(1), st.interval)
}

/// The entries of `p`'s timers (`pid` in each), in the record's (kind, id) order, those of
/// its periodic POSIX timers that wait for their queued signal (section 38), and how many
/// cannot be carried. Disarmed interval timers are left out (one is the same as none).
pub(crate) fn carry(p: &Arc<Process>) -> (Vec<TimerEntry>, Vec<TimerWaitEntry>, u32) {
    let mut out = Vec::new();
    let mut not_carried = 0;
    let itimers = p.timers.itimers.lock().clone();
    for (which, t) in itimers.iter().enumerate() {
        let Some(t) = t else { continue };
        let (next, interval, overrun) = t.carried();
        if next == 0 {
            continue;
        }
        let (kind, clock, signo) = match which {
            0 => (timer_kind::ITIMER_REAL, timer_clock::REALTIME, sig::SIGALRM),
            1 => (
                timer_kind::ITIMER_VIRTUAL,
                timer_clock::PROCESS_CPU_USER,
                sig::SIGVTALRM,
            ),
            _ => (
                timer_kind::ITIMER_PROF,
                timer_clock::PROCESS_CPU,
                sig::SIGPROF,
            ),
        };
        out.push(TimerEntry {
            pid: p.pid,
            kind,
            id: 0,
            clock,
            notify: timer_notify::SIGNAL,
            signo,
            tid: 0,
            overrun,
            value: 0,
            next,
            interval,
            _reserved: 0,
        });
    }
    let posix: Vec<(i32, Arc<Timer>)> = p
        .timers
        .posix
        .lock()
        .map
        .iter()
        .map(|(&id, t)| (id, t.clone()))
        .collect();
    let mut waits = Vec::new();
    for (id, t) in posix {
        match posix_entry(p, id, &t, &mut waits) {
            Some(e) => out.push(e),
            None => not_carried += 1,
        }
    }
    (out, waits, not_carried)
}

/// The entry of `p`'s POSIX timer `id` (`None`: it cannot be carried).
fn posix_entry(
    p: &Arc<Process>,
    id: i32,
    t: &Timer,
    waits: &mut Vec<TimerWaitEntry>,
) -> Option<TimerEntry> {
    let own = |w: &alloc::sync::Weak<Process>| core::ptr::eq(w.as_ptr(), Arc::as_ptr(p));
    let clock = match &t.clock {
        Clock::Wall { realtime: true } => timer_clock::REALTIME,
        Clock::Wall { realtime: false } => timer_clock::MONOTONIC,
        Clock::ProcessCpu(w, CpuKind::Total) if own(w) => timer_clock::PROCESS_CPU,
        Clock::ProcessCpu(w, CpuKind::User) if own(w) => timer_clock::PROCESS_CPU_USER,
        _ => return None,
    };
    let (notify, signo, tid, value) = match &t.event {
        Event::None => (timer_notify::NONE, 0, 0, 0),
        Event::Posix {
            target,
            signo,
            value,
            ..
        } => match target {
            Target::Process(w) if own(w) => (timer_notify::SIGNAL, *signo, 0, *value),
            Target::Thread(w) => {
                let task = w.upgrade()?;
                if !Arc::ptr_eq(&task.process, p) {
                    return None;
                }
                (timer_notify::THREAD, *signo, task.tid, *value)
            }
            _ => return None,
        },
        _ => return None,
    };
    let ((next, interval, overrun), pending) = t.carried_waiting();
    if let Some(pending) = pending.filter(|_| next != 0) {
        waits.push(TimerWaitEntry {
            pid: p.pid,
            id,
            overrun: pending.min(i32::MAX as u64),
        });
    }
    Some(TimerEntry {
        pid: p.pid,
        kind: timer_kind::POSIX,
        id,
        clock,
        notify,
        signo,
        tid,
        overrun,
        value,
        next,
        interval,
        _reserved: 0,
    })
}

/// A re-created timer, to [`arm`] once its process's threads run.
pub(crate) struct Adopted {
    timer: Arc<Timer>,
    next: u64,
    interval: u64,
    overrun: i32,
    /// A periodic POSIX timer carried as waiting for its pending signal (section 38): its
    /// id, the key its arm and its signal's information share, and the expirations not
    /// reported yet; cleared by [`Adopted::keep_waiting`] when no such signal was adopted.
    wait: Option<(i32, u64, u64)>,
    /// Its process.
    pid: i32,
}

impl Adopted {
    /// Its process's pid.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// The (timer id, key) a pending signal of this timer is linked to, if it waits for one.
    pub(crate) fn wait_key(&self) -> Option<(i32, u64)> {
        self.wait.map(|(id, key, _)| (id, key))
    }

    /// Keeps the wait only if `linked` (its signal was adopted and linked to its key); else
    /// the timer is armed as usual.
    pub(crate) fn keep_waiting(&mut self, linked: bool) {
        if !linked {
            self.wait = None;
        }
    }
}

/// Makes the carried timer `e` again on the adopted process `p` (its threads made), not
/// armed yet.
pub(crate) fn adopt(
    p: &Arc<Process>,
    e: &TimerEntry,
    wait: Option<&TimerWaitEntry>,
) -> Result<Adopted, &'static str> {
    let c = decode(e)?;
    let weak = Arc::downgrade(p);
    let clock = match c.clock {
        ClockKind::Wall { realtime } => Clock::Wall { realtime },
        ClockKind::Cpu(k) => Clock::ProcessCpu(weak.clone(), k),
    };
    let event = match (c.slot, c.notify) {
        (Slot::Itimer(_), Notify::Process(signo)) => Event::Itimer {
            process: weak,
            signo,
        },
        (Slot::Posix(_), Notify::None) => Event::None,
        (Slot::Posix(id), n) => {
            let (target, signo) = match n {
                Notify::Thread(signo, tid) => {
                    let t = task::find_task(tid)
                        .filter(|t| Arc::ptr_eq(&t.process, p))
                        .ok_or("a timer's thread is not one of its process's")?;
                    (Target::Thread(Arc::downgrade(&t)), signo)
                }
                Notify::Process(signo) => (Target::Process(weak), signo),
                Notify::None => unreachable!("matched above"),
            };
            Event::Posix {
                target,
                signo,
                timerid: id,
                value: c.value,
            }
        }
        _ => return Err("an interval timer's notification is not a signal"),
    };
    let timer = Timer::new(clock, event);
    match c.slot {
        Slot::Itimer(which) => {
            let mut slots = p.timers.itimers.lock();
            if slots[which].is_some() {
                return Err("an interval timer twice");
            }
            slots[which] = Some(timer.clone());
        }
        Slot::Posix(id) => {
            let mut timers = p.timers.posix.lock();
            if timers.map.len() >= super::posix::MAX_TIMERS {
                return Err("too many timers");
            }
            if timers.map.insert(id, timer.clone()).is_some() {
                return Err("a timer id twice");
            }
            timers.next = if id == i32::MAX { 0 } else { id + 1 };
        }
    }
    let wait = match (c.slot, wait) {
        (Slot::Posix(id), Some(w)) if w.id == id && c.interval != 0 && c.next != 0 => {
            Some((id, Timer::new_key(), w.overrun))
        }
        _ => None,
    };
    Ok(Adopted {
        timer,
        next: c.next,
        interval: c.interval,
        overrun: c.overrun,
        wait,
        pid: p.pid,
    })
}

/// Arms an adopted timer as carried (a wall clock's expiry as it is, already due or not; a
/// CPU clock's that much CPU time from now) with its overrun report; one that waits for
/// its pending signal waits on.
pub(crate) fn arm(a: Adopted) {
    match a.wait {
        Some((_, key, pending)) => {
            a.timer
                .adopted_waiting((a.next, a.interval), a.overrun, key, pending)
        }
        None => a.timer.adopted(a.next, a.interval, a.overrun),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> TimerEntry {
        TimerEntry {
            pid: 1,
            kind: timer_kind::POSIX,
            id: 3,
            clock: timer_clock::MONOTONIC,
            notify: timer_notify::THREAD,
            signo: 40,
            tid: 2,
            overrun: 5,
            value: 77,
            next: 1_000,
            interval: 10,
            _reserved: 0,
        }
    }

    #[test]
    fn entries_decode_to_what_they_ask_for() {
        assert_eq!(
            decode(&entry()),
            Ok(Carried {
                slot: Slot::Posix(3),
                clock: ClockKind::Wall { realtime: false },
                notify: Notify::Thread(40, 2),
                value: 77,
                next: 1_000,
                interval: 10,
                overrun: 5,
            })
        );
        let alarm = TimerEntry {
            kind: timer_kind::ITIMER_REAL,
            id: 0,
            clock: timer_clock::REALTIME,
            notify: timer_notify::SIGNAL,
            signo: sig::SIGALRM,
            tid: 0,
            value: 0,
            ..entry()
        };
        assert_eq!(decode(&alarm).map(|c| c.slot), Ok(Slot::Itimer(0)));
        let prof = TimerEntry {
            kind: timer_kind::ITIMER_PROF,
            clock: timer_clock::PROCESS_CPU,
            signo: sig::SIGPROF,
            ..alarm
        };
        assert_eq!(
            decode(&prof).map(|c| (c.slot, c.clock)),
            Ok((Slot::Itimer(2), ClockKind::Cpu(CpuKind::Total)))
        );
        // A disarmed one has no interval.
        let off = TimerEntry { next: 0, ..entry() };
        assert_eq!(decode(&off).map(|c| c.interval), Ok(0));
        for bad in [
            TimerEntry {
                signo: sig::SIGPROF,
                ..alarm
            },
            TimerEntry { id: 1, ..alarm },
            TimerEntry {
                clock: timer_clock::MONOTONIC,
                ..alarm
            },
            TimerEntry {
                clock: 0,
                ..entry()
            },
            TimerEntry {
                signo: 0,
                ..entry()
            },
            TimerEntry {
                signo: 65,
                ..entry()
            },
            TimerEntry {
                notify: 9,
                ..entry()
            },
            TimerEntry { kind: 0, ..entry() },
            TimerEntry { id: -1, ..entry() },
            TimerEntry {
                overrun: -1,
                ..entry()
            },
            TimerEntry {
                next: u64::MAX,
                ..entry()
            },
        ] {
            assert!(decode(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_state_is_carried_as_its_next_expiry() {
        let mut s = State::default();
        assert_eq!(carried_times(&s, 50, false), (0, 0), "disarmed");
        s.arm(Some(100), 10, 1);
        assert_eq!(carried_times(&s, 50, false), (100, 10), "wall: absolute");
        assert_eq!(carried_times(&s, 50, true), (50, 10), "CPU: what is left");
        assert_eq!(carried_times(&s, 150, true), (1, 10), "CPU, due: at once");
        assert_eq!(
            carried_times(&s, 150, false),
            (100, 10),
            "wall, due: as it is"
        );
        // A periodic POSIX timer whose signal is queued goes on after now.
        s.expire(100, super::super::state::Kind::Posix);
        assert_eq!(s.next, None);
        assert_eq!(carried_times(&s, 125, false), (130, 10));
        // A one-shot one that fired is disarmed.
        let mut o = State::default();
        o.arm(Some(100), 0, 2);
        o.expire(100, super::super::state::Kind::Posix);
        assert_eq!(carried_times(&o, 120, false), (0, 0));
    }
}
