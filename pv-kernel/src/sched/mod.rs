//! The preemptive scheduler: one global run queue, per-vCPU idle threads, a sleep list.
//!
//! * All scheduler state sits behind one [`IrqLock`] ([`SCHED`]); thread state transitions
//!   happen only under it, always with events disabled on the acting vCPU.
//! * [`schedule`] is called with events disabled (from `yield_now`, blocking primitives, the
//!   event handler on a timer tick, the idle loop). The outgoing thread is parked in its vCPU's
//!   `prev` slot and is only re-queued by [`finish_switch`], which runs on the *incoming*
//!   context after the switch stored the outgoing `rsp`; a thread is thus never in the run
//!   queue before its context is saved, and no vCPU ever waits for another.
//! * A wake-up of a thread that is still on a vCPU (between deciding to block and having
//!   switched out) only marks it READY: `schedule` then keeps it running, or `finish_switch`
//!   queues it.
//! * Time slices are [`SLICE_NS`]; each vCPU's one-shot timer is armed to the earlier of its
//!   slice end (not when idle) and the earliest sleeper's deadline ([`rearm_timer`]).
//! * A sleeper whose deadline comes preempts the running thread at once (once that has run
//!   [`WAKEUP_PREEMPT_NS`]): timers fire on time on a busy vCPU, not at its slice end.
//! * The event handler never switches out a thread that is on its way into a block (marked
//!   BLOCKED by [`prepare_block`], not yet in its own `schedule`): callers may register
//!   their wake-up (a sleeper's deadline in [`timed_block`]) after `prepare_block` with
//!   events enabled, and a thread switched out before that would never be woken. The
//!   preemption waits for the thread's own switch a moment later.
//! * Making a thread runnable kicks an idle vCPU that may run it (`vcpu_kick`).

pub(crate) mod switch;
pub(crate) mod thread;
pub(crate) mod wait;

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pvmux_hypercalls::MAX_VCPUS;

use crate::irq::{IrqGuard, IrqLock};
use crate::stub;
use thread::{state, Thread};

pub(crate) use thread::{spawn, spawn_published};
#[cfg(feature = "diagnostics")]
pub(crate) use wait::Completion;

/// Length of a time slice.
pub(crate) const SLICE_NS: u64 = 10_000_000;
/// A thread woken by its deadline preempts the running thread once that has run this long
/// since it was switched in (so a stream of short sleeps cannot starve it).
const WAKEUP_PREEMPT_NS: u64 = 50_000;

const NR: usize = MAX_VCPUS as usize;

/// Scheduler state of one vCPU.
struct CpuSlot {
    /// The thread running on it.
    current: Option<Arc<Thread>>,
    /// Its idle thread.
    idle: Option<Arc<Thread>>,
    /// The thread being switched away from (see [`finish_switch`]).
    prev: Option<Arc<Thread>>,
    /// End of the current thread's slice (guest ns).
    slice_end: u64,
}

impl CpuSlot {
    const EMPTY: Self = Self {
        current: None,
        idle: None,
        prev: None,
        slice_end: 0,
    };
}

/// All scheduler state.
struct Sched {
    /// Runnable threads (never idle threads, never a thread whose context is not saved).
    rq: VecDeque<Arc<Thread>>,
    /// Sleeping threads by deadline, ascending.
    sleepers: Vec<(u64, Arc<Thread>)>,
    cpus: [CpuSlot; NR],
}

static SCHED: IrqLock<Sched> = IrqLock::new(Sched {
    rq: VecDeque::new(),
    sleepers: Vec::new(),
    cpus: [CpuSlot::EMPTY; NR],
});

/// Per-vCPU counters.
pub(crate) struct CpuStats {
    /// The vCPU runs the scheduler.
    pub(crate) online: AtomicBool,
    /// Events handled.
    pub(crate) events: AtomicU64,
    /// Threads preempted at the end of their slice.
    pub(crate) preemptions: AtomicU64,
    /// Context switches.
    pub(crate) switches: AtomicU64,
    /// Calls to `halt`.
    pub(crate) halts: AtomicU64,
    /// Kicks sent to other vCPUs.
    pub(crate) kicks_sent: AtomicU64,
}

