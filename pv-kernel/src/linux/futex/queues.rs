//! Who waits on which futex: the key of a futex word, and the waiters of each key in the
//! order they came.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// What identifies a futex (Linux's `futex_key`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Key {
    /// A word in shared memory: its guest-physical address.
    Shared(u64),
    /// A word in private memory: the address space (its address) and the word's address.
    Private(usize, u64),
}

impl Key {
    /// The key of the word at `uaddr` of address space `space`: by address space and
    /// address when the operation says `FUTEX_PRIVATE_FLAG` or the word is in private
    /// memory; by the guest-physical address `shared_gpa` of the word when it is in shared
    /// memory (`Some`) and the operation may be shared — so processes sharing the memory
    /// meet, at whatever address each maps it (as Linux keys shared mappings by their
    /// pages).
    pub(crate) const fn of(
        private_op: bool,
        space: usize,
        uaddr: u64,
        shared_gpa: Option<u64>,
    ) -> Self {
        match shared_gpa {
            Some(gpa) if !private_op => Self::Shared(gpa),
            _ => Self::Private(space, uaddr),
        }
    }
}

/// The waiters of every futex that has some, each list in arrival order.
pub(crate) struct Queues<W> {
    map: BTreeMap<Key, Vec<W>>,
}

impl<W> Queues<W> {
    /// No waiters.
    pub(crate) const fn new() -> Self {
        Self {
            map: BTreeMap::new(),
        }
    }

    /// `w` waits on `k` (after those already there).
    pub(crate) fn push(&mut self, k: Key, w: W) {
        self.map.entry(k).or_default().push(w);
    }

    /// Takes up to `limit` waiters of `k` for which `wanted` holds (a wake-up's bitset),
    /// oldest first.
    pub(crate) fn take(
        &mut self,
        k: Key,
        limit: usize,
        mut wanted: impl FnMut(&W) -> bool,
    ) -> Vec<W> {
        let Some(list) = self.map.get_mut(&k) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut i = 0;
        while i < list.len() && out.len() < limit {
            if wanted(&list[i]) {
                out.push(list.remove(i));
            } else {
                i += 1;
            }
        }
        if list.is_empty() {
            self.map.remove(&k);
        }
        out
    }

    /// Removes the waiter of `k` for which `is` holds (a wait that ends without a wake-up);
    /// false if it is not there (it was woken).
    pub(crate) fn remove(&mut self, k: Key, is: impl Fn(&W) -> bool) -> bool {
        let Some(list) = self.map.get_mut(&k) else {
            return false;
        };
        let before = list.len();
        list.retain(|w| !is(w));
        let removed = list.len() != before;
        if list.is_empty() {
            self.map.remove(&k);
        }
        removed
    }

    /// Number of futexes with waiters.
    #[cfg(test)]
    fn futexes(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_private_and_shared() {
        let (space_a, space_b) = (0x1000, 0x2000);
        // Private memory: by space and address, whatever the flag.
        assert_eq!(
            Key::of(false, space_a, 0x40_0000, None),
            Key::Private(space_a, 0x40_0000)
        );
        assert_eq!(
            Key::of(true, space_a, 0x40_0000, None),
            Key::Private(space_a, 0x40_0000)
        );
        assert_ne!(
            Key::of(false, space_a, 0x40_0000, None),
            Key::of(false, space_b, 0x40_0000, None),
            "two processes' private words never meet"
        );
        // Shared memory: by frame, so two spaces mapping it at different addresses meet...
        assert_eq!(
            Key::of(false, space_a, 0x40_0010, Some(0x8000_0010)),
            Key::of(false, space_b, 0x7f_0010, Some(0x8000_0010))
        );
        // ... unless the operation is private (Linux keys it by mm and address then).
        assert_eq!(
            Key::of(true, space_a, 0x40_0010, Some(0x8000_0010)),
            Key::Private(space_a, 0x40_0010)
        );
    }

    #[test]
    fn wake_ups_take_the_oldest_matching_waiters() {
        let k = Key::Private(1, 0x100);
        let other = Key::Shared(0x100);
        let mut q = Queues::new();
        // (id, bitset)
        for w in [(1, 0b01), (2, 0b10), (3, 0b11), (4, 0b01)] {
            q.push(k, w);
        }
        q.push(other, (9, !0));
        assert_eq!(q.take(k, 2, |w| w.1 & 0b01 != 0), [(1, 0b01), (3, 0b11)]);
        assert_eq!(q.take(k, 10, |_| true), [(2, 0b10), (4, 0b01)]);
        assert_eq!(q.take(k, 10, |_| true), [], "no one left");
        assert_eq!(q.futexes(), 1, "an empty list is dropped");
        assert_eq!(q.take(other, 0, |_| true), [], "limit 0 takes none");
        assert_eq!(q.take(other, 1, |_| true), [(9, !0)]);
        assert_eq!(q.futexes(), 0);
    }

    #[test]
    fn a_wait_that_ends_removes_only_itself() {
        let k = Key::Shared(0x2000);
        let mut q = Queues::new();
        q.push(k, 1);
        q.push(k, 2);
        assert!(q.remove(k, |&w| w == 1));
        assert!(!q.remove(k, |&w| w == 1), "already gone (woken)");
        assert!(!q.remove(Key::Shared(0x3000), |_| true));
        assert_eq!(q.take(k, 5, |_| true), [2]);
        assert!(!q.remove(k, |&w| w == 2));
        assert_eq!(q.futexes(), 0);
    }
}
