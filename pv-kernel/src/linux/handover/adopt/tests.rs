use super::*;
use crate::linux::handover::{Inventory, RELEASE};
use pvmux_hypercalls::handover::{
    blocker, fd_state, fill_name, BlobRef, PipeEntry, ShmAreaEntry, ShmPagesEntry, ThreadEntry,
    VmaEntry, NO_RESTART,
};
use pvmux_hypercalls::TrapFrame;
use zerocopy::FromZeros;

const POOL: (u64, u64) = (16 << 20, 64 << 20);

fn args(len: usize, flags: u32) -> AdoptArgs {
    AdoptArgs {
        version: 2,
        flags,
        record_len: len as u64,
        pool_start: POOL.0,
        pool_end: POOL.1,
    }
}

fn process(pid: i32, ppid: i32, zombie: bool) -> ProcessEntry {
    ProcessEntry {
        pid,
        ppid,
        pgid: 1,
        sid: 1,
        nr_threads: u32::from(!zombie),
        flags: if zombie { process_flags::ZOMBIE } else { 0 },
        ..Default::default()
    }
}

fn thread(inv: &mut Inventory, tid: i32, pid: i32, state: u32) {
    inv.threads.push(ThreadEntry {
        tid,
        pid,
        state,
        ..Default::default()
    });
    let fpu = inv.blob_add(&[0u8; 576]);
    inv.thread_states.push(ThreadStateEntry {
        tid,
        pid,
        state,
        _reserved: 0,
        regs: TrapFrame {
            rip: 0x40_1000,
            ..TrapFrame::default()
        },
        fs_base: 0,
        clear_child_tid: 0,
        sigmask: 0,
        pending: 0,
        restart_nr: NO_RESTART,
        fpu,
        altstack_sp: 0,
        altstack_size: 0,
        altstack_flags: 0,
        _reserved2: 0,
    });
}

fn state(inv: &mut Inventory, pid: i32) {
    let mut st = ProcessStateEntry::new_zeroed();
    st.pid = pid;
    st.exe = inv.blob_add(b"/bin/sh");
    st.cwd = inv.blob_add(b"/");
    inv.states.push(st);
}

fn fd(inv: &mut Inventory, pid: i32, fd: i32, kind: u32, description: u64, object: u64) {
    let path = inv.blob_add(b"");
    inv.fd_states.push(FdStateEntry {
        pid,
        fd,
        kind,
        fd_flags: 0,
        status_flags: 0,
        aux: 0,
        description,
        pos: 0,
        object,
        path,
    });
}

/// The test's scenario: init (pid 1) with a live child (pid 2) and a zombie (pid 3); the
/// child shares a copy-on-write frame with init and has a private one; both hold the two
/// ends of one pipe, the child's write end shared (one description) by fds 1 and 2.
fn scenario() -> Inventory {
    let mut inv = Inventory {
        processes: alloc::vec![
            process(1, 0, false),
            process(2, 1, false),
            process(3, 1, true)
        ],
        ..Inventory::default()
    };
    for (pid, start) in [(1, 0x40_0000), (2, 0x40_0000)] {
        inv.vmas.push(VmaEntry {
            pid,
            start,
            end: start + 0x4000,
            ..FromZeros::new_zeroed()
        });
    }
    thread(&mut inv, 1, 1, thread_state::USER);
    thread(&mut inv, 2, 2, thread_state::USER);
    state(&mut inv, 1);
    state(&mut inv, 2);
    let cow = POOL.0 + 0x1000;
    inv.pages = alloc::vec![
        PageRunEntry {
            pid: 1,
            flags: page_flags::COW,
            va: 0x40_0000,
            gpa: cow,
            pages: 1
        },
        PageRunEntry {
            pid: 2,
            flags: page_flags::COW,
            va: 0x40_0000,
            gpa: cow,
            pages: 1
        },
        PageRunEntry {
            pid: 2,
            flags: 0,
            va: 0x40_1000,
            gpa: POOL.0 + 0x8000,
            pages: 2
        },
    ];
    let data = inv.blob_add(b"hello");
    inv.pipes.insert(
        7,
        PipeEntry {
            id: 7,
            data,
            _reserved: 0,
        },
    );
    fd(&mut inv, 1, 0, fd_state::PIPE_READ, 1, 7);
    fd(&mut inv, 2, 1, fd_state::PIPE_WRITE, 2, 7);
    fd(&mut inv, 2, 2, fd_state::PIPE_WRITE, 2, 7);
    inv.zombies.push(ZombieEntry {
        pid: 3,
        status: 0x100,
    });
    inv
}

fn record(inv: &Inventory, version: u32) -> Vec<u8> {
    let mut out = Vec::new();
    inv.write(&mut out, version, RELEASE.as_bytes());
    out
}

fn check(inv: &Inventory) -> Result<Plan, Refusal> {
    let r = record(inv, 2);
    verdict(&r, &args(r.len(), adopt_flags::CHECK), false)
}

