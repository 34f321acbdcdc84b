//! Guest-physical memory: one sealed memfd per tenant, mapped shared into the host.
//!
//! The guest writes this memory concurrently with the host. [`GuestMemory`] therefore never
//! hands out references into it: every access copies, and every range is bounds-checked.

use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use pvmux_hypercalls::layout::MAX_GUEST_MEM;
use pvmux_hypercalls::sandbox::{SharedImageRange, MAX_SHARED_IMAGE_RANGES};
use pvmux_hypercalls::PAGE_SIZE as PAGE;

use crate::image_file::ImageFile;
use crate::shm::SharedMemfd;
use crate::{HostError, MemoryError};

/// Granularity of guest memory sizes (one 2 MiB page of the direct map).
pub const MEM_SIZE_ALIGN: u64 = 2 << 20;
/// Smallest guest memory size a tenant may have.
pub const MIN_MEM_SIZE: u64 = 16 << 20;

/// Checks a guest memory size: a multiple of 2 MiB in `16 MiB..=MAX_GUEST_MEM`.
pub fn validate_mem_size(size: u64) -> Result<(), HostError> {
    if !(MIN_MEM_SIZE..=MAX_GUEST_MEM).contains(&size) {
        return Err(HostError::InvalidConfig(format!(
            "guest memory size {size:#x} is outside {MIN_MEM_SIZE:#x}..={MAX_GUEST_MEM:#x}"
        )));
    }
    if !size.is_multiple_of(MEM_SIZE_ALIGN) {
        return Err(HostError::InvalidConfig(format!(
            "guest memory size {size:#x} is not a multiple of 2 MiB"
        )));
    }
    Ok(())
}

/// The guest-physical pages of a tenant's kernel image that its kernel sandbox maps
/// read-only from the image's file (`KernelImage::shared_image_at`): holes in the memfd,
/// which no launch writes; the host reads them from the image's bytes.
#[derive(Debug)]
pub struct SharedImage {
    file: Arc<ImageFile>,
    /// The ELF file's bytes (built into the executable: the file's own pages).
    elf: &'static [u8],
    /// `(gpa, len, offset in the ELF)`, page aligned, by address, at most
    /// [`MAX_SHARED_IMAGE_RANGES`].
    runs: Vec<(u64, u64, u64)>,
}

impl SharedImage {
    /// The runs `(gpa, len, offset in elf)` of `elf`, whose file is `file`: `None` unless
    /// there are at most [`MAX_SHARED_IMAGE_RANGES`], each lies in `elf`, and they are sorted
    /// by address without overlapping (the caller leaves exactly these out of guest memory).
    pub(crate) fn new(
        file: Arc<ImageFile>,
        elf: &'static [u8],
        runs: Vec<(u64, u64, u64)>,
    ) -> Option<Self> {
        let in_elf = runs.iter().all(|&(_, len, off)| {
            off.checked_add(len)
                .is_some_and(|end| end <= elf.len() as u64)
        });
        let ordered = runs
            .windows(2)
            .all(|w| w[0].0.checked_add(w[0].1).is_some_and(|end| end <= w[1].0));
        (runs.len() <= MAX_SHARED_IMAGE_RANGES && in_elf && ordered).then_some(Self {
            file,
            elf,
            runs,
        })
    }

    /// The sandbox header's ranges: the runs with their offsets in the file.
    pub(crate) fn ranges(&self) -> [SharedImageRange; MAX_SHARED_IMAGE_RANGES] {
        let mut out = [SharedImageRange::default(); MAX_SHARED_IMAGE_RANGES];
        for (o, &(gpa, len, off)) in out.iter_mut().zip(&self.runs) {
            *o = SharedImageRange {
                gpa,
                len,
                file_offset: self.file.offset + off,
            };
        }
        out
    }

