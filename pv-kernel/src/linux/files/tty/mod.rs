//! The console terminal: what `/dev/console`, `/dev/tty` and the first process's fds 0, 1
//! and 2 are.
//!
//! The console reads the host's stdin (`ConsoleRead`, buffered here so `poll` can look
//! ahead, [`input`]) and writes the host's stdout or stderr (`ConsoleWrite` streams). Which
//! host streams are terminals comes from the boot arguments ([`Terminals`]); only terminal
//! streams answer terminal `ioctl`s ([`ioctl`]). When stdin is a terminal, the host puts it
//! into raw mode and the console is the line discipline ([`ldisc`]), following the termios
//! settings programs set ([`termios`], Linux's defaults at boot): canonical mode with line
//! editing (erase, word erase, kill, end of file), echo to the terminal among stdout and
//! stderr, `^C`/`^\` sending `SIGINT`/`SIGQUIT` to the foreground process group (`^Z` is
//! dropped: no job control), and `VMIN`/`VTIME` in non-canonical mode. Otherwise input is
//! passed through as it comes, without echo (a terminal fd in canonical mode still reads at
//! most one line).

mod input;
mod ioctl;
mod ldisc;
pub(crate) mod pty;
mod termios;

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use pvmux_hypercalls::bootargs::{ConsoleSize, Terminals};
use pvmux_hypercalls::hypercall::stream;

pub(crate) use input::{console_available, console_read, console_readable};
pub(crate) use ioctl::{ioc, tty_ioctl};

use super::poll;
use crate::fs::ramfs::oflag;
use crate::irq::IrqLock;
use crate::linux::signal;
use crate::sched::wait::WaitQueue;
use termios::Termios;

/// The console's shared state.
///
/// When the host's stdin is a terminal, the console is its line discipline: every byte from
/// the host goes through [`Console::receive`] as it arrives (also from the input event, so
/// `^C` works while nothing reads), which applies the termios settings: input translation,
/// signals, echo, and in canonical mode line editing. Otherwise input bytes are passed
/// through untouched, and never echoed.
struct Console {
    /// Input ready for programs: raw bytes, or with the line discipline the completed lines
    /// (canonical mode) or the received bytes (non-canonical mode).
    input: VecDeque<u8>,
    /// Line discipline, canonical mode: the length of each completed line in `input`, in
    /// order (0: an end of file typed at the start of a line).
    lines: VecDeque<usize>,
    /// Line discipline, canonical mode: the line being typed.
    edit: Vec<u8>,
    /// Line discipline: echo to write out (after the lock is released).
    echo: Vec<u8>,
    /// Line discipline: signals (bit N: signal N) for the foreground process group.
    signals: u64,
    /// Line discipline: guest time of the last byte received (for `VTIME`).
    last_rx: u64,
    /// The host reported end of input; the next read returns 0 (once).
    eof: bool,
    /// Bounce buffer for `ConsoleRead` (allocated on first use).
    scratch: Vec<u8>,
    termios: Termios,
    /// rows, cols, xpixel, ypixel (`struct winsize`); rows 0 = not set yet.
    winsize: [u16; 4],
    /// Foreground process group (0: not set, report the caller's).
    fg_pgrp: i32,
}

impl Console {
    /// A console with no input and Linux's initial terminal settings.
    const fn new() -> Self {
        Self {
            input: VecDeque::new(),
            lines: VecDeque::new(),
            edit: Vec::new(),
            echo: Vec::new(),
            signals: 0,
            last_rx: 0,
            eof: false,
            scratch: Vec::new(),
            termios: Termios::initial(),
            winsize: [0; 4],
            fg_pgrp: 0,
        }
    }

    fn canonical(&self) -> bool {
        self.termios.canonical()
    }
}

/// The console.
static CONSOLE: IrqLock<Console> = IrqLock::new(Console::new());

/// Bumped by every `pending::INPUT` event.
static INPUT_SEQ: AtomicU64 = AtomicU64::new(0);
/// Console readers wait here for input.
static INPUT_WQ: WaitQueue = WaitQueue::new();

/// Which host streams are terminals (from the boot arguments).
pub(crate) fn terminals() -> Terminals {
    crate::boot::args().options.terminals
}

/// The terminal size assumed when the host did not give one.
const DEFAULT_SIZE: ConsoleSize = match ConsoleSize::new(80, 24) {
    Some(size) => size,
    None => panic!("80x24 has no zero dimension"),
};

/// The terminal's size at boot (from the boot arguments).
fn console_size() -> ConsoleSize {
    crate::boot::args()
        .options
        .console_size
        .unwrap_or(DEFAULT_SIZE)
}

/// True if the host's stdin is a terminal: the console is then the line discipline.
fn ldisc() -> bool {
    terminals().stdin
}

/// The host stream that echo goes to: the terminal among stdout and stderr, if any.
fn echo_stream() -> Option<u64> {
    let t = terminals();
    if t.stdout {
        Some(stream::STDOUT)
    } else if t.stderr {
        Some(stream::STDERR)
    } else {
        None
    }
}

