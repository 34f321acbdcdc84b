//! Small system calls: identity, time, randomness, limits, CPU time, system information.

use super::uaccess::{copy_to_user, write_val};
use super::{Errno, SysResult};

pub(crate) use crate::time::realtime_ns;

/// `AT_HWCAP`: CPUID leaf 1 EDX, as Linux reports it (asked once: in a VM `cpuid` traps to
/// the hypervisor, ~4 µs on a nested EPYC, and every `execve` wants it).
pub(crate) fn cpuid_hwcap() -> u64 {
    use core::sync::atomic::{AtomicU64, Ordering};
    /// `u64::MAX`: not asked yet (EDX has 32 bits).
    static HWCAP: AtomicU64 = AtomicU64::new(u64::MAX);
    match HWCAP.load(Ordering::Relaxed) {
        u64::MAX => {
            let v = u64::from(core::arch::x86_64::__cpuid(1).edx);
            HWCAP.store(v, Ordering::Relaxed);
            v
        }
        v => v,
    }
}

fn put_str(b: &mut [u8], off: usize, s: &[u8]) {
    b[off..off + s.len()].copy_from_slice(s);
}

/// The names `sethostname` and `setdomainname` gave (`None`: not set since boot).
static NAMES: crate::irq::IrqLock<[Option<alloc::vec::Vec<u8>>; 2]> =
    crate::irq::IrqLock::new([None, None]);

/// Longest host or domain name (Linux's `__NEW_UTS_LEN`).
const NAME_MAX: u64 = 64;

/// The guest's host name: what `sethostname` set, else the boot arguments'
/// (`pvmux run --hostname`, an OCI container's `hostname`), else `pvmux`. At most 64 bytes.
pub(crate) fn hostname() -> alloc::vec::Vec<u8> {
    NAMES.lock()[0]
        .clone()
        .unwrap_or_else(|| crate::boot::args().hostname().unwrap_or(b"pvmux").to_vec())
}

/// The guest's NIS domain name: what `setdomainname` set, else `(none)`, as Linux's.
pub(crate) fn domainname() -> alloc::vec::Vec<u8> {
    NAMES.lock()[1]
        .clone()
        .unwrap_or_else(|| b"(none)".to_vec())
}

/// `sethostname(name, len)` (`which` 0) and `setdomainname` (1): `CAP_SYS_ADMIN` (`EPERM`),
/// at most 64 bytes (`EINVAL`). The guest is its own UTS namespace: the host's names do not
/// change.
pub(crate) fn sys_set_name(which: usize, name: u64, len: u64) -> SysResult {
    if len > NAME_MAX {
        return Err(Errno::EINVAL);
    }
    let p = super::task::current_process();
    if !p.creds.lock().capable(super::caps::cap::SYS_ADMIN) {
        return Err(Errno::EPERM);
    }
    let mut v = alloc::vec![0u8; len as usize];
    super::uaccess::copy_from_user(name, &mut v)?;
    NAMES.lock()[which] = Some(v);
    Ok(0)
}

/// `mlockall(flags)`: accepted (nothing is ever swapped) for `MCL_CURRENT` and/or
/// `MCL_FUTURE`, with `MCL_ONFAULT`; other flags, or `MCL_ONFAULT` alone, `EINVAL`.
pub(crate) fn sys_mlockall(flags: u64) -> SysResult {
    const CURRENT: u64 = 1;
    const FUTURE: u64 = 2;
    const ONFAULT: u64 = 4;
    if flags & !(CURRENT | FUTURE | ONFAULT) != 0 || flags & (CURRENT | FUTURE) == 0 {
        return Err(Errno::EINVAL);
    }
    Ok(0)
}

/// The personality flags `personality` takes: `ADDR_NO_RANDOMIZE` (what `setarch -R` and
/// gdb ask for: the guest never randomises mappings anyway) and `ADDR_COMPAT_LAYOUT`.
const PERSONALITY_KEPT: u32 = 0x004_0000 | 0x020_0000;

/// `personality(persona)`: the process's execution domain and flags before the call, set to
/// `persona` unless it is `0xffffffff` (a query). Kept per process as Linux keeps them.
/// Only what this kernel is anyway is accepted: the Linux domain with
/// [`PERSONALITY_KEPT`]'s flags; another domain (`PER_LINUX32`: 32-bit `uname`) or a flag
/// that would change behaviour here (`READ_IMPLIES_EXEC`, `ADDR_LIMIT_32BIT`, `UNAME26`,
/// ...) is `EINVAL` rather than kept and not honoured.
pub(crate) fn personality(p: &super::task::Process, persona: u32) -> SysResult {
    use core::sync::atomic::Ordering::Relaxed;
    if persona == u32::MAX {
        return Ok(p.personality.load(Relaxed).into());
    }
    if persona & !PERSONALITY_KEPT != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(p.personality.swap(persona, Relaxed).into())
}

