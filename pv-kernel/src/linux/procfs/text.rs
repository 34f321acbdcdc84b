//! The text of the generated files, from plain snapshots ([`ProcInfo`], [`MemInfo`], ...):
//! pure formatting, unit-tested on the host. The layouts are Linux's (`fs/proc/array.c`,
//! `meminfo.c`, `stat.c`, ...), as `procps` and friends parse them.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// Page size in KiB.
const PAGE_KIB: u64 = 4;

/// What the per-process files show about one process (or one thread of it).
#[derive(Clone, Debug, Default)]
pub(crate) struct ProcInfo {
    /// Process id (thread-group id).
    pub(crate) pid: i32,
    /// The thread shown (`pid` for the process itself).
    pub(crate) tid: i32,
    /// Parent pid.
    pub(crate) ppid: i32,
    /// Process group.
    pub(crate) pgid: i32,
    /// Session.
    pub(crate) sid: i32,
    /// Command name (`comm`, at most 15 bytes).
    pub(crate) comm: Vec<u8>,
    /// State letter: `R`, `S`, `Z`.
    pub(crate) state: u8,
    /// Live threads.
    pub(crate) threads: usize,
    /// Bytes mapped.
    pub(crate) vm_size: u64,
    /// Resident pages.
    pub(crate) rss_pages: u64,
    /// Resident pages of shared memory.
    pub(crate) shared_pages: u64,
    /// Largest resident set, KiB.
    pub(crate) hwm_kib: u64,
    /// Pages of the program's text (approximation: 0 when unknown).
    pub(crate) text_pages: u64,
    /// Pages of data and stack.
    pub(crate) data_pages: u64,
    /// User and system time, clock ticks.
    pub(crate) utime: u64,
    /// System time, clock ticks.
    pub(crate) stime: u64,
    /// Children's user time, clock ticks.
    pub(crate) cutime: u64,
    /// Children's system time, clock ticks.
    pub(crate) cstime: u64,
    /// Start time in clock ticks after boot.
    pub(crate) start_ticks: u64,
    /// The thread's nice value (the process's: its first thread's).
    pub(crate) nice: i32,
    /// Minor faults.
    pub(crate) minflt: u64,
    /// File-mode creation mask.
    pub(crate) umask: u32,
    /// Pending (thread) signals, blocked signals.
    pub(crate) sig_pending: u64,
    /// Blocked signals.
    pub(crate) sig_blocked: u64,
    /// Ignored signals.
    pub(crate) sig_ignored: u64,
    /// Caught signals.
    pub(crate) sig_caught: u64,
    /// Queued signals and the queue limit (`SigQ`).
    pub(crate) sigq: (u64, u64),
    /// Open descriptors' table size (`FDSize`).
    pub(crate) fd_size: usize,
    /// The CPU it last ran on.
    pub(crate) cpu: u32,
    /// Number of vCPUs.
    pub(crate) ncpus: u32,
    /// The thread's affinity mask (`Cpus_allowed`; 0: every vCPU).
    pub(crate) affinity: u64,
    /// `RLIMIT_RSS` current value (`rsslim`).
    pub(crate) rsslim: u64,
    /// Start of the stack (`startstack`).
    pub(crate) start_stack: u64,
    /// Real, effective, saved and filesystem uid (`Uid:`).
    pub(crate) uids: [u32; 4],
    /// Real, effective, saved and filesystem gid (`Gid:`).
    pub(crate) gids: [u32; 4],
    /// Supplementary groups (`Groups:`).
    pub(crate) groups: Vec<u32>,
    /// Capability sets (`CapInh:` ... `CapAmb:`).
    pub(crate) caps: pvmux_hypercalls::bootargs::CapSets,
}

/// Long state name.
fn state_name(s: u8) -> &'static str {
    match s {
        b'R' => "R (running)",
        b'Z' => "Z (zombie)",
        b'D' => "D (disk sleep)",
        b'T' => "T (stopped)",
        _ => "S (sleeping)",
    }
}

/// The CPUs of `affinity` among `n` (0: all of them), as a mask.
fn allowed(n: u32, affinity: u64) -> u64 {
    let n = n.clamp(1, 64);
    let all: u64 = if n == 64 { u64::MAX } else { (1 << n) - 1 };
    match affinity & all {
        0 => all,
        m => m,
    }
}

/// A CPU mask in hex (`Cpus_allowed`).
fn mask_hex(m: u64) -> String {
    format!("{m:x}")
}

