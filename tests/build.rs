//! Builds the guest test programs (`tests/programs`) as static executables for the tests:
//! the Rust programs with a nested `cargo build --release` (`+crt-static`, for the host's
//! target given explicitly so the flags do not reach build scripts), `programs/c/hello.c`
//! with `cc -static -O2` (as `hello-c`; also `hello-c-pie` and `hello-musl`), and the other C
//! programs of `programs/c/` (every `*.c` there; among them the stress family `stress_*.c`)
//! with `cc -static` (as `NAME`, `_` written `-`) and `musl-gcc -static` (as `NAME-musl`), and
//! the dynamically linked programs of `programs/c-dynamic/` (a shared library
//! `libdynelf-plugin.so`, `dynelf-dlopen`, `dynelf-linked`, `dynelf-origin`, `libdynelf-big.so`,
//! `dynelf-removed`, and their `-musl` builds). They are copied into
//! `<target>/guest-programs/bin`, whose path the tests get as `PVMUX_PROG_DIR`.
//!
//! The nested cargo uses its own target directory (`<target>/guest-programs`, no lock shared
//! with the outer build, no RUSTFLAGS leaking into it) and a scrubbed environment, exactly
//! like `tools/build.rs`: every `CARGO_*` variable except `CARGO_HOME` is removed, as are
//! `RUSTFLAGS`, `RUSTC`, `RUSTDOC`, the rustc wrappers and `__CARGO_FIX_PLZ`.
//!
//! It also detects the optional host tools some tests need ([`optional_tools`]: busybox-static,
//! static glibc, musl-gcc, gcc, `script`, User-Mode Linux, runsc, ...; also running as root
//! and a user `nobody`) and sets `--cfg have_NAME` for each one found; a test that needs one
//! is ignored without it, and a `cargo:warning` names those tests and the package to install.
//! The C programs are built with the C toolchains found (glibc static when
//! `have_static_glibc`, musl when `have_musl`); a compile error with a toolchain present
//! fails the build.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "build/optional_tools.rs"]
mod optional_tools;

/// The Rust programs of `pvmux-guest-programs`.
const PROGRAMS: [&str; 8] = [
    "hello", "threads", "fsdemo", "spawn", "segv", "exitcode", "hostile", "toolbox",
];

