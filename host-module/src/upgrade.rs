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
//! 2 carries threads and memory, and names what it does not carry; the switch itself is
//! not implemented (see docs/MULTIKERNEL.md).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pvmux_hypercalls::handover::{
    blocker, until_nul, BlockerEntry, Bounds, FdEntry, FdStateEntry, FileAreaEntry, HandoverNote,
    PageRunEntry, PipeEntry, ProcessEntry, ProcessStateEntry, Record, RecordError, SigActionEntry,
    ThreadEntry, ThreadStateEntry, VmaEntry, ZombieEntry, MAX_PID, MAX_RECORD_LEN,
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
    /// Every check passed (the new kernel's own included) but this host does not switch
    /// kernels yet.
    #[error(
        "every check passed and the new kernel ({0}) would adopt the record, but switching \
         the kernel of a running tenant is not implemented yet"
    )]
    SwitchNotImplemented(String),
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
    /// Version 2: the wait status of each process not reaped.
    pub zombies: Vec<ZombieEntry>,
}

impl Inventory {
    /// Checks `bytes` as a record of `version` (whole: [`Record::parse`], then every value
    /// against `bounds`: [`Record::check`]) and decodes it.
    pub fn parse(bytes: &[u8], version: u32, bounds: &Bounds) -> Result<Self, RecordError> {
        let r = Record::parse(bytes, (version, version))?;
        r.check(bounds)?;
        let path = |b: Option<&[u8]>| {
            crate::escape::escape_guest(b.unwrap_or_default(), crate::escape::Mode::Line)
        };
        Ok(Self {
            thread_states: r.entries().collect(),
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
            zombies: r.entries().collect(),
            release: crate::escape::escape_guest(r.release(), crate::escape::Mode::Line),
            version: r.header.version,
            len: bytes.len(),
            processes: r.entries().collect(),
            threads: r.entries().collect(),
            vmas: r.entries().collect(),
            fds: r.entries().collect(),
            blockers: r.entries().collect(),
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
    record: Vec<u8>,
    verdict: Mutex<Option<Result<(), String>>>,
    cv: Condvar,
}

impl Adoption {
    /// Offers `record` (already checked by [`Inventory::parse`]).
    pub(crate) fn new(record: Vec<u8>) -> Self {
        Self {
            record,
            verdict: Mutex::new(None),
            cv: Condvar::new(),
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
        *v = Some(verdict);
        self.cv.notify_all();
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
}

impl Handover {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts an exchange for `version`; the caller then raises `pending::HANDOVER`.
    pub(crate) fn ask(&self, version: u32) -> Result<(), UpgradeError> {
        let mut s = self.lock();
        if s.busy {
            return Err(UpgradeError::Busy);
        }
        *s = State {
            busy: true,
            asked: version,
            ..State::default()
        };
        Ok(())
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
        *s = State::default();
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
        s.answer = Some(answer);
        self.cv.notify_all();
        Ok(())
    }
}

/// Asks the guest for its record of `plan.version` (`raise` raises `pending::HANDOVER`)
/// and checks it: the report and the record's bytes. The guest keeps running whatever
/// happens.
pub(crate) fn run(
    h: &Handover,
    plan: Plan,
    bounds: &Bounds,
    raise: impl FnOnce(),
) -> Result<(UpgradeReport, Vec<u8>), UpgradeError> {
    let start = Instant::now();
    h.ask(plan.version)?;
    raise();
    let (bytes, pause) = h.wait(ANSWER_TIMEOUT)?;
    let inventory =
        Inventory::parse(&bytes, plan.version, bounds).map_err(UpgradeError::BadRecord)?;
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
    };
    Ok((report, bytes))
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

/// Decides on a checked report: refused naming the blockers, or the new kernel's refusal,
/// else (with this host) refused as not implemented.
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
        Some(_) => Err(UpgradeError::SwitchNotImplemented(report.plan.new.clone())),
        None => Err(UpgradeError::Preflight(
            "the new kernel was not asked".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvmux_hypercalls::handover::{fill_name, RecordWriter, RECORD_VERSION};
    use zerocopy::FromZeros;

    fn record(blockers: &[(&[u8], i32)]) -> Vec<u8> {
        let mut v = Vec::new();
        let mut w = RecordWriter::new(&mut v, RECORD_VERSION, b"6.1.0-pvmux");
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
        h.ask(1).expect("idle");
        assert!(matches!(h.ask(1), Err(UpgradeError::Busy)));
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
        h.ask(1).expect("idle again");
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
}