#[test]
fn a_record_of_live_processes_pipes_and_a_zombie_is_planned_parents_first() {
    let p = check(&scenario()).expect("adopts");
    assert_eq!(p.order, [1, 2]);
    assert_eq!(p.zombies, [3]);
    assert_eq!(p.threads, 2);
    assert_eq!(p.frames.len(), 3, "{:?}", p.frames);
    assert_eq!(
        p.frames[&(POOL.0 + 0x1000)],
        2,
        "the shared frame has two references"
    );
    assert_eq!(
        p.descriptions, 2,
        "fds 1 and 2 of pid 2 share one description"
    );
    assert_eq!((p.pipes, p.pipe_bytes), (1, 5));
}

#[test]
fn children_come_after_their_parents_whatever_their_pids() {
    let mut inv = scenario();
    // Pid 2's parent becomes pid 4, a child of init with a larger pid.
    inv.processes[1].ppid = 4;
    inv.processes.push(process(4, 1, false));
    inv.vmas.push(VmaEntry {
        pid: 4,
        start: 0x40_0000,
        end: 0x40_1000,
        ..FromZeros::new_zeroed()
    });
    thread(&mut inv, 4, 4, thread_state::USER);
    state(&mut inv, 4);
    assert_eq!(check(&inv).expect("adopts").order, [1, 4, 2]);
}

#[test]
fn what_an_adopter_cannot_rebuild_is_refused_by_name() {
    let mut inv = scenario();
    inv.thread_states[1].state = thread_state::SYSCALL;
    inv.threads[1].state = thread_state::SYSCALL;
    assert_eq!(check(&inv), Err(Refusal::ThreadNotStopped(2)));

    let mut inv = scenario();
    inv.states.retain(|s| s.pid != 2);
    assert_eq!(check(&inv), Err(Refusal::NoState(2)));

    let mut inv = scenario();
    inv.processes[0].flags = process_flags::ZOMBIE;
    inv.processes[0].nr_threads = 0;
    inv.zombies.push(ZombieEntry { pid: 1, status: 0 });
    inv.zombies.sort_by_key(|z| z.pid);
    inv.thread_states.retain(|t| t.pid != 1);
    assert_eq!(check(&inv), Err(Refusal::NoInit));

    let mut inv = scenario();
    inv.processes[1].ppid = 9;
    assert_eq!(check(&inv), Err(Refusal::Orphan(2)));

    // A process listed as a zombie without its wait status (one caught exiting).
    let mut inv = scenario();
    inv.processes.push(process(12, 1, true));
    assert_eq!(
        check(&inv),
        Err(Refusal::Process(12, "a zombie without its wait status"))
    );

    // A private frame mapped by a second page, copy-on-write or not.
    for flags in [page_flags::COW, 0] {
        let mut inv = scenario();
        inv.pages.push(PageRunEntry {
            pid: 2,
            flags,
            va: 0x40_3000,
            gpa: POOL.0 + 0x9000,
            pages: 1,
        });
        assert_eq!(check(&inv), Err(Refusal::FrameTwice(POOL.0 + 0x9000)));
    }
    // A copy-on-write frame that a page also maps privately.
    let mut inv = scenario();
    inv.pages[2].gpa = POOL.0;
    assert_eq!(check(&inv), Err(Refusal::FrameTwice(POOL.0 + 0x1000)));

    // Two descriptors of one description that disagree on their pipe.
    let mut inv = scenario();
    inv.pipes.insert(
        8,
        PipeEntry {
            id: 8,
            data: BlobRef::default(),
            _reserved: 0,
        },
    );
    inv.fd_states[2].object = 8;
    assert_eq!(check(&inv), Err(Refusal::Description(2)));

    let mut inv = scenario();
    let mut b = BlockerEntry {
        kind: blocker::TIMERS,
        pid: 2,
        count: 1,
        ..FromZeros::new_zeroed()
    };
    fill_name(&mut b.what, b"timers");
    inv.blockers.push(b);
    assert_eq!(check(&inv), Err(Refusal::Blockers(1)));
}

#[test]
fn a_record_out_of_its_bounds_or_of_another_shape_is_refused() {
    let inv = scenario();
    let r = record(&inv, 2);
    // A frame outside the pool the boot command names.
    let mut a = args(r.len(), adopt_flags::CHECK);
    a.pool_start += 0x10_0000;
    assert!(matches!(
        verdict(&r, &a, false),
        Err(Refusal::Record(RecordError::OutOfBounds("page frame", _)))
    ));
    // Not the length announced; a flipped byte (the CRC).
    let a = args(r.len() + 1, adopt_flags::CHECK);
    assert!(matches!(verdict(&r, &a, false), Err(Refusal::Fetch(_))));
    let mut bad = r.clone();
    let n = bad.len();
    bad[n - 3] ^= 1;
    assert!(matches!(
        verdict(&bad, &args(n, adopt_flags::CHECK), false),
        Err(Refusal::Record(_))
    ));
    // Version 1 carries no process.
    let v1 = record(&inv, 1);
    let mut a = args(v1.len(), adopt_flags::CHECK);
    a.version = 1;
    assert_eq!(verdict(&v1, &a, false), Err(Refusal::Inventory));
}

