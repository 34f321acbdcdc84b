//! `pvmux-user-bench`: the user-mode workload of `pvmux bench`.
//!
//! A static Linux program that measures eight figures of the system it runs on (natively,
//! as init of User-Mode Linux, under gVisor, or as init of a pvmux guest) and prints one line
//! each in the guest benchmark protocol (docs/BENCHMARKS.md):
//!
//! ```text
//! @ready                                       (with --ready, before anything else)
//! @bench user.NAME median_ns=F p99_ns=F samples=N
//! @bench-unavailable user.NAME REASON...
//! @bench-done
//! ```
//!
//! Usage: `pvmux-user-bench [--ready] [--quick] [--samples N] [--pages N] [--file PATH]
//! [FIGURE...]` where
//! FIGURE is `all` or one of [`Figure::NAMES`] (with or without the `user.` prefix). With no
//! FIGURE it runs all of them, unless `--ready` is given (then it only prints `@ready`).
//! Words containing `=` are ignored (kernel parameters handed to init).
//! Warm-up samples are discarded; each figure stops early (keeping at least
//! [`MIN_SAMPLES`]) once it has measured for its time budget. Times come from
//! `clock_gettime(CLOCK_MONOTONIC)`; short operations are timed in batches and divided.
//! The file figures read `--file PATH` (default [`DEFAULT_FILE`], a file of at least
//! 4 KiB the caller provides on the root filesystem under test).

use std::io::Write;
use std::process::ExitCode;

mod channel;
mod exec;

/// Fewest samples a figure keeps even when its time budget is spent.
const MIN_SAMPLES: usize = 10;
/// Page size of x86-64 Linux.
const PAGE: usize = 4096;
/// `getppid` calls per sample.
const GETPPID_BATCH: u32 = 100;
/// Round trips per `pipe_pingpong` sample.
const PIPE_BATCH: u32 = 10;
/// `clock_gettime` calls per sample.
const CLOCK_BATCH: u32 = 1000;

/// `pread`s per `read_4k_cached` sample.
const READ_BATCH: u32 = 100;
/// open+read+close rounds per `open_read_close` sample.
const OPEN_BATCH: u32 = 20;
/// The file the file figures read unless `--file` says otherwise.
const DEFAULT_FILE: &str = "/pvmux-user-bench.data";

/// One of the figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Figure {
    SyscallGetppid,
    PageFault,
    ForkExitWait,
    PipePingpong,
    ClockGettime,
    Read4kCached,
    OpenReadClose,
    ForkExecWait,
}

impl Figure {
    /// Every figure, in output order.
    const ALL: [Figure; 8] = [
        Figure::SyscallGetppid,
        Figure::PageFault,
        Figure::ForkExitWait,
        Figure::PipePingpong,
        Figure::ClockGettime,
        Figure::Read4kCached,
        Figure::OpenReadClose,
        Figure::ForkExecWait,
    ];
    /// The names printed (and accepted on the command line), in [`Figure::ALL`] order.
    const NAMES: [&'static str; 8] = [
        "user.syscall_getppid",
        "user.page_fault",
        "user.fork_exit_wait",
        "user.pipe_pingpong",
        "user.clock_gettime",
        "user.read_4k_cached",
        "user.open_read_close",
        "user.fork_exec_wait",
    ];

    fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    fn parse(word: &str) -> Option<Self> {
        let full = if word.starts_with("user.") {
            word.to_owned()
        } else {
            format!("user.{word}")
        };
        Self::NAMES
            .iter()
            .position(|n| *n == full)
            .map(|i| Self::ALL[i])
    }
}

/// How much to measure.
#[derive(Clone, Copy, Debug)]
struct Plan {
    warmup: usize,
    samples: usize,
    budget_ns: u64,
    pages: usize,
}

/// The parsed command line.
#[derive(Debug)]
struct Config {
    ready: bool,
    plan: Plan,
    figures: Vec<Figure>,
    /// The file the file figures read.
    file: String,
}

const USAGE: &str = "usage: pvmux-user-bench [--ready] [--quick] [--samples N] [--pages N] \
                     [--file PATH] [all|syscall_getppid|page_fault|fork_exit_wait|\
                     pipe_pingpong|clock_gettime|read_4k_cached|open_read_close|fork_exec_wait ...]";

