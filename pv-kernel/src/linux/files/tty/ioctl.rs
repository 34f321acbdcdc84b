//! Terminal `ioctl`s on the console: termios, window size, foreground process group,
//! flushing, and the harmless rest.

use core::sync::atomic::Ordering;

use super::termios::Termios;
use super::{console_size, poll, CONSOLE, INPUT_SEQ, INPUT_WQ};
use crate::fs::Errno;
use crate::linux::uaccess::{copy_from_user, copy_to_user, read_val, write_val};
use crate::linux::SysResult;

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
                    let size = console_size();
                    c.winsize = [size.rows.get(), size.cols.get(), 0, 0];
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
