//! Where a thread's FPU image waits after an exit: in the slot its user sandbox saved it to.
//!
//! At every exit the user stub copies the thread's XSAVE image (2.7 KiB with AVX-512) into
//! its slot's `fpstate`. Reading it at once would move every one of those cache lines from
//! the sandbox's CPU to the kernel's, per system call, while the kernel needs the state only
//! now and then: for a signal frame, `fork`, `sigreturn`, a hand-over record, or to run
//! the thread on another slot. So the image stays in the slot, *unread*, and the thread's
//! [`UserState`](super::UserState) holds an [`InSlot`] naming it; a run of the same thread
//! on the same slot sends no image (the sandbox keeps what it saved), and one that needs the
//! state takes it then ([`SlotImages::take`]).
//!
//! The one rule: **a slot's unread image is set aside before anything overwrites it** — a
//! run of another thread on the slot ([`SlotImages::claim`]) or a new sandbox for the space
//! ([`SlotImages::park_all`]). Set-aside images wait in the space until their thread takes
//! them, or forgets them when its state is dropped ([`InSlot`]'s `Drop`).
//!
//! The image in the slot is the sandbox's, like every exit field: a user program can write
//! its slots, so it can change its own threads' FPU state, which it can do anyway. Lengths
//! are the ones the kernel clamped at the exit.
//!
//! This is pure bookkeeping over a reader of slot memory, unit-tested on the host.

use alloc::sync::Weak;
use alloc::vec::Vec;

use pvmux_hypercalls::MAX_VCPUS;

use crate::irq::IrqLock;

/// Which exit one slot holds (its registers and its `fpstate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SlotImage {
    /// The exit's token (`UserState::exit_token`; 0: none known).
    token: u64,
    /// Its length in bytes.
    len: usize,
    /// Its thread has not read it: the slot holds the only copy.
    unread: bool,
}

/// A space's slot images, and the unread ones set aside.
pub(super) struct SlotImages {
    slots: [IrqLock<SlotImage>; MAX_VCPUS as usize],
    /// Images set aside, by token; a thread's entry is removed when it takes or forgets it.
    parked: IrqLock<Vec<(u64, Vec<u8>)>>,
}

impl SlotImages {
    /// No slot holds an image.
    pub(super) const fn new() -> Self {
        Self {
            slots: [const { IrqLock::new(SlotImage::new()) }; MAX_VCPUS as usize],
            parked: IrqLock::new(Vec::new()),
        }
    }

    /// Before a run on slot `cpu` by the thread whose last exit was `token` (0: none):
    /// whether the slot still holds that exit (the run may send no image and only `rax`).
    /// Otherwise an unread image in the slot is set aside first, read with `read(len)` —
    /// if `ready()` says it is all there; if not, `None` and nothing changed: the caller
    /// waits for it, outside the lock, and claims again. Either way the slot then holds no
    /// known exit until [`Self::filled`].
    pub(super) fn claim(
        &self,
        cpu: u32,
        token: u64,
        ready: impl FnOnce() -> bool,
        read: impl FnOnce(usize) -> Vec<u8>,
    ) -> Option<bool> {
        let Some(slot) = self.slots.get(cpu as usize) else {
            return Some(false);
        };
        let mut s = slot.lock();
        let kept = token != 0 && s.token == token;
        if !kept && s.unread {
            if !ready() {
                return None;
            }
            let image = read(s.len);
            self.parked.lock().push((s.token, image));
        }
        *s = SlotImage::new();
        Some(kept)
    }

    /// After exit `token` on slot `cpu`: the slot holds it, with an unread image of `len`
    /// bytes (0: none).
    pub(super) fn filled(&self, cpu: u32, token: u64, len: usize) {
        if let Some(slot) = self.slots.get(cpu as usize) {
            *slot.lock() = SlotImage {
                token,
                len,
                unread: len != 0,
            };
        }
    }

