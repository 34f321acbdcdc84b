//! The host hypercall doorbell in a [`VcpuShared`] page: both halves of the protocol.
//!
//! The stub's `hypercall` entry uses [`GuestDoorbell`], the host's vCPU service thread
//! [`HostDoorbell`]; the platform-specific parts (a clock and shared futexes) come from a
//! [`Waiter`] each side implements. docs/ABI.md §11 is the prose specification.
//!
//! ```text
//!  guest                                         host
//!  hc_nr, hc_args = call                         (waiting for hc_req != last:
//!  hc_req = seq (last + 1)            ──────►      spin HOST_SPIN_NS if the previous call
//!  if host_waiting: wake(hc_req)                   ended < HOST_SPIN_RECENCY_NS ago and was
//!                                                  not NOSPIN, then host_waiting = 1 and
//!                                                  futex-wait on hc_req, re-checking)
//!                                                copy hc_nr, hc_args out once; handle
//!  (waiting for hc_resp == seq:                  hc_ret = result
//!   spin GUEST_SPIN_NS unless NOSPIN,  ◄──────   hc_resp = seq
//!   then guest_waiting = 1 and futex-wait        if guest_waiting: wake(hc_resp)
//!   on hc_resp, re-checking)
//!  result = hc_ret
//! ```
//!
//! Each side announces sleeping *before* its last check (store, full fence, load), and the
//! other side publishes *before* it looks at the flag (store, full fence, load), so a wake-up
//! is never lost. Spinning is bounded on both sides (one or two host CPUs must never be burnt
//! waiting), and [`HC_FLAG_NOSPIN`] makes both sides block at once. Sequence numbers wrap.
//!
//! Nothing the guest writes is trusted by the host half: it takes `hc_req` as "changed or not",
//! copies the request once, and a guest that scribbles over the page only confuses itself.

use core::sync::atomic::AtomicU32;
use core::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};

use crate::hypercall::HC_FLAG_NOSPIN;
use crate::VcpuShared;

/// How long the guest spins for a response before it blocks (ns).
pub const GUEST_SPIN_NS: u64 = 30_000;
/// How long the host spins for the next request before it blocks (ns).
pub const HOST_SPIN_NS: u64 = 30_000;
/// The host spins only if the previous request completed at most this long ago (ns).
pub const HOST_SPIN_RECENCY_NS: u64 = 500_000;
/// Spin iterations between two clock reads.
const SPIN_CLOCK_EVERY: u32 = 64;

/// What one side of the doorbell needs from its platform.
pub trait Waiter {
    /// A monotonic clock in nanoseconds.
    fn now_ns(&self) -> u64;
    /// `FUTEX_WAIT` on `word` (shared: the page is mapped by two processes) while it holds
    /// `expected`, for at most `timeout_ns` (`None`: no limit). May return early for any
    /// reason; callers re-check.
    fn wait(&self, word: &AtomicU32, expected: u32, timeout_ns: Option<u64>);
    /// `FUTEX_WAKE` (shared) of up to `count` waiters on `word`.
    fn wake(&self, word: &AtomicU32, count: u32);
    /// The host CPU this thread runs on, plus 1; 0 if not known (the default). A hint for
    /// spinning only: a side does not spin while the thread it waits for last ran on its own
    /// CPU (that thread would be waiting for this CPU). Read with `rdtscp` (`TSC_AUX`, which
    /// Linux sets to the CPU number) where the CPU has it.
    fn cpu(&self) -> u32 {
        0
    }
}

/// Publishes this thread's CPU (`w.cpu()`) in `mine` if it changed, and says whether the
/// other side's published CPU, `peer`, is the same one (then spinning only keeps the other
/// side off the CPU it needs). Both words are hints a hostile peer may have written: the
/// answer only chooses between spinning and sleeping.
pub fn peer_on_my_cpu(w: &(impl Waiter + ?Sized), mine: &AtomicU32, peer: &AtomicU32) -> bool {
    let cpu = w.cpu();
    if cpu == 0 {
        return false;
    }
    if mine.load(Relaxed) != cpu {
        mine.store(cpu, Relaxed);
    }
    peer.load(Relaxed) == cpu
}

/// A request sequence number (`hc_req` / `hc_resp`); wraps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seq(u32);

impl Seq {
    /// The raw value.
    pub const fn raw(self) -> u32 {
        self.0
    }

    const fn next(self) -> Self {
        Self(self.0.wrapping_add(1))
    }
}

/// Spins (bounded by `budget_ns`) until `done()` (true), or until the budget is spent or the
/// other side's published CPU (`peer`) is this thread's own (false; this thread publishes its
/// CPU in `mine`, see [`peer_on_my_cpu`]).
fn spin_until(
    w: &(impl Waiter + ?Sized),
    budget_ns: u64,
    mine: &AtomicU32,
    peer: &AtomicU32,
    mut done: impl FnMut() -> bool,
) -> bool {
    let deadline = w.now_ns().saturating_add(budget_ns);
    let mut i = 0u32;
    loop {
        if done() {
            return true;
        }
        core::hint::spin_loop();
        i = i.wrapping_add(1);
        if i.is_multiple_of(SPIN_CLOCK_EVERY)
            && (w.now_ns() > deadline || peer_on_my_cpu(w, mine, peer))
        {
            return false;
        }
    }
}

