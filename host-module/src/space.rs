//! User sandboxes ("spaces"): one process per guest address space, created and destroyed by
//! the guest kernel with the `SpaceCreate` / `SpaceDestroy` hypercalls (see
//! [`pvmux_hypercalls::user`]).
//!
//! A space is the stub, started with fd 3 = the guest memfd and fd 4 = a one-page control
//! memfd whose [`SandboxHeader`] says [`kind::USER`] and where the space's context region is.
//! `SpaceCreate` returns at once; the guest's first request waits on its slot until the stub
//! is up.
//!
//! **Spares.** To keep process creation off the guest's critical path, each tenant keeps up
//! to [`SPARES`] *spare* user sandboxes: started with `user_ctx_gpa = user_ctx_len = 0`, their
//! stub does all of its start-up that does not need the context region (mappings, handlers,
//! slot threads, timers, the filter program), installs the *base* seccomp filter on every
//! thread (so a spare never waits unfiltered; docs/SECURITY.md, "Layers") and then sleeps on
//! a futex on the low 32 bits of `user_ctx_len` in its control header. `SpaceCreate` hands a spare the validated region
//! (writes `user_ctx_gpa`, then `user_ctx_len`, then wakes it) and asks the reaper thread for
//! a replacement; with no spare at hand it waits up to [`SPARE_WAIT`] for the one the reaper
//! is spawning, then spawns on the calling thread as before. Spares are
//! spawned by the reaper thread (`clone(CLONE_VM | CLONE_VFORK)`, see `sandbox.rs`; their
//! `PDEATHSIG` is tied to it, and it outlives every sandbox of the tenant), get the tenant's
//! CPU limits like any space, count against
//! [`MAX_PROCESSES`], and are killed with the tenant. A spare that dies before it is used
//! turns spares off for the tenant (a broken stub must not be respawned in a loop).
//!
//! One reaper thread per tenant (started with the first space or spare) waits on the pidfds
//! of all its sandboxes with epoll, reaps each as it ends and marks it dead in guest memory:
//! [`UserCtxHeader::dead`] = 1, `dead_status` (exit status, or `0x100 | signal`), then in
//! every slot `exit_reason = Dead`, `done_seq = run_seq` and a shared futex wake on
//! `done_seq` (futex keys of shared memfd pages are per page, so the guest's waiters in the
//! kernel sandbox are woken through the host's own mapping). Destroyed spaces are marked too:
//! `SpaceDestroy` only kills, and the mark tells the guest kernel when the space's memory is
//! no longer used by the sandbox.
//!
//! Limits: at most [`MAX_SPACES`] undestroyed handles per tenant, and at most
//! [`MAX_PROCESSES`] user sandbox processes (destroyed ones wait to be reaped). Handles are
//! never reused within a tenant. When the tenant ends, [`Spaces::shutdown`] kills every
//! space and spare and waits until the reaper has reaped them all.

use std::collections::HashMap;
use std::mem::offset_of;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pvmux_hypercalls::sandbox::{kind, UserStubCrash, STUB_EXIT_CRASH, USER_CRASH_OFFSET};
use pvmux_hypercalls::user::grant::REAPED_OFFSET;
use pvmux_hypercalls::user::{handoff, user_ctx_size, user_slot_offset, UserCtxHeader, UserSlot};
use pvmux_hypercalls::{HcError, SandboxHeader, PAGE_SIZE};
use rustix::event::epoll;
use rustix::process::Pid;
use rustix::thread::futex;

use crate::clock::ClockParams;
use crate::control::{ControlRegion, HeaderInit};
use crate::limits::SpaceCpu;
use crate::sandbox::{self, SandboxExit, Stub};
use crate::GuestMemory;

mod grant_audit;
mod template;

/// Most undestroyed spaces a tenant may hold.
pub const MAX_SPACES: usize = 1024;
/// Most user sandbox processes a tenant may have (live or destroyed and not yet reaped).
pub const MAX_PROCESSES: usize = 2 * MAX_SPACES;
/// Longest the host blocks for a killed user sandbox to exit (only for a spare found
/// unusable that cannot be left to the reaper; `SpaceDestroy` itself no longer waits).
pub const DESTROY_WAIT: Duration = Duration::from_secs(5);
/// Most spare user sandboxes a tenant keeps ready.
pub(crate) const SPARES: usize = 2;
/// Longest `SpaceCreate` waits for the spare the reaper is spawning when there is none at
/// hand, before it spawns one itself.
const SPARE_WAIT: Duration = Duration::from_millis(20);
/// epoll token of the reaper's wake-up eventfd (handles are smaller).
const WAKE_TOKEN: u64 = u64::MAX;
/// epoll tokens of spares: `SPARE_TOKEN | spare id` (handles are smaller).
const SPARE_TOKEN: u64 = 1 << 62;
/// epoll token of the template's pidfd.
const TEMPLATE_TOKEN: u64 = u64::MAX - 1;

// The context-region words the host writes (checked against the ABI structs).
const HDR_DEAD: u64 = offset_of!(UserCtxHeader, dead) as u64;
const HDR_DEAD_STATUS: u64 = offset_of!(UserCtxHeader, dead_status) as u64;
const SLOT_RUN_SEQ: u64 = offset_of!(UserSlot, run_seq) as u64;
const SLOT_DONE_SEQ: u64 = offset_of!(UserSlot, done_seq) as u64;
const SLOT_EXIT_REASON: u64 = offset_of!(UserSlot, exit_reason) as u64;
const _: () = assert!(std::mem::size_of::<SandboxHeader>() as u64 <= PAGE_SIZE);
// The control-header words the host writes to assign a spare.
const CTL_CTX_GPA: usize = offset_of!(SandboxHeader, user_ctx_gpa);
const CTL_GRANT_GPA: usize = offset_of!(SandboxHeader, user_grant_gpa);
const CTL_CTX_LEN: usize = offset_of!(SandboxHeader, user_ctx_len);
const _: () = assert!(CTL_CTX_GPA.is_multiple_of(8) && CTL_CTX_LEN.is_multiple_of(8));

/// What every space of a tenant shares.
#[derive(Clone, Debug)]
pub(crate) struct SpaceConfig {
    /// Tenant name (logs).
    pub(crate) name: String,
    /// Number of vCPUs (= slots per context region).
    pub(crate) nr_vcpus: u32,
    /// First byte of the user pool.
    pub(crate) pool_base: u64,
    /// The tenant's clock (copied into each header).
    pub(crate) clock: ClockParams,
    /// Fault-around default (copied into each header).
    pub(crate) fault_around_pages: u32,
    /// Who the sandboxes run as when pvmux is root (`crate::jail`).
    pub(crate) sandbox_user: crate::jail::SandboxUser,
    /// The tenant's `RLIMIT_CPU` budget, set by the jail (`crate::jail`).
    pub(crate) cpu_seconds: Option<u64>,
    /// The namespaces the tenant's sandboxes share (`crate::jail`).
    pub(crate) namespaces: Arc<crate::jail::SharedNamespaces>,
    /// Spares may be forked from a template ([`template`]): the user stub is pvmux's own,
    /// which serves `kind::USER_TEMPLATE` (not the test stubs of unit tests).
    pub(crate) templates: bool,
    /// The tenant's host file windows, if it has them: their server answers the window
    /// requests of the sandboxes' listeners, which are handed to it here.
    pub(crate) windows: Option<Arc<crate::window::Windows>>,
}

