//! OCI bind mounts of files, through podman: `-v HOSTFILE:GUESTFILE[:ro]` and podman's own
//! default binds (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, `/run/.containerenv`)
//! reach the guest as file volumes, so a container under pvmux sees what it sees under runc:
//! the same files, the same bytes, `:ro` refused as natively, and its writes to a read-write
//! file reach the host file. Ignored (`needs ...`) without busybox-static and podman.

use pvmux_tests::oci::Podman;
use pvmux_tests::TempDir;

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");

/// What the container prints: podman's files, the user's read-only file, a refused write to
/// it, and a write to the read-write file.
const SCRIPT: &str = "exec 2>&1
for f in /etc/hosts /etc/resolv.conf /etc/hostname /run/.containerenv /etc/app.conf; do
  echo \"== $f\"; cat $f || echo \"status $?\"
done
echo changed >> /etc/app.conf || echo \"status $?\"
echo \"written by the container\" > /data.txt
cat /data.txt";

#[test]
#[cfg_attr(
    not(all(have_busybox, have_podman)),
    ignore = "needs /bin/busybox and podman: apt-get install busybox-static podman"
)]
fn podman_binds_files_into_the_guest_as_runc_does() {
    let p = Podman::new(PVMUX);
    let t = TempDir::unique("pvmux-oci", "mounts");
    let conf = t.0.join("app.conf");
    let body = format!("setting = {}\n", std::process::id());
    std::fs::write(&conf, &body).unwrap();
    let name = format!("pvmux-oci-mounts-{}", std::process::id());
    // Each runtime writes its own read-write file.
    let run = |runtime: Option<&str>, data: &str, ip: Option<&str>| {
        let data_file = t.0.join(data);
        std::fs::write(&data_file, b"from the host\n").unwrap();
        let ro = format!("{}:/etc/app.conf:ro", conf.display());
        let rw = format!("{}:/data.txt", data_file.display());
        let mut args = vec![
            "run",
            "--rm",
            "--name",
            &name,
            "--hostname",
            "box",
            "-v",
            &ro,
            "-v",
            &rw,
        ];
        if let Some(ip) = ip {
            args.extend(["--ip", ip]);
        }
        // `/bin/sh`, not `sh`: under pvmux argv[0] is the resolved path (left alone here),
        // and busybox sh names itself by argv[0] in its error messages.
        args.extend([p.image.as_str(), "/bin/sh", "-c", SCRIPT]);
        let r = p.podman(runtime, &args);
        let host = std::fs::read_to_string(&data_file).unwrap();
        (r, host)
    };
    let (native, native_host) = run(None, "native.txt", None);
    assert_eq!(native.code(), Some(0), "runc: {}", native.context());
    // The same address for pvmux's container, so /etc/hosts can be compared whole.
    let hosts_line = native
        .stdout
        .lines()
        .skip_while(|l| *l != "== /etc/hosts")
        .take_while(|l| *l != "== /etc/resolv.conf")
        .find(|l| l.ends_with(&format!("box {name}")))
        .unwrap_or_else(|| {
            panic!(
                "runc's /etc/hosts names the container: {}",
                native.context()
            )
        });
    let ip = hosts_line.split_whitespace().next().unwrap().to_owned();
    let (pvmux, pvmux_host) = run(Some(PVMUX), "pvmux.txt", Some(&ip));
    assert_eq!(pvmux.code(), Some(0), "pvmux: {}", pvmux.context());
    assert_eq!(
        pvmux.stdout,
        native.stdout,
        "pvmux: {}\nrunc: {}",
        pvmux.context(),
        native.context()
    );
    // The user's file is the host's bytes, and read-only as natively.
    assert!(
        pvmux.stdout.contains(&format!("== /etc/app.conf\n{body}")),
        "{}",
        pvmux.context()
    );
    assert!(
        pvmux.stdout.contains("Read-only file system"),
        "{}",
        pvmux.context()
    );
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), body);
    // podman's resolv.conf, not the image's (the image has none).
    assert!(
        pvmux.stdout.contains("== /etc/resolv.conf\nnameserver"),
        "{}",
        pvmux.context()
    );
    // The container's write reached the host file.
    assert_eq!(pvmux_host, "written by the container\n");
    assert_eq!(pvmux_host, native_host);
}
