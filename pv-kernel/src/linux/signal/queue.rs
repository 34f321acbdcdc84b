//! A thread's pending signals: at most one instance of a standard signal, every instance of
//! a real-time one, each with its information, taken in Linux's order.

use alloc::vec::Vec;

use super::info::{code, Detail, SigInfo};
use super::set::{is_realtime, valid, SigSet, SYNCHRONOUS};
use crate::fs::Errno;

/// Most queued signals per thread, whatever the process's `RLIMIT_SIGPENDING` (the lower
/// of the two applies); beyond it a real-time signal sent with information fails with
/// `EAGAIN`, a real-time one sent by `kill` is merged without its information, and a
/// standard one is still queued (at most one each).
pub(crate) const MAX_QUEUED: usize = 256;

/// The pending signals of a thread and their information, in the order sent.
#[derive(Default)]
pub(crate) struct SigQueue {
    /// The pending signals.
    pending: SigSet,
    /// The information of the pending signals.
    entries: Vec<SigInfo>,
}

impl SigQueue {
    /// The pending signals.
    pub(crate) fn pending(&self) -> SigSet {
        self.pending
    }

    /// Marks `info.signo` pending with its information (numbers that are not signals are
    /// ignored). A standard signal already pending is not queued twice (Linux's
    /// `legacy_queue`). When the queue is full (Linux's `__send_signal_locked`): a standard
    /// signal from `kill` or the kernel is queued anyway (there is at most one of each), a
    /// real-time signal sent with information fails with `EAGAIN`, and any other is marked
    /// pending without its information.
    #[cfg(test)]
    pub(crate) fn raise(&mut self, info: SigInfo) -> Result<(), Errno> {
        self.raise_limited(info, MAX_QUEUED)
    }

    /// [`Self::raise`] with at most `limit` (and never more than [`MAX_QUEUED`]) signals
    /// queued with their information: the target's `RLIMIT_SIGPENDING`.
    pub(crate) fn raise_limited(&mut self, info: SigInfo, limit: usize) -> Result<(), Errno> {
        let signo = info.signo;
        if !valid(signo) {
            return Ok(());
        }
        let realtime = is_realtime(signo);
        if !realtime && self.pending.contains(signo) {
            return Ok(());
        }
        let override_limit = !realtime && info.code >= 0;
        if self.entries.len() < limit.min(MAX_QUEUED) || override_limit {
            self.entries.try_reserve(1).map_err(|_| Errno::EAGAIN)?;
            self.entries.push(info);
        } else if realtime && info.code != code::SI_USER {
            return Err(Errno::EAGAIN);
        }
        self.pending = self.pending.with(signo);
        Ok(())
    }

    /// Takes the next pending signal in `allowed` with its information: fault signals
    /// first, then the lowest number, the oldest instance first (Linux's `next_signal`).
    pub(crate) fn dequeue(&mut self, allowed: SigSet) -> Option<SigInfo> {
        let ready = self.pending & allowed;
        let sync = ready & SYNCHRONOUS;
        let signo = if sync.is_empty() { ready } else { sync }.lowest()?;
        let info = match self.entries.iter().position(|i| i.signo == signo) {
            Some(i) => self.entries.remove(i),
            // Merged beyond the queue limit: the information was lost (Linux then reports
            // `SI_USER` from pid 0).
            None => SigInfo::from_process(signo, code::SI_USER, 0),
        };
        if !self.entries.iter().any(|i| i.signo == signo) {
            self.pending = self.pending.minus(SigSet::of(signo));
        }
        Some(info)
    }

    /// Every pending signal's information, in the order sent.
    pub(crate) fn infos(&self) -> &[SigInfo] {
        &self.entries
    }

    /// Marks `signo` pending without information (a hand-over's signal merged beyond the
    /// queue's limit where it was sent).
    pub(crate) fn mark(&mut self, signo: u32) {
        if valid(signo) {
            self.pending = self.pending.with(signo);
        }
    }

    /// Drops every pending instance of the signals in `set`.
    pub(crate) fn discard(&mut self, set: SigSet) {
        self.entries.retain(|i| !set.contains(i.signo));
        self.pending = self.pending.minus(set);
    }

    /// True if a signal queued by POSIX timer arm `key` is pending.
    pub(crate) fn has_timer(&self, key: u64) -> bool {
        self.entries
            .iter()
            .any(|i| matches!(i.detail, Detail::Timer { key: k, .. } if k == key))
    }

    /// Number of queued signal instances.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::info::Fault;
    use super::super::set::sig;
    use super::*;

    const SI_QUEUE: i32 = code::SI_QUEUE;
    const ALL: SigSet = SigSet::FULL;

    fn kill(signo: u32, pid: i32) -> SigInfo {
        SigInfo::from_process(signo, code::SI_USER, pid)
    }

    fn queued(signo: u32, pid: i32) -> SigInfo {
        SigInfo::from_process(signo, SI_QUEUE, pid)
    }

