//! End-to-end test of the stub's user-sandbox mode without a guest kernel: the test process
//! plays the guest kernel. It creates the guest memfd (32 MiB, user pool from 16 MiB) and a
//! one-page control memfd whose `SandboxHeader` says `kind::USER`, writes a context region
//! into the pool and a few snippets of x86 code into a pool page, starts the embedded stub
//! (`pvmux::images::STUB`) with fds 3 and 4, and drives slots with the kernel half of the
//! ABI's hand-off protocol (`pvmux_hypercalls::user::handoff`), on its own shared mapping of
//! the memfd — the protocol the guest kernel uses, not a copy of it.

use std::mem::{offset_of, ManuallyDrop};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

use pvmux_host::clock::ClockParams;
use pvmux_hypercalls::sandbox::{kind, status, CTL_FD, GUEST_MEM_FD, STUB_EXIT_SETUP};
use pvmux_hypercalls::user::grant::grant_offset;
use pvmux_hypercalls::user::handoff::{
    Exit, HandOffError, KernelSlot, Reply, Request, Returned, RunRequest, SlotMem, Waiter, Word,
    EINVAL,
};
use pvmux_hypercalls::user::{
    op, prot, user_ctx_size, user_slot_offset, user_stat, UserCtxHeader, UserExit, UserOp,
    UserSlot, USER_CTX_MAGIC, USER_FPSTATE_MAX, USER_SLOT_SIZE,
};
use pvmux_hypercalls::{SandboxHeader, TrapFrame, ABI_MAGIC, ABI_VERSION, PAGE_SIZE};
use rustix::fs::{ftruncate, memfd_create, MemfdFlags};
use rustix::io::{dup2, fcntl_dupfd_cloexec, fcntl_setfd, FdFlags};
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};
use rustix::process::{waitid, Pid, WaitId, WaitIdOptions};
use rustix::thread::futex;

const MEM: u64 = 32 << 20;
const POOL: u64 = 16 << 20;
const CTX: u64 = POOL;
const SLOTS: u32 = 2;
/// The space's grant page: "guest-kernel" memory below the pool.
const GRANT_GPA: u64 = POOL - PAGE_SIZE;
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

