//! The text form of the boot arguments: the words of `pvmux run --cmdline "..."`.
//!
//! Only the host parses words ([`Words::parse`]), and it refuses a word it does not know;
//! the kernel receives the typed encoding. [`HELP`] lists every word. Words are separated by
//! ASCII whitespace; a standalone `--` ends them, and every word after it is an argument of
//! the init program, taken literally (`pvmux run -- PROGRAM ARGS...` passes arguments of any
//! bytes). The `Display` impls write the same words back (arguments that are empty or hold
//! bytes outside `!`..=`~` are shown quoted and escaped: for people, not for parsing).

use core::fmt;

use super::{
    env_entry_ok, workdir_ok, BootArgs, BootArgsBuf, Command, ConsoleSize, EncodeError, Options,
    Terminals, VolumeMount,
};

/// Every word, with what it does: `(word, help)`.
pub const HELP: &[(&str, &str)] = &[
    ("exit=N", "shut down with exit code N"),
    (
        "sleep=MS",
        "sleep MS milliseconds, then go on with the next word",
    ),
    ("ls=PATH", "list a directory of the in-guest filesystem"),
    ("cat=PATH", "print a file of the in-guest filesystem"),
    (
        "env=NAME=VALUE",
        "add a variable to init's environment (pvmux run --env)",
    ),
    (
        "workdir=DIR",
        "start init in DIR, an absolute path (pvmux run --workdir)",
    ),
    (
        "hostfs",
        "show the --rootfs share as / (pvmux adds it with --rootfs)",
    ),
    (
        "hostname=NAME",
        "the guest's host name, 1 to 64 bytes (pvmux run --hostname)",
    ),
    (
        "channel=CHANNEL",
        "a channel to another kernel, /dev/pvmux/NAME (pvmux run --channel)",
    ),
    (
        "task-limit=N",
        "at most N guest tasks at once, N >= 1 (pvmux run --pids-limit)",
    ),
    (
        "rlimit=R:SOFT:HARD",
        "init's limit of resource R (Linux RLIMIT_ number < 16) (pvmux run --ulimit)",
    ),
    ("user=UID:GID", "run init as UID:GID (pvmux run --user)"),
    (
        "groups=GID,...",
        "init's supplementary groups, ascending (pvmux run --user NAME, --group-add)",
    ),
    (
        "no-patch",
        "leave guest programs' system-call sites unpatched (pvmux run --no-patch)",
    ),
    (
        "no-file-windows",
        "copy --rootfs programs into guest memory, not host file windows (pvmux run --no-file-windows)",
    ),
    (
        "caps=EFF:PRM:INH:BND:AMB",
        "init's capability sets, hex masks (pvmux run --cap-drop/--cap-add)",
    ),
    (
        "volume=ID:ro|rw:DIR",
        "mount host volume ID at DIR (pvmux adds them with --volume)",
    ),
    (
        "console-tty=N",
        "host streams that are terminals: bit 0 stdin, 1 stdout, 2 stderr",
    ),
    ("console-size=CxR", "the terminal's columns and rows"),
    (
        "syscall-report",
        "list unimplemented system calls when init ends",
    ),
    ("quiet", "no kernel start-up banner"),
    ("selftest", "run the kernel self-tests (*)"),
    ("fs-selftest", "check every filesystem operation (*)"),
    ("bench=all|NAME,...", "run in-guest micro-benchmarks (*)"),
    ("bench_quick", "fewer benchmark repetitions"),
    ("hostile=CASE", "run one adversarial case (*)"),
    (
        "hostpid=N seed=N canary=PATH",
        "parameters of hostile cases",
    ),
    (
        "adopt-refuse",
        "refuse every hand-over record (pvmux upgrade --cmdline: the refusal path)",
    ),
    (
        "adopt-refuse-switch",
        "pass the pre-flight's check, refuse the switch (tests of the fallback)",
    ),
    (
        "slow-exit=MS",
        "each process's exit waits MS ms after its last thread (tests of pvmux upgrade) (*)",
    ),
    ("panic", "panic on purpose (*)"),
    ("syscall", "execute raw Linux system calls (*)"),
    ("crash=double-fault", "make exception delivery fault (*)"),
    (
        "crash=stub-syscall",
        "jump onto a system call in stub code (*)",
    ),
    (
        "-- ARGS...",
        "run ARGS as the init program (each word one argument)",
    ),
];

