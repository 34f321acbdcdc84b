//! `process_vm_readv` and `process_vm_writev`: copying between the caller's memory and
//! another process's, without `ptrace` (py-spy and other samplers, Open MPI's single-copy
//! transport, debuggers' helpers). The target is found by pid; the caller needs Linux's
//! `PTRACE_MODE_ATTACH_REALCREDS` right: the same thread group, or its real user and group
//! ids equal to every one of the target's (which must be dumpable), or `CAP_SYS_PTRACE`.
//! The bytes go through a kernel buffer, the target's space and the caller's never locked
//! together; a fault on either side ends the transfer, which returns the bytes moved so far
//! (`EFAULT` if none), as Linux's does. The rules are pure functions with host unit tests.

use super::caps::cap;
use super::creds::Creds;
use super::files::file::{kbuf, UserBuf};
use super::space;
use super::task::{self, Process};
use super::{Errno, SysResult};

/// Largest piece copied at once.
const PIECE: usize = 64 * 1024;

/// Whether a caller with `me` may read or write the memory of a process with `them`
/// (`dumpable`: not made undumpable by `prctl` or a set-id program): Linux's
/// `__ptrace_may_access` with `PTRACE_MODE_REALCREDS`.
fn may_access(me: &Creds, them: &Creds, dumpable: bool) -> bool {
    if me.capable(cap::SYS_PTRACE) {
        return true;
    }
    let uids = [them.uid, them.euid, them.suid]
        .iter()
        .all(|&u| u == me.uid);
    let gids = [them.gid, them.egid, them.sgid]
        .iter()
        .all(|&g| g == me.gid);
    uids && gids && dumpable
}

/// The process `pid` names, if the caller may access its memory.
fn target(pid: u64) -> Result<alloc::sync::Arc<Process>, Errno> {
    let pid = pid as u32 as i32;
    let t = task::find_process(pid)
        .filter(|_| pid > 0)
        .ok_or(Errno::ESRCH)?;
    may_attach(&t)?;
    Ok(t)
}

/// `EPERM` unless the caller has Linux's `PTRACE_MODE_ATTACH_REALCREDS` right over `t`
/// (its own process always): also what `pidfd_getfd` needs.
pub(crate) fn may_attach(t: &Process) -> Result<(), Errno> {
    let me = task::current_process();
    if t.pid != me.pid {
        let mine = me.creds.lock().clone();
        let theirs = t.creds.lock().clone();
        if !may_access(&mine, &theirs, !t.prctl.values().not_dumpable) {
            return Err(Errno::EPERM);
        }
    }
    Ok(())
}

/// `process_vm_readv` (`write` false) or `process_vm_writev` (`write` true).
pub(crate) fn sys_process_vm(
    pid: u64,
    local_iov: u64,
    local_cnt: u64,
    remote_iov: u64,
    remote_cnt: u64,
    flags: u64,
    write: bool,
) -> SysResult {
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    let local = UserBuf::iovec(local_iov, local_cnt)?;
    let remote = UserBuf::iovec(remote_iov, remote_cnt)?;
    let t = target(pid)?;
    let space = t.space().ok_or(Errno::ESRCH)?;
    let mut buf = kbuf(local.len().min(PIECE))?;
    let mut done = 0usize;
    'remote: for &(rva, rlen) in remote.segments() {
        let mut off = 0usize;
        while off < rlen && done < local.len() {
            let n = (rlen - off).min(buf.len()).min(local.len() - done);
            let at = rva + off as u64;
            let moved = if write {
                local
                    .copy_in(done, &mut buf[..n])
                    .and_then(|()| space::copy_out(&space, at, &buf[..n]))
            } else {
                space::copy_in(&space, at, &mut buf[..n])
                    .and_then(|()| local.copy_out(done, &buf[..n]))
            };
            if let Err(e) = moved {
                if done == 0 {
                    return Err(e);
                }
                break 'remote;
            }
            off += n;
            done += n;
        }
    }
    Ok(done as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(uid: u32, gid: u32) -> Creds {
        Creds::new(uid, gid)
    }

    #[test]
    fn access_needs_every_id_to_match_or_the_right() {
        let me = creds(1000, 1000);
        assert!(!me.capable(cap::SYS_PTRACE));
        assert!(may_access(&me, &creds(1000, 1000), true));
        assert!(!may_access(&me, &creds(1000, 1000), false), "undumpable");
        assert!(!may_access(&me, &creds(1001, 1000), true));
        assert!(!may_access(&me, &creds(1000, 1001), true));
        let mut setuid = creds(1000, 1000);
        setuid.euid = 0;
        assert!(
            !may_access(&me, &setuid, true),
            "a saved or effective id differs"
        );
        assert!(
            may_access(&creds(0, 0), &creds(5, 5), false),
            "CAP_SYS_PTRACE"
        );
    }
}
