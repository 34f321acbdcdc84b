//! Builds the vDSO image (`vdso/`, see its crate documentation) into `OUT_DIR/vdso.so`, which
//! the kernel embeds (`src/linux/vdso.rs`).
//!
//! The vDSO's source is compiled by this build's own `rustc` (`RUSTC`) for the host's
//! x86-64 Linux target as one position-independent object with `--cfg vdso_image`, then linked
//! by `cc` (the linker the kernel image uses too) into a shared object with `vdso/link.lds`
//! (one read+execute segment, no writable data, the vvar page below it) and the symbol
//! versions of `vdso/vdso.map` (`LINUX_2.6`, as Linux). The kernel's unit tests check the
//! result (`linux::vdso::tests`): symbols, versions, no relocations.

use std::path::PathBuf;
use std::process::Command;

/// The exported names: `__vdso_NAME`, and `NAME` as an alias (as Linux's vDSO).
const EXPORTS: [&str; 5] = [
    "clock_gettime",
    "gettimeofday",
    "time",
    "getcpu",
    "clock_getres",
];

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
        .join("vdso");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    for f in ["src", "link.lds", "vdso.map", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", dir.join(f).display());
    }
    println!("cargo:rerun-if-changed=build.rs");

    let obj = out.join("vdso.o");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.arg(dir.join("src").join("lib.rs"))
        .args(["--crate-name", "pvmux_vdso", "--crate-type", "lib"])
        .args(["--edition", "2021", "--cfg", "vdso_image"])
        .args(["--target", "x86_64-unknown-linux-gnu"])
        .args(["-C", "opt-level=2", "-C", "panic=abort"])
        .args(["-C", "relocation-model=pic", "-C", "codegen-units=1"])
        .args(["-C", "debuginfo=0", "-C", "force-frame-pointers=yes"])
        .arg("--emit")
        .arg(format!("obj={}", obj.display()));
    run(cmd, "compiling the vDSO");

    let so = out.join("vdso.so");
    let mut cmd = Command::new(std::env::var_os("PVMUX_VDSO_CC").unwrap_or_else(|| "cc".into()));
    cmd.args(["-nostdlib", "-shared", "-Wl,--no-undefined"])
        .arg(format!("-Wl,-T,{}", dir.join("link.lds").display()))
        .arg(format!(
            "-Wl,--version-script={}",
            dir.join("vdso.map").display()
        ))
        .args([
            "-Wl,-soname,linux-vdso.so.1",
            "-Wl,--hash-style=both",
            "-Wl,--eh-frame-hdr",
            "-Wl,-z,max-page-size=4096",
            "-Wl,-z,noexecstack",
            "-Wl,--build-id=sha1",
        ]);
    for name in EXPORTS {
        cmd.arg(format!("-Wl,--defsym={name}=__vdso_{name}"));
    }
    cmd.arg("-o").arg(&so).arg(&obj);
    run(cmd, "linking the vDSO");
}

/// Runs `cmd`; on failure prints its output and ends the build with an error.
fn run(mut cmd: Command, what: &str) {
    match cmd.output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!("{}", String::from_utf8_lossy(&o.stderr));
            eprintln!("{what} failed ({}): {cmd:?}", o.status);
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("{what}: cannot run {cmd:?}: {e}");
            std::process::exit(1);
        }
    }
}
