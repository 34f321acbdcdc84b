//! Adopting a hand-over record (`pvmux upgrade`, docs/MULTIKERNEL.md "Kernel hand-over",
//! docs/ABI.md §handover): the kernel's side of boot command `ADOPT`.
//!
//! A kernel booted with `ADOPT` fetches the record the host offers (`HandoverFetch`: the
//! host's own copy, which it checked whole before offering it; nothing in this kernel's
//! memory had to survive), checks it again itself ([`plan`]: [`Record::parse`], every value
//! against the user pool the boot command names with [`Record::check`], and what an adopter
//! needs beyond that), and says whether it adopts it (`HandoverAdopted`). With
//! [`adopt_flags::CHECK`] — the host's pre-flight, in a scratch tenant of its own — that is
//! all it does: it reports the verdict and shuts down.
//!
//! Without `CHECK` — the switch, in the tenant's own memory, whose user pool holds the old
//! kernel's user pages — it adopts the record in two steps. [`begin`], right after the user
//! pool is taken over and before anything takes a frame of it: the verdict, then the
//! record's frames with their references on the live pool (`pool::adopt_live`); a refusal
//! there changes nothing the old kernel would need. [`finish`], once the filesystem,
//! volumes and disks are up: every process rebuilt, parents first, in a user sandbox of its
//! own ([`build`]), the zombies kept for their parents, and only then every thread started
//! with its registers; then the verdict. A failure before the first thread starts is a
//! refusal too (the user pool's bytes are untouched: adoption only keeps books).
//!
//! [`plan`] is what an adoption would rebuild, checked: every live process has its state and
//! its threads are all stopped in user mode with their registers; init (pid 1) is there and
//! live; every parent is in the record; every resident page's frame is in the user pool,
//! and a frame mapped privately (neither copy-on-write nor shared) is mapped exactly once;
//! descriptors that share an open file description agree on what it is (kind, object,
//! path, flags, offset); every file area names an absolute path.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use pvmux_hypercalls::handover::{
    adopt_flags, adopt_status, console_flags, cpu_times_kind, page_flags, process_flags,
    shm_area_flags, thread_state, AdoptArgs, BlockerEntry, Bounds, ConsoleEntry, FdStateEntry,
    FileAreaEntry, FileImageEntry, InetMsgEntry, InetSocketEntry, PageRunEntry, PipeEntry,
    ProcessEntry, ProcessStateEntry, Record, RecordError, ShmAreaEntry, ShmPagesEntry, SocketEntry,
    SocketMsgEntry, ThreadStateEntry, TimerEntry, ZombieEntry, MAX_ADOPT_REASON, MAX_PID,
};

/// Why this kernel does not adopt a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The host offered no record, or not the length the boot command says.
    Fetch(&'static str),
    /// The record fails [`Record::parse`] or [`Record::check`].
    Record(RecordError),
    /// Version 1 is an inventory: it carries no process.
    Inventory,
    /// The record names what it could not carry.
    Blockers(usize),
    /// Init (pid 1) is missing or not live.
    NoInit,
    /// A live process without its state.
    NoState(i32),
    /// A thread not stopped in user mode (or without its state).
    ThreadNotStopped(i32),
    /// A process whose parent is not in the record.
    Orphan(i32),
    /// A frame mapped privately more than once.
    FrameTwice(u64),
    /// Descriptors of one open file description that disagree.
    Description(u64),
    /// A file area whose path is not absolute, or without its image range (section 15).
    FileArea(i32, u64),
    /// A memory area an address space cannot take (overlapping, shared, out of the window).
    Area(i32, u64),
    /// A page run outside its areas, or over pages already mapped.
    Pages(i32, u64),
    /// A frame the user pool cannot give its references (in use, outside the pool).
    Frame(u64),
    /// A pipe that cannot be re-created (more bytes than a pipe holds).
    Pipe(u64),
    /// An `AF_UNIX` socket that cannot be re-created (its name taken, its values unknown).
    Socket(u64),
    /// A loopback internet socket that cannot be re-created (its values unknown, the table
    /// in use: id 0).
    InetSocket(u64),
    /// A relay of a published connection whose socket is not there or whose bytes are not
    /// in the blob.
    Relay,
    /// A descriptor that cannot be installed again (its kind, device or number).
    Descriptor(i32, i32),
    /// An epoll registration (of the epoll's description, by descriptor number) that
    /// cannot be made again: of no epoll, of an unknown description, of a file epoll cannot
    /// watch, or flagged as not what its target is.
    Epoll(u64, i32),
    /// A process whose credentials, limits or threads cannot be taken as they are.
    Process(i32, &'static str),
    /// The boot command `adopt-refuse` (tests).
    Asked,
    /// The trusted in-process mode (`--user-isolation none`): one space at a time runs in
    /// the kernel's own sandbox, an adoption needs a user sandbox per process.
    Trusted,
    /// A file area whose file cannot be opened again (gone, changed kind, too large).
    Backing(i32, u64),
    /// The in-memory filesystem (sections 21-23) cannot be taken as carried.
    Fs(&'static str),
    /// An inotify watch (of the instance's description, by watch descriptor) of an inode
    /// the carried filesystem does not name.
    Watch(u64, i32),
    /// The descriptors in flight of a queued message (by its index in the record) cannot
    /// be passed again.
    InFlight(u32),
    /// An advisory lock (section 43) that cannot be taken again: of no carried file, of a
    /// POSIX owner without a descriptor of it, or conflicting with another.
    Lock(&'static str),
    /// A disk (section 47, by slot) that cannot be attached or mounted again.
    Disk(u32, crate::fs::Errno),
    /// An exec session (section 48) whose pipes or bytes are not there.
    ExecSession,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fetch(what) => write!(f, "cannot fetch the record: {what}"),
            Self::Fs(what) => write!(f, "the in-memory filesystem cannot be adopted: {what}"),
            Self::Record(e) => write!(f, "the record is refused: {e}"),
            Self::Inventory => f.write_str("record version 1 carries no process state"),
            Self::Blockers(n) => write!(f, "the record names {n} things it could not carry"),
            Self::NoInit => f.write_str("the record has no live init (pid 1)"),
            Self::NoState(pid) => write!(f, "process {pid} is live but has no state"),
            Self::ThreadNotStopped(tid) => {
                write!(
                    f,
                    "thread {tid} is not stopped in user mode with its registers"
                )
            }
            Self::Orphan(pid) => write!(f, "the parent of process {pid} is not in the record"),
            Self::FrameTwice(gpa) => {
                write!(f, "frame {gpa:#x} is mapped privately more than once")
            }
            Self::Description(d) => {
                write!(f, "the descriptors of open file description {d} disagree")
            }
            Self::FileArea(pid, start) => write!(
                f,
                "the file area at {start:#x} of process {pid} has no absolute path or no \
                 image range"
            ),
            Self::Area(pid, start) => write!(
                f,
                "the memory area at {start:#x} of process {pid} cannot be rebuilt"
            ),
            Self::Pages(pid, va) => write!(
                f,
                "the pages at {va:#x} of process {pid} cannot be mapped again"
            ),
            Self::Frame(gpa) => write!(f, "frame {gpa:#x} is not a free frame of the pool"),
            Self::Pipe(id) => write!(f, "pipe {id} cannot be re-created"),
            Self::Socket(id) => write!(f, "socket {id} cannot be re-created"),
            Self::InetSocket(id) => write!(f, "inet socket {id} cannot be re-created"),
            Self::Relay => write!(f, "a relay of a published connection names no socket"),
            Self::Process(pid, what) => write!(f, "process {pid}: {what}"),
            Self::Epoll(d, fd) => write!(
                f,
                "the registration of descriptor {fd} in epoll (open file description {d}) \
                 cannot be made again"
            ),
            Self::Descriptor(pid, fd) => {
                write!(f, "descriptor {fd} of process {pid} cannot be opened again")
            }
            Self::Asked => f.write_str("refused as asked (boot command adopt-refuse)"),
            Self::Trusted => f.write_str(
                "a process runs in the kernel sandbox (--user-isolation none), and this \
                 kernel does not run in that mode",
            ),
            Self::Backing(pid, start) => write!(
                f,
                "the file of the area at {start:#x} of process {pid} cannot be opened again"
            ),
            Self::Watch(d, wd) => write!(
                f,
                "inotify watch {wd} (open file description {d}) names no carried file"
            ),
            Self::InFlight(m) => write!(
                f,
                "the descriptors in flight of socket message {m} cannot be passed again"
            ),
            Self::Lock(what) => write!(f, "an advisory lock cannot be taken again: {what}"),
            Self::ExecSession => write!(f, "an exec session names a pipe that is not there"),
            Self::Disk(slot, e) => write!(
                f,
                "disk vd{} cannot be mounted again: {e}",
                char::from(b'a' + (*slot % 26) as u8)
            ),
        }
    }
}

/// What an adoption of a checked record would rebuild.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Live processes, parents before children (pids).
    pub(crate) order: Vec<i32>,
    /// Zombies (pids).
    pub(crate) zombies: Vec<i32>,
    /// Threads.
    pub(crate) threads: usize,
    /// Distinct frames the user pool must hold for the adopted pages, with the number of
    /// references each gets (one per page that maps it).
    pub(crate) frames: BTreeMap<u64, u32>,
    /// Open file descriptions (descriptors sharing one count once).
    pub(crate) descriptions: usize,
    /// Pipes, and the bytes buffered in them.
    pub(crate) pipes: usize,
    /// Bytes buffered in the pipes.
    pub(crate) pipe_bytes: usize,
    /// Timers (section 16).
    pub(crate) timers: usize,
    /// `AF_UNIX` sockets (both ends of a connection count twice).
    pub(crate) sockets: usize,
    /// Bytes queued on them.
    pub(crate) socket_bytes: usize,
    /// Loopback internet sockets (both ends of a connection count twice).
    pub(crate) inet_sockets: usize,
    /// Bytes queued on them.
    pub(crate) inet_bytes: usize,
    /// Event objects (eventfd, timerfd, signalfd, epoll open file descriptions).
    pub(crate) event_objects: usize,
    /// Epoll registrations.
    pub(crate) epoll_items: usize,
    /// Inodes of the in-memory filesystem (sections 21-23; 0: not carried).
    pub(crate) fs_nodes: usize,
    /// A live process runs in the kernel sandbox (the trusted in-process mode).
    pub(crate) in_process: bool,
}