impl CpuStats {
    /// All zero, offline.
    const fn new() -> Self {
        Self {
            online: AtomicBool::new(false),
            events: AtomicU64::new(0),
            preemptions: AtomicU64::new(0),
            switches: AtomicU64::new(0),
            halts: AtomicU64::new(0),
            kicks_sent: AtomicU64::new(0),
        }
    }
}

/// Per-vCPU counters, indexed by vCPU id.
pub(crate) static CPU_STATS: [CpuStats; NR] = [const { CpuStats::new() }; NR];

/// This vCPU's index (stable only while events are disabled).
fn cpu() -> usize {
    stub::vcpu_id() as usize % NR
}

impl Sched {
    /// True if `t` may run on `cpu`.
    fn eligible(t: &Thread, cpu: usize) -> bool {
        t.affinity.is_none_or(|a| a as usize == cpu)
    }

    /// Removes and returns the first runnable thread `cpu` may run.
    fn take_next(&mut self, cpu: usize) -> Option<Arc<Thread>> {
        // Parking for a snapshot: only the idle threads run (`crate::suspend`).
        if crate::suspend::suspending() {
            return None;
        }
        let i = self.rq.iter().position(|t| Self::eligible(t, cpu))?;
        self.rq.remove(i)
    }

    /// True if a thread in the run queue may run on `cpu`.
    fn has_work(&self, cpu: usize) -> bool {
        !crate::suspend::suspending() && self.rq.iter().any(|t| Self::eligible(t, cpu))
    }

    /// True if `cpu` is online and runs its idle thread.
    fn is_idle(&self, cpu: usize) -> bool {
        self.cpus[cpu].current.as_ref().is_some_and(|t| t.is_idle)
    }

    /// Queues `t` (context saved, state READY); returns an idle vCPU to kick, if one (other
    /// than `me`) may run it.
    fn enqueue(&mut self, t: Arc<Thread>, me: usize) -> Option<usize> {
        let affinity = t.affinity;
        self.rq.push_back(t);
        match affinity {
            Some(c) => (c as usize != me && self.is_idle(c as usize)).then_some(c as usize),
            None => (0..NR).find(|&c| c != me && self.is_idle(c)),
        }
    }

    /// Makes a BLOCKED thread runnable (see the module docs); returns a vCPU to kick.
    fn make_ready(&mut self, t: &Arc<Thread>, me: usize) -> Option<usize> {
        if t.state() != state::BLOCKED || t.is_idle {
            return None;
        }
        t.set_state(state::READY);
        if t.on_cpu.load(Ordering::Relaxed) {
            return None;
        }
        self.enqueue(t.clone(), me)
    }
}

/// Sends a kick to `cpu`.
fn kick(target: Option<usize>) {
    if let Some(c) = target {
        CPU_STATS[cpu()].kicks_sent.fetch_add(1, Ordering::Relaxed);
        stub::vcpu_kick(c as u32);
    }
}

/// Makes the context running on this vCPU its idle thread. Called once per vCPU at start.
pub(crate) fn init_cpu() {
    let mut s = SCHED.lock();
    let me = cpu();
    let idle = Thread::new_idle(me as u32);
    s.cpus[me].current = Some(idle.clone());
    s.cpus[me].idle = Some(idle);
    CPU_STATS[me].online.store(true, Ordering::Release);
}

/// The current thread.
pub(crate) fn current() -> Arc<Thread> {
    let s = SCHED.lock();
    match s.cpus[cpu()].current.clone() {
        Some(t) => t,
        None => panic!("no current thread on vCPU {}", cpu()),
    }
}

/// Marks the current thread as about to block (before re-checking its wake-up condition).
pub(crate) fn prepare_block(cur: &Arc<Thread>) {
    let _s = SCHED.lock();
    cur.set_state(state::BLOCKED);
}

/// Undoes [`prepare_block`] (the condition became true before blocking).
pub(crate) fn cancel_block(cur: &Arc<Thread>) {
    let _s = SCHED.lock();
    if matches!(cur.state(), state::BLOCKED | state::READY) {
        cur.set_state(state::RUNNING);
    }
}

/// Marks the current thread dead (it then calls [`schedule`] and never returns).
pub(crate) fn mark_dead(cur: &Arc<Thread>) {
    let _s = SCHED.lock();
    cur.set_state(state::DEAD);
}

/// Bit `c`: a thread made runnable on vCPU `c` should run before the current thread's slice
/// ends ([`request_resched`]).
static RESCHED: AtomicU64 = AtomicU64::new(0);

