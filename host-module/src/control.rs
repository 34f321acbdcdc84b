//! The control region: the sandbox header page and one shared page per vCPU.

use std::mem::size_of;
use std::sync::atomic::{AtomicU32, AtomicU64};

use pvmux_hypercalls::layout::{ctl_size, CTL_HEADER_OFFSET, CTL_VCPU_OFFSET};
use pvmux_hypercalls::sandbox::{kind, SharedImageRange, MAX_SHARED_IMAGE_RANGES};
use pvmux_hypercalls::{SandboxHeader, VcpuShared, PAGE_SIZE};

use crate::shm::SharedMemfd;
use crate::HostError;

/// The values the host writes into the [`SandboxHeader`] before the sandbox starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderInit {
    /// Number of vCPUs.
    pub nr_vcpus: u32,
    /// Guest memory size.
    pub mem_size: u64,
    /// Entry point.
    pub entry_rip: u64,
    /// Initial stack pointer.
    pub entry_rsp: u64,
    /// Initial `rdi` (boot info gva).
    pub entry_rdi: u64,
    /// Root page table gpa.
    pub page_table_root: u64,
    /// TSC at guest time 0.
    pub tsc_base: u64,
    /// CLOCK_MONOTONIC at guest time 0.
    pub mono_base_ns: u64,
    /// TSC-to-ns multiplier.
    pub clock_mult: u64,
    /// TSC-to-ns shift.
    pub clock_shift: u32,
    /// Fault-around default.
    pub fault_around_pages: u32,
    /// [`pvmux_hypercalls::sandbox::kind`] of the sandbox (0 = kernel sandbox).
    pub kind: u32,
    /// User sandboxes: first guest-physical byte of the user pool.
    pub user_pool_base: u64,
    /// User sandboxes: guest-physical address of the context region.
    pub user_ctx_gpa: u64,
    /// User sandboxes: length of the context region.
    pub user_ctx_len: u64,
    /// User sandboxes: guest-physical address of the space's grant page.
    pub user_grant_gpa: u64,
    /// Kernel sandboxes: [`pvmux_hypercalls::sandbox::user_isolation`] (the trusted
    /// in-process mode or not).
    pub user_isolation: u32,
    /// User sandboxes: the tenant has host file windows ([`SandboxHeader::windows`]).
    pub windows: bool,
    /// Kernel sandboxes: the entry, root and clock fields come later
    /// (`ControlRegion::release_entry`); the stub waits for them
    /// ([`SandboxHeader::entry_held`]).
    pub entry_held: bool,
    /// Kernel sandboxes: the kernel image's pages mapped from its file
    /// ([`SandboxHeader::shared_image`]; with the entry fields).
    pub shared_image: [SharedImageRange; MAX_SHARED_IMAGE_RANGES],
}

/// A sandbox's control memfd, mapped into the host.
#[derive(Debug)]
pub struct ControlRegion {
    shm: SharedMemfd,
    nr_vcpus: u32,
    /// vCPU pages in the region: `nr_vcpus` for a kernel sandbox, 0 for a user sandbox.
    vcpu_pages: u32,
}

impl ControlRegion {
    /// Creates the control memfd and writes the header: for a kernel sandbox the header page
    /// plus one `VcpuShared` page per vCPU, for a user sandbox ([`kind::USER`]) the header
    /// page alone.
    pub fn new(init: &HeaderInit) -> Result<Self, HostError> {
        let (name, vcpu_pages) = if init.kind == kind::USER {
            ("pvmux-uctl", 0)
        } else {
            ("pvmux-ctl", init.nr_vcpus)
        };
        let shm = SharedMemfd::new(name, ctl_size(vcpu_pages))?;
        let header = Self::header(init);
        const _: () = assert!(size_of::<SandboxHeader>() as u64 <= PAGE_SIZE);
        // SAFETY: page 0 of a fresh, page-aligned mapping of at least one page that no other
        // process has mapped yet; `SandboxHeader` (192 bytes, align 8) fits.
        unsafe {
            shm.as_ptr()
                .add(CTL_HEADER_OFFSET as usize)
                .cast::<SandboxHeader>()
                .write(header);
        }
        Ok(Self {
            shm,
            nr_vcpus: init.nr_vcpus,
            vcpu_pages,
        })
    }

