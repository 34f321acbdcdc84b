//! Kernel hand-over (`pvmux upgrade NAME --kernel NEW`, docs/MULTIKERNEL.md "Kernel
//! hand-over", docs/ABI.md §handover): the kernel's side of the hand-over record.
//!
//! The host raises `pending::HANDOVER`; the event wakes `handoverd` (a kernel thread started
//! with init), which asks the host for the record version (`HandoverTake`), writes the record
//! ([`pvmux_hypercalls::handover`]) in a heap block (physically contiguous) and hands it over
//! (`HandoverRecord`). This kernel writes record version 1, an *inventory*: every process
//! (pids, parent, group, session, credentials, threads, resident pages), its threads, memory
//! areas and open descriptors — and, as blockers, the state a new kernel could not adopt
//! with this record version: today every live process (its memory and files are listed, not
//! carried). The host refuses an upgrade with blockers, naming them.
//!
//! **Safe point.** While it writes the record, `handoverd` stops every user thread: it sets
//! the freeze, kicks every task, and waits (at most [`FREEZE_TIMEOUT_NS`]) until each
//! task's kernel thread is blocked — either parked at its safe point ([`safe_point`], the
//! top of the thread's loop: in user mode, its registers published for the record) or
//! blocked in a system call (a restartable boundary: a thread that wakes there runs on to
//! its safe point and parks). No user code runs until the record is handed over; then the
//! threads are let go. A thread still running at the timeout is named as a blocker.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pvmux_hypercalls::handover::{
    blocker, fd_kind, fill_name, process_flags, thread_state, vma_flags, BlockerEntry, FdEntry,
    ProcessEntry, RecordWriter, ThreadEntry, VmaEntry, MAX_RECORD_LEN, RECORD_VERSION,
};
use pvmux_hypercalls::HcError;
use zerocopy::FromZeros;

use super::space::UserState;
use super::task::{self, Process, Task};
use crate::irq::IrqLock;
use crate::sched::wait::WaitQueue;

/// Longest wait for every user thread to reach a safe point (ns).
pub(crate) const FREEZE_TIMEOUT_NS: u64 = 200_000_000;

/// User threads stop at their safe point while set.
static FREEZE: AtomicBool = AtomicBool::new(false);
/// Parked threads wait here for the thaw.
static THAW_WQ: WaitQueue = WaitQueue::new();
/// The parked threads, by tid, with their user registers.
static PARKED: IrqLock<BTreeMap<i32, ThreadEntry>> = IrqLock::new(BTreeMap::new());

/// A user thread's safe point (the top of its loop, in user mode): parks it while a
/// hand-over record is written. One atomic load otherwise.
pub(crate) fn safe_point(task: &Task, st: &UserState) {
    if !FREEZE.load(Ordering::Acquire) {
        return;
    }
    let e = ThreadEntry {
        tid: task.tid,
        pid: task.process.pid,
        state: thread_state::USER,
        _reserved: 0,
        rip: st.regs.rip,
        rsp: st.regs.rsp,
        fs_base: st.fs_base,
    };
    PARKED.lock().insert(task.tid, e);
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

/// Stops every user thread (see the module documentation); the threads that did not stop
/// in time.
fn freeze() -> Vec<Arc<Task>> {
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
    let deadline = crate::time::now_ns() + FREEZE_TIMEOUT_NS;
    loop {
        let busy: Vec<Arc<Task>> = tasks()
            .into_iter()
            .filter(|t| !PARKED.lock().contains_key(&t.tid) && !quiet(t))
            .collect();
        let now = crate::time::now_ns();
        if busy.is_empty() || now >= deadline {
            return busy;
        }
        crate::sched::sleep_until(now + 100_000);
    }
}

/// Lets the parked threads go.
fn thaw() {
    FREEZE.store(false, Ordering::SeqCst);
    THAW_WQ.wake_all();
}

/// The kernel's release (`uname -r`, `/proc/version`, the image's hand-over note): the
/// build-time `PVMUX_KERNEL_RELEASE`, else `6.1.0-pvmux`.
pub(crate) const RELEASE: &str = match option_env!("PVMUX_KERNEL_RELEASE") {
    Some(r) => r,
    None => "6.1.0-pvmux",
};

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
    if version != u64::from(RECORD_VERSION) {
        crate::hcall::handover_record_failed(HcError::InvalidArgument);
        return;
    }
    let busy = freeze();
    let procs = task::all_processes();
    let mut inv = inventory(&procs);
    inv.threads = threads(&procs, &busy);
    if !busy.is_empty() {
        let mut b = BlockerEntry {
            kind: blocker::KERNEL,
            pid: 0,
            count: busy.len() as u32,
            ..FromZeros::new_zeroed()
        };
        fill_name(&mut b.what, b"threads did not reach a safe point");
        inv.blockers.push(b);
    }
    let mut out: Vec<u8> = Vec::new();
    // The record is the host's to read: refused rather than grown past what it accepts.
    let size = 96 + 16 * 5 + inv.size();
    if size as u64 > MAX_RECORD_LEN || out.try_reserve_exact(size).is_err() {
        thaw();
        crate::hcall::handover_record_failed(HcError::NoResources);
        return;
    }
    inv.write(&mut out, RELEASE.as_bytes());
    match crate::boot::virt_to_phys(out.as_ptr() as u64, out.len() as u64) {
        Some(gpa) => crate::hcall::handover_record(gpa, out.len() as u64),
        None => crate::hcall::handover_record_failed(HcError::NoResources),
    }
    // The switch is not implemented: every thread goes on where it stopped.
    thaw();
}