    /// The image `token` its thread left in slot `cpu`, into `out`: read from the slot with
    /// `read(len)` if it is still there (it stays valid there: a later run of the thread on
    /// the slot may still send none) — if `ready()` says it is all there; if not, `None` and
    /// nothing changed, as in [`Self::claim`] — else taken from those set aside. `false` if
    /// neither has it (a kernel bug; `out` is untouched).
    pub(super) fn take(
        &self,
        cpu: u32,
        token: u64,
        out: &mut Vec<u8>,
        ready: impl FnOnce() -> bool,
        read: impl FnOnce(usize) -> Vec<u8>,
    ) -> Option<bool> {
        if let Some(slot) = self.slots.get(cpu as usize) {
            let mut s = slot.lock();
            if s.unread && s.token == token {
                if !ready() {
                    return None;
                }
                *out = read(s.len);
                s.unread = false;
                return Some(true);
            }
        }
        let mut parked = self.parked.lock();
        Some(match parked.iter().position(|(t, _)| *t == token) {
            Some(i) => {
                *out = parked.swap_remove(i).1;
                true
            }
            None => false,
        })
    }

    /// The thread of image `token` (left in slot `cpu`) no longer needs it.
    pub(super) fn forget(&self, cpu: u32, token: u64) {
        if let Some(slot) = self.slots.get(cpu as usize) {
            let mut s = slot.lock();
            if s.token == token {
                s.unread = false;
            }
        }
        self.parked.lock().retain(|(t, _)| *t != token);
    }

    /// Before the space's slots are cleared for a new sandbox: every unread image is set
    /// aside (read with `read(cpu, len)`), and no slot holds a known image.
    pub(super) fn park_all(&self, mut read: impl FnMut(u32, usize) -> Vec<u8>) {
        for (cpu, slot) in self.slots.iter().enumerate() {
            let mut s = slot.lock();
            if s.unread {
                let image = read(cpu as u32, s.len);
                self.parked.lock().push((s.token, image));
            }
            *s = SlotImage::new();
        }
    }

    /// How many images are set aside (for tests and leak checks).
    #[cfg(test)]
    fn parked_len(&self) -> usize {
        self.parked.lock().len()
    }
}

impl SlotImage {
    const fn new() -> Self {
        Self {
            token: 0,
            len: 0,
            unread: false,
        }
    }
}

/// A thread's FPU image left unread in slot `cpu` of `space` under `token` (in its
/// `UserState`): the thread's state is that image, not `UserState::fp`. Dropping it (the
/// state is replaced or the thread ends) forgets the image. It does not keep the space
/// alive: a space goes with its process (its memory returns to the pool then, which an
/// out-of-memory kill waits for), not when the exiting thread's state is dropped.
pub(crate) struct InSlot {
    pub(super) space: Weak<super::Space>,
    pub(super) cpu: u32,
    pub(super) token: u64,
}