    /// Makes the region as [`ControlRegion::new`] made it, for a new kernel sandbox of the
    /// same tenant (a kernel hand-over): the header of `init` (same vCPU count) and zeroed
    /// vCPU pages. Only once the sandbox that mapped it is gone and no host thread serves its
    /// vCPUs; other host threads may still read the header's and vCPU pages' atomics, so
    /// every word is stored atomically.
    pub(crate) fn reset(&self, init: &HeaderInit) {
        debug_assert_eq!(init.nr_vcpus, self.nr_vcpus);
        // Other host threads may hold references to the header's atomics (a start-up
        // waiter): every word is stored atomically.
        self.store_header_words(init, 0..size_of::<SandboxHeader>());
        let vcpu_bytes = self.vcpu_pages as usize * PAGE_SIZE as usize;
        debug_assert!(CTL_VCPU_OFFSET as usize + vcpu_bytes <= self.shm.len());
        for off in (0..vcpu_bytes).step_by(8) {
            self.store_word(CTL_VCPU_OFFSET as usize + off, 0);
        }
    }

    /// Writes the fields a domain build gives — the entry point, stack and argument, the
    /// page-table root and the clock, from `init` — into a header made with
    /// [`HeaderInit::entry_held`], then clears `entry_held` and wakes the stub waiting on it.
    /// The sandbox may already run: every word is stored atomically.
    pub(crate) fn release_entry(&self, init: &HeaderInit) {
        use std::mem::offset_of;
        // `entry_rip` .. `fault_around_pages` and `shared_image`: host fields, 8-byte words;
        // the stub reads `[entry_rip, clock_shift]` and `shared_image` only after
        // `entry_held` is 0.
        self.store_header_words(
            init,
            offset_of!(SandboxHeader, entry_rip)..offset_of!(SandboxHeader, stub_status),
        );
        self.store_header_words(
            init,
            offset_of!(SandboxHeader, shared_image)..size_of::<SandboxHeader>(),
        );
        let held = self.header_u32(offset_of!(SandboxHeader, entry_held));
        held.store(0, std::sync::atomic::Ordering::SeqCst);
        // A shared futex: the waiter is the sandbox process.
        let _ = rustix::thread::futex::wake(held, rustix::thread::futex::Flags::empty(), 1);
    }

    /// Stores the bytes `range` (8-byte aligned) of the header `init` describes, a word at a
    /// time, atomically. (`SandboxHeader` has no padding: it is `IntoBytes`.)
    fn store_header_words(&self, init: &HeaderInit, range: std::ops::Range<usize>) {
        let words = Self::header_words(init);
        for off in range.step_by(8) {
            self.store_word(CTL_HEADER_OFFSET as usize + off, words[off / 8]);
        }
    }