/// The in-memory filesystem the record carries (sections 21-23), if it does.
fn carried_fs(r: &Record<'_>) -> Option<crate::fs::ramfs::carry::Carried> {
    let c = crate::fs::ramfs::carry::Carried {
        nodes: r.entries().collect(),
        dirents: r.entries().collect(),
        pages: r.entries().collect(),
    };
    (!c.nodes.is_empty()).then_some(c)
}

/// The console state of the checked record `r` (section 31), if it carries one.
pub(crate) fn carried_console(r: &Record<'_>) -> Option<crate::linux::files::tty::CarriedConsole> {
    let c = r.entries::<ConsoleEntry>().next()?;
    let bytes = |b| r.blob_bytes(b).unwrap_or_default().to_vec();
    Some(crate::linux::files::tty::CarriedConsole {
        termios: c.termios,
        eof: c.flags & console_flags::EOF != 0,
        winsize: c.winsize,
        fg_pgrp: c.fg_pgrp,
        input: bytes(c.input),
        lines: bytes(c.lines)
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize)
            .collect(),
        edit: bytes(c.edit),
    })
}

/// Checks `bytes` as the record `args` describes, with every check an adoption makes, and
/// plans the adoption.
pub(crate) fn plan(bytes: &[u8], args: &AdoptArgs) -> Result<Plan, Refusal> {
    if bytes.len() as u64 != args.record_len {
        return Err(Refusal::Fetch("its length is not the one announced"));
    }
    let r = Record::parse(bytes, (args.version, args.version)).map_err(Refusal::Record)?;
    r.check(&Bounds {
        user_end: pvmux_hypercalls::user::USER_END,
        pool_start: args.pool_start,
        pool_end: args.pool_end,
        max_pid: MAX_PID,
    })
    .map_err(Refusal::Record)?;
    if r.header.version < 2 {
        return Err(Refusal::Inventory);
    }
    let blockers = r.entries::<BlockerEntry>().count();
    if blockers > 0 {
        return Err(Refusal::Blockers(blockers));
    }
    let procs: BTreeMap<i32, ProcessEntry> =
        r.entries::<ProcessEntry>().map(|p| (p.pid, p)).collect();
    let live = |p: &ProcessEntry| p.flags & process_flags::ZOMBIE == 0;
    if !procs.get(&1).is_some_and(live) {
        return Err(Refusal::NoInit);
    }
    let states: BTreeSet<i32> = r.entries::<ProcessStateEntry>().map(|s| s.pid).collect();
    let waits: BTreeSet<i32> = r.entries::<ZombieEntry>().map(|z| z.pid).collect();
    let mut plan = Plan::default();
    for p in procs.values() {
        if p.ppid != 0 && !procs.contains_key(&p.ppid) {
            return Err(Refusal::Orphan(p.pid));
        }
        if !live(p) {
            // A zombie without its wait status (a process caught exiting): its parent's
            // `wait4` would wait for it forever.
            if !waits.contains(&p.pid) {
                return Err(Refusal::Process(p.pid, "a zombie without its wait status"));
            }
            plan.zombies.push(p.pid);
            continue;
        }
        if !states.contains(&p.pid) {
            return Err(Refusal::NoState(p.pid));
        }
    }
    // Every thread of a live process stopped in user mode, with its state.
    let thread_states: BTreeMap<i32, ThreadStateEntry> = r
        .entries::<ThreadStateEntry>()
        .map(|t| (t.tid, t))
        .collect();
    for t in r.entries::<pvmux_hypercalls::handover::ThreadEntry>() {
        if !procs.get(&t.pid).is_some_and(live) {
            continue;
        }
        if thread_states
            .get(&t.tid)
            .is_none_or(|s| s.state != thread_state::USER)
        {
            return Err(Refusal::ThreadNotStopped(t.tid));
        }
        plan.threads += 1;
    }
    plan.order = parents_first(&procs, live);
    // Frames: one reference per page that maps one; a private frame exactly once.
    let mut private = BTreeSet::new();
    for run in r.entries::<PageRunEntry>() {
        // A host file window's pages are no pool frames: nothing to adopt (`Record::check`
        // let them through copy-on-write only).
        if pvmux_hypercalls::window::slot_of(run.gpa).is_some() {
            continue;
        }
        for k in 0..run.pages {
            let gpa = run.gpa + k * pvmux_hypercalls::PAGE_SIZE;
            let shared = run.flags & (page_flags::COW | page_flags::SHARED) != 0;
            if private.contains(&gpa) || (!shared && plan.frames.contains_key(&gpa)) {
                return Err(Refusal::FrameTwice(gpa));
            }
            if !shared {
                private.insert(gpa);
            }
            let n = plan.frames.entry(gpa).or_insert(0);
            *n = n.saturating_add(1);
        }
    }
    // Anonymous shared objects: each frame one reference more (the object's), never a frame
    // a page run maps privately (`Record::check` bounded the runs).
    for run in r.entries::<ShmPagesEntry>() {
        for k in 0..run.pages {
            let gpa = run.gpa + k * pvmux_hypercalls::PAGE_SIZE;
            if private.contains(&gpa) {
                return Err(Refusal::FrameTwice(gpa));
            }
            let n = plan.frames.entry(gpa).or_insert(0);
            *n = n.saturating_add(1);
        }
    }
    // A shared area of an in-memory file needs the carried filesystem.
    if carried_fs(&r).is_none() {
        if let Some(a) = r
            .entries::<ShmAreaEntry>()
            .find(|a| a.flags & shm_area_flags::FILE != 0)
        {
            return Err(Refusal::Area(a.pid, a.start));
        }
    }
    // The in-memory filesystem: its tree checked, each file frame one reference more (the
    // file's; a private mapping of the file maps it copy-on-write too), never a frame a
    // page run maps privately.
    if let Some(c) = carried_fs(&r) {
        crate::fs::ramfs::carry::check_carried(&c, &|b| r.blob_bytes(b).map(<[u8]>::to_vec))
            .map_err(Refusal::Fs)?;
        for run in &c.pages {
            for k in 0..run.pages {
                let gpa = run.gpa + k * pvmux_hypercalls::PAGE_SIZE;
                if private.contains(&gpa) {
                    return Err(Refusal::FrameTwice(gpa));
                }
                let n = plan.frames.entry(gpa).or_insert(0);
                *n = n.saturating_add(1);
            }
        }
        plan.fs_nodes = c.nodes.len() - 1;
    }
    // An inotify watch names a named inode of the carried filesystem.
    let named: BTreeSet<u64> = carried_fs(&r).map_or_else(BTreeSet::new, |c| {
        c.nodes
            .iter()
            .skip(1)
            .filter(|n| n.nlink > 0)
            .map(|n| n.ino)
            .collect()
    });
    if let Some((d, wd)) = super::events::unnamed_watch(&r, &named) {
        return Err(Refusal::Watch(d, wd));
    }
    // A descriptor of an in-memory file names a carried inode (`Record::check`); without
    // the filesystem there is none to open.
    if plan.fs_nodes == 0 {
        if let Some(f) = r
            .entries::<FdStateEntry>()
            .find(|f| f.kind == pvmux_hypercalls::handover::fd_state::MEMORY_FILE)
        {
            return Err(Refusal::Descriptor(f.pid, f.fd));
        }
    }
    // Descriptions agree on what they are.
    let mut descriptions: BTreeMap<u64, (FdStateEntry, &[u8])> = BTreeMap::new();
    for f in r.entries::<FdStateEntry>() {
        let path = r.blob_bytes(f.path).unwrap_or_default();
        match descriptions.get(&f.description) {
            Some((d, p)) => {
                let same = d.kind == f.kind
                    && d.object == f.object
                    && d.status_flags == f.status_flags
                    && d.pos == f.pos
                    && *p == path;
                if !same {
                    return Err(Refusal::Description(f.description));
                }
            }
            None => {
                descriptions.insert(f.description, (f, path));
            }
        }
    }
    plan.descriptions = descriptions.len();
    check_locks(&r, &descriptions)?;
    let images: BTreeSet<(i32, u64)> = r
        .entries::<FileImageEntry>()
        .map(|i| (i.pid, i.start))
        .collect();
    for a in r.entries::<FileAreaEntry>() {
        if !r.blob_bytes(a.path).is_some_and(|p| p.starts_with(b"/"))
            || !images.contains(&(a.pid, a.start))
        {
            return Err(Refusal::FileArea(a.pid, a.start));
        }
    }
    // Timers: each one this kernel can make again, on a live process of the plan.
    for t in r.entries::<TimerEntry>() {
        crate::linux::timers::carry::decode(&t).map_err(|what| Refusal::Process(t.pid, what))?;
        if !plan.order.contains(&t.pid) {
            return Err(Refusal::Process(t.pid, "a timer of no live process"));
        }
        plan.timers += 1;
    }
    for p in r.entries::<PipeEntry>() {
        plan.pipes += 1;
        plan.pipe_bytes += p.data.len as usize;
    }
    plan.sockets = r.entries::<SocketEntry>().count();
    plan.socket_bytes = r
        .entries::<SocketMsgEntry>()
        .map(|m| m.data.len as usize)
        .sum();
    plan.inet_sockets = r.entries::<InetSocketEntry>().count();
    plan.in_process = r
        .entries::<ProcessEntry>()
        .any(|p| p.flags & process_flags::IN_PROCESS != 0);
    plan.inet_bytes = r
        .entries::<InetMsgEntry>()
        .map(|m| m.data.len as usize)
        .sum();
    // What an adoption does with them, done on a shadow of the tenant's pool and on maps
    // of no sandbox: the frames' references, every address space (without its files).
    crate::linux::pool::check_adoption(args.pool_start, args.pool_end, &plan.frames)
        .map_err(Refusal::Frame)?;
    let mut d = Descriptions::new(&r, 0, false)?;
    let shared = SharedObjects::checked(&r);
    for &pid in &plan.order {
        let mut mm = crate::linux::space::Mm::new();
        rebuild_mm(&r, pid, &mut mm, &|_, _, _| None, &shared)?;
        rebuild_fds(&r, pid, &mut d, &|_, _| Ok(None))?;
        process_parts(&r, pid)?;
    }
    d.attach_in_flight(&r, &|_, _| Ok(None))?;
    // The interest lists, once every description exists.
    plan.epoll_items = super::events::link_epolls(&r, &d.files, &d.left_out)?;
    plan.event_objects = d.event_objects;
    // Zombies carry their wait status (checked by `Record::check` and above).
    debug_assert!(r
        .entries::<ZombieEntry>()
        .all(|z| plan.zombies.contains(&z.pid)));
    Ok(plan)
}

