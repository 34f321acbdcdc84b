//! `pvmux run --ulimit NAME=SOFT[:HARD]` (and the help of `--user`): the init program's resource
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
  1024:4096 (4096 is the guest kernel's ceiling). --user USER[:GROUP] runs init with those
  ids, numeric or names looked up in --rootfs DIR/etc/passwd and /etc/group (a name also sets
  the passwd entry's group when no GROUP is given, and HOME unless --env sets it; an unknown
  name is an error); a numeric USER alone has GID 0, as docker for a user without a passwd
  entry. Its children inherit them and only uid 0 may change them; files are checked against
  them as Linux does (permission bits, sticky directories, owner-only chmod/chown).";

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
}
