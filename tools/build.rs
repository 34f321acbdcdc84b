//! Builds the embedded images with nested cargo invocations into `target/embedded`, and copies
//! them into `OUT_DIR`:
//!
//! - `pvmux-stub`, the sandbox stub (package `pvmux-switcher` of this workspace);
//! - `pvmux-kernel`, the default guest kernel, and `pvmux-kernel-test`, the same kernel with
//!   its `diagnostics` feature (self-tests, hostile cases, in-guest benchmarks), both from
//!   `pv-kernel/image`, a workspace of its own (see its Cargo.toml for why);
//! - `pvmux-user-bench`, the user-mode workload of `pvmux bench`, a static executable for the
//!   host's target (`+crt-static`), in `target/embedded-user` since its flags differ.
//!
//! The nested cargo uses its own target directory (no lock shared with the outer build) and a
//! scrubbed environment: every `CARGO_*` variable except `CARGO_HOME` is removed, as are
//! `RUSTFLAGS`, `RUSTC`, `RUSTDOC`, the rustc wrappers and `__CARGO_FIX_PLZ`, so the outer
//! build's profile, target, flags and wrappers (e.g. clippy-driver) never leak into the images.
//! The images are built with frame pointers so crash reports can walk the guest stack.
//!
//! A nested build that fails prints the compiler's own messages and ends this build script with
//! an error (no panic backtrace over them).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("tools/ has a parent directory")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = workspace.join("target").join("embedded");

    for dir in ["hypercalls", "switcher", "pv-kernel", "tools/user-bench"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    for file in ["Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(file).display());
    }

    let nested = |manifest: &Path, target_dir: &Path, rustflags: &str| {
        let mut cmd = Command::new(&cargo);
        cmd.args(["build", "--profile", "guest"])
            .arg("--manifest-path")
            .arg(manifest)
            .arg("--target-dir")
            .arg(target_dir);
        scrub(&mut cmd);
        cmd.env("CARGO_ENCODED_RUSTFLAGS", rustflags);
        cmd
    };
    let images_flags = "-Cforce-frame-pointers=yes";

    let mut cmd = nested(&workspace.join("Cargo.toml"), &target_dir, images_flags);
    cmd.args(["-p", "pvmux-switcher", "--bin", "pvmux-stub"]);
    run(cmd, "the sandbox stub");
    copy(
        &target_dir.join("guest").join("pvmux-stub"),
        &out_dir.join("pvmux-stub"),
    );

    let kernel_manifest = workspace.join("pv-kernel").join("image").join("Cargo.toml");
    for (features, name) in [
        (None, "pvmux-kernel"),
        (Some("diagnostics"), "pvmux-kernel-test"),
    ] {
        let mut cmd = nested(&kernel_manifest, &target_dir, images_flags);
        if let Some(features) = features {
            cmd.args(["--features", features]);
        }
        run(cmd, name);
        copy(
            &target_dir.join("guest").join("pvmux-kernel"),
            &out_dir.join(name),
        );
    }

    // The user-mode workload: static, for the host target given explicitly so that the flags
    // do not reach build scripts. Without DWARF (the standard library's would be 4 of its
    // 5.4 MiB; its symbols stay): the guests boot it from an initramfs, which the host copies
    // into guest memory and the guest kernel unpacks whole, so `boot_to_init` would time
    // copying debug sections no run ever reads.
    let target = std::env::var("TARGET").expect("TARGET");
    let user_dir = workspace.join("target").join("embedded-user");
    let mut cmd = nested(
        &workspace.join("Cargo.toml"),
        &user_dir,
        "-Ctarget-feature=+crt-static\x1f-Cstrip=debuginfo",
    );
    cmd.args(["-p", "pvmux-user-bench", "--bin", "pvmux-user-bench"])
        .args(["--target", &target]);
    run(cmd, "the user-mode benchmark workload");
    copy(
        &user_dir
            .join(&target)
            .join("guest")
            .join("pvmux-user-bench"),
        &out_dir.join("pvmux-user-bench"),
    );
}

/// Removes the outer build's variables that must not leak into a nested cargo (see above).
fn scrub(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let scrub = (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "RUSTC"
                    | "RUSTDOC"
                    | "__CARGO_FIX_PLZ"
            );
        if scrub {
            cmd.env_remove(key);
        }
    }
}

/// Runs a nested cargo build of `what`. On failure, prints the nested cargo's own output (the
/// compiler's messages) and exits with an error; its warnings are passed on as build warnings.
fn run(mut cmd: Command, what: &str) {
    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) => fail(&format!("cannot run a nested cargo to build {what}: {e}")),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        eprintln!("{stderr}");
        fail(&format!(
            "building {what} failed ({}): the compiler's messages are above",
            output.status
        ));
    }
    for line in stderr.lines().filter(|l| l.starts_with("warning")) {
        println!("cargo:warning={what}: {line}");
    }
}

fn copy(from: &Path, to: &Path) {
    if let Err(e) = std::fs::copy(from, to) {
        fail(&format!(
            "copying {} to {}: {e}",
            from.display(),
            to.display()
        ));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1)
}
