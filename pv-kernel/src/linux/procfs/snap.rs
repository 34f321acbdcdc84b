//! Snapshots of the kernel's state for the generated files: processes, memory, CPUs, time.
//! Each function takes what it needs under the owners' locks, one at a time, and formats
//! with [`super::text`].

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::text::{self, MapLine, MemInfo, ProcInfo};
use super::tree::Who;
use crate::linux::cputime::{self, ticks};
use crate::linux::task::{self, Process};

/// Nanoseconds since boot.
fn up_ns() -> u64 {
    crate::time::now_ns()
}

/// The vCPU count.
fn ncpus() -> u32 {
    crate::boot::nr_vcpus().max(1)
}

/// `/sys/devices/system/cpu/{online,possible,present}`.
pub(crate) fn cpu_range() -> Vec<u8> {
    format!("{}\n", text::cpu_list(ncpus())).into_bytes()
}

/// The CPU's brand string (CPUID leaves 0x8000_0002..4), or a generic name.
fn brand() -> String {
    use core::arch::x86_64::__cpuid;
    if __cpuid(0x8000_0000).eax < 0x8000_0004 {
        return String::from("pvmux virtual CPU");
    }
    let mut b = Vec::new();
    for leaf in 0x8000_0002u32..=0x8000_0004 {
        let r = __cpuid(leaf);
        for v in [r.eax, r.ebx, r.ecx, r.edx] {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    let s = String::from_utf8_lossy(&b);
    String::from(s.trim_matches(|c: char| c == '\0' || c == ' '))
}

/// The `flags` line: the features CPUID reports, by their Linux names.
fn cpu_flags() -> String {
    use core::arch::x86_64::__cpuid;
    let l1 = __cpuid(1);
    let l7 = __cpuid(7);
    let ext = __cpuid(0x8000_0001);
    let table: [(u32, u32, &str); 30] = [
        (l1.edx, 0, "fpu"),
        (l1.edx, 4, "tsc"),
        (l1.edx, 8, "cx8"),
        (l1.edx, 15, "cmov"),
        (l1.edx, 19, "clflush"),
        (l1.edx, 23, "mmx"),
        (l1.edx, 24, "fxsr"),
        (l1.edx, 25, "sse"),
        (l1.edx, 26, "sse2"),
        (l1.edx, 28, "ht"),
        (ext.edx, 11, "syscall"),
        (ext.edx, 20, "nx"),
        (ext.edx, 27, "rdtscp"),
        (ext.edx, 29, "lm"),
        (l1.ecx, 0, "pni"),
        (l1.ecx, 1, "pclmulqdq"),
        (l1.ecx, 9, "ssse3"),
        (l1.ecx, 12, "fma"),
        (l1.ecx, 13, "cx16"),
        (l1.ecx, 19, "sse4_1"),
        (l1.ecx, 20, "sse4_2"),
        (l1.ecx, 23, "popcnt"),
        (l1.ecx, 25, "aes"),
        (l1.ecx, 26, "xsave"),
        (l1.ecx, 28, "avx"),
        (l1.ecx, 30, "rdrand"),
        (l7.ebx, 3, "bmi1"),
        (l7.ebx, 5, "avx2"),
        (l7.ebx, 8, "bmi2"),
        (l7.ebx, 9, "erms"),
    ];
    let mut s = String::new();
    for (reg, bit, name) in table {
        if reg & (1 << bit) != 0 {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(name);
        }
    }
    s.push_str(" hypervisor");
    s
}

/// `/proc/cpuinfo`.
pub(crate) fn cpuinfo() -> Vec<u8> {
    text::cpuinfo(ncpus(), &brand(), 2000, &cpu_flags())
}

/// `/proc/meminfo`: the guest's memory (`--mem`), free = the user pool's free frames plus the
/// kernel's unallocated frames; `Shmem` the memory filesystem's pages, `Slab` the kernel heap.
pub(crate) fn meminfo() -> Vec<u8> {
    text::meminfo(&mem())
}

/// Free guest memory in bytes: the user pool's free frames plus the kernel's unallocated
/// frames (`MemFree`).
pub(crate) fn mem_free_bytes() -> u64 {
    let (pool_free, _) = crate::linux::pool::stats();
    let frames_free = crate::mm::frame::free_frames();
    ((pool_free as u64 + frames_free) * 4096).min(crate::linux::balloon::mem_total_bytes())
}

/// The guest's memory figures, in KiB: what `/proc/meminfo`, `/proc/vmstat` and `sysinfo`
/// all show, so `free` agrees with itself whichever it reads.
pub(crate) fn mem() -> MemInfo {
    let total = crate::linux::balloon::mem_total_bytes() / 1024;
    let free = mem_free_bytes() / 1024;
    let shmem = crate::fs::with(|fs| fs.usage().pages) * 4;
    let (heap_used, _) = crate::mm::heap::stats();
    MemInfo {
        total,
        free,
        available: (free + shmem).min(total),
        shmem,
        slab: heap_used as u64 / 1024,
    }
}

/// `/proc/vmstat` (the counters `free` and `vmstat` look for).
pub(crate) fn vmstat() -> Vec<u8> {
    let m = mem();
    format!(
        "nr_free_pages {}\nnr_shmem {}\npgpgin 0\npgpgout 0\npswpin 0\npswpout 0\npgfault {}\n\
         pgmajfault 0\n",
        m.free / 4,
        m.shmem / 4,
        0
    )
    .into_bytes()
}

/// CPU time of every guest thread since boot, in ns (user, system).
fn busy_ns() -> (u64, u64) {
    let mut u = (0, 0);
    for p in task::all_processes() {
        let x = cputime::process_usage(&p);
        u.0 += x.user_ns;
        u.1 += x.system_ns;
    }
    u
}

/// `/proc/uptime`: idle is the vCPUs' time not spent running guest threads.
pub(crate) fn uptime() -> Vec<u8> {
    let up = up_ns();
    let (u, s) = busy_ns();
    let idle = (up * u64::from(ncpus())).saturating_sub(u + s);
    text::uptime(up, idle)
}

/// Running and total guest threads.
fn thread_counts() -> (usize, usize) {
    let all = task::all_processes();
    let total = all.iter().map(|p| p.threads.lock().len()).sum();
    (1, total)
}

/// `/proc/loadavg`.
pub(crate) fn loadavg() -> Vec<u8> {
    let (r, t) = thread_counts();
    let last = task::all_processes()
        .iter()
        .map(|p| p.pid)
        .max()
        .unwrap_or(1);
    text::loadavg(r, t, last)
}

/// `/proc/stat`: the threads' time is spread evenly over the vCPUs.
pub(crate) fn stat() -> Vec<u8> {
    let n = u64::from(ncpus());
    let up = up_ns();
    let (u, s) = busy_ns();
    let per = |x: u64| ticks(x / n) as u64;
    let idle = per((up * n).saturating_sub(u + s));
    let cpus: Vec<(u64, u64, u64)> = (0..n).map(|_| (per(u), per(s), idle)).collect();
    let btime = crate::time::realtime_ns().saturating_sub(up) / 1_000_000_000;
    let procs = task::all_processes();
    let forks = procs.iter().map(|p| p.pid).max().unwrap_or(1) as u64;
    text::stat_global(&cpus, btime, forks, thread_counts().0)
}

/// A random version-4 UUID.
pub(crate) fn uuid() -> Vec<u8> {
    let mut b = [0u8; 16];
    crate::linux::files::random::fill(&mut b);
    uuid_text(b)
}

fn uuid_text(mut b: [u8; 16]) -> Vec<u8> {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}\n",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
    .into_bytes()
}

/// One UUID per boot.
pub(crate) fn boot_id() -> Vec<u8> {
    static ID: spin::Once<[u8; 16]> = spin::Once::new();
    let b = *ID.call_once(|| {
        let mut b = [0u8; 16];
        crate::linux::files::random::fill(&mut b);
        b
    });
    uuid_text(b)
}

/// The name `/proc/PID/comm` and `status` show for `w`: its thread's (`task/TID`), else its
/// process's main thread's (Linux shows the thread group leader's), as `PR_SET_NAME` set
/// it, else the process's command name.
pub(crate) fn comm_of(w: &super::tree::Who) -> Vec<u8> {
    let leader = || {
        w.p.threads
            .lock()
            .iter()
            .find(|t| t.tid == w.p.pid)
            .cloned()
    };
    match w.t.clone().or_else(leader) {
        Some(t) => crate::linux::prctl::thread_name(&t),
        None => comm(&w.p),
    }
}

/// The command name of `p`.
pub(crate) fn comm(p: &Process) -> Vec<u8> {
    let c = p.args.lock().comm.clone();
    if c.is_empty() {
        text::comm_of(&p.exe.lock())
    } else {
        c
    }
}

/// The descriptors `p` has open.
pub(crate) fn open_fds(p: &Process) -> Vec<i32> {
    p.files.lock().open_fds()
}

/// `/proc/PID/status`, `stat`, `statm` figures of `w`.
pub(crate) fn info(w: &Who) -> ProcInfo {
    let p = &w.p;
    let threads = p.threads.lock().len();
    let zombie = p.zombie.load(Ordering::Relaxed) || threads == 0;
    let me = task::try_current_task();
    let running = me.as_ref().is_some_and(|t| match &w.t {
        Some(th) => Arc::ptr_eq(th, t),
        None => Arc::ptr_eq(&t.process, p),
    });
    let (vm_size, rss, shared, data) = p.space().map_or((0, 0, 0, 0), |s| {
        let mm = s.mm.lock();
        let u = mm.usage();
        let data: u64 = mm
            .vmas()
            .filter(|(_, v)| v.prot & pvmux_hypercalls::user::prot::WRITE != 0 && v.shm.is_none())
            .map(|(start, v)| (v.end - start) / 4096)
            .sum();
        (
            u.mapped,
            (u.private_pages + u.shared_pages) as u64,
            u.shared_pages as u64,
            data,
        )
    });
    let usage = match &w.t {
        Some(t) => cputime::thread_usage(t),
        None => cputime::process_usage(p),
    };
    let children = p.times.children();
    let pending = 0;
    let blocked = match &w.t {
        Some(t) => t.sig.blocked().bits(),
        None => p
            .threads
            .lock()
            .first()
            .map_or(0, |t| t.sig.blocked().bits()),
    };
    let (ignored, caught) = signal_dispositions(p);
    let cpu =
        w.t.as_ref()
            .or(p.threads.lock().first())
            .and_then(|t| t.thread.get().and_then(alloc::sync::Weak::upgrade))
            .map_or(0, |th| th.last_cpu.load(Ordering::Relaxed).min(ncpus() - 1));
    let rl = *p.rlimits.lock();
    let creds = p.creds.lock().clone();
    // The thread shown (the process's: its first), taken before the struct below, whose
    // field expressions' temporaries (a lock guard) would live to its end.
    let lead = w.t.clone().or_else(|| p.threads.lock().first().cloned());
    ProcInfo {
        pid: p.pid,
        tid: w.t.as_ref().map_or(p.pid, |t| t.tid),
        ppid: p.ppid(),
        pgid: p.pgid(),
        sid: p.sid(),
        comm: comm_of(w),
        state: if zombie {
            b'Z'
        } else if running {
            b'R'
        } else {
            b'S'
        },
        threads,
        vm_size,
        rss_pages: rss,
        shared_pages: shared,
        hwm_kib: usage.maxrss_kib,
        text_pages: 0,
        data_pages: data,
        utime: ticks(usage.user_ns) as u64,
        stime: ticks(usage.system_ns) as u64,
        cutime: ticks(children.user_ns) as u64,
        cstime: ticks(children.system_ns) as u64,
        start_ticks: ticks(p.start_ns) as u64,
        nice: lead.as_ref().map_or(0, |t| t.nice.load(Ordering::Relaxed)),
        minflt: usage.minflt,
        umask: p.umask.load(Ordering::Relaxed),
        sig_pending: pending,
        sig_blocked: blocked,
        sig_ignored: ignored,
        sig_caught: caught,
        sigq: (
            pending.count_ones().into(),
            rl.cur(crate::linux::rlimit::res::SIGPENDING),
        ),
        fd_size: open_fds(p)
            .last()
            .map_or(64, |&l| (l as usize + 1).next_multiple_of(64)),
        cpu,
        ncpus: ncpus(),
        affinity: lead
            .as_ref()
            .map_or(0, |t| t.affinity.load(Ordering::Relaxed)),
        rsslim: rl.cur(crate::linux::rlimit::res::RSS),
        start_stack: crate::linux::exec::STACK_TOP,
        uids: [creds.uid, creds.euid, creds.suid, creds.fsuid],
        gids: [creds.gid, creds.egid, creds.sgid, creds.fsgid],
        groups: creds.groups,
        caps: creds.caps.sets,
    }
}

/// Bit masks of the ignored and caught signals of `p`.
fn signal_dispositions(p: &Process) -> (u64, u64) {
    let acts = p.sigactions.lock();
    let (mut ign, mut cgt) = (0u64, 0u64);
    for (i, a) in acts.iter().enumerate() {
        match a.handler {
            0 => {}
            1 => ign |= 1 << i,
            _ => cgt |= 1 << i,
        }
    }
    (ign, cgt)
}

/// The regions of `p` for `/proc/PID/maps`.
pub(crate) fn maps(p: &Process) -> Vec<MapLine> {
    use pvmux_hypercalls::user::prot;
    let Some(space) = p.space() else {
        return Vec::new();
    };
    let mm = space.mm.lock();
    let stack_lo = crate::linux::exec::STACK_TOP - crate::linux::exec::STACK_SIZE;
    mm.vmas()
        .map(|(start, v)| {
            let vdso = crate::linux::vdso::VVAR_VA..crate::linux::vdso::VDSO_VA;
            let name: &[u8] = if let Some(f) = &v.file {
                &f.path
            } else if vdso.contains(&start) {
                b"[vvar]"
            } else if start == crate::linux::vdso::VDSO_VA {
                b"[vdso]"
            } else if start <= mm.brk_base && mm.brk_base < v.end && mm.brk > mm.brk_base
                || (start >= mm.brk_base
                    && v.end <= mm.brk.next_multiple_of(4096)
                    && start < mm.brk)
            {
                b"[heap]"
            } else if start >= stack_lo && v.end <= crate::linux::exec::STACK_TOP {
                b"[stack]"
            } else {
                b""
            };
            MapLine {
                start,
                end: v.end,
                rwx: [
                    v.prot & prot::READ != 0,
                    v.prot & prot::WRITE != 0,
                    v.prot & prot::EXEC != 0,
                ],
                shared: v.shm.is_some(),
                offset: v.file.as_ref().map_or(0, |f| f.offset),
                ino: v.file.as_ref().map_or(0, |f| f.ino),
                name: name.to_vec(),
                on_fork: v.on_fork,
            }
        })
        .collect()
}

/// `/proc/PID/limits`.
pub(crate) fn limits(p: &Process) -> Vec<u8> {
    let rl = *p.rlimits.lock();
    let mut l = [(0u64, 0u64); 16];
    for (i, e) in l.iter_mut().enumerate() {
        let r = rl.get(i);
        *e = (r.cur, r.max);
    }
    text::limits(&l)
}

/// `/proc/PID/mountinfo`.
pub(crate) fn mountinfo() -> Vec<u8> {
    let mut s = String::from("1 1 0:12 / / rw,relatime shared:1 - tmpfs rootfs rw\n");
    for (i, k) in crate::fs::mount::MountKind::ALL.iter().enumerate() {
        let p = core::str::from_utf8(k.path()).unwrap_or("?");
        let (major, minor) = (0, k.dev());
        s.push_str(&format!(
            "{} 1 {major}:{minor} / {p} rw,nosuid,nodev,noexec,relatime shared:{} - {t} {t} rw\n",
            i + 2,
            i + 2,
            t = k.fs_type()
        ));
    }
    let base = crate::fs::mount::MountKind::ALL.len() + 2;
    for (i, d) in crate::fs::mount::disk_mounts().iter().enumerate() {
        let slot = u32::from(d.name[2] - b'a');
        let (major, minor) = crate::linux::files::dev::Dev::Disk(slot as u8).number();
        let opt = if d.read_only { "ro" } else { "rw" };
        s.push_str(&format!(
            "{} 1 {major}:{minor} / {} {opt},relatime - ext2 /dev/{} {opt}\n",
            base + i,
            crate::fs::mount::escape(&d.path),
            core::str::from_utf8(&d.name).unwrap_or("?"),
        ));
    }
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let u = String::from_utf8(uuid_text([0xff; 16])).unwrap();
        assert_eq!(u, "ffffffff-ffff-4fff-bfff-ffffffffffff\n");
    }
}