/// The threads of `procs`: parked ones with their registers, the others blocked in a system
/// call or (in `busy`) still running.
fn threads(procs: &[Arc<Process>], busy: &[Arc<Task>]) -> Vec<ThreadEntry> {
    let parked = PARKED.lock().clone();
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
    out
}

/// What record version 1 lists.
#[derive(Default)]
pub(crate) struct Inventory {
    pub(crate) processes: Vec<ProcessEntry>,
    pub(crate) threads: Vec<ThreadEntry>,
    pub(crate) vmas: Vec<VmaEntry>,
    pub(crate) fds: Vec<FdEntry>,
    pub(crate) blockers: Vec<BlockerEntry>,
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
    }

    /// The record, in `out` (empty).
    pub(crate) fn write(&self, out: &mut Vec<u8>, release: &[u8]) {
        let mut w = RecordWriter::new(out, RECORD_VERSION, release);
        w.section(&self.processes);
        w.section(&self.threads);
        w.section(&self.vmas);
        w.section(&self.fds);
        w.section(&self.blockers);
        w.finish();
    }
}

/// The inventory of `procs`.
fn inventory(procs: &[Arc<Process>]) -> Inventory {
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
            flags: if zombie { process_flags::ZOMBIE } else { 0 },
            resident_pages: resident,
            comm: [0; 16],
        };
        fill_name(&mut e.comm, &comm);
        inv.processes.push(e);
        for l in super::procfs::snap::maps(p) {
            let mut v = VmaEntry {
                pid: p.pid,
                flags: vma_bits(l.rwx, l.shared),
                start: l.start,
                end: l.end,
                ..FromZeros::new_zeroed()
            };
            fill_name(&mut v.name, &l.name);
            inv.vmas.push(v);
        }
        let mut nr_fds = 0u32;
        for fd in super::procfs::snap::open_fds(p) {
            let Ok(f) = p.files.lock().get(fd) else {
                continue;
            };
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
    inv
}

/// [`VmaEntry::flags`] of a memory area.
fn vma_bits(rwx: [bool; 3], shared: bool) -> u32 {
    let mut f = 0;
    for (on, bit) in [
        (rwx[0], vma_flags::READ),
        (rwx[1], vma_flags::WRITE),
        (rwx[2], vma_flags::EXEC),
        (shared, vma_flags::SHARED),
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
            flags: vma_bits([true, false, true], false),
            start: 0x40_0000,
            end: 0x40_1000,
            ..FromZeros::new_zeroed()
        });
        let mut out = Vec::new();
        inv.write(&mut out, RELEASE.as_bytes());
        let r = Record::parse(&out, (RECORD_VERSION, RECORD_VERSION)).expect("valid");
        assert_eq!(r.release(), RELEASE.as_bytes());
        assert_eq!(r.entries::<ProcessEntry>().count(), 1);
        let v: Vec<VmaEntry> = r.entries().collect();
        assert_eq!(v[0].flags, vma_flags::READ | vma_flags::EXEC);
        assert_eq!(r.entries::<FdEntry>().count(), 0);
    }
}
