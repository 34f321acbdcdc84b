//! `pvmux run --user NAME[:GROUP]`: user and group names looked up as runc and podman do,
//! in the guest root's `/etc/passwd` and `/etc/group` — for `--rootfs DIR` (or
//! `--rootfs-pack DIR`) the host's `DIR/etc/passwd`, opened with `openat2(RESOLVE_IN_ROOT)`
//! so a symbolic link cannot lead outside DIR. A numeric id needs no entry. A name gives the
//! passwd entry's uid, its primary group (unless `:GROUP` is given) and its home directory
//! (`HOME`, unless `--env`/`--env-file` set one), and without `:GROUP` its supplementary
//! groups as `initgroups(3)` gives them. A name that does not exist is an error.
//! `--group-add GROUP` (podman's) names one more supplementary group, by number or by name in
//! the same `/etc/group`.

use std::path::Path;

use anyhow::{bail, Context};

/// A resolved `--user` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct User {
    /// User id.
    pub(crate) uid: u32,
    /// Group id.
    pub(crate) gid: u32,
    /// The passwd entry's home directory (a name was looked up).
    pub(crate) home: Option<String>,
    /// The supplementary groups of a named user, as `initgroups(3)` sets them: its passwd
    /// group and those `/etc/group` lists it in (only when no `:GROUP` is given, runc's
    /// rule), ascending; the boot arguments' `GROUPS` record carries them.
    pub(crate) groups: Vec<u32>,
}

/// A numeric id (`u32::MAX`, `-1`, is not one).
fn numeric(v: &str) -> Option<u32> {
    v.parse::<u32>().ok().filter(|&n| n != u32::MAX)
}

/// Whether `v` is a name as the shadow utilities accept it (not empty, not numeric, no `:`
/// or whitespace or `/`).
fn is_name(v: &str) -> bool {
    !v.is_empty()
        && numeric(v).is_none()
        && !v.starts_with('-')
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b':' && b != b'/')
}

/// The passwd entry of `name`: `(uid, gid, home)`.
pub(crate) fn passwd_entry(text: &str, name: &str) -> Option<(u32, u32, String)> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || f[0] != name {
            return None;
        }
        Some((numeric(f[2])?, numeric(f[3])?, f[5].to_owned()))
    })
}

/// The gid of group `name` in `/etc/group` text.
pub(crate) fn group_entry(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || f[0] != name {
            return None;
        }
        numeric(f[2])
    })
}

/// The supplementary groups of `user` whose passwd group is `primary`, as `initgroups(3)`
/// gives them (login, su, `id NAME`): `primary` and every group whose member list in
/// `/etc/group` text names `user`, ascending.
pub(crate) fn member_of(text: &str, user: &str, primary: u32) -> Vec<u32> {
    let mut out: Vec<u32> = text
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 || !f[3].split(',').any(|m| m == user) {
                return None;
            }
            numeric(f[2])
        })
        .chain([primary])
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Reads `etc/NAME` inside the guest root `root` (confined to it).
fn read_etc(root: &Path, name: &str) -> anyhow::Result<String> {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags, CWD};
    let dir = openat2(
        CWD,
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::empty(),
    )
    .with_context(|| format!("cannot open {}", root.display()))?;
    let rel = format!("etc/{name}");
    let fd = openat2(
        &dir,
        rel.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .with_context(|| format!("cannot open /{rel} in {}", root.display()))?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text)
        .with_context(|| format!("cannot read /{rel} in {}", root.display()))?;
    Ok(text)
}

/// Resolves `--user USER[:GROUP]` (each a number or a name); names are looked up in the
/// files `etc` returns (`passwd` or `group`). Without `:GROUP`, a numeric user has group 0
/// (docker's rule for a user without a passwd entry) and a named one its passwd group.
pub(crate) fn resolve(
    arg: &str,
    etc: impl Fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<User> {
    let (u, g) = match arg.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (arg, None),
    };
    let bad = |v: &str| anyhow::anyhow!("--user {arg:?}: {v:?} is neither a numeric id nor a name");
    let mut user = if let Some(uid) = numeric(u) {
        User {
            uid,
            gid: 0,
            home: None,
            groups: Vec::new(),
        }
    } else if is_name(u) {
        let text = etc("passwd").with_context(|| format!("--user {arg:?}"))?;
        let (uid, gid, home) = passwd_entry(&text, u)
            .with_context(|| format!("--user {arg:?}: no user {u:?} in the guest's /etc/passwd"))?;
        // Supplementary groups only in the implicit form (a missing /etc/group: the passwd
        // group alone).
        let groups = match g {
            None => etc("group")
                .map(|t| member_of(&t, u, gid))
                .unwrap_or_else(|_| vec![gid]),
            Some(_) => Vec::new(),
        };
        User {
            uid,
            gid,
            home: Some(home),
            groups,
        }
    } else {
        return Err(bad(u));
    };
    if let Some(g) = g {
        user.gid = if let Some(gid) = numeric(g) {
            gid
        } else if is_name(g) {
            let text = etc("group").with_context(|| format!("--user {arg:?}"))?;
            group_entry(&text, g).with_context(|| {
                format!("--user {arg:?}: no group {g:?} in the guest's /etc/group")
            })?
        } else {
            return Err(bad(g));
        };
    }
    Ok(user)
}

