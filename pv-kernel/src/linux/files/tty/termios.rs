//! Terminal settings: Linux's `struct termios`/`termios2` (x86-64 layout), their flag bits
//! and control-character indices, and the settings a terminal starts with.

use alloc::vec::Vec;

/// Linux `struct termios` (the kernel's, `NCCS` = 19) and the speeds of `termios2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Termios {
    pub(super) iflag: u32,
    pub(super) oflag: u32,
    pub(super) cflag: u32,
    pub(super) lflag: u32,
    pub(super) line: u8,
    pub(super) cc: [u8; 19],
    pub(super) ispeed: u32,
    pub(super) ospeed: u32,
}

/// `c_lflag` bits.
pub(super) mod lflag {
    pub(in crate::linux::files::tty) const ISIG: u32 = 0o1;
    pub(in crate::linux::files::tty) const ICANON: u32 = 0o2;
    pub(in crate::linux::files::tty) const ECHO: u32 = 0o10;
    pub(in crate::linux::files::tty) const ECHOE: u32 = 0o20;
    pub(in crate::linux::files::tty) const ECHOK: u32 = 0o40;
    pub(in crate::linux::files::tty) const ECHONL: u32 = 0o100;
    pub(in crate::linux::files::tty) const NOFLSH: u32 = 0o200;
    pub(in crate::linux::files::tty) const ECHOCTL: u32 = 0o1000;
    pub(in crate::linux::files::tty) const ECHOKE: u32 = 0o4000;
    pub(in crate::linux::files::tty) const IEXTEN: u32 = 0o100000;
}

/// `c_iflag` bits.
pub(super) mod iflag {
    pub(in crate::linux::files::tty) const ISTRIP: u32 = 0o40;
    pub(in crate::linux::files::tty) const INLCR: u32 = 0o100;
    pub(in crate::linux::files::tty) const IGNCR: u32 = 0o200;
    pub(in crate::linux::files::tty) const ICRNL: u32 = 0o400;
}

/// `c_cc` indices.
pub(super) mod vc {
    pub(in crate::linux::files::tty) const VINTR: usize = 0;
    pub(in crate::linux::files::tty) const VQUIT: usize = 1;
    pub(in crate::linux::files::tty) const VERASE: usize = 2;
    pub(in crate::linux::files::tty) const VKILL: usize = 3;
    pub(in crate::linux::files::tty) const VEOF: usize = 4;
    pub(in crate::linux::files::tty) const VTIME: usize = 5;
    pub(in crate::linux::files::tty) const VMIN: usize = 6;
    pub(in crate::linux::files::tty) const VSUSP: usize = 10;
    pub(in crate::linux::files::tty) const VEOL: usize = 11;
    pub(in crate::linux::files::tty) const VWERASE: usize = 14;
    pub(in crate::linux::files::tty) const VEOL2: usize = 16;
}

/// `c_cflag` speed bits and the "other speed" code.
const CBAUD: u32 = 0o10017;
/// `B38400`.
const B38400: u32 = 0o17;

impl Termios {
    /// True in canonical (line-at-a-time) mode.
    pub(super) const fn canonical(&self) -> bool {
        self.lflag & lflag::ICANON != 0
    }

    /// Linux's initial terminal settings (`tty_std_termios`).
    pub(super) const fn initial() -> Self {
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
    pub(super) fn to_bytes(self, two: bool) -> Vec<u8> {
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
    /// `b` must be 36 or 44 bytes long.
    pub(super) fn from_bytes(b: &[u8], old: &Self) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn termios_round_trips_through_both_layouts() {
        let t = Termios::initial();
        assert!(t.canonical());
        let old = t.to_bytes(false);
        let two = t.to_bytes(true);
        assert_eq!((old.len(), two.len()), (36, 44));
        assert_eq!(old[..], two[..36]);
        assert_eq!(Termios::from_bytes(&old, &t), t);
        assert_eq!(Termios::from_bytes(&two, &t), t);
        // termios2 carries its own speeds; termios keeps the old ones unless B38400.
        let mut fast = t;
        fast.ispeed = 115_200;
        fast.ospeed = 9600;
        assert_eq!(Termios::from_bytes(&fast.to_bytes(true), &t), fast);
        let mut raw = fast;
        raw.lflag &= !lflag::ICANON;
        raw.cflag = (raw.cflag & !CBAUD) | 0o15; // B9600
        let back = Termios::from_bytes(&raw.to_bytes(false), &fast);
        assert!(!back.canonical());
        assert_eq!((back.ispeed, back.ospeed), (115_200, 9600));
        raw.cflag |= B38400;
        let back = Termios::from_bytes(&raw.to_bytes(false), &fast);
        assert_eq!((back.ispeed, back.ospeed), (38400, 38400));
    }
}