/// Asks this vCPU to switch threads at its running task's next safe point (its return to
/// user mode, where it holds no lock): for a kernel thread just made runnable that must not
/// wait for a busy thread's slice to end (the timer daemon when a timer is armed).
pub(crate) fn request_resched() {
    RESCHED.fetch_or(1 << (cpu() % 64), Ordering::Relaxed);
}

/// At a safe point of a task: gives the vCPU up if [`request_resched`] asked for it (one
/// load when nothing was asked).
pub(crate) fn resched_point() {
    if RESCHED.load(Ordering::Relaxed) == 0 {
        return;
    }
    let bit = 1 << (cpu() % 64);
    if RESCHED.fetch_and(!bit, Ordering::Relaxed) & bit != 0 {
        yield_now();
    }
}

/// Makes `t` runnable if it is blocked (a no-op otherwise: wake-ups may be spurious).
pub(crate) fn wake(t: &Arc<Thread>) {
    let target = {
        let mut s = SCHED.lock();
        let me = cpu();
        s.make_ready(t, me)
    };
    kick(target);
}

/// Gives up the vCPU to another runnable thread, if any.
pub(crate) fn yield_now() {
    let _irq = IrqGuard::new();
    schedule();
}

/// Picks the next thread for this vCPU and switches to it (see the module docs). Returns when
/// the current thread runs again (possibly on another vCPU), or at once if it keeps running.
pub(crate) fn schedule() {
    let _irq = IrqGuard::new();
    let mut s = SCHED.lock();
    let me = cpu();
    let now = crate::time::now_ns();
    let Some(cur) = s.cpus[me].current.clone() else {
        panic!("schedule on vCPU {me} before init_cpu");
    };
    let st = cur.state();
    let suspending = crate::suspend::suspending();
    if suspending && cur.is_idle {
        // Parking: the idle thread parks in its loop.
        return;
    }
    if st == state::READY {
        // Woken between deciding to block and getting here: keep running.
        cur.set_state(state::RUNNING);
        return;
    }
    let next = match s.take_next(me) {
        Some(n) => n,
        None if st == state::RUNNING && !suspending => {
            s.cpus[me].slice_end = now + SLICE_NS;
            return;
        }
        None => match s.cpus[me].idle.clone() {
            Some(idle) => idle,
            None => panic!("vCPU {me} has no idle thread"),
        },
    };
    if st == state::RUNNING {
        cur.set_state(if cur.is_idle {
            state::BLOCKED
        } else {
            state::READY
        });
    }
    next.set_state(state::RUNNING);
    // CPU time: the outgoing thread's run ends, the incoming one's starts.
    let ran = now.saturating_sub(cur.ran_since.load(Ordering::Relaxed));
    cur.cpu_ns.fetch_add(ran, Ordering::AcqRel);
    next.ran_since.store(now, Ordering::Release);
    next.on_cpu.store(true, Ordering::Relaxed);
    next.last_cpu.store(me as u32, Ordering::Relaxed);
    // SAFETY: `next` was in the run queue (or is this vCPU's idle thread, switched out
    // here earlier), so its `on_cpu` was false: the vCPU that switched it out has stored its
    // `rsp` and released the lock since, which orders that store before this read.
    let next_rsp = unsafe { *next.ctx_rsp.get() };
    let prev_rsp = cur.ctx_rsp.get();
    let keeper = crate::kept_fp::any(me as u32).then(|| cur.clone());
    s.cpus[me].slice_end = now + SLICE_NS;
    s.cpus[me].current = Some(next);
    s.cpus[me].prev = Some(cur);
    drop(s);
    // An FPU state this vCPU keeps for the outgoing thread (trusted in-process mode) goes
    // with the thread before anything else can run user code here.
    if let Some(out) = keeper {
        crate::kept_fp::park(me as u32, &out.fp_park);
    }
    CPU_STATS[me].switches.fetch_add(1, Ordering::Relaxed);
    // SAFETY: events are disabled; `prev_rsp` points into the outgoing thread, kept alive by
    // the `prev` slot until `finish_switch` runs on the incoming context, i.e. after the
    // switch stored it; `next_rsp` is `next`'s saved context on its own live stack, and
    // `on_cpu` (set above under the lock) keeps every other vCPU away from it.
    unsafe { switch::switch_context(prev_rsp, next_rsp) };
    finish_switch();
}

