//! Capabilities (capabilities(7)): a process's five sets ([`CapSets`]: effective, permitted,
//! inheritable, bounding, ambient; bits `0..=`[`CAP_LAST_CAP`], Linux 6.1's numbering) and
//! Linux's rules for them, as pure functions (host unit tests):
//!
//! * a uid change ([`CapState::fix_setuid`], the "capabilities fix-up" of `setuid(2)` and
//!   its siblings; [`CapState::fix_setfsuid`] for `setfsuid(2)`);
//! * `execve` ([`CapState::exec`]; no file capabilities exist in the guest, and no
//!   set-user-id programs);
//! * `capset(2)` ([`CapState::capset`]) and the `prctl(2)` calls on the bounding set, the
//!   ambient set and the keep-capabilities flag ([`prctl`]).
//!
//! `fork` copies them with the rest of the credentials. Init's sets come from the boot
//! arguments' `CAPS` record (`pvmux run --cap-drop`/`--cap-add`, an OCI container's
//! `process.capabilities`), as the sets init holds when it calls `execve` (runc's `capset`
//! before it runs the program), which [`CapState::exec`] then applies Linux's rules to;
//! without one, root holds every capability and any other uid none (but all in its bounding
//! set).

use pvmux_hypercalls::bootargs::{CapSets, CAP_FULL_SET, CAP_LAST_CAP};

use super::uaccess::{read_val, write_val};
use super::{Errno, SysResult};

/// Capability numbers the kernel checks (Linux's).
pub(crate) mod cap {
    /// Change any file's owner and group.
    pub(crate) const CHOWN: u32 = 0;
    /// Bypass read, write and execute permission checks.
    pub(crate) const DAC_OVERRIDE: u32 = 1;
    /// Bypass read checks on files and read/search checks on directories.
    pub(crate) const DAC_READ_SEARCH: u32 = 2;
    /// Act as the owner of any file.
    pub(crate) const FOWNER: u32 = 3;
    /// Keep set-group-id bits a non-member sets.
    pub(crate) const FSETID: u32 = 4;
    /// Signal any process.
    pub(crate) const KILL: u32 = 5;
    /// Set any group ids and supplementary groups.
    pub(crate) const SETGID: u32 = 6;
    /// Set any user ids (and forge `SCM_CREDENTIALS`).
    pub(crate) const SETUID: u32 = 7;
    /// Drop from the bounding set, add to the inheritable set beyond the permitted one.
    pub(crate) const SETPCAP: u32 = 8;
    /// Network administration (netlink changes to devices and addresses).
    pub(crate) const NET_ADMIN: u32 = 12;
    /// Administration (here: forging another pid in `SCM_CREDENTIALS`).
    pub(crate) const SYS_ADMIN: u32 = 21;
    /// Change the root directory (`chroot`).
    pub(crate) const SYS_CHROOT: u32 = 18;
    /// Trace any process (read another's robust list).
    pub(crate) const SYS_PTRACE: u32 = 19;
    /// Lower nice values, other users' scheduling parameters.
    pub(crate) const SYS_NICE: u32 = 23;
    /// Raise hard resource limits.
    pub(crate) const SYS_RESOURCE: u32 = 24;
}

/// The capabilities a filesystem-uid change to or from 0 drops or raises (Linux's
/// `CAP_FS_SET`: `CHOWN`, `DAC_OVERRIDE`, `DAC_READ_SEARCH`, `FOWNER`, `FSETID`,
/// `LINUX_IMMUTABLE`, `MKNOD`, `MAC_OVERRIDE`).
pub(crate) const FS_SET: u64 = 0b1_1111 | (1 << 9) | (1 << 27) | (1 << 32);

/// The bit of capability `c`.
const fn bit(c: u32) -> u64 {
    1 << c
}

/// A process's capability state: its sets and the keep-capabilities flag (`PR_SET_KEEPCAPS`,
/// `SECBIT_KEEP_CAPS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CapState {
    /// The five sets.
    pub(crate) sets: CapSets,
    /// Keep the permitted set when every uid leaves 0 (cleared by `execve`).
    pub(crate) keep: bool,
}

impl CapState {
    /// The sets a process of user `uid` starts with when the host gives none: root's (every
    /// capability) for uid 0, else none but a full bounding set.
    pub(crate) const fn for_uid(uid: u32) -> Self {
        let sets = if uid == 0 {
            CapSets::FULL
        } else {
            CapSets {
                effective: 0,
                permitted: 0,
                inheritable: 0,
                bounding: CAP_FULL_SET,
                ambient: 0,
            }
        };
        Self { sets, keep: false }
    }

