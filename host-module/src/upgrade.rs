//! Kernel hand-over (`pvmux upgrade NAME --kernel NEW`, issue 14 item 5; docs/MULTIKERNEL.md
//! "Kernel hand-over", docs/ABI.md §handover): the host's side.
//!
//! [`prepare`] runs every check that can be made **before** the running kernel is asked
//! anything, so a bad image never disturbs the tenant: the new image is parsed and validated
//! as for a boot ([`KernelImage::parse`]: ELF, ABI version, segments, relocations), and the
//! record versions it declares in its hand-over note (`.pvmux_handover`,
//! [`pvmux_hypercalls::handover::HandoverNote`]) must meet those of the running image.
//!
//! Then [`Handover`] carries the exchange with the guest: the host sets the version it wants
//! and raises `pending::HANDOVER`; the guest takes it (`HandoverTake`, hypercall 47) and
//! answers with its record (`HandoverRecord`, hypercall 48), which the host copies out of
//! guest memory (at most [`MAX_RECORD_LEN`] bytes, inside guest memory) and checks with
//! [`Record::parse`] (magic, version, lengths, CRC-32, every section) and then
//! [`Record::check`] against the tenant's [`bounds`] (ids, user addresses, page frames in the
//! user pool, page runs inside their areas) before it believes any of it. A record that names blockers — state the new kernel could not adopt — refuses the
//! upgrade, naming them. The guest stops its user threads at a safe point while it writes
//! the record (the host measures that pause: `HandoverTake` to `HandoverRecord`), and
//! nothing is asked of it before the image checks have passed. With record version 1 (an
//! inventory that carries no process) every tenant with a live process is refused; version
//! 2 carries threads and memory, and names what it does not carry.
//!
//! A record without blockers is checked by the new kernel itself (`preflight`), then the
//! switch: the record is taken again with the guest held in `HandoverRecord`
//! (`Handover::ask` with `hold`, `Handover::release`), and a `Next` is handed to the
//! tenant's monitor thread, which boots the new kernel in the same memory to adopt it (or
//! the old one again if it does not: `Adoption::failed`); the outcome comes back through
//! a `SwitchWait` as a [`SwitchOutcome`] (docs/MULTIKERNEL.md "Kernel hand-over").

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pvmux_hypercalls::handover::{
    blocker, until_nul, BlockerEntry, Bounds, FdEntry, FdStateEntry, FileAreaEntry, FsDirentEntry,
    FsNodeEntry, FsPagesEntry, HandoverNote, InetMsgEntry, InetSocketEntry, PageRunEntry,
    PipeEntry, ProcessEntry, ProcessStateEntry, Record, RecordError, SigActionEntry, SocketEntry,
    SocketMsgEntry, ThreadEntry, ThreadStateEntry, TimerEntry, VmaEntry, ZombieEntry, MAX_PID,
    MAX_RECORD_LEN,
};
use pvmux_hypercalls::HcError;

use crate::{GuestMemory, ImageError, KernelImage};

/// How long the host waits for the guest's record.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an upgrade was refused. In every case the running kernel keeps running, untouched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The tenant is not running.
    #[error("the tenant is not running")]
    NotRunning,
    /// The tenant is paused.
    #[error("the tenant is paused: resume it first")]
    Paused,
    /// Another upgrade of the same tenant is under way.
    #[error("another upgrade of this tenant is under way")]
    Busy,
    /// The new image is not a kernel this host can boot.
    #[error("the new kernel image is refused")]
    BadImage(#[from] ImageError),
    /// The new image declares no hand-over note.
    #[error("the new kernel image cannot adopt a running tenant (it has no .pvmux_handover note)")]
    NewCannotAdopt,
    /// The running image declares no hand-over note.
    #[error("the running kernel cannot hand over (its image has no .pvmux_handover note)")]
    RunningCannotHandOver,
    /// No record version both kernels support.
    #[error(
        "incompatible hand-over record versions: the running kernel ({running}) writes \
         {rmin}..={rmax}, the new kernel ({new}) adopts {nmin}..={nmax}"
    )]
    Incompatible {
        /// The running kernel's release.
        running: String,
        /// Its versions.
        rmin: u32,
        /// Its versions.
        rmax: u32,
        /// The new kernel's release.
        new: String,
        /// Its versions.
        nmin: u32,
        /// Its versions.
        nmax: u32,
    },
    /// The guest did not answer in time.
    #[error("the guest kernel did not hand over its record within {0:?}")]
    NoAnswer(Duration),
    /// The guest said it could not write a record.
    #[error("the guest kernel could not write its hand-over record ({0:?})")]
    GuestFailed(HcError),
    /// The record the guest handed over is malformed.
    #[error("the guest's hand-over record is refused: {0}")]
    BadRecord(RecordError),
    /// The record names state the new kernel could not adopt.
    #[error("the record cannot carry: {}", .0.join("; "))]
    CannotCarry(Vec<String>),
    /// The new kernel, booted to check the record, refuses to adopt it.
    #[error("the new kernel ({new}) refuses to adopt the record: {reason}")]
    NewRefuses {
        /// The new kernel's release.
        new: String,
        /// Its reason (guest text, escaped), or how it ended without one.
        reason: String,
    },
    /// The guest's hold ended before the switch could begin (it waited [`HOLD_TIMEOUT`]):
    /// its programs went on, so its record is stale.
    #[error("the guest's hold ended before the switch began (its record is stale)")]
    HoldLost,
    /// The tenant has host-side state a switch cannot carry to a new kernel.
    #[error("the tenant cannot switch kernels: {0}")]
    HostState(String),
    /// The new kernel did not adopt the record at the switch; the old kernel adopted it
    /// again and runs the tenant's programs.
    #[error(
        "the new kernel ({new}) did not adopt the record at the switch ({reason}); the old \
         kernel adopted it again"
    )]
    SwitchFellBack {
        /// The new kernel's release.
        new: String,
        /// Why not.
        reason: String,
    },
    /// No kernel adopted the record: the tenant ended.
    #[error("the switch failed and the tenant ended: {0}")]
    SwitchFailed(String),
    /// The pre-flight tenant could not be started.
    #[error("cannot start the new kernel to check the record: {0}")]
    Preflight(String),
}

/// What [`prepare`] found: the two kernels and the record version to ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The running kernel's release.
    pub running: String,
    /// The new kernel's release.
    pub new: String,
    /// The record version both support (the highest).
    pub version: u32,
}

/// The running image's note and a new image's bytes → the plan, or why not (nothing asked of
/// the guest yet).
pub fn prepare(running: &KernelImage, new_image: Vec<u8>) -> Result<Plan, UpgradeError> {
    prepare_image(running, new_image).map(|(p, _)| p)
}

