//! Kernel hand-over (`pvmux upgrade NAME --kernel NEW`, docs/MULTIKERNEL.md "Kernel
//! hand-over", docs/ABI.md §handover): the kernel's side of the hand-over record.
//!
//! The host raises `pending::HANDOVER`; the event wakes `handoverd` (a kernel thread started
//! with init), which asks the host for the record version (`HandoverTake`), writes the record
//! ([`pvmux_hypercalls::handover`]) in a heap block (physically contiguous) and hands it over
//! (`HandoverRecord`). This kernel writes record version 1 or 2, whichever the host asks
//! for. Version 1 is an *inventory*: every process (pids, parent, group, session,
//! credentials, threads, resident pages), its threads, memory areas and open descriptors —
//! and, as blockers, every live process. Version 2 also carries what a new kernel needs to
//! adopt a live process: its threads' registers, FPU areas, masks and tid addresses, every
//! resident page with its frame, its credentials, capabilities, limits, paths, break and
//! signal dispositions ([`carry_threads`], [`carry_process`]); its blockers name, per
//! process, what version 2 does not carry (open descriptors, file-backed and shared memory
//! areas, timers on another process's or a thread's CPU clock, threads left blocked in a
//! system call). Timers are carried in section 16 ([`super::timers::carry`]). The host refuses an upgrade with
//! blockers, naming them.
//!
//! **Safe point.** While it writes the record, `handoverd` stops every user thread: it sets
//! the freeze, kicks every task, and waits (at most [`FREEZE_TIMEOUT_NS`]) until each
//! task's kernel thread is blocked — either parked at its safe point ([`safe_point`], the
//! top of the thread's loop: in user mode, its registers published for the record) or
//! blocked in a system call. While the freeze is on every task sees a pending signal (as
//! under Linux's freezer): a blocking call returns `EINTR` and, with no real signal to
//! deliver ([`interrupted_by_freeze`]), is rewound to its boundary (`rip` on the `syscall`
//! instruction, `rax` its number) so the thread parks with registers that re-issue it; a
//! thread still blocked after [`BLOCKED_GRACE_NS`] is recorded as blocked. A `vfork` child
//! does not park until it has exec'd or exited (its parent is blocked in `vfork` until then,
//! a wait no freeze can rewind). A process whose last thread has left it but whose exit has
//! not finished (its descriptors, memory and parent's `SIGCHLD` still in flight:
//! [`exiting`]) is waited for too, until it is a zombie. No user code runs until the record
//! is handed over; then the threads are let go. A thread still running, or a process still
//! exiting, at the timeout is named as a blocker.

pub(crate) mod adopt;
pub(crate) mod events;

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use pvmux_hypercalls::handover::{
    blocker, console_flags, fd_kind, fd_state, file_area_flags, file_image_flags, fill_name,
    page_flags, prctl_flags, process_flags, shm_area_flags, sig_queue_kind, synth_flags,
    thread_state, vma_flags, workdir_kind, BlobRef, BlockerEntry, ConsoleEntry, CpuTimesEntry,
    EpollItemEntry, FdEntry, FdStateEntry, FileAreaEntry, FileImageEntry, HostSocketEntry,
    InetMsgEntry, InetSocketEntry, InotifyEntry, InotifyWatchEntry, PageRunEntry, PipeEntry,
    PrctlEntry, ProcessArgsEntry, ProcessEntry, ProcessStateEntry, RecordWriter, RestartEntry,
    ShmAreaEntry, ShmPagesEntry, SigActionEntry, SigQueueEntry, SocketEntry, SocketMsgEntry,
    SynthDataEntry, ThreadEntry, ThreadNameEntry, ThreadStateEntry, TimerEntry, TimerFdEntry,
    TimerWaitEntry, VmaEntry, WorkdirEntry, ZombieEntry, MAX_FPU_LEN, MAX_PIPE_BYTES,
    MAX_RECORD_LEN, MAX_SYNTH_DATA, MIN_RECORD_VERSION, NO_RESTART, NR_RLIMITS, RECORD_VERSION,
    UNREACHABLE_CWD,
};
use pvmux_hypercalls::{HcError, TrapFrame};
use zerocopy::FromZeros;

use super::space::UserState;
use super::task::{self, Process, Task};
use crate::irq::IrqLock;
use crate::sched::wait::WaitQueue;

/// Longest wait for every user thread to reach a safe point (ns).
pub(crate) const FREEZE_TIMEOUT_NS: u64 = 200_000_000;

/// How long a thread found blocked is given to leave its system call and park (ns). A
/// thread in a wait that looks at signals leaves at once; one waiting for the host (a
/// volume or `--rootfs` operation the host serves slowly on a busy machine) leaves when the
/// host answers: on a loaded 2-CPU host that took more than 5 ms now and then, which named
/// the thread as a blocker and refused the upgrade. The grace costs nothing when every
/// thread parks; a thread in a wait that never ends (none that a record can carry) costs
/// a refused upgrade this much later.
const BLOCKED_GRACE_NS: u64 = 50_000_000;

/// User threads stop at their safe point while set.
static FREEZE: AtomicBool = AtomicBool::new(false);
/// Parked threads wait here for the thaw.
static THAW_WQ: WaitQueue = WaitQueue::new();
/// The parked threads, by tid, with their user registers.
static PARKED: IrqLock<BTreeMap<i32, Parked>> = IrqLock::new(BTreeMap::new());

/// A thread parked at its safe point: what it resumes with.
#[derive(Clone)]
struct Parked {
    /// Its inventory entry.
    entry: ThreadEntry,
    /// Its user registers.
    regs: TrapFrame,
    /// Its FPU area (empty: the initial state).
    fp: Vec<u8>,
    /// The system call its registers re-issue ([`NO_RESTART`]: none).
    restart: u64,
}

/// Cleared while this kernel adopts a record and may still give up: the host's objects the
/// record names (host sockets, channel ends) are then the next adopter's, and dropping the
/// kernel's handle on one must not close it on the host.
static HOST_OBJECTS_OURS: AtomicBool = AtomicBool::new(true);

/// An adoption starts ([`adopt::begin`]): until [`adoption_done`], dropping a handle on a
/// host object (a host socket, a channel end) leaves the object as it is on the host.
pub(crate) fn adoption_started() {
    HOST_OBJECTS_OURS.store(false, Ordering::Release);
}

/// The adoption went through ([`adopt::finish`]): the host objects are this kernel's.
pub(crate) fn adoption_done() {
    HOST_OBJECTS_OURS.store(true, Ordering::Release);
}

/// Whether dropping a handle on a host object may change it on the host (close a host
/// socket, end a channel's stream): not while an adoption may still give up.
pub(crate) fn host_objects_are_ours() -> bool {
    HOST_OBJECTS_OURS.load(Ordering::Acquire)
}

/// Freezes so far: a system call that overlapped one and failed with `EINTR` is restarted
/// ([`interrupted_by_freeze`]).
static FREEZES: AtomicU64 = AtomicU64::new(0);

/// While a record is written: blocking system calls see a pending signal (Linux's
/// freezer's fake signal), return `EINTR`, and are rewound to their boundary.
pub(crate) fn freezing() -> bool {
    FREEZE.load(Ordering::Acquire)
}

/// The freeze count, taken at a system call's entry for [`interrupted_by_freeze`].
pub(crate) fn freeze_epoch() -> u64 {
    FREEZES.load(Ordering::Acquire)
}

/// Whether a system call that entered at freeze count `epoch` and failed with `EINTR` was
/// interrupted by a freeze rather than by a signal: a freeze is on or happened since, and
/// the thread has no signal to deliver. Such a call is re-issued at its boundary (`rip` back
/// on the `syscall` instruction, `rax` its number), as Linux restarts a call whose
/// interruption delivered no signal (`-ERESTARTNOINTR`).
pub(crate) fn interrupted_by_freeze(task: &Task, epoch: u64) -> bool {
    (freezing() || freeze_epoch() != epoch)
        && !task.must_exit.load(Ordering::Acquire)
        && !task.sig.has_deliverable()
        && (task.process.shared_sig.pending() & !task.sig.blocked()).is_empty()
}

/// A user thread's safe point (the top of its loop, in user mode): parks it while a
/// hand-over record is written. One atomic load otherwise. `restart` is the system call
/// its registers re-issue ([`NO_RESTART`]: none), for the record.
pub(crate) fn safe_point(task: &Task, st: &mut UserState, restart: u64) {
    if !FREEZE.load(Ordering::Acquire) {
        return;
    }
    // A `vfork` child runs on to its exec or exit: until then its parent is blocked in
    // `vfork`, a wait no freeze can rewind. (Not one rewound out of a blocking call: it
    // would only be interrupted again; it parks, and its parent is recorded as blocked.)
    if restart == NO_RESTART && task.process.vfork_pending() {
        return;
    }
    st.take_kept_fp();
    let e = ThreadEntry {
        tid: task.tid,
        pid: task.process.pid,
        state: thread_state::USER,
        _reserved: 0,
        rip: st.regs.rip,
        rsp: st.regs.rsp,
        fs_base: st.fs_base,
    };
    let mut regs = st.regs;
    regs.vector = 0;
    regs.error_code = 0;
    regs.fault_addr = 0;
    let parked = Parked {
        entry: e,
        regs,
        fp: st.fp.clone(),
        restart,
    };
    PARKED.lock().insert(task.tid, parked);
    THAW_WQ.wait_until(|| !FREEZE.load(Ordering::Acquire));
    PARKED.lock().remove(&task.tid);
}

/// Whether `t`'s kernel thread is blocked (parked, or in a blocking system call) or gone.
fn quiet(t: &Task) -> bool {
    use crate::sched::thread::state;
    t.thread
        .get()
        .and_then(alloc::sync::Weak::upgrade)
        .is_none_or(|th| matches!(th.state(), state::BLOCKED | state::DEAD))
}

/// Whether `p` is between its last thread's exit and being a zombie (`task::exit_process`
/// at work: its kernel thread is no longer any process's, so no freeze waits for it). A
/// record written meanwhile would hold neither the live process nor its zombie.
fn exiting(p: &Process) -> bool {
    !p.zombie.load(Ordering::Acquire) && p.threads.lock().is_empty()
}