    /// The header `init` describes as 8-byte words, for stores a word at a time into a page
    /// the sandbox may already read (here, and a template's pages in `space::template`).
    pub(crate) fn header_words(init: &HeaderInit) -> [u64; size_of::<SandboxHeader>() / 8] {
        const _: () = assert!(size_of::<SandboxHeader>().is_multiple_of(8));
        let mut header = Self::header(init);
        // (Mutable only because the header's atomics make it not `Immutable`.)
        let bytes = zerocopy::IntoBytes::as_mut_bytes(&mut header);
        let mut words = [0u64; size_of::<SandboxHeader>() / 8];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *w = u64::from_ne_bytes(b);
        }
        words
    }

    /// Stores `v` atomically at byte `off` of the mapping (8-byte aligned, inside it).
    fn store_word(&self, off: usize, v: u64) {
        assert!(off.is_multiple_of(8) && off + 8 <= self.shm.len());
        // SAFETY: an 8-byte aligned word inside the mapping (checked above), which lives as
        // long as `&self`; other host threads may hold references to atomics there, so the
        // store is atomic and no other reference is formed.
        unsafe { &*self.shm.as_ptr().add(off).cast::<AtomicU64>() }
            .store(v, std::sync::atomic::Ordering::SeqCst);
    }

    fn header(init: &HeaderInit) -> SandboxHeader {
        let cpu = crate::cpu_features::get();
        SandboxHeader {
            magic: pvmux_hypercalls::ABI_MAGIC,
            abi_version: pvmux_hypercalls::ABI_VERSION,
            nr_vcpus: init.nr_vcpus,
            mem_size: init.mem_size,
            entry_rip: init.entry_rip,
            entry_rsp: init.entry_rsp,
            entry_rdi: init.entry_rdi,
            page_table_root: init.page_table_root,
            tsc_base: init.tsc_base,
            mono_base_ns: init.mono_base_ns,
            clock_mult: init.clock_mult,
            clock_shift: init.clock_shift,
            fault_around_pages: init.fault_around_pages,
            stub_status: AtomicU32::new(0),
            stub_step: AtomicU32::new(0),
            stub_error: AtomicU32::new(0),
            window_listener: AtomicU32::new(0),
            stub_table: AtomicU64::new(0),
            first_insn_tsc: AtomicU64::new(0),
            stub_start_tsc: AtomicU64::new(0),
            kind: init.kind,
            entry_held: AtomicU32::new(u32::from(init.entry_held)),
            user_pool_base: init.user_pool_base,
            user_ctx_gpa: init.user_ctx_gpa,
            user_ctx_len: init.user_ctx_len,
            user_grant_gpa: init.user_grant_gpa,
            user_isolation: init.user_isolation,
            windows: u32::from(init.windows),
            xsave_mask: cpu.xsave_mask,
            xsave_size: cpu.xsave_size,
            cpu_flags: cpu.flags,
            shared_image: init.shared_image,
        }
    }

    /// Number of vCPUs of the tenant (of vCPU pages, for a kernel sandbox's region).
    pub fn nr_vcpus(&self) -> u32 {
        self.nr_vcpus
    }

    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        self.shm.raw_fd()
    }

    /// vCPU `i`'s shared page, `None` if out of range. Every field is an atomic, so a
    /// reference into memory the sandbox writes concurrently is sound.
    pub fn vcpu(&self, i: u32) -> Option<&VcpuShared> {
        if i >= self.vcpu_pages {
            return None;
        }
        let off = CTL_VCPU_OFFSET + u64::from(i) * PAGE_SIZE;
        debug_assert!(off + PAGE_SIZE <= self.shm.len() as u64);
        // SAFETY: the page lies inside the mapping (i < vcpu_pages, the region has
        // ctl_size(vcpu_pages) bytes), is page aligned, and lives as long as `&self`.
        // `VcpuShared` is all atomics plus private padding the host never reads, valid for any
        // bit pattern (FromBytes).
        Some(unsafe { &*self.shm.as_ptr().add(off as usize).cast::<VcpuShared>() })
    }

    fn header_u32(&self, field_offset: usize) -> &AtomicU32 {
        // SAFETY: `field_offset` is the offset of an AtomicU32 field of the header, inside
        // page 0 of the mapping, 4-byte aligned; the reference lives as long as `&self`.
        unsafe { &*self.shm.as_ptr().add(field_offset).cast::<AtomicU32>() }
    }

    fn header_u64(&self, field_offset: usize) -> &AtomicU64 {
        // SAFETY: as in `header_u32`, for an 8-byte aligned AtomicU64 field.
        unsafe { &*self.shm.as_ptr().add(field_offset).cast::<AtomicU64>() }
    }

    /// Stub start-up status (untrusted).
    pub fn stub_status(&self) -> &AtomicU32 {
        self.header_u32(std::mem::offset_of!(SandboxHeader, stub_status))
    }

    /// Failed start-up step (untrusted).
    pub fn stub_step(&self) -> &AtomicU32 {
        self.header_u32(std::mem::offset_of!(SandboxHeader, stub_step))
    }

    /// errno of the failed start-up step (untrusted).
    pub fn stub_error(&self) -> &AtomicU32 {
        self.header_u32(std::mem::offset_of!(SandboxHeader, stub_error))
    }

    /// TSC when the stub started (untrusted).
    pub fn stub_start_tsc(&self) -> &AtomicU64 {
        self.header_u64(std::mem::offset_of!(SandboxHeader, stub_start_tsc))
    }

    /// TSC at the first guest instruction (untrusted).
    pub fn first_insn_tsc(&self) -> &AtomicU64 {
        self.header_u64(std::mem::offset_of!(SandboxHeader, first_insn_tsc))
    }

    /// Copies the header bytes out (for tests and diagnostics).
    pub fn header_bytes(&self) -> [u8; size_of::<SandboxHeader>()] {
        let mut b = [0; size_of::<SandboxHeader>()];
        // SAFETY: page 0 of the mapping holds at least 128 bytes; bytewise copy, no reference.
        unsafe { std::ptr::copy_nonoverlapping(self.shm.as_ptr(), b.as_mut_ptr(), b.len()) };
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn header_and_vcpus() {
        let init = HeaderInit {
            nr_vcpus: 3,
            mem_size: 16 << 20,
            entry_rip: 0x1234,
            clock_shift: 32,
            fault_around_pages: 16,
            ..Default::default()
        };
        let c = ControlRegion::new(&init).unwrap();
        let b = c.header_bytes();
        assert_eq!(&b[0..8], b"PVMUXABI");
        assert_eq!(
            u32::from_le_bytes(b[8..12].try_into().unwrap()),
            pvmux_hypercalls::ABI_VERSION
        );
        assert_eq!(
            u32::from_le_bytes(b[128..132].try_into().unwrap()),
            kind::KERNEL
        );
        assert_eq!(u32::from_le_bytes(b[12..16].try_into().unwrap()), 3);
        assert_eq!(u64::from_le_bytes(b[24..32].try_into().unwrap()), 0x1234);
        assert!(c.vcpu(2).is_some());
        assert!(c.vcpu(3).is_none());
        c.vcpu(2).unwrap().hc_req.store(5, Relaxed);
        assert_eq!(c.vcpu(2).unwrap().hc_req.load(Relaxed), 5);
        assert_eq!(c.stub_status().load(Relaxed), 0);
    }

    #[test]
    fn a_reset_region_is_as_new_for_the_next_kernel() {
        let init = HeaderInit {
            nr_vcpus: 2,
            mem_size: 16 << 20,
            entry_rip: 0x1234,
            ..Default::default()
        };
        let c = ControlRegion::new(&init).unwrap();
        c.stub_status().store(2, Relaxed);
        c.vcpu(1).unwrap().pending.store(0x10, Relaxed);
        c.vcpu(0).unwrap().hc_req.store(7, Relaxed);
        let next = HeaderInit {
            entry_rip: 0x5678,
            ..init
        };
        c.reset(&next);
        assert_eq!(
            c.header_bytes(),
            ControlRegion::new(&next).unwrap().header_bytes()
        );
        assert_eq!(c.stub_status().load(Relaxed), 0);
        assert_eq!(c.vcpu(1).unwrap().pending.load(Relaxed), 0);
        assert_eq!(c.vcpu(0).unwrap().hc_req.load(Relaxed), 0);
    }

    #[test]
    fn user_header_is_one_page_without_vcpu_pages() {
        let init = HeaderInit {
            nr_vcpus: 2,
            mem_size: 32 << 20,
            kind: kind::USER,
            user_pool_base: 16 << 20,
            user_ctx_gpa: 0x0123_4000,
            user_ctx_len: pvmux_hypercalls::user::user_ctx_size(2),
            ..Default::default()
        };
        let c = ControlRegion::new(&init).unwrap();
        assert_eq!(c.shm.len() as u64, PAGE_SIZE);
        assert!(c.vcpu(0).is_none());
        assert_eq!(c.nr_vcpus(), 2);
        let b = c.header_bytes();
        let word = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        assert_eq!(
            u32::from_le_bytes(b[128..132].try_into().unwrap()),
            kind::USER
        );
        assert_eq!(word(136), 16 << 20);
        assert_eq!(word(144), 0x0123_4000);
        assert_eq!(word(152), PAGE_SIZE + 2 * 4 * PAGE_SIZE);
        assert_eq!(word(16), 32 << 20);
    }
}