fn parse_args(args: impl Iterator<Item = String>) -> Result<Config, String> {
    let (mut ready, mut quick, mut samples, mut pages) = (false, false, None, None);
    let mut figures = Vec::new();
    let mut file = DEFAULT_FILE.to_owned();
    let mut args = args.peekable();
    let number = |flag: &str, v: Option<String>| -> Result<usize, String> {
        v.and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| (1..=1_000_000).contains(&n))
            .ok_or_else(|| format!("{flag} needs a number in 1..=1000000"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ready" => ready = true,
            "--quick" => quick = true,
            "--samples" => samples = Some(number("--samples", args.next())?),
            "--pages" => pages = Some(number("--pages", args.next())?),
            "--file" => file = args.next().ok_or("--file needs a path")?,
            "all" => figures.extend(Figure::ALL),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            // A kernel may hand its leftover `key=value` parameters to init (User-Mode
            // Linux appends `root=... console=...` after `--`): not ours, ignored.
            w if w.contains('=') => {}
            w => figures.push(Figure::parse(w).ok_or_else(|| format!("unknown argument {w:?}"))?),
        }
    }
    if figures.is_empty() && !ready {
        figures.extend(Figure::ALL);
    }
    figures.dedup();
    let plan = if quick {
        Plan {
            warmup: 5,
            samples: 200,
            budget_ns: 300_000_000,
            pages: 256,
        }
    } else {
        Plan {
            warmup: 20,
            samples: 2000,
            budget_ns: 2_000_000_000,
            pages: 1024,
        }
    };
    Ok(Config {
        ready,
        plan: Plan {
            samples: samples.unwrap_or(plan.samples),
            pages: pages.unwrap_or(plan.pages),
            ..plan
        },
        figures,
        file,
    })
}

/// CLOCK_MONOTONIC in ns.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The last OS error, as text.
fn errno(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Median and 99th percentile (nearest rank) of `v`, sorted in place.
fn summarize(v: &mut [f64]) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let p99 = v[(99 * n).div_ceil(100).max(1) - 1];
    Some((median, p99))
}

/// Takes `plan.warmup` discarded samples (fewer if they take more than a quarter of the
/// budget; at least one), then samples until `plan.samples` are kept or the budget is spent
/// (with at least [`MIN_SAMPLES`] kept). `sample` returns ns per operation.
fn measure(
    plan: &Plan,
    mut sample: impl FnMut() -> Result<f64, String>,
) -> Result<Vec<f64>, String> {
    let start = now_ns();
    for _ in 0..plan.warmup.max(1) {
        sample()?;
        if now_ns().saturating_sub(start) > plan.budget_ns / 4 {
            break;
        }
    }
    let start = now_ns();
    let mut kept = Vec::with_capacity(plan.samples);
    while kept.len() < plan.samples {
        kept.push(sample()?);
        if kept.len() >= MIN_SAMPLES && now_ns().saturating_sub(start) > plan.budget_ns {
            break;
        }
    }
    Ok(kept)
}

/// One batch of `getppid` calls through the C library's wrapper, per call: a system call
/// that does no work, from the kind of call site real programs have (glibc's `__getppid` is
/// `mov $110, %eax; syscall`, which syscall-site patching rewrites; the generic `syscall(3)`
/// loads the number from a register and would never be patched, here or under gVisor).
fn getppid_sample() -> Result<f64, String> {
    let t0 = now_ns();
    for _ in 0..GETPPID_BATCH {
        // SAFETY: getppid takes no arguments and cannot fail.
        std::hint::black_box(unsafe { libc::getppid() });
    }
    Ok((now_ns() - t0) as f64 / f64::from(GETPPID_BATCH))
}

/// One batch of `clock_gettime(CLOCK_MONOTONIC)` calls through the C library (its vDSO
/// where the system has one, else the system call), per call.
fn clock_gettime_sample() -> Result<f64, String> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let t0 = now_ns();
    for _ in 0..CLOCK_BATCH {
        // SAFETY: `ts` is a valid, writable timespec.
        if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, std::hint::black_box(&mut ts)) } != 0
        {
            return Err(errno("clock_gettime"));
        }
    }
    Ok((now_ns() - t0) as f64 / f64::from(CLOCK_BATCH))
}

/// Maps `pages` fresh anonymous pages, writes one byte per page (timed), unmaps them.
fn page_fault_sample(pages: usize) -> Result<f64, String> {
    let len = pages * PAGE;
    // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(errno("mmap"));
    }
    // One fault per 4 KiB page: no transparent huge pages (an error here, e.g. ENOSYS or
    // EINVAL without THP support, changes nothing).
    // SAFETY: advice on the mapping just created.
    unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
    let base = p.cast::<u8>();
    let t0 = now_ns();
    for i in 0..pages {
        // SAFETY: `i * PAGE < len`: inside the writable mapping.
        unsafe { base.add(i * PAGE).write_volatile(1) };
    }
    let dt = now_ns() - t0;
    // SAFETY: unmaps exactly the mapping created above; nothing refers to it any more.
    if unsafe { libc::munmap(p, len) } != 0 {
        return Err(errno("munmap"));
    }
    Ok(dt as f64 / pages as f64)
}

