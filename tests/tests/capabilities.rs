//! Capabilities as the guest sees them, compared with Linux: the rules (`capset`, `prctl`,
//! uid changes, `execve`) run by the `caps` test program in the guest and natively;
//! `pvmux run --cap-drop/--cap-add` against `setpriv(1)` with the same sets; and an OCI
//! bundle whose `process.capabilities` (podman's default set) is exactly what the guest's
//! /proc/self/status shows, `chown` failing with `EPERM` once `CAP_CHOWN` is not in it; and
//! podman's `--cap-drop`/`--cap-add`/`--user` with pvmux as its runtime against runc.

use std::process::Command;

use pvmux_tests::oci::{run_bundle, Bundle, BUSYBOX};
use pvmux_tests::output_in_clean_env;

/// The `pvmux` CLI built with this test crate.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");

/// podman's default capabilities (containers.conf `default_capabilities`).
const PODMAN_DEFAULT: [(&str, u32); 11] = [
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_SETFCAP", 31),
    ("CAP_SETGID", 6),
    ("CAP_SETPCAP", 8),
    ("CAP_SETUID", 7),
    ("CAP_SYS_CHROOT", 18),
];

fn text(o: &std::process::Output) -> (Option<i32>, String, String) {
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The /proc/self/status `Cap*` lines of a program run with `args` in the guest (after
/// `pvmux run FLAGS --rootfs / --`).
fn guest_caps(flags: &[&str]) -> (Option<i32>, String, String) {
    let mut c = Command::new(PVMUX);
    c.arg("run").args(flags).args([
        "--rootfs",
        "/",
        "--",
        BUSYBOX,
        "grep",
        "Cap",
        "/proc/self/status",
    ]);
    text(&output_in_clean_env(c))
}

#[test]
#[cfg_attr(
    not(have_root),
    ignore = "needs root: the native run changes ids and capabilities (CI runs as root)"
)]
fn capability_rules_are_as_natively() {
    for name in pvmux_tests::variants("caps") {
        let program = pvmux_tests::prog(&name);
        let program = program.to_str().unwrap();
        let mut guest = Command::new(PVMUX);
        guest.args(["run", "--rootfs", "/", "--", program, "rules", "/tmp"]);
        let got = output_in_clean_env(guest);
        let tmp = pvmux_tests::TempDir::unique("pvmux-caps", "native");
        let mut native = Command::new(program);
        native.args(["rules", tmp.0.to_str().unwrap()]);
        let want = output_in_clean_env(native);
        assert!(want.status.success(), "native {name}: {:?}", text(&want));
        assert_eq!(text(&got), text(&want), "{name}");
        // Not a vacuous comparison: the rules refused and allowed what Linux does.
        let out = String::from_utf8_lossy(&want.stdout);
        for line in [
            "chown file 0: -1 Operation not permitted",
            "chown file 1000: 0",
            "capset raising CHOWN: -1 Operation not permitted",
            "setuid(0) as nobody: -1 Operation not permitted",
            "CapAmb:\t0000000000000020",
        ] {
            assert!(out.contains(line), "{line:?} not in\n{out}");
        }
    }
}

#[test]
fn without_flags_root_has_every_capability_and_a_user_none() {
    let (code, out, err) = guest_caps(&[]);
    assert_eq!(code, Some(0), "{err}");
    let full = format!("{:016x}", (1u64 << 41) - 1);
    for set in ["CapPrm", "CapEff", "CapBnd"] {
        assert!(out.contains(&format!("{set}:\t{full}\n")), "{out}");
    }
    let (code, out, err) = guest_caps(&["--user", "65534:65534"]);
    assert_eq!(code, Some(0), "{err}");
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert!(
            out.contains(&format!("{set}:\t0000000000000000\n")),
            "{out}"
        );
    }
    assert!(out.contains(&format!("CapBnd:\t{full}\n")), "{out}");
}