/// As [`prepare`], with the new image parsed.
pub(crate) fn prepare_image(
    running: &KernelImage,
    new_image: Vec<u8>,
) -> Result<(Plan, KernelImage), UpgradeError> {
    let new = KernelImage::parse(new_image)?;
    let rn = running
        .handover_note()
        .ok_or(UpgradeError::RunningCannotHandOver)?;
    let nn = new.handover_note().ok_or(UpgradeError::NewCannotAdopt)?;
    let rel = |n: &HandoverNote| String::from_utf8_lossy(n.release()).into_owned();
    let version = rn
        .common_version(nn)
        .ok_or_else(|| UpgradeError::Incompatible {
            running: rel(rn),
            rmin: rn.min_version,
            rmax: rn.max_version,
            new: rel(nn),
            nmin: nn.min_version,
            nmax: nn.max_version,
        })?;
    let plan = Plan {
        running: rel(rn),
        new: rel(nn),
        version,
    };
    Ok((plan, new))
}

/// A checked record, decoded (owned).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// The writer's release.
    pub release: String,
    /// The host sockets (`--net host`) the record names, by handle (section 41): the host
    /// checks that the tenant holds each one, and closes the others at the switch.
    pub host_sockets: Vec<u64>,
    /// The record's version.
    pub version: u32,
    /// Its length in bytes.
    pub len: usize,
    /// Processes.
    pub processes: Vec<ProcessEntry>,
    /// Threads.
    pub threads: Vec<ThreadEntry>,
    /// Memory areas.
    pub vmas: Vec<VmaEntry>,
    /// Open descriptors.
    pub fds: Vec<FdEntry>,
    /// What the new kernel could not adopt.
    pub blockers: Vec<BlockerEntry>,
    /// Version 2: what each thread resumes with.
    pub thread_states: Vec<ThreadStateEntry>,
    /// Version 2: the sleeps threads go on with when they re-issue them (section 27).
    pub restarts: Vec<pvmux_hypercalls::handover::RestartEntry>,
    /// Version 2: every resident user page and its frame, in runs.
    pub pages: Vec<PageRunEntry>,
    /// Version 2: each live process's state, with its working directory and program path
    /// (guest text, escaped).
    pub states: Vec<(ProcessStateEntry, String, String)>,
    /// Version 2: signal dispositions other than the default.
    pub sigactions: Vec<SigActionEntry>,
    /// Version 2: the descriptors carried, each with its path (guest text, escaped).
    pub fd_states: Vec<(FdStateEntry, String)>,
    /// Version 2: pipes, each with the number of bytes buffered in it.
    pub pipes: Vec<(PipeEntry, usize)>,
    /// Version 2: private mappings of host and volume files, each with its path (escaped).
    pub file_areas: Vec<(FileAreaEntry, String)>,
    /// Version 2: `MAP_SHARED` areas (section 29), each with the path of its file (escaped;
    /// empty for anonymous shared memory).
    pub shared_areas: Vec<(pvmux_hypercalls::handover::ShmAreaEntry, String)>,
    /// Version 2: pages of anonymous shared objects carried by frame (section 30).
    pub shared_pages: u64,
    /// Version 2: the wait status of each process not reaped.
    pub zombies: Vec<ZombieEntry>,
    /// Version 2: every timer carried (section 16), in (pid, kind, id) order.
    pub timers: Vec<TimerEntry>,
    /// Version 2: `AF_UNIX` sockets, each with its bound address's name (guest text,
    /// escaped: an abstract name starts with `\x00`, a path ends before its NUL), its messages queued and their bytes.
    pub sockets: Vec<(SocketEntry, String, usize, usize)>,
    /// Version 2: the guest's loopback `AF_INET`/`AF_INET6` sockets (section 18), each
    /// with its messages queued (section 20: a TCP socket's unread bytes count as one) and
    /// their bytes.
    pub inet_sockets: Vec<(InetSocketEntry, usize, usize)>,
    /// Version 2: the in-memory filesystem (sections 21-23), if carried: its inodes, names
    /// and the stored pages of its files (carried by frame).
    pub files: Option<FilesCarried>,
    /// Version 3: the advisory file locks held (section 43).
    pub locks: Vec<pvmux_hypercalls::handover::LockEntry>,
    /// Version 4: the kernel's relays of `--publish` connections and UDP flows (section
    /// 46): the host checks that each handle is one of the tenant's published ones, and
    /// keeps them at the switch.
    pub relays: Vec<pvmux_hypercalls::handover::RelayEntry>,
    /// Version 5: the disks attached to the kernel (section 47), each with its mount path
    /// (escaped; empty when not mounted): the host checks they are exactly its own.
    pub disks: Vec<(pvmux_hypercalls::handover::DiskEntry, String)>,
    /// Version 6: the exec sessions in progress (section 48): the host checks they are
    /// exactly its sessions whose program runs.
    pub exec_sessions: Vec<pvmux_hypercalls::handover::ExecSessionEntry>,
}

/// What a record carries of the in-memory filesystem (sections 21-23).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilesCarried {
    /// Inodes (the filesystem entry not counted).
    pub inodes: usize,
    /// Names in directories.
    pub names: usize,
    /// Stored file pages, carried by frame.
    pub pages: u64,
}

impl Inventory {
    /// Checks `bytes` as a record of `version` (whole: [`Record::parse`], then every value
    /// against `bounds`: [`Record::check`]) and decodes it.
    pub fn parse(bytes: &[u8], version: u32, bounds: &Bounds) -> Result<Self, RecordError> {
        let r = Record::parse(bytes, (version, version))?;
        r.check(bounds)?;
        // Each socket's queued messages and bytes, in one pass.
        let mut queued: std::collections::BTreeMap<u64, (usize, usize)> =
            std::collections::BTreeMap::new();
        for m in r.entries::<SocketMsgEntry>() {
            let q = queued.entry(m.socket).or_default();
            q.0 += 1;
            q.1 += m.data.len as usize;
        }
        let mut inet_queued: std::collections::BTreeMap<u64, (usize, usize)> =
            std::collections::BTreeMap::new();
        for m in r.entries::<InetMsgEntry>() {
            let q = inet_queued.entry(m.socket).or_default();
            q.0 += 1;
            q.1 += m.data.len as usize;
        }
        let path = |b: Option<&[u8]>| {
            crate::escape::escape_guest(b.unwrap_or_default(), crate::escape::Mode::Line)
        };
        Ok(Self {
            host_sockets: r
                .entries::<pvmux_hypercalls::handover::HostSocketEntry>()
                .map(|h| h.handle)
                .collect(),
            thread_states: r.entries().collect(),
            locks: r.entries().collect(),
            relays: r.entries().collect(),
            exec_sessions: r.entries().collect(),
            disks: r
                .entries::<pvmux_hypercalls::handover::DiskEntry>()
                .map(|d| (d, path(r.blob_bytes(d.path))))
                .collect(),
            restarts: r.entries().collect(),
            pages: r.entries().collect(),
            states: r
                .entries::<ProcessStateEntry>()
                .map(|s| (s, path(r.blob_bytes(s.cwd)), path(r.blob_bytes(s.exe))))
                .collect(),
            sigactions: r.entries().collect(),
            fd_states: r
                .entries::<FdStateEntry>()
                .map(|f| (f, path(r.blob_bytes(f.path))))
                .collect(),
            pipes: r
                .entries::<PipeEntry>()
                .map(|p| (p, p.data.len as usize))
                .collect(),
            file_areas: r
                .entries::<FileAreaEntry>()
                .map(|a| (a, path(r.blob_bytes(a.path))))
                .collect(),
            shared_areas: r
                .entries::<pvmux_hypercalls::handover::ShmAreaEntry>()
                .map(|a| (a, path(r.blob_bytes(a.path))))
                .collect(),
            shared_pages: r
                .entries::<pvmux_hypercalls::handover::ShmPagesEntry>()
                .map(|p| p.pages)
                .sum(),
            zombies: r.entries().collect(),
            timers: r.entries().collect(),
            sockets: r
                .entries::<SocketEntry>()
                .map(|s| {
                    let addr = r.blob_bytes(s.addr).unwrap_or_default();
                    let (msgs, bytes) = queued.get(&s.id).copied().unwrap_or_default();
                    // A path ends at its NUL; an abstract name is all its bytes.
                    let name = match addr.get(2..) {
                        Some(n @ [0, ..]) => n,
                        n => until_nul(n.unwrap_or_default()),
                    };
                    (s, path(Some(name)), msgs, bytes)
                })
                .collect(),
            inet_sockets: r
                .entries::<InetSocketEntry>()
                .map(|s| {
                    let (msgs, bytes) = inet_queued.get(&s.id).copied().unwrap_or_default();
                    (s, msgs, bytes)
                })
                .collect(),
            release: crate::escape::escape_guest(r.release(), crate::escape::Mode::Line),
            version: r.header.version,
            len: bytes.len(),
            processes: r.entries().collect(),
            threads: r.entries().collect(),
            vmas: r.entries().collect(),
            fds: r.entries().collect(),
            blockers: r.entries().collect(),
            files: {
                let inodes = r.entries::<FsNodeEntry>().count();
                (inodes > 0).then(|| FilesCarried {
                    inodes: inodes - 1,
                    names: r.entries::<FsDirentEntry>().count(),
                    pages: r.entries::<FsPagesEntry>().map(|p| p.pages).sum(),
                })
            },
        })
    }

