//! Syscall-site patching (issue 13 item 1; `pv-kernel/src/linux/patch.rs`, the stub's
//! `user/patch.rs`): `tests/programs/c/patch_sites.c` makes system calls from
//! `mov $nr,%eax; syscall` sites — from several threads while they get patched, under a
//! `SIGALRM` flood with and without `SA_RESTART`, with every register, the red zone and the
//! flags checked, and across `fork` — and prints the same as natively, with patching (the
//! default) and with `--no-patch`, isolated and in the trusted in-process mode. Its `code` mode shows a site's bytes after it ran: changed
//! by patching, the native bytes with `--no-patch`. Its `hostile` mode calls the stub's patch
//! entry with garbage registers, writes a patched site's original bytes back, and points its
//! patch table at address 0: the program gets only its own system calls and its own SIGSEGV.

use std::process::Command;
use std::time::Duration;

use pvmux_tests::{prog, run_clean, run_native, variants, Run, TempDir};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Longest any single run may take (generous: the machine is loaded).
const TIMEOUT: Duration = Duration::from_secs(180);
/// The trusted in-process mode, whose patched sites call the kernel sandbox's syscall entry.
const TRUSTED: &str = "--user-isolation=none";

/// A rootfs holding the given test programs at `/NAME`.
fn rootfs(names: &[String]) -> TempDir {
    let dir = TempDir::unique("pvmux-patch", "rootfs");
    for name in names {
        std::fs::copy(prog(name), dir.0.join(name)).expect("copy program");
    }
    dir
}

/// Runs `/program args` under pvmux with `root` as its rootfs, `vcpus` vCPUs and `flags`.
fn guest(root: &TempDir, vcpus: u32, flags: &[&str], program: &str, args: &[&str]) -> Run {
    let mut cmd = Command::new(PVMUX);
    cmd.arg("run")
        .arg(format!("--vcpus={vcpus}"))
        .args(flags)
        .arg("--rootfs")
        .arg(&root.0)
        .arg("--")
        .arg(format!("/{program}"))
        .args(args);
    run_clean(cmd, TIMEOUT)
}

/// Threads, signals (EINTR and `SA_RESTART`), registers, EFLAGS.AC and `fork` over patched
/// sites: the same output as natively, with glibc and musl, on 1 and 2 vCPUs, patched and
/// not, isolated and in the trusted in-process mode (where `fork` children run in user
/// sandboxes with the parent's patched code).
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn patched_sites_behave_as_native() {
    let names = variants("patch-sites");
    let root = rootfs(&names);
    for name in &names {
        let n = run_native(name, &[], TIMEOUT);
        assert_eq!(n.code(), Some(0), "native {name}:\n{}", n.stdout);
        assert!(n.has_line("failures: 0"), "native {name}:\n{}", n.stdout);
        for (vcpus, flags) in [
            (1, &[][..]),
            (2, &[][..]),
            (2, &["--no-patch"][..]),
            (1, &[TRUSTED][..]),
            (2, &[TRUSTED][..]),
            (2, &[TRUSTED, "--no-patch"][..]),
        ] {
            let g = guest(&root, vcpus, flags, name, &[]);
            assert_eq!(
                g.stdout, n.stdout,
                "{name} on {vcpus} vCPUs {flags:?}: guest stdout differs from the native run \
                 (guest stderr:\n{})",
                g.stderr
            );
            assert_eq!(g.code(), n.code(), "{name} {flags:?}: exit status");
        }
    }
}

/// A program reading its own code: with patching the bytes of a site that ran differ from
/// the native ones (it is now a jump); with `--no-patch` they are the native bytes.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn code_bytes_change_with_patching_and_not_with_no_patch() {
    let root = rootfs(&["patch-sites".to_owned()]);
    let n = run_native("patch-sites", &["code"], TIMEOUT);
    assert_eq!(n.code(), Some(0), "native:\n{}", n.stdout);
    assert!(
        n.has_line("site bytes: b8 27 00 00 00 0f 05"),
        "native:\n{}",
        n.stdout
    );

    let off = guest(&root, 2, &["--no-patch"], "patch-sites", &["code"]);
    assert_eq!(off.stdout, n.stdout, "--no-patch: stderr:\n{}", off.stderr);

    for flags in [&[][..], &[TRUSTED][..]] {
        let on = guest(&root, 2, flags, "patch-sites", &["code"]);
        assert_eq!(on.code(), Some(0), "{flags:?}: stderr:\n{}", on.stderr);
        assert!(on.has_line("calls: ok"), "{flags:?}:\n{}", on.stdout);
        let bytes = on
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("site bytes: "))
            .unwrap_or_else(|| panic!("{flags:?}: no site bytes:\n{}", on.stdout));
        // `jmp *[cell]` through a cell of the table at 0x6_0000 (byte 5 = 0x06).
        assert!(
            bytes.starts_with("ff 24 25 ") && bytes.ends_with(" 06 00"),
            "{flags:?}: patched site bytes: {bytes}"
        );
    }
}

/// Calling the patch entry directly with garbage registers is one system call of the
/// program's own; writing the original bytes back makes the site trap (and work) again;
/// a patch table pointed at 0 is the program's own SIGSEGV (its handler exits 0).
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn hostile_use_of_the_entry_and_the_table_gains_nothing() {
    let root = rootfs(&["patch-sites".to_owned()]);
    let g = guest(&root, 2, &[], "patch-sites", &["hostile"]);
    assert_eq!(
        g.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        g.stdout,
        g.stderr
    );
    for line in ["entry: ok", "unpatch: ok", "table: SIGSEGV"] {
        assert!(g.has_line(line), "no {line:?}:\n{}", g.stdout);
    }
}
