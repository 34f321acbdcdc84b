//! Signal actions: the kernel `struct sigaction` of x86-64, the default action of every
//! signal (`signal(7)`), what delivering a signal does, the mask a handler runs with, and
//! which interrupted system calls `SA_RESTART` restarts.

use super::set::{sig, SigSet, UNBLOCKABLE};
use crate::linux::abi::nr;

/// Handler value: the default action.
pub(crate) const SIG_DFL: u64 = 0;
/// Handler value: ignore the signal.
pub(crate) const SIG_IGN: u64 = 1;

/// `sa_flags` bits.
#[allow(dead_code)]
pub(crate) mod sa {
    /// The handler takes `(signo, siginfo, ucontext)`.
    pub(crate) const SA_SIGINFO: u64 = 0x0000_0004;
    /// `sa_restorer` is the return trampoline (x86-64 programs always set it).
    pub(crate) const SA_RESTORER: u64 = 0x0400_0000;
    /// Run the handler on the alternate signal stack.
    pub(crate) const SA_ONSTACK: u64 = 0x0800_0000;
    /// Restart system calls the signal interrupts.
    pub(crate) const SA_RESTART: u64 = 0x1000_0000;
    /// Do not block the signal while its handler runs.
    pub(crate) const SA_NODEFER: u64 = 0x4000_0000;
    /// Reset the handler to the default once it has been called.
    pub(crate) const SA_RESETHAND: u64 = 0x8000_0000;
}
use sa::*;

/// One signal's action (the kernel `struct sigaction` of x86-64).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::Immutable,
)]
#[repr(C)]
pub(crate) struct SigAction {
    /// Handler address, SIG_DFL (0) or SIG_IGN (1).
    pub(crate) handler: u64,
    /// SA_* flags.
    pub(crate) flags: u64,
    /// Return trampoline (SA_RESTORER).
    pub(crate) restorer: u64,
    /// Signals blocked while the handler runs.
    pub(crate) mask: u64,
}

/// A signal's default action (`signal(7)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DefaultAction {
    /// Terminate the process.
    Term,
    /// Terminate the process and dump core.
    Core,
    /// Ignore the signal.
    Ign,
    /// Stop the process.
    Stop,
    /// Continue the process if it is stopped.
    Cont,
}

/// The default action of `signo` (`signal(7)`; real-time signals terminate).
pub(crate) const fn default_action(signo: u32) -> DefaultAction {
    use DefaultAction::*;
    match signo {
        sig::SIGQUIT
        | sig::SIGILL
        | sig::SIGTRAP
        | sig::SIGABRT
        | sig::SIGBUS
        | sig::SIGFPE
        | sig::SIGSEGV
        | sig::SIGXCPU
        | sig::SIGXFSZ
        | sig::SIGSYS => Core,
        sig::SIGCHLD | sig::SIGURG | sig::SIGWINCH => Ign,
        sig::SIGSTOP | sig::SIGTSTP | sig::SIGTTIN | sig::SIGTTOU => Stop,
        sig::SIGCONT => Cont,
        _ => Term,
    }
}

/// What delivering a signal does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Nothing (ignored, or a default action that does nothing here).
    Ignore,
    /// The process dies of the signal.
    Terminate,
    /// The handler runs.
    Handle,
}

impl SigAction {
    /// The default action.
    pub(crate) const DEFAULT: Self = Self {
        handler: SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };

    /// The action as `rt_sigaction` installs it: SIGKILL and SIGSTOP are never in the
    /// handler's mask (as Linux, which `oldact` then shows).
    pub(crate) const fn installed(self) -> Self {
        Self {
            mask: SigSet::from_bits(self.mask).blockable().bits(),
            ..self
        }
    }

    /// What delivering `signo` with this action does. SIGKILL always terminates; a default
    /// action that stops or continues the process does nothing (pvmux has no job control
    /// yet), like one that ignores.
    pub(crate) const fn disposition(&self, signo: u32) -> Disposition {
        if signo == sig::SIGKILL || signo == sig::SIGSTOP {
            return match default_action(signo) {
                DefaultAction::Term | DefaultAction::Core => Disposition::Terminate,
                _ => Disposition::Ignore,
            };
        }
        match self.handler {
            SIG_IGN => Disposition::Ignore,
            SIG_DFL => match default_action(signo) {
                DefaultAction::Term | DefaultAction::Core => Disposition::Terminate,
                DefaultAction::Ign | DefaultAction::Stop | DefaultAction::Cont => {
                    Disposition::Ignore
                }
            },
            _ => Disposition::Handle,
        }
    }

    /// True if a signal with this action is discarded when sent (not blocked): it is
    /// ignored, explicitly or by default (Linux's `sig_ignored`). Never for SIGKILL.
    pub(crate) const fn ignores(&self, signo: u32) -> bool {
        signo != sig::SIGKILL && matches!(self.disposition(signo), Disposition::Ignore)
    }