/// A setting word: an option that holds for the whole boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Setting<'a> {
    /// `console-tty=N`.
    Terminals(Terminals),
    /// `console-size=CxR`.
    ConsoleSize(ConsoleSize),
    /// `syscall-report`.
    SyscallReport,
    /// `quiet`.
    Quiet,
    /// `hostfs`.
    Hostfs,
    /// `bench_quick`.
    BenchQuick,
    /// `hostpid=N`.
    HostPid(u64),
    /// `seed=N`.
    Seed(u64),
    /// `canary=PATH`.
    Canary(&'a str),
}

impl<'a> Options<'a> {
    /// Applies a setting (a later one of the same kind wins).
    pub fn apply(&mut self, s: Setting<'a>) {
        match s {
            Setting::Terminals(t) => self.terminals = t,
            Setting::ConsoleSize(c) => self.console_size = Some(c),
            Setting::SyscallReport => self.syscall_report = true,
            Setting::Quiet => self.quiet = true,
            Setting::Hostfs => self.hostfs = true,
            Setting::BenchQuick => self.bench_quick = true,
            Setting::HostPid(p) => self.host_pid = Some(p),
            Setting::Seed(s) => self.seed = Some(s),
            Setting::Canary(c) => self.canary = Some(c),
        }
    }

    /// The settings these options hold, in a fixed order (the inverse of [`Self::apply`]).
    fn settings(&self) -> impl Iterator<Item = Setting<'a>> {
        let o = *self;
        [
            (o.terminals != Terminals::default()).then_some(Setting::Terminals(o.terminals)),
            o.console_size.map(Setting::ConsoleSize),
            o.syscall_report.then_some(Setting::SyscallReport),
            o.quiet.then_some(Setting::Quiet),
            o.hostfs.then_some(Setting::Hostfs),
            o.bench_quick.then_some(Setting::BenchQuick),
            o.host_pid.map(Setting::HostPid),
            o.seed.map(Setting::Seed),
            o.canary.map(Setting::Canary),
        ]
        .into_iter()
        .flatten()
    }
}

