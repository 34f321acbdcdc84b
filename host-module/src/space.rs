//! User sandboxes ("spaces"): one process per guest address space, created and destroyed by
//! the guest kernel with the `SpaceCreate` / `SpaceDestroy` hypercalls (see
//! [`pvmux_hypercalls::user`]).
//!
//! A space is the stub, started with fd 3 = the guest memfd and fd 4 = a one-page control
//! memfd whose [`SandboxHeader`] says [`kind::USER`] and where the space's context region is.
//! `SpaceCreate` returns at once; the guest's first request waits on its slot until the stub
//! is up. One reaper thread per tenant (started with the first space) waits on the pidfds of
//! all its spaces with epoll, reaps each as it ends and, unless the guest already destroyed
//! it, marks it dead in guest memory: [`UserCtxHeader::dead`] = 1, `dead_status` (exit status,
//! or `0x100 | signal`), then in every slot `exit_reason = Dead`, `done_seq = run_seq` and a
//! shared futex wake on `done_seq` (futex keys of shared memfd pages are per page, so the
//! guest's waiters in the kernel sandbox are woken through the host's own mapping).
//!
//! Limits: at most [`MAX_SPACES`] undestroyed handles per tenant, and at most
//! [`MAX_PROCESSES`] user sandbox processes (destroyed ones wait to be reaped). Handles are
//! never reused within a tenant. When the tenant ends, [`Spaces::shutdown`] kills every
//! space and waits until the reaper has reaped them all.

use std::collections::HashMap;
use std::mem::offset_of;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use pvmux_hypercalls::sandbox::kind;
use pvmux_hypercalls::user::{user_ctx_size, user_slot_offset, UserCtxHeader, UserExit, UserSlot};
use pvmux_hypercalls::{HcError, SandboxHeader, PAGE_SIZE};
use rustix::event::epoll;
use rustix::process::Pid;
use rustix::thread::futex;

use crate::clock::ClockParams;
use crate::control::{ControlRegion, HeaderInit};
use crate::limits::SpaceCpu;
use crate::sandbox::{self, SandboxExit, Stub};
use crate::GuestMemory;

/// Most undestroyed spaces a tenant may hold.
pub const MAX_SPACES: usize = 1024;
/// Most user sandbox processes a tenant may have (live or destroyed and not yet reaped).
pub const MAX_PROCESSES: usize = 2 * MAX_SPACES;
/// Longest `SpaceDestroy` waits for the killed sandbox to be gone.
pub const DESTROY_WAIT: Duration = Duration::from_secs(5);
/// epoll token of the reaper's wake-up eventfd (handles are smaller).
const WAKE_TOKEN: u64 = u64::MAX;

// The context-region words the host writes (checked against the ABI structs).
const HDR_DEAD: u64 = offset_of!(UserCtxHeader, dead) as u64;
const HDR_DEAD_STATUS: u64 = offset_of!(UserCtxHeader, dead_status) as u64;
const SLOT_RUN_SEQ: u64 = offset_of!(UserSlot, run_seq) as u64;
const SLOT_DONE_SEQ: u64 = offset_of!(UserSlot, done_seq) as u64;
const SLOT_EXIT_REASON: u64 = offset_of!(UserSlot, exit_reason) as u64;
const _: () = assert!(std::mem::size_of::<SandboxHeader>() as u64 <= PAGE_SIZE);

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
}

/// One user sandbox.
struct Entry {
    pid: Pid,
    pidfd: Arc<OwnedFd>,
    ctx_gpa: u64,
    /// The guest destroyed it: the handle is gone, its memory may be reused, no death mark.
    destroyed: bool,
    /// The control memfd (kept for diagnostics until the sandbox is reaped).
    ctl: ControlRegion,
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
    /// The tenant is ending: no new spaces.
    closed: bool,
    reaper: Option<Reaper>,
}

