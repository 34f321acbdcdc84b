//! `spawn [HELLO]`: runs the `hello` program (path HELLO, default `hello` next to this
//! program's `argv[0]`) with `std::process::Command`: captures its output and exit status,
//! feeds a child's stdin through a pipe, and connects two children with a pipe. Prints a
//! deterministic transcript; exits 0 when every check held, 1 otherwise.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

fn main() -> ExitCode {
    let hello = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let me = PathBuf::from(std::env::args().next().unwrap_or_default());
            me.parent()
                .map_or_else(|| "hello".into(), |d| d.join("hello"))
        });
    match run(&hello) {
        Ok(true) => {
            println!("spawn: all ok");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("spawn: FAILED");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("spawn: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a child's output, prefixed, one line at a time.
fn show(what: &str, bytes: &[u8]) {
    for line in String::from_utf8_lossy(bytes).lines() {
        println!("{what}> {line}");
    }
}

fn run(hello: &std::path::Path) -> std::io::Result<bool> {
    let mut ok = true;

    // 1. Arguments, environment, captured stdout and a non-zero exit status.
    let out = Command::new(hello)
        .args(["3", "two words", "x"])
        .env("PVMUX_TEST_FROM", "spawn")
        .output()?;
    show("output", &out.stdout);
    println!("output: status {:?}", out.status.code());
    ok &= out.status.code() == Some(3)
        && String::from_utf8_lossy(&out.stdout).contains("argv[2]: \"two words\"");

    // 2. Status only, output inherited (appears in our own stdout).
    std::io::stdout().flush()?;
    let status = Command::new(hello)
        .arg("0")
        .env_clear()
        .env("PVMUX_TEST_INHERITED", "yes")
        .status()?;
    println!("status: {:?}", status.code());
    ok &= status.success();

    // 3. Our data through a pipe into the child's stdin.
    let mut child = Command::new(hello)
        .env("PVMUX_HELLO_STDIN", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    {
        let mut stdin = child
            .stdin
            .take()
            .ok_or(std::io::Error::other("no stdin"))?;
        for i in 0..3 {
            writeln!(stdin, "line {i} through the pipe")?;
        }
        // Dropping stdin closes the pipe: the child sees end of file.
    }
    let out = child.wait_with_output()?;
    show("stdin", &out.stdout);
    println!("stdin: status {:?}", out.status.code());
    ok &= out.status.success()
        && String::from_utf8_lossy(&out.stdout).contains("stdin: 72 bytes, 3 lines");

    // 4. A pipeline: hello's stdout into another hello's stdin.
    let mut first = Command::new(hello)
        .args(["5", "piped"])
        .stdout(Stdio::piped())
        .spawn()?;
    let first_out = first
        .stdout
        .take()
        .ok_or(std::io::Error::other("no stdout"))?;
    let second = Command::new(hello)
        .env("PVMUX_HELLO_STDIN", "1")
        .stdin(Stdio::from(first_out))
        .stdout(Stdio::piped())
        .spawn()?;
    let out = second.wait_with_output()?;
    let first_status = first.wait()?;
    show("pipeline", &out.stdout);
    println!(
        "pipeline: first status {:?}, second status {:?}",
        first_status.code(),
        out.status.code()
    );
    ok &= first_status.code() == Some(5) && out.status.success();

    // 5. A program that does not exist.
    match Command::new("/nonexistent/program").status() {
        Ok(s) => {
            println!("missing: unexpectedly ran: {s}");
            ok = false;
        }
        Err(e) => println!("missing: error {:?}", e.kind()),
    }
    Ok(ok)
}