/// One word before `--`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Word<'a> {
    /// A command.
    Command(Command<'a>),
    /// A setting.
    Setting(Setting<'a>),
}

/// Why words cannot be boot arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error<'a> {
    /// A word that is not in [`HELP`].
    Unknown(&'a str),
    /// A known word with a bad value.
    Value {
        /// The word.
        word: &'a str,
        /// What its value must be.
        expected: &'static str,
    },
    /// The words do not fit the encoding.
    Encode(EncodeError),
}

impl fmt::Display for Error<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(w) => write!(f, "unknown kernel command-line word {w:?}"),
            Self::Value { word, expected } => {
                write!(
                    f,
                    "bad kernel command-line word {word:?}: expected {expected}"
                )
            }
            Self::Encode(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for Error<'_> {}

/// Parses one word (not `--`).
pub fn parse_word(word: &str) -> Result<Word<'_>, Error<'_>> {
    let cmd = |c| Ok(Word::Command(c));
    let set = |s| Ok(Word::Setting(s));
    let value = |expected| Error::Value { word, expected };
    let number = |v: &str| v.parse::<u64>().map_err(|_| value("a decimal number"));
    let text = |v, expected| match v {
        "" => Err(value(expected)),
        v => Ok(v),
    };
    match word {
        "selftest" => return cmd(Command::Selftest),
        "fs-selftest" => return cmd(Command::FsSelftest),
        "panic" => return cmd(Command::Panic),
        "syscall" => return cmd(Command::Syscall),
        "crash=double-fault" => return cmd(Command::CrashDoubleFault),
        "crash=stub-syscall" => return cmd(Command::CrashStubSyscall),
        "no-patch" => return cmd(Command::NoPatch),
        "no-file-windows" => return cmd(Command::NoFileWindows),
        "adopt-refuse" => return cmd(Command::AdoptRefuse),
        "adopt-refuse-switch" => return cmd(Command::AdoptRefuseSwitch),
        "syscall-report" => return set(Setting::SyscallReport),
        "quiet" => return set(Setting::Quiet),
        "hostfs" => return set(Setting::Hostfs),
        "bench_quick" => return set(Setting::BenchQuick),
        _ => {}
    }
    let Some((key, v)) = word.split_once('=') else {
        return Err(Error::Unknown(word));
    };
    match key {
        "exit" => cmd(Command::Exit(number(v)?)),
        "sleep" => cmd(Command::Sleep(number(v)?)),
        "slow-exit" => cmd(Command::SlowExit(number(v)?)),
        "bench" => cmd(Command::Bench(text(v, "`all` or benchmark names")?)),
        "hostile" => cmd(Command::Hostile(text(v, "a case name")?)),
        "ls" => cmd(Command::Ls(text(v, "a path")?)),
        "cat" => cmd(Command::Cat(text(v, "a path")?)),
        "env" if env_entry_ok(v.as_bytes()) => cmd(Command::Env(v.as_bytes())),
        "env" => Err(value("NAME=VALUE with a non-empty NAME")),
        "workdir" if workdir_ok(v.as_bytes()) => cmd(Command::Workdir(v.as_bytes())),
        "workdir" => Err(value("an absolute path")),
        "volume" => {
            let mut parts = v.splitn(3, ':');
            let id = parts.next().and_then(|i| i.parse::<u32>().ok());
            let ro = match parts.next() {
                Some("ro") => Some(true),
                Some("rw") => Some(false),
                _ => None,
            };
            let path = parts.next().unwrap_or("").as_bytes();
            match (id, ro) {
                (Some(id), Some(read_only)) => {
                    let m = VolumeMount {
                        id,
                        read_only,
                        path,
                    };
                    if m.ok() {
                        cmd(Command::Volume(m))
                    } else {
                        Err(value("ID:ro|rw:/GUESTDIR"))
                    }
                }
                _ => Err(value("ID:ro|rw:/GUESTDIR")),
            }
        }
        "rlimit" => {
            let mut parts = v.split(':').map(|p| p.parse::<u64>().ok());
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(Some(r)), Some(Some(soft)), Some(Some(hard)), None)
                    if r < u64::from(super::RLIMIT_RESOURCES) && soft <= hard =>
                {
                    cmd(Command::Rlimit {
                        resource: r as u32,
                        soft,
                        hard,
                    })
                }
                _ => Err(value(
                    "RESOURCE:SOFT:HARD, decimal, resource < 16, soft <= hard",
                )),
            }
        }
        "hostname" if super::hostname_ok(v.as_bytes()) => cmd(Command::Hostname(v.as_bytes())),
        "hostname" => Err(value("1 to 64 bytes")),
        "channel" if crate::channel::name_ok(v.as_bytes()) => cmd(Command::Channel(v.as_bytes())),
        "channel" => Err(value(
            "1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )),
        "user-isolation" if v == "none" => cmd(Command::UserIsolationNone),
        "user-isolation" => Err(value("none (the default, isolated, has no word)")),
        "task-limit" => match v.parse::<u32>() {
            Ok(n) if n >= 1 => cmd(Command::TaskLimit(n)),
            _ => Err(value("a number of tasks, at least 1")),
        },
        "user" => match v
            .split_once(':')
            .map(|(u, g)| (u.parse::<u32>(), g.parse::<u32>()))
        {
            Some((Ok(uid), Ok(gid))) => cmd(Command::User { uid, gid }),
            _ => Err(value("UID:GID, decimal")),
        },
        "groups" => match super::Gids::from_text(v) {
            Some(g) => cmd(Command::Groups(g)),
            None => Err(value("GID,... decimal, strictly ascending, at most 4096")),
        },
        "caps" => {
            let mut masks = [0u64; 5];
            let mut parts = v.split(':');
            let parsed = masks.iter_mut().all(|m| {
                parts
                    .next()
                    .and_then(|p| u64::from_str_radix(p, 16).ok())
                    .map(|x| *m = x)
                    .is_some()
            }) && parts.next().is_none();
            let [effective, permitted, inheritable, bounding, ambient] = masks;
            let c = super::CapSets {
                effective,
                permitted,
                inheritable,
                bounding,
                ambient,
            };
            if parsed && c.ok() {
                cmd(Command::Caps(c))
            } else {
                Err(value(
                    "EFF:PRM:INH:BND:AMB, five hex masks of capabilities 0..=40, effective \
                     within permitted, ambient within permitted and inheritable",
                ))
            }
        }
        "hostpid" => set(Setting::HostPid(number(v)?)),
        "seed" => set(Setting::Seed(number(v)?)),
        "canary" => set(Setting::Canary(text(v, "a path")?)),
        "console-tty" => {
            let bits = v.parse::<u8>().ok().and_then(Terminals::from_bits);
            set(Setting::Terminals(bits.ok_or(value("a number 0..=7"))?))
        }
        "console-size" => {
            let size = v
                .split_once('x')
                .and_then(|(c, r)| ConsoleSize::new(c.parse().ok()?, r.parse().ok()?));
            set(Setting::ConsoleSize(
                size.ok_or(value("COLSxROWS, both 1..=65535"))?,
            ))
        }
        // `crash=` with another value is as unknown as any other word.
        _ => Err(Error::Unknown(word)),
    }
}

/// Parsed words: the options they set, their commands and the init arguments after `--`.
/// Borrowed from the text, which [`Words::parse`] checked in full.
#[derive(Clone, Copy, Debug)]
pub struct Words<'a> {
    /// The options the setting words give (callers may add their own before encoding).
    pub options: Options<'a>,
    /// The words before `--`.
    kernel: &'a str,
    /// The words after `--`, if there is a `--`.
    argv: Option<&'a str>,
}

impl<'a> Words<'a> {
    /// Parses `line`; the first word that is unknown or has a bad value is the error.
    pub fn parse(line: &'a str) -> Result<Self, Error<'a>> {
        let (kernel, argv) = split_init(line);
        let mut options = Options::default();
        for w in kernel.split_ascii_whitespace() {
            if let Word::Setting(s) = parse_word(w)? {
                options.apply(s);
            }
        }
        Ok(Self {
            options,
            kernel,
            argv,
        })
    }

    /// The commands, in order.
    pub fn commands(&self) -> impl Iterator<Item = Command<'a>> + Clone + 'a {
        self.kernel
            .split_ascii_whitespace()
            .filter_map(|w| match parse_word(w) {
                Ok(Word::Command(c)) => Some(c),
                _ => None,
            })
    }

    /// True if the words hold a `--` (followed by arguments or not).
    pub fn has_separator(&self) -> bool {
        self.argv.is_some()
    }

    /// The init arguments after `--` (empty without one).
    pub fn argv(&self) -> impl Iterator<Item = &'a [u8]> + Clone + 'a {
        self.argv
            .unwrap_or("")
            .split_ascii_whitespace()
            .map(str::as_bytes)
    }

    /// Encodes the options, commands and arguments.
    pub fn encode(&self) -> Result<BootArgsBuf, EncodeError> {
        BootArgsBuf::new(&self.options, self.commands(), self.argv())
    }
}

/// Splits `line` at the first standalone `--` word: `(words before, words after)`.
fn split_init(line: &str) -> (&str, Option<&str>) {
    let mut rest = line;
    while let Some(start) = rest.find(|c: char| !c.is_ascii_whitespace()) {
        let word_end = rest[start..]
            .find(|c: char| c.is_ascii_whitespace())
            .map_or(rest.len(), |n| start + n);
        if &rest[start..word_end] == "--" {
            let at = line.len() - rest.len() + start;
            return (&line[..at], Some(&line[at + 2..]));
        }
        rest = &rest[word_end..];
    }
    (line, None)
}

impl fmt::Display for Command<'_> {
    /// The command's word.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Selftest => f.write_str("selftest"),
            Self::FsSelftest => f.write_str("fs-selftest"),
            Self::Exit(n) => write!(f, "exit={n}"),
            Self::Sleep(ms) => write!(f, "sleep={ms}"),
            Self::Panic => f.write_str("panic"),
            Self::Syscall => f.write_str("syscall"),
            Self::CrashDoubleFault => f.write_str("crash=double-fault"),
            Self::CrashStubSyscall => f.write_str("crash=stub-syscall"),
            Self::Bench(l) => write!(f, "bench={l}"),
            Self::Hostile(c) => write!(f, "hostile={c}"),
            Self::Ls(p) => write!(f, "ls={p}"),
            Self::Cat(p) => write!(f, "cat={p}"),
            Self::Env(e) => write!(f, "env={}", Arg(e)),
            Self::Workdir(w) => write!(f, "workdir={}", Arg(w)),
            Self::Volume(v) => write!(
                f,
                "volume={}:{}:{}",
                v.id,
                if v.read_only { "ro" } else { "rw" },
                Arg(v.path)
            ),
            Self::Rlimit {
                resource,
                soft,
                hard,
            } => write!(f, "rlimit={resource}:{soft}:{hard}"),
            Self::User { uid, gid } => write!(f, "user={uid}:{gid}"),
            Self::Groups(g) => write!(f, "groups={g}"),
            Self::Hostname(h) => write!(f, "hostname={}", Arg(h)),
            Self::TaskLimit(n) => write!(f, "task-limit={n}"),
            Self::UserIsolationNone => f.write_str("user-isolation=none"),
            Self::NoPatch => f.write_str("no-patch"),
            Self::NoFileWindows => f.write_str("no-file-windows"),
            Self::AdoptRefuse => f.write_str("adopt-refuse"),
            Self::AdoptRefuseSwitch => f.write_str("adopt-refuse-switch"),
            Self::SlowExit(ms) => write!(f, "slow-exit={ms}"),
            Self::Adopt(a) => write!(
                f,
                "adopt(v{}, {} bytes, flags {:#x}, pool {:#x}..{:#x})",
                a.version, a.record_len, a.flags, a.pool_start, a.pool_end
            ),
            Self::Channel(n) => write!(f, "channel={}", Arg(n)),
            Self::Caps(c) => write!(
                f,
                "caps={:x}:{:x}:{:x}:{:x}:{:x}",
                c.effective, c.permitted, c.inheritable, c.bounding, c.ambient
            ),
        }
    }
}

