//! Both halves of the hand-off on threads: a kernel thread and slot threads over slots in
//! ordinary memory, with a waiter that yields instead of sleeping on a futex.

extern crate std;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use std::vec::Vec;

use super::super::USER_SLOT_SIZE;
use super::*;

/// Guest memory size the user side checks `MAP` offsets against.
const MEM: u64 = 64 << 20;
/// A timeout no test should reach on a loaded machine.
const LONG: u64 = 60_000_000_000;

/// A slot in ordinary memory: the words and counters as atomics, the plain fields as bytes
/// behind a lock (the layout is the trait's business, not the protocol's).
struct TestSlot {
    words: [AtomicU32; 7],
    grant: AtomicU32,
    counters: [AtomicU64; 8],
    bytes: Mutex<Vec<u8>>,
    dead: AtomicBool,
}

impl TestSlot {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            words: Default::default(),
            grant: AtomicU32::new(0),
            counters: Default::default(),
            bytes: Mutex::new(std::vec![0; USER_SLOT_SIZE as usize]),
            dead: AtomicBool::new(false),
        })
    }

    fn put<T: IntoBytes + Immutable>(&self, off: usize, v: T) {
        self.write(off, v.as_bytes());
    }
}

impl SlotMem for TestSlot {
    fn word(&self, w: Word) -> &AtomicU32 {
        &self.words[match w {
            Word::RunSeq => 0,
            Word::DoneSeq => 1,
            Word::UserWaiting => 2,
            Word::KernelWaiting => 3,
            Word::UserCpu => 4,
            Word::KernelCpu => 5,
            Word::FpPending => 6,
        }]
    }
    fn counter(&self, index: usize) -> &AtomicU64 {
        &self.counters[index]
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        buf.copy_from_slice(&self.bytes.lock().unwrap()[off..off + buf.len()]);
    }
    fn write(&self, off: usize, data: &[u8]) {
        self.bytes.lock().unwrap()[off..off + data.len()].copy_from_slice(data);
    }
    fn dead(&self) -> bool {
        self.dead.load(SeqCst)
    }
    fn grant(&self) -> &AtomicU32 {
        &self.grant
    }
}

/// A waiter without futexes: waits are yields (spurious returns are allowed), wakes are
/// no-ops; the clock is real.
struct Yield(Instant);

impl Yield {
    fn new() -> Self {
        Self(Instant::now())
    }
}

impl Waiter for Yield {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
    fn wait(&self, _: &AtomicU32, _: u32, _: Option<u64>) {
        thread::yield_now();
    }
    fn wake(&self, _: &AtomicU32, _: u32) {}
}

/// The user side's system calls, recorded: applied operations go to a log shared by every
/// slot thread of a "process"; an operation at `fail_addr` fails with `EPERM` (1), a load
/// with `fs_base == BAD_FS` with `EPERM`.
#[derive(Default)]
struct Fake {
    /// The slot it waits on (set by `serve_forever`).
    slot: Option<Arc<TestSlot>>,
    log: Arc<Mutex<Vec<UserOp>>>,
    fail_addr: Option<u64>,
    loaded: Option<RunLoad>,
}

const BAD_FS: u64 = 0xdead_0000_0000_0000;

impl UserPlatform for Fake {
    fn apply(&mut self, o: &UserOp) -> Result<(), u32> {
        if Some(o.addr) == self.fail_addr {
            return Err(1);
        }
        self.log.lock().unwrap().push(*o);
        Ok(())
    }
    fn load(&mut self, run: &RunLoad) -> Result<(), u32> {
        if run.fs_base == BAD_FS {
            return Err(1);
        }
        self.loaded = Some(*run);
        Ok(())
    }
    fn wait_grant(&mut self, last: u32) -> Option<u32> {
        let slot = self.slot.as_ref().expect("slot");
        UserSide::new(&**slot, MEM).wait_request(&Yield::new(), last)
    }
}

/// A slot thread whose "user code" makes a system call at once: number = `rax + 1`, FS base
/// plus 1, and an FPU image of `fp_len + 16` bytes, each byte the loaded one + 1 — written
/// before the report for even `run_seq`s, after it (`fp_follows`, as the stub's patch entry
/// does) for odd ones. Returns the number of requests that ran user code when the sandbox is
/// marked dead.
fn serve_forever(slot: Arc<TestSlot>, order: Arc<OpsOrder>, mut p: Fake) -> u64 {
    let w = Yield::new();
    let side = UserSide::new(&*slot, MEM);
    p.slot = Some(Arc::clone(&slot));
    let mut runs = 0;
    let mut last = 0;
    loop {
        match side.serve(&w, &order, &mut p, last) {
            Served::Dead => return runs,
            Served::Run(seq) => {
                last = seq;
                let run = p.loaded.take().expect("loaded");
                let mut fp = std::vec![0u8; run.fp_len];
                side.read_fp(&mut fp);
                let saved: Vec<u8> = (0..run.fp_len + 16)
                    .map(|i| fp.get(i).map_or(0xee, |b| b.wrapping_add(1)))
                    .collect();
                let follows = seq % 2 == 1;
                if !follows {
                    slot.write(FPSTATE, &saved);
                }
                let mut regs = run.regs;
                regs.rax += 1;
                regs.vector = 99; // what a careless user side might leave there
                let trap = UserTrap {
                    reason: UserExit::Syscall,
                    vector: crate::Vector::Syscall as u32,
                    error_code: regs.rax,
                    addr: 0,
                };
                side.add_user_ticks(10);
                side.record(&trap, &regs, run.fs_base + 1, saved.len() as u32, follows);
                side.publish(&w, seq, UserExit::Syscall);
                if follows {
                    // Late, so that the kernel half finds the image still pending.
                    for _ in 0..3 {
                        std::thread::yield_now();
                    }
                    slot.write(FPSTATE, &saved);
                    side.fp_written();
                }
                runs += 1;
            }
        }
    }
}

