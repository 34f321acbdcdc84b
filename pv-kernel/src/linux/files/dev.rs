//! Character devices: `/dev/null`, `/dev/zero`, `/dev/full`, `/dev/random`, `/dev/urandom`,
//! `/dev/tty` and `/dev/console`, and the console behind the last two and behind the first
//! process's fds 0, 1 and 2.
//!
//! The ramfs has no device inodes, so [`init`] creates empty regular files at the `/dev`
//! paths and records their inode numbers: opening one of those inodes (by any path) gives the
//! device, and `stat` reports it as a character device with the Linux device number.
//!
//! The console reads the host's stdin (`ConsoleRead`, buffered here so `poll` can look
//! ahead) and writes the host's stdout or stderr (`ConsoleWrite` streams). Whether each host
//! stream is a terminal comes from the `console-tty=N` boot word (bit 0 stdin, 1 stdout,
//! 2 stderr); only terminal streams answer terminal `ioctl`s. When stdin is a terminal, the
//! host puts it into raw mode and the console is the line discipline, following the termios
//! settings programs set (Linux's defaults at boot): canonical mode with line editing (erase,
//! word erase, kill, end of file), echo to the terminal among stdout and stderr, `^C`/`^\`
//! sending `SIGINT`/`SIGQUIT` to the foreground process group (`^Z` is dropped: no job
//! control), and `VMIN`/`VTIME` in non-canonical mode. Otherwise input is passed through as
//! it comes, without echo (a terminal fd in canonical mode still reads at most one line).

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use pvmux_hypercalls::hypercall::stream;

use super::poll;
use crate::fs::ramfs::{oflag, FileType, Ino};
use crate::fs::Errno;
use crate::irq::IrqLock;
use crate::linux::uaccess::{copy_from_user, copy_to_user, read_val, write_val};
use crate::linux::{signal, SysResult};
use crate::sched::wait::WaitQueue;

/// The device kinds backed by a `/dev` node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dev {
    /// `/dev/null`: reads end at once, writes vanish.
    Null,
    /// `/dev/zero`: reads give zeros, writes vanish.
    Zero,
    /// `/dev/full`: reads give zeros, writes fail with `ENOSPC`.
    Full,
    /// `/dev/random`: random bytes (never blocks, like Linux since 5.6 once seeded).
    Random,
    /// `/dev/urandom`: random bytes.
    URandom,
    /// `/dev/tty`: the controlling terminal (the console).
    Tty,
    /// `/dev/console`: the console.
    Console,
}