/// The shared objects `MAP_SHARED` areas map (sections 29 and 30; a file's pages are
/// section 23's): which frame each page of an object is, and the objects themselves.
pub(crate) struct SharedObjects {
    /// (file?, object) → first page index of a run → (pages, first frame).
    runs: BTreeMap<(bool, u64), BTreeMap<u64, (u64, u64)>>,
    /// The anonymous objects made again, by number; `None` for a check (no frame is
    /// taken: a region then maps a scratch object).
    made: Option<BTreeMap<u64, Arc<crate::linux::shmem::ShmObject>>>,
}

impl SharedObjects {
    fn runs(r: &Record<'_>) -> BTreeMap<(bool, u64), BTreeMap<u64, (u64, u64)>> {
        let mut runs: BTreeMap<(bool, u64), BTreeMap<u64, (u64, u64)>> = BTreeMap::new();
        for e in r.entries::<ShmPagesEntry>() {
            runs.entry((false, e.object))
                .or_default()
                .insert(e.index, (e.pages, e.gpa));
        }
        for e in r.entries::<pvmux_hypercalls::handover::FsPagesEntry>() {
            runs.entry((true, e.ino))
                .or_default()
                .insert(e.index, (e.pages, e.gpa));
        }
        runs
    }

    /// For a check: the frames only.
    pub(crate) fn checked(r: &Record<'_>) -> Self {
        Self {
            runs: Self::runs(r),
            made: None,
        }
    }

    /// For the switch (the record's frames adopted by the pool: `pool::adopt_live`): every
    /// anonymous object an area names, holding its pages (the object's reference on each
    /// frame is one of those the pool gave).
    fn made(r: &Record<'_>) -> Self {
        let runs = Self::runs(r);
        let mut made = BTreeMap::new();
        for a in r.entries::<ShmAreaEntry>() {
            if a.flags & shm_area_flags::FILE == 0 {
                made.entry(a.object)
                    .or_insert_with(crate::linux::shmem::ShmObject::new_owned);
            }
        }
        for ((file, object), list) in &runs {
            let Some(obj) = made.get(object).filter(|_| !file) else {
                continue;
            };
            for (&index, &(pages, gpa)) in list {
                for k in 0..pages {
                    obj.insert(index + k, gpa + k * pvmux_hypercalls::PAGE_SIZE);
                }
            }
        }
        Self {
            runs,
            made: Some(made),
        }
    }

    /// The frame of page `index` of the object area `a` maps, if the record gives it one.
    fn frame(&self, a: &ShmAreaEntry, index: u64) -> Option<u64> {
        let list = self
            .runs
            .get(&(a.flags & shm_area_flags::FILE != 0, a.object))?;
        let (&first, &(pages, gpa)) = list.range(..=index).next_back()?;
        (index < first + pages).then(|| gpa + (index - first) * pvmux_hypercalls::PAGE_SIZE)
    }

    /// The object area `a` maps, from its page offset: an anonymous one made again, or the
    /// adopted file's pages — an in-memory file's own, a volume file's cache
    /// (`None` if the file has neither any more).
    fn object(&self, a: &ShmAreaEntry) -> Option<crate::linux::shmem::ShmRef> {
        use crate::linux::shmem::ShmRef;
        let Some(made) = &self.made else {
            return Some(ShmRef::new_object().advanced(a.pgoff * pvmux_hypercalls::PAGE_SIZE));
        };
        let obj = if a.flags & shm_area_flags::FILE != 0 {
            crate::fs::with(|fs| fs.mapped_pages(a.object))?
        } else {
            made.get(&a.object)?.clone()
        };
        Some(ShmRef::of(obj, a.pgoff))
    }
}

/// How an adopter backs a file area again: the area, its image range (section 15) and its
/// path → the file it maps, if it can open it.
pub(crate) type FileOf<'a> =
    &'a dyn Fn(&FileAreaEntry, &FileImageEntry, &[u8]) -> Option<crate::linux::space::MapFile>;

/// Rebuilds the address space of process `pid` of the checked record `r` in `mm` (empty):
/// its memory areas with their rights (a private file mapping backed by the file `file_of`
/// gives it, with its image range, else by nothing: its pages not in the record then read
/// as zero), its program break, and every resident page mapped lazily to its frame,
/// copy-on-write where it was (the frames' references are the pool's business:
/// `pool::adopt`).
pub(crate) fn rebuild_mm(
    r: &Record<'_>,
    pid: i32,
    mm: &mut crate::linux::space::Mm,
    file_of: FileOf<'_>,
    shared: &SharedObjects,
) -> Result<(), Refusal> {
    use pvmux_hypercalls::handover::{vma_flags, VmaEntry};
    use pvmux_hypercalls::user::prot;
    let images: BTreeMap<u64, FileImageEntry> = r
        .entries::<FileImageEntry>()
        .filter(|a| a.pid == pid)
        .map(|a| (a.start, a))
        .collect();
    let files: BTreeMap<u64, (FileAreaEntry, FileImageEntry)> = r
        .entries::<FileAreaEntry>()
        .filter(|a| a.pid == pid)
        .filter_map(|a| Some((a.start, (a, *images.get(&a.start)?))))
        .collect();
    let shm_areas: BTreeMap<u64, ShmAreaEntry> = r
        .entries::<ShmAreaEntry>()
        .filter(|a| a.pid == pid)
        .map(|a| (a.start, a))
        .collect();
    for v in r.entries::<VmaEntry>().filter(|v| v.pid == pid) {
        // A shared area maps its object (section 29): without one it is refused.
        let shm = if v.flags & vma_flags::SHARED != 0 {
            let a = shm_areas.get(&v.start).ok_or(Refusal::Area(pid, v.start))?;
            Some((a, shared.object(a).ok_or(Refusal::Area(pid, v.start))?))
        } else {
            None
        };
        let mut bits = 0;
        for (flag, p) in [
            (vma_flags::READ, prot::READ),
            (vma_flags::WRITE, prot::WRITE),
            (vma_flags::EXEC, prot::EXEC),
        ] {
            if v.flags & flag != 0 {
                bits |= p;
            }
        }
        let file = match &shm {
            // What `mmap` names a shared mapping of a file by (`/proc/PID/maps`).
            Some((a, _)) if a.flags & shm_area_flags::FILE != 0 => {
                Some(crate::linux::space::MapFile {
                    path: r.blob_bytes(a.path).unwrap_or_default().into(),
                    ino: a.object,
                    offset: a.pgoff * pvmux_hypercalls::PAGE_SIZE,
                    bus_past_eof: true,
                    image: None,
                })
            }
            Some(_) => None,
            None => files
                .get(&v.start)
                .and_then(|(a, i)| file_of(a, i, r.blob_bytes(a.path).unwrap_or_default())),
        };
        let on_fork = crate::linux::space::OnFork {
            skip: v.flags & vma_flags::DONT_FORK != 0,
            wipe: v.flags & vma_flags::WIPE_ON_FORK != 0,
        };
        if !mm.adopt_region(v.start, v.end, bits, file, shm.map(|(_, o)| o), on_fork) {
            return Err(Refusal::Area(pid, v.start));
        }
    }
    if let Some(s) = r.entries::<ProcessStateEntry>().find(|s| s.pid == pid) {
        mm.brk_base = s.brk_base;
        mm.brk = s.brk;
    }
    for run in r.entries::<PageRunEntry>().filter(|p| p.pid == pid) {
        // A shared page is its object's frame at its index (`Record::check` put the run in
        // a shared area).
        if run.flags & page_flags::SHARED != 0 {
            let page = pvmux_hypercalls::PAGE_SIZE;
            let area = shm_areas.range(..=run.va).next_back().map(|(_, a)| a);
            let ok = area.is_some_and(|a| {
                (0..run.pages).all(|k| {
                    let index = a.pgoff + (run.va + k * page - a.start) / page;
                    shared.frame(a, index) == Some(run.gpa + k * page)
                })
            });
            if !ok || run.flags & page_flags::COW != 0 {
                return Err(Refusal::Pages(pid, run.va));
            }
        }
        if !mm.adopt_pages(run.va, run.gpa, run.pages, run.flags & page_flags::COW != 0) {
            return Err(Refusal::Pages(pid, run.va));
        }
    }
    Ok(())
}

/// The open file descriptions an adoption re-creates, shared by every descriptor (of any
/// process) that shares one in the record, and the pipes they refer to.
pub(crate) struct Descriptions {
    /// By the record's description number.
    files: BTreeMap<u64, Arc<OpenFile>>,
    /// By pipe id.
    pipes: BTreeMap<u64, Arc<Pipe>>,
    /// The `AF_UNIX` sockets descriptors may name, by id.
    sockets: crate::linux::net::unix::carry::Adopted,
    /// Where each message of the record was queued (for its descriptors in flight).
    queued: crate::linux::net::unix::carry::Queued,
    /// The loopback internet sockets descriptors may name, by id.
    inets: crate::linux::net::unix::carry::Adopted,
    /// The `--publish` relays (section 46), to start once the programs run.
    pub(crate) relays: Vec<crate::linux::net::inet::relay::Adopted>,
    /// The exec sessions' relays (section 48), to start once the programs run.
    pub(crate) exec_relays: Vec<crate::linux::exec_session::Relay>,
    /// The timerfds' timers and the inotify instances, by description (sections 24, 33
    /// and 34).
    events: super::events::Tables,
    /// The timerfds' timers made again, to arm once the programs run.
    pub(crate) arms: Vec<super::events::TimerArm>,
    /// Descriptions the opener left out (a check's: host files, devices).
    left_out: BTreeSet<u64>,
    /// The snapshots generated files read in part go on from, by description (section 35).
    synth_data: BTreeMap<u64, Vec<u8>>,
    /// Event objects made.
    event_objects: usize,
}

