//! The one place the Linux layer asks whether the kernel heap can afford an allocation made
//! on a program's behalf. Collections that grow on a program's request use `try_reserve`
//! (an allocation failure is an errno, never a panic), and before state that lives on —
//! a memory region, a descriptor, a forked address space, a pipe's buffered bytes — the
//! caller asks [`reserve`]: it goes through the heap's headroom gate
//! ([`crate::mm::heap::charge`]: the heap grows from guest memory if it can, and always keeps
//! its own reserve free for the kernel), so with kernel memory nearly used up the system call
//! fails with `ENOMEM` (or the caller's equivalent) while the kernel goes on.

use super::Errno;

/// `Ok` if the heap can afford `want` more bytes for a program; `ENOMEM` if not.
pub(crate) fn reserve(want: usize) -> Result<(), Errno> {
    crate::mm::heap::charge(want).map_err(|_| Errno::ENOMEM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_refuses_beyond_the_headroom() {
        crate::mm::heap::set_test_headroom(Some(4096));
        assert!(reserve(4096).is_ok());
        assert_eq!(reserve(4097), Err(Errno::ENOMEM));
        crate::mm::heap::set_test_headroom(None);
        assert!(
            reserve(1 << 30).is_ok(),
            "unlimited by default in host tests"
        );
    }
}