const SIGSYS: i32 = 31;
/// Longest a request may take to come back (the machine may be loaded).
const REQUEST_TIMEOUT_NS: u64 = 10_000_000_000;

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

    fn at(&self, off: u64, len: usize) -> *mut u8 {
        assert!(off as usize <= self.len && len <= self.len - off as usize);
        // SAFETY: inside the mapping (checked).
        unsafe { self.ptr.add(off as usize) }
    }

    /// Copies bytes out (the stub writes this memory concurrently: never a reference).
    fn read_bytes(&self, off: u64, buf: &mut [u8]) {
        let p = self.at(off, buf.len());
        // SAFETY: inside the mapping (checked); `buf` is ours.
        unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) }
    }

    fn write_bytes(&self, off: u64, data: &[u8]) {
        let p = self.at(off, data.len());
        // SAFETY: inside the mapping (checked).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) }
    }

    fn write<T: Copy>(&self, off: u64, v: T) {
        // SAFETY: inside the mapping (checked); unaligned write.
        unsafe { (self.at(off, size_of::<T>()) as *mut T).write_unaligned(v) }
    }

    fn read<T: Copy>(&self, off: u64) -> T {
        // SAFETY: inside the mapping (checked); any bit pattern of these integers is valid.
        unsafe { (self.at(off, size_of::<T>()) as *const T).read_unaligned() }
    }

    fn atomic32(&self, off: u64) -> &AtomicU32 {
        assert!(off.is_multiple_of(4));
        // SAFETY: aligned, inside the mapping, which lives as long as `self`; only accessed
        // atomically.
        unsafe { &*(self.at(off, 4) as *const AtomicU32) }
    }

    fn atomic64(&self, off: u64) -> &AtomicU64 {
        assert!(off.is_multiple_of(8));
        // SAFETY: as in `atomic32`.
        unsafe { &*(self.at(off, 8) as *const AtomicU64) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; nothing refers to it any more.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

/// Slot `index` of the context region, as the "guest kernel" reaches it: the ABI's
/// [`SlotMem`] over the test's mapping of guest memory. The sandbox counts as dead once the
/// host would say so: its process has exited (the test plays the host too) or the header's
/// `dead` flag is set.
struct HostSlot<'a> {
    mem: &'a Map,
    off: u64,
    index: u32,
    pid: Pid,
}

impl SlotMem for HostSlot<'_> {
    fn word(&self, w: Word) -> &AtomicU32 {
        self.mem.atomic32(self.off + w.offset() as u64)
    }
    fn counter(&self, index: usize) -> &AtomicU64 {
        self.mem
            .atomic64(self.off + (offset_of!(UserSlot, stats) + 8 * index) as u64)
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        assert!(off + buf.len() <= USER_SLOT_SIZE as usize);
        self.mem.read_bytes(self.off + off as u64, buf);
    }
    fn write(&self, off: usize, data: &[u8]) {
        assert!(off + data.len() <= USER_SLOT_SIZE as usize);
        self.mem.write_bytes(self.off + off as u64, data);
    }
    fn grant(&self) -> &AtomicU32 {
        self.mem.atomic32(GRANT_GPA + grant_offset(self.index))
    }
    fn dead(&self) -> bool {
        let flag = self
            .mem
            .atomic32(CTX + offset_of!(UserCtxHeader, dead) as u64)
            .load(SeqCst);
        // Exited (not reaped here: `Child::wait` gets the status later).
        let exited = waitid(
            WaitId::Pid(self.pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
        );
        flag != 0 || matches!(exited, Ok(Some(_)))
    }
}

/// The test's clock and shared futexes.
struct HostWaiter(Instant);

impl Waiter for HostWaiter {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
    fn wait(&self, word: &AtomicU32, expected: u32, timeout_ns: Option<u64>) {
        let ts = timeout_ns.map(|ns| futex::Timespec {
            tv_sec: (ns / 1_000_000_000) as _,
            tv_nsec: (ns % 1_000_000_000) as _,
        });
        let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
    }
    fn wake(&self, word: &AtomicU32, count: u32) {
        let _ = futex::wake(word, futex::Flags::empty(), count.min(i32::MAX as u32));
    }
}

/// How a request ended.
#[derive(Debug)]
enum Outcome {
    /// The slot answered.
    Reply(Box<Reply>),
    /// The slot refused the request (or answered nonsense).
    Failed(HandOffError),
    /// The sandbox process ended.
    Died(ExitStatus),
}

/// What the next `RUN` on a slot loads — the thread state a guest kernel would carry. The
/// registers are what the last run brought back, as in a kernel.
#[derive(Clone, Default)]
struct Next {
    regs: TrapFrame,
    fs_base: u64,
    slice_ns: u64,
    /// An FPU image to load (empty: keep the thread's, or reset with `fp_init`).
    fp: Vec<u8>,
    fp_init: bool,
}

/// The "guest kernel": guest memory, the control page and one user sandbox.
struct Guest {
    mem: Map,
    ctl: Map,
    child: Child,
    next: [Next; SLOTS as usize],
    /// What the last run of each slot brought back.
    last: [Option<Returned>; SLOTS as usize],
    _fds: [OwnedFd; 2],
}

/// What the test changes in the header/context before the stub starts.
#[derive(Clone, Copy, Default)]
struct Tweak {
    ctx_len_delta: u64,
    ctx_magic: Option<u64>,
    no_clock: bool,
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

        let clock = ClockParams::now();
        ctl.write(offset_of!(SandboxHeader, magic) as u64, ABI_MAGIC);
        ctl.write(offset_of!(SandboxHeader, abi_version) as u64, ABI_VERSION);
        ctl.write(offset_of!(SandboxHeader, nr_vcpus) as u64, SLOTS);
        ctl.write(offset_of!(SandboxHeader, mem_size) as u64, MEM);
        ctl.write(offset_of!(SandboxHeader, tsc_base) as u64, clock.tsc_base);
        if !t.no_clock {
            ctl.write(offset_of!(SandboxHeader, clock_mult) as u64, clock.mult);
            ctl.write(offset_of!(SandboxHeader, clock_shift) as u64, clock.shift);
        }
        ctl.write(offset_of!(SandboxHeader, kind) as u64, kind::USER);
        ctl.write(offset_of!(SandboxHeader, user_pool_base) as u64, POOL);
        ctl.write(offset_of!(SandboxHeader, user_ctx_gpa) as u64, CTX);
        ctl.write(offset_of!(SandboxHeader, user_grant_gpa) as u64, GRANT_GPA);
        ctl.write(
            offset_of!(SandboxHeader, user_ctx_len) as u64,
            user_ctx_size(SLOTS) + t.ctx_len_delta,
        );
        mem.write(CTX, t.ctx_magic.unwrap_or(USER_CTX_MAGIC));
        mem.write(CTX + 8, ABI_VERSION);
        mem.write(CTX + 12, SLOTS);
        for &(off, bytes) in SNIPPETS {
            mem.write_bytes(CODE_GPA + off, bytes);
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
            next: Default::default(),
            last: [None; SLOTS as usize],
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

    fn slot(&self, i: u32) -> HostSlot<'_> {
        HostSlot {
            mem: &self.mem,
            off: Self::slot_off(i),
            index: i,
            pid: Pid::from_child(&self.child),
        }
    }

    fn word(&self, i: u32, w: Word) -> &AtomicU32 {
        self.mem.atomic32(Self::slot_off(i) + w.offset() as u64)
    }

    /// A field of slot `i` as the stub left it (raw inspection).
    fn field<T: Copy>(&self, i: u32, off: usize) -> T {
        self.mem.read(Self::slot_off(i) + off as u64)
    }

    fn stat(&self, i: u32, idx: usize) -> u64 {
        self.slot(i).counter(idx).load(SeqCst)
    }

    /// Hands slot `i` a request with the kernel half of the protocol, like the guest kernel
    /// does: `ops` (unordered), then for `run` user code with the slot's [`Next`] state.
    fn request(&mut self, i: u32, run: bool, ops: &[UserOp]) -> Outcome {
        let next = &self.next[i as usize];
        let req = Request {
            ops,
            ops_seq: 0,
            run: run.then(|| RunRequest {
                regs: next.regs,
                fs_base: next.fs_base,
                slice_ns: next.slice_ns,
                fp: &next.fp,
                fp_init: next.fp_init,
                regs_kept: false,
            }),
        };
        let slot = self.slot(i);
        let r =
            KernelSlot::new(&slot).hand_over(&HostWaiter(Instant::now()), &req, REQUEST_TIMEOUT_NS);
        self.outcome(i, r)
    }

    /// A request whose `command` is `cmd` as written (no run state, no operations).
    fn raw_request(&mut self, i: u32, cmd: u32) -> Outcome {
        let slot = self.slot(i);
        let k = KernelSlot::new(&slot);
        k.write_request(&Request {
            ops: &[],
            ops_seq: 0,
            run: None,
        });
        k.write_raw_command(cmd);
        let w = HostWaiter(Instant::now());
        let pending = k.ring(&w, true);
        let r = k
            .wait(&w, &pending, REQUEST_TIMEOUT_NS)
            .and_then(|()| k.reply(&pending));
        self.outcome(i, r)
    }

    fn outcome(&mut self, i: u32, r: Result<Reply, HandOffError>) -> Outcome {
        match r {
            Ok(reply) => {
                if let Reply::Ran(back) = reply {
                    self.next[i as usize].regs = back.regs;
                    self.last[i as usize] = Some(back);
                }
                Outcome::Reply(Box::new(reply))
            }
            Err(HandOffError::Dead) => Outcome::Died(self.wait_exit()),
            Err(HandOffError::Timeout) => panic!("slot {i} did not come back"),
            Err(e) => Outcome::Failed(e),
        }
    }

    /// A RUN request that must come back with `want`; returns the registers.
    fn run(&mut self, i: u32, ops: &[UserOp], want: UserExit) -> TrapFrame {
        let back = match self.request(i, true, ops) {
            Outcome::Reply(reply) => match *reply {
                Reply::Ran(back) => back,
                other => panic!("slot {i}: {other:?}"),
            },
            other => panic!("slot {i}: {other:?}"),
        };
        let got = match back.exit {
            Exit::Syscall { .. } => UserExit::Syscall,
            Exit::Exception { .. } => UserExit::Exception,
            Exit::Interrupt => UserExit::Interrupt,
        };
        assert_eq!(got, want, "slot {i}");
        back.regs
    }

    /// Sets rip (and optionally other registers) and runs until an exception of `vector`.
    fn run_at(
        &mut self,
        i: u32,
        rip: u64,
        f: impl FnOnce(&mut TrapFrame),
        vector: u32,
    ) -> TrapFrame {
        let r = &mut self.next[i as usize].regs;
        r.rip = rip;
        r.rsp = STACK + PAGE_SIZE - 64;
        f(r);
        let out = self.run(i, &[], UserExit::Exception);
        assert_eq!(self.exception(i).0, vector, "exit vector at {rip:#x}");
        out
    }

    /// The last run's exception: `(vector, error_code, addr)`.
    fn exception(&self, i: u32) -> (u32, u64, u64) {
        match self.last[i as usize].map(|b| b.exit) {
            Some(Exit::Exception {
                vector,
                error_code,
                addr,
            }) => (vector, error_code, addr),
            other => panic!("slot {i}: no exception but {other:?}"),
        }
    }

    /// The FPU image the last run saved.
    fn saved_fp(&self, i: u32) -> Vec<u8> {
        let back = self.last[i as usize].expect("a run");
        let mut image = vec![0u8; back.fp_len];
        let slot = self.slot(i);
        let k = KernelSlot::new(&slot);
        k.wait_fp(&HostWaiter(Instant::now()), REQUEST_TIMEOUT_NS)
            .expect("the image is written");
        k.read_fp(&mut image);
        image
    }

    fn map_program(&mut self, i: u32) {
        let ops = [
            map(CODE, CODE_GPA, prot::READ | prot::EXEC),
            map(DATA, DATA_GPA, prot::READ | prot::WRITE),
            map(STACK, STACK_GPA, prot::READ | prot::WRITE),
        ];
        let before = self.stat(i, user_stat::OPS);
        match self.request(i, false, &ops) {
            Outcome::Reply(reply) if *reply == Reply::OpsDone => {}
            other => panic!("mapping the program: {other:?}"),
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
    assert_eq!(
        g.mem
            .atomic32(CTX + offset_of!(UserCtxHeader, ready) as u64)
            .load(SeqCst),
        1,
        "ctx ready"
    );
    // Let both threads go to sleep, so the first request exercises the futex wake.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(g.word(0, Word::UserWaiting).load(SeqCst), 1);
    g.map_program(0);
    assert!(g.stat(0, user_stat::SLEEPS) >= 1);

    // A system call: not executed, reported with its number and the IP after it.
    g.next[0].regs = TrapFrame {
        rip: CODE,
        rsp: STACK + PAGE_SIZE - 64,
        rflags: 0x202,
        ..Default::default()
    };
    g.next[0].fp_init = true;
    let mut r = g.run(0, &[], UserExit::Syscall);
    assert_eq!(r.rax, 39);
    assert_eq!(r.rip, AFTER_SYSCALL);
    assert_eq!(g.field::<u32>(0, offset_of!(UserSlot, exit_vector)), 128);
    assert_eq!(g.field::<u64>(0, offset_of!(UserSlot, exit_error_code)), 39);
    assert_eq!(r.rsp, STACK + PAGE_SIZE - 64);
    g.next[0].fp_init = false;

    // The "kernel" returns 1234: the code continues after the syscall, stores it, int3.
    r.rax = 1234;
    g.next[0].regs = r;
    let r = g.run(0, &[], UserExit::Exception);
    assert_eq!(g.exception(0).0, 3);
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
    let (_, err, addr) = g.exception(0);
    assert_eq!(addr, UNMAPPED + 0x18);
    assert_eq!(err & 3, 2, "write, not present");
    assert_eq!(r.rip, FAULT, "rip at the faulting instruction");
    g.run_at(0, FAULT, |r| r.rcx = CODE + 8, 14);
    let (_, err, addr) = g.exception(0);
    assert_eq!(addr, CODE + 8);
    // Present or not depends on whether the host populated the page-table entry (it did: the
    // page was executed from), as for any Linux process; the write bit is what counts.
    assert_eq!(err & 2, 2, "write");
    g.run_at(0, UD2, |_| {}, 6);

    // FS base: loaded before running, read back at the exit.
    g.mem.write(DATA_GPA + 0x100, 0x1122_3344_5566_7788u64);
    g.mem.write(DATA_GPA + 0x200, 0x99aa_bbcc_ddee_ff00u64);
    for (fs, want) in [
        (DATA + 0x100, 0x1122_3344_5566_7788u64),
        (DATA + 0x200, 0x99aa_bbcc_ddee_ff00),
        (DATA + 0x200, 0x99aa_bbcc_ddee_ff00),
    ] {
        g.next[0].fs_base = fs;
        let r = g.run_at(0, READ_FS, |_| {}, 3);
        assert_eq!(r.rax, want, "fs:[0] with fs = {fs:#x}");
        assert_eq!(g.last[0].map(|b| b.fs_base), Some(fs));
    }

    // FPU: a fresh state has xmm0 = 0; the saved image carries xmm0 to a later run.
    g.next[0].fp_init = true;
    let r = g.run_at(0, XMM, |r| r.rbx = 0xdead_beef, 3);
    assert_eq!(r.rax, 0, "xmm0 after fp_init");
    let image = g.saved_fp(0);
    assert!(
        (512..=USER_FPSTATE_MAX).contains(&image.len()),
        "{}",
        image.len()
    );
    assert_eq!(
        u64::from_le_bytes(image[160..168].try_into().unwrap()),
        0xdead_beef,
        "xmm0 in the saved image"
    );
    // Without an image the thread keeps its state; fp_init resets it.
    g.next[0].fp_init = false;
    let r = g.run_at(0, XMM, |r| r.rbx = 1, 3);
    assert_eq!(r.rax, 0xdead_beef, "state kept");
    g.next[0].fp_init = true;
    let r = g.run_at(0, XMM, |r| r.rbx = 2, 3);
    assert_eq!(r.rax, 0, "state reset");
    // Loading the image restores xmm0 = 0xdeadbeef.
    g.next[0].fp_init = false;
    g.next[0].fp = image;
    let r = g.run_at(0, XMM, |r| r.rbx = 3, 3);
    assert_eq!(r.rax, 0xdead_beef, "state loaded from fpstate");
    g.next[0].fp.clear();
    assert!(g.stat(0, user_stat::EXCEPTIONS) >= 10);
}

#[test]
fn slice_timer_interrupts_a_spinning_thread_on_another_slot() {
    let mut g = Guest::start();
    g.wait_ready();
    g.map_program(1);
    g.next[1].regs = TrapFrame {
        rip: SPIN,
        rsp: STACK + PAGE_SIZE,
        ..Default::default()
    };
    g.next[1].slice_ns = 20_000_000;
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
        g.next[1].slice_ns = 5_000_000;
        g.run_at(1, UD2, |_| {}, 6);
        std::thread::sleep(Duration::from_millis(30));
    };
    away(&mut g);
    g.next[1].slice_ns = 0;
    g.next[1].regs.rip = SPIN;
    g.run(1, &[], UserExit::Interrupt);
    assert_eq!(g.stat(1, user_stat::INTERRUPTS), 2);
    // ... but not once a new slice is armed: that one runs its full length.
    away(&mut g);
    g.next[1].slice_ns = 20_000_000;
    g.next[1].regs.rip = SPIN;
    let t = Instant::now();
    g.run(1, &[], UserExit::Interrupt);
    assert!(
        t.elapsed() >= Duration::from_millis(15),
        "{:?}",
        t.elapsed()
    );
    // Slot 0 is independent and still serves.
    g.map_program(0);
    g.next[0].regs = TrapFrame {
        rip: CODE,
        rsp: STACK + PAGE_SIZE,
        ..Default::default()
    };
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
        g.next[0].regs = TrapFrame {
            rip: CODE,
            rsp: STACK + PAGE_SIZE,
            ..Default::default()
        };
        match g.request(0, true, &ops) {
            Outcome::Failed(e) => assert_eq!(
                e,
                HandOffError::OpFailed {
                    index: 1,
                    errno: EINVAL
                },
                "{b:?}"
            ),
            other => panic!("{b:?}: {other:?}"),
        }
    }
    assert_eq!(g.stat(0, user_stat::SYSCALLS), 0, "no user code ran");
    // An unknown command fails as a whole.
    match g.raw_request(0, 7) {
        Outcome::Failed(e) => assert_eq!(
            e,
            HandOffError::OpFailed {
                index: u32::MAX,
                errno: EINVAL
            }
        ),
        other => panic!("unknown command: {other:?}"),
    }

    // PROTECT: the data page becomes read-only; UNMAP: it is gone.
    let ro = UserOp {
        kind: op::PROTECT,
        prot: prot::READ,
        addr: DATA,
        len: PAGE_SIZE,
        offset: 0,
    };
    g.next[0].regs = TrapFrame {
        rip: FAULT,
        rcx: DATA,
        rsp: STACK + PAGE_SIZE,
        ..Default::default()
    };
    g.run(0, &[ro], UserExit::Exception);
    let (vector, err, addr) = g.exception(0);
    assert_eq!((vector, addr), (14, DATA));
    // The page was never touched, so the host reports it not present: the guest kernel must
    // judge protection faults by its own tables, not by the present bit.
    assert_eq!(err & 2, 2, "write to a read-only page");
    let gone = UserOp {
        kind: op::UNMAP,
        ..ro
    };
    g.next[0].regs.rip = FAULT;
    g.run(0, &[gone], UserExit::Exception);
    let (vector, err, addr) = g.exception(0);
    assert_eq!((vector, addr), (14, DATA));
    assert_eq!(err & 3, 2, "write to an unmapped page");
}

#[test]
fn mapping_below_the_user_pool_kills_the_sandbox() {
    let mut g = Guest::start();
    g.wait_ready();
    g.map_program(0);
    // The stub's own checks pass (aligned, inside memory): the filter must stop it.
    let secret = map(DATA, POOL - PAGE_SIZE, prot::READ);
    match g.request(0, false, &[secret]) {
        Outcome::Died(st) => assert_eq!(st.signal(), Some(SIGSYS), "{st:?}"),
        other => panic!("mapped below the pool: {other:?}"),
    }
}

#[test]
fn int80_from_user_code_kills_the_sandbox() {
    let mut g = Guest::start();
    g.wait_ready();
    g.map_program(0);
    g.next[0].regs = TrapFrame {
        rip: INT80,
        rax: 20,
        rsp: STACK + PAGE_SIZE,
        ..Default::default()
    };
    match g.request(0, true, &[]) {
        Outcome::Died(st) => assert_eq!(st.signal(), Some(SIGSYS), "{st:?}"),
        other => panic!("int 0x80 came back: {other:?}"),
    }
}

#[test]
fn dead_flag_ends_the_sandbox_cleanly() {
    let mut g = Guest::start();
    g.wait_ready();
    std::thread::sleep(Duration::from_millis(20));
    g.mem
        .atomic32(CTX + offset_of!(UserCtxHeader, dead) as u64)
        .store(1, SeqCst);
    // Idle slot threads sleep on their grant words.
    for i in 0..SLOTS {
        let grant = g.mem.atomic32(GRANT_GPA + grant_offset(i));
        futex::wake(grant, futex::Flags::empty(), u32::MAX).expect("wake");
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
                no_clock: true,
                ..Tweak::default()
            },
            2, // BadHeader: the hand-off's spin budgets need the clock
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