/// A CPU mask as a list of ranges (`Cpus_allowed_list`: `0-1`, `0,2-3`).
fn mask_list(m: u64) -> String {
    let mut out = String::new();
    let mut i = 0u32;
    while i < 64 {
        if m & (1 << i) == 0 {
            i += 1;
            continue;
        }
        let start = i;
        while i + 1 < 64 && m & (1 << (i + 1)) != 0 {
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == i {
            out.push_str(&format!("{start}"));
        } else {
            out.push_str(&format!("{start}-{i}"));
        }
        i += 1;
    }
    out
}

/// The `Cpus_allowed_list` of `n` CPUs.
pub(crate) fn cpu_list(n: u32) -> String {
    if n <= 1 {
        "0".into()
    } else {
        format!("0-{}", n - 1)
    }
}

/// `/proc/PID/status`.
pub(crate) fn status(p: &ProcInfo) -> Vec<u8> {
    let mut s = String::new();
    let comm = String::from_utf8_lossy(&p.comm);
    let rss = p.rss_pages * PAGE_KIB;
    let shm = p.shared_pages * PAGE_KIB;
    let _ = write!(
        s,
        "Name:\t{comm}\nUmask:\t{:04o}\nState:\t{}\nTgid:\t{}\nNgid:\t0\nPid:\t{}\nPPid:\t{}\n\
         TracerPid:\t0\nUid:\t{}\t{}\t{}\t{}\nGid:\t{}\t{}\t{}\t{}\nFDSize:\t{}\nGroups:\t{} \n\
         NStgid:\t{}\nNSpid:\t{}\nNSpgid:\t{}\nNSsid:\t{}\n",
        p.umask,
        state_name(p.state),
        p.pid,
        p.tid,
        p.ppid,
        p.uids[0],
        p.uids[1],
        p.uids[2],
        p.uids[3],
        p.gids[0],
        p.gids[1],
        p.gids[2],
        p.gids[3],
        p.fd_size,
        // Linux's form: the ids separated by spaces, then one space (also with none).
        p.groups
            .iter()
            .map(|g| format!("{g}"))
            .collect::<Vec<_>>()
            .join(" "),
        p.pid,
        p.tid,
        p.pgid,
        p.sid
    );
    if p.state != b'Z' {
        let _ = write!(
            s,
            "VmPeak:\t{:8} kB\nVmSize:\t{:8} kB\nVmLck:\t{:8} kB\nVmPin:\t{:8} kB\n\
             VmHWM:\t{:8} kB\nVmRSS:\t{:8} kB\nRssAnon:\t{:8} kB\nRssFile:\t{:8} kB\n\
             RssShmem:\t{:8} kB\nVmData:\t{:8} kB\nVmStk:\t{:8} kB\nVmExe:\t{:8} kB\n\
             VmLib:\t{:8} kB\nVmPTE:\t{:8} kB\nVmSwap:\t{:8} kB\n",
            p.vm_size / 1024,
            p.vm_size / 1024,
            0,
            0,
            p.hwm_kib.max(rss),
            rss,
            rss - shm,
            0,
            shm,
            p.data_pages * PAGE_KIB,
            132,
            p.text_pages * PAGE_KIB,
            0,
            (p.vm_size / 1024).div_ceil(512).max(1) * 4,
            0
        );
    }
    let _ = write!(
        s,
        "Threads:\t{}\nSigQ:\t{}/{}\nSigPnd:\t{:016x}\nShdPnd:\t{:016x}\nSigBlk:\t{:016x}\n\
         SigIgn:\t{:016x}\nSigCgt:\t{:016x}\nCapInh:\t{:016x}\n\
         CapPrm:\t{:016x}\nCapEff:\t{:016x}\nCapBnd:\t{:016x}\n\
         CapAmb:\t{:016x}\nNoNewPrivs:\t0\nSeccomp:\t0\nSeccomp_filters:\t0\n\
         Speculation_Store_Bypass:\tthread vulnerable\nCpus_allowed:\t{}\n\
         Cpus_allowed_list:\t{}\nMems_allowed:\t1\nMems_allowed_list:\t0\n\
         voluntary_ctxt_switches:\t0\nnonvoluntary_ctxt_switches:\t0\n",
        p.threads,
        p.sigq.0,
        p.sigq.1,
        p.sig_pending,
        0,
        p.sig_blocked,
        p.sig_ignored,
        p.sig_caught,
        p.caps.inheritable,
        p.caps.permitted,
        p.caps.effective,
        p.caps.bounding,
        p.caps.ambient,
        mask_hex(allowed(p.ncpus, p.affinity)),
        mask_list(allowed(p.ncpus, p.affinity))
    );
    s.into_bytes()
}

/// `/proc/PID/stat` (52 fields).
pub(crate) fn stat(p: &ProcInfo) -> Vec<u8> {
    let comm = String::from_utf8_lossy(&p.comm);
    // PF_RANDOMIZE | PF_SUPERPRIV; never PF_KTHREAD (ps hides kernel threads by it).
    let flags: u64 = 0x0040_0100;
    let after_comm: [i128; 49] = [
        p.ppid.into(),
        p.pgid.into(),
        p.sid.into(),
        0,  // tty_nr
        -1, // tpgid
        flags.into(),
        p.minflt.into(),
        0,
        0,
        0,
        p.utime.into(),
        p.stime.into(),
        p.cutime.into(),
        p.cstime.into(),
        (20 + p.nice).into(), // priority
        p.nice.into(),
        (p.threads as u64).into(),
        0, // itrealvalue
        p.start_ticks.into(),
        p.vm_size.into(),
        p.rss_pages.into(),
        p.rsslim.into(),
        1, // startcode (non-zero: not a kernel thread)
        1, // endcode
        p.start_stack.into(),
        0, // kstkesp
        0, // kstkeip
        p.sig_pending.into(),
        p.sig_blocked.into(),
        p.sig_ignored.into(),
        p.sig_caught.into(),
        0,  // wchan
        0,  // nswap
        0,  // cnswap
        17, // exit_signal
        p.cpu.into(),
        0, // rt_priority
        0, // policy
        0, // delayacct_blkio_ticks
        0, // guest_time
        0, // cguest_time
        0, // start_data
        0, // end_data
        0, // start_brk
        0, // arg_start
        0, // arg_end
        0, // env_start
        0, // env_end
        0, // exit_code
    ];
    let mut s = format!("{} ({comm}) {}", p.tid, p.state as char);
    for v in after_comm {
        let _ = write!(s, " {v}");
    }
    s.push('\n');
    s.into_bytes()
}

/// `/proc/PID/statm`: size resident shared text lib data dt, in pages.
pub(crate) fn statm(p: &ProcInfo) -> Vec<u8> {
    format!(
        "{} {} {} {} 0 {} 0\n",
        p.vm_size / 4096,
        p.rss_pages,
        p.shared_pages,
        p.text_pages,
        p.data_pages
    )
    .into_bytes()
}

/// One region of `/proc/PID/maps`.
#[derive(Clone, Debug, Default)]
pub(crate) struct MapLine {
    /// Start and end addresses.
    pub(crate) start: u64,
    /// End (exclusive).
    pub(crate) end: u64,
    /// Readable, writable, executable.
    pub(crate) rwx: [bool; 3],
    /// Shared (`s`) or private (`p`).
    pub(crate) shared: bool,
    /// Offset into the file.
    pub(crate) offset: u64,
    /// Inode of the file (0: anonymous).
    pub(crate) ino: u64,
    /// Path or pseudo name (`[heap]`, `[stack]`), empty for anonymous memory.
    pub(crate) name: Vec<u8>,
    /// What `fork` does with it (Linux's `dc`/`wf` of `smaps`' `VmFlags`; a hand-over
    /// record carries it).
    pub(crate) on_fork: crate::linux::space::OnFork,
}

/// `/proc/PID/maps`.
pub(crate) fn maps(lines: &[MapLine]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        let perms = [
            if l.rwx[0] { 'r' } else { '-' },
            if l.rwx[1] { 'w' } else { '-' },
            if l.rwx[2] { 'x' } else { '-' },
            if l.shared { 's' } else { 'p' },
        ];
        let perms: String = perms.iter().collect();
        let dev = if l.ino == 0 { "00:00" } else { "00:0c" };
        let head = format!(
            "{:08x}-{:08x} {perms} {:08x} {dev} {}",
            l.start, l.end, l.offset, l.ino
        );
        out.extend_from_slice(head.as_bytes());
        if !l.name.is_empty() {
            // Linux pads the name to column 73.
            let pad = 73usize.saturating_sub(head.len()).max(1);
            out.extend(core::iter::repeat_n(b' ', pad));
            out.extend_from_slice(&l.name);
        }
        out.push(b'\n');
    }
    out
}