    /// The mask in force while the handler of `signo` runs, from the mask `blocked` of
    /// before: the action's mask added, and `signo` itself unless `SA_NODEFER`.
    pub(crate) const fn handler_mask(&self, signo: u32, blocked: SigSet) -> SigSet {
        let mut m = SigSet::from_bits(blocked.bits() | self.mask);
        if self.flags & SA_NODEFER == 0 {
            m = m.with(signo);
        }
        m.minus(UNBLOCKABLE)
    }

    /// The action once its handler has been called: with `SA_RESETHAND` the handler is
    /// the default again (flags, mask and restorer stay, as Linux's `SA_ONESHOT`).
    pub(crate) const fn after_delivery(self) -> Self {
        if self.flags & SA_RESETHAND != 0 {
            Self {
                handler: SIG_DFL,
                ..self
            }
        } else {
            self
        }
    }

    /// The action `execve` leaves: a handler becomes the default action, an ignored signal
    /// stays ignored (and `SIG_DFL` stays).
    pub(crate) const fn after_exec(self) -> Self {
        if self.handler == SIG_IGN {
            self
        } else {
            Self::DEFAULT
        }
    }
}

/// The `rax` to resume with after the handler when system call `interrupted` (its number)
/// returned `EINTR` (`rax`) because of a signal whose action has flags `flags`: with
/// `SA_RESTART` the call is made again — `rax` becomes its number and the caller moves
/// `rip` back over the 2-byte `syscall` — else it fails with `EINTR` (`None`). `interrupted`
/// is `None` when the last system call did not return `EINTR` or is one of those
/// [`never_restarted`].
pub(crate) const fn restart(interrupted: Option<u64>, rax: u64, flags: u64) -> Option<u64> {
    const EINTR: u64 = (-4i64) as u64;
    match interrupted {
        Some(nr) if rax == EINTR && flags & SA_RESTART != 0 => Some(nr),
        _ => None,
    }
}

