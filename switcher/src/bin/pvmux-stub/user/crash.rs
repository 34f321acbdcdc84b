//! A user sandbox's crash record: what its stub saw when it had to give up (a signal in stub
//! code, a handler on a foreign stack, a panic), written into its control page
//! ([`UserStubCrash`] at [`USER_CRASH_OFFSET`]) for the host's log, then the exit with
//! [`STUB_EXIT_CRASH`].

use pvmux_hypercalls::layout::CTL_BASE;
use pvmux_hypercalls::sandbox::{UserStubCrash, STUB_EXIT_CRASH, USER_CRASH_OFFSET};

use crate::sigctx::{SigInfo, RIP, RSP};
use crate::sys;

pub(crate) use pvmux_hypercalls::sandbox::user_crash::NO_SLOT;

/// What a handler knew of the signal it gave up on.
pub(crate) struct Seen {
    /// Signal number.
    pub(super) signal: i32,
    /// Its `siginfo`'s fields.
    pub(super) info: SigInfo,
    /// `rip` where it was raised.
    pub(super) rip: u64,
    /// `rsp` where it was raised.
    pub(super) rsp: u64,
}

impl Seen {
    /// The signal `signal` with `info`, raised with the sigcontext words `g`.
    pub(super) fn new(signal: i32, info: SigInfo, g: &[u64; 32]) -> Self {
        Self {
            signal,
            info,
            rip: g[RIP],
            rsp: g[RSP],
        }
    }
}

/// Records `cause` (a `user_crash` value) for slot `slot` with what was `seen` (`None`: no
/// signal, a panic) and ends the sandbox with [`STUB_EXIT_CRASH`].
pub(crate) fn crash(cause: u32, slot: u32, seen: Option<Seen>) -> ! {
    let rec = match seen {
        Some(s) => UserStubCrash {
            cause,
            signal: s.signal as u32,
            si_code: s.info.code,
            slot,
            rip: s.rip,
            addr: s.info.addr,
            rsp: s.rsp,
        },
        None => UserStubCrash {
            cause,
            slot,
            ..UserStubCrash::default()
        },
    };
    let words: [u64; 5] = zerocopy::transmute!(rec);
    let at = (CTL_BASE + USER_CRASH_OFFSET as u64) as *mut u64;
    for (i, w) in words.into_iter().enumerate() {
        // SAFETY: start-up maps page 0 of the control region at CTL_BASE before any handler
        // or user code runs, for the life of the process; the record's five words lie inside
        // it, 8-aligned (asserted in the ABI). Volatile stores, no reference: user code of
        // this sandbox can write the page too.
        unsafe { at.add(i).write_volatile(w) };
    }
    sys::exit_group(STUB_EXIT_CRASH)
}