/// The guest half: makes one call at a time on one vCPU's page.
#[derive(Clone, Copy, Debug)]
pub struct GuestDoorbell<'a> {
    page: &'a VcpuShared,
}

/// A call that was rung and not yet answered.
#[derive(Debug)]
#[must_use = "a rung call must be waited for"]
pub struct PendingCall<'a> {
    page: &'a VcpuShared,
    seq: Seq,
    spin: bool,
}

impl<'a> GuestDoorbell<'a> {
    /// The guest half on `page`.
    pub const fn new(page: &'a VcpuShared) -> Self {
        Self { page }
    }

    /// Makes call `nr` (number | flags) with `args` and waits for its result.
    pub fn call(&self, w: &(impl Waiter + ?Sized), nr: u64, args: [u64; 6]) -> i64 {
        self.ring(w, nr, args).wait(w)
    }

    /// Rings: writes the call, publishes the next sequence number, wakes the host if it
    /// sleeps.
    pub fn ring(&self, w: &(impl Waiter + ?Sized), nr: u64, args: [u64; 6]) -> PendingCall<'a> {
        let s = self.page;
        s.hc_nr.store(nr, Relaxed);
        for (slot, v) in s.hc_args.iter().zip(args) {
            slot.store(v, Relaxed);
        }
        let seq = Seq(s.hc_req.load(Relaxed)).next();
        let _ = peer_on_my_cpu(w, &s.guest_cpu, &s.host_cpu);
        s.hc_req.swap(seq.0, SeqCst);
        if s.host_waiting.load(SeqCst) != 0 {
            w.wake(&s.hc_req, 1);
        }
        PendingCall {
            page: s,
            seq,
            spin: nr & HC_FLAG_NOSPIN == 0,
        }
    }
}

impl PendingCall<'_> {
    /// The call's sequence number.
    pub const fn seq(&self) -> Seq {
        self.seq
    }

    /// Waits for the host's answer: spins up to [`GUEST_SPIN_NS`] (not for `NOSPIN` calls),
    /// then sleeps on `hc_resp`. Returns `hc_ret`.
    pub fn wait(self, w: &(impl Waiter + ?Sized)) -> i64 {
        let s = self.page;
        let seq = self.seq.0;
        if self.spin
            && spin_until(w, GUEST_SPIN_NS, &s.guest_cpu, &s.host_cpu, || {
                s.hc_resp.load(Acquire) == seq
            })
        {
            return s.hc_ret.load(Acquire) as i64;
        }
        loop {
            s.guest_waiting.swap(1, SeqCst);
            let cur = s.hc_resp.load(SeqCst);
            if cur == seq {
                break;
            }
            w.wait(&s.hc_resp, cur, None);
        }
        s.guest_waiting.store(0, Relaxed);
        s.hc_ret.load(Acquire) as i64
    }
}

/// A request as the host copied it out of the page (once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Its sequence number.
    pub seq: Seq,
    /// Number and flags.
    pub nr: u64,
    /// Arguments.
    pub args: [u64; 6],
}

/// The host half of one vCPU's doorbell: where the protocol stands.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostDoorbell {
    /// The last sequence number handled (answered, or taken by a call that does not return).
    last: Seq,
    /// The request handed out by [`HostDoorbell::next`] and not yet completed.
    in_flight: Option<Seq>,
    /// When the last request was completed ([`Waiter::now_ns`]).
    last_done_ns: Option<u64>,
    /// Whether the last request asked for no spinning.
    last_nospin: bool,
}

impl HostDoorbell {
    /// A doorbell whose page is zeroed (no request made yet).
    pub const fn new() -> Self {
        Self {
            last: Seq(0),
            in_flight: None,
            last_done_ns: None,
            last_nospin: false,
        }
    }

    /// Waits for the next request on `page`: a bounded spin if the previous call ended
    /// recently (and was not `NOSPIN`), then futex waits of at most `wait_timeout_ns` each,
    /// checking `stop()` before every wait. `None` once `stop()` is true. A request left
    /// in flight (a call that does not return) counts as handled.
    pub fn next(
        &mut self,
        page: &VcpuShared,
        w: &(impl Waiter + ?Sized),
        wait_timeout_ns: u64,
        mut stop: impl FnMut() -> bool,
    ) -> Option<Request> {
        if let Some(seq) = self.in_flight.take() {
            self.last = seq;
        }
        let s = page;
        let last = self.last.0;
        let recent = self
            .last_done_ns
            .is_some_and(|t| w.now_ns().saturating_sub(t) < HOST_SPIN_RECENCY_NS);
        if !self.last_nospin && recent {
            // On timeout, fall through to blocking.
            spin_until(w, HOST_SPIN_NS, &s.host_cpu, &s.guest_cpu, || {
                s.hc_req.load(Acquire) != last
            });
        }
        while s.hc_req.load(Acquire) == last {
            if stop() {
                return None;
            }
            s.host_waiting.store(1, SeqCst);
            if s.hc_req.load(SeqCst) == last {
                w.wait(&s.hc_req, last, Some(wait_timeout_ns));
            }
            s.host_waiting.store(0, SeqCst);
        }
        let seq = Seq(s.hc_req.load(Acquire));
        let nr = s.hc_nr.load(Relaxed);
        let args: [u64; 6] = core::array::from_fn(|i| s.hc_args[i].load(Relaxed));
        self.in_flight = Some(seq);
        self.last_nospin = nr & HC_FLAG_NOSPIN != 0;
        Some(Request { seq, nr, args })
    }