    #[test]
    fn standard_signals_merge_and_realtime_signals_queue_in_order() {
        let mut q = SigQueue::default();
        q.raise(kill(sig::SIGUSR1, 5)).unwrap();
        q.raise(kill(sig::SIGUSR1, 6)).unwrap();
        q.raise(queued(40, 1)).unwrap();
        q.raise(queued(40, 2)).unwrap();
        assert_eq!(q.len(), 3, "the second SIGUSR1 merged into the first");
        assert_eq!(
            q.dequeue(ALL),
            Some(kill(sig::SIGUSR1, 5)),
            "the first one's sender"
        );
        assert_eq!(q.dequeue(ALL), Some(queued(40, 1)));
        assert!(q.pending().contains(40), "still pending: one more instance");
        assert_eq!(q.dequeue(ALL), Some(queued(40, 2)));
        assert_eq!(q.dequeue(ALL), None);
        assert_eq!(q.pending(), SigSet::EMPTY);
    }

    #[test]
    fn fault_signals_go_first_then_the_lowest_number() {
        let mut q = SigQueue::default();
        for s in [40, sig::SIGTERM, sig::SIGCHLD, sig::SIGHUP] {
            q.raise(kill(s, 1)).unwrap();
        }
        q.raise(SigInfo::fault(sig::SIGSEGV, 1, Fault::default()))
            .unwrap();
        q.raise(SigInfo::fault(sig::SIGSYS, 1, Fault::default()))
            .unwrap();
        let order: Vec<u32> = core::iter::from_fn(|| q.dequeue(ALL).map(|i| i.signo)).collect();
        assert_eq!(
            order,
            [
                sig::SIGSEGV,
                sig::SIGSYS,
                sig::SIGHUP,
                sig::SIGTERM,
                sig::SIGCHLD,
                40
            ]
        );
    }

    #[test]
    fn blocked_signals_stay_pending_and_discard_drops_every_instance() {
        let mut q = SigQueue::default();
        q.raise(queued(40, 1)).unwrap();
        q.raise(queued(40, 2)).unwrap();
        q.raise(kill(sig::SIGUSR2, 3)).unwrap();
        // A blocked fault signal does not jump the queue of the allowed ones either.
        q.raise(SigInfo::fault(sig::SIGBUS, 2, Fault::default()))
            .unwrap();
        let allowed = !(SigSet::of(40) | SigSet::of(sig::SIGBUS));
        assert_eq!(q.dequeue(allowed), Some(kill(sig::SIGUSR2, 3)));
        assert_eq!(q.dequeue(allowed), None);
        assert_eq!(q.pending(), SigSet::of(40) | SigSet::of(sig::SIGBUS));
        q.discard(SigSet::of(40));
        assert_eq!(q.pending(), SigSet::of(sig::SIGBUS));
        assert_eq!(q.len(), 1);
        assert_eq!(q.dequeue(ALL).map(|i| i.signo), Some(sig::SIGBUS));
    }

    #[test]
    fn timer_signals_are_found_by_their_arm() {
        let mut q = SigQueue::default();
        q.raise(SigInfo::timer(40, 0, 7, 11)).unwrap();
        q.raise(SigInfo::timer(40, 1, 8, 12)).unwrap();
        assert!(q.has_timer(11) && q.has_timer(12) && !q.has_timer(13));
        assert_eq!(
            q.dequeue(ALL),
            Some(SigInfo::timer(40, 0, 7, 11)),
            "in order"
        );
        assert!(!q.has_timer(11) && q.has_timer(12));
    }

    #[test]
    fn numbers_that_are_not_signals_are_ignored() {
        let mut q = SigQueue::default();
        q.raise(kill(0, 1)).unwrap();
        q.raise(kill(65, 1)).unwrap();
        assert_eq!((q.pending(), q.len()), (SigSet::EMPTY, 0));
    }

    #[test]
    fn a_full_queue_refuses_realtime_signals_with_information_only() {
        let mut q = SigQueue::default();
        for i in 0..MAX_QUEUED {
            q.raise(queued(40, i as i32)).unwrap();
        }
        // sigqueue() of a real-time signal: EAGAIN, nothing pending.
        assert_eq!(q.raise(queued(41, 1)), Err(Errno::EAGAIN));
        assert!(!q.pending().contains(41));
        // kill() of a real-time signal: pending, its information lost.
        q.raise(kill(42, 9)).unwrap();
        assert_eq!(q.dequeue(SigSet::of(42)), Some(kill(42, 0)));
        // A standard signal from kill() or the kernel is queued beyond the limit, with its
        // information (Linux overrides the limit for them).
        q.raise(kill(sig::SIGUSR2, 9)).unwrap();
        q.raise(SigInfo::kernel(sig::SIGINT)).unwrap();
        assert_eq!(
            q.dequeue(SigSet::of(sig::SIGUSR2)),
            Some(kill(sig::SIGUSR2, 9))
        );
        assert_eq!(
            q.dequeue(SigSet::of(sig::SIGINT)),
            Some(SigInfo::kernel(sig::SIGINT))
        );
        // A lower RLIMIT_SIGPENDING refuses earlier.
        let mut q2 = SigQueue::default();
        q2.raise_limited(queued(40, 1), 1).unwrap();
        assert_eq!(q2.raise_limited(queued(40, 2), 1), Err(Errno::EAGAIN));
        // A standard signal sent with sigqueue's information: pending, information lost.
        q.raise(queued(sig::SIGHUP, 4)).unwrap();
        assert_eq!(
            q.dequeue(SigSet::of(sig::SIGHUP)),
            Some(kill(sig::SIGHUP, 0))
        );
    }
}
