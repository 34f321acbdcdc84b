//! The system-call table: decodes arguments and calls the handlers. Unknown calls return
//! `ENOSYS`, are named in the kernel log the first time and counted (`syscall-report` prints
//! the counts at shutdown).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use super::abi::nr;
use super::space::UserState;
use super::task::{self, Task, WaitFor};
use super::uaccess::{read_cstr, read_path, read_val, write_val};
use super::{futex, memory, misc, rlimit, signal, Errno, SysResult};

/// Counts of unknown system calls, by number.
static UNKNOWN: [AtomicU32; 512] = [const { AtomicU32::new(0) }; 512];
/// Count of calls with numbers beyond [`UNKNOWN`] (all named by the first one's log line).
static OUT_OF_RANGE: AtomicU32 = AtomicU32::new(0);

/// Prints the unknown-syscall counts (kernel log).
pub(crate) fn report_unknown() {
    let mut any = false;
    for (i, c) in UNKNOWN.iter().enumerate() {
        let n = c.load(Ordering::Relaxed);
        if n != 0 {
            any = true;
            crate::println!(
                "pvmux-kernel: unknown syscall {} ({}): {} call(s), returned ENOSYS",
                i,
                super::abi::name(i as u64),
                n
            );
        }
    }
    if !any {
        crate::println!("pvmux-kernel: no unknown syscalls");
    }
}

/// Longest argument or environment string, its NUL included (Linux's `MAX_ARG_STRLEN`).
const MAX_ARG_STRLEN: usize = 32 * 4096;

/// Reads a NULL-terminated array of string pointers (argv/envp); a string longer than
/// [`MAX_ARG_STRLEN`] is `E2BIG`, as Linux.
fn read_str_array(va: u64) -> Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::new();
    if va == 0 {
        return Ok(out);
    }
    let mut total = 0usize;
    for i in 0..(1u64 << 16) {
        let p: u64 = read_val(va + i * 8)?;
        if p == 0 {
            return Ok(out);
        }
        let s = read_cstr(p, MAX_ARG_STRLEN - 1).map_err(|e| match e {
            Errno::ENAMETOOLONG => Errno::E2BIG,
            e => e,
        })?;
        total += s.len() + 1 + core::mem::size_of::<Vec<u8>>();
        if total > 2 << 20 {
            return Err(Errno::E2BIG);
        }
        out.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
        out.push(s);
    }
    Err(Errno::E2BIG)
}

fn wait_status_out(ws: u64, status: i32) -> Result<(), Errno> {
    if ws != 0 {
        write_val(ws, &status)?;
    }
    Ok(())
}

