//! `hello [CODE [ARGS...]]`: prints a greeting, its arguments and the `PVMUX_TEST_*`
//! environment variables (sorted), then exits with CODE (default 0; a CODE that is not an
//! integer counts as 0).
//!
//! With `PVMUX_HELLO_STDIN=1` it first reads its standard input to the end and prints
//! `stdin: N bytes, M lines` and every line upper-cased (for pipe tests).

use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let mut out = std::io::stdout().lock();
    let mut text = String::from("hello from a guest program\n");
    let name = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
        .unwrap_or_default();
    text.push_str(&format!("argv0: {name}\nargc: {}\n", args.len()));
    for (i, arg) in args.iter().enumerate().skip(1) {
        text.push_str(&format!("argv[{i}]: {arg:?}\n"));
    }
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("PVMUX_TEST_"))
        .collect();
    vars.sort();
    for (k, v) in vars {
        text.push_str(&format!("env {k}={v:?}\n"));
    }
    if std::env::var_os("PVMUX_HELLO_STDIN").is_some_and(|v| v == "1") {
        let mut input = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut input) {
            eprintln!("hello: reading stdin: {e}");
            return ExitCode::from(101);
        }
        text.push_str(&format!(
            "stdin: {} bytes, {} lines\n",
            input.len(),
            input.lines().count()
        ));
        for line in input.lines() {
            text.push_str(&format!("| {}\n", line.to_uppercase()));
        }
    }
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::from(102);
    }
    let code = args.get(1).and_then(|a| a.parse::<u8>().ok()).unwrap_or(0);
    ExitCode::from(code)
}