/// One user sandbox.
struct Entry {
    pid: Pid,
    pidfd: Arc<OwnedFd>,
    /// Where its death is marked (`None`: nowhere, for a spare found unusable).
    ctx_gpa: Option<u64>,
    /// The guest destroyed it: the handle is gone; it is marked dead once reaped.
    destroyed: bool,
    /// Guest-physical address of a word *below the user pool* (guest-kernel memory the
    /// sandbox cannot map) set to 1 once the sandbox is reaped: the only proof of death the
    /// guest kernel may trust (the context region is writable by the sandbox itself).
    reaped_gpa: Option<u64>,
    /// Guest-physical address of the space's grant page (kernel memory, validated), which the
    /// reaper's CPU audit reads ([`grant_audit`]); `None` for a space created without one.
    grant_gpa: Option<u64>,
    /// The control header (kept for diagnostics until the sandbox is reaped).
    ctl: SandboxCtl,
}

/// A spare user sandbox: started without a context region, waiting for one.
struct Spare {
    id: u64,
    pid: Pid,
    pidfd: Arc<OwnedFd>,
    ctl: SandboxCtl,
}

/// A user sandbox's control header: a control memfd of its own (a spawned sandbox, with the
/// host's mapping of it), or a page of its template's (a forked one, which its template
/// reaps: the host reads its exit status from its pidfd).
enum SandboxCtl {
    Own(ControlRegion, CtlMap),
    Template(template::ChildCtl),
}

impl SandboxCtl {
    /// A spawned sandbox's: `ctl`, mapped.
    fn own(ctl: ControlRegion) -> std::io::Result<Self> {
        let words = CtlMap::new(&ctl)?;
        Ok(Self::Own(ctl, words))
    }

    /// The header's `stub_status`, `stub_step` and `stub_error`.
    fn stub_report(&self) -> [u32; 3] {
        match self {
            Self::Own(c, _) => {
                [c.stub_status(), c.stub_step(), c.stub_error()].map(|a| a.load(SeqCst))
            }
            Self::Template(c) => c.stub_report(),
        }
    }

    /// The crash record its stub wrote before exiting with `STUB_EXIT_CRASH`, if any (user
    /// code could have written it too: for the log only).
    fn crash_record(&self) -> Option<UserStubCrash> {
        let words: [u64; 5] =
            std::array::from_fn(|i| self.u64_at(USER_CRASH_OFFSET + 8 * i).load(SeqCst));
        let rec: UserStubCrash = zerocopy::transmute!(words);
        (rec.cause != 0).then_some(rec)
    }

    /// The header word at byte `off`.
    fn u64_at(&self, off: usize) -> &AtomicU64 {
        match self {
            Self::Own(_, m) => m.u64_at(off),
            Self::Template(c) => c.u64_at(off),
        }
    }

    /// Hands the spare its grant page and context region: `user_grant_gpa`, `user_ctx_gpa`,
    /// then `user_ctx_len` (the stub's futex word is its low half), then a shared futex wake.
    fn assign(&self, ctx_gpa: u64, ctx_len: u64, grant_gpa: u64) {
        self.u64_at(CTL_GRANT_GPA).store(grant_gpa, SeqCst);
        self.u64_at(CTL_CTX_GPA).store(ctx_gpa, SeqCst);
        let len = self.u64_at(CTL_CTX_LEN);
        len.store(ctx_len, SeqCst);
        // SAFETY: the low half of the (8-aligned, little-endian) `user_ctx_len` word, inside
        // the mapping; only used as a futex address.
        let word = unsafe { &*(len as *const AtomicU64 as *const AtomicU32) };
        let _ = futex::wake(word, futex::Flags::empty(), u32::MAX);
    }

    /// Whether the sandbox's template reaps it (so the host must not `wait` for it).
    fn by_template(&self) -> bool {
        matches!(self, Self::Template(_))
    }
}

/// Where a spawned user sandbox publishes its seccomp listener (its header's
/// `window_listener`), read through a mapping of its own (the window server may look after
/// the sandbox's entry is gone).
fn published_listener(ctl: &ControlRegion) -> Option<crate::window::Published> {
    let map = CtlMap::new(ctl).ok()?;
    let off = std::mem::offset_of!(pvmux_hypercalls::SandboxHeader, window_listener);
    Some(Box::new(move || {
        // The 8-aligned word holding the field (little-endian).
        let word = map.u64_at(off & !7).load(SeqCst);
        (word >> (8 * (off & 7))) as u32
    }))
}

/// A host mapping of page 0 of a user sandbox's control memfd.
struct CtlMap {
    addr: usize,
}

impl CtlMap {
    fn new(ctl: &ControlRegion) -> std::io::Result<Self> {
        // SAFETY: a fresh shared mapping of the first page of a memfd we own (at least one
        // page long, sealed against shrinking); the kernel chooses the address.
        let p = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                PAGE_SIZE as usize,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
                std::os::fd::BorrowedFd::borrow_raw(ctl.raw_fd()),
                0,
            )?
        };
        Ok(Self { addr: p as usize })
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(off.is_multiple_of(8) && off + 8 <= PAGE_SIZE as usize);
        // SAFETY: `off` is an 8-aligned offset inside the mapped page (checked), which lives
        // as long as `self`; any bit pattern is a valid AtomicU64 and every access is atomic
        // (the stub accesses the page concurrently).
        unsafe { &*((self.addr + off) as *const AtomicU64) }
    }
}

impl Drop for CtlMap {
    fn drop(&mut self) {
        // SAFETY: our own mapping of one page, no reference into it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.addr as *mut _, PAGE_SIZE as usize) };
    }
}

/// The reaper thread and how to reach it.
struct Reaper {
    epoll: Arc<OwnedFd>,
    wake: Arc<OwnedFd>,
    thread: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    entries: HashMap<u64, Entry>,
    next_handle: u64,
    /// Spares, oldest first.
    spares: Vec<Spare>,
    next_spare: u64,
    /// A spare died before it was used: no more spares for this tenant.
    spares_off: bool,
    /// The tenant is ending: no new spaces.
    closed: bool,
    /// The tenant is paused: every sandbox is stopped, and one spawned now is stopped as
    /// soon as it exists (`crate::pause`).
    paused: bool,
    reaper: Option<Reaper>,
}

impl State {
    /// User sandbox processes not reaped yet.
    fn processes(&self) -> usize {
        self.entries.len() + self.spares.len()
    }
}

struct Inner {
    cfg: SpaceConfig,
    mem: Arc<GuestMemory>,
    stub: Arc<Stub>,
    cpu: OnceLock<SpaceCpu>,
    state: Mutex<State>,
    /// Notified when the reaper offers a spare, and when the tenant closes.
    spare_ready: Condvar,
    /// [`MAX_SPACES`] (lower in tests).
    max_spaces: usize,
    /// [`SPARES`] (0 in most tests).
    max_spares: usize,
    /// [`SPARE_WAIT`] (longer in a test of the wait itself, where ~200 tests spawning
    /// sandboxes in parallel can make a spawn take longer than the real wait).
    spare_wait: Duration,
    /// A user sandbox died that its guest kernel had not destroyed, and was logged as a
    /// warning: the next ones are logged at debug level only (a guest can make its own
    /// sandboxes die as often as it likes).
    death_warned: AtomicBool,
}

impl Inner {
    /// Most user sandbox processes of the tenant ([`MAX_PROCESSES`], scaled with a test's
    /// lower `max_spaces`).
    fn max_processes(&self) -> usize {
        self.max_spaces * (MAX_PROCESSES / MAX_SPACES)
    }
}

/// The user sandboxes of one tenant.
pub(crate) struct Spaces {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Spaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spaces")
            .field("tenant", &self.inner.cfg.name)
            .finish_non_exhaustive()
    }
}