/// `uname(buf)`.
pub(crate) fn sys_uname(buf: u64) -> SysResult {
    let mut u = [0u8; 65 * 6];
    put_str(&mut u, 0, b"Linux");
    put_str(&mut u, 65, &hostname());
    put_str(&mut u, 130, super::handover::release());
    put_str(&mut u, 195, b"#1 SMP pvmux guest kernel");
    put_str(&mut u, 260, b"x86_64");
    put_str(&mut u, 325, &domainname());
    copy_to_user(buf, &u)?;
    Ok(0)
}

/// `sysinfo(info)`: the memory figures of `/proc/meminfo` (total = the guest's `--mem`).
pub(crate) fn sys_sysinfo(info: u64) -> SysResult {
    let mut b = [0u8; 112];
    let up = crate::time::now_ns() / 1_000_000_000;
    let m = super::procfs::mem_figures();
    let st = crate::fs::pagecache::stats();
    b[0..8].copy_from_slice(&up.to_le_bytes());
    b[32..40].copy_from_slice(&(m.total * 1024).to_le_bytes());
    b[40..48].copy_from_slice(&(m.free * 1024).to_le_bytes());
    // sharedram: the memory filesystem's pages; bufferram: the clean host-file cache.
    b[48..56].copy_from_slice(&(m.shmem * 1024).to_le_bytes());
    b[56..64].copy_from_slice(&(st.clean_pages * 4096).to_le_bytes());
    let procs = super::task::all_processes().len() as u16;
    b[80..82].copy_from_slice(&procs.to_le_bytes());
    b[104..108].copy_from_slice(&1u32.to_le_bytes()); // mem_unit
    copy_to_user(info, &b)?;
    Ok(0)
}

/// `getrandom(buf, len, flags)`: bytes of the kernel's generator (never blocks: it is
/// seeded at first use). Flags: `GRND_NONBLOCK` (1), `GRND_RANDOM` (2), `GRND_INSECURE` (4).
pub(crate) fn sys_getrandom(buf: u64, len: u64, flags: u64) -> SysResult {
    if flags & !7 != 0 || flags & 6 == 6 {
        return Err(Errno::EINVAL);
    }
    // Through a small buffer on the stack: a request costs the kernel heap nothing.
    let n = len.min(1 << 20);
    let mut tmp = [0u8; 256];
    let mut done = 0u64;
    while done < n {
        let k = (n - done).min(tmp.len() as u64) as usize;
        super::files::random::fill(&mut tmp[..k]);
        // A fault after some bytes returns those, as Linux.
        if let Err(e) = copy_to_user(buf + done, &tmp[..k]) {
            return if done > 0 { Ok(done) } else { Err(e) };
        }
        done += k as u64;
    }
    Ok(n)
}