/// How an adopter opens a host file, a volume file or a device again (by the record's
/// path, with its flags; the offset is set afterwards): `Ok(None)` to leave it out (the
/// check, in a kernel without the tenant's files).
pub(crate) type OpenPath<'a> =
    &'a dyn Fn(&FdStateEntry, &[u8]) -> Result<Option<Arc<OpenFile>>, Refusal>;

use crate::linux::files::pipe::Pipe;
use crate::linux::files::OpenFile;
use alloc::sync::Arc;

impl Descriptions {
    /// The record's pipes re-created with the bytes they buffered, each with as many read
    /// and write descriptions as the record has of it, and its `AF_UNIX` sockets (their
    /// path names' socket files made again when `files`: not in a check, whose kernel has
    /// none of the tenant's files).
    pub(crate) fn new(r: &Record<'_>, now_ns: u64, files: bool) -> Result<Self, Refusal> {
        use pvmux_hypercalls::handover::fd_state;
        let mut ends: BTreeMap<u64, (BTreeSet<u64>, BTreeSet<u64>)> = BTreeMap::new();
        for f in r.entries::<FdStateEntry>() {
            let e = ends.entry(f.object).or_default();
            match f.kind {
                fd_state::PIPE_READ => e.0.insert(f.description),
                fd_state::PIPE_WRITE => e.1.insert(f.description),
                _ => continue,
            };
        }
        // An exec session's relay holds an end of its pipes without a description: counted
        // as one of its own (numbers no description has).
        let sessions: Vec<pvmux_hypercalls::handover::ExecSessionEntry> = r.entries().collect();
        for (k, e) in sessions.iter().enumerate() {
            let own = u64::MAX - 3 * k as u64;
            if e.stdin != 0 {
                ends.entry(e.stdin).or_default().1.insert(own);
            }
            for (i, p) in [e.stdout, e.stderr].into_iter().enumerate() {
                if p != 0 {
                    ends.entry(p).or_default().0.insert(own - 1 - i as u64);
                }
            }
        }
        let mut pipes = BTreeMap::new();
        for p in r.entries::<PipeEntry>() {
            let (rd, wr) = ends.get(&p.id).map_or((0, 0), |(r, w)| (r.len(), w.len()));
            let bytes = r.blob_bytes(p.data).unwrap_or_default();
            let pipe = Pipe::adopted(p.id, now_ns, bytes, rd as u32, wr as u32)
                .ok_or(Refusal::Pipe(p.id))?;
            pipes.insert(p.id, pipe);
        }
        let socks: Vec<SocketEntry> = r.entries().collect();
        let msgs: Vec<SocketMsgEntry> = r.entries().collect();
        let (sockets, queued) = crate::linux::net::unix::carry::adopt(
            &socks,
            &msgs,
            &|b| r.blob_bytes(b).map(<[u8]>::to_vec),
            files,
        )
        .map_err(|e| Refusal::Socket(e.0))?;
        let socks: Vec<InetSocketEntry> = r.entries().collect();
        let msgs: Vec<InetMsgEntry> = r.entries().collect();
        let hosts: BTreeMap<u64, u64> = r
            .entries::<pvmux_hypercalls::handover::HostSocketEntry>()
            .map(|h| (h.socket, h.handle))
            .collect();
        let relay_entries: Vec<pvmux_hypercalls::handover::RelayEntry> = r.entries().collect();
        let relay_sockets: BTreeSet<u64> = relay_entries
            .iter()
            .map(|e| e.socket)
            .filter(|&s| s != 0)
            .collect();
        let blob = |b| r.blob_bytes(b).map(<[u8]>::to_vec);
        let inets = crate::linux::net::inet::adopt(&socks, &msgs, &hosts, &relay_sockets, &blob)
            .map_err(|e| Refusal::InetSocket(e.0))?;
        let relays = crate::linux::net::inet::relay::adopt(&relay_entries, &inets.relays, &blob)
            .ok_or(Refusal::Relay)?;
        let exec_relays = crate::linux::exec_session::adopt(&sessions, &pipes, &blob, now_ns)
            .ok_or(Refusal::ExecSession)?;
        Ok(Self {
            files: BTreeMap::new(),
            pipes,
            sockets,
            queued,
            inets: inets.sockets,
            relays,
            exec_relays,
            events: super::events::Tables::of(r),
            arms: Vec::new(),
            left_out: BTreeSet::new(),
            synth_data: r
                .entries::<pvmux_hypercalls::handover::SynthDataEntry>()
                .map(|e| {
                    let b = r.blob_bytes(e.data).unwrap_or_default().to_vec();
                    (e.description, b)
                })
                .collect(),
            event_objects: 0,
        })
    }

    /// Gives each queued message its descriptors in flight (section 40), in their order:
    /// each description made as a process's descriptor's would be (one a process holds too
    /// is the same description). Called once every process's descriptors exist. In a check
    /// the descriptions `open` leaves out are left out of their messages.
    pub(crate) fn attach_in_flight(
        &mut self,
        r: &Record<'_>,
        open: OpenPath<'_>,
    ) -> Result<(), Refusal> {
        use pvmux_hypercalls::handover::{InFlightEntry, IN_FLIGHT_PID};
        let described: BTreeMap<u64, FdStateEntry> = r
            .entries::<FdStateEntry>()
            .filter(|f| f.pid == IN_FLIGHT_PID)
            .map(|f| (f.description, f))
            .collect();
        let mut rights: BTreeMap<u32, Vec<Arc<OpenFile>>> = BTreeMap::new();
        for e in r.entries::<InFlightEntry>() {
            let f = described
                .get(&e.description)
                .ok_or(Refusal::InFlight(e.message))?;
            let path = r.blob_bytes(f.path).unwrap_or_default();
            let slot = rights.entry(e.message).or_default();
            if let Some(file) = self.of(f, path, open)? {
                slot.push(file);
            }
        }
        for (m, files) in rights {
            if !crate::linux::net::unix::carry::attach_rights(&self.queued, m, files) {
                return Err(Refusal::InFlight(m));
            }
        }
        Ok(())
    }

    /// The open file description of `f` (created at its first descriptor); `None` when
    /// `open` leaves it out.
    fn of(
        &mut self,
        f: &FdStateEntry,
        path: &[u8],
        open: OpenPath<'_>,
    ) -> Result<Option<Arc<OpenFile>>, Refusal> {
        use crate::linux::files::dev::{self, Dev};
        use crate::linux::files::file::Kind;
        use pvmux_hypercalls::handover::fd_state;
        if let Some(d) = self.files.get(&f.description) {
            return Ok(Some(d.clone()));
        }
        let bad = Refusal::Descriptor(f.pid, f.fd);
        let pipe = || self.pipes.get(&f.object).cloned().ok_or(bad.clone());
        let file = match f.kind {
            fd_state::PIPE_READ => OpenFile::new(Kind::PipeRead(pipe()?), f.status_flags),
            fd_state::PIPE_WRITE => OpenFile::new(Kind::PipeWrite(pipe()?), f.status_flags),
            fd_state::UNIX_SOCKET => {
                let s = self.sockets.get(&f.object).cloned().ok_or(bad)?;
                crate::linux::net::SocketFile::open(s, f.status_flags)
            }
            fd_state::INET_SOCKET => {
                let s = self.inets.get(&f.object).cloned().ok_or(bad)?;
                crate::linux::net::SocketFile::open(s, f.status_flags)
            }
            fd_state::CONSOLE => {
                let dev = match dev::by_path(path) {
                    Some(d @ (Dev::Tty | Dev::Console)) => d,
                    _ => Dev::Console,
                };
                OpenFile::new(
                    Kind::Console {
                        out: f.object,
                        tty: f.aux & 1 != 0,
                        dev,
                    },
                    f.status_flags,
                )
            }
            fd_state::SYNTHETIC => {
                use pvmux_hypercalls::handover::synth_flags;
                let dir = f.aux & synth_flags::DIRECTORY != 0;
                let snapshot = self.synth_data.get(&f.description);
                if dir && snapshot.is_some() {
                    return Err(bad);
                }
                let carried = crate::linux::procfs::object::Carried {
                    path: path.to_vec(),
                    dir,
                    snapshot: snapshot.map(|b| Arc::from(b.as_slice())),
                };
                let file =
                    crate::linux::procfs::object::adopted(carried, f.status_flags).ok_or(bad)?;
                *file.pos() = f.pos;
                file
            }
            fd_state::HOST_FILE
            | fd_state::VOLUME_FILE
            | fd_state::DEVICE
            | fd_state::MEMORY_FILE => {
                let Some(file) = open(f, path)? else {
                    self.left_out.insert(f.description);
                    return Ok(None);
                };
                if matches!(f.kind, fd_state::HOST_FILE | fd_state::VOLUME_FILE) {
                    *file.pos() = f.pos;
                    file.set_path(path.to_vec());
                }
                file
            }
            _ => match super::events::open(f, &self.events, &mut self.arms) {
                Some(file) => {
                    self.event_objects += 1;
                    file?
                }
                None => return Err(bad),
            },
        };
        self.files.insert(f.description, file.clone());
        Ok(Some(file))
    }
}

/// Rebuilds the descriptor table of process `pid` of the checked record `r`: each
/// descriptor on its open file description (`d`, shared with every other descriptor of it),
/// with its close-on-exec flag.
pub(crate) fn rebuild_fds(
    r: &Record<'_>,
    pid: i32,
    d: &mut Descriptions,
    open: OpenPath<'_>,
) -> Result<crate::linux::files::FdTable, Refusal> {
    let mut table = crate::linux::files::FdTable::new();
    for f in r.entries::<FdStateEntry>().filter(|f| f.pid == pid) {
        let path = r.blob_bytes(f.path).unwrap_or_default();
        let Some(file) = d.of(&f, path, open)? else {
            continue;
        };
        let fd = usize::try_from(f.fd).map_err(|_| Refusal::Descriptor(pid, f.fd))?;
        table
            .put(
                fd,
                file,
                f.fd_flags & 1 != 0,
                crate::linux::files::file::NOFILE,
            )
            .map_err(|_| Refusal::Descriptor(pid, f.fd))?;
    }
    Ok(table)
}