#[test]
#[cfg_attr(
    not(all(have_root, have_setpriv)),
    ignore = "needs root and setpriv(1) for the native run: run as root, apt-get install util-linux"
)]
fn cap_flags_give_what_setpriv_gives_natively() {
    let native = |args: &[&str]| {
        let mut c = Command::new("/usr/bin/setpriv");
        c.args(args)
            .args(["--", BUSYBOX, "grep", "Cap", "/proc/self/status"]);
        text(&output_in_clean_env(c))
    };
    // Root with a reduced bounding set: after execve, permitted = effective = bounding.
    let got = guest_caps(&["--cap-drop", "ALL", "--cap-add", "CAP_CHOWN,kill"]);
    let want = native(&["--bounding-set", "-all,+chown,+kill"]);
    assert_eq!(got, want);
    assert!(want.1.contains("CapEff:\t0000000000000021"), "{want:?}");
    // Root dropping one.
    let got = guest_caps(&["--cap-drop", "NET_RAW"]);
    let want = format!("{:016x}", ((1u64 << 41) - 1) & !(1 << 13));
    assert!(got.1.contains(&format!("CapEff:\t{want}\n")), "{got:?}");
    // A user with an added capability: it is ambient, so effective after execve.
    let got = guest_caps(&[
        "--user",
        "65534:65534",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "KILL",
    ]);
    let want = native(&[
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "--inh-caps",
        "-all,+kill",
        "--ambient-caps",
        "+kill",
        "--bounding-set",
        "-all,+kill",
    ]);
    assert_eq!(got, want);
    // Bad names are host errors.
    let (code, _, err) = guest_caps(&["--cap-drop", "CAP_NOPE"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("unknown capability \"CAP_NOPE\""), "{err}");
}

/// A bundle whose process shows its capabilities and chowns a file, with `caps` as all of
/// `process.capabilities`' bounding, effective and permitted sets.
fn chown_bundle(caps: &[&str]) -> Bundle {
    let args = [
        "sh",
        "-c",
        "busybox grep Cap /proc/self/status; touch /tmp/f; busybox chown 1000 /tmp/f; \
         echo chown=$?",
    ];
    Bundle::new(
        PVMUX,
        &args,
        serde_json::json!({
            "process": {
                "cwd": "/",
                "args": args,
                "env": ["PATH=/bin"],
                "user": { "uid": 0, "gid": 0 },
                "capabilities": {
                    "bounding": caps, "effective": caps, "permitted": caps,
                    "inheritable": [], "ambient": [],
                },
            },
        }),
    )
}

#[test]
fn an_oci_bundle_s_capabilities_are_the_guest_s() {
    let names: Vec<&str> = PODMAN_DEFAULT.iter().map(|(n, _)| *n).collect();
    let mask: u64 = PODMAN_DEFAULT.iter().map(|(_, b)| 1u64 << b).sum();
    let b = chown_bundle(&names);
    let r = run_bundle(&b, "caps-podman");
    assert_eq!(r.code(), Some(0), "{} {}", r.stdout, r.stderr);
    let want = format!(
        "CapInh:\t0000000000000000\nCapPrm:\t{mask:016x}\nCapEff:\t{mask:016x}\n\
         CapBnd:\t{mask:016x}\nCapAmb:\t0000000000000000\nchown=0\n"
    );
    assert_eq!(r.stdout, want);
    // Without CAP_CHOWN, chown is refused as on Linux.
    let without: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| *n != "CAP_CHOWN")
        .collect();
    let b = chown_bundle(&without);
    let r = run_bundle(&b, "caps-nochown");
    assert_eq!(r.code(), Some(0), "{} {}", r.stdout, r.stderr);
    let m = mask & !1;
    assert!(
        r.stdout.contains(&format!("CapEff:\t{m:016x}\n")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.ends_with("chown=1\n"), "{}", r.stdout);
    assert!(r.stderr.contains("Operation not permitted"), "{}", r.stderr);
}

#[test]
fn podman_s_capability_flags_give_what_runc_gives() {
    let p = pvmux_tests::oci::Podman::new(PVMUX);
    // /bin is root's: only CAP_CHOWN changes its owner (the container's copy).
    let script = "busybox grep Cap /proc/self/status; busybox chown 1000 /bin; echo chown=$?";
    let mut refused = 0;
    for flags in [
        &[][..],
        &["--cap-drop", "CHOWN"][..],
        &["--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE,CHOWN"][..],
        &["--user", "1000:1000", "--cap-add", "KILL"][..],
    ] {
        let run = |runtime: Option<&str>| {
            let mut args = vec!["run", "--rm"];
            args.extend_from_slice(flags);
            args.extend_from_slice(&[p.image.as_str(), "sh", "-c", script]);
            p.podman(runtime, &args)
        };
        let pvmux = run(Some(PVMUX));
        let native = run(None);
        assert_eq!(pvmux.code(), Some(0), "{flags:?}: {}", pvmux.context());
        assert_eq!(pvmux.code(), native.code(), "{flags:?}");
        assert_eq!(pvmux.stdout, native.stdout, "{flags:?}");
        assert!(pvmux.stdout.contains("CapBnd:"), "{}", pvmux.stdout);
        if pvmux.stdout.ends_with("chown=1\n") {
            refused += 1;
            assert!(
                pvmux.stderr.contains("Operation not permitted"),
                "{}",
                pvmux.context()
            );
        }
    }
    // Not vacuous: without CAP_CHOWN (dropped, and as the user), chown was refused.
    assert_eq!(refused, 2);
}
