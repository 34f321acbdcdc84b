//! Processes and threads (tasks) of guest user programs, and the loop that runs a task's user
//! code in its address space's user sandbox.
//!
//! Every guest thread is a kernel thread running [`task_main`]: it hands its vCPU to the user
//! sandbox ([`Space::run`]), and handles what comes back (system calls, faults, time-slice
//! ends) in kernel context, where it may block like any kernel thread.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};

use pvmux_hypercalls::frame::RFLAGS_USER_MASK;

use super::cputime::{ProcessTimes, TaskTimes};
use super::files::{FdTable, FsContext};
use super::rlimit::{self, Rlimits};
use super::signal::{SigAction, SigInfo, SigSet, SigState};
use super::space::{Exit, Space, UserState};
use super::{exec, Errno, SysResult};
use crate::irq::IrqLock;
use crate::sched::wait::{Completion, WaitQueue};

/// Time slice handed to user code before the kernel gets its vCPU back.
pub(crate) const SLICE_NS: u64 = crate::sched::SLICE_NS;

/// `clone` flags.
#[allow(dead_code)]
pub(crate) mod clone_flags {
    pub(crate) const CSIGNAL: u64 = 0xff;
    pub(crate) const CLONE_VM: u64 = 0x100;
    pub(crate) const CLONE_FS: u64 = 0x200;
    pub(crate) const CLONE_FILES: u64 = 0x400;
    pub(crate) const CLONE_SIGHAND: u64 = 0x800;
    pub(crate) const CLONE_VFORK: u64 = 0x4000;
    pub(crate) const CLONE_PARENT: u64 = 0x8000;
    pub(crate) const CLONE_THREAD: u64 = 0x10000;
    pub(crate) const CLONE_SETTLS: u64 = 0x80000;
    pub(crate) const CLONE_PARENT_SETTID: u64 = 0x100000;
    pub(crate) const CLONE_CHILD_CLEARTID: u64 = 0x200000;
    pub(crate) const CLONE_CHILD_SETTID: u64 = 0x1000000;
}
use clone_flags::*;

/// Parent/child bookkeeping of a process (under its lock).
pub(crate) struct Relations {
    /// Parent pid (0 for init).
    pub(crate) ppid: i32,
    /// Children, live or zombie.
    pub(crate) children: Vec<Arc<Process>>,
}

/// A guest process: an address space, file descriptors, a working directory, signal
/// actions, and its threads.
pub(crate) struct Process {
    /// Process id (= thread-group id).
    pub(crate) pid: i32,
    /// Process group id.
    pgid_: AtomicI32,
    /// Session id.
    sid_: AtomicI32,
    /// File descriptors.
    pub(crate) files: IrqLock<FdTable>,
    /// Working directory.
    pub(crate) fs: IrqLock<FsContext>,
    /// The address space (None once the process has exited).
    pub(crate) space: IrqLock<Option<Arc<Space>>>,
    /// Bumped (under `space`'s lock) whenever `space` changes (`execve`, exit): a thread
    /// keeps its space between system calls while this stays the same.
    space_gen: AtomicU64,
    /// Parent and children.
    pub(crate) rel: IrqLock<Relations>,
    /// `rel.ppid`, readable without the lock (`getppid`); written with it.
    ppid_now: AtomicI32,
    /// Live threads.
    pub(crate) threads: IrqLock<Vec<Arc<Task>>>,
    /// Signal actions.
    pub(crate) sigactions: IrqLock<[SigAction; 64]>,
    /// Set once the process is exiting: its wait status (exit_group, fatal signal, exec).
    pub(crate) exit_status: IrqLock<Option<i32>>,
    /// True once every thread has exited (a zombie until reaped).
    pub(crate) zombie: AtomicBool,
    /// Signal sent to the parent on exit (usually SIGCHLD; 0 = none).
    pub(crate) exit_signal: u32,
    /// Woken when a child changes state (wait4 sleeps here).
    pub(crate) child_wq: WaitQueue,
    /// Signalled when this process (a vfork child) execs or exits.
    pub(crate) vfork_done: Completion,
    /// Created by `vfork` (`CLONE_VFORK`): its parent is blocked until [`Self::vfork_done`].
    pub(crate) vforked: AtomicBool,
    /// File-mode creation mask.
    pub(crate) umask: AtomicU32,
    /// Its execution domain and flags (`personality`: inherited by `fork`, kept by
    /// `execve`).
    pub(crate) personality: AtomicU32,
    /// Path of the running program (what `/proc/self/exe` names).
    pub(crate) exe: IrqLock<Vec<u8>>,
    /// CPU time of its ended threads and reaped children, its largest resident set.
    pub(crate) times: ProcessTimes,
    /// Resource limits (inherited by `fork`, kept by `execve`).
    pub(crate) rlimits: IrqLock<Rlimits>,
    /// User and group ids (inherited by `fork`, kept by `execve`).
    pub(crate) creds: IrqLock<super::creds::Creds>,
    /// What `/proc/PID/{cmdline,environ,comm}` show: set by `execve`, copied by `fork`.
    pub(crate) args: IrqLock<ExecArgs>,
    /// When it was created (`crate::time::now_ns`), for `/proc/PID/stat`.
    pub(crate) start_ns: u64,
    /// Interval and POSIX timers (not inherited by `fork`).
    pub(crate) timers: super::timers::ProcessTimers,
    /// Signals sent to the process (`kill`, `sigqueue`, timers): pending process-wide, taken
    /// by whichever thread does not block them (Linux's `shared_pending`; not inherited by
    /// `fork`, kept across `execve`).
    pub(crate) shared_sig: super::signal::Pending,
    /// The parent-death signal, no-new-privs and the child-subreaper flag (`prctl`).
    pub(crate) prctl: super::prctl::ProcessPrctl,
}

/// The arguments and environment a process's program was started with (NUL-terminated
/// strings, each at most [`ExecArgs::MAX`] bytes in all), and its command name.
#[derive(Clone, Default)]
pub(crate) struct ExecArgs {
    /// `argv`, each string NUL-terminated.
    pub(crate) cmdline: Vec<u8>,
    /// `envp`, each string NUL-terminated.
    pub(crate) environ: Vec<u8>,
    /// The command name (`comm`): the last component of the executed path, 15 bytes.
    pub(crate) comm: Vec<u8>,
}

impl ExecArgs {
    /// Most bytes kept of each of `cmdline` and `environ`.
    pub(crate) const MAX: usize = 64 << 10;

    /// From `execve`'s path, arguments and environment.
    pub(crate) fn new(path: &[u8], argv: &[Vec<u8>], envp: &[Vec<u8>]) -> Self {
        let join = |v: &[Vec<u8>]| {
            let mut out = Vec::new();
            for a in v {
                if out.len() + a.len() + 1 > Self::MAX {
                    break;
                }
                out.extend_from_slice(a);
                out.push(0);
            }
            out
        };
        let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        Self {
            cmdline: join(argv),
            environ: join(envp),
            comm: base[..base.len().min(15)].to_vec(),
        }
    }
}

impl Process {
    /// A `vfork` child that has not exec'd or exited yet: its parent is blocked in `vfork`
    /// until it does.
    pub(crate) fn vfork_pending(&self) -> bool {
        self.vforked.load(Ordering::Acquire) && !self.vfork_done.is_done()
    }

    /// Process group id.
    pub(crate) fn pgid(&self) -> i32 {
        self.pgid_.load(Ordering::Relaxed)
    }

    /// Session id.
    pub(crate) fn sid(&self) -> i32 {
        self.sid_.load(Ordering::Relaxed)
    }

    /// Parent pid.
    pub(crate) fn ppid(&self) -> i32 {
        self.ppid_now.load(Ordering::Acquire)
    }

    /// Makes `ppid` the parent (`rel.ppid` and its lock-free copy).
    fn set_ppid(&self, ppid: i32) {
        let mut r = self.rel.lock();
        r.ppid = ppid;
        self.ppid_now.store(ppid, Ordering::Release);
    }