/// What an adoption creates of a live process, decoded from a checked record (the
/// address space, [`rebuild_mm`], and the descriptors, [`rebuild_fds`], apart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProcessParts {
    /// Its ids.
    pub(crate) pid: i32,
    pub(crate) ppid: i32,
    pub(crate) pgid: i32,
    pub(crate) sid: i32,
    /// Signal sent to the parent at its end.
    pub(crate) exit_signal: u32,
    pub(crate) umask: u32,
    /// User and group ids, groups, capabilities.
    pub(crate) creds: crate::linux::creds::Creds,
    /// Resource limits (the kernel's defaults where the record has none).
    pub(crate) rlimits: Option<crate::linux::rlimit::Rlimits>,
    /// Signal dispositions (the default where the record names none).
    pub(crate) sigactions: [crate::linux::signal::SigAction; 64],
    /// Signals pending process-wide.
    pub(crate) shared_pending: u64,
    /// Its working directory and program (paths).
    pub(crate) cwd: Vec<u8>,
    pub(crate) exe: Vec<u8>,
    /// The command name (`comm`).
    pub(crate) comm: Vec<u8>,
    /// What `/proc/PID/cmdline` and `environ` show (empty if the record has no section 26).
    pub(crate) cmdline: Vec<u8>,
    pub(crate) environ: Vec<u8>,
    /// What its ended threads and its reaped children had used (section 28; zero without
    /// it).
    pub(crate) times: [crate::linux::cputime::Usage; 2],
    /// Its threads, by tid.
    pub(crate) threads: Vec<ThreadParts>,
    /// Its address space runs in the kernel sandbox (the trusted in-process mode).
    pub(crate) in_process: bool,
}

/// What an adoption starts of a thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ThreadParts {
    pub(crate) tid: i32,
    /// Its user registers (resumed as they are: a rewound system call is re-issued).
    pub(crate) regs: pvmux_hypercalls::TrapFrame,
    pub(crate) fs_base: u64,
    /// The XSAVE image (empty: the initial state).
    pub(crate) fp: Vec<u8>,
    /// Blocked and pending signals (its own).
    pub(crate) sigmask: u64,
    pub(crate) pending: u64,
    pub(crate) clear_child_tid: u64,
    /// The alternate signal stack: sp, size, flags.
    pub(crate) altstack: (u64, u64, u32),
    /// The sleep it goes on with by re-issuing `restart_syscall` (section 27).
    pub(crate) restart: Option<crate::linux::timers::sleep::RestartBlock>,
    /// What it had used (section 28; zero without it).
    pub(crate) times: crate::linux::cputime::Usage,
}

/// The usage entry `(kind, id)` of section 28 (zero when the record has none).
fn cpu_times(r: &Record<'_>, kind: u32, id: i32) -> crate::linux::cputime::Usage {
    r.entries::<pvmux_hypercalls::handover::CpuTimesEntry>()
        .find(|e| (e.kind, e.id) == (kind, id))
        .map(|e| crate::linux::cputime::Usage {
            user_ns: e.user_ns,
            system_ns: e.system_ns,
            maxrss_kib: e.maxrss_kib,
            minflt: e.minflt,
        })
        .unwrap_or_default()
}

/// Decodes live process `pid` of the checked record `r` ([`plan`] passed).
pub(crate) fn process_parts(r: &Record<'_>, pid: i32) -> Result<ProcessParts, Refusal> {
    use crate::linux::rlimit::{Rlimit, Rlimits};
    use pvmux_hypercalls::handover::{SigActionEntry, ThreadEntry, NR_RLIMITS};
    let p = r
        .entries::<ProcessEntry>()
        .find(|p| p.pid == pid)
        .ok_or(Refusal::NoState(pid))?;
    let s = r
        .entries::<ProcessStateEntry>()
        .find(|s| s.pid == pid)
        .ok_or(Refusal::NoState(pid))?;
    let blob = |b| r.blob_bytes(b).unwrap_or_default().to_vec();
    let groups: Vec<u32> = blob(s.groups)
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let caps = pvmux_hypercalls::bootargs::CapSets {
        effective: s.caps[0],
        permitted: s.caps[1],
        inheritable: s.caps[2],
        bounding: s.caps[3],
        ambient: s.caps[4],
    };
    if !caps.ok() {
        return Err(Refusal::Process(
            pid,
            "capability sets that break Linux's rules",
        ));
    }
    let creds = crate::linux::creds::Creds {
        uid: s.uids[0],
        euid: s.uids[1],
        suid: s.uids[2],
        fsuid: s.uids[3],
        gid: s.gids[0],
        egid: s.gids[1],
        sgid: s.gids[2],
        fsgid: s.gids[3],
        groups,
        caps: crate::linux::caps::CapState {
            sets: caps,
            keep: s.cap_flags & 1 != 0,
        },
    };
    let raw = blob(s.rlimits);
    let rlimits = if raw.is_empty() {
        None
    } else {
        // Every limit is carried (`Record::check`: all 16 or none): the base is replaced.
        let mut l = Rlimits::defaults(1);
        for (i, c) in raw.chunks_exact(16).enumerate().take(NR_RLIMITS) {
            let word = |o: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&c[o..o + 8]);
                u64::from_le_bytes(b)
            };
            l.set(
                i,
                Rlimit {
                    cur: word(0),
                    max: word(8),
                },
            )
            .map_err(|_| Refusal::Process(pid, "a resource limit out of range"))?;
        }
        Some(l)
    };
    let mut sigactions = [crate::linux::signal::SigAction::DEFAULT; 64];
    for a in r.entries::<SigActionEntry>().filter(|a| a.pid == pid) {
        sigactions[a.signo as usize - 1] = crate::linux::signal::SigAction {
            handler: a.handler,
            flags: a.flags,
            restorer: a.restorer,
            mask: a.mask,
        };
    }
    let states: BTreeMap<i32, ThreadStateEntry> = r
        .entries::<ThreadStateEntry>()
        .filter(|t| t.pid == pid)
        .map(|t| (t.tid, t))
        .collect();
    let mut threads = Vec::new();
    for t in r.entries::<ThreadEntry>().filter(|t| t.pid == pid) {
        let st = states
            .get(&t.tid)
            .filter(|s| s.state == thread_state::USER)
            .ok_or(Refusal::ThreadNotStopped(t.tid))?;
        threads.push(ThreadParts {
            tid: t.tid,
            regs: st.regs,
            fs_base: st.fs_base,
            fp: blob(st.fpu),
            sigmask: st.sigmask,
            pending: st.pending,
            clear_child_tid: st.clear_child_tid,
            altstack: (st.altstack_sp, st.altstack_size, st.altstack_flags),
            restart: r
                .entries::<pvmux_hypercalls::handover::RestartEntry>()
                .find(|e| e.tid == t.tid)
                .map(|e| crate::linux::timers::sleep::RestartBlock {
                    target: e.target_ns,
                    rem: e.rem,
                    nr: e.nr,
                    ret_rip: e.ret_rip,
                }),
            times: cpu_times(r, cpu_times_kind::THREAD, t.tid),
        });
    }
    let (cmdline, environ) = r
        .entries::<pvmux_hypercalls::handover::ProcessArgsEntry>()
        .find(|a| a.pid == pid)
        .map(|a| (blob(a.cmdline), blob(a.environ)))
        .unwrap_or_default();
    Ok(ProcessParts {
        pid,
        ppid: p.ppid,
        pgid: p.pgid,
        sid: p.sid,
        exit_signal: s.exit_signal,
        umask: s.umask & 0o777,
        creds,
        rlimits,
        sigactions,
        shared_pending: s.shared_pending,
        cwd: blob(s.cwd),
        exe: blob(s.exe),
        comm: pvmux_hypercalls::handover::until_nul(&p.comm).to_vec(),
        cmdline,
        environ,
        times: [
            cpu_times(r, cpu_times_kind::ENDED, pid),
            cpu_times(r, cpu_times_kind::CHILDREN, pid),
        ],
        threads,
        in_process: p.flags & process_flags::IN_PROCESS != 0,
    })
}

/// The live processes of `procs`, each after its parent (a parent not live, or 0, counts as
/// done): the order an adoption creates them in.
fn parents_first(
    procs: &BTreeMap<i32, ProcessEntry>,
    live: impl Fn(&ProcessEntry) -> bool,
) -> Vec<i32> {
    let mut done: BTreeSet<i32> = procs.values().filter(|p| !live(p)).map(|p| p.pid).collect();
    let mut order = Vec::new();
    let mut left: Vec<&ProcessEntry> = procs.values().filter(|p| live(p)).collect();
    while !left.is_empty() {
        let before = left.len();
        left.retain(|p| {
            if p.ppid == 0 || p.ppid == p.pid || done.contains(&p.ppid) {
                done.insert(p.pid);
                order.push(p.pid);
                false
            } else {
                true
            }
        });
        if left.len() == before {
            // A cycle of parents (a record cannot say that of a real tree): the rest in
            // pid order.
            order.extend(left.iter().map(|p| p.pid));
            break;
        }
    }
    order
}

/// The verdict on an offered record: its plan, or why not. `refuse`: the boot command
/// `adopt-refuse`.
pub(crate) fn verdict(bytes: &[u8], args: &AdoptArgs, refuse: bool) -> Result<Plan, Refusal> {
    let plan = plan(bytes, args)?;
    if refuse {
        return Err(Refusal::Asked);
    }
    Ok(plan)
}

/// The exit code of a kernel that refused to adopt a record it was booted to adopt (without
/// `CHECK`; a check ends with 0 whatever its verdict): the host boots the old kernel again
/// to adopt the same record.
pub(crate) const EXIT_ADOPT_REFUSED: u64 = 119;

/// An adoption under way: the checked record, and its plan (its frames already adopted by
/// the live pool).
pub(crate) struct Adopting {
    bytes: Vec<u8>,
    version: u32,
    plan: Plan,
}