#[test]
fn a_refusal_asked_for_is_refused_and_the_switch_gets_the_checks_verdict() {
    let r = record(&scenario(), 2);
    assert_eq!(
        verdict(&r, &args(r.len(), adopt_flags::CHECK), true),
        Err(Refusal::Asked)
    );
    assert_eq!(
        verdict(&r, &args(r.len(), 0), true),
        Err(Refusal::Asked),
        "the switch too"
    );
    // Without `CHECK` (the switch) the verdict is the check's: the plan.
    assert_eq!(
        verdict(&r, &args(r.len(), 0), false),
        verdict(&r, &args(r.len(), adopt_flags::CHECK), false)
    );
    // Every reason fits `HandoverAdopted`.
    for why in [
        Refusal::Asked,
        Refusal::Trusted,
        Refusal::Backing(i32::MAX, u64::MAX),
        Refusal::Record(RecordError::OutOfBounds("page frame", u64::MAX)),
        Refusal::FileArea(i32::MAX, u64::MAX),
    ] {
        assert!(alloc::format!("{why}").len() <= MAX_ADOPT_REASON as usize);
        assert_eq!(reason(&why), alloc::format!("{why}"));
    }
}

#[test]
fn an_address_space_is_rebuilt_with_its_areas_break_and_pages_lazily_mapped() {
    let mut inv = scenario();
    inv.vmas[1].flags =
        pvmux_hypercalls::handover::vma_flags::READ | pvmux_hypercalls::handover::vma_flags::WRITE;
    inv.states[1].brk_base = 0x40_4000;
    inv.states[1].brk = 0x40_4000;
    let bytes = record(&inv, 2);
    let r = Record::parse(&bytes, (2, 2)).expect("valid");
    let mut mm = crate::linux::space::Mm::new();
    rebuild_mm(&r, 2, &mut mm, &|_, _, _| None, &SharedObjects::checked(&r)).expect("rebuilt");
    let areas: Vec<(u64, u64, u32)> = mm.vmas().map(|(s, v)| (s, v.end, v.prot)).collect();
    use pvmux_hypercalls::user::prot;
    assert_eq!(areas, [(0x40_0000, 0x40_4000, prot::READ | prot::WRITE)]);
    assert_eq!((mm.brk_base, mm.brk), (0x40_4000, 0x40_4000));
    let pages: Vec<(u64, u64, bool)> = mm.resident(0, u64::MAX).collect();
    assert_eq!(
        pages,
        [
            (0x40_0000, POOL.0 + 0x1000, true),
            (0x40_1000, POOL.0 + 0x8000, false),
            (0x40_2000, POOL.0 + 0x9000, false),
        ]
    );
    // Nothing is queued for the sandbox: the pages are mapped at their first fault.
    assert!(mm.take_batch().ops.is_empty());
    // A second rebuild over the same map is refused (the areas are taken).
    assert_eq!(
        rebuild_mm(&r, 2, &mut mm, &|_, _, _| None, &SharedObjects::checked(&r)),
        Err(Refusal::Area(2, 0x40_0000))
    );
}

#[test]
fn the_check_adopts_the_frames_on_a_shadow_of_the_tenants_pool() {
    let inv = scenario();
    let r = record(&inv, 2);
    // A pool too small for the frames' references: the frame past its end is named by
    // `Record::check` first; a shadow pool refuses an unaligned or foreign frame itself.
    let mut frames = BTreeMap::new();
    frames.insert(POOL.0 + 0x1000, 2u32);
    assert_eq!(
        crate::linux::pool::check_adoption(POOL.0, POOL.1, &frames),
        Ok(())
    );
    frames.insert(POOL.1, 1);
    assert_eq!(
        crate::linux::pool::check_adoption(POOL.0, POOL.1, &frames),
        Err(POOL.1)
    );
    assert!(check(&inv).is_ok(), "{}", r.len());
}

