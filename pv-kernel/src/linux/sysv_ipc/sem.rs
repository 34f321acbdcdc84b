//! System V semaphores (`semget`, `semop`, `semtimedop`, `semctl`): sets of counters kept by
//! key and id, Linux's `ipc/sem.c` rules. Apache's and PHP's `sysvsem` mutexes, Perl's
//! `IPC::Semaphore`, `ipcmk -S` and older servers use them.
//!
//! An operation (a list of `struct sembuf`) is atomic: [`Table::try_ops`] applies it to a
//! copy of the values and commits only if every step can proceed; a step that would block
//! makes the caller wait (counted by `GETNCNT`/`GETZCNT`) unless it asked `IPC_NOWAIT`
//! (`EAGAIN`). Every change bumps `CHANGES` ([`super::Changes`]) and wakes the waiters, who try again (Linux
//! performs a sleeper's operation for it; here the sleeper retries, the same outcomes without
//! Linux's ordering among sleepers). A wait ends with `EIDRM` when its set is removed,
//! `EINTR` for a signal (never restarted, `signal(7)`), `EAGAIN` at `semtimedop`'s timeout.
//!
//! `SEM_UNDO` adjustments are kept per process and set ([`Table::undo`]) and applied when
//! the process ends (clamped to `0..=SEMVMX`, as Linux's `exit_sem`); `SETVAL` and `SETALL`
//! clear them. Linux shares a process's list with the processes it `clone`s with
//! `CLONE_SYSVSEM`; here each process has its own (threads share theirs).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::{
    caller, now, put_i32s, put_u64s, Caller, Changes, Ids, IPC_64, IPC_INFO, IPC_NOWAIT, IPC_RMID,
    IPC_SET, IPC_STAT, PERM_LEN, READ, WRITE,
};
use crate::irq::IrqLock;
use crate::linux::uaccess::{copy_from_user, copy_to_user};
use crate::linux::{Errno, SysResult};

/// `semctl` commands of semaphores only.
const GETPID: u32 = 11;
const GETVAL: u32 = 12;
const GETALL: u32 = 13;
const GETNCNT: u32 = 14;
const GETZCNT: u32 = 15;
const SETVAL: u32 = 16;
const SETALL: u32 = 17;
const SEM_STAT: u32 = 18;
const SEM_INFO: u32 = 19;
const SEM_STAT_ANY: u32 = 20;
/// `sem_flg`: undo the step when the process ends.
const SEM_UNDO: i16 = 0x1000;
/// Linux's defaults: most sets, semaphores per set, steps per operation, largest value and
/// largest adjustment.
const SEMMNI: u32 = 32000;
const SEMMSL: u32 = 32000;
const SEMOPM: usize = 500;
const SEMVMX: i32 = 32767;
const SEMAEM: i32 = SEMVMX;
/// Size of `struct semid64_ds`, of `struct sembuf`, of `struct seminfo`.
const DS_LEN: usize = 104;
const SEMBUF_LEN: usize = 6;
const INFO_LEN: usize = 40;

/// One semaphore.
#[derive(Clone, Copy, Default)]
struct Sem {
    val: i32,
    /// The last process that changed it.
    pid: i32,
}

/// A waiting caller: its token, the semaphore it waits on and whether for zero.
#[derive(Clone, Copy)]
struct Waiter {
    token: u64,
    num: u16,
    zero: bool,
}

/// A set.
struct Set {
    sems: Vec<Sem>,
    waiting: Vec<Waiter>,
    otime: u64,
    ctime: u64,
}

/// One step of an operation (`struct sembuf`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) num: u16,
    pub(crate) op: i16,
    pub(crate) flg: i16,
}

/// What an operation came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Applied.
    Done,
    /// A step must wait: on semaphore `num`, for zero or for a large enough value.
    Wait { num: u16, zero: bool },
}

