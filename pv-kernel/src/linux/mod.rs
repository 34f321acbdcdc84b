//! The Linux system-call layer: guest user programs (static x86-64 Linux binaries) run in user
//! sandboxes and their system calls come here.
//!
//! * [`space`] guest address spaces: their memory maps and operation queues, the user
//!   sandboxes' lifecycle, the hand-off that runs user code, copies to and from user memory,
//! * [`pool`] the user-page pool (the only memory user sandboxes can map), [`shmem`] the
//!   objects behind shared anonymous memory,
//! * [`exec`] loading ELF programs and their initial stack, [`imagecache`] the programs
//!   themselves, shared copy-on-write, [`vdso`] the vDSO every program gets,
//! * [`task`] processes and threads, the run loop that hands a vCPU to user code,
//!   [`exec_session`] processes the host starts in the running guest (`pvmux exec`),
//! * [`signal`] POSIX signals, [`fault`] exceptions of user code (page faults, the
//!   out-of-memory killer, fault signals), [`death`] how programs die (the kernel log's
//!   lines, the shutdown record of init),
//! * [`cputime`] CPU-time accounting,
//! * [`files`] file descriptors, pipes, devices and every file system call,
//! * [`net`] sockets,
//! * [`timers`] `alarm`, interval timers, POSIX timers, timerfds, `clock_nanosleep`,
//! * [`memory`], [`futex`], [`misc`] the other system calls, [`rlimit`] resource limits,
//! * [`alloc_guard`] whether the kernel heap can afford what a program asks for,
//! * [`dispatch`] the system-call table,
//! * [`uaccess`] copying from and to the current process's user memory.
//!
//! The layer is safe code (`forbid(unsafe_code)`): every raw memory access — the user pool's
//! bytes, the context regions shared with user sandboxes — goes through the framework in
//! `crate::mm` (`pool_mem`, `user_ctx`), which copies and never hands out a reference to
//! memory a user program can write.
#![forbid(unsafe_code)]

pub(crate) mod abi;
pub(crate) mod alloc_guard;
pub(crate) mod balloon;
pub(crate) mod caps;
pub(crate) mod clone_args;
#[cfg(test)]
pub(crate) mod compat;
pub(crate) mod cputime;
pub(crate) mod creds;
pub(crate) mod death;
pub(crate) mod dispatch;
pub(crate) mod exec;
pub(crate) mod exec_session;
pub(crate) mod fault;
pub(crate) mod files;
pub(crate) mod futex;
pub(crate) mod handover;
pub(crate) mod imagecache;
pub(crate) mod io_priority;
pub(crate) mod memory;
pub(crate) mod misc;
pub(crate) mod net;
pub(crate) mod patch;
pub(crate) mod pidfd;
pub(crate) mod pool;
pub(crate) mod prctl;
pub(crate) mod process_vm;
pub(crate) mod procfs;
pub(crate) mod resources;
pub(crate) mod rlimit;
pub(crate) mod sched_attr;
pub(crate) mod sched_params;
pub(crate) mod shmem;
pub(crate) mod signal;
pub(crate) mod space;
pub(crate) mod sysv_ipc;
pub(crate) mod task;
pub(crate) mod timers;
pub(crate) mod uaccess;
pub(crate) mod vdso;
pub(crate) mod window;

pub(crate) use crate::fs::Errno;

/// A system call's result: a non-negative value or an errno.
pub(crate) type SysResult = Result<u64, Errno>;