    /// The blockers in words (each escaped: they are guest text).
    pub fn blocker_texts(&self) -> Vec<String> {
        self.blockers
            .iter()
            .map(|b| {
                let what =
                    crate::escape::escape_guest(until_nul(&b.what), crate::escape::Mode::Line);
                match b.kind {
                    blocker::PROCESS => format!("{what} (pid {})", b.pid),
                    blocker::FILES | blocker::TIMERS | blocker::KERNEL if b.pid > 0 => {
                        format!("{} {what} of pid {}", b.count, b.pid)
                    }
                    blocker::KERNEL if b.count > 0 => format!("{} {what}", b.count),
                    _ => what,
                }
            })
            .collect()
    }
}

/// The outcome of an upgrade that got as far as the guest's record.
#[derive(Clone, Debug)]
pub struct UpgradeReport {
    /// What [`prepare`] found.
    pub plan: Plan,
    /// The guest's record, decoded.
    pub inventory: Inventory,
    /// From raising `pending::HANDOVER` to the checked record.
    pub record_time: Duration,
    /// From the guest's `HandoverTake` to its `HandoverRecord`: while it writes the record
    /// its user threads are stopped, so this bounds their pause (less the return of one
    /// hypercall).
    pub pause: Duration,
    /// The new kernel's own check of the record (the pre-flight, `preflight`), when the record names no
    /// blocker.
    pub adopt_check: Option<AdoptCheck>,
    /// The switch, when every check passed.
    pub switch: Option<SwitchReport>,
}

/// What the new kernel said of the record in the pre-flight (`preflight`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdoptCheck {
    /// `Ok`: it would adopt it; `Err`: why not (its reason, escaped, or how it ended).
    pub verdict: Result<(), String>,
    /// From launching the scratch tenant to the verdict.
    pub time: Duration,
}

/// A hand-over record offered to a kernel booted to adopt it (boot command `ADOPT`): the
/// host's copy, checked whole before it is offered, which the guest copies into its own
/// memory with `HandoverFetch` (the record stays host-owned: nothing in guest memory has
/// to survive a switch), and the kernel's verdict (`HandoverAdopted`).
#[derive(Debug)]
pub struct Adoption {
    record: Arc<Vec<u8>>,
    verdict: Mutex<Option<Result<(), String>>>,
    cv: Condvar,
    /// Set when the record is offered to a tenant's own next kernel (a switch), not to a
    /// pre-flight's scratch tenant.
    switch: Option<SwitchInfo>,
    /// The host gave up on the kernel ([`Adoption::give_up`]).
    gave_up: std::sync::atomic::AtomicBool,
}

/// What a switch's adoption carries besides the record.
#[derive(Debug)]
struct SwitchInfo {
    /// The adopting kernel's release.
    release: String,
    /// The record's version.
    version: u32,
    /// The kernel to boot, adopting the same record, if this one does not adopt it (the old
    /// kernel), and its release; `None` for that fallback itself.
    fallback: Option<(Arc<KernelImage>, String)>,
    /// Why the kernel before this one did not adopt the record (a fallback's).
    fell_back: Option<String>,
    /// Where the outcome goes.
    result: Arc<SwitchWait>,
}