/// The sets, and the processes' `SEM_UNDO` adjustments by (pid, set id).
pub(crate) struct Table {
    ids: Ids<Set>,
    undo: BTreeMap<(i32, i32), Vec<i32>>,
    next_token: u64,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            ids: Ids::new(SEMMNI),
            undo: BTreeMap::new(),
            next_token: 1,
        }
    }
}

impl Table {
    /// `semget(key, nsems, flags)` for `who` at `now` (s): the id.
    pub(crate) fn get(
        &mut self,
        key: i32,
        nsems: i32,
        flags: u32,
        who: &Caller,
        now: u64,
    ) -> Result<i32, Errno> {
        let n = u32::try_from(nsems).map_err(|_| Errno::EINVAL)?;
        if n > SEMMSL {
            return Err(Errno::EINVAL);
        }
        self.ids.get_or_make(
            key,
            flags,
            who,
            |s| match n as usize > s.sems.len() {
                true => Err(Errno::EINVAL),
                false => Ok(()),
            },
            || {
                if n == 0 {
                    return Err(Errno::EINVAL);
                }
                crate::linux::alloc_guard::reserve(n as usize * core::mem::size_of::<Sem>())?;
                let mut sems = Vec::new();
                sems.try_reserve_exact(n as usize)
                    .map_err(|_| Errno::ENOMEM)?;
                sems.resize(n as usize, Sem::default());
                Ok(Set {
                    sems,
                    waiting: Vec::new(),
                    otime: 0,
                    ctime: now,
                })
            },
        )
    }

    /// Tries operation `steps` on set `id` for `who` at `now`: applied (values, pids, the
    /// time and `SEM_UNDO` adjustments), or the step that must wait; `EAGAIN` for such a
    /// step with `IPC_NOWAIT`, `ERANGE` past `SEMVMX` or `SEMAEM`, `EFBIG` for a semaphore
    /// the set lacks, `EACCES` without the right (writing to change, reading to wait for
    /// zero).
    pub(crate) fn try_ops(
        &mut self,
        id: i32,
        steps: &[Step],
        who: &Caller,
        now: u64,
    ) -> Result<Outcome, Errno> {
        let e = self.ids.get_mut(id)?;
        let n = e.obj.sems.len();
        if steps.iter().any(|s| usize::from(s.num) >= n) {
            return Err(Errno::EFBIG);
        }
        let alter = steps.iter().any(|s| s.op != 0);
        if !e.perm.allows(who, if alter { WRITE } else { READ }) {
            return Err(Errno::EACCES);
        }
        let set = &mut e.obj;
        let undoing = steps.iter().any(|s| s.flg & SEM_UNDO != 0);
        let adj = match undoing {
            true => Some(self.undo.get(&(who.pid, id))),
            false => None,
        };
        let mut vals: Vec<i32> = Vec::new();
        vals.try_reserve_exact(n).map_err(|_| Errno::ENOMEM)?;
        vals.extend(set.sems.iter().map(|s| s.val));
        let mut adjs: Vec<i32> = Vec::new();
        if undoing {
            adjs.try_reserve_exact(n).map_err(|_| Errno::ENOMEM)?;
            match adj.flatten() {
                Some(a) => adjs.extend_from_slice(a),
                None => adjs.resize(n, 0),
            }
        }
        for s in steps {
            let i = usize::from(s.num);
            let cur = vals[i];
            let blocked = (s.op == 0 && cur != 0) || cur + i32::from(s.op) < 0;
            if blocked {
                if s.flg & IPC_NOWAIT as i16 != 0 {
                    return Err(Errno::EAGAIN);
                }
                return Ok(Outcome::Wait {
                    num: s.num,
                    zero: s.op == 0,
                });
            }
            let next = cur + i32::from(s.op);
            if next > SEMVMX {
                return Err(Errno::ERANGE);
            }
            if s.flg & SEM_UNDO != 0 {
                let a = adjs[i] - i32::from(s.op);
                if !(-SEMAEM - 1..=SEMAEM).contains(&a) {
                    return Err(Errno::ERANGE);
                }
                adjs[i] = a;
            }
            vals[i] = next;
        }
        for (sem, v) in set.sems.iter_mut().zip(&vals) {
            sem.val = *v;
        }
        for s in steps {
            set.sems[usize::from(s.num)].pid = who.pid;
        }
        set.otime = now;
        if undoing {
            crate::linux::alloc_guard::reserve(n * 4)?;
            self.undo.insert((who.pid, id), adjs);
        }
        Ok(Outcome::Done)
    }

