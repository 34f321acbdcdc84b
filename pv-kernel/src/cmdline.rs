//! The kernel command line: space-separated words.

/// One command-line word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command<'a> {
    /// `selftest`: run the checks and exit with the number of failures.
    Selftest,
    /// `exit=N`: exit with code N.
    Exit(u64),
    /// `sleep=MS`: sleep that many milliseconds, then go on with the next word.
    Sleep(u64),
    /// `panic`: panic on purpose.
    Panic,
    /// `crash=double-fault`: make exception delivery itself fault.
    DoubleFault,
    /// `crash=stub-syscall`: jump onto a `syscall` inside stub code with crafted registers.
    StubSyscall,
    /// `syscall`: execute raw Linux system calls and show they are trapped.
    Syscall,
    /// `bench=all` or `bench=NAME[,NAME...]`: run those micro-benchmarks, print one `@bench`
    /// line each, then shut down (see [`crate::bench`]).
    Bench(&'a str),
    /// `bench_quick`: fewer repetitions for `bench=` (applies wherever it appears).
    BenchQuick,
    /// `hostile=CASE`: run one adversarial case (see [`crate::hostile`]).
    Hostile(&'a str),
    /// `hostpid=N`, `canary=PATH`, `seed=N`: parameters of `hostile=` cases.
    HostileParam,
    /// `fs-selftest`: check every filesystem operation and exit with the number of failures.
    FsSelftest,
    /// `ls=PATH`: list a directory of the in-guest filesystem (see [`crate::commands::fs`]).
    Ls(&'a str),
    /// `cat=PATH`: print a file of the in-guest filesystem verbatim.
    Cat(&'a str),
    /// `-- ARGV0 ARGV1 ...`: run this program as init (each word percent-encoded, see
    /// [`decode_argv`]); holds the words after `--`.
    Init(&'a str),
    /// Options read elsewhere: `console-tty=N`, `console-size=CxR`, `syscall-report`,
    /// `quiet`, `hostfs`.
    Option,
    /// Anything else (ignored with a warning).
    Unknown(&'a str),
}

/// Parses one word.
fn parse_word(word: &str) -> Command<'_> {
    match word {
        "selftest" => Command::Selftest,
        "panic" => Command::Panic,
        "syscall" => Command::Syscall,
        "crash=double-fault" => Command::DoubleFault,
        "crash=stub-syscall" => Command::StubSyscall,
        "bench_quick" => Command::BenchQuick,
        "fs-selftest" => Command::FsSelftest,
        "syscall-report" | "quiet" | "hostfs" => Command::Option,
        _ => {
            let num = |prefix: &str| {
                word.strip_prefix(prefix)
                    .and_then(|v| v.parse::<u64>().ok())
            };
            if let Some(n) = num("exit=") {
                Command::Exit(n)
            } else if let Some(ms) = num("sleep=") {
                Command::Sleep(ms)
            } else if let Some(case) = word.strip_prefix("hostile=") {
                Command::Hostile(case)
            } else if ["hostpid=", "canary=", "seed="]
                .iter()
                .any(|p| word.starts_with(p))
            {
                Command::HostileParam
            } else if let Some(list) = word.strip_prefix("bench=") {
                Command::Bench(list)
            } else if let Some(path) = word.strip_prefix("ls=") {
                Command::Ls(path)
            } else if let Some(path) = word.strip_prefix("cat=") {
                Command::Cat(path)
            } else if ["console-tty=", "console-size="]
                .iter()
                .any(|p| word.starts_with(p))
            {
                Command::Option
            } else {
                Command::Unknown(word)
            }
        }
    }
}

/// The commands of `cmdline`, in order; an empty command line means `selftest`.
pub(crate) fn parse(cmdline: &str) -> impl Iterator<Item = Command<'_>> {
    let (before, after) = split_init(cmdline);
    let empty = before.split_ascii_whitespace().next().is_none() && after.is_none();
    empty
        .then_some(Command::Selftest)
        .into_iter()
        .chain(before.split_ascii_whitespace().map(parse_word))
        .chain(after.map(Command::Init))
}

/// Splits the command line at the first standalone `--` word: `(kernel words, init argv)`.
fn split_init(cmdline: &str) -> (&str, Option<&str>) {
    let mut at = 0;
    for word in cmdline.split_ascii_whitespace() {
        let start = word.as_ptr() as usize - cmdline.as_ptr() as usize;
        if word == "--" {
            let rest = cmdline[start + 2..].trim();
            return (&cmdline[..start], (!rest.is_empty()).then_some(rest));
        }
        at = start + word.len();
    }
    (&cmdline[..at], None)
}

/// True if the command line contains the option word `word`.
pub(crate) fn has_option(word: &str) -> bool {
    split_init(crate::boot::cmdline())
        .0
        .split_ascii_whitespace()
        .any(|w| w == word)
}

/// Decodes the init argv words: `%XX` (hex) is the byte XX, everything else is literal.
pub(crate) fn decode_argv(words: &str) -> alloc::vec::Vec<alloc::vec::Vec<u8>> {
    words
        .split_ascii_whitespace()
        .map(|w| {
            let b = w.as_bytes();
            let mut out = alloc::vec::Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                let hex = |c: u8| (c as char).to_digit(16);
                if b[i] == b'%' && i + 2 < b.len() {
                    if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                }
                out.push(b[i]);
                i += 1;
            }
            out
        })
        .collect()
}
