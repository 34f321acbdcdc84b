//! Pseudo-terminals: `/dev/ptmx` (`/dev/pts/ptmx`) opens a new master, `/dev/pts/N` its
//! slave (after `unlockpt`, `TIOCSPTLCK`; or directly with `TIOCGPTPEER`, as glibc's
//! `openpty` does). What the master writes is the slave's input, through a small line
//! discipline following the slave's termios (canonical lines with erase and end of file,
//! `ICRNL`, echo, `^C`/`^\` to the foreground process group); what the slave writes is the
//! master's input (`ONLCR` when `OPOST`). Terminal `ioctl`s work on both ends.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::any::Any;

use super::ioctl::ioc;
use super::termios::{iflag, lflag, vc, Termios};
use crate::fs::Errno;
use crate::irq::IrqLock;
use crate::linux::files::dev::encode_dev;
use crate::linux::files::file::{synthetic_stat, KStat, OpenFile, S_IFCHR};
use crate::linux::files::object::{open_object, FileObject};
use crate::linux::files::poll::{self, ev};
use crate::linux::uaccess::{copy_from_user, copy_to_user, read_val, write_val};
use crate::linux::{signal, SysResult};
use crate::sched::wait::WaitQueue;

/// `TIOCGPTN`: the pty's number.
const TIOCGPTN: u64 = 0x8004_5430;
/// `TIOCSPTLCK`: lock or unlock the slave.
const TIOCSPTLCK: u64 = 0x4004_5431;
/// `TIOCGPTLCK`: whether the slave is locked.
const TIOCGPTLCK: u64 = 0x8004_5439;
/// `TIOCGPTPEER`: open the slave, returning a descriptor.
const TIOCGPTPEER: u64 = 0x5441;
/// Most bytes buffered in either direction (writers block beyond).
const BUF_MAX: usize = 64 << 10;
/// Most ptys at once.
const MAX_PTYS: u32 = 256;
/// `c_oflag` bits.
const OPOST: u32 = 0o1;
/// `c_oflag`: newline to CR-NL.
const ONLCR: u32 = 0o4;

/// One pseudo-terminal's state.
struct State {
    termios: Termios,
    winsize: [u16; 4],
    locked: bool,
    /// Input ready for the slave (with canonical mode, completed lines).
    input: VecDeque<u8>,
    /// Canonical mode: the lengths of the completed lines in `input` (0: end of file).
    lines: VecDeque<usize>,
    /// Canonical mode: the line being typed.
    edit: Vec<u8>,
    /// Output for the master.
    output: VecDeque<u8>,
    master_open: bool,
    slaves: usize,
    /// A slave was ever opened (a master read after the last one closes is `EIO`).
    slave_seen: bool,
    fg_pgrp: i32,
}

/// A pseudo-terminal pair.
pub(crate) struct Pty {
    index: u32,
    st: IrqLock<State>,
    wq: WaitQueue,
}

/// Live ptys by number.
static PTYS: IrqLock<BTreeMap<u32, Weak<Pty>>> = IrqLock::new(BTreeMap::new());

impl Pty {
    fn changed(&self) {
        self.wq.wake_all();
        poll::notify();
    }

    /// Waits until `ready` (or a signal); `EAGAIN` for a non-blocking description.
    fn wait(&self, f: &OpenFile, ready: impl Fn(&State) -> bool) -> Result<(), Errno> {
        if f.nonblock() {
            return Err(Errno::EAGAIN);
        }
        if signal::pending() {
            return Err(Errno::EINTR);
        }
        self.wq
            .wait_until(|| ready(&self.st.lock()) || signal::pending());
        Ok(())
    }

    /// Output processing of the slave's (or echoed) bytes.
    fn put_output(s: &mut State, data: &[u8]) {
        let crlf = s.termios.oflag & (OPOST | ONLCR) == OPOST | ONLCR;
        for &c in data {
            if c == b'\n' && crlf {
                s.output.push_back(b'\r');
            }
            s.output.push_back(c);
        }
    }

