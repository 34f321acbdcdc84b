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
            } else {
                Command::Unknown(word)
            }
        }
    }
}

/// The commands of `cmdline`, in order; an empty command line means `selftest`.
pub(crate) fn parse(cmdline: &str) -> impl Iterator<Item = Command<'_>> {
    let empty = cmdline.split_ascii_whitespace().next().is_none();
    empty
        .then_some(Command::Selftest)
        .into_iter()
        .chain(cmdline.split_ascii_whitespace().map(parse_word))
}
