//! User-pool memory, accessed only by copying: the framework's one door to the bytes of the
//! frames user programs can map (user pages, program images, context regions).
//!
//! docs/SECURITY.md: a hostile guest program can map *any* page of its tenant's user pool
//! through the stub's `mmap`, and write it while the kernel works on it. So the kernel never
//! forms a Rust reference (`&[u8]`, `&T`) over pool memory: that would promise the compiler
//! the bytes cannot change, which a program can break at will. Every access here is a copy
//! done by `rep movsb`/`rep stosb` in inline assembly, which the compiler treats as opaque
//! (like a volatile access: each byte is read or written exactly once, and the result is
//! whatever memory held — at worst garbage the caller must validate, never undefined
//! behaviour). The one exception is words both sides use as atomics (the hand-off words of a
//! context slot, [`atomic_u32`], [`atomic_u64`]): a shared `AtomicU32` is what they are, and
//! any value a program writes there is a valid one. Kernel data structures never live in the
//! pool (`linux/pool.rs`), and the direct map keeps all of it mapped for the kernel's
//! lifetime, so a write here cannot corrupt the kernel and an access cannot fault: these
//! functions are safe.
//!
//! Every range is checked against the pool (set once by [`init`]); a range outside it is a
//! kernel bug and panics. The one exception: a host file window's pages
//! (`pvmux_hypercalls::window`), which user pages may be and which are not in guest memory,
//! are *read* ([`read`], [`copy`]'s source) through the host (`WindowRead`), zeros past the
//! file's end; they are never written.
//!
//! In host unit tests (`cfg(test)`) the pool is ordinary heap memory standing in for the
//! direct map, so the code above it (the pool allocator, the address-space bookkeeping) runs
//! unchanged.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use pvmux_hypercalls::{window, PAGE_SIZE};

/// First guest-physical address of the pool (0: no pool yet).
static BASE: AtomicU64 = AtomicU64::new(0);
/// Length of the pool in bytes.
static LEN: AtomicU64 = AtomicU64::new(0);

/// Declares `[base, base + len)` (page aligned, inside guest memory) the user pool. Called
/// once by the pool allocator when it takes over the region.
pub(crate) fn init(base: u64, len: u64) {
    assert!(
        base.is_multiple_of(PAGE_SIZE) && len.is_multiple_of(PAGE_SIZE) && base > 0,
        "user pool {base:#x}+{len:#x} is not page aligned"
    );
    let end = base.checked_add(len).expect("user pool overflows");
    backing::init(end, len);
    LEN.store(len, Ordering::Relaxed);
    BASE.store(base, Ordering::Release);
}

/// Whether `[gpa, gpa + len)` lies inside the pool.
pub(crate) fn contains(gpa: u64, len: u64) -> bool {
    let base = BASE.load(Ordering::Acquire);
    let pool_len = LEN.load(Ordering::Relaxed);
    base != 0 && gpa >= base && len <= pool_len && gpa - base <= pool_len - len
}

/// Kernel address of `[gpa, gpa + len)`, which must lie inside the pool.
fn checked(gpa: u64, len: usize) -> usize {
    assert!(
        contains(gpa, len as u64),
        "{gpa:#x}+{len:#x} is not user-pool memory (pool {:#x}+{:#x})",
        BASE.load(Ordering::Relaxed),
        LEN.load(Ordering::Relaxed)
    );
    backing::address(gpa - BASE.load(Ordering::Relaxed), gpa)
}

