//! Robust futexes: a thread registers the head of its list of held robust mutexes
//! (`set_robust_list`; glibc does it for every thread); when the thread ends — it exits, its
//! process is killed, or it execs — the kernel walks the list and marks each futex word it
//! still owns `FUTEX_OWNER_DIED`, waking one waiter, so the next `pthread_mutex_lock` of a
//! robust mutex returns `EOWNERDEAD` instead of waiting forever (Linux's
//! `exit_robust_list`). The list lives in the program's memory: every read is checked, a
//! bad pointer ends the walk, and at most [`ROBUST_LIST_LIMIT`] entries are followed (a
//! circular list cannot hold the kernel). The walk and the word's new value are pure
//! ([`entries`], [`owner_died`]) and unit-tested on the host.

use alloc::vec::Vec;

/// `sizeof(struct robust_list_head)`: the only length `set_robust_list` takes.
pub(crate) const ROBUST_HEAD_LEN: u64 = 24;

/// The futex word's bit: someone waits (the owner must wake them at unlock).
const FUTEX_WAITERS: u32 = 0x8000_0000;
/// The futex word's bit: the owner ended holding it.
const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
/// The owner's tid in the futex word.
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;

/// The most entries a list walk follows (Linux's `ROBUST_LIST_LIMIT`).
pub(crate) const ROBUST_LIST_LIMIT: usize = 2048;

/// A futex word to release: its address, whether the mutex is priority-inheriting (bit 0
/// of the list pointer), and whether it is the list's `list_op_pending` entry (a lock or
/// unlock the thread was in the middle of).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dead {
    pub(crate) uaddr: u64,
    pub(crate) pi: bool,
    pub(crate) pending: bool,
}

/// The futex words of the robust list whose `struct robust_list_head` is at `head`, read
/// through `read_u64` (`None`: unreadable, which ends the walk): every entry's word
/// (`entry + futex_offset`) but the pending one's, then the pending one's.
pub(crate) fn entries(head: u64, read_u64: impl Fn(u64) -> Option<u64>) -> Vec<Dead> {
    let mut out = Vec::new();
    let (Some(first), Some(offset), Some(pending)) = (
        read_u64(head),
        read_u64(head.wrapping_add(8)),
        read_u64(head.wrapping_add(16)),
    ) else {
        return out;
    };
    let word = |entry: u64| entry.wrapping_add(offset);
    let pending_entry = pending & !1;
    let mut at = first;
    for _ in 0..ROBUST_LIST_LIMIT {
        let entry = at & !1;
        if entry == head || entry == 0 {
            break;
        }
        let next = read_u64(entry);
        if entry != pending_entry {
            out.push(Dead {
                uaddr: word(entry),
                pi: at & 1 != 0,
                pending: false,
            });
        }
        match next {
            Some(n) => at = n,
            None => break,
        }
    }
    if pending_entry != 0 {
        out.push(Dead {
            uaddr: word(pending_entry),
            pi: pending & 1 != 0,
            pending: true,
        });
    }
    out
}

/// What the end of thread `tid` makes of a robust futex word `old`: `None` if the thread
/// does not own it; else the new word (the waiters bit kept, `FUTEX_OWNER_DIED` set, no
/// owner) and whether a waiter is to be woken.
pub(crate) fn owner_died(old: u32, tid: i32) -> Option<(u32, bool)> {
    if old & FUTEX_TID_MASK != tid as u32 & FUTEX_TID_MASK {
        return None;
    }
    Some((
        (old & FUTEX_WAITERS) | FUTEX_OWNER_DIED,
        old & FUTEX_WAITERS != 0,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::vec;

    /// A robust list in a map of 8-byte words: the head at 0x1000, entries at 0x2000,
    /// 0x3000 (a PI mutex) and 0x4000, each with its futex word 16 bytes before (offset
    /// -16), the one at 0x3000 pending.
    fn memory() -> BTreeMap<u64, u64> {
        let mut m = BTreeMap::new();
        m.insert(0x1000, 0x2000); // head.list.next
        m.insert(0x1008, (-16i64) as u64); // futex_offset
        m.insert(0x1010, 0x3001); // list_op_pending (PI)
        m.insert(0x2000, 0x3001);
        m.insert(0x3000, 0x4000);
        m.insert(0x4000, 0x1000); // back to the head
        m
    }

    #[test]
    fn a_list_gives_each_word_once_and_the_pending_one_last() {
        let m = memory();
        let got = entries(0x1000, |a| m.get(&a).copied());
        assert_eq!(
            got,
            vec![
                Dead {
                    uaddr: 0x1ff0,
                    pi: false,
                    pending: false
                },
                Dead {
                    uaddr: 0x3ff0,
                    pi: false,
                    pending: false
                },
                Dead {
                    uaddr: 0x2ff0,
                    pi: true,
                    pending: true
                },
            ]
        );
    }

    #[test]
    fn bad_and_circular_lists_end_the_walk() {
        // An unreadable entry ends the walk after it.
        let mut m = memory();
        m.insert(0x2000, 0x9000);
        let got = entries(0x1000, |a| m.get(&a).copied());
        assert_eq!(got.len(), 3, "{got:?}");
        // A loop that never reaches the head stops at the limit.
        let mut m = memory();
        m.insert(0x4000, 0x2000);
        m.insert(0x1010, 0);
        let got = entries(0x1000, |a| m.get(&a).copied());
        assert_eq!(got.len(), ROBUST_LIST_LIMIT);
        // An unreadable head: nothing.
        assert!(entries(0x5000, |a| m.get(&a).copied()).is_empty());
    }

    #[test]
    fn only_the_owners_words_change() {
        assert_eq!(owner_died(42, 42), Some((FUTEX_OWNER_DIED, false)));
        assert_eq!(
            owner_died(42 | FUTEX_WAITERS, 42),
            Some((FUTEX_WAITERS | FUTEX_OWNER_DIED, true))
        );
        assert_eq!(owner_died(43, 42), None);
        assert_eq!(owner_died(0, 42), None);
        // A word that died once already and was taken by 42 again.
        assert_eq!(
            owner_died(42 | FUTEX_OWNER_DIED, 42),
            Some((FUTEX_OWNER_DIED, false))
        );
    }
}
