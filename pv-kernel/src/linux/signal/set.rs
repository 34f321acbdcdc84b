//! Signal numbers and signal sets: the kernel `sigset_t` of x86-64 Linux, 64 bits with bit
//! `n - 1` for signal `n`, and how `rt_sigprocmask` changes a mask.

use core::ops::{BitAnd, BitOr, Not};

use crate::fs::Errno;

/// Signal numbers (x86-64 Linux, `signal(7)`).
#[allow(dead_code)]
pub(crate) mod sig {
    pub(crate) const SIGHUP: u32 = 1;
    pub(crate) const SIGINT: u32 = 2;
    pub(crate) const SIGQUIT: u32 = 3;
    pub(crate) const SIGILL: u32 = 4;
    pub(crate) const SIGTRAP: u32 = 5;
    pub(crate) const SIGABRT: u32 = 6;
    pub(crate) const SIGBUS: u32 = 7;
    pub(crate) const SIGFPE: u32 = 8;
    pub(crate) const SIGKILL: u32 = 9;
    pub(crate) const SIGUSR1: u32 = 10;
    pub(crate) const SIGSEGV: u32 = 11;
    pub(crate) const SIGUSR2: u32 = 12;
    pub(crate) const SIGPIPE: u32 = 13;
    pub(crate) const SIGALRM: u32 = 14;
    pub(crate) const SIGTERM: u32 = 15;
    pub(crate) const SIGSTKFLT: u32 = 16;
    pub(crate) const SIGCHLD: u32 = 17;
    pub(crate) const SIGCONT: u32 = 18;
    pub(crate) const SIGSTOP: u32 = 19;
    pub(crate) const SIGTSTP: u32 = 20;
    pub(crate) const SIGTTIN: u32 = 21;
    pub(crate) const SIGTTOU: u32 = 22;
    pub(crate) const SIGURG: u32 = 23;
    pub(crate) const SIGXCPU: u32 = 24;
    pub(crate) const SIGXFSZ: u32 = 25;
    pub(crate) const SIGVTALRM: u32 = 26;
    pub(crate) const SIGPROF: u32 = 27;
    pub(crate) const SIGWINCH: u32 = 28;
    pub(crate) const SIGIO: u32 = 29;
    pub(crate) const SIGPWR: u32 = 30;
    pub(crate) const SIGSYS: u32 = 31;
    /// First real-time signal of the kernel (the C libraries keep 32..34 for themselves).
    pub(crate) const SIGRTMIN: u32 = 32;
    /// Highest signal number (`_NSIG`).
    pub(crate) const NSIG: u32 = 64;
}

/// True for a signal number (1 to 64).
pub(crate) const fn valid(signo: u32) -> bool {
    signo >= 1 && signo <= sig::NSIG
}

/// True for a real-time signal: every instance is queued with its information.
pub(crate) const fn is_realtime(signo: u32) -> bool {
    signo >= sig::SIGRTMIN && signo <= sig::NSIG
}

/// A set of signals (the kernel `sigset_t`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SigSet(u64);

impl SigSet {
    /// No signal.
    pub(crate) const EMPTY: Self = Self(0);
    /// Every signal.
    #[allow(dead_code)] // tests, and the natural counterpart of `EMPTY`
    pub(crate) const FULL: Self = Self(u64::MAX);

    /// The set as user memory holds it.
    pub(crate) const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// The bits, as user memory holds them.
    pub(crate) const fn bits(self) -> u64 {
        self.0
    }

    /// The set of `signo` alone (empty for a number that is not a signal).
    pub(crate) const fn of(signo: u32) -> Self {
        if valid(signo) {
            Self(1 << (signo - 1))
        } else {
            Self(0)
        }
    }

    /// True if `signo` is in the set.
    pub(crate) const fn contains(self, signo: u32) -> bool {
        self.0 & Self::of(signo).0 != 0
    }

    /// True if no signal is in the set.
    pub(crate) const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set with `signo` added.
    pub(crate) const fn with(self, signo: u32) -> Self {
        Self(self.0 | Self::of(signo).0)
    }

    /// The set without the signals of `other`.
    pub(crate) const fn minus(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The lowest signal number in the set.
    pub(crate) const fn lowest(self) -> Option<u32> {
        if self.0 == 0 {
            None
        } else {
            Some(self.0.trailing_zeros() + 1)
        }
    }

    /// The set as a mask that can be in force: without SIGKILL and SIGSTOP, which can never
    /// be blocked (Linux removes them silently).
    pub(crate) const fn blockable(self) -> Self {
        self.minus(UNBLOCKABLE)
    }
}

impl BitOr for SigSet {
    type Output = Self;
    fn bitor(self, o: Self) -> Self {
        Self(self.0 | o.0)
    }
}

impl BitAnd for SigSet {
    type Output = Self;
    fn bitand(self, o: Self) -> Self {
        Self(self.0 & o.0)
    }
}

impl Not for SigSet {
    type Output = Self;
    fn not(self) -> Self {
        Self(!self.0)
    }
}

/// Signals that can be neither caught, ignored nor blocked.
pub(crate) const UNBLOCKABLE: SigSet = SigSet::of(sig::SIGKILL).with(sig::SIGSTOP);

/// Signals a fault raises: delivered before any other pending signal (Linux's
/// `SYNCHRONOUS_MASK`).
pub(crate) const SYNCHRONOUS: SigSet = SigSet::of(sig::SIGSEGV)
    .with(sig::SIGBUS)
    .with(sig::SIGILL)
    .with(sig::SIGTRAP)
    .with(sig::SIGFPE)
    .with(sig::SIGSYS);

/// How `rt_sigprocmask` changes the mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum How {
    /// `SIG_BLOCK`: add the set.
    Block,
    /// `SIG_UNBLOCK`: remove the set.
    Unblock,
    /// `SIG_SETMASK`: replace the mask.
    SetMask,
}