    /// The address space and its generation ([`Self::space_changed`] tells when it is
    /// stale).
    fn space_with_gen(&self) -> (u64, Option<Arc<Space>>) {
        let s = self.space.lock();
        (self.space_gen.load(Ordering::Acquire), s.clone())
    }

    /// Whether the space changed since generation `gen`.
    fn space_changed(&self, gen: u64) -> bool {
        self.space_gen.load(Ordering::Acquire) != gen
    }

    /// The address space.
    pub(crate) fn space(&self) -> Option<Arc<Space>> {
        self.space.lock().clone()
    }
}

/// A guest thread.
pub(crate) struct Task {
    /// Thread id.
    pub(crate) tid: i32,
    /// Its process.
    pub(crate) process: Arc<Process>,
    /// Signal state (pending, blocked, alternate stack).
    pub(crate) sig: SigState,
    /// `CLONE_CHILD_CLEARTID` / `set_tid_address` word.
    pub(crate) clear_child_tid: AtomicU64,
    /// `set_robust_list`: the head of the thread's list of robust futexes it holds (0:
    /// none), released when the thread ends (`futex/robust.rs`).
    pub(crate) robust_list: AtomicU64,
    /// Its nice value (`setpriority`; `sched_params.rs`).
    pub(crate) nice: AtomicI32,
    /// Its CPU affinity mask, a bit per vCPU (`sched_setaffinity`; all set: any).
    pub(crate) affinity: AtomicU64,
    /// Its scheduling policy, with `SCHED_RESET_ON_FORK` if set (`sched_setscheduler`;
    /// `sched_params::policy`).
    pub(crate) policy: AtomicU32,
    /// Its I/O priority (`ioprio_set`; `io_priority.rs`; 0: none given).
    pub(crate) ioprio: AtomicU32,
    /// The kernel thread running it (to wake it for signals). Weak: the thread owns the task
    /// (`Thread::task`), not the other way round, so an exited thread and its task are freed.
    pub(crate) thread: spin::Once<Weak<crate::sched::thread::Thread>>,
    /// Set to make the task exit at its next chance (exit_group, exec, fatal signal).
    pub(crate) must_exit: AtomicBool,
    /// Its user CPU time.
    pub(crate) times: TaskTimes,
    /// What `restart_syscall` continues: a sleep a hand-over freeze stopped
    /// (`timers::sleep::RestartBlock`).
    pub(crate) restart_block: IrqLock<Option<super::timers::sleep::RestartBlock>>,
    /// A restart block waits for the call's re-issue (checked at every system call).
    pub(crate) restart_armed: AtomicBool,
    /// Its name as `PR_SET_NAME` set it (at most 15 bytes); `None`: its process's command
    /// name (`super::prctl::thread_name`). Inherited by the threads and `fork` children it
    /// creates, cleared by `execve`.
    pub(crate) name: IrqLock<Option<Vec<u8>>>,
    /// The system call the task is in, as its number + 1 (0: none): what the host's dump
    /// request says of a blocked thread (`dump_lines`).
    in_call: AtomicU64,
    /// That call's first argument.
    in_call_arg0: AtomicU64,
    /// Whether the task still counts in [`LIVE_TASKS`]: from its creation until it exits
    /// ([`Task::count_out`]), or until it is freed if it never ran.
    counted: AtomicBool,
}