/// Stops every user thread and waits for every exiting process to be a zombie (see the
/// module documentation); the threads that did not stop in time.
fn freeze() -> Vec<Arc<Task>> {
    FREEZES.fetch_add(1, Ordering::AcqRel);
    FREEZE.store(true, Ordering::SeqCst);
    let tasks = || -> Vec<Arc<Task>> {
        task::all_processes()
            .iter()
            .flat_map(|p| p.threads.lock().clone())
            .collect()
    };
    for t in tasks() {
        t.kick();
    }
    let start = crate::time::now_ns();
    let deadline = start + FREEZE_TIMEOUT_NS;
    loop {
        let (mut busy, mut blocked) = (Vec::new(), 0usize);
        for t in tasks() {
            if PARKED.lock().contains_key(&t.tid) {
                continue;
            }
            if quiet(&t) {
                blocked += 1;
            } else {
                busy.push(t);
            }
        }
        let now = crate::time::now_ns();
        // A thread blocked in a system call that sees the freeze comes out of it (its call
        // rewound) and parks: it is given BLOCKED_GRACE_NS to; one that stays blocked
        // (a wait that does not look at signals) is recorded as blocked.
        let settled = busy.is_empty()
            && !kernel_steps_running()
            && !task::all_processes().iter().any(|p| exiting(p))
            && (blocked == 0 || now >= start + BLOCKED_GRACE_NS);
        if settled || now >= deadline {
            return busy;
        }
        crate::sched::sleep_until(now + 100_000);
    }
}

/// The in-memory filesystem's change count when the kernel had booted (its initramfs
/// unpacked, `/dev` made), `u64::MAX` before: what a new kernel booted from the same
/// arguments rebuilds by itself.
static FS_BASELINE: AtomicU64 = AtomicU64::new(u64::MAX);

/// The tree is one a hand-over carried (not this kernel's boot's).
static FS_ADOPTED: AtomicBool = AtomicBool::new(false);

/// Notes that the kernel booted: changes to the in-memory filesystem from now on are the
/// programs' (`ramfs::Fs::changes`).
pub(crate) fn fs_booted() {
    FS_BASELINE.store(crate::fs::with(|fs| fs.changes()), Ordering::Release);
}

/// Notes that the tree is a carried one (`adopt::build`): it differs from a boot's.
pub(crate) fn fs_adopted() {
    FS_ADOPTED.store(true, Ordering::Release);
}

/// Whether the in-memory filesystem differs from what a kernel booted from the same
/// arguments makes by itself: the programs changed it since boot (files in memory —
/// `/tmp`, the `--rootfs` overlay —, names, metadata; a volume's are on the host), or it
/// was carried.
fn fs_changed() -> bool {
    let base = FS_BASELINE.load(Ordering::Acquire);
    FS_ADOPTED.load(Ordering::Acquire)
        || base != u64::MAX && crate::fs::with(|fs| fs.changes()) != base
}

/// Version 2: the in-memory filesystem (sections 21-23, `ramfs::carry`): its tree and
/// its files' frames; a blocker for what it cannot carry, or for a filesystem that would
/// make the record larger than [`MAX_RECORD_LEN`] (its entries are then left out). A tree
/// too large that is still the boot's (the share's entries the programs looked at) and
/// that no carried descriptor names by inode is left out without a blocker, as before
/// the filesystem was carried: the adopter's boot makes the same files (the share's
/// inode numbers may differ, as they did then).
fn carry_fs(inv: &mut Inventory) {
    // What programs mounted over other directories (`mount -t proc`) is not carried, nor
    // System V semaphore sets and message queues (their ids would name nothing after).
    let extra = crate::fs::with_real_root(|fs| fs.extra_mounts().len());
    for (what, n) in [
        (&b"proc, sysfs or devpts mounted by programs"[..], extra),
        (
            b"System V semaphore sets",
            crate::linux::sysv_ipc::sem::count(),
        ),
        (
            b"System V message queues",
            crate::linux::sysv_ipc::msg::count(),
        ),
    ] {
        if n > 0 {
            inv.block(0, what, u32::try_from(n).unwrap_or(u32::MAX));
        }
    }
    let before = inv.blob.len();
    let carried = crate::fs::with(|fs| fs.carry_out(&mut |b| inv.blob_add(b)));
    let (what, count): (&[u8], u32) = match carried {
        Ok(c) if (96 + 16 * 22 + inv.size() + c.size()) as u64 <= MAX_RECORD_LEN => {
            inv.fs = Some(c);
            return;
        }
        Ok(_)
            if !fs_changed()
                && !inv
                    .fd_states
                    .iter()
                    .any(|f| f.kind == fd_state::MEMORY_FILE)
                && !inv
                    .shm_areas
                    .iter()
                    .any(|a| a.flags & shm_area_flags::FILE != 0) =>
        {
            inv.blob.truncate(before);
            return;
        }
        Ok(c) => (
            b"in-memory files too many for the record (inodes)",
            u32::try_from(c.nodes.len()).unwrap_or(u32::MAX),
        ),
        Err(e) => e,
    };
    inv.blob.truncate(before);
    inv.block(0, what, count);
}

/// Kernel threads that change what a record carries (the `--publish` relays and their
/// pump) in a step now ([`kernel_step`]).
static KERNEL_STEPS: AtomicUsize = AtomicUsize::new(0);

/// A step of a kernel thread that changes what a record carries ([`kernel_step`]); it ends
/// when dropped.
pub(crate) struct KernelStep(());