#[test]
fn a_file_area_is_backed_again_with_the_image_range_its_writer_used() {
    use pvmux_hypercalls::handover::{file_area_flags, file_image_flags, FileImageEntry};
    let mut inv = scenario();
    let path = inv.blob_add(b"/usr/lib/libc.so.6");
    inv.file_areas.push(FileAreaEntry {
        pid: 2,
        flags: file_area_flags::IMAGE,
        start: 0x40_0000,
        offset: 0x2000,
        path,
    });
    // Without its image range (a writer that predates section 15): refused.
    assert_eq!(check(&inv), Err(Refusal::FileArea(2, 0x40_0000)));
    inv.file_images.push(FileImageEntry {
        pid: 2,
        flags: file_image_flags::BUS_PAST_EOF,
        start: 0x40_0000,
        lo: 0x2000,
        hi: 0x4000,
    });
    check(&inv).expect("adopts");
    let bytes = record(&inv, 2);
    let r = Record::parse(&bytes, (2, 2)).expect("valid");
    let seen = core::cell::RefCell::new(Vec::new());
    let mut mm = crate::linux::space::Mm::new();
    rebuild_mm(
        &r,
        2,
        &mut mm,
        &|a, i, p| {
            seen.borrow_mut()
                .push((a.start, a.offset, i.lo, i.hi, i.flags, p.to_vec()));
            None
        },
        &SharedObjects::checked(&r),
    )
    .expect("rebuilt");
    assert_eq!(
        seen.into_inner(),
        [(
            0x40_0000,
            0x2000,
            0x2000,
            0x4000,
            file_image_flags::BUS_PAST_EOF,
            b"/usr/lib/libc.so.6".to_vec()
        )]
    );
    // A range that names no file area, or is not page aligned, fails `Record::check`.
    for (start, lo) in [(0x50_0000, 0x2000), (0x40_0000, 0x2001)] {
        let mut bad = inv.file_images.clone();
        bad[0].start = start;
        bad[0].lo = lo;
        let mut inv2 = scenario();
        inv2.blob = inv.blob.clone();
        inv2.file_areas = inv.file_areas.clone();
        inv2.file_images = bad;
        assert!(
            matches!(
                check(&inv2),
                Err(Refusal::Record(RecordError::OutOfBounds(..)))
            ),
            "{start:#x} {lo:#x}"
        );
    }
}

#[test]
fn descriptors_share_their_descriptions_and_pipes_come_back_with_their_bytes() {
    use crate::linux::files::file::Kind;
    let mut inv = scenario();
    // Init's console on fd 1, and a host file the adopter is asked to open.
    let console = inv.blob_add(b"/dev/console");
    inv.fd_states.push(FdStateEntry {
        pid: 1,
        fd: 1,
        kind: fd_state::CONSOLE,
        fd_flags: 1,
        status_flags: 1,
        aux: 0,
        description: 3,
        pos: 0,
        object: 2,
        path: console,
    });
    let file = inv.blob_add(b"/etc/hostname");
    inv.fd_states.push(FdStateEntry {
        pid: 1,
        fd: 4,
        kind: fd_state::HOST_FILE,
        fd_flags: 0,
        status_flags: 0,
        aux: 0,
        description: 4,
        pos: 3,
        object: 0,
        path: file,
    });
    inv.fd_states.sort_by_key(|f| (f.pid, f.fd));
    let bytes = record(&inv, 2);
    let r = Record::parse(&bytes, (2, 2)).expect("valid");
    let mut d = Descriptions::new(&r, 0, false).expect("pipes");
    let asked = core::cell::RefCell::new(Vec::new());
    let open: OpenPath<'_> = &|f, p| {
        asked.borrow_mut().push((f.fd, p.to_vec()));
        Ok(None)
    };
    let init = rebuild_fds(&r, 1, &mut d, open).expect("init's");
    let child = rebuild_fds(&r, 2, &mut d, open).expect("the child's");
    assert_eq!(asked.into_inner(), [(4, b"/etc/hostname".to_vec())]);
    assert_eq!(init.open_fds(), [0, 1], "the file left out");
    assert!(init.cloexec(1).unwrap() && !init.cloexec(0).unwrap());
    assert!(matches!(
        init.get(1).unwrap().kind,
        Kind::Console {
            out: 2,
            tty: false,
            ..
        }
    ));
    // One description for fds 1 and 2 of the child; the pipe keeps its id and its bytes.
    let (w1, w2) = (child.get(1).unwrap(), child.get(2).unwrap());
    assert!(Arc::ptr_eq(&w1, &w2));
    let rd = init.get(0).unwrap();
    let Kind::PipeRead(p) = &rd.kind else {
        panic!("a pipe's read end")
    };
    assert_eq!(p.id, 7);
    let mut buf = [0u8; 16];
    assert_eq!(p.read(&mut buf, true), Ok(5));
    assert_eq!(&buf[..5], b"hello");
    // The last writer's end (with the adoption's own table of descriptions) closes the
    // pipe for its reader: one writer was counted.
    drop((child, w1, w2, d));
    assert_eq!(p.read(&mut buf, true), Ok(0), "end of file");

    // More bytes than a pipe holds: refused.
    let mut inv = scenario();
    let big = inv.blob_add(&[7u8; 64 * 1024 + 1]);
    inv.pipes.get_mut(&7).unwrap().data = big;
    assert_eq!(check(&inv), Err(Refusal::Pipe(7)));
}