/// `/proc/cpuinfo`: one entry per vCPU.
pub(crate) fn cpuinfo(ncpus: u32, model: &str, mhz: u64, flags: &str) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..ncpus {
        let _ = write!(
            s,
            "processor\t: {i}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n\
             model name\t: {model}\nstepping\t: 7\nmicrocode\t: 0x1\ncpu MHz\t\t: {mhz}.000\n\
             cache size\t: 36608 KB\nphysical id\t: 0\nsiblings\t: {ncpus}\ncore id\t\t: {i}\n\
             cpu cores\t: {ncpus}\napicid\t\t: {i}\ninitial apicid\t: {i}\nfpu\t\t: yes\n\
             fpu_exception\t: yes\ncpuid level\t: 13\nwp\t\t: yes\nflags\t\t: {flags}\n\
             bogomips\t: {}.00\nclflush size\t: 64\ncache_alignment\t: 64\n\
             address sizes\t: 46 bits physical, 48 bits virtual\npower management:\n\n",
            mhz * 2
        );
    }
    s.into_bytes()
}

/// Memory figures for `/proc/meminfo`, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MemInfo {
    /// All memory.
    pub(crate) total: u64,
    /// Free memory.
    pub(crate) free: u64,
    /// Memory available to programs (free + reclaimable).
    pub(crate) available: u64,
    /// Shared memory (files of the memory filesystem).
    pub(crate) shmem: u64,
    /// Kernel heap in use.
    pub(crate) slab: u64,
}