impl fmt::Display for Setting<'_> {
    /// The setting's word.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Terminals(t) => write!(f, "console-tty={}", t.bits()),
            Self::ConsoleSize(s) => write!(f, "console-size={}x{}", s.cols, s.rows),
            Self::SyscallReport => f.write_str("syscall-report"),
            Self::Quiet => f.write_str("quiet"),
            Self::Hostfs => f.write_str("hostfs"),
            Self::BenchQuick => f.write_str("bench_quick"),
            Self::HostPid(p) => write!(f, "hostpid={p}"),
            Self::Seed(s) => write!(f, "seed={s}"),
            Self::Canary(c) => write!(f, "canary={c}"),
        }
    }
}

impl fmt::Display for BootArgs<'_> {
    /// The words: settings, commands, then `--` and the arguments if a program runs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut word = |f: &mut fmt::Formatter<'_>, w: &dyn fmt::Display| {
            let r = write!(f, "{sep}{w}");
            sep = " ";
            r
        };
        for s in self.options.settings() {
            word(f, &s)?;
        }
        for c in self.commands() {
            word(f, &c)?;
        }
        if self.argv().next().is_some() {
            word(f, &"--")?;
            for a in self.argv() {
                word(f, &Arg(a))?;
            }
        }
        Ok(())
    }
}