/// Completes a switch on the incoming context: releases the outgoing thread (re-queueing it if
/// it is runnable) and re-arms this vCPU's timer.
pub(crate) fn finish_switch() {
    let (target, released) = {
        let mut s = SCHED.lock();
        let me = cpu();
        match s.cpus[me].prev.take() {
            Some(p) => {
                p.on_cpu.store(false, Ordering::Relaxed);
                if p.state() == state::READY && !p.is_idle {
                    (s.enqueue(p, me), None)
                } else {
                    (None, Some(p))
                }
            }
            None => (None, None),
        }
    };
    // A dead thread's stack is freed here (outside the scheduler lock) if no one holds it.
    drop(released);
    kick(target);
    rearm_timer();
}

/// Arms this vCPU's timer to the earlier of the slice end (unless idle) and the earliest
/// sleeper's deadline; disarms it if neither exists.
pub(crate) fn rearm_timer() {
    let _irq = IrqGuard::new();
    let deadline = {
        let s = SCHED.lock();
        let me = cpu();
        let mut dl = if s.is_idle(me) {
            u64::MAX
        } else {
            s.cpus[me].slice_end
        };
        if let Some(&(d, _)) = s.sleepers.first() {
            dl = dl.min(d);
        }
        // A benchmark's deadline (`interrupt.timer`), if one is armed on this vCPU.
        #[cfg(feature = "diagnostics")]
        let dl = dl.min(crate::bench::timer_deadline(me));
        dl
    };
    stub::timer_arm(if deadline == u64::MAX {
        0
    } else {
        deadline.max(1)
    });
}