/// Waits for `pid` and checks it exited with status 0.
fn reap(pid: libc::pid_t) -> Result<(), String> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(errno("waitpid"));
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(format!("child ended with wait status {status:#x}"))
    }
}

/// fork; the child `_exit(0)`s at once; the parent `waitpid`s it.
fn fork_sample() -> Result<f64, String> {
    let t0 = now_ns();
    // SAFETY: this program is single-threaded; the child only calls `_exit`.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(errno("fork")),
        // SAFETY: ends the child without running anything else of the parent's copy.
        0 => unsafe { libc::_exit(0) },
        pid => {
            reap(pid)?;
            Ok((now_ns() - t0) as f64)
        }
    }
}

/// A pipe's (read, write) ends.
fn pipe() -> Result<(libc::c_int, libc::c_int), String> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(errno("pipe"));
    }
    Ok((fds[0], fds[1]))
}

/// Writes one byte to `fd`; `false` on an error.
fn put(fd: libc::c_int) -> bool {
    let b = 1u8;
    // SAFETY: writes one byte from a valid buffer.
    unsafe { libc::write(fd, (&raw const b).cast(), 1) == 1 }
}

/// Reads one byte from `fd`; `false` at end of file or on an error.
fn get(fd: libc::c_int) -> bool {
    let mut b = 0u8;
    // SAFETY: reads one byte into a valid buffer.
    unsafe { libc::read(fd, (&raw mut b).cast(), 1) == 1 }
}

fn close(fd: libc::c_int) {
    // SAFETY: closes a descriptor this program owns and no longer uses.
    unsafe { libc::close(fd) };
}

/// Two processes pass one byte back and forth over two pipes; returns the samples (ns per
/// round trip, [`PIPE_BATCH`] round trips each).
fn pipe_pingpong(plan: &Plan) -> Result<Vec<f64>, String> {
    let (to_child_rd, to_child_wr) = pipe()?;
    let (to_parent_rd, to_parent_wr) = pipe()?;
    // SAFETY: this program is single-threaded; the child only echoes bytes and `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Err(errno("fork"));
    }
    if pid == 0 {
        close(to_child_wr);
        close(to_parent_rd);
        while get(to_child_rd) {
            if !put(to_parent_wr) {
                // SAFETY: ends the child.
                unsafe { libc::_exit(1) };
            }
        }
        // SAFETY: ends the child at end of file.
        unsafe { libc::_exit(0) };
    }
    close(to_child_rd);
    close(to_parent_wr);
    let r = measure(plan, || {
        let t0 = now_ns();
        for _ in 0..PIPE_BATCH {
            if !put(to_child_wr) {
                return Err(errno("pipe write"));
            }
            if !get(to_parent_rd) {
                return Err(errno("pipe read"));
            }
        }
        Ok((now_ns() - t0) as f64 / f64::from(PIPE_BATCH))
    });
    close(to_child_wr);
    close(to_parent_rd);
    let reaped = reap(pid);
    let samples = r?;
    reaped?;
    Ok(samples)
}

/// Opens `path` read-only.
fn open_file(path: &std::ffi::CStr) -> Result<libc::c_int, String> {
    // SAFETY: a NUL-terminated path; the result is checked.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(errno(&format!("open {}", path.to_string_lossy())));
    }
    Ok(fd)
}

/// Reads 4 KiB at offset 0 of `fd` into `buf`; an error unless all of it came.
fn read_4k(fd: libc::c_int, buf: &mut [u8; PAGE]) -> Result<(), String> {
    // SAFETY: `buf` is a writable buffer of PAGE bytes.
    let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), PAGE, 0) };
    if n != PAGE as isize {
        return Err(if n < 0 {
            errno("pread")
        } else {
            format!("short read ({n} bytes): the file needs at least 4 KiB")
        });
    }
    Ok(())
}

/// `pread` of the same 4 KiB of an open file (cached after the warm-up), per call.
fn read_cached(plan: &Plan, path: &std::ffi::CStr) -> Result<Vec<f64>, String> {
    let fd = open_file(path)?;
    let mut buf = [0u8; PAGE];
    let r = measure(plan, || {
        let t0 = now_ns();
        for _ in 0..READ_BATCH {
            read_4k(fd, &mut buf)?;
        }
        Ok((now_ns() - t0) as f64 / f64::from(READ_BATCH))
    });
    close(fd);
    r
}

/// `open` + a 4 KiB `read` + `close` of the file, per round.
fn open_read_close(plan: &Plan, path: &std::ffi::CStr) -> Result<Vec<f64>, String> {
    let mut buf = [0u8; PAGE];
    measure(plan, || {
        let t0 = now_ns();
        for _ in 0..OPEN_BATCH {
            let fd = open_file(path)?;
            let r = read_4k(fd, &mut buf);
            close(fd);
            r?;
        }
        Ok((now_ns() - t0) as f64 / f64::from(OPEN_BATCH))
    })
}