    /// Counts a caller waiting on set `id` as `w` says: its token.
    fn wait_on(&mut self, id: i32, num: u16, zero: bool) -> Result<u64, Errno> {
        let token = self.next_token;
        self.next_token += 1;
        let set = &mut self.ids.get_mut(id)?.obj;
        set.waiting.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
        set.waiting.push(Waiter { token, num, zero });
        Ok(token)
    }

    /// The waiter `token` of set `id` stops waiting (nothing if the set is gone).
    fn stop_waiting(&mut self, id: i32, token: u64) {
        if let Ok(e) = self.ids.get_mut(id) {
            e.obj.waiting.retain(|w| w.token != token);
        }
    }

    /// `SETVAL` (`num` = `Some`) or `SETALL` of set `id`: values checked against
    /// `0..=SEMVMX` (`ERANGE`), the adjustments of those semaphores cleared.
    fn set_values(
        &mut self,
        id: i32,
        num: Option<usize>,
        vals: &[i32],
        who: &Caller,
        now: u64,
    ) -> Result<(), Errno> {
        if vals.iter().any(|v| !(0..=SEMVMX).contains(v)) {
            return Err(Errno::ERANGE);
        }
        let e = self.ids.get_mut(id)?;
        if num.is_some_and(|i| i >= e.obj.sems.len()) {
            return Err(Errno::EINVAL);
        }
        if !e.perm.allows(who, WRITE) {
            return Err(Errno::EACCES);
        }
        let start = num.unwrap_or(0);
        for (sem, v) in e.obj.sems[start..].iter_mut().zip(vals) {
            (sem.val, sem.pid) = (*v, who.pid);
        }
        e.obj.ctime = now;
        let n = vals.len();
        for ((_, set), adj) in self.undo.iter_mut() {
            if *set == id {
                adj[start..start + n].fill(0);
            }
        }
        Ok(())
    }

    /// `IPC_RMID` of set `id`, with every adjustment for it.
    fn remove(&mut self, id: i32, who: &Caller) -> Result<(), Errno> {
        self.ids.remove(id, who)?;
        self.undo.retain(|&(_, set), _| set != id);
        Ok(())
    }

    /// Process `pid` ended: its adjustments are applied (clamped to `0..=SEMVMX`; the
    /// semaphores' last process is `pid`). Whether anything changed.
    pub(crate) fn process_exited(&mut self, pid: i32) -> bool {
        let mine: Vec<(i32, Vec<i32>)> = self
            .undo
            .extract_if(.., |&(p, _), _| p == pid)
            .map(|((_, id), adj)| (id, adj))
            .collect();
        let mut changed = false;
        for (id, adj) in mine {
            let Ok(e) = self.ids.get_mut(id) else {
                continue;
            };
            for (sem, a) in e.obj.sems.iter_mut().zip(adj) {
                if a != 0 {
                    sem.val = (sem.val + a).clamp(0, SEMVMX);
                    sem.pid = pid;
                    changed = true;
                }
            }
        }
        changed
    }

    /// `struct semid64_ds` of set `id`, `READ` checked unless `any` (`SEM_STAT_ANY`).
    fn ds(&self, id: i32, who: &Caller, any: bool) -> Result<[u8; DS_LEN], Errno> {
        let e = self.ids.get(id)?;
        if !any && !e.perm.allows(who, READ) {
            return Err(Errno::EACCES);
        }
        let mut b = [0u8; DS_LEN];
        e.perm.write(&mut b, id, 0);
        let s = &e.obj;
        put_u64s(
            &mut b,
            PERM_LEN,
            &[s.otime, 0, s.ctime, 0, s.sems.len() as u64],
        );
        Ok(b)
    }

