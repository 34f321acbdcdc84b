//! Short parallel work started on another CPU than the caller's.
//!
//! A thread the host starts to work beside the caller (the kernel sandbox's spawn while the
//! caller builds the domain) is placed by the host scheduler. Some hosts keep a new or woken
//! thread on its waker's CPU while another CPU idles, to keep a virtual machine's vCPUs few
//! and busy (measured on a 2-vCPU cloud VM: two threads of 1 ms of work each took 2.07 ms
//! together, and 1.1 ms when the new one was started on the other CPU; the load balancer
//! moves it only after a few milliseconds), so a launch's parallel steps ran one after the
//! other. [`spawn_elsewhere`] starts the thread on another of the process's CPUs and lets it
//! go anywhere from its first instruction on: the scheduler stays free to move it, and what
//! it starts (a sandbox process) inherits the process's whole CPU set — which a sandbox also
//! takes back itself after its `clone` ([`home_mask`]), whoever spawned it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{Builder, JoinHandle};

use rustix::thread::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};

/// The CPUs this process may run on, as first asked (before any thread was placed).
fn home() -> Option<CpuSet> {
    static HOME: OnceLock<Option<CpuSet>> = OnceLock::new();
    *HOME.get_or_init(|| sched_getaffinity(None).ok())
}

/// Learns the process's CPUs ([`home`]) while no thread is placed yet: called at start-up.
pub(crate) fn remember_home() {
    let _ = home();
}

/// [`home`] as the kernel's mask, for a child to take in its first instructions after a
/// `clone` (where nothing may allocate).
pub(crate) fn home_mask() -> Option<libc::cpu_set_t> {
    home().map(|s| raw(&s))
}

/// The CPU after `here` (wrapping) in `allowed`, other than `here`; `None` if `allowed` has
/// no other.
fn other_cpu(allowed: &CpuSet, here: usize) -> Option<usize> {
    let n = CpuSet::MAX_CPU;
    (1..n).map(|k| (here + k) % n).find(|&c| allowed.is_set(c))
}

/// Spawns `f` on a thread of `builder`, first run on one of the process's CPUs other than
/// the caller's (where there is one), then free to run on any of them. As
/// [`Builder::spawn`] otherwise.
pub(crate) fn spawn_elsewhere<F, T>(builder: Builder, f: F) -> std::io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let Some(allowed) = home() else {
        return builder.spawn(f);
    };
    let Some(other) = other_cpu(&allowed, sched_getcpu()) else {
        return builder.spawn(f);
    };
    let placed = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&placed);
    let widen = allowed;
    let handle = builder.spawn(move || {
        // The caller places this thread right after spawning it: wait for that (a few
        // microseconds), or the widening below could come first and the placement stay.
        while !seen.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let _ = sched_setaffinity(None, &widen);
        f()
    });
    if let Ok(h) = &handle {
        let mut one = CpuSet::new();
        one.set(other);
        place(h, &one);
    }
    placed.store(true, Ordering::Release);
    handle
}

/// `cpus` as the kernel's mask (`CpuSet` is rustix's; `pthread_setaffinity_np` and a
/// cloned child's `sched_setaffinity` take libc's).
fn raw(cpus: &CpuSet) -> libc::cpu_set_t {
    // SAFETY: `cpu_set_t` is plain bits; an all-zero one is valid.
    let mut raw: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in (0..CpuSet::MAX_CPU).filter(|&c| cpus.is_set(c)) {
        // SAFETY: `c` < `CpuSet::MAX_CPU` = `CPU_SETSIZE`, within `raw`.
        unsafe { libc::CPU_SET(c, &mut raw) };
    }
    raw
}

/// Sets the affinity of thread `h` to `cpus` (best effort: a failure leaves it where the
/// scheduler put it).
fn place<T>(h: &JoinHandle<T>, cpus: &CpuSet) {
    use std::os::unix::thread::JoinHandleExt;
    let raw = raw(cpus);
    // SAFETY: `h` is a live thread (its handle is held, so it is not yet joined or
    // detached); `raw` is a valid mask of its stated size.
    let _ = unsafe {
        libc::pthread_setaffinity_np(
            h.as_pthread_t(),
            std::mem::size_of::<libc::cpu_set_t>(),
            &raw,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_other_cpu_is_the_next_allowed_one() {
        let mut s = CpuSet::new();
        s.set(0);
        assert_eq!(other_cpu(&s, 0), None);
        s.set(3);
        assert_eq!(other_cpu(&s, 0), Some(3));
        assert_eq!(other_cpu(&s, 3), Some(0));
        s.set(5);
        assert_eq!(other_cpu(&s, 3), Some(5));
        // The caller on a CPU outside the mask (it moved): any allowed one.
        assert_eq!(other_cpu(&s, 4), Some(5));
    }

    #[test]
    fn the_thread_runs_and_ends_with_the_callers_whole_mask() {
        let cpus =
            |s: CpuSet| -> Vec<usize> { (0..CpuSet::MAX_CPU).filter(|&c| s.is_set(c)).collect() };
        let before = cpus(sched_getaffinity(None).expect("own mask"));
        let h = spawn_elsewhere(Builder::new(), move || {
            cpus(sched_getaffinity(None).expect("mask"))
        })
        .expect("spawned");
        assert_eq!(h.join().expect("joined"), before);
    }
}
