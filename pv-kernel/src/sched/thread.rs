//! Kernel threads: stacks, creation, exit and join.

use alloc::alloc::{alloc, dealloc};
use alloc::boxed::Box;
use alloc::sync::Arc;
use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::wait::WaitQueue;

/// Size of a kernel thread's stack.
pub(crate) const STACK_SIZE: usize = 64 * 1024;

/// Thread states (changed only under the scheduler lock).
pub(crate) mod state {
    /// Running on some vCPU (it is that vCPU's `current`).
    pub(crate) const RUNNING: u8 = 0;
    /// Runnable: in the run queue, or about to be put there by the vCPU switching it out.
    pub(crate) const READY: u8 = 1;
    /// Waiting (wait queue, sleep list) — or, for an idle thread, not running.
    pub(crate) const BLOCKED: u8 = 2;
    /// Exited; never runs again.
    pub(crate) const DEAD: u8 = 3;
}

/// A kernel stack allocated from the heap (direct map, so it is always mapped).
pub(crate) struct Stack {
    base: *mut u8,
}

// SAFETY: the stack memory is owned by the `Stack` alone; the pointer is just its address.
unsafe impl Send for Stack {}
// SAFETY: `Stack` exposes no interior access through `&self` beyond its address.
unsafe impl Sync for Stack {}

impl Stack {
    const LAYOUT: Layout = match Layout::from_size_align(STACK_SIZE, 4096) {
        Ok(l) => l,
        Err(_) => panic!("bad stack layout"),
    };

    /// Allocates a stack and pre-fills the stub's shadow for it (so frames can be delivered
    /// on it without a shadow miss).
    pub(crate) fn new() -> Option<Self> {
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { alloc(Self::LAYOUT) };
        if base.is_null() {
            return None;
        }
        crate::stub::prefault(base as u64, STACK_SIZE as u64, true);
        Some(Self { base })
    }

    /// One past the highest byte (16-byte aligned).
    pub(crate) fn top(&self) -> u64 {
        self.base as u64 + STACK_SIZE as u64
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: `base` came from `alloc` with the same layout and is freed once.
        unsafe { dealloc(self.base, Self::LAYOUT) };
    }
}

/// The code a new thread runs.
type Entry = Box<dyn FnOnce() + Send + 'static>;

/// A kernel thread.
pub(crate) struct Thread {
    /// Name for diagnostics.
    pub(crate) name: &'static str,
    /// One of [`state`]; changed only under the scheduler lock.
    pub(crate) state: AtomicU8,
    /// True from the moment a vCPU picks the thread until that vCPU has finished switching
    /// away from it (its `ctx_rsp` is then valid). Changed only under the scheduler lock.
    pub(crate) on_cpu: AtomicBool,
    /// Saved `rsp` while switched out.
    pub(crate) ctx_rsp: UnsafeCell<u64>,
    /// vCPU the thread must run on, if pinned.
    pub(crate) affinity: Option<u32>,
    /// The per-vCPU idle thread (never in the run queue).
    pub(crate) is_idle: bool,
    /// vCPU it last ran on.
    pub(crate) last_cpu: AtomicU32,
    /// Set when the thread has exited.
    pub(crate) exited: AtomicBool,
    /// Joiners.
    pub(crate) exit_wq: WaitQueue,
    /// The guest user task this kernel thread runs, if any.
    pub(crate) task: spin::Once<Arc<crate::linux::task::Task>>,
    /// Guest time the thread has spent on a vCPU (up to its last switch out).
    pub(crate) cpu_ns: AtomicU64,
    /// Guest time at which it was last switched in.
    pub(crate) ran_since: AtomicU64,
    /// Where the FPU state its vCPU keeps goes when the thread is switched out (trusted
    /// in-process mode, `crate::kept_fp`).
    pub(crate) fp_park: spin::Mutex<crate::kept_fp::Parked>,
    /// Code to run, taken on first run.
    entry: spin::Mutex<Option<Entry>>,
    /// The stack (none for idle threads, which run on their vCPU's boot stack).
    _stack: Option<Stack>,
}

// SAFETY: `ctx_rsp` is written only by the vCPU switching the thread out, while it is
// `on_cpu`, and read only by the vCPU switching it in, after observing `on_cpu == false`
// under the scheduler lock (which orders the accesses). All other fields are Sync.
unsafe impl Sync for Thread {}
// SAFETY: see above; nothing in a thread is tied to the vCPU that created it.
unsafe impl Send for Thread {}