/// Boot command `ADOPT`, first step, right after `pool::init` and before anything takes a
/// frame of the pool: fetches the offered record and gives the verdict. With `CHECK` (the
/// pre-flight) that is all: it reports the verdict and shuts down. Otherwise the record's
/// frames are adopted by the live pool, and [`finish`] rebuilds the processes once the
/// filesystem is up. A refusal is reported (`HandoverAdopted`) and shuts down with
/// [`EXIT_ADOPT_REFUSED`]: nothing of the tenant was touched.
pub(crate) fn begin(args: &AdoptArgs, refuse: bool) -> Adopting {
    let check = args.flags & adopt_flags::CHECK != 0;
    // The host objects the record names (host sockets, channel ends) are made and dropped
    // by the verdict, and made again by `finish`: they stay as they are on the host until
    // the adoption is done (a kernel that refuses the record, or gives up half-way, leaves
    // them to the next adopter).
    super::adoption_started();
    let verdict = fetch(args).and_then(|bytes| Ok((verdict(&bytes, args, refuse)?, bytes)));
    let (plan, bytes) = match verdict {
        Ok(v) => v,
        Err(why) => stop(&why, check),
    };
    crate::println!(
        "pvmux-kernel: the hand-over record checks: {} processes (parents first: {:?}), \
         {} zombies, {} threads, {} frames, {} open file descriptions, {} pipes ({} bytes), {} sockets ({} bytes \
         queued), {} inet sockets ({} bytes queued), {} event objects, {} epoll registrations, \
         {} in-memory inodes",
        plan.order.len(),
        plan.order,
        plan.zombies.len(),
        plan.threads,
        plan.frames.len(),
        plan.descriptions,
        plan.pipes,
        plan.pipe_bytes,
        plan.sockets,
        plan.socket_bytes,
        plan.inet_sockets,
        plan.inet_bytes,
        plan.event_objects,
        plan.epoll_items,
        plan.fs_nodes
    );
    if check {
        crate::hcall::handover_adopted(adopt_status::ADOPTS, b"");
        crate::hcall::shutdown(0)
    }
    // A space of the trusted in-process mode needs the mode here too (the host gives a
    // switched tenant the same boot arguments: only a hostile record names one otherwise).
    if plan.in_process && !crate::linux::space::trusted_mode() {
        stop(&Refusal::Trusted, false)
    }
    if let Err(gpa) = crate::linux::pool::adopt_live(args.pool_start, args.pool_end, &plan.frames) {
        stop(&Refusal::Frame(gpa), false)
    }
    Adopting {
        bytes,
        version: args.version,
        plan,
    }
}

/// Reports the refusal `why` and shuts down (0 after a check, else
/// [`EXIT_ADOPT_REFUSED`], the disks attached at boot left clean for the kernel that
/// adopts the record next).
fn stop(why: &Refusal, check: bool) -> ! {
    let text = reason(why);
    crate::println!("pvmux-kernel: the hand-over record is refused: {text}");
    crate::hcall::handover_adopted(adopt_status::REFUSES, text.as_bytes());
    if check {
        crate::hcall::shutdown(0)
    }
    crate::fs::disk::unmount_all();
    crate::hcall::shutdown(EXIT_ADOPT_REFUSED)
}