impl Spaces {
    /// No spaces yet; `mem` is the tenant's guest memory, `stub` the sandbox stub.
    pub(crate) fn new(cfg: SpaceConfig, mem: Arc<GuestMemory>, stub: Arc<Stub>) -> Self {
        Self {
            inner: Arc::new(Inner {
                cfg,
                mem,
                stub,
                cpu: OnceLock::new(),
                state: Mutex::new(State {
                    next_handle: 1,
                    ..State::default()
                }),
                spare_ready: Condvar::new(),
                max_spaces: MAX_SPACES,
                max_spares: SPARES,
                spare_wait: SPARE_WAIT,
                death_warned: AtomicBool::new(false),
            }),
        }
    }

    /// Sets the CPU limits every space gets (once, when the kernel sandbox got them): applies
    /// them to the sandboxes that already exist, then starts the first spares (the kernel
    /// is still booting).
    pub(crate) fn set_cpu(&self, cpu: SpaceCpu) {
        let mut st = self.lock();
        if self.inner.cpu.set(cpu).is_ok() {
            if let Some(cpu) = self.inner.cpu.get() {
                let pids = st
                    .entries
                    .values()
                    .map(|e| e.pid)
                    .chain(st.spares.iter().map(|s| s.pid));
                for pid in pids {
                    cpu.apply(pid.as_raw_nonzero().get() as u32);
                }
            }
        }
        // The reaper joins the cgroup at its next wake-up: now, while the guest runs, not at
        // its first spawn or at the tenant's end (a join waits for an RCU grace period, and
        // the shutdown waits for the reaper).
        self.wake_reaper(&st);
        self.want_spares(&mut st);
    }

    /// Starts spawning the first spares while the kernel boots, before the tenant's limits
    /// are set (that waits for RCU grace periods; [`Self::set_cpu`] then moves the spares
    /// that exist by then): init's space takes a ready sandbox instead of spawning one.
    pub(crate) fn prewarm(&self) {
        let mut st = self.lock();
        self.want_spares(&mut st);
    }

    /// Starts the reaper if needed and wakes it to top up the spares.
    fn want_spares(&self, st: &mut State) {
        if st.closed || st.spares_off || st.spares.len() >= self.inner.max_spares {
            return;
        }
        if st.reaper.is_none() {
            match self.start_reaper() {
                Ok(r) => st.reaper = Some(r),
                Err(e) => {
                    tracing::error!(tenant = %self.inner.cfg.name, "cannot start the space reaper: {e}");
                    return;
                }
            }
        }
        self.wake_reaper(st);
    }