impl Drop for InSlot {
    fn drop(&mut self) {
        if let Some(space) = self.space.upgrade() {
            space.slot_fp.forget(self.cpu, self.token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`SlotImages::claim`] of an image that is all there.
    fn claim(s: &SlotImages, cpu: u32, token: u64, read: impl FnOnce(usize) -> Vec<u8>) -> bool {
        s.claim(cpu, token, || true, read).expect("ready")
    }

    /// [`SlotImages::take`] of an image that is all there.
    fn take(
        s: &SlotImages,
        cpu: u32,
        token: u64,
        out: &mut Vec<u8>,
        read: impl FnOnce(usize) -> Vec<u8>,
    ) -> bool {
        s.take(cpu, token, out, || true, read).expect("ready")
    }

    /// A slot reader that returns `len` bytes of `fill` and counts its calls.
    fn reader(fill: u8, calls: &core::cell::Cell<u32>) -> impl FnOnce(usize) -> Vec<u8> + '_ {
        move |len| {
            calls.set(calls.get() + 1);
            alloc::vec![fill; len]
        }
    }

    #[test]
    fn the_same_thread_again_on_its_slot_keeps_its_image_and_reads_nothing() {
        let s = SlotImages::new();
        let calls = core::cell::Cell::new(0);
        s.filled(0, 7, 2816);
        assert!(claim(&s, 0, 7, reader(1, &calls)));
        assert_eq!(calls.get(), 0);
        assert_eq!(s.parked_len(), 0);
        // Claimed: until the exit fills it again the slot holds nothing known.
        assert!(!claim(&s, 0, 7, reader(1, &calls)));
    }

    #[test]
    fn another_thread_sets_the_unread_image_aside_and_its_owner_takes_it() {
        let s = SlotImages::new();
        let calls = core::cell::Cell::new(0);
        s.filled(1, 7, 576);
        assert!(!claim(&s, 1, 8, reader(0xaa, &calls)));
        assert_eq!(calls.get(), 1);
        s.filled(1, 9, 100);
        let mut out = Vec::new();
        assert!(take(&s, 1, 7, &mut out, reader(0, &calls)));
        assert_eq!(out, alloc::vec![0xaa; 576]);
        assert_eq!(calls.get(), 1, "taken from those set aside, not the slot");
        assert_eq!(s.parked_len(), 0);
        assert!(!take(&s, 1, 7, &mut out, reader(0, &calls)), "taken once");
    }

    #[test]
    fn a_taken_image_stays_valid_in_its_slot_but_is_no_longer_set_aside() {
        let s = SlotImages::new();
        let calls = core::cell::Cell::new(0);
        s.filled(0, 3, 64);
        let mut out = Vec::new();
        assert!(take(&s, 0, 3, &mut out, reader(5, &calls)));
        assert_eq!((out.len(), calls.get()), (64, 1));
        // Read: another thread's run overwrites it without setting it aside...
        assert!(!claim(&s, 0, 4, reader(6, &calls)));
        assert_eq!((calls.get(), s.parked_len()), (1, 0));
        // ...while the thread itself could still have run with no image sent.
        s.filled(0, 5, 64);
        assert!(take(&s, 0, 5, &mut out, reader(5, &calls)));
        assert!(claim(&s, 0, 5, reader(6, &calls)));
    }

    #[test]
    fn an_image_still_on_its_way_is_waited_for_not_read() {
        let s = SlotImages::new();
        let calls = core::cell::Cell::new(0);
        let mut out = Vec::new();
        s.filled(0, 7, 64);
        // Its own thread keeps it: whether it is all there does not matter.
        assert_eq!(s.claim(0, 7, || false, reader(1, &calls)), Some(true));
        s.filled(0, 7, 64);
        // Neither another thread's run nor its owner reads it before it is all there.
        assert_eq!(s.claim(0, 8, || false, reader(1, &calls)), None);
        assert_eq!(s.take(0, 7, &mut out, || false, reader(1, &calls)), None);
        assert_eq!((calls.get(), s.parked_len(), out.len()), (0, 0, 0));
        // Nothing changed meanwhile: once it is there, it is set aside, then taken from there.
        assert_eq!(s.claim(0, 8, || true, reader(2, &calls)), Some(false));
        assert_eq!((calls.get(), s.parked_len()), (1, 1));
        assert_eq!(
            s.take(0, 7, &mut out, || false, reader(3, &calls)),
            Some(true)
        );
        assert_eq!((calls.get(), out), (1, alloc::vec![2u8; 64]));
    }

    #[test]
    fn a_forgotten_image_is_neither_set_aside_nor_kept() {
        let s = SlotImages::new();
        let calls = core::cell::Cell::new(0);
        s.filled(0, 3, 64);
        s.forget(0, 3);
        assert!(!claim(&s, 0, 4, reader(1, &calls)));
        assert_eq!((calls.get(), s.parked_len()), (0, 0));
        // Forgetting one set aside drops it.
        s.filled(0, 5, 64);
        assert!(!claim(&s, 0, 6, reader(1, &calls)));
        assert_eq!(s.parked_len(), 1);
        s.forget(0, 5);
        assert_eq!(s.parked_len(), 0);
    }

    #[test]
    fn a_new_sandbox_sets_every_unread_image_aside() {
        let s = SlotImages::new();
        s.filled(0, 1, 10);
        s.filled(1, 2, 20);
        s.filled(2, 3, 0); // an exit with no image: nothing to keep
        let mut seen = Vec::new();
        s.park_all(|cpu, len| {
            seen.push((cpu, len));
            alloc::vec![cpu as u8; len]
        });
        assert_eq!(seen, [(0, 10), (1, 20)]);
        let calls = core::cell::Cell::new(0);
        assert!(
            !claim(&s, 0, 1, reader(9, &calls)),
            "the new sandbox keeps nothing"
        );
        let mut out = Vec::new();
        assert!(take(&s, 1, 2, &mut out, reader(9, &calls)));
        assert_eq!(out, alloc::vec![1u8; 20]);
        assert_eq!(calls.get(), 0);
    }

    #[test]
    fn slots_past_the_last_vcpu_hold_nothing() {
        let s = SlotImages::new();
        let calls = core::cell::Cell::new(0);
        s.filled(MAX_VCPUS, 1, 10);
        assert!(!claim(&s, MAX_VCPUS, 1, reader(0, &calls)));
        let mut out = Vec::new();
        assert!(!take(&s, MAX_VCPUS, 1, &mut out, reader(0, &calls)));
    }
}
