//! End-to-end test of the stub's user-sandbox mode without a guest kernel: the test process
//! plays the guest kernel. It creates the guest memfd (32 MiB, user pool from 16 MiB) and a
//! one-page control memfd whose `SandboxHeader` says `kind::USER`, writes a context region
//! into the pool and a few snippets of x86 code into a pool page, starts the embedded stub
//! (`pvmux::images::STUB`) with fds 3 and 4, and drives slots with the spin-then-futex
//! protocol of `pvmux_hypercalls::user` on its own shared mapping of the memfd.

use std::mem::{offset_of, ManuallyDrop};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::ptr::{addr_of, addr_of_mut};
use std::sync::atomic::{AtomicU32, Ordering::*};
use std::time::{Duration, Instant};

use pvmux_hypercalls::sandbox::{kind, status, CTL_FD, GUEST_MEM_FD, STUB_EXIT_SETUP};
use pvmux_hypercalls::user::{
    command, op, prot, user_ctx_size, user_slot_offset, user_stat, UserExit, UserOp, UserSlot,
    USER_CTX_MAGIC, USER_FPSTATE_MAX,
};
use pvmux_hypercalls::{SandboxHeader, TrapFrame, ABI_MAGIC, ABI_VERSION, PAGE_SIZE};
use rustix::fs::{ftruncate, memfd_create, MemfdFlags};
use rustix::io::{dup2, fcntl_dupfd_cloexec, fcntl_setfd, FdFlags};
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};
use rustix::thread::futex;

const MEM: u64 = 32 << 20;
const POOL: u64 = 16 << 20;
const CTX: u64 = POOL;
const SLOTS: u32 = 2;
const CODE_GPA: u64 = POOL + (1 << 20);
const DATA_GPA: u64 = CODE_GPA + PAGE_SIZE;
const STACK_GPA: u64 = CODE_GPA + 2 * PAGE_SIZE;
const CODE: u64 = 0x40_0000;
const DATA: u64 = CODE + PAGE_SIZE;
const STACK: u64 = 0x7000_0000;
/// An address nothing maps.
const UNMAPPED: u64 = 0x5000_0000;
/// Where the stub's fd 5 (its own image, close-on-exec) is while it execs.
const STUB_EXEC_FD: i32 = 5;

/// The code page: snippet offset -> bytes (see each comment).
const SNIPPETS: &[(u64, &[u8])] = &[
    // mov eax, 39; syscall; mov rbx, rax; mov [rip + DATA - next], rbx; int3
    (
        0x00,
        &[
            0xb8, 0x27, 0, 0, 0, 0x0f, 0x05, 0x48, 0x89, 0xc3, 0x48, 0x89, 0x1d, 0xef, 0x0f, 0, 0,
            0xcc,
        ],
    ),
    // mov [rcx], rdx; int3
    (0x40, &[0x48, 0x89, 0x11, 0xcc]),
    // mov rax, fs:[0]; int3
    (0x80, &[0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0, 0xcc]),
    // 1: jmp 1b
    (0xc0, &[0xeb, 0xfe]),
    // movq rax, xmm0; movq xmm0, rbx; int3
    (
        0x100,
        &[
            0x66, 0x48, 0x0f, 0x7e, 0xc0, 0x66, 0x48, 0x0f, 0x6e, 0xc3, 0xcc,
        ],
    ),
    // push rbx; pop rdx; int3
    (0x140, &[0x53, 0x5a, 0xcc]),
    // int 0x80
    (0x180, &[0xcd, 0x80]),
    // ud2
    (0x1c0, &[0x0f, 0x0b]),
];
const AFTER_SYSCALL: u64 = CODE + 7;
const AFTER_STORE_INT3: u64 = CODE + 0x12;
const FAULT: u64 = CODE + 0x40;
const READ_FS: u64 = CODE + 0x80;
const SPIN: u64 = CODE + 0xc0;
const XMM: u64 = CODE + 0x100;
const PUSH_POP: u64 = CODE + 0x140;
const INT80: u64 = CODE + 0x180;
const UD2: u64 = CODE + 0x1c0;

const EINVAL: u32 = 22;
const SIGSYS: i32 = 31;

