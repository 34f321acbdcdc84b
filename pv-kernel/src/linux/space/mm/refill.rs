//! Pages of a private file mapping that the map does not hold, filled from the file at their
//! first touch, as Linux's page fault reads a file mapping's page.
//!
//! `mmap` fills a private mapping of a file at once (`linux/memory.rs`), so a page of it is
//! missing only when something left it so: `mremap` grew the mapping (in place or moved),
//! `madvise(MADV_DONTNEED)` dropped a private copy, or the page lay past the file's end at
//! the `mmap` and the file has grown since. Each of these must show the file's bytes, not
//! zeros. A page wholly past the file's end is `SIGBUS` before it gets here
//! (`linux/fault.rs`); one the kernel itself touches there stays demand-zero.
//!
//! Where the bytes come from follows `mmap`'s rules: the page cache's frame copy-on-write
//! for data, a private copy read from the host itself for code and for host ELF files (the
//! regions with a program image, see `linux/imagecache.rs`) — never a page-cache frame that a
//! program could have written.

use alloc::vec::Vec;

use pvmux_hypercalls::user::prot;
use pvmux_hypercalls::PAGE_SIZE;

use super::{Mm, Vma};
use crate::linux::Errno;
use crate::mm::pool_mem;

impl Mm {
    /// For a first touch of `page` in `vma` (starting at `vstart`), which the map does not
    /// hold and no program image provides: if the region is a private `mmap` of a regular
    /// file and the page starts inside the file, the page with the file's bytes (mapped,
    /// copy-on-write where it is the page cache's frame) and its frame; `None` for the
    /// caller's demand-zero (not a file mapping, a hole, past the end of the file, or a file
    /// gone with its last name and descriptor).
    pub(super) fn fill_from_file(
        &mut self,
        page: u64,
        vstart: u64,
        vma: &Vma,
    ) -> Result<Option<u64>, Errno> {
        let Some(f) = vma.file.as_ref().filter(|f| f.bus_past_eof) else {
            return Ok(None);
        };
        if vma.shm.is_some() {
            return Ok(None);
        }
        let (ino, fo) = (f.ino, f.offset.saturating_add(page - vstart));
        let code = vma.prot & prot::EXEC != 0 || f.image.is_some();
        if !code {
            match crate::fs::with(|fs| fs.file_frames(ino, fo / PAGE_SIZE, 1)) {
                Ok(Some(frames)) => {
                    let Some(&(_, gpa)) = frames.first() else {
                        return Ok(None); // a hole, or past the end
                    };
                    for &(_, extra) in &frames[1..] {
                        crate::linux::pool::put(extra);
                    }
                    self.install_cow(page, gpa);
                    return Ok(Some(gpa));
                }
                Ok(None) => {} // not in the page cache: copied below
                Err(Errno::ENOMEM) => return Err(Errno::ENOMEM),
                Err(_) => return Ok(None),
            }
        }
        let mut buf = Vec::new();
        buf.try_reserve_exact(PAGE_SIZE as usize)
            .map_err(|_| Errno::ENOMEM)?;
        buf.resize(PAGE_SIZE as usize, 0);
        let mut got = 0;
        while got < buf.len() {
            let at = fo + got as u64;
            let n = crate::fs::with(|fs| {
                if code {
                    fs.read_ino_uncached(ino, at, &mut buf[got..])
                } else {
                    fs.read_ino(ino, at, &mut buf[got..])
                }
            });
            match n {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(Errno::ENOMEM) => return Err(Errno::ENOMEM),
                Err(_) => break,
            }
        }
        if got == 0 {
            return Ok(None);
        }
        let gpa = super::alloc_reclaiming(crate::linux::pool::alloc_zeroed)?;
        pool_mem::write(gpa, &buf[..got]);
        self.install(page, gpa, false);
        Ok(Some(gpa))
    }
}
