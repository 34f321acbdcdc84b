//! `pvmux run --user UID:GID` and `--ulimit NAME=SOFT[:HARD]`, end to end with the host's
//! `/bin/sh` and `id` (`--rootfs /`), compared with the same script run natively under
//! `setpriv` and `prlimit` with the same ids and limits (the native run needs root to change
//! its ids: ignored otherwise, `have_root`), including the owner of the files it creates.

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
#[cfg_attr(not(have_root), ignore = "needs root: run the tests as root (CI does)")]
fn user_and_ulimits_match_native() {
    let mut native = Command::new("setpriv");
    native
        .args(["--reuid=1000", "--regid=100", "--clear-groups", "--"])
        .args(["prlimit", "--nofile=100:200", "--core=0:unlimited", "--"])
        .args(["/bin/sh", "-c", SCRIPT]);
    let want = output(native);
    assert!(
        want.status.success(),
        "the native run (setpriv, prlimit, as root) failed: {}",
        String::from_utf8_lossy(&want.stderr)
    );
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
        ("--user", "pvmux-no-such-user", "no user"),
    ] {
        let mut cmd = Command::new(PVMUX);
        cmd.args(["run", "--rootfs", "/", flag, value, "--", "/bin/true"]);
        let o = output(cmd);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{flag} {value}: {err}");
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
}

/// A root process makes files, drops to uid/gid 2000 and checks what it may do: `access`
/// and `execve` follow the owner/group/other bits (Linux's DAC rule) — the same script run
/// natively (as root) in a temporary directory and in the guest in `/tmp`.
const DAC_SCRIPT: &str = r##"
import os, subprocess, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
def make(name, text, mode):
    p = os.path.join(d, name)
    with open(p, "w") as f:
        f.write(text)
    os.chmod(p, mode)
    return p
x700 = make("x700", "#!/bin/sh\necho ran x700\n", 0o700)
x755 = make("x755", "#!/bin/sh\necho ran x755\n", 0o755)
r600 = make("r600", "secret\n", 0o600)
r644 = make("r644", "public\n", 0o644)
print("root", os.access(r600, os.R_OK), os.access(x700, os.X_OK), os.access(r644, os.X_OK))
os.setgroups([])
os.setgid(2000)
os.setuid(2000)
print("ids", os.getresuid(), os.getresgid())
for p in [x700, x755, r600, r644]:
    n = os.path.basename(p)
    print(n, os.access(p, os.R_OK), os.access(p, os.W_OK), os.access(p, os.X_OK))
for p in [x700, x755]:
    try:
        sys.stdout.flush()
        subprocess.run([p], check=True)
    except PermissionError as e:
        print(os.path.basename(p), "exec denied", e.errno)
try:
    os.setuid(0)
except PermissionError as e:
    print("setuid(0)", e.errno)
"##;

#[test]
#[cfg_attr(
    not(all(have_python3, have_root)),
    ignore = "needs /usr/bin/python3 and root: apt-get install python3; run the tests as root (CI does)"
)]
fn dropped_privileges_follow_the_permission_bits_as_natively() {
    let dir = pvmux_tests::TempDir::unique("pvmux-dac", "native");
    let native_dir = dir.0.join("d");
    let mut native = Command::new("/usr/bin/python3");
    native.args(["-c", DAC_SCRIPT]).arg(&native_dir);
    let want = output(native);
    let mut guest = Command::new(PVMUX);
    guest
        .args([
            "run",
            "--rootfs",
            "/",
            "--",
            "/usr/bin/python3",
            "-c",
            DAC_SCRIPT,
        ])
        .arg("/tmp/pvmux-dac");
    let got = output(guest);
    let text = |o: &std::process::Output| {
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(text(&got), text(&want));
}
