//! `native.futex_pingpong.*`: a futex wake/wait round trip between two processes — the cost
//! of blocking hand-offs such as pvmux's doorbell once it stops spinning.

use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::SeqCst;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};
use rustix::mm::{mmap_anonymous, munmap, MapFlags, ProtFlags};
use rustix::thread::futex;

use crate::{child, measure, PeerError, Plan, Samples};

/// Where the two processes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Both pinned to the same CPU: every wake is a context switch on that CPU.
    SameCore,
    /// Pinned to two different CPUs: every wake is a cross-CPU wake-up (an IPI to an idle,
    /// possibly halted, vCPU in a VM).
    CrossCore,
}

/// The ping side writes PING and waits while the word is PING; the pong side waits while it
/// is IDLE and answers with IDLE. STOP ends the pong side.
const IDLE: u32 = 0;
const PING: u32 = 1;
const STOP: u32 = 2;

/// Times futex ping-pong round trips between two processes pinned as `placement` says.
pub fn futex_pingpong(plan: &Plan, placement: Placement) -> Result<Samples, PeerError> {
    let cpus = crate::allowed_cpus();
    let (a, b) = match (placement, cpus.as_slice()) {
        (_, []) => return Err(PeerError::Unavailable("no CPU in the affinity mask".into())),
        (Placement::SameCore, [c, ..]) => (*c, *c),
        (Placement::CrossCore, [a, b, ..]) => (*a, *b),
        (Placement::CrossCore, [_]) => {
            return Err(PeerError::Unavailable(
                "only one CPU is available to this process".into(),
            ))
        }
    };
    let plan = *plan;
    let report = child::run(plan.timeout, |out| {
        let r = pingpong(&plan, a, b);
        out.send(&measure::encode("futex", &r));
    });
    match measure::decode("futex", &report.text) {
        Some(r) => r,
        None => Err(report
            .end
            .err()
            .unwrap_or_else(|| PeerError::ChildDied("reported nothing".to_owned()))),
    }
}

/// Pins the calling thread (and its future children) to `cpu`.
pub(crate) fn pin(cpu: usize) -> Result<(), PeerError> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)
        .map_err(|e| PeerError::failed(&format!("pinning to CPU {cpu}"), e))
}

/// Blocks while `word` holds `value` (a shared, not process-private, futex).
fn wait_while(word: &AtomicU32, value: u32) {
    while word.load(SeqCst) == value {
        let _ = futex::wait(word, futex::Flags::empty(), value, None);
    }
}

fn wake(word: &AtomicU32) {
    let _ = futex::wake(word, futex::Flags::empty(), 1);
}

fn pingpong(plan: &Plan, cpu_a: usize, cpu_b: usize) -> Result<Samples, PeerError> {
    pin(cpu_a)?;
    let len = std::mem::size_of::<AtomicU32>();
    // SAFETY: a fresh anonymous shared mapping; no existing memory is affected.
    let ptr = unsafe {
        mmap_anonymous(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
        )
    }
    .map_err(|e| PeerError::failed("mmap", e))?;
    // SAFETY: the mapping is page-aligned, zero-filled (a valid AtomicU32 holding IDLE) and
    // stays mapped until the `munmap` below, after both processes are done with it.
    let word: &AtomicU32 = unsafe { &*ptr.cast::<AtomicU32>() };
    // SAFETY: the pong side only makes raw system calls on the shared word (no locks, no
    // allocation) and never returns.
    let r = match unsafe { fork() } {
        Err(e) => Err(PeerError::failed("fork", e)),
        Ok(ForkResult::Child) => {
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            if pin(cpu_b).is_err() {
                child::exit_child(2);
            }
            loop {
                wait_while(word, IDLE);
                if word.load(SeqCst) == STOP {
                    child::exit_child(0);
                }
                word.store(IDLE, SeqCst);
                wake(word);
            }
        }
        Ok(ForkResult::Parent { child }) => {
            let r = measure::batches(plan, 1, || {
                word.store(PING, SeqCst);
                wake(word);
                wait_while(word, PING);
                Ok(())
            });
            word.store(STOP, SeqCst);
            wake(word);
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            r
        }
    };
    // SAFETY: `ptr`/`len` is exactly the mapping made above; `word` is not used after this.
    let _ = unsafe { munmap(ptr, len) };
    r
}
