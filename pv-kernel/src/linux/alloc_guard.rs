//! The one place the Linux layer asks whether the kernel heap can afford an allocation made
//! on a program's behalf. Collections that grow on a program's request use `try_reserve`
//! (an allocation failure is an errno, never a panic), and before state that lives on —
//! a memory region, a descriptor, a forked address space — the caller asks [`reserve`]:
//! with the heap nearly full the system call fails with `ENOMEM` (or the caller's
//! equivalent) while the kernel keeps the headroom it needs for itself.
//!
//! TODO(merge): helper "kheap" makes the heap grow from guest memory and adds a
//! heap-headroom API to `crate::mm::heap`; wire [`headroom`] to it (it is the only function
//! here that reads the heap's state).

use super::Errno;

/// Heap bytes always kept free for the kernel's own work (at least this, or an eighth of
/// the heap if that is more).
const KERNEL_RESERVE: usize = 1 << 20;

/// `(free, size)` of the kernel heap now.
#[cfg(not(test))]
fn headroom() -> (usize, usize) {
    let (used, size) = crate::mm::heap::stats();
    (size.saturating_sub(used), size)
}

/// Host unit tests have no kernel heap (the host's allocator serves them): never short.
#[cfg(test)]
fn headroom() -> (usize, usize) {
    (usize::MAX / 2, usize::MAX / 2)
}

/// True if `want` more bytes leave the kernel's reserve free in a heap of `size` bytes
/// with `free` free.
pub(crate) const fn affordable(free: usize, size: usize, want: usize) -> bool {
    let reserve = if size / 8 > KERNEL_RESERVE {
        size / 8
    } else {
        KERNEL_RESERVE
    };
    match free.checked_sub(reserve) {
        Some(spare) => want <= spare,
        None => false,
    }
}

/// `Ok` if the heap can afford `want` more bytes for a program; `ENOMEM` if not.
pub(crate) fn reserve(want: usize) -> Result<(), Errno> {
    let (free, size) = headroom();
    if affordable(free, size, want) {
        Ok(())
    } else {
        Err(Errno::ENOMEM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_stays_free() {
        let mib = 1 << 20;
        // A 32 MiB heap keeps 4 MiB.
        assert!(affordable(5 * mib, 32 * mib, mib));
        assert!(!affordable(5 * mib, 32 * mib, mib + 1));
        assert!(!affordable(3 * mib, 32 * mib, 0));
        // A small heap keeps 1 MiB.
        assert!(affordable(2 * mib, 4 * mib, mib));
        assert!(!affordable(2 * mib, 4 * mib, mib + 1));
        assert!(reserve(4096).is_ok(), "host tests are never short");
    }
}