impl Dev {
    /// Every device, with its name under `/dev`.
    const ALL: [(Dev, &'static [u8]); 7] = [
        (Dev::Null, b"null"),
        (Dev::Zero, b"zero"),
        (Dev::Full, b"full"),
        (Dev::Random, b"random"),
        (Dev::URandom, b"urandom"),
        (Dev::Tty, b"tty"),
        (Dev::Console, b"console"),
    ];

    /// Linux (major, minor).
    pub(crate) const fn number(self) -> (u32, u32) {
        match self {
            Self::Null => (1, 3),
            Self::Zero => (1, 5),
            Self::Full => (1, 7),
            Self::Random => (1, 8),
            Self::URandom => (1, 9),
            Self::Tty => (5, 0),
            Self::Console => (5, 1),
        }
    }

    /// Permission bits of the node.
    const fn perm(self) -> u32 {
        match self {
            Self::Console => 0o600,
            _ => 0o666,
        }
    }
}

/// `st_rdev` encoding of (major, minor) (Linux `new_encode_dev`).
pub(crate) fn encode_dev((major, minor): (u32, u32)) -> u64 {
    u64::from(minor & 0xff) | (u64::from(major) << 8) | (u64::from(minor & !0xff) << 12)
}

/// Device nodes created by [`init`]: (inode, device).
static NODES: IrqLock<Vec<(Ino, Dev)>> = IrqLock::new(Vec::new());

/// Creates `/dev`, `/dev/shm` and the device nodes (keeping any that exist as regular files),
/// and records their inodes. Idempotent; call after the initramfs is unpacked.
pub(crate) fn init() {
    use crate::fs::ramfs::ROOT_INO;
    let nodes = crate::fs::with(|fs| {
        let _ = fs.mkdir(ROOT_INO, b"/dev", 0o755);
        let _ = fs.mkdir(ROOT_INO, b"/dev/shm", 0o1777);
        let mut nodes = Vec::new();
        for (dev, name) in Dev::ALL {
            let mut path = b"/dev/".to_vec();
            path.extend_from_slice(name);
            let ino = match fs.lookup(ROOT_INO, &path, false) {
                Ok(ino) => ino,
                Err(_) => {
                    let flags = oflag::O_CREAT | oflag::O_EXCL | oflag::O_WRONLY;
                    match fs.open(ROOT_INO, &path, flags, dev.perm()) {
                        Ok(h) => {
                            let ino = fs.fstat(h).map(|st| st.ino);
                            let _ = fs.close(h);
                            match ino {
                                Ok(ino) => ino,
                                Err(_) => continue,
                            }
                        }
                        Err(_) => continue,
                    }
                }
            };
            match fs.stat_ino(ino) {
                Ok(st) if st.file_type() == FileType::Regular && st.size == 0 => {
                    let _ = fs.set_meta(ino, dev.perm(), None, None);
                    nodes.push((ino, dev));
                }
                _ => {}
            }
        }
        nodes
    });
    *NODES.lock() = nodes;
}

/// The device behind inode `ino`, if it is one of the `/dev` nodes.
pub(crate) fn node(ino: Ino) -> Option<Dev> {
    NODES
        .lock()
        .iter()
        .find(|&&(i, _)| i == ino)
        .map(|&(_, d)| d)
}

/// The inode of device `dev`'s node, if it exists.
pub(crate) fn node_ino(dev: Dev) -> Option<Ino> {
    NODES
        .lock()
        .iter()
        .find(|&&(_, d)| d == dev)
        .map(|&(i, _)| i)
}

/// Reads `buf.len()` bytes from a memory-like device.
pub(crate) fn read(dev: Dev, buf: &mut [u8]) -> usize {
    match dev {
        Dev::Null => 0,
        Dev::Zero | Dev::Full => {
            buf.fill(0);
            buf.len()
        }
        Dev::Random | Dev::URandom => {
            super::random::fill(buf);
            buf.len()
        }
        // Never reached: terminals open as console files.
        Dev::Tty | Dev::Console => 0,
    }
}

/// Writes to a memory-like device: the count written.
pub(crate) fn write(dev: Dev, len: usize) -> Result<usize, Errno> {
    match dev {
        Dev::Full => Err(Errno::ENOSPC),
        _ => Ok(len),
    }
}

// ---------------------------------------------------------------------------------------
// The boot words.

/// `console-tty=N`: bit 0/1/2 set if the host's stdin/stdout/stderr is a terminal.
pub(crate) fn tty_bits() -> u32 {
    word("console-tty=")
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0)
        & 7
}

/// `console-size=COLSxROWS` (default 80x24).
fn console_size() -> (u16, u16) {
    word("console-size=")
        .and_then(|v| {
            let (c, r) = v.split_once('x')?;
            Some((c.parse::<u16>().ok()?, r.parse::<u16>().ok()?))
        })
        .filter(|&(c, r)| c > 0 && r > 0)
        .unwrap_or((80, 24))
}

/// The value of boot word `prefix...` (kernel words only: not the init's argv after `--`).
fn word(prefix: &str) -> Option<&'static str> {
    crate::boot::cmdline()
        .split_ascii_whitespace()
        .take_while(|&w| w != "--")
        .find_map(|w| w.strip_prefix(prefix))
}

// ---------------------------------------------------------------------------------------
// The console.

/// Linux `struct termios` (the kernel's, `NCCS` = 19) and the speeds of `termios2`.
#[derive(Clone, Copy)]
struct Termios {
    iflag: u32,
    oflag: u32,
    cflag: u32,
    lflag: u32,
    line: u8,
    cc: [u8; 19],
    ispeed: u32,
    ospeed: u32,
}