fn map_op(addr: u64, gpa: u64) -> UserOp {
    UserOp {
        kind: op::MAP,
        prot: prot::READ | prot::WRITE,
        addr,
        len: PAGE_SIZE,
        offset: gpa,
    }
}

fn run_req<'a>(rax: u64, fs: u64, fp: &'a [u8]) -> RunRequest<'a> {
    RunRequest {
        regs: TrapFrame {
            rax,
            rip: 0x40_1000,
            ..TrapFrame::default()
        },
        fs_base: fs,
        slice_ns: 0,
        fp,
        fp_init: fp.is_empty(),
        regs_kept: false,
    }
}

/// Many requests, RUN and OPS_ONLY, with and without operations: each gets its own answer,
/// the registers, FS base and FPU image make the round trip, every operation is applied once
/// and in order, and the counters agree.
#[test]
fn halves_agree() {
    let slot = TestSlot::new();
    let order = Arc::new(OpsOrder::new());
    let log = Arc::new(Mutex::new(Vec::new()));
    let user = {
        let (slot, order) = (Arc::clone(&slot), Arc::clone(&order));
        let p = Fake {
            log: Arc::clone(&log),
            ..Fake::default()
        };
        thread::spawn(move || serve_forever(slot, order, p))
    };
    let w = Yield::new();
    let k = KernelSlot::new(&*slot);
    let mut want_ops = Vec::new();
    let mut fp = std::vec![1u8, 2, 3];
    let mut runs = 0;
    // Batches are numbered as a kernel numbers them; a request without operations carries
    // the last number taken (every other one: 0, unordered).
    let mut batch = 0;
    for i in 0..2000u64 {
        let ops: Vec<UserOp> = (0..i % 4)
            .map(|j| map_op(0x10_0000 + (i * 4 + j) * PAGE_SIZE, 0x20_0000))
            .collect();
        want_ops.extend_from_slice(&ops);
        if !ops.is_empty() {
            batch += 1;
        }
        let ops_seq = if ops.is_empty() && i % 2 == 0 {
            0
        } else {
            batch
        };
        if i % 5 == 0 {
            let r = k.hand_over(
                &w,
                &Request {
                    ops: &ops,
                    ops_seq,
                    run: None,
                },
                LONG,
            );
            assert_eq!(r, Ok(Reply::OpsDone), "request {i}");
            continue;
        }
        let req = Request {
            ops: &ops,
            ops_seq,
            run: Some(run_req(i * 10, 0x7000 + i, &fp)),
        };
        let Ok(Reply::Ran(back)) = k.hand_over(&w, &req, LONG) else {
            panic!("request {i} did not run");
        };
        runs += 1;
        assert_eq!(back.exit, Exit::Syscall { trapped: true });
        assert_eq!(back.regs.rax, i * 10 + 1);
        assert_eq!(back.regs.rip, 0x40_1000);
        assert_eq!(back.regs.vector, 0, "exit fields of the frame are cleared");
        assert_eq!(back.fs_base, 0x7000 + i + 1);
        assert_eq!(back.user_ticks, 10);
        assert_eq!(back.fp_len, fp.len() + 16);
        let mut saved = std::vec![0u8; back.fp_len];
        assert_eq!(k.wait_fp(&w, LONG), Ok(()));
        k.read_fp(&mut saved);
        for (j, b) in fp.iter().enumerate() {
            assert_eq!(saved[j], b.wrapping_add(1));
        }
        fp = saved;
        fp.truncate(64);
    }
    slot.dead.store(true, SeqCst);
    assert_eq!(user.join().unwrap(), runs);
    assert_eq!(*log.lock().unwrap(), want_ops);
    assert_eq!(slot.counter(user_stat::RUNS).load(SeqCst), 2000);
    assert_eq!(slot.counter(user_stat::SYSCALLS).load(SeqCst), runs);
    assert_eq!(
        slot.counter(user_stat::OPS).load(SeqCst),
        want_ops.len() as u64
    );
    assert_eq!(order.applied(), batch);
}

/// Sequence numbers wrap around `u32::MAX`, skipping 0 (no grant).
#[test]
fn sequence_numbers_wrap() {
    let slot = TestSlot::new();
    slot.word(Word::RunSeq).store(u32::MAX - 2, SeqCst);
    slot.word(Word::DoneSeq).store(u32::MAX - 2, SeqCst);
    let user = {
        let slot = Arc::clone(&slot);
        thread::spawn(move || serve_forever(slot, Arc::new(OpsOrder::new()), Fake::default()))
    };
    let w = Yield::new();
    let k = KernelSlot::new(&*slot);
    for i in 0..6u64 {
        let req = Request {
            ops: &[],
            ops_seq: 0,
            run: Some(run_req(i, 0, &[])),
        };
        let Ok(Reply::Ran(back)) = k.hand_over(&w, &req, LONG) else {
            panic!("request {i}");
        };
        assert_eq!(back.regs.rax, i + 1);
    }
    assert_eq!(slot.word(Word::RunSeq).load(SeqCst), 4);
    assert_eq!(slot.word(Word::DoneSeq).load(SeqCst), 4);
    assert_eq!(slot.grant.load(SeqCst), 0, "revoked after the reply");
    slot.dead.store(true, SeqCst);
    assert_eq!(user.join().unwrap(), 6);
}