/// Resolves one `--group-add GROUP`: a numeric gid, or a name looked up in the `group` file
/// `etc` returns.
pub(crate) fn resolve_group(
    arg: &str,
    etc: impl Fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<u32> {
    if let Some(gid) = numeric(arg) {
        return Ok(gid);
    }
    if !is_name(arg) {
        bail!("--group-add {arg:?}: neither a numeric id nor a group name");
    }
    let text = etc("group").with_context(|| format!("--group-add {arg:?}"))?;
    group_entry(&text, arg)
        .with_context(|| format!("--group-add {arg:?}: no group {arg:?} in the guest's /etc/group"))
}

/// [`resolve_group`] against the guest root `root` (`None`: numeric ids only).
pub(crate) fn resolve_group_in(arg: &str, root: Option<&Path>) -> anyhow::Result<u32> {
    resolve_group(arg, |name| match root {
        Some(root) => read_etc(root, name),
        None => bail!("group names are looked up in --rootfs DIR/etc/group; give numeric ids"),
    })
}

/// [`resolve`] against the guest root `root` (`None`: no root directory to look names up
/// in — only numeric ids work).
pub(crate) fn resolve_in(arg: &str, root: Option<&Path>) -> anyhow::Result<User> {
    resolve(arg, |name| match root {
        Some(root) => read_etc(root, name),
        None => bail!("user and group names are looked up in --rootfs DIR/etc; give numeric ids"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
        alice:x:1000:1001::/home/alice:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\nstaff:x:50:alice,bob\n";

    fn etc(name: &str) -> anyhow::Result<String> {
        Ok(match name {
            "passwd" => PASSWD,
            _ => GROUP,
        }
        .to_owned())
    }

    #[test]
    fn names_and_numbers() {
        let u = resolve("alice", etc).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.home.as_deref()),
            (1000, 1001, Some("/home/alice"))
        );
        let u = resolve("nobody:nogroup", etc).unwrap();
        assert_eq!((u.uid, u.gid), (65534, 65534));
        let u = resolve("alice:staff", etc).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 50));
        assert_eq!(resolve("1000", etc).unwrap().gid, 0);
        assert_eq!(resolve("1000:staff", etc).unwrap().gid, 50);
        let u = resolve("5:6", |_| bail!("no files")).unwrap();
        assert_eq!((u.uid, u.gid, u.home), (5, 6, None));
    }

    #[test]
    fn supplementary_groups_in_the_implicit_form_only() {
        assert_eq!(resolve("alice", etc).unwrap().groups, [50, 1001]);
        assert!(resolve("alice:1001", etc).unwrap().groups.is_empty());
        assert_eq!(resolve("nobody", etc).unwrap().groups, [65534]);
        assert!(resolve("1000", etc).unwrap().groups.is_empty());
        assert_eq!(
            member_of("a:x:5:bob,alice\nb:x:7:alice\nc:x:3:bob\n", "alice", 7),
            [5, 7]
        );
    }

    #[test]
    fn added_groups() {
        assert_eq!(resolve_group("staff", etc).unwrap(), 50);
        assert_eq!(resolve_group("123", etc).unwrap(), 123);
        for bad in ["nope", "-1", "a:b", ""] {
            assert!(resolve_group(bad, etc).is_err(), "{bad}");
        }
        assert!(resolve_group_in("staff", None).is_err());
        assert_eq!(resolve_group_in("7", None).unwrap(), 7);
    }

    #[test]
    fn bad_values_are_errors() {
        for bad in [
            "mallory",
            "alice:nope",
            "1000:",
            ":1",
            "-1",
            "4294967295",
            "a/b",
        ] {
            assert!(resolve(bad, etc).is_err(), "{bad}");
        }
        assert!(resolve_in("alice", None).is_err());
    }

    #[test]
    fn reads_confined_to_the_root() {
        let dir = std::env::temp_dir().join(format!("pvmux-passwd-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/passwd"), PASSWD).unwrap();
        assert_eq!(resolve_in("alice", Some(&dir)).unwrap().uid, 1000);
        // An absolute symbolic link resolves inside the root, not on the host.
        std::fs::remove_file(dir.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("etc/passwd")).unwrap();
        assert!(resolve_in("root", Some(&dir)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
