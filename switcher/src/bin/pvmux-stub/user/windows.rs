//! Host file windows in a user sandbox (`pvmux_hypercalls::window`): slot `s`'s read-only
//! descriptor is `WINDOW_FD_BASE + s`. A template's child asks the host for a slot's
//! descriptor the first time it maps one of its pages ([`WINDOW_SYNC_NR`], which the template
//! filter hands to the host's listener; the host installs the descriptor before it answers).
//! A sandbox spawned without a template has no listener: the guest kernel never names a
//! window's pages to it (the host gives such a tenant no windows), and if it did, the
//! operation fails.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};

use pvmux_hypercalls::window::{MAX_WINDOWS, SYNC_ALL, WINDOW_FD_BASE, WINDOW_SYNC_NR};

use crate::sys::{self, syscall6};

/// `ENOSYS`: this sandbox cannot be given windows.
const ENOSYS: u32 = 38;
/// `EBADF`: no such slot.
const EBADF: u32 = 9;
/// `EINTR`: a signal came while the host had not answered yet.
const EINTR: u32 = 4;

/// Slots whose descriptor this process holds (a bit each).
static HELD: [AtomicU64; MAX_WINDOWS as usize / 64] = [const { AtomicU64::new(0) }; 4];
/// Set in a template's child (whose template filter hands window requests to the host).
static CAN_ASK: AtomicBool = AtomicBool::new(false);

/// Marks this process a template's child: it may ask the host for windows.
pub(super) fn enable() {
    CAN_ASK.store(true, Relaxed);
}

/// Asks the host for every open window (a template before it forks, when the tenant has
/// more than it holds: its children inherit them); marks those it got.
pub(super) fn take_all(open: u32) {
    let open = open.min(MAX_WINDOWS);
    if open == 0 || (0..open).all(held) {
        return;
    }
    if let Ok(n) = ask(0, SYNC_ALL) {
        for slot in 0..(n as u32).min(MAX_WINDOWS) {
            HELD[(slot / 64) as usize].fetch_or(1 << (slot % 64), Release);
        }
    }
}

/// The window request for `slot` with `flags`, made again when a signal interrupted the
/// wait for the host's answer (the slot timer, a kick): the host's answer is the number of
/// open slots.
fn ask(slot: u32, flags: u64) -> Result<usize, u32> {
    loop {
        // SAFETY: the private window request takes two numbers and touches no memory of
        // this process; the host answers it (descriptors installed at fixed numbers).
        let r = unsafe {
            syscall6(
                WINDOW_SYNC_NR as usize,
                [slot as usize, flags as usize, 0, 0, 0, 0],
            )
        };
        match sys::check(r) {
            Err(EINTR) => continue,
            other => return other,
        }
    }
}

/// Whether this process holds window `slot`'s descriptor.
fn held(slot: u32) -> bool {
    HELD[(slot / 64) as usize].load(Acquire) & (1 << (slot % 64)) != 0
}

/// The descriptor of window `slot`, asked for from the host the first time.
pub(super) fn fd(slot: u32) -> Result<i32, u32> {
    if slot >= MAX_WINDOWS {
        return Err(EBADF);
    }
    let (word, bit) = ((slot / 64) as usize, 1u64 << (slot % 64));
    if HELD[word].load(Acquire) & bit == 0 {
        if !CAN_ASK.load(Relaxed) {
            return Err(ENOSYS);
        }
        ask(slot, 0)?;
        HELD[word].fetch_or(bit, Release);
    }
    Ok(WINDOW_FD_BASE + slot as i32)
}
