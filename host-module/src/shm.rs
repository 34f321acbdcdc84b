//! Sealed memfds and their shared host mappings.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

use crate::HostError;

/// A memfd of fixed size, sealed against shrinking, growing and further sealing, mapped
/// `MAP_SHARED` read-write into the host.
#[derive(Debug)]
pub(crate) struct SharedMemfd {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; all access goes through raw
// pointers with copies or atomics, which is sound from any thread.
unsafe impl Send for SharedMemfd {}
// SAFETY: as above; `&SharedMemfd` only exposes raw pointers and the fd.
unsafe impl Sync for SharedMemfd {}

impl SharedMemfd {
    /// Creates a `len`-byte memfd named `name`, seals its size and maps it.
    pub(crate) fn new(name: &str, len: u64) -> Result<Self, HostError> {
        let map_len =
            usize::try_from(len).map_err(|_| HostError::InvalidConfig("size too large".into()))?;
        if map_len == 0 {
            return Err(HostError::InvalidConfig("zero-sized memory".into()));
        }
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
            .map_err(|e| HostError::os("memfd_create", e))?;
        rustix::fs::ftruncate(&fd, len).map_err(|e| HostError::os("ftruncate(memfd)", e))?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
            .map_err(|e| HostError::os("sealing memfd", e))?;
        // SAFETY: a fresh shared mapping of a file we own, at an address the kernel picks; it
        // aliases no Rust object.
        let raw = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                map_len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )
        }
        .map_err(|e| HostError::os("mmap(memfd)", e))?;
        let ptr = NonNull::new(raw.cast::<u8>())
            .ok_or(HostError::BadStub("mmap returned a null mapping"))?;
        Ok(Self {
            fd,
            ptr,
            len: map_len,
        })
    }

    /// Start of the host mapping.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The memfd.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The memfd's number (for the sandbox spawner).
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for SharedMemfd {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe the mapping created in `new`; no reference into it
        // outlives `self` (accessors borrow `self`).
        if let Err(e) = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) } {
            tracing::error!("munmap of a memfd mapping failed: {e}");
        }
    }
}

/// Writes `bytes` into a new sealed, executable-only-by-path memfd (for the sandbox stub).
pub(crate) fn sealed_blob(name: &str, bytes: &[u8]) -> Result<OwnedFd, HostError> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(|e| HostError::os("memfd_create(stub)", e))?;
    let mut off = 0;
    while off < bytes.len() {
        let n =
            rustix::io::write(&fd, &bytes[off..]).map_err(|e| HostError::os("write(stub)", e))?;
        if n == 0 {
            return Err(HostError::BadStub("short write into the stub memfd"));
        }
        off += n;
    }
    rustix::fs::fcntl_add_seals(
        &fd,
        SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
    )
    .map_err(|e| HostError::os("sealing the stub memfd", e))?;
    Ok(fd)
}
