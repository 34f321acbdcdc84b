//! `pvmux run --ulimit NAME=SOFT[:HARD]` and `--user UID[:GID]`: the init program's resource
//! limits and ids, carried to the guest kernel as `RLIMIT` and `USER` boot-argument records
//! (docs/ABI.md §5.1).
//!
//! `--ulimit` takes docker's syntax: a limit name (`nofile`, `nproc`, `stack`, `core`,
//! `memlock`, `as`, `cpu`, `fsize`, `data`, `rss`, `locks`, `sigpending`, `msgqueue`, `nice`,
//! `rtprio`, `rttime`), a soft limit and optionally a hard one (the soft one when absent),
//! decimal or `unlimited`/`-1`. Without `--ulimit` the guest kernel's defaults hold: Linux's
//! for init, with `nofile` 1024 soft / 4096 hard (the soft limit every program that uses
//! `select` expects — `FD_SETSIZE` is 1024 — and the hard one the kernel's ceiling, since
//! every descriptor costs guest-kernel heap; docker passes its daemon's limits, often
//! 1048576, which this kernel could not honour).

use anyhow::{bail, Context};

/// The limit names, by Linux resource number.
const NAMES: [&str; 16] = [
    "cpu",
    "fsize",
    "data",
    "stack",
    "core",
    "rss",
    "nproc",
    "nofile",
    "memlock",
    "as",
    "locks",
    "sigpending",
    "msgqueue",
    "nice",
    "rtprio",
    "rttime",
];
/// `RLIMIT_NOFILE`.
const NOFILE: u32 = 7;
/// The guest kernel's ceiling for the `nofile` hard limit (its `fs.nr_open`).
pub(crate) const NR_OPEN: u64 = 4096;

/// Text for `pvmux run --help`.
pub(crate) const LIMITS_HELP: &str = "\
Resource limits and user:
  --ulimit NAME=SOFT[:HARD] sets one of init's resource limits as docker does (cpu fsize data
  stack core rss nproc nofile memlock as locks sigpending msgqueue nice rtprio rttime; values
  decimal or unlimited/-1; HARD defaults to SOFT). The defaults are Linux's, with nofile
  1024:4096 (4096 is the guest kernel's ceiling). --user UID[:GID] runs init with those
  numeric ids (GID 0 when not given, as docker for a user without a passwd entry); its children inherit
  them and only uid 0 may change them.";

/// One `--ulimit` value: `(resource, soft, hard)`.
pub(crate) fn parse_ulimit(arg: &str) -> anyhow::Result<(u32, u64, u64)> {
    let (name, value) = arg
        .split_once('=')
        .with_context(|| format!("--ulimit {arg:?}: expected NAME=SOFT[:HARD]"))?;
    let Some(resource) = NAMES.iter().position(|n| *n == name) else {
        bail!(
            "--ulimit {arg:?}: unknown limit {name:?} (one of {})",
            NAMES.join(", ")
        );
    };
    let number = |v: &str| -> anyhow::Result<u64> {
        match v {
            "unlimited" | "-1" => Ok(u64::MAX),
            v => v
                .parse::<u64>()
                .with_context(|| format!("--ulimit {arg:?}: {v:?} is not a number or unlimited")),
        }
    };
    let (soft, hard) = match value.split_once(':') {
        Some((s, h)) => (number(s)?, number(h)?),
        None => {
            let v = number(value)?;
            (v, v)
        }
    };
    if soft > hard {
        bail!("--ulimit {arg:?}: the soft limit is above the hard limit");
    }
    let resource = resource as u32;
    if resource == NOFILE && hard > NR_OPEN {
        bail!("--ulimit {arg:?}: the guest kernel allows at most {NR_OPEN} open files");
    }
    Ok((resource, soft, hard))
}

/// The `--user` value: `(uid, gid)`, numeric; without `:GID` the gid is 0 (docker's rule
/// when the user has no passwd entry).
pub(crate) fn parse_user(arg: &str) -> anyhow::Result<(u32, u32)> {
    let id = |v: &str| {
        v.parse::<u32>()
            .ok()
            .filter(|&n| n != u32::MAX)
            .with_context(|| {
                format!("--user {arg:?}: {v:?} is not a numeric id (names are not looked up)")
            })
    };
    match arg.split_once(':') {
        Some((u, g)) => Ok((id(u)?, id(g)?)),
        None => Ok((id(arg)?, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_in_docker_syntax() {
        assert_eq!(parse_ulimit("nofile=1024:2048").unwrap(), (7, 1024, 2048));
        assert_eq!(parse_ulimit("core=0").unwrap(), (4, 0, 0));
        assert_eq!(
            parse_ulimit("stack=unlimited").unwrap(),
            (3, u64::MAX, u64::MAX)
        );
        assert_eq!(parse_ulimit("as=-1:-1").unwrap(), (9, u64::MAX, u64::MAX));
        for bad in [
            "nofile",
            "bogus=1",
            "nofile=x",
            "nofile=10:5",
            "nofile=8192",
            "cpu=1:",
        ] {
            assert!(parse_ulimit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn users_are_numeric() {
        assert_eq!(parse_user("1000").unwrap(), (1000, 0));
        assert_eq!(parse_user("1000:100").unwrap(), (1000, 100));
        for bad in ["root", "1000:", "-1", "4294967295", ":1"] {
            assert!(parse_user(bad).is_err(), "{bad}");
        }
    }
}