/// A shared read-write mapping of a whole memfd.
struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    fn new(fd: &OwnedFd, len: u64) -> Self {
        // SAFETY: a fresh shared mapping of the memfd, chosen by the kernel, unmapped on drop.
        let ptr = unsafe {
            mmap(
                std::ptr::null_mut(),
                len as usize,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }
        .expect("mmap memfd");
        Self {
            ptr: ptr.cast(),
            len: len as usize,
        }
    }

    fn at(&self, off: u64) -> *mut u8 {
        assert!((off as usize) < self.len);
        // SAFETY: inside the mapping (checked).
        unsafe { self.ptr.add(off as usize) }
    }

    fn write<T: Copy>(&self, off: u64, v: T) {
        assert!(off as usize + size_of::<T>() <= self.len);
        // SAFETY: inside the mapping (checked); unaligned write.
        unsafe { (self.at(off) as *mut T).write_unaligned(v) }
    }

    fn read<T: Copy>(&self, off: u64) -> T {
        assert!(off as usize + size_of::<T>() <= self.len);
        // SAFETY: inside the mapping (checked); any bit pattern of these integers is valid.
        unsafe { (self.at(off) as *const T).read_unaligned() }
    }

    fn atomic32(&self, off: u64) -> &AtomicU32 {
        assert!(off.is_multiple_of(4) && off as usize + 4 <= self.len);
        // SAFETY: aligned, inside the mapping, which lives as long as `self`.
        unsafe { &*(self.at(off) as *const AtomicU32) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; nothing refers to it any more.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

/// How a request ended.
#[derive(Debug)]
enum Outcome {
    /// The slot came back with this raw exit reason.
    Exit(u32),
    /// The sandbox process ended.
    Died(ExitStatus),
}

/// The "guest kernel": guest memory, the control page and one user sandbox.
struct Guest {
    mem: Map,
    ctl: Map,
    child: Child,
    _fds: [OwnedFd; 2],
}

/// What the test changes in the header/context before the stub starts.
#[derive(Clone, Copy, Default)]
struct Tweak {
    ctx_len_delta: u64,
    ctx_magic: Option<u64>,
}

impl Guest {
    fn start() -> Self {
        Self::start_with(Tweak::default())
    }

    fn start_with(t: Tweak) -> Self {
        let memfd = memfd_create("guest", MemfdFlags::CLOEXEC).expect("memfd");
        ftruncate(&memfd, MEM).expect("size memfd");
        let ctlfd = memfd_create("ctl", MemfdFlags::CLOEXEC).expect("memfd");
        ftruncate(&ctlfd, PAGE_SIZE).expect("size memfd");
        let mem = Map::new(&memfd, MEM);
        let ctl = Map::new(&ctlfd, PAGE_SIZE);

        ctl.write(offset_of!(SandboxHeader, magic) as u64, ABI_MAGIC);
        ctl.write(offset_of!(SandboxHeader, abi_version) as u64, ABI_VERSION);
        ctl.write(offset_of!(SandboxHeader, nr_vcpus) as u64, SLOTS);
        ctl.write(offset_of!(SandboxHeader, mem_size) as u64, MEM);
        ctl.write(offset_of!(SandboxHeader, kind) as u64, kind::USER);
        ctl.write(offset_of!(SandboxHeader, user_pool_base) as u64, POOL);
        ctl.write(offset_of!(SandboxHeader, user_ctx_gpa) as u64, CTX);
        ctl.write(
            offset_of!(SandboxHeader, user_ctx_len) as u64,
            user_ctx_size(SLOTS) + t.ctx_len_delta,
        );
        mem.write(CTX, t.ctx_magic.unwrap_or(USER_CTX_MAGIC));
        mem.write(CTX + 8, ABI_VERSION);
        mem.write(CTX + 12, SLOTS);
        for &(off, bytes) in SNIPPETS {
            for (i, b) in bytes.iter().enumerate() {
                mem.write(CODE_GPA + off + i as u64, *b);
            }
        }

        let stub = memfd_create("pvmux-stub", MemfdFlags::CLOEXEC).expect("memfd");
        rustix::io::write(&stub, pvmux::images::STUB).expect("write stub");
        // Out of the way of 3..=5, so the dup2s in the child cannot clobber them.
        let high = [&memfd, &ctlfd, &stub].map(|fd| fcntl_dupfd_cloexec(fd, 32).expect("dup"));
        let raw = [
            (high[0].as_raw_fd(), GUEST_MEM_FD),
            (high[1].as_raw_fd(), CTL_FD),
            (high[2].as_raw_fd(), STUB_EXEC_FD),
        ];
        let mut cmd = Command::new(format!("/proc/self/fd/{STUB_EXEC_FD}"));
        cmd.stdin(Stdio::null());
        // SAFETY: the closure makes only raw system calls (no allocation, no locks).
        unsafe {
            cmd.pre_exec(move || {
                for (from, to) in raw {
                    // SAFETY: `to` is a descriptor number dup2 (re)places; the OwnedFd is
                    // never dropped, so nothing else is closed.
                    let mut target = ManuallyDrop::new(OwnedFd::from_raw_fd(to));
                    dup2(BorrowedRaw(from), &mut target)?;
                }
                // SAFETY: fd 5 was just made above.
                let exe = ManuallyDrop::new(OwnedFd::from_raw_fd(STUB_EXEC_FD));
                fcntl_setfd(&*exe, FdFlags::CLOEXEC)?;
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn stub");
        drop(high);
        Guest {
            mem,
            ctl,
            child,
            _fds: [memfd, ctlfd],
        }
    }

    fn stub_status(&self) -> u32 {
        self.ctl
            .atomic32(offset_of!(SandboxHeader, stub_status) as u64)
            .load(SeqCst)
    }

    /// Waits for READY (panics on failure or timeout).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.stub_status() != status::READY {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "stub exited during start-up: {st:?}, step {}",
                    self.ctl
                        .read::<u32>(offset_of!(SandboxHeader, stub_step) as u64)
                );
            }
            assert!(Instant::now() < deadline, "stub not ready in time");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits for the process to end (at most 10 s).
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(Instant::now() < deadline, "stub did not exit");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn slot_off(i: u32) -> u64 {
        CTX + user_slot_offset(i)
    }

    fn slot(&self, i: u32) -> *mut UserSlot {
        self.mem.at(Self::slot_off(i)).cast()
    }

    fn word(&self, i: u32, field: usize) -> &AtomicU32 {
        self.mem.atomic32(Self::slot_off(i) + field as u64)
    }

    fn regs(&self, i: u32) -> TrapFrame {
        // SAFETY: the slot lies in the mapping.
        unsafe { addr_of!((*self.slot(i)).regs).read_volatile() }
    }

    fn set_regs(&self, i: u32, r: TrapFrame) {
        // SAFETY: the slot lies in the mapping.
        unsafe { addr_of_mut!((*self.slot(i)).regs).write_volatile(r) }
    }

    fn field<T: Copy>(&self, i: u32, off: usize) -> T {
        self.mem.read(Self::slot_off(i) + off as u64)
    }

    fn set_field<T: Copy>(&self, i: u32, off: usize, v: T) {
        self.mem.write(Self::slot_off(i) + off as u64, v)
    }

    fn stat(&self, i: u32, idx: usize) -> u64 {
        // SAFETY: the slot lies in the mapping; the counters are atomics.
        let stats = unsafe { &*addr_of!((*self.slot(i)).stats) };
        stats[idx].load(SeqCst)
    }

    /// Hands slot `i` a request and waits for it to come back, like the guest kernel does:
    /// bump `run_seq`, wake the user thread if it sleeps, spin briefly on `done_seq`, then
    /// announce `kernel_waiting` and sleep on it (10 ms at a time, checking the child).
    fn request(&mut self, i: u32, cmd: u32, ops: &[UserOp]) -> Outcome {
        for (k, o) in ops.iter().enumerate() {
            // SAFETY: the slot lies in the mapping; k < USER_OPS_MAX in these tests.
            unsafe { addr_of_mut!((*self.slot(i)).ops[k]).write_volatile(*o) };
        }
        self.set_field(i, offset_of!(UserSlot, nr_ops), ops.len() as u32);
        self.set_field(i, offset_of!(UserSlot, command), cmd);
        let run = self.word(i, offset_of!(UserSlot, run_seq));
        let seq = run.load(SeqCst).wrapping_add(1);
        run.store(seq, SeqCst);
        if self
            .word(i, offset_of!(UserSlot, user_waiting))
            .load(SeqCst)
            != 0
        {
            futex::wake(run, futex::Flags::empty(), u32::MAX).expect("futex wake");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let spin_until = Instant::now() + Duration::from_micros(50);
        loop {
            let done = self.word(i, offset_of!(UserSlot, done_seq));
            if done.load(SeqCst) == seq {
                return Outcome::Exit(self.field(i, offset_of!(UserSlot, exit_reason)));
            }
            if Instant::now() < spin_until {
                std::hint::spin_loop();
                continue;
            }
            let waiting = self.word(i, offset_of!(UserSlot, kernel_waiting));
            waiting.store(1, SeqCst);
            let seen = done.load(SeqCst);
            if seen != seq {
                let ts = futex::Timespec {
                    tv_sec: 0,
                    tv_nsec: 10_000_000,
                };
                let _ = futex::wait(done, futex::Flags::empty(), seen, Some(&ts));
            }
            waiting.store(0, SeqCst);
            if done.load(SeqCst) != seq {
                if let Some(st) = self.child.try_wait().expect("try_wait") {
                    return Outcome::Died(st);
                }
                assert!(Instant::now() < deadline, "slot {i} did not come back");
            }
        }
    }

    /// A RUN request that must come back with `want`.
    fn run(&mut self, i: u32, ops: &[UserOp], want: UserExit) -> TrapFrame {
        match self.request(i, command::RUN, ops) {
            Outcome::Exit(r) => assert_eq!(UserExit::from_raw(r), Some(want), "slot {i}"),
            Outcome::Died(st) => panic!("sandbox died: {st:?}"),
        }
        self.regs(i)
    }

    /// Sets rip (and optionally other registers) and runs until an exception of `vector`.
    fn run_at(
        &mut self,
        i: u32,
        rip: u64,
        f: impl FnOnce(&mut TrapFrame),
        vector: u32,
    ) -> TrapFrame {
        let mut r = self.regs(i);
        r.rip = rip;
        r.rsp = STACK + PAGE_SIZE - 64;
        f(&mut r);
        self.set_regs(i, r);
        let out = self.run(i, &[], UserExit::Exception);
        assert_eq!(self.exit_vector(i), vector, "exit vector at {rip:#x}");
        out
    }

    fn exit_vector(&self, i: u32) -> u32 {
        self.field(i, offset_of!(UserSlot, exit_vector))
    }

    fn exit_addr(&self, i: u32) -> u64 {
        self.field(i, offset_of!(UserSlot, exit_addr))
    }

    fn exit_error(&self, i: u32) -> u64 {
        self.field(i, offset_of!(UserSlot, exit_error_code))
    }

    fn map_program(&mut self, i: u32) {
        let ops = [
            map(CODE, CODE_GPA, prot::READ | prot::EXEC),
            map(DATA, DATA_GPA, prot::READ | prot::WRITE),
            map(STACK, STACK_GPA, prot::READ | prot::WRITE),
        ];
        let before = self.stat(i, user_stat::OPS);
        match self.request(i, command::OPS_ONLY, &ops) {
            Outcome::Exit(r) => assert_eq!(UserExit::from_raw(r), Some(UserExit::OpsDone)),
            Outcome::Died(st) => panic!("sandbox died: {st:?}"),
        }
        assert_eq!(self.stat(i, user_stat::OPS), before + 3);
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw fd to pass to rustix inside `pre_exec` (no OwnedFd to drop there).
struct BorrowedRaw(i32);

impl rustix::fd::AsFd for BorrowedRaw {
    fn as_fd(&self) -> rustix::fd::BorrowedFd<'_> {
        // SAFETY: the descriptor is open in the child for the duration of the pre_exec call.
        unsafe { rustix::fd::BorrowedFd::borrow_raw(self.0) }
    }
}

fn map(addr: u64, gpa: u64, prot: u32) -> UserOp {
    UserOp {
        kind: op::MAP,
        prot,
        addr,
        len: PAGE_SIZE,
        offset: gpa,
    }
}

#[test]
fn syscalls_faults_fs_and_fpu_round_trip() {
    let mut g = Guest::start();
    g.wait_ready();
    // UserCtxHeader::ready is at offset 16.
    assert_eq!(g.mem.atomic32(CTX + 16).load(SeqCst), 1, "ctx ready");
    // Let both threads go to sleep, so the first request exercises the futex wake.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        g.word(0, offset_of!(UserSlot, user_waiting)).load(SeqCst),
        1
    );
    g.map_program(0);
    assert!(g.stat(0, user_stat::SLEEPS) >= 1);

    // A system call: not executed, reported with its number and the IP after it.
    let mut r = TrapFrame {
        rip: CODE,
        rsp: STACK + PAGE_SIZE - 64,
        rflags: 0x202,
        ..Default::default()
    };
    g.set_regs(0, r);
    g.set_field(0, offset_of!(UserSlot, fp_init), 1u32);
    r = g.run(0, &[], UserExit::Syscall);
    assert_eq!(r.rax, 39);
    assert_eq!(r.rip, AFTER_SYSCALL);
    assert_eq!(g.exit_vector(0), 128);
    assert_eq!(g.exit_error(0), 39);
    assert_eq!(r.rsp, STACK + PAGE_SIZE - 64);
    g.set_field(0, offset_of!(UserSlot, fp_init), 0u32);

    // The "kernel" returns 1234: the code continues after the syscall, stores it, int3.
    r.rax = 1234;
    g.set_regs(0, r);
    let r = g.run(0, &[], UserExit::Exception);
    assert_eq!(g.exit_vector(0), 3);
    assert_eq!(r.rbx, 1234);
    assert_eq!(r.rip, AFTER_STORE_INT3);
    assert_eq!(
        g.mem.read::<u64>(DATA_GPA),
        1234,
        "the store reached guest memory"
    );
    assert_eq!(g.stat(0, user_stat::SYSCALLS), 1);

    // The stack page works (push/pop).
    let r = g.run_at(0, PUSH_POP, |r| r.rbx = 0x5555, 3);
    assert_eq!(r.rdx, 0x5555);

    // Page faults: unmapped (write, not present) and read-only (write, present).
    let r = g.run_at(0, FAULT, |r| (r.rcx, r.rdx) = (UNMAPPED + 0x18, 7), 14);
    assert_eq!(g.exit_addr(0), UNMAPPED + 0x18);
    assert_eq!(g.exit_error(0) & 3, 2, "write, not present");
    assert_eq!(r.rip, FAULT, "rip at the faulting instruction");
    g.run_at(0, FAULT, |r| r.rcx = CODE + 8, 14);
    assert_eq!(g.exit_addr(0), CODE + 8);
    // Present or not depends on whether the host populated the page-table entry (it did: the
    // page was executed from), as for any Linux process; the write bit is what counts.
    assert_eq!(g.exit_error(0) & 2, 2, "write");
    g.run_at(0, UD2, |_| {}, 6);

    // FS base: loaded before running, read back at the exit.
    g.mem.write(DATA_GPA + 0x100, 0x1122_3344_5566_7788u64);
    g.mem.write(DATA_GPA + 0x200, 0x99aa_bbcc_ddee_ff00u64);
    for (fs, want) in [
        (DATA + 0x100, 0x1122_3344_5566_7788u64),
        (DATA + 0x200, 0x99aa_bbcc_ddee_ff00),
        (DATA + 0x200, 0x99aa_bbcc_ddee_ff00),
    ] {
        g.set_field(0, offset_of!(UserSlot, fs_base), fs);
        let r = g.run_at(0, READ_FS, |_| {}, 3);
        assert_eq!(r.rax, want, "fs:[0] with fs = {fs:#x}");
        assert_eq!(g.field::<u64>(0, offset_of!(UserSlot, fs_base)), fs);
    }

    // FPU: a fresh state has xmm0 = 0; the saved image carries xmm0 to a later run.
    g.set_field(0, offset_of!(UserSlot, fp_init), 1u32);
    let r = g.run_at(0, XMM, |r| r.rbx = 0xdead_beef, 3);
    assert_eq!(r.rax, 0, "xmm0 after fp_init");
    let saved: u32 = g.field(0, offset_of!(UserSlot, fp_saved_len));
    assert!((512..=USER_FPSTATE_MAX as u32).contains(&saved), "{saved}");
    let fp = Guest::slot_off(0) + offset_of!(UserSlot, fpstate) as u64;
    assert_eq!(
        g.mem.read::<u64>(fp + 160),
        0xdead_beef,
        "xmm0 in the saved image"
    );
    let image: Vec<u8> = (0..u64::from(saved)).map(|k| g.mem.read(fp + k)).collect();
    // Without fp_len the thread keeps its state; fp_init resets it.
    g.set_field(0, offset_of!(UserSlot, fp_init), 0u32);
    let r = g.run_at(0, XMM, |r| r.rbx = 1, 3);
    assert_eq!(r.rax, 0xdead_beef, "state kept");
    g.set_field(0, offset_of!(UserSlot, fp_init), 1u32);
    let r = g.run_at(0, XMM, |r| r.rbx = 2, 3);
    assert_eq!(r.rax, 0, "state reset");
    // Loading the image restores xmm0 = 0xdeadbeef.
    for (k, b) in image.iter().enumerate() {
        g.mem.write(fp + k as u64, *b);
    }
    g.set_field(0, offset_of!(UserSlot, fp_init), 0u32);
    g.set_field(0, offset_of!(UserSlot, fp_len), saved);
    let r = g.run_at(0, XMM, |r| r.rbx = 3, 3);
    assert_eq!(r.rax, 0xdead_beef, "state loaded from fpstate");
    g.set_field(0, offset_of!(UserSlot, fp_len), 0u32);
    assert!(g.stat(0, user_stat::EXCEPTIONS) >= 10);
}

#[test]
fn slice_timer_interrupts_a_spinning_thread_on_another_slot() {
    let mut g = Guest::start();
    g.wait_ready();
    g.map_program(1);
    g.set_regs(
        1,
        TrapFrame {
            rip: SPIN,
            rsp: STACK + PAGE_SIZE,
            ..Default::default()
        },
    );
    g.set_field(1, offset_of!(UserSlot, slice_ns), 20_000_000u64);
    let t = Instant::now();
    let r = g.run(1, &[], UserExit::Interrupt);
    assert!(
        t.elapsed() >= Duration::from_millis(15),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.rip, SPIN);
    assert_eq!(g.stat(1, user_stat::INTERRUPTS), 1);
    // A slice that ends while the slot is away (here: after a ud2 came back) is reported at
    // the next run if the slice is left as it is (slice_ns = 0)...
    let away = |g: &mut Guest| {
        g.set_field(1, offset_of!(UserSlot, slice_ns), 5_000_000u64);
        g.run_at(1, UD2, |_| {}, 6);
        std::thread::sleep(Duration::from_millis(30));
    };
    away(&mut g);
    g.set_field(1, offset_of!(UserSlot, slice_ns), 0u64);
    let mut r = g.regs(1);
    r.rip = SPIN;
    g.set_regs(1, r);
    g.run(1, &[], UserExit::Interrupt);
    assert_eq!(g.stat(1, user_stat::INTERRUPTS), 2);
    // ... but not once a new slice is armed: that one runs its full length.
    away(&mut g);
    g.set_field(1, offset_of!(UserSlot, slice_ns), 20_000_000u64);
    g.set_regs(1, r);
    let t = Instant::now();
    g.run(1, &[], UserExit::Interrupt);
    assert!(
        t.elapsed() >= Duration::from_millis(15),
        "{:?}",
        t.elapsed()
    );
    // Slot 0 is independent and still serves.
    g.map_program(0);
    g.set_regs(
        0,
        TrapFrame {
            rip: CODE,
            rsp: STACK + PAGE_SIZE,
            ..Default::default()
        },
    );
    assert_eq!(g.run(0, &[], UserExit::Syscall).rax, 39);
}

#[test]
fn bad_operations_fail_without_running_and_protect_unmap_work() {
    let mut g = Guest::start();
    g.wait_ready();
    g.map_program(0);
    let bad = [
        UserOp {
            addr: CODE + 1,
            ..map(CODE, CODE_GPA, prot::READ)
        },
        UserOp {
            prot: 8,
            ..map(CODE, CODE_GPA, prot::READ)
        },
        UserOp {
            offset: CODE_GPA + 1,
            ..map(CODE, CODE_GPA, prot::READ)
        },
        map(0x4000_0000_0000, CODE_GPA, prot::READ),
        map(0, CODE_GPA, prot::READ),
        map(CODE, MEM, prot::READ),
        UserOp {
            len: 0,
            ..map(CODE, CODE_GPA, prot::READ)
        },
        UserOp {
            kind: 9,
            ..map(CODE, CODE_GPA, prot::READ)
        },
    ];
    for b in bad {
        // A good op first: it is applied, the bad one (index 1) is reported.
        let ops = [map(DATA, DATA_GPA, prot::READ | prot::WRITE), b];
        g.set_regs(
            0,
            TrapFrame {
                rip: CODE,
                rsp: STACK + PAGE_SIZE,
                ..Default::default()
            },
        );
        match g.request(0, command::RUN, &ops) {
            Outcome::Exit(r) => assert_eq!(UserExit::from_raw(r), Some(UserExit::OpFailed)),
            Outcome::Died(st) => panic!("{b:?}: sandbox died: {st:?}"),
        }
        assert_eq!(
            g.field::<u32>(0, offset_of!(UserSlot, op_failed)),
            1,
            "{b:?}"
        );
        assert_eq!(g.field::<u32>(0, offset_of!(UserSlot, op_errno)), EINVAL);
    }
    assert_eq!(g.stat(0, user_stat::SYSCALLS), 0, "no user code ran");
    // An unknown command and too many ops fail as a whole.
    match g.request(0, 7, &[]) {
        Outcome::Exit(r) => assert_eq!(UserExit::from_raw(r), Some(UserExit::OpFailed)),
        Outcome::Died(st) => panic!("sandbox died: {st:?}"),
    }
    assert_eq!(g.field::<u32>(0, offset_of!(UserSlot, op_failed)), u32::MAX);

    // PROTECT: the data page becomes read-only; UNMAP: it is gone.
    let ro = UserOp {
        kind: op::PROTECT,
        prot: prot::READ,
        addr: DATA,
        len: PAGE_SIZE,
        offset: 0,
    };
    g.set_regs(
        0,
        TrapFrame {
            rip: FAULT,
            rcx: DATA,
            rsp: STACK + PAGE_SIZE,
            ..Default::default()
        },
    );
    g.run(0, &[ro], UserExit::Exception);
    assert_eq!((g.exit_vector(0), g.exit_addr(0)), (14, DATA));
    // The page was never touched, so the host reports it not present: the guest kernel must
    // judge protection faults by its own tables, not by the present bit.
    assert_eq!(g.exit_error(0) & 2, 2, "write to a read-only page");
    let gone = UserOp {
        kind: op::UNMAP,
        ..ro
    };
    let mut r = g.regs(0);
    r.rip = FAULT;
    g.set_regs(0, r);
    g.run(0, &[gone], UserExit::Exception);
    assert_eq!((g.exit_vector(0), g.exit_addr(0)), (14, DATA));
    assert_eq!(g.exit_error(0) & 3, 2, "write to an unmapped page");
}

#[test]
fn mapping_below_the_user_pool_kills_the_sandbox() {
    let mut g = Guest::start();
    g.wait_ready();
    g.map_program(0);
    // The stub's own checks pass (aligned, inside memory): the filter must stop it.
    let secret = map(DATA, POOL - PAGE_SIZE, prot::READ);
    match g.request(0, command::OPS_ONLY, &[secret]) {
        Outcome::Died(st) => assert_eq!(st.signal(), Some(SIGSYS), "{st:?}"),
        Outcome::Exit(r) => panic!("mapped below the pool: exit {r}"),
    }
}

#[test]
fn int80_from_user_code_kills_the_sandbox() {
    let mut g = Guest::start();
    g.wait_ready();
    g.map_program(0);
    g.set_regs(
        0,
        TrapFrame {
            rip: INT80,
            rax: 20,
            rsp: STACK + PAGE_SIZE,
            ..Default::default()
        },
    );
    match g.request(0, command::RUN, &[]) {
        Outcome::Died(st) => assert_eq!(st.signal(), Some(SIGSYS), "{st:?}"),
        Outcome::Exit(r) => panic!("int 0x80 came back: exit {r}"),
    }
}

#[test]
fn dead_flag_ends_the_sandbox_cleanly() {
    let mut g = Guest::start();
    g.wait_ready();
    std::thread::sleep(Duration::from_millis(20));
    g.mem.atomic32(CTX + 20).store(1, SeqCst);
    for i in 0..SLOTS {
        futex::wake(
            g.word(i, offset_of!(UserSlot, run_seq)),
            futex::Flags::empty(),
            u32::MAX,
        )
        .expect("wake");
    }
    assert_eq!(g.wait_exit().code(), Some(0));
}

#[test]
fn bad_headers_fail_start_up_with_their_step() {
    for (t, step) in [
        (
            Tweak {
                ctx_len_delta: PAGE_SIZE,
                ..Tweak::default()
            },
            2, // BadHeader
        ),
        (
            Tweak {
                ctx_magic: Some(0x1234),
                ..Tweak::default()
            },
            12, // BadUserCtx
        ),
    ] {
        let mut g = Guest::start_with(t);
        let st = g.wait_exit();
        assert_eq!(st.code(), Some(STUB_EXIT_SETUP));
        assert_eq!(g.stub_status(), status::FAILED);
        assert_eq!(
            g.ctl
                .read::<u32>(offset_of!(SandboxHeader, stub_step) as u64),
            step
        );
    }
}
