//! Names the host share does not have (or has as an entry the guest does not show: a device
//! node, a socket, a FIFO): a bounded cache of single-name lookups that found nothing, so a
//! program that keeps probing the same missing paths — a shell searching
//! `PATH`, the dynamic loader searching its library directories, Python's import system —
//! asks the host once, not once a probe (each ask is a hypercall).
//!
//! This keeps the share's consistency model: the guest's view of a host directory is taken
//! when it first looks (an entry, once seen, is not re-read; a listed directory is not listed
//! again), so a name that was missing when the guest first looked stays missing. Entries are
//! host paths, not inode numbers, so they describe the host and nothing in the guest (a name
//! the guest creates is found in its directory before this cache is asked).
//!
//! Bounded: at most [`MAX_ENTRIES`] paths and [`MAX_BYTES`] bytes of them; a program probing
//! endless new names makes the cache start over, never grow.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

/// Most paths remembered.
pub(super) const MAX_ENTRIES: usize = 4096;
/// Most bytes of paths remembered.
pub(super) const MAX_BYTES: usize = 256 << 10;

/// Host paths known to be missing.
#[derive(Debug, Default)]
pub(super) struct HostMisses {
    paths: BTreeSet<Vec<u8>>,
    bytes: usize,
}

impl HostMisses {
    /// Whether host path `path` is known to be missing.
    pub(super) fn contains(&self, path: &[u8]) -> bool {
        self.paths.contains(path)
    }

    /// Remembers that host path `path` is missing (forgetting every other path first if the
    /// cache is full).
    pub(super) fn insert(&mut self, path: Vec<u8>) {
        if path.len() > MAX_BYTES || self.paths.contains(&path) {
            return;
        }
        if self.paths.len() >= MAX_ENTRIES || self.bytes + path.len() > MAX_BYTES {
            self.paths.clear();
            self.bytes = 0;
        }
        self.bytes += path.len();
        self.paths.insert(path);
    }

    /// How many paths are remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.paths.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_paths_and_starts_over_when_full() {
        let mut m = HostMisses::default();
        m.insert(b"/usr/bin/nosuch".to_vec());
        m.insert(b"/usr/bin/nosuch".to_vec());
        assert!(m.contains(b"/usr/bin/nosuch"));
        assert!(!m.contains(b"/usr/bin/other"));
        assert_eq!(m.len(), 1);
        for i in 0..MAX_ENTRIES {
            m.insert(alloc::format!("/p/{i}").into_bytes());
        }
        assert!(m.len() <= MAX_ENTRIES);
        assert!(!m.contains(b"/usr/bin/nosuch"), "the oldest were forgotten");
        assert!(m.contains(alloc::format!("/p/{}", MAX_ENTRIES - 1).as_bytes()));
        // Bytes are bounded too.
        let mut m = HostMisses::default();
        let long = alloc::vec![b'x'; MAX_BYTES / 2 + 1];
        m.insert(long.clone());
        let mut other = long.clone();
        other[0] = b'y';
        m.insert(other.clone());
        assert_eq!(m.len(), 1);
        assert!(m.contains(&other) && !m.contains(&long));
    }
}
