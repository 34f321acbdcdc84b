//! Host unit tests that read the Linux layer's encodings back through the C library's own
//! definitions where only unsafe code can: the libc crate's `siginfo_t` accessors are unsafe
//! functions, and `linux/` has no unsafe code, its tests included.

use crate::linux::signal::{code, sig, Detail, Fault, SigInfo};

/// `bytes` (a `siginfo_t` as the kernel writes it) as the C library's `siginfo_t`.
fn as_libc(bytes: &[u8; 128]) -> libc::siginfo_t {
    const _: () = assert!(core::mem::size_of::<libc::siginfo_t>() == 128);
    // SAFETY: `siginfo_t` is a plain C struct of integers and pointers, 128 bytes (checked
    // above), for which every bit pattern is valid; the read does not need alignment.
    unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<libc::siginfo_t>()) }
}

#[test]
fn siginfo_reads_back_through_the_c_librarys_layout() {
    let kill = SigInfo::from_process(sig::SIGUSR1, code::SI_USER, 42).to_bytes();
    let k = as_libc(&kill);
    assert_eq!((k.si_signo, k.si_errno, k.si_code), (libc::SIGUSR1, 0, 0));
    // SAFETY: the accessors read the union member of the kind just written.
    assert_eq!(unsafe { (k.si_pid(), k.si_uid()) }, (42, 0));

    let child = SigInfo {
        signo: sig::SIGCHLD,
        code: code::CLD_KILLED,
        detail: Detail::Child {
            pid: 7,
            uid: 0,
            status: 9,
            utime: 3,
            stime: 4,
        },
    }
    .to_bytes();
    let c = as_libc(&child);
    assert_eq!((c.si_signo, c.si_code), (libc::SIGCHLD, libc::CLD_KILLED));
    // SAFETY: as above (the SIGCHLD member).
    unsafe {
        assert_eq!((c.si_pid(), c.si_status()), (7, 9));
        assert_eq!((c.si_utime(), c.si_stime()), (3, 4));
    }

    let segv = SigInfo::fault(
        sig::SIGSEGV,
        code::SEGV_MAPERR,
        Fault {
            addr: 0xdead_0000,
            ..Fault::default()
        },
    )
    .to_bytes();
    let s = as_libc(&segv);
    assert_eq!((s.si_signo, s.si_code), (libc::SIGSEGV, 1));
    // SAFETY: as above (the fault member).
    assert_eq!(unsafe { s.si_addr() } as u64, 0xdead_0000);
}

#[test]
fn sigqueue_information_passes_through_with_the_system_calls_signal() {
    // What `sigqueue(pid, SIGUSR2, 1234)` hands the kernel.
    let mut raw = [0u8; 128];
    raw[0..4].copy_from_slice(&99i32.to_le_bytes()); // ignored: the call's number wins
    raw[4..8].copy_from_slice(&5i32.to_le_bytes());
    raw[8..12].copy_from_slice(&code::SI_QUEUE.to_le_bytes());
    raw[16..20].copy_from_slice(&77i32.to_le_bytes());
    raw[24..32].copy_from_slice(&1234u64.to_le_bytes());
    let info = SigInfo::queued(sig::SIGUSR2, &raw);
    assert_eq!(info.code, code::SI_QUEUE);
    let q = as_libc(&info.to_bytes());
    assert_eq!((q.si_signo, q.si_errno, q.si_code), (libc::SIGUSR2, 5, -1));
    // SAFETY: the sigqueue member.
    unsafe {
        assert_eq!(q.si_pid(), 77);
        assert_eq!(q.si_value().sival_ptr as u64, 1234);
    }
}

#[test]
fn timer_signals_read_back_with_their_id_overrun_and_value() {
    let mut info = SigInfo::timer(40, 3, 0xfeed, 99);
    if let Detail::Timer { overrun, .. } = &mut info.detail {
        *overrun = 17;
    }
    let t = as_libc(&info.to_bytes());
    assert_eq!((t.si_signo, t.si_code), (40, libc::SI_TIMER));
    // SAFETY: the accessors read the union member of the kind just written (the timer
    // member shares `si_value`'s offset with the sigqueue member).
    unsafe {
        assert_eq!(t.si_value().sival_ptr as u64, 0xfeed);
    }
    // libc has no accessors for `si_timerid`/`si_overrun`: their offsets (the first two ints
    // of the union, after the 16-byte header) as `<asm-generic/siginfo.h>` defines them.
    let b = info.to_bytes();
    assert_eq!(i32::from_le_bytes(b[16..20].try_into().unwrap()), 3);
    assert_eq!(i32::from_le_bytes(b[20..24].try_into().unwrap()), 17);
}