/// Handles an event delivered with `bits` (the pending bits the stub took; see the ABI).
///
/// The guest also takes whatever is pending now (`pending.swap(0)`): the handling below is
/// idempotent (it looks at the clock and the run queue, not at counts), so taking bits early
/// merges events and never loses one, and `halt` cannot keep returning on a stale bit.
pub(crate) fn handle_event(bits: u32) {
    // TIMER, KICK and HOST all lead to the same checks below.
    let taken = bits | stub::vcpu_self().pending.swap(0, Ordering::AcqRel);
    if taken & pvmux_hypercalls::vcpu::pending::INPUT != 0 {
        // Console input arrived: wake terminal readers and pollers.
        crate::linux::files::console_input();
    }
    if taken & pvmux_hypercalls::vcpu::pending::NET != 0 {
        // A host socket may be ready, or a published connection arrived.
        crate::linux::net::inet::host::event();
    }
    if taken & pvmux_hypercalls::vcpu::pending::CHANNEL != 0 {
        // A channel's peer moved data, made room or closed.
        crate::linux::files::channel::event();
    }
    if taken & pvmux_hypercalls::vcpu::pending::EXEC != 0 {
        // An exec request, exec input, or room for exec output.
        crate::linux::exec_session::event();
    }
    if taken & pvmux_hypercalls::vcpu::pending::SIGNAL != 0 {
        // The host sent init signals (`pvmux kill` of a container).
        crate::linux::signal::from_host(crate::hcall::signal_take());
    }
    if taken & pvmux_hypercalls::vcpu::pending::CONSOLE_SIZE != 0 {
        // The host resized the console (an OCI container's terminal).
        if let Some((rows, cols)) = crate::hcall::console_winsize() {
            crate::linux::files::console_resized(rows, cols);
        }
    }
    if taken & pvmux_hypercalls::vcpu::pending::RESOURCES != 0 {
        // The host set a task limit or asks for the guest's figures (`pvmux update`,
        // `pvmux events`).
        crate::linux::resources::host_request();
    }
    if taken & pvmux_hypercalls::vcpu::pending::DUMP != 0 {
        // The host asks what the guest's tasks are doing (`pvmux run` got SIGQUIT).
        crate::dump::write();
    }
    if taken & pvmux_hypercalls::vcpu::pending::SNAPSHOT != 0 {
        // The host asks for a snapshot: every vCPU parks (`crate::suspend`).
        crate::suspend::host_request();
    }
    if taken & pvmux_hypercalls::vcpu::pending::DISK != 0 {
        // A disk was given or is asked back (`pvmux disk move`): `diskd` answers.
        crate::fs::disk::event();
    }
    if taken & pvmux_hypercalls::vcpu::pending::HANDOVER != 0 {
        // The host asks for a hand-over record (`pvmux upgrade`).
        crate::linux::handover::event();
    }
    if taken & pvmux_hypercalls::vcpu::pending::BALLOON != 0 {
        // The host changed the balloon target (`pvmux mem`).
        crate::linux::balloon::host_request();
    }
    let now = crate::time::now_ns();
    let mut kicks: u64 = 0;
    let resched = {
        let mut s = SCHED.lock();
        let me = cpu();
        CPU_STATS[me].events.fetch_add(1, Ordering::Relaxed);
        let mut woke = false;
        while let Some(&(deadline, _)) = s.sleepers.first() {
            if deadline > now {
                break;
            }
            let (_, t) = s.sleepers.remove(0);
            woke = true;
            if let Some(c) = s.make_ready(&t, me) {
                kicks |= 1 << c;
            }
        }
        let ran = s.cpus[me].current.as_ref().map_or(0, |c| {
            now.saturating_sub(c.ran_since.load(Ordering::Relaxed))
        });
        // A thread on its way into a block (between `prepare_block` and its own `schedule`)
        // may not have registered its wake-up yet (a sleeper's deadline, say, which
        // `timed_block` inserts): switched out here, it would stay blocked with nothing to
        // wake it. It switches itself out in a moment; the preemption waits until then.
        let blocking = s.cpus[me]
            .current
            .as_ref()
            .is_some_and(|c| c.state() == state::BLOCKED && !c.is_idle);
        if blocking {
            false
        } else if s.is_idle(me) {
            s.has_work(me)
        } else if crate::suspend::suspending() {
            // Parking for a snapshot: switch to the idle thread now.
            true
        } else if now >= s.cpus[me].slice_end {
            if s.has_work(me) {
                CPU_STATS[me].preemptions.fetch_add(1, Ordering::Relaxed);
                true
            } else {
                s.cpus[me].slice_end = now + SLICE_NS;
                false
            }
        } else if woke && ran >= WAKEUP_PREEMPT_NS && s.has_work(me) {
            // A sleeper's deadline came (the timer daemon firing `alarm`/`setitimer`/POSIX
            // timers, a `nanosleep` ending): it runs now rather than at the end of a busy
            // thread's slice, as Linux's wake-up preemption does.
            CPU_STATS[me].preemptions.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    };
    for c in 0..NR {
        if kicks & (1 << c) != 0 {
            kick(Some(c));
        }
    }
    if resched {
        schedule();
    }
    rearm_timer();
}

/// A thread as the host's dump shows it: its name, its guest task's tid if it runs one, its
/// state (`running`, `ready`, `blocked`, `dead`) and the vCPU it is on or last ran on.
pub(crate) fn thread_label(t: &Thread) -> String {
    let tid = t
        .task
        .get()
        .map_or(String::new(), |k| alloc::format!(" tid {}", k.tid));
    let state = match t.state() {
        state::RUNNING => "running",
        state::READY => "ready",
        state::BLOCKED => "blocked",
        _ => "dead",
    };
    let on = if t.on_cpu.load(Ordering::Relaxed) {
        "on"
    } else {
        "last on"
    };
    alloc::format!(
        "{}{tid} {state} ({on} vCPU {})",
        t.name,
        t.last_cpu.load(Ordering::Relaxed)
    )
}

/// Guest time `at` relative to `now`, for the dump ("in 3.250 ms", "12.000 ms ago").
fn relative(at: u64, now: u64) -> String {
    if at >= now {
        alloc::format!("in {:.3} ms", (at - now) as f64 / 1e6)
    } else {
        alloc::format!("{:.3} ms ago", (now - at) as f64 / 1e6)
    }
}

/// The scheduler's state as lines for the host's dump request (`pending::DUMP`): each online
/// vCPU's current thread, slice end and counters, the run queue, and the timed sleepers
/// with their deadlines (guest time `now`).
pub(crate) fn dump_lines(now: u64, out: &mut Vec<String>) {
    let s = SCHED.lock();
    for (c, slot) in s.cpus.iter().enumerate() {
        let st = &CPU_STATS[c];
        if !st.online.load(Ordering::Relaxed) {
            continue;
        }
        let current = slot
            .current
            .as_ref()
            .map_or("none".into(), |t| thread_label(t));
        let slice = if slot.current.as_ref().is_some_and(|t| t.is_idle) {
            String::from("idle")
        } else {
            alloc::format!("slice ends {}", relative(slot.slice_end, now))
        };
        out.push(alloc::format!(
            "vCPU {c}: {current}; {slice}; events {} switches {} halts {} kicks sent {}",
            st.events.load(Ordering::Relaxed),
            st.switches.load(Ordering::Relaxed),
            st.halts.load(Ordering::Relaxed),
            st.kicks_sent.load(Ordering::Relaxed)
        ));
    }
    out.push(alloc::format!("run queue: {} thread(s)", s.rq.len()));
    for t in &s.rq {
        out.push(alloc::format!("  {}", thread_label(t)));
    }
    out.push(alloc::format!("timed sleepers: {}", s.sleepers.len()));
    for (deadline, t) in &s.sleepers {
        out.push(alloc::format!(
            "  {} due {}",
            thread_label(t),
            relative(*deadline, now)
        ));
    }
}

/// Sleeps until guest time `deadline` (ns).
pub(crate) fn sleep_until(deadline: u64) {
    loop {
        let _irq = IrqGuard::new();
        if crate::time::now_ns() >= deadline {
            return;
        }
        let cur = current();
        {
            let mut s = SCHED.lock();
            cur.set_state(state::BLOCKED);
            let pos = s.sleepers.partition_point(|&(d, _)| d <= deadline);
            s.sleepers.insert(pos, (deadline, cur.clone()));
        }
        schedule();
        // Drop our entry if the wake-up came from elsewhere (spurious).
        SCHED.lock().sleepers.retain(|(_, t)| !Arc::ptr_eq(t, &cur));
    }
}

/// Blocks the current thread, which the caller marked with [`prepare_block`] (after
/// registering where it can be woken and re-checking its condition), until a wake-up or guest
/// time `deadline` (`u64::MAX`: no deadline). Callers loop over their own condition: wake-ups
/// may be spurious.
pub(crate) fn timed_block(deadline: u64) {
    let _irq = IrqGuard::new();
    let cur = current();
    if deadline != u64::MAX {
        let mut s = SCHED.lock();
        if crate::time::now_ns() >= deadline {
            if matches!(cur.state(), state::BLOCKED | state::READY) {
                cur.set_state(state::RUNNING);
            }
            return;
        }
        let pos = s.sleepers.partition_point(|&(d, _)| d <= deadline);
        s.sleepers.insert(pos, (deadline, cur.clone()));
    }
    schedule();
    if deadline != u64::MAX {
        SCHED.lock().sleepers.retain(|(_, t)| !Arc::ptr_eq(t, &cur));
    }
}

/// The idle loop of a vCPU: run whatever is runnable, else halt until an event.
pub(crate) fn idle_loop() -> ! {
    loop {
        stub::irq_disable();
        if crate::suspend::suspending() {
            crate::suspend::park();
            stub::irq_enable();
            continue;
        }
        let work = {
            let s = SCHED.lock();
            s.has_work(cpu())
        };
        if work {
            schedule();
        } else {
            rearm_timer();
            CPU_STATS[cpu()].halts.fetch_add(1, Ordering::Relaxed);
            stub::halt();
        }
        // Delivers whatever woke us (the event handler may switch to a woken thread).
        stub::irq_enable();
    }
}

/// True if a runnable thread waits for this vCPU (a thread polling for a short while stops
/// then and sleeps instead).
pub(crate) fn others_runnable() -> bool {
    // No `IrqGuard` local here: the lock's guard restores the event flag itself, and a
    // local would be dropped *before* the tail expression's temporary guard (edition 2021),
    // turning events back on while the lock is held; an event taken right then spins on
    // this lock forever (then so does every other vCPU).
    SCHED.lock().has_work(cpu())
}

#[cfg(feature = "diagnostics")]
/// True if vCPU `cpu` currently runs its idle thread.
pub(crate) fn cpu_is_idle(cpu: u32) -> bool {
    SCHED.lock().is_idle(cpu as usize % NR)
}

/// Name of the thread running on this vCPU, without waiting for the scheduler lock (for
/// diagnostics from the trap path, which may interrupt a lock holder).
pub(crate) fn current_name() -> &'static str {
    match SCHED.try_lock() {
        Some(s) => s.cpus[cpu()].current.as_ref().map_or("<none>", |t| t.name),
        None => "<scheduler locked>",
    }
}