/// Two slot threads of one process, two kernel threads taking numbered batches from one
/// queue and handing them to their own slots: whatever order the batches reach the slots in,
/// they are applied in their numbered order, and a request comes back only once every batch
/// up to its number is in force.
#[test]
fn batches_apply_in_order_across_slots() {
    const BATCHES: u64 = 400;
    let order = Arc::new(OpsOrder::new());
    let log = Arc::new(Mutex::new(Vec::new()));
    let slots = [TestSlot::new(), TestSlot::new()];
    let users: Vec<_> = slots
        .iter()
        .map(|s| {
            let (s, order) = (Arc::clone(s), Arc::clone(&order));
            let p = Fake {
                log: Arc::clone(&log),
                ..Fake::default()
            };
            thread::spawn(move || serve_forever(s, order, p))
        })
        .collect();
    // The space's queue: the next batch number to take.
    let queue = Arc::new(Mutex::new(0u64));
    let kernels: Vec<_> = slots
        .iter()
        .enumerate()
        .map(|(n, s)| {
            let (s, queue, order) = (Arc::clone(s), Arc::clone(&queue), Arc::clone(&order));
            thread::spawn(move || {
                let w = Yield::new();
                let k = KernelSlot::new(&*s);
                loop {
                    let seq = {
                        let mut q = queue.lock().unwrap();
                        if *q == BATCHES {
                            return;
                        }
                        *q += 1;
                        *q
                    };
                    // Let the other thread overtake now and then.
                    if seq % 7 == n as u64 {
                        thread::yield_now();
                    }
                    let ops = [map_op(seq * PAGE_SIZE + 0x10_0000, 0)];
                    let run = (seq % 3 == 0).then(|| run_req(seq, 0, &[]));
                    let r = k.hand_over(
                        &w,
                        &Request {
                            ops: &ops,
                            ops_seq: seq,
                            run,
                        },
                        LONG,
                    );
                    assert!(r.is_ok(), "batch {seq}: {r:?}");
                    assert!(order.applied() >= seq, "batch {seq} came back too early");
                }
            })
        })
        .collect();
    for k in kernels {
        k.join().unwrap();
    }
    // A barrier (no operations, the last number taken): back once everything is applied.
    let w = Yield::new();
    let r = KernelSlot::new(&*slots[0]).hand_over(
        &w,
        &Request {
            ops: &[],
            ops_seq: BATCHES,
            run: None,
        },
        LONG,
    );
    assert_eq!(r, Ok(Reply::OpsDone));
    for s in &slots {
        s.dead.store(true, SeqCst);
    }
    for u in users {
        u.join().unwrap();
    }
    let applied: Vec<u64> = log
        .lock()
        .unwrap()
        .iter()
        .map(|o| (o.addr - 0x10_0000) / PAGE_SIZE)
        .collect();
    assert_eq!(applied, (1..=BATCHES).collect::<Vec<_>>());
}

/// A later batch handed over first waits for the earlier one, on another slot.
#[test]
fn a_later_batch_waits_for_the_earlier_one() {
    let order = Arc::new(OpsOrder::new());
    let log = Arc::new(Mutex::new(Vec::new()));
    let (a, b) = (TestSlot::new(), TestSlot::new());
    let users: Vec<_> = [&a, &b]
        .into_iter()
        .map(|s| {
            let (s, order) = (Arc::clone(s), Arc::clone(&order));
            let p = Fake {
                log: Arc::clone(&log),
                ..Fake::default()
            };
            thread::spawn(move || serve_forever(s, order, p))
        })
        .collect();
    let second = {
        let b = Arc::clone(&b);
        thread::spawn(move || {
            let ops = [map_op(0x20_0000, 0)];
            KernelSlot::new(&*b).hand_over(
                &Yield::new(),
                &Request {
                    ops: &ops,
                    ops_seq: 2,
                    run: Some(run_req(0, 0, &[])),
                },
                LONG,
            )
        })
    };
    // Slot b has the request; whether or not its thread is already waiting, nothing of
    // batch 2 may be applied before batch 1.
    while b.word(Word::RunSeq).load(SeqCst) == 0 {
        thread::yield_now();
    }
    thread::sleep(Duration::from_millis(20));
    assert!(
        log.lock().unwrap().is_empty(),
        "batch 2 applied before batch 1"
    );
    let ops = [map_op(0x10_0000, 0)];
    let first = KernelSlot::new(&*a).hand_over(
        &Yield::new(),
        &Request {
            ops: &ops,
            ops_seq: 1,
            run: None,
        },
        LONG,
    );
    assert_eq!(first, Ok(Reply::OpsDone));
    assert!(matches!(second.join().unwrap(), Ok(Reply::Ran(_))));
    let addrs: Vec<u64> = log.lock().unwrap().iter().map(|o| o.addr).collect();
    assert_eq!(addrs, [0x10_0000, 0x20_0000]);
    a.dead.store(true, SeqCst);
    b.dead.store(true, SeqCst);
    for u in users {
        u.join().unwrap();
    }
}

