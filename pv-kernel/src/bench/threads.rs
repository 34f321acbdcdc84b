//! Scheduler benchmarks: waking a halted vCPU, and switching between two kernel threads.

use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::clock::{elapsed_ps, rdtsc, spin_until};
use super::{collect, BenchError, Mode};
use crate::irq::IrqGuard;
use crate::sched::{self, thread::state, wait::WaitQueue, CPU_STATS};
use crate::{boot, smp, stub};

/// The vCPU `halt_wake` wakes.
const WAKEE_CPU: u32 = 1;
/// How long vCPU 1 must stay halted before a wake-up (the vCPU thread is then asleep in its
/// futex, not still on its way there).
const SETTLE_NS: u64 = 50_000;
/// Give up on a step that has not happened after this long.
const STEP_TIMEOUT_NS: u64 = 1_000_000_000;

/// State shared by the `halt_wake` waker and wakee.
struct WakeShared {
    /// Bumped by the waker for each wake-up.
    generation: AtomicU64,
    /// Set by the waker to end the wakee.
    stop: AtomicBool,
    /// TSC the wakee read when it ran again (0 = not yet).
    woke_tsc: AtomicU64,
    /// The wakee blocks here.
    queue: WaitQueue,
}

/// `halt_wake`: a thread pinned to vCPU 1 blocks on a wait queue, so vCPU 1 halts (futex
/// wait in the stub); once vCPU 1 has been halted for 50 µs the benchmark thread on vCPU 0
/// reads the TSC (t0) and wakes it (scheduler wake-up + `vcpu_kick` → `futex_wake`); the
/// woken thread reads the TSC (t1) as soon as its wait returns. Sample = t1 − t0.
pub(super) fn halt_wake(mode: Mode) -> Result<Vec<u64>, BenchError> {
    if boot::nr_vcpus() < 2 {
        return Err(BenchError::Unavailable("needs 2 vCPUs".into()));
    }
    if smp::online() < 2 {
        return Err(BenchError::Unavailable("vCPU 1 is not online".into()));
    }
    let sh = Arc::new(WakeShared {
        generation: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        woke_tsc: AtomicU64::new(0),
        queue: WaitQueue::new(),
    });
    let wakee = {
        let sh = sh.clone();
        sched::spawn("bench-wakee", Some(WAKEE_CPU), move || {
            let mut seen = 0;
            loop {
                sh.queue
                    .wait_until(|| sh.generation.load(Ordering::SeqCst) != seen);
                let t1 = rdtsc();
                seen = sh.generation.load(Ordering::SeqCst);
                if sh.stop.load(Ordering::SeqCst) {
                    return;
                }
                sh.woke_tsc.store(t1, Ordering::Release);
            }
        })
    }
    .map_err(|e| BenchError::Unavailable(format!("cannot spawn the wakee: {e:?}")))?;
    let target = wakee.thread().clone();
    let vcpu1 = stub::vcpu_shared(WAKEE_CPU);
    let asleep = || {
        target.state() == state::BLOCKED
            && !target.on_cpu.load(Ordering::SeqCst)
            && vcpu1.halted.load(Ordering::SeqCst) == 1
    };
    let res = collect(5, mode.pick(100, 1000), || {
        // vCPU 1 must be halted, and stay so for SETTLE_NS (retry if something woke it).
        let mut settled = false;
        for _ in 0..100 {
            if !spin_until(STEP_TIMEOUT_NS, asleep) {
                break;
            }
            if !spin_until(SETTLE_NS, || !asleep()) {
                settled = true;
                break;
            }
        }
        if !settled {
            return Err(BenchError::Failed("vCPU 1 did not stay halted".into()));
        }
        sh.woke_tsc.store(0, Ordering::SeqCst);
        let t0 = rdtsc();
        sh.generation.fetch_add(1, Ordering::SeqCst);
        sh.queue.wake_all();
        if !spin_until(STEP_TIMEOUT_NS, || sh.woke_tsc.load(Ordering::Acquire) != 0) {
            return Err(BenchError::Failed(
                "the thread on vCPU 1 was not woken".into(),
            ));
        }
        Ok(elapsed_ps(t0, sh.woke_tsc.load(Ordering::Acquire)))
    });
    sh.stop.store(true, Ordering::SeqCst);
    sh.generation.fetch_add(1, Ordering::SeqCst);
    sh.queue.wake_all();
    wakee.join();
    res
}

/// Yields timed together in one `thread_switch` sample.
const YIELDS: u64 = 100;

/// `thread_switch`: the benchmark thread and a partner, both pinned to vCPU 0, yield to each
/// other; each `yield_now` of the benchmark thread is two switches (there and back). A sample
/// times [`YIELDS`] yields and divides by the number of switches counted on the vCPU
/// (at least 2 × [`YIELDS`], else the partner did not run and the benchmark fails).
pub(super) fn thread_switch(mode: Mode) -> Result<Vec<u64>, BenchError> {
    let me = {
        let _irq = IrqGuard::new();
        stub::vcpu_id()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let partner = {
        let (stop, started) = (stop.clone(), started.clone());
        sched::spawn("bench-yield", Some(me), move || {
            started.store(true, Ordering::SeqCst);
            while !stop.load(Ordering::SeqCst) {
                sched::yield_now();
            }
        })
    }
    .map_err(|e| BenchError::Unavailable(format!("cannot spawn the partner: {e:?}")))?;
    let mut tries = 0;
    while !started.load(Ordering::SeqCst) && tries < 1000 {
        sched::yield_now();
        tries += 1;
    }
    let stats = &CPU_STATS[me as usize % CPU_STATS.len()];
    let res = if started.load(Ordering::SeqCst) {
        collect(10, mode.pick(200, 2000), || {
            let s0 = stats.switches.load(Ordering::Relaxed);
            let t0 = rdtsc();
            for _ in 0..YIELDS {
                sched::yield_now();
            }
            let t1 = rdtsc();
            let switches = stats.switches.load(Ordering::Relaxed) - s0;
            if switches < 2 * YIELDS {
                return Err(BenchError::Failed(format!(
                    "{switches} switches for {YIELDS} yields"
                )));
            }
            Ok(elapsed_ps(t0, t1) / switches)
        })
    } else {
        Err(BenchError::Failed("the partner thread never ran".into()))
    };
    stop.store(true, Ordering::SeqCst);
    partner.join();
    res
}