impl Adoption {
    /// Offers `record` (already checked by [`Inventory::parse`]).
    pub(crate) fn new(record: Vec<u8>) -> Self {
        Self {
            record: Arc::new(record),
            verdict: Mutex::new(None),
            cv: Condvar::new(),
            switch: None,
            gave_up: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether this record is offered to the tenant's own next kernel (a switch).
    pub(crate) fn is_switch(&self) -> bool {
        self.switch.is_some()
    }

    /// Whether the kernel said it adopted the record.
    pub(crate) fn adopted_ok(&self) -> bool {
        matches!(*self.lock(), Some(Ok(())))
    }

    /// The record offered.
    pub(crate) fn record(&self) -> &[u8] {
        &self.record
    }

    /// The record's version (0 outside a switch).
    pub(crate) fn version(&self) -> u32 {
        self.switch.as_ref().map_or(0, |s| s.version)
    }

    /// The kernel that ran this adoption did not adopt (it refused, or ended before its
    /// verdict): the next step, booting the fallback kernel to adopt the same record, or, when
    /// there is none, the reason the switch failed (the outcome is posted then).
    pub(crate) fn failed(&self) -> Result<Next, String> {
        let why = match &*self.lock() {
            Some(Err(reason)) if self.gave_up.load(std::sync::atomic::Ordering::SeqCst) => {
                reason.clone()
            }
            Some(Err(reason)) => format!("it refused to adopt the record: {reason}"),
            _ => "it ended before saying whether it adopts the record".to_owned(),
        };
        let Some(info) = &self.switch else {
            return Err(why);
        };
        let new = &info.release;
        match &info.fallback {
            Some((image, release)) => Ok(Next {
                image: Arc::clone(image),
                words: None,
                adoption: Arc::new(Adoption {
                    record: Arc::clone(&self.record),
                    verdict: Mutex::new(None),
                    cv: Condvar::new(),
                    gave_up: std::sync::atomic::AtomicBool::new(false),
                    switch: Some(SwitchInfo {
                        release: release.clone(),
                        version: info.version,
                        fallback: None,
                        fell_back: Some(format!("{new}: {why}")),
                        result: Arc::clone(&info.result),
                    }),
                }),
            }),
            None => {
                let before = info
                    .fell_back
                    .as_ref()
                    .map(|b| format!("{b}; then "))
                    .unwrap_or_default();
                let reason = format!("{before}{new}: {why}");
                info.result.post(SwitchOutcome::Failed {
                    reason: reason.clone(),
                });
                Err(reason)
            }
        }
    }

    /// Gives up on the kernel adopting this record unless it already adopted it: records
    /// that it gave no verdict in time (a verdict it sends later is refused) and runs `kill`,
    /// both under the verdict's lock, so a kernel that adopted is never killed for being late.
    pub(crate) fn give_up(&self, kill: impl FnOnce()) {
        let mut v = self.lock();
        if v.is_none() {
            self.gave_up
                .store(true, std::sync::atomic::Ordering::SeqCst);
            *v = Some(Err(format!("it gave no verdict within {ADOPT_TIMEOUT:?}")));
            kill();
        }
    }

    /// Marks the end of a step of the switch (see [`SwitchReport::steps`]).
    pub(crate) fn mark(&self, step: &'static str) {
        if let Some(info) = &self.switch {
            info.result.mark(step);
        }
    }

    /// The tenant ended during the switch (not through this adoption's kernel's refusal):
    /// the switch's outcome says why (unless one was posted already).
    pub(crate) fn abandoned(&self, why: &str) {
        if let Some(info) = &self.switch {
            info.result.post(SwitchOutcome::Failed {
                reason: why.to_owned(),
            });
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Result<(), String>>> {
        self.verdict.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `HandoverFetch(gpa, len)`: the record copied to `gpa` when `len` holds it; its length.
    pub(crate) fn fetch(&self, mem: &GuestMemory, gpa: u64, len: u64) -> Result<u64, HcError> {
        let n = self.record.len() as u64;
        if len >= n {
            mem.write(gpa, &self.record)
                .map_err(|_| HcError::BadAddress)?;
        }
        Ok(n)
    }

    /// `HandoverAdopted(status, gpa, len)`: the kernel's verdict, once.
    pub(crate) fn adopted(
        &self,
        mem: &GuestMemory,
        status: u64,
        gpa: u64,
        len: u64,
    ) -> Result<(), HcError> {
        use pvmux_hypercalls::handover::{adopt_status, MAX_ADOPT_REASON};
        let verdict = match status {
            adopt_status::ADOPTS => Ok(()),
            adopt_status::REFUSES if len > MAX_ADOPT_REASON => return Err(HcError::TooLarge),
            adopt_status::REFUSES => {
                let b = mem
                    .read_vec(gpa, len as usize)
                    .map_err(|_| HcError::BadAddress)?;
                let why = crate::escape::escape_guest(&b, crate::escape::Mode::Line);
                Err(if why.is_empty() {
                    "no reason given".to_owned()
                } else {
                    why
                })
            }
            _ => return Err(HcError::InvalidArgument),
        };
        let mut v = self.lock();
        if v.is_some() {
            return Err(HcError::InvalidArgument);
        }
        let adopts = verdict.is_ok();
        *v = Some(verdict);
        self.cv.notify_all();
        drop(v);
        if let (true, Some(info)) = (adopts, &self.switch) {
            info.result.post(SwitchOutcome::Adopted {
                release: info.release.clone(),
                fell_back: info.fell_back.clone(),
            });
        }
        Ok(())
    }

    /// Waits (at most `timeout`, looking at `ended` every 10 ms) for the verdict.
    fn wait(&self, timeout: Duration, ended: impl Fn() -> bool) -> Option<Result<(), String>> {
        let deadline = Instant::now() + timeout;
        let mut v = self.lock();
        loop {
            if let Some(r) = v.clone() {
                return Some(r);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || ended() {
                return None;
            }
            v = self
                .cv
                .wait_timeout(v, left.min(Duration::from_millis(10)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A tenant's next kernel, for its monitor thread to boot in place of the one that ran (a
/// switch, or the fallback after a switch whose kernel did not adopt the record).
#[derive(Debug)]
pub(crate) struct Next {
    /// The image to boot.
    pub(crate) image: Arc<KernelImage>,
    /// The record it adopts (offered with `HandoverFetch`), with the switch's bookkeeping.
    pub(crate) adoption: Arc<Adoption>,
    /// Kernel words added to its boot arguments (`pvmux upgrade --cmdline`).
    pub(crate) words: Option<String>,
}

impl Next {
    /// The switch to `image` (release `release`) adopting `record` of `version`, falling
    /// back to `old` (release `old_release`); the outcome goes to `result`.
    pub(crate) fn switch(
        image: Arc<KernelImage>,
        release: String,
        record: Vec<u8>,
        version: u32,
        old: (Arc<KernelImage>, String),
        words: Option<String>,
        result: Arc<SwitchWait>,
    ) -> Self {
        Self {
            image,
            words,
            adoption: Arc::new(Adoption {
                record: Arc::new(record),
                verdict: Mutex::new(None),
                cv: Condvar::new(),
                gave_up: std::sync::atomic::AtomicBool::new(false),
                switch: Some(SwitchInfo {
                    release,
                    version,
                    fallback: Some(old),
                    fell_back: None,
                    result,
                }),
            }),
        }
    }

    /// The boot arguments of the next kernel: the tenant's own (`base`: its volumes, share,
    /// program, environment — the kernel's filesystem is built as at a boot) with boot
    /// command `ADOPT` (no `CHECK`: a real adoption) first, and the upgrade's words.
    pub(crate) fn boot_args(
        &self,
        base: &pvmux_hypercalls::BootArgsBuf,
        pool: (u64, u64),
    ) -> Result<pvmux_hypercalls::BootArgsBuf, String> {
        use pvmux_hypercalls::bootargs::Command;
        use pvmux_hypercalls::handover::AdoptArgs;
        let adopt = AdoptArgs {
            version: self.adoption.version(),
            flags: 0,
            record_len: self.adoption.record().len() as u64,
            pool_start: pool.0,
            pool_end: pool.1,
        };
        let extra = match &self.words {
            Some(w) => Some(
                pvmux_hypercalls::BootArgsBuf::from_words(w)
                    .map_err(|e| format!("--cmdline {w:?}: {e}"))?,
            ),
            None => None,
        };
        let args = base.args();
        let commands = core::iter::once(Command::Adopt(adopt))
            .chain(
                args.commands()
                    .filter(|c| !matches!(c, Command::Adopt(_) | Command::AdoptRefuse)),
            )
            .chain(
                extra
                    .iter()
                    .flat_map(|b| b.args().commands().collect::<Vec<_>>()),
            );
        pvmux_hypercalls::BootArgsBuf::new(&args.options, commands, args.argv())
            .map_err(|e| e.to_string())
    }
}

/// How a switch ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwitchOutcome {
    /// A kernel adopted the record and runs the tenant's programs: the new one, or (with
    /// `fell_back`: why the new one did not) the old one again.
    Adopted {
        /// The release of the kernel that adopted it.
        release: String,
        /// Why the new kernel did not adopt it, when the old one did.
        fell_back: Option<String>,
    },
    /// No kernel adopted it: the tenant ended (its crash report says why).
    Failed {
        /// Why.
        reason: String,
    },
}

/// Where a switch's outcome is posted (once) and waited for.
#[derive(Debug, Default)]
pub(crate) struct SwitchWait {
    slot: Mutex<Option<(SwitchOutcome, Instant)>>,
    cv: Condvar,
    /// When each step of the switch ended, in order (the host's marks).
    steps: Mutex<Vec<(&'static str, Instant)>>,
}

impl SwitchWait {
    /// Marks the end of step `name` now.
    pub(crate) fn mark(&self, name: &'static str) {
        self.steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name, Instant::now()));
    }

    /// The steps marked so far, each with its time since the previous one (the first since
    /// `from`).
    pub(crate) fn steps(&self, from: Instant) -> Vec<(String, Duration)> {
        let mut prev = from;
        self.steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|&(name, at)| {
                let d = at.saturating_duration_since(prev);
                prev = at;
                (name.to_owned(), d)
            })
            .collect()
    }

    /// Posts the outcome (the first one stays).
    pub(crate) fn post(&self, o: SwitchOutcome) {
        let mut s = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if s.is_none() {
            *s = Some((o, Instant::now()));
            self.cv.notify_all();
        }
    }

    /// Waits at most `timeout` for the outcome, and when it was posted.
    pub(crate) fn wait(&self, timeout: Duration) -> Option<(SwitchOutcome, Instant)> {
        let deadline = Instant::now() + timeout;
        let mut s = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(o) = s.clone() {
                return Some(o);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            s = self
                .cv
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// How long each kernel of a switch is given to adopt the record (boot, checks, rebuild)
/// before the host gives up on it.
pub const ADOPT_TIMEOUT: Duration = Duration::from_secs(15);

/// What a switch did (the report's `switch`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchReport {
    /// How it ended.
    pub outcome: SwitchOutcome,
    /// From the old kernel's `HandoverTake` of the switch's record (its user threads stop)
    /// to the adopting kernel's verdict (they run again): the programs' pause.
    pub pause: Duration,
    /// Of it, from the record to the verdict: the old kernel stopped, the new one built,
    /// booted, and adopting.
    pub switch_time: Duration,
    /// The switch's record's length.
    pub record_len: usize,
    /// Where the switch's time went: each step the host marked (the old kernel's sandbox
    /// reaped, the kernel part rebuilt, the new sandbox started, ...) with its time since
    /// the one before (the first since the record), the last being the wait for the verdict.
    pub steps: Vec<(String, Duration)>,
}

/// How long the new kernel is given to boot and give its verdict in the pre-flight.
pub const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(10);

/// Guest memory of the pre-flight's scratch tenant: the record (at most
/// [`MAX_RECORD_LEN`]) in its kernel heap; sparse, so only what the kernel touches costs.
const PREFLIGHT_MEM: u64 = 128 << 20;

/// What [`preflight`] needs of the running tenant.
pub(crate) struct PreflightInput<'a> {
    /// The tenant's name (the scratch tenant is `NAME~adopt-check`).
    pub(crate) name: &'a str,
    /// The stubs its sandboxes run.
    pub(crate) stubs: (
        std::sync::Arc<crate::sandbox::Stub>,
        std::sync::Arc<crate::sandbox::Stub>,
    ),
    /// The record, as checked.
    pub(crate) record: Vec<u8>,
    /// Its version.
    pub(crate) version: u32,
    /// The bounds it was checked against (its frames' user pool).
    pub(crate) bounds: Bounds,
    /// Kernel words for the new kernel (`pvmux upgrade --cmdline`).
    pub(crate) words: Option<&'a str>,
}

/// The pre-flight: boots the new image in a scratch tenant of its own (its own memory, one
/// vCPU, no devices) with boot command `ADOPT` and flag `CHECK`, offers it the checked
/// record (`HandoverFetch`) and waits for its verdict (`HandoverAdopted`): every check an
/// adoption makes, by the new kernel's own code, before anything of the running tenant is
/// touched. The scratch tenant is then stopped. A kernel that ends, or says nothing within
/// [`PREFLIGHT_TIMEOUT`], refuses.
pub(crate) fn preflight(
    image: std::sync::Arc<KernelImage>,
    input: PreflightInput<'_>,
) -> Result<AdoptCheck, UpgradeError> {
    use pvmux_hypercalls::bootargs::{Command, Options};
    use pvmux_hypercalls::handover::{adopt_flags, AdoptArgs};
    let start = Instant::now();
    let adopt = AdoptArgs {
        version: input.version,
        flags: adopt_flags::CHECK,
        record_len: input.record.len() as u64,
        pool_start: input.bounds.pool_start,
        pool_end: input.bounds.pool_end,
    };
    let extra = match input.words {
        Some(w) => Some(
            pvmux_hypercalls::BootArgsBuf::from_words(w)
                .map_err(|e| UpgradeError::Preflight(format!("--cmdline {w:?}: {e}")))?,
        ),
        None => None,
    };
    let extra_args = extra.as_ref().map(|b| b.args());
    let options = Options {
        quiet: true,
        ..extra_args.map(|a| a.options).unwrap_or_default()
    };
    let commands = core::iter::once(Command::Adopt(adopt))
        .chain(extra_args.into_iter().flat_map(|a| a.commands()));
    let boot_args = pvmux_hypercalls::BootArgsBuf::new(&options, commands, [b""; 0])
        .map_err(|e| UpgradeError::Preflight(e.to_string()))?;
    let mut cfg = crate::TenantConfig::new(
        format!("{}~adopt-check", input.name),
        image,
        PREFLIGHT_MEM,
        1,
        boot_args,
        Box::new(std::io::sink()),
    );
    cfg.console_stderr = Box::new(std::io::sink());
    cfg.kernel_log = crate::console::KernelLog::Hidden;
    let adoption = std::sync::Arc::new(Adoption::new(input.record));
    let host = crate::Host::from_stubs(input.stubs.0, input.stubs.1);
    let tenant = host
        .launch_with(cfg, Some(std::sync::Arc::clone(&adoption)))
        .map_err(|e| UpgradeError::Preflight(e.to_string()))?;
    let verdict = adoption.wait(PREFLIGHT_TIMEOUT, || {
        !matches!(
            tenant.state(),
            crate::TenantState::Running | crate::TenantState::Created
        )
    });
    let time = start.elapsed();
    tenant.kill();
    let outcome = tenant.wait();
    let verdict = verdict.unwrap_or_else(|| {
        Err(match outcome {
            crate::TenantOutcome::Crashed(r)
                if matches!(r.cause, crate::CrashCause::KilledByHost) =>
            {
                format!("it gave no verdict within {PREFLIGHT_TIMEOUT:?}")
            }
            crate::TenantOutcome::Crashed(r) => {
                format!("it crashed before its verdict: {}", r.cause)
            }
            o => format!(
                "it shut down (exit code {}) before its verdict",
                o.exit_code().unwrap_or(-1)
            ),
        })
    });
    tracing::info!(
        ms = time.as_secs_f64() * 1e3,
        adopts = verdict.is_ok(),
        "hand-over pre-flight"
    );
    Ok(AdoptCheck { verdict, time })
}

/// The exchange with the guest (one per tenant).
#[derive(Debug, Default)]
pub struct Handover {
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// An upgrade is under way (asked or not yet answered).
    busy: bool,
    /// The version asked for and not yet taken (0: none).
    asked: u32,
    /// The version the guest took (0: none).
    taken: u32,
    /// The guest's answer.
    answer: Option<Result<Vec<u8>, HcError>>,
    /// When the guest took the version.
    taken_at: Option<Instant>,
    /// From then to its answer.
    pause: Duration,
    /// The guest's `HandoverRecord` is to be held until the host decides ([`Handover::release`]):
    /// the record is the one a switch adopts, so nothing may run after it is written.
    hold: bool,
    /// The host's decision for a held guest.
    release: Option<Release>,
    /// A guest is held in `HandoverRecord` now.
    held: bool,
    /// The host has committed to a switch ([`Handover::commit`]): the held guest then waits
    /// for its sandbox's end with no deadline.
    committed: bool,
}

/// What the host decides for a guest held in `HandoverRecord` ([`Handover::release`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Release {
    /// Its threads go on (the upgrade was refused after the record).
    Thaw,
    /// The kernel is being replaced: its sandbox is gone, nothing will read the answer.
    Switch,
}

/// How long a guest is held at most in `HandoverRecord` (a host that never decides
/// thaws it).
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(30);

impl Handover {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts an exchange for `version`; the caller then raises `pending::HANDOVER`. With
    /// `hold`, a guest that hands over its record is held in `HandoverRecord` (its threads
    /// stay stopped) until [`Handover::release`].
    pub(crate) fn ask(&self, version: u32, hold: bool) -> Result<(), UpgradeError> {
        let mut s = self.lock();
        if s.busy {
            return Err(UpgradeError::Busy);
        }
        *s = State {
            busy: true,
            asked: version,
            hold,
            ..State::default()
        };
        Ok(())
    }

    /// Commits to a switch while the guest is still held: from now on its hold has no
    /// deadline (only [`Handover::release`], once its sandbox is gone, ends it). `false` if
    /// the guest is no longer held (its hold timed out and it thawed, so its record is
    /// stale): the switch must not go on.
    pub(crate) fn commit(&self) -> bool {
        let mut s = self.lock();
        if s.held && s.release.is_none() {
            s.committed = true;
            true
        } else {
            false
        }
    }

    /// Ends the hold of a guest held in `HandoverRecord` (see [`Handover::ask`]): `Thaw` lets
    /// its threads go on; `Switch` (once its sandbox is gone) frees the host thread that
    /// served the call.
    pub(crate) fn release(&self, how: Release) {
        let mut s = self.lock();
        if s.hold {
            s.release = Some(how);
            self.cv.notify_all();
        }
    }

    /// Waits for the guest's answer (at most `timeout`), ends the exchange and returns it.
    pub(crate) fn wait(&self, timeout: Duration) -> Result<(Vec<u8>, Duration), UpgradeError> {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        while s.answer.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = self
                .cv
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let answer = s.answer.take();
        let pause = s.pause;
        if !(s.hold && matches!(answer, Some(Ok(_)))) {
            *s = State::default();
        }
        match answer {
            Some(Ok(b)) => Ok((b, pause)),
            Some(Err(e)) => Err(UpgradeError::GuestFailed(e)),
            None => Err(UpgradeError::NoAnswer(timeout)),
        }
    }

    /// `HandoverTake`: the version asked for (cleared as taken), 0 for none.
    pub(crate) fn take(&self) -> u64 {
        let mut s = self.lock();
        let v = std::mem::take(&mut s.asked);
        if v != 0 {
            s.taken = v;
            s.taken_at = Some(Instant::now());
        }
        u64::from(v)
    }

    /// `HandoverRecord(gpa, len)`: copies the record out of guest memory. Refused unless a
    /// version was taken and not yet answered.
    pub(crate) fn record(&self, mem: &GuestMemory, gpa: u64, len: u64) -> Result<(), HcError> {
        let mut s = self.lock();
        if s.taken == 0 || s.answer.is_some() {
            return Err(HcError::InvalidArgument);
        }
        let answer = if len == 0 {
            Err(i64::try_from(gpa)
                .ok()
                .and_then(|c| HcError::from_ret(-c))
                .unwrap_or(HcError::InvalidArgument))
        } else if len > MAX_RECORD_LEN {
            return Err(HcError::TooLarge);
        } else {
            Ok(mem
                .read_vec(gpa, len as usize)
                .map_err(|_| HcError::BadAddress)?)
        };
        s.pause = s.taken_at.map(|t| t.elapsed()).unwrap_or_default();
        let held = s.hold && answer.is_ok();
        s.answer = Some(answer);
        self.cv.notify_all();
        if !held {
            return Ok(());
        }
        // Held: the guest's threads stay stopped until the host decides (or gives up, unless
        // it committed to the switch).
        s.held = true;
        let deadline = Instant::now() + HOLD_TIMEOUT;
        while s.release.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() && !s.committed {
                tracing::warn!("no decision on a held hand-over within {HOLD_TIMEOUT:?}: thawing");
                break;
            }
            let wait = if s.committed { HOLD_TIMEOUT } else { left };
            s = self
                .cv
                .wait_timeout(s, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let how = s.release.take().unwrap_or(Release::Thaw);
        *s = State::default();
        match how {
            Release::Thaw => Ok(()),
            Release::Switch => Err(HcError::Busy),
        }
    }
}

/// Asks the guest for its record of `plan.version` (`raise` raises `pending::HANDOVER`)
/// and checks it: the report and the record's bytes. The guest keeps running whatever
/// happens.
pub(crate) fn run(
    h: &Handover,
    plan: Plan,
    bounds: &Bounds,
    hold: bool,
    raise: impl FnOnce(),
) -> Result<(UpgradeReport, Vec<u8>, Instant), UpgradeError> {
    let start = Instant::now();
    h.ask(plan.version, hold)?;
    raise();
    let (bytes, pause) = h.wait(ANSWER_TIMEOUT)?;
    // When the guest's threads stopped (its `HandoverTake`).
    let frozen = Instant::now() - pause;
    let inventory = match Inventory::parse(&bytes, plan.version, bounds) {
        Ok(i) => i,
        Err(e) => {
            // A held guest goes on: its record is refused.
            h.release(Release::Thaw);
            return Err(UpgradeError::BadRecord(e));
        }
    };
    let record_time = start.elapsed();
    tracing::info!(
        processes = inventory.processes.len(),
        blockers = inventory.blockers.len(),
        len = inventory.len,
        ms = record_time.as_secs_f64() * 1e3,
        pause_ms = pause.as_secs_f64() * 1e3,
        "hand-over record checked"
    );
    let report = UpgradeReport {
        plan,
        inventory,
        record_time,
        pause,
        adopt_check: None,
        switch: None,
    };
    Ok((report, bytes, frozen))
}

/// The bounds a tenant's record is checked against: user addresses in the user window,
/// frames in its user pool (`pool_base` to the end of its memory).
pub fn bounds(pool_base: u64, mem_size: u64) -> Bounds {
    Bounds {
        user_end: pvmux_hypercalls::user::USER_END,
        pool_start: pool_base,
        pool_end: mem_size,
        max_pid: MAX_PID,
    }
}

/// Decides on a report: refused naming the blockers, or the new kernel's refusal, or how
/// the switch ended.
pub fn decide(report: &UpgradeReport) -> Result<(), UpgradeError> {
    let b = report.inventory.blocker_texts();
    if !b.is_empty() {
        return Err(UpgradeError::CannotCarry(b));
    }
    match &report.adopt_check {
        Some(AdoptCheck {
            verdict: Err(reason),
            ..
        }) => Err(UpgradeError::NewRefuses {
            new: report.plan.new.clone(),
            reason: reason.clone(),
        }),
        Some(_) => match report.switch.as_ref().map(|s| &s.outcome) {
            Some(SwitchOutcome::Adopted {
                fell_back: None, ..
            }) => Ok(()),
            Some(SwitchOutcome::Adopted {
                fell_back: Some(reason),
                ..
            }) => Err(UpgradeError::SwitchFellBack {
                new: report.plan.new.clone(),
                reason: reason.clone(),
            }),
            Some(SwitchOutcome::Failed { reason }) => {
                Err(UpgradeError::SwitchFailed(reason.clone()))
            }
            None => Err(UpgradeError::Preflight("no switch was made".to_owned())),
        },
        None => Err(UpgradeError::Preflight(
            "the new kernel was not asked".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvmux_hypercalls::handover::{fill_name, RecordWriter};
    use zerocopy::FromZeros;

    fn record(blockers: &[(&[u8], i32)]) -> Vec<u8> {
        let mut v = Vec::new();
        let mut w = RecordWriter::new(&mut v, 2, b"6.1.0-pvmux");
        w.section(&[ProcessEntry {
            pid: 1,
            ..Default::default()
        }]);
        let b: Vec<BlockerEntry> = blockers
            .iter()
            .map(|(what, pid)| {
                let mut b = BlockerEntry {
                    kind: blocker::PROCESS,
                    pid: *pid,
                    count: 1,
                    ..FromZeros::new_zeroed()
                };
                fill_name(&mut b.what, what);
                b
            })
            .collect();
        w.section(&b);
        w.finish();
        v
    }

    #[test]
    fn blockers_are_named_and_escaped() {
        let b = bounds(16 << 20, 64 << 20);
        let inv = Inventory::parse(
            &record(&[(b"process sh", 1), (b"process \x1b[2J", 7)]),
            2,
            &b,
        )
        .expect("valid");
        let t = inv.blocker_texts();
        assert_eq!(t[0], "process sh (pid 1)");
        assert!(!t[1].contains('\x1b'), "{t:?}");
        assert!(t[1].ends_with("(pid 7)"), "{t:?}");
    }

    /// A version 2 record of one process with one memory area and one page run at `gpa`.
    fn record_v2(gpa: u64) -> Vec<u8> {
        use pvmux_hypercalls::handover::{page_flags, ProcessStateEntry, ThreadStateEntry};
        let mut v = Vec::new();
        let mut w = RecordWriter::new(&mut v, 2, b"6.1.0-pvmux");
        w.section(&[ProcessEntry {
            pid: 1,
            nr_threads: 1,
            resident_pages: 2,
            ..Default::default()
        }]);
        w.section(&[ThreadEntry {
            tid: 1,
            pid: 1,
            state: 1,
            ..Default::default()
        }]);
        w.section(&[VmaEntry {
            pid: 1,
            start: 0x40_0000,
            end: 0x40_2000,
            ..FromZeros::new_zeroed()
        }]);
        let mut t = ThreadStateEntry::new_zeroed();
        t.tid = 1;
        t.pid = 1;
        t.state = 1;
        t.regs.rip = 0x40_0000;
        w.section(&[t]);
        w.section(&[PageRunEntry {
            pid: 1,
            flags: page_flags::COW,
            va: 0x40_0000,
            gpa,
            pages: 2,
        }]);
        let mut st = ProcessStateEntry::new_zeroed();
        st.pid = 1;
        st.exe.len = 7;
        w.section(&[st]);
        w.blob(b"/bin/sh");
        w.finish();
        v
    }

    #[test]
    fn a_version_2_record_is_checked_against_the_tenants_bounds() {
        let b = bounds(16 << 20, 64 << 20);
        let inv = Inventory::parse(&record_v2(32 << 20), 2, &b).expect("in bounds");
        assert_eq!(inv.pages.len(), 1);
        assert_eq!(inv.states[0].2, "/bin/sh");
        assert_eq!(inv.thread_states[0].regs.rip, 0x40_0000);
        // A frame outside this tenant's user pool (a kernel frame, or past its memory).
        for gpa in [8 << 20, 64 << 20, (64 << 20) - 4096] {
            assert!(
                matches!(
                    Inventory::parse(&record_v2(gpa), 2, &b),
                    Err(RecordError::OutOfBounds("page frame", _))
                ),
                "{gpa:#x}"
            );
        }
        // Only the version asked for.
        assert_eq!(
            Inventory::parse(&record_v2(32 << 20), 1, &b).err(),
            Some(RecordError::Version(2))
        );
    }

    #[test]
    fn an_offered_record_is_copied_on_request_and_the_verdict_taken_once() {
        use pvmux_hypercalls::handover::{adopt_status, MAX_ADOPT_REASON};
        let mem = GuestMemory::new(16 << 20).expect("memfd");
        let a = Adoption::new(b"the record".to_vec());
        // Too small a buffer: nothing copied, the length said.
        assert_eq!(a.fetch(&mem, 0x1000, 4), Ok(10));
        assert_eq!(mem.read_vec(0x1000, 4).unwrap(), [0; 4]);
        assert_eq!(a.fetch(&mem, 0x1000, 4096), Ok(10));
        assert_eq!(mem.read_vec(0x1000, 10).unwrap(), b"the record");
        assert_eq!(a.fetch(&mem, 16 << 20, 4096), Err(HcError::BadAddress));
        // Verdicts: bad status, a reason too long, then a refusal with terminal escapes.
        assert_eq!(a.adopted(&mem, 7, 0, 0), Err(HcError::InvalidArgument));
        assert_eq!(
            a.adopted(&mem, adopt_status::REFUSES, 0x2000, MAX_ADOPT_REASON + 1),
            Err(HcError::TooLarge)
        );
        mem.write(0x2000, b"no \x1b[2J way").unwrap();
        a.adopted(&mem, adopt_status::REFUSES, 0x2000, 12)
            .expect("taken");
        assert_eq!(
            a.adopted(&mem, adopt_status::ADOPTS, 0, 0),
            Err(HcError::InvalidArgument),
            "once"
        );
        let v = a
            .wait(Duration::from_millis(1), || false)
            .expect("a verdict");
        let why = v.expect_err("a refusal");
        assert!(why.starts_with("no ") && !why.contains('\x1b'), "{why}");
        // No verdict: none after the timeout, or as soon as the kernel ended.
        let b = Adoption::new(Vec::new());
        assert_eq!(b.wait(Duration::from_millis(5), || false), None);
        assert_eq!(b.wait(Duration::from_secs(60), || true), None);
    }

    #[test]
    fn the_exchange_takes_once_and_checks_the_answer() {
        let h = Handover::default();
        assert_eq!(h.take(), 0, "nothing asked");
        h.ask(1, false).expect("idle");
        assert!(matches!(h.ask(1, false), Err(UpgradeError::Busy)));
        assert_eq!(h.take(), 1);
        assert_eq!(h.take(), 0, "taken once");
        // A failure code from the guest.
        let mem = GuestMemory::new(16 << 20).expect("memfd");
        h.record(&mem, 6, 0).expect("answer accepted");
        assert!(h.record(&mem, 6, 0).is_err(), "a second answer is refused");
        assert!(matches!(
            h.wait(Duration::from_millis(1)),
            Err(UpgradeError::GuestFailed(HcError::NoResources))
        ));
        // Unasked answers and out-of-memory records are refused.
        assert!(h.record(&mem, 0, 64).is_err());
        h.ask(1, false).expect("idle again");
        let _ = h.take();
        assert_eq!(h.record(&mem, 16 << 20, 4096), Err(HcError::BadAddress));
        assert_eq!(
            h.record(&mem, 0, MAX_RECORD_LEN + 1),
            Err(HcError::TooLarge)
        );
        assert!(matches!(
            h.wait(Duration::from_millis(1)),
            Err(UpgradeError::NoAnswer(_))
        ));
    }

    #[test]
    fn a_held_guest_waits_in_its_record_call_until_the_host_decides() {
        let mem = std::sync::Arc::new(GuestMemory::new(16 << 20).expect("memfd"));
        mem.write(0x1000, b"record").expect("write");
        for (how, want) in [
            (Release::Thaw, Ok(())),
            (Release::Switch, Err(HcError::Busy)),
        ] {
            let h = std::sync::Arc::new(Handover::default());
            h.ask(2, true).expect("idle");
            assert_eq!(h.take(), 2);
            let (h2, mem2) = (std::sync::Arc::clone(&h), std::sync::Arc::clone(&mem));
            let guest = std::thread::spawn(move || h2.record(&mem2, 0x1000, 6));
            let (bytes, _) = h.wait(Duration::from_secs(10)).expect("the record");
            assert_eq!(bytes, b"record");
            std::thread::sleep(Duration::from_millis(20));
            assert!(!guest.is_finished(), "held until the host decides");
            assert!(
                matches!(h.ask(2, false), Err(UpgradeError::Busy)),
                "no other exchange while one is held"
            );
            h.release(how);
            assert_eq!(guest.join().expect("guest thread"), want);
            h.ask(2, false).expect("idle once released");
        }
    }

    #[test]
    fn a_switch_is_committed_only_while_the_guest_is_held_and_a_late_kernel_is_given_up() {
        use pvmux_hypercalls::handover::adopt_status;
        let mem = std::sync::Arc::new(GuestMemory::new(16 << 20).expect("memfd"));
        let h = std::sync::Arc::new(Handover::default());
        assert!(!h.commit(), "no guest held");
        h.ask(2, true).expect("idle");
        assert!(!h.commit(), "asked, not answered yet");
        assert_eq!(h.take(), 2);
        let (h2, mem2) = (std::sync::Arc::clone(&h), std::sync::Arc::clone(&mem));
        let guest = std::thread::spawn(move || h2.record(&mem2, 0x1000, 8));
        h.wait(Duration::from_secs(10)).expect("the record");
        while !h.commit() {
            std::thread::yield_now();
        }
        h.release(Release::Switch);
        assert_eq!(guest.join().expect("guest thread"), Err(HcError::Busy));
        // A kernel given up on: its late verdict is refused, and the fallback says why.
        let image = || {
            std::sync::Arc::new(
                KernelImage::parse(crate::test_elf::TestElf::default().build()).expect("image"),
            )
        };
        let next = Next::switch(
            image(),
            "new".into(),
            b"rec".to_vec(),
            2,
            (image(), "old".into()),
            None,
            std::sync::Arc::new(SwitchWait::default()),
        );
        let mut killed = false;
        next.adoption.give_up(|| killed = true);
        assert!(killed);
        assert!(next
            .adoption
            .adopted(&mem, adopt_status::ADOPTS, 0, 0)
            .is_err());
        assert!(!next.adoption.adopted_ok());
        let fallback = next.adoption.failed().expect("a fallback");
        let mut again = false;
        fallback
            .adoption
            .adopted(&mem, adopt_status::ADOPTS, 0, 0)
            .expect("verdict");
        fallback.adoption.give_up(|| again = true);
        assert!(!again, "a kernel that adopted is not stopped");
    }

    #[test]
    fn a_switch_falls_back_once_then_fails_and_posts_each_outcome() {
        use pvmux_hypercalls::handover::adopt_status;
        let image = || {
            std::sync::Arc::new(
                KernelImage::parse(crate::test_elf::TestElf::default().build())
                    .expect("test image"),
            )
        };
        let mem = GuestMemory::new(16 << 20).expect("memfd");
        let result = std::sync::Arc::new(SwitchWait::default());
        let next = Next::switch(
            image(),
            "new".into(),
            b"rec".to_vec(),
            2,
            (image(), "old".into()),
            None,
            std::sync::Arc::clone(&result),
        );
        assert!(next.adoption.is_switch() && !next.adoption.adopted_ok());
        // The new kernel refuses: the old one is next, with the same record.
        mem.write(0, b"no").expect("write");
        next.adoption
            .adopted(&mem, adopt_status::REFUSES, 0, 2)
            .expect("verdict");
        let fallback = next.adoption.failed().expect("a fallback");
        assert_eq!(fallback.adoption.record(), b"rec");
        assert!(result.wait(Duration::ZERO).is_none(), "nothing posted yet");
        // The old kernel adopts: posted, naming why the new one did not.
        fallback
            .adoption
            .adopted(&mem, adopt_status::ADOPTS, 0, 0)
            .expect("verdict");
        let (o, _) = result.wait(Duration::ZERO).expect("posted");
        assert_eq!(
            o,
            SwitchOutcome::Adopted {
                release: "old".into(),
                fell_back: Some("new: it refused to adopt the record: no".into()),
            }
        );
        // Had it ended without a verdict, the switch would have failed.
        let result = std::sync::Arc::new(SwitchWait::default());
        let next = Next::switch(
            image(),
            "new".into(),
            b"rec".to_vec(),
            2,
            (image(), "old".into()),
            None,
            std::sync::Arc::clone(&result),
        );
        let fallback = next.adoption.failed().expect("a fallback");
        let why = fallback.adoption.failed().expect_err("no second fallback");
        assert!(
            why.contains("new: it ended before") && why.contains("old: it ended before"),
            "{why}"
        );
        assert!(matches!(
            result.wait(Duration::ZERO),
            Some((SwitchOutcome::Failed { .. }, _))
        ));
    }
}
