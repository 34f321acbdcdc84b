//! Host `uretprobe` (335) and `uprobe` (336) pass seccomp on Linux 6.11+/6.17+ hosts by
//! design of those calls (docs/SECURITY.md, "Host system calls 335 and 336"). From guest code
//! (kernel mode and user mode) they must have no effect on the host: `uprobe` fails (no
//! `[uprobes-trampoline]` mapping), `uretprobe` raises SIGILL, nothing is mapped into the
//! sandbox, and the tenant goes on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pvmux_host::TenantOutcome;
use pvmux_tests::{host, launch, run_with_timeout, Run, TempDir};

/// Mappings the host kernel creates for uprobes; none may appear in a sandbox.
fn uprobe_mappings(pid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("[uprobes"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn uprobe_calls_from_the_guest_kernel_have_no_effect_on_the_host() {
    let host = host();
    let (t, out) = launch(
        &host,
        "uprobe",
        "hostile=uprobe-syscalls sleep=1500 exit=7",
        1,
    );
    let pid = t.sandbox_pid();
    // While the guest sleeps after the calls: no uprobe trampoline or XOL area was mapped.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !out.text().contains("uprobe-syscalls CONTAINED") && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let maps = uprobe_mappings(pid);
    assert_eq!(t.wait(), TenantOutcome::Exited(7), "{}", out.text());
    let text = out.text();
    assert!(
        text.contains("hostile: uprobe-syscalls CONTAINED"),
        "{text}"
    );
    assert!(maps.is_empty(), "uprobe mappings in the sandbox: {maps:?}");
    // On this host (Linux ≥ 6.17) the calls pass seccomp; say which way it went.
    assert!(
        text.contains("uprobe (nr 336) passed seccomp, returned -6")
            || text.contains("uprobe (nr 336) passed seccomp, returned -71")
            || text.contains("uprobe (nr 336) trapped, returned -38"),
        "{text}"
    );
    assert!(
        text.contains("uretprobe (nr 335) passed seccomp, SIGILL (#UD)")
            || text.contains("uretprobe (nr 335) trapped, returned -38"),
        "{text}"
    );
}

const PROG_DIR: &str = env!("PVMUX_PROG_DIR");

fn run(mut cmd: Command) -> Run {
    let what = format!("{cmd:?}");
    cmd.env_clear();
    run_with_timeout(
        cmd,
        &what,
        Duration::from_secs(120),
        Duration::from_millis(10),
        |_| {},
    )
}

#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs libc.a for the C test programs: apt-get install libc6-dev"
)]
fn uprobe_calls_from_a_guest_program_behave_as_natively_and_the_tenant_goes_on() {
    let mut names = vec!["small-uprobe".to_owned()];
    if cfg!(have_musl) {
        names.push("small-uprobe-musl".to_owned());
    }
    let root = TempDir::unique("pvmux-uprobe", "rootfs");
    for name in &names {
        std::fs::copy(Path::new(PROG_DIR).join(name), root.0.join(name)).expect("copy");
    }
    for name in &names {
        let native = run(Command::new(PathBuf::from(PROG_DIR).join(name)));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pvmux-cli"));
        cmd.arg("run")
            .arg("--rootfs")
            .arg(&root.0)
            .arg("--")
            .arg(format!("/{name}"));
        let guest = run(cmd);
        assert_eq!(
            native.code(),
            Some(0),
            "{name} native: {}",
            native.context()
        );
        assert_eq!(
            guest.stdout,
            native.stdout,
            "{name}: guest differs from native: {}",
            guest.context()
        );
        assert_eq!(guest.code(), Some(0), "{name}: {}", guest.context());
        assert!(guest.stdout.ends_with("done\n"), "{}", guest.context());
    }
}
