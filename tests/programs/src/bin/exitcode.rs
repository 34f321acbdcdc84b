//! `exitcode N`: exits with status N (0..=255) without printing anything; a missing or
//! invalid N exits with 2 after a message on stderr.

use std::process::ExitCode;

fn main() -> ExitCode {
    match std::env::args().nth(1).map(|a| a.parse::<u8>()) {
        Some(Ok(code)) => ExitCode::from(code),
        _ => {
            eprintln!("usage: exitcode N (0..=255)");
            ExitCode::from(2)
        }
    }
}