/// True for the system calls Linux never restarts after a handler, whatever `SA_RESTART`
/// says (`signal(7)`: waits for events, signals or time); they fail with `EINTR`.
pub(crate) const fn never_restarted(nr: u64) -> bool {
    matches!(
        nr,
        nr::POLL
            | nr::PPOLL
            | nr::SELECT
            | nr::PSELECT6
            | nr::EPOLL_WAIT
            | nr::EPOLL_PWAIT
            | nr::EPOLL_PWAIT2
            | nr::RT_SIGSUSPEND
            | nr::RT_SIGTIMEDWAIT
            | nr::PAUSE
            | nr::NANOSLEEP
            | nr::CLOCK_NANOSLEEP
            | nr::IO_GETEVENTS
            | nr::IO_PGETEVENTS
            | nr::MSGRCV
            | nr::MSGSND
            | nr::SEMOP
            | nr::SEMTIMEDOP
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use DefaultAction::*;

    #[test]
    fn flags_and_layout_match_the_host_linux() {
        assert_eq!(SA_SIGINFO, libc::SA_SIGINFO as u64);
        assert_eq!(SA_ONSTACK, libc::SA_ONSTACK as u64);
        assert_eq!(SA_RESTART, libc::SA_RESTART as u64);
        assert_eq!(SA_NODEFER, libc::SA_NODEFER as u64);
        assert_eq!(SA_RESETHAND, libc::SA_RESETHAND as u32 as u64);
        assert_eq!(core::mem::size_of::<SigAction>(), 32);
        assert_eq!(SIG_DFL, libc::SIG_DFL as u64);
        assert_eq!(SIG_IGN, libc::SIG_IGN as u64);
    }

    #[test]
    fn default_actions_are_those_of_signal_7() {
        // The "Standard signals" table of signal(7), x86 numbering.
        let table: &[(u32, DefaultAction)] = &[
            (1, Term),  // SIGHUP
            (2, Term),  // SIGINT
            (3, Core),  // SIGQUIT
            (4, Core),  // SIGILL
            (5, Core),  // SIGTRAP
            (6, Core),  // SIGABRT
            (7, Core),  // SIGBUS
            (8, Core),  // SIGFPE
            (9, Term),  // SIGKILL
            (10, Term), // SIGUSR1
            (11, Core), // SIGSEGV
            (12, Term), // SIGUSR2
            (13, Term), // SIGPIPE
            (14, Term), // SIGALRM
            (15, Term), // SIGTERM
            (16, Term), // SIGSTKFLT
            (17, Ign),  // SIGCHLD
            (18, Cont), // SIGCONT
            (19, Stop), // SIGSTOP
            (20, Stop), // SIGTSTP
            (21, Stop), // SIGTTIN
            (22, Stop), // SIGTTOU
            (23, Ign),  // SIGURG
            (24, Core), // SIGXCPU
            (25, Core), // SIGXFSZ
            (26, Term), // SIGVTALRM
            (27, Term), // SIGPROF
            (28, Ign),  // SIGWINCH
            (29, Term), // SIGIO
            (30, Term), // SIGPWR
            (31, Core), // SIGSYS
        ];
        for &(signo, want) in table {
            assert_eq!(default_action(signo), want, "signal {signo}");
        }
        // "The default action for an unhandled real-time signal is to terminate."
        for signo in sig::SIGRTMIN..=sig::NSIG {
            assert_eq!(default_action(signo), Term, "signal {signo}");
        }
    }

    #[test]
    fn dispositions() {
        let dfl = SigAction::DEFAULT;
        let ign = SigAction {
            handler: SIG_IGN,
            ..dfl
        };
        let handler = SigAction {
            handler: 0x40_1000,
            ..dfl
        };
        use Disposition::*;
        assert_eq!(dfl.disposition(sig::SIGTERM), Terminate);
        assert_eq!(dfl.disposition(sig::SIGSEGV), Terminate);
        assert_eq!(dfl.disposition(sig::SIGCHLD), Ignore);
        assert_eq!(dfl.disposition(sig::SIGCONT), Ignore);
        assert_eq!(dfl.disposition(sig::SIGTSTP), Ignore, "no job control yet");
        assert_eq!(ign.disposition(sig::SIGTERM), Ignore);
        assert_eq!(handler.disposition(sig::SIGTERM), Handle);
        assert_eq!(handler.disposition(sig::SIGCHLD), Handle);
        // SIGKILL and SIGSTOP take their default action whatever is installed.
        assert_eq!(handler.disposition(sig::SIGKILL), Terminate);
        assert_eq!(ign.disposition(sig::SIGKILL), Terminate);
        assert_eq!(handler.disposition(sig::SIGSTOP), Ignore);
        assert!(!ign.ignores(sig::SIGKILL));
        assert!(ign.ignores(sig::SIGUSR1) && dfl.ignores(sig::SIGWINCH));
        assert!(!dfl.ignores(sig::SIGUSR1) && !handler.ignores(sig::SIGCHLD));
    }

    #[test]
    fn the_handler_runs_with_its_mask_and_its_own_signal_blocked_unless_nodefer() {
        let usr1 = SigSet::of(sig::SIGUSR1);
        let usr2 = SigSet::of(sig::SIGUSR2);
        let act = SigAction {
            handler: 0x1000,
            flags: SA_RESTORER,
            restorer: 0x2000,
            mask: usr2.bits() | UNBLOCKABLE.bits(),
        };
        let before = SigSet::of(sig::SIGHUP);
        assert_eq!(
            act.handler_mask(sig::SIGUSR1, before),
            before | usr1 | usr2,
            "never SIGKILL/SIGSTOP"
        );
        let nodefer = SigAction {
            flags: SA_RESTORER | SA_NODEFER,
            ..act
        };
        assert_eq!(nodefer.handler_mask(sig::SIGUSR1, before), before | usr2);
        // A mask that already blocks the signal keeps it blocked even with SA_NODEFER.
        assert_eq!(nodefer.handler_mask(sig::SIGUSR1, usr1), usr1 | usr2);
        assert_eq!(act.installed().mask, usr2.bits());
    }

    #[test]
    fn resethand_resets_only_the_handler_and_exec_keeps_only_ignored() {
        let act = SigAction {
            handler: 0x1000,
            flags: SA_RESTORER | SA_RESETHAND | SA_SIGINFO,
            restorer: 0x2000,
            mask: 4,
        };
        assert_eq!(
            act.after_delivery(),
            SigAction {
                handler: SIG_DFL,
                ..act
            }
        );
        let plain = SigAction {
            flags: SA_RESTORER,
            ..act
        };
        assert_eq!(plain.after_delivery(), plain);
        assert_eq!(act.after_exec(), SigAction::DEFAULT);
        let ign = SigAction {
            handler: SIG_IGN,
            ..act
        };
        assert_eq!(ign.after_exec(), ign);
    }

    #[test]
    fn sa_restart_restarts_an_interrupted_call() {
        let eintr = (-(libc::EINTR as i64)) as u64;
        assert_eq!(restart(Some(nr::READ), eintr, SA_RESTART), Some(nr::READ));
        assert_eq!(
            restart(Some(nr::READ), eintr, 0),
            None,
            "without SA_RESTART: EINTR"
        );
        assert_eq!(
            restart(None, eintr, SA_RESTART),
            None,
            "nothing was interrupted"
        );
        // A call that finished (a short read) is not made again.
        assert_eq!(restart(Some(nr::READ), 5, SA_RESTART), None);
        assert_eq!(
            restart(Some(nr::READ), (-11i64) as u64, SA_RESTART),
            None,
            "EAGAIN"
        );
    }

    #[test]
    fn waits_for_events_signals_and_time_are_never_restarted() {
        for n in [
            nr::POLL,
            nr::PPOLL,
            nr::SELECT,
            nr::PSELECT6,
            nr::EPOLL_WAIT,
            nr::EPOLL_PWAIT,
            nr::RT_SIGSUSPEND,
            nr::RT_SIGTIMEDWAIT,
            nr::PAUSE,
            nr::NANOSLEEP,
            nr::CLOCK_NANOSLEEP,
        ] {
            assert!(never_restarted(n), "{}", crate::linux::abi::name(n));
        }
        for n in [
            nr::READ,
            nr::WRITE,
            nr::WAIT4,
            nr::FUTEX,
            nr::ACCEPT,
            nr::OPENAT,
        ] {
            assert!(!never_restarted(n), "{}", crate::linux::abi::name(n));
        }
    }
}