/// An init argument for display.
struct Arg<'a>(&'a [u8]);

impl fmt::Display for Arg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.is_empty()
            && self
                .0
                .iter()
                .all(|b| (0x21..=0x7e).contains(b) && *b != b'"')
        {
            // Printable ASCII without spaces: valid UTF-8.
            f.write_str(core::str::from_utf8(self.0).unwrap_or("?"))
        } else {
            write!(f, "\"{}\"", self.0.escape_ascii())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_parse_to_typed_arguments() {
        let line = " console-tty=5 exit=3 console-size=100x30 ls=/d hostpid=7 seed=0 \
                    canary=/c quiet hostfs syscall-report bench_quick sleep=9 cat=/f \
                    hostile=x bench=a,b selftest fs-selftest panic syscall \
                    crash=double-fault crash=stub-syscall -- /bin/sh -c  x%20 -- ";
        let w = Words::parse(line).unwrap();
        let o = w.options;
        assert_eq!(
            o.terminals,
            Terminals {
                stdin: true,
                stdout: false,
                stderr: true
            }
        );
        assert_eq!(o.console_size, ConsoleSize::new(100, 30));
        assert!(o.quiet && o.hostfs && o.syscall_report && o.bench_quick);
        assert_eq!(
            (o.host_pid, o.seed, o.canary),
            (Some(7), Some(0), Some("/c"))
        );
        assert!(w.commands().eq([
            Command::Exit(3),
            Command::Ls("/d"),
            Command::Sleep(9),
            Command::Cat("/f"),
            Command::Hostile("x"),
            Command::Bench("a,b"),
            Command::Selftest,
            Command::FsSelftest,
            Command::Panic,
            Command::Syscall,
            Command::CrashDoubleFault,
            Command::CrashStubSyscall,
        ]));
        // Arguments are literal: no percent-decoding, a second `--` is an argument.
        let argv: [&[u8]; 5] = [b"/bin/sh", b"-c", b"x%20", b"--", b""];
        assert!(w.argv().eq(argv[..4].iter().copied()));
        let buf = w.encode().unwrap();
        let args = buf.args();
        assert_eq!(args.options, o);
        assert!(args.commands().eq(w.commands()));
        assert!(args.argv().eq(w.argv()));
        // Display writes words that parse back to the same arguments.
        let text = alloc_free_display(&buf);
        let again = BootArgsBuf::from_words(text.as_str()).unwrap();
        assert_eq!(again.args(), args);
    }

    /// `Display` into a fixed buffer (no alloc in this crate).
    fn alloc_free_display(buf: &BootArgsBuf) -> FixedString {
        use core::fmt::Write;
        let mut s = FixedString::default();
        write!(s, "{buf}").unwrap();
        s
    }

    struct FixedString {
        buf: [u8; 4096],
        len: usize,
    }

    impl Default for FixedString {
        fn default() -> Self {
            Self {
                buf: [0; 4096],
                len: 0,
            }
        }
    }

    impl FixedString {
        fn as_str(&self) -> &str {
            core::str::from_utf8(&self.buf[..self.len]).unwrap()
        }
    }

    impl fmt::Write for FixedString {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.len + s.len();
            self.buf
                .get_mut(self.len..end)
                .ok_or(fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }

    #[test]
    fn bad_words_are_named() {
        for (line, err) in [
            (
                "env==x",
                Error::Value {
                    word: "env==x",
                    expected: "NAME=VALUE with a non-empty NAME",
                },
            ),
            (
                "env=NOVALUE",
                Error::Value {
                    word: "env=NOVALUE",
                    expected: "NAME=VALUE with a non-empty NAME",
                },
            ),
            (
                "workdir=rel",
                Error::Value {
                    word: "workdir=rel",
                    expected: "an absolute path",
                },
            ),
            ("selftest bogus", Error::Unknown("bogus")),
            ("crash=other", Error::Unknown("crash=other")),
            ("test", Error::Unknown("test")),
            (
                "exit=x",
                Error::Value {
                    word: "exit=x",
                    expected: "a decimal number",
                },
            ),
            (
                "console-tty=8",
                Error::Value {
                    word: "console-tty=8",
                    expected: "a number 0..=7",
                },
            ),
            (
                "console-size=0x5",
                Error::Value {
                    word: "console-size=0x5",
                    expected: "COLSxROWS, both 1..=65535",
                },
            ),
            (
                "ls=",
                Error::Value {
                    word: "ls=",
                    expected: "a path",
                },
            ),
        ] {
            assert_eq!(Words::parse(line).map(|_| ()), Err(err), "{line}");
        }
        // Words after `--` are arguments, whatever they are.
        let w = Words::parse("exit=1 -- bogus").unwrap();
        assert!(w.has_separator());
        assert!(w.argv().eq([&b"bogus"[..]]));
        let w = Words::parse("exit=1 --").unwrap();
        assert!(w.has_separator() && w.argv().next().is_none());
        assert!(Words::parse("a--b=1").is_err());
        assert!(!Words::parse("").unwrap().has_separator());
    }

    #[test]
    fn help_names_every_word() {
        use core::fmt::Write;
        // Every word of the help parses once its placeholder has a value...
        let mut keys = [""; 64];
        let mut n = 0;
        for (words, help) in HELP {
            assert!(!help.is_empty());
            for word in words.split(' ').filter(|w| *w != "--" && *w != "ARGS...") {
                let mut s = FixedString::default();
                let key = match word.split_once('=') {
                    Some((key, placeholder)) if key != "crash" => {
                        let v = match placeholder {
                            "N" | "MS" => "1",
                            "CxR" => "80x24",
                            "all|NAME,..." => "all",
                            "NAME=VALUE" => "A=b",
                            "ID:ro|rw:DIR" => "0:ro:/v",
                            "R:SOFT:HARD" => "7:1:2",
                            "UID:GID" => "1:1",
                            "GID,..." => "1,2",
                            "EFF:PRM:INH:BND:AMB" => "1:1:0:1:0",
                            "CHANNEL" => "c1",
                            _ => "/p",
                        };
                        write!(s, "{key}={v}").unwrap();
                        key
                    }
                    _ => {
                        s.write_str(word).unwrap();
                        word
                    }
                };
                assert!(parse_word(s.as_str()).is_ok(), "{word}");
                keys[n] = key;
                n += 1;
            }
        }
        // ... and every word the parser knows is in the help.
        let all = Words::parse(
            "console-tty=1 console-size=1x1 syscall-report quiet hostfs bench_quick hostpid=1 \
             seed=1 canary=/c selftest fs-selftest exit=1 sleep=1 panic syscall \
             crash=double-fault crash=stub-syscall bench=all hostile=x ls=/ cat=/ env=A=b \
             workdir=/w volume=0:rw:/v rlimit=7:1:2 user=1:1 groups=1,2 hostname=h \
             task-limit=3 caps=1:1:0:1:0 channel=c",
        )
        .unwrap();
        let buf = all.encode().unwrap();
        let text = alloc_free_display(&buf);
        for word in text.as_str().split(' ') {
            let key = match word.split_once('=') {
                Some(("crash", _)) => word,
                Some((key, _)) => key,
                None => word,
            };
            assert!(keys[..n].contains(&key), "{word} is not in HELP");
        }
    }
}