/// The text of refusal `why`, cut to [`MAX_ADOPT_REASON`] bytes on a character boundary.
fn reason(why: &Refusal) -> String {
    let mut text = String::new();
    let _ = fmt::Write::write_fmt(&mut text, format_args!("{why}"));
    let mut end = text.len().min(MAX_ADOPT_REASON as usize);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

/// Boot command `ADOPT` without `CHECK`, second step, once the filesystem, volumes and
/// disks are up: rebuilds every process ([`build`]; a failure is a refusal, as in
/// [`begin`]), starts every thread (a thread that cannot start kills its process, with a
/// log line: the others run), and says it adopts the record. Returns init's program (the
/// record's `exe` of pid 1) for the shutdown record at its end.
pub(crate) fn finish(a: Adopting) -> Vec<u8> {
    let r = match Record::parse(&a.bytes, (a.version, a.version)) {
        Ok(r) => r,
        Err(e) => stop(&Refusal::Record(e), false),
    };
    let built = match build(&r, &a.plan) {
        Ok(b) => b,
        Err(why) => stop(&why, false),
    };
    super::adoption_done();
    // Nothing of the pool's bytes was written and no program ran until here (a refusal
    // left them to the next adopter). From here on the programs are this kernel's: the host
    // is told before anything of theirs changes, so that this kernel's end is the tenant's
    // and no other kernel adopts the record again.
    crate::hcall::handover_adopted(adopt_status::ADOPTS, b"");
    // The adopted vvar pages get this kernel's clock.
    for &pid in &a.plan.order {
        if let Some(space) = crate::linux::task::find_process(pid).and_then(|p| p.space()) {
            crate::linux::vdso::adopt_vvar(&space.mm.lock());
        }
    }
    let threads = built.threads.len();
    let mut failed = 0;
    for (task, st, fresh) in built.threads {
        if let Err(e) = crate::linux::task::start(task.clone(), st, fresh) {
            crate::println!(
                "pvmux-kernel: adopted thread {} (process {}) cannot start: {e}; its process \
                 is killed",
                task.tid,
                task.process.pid
            );
            crate::linux::task::abandon_adopted(&task);
            failed += 1;
        }
    }
    // The timers run from now: one due while the tenant was frozen fires at once.
    let timers = built.timers.len();
    for t in built.timers {
        crate::linux::timers::carry::arm(t);
    }
    let timerfds = built.timerfds.len();
    super::events::arm(built.timerfds);
    // The published connections go on, and the next ones are taken again.
    let relays = built.relays.len();
    crate::linux::net::inet::relay::start_adopted(built.relays);
    let exec_sessions = built.exec_relays.len();
    crate::linux::exec_session::start_adopted(built.exec_relays);
    if a.plan.inet_sockets > 0 {
        crate::linux::net::inet::host::start_publish_pump();
    }
    crate::println!(
        "pvmux-kernel: adopted {} processes, {} zombies, {} of {} threads running, {} timers, \
         {} event objects ({} timerfds, {} epoll registrations), {} exec sessions, {} relays of published \
         connections",
        a.plan.order.len(),
        a.plan.zombies.len(),
        threads - failed,
        threads,
        timers,
        a.plan.event_objects,
        timerfds,
        a.plan.epoll_items,
        exec_sessions,
        relays
    );
    built.init_exe
}

/// What [`build`] made: every thread, to start, and init's program.
struct Built {
    threads: Vec<(
        Arc<crate::linux::task::Task>,
        crate::linux::space::UserState,
        bool,
    )>,
    /// Every carried timer, made again, to arm.
    timers: Vec<crate::linux::timers::carry::Adopted>,
    /// Every carried timerfd's timer, to arm.
    timerfds: Vec<super::events::TimerArm>,
    /// The `--publish` relays, to start.
    relays: Vec<crate::linux::net::inet::relay::Adopted>,
    /// The exec sessions' relays, to start.
    exec_relays: Vec<crate::linux::exec_session::Relay>,
    init_exe: Vec<u8>,
}

/// Rebuilds the processes of the checked record `r` (`plan`: its plan) in this kernel, none
/// of their threads started (`begin` refused the trusted in-process mode, whose spaces
/// are not user sandboxes): the id counter past every id of the record; each live
/// process, parents first, with its pid, state, address space in a new user sandbox (file
/// areas backed again by their files, [`backing`]), descriptors (host and volume files and
/// devices opened again by path, [`reopen`]) and working directory, linked into its
/// parent's children; its threads with their tids; then the zombies, for their parents.
fn build(r: &Record<'_>, plan: &Plan) -> Result<Built, Refusal> {
    use crate::linux::{space, task};
    // The disks, mounted where they were: the carried tree's files of a disk are
    // inodes of its volume.
    let disks: Vec<pvmux_hypercalls::handover::DiskEntry> = r.entries().collect();
    crate::fs::disk::adopt(&disks, &|b| r.blob_bytes(b).map(<[u8]>::to_vec))
        .map_err(|(slot, e)| Refusal::Disk(slot, e))?;
    // The in-memory filesystem first: descriptors, sockets' names and working directories
    // are looked up in it.
    if let Some(c) = carried_fs(r) {
        crate::fs::with(|fs| fs.adopt_carried(&c, &|b| r.blob_bytes(b).map(<[u8]>::to_vec)))
            .map_err(Refusal::Fs)?;
        super::fs_adopted();
        // The device nodes are the carried tree's.
        crate::linux::files::init();
        crate::fs::disk::adopt_nodes();
    }
    task::reserve_ids(highest_id(r));
    // The console's input and terminal state, before any program reads it.
    if let Some(c) = carried_console(r) {
        crate::linux::files::tty::adopt(c);
    }
    // The anonymous shared objects, with their frames.
    let shared = SharedObjects::made(r);
    let mut d = Descriptions::new(r, crate::time::now_ns(), true)?;
    let mut threads = Vec::new();
    let mut timers = Vec::new();
    let mut init_exe = Vec::new();
    for &pid in &plan.order {
        let parts = process_parts(r, pid)?;
        let space = if parts.in_process {
            // The trusted in-process mode (`begin` checked this kernel runs in it): the
            // space runs in the kernel sandbox again; its pages are mapped there at its
            // first run.
            space::Space::new_inproc()
        } else {
            space::Space::new()
        }
        .map_err(|_| Refusal::Process(pid, "no user sandbox for it"))?;
        let mut files = BTreeMap::new();
        for (a, i, ino) in file_areas(r, pid) {
            let path = r.blob_bytes(a.path).unwrap_or_default();
            let file = backing(&a, &i, ino, path, space.created_ns)
                .ok_or(Refusal::Backing(pid, a.start))?;
            files.insert(a.start, file);
        }
        {
            let mut mm = space.mm.lock();
            rebuild_mm(
                r,
                pid,
                &mut mm,
                &|a, _, _| files.get(&a.start).cloned(),
                &shared,
            )?;
            // The patch table's cells in use (a rewound call through a patched site
            // restarts by them), read back from its adopted pages.
            crate::linux::patch::adopted(&mut mm, space.is_inproc());
        }
        let fds = rebuild_fds(r, pid, &mut d, &reopen)?;
        let cwd = working_directory(r, pid, &parts.cwd)
            .ok_or(Refusal::Process(pid, "its working directory is gone"))?;
        let p = task::adopt_process(&parts, space, fds, cwd)
            .map_err(|_| Refusal::Process(pid, "its pid is taken"))?;
        if pid == 1 {
            init_exe = parts.exe.clone();
        }
        // Its `prctl` state and its threads' names (sections 36 and 37).
        if let Some(e) = r
            .entries::<pvmux_hypercalls::handover::PrctlEntry>()
            .find(|e| e.pid == pid)
        {
            use pvmux_hypercalls::handover::prctl_flags;
            p.prctl.set(crate::linux::prctl::PrctlValues {
                pdeath_signal: e.pdeath_signal,
                no_new_privs: e.flags & prctl_flags::NO_NEW_PRIVS != 0,
                child_subreaper: e.flags & prctl_flags::CHILD_SUBREAPER != 0,
                not_dumpable: e.flags & prctl_flags::NOT_DUMPABLE != 0,
                thp_disabled: e.flags & prctl_flags::THP_DISABLE != 0,
            });
        }
        for t in &parts.threads {
            let adopted = task::adopt_thread(&p, t);
            if let Some(n) = r
                .entries::<pvmux_hypercalls::handover::ThreadNameEntry>()
                .find(|n| n.tid == t.tid)
            {
                *adopted.0.name.lock() = Some(n.name[..n.len as usize].to_vec());
            }
            // Its robust futex list (section 44), which its end walks.
            if let Some(l) = r
                .entries::<pvmux_hypercalls::handover::RobustListEntry>()
                .find(|l| l.tid == t.tid)
            {
                adopted
                    .0
                    .robust_list
                    .store(l.head, core::sync::atomic::Ordering::Relaxed);
            }
            // Its nice value and affinity (section 45).
            if let Some(e) = r
                .entries::<pvmux_hypercalls::handover::ThreadSchedEntry>()
                .find(|e| e.tid == t.tid)
            {
                use core::sync::atomic::Ordering::Relaxed;
                adopted.0.nice.store(e.nice, Relaxed);
                adopted.0.affinity.store(e.affinity, Relaxed);
            }
            threads.push(adopted);
        }
        // Its timers, on it and its threads; armed once the threads run.
        for e in r.entries::<TimerEntry>().filter(|e| e.pid == pid) {
            let wait = r
                .entries::<pvmux_hypercalls::handover::TimerWaitEntry>()
                .find(|w| {
                    w.pid == pid
                        && w.id == e.id
                        && e.kind == pvmux_hypercalls::handover::timer_kind::POSIX
                });
            let t = crate::linux::timers::carry::adopt(&p, &e, wait.as_ref())
                .map_err(|what| Refusal::Process(pid, what))?;
            timers.push(t);
        }
    }
    // Pending signals with their information (section 32), in place of the sets adopted
    // with each thread and process (as the kernel's), once every thread exists; a waiting
    // timer's signal linked to its arm (section 38), and a timer whose signal is not there
    // armed as usual.
    let waits: BTreeMap<(i32, i32), u64> = timers
        .iter()
        .filter_map(|t| t.wait_key().map(|(id, key)| ((t.pid(), id), key)))
        .collect();
    let linked = adopt_sig_queues(r, &waits)?;
    for t in &mut timers {
        let is_linked = t
            .wait_key()
            .is_some_and(|(id, _)| linked.contains(&(t.pid(), id)));
        t.keep_waiting(is_linked);
    }
    // The descriptors in flight, once every process's descriptors exist (so that one a
    // process holds too is the same description).
    d.attach_in_flight(r, &reopen)?;
    // The epolls' interest lists, once every description of every process exists.
    super::events::link_epolls(r, &d.files, &d.left_out)?;
    // The advisory locks, on the files their descriptions have open now.
    adopt_locks(r, &d.files)?;
    // inotify: renames go on from the carried cookie; events on the files open by
    // descriptors reach their directories' watches.
    super::events::adopt_inotify_cookie(r);
    super::events::adopt_inotify_names(&d.files);
    // The carried files held open only by descriptors that were not opened again (none
    // in a record that checks) go.
    crate::fs::with(|fs| fs.forget_unheld());
    for z in zombie_parts(r) {
        let p = task::adopt_zombie([z.pid, z.ppid, z.pgid, z.sid], &z.comm, z.status)
            .map_err(|_| Refusal::Process(z.pid, "its pid is taken"))?;
        // What its parent's `wait4` reports (section 28).
        p.times.adopt(
            &cpu_times(r, cpu_times_kind::ENDED, z.pid),
            &cpu_times(r, cpu_times_kind::CHILDREN, z.pid),
        );
    }
    Ok(Built {
        threads,
        timers,
        timerfds: core::mem::take(&mut d.arms),
        relays: core::mem::take(&mut d.relays),
        exec_relays: core::mem::take(&mut d.exec_relays),
        init_exe,
    })
}

/// The advisory locks (section 43) name carried descriptions of files; a POSIX lock one
/// its owner holds (`descriptions`: the record's, by number, each with its first entry).
fn check_locks(
    r: &Record<'_>,
    descriptions: &BTreeMap<u64, (FdStateEntry, &[u8])>,
) -> Result<(), Refusal> {
    use pvmux_hypercalls::handover::{fd_state, lock_kind, LockEntry};
    let mut held: Option<BTreeSet<(i32, u64)>> = None;
    for e in r.entries::<LockEntry>() {
        let file = descriptions.get(&e.description).is_some_and(|(f, _)| {
            matches!(
                f.kind,
                fd_state::HOST_FILE | fd_state::VOLUME_FILE | fd_state::MEMORY_FILE
            )
        });
        if !file {
            return Err(Refusal::Lock("of no carried file's description"));
        }
        if e.kind == lock_kind::POSIX {
            let held = held.get_or_insert_with(|| {
                r.entries::<FdStateEntry>()
                    .map(|f| (f.pid, f.description))
                    .collect()
            });
            if !held.contains(&(e.owner, e.description)) {
                return Err(Refusal::Lock(
                    "a record lock its owner has no descriptor for",
                ));
            }
        }
    }
    Ok(())
}

/// Takes the advisory locks of section 43 (checked by [`check_locks`]) on the files the
/// adopted descriptions `files` have open, owned by the same processes and descriptions.
fn adopt_locks(r: &Record<'_>, files: &BTreeMap<u64, Arc<OpenFile>>) -> Result<(), Refusal> {
    use crate::linux::files::file::Kind;
    use crate::linux::files::locks::table::{FlockLock, Mode, Owner, RangeLock};
    use pvmux_hypercalls::handover::{lock_kind, lock_mode, LockEntry};
    let (mut ranges, mut flocks) = (Vec::new(), Vec::new());
    for e in r.entries::<LockEntry>() {
        let f = files
            .get(&e.description)
            .ok_or(Refusal::Lock("of no carried file's description"))?;
        let Kind::Node { ino, .. } = f.kind else {
            return Err(Refusal::Lock("of no carried file's description"));
        };
        let mode = if e.mode == lock_mode::WRITE {
            Mode::Write
        } else {
            Mode::Read
        };
        let owner = match e.kind {
            lock_kind::POSIX => Owner::Process(e.owner),
            _ => {
                f.note_locked();
                Owner::Description(f.id())
            }
        };
        if e.kind == lock_kind::FLOCK {
            // The process `/proc/locks` shows: one holding the description.
            let pid = r
                .entries::<FdStateEntry>()
                .find(|d| d.description == e.description && d.pid > 0)
                .map_or(0, |d| d.pid);
            flocks.push((
                ino,
                FlockLock {
                    desc: f.id(),
                    pid,
                    mode,
                },
            ));
        } else {
            ranges.push((
                ino,
                RangeLock {
                    owner,
                    mode,
                    start: e.start,
                    end: e.end,
                },
            ));
        }
    }
    crate::linux::files::locks::adopt(&ranges, &flocks).map_err(Refusal::Lock)
}

/// Gives every adopted thread and process the information of its pending signals, in the
/// order sent (section 32); each must be one of its pending set's.
fn adopt_sig_queues(
    r: &Record<'_>,
    waits: &BTreeMap<(i32, i32), u64>,
) -> Result<BTreeSet<(i32, i32)>, Refusal> {
    use crate::linux::signal::{CarriedInfo, SigInfo};
    use crate::linux::task;
    use pvmux_hypercalls::handover::sig_queue_kind;
    let mut queues: BTreeMap<(u32, i32), Vec<SigInfo>> = BTreeMap::new();
    for e in r.entries::<pvmux_hypercalls::handover::SigQueueEntry>() {
        let rest = r.blob_bytes(e.rest).and_then(|b| b.try_into().ok());
        let c = CarriedInfo {
            detail: e.detail,
            a: e.a,
            b: e.b,
            c: e.c,
            v: e.v,
            rest,
        };
        let info = SigInfo::from_carried(e.signo, e.code, &c)
            .ok_or(Refusal::Process(e.owner, "a pending signal's information"))?;
        queues.entry((e.kind, e.owner)).or_default().push(info);
    }
    let not_pending = |owner| Refusal::Process(owner, "information of a signal not pending");
    let mut linked = BTreeSet::new();
    for ((kind, owner), mut infos) in queues {
        // The process whose timers the queue's timer signals come from.
        let pid = match kind {
            sig_queue_kind::THREAD => task::find_task(owner).map_or(0, |t| t.process.pid),
            _ => owner,
        };
        for i in &mut infos {
            if let Some(id) = i.link_timer(|id| waits.get(&(pid, id)).copied()) {
                linked.insert((pid, id));
            }
        }
        let pending = match kind {
            sig_queue_kind::THREAD => task::find_task(owner).map(|t| {
                let set = t.sig.own_pending();
                (
                    set,
                    infos.iter().all(|i| set.contains(i.signo)),
                    Some(t),
                    None,
                )
            }),
            _ => task::find_process(owner).map(|p| {
                let set = p.shared_sig.pending();
                (
                    set,
                    infos.iter().all(|i| set.contains(i.signo)),
                    None,
                    Some(p),
                )
            }),
        };
        match pending {
            Some((set, true, Some(t), _)) => t.sig.own().adopt_infos(set, &infos),
            Some((set, true, _, Some(p))) => p.shared_sig.adopt_infos(set, &infos),
            _ => return Err(not_pending(owner)),
        }
    }
    Ok(linked)
}

/// The highest process or thread id of the record `r` (0 if none).
pub(crate) fn highest_id(r: &Record<'_>) -> i32 {
    let pids = r.entries::<ProcessEntry>().map(|p| p.pid);
    let tids = r
        .entries::<pvmux_hypercalls::handover::ThreadEntry>()
        .map(|t| t.tid);
    pids.chain(tids).max().unwrap_or(0).max(0)
}

/// A zombie of a record, as an adoption keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ZombieParts {
    pub(crate) pid: i32,
    pub(crate) ppid: i32,
    pub(crate) pgid: i32,
    pub(crate) sid: i32,
    pub(crate) comm: Vec<u8>,
    /// The wait status its parent's `wait` returns.
    pub(crate) status: i32,
}

