//! Capability names and `pvmux run`'s `--cap-drop` / `--cap-add` / `--cap-sets`: the init
//! program's capability sets (boot command 24, [`CapSets`]).
//!
//! Names are runc's and podman's: `CAP_NET_RAW` or `NET_RAW`, any case, and `ALL`. As with
//! podman, the set starts as every capability (what root has without the flags); `--cap-drop
//! ALL` empties it and `--cap-add ALL` fills it, then single names are dropped and added.
//! Root (no `--user`, or uid 0) gets the set as its bounding, permitted and effective sets;
//! another user keeps it as the bounding set and gets the capabilities it `--cap-add`s by
//! name in its permitted, effective, inheritable and ambient sets (podman's rule for
//! non-root containers).

use anyhow::{bail, Context};
use pvmux_hypercalls::bootargs::{CapSets, CAP_FULL_SET, CAP_LAST_CAP};

/// Linux's capability names, by number (`0..=CAP_LAST_CAP`), without `CAP_`.
pub(crate) const NAMES: [&str; CAP_LAST_CAP as usize + 1] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The number of capability `name` (`CAP_NET_RAW`, `net_raw`...).
pub(crate) fn number(name: &str) -> anyhow::Result<u32> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES
        .iter()
        .position(|n| *n == bare)
        .map(|i| i as u32)
        .with_context(|| {
            format!("unknown capability {name:?} (Linux's names: CAP_CHOWN, NET_RAW, ..., or ALL)")
        })
}

/// A comma-separated list of flag values: whether it names `ALL`, and the mask of the others.
fn list(values: &[String]) -> anyhow::Result<(bool, u64)> {
    let mut all = false;
    let mut mask = 0u64;
    for name in values
        .iter()
        .flat_map(|v| v.split(','))
        .filter(|n| !n.is_empty())
    {
        if name.eq_ignore_ascii_case("ALL") {
            all = true;
        } else {
            mask |= 1 << number(name)?;
        }
    }
    Ok((all, mask))
}

/// The sets `--cap-drop` and `--cap-add` give a process of user `uid` (`None`: no flag).
pub(crate) fn from_flags(
    drop: &[String],
    add: &[String],
    uid: u32,
) -> anyhow::Result<Option<CapSets>> {
    if drop.is_empty() && add.is_empty() {
        return Ok(None);
    }
    let (drop_all, dropped) = list(drop)?;
    let (add_all, added) = list(add)?;
    if dropped & added != 0 {
        bail!(
            "capabilities both added and dropped: {}",
            names(dropped & added)
        );
    }
    let mut set = if drop_all && !add_all {
        0
    } else {
        CAP_FULL_SET
    };
    set = (set & !dropped) | added;
    let sets = if uid == 0 {
        CapSets {
            effective: set,
            permitted: set,
            inheritable: 0,
            bounding: set,
            ambient: 0,
        }
    } else {
        CapSets {
            effective: added,
            permitted: added,
            inheritable: added,
            bounding: set,
            ambient: added,
        }
    };
    Ok(Some(sets))
}

/// `--cap-sets EFF:PRM:INH:BND:AMB` (hexadecimal masks, the boot word's form): the five sets
/// verbatim (an OCI config's `process.capabilities`), checked as the kernel checks them.
pub(crate) fn parse_sets(s: &str) -> Result<CapSets, String> {
    let masks: Vec<u64> = s
        .split(':')
        .map(|m| u64::from_str_radix(m, 16))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{s:?}: {e}"))?;
    let [effective, permitted, inheritable, bounding, ambient] = masks[..] else {
        return Err(format!(
            "{s:?}: want five hexadecimal masks EFF:PRM:INH:BND:AMB"
        ));
    };
    let c = CapSets {
        effective,
        permitted,
        inheritable,
        bounding,
        ambient,
    };
    if c.ok() {
        Ok(c)
    } else {
        Err(format!(
            "{s:?}: a capability above {CAP_LAST_CAP}, or effective not within permitted, or \
             ambient not within permitted and inheritable"
        ))
    }
}

/// The `--cap-sets` value of `c`.
pub(crate) fn sets_flag(c: &CapSets) -> String {
    format!(
        "{:x}:{:x}:{:x}:{:x}:{:x}",
        c.effective, c.permitted, c.inheritable, c.bounding, c.ambient
    )
}

/// The names in `mask`, comma-separated.
pub(crate) fn names(mask: u64) -> String {
    NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| format!("CAP_{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn names_like_runc_and_podman() {
        assert_eq!(number("CAP_CHOWN").unwrap(), 0);
        assert_eq!(number("net_raw").unwrap(), 13);
        assert_eq!(number("CAP_CHECKPOINT_RESTORE").unwrap(), CAP_LAST_CAP);
        assert!(number("CAP_NOPE").is_err());
        assert_eq!(names(0b11), "CAP_CHOWN,CAP_DAC_OVERRIDE");
    }

    #[test]
    fn drop_and_add_like_podman() {
        assert_eq!(from_flags(&[], &[], 0).unwrap(), None);
        let root = from_flags(&v(&["CAP_CHOWN,NET_RAW"]), &[], 0)
            .unwrap()
            .unwrap();
        assert_eq!(root.bounding, CAP_FULL_SET & !(1 | 1 << 13));
        assert_eq!(
            (root.effective, root.permitted),
            (root.bounding, root.bounding)
        );
        assert_eq!((root.inheritable, root.ambient), (0, 0));
        let only = from_flags(&v(&["ALL"]), &v(&["kill"]), 0).unwrap().unwrap();
        assert_eq!(only.bounding, 1 << 5);
        // A user: the added ones are ambient (and so effective after execve).
        let user = from_flags(&v(&["ALL"]), &v(&["KILL"]), 1000)
            .unwrap()
            .unwrap();
        assert_eq!(
            (user.bounding, user.effective, user.ambient),
            (1 << 5, 1 << 5, 1 << 5)
        );
        assert!(user.ok());
        assert!(from_flags(&v(&["KILL"]), &v(&["KILL"]), 0).is_err());
        assert!(from_flags(&v(&["BOGUS"]), &[], 0).is_err());
    }

    #[test]
    fn sets_flag_round_trips_and_is_checked() {
        let c = CapSets {
            effective: 1,
            permitted: 3,
            inheritable: 2,
            bounding: CAP_FULL_SET,
            ambient: 2,
        };
        assert_eq!(parse_sets(&sets_flag(&c)), Ok(c));
        assert!(parse_sets("0:0:0:20000000000:0").is_err(), "bit 41");
        assert!(parse_sets("1:0:0:0:0").is_err());
        assert!(parse_sets("0:0:0:0").is_err());
    }
}