impl Thread {
    /// The idle thread of a vCPU: wraps the context currently running on it.
    pub(crate) fn new_idle(cpu: u32) -> Arc<Self> {
        Arc::new(Self {
            name: "idle",
            state: AtomicU8::new(state::RUNNING),
            on_cpu: AtomicBool::new(true),
            ctx_rsp: UnsafeCell::new(0),
            affinity: Some(cpu),
            is_idle: true,
            last_cpu: AtomicU32::new(cpu),
            exited: AtomicBool::new(false),
            exit_wq: WaitQueue::new(),
            task: spin::Once::new(),
            cpu_ns: AtomicU64::new(0),
            ran_since: AtomicU64::new(0),
            fp_park: spin::Mutex::new(crate::kept_fp::Parked::default()),
            entry: spin::Mutex::new(None),
            _stack: None,
        })
    }

    /// Current state.
    pub(crate) fn state(&self) -> u8 {
        self.state.load(Ordering::Relaxed)
    }

    /// Sets the state (scheduler lock held).
    pub(crate) fn set_state(&self, s: u8) {
        self.state.store(s, Ordering::Relaxed);
    }

    /// Guest time the thread has spent on a vCPU so far (CPU time), including its current
    /// run if it is on one.
    pub(crate) fn cpu_time_ns(&self) -> u64 {
        let done = self.cpu_ns.load(Ordering::Acquire);
        if self.on_cpu.load(Ordering::Acquire) {
            let since = self.ran_since.load(Ordering::Acquire);
            done + crate::time::now_ns().saturating_sub(since)
        } else {
            done
        }
    }
}

/// Why a thread could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpawnError {
    /// No memory for the stack.
    NoMemory,
    /// The requested vCPU does not exist.
    NoSuchCpu,
}

/// Owner's handle on a thread: join it.
pub(crate) struct JoinHandle {
    thread: Arc<Thread>,
}

impl JoinHandle {
    #[cfg(feature = "diagnostics")]
    /// Waits until the thread has exited.
    pub(crate) fn join(self) {
        let t = &self.thread;
        t.exit_wq.wait_until(|| t.exited.load(Ordering::SeqCst));
    }

    #[cfg(feature = "diagnostics")]
    /// True once the thread has exited.
    pub(crate) fn is_finished(&self) -> bool {
        self.thread.exited.load(Ordering::SeqCst)
    }

    /// The thread.
    pub(crate) fn thread(&self) -> &Arc<Thread> {
        &self.thread
    }
}

/// Creates a thread running `f`, optionally pinned to vCPU `affinity`, and makes it runnable.
pub(crate) fn spawn(
    name: &'static str,
    affinity: Option<u32>,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle, SpawnError> {
    spawn_published(name, affinity, f, |_| {})
}

/// Like [`spawn`], but first hands the new thread to `publish`, before it is runnable: what
/// `publish` records (a guest task's link to its kernel thread, through which signals and
/// exits wake it) is in place before the thread's first instruction. Recording it after
/// `spawn` returns leaves a window in which the thread runs, and may block, while wake-ups
/// aimed at it find no thread and are lost.
pub(crate) fn spawn_published(
    name: &'static str,
    affinity: Option<u32>,
    f: impl FnOnce() + Send + 'static,
    publish: impl FnOnce(&Arc<Thread>),
) -> Result<JoinHandle, SpawnError> {
    if affinity.is_some_and(|c| c >= crate::boot::nr_vcpus()) {
        return Err(SpawnError::NoSuchCpu);
    }
    let stack = Stack::new().ok_or(SpawnError::NoMemory)?;
    // SAFETY: the stack is fresh and owned by the new thread.
    let rsp = unsafe { super::switch::initial_stack(stack.top(), 0) };
    let thread = Arc::new(Thread {
        name,
        state: AtomicU8::new(state::BLOCKED),
        on_cpu: AtomicBool::new(false),
        ctx_rsp: UnsafeCell::new(rsp),
        affinity,
        is_idle: false,
        last_cpu: AtomicU32::new(u32::MAX),
        exited: AtomicBool::new(false),
        exit_wq: WaitQueue::new(),
        task: spin::Once::new(),
        cpu_ns: AtomicU64::new(0),
        ran_since: AtomicU64::new(0),
        fp_park: spin::Mutex::new(crate::kept_fp::Parked::default()),
        entry: spin::Mutex::new(Some(Box::new(f))),
        _stack: Some(stack),
    });
    publish(&thread);
    // Taking the scheduler lock to make it runnable orders `publish`'s stores before the
    // thread's first instruction.
    super::wake(&thread);
    Ok(JoinHandle { thread })
}

/// Rust entry of a new thread (called by the trampoline on its first run).
pub(super) extern "sysv64" fn thread_start(_arg: u64) -> ! {
    super::finish_switch();
    let entry = super::current().entry.lock().take();
    crate::stub::irq_enable();
    if let Some(f) = entry {
        f();
    }
    exit()
}

/// Ends the current thread.
pub(crate) fn exit() -> ! {
    let cur = super::current();
    cur.exited.store(true, Ordering::SeqCst);
    cur.exit_wq.wake_all();
    crate::stub::irq_disable();
    super::mark_dead(&cur);
    drop(cur);
    super::schedule();
    unreachable!("a dead thread was resumed");
}