/// Copies `buf.len()` bytes from pool address `gpa` (or a window's) into `buf`.
pub(crate) fn read(gpa: u64, buf: &mut [u8]) {
    if buf.is_empty() {
        return;
    }
    if let Some((slot, off)) = window::range_of(gpa, buf.len() as u64) {
        read_window(slot, off, buf);
        return;
    }
    let src = checked(gpa, buf.len());
    // An aligned word (the fields of a context slot): one volatile load, which is opaque to
    // the compiler like the string copy, and cheaper for a single word.
    match buf.len() {
        4 if src.is_multiple_of(4) => {
            // SAFETY: 4 aligned bytes of the pool (checked); any value is a valid u32.
            let v = unsafe { (src as *const u32).read_volatile() };
            buf.copy_from_slice(&v.to_ne_bytes());
        }
        8 if src.is_multiple_of(8) => {
            // SAFETY: as above, 8 aligned bytes.
            let v = unsafe { (src as *const u64).read_volatile() };
            buf.copy_from_slice(&v.to_ne_bytes());
        }
        n => {
            // SAFETY: `src` is the kernel address of `n` bytes of the pool (checked), all
            // mapped read-write; `buf` is exclusively ours. The copy never forms a reference
            // to pool memory (see the module documentation).
            unsafe { copy_bytes(buf.as_mut_ptr(), src as *const u8, n) }
        }
    }
}

/// Copies `data` to pool address `gpa`.
pub(crate) fn write(gpa: u64, data: &[u8]) {
    let dst = checked(gpa, data.len());
    match *data {
        [a, b, c, d] if dst.is_multiple_of(4) => {
            // SAFETY: 4 aligned bytes of the pool (checked); the pool holds no kernel data,
            // so writing it cannot break any Rust invariant.
            unsafe { (dst as *mut u32).write_volatile(u32::from_ne_bytes([a, b, c, d])) }
        }
        [a, b, c, d, e, f, g, h] if dst.is_multiple_of(8) => {
            let v = u64::from_ne_bytes([a, b, c, d, e, f, g, h]);
            // SAFETY: as above, 8 aligned bytes.
            unsafe { (dst as *mut u64).write_volatile(v) }
        }
        _ => {
            // SAFETY: `dst` is the kernel address of `data.len()` bytes of the pool
            // (checked); see above.
            unsafe { copy_bytes(dst as *mut u8, data.as_ptr(), data.len()) }
        }
    }
}

/// Copies `data` to pool address `gpa`, for frames the kernel has not touched since they
/// were taken (a program image's new frames): through the guest memfd, where a page the
/// kernel sandbox never mapped costs no host page fault and no host page-table entry — on
/// a nested host a fault costs more than the page's copy, and writing through the mapping
/// faults twice (the sandbox's access, then the user sandbox's). Less than a page, or what
/// the memfd write did not take, is copied as [`write`] does.
pub(crate) fn write_new(gpa: u64, data: &[u8]) {
    checked(gpa, data.len());
    let done = if data.len() >= PAGE_SIZE as usize {
        backing::memfd_write(gpa, data)
    } else {
        0
    };
    if done < data.len() {
        write(gpa + done as u64, &data[done..]);
    }
}

/// Sets `len` bytes at pool address `gpa` to zero.
pub(crate) fn zero(gpa: u64, len: usize) {
    let dst = checked(gpa, len);
    // SAFETY: as in `write`.
    unsafe { fill_bytes(dst as *mut u8, 0, len) }
}

/// Copies `len` bytes from pool address `src` (or a window's) to pool address `dst` (the
/// ranges must not overlap).
pub(crate) fn copy(dst: u64, src: u64, len: usize) {
    if let Some((slot, off)) = window::range_of(src, len as u64) {
        checked(dst, len);
        let n = backing::window_read(slot, off, dst, len as u64) as usize;
        if n < len {
            zero(dst + n as u64, len - n);
        }
        return;
    }
    let (d, s) = (checked(dst, len), checked(src, len));
    assert!(
        d + len <= s || s + len <= d,
        "overlapping pool copy {dst:#x} <- {src:#x} ({len:#x} bytes)"
    );
    // SAFETY: both ranges are pool memory (checked) and do not overlap; see `write`.
    unsafe { copy_bytes(d as *mut u8, s as *const u8, len) }
}