/// The zombies of the checked record `r`, with their wait status (section 14).
pub(crate) fn zombie_parts(r: &Record<'_>) -> Vec<ZombieParts> {
    let procs: BTreeMap<i32, ProcessEntry> = r
        .entries::<ProcessEntry>()
        .filter(|p| p.flags & process_flags::ZOMBIE != 0)
        .map(|p| (p.pid, p))
        .collect();
    r.entries::<ZombieEntry>()
        .filter_map(|z| {
            let p = procs.get(&z.pid)?;
            Some(ZombieParts {
                pid: p.pid,
                ppid: p.ppid,
                pgid: p.pgid,
                sid: p.sid,
                comm: pvmux_hypercalls::handover::until_nul(&p.comm).to_vec(),
                status: z.status,
            })
        })
        .collect()
}

/// The file areas of process `pid` of `r`, each with its image range.
fn file_areas(r: &Record<'_>, pid: i32) -> Vec<(FileAreaEntry, FileImageEntry, Option<u64>)> {
    let images: BTreeMap<u64, FileImageEntry> = r
        .entries::<FileImageEntry>()
        .filter(|i| i.pid == pid)
        .map(|i| (i.start, i))
        .collect();
    let inodes: BTreeMap<u64, u64> = r
        .entries::<pvmux_hypercalls::handover::FileAreaInodeEntry>()
        .filter(|e| e.pid == pid)
        .map(|e| (e.start, e.ino))
        .collect();
    r.entries::<FileAreaEntry>()
        .filter(|a| a.pid == pid)
        .filter_map(|a| Some((a, *images.get(&a.start)?, inodes.get(&a.start).copied())))
        .collect()
}

/// The file that file area `a` maps again, at `path`, for a space created at `since`: with the
/// image range `i` its writer's loader used (`file_area_flags::IMAGE`), its pages not in
/// the record come from the file's cached image (`imagecache::for_adopted_image`: a host
/// file, a volume file or a file in memory, as the writer's loader cached it),
/// else they read as zero, as they did (such an area's file bytes were copied at its
/// `mmap`, so they are page runs). `None` if an image area's file is gone or is no longer
/// a host file the cache can hold.
fn backing(
    a: &FileAreaEntry,
    i: &FileImageEntry,
    removed_ino: Option<u64>,
    path: &[u8],
    since: u64,
) -> Option<crate::linux::space::MapFile> {
    use crate::fs::ramfs::ROOT_INO;
    use pvmux_hypercalls::handover::{file_area_flags, file_image_flags};
    // A removed file's name may be another file's now: not looked up (an image's file is
    // the carried inode section 42 names).
    let ino = if a.flags & file_area_flags::REMOVED != 0 {
        removed_ino
    } else {
        crate::fs::with_real_root(|fs| fs.lookup(ROOT_INO, path, true)).ok()
    };
    let image = if a.flags & file_area_flags::IMAGE != 0 && i.hi > i.lo {
        let file = crate::linux::imagecache::for_adopted_image(ino?, i.lo)?;
        Some(crate::linux::space::ImageMap {
            file,
            lo: i.lo,
            hi: i.hi,
            since,
        })
    } else {
        None
    };
    Some(crate::linux::space::MapFile {
        path: path.into(),
        ino: ino.unwrap_or(0),
        offset: a.offset,
        bus_past_eof: i.flags & file_image_flags::BUS_PAST_EOF != 0,
        image,
    })
}

/// Opens a host file, a volume file or a device of descriptor `f` again by its `path`
/// (never creating nor truncating it: `files::path::reopen`), an in-memory file or
/// directory by its inode (`files::path::reopen_ino`, at its offset or cookie); a device is one of the
/// kernel's `/dev` nodes that keep no state (`null`, `zero`, `full`, `random`,
/// `urandom`) or a channel to another kernel (`/dev/pvmux/NAME`: its stream is the host's,
/// which gives the new kernel the same channels).
fn reopen(f: &FdStateEntry, path: &[u8]) -> Result<Option<Arc<OpenFile>>, Refusal> {
    use crate::linux::files::dev::{self, Dev};
    use crate::linux::files::file::Kind;
    use pvmux_hypercalls::handover::fd_state;
    let bad = Refusal::Descriptor(f.pid, f.fd);
    match f.kind {
        fd_state::HOST_FILE | fd_state::VOLUME_FILE => {
            crate::linux::files::path::reopen(path, f.status_flags, f.kind == fd_state::VOLUME_FILE)
                .map(Some)
                .map_err(|_| bad)
        }
        fd_state::MEMORY_FILE => {
            crate::linux::files::path::reopen_ino(f.object, f.status_flags, f.pos, path)
                .map(Some)
                .map_err(|_| bad)
        }
        // A node whose device has a state outside the file: a channel to another kernel
        // (its stream is the host's) or a disk (carried in its slot, section 47).
        fd_state::DEVICE if path.starts_with(b"/dev/pvmux/") || path.starts_with(b"/dev/vd") => {
            let (ino, st) = crate::fs::with(|fs| {
                let ino = fs.lookup(crate::fs::ramfs::ROOT_INO, path, true)?;
                Ok::<_, crate::fs::Errno>((ino, fs.stat_ino(ino)?))
            })
            .map_err(|_| bad.clone())?;
            let st = crate::linux::files::file::KStat::of(st);
            match dev::node(ino) {
                Some(Dev::Channel(i)) if path.starts_with(b"/dev/pvmux/") => Ok(Some(
                    crate::linux::files::channel::open(i, dev::channel_name(i), st, f.status_flags),
                )),
                Some(Dev::Disk(slot)) if path.starts_with(b"/dev/vd") => {
                    let file = crate::linux::files::blockdev::open(
                        u32::from(slot),
                        path,
                        st,
                        f.status_flags,
                    )
                    .map_err(|_| bad)?;
                    *file.pos() = f.pos;
                    Ok(Some(file))
                }
                _ => Err(bad),
            }
        }
        fd_state::DEVICE => match dev::by_path(path) {
            Some(d @ (Dev::Null | Dev::Zero | Dev::Full | Dev::Random | Dev::URandom)) => {
                let ino = crate::fs::with_real_root(|fs| {
                    fs.lookup(crate::fs::ramfs::ROOT_INO, path, true)
                })
                .map_err(|_| bad.clone())?;
                if dev::node(ino) != Some(d) {
                    return Err(bad);
                }
                Ok(Some(OpenFile::new(
                    Kind::Dev { dev: d, ino },
                    f.status_flags,
                )))
            }
            _ => Err(bad),
        },
        _ => Err(bad),
    }
}

/// The directory an adopted process works in: its recorded path (`/` when the record has
/// none: a directory of no path), `None` if it is gone.
fn working_directory(
    r: &Record<'_>,
    pid: i32,
    path: &[u8],
) -> Option<crate::linux::files::FsContext> {
    use crate::fs::ramfs::ROOT_INO;
    use crate::linux::files::FsContext;
    use pvmux_hypercalls::handover::{workdir_kind, WorkdirEntry};
    // One without a path (section 39): a removed directory by its inode (carried if a
    // descriptor holds it; else gone, as it was: no lookup finds anything in it), or a
    // directory of `/proc` or `/sys` by its path there.
    if let Some(w) = r.entries::<WorkdirEntry>().find(|w| w.pid == pid) {
        return match w.kind {
            workdir_kind::REMOVED => {
                let dir = crate::fs::with(|fs| fs.stat_ino(w.ino)).map_or(true, |st| {
                    st.file_type() == crate::fs::ramfs::FileType::Directory
                });
                dir.then(|| FsContext::at(w.ino))
            }
            workdir_kind::SYNTHETIC => {
                let (kind, comps) =
                    crate::linux::procfs::object::parse_path(r.blob_bytes(w.path)?)?;
                let mp =
                    crate::fs::with_real_root(|fs| fs.lookup(ROOT_INO, kind.path(), true)).ok()?;
                Some(FsContext {
                    cwd: mp,
                    root: ROOT_INO,
                    synth: (!comps.is_empty()).then_some((kind, comps)),
                })
            }
            _ => None,
        };
    }
    if path.is_empty() {
        return Some(FsContext::at(ROOT_INO));
    }
    crate::fs::with_real_root(|fs| fs.lookup_dir(ROOT_INO, path))
        .ok()
        .map(FsContext::at)
}

/// Copies the offered record into this kernel's memory (`HandoverFetch`).
fn fetch(args: &AdoptArgs) -> Result<Vec<u8>, Refusal> {
    let len = usize::try_from(args.record_len).map_err(|_| Refusal::Fetch("too long"))?;
    let mut buf: Vec<u8> = Vec::new();
    buf.try_reserve_exact(len)
        .map_err(|_| Refusal::Fetch("no memory for it"))?;
    buf.resize(len, 0);
    let gpa = crate::boot::virt_to_phys(buf.as_ptr() as u64, len as u64)
        .ok_or(Refusal::Fetch("no contiguous buffer"))?;
    match crate::hcall::handover_fetch(gpa, len as u64) {
        Ok(n) if n == len as u64 => Ok(buf),
        Ok(_) => Err(Refusal::Fetch("its length is not the one announced")),
        Err(_) => Err(Refusal::Fetch("the host offers none")),
    }
}

#[cfg(test)]
mod tests;