    /// Whether capability `c` is effective.
    pub(crate) const fn has(&self, c: u32) -> bool {
        self.sets.effective & bit(c) != 0
    }

    /// After a change of the real, effective and saved uids from `old` to `new` (`[uid,
    /// euid, suid]`; `cap_emulate_setxuid`): when none of them is 0 any more though one was,
    /// the permitted and effective sets are cleared (unless the keep flag is set) and the
    /// ambient set always; an effective uid leaving 0 clears the effective set, one coming
    /// back to 0 restores it from the permitted set.
    pub(crate) fn fix_setuid(&mut self, old: [u32; 3], new: [u32; 3]) {
        let s = &mut self.sets;
        if old.contains(&0) && !new.contains(&0) {
            if !self.keep {
                s.permitted = 0;
                s.effective = 0;
            }
            s.ambient = 0;
        }
        if old[1] == 0 && new[1] != 0 {
            s.effective = 0;
        }
        if old[1] != 0 && new[1] == 0 {
            s.effective = s.permitted;
        }
    }

    /// After a change of the filesystem uid (`setfsuid`): leaving 0 drops [`FS_SET`] from
    /// the effective set, coming to 0 raises those of them that are permitted.
    pub(crate) fn fix_setfsuid(&mut self, old: u32, new: u32) {
        let s = &mut self.sets;
        if old == 0 && new != 0 {
            s.effective &= !FS_SET;
        }
        if old != 0 && new == 0 {
            s.effective |= s.permitted & FS_SET;
        }
    }

    /// `execve` by a process whose real and effective uids are `uid`, `euid` (no file
    /// capabilities, no set-user-id program: Linux's `cap_bprm_creds_from_file`). Root (real
    /// or effective uid 0) gets the bounding and inheritable sets as permitted; anyone else
    /// none. The ambient set is kept and added to the permitted set; the effective set is
    /// the permitted one for an effective uid 0, else the ambient one. The keep flag clears.
    pub(crate) fn exec(&mut self, uid: u32, euid: u32) {
        let s = &mut self.sets;
        let mut permitted = if uid == 0 || euid == 0 {
            s.bounding | s.inheritable
        } else {
            0
        };
        permitted |= s.ambient;
        s.permitted = permitted;
        s.effective = if euid == 0 { permitted } else { s.ambient };
        self.keep = false;
    }

    /// `capset(effective, permitted, inheritable)` (Linux's `cap_capset`): the new
    /// inheritable set within the old inheritable and permitted sets (unless `CAP_SETPCAP`)
    /// and always within the old inheritable and bounding sets; the new permitted set within
    /// the old one; the effective set within the new permitted one (`EPERM` otherwise). The
    /// ambient set loses what is no longer both permitted and inheritable.
    pub(crate) fn capset(
        &mut self,
        effective: u64,
        permitted: u64,
        inheritable: u64,
    ) -> Result<(), Errno> {
        let s = self.sets;
        let inh_limit = if self.has(cap::SETPCAP) {
            CAP_FULL_SET
        } else {
            s.inheritable | s.permitted
        };
        if inheritable & !inh_limit != 0
            || inheritable & !(s.inheritable | s.bounding) != 0
            || permitted & !s.permitted != 0
            || effective & !permitted != 0
        {
            return Err(Errno::EPERM);
        }
        self.sets.effective = effective;
        self.sets.permitted = permitted;
        self.sets.inheritable = inheritable;
        self.sets.ambient &= permitted & inheritable;
        Ok(())
    }
}

/// `prctl` options on capabilities.
mod pr {
    /// `PR_GET_KEEPCAPS`.
    pub(super) const GET_KEEPCAPS: u64 = 7;
    /// `PR_SET_KEEPCAPS`.
    pub(super) const SET_KEEPCAPS: u64 = 8;
    /// `PR_CAPBSET_READ`.
    pub(super) const CAPBSET_READ: u64 = 23;
    /// `PR_CAPBSET_DROP`.
    pub(super) const CAPBSET_DROP: u64 = 24;
    /// `PR_CAP_AMBIENT`.
    pub(super) const CAP_AMBIENT: u64 = 47;
    /// `PR_CAP_AMBIENT_IS_SET`.
    pub(super) const AMBIENT_IS_SET: u64 = 1;
    /// `PR_CAP_AMBIENT_RAISE`.
    pub(super) const AMBIENT_RAISE: u64 = 2;
    /// `PR_CAP_AMBIENT_LOWER`.
    pub(super) const AMBIENT_LOWER: u64 = 3;
    /// `PR_CAP_AMBIENT_CLEAR_ALL`.
    pub(super) const AMBIENT_CLEAR_ALL: u64 = 4;
}

