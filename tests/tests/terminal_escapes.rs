//! A guest cannot send terminal control sequences to the operator's terminal through what the
//! host prints on its behalf (crash report, `killed by` line, crash dump): the host escapes
//! them (`host-module/src/escape.rs`). The guest's own output streams pass unchanged.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pvmux_tests::{run_with_timeout, Run, TempDir};

/// Terminal escapes a guest would like to send: window title (OSC 0, BEL), clipboard write
/// (OSC 52, ST), clear screen, an 8-bit CSI (U+009B), a bidi override, a carriage return
/// and an invalid byte.
const EVIL: &[u8] = b"title\x1b]0;pvmux-pwned\x07 clip\x1b]52;c;cHdu\x1b\\ clear\x1b[2J\x1b[H \xc2\x9b2J \xe2\x80\xaeevil\r\xff end\n";

fn pvmux(args: &[&std::ffi::OsStr]) -> Run {
    let mut cmd = Command::new(PathBuf::from(env!("CARGO_BIN_EXE_pvmux-cli")));
    cmd.args(args);
    run_with_timeout(
        cmd,
        "pvmux run",
        Duration::from_secs(120),
        Duration::from_millis(50),
        |_| {},
    )
}

/// Panics if `bytes` hold anything a terminal acts on: C0 controls but `\n` and `\t`, DEL,
/// C1 controls (as UTF-8), bidi controls, invalid UTF-8 (which [`Run`]'s lossy decoding
/// turns into U+FFFD; the guest's strings here hold none).
fn assert_inert(what: &str, bytes: &[u8]) {
    let text = std::str::from_utf8(bytes)
        .unwrap_or_else(|e| panic!("{what} is not UTF-8 ({e}):\n{bytes:x?}"));
    for c in text.chars() {
        let bad = (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{fffd}');
        assert!(!bad, "{what} holds a raw {c:?}:\n{text}");
    }
}

fn bytes_of(r: &Run) -> (Vec<u8>, Vec<u8>) {
    (r.stdout.clone().into_bytes(), r.stderr.clone().into_bytes())
}

#[test]
fn a_crash_report_replays_the_console_tail_escaped() {
    let root = TempDir::unique("pvmux-escapes", "root");
    std::fs::write(root.0.join("evil"), EVIL).expect("write the file");
    let dumps = TempDir::unique("pvmux-escapes", "dumps");
    // The test kernel prints the file on its console (the guest's output: stdout), then
    // panics: the crash report on stderr replays the console tail.
    let r = pvmux(&[
        "run".as_ref(),
        "--rootfs-pack".as_ref(),
        root.0.as_os_str(),
        "--crash-dump".as_ref(),
        dumps.0.as_os_str(),
        "--cmdline".as_ref(),
        "cat=/evil panic".as_ref(),
    ]);
    assert_eq!(r.code(), Some(124), "{}", r.context());
    let (_, err) = bytes_of(&r);
    assert!(r.stderr.contains("crashed"), "{}", r.context());
    // The report shows the line, escaped, and nothing raw.
    assert!(
        r.stderr.contains(
            "title\\x1b]0;pvmux-pwned\\x07 clip\\x1b]52;c;cHdu\\x1b\\\\ clear\\x1b[2J\\x1b[H \\u{9b}2J \\u{202e}evil\\x0d\\xff end"
        ),
        "{}",
        r.context()
    );
    assert_inert("stderr", &err);
    // The guest's console itself (stdout here) is its own output and passes unchanged.
    // (`run_with_timeout` decodes lossily, so compare the valid-UTF-8 prefix.)
    assert!(
        r.stdout
            .contains("title\x1b]0;pvmux-pwned\x07 clip\x1b]52;c;cHdu\x1b\\ clear\x1b[2J"),
        "{}",
        r.context()
    );
    // The crash dump's text files are escaped too.
    let dump = only_entry(&dumps.0);
    for file in ["report.txt", "console.txt", "registers.json"] {
        let bytes = std::fs::read(dump.join(file)).expect("dump file");
        assert_inert(file, &bytes);
    }
    let console = std::fs::read_to_string(dump.join("console.txt")).expect("console.txt");
    assert!(
        console.contains("title\\x1b]0;pvmux-pwned\\x07"),
        "{console}"
    );
}

#[test]
fn the_killed_line_escapes_the_program_path() {
    let root = TempDir::unique("pvmux-escapes", "prog");
    let name: &[u8] = b"segv\x1b]0;pvmux-pwned\x07\x1b[2J";
    let path = root.0.join(std::ffi::OsStr::from_bytes(name));
    std::fs::copy(format!("{}/segv", env!("PVMUX_PROG_DIR")), &path).expect("copy segv");
    let mut guest_path = b"/".to_vec();
    guest_path.extend_from_slice(name);
    let r = pvmux(&[
        "run".as_ref(),
        "--rootfs-pack".as_ref(),
        root.0.as_os_str(),
        "--".as_ref(),
        std::ffi::OsStr::from_bytes(&guest_path),
    ]);
    assert_eq!(r.code(), Some(139), "{}", r.context());
    assert!(
        r.stderr
            .contains("/segv\\x1b]0;pvmux-pwned\\x07\\x1b[2J (pid 1) killed by SIGSEGV"),
        "{}",
        r.context()
    );
    let (_, err) = bytes_of(&r);
    assert_inert("stderr", &err);
}

fn only_entry(dir: &Path) -> PathBuf {
    let entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read the dump directory")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.into_iter().next().expect("one entry")
}
