//! `toolbox COMMAND [ARGS...]`: the few small commands the CLI, terminal and leak tests run
//! as guest programs, so that those tests need nothing beyond the workspace (no busybox).
//!
//! * `cat [PROMPT]`: writes `PROMPT` (when given), then copies standard input to standard
//!   output byte for byte until end of file.
//! * `stderr TEXT CODE`: writes `TEXT` and a newline to standard error, exits with `CODE`.
//! * `sleep MS`: sleeps `MS` milliseconds.
//! * `wait-eof CODE`: reads standard input to its end (discarding it), then exits with `CODE`:
//!   a guest that cannot end before the test closes its console input.
//! * `true`: exits 0.
//! * `respawn`: runs `toolbox true` (this program, found through `argv[0]`) and waits for it,
//!   over and over, until it is killed: a process that forks, execs and reaps forever.
//!
//! Bad usage exits 2 after a message on standard error; an I/O error exits 1.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let words: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    match words.as_slice() {
        ["cat"] => cat(""),
        ["cat", prompt] => cat(prompt),
        ["stderr", text, code] => match code.parse::<u8>() {
            Ok(code) => {
                eprintln!("{text}");
                ExitCode::from(code)
            }
            Err(_) => usage(),
        },
        ["sleep", ms] => match ms.parse::<u64>() {
            Ok(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                ExitCode::SUCCESS
            }
            Err(_) => usage(),
        },
        ["wait-eof", code] => match code.parse::<u8>() {
            Ok(code) => wait_eof(code),
            Err(_) => usage(),
        },
        ["true"] => ExitCode::SUCCESS,
        ["respawn"] => respawn(args.first().map(PathBuf::from).unwrap_or_default()),
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: toolbox cat [PROMPT] | stderr TEXT CODE | sleep MS | wait-eof CODE | true | \
         respawn"
    );
    ExitCode::from(2)
}

/// `prompt`, then standard input to standard output until end of file.
fn cat(prompt: &str) -> ExitCode {
    let (mut input, mut output) = (std::io::stdin().lock(), std::io::stdout().lock());
    if let Err(e) = output
        .write_all(prompt.as_bytes())
        .and_then(|()| output.flush())
    {
        eprintln!("toolbox cat: writing: {e}");
        return ExitCode::FAILURE;
    }
    let mut buf = [0u8; 4096];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return ExitCode::SUCCESS,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("toolbox cat: reading: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Flushed at once: on a terminal, each line shows as soon as it was typed.
        if let Err(e) = output.write_all(&buf[..n]).and_then(|()| output.flush()) {
            eprintln!("toolbox cat: writing: {e}");
            return ExitCode::FAILURE;
        }
    }
}

/// Standard input to its end, then exit `code`.
fn wait_eof(code: u8) -> ExitCode {
    let mut buf = [0u8; 4096];
    let mut input = std::io::stdin().lock();
    loop {
        match input.read(&mut buf) {
            Ok(0) => return ExitCode::from(code),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("toolbox wait-eof: reading: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}

/// `me true`, run and reaped forever; returns only when a run fails.
fn respawn(me: PathBuf) -> ExitCode {
    loop {
        match Command::new(&me).arg("true").status() {
            Ok(status) if status.success() => {}
            Ok(status) => {
                eprintln!("toolbox respawn: {} true: {status}", me.display());
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("toolbox respawn: {}: {e}", me.display());
                return ExitCode::FAILURE;
            }
        }
    }
}