/// `/proc/meminfo`.
pub(crate) fn meminfo(m: &MemInfo) -> Vec<u8> {
    let rows: [(&str, u64); 28] = [
        ("MemTotal", m.total),
        ("MemFree", m.free),
        ("MemAvailable", m.available),
        ("Buffers", 0),
        ("Cached", m.shmem),
        ("SwapCached", 0),
        ("Active", 0),
        ("Inactive", 0),
        ("Unevictable", 0),
        ("Mlocked", 0),
        ("SwapTotal", 0),
        ("SwapFree", 0),
        ("Dirty", 0),
        ("Writeback", 0),
        (
            "AnonPages",
            m.total.saturating_sub(m.free + m.shmem + m.slab),
        ),
        ("Mapped", 0),
        ("Shmem", m.shmem),
        ("KReclaimable", 0),
        ("Slab", m.slab),
        ("SReclaimable", 0),
        ("SUnreclaim", m.slab),
        ("KernelStack", 0),
        ("PageTables", 0),
        ("CommitLimit", m.total),
        ("Committed_AS", m.total.saturating_sub(m.free)),
        ("VmallocTotal", 34_359_738_367),
        ("HugePages_Total", 0),
        ("Hugepagesize", 2048),
    ];
    let mut s = String::new();
    for (k, v) in rows {
        if k.starts_with("HugePages_") {
            let _ = writeln!(s, "{:<16}{v:>8}", format!("{k}:"));
        } else {
            let _ = writeln!(s, "{:<16}{v:>8} kB", format!("{k}:"));
        }
    }
    s.into_bytes()
}

/// `/proc/uptime`: seconds up and idle, two decimals.
pub(crate) fn uptime(up_ns: u64, idle_ns: u64) -> Vec<u8> {
    let c = |ns: u64| {
        format!(
            "{}.{:02}",
            ns / 1_000_000_000,
            ns % 1_000_000_000 / 10_000_000
        )
    };
    format!("{} {}\n", c(up_ns), c(idle_ns)).into_bytes()
}

/// `/proc/loadavg` (load averages are not measured: zeros).
pub(crate) fn loadavg(running: usize, total: usize, last_pid: i32) -> Vec<u8> {
    format!("0.00 0.00 0.00 {running}/{total} {last_pid}\n").into_bytes()
}

/// `/proc/stat`: per-CPU times in ticks (user, system, idle), boot time, process counts.
pub(crate) fn stat_global(
    cpus: &[(u64, u64, u64)],
    btime: u64,
    forks: u64,
    running: usize,
) -> Vec<u8> {
    let line =
        |name: &str, (u, sy, id): (u64, u64, u64)| format!("{name} {u} 0 {sy} {id} 0 0 0 0 0 0\n");
    let sum = cpus
        .iter()
        .fold((0, 0, 0), |a, c| (a.0 + c.0, a.1 + c.1, a.2 + c.2));
    let mut s = line("cpu ", sum);
    for (i, c) in cpus.iter().enumerate() {
        s.push_str(&line(&format!("cpu{i}"), *c));
    }
    let _ = write!(
        s,
        "intr 0\nctxt 0\nbtime {btime}\nprocesses {forks}\nprocs_running {running}\n\
         procs_blocked 0\nsoftirq 0 0 0 0 0 0 0 0 0 0 0\n"
    );
    s.into_bytes()
}