    /// One byte typed at the master; returns signals to send (bit N: signal N).
    fn receive(s: &mut State, mut c: u8) -> u64 {
        let t = s.termios;
        let on = |b: u32| t.lflag & b != 0;
        let is = |i: usize, c: u8| t.cc[i] != 0 && t.cc[i] == c;
        if c == b'\r' && t.iflag & iflag::ICRNL != 0 {
            c = b'\n';
        }
        if on(lflag::ISIG) {
            let sig = if is(vc::VINTR, c) {
                signal::sig::SIGINT
            } else if is(vc::VQUIT, c) {
                signal::sig::SIGQUIT
            } else {
                0
            };
            if sig != 0 {
                if on(lflag::ECHO) {
                    Self::put_output(s, &[b'^', c + 0x40, b'\n']);
                }
                s.edit.clear();
                return 1 << sig;
            }
        }
        if !t.canonical() {
            s.input.push_back(c);
            if on(lflag::ECHO) {
                Self::put_output(s, &[c]);
            }
            return 0;
        }
        if is(vc::VERASE, c) {
            if s.edit.pop().is_some() && on(lflag::ECHO) {
                Self::put_output(s, b"\x08 \x08");
            }
        } else if is(vc::VEOF, c) {
            let n = s.edit.len();
            s.input.extend(s.edit.drain(..));
            s.lines.push_back(n);
        } else if c == b'\n' || is(vc::VEOL, c) {
            s.edit.push(c);
            let n = s.edit.len();
            s.input.extend(s.edit.drain(..));
            s.lines.push_back(n);
            if on(lflag::ECHO) || on(lflag::ECHONL) {
                Self::put_output(s, &[c]);
            }
        } else {
            s.edit.push(c);
            if on(lflag::ECHO) {
                Self::put_output(s, &[c]);
            }
        }
        0
    }

    /// True if a slave read would return now.
    fn slave_readable(s: &State) -> bool {
        !s.master_open
            || if s.termios.canonical() {
                !s.lines.is_empty()
            } else {
                !s.input.is_empty()
            }
    }