/// Copies whole pages, `(to, from)` each as [`copy`]: a run of pages whose frames follow
/// each other on both sides is one copy (for a window's pages, one host read).
pub(crate) fn copy_pages(pages: &[(u64, u64)]) {
    let mut i = 0;
    while i < pages.len() {
        let (dst, src) = pages[i];
        let mut n = 1;
        while let Some(&(d, s)) = pages.get(i + n) {
            let by = n as u64 * PAGE_SIZE;
            let crosses_slot =
                window::slot_of(src).is_some() && window::range_of(src, by + PAGE_SIZE).is_none();
            if d != dst + by || s != src + by || crosses_slot {
                break;
            }
            n += 1;
        }
        copy(dst, src, n * PAGE_SIZE as usize);
        i += n;
    }
}

/// [`read`] of a window's bytes: straight into `buf` where the host can reach it (the kernel
/// heap is in the direct map), else through a heap buffer; zeros past the file's end.
fn read_window(slot: u32, off: u64, buf: &mut [u8]) {
    // Small reads (a system call's string or struct in a program's read-only data) come a
    // page at a time through a few recently read pages: a host call each otherwise.
    if buf.len() <= SMALL_READ && off % PAGE_SIZE + buf.len() as u64 <= PAGE_SIZE {
        let page = window::gpa(slot, off - off % PAGE_SIZE);
        let at = (off % PAGE_SIZE) as usize;
        let mut recent = RECENT.lock();
        if let Some(i) = recent.iter().position(|(g, _)| *g == page) {
            let (g, bytes) = recent.remove(i);
            buf.copy_from_slice(&bytes[at..at + buf.len()]);
            recent.push((g, bytes));
            return;
        }
        drop(recent);
        let mut bytes = alloc::boxed::Box::new([0u8; PAGE_SIZE as usize]);
        read_window_direct(slot, off - off % PAGE_SIZE, &mut bytes[..]);
        buf.copy_from_slice(&bytes[at..at + buf.len()]);
        let mut recent = RECENT.lock();
        if recent.len() >= RECENT_PAGES {
            recent.remove(0);
        }
        recent.push((page, bytes));
        return;
    }
    read_window_direct(slot, off, buf);
}

/// Reads of window bytes at most this long go through [`RECENT`].
const SMALL_READ: usize = 1024;
/// Pages kept in [`RECENT`].
const RECENT_PAGES: usize = 16;
/// Window pages read lately for small reads, oldest first: a window's bytes never change
/// under the guest (its slot always names one version of one file).
static RECENT: crate::irq::IrqLock<
    alloc::vec::Vec<(u64, alloc::boxed::Box<[u8; PAGE_SIZE as usize]>)>,
> = crate::irq::IrqLock::new(alloc::vec::Vec::new());

/// [`read_window`] straight from the host.
fn read_window_direct(slot: u32, off: u64, buf: &mut [u8]) {
    let n = match backing::buffer_gpa(buf) {
        Some(g) => backing::window_read(slot, off, g, buf.len() as u64) as usize,
        None => {
            let mut bounce = alloc::vec![0u8; buf.len()];
            let n = match backing::buffer_gpa(&bounce) {
                Some(g) => backing::window_read(slot, off, g, buf.len() as u64) as usize,
                None => 0,
            };
            buf[..n].copy_from_slice(&bounce[..n]);
            bounce.clear();
            n
        }
    };
    let len = buf.len();
    buf[n.min(len)..].fill(0);
}

/// The 32-bit word at pool address `gpa` (4-byte aligned) as an atomic shared with the user
/// sandboxes that map it.
pub(crate) fn atomic_u32(gpa: u64) -> &'static AtomicU32 {
    assert!(gpa.is_multiple_of(4), "unaligned atomic at {gpa:#x}");
    let p = checked(gpa, 4);
    // SAFETY: 4 aligned bytes of the pool (checked), which stays mapped for the kernel's
    // lifetime and holds no Rust data; every bit pattern is a valid `AtomicU32`, and the
    // kernel only ever accesses such a word atomically (another process writing it
    // concurrently is what atomics are for).
    unsafe { &*(p as *const AtomicU32) }
}