    /// Wakes the reaper thread, if it runs.
    fn wake_reaper(&self, st: &State) {
        if let Some(r) = &st.reaper {
            if let Err(e) = rustix::io::write(&*r.wake, &1u64.to_ne_bytes()) {
                tracing::error!("cannot wake the space reaper: {e}");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `SpaceCreate(ctx_gpa)` without a reaped word (tests).
    #[cfg(test)]
    pub(crate) fn create(&self, ctx_gpa: u64) -> Result<u64, HcError> {
        self.create_reporting(ctx_gpa, 0)
    }

    /// `SpaceCreate(ctx_gpa, grant_gpa)`: validates the context region and the grant page
    /// (page aligned, below the user pool, or 0 for none: host tests only, the stub refuses to
    /// start without one) and spawns a user sandbox for it. The grant page's `reaped` word is
    /// the space's reaped word. Returns the handle, or `BadAddress` / `NoResources`.
    pub(crate) fn create_reporting(&self, ctx_gpa: u64, grant_gpa: u64) -> Result<u64, HcError> {
        let grant = match grant_gpa {
            0 => None,
            g if g.is_multiple_of(PAGE_SIZE)
                && g.checked_add(PAGE_SIZE)
                    .is_some_and(|e| e <= self.inner.cfg.pool_base) =>
            {
                Some(g)
            }
            _ => return Err(HcError::BadAddress),
        };
        let reaped = grant.map(|g| g + REAPED_OFFSET);
        let cfg = &self.inner.cfg;
        let mem_size = self.inner.mem.size();
        let ctx_len = user_ctx_size(cfg.nr_vcpus);
        let in_pool = ctx_gpa.is_multiple_of(PAGE_SIZE)
            && ctx_gpa >= cfg.pool_base
            && ctx_gpa
                .checked_add(ctx_len)
                .is_some_and(|end| end <= mem_size);
        if !in_pool {
            return Err(HcError::BadAddress);
        }
        let mut st = self.lock();
        let live = st.entries.values().filter(|e| !e.destroyed).count();
        let max = self.inner.max_spaces;
        if st.closed || live >= max {
            return Err(HcError::NoResources);
        }
        if let Some(handle) = self.use_spare(&mut st, ctx_gpa, ctx_len, grant) {
            self.want_spares(&mut st);
            return Ok(handle);
        }
        // None at hand: the reaper is spawning one (it tops up after each spare taken), and
        // waiting for it is quicker than spawning here, which would also hold the state lock
        // through a clone, an exec and the cgroup moves (up to milliseconds, while other
        // vCPUs' `SpaceCreate`s and the reaper wait for the lock).
        let deadline = Instant::now() + self.inner.spare_wait;
        self.want_spares(&mut st);
        while self.spare_coming(&st) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = match self.inner.spare_ready.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
            if st.closed {
                return Err(HcError::NoResources);
            }
            if let Some(handle) = self.use_spare(&mut st, ctx_gpa, ctx_len, grant) {
                self.want_spares(&mut st);
                return Ok(handle);
            }
        }
        if st.processes() >= self.inner.max_processes() {
            return Err(HcError::NoResources);
        }
        if st.reaper.is_none() {
            st.reaper = Some(self.start_reaper().map_err(|e| {
                tracing::error!(tenant = %cfg.name, "cannot start the space reaper: {e}");
                HcError::NoResources
            })?);
        }
        let ctl = ControlRegion::new(&HeaderInit {
            user_ctx_gpa: ctx_gpa,
            user_ctx_len: ctx_len,
            user_grant_gpa: grant.unwrap_or(0),
            ..spare_header(&self.inner)
        })
        .map_err(|e| {
            tracing::warn!(tenant = %cfg.name, "cannot create a user control region: {e}");
            HcError::NoResources
        })?;
        let jail =
            crate::jail::ChildJail::for_sandbox(cfg.sandbox_user, cfg.cpu_seconds, &cfg.namespaces);
        let child = sandbox::spawn(
            &self.inner.stub,
            self.inner.mem.raw_fd(),
            ctl.raw_fd(),
            None,
            &jail,
        )
        .map_err(|e| {
            tracing::warn!(tenant = %cfg.name, "cannot spawn a user sandbox: {e}");
            HcError::NoResources
        })?;
        let ctl = SandboxCtl::own(ctl).map_err(|e| {
            tracing::warn!(tenant = %cfg.name, "cannot map a user control region: {e}");
            sandbox::kill(&child.pidfd);
            let _ = sandbox::reap(child.pid);
            HcError::NoResources
        })?;
        let raw_pid = child.pid.as_raw_nonzero().get() as u32;
        if let Some(cpu) = self.inner.cpu.get() {
            cpu.apply(raw_pid);
        }
        if st.paused {
            // Spawned by a hypercall that was in flight when the tenant paused.
            let _ = crate::pause::signal(&child.pidfd, crate::pause::Direction::Stop);
        }
        let handle = st.next_handle;
        let reaper = st.reaper.as_ref().map(|r| Arc::clone(&r.epoll));
        let added = reaper.as_ref().map(|ep| {
            epoll::add(
                ep,
                &child.pidfd,
                epoll::EventData::new_u64(handle),
                epoll::EventFlags::IN,
            )
        });
        if !matches!(added, Some(Ok(()))) {
            tracing::error!(tenant = %cfg.name, "cannot watch a user sandbox: {added:?}");
            sandbox::kill(&child.pidfd);
            let _ = sandbox::reap(child.pid);
            return Err(HcError::NoResources);
        }
        st.next_handle += 1;
        let pidfd = Arc::new(child.pidfd);
        if let (Some(w), SandboxCtl::Own(c, _)) = (&cfg.windows, &ctl) {
            if let Some(p) = published_listener(c) {
                w.serve_sandbox(Arc::clone(&pidfd), p);
            }
        }
        st.entries.insert(
            handle,
            Entry {
                pid: child.pid,
                pidfd,
                ctx_gpa: Some(ctx_gpa),
                destroyed: false,
                reaped_gpa: reaped,
                grant_gpa: grant,
                ctl,
            },
        );
        // tests/tests/hostile_user.rs reads the pids of this line and the spare lines below.
        tracing::debug!(tenant = %cfg.name, handle, pid = raw_pid, ctx_gpa, "user sandbox spawned");
        self.want_spares(&mut st);
        Ok(handle)
    }

    /// Whether the reaper will offer a spare (it is topping them up).
    fn spare_coming(&self, st: &State) -> bool {
        !st.closed
            && !st.spares_off
            && st.reaper.is_some()
            && st.spares.len() < self.inner.max_spares
            && st.processes() < self.inner.max_processes()
    }

    /// Gives the oldest live spare the (validated) context region and makes it space
    /// `next_handle`; `None` if there is none (or it cannot be used).
    fn use_spare(
        &self,
        st: &mut State,
        ctx_gpa: u64,
        ctx_len: u64,
        grant_gpa: Option<u64>,
    ) -> Option<u64> {
        let name = &self.inner.cfg.name;
        let ep = Arc::clone(&st.reaper.as_ref()?.epoll);
        while !st.spares.is_empty() {
            let sp = st.spares.remove(0);
            let handle = st.next_handle;
            // A spare whose stub failed, or that is already gone, is left to the reaper.
            let failed = sp.ctl.stub_report()[0] == pvmux_hypercalls::sandbox::status::FAILED;
            let watched = !failed
                && epoll::modify(
                    &*ep,
                    &*sp.pidfd,
                    epoll::EventData::new_u64(handle),
                    epoll::EventFlags::IN,
                )
                .is_ok();
            if !watched || sandbox::wait_exited(&sp.pidfd, Some(Duration::ZERO)) {
                tracing::warn!(tenant = %name, pid = sp.pid.as_raw_nonzero().get(), "spare user sandbox unusable");
                st.spares_off = true;
                sandbox::kill(&sp.pidfd);
                // Keep it as a destroyed entry so the reaper reaps it (token: the handle,
                // if the modification went through; else its spare token finds nothing
                // and the fallback below reaps it).
                if watched {
                    st.next_handle += 1;
                    st.entries.insert(
                        handle,
                        Entry {
                            pid: sp.pid,
                            pidfd: sp.pidfd,
                            ctx_gpa: None,
                            destroyed: true,
                            reaped_gpa: None,
                            grant_gpa: None,
                            ctl: sp.ctl,
                        },
                    );
                } else {
                    let _ = epoll::delete(&*ep, &*sp.pidfd);
                    sandbox::wait_exited(&sp.pidfd, Some(DESTROY_WAIT));
                    let _ = reap(&self.inner, sp.pid, &sp.pidfd, &sp.ctl);
                }
                continue;
            }
            if let (Some(w), SandboxCtl::Own(c, _)) = (&self.inner.cfg.windows, &sp.ctl) {
                // A spawned spare: its own listener (a template's children share the
                // template's, which the server has).
                if let Some(p) = published_listener(c) {
                    w.serve_sandbox(Arc::clone(&sp.pidfd), p);
                }
            }
            sp.ctl.assign(ctx_gpa, ctx_len, grant_gpa.unwrap_or(0));
            st.next_handle += 1;
            tracing::debug!(tenant = %name, handle, pid = sp.pid.as_raw_nonzero().get(), spare = sp.id, ctx_gpa, "spare user sandbox assigned");
            st.entries.insert(
                handle,
                Entry {
                    pid: sp.pid,
                    pidfd: sp.pidfd,
                    ctx_gpa: Some(ctx_gpa),
                    destroyed: false,
                    reaped_gpa: grant_gpa.map(|g| g + REAPED_OFFSET),
                    grant_gpa,
                    ctl: sp.ctl,
                },
            );
            return Some(handle);
        }
        None
    }

    /// `SpaceDestroy(handle)`: kills the space and returns at once. The reaper reaps it and
    /// then marks it dead like a space that died by itself: until the guest kernel sees
    /// `dead`, the sandbox may still use the context region and the user pages.
    /// `InvalidArgument` for a handle that is not an undestroyed space of this tenant.
    pub(crate) fn destroy(&self, handle: u64) -> Result<(), HcError> {
        let mut st = self.lock();
        let Some(e) = st.entries.get_mut(&handle).filter(|e| !e.destroyed) else {
            return Err(HcError::InvalidArgument);
        };
        e.destroyed = true;
        sandbox::kill(&e.pidfd);
        Ok(())
    }

    /// Calls `f` with the pids of every user sandbox not reaped yet, spares included, under
    /// the state lock (sandboxes are reaped under it, so `f` sees each either live or
    /// reaped, never both or neither).
    pub(crate) fn with_pids<R>(&self, f: impl FnOnce(&mut dyn Iterator<Item = u32>) -> R) -> R {
        let st = self.lock();
        let mut pids = st
            .entries
            .values()
            .map(|e| e.pid)
            .chain(st.spares.iter().map(|s| s.pid))
            .map(|p| p.as_raw_nonzero().get() as u32);
        f(&mut pids)
    }

    /// Stops (pauses) or continues every user sandbox, spares included; while paused, a
    /// sandbox spawned later is stopped as soon as it exists. Every sandbox is signalled even
    /// if one fails; the first failure is returned.
    pub(crate) fn set_paused(
        &self,
        dir: crate::pause::Direction,
    ) -> Result<(), crate::pause::PauseError> {
        let mut st = self.lock();
        st.paused = dir == crate::pause::Direction::Stop;
        let mut result = Ok(());
        let fds = st
            .entries
            .values()
            .map(|e| &*e.pidfd)
            .chain(st.spares.iter().map(|s| &*s.pidfd));
        for fd in fds {
            if let Err(e) = crate::pause::signal(fd, dir) {
                result = result.and(Err(e));
            }
        }
        result
    }

    /// Pids of the (assigned) user sandboxes not reaped yet; spares are not included.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.lock()
            .entries
            .values()
            .map(|e| e.pid.as_raw_nonzero().get() as u32)
            .collect()
    }

    /// The tenant is ending: refuses new spaces, kills every space and spare and waits until
    /// all are reaped (joins the reaper).
    pub(crate) fn shutdown(&self) {
        let reaper = {
            let mut st = self.lock();
            st.closed = true;
            for e in st.entries.values() {
                sandbox::kill(&e.pidfd);
            }
            for s in &st.spares {
                sandbox::kill(&s.pidfd);
            }
            self.inner.spare_ready.notify_all();
            st.reaper.take()
        };
        if let Some(r) = reaper {
            if let Err(e) = rustix::io::write(&*r.wake, &1u64.to_ne_bytes()) {
                tracing::error!("cannot wake the space reaper: {e}");
            }
            let _ = r.thread.join();
        }
    }

    /// After [`Spaces::shutdown`] for a new kernel of the same tenant (a hand-over): spaces
    /// may be created again (handles go on from where they were) and spares are started.
    pub(crate) fn reopen(&self) {
        let mut st = self.lock();
        st.closed = false;
        self.want_spares(&mut st);
    }

    fn start_reaper(&self) -> std::io::Result<Reaper> {
        let ep = Arc::new(epoll::create(epoll::CreateFlags::CLOEXEC)?);
        let wake = Arc::new(rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC,
        )?);
        epoll::add(
            &*ep,
            &*wake,
            epoll::EventData::new_u64(WAKE_TOKEN),
            epoll::EventFlags::IN,
        )?;
        let inner = Arc::clone(&self.inner);
        let (ep2, wake2) = (Arc::clone(&ep), Arc::clone(&wake));
        let thread = std::thread::Builder::new()
            .name(format!("pvmux-reap-{}", self.inner.cfg.name))
            .spawn(move || reaper_thread(&inner, &ep2, &wake2))?;
        Ok(Reaper {
            epoll: ep,
            wake,
            thread,
        })
    }
}