fn run(figure: Figure, cfg: &Config) -> Result<Vec<f64>, String> {
    let plan = &cfg.plan;
    let path =
        || std::ffi::CString::new(cfg.file.as_str()).map_err(|_| "--file has a NUL".to_owned());
    match figure {
        Figure::SyscallGetppid => measure(plan, getppid_sample),
        Figure::PageFault => measure(plan, || page_fault_sample(plan.pages)),
        Figure::ForkExitWait => measure(plan, fork_sample),
        Figure::PipePingpong => pipe_pingpong(plan),
        Figure::ClockGettime => measure(plan, clock_gettime_sample),
        Figure::Read4kCached => read_cached(plan, &path()?),
        Figure::OpenReadClose => open_read_close(plan, &path()?),
        Figure::ForkExecWait => measure(plan, exec::fork_exec_sample),
    }
}

/// Writes one protocol line and flushes it (output may be a console that loses buffers when
/// the system dies).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

fn main() -> ExitCode {
    // A child of `fork_exec_wait`: started, done.
    if std::env::args().nth(1).as_deref() == Some(exec::EXIT_AT_ONCE) {
        return ExitCode::SUCCESS;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = channel::main(&args) {
        return code;
    }
    let cfg = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pvmux-user-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if cfg.ready {
        say("@ready");
    }
    if cfg.figures.is_empty() {
        return ExitCode::SUCCESS;
    }
    let mut ok = true;
    for &f in &cfg.figures {
        match run(f, &cfg).and_then(|mut v| {
            let n = v.len();
            summarize(&mut v)
                .map(|s| (s, n))
                .ok_or_else(|| "no samples".to_owned())
        }) {
            Ok(((median, p99), n)) => say(&format!(
                "@bench {} median_ns={median:.3} p99_ns={p99:.3} samples={n}",
                f.name()
            )),
            Err(why) => {
                ok = false;
                say(&format!("@bench-unavailable {} {why}", f.name()));
            }
        }
    }
    say("@bench-done");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Config, String> {
        parse_args(s.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn command_line() {
        let c = args("").unwrap();
        assert!(!c.ready);
        assert_eq!(c.figures, Figure::ALL);
        assert_eq!(c.plan.samples, 2000);
        let c = args("--ready").unwrap();
        assert!(c.ready && c.figures.is_empty());
        let c = args("--quick --samples 7 page_fault user.pipe_pingpong --pages 3").unwrap();
        assert_eq!(c.figures, [Figure::PageFault, Figure::PipePingpong]);
        assert_eq!((c.plan.samples, c.plan.pages, c.plan.warmup), (7, 3, 5));
        assert!(args("nonsense").is_err());
        assert_eq!(args("--ready root=98:0").unwrap().figures, []);
        assert!(args("--samples 0").is_err());
        assert!(args("--pages").is_err());
        let c = args("read_4k_cached --file /x open_read_close").unwrap();
        assert_eq!(c.figures, [Figure::Read4kCached, Figure::OpenReadClose]);
        assert_eq!(c.file, "/x");
        assert_eq!(args("").unwrap().file, DEFAULT_FILE);
        assert!(args("--file").is_err());
    }

    #[test]
    fn statistics() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(summarize(&mut v), Some((50.5, 99.0)));
        assert_eq!(summarize(&mut [2.0, 9.0, 1.0]), Some((2.0, 9.0)));
        assert_eq!(summarize(&mut []), None);
    }

    #[test]
    fn figures_measure_something() {
        let plan = Plan {
            warmup: 1,
            samples: 12,
            budget_ns: 50_000_000,
            pages: 8,
        };
        // The file figures read this test's own executable (any file of 4 KiB or more).
        let cfg = Config {
            ready: false,
            plan,
            figures: Vec::new(),
            file: std::env::current_exe()
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned(),
        };
        // (`fork_exec_wait` execs its own program, here the test harness, which does not
        // know `--exit-at-once`: `tools/tests/bench.rs` measures it in the real workload.)
        for f in Figure::ALL
            .into_iter()
            .filter(|&f| f != Figure::ForkExecWait)
        {
            let v = run(f, &cfg).unwrap_or_else(|e| panic!("{}: {e}", f.name()));
            assert!(v.len() >= MIN_SAMPLES.min(12), "{}", f.name());
            assert!(v.iter().all(|x| x.is_finite() && *x >= 0.0), "{}", f.name());
            assert!(v.iter().any(|&x| x > 0.0), "{}: all zero", f.name());
        }
    }
}