    /// The file the kernel sandbox maps the runs from (read-only).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.file.as_fd()
    }

    /// The guest-physical page frames `[first, end)` the runs span (`(0, 0)` if none), packed
    /// as `first << 32 | end` (frame numbers of 4 KiB pages: up to 16 TiB).
    fn span(&self) -> u64 {
        let first = self.runs.first().map_or(0, |r| r.0 / PAGE);
        let end = self.runs.last().map_or(0, |r| (r.0 + r.1).div_ceil(PAGE));
        match (u32::try_from(first), u32::try_from(end)) {
            (Ok(first), Ok(end)) => u64::from(first) << 32 | u64::from(end),
            // Beyond 16 TiB (no such guest): every read takes the overlay's path.
            _ => u64::from(u32::MAX),
        }
    }

    /// The guest-physical runs `(gpa, len)`.
    pub fn gpa_runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.runs.iter().map(|&(gpa, len, _)| (gpa, len))
    }

    /// The image's bytes from `gpa` to the end of its run, if `gpa` lies in one.
    fn bytes_at(&self, gpa: u64) -> Option<&'static [u8]> {
        let &(start, len, off) = self
            .runs
            .iter()
            .find(|&&(start, len, _)| (start..start + len).contains(&gpa))?;
        let elf: &'static [u8] = self.elf;
        elf.get((off + gpa - start) as usize..(off + len) as usize)
    }

    /// The first run's start above `gpa` (`u64::MAX` if none).
    fn next_run(&self, gpa: u64) -> u64 {
        self.runs
            .iter()
            .map(|r| r.0)
            .filter(|&start| start > gpa)
            .min()
            .unwrap_or(u64::MAX)
    }
}

/// A tenant's guest-physical memory.
#[derive(Debug)]
pub struct GuestMemory {
    shm: SharedMemfd,
    size: u64,
    /// The kernel image's pages its sandbox maps from the image's file (set by the domain
    /// build, replaced by a hand-over's).
    shared_image: RwLock<Option<Arc<SharedImage>>>,
    /// [`SharedImage::span`] of `shared_image` (0: none), so that a read elsewhere (most of
    /// them: hypercall arguments, rings, page tables) takes no lock.
    shared_span: AtomicU64,
}

impl GuestMemory {
    /// Creates zeroed guest memory of `size` bytes (see [`validate_mem_size`]).
    pub fn new(size: u64) -> Result<Self, HostError> {
        validate_mem_size(size)?;
        Ok(Self {
            shm: SharedMemfd::new("pvmux-guest", size)?,
            size,
            shared_image: RwLock::new(None),
            shared_span: AtomicU64::new(0),
        })
    }

    /// The kernel image's pages the kernel sandbox maps from the image's file, if any.
    pub fn shared_image(&self) -> Option<Arc<SharedImage>> {
        self.shared_image
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets (the domain build) or clears the kernel image's shared pages.
    pub(crate) fn set_shared_image(&self, shared: Option<Arc<SharedImage>>) {
        let mut slot = self.shared_image.write().unwrap_or_else(|e| e.into_inner());
        let span = shared.as_ref().map_or(0, |s| s.span());
        *slot = shared;
        self.shared_span.store(span, Ordering::Release);
    }

    /// Size of guest memory in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The memfd backing guest memory.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.shm.fd()
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.shm.raw_fd()
    }

    /// Checks `[gpa, gpa + len)` against guest memory and returns the offset as `usize`.
    pub fn check_range(&self, gpa: u64, len: u64) -> Result<usize, MemoryError> {
        let err = MemoryError {
            gpa,
            len,
            size: self.size,
        };
        match gpa.checked_add(len) {
            Some(end) if end <= self.size => usize::try_from(gpa).map_err(|_| err),
            _ => Err(err),
        }
    }