/// A user side that never answers: the kernel gives up after its timeout; a dead flag ends
/// the wait at once; the host's death reply is `Dead`.
#[test]
fn an_unanswering_or_dead_user_side_ends_the_wait() {
    let w = Yield::new();
    let slot = TestSlot::new();
    let k = KernelSlot::new(&*slot);
    let req = Request {
        ops: &[],
        ops_seq: 0,
        run: Some(run_req(0, 0, &[])),
    };
    let t = Instant::now();
    assert_eq!(
        k.hand_over(&w, &req, 50_000_000),
        Err(HandOffError::Timeout)
    );
    assert!(t.elapsed() >= Duration::from_millis(50));

    // The host marks the sandbox dead while the kernel waits.
    let host = {
        let slot = Arc::clone(&slot);
        thread::spawn(move || {
            while slot.word(Word::RunSeq).load(SeqCst) != 2 {
                thread::yield_now();
            }
            // As the host's `mark_dead` does (this slot's `exit_reason` is not an atomic).
            slot.put(EXIT_REASON, UserExit::Dead as u32);
            let run = slot.word(Word::RunSeq).load(SeqCst);
            slot.word(Word::DoneSeq).store(run, SeqCst);
            slot.dead.store(true, SeqCst);
        })
    };
    // The earlier request is abandoned: the next one goes on from `run_seq`.
    slot.word(Word::DoneSeq).store(1, SeqCst);
    assert_eq!(k.hand_over(&w, &req, LONG), Err(HandOffError::Dead));
    host.join().unwrap();
    assert_eq!(slot.word(Word::DoneSeq).load(SeqCst), 2);

    // Dead before the request: no wait at all.
    assert_eq!(k.hand_over(&w, &req, LONG), Err(HandOffError::Dead));
}

/// A slot thread waiting for work, or for an earlier batch, leaves once the sandbox is dead.
#[test]
fn a_dead_space_ends_the_user_side() {
    let slot = TestSlot::new();
    let order = Arc::new(OpsOrder::new());
    let user = {
        let (slot, order) = (Arc::clone(&slot), Arc::clone(&order));
        thread::spawn(move || serve_forever(slot, order, Fake::default()))
    };
    thread::sleep(Duration::from_millis(10));
    slot.dead.store(true, SeqCst);
    assert_eq!(user.join().unwrap(), 0);

    // Batch 5 can never be applied (1..4 never come): the dead flag ends the wait.
    let slot = TestSlot::new();
    let user = {
        let (slot, order) = (Arc::clone(&slot), Arc::clone(&order));
        thread::spawn(move || serve_forever(slot, order, Fake::default()))
    };
    let k = KernelSlot::new(&*slot);
    let ops = [map_op(0x10_0000, 0)];
    k.write_request(&Request {
        ops: &ops,
        ops_seq: 5,
        run: None,
    });
    let pending = k.ring(&Yield::new(), true);
    thread::sleep(Duration::from_millis(10));
    slot.dead.store(true, SeqCst);
    assert_eq!(user.join().unwrap(), 0);
    assert_eq!(
        k.wait(&Yield::new(), &pending, LONG),
        Err(HandOffError::Dead)
    );
    assert_eq!(order.applied(), 0);
}

/// What a hostile user side writes is copied once and checked: unknown reasons, and reasons
/// that do not answer the request, are garbage; lengths are clamped; a failure report is
/// decoded.
#[test]
fn garbage_from_a_hostile_user_side_is_rejected() {
    let w = Yield::new();
    let slot = TestSlot::new();
    let k = KernelSlot::new(&*slot);
    // Answers the next request with `reason`, after `scribble` wrote whatever it likes.
    let answer = |ops_only: bool, reason: u32, scribble: &dyn Fn(&TestSlot)| {
        let run = (!ops_only).then(|| run_req(0, 0, &[]));
        k.write_request(&Request {
            ops: &[],
            ops_seq: 0,
            run,
        });
        let pending = k.ring(&w, ops_only);
        scribble(&slot);
        slot.put(EXIT_REASON, reason);
        slot.word(Word::DoneSeq).store(pending.seq(), SeqCst);
        k.wait(&w, &pending, LONG).expect("answered");
        k.reply(&pending)
    };
    let nothing = |_: &TestSlot| {};
    assert_eq!(
        answer(false, 77, &nothing),
        Err(HandOffError::Garbage { reason: 77 })
    );
    assert_eq!(
        answer(false, 0, &nothing),
        Err(HandOffError::Garbage { reason: 0 })
    );
    // Answers that do not fit the request.
    assert_eq!(
        answer(false, UserExit::OpsDone as u32, &nothing),
        Err(HandOffError::Garbage { reason: 4 })
    );
    for r in [UserExit::Syscall, UserExit::Exception, UserExit::Interrupt] {
        assert_eq!(
            answer(true, r as u32, &nothing),
            Err(HandOffError::Garbage { reason: r as u32 })
        );
    }
    // The host's death mark, a failure report.
    assert_eq!(
        answer(false, UserExit::Dead as u32, &nothing),
        Err(HandOffError::Dead)
    );
    let fail = |s: &TestSlot| {
        s.put(OP_FAILED, 3u32);
        s.put(OP_ERRNO, 12u32);
    };
    assert_eq!(
        answer(true, UserExit::OpFailed as u32, &fail),
        Err(HandOffError::OpFailed {
            index: 3,
            errno: 12
        })
    );
    // A huge saved FPU length is clamped; the frame's exit fields are cleared; the counter
    // may go backwards (the caller clamps the difference).
    let wild = |s: &TestSlot| {
        s.put(FP_SAVED_LEN, u32::MAX);
        s.put(EXIT_VECTOR, 14u32);
        s.put(EXIT_ERROR_CODE, 7u64);
        s.put(EXIT_ADDR, 0x1234u64);
        s.put(
            REGS,
            TrapFrame {
                vector: 3,
                error_code: 4,
                fault_addr: 5,
                rip: 6,
                ..TrapFrame::default()
            },
        );
        s.counter(user_stat::USER_TICKS).store(0, SeqCst);
    };
    slot.counter(user_stat::USER_TICKS).store(100, SeqCst);
    let Ok(Reply::Ran(r)) = answer(false, UserExit::Exception as u32, &wild) else {
        panic!("an exception is a valid answer");
    };
    assert_eq!(r.fp_len, USER_FPSTATE_MAX);
    assert_eq!(
        r.exit,
        Exit::Exception {
            vector: 14,
            error_code: 7,
            addr: 0x1234
        }
    );
    assert_eq!(
        (r.regs.vector, r.regs.error_code, r.regs.fault_addr),
        (0, 0, 0)
    );
    assert_eq!(r.regs.rip, 6);
    assert_eq!(r.user_ticks, 0u64.wrapping_sub(100));
}

