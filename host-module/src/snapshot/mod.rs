//! Snapshot and restore of a running tenant (docs/MULTIKERNEL.md, "Snapshot and restore";
//! docs/ABI.md §snapshot).
//!
//! * [`crate::TenantHandle::snapshot`]: the host raises `pending::SNAPSHOT`; the guest parks
//!   every vCPU with its whole context in guest memory (hypercall 42 `SnapshotPark`, served
//!   by `Parking` on each vCPU's service thread); once all are parked the host writes the
//!   directory ([`mod@format`]) and then either stops the tenant (the default, as `podman
//!   container checkpoint`) or lets the parked vCPUs go on.
//! * [`crate::Host::restore`]: checks the directory whole, fills a new memfd, rewrites the
//!   boot information (`boot_flags::RESUME`, a TSC base that continues the guest's time, the
//!   wall clock now) and starts a new sandbox at the kernel's entry point; the kernel resumes
//!   its parked contexts and says so with hypercall 46 `SnapshotResumed`.
//!
//! What cannot be carried is refused before the guest is asked: host sockets (`--net host`)
//! and exec sessions in progress; `--publish` connections open once the guest has parked
//! are refused then (the guest goes on), while the listeners are the restored tenant's own
//! arguments. Syscall-site patching is carried: the patched
//! bytes and the patch table are ordinary guest pages of each process, and the table's
//! header names the user stub's fixed patch entry (`USER_PATCH_ENTRY`), the same in the new
//! sandboxes. The trusted in-process mode is carried: the restored kernel sandbox runs in
//! it too, and an in-process space maps its pages again in the new sandbox's user window
//! and points its table at the new sandbox's syscall entry (`Space::revive`).

pub mod format;

use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long the host waits for every vCPU to park.
pub const PARK_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a snapshot was not taken or a restore refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The tenant is not running.
    #[error("the tenant is not running")]
    NotRunning,
    /// The tenant is paused.
    #[error("the tenant is paused: resume it first")]
    Paused,
    /// State outside guest memory that a snapshot cannot carry.
    #[error("cannot snapshot this tenant: {0}")]
    Refused(String),
    /// The guest did not park every vCPU in time (it goes on running).
    #[error("the guest parked {parked} of {expected} vCPUs within {timeout:?}; no snapshot taken, it goes on running")]
    NotParked {
        /// vCPUs parked.
        parked: u32,
        /// vCPUs expected.
        expected: u32,
        /// The wait.
        timeout: Duration,
    },
    /// Reading or writing the directory failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A corrupted, truncated or malformed snapshot.
    #[error("invalid snapshot: {0}")]
    Invalid(String),
    /// A snapshot of another format, ABI or kernel image.
    #[error("foreign snapshot: {0}")]
    Foreign(String),
    /// The restored tenant could not start.
    #[error("cannot start the restored tenant: {0}")]
    Start(#[from] crate::HostError),
}

/// What a snapshot took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFigures {
    /// Guest memory size.
    pub mem_size: u64,
    /// Bytes of memory written (non-zero pages).
    pub data_bytes: u64,
    /// Bytes the directory takes on disk (allocated blocks).
    pub disk_bytes: u64,
    /// vCPUs parked.
    pub vcpus: u32,
    /// From the request to all vCPUs parked.
    pub park: Duration,
    /// Writing the directory.
    pub write: Duration,
}

/// The kernel image's identity recorded in a snapshot: its length and CRC-32 (not a
/// security measure — a snapshot is guest data the host validates anyway — but the check
/// that the restore runs the same image, whose addresses the memory holds).
pub fn kernel_digest(image: &crate::KernelImage) -> String {
    let (mut crc, mut len) = (crc32fast::Hasher::new(), 0usize);
    image.footprint_chunks(|b| {
        crc.update(b);
        len += b.len();
    });
    format!("crc32:{:08x}:len:{}", crc.finalize(), len)
}

/// Bytes `dir`'s files take on disk.
pub fn disk_usage(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

/// The park rendezvous between a snapshot and the vCPU service threads.
#[derive(Default)]
pub(crate) struct Parking {
    st: Mutex<ParkState>,
    cv: Condvar,
}

#[derive(Default)]
struct ParkState {
    /// A snapshot is being taken.
    active: bool,
    /// vCPUs parked now.
    parked: u32,
    /// vCPUs the guest said are online.
    expected: u32,
    /// The snapshot is done: parked vCPUs go on.
    release: bool,
    /// When the restored guest said it runs again.
    resumed: Option<Instant>,
}

impl Parking {
    fn lock(&self) -> std::sync::MutexGuard<'_, ParkState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `SnapshotPark(online)` on a vCPU's service thread: blocks until the snapshot is
    /// done (or the tenant stops). A park nobody asked for returns at once.
    pub(crate) fn park(
        &self,
        online: u64,
        nr_vcpus: u32,
        stop: &std::sync::atomic::AtomicBool,
    ) -> i64 {
        let mut g = self.lock();
        if !g.active || g.release {
            return pvmux_hypercalls::snapshot::verdict::CONTINUE;
        }
        g.parked += 1;
        g.expected = (online.clamp(1, u64::from(nr_vcpus))) as u32;
        self.cv.notify_all();
        while !g.release && !stop.load(std::sync::atomic::Ordering::SeqCst) {
            g = self
                .cv
                .wait_timeout(g, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        g.parked -= 1;
        self.cv.notify_all();
        pvmux_hypercalls::snapshot::verdict::CONTINUE
    }

    /// Starts a snapshot; `false` if one is under way.
    pub(crate) fn begin(&self) -> bool {
        let mut g = self.lock();
        if g.active {
            return false;
        }
        *g = ParkState {
            active: true,
            ..ParkState::default()
        };
        true
    }

    /// Waits until every online vCPU is parked; the count parked.
    pub(crate) fn wait_parked(&self, timeout: Duration) -> Result<u32, (u32, u32)> {
        let start = Instant::now();
        let mut g = self.lock();
        loop {
            if g.expected > 0 && g.parked >= g.expected {
                return Ok(g.parked);
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err((g.parked, g.expected));
            }
            g = self
                .cv
                .wait_timeout(g, left.min(Duration::from_millis(50)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Ends the snapshot: parked vCPUs go on.
    pub(crate) fn end(&self) {
        let mut g = self.lock();
        g.release = true;
        g.active = false;
        self.cv.notify_all();
    }

    /// `SnapshotResumed`.
    pub(crate) fn resumed(&self) {
        let mut g = self.lock();
        g.resumed.get_or_insert_with(Instant::now);
        self.cv.notify_all();
    }

    /// Waits at most `timeout` for `SnapshotResumed`.
    pub(crate) fn wait_resumed(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        let mut g = self.lock();
        while g.resumed.is_none() {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return false;
            }
            g = self
                .cv
                .wait_timeout(g, left.min(Duration::from_millis(20)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}