/// One row of `/proc/PID/limits`: name, unit, (soft, hard).
const LIMIT_ROWS: [(&str, &str); 16] = [
    ("Max cpu time", "seconds"),
    ("Max file size", "bytes"),
    ("Max data size", "bytes"),
    ("Max stack size", "bytes"),
    ("Max core file size", "bytes"),
    ("Max resident set", "bytes"),
    ("Max processes", "processes"),
    ("Max open files", "files"),
    ("Max locked memory", "bytes"),
    ("Max address space", "bytes"),
    ("Max file locks", "locks"),
    ("Max pending signals", "signals"),
    ("Max msgqueue size", "bytes"),
    ("Max nice priority", ""),
    ("Max realtime priority", ""),
    ("Max realtime timeout", "us"),
];

/// `/proc/PID/limits` from the 16 `(soft, hard)` limits.
pub(crate) fn limits(l: &[(u64, u64); 16]) -> Vec<u8> {
    let v = |x: u64| {
        if x == u64::MAX {
            String::from("unlimited")
        } else {
            format!("{x}")
        }
    };
    let mut s = format!(
        "{:<25} {:<20} {:<20} {:<10}\n",
        "Limit", "Soft Limit", "Hard Limit", "Units"
    );
    for ((name, unit), (soft, hard)) in LIMIT_ROWS.iter().zip(l.iter()) {
        let _ = writeln!(s, "{name:<25} {:<20} {:<20} {unit:<10}", v(*soft), v(*hard));
    }
    s.into_bytes()
}