fn write_timespec(va: u64, ns: u64) -> Result<(), Errno> {
    write_val(
        va,
        &[(ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64],
    )
}

/// The CPU time of a CPU-time clock: `CLOCK_PROCESS_CPUTIME_ID` (2),
/// `CLOCK_THREAD_CPUTIME_ID` (3), or a negative clock id of `clock_getcpuclockid` /
/// `pthread_getcpuclockid` (`(~pid << 3) | flags`: bit 2 = thread, low bits 0 = user +
/// system, 1 = user, 2 = scheduled time).
fn cpu_clock_ns(clk: i32) -> Result<u64, Errno> {
    use super::cputime::{process_usage, thread_usage};
    use super::task;
    let (usage, which) = match clk {
        2 => (process_usage(&task::current_process()), 2),
        3 => (thread_usage(&task::current_task()), 2),
        c if c < 0 => {
            let id = !(c >> 3);
            let which = c & 3;
            if which == 3 {
                return Err(Errno::EINVAL);
            }
            let usage = if c & 4 != 0 {
                let t = if id == 0 {
                    task::current_task()
                } else {
                    task::find_task(id).ok_or(Errno::EINVAL)?
                };
                thread_usage(&t)
            } else {
                let p = if id == 0 {
                    task::current_process()
                } else {
                    task::find_process(id).ok_or(Errno::EINVAL)?
                };
                process_usage(&p)
            };
            (usage, which)
        }
        _ => return Err(Errno::EINVAL),
    };
    Ok(if which == 1 {
        usage.user_ns
    } else {
        usage.cpu_ns()
    })
}

/// `clock_gettime(clk, ts)`.
pub(crate) fn sys_clock_gettime(clk: u64, ts: u64) -> SysResult {
    let ns = match clk as i32 {
        0 | 5 | 8 => realtime_ns(), // REALTIME, REALTIME_COARSE, REALTIME_ALARM
        1 | 4 | 6 | 7 | 9 => crate::time::now_ns(), // MONOTONIC(_RAW,_COARSE), BOOTTIME
        c if c == 2 || c == 3 || c < 0 => cpu_clock_ns(c)?,
        _ => return Err(Errno::EINVAL),
    };
    write_timespec(ts, ns)?;
    Ok(0)
}

/// `clock_getres(clk, ts)`.
pub(crate) fn sys_clock_getres(clk: u64, ts: u64) -> SysResult {
    let c = clk as i32;
    if c > 11 || (c < 0 && cpu_clock_ns(c).is_err()) {
        return Err(Errno::EINVAL);
    }
    if ts != 0 {
        write_timespec(ts, 1)?;
    }
    Ok(0)
}

/// `gettimeofday(tv, tz)`.
pub(crate) fn sys_gettimeofday(tv: u64) -> SysResult {
    if tv != 0 {
        let ns = realtime_ns();
        write_val(
            tv,
            &[
                (ns / 1_000_000_000) as i64,
                ((ns % 1_000_000_000) / 1000) as i64,
            ],
        )?;
    }
    Ok(0)
}

/// `time(t)`.
pub(crate) fn sys_time(t: u64) -> SysResult {
    let s = realtime_ns() / 1_000_000_000;
    if t != 0 {
        write_val(t, &s)?;
    }
    Ok(s)
}

/// Sleeps until guest time `deadline`, or a signal (`EINTR`).
pub(crate) fn sleep_until(deadline: u64) -> Result<(), Errno> {
    let cur = crate::sched::current();
    loop {
        if crate::time::now_ns() >= deadline {
            return Ok(());
        }
        if super::signal::pending() {
            return Err(Errno::EINTR);
        }
        crate::sched::prepare_block(&cur);
        if super::signal::pending() {
            crate::sched::cancel_block(&cur);
            continue;
        }
        crate::sched::timed_block(deadline);
    }
}

/// `nanosleep(req, rem)`.
pub(crate) fn sys_nanosleep(req: u64, rem: u64) -> SysResult {
    let ns = super::futex::read_timespec(req)?;
    let deadline = crate::time::now_ns().saturating_add(ns);
    match sleep_until(deadline) {
        Ok(()) => Ok(0),
        Err(e) => {
            if rem != 0 {
                write_timespec(rem, deadline.saturating_sub(crate::time::now_ns()))?;
            }
            super::timers::sleep::note_restart(e, deadline, rem);
            Err(e)
        }
    }
}

/// `getrusage(who, usage)`: `RUSAGE_SELF` (0), `RUSAGE_CHILDREN` (-1), `RUSAGE_THREAD` (1).
pub(crate) fn sys_getrusage(who: i32, usage: u64) -> SysResult {
    use super::cputime::{process_usage, thread_usage};
    let u = match who {
        0 => process_usage(&super::task::current_process()),
        -1 => super::task::current_process().times.children(),
        1 => thread_usage(&super::task::current_task()),
        _ => return Err(Errno::EINVAL),
    };
    copy_to_user(usage, &u.to_rusage())?;
    Ok(0)
}

/// `times(buf)`: the process's and its reaped children's user and system time in clock
/// ticks; returns the ticks since boot.
pub(crate) fn sys_times(buf: u64) -> SysResult {
    use super::cputime::{process_usage, ticks};
    if buf != 0 {
        let p = super::task::current_process();
        let own = process_usage(&p);
        let children = p.times.children();
        let tms = [
            ticks(own.user_ns),
            ticks(own.system_ns),
            ticks(children.user_ns),
            ticks(children.system_ns),
        ];
        write_val(buf, &tms)?;
    }
    Ok(crate::time::now_ns() / (1_000_000_000 / super::cputime::CLK_TCK))
}