    /// Copies guest memory at `gpa` into `buf` (the kernel image's shared pages from the
    /// image: the memfd has holes there).
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let off = self.check_range(gpa, buf.len() as u64)?;
        let span = self.shared_span.load(Ordering::Acquire);
        let (first, end) = ((span >> 32) * PAGE, (span & u64::from(u32::MAX)) * PAGE);
        let shared = if gpa < end && first < gpa + buf.len() as u64 {
            self.shared_image()
        } else {
            None
        };
        let mut done = 0usize;
        while done < buf.len() {
            let at = gpa + done as u64;
            let rest = &mut buf[done..];
            if let Some(image) = shared.as_ref().and_then(|s| s.bytes_at(at)) {
                let n = image.len().min(rest.len());
                rest[..n].copy_from_slice(&image[..n]);
                done += n;
                continue;
            }
            let to_run = shared.as_ref().map_or(u64::MAX, |s| s.next_run(at)) - at;
            let n = rest
                .len()
                .min(usize::try_from(to_run).unwrap_or(usize::MAX));
            // SAFETY: `off + done + n <= off + buf.len() <= size == mapping length` (checked
            // above); the source is shared memory another process may write concurrently, so
            // it is copied bytewise with no reference formed to it; `rest` is a distinct host
            // buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.shm.as_ptr().add(off + done),
                    rest.as_mut_ptr(),
                    n,
                );
            }
            done += n;
        }
        Ok(())
    }

    /// Copies `len` bytes of guest memory at `gpa` into a new vector.
    pub fn read_vec(&self, gpa: u64, len: usize) -> Result<Vec<u8>, MemoryError> {
        self.check_range(gpa, len as u64)?;
        let mut v = vec![0; len];
        self.read(gpa, &mut v)?;
        Ok(v)
    }

    /// Copies `data` into guest memory at `gpa`.
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        let off = self.check_range(gpa, data.len() as u64)?;
        // SAFETY: bounds checked above; the destination is shared memory addressed only
        // through raw pointers; `data` is a distinct host buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.shm.as_ptr().add(off), data.len());
        }
        Ok(())
    }

    /// Copies `data` into guest memory at `gpa` through the memfd (`pwrite`), not the
    /// mapping: for large initial contents (the kernel image), whose pages the host would
    /// otherwise fault in, zero and then overwrite one by one.
    pub fn write_bulk(&self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        self.check_range(gpa, data.len() as u64)?;
        let (mut at, mut rest) = (gpa, data);
        while !rest.is_empty() {
            match rustix::io::pwrite(self.shm.fd(), rest, at) {
                Ok(0) => break,
                Ok(n) => {
                    at += n as u64;
                    rest = &rest[n..];
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => break,
            }
        }
        if !rest.is_empty() {
            // A memfd of this size takes any write within it; should it not, the mapping
            // does (the same bytes, more slowly).
            self.write(at, rest)?;
        }
        Ok(())
    }

    /// Reads `len` bytes of file `fd` at `offset` into guest memory at each of `dests`
    /// (`[gpa, gpa + len)` for every `Some(gpa)`): the bytes read, fewer at the end of the
    /// file (an error after some bytes were read ends the read short). Through a reused host
    /// buffer and the memfd (`pread`, then `pwrite`, as [`GuestMemory::write_bulk`]), not the
    /// mapping: guest pages the host has not touched yet are then filled without a host page
    /// fault each (a fault costs two to three times the page's copy on a nested host).
    pub fn read_file(
        &self,
        fd: BorrowedFd<'_>,
        offset: u64,
        len: u64,
        dests: &[Option<u64>],
    ) -> Result<usize, rustix::io::Errno> {
        /// Bytes of the file moved per `pread`/`pwrite` pair.
        const BOUNCE: usize = 256 << 10;
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        for gpa in dests.iter().flatten() {
            self.check_range(*gpa, len)
                .map_err(|_| rustix::io::Errno::FAULT)?;
        }
        let len = usize::try_from(len).map_err(|_| rustix::io::Errno::INVAL)?;
        BUF.with_borrow_mut(|buf| {
            buf.resize(BOUNCE.min(len), 0);
            let mut done = 0usize;
            while done < len {
                let want = (len - done).min(BOUNCE);
                let at = offset
                    .checked_add(done as u64)
                    .ok_or(rustix::io::Errno::INVAL)?;
                let n = match rustix::io::pread(fd, &mut buf[..want], at) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) if done == 0 => return Err(e),
                    Err(_) => break,
                };
                for gpa in dests.iter().flatten() {
                    self.write_bulk(gpa + done as u64, &buf[..n])
                        .map_err(|_| rustix::io::Errno::FAULT)?;
                }
                done += n;
            }
            Ok(done)
        })
    }

    /// Fills `[gpa, gpa + len)` with zeroes.
    pub fn zero(&self, gpa: u64, len: u64) -> Result<(), MemoryError> {
        let off = self.check_range(gpa, len)?;
        // SAFETY: bounds checked above (`len` fits in usize because `off + len <= size`, which
        // is the length of a host mapping).
        unsafe { std::ptr::write_bytes(self.shm.as_ptr().add(off), 0, len as usize) };
        Ok(())
    }

    /// Reads a little-endian `u64` at `gpa`.
    pub fn read_u64(&self, gpa: u64) -> Result<u64, MemoryError> {
        let mut b = [0; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian `u64` at `gpa`.
    pub fn write_u64(&self, gpa: u64, value: u64) -> Result<(), MemoryError> {
        self.write(gpa, &value.to_le_bytes())
    }

    /// The 32-bit word at `gpa` as an atomic (for futex words and flags shared with the
    /// guest); `None` unless `gpa` is 4-byte aligned and the word lies in guest memory. The
    /// value is guest-controlled: treat whatever is loaded as untrusted.
    pub fn atomic_u32(&self, gpa: u64) -> Option<&AtomicU32> {
        if !gpa.is_multiple_of(4) {
            return None;
        }
        let off = self.check_range(gpa, 4).ok()?;
        // SAFETY: `off + 4 <= size` (checked), the mapping is page aligned so `off` 4-byte
        // aligned means the address is too; the reference lives as long as `&self` (the
        // mapping); an `AtomicU32` is valid for any bit pattern, and every access through it
        // is atomic, so concurrent writes by other processes are sound.
        Some(unsafe { &*self.shm.as_ptr().add(off).cast::<AtomicU32>() })
    }

    /// The [`UserGrant`](pvmux_hypercalls::user::grant::UserGrant) page at `gpa`; `None`
    /// unless `gpa` is page aligned and the page lies in guest memory. Every field is an
    /// atomic the guest writes: treat whatever is loaded as untrusted.
    pub(crate) fn user_grant(&self, gpa: u64) -> Option<&pvmux_hypercalls::user::grant::UserGrant> {
        use pvmux_hypercalls::user::grant::UserGrant;
        if !gpa.is_multiple_of(pvmux_hypercalls::PAGE_SIZE) {
            return None;
        }
        let off = self.check_range(gpa, size_of::<UserGrant>() as u64).ok()?;
        // SAFETY: the page lies in the mapping (checked), which is page aligned, so the
        // address is aligned for `UserGrant` (align 8); the reference lives as long as
        // `&self`; `UserGrant` is atomics only, valid for any bit pattern, and every access
        // through it is atomic, so concurrent writes by other processes are sound.
        Some(unsafe { &*self.shm.as_ptr().add(off).cast::<UserGrant>() })
    }

    /// Reads a little-endian `u32` at `gpa`.
    pub fn read_u32(&self, gpa: u64) -> Result<u32, MemoryError> {
        let mut b = [0; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert!(validate_mem_size(16 << 20).is_ok());
        assert!(validate_mem_size(0).is_err());
        assert!(validate_mem_size(14 << 20).is_err());
        assert!(validate_mem_size((16 << 20) + 4096).is_err());
        assert!(validate_mem_size(MAX_GUEST_MEM + MEM_SIZE_ALIGN).is_err());
        assert!(GuestMemory::new(17 << 20).is_err());
    }

    #[test]
    fn bounds() {
        let m = GuestMemory::new(16 << 20).unwrap();
        let size = m.size();
        m.write_u64(0, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(m.read_u64(0).unwrap(), 0x1122_3344_5566_7788);
        assert_eq!(m.read_u32(4).unwrap(), 0x1122_3344);
        m.write_u64(size - 8, 7).unwrap();
        assert_eq!(m.read_u64(size - 8).unwrap(), 7);
        assert!(m.read_u64(size - 7).is_err());
        assert!(m.read_u64(size).is_err());
        assert!(m.read_u64(u64::MAX).is_err());
        assert!(m.read_u64(u64::MAX - 3).is_err());
        assert!(m.write(size, &[]).is_ok());
        assert!(m.write(size + 1, &[]).is_err());
        assert!(m.check_range(1, u64::MAX).is_err());
        assert!(m.check_range(u64::MAX, 1).is_err());
        assert!(m.zero(0, size).is_ok());
        assert!(m.zero(1, size).is_err());
        assert_eq!(m.read_u64(0).unwrap(), 0);
        assert!(m.read_vec(size - 1, 2).is_err());
        assert_eq!(m.read_vec(size - 2, 2).unwrap(), vec![0, 0]);
    }

    #[test]
    fn reads_take_the_images_bytes_in_its_runs_and_the_memfds_elsewhere() {
        let m = GuestMemory::new(16 << 20).unwrap();
        m.write(0, &vec![0xaa; 0x40000]).unwrap();
        let elf: &'static [u8] = Box::leak((0..0x4000u32).map(|i| i as u8).collect());
        let file = Arc::new(ImageFile {
            file: std::fs::File::open("/proc/self/exe").unwrap(),
            offset: 0,
        });
        let runs = vec![(0x10000, 0x2000, 0x1000), (0x30000, 0x1000, 0x3000)];
        let shared = SharedImage::new(file, elf, runs).unwrap();
        assert_eq!(shared.span(), 0x10 << 32 | 0x31);
        m.set_shared_image(Some(Arc::new(shared)));
        let read = |gpa, len| m.read_vec(gpa, len).unwrap();
        // Inside a run: the image's bytes.
        assert_eq!(read(0x10010, 4), elf[0x1010..0x1014]);
        assert_eq!(read(0x30ffe, 2), elf[0x3ffe..0x4000]);
        // Outside the span, and between the runs inside it: the memfd's.
        assert_eq!(read(0x8000, 4), [0xaa; 4]);
        assert_eq!(read(0x31000, 4), [0xaa; 4]);
        assert_eq!(read(0x20000, 4), [0xaa; 4]);
        // Across a run's start and its end.
        let mut want = vec![0xaa; 2];
        want.extend_from_slice(&elf[0x1000..0x1002]);
        assert_eq!(read(0xfffe, 4), want);
        assert_eq!(read(0xffff, 2), [0xaa, elf[0x1000]]);
        let mut want = elf[0x2ffe..0x3000].to_vec();
        want.extend_from_slice(&[0xaa; 2]);
        assert_eq!(read(0x11ffe, 4), want);
        // Cleared (a hand-over to an image without shared pages): the memfd's everywhere.
        m.set_shared_image(None);
        assert_eq!(read(0x10010, 4), [0xaa; 4]);
    }

    #[test]
    fn atomic_words() {
        use std::sync::atomic::Ordering::SeqCst;
        let m = GuestMemory::new(16 << 20).unwrap();
        let size = m.size();
        m.atomic_u32(0x100).unwrap().store(0xdead_beef, SeqCst);
        assert_eq!(m.read_u32(0x100).unwrap(), 0xdead_beef);
        assert!(m.atomic_u32(size - 4).is_some());
        for bad in [0x102, size, size - 2, u64::MAX - 3, u64::MAX] {
            assert!(m.atomic_u32(bad).is_none(), "{bad:#x}");
        }
    }
}