impl Drop for KernelStep {
    fn drop(&mut self) {
        KERNEL_STEPS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Begins a step of a kernel thread that changes what a record carries (a relay moving
/// bytes, the pump taking a published connection). `None` while a record is written: the
/// thread has waited for the thaw and must look again at what it was doing. The freeze
/// waits for the steps under way to end, and none begins until the thaw, so the record
/// sees each such thread between two steps.
pub(crate) fn kernel_step() -> Option<KernelStep> {
    // Counted before the freeze is looked at, as the freeze is set before the count is:
    // either the freeze sees this step, or this step sees the freeze.
    KERNEL_STEPS.fetch_add(1, Ordering::SeqCst);
    if !FREEZE.load(Ordering::SeqCst) {
        return Some(KernelStep(()));
    }
    KERNEL_STEPS.fetch_sub(1, Ordering::SeqCst);
    THAW_WQ.wait_until(|| !FREEZE.load(Ordering::Acquire));
    None
}

/// Whether a kernel step is under way.
fn kernel_steps_running() -> bool {
    KERNEL_STEPS.load(Ordering::SeqCst) != 0
}

/// Lets the parked threads go.
fn thaw() {
    FREEZE.store(false, Ordering::SeqCst);
    THAW_WQ.wake_all();
}

/// The kernel's release as built (the image's hand-over note): the build-time
/// `PVMUX_KERNEL_RELEASE`, else `6.1.0-pvmux`. What `uname -r` and `/proc/version` show is
/// [`release`], the note as the image carries it.
pub(crate) const RELEASE: &str = match option_env!("PVMUX_KERNEL_RELEASE") {
    Some(r) => r,
    None => "6.1.0-pvmux",
};

/// The release this image declares in its hand-over note (`uname -r`, `/proc/version`): the
/// one the host reads from the image and names in `pvmux upgrade`, so an image whose note
/// was rewritten (the tests' `6.1.0-pvmux-next`) says so itself. [`RELEASE`] when the note
/// holds no text.
pub(crate) fn release() -> &'static [u8] {
    let r = pvmux_hypercalls::handover::until_nul(&crate::handover_note().release);
    if r.is_empty() {
        RELEASE.as_bytes()
    } else {
        r
    }
}

/// Bumped by every `pending::HANDOVER` event.
static SEQ: AtomicU64 = AtomicU64::new(0);
/// `handoverd` waits here.
static WQ: WaitQueue = WaitQueue::new();
/// `handoverd` runs.
static STARTED: AtomicBool = AtomicBool::new(false);

/// The `pending::HANDOVER` event. Safe in event context.
pub(crate) fn event() {
    SEQ.fetch_add(1, Ordering::AcqRel);
    WQ.wake_all();
}

/// Starts `handoverd` (once).
pub(crate) fn start_daemon() {
    if STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    if crate::sched::spawn("handoverd", None, daemon).is_err() {
        crate::println!("pvmux-kernel: cannot start handoverd: kernel upgrades are refused");
    }
}

/// `handoverd`: answers each request of the host.
fn daemon() {
    loop {
        let seq = SEQ.load(Ordering::Acquire);
        match crate::hcall::handover_take() {
            Ok(0) => {}
            Ok(v) => answer(v),
            Err(HcError::UnknownCall) => return,
            Err(_) => {}
        }
        WQ.wait_until(|| SEQ.load(Ordering::Acquire) != seq);
    }
}

/// Writes the record of `version` and hands it to the host.
fn answer(version: u64) {
    let Some(version) = u32::try_from(version)
        .ok()
        .filter(|v| (MIN_RECORD_VERSION..=RECORD_VERSION).contains(v))
    else {
        crate::hcall::handover_record_failed(HcError::InvalidArgument);
        return;
    };
    let busy = freeze();
    let procs = task::all_processes();
    let mut inv = inventory(&procs, version);
    inv.threads = threads(&procs, &busy);
    if version >= 2 {
        carry_threads(&procs, &mut inv);
    }
    if !busy.is_empty() {
        inv.block(0, b"threads did not reach a safe point", busy.len() as u32);
    }
    carry_relays(&mut inv, version);
    carry_disks(&mut inv, version);
    carry_exec_sessions(&mut inv, version);
    if version >= 2 {
        carry_fs(&mut inv);
    }
    let mut out: Vec<u8> = Vec::new();
    // The record is the host's to read: refused rather than grown past what it accepts.
    let size = 96 + 16 * 26 + inv.size();
    if size as u64 > MAX_RECORD_LEN || out.try_reserve_exact(size).is_err() {
        thaw();
        crate::hcall::handover_record_failed(HcError::NoResources);
        return;
    }
    inv.write(&mut out, version, release());
    match crate::boot::virt_to_phys(out.as_ptr() as u64, out.len() as u64) {
        Some(gpa) => crate::hcall::handover_record(gpa, out.len() as u64),
        None => crate::hcall::handover_record_failed(HcError::NoResources),
    }
    // The switch is not implemented: every thread goes on where it stopped.
    thaw();
}

/// The relays of `--publish` connections (section 46, version 4), and the loopback's
/// sockets when one of them has one; a blocker for a relay that is still in a step (the
/// freeze timed out), or for live relays in an older version, which has none.
fn carry_relays(inv: &mut Inventory, version: u32) {
    if kernel_steps_running() {
        return inv.block(
            0,
            b"kernel relays (--publish, exec sessions) did not stop",
            1,
        );
    }
    let Inventory {
        relays, inet, blob, ..
    } = inv;
    let mut add = |b: &[u8]| blob_push(blob, b);
    *relays = super::net::inet::relay::carry(&mut add);
    if relays.is_empty() {
        return;
    }
    if version < 4 {
        let n = relays.len() as u32;
        relays.clear();
        let what = alloc::format!("--publish relays (record version {version} has none)");
        return inv.block(0, what.as_bytes(), n);
    }
    if inet.is_none() && super::net::inet::relay::any_socket() {
        match super::net::inet::carry(&mut add) {
            Ok(c) => *inet = Some(c),
            Err(what) => inv.block(0, what, 1),
        }
    }
}

/// The disks attached to this kernel (section 47, version 5), each mounted one written
/// back first; a blocker for what cannot be carried, or for attached disks in an older
/// version, which has none.
fn carry_disks(inv: &mut Inventory, version: u32) {
    let n = crate::fs::disk::attached().len() as u32;
    if n == 0 {
        return;
    }
    if version < 5 {
        let what = alloc::format!("disks (record version {version} has none)");
        return inv.block(0, what.as_bytes(), n);
    }
    let Inventory { disks, blob, .. } = inv;
    match crate::fs::disk::carry(&mut |b| blob_push(blob, b)) {
        Ok(d) => *disks = d,
        Err((what, n)) => inv.block(0, what, n),
    }
}

/// The exec sessions in progress (section 48, version 6), with the pipes their relays hold
/// and those pipes' bytes; a blocker for what cannot be carried, or for sessions in an
/// older version, which has none.
fn carry_exec_sessions(inv: &mut Inventory, version: u32) {
    let carried = match super::exec_session::carry() {
        Ok(c) if c.is_empty() => return,
        Ok(c) => c,
        Err((what, n)) => return inv.block(0, what, n),
    };
    if version < 6 {
        let what = alloc::format!("exec sessions (record version {version} has none)");
        return inv.block(0, what.as_bytes(), carried.len() as u32);
    }
    for c in carried {
        let mut e = c.entry;
        let mut ids = [0u64; 3];
        for (id, p) in ids.iter_mut().zip(&c.pipes) {
            if let Some(p) = p {
                match carry_pipe(&mut inv.pipes, &mut inv.blob, p) {
                    Ok(i) => *id = i,
                    Err(what) => return inv.block(0, what, 1),
                }
            }
        }
        [e.stdin, e.stdout, e.stderr] = ids;
        e.to_guest = inv.blob_add(&c.bytes[0]);
        e.to_stdout = inv.blob_add(&c.bytes[1]);
        e.to_stderr = inv.blob_add(&c.bytes[2]);
        inv.exec_sessions.push(e);
    }
}

/// The threads of `procs`: parked ones with their registers, the others blocked in a system
/// call or (in `busy`) still running.
fn threads(procs: &[Arc<Process>], busy: &[Arc<Task>]) -> Vec<ThreadEntry> {
    let parked: BTreeMap<i32, ThreadEntry> =
        PARKED.lock().iter().map(|(&t, p)| (t, p.entry)).collect();
    let mut out = Vec::new();
    for p in procs {
        for t in p.threads.lock().iter() {
            out.push(parked.get(&t.tid).copied().unwrap_or(ThreadEntry {
                tid: t.tid,
                pid: p.pid,
                state: if busy.iter().any(|b| b.tid == t.tid) {
                    thread_state::RUNNING
                } else {
                    thread_state::SYSCALL
                },
                ..Default::default()
            }));
        }
    }
    out.sort_by_key(|t| t.tid);
    out
}

/// Version 2: what each thread resumes with (registers, FPU area, signal state, tid
/// address), and a blocker per process for its threads blocked in a system call (their
/// restart is not carried yet).
fn carry_threads(procs: &[Arc<Process>], inv: &mut Inventory) {
    let parked = PARKED.lock().clone();
    for p in procs {
        if p.zombie.load(Ordering::Relaxed) {
            continue;
        }
        let mut blocked = 0u32;
        for t in p.threads.lock().iter() {
            let mut e = ThreadStateEntry {
                tid: t.tid,
                pid: p.pid,
                state: thread_state::SYSCALL,
                _reserved: 0,
                regs: TrapFrame::default(),
                fs_base: 0,
                clear_child_tid: t.clear_child_tid.load(Ordering::Relaxed),
                sigmask: t.sig.blocked().bits(),
                pending: t.sig.own_pending().bits(),
                restart_nr: NO_RESTART,
                fpu: BlobRef::default(),
                altstack_sp: 0,
                altstack_size: 0,
                altstack_flags: 0,
                _reserved2: 0,
            };
            (e.altstack_sp, e.altstack_size, e.altstack_flags) = t.sig.altstack_raw();
            carry_sig_queue(inv, sig_queue_kind::THREAD, t.tid, t.sig.own());
            if let Some(n) = t.name.lock().as_ref() {
                let mut name = ThreadNameEntry {
                    tid: t.tid,
                    len: n.len().min(15) as u32,
                    name: [0; 16],
                };
                name.name[..name.len as usize].copy_from_slice(&n[..name.len as usize]);
                inv.thread_names.push(name);
            }
            let (nice, affinity) = (
                t.nice.load(Ordering::Relaxed),
                t.affinity.load(Ordering::Relaxed),
            );
            if nice != 0 || affinity != u64::MAX {
                inv.thread_scheds
                    .push(pvmux_hypercalls::handover::ThreadSchedEntry {
                        tid: t.tid,
                        nice,
                        affinity,
                    });
            }
            let robust = t.robust_list.load(Ordering::Relaxed);
            if robust != 0 {
                inv.robust_lists
                    .push(pvmux_hypercalls::handover::RobustListEntry {
                        tid: t.tid,
                        _reserved: 0,
                        head: robust,
                    });
            }
            match parked.get(&t.tid) {
                Some(k) if k.fp.len() <= MAX_FPU_LEN as usize => {
                    e.state = thread_state::USER;
                    e.regs = k.regs;
                    e.fs_base = k.entry.fs_base;
                    e.restart_nr = k.restart;
                    e.fpu = inv.blob_add(&k.fp);
                    // A sleep it goes on with when it re-issues the call: until when.
                    if let Some(b) = *t.restart_block.lock() {
                        if k.restart != NO_RESTART
                            && b.nr == k.restart
                            && t.restart_armed.load(Ordering::Relaxed)
                        {
                            inv.restarts.push(RestartEntry {
                                tid: t.tid,
                                reserved: 0,
                                nr: b.nr,
                                ret_rip: b.ret_rip,
                                target_ns: b.target,
                                rem: b.rem,
                            });
                        }
                    }
                }
                _ => blocked += 1,
            }
            inv.thread_states.push(e);
        }
        if blocked > 0 {
            inv.block(p.pid, b"threads blocked in a system call", blocked);
        }
    }
    inv.thread_states.sort_by_key(|t| t.tid);
    inv.thread_names.sort_by_key(|e| e.tid);
    inv.robust_lists.sort_by_key(|e| e.tid);
    inv.thread_scheds.sort_by_key(|e| e.tid);
    inv.restarts.sort_by_key(|r| r.tid);
    carry_cpu_times(procs, inv);
}

/// Version 2: the CPU times and faults of every live thread and process (section 28), which
/// the adopting kernel goes on counting from.
fn carry_cpu_times(procs: &[Arc<Process>], inv: &mut Inventory) {
    use crate::linux::cputime::{self, Usage};
    use pvmux_hypercalls::handover::{cpu_times_kind as kind, MAX_CPU_NS};
    let entry = |id: i32, kind: u32, u: &Usage| CpuTimesEntry {
        id,
        kind,
        user_ns: u.user_ns.min(MAX_CPU_NS),
        system_ns: u.system_ns.min(MAX_CPU_NS),
        maxrss_kib: u.maxrss_kib.min(MAX_CPU_NS),
        minflt: u.minflt.min(MAX_CPU_NS),
    };
    let live = || procs.iter().filter(|p| !p.zombie.load(Ordering::Relaxed));
    for p in live() {
        for t in p.threads.lock().iter() {
            let u = cputime::thread_usage(t);
            inv.cpu_times.push(entry(
                t.tid,
                kind::THREAD,
                &Usage {
                    maxrss_kib: 0,
                    minflt: 0,
                    ..u
                },
            ));
        }
    }
    // A zombie's too: what its parent's `wait4` reports and adds to its own children's.
    for p in procs {
        inv.cpu_times
            .push(entry(p.pid, kind::ENDED, &p.times.ended_usage()));
        inv.cpu_times
            .push(entry(p.pid, kind::CHILDREN, &p.times.children()));
    }
    inv.cpu_times.sort_by_key(|e| (e.kind, e.id));
}

/// What record version 1 lists.
#[derive(Default)]
pub(crate) struct Inventory {
    pub(crate) processes: Vec<ProcessEntry>,
    pub(crate) threads: Vec<ThreadEntry>,
    pub(crate) vmas: Vec<VmaEntry>,
    pub(crate) fds: Vec<FdEntry>,
    pub(crate) blockers: Vec<BlockerEntry>,
    // Version 2.
    pub(crate) thread_states: Vec<ThreadStateEntry>,
    pub(crate) pages: Vec<PageRunEntry>,
    pub(crate) states: Vec<ProcessStateEntry>,
    pub(crate) sigactions: Vec<SigActionEntry>,
    pub(crate) fd_states: Vec<FdStateEntry>,
    pub(crate) file_areas: Vec<FileAreaEntry>,
    /// Where each file area's pages come from (section 15).
    pub(crate) file_images: Vec<FileImageEntry>,
    pub(crate) zombies: Vec<ZombieEntry>,
    /// Version 2: every carried timer (in (pid, kind, id) order).
    pub(crate) timers: Vec<TimerEntry>,
    /// By id.
    pub(crate) pipes: BTreeMap<u64, PipeEntry>,
    /// Open file descriptions seen, by address: their ordinals in the record.
    descriptions: BTreeMap<usize, u64>,
    /// The `AF_UNIX` sockets the carried descriptors reach (sections 17 and 19).
    pub(crate) sockets: super::net::unix::carry::Carry,
    /// The loopback's internet sockets (sections 18 and 20), written whole once a carried
    /// descriptor names one of them.
    pub(crate) inet: Option<(Vec<InetSocketEntry>, Vec<InetMsgEntry>)>,
    /// The host sockets (`--net host`) that carry internet sockets, by the sockets' ids
    /// (section 41; their entries flagged `HOST`).
    pub(crate) host_sockets: BTreeMap<u64, u64>,
    /// The carried timerfds' timers, by description (section 24).
    pub(crate) timerfds: BTreeMap<u64, TimerFdEntry>,
    /// The carried epolls, by description: the process of the first descriptor seen, and
    /// the epoll ([`events::carry_epolls`] writes their lists once every descriptor is
    /// carried).
    pub(crate) epolls: BTreeMap<u64, (i32, Arc<super::files::OpenFile>)>,
    /// Their registrations (section 25).
    pub(crate) epoll_items: Vec<EpollItemEntry>,
    /// Each live process's arguments and environment (section 26, in pid order).
    pub(crate) process_args: Vec<ProcessArgsEntry>,
    /// The sleeps threads go on with (section 27, in tid order).
    pub(crate) restarts: Vec<RestartEntry>,
    /// CPU times of live threads and processes (section 28, in kind and id order).
    pub(crate) cpu_times: Vec<CpuTimesEntry>,
    /// The `MAP_SHARED` areas (section 29, in (pid, address) order).
    pub(crate) shm_areas: Vec<ShmAreaEntry>,
    /// The anonymous shared objects they map, by address: their numbers in the record
    /// (from 1, in the order first seen) and the objects.
    shm_objects: BTreeMap<usize, (u64, Arc<crate::linux::shmem::ShmObject>)>,
    /// Their pages (section 30, in (object, index) order), listed once every process is.
    pub(crate) shm_pages: Vec<ShmPagesEntry>,
    /// The console's state (section 31; none in version 1).
    pub(crate) console: Vec<ConsoleEntry>,
    /// Pending signals' information (section 32, in (kind, owner) order).
    pub(crate) sig_queues: Vec<SigQueueEntry>,
    /// The carried inotify instances, by description (section 33).
    pub(crate) inotifies: BTreeMap<u64, InotifyEntry>,
    /// Their watches (section 34, in (description, wd) order once every process is carried).
    pub(crate) inotify_watches: Vec<InotifyWatchEntry>,
    /// The snapshots of generated files read in part, by description (section 35).
    pub(crate) synth_data: BTreeMap<u64, SynthDataEntry>,
    /// Live processes' `prctl` state (section 36, in pid order).
    pub(crate) prctl: Vec<PrctlEntry>,
    /// Threads' names (section 37, in tid order).
    pub(crate) thread_names: Vec<ThreadNameEntry>,
    /// Periodic POSIX timers waiting for their pending signal (section 38, in (pid, id)
    /// order).
    pub(crate) timer_waits: Vec<TimerWaitEntry>,
    /// Working directories without a path (section 39, in pid order).
    pub(crate) workdirs: Vec<WorkdirEntry>,
    /// The files of image areas whose file has no name left, by inode (section 42, in
    /// (pid, start) order).
    pub(crate) file_area_inodes: Vec<pvmux_hypercalls::handover::FileAreaInodeEntry>,
    /// The advisory locks held (section 43, version 3).
    pub(crate) locks: Vec<pvmux_hypercalls::handover::LockEntry>,
    /// The threads' robust futex lists (section 44, version 3; in tid order).
    pub(crate) robust_lists: Vec<pvmux_hypercalls::handover::RobustListEntry>,
    /// The threads' scheduling parameters other than the defaults (section 45, version 3;
    /// in tid order).
    pub(crate) thread_scheds: Vec<pvmux_hypercalls::handover::ThreadSchedEntry>,
    /// The relays of published connections (section 46, version 4; in socket order).
    pub(crate) relays: Vec<pvmux_hypercalls::handover::RelayEntry>,
    /// The disks attached (section 47, version 5; in slot order).
    pub(crate) disks: Vec<pvmux_hypercalls::handover::DiskEntry>,
    /// The exec sessions in progress (section 48, version 6; in session order).
    pub(crate) exec_sessions: Vec<pvmux_hypercalls::handover::ExecSessionEntry>,
    /// The record's number of each carried open file description, by its
    /// [`super::files::OpenFile::id`] (what owns its locks).
    description_ids: BTreeMap<u64, u64>,
    /// A carried description of each (process, inode) with a descriptor of it: what names
    /// the file of a process's record lock.
    fd_inodes: BTreeMap<(i32, u64), u64>,
    /// The in-memory filesystem (sections 21-23), when it is carried.
    pub(crate) fs: Option<crate::fs::ramfs::carry::Carried>,
    pub(crate) blob: Vec<u8>,
}

impl Inventory {
    /// Bytes of its entries.
    fn size(&self) -> usize {
        use core::mem::size_of;
        self.processes.len() * size_of::<ProcessEntry>()
            + self.threads.len() * size_of::<ThreadEntry>()
            + self.vmas.len() * size_of::<VmaEntry>()
            + self.fds.len() * size_of::<FdEntry>()
            + self.blockers.len() * size_of::<BlockerEntry>()
            + self.thread_states.len() * size_of::<ThreadStateEntry>()
            + self.pages.len() * size_of::<PageRunEntry>()
            + self.states.len() * size_of::<ProcessStateEntry>()
            + self.sigactions.len() * size_of::<SigActionEntry>()
            + self.fd_states.len() * size_of::<FdStateEntry>()
            + self.file_areas.len() * size_of::<FileAreaEntry>()
            + self.file_images.len() * size_of::<FileImageEntry>()
            + self.zombies.len() * size_of::<ZombieEntry>()
            + self.timers.len() * size_of::<TimerEntry>()
            + self.pipes.len() * size_of::<PipeEntry>()
            + self.sockets.len().0 * size_of::<SocketEntry>()
            + self.sockets.len().1 * size_of::<SocketMsgEntry>()
            + self.inet.as_ref().map_or(0, |(s, m)| {
                s.len() * size_of::<InetSocketEntry>() + m.len() * size_of::<InetMsgEntry>()
            })
            + self.timerfds.len() * size_of::<TimerFdEntry>()
            + self.epoll_items.len() * size_of::<EpollItemEntry>()
            + self.process_args.len() * size_of::<ProcessArgsEntry>()
            + self.restarts.len() * size_of::<RestartEntry>()
            + self.cpu_times.len() * size_of::<CpuTimesEntry>()
            + self.shm_areas.len() * size_of::<ShmAreaEntry>()
            + self.shm_pages.len() * size_of::<ShmPagesEntry>()
            + self.console.len() * size_of::<ConsoleEntry>()
            + self.sig_queues.len() * size_of::<SigQueueEntry>()
            + self.inotifies.len() * size_of::<InotifyEntry>()
            + self.inotify_watches.len() * size_of::<InotifyWatchEntry>()
            + self.synth_data.len() * size_of::<SynthDataEntry>()
            + self.prctl.len() * size_of::<PrctlEntry>()
            + self.thread_names.len() * size_of::<ThreadNameEntry>()
            + self.timer_waits.len() * size_of::<TimerWaitEntry>()
            + self.workdirs.len() * size_of::<WorkdirEntry>()
            + self.host_sockets.len() * size_of::<HostSocketEntry>()
            + self.file_area_inodes.len()
                * size_of::<pvmux_hypercalls::handover::FileAreaInodeEntry>()
            + self.locks.len() * size_of::<pvmux_hypercalls::handover::LockEntry>()
            + self.robust_lists.len() * size_of::<pvmux_hypercalls::handover::RobustListEntry>()
            + self.thread_scheds.len() * size_of::<pvmux_hypercalls::handover::ThreadSchedEntry>()
            + self.relays.len() * size_of::<pvmux_hypercalls::handover::RelayEntry>()
            + self.disks.len() * size_of::<pvmux_hypercalls::handover::DiskEntry>()
            + self.exec_sessions.len() * size_of::<pvmux_hypercalls::handover::ExecSessionEntry>()
            + self.fs.as_ref().map_or(0, |c| c.size())
            + self.blob.len()
    }

    /// The number of anonymous shared object `obj` in the record (a new one the first time).
    fn shm_object(&mut self, obj: &Arc<crate::linux::shmem::ShmObject>) -> u64 {
        let next = self.shm_objects.len() as u64 + 1;
        self.shm_objects
            .entry(Arc::as_ptr(obj) as usize)
            .or_insert_with(|| (next, obj.clone()))
            .0
    }

    /// The pages of every anonymous shared object (section 30): runs of consecutive
    /// indexes in consecutive frames, in (object, index) order.
    fn shm_page_runs(&self) -> Vec<ShmPagesEntry> {
        let mut objects: Vec<_> = self.shm_objects.values().collect();
        objects.sort_by_key(|(id, _)| *id);
        let mut runs: Vec<ShmPagesEntry> = Vec::new();
        let page = pvmux_hypercalls::PAGE_SIZE;
        for (id, obj) in objects {
            for (index, gpa) in obj.frames() {
                if let Some(r) = runs.last_mut().filter(|r| {
                    r.object == *id && r.index + r.pages == index && r.gpa + r.pages * page == gpa
                }) {
                    r.pages += 1;
                    continue;
                }
                runs.push(ShmPagesEntry {
                    object: *id,
                    index,
                    gpa,
                    pages: 1,
                });
            }
        }
        runs
    }

    /// Appends `b` to the blob; where it is.
    /// Names `count` of `what` (of process `pid`, 0: the kernel's) that the record cannot
    /// carry.
    fn block(&mut self, pid: i32, what: &[u8], count: u32) {
        let mut b = BlockerEntry {
            kind: blocker::KERNEL,
            pid,
            count,
            ..FromZeros::new_zeroed()
        };
        fill_name(&mut b.what, what);
        self.blockers.push(b);
    }

    fn blob_add(&mut self, b: &[u8]) -> BlobRef {
        blob_push(&mut self.blob, b)
    }

    /// The record of `version`, in `out` (empty).
    pub(crate) fn write(&self, out: &mut Vec<u8>, version: u32, release: &[u8]) {
        let mut w = RecordWriter::new(out, version, release);
        w.section(&self.processes);
        w.section(&self.threads);
        w.section(&self.vmas);
        w.section(&self.fds);
        w.section(&self.blockers);
        if version >= 2 {
            w.section(&self.thread_states);
            w.section(&self.pages);
            w.section(&self.states);
            w.section(&self.sigactions);
            w.section(&self.fd_states);
            let pipes: Vec<PipeEntry> = self.pipes.values().copied().collect();
            w.section(&pipes);
            w.section(&self.file_areas);
            w.section(&self.zombies);
            w.section(&self.file_images);
            w.section(&self.timers);
            let description = |f: &Arc<super::files::OpenFile>| {
                self.descriptions
                    .get(&(Arc::as_ptr(f) as *const () as usize))
                    .copied()
            };
            let (socks, msgs, in_flight) = self.sockets.finish(&description);
            w.section(&socks);
            w.section(&msgs);
            if let Some((socks, msgs)) = &self.inet {
                let socks: Vec<InetSocketEntry> = socks
                    .iter()
                    .map(|e| {
                        let mut e = *e;
                        if self.host_sockets.contains_key(&e.id) {
                            e.flags |= pvmux_hypercalls::handover::inet_flags::HOST;
                        }
                        e
                    })
                    .collect();
                w.section(&socks);
                w.section(msgs);
            }
            let timerfds: Vec<TimerFdEntry> = self.timerfds.values().copied().collect();
            w.section(&timerfds);
            w.section(&self.epoll_items);
            w.section(&self.process_args);
            w.section(&self.restarts);
            w.section(&self.cpu_times);
            w.section(&self.shm_areas);
            w.section(&self.shm_pages);
            w.section(&self.console);
            w.section(&self.sig_queues);
            let inotifies: Vec<InotifyEntry> = self.inotifies.values().copied().collect();
            w.section(&inotifies);
            w.section(&self.inotify_watches);
            let synth: Vec<SynthDataEntry> = self.synth_data.values().copied().collect();
            w.section(&synth);
            w.section(&self.prctl);
            w.section(&self.thread_names);
            w.section(&self.timer_waits);
            w.section(&self.workdirs);
            w.section(&in_flight);
            let hosts: Vec<HostSocketEntry> = self
                .host_sockets
                .iter()
                .map(|(&socket, &handle)| HostSocketEntry { socket, handle })
                .collect();
            w.section(&hosts);
            w.section(&self.file_area_inodes);
            if version >= 3 {
                w.section(&self.locks);
                w.section(&self.robust_lists);
                w.section(&self.thread_scheds);
            }
            if version >= 4 {
                w.section(&self.relays);
            }
            if version >= 5 {
                w.section(&self.disks);
            }
            if version >= 6 {
                w.section(&self.exec_sessions);
            }
            if let Some(fs) = &self.fs {
                w.section(&fs.nodes);
                w.section(&fs.dirents);
                w.section(&fs.pages);
            }
            w.blob(&self.blob);
        }
        w.finish();
    }
}

/// Appends `b` to the record's blob `blob`: where it is (for a caller that holds other
/// parts of the inventory borrowed, [`Inventory::blob_add`] otherwise).
/// Version 2: pipe `pipe` with the bytes buffered in it (once); its id.
fn carry_pipe(
    pipes: &mut BTreeMap<u64, PipeEntry>,
    blob: &mut Vec<u8>,
    pipe: &super::files::pipe::Pipe,
) -> Result<u64, &'static [u8]> {
    if let alloc::collections::btree_map::Entry::Vacant(e) = pipes.entry(pipe.id) {
        let bytes = pipe.buffered();
        if bytes.len() > MAX_PIPE_BYTES as usize {
            return Err(b"pipes holding more than 1 MiB");
        }
        let data = blob_push(blob, &bytes);
        e.insert(PipeEntry {
            id: pipe.id,
            data,
            _reserved: 0,
        });
    }
    Ok(pipe.id)
}

fn blob_push(blob: &mut Vec<u8>, b: &[u8]) -> BlobRef {
    let r = BlobRef {
        off: blob.len() as u32,
        len: b.len() as u32,
    };
    blob.extend_from_slice(b);
    r
}

/// Version 2: the information of every signal pending in `pending` (a thread's own queue,
/// `kind` THREAD, or a process's, PROCESS; `owner` its tid or pid), in the order sent
/// (section 32); at most `MAX_SIG_QUEUE`.
fn carry_sig_queue(
    inv: &mut Inventory,
    kind: u32,
    owner: i32,
    pending: &crate::linux::signal::Pending,
) {
    use pvmux_hypercalls::handover::MAX_SIG_QUEUE;
    for info in pending.infos().into_iter().take(MAX_SIG_QUEUE) {
        let c = info.to_carried();
        let rest = match c.rest {
            Some(r) => inv.blob_add(&r),
            None => BlobRef::default(),
        };
        inv.sig_queues.push(SigQueueEntry {
            owner,
            kind,
            signo: info.signo,
            code: info.code,
            detail: c.detail,
            a: c.a,
            b: c.b,
            c: c.c,
            v: c.v,
            rest,
        });
    }
}

/// Version 2: the console's state (section 31): its unread input and, as a terminal, its
/// settings, size, foreground group and the line being typed (descriptors of a terminal
/// console are then carried like the others).
fn carry_console(inv: &mut Inventory) {
    let c = super::files::tty::carry_out();
    let lines: Vec<u8> = c
        .lines
        .iter()
        .flat_map(|&n| (n as u32).to_le_bytes())
        .collect();
    let input = inv.blob_add(&c.input);
    let lines = inv.blob_add(&lines);
    let edit = inv.blob_add(&c.edit);
    inv.console.push(ConsoleEntry {
        termios: c.termios,
        flags: if c.eof { console_flags::EOF } else { 0 },
        winsize: c.winsize,
        fg_pgrp: c.fg_pgrp,
        reserved: 0,
        input,
        lines,
        edit,
    });
}

/// The inventory of `procs` for a record of `version` (for version 2, with what it carries
/// of each process; the threads are added by [`carry_threads`]).
fn inventory(procs: &[Arc<Process>], version: u32) -> Inventory {
    let mut inv = Inventory::default();
    for p in procs {
        let threads = p.threads.lock().len() as u32;
        let zombie = p.zombie.load(Ordering::Relaxed) || threads == 0;
        let creds = p.creds.lock().clone();
        let comm = super::procfs::snap::comm(p);
        let resident = p.space().map_or(0, |s| {
            let u = s.mm.lock().usage();
            (u.private_pages + u.shared_pages) as u64
        });
        let mut e = ProcessEntry {
            pid: p.pid,
            ppid: p.ppid(),
            pgid: p.pgid(),
            sid: p.sid(),
            uid: creds.uid,
            gid: creds.gid,
            nr_threads: threads,
            flags: if zombie {
                process_flags::ZOMBIE
            } else if p.space().is_some_and(|s| s.is_inproc()) {
                process_flags::IN_PROCESS
            } else {
                0
            },
            resident_pages: resident,
            comm: [0; 16],
        };
        fill_name(&mut e.comm, &comm);
        inv.processes.push(e);
        for l in super::procfs::snap::maps(p) {
            let mut v = VmaEntry {
                pid: p.pid,
                flags: vma_bits(l.rwx, l.shared, l.on_fork),
                start: l.start,
                end: l.end,
                ..FromZeros::new_zeroed()
            };
            fill_name(&mut v.name, &l.name);
            inv.vmas.push(v);
        }
        let mut nr_fds = 0u32;
        let mut open = Vec::new();
        for fd in super::procfs::snap::open_fds(p) {
            let (f, cloexec) = {
                let t = p.files.lock();
                let Ok(f) = t.get(fd) else {
                    continue;
                };
                (f, t.cloexec(fd).unwrap_or(false))
            };
            open.push((fd, f.clone(), cloexec));
            let mut e = FdEntry {
                pid: p.pid,
                fd,
                kind: fd_class(&f),
                ..FromZeros::new_zeroed()
            };
            fill_name(&mut e.name, &super::procfs::link_name(&f));
            inv.fds.push(e);
            nr_fds += 1;
        }
        if zombie {
            if version >= 2 && p.zombie.load(Ordering::Relaxed) {
                let status = (*p.exit_status.lock()).unwrap_or(0);
                inv.zombies.push(ZombieEntry { pid: p.pid, status });
            } else if version >= 2 {
                // Still exiting at the freeze's timeout: neither live nor a zombie yet, so
                // the record cannot carry it (its parent would wait for it forever).
                inv.block(p.pid, b"process still exiting", 1);
            }
            continue;
        }
        if version >= 2 {
            carry_process(p, &open, &mut inv);
            continue;
        }
        // Record version 1 lists a live process; it does not carry its memory or files (nor
        // its threads' FPU state and signal state): a new kernel could not adopt it.
        let mut b = BlockerEntry {
            kind: blocker::PROCESS,
            pid: p.pid,
            count: 1,
            ..FromZeros::new_zeroed()
        };
        let mut what = Vec::from(&b"process "[..]);
        what.extend_from_slice(&comm);
        fill_name(&mut b.what, &what);
        inv.blockers.push(b);
        if nr_fds > 0 {
            let mut b = BlockerEntry {
                kind: blocker::FILES,
                pid: p.pid,
                count: nr_fds,
                ..FromZeros::new_zeroed()
            };
            fill_name(&mut b.what, b"open file descriptors");
            inv.blockers.push(b);
        }
    }
    if version >= 2 {
        // The descriptions in flight first: an epoll may watch a file only a message in
        // flight holds, and its registration names the file's description.
        carry_in_flight(&mut inv);
        carry_locks(&mut inv, version);
        events::carry_epolls(&mut inv);
        inv.shm_pages = inv.shm_page_runs();
        carry_console(&mut inv);
        inv.sig_queues.sort_by_key(|e| (e.kind, e.owner));
    }
    inv.processes.sort_by_key(|p| p.pid);
    inv.vmas.sort_by_key(|v| (v.pid, v.start));
    inv.fds.sort_by_key(|f| (f.pid, f.fd));
    inv.fd_states.sort_by_key(|f| (f.pid, f.fd));
    inv.file_areas.sort_by_key(|a| (a.pid, a.start));
    inv.shm_areas.sort_by_key(|a| (a.pid, a.start));
    inv.file_images.sort_by_key(|a| (a.pid, a.start));
    inv.timers.sort_by_key(|t| (t.pid, t.kind, t.id));
    inv.inotify_watches.sort_by_key(|w| (w.description, w.wd));
    inv.prctl.sort_by_key(|e| e.pid);
    inv.thread_names.sort_by_key(|e| e.tid);
    inv.timer_waits.sort_by_key(|e| (e.pid, e.id));
    inv.workdirs.sort_by_key(|e| e.pid);
    inv.file_area_inodes.sort_by_key(|e| (e.pid, e.start));
    inv.states.sort_by_key(|e| e.pid);
    inv
}

/// Version 2: what the record carries of the live process `p` (credentials, paths, break,
/// signal dispositions, every resident page and its frame, its descriptors: `fds`, each
/// with its description and close-on-exec flag; its `MAP_SHARED` areas' objects: anonymous
/// ones — and a file's whose inode is gone — by number, an in-memory file's by inode), and
/// blockers for what it does not carry yet (the descriptors [`carry_fd`] cannot; mappings
/// of files it cannot name; shared mappings of host or volume files; timers it cannot
/// carry, [`super::timers::carry`]).
fn carry_process(
    p: &Arc<Process>,
    fds: &[(i32, Arc<super::files::OpenFile>, bool)],
    inv: &mut Inventory,
) {
    let c = p.creds.lock().clone();
    let exe = p.exe.lock().clone();
    // A root directory of its own (`chroot`) is not carried: adopted, the process would be
    // out of it. A blocker, so that no upgrade lets it out.
    if p.fs.lock().root != crate::fs::ramfs::ROOT_INO {
        let mut b = BlockerEntry {
            kind: blocker::PROCESS,
            pid: p.pid,
            count: 1,
            ..FromZeros::new_zeroed()
        };
        let mut what = Vec::from(&b"root directory (chroot) of "[..]);
        what.extend_from_slice(&super::death::comm(p).into_bytes());
        fill_name(&mut b.what, &what);
        inv.blockers.push(b);
    }
    // The working directory by its path; one without a path of the in-memory filesystem
    // (removed, or inside `/proc`) as a section 39 entry, with a path no adopter finds.
    let cwd = {
        let (cwd, synth) = {
            let f = p.fs.lock();
            (f.cwd, f.synth.clone())
        };
        let unreachable = match (synth, super::files::path::dir_path(cwd)) {
            (None, Ok(path)) => Err(path),
            (Some((kind, comps)), _) => Ok((
                workdir_kind::SYNTHETIC,
                0,
                super::procfs::tree::abs_path(kind, &comps),
            )),
            (None, Err(_)) => Ok((workdir_kind::REMOVED, cwd, Vec::new())),
        };
        match unreachable {
            Err(path) => path,
            Ok((kind, ino, path)) => {
                let path = inv.blob_add(&path);
                inv.workdirs.push(WorkdirEntry {
                    pid: p.pid,
                    kind,
                    ino,
                    path,
                });
                UNREACHABLE_CWD.to_vec()
            }
        }
    };
    let (mut file_areas, mut shared_areas, mut moved_areas) = (0u32, 0u32, 0u32);
    // Private file mappings to carry: (start, offset, path, volume, image), classified once
    // the space's lock is dropped.
    let mut mapped = Vec::new();
    // Shared mappings of files: (start, object, page offset, path, inode), classified once
    // the space's lock is dropped.
    let mut shared_files = Vec::new();
    let (mut brk_base, mut brk) = (0, 0);
    if let Some(space) = p.space() {
        let mm = space.mm.lock();
        brk_base = mm.brk_base;
        brk = mm.brk;
        for (start, v) in mm.vmas() {
            if let Some(r) = &v.shm {
                // A System V segment's region is named like a file but maps no file.
                let file = v
                    .file
                    .as_ref()
                    .filter(|_| !crate::linux::sysv_ipc::shm::is_segment(&r.obj));
                match file {
                    // Anonymous shared memory (a System V segment's too: the adopter keeps
                    // the mapping, not the segment's id): its object, numbered once for
                    // every region (of any process) that maps it.
                    None => {
                        let object = inv.shm_object(&r.obj);
                        inv.shm_areas.push(ShmAreaEntry {
                            pid: p.pid,
                            flags: 0,
                            start,
                            object,
                            pgoff: r.pgoff,
                            path: BlobRef::default(),
                        });
                    }
                    Some(f) => {
                        shared_files.push((start, r.obj.clone(), r.pgoff, f.path.clone(), f.ino))
                    }
                }
            } else if let Some(f) = &v.file {
                mapped.push((
                    start,
                    f.offset,
                    f.path.clone(),
                    f.ino,
                    f.image.as_ref().map(|i| (i.lo, i.hi)),
                    f.bus_past_eof,
                ));
            }
            for (va, gpa, cow) in mm.resident(start, v.end) {
                let flags = if v.shm.is_some() {
                    page_flags::SHARED
                } else if cow {
                    page_flags::COW
                } else {
                    0
                };
                // Extend the last run when this page follows it in both spaces.
                let page = pvmux_hypercalls::PAGE_SIZE;
                if let Some(r) = inv.pages.last_mut().filter(|r| {
                    r.pid == p.pid
                        && r.va >= start
                        && r.flags == flags
                        && r.va + r.pages * page == va
                        && r.gpa + r.pages * page == gpa
                }) {
                    r.pages += 1;
                    continue;
                }
                inv.pages.push(PageRunEntry {
                    pid: p.pid,
                    flags,
                    va,
                    gpa,
                    pages: 1,
                });
            }
        }
    }
    // A shared mapping of a file maps the file's pages, which the filesystem carries
    // (section 23): an in-memory file's own (a `--rootfs` file mapped writable was copied
    // up into them), a volume file's cache while it is mapped (`fs_node_flags::MAPPED`).
    // The adopter maps the adopted file's.
    for (start, obj, pgoff, path, ino) in shared_files {
        // The file's pages, of an inode the filesystem carries (named, or held open
        // without a name: a memfd, say), by inode; a file whose inode is gone (a memfd
        // whose descriptors were closed, an unlinked file) lives on only in the pages its
        // mappings share, carried as anonymous shared memory; pages the file no longer
        // has are not carried.
        let (file_pages, gone) = crate::fs::with(|fs| {
            let carried = fs
                .stat_ino(ino)
                .is_ok_and(|st| st.nlink > 0 || fs.is_open(ino));
            (
                carried && fs.mapped_pages(ino).is_some_and(|o| Arc::ptr_eq(&o, &obj)),
                fs.stat_ino(ino).is_err(),
            )
        });
        if gone {
            let object = inv.shm_object(&obj);
            inv.shm_areas.push(ShmAreaEntry {
                pid: p.pid,
                flags: 0,
                start,
                object,
                pgoff,
                path: BlobRef::default(),
            });
            continue;
        }
        if !file_pages {
            shared_areas += 1;
            continue;
        }
        let path = inv.blob_add(&path);
        inv.shm_areas.push(ShmAreaEntry {
            pid: p.pid,
            flags: shm_area_flags::FILE,
            start,
            object: ino,
            pgoff,
            path,
        });
    }
    for (start, offset, path, ino, image, bus_past_eof) in mapped {
        let (volume, host, named) = crate::fs::with(|fs| {
            (
                fs.is_volume_file(ino),
                fs.is_host_file(ino),
                names_inode(fs, &path, ino),
            )
        });
        // A private mapping of an in-memory file (its bytes were mapped copy-on-write or
        // copied at `mmap`: every page it has is a page run; the file is carried whole,
        // section 21) is backed again by its path like a host file's; so is a program's
        // image of one (the image cache's), whose pages not read yet the adopter's image
        // cache reads from the carried file.
        let memory = !(volume || host) && image.is_none();
        if !path.starts_with(b"/") {
            file_areas += 1;
            continue;
        }
        // A file renamed since it was mapped is backed again by a name it has now (its
        // inode, carried with its number and backing, is the same). One removed needs no
        // file unless it is a program's image: every page such an area has is a page run.
        let mut flags = 0;
        let path = if named {
            path
        } else {
            match renamed_path(ino) {
                Some(p) => p.into(),
                None if image.is_none() => {
                    flags |= file_area_flags::REMOVED;
                    path
                }
                // A program's or library's image: by its inode, which the image cache
                // holds open (so the filesystem carries it: a host file's by path, a file
                // in memory with its pages).
                None if crate::fs::with(|fs| fs.is_open(ino)) => {
                    flags |= file_area_flags::REMOVED;
                    inv.file_area_inodes
                        .push(pvmux_hypercalls::handover::FileAreaInodeEntry {
                            pid: p.pid,
                            _reserved: 0,
                            start,
                            ino,
                        });
                    path
                }
                None => {
                    moved_areas += 1;
                    continue;
                }
            }
        };
        let path = inv.blob_add(&path);
        if memory {
            flags |= file_area_flags::MEMORY;
        }
        if volume {
            flags |= file_area_flags::VOLUME;
        }
        if image.is_some() {
            flags |= file_area_flags::IMAGE;
        }
        inv.file_areas.push(FileAreaEntry {
            pid: p.pid,
            flags,
            start,
            offset,
            path,
        });
        let (lo, hi) = image.unwrap_or_default();
        inv.file_images.push(FileImageEntry {
            pid: p.pid,
            flags: if bus_past_eof {
                file_image_flags::BUS_PAST_EOF
            } else {
                0
            },
            start,
            lo,
            hi,
        });
    }
    let cwd = inv.blob_add(&cwd);
    let exe = inv.blob_add(&exe);
    // What `/proc/PID/cmdline` and `environ` show (`ExecArgs` keeps each NUL-terminated
    // string whole, within the record's limit).
    let (cmdline, environ) = {
        let a = p.args.lock();
        (a.cmdline.clone(), a.environ.clone())
    };
    let cmdline = inv.blob_add(&cmdline);
    let environ = inv.blob_add(&environ);
    inv.process_args.push(ProcessArgsEntry {
        pid: p.pid,
        reserved: 0,
        cmdline,
        environ,
    });
    let groups: Vec<u8> = c.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    let groups = inv.blob_add(&groups);
    let limits = *p.rlimits.lock();
    let rl: Vec<u8> = (0..NR_RLIMITS)
        .flat_map(|r| {
            let l = limits.get(r);
            l.cur.to_le_bytes().into_iter().chain(l.max.to_le_bytes())
        })
        .collect();
    let rlimits = inv.blob_add(&rl);
    let k = c.caps.sets;
    carry_sig_queue(inv, sig_queue_kind::PROCESS, p.pid, &p.shared_sig);
    let pr = p.prctl.values();
    if pr != super::prctl::PrctlValues::default() {
        let mut flags = 0;
        if pr.no_new_privs {
            flags |= prctl_flags::NO_NEW_PRIVS;
        }
        for (on, flag) in [
            (pr.child_subreaper, prctl_flags::CHILD_SUBREAPER),
            (pr.not_dumpable, prctl_flags::NOT_DUMPABLE),
            (pr.thp_disabled, prctl_flags::THP_DISABLE),
        ] {
            if on {
                flags |= flag;
            }
        }
        inv.prctl.push(PrctlEntry {
            pid: p.pid,
            pdeath_signal: pr.pdeath_signal,
            flags,
            _reserved: 0,
        });
    }
    inv.states.push(ProcessStateEntry {
        pid: p.pid,
        umask: p.umask.load(Ordering::Relaxed),
        uids: [c.uid, c.euid, c.suid, c.fsuid],
        gids: [c.gid, c.egid, c.sgid, c.fsgid],
        shared_pending: p.shared_sig.pending().bits(),
        brk_base,
        brk,
        cwd,
        exe,
        caps: [
            k.effective,
            k.permitted,
            k.inheritable,
            k.bounding,
            k.ambient,
        ],
        cap_flags: u32::from(c.caps.keep),
        exit_signal: p.exit_signal,
        groups,
        rlimits,
    });
    let acts = *p.sigactions.lock();
    for (i, a) in acts.iter().enumerate() {
        if a.handler != 0 || a.flags != 0 || a.mask != 0 {
            inv.sigactions.push(SigActionEntry {
                pid: p.pid,
                signo: i as u32 + 1,
                handler: a.handler,
                flags: a.flags,
                restorer: a.restorer,
                mask: a.mask,
            });
        }
    }
    let (timers, waits, timers_not_carried) = super::timers::carry::carry(p);
    inv.timers.extend(timers);
    inv.timer_waits.extend(waits);
    let mut not_carried: BTreeMap<&'static [u8], u32> = BTreeMap::new();
    for (fd, f, cloexec) in fds {
        if let Err(what) = carry_fd(p.pid, *fd, f, *cloexec, inv) {
            *not_carried.entry(what).or_default() += 1;
        }
    }
    for (what, n) in not_carried {
        let mut b = BlockerEntry {
            kind: blocker::FILES,
            pid: p.pid,
            count: n,
            ..FromZeros::new_zeroed()
        };
        fill_name(&mut b.what, what);
        inv.blockers.push(b);
    }
    for (n, kind, what) in [
        (
            file_areas,
            blocker::FILES,
            &b"file mappings without a path"[..],
        ),
        (
            shared_areas,
            blocker::KERNEL,
            b"shared mappings of pages a file no longer has",
        ),
        (
            moved_areas,
            blocker::FILES,
            b"image mappings of removed files",
        ),
        (
            timers_not_carried,
            blocker::TIMERS,
            b"timers on another's CPU clock or ended thread",
        ),
    ] {
        if n > 0 {
            let mut b = BlockerEntry {
                kind,
                pid: p.pid,
                count: n,
                ..FromZeros::new_zeroed()
            };
            fill_name(&mut b.what, what);
            inv.blockers.push(b);
        }
    }
}

/// Version 3: the advisory locks held (section 43), each naming a carried description of
/// its file — the holder for a `flock` or open file description lock, one of the owner's
/// for a POSIX record lock. Blockers: a lock no carried description names the file of
/// (none in practice: a process closing its last descriptor of a file drops its record
/// locks, a description's last close its own); every lock, in a record of version 2,
/// whose adopter would not know to take them.
fn carry_locks(inv: &mut Inventory, version: u32) {
    use super::files::locks::table::{Mode, Owner};
    use pvmux_hypercalls::handover::{lock_kind, lock_mode, LockEntry};
    let mode = |m: Mode| match m {
        Mode::Read => lock_mode::READ,
        Mode::Write => lock_mode::WRITE,
    };
    let (mut held, mut lost) = (0u32, 0u32);
    for (ino, ranges, flocks) in super::files::locks::held() {
        let entries = ranges
            .iter()
            .map(|r| {
                let (kind, owner, description) = match r.owner {
                    Owner::Process(pid) => (
                        lock_kind::POSIX,
                        pid,
                        inv.fd_inodes.get(&(pid, ino)).copied(),
                    ),
                    Owner::Description(id) => {
                        (lock_kind::OFD, 0, inv.description_ids.get(&id).copied())
                    }
                };
                (kind, mode(r.mode), owner, description, r.start, r.end)
            })
            .chain(flocks.iter().map(|l| {
                (
                    lock_kind::FLOCK,
                    mode(l.mode),
                    0,
                    inv.description_ids.get(&l.desc).copied(),
                    0,
                    pvmux_hypercalls::handover::LOCK_OFFSET_MAX,
                )
            }))
            .collect::<Vec<_>>();
        for (kind, mode, owner, description, start, end) in entries {
            held += 1;
            let Some(description) = description else {
                lost += 1;
                continue;
            };
            inv.locks.push(LockEntry {
                kind,
                mode,
                owner,
                _reserved: 0,
                description,
                start,
                end,
            });
        }
    }
    for (n, what) in [
        (lost, &b"advisory locks of files no descriptor holds"[..]),
        (
            if version < 3 { held } else { 0 },
            b"advisory locks (record version 2 has none)",
        ),
    ] {
        if n > 0 {
            let mut b = BlockerEntry {
                kind: blocker::FILES,
                pid: 0,
                count: n,
                ..FromZeros::new_zeroed()
            };
            fill_name(&mut b.what, what);
            inv.blockers.push(b);
        }
    }
}

/// Version 2: carries the descriptors in flight on the carried sockets (`SCM_RIGHTS`,
/// section 40) as open file descriptions of pid [`IN_FLIGHT_PID`], numbered from 0 in
/// description order — every one of them, also those a process holds too, so that an
/// adopter that does not know section 40 finds a descriptor of no process and refuses the
/// record instead of dropping them. A description in flight may be a socket with more in
/// flight: carried until none is left. One that cannot be carried (an epoll, say) is a
/// blocker of the process whose descriptor reached its socket.
fn carry_in_flight(inv: &mut Inventory) {
    use pvmux_hypercalls::handover::IN_FLIGHT_PID;
    let mut carried: BTreeMap<usize, ()> = BTreeMap::new();
    let mut not_carried: BTreeMap<(i32, &'static [u8]), u32> = BTreeMap::new();
    loop {
        let pending = inv.sockets.take_in_flight();
        if pending.is_empty() {
            break;
        }
        for (pid, f) in pending {
            let key = Arc::as_ptr(&f) as *const () as usize;
            if carried.insert(key, ()).is_some() {
                continue;
            }
            let refused: Option<&'static [u8]> = if crate::linux::files::object::downcast::<
                super::files::epoll::Epoll,
            >(&f)
            .is_some()
            {
                Some(b"epoll descriptors in flight (SCM_RIGHTS)")
            } else {
                carry_fd(IN_FLIGHT_PID, 0, &f, false, inv).err()
            };
            if let Some(what) = refused {
                *not_carried.entry((pid, what)).or_default() += 1;
            }
        }
    }
    // Numbered in description order.
    let mut n = 0;
    let mut ours: Vec<&mut FdStateEntry> = inv
        .fd_states
        .iter_mut()
        .filter(|e| e.pid == IN_FLIGHT_PID)
        .collect();
    ours.sort_by_key(|e| e.description);
    for e in ours {
        e.fd = n;
        n += 1;
    }
    if n >= pvmux_hypercalls::handover::MAX_FD {
        *not_carried
            .entry((0, b"over 1,048,576 descriptors in flight"))
            .or_default() += 1;
    }
    for ((pid, what), count) in not_carried {
        let mut b = BlockerEntry {
            kind: blocker::FILES,
            pid,
            count,
            ..FromZeros::new_zeroed()
        };
        fill_name(&mut b.what, what);
        inv.blockers.push(b);
    }
}

/// Whether absolute `path` names inode `ino` now (what a file reopened by its path in an
/// adopting kernel, whose tree is this one's, gets).
fn names_inode(fs: &mut crate::fs::ramfs::Fs, path: &[u8], ino: crate::fs::ramfs::Ino) -> bool {
    path.starts_with(b"/") && fs.lookup(crate::fs::ramfs::ROOT_INO, path, true) == Ok(ino)
}

/// An absolute path that names file `ino` now (one renamed since a mapping named it by
/// another), checked by a lookup; `None` if it has no name.
fn renamed_path(ino: crate::fs::ramfs::Ino) -> Option<Vec<u8>> {
    let (dir, name) = crate::fs::with(|fs| fs.a_name_of(ino))?;
    let mut path = super::files::path::dir_path(dir).ok()?;
    if !path.ends_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(&name);
    crate::fs::with_real_root(|fs| names_inode(fs, &path, ino)).then_some(path)
}

/// Version 2: carries descriptor `fd` of process `pid` (open on `f`), or says in words what
/// kind of descriptor version 2 does not carry.
fn carry_fd(
    pid: i32,
    fd: i32,
    f: &Arc<super::files::OpenFile>,
    cloexec: bool,
    inv: &mut Inventory,
) -> Result<(), &'static [u8]> {
    use super::files::file::Kind;
    let next = inv.descriptions.len() as u64 + 1;
    let description = *inv
        .descriptions
        .entry(Arc::as_ptr(f) as *const () as usize)
        .or_insert(next);
    inv.description_ids.insert(f.id(), description);
    if let Kind::Node { ino, .. } = f.kind {
        inv.fd_inodes.entry((pid, ino)).or_insert(description);
    }
    let mut e = FdStateEntry {
        pid,
        fd,
        kind: 0,
        fd_flags: u32::from(cloexec),
        status_flags: f.flags(),
        aux: 0,
        description,
        pos: 0,
        object: 0,
        path: BlobRef::default(),
    };
    match &f.kind {
        Kind::Node { ino, h, dir } => {
            let (ino, h, dir) = (*ino, *h, *dir);
            let path = f.path();
            let (volume, host, named, cookie) = crate::fs::with(|fs| {
                (
                    fs.is_volume_file(ino),
                    fs.is_host_file(ino),
                    path.is_some_and(|p| names_inode(fs, p, ino)),
                    if dir {
                        fs.lseek(h, 0, crate::fs::ramfs::whence::SEEK_CUR).ok()
                    } else {
                        None
                    },
                )
            });
            e.pos = *f.pos();
            match path {
                // Reopened by its path (what an adopter without section 21 can do too).
                Some(p) if (volume || host) && named && !dir => {
                    e.kind = if volume {
                        fd_state::VOLUME_FILE
                    } else {
                        fd_state::HOST_FILE
                    };
                    e.path = inv.blob_add(p);
                }
                // Anything else of the in-memory filesystem, by inode (the tree is carried
                // with its numbers, section 21): a file in memory, a file held open after
                // its last name went, a host or volume file renamed or removed, a
                // directory at its `getdents64` cookie (a removed one too).
                _ => {
                    e.kind = fd_state::MEMORY_FILE;
                    e.object = ino;
                    if let Some(c) = cookie {
                        e.pos = c;
                    }
                    e.path = inv.blob_add(path.unwrap_or_default());
                }
            }
        }
        Kind::PipeRead(pipe) | Kind::PipeWrite(pipe) => {
            e.kind = if matches!(f.kind, Kind::PipeRead(_)) {
                fd_state::PIPE_READ
            } else {
                fd_state::PIPE_WRITE
            };
            e.object = carry_pipe(&mut inv.pipes, &mut inv.blob, pipe)?;
        }
        // A terminal's state (modes, window size, foreground group, the line being typed)
        // is the console's, section 31.
        Kind::Console { out, tty, .. } => {
            e.kind = fd_state::CONSOLE;
            e.object = *out;
            e.aux = u32::from(*tty);
            e.path = inv.blob_add(&super::procfs::link_name(f));
        }
        Kind::Dev { .. } => {
            e.kind = fd_state::DEVICE;
            e.path = inv.blob_add(&super::procfs::link_name(f));
        }
        Kind::Object(_) => {
            // A channel to another kernel: its stream and data are the host's, its node is
            // made again by the adopter (the host gives it the same channels).
            if let Some(path) = super::files::channel::ChannelFile::carried_path(f) {
                e.kind = fd_state::DEVICE;
                e.path = inv.blob_add(&path);
                inv.fd_states.push(e);
                return Ok(());
            }
            // A disk's `/dev/vdX` at its offset (the disk is carried in its slot).
            if let Some(path) = super::files::blockdev::BlockFile::carried_path(f) {
                e.kind = fd_state::DEVICE;
                e.pos = *f.pos();
                e.path = inv.blob_add(&path);
                inv.fd_states.push(e);
                return Ok(());
            }
            if let Some(carried) = events::carry(pid, f, &mut e, inv) {
                carried?;
                inv.fd_states.push(e);
                return Ok(());
            }
            if let Some((id, host)) = super::net::inet::carried_id(f) {
                if let Some(h) = host {
                    inv.host_sockets.insert(id, h);
                }
                if inv.inet.is_none() {
                    let Inventory { inet, blob, .. } = inv;
                    let mut add = |b: &[u8]| blob_push(blob, b);
                    *inet = Some(super::net::inet::carry(&mut add)?);
                }
                e.kind = fd_state::INET_SOCKET;
                e.object = id;
                inv.fd_states.push(e);
                return Ok(());
            }
            // A generated file by its path (its snapshot if it was read in part); a
            // directory at its entry index.
            if let Some(c) = super::procfs::object::carried(f) {
                e.kind = fd_state::SYNTHETIC;
                e.aux = if c.dir { synth_flags::DIRECTORY } else { 0 };
                e.pos = *f.pos();
                e.path = inv.blob_add(&c.path);
                if let Some(snap) = c.snapshot.filter(|_| e.pos > 0) {
                    if snap.len() > MAX_SYNTH_DATA as usize {
                        return Err(b"/proc and /sys files over 1 MiB read in part");
                    }
                    if !inv.synth_data.contains_key(&e.description) {
                        let data = inv.blob_add(&snap);
                        inv.synth_data.insert(
                            e.description,
                            SynthDataEntry {
                                description: e.description,
                                data,
                            },
                        );
                    }
                }
                inv.fd_states.push(e);
                return Ok(());
            }
            if super::files::object::downcast::<super::pidfd::PidFd>(f).is_some() {
                return Err(b"pidfds");
            }
            let Some(sock) = super::net::unix::carry::sock_of(f) else {
                let family = super::files::object::downcast::<super::net::SocketFile>(f)
                    .map(|s| s.sock.family());
                return Err(match family {
                    Some(super::net::af::AF_INET | super::net::af::AF_INET6) => b"inet sockets",
                    Some(_) => b"sockets of another family",
                    None => b"descriptors of other kernel objects",
                });
            };
            let Inventory { sockets, blob, .. } = inv;
            let mut add = |b: &[u8]| blob_push(blob, b);
            e.kind = fd_state::UNIX_SOCKET;
            e.object = sockets.add(pid, &sock, &mut add)?;
        }
    }
    inv.fd_states.push(e);
    Ok(())
}

/// [`VmaEntry::flags`] of a memory area.
fn vma_bits(rwx: [bool; 3], shared: bool, on_fork: super::space::OnFork) -> u32 {
    let mut f = 0;
    for (on, bit) in [
        (rwx[0], vma_flags::READ),
        (rwx[1], vma_flags::WRITE),
        (rwx[2], vma_flags::EXEC),
        (shared, vma_flags::SHARED),
        (on_fork.skip, vma_flags::DONT_FORK),
        (on_fork.wipe, vma_flags::WIPE_ON_FORK),
    ] {
        if on {
            f |= bit;
        }
    }
    f
}

/// The [`fd_kind`] of an open file.
fn fd_class(f: &super::files::OpenFile) -> u32 {
    use super::files::file::Kind;
    match &f.kind {
        Kind::Node { .. } => fd_kind::FILE,
        Kind::PipeRead(_) | Kind::PipeWrite(_) => fd_kind::PIPE,
        Kind::Dev { .. } | Kind::Console { .. } => fd_kind::TTY,
        Kind::Object(_) => {
            if super::procfs::link_name(f).starts_with(b"socket:") {
                fd_kind::SOCKET
            } else {
                fd_kind::OTHER
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvmux_hypercalls::handover::Record;

    #[test]
    fn an_inventory_makes_a_record_the_host_accepts() {
        let mut inv = Inventory::default();
        inv.processes.push(ProcessEntry {
            pid: 1,
            nr_threads: 2,
            ..Default::default()
        });
        inv.vmas.push(VmaEntry {
            pid: 1,
            flags: vma_bits([true, false, true], false, Default::default()),
            start: 0x40_0000,
            end: 0x40_1000,
            ..FromZeros::new_zeroed()
        });
        inv.pages.push(PageRunEntry {
            pid: 1,
            flags: page_flags::COW,
            va: 0x40_0000,
            gpa: 32 << 20,
            pages: 1,
        });
        let fpu = inv.blob_add(&[0u8; 576]);
        let exe = inv.blob_add(b"/bin/true");
        let mut st = ProcessStateEntry::new_zeroed();
        st.pid = 1;
        st.exe = exe;
        inv.states.push(st);
        let mut t = ThreadStateEntry::new_zeroed();
        t.tid = 1;
        t.pid = 1;
        t.state = thread_state::USER;
        t.regs.rip = 0x40_0010;
        t.fpu = fpu;
        t.restart_nr = NO_RESTART;
        inv.thread_states.push(t);
        inv.threads.push(ThreadEntry {
            tid: 1,
            pid: 1,
            state: thread_state::USER,
            ..Default::default()
        });
        let bounds = pvmux_hypercalls::handover::Bounds {
            user_end: pvmux_hypercalls::user::USER_END,
            pool_start: 16 << 20,
            pool_end: 64 << 20,
            max_pid: pvmux_hypercalls::handover::MAX_PID,
        };
        // Version 1: the inventory alone.
        let mut out = Vec::new();
        inv.write(&mut out, 1, RELEASE.as_bytes());
        let r = Record::parse(&out, (1, 1)).expect("valid");
        assert_eq!(r.release(), RELEASE.as_bytes());
        assert_eq!(r.entries::<ProcessEntry>().count(), 1);
        let v: Vec<VmaEntry> = r.entries().collect();
        assert_eq!(v[0].flags, vma_flags::READ | vma_flags::EXEC);
        assert_eq!(r.entries::<FdEntry>().count(), 0);
        assert_eq!(r.entries::<PageRunEntry>().count(), 0);
        assert!(r.blob().is_empty());
        // Version 2: with what it carries, in the bounds an adopter checks.
        let mut out = Vec::new();
        inv.write(&mut out, 2, RELEASE.as_bytes());
        assert_eq!(out.len(), 96 + 16 * 7 + inv.size());
        let r = Record::parse(&out, (1, 2)).expect("valid");
        r.check(&bounds).expect("in bounds");
        let t: Vec<ThreadStateEntry> = r.entries().collect();
        assert_eq!(r.blob_bytes(t[0].fpu).map(<[u8]>::len), Some(576));
        let s: Vec<ProcessStateEntry> = r.entries().collect();
        assert_eq!(r.blob_bytes(s[0].exe), Some(&b"/bin/true"[..]));
    }
}