    /// A `GET*` command on semaphore `num` of set `id` (`READ` checked).
    fn get_one(&self, id: i32, num: usize, cmd: u32, who: &Caller) -> Result<u64, Errno> {
        let e = self.ids.get(id)?;
        if !e.perm.allows(who, READ) {
            return Err(Errno::EACCES);
        }
        let s = e.obj.sems.get(num).ok_or(Errno::EINVAL)?;
        let count = |zero: bool| {
            e.obj
                .waiting
                .iter()
                .filter(|w| usize::from(w.num) == num && w.zero == zero)
                .count() as u64
        };
        Ok(match cmd {
            GETVAL => s.val as u64,
            GETPID => s.pid as u64,
            GETNCNT => count(false),
            _ => count(true),
        })
    }

    /// `GETALL`: the values of set `id` (`READ` checked).
    fn values(&self, id: i32, who: &Caller) -> Result<Vec<u16>, Errno> {
        let e = self.ids.get(id)?;
        if !e.perm.allows(who, READ) {
            return Err(Errno::EACCES);
        }
        let mut v = Vec::new();
        v.try_reserve_exact(e.obj.sems.len())
            .map_err(|_| Errno::ENOMEM)?;
        v.extend(e.obj.sems.iter().map(|s| s.val as u16));
        Ok(v)
    }

    /// The number of semaphores in set `id`.
    fn len_of(&self, id: i32) -> Result<usize, Errno> {
        Ok(self.ids.get(id)?.obj.sems.len())
    }
}

/// The sets of this kernel.
static TABLE: IrqLock<Option<Table>> = IrqLock::new(None);
/// Changes callers waiting in `semop` look again after.
static CHANGES: Changes = Changes::new();

fn with<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    let mut t = TABLE.lock();
    f(t.get_or_insert_with(Table::default))
}

/// Wakes the waiters after a change.
fn changed() {
    CHANGES.changed();
}

/// `semget(key, nsems, flags)`.
pub(crate) fn sys_semget(key: u64, nsems: u64, flags: u64) -> SysResult {
    let who = caller();
    with(|t| {
        t.get(
            key as u32 as i32,
            nsems as u32 as i32,
            flags as u32,
            &who,
            now(),
        )
    })
    .map(|id| id as u64)
}

/// `semop(id, sops, nsops)`.
pub(crate) fn sys_semop(id: u64, sops: u64, nsops: u64) -> SysResult {
    semtimedop(id, sops, nsops, None)
}

/// `semtimedop(id, sops, nsops, timeout)`.
pub(crate) fn sys_semtimedop(id: u64, sops: u64, nsops: u64, timeout: u64) -> SysResult {
    let timeout = match timeout {
        0 => None,
        t => Some(crate::linux::futex::read_timespec(t)?),
    };
    semtimedop(id, sops, nsops, timeout)
}