/// `comm` of a program path: its last component, at most 15 bytes.
pub(crate) fn comm_of(path: &[u8]) -> Vec<u8> {
    let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    base[..base.len().min(15)].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ProcInfo {
        ProcInfo {
            pid: 7,
            tid: 7,
            ppid: 1,
            pgid: 7,
            sid: 1,
            comm: b"bash".to_vec(),
            state: b'R',
            threads: 2,
            vm_size: 8 << 20,
            rss_pages: 100,
            ncpus: 2,
            sigq: (0, 4096),
            uids: [1000, 1001, 1002, 1003],
            gids: [50, 51, 52, 53],
            groups: alloc::vec![4, 27],
            caps: pvmux_hypercalls::bootargs::CapSets {
                effective: 0x20,
                permitted: 0x21,
                inheritable: 0x1,
                bounding: 0x1_ffff_ffff,
                ambient: 0x1,
            },
            ..ProcInfo::default()
        }
    }

    #[test]
    fn cpu_masks_show_the_affinity() {
        assert_eq!(allowed(2, 0), 0b11, "no mask: every vCPU");
        assert_eq!(allowed(2, u64::MAX), 0b11);
        assert_eq!(allowed(4, 0b1101), 0b1101);
        assert_eq!(
            (mask_hex(0b1101), mask_list(0b1101)),
            ("d".into(), "0,2-3".into())
        );
        assert_eq!(mask_list(0b1), "0");
        assert_eq!(mask_list(u64::MAX), "0-63");
    }

    #[test]
    fn status_has_the_fields_ps_reads() {
        let s = String::from_utf8(status(&info())).unwrap();
        for want in [
            "Name:\tbash\n",
            "State:\tR (running)\n",
            "Tgid:\t7\n",
            "Pid:\t7\n",
            "PPid:\t1\n",
            "Uid:\t1000\t1001\t1002\t1003\n",
            "Gid:\t50\t51\t52\t53\n",
            "Groups:\t4 27 \n",
            "CapInh:\t0000000000000001\nCapPrm:\t0000000000000021\nCapEff:\t0000000000000020\n\
             CapBnd:\t00000001ffffffff\nCapAmb:\t0000000000000001\n",
            "Threads:\t2\n",
            "VmRSS:\t     400 kB\n",
            "VmSize:\t    8192 kB\n",
            "SigQ:\t0/4096\n",
            "Cpus_allowed_list:\t0-1\n",
        ] {
            assert!(s.contains(want), "{want:?} not in\n{s}");
        }
        // Every line is "Key:\tvalue".
        assert!(s.lines().all(|l| l.contains(":\t")), "{s}");
    }

    #[test]
    fn stat_has_52_fields_and_parses_like_procps() {
        let mut p = info();
        p.comm = b"a b) c".to_vec();
        let s = String::from_utf8(stat(&p)).unwrap();
        // procps finds the name between the first '(' and the last ')'.
        let close = s.rfind(')').unwrap();
        assert_eq!(&s[s.find('(').unwrap() + 1..close], "a b) c");
        let rest: Vec<&str> = s[close + 2..].split_whitespace().collect();
        assert_eq!(rest.len() + 2, 52, "{s}");
        assert_eq!(rest[0], "R");
        assert_eq!(rest[1], "1"); // ppid
        assert_eq!(rest[17], "2"); // num_threads (field 20)
        assert_eq!(rest[20], (8u64 << 20).to_string()); // vsize (field 23)
        assert_eq!(rest[21], "100"); // rss (field 24)
        assert!(s.ends_with('\n'));
    }

    #[test]
    fn statm_is_in_pages() {
        assert_eq!(statm(&info()), b"2048 100 0 0 0 0 0\n");
    }

    #[test]
    fn maps_lines_look_like_linux() {
        let m = maps(&[
            MapLine {
                start: 0x400000,
                end: 0x401000,
                rwx: [true, false, true],
                ino: 42,
                name: b"/bin/true".to_vec(),
                ..MapLine::default()
            },
            MapLine {
                start: 0x7ff000,
                end: 0x800000,
                rwx: [true, true, false],
                ..MapLine::default()
            },
        ]);
        let s = String::from_utf8(m).unwrap();
        let l: Vec<&str> = s.lines().collect();
        assert!(l[0].starts_with("00400000-00401000 r-xp 00000000 00:0c 42 "));
        assert!(l[0].ends_with(" /bin/true"));
        assert_eq!(l[0].find("/bin"), Some(73));
        assert_eq!(l[1], "007ff000-00800000 rw-p 00000000 00:00 0");
    }

    #[test]
    fn cpuinfo_has_one_entry_per_cpu() {
        let s = String::from_utf8(cpuinfo(3, "x", 2000, "fpu sse")).unwrap();
        assert_eq!(s.matches("processor\t: ").count(), 3);
        assert!(s.contains("processor\t: 2\n"));
        assert_eq!(s.split("\n\n").filter(|e| !e.is_empty()).count(), 3);
    }

    #[test]
    fn meminfo_rows_parse() {
        let s = String::from_utf8(meminfo(&MemInfo {
            total: 1024,
            free: 512,
            available: 600,
            shmem: 8,
            slab: 4,
        }))
        .unwrap();
        assert!(s.starts_with("MemTotal:           1024 kB\nMemFree:             512 kB\n"));
        for l in s.lines() {
            let (k, v) = l.split_once(':').unwrap();
            assert!(!k.contains(' '));
            let n = v.trim().trim_end_matches(" kB");
            n.parse::<u64>().unwrap();
        }
    }

    #[test]
    fn small_files() {
        assert_eq!(uptime(12_345_000_000, 1_000_000_000), b"12.34 1.00\n");
        assert_eq!(loadavg(1, 5, 42), b"0.00 0.00 0.00 1/5 42\n");
        let s = String::from_utf8(stat_global(&[(1, 2, 3), (4, 5, 6)], 99, 7, 1)).unwrap();
        assert!(s.starts_with("cpu  5 0 7 9 0 0 0 0 0 0\ncpu0 1 0 2 3 "));
        assert!(s.contains("\nbtime 99\n"));
        assert_eq!(
            comm_of(b"/usr/bin/averyveryverylongname"),
            b"averyveryverylo"
        );
        assert_eq!(cpu_list(1), "0");
        assert_eq!(cpu_list(4), "0-3");
    }

    #[test]
    fn limits_table() {
        let mut l = [(u64::MAX, u64::MAX); 16];
        l[7] = (1024, 4096);
        let s = String::from_utf8(limits(&l)).unwrap();
        assert!(s.starts_with("Limit "));
        let nofile = s.lines().find(|l| l.starts_with("Max open files")).unwrap();
        let f: Vec<&str> = nofile.split_whitespace().collect();
        assert_eq!(&f[3..], ["1024", "4096", "files"]);
        assert_eq!(s.lines().count(), 17);
    }
}