impl How {
    /// Decodes `how` (`EINVAL` for anything else).
    pub(crate) const fn from_raw(how: u64) -> Result<Self, Errno> {
        match how {
            0 => Ok(Self::Block),
            1 => Ok(Self::Unblock),
            2 => Ok(Self::SetMask),
            _ => Err(Errno::EINVAL),
        }
    }

    /// The mask after applying `set` to `cur` (never blocking SIGKILL or SIGSTOP).
    pub(crate) fn apply(self, cur: SigSet, set: SigSet) -> SigSet {
        match self {
            Self::Block => cur | set,
            Self::Unblock => cur.minus(set),
            Self::SetMask => set,
        }
        .blockable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_host_linux() {
        let ours = [
            (sig::SIGHUP, libc::SIGHUP),
            (sig::SIGINT, libc::SIGINT),
            (sig::SIGQUIT, libc::SIGQUIT),
            (sig::SIGILL, libc::SIGILL),
            (sig::SIGTRAP, libc::SIGTRAP),
            (sig::SIGABRT, libc::SIGABRT),
            (sig::SIGBUS, libc::SIGBUS),
            (sig::SIGFPE, libc::SIGFPE),
            (sig::SIGKILL, libc::SIGKILL),
            (sig::SIGUSR1, libc::SIGUSR1),
            (sig::SIGSEGV, libc::SIGSEGV),
            (sig::SIGUSR2, libc::SIGUSR2),
            (sig::SIGPIPE, libc::SIGPIPE),
            (sig::SIGALRM, libc::SIGALRM),
            (sig::SIGTERM, libc::SIGTERM),
            (sig::SIGSTKFLT, libc::SIGSTKFLT),
            (sig::SIGCHLD, libc::SIGCHLD),
            (sig::SIGCONT, libc::SIGCONT),
            (sig::SIGSTOP, libc::SIGSTOP),
            (sig::SIGTSTP, libc::SIGTSTP),
            (sig::SIGTTIN, libc::SIGTTIN),
            (sig::SIGTTOU, libc::SIGTTOU),
            (sig::SIGURG, libc::SIGURG),
            (sig::SIGXCPU, libc::SIGXCPU),
            (sig::SIGXFSZ, libc::SIGXFSZ),
            (sig::SIGVTALRM, libc::SIGVTALRM),
            (sig::SIGPROF, libc::SIGPROF),
            (sig::SIGWINCH, libc::SIGWINCH),
            (sig::SIGIO, libc::SIGIO),
            (sig::SIGPWR, libc::SIGPWR),
            (sig::SIGSYS, libc::SIGSYS),
        ];
        for (n, (ours, linux)) in ours.into_iter().enumerate() {
            assert_eq!(ours as i32, linux);
            assert_eq!(
                ours as usize,
                n + 1,
                "the list is every standard signal in order"
            );
        }
        // The C library's SIGRTMIN is above the kernel's (it keeps two or three for itself).
        assert!((sig::SIGRTMIN as i32) < libc::SIGRTMIN());
        assert_eq!(sig::NSIG as i32, libc::SIGRTMAX());
    }

    #[test]
    fn a_set_has_bit_n_minus_1_for_signal_n() {
        assert_eq!(SigSet::of(1).bits(), 1);
        assert_eq!(SigSet::of(64).bits(), 1 << 63);
        assert_eq!(SigSet::of(0), SigSet::EMPTY);
        assert_eq!(SigSet::of(65), SigSet::EMPTY);
        let s = SigSet::of(sig::SIGUSR1).with(40);
        assert!(s.contains(sig::SIGUSR1) && s.contains(40) && !s.contains(sig::SIGUSR2));
        assert!(!s.contains(0) && !s.contains(65));
        assert_eq!(s.lowest(), Some(sig::SIGUSR1));
        assert_eq!(s.minus(SigSet::of(sig::SIGUSR1)).lowest(), Some(40));
        assert_eq!(SigSet::EMPTY.lowest(), None);
        assert_eq!((s & !SigSet::of(40)), SigSet::of(sig::SIGUSR1));
        assert_eq!(
            UNBLOCKABLE.bits(),
            (1 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1))
        );
    }

    #[test]
    fn sigprocmask_never_blocks_sigkill_or_sigstop() {
        let usr1 = SigSet::of(sig::SIGUSR1);
        let usr2 = SigSet::of(sig::SIGUSR2);
        assert_eq!(How::from_raw(libc::SIG_BLOCK as u64), Ok(How::Block));
        assert_eq!(How::from_raw(libc::SIG_UNBLOCK as u64), Ok(How::Unblock));
        assert_eq!(How::from_raw(libc::SIG_SETMASK as u64), Ok(How::SetMask));
        assert_eq!(How::from_raw(3), Err(Errno::EINVAL));
        assert_eq!(How::Block.apply(usr1, usr2), usr1 | usr2);
        assert_eq!(How::Unblock.apply(usr1 | usr2, usr2), usr1);
        assert_eq!(How::SetMask.apply(usr1, usr2), usr2);
        assert_eq!(
            How::SetMask.apply(usr1, SigSet::FULL),
            SigSet::FULL.minus(UNBLOCKABLE)
        );
        assert_eq!(How::Block.apply(SigSet::EMPTY, UNBLOCKABLE), SigSet::EMPTY);
        assert!(!How::SetMask
            .apply(SigSet::EMPTY, SigSet::FULL)
            .contains(sig::SIGSTOP));
    }
}