fn semtimedop(id: u64, sops: u64, nsops: u64, timeout: Option<u64>) -> SysResult {
    let n = nsops as usize;
    if n == 0 {
        return Err(Errno::EINVAL);
    }
    if n > SEMOPM {
        return Err(Errno::E2BIG);
    }
    let deadline = timeout.map(|ns| crate::time::now_ns().saturating_add(ns));
    let mut raw = [0u8; SEMOPM * SEMBUF_LEN];
    copy_from_user(sops, &mut raw[..n * SEMBUF_LEN])?;
    let steps: Vec<Step> = raw[..n * SEMBUF_LEN]
        .chunks_exact(SEMBUF_LEN)
        .map(|c| Step {
            num: u16::from_ne_bytes([c[0], c[1]]),
            op: i16::from_ne_bytes([c[2], c[3]]),
            flg: i16::from_ne_bytes([c[4], c[5]]),
        })
        .collect();
    let id = id as u32 as i32;
    let who = caller();
    let task = crate::linux::task::current_task();
    let mut waited = false;
    loop {
        let seen = CHANGES.seen();
        let token = with(|t| {
            let outcome = match t.try_ops(id, &steps, &who, now()) {
                // The set went while this caller waited.
                Err(Errno::EINVAL) if waited => Err(Errno::EIDRM),
                r => r,
            }?;
            match outcome {
                Outcome::Done => Ok(None),
                Outcome::Wait { num, zero } => t.wait_on(id, num, zero).map(Some),
            }
        })?;
        let Some(token) = token else {
            changed();
            return Ok(0);
        };
        waited = true;
        let in_time = CHANGES.wait(seen, &task, deadline);
        with(|t| t.stop_waiting(id, token));
        if CHANGES.moved(seen) {
            // Try again first: an operation that can proceed does, signal or not.
            let done = with(|t| matches!(t.try_ops(id, &steps, &who, now()), Ok(Outcome::Done)));
            if done {
                changed();
                return Ok(0);
            }
        }
        if task.signal_pending() {
            return Err(Errno::EINTR);
        }
        if !in_time {
            return Err(Errno::EAGAIN);
        }
    }
}