/// The 64-bit word at pool address `gpa` (8-byte aligned) as a shared atomic (as
/// [`atomic_u32`]).
pub(crate) fn atomic_u64(gpa: u64) -> &'static AtomicU64 {
    assert!(gpa.is_multiple_of(8), "unaligned atomic at {gpa:#x}");
    let p = checked(gpa, 8);
    // SAFETY: as in `atomic_u32`, for 8 aligned bytes.
    unsafe { &*(p as *const AtomicU64) }
}

/// `rep movsb`: copies `n` bytes forward, opaque to the compiler.
///
/// # Safety
///
/// `src` must be readable and `dst` writable for `n` bytes; `dst` must not be memory the
/// kernel holds a Rust reference to (other than through these pointers).
unsafe fn copy_bytes(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: per the contract; `rep movsb` with the direction flag clear (the ABI keeps it
    // clear) touches exactly [src, src + n) and [dst, dst + n).
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        )
    }
}

/// `rep stosb`: sets `n` bytes to `byte`, opaque to the compiler.
///
/// # Safety
///
/// `dst` must be writable for `n` bytes and not memory the kernel holds a Rust reference to.
unsafe fn fill_bytes(dst: *mut u8, byte: u8, n: usize) {
    // SAFETY: per the contract; `rep stosb` touches exactly [dst, dst + n).
    unsafe {
        core::arch::asm!(
            "rep stosb",
            inout("rcx") n => _,
            inout("rdi") dst => _,
            in("al") byte,
            options(nostack, preserves_flags)
        )
    }
}

/// Where the pool's bytes are: the direct map.
#[cfg(not(test))]
mod backing {
    /// Checks that the pool ends inside guest memory.
    pub(super) fn init(end: u64, _len: u64) {
        assert!(
            end <= crate::boot::info().mem_size,
            "user pool ends past guest memory"
        );
    }

    /// The direct-map address of pool address `gpa` (`offset` bytes into the pool).
    pub(super) fn address(_offset: u64, gpa: u64) -> usize {
        crate::boot::phys_to_virt(gpa) as usize
    }

    /// Writes `data` at `gpa` through the guest memfd (the stub's `mem_write`): the bytes
    /// written.
    pub(super) fn memfd_write(gpa: u64, data: &[u8]) -> usize {
        usize::try_from(crate::stub::mem_write(gpa, data)).map_or(0, |n| n.min(data.len()))
    }

    /// Guest-physical address of kernel buffer `buf`, if the host can write it there.
    pub(super) fn buffer_gpa(buf: &[u8]) -> Option<u64> {
        crate::boot::virt_to_phys(buf.as_ptr() as u64, buf.len() as u64)
    }

    /// Reads up to `len` bytes of window `slot`'s file at `off` into guest memory at `gpa`
    /// (`WindowRead`, a call per `READ_MAX` bytes): the bytes read (short at the file's end,
    /// or 0 if the host refused: logged).
    pub(super) fn window_read(slot: u32, off: u64, gpa: u64, len: u64) -> u64 {
        let mut done = 0;
        while done < len {
            match crate::hcall::window_read(slot, off + done, gpa + done, len - done) {
                Ok(0) => break,
                Ok(n) if n <= len - done => done += n,
                r => {
                    crate::println!("pool_mem: reading window {slot} at {off:#x} failed: {r:?}");
                    break;
                }
            }
        }
        done
    }
}

/// Where the pool's bytes are in host unit tests: a heap buffer, allocated once.
#[cfg(test)]
mod backing {
    use core::sync::atomic::{AtomicUsize, Ordering};

    /// Address of the buffer (0: none yet).
    static BUF: AtomicUsize = AtomicUsize::new(0);

    /// Allocates the buffer standing in for the pool's `len` bytes (leaked: it lives as long
    /// as the test process).
    pub(super) fn init(_end: u64, len: u64) {
        let words = alloc::vec![0u64; (len / 8) as usize].leak();
        let prev = BUF.swap(words.as_mut_ptr() as usize, Ordering::AcqRel);
        assert_eq!(prev, 0, "the test pool is set up once");
    }