/// A capability number argument: `EINVAL` above [`CAP_LAST_CAP`].
fn cap_arg(v: u64) -> Result<u32, Errno> {
    if v <= u64::from(CAP_LAST_CAP) {
        Ok(v as u32)
    } else {
        Err(Errno::EINVAL)
    }
}

/// The capability `prctl` options on `st` (`a` the call's arguments), `None` for another
/// option.
pub(crate) fn prctl(st: &mut CapState, a: [u64; 5]) -> Option<Result<u64, Errno>> {
    Some(match a[0] {
        pr::GET_KEEPCAPS => Ok(u64::from(st.keep)),
        pr::SET_KEEPCAPS => match a[1] {
            0 | 1 => {
                st.keep = a[1] == 1;
                Ok(0)
            }
            _ => Err(Errno::EINVAL),
        },
        pr::CAPBSET_READ => cap_arg(a[1]).map(|c| u64::from(st.sets.bounding & bit(c) != 0)),
        pr::CAPBSET_DROP => cap_arg(a[1]).and_then(|c| {
            if !st.has(cap::SETPCAP) {
                return Err(Errno::EPERM);
            }
            st.sets.bounding &= !bit(c);
            Ok(0)
        }),
        pr::CAP_AMBIENT => ambient(st, a),
        _ => return None,
    })
}