#[test]
fn a_process_is_decoded_with_its_credentials_limits_dispositions_and_threads() {
    use pvmux_hypercalls::handover::SigActionEntry;
    let mut inv = scenario();
    let groups: Vec<u8> = [10u32, 20].iter().flat_map(|g| g.to_le_bytes()).collect();
    let groups = inv.blob_add(&groups);
    let rl: Vec<u8> = (0..16u64)
        .flat_map(|i| {
            let (cur, max) = if i == 7 {
                (256, 1024)
            } else {
                (u64::MAX, u64::MAX)
            };
            cur.to_le_bytes().into_iter().chain(max.to_le_bytes())
        })
        .collect();
    let rlimits = inv.blob_add(&rl);
    let s = &mut inv.states[1];
    s.uids = [1000, 1001, 1002, 1003];
    s.gids = [100, 101, 102, 103];
    s.umask = 0o027;
    s.groups = groups;
    s.rlimits = rlimits;
    s.caps = [1, 3, 0, 7, 0];
    s.cap_flags = 1;
    s.exit_signal = 17;
    inv.sigactions.push(SigActionEntry {
        pid: 2,
        signo: 15,
        handler: 0x40_1234,
        flags: 0x0400_0000,
        restorer: 0x40_1300,
        mask: 1 << 1,
    });
    inv.thread_states[1].sigmask = 1 << 9;
    inv.thread_states[1].clear_child_tid = 0x40_2000;
    inv.thread_states[1].altstack_sp = 0x40_3000;
    inv.thread_states[1].altstack_size = 0x1000;
    let bytes = record(&inv, 2);
    let r = Record::parse(&bytes, (2, 2)).expect("valid");
    let p = process_parts(&r, 2).expect("decoded");
    assert_eq!((p.pid, p.ppid, p.pgid, p.sid), (2, 1, 1, 1));
    assert_eq!((p.exit_signal, p.umask), (17, 0o027));
    assert_eq!(
        (p.creds.uid, p.creds.euid, p.creds.suid, p.creds.fsuid),
        (1000, 1001, 1002, 1003)
    );
    assert_eq!((p.creds.gid, p.creds.fsgid), (100, 103));
    assert_eq!(p.creds.groups, [10, 20]);
    assert_eq!(p.creds.caps.sets.permitted, 3);
    assert!(p.creds.caps.keep);
    let l = p.rlimits.expect("carried").get(7);
    assert_eq!((l.cur, l.max), (256, 1024));
    assert_eq!(p.sigactions[14].handler, 0x40_1234);
    assert_eq!(p.sigactions[14].mask, 1 << 1);
    assert_eq!(p.sigactions[0].handler, 0, "the others at their default");
    assert_eq!(
        (p.exe.as_slice(), p.cwd.as_slice()),
        (&b"/bin/sh"[..], &b"/"[..])
    );
    assert_eq!(p.threads.len(), 1);
    let t = &p.threads[0];
    assert_eq!((t.tid, t.regs.rip, t.sigmask), (2, 0x40_1000, 1 << 9));
    assert_eq!(t.clear_child_tid, 0x40_2000);
    assert_eq!(t.altstack, (0x40_3000, 0x1000, 0));
    assert_eq!(t.fp.len(), 576);
    // Sets that break Linux's rules (effective beyond permitted) are refused.
    inv.states[1].caps = [4, 3, 0, 7, 0];
    let bytes = record(&inv, 2);
    let r = Record::parse(&bytes, (2, 2)).expect("valid");
    assert!(matches!(process_parts(&r, 2), Err(Refusal::Process(2, _))));
    assert!(matches!(check(&inv), Err(Refusal::Process(2, _))));
}

#[test]
fn the_id_counter_goes_past_every_pid_and_tid_and_zombies_keep_their_wait_status() {
    let mut inv = scenario();
    // A thread whose tid is the highest id of the record.
    thread(&mut inv, 9, 2, thread_state::USER);
    inv.processes[1].nr_threads = 2;
    let bytes = record(&inv, 2);
    let r = Record::parse(&bytes, (2, 2)).expect("valid");
    assert_eq!(highest_id(&r), 9);
    inv.processes.push(process(12, 1, true));
    inv.zombies.push(ZombieEntry { pid: 12, status: 9 });
    fill_name(&mut inv.processes[3].comm, b"sleep");
    let bytes = record(&inv, 2);
    let r = Record::parse(&bytes, (2, 2)).expect("valid");
    assert_eq!(highest_id(&r), 12, "a zombie's pid too");
    assert_eq!(
        zombie_parts(&r),
        [
            ZombieParts {
                pid: 3,
                ppid: 1,
                pgid: 1,
                sid: 1,
                comm: Vec::new(),
                status: 0x100
            },
            ZombieParts {
                pid: 12,
                ppid: 1,
                pgid: 1,
                sid: 1,
                comm: b"sleep".to_vec(),
                status: 9
            }
        ]
    );
    assert_eq!(check(&inv).expect("adopts").zombies, [3, 12]);
}