/// The user side refuses what §16.5 refuses, reports which operation failed, applies
/// nothing after it and runs no user code.
#[test]
fn the_user_side_refuses_bad_requests() {
    let slot = TestSlot::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let user = {
        let slot = Arc::clone(&slot);
        let p = Fake {
            log: Arc::clone(&log),
            fail_addr: Some(0x30_0000),
            ..Fake::default()
        };
        thread::spawn(move || serve_forever(slot, Arc::new(OpsOrder::new()), p))
    };
    let w = Yield::new();
    let k = KernelSlot::new(&*slot);
    let raw = |cmd: u32, nr_ops: u32| {
        k.write_request(&Request {
            ops: &[],
            ops_seq: 0,
            run: None,
        });
        k.write_raw_command(cmd);
        slot.put(NR_OPS, nr_ops);
        let pending = k.ring(&w, true);
        k.wait(&w, &pending, LONG).unwrap();
        k.reply(&pending)
    };
    let whole = Err(HandOffError::OpFailed {
        index: u32::MAX,
        errno: EINVAL,
    });
    assert_eq!(raw(7, 0), whole);
    assert_eq!(raw(0, 0), whole);
    assert_eq!(raw(command::OPS_ONLY, USER_OPS_MAX as u32 + 1), whole);
    // Operation 1 fails its check, operation 1 fails its system call.
    let bad = UserOp {
        addr: 0x10_0001,
        ..map_op(0x10_0000, 0)
    };
    for (second, errno) in [(bad, EINVAL), (map_op(0x30_0000, 0), 1)] {
        let ops = [map_op(0x10_0000, 0), second, map_op(0x40_0000, 0)];
        let r = k.hand_over(
            &w,
            &Request {
                ops: &ops,
                ops_seq: 0,
                run: Some(run_req(0, 0, &[])),
            },
            LONG,
        );
        assert_eq!(r, Err(HandOffError::OpFailed { index: 1, errno }));
    }
    // The state cannot be loaded: reported after all operations.
    let ops = [map_op(0x50_0000, 0)];
    let r = k.hand_over(
        &w,
        &Request {
            ops: &ops,
            ops_seq: 0,
            run: Some(run_req(0, BAD_FS, &[])),
        },
        LONG,
    );
    assert_eq!(r, Err(HandOffError::OpFailed { index: 1, errno: 1 }));
    slot.dead.store(true, SeqCst);
    assert_eq!(user.join().unwrap(), 0, "no user code ran");
    let addrs: Vec<u64> = log.lock().unwrap().iter().map(|o| o.addr).collect();
    assert_eq!(addrs, [0x10_0000, 0x10_0000, 0x50_0000]);
}