/// `PR_CAP_AMBIENT`.
fn ambient(st: &mut CapState, a: [u64; 5]) -> Result<u64, Errno> {
    if a[1] == pr::AMBIENT_CLEAR_ALL {
        if a[2] != 0 || a[3] != 0 || a[4] != 0 {
            return Err(Errno::EINVAL);
        }
        st.sets.ambient = 0;
        return Ok(0);
    }
    if a[3] != 0 || a[4] != 0 {
        return Err(Errno::EINVAL);
    }
    let c = cap_arg(a[2])?;
    let s = &mut st.sets;
    match a[1] {
        pr::AMBIENT_IS_SET => Ok(u64::from(s.ambient & bit(c) != 0)),
        pr::AMBIENT_RAISE => {
            if s.permitted & s.inheritable & bit(c) == 0 {
                return Err(Errno::EPERM);
            }
            s.ambient |= bit(c);
            Ok(0)
        }
        pr::AMBIENT_LOWER => {
            s.ambient &= !bit(c);
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// `_LINUX_CAPABILITY_VERSION_1`: one 32-bit word per set.
const VERSION_1: u32 = 0x1998_0330;
/// `_LINUX_CAPABILITY_VERSION_2` (deprecated, same layout as 3).
const VERSION_2: u32 = 0x2007_1026;
/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const VERSION_3: u32 = 0x2008_0522;

/// How many 32-bit words per set a header's version has (`None`: unknown).
fn words(version: u32) -> Option<u64> {
    match version {
        VERSION_1 => Some(1),
        VERSION_2 | VERSION_3 => Some(2),
        _ => None,
    }
}

/// Reads a `cap_user_header_t` at `hdr`: the word count and the pid. An unknown version is
/// answered with version 3 written back and `EINVAL`, as Linux.
fn header(hdr: u64) -> Result<(u64, i32), Errno> {
    let version: u32 = read_val(hdr)?;
    let pid: i32 = read_val(hdr + 4)?;
    match words(version) {
        Some(n) => Ok((n, pid)),
        None => {
            write_val(hdr, &VERSION_3)?;
            Err(Errno::EINVAL)
        }
    }
}

/// `capget(hdr, data)`: the sets of the process `pid` names (0: the caller), `ESRCH` for
/// none. A null `data` only checks the version (libcap probes it so).
pub(crate) fn sys_capget(hdr: u64, data: u64) -> SysResult {
    let (n, pid) = header(hdr)?;
    if pid < 0 {
        return Err(Errno::EINVAL);
    }
    if data == 0 {
        return Ok(0);
    }
    let me = super::task::current_process();
    let s = if pid == 0 || pid == me.pid {
        me.creds.lock().caps.sets
    } else {
        super::task::find_process(pid)
            .ok_or(Errno::ESRCH)?
            .creds
            .lock()
            .caps
            .sets
    };
    for i in 0..n {
        let word = |v: u64| (v >> (32 * i)) as u32;
        let at = data + 12 * i;
        write_val(at, &word(s.effective))?;
        write_val(at + 4, &word(s.permitted))?;
        write_val(at + 8, &word(s.inheritable))?;
    }
    Ok(0)
}

/// `capset(hdr, data)`: only the caller's own sets (`EPERM` for another pid), by
/// [`CapState::capset`]'s rules; bits above [`CAP_LAST_CAP`] are ignored, as Linux.
pub(crate) fn sys_capset(hdr: u64, data: u64) -> SysResult {
    let (n, pid) = header(hdr)?;
    let me = super::task::current_process();
    if pid != 0 && pid != me.pid {
        return Err(Errno::EPERM);
    }
    let (mut e, mut p, mut i) = (0u64, 0u64, 0u64);
    for w in 0..n {
        let at = data + 12 * w;
        e |= u64::from(read_val::<u32>(at)?) << (32 * w);
        p |= u64::from(read_val::<u32>(at + 4)?) << (32 * w);
        i |= u64::from(read_val::<u32>(at + 8)?) << (32 * w);
    }
    let mut c = me.creds.lock();
    c.caps
        .capset(e & CAP_FULL_SET, p & CAP_FULL_SET, i & CAP_FULL_SET)
        .map(|()| 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: CapState = CapState::for_uid(0);

    #[test]
    fn losing_uid_0_clears_permitted_unless_keepcaps() {
        let mut s = ROOT;
        s.sets.ambient = 0;
        s.fix_setuid([0, 0, 0], [1000, 1000, 1000]);
        assert_eq!((s.sets.permitted, s.sets.effective), (0, 0));
        assert_eq!(s.sets.bounding, CAP_FULL_SET, "the bounding set stays");
        let mut s = ROOT;
        s.keep = true;
        s.sets.inheritable = bit(cap::KILL);
        s.sets.ambient = bit(cap::KILL);
        s.fix_setuid([0, 0, 0], [1000, 1000, 1000]);
        assert_eq!(s.sets.permitted, CAP_FULL_SET, "kept");
        assert_eq!(s.sets.effective, 0, "but not effective");
        assert_eq!(s.sets.ambient, 0, "ambient always goes");
    }

    #[test]
    fn effective_uid_leaving_0_and_back() {
        let mut s = ROOT;
        // setresuid(0, 1000, 0): the saved uid keeps privilege; effective set cleared.
        s.fix_setuid([0, 0, 0], [0, 1000, 0]);
        assert_eq!(s.sets.effective, 0);
        assert_eq!(s.sets.permitted, CAP_FULL_SET);
        s.fix_setuid([0, 1000, 0], [0, 0, 0]);
        assert_eq!(s.sets.effective, CAP_FULL_SET, "restored from permitted");
        // Nothing happens between non-zero ids.
        let mut u = CapState::for_uid(1000);
        u.fix_setuid([1000, 1000, 1000], [1000, 2000, 1000]);
        assert_eq!(u, CapState::for_uid(1000));
    }

    #[test]
    fn fsuid_drops_and_raises_the_fs_set() {
        let mut s = ROOT;
        s.fix_setfsuid(0, 1000);
        assert_eq!(s.sets.effective, CAP_FULL_SET & !FS_SET);
        assert!(!s.has(cap::CHOWN) && s.has(cap::KILL));
        s.fix_setfsuid(1000, 0);
        assert_eq!(s.sets.effective, CAP_FULL_SET);
    }

    #[test]
    fn exec_as_root_and_as_a_user() {
        // Root: permitted = bounding | inheritable, effective = permitted.
        let mut s = ROOT;
        s.sets.bounding = bit(cap::CHOWN) | bit(cap::KILL);
        s.sets.permitted = 0;
        s.sets.effective = 0;
        s.keep = true;
        s.exec(0, 0);
        assert_eq!(s.sets.permitted, bit(cap::CHOWN) | bit(cap::KILL));
        assert_eq!(s.sets.effective, s.sets.permitted);
        assert!(!s.keep, "execve clears keepcaps");
        // Real uid 0 only: permitted, but nothing effective.
        let mut r = ROOT;
        r.exec(0, 1000);
        assert_eq!((r.sets.permitted, r.sets.effective), (CAP_FULL_SET, 0));
        // A user: nothing but the ambient set.
        let mut u = CapState::for_uid(1000);
        u.sets.permitted = bit(cap::KILL) | bit(cap::CHOWN);
        u.sets.inheritable = bit(cap::KILL);
        u.sets.ambient = bit(cap::KILL);
        u.exec(1000, 1000);
        assert_eq!(u.sets.permitted, bit(cap::KILL));
        assert_eq!(u.sets.effective, bit(cap::KILL));
        assert_eq!(u.sets.inheritable, bit(cap::KILL));
        let mut u = CapState::for_uid(1000);
        u.sets.permitted = CAP_FULL_SET;
        u.exec(1000, 1000);
        assert_eq!((u.sets.permitted, u.sets.effective), (0, 0));
    }

    #[test]
    fn capset_rules() {
        let mut s = ROOT;
        let k = bit(cap::KILL);
        // Drop to KILL only.
        s.capset(k, k, 0).unwrap();
        assert_eq!((s.sets.effective, s.sets.permitted), (k, k));
        // No raising the permitted set, no effective outside permitted.
        assert_eq!(s.capset(k, k | 1, 0), Err(Errno::EPERM));
        assert_eq!(s.capset(k | 1, k, 0), Err(Errno::EPERM));
        // Inheritable within inheritable | permitted without SETPCAP.
        assert_eq!(s.capset(k, k, 1), Err(Errno::EPERM));
        s.capset(k, k, k).unwrap();
        s.capset(0, k, k).unwrap();
        assert_eq!(s.sets.effective, 0);
        // With SETPCAP, any inheritable bit within the bounding set.
        let mut r = ROOT;
        r.sets.bounding = !bit(cap::CHOWN) & CAP_FULL_SET;
        r.capset(CAP_FULL_SET, CAP_FULL_SET, bit(40)).unwrap();
        assert_eq!(
            r.capset(CAP_FULL_SET, CAP_FULL_SET, bit(40) | bit(cap::CHOWN)),
            Err(Errno::EPERM)
        );
        // Ambient shrinks with permitted & inheritable.
        let mut a = ROOT;
        a.sets.inheritable = k;
        a.sets.ambient = k;
        a.capset(CAP_FULL_SET & !k, CAP_FULL_SET & !k, k).unwrap();
        assert_eq!(a.sets.ambient, 0);
    }

    #[test]
    fn prctl_bounding_ambient_keepcaps() {
        let mut s = ROOT;
        let call = |s: &mut CapState, a: [u64; 5]| prctl(s, a).unwrap();
        assert_eq!(call(&mut s, [23, 40, 0, 0, 0]), Ok(1));
        assert_eq!(call(&mut s, [23, 41, 0, 0, 0]), Err(Errno::EINVAL));
        assert_eq!(call(&mut s, [24, 13, 0, 0, 0]), Ok(0));
        assert_eq!(call(&mut s, [23, 13, 0, 0, 0]), Ok(0));
        // Ambient: raise needs permitted and inheritable.
        assert_eq!(call(&mut s, [47, 2, 5, 0, 0]), Err(Errno::EPERM));
        s.sets.inheritable = bit(5);
        assert_eq!(call(&mut s, [47, 2, 5, 0, 0]), Ok(0));
        assert_eq!(call(&mut s, [47, 1, 5, 0, 0]), Ok(1));
        assert_eq!(call(&mut s, [47, 3, 5, 0, 0]), Ok(0));
        assert_eq!(call(&mut s, [47, 1, 5, 0, 0]), Ok(0));
        s.sets.ambient = bit(5);
        assert_eq!(call(&mut s, [47, 4, 1, 0, 0]), Err(Errno::EINVAL));
        assert_eq!(call(&mut s, [47, 4, 0, 0, 0]), Ok(0));
        assert_eq!(s.sets.ambient, 0);
        assert_eq!(call(&mut s, [47, 9, 0, 0, 0]), Err(Errno::EINVAL));
        // Keepcaps.
        assert_eq!(call(&mut s, [8, 2, 0, 0, 0]), Err(Errno::EINVAL));
        assert_eq!(call(&mut s, [8, 1, 0, 0, 0]), Ok(0));
        assert_eq!(call(&mut s, [7, 0, 0, 0, 0]), Ok(1));
        // Dropping from the bounding set needs SETPCAP.
        let mut u = CapState::for_uid(1000);
        assert_eq!(call(&mut u, [24, 13, 0, 0, 0]), Err(Errno::EPERM));
        assert!(prctl(&mut u, [15, 0, 0, 0, 0]).is_none());
    }
}