/// Runs system call `nr` with `a` for `t`, whose user state is `st`.
pub(crate) fn syscall(
    t: &Arc<Task>,
    st: &mut UserState,
    fresh: &mut bool,
    n: u64,
    a: [u64; 6],
) -> SysResult {
    if let Some(r) = super::files::syscall(n, a) {
        return r;
    }
    if let Some(r) = super::net::syscall(n, a) {
        return r;
    }
    if let Some(r) = super::timers::syscall(n, a) {
        return r;
    }
    if let Some(r) = super::creds::syscall(n, a) {
        return r;
    }
    let p = &t.process;
    match n {
        nr::GETPID => Ok(p.pid as u64),
        nr::GETTID => Ok(t.tid as u64),
        nr::GETPPID => Ok(p.ppid() as u64),
        nr::EXIT => {
            // Only this thread; the process ends with its last thread.
            {
                let mut s = p.exit_status.lock();
                if s.is_none() && p.threads.lock().len() == 1 {
                    *s = Some(task::exit_status(a[0] as i32));
                }
            }
            t.must_exit.store(true, Ordering::Release);
            Ok(0)
        }
        nr::EXIT_GROUP => {
            task::exit_group(p, task::exit_status(a[0] as i32));
            Ok(0)
        }
        nr::SET_TID_ADDRESS => {
            t.clear_child_tid.store(a[0], Ordering::Relaxed);
            Ok(t.tid as u64)
        }
        nr::SET_ROBUST_LIST => {
            if a[1] != super::futex::robust::ROBUST_HEAD_LEN {
                return Err(Errno::EINVAL);
            }
            t.robust_list.store(a[0], Ordering::Relaxed);
            Ok(0)
        }
        nr::GET_ROBUST_LIST => {
            // Of the calling thread (0) or a thread of this kernel, as Linux lets a tracer
            // read it.
            let target = match a[0] as i32 {
                0 => t.clone(),
                tid => super::task::find_task(tid).ok_or(Errno::ESRCH)?,
            };
            if !Arc::ptr_eq(&target.process, &t.process)
                && !t.process.creds.lock().capable(super::caps::cap::SYS_PTRACE)
            {
                return Err(Errno::EPERM);
            }
            super::uaccess::write_val(a[1], &target.robust_list.load(Ordering::Relaxed))?;
            super::uaccess::write_val(a[2], &super::futex::robust::ROBUST_HEAD_LEN)?;
            Ok(0)
        }
        nr::RSEQ => Err(Errno::ENOSYS),
        nr::ARCH_PRCTL => match a[0] {
            0x1002 => {
                if !pvmux_hypercalls::user::in_user_window(a[1], 0) && a[1] != 0 {
                    return Err(Errno::EPERM);
                }
                st.fs_base = a[1];
                Ok(0)
            }
            0x1003 => {
                write_val(a[1], &st.fs_base)?;
                Ok(0)
            }
            0x1001 => Ok(0), // ARCH_SET_GS: accepted (not used by static programs)
            _ => Err(Errno::EINVAL),
        },
        nr::BRK => memory::sys_brk(a[0]),
        nr::MMAP => memory::sys_mmap(a[0], a[1], a[2], a[3], a[4], a[5]),
        nr::MUNMAP => memory::sys_munmap(a[0], a[1]),
        nr::MPROTECT => memory::sys_mprotect(a[0], a[1], a[2]),
        nr::MREMAP => memory::sys_mremap(a[0], a[1], a[2], a[3], a[4]),
        nr::MADVISE => memory::sys_madvise(a[0], a[1], a[2]),
        nr::MLOCK | nr::MUNLOCK | nr::MUNLOCKALL => Ok(0),
        // `mlock2(addr, len, flags)`: `MLOCK_ONFAULT` the only flag; nothing is swapped.
        nr::MLOCK2 if a[2] & !1 != 0 => Err(Errno::EINVAL),
        nr::MLOCK2 => Ok(0),
        nr::MLOCKALL => misc::sys_mlockall(a[0]),
        nr::SETHOSTNAME => misc::sys_set_name(0, a[0], a[1]),
        nr::SETDOMAINNAME => misc::sys_set_name(1, a[0], a[1]),
        nr::MSYNC => memory::sys_msync(a[0], a[1], a[2]),
        nr::UNAME => misc::sys_uname(a[0]),
        nr::SYSINFO => misc::sys_sysinfo(a[0]),
        nr::GETRANDOM => misc::sys_getrandom(a[0], a[1], a[2]),
        nr::CLOCK_GETTIME => misc::sys_clock_gettime(a[0], a[1]),
        nr::CLOCK_GETRES => misc::sys_clock_getres(a[0], a[1]),
        nr::GETTIMEOFDAY => misc::sys_gettimeofday(a[0]),
        nr::TIME => misc::sys_time(a[0]),
        nr::NANOSLEEP => misc::sys_nanosleep(a[0], a[1]),
        nr::RESTART_SYSCALL => super::timers::sleep::sys_restart_syscall(),
        nr::PRLIMIT64 => rlimit::sys_prlimit64(a[0], a[1], a[2], a[3]),
        nr::GETRLIMIT => rlimit::sys_prlimit64(0, a[0], 0, a[1]),
        nr::SETRLIMIT => rlimit::sys_prlimit64(0, a[0], a[1], 0),
        nr::GETRUSAGE => misc::sys_getrusage(a[0] as i32, a[1]),
        nr::TIMES => misc::sys_times(a[0]),
        nr::SCHED_YIELD => {
            crate::sched::yield_now();
            Ok(0)
        }
        nr::SCHED_GETAFFINITY => super::sched_params::sys_sched_getaffinity(t, a[0], a[1], a[2]),
        nr::SCHED_SETAFFINITY => super::sched_params::sys_sched_setaffinity(t, a[0], a[1], a[2]),
        nr::GETCPU => {
            if a[0] != 0 {
                write_val(a[0], &crate::stub::vcpu_id())?;
            }
            if a[1] != 0 {
                write_val(a[1], &0u32)?;
            }
            Ok(0)
        }
        nr::PRCTL => super::prctl::sys_prctl(t, [a[0], a[1], a[2], a[3], a[4]]),
        nr::GETPRIORITY => super::sched_params::sys_getpriority(t, a[0], a[1]),
        nr::IOPRIO_SET => super::io_priority::sys_ioprio_set(t, a[0], a[1], a[2]),
        nr::PROCESS_VM_READV => {
            super::process_vm::sys_process_vm(a[0], a[1], a[2], a[3], a[4], a[5], false)
        }
        nr::PROCESS_VM_WRITEV => {
            super::process_vm::sys_process_vm(a[0], a[1], a[2], a[3], a[4], a[5], true)
        }
        nr::IOPRIO_GET => super::io_priority::sys_ioprio_get(t, a[0], a[1]),
        nr::SCHED_SETSCHEDULER => super::sched_params::sys_sched_setscheduler(t, a[0], a[1], a[2]),
        nr::SCHED_SETATTR => super::sched_attr::sys_sched_setattr(t, a[0], a[1], a[2]),
        nr::SCHED_GETATTR => super::sched_attr::sys_sched_getattr(t, a[0], a[1], a[2], a[3]),
        nr::SCHED_SETPARAM => super::sched_params::sys_sched_setparam(t, a[0], a[1]),
        nr::SCHED_GETSCHEDULER => super::sched_params::sys_sched_getscheduler(t, a[0]),
        nr::SCHED_GETPARAM => super::sched_params::sys_sched_getparam(t, a[0], a[1]),
        nr::SCHED_GET_PRIORITY_MAX => super::sched_params::priority_max(a[0]),
        nr::SCHED_GET_PRIORITY_MIN => super::sched_params::priority_min(a[0]),
        nr::SCHED_RR_GET_INTERVAL => super::sched_params::sys_sched_rr_get_interval(t, a[0], a[1]),
        nr::PERSONALITY => misc::personality(&t.process, a[0] as u32),
        nr::MINCORE => memory::sys_mincore(a[0], a[1], a[2]),
        nr::SHMGET => super::sysv_ipc::shm::sys_shmget(a[0], a[1], a[2]),
        nr::SHMAT => super::sysv_ipc::shm::sys_shmat(a[0], a[1], a[2]),
        nr::SHMDT => super::sysv_ipc::shm::sys_shmdt(a[0]),
        nr::SHMCTL => super::sysv_ipc::shm::sys_shmctl(a[0], a[1], a[2]),
        nr::SEMGET => super::sysv_ipc::sem::sys_semget(a[0], a[1], a[2]),
        nr::SEMOP => super::sysv_ipc::sem::sys_semop(a[0], a[1], a[2]),
        nr::SEMTIMEDOP => super::sysv_ipc::sem::sys_semtimedop(a[0], a[1], a[2], a[3]),
        nr::SEMCTL => super::sysv_ipc::sem::sys_semctl(a[0], a[1], a[2], a[3]),
        nr::MSGGET => super::sysv_ipc::msg::sys_msgget(a[0], a[1]),
        nr::MSGSND => super::sysv_ipc::msg::sys_msgsnd(a[0], a[1], a[2], a[3]),
        nr::MSGRCV => super::sysv_ipc::msg::sys_msgrcv(a[0], a[1], a[2], a[3], a[4]),
        nr::MSGCTL => super::sysv_ipc::msg::sys_msgctl(a[0], a[1], a[2]),
        nr::SETPRIORITY => super::sched_params::sys_setpriority(t, a[0], a[1], a[2]),
        // Signals.
        nr::RT_SIGACTION => signal::sys_rt_sigaction(a[0], a[1], a[2], a[3]),
        nr::RT_SIGPROCMASK => signal::sys_rt_sigprocmask(a[0], a[1], a[2], a[3]),
        nr::RT_SIGPENDING => signal::sys_rt_sigpending(a[0]),
        nr::RT_SIGRETURN => signal::sigreturn(t, st),
        nr::RT_SIGSUSPEND => signal::sys_rt_sigsuspend(a[0], a[1]),
        nr::RT_SIGTIMEDWAIT => signal::sys_rt_sigtimedwait(a[0], a[1], a[2], a[3]),
        nr::RT_SIGQUEUEINFO => signal::sys_rt_sigqueueinfo(a[0] as i32 as i64, a[1], a[2]),
        nr::RT_TGSIGQUEUEINFO => {
            signal::sys_rt_tgsigqueueinfo(a[0] as i32 as i64, a[1] as i32 as i64, a[2], a[3])
        }
        nr::SIGNALFD => signal::signalfd::sys_signalfd4(a[0] as i32 as u64, a[1], a[2], 0),
        nr::SIGNALFD4 => signal::signalfd::sys_signalfd4(a[0] as i32 as u64, a[1], a[2], a[3]),
        nr::SIGALTSTACK => signal::sys_sigaltstack(a[0], a[1], st.regs.rsp),
        nr::KILL => signal::sys_kill(a[0] as i32 as i64, a[1]),
        nr::TGKILL => signal::sys_tgkill(Some(a[0] as i32 as i64), a[1] as i32 as i64, a[2]),
        nr::TKILL => signal::sys_tgkill(None, a[0] as i32 as i64, a[1]),
        nr::PAUSE => {
            while !signal::pending() {
                let cur = crate::sched::current();
                crate::sched::prepare_block(&cur);
                if signal::pending() {
                    crate::sched::cancel_block(&cur);
                    break;
                }
                crate::sched::timed_block(u64::MAX);
            }
            Err(Errno::EINTR)
        }
        // Processes.
        // The child starts with the caller's FPU state: the image, not a vCPU's registers.
        nr::FORK => {
            st.take_kept_fp();
            task::clone_with(t, st, &task::CloneArgs::fork(0))
        }
        nr::VFORK => {
            st.take_kept_fp();
            task::clone_with(t, st, &task::CloneArgs::fork(0x4000 | 0x100))
        }
        nr::CLONE => {
            st.take_kept_fp();
            let args = task::CloneArgs::of_clone(a[0], a[1], a[2], a[3], a[4])?;
            task::clone_with(t, st, &args)
        }
        nr::CLONE3 => {
            let raw = super::uaccess::copy_sized_struct(
                a[0],
                a[1],
                super::clone_args::CLONE_ARGS_SIZE_VER0,
            )?;
            let args = task::CloneArgs::of_clone3(&raw)?;
            st.take_kept_fp();
            task::clone_with(t, st, &args)
        }
        nr::PIDFD_OPEN => super::pidfd::sys_pidfd_open(a[0], a[1]),
        nr::PIDFD_SEND_SIGNAL => super::pidfd::sys_pidfd_send_signal(a[0], a[1], a[2], a[3]),
        nr::PIDFD_GETFD => super::pidfd::sys_pidfd_getfd(a[0], a[1], a[2]),
        nr::EXECVE => {
            let path = read_path(a[0])?;
            let argv = read_str_array(a[1])?;
            let envp = read_str_array(a[2])?;
            task::do_execve(t, st, fresh, path, argv, envp)
        }
        nr::EXECVEAT => {
            // An empty path is allowed here (`AT_EMPTY_PATH`: `exec_at` checks the flag).
            let path = if a[1] == 0 {
                Vec::new()
            } else {
                super::uaccess::read_cstr(a[1], 4096)?
            };
            let argv = read_str_array(a[2])?;
            let envp = read_str_array(a[3])?;
            let target = super::files::path::exec_at(a[0], path, a[4])?;
            task::exec_program(t, st, fresh, &target, argv, envp)
        }
        nr::WAIT4 => {
            let pid = a[0] as i32;
            let which = match pid {
                -1 => WaitFor::Any,
                0 => WaitFor::Pgid(p.pgid()),
                x if x > 0 => WaitFor::Pid(x),
                x => WaitFor::Pgid(-x),
            };
            match task::wait_child(which, a[2] as u32 & 1)? {
                Some((cpid, status, usage)) => {
                    wait_status_out(a[1], status)?;
                    if a[3] != 0 {
                        super::uaccess::copy_to_user(a[3], &usage.to_rusage())?;
                    }
                    Ok(cpid as u64)
                }
                None => Ok(0),
            }
        }
        nr::WAITID => {
            // Linux's checks: known options only, and at least one kind of change to wait
            // for (`WEXITED`, `WSTOPPED`, `WCONTINUED`).
            const KNOWN: u64 =
                1 | 2 | 4 | 8 | 0x0100_0000 | 0x2000_0000 | 0x4000_0000 | 0x8000_0000;
            if a[3] & !KNOWN != 0 || a[3] & (2 | 4 | 8) == 0 {
                return Err(Errno::EINVAL);
            }
            // `P_PIDFD` of a non-blocking pidfd: `EAGAIN` rather than a wait.
            let mut nonblock = false;
            let which = match a[0] {
                0 => WaitFor::Any,
                1 => WaitFor::Pid(a[1] as i32),
                2 => WaitFor::Pgid(if a[1] == 0 { p.pgid() } else { a[1] as i32 }),
                3 => {
                    let (child, nb) = super::pidfd::process_of(a[1] as i32)?;
                    nonblock = nb;
                    WaitFor::Pid(child.pid)
                }
                _ => return Err(Errno::EINVAL),
            };
            let opts = a[3] as u32;
            let hang = opts & 1 == 0;
            let found = task::wait_child(
                which,
                (opts & 1) | u32::from(nonblock) | (opts & task::WNOWAIT),
            )?;
            if found.is_none() && nonblock && hang {
                return Err(Errno::EAGAIN);
            }
            match found {
                Some((cpid, status, usage)) => {
                    if a[4] != 0 {
                        super::uaccess::copy_to_user(a[4], &usage.to_rusage())?;
                    }
                    if a[2] != 0 {
                        let mut si = [0u8; 128];
                        si[0..4].copy_from_slice(&17i32.to_le_bytes());
                        let (code, val) = if status & 0x7f == 0 {
                            (1i32, (status >> 8) & 0xff)
                        } else {
                            (2i32, status & 0x7f)
                        };
                        si[8..12].copy_from_slice(&code.to_le_bytes());
                        si[16..20].copy_from_slice(&cpid.to_le_bytes());
                        si[24..28].copy_from_slice(&val.to_le_bytes());
                        super::uaccess::copy_to_user(a[2], &si)?;
                    }
                    Ok(0)
                }
                None => {
                    if a[2] != 0 {
                        super::uaccess::copy_to_user(a[2], &[0u8; 128])?;
                    }
                    Ok(0)
                }
            }
        }
        nr::GETPGID => {
            if a[0] == 0 {
                Ok(p.pgid() as u64)
            } else {
                Ok(task::find_process(a[0] as i32).ok_or(Errno::ESRCH)?.pgid() as u64)
            }
        }
        nr::GETPGRP => Ok(p.pgid() as u64),
        nr::SETPGID => task::setpgid(a[0] as i32, a[1] as i32),
        nr::GETSID => {
            if a[0] == 0 {
                Ok(p.sid() as u64)
            } else {
                Ok(task::find_process(a[0] as i32).ok_or(Errno::ESRCH)?.sid() as u64)
            }
        }
        nr::SETSID => task::setsid(),
        nr::FUTEX => futex::sys_futex(a),
        nr::MEMBARRIER => Err(Errno::ENOSYS),
        _ => {
            // Named in the kernel log the first time (`pvmux run --log debug` shows it), so
            // a program that gives up after an ENOSYS says why; counted always.
            let first = UNKNOWN
                .get(n as usize)
                .unwrap_or(&OUT_OF_RANGE)
                .fetch_add(1, Ordering::Relaxed)
                == 0;
            if first {
                crate::println!(
                    "pvmux-kernel: {}[{}]: system call {} ({}) is not implemented: ENOSYS",
                    super::death::comm(p),
                    p.pid,
                    n,
                    super::abi::name(n)
                );
            }
            Err(Errno::ENOSYS)
        }
    }
}