#[test]
fn an_adopted_thread_resumes_with_its_registers_fpu_image_and_signal_state() {
    use crate::linux::signal::{SigSet, SigState};
    let mut inv = scenario();
    let st = &mut inv.thread_states[1];
    // Rewound at the freeze: on its `syscall` instruction, `rax` its number (read).
    st.regs.rip = 0x40_1002;
    st.regs.rax = 0;
    st.regs.rdi = 3;
    st.regs.rflags = 0x246 | (1 << 14) | (3 << 12); // NT and IOPL are not the user's
    st.restart_nr = 0;
    st.fs_base = 0x7000_0000;
    st.sigmask = (1 << 9) | (1 << 1); // SIGKILL (bit 8) is never blocked
    st.pending = 1 << 9;
    st.altstack_sp = 0x40_3000;
    st.altstack_size = 0x4000;
    let bytes = record(&inv, 2);
    let r = Record::parse(&bytes, (2, 2)).expect("valid");
    let t = &process_parts(&r, 2).expect("decoded").threads[0];
    let (us, fresh) = crate::linux::task::adopted_state(t);
    assert_eq!((us.regs.rip, us.regs.rax, us.regs.rdi), (0x40_1002, 0, 3));
    assert_eq!(us.regs.rflags & (1 << 14 | 3 << 12), 0, "user flags only");
    assert_eq!(us.regs.rflags & 0x246, 0x246, "the user's flags kept");
    assert_eq!(us.fs_base, 0x7000_0000);
    assert_eq!((us.fp.len(), us.fp_token), (576, 0));
    assert!(!fresh, "its FPU image, not the initial state");
    let mut bare = t.clone();
    bare.fp.clear();
    assert!(
        crate::linux::task::adopted_state(&bare).1,
        "no image: the initial state"
    );
    let sig = SigState::adopted(
        SigSet::from_bits(t.sigmask | 1 << 8),
        SigSet::from_bits(t.pending),
        t.altstack,
    );
    assert_eq!(sig.blocked().bits(), (1 << 9) | (1 << 1));
    assert_eq!(sig.own_pending().bits(), 1 << 9);
    assert!(!sig.has_deliverable(), "pending but blocked");
    assert_eq!(sig.altstack_raw(), (0x40_3000, 0x4000, 0));
    // A stack too small to be one, or disabled, is none.
    for raw in [(0x40_3000, 0x100, 0), (0x40_3000, 0x4000, 2)] {
        let s = SigState::adopted(SigSet::EMPTY, SigSet::EMPTY, raw);
        assert_eq!(s.altstack_raw(), (0, 0, 2), "{raw:?}");
    }
}

#[test]
fn carried_timers_are_planned_and_checked_before_adoption() {
    use pvmux_hypercalls::handover::{timer_clock, timer_kind, timer_notify, TimerEntry};
    let alarm = TimerEntry {
        pid: 1,
        kind: timer_kind::ITIMER_REAL,
        id: 0,
        clock: timer_clock::REALTIME,
        notify: timer_notify::SIGNAL,
        signo: 14,
        tid: 0,
        overrun: 0,
        value: 0,
        next: 5_000_000_000,
        interval: 0,
        _reserved: 0,
    };
    let posix = TimerEntry {
        pid: 2,
        kind: timer_kind::POSIX,
        id: 0,
        clock: timer_clock::PROCESS_CPU,
        notify: timer_notify::THREAD,
        signo: 34,
        tid: 2,
        value: 9,
        next: 1_000,
        interval: 1_000,
        ..alarm
    };
    let mut inv = scenario();
    inv.timers = alloc::vec![alarm, posix];
    assert_eq!(check(&inv).expect("adopts").timers, 2);
    // The record's check refuses what is not a timer of a live process (the zombie, 3), or
    // aims at a thread of another process, before anything is planned.
    for bad in [
        TimerEntry { pid: 3, ..alarm },
        TimerEntry { tid: 1, ..posix },
        TimerEntry { signo: 0, ..posix },
    ] {
        let mut inv = scenario();
        inv.timers = alloc::vec![bad];
        assert!(
            matches!(
                check(&inv),
                Err(Refusal::Record(RecordError::OutOfBounds(..)))
            ),
            "{bad:?}"
        );
    }
}