/// `semctl(id, num, cmd, arg)`: `arg` is the value (`SETVAL`) or a user address.
pub(crate) fn sys_semctl(id: u64, num: u64, cmd: u64, arg: u64) -> SysResult {
    let who = caller();
    let id = id as u32 as i32;
    let num = num as u32 as i32;
    let num_ok = || usize::try_from(num).map_err(|_| Errno::EINVAL);
    match cmd as u32 & !IPC_64 {
        c @ (IPC_INFO | SEM_INFO) => {
            let (sets, sems, highest) = with(|t| {
                let sems: usize = t.ids.values().map(|s| s.sems.len()).sum();
                (t.ids.len() as i32, sems as i32, t.ids.highest())
            });
            let semmns = (SEMMNI * SEMMSL) as i32;
            let (usz, aem) = match c {
                SEM_INFO => (sets, sems),
                _ => (20, SEMAEM),
            };
            let mut b = [0u8; INFO_LEN];
            put_i32s(
                &mut b,
                &[
                    semmns,
                    SEMMNI as i32,
                    semmns,
                    semmns,
                    SEMMSL as i32,
                    SEMOPM as i32,
                    SEMOPM as i32,
                    usz,
                    SEMVMX,
                    aem,
                ],
            );
            copy_to_user(arg, &b)?;
            Ok(highest.into())
        }
        c @ (IPC_STAT | SEM_STAT | SEM_STAT_ANY) => {
            let (ds, id) = with(|t| {
                let id = t.ids.stat_id(id, c != IPC_STAT)?;
                Ok::<_, Errno>((t.ds(id, &who, c == SEM_STAT_ANY)?, id))
            })?;
            copy_to_user(arg, &ds)?;
            Ok(if c == IPC_STAT { 0 } else { id as u64 })
        }
        IPC_SET => {
            let mut b = [0u8; DS_LEN];
            copy_from_user(arg, &mut b)?;
            let t_now = now();
            with(|t| {
                let e = t.ids.get_mut(id)?;
                e.perm.set_from(&b, &who)?;
                e.obj.ctime = t_now;
                Ok(0)
            })
        }
        IPC_RMID => {
            with(|t| t.remove(id, &who))?;
            changed();
            Ok(0)
        }
        c @ (GETVAL | GETPID | GETNCNT | GETZCNT) => {
            let num = num_ok()?;
            with(|t| t.get_one(id, num, c, &who))
        }
        GETALL => {
            let vals = with(|t| t.values(id, &who))?;
            let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_ne_bytes()).collect();
            copy_to_user(arg, &bytes)?;
            Ok(0)
        }
        SETVAL => {
            let num = num_ok()?;
            let val = arg as u32 as i32;
            with(|t| t.set_values(id, Some(num), &[val], &who, now()))?;
            changed();
            Ok(0)
        }
        SETALL => {
            let n = with(|t| t.len_of(id))?;
            let mut raw = Vec::new();
            raw.try_reserve_exact(n * 2).map_err(|_| Errno::ENOMEM)?;
            raw.resize(n * 2, 0u8);
            copy_from_user(arg, &mut raw)?;
            let vals: Vec<i32> = raw
                .chunks_exact(2)
                .map(|c| i32::from(u16::from_ne_bytes([c[0], c[1]])))
                .collect();
            with(|t| {
                // The set may have been replaced meanwhile: its size must still match.
                if t.len_of(id)? != n {
                    return Err(Errno::EIDRM);
                }
                t.set_values(id, None, &vals, &who, now())
            })?;
            changed();
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// How many sets there are (a kernel hand-over does not carry them).
pub(crate) fn count() -> usize {
    with(|t| t.ids.len())
}

/// Process `pid` ended: its `SEM_UNDO` adjustments are applied.
pub(crate) fn process_exited(pid: i32) {
    if with(|t| t.process_exited(pid)) {
        changed();
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::user;
    use super::super::IPC_CREAT;
    use super::*;

    fn step(num: u16, op: i16, flg: i16) -> Step {
        Step { num, op, flg }
    }

    fn vals(t: &Table, id: i32) -> Vec<u16> {
        t.values(id, &user(1000)).unwrap()
    }

    #[test]
    fn sets_are_found_by_key_with_linux_s_size_rules() {
        let mut t = Table::default();
        let me = user(1000);
        assert_eq!(t.get(5, 0, IPC_CREAT | 0o600, &me, 1), Err(Errno::EINVAL));
        assert_eq!(t.get(5, 32001, IPC_CREAT, &me, 1), Err(Errno::EINVAL));
        assert_eq!(t.get(5, -1, IPC_CREAT, &me, 1), Err(Errno::EINVAL));
        let id = t.get(5, 3, IPC_CREAT | 0o600, &me, 1).unwrap();
        assert_eq!(t.get(5, 0, 0, &me, 1), Ok(id), "0: any size");
        assert_eq!(t.get(5, 3, 0, &me, 1), Ok(id));
        assert_eq!(t.get(5, 4, 0, &me, 1), Err(Errno::EINVAL), "larger");
        assert_eq!(vals(&t, id), [0, 0, 0]);
    }

    #[test]
    fn an_operation_is_all_or_nothing() {
        let mut t = Table::default();
        let me = user(1000);
        let id = t.get(0, 2, 0o600, &me, 1).unwrap();
        assert_eq!(t.try_ops(id, &[step(0, 2, 0)], &me, 5), Ok(Outcome::Done));
        // The second step would block: with IPC_NOWAIT nothing changes.
        let nowait = IPC_NOWAIT as i16;
        assert_eq!(
            t.try_ops(id, &[step(0, -1, 0), step(1, -1, nowait)], &me, 6),
            Err(Errno::EAGAIN)
        );
        assert_eq!(vals(&t, id), [2, 0]);
        assert_eq!(
            t.try_ops(id, &[step(0, -1, 0), step(1, -1, 0)], &me, 6),
            Ok(Outcome::Wait {
                num: 1,
                zero: false
            })
        );
        assert_eq!(
            t.try_ops(id, &[step(0, 0, 0)], &me, 6),
            Ok(Outcome::Wait { num: 0, zero: true })
        );
        // Later steps see earlier ones.
        assert_eq!(
            t.try_ops(id, &[step(1, 1, 0), step(1, -1, 0), step(1, 0, 0)], &me, 7),
            Ok(Outcome::Done)
        );
        assert_eq!(
            t.try_ops(id, &[step(0, 32767, 0)], &me, 7),
            Err(Errno::ERANGE)
        );
        assert_eq!(t.try_ops(id, &[step(2, 1, 0)], &me, 7), Err(Errno::EFBIG));
        // Waiting for zero needs reading only; changing needs writing.
        let reader = {
            let mut r = user(1001);
            r.groups.push(1000);
            r
        };
        t.ids.get_mut(id).unwrap().perm.mode = 0o640;
        assert_eq!(
            t.try_ops(id, &[step(1, 0, 0)], &reader, 8),
            Ok(Outcome::Done)
        );
        assert_eq!(
            t.try_ops(id, &[step(1, 1, 0)], &reader, 8),
            Err(Errno::EACCES)
        );
    }

    #[test]
    fn undo_is_applied_when_the_process_ends_and_cleared_by_setval() {
        let mut t = Table::default();
        let me = user(1000);
        let id = t.get(0, 2, 0o600, &me, 1).unwrap();
        t.set_values(id, None, &[1, 5], &me, 2).unwrap();
        let mut child = user(1000);
        child.pid = 42;
        let undo = SEM_UNDO;
        assert_eq!(
            t.try_ops(id, &[step(0, -1, undo), step(1, 3, undo)], &child, 3),
            Ok(Outcome::Done)
        );
        assert_eq!(vals(&t, id), [0, 8]);
        // Another process takes from semaphore 1 meanwhile: the undo clamps at 0.
        t.try_ops(id, &[step(1, -7, 0)], &me, 4).unwrap();
        assert!(t.process_exited(42));
        assert_eq!(vals(&t, id), [1, 0]);
        assert_eq!(t.get_one(id, 0, GETPID, &me), Ok(42));
        assert!(!t.process_exited(42), "applied once");
        // SETVAL clears that semaphore's adjustment.
        t.try_ops(id, &[step(0, 1, undo), step(1, 1, undo)], &child, 5)
            .unwrap();
        t.set_values(id, Some(0), &[9], &me, 6).unwrap();
        assert!(t.process_exited(42));
        assert_eq!(vals(&t, id), [9, 0]);
        assert_eq!(
            t.set_values(id, Some(0), &[32768], &me, 6),
            Err(Errno::ERANGE)
        );
        assert_eq!(t.set_values(id, Some(2), &[1], &me, 6), Err(Errno::EINVAL));
    }

    #[test]
    fn waiters_are_counted_and_the_status_has_linux_s_layout() {
        let mut t = Table::default();
        let me = user(1000);
        let id = t.get(0x77, 3, IPC_CREAT | 0o640, &me, 9).unwrap();
        let a = t.wait_on(id, 1, false).unwrap();
        let b = t.wait_on(id, 1, true).unwrap();
        t.wait_on(id, 2, false).unwrap();
        assert_eq!(t.get_one(id, 1, GETNCNT, &me), Ok(1));
        assert_eq!(t.get_one(id, 1, GETZCNT, &me), Ok(1));
        t.stop_waiting(id, a);
        t.stop_waiting(id, b);
        assert_eq!(t.get_one(id, 1, GETNCNT, &me), Ok(0));
        assert_eq!(t.get_one(id, 2, GETNCNT, &me), Ok(1));
        assert_eq!(t.get_one(id, 3, GETVAL, &me), Err(Errno::EINVAL));
        assert_eq!(t.get_one(id, 0, GETVAL, &user(1001)), Err(Errno::EACCES));
        let ds = t.ds(id, &me, false).unwrap();
        let w32 = |o: usize| u32::from_ne_bytes(ds[o..o + 4].try_into().unwrap());
        let w64 = |o: usize| u64::from_ne_bytes(ds[o..o + 8].try_into().unwrap());
        assert_eq!((w32(0), w32(4), w32(20)), (0x77, 1000, 0o640));
        assert_eq!((w64(48), w64(64), w64(80)), (0, 9, 3));
        assert!(t.ds(id, &user(1001), true).is_ok(), "SEM_STAT_ANY");
        t.remove(id, &me).unwrap();
        assert_eq!(t.get_one(id, 0, GETVAL, &me), Err(Errno::EINVAL));
    }
}