    /// The buffer address of the byte `offset` bytes into the pool.
    pub(super) fn address(offset: u64, _gpa: u64) -> usize {
        BUF.load(Ordering::Acquire) + offset as usize
    }

    /// No memfd here: nothing written (the caller copies).
    pub(super) fn memfd_write(_gpa: u64, _data: &[u8]) -> usize {
        0
    }

    /// No host here: no kernel buffer has a guest-physical address.
    pub(super) fn buffer_gpa(_buf: &[u8]) -> Option<u64> {
        None
    }

    /// No host here: windows read as empty.
    pub(super) fn window_read(_slot: u32, _off: u64, _gpa: u64, _len: u64) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::{copy_bytes, fill_bytes};
    use crate::linux::pool;
    use pvmux_hypercalls::PAGE_SIZE;

    /// Words and byte runs, aligned or not, go in and out unchanged; nothing around them
    /// moves; copies and atomics see the same bytes.
    #[test]
    fn reads_and_writes_of_every_shape_round_trip() {
        pool::init_for_tests();
        let a = pool::alloc_zeroed().unwrap();
        let b = pool::alloc_zeroed().unwrap();
        for (off, len) in [
            (0, 4),
            (8, 8),
            (3, 4),
            (5, 8),
            (16, 1),
            (32, 168),
            (100, 3000),
        ] {
            let data: alloc::vec::Vec<u8> = (0..len).map(|i| (i * 7 + off + 1) as u8).collect();
            super::write(a + off as u64, &data);
            let mut back = alloc::vec![0u8; len + 2];
            super::read(a + off as u64 - u64::from(off > 0), &mut back);
            let skip = usize::from(off > 0);
            assert_eq!(&back[skip..skip + len], &data[..], "({off}, {len})");
            assert_eq!(back[skip + len], 0, "({off}, {len}): the byte after");
            assert!(skip == 0 || back[0] == 0, "({off}, {len}): the byte before");
            super::copy(b, a, PAGE_SIZE as usize);
            let mut copied = alloc::vec![0u8; len];
            super::read(b + off as u64, &mut copied);
            assert_eq!(copied, data);
            super::zero(a, PAGE_SIZE as usize);
        }
        super::write(a + 8, &0x1122_3344_5566_7788u64.to_ne_bytes());
        assert_eq!(
            super::atomic_u64(a + 8).load(core::sync::atomic::Ordering::SeqCst),
            0x1122_3344_5566_7788
        );
        super::atomic_u32(a + 12).store(7, core::sync::atomic::Ordering::SeqCst);
        let mut w = [0u8; 4];
        super::read(a + 12, &mut w);
        assert_eq!(u32::from_ne_bytes(w), 7);
        pool::put(a);
        pool::put(b);
    }

    #[test]
    #[should_panic(expected = "is not user-pool memory")]
    fn an_access_outside_the_pool_is_a_kernel_bug() {
        pool::init_for_tests();
        super::read(pool::TEST_POOL_BASE - 8, &mut [0u8; 8]);
    }

    #[test]
    fn copy_and_fill_touch_exactly_their_range() {
        let src: [u8; 64] = core::array::from_fn(|i| i as u8 + 1);
        for (off, n) in [(0, 0), (0, 1), (3, 17), (1, 63), (0, 64)] {
            let mut dst = [0xAAu8; 80];
            // SAFETY: both buffers are ours and large enough.
            unsafe { copy_bytes(dst.as_mut_ptr().add(8), src.as_ptr().add(off), n) };
            assert!(dst[..8].iter().all(|&b| b == 0xAA));
            assert_eq!(&dst[8..8 + n], &src[off..off + n]);
            assert!(dst[8 + n..].iter().all(|&b| b == 0xAA));
            // SAFETY: as above.
            unsafe { fill_bytes(dst.as_mut_ptr().add(8), 0, n) };
            assert!(dst[8..8 + n].iter().all(|&b| b == 0));
            assert!(dst[8 + n..].iter().all(|&b| b == 0xAA));
        }
    }
}