/// The scenario with event objects: init holds an eventfd (fd 5, count 3, semaphore), a
/// signalfd (fd 6) and an epoll (fd 8) over the eventfd, the pipe's read end (fd 0), the
/// child's timerfd (fd 7 of pid 2, one description) and a host file (left out by a check).
fn events_scenario() -> Inventory {
    use pvmux_hypercalls::handover::{
        epoll_item_flags, eventfd_flags, timer_clock, EpollItemEntry, TimerFdEntry,
    };
    let mut inv = scenario();
    fd(&mut inv, 1, 5, fd_state::EVENTFD, 10, 3);
    inv.fd_states.last_mut().unwrap().aux = eventfd_flags::SEMAPHORE;
    fd(&mut inv, 1, 6, fd_state::SIGNALFD, 11, 1 << (10 - 1));
    fd(&mut inv, 2, 7, fd_state::TIMERFD, 12, 0);
    fd(&mut inv, 1, 8, fd_state::EPOLL, 13, 0);
    inv.timerfds.insert(
        12,
        TimerFdEntry {
            description: 12,
            clock: timer_clock::MONOTONIC,
            flags: 0,
            next: 1 << 40,
            interval: 10_000_000,
            ticks: 4,
        },
    );
    let item = |fd: i32, target: u64, data: u64| EpollItemEntry {
        epoll: 13,
        target,
        fd,
        events: 0x001 | 0x008 | 0x010,
        data,
        flags: 0,
        _reserved: 0,
    };
    inv.epoll_items = alloc::vec![
        item(0, 1, 0xa0),
        item(5, 10, 0xa5),
        EpollItemEntry {
            flags: epoll_item_flags::DISABLED,
            events: 0x001 | (1 << 30) | 0x008 | 0x010,
            ..item(7, 12, 0xa7)
        },
    ];
    inv.fd_states.sort_by_key(|f| (f.pid, f.fd));
    inv
}

#[test]
fn event_objects_come_back_and_epolls_are_linked_after_every_description() {
    use crate::linux::files::epoll::Epoll;
    use crate::linux::files::eventfd::EventFd;
    use crate::linux::files::object::downcast;
    use crate::linux::files::poll::poll_mask;
    use crate::linux::signal::signalfd::SignalFd;
    use crate::linux::timers::timerfd::TimerFd;
    let inv = events_scenario();
    let p = check(&inv).expect("adopts");
    assert_eq!((p.event_objects, p.epoll_items), (4, 3));
    let bytes = record(&inv, 2);
    let r = Record::parse(&bytes, (2, 2)).expect("valid");
    let mut d = Descriptions::new(&r, 0, false).expect("pipes");
    let init = rebuild_fds(&r, 1, &mut d, &|_, _| Ok(None)).expect("init's");
    let child = rebuild_fds(&r, 2, &mut d, &|_, _| Ok(None)).expect("the child's");
    // The epoll names the child's timerfd: linked once both tables exist.
    let n = crate::linux::handover::events::link_epolls(&r, &d.files, &d.left_out).expect("links");
    assert_eq!(n, 3);
    let ev = init.get(5).unwrap();
    assert_eq!(downcast::<EventFd>(&ev).unwrap().carried(), (3, true));
    let sf = init.get(6).unwrap();
    assert_eq!(downcast::<SignalFd>(&sf).unwrap().carried(), 1 << 9);
    let tf = child.get(7).unwrap();
    assert!(downcast::<TimerFd>(&tf).is_some());
    assert_eq!(
        poll_mask(&tf) & 1,
        1,
        "its expirations not read yet are kept"
    );
    assert_eq!(d.arms.len(), 1);
    assert_eq!((d.arms[0].1, d.arms[0].2), (1 << 40, 10_000_000));
    let ep = init.get(8).unwrap();
    let items = downcast::<Epoll>(&ep).unwrap().carried();
    let got: Vec<(i32, u64, bool)> = items.iter().map(|i| (i.fd, i.data, i.disabled)).collect();
    assert_eq!(got, [(0, 0xa0, false), (5, 0xa5, false), (7, 0xa7, true)]);
    assert!(Arc::ptr_eq(&items[0].file, &init.get(0).unwrap()));
    assert!(Arc::ptr_eq(&items[2].file, &tf));
    // Ready at once: the eventfd's count, the pipe's bytes (level-triggered).
    assert_eq!(poll_mask(&ep) & 1, 1, "the epoll is readable");
    drop((init, child, d));

    // What the adopter refuses: a registration of an unknown description, one flagged as
    // an epoll that is not, one of no epoll.
    let mut bad = events_scenario();
    bad.epoll_items[1].target = 99;
    assert_eq!(check(&bad), Err(Refusal::Epoll(13, 5)));
    let mut bad = events_scenario();
    bad.epoll_items[1].flags = pvmux_hypercalls::handover::epoll_item_flags::EPOLL;
    assert_eq!(check(&bad), Err(Refusal::Epoll(13, 5)));
    let mut bad = events_scenario();
    bad.epoll_items[0].epoll = 10; // the eventfd's description
    assert_eq!(check(&bad), Err(Refusal::Epoll(10, 0)));
    // A timerfd without its timer: Record::check refuses it.
    let mut bad = events_scenario();
    bad.timerfds.clear();
    assert!(matches!(check(&bad), Err(Refusal::Record(_))));
}

