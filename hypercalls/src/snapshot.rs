//! Snapshot and restore (docs/ABI.md §snapshot): the guest parks every vCPU with its whole
//! context in guest memory (`SnapshotPark`, hypercall 42) when the host raises
//! [`crate::vcpu::pending::SNAPSHOT`]; the host saves the memory; a restored guest starts
//! with [`crate::boot::boot_flags::RESUME`] in its boot information, resumes the parked
//! contexts and says so with `SnapshotResumed` (hypercall 46).

/// What `SnapshotPark` returns.
pub mod verdict {
    /// The snapshot is taken (or was cancelled): go on in this process.
    pub const CONTINUE: i64 = 0;
}
