//! `pvmux run --user UID:GID` and `--ulimit NAME=SOFT[:HARD]`, end to end with the host's
//! `/bin/sh` and `id` (`--rootfs /`), compared with the same script run natively under
//! `setpriv` and `prlimit` with the same ids and limits (the native run needs root to change
//! its ids: visibly skipped otherwise), including the owner of the files it creates.

use std::process::{Command, Stdio};

/// The `pvmux` CLI built with this test crate.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");

/// What the script prints: the ids, the limits set and an inherited one, a child's view
/// (inheritance over fork and exec), and the owner of a file and a directory it creates.
const SCRIPT: &str = "id -u; id -g; id -G; ulimit -n; ulimit -Hn; ulimit -c; ulimit -Hc; \
                      /bin/sh -c 'id -u; ulimit -n'; f=/tmp/pvmux-owner-$$; touch $f; \
                      mkdir $f.d; stat -c '%u %g' $f $f.d; rm -f $f; rmdir $f.d";

fn output(mut cmd: Command) -> std::process::Output {
    cmd.stdin(Stdio::null())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

#[test]
fn user_and_ulimits_match_native() {
    let mut native = Command::new("setpriv");
    native
        .args(["--reuid=1000", "--regid=100", "--clear-groups", "--"])
        .args(["prlimit", "--nofile=100:200", "--core=0:unlimited", "--"])
        .args(["/bin/sh", "-c", SCRIPT]);
    let want = output(native);
    if !want.status.success() {
        eprintln!(
            "SKIPPED: the native run (setpriv, prlimit; needs root) failed: {}",
            String::from_utf8_lossy(&want.stderr)
        );
        return;
    }
    let mut guest = Command::new(PVMUX);
    guest
        .args(["run", "--rootfs", "/", "--user", "1000:100"])
        .args(["--ulimit", "nofile=100:200", "--ulimit", "core=0:unlimited"])
        .args(["--", "/bin/sh", "-c", SCRIPT]);
    let got = output(guest);
    assert_eq!(
        (
            got.status.code(),
            String::from_utf8_lossy(&got.stdout),
            String::from_utf8_lossy(&got.stderr)
        ),
        (
            want.status.code(),
            String::from_utf8_lossy(&want.stdout),
            String::from_utf8_lossy(&want.stderr)
        )
    );
}

#[test]
fn bad_limits_and_users_are_host_errors() {
    for (flag, value, says) in [
        ("--ulimit", "nofile=8192", "at most 4096 open files"),
        ("--ulimit", "bogus=1", "unknown limit"),
        (
            "--ulimit",
            "nofile=10:5",
            "soft limit is above the hard limit",
        ),
        ("--user", "root", "not a numeric id"),
    ] {
        let mut cmd = Command::new(PVMUX);
        cmd.args(["run", "--rootfs", "/", flag, value, "--", "/bin/true"]);
        let o = output(cmd);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{flag} {value}: {err}");
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
}