/// Waits on the pidfds of every space and spare (and the wake eventfd), reaps each as it
/// ends and tops up the spares, until the tenant is closed and no sandbox is left.
fn reaper_thread(inner: &Inner, ep: &OwnedFd, wake: &OwnedFd) {
    // The spares this thread spawns inherit its empty bounding set: their jails drop none.
    let emptied = crate::jail::drop_thread_bounding_set();
    tracing::debug!(tenant = %inner.cfg.name, emptied, "reaper's capability bounding set");
    let mut events = Vec::with_capacity(64);
    // Spawning spares and reaping is host work on the tenant's behalf.
    let mut meter = crate::limits::budget::HostMeter::start();
    let mut audit = grant_audit::Audit::new();
    let mut templates = Templates::default();
    // Whether this thread is in the tenant's cgroup (`SpaceCpu::join_thread`), once the
    // limits are known; `None` until then.
    let mut joined: Option<bool> = None;
    loop {
        if let Some(cpu) = inner.cpu.get() {
            if !(joined == Some(true) && cpu.usage_in_cgroup()) {
                meter.charge(cpu.account());
            }
            if joined.is_none() {
                // A closed tenant spawns nothing more: its reaper has no reason to join (and
                // the shutdown would wait for the join's grace period).
                let closed = inner.state.lock().unwrap_or_else(|e| e.into_inner()).closed;
                joined = Some(!closed && cpu.join_thread());
                meter = crate::limits::budget::HostMeter::start();
            }
        }
        events.clear();
        let timeout = audit.timeout();
        match epoll::wait(
            ep,
            rustix::buffer::spare_capacity(&mut events),
            Some(&timeout),
        ) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                // Cannot wait any more: fall back to reaping everything synchronously.
                tracing::error!(tenant = %inner.cfg.name, "epoll_wait failed: {e}");
                reap_all_blocking(inner);
                templates.stop(inner, ep);
                return;
            }
        }
        for ev in &events {
            let token = ev.data.u64();
            if token == WAKE_TOKEN {
                let mut b = [0u8; 8];
                let _ = rustix::io::read(wake, &mut b);
            } else if token == TEMPLATE_TOKEN {
                // Its children died with it: their pidfds say so.
                tracing::warn!(tenant = %inner.cfg.name, "the user sandbox template died; spares are spawned");
                templates.stop(inner, ep);
            } else if token & SPARE_TOKEN != 0 {
                reap_spare(inner, ep, token & !SPARE_TOKEN);
            } else {
                reap_one(inner, ep, token);
            }
        }
        top_up_spares(inner, ep, joined == Some(true), &mut templates);
        audit.run_if_due(inner);
        let st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.closed && st.processes() == 0 {
            drop(st);
            templates.stop(inner, ep);
            return;
        }
    }
}

/// Spawns spares until there are `max_spares` (called on the reaper thread, which stays
/// alive as long as any sandbox of the tenant: the spares' `PDEATHSIG` is tied to it).
/// Forks without the state lock; the vCPU threads only ever take spares that are ready.
/// `in_cgroup`: the reaper thread is in the tenant's cgroup, so its spares are born there.
fn top_up_spares(inner: &Inner, ep: &OwnedFd, in_cgroup: bool, templates: &mut Templates) {
    let cfg = &inner.cfg;
    loop {
        let first_spares = {
            let st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.closed
                || st.spares_off
                || st.spares.len() >= inner.max_spares
                || st.processes() >= inner.max_processes()
            {
                return;
            }
            st.next_spare < inner.max_spares as u64
        };
        let init = spare_header(inner);
        // The tenant's first spares are spawned: a template started with them would take
        // CPU from the guest's boot (+0.5-1.9 ms to init on a 2-CPU host). It starts with the
        // first spare the guest's processes call for.
        let forked = if first_spares {
            None
        } else {
            templates.fork(inner, ep, in_cgroup, &init)
        };
        let spawned = match forked {
            Some(child) => Ok(child),
            None => ControlRegion::new(&init)
                .map_err(|e| e.to_string())
                .and_then(|ctl| {
                    let ctl = SandboxCtl::own(ctl).map_err(|e| format!("mmap: {e}"))?;
                    let jail = crate::jail::ChildJail::for_sandbox(
                        cfg.sandbox_user,
                        cfg.cpu_seconds,
                        &cfg.namespaces,
                    );
                    let raw = match &ctl {
                        SandboxCtl::Own(c, _) => c.raw_fd(),
                        SandboxCtl::Template(_) => unreachable!("made above"),
                    };
                    let child = sandbox::spawn(&inner.stub, inner.mem.raw_fd(), raw, None, &jail)
                        .map_err(|e| e.to_string())?;
                    Ok((child, ctl))
                }),
        };
        // Limits before the spare is visible, and without the state lock (moving a process
        // into a cgroup can take milliseconds). No other thread reaps a spare that is not
        // registered yet, so its pid is still its own. Limits set meanwhile
        // (`Spaces::set_cpu`) are applied below, under the lock.
        let applied = match (&spawned, inner.cpu.get()) {
            (Ok((child, _)), Some(cpu)) if in_cgroup => {
                cpu.apply_born_inside(child.pid.as_raw_nonzero().get() as u32);
                true
            }
            (Ok((child, _)), Some(cpu)) => {
                cpu.apply(child.pid.as_raw_nonzero().get() as u32);
                true
            }
            _ => false,
        };
        let (child, ctl) = match spawned {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(tenant = %cfg.name, "cannot spawn a spare user sandbox: {e}");
                inner
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .spares_off = true;
                inner.spare_ready.notify_all();
                return;
            }
        };
        let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let id = st.next_spare;
        let raw_pid = child.pid.as_raw_nonzero().get() as u32;
        let added = epoll::add(
            ep,
            &child.pidfd,
            epoll::EventData::new_u64(SPARE_TOKEN | id),
            epoll::EventFlags::IN,
        );
        if st.closed || added.is_err() {
            if let Err(e) = added {
                tracing::error!(tenant = %cfg.name, "cannot watch a spare user sandbox: {e}");
                st.spares_off = true;
                inner.spare_ready.notify_all();
            } else {
                let _ = epoll::delete(ep, &child.pidfd);
            }
            drop(st);
            sandbox::kill(&child.pidfd);
            sandbox::wait_exited(&child.pidfd, Some(DESTROY_WAIT));
            let _ = reap(inner, child.pid, &child.pidfd, &ctl);
            return;
        }
        if !applied {
            if let Some(cpu) = inner.cpu.get() {
                cpu.apply(raw_pid);
            }
        }
        if st.paused {
            let _ = crate::pause::signal(&child.pidfd, crate::pause::Direction::Stop);
        }
        st.next_spare += 1;
        st.spares.push(Spare {
            id,
            pid: child.pid,
            pidfd: Arc::new(child.pidfd),
            ctl,
        });
        inner.spare_ready.notify_one();
        tracing::debug!(tenant = %cfg.name, pid = raw_pid, spare = id, "spare user sandbox spawned");
    }
}