#[test]
fn operations_are_checked_like_the_abi_says() {
    let ok = map_op(0x10_0000, 0x20_0000);
    assert_eq!(check_op(&ok, MEM), Ok(()));
    let unmap = UserOp {
        kind: op::UNMAP,
        prot: 0xff, // ignored
        offset: u64::MAX,
        ..ok
    };
    assert_eq!(check_op(&unmap, MEM), Ok(()));
    let protect = UserOp {
        kind: op::PROTECT,
        prot: prot::READ,
        ..ok
    };
    assert_eq!(check_op(&protect, MEM), Ok(()));
    // `MAP_POPULATE` follows `MAP`'s rules.
    let populate = UserOp {
        kind: op::MAP_POPULATE,
        ..ok
    };
    assert_eq!(check_op(&populate, MEM), Ok(()));
    // A host file window's pages: read-only (executable or not), inside one slot.
    let window = UserOp {
        offset: crate::window::gpa(2, 0x3000),
        prot: prot::READ | prot::EXEC,
        ..ok
    };
    assert_eq!(check_op(&window, MEM), Ok(()));
    for bad in [
        UserOp {
            prot: prot::READ | prot::WRITE,
            ..window
        },
        UserOp {
            offset: crate::window::gpa(2, crate::window::WINDOW_SPAN - PAGE_SIZE),
            len: 2 * PAGE_SIZE,
            ..window
        },
        UserOp {
            offset: crate::window::gpa(2, 0x3001),
            ..window
        },
    ] {
        assert_eq!(check_op(&bad, MEM), Err(EINVAL), "{bad:?}");
    }
    for bad in [
        UserOp {
            offset: MEM,
            ..populate
        },
        UserOp {
            prot: 8,
            ..populate
        },
        UserOp {
            offset: 1,
            ..populate
        },
    ] {
        assert_eq!(check_op(&bad, MEM), Err(EINVAL), "{bad:?}");
    }
    for bad in [
        UserOp { len: 0, ..ok },
        UserOp {
            addr: ok.addr + 1,
            ..ok
        },
        UserOp { len: 100, ..ok },
        UserOp { addr: 0, ..ok },
        UserOp {
            addr: super::super::USER_END - PAGE_SIZE,
            len: 2 * PAGE_SIZE,
            ..ok
        },
        UserOp { prot: 8, ..ok },
        UserOp { offset: 1, ..ok },
        UserOp {
            offset: MEM - PAGE_SIZE + PAGE_SIZE,
            ..ok
        },
        UserOp {
            offset: u64::MAX - PAGE_SIZE + 1,
            ..ok
        },
        UserOp { kind: 0, ..ok },
        UserOp { kind: 5, ..ok },
        UserOp { prot: 9, ..protect },
    ] {
        assert_eq!(check_op(&bad, MEM), Err(EINVAL), "{bad:?}");
    }
}

#[test]
fn the_host_answers_for_a_dead_sandbox() {
    let (run, done, reason) = (AtomicU32::new(7), AtomicU32::new(6), AtomicU32::new(1));
    mark_dead(&run, &done, &reason);
    assert_eq!(done.load(SeqCst), 7);
    assert_eq!(
        UserExit::from_raw(reason.load(SeqCst)),
        Some(UserExit::Dead)
    );
}

#[test]
fn word_offsets_are_the_slot_layout() {
    assert_eq!(Word::RunSeq.offset(), 0);
    assert_eq!(Word::DoneSeq.offset(), 4);
    assert_eq!(Word::UserWaiting.offset(), 8);
    assert_eq!(Word::KernelWaiting.offset(), 12);
    assert_eq!(Word::UserCpu.offset(), 0x148);
    assert_eq!(Word::KernelCpu.offset(), 0x14c);
    assert_eq!(Word::FpPending.offset(), 0x54);
    assert_eq!(FPSTATE, 0x2000);
}

/// An image that never stops being pending (a program that wrote `fp_pending` itself) ends
/// the kernel's wait at its timeout, and a dead sandbox ends it at once.
#[test]
fn a_pending_image_that_never_comes_ends_the_wait() {
    let w = Yield::new();
    let slot = TestSlot::new();
    let k = KernelSlot::new(&*slot);
    assert!(!k.fp_pending());
    assert_eq!(k.wait_fp(&w, LONG), Ok(()), "nothing pending");

    slot.word(Word::FpPending).store(1, SeqCst);
    assert!(k.fp_pending());
    let t = Instant::now();
    assert_eq!(k.wait_fp(&w, 30_000_000), Err(HandOffError::Timeout));
    assert!(t.elapsed() >= Duration::from_millis(30));

    slot.dead.store(true, SeqCst);
    assert_eq!(k.wait_fp(&w, LONG), Err(HandOffError::Dead));
}

/// A request the program forged into an idle slot (a bumped `run_seq`, a `RUN` command,
/// `user_waiting` cleared, a wake) is never served: the slot thread serves only what the
/// kernel's grant word names, each grant once. The kernel's own request afterwards is served
/// normally and its grant is taken back with the reply.
#[test]
fn forged_requests_without_a_grant_are_not_served() {
    let slot = TestSlot::new();
    let runs = Arc::new(AtomicU32::new(0));
    let user = {
        let (slot, runs) = (Arc::clone(&slot), Arc::clone(&runs));
        thread::spawn(move || {
            let w = Yield::new();
            let side = UserSide::new(&*slot, MEM);
            let mut p = Fake {
                slot: Some(Arc::clone(&slot)),
                ..Fake::default()
            };
            let mut last = 0;
            loop {
                match side.serve(&w, &OpsOrder::new(), &mut p, last) {
                    Served::Dead => return,
                    Served::Run(seq) => {
                        last = seq;
                        runs.fetch_add(1, SeqCst);
                        side.publish(&w, seq, UserExit::Interrupt);
                    }
                }
            }
        })
    };
    // The program's forgery: a complete RUN request, published as the kernel would, but
    // without the grant (which it cannot write).
    slot.put(COMMAND, command::RUN);
    slot.put(NR_OPS, 0u32);
    for _ in 0..1000 {
        let r = slot.word(Word::RunSeq).load(SeqCst);
        slot.word(Word::RunSeq).store(r.wrapping_add(1), SeqCst);
        thread::yield_now();
    }
    thread::sleep(Duration::from_millis(50));
    assert_eq!(runs.load(SeqCst), 0, "a forged request ran user code");
    assert_eq!(
        slot.word(Word::DoneSeq).load(SeqCst),
        0,
        "a forged request was answered"
    );
    // The kernel's request: the slot is its own again (`done_seq == run_seq`).
    let r = slot.word(Word::RunSeq).load(SeqCst);
    slot.word(Word::DoneSeq).store(r, SeqCst);
    let k = KernelSlot::new(&*slot);
    let req = Request {
        ops: &[],
        ops_seq: 0,
        run: Some(run_req(0, 0, &[])),
    };
    let back = k.hand_over(&Yield::new(), &req, LONG);
    assert!(matches!(back, Ok(Reply::Ran(_))), "{back:?}");
    assert_eq!(runs.load(SeqCst), 1);
    assert_eq!(
        slot.grant.load(SeqCst),
        0,
        "the grant is taken back with the reply"
    );
    // Its grant value left in place (as if the kernel had not cleared it yet) is not served
    // twice.
    slot.grant
        .store(slot.word(Word::RunSeq).load(SeqCst), SeqCst);
    thread::sleep(Duration::from_millis(50));
    assert_eq!(runs.load(SeqCst), 1, "a grant was served twice");
    slot.dead.store(true, SeqCst);
    user.join().unwrap();
}