struct Inner {
    cfg: SpaceConfig,
    mem: Arc<GuestMemory>,
    stub: Arc<Stub>,
    cpu: OnceLock<SpaceCpu>,
    state: Mutex<State>,
    /// [`MAX_SPACES`] (lower in tests).
    max_spaces: usize,
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
                max_spaces: MAX_SPACES,
            }),
        }
    }

    /// Sets the CPU limits every later space gets (once, when the kernel sandbox got them).
    pub(crate) fn set_cpu(&self, cpu: SpaceCpu) {
        let _ = self.inner.cpu.set(cpu);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `SpaceCreate(ctx_gpa)`: validates the context region and spawns a user sandbox for it.
    /// Returns the handle, or `BadAddress` / `NoResources`.
    pub(crate) fn create(&self, ctx_gpa: u64) -> Result<u64, HcError> {
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
        if st.closed || live >= max || st.entries.len() >= max * (MAX_PROCESSES / MAX_SPACES) {
            return Err(HcError::NoResources);
        }
        if st.reaper.is_none() {
            st.reaper = Some(self.start_reaper().map_err(|e| {
                tracing::error!(tenant = %cfg.name, "cannot start the space reaper: {e}");
                HcError::NoResources
            })?);
        }
        let ctl = ControlRegion::new(&HeaderInit {
            nr_vcpus: cfg.nr_vcpus,
            mem_size,
            tsc_base: cfg.clock.tsc_base,
            mono_base_ns: cfg.clock.mono_base_ns,
            clock_mult: cfg.clock.mult,
            clock_shift: cfg.clock.shift,
            fault_around_pages: cfg.fault_around_pages,
            kind: kind::USER,
            user_pool_base: cfg.pool_base,
            user_ctx_gpa: ctx_gpa,
            user_ctx_len: ctx_len,
            ..HeaderInit::default()
        })
        .map_err(|e| {
            tracing::warn!(tenant = %cfg.name, "cannot create a user control region: {e}");
            HcError::NoResources
        })?;
        let child = sandbox::spawn(&self.inner.stub, self.inner.mem.raw_fd(), ctl.raw_fd())
            .map_err(|e| {
                tracing::warn!(tenant = %cfg.name, "cannot spawn a user sandbox: {e}");
                HcError::NoResources
            })?;
        let raw_pid = child.pid.as_raw_nonzero().get() as u32;
        if let Some(cpu) = self.inner.cpu.get() {
            cpu.apply(&cfg.name, raw_pid);
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
        st.entries.insert(
            handle,
            Entry {
                pid: child.pid,
                pidfd: Arc::new(child.pidfd),
                ctx_gpa,
                destroyed: false,
                ctl,
            },
        );
        tracing::debug!(tenant = %cfg.name, handle, pid = raw_pid, ctx_gpa, "user sandbox spawned");
        Ok(handle)
    }

    /// `SpaceDestroy(handle)`: kills the space and returns once its process has exited (no
    /// thread of it runs and its mappings are gone: the guest may reuse its context region
    /// and user pages at once). The reaper reaps it. `InvalidArgument` for a handle that is
    /// not an undestroyed space of this tenant.
    pub(crate) fn destroy(&self, handle: u64) -> Result<(), HcError> {
        let pidfd = {
            let mut st = self.lock();
            let Some(e) = st.entries.get_mut(&handle).filter(|e| !e.destroyed) else {
                return Err(HcError::InvalidArgument);
            };
            e.destroyed = true;
            Arc::clone(&e.pidfd)
        };
        sandbox::kill(&pidfd);
        if !sandbox::wait_exited(&pidfd, Some(DESTROY_WAIT)) {
            tracing::warn!(tenant = %self.inner.cfg.name, handle, "user sandbox slow to die");
        }
        Ok(())
    }

    /// Pids of the user sandboxes not reaped yet.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.lock()
            .entries
            .values()
            .map(|e| e.pid.as_raw_nonzero().get() as u32)
            .collect()
    }

    /// The tenant is ending: refuses new spaces, kills every space and waits until all are
    /// reaped (joins the reaper).
    pub(crate) fn shutdown(&self) {
        let reaper = {
            let mut st = self.lock();
            st.closed = true;
            for e in st.entries.values() {
                sandbox::kill(&e.pidfd);
            }
            st.reaper.take()
        };
        if let Some(r) = reaper {
            if let Err(e) = rustix::io::write(&*r.wake, &1u64.to_ne_bytes()) {
                tracing::error!("cannot wake the space reaper: {e}");
            }
            let _ = r.thread.join();
        }
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

/// Waits on the pidfds of every space (and the wake eventfd) and reaps each space as it
/// ends, until the tenant is closed and no space is left.
fn reaper_thread(inner: &Inner, ep: &OwnedFd, wake: &OwnedFd) {
    let mut events = Vec::with_capacity(64);
    loop {
        events.clear();
        match epoll::wait(ep, rustix::buffer::spare_capacity(&mut events), None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                // Cannot wait any more: fall back to reaping everything synchronously.
                tracing::error!(tenant = %inner.cfg.name, "epoll_wait failed: {e}");
                reap_all_blocking(inner);
                return;
            }
        }
        for ev in &events {
            let token = ev.data.u64();
            if token == WAKE_TOKEN {
                let mut b = [0u8; 8];
                let _ = rustix::io::read(wake, &mut b);
            } else {
                reap_one(inner, ep, token);
            }
        }
        let st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.closed && st.entries.is_empty() {
            return;
        }
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

/// Reaps an entry whose process has exited (or is being killed), marking it dead unless it
/// was destroyed or the tenant is closing. Called with the state locked, so a concurrent
/// `SpaceDestroy` either happened before (no mark) or waits until the mark is written.
fn finish(inner: &Inner, st: &State, e: Entry) {
    let exit = match sandbox::reap(e.pid) {
        Ok(x) => x,
        Err(err) => {
            tracing::error!(tenant = %inner.cfg.name, "{err}");
            SandboxExit::Signaled(0)
        }
    };
    let status = e.ctl.stub_status().load(SeqCst);
    tracing::debug!(
        tenant = %inner.cfg.name,
        pid = e.pid.as_raw_nonzero().get(),
        ?exit,
        stub_status = status,
        stub_step = e.ctl.stub_step().load(SeqCst),
        stub_error = e.ctl.stub_error().load(SeqCst),
        destroyed = e.destroyed,
        "user sandbox ended"
    );
    if !e.destroyed && !st.closed {
        mark_dead(
            &inner.mem,
            e.ctx_gpa,
            inner.cfg.nr_vcpus,
            exit.dead_status(),
        );
    }
}

/// Reaps every space, blocking (the reaper's fallback when epoll fails).
fn reap_all_blocking(inner: &Inner) {
    loop {
        let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
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
/// creation: page aligned, in the pool, `user_ctx_size(nr_vcpus)` bytes) into guest memory
/// and wakes every waiter of its slots.
pub(crate) fn mark_dead(mem: &GuestMemory, ctx_gpa: u64, nr_vcpus: u32, status: u32) {
    let word = |off: u64| ctx_gpa.checked_add(off).and_then(|a| mem.atomic_u32(a));
    if let Some(w) = word(HDR_DEAD_STATUS) {
        w.store(status, SeqCst);
    }
    if let Some(w) = word(HDR_DEAD) {
        w.store(1, SeqCst);
    }
    for i in 0..nr_vcpus {
        let slot = user_slot_offset(i);
        let (Some(run), Some(done), Some(reason)) = (
            word(slot + SLOT_RUN_SEQ),
            word(slot + SLOT_DONE_SEQ),
            word(slot + SLOT_EXIT_REASON),
        ) else {
            continue;
        };
        reason.store(UserExit::Dead as u32, SeqCst);
        done.store(run.load(SeqCst), SeqCst);
        // Shared (not private) futex: the waiters are in other processes.
        let _ = futex::wake(done, futex::Flags::empty(), u32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_stub::raw_elf;
    use std::time::Instant;

    const MEM: u64 = 32 << 20;
    const POOL: u64 = 16 << 20;

    /// `pause; jmp` back: spins forever.
    const SPIN: &[u8] = &[0xf3, 0x90, 0xeb, 0xfc];
    /// `mov edi, 7; mov eax, 231 (exit_group); syscall`.
    const EXIT7: &[u8] = &[
        0xbf, 0x07, 0x00, 0x00, 0x00, 0xb8, 0xe7, 0x00, 0x00, 0x00, 0x0f, 0x05,
    ];

    fn spaces(code: &[u8], nr_vcpus: u32) -> (Spaces, Arc<GuestMemory>) {
        let mem = Arc::new(GuestMemory::new(MEM).unwrap());
        let cfg = SpaceConfig {
            name: "sp".into(),
            nr_vcpus,
            pool_base: POOL,
            clock: ClockParams::now(),
            fault_around_pages: 16,
        };
        let stub = Arc::new(Stub::new(&raw_elf(code)).unwrap());
        (Spaces::new(cfg, Arc::clone(&mem), stub), mem)
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
        let (s, _) = spaces(SPIN, 2);
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
        let (s, mem) = spaces(EXIT7, 3);
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
                UserExit::Dead as u32
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
    fn killed_spaces_report_the_signal_and_destroyed_ones_are_not_marked() {
        let (s, mem) = spaces(SPIN, 1);
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
        // Destroyed: gone when destroy returns, never marked.
        let pid_b = *s.pids().iter().find(|&&p| p != pid_a).unwrap();
        s.destroy(hb).unwrap();
        assert!(!alive(pid_b), "destroy returns after the process exited");
        wait_for("reaped", || s.pids().is_empty());
        assert_eq!(mem.read_u32(b + HDR_DEAD).unwrap(), 0);
        assert!(!std::path::Path::new(&format!("/proc/{pid_b}")).exists());
        s.shutdown();
    }

    #[test]
    fn shutdown_kills_and_reaps_every_space() {
        let (s, _) = spaces(SPIN, 1);
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
        let (mut s, _) = spaces(SPIN, 1);
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
}