/// The header of a user sandbox of the tenant, without a context region (a spare's).
fn spare_header(inner: &Inner) -> HeaderInit {
    let cfg = &inner.cfg;
    HeaderInit {
        nr_vcpus: cfg.nr_vcpus,
        mem_size: inner.mem.size(),
        tsc_base: cfg.clock.tsc_base,
        mono_base_ns: cfg.clock.mono_base_ns,
        clock_mult: cfg.clock.mult,
        clock_shift: cfg.clock.shift,
        fault_around_pages: cfg.fault_around_pages,
        kind: kind::USER,
        user_pool_base: cfg.pool_base,
        user_ctx_gpa: 0,
        user_ctx_len: 0,
        windows: cfg.windows.is_some(),
        ..HeaderInit::default()
    }
}

/// The reaper thread's template ([`template`]): started with the first spare that may be
/// forked, given up for good (spares are spawned again) if it cannot start, fails a fork or
/// dies.
#[derive(Default)]
struct Templates {
    running: Option<template::Template>,
    off: bool,
}

impl Templates {
    /// A spare forked from the template (started if need be), or `None` to spawn one: the
    /// kernel cannot report a reaped child's exit status, the tenant's CPU time is counted
    /// over the processes the host reaps (or its limits are not known yet), sandboxes get no
    /// pid namespace of their own, or the template failed.
    fn fork(
        &mut self,
        inner: &Inner,
        ep: &OwnedFd,
        in_cgroup: bool,
        init: &HeaderInit,
    ) -> Option<(sandbox::Child, SandboxCtl)> {
        let cpu = inner.cpu.get()?;
        if self.off || !inner.cfg.templates || cpu.counts_reaped() || !template::supported() {
            return None;
        }
        if self.running.is_none() {
            let cfg = &inner.cfg;
            let jail = crate::jail::ChildJail::for_sandbox(
                cfg.sandbox_user,
                cfg.cpu_seconds,
                &cfg.namespaces,
            );
            // Without a pid namespace the template's children would outlive it (and pvmux):
            // spares are spawned, each tied to the reaper by its PDEATHSIG.
            if !jail.has_pid_namespace() {
                self.off = true;
                return None;
            }
            match template::Template::spawn(&inner.stub, inner.mem.raw_fd(), init, &jail) {
                Ok(t) => {
                    let pid = t.pid().as_raw_nonzero().get() as u32;
                    if in_cgroup {
                        cpu.apply_born_inside(pid);
                    } else {
                        cpu.apply(pid);
                    }
                    if let Err(e) = epoll::add(
                        ep,
                        t.pidfd(),
                        epoll::EventData::new_u64(TEMPLATE_TOKEN),
                        epoll::EventFlags::IN,
                    ) {
                        tracing::warn!(tenant = %cfg.name, "cannot watch the user sandbox template: {e}");
                        self.running = Some(t);
                        self.stop(inner, ep);
                        return None;
                    }
                    tracing::debug!(tenant = %cfg.name, pid, "user sandbox template spawned");
                    self.running = Some(t);
                }
                Err(e) => {
                    tracing::warn!(tenant = %cfg.name, "cannot spawn a user sandbox template: {e}; spares are spawned");
                    self.off = true;
                    return None;
                }
            }
        }
        let t = self.running.as_mut()?;
        let mut windows = 0;
        if let Some(w) = &inner.cfg.windows {
            if let Some(l) = t.take_listener() {
                w.serve(l);
            }
            windows = w.count();
        }
        match t.fork(init, windows) {
            Ok((child, ctl)) => Some((child, SandboxCtl::Template(ctl))),
            Err(e) => {
                tracing::warn!(tenant = %inner.cfg.name, failed = t.failed(), "user sandbox template: {e}; spares are spawned");
                self.stop(inner, ep);
                None
            }
        }
    }

    /// Kills and reaps the template (its children die with it) and spawns spares from now on.
    fn stop(&mut self, inner: &Inner, ep: &OwnedFd) {
        self.off = true;
        if let Some(t) = self.running.take() {
            let _ = epoll::delete(ep, t.pidfd());
            sandbox::kill(t.pidfd());
            let exit = match inner.cpu.get() {
                Some(cpu) => cpu.reap(t.pid()),
                None => sandbox::reap(t.pid()),
            };
            tracing::debug!(tenant = %inner.cfg.name, ?exit, "user sandbox template reaped");
        }
    }
}

/// Reaps spare `id`, whose pidfd is readable: it died before it was used (or the tenant is
/// closing). Nothing to mark; a spare that dies by itself turns spares off.
fn reap_spare(inner: &Inner, ep: &OwnedFd, id: u64) {
    let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
    // Not found: it was just assigned (the next report carries its handle).
    let Some(i) = st.spares.iter().position(|s| s.id == id) else {
        return;
    };
    let sp = st.spares.remove(i);
    let _ = epoll::delete(ep, &*sp.pidfd);
    let exit = reap(inner, sp.pid, &sp.pidfd, &sp.ctl);
    if !st.closed {
        st.spares_off = true;
        inner.spare_ready.notify_all();
        tracing::warn!(
            tenant = %inner.cfg.name,
            pid = sp.pid.as_raw_nonzero().get(),
            ?exit,
            stub_report = ?sp.ctl.stub_report(),
            "spare user sandbox died unused; no more spares"
        );
    }
}

/// Reaps space `handle`, whose pidfd is readable (the process has exited), and marks it dead.
fn reap_one(inner: &Inner, ep: &OwnedFd, handle: u64) {
    let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
    let Some(e) = st.entries.remove(&handle) else {
        return;
    };
    let _ = epoll::delete(ep, &*e.pidfd);
    finish(inner, &st, e);
}

/// Reaps an entry whose process has exited (or is being killed) and marks it dead, whether
/// it was destroyed or not (the guest kernel keeps a destroyed space's memory until it sees
/// the mark), unless the tenant is closing.
fn finish(inner: &Inner, st: &State, e: Entry) {
    let exit = match reap(inner, e.pid, &e.pidfd, &e.ctl) {
        Ok(x) => x,
        Err(err) => {
            tracing::error!(tenant = %inner.cfg.name, "{err}");
            SandboxExit::Signaled(0)
        }
    };
    // Not asked for by the guest: killed from outside (the host's out-of-memory killer, the
    // grant audit, which says so itself, a user), or its stub failed. The guest kernel kills
    // the process that ran in it ("sent by the kernel").
    let warn = !e.destroyed && !st.closed && !inner.death_warned.swap(true, SeqCst);
    if warn || tracing::enabled!(tracing::Level::DEBUG) {
        let [status, step, error] = e.ctl.stub_report();
        let mut what = format!(
            "pid {} {exit:?}, stub status {status} step {step} error {error}",
            e.pid.as_raw_nonzero().get()
        );
        if exit == SandboxExit::Exited(STUB_EXIT_CRASH) {
            match e.ctl.crash_record() {
                Some(rec) => what.push_str(&format!("; its stub's crash record: {rec}")),
                None => what.push_str("; its stub wrote no crash record"),
            }
        }
        if warn {
            tracing::warn!(
                tenant = %inner.cfg.name,
                "a user sandbox ended that its guest kernel had not destroyed ({what}); the \
                 guest process that ran in it is killed (later ones are logged at debug level)"
            );
        }
        tracing::debug!(tenant = %inner.cfg.name, destroyed = e.destroyed, "user sandbox ended: {what}");
    }
    if let (Some(ctx_gpa), false) = (e.ctx_gpa, st.closed) {
        mark_dead(
            &inner.mem,
            ctx_gpa,
            inner.cfg.nr_vcpus,
            exit.dead_status(),
            !e.destroyed,
        );
    }
    // Last: the proof of death in guest-kernel memory (validated at creation: aligned,
    // below the pool); the guest kernel frees the space's memory only after seeing it.
    if let (Some(gpa), false) = (e.reaped_gpa, st.closed) {
        if let Some(w) = inner.mem.atomic_u32(gpa) {
            w.store(1, SeqCst);
        }
    }
}