/// A waiter on "CPU" `cpu` (plus 1) whose clock stands still until it was read `frozen`
/// times (then it jumps past every spin budget), and whose waits call `on_wait`.
struct OnCpu<F: Fn()> {
    cpu: u32,
    reads: AtomicU32,
    frozen: u32,
    waits: AtomicU32,
    on_wait: F,
}

impl<F: Fn()> OnCpu<F> {
    fn new(cpu: u32, on_wait: F) -> Self {
        Self {
            cpu,
            reads: AtomicU32::new(0),
            frozen: 1_000,
            waits: AtomicU32::new(0),
            on_wait,
        }
    }
}

impl<F: Fn()> Waiter for OnCpu<F> {
    fn now_ns(&self) -> u64 {
        if self.reads.fetch_add(1, SeqCst) < self.frozen {
            0
        } else {
            LONG / 2
        }
    }
    fn wait(&self, _: &AtomicU32, _: u32, _: Option<u64>) {
        self.waits.fetch_add(1, SeqCst);
        (self.on_wait)();
    }
    fn wake(&self, _: &AtomicU32, _: u32) {}
    fn cpu(&self) -> u32 {
        self.cpu
    }
}

/// Neither side spins while the other one's published CPU is its own: it sleeps at the first
/// look (with a clock that stands still, spinning could only end by the budget), publishes
/// its own CPU, and still gets its answer.
#[test]
fn a_side_does_not_spin_while_the_other_is_on_its_cpu() {
    // The user side, waiting for a grant while the kernel's thread is on its CPU (3).
    let slot = TestSlot::new();
    slot.word(Word::KernelCpu).store(3, SeqCst);
    let w = OnCpu::new(3, || slot.grant.store(9, SeqCst));
    let side = UserSide::new(&*slot, MEM);
    assert_eq!(side.wait_request(&w, 0), Some(9));
    assert_eq!(w.waits.load(SeqCst), 1);
    assert!(
        w.reads.load(SeqCst) < 10,
        "it spun: {}",
        w.reads.load(SeqCst)
    );
    assert_eq!(slot.word(Word::UserCpu).load(SeqCst), 3);
    // Elsewhere (CPU 4) it spins until the budget is spent, then sleeps.
    let slot = TestSlot::new();
    slot.word(Word::KernelCpu).store(3, SeqCst);
    let w = OnCpu::new(4, || slot.grant.store(9, SeqCst));
    assert_eq!(UserSide::new(&*slot, MEM).wait_request(&w, 0), Some(9));
    assert!(w.reads.load(SeqCst) > 1_000);

    // The kernel, waiting for an answer while the user thread is on its CPU (5).
    let slot = TestSlot::new();
    slot.word(Word::UserCpu).store(5, SeqCst);
    let k = KernelSlot::new(&*slot);
    k.write_request(&Request {
        ops: &[],
        ops_seq: 0,
        run: None,
    });
    let w = OnCpu::new(5, || {});
    let pending = k.ring(&w, true);
    assert_eq!(
        slot.word(Word::KernelCpu).load(SeqCst),
        5,
        "published at the ring"
    );
    let seq = pending.seq();
    let answer = OnCpu::new(5, || {
        slot.put(offset_of!(UserSlot, exit_reason), UserExit::OpsDone as u32);
        slot.word(Word::DoneSeq).store(seq, SeqCst);
    });
    assert_eq!(k.wait(&answer, &pending, LONG), Ok(()));
    assert_eq!(answer.waits.load(SeqCst), 1);
    assert!(answer.reads.load(SeqCst) < 10);
    assert_eq!(k.reply(&pending), Ok(Reply::OpsDone));
}