impl Task {
    /// Takes the task out of the task count, once. A thread that exits leaves the count at
    /// once, as Linux's `release_task` does, not when its kernel thread is freed later: a
    /// parent that has waited for a child may at once start as many threads as the child had.
    fn count_out(&self) {
        if self.counted.swap(false, Ordering::AcqRel) {
            LIVE_TASKS.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// True if an unblocked signal is pending (or the task must exit, or a hand-over record
    /// is being written: blocking calls then return `EINTR` and are restarted at their
    /// boundary, see `handover::interrupted_by_freeze`).
    pub(crate) fn signal_pending(&self) -> bool {
        self.must_exit.load(Ordering::Acquire)
            || super::handover::freezing()
            || self.sig.has_deliverable()
            || !(self.process.shared_sig.pending() & !self.sig.blocked()).is_empty()
    }

    /// Marks `info`'s signal pending and wakes the task if it is blocked. A signal whose
    /// action is to ignore it (SIG_IGN, or the default for SIGCHLD, SIGWINCH, SIGURG, SIGCONT
    /// ...) is discarded right away unless blocked, as Linux does: it must not interrupt a
    /// blocking system call with `EINTR`. `EAGAIN` if the signal queue is full.
    pub(crate) fn send_signal(&self, info: SigInfo) -> Result<(), Errno> {
        let signo = info.signo;
        if !(1..=64).contains(&signo) {
            return Ok(());
        }
        let blocked = self.sig.blocked().contains(signo);
        if !blocked && super::signal::is_ignored(&self.process, signo) {
            return Ok(());
        }
        let limit = super::rlimit::of(&self.process, super::rlimit::res::SIGPENDING);
        self.sig
            .raise_limited(info, usize::try_from(limit).unwrap_or(usize::MAX))?;
        self.kick();
        Ok(())
    }

    /// Wakes the task's kernel thread (it re-checks why it sleeps). Called after storing the
    /// reason (a pending signal, `must_exit`).
    pub(crate) fn kick(&self) {
        // The reason's store must be visible before the link is read (x86 lets a load pass
        // earlier stores): a thread whose link is published after this read starts after
        // that, through the scheduler lock, and then reads the reason — one side sees the
        // other.
        core::sync::atomic::fence(Ordering::SeqCst);
        if let Some(t) = self.thread.get().and_then(Weak::upgrade) {
            crate::sched::wake(&t);
        }
    }
}

/// Live tasks (guest threads), for the task limit.
static LIVE_TASKS: AtomicU32 = AtomicU32::new(0);

/// The task limit the host set while the guest runs (`TaskLimitTake`; 0: none, so the boot
/// arguments' applies).
static HOST_TASK_LIMIT: AtomicU32 = AtomicU32::new(0);

/// Sets the task limit the host gave (`pvmux update --pids-limit`): it replaces the boot
/// arguments' from now on; tasks beyond it that already run stay (as Linux's `pids.max`).
pub(crate) fn set_host_task_limit(raw: u32) {
    if raw != 0 {
        HOST_TASK_LIMIT.store(raw, Ordering::Relaxed);
    }
}

/// Live tasks and processes.
pub(crate) fn counts() -> (u32, u32) {
    let processes = PROCS.lock().len() as u32;
    (LIVE_TASKS.load(Ordering::Relaxed), processes)
}

/// The most guest threads at once: each costs a kernel stack and bookkeeping from the kernel
/// heap, so the limit follows the heap size (one task per 128 KiB of heap); `fork`/`clone`
/// beyond it fail with `EAGAIN` (like `RLIMIT_NPROC`) instead of exhausting the heap.
pub(crate) fn max_tasks() -> u32 {
    let (_, heap) = crate::mm::heap::stats();
    let ceiling = ((heap / (128 << 10)) as u32).clamp(16, 4096);
    // The host's task limit, else the boot arguments' (an OCI container's `pids.limit`),
    // lowers it.
    let limit = match HOST_TASK_LIMIT.load(Ordering::Relaxed) {
        0 => crate::boot::args().task_limit(),
        pvmux_hypercalls::resources::TASK_LIMIT_NONE => None,
        n => Some(n),
    };
    limit.map_or(ceiling, |n| n.min(ceiling))
}

impl Drop for Task {
    fn drop(&mut self) {
        // A task that never ran (a `clone` that failed after creating it).
        self.count_out();
    }
}

/// Every live process, by pid.
static PROCS: IrqLock<BTreeMap<i32, Arc<Process>>> = IrqLock::new(BTreeMap::new());
/// Next id for processes and threads.
static NEXT_ID: AtomicI32 = AtomicI32::new(1);
/// Wait status of init (pid 1) once it has ended.
static INIT_STATUS: IrqLock<Option<i32>> = IrqLock::new(None);
/// Woken when init ends.
static INIT_WQ: WaitQueue = WaitQueue::new();

/// The task the current kernel thread runs, if any.
pub(crate) fn try_current_task() -> Option<Arc<Task>> {
    crate::sched::current().task.get().cloned()
}

/// The current task (panics in a kernel thread that runs no task).
pub(crate) fn current_task() -> Arc<Task> {
    try_current_task().expect("no current task")
}

/// The current task's process.
pub(crate) fn current_process() -> Arc<Process> {
    current_task().process.clone()
}

/// Looks a process up by pid.
pub(crate) fn find_process(pid: i32) -> Option<Arc<Process>> {
    PROCS.lock().get(&pid).cloned()
}

/// All live processes (snapshot).
pub(crate) fn all_processes() -> Vec<Arc<Process>> {
    PROCS.lock().values().cloned().collect()
}

/// Every process and its threads as lines for the host's dump request (`pending::DUMP`):
/// pid, name, and each thread's tid, kernel-thread state and the system call it is in
/// (with its first argument: the descriptor of a `read`, the address of a futex).
pub(crate) fn dump_lines(out: &mut Vec<String>) {
    let procs = all_processes();
    out.push(alloc::format!("processes: {}", procs.len()));
    for p in procs {
        let zombie = if p.zombie.load(Ordering::Relaxed) {
            " (zombie)"
        } else {
            ""
        };
        out.push(alloc::format!(
            "  process {} ({}){zombie}",
            p.pid,
            super::death::comm(&p)
        ));
        for t in p.threads.lock().iter() {
            let state = t
                .thread
                .get()
                .and_then(alloc::sync::Weak::upgrade)
                .map_or(String::from("no kernel thread"), |k| {
                    crate::sched::thread_label(&k)
                });
            let call = match t.in_call.load(Ordering::Relaxed) {
                0 => String::new(),
                n => alloc::format!(
                    ", in {}({:#x}, ...)",
                    super::abi::name(n - 1),
                    t.in_call_arg0.load(Ordering::Relaxed)
                ),
            };
            out.push(alloc::format!("    thread {}: {state}{call}", t.tid));
        }
    }
}

/// Looks a thread up by tid.
pub(crate) fn find_task(tid: i32) -> Option<Arc<Task>> {
    for p in all_processes() {
        if let Some(t) = p.threads.lock().iter().find(|t| t.tid == tid) {
            return Some(t.clone());
        }
    }
    None
}

/// A new id for a process or a thread.
fn next_id() -> i32 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Moves the id counter past `highest` (the ids an adopted hand-over record carries): no
/// process or thread created afterwards takes one of them.
pub(crate) fn reserve_ids(highest: i32) {
    NEXT_ID.fetch_max(highest.saturating_add(1), Ordering::Relaxed);
}

/// A process `pid` (a new id from [`next_id`], or an adopted one) with `space` (`None`: an
/// adopted zombie), in [`PROCS`]. A `pgid` or `sid` of 0 is its pid.
#[allow(clippy::too_many_arguments)] // one call per kind of process creation
fn new_process(
    pid: i32,
    ppid: i32,
    pgid: i32,
    sid: i32,
    files: FdTable,
    fs: FsContext,
    space: Option<Arc<Space>>,
    sigactions: [SigAction; 64],
    exit_signal: u32,
    umask: u32,
    rlimits: Rlimits,
) -> Arc<Process> {
    let p = Arc::new(Process {
        pid,
        pgid_: AtomicI32::new(if pgid == 0 { pid } else { pgid }),
        sid_: AtomicI32::new(if sid == 0 { pid } else { sid }),
        files: IrqLock::new(files),
        fs: IrqLock::new(fs),
        space: IrqLock::new(space),
        space_gen: AtomicU64::new(0),
        rel: IrqLock::new(Relations {
            ppid,
            children: Vec::new(),
        }),
        ppid_now: AtomicI32::new(ppid),
        threads: IrqLock::new(Vec::new()),
        sigactions: IrqLock::new(sigactions),
        exit_status: IrqLock::new(None),
        zombie: AtomicBool::new(false),
        exit_signal,
        child_wq: WaitQueue::new(),
        vfork_done: Completion::new(),
        vforked: AtomicBool::new(false),
        umask: AtomicU32::new(umask),
        personality: AtomicU32::new(0),
        exe: IrqLock::new(Vec::new()),
        times: ProcessTimes::default(),
        rlimits: IrqLock::new(rlimits),
        args: IrqLock::new(ExecArgs::default()),
        start_ns: crate::time::now_ns(),
        timers: super::timers::ProcessTimers::default(),
        shared_sig: super::signal::Pending::new(),
        creds: IrqLock::new(super::creds::Creds::default()),
        prctl: super::prctl::ProcessPrctl::default(),
    });
    PROCS.lock().insert(pid, p.clone());
    p
}

/// A new thread or process starts with its creator's nice value, affinity and scheduling
/// policy (`sched_params::inherited`: `SCHED_RESET_ON_FORK` resets a negative nice value and
/// is not inherited), and I/O priority.
fn inherit_sched(parent: &Task, child: &Task) {
    let (nice, policy) = super::sched_params::inherited(
        parent.nice.load(Ordering::Relaxed),
        parent.policy.load(Ordering::Relaxed),
    );
    child.nice.store(nice, Ordering::Relaxed);
    child
        .affinity
        .store(parent.affinity.load(Ordering::Relaxed), Ordering::Relaxed);
    child.policy.store(policy, Ordering::Relaxed);
    child
        .ioprio
        .store(parent.ioprio.load(Ordering::Relaxed), Ordering::Relaxed);
}

fn new_task(tid: i32, process: &Arc<Process>, sig: SigState) -> Arc<Task> {
    LIVE_TASKS.fetch_add(1, Ordering::Relaxed);
    let t = Arc::new(Task {
        tid,
        process: process.clone(),
        sig,
        clear_child_tid: AtomicU64::new(0),
        robust_list: AtomicU64::new(0),
        nice: AtomicI32::new(0),
        affinity: AtomicU64::new(u64::MAX),
        policy: AtomicU32::new(super::sched_params::policy::OTHER),
        ioprio: AtomicU32::new(0),
        thread: spin::Once::new(),
        must_exit: AtomicBool::new(false),
        times: TaskTimes::default(),
        restart_block: IrqLock::new(None),
        restart_armed: AtomicBool::new(false),
        name: IrqLock::new(None),
        in_call: AtomicU64::new(0),
        in_call_arg0: AtomicU64::new(0),
        counted: AtomicBool::new(true),
    });
    process.threads.lock().push(t.clone());
    t
}

/// Starts the kernel thread of `task` with user state `st`. The task's link to it
/// ([`Task::thread`], which [`Task::kick`] wakes) is set before the thread can run: set after,
/// a signal sent in between (the new thread may run far ahead of its creator, whose vCPU the
/// host can preempt) was queued but woke no one, and a thread that had meanwhile gone to sleep
/// waiting for it (`sigsuspend`) slept for ever.
pub(crate) fn start(task: Arc<Task>, st: UserState, fresh: bool) -> Result<(), Errno> {
    let t2 = task.clone();
    crate::sched::spawn_published(
        "user",
        None,
        move || task_main(t2, st, fresh),
        |th| {
            task.thread.call_once(|| Arc::downgrade(th));
        },
    )
    .map_err(|_| Errno::ENOMEM)?;
    Ok(())
}

/// The environment of init when the boot arguments give none (`pvmux run` always gives
/// one: its defaults and `--env`).
const INIT_ENV: [&[u8]; 4] = [
    b"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    b"HOME=/",
    b"TERM=linux",
    b"SHELL=/bin/sh",
];

/// Resolves a program name without `/` through the default PATH (a name with a `/` is
/// resolved against init's working directory by the loader).
pub(crate) fn resolve_init(name: &[u8]) -> Vec<u8> {
    if name.contains(&b'/') {
        return name.to_vec();
    }
    for dir in [
        &b"/usr/local/bin"[..],
        b"/usr/bin",
        b"/bin",
        b"/usr/sbin",
        b"/sbin",
    ] {
        let mut p = dir.to_vec();
        p.push(b'/');
        p.extend_from_slice(name);
        if crate::fs::with(|fs| fs.stat(crate::fs::ramfs::ROOT_INO, &p)).is_ok() {
            return p;
        }
    }
    name.to_vec()
}

/// Runs `argv` as init (pid 1) with environment `env` ([`INIT_ENV`] if `None`) and working
/// directory `cwd`, and waits for it; returns its wait status, or the errno of a failed
/// start.
pub(crate) fn run_init(
    argv: Vec<Vec<u8>>,
    env: Option<Vec<Vec<u8>>>,
    cwd: crate::fs::ramfs::Ino,
) -> Result<i32, Errno> {
    super::pool::init();
    if super::pool::range().is_none() {
        crate::println!("pvmux-kernel: no user pool in the memory map: cannot run programs");
        return Err(Errno::ENOMEM);
    }
    // `/dev` and `/proc`; then what the filesystem holds at boot, which a hand-over can
    // rebuild, is settled: a change from here on is the programs'.
    super::files::init();
    super::handover::fs_booted();
    let path = resolve_init(&argv[0]);
    let env = env.unwrap_or_else(|| INIT_ENV.iter().map(|e| e.to_vec()).collect());
    let ToRun {
        file,
        argv: argv2,
        program,
    } = load_file_with_shebang(cwd, &ExecAt::plain(cwd, &path), argv)?;
    // The trusted in-process mode runs init in the kernel sandbox (`space::inproc`).
    let space = if super::space::trusted_mode() {
        Space::new_inproc()?
    } else {
        Space::new()?
    };
    let loaded = exec::load(
        &space,
        &file,
        crate::fs::ramfs::ROOT_INO,
        &argv2,
        &env,
        &path,
    )?;
    let p = new_process(
        next_id(),
        0,
        0,
        0,
        FdTable::with_console(),
        FsContext::at(cwd),
        Some(space),
        [SigAction::DEFAULT; 64],
        0,
        0o022,
        super::rlimit::for_init(u64::from(max_tasks())),
    );
    *p.exe.lock() = exe_path(&p, cwd, &program);
    *p.args.lock() = ExecArgs::new(&path, &argv2, &env);
    *p.creds.lock() = super::creds::for_init();
    let t = new_task(p.pid, &p, SigState::new(SigSet::EMPTY));
    start(t, UserState::new(loaded.entry, loaded.rsp), true)?;
    Ok(serve_until_init_ends())
}

/// Once init (pid 1) runs — started by [`run_init`], or adopted from a hand-over record
/// (`handover::adopt`): starts the daemons that serve the host while it runs, and waits for
/// it to end; its wait status.
pub(crate) fn serve_until_init_ends() -> i32 {
    // The host may start more programs in the guest while init runs.
    super::exec_session::start_daemon();
    // ... and ask for a hand-over record (`pvmux upgrade`).
    super::handover::start_daemon();
    INIT_WQ.wait_until(|| INIT_STATUS.lock().is_some());
    let status = INIT_STATUS.lock().unwrap_or(0);
    status
}

/// Creates process `parts.pid` of an adopted hand-over record (`handover::adopt`, parents
/// first) with its recorded ids, state, address space `space`, descriptors `files` and
/// working directory `fs`, linked into its parent's children; its threads come from
/// [`adopt_thread`]. `EEXIST` if the pid is taken.
pub(crate) fn adopt_process(
    parts: &super::handover::adopt::ProcessParts,
    space: Arc<Space>,
    files: FdTable,
    fs: FsContext,
) -> Result<Arc<Process>, Errno> {
    if PROCS.lock().contains_key(&parts.pid) {
        return Err(Errno::EEXIST);
    }
    let rlimits = parts
        .rlimits
        .unwrap_or_else(|| super::rlimit::for_init(u64::from(max_tasks())));
    let p = new_process(
        parts.pid,
        parts.ppid,
        parts.pgid,
        parts.sid,
        files,
        fs,
        Some(space),
        parts.sigactions,
        parts.exit_signal,
        parts.umask,
        rlimits,
    );
    *p.exe.lock() = parts.exe.clone();
    {
        let mut a = p.args.lock();
        a.comm = parts.comm.clone();
        a.cmdline = parts.cmdline.clone();
        a.environ = parts.environ.clone();
    }
    *p.creds.lock() = parts.creds.clone();
    p.times.adopt(&parts.times[0], &parts.times[1]);
    p.shared_sig.adopt(SigSet::from_bits(parts.shared_pending));
    link_to_parent(&p);
    Ok(p)
}

/// Keeps zombie `pid` of an adopted hand-over record (parent `ppid`, group `pgid`, session
/// `sid`, command `comm`) for its parent, with wait status `status`: the parent's `wait`
/// reaps it. `EEXIST` if the pid is taken.
pub(crate) fn adopt_zombie(
    [pid, ppid, pgid, sid]: [i32; 4],
    comm: &[u8],
    status: i32,
) -> Result<Arc<Process>, Errno> {
    if PROCS.lock().contains_key(&pid) {
        return Err(Errno::EEXIST);
    }
    let p = new_process(
        pid,
        ppid,
        pgid,
        sid,
        FdTable::new(),
        FsContext::at(crate::fs::ramfs::ROOT_INO),
        None,
        [SigAction::DEFAULT; 64],
        0,
        0o022,
        Rlimits::defaults(1),
    );
    p.args.lock().comm = comm.to_vec();
    *p.exit_status.lock() = Some(status);
    p.zombie.store(true, Ordering::Release);
    link_to_parent(&p);
    Ok(p)
}

/// Links adopted process `p` into its parent's children (init's when the parent is gone).
fn link_to_parent(p: &Arc<Process>) {
    let ppid = p.ppid();
    if ppid == 0 || ppid == p.pid {
        return;
    }
    let parent = find_process(ppid).filter(|q| !q.zombie.load(Ordering::Acquire));
    match parent.or_else(|| find_process(1).filter(|_| p.pid != 1)) {
        Some(q) => {
            if q.pid != ppid {
                p.set_ppid(q.pid);
            }
            q.rel.lock().children.push(p.clone());
        }
        None => p.set_ppid(0),
    }
}

/// Creates thread `t` of adopted process `p` (its recorded tid, masks, pending signals,
/// alternate stack and tid address): the task, and the state and `fresh` flag to
/// [`start`] it with ([`adopted_state`]).
pub(crate) fn adopt_thread(
    p: &Arc<Process>,
    t: &super::handover::adopt::ThreadParts,
) -> (Arc<Task>, UserState, bool) {
    let sig = SigState::adopted(
        SigSet::from_bits(t.sigmask),
        SigSet::from_bits(t.pending),
        t.altstack,
    );
    let task = new_task(t.tid, p, sig);
    task.clear_child_tid
        .store(t.clear_child_tid, Ordering::Relaxed);
    task.times.adopt(&t.times);
    *task.restart_block.lock() = t.restart;
    task.restart_armed
        .store(t.restart.is_some(), Ordering::Relaxed);
    let (st, fresh) = adopted_state(t);
    (task, st, fresh)
}

/// The user state an adopted thread resumes with: its registers exactly as recorded (a
/// system call rewound at the freeze is re-issued: `rip` is on its `syscall` instruction,
/// `rax` its number), flags limited to the user's, its `fs_base` and its FPU image. `fresh`
/// (the sandbox starts from the initial FPU state) only when the record has no image: with
/// one, the image is what the thread resumes with.
pub(crate) fn adopted_state(t: &super::handover::adopt::ThreadParts) -> (UserState, bool) {
    let mut regs = t.regs;
    regs.rflags = (regs.rflags & RFLAGS_USER_MASK) | 0x202;
    let st = UserState {
        regs,
        fs_base: t.fs_base,
        fp: t.fp.clone(),
        fp_token: 0,
        fp_in_slot: None,
        exit_token: 0,
        exit_regs: pvmux_hypercalls::TrapFrame::default(),
        user_ns: 0,
        fp_kept: 0,
        park_ready: false,
    };
    (st, t.fp.is_empty())
}

/// An adopted thread that could not be started: its process dies as killed (`SIGKILL`)
/// and this thread ends as if it had run.
pub(crate) fn abandon_adopted(task: &Arc<Task>) {
    kill_process(&task.process, super::signal::sig::SIGKILL);
    task.clear_child_tid.store(0, Ordering::Relaxed);
    exit_thread(task);
}

/// Starts `argv` for an exec session: a process whose parent is outside the guest
/// (`getppid()` is 0, as for `runc exec`), in a session and process group of its own, with
/// fds 0, 1, 2 from `stdio`, environment `env` ([`INIT_ENV`] if `None`), working directory
/// `cwd`, init's resource limits (`limits` replacing some), and the credentials `ids` asks
/// for ([`super::creds::for_exec_session`]: its user, groups and capability sets, else
/// init's). Returns its
/// pid; its end is reported to [`super::exec_session::exited`].
pub(crate) fn spawn_exec(
    argv: Vec<Vec<u8>>,
    env: Option<Vec<Vec<u8>>>,
    cwd: crate::fs::ramfs::Ino,
    ids: super::creds::ExecIds<'_>,
    limits: pvmux_hypercalls::exec::ExecRlimits<'_>,
    stdio: FdTable,
) -> Result<i32, Errno> {
    if super::pool::range().is_none() {
        return Err(Errno::ENOMEM);
    }
    let exe = argv.first().cloned().unwrap_or_default();
    let path = resolve_init(&exe);
    let env = env.unwrap_or_else(|| INIT_ENV.iter().map(|e| e.to_vec()).collect());
    let ToRun {
        file,
        argv: argv2,
        program,
    } = load_file_with_shebang(cwd, &ExecAt::plain(cwd, &path), argv)?;
    let space = Space::new()?;
    let loaded = exec::load(
        &space,
        &file,
        crate::fs::ramfs::ROOT_INO,
        &argv2,
        &env,
        &path,
    )?;
    let init = find_process(1);
    let mut rlimits = match &init {
        Some(i) => *i.rlimits.lock(),
        None => super::rlimit::for_init(u64::from(max_tasks())),
    };
    // The request's limits replace init's (checked by the ABI's parser; one the kernel
    // cannot honour is skipped, as for init's).
    for l in limits.iter() {
        let Ok(r) = super::rlimit::resource(u64::from(l.resource)) else {
            continue;
        };
        let new = super::rlimit::Rlimit {
            cur: l.soft,
            max: l.hard,
        };
        if let Err(e) = rlimits.set(r, new) {
            crate::println!(
                "pvmux-kernel: exec: limit {r} = {}:{} refused: {e}",
                l.soft,
                l.hard
            );
        }
    }
    let init_creds = init.as_ref().map(|i| i.creds.lock().clone());
    let creds =
        super::creds::for_exec_session(ids, init_creds.as_ref(), crate::boot::args().caps());
    let p = new_process(
        next_id(),
        0,
        0,
        0,
        stdio,
        FsContext::at(cwd),
        Some(space),
        [SigAction::DEFAULT; 64],
        0,
        0o022,
        rlimits,
    );
    *p.exe.lock() = exe_path(&p, cwd, &program);
    *p.args.lock() = ExecArgs::new(&path, &argv2, &env);
    *p.creds.lock() = creds;
    let t = new_task(p.pid, &p, SigState::new(SigSet::EMPTY));
    if let Err(e) = start(t, UserState::new(loaded.entry, loaded.rsp), true) {
        PROCS.lock().remove(&p.pid);
        return Err(e);
    }
    Ok(p.pid)
}

/// Reads `path` and follows `#!` interpreters (up to 4 levels); returns the ELF bytes and the
/// final argv.
/// What an `execve` runs once `#!` lines were followed.
struct ToRun {
    /// The image of the program file loaded (a script's interpreter).
    file: Arc<super::imagecache::CachedFile>,
    /// Its arguments (for a script, the interpreter's first).
    argv: Vec<Vec<u8>>,
    /// The path the file was loaded by.
    program: Vec<u8>,
}

fn load_file_with_shebang(
    cwd: crate::fs::ramfs::Ino,
    target: &ExecAt,
    mut argv: Vec<Vec<u8>>,
) -> Result<ToRun, Errno> {
    let read = |p: &[u8]| super::imagecache::load(cwd, p);
    let mut file = match target.ino {
        Some(ino) => super::imagecache::load_ino(ino)?,
        None => super::imagecache::load(target.base, &target.path)?,
    };
    let mut cur_path = target.name.clone();
    for _ in 0..4 {
        let Some((interp, arg)) = exec::shebang(file.head()) else {
            return Ok(ToRun {
                file,
                argv,
                program: cur_path,
            });
        };
        if !target.script_ok {
            // Through a close-on-exec descriptor: the interpreter could not open it.
            return Err(Errno::ENOENT);
        }
        let mut nargv = alloc::vec![interp.clone()];
        if let Some(a) = arg {
            nargv.push(a);
        }
        nargv.push(cur_path.clone());
        nargv.extend(argv.into_iter().skip(1));
        argv = nargv;
        file = read(&interp)?;
        cur_path = interp;
    }
    Err(Errno::ELOOP)
}

/// Wait status for a normal exit.
pub(crate) fn exit_status(code: i32) -> i32 {
    (code & 0xff) << 8
}

/// Body of every guest thread's kernel thread.
fn task_main(task: Arc<Task>, mut st: UserState, mut fresh: bool) {
    crate::sched::current().task.call_once(|| task.clone());
    let mut fault_loop = super::fault::FaultLoop::default();
    // The system call the registers re-issue after a freeze interrupted it (the record).
    let mut restart = pvmux_hypercalls::handover::NO_RESTART;
    // The process's space, kept between system calls until `execve` or exit changes it.
    let (mut space_gen, mut cached_space) = task.process.space_with_gen();
    loop {
        if task.must_exit.load(Ordering::Acquire) {
            break;
        }
        // A kernel thread made runnable here that must not wait for this one's slice.
        crate::sched::resched_point();
        // Stopped here while a hand-over record is written (`pvmux upgrade`).
        super::handover::safe_point(&task, &mut st, restart);
        restart = pvmux_hypercalls::handover::NO_RESTART;
        if super::signal::deliver(&task, &mut st, &mut fresh).is_err() {
            break;
        }
        if task.must_exit.load(Ordering::Acquire) {
            break;
        }
        if task.process.space_changed(space_gen) {
            (space_gen, cached_space) = task.process.space_with_gen();
        }
        let Some(space) = cached_space.as_ref() else {
            break;
        };
        let exit = space.run(&mut st, fresh);
        task.times.add_user(core::mem::take(&mut st.user_ns));
        fresh = false;
        match exit {
            Exit::Syscall { trapped } => {
                crate::stub::count(pvmux_hypercalls::vcpu::stat::GUEST_SYSCALLS);
                let nr = st.regs.rax;
                if trapped {
                    super::patch::after_trap(space, st.regs.rip, nr);
                }
                let args = [
                    st.regs.rdi,
                    st.regs.rsi,
                    st.regs.rdx,
                    st.regs.r10,
                    st.regs.r8,
                    st.regs.r9,
                ];
                let epoch = super::handover::freeze_epoch();
                // The re-issue of a sleep a freeze stopped goes on where it was.
                let call = super::timers::sleep::continued(&task, nr, st.regs.rip);
                task.in_call_arg0.store(args[0], Ordering::Relaxed);
                task.in_call.store(call.wrapping_add(1), Ordering::Relaxed);
                let r = super::dispatch::syscall(&task, &mut st, &mut fresh, call, args);
                task.in_call.store(0, Ordering::Relaxed);
                st.regs.rax = match r {
                    Ok(v) => v,
                    // Interrupted by a hand-over freeze, no signal to deliver: re-issued at
                    // its boundary (after the thaw, or under the adopting kernel).
                    // A sleep goes on with the time it had left (`restart_syscall` and its
                    // restart block, as Linux continues one a stop interrupted).
                    Err(Errno::EINTR) if super::handover::interrupted_by_freeze(&task, epoch) => {
                        super::timers::sleep::arm_restart(&task, nr, st.regs.rip);
                        st.regs.rip -= 2;
                        restart = nr;
                        nr
                    }
                    Err(e) => {
                        if e == Errno::EINTR {
                            task.sig.note_interrupted(nr);
                            // Returned to the program: nothing to continue.
                            super::timers::sleep::disarm_restart(&task);
                        }
                        (-(e.code() as i64)) as u64
                    }
                };
            }
            Exit::Exception { vector, .. }
                if vector == pvmux_hypercalls::Vector::InvalidOpcode as u32
                    && super::patch::race_restart(space, &mut st.regs) => {}
            Exit::Exception {
                vector,
                error_code,
                addr,
            } => {
                crate::stub::count(pvmux_hypercalls::vcpu::stat::GUEST_FAULTS);
                super::fault::user_exception(
                    &task,
                    space,
                    &st.regs,
                    super::fault::Trap {
                        vector,
                        error_code,
                        addr,
                    },
                    &mut fault_loop,
                )
            }
            Exit::Interrupt => crate::sched::yield_now(),
            Exit::Dead => {
                // The sandbox died under us (killed, crashed, or misbehaved).
                space.kill_for_failure(&task.process);
            }
        }
        // Let events (timers, kicks) run between user slices.
        st.regs.rflags = (st.regs.rflags & RFLAGS_USER_MASK) | 0x202;
    }
    // The space goes with the process (`exit_process`), not when this thread's stack does.
    drop(cached_space);
    exit_thread(&task);
}

/// Makes every thread of `p` exit with wait status `status` (first caller wins).
pub(crate) fn exit_group(p: &Arc<Process>, status: i32) {
    {
        let mut s = p.exit_status.lock();
        if s.is_none() {
            *s = Some(status);
        }
    }
    let threads: Vec<Arc<Task>> = p.threads.lock().clone();
    for t in threads {
        t.must_exit.store(true, Ordering::Release);
        t.kick();
    }
}

/// Ends `p` as if killed by `signo`.
pub(crate) fn kill_process(p: &Arc<Process>, signo: u32) {
    exit_group(p, (signo & 0x7f) as i32);
}

/// Thread exit: clears `clear_child_tid`, and ends the process with its last thread.
fn exit_thread(task: &Arc<Task>) {
    // Robust mutexes it still holds: their owner died (before the tid word is cleared, as
    // Linux's `mm_release`).
    let robust = task.robust_list.swap(0, Ordering::AcqRel);
    super::futex::release_robust_list(task.tid, robust);
    let ctid = task.clear_child_tid.swap(0, Ordering::AcqRel);
    let p = task.process.clone();
    if ctid != 0 {
        let _ = super::uaccess::write_val(ctid, &0u32);
        let _ = super::futex::wake_addr(ctid, 1);
    }
    super::cputime::thread_ended(task);
    // Before the process can be waited for (its last thread ends it below).
    task.count_out();
    let last = {
        let mut th = p.threads.lock();
        th.retain(|t| !Arc::ptr_eq(t, task));
        th.is_empty()
    };
    if last {
        exit_process(&p);
    } else {
        // Process-wide signals this thread would have taken go to another (Linux's
        // `retarget_shared_pending` in `exit_signals`).
        super::signal::retarget_shared(&p);
    }
}

/// Test kernel (`slow-exit=MS`): how long each exit waits after its process's last thread.
#[cfg(feature = "diagnostics")]
static SLOW_EXIT_NS: AtomicU64 = AtomicU64::new(0);

/// Test kernel: every exit from now on waits `ms` milliseconds after its process's last
/// thread ends (the window a hand-over's freeze must wait through).
#[cfg(feature = "diagnostics")]
pub(crate) fn slow_exits(ms: u64) {
    SLOW_EXIT_NS.store(ms.saturating_mul(1_000_000), Ordering::Relaxed);
}

/// Marks `p` exited (a zombie until reaped) and wakes `poll`/`epoll` waiters, for its
/// pidfds (`linux/pidfd.rs`).
pub(crate) fn became_zombie(p: &Process) {
    p.zombie.store(true, Ordering::Release);
    super::files::poll::notify();
}

fn exit_process(p: &Arc<Process>) {
    #[cfg(feature = "diagnostics")]
    match SLOW_EXIT_NS.load(Ordering::Relaxed) {
        0 => {}
        ns => crate::sched::sleep_until(crate::time::now_ns().saturating_add(ns)),
    }
    let status = p.exit_status.lock().unwrap_or(0);
    super::timers::process_exited(p);
    p.files.lock().close_all();
    super::files::locks::process_exited(p.pid);
    super::sysv_ipc::sem::process_exited(p.pid);
    let space = {
        let mut s = p.space.lock();
        p.space_gen.fetch_add(1, Ordering::AcqRel);
        s.take()
    };
    let mapped_files = space
        .as_ref()
        .is_some_and(|s| super::memory::write_back_space(s));
    drop(space);
    if mapped_files {
        super::memory::release_unmapped();
    }
    p.vfork_done.signal();
    // Orphans go to the nearest live ancestor that is a child subreaper, else to init
    // (pid 1), or nowhere when init itself ends; each that asked for a parent-death signal
    // gets it (from the parent that ended, as Linux's `SI_USER` of `forget_original_parent`).
    let children = core::mem::take(&mut p.rel.lock().children);
    let ppid = p.ppid();
    if p.pid != 1 {
        if let Some(reaper) = super::prctl::reaper_for(p, ppid) {
            for c in &children {
                c.set_ppid(reaper.pid);
            }
            let deaths: Vec<(Arc<Process>, u32)> = children
                .iter()
                .filter_map(|c| {
                    let s = c.prctl.pdeath_signal();
                    (s != 0).then(|| (c.clone(), s))
                })
                .collect();
            reaper.rel.lock().children.extend(children);
            reaper.child_wq.wake_all();
            for (c, signo) in deaths {
                let info = super::signal::SigInfo::from_process(
                    signo,
                    super::signal::code::SI_USER,
                    p.pid,
                );
                let _ = super::signal::send_info_to_process(&c, info);
            }
        }
    }
    if p.pid == 1 {
        became_zombie(p);
        PROCS.lock().remove(&p.pid);
        *INIT_STATUS.lock() = Some(status);
        INIT_WQ.wake_all();
        return;
    }
    if ppid == 0 {
        // An exec session's process: its parent is outside the guest, the session's relay
        // reaps it and reports the status to the host.
        became_zombie(p);
        PROCS.lock().remove(&p.pid);
        super::exec_session::exited(p.pid, status);
        return;
    }
    if let Some(parent) = find_process(ppid) {
        // Marks `p` a zombie only after its exit signal is pending, as Linux's
        // `do_notify_parent`: a `wait4` that reaps it returns with SIGCHLD already pending,
        // so the handler runs before the program goes on.
        super::signal::notify_parent(&parent, p, status);
    } else {
        became_zombie(p);
        PROCS.lock().remove(&p.pid);
    }
}

pub(crate) use super::clone_args::CloneArgs;
use super::files::path::ExecAt;

/// `clone`/`clone3`/`fork`/`vfork`, their arguments checked ([`CloneArgs`]).
pub(crate) fn clone_with(task: &Arc<Task>, st: &UserState, args: &CloneArgs) -> SysResult {
    let CloneArgs {
        flags,
        stack: newsp,
        parent_tid: ptid,
        child_tid: ctid,
        tls,
        ..
    } = *args;
    let p = &task.process;
    let mut cst = UserState {
        regs: st.regs,
        fs_base: st.fs_base,
        fp: st.fp.clone(),
        fp_token: 0,
        fp_in_slot: None,
        exit_token: 0,
        exit_regs: pvmux_hypercalls::TrapFrame::default(),
        user_ns: 0,
        fp_kept: 0,
        park_ready: false,
    };
    cst.regs.rax = 0;
    if newsp != 0 {
        cst.regs.rsp = newsp;
    }
    if flags & CLONE_SETTLS != 0 {
        cst.fs_base = tls;
    }
    // An exiting process (exit_group, a fatal signal, exec in another thread) creates
    // nothing: Linux's copy_process fails with EINTR when a fatal signal is pending, and the
    // caller dies before it sees the result.
    let exiting = || task.must_exit.load(Ordering::Acquire) || p.exit_status.lock().is_some();
    if exiting() {
        return Err(Errno::EINTR);
    }
    // A thread or `CLONE_VM` child (not `vfork`) starts without an alternate stack.
    let shares_stack = flags & CLONE_VM != 0 && flags & CLONE_VFORK == 0;
    // RLIMIT_NPROC counts the user's tasks, and every guest program runs as uid 0: all
    // of them. The kernel's own ceiling applies whatever the limit.
    let nproc = rlimit::of(p, rlimit::res::NPROC).min(u64::from(max_tasks()));
    if u64::from(LIVE_TASKS.load(Ordering::Relaxed)) >= nproc {
        return Err(Errno::EAGAIN);
    }
    if flags & CLONE_THREAD != 0 {
        if flags & CLONE_VM == 0 || flags & CLONE_SIGHAND == 0 {
            return Err(Errno::EINVAL);
        }
        let tid = next_id();
        let t = new_task(tid, p, task.sig.cloned(shares_stack));
        inherit_sched(task, &t);
        *t.name.lock() = task.name.lock().clone();
        // Checked again now that the thread is in `p.threads`: an `exit_group` that set the
        // exit status before this check is refused here; one that sets it after takes its
        // snapshot of the threads after the insertion, so it marks the new thread too.
        if exiting() {
            p.threads.lock().retain(|x| !Arc::ptr_eq(x, &t));
            return Err(Errno::EINTR);
        }
        // As on Linux, a fault writing the thread id is ignored (the thread exists).
        if flags & CLONE_PARENT_SETTID != 0 {
            let _ = super::uaccess::write_val(ptid, &tid);
        }
        if flags & CLONE_CHILD_SETTID != 0 {
            let _ = super::uaccess::write_val(ctid, &tid);
        }
        if flags & CLONE_CHILD_CLEARTID != 0 {
            t.clear_child_tid.store(ctid, Ordering::Relaxed);
        }
        // An `exit_group` from here on marks the thread and wakes it: `start` publishes its
        // kernel thread before it can run.
        start(t, cst, false)?;
        return Ok(tid as u64);
    }
    // A new process.
    let pidfd = match args.pidfd {
        Some(_) => Some(super::pidfd::reserve()?),
        None => None,
    };
    let space = p.space().ok_or(Errno::ESRCH)?;
    let child_space = if flags & CLONE_VM != 0 {
        space.clone()
    } else {
        // The child's copy of the memory map comes from the kernel heap.
        super::memory::check_fork(&space.mm.lock())?;
        // What the child touches first: its code, its stack top and its TLS. While the
        // parent has no other thread that could write them, the two pages it writes at once
        // are copied for it now instead of at two copy-on-write faults.
        let page = |a: u64| a & !(pvmux_hypercalls::PAGE_SIZE - 1);
        let (rsp, tls) = (page(cst.regs.rsp), page(cst.fs_base));
        let alone = p.threads.lock().len() == 1;
        let own: &[u64] = if alone { &[rsp, tls] } else { &[] };
        space.fork(own, &[cst.regs.rip, cst.regs.rsp, cst.fs_base])?
    };
    if exiting() {
        return Err(Errno::EINTR);
    }
    let mut files = p.files.lock().fork();
    if let Some(r) = &pidfd {
        drop(files.take(r.fd()));
    }
    let fs = p.fs.lock().clone();
    let mut actions = *p.sigactions.lock();
    if args.clears_handlers() {
        for a in &mut actions {
            *a = a.after_exec();
        }
    }
    let ppid = if flags & CLONE_PARENT != 0 {
        p.ppid()
    } else {
        p.pid
    };
    let exe = p.exe.lock().clone();
    let rlimits = *p.rlimits.lock();
    let c = new_process(
        next_id(),
        ppid,
        p.pgid(),
        p.sid(),
        files,
        fs,
        Some(child_space.clone()),
        actions,
        args.exit_signal,
        p.umask.load(Ordering::Relaxed),
        rlimits,
    );
    *c.exe.lock() = exe;
    c.personality
        .store(p.personality.load(Ordering::Relaxed), Ordering::Relaxed);
    *c.args.lock() = p.args.lock().clone();
    *c.creds.lock() = p.creds.lock().clone();
    c.prctl.set(p.prctl.for_child());
    let t = new_task(c.pid, &c, task.sig.cloned(shares_stack));
    inherit_sched(task, &t);
    *t.name.lock() = task.name.lock().clone();
    // As on Linux, a fault writing the child's pid is ignored (the child exists).
    if flags & CLONE_PARENT_SETTID != 0 {
        let _ = super::uaccess::write_val(ptid, &c.pid);
    }
    // The child's pidfd, in the parent's table only (its descriptor was taken out of the
    // child's copy). Linux checks the pointer before the child exists; here a fault
    // writing it leaves the descriptor open, as for the tids above.
    if let (Some(at), Some(r)) = (args.pidfd, pidfd) {
        let fd = r.bind(c.clone());
        let _ = super::uaccess::write_val(at, &fd);
    }
    if flags & CLONE_CHILD_SETTID != 0 {
        let _ = super::space::copy_out(&child_space, ctid, &c.pid.to_le_bytes());
    }
    if flags & CLONE_CHILD_CLEARTID != 0 {
        t.clear_child_tid.store(ctid, Ordering::Relaxed);
    }
    match find_process(ppid) {
        Some(par) => par.rel.lock().children.push(c.clone()),
        None => p.rel.lock().children.push(c.clone()),
    }
    drop(child_space);
    if flags & CLONE_VFORK != 0 {
        c.vforked.store(true, Ordering::Release);
    }
    start(t, cst, false)?;
    if flags & CLONE_VFORK != 0 {
        c.vfork_done.wait();
    }
    Ok(c.pid as u64)
}

/// Whether `execve` by `p` loads an in-process space (the trusted in-process mode): when its
/// space runs in-process and no other process shares it (a `vfork` child's exec gets a user
/// sandbox, so two in-process spaces never run at once).
fn exec_stays_inproc(p: &Arc<Process>) -> bool {
    let Some(old) = p.space() else {
        return false;
    };
    old.is_inproc()
        && !all_processes()
            .iter()
            .any(|q| !Arc::ptr_eq(q, p) && q.space().is_some_and(|s| Arc::ptr_eq(&s, &old)))
}

/// `execve`: replaces the current process's image. On success the new image's state is in
/// `st`.
pub(crate) fn do_execve(
    task: &Arc<Task>,
    st: &mut UserState,
    fresh: &mut bool,
    path: Vec<u8>,
    argv: Vec<Vec<u8>>,
    envp: Vec<Vec<u8>>,
) -> SysResult {
    let p = &task.process;
    // `/proc/self/exe` (busybox re-executes itself through it): the running program.
    let path = if path == b"/proc/self/exe" {
        p.exe.lock().clone()
    } else {
        path
    };
    let target = ExecAt::plain(p.fs.lock().cwd, &path);
    exec_program(task, st, fresh, &target, argv, envp)
}

/// `execve` and `execveat`: replaces the current process's image with the program
/// `target` names (`files::path::exec_at`). On success the new image's state is in `st`.
pub(crate) fn exec_program(
    task: &Arc<Task>,
    st: &mut UserState,
    fresh: &mut bool,
    target: &ExecAt,
    argv: Vec<Vec<u8>>,
    envp: Vec<Vec<u8>>,
) -> SysResult {
    let p = &task.process;
    // No arguments: one empty argv[0], as Linux (since 5.18) gives.
    let argv = if argv.is_empty() {
        alloc::vec![Vec::new()]
    } else {
        argv
    };
    let cwd = p.fs.lock().cwd;
    let ToRun {
        file,
        argv,
        program,
    } = load_file_with_shebang(cwd, target, argv)?;
    let space = if exec_stays_inproc(p) {
        Space::new_inproc()?
    } else {
        Space::new()?
    };
    let path = &target.name;
    let loaded = exec::load(&space, &file, cwd, &argv, &envp, path)?;
    // Point of no return: other threads die, the old image goes.
    let others: Vec<Arc<Task>> = p
        .threads
        .lock()
        .iter()
        .filter(|t| !Arc::ptr_eq(t, task))
        .cloned()
        .collect();
    for t in others {
        t.must_exit.store(true, Ordering::Release);
        t.kick();
    }
    // The program itself (not a script's interpreter): by the descriptor's path, or
    // resolved from where it was looked up.
    *p.exe.lock() = match &target.exe {
        Some(e) if program == *path => e.clone(),
        _ if program == *path => exe_path(p, target.base, &target.path),
        _ => exe_path(p, cwd, &program),
    };
    *p.args.lock() = ExecArgs::new(path, &argv, &envp);
    // The thread is named after the new program (Linux's `__set_task_comm` at exec), which
    // is dumpable.
    *task.name.lock() = None;
    p.prctl.execed();
    // Robust mutexes it holds in the old image: their owner died (Linux's
    // `exec_mm_release`); the new program registers its own list.
    let robust = task.robust_list.swap(0, Ordering::AcqRel);
    super::futex::release_robust_list(task.tid, robust);
    let old = {
        let mut s = p.space.lock();
        p.space_gen.fetch_add(1, Ordering::AcqRel);
        s.replace(space)
    };
    let mapped_files = old
        .as_ref()
        .is_some_and(|s| super::memory::write_back_space(s));
    drop(old);
    if mapped_files {
        super::memory::release_unmapped();
    }
    p.files.lock().close_on_exec();
    p.creds.lock().exec();
    super::signal::reset_on_exec(task);
    super::timers::process_execed(p);
    *st = UserState::new(loaded.entry, loaded.rsp);
    *fresh = true;
    p.vfork_done.signal();
    Ok(0)
}

/// Which children a wait call selects.
#[derive(Clone, Copy)]
pub(crate) enum WaitFor {
    /// Any child.
    Any,
    /// This pid.
    Pid(i32),
    /// Members of this process group.
    Pgid(i32),
}

/// Wait options.
pub(crate) const WNOHANG: u32 = 1;
/// `waitid`: do not reap.
pub(crate) const WNOWAIT: u32 = 0x0100_0000;

/// Waits for a child to end: `Ok(Some((pid, status, usage)))` (`usage`: what the child and
/// the children it reaped used), `Ok(None)` with WNOHANG when none has ended yet.
pub(crate) fn wait_child(
    which: WaitFor,
    options: u32,
) -> Result<Option<(i32, i32, super::cputime::Usage)>, Errno> {
    let me = current_process();
    loop {
        let mut found_any = false;
        let mut reaped = None;
        {
            let mut rel = me.rel.lock();
            let mut idx = None;
            for (i, c) in rel.children.iter().enumerate() {
                let m = match which {
                    WaitFor::Any => true,
                    WaitFor::Pid(pid) => c.pid == pid,
                    WaitFor::Pgid(g) => c.pgid() == g,
                };
                if !m {
                    continue;
                }
                found_any = true;
                if c.zombie.load(Ordering::Acquire) {
                    idx = Some(i);
                    break;
                }
            }
            if let Some(i) = idx {
                let c = if options & WNOWAIT != 0 {
                    rel.children[i].clone()
                } else {
                    rel.children.remove(i)
                };
                let status = c.exit_status.lock().unwrap_or(0);
                let usage = c.times.total();
                reaped = Some((c.pid, status, usage));
                if options & WNOWAIT == 0 {
                    PROCS.lock().remove(&c.pid);
                    me.times.child_reaped(&usage);
                }
            }
        }
        if let Some(r) = reaped {
            return Ok(Some(r));
        }
        if !found_any {
            return Err(Errno::ECHILD);
        }
        if options & WNOHANG != 0 {
            return Ok(None);
        }
        if super::signal::pending() {
            return Err(Errno::EINTR);
        }
        let me2 = me.clone();
        me.child_wq.wait_until(move || {
            super::signal::pending()
                || me2.rel.lock().children.iter().any(|c| {
                    c.zombie.load(Ordering::Acquire)
                        && match which {
                            WaitFor::Any => true,
                            WaitFor::Pid(pid) => c.pid == pid,
                            WaitFor::Pgid(g) => c.pgid() == g,
                        }
                })
        });
    }
}

/// `setpgid(pid, pgid)`.
pub(crate) fn setpgid(pid: i32, pgid: i32) -> SysResult {
    let me = current_process();
    let target = if pid == 0 || pid == me.pid {
        me.clone()
    } else {
        let c = find_process(pid).ok_or(Errno::ESRCH)?;
        if c.ppid() != me.pid {
            return Err(Errno::ESRCH);
        }
        c
    };
    if pgid < 0 {
        return Err(Errno::EINVAL);
    }
    let g = if pgid == 0 { target.pid } else { pgid };
    if target.sid() == target.pid {
        return Err(Errno::EPERM);
    }
    target.pgid_.store(g, Ordering::Relaxed);
    Ok(0)
}

/// `setsid()`.
pub(crate) fn setsid() -> SysResult {
    let me = current_process();
    if all_processes().iter().any(|p| p.pgid() == me.pid) && me.pgid() != me.pid {
        return Err(Errno::EPERM);
    }
    if me.pgid() == me.pid {
        return Err(Errno::EPERM);
    }
    me.sid_.store(me.pid, Ordering::Relaxed);
    me.pgid_.store(me.pid, Ordering::Relaxed);
    Ok(me.pid as u64)
}

/// What `/proc/PID/exe` names for `program`, the file an `execve` loaded (a script's
/// interpreter, not the script): its canonical path ([`super::files::path::real_path`]);
/// if that cannot be had (the file went meanwhile), the path as given, made absolute.
fn exe_path(p: &Process, cwd: crate::fs::ramfs::Ino, program: &[u8]) -> Vec<u8> {
    super::files::path::real_path(cwd, program).unwrap_or_else(|_| absolute_path(p, program))
}

/// `path` made absolute against the process's working directory.
fn absolute_path(p: &Process, path: &[u8]) -> Vec<u8> {
    if path.starts_with(b"/") {
        return path.to_vec();
    }
    let cwd = p.fs.lock().cwd;
    let mut out = super::files::path::dir_path(cwd).unwrap_or_else(|_| b"/".to_vec());
    if !out.ends_with(b"/") {
        out.push(b'/');
    }
    // `./prog` is `CWD/prog` (what `/proc/PID/exe` shows and `$ORIGIN` is taken from).
    let mut rest = path;
    while let Some(r) = rest.strip_prefix(b"./") {
        rest = r;
        while let Some(r) = rest.strip_prefix(b"/") {
            rest = r;
        }
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adopted_ids_are_never_handed_out_again() {
        reserve_ids(4000);
        let a = next_id();
        assert!(a > 4000, "{a}");
        // A record of lower ids moves nothing back.
        reserve_ids(7);
        let b = next_id();
        assert!(b > a, "{b} {a}");
    }
}
