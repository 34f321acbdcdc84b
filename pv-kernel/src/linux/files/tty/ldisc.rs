//! The line discipline (when the host's stdin is a terminal): every byte typed goes through
//! [`Console::receive`], which applies the termios settings — input translation, signals,
//! echo, and in canonical mode line editing — and reads take completed lines (canonical
//! mode) or received bytes.

use super::input::Fill;
use super::termios::{iflag, lflag, vc, Termios};
use super::Console;
use crate::linux::signal;

/// Input buffered in the guest before the host's buffer is left to fill.
const INPUT_MAX: usize = 64 * 1024;
/// The longest line in canonical mode, newline included (Linux's `N_TTY_BUF_SIZE`); further
/// characters are dropped.
const LINE_MAX: usize = 4096;

/// Which part of the line an erase character removes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Erase {
    Char,
    Word,
    Line,
}

impl Console {
    /// Takes everything the host has (up to [`INPUT_MAX`] buffered) through the line
    /// discipline.
    pub(super) fn pump(&mut self) {
        while !self.eof && self.input.len() + self.edit.len() < INPUT_MAX {
            match self.fill() {
                Fill::Data(n) => {
                    let scratch = core::mem::take(&mut self.scratch);
                    for &b in &scratch[..n] {
                        self.receive(b);
                    }
                    self.scratch = scratch;
                    self.last_rx = crate::time::now_ns();
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
    pub(super) fn tty_available(&self) -> bool {
        if self.canonical() {
            !self.lines.is_empty()
        } else {
            !self.input.is_empty()
        }
    }

    /// True if a read would not block (line discipline), asking the host first.
    pub(super) fn tty_ready(&mut self) -> bool {
        self.pump();
        self.eof || self.tty_available()
    }

    /// Bytes a read could take now (line discipline).
    pub(super) fn tty_pending(&self) -> usize {
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
        if !on(lflag::ICANON) {
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
    pub(super) fn flush_input(&mut self) {
        self.input.clear();
        self.lines.clear();
        self.edit.clear();
    }

    /// New terminal settings: switching between canonical and non-canonical mode keeps the
    /// input (a line being typed becomes readable bytes, readable bytes become a line).
    pub(super) fn set_termios(&mut self, t: Termios) {
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
    pub(super) fn tty_take(&mut self, out: &mut [u8]) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A console fed `typed` through the line discipline.
    fn typed(typed: &[u8]) -> Console {
        let mut c = Console::new();
        for &b in typed {
            c.receive(b);
        }
        c
    }

    /// Everything a read would return now, line by line.
    fn reads(c: &mut Console) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while c.tty_available() {
            let mut buf = [0u8; 64];
            let n = c.tty_take(&mut buf);
            out.push(buf[..n].to_vec());
        }
        out
    }

    #[test]
    fn canonical_mode_edits_lines() {
        // Carriage return becomes newline (ICRNL); erase, word erase and kill edit the line.
        let mut c = typed(b"ab\x7fc\rone two\x17three\nxyz\x15q\n");
        assert_eq!(reads(&mut c), [&b"ac\n"[..], b"one three\n", b"q\n"]);
        assert_eq!(c.tty_pending(), 0);
        // Echo: the erasures are visual (ECHOE, ECHOKE), newlines echoed.
        assert_eq!(
            c.echo,
            b"ab\x08 \x08c\none two\x08 \x08\x08 \x08\x08 \x08three\nxyz\x08 \x08\x08 \x08\x08 \x08q\n"
        );
    }

    #[test]
    fn partial_lines_wait_and_reads_take_one_line() {
        let mut c = typed(b"first\nsecond\nthi");
        assert_eq!(c.tty_pending(), 13);
        let mut small = [0u8; 3];
        assert_eq!(c.tty_take(&mut small), 3);
        assert_eq!(&small, b"fir");
        assert_eq!(reads(&mut c), [&b"st\n"[..], b"second\n"]);
        assert!(!c.tty_available(), "the line being typed is not readable");
        // End of file at the start of a line: a zero-length read.
        c.receive(4);
        assert_eq!(reads(&mut c), [&b"thi"[..]]);
        c.receive(4);
        assert_eq!(reads(&mut c), [&b""[..]]);
    }

    #[test]
    fn control_characters_signal_and_echo_as_caret() {
        let mut c = typed(b"lost");
        c.receive(3);
        assert_eq!(c.signals, 1 << signal::sig::SIGINT);
        assert!(c.edit.is_empty(), "^C flushes the line");
        assert_eq!(c.echo, b"lost^C");
        c.receive(0x1c);
        assert_ne!(c.signals & (1 << signal::sig::SIGQUIT), 0);
        // ^Z is dropped (no job control); other control characters echo as ^X.
        let mut c = typed(b"\x1a\x01\n");
        assert_eq!(c.signals, 0);
        assert_eq!(c.echo, b"^A\n");
        assert_eq!(reads(&mut c), [&b"\x01\n"[..]]);
        // A multi-byte character is erased as one.
        let mut c = typed("é\x7f!\n".as_bytes());
        assert_eq!(reads(&mut c), [&b"!\n"[..]]);
    }

    #[test]
    fn switching_modes_keeps_input() {
        let mut c = typed(b"done\npart");
        let mut raw = c.termios;
        raw.lflag &= !(lflag::ICANON | lflag::ECHO);
        c.set_termios(raw);
        // The partial line becomes readable bytes; bytes arrive one by one, unechoed.
        c.receive(b'!');
        assert_eq!(c.echo, b"done\npart");
        let mut buf = [0u8; 64];
        let n = c.tty_take(&mut buf);
        assert_eq!(&buf[..n], b"done\npart!");
        c.receive(b'x');
        let mut canon = raw;
        canon.lflag |= lflag::ICANON;
        c.set_termios(canon);
        assert_eq!(reads(&mut c), [&b"x"[..]]);
        c.flush_input();
        assert!(!c.tty_available() && c.tty_pending() == 0);
    }
}