/// Reaps a sandbox of the tenant (with the state lock held), counting its CPU time if the
/// tenant's limits need it; one its template reaps, by its pidfd's exit status (it has
/// exited).
fn reap(
    inner: &Inner,
    pid: Pid,
    pidfd: &OwnedFd,
    ctl: &SandboxCtl,
) -> Result<SandboxExit, crate::HostError> {
    if ctl.by_template() {
        return Ok(template::child_exit(pidfd));
    }
    match inner.cpu.get() {
        Some(cpu) => cpu.reap(pid),
        None => sandbox::reap(pid),
    }
}

/// Reaps every space and spare, blocking (the reaper's fallback when epoll fails).
fn reap_all_blocking(inner: &Inner) {
    loop {
        let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        // Spares are of no use without a reaper: kill them.
        st.spares_off = true;
        inner.spare_ready.notify_all();
        for sp in std::mem::take(&mut st.spares) {
            sandbox::kill(&sp.pidfd);
            sandbox::wait_exited(&sp.pidfd, Some(DESTROY_WAIT));
            let _ = reap(inner, sp.pid, &sp.pidfd, &sp.ctl);
        }
        let Some(&h) = st.entries.keys().next() else {
            return;
        };
        if let Some(e) = st.entries.remove(&h) {
            if st.closed {
                sandbox::kill(&e.pidfd);
            }
            drop(st);
            // Wait without the lock (a live space may run for long), then reap with it.
            sandbox::wait_exited(&e.pidfd, None);
            let st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            finish(inner, &st, e);
        }
    }
}