    /// Answers the request [`HostDoorbell::next`] returned with `ret`: stores the result,
    /// publishes `hc_resp`, wakes the guest if it sleeps. Does nothing if none is in flight.
    pub fn complete(&mut self, page: &VcpuShared, w: &(impl Waiter + ?Sized), ret: i64) {
        let Some(seq) = self.in_flight.take() else {
            return;
        };
        page.hc_ret.store(ret as u64, Relaxed);
        let _ = peer_on_my_cpu(w, &page.host_cpu, &page.guest_cpu);
        page.hc_resp.store(seq.0, SeqCst);
        if page.guest_waiting.load(SeqCst) == 1 {
            w.wake(&page.hc_resp, u32::MAX);
        }
        self.last = seq;
        self.last_done_ns = Some(w.now_ns());
    }

    /// Wakes a host thread blocked in [`HostDoorbell::next`] on `page` (after its stop
    /// condition became true).
    pub fn wake_host(page: &VcpuShared, w: &(impl Waiter + ?Sized)) {
        w.wake(&page.hc_req, u32::MAX);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use super::*;
    use zerocopy::FromZeros;

    /// A waiter without futexes: waits are yields (spurious returns are allowed), wakes are
    /// no-ops; the clock is real.
    struct Yield(std::time::Instant);

    impl Waiter for Yield {
        fn now_ns(&self) -> u64 {
            self.0.elapsed().as_nanos() as u64
        }
        fn wait(&self, _: &AtomicU32, _: u32, _: Option<u64>) {
            std::thread::yield_now();
        }
        fn wake(&self, _: &AtomicU32, _: u32) {}
    }

    fn page() -> Arc<VcpuShared> {
        Arc::new(VcpuShared::new_zeroed())
    }

    /// Both halves on two threads: every call gets its own answer, spinning or not, and the
    /// host stops when asked.
    #[test]
    fn halves_agree() {
        let p = page();
        let stop = Arc::new(AtomicBool::new(false));
        let host = {
            let (p, stop) = (Arc::clone(&p), Arc::clone(&stop));
            std::thread::spawn(move || {
                let w = Yield(std::time::Instant::now());
                let mut d = HostDoorbell::new();
                let mut n = 0u64;
                while let Some(r) = d.next(&p, &w, 1_000_000, || stop.load(SeqCst)) {
                    assert_eq!(r.seq.raw() as u64, n + 1);
                    d.complete(&p, &w, (r.nr & 0xffff) as i64 * 3 + r.args[5] as i64);
                    n += 1;
                }
                n
            })
        };
        let w = Yield(std::time::Instant::now());
        let g = GuestDoorbell::new(&p);
        for i in 0..3000u64 {
            let nr = if i % 3 == 0 {
                HC_FLAG_NOSPIN | (i & 0xff)
            } else {
                i & 0xff
            };
            let ret = g.call(&w, nr, [0, 0, 0, 0, 0, i]);
            assert_eq!(ret, (i & 0xff) as i64 * 3 + i as i64);
        }
        stop.store(true, SeqCst);
        HostDoorbell::wake_host(&p, &w);
        assert_eq!(host.join().unwrap(), 3000);
    }

    /// Sequence numbers wrap; a request left in flight (no answer) counts as handled.
    #[test]
    fn wraps_and_skips_unanswered_calls() {
        let p = page();
        p.hc_req.store(u32::MAX, SeqCst);
        p.hc_resp.store(u32::MAX, SeqCst);
        let w = Yield(std::time::Instant::now());
        let mut d = HostDoorbell::new();
        d.last = Seq(u32::MAX);
        let pending = GuestDoorbell::new(&p).ring(&w, 7, [1, 2, 3, 4, 5, 6]);
        assert_eq!(pending.seq(), Seq(0));
        let r = d.next(&p, &w, 1_000, || false).unwrap();
        assert_eq!((r.seq, r.nr, r.args), (Seq(0), 7, [1, 2, 3, 4, 5, 6]));
        // Not completed: the next ring is the next request.
        let _ = GuestDoorbell::new(&p).ring(&w, 8, [0; 6]);
        let r = d.next(&p, &w, 1_000, || false).unwrap();
        assert_eq!((r.seq, r.nr), (Seq(1), 8));
        d.complete(&p, &w, -2);
        assert_eq!(p.hc_resp.load(SeqCst), 1);
        assert_eq!(p.hc_ret.load(SeqCst) as i64, -2);
        // Nothing new: the host gives up when told to stop.
        assert_eq!(d.next(&p, &w, 1_000, || true), None);
    }
}
