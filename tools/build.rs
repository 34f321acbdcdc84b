//! Builds the embedded images (the sandbox stub and the default guest kernel) with a nested
//! cargo invocation into `target/embedded`, and copies them into `OUT_DIR`.
//!
//! The nested cargo uses its own target directory (no lock shared with the outer build) and a
//! scrubbed environment: every `CARGO_*` variable except `CARGO_HOME` is removed, as are
//! `RUSTFLAGS`, `RUSTC`, `RUSTDOC`, the rustc wrappers and `__CARGO_FIX_PLZ`, so the outer
//! build's profile, target, flags and wrappers (e.g. clippy-driver) never leak into the images.
//! The images are built with frame pointers so crash reports can walk the guest stack.
//!
//! It also builds `pvmux-user-bench`, the user-mode workload of `pvmux bench`, as a static
//! executable (`+crt-static`, for the host's target) in `target/embedded-user`: a separate
//! invocation and target directory, since its flags differ from the images'.

use std::path::{Path, PathBuf};
use std::process::Command;

const IMAGES: [&str; 2] = ["pvmux-stub", "pvmux-kernel"];

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

    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--profile", "guest"])
        .args(["-p", "pvmux-switcher", "--bin", "pvmux-stub"])
        .args(["-p", "pvmux-kernel", "--bin", "pvmux-kernel"])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    scrub(&mut cmd);
    cmd.env("CARGO_ENCODED_RUSTFLAGS", "-Cforce-frame-pointers=yes");
    run(cmd, "the embedded images");
    for image in IMAGES {
        copy(&target_dir.join("guest").join(image), &out_dir.join(image));
    }

    // The user-mode workload: static, for the host target given explicitly so that the flags
    // do not reach build scripts.
    let target = std::env::var("TARGET").expect("TARGET");
    let user_dir = workspace.join("target").join("embedded-user");
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--profile", "guest"])
        .args(["-p", "pvmux-user-bench", "--bin", "pvmux-user-bench"])
        .args(["--target", &target])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&user_dir);
    scrub(&mut cmd);
    cmd.env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static");
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

/// Runs a nested cargo build of `what`, failing the build script with its output on error.
fn run(mut cmd: Command, what: &str) {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run nested cargo: {e}"));
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        panic!(
            "building {what} failed ({}); see the nested cargo output above",
            output.status
        );
    }
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
}