    /// The terminal `ioctl`s both ends answer.
    fn tty_ioctl(&self, cmd: u64, arg: u64) -> SysResult {
        use ioc::*;
        match cmd {
            TCGETS | TCGETS2 => {
                let t = self.st.lock().termios;
                copy_to_user(arg, &t.to_bytes(cmd == TCGETS2))?;
                Ok(0)
            }
            TCSETS | TCSETSW | TCSETSF | TCSETS2 | TCSETSW2 | TCSETSF2 => {
                let two = matches!(cmd, TCSETS2 | TCSETSW2 | TCSETSF2);
                let mut b = [0u8; 44];
                let len = if two { 44 } else { 36 };
                copy_from_user(arg, &mut b[..len])?;
                let mut s = self.st.lock();
                let old = s.termios;
                s.termios = Termios::from_bytes(&b[..len], &old);
                if old.canonical() && !s.termios.canonical() {
                    let e = core::mem::take(&mut s.edit);
                    s.input.extend(e);
                    s.lines.clear();
                } else if !old.canonical() && s.termios.canonical() {
                    // What was typed becomes the line being edited.
                    let i: Vec<u8> = s.input.drain(..).collect();
                    s.edit = i;
                    s.lines.clear();
                }
                if matches!(cmd, TCSETSF | TCSETSF2) {
                    s.input.clear();
                    s.lines.clear();
                    s.edit.clear();
                }
                drop(s);
                self.changed();
                Ok(0)
            }
            TIOCGWINSZ => {
                let ws = self.st.lock().winsize;
                write_val(arg, &ws)?;
                Ok(0)
            }
            TIOCSWINSZ => {
                let ws: [u16; 4] = read_val(arg)?;
                let pg = {
                    let mut s = self.st.lock();
                    s.winsize = ws;
                    s.fg_pgrp
                };
                if pg > 0 {
                    super::signal_foreground(pg, 1 << signal::sig::SIGWINCH);
                }
                Ok(0)
            }
            TIOCGPGRP => {
                let pg = self.st.lock().fg_pgrp;
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
                self.st.lock().fg_pgrp = pg;
                Ok(0)
            }
            TIOCGSID => {
                write_val(arg, &crate::linux::task::current_process().sid())?;
                Ok(0)
            }
            TCFLSH => {
                let mut s = self.st.lock();
                match arg {
                    0 => {
                        s.input.clear();
                        s.lines.clear();
                        s.edit.clear();
                    }
                    1 => s.output.clear(),
                    2 => {
                        s.input.clear();
                        s.lines.clear();
                        s.edit.clear();
                        s.output.clear();
                    }
                    _ => return Err(Errno::EINVAL),
                }
                drop(s);
                self.changed();
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

    fn stat(&self, master: bool) -> KStat {
        let (major, minor, perm) = if master {
            (5, 2, 0o666)
        } else {
            (136, self.index, 0o620)
        };
        let ino = if master {
            crate::linux::files::object::anon_ino()
        } else {
            crate::linux::procfs::tree::ino_of(
                crate::fs::mount::MountKind::DevPts,
                &[alloc::format!("{}", self.index).into_bytes()],
            )
        };
        let mut st = synthetic_stat(S_IFCHR | perm, ino, crate::time::realtime_ns());
        st.dev = crate::fs::mount::MountKind::DevPts.dev();
        KStat {
            st,
            rdev: encode_dev((major, minor)),
        }
    }
}

/// The master end.
pub(crate) struct PtyMaster(Arc<Pty>);
/// A slave end.
pub(crate) struct PtySlave(Arc<Pty>);

impl Drop for PtyMaster {
    fn drop(&mut self) {
        self.0.st.lock().master_open = false;
        PTYS.lock().remove(&self.0.index);
        self.0.changed();
    }
}

impl Drop for PtySlave {
    fn drop(&mut self) {
        let mut s = self.0.st.lock();
        s.slaves -= 1;
        drop(s);
        self.0.changed();
    }
}

/// Opens a new master (`/dev/ptmx`), its slave locked.
pub(crate) fn open_master(flags: u32) -> Result<Arc<OpenFile>, Errno> {
    Ok(open_object(Arc::new(PtyMaster(new_pty()?)), flags))
}

/// A new pty, its slave locked.
fn new_pty() -> Result<Arc<Pty>, Errno> {
    let mut t = PTYS.lock();
    t.retain(|_, w| w.strong_count() > 0);
    let index = (0..MAX_PTYS)
        .find(|i| !t.contains_key(i))
        .ok_or(Errno::ENOSPC)?;
    let pty = Arc::new(Pty {
        index,
        st: IrqLock::new(State {
            termios: Termios::initial(),
            winsize: [0; 4],
            locked: true,
            input: VecDeque::new(),
            lines: VecDeque::new(),
            edit: Vec::new(),
            output: VecDeque::new(),
            master_open: true,
            slaves: 0,
            slave_seen: false,
            fg_pgrp: 0,
        }),
        wq: WaitQueue::new(),
    });
    t.insert(index, Arc::downgrade(&pty));
    drop(t);
    Ok(pty)
}

/// The master end of a pty held by the kernel itself (an exec session's terminal, relayed
/// to the host): non-blocking byte calls instead of a file. Dropping it closes the master.
pub(crate) struct KernelPty(PtyMaster);

impl KernelPty {
    /// A new pty of `rows` x `cols`, unlocked, and one slave description open with
    /// `flags` (the program's fds 0, 1 and 2).
    pub(crate) fn open(rows: u16, cols: u16, flags: u32) -> Result<(Self, Arc<OpenFile>), Errno> {
        let pty = new_pty()?;
        {
            let mut s = pty.st.lock();
            s.locked = false;
            s.winsize = [rows, cols, 0, 0];
        }
        let slave = slave_of(&pty, flags)?;
        Ok((Self(PtyMaster(pty)), slave))
    }

    /// Reads the terminal's output: `Ok(0)` once every slave description is closed,
    /// `EAGAIN` when there is none yet.
    pub(crate) fn read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        let p = &self.0 .0;
        let mut s = p.st.lock();
        if !s.output.is_empty() {
            let n = buf.len().min(s.output.len());
            for (d, b) in buf.iter_mut().zip(s.output.drain(..n)) {
                *d = b;
            }
            drop(s);
            p.changed();
            return Ok(n);
        }
        if s.slave_seen && s.slaves == 0 {
            return Ok(0);
        }
        Err(Errno::EAGAIN)
    }

    /// Types `data` at the terminal (line discipline, echo, `^C`): as many bytes as its
    /// input has room for (`EAGAIN` when full).
    pub(crate) fn write(&self, data: &[u8]) -> Result<usize, Errno> {
        let p = &self.0 .0;
        let (n, signals, pg) = {
            let mut s = p.st.lock();
            let room = BUF_MAX.saturating_sub(s.input.len() + s.edit.len());
            if room == 0 {
                return Err(Errno::EAGAIN);
            }
            let n = room.min(data.len());
            let mut sig = 0;
            for &c in &data[..n] {
                sig |= Pty::receive(&mut s, c);
            }
            (n, sig, s.fg_pgrp)
        };
        p.changed();
        if signals != 0 {
            super::signal_foreground(pg, signals);
        }
        Ok(n)
    }

    /// Sets the terminal's size; a change sends `SIGWINCH` to its foreground group.
    pub(crate) fn resize(&self, rows: u16, cols: u16) {
        let p = &self.0 .0;
        let pg = {
            let mut s = p.st.lock();
            if s.winsize[..2] == [rows, cols] {
                return;
            }
            s.winsize = [rows, cols, 0, 0];
            s.fg_pgrp
        };
        if pg > 0 {
            super::signal_foreground(pg, 1 << signal::sig::SIGWINCH);
        }
    }

    /// Makes process group `pgrp` the terminal's foreground group (`^C` goes there).
    pub(crate) fn set_foreground(&self, pgrp: i32) {
        self.0 .0.st.lock().fg_pgrp = pgrp;
    }
}

/// Opens slave `index` (`/dev/pts/N`): `EIO` while locked or once its master is gone.
pub(crate) fn open_slave(index: u32, flags: u32) -> Result<Arc<OpenFile>, Errno> {
    let pty = PTYS
        .lock()
        .get(&index)
        .and_then(Weak::upgrade)
        .ok_or(Errno::ENOENT)?;
    slave_of(&pty, flags)
}

fn slave_of(pty: &Arc<Pty>, flags: u32) -> Result<Arc<OpenFile>, Errno> {
    {
        let mut s = pty.st.lock();
        if s.locked || !s.master_open {
            return Err(Errno::EIO);
        }
        s.slaves += 1;
        s.slave_seen = true;
    }
    Ok(open_object(Arc::new(PtySlave(pty.clone())), flags))
}

/// The numbers of the live ptys (`/dev/pts`'s listing).
pub(crate) fn numbers() -> Vec<u32> {
    PTYS.lock()
        .iter()
        .filter(|(_, w)| w.strong_count() > 0)
        .map(|(&i, _)| i)
        .collect()
}

/// True if pty `index` exists.
pub(crate) fn exists(index: u32) -> bool {
    PTYS.lock()
        .get(&index)
        .is_some_and(|w| w.strong_count() > 0)
}

impl FileObject for PtyMaster {
    fn read(&self, f: &OpenFile, buf: &mut [u8], off: Option<u64>) -> Result<usize, Errno> {
        if off.is_some() {
            return Err(Errno::ESPIPE);
        }
        loop {
            {
                let mut s = self.0.st.lock();
                if !s.output.is_empty() {
                    let n = buf.len().min(s.output.len());
                    for (d, b) in buf.iter_mut().zip(s.output.drain(..n)) {
                        *d = b;
                    }
                    drop(s);
                    self.0.changed();
                    return Ok(n);
                }
                if s.slave_seen && s.slaves == 0 {
                    return Err(Errno::EIO);
                }
            }
            self.0.wait(f, |s| {
                !s.output.is_empty() || (s.slave_seen && s.slaves == 0)
            })?;
        }
    }

    fn write(&self, _f: &OpenFile, data: &[u8], off: Option<u64>) -> Result<usize, Errno> {
        if off.is_some() {
            return Err(Errno::ESPIPE);
        }
        let (signals, pg) = {
            let mut s = self.0.st.lock();
            let mut sig = 0;
            for &c in data {
                sig |= Pty::receive(&mut s, c);
            }
            (sig, s.fg_pgrp)
        };
        self.0.changed();
        if signals != 0 {
            super::signal_foreground(pg, signals);
        }
        Ok(data.len())
    }

    fn poll(&self, _f: &OpenFile) -> u16 {
        let s = self.0.st.lock();
        let mut m = ev::POLLOUT | ev::POLLWRNORM;
        if !s.output.is_empty() {
            m |= ev::POLLIN | ev::POLLRDNORM;
        }
        if s.slave_seen && s.slaves == 0 {
            m |= ev::POLLHUP;
        }
        m
    }

    fn ioctl(&self, _f: &OpenFile, cmd: u64, arg: u64) -> SysResult {
        match cmd {
            TIOCGPTN => {
                write_val(arg, &self.0.index)?;
                Ok(0)
            }
            TIOCSPTLCK => {
                let v: i32 = read_val(arg)?;
                self.0.st.lock().locked = v != 0;
                Ok(0)
            }
            TIOCGPTLCK => {
                let v = i32::from(self.0.st.lock().locked);
                write_val(arg, &v)?;
                Ok(0)
            }
            TIOCGPTPEER => {
                let flags = arg as u32;
                let cloexec = flags & crate::linux::files::file::fl::O_CLOEXEC != 0;
                let f = slave_of(&self.0, flags)?;
                crate::linux::files::install(f, cloexec)
            }
            _ => self.0.tty_ioctl(cmd, arg),
        }
    }

    fn available(&self) -> Option<usize> {
        Some(self.0.st.lock().output.len())
    }

    fn stat(&self) -> KStat {
        self.0.stat(true)
    }

    fn link_name(&self) -> Vec<u8> {
        b"/dev/ptmx".to_vec()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl FileObject for PtySlave {
    fn read(&self, f: &OpenFile, buf: &mut [u8], off: Option<u64>) -> Result<usize, Errno> {
        if off.is_some() {
            return Err(Errno::ESPIPE);
        }
        loop {
            {
                let mut s = self.0.st.lock();
                if s.termios.canonical() {
                    if let Some(len) = s.lines.front().copied() {
                        let n = buf.len().min(len);
                        for (d, b) in buf.iter_mut().zip(s.input.drain(..n)) {
                            *d = b;
                        }
                        if n == len {
                            s.lines.pop_front();
                        } else if let Some(l) = s.lines.front_mut() {
                            *l -= n;
                        }
                        drop(s);
                        self.0.changed();
                        return Ok(n);
                    }
                } else if !s.input.is_empty() {
                    let n = buf.len().min(s.input.len());
                    for (d, b) in buf.iter_mut().zip(s.input.drain(..n)) {
                        *d = b;
                    }
                    drop(s);
                    self.0.changed();
                    return Ok(n);
                }
                if !s.master_open {
                    return Ok(0);
                }
            }
            self.0.wait(f, Pty::slave_readable)?;
        }
    }

    fn write(&self, f: &OpenFile, data: &[u8], off: Option<u64>) -> Result<usize, Errno> {
        if off.is_some() {
            return Err(Errno::ESPIPE);
        }
        loop {
            {
                let mut s = self.0.st.lock();
                if !s.master_open {
                    return Err(Errno::EIO);
                }
                if s.output.len() < BUF_MAX {
                    let n = data.len().min(BUF_MAX - s.output.len());
                    Pty::put_output(&mut s, &data[..n]);
                    drop(s);
                    self.0.changed();
                    return Ok(n);
                }
            }
            self.0
                .wait(f, |s| s.output.len() < BUF_MAX || !s.master_open)?;
        }
    }

    fn poll(&self, _f: &OpenFile) -> u16 {
        let s = self.0.st.lock();
        let mut m = 0;
        if Pty::slave_readable(&s) {
            m |= ev::POLLIN | ev::POLLRDNORM;
        }
        if s.output.len() < BUF_MAX {
            m |= ev::POLLOUT | ev::POLLWRNORM;
        }
        if !s.master_open {
            m |= ev::POLLHUP;
        }
        m
    }

    fn ioctl(&self, _f: &OpenFile, cmd: u64, arg: u64) -> SysResult {
        self.0.tty_ioctl(cmd, arg)
    }

    fn available(&self) -> Option<usize> {
        Some(self.0.st.lock().input.len())
    }

    fn stat(&self) -> KStat {
        self.0.stat(false)
    }

    fn link_name(&self) -> Vec<u8> {
        alloc::format!("/dev/pts/{}", self.0.index).into_bytes()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            termios: Termios::initial(),
            winsize: [0; 4],
            locked: true,
            input: VecDeque::new(),
            lines: VecDeque::new(),
            edit: Vec::new(),
            output: VecDeque::new(),
            master_open: true,
            slaves: 0,
            slave_seen: false,
            fg_pgrp: 0,
        }
    }

    fn typed(s: &mut State, bytes: &[u8]) -> u64 {
        bytes.iter().fold(0, |sig, &c| sig | Pty::receive(s, c))
    }

    #[test]
    fn canonical_lines_with_erase_and_echo() {
        let mut s = state();
        assert_eq!(typed(&mut s, b"ab\x7fc\r"), 0);
        assert_eq!(s.input.iter().copied().collect::<Vec<u8>>(), b"ac\n");
        assert_eq!(s.lines, [3]);
        // Echo with the erase sequence, CR mapped to NL, NL sent as CR NL.
        assert_eq!(
            s.output.iter().copied().collect::<Vec<u8>>(),
            b"ab\x08 \x08c\r\n"
        );
        assert!(Pty::slave_readable(&s));
    }

    #[test]
    fn end_of_file_and_partial_lines() {
        let mut s = state();
        typed(&mut s, b"xy");
        assert!(!Pty::slave_readable(&s));
        typed(&mut s, b"\x04");
        assert_eq!(s.lines, [2]);
        typed(&mut s, b"\x04");
        assert_eq!(s.lines, [2, 0]);
    }

    #[test]
    fn interrupt_signals_the_foreground_and_drops_the_line() {
        let mut s = state();
        typed(&mut s, b"abc");
        let sig = typed(&mut s, b"\x03");
        assert_eq!(sig, 1 << signal::sig::SIGINT);
        assert!(s.edit.is_empty());
        assert_eq!(typed(&mut s, b"\x1c"), 1 << signal::sig::SIGQUIT);
    }

    #[test]
    fn raw_mode_passes_bytes_through() {
        let mut s = state();
        s.termios.lflag = 0;
        s.termios.iflag = 0;
        s.termios.oflag = 0;
        assert_eq!(typed(&mut s, b"a\r\x03"), 0);
        assert_eq!(s.input.iter().copied().collect::<Vec<u8>>(), b"a\r\x03");
        assert!(s.output.is_empty());
        Pty::put_output(&mut s, b"\n");
        assert_eq!(s.output.iter().copied().collect::<Vec<u8>>(), b"\n");
    }
}
