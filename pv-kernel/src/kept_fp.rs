//! The trusted in-process mode's FPU state *kept* in a vCPU's registers across a system
//! call (`pvmux_hypercalls::user::inproc`, "The FPU state kept in the registers"): which
//! state each vCPU keeps, and where it goes when its thread is switched out.
//!
//! A system-call exit that kept the state gives the thread a token ([`kept_now`]); its
//! `UserState` then names the token instead of holding the image. Three things end a kept
//! state, and each one moves it out first, so it is never lost:
//! * the thread's next run on the same vCPU resumes it as it is (nothing to move);
//! * the kernel needs the image (a signal frame, `fork`, a hand-over safe point): the
//!   thread fetches it into its `UserState` on the vCPU that keeps it (events disabled);
//! * the thread is switched out ([`park`], from `sched::schedule`, before anything else can
//!   run user code on that vCPU): the image goes into the thread's [`Parked`] buffer, made
//!   ready beforehand, and the thread takes it from there when it runs again, on any vCPU.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use pvmux_hypercalls::user::USER_FPSTATE_MAX;
use pvmux_hypercalls::MAX_VCPUS;

/// Per vCPU: the token of the state it keeps (0: none).
static KEPT: [AtomicU64; MAX_VCPUS as usize] = [const { AtomicU64::new(0) }; MAX_VCPUS as usize];
/// Per vCPU: how many states it has kept (the sequence its tokens are made of).
static KEPT_SEQ: [AtomicU64; MAX_VCPUS as usize] =
    [const { AtomicU64::new(0) }; MAX_VCPUS as usize];

fn slot(cpu: u32) -> &'static AtomicU64 {
    &KEPT[cpu as usize % MAX_VCPUS as usize]
}

/// A thread's room for its kept state when it is switched out.
#[derive(Default)]
pub(crate) struct Parked {
    /// The token of the state in `image` (0: none).
    token: u64,
    /// The image ([`USER_FPSTATE_MAX`] bytes of capacity once ready).
    image: Vec<u8>,
}

impl Parked {
    /// Makes room for an image (where allocating is allowed: never from [`park`]).
    pub(crate) fn prepare(&mut self) {
        let len = self.image.len();
        self.image.reserve(USER_FPSTATE_MAX.saturating_sub(len));
    }

    fn ready(&self) -> bool {
        self.image.capacity() >= USER_FPSTATE_MAX
    }
}

/// vCPU `cpu` (the caller's own) now keeps a new state: its token, never 0 and never
/// another vCPU's (the vCPU's sequence number times [`MAX_VCPUS`], plus the vCPU and 1).
/// Only `cpu`'s own thread counts its sequence: no shared counter, no locked add.
pub(crate) fn kept_now(cpu: u32) -> u64 {
    let i = cpu as usize % MAX_VCPUS as usize;
    let seq = KEPT_SEQ[i].load(Ordering::Relaxed).wrapping_add(1);
    KEPT_SEQ[i].store(seq, Ordering::Relaxed);
    let token = seq
        .wrapping_mul(u64::from(MAX_VCPUS))
        .wrapping_add(i as u64 + 1);
    slot(cpu).store(token, Ordering::Relaxed);
    token
}

/// Whether vCPU `cpu` keeps the state `token`.
pub(crate) fn keeps(cpu: u32, token: u64) -> bool {
    token != 0 && slot(cpu).load(Ordering::Relaxed) == token
}

/// Whether vCPU `cpu` keeps a state.
pub(crate) fn any(cpu: u32) -> bool {
    slot(cpu).load(Ordering::Relaxed) != 0
}

/// vCPU `cpu` keeps nothing (its state was fetched, or replaced by an image).
pub(crate) fn forget(cpu: u32) {
    slot(cpu).store(0, Ordering::Relaxed);
}

/// The outgoing thread's hook in a thread switch on vCPU `cpu` (events disabled): the state
/// the vCPU keeps, which is this thread's, goes into `parked`.
pub(crate) fn park(cpu: u32, parked: &spin::Mutex<Parked>) {
    let token = slot(cpu).swap(0, Ordering::Relaxed);
    if token == 0 {
        return;
    }
    let mut p = parked.lock();
    p.token = 0;
    if !p.ready() {
        // Not prepared: the thread never asked to keep a state (cannot happen: the run
        // that kept it prepared this buffer first). Its next run finds no image and dies
        // rather than run with a wrong state.
        return;
    }
    p.image.clear();
    if crate::stub::inproc_fp_save(&mut p.image) > 0 {
        p.token = token;
    }
}

/// Moves the parked image of `token` into `into` (its old buffer becomes the park room).
/// False if `parked` does not hold that state.
pub(crate) fn unpark(parked: &spin::Mutex<Parked>, token: u64, into: &mut Vec<u8>) -> bool {
    let mut p = parked.lock();
    if token == 0 || p.token != token {
        return false;
    }
    core::mem::swap(&mut p.image, into);
    p.token = 0;
    p.image.clear();
    p.prepare();
    true
}