/// `c_lflag` bits.
mod lflag {
    pub(super) const ISIG: u32 = 0o1;
    pub(super) const ICANON: u32 = 0o2;
    pub(super) const ECHO: u32 = 0o10;
    pub(super) const ECHOE: u32 = 0o20;
    pub(super) const ECHOK: u32 = 0o40;
    pub(super) const ECHONL: u32 = 0o100;
    pub(super) const NOFLSH: u32 = 0o200;
    pub(super) const ECHOCTL: u32 = 0o1000;
    pub(super) const ECHOKE: u32 = 0o4000;
    pub(super) const IEXTEN: u32 = 0o100000;
}

/// `c_iflag` bits.
mod iflag {
    pub(super) const ISTRIP: u32 = 0o40;
    pub(super) const INLCR: u32 = 0o100;
    pub(super) const IGNCR: u32 = 0o200;
    pub(super) const ICRNL: u32 = 0o400;
}

/// `c_cc` indices.
mod vc {
    pub(super) const VINTR: usize = 0;
    pub(super) const VQUIT: usize = 1;
    pub(super) const VERASE: usize = 2;
    pub(super) const VKILL: usize = 3;
    pub(super) const VEOF: usize = 4;
    pub(super) const VTIME: usize = 5;
    pub(super) const VMIN: usize = 6;
    pub(super) const VSUSP: usize = 10;
    pub(super) const VEOL: usize = 11;
    pub(super) const VWERASE: usize = 14;
    pub(super) const VEOL2: usize = 16;
}

use lflag::ICANON;

/// `c_cflag` speed bits and the "other speed" code.
const CBAUD: u32 = 0o10017;
/// `B38400`.
const B38400: u32 = 0o17;

impl Termios {
    /// Linux's initial terminal settings (`tty_std_termios`).
    const fn initial() -> Self {
        Self {
            iflag: 0o2400,   // ICRNL | IXON
            oflag: 0o5,      // OPOST | ONLCR
            cflag: 0o2277,   // B38400 | CS8 | CREAD | HUPCL
            lflag: 0o105073, // ISIG | ICANON | ECHO | ECHOE | ECHOK | ECHOCTL | ECHOKE | IEXTEN
            line: 0,
            cc: [
                3, 28, 127, 21, 4, 0, 1, 0, 17, 19, 26, 0, 18, 15, 23, 22, 0, 0, 0,
            ],
            ispeed: 38400,
            ospeed: 38400,
        }
    }

    /// The 36-byte `struct termios`, or the 44-byte `struct termios2` with `two`.
    fn to_bytes(self, two: bool) -> Vec<u8> {
        let mut b = Vec::with_capacity(44);
        for v in [self.iflag, self.oflag, self.cflag, self.lflag] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.push(self.line);
        b.extend_from_slice(&self.cc);
        if two {
            b.extend_from_slice(&self.ispeed.to_le_bytes());
            b.extend_from_slice(&self.ospeed.to_le_bytes());
        }
        b
    }

    /// Parses a `struct termios` (36 bytes) or `struct termios2` (44 bytes).
    fn from_bytes(b: &[u8], old: &Self) -> Self {
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut cc = [0u8; 19];
        cc.copy_from_slice(&b[17..36]);
        let mut t = Self {
            iflag: w(0),
            oflag: w(4),
            cflag: w(8),
            lflag: w(12),
            line: b[16],
            cc,
            ispeed: old.ispeed,
            ospeed: old.ospeed,
        };
        if b.len() >= 44 {
            t.ispeed = w(36);
            t.ospeed = w(40);
        } else if t.cflag & CBAUD == B38400 {
            t.ispeed = 38400;
            t.ospeed = 38400;
        }
        t
    }
}

/// The console's shared state.
///
/// When the host's stdin is a terminal (`console-tty` bit 0), the console is its line
/// discipline: every byte from the host goes through [`Console::receive`] as it arrives
/// (also from the input event, so `^C` works while nothing reads), which applies the
/// termios settings: input translation, signals, echo, and in canonical mode line editing.
/// Otherwise input bytes are passed through untouched, and never echoed.
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

/// The console.
static CONSOLE: IrqLock<Console> = IrqLock::new(Console {
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
});

/// Bumped by every `pending::INPUT` event.
static INPUT_SEQ: AtomicU64 = AtomicU64::new(0);
/// Console readers wait here for input.
static INPUT_WQ: WaitQueue = WaitQueue::new();

