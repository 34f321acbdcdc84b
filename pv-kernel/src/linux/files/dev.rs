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
//! 2 stderr); only terminal streams answer terminal `ioctl`s. Terminal settings are recorded
//! and reported back, but the line discipline is the host terminal's own: the kernel does no
//! echo or line editing (it does return at most one line per read in canonical mode).

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use pvmux_hypercalls::hypercall::stream;
use pvmux_hypercalls::Hypercall;

use super::poll;
use crate::fs::ramfs::{oflag, FileType, Ino};
use crate::fs::Errno;
use crate::irq::{IrqGuard, IrqLock};
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

/// `c_lflag` canonical mode.
const ICANON: u32 = 0o2;
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
struct Console {
    /// Input read from the host but not yet by a program.
    input: VecDeque<u8>,
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

/// Console input arrived (the `pending::INPUT` event): wakes readers and pollers.
pub(crate) fn input_arrived() {
    INPUT_SEQ.fetch_add(1, Ordering::AcqRel);
    INPUT_WQ.wake_all();
    poll::notify();
}

/// What one `ConsoleRead` gave.
enum Fill {
    /// Bytes were appended to the input.
    Data,
    /// End of input.
    Eof,
    /// Nothing buffered on the host yet (or the call failed).
    Empty,
}

impl Console {
    /// Asks the host for input (never blocks).
    fn fill(&mut self) -> Fill {
        if self.scratch.len() != READ_CHUNK {
            self.scratch = alloc::vec![0; READ_CHUNK];
        }
        let Some(gpa) = crate::boot::virt_to_phys(self.scratch.as_ptr() as u64, READ_CHUNK as u64)
        else {
            return Fill::Empty;
        };
        let ret = {
            let _irq = IrqGuard::new();
            crate::stub::hypercall(
                Hypercall::ConsoleRead as u64,
                gpa,
                READ_CHUNK as u64,
                0,
                0,
                0,
            )
        };
        match usize::try_from(ret) {
            Ok(0) => Fill::Eof,
            Ok(n) => {
                let n = n.min(READ_CHUNK);
                self.input.extend(&self.scratch[..n]);
                Fill::Data
            }
            // `Busy` (nothing yet) and any error: nothing to read now.
            Err(_) => Fill::Empty,
        }
    }

    /// True if a read would not block (input buffered, or end of input), asking the host if
    /// needed.
    fn ready(&mut self) -> bool {
        if !self.input.is_empty() || self.eof {
            return true;
        }
        match self.fill() {
            Fill::Data => true,
            Fill::Eof => {
                self.eof = true;
                true
            }
            Fill::Empty => false,
        }
    }

    /// Moves buffered input to `out`: at most one line in canonical mode on a terminal.
    fn take(&mut self, out: &mut [u8], lines: bool) -> usize {
        let mut n = out.len().min(self.input.len());
        if lines && self.termios.lflag & ICANON != 0 {
            if let Some(nl) = self.input.iter().take(n).position(|&b| b == b'\n') {
                n = nl + 1;
            }
        }
        for (dst, src) in out[..n].iter_mut().zip(self.input.drain(..n)) {
            *dst = src;
        }
        n
    }
}

/// Reads console input into `out`: blocks until some arrives (unless `nonblock`); 0 at end
/// of input. `tty` selects terminal (line-at-a-time) behaviour.
pub(crate) fn console_read(out: &mut [u8], nonblock: bool, tty: bool) -> Result<usize, Errno> {
    if out.is_empty() {
        return Ok(0);
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

/// True if a console read would not block.
pub(crate) fn console_readable() -> bool {
    CONSOLE.lock().ready()
}

/// Bytes of console input buffered (`FIONREAD`), after asking the host for more.
pub(crate) fn console_available() -> usize {
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
            c.termios = Termios::from_bytes(&b[..len], &c.termios);
            if matches!(cmd, TCSETSF | TCSETSF2) {
                c.input.clear();
            }
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
                0 | 2 => CONSOLE.lock().input.clear(),
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