/// Writes the death of the space whose context region is at `ctx_gpa` (validated at
/// creation: page aligned, in the pool, `user_ctx_size(nr_vcpus)` bytes) into guest memory.
/// With `slots` (a space the guest has not destroyed, whose vCPUs may wait on it): first, in
/// every slot, `exit_reason = Dead` and `done_seq = run_seq`; then `dead_status` and
/// `dead = 1`, the last write into the region (the guest kernel may reuse a destroyed space's
/// memory as soon as it sees `dead`); then, with `slots`, a futex wake of every slot's
/// `done_seq` (a wake that hits a reused page is only a spurious wake-up).
pub(crate) fn mark_dead(mem: &GuestMemory, ctx_gpa: u64, nr_vcpus: u32, status: u32, slots: bool) {
    let word = |off: u64| ctx_gpa.checked_add(off).and_then(|a| mem.atomic_u32(a));
    let done_words: Vec<&AtomicU32> = if slots {
        (0..nr_vcpus)
            .filter_map(|i| {
                let slot = user_slot_offset(i);
                let (run, done, reason) = (
                    word(slot + SLOT_RUN_SEQ)?,
                    word(slot + SLOT_DONE_SEQ)?,
                    word(slot + SLOT_EXIT_REASON)?,
                );
                handoff::mark_dead(run, done, reason);
                Some(done)
            })
            .collect()
    } else {
        Vec::new()
    };
    if let Some(w) = word(HDR_DEAD_STATUS) {
        w.store(status, SeqCst);
    }
    if let Some(w) = word(HDR_DEAD) {
        w.store(1, SeqCst);
    }
    for done in done_words {
        // Shared (not private) futex: the waiters are in other processes.
        let _ = futex::wake(done, futex::Flags::empty(), u32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_stub::{spin_forever, stub, Behaviour};
    use std::time::Instant;

    const MEM: u64 = 32 << 20;
    const POOL: u64 = 16 << 20;

    /// A user sandbox that spins forever.
    fn spin() -> Vec<u8> {
        spin_forever()
    }

    /// A user sandbox that exits with status 7 (after checking it has only fds 3 and 4).
    fn exit7() -> Vec<u8> {
        stub(Behaviour::Exit(7))
    }

    fn spaces(elf: Vec<u8>, nr_vcpus: u32) -> (Spaces, Arc<GuestMemory>) {
        let mem = Arc::new(GuestMemory::new(MEM).unwrap());
        let cfg = SpaceConfig {
            name: "sp".into(),
            nr_vcpus,
            pool_base: POOL,
            clock: ClockParams::now(),
            fault_around_pages: 16,
            sandbox_user: Default::default(),
            cpu_seconds: None,
            namespaces: Arc::default(),
            templates: false,
            windows: None,
        };
        let stub = Arc::new(Stub::new(&elf).unwrap());
        let mut s = Spaces::new(cfg, Arc::clone(&mem), stub);
        Arc::get_mut(&mut s.inner).unwrap().max_spares = 0;
        (s, mem)
    }

    fn with_spares(elf: Vec<u8>, n: usize) -> (Spaces, Arc<GuestMemory>) {
        let (mut s, mem) = spaces(elf, 1);
        Arc::get_mut(&mut s.inner).unwrap().max_spares = n;
        (s, mem)
    }

    fn spare_pids(s: &Spaces) -> Vec<u32> {
        s.lock()
            .spares
            .iter()
            .map(|sp| sp.pid.as_raw_nonzero().get() as u32)
            .collect()
    }

    fn alive(pid: u32) -> bool {
        // A zombie still has a /proc entry: check its state.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn context_regions_are_validated() {
        let (s, _) = spaces(spin(), 2);
        let len = user_ctx_size(2);
        for bad in [
            0,
            POOL - PAGE_SIZE,
            POOL + 8,
            MEM - len + PAGE_SIZE,
            MEM,
            !(PAGE_SIZE - 1),
            u64::MAX,
        ] {
            assert_eq!(s.create(bad), Err(HcError::BadAddress), "{bad:#x}");
        }
        assert!(s.pids().is_empty(), "nothing was spawned");
        assert_eq!(s.destroy(1), Err(HcError::InvalidArgument));
        assert_eq!(s.destroy(u64::MAX), Err(HcError::InvalidArgument));
        // The last region that fits is accepted.
        let h = s.create(MEM - len).unwrap();
        assert_eq!(s.destroy(h), Ok(()));
        assert_eq!(
            s.destroy(h),
            Err(HcError::InvalidArgument),
            "destroyed twice"
        );
        s.shutdown();
        assert!(s.pids().is_empty());
        assert_eq!(s.create(POOL), Err(HcError::NoResources), "closed");
    }

    #[test]
    fn an_exiting_space_is_marked_dead_and_its_waiters_woken() {
        let (s, mem) = spaces(exit7(), 3);
        let ctx = POOL + 0x10_0000;
        for i in 0..3 {
            let slot = ctx + user_slot_offset(i);
            mem.atomic_u32(slot + SLOT_RUN_SEQ)
                .unwrap()
                .store(5 + i, SeqCst);
            mem.atomic_u32(slot + SLOT_DONE_SEQ)
                .unwrap()
                .store(4 + i, SeqCst);
        }
        // A waiter sleeping on slot 1's done_seq, like the guest kernel in user_wait.
        let m2 = Arc::clone(&mem);
        let waiter = std::thread::spawn(move || {
            let done = m2
                .atomic_u32(ctx + user_slot_offset(1) + SLOT_DONE_SEQ)
                .unwrap();
            while done.load(SeqCst) == 5 {
                let _ = futex::wait(done, futex::Flags::empty(), 5, None);
            }
            done.load(SeqCst)
        });
        let h = s.create(ctx).unwrap();
        wait_for("death mark", || mem.read_u32(ctx + HDR_DEAD).unwrap() == 1);
        assert_eq!(mem.read_u32(ctx + HDR_DEAD_STATUS).unwrap(), 7);
        for i in 0..3 {
            let slot = ctx + user_slot_offset(i);
            assert_eq!(
                mem.read_u32(slot + SLOT_EXIT_REASON).unwrap(),
                pvmux_hypercalls::user::UserExit::Dead as u32
            );
            assert_eq!(mem.read_u32(slot + SLOT_DONE_SEQ).unwrap(), 5 + i);
        }
        assert_eq!(waiter.join().unwrap(), 6);
        wait_for("reaped", || s.pids().is_empty());
        // A dead, reaped space's handle is gone.
        assert_eq!(s.destroy(h), Err(HcError::InvalidArgument));
        s.shutdown();
    }

    #[test]
    fn killed_spaces_report_the_signal_and_destroyed_ones_are_marked_once_reaped() {
        let (s, mem) = spaces(spin(), 1);
        let (a, b) = (POOL, POOL + 0x10_0000);
        let ha = s.create(a).unwrap();
        let hb = s.create(b).unwrap();
        assert_ne!(ha, hb);
        let pids = s.pids();
        assert_eq!(pids.len(), 2);
        let pid_a = {
            let st = s.lock();
            st.entries[&ha].pid.as_raw_nonzero().get() as u32
        };
        // Killed from outside: dead with 0x100 | SIGKILL.
        // SAFETY: kill takes plain integers; pid_a is our unreaped child.
        unsafe { libc::kill(pid_a as i32, libc::SIGKILL) };
        wait_for("death mark", || mem.read_u32(a + HDR_DEAD).unwrap() == 1);
        assert_eq!(mem.read_u32(a + HDR_DEAD_STATUS).unwrap(), 0x100 | 9);
        // Destroyed: killed at once, marked dead once reaped (the guest kernel frees the
        // space's memory when it sees the mark).
        let pid_b = *s.pids().iter().find(|&&p| p != pid_a).unwrap();
        s.destroy(hb).unwrap();
        assert_eq!(s.destroy(hb), Err(HcError::InvalidArgument));
        wait_for("reaped", || s.pids().is_empty());
        assert!(!alive(pid_b));
        assert_eq!(mem.read_u32(b + HDR_DEAD).unwrap(), 1);
        assert_eq!(mem.read_u32(b + HDR_DEAD_STATUS).unwrap(), 0x100 | 9);
        assert!(!std::path::Path::new(&format!("/proc/{pid_b}")).exists());
        s.shutdown();
    }

    #[test]
    fn shutdown_kills_and_reaps_every_space() {
        let (s, _) = spaces(spin(), 1);
        for i in 0..4 {
            s.create(POOL + i * 0x10_0000).unwrap();
        }
        let pids = s.pids();
        assert_eq!(pids.len(), 4);
        s.shutdown();
        assert!(s.pids().is_empty());
        for p in pids {
            assert!(
                !std::path::Path::new(&format!("/proc/{p}")).exists(),
                "{p} left"
            );
        }
    }

    #[test]
    fn at_most_max_spaces_are_live_and_handles_are_not_reused() {
        let (mut s, _) = spaces(spin(), 1);
        Arc::get_mut(&mut s.inner).unwrap().max_spaces = 3;
        let hs: Vec<u64> = (0..3).map(|_| s.create(POOL).unwrap()).collect();
        assert_eq!(hs, [1, 2, 3]);
        assert_eq!(s.create(POOL), Err(HcError::NoResources));
        s.destroy(hs[1]).unwrap();
        assert_eq!(
            s.create(POOL),
            Ok(4),
            "a destroyed handle frees a place, not its number"
        );
        assert_eq!(s.create(POOL), Err(HcError::NoResources));
        s.shutdown();
        assert!(s.pids().is_empty());
    }

    #[test]
    fn spares_are_used_replaced_and_killed_with_the_tenant() {
        let (s, mem) = with_spares(spin(), 2);
        s.set_cpu(SpaceCpu::default());
        wait_for("two spares", || spare_pids(&s).len() == 2);
        let before = spare_pids(&s);
        let h = s.create(POOL).unwrap();
        assert_eq!(h, 1);
        let used = s.pids();
        assert_eq!(used, [before[0]], "the oldest spare became the space");
        // Its control header got the context region.
        {
            let st = s.lock();
            let e = &st.entries[&h];
            let gpa = e.ctl.u64_at(CTL_CTX_GPA).load(SeqCst);
            let len = e.ctl.u64_at(CTL_CTX_LEN).load(SeqCst);
            assert_eq!((gpa, len), (POOL, user_ctx_size(1)));
        }
        wait_for("replaced", || spare_pids(&s).len() == 2);
        let h2 = s.create(POOL + 0x10_0000).unwrap();
        assert_eq!(h2, 2);
        s.destroy(h).unwrap();
        wait_for("destroyed space reaped", || s.pids().len() == 1);
        assert_eq!(mem.read_u32(POOL + HDR_DEAD).unwrap(), 1);
        let mut all = s.pids();
        all.extend(spare_pids(&s));
        all.extend(before);
        s.shutdown();
        assert!(s.pids().is_empty() && spare_pids(&s).is_empty());
        for p in all {
            assert!(
                !std::path::Path::new(&format!("/proc/{p}")).exists(),
                "{p} left"
            );
        }
        assert_eq!(s.create(POOL), Err(HcError::NoResources), "closed");
    }

    #[test]
    fn a_space_asked_for_with_no_spare_at_hand_waits_for_the_reapers() {
        let (mut s, _mem) = with_spares(spin(), 1);
        // What is tested is that `create` takes the reaper's spare rather than spawning one
        // itself, not how long a spawn takes on a loaded machine.
        Arc::get_mut(&mut s.inner).unwrap().spare_wait = Duration::from_secs(10);
        s.set_cpu(SpaceCpu::default());
        wait_for("a spare", || spare_pids(&s).len() == 1);
        // Three in a row: the second and third find none ready and take the one the reaper
        // spawns meanwhile, instead of spawning one themselves.
        for i in 0..3 {
            s.create(POOL + i * 0x10_0000).unwrap();
        }
        let spawned_as_spares = s.lock().next_spare;
        assert!(
            spawned_as_spares >= 3,
            "{spawned_as_spares} spares for 3 spaces"
        );
        assert_eq!(s.pids().len(), 3);
        s.shutdown();
    }

    #[test]
    fn a_spare_that_dies_unused_turns_spares_off() {
        let (s, mem) = with_spares(exit7(), 2);
        s.set_cpu(SpaceCpu::default());
        wait_for("spares off", || s.lock().spares_off);
        wait_for("spare reaped", || spare_pids(&s).is_empty());
        // Spaces are still spawned directly.
        let h = s.create(POOL).unwrap();
        wait_for("death mark", || mem.read_u32(POOL + HDR_DEAD).unwrap() == 1);
        assert_eq!(mem.read_u32(POOL + HDR_DEAD_STATUS).unwrap(), 7);
        wait_for("reaped", || s.pids().is_empty());
        assert_eq!(s.destroy(h), Err(HcError::InvalidArgument));
        assert!(spare_pids(&s).is_empty());
        s.shutdown();
    }
}