/// The C programs of `programs/c/`: every `NAME.c` there but `hello.c`, sorted, each built for
/// glibc and musl.
fn c_programs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".c")?;
            (stem != "hello").then(|| stem.to_owned())
        })
        .collect();
    names.sort();
    names
}

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = std::env::var("TARGET").expect("TARGET");

    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("programs").display()
    );
    for file in ["Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(file).display());
    }
    println!("cargo:rerun-if-env-changed=CC");

    let build_dir = target_root(&out_dir).join("guest-programs");
    let bin_dir = build_dir.join("bin");
    std::fs::create_dir_all(&bin_dir)
        .unwrap_or_else(|e| panic!("creating {}: {e}", bin_dir.display()));

    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--release", "-p", "pvmux-guest-programs", "--bins"])
        .args(["--target", &target])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&build_dir);
    scrub(&mut cmd);
    cmd.env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static")
        // Small binaries (they are packed into every test rootfs); symbols are kept.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run nested cargo: {e}"));
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        panic!(
            "building the guest test programs failed ({}); see the nested cargo output above",
            output.status
        );
    }
    let built = build_dir.join(&target).join("release");
    for program in PROGRAMS {
        copy(&built.join(program), &bin_dir.join(program));
    }

    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let found = optional_tools::detect(&manifest_dir.join("tests"), &cc);

    let hello_c = manifest_dir.join("programs/c/hello.c");
    // glibc static and static-pie, and musl static.
    let glibc = found.static_glibc.then_some(cc.as_os_str());
    build_c(glibc, "-static", &hello_c, &bin_dir.join("hello-c"));
    build_c(glibc, "-static-pie", &hello_c, &bin_dir.join("hello-c-pie"));
    let musl = found.musl_gcc.as_deref().map(Path::as_os_str);
    build_c(musl, "-static", &hello_c, &bin_dir.join("hello-musl"));
    // The other C programs (the process-lifecycle stress family among them), glibc static and
    // musl static.
    let c_dir = manifest_dir.join("programs/c");
    println!("cargo:rerun-if-changed={}", c_dir.display());
    for name in c_programs(&c_dir) {
        let source = manifest_dir.join(format!("programs/c/{name}.c"));
        let out = name.replace('_', "-");
        build_c(glibc, "-static", &source, &bin_dir.join(&out));
        build_c(
            musl,
            "-static",
            &source,
            &bin_dir.join(format!("{out}-musl")),
        );
    }
    // Dynamically linked programs (`programs/c-dynamic/`), for glibc (the C compiler as it
    // is) and musl: a shared library and two programs using it (linked, and by `dlopen`).
    let dyn_dir = manifest_dir.join("programs/c-dynamic");
    println!("cargo:rerun-if-changed={}", dyn_dir.display());
    let toolchains = [(Some(cc.as_os_str()), ""), (musl, "-musl")];
    for (cc, suffix) in toolchains {
        let lib = format!("dynelf-plugin{suffix}");
        let plugin = bin_dir.join(format!("lib{lib}.so"));
        let source = |n: &str| dyn_dir.join(format!("{n}.c"));
        build_c_with(cc, &["-shared", "-fPIC"], &source("dynelf_plugin"), &plugin);
        let dlopen = bin_dir.join(format!("dynelf-dlopen{suffix}"));
        build_c_with(cc, &["-pie", "-fPIE"], &source("dynelf_dlopen"), &dlopen);
        let big = bin_dir.join(format!("libdynelf-big{suffix}.so"));
        build_c_with(cc, &["-shared", "-fPIC"], &source("dynelf_big"), &big);
        let removed = bin_dir.join(format!("dynelf-removed{suffix}"));
        build_c_with(cc, &["-pie", "-fPIE"], &source("dynelf_removed"), &removed);
        let linked = bin_dir.join(format!("dynelf-linked{suffix}"));
        let link_dir = format!("-L{}", bin_dir.display());
        let link_lib = format!("-l{lib}");
        build_c_with(
            cc,
            &["-pie", "-fPIE", &link_dir, &link_lib],
            &source("dynelf_linked"),
            &linked,
        );
        // The same program finding its library in its own directory (`$ORIGIN`).
        let origin = bin_dir.join(format!("dynelf-origin{suffix}"));
        build_c_with(
            cc,
            &["-pie", "-fPIE", &link_dir, &link_lib, "-Wl,-rpath,$ORIGIN"],
            &source("dynelf_linked"),
            &origin,
        );
    }
    println!("cargo:rustc-env=PVMUX_PROG_DIR={}", bin_dir.display());
}

/// The outer build's target directory (or `<target>/<triple>`): the parent of the profile
/// directory that holds `build/<package>-<hash>/out`.
fn target_root(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent)
        .and_then(Path::parent)
        .unwrap_or(out_dir)
        .to_path_buf()
}

/// Compiles the C program statically with `cc`; without that toolchain (`None`), removes
/// any stale output instead (the tests that need it are ignored). A compile error fails the
/// build with the compiler's messages.
fn build_c(cc: Option<&std::ffi::OsStr>, link: &str, source: &Path, output: &Path) {
    build_c_with(cc, &[link], source, output);
}

/// [`build_c`] with the link options `link` (libraries among them, placed after the source).
fn build_c_with(cc: Option<&std::ffi::OsStr>, link: &[&str], source: &Path, output: &Path) {
    let Some(cc) = cc else {
        // Ignoring the error: the file usually does not exist.
        let _ = std::fs::remove_file(output);
        return;
    };
    let (libs, flags): (Vec<&str>, Vec<&str>) = link.iter().partition(|a| a.starts_with("-l"));
    let result = Command::new(cc)
        .args(&flags)
        .args(["-O2", "-pthread", "-Wall", "-Wextra", "-o"])
        .arg(output)
        .arg(source)
        .args(&libs)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cc.to_string_lossy()));
    if !result.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&result.stderr));
        panic!(
            "{} {link:?} {} failed ({}); see its messages above",
            cc.to_string_lossy(),
            source.display(),
            result.status
        );
    }
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

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
}