/// The scenario with anonymous shared memory: two pages at 0x50_0000 in init and its child
/// (one object, number 1; `fork` shared it), page 0 resident in init only.
fn with_shared_memory() -> Inventory {
    use pvmux_hypercalls::handover::vma_flags;
    let mut inv = scenario();
    for pid in [1, 2] {
        inv.vmas.push(VmaEntry {
            pid,
            flags: vma_flags::READ | vma_flags::WRITE | vma_flags::SHARED,
            start: 0x50_0000,
            end: 0x50_2000,
            ..FromZeros::new_zeroed()
        });
        inv.shm_areas.push(ShmAreaEntry {
            pid,
            flags: 0,
            start: 0x50_0000,
            object: 1,
            pgoff: 0,
            path: BlobRef::default(),
        });
    }
    inv.vmas.sort_by_key(|v| (v.pid, v.start));
    inv.pages.push(PageRunEntry {
        pid: 1,
        flags: page_flags::SHARED,
        va: 0x50_0000,
        gpa: POOL.0 + 0x2_0000,
        pages: 1,
    });
    inv.pages.sort_by_key(|p| (p.pid, p.va));
    inv.shm_pages.push(ShmPagesEntry {
        object: 1,
        index: 0,
        gpa: POOL.0 + 0x2_0000,
        pages: 1,
    });
    inv
}

#[test]
fn shared_memory_areas_map_their_object_in_every_process() {
    let p = check(&with_shared_memory()).expect("adopts");
    assert_eq!(
        p.frames[&(POOL.0 + 0x2_0000)],
        2,
        "the object's reference and init's mapping"
    );
    let bytes = record(&with_shared_memory(), 2);
    let r = Record::parse(&bytes, (2, 2)).expect("valid");
    let shared = SharedObjects::checked(&r);
    for (pid, resident) in [(1, true), (2, false)] {
        let mut mm = crate::linux::space::Mm::new();
        rebuild_mm(&r, pid, &mut mm, &|_, _, _| None, &shared).expect("rebuilt");
        let (start, v) = mm
            .vmas()
            .find(|(s, _)| *s == 0x50_0000)
            .expect("the shared area");
        assert_eq!((start, v.end), (0x50_0000, 0x50_2000));
        assert_eq!(v.shm.as_ref().map(|r| r.pgoff), Some(0), "pid {pid}");
        let pages: Vec<(u64, u64, bool)> = mm.resident(0x50_0000, 0x50_2000).collect();
        let want: &[(u64, u64, bool)] = if resident {
            &[(0x50_0000, POOL.0 + 0x2_0000, false)]
        } else {
            &[]
        };
        assert_eq!(pages, want, "pid {pid}");
    }
}

#[test]
fn a_shared_area_without_its_object_or_with_another_frame_is_refused() {
    // No area entry for init's shared memory: refused by name, as before areas were carried.
    let mut inv = with_shared_memory();
    inv.shm_areas.retain(|a| a.pid != 1);
    assert_eq!(check(&inv), Err(Refusal::Area(1, 0x50_0000)));
    // Init's page is not the object's frame at its index.
    let mut inv = with_shared_memory();
    inv.shm_pages[0].gpa = POOL.0 + 0x2_1000;
    assert_eq!(check(&inv), Err(Refusal::Pages(1, 0x50_0000)));
    // A page of the object at an index init's area does not reach holds nothing of init's.
    let mut inv = with_shared_memory();
    inv.shm_areas[0].pgoff = 1;
    assert_eq!(check(&inv), Err(Refusal::Pages(1, 0x50_0000)));
    // An in-memory file's area with no filesystem carried.
    let mut inv = with_shared_memory();
    inv.shm_areas[1].flags = shm_area_flags::FILE;
    inv.shm_areas[1].path = inv.blob_add(b"/tmp/x");
    inv.shm_areas[1].object = 9;
    assert_eq!(check(&inv), Err(Refusal::Area(2, 0x50_0000)));
}

#[test]
fn the_console_state_comes_back_as_it_was_carried() {
    let mut inv = scenario();
    let input = inv.blob_add(b"ls\nab");
    let lines = inv.blob_add(&[3u8, 0, 0, 0]);
    let edit = inv.blob_add(b"par");
    let mut termios = [0u8; 44];
    termios[12] = 0o2; // ICANON only: no echo
    inv.console.push(pvmux_hypercalls::handover::ConsoleEntry {
        termios,
        flags: console_flags::EOF,
        winsize: [30, 90, 0, 0],
        fg_pgrp: 2,
        reserved: 0,
        input,
        lines,
        edit,
    });
    check(&inv).expect("adopts");
    let bytes = record(&inv, 2);
    let r = Record::parse(&bytes, (2, 2)).expect("valid");
    assert_eq!(
        carried_console(&r),
        Some(crate::linux::files::tty::CarriedConsole {
            termios,
            eof: true,
            winsize: [30, 90, 0, 0],
            fg_pgrp: 2,
            input: b"ls\nab".to_vec(),
            lines: alloc::vec![3],
            edit: b"par".to_vec(),
        })
    );
    assert_eq!(
        carried_console(&Record::parse(&record(&scenario(), 2), (2, 2)).expect("valid")),
        None
    );
}