/// Runs `f` on the console, then (unlocked) writes the echo it produced and sends the
/// signals it raised to the foreground process group.
fn with_console<R>(f: impl FnOnce(&mut Console) -> R) -> R {
    let (r, echo, signals, pgrp) = {
        let mut c = CONSOLE.lock();
        let r = f(&mut c);
        let echo = core::mem::take(&mut c.echo);
        let signals = core::mem::replace(&mut c.signals, 0);
        (r, echo, signals, c.fg_pgrp)
    };
    if !echo.is_empty() {
        if let Some(out) = echo_stream() {
            crate::hcall::console_write_stream(out, &echo);
        }
    }
    if signals != 0 {
        signal_foreground(pgrp, signals);
    }
    r
}

/// Sends the signals in `set` (bit N: signal N) to the processes of process group `pgrp`
/// (0: not set, the group of process 1).
fn signal_foreground(pgrp: i32, set: u64) {
    use crate::linux::task;
    let pgrp = match pgrp {
        0 => match task::find_process(1) {
            Some(p) => p.pgid(),
            None => return,
        },
        g => g,
    };
    let targets: Vec<_> = task::all_processes()
        .into_iter()
        .filter(|p| p.pgid() == pgrp && !p.zombie.load(Ordering::Acquire))
        .collect();
    for signo in 1..64u32 {
        if set & (1 << signo) != 0 {
            for p in &targets {
                signal::send_to_process(p, signo);
            }
        }
    }
}

/// Console input arrived (the `pending::INPUT` event): runs it through the line discipline
/// (if any), wakes readers and pollers.
pub(crate) fn input_arrived() {
    if ldisc() {
        with_console(|c| c.pump());
    }
    INPUT_SEQ.fetch_add(1, Ordering::AcqRel);
    INPUT_WQ.wake_all();
    poll::notify();
}

/// The host resized the console's terminal: the new size, and `SIGWINCH` to the foreground
/// process group when it changed (as Linux's `TIOCSWINSZ` on a terminal).
pub(crate) fn console_resized(rows: u16, cols: u16) {
    let pgrp = {
        let mut c = CONSOLE.lock();
        if c.winsize[0] == 0 {
            let boot = console_size();
            c.winsize = [boot.rows.get(), boot.cols.get(), 0, 0];
        }
        if c.winsize[..2] == [rows, cols] {
            return;
        }
        c.winsize = [rows, cols, 0, 0];
        c.fg_pgrp
    };
    signal_foreground(pgrp, 1 << signal::sig::SIGWINCH);
}

/// The console's state a kernel hand-over carries (record section 31): what programs have
/// not read of its input and, as a terminal, its settings, size, foreground process group
/// and the line being typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CarriedConsole {
    /// Linux's `struct termios2`.
    pub(crate) termios: [u8; 44],
    /// The host reported the end of the input, not read yet.
    pub(crate) eof: bool,
    /// `struct winsize` (rows 0: not set).
    pub(crate) winsize: [u16; 4],
    /// The foreground process group (0: not set).
    pub(crate) fg_pgrp: i32,
    /// Input ready for programs.
    pub(crate) input: Vec<u8>,
    /// Canonical mode: each completed line's length in `input`.
    pub(crate) lines: Vec<usize>,
    /// Canonical mode: the line being typed.
    pub(crate) edit: Vec<u8>,
}

/// The console's state, for a hand-over record.
pub(crate) fn carry_out() -> CarriedConsole {
    let c = CONSOLE.lock();
    let mut termios = [0u8; 44];
    termios.copy_from_slice(&c.termios.to_bytes(true));
    CarriedConsole {
        termios,
        eof: c.eof,
        winsize: c.winsize,
        fg_pgrp: c.fg_pgrp,
        input: c.input.iter().copied().collect(),
        lines: c.lines.iter().copied().collect(),
        edit: c.edit.clone(),
    }
}

/// Takes over the console state a hand-over record carried (checked: the lines add up to
/// at most the input), before any program runs; wakes readers and pollers.
pub(crate) fn adopt(carried: CarriedConsole) {
    {
        let mut c = CONSOLE.lock();
        c.termios = Termios::from_bytes(&carried.termios, &c.termios);
        c.eof = carried.eof;
        c.winsize = carried.winsize;
        c.fg_pgrp = carried.fg_pgrp;
        c.input = carried.input.into_iter().collect();
        c.lines = carried.lines.into_iter().collect();
        c.edit = carried.edit;
    }
    INPUT_SEQ.fetch_add(1, Ordering::AcqRel);
    INPUT_WQ.wake_all();
    poll::notify();
}

/// Writes `data` to host stream `out` (`stream::STDOUT` or `stream::STDERR`).
pub(crate) fn console_write(out: u64, data: &[u8]) {
    let out = if out == stream::STDERR {
        stream::STDERR
    } else {
        stream::STDOUT
    };
    crate::hcall::console_write_stream(out, data);
}

/// The open flags of the console fds of the first process: fd 0 reads the host's stdin,
/// fds 1 and 2 write its stdout and stderr; a terminal stream is read-write, like a real
/// terminal's fds. Returns (flags, output stream, is a terminal) per fd.
pub(crate) fn initial_console_fds() -> [(u32, u64, bool); 3] {
    let t = terminals();
    let rw = |tty: bool, plain: u32| if tty { oflag::O_RDWR } else { plain };
    [
        (rw(t.stdin, oflag::O_RDONLY), stream::STDOUT, t.stdin),
        (rw(t.stdout, oflag::O_WRONLY), stream::STDOUT, t.stdout),
        (rw(t.stderr, oflag::O_WRONLY), stream::STDERR, t.stderr),
    ]
}