/// Bytes asked of the host per `ConsoleRead`.
const READ_CHUNK: usize = 4096;
/// Line discipline: input buffered in the guest before the host's buffer is left to fill.
const INPUT_MAX: usize = 64 * 1024;
/// Line discipline: the longest line in canonical mode, newline included (Linux's
/// `N_TTY_BUF_SIZE`); further characters are dropped.
const LINE_MAX: usize = 4096;

/// `console-tty` bits, parsed once (`u32::MAX`: not yet).
static TTY_BITS: AtomicU32 = AtomicU32::new(u32::MAX);

/// True if the host's stdin is a terminal: the console is then the line discipline.
fn ldisc() -> bool {
    let mut bits = TTY_BITS.load(Ordering::Relaxed);
    if bits == u32::MAX {
        bits = tty_bits();
        TTY_BITS.store(bits, Ordering::Relaxed);
    }
    bits & 1 != 0
}

/// The host stream that echo goes to: the terminal among stdout and stderr, if any.
fn echo_stream() -> Option<u64> {
    let bits = tty_bits();
    if bits & 2 != 0 {
        Some(stream::STDOUT)
    } else if bits & 4 != 0 {
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

/// What one `ConsoleRead` gave.
enum Fill {
    /// This many bytes arrived in `scratch`.
    Data(usize),
    /// End of input.
    Eof,
    /// Nothing buffered on the host yet (or the call failed).
    Empty,
}

/// Which part of the line an erase character removes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Erase {
    Char,
    Word,
    Line,
}

impl Console {
    /// Asks the host for input (never blocks); data lands in `scratch`.
    fn fill(&mut self) -> Fill {
        if self.scratch.len() != READ_CHUNK {
            self.scratch = alloc::vec![0; READ_CHUNK];
        }
        let Some(gpa) = crate::boot::virt_to_phys(self.scratch.as_ptr() as u64, READ_CHUNK as u64)
        else {
            return Fill::Empty;
        };
        match crate::hcall::console_read(gpa, READ_CHUNK as u64) {
            Ok(0) => Fill::Eof,
            Ok(n) => Fill::Data(usize::try_from(n).map_or(READ_CHUNK, |n| n.min(READ_CHUNK))),
            // `Busy` (nothing yet) and any error: nothing to read now.
            Err(_) => Fill::Empty,
        }
    }

    /// True if a read would not block (input buffered, or end of input), asking the host if
    /// needed. Without the line discipline.
    fn ready(&mut self) -> bool {
        if !self.input.is_empty() || self.eof {
            return true;
        }
        match self.fill() {
            Fill::Data(n) => {
                self.input.extend(&self.scratch[..n]);
                true
            }
            Fill::Eof => {
                self.eof = true;
                true
            }
            Fill::Empty => false,
        }
    }

    /// Moves buffered input to `out`: at most one line in canonical mode on a terminal.
    /// Without the line discipline.
    fn take(&mut self, out: &mut [u8], lines: bool) -> usize {
        let mut n = out.len().min(self.input.len());
        if lines && self.termios.lflag & ICANON != 0 {
            if let Some(nl) = self.input.iter().take(n).position(|&b| b == b'\n') {
                n = nl + 1;
            }
        }
        self.drain_to(out, n)
    }

    fn drain_to(&mut self, out: &mut [u8], n: usize) -> usize {
        for (dst, src) in out[..n].iter_mut().zip(self.input.drain(..n)) {
            *dst = src;
        }
        n
    }

    fn canonical(&self) -> bool {
        self.termios.lflag & ICANON != 0
    }

    // -- The line discipline.

    /// Takes everything the host has (up to [`INPUT_MAX`] buffered) through the line
    /// discipline.
    fn pump(&mut self) {
        while !self.eof && self.input.len() + self.edit.len() < INPUT_MAX {
            match self.fill() {
                Fill::Data(n) => {
                    let scratch = core::mem::take(&mut self.scratch);
                    for &b in &scratch[..n] {
                        self.receive(b);
                    }
                    self.scratch = scratch;
                    self.last_rx = crate::stub::clock_ns();
                }
                Fill::Eof => {
                    self.eof = true;
                    // A partial line is delivered as it is.
                    if self.canonical() && !self.edit.is_empty() {
                        self.push_line();
                    }
                }
                Fill::Empty => break,
            }
        }
    }

    /// Input ready for a read (line discipline): a line, or any byte in non-canonical mode.
    fn tty_available(&self) -> bool {
        if self.canonical() {
            !self.lines.is_empty()
        } else {
            !self.input.is_empty()
        }
    }

    /// True if a read would not block (line discipline), asking the host first.
    fn tty_ready(&mut self) -> bool {
        self.pump();
        self.eof || self.tty_available()
    }

    /// Bytes a read could take now (line discipline).
    fn tty_pending(&self) -> usize {
        if self.canonical() {
            self.lines.iter().sum()
        } else {
            self.input.len()
        }
    }

    /// One byte typed on the terminal.
    fn receive(&mut self, mut c: u8) {
        use vc::*;
        let t = self.termios;
        let on = |flag: u32| t.lflag & flag != 0;
        // A control character, unless disabled (`_POSIX_VDISABLE` is 0).
        let is = |i: usize, c: u8| t.cc[i] != 0 && t.cc[i] == c;
        if t.iflag & iflag::ISTRIP != 0 {
            c &= 0x7f;
        }
        if c == b'\r' {
            if t.iflag & iflag::IGNCR != 0 {
                return;
            }
            if t.iflag & iflag::ICRNL != 0 {
                c = b'\n';
            }
        } else if c == b'\n' && t.iflag & iflag::INLCR != 0 {
            c = b'\r';
        }
        if on(lflag::ISIG) {
            let signo = if is(VINTR, c) {
                signal::sig::SIGINT
            } else if is(VQUIT, c) {
                signal::sig::SIGQUIT
            } else if is(VSUSP, c) {
                // No job control: suspending is not supported; the key is dropped.
                return;
            } else {
                0
            };
            if signo != 0 {
                self.signals |= 1 << signo;
                if !on(lflag::NOFLSH) {
                    self.flush_input();
                }
                if on(lflag::ECHO) {
                    self.echo_char(c);
                }
                return;
            }
        }
        if !on(ICANON) {
            if on(lflag::ECHO) {
                self.echo_char(c);
            }
            self.input.push_back(c);
            return;
        }
        let iexten = on(lflag::IEXTEN);
        if is(VERASE, c) || c == 0x08 {
            self.erase(Erase::Char, c);
        } else if is(VKILL, c) {
            self.erase(Erase::Line, c);
        } else if iexten && is(VWERASE, c) {
            self.erase(Erase::Word, c);
        } else if is(VEOF, c) {
            // End of file: the line so far is delivered (none: a read returns 0).
            self.push_line();
        } else if c == b'\n' || is(VEOL, c) || (iexten && is(VEOL2, c)) {
            if on(lflag::ECHO) || (c == b'\n' && on(lflag::ECHONL)) {
                self.echo.push(c);
            }
            self.edit.push(c);
            self.push_line();
        } else if self.edit.len() < LINE_MAX - 1 {
            if on(lflag::ECHO) {
                self.echo_char(c);
            }
            self.edit.push(c);
        }
    }

    /// Echoes `c`, a control character as `^X` with `ECHOCTL`.
    fn echo_char(&mut self, c: u8) {
        if self.termios.lflag & lflag::ECHOCTL != 0 && is_ctl(c) {
            self.echo.extend_from_slice(&[b'^', c ^ 0x40]);
        } else {
            self.echo.push(c);
        }
    }

    /// Canonical mode: erases a character, word (trailing blanks, then non-blanks) or the
    /// whole line, typed as `key`, and echoes the erasure.
    fn erase(&mut self, kind: Erase, key: u8) {
        let t = self.termios;
        let on = |flag: u32| t.lflag & flag != 0;
        if self.edit.is_empty() {
            return;
        }
        let echo = on(lflag::ECHO);
        // Erasing visually ("\b \b"); otherwise the key itself is echoed (Linux without
        // ECHOE, or a kill without ECHOKE: then a newline too with ECHOK).
        let visual = on(lflag::ECHOE) && (kind != Erase::Line || on(lflag::ECHOKE));
        let mut seen_word = false;
        while let Some(&last) = self.edit.last() {
            if kind == Erase::Word {
                let blank = last == b' ' || last == b'\t';
                if blank && seen_word {
                    break;
                }
                seen_word |= !blank;
            }
            let width = self.pop_char();
            if echo && visual {
                for _ in 0..width {
                    self.echo.extend_from_slice(b"\x08 \x08");
                }
            }
            if kind == Erase::Char {
                break;
            }
        }
        if echo && !visual {
            self.echo_char(key);
            if kind == Erase::Line && on(lflag::ECHOK) {
                self.echo.push(b'\n');
            }
        }
    }

    /// Removes the last character of the line (a UTF-8 sequence counts as one): the columns
    /// its echo took.
    fn pop_char(&mut self) -> usize {
        let Some(mut c) = self.edit.pop() else {
            return 0;
        };
        // A continuation byte: pop up to the sequence's first byte.
        while c & 0xc0 == 0x80 {
            match self.edit.last() {
                Some(&b) if b & 0x80 != 0 => c = self.edit.pop().unwrap_or(b),
                _ => break,
            }
        }
        if self.termios.lflag & lflag::ECHOCTL != 0 && is_ctl(c) {
            2
        } else {
            1
        }
    }

    /// Delivers the line being typed.
    fn push_line(&mut self) {
        self.lines.push_back(self.edit.len());
        self.input.extend(self.edit.drain(..));
    }

    /// Drops all input (`^C`, `TCFLSH`, `TCSETSF`).
    fn flush_input(&mut self) {
        self.input.clear();
        self.lines.clear();
        self.edit.clear();
    }

    /// New terminal settings: switching between canonical and non-canonical mode keeps the
    /// input (a line being typed becomes readable bytes, readable bytes become a line).
    fn set_termios(&mut self, t: Termios) {
        let was = self.canonical();
        self.termios = t;
        match (was, self.canonical()) {
            (true, false) => {
                self.input.extend(self.edit.drain(..));
                self.lines.clear();
            }
            (false, true) => {
                self.lines.clear();
                if !self.input.is_empty() {
                    self.lines.push_back(self.input.len());
                }
            }
            _ => {}
        }
    }

    /// Moves input to `out` (line discipline; the caller checked [`Self::tty_available`]): up to
    /// the end of the first line in canonical mode (0 for an end of file).
    fn tty_take(&mut self, out: &mut [u8]) -> usize {
        if !self.canonical() {
            let n = out.len().min(self.input.len());
            return self.drain_to(out, n);
        }
        let Some(&len) = self.lines.front() else {
            return 0;
        };
        let n = out.len().min(len);
        if n == len {
            self.lines.pop_front();
        } else if let Some(rest) = self.lines.front_mut() {
            *rest -= n;
        }
        self.drain_to(out, n)
    }
}

/// A character echoed as `^X` with `ECHOCTL` (not tab or newline).
fn is_ctl(c: u8) -> bool {
    (c < 0x20 && c != b'\t' && c != b'\n') || c == 0x7f
}

/// What a read on the terminal does next.
enum Step {
    /// Return this.
    Done(usize),
    /// Wait for input, or until this guest time (`VTIME`).
    Wait(Option<u64>),
}

/// Reads console input into `out`: blocks until some arrives (unless `nonblock`); 0 at end
/// of input. `tty` selects terminal (line-at-a-time) behaviour.
pub(crate) fn console_read(out: &mut [u8], nonblock: bool, tty: bool) -> Result<usize, Errno> {
    if out.is_empty() {
        return Ok(0);
    }
    if ldisc() {
        return tty_read(out, nonblock);
    }
    loop {
        let seq = INPUT_SEQ.load(Ordering::Acquire);
        {
            let mut c = CONSOLE.lock();
            if c.ready() {
                if c.input.is_empty() {
                    c.eof = false;
                    return Ok(0);
                }
                return Ok(c.take(out, tty));
            }
        }
        if nonblock {
            return Err(Errno::EAGAIN);
        }
        if signal::pending() {
            return Err(Errno::EINTR);
        }
        INPUT_WQ.wait_until(|| INPUT_SEQ.load(Ordering::Acquire) != seq || signal::pending());
    }
}

/// How often a read with a `VTIME` timeout looks at the clock.
const VTIME_TICK_NS: u64 = 10_000_000;

/// A read through the line discipline: canonical mode waits for a line; non-canonical mode
/// follows `VMIN` and `VTIME` (in tenths of a second).
fn tty_read(out: &mut [u8], nonblock: bool) -> Result<usize, Errno> {
    let start = crate::stub::clock_ns();
    loop {
        let seq = INPUT_SEQ.load(Ordering::Acquire);
        let step = with_console(|c| {
            c.pump();
            if c.tty_available() {
                if c.canonical() {
                    return Step::Done(c.tty_take(out));
                }
                let vmin = usize::from(c.termios.cc[vc::VMIN]).min(out.len());
                let vtime = u64::from(c.termios.cc[vc::VTIME]) * 100_000_000;
                let now = crate::stub::clock_ns();
                if c.input.len() >= vmin || c.eof || (vtime > 0 && now >= c.last_rx + vtime) {
                    return Step::Done(c.tty_take(out));
                }
                return Step::Wait((vtime > 0).then_some(c.last_rx + vtime));
            }
            if c.eof {
                c.eof = false;
                return Step::Done(0);
            }
            if c.canonical() {
                return Step::Wait(None);
            }
            match (c.termios.cc[vc::VMIN], c.termios.cc[vc::VTIME]) {
                (0, 0) => Step::Done(0),
                (0, vtime) => {
                    let deadline = start + u64::from(vtime) * 100_000_000;
                    if crate::stub::clock_ns() >= deadline {
                        Step::Done(0)
                    } else {
                        Step::Wait(Some(deadline))
                    }
                }
                _ => Step::Wait(None),
            }
        });
        let deadline = match step {
            Step::Done(n) => return Ok(n),
            Step::Wait(d) => d,
        };
        if nonblock {
            return Err(Errno::EAGAIN);
        }
        if signal::pending() {
            return Err(Errno::EINTR);
        }
        match deadline {
            None => INPUT_WQ
                .wait_until(|| INPUT_SEQ.load(Ordering::Acquire) != seq || signal::pending()),
            Some(d) => {
                let now = crate::stub::clock_ns();
                crate::sched::sleep_until(d.min(now + VTIME_TICK_NS));
            }
        }
    }
}

/// True if a console read would not block.
pub(crate) fn console_readable() -> bool {
    if ldisc() {
        return with_console(|c| c.tty_ready());
    }
    CONSOLE.lock().ready()
}

/// Bytes of console input buffered (`FIONREAD`), after asking the host for more.
pub(crate) fn console_available() -> usize {
    if ldisc() {
        return with_console(|c| {
            c.pump();
            c.tty_pending()
        });
    }
    let mut c = CONSOLE.lock();
    c.ready();
    c.input.len()
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

// ---------------------------------------------------------------------------------------
// Terminal ioctls.

/// `ioctl` request numbers (x86-64).
pub(crate) mod ioc {
    pub(crate) const TCGETS: u64 = 0x5401;
    pub(crate) const TCSETS: u64 = 0x5402;
    pub(crate) const TCSETSW: u64 = 0x5403;
    pub(crate) const TCSETSF: u64 = 0x5404;
    pub(crate) const TCSBRK: u64 = 0x5409;
    pub(crate) const TCXONC: u64 = 0x540A;
    pub(crate) const TCFLSH: u64 = 0x540B;
    pub(crate) const TIOCSCTTY: u64 = 0x540E;
    pub(crate) const TIOCGPGRP: u64 = 0x540F;
    pub(crate) const TIOCSPGRP: u64 = 0x5410;
    pub(crate) const TIOCOUTQ: u64 = 0x5411;
    pub(crate) const TIOCGWINSZ: u64 = 0x5413;
    pub(crate) const TIOCSWINSZ: u64 = 0x5414;
    pub(crate) const FIONREAD: u64 = 0x541B;
    pub(crate) const FIONBIO: u64 = 0x5421;
    pub(crate) const TIOCNOTTY: u64 = 0x5422;
    pub(crate) const TCSBRKP: u64 = 0x5425;
    pub(crate) const TIOCGSID: u64 = 0x5429;
    pub(crate) const TCGETS2: u64 = 0x802C_542A;
    pub(crate) const TCSETS2: u64 = 0x402C_542B;
    pub(crate) const TCSETSW2: u64 = 0x402C_542C;
    pub(crate) const TCSETSF2: u64 = 0x402C_542D;
    pub(crate) const FIONCLEX: u64 = 0x5450;
    pub(crate) const FIOCLEX: u64 = 0x5451;
    pub(crate) const FIOASYNC: u64 = 0x5452;
}

/// A terminal `ioctl` on the console (the caller checked it is a terminal).
pub(crate) fn tty_ioctl(cmd: u64, arg: u64) -> SysResult {
    use ioc::*;
    match cmd {
        TCGETS | TCGETS2 => {
            let t = CONSOLE.lock().termios;
            copy_to_user(arg, &t.to_bytes(cmd == TCGETS2))?;
            Ok(0)
        }
        TCSETS | TCSETSW | TCSETSF | TCSETS2 | TCSETSW2 | TCSETSF2 => {
            let two = matches!(cmd, TCSETS2 | TCSETSW2 | TCSETSF2);
            let mut b = [0u8; 44];
            let len = if two { 44 } else { 36 };
            copy_from_user(arg, &mut b[..len])?;
            let mut c = CONSOLE.lock();
            let t = Termios::from_bytes(&b[..len], &c.termios);
            c.set_termios(t);
            if matches!(cmd, TCSETSF | TCSETSF2) {
                c.flush_input();
            }
            drop(c);
            // What a read waits for may have changed (canonical or not).
            INPUT_SEQ.fetch_add(1, Ordering::AcqRel);
            INPUT_WQ.wake_all();
            poll::notify();
            Ok(0)
        }
        TIOCGWINSZ => {
            let ws = {
                let mut c = CONSOLE.lock();
                if c.winsize[0] == 0 {
                    let (cols, rows) = console_size();
                    c.winsize = [rows, cols, 0, 0];
                }
                c.winsize
            };
            write_val(arg, &ws)?;
            Ok(0)
        }
        TIOCSWINSZ => {
            let ws: [u16; 4] = read_val(arg)?;
            CONSOLE.lock().winsize = ws;
            Ok(0)
        }
        TIOCGPGRP => {
            let pg = CONSOLE.lock().fg_pgrp;
            let pg = if pg == 0 {
                crate::linux::task::current_process().pgid()
            } else {
                pg
            };
            write_val(arg, &pg)?;
            Ok(0)
        }
        TIOCSPGRP => {
            let pg: i32 = read_val(arg)?;
            if pg < 0 {
                return Err(Errno::EINVAL);
            }
            CONSOLE.lock().fg_pgrp = pg;
            Ok(0)
        }
        TIOCGSID => {
            write_val(arg, &crate::linux::task::current_process().sid())?;
            Ok(0)
        }
        TCFLSH => {
            // TCIFLUSH (0) and TCIOFLUSH (2) drop pending input; TCOFLUSH (1) has nothing.
            match arg {
                0 | 2 => CONSOLE.lock().flush_input(),
                1 => {}
                _ => return Err(Errno::EINVAL),
            }
            Ok(0)
        }
        TIOCOUTQ => {
            write_val(arg, &0i32)?;
            Ok(0)
        }
        TCSBRK | TCSBRKP | TCXONC | TIOCSCTTY | TIOCNOTTY => Ok(0),
        _ => Err(Errno::ENOTTY),
    }
}

/// The open flags of the console fds of the first process: fd 0 reads the host's stdin,
/// fds 1 and 2 write its stdout and stderr; a terminal stream is read-write, like a real
/// terminal's fds. Returns (flags, output stream, is a terminal) per fd.
pub(crate) fn initial_console_fds() -> [(u32, u64, bool); 3] {
    let bits = tty_bits();
    let t = |b: u32| bits & (1 << b) != 0;
    [
        (
            if t(0) { oflag::O_RDWR } else { oflag::O_RDONLY },
            stream::STDOUT,
            t(0),
        ),
        (
            if t(1) { oflag::O_RDWR } else { oflag::O_WRONLY },
            stream::STDOUT,
            t(1),
        ),
        (
            if t(2) { oflag::O_RDWR } else { oflag::O_WRONLY },
            stream::STDERR,
            t(2),
        ),
    ]
}