/// The CPU words are hints a hostile program can write at any time: with both overwritten
/// by garbage all the while (and the sides on "CPUs" that keep changing), every request is
/// still answered correctly.
#[test]
fn lying_cpu_words_cost_no_correctness() {
    let slot = TestSlot::new();
    let stop = Arc::new(AtomicBool::new(false));
    let liar = {
        let (slot, stop) = (Arc::clone(&slot), Arc::clone(&stop));
        thread::spawn(move || {
            let mut x = 1u32;
            while !stop.load(SeqCst) {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                slot.word(Word::UserCpu).store(x % 3, SeqCst);
                slot.word(Word::KernelCpu).store((x >> 8) % 3, SeqCst);
                thread::yield_now();
            }
        })
    };
    struct Hopping(Instant, AtomicU32);
    impl Waiter for Hopping {
        fn now_ns(&self) -> u64 {
            self.0.elapsed().as_nanos() as u64
        }
        fn wait(&self, _: &AtomicU32, _: u32, _: Option<u64>) {
            thread::yield_now();
        }
        fn wake(&self, _: &AtomicU32, _: u32) {}
        fn cpu(&self) -> u32 {
            self.1.fetch_add(1, SeqCst) % 3
        }
    }
    let user = {
        let slot = Arc::clone(&slot);
        thread::spawn(move || {
            let w = Hopping(Instant::now(), AtomicU32::new(0));
            let side = UserSide::new(&*slot, MEM);
            let mut p = Fake {
                slot: Some(Arc::clone(&slot)),
                ..Fake::default()
            };
            let mut last = 0;
            let order = OpsOrder::new();
            loop {
                match side.serve(&w, &order, &mut p, last) {
                    Served::Dead => return,
                    Served::Run(seq) => {
                        last = seq;
                        let mut regs: TrapFrame = get(&*slot, REGS);
                        regs.rax += 1;
                        side.record(
                            &UserTrap {
                                reason: UserExit::Syscall,
                                vector: 0,
                                error_code: 0,
                                addr: 0,
                            },
                            &regs,
                            0,
                            0,
                            false,
                        );
                        side.publish(&w, seq, UserExit::Syscall);
                    }
                }
            }
        })
    };
    let w = Hopping(Instant::now(), AtomicU32::new(1));
    let k = KernelSlot::new(&*slot);
    for i in 0..500u64 {
        let req = Request {
            ops: &[],
            ops_seq: 0,
            run: Some(run_req(i, 0, &[])),
        };
        let Ok(Reply::Ran(back)) = k.hand_over(&w, &req, LONG) else {
            panic!("request {i} did not run");
        };
        assert_eq!(back.regs.rax, i + 1);
    }
    slot.dead.store(true, SeqCst);
    stop.store(true, SeqCst);
    user.join().unwrap();
    liar.join().unwrap();
}

/// A request with `regs_kept` writes `rax` alone: every other register the slot holds
/// (what the last exit left) is what the user side loads. `ops_seq` is written only when it
/// changes. A known tick count is what a run's user time counts from.
#[test]
fn a_kept_request_writes_only_rax_and_an_unchanged_ops_seq_is_left_alone() {
    let slot = TestSlot::new();
    let k = KernelSlot::new(&*slot);
    let exit = TrapFrame {
        rax: 39,
        rdi: 1,
        rsi: 2,
        r15: 15,
        rip: 0x40_1234,
        rsp: 0x7fff_0000,
        ..TrapFrame::default()
    };
    // What an exit left: the user side's registers in the slot.
    slot.put(REGS, exit);
    let mut back = exit;
    back.rax = 4242;
    // The kernel's copy may differ elsewhere: with `regs_kept` only rax is written.
    let mut run = run_req(0, 0, &[]);
    run.regs = TrapFrame {
        rax: 4242,
        ..TrapFrame::default()
    };
    run.regs_kept = true;
    k.write_request(&Request {
        ops: &[],
        ops_seq: 3,
        run: Some(run),
    });
    assert_eq!(get::<TrapFrame>(&*slot, REGS), back);
    assert_eq!(get::<u64>(&*slot, OPS_SEQ), 3);
    // Without it the whole frame is written.
    run.regs_kept = false;
    k.write_request(&Request {
        ops: &[],
        ops_seq: 3,
        run: Some(run),
    });
    assert_eq!(get::<TrapFrame>(&*slot, REGS), run.regs);
    // An ops_seq the slot does not hold is written.
    slot.put(OPS_SEQ, 3u64);
    k.write_request(&Request {
        ops: &[],
        ops_seq: 4,
        run: None,
    });
    assert_eq!(get::<u64>(&*slot, OPS_SEQ), 4);

    // A run's user time counts from the known tick count, not the counter's value.
    let w = Yield::new();
    slot.counter(user_stat::USER_TICKS).store(1000, SeqCst);
    let k = KernelSlot::new(&*slot).with_user_ticks(Some(900));
    k.write_request(&Request {
        ops: &[],
        ops_seq: 0,
        run: Some(run_req(0, 0, &[])),
    });
    let pending = k.ring(&w, false);
    slot.counter(user_stat::USER_TICKS).store(1500, SeqCst);
    slot.put(EXIT_REASON, UserExit::Interrupt as u32);
    slot.word(Word::DoneSeq).store(pending.seq(), SeqCst);
    k.wait(&w, &pending, LONG).unwrap();
    match k.reply(&pending) {
        Ok(Reply::Ran(r)) => assert_eq!((r.user_ticks, r.user_ticks_total), (600, 1500)),
        other => panic!("{other:?}"),
    }
}
